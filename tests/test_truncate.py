"""truncate_response / truncate_result: spec §9.12, adapted to shape-preserving truncation."""

from __future__ import annotations

import json
import random
from datetime import datetime, timezone
from typing import Any

from codemode.truncate import truncate_response, truncate_result

MARKER = "--- TRUNCATED ---"


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def contains_marker(value: Any) -> bool:
    text = pretty(value)
    return "[codemode:" in text or "…[+" in text


# ---------------------------------------------------------------------------
# truncate_response
# ---------------------------------------------------------------------------


def test_short_text_is_unchanged() -> None:
    assert truncate_response("hello") == "hello"
    exact = "x" * 24_000  # default budget: 6000 tokens * 4 chars
    assert truncate_response(exact) is exact


def test_max_chars_keeps_a_prefix_and_adds_the_footer() -> None:
    text = "abcdefghijklmnopqrstuvwxyz" * 10
    out = truncate_response(text, max_chars=10)
    assert out.startswith("abcdefghij\n\n" + MARKER)
    assert len(out) < len(text) + 200
    assert out == (
        "abcdefghij\n\n--- TRUNCATED ---\n"
        "Response was ~65 tokens (limit: 6,000). Narrow the request to reduce response size."
    )


def test_max_tokens_means_four_chars_a_token() -> None:
    out = truncate_response("0123456789abcdef", max_tokens=2)
    assert out.startswith("01234567\n\n" + MARKER)
    assert "(limit: 2)" in out


def test_footer_uses_thousands_separators() -> None:
    out = truncate_response("y" * 50_001, max_tokens=1000)
    assert "Response was ~12,501 tokens (limit: 1,000)." in out
    assert out.startswith("y" * 4000 + "\n\n")


# ---------------------------------------------------------------------------
# truncate_result
# ---------------------------------------------------------------------------


def test_strings_go_through_truncate_response() -> None:
    assert truncate_result("z" * 100, max_chars=10).startswith("z" * 10 + "\n\n" + MARKER)
    assert truncate_result("short") == "short"


def test_small_values_come_back_as_the_same_object() -> None:
    for value in ({"a": 1, "b": [1, 2, 3]}, [1, "two", None], (1, 2), 42, 3.5, True):
        assert truncate_result(value) is value
    when = {"at": datetime(2026, 1, 1, tzinfo=timezone.utc)}  # not plain JSON, measured by its text
    assert truncate_result(when) is when


def test_none_stays_none() -> None:
    assert truncate_result(None) is None
    assert truncate_result(None, max_chars=1) is None


def test_cyclic_and_unserializable_values_are_returned_as_is() -> None:
    cyclic: dict[str, Any] = {"name": "loop"}
    cyclic["self"] = cyclic
    assert truncate_result(cyclic, max_chars=5) is cyclic
    tuple_keys = {(1, 2): "x" * 100}
    assert truncate_result(tuple_keys, max_chars=5) is tuple_keys


def test_oversized_object_keeps_its_shape_and_fits() -> None:
    items = [{"id": i, "title": f"Issue {i}", "body": "lorem ipsum " * 300} for i in range(200)]
    value: dict[str, Any] = {"items": items, "total": 200}
    out = truncate_result(value, max_chars=5000)
    assert isinstance(out, dict) and out is not value
    assert len(pretty(out)) <= 5000
    assert contains_marker(out)
    assert out["total"] == 200
    assert out["items"][0]["id"] == 0 and out["items"][0]["title"] == "Issue 0"
    assert out["items"][-1].startswith("[codemode: ") and out["items"][-1].endswith(" more items omitted]")
    assert "…[+" in out["items"][0]["body"]
    # The input is untouched.
    assert len(items) == 200 and items[0]["body"] == "lorem ipsum " * 300


def test_one_huge_string_is_clipped_in_place() -> None:
    value = {"path": "README.md", "content": "x" * 100_000}
    out = truncate_result(value, max_chars=2000)
    assert out["path"] == "README.md"
    assert out["content"].startswith("x" * 1000)
    assert out["content"].endswith(" chars]")
    assert 1800 < len(pretty(out)) <= 2000  # uses the budget rather than jumping a level


def test_long_list_keeps_as_many_items_as_fit() -> None:
    out = truncate_result(list(range(10_000)), max_chars=1000)
    assert isinstance(out, list)
    assert out[:3] == [0, 1, 2]
    assert out[-1] == f"[codemode: {10_000 - (len(out) - 1)} more items omitted]"
    assert 900 < len(pretty(out)) <= 1000


def test_many_keys_are_cut_with_a_marker_key() -> None:
    value = {f"key_{i:04d}": i for i in range(2000)}
    out = truncate_result(value, max_chars=800)
    assert len(pretty(out)) <= 800
    assert out["key_0000"] == 0
    assert out["…"].startswith("[codemode: ") and out["…"].endswith(" more keys omitted]")


def test_deep_nesting_is_summarized() -> None:
    deep: Any = "leaf"
    for i in range(60):
        deep = {"level": i, "child": deep, "siblings": [[["x" * 10] * 3] * 3] * 3}
    out = truncate_result(deep, max_chars=1500)
    assert len(pretty(out)) <= 1500
    assert "[codemode: object with" in pretty(out) or "[codemode: list of" in pretty(out)


def test_tuples_and_non_json_leaves_become_plain_json_when_cut() -> None:
    value = {"rows": tuple((i, datetime(2026, 1, 1, tzinfo=timezone.utc)) for i in range(500)), 7: "int key"}
    out = truncate_result(value, max_chars=1200)
    assert isinstance(out["rows"], list) and isinstance(out["rows"][0], list)
    assert out["rows"][0][1] == "2026-01-01 00:00:00+00:00"
    assert out["7"] == "int key"
    assert len(pretty(out)) <= 1200


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.random()
    if depth >= 5 or kind < 0.35:
        leaf = rng.random()
        if leaf < 0.4:
            return "".join(rng.choice('abcdé ✓\n"\\') for _ in range(int(rng.expovariate(1 / 40))))
        if leaf < 0.6:
            return rng.randint(-(10**12), 10**12)
        if leaf < 0.75:
            return rng.random() * 1e6
        return rng.choice([True, False, None])
    if kind < 0.7:
        return [_random_value(rng, depth + 1) for _ in range(int(rng.expovariate(1 / 4)))]
    keys = ["k" * rng.randint(1, 30) + str(i) for i in range(int(rng.expovariate(1 / 3)))]
    return {k: _random_value(rng, depth + 1) for k in keys}


def test_property_output_is_json_and_within_budget() -> None:
    rng = random.Random(20260101)
    cut = 0
    for _ in range(400):
        value = _random_value(rng)
        budget = rng.choice([200, 500, 1000, 3000, 10_000])
        out = truncate_result(value, max_chars=budget)
        text = json.dumps(out, indent=2, ensure_ascii=False)
        if out is value:
            assert len(text) <= budget or isinstance(value, str)
            continue
        if isinstance(value, str):
            continue
        cut += 1
        assert len(text) <= budget, (budget, len(text))
        assert type(out) is type(value) or isinstance(value, tuple)
        assert contains_marker(out)
        assert json.loads(text) == out
    assert cut > 50  # the generator does produce oversized values


def test_property_big_values_via_max_tokens() -> None:
    rng = random.Random(7)
    for _ in range(8):
        value = [_random_value(rng) for _ in range(200)]
        out = truncate_result(value, max_tokens=500)
        text = json.dumps(out, indent=2, ensure_ascii=False)
        assert len(text) <= 2000
