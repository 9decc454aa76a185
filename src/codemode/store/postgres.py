"""`PostgresStore`: one runtime shared by several hosts through one PostgreSQL database.

Every operation is one `SERIALIZABLE` transaction, so each compare-and-set of the shared SQL
(`store/sql.py`) behaves exactly as under SQLite's single writer, across hosts. A transaction the
server aborts as a serialization conflict is retried: none has effects outside the database.

A connection lost before the transaction was committed is retried on a fresh connection (the server
rolled it back); one lost while committing is resolved by asking the server whether that transaction
committed (then its result stands) or aborted (then it is retried). Only when the server cannot say
is it reported, and the caller's pass fails cleanly so `recover` can finish the run.

Status changes are announced with `NOTIFY codemode` (see `PostgresStore.changes`), so approvers and
waiting hosts learn of a pause without polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from codemode import crashpoints
from codemode.errors import StoreConflictError, StoreConnectionError
from codemode.store import sql_checkpoints
from codemode.store.sql import HISTORY_INDEXES, Op, Rows, SqlStore, Tx, now_ms, shared_migrations

if TYPE_CHECKING:
    import psycopg
    import psycopg_pool

__all__ = ["PostgresStore", "StoreChange"]

T = TypeVar("T")
log = logging.getLogger("codemode")
CHANNEL = "codemode"
CLOCK_READ_INTERVAL = 60.0  # seconds between readings of the server's clock
# A transaction of ours takes milliseconds: one left open this long belongs to a host that froze
# (SIGSTOP, a swapped-out VM, a hung loop) and holds row locks every other host would wait on forever.
IDLE_IN_TRANSACTION_TIMEOUT = "15s"
_MIGRATION_LOCK = 0x636F64656D6F6465  # "codemode": serializes schema creation across hosts

# The shared migrations with PostgreSQL's 64-bit integers, then PostgreSQL's own.
MIGRATIONS: tuple[str, ...] = (
    *shared_migrations(bigint="BIGINT"),
    # 3 (PostgreSQL only): no index on status. With one, the planner serves a pass's point writes
    # (`id = ? AND status = 'running'`) from it, so every pass read every live run and SERIALIZABLE
    # aborted concurrent passes of different runs as conflicts; status changes now stay HOT updates.
    """
    DROP INDEX IF EXISTS cm_executions_status;
    CREATE INDEX cm_executions_created ON cm_executions (runtime, created_at);
    """,
    # 4: the history's indexes (see `HISTORY_INDEXES`; `created` gains `id`, the listing's tiebreak) and
    # the paused runs (`list_pending`), then statistics for them at once (autovacuum keeps them current).
    # The partial indexes name status only in their conditions, which no point write of a pass
    # (`status = 'running'`) satisfies, so those writes still never read through them. A status change is
    # no longer a HOT update: eight hosts beginning and completing 320 runs at once retried about twice as
    # many transactions as under version 3 (none ran out of retries), the price of reading history by index.
    f"""
    DROP INDEX cm_executions_created;
    {HISTORY_INDEXES}
    CREATE INDEX cm_executions_paused ON cm_executions (runtime, created_at, id) WHERE status = 'paused';
    ANALYZE cm_executions;
    ANALYZE cm_log;
    """,
    # 5: paused runs' checkpoints.
    sql_checkpoints.MIGRATION.format(bigint="BIGINT", blob="BYTEA"),
)


@dataclass(frozen=True)
class StoreChange:
    """A run changed status on some host: `status` is the new one (`deleted` when it was deleted)."""

    runtime: str
    execution_id: str
    status: str


class PostgresStore(SqlStore):
    """Durable state in a PostgreSQL database, shared safely by any number of hosts.

    `dsn` is a libpq connection string or URI. Tables live in the connection's current schema
    (set `options=-csearch_path=...` in the DSN to choose another). Needs `pip install 'codemode[postgres]'`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout: float = 10.0,
        conflict_retries: int = 20,
    ) -> None:
        self.dsn = dsn
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout = connect_timeout
        self.conflict_retries = conflict_retries
        # One pool per event loop: the runtime's heartbeats call from a loop of their own.
        self._pools: dict[asyncio.AbstractEventLoop, psycopg_pool.AsyncConnectionPool[Any]] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._migrated = False
        self._closed = False
        self._clock_offset = 0  # the server's clock minus ours, in ms (see `_now`)
        self._clock_read_at = -math.inf
        self._sql: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"PostgresStore({_safe_dsn(self.dsn)!r})"

    _prune_apart = True

    async def _prune_after_begin(self, runtime: str, keep: int, exclude: str) -> None:
        """Prune in a READ COMMITTED transaction of its own: a SERIALIZABLE one reads every ended run, so
        it conflicted with every concurrent write of any run and aborted hosts' passes in a busy runtime.
        The deletes re-check each run is still ended; a prune that fails is left to the next `begin`."""

        async def op(tx: Tx) -> int:
            await tx.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            return await self._prune(tx, runtime, keep, exclude)

        try:
            await self._run(op, "prune")
        except Exception as exc:  # the run is begun; pruning is housekeeping the next begin redoes
            log.warning("codemode: pruning the history of %r failed (the next run retries): %s", runtime, exc)

    def _metadata_match(self) -> str:
        return "(cm_executions.metadata::jsonb ->> ?) = ?"

    _trail_of = "json_agg(json_build_array({}))::text"

    def _now(self) -> int:
        return now_ms() + self._clock_offset

    async def _read_clock(self, conn: Any) -> None:
        """Measure the server's clock against ours (once a minute), so that every host stamps and ages
        runs by the one clock they share: a host whose clock runs late cannot take a live run for dead."""
        before = now_ms()
        row = await (await conn.execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")).fetchone()
        after = now_ms()
        await conn.rollback()
        self._clock_offset = int(row[0]) - (before + after) // 2
        self._clock_read_at = time.monotonic()

    async def _notify(self, tx: Tx, runtime: str, execution_id: str, status: str) -> None:
        payload = json.dumps({"runtime": runtime, "execution_id": execution_id, "status": status})
        await tx.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload))

    # -- connections --------------------------------------------------------

    async def open(self) -> None:
        """Connect and create or migrate the schema; idempotent."""
        self._closed = False
        await self._loop_pool()

    async def _loop_pool(self) -> psycopg_pool.AsyncConnectionPool[Any]:
        """The pool of the running event loop, opened on first use (the first one also migrates)."""
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is not None:
            return pool
        lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            pool = self._pools.get(loop)
            if pool is not None:
                return pool
            for other in [other for other in self._pools if other.is_closed()]:
                del self._pools[other]  # a finished loop's pool: its connections went with it
            psycopg, pool_module = _drivers()
            home = not self._pools
            if home:  # the first pool proves the DSN; a later loop's pool (heartbeats) need not probe again
                await self._check_reachable(psycopg)
            created: psycopg_pool.AsyncConnectionPool[Any] = pool_module.AsyncConnectionPool(
                self.dsn,
                min_size=self.min_connections if home else 1,
                max_size=self.max_connections if home else 2,
                kwargs={"autocommit": False, "connect_timeout": max(1, int(self.connect_timeout))},
                configure=_configure,
                timeout=self.connect_timeout,  # how long an operation waits for a free (or new) connection
                open=False,
                name="codemode",
            )
            try:
                await created.open(wait=True, timeout=self.connect_timeout)
                async with created.connection() as conn:
                    if not self._migrated:
                        await _migrate(conn)
                        self._migrated = True
                    await self._read_clock(conn)
            except pool_module.PoolTimeout as exc:
                await created.close()
                raise StoreConnectionError(
                    f"No connection to PostgreSQL at {_safe_dsn(self.dsn)} opened within {self.connect_timeout:g} s; "
                    "check that the server is running and accepting connections."
                ) from exc
            except BaseException:
                await created.close()
                raise
            self._pools[loop] = created
            return created

    async def _check_reachable(self, psycopg: Any) -> None:
        """Connect once directly, so a bad DSN or a down server is reported with libpq's own reason."""
        try:
            conn = await psycopg.AsyncConnection.connect(self.dsn, connect_timeout=max(1, int(self.connect_timeout)))
        except psycopg.Error as exc:
            raise StoreConnectionError(
                f"Cannot connect to PostgreSQL at {_safe_dsn(self.dsn)}: {str(exc).strip()}. Check the DSN "
                "(host, port, database, user, password) and that the server is running."
            ) from None
        await conn.close()

    async def close(self) -> None:
        """Close every connection; later operations raise until `open()` is called again."""
        self._closed = True
        pools, self._pools = self._pools, {}
        current = asyncio.get_running_loop()
        for loop, pool in pools.items():
            if loop is current:
                await pool.close()
            elif loop.is_running():  # a pool of another thread's loop is closed on that loop
                done = asyncio.run_coroutine_threadsafe(pool.close(), loop)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.wrap_future(done), timeout=10)

    async def _run(self, op: Op[T], name: str = "", *, write: bool = True, single: bool = False) -> T:
        if self._closed:
            raise RuntimeError("This PostgresStore was closed; open() it again (or use a new one) to keep using it.")
        pool = await self._loop_pool()
        psycopg, psycopg_pool = _drivers()
        crashpoints.reached(f"before:{name}")
        retryable = (
            psycopg.errors.SerializationFailure,
            psycopg.errors.DeadlockDetected,
            psycopg.errors.UniqueViolation,
        )
        tries = 0
        while True:
            tx = _PgTx(self._sql)
            try:
                async with pool.connection() as conn:
                    if time.monotonic() - self._clock_read_at > CLOCK_READ_INTERVAL:
                        await self._read_clock(conn)
                    tx.conn = conn
                    if single:  # one round trip: the statement is a serializable transaction of its own
                        await conn.set_autocommit(True)
                        try:
                            result = await op(tx)
                        finally:
                            await conn.set_autocommit(False)
                        break
                    async with conn.transaction():
                        result = await op(tx)
                        if write:  # named, so that a break while committing can be resolved (`_commit_outcome`)
                            row = await (await conn.execute("SELECT pg_current_xact_id_if_assigned()::text")).fetchone()
                            tx.xid = row[0]
                        tx.committing = True
                break
            except retryable as exc:
                tries += 1
                if tries > self.conflict_retries:
                    raise StoreConflictError(
                        f"PostgreSQL aborted {name or 'this operation'} {tries} times in a row as a conflict with "
                        f"other hosts' concurrent writes; nothing was written. Try it again, or raise "
                        f"PostgresStore(conflict_retries=...) (now {self.conflict_retries}). ({str(exc).strip()})"
                    ) from exc
                # Full jitter, growing to half a second: a storm of hosts spreads out instead of colliding again.
                await asyncio.sleep(random.uniform(0, min(0.5, 0.005 * 2 ** min(tries, 7))))
            except psycopg_pool.PoolTimeout as exc:
                raise StoreConnectionError(
                    f"No PostgreSQL connection became available within {pool.timeout:g} s for {name or 'this'}; "
                    "the server may be down or every connection busy (raise max_connections)."
                ) from exc
            except psycopg.OperationalError as exc:
                # A transaction that wrote nothing (a read) is retried like any break before COMMIT; one that
                # wrote is looked up by its id: committed, its result stands; aborted, it is retried. A `single`
                # statement is retried as it is: the store's single ops give the same answer run twice.
                if tx.committing and tx.xid is not None:
                    outcome = await self._commit_outcome(tx.xid)
                    if outcome == "committed":
                        break
                    if outcome is None:
                        raise StoreConnectionError(
                            f"The connection to PostgreSQL broke while committing {name or 'a write'}, and the "
                            f"server could not be asked whether it was applied ({str(exc).strip()})."
                        ) from exc
                tries += 1
                if tries > 3:
                    raise StoreConnectionError(
                        f"PostgreSQL is unreachable ({str(exc).strip()}); nothing was written for {name or 'this'}."
                    ) from exc
                await pool.check()  # drop the connections a server restart broke, then try a fresh one
        crashpoints.reached(f"after:{name}")
        return result

    async def _commit_outcome(self, xid: str) -> str | None:
        """Whether the transaction `xid`, whose connection broke while it committed, committed or aborted,
        asked on a fresh connection (None when the server cannot say within `connect_timeout`)."""
        psycopg, _ = _drivers()
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
                )
                try:
                    row = await (await conn.execute("SELECT pg_xact_status(%s::xid8)", (xid,))).fetchone()
                finally:
                    await conn.close()
                if row[0] in ("committed", "aborted"):
                    return str(row[0])
                # "in progress": the server has not finished with the COMMIT it may have received
            except psycopg.Error:
                pass  # still restarting: ask again
            if time.monotonic() > deadline:
                return None
            await asyncio.sleep(0.05)

    # -- notifications ------------------------------------------------------

    async def changes(self, *, ready: asyncio.Event | None = None) -> AsyncIterator[StoreChange]:
        """Every status change any host makes from now on (pauses, decisions, ends), as it commits.

        Uses a dedicated connection with `LISTEN`; `ready` is set once listening. Iterate in a task and
        cancel it (or break) to stop. When that connection breaks (a server restart, a killed backend),
        the iterator raises `StoreConnectionError`: changes made since may have been missed, so re-read
        what you show (for example `list_pending`) before listening again."""
        psycopg, _ = _drivers()
        await self._check_reachable(psycopg)
        conn = await psycopg.AsyncConnection.connect(
            self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout))
        )
        try:
            try:
                await conn.execute(f"LISTEN {CHANNEL}")
                if ready is not None:
                    ready.set()
                async for note in conn.notifies():
                    data = json.loads(note.payload)
                    yield StoreChange(data["runtime"], data["execution_id"], data["status"])
            except psycopg.OperationalError as exc:
                raise StoreConnectionError(
                    f"The PostgreSQL connection that listened for changes broke, so changes() stopped listening "
                    f"(changes since may have been missed; re-read state and listen again): {str(exc).strip()}"
                ) from exc
        finally:
            await conn.close()


class _PgTx:
    """One transaction on a pooled connection; translates `?` placeholders to psycopg's `%s`."""

    __slots__ = ("committing", "conn", "sql", "xid")

    def __init__(self, sql: dict[str, str]) -> None:
        self.sql = sql
        self.conn: Any = None
        self.committing = False
        self.xid: str | None = None  # the transaction's id, once it wrote something

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        text = self.sql.get(sql)
        if text is None:
            text = self.sql[sql] = sql.replace("%", "%%").replace("?", "%s")
        cur = await self.conn.execute(text, params)
        rows = await cur.fetchall() if cur.description is not None else []
        return _Fetched(rows, cur.rowcount)


class _Fetched:
    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


async def _configure(conn: psycopg.AsyncConnection[Any]) -> None:
    import psycopg

    await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
    await conn.execute(
        "SELECT set_config('idle_in_transaction_session_timeout', %s, false), "
        "set_config('default_transaction_isolation', 'serializable', false)",  # autocommitted statements too
        (IDLE_IN_TRANSACTION_TIMEOUT,),
    )
    await conn.commit()
    await conn.set_autocommit(False)


async def _migrate(conn: psycopg.AsyncConnection[Any]) -> None:
    async with conn.transaction():
        # Read committed, so that after waiting for another host's migration we see what it created.
        await conn.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute("CREATE TABLE IF NOT EXISTS cm_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = await (await conn.execute("SELECT value FROM cm_meta WHERE key = 'schema_version'")).fetchone()
        version = int(row[0]) if row else 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"The codemode database schema is version {version}, newer than this library "
                f"understands ({len(MIGRATIONS)}); upgrade codemode."
            )
        for script in MIGRATIONS[version:]:
            for statement in script.split(";"):
                if statement.strip():
                    await conn.execute(statement)
        await conn.execute(
            "INSERT INTO cm_meta (key, value) VALUES ('schema_version', %s) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(len(MIGRATIONS)),),
        )


def _drivers() -> tuple[Any, Any]:
    try:
        import psycopg
        import psycopg_pool
    except ImportError as exc:
        raise ImportError(
            f"PostgresStore needs psycopg 3 and its pool ({exc.name} is missing): pip install 'codemode[postgres]'"
        ) from exc
    return psycopg, psycopg_pool


def _safe_dsn(dsn: str) -> str:
    """The DSN without its password, for messages."""
    try:
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        params = conninfo_to_dict(dsn)
    except Exception:
        return "<unparseable DSN>"
    params.pop("password", None)
    return make_conninfo(**{k: str(v) for k, v in params.items()})
