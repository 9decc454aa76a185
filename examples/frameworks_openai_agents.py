"""codemode in the OpenAI Agents SDK: the pause is a run interruption; `state.approve` resumes it.

Run: python examples/frameworks_openai_agents.py [dir]
"""

import asyncio

from agents import Agent, Runner
from frameworks_common import DB, Bank, openai_agents_model

import codemode
from codemode.integrations.openai_agents import codemode_tool


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    agent = Agent(name="ops", model=openai_agents_model(), tools=[codemode_tool(runtime)])
    result = await Runner.run(agent, "Pay Ann 5")
    state = result.to_state()
    for item in result.interruptions:
        print("approve:", item.tool_name, item.raw_item.arguments)
        state.approve(item)
    result = await Runner.run(agent, state)
    print("model sees:", result.final_output)


asyncio.run(main())
