"""codemode in LangGraph: the pause is an `interrupt`; `Command(resume=...)` decides it.

Run: python examples/frameworks_langgraph.py [dir]
"""

import asyncio

from frameworks_common import DB, Bank, langchain_model
from langchain.agents import create_agent
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

import codemode
from codemode.integrations.langchain import CodemodeTool


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    agent = create_agent(langchain_model(), tools=[CodemodeTool(runtime)], checkpointer=InMemorySaver())
    config = {"configurable": {"thread_id": "1"}}
    state = await agent.ainvoke({"messages": [("user", "Pay Ann 5")]}, config)
    print("interrupt:", state["__interrupt__"][0].value["action_requests"])
    state = await agent.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    print("model sees:", state["messages"][-2].content)


asyncio.run(main())
