"""codemode inside the OpenAI Agents SDK: pauses are run interruptions, decided with RunState.approve/reject.

Driven by a scripted `agents.Model` (no network), on real Monty and a real SQLite file; the RunState is
serialized with `to_json()` and restored with `from_json()` against a new runtime on the same file."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Model, ModelResponse, Runner, RunResult, RunState, Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import codemode
from codemode.integrations.openai_agents import codemode_tool, pending_actions

from integrations_ledger import BATCH, CATCH, ONE, TWO, Bank


class Scripted(Model):
    """Calls `codemode(code)` once (a fresh call id per conversation), then repeats the tool's output."""

    def __init__(self, code: str) -> None:
        self.code = code

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        last = input[-1] if isinstance(input, list) and input else {}
        out: list[Any]
        if isinstance(input, str) or last.get("role") == "user":
            call_id = "call_" + uuid.uuid4().hex
            args = json.dumps({"code": self.code})
            out = [ResponseFunctionToolCall(type="function_call", call_id=call_id, name="codemode", arguments=args)]
        else:
            text = ResponseOutputText(type="output_text", text=str(last.get("output")), annotations=[])
            out = [
                ResponseOutputMessage(id="msg", type="message", role="assistant", status="completed", content=[text])
            ]
        return ModelResponse(output=out, usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


class World:
    def __init__(self, path: Path, code: str, executor: codemode.Executor) -> None:
        self.path, self.code, self.executor = path, code, executor
        self.ledger: list[dict[str, Any]] = []
        self.runtimes: list[codemode.Runtime] = []
        self.restart()

    def restart(self, **options: Any) -> None:
        self.runtime = codemode.Runtime(
            [Bank(self.ledger)], executor=self.executor, store=codemode.SqliteStore(self.path)
        )
        self.runtimes.append(self.runtime)
        self.agent = Agent(name="ops", model=Scripted(self.code), tools=[codemode_tool(self.runtime, **options)])

    async def runs(self) -> list[codemode.Execution]:
        return await self.runtime.executions()


@pytest.fixture
async def world_of(tmp_path: Path, executor: codemode.Executor) -> AsyncIterator[Any]:
    worlds: list[World] = []

    def make(code: str, **options: Any) -> World:
        worlds.append(World(tmp_path / "codemode.db", code, executor))
        if options:
            worlds[-1].restart(**options)
        return worlds[-1]

    yield make
    for w in worlds:
        for rt in w.runtimes:
            await rt.store.close()


def output(result: RunResult) -> dict[str, Any]:
    assert not result.interruptions
    parsed: dict[str, Any] = json.loads(str(result.final_output))
    return parsed


async def approve_all(w: World, result: RunResult, *, restore: bool = False) -> RunResult:
    state = result.to_state()
    for item in result.interruptions:
        state.approve(item)
    if restore:
        saved = state.to_json()
        w.restart()
        state = await RunState.from_json(w.agent, saved)
    return await Runner.run(w.agent, state)


async def test_a_pause_is_an_interruption_and_approve_resumes_it(world_of: Any) -> None:
    w = world_of(ONE, by="alice")
    result = await Runner.run(w.agent, "pay ann")
    [item] = result.interruptions
    asked = await pending_actions(w.runtime, item)
    assert asked["pending"] == [{"seq": 1, "connector": "bank", "method": "pay", "args": {"to": "ann", "amount": 5}}]
    assert w.ledger == []
    result = await approve_all(w, result)
    assert output(result)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 5}]
    [run] = await w.runs()
    assert run.key == item.raw_item.call_id  # type: ignore[union-attr]
    assert run.log[1].decision is not None and run.log[1].decision.by == "alice"


async def test_a_second_pause_interrupts_again(world_of: Any) -> None:
    w = world_of(TWO)
    result = await Runner.run(w.agent, "pay both")
    call_id = result.interruptions[0].raw_item.call_id  # type: ignore[union-attr]
    result = await approve_all(w, result)
    [item] = result.interruptions
    assert item.raw_item.call_id == call_id  # type: ignore[union-attr]
    assert [p["seq"] for p in (await pending_actions(w.runtime, item))["pending"]] == [1]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    result = await approve_all(w, result)
    assert output(result)["result"] == ["ann", "bob"]
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runs()) == 1


async def test_a_batch_is_one_interruption_approved_together(world_of: Any) -> None:
    w = world_of(BATCH)
    result = await Runner.run(w.agent, "pay both at once")
    [item] = result.interruptions
    assert [p["seq"] for p in (await pending_actions(w.runtime, item))["pending"]] == [0, 1]
    result = await approve_all(w, result)
    assert output(result)["result"] == ["ann", "bob"]
    assert sorted(e["to"] for e in w.ledger) == ["ann", "bob"] and len(await w.runs()) == 1


async def test_reject_ends_the_run_rejected(world_of: Any) -> None:
    w = world_of(ONE)
    result = await Runner.run(w.agent, "pay ann")
    state = result.to_state()
    state.reject(result.interruptions[0], rejection_message="over budget")
    result = await Runner.run(w.agent, state)
    assert "over budget" in str(result.final_output)
    [run] = await w.runs()
    assert run.status == "rejected" and run.log[1].decision is not None
    assert run.log[1].decision.reason == "over budget"
    assert w.ledger == [] and await w.runtime.pending() == []


async def test_reject_with_resume_lets_the_program_catch_it(world_of: Any) -> None:
    w = world_of(CATCH, resume_on_reject=True)
    result = await Runner.run(w.agent, "pay ann")
    state = result.to_state()
    state.reject(result.interruptions[0], rejection_message="no")
    await Runner.run(w.agent, state)
    [run] = await w.runs()
    assert run.status == "completed" and run.result.startswith("refused: ")
    assert w.ledger == []


async def test_edited_arguments_through_the_runtime_then_resume(world_of: Any) -> None:
    # The SDK's approval carries no arguments, so an edit is given to the runtime by seq (what the
    # interruption showed), and the agent run then resumes with the interruption approved.
    w = world_of(ONE)
    result = await Runner.run(w.agent, "pay ann")
    asked = await pending_actions(w.runtime, result.interruptions[0])
    outcome = await w.runtime.approve(asked["execution_id"], 1, by="bob", args={"to": "ann", "amount": 2})
    assert outcome.status == "completed"
    result = await approve_all(w, result)
    assert output(result)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 2}] and len(await w.runs()) == 1


async def test_the_run_state_survives_a_restart(world_of: Any) -> None:
    w = world_of(TWO)
    result = await Runner.run(w.agent, "pay both")
    result = await approve_all(w, result, restore=True)
    assert len(result.interruptions) == 1 and w.ledger == [{"to": "ann", "amount": 5}]
    result = await approve_all(w, result, restore=True)
    assert output(result)["result"] == ["ann", "bob"]
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runs()) == 1


async def test_a_program_without_gated_calls_runs_once_without_asking(world_of: Any) -> None:
    w = world_of("await bank.balance()")
    result = await Runner.run(w.agent, "balance?")
    assert output(result)["result"] == 100
    [run] = await w.runs()
    assert run.status == "completed" and w.runtime.connectors[0].reads == 1  # type: ignore[attr-defined]
