"""codemode inside Pydantic AI: pauses are deferred tool approvals, answered by `DeferredToolResults`.

Driven by Pydantic AI's own `FunctionModel` (no network), on real Monty and a real SQLite file."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults, ToolApproved, ToolDenied
from pydantic_ai.messages import ModelMessage, ModelMessagesTypeAdapter, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

import codemode
from codemode.integrations.pydantic_ai import CodemodeToolset

from integrations_ledger import BATCH, CATCH, ONE, TWO, Bank


def scripted(code: str) -> FunctionModel:
    """Calls `codemode(code)` once, then answers with the tool's last result."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1].parts[-1]
        if last.part_kind == "user-prompt":
            return ModelResponse(parts=[ToolCallPart("codemode", {"code": code})])
        content = getattr(last, "content", "")
        return ModelResponse(parts=[TextPart(content if isinstance(content, str) else json.dumps(content))])

    return FunctionModel(respond)


class World:
    """A runtime on one SQLite file; `restart()` builds a new store, runtime and agent on the same file."""

    def __init__(self, path: Path, code: str, executor: codemode.Executor) -> None:
        self.path, self.code, self.executor = path, code, executor
        self.ledger: list[dict[str, Any]] = []
        self.runtimes: list[codemode.Runtime] = []
        self.restart()

    def restart(self, **toolset: Any) -> None:
        self.runtime = codemode.Runtime(
            [Bank(self.ledger)], executor=self.executor, store=codemode.SqliteStore(self.path)
        )
        self.runtimes.append(self.runtime)
        self.agent = Agent(
            scripted(self.code),
            toolsets=[CodemodeToolset(self.runtime, **toolset)],
            output_type=[str, DeferredToolRequests],
        )

    async def runs(self) -> list[codemode.Execution]:
        return await self.runtime.executions()


@pytest.fixture
async def world_of(tmp_path: Path, executor: codemode.Executor) -> AsyncIterator[Any]:
    worlds: list[World] = []

    def make(code: str) -> World:
        worlds.append(World(tmp_path / "codemode.db", code, executor))
        return worlds[-1]

    yield make
    for w in worlds:
        for rt in w.runtimes:
            await rt.store.close()


def requests_of(output: Any) -> DeferredToolRequests:
    assert isinstance(output, DeferredToolRequests), output
    return output


async def test_a_pause_is_a_deferred_approval_and_true_approves_it(world_of: Any) -> None:
    w = world_of(ONE)
    result = await w.agent.run("pay ann")
    req = requests_of(result.output)
    [call] = req.approvals
    meta = req.metadata[call.tool_call_id]
    assert meta["pending"] == [{"seq": 1, "connector": "bank", "method": "pay", "args": {"to": "ann", "amount": 5}}]
    assert w.ledger == []
    results = DeferredToolResults(approvals={call.tool_call_id: True}, metadata={call.tool_call_id: {"by": "alice"}})
    result = await w.agent.run(message_history=result.all_messages(), deferred_tool_results=results)
    assert json.loads(result.output)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 5}]
    [run] = await w.runs()
    assert run.key == call.tool_call_id and run.status == "completed"
    assert run.log[1].decision is not None and run.log[1].decision.by == "alice"
    # The same approval delivered again acts on nothing: no second run, no second payment.
    again = await w.agent.run(message_history=result.all_messages()[:-2], deferred_tool_results=results)
    assert json.loads(again.output)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 5}] and len(await w.runs()) == 1


async def test_a_second_pause_is_a_second_deferred_request(world_of: Any) -> None:
    w = world_of(TWO)
    result = await w.agent.run("pay both")
    first = requests_of(result.output)
    call_id = first.approvals[0].tool_call_id
    result = await w.agent.run(
        message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals={call_id: True})
    )
    second = requests_of(result.output)
    assert second.approvals[0].tool_call_id == call_id
    assert [p["seq"] for p in second.metadata[call_id]["pending"]] == [1]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    result = await w.agent.run(
        message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals={call_id: True})
    )
    assert json.loads(result.output)["result"] == ["ann", "bob"]
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runs()) == 1


async def test_a_batch_is_one_request_listing_every_pending_action(world_of: Any) -> None:
    w = world_of(BATCH)
    result = await w.agent.run("pay both at once")
    req = requests_of(result.output)
    call_id = req.approvals[0].tool_call_id
    assert [p["seq"] for p in req.metadata[call_id]["pending"]] == [0, 1]
    # Approve one, reject the other: the program goes on and the rejected call raises inside it.
    approval = ToolApproved(override_args={"reject": [1], "reason": "not bob"})
    result = await w.agent.run(
        message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals={call_id: approval})
    )
    out = json.loads(result.output)
    assert out["status"] == "error" and "rejected" in out["error"] and "not bob" in out["error"]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    [run] = await w.runs()
    assert run.log[1].decision is not None and run.log[1].decision.kind == "reject"


async def test_a_batch_approved_at_once_runs_both_once(world_of: Any) -> None:
    w = world_of(BATCH)
    result = await w.agent.run("pay both at once")
    call_id = requests_of(result.output).approvals[0].tool_call_id
    result = await w.agent.run(
        message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals={call_id: True})
    )
    assert json.loads(result.output)["result"] == ["ann", "bob"]
    assert sorted(e["to"] for e in w.ledger) == ["ann", "bob"] and len(await w.runs()) == 1


async def test_tool_denied_rejects_the_run(world_of: Any) -> None:
    w = world_of(ONE)
    result = await w.agent.run("pay ann")
    call_id = requests_of(result.output).approvals[0].tool_call_id
    denied = DeferredToolResults(approvals={call_id: ToolDenied("too much")})
    result = await w.agent.run(message_history=result.all_messages(), deferred_tool_results=denied)
    assert result.output == "too much"
    [run] = await w.runs()
    assert run.status == "rejected" and "too much" in (run.error or "")
    assert run.log[1].decision is not None and run.log[1].decision.reason == "too much"
    assert w.ledger == [] and await w.runtime.pending() == []


async def test_tool_denied_with_resume_lets_the_program_catch_it(world_of: Any) -> None:
    w = world_of(CATCH)
    w.restart(resume_on_deny=True)
    result = await w.agent.run("pay ann")
    call_id = requests_of(result.output).approvals[0].tool_call_id
    denied = DeferredToolResults(approvals={call_id: ToolDenied("no")})
    await w.agent.run(message_history=result.all_messages(), deferred_tool_results=denied)
    [run] = await w.runs()
    assert run.status == "completed" and run.result.startswith("refused: ") and "no" in run.result
    assert w.ledger == []


async def test_approved_with_edited_args_runs_them(world_of: Any) -> None:
    w = world_of(ONE)
    result = await w.agent.run("pay ann")
    call_id = requests_of(result.output).approvals[0].tool_call_id
    edit = ToolApproved(override_args={"edits": {1: {"to": "ann", "amount": 3}}})
    result = await w.agent.run(
        message_history=result.all_messages(), deferred_tool_results=DeferredToolResults(approvals={call_id: edit})
    )
    assert json.loads(result.output)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 3}]
    [run] = await w.runs()
    assert run.log[1].decision is not None and run.log[1].decision.args == {"to": "ann", "amount": 3}


async def test_the_approval_survives_a_restart(world_of: Any) -> None:
    w = world_of(TWO)
    result = await w.agent.run("pay both")
    call_id = requests_of(result.output).approvals[0].tool_call_id
    saved = ModelMessagesTypeAdapter.dump_json(result.all_messages())
    w.restart()  # a new store object, runtime, toolset and agent on the same SQLite file
    history = ModelMessagesTypeAdapter.validate_json(saved)
    approve = DeferredToolResults(approvals={call_id: True})
    result = await w.agent.run(message_history=history, deferred_tool_results=approve)
    saved = ModelMessagesTypeAdapter.dump_json(result.all_messages())
    w.restart()
    result = await w.agent.run(
        message_history=ModelMessagesTypeAdapter.validate_json(saved), deferred_tool_results=approve
    )
    assert json.loads(result.output)["result"] == ["ann", "bob"]
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runs()) == 1


async def test_an_approval_for_what_is_no_longer_pending_asks_again(world_of: Any) -> None:
    # The request's metadata passed back names what the human saw; the run moved on meanwhile (seq 0
    # approved elsewhere), so this approval must not approve seq 1, which nobody was shown.
    w = world_of(TWO)
    result = await w.agent.run("pay both")
    req = requests_of(result.output)
    call_id = req.approvals[0].tool_call_id
    execution_id = req.metadata[call_id]["execution_id"]
    assert (await w.runtime.approve(execution_id, 0, by="console")).status == "paused"
    stale = DeferredToolResults(approvals={call_id: True}, metadata=req.metadata)
    result = await w.agent.run(message_history=result.all_messages(), deferred_tool_results=stale)
    again = requests_of(result.output)  # asked anew, about what is pending now
    assert [p["seq"] for p in again.metadata[call_id]["pending"]] == [1]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    assert [p.seq for p in await w.runtime.pending(execution_id)] == [1]
    fresh = DeferredToolResults(approvals={call_id: True}, metadata=again.metadata)
    result = await w.agent.run(message_history=result.all_messages(), deferred_tool_results=fresh)
    assert json.loads(result.output)["result"] == ["ann", "bob"] and len(w.ledger) == 2


async def test_the_model_cannot_pass_approval_overrides_itself(world_of: Any) -> None:
    # Only a human's ToolApproved may carry edits or rejections; a model's own call with them is retried.
    w = world_of(ONE)

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        last = messages[-1].parts[-1]
        if last.part_kind == "user-prompt":
            args = {"code": ONE, "edits": {1: {"to": "eve", "amount": 500}}}
            return ModelResponse(parts=[ToolCallPart("codemode", args)])
        return ModelResponse(parts=[TextPart(str(getattr(last, "content", "")))])

    agent = Agent(
        FunctionModel(respond), toolsets=[CodemodeToolset(w.runtime)], output_type=[str, DeferredToolRequests]
    )
    result = await agent.run("pay")
    assert isinstance(result.output, str) and '"code"' in result.output
    assert await w.runs() == [] and w.ledger == []


async def test_a_program_without_gated_calls_just_returns(world_of: Any) -> None:
    w = world_of("await bank.balance()")
    result = await w.agent.run("balance?")
    assert json.loads(result.output)["result"] == 100
    [run] = await w.runs()
    assert run.status == "completed"
