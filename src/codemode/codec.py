"""The durable codec: one lossless JSON encoding for the log, results and sandbox channels.

Plain JSON plus tagged objects for what JSON cannot hold exactly:
`{"__codemode__": "bytes", "base64": ...}`, `"bigint"` (integers beyond
2**53, which JavaScript cannot hold as numbers: decimal text, or `0x` hex text
beyond a few thousand digits), `"datetime"` / `"date"` (ISO 8601), `"float"`
(nan, inf, -inf), `"set"`, `"map"` (dicts whose keys are not all strings) and
`"object"` (a dict that itself has a `__codemode__` key, escaped so user data
can never be mistaken for a tag). Tuples become lists (and lists inside set
items and dict keys become tuples again, frozensets stay frozensets, so a
decoded value is always a valid Python value).

Bounded: encoding walks a value at most once per distinct container (shared
references are encoded once), and refuses, before expanding anything, a value
nested deeper than `MAX_VALUE_DEPTH`, holding more than `MAX_VALUE_NODES`
values (each shared reference counted every time it appears, as JSON repeats
it) or whose JSON would exceed the byte limit. Lone surrogates (invalid
Unicode that JavaScript strings may hold) are stored losslessly as `\\uXXXX`
escapes, so the stored text is always valid UTF-8.

A host value is always sent to the sandbox as `decode(encode(value))`, so the
first pass sees exactly what a replay will see.

`codemode.model_view` is the other direction: the plain JSON the model reads (no tags).
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

from codemode.records import (
    MAX_DURABLE_VALUE_BYTES,
    MAX_RESULT_BYTES,
    MAX_VALUE_DEPTH,
    MAX_VALUE_NODES,
)
from codemode.text import _SURROGATE

__all__ = [
    "DurableValueError",
    "TooLargeError",
    "Undecodable",
    "canonical",
    "check",
    "decode",
    "dumps",
    "encode",
    "is_plain_dict",
    "json_text",
    "loads",
    "read",
    "refusal",
    "roundtrip",
    "to_stored",
]

TAG = "__codemode__"
_MAX_SAFE_INT = 2**53
_MAX_DEPTH = MAX_VALUE_DEPTH
# Decimal text of integers up to this many bits stays below Python's int/str digit limit (4300 digits).
_MAX_DECIMAL_BITS = 13_000
# Encoded JSON nests at most three levels per value level (a map: entries, pair, key).
_MAX_JSON_DEPTH = 3 * MAX_VALUE_DEPTH + 3


class DurableValueError(ValueError):
    """A value that cannot be recorded durably; the message is meant for the model."""


class _Unserializable(TypeError):
    pass


class TooLargeError(ValueError):
    """A value over the byte or value-count budget of an encoding; `size` is a lower bound of its JSON size."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"larger than the {limit} byte limit")
        self.size = size
        self.limit = limit


class Undecodable(str):
    """A stored value that could not be decoded, read back as a string describing it (see `read`)."""


def encode(value: Any, *, max_bytes: int = MAX_RESULT_BYTES) -> Any:
    """Turn a Python value into plain JSON data, tagging what JSON cannot hold.

    Raises `TypeError` for what the codec cannot represent (a cycle, an arbitrary object, nesting deeper
    than `MAX_VALUE_DEPTH`) and `ValueError` when the JSON would be larger than `max_bytes` or hold more
    than `MAX_VALUE_NODES` values. Shared sub-values are encoded once and shared in the output."""
    return _Encoder(max_bytes).encode(value, 0)


class _Encoder:
    """One walk: memoized per container, counting the size of the JSON it stands for as it goes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_nodes = min(MAX_VALUE_NODES, max(max_bytes // 2, 1))
        self.nodes = 0
        self.size = 0  # a lower bound of the JSON's length in bytes
        self.deepest = 0
        self.memo: dict[int, tuple[Any, int, int, int]] = {}  # id -> (data, nodes, size, height)
        self.active: set[int] = set()
        self.keep: list[Any] = []  # converted temporaries stay alive, so their ids are never reused

    def _count(self, nodes: int, size: int) -> None:
        self.nodes += nodes
        self.size += size
        if self.size > self.max_bytes or self.nodes > self.max_nodes:
            raise TooLargeError(max(self.size, 2 * self.nodes), self.max_bytes)

    def encode(self, value: Any, depth: int) -> Any:
        if value is None or isinstance(value, bool):
            self._count(1, 4)
            return value
        if isinstance(value, str):
            self._count(1, len(value) + 2)
            return value
        if isinstance(value, int):
            if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                self._count(1, 1)
                return int(value)
            bits = value.bit_length()
            self._count(1, bits * 3 // 10 + 30)
            text = str(int(value)) if bits <= _MAX_DECIMAL_BITS else hex(value)
            return {TAG: "bigint", "value": text}
        if isinstance(value, float):
            self._count(1, 1)
            if math.isfinite(value):
                return value
            return {TAG: "float", "value": "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")}
        if depth > _MAX_DEPTH:
            raise _Unserializable(f"nesting deeper than {_MAX_DEPTH} levels")
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            return self._container(value, depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            self._count(1, len(value) * 4 // 3 + 30)
            return {TAG: "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
        if isinstance(value, datetime):
            self._count(1, 40)
            return {TAG: "datetime", "iso": value.isoformat()}
        if isinstance(value, date):
            self._count(1, 30)
            return {TAG: "date", "iso": value.isoformat()}
        if isinstance(value, enum.Enum):
            return self.encode(value.value, depth + 1)
        if isinstance(value, uuid.UUID):
            self._count(1, 38)
            return str(value)
        model_dump = getattr(value, "model_dump", None)
        if callable(model_dump) and hasattr(type(value), "model_fields"):
            plain = model_dump(mode="json")
            self.keep.append(plain)
            return self.encode(plain, depth + 1)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            self.keep.append(fields)
            return self.encode(fields, depth + 1)
        raise _Unserializable(f"{type(value).__name__} is not a JSON-compatible value")

    def _container(self, value: Any, depth: int) -> Any:
        marker = id(value)
        known = self.memo.get(marker)
        if known is not None:
            data, nodes, size, height = known
            if depth + height > _MAX_DEPTH:
                raise _Unserializable(f"nesting deeper than {_MAX_DEPTH} levels")
            self.deepest = max(self.deepest, depth + height)
            self._count(nodes, size)
            return data
        if marker in self.active:
            raise _Unserializable("the value contains a cycle")
        self.active.add(marker)
        nodes, size, outer = self.nodes, self.size, self.deepest
        self.deepest = depth
        try:
            data = self._children(value, depth + 1)
        finally:
            self.active.discard(marker)
        height = self.deepest - depth
        self.deepest = max(outer, self.deepest)
        self.memo[marker] = (data, self.nodes - nodes, self.size - size, height)
        return data

    def _children(self, value: Any, depth: int) -> Any:
        self._count(1, 1 + len(value))  # brackets and separators
        if isinstance(value, dict):
            if all(isinstance(k, str) for k in value):
                out: dict[str, Any] = {}
                for key, item in value.items():
                    self.size += len(key) + 3
                    out[key] = self._item(item, depth)
                return {TAG: "object", "value": out} if TAG in value else out
            entries = []
            for key, item in value.items():
                entries.append([self.encode(key, depth), self.encode(item, depth)])
            return {TAG: "map", "entries": entries}
        items = [self._item(item, depth) for item in value]
        if isinstance(value, (set, frozenset)):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
            return {TAG: "set", "items": items}
        return items

    def _item(self, item: Any, depth: int) -> Any:
        """`encode` for one child, with the common plain JSON scalars counted inline (the hot path)."""
        kind = type(item)
        if kind is str:
            self.nodes += 1
            self.size += len(item) + 2
        elif (kind is int and -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT) or kind is bool or item is None:
            self.nodes += 1
            self.size += 1
        elif kind is dict or kind is list:
            if depth > _MAX_DEPTH:
                raise _Unserializable(f"nesting deeper than {_MAX_DEPTH} levels")
            return self._container(item, depth)
        else:
            return self.encode(item, depth)
        if self.size > self.max_bytes or self.nodes > self.max_nodes:
            raise TooLargeError(max(self.size, 2 * self.nodes), self.max_bytes)
        return item


def schema_view(value: Any) -> Any:
    """The JSON a JSON Schema sees of a value: bytes as base64 text, dates as ISO 8601, big integers as
    integers, sets as arrays. Argument validation uses it, so `bytes` matches `{"type": "string"}`."""
    if type(value) is dict and is_plain_dict(value):
        return value  # the common call: keyword arguments of plain scalars are their own view
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
    """Inverse of `encode`. Never recurses past `MAX_VALUE_DEPTH` value levels (a deeper document raises
    `ValueError`). A set or map decoded from JavaScript whose items or keys Python cannot hash (objects)
    becomes a list of the items, or of `[key, value]` pairs."""
    return _decode(data, 0)


def _decode(data: Any, depth: int) -> Any:
    if isinstance(data, list):
        if depth > _MAX_JSON_DEPTH:
            raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
        out = []
        for item in data:
            out.append(_decode(item, depth + 1))
        return out
    if not isinstance(data, dict):
        return data
    if depth > _MAX_JSON_DEPTH:
        raise ValueError(f"nesting deeper than {_MAX_DEPTH} levels")
    tag = data.get(TAG)
    if tag is None:
        return _decode_object(data, depth)
    if tag == "bytes":
        return base64.b64decode(data["base64"], validate=True)
    if tag == "bigint":
        text = str(data["value"])
        return int(text, 16) if text.lstrip("-").startswith("0x") else int(text)
    if tag == "datetime":
        return datetime.fromisoformat(data["iso"])
    if tag == "date":
        return date.fromisoformat(data["iso"])
    if tag == "float":
        if data["value"] not in ("nan", "inf", "-inf"):
            raise ValueError(f"unknown float value {data['value']!r}")
        return float(data["value"])
    if tag == "set":
        items = _decode(data["items"], depth + 1)
        try:
            return {_key(v) for v in items}
        except TypeError:
            return items
    if tag == "map":
        pairs = [(_decode(k, depth + 3), _decode(v, depth + 3)) for k, v in data["entries"]]
        try:
            return {_key(k): v for k, v in pairs}
        except TypeError:
            return [[k, v] for k, v in pairs]
    if tag == "object":
        return _decode_object(data["value"], depth + 1)
    raise ValueError(f"unknown codemode tag {tag!r}")


def _decode_object(data: dict[str, Any], depth: int) -> dict[str, Any]:
    out = {}
    for key, item in data.items():
        out[key] = _decode(item, depth + 1)
    return out


def _key(value: Any) -> Any:
    """A decoded value as a set item or dict key: lists (encoded tuples) become tuples, sets frozensets."""
    if isinstance(value, list):
        return tuple(_key(v) for v in value)
    if isinstance(value, set):
        return frozenset(value)
    hash(value)  # a dict (a JavaScript object as a key): TypeError
    return value


def dumps(value: Any, *, sort_keys: bool = False, max_bytes: int = MAX_RESULT_BYTES) -> str:
    """Encode and serialize to valid UTF-8 JSON text; raises `TypeError`/`ValueError` on unrepresentable
    values (see `encode`)."""
    if value is None:
        return "null"  # what most tools return, on the per-call path
    if type(value) is dict and max_bytes >= _FLAT_BOUND and is_plain_dict(value):
        return json_text(value, sort_keys=sort_keys)  # the common call's arguments: their own encoding
    return json_text(encode(value, max_bytes=max_bytes), sort_keys=sort_keys)


# A dict `is_plain_dict` accepts is its own encoding, and within this many bytes as the encoder counts them
# (64 items, keys of 200 characters, strings of 4,096), so no budget of at least this much refuses it.
_FLAT_ITEMS, _FLAT_KEY, _FLAT_TEXT = 64, 200, 4096
_FLAT_BOUND = 300_000


def is_plain_dict(value: dict[Any, Any]) -> bool:
    """A few short plain scalars under short string keys (none of them the tag): its own encoding and
    schema view, with nothing to convert, and always within what `check` accepts (the common call's
    arguments)."""
    if len(value) > _FLAT_ITEMS:
        return False
    for key, item in value.items():
        if type(key) is not str or len(key) > _FLAT_KEY or key == TAG:
            return False
        kind = type(item)
        if kind is str:
            if len(item) > _FLAT_TEXT:
                return False
        elif kind is int:
            if not -_MAX_SAFE_INT <= item <= _MAX_SAFE_INT:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def json_text(data: Any, *, sort_keys: bool = False) -> str:
    """Compact JSON of plain JSON data, always valid UTF-8 (lone surrogates as `\\uXXXX` escapes)."""
    text = (_SORTED if sort_keys else _COMPACT).encode(data)
    if not text.isascii() and _SURROGATE.search(text):
        # Only string literals can hold a lone surrogate: its escape is the same JSON string, in valid UTF-8.
        text = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text


# `json.dumps` with these options would build its encoder on every call.
_COMPACT = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_SORTED = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Any:
    """Parse stored text; `None` (SQL NULL) stays `None`."""
    if text is None or text == "null":
        return None
    return decode(json.loads(text))


def read(text: str | None) -> Any:
    """`loads` for the audit trail: a stored value that cannot be decoded (written by something else, or
    damaged) reads as an `Undecodable` string saying so, so one bad row never hides every other run."""
    try:
        return loads(text)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        snippet = (text or "")[:200]
        return Undecodable(f"[codemode: stored value could not be decoded ({type(exc).__name__}: {exc}): {snippet}]")


def roundtrip(value: Any) -> Any:
    """What the sandbox receives: the value exactly as a replay would return it."""
    return decode(json.loads(dumps(value)))


def canonical(value: Any) -> str:
    """Sorted-keys encoding used to compare arguments across passes."""
    return dumps(value, sort_keys=True)


def to_stored(what: str, value: Any, *, sort_keys: bool = False, limit: int = MAX_DURABLE_VALUE_BYTES) -> str:
    """Serialize `value` for the durable log, or raise a `DurableValueError` the model can act on.

    The size budget is counted while encoding, so an oversized value is refused before it is expanded."""
    try:
        text = dumps(value, sort_keys=sort_keys, max_bytes=limit)
    except TooLargeError as exc:
        raise DurableValueError(too_large_message(what, exc.size, limit, estimated=True)) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise DurableValueError(
            f"{what} could not be recorded durably (not serializable: {exc}). Only JSON-compatible values "
            "(plus bytes, big integers, dates and sets) can cross a durable replay boundary: convert it to "
            "plain data (dicts, lists, strings, numbers) first."
        ) from None
    size = len(text.encode("utf-8"))
    if size > limit:
        raise DurableValueError(too_large_message(what, size, limit))
    return text


def check(what: str, value: Any, *, limit: int = MAX_RESULT_BYTES) -> None:
    """Raise a `DurableValueError` saying what to do instead when `value` cannot cross the sandbox boundary
    at all: nested too deep, a cycle, not data, or over `limit` bytes / `MAX_VALUE_NODES` values. Bounded:
    nothing is expanded past the budget."""
    try:
        encode(value, max_bytes=limit)
    except (TypeError, ValueError, RecursionError) as exc:
        raise DurableValueError(refusal(what, exc, limit)) from None


def refusal(what: str, exc: BaseException, limit: int = MAX_RESULT_BYTES) -> str:
    """The model-facing message for a value `check` refused (or a sandbox conversion gave up on)."""
    if isinstance(exc, TooLargeError):
        return (
            f"{what} is too large (over the {limit} byte limit as JSON, or more than {MAX_VALUE_NODES} values; "
            f"a value shared by reference counts every time it appears). {_INSTEAD}"
        )
    if isinstance(exc, RecursionError):
        exc = TypeError(f"nesting deeper than {_MAX_DEPTH} levels")
    return (
        f"{what} cannot cross the sandbox boundary ({exc}). Use plain data (dicts, lists, "
        f"strings, numbers, booleans, null/None, bytes, dates), nested at most {_MAX_DEPTH} levels deep."
    )


_INSTEAD = (
    "Pass or return only the fields you need (pick them out, or summarize: counts, totals, the first few "
    "items), or fetch less at a time using the connector's own paging or limit parameters (see codemode.describe)."
)


def too_large_message(what: str, size: int, limit: int = MAX_DURABLE_VALUE_BYTES, *, estimated: bool = False) -> str:
    """The size-limit error: what the model can do instead, with what the sandbox offers."""
    amount = f"more than {size} bytes" if estimated else f"{size} bytes"
    return f"{what} is too large to record durably ({amount} > {limit} byte limit). {_INSTEAD}"
