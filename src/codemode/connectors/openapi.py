"""OpenAPI connectors: every operation of an OpenAPI 3.x document as a typed tool.

`OpenApiConnector` derives the tools; a subclass supplies the document
(`spec()`) and performs the calls (`request(req)`). `HttpOpenApiConnector` is
the ready subclass that speaks HTTP with `httpx`.

Derivation rules (beyond Cloudflare's code mode):

- Operations come in document order: paths in key order, then `get, put,
  post, delete, patch, options, head, trace`. None is dropped silently: the
  tool count is the operation count, plus `request` (and `spec` when exposed);
  a path item or operation that is not an object (or a `$ref` naming nothing)
  is skipped with a warning, as is anything else the document gets wrong.
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
- Requests: path parameters in their style (`simple`, `label`, `matrix`),
  every reserved character of a value percent-encoded, an empty value refused
  and a `.` or `..` one escaped (either would address another resource); query
  parameters and form fields in their `style`/`explode`, objects nested in
  bracket notation (`items[0][price]=x`); `None` anywhere means absent.
- Idempotency: a request carries the call's `idempotency_key` (the same on every
  re-execution of one call of one run); `HttpOpenApiConnector` sends it as the
  `Idempotency-Key` header on every method but `GET`, `HEAD`, `OPTIONS` and
  `TRACE`, unless the program, the operation or the connector's own headers set
  one already.
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
import json
import os
import posixpath
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from codemode.connectors.base import Connector
from codemode.connectors.openapi_schema import SchemaSet
from codemode.connectors.spec import ToolContext, ToolSpec, maybe_await
from codemode.schema.base import unique_name
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
    "form_body",
    "http_error_type",
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

    `path` has its parameters substituted and percent-encoded in their style;
    `query` holds the raw argument values by wire name (serialize them with the
    parameter's `style`/`explode`, from `operation`); `headers` are strings;
    `body` is sent when `content_type` is set. `operation` is None for the
    `request` escape hatch unless its path and method match a declared one.
    `idempotency_key` names the call (`ToolContext.idempotency_key`: the same
    when a crash makes the runtime perform it again), "" outside a run; send it
    as the API expects, for example as an `Idempotency-Key` header.
    """

    method: str
    path: str
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    content_type: str | None = None
    operation: Operation | None = None
    idempotency_key: str = ""

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
    if isinstance(version, (int, float)) and not isinstance(version, bool):
        version = str(version)  # YAML reads an unquoted `openapi: 3.1` as a number
    if not isinstance(version, str) or not version.startswith("3."):
        raise ValueError(f"Not an OpenAPI 3.x document (openapi: {version!r}).")
    if not isinstance(doc.get("paths", {}), Mapping):
        raise ValueError("The OpenAPI document's `paths` must be an object.")
    return doc


def _warn(message: str) -> None:
    """A problem of the document, said once, when it is derived."""
    warnings.warn(message, stacklevel=3)


def _tool_base_name(operation_id: object, method: str, path: str) -> str:
    if isinstance(operation_id, str) and operation_id.strip():
        raw = operation_id
    else:
        raw = f"{method}_{_NON_IDENTIFIER.sub('_', path).strip('_')}"
    return sanitize_identifier(_NON_IDENTIFIER.sub("_", raw).strip("_"))


_TAG = re.compile(r"<[^>]+>")
_PARAGRAPH_END = re.compile(r"</p\s*>|<br\s*/?>|</li\s*>|</h\d\s*>", re.IGNORECASE)
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")


def _api_summary(doc: Mapping[str, Any]) -> str | None:
    """Default instructions: the API's title and the first paragraph of its description, so the
    model's one-line hint for the connector says which API it is."""
    info = doc.get("info")
    if not isinstance(info, Mapping):
        return None
    title = _first_paragraph(info.get("title"))
    about = _first_paragraph(info.get("description"))
    if about.rstrip(".").lower() == title.rstrip(".").lower():
        about = ""
    return ": ".join(part for part in (title, about) if part) or None


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


def _essence(media_type: str) -> str:
    """A media type without its parameters, lower case: `application/json; charset=utf-8` -> `application/json`."""
    return media_type.split(";", 1)[0].strip().lower()


def _is_json(media_type: str) -> bool:
    essence = _essence(media_type)
    return essence == "application/json" or essence.endswith(("+json", "/json"))


def _pick_media_type(content: Mapping[str, Any]) -> str | None:
    types = [t for t in content if isinstance(t, str)]
    for test in (
        lambda t: _essence(t) == "application/json",
        _is_json,
        lambda t: _essence(t) == "application/x-www-form-urlencoded",
        lambda t: _essence(t).startswith("multipart/"),
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
        paths = self.doc.get("paths")
        if paths is None:
            _warn("The OpenAPI document has no `paths`: only the `request` tool is derived.")
        for path, raw in (paths or {}).items():
            item = self.schemas.resolve(raw)
            if not isinstance(path, str) or not isinstance(item, Mapping):
                why = "it is not an object"
                if not isinstance(path, str):
                    why = "its key is not a string"
                elif item is None and isinstance(raw, Mapping):
                    why = "its $ref names nothing"
                _warn(f"OpenAPI path {path!r} is skipped: {why}. The `request` tool can still call it.")
                continue
            for method in HTTP_METHODS:
                op = item.get(method)
                if isinstance(op, Mapping):
                    operations.append(self.operation(path, method, item, op))
                elif op is not None:
                    _warn(f"OpenAPI {method.upper()} {path} is skipped: the operation is not an object.")
        return _Derivation(tuple(operations))

    def name(self, op: Mapping[str, Any], method: str, path: str) -> str:
        base = _tool_base_name(op.get("operationId"), method, path)
        name = unique_name(base, self.used, "_")
        if name != base:
            why = "is reserved" if base in RESERVED_TOOLS else "is already used"
            _warn(
                f'OpenAPI operation {method.upper()} {path} maps to tool name "{base}", which {why}; '
                f'it is exposed as "{name}". Set a unique operationId to choose its name.'
            )
        self.used.add(name)
        return name

    def parameters(
        self, path: str, item: Mapping[str, Any], op: Mapping[str, Any], where: str
    ) -> list[Mapping[str, Any]]:
        """The operation's parameters (overriding the path item's), and any the path template uses undeclared."""
        merged: dict[tuple[str, str], Mapping[str, Any]] = {}
        for source in (item.get("parameters"), op.get("parameters")):
            for raw in source if isinstance(source, list) else ():
                param = self.schemas.resolve(raw)
                if not (isinstance(param, Mapping) and isinstance(param.get("name"), str)):
                    _warn(f"OpenAPI {where}: ignoring a parameter that names nothing: {raw!r}")
                    continue
                location = param.get("in")
                if location not in _LOCATIONS:
                    _warn(f"OpenAPI {where}: ignoring parameter {param['name']!r} in {location!r}")
                    continue
                if location == "header" and param["name"].lower() in _IGNORED_HEADERS:
                    continue
                merged[(param["name"], location)] = param
        for name in re.findall(r"\{([^}/]+)\}", path):
            if (name, "path") not in merged:
                _warn(f"OpenAPI {where}: the path parameter {name!r} is not declared; it is taken as a string.")
                merged[(name, "path")] = {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
        return list(merged.values())

    def operation(self, path: str, method: str, item: Mapping[str, Any], op: Mapping[str, Any]) -> Operation:
        verb = method.upper()
        tool_name = self.name(op, method, path)
        params = self.parameters(path, item, op, f"{verb} {path}")
        refs: set[str] = set()
        body, body_schema = self.request_body(op, refs, f"{verb} {path}")
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
        defs = self.schemas.defs_for(refs, "request")
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
        converted, param_refs = self.schemas.convert(schema if schema is not None else {}, "request")
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

    def request_body(self, op: Mapping[str, Any], refs: set[str], where: str) -> tuple[RequestBody | None, Any]:
        """The body an operation takes (its chosen media type) and the `body` argument's schema."""
        request_body = self.schemas.resolve(op.get("requestBody"))
        if not (isinstance(request_body, Mapping) and isinstance(request_body.get("content"), Mapping)):
            if op.get("requestBody") is not None:
                _warn(
                    f"OpenAPI {where}: its requestBody is unusable (no `content`, or a $ref naming nothing), so "
                    "its tool takes no body; the `request` tool can still send one."
                )
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
        converted, body_refs = self.schemas.convert(schema, "request")
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
            converted, refs = self.schemas.convert(media["schema"], "response")
            schema = dict(converted) if isinstance(converted, Mapping) else {}
            defs = self.schemas.defs_for(refs, "response")
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
            candidate = param["name"]
            if candidate in taken:
                candidate = unique_name(f"{candidate}_{location}", taken, "_")
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
# Serialization: OpenAPI parameter styles (RFC 6570 expansions underneath)
# ---------------------------------------------------------------------------


def _scalar_text(value: Any) -> str:
    """A scalar as it appears in a URL or a form: JSON's spelling for booleans and numbers."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="replace")
    return _json_text(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _nested(value: Any) -> bool:
    """Whether an object or array holds objects or arrays: only bracket notation can say that in a URL."""
    members = value.values() if isinstance(value, Mapping) else value if isinstance(value, (list, tuple)) else ()
    return any(isinstance(v, (Mapping, list, tuple)) for v in members)


def _atoms(value: Any, explode: bool, escape: Callable[[str], str]) -> list[str]:
    """The escaped pieces a value expands to: an array's members, an object's keys and values (`k=v` pairs
    when exploded), or the scalar itself. `None` members are left out, as absent."""
    if isinstance(value, Mapping):
        items = [(escape(str(k)), escape(_scalar_text(v))) for k, v in value.items() if v is not None]
        return [f"{k}={v}" for k, v in items] if explode else [x for item in items for x in item]
    if isinstance(value, (list, tuple)):
        return [escape(_scalar_text(v)) for v in value if v is not None]
    return [escape(_scalar_text(value))]


_Piece = tuple[str, list[str], str]
"""A field of a query or form: its name, its value's pieces, and the delimiter that joins them."""


def _deep_object_pairs(prefix: str, value: Any) -> list[tuple[str, str]]:
    """Bracket notation for nested values, as Stripe (and Rails, PHP) read it.

    `{"metadata": {"k": "v"}}` -> `metadata[k]=v`; `{"items": [{"price": "x"}]}`
    -> `items[0][price]=x`. Empty objects and lists, and `None`, send nothing.
    """
    if isinstance(value, Mapping):
        return [pair for k, v in value.items() for pair in _deep_object_pairs(f"{prefix}[{k}]", v)]
    if isinstance(value, (list, tuple)):
        present = [v for v in value if v is not None]
        return [pair for i, v in enumerate(present) for pair in _deep_object_pairs(f"{prefix}[{i}]", v)]
    if value is None:
        return []
    return [(prefix, _scalar_text(value))]


_DELIMITERS = {"spaceDelimited": " ", "pipeDelimited": "|"}


def _styled(name: str, value: Any, style: str, explode: bool) -> list[_Piece]:
    """One query parameter (or form field) as pieces, per its OpenAPI `style` and `explode`; unescaped."""
    if value is None:
        return []
    if style == "deepObject" or _nested(value):
        return [(k, [v], "") for k, v in _deep_object_pairs(name, value)]
    if isinstance(value, (Mapping, list, tuple)):
        spread = explode and (style == "form" or not isinstance(value, Mapping))
        if spread and isinstance(value, Mapping):
            return [(str(k), [_scalar_text(v)], "") for k, v in value.items() if v is not None]
        if spread:
            return [(name, [atom], "") for atom in _atoms(value, False, str)]
        return [(name, _atoms(value, False, str), _DELIMITERS.get(style, ","))]
    return [(name, [_scalar_text(value)], "")]


_QUERY_SAFE = "-._~"
_RESERVED_SAFE = "-._~:/?[]@!$'()*,;"


def _urlencoded(pieces: Iterable[_Piece], allow_reserved: bool = False) -> list[str]:
    """`name=value` with everything but unreserved characters percent-encoded (spaces as %20), except
    that a `,` delimiter stays as it is, so a comma inside a value (%2C) is not one."""
    safe = _RESERVED_SAFE if allow_reserved else _QUERY_SAFE
    return [
        f"{quote(name, safe=_QUERY_SAFE)}={quote(delimiter, safe=',').join(quote(a, safe=safe) for a in atoms)}"
        for name, atoms, delimiter in pieces
    ]


def query_string(req: OpenApiRequest) -> str:
    """The request's query string, each parameter serialized with its declared style."""
    fields: list[str] = []
    for name, value in req.query.items():
        p = req.operation.parameter(name, "query") if req.operation else None
        if p is None:
            fields += _urlencoded(_styled(name, value, "form", True))
        elif p.content_type is not None:
            fields += _urlencoded([(name, [_json_text(value)], "")] if value is not None else [], p.allow_reserved)
        else:
            fields += _urlencoded(_styled(name, value, p.style, p.explode), p.allow_reserved)
    return "&".join(fields)


def _form_field(prop: str, value: Any, enc: PropertyEncoding) -> list[_Piece]:
    """One property of a form body, per its `encoding` (objects in bracket notation unless it says otherwise)."""
    if enc.content_type is not None and enc.style is None and _is_json(enc.content_type):
        return [(prop, [_json_text(value)], "")] if value is not None else []
    style = enc.style or ("deepObject" if isinstance(value, Mapping) else "form")
    explode = enc.explode if enc.explode is not None else style in ("form", "deepObject")
    return _styled(prop, value, style, explode)


def form_body(body: Mapping[str, Any], encoding: Mapping[str, PropertyEncoding]) -> str:
    """An `application/x-www-form-urlencoded` body: the spec's `encoding`, bracket notation for nested values."""
    fields: list[str] = []
    for prop, value in body.items():
        enc = encoding.get(prop, PropertyEncoding())
        fields += _urlencoded(_form_field(prop, value, enc), enc.allow_reserved)
    return "&".join(fields)


def _path_value(p: Parameter, value: Any) -> str:
    """A path parameter, percent-encoded in its style: `simple` (`a,b`), `label` (`.a.b`) or `matrix` (`;id=a,b`).
    Every reserved character of a value is escaped (but `/` with `allowReserved`), delimiters are not."""

    def escape(text: str) -> str:
        return quote(text, safe="/" if p.allow_reserved else "")

    if p.content_type is not None:
        return escape(_json_text(value))
    atoms = _atoms(value, p.explode, escape)
    if p.style == "label":
        return "." + ("." if p.explode else ",").join(atoms)
    if p.style == "matrix":
        if p.explode and isinstance(value, Mapping):
            return "".join(f";{a}" for a in atoms)
        if p.explode and isinstance(value, (list, tuple)):
            return "".join(f";{escape(p.name)}={a}" for a in atoms)
        return f";{escape(p.name)}=" + ",".join(atoms)
    return ",".join(atoms)


# A path segment that is only dots would be removed by URL normalization (`/items/..` is `/`).
_DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


def build_request(op: Operation, args: Mapping[str, Any], *, idempotency_key: str = "") -> OpenApiRequest:
    """The request an operation's tool makes for `args` (with each parameter's style), carrying
    the call's `idempotency_key`."""
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
        if p.location == "path":
            text = _path_value(p, value)
            if not text:
                raise ValueError(
                    f'{op.method} {op.path}: the path parameter "{p.argument}" is empty; give it a value '
                    "(an empty one would address another resource)."
                )
            path = path.replace("{" + p.name + "}", text)
        elif p.location == "query":
            query[p.name] = value
        else:
            text = _json_text(value) if p.content_type is not None else ",".join(_atoms(value, p.explode, str))
            (headers if p.location == "header" else cookies)[p.name] = text
    missing = [p.argument for p in op.parameters if p.location == "path" and "{" + p.name + "}" in path]
    if missing:
        names = ", ".join(f'"{m}"' for m in missing)
        raise ValueError(f"{op.method} {op.path} needs the path parameter(s) {names}.")
    path = "/".join(_DOT_SEGMENTS.get(segment, segment) for segment in path.split("/"))
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
        idempotency_key=idempotency_key,
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
        # The API's own summary, unless the connector has instructions of its own.
        self._source_instructions = None if self.instructions else _api_summary(doc)
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
            return await maybe_await(self.request(build_request(op, args, idempotency_key=ctx.idempotency_key)))

        return execute

    async def _escape_hatch(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        path = args.get("path")
        if not isinstance(path, str) or not path.startswith("/") or "#" in path:
            raise ValueError(
                f"request: path must be a string starting with / (relative to the API), without #, not {path!r}."
            )
        method = str(args.get("method") or "GET").upper()
        op = self._derivation.match(method, path) if self._derivation else None
        body = args.get("body")
        raw = args.get("headers")
        headers = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, Mapping) else {}
        content_type = args.get("content_type")
        if not isinstance(content_type, str):  # else a Content-Type header, the operation's, or JSON
            given = [v for k, v in headers.items() if k.lower() == "content-type"]
            declared = op.body.content_type if op is not None and op.body is not None else None
            content_type = given[0] if given else declared or "application/json"
        params = args.get("params")
        req = OpenApiRequest(
            method=method,
            path=path,
            query=dict(params) if isinstance(params, Mapping) else {},
            headers={k: v for k, v in headers.items() if k.lower() != "content-type"},  # said by content_type
            body=body,
            content_type=content_type if body is not None else None,
            operation=op,
            idempotency_key=ctx.idempotency_key,
        )
        return await maybe_await(self.request(req))


# ---------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------


class OpenApiHttpError(RuntimeError):
    """A non-2xx answer; the message says what happened and what the program should do.

    It is raised as the subclass for its status, which is also the built-in exception the program
    catches (see `http_error`): 400, 409, 422 and other 4xx `ValueError`; 401, 403 `PermissionError`;
    404, 410 `LookupError`; 408, 504 `TimeoutError`; 429 and other 5xx `ConnectionError` (an
    `OSError`: the sandboxes have only that name); redirects and anything else stay this class
    (`RuntimeError`). The message always has `HTTP <status> <reason>`.
    """

    def __init__(self, message: str, *, method: str, path: str, status: int, body: str, reason: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status = status
        self.reason = reason
        self.body = body


class _HttpRequestError(OpenApiHttpError, ValueError):
    """The API refused the request as it was (400, 409, 422, ...): changing it may help."""


class _HttpPermissionError(OpenApiHttpError, PermissionError):
    """401 or 403: credentials or permissions; the program cannot fix it."""


class _HttpNotFoundError(OpenApiHttpError, LookupError):
    """404 or 410: no such resource (or not visible)."""


class _HttpTimeoutError(OpenApiHttpError, TimeoutError):
    """408 or 504: no answer in time; the call may still have taken effect."""


class _HttpUnavailableError(OpenApiHttpError, ConnectionError):
    """429 or a 5xx: the service is overloaded or failing; later may work."""


def http_error_type(status: int) -> type[OpenApiHttpError]:
    """The `OpenApiHttpError` subclass (and so the built-in exception type) for an HTTP status."""
    if status in (401, 403):
        return _HttpPermissionError
    if status in (404, 410):
        return _HttpNotFoundError
    if status in (408, 504):
        return _HttpTimeoutError
    if status == 429 or 500 <= status < 600:
        return _HttpUnavailableError
    if 400 <= status < 500:
        return _HttpRequestError
    return OpenApiHttpError


_EXCERPT = 500
# Headers the transport sets; a program's own would corrupt or misroute the request.
_TRANSPORT_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
# Methods that change nothing (RFC 9110 §9.2.1): repeating one is harmless, so it carries no Idempotency-Key.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\x20-\x7e\t]*")
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
    elif 300 <= status < 400:
        text = "The API redirects this call, and redirects are not followed: report where it points if that helps."
    elif status >= 500:
        text = "The API failed on its side: retrying later may work; do not assume the call had no effect."
    else:
        text = "The call did not succeed."
    if status in (400, 422):
        text += f' codemode.describe("{tool}") shows the expected arguments.'
    return text


def _load_document(path: Path) -> Mapping[str, Any]:
    """A JSON or YAML file (JSON is tried first unless the name says YAML)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() not in (".yaml", ".yml"):
        try:
            return _check_document(json.loads(text))
        except json.JSONDecodeError as exc:
            if path.suffix.lower() == ".json":
                raise ValueError(f"{path} is not valid JSON: {exc}.") from None
    try:
        yaml: Any = importlib.import_module("yaml")  # optional dependency
    except ImportError:
        raise ValueError(f"{path} is YAML: install PyYAML to load it, or convert it to JSON.") from None
    try:
        loaded = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is neither valid JSON nor valid YAML: {exc}") from None
    return _check_document(loaded)


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
    headers the program passes; they never leave the API: the escape hatch
    only reaches paths under the base URL, and redirects are not followed.
    Every call but a `GET`, `HEAD`, `OPTIONS` or `TRACE` sends the call's
    idempotency key as `Idempotency-Key` (the same when a crash makes the
    runtime perform the call again), unless a header of that name is already
    set, by `headers`, the program or the operation's own parameter.
    Responses: JSON is parsed (in its declared charset), text is a `str`,
    anything else `bytes`, no content `None`; any other status (a redirect
    too, with its location) raises `OpenApiHttpError` with advice for the model.
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
        try:
            import httpx  # noqa: F401  (the `openapi` extra: missing, it is the developer's to install, now)
        except ImportError as exc:
            raise ImportError(
                f"HttpOpenApiConnector needs httpx: pip install 'codemode[openapi]' ({type(exc).__name__}: {exc})."
            ) from exc
        self.name = name
        self.instructions = instructions
        self._document_source: Mapping[str, Any] | Path = spec if isinstance(spec, Mapping) else Path(spec)
        self.base_url = base_url
        self.headers = dict(headers or {})
        self.timeout = timeout
        self._client = client
        self._owns_client = client is None

    def spec(self) -> Mapping[str, Any]:
        if isinstance(self._document_source, Path):
            self._document_source = _read_document(self._document_source)
        return self._document_source

    async def tools(self) -> Mapping[str, ToolSpec]:
        tools = await super().tools()
        self._base(None)  # a document without a usable server needs base_url: say so now, not at the first call
        return tools

    def _base(self, op: Operation | None) -> str:
        if self.base_url is not None:
            return self.base_url.rstrip("/")
        url = (op.server_url if op is not None else None) or _server_url(self.spec().get("servers"))
        if url is None or not re.match(r"^https?://", url, re.IGNORECASE) or "{" in url:
            raise ValueError(
                f"HttpOpenApiConnector {self.name!r}: the document gives no absolute server URL "
                f"(servers[0].url is {url!r}, variables filled with their defaults); pass base_url."
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
        try:
            target = httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"{req.method} {req.path}: not a usable URL ({exc}).") from None
        if not _within(target, httpx.URL(base + "/")):
            raise ValueError(f"request: {req.path!r} leaves the API; give a path under {base}.")
        own = {h.lower() for h in self.headers}
        headers = {k: v for k, v in req.headers.items() if k.lower() not in own | _TRANSPORT_HEADERS}
        headers.update(self.headers)
        if req.cookies:
            cookies = [f"{k}={quote(v, safe='')}" for k, v in req.cookies.items()]
            configured = [headers.pop(k) for k in list(headers) if k.lower() == "cookie"]  # an auth cookie stays
            headers["Cookie"] = "; ".join([*configured, *cookies])
        if (
            req.idempotency_key
            and req.method.upper() not in _SAFE_METHODS
            and not any(k.lower() == "idempotency-key" for k in headers)
        ):
            headers["Idempotency-Key"] = req.idempotency_key
        content, files = self._body(req, headers)
        for name, value in headers.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{req.method} {req.path}: {name!r} is not a valid header name.")
            if not _HEADER_VALUE.fullmatch(value):
                raise ValueError(
                    f"{req.method} {req.path}: the value of header {name!r} must be printable ASCII on one line "
                    "(percent-encode other characters if the API expects them)."
                )
        try:
            response = await self.client.request(req.method, url, headers=headers, content=content, files=files)
        except httpx.TimeoutException:
            raise TimeoutError(
                f"{req.method} {req.path}: no answer in time; the API may be slow or down. The call may still "
                "have taken effect: check before repeating a call that changes something."
            ) from None
        except httpx.HTTPError as exc:
            raise ConnectionError(
                f"{req.method} {req.path}: could not reach {base} ({type(exc).__name__}: {exc}). "
                "The API may be down; try again later."
            ) from None
        return self._result(req, response)

    @staticmethod
    def _body(req: OpenApiRequest, headers: dict[str, str]) -> tuple[bytes | None, Any]:
        """(content, files) for httpx: JSON, form, multipart or raw bytes."""
        if not req.has_body:
            return None, None
        content_type = req.content_type or "application/json"
        essence = _essence(content_type)
        encoding = req.operation.body.encoding if req.operation and req.operation.body else {}
        if essence.startswith("multipart/"):  # httpx writes the Content-Type, with the boundary
            if not isinstance(req.body, Mapping):
                raise TypeError(f"{req.method} {req.path}: a multipart body must be an object of fields.")
            return None, _multipart(req.body, encoding)
        headers["Content-Type"] = content_type
        body = req.body
        if _is_json(essence):
            return _json_text(body).encode(), None
        if essence == "application/x-www-form-urlencoded":
            if not isinstance(body, Mapping):
                raise TypeError(f"{req.method} {req.path}: a form body must be an object of fields.")
            return form_body(body, encoding).encode(), None
        if isinstance(body, (bytes, bytearray)):
            return bytes(body), None
        if isinstance(body, str):
            return body.encode(), None
        return _json_text(body).encode(), None

    def _result(self, req: OpenApiRequest, response: httpx.Response) -> Any:
        if not 200 <= response.status_code < 300:
            tool = f"{self.name}.{req.operation.tool_name if req.operation else 'request'}"
            excerpt = " ".join(response.text.split())
            if len(excerpt) > _EXCERPT:
                excerpt = excerpt[:_EXCERPT] + "…"
            reason = f" {response.reason_phrase}" if response.reason_phrase else ""
            location = response.headers.get("location") if 300 <= response.status_code < 400 else None
            message = (
                f"{req.method} {req.path} failed with HTTP {response.status_code}{reason}"
                f"{f' (Location: {location})' if location else ''}{': ' + excerpt if excerpt else ''}. "
                f"{_advice(response.status_code, tool)}"
            )
            raise http_error_type(response.status_code)(
                message,
                method=req.method,
                path=req.path,
                status=response.status_code,
                body=excerpt,
                reason=response.reason_phrase,
            )
        if response.status_code == 204 or not response.content:
            return None
        content_type = response.headers.get("content-type", "")
        if _is_json(content_type):
            try:  # httpx's `json()` ignores a declared charset (it guesses among the UTF encodings)
                return json.loads(response.text) if response.charset_encoding else response.json()
            except ValueError:
                return response.text
        essence = _essence(content_type)
        if essence.startswith("text/") or essence.endswith(("+xml", "/xml")) or essence == "application/javascript":
            return response.text
        if not content_type:
            try:
                return response.content.decode("utf-8")
            except UnicodeDecodeError:
                return response.content
        return response.content


def _within(url: httpx.URL, base: httpx.URL) -> bool:
    """Whether `url` is on the API's host and under its base path, once decoded and normalized as a server
    may (`/v2/%2e%2e/admin` is `/admin`)."""
    path = posixpath.normpath(url.path).rstrip("/") + "/"
    return (url.scheme, url.netloc) == (base.scheme, base.netloc) and path.startswith(base.path)


def _multipart(body: Mapping[str, Any], encoding: Mapping[str, PropertyEncoding]) -> list[tuple[str, Any]]:
    """multipart/form-data parts: bytes as files, an array as one part per member, objects as JSON parts
    (or as fields in their `encoding`'s style)."""
    parts: list[tuple[str, Any]] = []
    for prop, value in body.items():
        enc = encoding.get(prop, PropertyEncoding())
        if isinstance(value, (Mapping, list, tuple)) and enc.style is not None:
            pieces = _styled(prop, value, enc.style, enc.explode is not False)
            parts += [(name, (None, delimiter.join(atoms))) for name, atoms, delimiter in pieces]
            continue
        for member in value if isinstance(value, (list, tuple)) and not _nested(value) else [value]:
            if member is None:
                continue
            if isinstance(member, (bytes, bytearray)):
                parts.append((prop, (prop, bytes(member), enc.content_type or "application/octet-stream")))
            elif isinstance(member, (Mapping, list, tuple)):
                parts.append((prop, (None, _json_text(member).encode(), enc.content_type or "application/json")))
            else:
                parts.append((prop, (None, _scalar_text(member))))
    return parts
