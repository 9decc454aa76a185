"""The replay rule: what a pass does with one call, given what the log holds at its seq.

Pure (no I/O), so every store and the pass's in-memory log apply exactly the same rule.
The store wraps it in one transaction that also checks the pass still owns the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from codemode.records import STEP_CONNECTOR, LogState

__all__ = ["Call", "Recorded", "Verdict", "VerdictKind", "judge"]

# replay   serve the recorded result
# execute  run the call (the store has marked it `executing`); `args_json` set when a human edited them
# pause    the call is pending a human: the pass pauses here
# raise    the call failed before (or was rejected): raise the recorded error again
# fail     the run failed at this call (divergence, unrecordable arguments): stop
# new      nothing is recorded at this seq yet: the store inserts it (pure rule only)
# lost     the pass no longer owns the run (store only): stop without writing
VerdictKind = Literal["replay", "execute", "pause", "raise", "fail", "new", "lost"]


@dataclass(frozen=True)
class Call:
    """One call as the program makes it, already validated; `args_json` is its canonical encoding,
    or None with `args_error` saying why it cannot be recorded."""

    seq: int
    connector: str
    method: str
    args_json: str | None
    args_error: str | None = None
    requires_approval: bool = False
    ephemeral: bool = False


@dataclass(frozen=True)
class Recorded:
    """What the log holds at a seq, as stored text."""

    connector: str
    method: str
    args_json: str | None
    result_json: str | None
    ephemeral: bool
    state: LogState
    decision_kind: str | None = None
    decision_args_json: str | None = None


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    seq: int
    result: Any = None  # replay: the decoded result; raise: {"error": message, "kind": exception kind}
    message: str = ""  # fail: why
    args_json: str | None = None  # execute: arguments a human edited, to run instead of the program's


def judge(call: Call, recorded: Recorded | None) -> Verdict:
    """The rule. A recorded fact is never run again: applied results replay, errors raise again,
    pending calls pause again until decided, and only an `executing` entry (a crash between the call
    and its record) runs a second time, with the same idempotency key."""
    seq = call.seq
    if recorded is None:
        return Verdict("new", seq)
    if (recorded.connector, recorded.method) != (call.connector, call.method):
        return Verdict(
            "fail",
            seq,
            message=divergence(
                seq,
                f"expected {label(recorded.connector, recorded.method)}, got {label(call.connector, call.method)}. "
                "Code must be deterministic up to tool calls and steps. Wrap nondeterministic work in "
                "codemode.step(name, fn).",
            ),
        )
    if call.args_error is not None:  # nothing to compare with what was recorded (and perhaps approved)
        return Verdict("fail", seq, message=divergence(seq, call.args_error))
    if call.args_json is not None and recorded.args_json is not None and recorded.args_json != call.args_json:
        return Verdict(
            "fail",
            seq,
            message=divergence(
                seq,
                f"{call.connector}.{call.method} was called with different arguments than the recorded run. "
                "Arguments must be deterministic across replays. Wrap nondeterministic inputs in "
                "codemode.step(name, fn).",
            ),
        )
    state = recorded.state
    if state == "applied":
        return Verdict("execute", seq) if recorded.ephemeral else Verdict("replay", seq)
    if state == "pending":
        if recorded.decision_kind == "approve":
            return Verdict("execute", seq, args_json=recorded.decision_args_json)
        return Verdict("pause", seq)
    if state == "executing":
        return Verdict("execute", seq)  # crashed between the call and its record
    if state == "error":
        return Verdict("raise", seq)
    return Verdict(
        "fail",
        seq,
        message=f"The action at step {seq} ({label(call.connector, call.method)}) was {state}; the run cannot go on.",
    )


def divergence(seq: int, detail: str) -> str:
    return f"Codemode replay divergence at step {seq}: {detail}"


def label(connector: str, method: str) -> str:
    return f'codemode.step("{method}")' if connector == STEP_CONNECTOR else f"{connector}.{method}"
