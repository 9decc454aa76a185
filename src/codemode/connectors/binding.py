"""Host-side arguments (`Connector.bind`, `ToolSpec.bound`): taken out of what the model sees, supplied
at each call, and redacted from results and error messages."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from codemode.connectors.spec import RevertFn, ToolContext, ToolSpec, maybe_await

__all__ = ["MIN_REDACTED_CHARS"]


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
