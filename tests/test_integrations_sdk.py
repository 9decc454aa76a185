"""CodeTool for hand-written loops: tool definitions in the OpenAI and Anthropic formats, and `handle`.

Uses the SDKs' own types (`openai` comes with openai-agents, `anthropic` is a dev dependency)."""

from __future__ import annotations

import json
from typing import Any

from anthropic.types import ToolParam, ToolUseBlock
from openai.types.chat import ChatCompletionFunctionToolParam, ChatCompletionMessageToolCall
from openai.types.responses import FunctionToolParam, ResponseFunctionToolCall
from pydantic import TypeAdapter

import codemode

from conftest import RuntimeFactory
from integrations_ledger import ONE, Bank


def test_tool_definitions_validate_as_each_sdk_s_param_type(runtime: codemode.Runtime) -> None:
    tool = runtime.tool()
    chat = tool.to_openai()
    TypeAdapter(ChatCompletionFunctionToolParam).validate_python(chat)
    assert chat["function"]["name"] == "codemode" and chat["function"]["parameters"] == tool.input_schema
    assert chat["function"]["description"] == tool.description
    responses = tool.to_openai(api="responses")
    TypeAdapter(FunctionToolParam).validate_python(responses)
    assert responses["name"] == "codemode" and responses["parameters"] == tool.input_schema
    anthropic = tool.to_anthropic()
    TypeAdapter(ToolParam).validate_python(anthropic)
    assert anthropic == {"name": "codemode", "description": tool.description, "input_schema": tool.input_schema}


async def test_handle_takes_each_sdk_s_tool_call_and_keys_the_run_by_its_id(make_runtime: RuntimeFactory) -> None:
    ledger: list[dict[str, Any]] = []
    runtime = make_runtime(Bank(ledger))
    tool = runtime.tool()
    calls: list[Any] = [
        ChatCompletionMessageToolCall(
            id="call_chat", type="function", function={"name": "codemode", "arguments": json.dumps({"code": ONE})}
        ),
        ResponseFunctionToolCall(
            type="function_call", call_id="call_resp", name="codemode", arguments=json.dumps({"code": ONE})
        ),
        ToolUseBlock(type="tool_use", id="toolu_1", name="codemode", input={"code": ONE}),
        {"type": "tool_use", "id": "toolu_2", "name": "codemode", "input": {"code": ONE}},
        {
            "id": "call_dict",
            "type": "function",
            "function": {"name": "codemode", "arguments": json.dumps({"code": ONE})},
        },
    ]
    for call in calls:
        out = json.loads(await tool.handle(call))
        assert out["status"] == "paused" and out["pending"][0]["args"] == {"to": "ann", "amount": 5}
        again = json.loads(await tool.handle(call))  # the same call handled twice: the same run
        assert again["execution_id"] == out["execution_id"]
    runs = await runtime.executions()
    assert sorted(r.key or "" for r in runs) == ["call_chat", "call_dict", "call_resp", "toolu_1", "toolu_2"]
    # Approve one by seq, then the same tool call reports the completed run; nothing ran twice.
    chat_run = next(r for r in runs if r.key == "call_chat")
    assert (await runtime.approve(chat_run.id, 1)).status == "completed"
    assert json.loads(await tool.handle(calls[0]))["status"] == "completed"
    assert ledger == [{"to": "ann", "amount": 5}]


async def test_handle_reports_bad_arguments_as_an_error_result(runtime: codemode.Runtime) -> None:
    tool = runtime.tool()
    for arguments in ("not json", json.dumps({"program": "1"})):
        call = {"id": "c", "type": "function", "function": {"name": "codemode", "arguments": arguments}}
        out = json.loads(await tool.handle(call))
        assert out["status"] == "error" and '"code"' in out["error"]
    assert await runtime.executions() == []
    out = json.loads(await tool.handle({"type": "tool_use", "id": "t", "name": "codemode", "input": {"code": "1 + 1"}}))
    assert out == {"status": "completed", "execution_id": out["execution_id"], "result": 2}
