"""TypeScript declarations: the reference's golden strings (spec §9.9-§9.11) and a parser check over real specs."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import tree_sitter_typescript
from tree_sitter import Language
from tree_sitter import Parser as TreeSitterParser

from codemode.schema.base import COMPACT_THRESHOLD, DeclarationRenderer
from codemode.schema.typescript import (
    APPROVAL_NOTE,
    TypeScriptDeclarations,
    generate_declarations,
    json_schema_to_type,
)
from test_schema_python import chain

from catalog import openapi_tools, spec


def lines(*parts: str) -> str:
    return "\n".join(parts)


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required)}


def ts(schema: Any, name: str = "TestInput") -> str:
    out = json_schema_to_type(schema, name)
    parse_block(out + "\n\ndeclare const c: {}")
    return out


def prop(schema: Any) -> str:
    """The rendered type of one optional property `x`."""
    out = ts({"type": "object", "properties": {"x": schema}})
    head, tail = "type TestInput = {\n", "\n}"
    assert out.startswith(head) and out.endswith(tail), out
    body = out[len(head) : -len(tail)]
    assert body.startswith("    x?: ") and body.endswith(";"), body
    return body[len("    x?: ") : -1]


def decl(tools: Mapping[str, Any], namespace: str = "codemode") -> str:
    out = generate_declarations(tools, namespace)
    parse_block(out)
    return out


# ---------------------------------------------------------------------------
# A parser for the subset of TypeScript the renderer emits: proves a block is well-formed
# ---------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\n]+)|(?P<comment>/\*(?:[^*]|\*(?!/))*\*/)|(?P<str>"(?:[^"\\\n\r]|\\.)*")"""
    r"""|(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|(?P<ident>[A-Za-z_$][\w$]*)|(?P<op>=>|[-{}\[\]()<>;:,?|&=])"""
)
_BUILTINS = {"string", "number", "boolean", "null", "unknown", "never", "true", "false"}


class Parser:
    """Recursive descent over `type X = T` aliases followed by exactly one `declare const n: {...}` block.

    An alias may be used before it is declared (named types refer to each other), never without one.
    """

    def __init__(self, src: str) -> None:
        self.tokens: list[str] = []
        pos = 0
        while pos < len(src):
            m = _TOKEN.match(src, pos)
            assert m, f"unexpected text at {pos}: {src[pos : pos + 40]!r}"
            if m.lastgroup == "comment":
                assert m.group().startswith("/**"), m.group()
            elif m.lastgroup != "ws":
                self.tokens.append(m.group())
            pos = m.end()
        self.i = 0
        self.aliases: list[str] = []
        self.declared = {
            self.tokens[i + 1]
            for i in range(len(self.tokens) - 2)
            if self.tokens[i] == "type" and self.tokens[i + 2] == "="
        }

    def peek(self) -> str:
        return self.tokens[self.i] if self.i < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        tok = self.peek()
        assert tok, "unexpected end"
        assert expected is None or tok == expected, f"expected {expected!r}, got {tok!r} at token {self.i}"
        self.i += 1
        return tok

    def ident(self) -> str:
        tok = self.take()
        assert re.fullmatch(r"[A-Za-z_$][\w$]*", tok), tok
        return tok

    def type(self) -> None:
        self.intersection()
        while self.peek() == "|":
            self.take()
            self.intersection()

    def intersection(self) -> None:
        self.postfix()
        while self.peek() == "&":
            self.take()
            self.postfix()

    def postfix(self) -> None:
        self.primary()
        while self.peek() == "[" and self.tokens[self.i + 1] == "]":
            self.i += 2

    def primary(self) -> None:
        tok = self.take()
        if tok == "{":
            self.members()
        elif tok == "(":
            self.type()
            self.take(")")
        elif tok == "[":
            self.listed("]", self.type)
        elif tok == "-":
            assert self.take()[0].isdigit()
        elif tok == "Record":
            self.take("<")
            self.take("string")
            self.take(",")
            self.type()
            self.take(">")
        else:
            assert tok[0] in '"0123456789' or tok in _BUILTINS or tok in self.declared, f"unknown type {tok!r}"

    def listed(self, close: str, item: Any) -> None:
        while self.peek() != close:
            item()
            if self.peek() != close:
                self.take(",")
        self.take(close)

    def members(self) -> None:
        while self.peek() != "}":
            if self.peek() == "[":  # an index signature
                self.take()
                self.ident()
                self.take(":")
                self.take("string")
                self.take("]")
            else:
                key = self.take()
                assert key[0] == '"' or key[0].isdigit() or re.fullmatch(r"[A-Za-z_$][\w$]*", key), key
                if self.peek() == "?":
                    self.take()
            self.take(":")
            self.type()
            if self.peek() in (";", ","):
                self.take()
        self.take("}")

    def block(self) -> tuple[list[str], str, list[str]]:
        while self.peek() == "type":
            self.take()
            name = self.ident()
            self.take("=")
            self.type()
            self.aliases.append(name)
        self.take("declare")
        self.take("const")
        namespace = self.ident()
        self.take(":")
        self.take("{")
        methods = []
        while self.peek() != "}":
            methods.append(self.ident())
            for tok in (":", "(", "input", ":"):
                self.take(tok)
            assert self.ident() in self.declared
            for tok in (")", "=>", "Promise", "<"):
                self.take(tok)
            assert self.ident() in self.declared
            self.take(">")
            self.take(";")
        self.take("}")
        assert self.i == len(self.tokens), f"trailing tokens after the block: {self.tokens[self.i : self.i + 5]}"
        assert len(set(self.aliases)) == len(self.aliases), "an alias declared twice"
        return self.aliases, namespace, methods


def parse_block(src: str) -> tuple[list[str], str, list[str]]:
    """Aliases, namespace and method names of a well-formed block (AssertionError otherwise)."""
    assert src.count("declare const ") == 1 and src == src.strip()
    return Parser(src).block()


def test_parser_rejects_broken_blocks() -> None:
    good = lines(
        "type AInput = {",
        "    x?: string;",
        "}",
        "type AOutput = unknown",
        "",
        "declare const c: {",
        "\ta: (input: AInput) => Promise<AOutput>;",
        "}",
    )
    assert parse_block(good) == (["AInput", "AOutput"], "c", ["a"])
    for bad in (
        good.replace("string;", "string;\n    /** a */ b */"),  # a comment closed early
        good.replace("x?: string", 'x?: "str'),  # an unterminated string
        good.replace("x?: string", "x?: {"),  # unbalanced
        good.replace("Promise<AOutput>", "Promise<BOutput>"),  # an undefined alias
        good + "\ntype Z = string",
    ):
        with pytest.raises(AssertionError):
            parse_block(bad)


# ---------------------------------------------------------------------------
# Spec §9.9: exact-string golden tests
# ---------------------------------------------------------------------------


def test_golden_required_and_optional_fields() -> None:
    schema = obj(("name",), name={"type": "string"}, age={"type": "number"})
    assert ts(schema, "UserInput") == lines("type UserInput = {", "    name: string;", "    age?: number;", "}")


def test_golden_string_enum() -> None:
    schema = obj(status={"type": "string", "enum": ["active", "inactive", "pending"]})
    assert ts(schema, "StatusInput") == lines(
        "type StatusInput = {", '    status?: "active" | "inactive" | "pending";', "}"
    )


def test_golden_nested_object() -> None:
    schema = obj(address=obj(("street",), street={"type": "string"}, zip={"type": "string"}))
    assert ts(schema, "PersonInput") == lines(
        "type PersonInput = {",
        "    address?: {",
        "        street: string;",
        "        zip?: string;",
        "    };",
        "}",
    )


def test_golden_arrays() -> None:
    schema = obj(
        tags={"type": "array", "items": {"type": "string"}}, scores={"type": "array", "items": {"type": "number"}}
    )
    assert ts(schema, "DataInput") == lines("type DataInput = {", "    tags?: string[];", "    scores?: number[];", "}")


def test_golden_bare_string_and_empty_object() -> None:
    assert ts({"type": "string"}, "NameInput") == "type NameInput = string"
    assert ts({"type": "object"}, "EmptyInput") == "type EmptyInput = Record<string, unknown>"


def test_golden_single_tool_with_descriptions() -> None:
    tools = {
        "getWeather": {
            "description": "Get weather for a city",
            "input_schema": obj(
                ("city",),
                city={"type": "string", "description": "City name"},
                units={"type": "string", "enum": ["celsius", "fahrenheit"]},
            ),
        }
    }
    assert decl(tools) == lines(
        "type GetWeatherInput = {",
        "    /** City name */",
        "    city: string;",
        '    units?: "celsius" | "fahrenheit";',
        "}",
        "type GetWeatherOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Get weather for a city",
        "\t * @param input.city - City name",
        "\t */",
        "\tgetWeather: (input: GetWeatherInput) => Promise<GetWeatherOutput>;",
        "}",
    )


def test_golden_multiple_tools_with_name_sanitization() -> None:
    tools = {
        "search": spec(obj(("query",), query={"type": "string"}, limit={"type": "number"}), None, "Search for items"),
        "get-item": spec(obj(("id",), id={"type": "string"}), None, "Get an item by ID"),
    }
    assert decl(tools) == lines(
        "type SearchInput = {",
        "    query: string;",
        "    limit?: number;",
        "}",
        "type SearchOutput = unknown",
        "type GetItemInput = {",
        "    id: string;",
        "}",
        "type GetItemOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Search for items",
        "\t */",
        "\tsearch: (input: SearchInput) => Promise<SearchOutput>;",
        "",
        "\t/**",
        "\t * Get an item by ID",
        "\t */",
        "\tget_item: (input: GetItemInput) => Promise<GetItemOutput>;",
        "}",
    )


GET_USER = lines(
    "type GetUserInput = {",
    "    id: string;",
    "}",
    "type GetUserOutput = {",
    "    name: string;",
    "    email: string;",
    "}",
    "",
    "declare const codemode: {",
    "\t/**",
    "\t * Get a user",
    "\t */",
    "\tgetUser: (input: GetUserInput) => Promise<GetUserOutput>;",
    "}",
)


def test_golden_typed_output_schema() -> None:
    output = obj(("name", "email"), name={"type": "string"}, email={"type": "string"})
    tools = {
        "getUser": {
            "description": "Get a user",
            "inputSchema": obj(("id",), id={"type": "string"}),
            "outputSchema": output,
        }
    }
    assert decl(tools) == GET_USER


def test_golden_empty_tool_set() -> None:
    assert decl({}) == "declare const codemode: {}"
    assert decl({}, "github") == "declare const github: {}"


def test_golden_mcp_style_tools() -> None:
    create = obj(
        ("owner", "repo", "title"),
        owner={"type": "string", "description": "Repository owner"},
        repo={"type": "string", "description": "Repository name"},
        title={"type": "string", "description": "Issue title"},
        body={"type": "string", "description": "Issue body"},
        labels={"type": "array", "items": {"type": "string"}, "description": "Labels to add"},
    )
    list_ = obj(
        ("owner", "repo"),
        owner={"type": "string"},
        repo={"type": "string"},
        state={"type": "string", "enum": ["open", "closed", "all"]},
        per_page={"type": "number"},
    )
    tools = {
        "create_issue": spec(create, None, "Create a GitHub issue"),
        "list_issues": spec(list_, None, "List issues in a repository"),
    }
    assert decl(tools) == lines(
        "type CreateIssueInput = {",
        "    /** Repository owner */",
        "    owner: string;",
        "    /** Repository name */",
        "    repo: string;",
        "    /** Issue title */",
        "    title: string;",
        "    /** Issue body */",
        "    body?: string;",
        "    /** Labels to add */",
        "    labels?: string[];",
        "}",
        "type CreateIssueOutput = unknown",
        "type ListIssuesInput = {",
        "    owner: string;",
        "    repo: string;",
        '    state?: "open" | "closed" | "all";',
        "    per_page?: number;",
        "}",
        "type ListIssuesOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Create a GitHub issue",
        "\t * @param input.owner - Repository owner",
        "\t * @param input.repo - Repository name",
        "\t * @param input.title - Issue title",
        "\t * @param input.body - Issue body",
        "\t * @param input.labels - Labels to add",
        "\t */",
        "\tcreate_issue: (input: CreateIssueInput) => Promise<CreateIssueOutput>;",
        "",
        "\t/**",
        "\t * List issues in a repository",
        "\t */",
        "\tlist_issues: (input: ListIssuesInput) => Promise<ListIssuesOutput>;",
        "}",
    )


# ---------------------------------------------------------------------------
# Spec §9.10: schema conversion (the JSON Schema variant of each case)
# ---------------------------------------------------------------------------


def test_basic_simple_object_with_required_field() -> None:  # 1
    out = decl({"getUser": spec(obj(("id",), id={"type": "string"}), None, "Get a user")})
    assert out == lines(
        "type GetUserInput = {",
        "    id: string;",
        "}",
        "type GetUserOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Get a user",
        "\t */",
        "\tgetUser: (input: GetUserInput) => Promise<GetUserOutput>;",
        "}",
    )


def test_basic_nested_arrays_enums_and_optionality() -> None:  # 2, 3, 4, 5
    schema = obj(
        ("query",),
        user=obj(name={"type": "string"}, email={"type": "string"}),
        tags={"type": "array", "items": {"type": "string"}},
        order={"type": "string", "enum": ["asc", "desc"]},
        query={"type": "string"},
        limit={"type": "number"},
    )
    assert ts(schema) == lines(
        "type TestInput = {",
        "    user?: {",
        "        name?: string;",
        "        email?: string;",
        "    };",
        "    tags?: string[];",
        '    order?: "asc" | "desc";',
        "    query: string;",
        "    limit?: number;",
        "}",
    )


def test_field_descriptions_give_jsdoc_and_param_lines() -> None:  # 6
    schema = obj(
        query={"type": "string", "description": "Search query"}, limit={"type": "number", "description": "Max results"}
    )
    assert decl({"search": spec(schema, None, "Search the web")}) == lines(
        "type SearchInput = {",
        "    /** Search query */",
        "    query?: string;",
        "    /** Max results */",
        "    limit?: number;",
        "}",
        "type SearchOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Search the web",
        "\t * @param input.query - Search query",
        "\t * @param input.limit - Max results",
        "\t */",
        "\tsearch: (input: SearchInput) => Promise<SearchOutput>;",
        "}",
    )


def test_newlines_in_tool_and_field_descriptions_become_spaces() -> None:  # 7, 8
    schema = obj(q={"type": "string", "description": "Line one\nLine two\r\nLine three"})
    out = decl({"t": spec(schema, None, "  First line\nsecond line\r\nthird  \n")})
    assert out == lines(
        "type TInput = {",
        "    /** Line one Line two Line three */",
        "    q?: string;",
        "}",
        "type TOutput = unknown",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * First line second line third",
        "\t * @param input.q - Line one Line two Line three",
        "\t */",
        "\tt: (input: TInput) => Promise<TOutput>;",
        "}",
    )


def test_comment_terminators_are_escaped() -> None:  # 9, 10
    schema = obj(q={"type": "string", "description": "ends */ here", "format": "x*/y"})
    out = decl({"t": spec(schema, None, "Evil */ alert(1) /*")})
    assert "\t * Evil *\\/ alert(1) /*\n" in out
    assert "\t * @param input.q - ends *\\/ here\n" in out
    assert lines("    /**", "     * ends *\\/ here", "     * @format x*\\/y", "     */", "    q?: string;") in out


def test_description_and_format_jsdoc_forms() -> None:  # 11, 12
    schema = obj(
        email={"type": "string", "description": "User email", "format": "email"},
        id={"type": "string", "format": "uuid"},
        deep=obj(at={"type": "string", "description": "When", "format": "date-time"}),
    )
    assert ts(schema) == lines(
        "type TestInput = {",
        "    /**",
        "     * User email",
        "     * @format email",
        "     */",
        "    email?: string;",
        "    /** @format uuid */",
        "    id?: string;",
        "    deep?: {",
        "        /**",
        "         * When",
        "         * @format date-time",
        "         */",
        "        at?: string;",
        "    };",
        "}",
    )


def test_unions() -> None:  # 13, 14, 16
    assert prop({"anyOf": [{"type": "string"}, {"type": "number"}]}) == "string | number"
    assert prop({"anyOf": [{"type": "string"}, {"type": "null"}]}) == "string | null"
    assert prop({"oneOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}) == "string | number | boolean"


def test_allof_is_an_intersection_keeping_both_members() -> None:  # 15
    schema = {"allOf": [obj(("a",), a={"type": "string"}), obj(b={"type": "number"})]}
    assert ts(schema) == lines("type TestInput = {", "    a: string;", "} & {", "    b?: number;", "}")


def test_typed_output_is_an_object() -> None:  # 17
    out = decl({"getWeather": spec(obj(city={"type": "string"}), obj(temperature={"type": "number"}), "Get weather")})
    assert "type GetWeatherOutput = {\n    temperature?: number;\n}" in out
    assert "GetWeatherOutput = unknown" not in out


def test_complex_input_and_output() -> None:  # 18
    item = obj(("id",), id={"type": "string"}, score={"type": "number", "description": "Relevance"})
    tools = {
        "search_docs": spec(
            obj(
                ("query",),
                query={"type": "string", "description": "What to find"},
                filters=obj(tags={"type": "array", "items": {"type": "string"}}),
            ),
            obj(("results",), results={"type": "array", "items": item}, total={"type": "integer"}),
            "Search the docs",
        )
    }
    assert decl(tools) == lines(
        "type SearchDocsInput = {",
        "    /** What to find */",
        "    query: string;",
        "    filters?: {",
        "        tags?: string[];",
        "    };",
        "}",
        "type SearchDocsOutput = {",
        "    results: {",
        "        id: string;",
        "        /** Relevance */",
        "        score?: number;",
        "    }[];",
        "    total?: number;",
        "}",
        "",
        "declare const codemode: {",
        "\t/**",
        "\t * Search the docs",
        "\t * @param input.query - What to find",
        "\t */",
        "\tsearch_docs: (input: SearchDocsInput) => Promise<SearchDocsOutput>;",
        "}",
    )


def test_refs() -> None:  # 19-23
    user = obj(("name",), name={"type": "string"})
    assert ts({**obj(user={"$ref": "#/$defs/User"}), "$defs": {"User": user}}) == lines(
        "type TestInput = {", "    user?: {", "        name: string;", "    };", "}"
    )
    assert ts({**obj(a={"$ref": "#/definitions/A"}), "definitions": {"A": {"type": "integer"}}}).endswith(
        "a?: number;\n}"
    )
    assert ts({**obj(a={"$ref": "#/$defs/Missing"}), "$defs": {}}).endswith("a?: unknown;\n}")
    assert prop({"$ref": "https://example.com/schema.json"}) == "unknown"
    assert prop({"$ref": "other.json#/x"}) == "unknown"
    chain = {
        **obj(a={"$ref": "#/$defs/A"}),
        "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/C"}, "C": user},
    }
    assert ts(chain) == lines("type TestInput = {", "    a?: {", "        name: string;", "    };", "}")


def test_ref_pointers_unescape_and_resolve_against_the_converted_root() -> None:
    defs = {"a/b": {"type": "string"}, "c~d": {"type": "boolean"}, "list": [{"type": "number"}]}
    schema = {
        **obj(x={"$ref": "#/$defs/a~1b"}, y={"$ref": "#/$defs/c~0d"}, z={"$ref": "#/$defs/list/0"}),
        "$defs": defs,
    }
    assert ts(schema) == lines("type TestInput = {", "    x?: string;", "    y?: boolean;", "    z?: number;", "}")
    assert ts({"$ref": "#/$defs/T", "$defs": {"T": True}}) == "type TestInput = unknown"
    assert ts({"$ref": "#/$defs/T", "$defs": {"T": False}}) == "type TestInput = never"
    assert ts({"$ref": "#/$defs/T", "$defs": {"T": "string"}}) == "type TestInput = unknown"
    # The output schema is its own root: its refs do not see the input's definitions.
    out = decl({"t": spec({**obj(a={"$ref": "#/$defs/A"}), "$defs": {"A": {"type": "string"}}}, {"$ref": "#/$defs/A"})})
    assert "    a?: string;" in out and "type TOutput = unknown" in out


def test_cycles_and_depth() -> None:  # 24, 25
    assert ts(obj(name={"type": "string"}, child={"$ref": "#"})) == lines(
        "type TestInput = {", "    name?: string;", "    child?: unknown;", "}"
    )
    node = obj(children={"type": "array", "items": {"$ref": "#/$defs/Node"}})
    assert ts({"$ref": "#/$defs/Node", "$defs": {"Node": node}}) == lines(
        "type TestInput = {", "    children?: unknown[];", "}"
    )
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(30):
        schema = obj(n=schema)
    out = ts(schema)
    assert "string" not in out
    assert "\n" + " " * 80 + "n?: unknown;\n" in out  # the 20th level
    assert out.count("{") == 20


def test_shared_subschemas_are_not_cycles() -> None:
    shared = obj(v={"type": "string"})
    assert ts(obj(a=shared, b=shared)).count("v?: string;") == 2


def test_edge_cases() -> None:  # 26-31
    assert ts(obj(("a",), a=True, b=False)) == lines("type TestInput = {", "    a: unknown;", "    b?: never;", "}")
    assert prop({"type": ["string", "null"]}) == "string | null"
    assert prop({"type": ["integer", "boolean", "array", "object", "weird"]}) == (
        "number | boolean | unknown[] | Record<string, unknown> | unknown"
    )
    assert prop({"type": "integer"}) == "number"
    assert prop({"type": "array"}) == "unknown[]"
    assert prop({"enum": []}) == "never"
    assert prop({"type": "string", "nullable": True}) == "string | null"
    assert ts(True) == "type TestInput = unknown" and ts(False) == "type TestInput = never"
    assert ts({}) == "type TestInput = unknown"


def test_nullable_applies_to_every_branch_but_unknown_never_and_null() -> None:
    assert prop({"type": "object", "nullable": True}) == "Record<string, unknown> | null"
    assert prop({"anyOf": [{"type": "string"}, {"type": "number"}], "nullable": True}) == "string | number | null"
    assert prop({"enum": ["a"], "nullable": True}) == '"a" | null'
    assert prop({"type": "array", "items": {"type": "string"}, "nullable": True}) == "string[] | null"
    assert prop({"$ref": "#/missing", "nullable": True}) == "unknown"
    assert prop({"nullable": True}) == "unknown"
    assert prop({"not": {}, "nullable": False}) == "unknown"
    assert prop({"type": "null", "nullable": True}) == "null"
    assert prop({"allOf": [False], "nullable": True}) == "never"


def test_property_names_are_quoted_and_escaped() -> None:  # 32-34
    names = ["line\nbreak", "tab\there", 'say "hi"', "", "back\\slash", "\u2028\u2029", "\x01\r", "kebab-case", "1st"]
    out = ts(obj(**{key: {"type": "string"} for key in names}, **{"ok_$1": {"type": "string"}}))
    assert out == lines(
        "type TestInput = {",
        '    "line\\nbreak"?: string;',
        '    "tab\\there"?: string;',
        '    "say \\"hi\\""?: string;',
        '    ""?: string;',
        '    "back\\\\slash"?: string;',
        '    "\\u2028\\u2029"?: string;',
        '    "\\u0001\\r"?: string;',
        '    "kebab-case"?: string;',
        '    "1st"?: string;',
        "    ok_$1?: string;",
        "}",
    )


def test_enum_and_const_values() -> None:  # 35-40
    assert prop({"enum": ['say "hi"', "back\\slash", "new\nline"]}) == '"say \\"hi\\"" | "back\\\\slash" | "new\\nline"'
    assert prop({"enum": ["a", None, "b"]}) == '"a" | null | "b"'
    assert prop({"const": 'he said "x"'}) == '"he said \\"x\\""'
    assert prop({"enum": [{"a": 1}, {"b": "x"}]}) == '{"a":1} | {"b":"x"}'
    assert prop({"enum": [[1, 2], [3]]}) == "[1,2] | [3]"
    assert prop({"const": {"k": [True, None, 1.5, "q\"'"]}}) == '{"k":[true,null,1.5,"q\\"\'"]}'
    assert prop({"const": None}) == "null"
    assert prop({"enum": [1, 2.0, -0.5, 1e-7, 0.00001, 1e21, True, False]}) == (
        "1 | 2 | -0.5 | 1e-7 | 0.00001 | 1e+21 | true | false"
    )


def test_additional_properties() -> None:  # 41-44
    assert ts({**obj(a={"type": "string"}), "additionalProperties": True}) == lines(
        "type TestInput = {", "    a?: string;", "    [key: string]: unknown;", "}"
    )
    assert ts({"type": "object", "additionalProperties": {"type": "string"}}) == lines(
        "type TestInput = {", "    [key: string]: string;", "}"
    )
    assert ts({"type": "object", "additionalProperties": {}}) == lines(
        "type TestInput = {", "    [key: string]: unknown;", "}"
    )
    assert ts({"type": "object", "additionalProperties": False}) == "type TestInput = {}"
    assert ts({"type": "object", "properties": {}, "additionalProperties": False}) == "type TestInput = {}"
    assert ts({"type": "object"}) == "type TestInput = Record<string, unknown>"
    assert ts({"properties": {"a": {"type": "string"}}}) == lines("type TestInput = {", "    a?: string;", "}")


def test_arrays_and_tuples() -> None:  # 45, 46
    assert prop({"type": "array", "items": [{"type": "string"}, {"type": "number"}]}) == "[string, number]"
    tuple_ = {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}]}
    assert prop(tuple_) == "[string, number, boolean]"
    # Bug-compatible: a union item is not parenthesised.
    assert prop({"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}}) == "string | number[]"
    assert prop({"type": "array", "items": {"type": "array", "items": {"type": "number"}}}) == "number[][]"
    assert prop({"type": "array", "items": True}) == "unknown[]"
    assert prop({"type": "array", "items": {}}) == "unknown[]"


def test_declaration_block_and_hyphenated_names() -> None:  # 47, 49
    tools = {
        "tool1": spec(obj(a={"type": "string"}), None, "First tool"),
        "tool2": spec(obj(b={"type": "number"}), None, "Second tool"),
        "get-user": spec(obj(id={"type": "string"}), None, "Get user"),
    }
    out = decl(tools)
    assert "declare const codemode: {\n" in out
    assert "\ttool1: (input: Tool1Input) => Promise<Tool1Output>;\n" in out
    assert "\ttool2: (input: Tool2Input) => Promise<Tool2Output>;\n" in out
    assert "\tget_user: (input: GetUserInput) => Promise<GetUserOutput>;\n}" in out


def test_sanitized_names() -> None:
    names = {"get-item": "get_item", "api.v2.search": "api_v2_search", "3drender": "_3drender", "class": "class_"}
    out = decl({name: spec() for name in names})
    assert parse_block(out)[2] == list(names.values())
    assert "type GetItemInput = {}" not in out  # an empty `properties` object still reads as an object
    assert "type GetItemInput = Record<string, unknown>" in out
    assert "\tget_item: (input: GetItemInput) => Promise<GetItemOutput>;" in out
    assert "type ApiV2SearchInput" in out and "type _3drenderInput" in out and "type Class_Input" in out
    # Without a description the raw (unsanitized) tool name is the JSDoc.
    assert "\t * get-item\n" in out and "\t * 3drender\n" in out


# ---------------------------------------------------------------------------
# Spec §9.11: tool-level edge cases and per-tool isolation
# ---------------------------------------------------------------------------


def unknown_tool(name: str, pascal: str, doc: str) -> tuple[str, str]:
    types = f"type {pascal}Input = unknown\ntype {pascal}Output = unknown"
    member = f"\t/**\n\t * {doc}\n\t */\n\t{name}: (input: {pascal}Input) => Promise<{pascal}Output>;"
    return types, member


@pytest.mark.parametrize(
    "tool",
    [
        {"description": "Does things", "input_schema": None},
        {"description": "Does things"},
        {"description": "Does things", "inputSchema": "not a schema"},
        spec("not a schema", None, "Does things"),
    ],
)
def test_non_schema_inputs_give_unknown_types_with_the_description(tool: Any) -> None:  # 3, 4, 5
    types, member = unknown_tool("t", "T", "Does things")
    assert decl({"t": tool}) == f"{types}\n\ndeclare const codemode: {{\n{member}\n}}"


class Exploding(Mapping[str, Any]):
    """A schema that fails as soon as it is read."""

    def __getitem__(self, key: str) -> Any:
        raise RuntimeError("boom")

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError("boom")

    def __len__(self) -> int:
        return 1


class ExplodingTool:
    description = "Never seen"

    @property
    def input_schema(self) -> Any:
        raise RuntimeError("boom")


def test_a_throwing_schema_is_isolated_to_its_tool() -> None:  # 6
    good = {"description": "Fine", "input_schema": obj(("a",), a={"type": "string"})}
    tools = {
        "good": good,
        "bad-schema": spec(Exploding(), None, "Has a description"),
        "bad_getter": ExplodingTool(),
        "bad_tool": Exploding(),
        "bad_combinator": spec(obj(x={"anyOf": "oops"}), None, "Malformed"),
        "after": good,
    }
    ok_types = "type {p}Input = {{\n    a: string;\n}}\ntype {p}Output = unknown"
    parts = [
        (ok_types.format(p="Good"), "\t/**\n\t * Fine\n\t */\n\tgood: (input: GoodInput) => Promise<GoodOutput>;"),
        unknown_tool("bad_schema", "BadSchema", "bad-schema"),
        unknown_tool("bad_getter", "BadGetter", "bad_getter"),
        unknown_tool("bad_tool", "BadTool", "bad_tool"),
        unknown_tool("bad_combinator", "BadCombinator", "bad_combinator"),
        (ok_types.format(p="After"), "\t/**\n\t * Fine\n\t */\n\tafter: (input: AfterInput) => Promise<AfterOutput>;"),
    ]
    expected = (
        "\n".join(t for t, _ in parts) + "\n\ndeclare const codemode: {\n" + "\n\n".join(m for _, m in parts) + "\n}"
    )
    assert decl(tools) == expected


def test_a_throwing_output_schema_is_isolated_too() -> None:
    out = decl({"t": spec(obj(a={"type": "string"}), {"properties": "oops"}, "Desc")})
    assert out.startswith("type TInput = unknown\ntype TOutput = unknown\n") and "\t * t\n" in out


# ---------------------------------------------------------------------------
# The renderer
# ---------------------------------------------------------------------------

RENDER = TypeScriptDeclarations()


def test_renderer_satisfies_the_protocol() -> None:
    renderer: DeclarationRenderer = RENDER
    assert renderer.language == "typescript"


def test_connector_and_method() -> None:
    tools = {
        "getUser": spec(
            obj(("id",), id={"type": "string"}),
            obj(("name", "email"), name={"type": "string"}, email={"type": "string"}),
            "Get a user",
        )
    }
    assert RENDER.connector("codemode", tools) == GET_USER
    assert RENDER.connector("users", tools) == GET_USER.replace("declare const codemode", "declare const users")
    assert RENDER.connector("my-users", tools).count("declare const my_users: {") == 1
    assert RENDER.method("users", "getUser", tools["getUser"]) == RENDER.connector("users", tools)
    assert RENDER.connector("users", {}) == "declare const users: {}"


def test_approval_is_stated_in_the_jsdoc() -> None:
    tools = {
        "delete_item": spec(
            obj(("id",), id={"type": "string", "description": "Item id"}), None, "Delete.", requires_approval=True
        ),
        "broken": spec(Exploding(), None, "Broken.", requires_approval=True),
    }
    out = RENDER.connector("items", tools)
    parse_block(out)
    assert f"\t * Delete.\n\t * {APPROVAL_NOTE}\n\t * @param input.id - Item id\n\t */" in out
    assert f"\t * broken\n\t * {APPROVAL_NOTE}\n\t */" in out
    assert APPROVAL_NOTE not in RENDER.connector("items", {"t": spec(description="Safe.")})


def test_max_depth_is_configurable() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(5):
        schema = obj(n=schema)
    shallow = TypeScriptDeclarations(max_depth=3).method("c", "t", spec(schema))
    assert "string" not in shallow and " " * 12 + "n?: unknown;" in shallow
    assert "string;" in RENDER.method("c", "t", spec(schema))


# ---------------------------------------------------------------------------
# Real OpenAPI documents
# ---------------------------------------------------------------------------


# Stripe's schemas reference each other so densely that inlining them 20 levels deep yields ~60 MB per tool
# (the reference converter behaves the same); its spec-style block is checked at a depth that keeps it readable.
@pytest.mark.parametrize(("name", "step", "depth"), [("github", 1, 20), ("stripe", 1, 6)])
def test_real_openapi_blocks_parse(name: str, step: int, depth: int) -> None:
    tools = dict(list(openapi_tools(name).items())[::step])
    aliases, namespace, methods = parse_block(generate_declarations(tools, name, max_depth=depth))
    assert namespace == name and methods == list(tools)
    assert len(aliases) == 2 * len(tools)
    typed_outputs = 0
    for tool_name, tool in list(tools.items())[::3]:
        out = RENDER.method(name, tool_name, tool)  # named types, within the budget
        assert parse_block(out)[2] == [tool_name]
        assert "Input = unknown" not in out, tool_name
        typed_outputs += "Output = unknown" not in out
    assert typed_outputs > 0


# ---------------------------------------------------------------------------
# TypeScriptDeclarations: named types and the size budget
# ---------------------------------------------------------------------------

_TS_GRAMMAR = Language(tree_sitter_typescript.language_typescript())


def ts_syntax_errors(src: str) -> list[str]:
    """The ERROR and MISSING nodes the TypeScript grammar finds in `src` (empty when it is valid)."""
    found: list[str] = []
    stack = [TreeSitterParser(_TS_GRAMMAR).parse(src.encode("utf-8")).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            found.append(f"{node.type} at {node.start_point}: {src.encode()[node.start_byte : node.end_byte][:60]!r}")
        elif node.has_error:
            stack.extend(node.children)
    return found


def valid(src: str) -> str:
    assert ts_syntax_errors(src) == []
    return src


def test_tree_sitter_check_finds_errors() -> None:
    assert ts_syntax_errors("type A = { a: string; }\ndeclare const c: {}") == []
    assert ts_syntax_errors("type A = { a: string;") != []
    assert ts_syntax_errors("type A = | ;") != []


USER = obj(("name",), name={"type": "string"}, friends={"type": "array", "items": {"$ref": "#/$defs/User"}})


def test_refs_to_definitions_are_named_types_declared_once() -> None:
    schema = {
        **obj(("owner",), owner={"$ref": "#/$defs/User"}, reviewer={"$ref": "#/$defs/User", "nullable": True}),
        "$defs": {"User": USER},
    }
    out = valid(RENDER.method("c", "t", spec(schema, {"$ref": "#/$defs/User", "$defs": schema["$defs"]})))
    assert out.startswith(
        lines(
            "type TInput = {",
            "    owner: User;",
            "    reviewer?: User | null;",
            "}",
            "type TOutput = User",
            "type User = {",
            "    name: string;",
            "    friends?: User[];",  # a cycle is a recursive reference, not `unknown`
            "}",
        )
    )
    assert out.count("type User =") == 1
    # The reference renderer still inlines, to the letter.
    assert "owner: {\n        name: string;" in generate_declarations({"t": spec(schema)})


def test_every_usual_definition_container_gives_a_name() -> None:
    schema = {
        **obj(a={"$ref": "#/$defs/a-b"}, b={"$ref": "#/definitions/c_d"}, c={"$ref": "#/components/schemas/e.f"}),
        "$defs": {"a-b": obj(x={"type": "string"})},
        "definitions": {"c_d": obj(y={"type": "string"})},
        "components": {"schemas": {"e.f": obj(z={"type": "string"})}},
    }
    out = valid(RENDER.method("c", "t", spec(schema)))
    assert "    a?: AB;\n    b?: CD;\n    c?: EF;\n" in out
    assert all(f"type {n} = {{" in out for n in ("AB", "CD", "EF"))


def test_small_definitions_stay_inline_and_pointers_elsewhere_are_inlined() -> None:
    schema = {
        **obj(s={"$ref": "#/$defs/State"}, n={"$ref": "#/$defs/Count"}, p={"$ref": "#/properties/n"}),
        "$defs": {"State": {"enum": ["open", "closed"]}, "Count": {"type": "integer"}},
    }
    out = valid(RENDER.method("c", "t", spec(schema)))
    assert '    s?: "open" | "closed";\n    n?: number;\n    p?: number;\n' in out
    assert "type State" not in out and "type Count" not in out


def test_a_reference_to_the_root_names_the_tools_own_alias() -> None:
    tool = spec(obj(name={"type": "string"}, child={"$ref": "#"}))
    out = valid(RENDER.method("c", "t", tool))
    assert "    child?: TInput;\n" in out
    described = RENDER.named_type("c", "t", tool, ["TInput"])  # the alias described on its own: still itself
    assert described == "type TInput = {\n    name?: string;\n    child?: TInput;\n}"


def test_names_never_clash_with_tool_aliases_or_global_types() -> None:
    names = ("t_input", "Record", "Promise", "File", "Event", "Partial")
    defs = {name: obj(**{f"p{i}": {"type": "string"}}) for i, name in enumerate(names)}
    schema = obj(**{f"x{i}": {"$ref": f"#/$defs/{name}"} for i, name in enumerate(names)})
    out = valid(RENDER.method("c", "t", spec({**schema, "$defs": defs})))
    renamed = ["TInput2", "Record2", "Promise2", "File2", "Event2", "Partial2"]
    assert "".join(f"    x{i}?: {name};\n" for i, name in enumerate(renamed)) in out
    aliases, _, _ = parse_block(out)
    assert aliases == ["TInput", "TOutput", *renamed]


def test_union_items_and_json_schema_nullable_keep_their_meaning() -> None:
    union = {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "number"}]}}
    text = {"type": "array", "items": {"enum": ["a|b", "c&d"]}}
    assert prop(text) == '"a|b" | "c&d"[]'  # the reference's quirk, kept by generate_declarations
    assert '    text?: ("a|b" | "c&d")[];\n' in valid(RENDER.method("c", "t", spec(obj(text=text))))
    one = {"type": "array", "items": {"enum": ["a|b"]}}
    assert '    one?: "a|b"[];\n' in valid(RENDER.method("c", "t", spec(obj(one=one))))
    nullable_obj = {"type": ["object", "null"], "properties": {"a": {"type": "string"}}}
    nullable_arr = {"type": ["array", "null"], "items": {"type": "string"}}
    out = valid(RENDER.method("c", "t", spec(obj(u=union, o=nullable_obj, r=nullable_arr))))
    assert "    u?: (string | number)[];\n" in out
    assert "    o?: {\n        a?: string;\n    } | null;\n" in out
    assert "    r?: string[] | null;\n" in out


def test_long_enums_are_named_where_they_are_used_and_shared() -> None:
    values = [f"v{i}" for i in range(40)]
    out = valid(RENDER.method("c", "make", spec(obj(kind={"enum": values}, other={"enum": list(values)}))))
    assert "    kind?: MakeKind;\n    other?: MakeKind;\n" in out
    assert out.count('type MakeKind = "v0" | "v1"') == 1


def test_identical_definitions_of_separate_tools_are_merged() -> None:
    def tool() -> Any:
        return spec({**obj(u={"$ref": "#/$defs/User"}), "$defs": {"User": json_copy(USER)}})

    out = valid(RENDER.connector("c", {"one": tool(), "two": tool()}))
    assert out.count("type User =") == 1 and "User2" not in out


def json_copy(value: Any) -> Any:
    return json.loads(json.dumps(value))


def test_types_beyond_the_budget_are_opaque_with_a_note_and_can_be_described() -> None:
    small = TypeScriptDeclarations(budget=1500)
    tool = spec(chain(10), description="Walk.")
    out = valid(small.method("c", "walk", tool))
    assert len(out) <= 1500
    assert "type T0 = {\n    next?: T1;\n}" in out  # breadth first: the nearest types are expanded
    note = '/** Not expanded, to keep this short; for more: codemode.describe("c.walk.<TypeName>"). */'
    assert note in out
    omitted = re.findall(r"^type (T\d+) = Record<string, unknown>$", out, re.M)
    assert omitted and len(omitted) == 1  # only the first type left out is named; what it uses is not reached
    deeper = valid(small.named_type("c", "walk", tool, [omitted[0]]) or "")
    assert deeper.startswith(f"/** {'x' * 300} */\ntype {omitted[0]} = {{")
    assert f'codemode.describe("c.walk.{omitted[0]}.<TypeName>")' in deeper
    inner = re.findall(r"^type (T\d+) = Record<string, unknown>$", deeper, re.M)
    nested = small.named_type("c", "walk", tool, [omitted[0], inner[0]])
    assert nested is not None and f"type {inner[0]} = {{" in valid(nested)
    assert small.named_type("c", "walk", tool, ["Nope"]) is None
    assert small.named_type("c", "walk", tool, [omitted[0], "Nope"]) is None


def test_a_failing_named_type_is_opaque_and_the_tool_keeps_its_types() -> None:
    schema = {**obj(("a",), a={"type": "string"}, b={"$ref": "#/$defs/Bad"}), "$defs": {"Bad": {"properties": "x"}}}
    out = valid(RENDER.method("c", "t", spec(schema)))
    assert "    a: string;\n    b?: Bad;\n" in out and "type Bad = Record<string, unknown>" in out


def test_huge_inline_inputs_hoist_nested_objects_into_named_types() -> None:
    wide = obj(**{f"field_{i}": {"type": "string", "description": "d" * 80} for i in range(60)})
    tool = spec(obj(("body",), body=obj(first=wide, second=wide | {"title": "Second"})), description="Big.")
    small = TypeScriptDeclarations(budget=8000)
    out = valid(small.method("c", "big", tool))
    assert len(out) <= 8000
    assert "type BigInput = {\n    body: BigBody;\n}" in out
    assert "type BigBody = {\n    first?: BigBodyFirst;\n    second?: Second;\n}" in out
    assert "type BigBodyFirst = {\n    /** " in out  # the first fits, the second does not
    assert "type Second = Record<string, unknown>" in out
    second = valid(small.named_type("c", "big", tool, ["Second"]) or "")
    assert second.startswith("type Second = {\n") and "    field_59?: string;\n}" in second


def test_large_connectors_are_signatures_only() -> None:
    tools = {
        f"tool_{i}": spec(
            {**obj(("id",), id={"type": "string"}, user={"$ref": "#/$defs/User"}), "$defs": {"User": USER}},
            {"$ref": "#/$defs/User", "$defs": {"User": USER}},
            f"Tool number {i}.\n\nMore text that is not shown.",
            requires_approval=i == 0,
        )
        for i in range(COMPACT_THRESHOLD + 1)
    }
    out = valid(RENDER.connector("c", tools))
    head = f"/** {len(tools)} methods, shown without their types; see a method's types with codemode.describe"
    assert out.startswith(
        head + '("c.<method>"). */'
        "\ndeclare const c: {\n\t/** Tool number 0. (Requires approval.) */\n"
        "\ttool_0: (input: { id: string; user?: Record<string, unknown> }) => Promise<Record<string, unknown>>;\n"
    )
    assert "More text" not in out and "type User" not in out
    short = valid(TypeScriptDeclarations(budget=1000).connector("c", tools))
    assert len(short) <= 1000
    shown = short.count("=> Promise<")
    assert 0 < shown < len(tools)
    assert f'\t/** ... and {len(tools) - shown} more methods: find one with codemode.search("..."). */\n}}' in short
    few = dict(list(tools.items())[:3])
    assert RENDER.connector("c", few).count("type User =") == 1  # a small connector shows its types
