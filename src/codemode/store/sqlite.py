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
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

from codemode.runtime.codec import loads
from codemode.runtime.outcome import (
    STEP_CONNECTOR,
    TERMINAL_STATUSES,
    Execution,
    ExecutionStatus,
    LogEntry,
    LogState,
    PendingAction,
    Snippet,
)
from codemode.store.base import Decision

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
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def new_execution_id() -> str:
    """Lexical order matches creation order."""
    return f"exec_{_now_ms():016d}_{uuid.uuid4().hex}"


class SqliteStore:
    """Durable state in one SQLite file (or `":memory:"` for a throwaway store)."""

    def __init__(self, path: str | Path = "codemode.db", *, busy_timeout: float = 30.0) -> None:
        self.path = str(path)
        self.busy_timeout = busy_timeout
        self._pool: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._opened = False
        self._open_lock = threading.Lock()
        self._conn_lock = threading.Lock()  # one user of the connection at a time
        self._waits: bool | None = None  # the busy timeout currently set on the connection

    # -- plumbing -----------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        if not self._opened:
            await self.open()
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
            self._opened = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._waiting_transaction, self._migrate, True)
        except BaseException:
            await self.close()
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

    async def begin(self, runtime: str, code: str, connectors: Sequence[str], max_executions: int) -> str:
        execution_id = new_execution_id()
        now = _now_ms()

        def op(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO cm_executions (runtime, id, code, status, connectors, created_at, updated_at) "
                "VALUES (?, ?, ?, 'running', ?, ?, ?)",
                (runtime, execution_id, code, json.dumps(list(connectors)), now, now),
            )
            self._prune(conn, runtime, max_executions, execution_id)
            return execution_id

        return await self._run(op)

    async def resume(self, runtime: str, execution_id: str) -> Execution | None:
        def op(conn: sqlite3.Connection) -> Execution | None:
            cur = conn.execute(
                "UPDATE cm_executions SET status = 'running', updated_at = ? "
                "WHERE runtime = ? AND id = ? AND status = 'paused'",
                (_now_ms(), runtime, execution_id),
            )
            return self._load_execution(conn, runtime, execution_id) if cur.rowcount == 1 else None

        return await self._run(op)

    async def heartbeat(self, runtime: str, execution_id: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ? AND status = 'running'",
                (_now_ms(), runtime, execution_id),
            )
            return cur.rowcount == 1

        return await self._run(op)

    async def claim_stale(self, runtime: str, execution_id: str, older_than: timedelta) -> Execution | None:
        cutoff = _now_ms() - int(older_than.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> Execution | None:
            cur = conn.execute(
                "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ? AND status = 'running' "
                "AND updated_at < ?",
                (_now_ms(), runtime, execution_id, cutoff),
            )
            return self._load_execution(conn, runtime, execution_id) if cur.rowcount == 1 else None

        return await self._run(op)

    async def decide(
        self,
        runtime: str,
        execution_id: str,
        seq: int,
        connector: str,
        method: str,
        args_json: str | None,
        args_error: str | None,
        requires_approval: bool,
        ephemeral: bool,
    ) -> Decision:
        def op(conn: sqlite3.Connection) -> Decision:
            row = conn.execute(
                "SELECT status FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
            ).fetchone()
            if row is None:
                raise LookupError(f'No execution "{execution_id}"')
            if row[0] != "running":
                return Decision("pause", seq)  # paused or ended: refuse progress, record nothing
            existing = conn.execute(
                "SELECT connector, method, args, result, ephemeral, state FROM cm_log "
                "WHERE runtime = ? AND execution_id = ? AND seq = ?",
                (runtime, execution_id, seq),
            ).fetchone()
            if existing is not None:
                e_connector, e_method, e_args, e_result, e_ephemeral, e_state = existing
                if (e_connector, e_method) != (connector, method):
                    return self._diverge(
                        conn,
                        runtime,
                        execution_id,
                        seq,
                        f"expected {_label(e_connector, e_method)}, got {_label(connector, method)}. Code must be "
                        "deterministic up to tool calls and steps. Wrap nondeterministic work in "
                        "codemode.step(name, fn).",
                    )
                if args_json is not None and e_args is not None and e_args != args_json:
                    return self._diverge(
                        conn,
                        runtime,
                        execution_id,
                        seq,
                        f"{connector}.{method} was called with different arguments than the recorded run. "
                        "Arguments must be deterministic across replays. Wrap nondeterministic inputs in "
                        "codemode.step(name, fn).",
                    )
                if e_state == "applied":
                    if e_ephemeral:
                        return Decision("execute", seq)
                    return Decision("replay", seq, loads(e_result))
                if e_state == "pending":
                    # Approved since the last pass. Persisted before returning, so a racing
                    # reject sees `executing` and does nothing.
                    self._set_state(conn, runtime, execution_id, seq, "executing")
                    self._touch(conn, runtime, execution_id)
                    return Decision("execute", seq)
                if e_state == "executing":
                    return Decision("execute", seq)  # crashed before recording: re-execute, never re-pause
                # reverted or error: treat as a fresh call
            if args_error is not None:
                self._fail_at(conn, runtime, execution_id, seq, args_error)
                return Decision("pause", seq)
            state = "pending" if requires_approval else "executing"
            conn.execute(
                "INSERT OR REPLACE INTO cm_log (runtime, execution_id, seq, connector, method, args, result, "
                "requires_approval, ephemeral, state) VALUES (?, ?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                (
                    runtime,
                    execution_id,
                    seq,
                    connector,
                    method,
                    args_json,
                    int(requires_approval),
                    int(ephemeral),
                    state,
                ),
            )
            if requires_approval:
                conn.execute(
                    "UPDATE cm_executions SET status = 'paused', updated_at = ? WHERE runtime = ? AND id = ?",
                    (_now_ms(), runtime, execution_id),
                )
                return Decision("pause", seq)
            self._touch(conn, runtime, execution_id)
            return Decision("execute", seq)

        return await self._run(op)

    def _diverge(self, conn: sqlite3.Connection, runtime: str, execution_id: str, seq: int, detail: str) -> Decision:
        self._fail_at(conn, runtime, execution_id, seq, f"Codemode replay divergence at step {seq}: {detail}")
        return Decision("pause", seq)

    @staticmethod
    def _fail_at(conn: sqlite3.Connection, runtime: str, execution_id: str, seq: int, message: str) -> None:
        conn.execute(
            "UPDATE cm_log SET state = 'error' WHERE runtime = ? AND execution_id = ? AND seq = ? "
            "AND state IN ('executing', 'pending')",
            (runtime, execution_id, seq),
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

    async def record_result(self, runtime: str, execution_id: str, seq: int, result_json: str | None) -> None:
        def op(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE cm_log SET result = ?, state = 'applied' WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'executing'",
                (result_json, runtime, execution_id, seq),
            )
            if cur.rowcount == 0:
                exists = conn.execute(
                    "SELECT 1 FROM cm_log WHERE runtime = ? AND execution_id = ? AND seq = ?",
                    (runtime, execution_id, seq),
                ).fetchone()
                if exists is None:
                    raise LookupError(f"No log entry at step {seq}")
            self._touch(conn, runtime, execution_id)

        await self._run(op)

    async def record_error(self, runtime: str, execution_id: str, seq: int, error_json: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE cm_log SET result = ?, state = 'error' WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'executing'",
                (error_json, runtime, execution_id, seq),
            )
            self._touch(conn, runtime, execution_id)

        await self._run(op)

    async def fail_at(self, runtime: str, execution_id: str, seq: int, message: str) -> None:
        await self._run(lambda conn: self._fail_at(conn, runtime, execution_id, seq, message))

    async def complete(self, runtime: str, execution_id: str, result_json: str, logs: Sequence[str]) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE cm_executions SET status = 'completed', result = ?, logs = ?, updated_at = ? "
                "WHERE runtime = ? AND id = ? AND status = 'running'",
                (result_json, json.dumps(list(logs), ensure_ascii=False), _now_ms(), runtime, execution_id),
            )
            return cur.rowcount == 1

        return await self._run(op)

    async def fail(self, runtime: str, execution_id: str, error: str, logs: Sequence[str]) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE cm_executions SET status = 'error', error = ?, logs = ?, updated_at = ? "
                "WHERE runtime = ? AND id = ? AND status = 'running'",
                (error[:MAX_ERROR_CHARS], json.dumps(list(logs), ensure_ascii=False), _now_ms(), runtime, execution_id),
            )
            return cur.rowcount == 1

        return await self._run(op)

    # -- approvals ----------------------------------------------------------

    async def list_pending(self, runtime: str, execution_id: str | None = None) -> list[PendingAction]:
        def op(conn: sqlite3.Connection) -> list[PendingAction]:
            sql = (
                "SELECT l.execution_id, l.seq, l.connector, l.method, l.args FROM cm_log l "
                "JOIN cm_executions e ON e.runtime = l.runtime AND e.id = l.execution_id "
                "WHERE l.runtime = ? AND l.state = 'pending' AND e.status = 'paused'"
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

        return await self._run(op, write=False)

    async def reject(self, runtime: str, execution_id: str, seq: int) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT l.connector, l.method FROM cm_log l JOIN cm_executions e "
                "ON e.runtime = l.runtime AND e.id = l.execution_id "
                "WHERE l.runtime = ? AND l.execution_id = ? AND l.seq = ? AND l.state = 'pending' "
                "AND e.status = 'paused'",
                (runtime, execution_id, seq),
            ).fetchone()
            if row is None:
                return False
            self._set_state(conn, runtime, execution_id, seq, "reverted")
            conn.execute(
                "UPDATE cm_executions SET status = 'rejected', error = ?, updated_at = ? "
                "WHERE runtime = ? AND id = ? AND status = 'paused'",
                (f"Action {row[0]}.{row[1]} rejected by user", _now_ms(), runtime, execution_id),
            )
            return True

        return await self._run(op)

    async def expire(self, runtime: str, max_age: timedelta) -> list[str]:
        cutoff = _now_ms() - int(max_age.total_seconds() * 1000)

        def op(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT id, status FROM cm_executions WHERE runtime = ? AND status IN ('paused', 'running') "
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
                    "UPDATE cm_executions SET status = ?, error = ?, updated_at = ? "
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

        return await self._run(op)

    # -- rollback -----------------------------------------------------------

    async def actions_to_revert(self, runtime: str, execution_id: str) -> list[LogEntry]:
        def op(conn: sqlite3.Connection) -> list[LogEntry]:
            rows = conn.execute(
                "SELECT seq, connector, method, args, result, requires_approval, ephemeral, state FROM cm_log "
                "WHERE runtime = ? AND execution_id = ? AND state = 'applied' AND connector != ? ORDER BY seq DESC",
                (runtime, execution_id, STEP_CONNECTOR),
            ).fetchall()
            return [_entry(r) for r in rows]

        return await self._run(op, write=False)

    async def mark_reverted(self, runtime: str, execution_id: str, seq: int) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? AND seq = ? "
                "AND state = 'applied'",
                (runtime, execution_id, seq),
            )
            self._touch(conn, runtime, execution_id)

        await self._run(op)

    async def mark_rolled_back(self, runtime: str, execution_id: str) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE cm_log SET state = 'reverted' WHERE runtime = ? AND execution_id = ? AND state = 'pending'",
                (runtime, execution_id),
            )
            conn.execute(
                "UPDATE cm_executions SET status = 'rolled_back', updated_at = ? WHERE runtime = ? AND id = ? "
                "AND status != 'running'",
                (_now_ms(), runtime, execution_id),
            )

        await self._run(op)

    # -- reading and retention ----------------------------------------------

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(lambda conn: self._load_execution(conn, runtime, execution_id), write=False)

    @staticmethod
    def _load_execution(conn: sqlite3.Connection, runtime: str, execution_id: str) -> Execution | None:
        row = conn.execute(
            "SELECT id, code, status, result, error, logs, connectors, created_at, updated_at FROM cm_executions "
            "WHERE runtime = ? AND id = ?",
            (runtime, execution_id),
        ).fetchone()
        if row is None:
            return None
        log = [
            _entry(r)
            for r in conn.execute(
                "SELECT seq, connector, method, args, result, requires_approval, ephemeral, state FROM cm_log "
                "WHERE runtime = ? AND execution_id = ? ORDER BY seq",
                (runtime, execution_id),
            )
        ]
        return _execution(row, log)

    async def list_executions(self, runtime: str, limit: int | None = None) -> list[Execution]:
        def op(conn: sqlite3.Connection) -> list[Execution]:
            rows = conn.execute(
                "SELECT id, code, status, result, error, logs, connectors, created_at, updated_at FROM cm_executions "
                "WHERE runtime = ? ORDER BY created_at DESC, id DESC LIMIT ?",
                (runtime, -1 if limit is None else limit),
            ).fetchall()
            logs: dict[str, list[LogEntry]] = {r[0]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for r in conn.execute(
                    "SELECT seq, connector, method, args, result, requires_approval, ephemeral, state, execution_id "
                    f"FROM cm_log WHERE runtime = ? AND execution_id IN ({marks}) ORDER BY execution_id, seq",
                    (runtime, *logs),
                ):
                    logs[r[8]].append(_entry(r))
            return [_execution(r, logs[r[0]]) for r in rows]

        return await self._run(op, write=False)

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        def op(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT status FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
            ).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            conn.execute("DELETE FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id))
            return str(row[0])

        return await self._run(op)

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int:
        return await self._run(lambda conn: self._prune(conn, runtime, keep, exclude))

    @staticmethod
    def _prune(conn: sqlite3.Connection, runtime: str, keep: int, exclude: str | None) -> int:
        ids = [
            r[0]
            for r in conn.execute(
                f"SELECT id FROM cm_executions WHERE runtime = ? AND status IN {_TERMINAL} AND id != ? "
                "ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?",
                (runtime, exclude or "", max(keep, 0)),
            )
        ]
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


def _label(connector: str, method: str) -> str:
    return f'codemode.step("{method}")' if connector == STEP_CONNECTOR else f"{connector}.{method}"


def _entry(row: Sequence[Any]) -> LogEntry:
    seq, connector, method, args, result, requires_approval, ephemeral, state = row[:8]
    return LogEntry(
        seq=seq,
        connector=connector,
        method=method,
        args=loads(args),
        result=loads(result),
        requires_approval=bool(requires_approval),
        ephemeral=bool(ephemeral),
        state=state,
    )


def _execution(row: Sequence[Any], log: list[LogEntry]) -> Execution:
    execution_id, code, status, result, error, logs, connectors, created_at, updated_at = row
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
