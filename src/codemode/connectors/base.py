"""Connectors: the only way a sandboxed program reaches the outside world.

A connector is a named set of tools. Tools are declared either with the
`@tool` decorator on methods (schemas derived from type hints and docstrings)
or by overriding `tools()` to return `ToolSpec`s directly (the form derived
connectors such as MCP and OpenAPI use). Either way, `describe()` resolves
them once per instance, applies the `tool(name, spec)` decoration hook and the
arguments bound on the host (`bind()`, `ToolSpec.bound`), and checks the
invariants the durable runtime relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import keyword
import weakref
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar, cast

from codemode.connectors.binding import _apply_bound
from codemode.connectors.decorator import ToolMethod
from codemode.connectors.namespaces import _IDENTIFIER, validate_namespace_name
from codemode.connectors.spec import ConnectorDescription, ToolContext, ToolSpec, maybe_await

__all__ = ["Connector"]

_Self = TypeVar("_Self", bound="Connector")


# ---------------------------------------------------------------------------
# The connector base class
# ---------------------------------------------------------------------------


class Connector:
    """Base class of every connector.

    Subclasses set `name` (the global the model uses) and optionally
    `instructions`, then declare tools with `@tool` or override `tools()`.
    Constructors take dependencies only; nothing is resolved until
    `describe()`.
    """

    name: str = ""
    instructions: str | None = None

    # Instructions the tools' source carries (an MCP server's, a toolset's, an API document's): derived
    # connectors set this in `tools()`, and `describe()` puts it before `instructions`.
    _source_instructions: str | None = None

    _description: ConnectorDescription | None = None
    _describe_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
    _bound: Mapping[str, Any] = {}  # set by `bind()`, per instance

    def bind(self: _Self, values: Mapping[str, Any] | None = None, /, **more: Any) -> _Self:
        """Supply arguments on the host side, for every tool that takes them; returns the connector.

        `HttpOpenApiConnector("slack", spec).bind(token=os.environ["SLACK_TOKEN"])`: each tool with a
        top-level `token` parameter loses it from the schema and declarations the model reads, and
        gets the value when it runs (and when its revert runs). The value is never logged, never in a
        pending action, and replaced by `<token>` in the error messages the tool raises. A callable
        value is called at each call. Names no tool takes are an error at `describe()`. Call it
        before the connector is described (before the runtime's first run).
        """
        if self._description is not None:
            raise RuntimeError(
                f"Connector {self.name!r} is already described; call bind() before its first use by a runtime."
            )
        merged = {**(values or {}), **more}
        for key in merged:
            if not isinstance(key, str) or not key:
                raise TypeError(f"bind() takes parameter names (non-empty strings), not {key!r}.")
        self._bound = {**self._bound, **merged}
        return self

    def tools(self) -> Mapping[str, ToolSpec] | Awaitable[Mapping[str, ToolSpec]]:
        """The connector's tools by name. The default collects `@tool` methods.

        Derived connectors may set `self._source_instructions` here (from a server or a document):
        `describe()` reads it after `tools()` returns and puts it before `instructions`.
        """
        found: dict[str, ToolSpec] = {}
        for klass in reversed(type(self).__mro__):
            for value in vars(klass).values():
                if isinstance(value, ToolMethod):
                    found[value.name] = value.bind(self)
        return found

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        """Decoration hook: derived connectors override it to add approval, revert or docs."""
        return spec

    async def on_pass_end(self, execution_id: str, status: str) -> None:
        """Called at the end of every pass (paused included): release per-pass resources."""

    async def dispose_execution(self, execution_id: str, status: str) -> None:
        """Called when a run truly ends (never on pause). Must be idempotent."""

    async def aclose(self) -> None:
        """Release connections and processes; `Runtime.aclose` calls it. Must be idempotent."""

    async def describe(self) -> ConnectorDescription:
        """Resolve, decorate and check every tool; memoized per instance."""
        if self._description is not None:
            return self._description
        # One lock per event loop: a connector may serve the async runtime and its blocking twin's loop.
        if self._describe_locks is None:
            self._describe_locks = weakref.WeakKeyDictionary()
        lock = self._describe_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
        async with lock:
            if self._description is None:
                self._description = await self._resolve()
        return self._description

    async def _resolve(self) -> ConnectorDescription:
        name = validate_namespace_name(self.name)
        raw = await maybe_await(self.tools())
        resolved: dict[str, ToolSpec] = {}
        used: set[str] = set()
        for tool_name, spec in cast(Mapping[str, Any], raw).items():
            if not isinstance(spec, ToolSpec):
                raise TypeError(f"Connector {name!r} tool {tool_name!r} must be a ToolSpec, not {type(spec).__name__}.")
            if not isinstance(tool_name, str) or not _IDENTIFIER.fullmatch(tool_name) or keyword.iskeyword(tool_name):
                raise ValueError(
                    f"Connector {name!r} tool name {tool_name!r} is not a valid identifier; "
                    "sanitize it (codemode.sanitize_identifier) or rename it."
                )
            if tool_name.startswith("__"):
                raise ValueError(
                    f"Connector {name!r} tool name {tool_name!r} is reserved: names starting with __ are Python's "
                    "special attributes. Rename it."
                )
            spec = self.tool(tool_name, spec)
            spec, taken = _apply_bound(name, tool_name, spec, self._bound)
            used.update(taken)
            if spec.replay not in ("log", "reexecute"):
                raise ValueError(f"Connector {name!r} tool {tool_name!r}: replay must be 'log' or 'reexecute'.")
            if spec.requires_approval and spec.replay == "reexecute":
                raise ValueError(
                    f'Connector "{name}" tool "{tool_name}" cannot combine requires_approval with '
                    'replay="reexecute": an approved action must run exactly once, so its result is logged.'
                )
            resolved[tool_name] = spec
        unused = sorted(set(self._bound) - used)
        if unused:
            names = ", ".join(f'"{n}"' for n in unused)
            raise ValueError(
                f"Connector {name!r}: bind() names {names}, but none of its tools takes such a parameter (bound "
                "names are matched against each tool's top-level parameters)."
            )
        instructions = "\n\n".join(p for p in (self._source_instructions, self.instructions) if p) or None
        return ConnectorDescription(name=name, instructions=instructions, tools=resolved)

    async def execute_tool(self, method: str, args: dict[str, Any], ctx: ToolContext) -> Any:
        """Run one tool for real."""
        desc = await self.describe()
        spec = desc.tools.get(method)
        if spec is None:
            raise LookupError(f'Tool "{method}" not found on {desc.name}')
        result = spec.execute(args, ctx)
        if inspect.isawaitable(result):  # inline, not `maybe_await`: no coroutine for a sync tool's value
            result = await result
        return result

    async def revert_action(self, method: str, args: dict[str, Any], result: Any, ctx: ToolContext) -> bool:
        """Undo one applied call; False when the tool has no revert."""
        desc = await self.describe()
        spec = desc.tools.get(method)
        if spec is None or spec.revert is None:
            return False
        await maybe_await(spec.revert(args, result, ctx))
        return True

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"
