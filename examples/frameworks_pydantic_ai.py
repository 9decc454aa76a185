"""codemode in Pydantic AI: the pause is a deferred tool approval; `True` approves it. Run: python examples/frameworks_pydantic_ai.py [dir]"""

import asyncio
import json

from frameworks_common import DB, PROGRAM, Bank
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models.function import FunctionModel

import codemode
from codemode.integrations.pydantic_ai import CodemodeToolset


def model(messages, info):  # a scripted model: one codemode call, then it repeats the tool's result
    if len(messages) == 1:
        return ModelResponse(parts=[ToolCallPart("codemode", {"code": PROGRAM})])
    return ModelResponse(parts=[TextPart(json.dumps(messages[-1].parts[0].content))])


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    agent = Agent(FunctionModel(model), toolsets=[CodemodeToolset(runtime)], output_type=[str, DeferredToolRequests])
    result = await agent.run("Pay Ann 5")
    print("pending:", list(result.output.metadata.values())[0]["pending"])
    results = DeferredToolResults(approvals={call.tool_call_id: True for call in result.output.approvals})
    result = await agent.run(message_history=result.all_messages(), deferred_tool_results=results)
    print("model sees:", result.output)


asyncio.run(main())
