"""An application to serve over MCP: a team's to-do list, where every new task needs a human's approval.

Serve it to an MCP client (Claude Desktop, an IDE, an agent) over stdio:

    python -m codemode.server.mcp --app mcp_server_app:runtime        # run from examples/

or over streamable HTTP on 127.0.0.1 (the client connects to http://127.0.0.1:8765/mcp):

    python -m codemode.server.mcp --app mcp_server_app:runtime --http 8765

`TASKS_DB` and `CODEMODE_DB` choose the two SQLite files (default: beside this file). Every task the
connector really adds is also appended to `TASKS_DB` + ".ledger", one line each, so you can count
what ran outside the runtime's own log.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, TypedDict

import codemode

HERE = Path(__file__).resolve().parent


class Task(TypedDict):
    id: int
    title: str


class Tasks(codemode.Connector):
    """The to-do list, in its own SQLite table."""

    name = "tasks"
    instructions = "The team's to-do list."

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS tasks (id INTEGER PRIMARY KEY, title TEXT)")

    @codemode.tool
    def list_tasks(self) -> list[Task]:
        """List the open tasks, oldest first."""
        return [{"id": r[0], "title": r[1]} for r in self.db.execute("SELECT id, title FROM tasks ORDER BY id")]

    @codemode.tool(requires_approval=True)
    def add_task(self, title: str, ctx: codemode.ToolContext) -> Task:
        """Add a task. A human approves every new task.

        Args:
            title: What needs doing.
        """
        cur = self.db.execute("INSERT INTO tasks (title) VALUES (?)", (title,))
        with open(f"{self.path}.ledger", "a", encoding="utf-8") as ledger:
            ledger.write(f"{ctx.execution_id} {ctx.seq} {title}\n")
        return {"id": int(cur.lastrowid or 0), "title": title}

    @add_task.revert
    def _remove_task(self, args: dict[str, Any], result: Task) -> None:
        self.db.execute("DELETE FROM tasks WHERE id = ?", (result["id"],))


def make_runtime() -> codemode.Runtime:
    """A zero-argument factory: `--app mcp_server_app:make_runtime` works as well as `:runtime`."""
    tasks = Tasks(Path(os.environ.get("TASKS_DB", HERE / "tasks.db")))
    store = codemode.SqliteStore(os.environ.get("CODEMODE_DB", HERE / "codemode.db"))
    return codemode.Runtime([tasks], store=store)


runtime = make_runtime()
