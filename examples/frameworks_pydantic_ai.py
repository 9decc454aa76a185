"""codemode in Pydantic AI: the pause is a deferred tool approval; `True` approves it.

Run: python examples/frameworks_pydantic_ai.py [dir]
"""

import asyncio

from frameworks_common import DB, Bank, pydantic_ai_model
from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults

import codemode
from codemode.integrations.pydantic_ai import CodemodeToolset


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    agent = Agent(pydantic_ai_model(), toolsets=[CodemodeToolset(runtime)], output_type=[str, DeferredToolRequests])
    result = await agent.run("Pay Ann 5")
    print("pending:", next(iter(result.output.metadata.values()))["pending"])
    results = DeferredToolResults(approvals={call.tool_call_id: True for call in result.output.approvals})
    result = await agent.run(message_history=result.all_messages(), deferred_tool_results=results)
    print("model sees:", result.output)


asyncio.run(main())
