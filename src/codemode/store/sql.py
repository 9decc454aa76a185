"""The SQL both stores share: every operation of the `Store` protocol, written once.

A backend supplies only the transaction (`_run`) and the few fragments where the dialects really
differ (`_metadata_match`). Each operation is an `async` function of one transaction (`Tx`), so a
backend with real I/O (PostgreSQL) awaits its statements, while SQLite, whose statements never
suspend, drives the same function synchronously inside its own transaction (`drive`).

Placeholders are `?` throughout; a backend with another style translates them.
"""

from __future__ import annotations

import functools
import itertools
import json
import operator
import time
import uuid
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, Protocol, TypeVar

from codemode import crashpoints
from codemode.codec import dumps, loads, read
from codemode.records import (
    TERMINAL_STATUSES,
    Decision,
    Execution,
    ExecutionStatus,
    LogEntry,
    LogState,
    PendingAction,
    Snippet,
    decoded_later,
)
from codemode.replay import Call, Recorded, Verdict, judge
from codemode.store import sql_checkpoints
from codemode.store.base import Begun, Claim, Settlement, StoredCheckpoint
from codemode.text import storable_text

__all__ = [
    "HISTORY_INDEXES",
    "MAX_ERROR_CHARS",
    "PRUNE_EVERY",
    "Op",
    "Rows",
    "SqlStore",
    "Tx",
    "drive",
    "new_execution_id",
    "shared_migrations",
]

T = TypeVar("T")
MAX_ERROR_CHARS = 1_000_000
NO_LIMIT = 2**62  # LIMIT for "all rows" that both dialects accept
_TERMINAL = "('" + "','".join(TERMINAL_STATUSES) + "')"
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
        WHERE status IN {_TERMINAL};
"""

# The per-call writes, each one statement fenced by the attempt token: a call logged for the first time
# (`pending` when gated, else `executing`; nothing when the seq is taken or the run is not this attempt's),
# and its result or error recorded (only over its `executing` entry).
_INSERT_NEW = (
    "INSERT INTO cm_log (runtime, execution_id, seq, connector, method, args, result, requires_approval, "
    "ephemeral, state) SELECT ?, ?, ?, ?, ?, ?, NULL, ?, ?, ? WHERE EXISTS (SELECT 1 FROM cm_executions "
    "WHERE runtime = ? AND id = ? AND attempt = ? AND status = 'running') ON CONFLICT DO NOTHING"
)
_RECORD = (
    "UPDATE cm_log SET result = ?, state = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
    "AND state = 'executing' AND EXISTS (SELECT 1 FROM cm_executions WHERE runtime = ? AND id = ? "
    "AND attempt = ? AND status = 'running')"
)


def _insert_params(runtime: str, execution_id: str, attempt: int, call: Call) -> tuple[Any, ...]:
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


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def new_execution_id() -> str:
    """Lexical order matches creation order: by millisecond, then (within this process) by a counter
    ahead of the random part, so runs begun in the same millisecond still list newest first."""
    return f"exec_{now_ms():016d}_{next(_ID_COUNTER) % 2**32:08x}{uuid.uuid4().hex[:24]}"


class SqlStore:
    """Every store operation as one transaction; subclasses provide `_run` and the dialect fragments."""

    async def _run(self, op: Op[T], name: str = "", *, write: bool = True, single: bool = False) -> T:
        """Run `op` in one transaction (serializable with every other write); `name` is its crash point.

        `single`: the op's first statement is its only write and is a compare-and-set on its own, so a
        backend may run it as one autocommitted statement (what follows it only reads, to explain a miss).
        Such an op must answer the same when run again after it committed, since a connection lost
        before the reply is retried. A read (`write=False`) is `single` when it is one statement, which
        sees one snapshot on its own."""
        raise NotImplementedError

    def _metadata_match(self) -> str:
        """A condition on `cm_executions` true when its metadata has key `?` with value `?`."""
        raise NotImplementedError

    # Whether a pass's end (but a pause, which also sets the checkpoint) is the UPDATE alone: true
    # where `_notify` writes nothing and no reply is lost (an UPDATE sent again would find the run ended).
    _ends_in_one_statement = False

    # What the trail's aggregate raises for a stored value it cannot hold (SQLite: a BLOB in a text
    # column, written by something else), so that such a run is read row by row instead.
    _trail_refusals: tuple[type[Exception], ...] = ()

    # The dialect's aggregate of `cm_log` rows (`{}`: the columns) into one JSON text, an array of arrays.
    _trail_of: str

    def _run_with_trail(self) -> str:
        """One statement giving a run (`?`: runtime, run, runtime, run) and, last, its entries as one JSON
        text of `_ENTRY_COLUMNS` rows in any order: a long trail reads as one value instead of a row per
        entry (at 5,000 entries in about a third of the time), and run and trail in one snapshot."""
        trail = f"SELECT {self._trail_of.format(_ENTRY_COLUMNS)} FROM cm_log WHERE runtime = ? AND execution_id = ?"
        return f"SELECT {_EXECUTION_COLUMNS}, ({trail}) FROM cm_executions WHERE runtime = ? AND id = ?"

    async def _single(self, sql: str, params: Sequence[Any], name: str = "") -> int | None:
        """The row count of one write statement that is a transaction of its own (a `single` op's first
        write), run between the crash points of `name` by a backend with a quicker way to run it than an
        op; None, with nothing written or reached, when it has none (the caller then runs the op). None by
        default: a store whose statements suspend runs the per-call writes as its ops."""
        return None

    def _now(self) -> int:
        """Milliseconds since the epoch by the database's clock, so hosts whose clocks disagree still
        agree on which run has gone quiet (the default: this host's clock, right for one file)."""
        return now_ms()

    async def _notify(self, tx: Tx, runtime: str, execution_id: str, status: str) -> None:
        """Tell other hosts a run changed (PostgreSQL: NOTIFY); nothing by default."""

    # PostgreSQL prunes after `begin` commits, in a transaction of its own (`_prune_after_begin`).
    _prune_apart = False
    _prunes_left: dict[str, int]  # per runtime: new runs until `begin` checks the retention again

    def _prune_due(self, runtime: str, keep: int) -> bool:
        """Whether this new run checks the retention: every run for a short history (under `PRUNE_EVERY`
        kept), else one run in `keep // PRUNE_EVERY`, the first of this store included."""
        left: dict[str, int] = self.__dict__.setdefault("_prunes_left", {})
        every = max(keep, 0) // PRUNE_EVERY
        due = min(left.get(runtime, 0), every) <= 0
        left[runtime] = max(every - 1, 0) if due else min(left[runtime], every) - 1
        return due

    async def _prune_after_begin(self, runtime: str, keep: int, exclude: str) -> None:
        """Housekeeping after a committed `begin`; must not raise (the run is begun either way)."""

    # -- one pass -------------------------------------------------------------

    async def begin(
        self,
        runtime: str,
        code: str,
        connectors: Sequence[str],
        max_executions: int,
        *,
        key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Begun:
        for text in (key or "", *(metadata or {}), *(metadata or {}).values()):
            if not _text_ok(text):
                raise ValueError(
                    "execute(key=..., metadata=...) cannot hold NUL characters or lone surrogates (no store "
                    f"keeps them as text): {text!r}"
                )
        execution_id = new_execution_id()
        now = self._now()
        prune = self._prune_due(runtime, max_executions)

        async def op(tx: Tx) -> Begun:
            if key is not None:
                row = (
                    await tx.execute("SELECT id FROM cm_executions WHERE runtime = ? AND key = ?", (runtime, key))
                ).fetchone()
                if row is not None:
                    existing = await self._load_execution(tx, runtime, row[0])
                    assert existing is not None
                    return Begun(existing.id, 0, existing)
                pruned = (
                    await tx.execute("SELECT execution_id FROM cm_keys WHERE runtime = ? AND key = ?", (runtime, key))
                ).fetchone()
                if pruned is not None:
                    return Begun(pruned[0], 0, pruned=True)
            await tx.execute(  # the id is new: a conflict is this insert sent again after a lost reply
                "INSERT INTO cm_executions (runtime, id, code, status, connectors, created_at, updated_at, attempt, "
                "key, metadata) VALUES (?, ?, ?, 'running', ?, ?, ?, 1, ?, ?) ON CONFLICT (runtime, id) DO NOTHING",
                (
                    runtime,
                    execution_id,
                    code,
                    json.dumps(list(connectors)),
                    now,
                    now,
                    key,
                    json.dumps(dict(metadata or {}), ensure_ascii=False),
                ),
            )
            if prune and not self._prune_apart:
                await self._prune(tx, runtime, max_executions, execution_id)
            return Begun(execution_id, 1)

        pruned_here = prune and not self._prune_apart
        begun = await self._run(op, "begin", single=key is None and not pruned_here)  # else: reads before it
        if prune and self._prune_apart and begun.attempt == 1:
            await self._prune_after_begin(runtime, max_executions, execution_id)
        return begun

    async def heartbeat(self, runtime: str, execution_id: str, attempt: int) -> bool:
        async def op(tx: Tx) -> bool:
            cur = await tx.execute(
                "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ? AND attempt = ? "
                "AND status IN ('running', 'rolling_back')",
                (self._now(), runtime, execution_id, attempt),
            )
            return cur.rowcount == 1

        return await self._run(op, "heartbeat")

    async def claim_stale(self, runtime: str, execution_id: str, older_than: timedelta) -> Claim | None:
        cutoff = self._now() - int(older_than.total_seconds() * 1000)

        async def op(tx: Tx) -> Claim | None:
            cur = await tx.execute(
                "UPDATE cm_executions SET updated_at = ?, attempt = attempt + 1 WHERE runtime = ? AND id = ? "
                "AND status = 'running' AND updated_at < ?",
                (self._now(), runtime, execution_id, cutoff),
            )
            return await self._claim(tx, runtime, execution_id) if cur.rowcount == 1 else None

        return await self._run(op, "claim_stale")

    async def _claim(
        self, tx: Tx, runtime: str, execution_id: str, opened: Sequence[Sequence[Any]] | None = None
    ) -> Claim:
        """The run for its new owner, its values exact (they are replayed): with all its entries, or
        those `opened` (`_open_rows`, read already), as a settlement's claim holds (see `Store.settle`)."""
        if opened is None:
            execution = await self._load_execution(tx, runtime, execution_id, strict=True)
            row = (
                await tx.execute(
                    "SELECT attempt FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
                )
            ).fetchone()
            assert execution is not None and row is not None
            return Claim(execution, int(row[0]))
        found = (
            await tx.execute(
                f"SELECT {_EXECUTION_COLUMNS}, attempt FROM cm_executions WHERE runtime = ? AND id = ?",
                (runtime, execution_id),
            )
        ).fetchone()
        assert found is not None
        return Claim(_execution(found[:-1], [_entry(r, True) for r in opened], True), int(found[-1]))

    @staticmethod
    async def _open_rows(tx: Tx, runtime: str, execution_id: str) -> list[Sequence[Any]]:
        """The run's open entries (pending or executing) as `_ENTRY_COLUMNS` rows in seq order; sorted
        here, as they are few, since SQLite would sort them in a temporary B-tree."""
        rows = (
            await tx.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM cm_log WHERE runtime = ? AND execution_id = ? "
                "AND state IN ('pending', 'executing')",
                (runtime, execution_id),
            )
        ).fetchall()
        return sorted(rows, key=operator.itemgetter(0))

    @staticmethod
    async def _owned(tx: Tx, runtime: str, execution_id: str, attempt: int, status: str = "running") -> bool:
        """The fence: this attempt still owns the run, checked inside the write's own transaction."""
        row = (
            await tx.execute(
                "SELECT 1 FROM cm_executions WHERE runtime = ? AND id = ? AND attempt = ? AND status = ?",
                (runtime, execution_id, attempt, status),
            )
        ).fetchone()
        return row is not None

    async def decide(self, runtime: str, execution_id: str, attempt: int, call: Call) -> Verdict:
        seq = call.seq
        if call.args_error is None:
            # The hot path, a call never made before: the fenced insert alone is the whole decision. A miss
            # (the seq is taken, or the run is not this attempt's) wrote nothing; the full decision follows.
            crashpoints.reached("before:decide")
            inserted: int | bool | None = await self._single(
                _INSERT_NEW, _insert_params(runtime, execution_id, attempt, call)
            )
            if inserted is None:
                inserted = await self._run(
                    lambda tx: self._insert_new(tx, runtime, execution_id, attempt, call), single=True
                )
            if inserted:
                verdict = Verdict("pause" if call.requires_approval else "execute", seq)
            else:
                verdict = await self._run(self._decide_op(runtime, execution_id, attempt, call))
            crashpoints.reached("after:decide")
            return verdict
        return await self._run(self._decide_op(runtime, execution_id, attempt, call), "decide")

    def _decide_op(self, runtime: str, execution_id: str, attempt: int, call: Call) -> Op[Verdict]:
        """The whole replay rule against the stored entry, in one transaction (see `decide`)."""
        seq = call.seq

        async def op(tx: Tx) -> Verdict:
            # The fence and the entry in one read.
            row = (
                await tx.execute(
                    "SELECT l.connector, l.method, l.args, l.result, l.ephemeral, l.state, l.decision "
                    "FROM cm_executions e LEFT JOIN cm_log l ON l.runtime = e.runtime AND l.execution_id = e.id "
                    "AND l.seq = ? WHERE e.runtime = ? AND e.id = ? AND e.attempt = ? AND e.status = 'running'",
                    (seq, runtime, execution_id, attempt),
                )
            ).fetchone()
            if row is None:
                return Verdict("lost", seq)  # ended, paused, taken over or deleted: refuse, record nothing
            recorded = None if row[0] is None else _recorded(row)
            verdict = judge(call, recorded)
            if verdict.kind == "new":
                if call.args_error is not None:
                    await self._fail_at(tx, runtime, execution_id, seq, call.args_error)
                    return Verdict("fail", seq, message=call.args_error)
                await self._insert_new(tx, runtime, execution_id, attempt, call)
                return Verdict("pause" if call.requires_approval else "execute", seq)
            if verdict.kind == "fail":
                await self._fail_at(tx, runtime, execution_id, seq, verdict.message)
            elif verdict.kind == "execute" and recorded is not None and recorded.state != "executing":
                # Approved since the last pass (or an ephemeral read): persisted before the call runs.
                await self._set_state(tx, runtime, execution_id, seq, "executing")
            elif verdict.kind in ("replay", "raise") and recorded is not None:
                return Verdict(verdict.kind, seq, loads(recorded.result_json))
            return verdict

        return op

    @staticmethod
    async def _insert_new(tx: Tx, runtime: str, execution_id: str, attempt: int, call: Call) -> bool:
        """Log a call made for the first time (`pending` when gated, else `executing`), fenced: nothing is
        written unless `attempt` owns the running run and the seq is still free."""
        cur = await tx.execute(_INSERT_NEW, _insert_params(runtime, execution_id, attempt, call))
        return cur.rowcount == 1

    async def _fail_at(self, tx: Tx, runtime: str, execution_id: str, seq: int, message: str) -> None:
        await tx.execute(
            "UPDATE cm_log SET state = 'error', result = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
            "AND state IN ('executing', 'pending')",
            (dumps({"error": message[:MAX_ERROR_CHARS], "kind": "RuntimeError"}), runtime, execution_id, seq),
        )
        await tx.execute(
            "UPDATE cm_executions SET status = 'error', error = ?, updated_at = ? WHERE runtime = ? AND id = ?",
            (storable_text(message[:MAX_ERROR_CHARS]), self._now(), runtime, execution_id),
        )

    @staticmethod
    async def _set_state(tx: Tx, runtime: str, execution_id: str, seq: int, state: LogState) -> None:
        await tx.execute(
            "UPDATE cm_log SET state = ? WHERE runtime = ? AND execution_id = ? AND seq = ?",
            (state, runtime, execution_id, seq),
        )

    async def _touch(self, tx: Tx, runtime: str, execution_id: str) -> None:
        await tx.execute(
            "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ?", (self._now(), runtime, execution_id)
        )

    async def record_result(
        self, runtime: str, execution_id: str, attempt: int, seq: int, result_json: str | None
    ) -> bool:
        return await self._record(runtime, execution_id, attempt, seq, result_json, "applied", "record_result")

    async def record_error(self, runtime: str, execution_id: str, attempt: int, seq: int, error_json: str) -> bool:
        return await self._record(runtime, execution_id, attempt, seq, error_json, "error", "record_error")

    async def _record(
        self, runtime: str, execution_id: str, attempt: int, seq: int, text: str | None, state: LogState, name: str
    ) -> bool:
        params = (text, state, runtime, execution_id, seq, runtime, execution_id, attempt)
        recorded = await self._single(_RECORD, params, name)
        if recorded == 1:
            return True

        async def op(tx: Tx) -> bool:
            # The fence inside the write itself: one statement on the hot path.
            cur = await tx.execute(_RECORD, params)
            if cur.rowcount == 1:
                return True
            if not await self._owned(tx, runtime, execution_id, attempt):
                return False
            row = (
                await tx.execute(
                    "SELECT state, result FROM cm_log WHERE runtime = ? AND execution_id = ? AND seq = ?",
                    (runtime, execution_id, seq),
                )
            ).fetchone()
            if row is not None and (row[0], row[1]) == (state, text):
                return True  # this very record, committed by a try whose reply was lost: the same answer
            raise LookupError(f"No executing log entry at step {seq} of {execution_id}")

        if recorded is None:
            return await self._run(op, name, single=True)
        return await self._run(op, single=True)  # explain the miss (this operation's crash points are passed)

    async def fail_at(self, runtime: str, execution_id: str, attempt: int, seq: int, message: str) -> bool:
        async def op(tx: Tx) -> bool:
            if not await self._owned(tx, runtime, execution_id, attempt):
                return False
            await self._fail_at(tx, runtime, execution_id, seq, message)
            return True

        return await self._run(op, "fail_at")

    async def pause(
        self, runtime: str, execution_id: str, attempt: int, checkpoint: StoredCheckpoint | None = None
    ) -> bool:
        return await self._end_pass(runtime, execution_id, attempt, "paused", (), "pause", checkpoint=checkpoint)

    async def take_checkpoint(self, runtime: str, execution_id: str, attempt: int) -> StoredCheckpoint | None:
        async def op(tx: Tx) -> StoredCheckpoint | None:
            if not await self._owned(tx, runtime, execution_id, attempt):
                return None
            return await sql_checkpoints.take(tx, runtime, execution_id)

        return await self._run(op, "take_checkpoint")

    async def complete(
        self, runtime: str, execution_id: str, attempt: int, result_json: str, logs: Sequence[str]
    ) -> bool:
        return await self._end_pass(
            runtime, execution_id, attempt, "completed", (("result", result_json),), "complete", logs
        )

    async def fail(self, runtime: str, execution_id: str, attempt: int, error: str, logs: Sequence[str]) -> bool:
        return await self._end_pass(
            runtime, execution_id, attempt, "error", (("error", storable_text(error[:MAX_ERROR_CHARS])),), "fail", logs
        )

    async def _end_pass(
        self,
        runtime: str,
        execution_id: str,
        attempt: int,
        status: ExecutionStatus,
        fields: Sequence[tuple[str, str]],
        name: str,
        logs: Sequence[str] | None = None,
        *,
        checkpoint: StoredCheckpoint | None = None,
    ) -> bool:
        """`running` -> `status` by the attempt that owns the run, with the given columns; at a pause
        the run's checkpoint becomes `checkpoint`."""
        assignments = "".join(f", {column} = ?" for column, _ in fields)
        values: list[Any] = [value for _, value in fields]
        if logs is not None:
            assignments += ", logs = ?"
            values.append(json.dumps(list(logs), ensure_ascii=False))

        async def op(tx: Tx) -> bool:
            cur = await tx.execute(
                f"UPDATE cm_executions SET status = ?, updated_at = ?{assignments} "
                "WHERE runtime = ? AND id = ? AND attempt = ? AND status = 'running'",
                (status, self._now(), *values, runtime, execution_id, attempt),
            )
            if cur.rowcount == 1:
                if status == "paused":  # a resume takes the checkpoint, so a run that ends here has none
                    await sql_checkpoints.save(tx, runtime, execution_id, checkpoint)
                await self._notify(tx, runtime, execution_id, status)
            return cur.rowcount == 1

        return await self._run(op, name, single=self._ends_in_one_statement and status != "paused")

    # -- approvals ------------------------------------------------------------

    async def list_pending(self, runtime: str, execution_id: str | None = None) -> list[PendingAction]:
        return await self._run(lambda tx: self._pending(tx, runtime, execution_id), "list_pending", write=False)

    @staticmethod
    async def _pending(tx: Tx, runtime: str, execution_id: str | None) -> list[PendingAction]:
        # From the paused runs to their entries: SQLite keeps a CROSS JOIN's order (PostgreSQL plans it
        # freely), so with no statistics it still never reads the whole log to find the few pending entries.
        sql = (
            "SELECT l.execution_id, l.seq, l.connector, l.method, l.args FROM cm_executions e "
            "CROSS JOIN cm_log l WHERE e.runtime = ? AND e.status = 'paused' AND l.runtime = e.runtime "
            "AND l.execution_id = e.id AND l.state = 'pending' AND l.decision IS NULL"
        )
        params: tuple[Any, ...] = (runtime,)
        if execution_id is not None:
            sql += " AND e.id = ?"
            params += (execution_id,)
        sql += " ORDER BY e.created_at DESC, e.id DESC, l.seq"
        return [
            PendingAction(execution_id=r[0], seq=r[1], connector=r[2], method=r[3], args=read(r[4]))
            for r in await tx.execute(sql, params)
        ]

    async def settle(
        self,
        runtime: str,
        execution_id: str,
        seq: int,
        decision: Decision,
        *,
        error_json: str | None = None,
        end_error: str | None = None,
    ) -> Settlement:
        decision_json = _decision_json(decision)

        async def op(tx: Tx) -> Settlement:
            row = (
                await tx.execute(
                    "SELECT e.status, l.state, l.decision FROM cm_executions e LEFT JOIN cm_log l "
                    "ON l.runtime = e.runtime AND l.execution_id = e.id AND l.seq = ? "
                    "WHERE e.runtime = ? AND e.id = ?",
                    (seq, runtime, execution_id),
                )
            ).fetchone()
            if row is None:
                return Settlement("stale", "deleted")
            status, state, decided = row
            if status != "paused" or state != "pending" or decided is not None:
                return Settlement("stale", status, await self._pending(tx, runtime, execution_id))
            where = "WHERE runtime = ? AND execution_id = ? AND seq = ?"
            if end_error is not None:
                await tx.execute(
                    f"UPDATE cm_log SET state = 'reverted', decision = ? {where}",
                    (decision_json, runtime, execution_id, seq),
                )
                await tx.execute(
                    "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? AND state = 'pending'",
                    (runtime, execution_id),
                )
                await tx.execute(
                    "UPDATE cm_executions SET status = 'rejected', error = ?, attempt = attempt + 1, updated_at = ? "
                    "WHERE runtime = ? AND id = ?",
                    (storable_text(end_error[:MAX_ERROR_CHARS]), self._now(), runtime, execution_id),
                )
                await sql_checkpoints.drop(tx, runtime, execution_id)
                await self._notify(tx, runtime, execution_id, "rejected")
                return Settlement("ended", "rejected")
            if error_json is not None:
                await tx.execute(
                    f"UPDATE cm_log SET state = 'error', result = ?, decision = ? {where}",
                    (error_json, decision_json, runtime, execution_id, seq),
                )
            else:
                await tx.execute(f"UPDATE cm_log SET decision = ? {where}", (decision_json, runtime, execution_id, seq))
            opened = await self._open_rows(tx, runtime, execution_id)  # one read for both answers below
            undecided = [
                PendingAction(execution_id=execution_id, seq=r[0], connector=r[1], method=r[2], args=read(r[3]))
                for r in opened
                if r[7] == "pending" and r[8] is None
            ]
            if undecided:
                await self._touch(tx, runtime, execution_id)
                await self._notify(tx, runtime, execution_id, "paused")
                return Settlement("waiting", "paused", undecided)
            await tx.execute(
                "UPDATE cm_executions SET status = 'running', attempt = attempt + 1, updated_at = ? "
                "WHERE runtime = ? AND id = ?",
                (self._now(), runtime, execution_id),
            )
            await self._notify(tx, runtime, execution_id, "running")
            return Settlement("resumed", "running", claim=await self._claim(tx, runtime, execution_id, opened))

        return await self._run(op, "settle")

    async def expire(self, runtime: str, max_age: timedelta, *, running: bool = True) -> list[str]:
        cutoff = self._now() - int(max_age.total_seconds() * 1000)
        statuses = "('paused', 'running')" if running else "('paused')"

        async def op(tx: Tx) -> list[str]:
            rows = (
                await tx.execute(
                    f"SELECT id, status FROM cm_executions WHERE runtime = ? AND status IN {statuses} "
                    "AND updated_at < ? ORDER BY created_at",
                    (runtime, cutoff),
                )
            ).fetchall()
            expired: list[str] = []
            now = self._now()
            for execution_id, status in rows:
                new_status, error = (
                    ("rejected", "Expired awaiting approval")
                    if status == "paused"
                    else ("error", "Expired while running: the host never completed the pass")
                )
                cur = await tx.execute(
                    "UPDATE cm_executions SET status = ?, error = ?, updated_at = ?, attempt = attempt + 1 "
                    "WHERE runtime = ? AND id = ? AND status = ?",
                    (new_status, error, now, runtime, execution_id, status),
                )
                if cur.rowcount == 1:
                    await sql_checkpoints.drop(tx, runtime, execution_id)
                    await tx.execute(
                        "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? "
                        "AND state = 'pending'",
                        (runtime, execution_id),
                    )
                    await self._notify(tx, runtime, execution_id, new_status)
                    expired.append(execution_id)
            return expired

        return await self._run(op, "expire")

    # -- rollback -------------------------------------------------------------

    async def claim_rollback(self, runtime: str, execution_id: str, stale_after: timedelta) -> Claim | None:
        cutoff = self._now() - int(stale_after.total_seconds() * 1000)

        async def op(tx: Tx) -> Claim | None:
            cur = await tx.execute(
                "UPDATE cm_executions SET status = 'rolling_back', attempt = attempt + 1, updated_at = ? "
                "WHERE runtime = ? AND id = ? AND (status IN ('paused', 'completed', 'error', 'rejected', "
                "'rolled_back') OR (status = 'rolling_back' AND updated_at < ?))",
                (self._now(), runtime, execution_id, cutoff),
            )
            if cur.rowcount != 1:
                return None
            await sql_checkpoints.drop(tx, runtime, execution_id)
            await self._notify(tx, runtime, execution_id, "rolling_back")
            return await self._claim(tx, runtime, execution_id)

        return await self._run(op, "claim_rollback")

    async def begin_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, decision: Decision) -> bool:
        decision_json = _decision_json(decision)

        async def op(tx: Tx) -> bool:
            if not await self._owned(tx, runtime, execution_id, attempt, "rolling_back"):
                return False
            cur = await tx.execute(
                "UPDATE cm_log SET state = 'reverting', rollback = ? WHERE runtime = ? AND execution_id = ? "
                "AND seq = ? AND state IN ('applied', 'reverting')",
                (decision_json, runtime, execution_id, seq),
            )
            await self._touch(tx, runtime, execution_id)
            return cur.rowcount == 1

        return await self._run(op, "begin_revert")

    async def end_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, reverted: bool) -> bool:
        async def op(tx: Tx) -> bool:
            if not await self._owned(tx, runtime, execution_id, attempt, "rolling_back"):
                return False
            cur = await tx.execute(
                "UPDATE cm_log SET state = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'reverting'",
                ("reverted" if reverted else "applied", runtime, execution_id, seq),
            )
            await self._touch(tx, runtime, execution_id)
            return cur.rowcount == 1

        return await self._run(op, "end_revert")

    async def finish_rollback(self, runtime: str, execution_id: str, attempt: int, decision: Decision) -> bool:
        decision_json = _decision_json(decision)

        async def op(tx: Tx) -> bool:
            if not await self._owned(tx, runtime, execution_id, attempt, "rolling_back"):
                return False
            await tx.execute(
                "UPDATE cm_log SET state = 'reverted', rollback = ? WHERE runtime = ? "
                "AND execution_id = ? AND state = 'pending'",
                (decision_json, runtime, execution_id),
            )
            await tx.execute(
                "UPDATE cm_executions SET status = 'rolled_back', updated_at = ? WHERE runtime = ? AND id = ?",
                (self._now(), runtime, execution_id),
            )
            await self._notify(tx, runtime, execution_id, "rolled_back")
            return True

        return await self._run(op, "finish_rollback")

    # -- reading and retention --------------------------------------------------

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(
            lambda tx: self._load_execution(tx, runtime, execution_id), "get_execution", write=False, single=True
        )

    async def get_open_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(
            lambda tx: self._load_execution(tx, runtime, execution_id, entries="open"),
            "get_open_execution",
            write=False,
        )

    async def get_log(self, runtime: str, execution_id: str) -> list[LogEntry]:
        async def op(tx: Tx) -> list[LogEntry]:
            execution = await self._load_execution(tx, runtime, execution_id, strict=True)
            return execution.log if execution else []

        return await self._run(op, "get_log", write=False)

    async def _load_execution(
        self, tx: Tx, runtime: str, execution_id: str, *, strict: bool = False, entries: Literal["all", "open"] = "all"
    ) -> Execution | None:
        """The run as stored, with all its entries or only the `open` ones (pending or executing).

        Unless `strict`, a value that cannot be decoded reads as a `codec.Undecodable` string on that
        record instead of failing the read, and the whole run is one statement (`_run_with_trail`), its
        log decoded when the record's `log` is first read."""
        if not strict and entries == "all":
            try:
                found = (
                    await tx.execute(self._run_with_trail(), (runtime, execution_id, runtime, execution_id))
                ).fetchone()
            except self._trail_refusals:
                found = ()  # a value the JSON functions refuse: read row by row, which marks it undecodable
            if found is None:
                return None
            if found:
                return _execution(found[:-1], decoded_later(functools.partial(_trail, found[-1])))
        row = (
            await tx.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM cm_executions WHERE runtime = ? AND id = ?",
                (runtime, execution_id),
            )
        ).fetchone()
        if row is None:
            return None
        rows: Iterable[Sequence[Any]]
        if entries == "open":
            rows = await self._open_rows(tx, runtime, execution_id)
        else:
            rows = await tx.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM cm_log WHERE runtime = ? AND execution_id = ? ORDER BY seq",
                (runtime, execution_id),
            )
        return _execution(row, [_entry(r, strict) for r in rows], strict)

    async def list_executions(
        self,
        runtime: str,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: Collection[str] | None = None,
    ) -> list[Execution]:
        if not all(_text_ok(text) for pair in (metadata or {}).items() for text in pair):
            return []  # `begin` stores no such text, so no run has it
        where, params = "WHERE runtime = ?", [runtime]
        if status is not None:
            where += f" AND status IN ({','.join('?' * len(status))})" if status else " AND 1 = 0"
            params.extend(status)
        for name, value in (metadata or {}).items():
            where += f" AND {self._metadata_match()}"
            params.extend((name, value))

        async def op(tx: Tx) -> list[Execution]:
            rows = (
                await tx.execute(
                    f"SELECT {_EXECUTION_COLUMNS} FROM cm_executions {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                    (*params, NO_LIMIT if limit is None else max(limit, 0)),
                )
            ).fetchall()
            logs: dict[str, list[LogEntry]] = {r[0]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for r in await tx.execute(
                    f"SELECT {_ENTRY_COLUMNS}, execution_id FROM cm_log WHERE runtime = ? AND execution_id IN "
                    f"({marks}) ORDER BY execution_id, seq",
                    (runtime, *logs),
                ):
                    logs[r[-1]].append(_entry(r))
            return [_execution(r, logs[r[0]]) for r in rows]

        return await self._run(op, "list_executions", write=False)

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        async def op(tx: Tx) -> str | None:
            row = (
                await tx.execute(
                    "SELECT status FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
                )
            ).fetchone()
            if row is None:
                return None
            await tx.execute(
                "INSERT INTO cm_keys (runtime, key, execution_id) SELECT runtime, key, id FROM cm_executions "
                "WHERE runtime = ? AND id = ? AND key IS NOT NULL "
                "ON CONFLICT (runtime, key) DO UPDATE SET execution_id = excluded.execution_id",
                (runtime, execution_id),
            )
            await tx.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            await sql_checkpoints.drop(tx, runtime, execution_id)
            await tx.execute("DELETE FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id))
            await self._notify(tx, runtime, execution_id, "deleted")
            return str(row[0])

        return await self._run(op, "delete_execution")

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int:
        return await self._run(lambda tx: self._prune(tx, runtime, keep, exclude), "prune_executions")

    @staticmethod
    async def _prune(tx: Tx, runtime: str, keep: int, exclude: str | None) -> int:
        # First the newest ended run beyond the `keep` newest, reading only the index (usually there is none:
        # nothing to do), then the runs from it back, oldest first.
        where = f"WHERE runtime = ? AND status IN {_TERMINAL} AND id != ?"
        cutoff = (
            await tx.execute(
                f"SELECT created_at, id FROM cm_executions {where} ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
                (runtime, exclude or "", max(keep, 0)),
            )
        ).fetchone()
        if cutoff is None:
            return 0
        rows = (
            await tx.execute(
                f"SELECT id, key FROM cm_executions {where} AND created_at <= ? AND (created_at < ? OR id <= ?) "
                "ORDER BY created_at, id",
                (runtime, exclude or "", cutoff[0], cutoff[0], cutoff[1]),
            )
        ).fetchall()
        # A pruned run's key stays taken: a framework re-running that tool call must not start it again.
        # The delete re-checks that the run is still ended: under PostgreSQL's READ COMMITTED prune (see
        # `PostgresStore._prune_after_begin`) a rollback may have claimed it since the read above.
        pruned = 0
        for execution_id, key in rows:
            cur = await tx.execute(
                f"DELETE FROM cm_executions WHERE runtime = ? AND id = ? AND status IN {_TERMINAL}",
                (runtime, execution_id),
            )
            if cur.rowcount != 1:
                continue
            if key is not None:
                await tx.execute(
                    "INSERT INTO cm_keys (runtime, key, execution_id) VALUES (?, ?, ?) "
                    "ON CONFLICT (runtime, key) DO UPDATE SET execution_id = excluded.execution_id",
                    (runtime, key, execution_id),
                )
            await tx.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            await sql_checkpoints.drop(tx, runtime, execution_id)
            pruned += 1
        return pruned

    # -- snippets -------------------------------------------------------------

    async def save_snippet(self, runtime: str, snippet: Snippet, input_schema_json: str | None) -> None:
        async def op(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO cm_snippets (runtime, name, description, code, saved_at, input_schema, connectors) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (runtime, name) DO UPDATE SET "
                "description = excluded.description, code = excluded.code, saved_at = excluded.saved_at, "
                "input_schema = excluded.input_schema, connectors = excluded.connectors",
                (
                    runtime,
                    snippet.name,
                    snippet.description,
                    snippet.code,
                    int(snippet.saved_at.timestamp() * 1000),
                    input_schema_json,
                    json.dumps(snippet.connectors),
                ),
            )

        await self._run(op, "save_snippet")

    async def get_snippet(self, runtime: str, name: str) -> Snippet | None:
        async def op(tx: Tx) -> Snippet | None:
            row = (
                await tx.execute(
                    f"SELECT {_SNIPPET_COLUMNS} FROM cm_snippets WHERE runtime = ? AND name = ?", (runtime, name)
                )
            ).fetchone()
            return None if row is None else _snippet(row)

        return await self._run(op, "get_snippet", write=False)

    async def list_snippets(self, runtime: str) -> list[Snippet]:
        async def op(tx: Tx) -> list[Snippet]:
            rows = await tx.execute(
                f"SELECT {_SNIPPET_COLUMNS} FROM cm_snippets WHERE runtime = ? ORDER BY name", (runtime,)
            )
            return [_snippet(r) for r in rows]

        return await self._run(op, "list_snippets", write=False)

    async def delete_snippet(self, runtime: str, name: str) -> bool:
        async def op(tx: Tx) -> bool:
            cur = await tx.execute("DELETE FROM cm_snippets WHERE runtime = ? AND name = ?", (runtime, name))
            return cur.rowcount == 1

        return await self._run(op, "delete_snippet")


# -- rows to records -------------------------------------------------------------

_EXECUTION_COLUMNS = "id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata"
_ENTRY_COLUMNS = "seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback"
_SNIPPET_COLUMNS = "name, description, code, saved_at, input_schema, connectors"


def _text_ok(text: str) -> bool:
    """Whether every store keeps `text` as it is: PostgreSQL text refuses NUL, UTF-8 lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decision_json(decision: Decision) -> str:
    return dumps(
        {
            "kind": decision.kind,
            "by": decision.by,
            "reason": decision.reason,
            "at": int(decision.at.timestamp() * 1000),
            "args": decision.args,
        }
    )


def _decision(text: str | None) -> Decision | None:
    data = loads(text)
    if data is None:
        return None
    return Decision(kind=data["kind"], by=data["by"], reason=data["reason"], at=_dt(data["at"]), args=data["args"])


def _recorded(row: Sequence[Any]) -> Recorded:
    connector, method, args, result, ephemeral, state, decision = row
    kind = args_json = None
    if decision is not None:
        data = json.loads(decision)
        kind = data["kind"]
        args_json = None if data.get("args") is None else json.dumps(data["args"], ensure_ascii=False)
    return Recorded(connector, method, args, result, bool(ephemeral), state, kind, args_json)


def _trail(text: str | None) -> list[LogEntry]:
    """The entries of a `_run_with_trail` trail, in seq order."""
    rows: list[list[Any]] = json.loads(text) if text else []
    rows.sort(key=operator.itemgetter(0))
    return [_entry(row) for row in rows]


def _entry(row: Sequence[Any], strict: bool = False) -> LogEntry:
    seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback = row[:10]
    return LogEntry(
        seq=seq,
        connector=connector,
        method=method,
        args=(loads if strict else read)(args),
        result=(loads if strict else read)(result),
        requires_approval=bool(requires_approval),
        ephemeral=bool(ephemeral),
        state=state,
        decision=_decision(decision),
        rollback=_decision(rollback),
    )


def _execution(row: Sequence[Any], log: list[LogEntry], strict: bool = False) -> Execution:
    execution_id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata = row
    status_value: ExecutionStatus = status
    return Execution(
        id=execution_id,
        code=code,
        status=status_value,
        log=log,
        result=(loads if strict else read)(result),
        error=error,
        logs=json.loads(logs) if logs else [],
        connectors=json.loads(connectors) if connectors else [],
        created_at=_dt(created_at),
        updated_at=_dt(updated_at),
        key=key,
        metadata=json.loads(metadata) if metadata else {},
    )


def _snippet(row: Sequence[Any]) -> Snippet:
    name, description, code, saved_at, input_schema, connectors = row
    return Snippet(
        name=name,
        description=description,
        code=code,
        saved_at=_dt(saved_at),
        input_schema=loads(input_schema),
        connectors=json.loads(connectors) if connectors else [],
    )
