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
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

__all__ = [
    "PLATFORM",
    "ExecuteResult",
    "Executor",
    "Host",
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


@dataclass
class ExecuteResult:
    """How a program ended. `stopped` means the host ended it (see `StopExecution`)."""

    result: Any = None
    error: str | None = None
    logs: list[str] = field(default_factory=list)
    stopped: bool = False
    timed_out: bool = False


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
