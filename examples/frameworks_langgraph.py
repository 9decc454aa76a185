"""codemode in LangGraph: the pause is an `interrupt`; `Command(resume=...)` decides it. Run: python examples/frameworks_langgraph.py [dir]"""

import asyncio

from frameworks_common import DB, PROGRAM, Bank
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import START, MessagesState, StateGraph
from langgraph.prebuilt import ToolNode, tools_condition
from langgraph.types import Command

import codemode
from codemode.integrations.langchain import CodemodeTool

# a scripted model: one codemode call, then "done"
call = {"name": "codemode", "args": {"code": PROGRAM}, "id": "call_1", "type": "tool_call"}
model = GenericFakeChatModel(messages=iter([AIMessage("", tool_calls=[call]), AIMessage("done")]))


async def main() -> None:
    runtime = codemode.Runtime([Bank()], store=codemode.SqliteStore(DB))
    graph = StateGraph(MessagesState)
    graph.add_node("agent", lambda state: {"messages": [model.invoke(state["messages"])]})
    graph.add_node("tools", ToolNode([CodemodeTool(runtime)]))
    graph.add_edge(START, "agent")
    graph.add_conditional_edges("agent", tools_condition)
    graph.add_edge("tools", "agent")
    app, config = graph.compile(checkpointer=InMemorySaver()), {"configurable": {"thread_id": "1"}}
    state = await app.ainvoke({"messages": [("user", "Pay Ann 5")]}, config)
    print("interrupt:", state["__interrupt__"][0].value["action_requests"])
    state = await app.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
    print("model sees:", state["messages"][-2].content)


asyncio.run(main())
