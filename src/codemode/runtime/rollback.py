"""Rollback: undo a claimed run's applied actions, never one twice, and report every action."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from codemode import crashpoints
from codemode.connectors.spec import ToolContext, idempotency_key
from codemode.errors import ExecutionNotFoundError, RollbackError
from codemode.records import STEP_CONNECTOR, Decision, RollbackReport
from codemode.runtime.decisions import now
from codemode.runtime.resumption import status_of
from codemode.runtime.setup import Setup
from codemode.store.base import Claim

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["revert_all", "roll_back"]

TAKEN_OVER = (
    'Execution "{}" was taken over during its rollback (by a rollback that found it stale, or it was deleted); '
    "this rollback stopped. Look at the run's log before rolling back again."
)


async def roll_back(
    runtime: Runtime, execution_id: str, by: str | None, stale_after: timedelta, retry_interrupted: bool
) -> RollbackReport:
    """`Runtime.rollback` (its `stale_after` checked): claim the run, revert, end it `rolled_back`."""
    store, name = runtime.store, runtime.name
    execution = await store.get_open_execution(name, execution_id)
    if execution is None:
        raise ExecutionNotFoundError(execution_id, name, "roll back")
    if execution.status == "running":
        raise RuntimeError(f'Execution "{execution_id}" is running; roll it back after its pass ends.')
    setup = await runtime.setup()
    claim = await store.claim_rollback(name, execution_id, stale_after)
    if claim is None:
        raise RuntimeError(
            f'Execution "{execution_id}" cannot be rolled back now (status: {await status_of(runtime, execution_id)}): '
            "another rollback or pass owns it. Try again once it has ended."
        )
    beat = runtime._heartbeats.start(execution_id, claim.attempt)
    try:
        report = await revert_all(runtime, claim, setup, Decision("rollback", by, None, now()), retry_interrupted)
    finally:
        runtime._heartbeats.stop(beat)
    await runtime._hooks("dispose_execution", execution_id, "rolled_back")
    if report.failed:
        failures = [f"step {seq}: {why}" for seq, why in sorted(report.failed.items())]
        raise RollbackError(
            f"Rollback reverted {len(report.reverted)} action(s) but {len(report.failed)} failed: "
            + "; ".join(failures),
            report,
        )
    return report


async def revert_all(
    runtime: Runtime, claim: Claim, setup: Setup, decision: Decision, retry_interrupted: bool
) -> RollbackReport:
    """Every applied action with a revert, newest first, each logged before and after it runs."""
    execution_id, attempt, store, name = claim.execution.id, claim.attempt, runtime.store, runtime.name
    report = RollbackReport()
    for entry in reversed(claim.execution.log):
        if entry.connector == STEP_CONNECTOR or entry.ephemeral:
            continue
        seq = entry.seq
        if entry.state == "executing":
            report.failed[seq] = (
                "it started and its result was never recorded (the host stopped mid-call): whether it took "
                "effect is unknown; check by hand"
            )
            continue
        if entry.state not in ("applied", "reverting"):
            continue
        connector = setup.connectors.get(entry.connector)
        description = setup.descriptions.get(entry.connector)
        spec = description.tools.get(entry.method) if description else None
        if entry.state == "reverting" and not retry_interrupted:
            report.failed[seq] = (
                "an earlier rollback started this revert and stopped before confirming it; it is not run "
                "twice: check the effect by hand, then roll back with retry_interrupted=True if it is "
                "still there"
            )
        elif connector is None and entry.connector in setup.unavailable:
            why = setup.unavailable[entry.connector].reason
            report.failed[seq] = f'connector "{entry.connector}" is unavailable ({why}); roll back again when it is up'
        elif connector is None:
            report.failed[seq] = f'connector "{entry.connector}" is not configured on this runtime'
        elif spec is None or spec.revert is None:
            report.irreversible.append(seq)
        else:
            if not await store.begin_revert(name, execution_id, attempt, seq, decision):
                raise RuntimeError(TAKEN_OVER.format(execution_id))
            ran_with = entry.decision.args if entry.decision and entry.decision.args is not None else entry.args
            ctx = ToolContext(execution_id, seq, idempotency_key(execution_id, seq) + ":revert")
            try:
                await connector.revert_action(entry.method, ran_with, entry.result, ctx)
            except Exception as exc:
                report.failed[seq] = f"{entry.connector}.{entry.method}: {exc}"
            crashpoints.reached("after:revert")
            if not await store.end_revert(name, execution_id, attempt, seq, seq not in report.failed):
                raise RuntimeError(TAKEN_OVER.format(execution_id))
            if seq not in report.failed:
                report.reverted.append(seq)
    if not await store.finish_rollback(name, execution_id, attempt, decision):
        raise RuntimeError(TAKEN_OVER.format(execution_id))
    return report
