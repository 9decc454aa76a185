"""The durable codec: one lossless JSON encoding for the log, results and sandbox channels.

Plain JSON plus tagged objects for what JSON cannot hold exactly:
`{"__codemode__": "bytes", "base64": ...}`, `"bigint"` (integers beyond
2**53, which JavaScript cannot hold as numbers), `"datetime"` / `"date"`
(ISO 8601), `"float"` (nan, inf, -inf), `"set"`, `"map"` (dicts whose keys are
not all strings) and `"object"` (a dict that itself has a `__codemode__` key,
escaped so user data can never be mistaken for a tag). Tuples become lists.

A host value is always sent to the sandbox as `decode(encode(value))`, so the
first pass sees exactly what a replay will see.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import uuid
from datetime import date, datetime
from typing import Any

from codemode.runtime.outcome import MAX_DURABLE_VALUE_BYTES

__all__ = [
    "DurableValueError",
    "canonical",
    "decode",
    "dumps",
    "encode",
    "loads",
    "roundtrip",
    "to_stored",
]

TAG = "__codemode__"
_MAX_SAFE_INT = 2**53
_MAX_DEPTH = 200


class DurableValueError(ValueError):
    """A value that cannot be recorded durably; the message is meant for the model."""


class _Unserializable(TypeError):
    pass


def encode(value: Any) -> Any:
    """Turn a Python value into plain JSON data, tagging what JSON cannot hold."""
    return _encode(value, set(), 0)


def _encode(value: Any, seen: set[int], depth: int) -> Any:
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            return int(value)
        return {TAG: "bigint", "value": str(int(value))}
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return {TAG: "float", "value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
    if depth > _MAX_DEPTH:
        raise _Unserializable(f"nesting deeper than {_MAX_DEPTH} levels")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, datetime):
        return {TAG: "datetime", "iso": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "iso": value.isoformat()}
    if isinstance(value, enum.Enum):
        return _encode(value.value, seen, depth + 1)
    if isinstance(value, uuid.UUID):
        return str(value)
    marker = id(value)
    if marker in seen:
        raise _Unserializable("the value contains a cycle")
    seen.add(marker)
    try:
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                out = {k: _encode(v, seen, depth + 1) for k, v in value.items()}
                return {TAG: "object", "value": out} if TAG in value else out
            return {
                TAG: "map",
                "entries": [[_encode(k, seen, depth + 1), _encode(v, seen, depth + 1)] for k, v in value.items()],
            }
        if isinstance(value, (list, tuple)):
            return [_encode(v, seen, depth + 1) for v in value]
        if isinstance(value, (set, frozenset)):
            items = [_encode(v, seen, depth + 1) for v in value]
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
            return {TAG: "set", "items": items}
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump) and hasattr(type(value), "model_fields"):
            return _encode(model_dump(mode="json"), seen, depth + 1)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _encode(fields, seen, depth + 1)
    finally:
        seen.discard(marker)
    raise _Unserializable(f"{type(value).__name__} is not a JSON-compatible value")


def schema_view(value: Any) -> Any:
    """The JSON a JSON Schema sees of a value: bytes as base64 text, dates as ISO 8601, big integers as
    integers, sets as arrays. Argument validation uses it, so `bytes` matches `{"type": "string"}`."""
    return _untag(encode(value))


def _untag(data: Any) -> Any:
    if isinstance(data, list):
        return [_untag(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag == "bytes":
        return data["base64"]
    if tag in ("datetime", "date"):
        return data["iso"]
    if tag in ("bigint", "float"):
        return decode(data)
    if tag == "set":
        return [_untag(v) for v in data["items"]]
    if tag == "object":
        return {k: _untag(v) for k, v in data["value"].items()}
    if tag == "map":
        return data  # non-string keys: no JSON object can describe them, so the schema decides
    return {k: _untag(v) for k, v in data.items()}


def decode(data: Any) -> Any:
    """Inverse of `encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tag = data.get(TAG)
    if tag is None:
        return {k: decode(v) for k, v in data.items()}
    if tag == "bytes":
        return base64.b64decode(data["base64"])
    if tag == "bigint":
        return int(data["value"])
    if tag == "datetime":
        return datetime.fromisoformat(data["iso"])
    if tag == "date":
        return date.fromisoformat(data["iso"])
    if tag == "float":
        return float(data["value"])
    if tag == "set":
        return {decode(v) for v in data["items"]}
    if tag == "map":
        return {_hashable(decode(k)): decode(v) for k, v in data["entries"]}
    if tag == "object":
        return {k: decode(v) for k, v in data["value"].items()}
    raise ValueError(f"unknown codemode tag {tag!r}")


def _hashable(key: Any) -> Any:
    return tuple(_hashable(k) for k in key) if isinstance(key, list) else key


def dumps(value: Any, *, sort_keys: bool = False) -> str:
    """Encode and serialize; raises `TypeError`/`ValueError` on unrepresentable values."""
    return json.dumps(encode(value), ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=sort_keys)


def loads(text: str | None) -> Any:
    """Parse stored text; `None` (SQL NULL) stays `None`."""
    return None if text is None else decode(json.loads(text))


def roundtrip(value: Any) -> Any:
    """What the sandbox receives: the value exactly as a replay would return it."""
    return decode(json.loads(dumps(value)))


def canonical(value: Any) -> str:
    """Sorted-keys encoding used to compare arguments across passes."""
    return dumps(value, sort_keys=True)


def to_stored(what: str, value: Any, *, sort_keys: bool = False, limit: int = MAX_DURABLE_VALUE_BYTES) -> str:
    """Serialize `value` for the durable log, or raise a `DurableValueError` the model can act on."""
    try:
        text = dumps(value, sort_keys=sort_keys)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DurableValueError(
            f"{what} could not be recorded durably (not serializable: {exc}). Only JSON-compatible values "
            "(plus bytes, big integers, dates and sets) can cross a durable replay boundary."
        ) from None
    size = len(text.encode("utf-8"))
    if size > limit:
        raise DurableValueError(too_large_message(what, size, limit))
    return text


def too_large_message(what: str, size: int, limit: int = MAX_DURABLE_VALUE_BYTES) -> str:
    return (
        f"{what} is too large to record durably ({size} bytes > {limit} byte limit). Write large data to a "
        "file or workspace instead and pass/return a small reference (such as a path), or return only the "
        "fields you need."
    )
