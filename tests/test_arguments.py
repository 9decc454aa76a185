"""The quick acceptance test of a call's arguments never accepts what the full JSON Schema validator refuses,
and accepts the common valid call, so that call skips the validator."""

from __future__ import annotations

import asyncio
import itertools
import math
from typing import Any, Literal

import jsonschema
import pytest

import codemode
from codemode.runtime.arguments import quick_check


class Tools(codemode.Connector):
    name = "tools"

    @codemode.tool
    def noop(self) -> None:
        """Nothing."""

    @codemode.tool
    def create(
        self,
        title: str,
        count: int = 1,
        note: str | None = None,
        ratio: float = 1.0,
        flag: bool = False,
        color: Literal["red", "green"] = "red",
        tags: list[str] | None = None,
    ) -> None:
        """Many kinds of parameter."""


def tool_schemas() -> list[dict[str, Any]]:
    description = asyncio.run(Tools().describe())
    return [dict(spec.input_schema) for spec in description.tools.values()]


HANDWRITTEN: list[dict[str, Any]] = [
    {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
    {"type": "object", "properties": {"a": {"type": ["string", "null"]}}, "additionalProperties": False},
    {"type": "object", "properties": {"a": {"enum": ["x", "y"]}}, "required": ["a"], "additionalProperties": False},
    {"type": "object", "properties": {"a": {"type": "string", "enum": ["x"]}, "b": {"type": "number"}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "string", "enum": ["x"]}, {"type": "null"}]}}},
    {"type": "object", "properties": {"a": {"anyOf": [{"type": "integer"}, {"type": "string"}]}}, "required": ["b"]},
    {"type": "object", "properties": {"a": {}, "b": {"title": "B", "format": "date-time", "type": "string"}}},
    {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "properties": {"a": {"type": "boolean"}}},
    {"$schema": "http://json-schema.org/draft-04/schema#", "type": "object", "properties": {"a": {"type": "integer"}}},
    {"type": "object", "properties": {"a": {"type": "integer", "enum": ["1"]}}},
    {"type": "object", "properties": {"a": {"type": "array"}, "b": {"type": "object"}}},
    {"type": "object"},
    {"properties": {"a": {"type": "null"}}, "additionalProperties": False},
]

VALUES: list[Any] = [
    "x",
    "y",
    "",
    "\ud800",
    0,
    1,
    -(2**53),
    2**53 + 1,
    True,
    False,
    1.0,
    1.5,
    math.nan,
    math.inf,
    None,
    [],
    ["x"],
    {},
    {"k": 1},
    b"x",
]


@pytest.mark.parametrize("schema", tool_schemas() + HANDWRITTEN)
def test_never_accepts_what_the_validator_refuses(schema: dict[str, Any]) -> None:
    quick = quick_check(schema)
    assert quick is not None, schema
    validator = jsonschema.validators.validator_for(schema)(schema)
    names = ["a", "b", *schema.get("properties", {}), "zzz"]
    cases: list[Any] = [{}, [], None, "a"]
    for name in dict.fromkeys(names):
        cases += [{name: value} for value in VALUES]
    for first, second in itertools.combinations(dict.fromkeys(names), 2):
        cases += [{first: "x", second: value} for value in VALUES]
    accepted = 0
    for args in cases:
        if quick(args):
            accepted += 1
            assert not list(validator.iter_errors(args)), (schema, args)
    assert accepted, f"the quick test accepted nothing for {schema}"


def test_accepts_the_common_valid_call() -> None:
    noop, create = (quick_check(schema) for schema in tool_schemas())
    assert noop is not None and create is not None
    assert noop({})
    assert create({"title": "x"})
    assert create({"title": "x", "count": 2, "note": None, "ratio": 2, "flag": True, "color": "green"})
    assert not create({"count": 2})  # missing title: the validator explains
    assert not create({"title": "x", "colour": "red"})  # unknown name: the validator suggests "color"
    assert not create({"title": "x", "color": "blue"})
    assert not create({"title": "x", "tags": ["a"]})  # nested: left to the validator, which accepts it


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "integer"}}, "patternProperties": {"^x": {}}},
        {"type": "object", "$defs": {}, "properties": {}},
        {"type": "object", "additionalProperties": {"type": "string"}},
        {"type": "object", "minProperties": 1},
        {"$schema": "http://json-schema.org/draft-03/schema#", "type": "object"},
        {"type": "array"},
        True,
    ],
)
def test_a_schema_it_cannot_model_gets_no_quick_test(schema: Any) -> None:
    assert quick_check(schema) is None


@pytest.mark.parametrize(
    "subschema",
    [
        {"type": "string", "minLength": 2},
        {"$ref": "#/$defs/A"},
        {"enum": [1, 2]},
        {"anyOf": [{"type": "string"}], "maxLength": 3},
        {"type": "array", "items": {"type": "string"}},
        {"not": {}},
        False,
        True,
    ],
)
def test_a_parameter_it_cannot_model_is_left_to_the_validator(subschema: Any) -> None:
    quick = quick_check({"type": "object", "properties": {"a": subschema, "b": {"type": "string"}}})
    assert quick is not None
    assert quick({"b": "x"})  # the parameter left out constrains nothing
    assert not any(quick({"a": value, "b": "x"}) for value in VALUES)


def test_the_runtime_still_explains_bad_arguments(tmp_path: Any) -> None:
    """The quick test only ever skips the validator: a bad call still gets the validator's message."""

    async def main() -> None:
        store = codemode.SqliteStore(tmp_path / "db.sqlite")
        async with codemode.Runtime([Tools()], store=store) as runtime:
            good = await runtime.execute('return await tools.create(title="x", count=2, color="green")')
            assert good.status == "completed", good.error
            bad = await runtime.execute(
                'try:\n    await tools.create(title="x", colour="red")\nexcept TypeError as e:\n    return str(e)'
            )
            assert bad.status == "completed"
            assert 'unknown argument "colour" (did you mean "color"?)' in bad.result
            assert [c.method for c in bad.calls] == []  # refused before it took a seq: nothing logged

    asyncio.run(main())
