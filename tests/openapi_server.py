"""A real HTTP server on 127.0.0.1 that checks every request against an OpenAPI document with openapi-core.

The connector under test never shares code with it: requests are parsed here
with the standard library and werkzeug, then validated and unmarshalled by
openapi-core. Each request is recorded (`seen`) with the validator's verdict.
A valid request gets the status of the operation's first 2xx response and a
JSON echo of what the server understood (or no body for 204); an invalid one
gets 400 with the validator's messages. `reply()` scripts other answers, and can
hold one back (a call in flight, while a test kills the client's host).

openapi-core reads `deepObject` only one level deep and only for objects, so
Stripe's real encoding (`items[0][price]=x`, `expand[0]=a`) is parsed here with
a bracket-notation reader before openapi-core casts and validates the result.
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from openapi_core import Config, OpenAPI
from openapi_core.casting.schemas.casters import (
    AnyCaster,
    ArrayCaster,
    BooleanCaster,
    IntegerCaster,
    NumberCaster,
    ObjectCaster,
    PrimitiveCaster,
    TypesCaster,
)
from openapi_core.casting.schemas.factories import SchemaCastersFactory
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.styles import style_deserializers
from openapi_core.deserializing.styles.factories import StyleDeserializersFactory
from openapi_core.templating.paths.finders import APICallPathFinder
from openapi_core.validation.schemas import oas30_write_schema_validators_factory, oas31_schema_validators_factory
from werkzeug.datastructures import Headers, ImmutableMultiDict

__all__ = ["Reply", "Seen", "ValidatingServer"]

_BRACKETS = re.compile(r"\[([^\[\]]*)\]")


def _bracket_value(explode: bool, name: str, schema_type: str, location: Mapping[str, Any]) -> Any:
    """`name[a][0][b]=v` pairs -> nested dicts and lists; a bare `name=v` is the plain value."""
    pairs = location.items(multi=True) if isinstance(location, ImmutableMultiDict) else location.items()
    root: dict[str, Any] = {}
    found = False
    for key, value in pairs:
        suffix = key[len(name) :]
        parts = _BRACKETS.findall(suffix)
        if not key.startswith(name + "[") or suffix != "".join(f"[{p}]" for p in parts):
            continue
        found = True
        if isinstance(value, bytes):  # multipart fields arrive as bytes
            value = value.decode()
        node = root
        for i, part in enumerate(parts):
            if part == "":
                part = str(len(node))  # `name[]` appends
            if i == len(parts) - 1:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    if not found:
        if name in location:
            return location[name]
        raise KeyError(name)
    return _lists(root)


def _lists(node: Any) -> Any:
    """Dicts keyed 0..n-1 are the arrays of bracket notation."""
    if not isinstance(node, dict):
        return node
    items = {k: _lists(v) for k, v in node.items()}
    if items and all(k.isdigit() for k in items) and sorted(int(k) for k in items) == list(range(len(items))):
        return [items[str(i)] for i in range(len(items))]
    return items


class _ObjectCaster(ObjectCaster):
    """openapi-core's object caster skips `additionalProperties` values (so `currency_options[usd][amount]=1`
    stays a string); this one casts them with their schema."""

    def _cast_proparties(self, value: dict[str, Any], schema_only: bool = False) -> dict[str, Any]:
        value = super()._cast_proparties(value, schema_only)
        extra = self.schema.get("additionalProperties", True)
        if schema_only or isinstance(extra, bool) or extra is None:
            return value
        declared = set(self.schema.get("properties", {}).keys()) if "properties" in self.schema else set()
        caster = self.schema_caster.evolve(self.schema / "additionalProperties")
        return {k: v if k in declared else caster.cast(v) for k, v in value.items()}


def _casters(v31: bool) -> SchemaCastersFactory:
    types = {
        "object": _ObjectCaster,
        "array": ArrayCaster,
        "boolean": BooleanCaster,
        "integer": IntegerCaster,
        "number": NumberCaster,
        "string": PrimitiveCaster,
    }
    if v31:
        return SchemaCastersFactory(
            oas31_schema_validators_factory,
            TypesCaster({**types, "null": PrimitiveCaster}, AnyCaster, multi=PrimitiveCaster),
        )
    return SchemaCastersFactory(oas30_write_schema_validators_factory, TypesCaster(types, AnyCaster))


# Vendor formats the documents use: Stripe's `unix-time` integers and `decimal` strings.
_FORMATS: dict[str, Any] = {
    "unix-time": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "decimal": lambda v: isinstance(v, str) and re.fullmatch(r"-?\d+(\.\d+)?", v) is not None,
}
_FORMAT_UNMARSHALLERS: dict[str, Any] = {"unix-time": int, "decimal": str}


@dataclass
class Seen:
    """One request as the server received it, and the validator's verdict."""

    method: str
    path: str  # percent-decoded
    raw_path: str
    query: str  # raw query string
    headers: dict[str, str]
    body: bytes
    operation: str | None  # "METHOD /template"
    errors: list[str]
    parameters: dict[str, Any] = field(default_factory=dict)
    body_value: Any = None

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass
class Reply:
    """A scripted answer: status, body bytes, content type and other headers; sent once `hold` is set, if given
    (the request is recorded in `seen` before)."""

    status: int
    body: bytes = b""
    content_type: str | None = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None


@dataclass
class _Request:
    """The request as openapi-core's `Request` protocol wants it."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str
    body: bytes | None


def _messages(error: BaseException) -> list[str]:
    """The validator's messages for one error, with the schema errors behind it."""
    out = [f"{type(error).__name__}: {error}"]
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        for schema_error in getattr(cause, "schema_errors", ()) or ():
            where = "/".join(str(p) for p in schema_error.absolute_path) or "(root)"
            out.append(f"  at {where}: {schema_error.message}")
        if cause is not error:
            out.append(f"  caused by {type(cause).__name__}: {cause}")
        cause = cause.__cause__ or cause.__context__
    return out


def _with_servers(doc: Mapping[str, Any], url: str) -> dict[str, Any]:
    """A shallow copy of the document with every `servers` list (document, path, operation) pointing at `url`."""
    servers = [{"url": url}]
    paths: dict[str, Any] = {}
    for path, item in doc.get("paths", {}).items():
        if isinstance(item, Mapping):
            item = {
                k: ({**v, "servers": servers} if isinstance(v, Mapping) and "servers" in v else v)
                for k, v in item.items()
            }
            if "servers" in item:
                item["servers"] = servers
        paths[path] = item
    return {**doc, "servers": servers, "paths": paths}


def _version_31(doc: Mapping[str, Any]) -> bool:
    return str(doc.get("openapi", "")).startswith(("3.1", "3.2"))


class ValidatingServer:
    """A threaded HTTP server validating requests against one document; use as a context manager.

    The API is served under `prefix` (`/v2`): its URL is `api_url`, and `reply()` paths are relative to it.
    """

    def __init__(self, document: Mapping[str, Any], prefix: str = "") -> None:
        handler = type("Handler", (_Handler,), {"owner": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        host, port = self.httpd.server_address[:2]
        self.base_url = f"http://{host!s}:{port}"
        self.prefix = prefix
        self.api_url = self.base_url + prefix
        doc = _with_servers(document, self.api_url)
        casters = _casters(_version_31(doc))
        styles = StyleDeserializersFactory(
            casters, style_deserializers={**style_deserializers, "deepObject": _bracket_value}
        )
        config = Config(
            # The documents are published, well-formed specs: checking the spec itself (15 s for GitHub) is not
            # this server's job; every request is still fully validated.
            spec_validator_cls=None,
            style_deserializers_factory=styles,
            schema_casters_factory=casters,
            extra_format_validators=_FORMATS,
            extra_format_unmarshallers=_FORMAT_UNMARSHALLERS,
        )
        self.openapi = OpenAPI.from_dict(doc, config=config)
        self.finder = APICallPathFinder(self.openapi.spec)
        self.seen: list[Seen] = []
        self.replies: dict[tuple[str, str], Reply] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ValidatingServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="openapi-test-server", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def reply(self, method: str, path: str, reply: Reply) -> None:
        """Answer `METHOD path` (decoded, without query, under the prefix) with `reply` instead of the echo."""
        self.replies[(method.upper(), path)] = reply

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()
            self.replies.clear()

    def failures(self) -> Iterator[str]:
        """One line per rejected request, with the validator's messages."""
        for s in self.seen:
            if s.errors:
                yield f"{s.method} {s.raw_path}?{s.query} ({s.operation}):\n" + "\n".join(s.errors)

    # -- request handling (server threads) ---------------------------------

    def handle(self, method: str, target: str, headers: Headers, body: bytes) -> tuple[Reply, Seen]:
        # Templates are matched against the raw path, so an encoded `/` (%2F) stays inside its parameter.
        parts = urlsplit(target)
        path = unquote(parts.path)
        cookies = SimpleCookie(headers.get("Cookie", ""))
        operation: str | None = None
        status = 200
        variables: dict[str, str] = {}
        try:
            found = self.finder.find(method.lower(), self.base_url + parts.path)
            variables = {k: unquote(v) for k, v in found.path_result.variables.items()}
            operation = f"{method.upper()} {found.path_result.pattern}"
            responses = found.operation.get("responses", {})
            codes = [str(c) for c in responses.keys() if str(c).startswith("2")]  # noqa: SIM118 - a SchemaPath
            numeric = sorted(int(c) for c in codes if c.isdigit())
            status = numeric[0] if numeric else 200
        except Exception as exc:  # the validator reports a path or method it cannot find, below
            operation = f"unmatched ({type(exc).__name__})"
        request = _Request(
            host_url=self.base_url,
            path=parts.path,
            method=method.lower(),
            parameters=RequestParameters(
                query=ImmutableMultiDict(parse_qsl(parts.query, keep_blank_values=True)),
                header=headers,
                cookie=ImmutableMultiDict({k: v.value for k, v in cookies.items()}),
                path=variables,
            ),
            content_type=headers.get("Content-Type", ""),
            body=body,
        )
        with warnings.catch_warnings():
            # Slack declares OAuth2, which openapi-core cannot check ("Unsupported scheme type"); its token is a
            # declared header parameter, validated as such.
            warnings.simplefilter("ignore", UserWarning)
            result = self.openapi.unmarshal_request(request)
        errors = [line for error in result.errors for line in _messages(error)]
        params = {
            "path": dict(result.parameters.path),
            "query": dict(result.parameters.query),
            "header": dict(result.parameters.header),
            "cookie": dict(result.parameters.cookie),
        }
        seen = Seen(
            method=method.upper(),
            path=path,
            raw_path=parts.path,
            query=parts.query,
            headers=dict(headers.items()),
            body=body,
            operation=operation,
            errors=errors,
            parameters=params,
            body_value=result.body,
        )
        with self._lock:
            self.seen.append(seen)
            scripted = self.replies.get((method.upper(), path.removeprefix(self.prefix)))
        if errors:
            text = json.dumps({"message": "Request failed OpenAPI validation", "errors": errors})
            return Reply(400, text.encode()), seen
        if scripted is not None:
            return scripted, seen
        if status == 204:
            return Reply(204, b"", None), seen
        echo = {"ok": True, "operation": operation, "parameters": params, "body": result.body}
        return Reply(status, json.dumps(echo, default=str).encode()), seen


class _Handler(BaseHTTPRequestHandler):
    owner: ValidatingServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def _any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = Headers(list(self.headers.items()))
        try:
            reply, _ = self.owner.handle(self.command, self.path, headers, body)
        except Exception as exc:  # a server bug must show up in the test, not hang the client
            reply = Reply(500, json.dumps({"message": f"test server error: {exc!r}"}).encode())
        if reply.hold is not None:
            reply.hold.wait(timeout=60)
        try:
            self.send_response(reply.status)
            if reply.content_type is not None:
                self.send_header("Content-Type", reply.content_type)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):  # a held request's client is gone
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_HEAD = do_TRACE = _any

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the test reads `seen`, not the access log."""
