"""A quick acceptance test of a call's arguments, so the common call skips the full JSON Schema validator.

Most tools take a few named scalar parameters: their input schema is an object whose properties each
declare a type (or a union of types, as `X | None` gives, or an enum of strings), with the names
required and perhaps no others allowed. For such a schema `quick_check` gives a test that is True only
for arguments the full validator accepts: each a plain scalar of a declared type under a known name,
every required name given. Anything it cannot be sure of (a nested value, a float where an integer is
declared, an unknown name, a value for a parameter it does not model) is False, and the full validator
decides and explains. A schema with a keyword it does not model at the top gets no quick test.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["QuickCheck", "quick_check"]

QuickCheck = Callable[[Any], bool]

# Keywords that never make a validator refuse anything (`format` included: the runtime's validator has no
# format checker, so formats are annotations there).
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly", "$comment", "format"}
)
# Drafts whose `type`, `enum`, `anyOf`, `properties`, `required` and `additionalProperties` mean the same
# for plain scalars (the validator picks the latest when a schema names none).
_DRAFTS = frozenset(
    f"{prefix}{draft}{suffix}"
    for prefix in ("http://json-schema.org/", "https://json-schema.org/")
    for draft in (
        "draft-04/schema",
        "draft-06/schema",
        "draft-07/schema",
        "draft/2019-09/schema",
        "draft/2020-12/schema",
    )
    for suffix in ("", "#")
)
_TYPES = frozenset({"string", "integer", "number", "boolean", "null", "array", "object"})
_SAFE_INT = 2**53
_ANY = "any"
_NOTHING: tuple[frozenset[str], frozenset[str] | None] = (frozenset(), None)


def quick_check(schema: Any) -> QuickCheck | None:
    """The quick test for a tool's input schema, or None when the schema is not one it can model."""
    if not isinstance(schema, Mapping):
        return None
    for keyword, value in schema.items():
        if keyword == "$schema":
            if value not in _DRAFTS:
                return None
        elif keyword not in _ANNOTATIONS and keyword not in ("type", "properties", "required", "additionalProperties"):
            return None
    if schema.get("type", "object") != "object":
        return None
    properties = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(properties, Mapping) or not isinstance(required, list) or not isinstance(extra, bool):
        return None
    if not all(isinstance(name, str) for name in required):
        return None
    # A property this does not model (a list, a nested object, a constraint on the value) takes no value
    # here: given one, the validator decides; left out, it constrains nothing.
    accepts = {name: _scalar(subschema) or _NOTHING for name, subschema in properties.items()}
    needed = frozenset(required)
    anything: tuple[frozenset[str], frozenset[str] | None] | None = (frozenset({_ANY}), None) if extra else None

    def check(args: Any) -> bool:
        if type(args) is not dict or not needed.issubset(args):
            return False
        for name, value in args.items():
            kinds = accepts.get(name, anything) if type(name) is str else None
            if kinds is None or not _fits(value, *kinds):
                return False
        return True

    return check


def _scalar(schema: Any) -> tuple[frozenset[str], frozenset[str] | None] | None:
    """What a property accepts among plain scalars: its JSON types, and the strings it allows when it is an
    enum of strings (None: any string); None when the property's schema is not one this models."""
    if not isinstance(schema, Mapping):
        return None
    kinds: frozenset[str] | None = None
    strings: frozenset[str] | None = None
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "type":
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not names or not all(n in _TYPES for n in names):
                return None
            kinds = frozenset(names) if kinds is None else kinds & frozenset(names)
        elif keyword == "enum":
            if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
                return None
            strings = frozenset(value)
            kinds = frozenset({"string"}) if kinds is None else kinds & {"string"}
        elif keyword == "anyOf":
            if not isinstance(value, list) or not value or len(schema) != 1 + sum(k in _ANNOTATIONS for k in schema):
                return None  # `anyOf` beside other constraints: not modelled
            branches = [_scalar(branch) for branch in value]
            if any(b is None for b in branches):
                return None
            return _union([b for b in branches if b is not None])
        else:
            return None
    return (frozenset({_ANY}) if kinds is None else kinds), strings


def _union(
    branches: list[tuple[frozenset[str], frozenset[str] | None]],
) -> tuple[frozenset[str], frozenset[str] | None]:
    kinds: frozenset[str] = frozenset().union(*(k for k, _ in branches))
    if _ANY in kinds:
        return frozenset({_ANY}), None
    open_strings = any("string" in k and s is None for k, s in branches)
    strings = None if open_strings else frozenset().union(*(s or frozenset() for _, s in branches))
    return kinds, strings


def _fits(value: Any, kinds: frozenset[str], strings: frozenset[str] | None) -> bool:
    kind = type(value)
    if kind is str:
        return (_ANY in kinds or "string" in kinds) and (strings is None or value in strings)
    if kind is bool:
        return _ANY in kinds or "boolean" in kinds
    if kind is int:
        return -_SAFE_INT <= value <= _SAFE_INT and (_ANY in kinds or "integer" in kinds or "number" in kinds)
    if kind is float:
        return math.isfinite(value) and (_ANY in kinds or "number" in kinds)
    if value is None:
        return _ANY in kinds or "null" in kinds
    return False
