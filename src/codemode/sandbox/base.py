"""The executor contract: run model code with namespaces whose calls go to the host.

An executor knows one language. It exposes each `Namespace` as a global whose
methods call `Host.call(namespace, method, args)`, plus the `codemode`
platform object (search, describe, run, step). The host answers with a value,
raises `ToolError` (an exception the program may catch), or raises
`StopExecution` (the pass is over: a pause or a durable-log failure). The
executor never raises for anything the program does: it reports it in
`ExecuteResult`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "CALL_SEQ",
    "PLATFORM",
    "CallSeq",
    "Checkpoint",
    "CheckpointHost",
    "Checkpointing",
    "ExecuteResult",
    "Executor",
    "Host",
    "InFlight",
    "Namespace",
    "StopExecution",
    "ToolError",
]

PLATFORM = "codemode"
# Methods of the platform namespace that the host implements. `step` itself is
# written in the sandbox language on top of `step_decide` / `step_record`.
PLATFORM_METHODS = ("search", "describe", "run", "step_decide", "step_record", "step_fail")


# The exception types a `ToolError` may carry: every sandbox can raise each of them by name.
TOOL_ERROR_KINDS = frozenset(
    {
        "AttributeError",
        "KeyError",
        "LookupError",
        "OSError",
        "PermissionError",
        "RuntimeError",
        "TimeoutError",
        "TypeError",
        "ValueError",
    }
)


class ToolError(Exception):
    """Raised by the host: becomes a catchable exception in the program, with this message."""

    def __init__(self, message: str, kind: str = "RuntimeError") -> None:
        super().__init__(message)
        self.message = message
        # The Python exception type to raise in the sandbox; anything else becomes a RuntimeError.
        self.kind = kind if kind in TOOL_ERROR_KINDS else "RuntimeError"


class StopExecution(Exception):
    """Raised by the host: stop the program now; the durable log already says why."""


@dataclass(frozen=True)
class Namespace:
    """A global the program can call methods on."""

    name: str
    methods: frozenset[str]


class Host(Protocol):
    """The runtime side of one pass."""

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any: ...


class CallSeq:
    """Where the host writes the sequence number one call took: an executor that checkpoints gives
    each call's task its own (through `CALL_SEQ`), to know which log entry a call still in flight is."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq: int | None = None


CALL_SEQ: ContextVar[CallSeq | None] = ContextVar("codemode_call_seq", default=None)


@dataclass(frozen=True)
class InFlight:
    """A call the program was waiting on when its state was dumped: `seq` is the log entry it took
    (None for a call that took none, e.g. a refused one, re-issued as it was)."""

    call_id: int
    namespace: str
    method: str
    args: dict[str, Any]
    seq: int | None


@dataclass(frozen=True)
class Checkpoint:
    """A paused program's suspended state and what a restore needs besides it.

    `format` names the executor and its version (a restore by any other is refused); `objects` maps the
    sandbox ids of the namespace objects to their names; `console` is the output so far, as the
    executor keeps it; `next_seq` the first sequence number the program has not taken."""

    format: str
    state: bytes
    calls: tuple[InFlight, ...]
    objects: dict[str, str]
    console: list[tuple[str, str]]
    console_dropped: int
    next_seq: int


class CheckpointHost(Protocol):
    """What a host offers an executor that checkpoints (the runtime's pass does)."""

    def checkpoint_seq(self) -> int | None:
        """The next seq when a checkpoint could be resumed from now (the pass paused cleanly), else None."""
        ...

    async def reissue(self, seq: int, namespace: str, method: str, args: dict[str, Any]) -> Any:
        """A call in flight at the checkpoint, made again under the seq it took then."""
        ...


@dataclass
class ExecuteResult:
    """How a program ended. `stopped` means the host ended it (see `StopExecution`); `checkpoint`,
    set only by an executor that can, is the program's state at a pause, to resume from instead of
    replaying."""

    result: Any = None
    error: str | None = None
    logs: list[str] = field(default_factory=list)
    stopped: bool = False
    timed_out: bool = False
    checkpoint: Checkpoint | None = None


class Executor(Protocol):
    """A sandbox for one language."""

    language: Literal["python", "javascript"]

    async def execute(
        self, code: str, namespaces: Sequence[Namespace], host: Host, *, input: Any = None
    ) -> ExecuteResult:
        """Run `code` (already normalized) to the end, an error, or a stop."""
        ...

    def normalize(self, code: str) -> str:
        """Turn what the model wrote into a runnable program (fences, result conventions)."""
        ...

    async def aclose(self) -> None:
        """Release warm sandboxes."""
        ...


@runtime_checkable
class Checkpointing(Protocol):
    """An executor that can hand back a paused program's state (`ExecuteResult.checkpoint`) and go on
    from it later, instead of a replay from the start."""

    @property
    def checkpoint_format(self) -> str:
        """This executor and its version: a checkpoint made by any other is not restored."""
        ...

    async def resume(self, checkpoint: Checkpoint, namespaces: Sequence[Namespace], host: Host) -> ExecuteResult | None:
        """Go on from `checkpoint`; None when it cannot be restored (the caller replays instead)."""
        ...
