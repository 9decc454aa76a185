"""codemode in the OpenAI Agents SDK: the pause is a run interruption; `state.approve` resumes it. Run: python examples/frameworks_openai_agents.py [dir]"""

import asyncio
import json

from agents import Agent, Model, ModelResponse, Runner, Usage
from frameworks_common import DB, PROGRAM, Bank
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import codemode
from codemode.integrations.openai_agents import codemode_tool


class Scripted(Model):  # a scripted model: one codemode call, then it repeats the tool's output
    async def get_response(self, system_instructions, input, *args, **kwargs):
        if "output" not in input[-1]:
            arguments = json.dumps({"code": PROGRAM})
            call = ResponseFunctionToolCall(type="function_call", call_id="call_1", name="codemode", arguments=arguments)
            return ModelResponse(output=[call], usage=Usage(), response_id=None)
        text = ResponseOutputText(type="output_text", text=input[-1]["output"], annotations=[])
        message = ResponseOutputMessage(id="m", type="message", role="assistant", status="completed", content=[text])
        return ModelResponse(output=[message], usage=Usage(), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    agent = Agent(name="ops", model=Scripted(), tools=[codemode_tool(runtime)])
    result = await Runner.run(agent, "Pay Ann 5")
    state = result.to_state()
    for item in result.interruptions:
        print("approve:", item.tool_name, item.raw_item.arguments)
        state.approve(item)
    result = await Runner.run(agent, state)
    print("model sees:", result.final_output)


asyncio.run(main())
