"""Connectors: the only way a sandboxed program reaches the outside world.

A connector is a named set of tools. Tools are declared either with the
`@tool` decorator on methods (schemas derived from type hints and docstrings)
or by overriding `tools()` to return `ToolSpec`s directly (the form derived
connectors such as MCP and OpenAPI use). Either way, `describe()` resolves
them once per instance, applies the `tool(name, spec)` decoration hook, and
checks the invariants the durable runtime relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import keyword
import re
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, cast, get_type_hints, overload

from pydantic import Field, TypeAdapter, create_model

__all__ = [
    "Connector",
    "ConnectorDescription",
    "ReplayPolicy",
    "ToolContext",
    "ToolSpec",
    "idempotency_key",
    "tool",
    "validate_namespace_name",
]

ReplayPolicy = Literal["log", "reexecute"]

# Names the program can never use as a connector namespace: `codemode` is the
# platform SDK, the rest would shadow what the sandbox languages need.
RESERVED_NAMESPACES = frozenset(
    {
        "codemode",
        "input",
        "print",
        "asyncio",
        "console",
        "Promise",
        "Error",
        "setTimeout",
        "globalThis",
        "Deno",
    }
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


@dataclass(frozen=True)
class ConnectorDescription:
    """A connector's resolved surface: the one way to introspect it."""

    name: str
    instructions: str | None
    tools: Mapping[str, ToolSpec]

    def __repr__(self) -> str:
        return f"ConnectorDescription(name={self.name!r}, tools={len(self.tools)})"


def validate_namespace_name(name: object, what: str = "Connector") -> str:
    """Check a namespace name is usable as a global in both sandbox languages."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name) or keyword.iskeyword(name):
        raise ValueError(f"{what} name {name!r} is not a valid identifier (letters, digits and _; not a keyword).")
    if name in RESERVED_NAMESPACES:
        if name == "codemode":
            raise ValueError(f'{what} name "codemode" is reserved for the codemode platform SDK.')
        raise ValueError(f"{what} name {name!r} is reserved: it would shadow a sandbox global.")
    return name


async def maybe_await(value: Any) -> Any:
    """Await `value` if it is awaitable; tools and hooks may be sync or async."""
    if inspect.isawaitable(value):
        return await value
    return value


# ---------------------------------------------------------------------------
# The decorator form
# ---------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


class ToolMethod:
    """A method marked with `@tool`: turned into a `ToolSpec` per instance."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        description: str | None,
        requires_approval: bool,
        replay: ReplayPolicy,
    ) -> None:
        if replay not in ("log", "reexecute"):
            raise ValueError(f"replay must be 'log' or 'reexecute', not {replay!r}")
        if requires_approval and replay == "reexecute":
            raise ValueError(
                f"Tool {fn.__name__!r} cannot combine requires_approval with replay='reexecute': "
                "an approved action must run exactly once, so its result has to be logged."
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description
        self.requires_approval = requires_approval
        self.replay: ReplayPolicy = replay
        self.revert_fn: Callable[..., Any] | None = None
        self._signature: _Signature | None = None

    def revert(self, fn: F) -> F:
        """Register the undo of this tool, run by `Runtime.rollback`."""
        self.revert_fn = fn
        return fn

    @overload
    def __get__(self, instance: None, owner: type) -> ToolMethod: ...
    @overload
    def __get__(self, instance: object, owner: type) -> Callable[..., Any]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        # Plain attribute access calls the function directly, for host-side use and tests.
        return self.fn.__get__(instance, owner)

    @property
    def signature(self) -> _Signature:
        if self._signature is None:
            self._signature = _Signature.of(self.fn)
        return self._signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A decorated plain function stays callable, for host-side use and tests."""
        return self.fn(*args, **kwargs)

    def bind(self, instance: object) -> ToolSpec:
        """The tool of one connector instance."""
        owner = type(instance)
        revert = None if self.revert_fn is None else self.revert_fn.__get__(instance, owner)
        return self._spec(self.fn.__get__(instance, owner), revert)

    def spec(self) -> ToolSpec:
        """The tool of a plain function, not a method: for connectors built from functions."""
        return self._spec(self.fn, self.revert_fn)

    def _spec(self, fn: Callable[..., Any], revert_fn: Callable[..., Any] | None) -> ToolSpec:
        sig = self.signature

        def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
            return fn(**sig.call_kwargs(args, ctx))

        revert: RevertFn | None = None
        if revert_fn is not None:
            undo = revert_fn
            undo_takes_ctx = _accepts_context(undo)

            def revert(args: dict[str, Any], result: Any, ctx: ToolContext) -> Any:
                if undo_takes_ctx:
                    return undo(args, result, ctx)
                return undo(args, result)

        return ToolSpec(
            execute=execute,
            description=self.description if self.description is not None else sig.description,
            input_schema=sig.input_schema,
            output_schema=sig.output_schema,
            requires_approval=self.requires_approval,
            replay=self.replay,
            revert=revert,
            result_type=sig.result_type,
        )


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    replay: ReplayPolicy = "log",
) -> Callable[[F], F]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    replay: ReplayPolicy = "log",
) -> Any:
    """Mark a connector method as a tool.

    The docstring's first paragraph becomes the description and its `Args:`
    section the parameter descriptions; type hints become the JSON Schema
    (via pydantic). A parameter annotated `ToolContext` receives the run's
    context and is not part of the schema.
    """

    def wrap(f: Callable[..., Any]) -> ToolMethod:
        return ToolMethod(f, name=name, description=description, requires_approval=requires_approval, replay=replay)

    if fn is not None:
        return wrap(fn)
    return wrap


def _accepts_context(fn: Callable[..., Any]) -> bool:
    """Whether a revert (a bound method or a plain function) takes `(args, result, ctx)`."""
    params = list(inspect.signature(fn).parameters.values())
    return len(params) >= 3 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)


_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_SECTION_HEADER = re.compile(r"^\s*(Returns|Raises|Yields|Examples?|Notes?):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def _parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {param: description})."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    summary: list[str] = []
    params: dict[str, str] = {}
    section = "summary"
    current: str | None = None
    for line in lines:
        if _ARGS_HEADER.match(line):
            section, current = "args", None
            continue
        if _SECTION_HEADER.match(line):
            section, current = "other", None
            continue
        if section == "summary":
            summary.append(line)
        elif section == "args":
            m = _ARG_LINE.match(line)
            indent = len(line) - len(line.lstrip())
            if m and indent <= 4 and not (current and indent > 4):
                current = m.group(1).lstrip("*")
                params[current] = m.group(2).strip()
            elif current and line.strip():
                params[current] = (params[current] + " " + line.strip()).strip()
    return "\n".join(summary).strip(), params


@dataclass
class _Signature:
    """What a decorated tool's Python signature means for the model and the host."""

    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    params: list[str]
    context_param: str | None
    adapter: TypeAdapter[Any]
    result_type: Any = None

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Signature:
        description, param_docs = _parse_docstring(fn.__doc__)
        try:
            hints = get_type_hints(fn, include_extras=True)
        except NameError as exc:
            raise TypeError(
                f"Tool {fn.__qualname__!r}: cannot resolve its type hints ({exc}); define the types it uses at "
                "module level."
            ) from exc
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        params: list[str] = []
        context_param: str | None = None
        for i, (pname, p) in enumerate(sig.parameters.items()):
            if i == 0 and pname in ("self", "cls"):
                continue
            if p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                raise TypeError(f"Tool {fn.__name__!r}: *args/**kwargs parameters cannot be described to the model.")
            annotation = hints.get(pname, Any)
            if annotation is ToolContext:
                context_param = pname
                continue
            default = p.default if p.default is not inspect.Parameter.empty else ...
            doc = param_docs.get(pname)
            fields[pname] = (Annotated[annotation, Field(description=doc)] if doc else annotation, default)
            params.append(pname)
        model = create_model(f"{fn.__name__}_input", **fields)
        input_schema = model.model_json_schema()
        input_schema.pop("title", None)
        for prop in input_schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        output_schema: dict[str, Any] | None = None
        ret = hints.get("return", inspect.Signature.empty)
        result_type = None
        if ret not in (inspect.Signature.empty, None, type(None), Any):
            result_type = ret
            try:
                output_schema = TypeAdapter(ret).json_schema()
            except Exception:  # an unschematizable return type just means "unknown"
                output_schema = None
        return cls(
            description=description,
            input_schema=input_schema,
            output_schema=output_schema,
            params=params,
            context_param=context_param,
            adapter=TypeAdapter(model),
            result_type=result_type,
        )

    def call_kwargs(self, args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Coerce validated JSON arguments into the Python values the function declares."""
        model = self.adapter.validate_python(dict(args))
        kwargs = {name: getattr(model, name) for name in self.params}
        if self.context_param:
            kwargs[self.context_param] = ctx
        return kwargs


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
        for tool_name, spec in cast(Mapping[str, Any], raw).items():
            if not isinstance(spec, ToolSpec):
                raise TypeError(f"Connector {name!r} tool {tool_name!r} must be a ToolSpec, not {type(spec).__name__}.")
            if not _IDENTIFIER.match(tool_name) or keyword.iskeyword(tool_name):
                raise ValueError(
                    f"Connector {name!r} tool name {tool_name!r} is not a valid identifier; "
                    "sanitize it (codemode.sanitize_identifier) or rename it."
                )
            spec = self.tool(tool_name, spec)
            if spec.replay not in ("log", "reexecute"):
                raise ValueError(f"Connector {name!r} tool {tool_name!r}: replay must be 'log' or 'reexecute'.")
            if spec.requires_approval and spec.replay == "reexecute":
                raise ValueError(
                    f'Connector "{name}" tool "{tool_name}" cannot combine requires_approval with '
                    'replay="reexecute": an approved action must run exactly once, so its result is logged.'
                )
            resolved[tool_name] = spec
        instructions = "\n\n".join(p for p in (self._source_instructions, self.instructions) if p) or None
        return ConnectorDescription(name=name, instructions=instructions, tools=resolved)

    async def execute_tool(self, method: str, args: dict[str, Any], ctx: ToolContext) -> Any:
        """Run one tool for real."""
        desc = await self.describe()
        spec = desc.tools.get(method)
        if spec is None:
            raise LookupError(f'Tool "{method}" not found on {desc.name}')
        return await maybe_await(spec.execute(args, ctx))

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
