"""What every adapter shares: a pause as a JSON-ready request, and a human's answer as decisions by seq.

Nothing here keeps state: the run is found again by its `execute` key (the framework's tool-call id),
so an answer given in another process, to a new agent, still resumes the same run.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from codemode.codec import encode
from codemode.records import Outcome

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["Answer", "pause_request", "settle", "stale"]


def pause_request(outcome: Outcome) -> dict[str, Any]:
    """The pending actions of a paused run, JSON-ready, for a framework's approval request."""
    return {
        "execution_id": outcome.execution_id,
        "pending": [
            {"seq": p.seq, "connector": p.connector, "method": p.method, "args": encode(p.args)}
            for p in outcome.pending
        ],
    }


@dataclass
class Answer:
    """A human's answer to one paused tool call.

    `approve` decides every pending action not named in `reject`; `edits` maps a seq to the edited
    arguments it is approved with; `reject` lists seqs rejected while the others are approved; `resume`
    lets the program go on after a rejection (the call raises `PermissionError` inside it) instead of
    ending the run `rejected`. `seen`, when given, is the seqs the human was shown: if the run's pending
    actions are no longer exactly those (decided elsewhere, or the run moved on to new ones), nothing is
    decided and the outcome is an error naming both."""

    approve: bool
    by: str | None = None
    reason: str | None = None
    edits: Mapping[int | str, Mapping[str, Any]] = field(default_factory=dict)
    reject: Collection[int | str] = ()
    resume: bool = False
    seen: Collection[int | str] | None = None


def stale(outcome: Outcome, answer: Answer) -> bool:
    """True when `answer` was given for other actions than the ones `outcome` waits on now."""
    if answer.seen is None or outcome.status != "paused":
        return False
    return sorted(int(seq) for seq in answer.seen) != sorted(p.seq for p in outcome.pending)


async def settle(runtime: Runtime, code: str, key: str, answer: Answer) -> Outcome:
    """Apply `answer` to the paused run of `key`, by seq, and return where the run stands afterwards.

    A run that is no longer paused (decided elsewhere, completed, expired) is left alone: its current
    outcome comes back, so a framework that delivers the same answer twice never acts twice."""
    outcome = await runtime.execute(code, key=key)
    if outcome.status != "paused":
        return outcome
    if stale(outcome, answer) and answer.seen is not None:
        current = sorted(p.seq for p in outcome.pending)
        return Outcome(
            status="error",
            execution_id=outcome.execution_id,
            error=f"This answer was given for seq {sorted(int(seq) for seq in answer.seen)}, but the run now waits "
            f"on seq {current}; nothing was decided. Ask the human about what is pending now.",
        )
    edits = {int(seq): args for seq, args in answer.edits.items()}  # JSON round trips turn seqs into strings
    rejects = {int(seq) for seq in answer.reject}
    unknown = sorted(set(edits) - {p.seq for p in outcome.pending})
    if unknown:
        pending = ", ".join(str(p.seq) for p in outcome.pending)
        return Outcome(
            status="error",
            execution_id=outcome.execution_id,
            error=f"Edited arguments were given for seq {unknown}, which is not pending; pending now: {pending}. "
            "Nothing was decided.",
        )
    eid = outcome.execution_id
    approved = [p for p in outcome.pending if answer.approve and p.seq not in rejects]
    rejected = [p for p in outcome.pending if p not in approved]
    # Rejections first: a rejection that ends the run must land before the last approval resumes it.
    for p in rejected:
        await runtime.reject(eid, p.seq, by=answer.by, reason=answer.reason, resume=answer.resume)
    for p in approved:
        edited = edits.get(p.seq)
        decided = await runtime.approve(
            eid, p.seq, by=answer.by, reason=answer.reason, args=dict(edited) if edited is not None else None
        )
        if decided.status == "error":
            return decided
    return await runtime.execute(code, key=key)
