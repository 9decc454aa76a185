"""The SQL both stores share, at the bottom: the schema and its migrations, the per-call statements,
the transaction protocol (`Tx`, `Op`, `drive`) and the column lists the readers use."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar

from codemode.records import TERMINAL_STATUSES
from codemode.replay import Call

T = TypeVar("T")
MAX_ERROR_CHARS = 1_000_000
NO_LIMIT = 2**62  # LIMIT for "all rows" that both dialects accept
TERMINAL_LIST = "('" + "','".join(TERMINAL_STATUSES) + "')"
_ID_COUNTER = itertools.count()


# Versioned migrations both stores run: index i upgrades the schema from version i to i + 1. Only the
# type of epoch-millisecond columns differs (SQLite's INTEGER is 64-bit; PostgreSQL needs BIGINT).
_SHARED_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cm_executions (
        runtime TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, status TEXT NOT NULL,
        result TEXT, error TEXT, logs TEXT, connectors TEXT,
        created_at {bigint} NOT NULL, updated_at {bigint} NOT NULL,
        PRIMARY KEY (runtime, id)
    );
    CREATE INDEX cm_executions_status ON cm_executions (runtime, status, created_at);
    CREATE TABLE cm_log (
        runtime TEXT NOT NULL, execution_id TEXT NOT NULL, seq INTEGER NOT NULL,
        connector TEXT NOT NULL, method TEXT NOT NULL, args TEXT, result TEXT,
        requires_approval INTEGER NOT NULL DEFAULT 0, ephemeral INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        PRIMARY KEY (runtime, execution_id, seq)
    );
    CREATE TABLE cm_snippets (
        runtime TEXT NOT NULL, name TEXT NOT NULL, description TEXT NOT NULL, code TEXT NOT NULL,
        saved_at {bigint} NOT NULL, input_schema TEXT, connectors TEXT,
        PRIMARY KEY (runtime, name)
    );
    """,
    # 2: ownership fencing (attempt), idempotent execute (key), metadata, and decisions on log entries
    # (`decision`: the approval or rejection; `rollback`: the rollback that reverted the entry).
    """
    ALTER TABLE cm_executions ADD COLUMN attempt {bigint} NOT NULL DEFAULT 1;
    ALTER TABLE cm_executions ADD COLUMN key TEXT;
    ALTER TABLE cm_executions ADD COLUMN metadata TEXT;
    CREATE UNIQUE INDEX cm_executions_key ON cm_executions (runtime, key) WHERE key IS NOT NULL;
    ALTER TABLE cm_log ADD COLUMN decision TEXT;
    ALTER TABLE cm_log ADD COLUMN rollback TEXT;
    CREATE TABLE cm_keys (
        runtime TEXT NOT NULL, key TEXT NOT NULL, execution_id TEXT NOT NULL,
        PRIMARY KEY (runtime, key)
    );
    """,
)


# The indexes the history's hot reads need, so their cost follows what they return, not how many runs are
# stored (SQLite: version 3, PostgreSQL: version 4). Each partial index's condition is written exactly as
# the queries that use it write theirs, because SQLite uses a partial index only for a literal match.
# `created`: the history newest first (`list_executions`); `ended`: retention finds the oldest ended runs
# without reading live ones (`status` too, so that SQLite reads its check from the index alone).
# (`list_pending` starts from the paused runs: SQLite finds them through its status index, PostgreSQL
# through a partial index of its own.)
HISTORY_INDEXES = f"""
    CREATE INDEX cm_executions_created ON cm_executions (runtime, created_at, id);
    CREATE INDEX cm_executions_ended ON cm_executions (runtime, created_at, id, status)
        WHERE status IN {TERMINAL_LIST};
"""

# The per-call writes, each one statement fenced by the attempt token: a call logged for the first time
# (`pending` when gated, else `executing`; nothing when the seq is taken or the run is not this attempt's),
# and its result or error recorded (only over its `executing` entry).
INSERT_NEW = (
    "INSERT INTO cm_log (runtime, execution_id, seq, connector, method, args, result, requires_approval, "
    "ephemeral, state) SELECT ?, ?, ?, ?, ?, ?, NULL, ?, ?, ? WHERE EXISTS (SELECT 1 FROM cm_executions "
    "WHERE runtime = ? AND id = ? AND attempt = ? AND status = 'running') ON CONFLICT DO NOTHING"
)
RECORD_RESULT = (
    "UPDATE cm_log SET result = ?, state = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
    "AND state = 'executing' AND EXISTS (SELECT 1 FROM cm_executions WHERE runtime = ? AND id = ? "
    "AND attempt = ? AND status = 'running')"
)


def insert_params(runtime: str, execution_id: str, attempt: int, call: Call) -> tuple[Any, ...]:
    gated = call.requires_approval
    return (
        runtime,
        execution_id,
        call.seq,
        call.connector,
        call.method,
        call.args_json,
        int(gated),
        int(call.ephemeral),
        "pending" if gated else "executing",
        runtime,
        execution_id,
        attempt,
    )


# `begin` checks the retention on each new run while `max_executions` is under this, and on one new run in
# `max_executions // PRUNE_EVERY` above it (and on the first of each store): the check walks up to
# `max_executions` ended runs, so a long history costs every execute a few index steps on average, and holds
# at most 1 % more ended runs than asked between two checks.
PRUNE_EVERY = 100


def shared_migrations(*, bigint: str) -> tuple[str, ...]:
    """The migrations every store runs, in its dialect's name for a 64-bit integer."""
    return tuple(script.format(bigint=bigint) for script in _SHARED_MIGRATIONS)


class Rows(Protocol):
    """What a statement returns: a DB-API cursor's reading side."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One open transaction."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows: ...


Op = Callable[[Tx], Coroutine[Any, Any, T]]


def drive(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a SQLite transaction) to its end, synchronously."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]
    coroutine.close()
    raise RuntimeError("a synchronous store transaction tried to suspend")


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def new_execution_id() -> str:
    """Lexical order matches creation order: by millisecond, then (within this process) by a counter
    ahead of the random part, so runs begun in the same millisecond still list newest first."""
    return f"exec_{now_ms():016d}_{next(_ID_COUNTER) % 2**32:08x}{uuid.uuid4().hex[:24]}"


# The columns the readers select, in the order `sql_rows` reads them.

EXECUTION_COLUMNS = "id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata"
ENTRY_COLUMNS = "seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback"
SNIPPET_COLUMNS = "name, description, code, saved_at, input_schema, connectors"
