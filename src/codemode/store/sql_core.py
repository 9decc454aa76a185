"""What every part of `SqlStore` stands on: the hooks a backend fills in, and the reads and checks the
operations share (who owns a run, its open entries, a claim, the retention)."""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from codemode.records import Execution, decoded_later
from codemode.store import sql_checkpoints
from codemode.store.base import Claim
from codemode.store.sql_rows import row_entry, row_execution, row_trail
from codemode.store.sql_schema import ENTRY_COLUMNS, EXECUTION_COLUMNS, PRUNE_EVERY, TERMINAL_LIST, Op, T, Tx, now_ms


class SqlCore:
    """The backend's hooks and the helpers every group of operations uses."""

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
        text of `ENTRY_COLUMNS` rows in any order: a long trail reads as one value instead of a row per
        entry (at 5,000 entries in about a third of the time), and run and trail in one snapshot."""
        trail = f"SELECT {self._trail_of.format(ENTRY_COLUMNS)} FROM cm_log WHERE runtime = ? AND execution_id = ?"
        return f"SELECT {EXECUTION_COLUMNS}, ({trail}) FROM cm_executions WHERE runtime = ? AND id = ?"

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

    # -- shared by the operations ----------------------------------------------

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
                f"SELECT {EXECUTION_COLUMNS}, attempt FROM cm_executions WHERE runtime = ? AND id = ?",
                (runtime, execution_id),
            )
        ).fetchone()
        assert found is not None
        return Claim(row_execution(found[:-1], [row_entry(r, True) for r in opened], True), int(found[-1]))

    @staticmethod
    async def _open_rows(tx: Tx, runtime: str, execution_id: str) -> list[Sequence[Any]]:
        """The run's open entries (pending or executing) as `ENTRY_COLUMNS` rows in seq order; sorted
        here, as they are few, since SQLite would sort them in a temporary B-tree."""
        rows = (
            await tx.execute(
                f"SELECT {ENTRY_COLUMNS} FROM cm_log WHERE runtime = ? AND execution_id = ? "
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

    async def _touch(self, tx: Tx, runtime: str, execution_id: str) -> None:
        await tx.execute(
            "UPDATE cm_executions SET updated_at = ? WHERE runtime = ? AND id = ?", (self._now(), runtime, execution_id)
        )

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
                return row_execution(found[:-1], decoded_later(functools.partial(row_trail, found[-1])))
        row = (
            await tx.execute(
                f"SELECT {EXECUTION_COLUMNS} FROM cm_executions WHERE runtime = ? AND id = ?",
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
                f"SELECT {ENTRY_COLUMNS} FROM cm_log WHERE runtime = ? AND execution_id = ? ORDER BY seq",
                (runtime, execution_id),
            )
        return row_execution(row, [row_entry(r, strict) for r in rows], strict)

    @staticmethod
    async def _prune(tx: Tx, runtime: str, keep: int, exclude: str | None) -> int:
        # First the newest ended run beyond the `keep` newest, reading only the index (usually there is none:
        # nothing to do), then the runs from it back, oldest first.
        where = f"WHERE runtime = ? AND status IN {TERMINAL_LIST} AND id != ?"
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
                f"DELETE FROM cm_executions WHERE runtime = ? AND id = ? AND status IN {TERMINAL_LIST}",
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
