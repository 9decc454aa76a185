"""The records a connector resolves to: `ToolSpec` (one tool), `ToolContext` (one call), `ConnectorDescription`.

Everything that runs, describes or logs a tool reads these; they depend on nothing else in the package.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ConnectorDescription",
    "ExecuteFn",
    "ReplayPolicy",
    "RevertFn",
    "ToolContext",
    "ToolSpec",
    "idempotency_key",
    "maybe_await",
]

ReplayPolicy = Literal["log", "reexecute"]


@dataclass(frozen=True)
class ToolContext:
    """What a tool learns about the call it is serving; every field is stable across passes.

    `idempotency_key` names this one call of this one run: a crash between a call and its record
    re-executes the call once on recovery, with the same key, so a tool (or the API behind it) can
    drop the repeat. `seq` is the call's place in the run's log (`-1` outside a run, as in rollback
    hooks that serve no single call).
    """

    execution_id: str
    seq: int = -1
    idempotency_key: str = ""


def idempotency_key(execution_id: str, seq: int) -> str:
    """The key of call `seq` of a run: the same on every pass, host and recovery."""
    return f"{execution_id}:{seq}"


ExecuteFn = Callable[[dict[str, Any], ToolContext], Any]
RevertFn = Callable[[dict[str, Any], Any, ToolContext], Any]


@dataclass(frozen=True)
class ToolSpec:
    """One tool, fully resolved: what the model sees and what the host runs.

    `execute(args, ctx)` and `revert(args, result, ctx)` may be sync or async.
    Change a spec with `dataclasses.replace`.
    """

    execute: ExecuteFn
    description: str = ""
    # Schemas stay out of repr(): derived ones can be megabytes, and a repr must stay cheap.
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}}, repr=False)
    output_schema: Mapping[str, Any] | None = field(default=None, repr=False)
    requires_approval: bool = False
    replay: ReplayPolicy = "log"
    revert: RevertFn | None = None
    # The Python return annotation, when the tool has one: a result the durable codec cannot hold as it
    # is (a numeric type from another library, say) is converted to it before it is recorded.
    result_type: Any = field(default=None, repr=False)
    # Arguments the host supplies (credentials, a tenant id): `describe()` removes them from
    # `input_schema` (so the model never sees, invents or passes them) and adds them to the arguments
    # of `execute` and `revert`; the log, pending actions and approvers only ever see the rest. A
    # value may be a callable (sync or async, no arguments), called at each call: a rotated secret is
    # picked up. Kept out of repr().
    bound: Mapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class ConnectorDescription:
    """A connector's resolved surface: the one way to introspect it."""

    name: str
    instructions: str | None
    tools: Mapping[str, ToolSpec]

    def __repr__(self) -> str:
        return f"ConnectorDescription(name={self.name!r}, tools={len(self.tools)})"


async def maybe_await(value: Any) -> Any:
    """Await `value` if it is awaitable; tools and hooks may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value
