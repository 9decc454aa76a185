"""What a human's click may do: the checks and refusals around approve and reject."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from codemode import codec
from codemode.codec import DurableValueError
from codemode.records import Execution, Outcome
from codemode.runtime.setup import Setup
from codemode.store.base import Settlement

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["cannot_resume", "check_edited_args", "check_key_and_metadata", "check_seq", "now", "refused", "stale"]

MAX_KEY_CHARS = 200
MAX_METADATA_ITEMS = 50
MAX_METADATA_CHARS = 1_000


def refused(execution_id: str, message: str) -> Outcome:
    """An error outcome for a request that changed nothing."""
    return Outcome(status="error", execution_id=execution_id, error=message)


def stale(execution_id: str, seq: int, settlement: Settlement) -> Outcome:
    """A click on an action that is not pending: nothing ran; say what is pending now."""
    if settlement.status == "deleted":
        return refused(execution_id, f'No execution "{execution_id}".')
    listed = (
        "; ".join(f"seq {p.seq}: {p.connector}.{p.method}({codec.dumps(p.args)[:200]})" for p in settlement.pending)
        or "nothing"
    )
    return Outcome(
        status="error",
        execution_id=execution_id,
        error=f'Action {seq} of execution "{execution_id}" is not awaiting a decision (run status: '
        f"{settlement.status}), so nothing ran. Pending now: {listed}. Show the approver the current pending "
        "actions and decide one of those by its seq.",
        pending=settlement.pending,
    )


def check_seq(seq: object) -> None:
    """A seq is the int a PendingAction showed; anything else is the host's mistake."""
    if type(seq) is not int or not 0 <= seq < 2**63:
        raise TypeError(f"seq must be the int of a PendingAction (its .seq), not {seq!r}.")


def now() -> datetime:
    """When a decision is made, in UTC."""
    return datetime.now(timezone.utc)


def check_key_and_metadata(key: str | None, metadata: Mapping[str, str] | None) -> None:
    """The host's own mistakes: raised, not returned to the model."""
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS):
        raise ValueError(f"execute(key=...) must be a non-empty string of at most {MAX_KEY_CHARS} characters.")
    if metadata is None:
        return
    if not isinstance(metadata, Mapping) or len(metadata) > MAX_METADATA_ITEMS:
        raise ValueError(f"execute(metadata=...) must be a mapping of at most {MAX_METADATA_ITEMS} items.")
    for name, value in metadata.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError("execute(metadata=...) maps strings to strings.")
        if len(name) + len(value) > MAX_METADATA_CHARS:
            raise ValueError(f"execute(metadata=...): each item must be at most {MAX_METADATA_CHARS} characters.")


async def check_edited_args(
    runtime: Runtime, execution: Execution, seq: int, args: Mapping[str, Any], setup: Setup
) -> Outcome | None:
    """Edited arguments must fit the tool's schema and be recordable; otherwise nothing changes."""
    execution_id = execution.id
    entry = next((e for e in execution.log if e.seq == seq), None)
    if entry is None or entry.state != "pending" or entry.decision is not None:
        pending = await runtime.store.list_pending(runtime.name, execution_id)
        return stale(execution_id, seq, Settlement("stale", execution.status, pending))
    description = setup.descriptions.get(entry.connector)
    spec = description.tools.get(entry.method) if description else None
    if not isinstance(args, Mapping) or spec is None:
        return refused(execution_id, f"Edited arguments for {entry.connector}.{entry.method} must be an object.")
    problem = setup.invalid_arguments(entry.connector, entry.method, spec, dict(args))
    if problem is None:
        try:
            codec.to_stored(f"Edited arguments for {entry.connector}.{entry.method}", dict(args))
        except DurableValueError as exc:
            problem = str(exc)
    if problem is None:
        return None
    return refused(execution_id, f"{problem} Nothing was approved; action {seq} is still pending.")


def cannot_resume(
    execution_id: str, existing: Execution, setup: Setup, action: str, running: frozenset[int] | set[int] = frozenset()
) -> Outcome | None:
    """Why a run cannot resume on this runtime now (an error outcome, nothing changed), or None: it needs
    connectors this runtime lacks, or would run an action (`running`, an approved or a crash-interrupted
    one) on a connector that is unavailable now: the run waits for it."""
    missing = [c for c in existing.connectors if not setup.configured(c)]
    if missing:
        names = ", ".join(f'"{c}"' for c in missing)
        return refused(
            execution_id,
            f'Execution "{execution_id}" requires connector(s) {names} that are not configured on this runtime.',
        )
    for entry in existing.log:
        approved = entry.state == "pending" and entry.decision is not None and entry.decision.kind == "approve"
        runs = entry.seq in running or approved or entry.state == "executing"
        if runs and entry.connector in setup.unavailable:
            return refused(
                execution_id,
                f'Cannot {action} execution "{execution_id}" now: step {entry.seq} ({entry.connector}.'
                f'{entry.method}) would run on connector "{entry.connector}", which is unavailable: '
                f"{setup.unavailable[entry.connector].reason}. Nothing changed (the run is as it was); "
                f"{action} again once the service is back.",
            )
    return None
