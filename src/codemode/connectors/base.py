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
import dataclasses
import inspect
import keyword
import re
import sys
import types
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints, overload

import typing_extensions
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import is_typeddict

from codemode.schema.names import JAVASCRIPT_GLOBALS, PYTHON_BUILTINS, RESERVED_WORDS, SANDBOX_GLOBALS

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

# Names the program can never use as a connector namespace: `codemode` is the platform SDK, `asyncio`
# the one module a Python program imports, and the rest would shadow (or be shadowed by) a word or a
# global of one of the sandbox languages. A connector's name must work in both, so that programs and
# snippets do not depend on the executor.
RESERVED_NAMESPACES = frozenset({"codemode", "asyncio"}) | RESERVED_WORDS | SANDBOX_GLOBALS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always with fullmatch: `$` would let "a\n" through


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


def validate_namespace_name(name: object, what: str = "Connector") -> str:
    """Check a namespace name is usable as a global in both sandbox languages.

    Valid identifier (the whole string), not a keyword of either language, not a built-in or a global
    of either (`type`, `print`, `Set`, `JSON`, ...), not `codemode`, and not `__`-prefixed: names
    like `__step` belong to the platform (the log's step entries use it).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} is not a valid identifier: use ASCII letters, digits and _, not starting "
            "with a digit."
        )
    if name == "codemode":
        raise ValueError(f'{what} name "codemode" is reserved for the codemode platform SDK.')
    if name.startswith("__"):
        raise ValueError(f"{what} name {name!r} is reserved: names starting with __ belong to the platform.")
    if name in RESERVED_NAMESPACES:
        if name in RESERVED_WORDS:
            why = "a keyword of Python or JavaScript"
        elif name in PYTHON_BUILTINS and name in JAVASCRIPT_GLOBALS:
            why = "a built-in of Python and a global of JavaScript"
        elif name in PYTHON_BUILTINS:
            why = "a Python built-in"
        elif name in JAVASCRIPT_GLOBALS:
            why = "a JavaScript global"
        else:
            why = "a name the sandbox needs"
        raise ValueError(
            f"{what} name {name!r} is reserved: it is {why}, and a namespace of that name would shadow it (or be "
            f"shadowed by it) in the sandbox. Rename it, for example to {name + '_api'!r}."
        )
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
_Self = TypeVar("_Self", bound="Connector")


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
            kwargs = sig.call_kwargs(args, ctx)
            return fn(*[kwargs.pop(name) for name in sig.positional], **kwargs)

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
    """What a decorated tool's Python signature means for the model and the host.

    Arguments the function does not declare are refused (`additionalProperties: false`), so a
    misspelled optional argument is an error rather than silently ignored; a function with
    `**kwargs` accepts extra arguments of the type it gives them, and receives them there.
    """

    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    params: list[str]
    context_param: str | None
    adapter: TypeAdapter[Any]
    result_type: Any = None
    extras_param: str | None = None  # the `**kwargs` parameter, which receives the extra arguments
    positional: list[str] = field(default_factory=list)  # positional-only parameters, in order

    @classmethod
    def of(cls, fn: Callable[..., Any]) -> _Signature:
        description, param_docs = _parse_docstring(fn.__doc__)
        label = str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))
        try:
            hints = get_type_hints(fn, include_extras=True)
        except NameError as exc:
            raise TypeError(
                f"Tool {label!r}: cannot resolve its type hints ({exc}); define the types it uses at module level."
            ) from exc
        sig = inspect.signature(fn)
        fields: dict[str, Any] = {}
        params: list[str] = []
        context_param: str | None = None
        extras_param: str | None = None
        extras_type: Any = Any
        positional: list[str] = []
        for i, (pname, p) in enumerate(sig.parameters.items()):
            if i == 0 and pname in ("self", "cls"):
                continue
            if p.kind is inspect.Parameter.VAR_POSITIONAL:
                raise TypeError(
                    f"Tool {label!r}: *{pname} cannot be described to the model, which calls tools with named "
                    "arguments; take a list parameter instead."
                )
            annotation = _pydantic_ready(label, hints.get(pname, Any))
            if p.kind is inspect.Parameter.VAR_KEYWORD:
                extras_param, extras_type = pname, annotation
                continue
            if annotation is ToolContext:
                context_param = pname
                continue
            if p.kind is inspect.Parameter.POSITIONAL_ONLY:
                positional.append(pname)  # named for the model, passed by position to the function
            default = p.default if p.default is not inspect.Parameter.empty else ...
            doc = param_docs.get(pname)
            fields[pname] = (Annotated[annotation, Field(description=doc)] if doc else annotation, default)
            params.append(pname)
        try:
            model = create_model(f"{fn.__name__}_input", __base__=_arguments_base(extras_param, extras_type), **fields)
            input_schema = model.model_json_schema()
            adapter: TypeAdapter[Any] = TypeAdapter(model)
        except Exception as exc:
            culprits = [(f"parameter {n!r}", fields[n][0]) for n in params]
            if extras_param is not None:
                culprits.append((f"parameter **{extras_param}", extras_type))
            raise _unschematizable(label, culprits, exc) from exc
        input_schema.pop("title", None)
        for prop in input_schema.get("properties", {}).values():
            if isinstance(prop, dict):
                prop.pop("title", None)
        output_schema: dict[str, Any] | None = None
        ret = hints.get("return", inspect.Signature.empty)
        result_type = None
        if ret not in (inspect.Signature.empty, None, type(None), Any):
            result_type = _pydantic_ready(label, ret)
            try:
                output_schema = TypeAdapter(result_type).json_schema()
            except Exception as exc:
                raise _unschematizable(label, [("return type", ret)], exc) from exc
        return cls(
            description=description,
            input_schema=input_schema,
            output_schema=output_schema,
            params=params,
            context_param=context_param,
            adapter=adapter,
            result_type=result_type,
            extras_param=extras_param,
            positional=positional,
        )

    def call_kwargs(self, args: Mapping[str, Any], ctx: ToolContext) -> dict[str, Any]:
        """Coerce validated JSON arguments into the Python values the function declares."""
        model = self.adapter.validate_python(dict(args))
        kwargs = {name: getattr(model, name) for name in self.params}
        if self.extras_param is not None:
            kwargs.update(model.__pydantic_extra__ or {})
        if self.context_param:
            kwargs[self.context_param] = ctx
        return kwargs


def _arguments_base(extras_param: str | None, extras_type: Any) -> type[BaseModel]:
    """The model a tool's arguments are validated with: extra arguments refused, unless it takes
    `**kwargs`, whose annotation then types them (`**options: int` accepts only integers)."""
    if extras_param is None:
        return _NoExtras
    namespace = {"__annotations__": {"__pydantic_extra__": dict[str, extras_type]}}
    return cast("type[BaseModel]", type("_Extras", (_WithExtras,), namespace))


class _NoExtras(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _WithExtras(BaseModel):
    model_config = ConfigDict(extra="allow")


def _unschematizable(label: str, culprits: list[tuple[str, Any]], exc: Exception) -> TypeError:
    """A developer's error naming the tool and the type pydantic cannot describe: never an outage."""
    what, annotation = "arguments", None
    for where, candidate in culprits:
        try:
            TypeAdapter(candidate).json_schema()
        except Exception as own:
            what, annotation, exc = where, candidate, own
            break
    shown = "" if annotation is None else f" ({_type_text(annotation)})"
    reason = " ".join(str(exc).split("\n")[0].split())
    return TypeError(
        f"Tool {label!r}: the {what}{shown} cannot be described as JSON Schema, so the tool cannot be offered to "
        f"the model: {reason} Use JSON-shaped types (str, int, float, bool, None, list, dict, TypedDict, "
        "pydantic models, dataclasses), or Any."
    )


def _type_text(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


# pydantic reads `typing.TypedDict` only from Python 3.12 (before that it asks for typing_extensions').
_TYPING_TYPEDDICT_OK = sys.version_info >= (3, 12)


def _pydantic_ready(label: str, annotation: Any) -> Any:
    """The annotation with every `typing.TypedDict` in it rebuilt as a `typing_extensions.TypedDict`
    (same name, keys, types and docstring), which pydantic reads on every supported Python."""
    if _TYPING_TYPEDDICT_OK:
        return annotation
    return _rebuilt(label, annotation, {})


def _rebuilt(label: str, annotation: Any, memo: dict[Any, Any]) -> Any:
    if isinstance(annotation, type) and is_typeddict(annotation) and type(annotation).__module__ == "typing":
        return _rebuilt_typeddict(label, annotation, memo)
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is None or not args or origin is Literal:
        return annotation
    if origin is Annotated:
        inner = _rebuilt(label, args[0], memo)
        if inner is args[0]:
            return annotation
        params = (inner, *args[1:])
        return Annotated[params]
    new = tuple(_rebuilt(label, arg, memo) for arg in args)
    if all(n is a for n, a in zip(new, args, strict=True)):
        return annotation
    if origin is Union or origin is types.UnionType:
        return Union[new]  # noqa: UP007 - a union built from a tuple of types
    if isinstance(annotation, types.GenericAlias):
        return types.GenericAlias(origin, new)
    copy_with = getattr(annotation, "copy_with", None)
    return annotation if copy_with is None else copy_with(new)


def _rebuilt_typeddict(label: str, td: Any, memo: dict[Any, Any]) -> Any:
    if td in memo:  # a recursive TypedDict refers to its copy being built
        return memo[td]
    make: Any = typing_extensions.TypedDict  # the functional form, with a name known only now
    copy: Any = make(td.__name__, {}, total=td.__total__)
    memo[td] = copy
    try:
        hints = get_type_hints(td, include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"Tool {label!r}: cannot resolve the type hints of TypedDict {td.__qualname__!r} ({exc}); define the "
            "types it uses at module level."
        ) from exc
    copy.__annotations__ = {key: _rebuilt(label, hint, memo) for key, hint in hints.items()}
    copy.__required_keys__ = td.__required_keys__
    copy.__optional_keys__ = td.__optional_keys__
    copy.__readonly_keys__ = frozenset()
    copy.__mutable_keys__ = frozenset(hints)
    copy.__doc__ = td.__doc__
    copy.__module__ = td.__module__
    copy.__qualname__ = td.__qualname__
    return copy


# ---------------------------------------------------------------------------
# Host-side arguments (`bind`, `ToolSpec.bound`)
# ---------------------------------------------------------------------------


def _apply_bound(connector: str, tool_name: str, spec: ToolSpec, bound: Mapping[str, Any]) -> tuple[ToolSpec, set[str]]:
    """The ToolSpec with its host-side arguments taken out of its schema and put into its calls.

    The connector's `bind()` values apply to every tool with a top-level parameter of that name; the
    spec's own `bound` wins and must name parameters the tool has. Returns the ToolSpec and the names of
    the connector's values it took."""
    schema = spec.input_schema
    props = schema.get("properties") if isinstance(schema, Mapping) else None
    props = props if isinstance(props, Mapping) else {}
    for key in spec.bound:
        if key not in props:
            raise ValueError(
                f"Connector {connector!r} tool {tool_name!r}: ToolSpec.bound names {key!r}, which is not one of its "
                f"top-level parameters ({', '.join(map(str, props)) or 'none'})."
            )
    taken = {key for key in bound if key in props and key not in spec.bound}
    values = {**{key: bound[key] for key in taken}, **spec.bound}
    if not values:
        return spec, taken
    stripped = {k: v for k, v in schema.items() if k not in ("properties", "required")}
    stripped["properties"] = {k: v for k, v in props.items() if k not in values}
    required = schema.get("required")
    if isinstance(required, list):
        stripped["required"] = [r for r in required if r not in values]
    run, undo = spec.execute, spec.revert

    async def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
        supplied = await _supplied(values)
        try:
            return _scrubbed(await maybe_await(run({**args, **supplied}, ctx)), _hidden(supplied))
        except Exception as exc:
            redacted = _redacted(exc, supplied)
            if redacted is exc:
                raise
            raise redacted from None

    revert: RevertFn | None = None
    if undo is not None:
        undo_fn = undo

        async def revert(args: dict[str, Any], result: Any, ctx: ToolContext) -> Any:
            supplied = await _supplied(values)
            try:
                return await maybe_await(undo_fn({**args, **supplied}, result, ctx))
            except Exception as exc:
                redacted = _redacted(exc, supplied)
                if redacted is exc:
                    raise
                raise redacted from None

    replaced = dataclasses.replace(spec, input_schema=stripped, execute=execute, revert=revert, bound=values)
    return replaced, taken


async def _supplied(values: Mapping[str, Any]) -> dict[str, Any]:
    """The bound values of one call: callables are called (and awaited) now."""
    return {key: (await maybe_await(value()) if callable(value) else value) for key, value in values.items()}


# Shorter values are not redacted: replacing "1" or "en" in a result would garble it and hide nothing.
MIN_REDACTED_CHARS = 8


def _hidden(supplied: Mapping[str, Any]) -> dict[str, str]:
    """The bound values to keep out of results and messages (strings long enough to be secrets)."""
    return {key: v for key, v in supplied.items() if isinstance(v, str) and len(v) >= MIN_REDACTED_CHARS}


def _redact(text: str, hidden: Mapping[str, str]) -> str:
    for key, v in sorted(hidden.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(v, f"<{key}>")
    return text


def _scrubbed(value: Any, hidden: Mapping[str, str]) -> Any:
    """A result with every bound value replaced by `<name>`, in every string, key and bytes of it, since
    results are logged and given to the program (an API may echo a credential back). Values of other
    types are left as they are."""
    if not hidden:
        return value
    if isinstance(value, str):
        return _redact(value, hidden) if any(v in value for v in hidden.values()) else value
    if isinstance(value, (bytes, bytearray)):
        raw = bytes(value)
        for key, v in hidden.items():
            raw = raw.replace(v.encode(), f"<{key}>".encode())
        return raw if raw != value else value
    if isinstance(value, Mapping):
        return {_scrubbed(k, hidden): _scrubbed(v, hidden) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, hidden) for v in value]  # the codec records a tuple as a list anyway
    return value


def _redacted(exc: Exception, supplied: Mapping[str, Any]) -> Exception:
    """The exception with every bound value in its message replaced by `<name>`, since the message is
    logged and shown (an HTTP error's URL carries its query's token). Same type when it can be."""
    hidden = _hidden(supplied)
    text = str(exc)
    if not any(v in text or v in repr(exc) for v in hidden.values()):
        return exc
    text = _redact(text, hidden)
    try:
        exc.args = (text,)
        if str(exc) == text and not any(v in repr(exc) for v in hidden.values()):
            exc.__cause__ = exc.__context__ = None
            exc.__traceback__ = None
            return exc
    except Exception:  # an exception type that will not take its message back
        pass
    kind = next((k for k in _KEPT_KINDS if isinstance(exc, k)), RuntimeError)
    return kind(text)


_KEPT_KINDS: tuple[type[Exception], ...] = (
    PermissionError,
    TimeoutError,
    ConnectionError,
    KeyError,
    LookupError,
    ValueError,
    TypeError,
)


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
