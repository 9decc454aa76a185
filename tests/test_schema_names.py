"""`sanitize_identifier` and `to_pascal_case`: spec §9.8, adjusted for the Python deviations."""

from __future__ import annotations

import keyword
import random

import pytest

from codemode.schema.base import pointer_parts, ref_name, resolve_pointer
from codemode.schema.names import RESERVED_WORDS, sanitize_identifier, to_pascal_case


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get-weather", "get_weather"),
        ("api.v2.search", "api_v2_search"),
        ("get weather\tnow\n", "get_weather_now_"),
        ("3drender", "_3drender"),
        ("class", "class_"),
        ("return", "return_"),
        ("delete", "delete_"),
        ("hello@world!", "helloworld"),
        ("", "_"),
        ("@#!", "_"),
        ("getWeather", "getWeather"),
        ("_private", "_private"),
        ("get_/users/{id}", "get_usersid"),
    ],
)
def test_spec_cases(name: str, expected: str) -> None:
    assert sanitize_identifier(name) == expected


@pytest.mark.parametrize(("name", "expected"), [("@#$", "_"), ("$jquery", "jquery"), ("a$b", "ab")])
def test_dollar_is_deleted_because_python_rejects_it(name: str, expected: str) -> None:
    assert sanitize_identifier(name) == expected


@pytest.mark.parametrize("word", ["None", "True", "False", "def", "lambda", "pass", "not", "and", "is", "elif"])
def test_python_keywords_get_a_suffix(word: str) -> None:
    assert sanitize_identifier(word) == word + "_"


def test_reserved_set_covers_both_languages() -> None:
    assert set(keyword.kwlist) <= RESERVED_WORDS
    assert {"typeof", "undefined", "null", "true", "function", "__debug__"} <= RESERVED_WORDS
    # Soft keywords are ordinary names in Python and not reserved in JavaScript.
    assert sanitize_identifier("match") == "match"
    assert sanitize_identifier("type") == "type"


def test_suffix_only_applies_to_whole_words() -> None:
    assert sanitize_identifier("classify") == "classify"
    assert sanitize_identifier("3class") == "_3class"
    assert sanitize_identifier("my-class") == "my_class"


def test_non_ascii_letters_are_dropped() -> None:
    assert sanitize_identifier("café-crème") == "caf_crme"
    assert sanitize_identifier("日本") == "_"


def test_result_is_always_an_identifier_in_both_languages() -> None:
    rng = random.Random(1234)
    alphabet = "aZ09_-. $@#!é\t\n/{}" + "".join(RESERVED_WORDS)
    for _ in range(2000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if rng.random() < 0.2:
            name = rng.choice(sorted(RESERVED_WORDS))
        out = sanitize_identifier(name)
        assert out.isidentifier() and out.isascii(), (name, out)
        assert not keyword.iskeyword(out) and out not in RESERVED_WORDS, (name, out)
        assert sanitize_identifier(out) == out, (name, out)  # idempotent


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_item", "GetItem"),
        ("tool1", "Tool1"),
        ("_3drender", "_3drender"),
        ("simple_user", "SimpleUser"),
        ("getUser", "GetUser"),
        ("a_b_c", "ABC"),
        ("", ""),
    ],
)
def test_pascal_case(name: str, expected: str) -> None:
    assert to_pascal_case(name) == expected


def test_pointer_tokens_decode_percent_escapes_before_splitting() -> None:
    root = {"components": {"schemas": {"a~b": {"type": "string"}, "a": {"b": {"type": "integer"}}}}}
    assert pointer_parts("#/components/schemas/a~0b") == ["components", "schemas", "a~b"]
    assert pointer_parts("#/components/schemas/a%2Fb") == ["components", "schemas", "a", "b"]  # RFC 6901 §6
    assert resolve_pointer(root, "#/components/schemas/a%2Fb") == {"type": "integer"}
    assert ref_name("#/components/schemas/a~0b") == "a~b"
    assert ref_name("#/components/schemas/a%2Fb") is None  # it names schemas/a/b, not a component
    assert pointer_parts("other.json#/x") is None
