"""The typed records the runtime returns: outcomes, log entries, executions, snippets."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from codemode.truncate import DEFAULT_MAX_TOKENS

__all__ = [
    "DEFAULT_MAX_EXECUTIONS",
    "DEFAULT_PAUSED_TTL",
    "MAX_DURABLE_VALUE_BYTES",
    "STEP_CONNECTOR",
    "Decision",
    "DecisionKind",
    "Execution",
    "ExecutionStatus",
    "LogEntry",
    "LogState",
    "Outcome",
    "OutcomeStatus",
    "PendingAction",
    "RollbackReport",
    "Snippet",
]

MAX_DURABLE_VALUE_BYTES = 1_000_000
# Bounds on any value crossing the sandbox boundary, checked while it is walked (never after expanding it).
MAX_VALUE_DEPTH = 200  # container levels
# Values (scalars and containers, a shared one counted each time it appears): each costs at least two
# bytes of JSON, so no value with more could ever be recorded durably.
MAX_VALUE_NODES = MAX_DURABLE_VALUE_BYTES // 2
# The largest final result a pass accepts (as JSON). Results over MAX_DURABLE_VALUE_BYTES still complete,
# with a placeholder in the audit trail; past this bound the pass ends with an error.
MAX_RESULT_BYTES = 16 * MAX_DURABLE_VALUE_BYTES
DEFAULT_MAX_EXECUTIONS = 50
DEFAULT_PAUSED_TTL = timedelta(hours=24)
STEP_CONNECTOR = "__step"
MAX_MODEL_LOG_CHARS = 20_000

ExecutionStatus = Literal["running", "paused", "completed", "error", "rejected", "rolling_back", "rolled_back"]
TERMINAL_STATUSES: tuple[ExecutionStatus, ...] = ("completed", "error", "rejected", "rolled_back")
# `reverting`: a revert was started and has not been confirmed; a rollback never runs it twice.
LogState = Literal["executing", "applied", "pending", "reverting", "reverted", "error"]
OutcomeStatus = Literal["completed", "paused", "error"]
DecisionKind = Literal["approve", "reject", "rollback"]


@dataclass(frozen=True)
class Decision:
    """A human's decision about one log entry: the audit record of a click.

    `args` is set when an approval edited the arguments (the action ran with them; the program's own
    arguments stay in `LogEntry.args`, the replay key).
    """

    kind: DecisionKind
    by: str | None
    reason: str | None
    at: datetime
    args: Any = None


@dataclass(frozen=True)
class RollbackReport:
    """What a rollback did, by seq: nothing it could not undo is left unmentioned."""

    reverted: list[int] = field(default_factory=list)
    irreversible: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingAction:
    """A call waiting for a human: approve or reject it by its `execution_id` and `seq`."""

    execution_id: str
    seq: int
    connector: str
    method: str
    args: Any


@dataclass(frozen=True)
class LogEntry:
    """One decided call (or `codemode.step`, connector `"__step"`) in a run's durable log."""

    seq: int
    connector: str
    method: str
    args: Any
    result: Any
    requires_approval: bool
    ephemeral: bool
    state: LogState
    decision: Decision | None = None  # the approval or rejection of a gated call
    rollback: Decision | None = None  # the rollback that reverted it (or tried to)


@dataclass(frozen=True)
class Execution:
    """A run as stored: the audit trail."""

    id: str
    code: str
    status: ExecutionStatus
    log: list[LogEntry]
    result: Any
    error: str | None
    logs: list[str]
    connectors: list[str]
    created_at: datetime
    updated_at: datetime
    key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Snippet:
    """A saved program the model can find and re-run with `codemode.run(name, input)`."""

    name: str
    description: str
    code: str
    saved_at: datetime
    input_schema: dict[str, Any] | None = None
    connectors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Outcome:
    """What one pass of a run ended with. Errors are returned, never raised."""

    status: OutcomeStatus
    execution_id: str
    result: Any = None
    error: str | None = None
    pending: list[PendingAction] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    calls: list[LogEntry] = field(default_factory=list)

    def to_model_output(self, *, max_chars: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> dict[str, Any]:
        """The JSON-ready dict for the model: no call log, plain JSON values, everything bounded.

        The result (and each pending action's arguments, and the error text) is cut to `max_chars`
        characters, or `max_tokens * 4` (default 6,000 tokens: 24,000 characters), by `truncate_result`,
        which keeps its shape and marks what it cut; `self.result` keeps the whole value, and so does the
        audit trail. Console logs keep their newest 20,000 characters. Values are the codec's plain model
        view (`codemode.model_view`): no `__codemode__` tags, and always serializable as UTF-8 JSON."""
        from codemode.model_view import model_view
        from codemode.text import valid_text
        from codemode.truncate import truncate_response, truncate_result

        def bounded(value: Any) -> Any:
            return truncate_result(model_view(value), max_chars=max_chars, max_tokens=max_tokens)

        out: dict[str, Any] = {"status": self.status, "execution_id": valid_text(self.execution_id)}
        if self.status == "completed":
            out["result"] = bounded(self.result)
        elif self.status == "error":
            error = valid_text(self.error) if isinstance(self.error, str) else self.error
            out["error"] = truncate_response(error, max_chars=max_chars, max_tokens=max_tokens) if error else error
        else:
            out["pending"] = [
                {
                    "seq": p.seq,
                    "connector": valid_text(p.connector),
                    "method": valid_text(p.method),
                    "args": bounded(p.args),
                }
                for p in self.pending
            ]
            out["message"] = (
                "The run is paused waiting for a human to approve the pending action(s). "
                "Tell the user what is pending and wait; do not run the code again."
            )
        if self.logs:
            out["logs"] = _bounded_logs([valid_text(str(line)) for line in self.logs])
        return out


def _bounded_logs(logs: list[str], limit: int = MAX_MODEL_LOG_CHARS) -> list[str]:
    """Keep the newest console lines within `limit` characters, marking what was dropped."""
    kept: list[str] = []
    total = 0
    for line in reversed(logs):
        if total + len(line) > limit:
            remaining = limit - total
            if remaining > 200:
                kept.append("…" + line[-remaining:])
            kept.append(f"[codemode: {len(logs) - len(kept)} earlier console line(s) omitted]")
            break
        kept.append(line)
        total += len(line)
    return list(reversed(kept))
