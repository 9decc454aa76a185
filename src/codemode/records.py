"""The typed records the runtime returns: outcomes, log entries, executions, snippets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, TypeVar, cast, overload

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
    "as_stored",
    "decoded_later",
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


_Item = TypeVar("_Item")


class _DecodedLater(Generic[_Item]):
    """What a store read, decoded into records only when the list is first read."""

    def __init__(self, decode: Callable[[], list[_Item]]) -> None:
        self.decoded = decode

    def __reduce__(self) -> tuple[Any, ...]:  # a pickled or deep-copied record holds the decoded list
        return (list, (self.decoded(),))


def decoded_later(decode: Callable[[], list[_Item]]) -> list[_Item]:
    """A value for a record's list field (`Execution.log`, `Outcome.calls`) that calls `decode` on the
    field's first read: a run's audit trail can hold thousands of entries, and an approve or a listing
    that never reads them should not pay for decoding them. `decode` must only decode (what the
    store read), never read the store: the record keeps what was true when it was read."""
    return cast("list[_Item]", _DecodedLater(decode))


def as_stored(record: Execution) -> list[LogEntry]:
    """`record.log` as it is held, still undecoded when it was read lazily: handing it to another
    record's field (`Outcome(calls=...)`) decodes nothing."""
    return cast("list[LogEntry]", record.__dict__["log"])


class _ListField:
    """A dataclass's list field that may be given as `decoded_later(...)` and is decoded, once, when first
    read. Reads, equality, `repr`, `dataclasses.replace`, pickling and copying all see a plain list.
    Installed on the class after the dataclass is made (`install`), so the field itself stays an
    ordinary one for `dataclasses` and type checkers."""

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    def install(cls, owner: type, name: str) -> None:
        setattr(owner, name, cls(name))

    @overload
    def __get__(self, record: None, owner: type | None = None) -> _ListField: ...
    @overload
    def __get__(self, record: object, owner: type | None = None) -> list[Any]: ...
    def __get__(self, record: object | None, owner: type | None = None) -> _ListField | list[Any]:
        if record is None:
            return self
        value = record.__dict__[self.name]
        if type(value) is _DecodedLater:
            value = record.__dict__[self.name] = value.decoded()
        return cast("list[Any]", value)

    def __set__(self, record: object, value: list[Any]) -> None:
        record.__dict__[self.name] = value


@dataclass(frozen=True)
class Execution:
    """A run as stored: the audit trail."""

    id: str
    code: str
    status: ExecutionStatus
    log: list[LogEntry]  # may be decoded on first read (see `decoded_later`)
    result: Any
    error: str | None
    logs: list[str]
    connectors: list[str]
    created_at: datetime
    updated_at: datetime
    key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


_ListField.install(Execution, "log")


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
    calls: list[LogEntry] = field(default_factory=list)  # may be decoded on first read (`decoded_later`)

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


_ListField.install(Outcome, "calls")


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
