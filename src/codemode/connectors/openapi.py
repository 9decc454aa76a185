"""OpenAPI connectors: every operation of an OpenAPI 3.x document as a typed tool.

`OpenApiConnector` derives the tools; a subclass supplies the document
(`spec()`) and performs the calls (`request(req)`). `HttpOpenApiConnector` is
the ready subclass that speaks HTTP with `httpx`.

Derivation rules (beyond the reference, spec §7):

- Operations come in document order: paths in key order, then `get, put,
  post, delete, patch, options, head, trace`. None is ever dropped: the tool
  count is the operation count, plus `request` (and `spec` when exposed).
- Names: the `operationId` with every run of characters other than letters,
  digits and `_` turned into one `_` (`repos/get` -> `repos_get`), then
  `sanitize_identifier`; without one, `<method>_<path>` the same way
  (`GET /repos/{owner}/{repo}` -> `get_repos_owner_repo`). A name already
  taken, or the reserved `request`/`spec`, gets the first free suffix `_2`,
  `_3`, ... and one warning.
- Parameters: path-level `parameters` are merged with the operation's (the
  operation's win by `name` + `in`); `$ref`s are resolved. Each becomes an
  argument named as on the wire. When two would share a name, the one in the
  earlier location (`path`, `query`, `header`, `cookie`) keeps it and the
  other becomes `<name>_<in>` (`id` and `id_query`); the request body is
  always `body`, so a parameter named `body` becomes `body_<in>`. Header
  parameters named `Accept`, `Content-Type` or `Authorization` are ignored, as
  OpenAPI says. Path parameters are always required.
- The body: the first JSON media type (`application/json`, `*+json`), else
  `application/x-www-form-urlencoded`, else `multipart/*`, else the first one
  declared; it is the `body` argument, required when the request body is.
- Input schemas are JSON Schema 2020-12 (see `openapi_schema`) with
  `additionalProperties: false`: the runtime validates arguments before a
  call is logged, so a misspelled argument is refused with its name instead
  of being dropped. (Called directly, `execute` drops undeclared arguments.)
- Output schemas come from the first 2xx response with JSON content; None
  when there is none.
- Descriptions: the summary, plus the description's first paragraph (HTML
  and link targets stripped, at most ~300 characters) when it says more; else
  `METHOD path`.

Derivation is memoized per document object (identity: a `spec()` returning
the same dict shares the work across instances; a document is treated as
immutable once derived) and per instance.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import json
import os
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from codemode.connectors.base import Connector, ToolContext, ToolSpec, maybe_await
from codemode.connectors.openapi_schema import SchemaSet
from codemode.schema.names import sanitize_identifier

if TYPE_CHECKING:
    import httpx  # the `openapi` extra; only HttpOpenApiConnector needs it

__all__ = [
    "HttpOpenApiConnector",
    "OpenApiConnector",
    "OpenApiHttpError",
    "OpenApiRequest",
    "Operation",
    "Parameter",
    "PropertyEncoding",
    "RequestBody",
    "build_request",
    "derive_operations",
    "form_pairs",
    "query_string",
]

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
RESERVED_TOOLS = ("request", "spec")
ParameterLocation = Literal["path", "query", "header", "cookie"]
_LOCATIONS: tuple[ParameterLocation, ...] = ("path", "query", "header", "cookie")
_IGNORED_HEADERS = frozenset({"accept", "content-type", "authorization"})
_NON_IDENTIFIER = re.compile(r"[^A-Za-z0-9_]+")
_MAX_DESCRIPTION = 300


# ---------------------------------------------------------------------------
# What a derived operation is
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    """One declared parameter and how the spec says to serialize it."""

    name: str  # on the wire
    location: ParameterLocation
    argument: str  # the key in the tool's arguments
    required: bool = False
    style: str = "form"
    explode: bool = True
    allow_reserved: bool = False  # query: reserved characters unescaped; path (an extension): `/` kept
    content_type: str | None = None  # a parameter described by `content`: its value is sent in this media type


@dataclass(frozen=True)
class PropertyEncoding:
    """How one property of a form or multipart body is encoded (the media type's `encoding`)."""

    content_type: str | None = None
    style: str | None = None
    explode: bool | None = None
    allow_reserved: bool = False


@dataclass(frozen=True)
class RequestBody:
    """The request body an operation takes, as the `body` argument."""

    content_type: str
    required: bool = False
    encoding: Mapping[str, PropertyEncoding] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Operation:
    """One OpenAPI operation, derived once per document and shared by every connector using it."""

    tool_name: str
    method: str  # upper case
    path: str  # the template, `/repos/{owner}/{repo}`
    operation_id: str | None
    description: str
    parameters: tuple[Parameter, ...]
    body: RequestBody | None
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None
    server_url: str | None = None  # from the operation's or path's own `servers`, variables filled in
    deprecated: bool = False
    tags: tuple[str, ...] = ()

    def parameter(self, name: str, location: str | None = None) -> Parameter | None:
        """The declared parameter with this wire name (and location, if given)."""
        for p in self.parameters:
            if p.name == name and (location is None or p.location == location):
                return p
        return None


@dataclass(frozen=True, eq=False)
class OpenApiRequest:
    """One call to perform: the path filled in, everything else still raw for the subclass to serialize.

    `path` has its parameters substituted and percent-encoded (`simple` style);
    `query` holds the raw argument values by wire name (serialize them with the
    parameter's `style`/`explode`, from `operation`); `headers` are strings;
    `body` is sent when `content_type` is set. `operation` is None for the
    `request` escape hatch unless its path and method match a declared one.
    """

    method: str
    path: str
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    operation: Operation | None = None

    @property
    def has_body(self) -> bool:
        return self.content_type is not None


# ---------------------------------------------------------------------------
# Derivation
# ---------------------------------------------------------------------------


class _Derivation:
    """The operations of one document, and (built on first use) the routes the escape hatch matches."""

    def __init__(self, operations: tuple[Operation, ...]) -> None:
        self.operations = operations
        self._routes: list[tuple[str, re.Pattern[str], Operation]] | None = None

    def match(self, method: str, path: str) -> Operation | None:
        """The declared operation a raw `request(path, method)` call targets, most literal template first."""
        if self._routes is None:
            ordered = sorted(self.operations, key=lambda o: o.path.count("{"))
            self._routes = [(o.method, _route(o.path), o) for o in ordered]
        path = path.split("?", 1)[0]
        for verb, pattern, op in self._routes:
            if verb == method and pattern.fullmatch(path):
                return op
        return None


_CACHE: OrderedDict[int, tuple[Mapping[str, Any], _Derivation]] = OrderedDict()
_CACHE_SIZE = 8
_CACHE_LOCK = threading.Lock()


def derive_operations(doc: Mapping[str, Any]) -> tuple[Operation, ...]:
    """Every operation of an OpenAPI 3.x document; memoized per document object."""
    return _derive(doc).operations


def _derive(doc: Mapping[str, Any]) -> _Derivation:
    with _CACHE_LOCK:
        hit = _CACHE.get(id(doc))
        if hit is not None and hit[0] is doc:
            _CACHE.move_to_end(id(doc))
            return hit[1]
    derivation = _Deriver(doc).run()
    with _CACHE_LOCK:
        _CACHE[id(doc)] = (doc, derivation)  # the document is kept alive, so its id cannot be reused
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return derivation


def _check_document(doc: object) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise TypeError(f"An OpenAPI document must be a mapping, not {type(doc).__name__}.")
    if "swagger" in doc and "openapi" not in doc:
        raise ValueError("Swagger 2.0 documents are not supported: convert the document to OpenAPI 3 first.")
    version = doc.get("openapi")
    if not isinstance(version, str) or not version.startswith("3."):
        raise ValueError(f"Not an OpenAPI 3.x document (openapi: {version!r}).")
    if not isinstance(doc.get("paths", {}), Mapping):
        raise ValueError("The OpenAPI document's `paths` must be an object.")
    return doc


def _tool_base_name(operation_id: object, method: str, path: str) -> str:
    if isinstance(operation_id, str) and operation_id.strip():
        raw = operation_id
    else:
        raw = f"{method}_{_NON_IDENTIFIER.sub('_', path).strip('_')}"
    return sanitize_identifier(_NON_IDENTIFIER.sub("_", raw).strip("_"))


_TAG = re.compile(r"<[^>]+>")
_PARAGRAPH_END = re.compile(r"</p\s*>|<br\s*/?>|</li\s*>|</h\d\s*>", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _first_paragraph(text: object) -> str:
    """The first paragraph of a (Markdown or HTML) description, as plain one-line text."""
    if not isinstance(text, str):
        return ""
    text = _PARAGRAPH_END.sub("\n\n", text)
    text = html.unescape(_TAG.sub("", text))
    text = _MD_LINK.sub(r"\1", text)
    for paragraph in re.split(r"\n\s*\n", text):
        line = " ".join(paragraph.split())
        if line:
            if len(line) > _MAX_DESCRIPTION:
                line = line[: _MAX_DESCRIPTION - 1].rsplit(" ", 1)[0] + "…"
            return line
    return ""


def _description(op: Mapping[str, Any], method: str, path: str) -> str:
    summary = _first_paragraph(op.get("summary"))
    detail = _first_paragraph(op.get("description"))
    parts = [summary] if summary else []
    if detail and detail.rstrip(".").lower() != summary.rstrip(".").lower():
        parts.append(detail)
    text = "\n\n".join(parts) or f"{method} {path}"
    return text + "\n\nDeprecated." if op.get("deprecated") is True else text


def _server_url(servers: object) -> str | None:
    """The first server's URL with its variables' defaults filled in."""
    if not isinstance(servers, list) or not servers or not isinstance(servers[0], Mapping):
        return None
    url = servers[0].get("url")
    if not isinstance(url, str):
        return None
    variables = servers[0].get("variables")
    if isinstance(variables, Mapping):
        for name, var in variables.items():
            if isinstance(var, Mapping) and "default" in var:
                url = url.replace("{" + str(name) + "}", str(var["default"]))
    return url


def _is_json(media_type: str) -> bool:
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence == "application/json" or essence.endswith("+json") or essence.endswith("/json")


def _pick_media_type(content: Mapping[str, Any]) -> str | None:
    types = [t for t in content if isinstance(t, str)]
    for test in (
        lambda t: t.split(";", 1)[0].strip().lower() == "application/json",
        _is_json,
        lambda t: t.lower().startswith("application/x-www-form-urlencoded"),
        lambda t: t.lower().startswith("multipart/"),
    ):
        for t in types:
            if test(t):
                return t
    return types[0] if types else None


def _route(path: str) -> re.Pattern[str]:
    pieces = re.split(r"(\{[^}/]+\})", path)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in pieces if p))


class _Deriver:
    """One cold derivation of a document."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = _check_document(doc)
        self.schemas = SchemaSet(doc)
        self.used: set[str] = set(RESERVED_TOOLS)

    def run(self) -> _Derivation:
        operations: list[Operation] = []
        for path, item in self.doc.get("paths", {}).items():
            item = self.schemas.resolve(item)
            if not isinstance(path, str) or not isinstance(item, Mapping):
                continue
            for method in HTTP_METHODS:
                op = item.get(method)
                if isinstance(op, Mapping):
                    operations.append(self.operation(path, method, item, op))
        return _Derivation(tuple(operations))

    def name(self, op: Mapping[str, Any], method: str, path: str) -> str:
        base = _tool_base_name(op.get("operationId"), method, path)
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        if name != base:
            why = "is reserved" if base in RESERVED_TOOLS else "is already used"
            warnings.warn(
                f'OpenAPI operation {method.upper()} {path} maps to tool name "{base}", which {why}; '
                f'it is exposed as "{name}". Set a unique operationId to choose its name.',
                stacklevel=4,
            )
        self.used.add(name)
        return name

    def parameters(self, item: Mapping[str, Any], op: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
        merged: dict[tuple[str, str], Mapping[str, Any]] = {}
        for source in (item.get("parameters"), op.get("parameters")):
            for raw in source if isinstance(source, list) else ():
                param = self.schemas.resolve(raw)
                if not (isinstance(param, Mapping) and isinstance(param.get("name"), str)):
                    warnings.warn(f"OpenAPI {where}: ignoring a parameter that names nothing: {raw!r}", stacklevel=5)
                    continue
                location = param.get("in")
                if location not in _LOCATIONS:
                    warnings.warn(
                        f"OpenAPI {where}: ignoring parameter {param['name']!r} in {location!r}", stacklevel=5
                    )
                    continue
                if location == "header" and param["name"].lower() in _IGNORED_HEADERS:
                    continue
                merged[(param["name"], location)] = param
        return list(merged.values())

    def operation(self, path: str, method: str, item: Mapping[str, Any], op: Mapping[str, Any]) -> Operation:
        verb = method.upper()
        tool_name = self.name(op, method, path)
        params = self.parameters(item, op, f"{verb} {path}")
        refs: set[str] = set()
        body, body_schema = self.request_body(op, refs)
        arguments = _argument_names(params, body is not None)

        properties: dict[str, Any] = {}
        required: list[str] = []
        parameters: list[Parameter] = []
        for param, argument in zip(params, arguments, strict=True):
            parameter, schema = self.parameter(param, argument, refs)
            parameters.append(parameter)
            properties[argument] = schema
            if parameter.required:
                required.append(argument)
        if body is not None:
            properties["body"] = body_schema
            if body.required:
                required.append("body")

        input_schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            input_schema["required"] = required
        input_schema["additionalProperties"] = False
        defs = self.schemas.defs_for(refs)
        if defs:
            input_schema["$defs"] = defs

        operation_id = op.get("operationId")
        tags = op.get("tags")
        return Operation(
            tool_name=tool_name,
            method=verb,
            path=path,
            operation_id=operation_id if isinstance(operation_id, str) else None,
            description=_description(op, verb, path),
            parameters=tuple(parameters),
            body=body,
            input_schema=input_schema,
            output_schema=self.output_schema(op),
            server_url=_server_url(op.get("servers")) or _server_url(item.get("servers")),
            deprecated=op.get("deprecated") is True,
            tags=tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        )

    def parameter(self, param: Mapping[str, Any], argument: str, refs: set[str]) -> tuple[Parameter, Any]:
        """One parameter's serialization rules and its argument's schema."""
        location = param["in"]
        schema = param.get("schema")
        content_type = None
        if schema is None and isinstance(param.get("content"), Mapping) and param["content"]:
            content_type = _pick_media_type(param["content"])
            media = self.schemas.resolve(param["content"].get(content_type)) if content_type else None
            schema = media.get("schema") if isinstance(media, Mapping) else None
        converted, param_refs = self.schemas.convert(schema if schema is not None else {})
        refs |= param_refs
        style = param.get("style")
        if not isinstance(style, str):
            style = "form" if location in ("query", "cookie") else "simple"
        explode = param.get("explode")
        parameter = Parameter(
            name=param["name"],
            location=location,
            argument=argument,
            required=location == "path" or param.get("required") is True,
            style=style,
            explode=explode if isinstance(explode, bool) else style == "form",
            allow_reserved=location in ("query", "path") and param.get("allowReserved") is True,
            content_type=content_type,
        )
        return parameter, _with_docs(converted, param)

    def request_body(self, op: Mapping[str, Any], refs: set[str]) -> tuple[RequestBody | None, Any]:
        """The body an operation takes (its chosen media type) and the `body` argument's schema."""
        request_body = self.schemas.resolve(op.get("requestBody"))
        if not (isinstance(request_body, Mapping) and isinstance(request_body.get("content"), Mapping)):
            return None, None
        content = request_body["content"]
        media_type = _pick_media_type(content)
        if media_type is None:
            return None, None
        media = self.schemas.resolve(content[media_type])
        media = media if isinstance(media, Mapping) else {}
        schema = media.get("schema")
        if schema is None:
            schema = {} if _is_json(media_type) or "form" in media_type else {"type": "string"}
        converted, body_refs = self.schemas.convert(schema)
        refs |= body_refs
        body = RequestBody(
            content_type=media_type,
            required=request_body.get("required") is True,
            encoding=_encodings(media.get("encoding")),
        )
        return body, _with_docs(converted, request_body)

    def output_schema(self, op: Mapping[str, Any]) -> dict[str, Any] | None:
        responses = op.get("responses")
        if not isinstance(responses, Mapping):
            return None
        codes = sorted((str(c) for c in responses if str(c).startswith("2")), key=lambda c: (not c.isdigit(), c))
        for code in codes:
            response = self.schemas.resolve(responses.get(code, responses.get(int(code)) if code.isdigit() else None))
            content = response.get("content") if isinstance(response, Mapping) else None
            if not isinstance(content, Mapping):
                continue
            media_type = next((t for t in content if isinstance(t, str) and _is_json(t)), None)
            media = self.schemas.resolve(content[media_type]) if media_type else None
            if not isinstance(media, Mapping) or "schema" not in media:
                continue
            converted, refs = self.schemas.convert(media["schema"])
            schema = dict(converted) if isinstance(converted, Mapping) else {}
            defs = self.schemas.defs_for(refs)
            if defs:
                schema["$defs"] = defs
            return schema
        return None


def _argument_names(params: list[Mapping[str, Any]], has_body: bool) -> list[str]:
    """Each parameter's argument name: the wire name, unless an earlier location (or the body) has it."""
    taken = {"body"} if has_body else set()
    names: dict[int, str] = {}
    for location in _LOCATIONS:
        for i, param in enumerate(params):
            if param["in"] != location:
                continue
            name = candidate = param["name"]
            n = 1
            if candidate in taken:
                candidate = f"{name}_{location}"
            while candidate in taken:
                n += 1
                candidate = f"{name}_{location}_{n}"
            taken.add(candidate)
            names[i] = candidate
    return [names[i] for i in range(len(params))]


def _with_docs(schema: Any, owner: Mapping[str, Any]) -> Any:
    """A parameter's (or body's) schema carrying the owner's description, deprecation and example."""
    extra: dict[str, Any] = {}
    if not isinstance(schema, Mapping):
        schema = {} if schema is True else {"not": {}}
    if isinstance(owner.get("description"), str) and owner["description"] and "description" not in schema:
        extra["description"] = owner["description"]
    if owner.get("deprecated") is True and "deprecated" not in schema:
        extra["deprecated"] = True
    if "example" in owner and "examples" not in schema:
        extra["examples"] = [owner["example"]]
    return {**schema, **extra} if extra else schema


def _encodings(raw: object) -> dict[str, PropertyEncoding]:
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, PropertyEncoding] = {}
    for prop, enc in raw.items():
        if not isinstance(enc, Mapping):
            continue
        style = enc.get("style") if isinstance(enc.get("style"), str) else None
        explode = enc.get("explode") if isinstance(enc.get("explode"), bool) else None
        out[str(prop)] = PropertyEncoding(
            content_type=enc.get("contentType") if isinstance(enc.get("contentType"), str) else None,
            style=style,
            explode=explode if explode is not None or style is None else style == "form",
            allow_reserved=enc.get("allowReserved") is True,
        )
    return out


# ---------------------------------------------------------------------------
# Building a request from a tool's arguments
# ---------------------------------------------------------------------------


def scalar_text(value: Any) -> str:
    """A scalar as it appears in a URL or a form: JSON's spelling for booleans and null."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def simple_style(value: Any, explode: bool) -> str:
    """The `simple` style (path and header parameters): `a,b,c`, `k,v,k2,v2` or, exploded, `k=v,k2=v2`."""
    if isinstance(value, Mapping):
        if explode:
            return ",".join(f"{k}={scalar_text(v)}" for k, v in value.items())
        return ",".join(f"{k},{scalar_text(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(scalar_text(v) for v in value)
    return scalar_text(value)


def build_request(op: Operation, args: Mapping[str, Any]) -> OpenApiRequest:
    """The request an operation's tool makes for `args` (spec §7.5, with `simple` path serialization)."""
    if not isinstance(args, Mapping):
        args = {}
    path = op.path
    query: dict[str, Any] = {}
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for p in op.parameters:
        value = args.get(p.argument)
        if value is None:
            continue
        if p.content_type is not None and p.location != "query":
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        else:
            text = simple_style(value, p.explode)
        if p.location == "path":
            path = path.replace("{" + p.name + "}", quote(text, safe="/" if p.allow_reserved else ""))
        elif p.location == "query":
            query[p.name] = value
        elif p.location == "header":
            headers[p.name] = text
        else:
            cookies[p.name] = text
    missing = [p.argument for p in op.parameters if p.location == "path" and "{" + p.name + "}" in path]
    if missing:
        names = ", ".join(f'"{m}"' for m in missing)
        raise ValueError(f"{op.method} {op.path} needs the path parameter(s) {names}.")
    body = args.get("body") if op.body is not None else None
    return OpenApiRequest(
        method=op.method,
        path=path,
        query=query,
        headers=headers,
        cookies=cookies,
        body=body,
        content_type=op.body.content_type if op.body is not None and body is not None else None,
        operation=op,
    )


# ---------------------------------------------------------------------------
# The connector
# ---------------------------------------------------------------------------

_REQUEST_DESCRIPTION = (
    "Escape hatch: perform an authenticated request to any path of this API (with an optional method, query "
    "params, body and headers). Prefer the per-operation tools."
)
_REQUEST_SCHEMA: Mapping[str, Any] = {
    "type": "object",
    "properties": {
        "path": {"type": "string", "description": "The path under the API's base URL, starting with /."},
        "method": {"type": "string", "description": "The HTTP method.", "default": "GET"},
        "params": {"type": "object", "additionalProperties": True, "description": "Query parameters."},
        "body": {"description": "The request body."},
        "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        "content_type": {
            "type": "string",
            "description": "The body's media type; by default the declared operation's, else application/json.",
        },
    },
    "required": ["path"],
    "additionalProperties": False,
}
_SPEC_SCHEMA: Mapping[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}


class OpenApiConnector(Connector):
    """Base class: one tool per operation of the document `spec()` returns, calls made by `request()`.

    Tools: `spec` (only when `expose_spec` is true; its result is not recorded,
    since documents are large), `request` (the escape hatch) and one per
    operation. Nothing is gated by default: override `tool(name, spec)` and use
    `operation(name)` to decide, for example to gate every non-GET call.
    """

    expose_spec: bool = False

    _derivation: _Derivation | None = None
    _operations: Mapping[str, Operation] = {}  # replaced per instance, never mutated

    def spec(self) -> Mapping[str, Any] | Awaitable[Mapping[str, Any]]:
        """The OpenAPI 3.x document (a parsed dict); sync or async."""
        raise NotImplementedError(f"{type(self).__name__} must override spec() to return the OpenAPI document.")

    def request(self, req: OpenApiRequest) -> Any:
        """Perform one call (authenticated); sync or async. Raise an exception the model can act on if it fails."""
        raise NotImplementedError(f"{type(self).__name__} must override request(req) to perform calls.")

    @property
    def operations(self) -> Mapping[str, Operation]:
        """The derived operations by tool name; empty until `describe()` has run."""
        return self._operations

    def operation(self, tool_name: str) -> Operation | None:
        """The operation behind a tool (None for `request`, `spec`, or before `describe()`); for `tool()` hooks."""
        return self._operations.get(tool_name)

    async def _document(self) -> Mapping[str, Any]:
        return _check_document(await maybe_await(self.spec()))

    async def tools(self) -> Mapping[str, ToolSpec]:
        doc = await self._document()
        if self._derivation is None:
            self._derivation = _derive(doc)
            self._operations = {op.tool_name: op for op in self._derivation.operations}
        derivation = self._derivation
        tools: dict[str, ToolSpec] = {}
        if self.expose_spec:
            tools["spec"] = ToolSpec(
                execute=lambda args, ctx: self._document(),
                description="Return the raw OpenAPI document.",
                input_schema=_SPEC_SCHEMA,
                replay="reexecute",
            )
        tools["request"] = ToolSpec(
            execute=self._escape_hatch, description=_REQUEST_DESCRIPTION, input_schema=_REQUEST_SCHEMA
        )
        for op in derivation.operations:
            tools[op.tool_name] = ToolSpec(
                execute=self._executor(op),
                description=op.description,
                input_schema=op.input_schema,
                output_schema=op.output_schema,
            )
        return tools

    def _executor(self, op: Operation) -> Any:
        async def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
            return await maybe_await(self.request(build_request(op, args)))

        return execute

    async def _escape_hatch(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        path = args.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"request: path must be a string starting with / (relative to the API), not {path!r}.")
        method = str(args.get("method") or "GET").upper()
        op = self._derivation.match(method, path) if self._derivation else None
        body = args.get("body")
        content_type = args.get("content_type")
        if body is not None and not isinstance(content_type, str):
            content_type = op.body.content_type if op is not None and op.body is not None else "application/json"
        params = args.get("params")
        headers = args.get("headers")
        req = OpenApiRequest(
            method=method,
            path=path,
            query=dict(params) if isinstance(params, Mapping) else {},
            headers={str(k): str(v) for k, v in headers.items()} if isinstance(headers, Mapping) else {},
            body=body,
            content_type=content_type if body is not None else None,
            operation=op,
        )
        return await maybe_await(self.request(req))


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class OpenApiHttpError(RuntimeError):
    """A non-2xx answer; the message says what happened and what the program should do."""

    def __init__(self, message: str, *, method: str, path: str, status: int, body: str) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.body = body


_EXCERPT = 500
_ADVICE = {
    400: "The API rejected the arguments: fix what it complains about and call again.",
    401: "The credentials were refused: this is a configuration problem the program cannot fix; report it.",
    403: "Permission denied (or a rate limit): do not repeat the same call; report it or do something else.",
    404: "Not found: check the identifiers in the path; the resource may not exist or may not be visible.",
    409: "Conflict with the resource's current state: read it again before retrying.",
    422: "The API rejected the arguments: fix what it complains about and call again.",
    429: "Rate limited: wait before calling again, and make fewer calls.",
}


def _advice(status: int, tool: str) -> str:
    if status in _ADVICE:
        text = _ADVICE[status]
    elif status >= 500:
        text = "The API failed on its side: retrying later may work; do not assume the call had no effect."
    else:
        text = "The call did not succeed."
    if status in (400, 422):
        text += f' codemode.describe("{tool}") shows the expected arguments.'
    return text


_QUERY_SAFE = "-._~"
_RESERVED_SAFE = "-._~:/?[]@!$'()*,;"


def _encode_pairs(pairs: Iterable[tuple[str, str, bool]]) -> str:
    """`k=v&...` with everything but unreserved characters percent-encoded (spaces as %20)."""
    return "&".join(
        f"{quote(k, safe=_QUERY_SAFE)}={quote(v, safe=_RESERVED_SAFE if reserved else _QUERY_SAFE)}"
        for k, v, reserved in pairs
    )


def deep_object_pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Bracket notation for nested values, as Stripe (and Rails, PHP) read it.

    `{"metadata": {"k": "v"}}` -> `metadata[k]=v`; `{"items": [{"price": "x"}]}`
    -> `items[0][price]=x`. Empty objects and lists send nothing.
    """
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in deep_object_pairs(f"{prefix}[{k}]", v)]
    if isinstance(value, (list, tuple)):
        return [pair for i, v in enumerate(value) for pair in deep_object_pairs(f"{prefix}[{i}]", v)]
    if value is None:
        return []
    return [(prefix, scalar_text(value))]


def styled_pairs(name: str, value: Any, style: str, explode: bool) -> list[tuple[str, str]]:
    """One query parameter (or form property) as `name=value` pairs, per its OpenAPI style."""
    if value is None:
        return []
    nested = isinstance(value, (Mapping, list, tuple)) and any(
        isinstance(v, (Mapping, list, tuple)) for v in (value.values() if isinstance(value, Mapping) else value)
    )
    if style == "deepObject" or nested:
        return deep_object_pairs(name, value)
    if isinstance(value, Mapping):
        if explode and style == "form":
            return [(str(k), scalar_text(v)) for k, v in value.items()]
        delimiter = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(style, ",")
        return [(name, delimiter.join(f"{k}{delimiter}{scalar_text(v)}" for k, v in value.items()))]
    if isinstance(value, (list, tuple)):
        if explode:
            return [(name, scalar_text(v)) for v in value]
        delimiter = {"spaceDelimited": " ", "pipeDelimited": "|"}.get(style, ",")
        return [(name, delimiter.join(scalar_text(v) for v in value))]
    return [(name, scalar_text(value))]


def query_string(req: OpenApiRequest) -> str:
    """The request's query string, each parameter serialized with its declared style."""
    triples: list[tuple[str, str, bool]] = []
    for name, value in req.query.items():
        p = req.operation.parameter(name, "query") if req.operation else None
        if p is not None and p.content_type is not None:
            triples.append((name, json.dumps(value, separators=(",", ":"), ensure_ascii=False), p.allow_reserved))
            continue
        style, explode = (p.style, p.explode) if p is not None else ("form", True)
        reserved = p.allow_reserved if p is not None else False
        triples.extend((k, v, reserved) for k, v in styled_pairs(name, value, style, explode))
    return _encode_pairs(triples)


def form_pairs(body: Mapping[str, Any], encoding: Mapping[str, PropertyEncoding]) -> list[tuple[str, str]]:
    """An `application/x-www-form-urlencoded` body: the spec's `encoding`, bracket notation for nested values."""
    pairs: list[tuple[str, str]] = []
    for prop, value in body.items():
        enc = encoding.get(prop, PropertyEncoding())
        if enc.content_type is not None and enc.style is None and _is_json(enc.content_type):
            pairs.append((prop, json.dumps(value, separators=(",", ":"), ensure_ascii=False)))
            continue
        style = enc.style or "form"
        explode = enc.explode if enc.explode is not None else style == "form"
        if isinstance(value, Mapping) and style == "form" and enc.style is None:
            style = "deepObject"  # an object needs its name kept; plain `form` would spread its keys
        pairs.extend(styled_pairs(prop, value, style, explode))
    return pairs


def _load_document(path: Path) -> Mapping[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError:
            if path.suffix.lower() == ".json":
                raise
        else:
            return _check_document(loaded)
    try:
        yaml: Any = importlib.import_module("yaml")  # optional dependency
    except ImportError:
        raise ValueError(f"{path} is YAML: install PyYAML to load it, or convert it to JSON.") from None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return _check_document(yaml.load(text, Loader=loader))


_FILES: OrderedDict[tuple[str, int, int], Mapping[str, Any]] = OrderedDict()
_FILES_LOCK = threading.Lock()


def _read_document(path: Path) -> Mapping[str, Any]:
    """A document file, parsed once while unchanged, so instances share its derivation too."""
    resolved = path.resolve()
    stat = resolved.stat()
    key = (str(resolved), stat.st_mtime_ns, stat.st_size)
    with _FILES_LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    doc = _load_document(resolved)
    with _FILES_LOCK:
        _FILES[key] = doc
        while len(_FILES) > _CACHE_SIZE:
            _FILES.popitem(last=False)
    return doc


class HttpOpenApiConnector(OpenApiConnector):
    """An `OpenApiConnector` that performs calls over HTTP with `httpx`.

    `spec` is the document or the path of a JSON (or, with PyYAML, YAML) file.
    The base URL is `base_url`, else the document's first server with its
    variables' defaults; an operation's own `servers` apply unless `base_url`
    is given. `headers` (authentication) go with every call and win over
    headers the program passes. Responses: JSON is parsed, text is a `str`,
    anything else `bytes`, no content `None`; a non-2xx status raises
    `OpenApiHttpError` with advice for the model.
    """

    def __init__(
        self,
        name: str,
        spec: Mapping[str, Any] | str | os.PathLike[str],
        base_url: str | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 30.0,
        instructions: str | None = None,
    ) -> None:
        if importlib.util.find_spec("httpx") is None:
            raise ImportError("HttpOpenApiConnector needs httpx: install codemode[openapi] (or httpx).")
        self.name = name
        self.instructions = instructions
        self._spec_source = spec
        self._loaded: Mapping[str, Any] | None = spec if isinstance(spec, Mapping) else None
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None

    def spec(self) -> Mapping[str, Any]:
        if self._loaded is None:
            self._loaded = _read_document(Path(os.fspath(self._spec_source)))  # type: ignore[arg-type]
        return self._loaded

    async def tools(self) -> Mapping[str, ToolSpec]:
        tools = await super().tools()
        self._base(None)  # a document without a usable server needs base_url: say so now, not at the first call
        return tools

    def _base(self, op: Operation | None) -> str:
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        url = (op.server_url if op is not None else None) or _server_url(self.spec().get("servers"))
        if url is None or not re.match(r"^https?://", url, re.IGNORECASE):
            raise ValueError(
                f"HttpOpenApiConnector {self.name!r}: the document gives no absolute server URL "
                f"(servers[0].url is {url!r}); pass base_url."
            )
        return url.rstrip("/")

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client: the one given, else one created on first use (and closed by `aclose`)."""
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def aclose(self) -> None:
        """Close the client this connector created; a client it was given stays with its owner."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def request(self, req: OpenApiRequest) -> Any:
        import httpx

        base = self._base(req.operation)
        url = base + req.path
        if req.query:
            url += ("&" if "?" in req.path else "?") + query_string(req)
        if httpx.URL(url).netloc != httpx.URL(base).netloc:
            raise ValueError(f"request: {req.path!r} leaves the API's host; give a path under {base}.")
        headers = {k: v for k, v in req.headers.items() if k.lower() not in {h.lower() for h in self.headers}}
        headers.update(self.headers)
        if req.cookies:
            headers["Cookie"] = "; ".join(f"{k}={quote(v, safe='')}" for k, v in req.cookies.items())
        content, files, data = self._body(req, headers)
        try:
            response = await self.client.request(
                req.method, url, headers=headers, content=content, files=files, data=data
            )
        except httpx.TimeoutException:
            raise TimeoutError(
                f"{req.method} {req.path}: no answer within {self.timeout} s. The API may be slow or down; "
                "try again later."
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"{req.method} {req.path}: could not reach {base} ({type(exc).__name__}: {exc}). "
                "The API may be down; try again later."
            ) from None
        return self._result(req, response)

    def _body(self, req: OpenApiRequest, headers: dict[str, str]) -> tuple[bytes | None, Any, Any]:
        """(content, files, data) for httpx: JSON, form, multipart or raw bytes."""
        if not req.has_body:
            return None, None, None
        content_type = req.content_type or "application/json"
        essence = content_type.split(";", 1)[0].strip().lower()
        encoding = req.operation.body.encoding if req.operation and req.operation.body else {}
        if essence.startswith("multipart/"):
            if not isinstance(req.body, Mapping):
                raise TypeError(f"{req.method} {req.path}: a multipart body must be an object of fields.")
            return None, self._multipart(req.body, encoding), None
        headers["Content-Type"] = content_type
        body = req.body
        if _is_json(essence):
            return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), None, None
        if essence == "application/x-www-form-urlencoded":
            if not isinstance(body, Mapping):
                raise TypeError(f"{req.method} {req.path}: a form body must be an object of fields.")
            return _encode_pairs((k, v, False) for k, v in form_pairs(body, encoding)).encode(), None, None
        if isinstance(body, (bytes, bytearray)):
            return bytes(body), None, None
        if isinstance(body, str):
            return body.encode(), None, None
        return json.dumps(body, ensure_ascii=False).encode(), None, None

    @staticmethod
    def _multipart(body: Mapping[str, Any], encoding: Mapping[str, PropertyEncoding]) -> list[tuple[str, Any]]:
        """multipart/form-data parts: bytes as files, objects as JSON parts (or bracket fields if so encoded)."""
        parts: list[tuple[str, Any]] = []
        for prop, value in body.items():
            enc = encoding.get(prop, PropertyEncoding())
            if value is None:
                continue
            if isinstance(value, (bytes, bytearray)):
                parts.append((prop, (prop, bytes(value), enc.content_type or "application/octet-stream")))
            elif isinstance(value, (Mapping, list, tuple)) and enc.style is not None:
                parts.extend((k, (None, v)) for k, v in styled_pairs(prop, value, enc.style, enc.explode is not False))
            elif isinstance(value, (Mapping, list, tuple)):
                text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
                parts.append((prop, (None, text.encode(), enc.content_type or "application/json")))
            else:
                parts.append((prop, (None, scalar_text(value))))
        return parts

    def _result(self, req: OpenApiRequest, response: httpx.Response) -> Any:
        if not 200 <= response.status_code < 300:
            tool = f"{self.name}.{req.operation.tool_name if req.operation else 'request'}"
            excerpt = " ".join(response.text.split())
            if len(excerpt) > _EXCERPT:
                excerpt = excerpt[:_EXCERPT] + "…"
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            message = (
                f"{req.method} {req.path} failed with HTTP {response.status_code}{reason}"
                f"{': ' + excerpt if excerpt else ''}. {_advice(response.status_code, tool)}"
            )
            raise OpenApiHttpError(message, method=req.method, path=req.path, status=response.status_code, body=excerpt)
        if response.status_code == 204 or not response.content:
            return None
        content_type = response.headers.get("content-type", "")
        if _is_json(content_type):
            try:
                return response.json()
            except ValueError:
                return response.text
        essence = content_type.split(";", 1)[0].strip().lower()
        if essence.startswith("text/") or essence.endswith(("+xml", "/xml")) or essence == "application/javascript":
            return response.text
        if not content_type:
            try:
                return response.content.decode("utf-8")
            except UnicodeDecodeError:
                return response.content
        return response.content
