"""Python declarations: golden outputs that pin the format, and properties that must hold for any schema."""

from __future__ import annotations

import ast
import typing
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from codemode.connectors.spec import ToolSpec
from codemode.schema.base import COMPACT_THRESHOLD, DESCRIBE_BUDGET, DeclarationRenderer
from codemode.schema.python import PythonDeclarations

from catalog import openapi_tools, spec

RENDER = PythonDeclarations()
FALLBACK_MARK = "could not be rendered"
TYPING_NAMES = {"Any", "Literal", "Never", "NotRequired", "TypedDict"}
KNOWN_NAMES = TYPING_NAMES | {"str", "int", "float", "bool", "list", "dict", "tuple", "bytes"}


def _annotation_refs(node: ast.expr) -> Iterator[tuple[str, bool]]:
    """The names an annotation uses, each with whether it is a quoted forward reference."""
    if isinstance(node, ast.Name):
        yield node.id, False
    elif isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            yield node.value, True
        else:
            assert node.value is None, ast.dump(node)
    elif isinstance(node, ast.Subscript):
        if isinstance(node.value, ast.Name) and node.value.id == "Literal":
            values = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            for value in values:
                ast.literal_eval(value)  # Literal holds values only
            return
        yield from _annotation_refs(node.value)
        yield from _annotation_refs(node.slice)
    elif isinstance(node, ast.BinOp):
        assert isinstance(node.op, ast.BitOr)
        yield from _annotation_refs(node.left)
        yield from _annotation_refs(node.right)
    elif isinstance(node, ast.Tuple):
        for elt in node.elts:
            yield from _annotation_refs(elt)
    else:
        raise AssertionError(f"unexpected annotation {ast.dump(node)}")


def check(src: str) -> ast.Module:
    """Parse a block and check it is self-consistent: every type it names is defined, once, before use."""
    tree = ast.parse(src)
    defined: list[str] = []
    forward: set[str] = set()

    def uses(annotation: ast.expr | None) -> None:
        if annotation is None:
            return
        for name, is_forward in _annotation_refs(annotation):
            if is_forward:
                forward.add(name)
            else:
                assert name in KNOWN_NAMES or name in defined, f"{name} used before it is defined"

    *types, connector = tree.body
    for node in types:
        if isinstance(node, ast.ClassDef):
            assert [b.id for b in node.bases if isinstance(b, ast.Name)] == ["TypedDict"]
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign):
                    uses(stmt.annotation)
                else:
                    assert isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)  # docstrings
            name = node.name
        elif isinstance(node, ast.Assign) and not isinstance(node.value, ast.Call):  # a long enum, or left out
            assert isinstance(node.targets[0], ast.Name)
            uses(node.value)
            name = node.targets[0].id
        else:
            assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
            target, call = node.targets[0], node.value
            assert isinstance(target, ast.Name) and isinstance(call.func, ast.Name) and call.func.id == "TypedDict"
            assert ast.literal_eval(call.args[0]) == target.id
            assert isinstance(call.args[1], ast.Dict)
            for key, value in zip(call.args[1].keys, call.args[1].values, strict=True):
                assert key is not None and isinstance(ast.literal_eval(key), str)
                uses(value)
            name = target.id
        assert name not in defined, f"{name} defined twice"
        defined.append(name)
    assert isinstance(connector, ast.ClassDef) and not connector.bases
    for method in connector.body:
        if isinstance(method, ast.Expr):  # the `...` of an empty connector
            continue
        assert isinstance(method, ast.AsyncFunctionDef)
        args = method.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            uses(arg.annotation if arg else None)
        flags = [d is None for d in args.kw_defaults]
        assert flags == sorted(flags, reverse=True), "required parameters come first"
        for default in args.kw_defaults:
            if default is not None and not (isinstance(default, ast.Constant) and default.value is Ellipsis):
                ast.literal_eval(default)
        uses(method.returns)
    assert forward <= set(defined), forward - set(defined)
    return tree


def render(input_schema: Any = None, output_schema: Any = None, name: str = "tool", **kw: Any) -> str:
    out = RENDER.method("conn", name, spec(input_schema, output_schema, **kw))
    check(out)
    return out


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


def signature(src: str, method: str = "tool") -> str:
    """The `async def` line of one method exactly as rendered, a wrapped one joined into one line."""
    lines = [line.strip() for line in src.splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith(f"async def {method}("))
    if lines[start].endswith(":"):
        return lines[start]
    params: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith(")"):
            return lines[start] + ", ".join(params) + line
        params.append(line.rstrip(","))
    raise AssertionError("unterminated signature")


def field_types(src: str, typed_dict: str) -> dict[str, str]:
    """A TypedDict's field annotations exactly as rendered, for both syntaxes."""
    for node in ast.parse(src).body:
        if isinstance(node, ast.ClassDef) and node.name == typed_dict:
            return {
                s.target.id: ast.get_source_segment(src, s.annotation) or ""
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == typed_dict:
            assert isinstance(node.value, ast.Call) and isinstance(node.value.args[1], ast.Dict)
            fields = node.value.args[1]
            return {
                ast.literal_eval(k): ast.get_source_segment(src, v) or ""
                for k, v in zip(fields.keys, fields.values, strict=True)
                if k is not None
            }
    raise AssertionError(f"no TypedDict {typed_dict}")


# ---------------------------------------------------------------------------
# Golden outputs
# ---------------------------------------------------------------------------

ITEM = {
    "type": "object",
    "description": "A stored item.",
    "properties": {
        "id": {"type": "integer"},
        "title": {"type": "string", "description": "Short title."},
        "created": {"type": "string", "format": "date-time"},
        "tags": {"type": "array", "items": {"type": "string"}, "default": []},
    },
    "required": ["id", "title", "created"],
}

GOLDEN_ITEM = '''class Item(TypedDict):
    """A stored item."""
    id: int
    title: str
    """Short title."""
    created: str
    """(format: date-time)"""
    tags: NotRequired[list[str]]
    """(default: [])"""'''


def test_golden_method_with_approval_defaults_and_output_type() -> None:
    tool = spec(
        {
            "type": "object",
            "properties": {
                "title": {"type": "string", "description": "The title."},
                "priority": {"enum": ["low", "high"], "default": "low", "description": "How urgent."},
                "due": {"type": ["string", "null"], "format": "date"},
            },
            "required": ["title"],
        },
        {"$ref": "#/$defs/Item", "$defs": {"Item": ITEM}},
        description="Create an item.",
        requires_approval=True,
    )
    expected = (
        GOLDEN_ITEM
        + '''

class items:
    async def create_item(
        *,
        title: str,
        priority: Literal["low", "high"] = "low",
        due: str | None = ...,
    ) -> Item:
        """Create an item.

        Requires approval: the run pauses until a human approves this call.

        Args:
            title: The title.
            priority: How urgent.
            due: (format: date)
        """'''
    )
    assert RENDER.method("items", "create_item", tool) == expected


def test_golden_keys_that_are_not_identifiers_use_the_functional_syntax_and_one_dict() -> None:
    tool = spec(
        {
            "type": "object",
            "properties": {
                "class": {"type": "string", "description": "CSS class."},
                "x-y": obj(("from",), **{"from": {"type": "integer"}}),
            },
            "required": ["class"],
        },
        description="Tag things.\n\nSecond paragraph\n  indented.",
    )
    expected = '''TagXY = TypedDict(
    "TagXY",
    {
        "from": int,
    },
)

TagInput = TypedDict(
    "TagInput",
    {
        # CSS class.
        "class": str,
        "x-y": NotRequired[TagXY],
    },
)

class items:
    async def tag(args: TagInput, /) -> Any:
        """Tag things.

        Second paragraph
          indented.

        Takes one dict (positional), because some of its keys are not valid Python parameter names.
        """'''
    assert RENDER.method("items", "tag", tool) == expected


def test_golden_connector_shares_identical_types_across_tools() -> None:
    tools = {
        "get": spec(obj(("id",), id={"type": "integer"}), {"$ref": "#/$defs/Item", "$defs": {"Item": ITEM}}, "Get."),
        # Its own copy of the same definition, as pydantic emits per tool: rendered once.
        "all": spec(None, {"type": "array", "items": {"$ref": "#/$defs/Item"}, "$defs": {"Item": dict(ITEM)}}, "All."),
        "bulk": spec({"type": "array", "items": {"type": "integer"}}),
    }
    expected = (
        GOLDEN_ITEM
        + '''

class items:
    async def get(*, id: int) -> Item:
        """Get."""

    async def all() -> list[Item]:
        """All."""

    async def bulk(args: list[int], /) -> Any:
        ...'''
    )
    assert RENDER.connector("items", tools) == expected


NODE = obj(("name",), name={"type": "string"}, children={"type": "array", "items": {"$ref": "#/$defs/Node"}})


def test_golden_empty_connector_and_recursive_type() -> None:
    assert RENDER.connector("items", {}) == "class items:\n    ..."
    tool = spec({**obj(("root",), root={"$ref": "#/$defs/Node"}), "$defs": {"Node": NODE}}, description="Walk.")
    assert (
        RENDER.method("fs", "walk", tool)
        == '''class Node(TypedDict):
    name: str
    children: NotRequired[list["Node"]]

class fs:
    async def walk(*, root: Node) -> Any:
        """Walk."""'''
    )


def test_renderer_satisfies_the_protocol() -> None:
    renderer: DeclarationRenderer = PythonDeclarations()
    assert renderer.language == "python"


# ---------------------------------------------------------------------------
# Types
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "str"),
        ({"type": "integer"}, "int"),
        ({"type": "number"}, "float"),
        ({"type": "boolean"}, "bool"),
        ({"type": "null"}, "None"),
        (True, "Any"),
        (False, "Never"),
        ({}, "Any"),
        ({"type": "object"}, "dict[str, Any]"),
        ({"type": "object", "additionalProperties": {"type": "string"}}, "dict[str, str]"),
        ({"additionalProperties": True}, "dict[str, Any]"),
        ({"type": "object", "additionalProperties": False}, "dict[str, Never]"),
        ({"type": "array"}, "list[Any]"),
        ({"type": "array", "items": {"type": "number"}}, "list[float]"),
        ({"type": "array", "items": [{"type": "string"}, {"type": "integer"}]}, "tuple[str, int]"),
        ({"prefixItems": [{"type": "string"}, {"type": "integer"}, {"type": "boolean"}]}, "tuple[str, int, bool]"),
        ({"type": "array", "prefixItems": []}, "tuple[()]"),
        ({"anyOf": [{"type": "string"}, {"type": "number"}]}, "str | float"),
        ({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}, "str | float | bool"),
        ({"anyOf": [{"type": "null"}, {"type": "string"}]}, "str | None"),
        ({"anyOf": [{"type": "string"}, {}]}, "Any"),
        ({"type": ["string", "null"]}, "str | None"),
        ({"type": "string", "nullable": True}, "str | None"),
        ({"type": "string", "x-nullable": True}, "str | None"),
        ({"enum": ["a", "b"], "nullable": True}, 'Literal["a", "b"] | None'),
        ({"enum": []}, "Never"),
        ({"enum": ["a", None, "b"]}, 'Literal["a", "b"] | None'),
        ({"enum": [1, True, 2.5]}, "Literal[1, True, 2.5]"),
        ({"enum": [{"a": 1}, [1, 2], "x"]}, 'dict[str, Any] | list[Any] | Literal["x"]'),
        ({"const": "fixed"}, 'Literal["fixed"]'),
        ({"const": None}, "None"),
        ({"oneOf": [{"const": "a"}, {"const": "b"}, {"type": "integer"}]}, 'Literal["a", "b"] | int'),
        ({"type": "string", "format": "binary"}, "bytes"),
        ({"type": "frobnicate"}, "Any"),
        ({"$ref": "https://example.com/schema.json"}, "Any"),
        ({"$ref": "#/$defs/Missing"}, "Any"),
        ({"allOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "str"),
        ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "str | int"),
        ({"allOf": [{"$ref": "#/$defs/S"}], "nullable": True, "$defs": {"S": {"type": "string"}}}, "str | None"),
        ({"type": "object", "properties": {}, "additionalProperties": {"type": "integer"}}, "dict[str, int]"),
    ],
)
def test_type_of_a_property(schema: Any, expected: str) -> None:
    # `$defs` live at the root, so the schema under test is both the property and (for refs) the root.
    root = {**obj(("v",), v=schema)}
    if isinstance(schema, dict) and "$defs" in schema:
        root["$defs"] = schema["$defs"]
        root["properties"]["v"] = {k: v for k, v in schema.items() if k != "$defs"}
    assert signature(render(root)) == f"async def tool(*, v: {expected}) -> Any:"


def test_output_types() -> None:
    assert signature(render(output_schema={"type": "array", "items": {"type": "string"}})) == (
        "async def tool() -> list[str]:"
    )
    out = render(output_schema=obj(("ok",), ok={"type": "boolean"}), name="get_user")
    assert signature(out, "get_user") == "async def get_user() -> GetUserOutput:"
    assert field_types(out, "GetUserOutput") == {"ok": "bool"}


def test_refs_resolve_against_every_usual_container_and_escape() -> None:
    root = {
        **obj(
            ("a", "b", "c", "d", "e", "f"),
            a={"$ref": "#/$defs/A"},
            b={"$ref": "#/definitions/B"},
            c={"$ref": "#/components/schemas/C"},
            d={"$ref": "#/$defs/with~1slash~0tilde"},
            e={"$ref": "#/$defs/sp%20ace"},
            f={"$ref": "#/$defs/Chain"},
        ),
        "$defs": {
            "A": {"type": "string"},
            "with/slash~tilde": {"type": "integer"},
            "sp ace": {"type": "boolean"},
            "Chain": {"$ref": "#/$defs/Chain2"},
            "Chain2": {"$ref": "#/definitions/B"},
        },
        "definitions": {"B": {"type": "number"}},
        "components": {"schemas": {"C": obj(("x",), x={"type": "string"})}},
    }
    assert signature(render(root)) == "async def tool(*, a: str, b: float, c: C, d: int, e: bool, f: float) -> Any:"


def test_typed_dicts_are_named_by_title_then_ref_then_path() -> None:
    root = {
        **obj(
            ("by_title", "by_ref", "by_path"),
            by_title=obj(("x",), x={"type": "string"}) | {"title": "simple user"},
            by_ref={"$ref": "#/components/schemas/issue-comment"},
            by_path={"type": "array", "items": obj(("y",), y={"type": "string"})},
        ),
        "components": {"schemas": {"issue-comment": obj(("body",), body={"type": "string"})}},
    }
    out = render(root, name="create_item")
    assert signature(out, "create_item") == (
        "async def create_item(*, by_title: SimpleUser, by_ref: IssueComment, by_path: list[CreateItemByPath]) -> Any:"
    )


def test_name_collisions_are_numbered_and_never_shadow_typing_names() -> None:
    root = obj(
        ("a", "b", "c", "d"),
        a=obj(("x",), x={"type": "string"}) | {"title": "Item"},
        b=obj(("y",), y={"type": "string"}) | {"title": "Item"},
        c=obj(("z",), z={"type": "string"}) | {"title": "Any"},
        d=obj(("w",), w={"type": "string"}) | {"title": "None"},
    )
    out = render(root)
    assert signature(out) == "async def tool(*, a: Item, b: Item2, c: Any2, d: None_) -> Any:"
    assert field_types(out, "Item2") == {"y": "str"}


def test_type_names_never_shadow_builtins_typing_names_or_methods() -> None:
    """A TypedDict named `Exception` would shadow the builtin; one named like a method would be shadowed by the
    method inside the class body, for the methods after it."""
    titled = {name: obj(("x",), x={"type": "string"}) | {"title": name} for name in ("Exception", "Optional", "Event")}
    tools = {
        "Event": spec(obj(("e",), e=titled["Event"])),
        "other": spec(obj(("a", "b"), **titled) | {"required": ["Exception", "Optional"]}),
    }
    out = RENDER.connector("conn", tools)
    check(out)
    assert signature(out, "Event") == "async def Event(*, e: Event2) -> Any:"
    assert (
        signature(out, "other")
        == "async def other(*, Exception: Exception2, Optional: Optional2, Event: Event2 = ...) -> Any:"
    )
    assert "class Event(" not in out and "class Exception(" not in out and "class Optional(" not in out
    method = RENDER.method("conn", "Event", tools["Event"])
    assert "class Event2(TypedDict):" in method and RENDER.named_type("conn", "Event", tools["Event"], ["Event2"])


def test_allof_objects_are_merged() -> None:
    root = {
        **obj(("pet",), pet={"allOf": [{"$ref": "#/$defs/Base"}, obj(("age",), age={"type": "integer"})]}),
        "$defs": {"Base": obj(("name",), name={"type": "string"}, tag={"type": "string"})},
    }
    out = render(root, name="add")
    assert signature(out, "add") == "async def add(*, pet: AddPet) -> Any:"
    assert field_types(out, "AddPet") == {"name": "str", "tag": "NotRequired[str]", "age": "int"}


def test_allof_at_the_input_root_still_gives_keyword_parameters() -> None:
    root = {"allOf": [obj(("a",), a={"type": "string"}), obj((), b={"type": "integer"})]}
    assert signature(render(root)) == "async def tool(*, a: str, b: int = ...) -> Any:"


def test_constraint_only_alternatives_do_not_hide_the_object() -> None:
    root = obj((), a={"type": "string"}, b={"type": "string"}) | {"anyOf": [{"required": ["a"]}, {"required": ["b"]}]}
    assert signature(render(root)) == "async def tool(*, a: str = ..., b: str = ...) -> Any:"


def test_input_shapes_other_than_an_object_with_properties() -> None:
    assert signature(render({"type": "object", "properties": {}})) == "async def tool() -> Any:"
    assert signature(render({"type": "object"})) == "async def tool(**kwargs: Any) -> Any:"
    extra = {"type": "object", "additionalProperties": {"type": "integer"}}
    assert signature(render(extra)) == "async def tool(**kwargs: int) -> Any:"
    both = obj(("a",), a={"type": "string"}) | {"additionalProperties": {"type": "string"}}
    assert signature(render(both)) == "async def tool(*, a: str, **kwargs: str) -> Any:"
    clash = obj((), kwargs={"type": "string"}) | {"additionalProperties": True}
    assert signature(render(clash)) == "async def tool(*, kwargs: str = ..., **kwargs_: Any) -> Any:"
    union = {"anyOf": [obj(("a",), a={"type": "string"}), {"type": "string"}]}
    out = render(union)
    assert signature(out) == "async def tool(args: ToolInput | str, /) -> Any:"


def test_required_parameters_come_first_and_defaults_are_python_literals() -> None:
    defaults: list[Any] = ['say "hi"\\', 3, 2.5, True, None, ["a", 1], {"k": [False]}]
    props = {f"p{i}": {"default": value} for i, value in enumerate(defaults)}
    root = {"type": "object", "properties": {**props, "last": {"type": "string"}}, "required": ["last"]}
    tree = ast.parse(render(root))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef))
    assert [a.arg for a in fn.args.kwonlyargs] == ["last", *props]
    assert fn.args.kw_defaults[0] is None
    assert [ast.literal_eval(d) for d in fn.args.kw_defaults[1:] if d is not None] == defaults


def test_optional_parameter_without_default_is_shown_as_omittable_not_as_none() -> None:
    assert signature(render(obj((), limit={"type": "integer"}))) == "async def tool(*, limit: int = ...) -> Any:"


def test_keyword_and_unusual_property_names_switch_to_the_dict_form() -> None:
    for key in ["class", "None", "x-y", "", "with space", "café", "__debug__", "__private", "1st"]:
        out = render(obj((key,), **{key: {"type": "string"}}))
        assert signature(out) == "async def tool(args: ToolInput, /) -> Any:", key
        assert field_types(out, "ToolInput") == {key: "str"}
    # Soft keywords and dunder names are fine as parameters.
    out = render(obj(("match", "type", "__init__"), match={}, type={}, __init__={}))
    assert signature(out) == "async def tool(*, match: Any, type: Any, __init__: Any) -> Any:"


def test_enum_strings_are_escaped_python_literals() -> None:
    values = ['say "hi"', "back\\slash", "it's", "new\nline", "tab\t", "\x00nul", "\u2028sep", '"""', "é"]
    out = render(obj(("v",), v={"enum": values}))
    tree = ast.parse(out)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef))
    literal = fn.args.kwonlyargs[0].annotation
    assert isinstance(literal, ast.Subscript) and isinstance(literal.slice, ast.Tuple)
    assert [ast.literal_eval(e) for e in literal.slice.elts] == values


def test_const_and_property_keys_are_escaped() -> None:
    key = 'we"ird\\key\n'
    out = render(obj((key,), **{key: {"const": 'c"o\\n'}}))
    assert field_types(out, "ToolInput") == {key: 'Literal["c\\"o\\\\n"]'}


# ---------------------------------------------------------------------------
# Cycles and depth
# ---------------------------------------------------------------------------


def test_mutual_recursion_uses_forward_references() -> None:
    root = {
        **obj(("a",), a={"$ref": "#/$defs/A"}),
        "$defs": {
            "A": obj((), b={"$ref": "#/$defs/B"}),
            "B": obj((), a={"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}]}),
        },
    }
    out = render(root)
    assert field_types(out, "B") == {"a": 'NotRequired["A" | None]'}
    assert field_types(out, "A") == {"b": "NotRequired[B]"}
    assert out.index("class B(") < out.index("class A(")


def test_cycles_without_a_typed_dict_become_any() -> None:
    loop = {**obj(("v",), v={"$ref": "#/$defs/X"}), "$defs": {"X": {"$ref": "#/$defs/Y"}, "Y": {"$ref": "#/$defs/X"}}}
    assert signature(render(loop)) == "async def tool(*, v: Any) -> Any:"
    to_root = obj((), child={"$ref": "#"}, name={"type": "string"})
    assert signature(render(to_root)) == "async def tool(*, child: Any = ..., name: str = ...) -> Any:"
    union_root = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"$ref": "#"}}]}
    assert signature(render(union_root)) == "async def tool(args: str | list[Any], /) -> Any:"


def test_self_reference_through_the_output_root_is_a_forward_reference() -> None:
    tree = obj(("value",), value={"type": "integer"}, children={"type": "array", "items": {"$ref": "#"}})
    out = render(output_schema=tree, name="tree")
    assert field_types(out, "TreeOutput") == {"value": "int", "children": 'NotRequired[list["TreeOutput"]]'}


def test_identical_recursive_types_are_shared_across_tools() -> None:
    def tool() -> ToolSpec:
        node = obj(("name",), name={"type": "string"}, next={"$ref": "#/$defs/Node"})
        return spec({**obj(("n",), n={"$ref": "#/$defs/Node"}), "$defs": {"Node": node}})

    out = RENDER.connector("c", {"one": tool(), "two": tool()})
    check(out)
    assert out.count("(TypedDict)") == 1
    assert signature(out, "two") == "async def two(*, n: Node) -> Any:"


def test_depth_is_limited() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for i in range(30):
        schema = obj((f"l{i}",), **{f"l{i}": schema})
    out = render(obj(("deep",), deep=schema))
    assert "Any" in out and "str" not in out.split("class conn")[0]
    assert out.count("(TypedDict)") < 30
    shallow = PythonDeclarations(max_depth=2).method("conn", "tool", spec(obj(("deep",), deep=schema)))
    check(shallow)
    assert shallow.count("(TypedDict)") == 2 and "    l28: Any\n" in shallow


# ---------------------------------------------------------------------------
# Descriptions
# ---------------------------------------------------------------------------

NASTY = [
    'ends with a quote"',
    'has """triple""" quotes and """"" more',
    "back\\slash at the end\\",
    "regex ^\\d+$ and C:\\path",
    "nul \x00 bell \x07 cr\r\nlf and \u2028 separator",
    "unicode é 日本 \ud800 lone surrogate",
    '"',
    "\\",
    "",
]


@pytest.mark.parametrize("text", NASTY)
def test_descriptions_always_render_as_valid_python_and_keep_their_text(text: str) -> None:
    root = obj(("a",), a={"type": "string", "description": text}, b=obj((), c={"type": "string"}))
    root["properties"]["b"]["description"] = text
    keyed = obj(("x-y",), **{"x-y": {"type": "string", "description": text}}) | {"description": text}
    out = render(root, output_schema=keyed, description=text, requires_approval=True)
    tree = ast.parse(out)
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.AsyncFunctionDef))
    doc = ast.get_docstring(fn, clean=False)
    assert doc is not None
    expected = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n")).strip()
    if expected:
        assert doc.lstrip().startswith(expected.split("\n")[0])
    typed_dict = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ToolB")
    assert ast.get_docstring(typed_dict) == (expected or None)


def test_tool_description_paragraphs_are_kept_and_property_docs_are_one_line() -> None:
    out = render(
        obj(("a",), a={"type": "string", "description": "First line\n  second line."}, b={"description": 'x\ny\r\nz"'}),
        description="Summary.\n\n    Details\n    here.",
    )
    docstring = '"""Summary.\n\n        Details\n        here.\n\n        Args:\n            a: First line second line.'
    assert docstring in out
    # A quote that ends a multi-line docstring needs no escape: the closing quotes are on their own line.
    assert '            b: x y z"\n        """' in out
    assert render(description='Say "hi"').count('"""Say "hi\\""""') == 1


def test_raw_docstrings_keep_backslashes_readable() -> None:
    out = render(description="Matches ^\\d+$ only.")
    assert 'r"""Matches ^\\d+$ only."""' in out


# ---------------------------------------------------------------------------
# Isolation and evaluation
# ---------------------------------------------------------------------------


class Exploding(Mapping[str, Any]):
    """A schema that fails as soon as it is read."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


def test_a_tool_whose_schema_fails_falls_back_without_breaking_the_block() -> None:
    partial = obj(("done", "bad"), done=obj(("x",), x={"type": "string"}) | {"title": "Partial"}, bad=Exploding())
    tools = {
        "good": spec(obj(("a",), a={"type": "string"}), description="Fine."),
        "bad": spec(partial, description="Broken.", requires_approval=True),
        "bad_keys": spec({"type": "object", "properties": {1: {"type": "string"}}}),
        "after": spec(obj(("p",), p=obj(("x",), x={"type": "string"}) | {"title": "Partial"})),
    }
    out = RENDER.connector("c", tools)
    check(out)
    assert signature(out, "good") == "async def good(*, a: str) -> Any:"
    assert signature(out, "bad") == "async def bad(**kwargs: Any) -> Any:"
    assert signature(out, "bad_keys") == "async def bad_keys(**kwargs: Any) -> Any:"
    # The half-rendered TypedDict of the failed tool was rolled back, so the later tool gets the plain name.
    assert signature(out, "after") == "async def after(*, p: Partial) -> Any:"
    assert out.count("class Partial(") == 1 and "Partial2" not in out
    assert "Broken.\n\n        Requires approval" in out and out.count(FALLBACK_MARK) == 2


def test_rendered_block_evaluates_with_typing_imports() -> None:
    tools = {
        "create_item": spec(
            {**obj(("item",), item={"$ref": "#/$defs/Item"}, mode={"enum": ["a", "b"]}), "$defs": {"Item": ITEM}},
            {"$ref": "#/$defs/Item", "$defs": {"Item": ITEM}},
        ),
        "tag": spec(obj(("x-y",), **{"x-y": {"type": "array", "items": obj((), n={"type": "integer"})}})),
        "walk": spec({**obj(("root",), root={"$ref": "#/$defs/Node"}), "$defs": {"Node": NODE}}),
    }
    out = RENDER.connector("items", tools)
    check(out)
    namespace: dict[str, Any] = {}
    source = "from typing_extensions import Any, Literal, Never, NotRequired, TypedDict\n" + out
    exec(compile(source, "<declarations>", "exec", dont_inherit=True), namespace)  # annotations evaluated eagerly
    hints = typing.get_type_hints(namespace["items"].create_item, namespace)
    assert hints["item"] is namespace["Item"] and hints["return"] is namespace["Item"]
    assert typing.get_type_hints(namespace["Item"], namespace)["id"] is int
    tags = typing.get_type_hints(namespace["TagInput"], namespace)["x-y"]
    assert typing.get_origin(tags) is list and typing.get_args(tags) == (namespace["TagXY"],)
    children = typing.get_type_hints(namespace["Node"], namespace)["children"]  # the forward reference resolves
    assert typing.get_origin(children) is list and typing.get_args(children) == (namespace["Node"],)


# ---------------------------------------------------------------------------
# Real OpenAPI documents
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "step"), [("stripe", 1), ("github", 3)])
def test_real_openapi_connector_blocks_are_valid(name: str, step: int) -> None:
    tools = dict(list(openapi_tools(name).items())[::step])
    out = RENDER.connector(name, tools)  # too many tools for their types: one-line signatures
    tree = check(out)
    methods = [n.name for n in tree.body[-1].body if isinstance(n, ast.AsyncFunctionDef)]  # type: ignore[attr-defined]
    assert 0 < len(methods) < len(tools) and methods == list(tools)[: len(methods)]
    assert len(out) <= DESCRIBE_BUDGET and "(TypedDict)" not in out
    assert out.endswith(
        f'    # ... and {len(tools) - len(methods)} more methods: find one with codemode.search("...").'
    )
    few = dict(list(tools.items())[:4])
    full = RENDER.connector(name, few)  # a few tools: their types too
    tree = check(full)
    methods = [n.name for n in tree.body[-1].body if isinstance(n, ast.AsyncFunctionDef)]  # type: ignore[attr-defined]
    assert methods == list(few) and len(full) <= DESCRIBE_BUDGET
    assert FALLBACK_MARK not in full
    if name == "github":  # header parameters such as `X-GitHub-Api-Version` force the dict form somewhere
        assert "args: " in out


@pytest.mark.parametrize(("name", "step"), [("stripe", 4), ("github", 3)])
def test_real_openapi_methods_are_valid(name: str, step: int) -> None:
    for tool_name, tool in list(openapi_tools(name).items())[::step]:
        out = RENDER.method(name, tool_name, tool)
        check(out)
        assert FALLBACK_MARK not in out, tool_name


# ---------------------------------------------------------------------------
# The size budget
# ---------------------------------------------------------------------------


def chain(n: int) -> dict[str, Any]:
    """`T0` uses `T1` ... uses `T{n-1}`, each with a long description."""
    defs = {f"T{i}": obj(next={"$ref": f"#/$defs/T{i + 1}"}) | {"description": "x" * 300} for i in range(n)}
    defs[f"T{n - 1}"] = obj(last={"type": "string"})
    return {**obj(first={"$ref": "#/$defs/T0"}), "$defs": defs}


def test_types_beyond_the_budget_are_opaque_with_a_note_and_can_be_described() -> None:
    small = PythonDeclarations(budget=1500)
    tool = spec(chain(10), description="Walk.")
    out = small.method("c", "walk", tool)
    check(out)
    assert len(out) <= 1500
    note = '# Not expanded, to keep this short; for more: codemode.describe("c.walk.<TypeName>").'
    assert out.startswith(f"{note}\nT1 = dict[str, Any]\n\nclass T0(TypedDict):\n")
    assert field_types(out, "T0") == {"next": "NotRequired[T1]"}
    deeper = small.named_type("c", "walk", tool, ["T1"])
    assert deeper is not None
    check(deeper + "\n\nclass c:\n    ...")
    assert 'codemode.describe("c.walk.T1.<TypeName>")' in deeper and "\nclass T1(TypedDict):\n" in deeper
    assert "class c" not in deeper
    nested = small.named_type("c", "walk", tool, ["T1", "T2"])
    assert nested is not None and field_types(nested, "T2") == {"next": "NotRequired[T3]"}
    assert small.named_type("c", "walk", tool, ["Nope"]) is None
    assert small.named_type("c", "walk", tool, ["T1", "Nope"]) is None
    assert small.named_type("c", "walk", tool, ["T0"]) is not None  # an expanded type can be described too


def test_long_enums_are_aliases_named_where_they_are_used_and_shared() -> None:
    values = [f"v{i}" for i in range(40)]
    out = render(obj(kind={"enum": values}, other={"enum": list(values)}, n=obj(k={"enum": values})), name="make")
    assert (
        signature(out, "make")
        == "async def make(*, kind: MakeKind = ..., other: MakeKind = ..., n: MakeN = ...) -> Any:"
    )
    assert out.startswith('MakeKind = Literal["v0", "v1", ') and out.count("MakeKind = Literal") == 1
    assert field_types(out, "MakeN") == {"k": "NotRequired[MakeKind]"}
    small = PythonDeclarations(budget=200).method("conn", "make", spec(obj(kind={"enum": values})))
    check(small)
    assert "\nMakeKind = str\n" in small  # left out, it is still a string


def test_a_nested_typed_dict_that_fails_is_opaque_and_the_tool_keeps_its_signature() -> None:
    bad = {"type": "object", "properties": {1: {"type": "string"}}}
    out = render(obj(("a",), a={"type": "string"}, b={"type": "array", "items": obj(c=bad)}))
    assert signature(out) == "async def tool(*, a: str, b: list[ToolB] = ...) -> Any:"
    assert "\nToolBC = dict[str, Any]\n" in out and FALLBACK_MARK not in out


def test_large_connectors_are_one_line_signatures() -> None:
    tools = {
        f"tool_{i}": spec(
            obj(("id",), id={"type": "string"}, item={"$ref": "#/$defs/Item"}, mode={"enum": list("abcdefghijk")})
            | {"$defs": {"Item": ITEM}},
            {"$ref": "#/$defs/Item", "$defs": {"Item": ITEM}},
            description=f"Tool number {i}.\n\nMore text that is not shown.",
            requires_approval=i == 0,
        )
        for i in range(COMPACT_THRESHOLD + 1)
    }
    out = RENDER.connector("items", tools)
    check(out)
    head = f"# {len(tools)} methods, shown without their types; see a method's types with codemode.describe"
    assert out.startswith(
        head + '("items.<method>").\nclass items:\n'
        "    async def tool_0(*, id: str, item: dict[str, Any] = ..., mode: str = ...) -> dict[str, Any]:\n"
        '        """Tool number 0. (Requires approval.)"""\n'
    )
    assert "More text" not in out and "TypedDict" not in out
    short = PythonDeclarations(budget=1000).connector("items", tools)
    check(short)
    shown = short.count("async def ")
    assert len(short) <= 1000 and 0 < shown < len(tools)
    assert short.endswith(f'    # ... and {len(tools) - shown} more methods: find one with codemode.search("...").')
    assert RENDER.connector("items", dict(list(tools.items())[:3])).count("class Item(TypedDict)") == 1


def test_signatures_too_long_for_the_budget_lose_their_property_docs_first() -> None:
    params = {f"p{i}": {"type": "string", "description": f"Parameter {i}. " + "d" * 300} for i in range(70)}
    tool = spec({"type": "object", "properties": params}, description="Many parameters.")
    out = RENDER.method("conn", "tool", tool)
    check(out)
    assert len(out) <= DESCRIBE_BUDGET
    assert '"""Many parameters."""' in out and "Parameter 0." not in out and "Args:" not in out
    assert len(PythonDeclarations(budget=100_000).method("conn", "tool", tool)) > DESCRIBE_BUDGET  # the docs, kept
