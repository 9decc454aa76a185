"""SqliteStore specifics: waiting on another process's write lock without blocking the event loop."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import pytest

import codemode
from codemode.replay import Call
from history import exercise, insert_history


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
    for _ in range(1000):  # the loop keeps running (however loaded the machine)...
        if ticks >= 10:
            break
        await asyncio.sleep(0.01)
    assert ticks >= 10
    assert not begin.done()  # ...while the begin waits for the other writer
    other.execute("COMMIT")
    execution_id = (await asyncio.wait_for(begin, 10)).execution_id
    ticking.cancel()
    assert (await store.get_execution("default", execution_id)) is not None
    # The fast path is used again once the lock is free.
    assert len(await store.list_executions("default")) == 1
    other.close()
    await store.close()


async def test_a_call_logged_while_another_process_writes_waits_for_it(tmp_path: Path) -> None:
    """The per-call writes run straight on the caller's thread when the database is free; while another
    process holds the write lock they wait for it off the event loop, and are written exactly once."""
    path = tmp_path / "busy.db"
    store = codemode.SqliteStore(path)
    await store.open()
    begun = await store.begin("default", "1", [], 50)
    eid, attempt = begun.execution_id, begun.attempt
    other = sqlite3.connect(path, isolation_level=None)  # stands in for another process
    for seq in (0, 1):
        other.execute("BEGIN IMMEDIATE")
        decide = asyncio.ensure_future(store.decide("default", eid, attempt, Call(seq, "items", "add", "{}")))
        await asyncio.sleep(0.2)
        assert not decide.done()  # the lock is held: nothing logged yet, and the loop runs on
        other.execute("COMMIT")
        assert (await asyncio.wait_for(decide, 10)).kind == "execute"
        other.execute("BEGIN IMMEDIATE")
        record = asyncio.ensure_future(store.record_result("default", eid, attempt, seq, str(seq)))
        await asyncio.sleep(0.2)
        assert not record.done()
        other.execute("COMMIT")
        assert await asyncio.wait_for(record, 10)
        # The lock free again: the next write takes the direct path, fenced as ever.
        assert not await store.record_result("default", eid, attempt + 1, seq, "9")
    execution = await store.get_execution("default", eid)
    assert execution is not None
    assert [(e.seq, e.state, e.result) for e in execution.log] == [(0, "applied", 0), (1, "applied", 1)]
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


def _full_reads(plan: list[str]) -> list[str]:
    """The plan lines that read a whole table or a whole runtime's rows, or sort a whole result."""
    return [
        line
        for line in plan
        if (line.startswith("SCAN ") and line != "SCAN CONSTANT ROW")
        or re.search(r"USING (COVERING )?INDEX sqlite_autoindex_cm_\w+ \(runtime=\?\)", line)
        or line == "USE TEMP B-TREE FOR ORDER BY"
    ]


@pytest.mark.parametrize("analyzed", [False, True])
async def test_every_hot_query_reads_by_index_in_a_long_history(tmp_path: Path, analyzed: bool) -> None:
    """With 3,000 runs stored, no statement of a run's life (begin and its retention check, calls, a
    pause, the approval queue, a decision, the listings, pruning, deleting) scans a table or sorts the
    history: with or without `ANALYZE`'s statistics."""
    path = tmp_path / "history.db"
    store = codemode.SqliteStore(path)
    await store.open()
    conn = sqlite3.connect(path)
    with conn:
        insert_history(conn.executemany, "rt", 3000, paused=10)
        if analyzed:
            conn.execute("ANALYZE")
    sent: list[str] = []
    store._connection().set_trace_callback(sent.append)
    await exercise(store, "rt", keep=2995)
    store._connection().set_trace_callback(None)
    await store.close()
    statements = {s for s in sent if s.split()[0] in ("SELECT", "UPDATE", "DELETE", "INSERT")}
    assert any("OFFSET 2995" in s for s in statements)  # the retention check ran
    plans = {s: [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {s}")] for s in statements}
    conn.close()
    assert {s: _full_reads(plan) for s, plan in plans.items() if _full_reads(plan)} == {}
