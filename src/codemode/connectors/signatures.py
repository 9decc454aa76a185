"""A decorated tool's Python signature read as JSON Schema (via pydantic) and as the call it makes.

The docstring gives the descriptions, the type hints the schemas; `typing.TypedDict`s are rebuilt for
pydantic on Pythons before 3.12.
"""

from __future__ import annotations

import inspect
import re
import sys
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin, get_type_hints

import typing_extensions
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model
from typing_extensions import is_typeddict

from codemode.connectors.spec import ToolContext

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
        if not args and not self.params and self.extras_param is None:  # nothing to coerce, nothing to refuse
            return {self.context_param: ctx} if self.context_param else {}
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
