"""What the three framework examples share: a bank whose `pay` needs approval, and the program a model writes."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import codemode

PROGRAM = 'await bank.pay(to="ann", amount=5)'
DB = str(Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "codemode.db")


class Bank(codemode.Connector):
    name = "bank"

    @codemode.tool(requires_approval=True)
    def pay(self, to: str, amount: int) -> str:
        """Pay someone."""
        print(f"PAID {amount} to {to}")
        return f"paid {amount} to {to}"


# Scripted stand-ins for a real LLM (no network, no key): each calls `codemode(PROGRAM)` once, then
# answers with the tool's result. With a real model, pass "openai:gpt-5", `model="gpt-5"`, etc. instead.


def pydantic_ai_model() -> object:
    import json

    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.models.function import FunctionModel

    def respond(messages: list, info: object) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("codemode", {"code": PROGRAM})])
        return ModelResponse(parts=[TextPart(json.dumps(messages[-1].parts[0].content))])

    return FunctionModel(respond)


def openai_agents_model() -> object:
    import json

    from agents import Model, ModelResponse, Usage
    from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

    class Scripted(Model):
        async def get_response(self, system_instructions, input, *args, **kwargs):
            if "output" not in input[-1]:
                arguments = json.dumps({"code": PROGRAM})
                call_id = f"call_{uuid.uuid4().hex}"  # providers give each call a fresh id: the run's key
                call = ResponseFunctionToolCall(
                    type="function_call", call_id=call_id, name="codemode", arguments=arguments
                )
                return ModelResponse(output=[call], usage=Usage(), response_id=None)
            text = ResponseOutputText(type="output_text", text=input[-1]["output"], annotations=[])
            message = ResponseOutputMessage(
                id="m", type="message", role="assistant", status="completed", content=[text]
            )
            return ModelResponse(output=[message], usage=Usage(), response_id=None)

        def stream_response(self, *args, **kwargs):
            raise NotImplementedError

    return Scripted()


def langchain_model() -> object:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    class Scripted(GenericFakeChatModel):
        def bind_tools(self, tools, **kwargs):
            return self  # the script already knows its one tool call

    call = {"name": "codemode", "args": {"code": PROGRAM}, "id": f"call_{uuid.uuid4().hex}", "type": "tool_call"}
    return Scripted(messages=iter([AIMessage("", tool_calls=[call]), AIMessage("done")]))
