"""What the model reads of a value: plain JSON, no codec tags, always serializable as UTF-8 JSON."""

from __future__ import annotations

import base64
import enum
import json
import math
import uuid
from datetime import date, datetime
from typing import Any

from codemode.codec import _MAX_DECIMAL_BITS, _MAX_DEPTH, _MAX_SAFE_INT, decode, encode
from codemode.records import MAX_VALUE_NODES
from codemode.text import valid_text

__all__ = ["model_view"]


def model_view(value: Any) -> Any:
    """The plain JSON the model reads of a value; never raises, always serializable as UTF-8 JSON.

    No codec tags: sets and tuples become lists, bytes base64 text, dates and datetimes ISO 8601 text,
    integers beyond 2**53 decimal text (or a description past 4300 digits), nan/inf the strings "NaN",
    "Infinity", "-Infinity", dicts with non-string keys objects keyed by the keys' JSON text (a list of
    `[key, value]` pairs when two keys would collide), lone surrogates U+FFFD, and anything else a short
    description. Bounded: past `MAX_VALUE_DEPTH` levels, `MAX_VALUE_NODES` values or a cycle, a marker
    string stands in for the rest."""
    return _ModelView().view(value, 0)


class _ModelView:
    def __init__(self) -> None:
        self.nodes = 0
        self.active: set[int] = set()

    def view(self, value: Any, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_VALUE_NODES:
            return "[codemode: omitted, the value is too large]"
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return valid_text(str(value))
        if isinstance(value, int):
            value = int(value)
            if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
                return value
            if value.bit_length() <= _MAX_DECIMAL_BITS:
                return str(value)
            digits = int(value.bit_length() * math.log10(2)) + 1
            return f"[codemode: an integer of about {digits} digits]"
        if isinstance(value, float):
            if math.isfinite(value):
                return float(value)
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return base64.b64encode(bytes(value)).decode("ascii")
        if isinstance(value, (datetime, date)):
            return value.isoformat()
        if isinstance(value, enum.Enum):
            return self.view(value.value, depth)
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, (dict, list, tuple, set, frozenset)):
            if depth >= _MAX_DEPTH:
                return f"[codemode: omitted, nested deeper than {_MAX_DEPTH} levels]"
            if id(value) in self.active:
                return "[codemode: omitted, a reference to a value that contains itself]"
            self.active.add(id(value))
            try:
                return self._container(value, depth + 1)
            finally:
                self.active.discard(id(value))
        try:
            data = encode(value)  # dataclasses and pydantic models
        except (TypeError, ValueError, RecursionError):
            return _describe(value)
        return self.view(decode(data), depth)

    def _container(self, value: Any, depth: int) -> Any:
        if isinstance(value, dict):
            pairs = [(k, self.view(v, depth)) for k, v in value.items()]
            if all(isinstance(k, str) for k, _ in pairs):
                return {valid_text(k): v for k, v in pairs}
            keys = [self._key_text(k, depth) for k, _ in pairs]
            if len(set(keys)) == len(keys):
                return dict(zip(keys, (v for _, v in pairs), strict=True))
            return [[self.view(k, depth), v] for k, v in pairs]
        items = [self.view(v, depth) for v in value]
        if isinstance(value, (set, frozenset)):
            items.sort(key=lambda v: json.dumps(v, sort_keys=True))
        return items

    def _key_text(self, key: Any, depth: int) -> str:
        shown = self.view(key, depth)
        if isinstance(shown, str):
            return shown
        return json.dumps(shown, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _describe(value: Any) -> str:
    """A short description of a value the model cannot get as data."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    if len(text) > 200:
        text = text[:200] + "…"
    return valid_text(text)
