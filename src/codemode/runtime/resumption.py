"""A human's decision carried out: approve, reject and recover, from the click to the pass that goes on.

Each flow checks the run (its open entries only, however long its history), records the decision in
one compare-and-set (`Store.settle` or `Store.claim_stale`), and, when that made this caller the
run's owner, runs the pass that resumes it. `Runtime` keeps the public methods and their contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from codemode import codec
from codemode.errors import not_found_message
from codemode.records import Decision, Execution, Outcome, as_stored
from codemode.runtime.decisions import cannot_resume, check_edited_args, now, refused, stale
from codemode.runtime.setup import Setup
from codemode.store.base import Settlement

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["approve", "recover", "reject", "status_of"]


async def approve(
    runtime: Runtime, execution_id: str, seq: int, by: str | None, reason: str | None, args: Mapping[str, Any] | None
) -> Outcome:
    """`Runtime.approve` (its `seq` checked)."""
    checked = await resumable(runtime, execution_id, "approve", {seq})
    if isinstance(checked, Outcome):
        return checked
    setup, execution = checked
    edited: dict[str, Any] | None = None
    if args is not None:
        refusal = await check_edited_args(runtime, execution, seq, args, setup)
        if refusal is not None:
            return refusal
        edited = dict(args)
    decision = Decision("approve", by, reason, now(), edited)
    settlement = await runtime.store.settle(runtime.name, execution_id, seq, decision)
    return await after_settlement(runtime, execution_id, seq, settlement, setup)


async def reject(
    runtime: Runtime, execution_id: str, seq: int, by: str | None, reason: str | None, resume: bool
) -> bool:
    """`Runtime.reject` (its `seq` checked)."""
    store, name = runtime.store, runtime.name
    checked = await resumable(runtime, execution_id, "reject") if resume else None
    if isinstance(checked, Outcome):
        if await store.get_open_execution(name, execution_id) is None:
            return False
        raise RuntimeError(checked.error)
    execution = checked[1] if checked else await store.get_open_execution(name, execution_id)
    if execution is None:
        return False  # a click on a run that is gone (never existed, deleted, pruned) decided nothing
    entry = next((e for e in execution.log if e.seq == seq), None)
    what = f"{entry.connector}.{entry.method}" if entry else f"step {seq}"
    message = f"Action {what} rejected by {by or 'user'}" + (f": {reason}" if reason else "")
    decision = Decision("reject", by, reason, now())
    if checked is None:
        settlement = await store.settle(name, execution_id, seq, decision, end_error=message)
        if settlement.kind == "ended":
            await runtime._hooks("dispose_execution", execution_id, "rejected")
        return settlement.kind == "ended"
    error = codec.dumps({"error": message, "kind": "PermissionError"})
    settlement = await store.settle(name, execution_id, seq, decision, error_json=error)
    await after_settlement(runtime, execution_id, seq, settlement, checked[0])
    return settlement.kind != "stale"


async def recover(runtime: Runtime, execution_id: str, stale_after: timedelta) -> Outcome:
    """`Runtime.recover` (its `stale_after` checked)."""
    checked = await resumable(runtime, execution_id, "recover")
    if isinstance(checked, Outcome):
        return checked
    claim = await runtime.store.claim_stale(runtime.name, execution_id, stale_after)
    if claim is None:
        return refused(
            execution_id,
            f'Execution "{execution_id}" cannot be recovered (status: {await status_of(runtime, execution_id)}); '
            f"only a run left running with no heartbeat for {stale_after} can be.",
        )
    # Replayed: a checkpoint matches the log only as the pause left it, not as a crash did.
    await runtime.store.take_checkpoint(runtime.name, execution_id, claim.attempt)
    execution = claim.execution
    return await runtime._run_pass(execution_id, execution.code, checked[0], claim.attempt, execution.log)


async def after_settlement(
    runtime: Runtime, execution_id: str, seq: int, settlement: Settlement, setup: Setup
) -> Outcome:
    """The outcome of a recorded decision: the run still waiting for others, ended, or resumed here."""
    store, name = runtime.store, runtime.name
    if settlement.kind == "stale" and settlement.status == "deleted":
        return refused(execution_id, not_found_message(execution_id, name, "approve"))
    if settlement.kind == "stale":
        return stale(execution_id, seq, settlement)
    if settlement.kind == "waiting":
        execution = await store.get_execution(name, execution_id)
        return Outcome(
            status="paused",
            execution_id=execution_id,
            pending=settlement.pending,
            logs=execution.logs if execution else [],
            calls=as_stored(execution) if execution else [],
        )
    if settlement.kind == "ended" or settlement.claim is None:
        execution = await store.get_execution(name, execution_id)
        assert execution is not None
        return await runtime._current_outcome(execution)
    claim = settlement.claim  # its log holds the open entries: enough to go on from a checkpoint
    return await runtime._run_pass(
        execution_id, claim.execution.code, setup, claim.attempt, claim.execution.log, resume=True
    )


async def resumable(
    runtime: Runtime, execution_id: str, action: str, running: frozenset[int] | set[int] = frozenset()
) -> tuple[Setup, Execution] | Outcome:
    """The setup and the run with its open entries, or an error outcome (nothing changed) when the run
    does not exist, needs connectors this runtime lacks, or would run an action (`running`, an
    approved or a crash-interrupted one) on a connector that is unavailable now: the run waits for it."""
    existing = await runtime.store.get_open_execution(runtime.name, execution_id)
    if existing is None:
        return refused(execution_id, not_found_message(execution_id, runtime.name, action))
    setup = await runtime.setup()
    refusal = cannot_resume(execution_id, existing, setup, action, running)
    if refusal is not None:
        return refusal
    return setup, existing


async def status_of(runtime: Runtime, execution_id: str) -> str:
    """The run's status now, or "deleted"."""
    current = await runtime.store.get_open_execution(runtime.name, execution_id)
    return current.status if current else "deleted"
