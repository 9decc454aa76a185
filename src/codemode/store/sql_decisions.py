"""Decisions in SQL: the pending actions, settling an approval or a rejection, expiry, and rollback."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from codemode.codec import read
from codemode.records import Decision, PendingAction
from codemode.store import sql_checkpoints
from codemode.store.base import Claim, Settlement
from codemode.store.sql_core import SqlCore
from codemode.store.sql_rows import stored_decision
from codemode.store.sql_schema import MAX_ERROR_CHARS, Tx
from codemode.text import storable_text


class Decisions(SqlCore):
    """Approvals, rejections, expiry and rollback."""

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
        decision_json = stored_decision(decision)

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
        decision_json = stored_decision(decision)

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
        decision_json = stored_decision(decision)

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
