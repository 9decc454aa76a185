"""Quickstart: a program that reads, pauses for approval, resumes by replay, and leaves an audit trail.

Run it with `scripts/quickstart` (or `python examples/quickstart.py [directory]`). It ends with a run
waiting for a human: `scripts/quickstart` then opens the approval console on it, with
`codemode console --app examples.quickstart:app` (the `app` factory below).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

import codemode


class Task(TypedDict):
    id: int
    title: str
    done: bool


class Tasks(codemode.Connector):
    """A to-do list kept in its own SQLite table: a real side effect to approve and undo."""

    name = "tasks"
    instructions = "The team's to-do list."

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT, done INTEGER)")

    @codemode.tool
    def list_tasks(self, include_done: bool = False) -> list[Task]:
        """List tasks, oldest first.

        Args:
            include_done: Also list finished tasks.
        """
        rows = self.db.execute("SELECT id, title, done FROM tasks WHERE done = 0 OR ? ORDER BY id", (include_done,))
        return [{"id": r[0], "title": r[1], "done": bool(r[2])} for r in rows]

    @codemode.tool(requires_approval=True)
    def add_task(self, title: str) -> Task:
        """Add a task. A human approves every new task.

        Args:
            title: What needs doing.
        """
        cur = self.db.execute("INSERT INTO tasks (title, done) VALUES (?, 0)", (title,))
        return {"id": int(cur.lastrowid or 0), "title": title, "done": False}

    @add_task.revert
    def _remove_task(self, args: dict[str, object], result: Task) -> None:
        self.db.execute("DELETE FROM tasks WHERE id = ?", (result["id"],))


PROGRAM = """
open_tasks = await tasks.list_tasks()
print(f"{len(open_tasks)} open task(s) before")
if not any(t["title"] == "Write the release notes" for t in open_tasks):
    await tasks.add_task(title="Write the release notes")
return [t["title"] for t in await tasks.list_tasks()]
"""


async def main(workdir: Path) -> None:
    connector = Tasks(workdir / "tasks.db")
    connector.db.execute("INSERT INTO tasks (title, done) VALUES ('Triage the inbox', 0)")
    async with codemode.Runtime([connector], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
        print("The model's program:", PROGRAM, sep="\n")
        outcome = await runtime.execute(PROGRAM)
        print(f"1. execute -> {outcome.status}")
        for action in outcome.pending:
            print(f"   pending: {action.connector}.{action.method}({action.args}) at seq {action.seq}")

        print("2. ann approves the action she was shown, by its seq; the run resumes by replay")
        print("   (the first read comes from the log; the approved add_task runs once)")
        action = outcome.pending[0]
        outcome = await runtime.approve(action.execution_id, action.seq, by="ann", reason="on the release checklist")
        print(f"   approve -> {outcome.status}: {outcome.result}  logs={outcome.logs}")

        print("3. the audit trail:")
        execution = await runtime.execution(outcome.execution_id)
        assert execution is not None
        print(f"   {execution.id}  status={execution.status}")
        for entry in execution.log:
            print(
                f"   seq {entry.seq}: {entry.connector}.{entry.method}({entry.args}) [{entry.state}] -> {entry.result}"
            )
            if entry.decision is not None:
                print(f"          {entry.decision.kind} by {entry.decision.by}: {entry.decision.reason}")

        print("4. changed our minds: roll the run back (reverts every applied action that has a revert)")
        report = await runtime.rollback(outcome.execution_id, by="ann")
        titles = [t["title"] for t in connector.list_tasks(include_done=True)]
        kept = sorted(report.irreversible)  # the reads: calls with no revert
        print(f"   reverted seqs {report.reverted}, irreversible {kept}; tasks now: {titles}")

        print("5. the model runs its program again: it pauses, and waits for you")
        outcome = await runtime.execute(PROGRAM, metadata={"demo": "quickstart"})
        for action in outcome.pending:
            print(f"   pending: {action.connector}.{action.method}({action.args}) at seq {action.seq}")
        print(f"   decide it in the console: codemode console --app examples.quickstart:app ({workdir})")


def app() -> codemode.Runtime:
    """The quickstart's runtime for the CLI and the console: `--app examples.quickstart:app`, run from the
    repository's root, on the directory in $CODEMODE_QUICKSTART_DIR (default `.quickstart`)."""
    workdir = Path(os.environ.get("CODEMODE_QUICKSTART_DIR", ".quickstart"))
    return codemode.Runtime([Tasks(workdir / "tasks.db")], store=codemode.SqliteStore(workdir / "codemode.db"))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        target.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(target))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
