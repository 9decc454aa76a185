"""`SqliteStore`: the embedded default store, safe for several processes on one file.

WAL journaling lets readers proceed while one writer commits; every write
operation runs in `BEGIN IMMEDIATE`, which takes the database write lock up
front, so each compare-and-set below is serialized across processes.

An operation first runs right on the caller's thread with no busy wait (tens of
microseconds). Only when another process holds the write lock does it move to
the store's own thread and wait there, so the event loop never blocks on a
busy database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from codemode import crashpoints
from codemode.runtime.codec import dumps, loads
from codemode.runtime.outcome import (
    TERMINAL_STATUSES,
    Decision,
    Execution,
    ExecutionStatus,
    LogEntry,
    LogState,
    PendingAction,
    Snippet,
)
from codemode.runtime.replay import Call, Recorded, Verdict, judge
from codemode.store.base import Begun, Claim, Settlement

__all__ = ["SqliteStore"]

T = TypeVar("T")
MAX_ERROR_CHARS = 1_000_000
_TERMINAL = "('" + "','".join(TERMINAL_STATUSES) + "')"

# Versioned migrations: index i upgrades the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE cm_executions (
        runtime TEXT NOT NULL, id TEXT NOT NULL, code TEXT NOT NULL, status TEXT NOT NULL,
        result TEXT, error TEXT, logs TEXT, connectors TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
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
        saved_at INTEGER NOT NULL, input_schema TEXT, connectors TEXT,
        PRIMARY KEY (runtime, name)
    );
    """,
    # 2: ownership fencing (attempt), idempotent execute (key), metadata, and decisions on log entries
    # (`decision`: the approval or rejection; `rollback`: the rollback that reverted the entry).
    """
    ALTER TABLE cm_executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
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


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


_ID_COUNTER = itertools.count()


def new_execution_id() -> str:
    """Lexical order matches creation order: by millisecond, then (within this process) by a counter
    ahead of the random part, so runs begun in the same millisecond still list newest first."""
    return f"exec_{_now_ms():016d}_{next(_ID_COUNTER) % 2**32:08x}{uuid.uuid4().hex[:24]}"


class SqliteStore:
    """Durable state in one SQLite file (or `":memory:"` for a throwaway store)."""

    def __init__(self, path: str | Path = "codemode.db", *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._opened = False
        self._closed = False  # closed by its owner: no operation reopens it behind their back
        self._open_lock = threading.Lock()
        self._conn_lock = threading.Lock()  # one user of the connection at a time
        self._waits: bool | None = None  # the busy timeout currently set on the connection

    # -- plumbing -----------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], name: str = "", *, write: bool = True) -> T:
        """One transaction; `name` is the operation's crash point (see `codemode.crashpoints`)."""
        if not self._opened:
            if self._closed:
                raise RuntimeError("This SqliteStore was closed; open() it again (or use a new one) to keep using it.")
            await self.open()
        assert self._pool is not None
        crashpoints.reached(f"before:{name}")
        result = await self._commit(fn, write)
        crashpoints.reached(f"after:{name}")
        return result

    async def _commit(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        assert self._pool is not None
        if self._conn_lock.acquire(blocking=False):
            try:
                return self._transaction(fn, write, wait=False)
            except _Busy:
                pass  # another process is writing: wait for it off the event loop
            finally:
                self._conn_lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._waiting_transaction, fn, write)

    def _waiting_transaction(self, fn: Callable[[sqlite3.Connection], T], write: bool) -> T:
        with self._conn_lock:
            return self._transaction(fn, write, wait=True)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], write: bool, *, wait: bool) -> T:
        """One transaction; with `wait=False` a busy database raises `_Busy` and changes nothing."""
        conn = self._connection()
        if self._waits is not wait:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000) if wait else 0}")
            self._waits = wait
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            if not wait and _is_busy(exc):
                raise _Busy() from exc
            raise
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            if not wait and _is_busy(exc):
                raise _Busy() from exc
            raise
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            self._conn = conn
        return self._conn

    async def open(self) -> None:
        with self._open_lock:
            if self._opened:
                return
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codemode-sqlite")
            self._opened, self._closed = True, False
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._waiting_transaction, self._migrate, True)
        except BaseException:
            await self._shutdown()
            raise

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS cm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM cm_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"The codemode database schema is version {version}, newer than this library "
                f"understands ({len(MIGRATIONS)}); upgrade codemode."
            )
        for script in MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO cm_meta (key, value) VALUES ('schema_version', ?)", (str(len(MIGRATIONS)),)
        )

    async def close(self) -> None:
        """Close the connection; later operations raise until `open()` is called again."""
        self._closed = True
        await self._shutdown()

    async def _shutdown(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        conn = self._conn

        def shutdown() -> None:
            with self._conn_lock:
                if conn is not None:
                    conn.close()
                self._conn, self._waits = None, None

        await asyncio.get_running_loop().run_in_executor(pool, shutdown)
        pool.shutdown(wait=True)
        self._opened = False

    # -- executions ---------------------------------------------------------

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
        execution_id = new_execution_id()
        now = _now_ms()

        def op(conn: sqlite3.Connection) -> Begun:
            if key is not None:
                row = conn.execute(
                    "SELECT id FROM cm_executions WHERE runtime = ? AND key = ?", (runtime, key)
                ).fetchone()
                if row is not None:
                    existing = self._load_execution(conn, runtime, row[0])
                    assert existing is not None
                    return Begun(existing.id, 0, existing)
                pruned = conn.execute(
                    "SELECT execution_id FROM cm_keys WHERE runtime = ? AND key = ?", (runtime, key)
                ).fetchone()
                if pruned is not None:
                    return Begun(pruned[0], 0, pruned=True)
            conn.execute(
                "INSERT INTO cm_executions (runtime, id, code, status, connectors, created_at, updated_at, attempt, "
                "key, metadata) VALUES (?, ?, ?, 'running', ?, ?, ?, 1, ?, ?)",
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
            self._prune(conn, runtime, max_executions, execution_id)
            return Begun(execution_id, 1)

        return await self._run(op, "begin")

    async def heartbeat(self, runtime: str, execution_id: str, attempt: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ? AND attempt = ? "
                "AND status IN ('running', 'rolling_back')",
                (_now_ms(), runtime, execution_id, attempt),
            )
            return cur.rowcount == 1

        return await self._run(op, "heartbeat")

    async def claim_stale(self, runtime: str, execution_id: str, older_than: timedelta) -> Claim | None:
        cutoff = _now_ms() - int(older_than.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> Claim | None:
            cur = conn.execute(
                "UPDATE cm_executions SET updated_at = ?, attempt = attempt + 1 WHERE runtime = ? AND id = ? "
                "AND status = 'running' AND updated_at < ?",
                (_now_ms(), runtime, execution_id, cutoff),
            )
            return self._claim(conn, runtime, execution_id) if cur.rowcount == 1 else None

        return await self._run(op, "claim_stale")

    def _claim(self, conn: sqlite3.Connection, runtime: str, execution_id: str) -> Claim:
        execution = self._load_execution(conn, runtime, execution_id)
        row = conn.execute(
            "SELECT attempt FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
        ).fetchone()
        assert execution is not None and row is not None
        return Claim(execution, int(row[0]))

    @staticmethod
    def _owned(
        conn: sqlite3.Connection, runtime: str, execution_id: str, attempt: int, status: str = "running"
    ) -> bool:
        """The fence: this attempt still owns the run, checked inside the write's own transaction."""
        row = conn.execute(
            "SELECT 1 FROM cm_executions WHERE runtime = ? AND id = ? AND attempt = ? AND status = ?",
            (runtime, execution_id, attempt, status),
        ).fetchone()
        return row is not None

    async def decide(self, runtime: str, execution_id: str, attempt: int, call: Call) -> Verdict:
        seq = call.seq

        def op(conn: sqlite3.Connection) -> Verdict:
            # The fence and the entry in one read.
            row = conn.execute(
                "SELECT l.connector, l.method, l.args, l.result, l.ephemeral, l.state, l.decision FROM cm_executions e "
                "LEFT JOIN cm_log l ON l.runtime = e.runtime AND l.execution_id = e.id AND l.seq = ? "
                "WHERE e.runtime = ? AND e.id = ? AND e.attempt = ? AND e.status = 'running'",
                (seq, runtime, execution_id, attempt),
            ).fetchone()
            if row is None:
                return Verdict("lost", seq)  # ended, paused, taken over or deleted: refuse, record nothing
            recorded = None if row[0] is None else _recorded(row)
            verdict = judge(call, recorded)
            if verdict.kind == "new":
                if call.args_error is not None:
                    self._fail_at(conn, runtime, execution_id, seq, call.args_error)
                    return Verdict("fail", seq, message=call.args_error)
                conn.execute(
                    "INSERT INTO cm_log (runtime, execution_id, seq, connector, method, args, result, "
                    "requires_approval, ephemeral, state) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                    (
                        runtime,
                        execution_id,
                        seq,
                        call.connector,
                        call.method,
                        call.args_json,
                        int(call.requires_approval),
                        int(call.ephemeral),
                        "pending" if call.requires_approval else "executing",
                    ),
                )
                return Verdict("pause" if call.requires_approval else "execute", seq)
            if verdict.kind == "fail":
                self._fail_at(conn, runtime, execution_id, seq, verdict.message)
            elif verdict.kind == "execute" and recorded is not None and recorded.state != "executing":
                # Approved since the last pass (or an ephemeral read): persisted before the call runs.
                self._set_state(conn, runtime, execution_id, seq, "executing")
            elif verdict.kind in ("replay", "raise") and recorded is not None:
                return Verdict(verdict.kind, seq, loads(recorded.result_json))
            return verdict

        return await self._run(op, "decide")

    @staticmethod
    def _fail_at(conn: sqlite3.Connection, runtime: str, execution_id: str, seq: int, message: str) -> None:
        conn.execute(
            "UPDATE cm_log SET state = 'error', result = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
            "AND state IN ('executing', 'pending')",
            (dumps({"error": message[:MAX_ERROR_CHARS], "kind": "RuntimeError"}), runtime, execution_id, seq),
        )
        conn.execute(
            "UPDATE cm_executions SET status = 'error', error = ?, updated_at = ? WHERE runtime = ? AND id = ?",
            (message[:MAX_ERROR_CHARS], _now_ms(), runtime, execution_id),
        )

    @staticmethod
    def _set_state(conn: sqlite3.Connection, runtime: str, execution_id: str, seq: int, state: LogState) -> None:
        conn.execute(
            "UPDATE cm_log SET state = ? WHERE runtime = ? AND execution_id = ? AND seq = ?",
            (state, runtime, execution_id, seq),
        )

    @staticmethod
    def _touch(conn: sqlite3.Connection, runtime: str, execution_id: str) -> None:
        conn.execute(
            "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ?", (_now_ms(), runtime, execution_id)
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
        def op(conn: sqlite3.Connection) -> bool:
            # The fence inside the write itself: one statement on the hot path.
            cur = conn.execute(
                "UPDATE cm_log SET result = ?, state = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'executing' AND EXISTS (SELECT 1 FROM cm_executions WHERE runtime = ? AND id = ? "
                "AND attempt = ? AND status = 'running')",
                (text, state, runtime, execution_id, seq, runtime, execution_id, attempt),
            )
            if cur.rowcount == 1:
                return True
            if not self._owned(conn, runtime, execution_id, attempt):
                return False
            raise LookupError(f"No executing log entry at step {seq} of {execution_id}")

        return await self._run(op, name)

    async def fail_at(self, runtime: str, execution_id: str, attempt: int, seq: int, message: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if not self._owned(conn, runtime, execution_id, attempt):
                return False
            self._fail_at(conn, runtime, execution_id, seq, message)
            return True

        return await self._run(op, "fail_at")

    async def pause(self, runtime: str, execution_id: str, attempt: int) -> bool:
        return await self._end_pass(runtime, execution_id, attempt, "paused", (), "pause")

    async def complete(
        self, runtime: str, execution_id: str, attempt: int, result_json: str, logs: Sequence[str]
    ) -> bool:
        return await self._end_pass(
            runtime, execution_id, attempt, "completed", (("result", result_json),), "complete", logs
        )

    async def fail(self, runtime: str, execution_id: str, attempt: int, error: str, logs: Sequence[str]) -> bool:
        return await self._end_pass(
            runtime, execution_id, attempt, "error", (("error", error[:MAX_ERROR_CHARS]),), "fail", logs
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
    ) -> bool:
        """`running` -> `status` by the attempt that owns the run, with the given columns."""
        assignments = "".join(f", {column} = ?" for column, _ in fields)
        values: list[Any] = [value for _, value in fields]
        if logs is not None:
            assignments += ", logs = ?"
            values.append(json.dumps(list(logs), ensure_ascii=False))

        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE cm_executions SET status = ?, updated_at = ?{assignments} "
                "WHERE runtime = ? AND id = ? AND attempt = ? AND status = 'running'",
                (status, _now_ms(), *values, runtime, execution_id, attempt),
            )
            return cur.rowcount == 1

        return await self._run(op, name)

    # -- approvals ----------------------------------------------------------

    async def list_pending(self, runtime: str, execution_id: str | None = None) -> list[PendingAction]:
        return await self._run(lambda conn: self._pending(conn, runtime, execution_id), "list_pending", write=False)

    @staticmethod
    def _pending(conn: sqlite3.Connection, runtime: str, execution_id: str | None) -> list[PendingAction]:
        sql = (
            "SELECT l.execution_id, l.seq, l.connector, l.method, l.args FROM cm_log l "
            "JOIN cm_executions e ON e.runtime = l.runtime AND e.id = l.execution_id "
            "WHERE l.runtime = ? AND l.state = 'pending' AND l.decision IS NULL AND e.status = 'paused'"
        )
        params: tuple[Any, ...] = (runtime,)
        if execution_id is not None:
            sql += " AND l.execution_id = ?"
            params += (execution_id,)
        sql += " ORDER BY e.created_at DESC, e.id DESC, l.seq"
        return [
            PendingAction(execution_id=r[0], seq=r[1], connector=r[2], method=r[3], args=loads(r[4]))
            for r in conn.execute(sql, params)
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

        def op(conn: sqlite3.Connection) -> Settlement:
            row = conn.execute(
                "SELECT e.status, l.state, l.decision FROM cm_executions e LEFT JOIN cm_log l "
                "ON l.runtime = e.runtime AND l.execution_id = e.id AND l.seq = ? WHERE e.runtime = ? AND e.id = ?",
                (seq, runtime, execution_id),
            ).fetchone()
            if row is None:
                return Settlement("stale", "deleted")
            status, state, decided = row
            if status != "paused" or state != "pending" or decided is not None:
                return Settlement("stale", status, self._pending(conn, runtime, execution_id))
            where = "WHERE runtime = ? AND execution_id = ? AND seq = ?"
            if end_error is not None:
                conn.execute(
                    f"UPDATE cm_log SET state = 'reverted', decision = ? {where}",
                    (decision_json, runtime, execution_id, seq),
                )
                conn.execute(
                    "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? AND state = 'pending'",
                    (runtime, execution_id),
                )
                conn.execute(
                    "UPDATE cm_executions SET status = 'rejected', error = ?, attempt = attempt + 1, updated_at = ? "
                    "WHERE runtime = ? AND id = ?",
                    (end_error[:MAX_ERROR_CHARS], _now_ms(), runtime, execution_id),
                )
                return Settlement("ended", "rejected")
            if error_json is not None:
                conn.execute(
                    f"UPDATE cm_log SET state = 'error', result = ?, decision = ? {where}",
                    (error_json, decision_json, runtime, execution_id, seq),
                )
            else:
                conn.execute(f"UPDATE cm_log SET decision = ? {where}", (decision_json, runtime, execution_id, seq))
            undecided = self._pending(conn, runtime, execution_id)
            if undecided:
                self._touch(conn, runtime, execution_id)
                return Settlement("waiting", "paused", undecided)
            conn.execute(
                "UPDATE cm_executions SET status = 'running', attempt = attempt + 1, updated_at = ? "
                "WHERE runtime = ? AND id = ?",
                (_now_ms(), runtime, execution_id),
            )
            return Settlement("resumed", "running", claim=self._claim(conn, runtime, execution_id))

        return await self._run(op, "settle")

    async def expire(self, runtime: str, max_age: timedelta, *, running: bool = True) -> list[str]:
        cutoff = _now_ms() - int(max_age.total_seconds() * 1000)
        statuses = "('paused', 'running')" if running else "('paused')"

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT id, status FROM cm_executions WHERE runtime = ? AND status IN {statuses} "
                "AND updated_at < ? ORDER BY created_at",
                (runtime, cutoff),
            ).fetchall()
            expired: list[str] = []
            now = _now_ms()
            for execution_id, status in rows:
                new_status, error = (
                    ("rejected", "Expired awaiting approval")
                    if status == "paused"
                    else ("error", "Expired while running: the host never completed the pass")
                )
                cur = conn.execute(
                    "UPDATE cm_executions SET status = ?, error = ?, updated_at = ?, attempt = attempt + 1 "
                    "WHERE runtime = ? AND id = ? AND status = ?",
                    (new_status, error, now, runtime, execution_id, status),
                )
                if cur.rowcount == 1:
                    conn.execute(
                        "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? "
                        "AND state = 'pending'",
                        (runtime, execution_id),
                    )
                    expired.append(execution_id)
            return expired

        return await self._run(op, "expire")

    # -- rollback -----------------------------------------------------------

    async def claim_rollback(self, runtime: str, execution_id: str, stale_after: timedelta) -> Claim | None:
        cutoff = _now_ms() - int(stale_after.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> Claim | None:
            cur = conn.execute(
                "UPDATE cm_executions SET status = 'rolling_back', attempt = attempt + 1, updated_at = ? "
                "WHERE runtime = ? AND id = ? AND (status IN ('paused', 'completed', 'error', 'rejected', "
                "'rolled_back') OR (status = 'rolling_back' AND updated_at < ?))",
                (_now_ms(), runtime, execution_id, cutoff),
            )
            return self._claim(conn, runtime, execution_id) if cur.rowcount == 1 else None

        return await self._run(op, "claim_rollback")

    async def begin_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, decision: Decision) -> bool:
        decision_json = _decision_json(decision)

        def op(conn: sqlite3.Connection) -> bool:
            if not self._owned(conn, runtime, execution_id, attempt, "rolling_back"):
                return False
            cur = conn.execute(
                "UPDATE cm_log SET state = 'reverting', rollback = ? WHERE runtime = ? AND execution_id = ? "
                "AND seq = ? AND state IN ('applied', 'reverting')",
                (decision_json, runtime, execution_id, seq),
            )
            self._touch(conn, runtime, execution_id)
            return cur.rowcount == 1

        return await self._run(op, "begin_revert")

    async def end_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, reverted: bool) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            if not self._owned(conn, runtime, execution_id, attempt, "rolling_back"):
                return False
            cur = conn.execute(
                "UPDATE cm_log SET state = ? WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'reverting'",
                ("reverted" if reverted else "applied", runtime, execution_id, seq),
            )
            self._touch(conn, runtime, execution_id)
            return cur.rowcount == 1

        return await self._run(op, "end_revert")

    async def finish_rollback(self, runtime: str, execution_id: str, attempt: int, decision: Decision) -> bool:
        decision_json = _decision_json(decision)

        def op(conn: sqlite3.Connection) -> bool:
            if not self._owned(conn, runtime, execution_id, attempt, "rolling_back"):
                return False
            conn.execute(
                "UPDATE cm_log SET state = 'reverted', rollback = ? WHERE runtime = ? "
                "AND execution_id = ? AND state = 'pending'",
                (decision_json, runtime, execution_id),
            )
            conn.execute(
                "UPDATE cm_executions SET status = 'rolled_back', updated_at = ? WHERE runtime = ? AND id = ?",
                (_now_ms(), runtime, execution_id),
            )
            return True

        return await self._run(op, "finish_rollback")

    # -- reading and retention ----------------------------------------------

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(
            lambda conn: self._load_execution(conn, runtime, execution_id), "get_execution", write=False
        )

    @staticmethod
    def _load_execution(conn: sqlite3.Connection, runtime: str, execution_id: str) -> Execution | None:
        row = conn.execute(
            f"SELECT {_EXECUTION_COLUMNS} FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
        ).fetchone()
        if row is None:
            return None
        log = [
            _entry(r)
            for r in conn.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM cm_log WHERE runtime = ? AND execution_id = ? ORDER BY seq",
                (runtime, execution_id),
            )
        ]
        return _execution(row, log)

    async def list_executions(
        self,
        runtime: str,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: Collection[str] | None = None,
    ) -> list[Execution]:
        where, params = "WHERE runtime = ?", [runtime]
        if status is not None:
            where += f" AND status IN ({','.join('?' * len(status))})"
            params.extend(status)
        for name, value in (metadata or {}).items():
            where += " AND EXISTS (SELECT 1 FROM json_each(cm_executions.metadata) WHERE key = ? AND value = ?)"
            params.extend((name, value))

        def op(conn: sqlite3.Connection) -> list[Execution]:
            rows = conn.execute(
                f"SELECT {_EXECUTION_COLUMNS} FROM cm_executions {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                (*params, -1 if limit is None else limit),
            ).fetchall()
            logs: dict[str, list[LogEntry]] = {r[0]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for r in conn.execute(
                    f"SELECT {_ENTRY_COLUMNS}, execution_id FROM cm_log WHERE runtime = ? AND execution_id IN "
                    f"({marks}) ORDER BY execution_id, seq",
                    (runtime, *logs),
                ):
                    logs[r[-1]].append(_entry(r))
            return [_execution(r, logs[r[0]]) for r in rows]

        return await self._run(op, "list_executions", write=False)

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT status FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT OR REPLACE INTO cm_keys (runtime, key, execution_id) SELECT runtime, key, id FROM "
                "cm_executions WHERE runtime = ? AND id = ? AND key IS NOT NULL",
                (runtime, execution_id),
            )
            conn.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            conn.execute("DELETE FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id))
            return str(row[0])

        return await self._run(op)

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int:
        return await self._run(lambda conn: self._prune(conn, runtime, keep, exclude))

    @staticmethod
    def _prune(conn: sqlite3.Connection, runtime: str, keep: int, exclude: str | None) -> int:
        rows = conn.execute(
            f"SELECT id, key FROM cm_executions WHERE runtime = ? AND status IN {_TERMINAL} AND id != ? "
            "ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?",
            (runtime, exclude or "", max(keep, 0)),
        ).fetchall()
        ids = [r[0] for r in rows]
        # A pruned run's key stays taken: a framework re-running that tool call must not start it again.
        conn.executemany(
            "INSERT OR REPLACE INTO cm_keys (runtime, key, execution_id) VALUES (?, ?, ?)",
            [(runtime, key, execution_id) for execution_id, key in rows if key is not None],
        )
        for execution_id in ids:
            conn.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            conn.execute("DELETE FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id))
        return len(ids)

    # -- snippets -----------------------------------------------------------

    async def save_snippet(self, runtime: str, snippet: Snippet, input_schema_json: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO cm_snippets (runtime, name, description, code, saved_at, input_schema, "
                "connectors) VALUES (?, ?, ?, ?, ?, ?, ?)",
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

        await self._run(op)

    async def get_snippet(self, runtime: str, name: str) -> Snippet | None:
        def op(conn: sqlite3.Connection) -> Snippet | None:
            row = conn.execute(
                "SELECT name, description, code, saved_at, input_schema, connectors FROM cm_snippets "
                "WHERE runtime = ? AND name = ?",
                (runtime, name),
            ).fetchone()
            return None if row is None else _snippet(row)

        return await self._run(op, write=False)

    async def list_snippets(self, runtime: str) -> list[Snippet]:
        def op(conn: sqlite3.Connection) -> list[Snippet]:
            rows = conn.execute(
                "SELECT name, description, code, saved_at, input_schema, connectors FROM cm_snippets "
                "WHERE runtime = ? ORDER BY name",
                (runtime,),
            )
            return [_snippet(r) for r in rows]

        return await self._run(op, write=False)

    async def delete_snippet(self, runtime: str, name: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("DELETE FROM cm_snippets WHERE runtime = ? AND name = ?", (runtime, name))
            return cur.rowcount == 1

        return await self._run(op)


class _Busy(Exception):
    """Another connection holds the lock; retry where waiting is harmless."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


_EXECUTION_COLUMNS = "id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata"
_ENTRY_COLUMNS = "seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback"


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


def _entry(row: Sequence[Any]) -> LogEntry:
    seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback = row[:10]
    return LogEntry(
        seq=seq,
        connector=connector,
        method=method,
        args=loads(args),
        result=loads(result),
        requires_approval=bool(requires_approval),
        ephemeral=bool(ephemeral),
        state=state,
        decision=_decision(decision),
        rollback=_decision(rollback),
    )


def _execution(row: Sequence[Any], log: list[LogEntry]) -> Execution:
    execution_id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata = row
    status_value: ExecutionStatus = status
    return Execution(
        id=execution_id,
        code=code,
        status=status_value,
        log=log,
        result=loads(result),
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
