"""Declarations of whole real catalogs (GitHub, Stripe, Slack): every operation, both languages, two schema forms.

The tools come from `catalog.openapi_tools` (refs into `components` carried at each schema's root) and from
the OpenAPI connector's own derivation (`#/$defs/<Name>`, each tool carrying the definitions it reaches,
shared between tools; `nullable` as JSON Schema says it). Every `describe` result must stay within the
budget and be valid code: Python that compiles, TypeScript in which the tree-sitter grammar finds no error.
"""

from __future__ import annotations

import re
from functools import cache

import pytest

from codemode.connectors.openapi import derive_operations
from codemode.connectors.spec import ToolSpec
from codemode.schema.base import DESCRIBE_BUDGET, DeclarationRenderer
from codemode.schema.python import PythonDeclarations
from codemode.schema.typescript import TypeScriptDeclarations
from test_schema_typescript import ts_syntax_errors

from catalog import load_spec, openapi_tools, spec

CATALOGS = ("github", "stripe", "slack")
# A named type other than a tool's own `<Tool>Input`/`<Tool>Output`.
_NAMED = re.compile(r"^(?:class|type) (?!\w*(?:Input|Output)\b)[A-Z]\w*(?:\(TypedDict\):| = \{)", re.M)
_OMITTED = {
    "python": re.compile(r"^(\w+) = (?:dict\[str, Any\]|[a-z| ]+)$", re.M),
    "typescript": re.compile(r"^type (\w+) = (?:Record<string, unknown>|[a-z| ]+)$", re.M),
}


def renderer(language: str) -> DeclarationRenderer:
    return PythonDeclarations() if language == "python" else TypeScriptDeclarations()


def assert_valid(language: str, src: str, where: str) -> None:
    assert len(src) <= DESCRIBE_BUDGET, (where, len(src))
    assert "could not be rendered" not in src, where
    assert syntax_errors(language, src) == [], where


@cache
def syntax_errors(language: str, src: str) -> list[str]:
    """Parsing is most of these tests' time, and the two forms often give the same text: parse it once."""
    if language == "typescript":
        return ts_syntax_errors(src)
    try:
        # `ast.parse`'s parser, and the compiler's checks after it; four times faster, as no AST objects are built.
        compile(src, "<declarations>", "exec", dont_inherit=True)
    except SyntaxError as e:
        return [str(e)]
    return []


# ---------------------------------------------------------------------------
# The `$defs` form
# ---------------------------------------------------------------------------


@cache
def defs_tools(name: str) -> dict[str, ToolSpec]:
    """The tools `HttpOpenApiConnector` derives from the document: each schema carries the `$defs` it reaches."""
    ops = derive_operations(load_spec(name))
    return {op.tool_name: spec(op.input_schema, op.output_schema, op.description) for op in ops}


def catalog(name: str, form: str) -> dict[str, ToolSpec]:
    return openapi_tools(name) if form == "components" else defs_tools(name)


def test_the_connector_form_keeps_no_components_and_shares_definitions() -> None:
    tools = defs_tools("stripe")
    customer = tools["GetCustomersCustomer"]
    assert "components" not in repr(customer.input_schema) and "#/components" not in repr(customer.output_schema)
    assert customer.output_schema["anyOf"][0] == {"$ref": "#/$defs/customer"}
    other = tools["PostCustomersCustomer"].output_schema
    assert other["$defs"]["customer"] is customer.output_schema["$defs"]["customer"]
    address = customer.output_schema["$defs"]["customer"]["properties"]["address"]
    assert address["anyOf"][-1] == {"type": "null"} and "'$ref': '#/$defs/address'" in repr(address)
    assert "'type': ['string', 'null']" in repr(customer.output_schema["$defs"]["customer"])


# ---------------------------------------------------------------------------
# Every operation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["components", "defs"])
@pytest.mark.parametrize("language", ["python", "typescript"])
@pytest.mark.parametrize("name", CATALOGS)
def test_every_operation_renders_valid_and_within_budget(name: str, language: str, form: str) -> None:
    render = renderer(language)
    named = 0
    for tool_name, tool in catalog(name, form).items():
        out = render.method(name, tool_name, tool)
        assert_valid(language, out, tool_name)
        assert (f"async def {tool_name}(" if language == "python" else f"\t{tool_name}: (input: ") in out
        named += bool(_NAMED.search(out))
    assert named > 0  # `$ref`s are named types, not inlined


@pytest.mark.parametrize("form", ["components", "defs"])
@pytest.mark.parametrize("language", ["python", "typescript"])
def test_named_types_are_declared_once_and_used_by_name(language: str, form: str) -> None:
    out = renderer(language).method("stripe", "GetCustomersCustomer", catalog("stripe", form)["GetCustomersCustomer"])
    if language == "python":
        assert out.count("class Customer(TypedDict):") == 1
        assert "-> Customer | DeletedCustomer:" in out
        assert "default_source: NotRequired[str | BankAccount | Card | Source | None]" in out
    else:
        assert out.count("type Customer = {") == 1
        assert "type GetCustomersCustomerOutput = Customer | DeletedCustomer\n" in out
        assert "    default_source?: string | BankAccount | Card | Source | null;\n" in out


@pytest.mark.parametrize("form", ["components", "defs"])
@pytest.mark.parametrize("language", ["python", "typescript"])
def test_types_left_out_can_be_described(language: str, form: str) -> None:
    render = renderer(language)
    tools = catalog("stripe", form)
    described = 0
    for tool_name, tool in list(tools.items())[::25]:
        out = render.method("stripe", tool_name, tool)
        omitted = _OMITTED[language].findall(out)
        assert bool(omitted) == ("Not expanded" in out), tool_name
        for type_name in omitted[:2]:
            found = render.named_type("stripe", tool_name, tool, [type_name])
            assert found is not None, (tool_name, type_name)
            assert_valid(language, found, f"{tool_name}.{type_name}")
            head = (
                rf"^(class {type_name}\(TypedDict\):|{type_name} = )"
                if language == "python"
                else f"^type {type_name} ="
            )
            assert re.search(head, found, re.M), (tool_name, type_name)
            described += 1
    assert described > 10


@pytest.mark.parametrize("form", ["components", "defs"])
@pytest.mark.parametrize("language", ["python", "typescript"])
@pytest.mark.parametrize("name", CATALOGS)
def test_whole_connectors_are_signatures_within_budget(name: str, language: str, form: str) -> None:
    tools = catalog(name, form)
    out = renderer(language).connector(name, tools)
    assert_valid(language, out, name)
    assert f"{len(tools)} methods, shown without their types" in out
    assert f'codemode.describe("{name}.<method>")' in out
    shown = out.count("async def ") if language == "python" else out.count("=> Promise<")
    assert shown > 50
    assert f"and {len(tools) - shown} more methods" in out
