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
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from codemode import crashpoints
from codemode.errors import StoreError
from codemode.store import sql_checkpoints
from codemode.store.sql import HISTORY_INDEXES, Op, Rows, SqlStore, drive, shared_migrations

__all__ = ["SqliteStore"]

T = TypeVar("T")

# Versioned migrations (shared with PostgreSQL): index i upgrades the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    *shared_migrations(bigint="INTEGER"),
    # 3: the history's indexes (see `HISTORY_INDEXES`), and the status index ordered like the listing, so
    # `list_executions(status=[one])` reads its newest runs in order. No ANALYZE: the plans follow from the
    # indexes and the queries' shapes, and statistics taken while a database is young would mislead later.
    f"""
    DROP INDEX cm_executions_status;
    CREATE INDEX cm_executions_status ON cm_executions (runtime, status, created_at, id);
    {HISTORY_INDEXES}
    """,
    # 4: paused runs' checkpoints.
    sql_checkpoints.MIGRATION.format(bigint="INTEGER", blob="BLOB"),
)


class SqliteStore(SqlStore):
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

    def _metadata_match(self) -> str:
        return "EXISTS (SELECT 1 FROM json_each(cm_executions.metadata) WHERE key = ? AND value = ?)"

    _trail_of = "json_group_array(json_array({}))"
    _ends_in_one_statement = True
    _trail_refusals = (sqlite3.OperationalError,)

    async def _run(self, op: Op[T], name: str = "", *, write: bool = True, single: bool = False) -> T:
        """One transaction; `name` is the operation's crash point (see `codemode.crashpoints`).

        A `single` op runs in autocommit: its one write statement is a transaction of its own, atomic
        across processes, which spares the BEGIN and COMMIT statements on the per-call path."""
        if not self._opened:
            if self._closed:
                raise RuntimeError("This SqliteStore was closed; open() it again (or use a new one) to keep using it.")
            await self.open()
        assert self._pool is not None
        crashpoints.reached(f"before:{name}")
        mode = "autocommit" if single else "BEGIN IMMEDIATE" if write else "BEGIN"
        result = await self._commit(lambda conn: drive(op(_SqliteTx(conn))), mode)
        crashpoints.reached(f"after:{name}")
        return result

    async def _single(self, sql: str, params: Sequence[Any], name: str = "") -> int | None:
        """The per-call write as one autocommitted statement, run right here when the connection is free
        (what `_run` does for a `single` op, without its layers of calls); when another process holds the
        write lock, the statement (which wrote nothing) waits for it on the store's thread."""
        if not self._opened or not self._conn_lock.acquire(blocking=False):
            return None
        try:
            pool = self._pool
            if pool is None:  # being closed: `_run` says so
                return None
            conn = self._connection()
            if self._waits is not False:
                conn.execute("PRAGMA busy_timeout=0")
                self._waits = False
            crashpoints.reached(f"before:{name}")
            try:
                count: int | None = conn.execute(sql, params).rowcount
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    self._reraise(exc, False)
                count = None
        finally:
            self._conn_lock.release()
        if count is None:
            loop = asyncio.get_running_loop()
            count = await loop.run_in_executor(
                pool, self._waiting_transaction, lambda c: c.execute(sql, params).rowcount, "autocommit"
            )
        crashpoints.reached(f"after:{name}")
        return count

    async def _commit(self, fn: Callable[[sqlite3.Connection], T], mode: str) -> T:
        assert self._pool is not None
        if self._conn_lock.acquire(blocking=False):
            try:
                return self._transaction(fn, mode, wait=False)
            except _Busy:
                pass  # another process is writing: wait for it off the event loop
            finally:
                self._conn_lock.release()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._waiting_transaction, fn, mode)

    def _waiting_transaction(self, fn: Callable[[sqlite3.Connection], T], mode: str) -> T:
        with self._conn_lock:
            return self._transaction(fn, mode, wait=True)

    def _transaction(self, fn: Callable[[sqlite3.Connection], T], mode: str, *, wait: bool) -> T:
        """One transaction begun by `mode` (or none: `autocommit`); with `wait=False` a busy database
        raises `_Busy` and changes nothing."""
        conn = self._connection()
        if self._waits is not wait:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000) if wait else 0}")
            self._waits = wait
        if mode == "autocommit":
            try:
                return fn(conn)
            except sqlite3.OperationalError as exc:
                self._reraise(exc, wait)
        try:
            conn.execute(mode)
        except sqlite3.OperationalError as exc:
            if not wait and _is_busy(exc):
                raise _Busy() from exc
            raise
        try:
            result = fn(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _rollback(conn)
            self._reraise(exc, wait)
        except BaseException:
            _rollback(conn)
            raise
        return result

    def _reraise(self, exc: sqlite3.OperationalError, wait: bool) -> NoReturn:
        """A failed statement as the caller should see it: `_Busy` (retry on the store's thread), the
        storage failure it is (disk full, I/O error), or itself."""
        if not wait and _is_busy(exc):
            raise _Busy() from exc
        failure = _storage_failure(self.path, exc)
        if failure is not None:
            raise failure from exc
        raise exc

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            except BaseException:
                conn.close()  # a file that is not a database, or read-only: keep no descriptor open
                raise
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
            await loop.run_in_executor(self._pool, self._waiting_transaction, self._migrate, "BEGIN IMMEDIATE")
        except BaseException as exc:
            await self._shutdown()
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, StoreError):
                raise _open_failure(self.path, exc) from exc
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


class _Busy(Exception):
    """Another connection holds the lock; retry where waiting is harmless."""


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)


def _rollback(conn: sqlite3.Connection) -> None:
    """Undo the transaction if it is still open: SQLite already rolled back after a full disk or an
    I/O error, and a failing ROLLBACK must not hide the error that caused it."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _error_name(exc: sqlite3.Error) -> str:
    """SQLITE_FULL, SQLITE_IOERR_WRITE, ... (Python 3.11+), else guessed from the message."""
    name = getattr(exc, "sqlite_errorname", None)
    if isinstance(name, str):
        return name
    text = str(exc).lower()
    for fragment, guess in (
        ("disk is full", "SQLITE_FULL"),
        ("disk i/o", "SQLITE_IOERR"),
        ("readonly", "SQLITE_READONLY"),
        ("unable to open", "SQLITE_CANTOPEN"),
        ("not a database", "SQLITE_NOTADB"),
        ("malformed", "SQLITE_CORRUPT"),
    ):
        if fragment in text:
            return guess
    return ""


def _storage_failure(path: str, exc: sqlite3.Error) -> StoreError | None:
    """A write that failed for want of room or a working disk, as an error saying so; None for others."""
    name = _error_name(exc)
    if name == "SQLITE_FULL":
        return StoreError(
            f"The codemode database {path} could not be written: the disk is full ({exc}). Nothing of this "
            "operation was saved; free some space and retry: the store works again once there is room.",
            path,
        )
    if name.startswith("SQLITE_IOERR"):
        return StoreError(
            f"The codemode database {path} could not be written: disk I/O error ({name}). Nothing of this "
            "operation was saved; check the disk (free space, a file size limit, a failing device) and retry.",
            path,
        )
    if name.startswith("SQLITE_READONLY"):
        return _open_failure(path, exc)
    return None


def _open_failure(path: str, exc: sqlite3.Error) -> StoreError:
    """Why the database file could not be opened, and what to do about it."""
    name = _error_name(exc)
    where = "an in-memory database" if path == ":memory:" else f"the codemode database {path}"
    if name.startswith("SQLITE_CANTOPEN"):
        parent = Path(path).parent
        why = (
            f"the directory {parent} does not exist; create it"
            if not parent.exists()
            else "check that the path names a file (not a directory) this process may read and write, in a "
            "directory it may write"
        )
        return StoreError(f"Cannot open {where} ({exc}): {why}, or pass another path to SqliteStore.", path)
    if name.startswith("SQLITE_READONLY"):
        return StoreError(
            f"Cannot write {where} ({exc}): the file or its directory is read-only. Give this process write "
            "access to both (the store adds -wal and -shm files beside it), or pass a writable path to SqliteStore.",
            path,
        )
    if name in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
        return StoreError(
            f"Cannot open {where} ({exc}): the file is not a SQLite database, or is damaged. Pass the path of "
            "a codemode database, or of a file that does not exist yet, to SqliteStore.",
            path,
        )
    failure = _storage_failure(path, exc)
    if failure is not None:
        return failure
    return StoreError(f"Cannot open {where}: {type(exc).__name__}: {exc}.", path)


class _SqliteTx:
    """A transaction on the store's connection; its statements never suspend (see `drive`)."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        return self.conn.execute(sql, params)
