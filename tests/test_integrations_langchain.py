"""codemode inside LangChain / LangGraph: a pause is a LangGraph `interrupt`, `Command(resume=...)` decides it.

Driven by LangChain's `GenericFakeChatModel` (no network) in a LangGraph graph with `ToolNode`, on real
Monty and real SQLite files for both the codemode store and the LangGraph checkpointer."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

import codemode
from codemode.integrations.langchain import CodemodeTool

from integrations_ledger import BATCH, CATCH, ONE, TWO, Bank


def build_graph(runtime: codemode.Runtime, code: str | None, checkpointer: Any, **options: Any) -> Any:
    """model -> tools -> model: the model calls `codemode(code)` once (when `code` is given), then says done."""
    replies: list[AIMessage] = []
    if code is not None:
        call = {"name": "codemode", "args": {"code": code}, "id": "call_" + uuid.uuid4().hex, "type": "tool_call"}
        replies.append(AIMessage("", tool_calls=[call]))
    replies.append(AIMessage("done"))
    model = GenericFakeChatModel(messages=iter(replies))

    async def agent(state: MessagesState) -> dict[str, Any]:
        return {"messages": [await model.ainvoke(state["messages"])]}

    graph = StateGraph(MessagesState)
    graph.add_node("agent", agent)
    graph.add_node("tools", ToolNode([CodemodeTool(runtime, **options)]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    return graph.compile(checkpointer=checkpointer)


class World:
    def __init__(self, path: Path, code: str, executor: codemode.Executor, **options: Any) -> None:
        self.ledger: list[dict[str, Any]] = []
        self.runtime = codemode.Runtime([Bank(self.ledger)], executor=executor, store=codemode.SqliteStore(path))
        self.graph = build_graph(self.runtime, code, InMemorySaver(), **options)
        self.config: dict[str, Any] = {"configurable": {"thread_id": "t1"}}

    async def start(self) -> dict[str, Any]:
        state: dict[str, Any] = await self.graph.ainvoke({"messages": [("user", "go")]}, self.config)
        return state

    async def resume(self, value: Any) -> dict[str, Any]:
        state: dict[str, Any] = await self.graph.ainvoke(Command(resume=value), self.config)
        return state


@pytest.fixture
async def world_of(tmp_path: Path, executor: codemode.Executor) -> AsyncIterator[Any]:
    worlds: list[World] = []

    def make(code: str, **options: Any) -> World:
        worlds.append(World(tmp_path / "codemode.db", code, executor, **options))
        return worlds[-1]

    yield make
    for w in worlds:
        await w.runtime.store.close()


def asked(state: dict[str, Any]) -> dict[str, Any]:
    [interrupt] = state["__interrupt__"]
    value: dict[str, Any] = interrupt.value
    return value


def tool_result(state: dict[str, Any]) -> dict[str, Any]:
    assert "__interrupt__" not in state
    [message] = [m for m in state["messages"] if isinstance(m, ToolMessage)]
    parsed: dict[str, Any] = json.loads(str(message.content))
    return parsed


APPROVE = {"decisions": [{"type": "approve"}]}


async def test_a_pause_is_an_interrupt_and_approve_resumes_it(world_of: Any) -> None:
    w = world_of(ONE)
    request = asked(await w.start())
    assert request["action_requests"] == [
        {
            "name": "bank.pay",
            "args": {"to": "ann", "amount": 5},
            "description": request["action_requests"][0]["description"],
        }
    ]
    assert [p["seq"] for p in request["pending"]] == [1] and w.ledger == []
    state = await w.resume({**APPROVE, "by": "alice"})
    assert tool_result(state)["status"] == "completed" and state["messages"][-1].content == "done"
    assert w.ledger == [{"to": "ann", "amount": 5}]
    [run] = await w.runtime.executions()
    assert run.key == state["messages"][1].tool_calls[0]["id"]
    assert run.log[1].decision is not None and run.log[1].decision.by == "alice"


async def test_a_second_pause_is_a_second_interrupt(world_of: Any) -> None:
    w = world_of(TWO)
    assert [p["seq"] for p in asked(await w.start())["pending"]] == [0]
    state = await w.resume(APPROVE)
    assert [p["seq"] for p in asked(state)["pending"]] == [1]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    state = await w.resume(True)
    assert tool_result(state)["result"] == ["ann", "bob"]
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runtime.executions()) == 1


async def test_a_batch_is_one_interrupt_with_a_decision_per_action(world_of: Any) -> None:
    w = world_of(BATCH)
    request = asked(await w.start())
    assert [a["name"] for a in request["action_requests"]] == ["bank.pay", "bank.pay"]
    state = await w.resume({"decisions": [{"type": "approve"}, {"type": "approve"}]})
    assert tool_result(state)["result"] == ["ann", "bob"]
    assert sorted(e["to"] for e in w.ledger) == ["ann", "bob"] and len(await w.runtime.executions()) == 1


async def test_reject_ends_the_run_rejected(world_of: Any) -> None:
    w = world_of(ONE)
    await w.start()
    state = await w.resume({"decisions": [{"type": "reject", "message": "over budget"}]})
    out = tool_result(state)
    assert out["status"] == "error" and "over budget" in out["error"]
    [run] = await w.runtime.executions()
    assert run.status == "rejected" and w.ledger == []


async def test_reject_with_resume_lets_the_program_catch_it(world_of: Any) -> None:
    w = world_of(CATCH, resume_on_reject=True)
    await w.start()
    state = await w.resume({"decisions": [{"type": "reject", "message": "no"}]})
    assert tool_result(state)["result"].startswith("refused: ") and w.ledger == []


async def test_an_edit_runs_the_edited_arguments(world_of: Any) -> None:
    w = world_of(ONE)
    await w.start()
    edit = {"type": "edit", "edited_action": {"name": "bank.pay", "args": {"to": "ann", "amount": 1}}}
    state = await w.resume({"decisions": [edit]})
    assert tool_result(state)["status"] == "completed"
    assert w.ledger == [{"to": "ann", "amount": 1}]
    [run] = await w.runtime.executions()
    assert run.log[1].decision is not None and run.log[1].decision.args == {"to": "ann", "amount": 1}


async def test_a_restart_between_pause_and_approval(tmp_path: Path, executor: codemode.Executor) -> None:
    # Two pauses; each answer is given to a new graph, a new checkpointer connection and a new runtime
    # on the same two SQLite files.
    ledger: list[dict[str, Any]] = []
    config: dict[str, Any] = {"configurable": {"thread_id": "t1"}}
    codemode_db, graph_db = str(tmp_path / "codemode.db"), str(tmp_path / "graph.db")

    async def session(code: str | None, value: Any) -> dict[str, Any]:
        runtime = codemode.Runtime([Bank(ledger)], executor=executor, store=codemode.SqliteStore(codemode_db))
        try:
            async with AsyncSqliteSaver.from_conn_string(graph_db) as saver:
                graph = build_graph(runtime, code, saver)
                state: dict[str, Any] = await graph.ainvoke(value, config)
                runs = await runtime.executions()
                assert len(runs) == 1
                return state
        finally:
            await runtime.store.close()

    assert [p["seq"] for p in asked(await session(TWO, {"messages": [("user", "go")]}))["pending"]] == [0]
    assert [p["seq"] for p in asked(await session(None, Command(resume=APPROVE)))["pending"]] == [1]
    assert ledger == [{"to": "ann", "amount": 5}]
    state = await session(None, Command(resume=APPROVE))
    assert tool_result(state)["result"] == ["ann", "bob"]
    assert ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]


async def test_outside_a_graph_a_pause_is_the_tool_result(world_of: Any) -> None:
    w = world_of(ONE)
    tool = CodemodeTool(w.runtime)
    call = {"name": "codemode", "args": {"code": ONE}, "id": "call_plain", "type": "tool_call"}
    message = await tool.ainvoke(call)
    out = json.loads(message.content)
    assert out["status"] == "paused" and out["pending"][0]["seq"] == 1
    assert "tool_call_id" not in tool.tool_call_schema.model_json_schema()["properties"]
    again = json.loads((await tool.ainvoke(call)).content)
    assert again["execution_id"] == out["execution_id"] and len(await w.runtime.executions()) == 1


async def test_a_resume_for_what_is_no_longer_pending_asks_again(world_of: Any) -> None:
    w = world_of(TWO)
    request = asked(await w.start())
    assert (await w.runtime.approve(request["execution_id"], 0, by="console")).status == "paused"
    state = await w.resume({**APPROVE, "pending": request["pending"]})
    again = asked(state)  # asked anew, about what is pending now
    assert [p["seq"] for p in again["pending"]] == [1]
    assert w.ledger == [{"to": "ann", "amount": 5}]
    state = await w.resume({**APPROVE, "pending": again["pending"]})
    assert tool_result(state)["result"] == ["ann", "bob"] and len(w.ledger) == 2
    assert len(await w.runtime.executions()) == 1


async def test_a_second_pause_resumed_by_interrupt_id(world_of: Any) -> None:
    # `Command(resume={interrupt.id: value})`, LangGraph's form for naming the interrupt answered.
    w = world_of(TWO)
    state = await w.start()
    for expected in ([1], None):
        [interrupt] = state["__interrupt__"]
        state = await w.resume({interrupt.id: APPROVE})
        if expected is None:
            assert tool_result(state)["result"] == ["ann", "bob"]
        else:
            assert [p["seq"] for p in asked(state)["pending"]] == expected
    assert w.ledger == [{"to": "ann", "amount": 5}, {"to": "bob", "amount": 7}]
    assert len(await w.runtime.executions()) == 1


class ScriptedChat(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self  # the script already holds its tool calls


async def test_parallel_codemode_calls_in_create_agent(tmp_path: Path, executor: codemode.Executor) -> None:
    # Two codemode calls in one model turn: LangChain's create_agent runs each as its own task, so each
    # raises its own interrupt; answers by interrupt id reach the right run, through a second pause too.
    ledger: list[dict[str, Any]] = []
    runtime = codemode.Runtime([Bank(ledger)], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    codes = [TWO, 'await bank.pay(to="cy", amount=9)']
    calls = [
        {"name": "codemode", "args": {"code": c}, "id": f"call_{i}", "type": "tool_call"} for i, c in enumerate(codes)
    ]
    model = ScriptedChat(messages=iter([AIMessage("", tool_calls=calls), AIMessage("done")]))
    agent = create_agent(model, tools=[CodemodeTool(runtime)], checkpointer=InMemorySaver())
    config: dict[str, Any] = {"configurable": {"thread_id": "p"}}
    state = await agent.ainvoke({"messages": [("user", "go")]}, config)
    rounds = []
    for _ in range(5):  # two rounds expected; a miscounted answer would ask forever
        if not state.get("__interrupt__"):
            break
        rounds.append(sorted(p["args"]["to"] for i in state["__interrupt__"] for p in i.value["pending"]))
        state = await agent.ainvoke(Command(resume={i.id: APPROVE for i in state["__interrupt__"]}), config)
    try:
        assert rounds == [["ann", "cy"], ["bob"]]
        assert sorted(e["to"] for e in ledger) == ["ann", "bob", "cy"]
        runs = await runtime.executions()
        assert sorted(r.key or "" for r in runs) == ["call_0", "call_1"] and {r.status for r in runs} == {"completed"}
    finally:
        await runtime.store.close()


async def test_a_program_without_gated_calls_runs_without_interrupting(world_of: Any) -> None:
    w = world_of("await bank.balance()")
    state = await w.start()
    assert tool_result(state)["result"] == 100 and len(await w.runtime.executions()) == 1
