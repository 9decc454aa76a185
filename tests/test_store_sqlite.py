"""SqliteStore specifics: waiting on another process's write lock without blocking the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

import codemode


async def test_busy_database_is_waited_for_off_the_event_loop(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    store = codemode.SqliteStore(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)  # stands in for another process
    other.execute("BEGIN IMMEDIATE")
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.ensure_future(ticker())
    begin = asyncio.ensure_future(store.begin("default", "1", [], 50))
    await asyncio.sleep(0.3)
    assert not begin.done()  # blocked by the other writer...
    assert ticks >= 10  # ...while the event loop kept running
    other.execute("COMMIT")
    execution_id = (await asyncio.wait_for(begin, 10)).execution_id
    ticking.cancel()
    assert (await store.get_execution("default", execution_id)) is not None
    # The fast path is used again once the lock is free.
    assert len(await store.list_executions("default")) == 1
    other.close()
    await store.close()


async def test_schema_version_newer_than_the_library_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    store = codemode.SqliteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE cm_meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    newer = codemode.SqliteStore(path)
    with pytest.raises(RuntimeError, match="newer than this library"):
        await newer.open()
    with pytest.raises(RuntimeError, match="newer than this library"):
        await newer.list_executions("default")  # still refused, never half-open
