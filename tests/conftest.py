"""Shared fixtures: the `items` connector every runtime test uses, on real Monty and real SQLite files."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import codemode
from codemode import Connector, ToolContext, tool


class Items(Connector):
    """A small item store with one tool for every runtime behaviour under test."""

    name = "items"
    instructions = "Manage the item store."

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.deleted: list[dict[str, Any]] = []
        self.counts: dict[str, int] = {}
        self.reads = 0
        self.disposed: list[tuple[str, str]] = []
        self.pass_ends: list[tuple[str, str]] = []

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    @tool
    async def list_items(self) -> list[dict[str, Any]]:
        """List every item."""
        self._count("list_items")
        return list(self.items)

    @tool(replay="reexecute")
    async def read_counter(self) -> dict[str, int]:
        """Read a counter that changes on every read."""
        self.reads += 1
        return {"reads": self.reads}

    @tool
    async def get_bytes(self) -> bytes:
        """Five raw bytes."""
        self._count("get_bytes")
        return bytes([1, 2, 3, 4, 5])

    @tool
    async def big_result(self) -> str:
        """A result too large to record."""
        return "x" * 1_100_000

    @tool
    async def session_id(self, ctx: ToolContext) -> str:
        """The id of the run calling this tool."""
        return ctx.execution_id

    @tool(requires_approval=True)
    async def create_item(self, title: str) -> dict[str, Any]:
        """Create an item.

        Args:
            title: The item's title.
        """
        self._count("create_item")
        item = {"id": len(self.items) + 1, "title": title}
        self.items.append(item)
        return item

    @create_item.revert
    async def _delete_item(self, args: dict[str, Any], result: dict[str, Any]) -> None:
        self.items = [i for i in self.items if i["id"] != result["id"]]
        self.deleted.append(result)

    @tool
    async def boom(self) -> None:
        """Always fails."""
        raise RuntimeError("connector boom")

    @tool
    async def add_note(self, text: str) -> int:
        """Add a note (no approval needed, but it can be undone)."""
        self.notes.append(text)
        return len(self.notes)

    @add_note.revert
    async def _undo_note(self, args: dict[str, Any], result: int, ctx: ToolContext) -> None:
        self.notes[result - 1] = "__reverted__"

    async def on_pass_end(self, execution_id: str, status: str) -> None:
        self.pass_ends.append((execution_id, status))

    async def dispose_execution(self, execution_id: str, status: str) -> None:
        self.disposed.append((execution_id, status))


def child_pids() -> list[int]:
    """Processes whose parent is this one (Linux /proc): the sandbox workers, for crash tests."""
    me = os.getpid()
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                children.append(int(entry.name))
    return children


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "codemode.db"


@pytest.fixture
def items() -> Items:
    return Items()


RuntimeFactory = Callable[..., codemode.Runtime]


@pytest.fixture
def language() -> str:
    """The sandbox language; test modules that run on both executors override this with params."""
    return "python"


def program(language: str, python: str, javascript: str) -> str:
    """The same test program in the language of the runtime under test."""
    return python if language == "python" else javascript


def new_executor(language: str, **options: Any) -> codemode.Executor:
    if language == "python":
        return codemode.MontyExecutor(**options)
    return codemode.DenoExecutor(**options)


@pytest.fixture
async def executor(language: str) -> AsyncIterator[codemode.Executor]:
    made = new_executor(language, timeout=20)
    yield made
    await made.aclose()


@pytest.fixture
def store_kind() -> str:
    """The store backend; modules with `BOTH_STORES = True` run every test on each (see below)."""
    return "sqlite"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Modules that set `BOTH_STORES = True` run on SQLite and on a real PostgreSQL server; a test
    marked `sqlite_only` (it opens the SQLite file itself) runs on SQLite alone."""
    if "store_kind" in metafunc.fixturenames and getattr(metafunc.module, "BOTH_STORES", False):
        only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
        metafunc.parametrize("store_kind", ["sqlite"] if only_sqlite else ["sqlite", "postgres"])


_pg_schemas: dict[Path, str] = {}


def new_store(store_kind: str, path: Path) -> codemode.Store:
    """A store of the given backend; stores made for one `path` share one database."""
    if store_kind == "sqlite":
        return codemode.SqliteStore(path)
    from postgres_server import shared_server

    server = shared_server()
    if path not in _pg_schemas:
        _pg_schemas[path] = server.new_schema()
    return codemode.PostgresStore(server.dsn(_pg_schemas[path]))


def execute_sql(store_kind: str, path: Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Change the database behind the runtime's back (another writer, a crash's leftovers): `?` placeholders."""
    if store_kind == "sqlite":
        import sqlite3

        conn = sqlite3.connect(path)
        try:
            with conn:  # commits
                conn.execute(sql, params)
        finally:
            conn.close()
        return
    import psycopg

    from postgres_server import shared_server

    with psycopg.connect(shared_server().dsn(_pg_schemas[path]), autocommit=True) as conn:
        conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]


@pytest.fixture
async def make_runtime(db_path: Path, executor: codemode.Executor, store_kind: str) -> AsyncIterator[RuntimeFactory]:
    """Runtimes on one database (a SQLite file, or a PostgreSQL schema) and one executor, closed after the test."""
    stores: list[codemode.Store] = []
    runtimes: list[codemode.Runtime] = []

    def make(*connectors: Connector, **kwargs: Any) -> codemode.Runtime:
        store = new_store(store_kind, kwargs.pop("path", db_path))
        stores.append(store)
        made = codemode.Runtime(list(connectors), executor=kwargs.pop("executor", executor), store=store, **kwargs)
        runtimes.append(made)
        return made

    yield make
    for runtime in runtimes:
        await runtime.aclose()  # its heartbeat thread, connector connections and store
    for store in stores:
        await store.close()


@pytest.fixture
async def runtime(make_runtime: RuntimeFactory, items: Items) -> codemode.Runtime:
    return make_runtime(items)
