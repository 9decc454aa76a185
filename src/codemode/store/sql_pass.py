"""One pass of a run in SQL: begin, claim, heartbeat, each call's decision and record, the pass's end."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

from codemode import crashpoints
from codemode.codec import dumps, loads
from codemode.records import ExecutionStatus, LogState
from codemode.replay import Call, Verdict, judge
from codemode.store import sql_checkpoints
from codemode.store.base import Begun, Claim, StoredCheckpoint
from codemode.store.sql_core import SqlCore
from codemode.store.sql_rows import row_recorded, text_ok
from codemode.store.sql_schema import (
    INSERT_NEW,
    MAX_ERROR_CHARS,
    RECORD_RESULT,
    Op,
    Tx,
    insert_params,
    new_execution_id,
)
from codemode.text import storable_text


class PassOps(SqlCore):
    """The operations of one pass."""

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
            if not text_ok(text):
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

    async def decide(self, runtime: str, execution_id: str, attempt: int, call: Call) -> Verdict:
        seq = call.seq
        if call.args_error is None:
            # The hot path, a call never made before: the fenced insert alone is the whole decision. A miss
            # (the seq is taken, or the run is not this attempt's) wrote nothing; the full decision follows.
            crashpoints.reached("before:decide")
            inserted: int | bool | None = await self._single(
                INSERT_NEW, insert_params(runtime, execution_id, attempt, call)
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
            recorded = None if row[0] is None else row_recorded(row)
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
        cur = await tx.execute(INSERT_NEW, insert_params(runtime, execution_id, attempt, call))
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
        recorded = await self._single(RECORD_RESULT, params, name)
        if recorded == 1:
            return True

        async def op(tx: Tx) -> bool:
            # The fence inside the write itself: one statement on the hot path.
            cur = await tx.execute(RECORD_RESULT, params)
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
