"""One step of an agent conversation in its own OS process, for the restart tests.

`python integrations_worker.py FRAMEWORK STEP DIR`: FRAMEWORK is `openai-agents` or `pydantic-ai`; STEP
`start` runs the agent until it pauses, `approve` approves what it asked and resumes. The framework's
state (RunState JSON, or the message history JSON) and the ledger of payments are files in DIR, the
codemode store is DIR/codemode.db; the step prints `paused` or the tool's final output."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import codemode

from integrations_ledger import TWO, Bank


class FileLedger(list[dict[str, Any]]):
    """A ledger that survives the process: every payment is appended to a file."""

    def __init__(self, path: Path) -> None:
        super().__init__(json.loads(line) for line in (path.read_text().splitlines() if path.exists() else []))
        self.path = path

    def append(self, entry: dict[str, Any]) -> None:
        super().append(entry)
        with self.path.open("a") as f:
            f.write(json.dumps(entry) + "\n")


async def openai_agents(step: str, workdir: Path, runtime: codemode.Runtime) -> str:
    from agents import Agent, Runner, RunState

    from codemode.integrations.openai_agents import codemode_tool
    from test_integrations_openai_agents import Scripted

    agent = Agent(name="ops", model=Scripted(TWO), tools=[codemode_tool(runtime)])
    saved = workdir / "run_state.json"
    if step == "start":
        result = await Runner.run(agent, "pay both")
    else:
        state = await RunState.from_json(agent, json.loads(saved.read_text()))
        for item in state.get_interruptions():
            state.approve(item)
        result = await Runner.run(agent, state)
    if result.interruptions:
        saved.write_text(json.dumps(result.to_state().to_json()))
        return "paused"
    return str(result.final_output)


async def pydantic_ai(step: str, workdir: Path, runtime: codemode.Runtime) -> str:
    from pydantic_ai import Agent, DeferredToolRequests, DeferredToolResults
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    from codemode.integrations.pydantic_ai import CodemodeToolset
    from test_integrations_pydantic_ai import scripted

    agent = Agent(scripted(TWO), toolsets=[CodemodeToolset(runtime)], output_type=[str, DeferredToolRequests])
    saved = workdir / "messages.json"
    if step == "start":
        result = await agent.run("pay both")
    else:
        history = ModelMessagesTypeAdapter.validate_json(saved.read_bytes())
        asked = json.loads((workdir / "asked.json").read_text())
        results = DeferredToolResults(approvals={call_id: True for call_id in asked}, metadata=asked)
        result = await agent.run(message_history=history, deferred_tool_results=results)
    saved.write_bytes(ModelMessagesTypeAdapter.dump_json(result.all_messages()))
    if isinstance(result.output, DeferredToolRequests):
        (workdir / "asked.json").write_text(json.dumps(result.output.metadata))
        return "paused"
    return str(result.output)


async def main(framework: str, step: str, workdir: Path) -> None:
    bank = Bank(FileLedger(workdir / "ledger.jsonl"))
    async with codemode.Runtime([bank], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
        run = openai_agents if framework == "openai-agents" else pydantic_ai
        print(await run(step, workdir, runtime))
        print(len(await runtime.executions()))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
