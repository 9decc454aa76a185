"""The durable codec (spec §9.13, extended to the Python types that cross the boundary)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import date, datetime, timezone

import pytest

from codemode import codec
from codemode.codec import DurableValueError


def test_round_trips_what_json_cannot_hold() -> None:
    value = {
        "bytes": b"\x00\x01\xff",
        "big": 123456789012345678901234567890,
        "negative_big": -(2**60),
        "when": datetime(2026, 11, 24, 1, 2, 3, tzinfo=timezone.utc),
        "day": date(2026, 11, 24),
        "set": {3, 1, 2},
        "int_keys": {1: "a", 2: "b"},
        "tagged_lookalike": {"__codemode__": "bytes", "base64": "AA=="},
        "plain": [1, 2.5, "s", None, True],
    }
    back = codec.loads(codec.dumps(value))
    assert back == value
    assert isinstance(back["bytes"], bytes)


def test_tuples_become_lists_and_non_finite_floats_survive() -> None:
    back = codec.loads(codec.dumps({"t": (1, 2), "nan": math.nan, "inf": math.inf}))
    assert back["t"] == [1, 2]
    assert math.isnan(back["nan"]) and back["inf"] == math.inf


def test_none_is_null_and_missing_is_none() -> None:
    assert codec.dumps(None) == "null"
    assert codec.loads(None) is None


def test_cycles_are_refused_with_a_model_actionable_message() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(DurableValueError, match="could not be recorded durably"):
        codec.to_stored("The result of x.y", cyclic)


def test_arbitrary_objects_are_refused() -> None:
    with pytest.raises(DurableValueError, match="object is not a JSON-compatible value"):
        codec.to_stored("Arguments to x.y", {"o": object()})


def test_dataclasses_and_models_become_plain_data() -> None:
    @dataclass
    class Point:
        x: int
        y: int

    assert codec.roundtrip(Point(1, 2)) == {"x": 1, "y": 2}


def test_size_limit_is_on_utf8_bytes() -> None:
    text = "é" * 600_000  # 600k characters, 1.2 MB of UTF-8
    with pytest.raises(DurableValueError, match="too large to record durably"):
        codec.to_stored("The result of x.y", text)


def test_canonical_encoding_ignores_key_order() -> None:
    assert codec.canonical({"b": 1, "a": {"d": 2, "c": 3}}) == codec.canonical({"a": {"c": 3, "d": 2}, "b": 1})
    assert json.loads(codec.canonical({"b": 1, "a": 2})) == {"a": 2, "b": 1}


def test_schema_view_shows_json_schema_plain_json() -> None:
    when = datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
    view = codec.schema_view({"data": b"\x00\x01", "when": when, "day": date(2026, 11, 24), "n": 2**60, "s": {3}})
    assert view == {"data": "AAE=", "when": when.isoformat(), "day": "2026-11-24", "n": 2**60, "s": [3]}
    assert codec.schema_view({"__codemode__": "x"}) == {"__codemode__": "x"}  # a user dict with the tag key
