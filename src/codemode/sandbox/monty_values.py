"""Values crossing out of the Monty sandbox: a call's arguments and a program's result as plain host data."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import pydantic_monty as monty

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES

__all__ = ["HostValues", "call_args", "describe"]


def call_args(namespace: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments, or one dict of them: `ns.m(a=1)` or `ns.m({"a": 1})`."""
    if not args:
        return dict(kwargs)
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs and all(isinstance(k, str) for k in args[0]):
        return dict(args[0])
    raise TypeError(
        f"{namespace}.{method}() takes keyword arguments (e.g. {namespace}.{method}(name=value)) or a single "
        "dict of them, not positional values."
    )


class HostValues:
    """One conversion of a sandbox value to host data.

    Each container is converted once (shared references stay shared, so a value built by doubling a
    list costs its distinct containers, not its expansion); the codec's budget then counts the expansion
    without making it. Only what the codec can hold comes out: None, bools, numbers, strings, bytes, dates,
    lists, tuples, dicts, sets and frozensets; a dataclass instance becomes a dict of its fields; anything
    else (classes, functions, other instances, exceptions, complex numbers, timedeltas) becomes a short
    description string, so no host object ever reaches the caller."""

    def __init__(self, namespaces: Mapping[int, str], objects: Mapping[Any, str]) -> None:
        self.namespaces = namespaces
        self.objects = objects  # by sandbox id: a restored program's namespaces are stand-ins carrying it
        self.memo: dict[int, Any] = {}
        self.active: set[int] = set()
        self.visits = 0  # never more than the expanded value's count, so within budget for any value that fits

    def convert(self, value: Any, depth: int) -> Any:
        self.visits += 1
        if self.visits > MAX_VALUE_NODES:
            raise codec.TooLargeError(2 * self.visits, MAX_RESULT_BYTES)
        if value is None or isinstance(value, (bool, int, float, str, bytes, date)):
            return value
        if id(value) in self.namespaces:
            return f"<namespace {self.namespaces[id(value)]}>"
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            return self._container(value, depth)
        if isinstance(value, monty.MontyClassProxy):
            if value.id in self.objects:
                return f"<namespace {self.objects[value.id]}>"
            if value.is_dataclass:
                return self._container(value, depth)
            return f"<{value.name} object>"
        if isinstance(value, monty.MontyClassTypeProxy):
            return f"<class '{value.name}'>"
        if isinstance(value, monty.MontyStdTypeProxy):
            return f"<built-in {value.kind} {value.name}>"
        if isinstance(value, type):
            return f"<class '{value.__name__}'>"
        return describe(value)

    def _container(self, value: Any, depth: int) -> Any:
        marker = id(value)
        if marker in self.memo:
            return self.memo[marker]
        if marker in self.active:
            raise TypeError("the value contains a cycle (a container inside itself)")
        if depth > MAX_VALUE_DEPTH:
            raise TypeError(f"nesting deeper than {MAX_VALUE_DEPTH} levels")
        self.active.add(marker)
        try:
            out = self._children(value, depth + 1)
        finally:
            self.active.discard(marker)
        self.memo[marker] = out
        return out

    def _children(self, value: Any, depth: int) -> Any:
        if isinstance(value, monty.MontyClassProxy):
            value = dict(value.attributes)
        if isinstance(value, dict):
            pairs = [(self.convert(k, depth), self.convert(v, depth)) for k, v in value.items()]
            try:
                return dict(pairs)
            except TypeError:  # a key that became unhashable data
                return {describe(k) if not isinstance(k, str) else k: v for k, v in pairs}
        items = [self.convert(v, depth) for v in value]
        if isinstance(value, list):
            return items
        try:
            return type(value)(items)
        except TypeError:  # a set item that became unhashable data
            return items


def describe(value: Any) -> str:
    """A short description of a value that is not data."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:200] + "…"
