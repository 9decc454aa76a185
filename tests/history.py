"""A long run history written straight into a store's tables, and one run driven through every hot
store operation: the tests check the query plans of what it sends, the benchmark times it.

Writing the history through SQL takes a second for 10,000 runs, where `execute` would take a minute;
the rows are exactly what the store writes for a one-call run (completed or failed), and for a run
paused at one gated call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from codemode import Decision
from codemode.codec import canonical, dumps
from codemode.replay import Call
from codemode.store.base import Store

__all__ = ["EXECUTION_SQL", "LOG_SQL", "exercise", "history_rows"]

EXECUTION_SQL = (
    "INSERT INTO cm_executions (runtime, id, code, status, result, error, logs, connectors, created_at, "
    "updated_at, attempt, key, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, NULL, ?)"
)
LOG_SQL = (
    "INSERT INTO cm_log (runtime, execution_id, seq, connector, method, args, result, requires_approval, "
    "ephemeral, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"
)


def history_rows(
    runtime: str, runs: int, paused: int, *, ended_ms_ago: int = 86_400_000
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """`runs` runs (for EXECUTION_SQL) and their log entries (for LOG_SQL), one second apart and ending
    `ended_ms_ago` ago: `paused` of them spread evenly and paused at a gated call, one in seven of the
    rest failed, the others completed."""
    start = int(time.time() * 1000) - ended_ms_ago - runs * 1000
    every = runs // paused if paused else runs + 1
    executions: list[tuple[Any, ...]] = []
    log: list[tuple[Any, ...]] = []
    for i in range(runs):
        at = start + i * 1000
        execution_id = f"exec_{at:016d}_{i:08x}{'0' * 24}"
        status = "paused" if paused and i % every == every - 1 else "error" if i % 7 == 0 else "completed"
        result = dumps(1) if status == "completed" else None
        error = "boom" if status == "error" else None
        executions.append(
            (runtime, execution_id, "await items.read()", status, result, error, "[]", '["items"]', at, at, "{}")
        )
        log.append((runtime, execution_id, 0, "items", "read", canonical({}), dumps(1), 0, "applied"))
        if status == "paused":
            log.append((runtime, execution_id, 1, "items", "create", canonical({"n": i}), None, 1, "pending"))
    return executions, log


def _call(seq: int, method: str, *, gated: bool = False) -> Call:
    return Call(
        seq=seq, connector="items", method=method, args_json=canonical({}), requires_approval=gated, ephemeral=False
    )


async def exercise(store: Store, runtime: str, keep: int) -> None:
    """One run through every hot operation: begin (checking the retention), a call, a pause at a gated
    call, the approval queue, the decision, the resumed pass's replay, the end, the listings, a prune
    and a delete."""
    begun = await store.begin(runtime, "x", ["items"], keep, key=f"k-{time.time_ns()}")
    run, attempt = begun.execution_id, begun.attempt
    assert (await store.decide(runtime, run, attempt, _call(0, "read"))).kind == "execute"
    assert await store.record_result(runtime, run, attempt, 0, dumps(1))
    assert (await store.decide(runtime, run, attempt, _call(1, "create", gated=True))).kind == "pause"
    assert await store.pause(runtime, run, attempt)
    assert any(action.execution_id == run for action in await store.list_pending(runtime))
    assert len(await store.list_pending(runtime, run)) == 1
    decision = Decision("approve", "ana", "fine", datetime.now(timezone.utc), None)
    settled = await store.settle(runtime, run, 1, decision)
    assert settled.claim is not None
    attempt = settled.claim.attempt
    assert (await store.decide(runtime, run, attempt, _call(0, "read"))).kind == "replay"
    assert (await store.decide(runtime, run, attempt, _call(1, "create", gated=True))).kind == "execute"
    assert await store.record_result(runtime, run, attempt, 1, dumps(2))
    assert await store.complete(runtime, run, attempt, dumps(2), [])
    assert len(await store.list_executions(runtime, 50)) == 50
    await store.list_executions(runtime, 50, status=["paused"])
    assert await store.get_execution(runtime, run) is not None
    await store.prune_executions(runtime, keep)
    assert await store.delete_execution(runtime, run) == "completed"


def insert_history(
    execute_many: Callable[[str, Sequence[tuple[Any, ...]]], None], runtime: str, runs: int, paused: int
) -> None:
    """Write `history_rows` with the given `executemany` (placeholders `?`)."""
    executions, log = history_rows(runtime, runs, paused)
    execute_many(EXECUTION_SQL, executions)
    execute_many(LOG_SQL, log)
