"""OpenAPI connectors against the real GitHub, Stripe and Slack documents and a validating HTTP server.

Every HTTP request goes to a real server on 127.0.0.1 (`openapi_server.ValidatingServer`) that checks it with
openapi-core, an implementation independent of the connector; a request it rejects fails the test with the
validator's messages. Arguments are generated from each tool's own input schema (deterministically) and must
pass that schema first.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

if sys.version_info >= (3, 11):
    import re._constants as re_constants
    import re._parser as re_parser
else:  # pragma: no cover
    import sre_constants as re_constants
    import sre_parse as re_parser

import httpx
import jsonschema
import pytest

from codemode.connectors.openapi import (
    HttpOpenApiConnector,
    OpenApiConnector,
    OpenApiHttpError,
    OpenApiRequest,
    Operation,
    build_request,
    derive_operations,
    query_string,
)
from codemode.connectors.spec import ToolContext, ToolSpec
from codemode.schema.python import PythonDeclarations
from openapi_server import Reply, ValidatingServer

from catalog import load_spec
from conftest import RuntimeFactory, program

ROOT = Path(__file__).resolve().parents[1]
CTX = ToolContext(execution_id="test")


@cache
def document(name: str) -> dict[str, Any]:
    """A real document, parsed once per session (the same object every time, as a connector would hold it)."""
    return load_spec(name)


def count_operations(doc: Mapping[str, Any]) -> int:
    methods = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
    return sum(1 for item in doc["paths"].values() for m in methods if isinstance(item.get(m), Mapping))


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, ValidatingServer]]:
    """One validating server per real document, for the whole session."""
    started: dict[str, ValidatingServer] = {}
    try:
        for name in ("github", "stripe", "slack"):
            started[name] = ValidatingServer(document(name))
            started[name].start()
        yield started
    finally:
        for server in started.values():
            server.stop()


def accepted(server: ValidatingServer, before: int, calls: int) -> None:
    """The server saw exactly `calls` requests since `before`, and accepted every one."""
    failures = [f for s in server.seen[before:] for f in ([] if s.ok else [f"{s.method} {s.raw_path}: {s.errors}"])]
    assert not failures, "\n".join(failures)
    assert len(server.seen) - before == calls


# ---------------------------------------------------------------------------
# Valid argument values from a JSON Schema
# ---------------------------------------------------------------------------

_FORMATS = {
    "date-time": "2024-01-02T03:04:05Z",
    "date": "2024-01-02",
    "time": "03:04:05",
    "email": "dev@example.com",
    "uri": "https://example.com/x",
    "url": "https://example.com/x",
    "uri-reference": "/x",
    "uri-template": "https://example.com/{x}",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "hostname": "example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "byte": "aGVsbG8=",
    "binary": "hello",
    "decimal": "1.5",
}


def regex_example(pattern: str) -> str | None:
    """A short string matching `pattern` (the regex subset the documents use), or None."""
    try:
        parsed = re_parser.parse(pattern)
    except re.error:
        return None
    categories = {re_constants.CATEGORY_DIGIT: "0", re_constants.CATEGORY_SPACE: " "}

    def first(items: Any) -> str:  # the first member of a character class
        for op, value in items:
            if op is re_constants.LITERAL:
                return chr(value)
            if op is re_constants.RANGE:
                return chr(value[0])
            if op is re_constants.CATEGORY:
                return categories.get(value, "a")
        return "a"

    def emit(items: Any) -> str:
        out = []
        for op, value in items:
            if op is re_constants.LITERAL:
                out.append(chr(value))
            elif op in (re_constants.NOT_LITERAL, re_constants.ANY):
                out.append("a" if value != ord("a") else "b")
            elif op is re_constants.IN:
                out.append("a" if value and value[0][0] is re_constants.NEGATE else first(value))
            elif op is re_constants.BRANCH:
                out.append(emit(value[1][0]))
            elif op is re_constants.SUBPATTERN:
                out.append(emit(value[-1]))
            elif op in (re_constants.MAX_REPEAT, re_constants.MIN_REPEAT):
                low, high, sub = value
                out.append(emit(sub) * max(low, min(high, 1)))
            elif op is re_constants.CATEGORY:
                out.append(categories.get(value, "a"))
        return "".join(out)

    text = emit(parsed)
    return text if re.search(pattern, text) else None


class ValueMaker:
    """Deterministic valid arguments for one tool: required properties always, optional ones near the top."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root
        self.validator = jsonschema.Draft202012Validator

    def deref(self, schema: Any) -> Any:
        for _ in range(50):
            if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
                return schema
            node: Any = self.root
            for part in schema["$ref"][2:].split("/"):
                node = node[unquote(part).replace("~1", "/").replace("~0", "~")]
            schema = node
        return {}

    def valid(self, schema: Any, value: Any) -> bool:
        if isinstance(schema, Mapping):
            schema = {**schema, "$defs": self.root.get("$defs", {})}
        return bool(self.validator(schema).is_valid(value))

    def make(self, schema: Any, depth: int = 0, seed: int = 0) -> Any:
        schema = self.deref(schema)
        if not isinstance(schema, Mapping) or not any(k for k in schema if k not in ("description", "examples")):
            return "value"
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list):
            choices = [v for v in schema["enum"] if v not in (None, "")] or schema["enum"]
            return choices[seed % len(choices)]
        for key in ("oneOf", "anyOf"):
            if isinstance(schema.get(key), list):
                return self.alternatives(schema, key, depth, seed)
        if isinstance(schema.get("allOf"), list):
            return self.make(self.merge([{k: v for k, v in schema.items() if k != "allOf"}, *schema["allOf"]]), depth)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
        if "default" in schema and kind not in ("object", "array") and self.valid(schema, schema["default"]):
            return schema["default"]
        if kind == "object":
            return self.object(schema, depth, seed)
        if kind == "array":
            count = max(schema.get("minItems", 0), 1 if depth < 4 else 0)
            return [self.make(schema.get("items", {}), depth + 1, seed + i) for i in range(count)]
        if kind in ("integer", "number"):
            low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else 1)
            high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else low + 99)
            value = max(low, min(high, 1 + seed))
            if schema.get("multipleOf"):
                value = schema["multipleOf"] * max(1, -(-low // schema["multipleOf"]))
            return int(value) if kind == "integer" else value
        if kind == "boolean":
            return True
        if kind == "null":
            return None
        return self.string(schema, seed)

    def string(self, schema: Mapping[str, Any], seed: int) -> str:
        for example in schema.get("examples") or ():
            if isinstance(example, str) and example and self.valid(schema, example):
                return example
        text = _FORMATS.get(schema.get("format", ""), f"value{seed}" if seed else "value")
        pattern = schema.get("pattern")
        if isinstance(pattern, str) and not re.search(pattern, text):
            text = regex_example(pattern) or text
        text += "x" * (schema.get("minLength", 0) - len(text))
        return text[: schema["maxLength"]] if "maxLength" in schema else text

    def alternatives(self, schema: Mapping[str, Any], key: str, depth: int, seed: int) -> Any:
        branches = [b for b in schema[key] if self.deref(b) != {"type": "null"}] or schema[key]
        rest = {k: v for k, v in schema.items() if k not in ("oneOf", "anyOf", "description")}
        for branch in branches:
            value = self.make(self.merge([rest, branch]) if rest else branch, depth + 1, seed)
            if self.valid(schema, value):
                return value
        return self.make(branches[0], depth + 1, seed)

    def merge(self, parts: list[Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for part in parts:
            part = self.deref(part)
            if isinstance(part, Mapping) and isinstance(part.get("allOf"), list):
                part = {**{k: v for k, v in part.items() if k != "allOf"}, **self.merge(part["allOf"])}
            for k, v in part.items() if isinstance(part, Mapping) else ():
                if k == "properties":
                    out.setdefault("properties", {}).update(v)
                elif k == "required":
                    out["required"] = [*out.get("required", []), *v]
                else:
                    out.setdefault(k, v)
        return out

    def object(self, schema: Mapping[str, Any], depth: int, seed: int) -> dict[str, Any]:
        props = schema.get("properties") or {}
        required = [r for r in schema.get("required", []) if isinstance(r, str)]
        writable = {n: s for n, s in props.items() if not (self.deref(s) or {}).get("readOnly")}
        out: dict[str, Any] = {}
        for name, sub in props.items():
            deprecated = (self.deref(sub) or {}).get("deprecated")
            if name in required or (depth < 2 and name in writable and not deprecated):
                out[name] = self.make(sub, depth + 1, seed)
        if not out and writable and depth < 8:  # an empty object cannot be sent in a form body: give it one
            name, sub = next(iter(writable.items()))
            out[name] = self.make(sub, depth + 1, seed)
        extra = schema.get("additionalProperties")
        if not props and isinstance(extra, Mapping):
            out["key1"] = self.make(extra, depth + 1, seed)
        return out


def generated_args(spec: ToolSpec) -> dict[str, Any]:
    """Arguments for a tool, asserted valid against the tool's own input schema."""
    args = ValueMaker(spec.input_schema).make(spec.input_schema)
    errors = list(jsonschema.Draft202012Validator(spec.input_schema).iter_errors(args))
    assert not errors, f"generated arguments fail the tool's schema: {errors[0].message}"
    return args


# ---------------------------------------------------------------------------
# The real documents
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["github", "stripe", "slack"])
async def test_every_operation_is_a_typed_tool(name: str) -> None:
    """Every operation, with a valid input schema; test_schema_large renders each one in both languages."""
    doc = document(name)
    connector = HttpOpenApiConnector(name, doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no collision in these documents, so no warning either
        tools = (await connector.describe()).tools
    assert len(tools) == count_operations(doc) + 1
    assert next(iter(tools)) == "request"
    refs: dict[int, set[str]] = {}  # the `$defs` keys each shared definition refers to, found once

    def refs_of(schema: Any) -> set[str]:
        found = re.findall(r'"\$ref": "#/\$defs/([^"]+)"', json.dumps(schema))
        return {unquote(r).replace("~1", "/").replace("~0", "~") for r in found}

    for spec in tools.values():
        # The metaschema check of each tool schema, with every shared `$defs` member checked once: the 2020-12
        # metaschema validates each `$defs` member as a schema of its own, so this is the same verdict.
        defs = spec.input_schema.get("$defs", {})
        own = {**spec.input_schema, "$defs": {}}
        assert_schema(own)
        needed = refs_of(own)
        for definition in defs.values():
            if id(definition) not in refs:
                assert_schema(definition)
                refs[id(definition)] = refs_of(definition)
            needed |= refs[id(definition)]
        assert needed <= set(defs)  # every reference resolves within the tool's own schema


_METASCHEMA = jsonschema.Draft202012Validator(jsonschema.Draft202012Validator.META_SCHEMA)


def assert_schema(schema: Any) -> None:
    """`check_schema`, with one metaschema validator for the whole run (building one per call is most of its cost)."""
    error = jsonschema.exceptions.best_match(_METASCHEMA.iter_errors(schema))
    assert error is None, error.message


def sample(connector: OpenApiConnector, tools: Mapping[str, ToolSpec], size: int) -> list[str]:
    """About `size` operations spread over the document, plus the first one with each serialization feature."""
    names = [n for n, op in connector.operations.items() if not _validator_quirk(tools[n])]
    picked = names[:: max(1, len(names) // size)]
    features = {
        "array query": lambda op: any(_is_array(tools[op.tool_name], p.argument) for p in op.parameters),
        "deepObject query": lambda op: any(p.style == "deepObject" for p in op.parameters),
        "header": lambda op: any(p.location == "header" for p in op.parameters),
        "nested form": lambda op: (
            op.body is not None and any(e.style == "deepObject" for e in op.body.encoding.values())
        ),
        "multipart": lambda op: op.body is not None and op.body.content_type.startswith("multipart/"),
    }
    for test in features.values():
        first = next((n for n in names if test(connector.operations[n])), None)
        if first is not None and first not in picked:
            picked.append(first)
    return picked


def _is_array(spec: ToolSpec, argument: str) -> bool:
    schema = spec.input_schema["properties"][argument]
    return isinstance(schema, Mapping) and schema.get("type") in ("array", ["array", "null"])


def _validator_quirk(spec: ToolSpec) -> bool:
    """openapi-core refuses a `readOnly` schema in a path parameter (GitHub's `alert-number`), although the
    API takes it: readOnly only concerns body properties. Those operations are left out of the samples."""
    return any(
        isinstance(s, Mapping)
        and "$ref" in s
        and spec.input_schema["$defs"][s["$ref"].rsplit("/", 1)[1]].get("readOnly")
        for s in spec.input_schema["properties"].values()
    )


@pytest.mark.parametrize(("name", "size"), [("github", 60), ("stripe", 50), ("slack", 45)])
async def test_generated_calls_pass_the_servers_validation(
    name: str, size: int, servers: dict[str, ValidatingServer]
) -> None:
    server = servers[name]
    connector = HttpOpenApiConnector(name, document(name), server.base_url, {"Authorization": "Bearer sk_test_x"})
    tools = (await connector.describe()).tools
    picked = sample(connector, tools, size)
    assert len(picked) >= 40
    before = len(server.seen)
    for tool_name in picked:
        result = await connector.execute_tool(tool_name, generated_args(tools[tool_name]), CTX)
        assert result is None or result["ok"] is True
    accepted(server, before, len(picked))
    seen = server.seen[before:]
    assert any(s.query for s in seen)
    assert any(s.parameters["path"] for s in seen) == (name != "slack")  # Slack's methods take no path parameters
    if name == "github":
        assert any(s.headers.get("Content-Type") == "application/json" and s.body for s in seen)
        assert any(len(v) > 0 for s in seen for v in s.parameters["query"].values() if isinstance(v, list))
    if name == "stripe":
        assert any("%5B0%5D=" in s.query for s in seen)  # an array in a deepObject query parameter
        assert any(re.search(rb"%5B\w+%5D%5B", s.body) for s in seen)  # a nested form body
        assert any(s.headers.get("Content-Type", "").startswith("multipart/form-data") for s in seen)
    if name == "slack":
        assert any(s.parameters["header"].get("token") for s in seen)
        assert any(s.headers.get("Content-Type") == "application/x-www-form-urlencoded" for s in seen)
    await connector.aclose()


async def test_stripe_nested_form_body_round_trips(servers: dict[str, ValidatingServer]) -> None:
    """The server reads back exactly the nested structure the program passed (metadata map, list of objects)."""
    server = servers["stripe"]
    stripe = HttpOpenApiConnector("stripe", document("stripe"), server.base_url, {"Authorization": "Bearer sk"})
    body = {
        "customer": "cus_1",
        "metadata": {"order": "42", "note": "a b&c"},
        "items": [{"price": "price_1", "quantity": 2}, {"price": "price_2"}],
        "expand": ["latest_invoice", "customer"],
        "cancel_at_period_end": False,
    }
    before = len(server.seen)
    echo = await stripe.execute_tool("PostSubscriptions", {"body": body}, CTX)
    accepted(server, before, 1)
    assert echo["body"] == body
    sent = server.seen[-1].body.decode()
    assert "items%5B0%5D%5Bprice%5D=price_1" in sent and "metadata%5Bnote%5D=a%20b%26c" in sent
    listing = await stripe.execute_tool("GetCustomers", {"created": {"gte": 1700000000}, "expand": ["data.tax"]}, CTX)
    accepted(server, before + 1, 1)
    assert listing["parameters"]["query"] == {"created": {"gte": 1700000000}, "expand": ["data.tax"]}


async def test_github_escape_hatch_uses_the_declared_operation(servers: dict[str, ValidatingServer]) -> None:
    server = servers["github"]
    github = HttpOpenApiConnector("github", document("github"), server.base_url)
    await github.describe()
    before = len(server.seen)
    echo = await github.execute_tool(
        "request", {"path": "/repos/octo/hello/issues", "method": "post", "body": {"title": "bug"}}, CTX
    )
    accepted(server, before, 1)
    assert echo["operation"] == "POST /repos/{owner}/{repo}/issues" and echo["body"] == {"title": "bug"}
    with pytest.raises(ValueError, match="path must be a string starting with /"):
        await github.execute_tool("request", {"path": "https://evil.example/x"}, CTX)
    assert len(server.seen) == before + 1


def test_memoized_per_document_object() -> None:
    doc = document("github")
    first = derive_operations(doc)
    assert derive_operations(doc) is first
    again = derive_operations(copy.copy(doc))  # another object: derived afresh, the same result
    assert again is not first and [o.tool_name for o in again] == [o.tool_name for o in first]
    simple_user = [
        o.output_schema["$defs"]["simple-user"]
        for o in first
        if o.output_schema and "simple-user" in o.output_schema.get("$defs", {})
    ]
    assert len(simple_user) > 100 and all(s is simple_user[0] for s in simple_user)  # shared, not copies


async def test_github_names_and_descriptions() -> None:
    github = HttpOpenApiConnector("github", document("github"))
    tools = (await github.describe()).tools
    repos_get = github.operation("repos_get")
    assert repos_get is not None and (repos_get.method, repos_get.path) == ("GET", "/repos/{owner}/{repo}")
    assert repos_get.operation_id == "repos/get"
    assert tools["repos_get"].description.startswith("Get a repository\n\n")
    assert "<" not in tools["repos_get"].description
    create = tools["issues_create"]
    assert create.input_schema["required"] == ["owner", "repo", "body"]
    assert create.output_schema is not None and create.output_schema["$ref"] == "#/$defs/issue"
    assert github.operation("repos_delete") is not None and tools["repos_delete"].output_schema is None


# ---------------------------------------------------------------------------
# A small document: spec §9.4 cases 7-9 and the reference's coverage gaps
# ---------------------------------------------------------------------------


STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
OK = {"200": {"description": "ok"}}


def openapi(paths: dict[str, Any], version: str = "3.0.3", **rest: Any) -> dict[str, Any]:
    return {"openapi": version, "info": {"title": "test", "version": "1"}, "paths": paths, **rest}


def param(name: str, where: str, schema: Any = STR, **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": where, "schema": schema, **extra}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(schema: Any, media: str = "application/json", **extra: Any) -> dict[str, Any]:
    return {"content": {media: {"schema": schema}}, **extra}


def returns(schema: Any, status: str = "200", media: str = "application/json") -> dict[str, Any]:
    return {status: {"description": "ok", "content": {media: {"schema": schema}}}}


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, **({"required": list(required)} if required else {})}


def issues_document() -> dict[str, Any]:
    """The document of the reference's connector tests."""
    owner_repo = [param("owner", "path", required=True), param("repo", "path", required=True)]
    get = {"operationId": "getRepo", "summary": "Get a repository", "description": "Long text."}
    post = {"operationId": "createIssue", "summary": "Create an issue", "parameters": owner_repo}
    return openapi(
        {
            "/repos/{owner}/{repo}": {"get": {**get, "parameters": [*owner_repo, param("page", "query", INT)]}},
            "/repos/{owner}/{repo}/issues": {"post": {**post, "requestBody": body(ref("NewIssue"), required=True)}},
        },
        servers=[{"url": "https://api.example.com"}],
        components={"schemas": {"NewIssue": obj(("title",), title=STR)}},
    )


class Recorder(OpenApiConnector):
    """The authoring surface: a subclass that keeps every request instead of sending it."""

    name = "api"

    def __init__(self, doc: Mapping[str, Any], expose: bool = False) -> None:
        self.doc = doc
        self.expose_spec = expose
        self.requests: list[OpenApiRequest] = []

    async def spec(self) -> Mapping[str, Any]:
        return self.doc

    def request(self, req: OpenApiRequest) -> Any:
        self.requests.append(req)
        return {"ok": True}


async def test_derives_tools_from_the_document() -> None:
    """Spec §9.4 case 7: `getRepo`, `createIssue` and `request`; descriptions from `summary`."""
    tools = (await Recorder(issues_document()).describe()).tools
    assert list(tools) == ["request", "getRepo", "createIssue"]
    assert tools["createIssue"].description == "Create an issue"
    assert tools["getRepo"].description == "Get a repository\n\nLong text."
    assert not any(spec.requires_approval for spec in tools.values())


async def test_instructions_default_to_the_apis_title_and_description() -> None:
    doc = issues_document()
    doc["info"] = {"title": "Issues API", "version": "1", "description": "<p>Track bugs.</p><p>More.</p>"}
    assert (await Recorder(doc).describe()).instructions == "Issues API: Track bugs."
    mine = Recorder(doc)
    mine.instructions = "Use owner=acme."
    assert (await mine.describe()).instructions == "Use owner=acme."
    assert (await Recorder(issues_document()).describe()).instructions == "test"


async def test_combined_input_schema() -> None:
    """Spec §9.4 case 8, with the body's `$ref` kept as a reference into the tool's own `$defs`."""
    schema = (await Recorder(issues_document()).describe()).tools["createIssue"].input_schema
    assert set(schema["properties"]) == {"owner", "repo", "body"}
    assert schema["properties"]["body"] == {"$ref": "#/$defs/NewIssue"}
    assert schema["$defs"] == {"NewIssue": issues_document()["components"]["schemas"]["NewIssue"]}
    assert schema["required"] == ["owner", "repo", "body"]
    assert schema["additionalProperties"] is False
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"owner": "o", "repo": "r", "body": {"title": "t"}})
    assert not validator.is_valid({"owner": "o", "repo": "r", "body": {}})
    assert not validator.is_valid({"owner": "o", "repo": "r", "body": {"title": "t"}, "pag": 2})


async def test_requests_built_from_arguments() -> None:
    """Spec §9.4 case 9."""
    api = Recorder(issues_document())
    await api.execute_tool("getRepo", {"owner": "cloudflare", "repo": "agents", "page": 2}, CTX)
    await api.execute_tool("createIssue", {"owner": "cloudflare", "repo": "agents", "body": {"title": "bug"}}, CTX)
    get, post = api.requests
    assert (get.method, get.path, dict(get.query), get.has_body) == (
        "GET",
        "/repos/cloudflare/agents",
        {"page": 2},
        False,
    )
    assert (post.method, post.path, post.body, post.content_type) == (
        "POST",
        "/repos/cloudflare/agents/issues",
        {"title": "bug"},
        "application/json",
    )
    assert post.query == {} and post.headers == {}
    assert post.operation is api.operation("createIssue")
    await api.execute_tool("getRepo", {"owner": "a b/c", "repo": "ü", "undeclared": 1}, CTX)
    assert api.requests[-1].path == "/repos/a%20b%2Fc/%C3%BC"  # percent-encoded; undeclared arguments dropped
    assert api.requests[-1].query == {}
    doc = issues_document()
    doc["paths"]["/repos/{owner}/{repo}"]["get"]["parameters"][1]["allowReserved"] = True  # keeps its `/`s
    reserved = Recorder(doc)
    await reserved.execute_tool("getRepo", {"owner": "a/b", "repo": "docs/read me.md"}, CTX)
    assert reserved.requests[-1].path == "/repos/a%2Fb/docs/read%20me.md"


async def test_expose_spec() -> None:
    assert "spec" not in (await Recorder(issues_document()).describe()).tools
    doc = issues_document()
    api = Recorder(doc, expose=True)
    tools = (await api.describe()).tools
    assert list(tools)[:2] == ["spec", "request"]
    assert tools["spec"].replay == "reexecute"  # a document is too large to record, and reading it is idempotent
    assert await api.execute_tool("spec", {}, CTX) is doc


async def test_escape_hatch_passes_through() -> None:
    api = Recorder(issues_document())
    await api.execute_tool(
        "request", {"path": "/anything?x=1", "method": "delete", "params": {"a": [1, 2]}, "headers": {"X-A": "1"}}, CTX
    )
    req = api.requests[-1]
    assert (req.method, req.path, dict(req.query), dict(req.headers), req.operation) == (
        "DELETE",
        "/anything?x=1",
        {"a": [1, 2]},
        {"X-A": "1"},
        None,
    )
    await api.execute_tool("request", {"path": "/repos/a/b/issues", "method": "POST", "body": {"title": "t"}}, CTX)
    assert api.requests[-1].operation is api.operation("createIssue")
    assert api.requests[-1].content_type == "application/json"
    headers = {"content-type": "text/csv", "X-A": "1"}
    await api.execute_tool("request", {"path": "/upload", "method": "PUT", "body": "a,b", "headers": headers}, CTX)
    req = api.requests[-1]
    assert (req.content_type, dict(req.headers), req.body) == ("text/csv", {"X-A": "1"}, "a,b")  # the header's type


def naming_document() -> dict[str, Any]:
    named = {
        name: {"operationId": name, "responses": OK} for name in ("repos/delete", "list", "request", "spec", "class")
    }
    return openapi(
        {
            "/repos/{owner}/{repo}": {"get": {"responses": OK}, "delete": named["repos/delete"]},
            "/users": {"post": {"responses": OK}, "get": named["list"]},
            "/people": {"get": named["list"]},
            "/raw": {"get": named["request"], "put": named["spec"]},
            "/class": {"get": named["class"]},
            "/": {"get": {"responses": OK}},
        }
    )


async def test_names_fallbacks_collisions_and_reserved_names() -> None:
    doc = naming_document()
    with pytest.warns(UserWarning) as caught:
        api = Recorder(doc)
        tools = (await api.describe()).tools
    assert list(tools) == [
        "request",
        "get_repos_owner_repo",
        "repos_delete",
        "list",
        "post_users",
        "list_2",
        "request_2",
        "spec_2",
        "class_",
        "get",
    ]
    assert len(tools) == count_operations(doc) + 1  # nothing dropped
    messages = [str(w.message) for w in caught if str(w.message).startswith("OpenAPI operation")]
    assert messages == [
        'OpenAPI operation GET /people maps to tool name "list", which is already used; it is exposed as "list_2". '
        "Set a unique operationId to choose its name.",
        'OpenAPI operation GET /raw maps to tool name "request", which is reserved; it is exposed as "request_2". '
        "Set a unique operationId to choose its name.",
        'OpenAPI operation PUT /raw maps to tool name "spec", which is reserved; it is exposed as "spec_2". '
        "Set a unique operationId to choose its name.",
    ]
    assert api.operation("list_2") is not None and api.operation("list_2").path == "/people"  # type: ignore[union-attr]
    assert tools["get_repos_owner_repo"].description == "GET /repos/{owner}/{repo}"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        await Recorder(doc).describe()  # memoized: the warnings were given once, at derivation


def parameters_document() -> dict[str, Any]:
    shared = [{"$ref": "#/components/parameters/ItemId"}, param("X-Trace", "header"), param("limit", "query", INT)]
    own = [
        param("id", "query", description="A query id."),
        param("body", "query", {"type": "boolean"}),
        param("limit", "query", {"type": "integer", "maximum": 5}, required=True),  # overrides the path-level one
        param("Accept", "header"),  # ignored, as OpenAPI says
        param("session", "cookie"),
    ]
    put = {"operationId": "putItem", "parameters": own, "requestBody": {"$ref": "#/components/requestBodies/Item"}}
    return openapi(
        {"/items/{id}": {"parameters": shared, "put": {**put, "responses": {"204": {"description": "done"}}}}},
        components={
            "parameters": {"ItemId": param("id", "path", INT, required=True, description="The item.")},
            "requestBodies": {"Item": body(ref("Item"), required=True)},
            "schemas": {"Item": obj(name=STR)},
        },
    )


async def test_parameters_merged_resolved_and_never_overwritten() -> None:
    api = Recorder(parameters_document())
    schema = (await api.describe()).tools["putItem"].input_schema
    props = schema["properties"]
    assert list(props) == ["id", "X-Trace", "limit", "id_query", "body_query", "session", "body"]
    assert props["id"] == {"type": "integer", "description": "The item."}  # the path-level `$ref` parameter
    assert props["id_query"] == {"type": "string", "description": "A query id."}
    assert props["limit"] == {"type": "integer", "maximum": 5}  # the operation's definition wins
    assert props["body"] == {"$ref": "#/$defs/Item"} and "Item" in schema["$defs"]  # the `$ref` request body
    assert schema["required"] == ["id", "limit", "body"]
    op = api.operation("putItem")
    assert op is not None and op.body is not None and op.body.required
    assert [(p.name, p.location, p.argument) for p in op.parameters] == [
        ("id", "path", "id"),
        ("X-Trace", "header", "X-Trace"),
        ("limit", "query", "limit"),
        ("id", "query", "id_query"),
        ("body", "query", "body_query"),
        ("session", "cookie", "session"),
    ]
    args = {"id": 7, "id_query": "q", "body_query": True, "limit": 3, "X-Trace": "t1", "session": "s", "body": {}}
    await api.execute_tool("putItem", args, CTX)
    req = api.requests[-1]
    assert req.path == "/items/7"
    assert dict(req.query) == {"limit": 3, "id": "q", "body": True}
    assert dict(req.headers) == {"X-Trace": "t1"} and dict(req.cookies) == {"session": "s"}
    assert req.body == {} and req.content_type == "application/json"


def schemas_document(version: str = "3.0.3") -> dict[str, Any]:
    add_pet = {
        "operationId": "addPet",
        "requestBody": body(ref("NewPet")),
        "responses": {"201": {"$ref": "#/components/responses/Pet"}, "204": {"description": "nothing"}},
    }
    pet = obj(
        kind={"oneOf": [ref("Cat"), ref("Dog")]},
        owner={"anyOf": [ref("Named"), STR]},
        parent={"allOf": [ref("Pet")], "nullable": True},
    )
    name = {"type": "string", "nullable": True, "example": "Rex", "x-internal": 1}
    age = {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 30, "exclusiveMaximum": False}
    schemas = {
        "NewPet": {"allOf": [ref("Named"), obj(age=ref("Age"))]},
        "Pet": pet,
        "Named": {**obj(("name",), name=name), "discriminator": {"propertyName": "name"}},
        "Age": age,
        "Cat": obj(("meows",), meows={"type": "boolean"}),
        "Dog": obj(("barks",), barks={"type": "boolean"}),
    }
    responses = {"Pet": {"description": "a pet", "content": {"application/json": {"schema": ref("Pet")}}}}
    return openapi({"/pets": {"post": add_pet}}, version, components={"responses": responses, "schemas": schemas})


async def test_openapi_30_schemas_become_json_schema_2020_12() -> None:
    spec = (await Recorder(schemas_document()).describe()).tools["addPet"]
    schema = spec.input_schema
    assert set(schema["$defs"]) == {"NewPet", "Named", "Age"}  # only what the input reaches
    named = schema["$defs"]["Named"]
    assert named["properties"]["name"] == {"type": ["string", "null"], "examples": ["Rex"]}
    assert "discriminator" not in named
    assert schema["$defs"]["Age"] == {"type": "number", "exclusiveMinimum": 0, "maximum": 30}
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert validator.is_valid({"body": {"name": None, "age": 0.5}})
    assert not validator.is_valid({"body": {"name": "Rex", "age": 0}})  # exclusive minimum
    assert not validator.is_valid({"body": {"age": 3}})  # `name` is required through the allOf `$ref`

    output = spec.output_schema
    assert output is not None and output["$ref"] == "#/$defs/Pet"  # the 201 response, through its `$ref`
    assert set(output["$defs"]) == {"Pet", "Cat", "Dog", "Named"}
    jsonschema.Draft202012Validator.check_schema(output)
    out = jsonschema.Draft202012Validator(output)
    assert out.is_valid({"kind": {"meows": True}, "owner": "me", "parent": None})
    assert out.is_valid({"parent": {"kind": {"barks": False}, "owner": {"name": "x"}}})  # recursive, through $defs
    assert not out.is_valid({"kind": {"meows": True, "barks": True}})  # oneOf: exactly one
    assert output["$defs"]["Named"] is schema["$defs"]["Named"]  # one converted object, shared
    assert "class NewPet(TypedDict):" in PythonDeclarations().method("api", "addPet", spec)


async def test_openapi_31_schemas_pass_through() -> None:
    doc = schemas_document("3.1.0")
    doc["components"]["schemas"]["Named"] = {
        "type": "object",
        "properties": {
            "name": {"type": ["string", "null"], "examples": ["Rex"]},
            "tag": {"$ref": "#/components/schemas/Age", "description": "sibling"},
        },
    }
    doc["components"]["schemas"]["Age"] = {"type": "number", "exclusiveMinimum": 0}
    schema = (await Recorder(doc).describe()).tools["addPet"].input_schema
    assert schema["$defs"]["Named"]["properties"] == {
        "name": {"type": ["string", "null"], "examples": ["Rex"]},
        "tag": {"$ref": "#/$defs/Age", "description": "sibling"},
    }
    assert schema["$defs"]["Age"] == {"type": "number", "exclusiveMinimum": 0}


def one_way_document() -> dict[str, Any]:
    pet = obj(
        ("id", "name", "password", "owner"),
        id={"type": "integer", "readOnly": True},
        name=STR,
        password={"type": "string", "writeOnly": True},
        owner=ref("Owner"),
        kind={"$ref": "#/components/schemas/Kind", "nullable": True},  # 3.0 sibling, as documents use it
        size={"allOf": [ref("Size")], "nullable": True},
        color={"type": "string", "enum": ["red", "blue"], "nullable": True},
    )
    owner = obj(("uid", "name"), uid=ref("Uid"), name=STR)  # `uid` is read-only through its `$ref`
    add = {"operationId": "addPet", "requestBody": body(ref("Pet"), required=True), "responses": returns(ref("Pet"))}
    tag = {"operationId": "getTag", "responses": returns(ref("Tag"))}
    schemas = {
        "Pet": pet,
        "Owner": owner,
        "Uid": {"type": "string", "readOnly": True},
        "Kind": {"type": "string", "enum": ["cat", "dog"]},
        "Size": {"type": "integer", "minimum": 1},
        "Tag": obj(("label",), label=STR),  # nothing one-way: shared by both directions
    }
    return openapi({"/pets": {"post": add}, "/tags": {"get": tag}}, components={"schemas": schemas})


async def test_read_only_and_write_only_properties_are_required_one_way_only() -> None:
    spec = (await Recorder(one_way_document()).describe()).tools["addPet"]
    request = jsonschema.Draft202012Validator(spec.input_schema)
    assert spec.input_schema["$defs"]["Pet"]["required"] == ["name", "password", "owner"]
    assert spec.input_schema["$defs"]["Owner"]["required"] == ["name"]
    assert request.is_valid({"body": {"name": "Rex", "password": "p", "owner": {"name": "me"}}})
    assert not request.is_valid({"body": {"name": "Rex", "owner": {"name": "me"}}})  # writeOnly: still required
    assert spec.output_schema is not None
    response = jsonschema.Draft202012Validator(spec.output_schema)
    assert spec.output_schema["$defs"]["Pet"]["required"] == ["id", "name", "owner"]
    assert response.is_valid({"id": 1, "name": "Rex", "owner": {"uid": "u", "name": "me"}})
    assert not response.is_valid({"name": "Rex", "owner": {"uid": "u", "name": "me"}})  # readOnly: required here
    tag = (await Recorder(one_way_document()).describe()).tools["getTag"].output_schema
    assert tag is not None
    assert "Tag" in tag["$defs"] and spec.input_schema["$defs"]["Kind"] is spec.output_schema["$defs"]["Kind"]
    stub = PythonDeclarations().method("api", "addPet", spec)
    assert "class Pet(TypedDict):\n    id: NotRequired[int]\n    name: str\n" in stub  # what the model reads
    assert "-> Pet2:" in stub and "class Pet2(TypedDict):\n    id: int\n" in stub  # the response's own Pet


async def test_nullable_combines_with_refs_enums_and_all_of() -> None:
    schema = (await Recorder(one_way_document()).describe()).tools["addPet"].input_schema
    props = schema["$defs"]["Pet"]["properties"]
    assert props["kind"] == {"anyOf": [{"$ref": "#/$defs/Kind"}, {"type": "null"}]}
    assert props["color"] == {"type": ["string", "null"], "enum": ["red", "blue", None]}
    validator = jsonschema.Draft202012Validator(schema)
    pet = {"name": "Rex", "password": "p", "owner": {"name": "me"}}
    for field, ok, bad in (("kind", "cat", "cow"), ("size", 2, 0), ("color", "red", "green")):
        assert validator.is_valid({"body": {**pet, field: ok}}) and validator.is_valid({"body": {**pet, field: None}})
        assert not validator.is_valid({"body": {**pet, field: bad}}), field


def broken_document() -> dict[str, Any]:
    ok = {"operationId": "ok", "responses": OK}
    loop_body = {"operationId": "loop", "requestBody": body(ref("A")), "responses": OK}
    schemas = {
        "A": {"allOf": [ref("B"), obj(a=STR)]},
        "B": {"anyOf": [ref("A"), {"type": "string"}]},  # A and B apply to the same value forever
        "Tree": obj(children={"type": "array", "items": ref("Tree")}),  # recursion through items: fine
    }
    return openapi(
        {
            "/ok": {"get": ok},
            "/gone": {"$ref": "#/components/pathItems/Gone"},
            "/odd": {"get": "not an operation", "post": {"operationId": "odd", "requestBody": {"$ref": "#/nope"}}},
            "/loop": {"post": loop_body},
            "/tree": {"get": {"operationId": "tree", "parameters": [param("t", "query", ref("Tree"))]}},
            "/dangling": {"get": {"operationId": "dangling", "parameters": [param("d", "query", ref("Missing"))]}},
            "/undeclared/{x}": {"get": {"operationId": "undeclared", "responses": OK}},
        },
        components={"schemas": schemas},
    )


def test_malformed_documents_warn_and_keep_every_other_operation() -> None:
    with pytest.warns(UserWarning) as caught:
        ops = {op.tool_name: op for op in derive_operations(broken_document())}
    assert list(ops) == ["ok", "odd", "loop", "tree", "dangling", "undeclared"]
    messages = "\n".join(str(w.message) for w in caught)
    assert "OpenAPI path '/gone' is skipped: its $ref names nothing. The `request` tool can still call it." in messages
    assert "OpenAPI GET /odd is skipped: the operation is not an object." in messages
    assert "OpenAPI POST /odd: its requestBody is unusable" in messages and ops["odd"].body is None
    assert "OpenAPI $ref '#/components/schemas/Missing' names nothing in the document" in messages
    assert "OpenAPI schema 'A': its $ref '#/components/schemas/B' leads back to it" in messages
    loop = jsonschema.Draft202012Validator(ops["loop"].input_schema)
    assert loop.is_valid({"body": {"a": "x"}}) and not loop.is_valid({"body": {"a": 1}})  # no endless recursion
    tree = jsonschema.Draft202012Validator(ops["tree"].input_schema)
    assert tree.is_valid({"t": {"children": [{"children": []}]}}) and not tree.is_valid({"t": {"children": [1]}})
    assert jsonschema.Draft202012Validator(ops["dangling"].input_schema).is_valid({"d": {"any": "thing"}})
    assert "OpenAPI GET /undeclared/{x}: the path parameter 'x' is not declared; it is taken as a string." in messages
    assert build_request(ops["undeclared"], {"x": "a b"}).path == "/undeclared/a%20b"
    with pytest.warns(UserWarning, match=r"The OpenAPI document has no `paths`: only the `request` tool"):
        assert derive_operations({"openapi": "3.0.3", "info": {}}) == ()


def test_documents_that_are_not_openapi_3_are_refused() -> None:
    with pytest.raises(ValueError, match=r"Swagger 2\.0 documents are not supported"):
        derive_operations({"swagger": "2.0", "paths": {}})
    with pytest.raises(ValueError, match=r"Not an OpenAPI 3\.x document"):
        derive_operations({"paths": {}})


async def test_memoized_across_instances_and_per_instance() -> None:
    doc = issues_document()
    first, second = Recorder(doc), Recorder(doc)
    one, two = (await first.describe()).tools, (await second.describe()).tools
    assert one["createIssue"].input_schema is two["createIssue"].input_schema
    assert first.operation("createIssue") is second.operation("createIssue")
    assert one["createIssue"].execute is not two["createIssue"].execute  # closures are per instance
    assert await first.describe() is await first.describe()
    fresh = Recorder(issues_document())  # an equal document, another object: derived again
    assert (await fresh.describe()).tools["createIssue"].input_schema is not one["createIssue"].input_schema


# ---------------------------------------------------------------------------
# HTTP against a small validating server, under a base URL with a path prefix
# ---------------------------------------------------------------------------


def http_document() -> dict[str, Any]:
    item = obj(id=INT, name=STR)
    array = {"type": "array", "items": STR}
    get_item = [
        param("X-Request-Id", "header", {"type": "string", "format": "uuid"}, required=True),
        param("X-Flags", "header", array),
        param("session", "cookie"),
    ]
    filter_ = obj(size=INT, range=obj(gte=INT))
    search = [
        param("tags", "query", array, explode=False),
        param("ids", "query", {"type": "array", "items": INT}, style="pipeDelimited", explode=False),
        param("colors", "query", array),
        param("filter", "query", filter_, style="deepObject", explode=True),
        param("q", "query"),
        param("all", "query", {"type": "boolean"}),
    ]
    lines = {"type": "array", "items": obj(sku=STR, qty=INT)}
    form = obj(
        ("name",),
        name=STR,
        count=INT,
        agree={"type": "boolean"},
        tags=array,
        meta={"additionalProperties": STR},
        lines=lines,
    )
    deep = {"style": "deepObject", "explode": True}
    form_body = {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": form, "encoding": {"meta": deep, "lines": deep}}},
    }
    binary = {"type": "string", "format": "binary"}
    upload = obj(file=binary, note=STR, meta=obj(a=INT), tags=array, parts={"type": "array", "items": binary})
    servers = [
        {"url": "https://{region}.example.com/v{n}", "variables": {"region": {"default": "eu"}, "n": {"default": "2"}}}
    ]
    return openapi(
        {
            "/items/{id}": {
                "parameters": [param("id", "path", INT, required=True)],
                "get": {"parameters": get_item, "responses": returns(item)},
                "delete": {
                    "operationId": "deleteItem",
                    "parameters": [param("Idempotency-Key", "header")],  # an API that declares the header
                    "responses": {"204": {"description": "gone"}},
                },
            },
            "/names/{name}": {
                "get": {"operationId": "byName", "parameters": [param("name", "path", required=True)], "responses": OK}
            },
            "/search": {"get": {"operationId": "search", "parameters": search, "responses": returns(item)}},
            "/forms": {
                "post": {"operationId": "submitForm", "requestBody": form_body, "responses": returns(obj(), "201")}
            },
            "/upload": {
                "post": {
                    "operationId": "upload",
                    "requestBody": body(upload, "multipart/form-data"),
                    "responses": returns(item),
                }
            },
            "/raw": {
                "put": {
                    "operationId": "putRaw",
                    "requestBody": body(binary, "application/octet-stream", required=True),
                    "responses": OK,
                }
            },
            "/text": {"get": {"operationId": "text", "responses": returns(STR, media="text/plain")}},
            "/blob": {"get": {"operationId": "blob", "responses": returns(STR, media="application/octet-stream")}},
        },
        servers=servers,
    )


@pytest.fixture(scope="module")
def http_server() -> Iterator[ValidatingServer]:
    with ValidatingServer(http_document(), prefix="/v2") as server:
        yield server


@pytest.fixture
async def http_api(http_server: ValidatingServer) -> Any:
    http_server.clear()
    base_url = http_server.api_url + "/"  # a trailing slash, and operation paths that start with one
    api = HttpOpenApiConnector("items", http_document(), base_url, {"Authorization": "Bearer t"})
    await api.describe()
    yield api
    await api.aclose()


async def test_path_header_and_cookie_parameters(http_api: HttpOpenApiConnector, http_server: ValidatingServer) -> None:
    args = {"id": 5, "X-Request-Id": "123e4567-e89b-12d3-a456-426614174000", "X-Flags": ["a", "b"], "session": "s1"}
    echo = await http_api.execute_tool("get_items_id", args, CTX)
    accepted(http_server, 0, 1)
    seen = http_server.seen[0]
    assert seen.raw_path == "/v2/items/5"
    assert seen.headers["X-Request-Id"] == args["X-Request-Id"] and seen.headers["X-Flags"] == "a,b"
    assert seen.headers["Authorization"] == "Bearer t"
    assert echo["parameters"]["cookie"] == {"session": "s1"}
    assert echo["parameters"]["header"]["X-Flags"] == ["a", "b"]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("..", "%2E%2E"),  # not a dot segment, which would leave /names/ (`DELETE /items/..` deletes /items)
        (".", "%2E"),
        ("a/b?c#d", "a%2Fb%3Fc%23d"),
        ("née 100%", "n%C3%A9e%20100%25"),
        ("a,b;c=d", "a%2Cb%3Bc%3Dd"),
    ],
)
async def test_path_values_are_percent_encoded(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer, name: str, raw: str
) -> None:
    echo = await http_api.execute_tool("byName", {"name": name}, CTX)
    accepted(http_server, 0, 1)
    assert http_server.seen[0].raw_path == f"/v2/names/{raw}"
    assert echo["parameters"]["path"] == {"name": name}


async def test_an_empty_path_value_is_refused_before_any_request(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    with pytest.raises(ValueError, match=r'the path parameter "name" is empty; give it a value'):
        await http_api.execute_tool("byName", {"name": ""}, CTX)
    assert http_server.seen == []


async def test_header_values_that_http_cannot_carry_are_refused(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    uuid = "123e4567-e89b-12d3-a456-426614174000"
    for bad in ("a\r\nX-Injected: 1", "née"):
        with pytest.raises(ValueError, match=r"the value of header 'X-Flags' must be printable ASCII on one line"):
            await http_api.execute_tool("get_items_id", {"id": 1, "X-Request-Id": uuid, "X-Flags": [bad]}, CTX)
    with pytest.raises(ValueError, match=r"'X Bad' is not a valid header name"):
        await http_api.execute_tool("request", {"path": "/text", "headers": {"X Bad": "1"}}, CTX)
    injected = {"path": "/raw", "method": "PUT", "body": "x", "content_type": "text/plain\r\nX-Injected: 1"}
    with pytest.raises(ValueError, match=r"the value of header 'Content-Type' must be printable ASCII"):
        await http_api.execute_tool("request", injected, CTX)
    with pytest.raises(ValueError, match=r"GET /a\nb: not a usable URL"):
        await http_api.execute_tool("request", {"path": "/a\nb"}, CTX)
    assert http_server.seen == []


async def test_cookie_parameters_join_a_configured_cookie(http_server: ValidatingServer) -> None:
    http_server.clear()
    api = HttpOpenApiConnector("items", http_document(), http_server.api_url, {"cookie": "auth=k"})
    args = {"id": 2, "X-Request-Id": "123e4567-e89b-12d3-a456-426614174000", "session": "s 1"}
    echo = await api.execute_tool("get_items_id", args, CTX)
    await api.aclose()
    accepted(http_server, 0, 1)
    assert http_server.seen[0].headers["Cookie"] == "auth=k; session=s%201"
    assert echo["parameters"]["cookie"] == {"session": "s%201"}  # the declared one; a space cannot be in a cookie


async def test_query_styles(http_api: HttpOpenApiConnector, http_server: ValidatingServer) -> None:
    args = {
        "tags": ["a", "b c"],
        "ids": [1, 2],
        "colors": ["red", "blue"],
        "filter": {"size": 3, "range": {"gte": 2}},
        "q": "x&y=z/ü",
        "all": False,
    }
    echo = await http_api.execute_tool("search", args, CTX)
    accepted(http_server, 0, 1)
    assert http_server.seen[0].query == (
        "tags=a,b%20c&ids=1%7C2&colors=red&colors=blue&filter%5Bsize%5D=3&filter%5Brange%5D%5Bgte%5D=2"
        "&q=x%26y%3Dz%2F%C3%BC&all=false"
    )
    assert echo["parameters"]["query"] == args


def one_query(schema: Any, value: Any, **extra: Any) -> str:
    """The query string of one parameter declared with `schema` and `extra` (style, explode, ...)."""
    doc = openapi({"/q": {"get": {"operationId": "q", "parameters": [param("p", "query", schema, **extra)]}}})
    return query_string(OpenApiRequest("GET", "/q", {"p": value}, operation=derive_operations(doc)[0]))


ARRAY: dict[str, Any] = {"type": "array", "items": STR}
OBJECT: dict[str, Any] = {"type": "object"}


@pytest.mark.parametrize(
    ("schema", "value", "extra", "expected"),
    [
        # form (the query default): exploded, then not
        (ARRAY, ["a", "b,c"], {}, "p=a&p=b%2Cc"),
        (ARRAY, ["a", "b,c"], {"explode": False}, "p=a,b%2Cc"),  # a `,` in a value is not a delimiter
        (OBJECT, {"x": 1, "y": True}, {}, "x=1&y=true"),
        (OBJECT, {"x": 1, "y": False}, {"explode": False}, "p=x,1,y,false"),
        # spaceDelimited and pipeDelimited
        (ARRAY, ["a", "b"], {"style": "spaceDelimited", "explode": False}, "p=a%20b"),
        (ARRAY, ["a", "b"], {"style": "spaceDelimited", "explode": True}, "p=a&p=b"),
        (ARRAY, ["a", "b"], {"style": "spaceDelimited"}, "p=a%20b"),  # explode is false by default but for form
        (ARRAY, ["a", "b"], {"style": "pipeDelimited", "explode": False}, "p=a%7Cb"),
        (OBJECT, {"x": 1}, {"style": "pipeDelimited", "explode": False}, "p=x%7C1"),
        # deepObject, nested as Stripe reads it
        (
            OBJECT,
            {"a": {"b": [1, 2]}},
            {"style": "deepObject", "explode": True},
            "p%5Ba%5D%5Bb%5D%5B0%5D=1&p%5Ba%5D%5Bb%5D%5B1%5D=2",
        ),
        # booleans as JSON spells them; None is absent, also inside objects and arrays (indexes stay dense)
        ({"type": "boolean"}, False, {}, "p=false"),
        ({"type": "boolean"}, None, {}, ""),
        (OBJECT, {"x": None, "y": 2}, {}, "y=2"),
        (ARRAY, [None, "a"], {"explode": False}, "p=a"),
        (OBJECT, {"l": [None, {"k": "v"}]}, {"style": "deepObject", "explode": True}, "p%5Bl%5D%5B0%5D%5Bk%5D=v"),
        # allowReserved, and a parameter described by `content`
        (STR, "a/b:c?d&e", {"allowReserved": True}, "p=a/b:c?d%26e"),
    ],
)
def test_query_serialization_per_style(schema: Any, value: Any, extra: dict[str, Any], expected: str) -> None:
    assert one_query(schema, value, **extra) == expected


def test_query_parameter_described_by_content_is_json() -> None:
    doc = openapi(
        {
            "/q": {
                "get": {
                    "operationId": "q",
                    "parameters": [{"name": "j", "in": "query", "content": {"application/json": {"schema": OBJECT}}}],
                }
            }
        }
    )
    req = OpenApiRequest("GET", "/q", {"j": {"k": [1]}}, operation=derive_operations(doc)[0])
    assert query_string(req) == "j=%7B%22k%22%3A%5B1%5D%7D"


def test_path_styles() -> None:
    """`simple`, `label` and `matrix`, with arrays and objects: delimiters as they are, values escaped."""

    def path(schema: Any, value: Any, **extra: Any) -> str:
        p = param("p", "path", schema, required=True, **extra)
        doc = openapi({"/x/{p}": {"get": {"operationId": "x", "parameters": [p]}}})
        return build_request(derive_operations(doc)[0], {"p": value}).path

    assert path(ARRAY, ["a,b", "c"]) == "/x/a%2Cb,c"
    assert path(OBJECT, {"k": "v w", "n": 1}) == "/x/k,v%20w,n,1"
    assert path(OBJECT, {"k": "v", "n": 1}, explode=True) == "/x/k=v,n=1"
    assert path(ARRAY, ["a", "b"], style="label") == "/x/.a,b"
    assert path(ARRAY, ["a", "b"], style="label", explode=True) == "/x/.a.b"
    assert path(STR, "5", style="matrix") == "/x/;p=5"
    assert path(ARRAY, ["a", "b"], style="matrix") == "/x/;p=a,b"
    assert path(ARRAY, ["a", "b"], style="matrix", explode=True) == "/x/;p=a;p=b"
    assert path(OBJECT, {"k": "v"}, style="matrix", explode=True) == "/x/;k=v"
    assert path(STR, "docs/../read me", allowReserved=True) == "/x/docs/%2E%2E/read%20me"  # `/` kept, no dot segment
    with pytest.raises(ValueError, match='the path parameter "p" is empty'):
        path(ARRAY, [])


async def test_form_body_with_encoding(http_api: HttpOpenApiConnector, http_server: ValidatingServer) -> None:
    body = {
        "name": "n",
        "count": 2,
        "agree": False,
        "tags": ["x", "y"],
        "meta": {"k": "v w", "gone": None},
        "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}],
    }
    echo = await http_api.execute_tool("submitForm", {"body": body}, CTX)
    accepted(http_server, 0, 1)
    assert http_server.seen[0].body == (
        b"name=n&count=2&agree=false&tags=x&tags=y&meta%5Bk%5D=v%20w"
        b"&lines%5B0%5D%5Bsku%5D=a&lines%5B0%5D%5Bqty%5D=1&lines%5B1%5D%5Bsku%5D=b&lines%5B1%5D%5Bqty%5D=2"
    )
    assert echo["body"] == {**body, "meta": {"k": "v w"}}


async def test_multipart_body(http_api: HttpOpenApiConnector, http_server: ValidatingServer) -> None:
    body = {"file": b"\x00\x01raw", "note": "hi", "meta": {"a": 1}, "tags": ["x", "y"], "parts": [b"p1", b"p2"]}
    echo = await http_api.execute_tool("upload", {"body": body}, CTX)
    accepted(http_server, 0, 1)
    seen = http_server.seen[0]
    assert seen.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert echo["body"]["note"] == "hi" and echo["body"]["meta"] == {"a": 1} and echo["body"]["tags"] == ["x", "y"]
    assert seen.body.count(b'name="parts"; filename="parts"') == 2 and seen.body.count(b'name="tags"\r\n') == 2
    assert b"\x00\x01raw" in seen.body


async def test_binary_body_sent_by_a_program_through_the_runtime(
    make_runtime: RuntimeFactory, http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    """`format: binary` accepts the bytes a program has (validated as the runtime sees them) and sends them raw."""
    runtime = make_runtime(http_api)
    done = await runtime.execute('return await items.putRaw(body=b"\\x89PNG\\x00")')
    assert done.status == "completed", done.error
    accepted(http_server, 0, 1)
    seen = http_server.seen[0]
    assert seen.body == b"\x89PNG\x00" and seen.headers["Content-Type"] == "application/octet-stream"


async def test_responses_json_text_binary_and_no_content(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    http_server.reply("GET", "/text", Reply(200, "héllo".encode(), "text/plain; charset=utf-8"))
    http_server.reply("GET", "/blob", Reply(200, b"\x89PNG\x00", "application/octet-stream"))
    assert await http_api.execute_tool("text", {}, CTX) == "héllo"
    assert await http_api.execute_tool("blob", {}, CTX) == b"\x89PNG\x00"
    assert await http_api.execute_tool("deleteItem", {"id": 1}, CTX) is None
    assert http_server.seen[-1].method == "DELETE"
    latin = '{"name": "café"}'.encode("latin-1")  # the declared charset, not UTF-8
    http_server.reply("GET", "/search", Reply(200, latin, "application/json; charset=iso-8859-1"))
    assert await http_api.execute_tool("search", {}, CTX) == {"name": "café"}
    http_server.reply("GET", "/search", Reply(200, b'{"ok": true}', "application/vnd.api+json"))
    assert await http_api.execute_tool("search", {}, CTX) == {"ok": True}
    http_server.reply("GET", "/search", Reply(200, b"", "application/json"))  # an empty 200 body
    assert await http_api.execute_tool("search", {}, CTX) is None
    accepted(http_server, 0, 6)


async def test_non_2xx_is_a_tool_error_the_model_can_act_on(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    problem = json.dumps({"title": "Not Found", "detail": "no such item", "pad": "x" * 5000}).encode()
    http_server.reply("GET", "/search", Reply(404, problem, "application/problem+json"))
    with pytest.raises(OpenApiHttpError) as raised:
        await http_api.execute_tool("search", {"q": "a"}, CTX)
    error = raised.value
    assert (error.method, error.path, error.status) == ("GET", "/search", 404)
    message = str(error)
    assert message.startswith('GET /search failed with HTTP 404 Not Found: {"title": "Not Found", "detail": "no such')
    assert len(message) < 800 and len(error.body) == 501 and error.body.endswith("…")  # a bounded excerpt
    assert "check the identifiers in the path" in message
    http_server.reply("GET", "/search", Reply(422, b'{"message": "Validation Failed"}'))
    with pytest.raises(OpenApiHttpError, match=r'codemode.describe\("items.search"\) shows the expected arguments'):
        await http_api.execute_tool("search", {}, CTX)
    http_server.reply("GET", "/search", Reply(503, b""))
    with pytest.raises(OpenApiHttpError, match=r"HTTP 503 Service Unavailable\. The API failed on its side"):
        await http_api.execute_tool("search", {}, CTX)


async def test_a_redirect_is_reported_with_its_location(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    """Redirects are not followed (they could take the credentials elsewhere): the model learns where it points."""
    where = {"Location": "https://downloads.example.com/archive.tar.gz"}
    http_server.reply("GET", "/text", Reply(302, content_type=None, headers=where))
    with pytest.raises(OpenApiHttpError, match=r"HTTP 302 Found \(Location: https://downloads\.example\.com/archive"):
        await http_api.execute_tool("text", {}, CTX)
    accepted(http_server, 0, 1)


async def test_timeouts_and_unreachable_apis_are_clear_errors() -> None:
    with socket.socket() as silent:  # accepts connections (the backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        api = HttpOpenApiConnector("items", http_document(), url, timeout=0.2)
        with pytest.raises(TimeoutError, match=r"GET /text: no answer in time.*may still have taken effect"):
            await api.execute_tool("text", {}, CTX)
        await api.aclose()
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        api = HttpOpenApiConnector("items", http_document(), url)
        with pytest.raises(ConnectionError, match=rf"GET /text: could not reach {url} .*The API may be down"):
            await api.execute_tool("text", {}, CTX)
        await api.aclose()


async def test_the_escape_hatch_stays_under_the_base_url(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    echo = await http_api.execute_tool("request", {"path": "/names/x", "params": {"all": True}}, CTX)
    assert echo["operation"] == "GET /names/{name}"
    assert (http_server.seen[0].raw_path, http_server.seen[0].query) == ("/v2/names/x", "all=true")
    for path in ("/../items/1", "/names/../../x", "/%2e%2E/x", "/names/x#frag"):
        with pytest.raises(ValueError, match=r"path must be a string starting with /|leaves the API"):
            await http_api.execute_tool("request", {"path": path}, CTX)
    with pytest.raises(ValueError, match=r"leaves the API; give a path under http://127\.0\.0\.1:\d+/v2\."):
        await http_api.request(OpenApiRequest(method="GET", path="@evil.example/x"))  # a subclass passing it along
    assert len(http_server.seen) == 1


async def test_base_url_from_servers_and_the_client_lifecycle(http_server: ValidatingServer) -> None:
    api = HttpOpenApiConnector("items", http_document())
    await api.describe()
    assert api._base(None) == "https://eu.example.com/v2"  # the first server, variables filled with defaults
    for servers in ([{"url": "/api"}], [{"url": "https://{tenant}.example.com"}]):  # relative; a variable unset
        with pytest.raises(ValueError, match=r"gives no absolute server URL .* pass base_url"):
            await HttpOpenApiConnector("items", {**http_document(), "servers": servers}).describe()
    async with httpx.AsyncClient() as client:
        given = HttpOpenApiConnector("items", http_document(), http_server.base_url, client=client)
        assert given.client is client
        await given.aclose()
        assert not client.is_closed  # a client we were given belongs to its owner
    owned = HttpOpenApiConnector("items", http_document(), http_server.base_url)
    created = owned.client
    await owned.aclose()
    assert created.is_closed


async def test_spec_from_json_and_yaml_files(tmp_path: Path, http_server: ValidatingServer) -> None:
    import yaml

    (tmp_path / "api.json").write_text(json.dumps(http_document()))
    (tmp_path / "api.yaml").write_text(yaml.safe_dump(http_document(), sort_keys=False))
    from_json = HttpOpenApiConnector("items", tmp_path / "api.json", http_server.api_url)
    from_yaml = HttpOpenApiConnector("items", str(tmp_path / "api.yaml"), http_server.api_url)
    again = HttpOpenApiConnector("items", tmp_path / "api.json", http_server.api_url)
    tools = (await from_json.describe()).tools
    assert list((await from_yaml.describe()).tools) == list(tools)
    assert (await again.describe()).tools["search"].input_schema is tools["search"].input_schema  # file read once
    http_server.clear()
    await from_yaml.execute_tool("search", {"q": "y"}, CTX)
    accepted(http_server, 0, 1)
    for api in (from_json, from_yaml, again):
        await api.aclose()


async def test_document_files_that_are_unusual_or_broken(tmp_path: Path) -> None:
    unquoted = "openapi: 3.1\ninfo: {title: t, version: '1'}\npaths:\n  /x: {get: {operationId: getX}}\n"
    (tmp_path / "numeric.yml").write_text(unquoted)  # YAML reads `3.1` as a number
    assert list((await HttpOpenApiConnector("api", tmp_path / "numeric.yml", "http://x").describe()).tools) == [
        "request",
        "getX",
    ]
    (tmp_path / "bad.json").write_text('{"openapi": "3.0.3",')
    with pytest.raises(ValueError, match=r"bad\.json is not valid JSON"):
        HttpOpenApiConnector("api", tmp_path / "bad.json").spec()
    (tmp_path / "bad.yaml").write_text("openapi: [3.0")
    with pytest.raises(ValueError, match=r"bad\.yaml is neither valid JSON nor valid YAML"):
        HttpOpenApiConnector("api", tmp_path / "bad.yaml").spec()


# ---------------------------------------------------------------------------
# Idempotency keys
# ---------------------------------------------------------------------------


def idempotency_keys(seen: Any) -> list[str]:
    """Every `Idempotency-Key` header of one request the server saw, whatever its case."""
    return [value for name, value in seen.headers.items() if name.lower() == "idempotency-key"]


async def test_calls_that_change_something_send_their_idempotency_key(
    make_runtime: RuntimeFactory, http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    runtime = make_runtime(http_api)
    done = await runtime.execute(
        """
await items.search(q="a")
await items.submitForm(body={"name": "x"})
await items.deleteItem(id=3)
await items.request(path="/forms", method="POST", body={"name": "y"}, content_type="application/x-www-form-urlencoded")
await items.request(path="/text")
return "done"
"""
    )
    assert done.status == "completed", done.error
    accepted(http_server, 0, 5)
    assert [c.seq for c in done.calls] == [0, 1, 2, 3, 4]
    assert [(s.method, idempotency_keys(s)) for s in http_server.seen] == [
        ("GET", []),  # a read changes nothing: it carries no key
        ("POST", [f"{done.execution_id}:1"]),
        ("DELETE", [f"{done.execution_id}:2"]),
        ("POST", [f"{done.execution_id}:3"]),  # the escape hatch too
        ("GET", []),
    ]


async def test_an_idempotency_key_set_explicitly_wins(
    http_api: HttpOpenApiConnector, http_server: ValidatingServer
) -> None:
    ctx = ToolContext("run", 4, "run:4")
    form = {
        "path": "/forms",
        "method": "POST",
        "body": {"name": "x"},
        "content_type": "application/x-www-form-urlencoded",
    }
    await http_api.execute_tool("request", {**form, "headers": {"idempotency-key": "mine"}}, ctx)  # the program's
    await http_api.execute_tool("deleteItem", {"id": 1, "Idempotency-Key": "declared"}, ctx)  # a declared parameter
    await http_api.execute_tool("deleteItem", {"id": 1}, ctx)
    await http_api.execute_tool("deleteItem", {"id": 1}, CTX)  # outside a run: no key to send
    configured = HttpOpenApiConnector("items", http_document(), http_server.api_url, {"Idempotency-Key": "conf"})
    await configured.execute_tool("submitForm", {"body": {"name": "x"}}, ctx)  # the connector's own headers
    await configured.aclose()
    accepted(http_server, 0, 5)
    assert [idempotency_keys(s) for s in http_server.seen] == [["mine"], ["declared"], ["run:4"], [], ["conf"]]


# The host the crash test kills mid-call: one run of one POST, on the SQLite file and API it is given.
HOST = """
import asyncio, sys
import codemode

async def main(db, url):
    api = codemode.HttpOpenApiConnector("items", sys.argv[3], url)
    async with codemode.Runtime([api], store=codemode.SqliteStore(db), heartbeat_interval=0.2) as runtime:
        await runtime.execute('return await items.submitForm(body={"name": "x"})')

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_call_performed_again_after_a_crash_sends_the_same_key(
    make_runtime: RuntimeFactory, http_server: ValidatingServer, tmp_path: Path
) -> None:
    http_server.clear()
    db, doc = tmp_path / "x.db", tmp_path / "api.json"
    doc.write_text(json.dumps(http_document()))
    hold = threading.Event()
    http_server.reply("POST", "/forms", Reply(201, b'{"created": 1}', hold=hold))
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(db), http_server.api_url, str(doc)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not http_server.seen:
            assert time.monotonic() < deadline, "the host never sent its POST"
            assert host.poll() is None, host.stderr.read() if host.stderr else ""
            await asyncio.sleep(0.02)
        os.kill(host.pid, signal.SIGKILL)  # the host dies with the POST sent and its answer not recorded
        host.wait(timeout=30)
    finally:
        hold.set()
        host.kill()
        host.communicate()
    (first,) = http_server.seen
    execution_id = idempotency_keys(first)[0].rsplit(":", 1)[0]
    await asyncio.sleep(1.2)  # no heartbeat from the dead host for longer than stale_after
    http_server.reply("POST", "/forms", Reply(201, b'{"created": 1}'))
    api = HttpOpenApiConnector("items", http_document(), http_server.api_url)
    runtime = make_runtime(api, path=db, heartbeat_interval=0.2)
    recovered = await runtime.recover(execution_id, stale_after=timedelta(seconds=1))
    await api.aclose()
    assert recovered.status == "completed", recovered.error
    assert recovered.result == {"created": 1}
    accepted(http_server, 0, 2)
    (call,) = recovered.calls
    again = http_server.seen[1]
    assert [(s.method, s.body) for s in http_server.seen] == [("POST", first.body), ("POST", first.body)]
    # The API sees one call twice, under the same key: it can answer the repeat without doing it again.
    assert idempotency_keys(first) == idempotency_keys(again) == [f"{recovered.execution_id}:{call.seq}"]


# ---------------------------------------------------------------------------
# End to end through the durable runtime
# ---------------------------------------------------------------------------


class GatedGitHub(HttpOpenApiConnector):
    """Every call that is not a GET (and the escape hatch) waits for a human."""

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        op: Operation | None = self.operation(name)
        return dataclasses.replace(spec, requires_approval=name == "request" or (op is not None and op.method != "GET"))


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_runtime_pauses_on_a_gated_operation_and_runs_it_once(
    make_runtime: RuntimeFactory, language: str, servers: dict[str, ValidatingServer]
) -> None:
    server = servers["github"]
    github = GatedGitHub("github", document("github"), server.base_url, {"Authorization": "token t"})
    runtime = make_runtime(github)
    python = """
repo = await github.repos_get(owner="octo", repo="hello")
issue = await github.issues_create(owner="octo", repo="hello", body={"title": "Bug in " + repo["operation"]})
return issue["body"]
"""
    javascript = """async () => {
  const repo = await github.repos_get({ owner: "octo", repo: "hello" });
  const title = "Bug in " + repo.operation;
  const issue = await github.issues_create({ owner: "octo", repo: "hello", body: { title } });
  return issue.body;
}"""
    code = program(language, python, javascript)
    before = len(server.seen)
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [(p.method, p.args) for p in paused.pending] == [
        ("issues_create", {"owner": "octo", "repo": "hello", "body": {"title": "Bug in GET /repos/{owner}/{repo}"}})
    ]
    assert [s.method for s in server.seen[before:]] == ["GET"]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"title": "Bug in GET /repos/{owner}/{repo}"}
    seen = server.seen[before:]
    assert [(s.method, s.raw_path) for s in seen] == [
        ("GET", "/repos/octo/hello"),
        ("POST", "/repos/octo/hello/issues"),
    ]
    accepted(server, before, 2)
    bad = await runtime.execute(
        program(language, 'await github.repos_get(owner="o")', 'async () => await github.repos_get({ owner: "o" })')
    )
    assert bad.status == "error" and "'repo' is a required property" in (bad.error or "")
    assert len(server.seen) == before + 2  # refused before any request
    await github.aclose()


# ---------------------------------------------------------------------------
# The example
# ---------------------------------------------------------------------------


def test_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "openapi_connector.py")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "paused: pets.create_pet" in done.stdout
    assert "completed:" in done.stdout
