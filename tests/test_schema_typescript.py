"""TypeScript declarations: the reference's golden strings (spec §9.9-§9.11) and a parser check over real specs."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from codemode.schema.base import DeclarationRenderer
from codemode.schema.typescript import (
    APPROVAL_NOTE,
    TypeScriptDeclarations,
    generate_declarations,
    json_schema_to_type,
)

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
    """Recursive descent over `type X = T` aliases followed by exactly one `declare const n: {...}` block."""

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
            assert tok[0] in '"0123456789' or tok in _BUILTINS or tok in self.aliases, f"unknown type {tok!r}"

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
            assert self.ident() in self.aliases
            for tok in (")", "=>", "Promise", "<"):
                self.take(tok)
            assert self.ident() in self.aliases
            self.take(">")
            self.take(";")
        self.take("}")
        assert self.i == len(self.tokens), f"trailing tokens after the block: {self.tokens[self.i : self.i + 5]}"
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
# (the reference converter behaves the same); its blocks are checked at a depth that keeps them readable.
@pytest.mark.parametrize(("name", "step", "depth"), [("github", 1, 20), ("stripe", 1, 6)])
def test_real_openapi_blocks_parse(name: str, step: int, depth: int) -> None:
    render = TypeScriptDeclarations(max_depth=depth)
    tools = dict(list(openapi_tools(name).items())[::step])
    aliases, namespace, methods = parse_block(render.connector(name, tools))
    assert namespace == name and methods == list(tools)
    assert len(aliases) == 2 * len(tools)
    typed_outputs = 0
    for tool_name, tool in list(tools.items())[::3]:
        out = render.method(name, tool_name, tool)
        assert parse_block(out)[2] == [tool_name]
        assert "Input = unknown" not in out, tool_name
        typed_outputs += "Output = unknown" not in out
    assert typed_outputs > 0
