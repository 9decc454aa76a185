"""MCP servers as connectors: every tool of a server becomes a method the program can call.

The connection is structural. `McpConnector.create_connection()` (sync or async) returns either

- a connection: any object with `call_tool(name, arguments)` and `list_tools()` coroutines
  (`McpConnection`), used as it is; or
- an async context manager that yields one (a connection that is also one, like `fastmcp.Client`,
  is entered too). The connector enters it in a task of its own and exits it in that same task,
  which the anyio-based MCP clients require, so calls may come from any task.

The `mcp` SDK's `ClientSession` (1.x and 2.x) and `fastmcp.Client` both fit without adapters: return
`fastmcp.Client(url)` as it is, or an `@asynccontextmanager` that opens a transport and yields an
initialized `ClientSession`. `list_tools()` may return a `ListToolsResult` (pages are followed) or a
list of tools; `call_tool()` may return the SDK's `CallToolResult`, fastmcp's result object, or the
wire-format dict. The server's instructions are read from `connection.instructions`, else
`connection.initialize_result.instructions`. The connection is cached per instance; a connection
that dies is replaced on the next call (a crashed stdio server is started again).

`McpConnector.stdio(...)` and `McpConnector.http(...)` are ready connections on the `mcp` SDK.
A call is bounded by `call_timeout`, connecting by `connect_timeout`; a server that cannot be reached
makes `describe()` raise, which the runtime turns into an error outcome. Results are unwrapped as the
reference does (spec §8.2), see `unwrap_result`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import shlex
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TextIO, TypeVar

from codemode.connectors.base import Connector, ConnectorDescription, ToolContext, ToolSpec, maybe_await
from codemode.schema.names import sanitize_identifier

__all__ = [
    "McpConnection",
    "McpConnectionError",
    "McpConnector",
    "McpTimeoutError",
    "McpTool",
    "McpToolError",
    "unwrap_result",
]

log = logging.getLogger("codemode")

C = TypeVar("C", bound="McpConnector")

DEFAULT_CALL_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 30.0
_CONNECTION_CLOSED = -32000  # the JSON-RPC code the mcp SDK gives requests cut off by a closed connection
_MAX_PAGES = 100
_PROBE_TIMEOUT = 5.0
_CLOSE_TIMEOUT = 15.0
_STDERR_TAIL = 1500
# Exception types (by name, so neither anyio nor httpx has to be importable) that mean the link is gone.
_LOST = frozenset(
    {
        "ClosedResourceError",
        "BrokenResourceError",
        "EndOfStream",
        "TransportError",
        "NetworkError",
        "RemoteProtocolError",
    }
)


class McpConnection(Protocol):
    """What the connector needs from an MCP client: the `mcp` SDK session and `fastmcp.Client` both have it.

    Optionally also `instructions` (or `initialize_result.instructions`), and `send_ping()` or `ping()`,
    used to tell a slow tool from a dead server after a timeout.
    """

    def call_tool(self, name: str, arguments: dict[str, Any]) -> Awaitable[Any]: ...

    def list_tools(self) -> Awaitable[Any]: ...


class McpToolError(RuntimeError):
    """The server ran the tool and reported a failure (`isError`, or a JSON-RPC error)."""


class McpConnectionError(ConnectionError):
    """The server could not be reached, or the connection to it was lost."""


class McpTimeoutError(TimeoutError):
    """The server did not answer within `call_timeout`."""


@dataclass(frozen=True)
class McpTool:
    """One tool as the server lists it, in wire names whatever client listed it."""

    name: str
    description: str = ""
    input_schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})
    output_schema: Mapping[str, Any] | None = None
    annotations: Mapping[str, Any] = field(default_factory=dict)
    raw: Any = None

    @property
    def read_only(self) -> bool:
        """The server declares the tool does not modify its environment (`readOnlyHint: true`)."""
        return self.annotations.get("readOnlyHint") is True

    @classmethod
    def of(cls, tool: Any) -> McpTool:
        data = _wire(tool)
        schema = data.get("inputSchema")
        output = data.get("outputSchema")
        annotations = data.get("annotations")
        return cls(
            name=str(data["name"]),
            description=str(data.get("description") or data.get("title") or ""),
            input_schema=schema if isinstance(schema, Mapping) else {"type": "object", "properties": {}},
            output_schema=output if isinstance(output, Mapping) else None,
            annotations=annotations if isinstance(annotations, Mapping) else {},
            raw=tool,
        )


class McpConnector(Connector):
    """A connector whose tools are an MCP server's tools.

    Subclass and override `create_connection()`, or use the ready `stdio()` and `http()` constructors
    (they call `cls(name, **options)`, so a subclass that only overrides `tool()` or `tool_name()` can use
    them). A subclass with its own `__init__` calls `super().__init__(name, ...)`.
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        instructions: str | None = None,
        approve_writes: bool = False,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    ) -> None:
        """
        Args:
            name: The global the program uses (else the class attribute `name`).
            instructions: Guidance of your own, shown after the server's instructions.
            approve_writes: Every tool not annotated `readOnlyHint: true` requires approval.
            call_timeout: Seconds one call may take before the program gets a `TimeoutError` (None: no limit).
            connect_timeout: Seconds to start or reach the server and list its tools.
        """
        if name is not None:
            self.name = name
        if instructions is not None:
            self.instructions = instructions
        self.approve_writes = approve_writes
        self.call_timeout = call_timeout
        self.connect_timeout = connect_timeout
        self.mcp_tools: dict[str, McpTool] = {}  # by sanitized name, filled by describe() before tool() runs
        self._opener: Callable[[], AbstractAsyncContextManager[Any]] | None = None
        self._target = "create_connection()"
        self._stderr: _StderrTail | None = None
        self._handshake_instructions: str | None = None
        self._server_instructions: str | None = None
        self._link: _Link | None = None
        self._link_lock: asyncio.Lock | None = None

    # -- ready connections --------------------------------------------------

    @classmethod
    def stdio(
        cls: type[C],
        name: str,
        command: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        *,
        errlog: TextIO | None = None,
        **options: Any,
    ) -> C:
        """A server run as a subprocess speaking MCP on stdin/stdout.

        `env` is added to the small environment the `mcp` SDK passes on (HOME, PATH, ...). The server's
        stderr goes to `errlog`; by default it is kept in a temporary file whose tail is quoted in errors.
        """
        connector = cls(name, **options)
        connector._target = shlex.join([command, *args])

        @asynccontextmanager
        async def open_stdio() -> AsyncIterator[Any]:
            from mcp import ClientSession, StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=command,
                args=list(args),
                env=dict(env) if env is not None else None,
                cwd=os.fspath(cwd) if cwd is not None else None,
            )
            with _StderrTail.open(errlog) as stderr:
                connector._stderr = stderr
                try:
                    async with (
                        stdio_client(params, errlog=stderr.file) as streams,
                        ClientSession(streams[0], streams[1]) as session,
                    ):
                        connector._handshake_instructions = (await session.initialize()).instructions
                        yield session
                finally:
                    stderr.freeze()

        connector._opener = open_stdio
        return connector

    @classmethod
    def http(cls: type[C], name: str, url: str, headers: Mapping[str, str] | None = None, **options: Any) -> C:
        """A server reached over streamable HTTP at `url` (headers carry auth, for example)."""
        connector = cls(name, **options)
        connector._target = url

        @asynccontextmanager
        async def open_http() -> AsyncIterator[Any]:
            from mcp import ClientSession
            from mcp.client import streamable_http

            async with AsyncExitStack() as stack:
                client = getattr(streamable_http, "streamable_http_client", None)
                if client is not None:
                    # The SDK's own factory (private, but what its session groups use): MCP-suited timeouts.
                    from mcp.shared._httpx_utils import create_mcp_http_client

                    http = await stack.enter_async_context(
                        create_mcp_http_client(headers=dict(headers) if headers else None)
                    )
                    streams = await stack.enter_async_context(client(url, http_client=http))
                else:  # mcp 1.x before streamable_http_client
                    legacy = streamable_http.streamablehttp_client  # type: ignore[attr-defined,unused-ignore]
                    streams = await stack.enter_async_context(legacy(url, headers=dict(headers or {})))
                session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
                connector._handshake_instructions = (await session.initialize()).instructions
                yield session

        connector._opener = open_http
        return connector

    # -- override points ----------------------------------------------------

    def create_connection(self) -> Any:
        """A connection, or an async context manager yielding one (see the module docstring). Sync or async."""
        if self._opener is None:
            raise NotImplementedError(
                f"{type(self).__name__} has no MCP connection: override create_connection(), or build it with "
                f"{type(self).__name__}.stdio(...) or {type(self).__name__}.http(...)."
            )
        return self._opener()

    def tool_name(self, tool: McpTool) -> str:
        """The method name the program uses for an MCP tool."""
        return sanitize_identifier(tool.name)

    # -- the connector ------------------------------------------------------

    async def tools(self) -> Mapping[str, ToolSpec]:
        link = await self._live_link()
        listed = await self._request(link, "listing its tools", _list_all)
        self._server_instructions = _instructions(link.connection) or self._handshake_instructions
        mcp_tools: dict[str, McpTool] = {}
        specs: dict[str, ToolSpec] = {}
        for raw in listed:
            mcp_tool = McpTool.of(raw)
            name = self.tool_name(mcp_tool)
            if name in mcp_tools:
                raise ValueError(
                    f'MCP tools "{mcp_tools[name].name}" and "{mcp_tool.name}" on {self.name} both map to "{name}". '
                    "Override tool_name() to disambiguate."
                )
            mcp_tools[name] = mcp_tool
            specs[name] = self._spec(mcp_tool)
        self.mcp_tools = mcp_tools
        return specs

    def _spec(self, mcp_tool: McpTool) -> ToolSpec:
        original = mcp_tool.name

        async def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
            return await self.call_mcp_tool(original, args)

        return ToolSpec(
            execute=execute,
            description=mcp_tool.description,
            input_schema=mcp_tool.input_schema,
            output_schema=mcp_tool.output_schema,
            requires_approval=self.approve_writes and not mcp_tool.read_only,
        )

    async def _resolve(self) -> ConnectorDescription:
        description = await super()._resolve()
        merged = "\n\n".join(p for p in (self._server_instructions, description.instructions) if p)
        return replace(description, instructions=merged or None)

    async def call_mcp_tool(self, name: str, arguments: Mapping[str, Any]) -> Any:
        """Call a tool by its MCP name and unwrap the result; for reverts and subclasses too."""
        link = await self._live_link()

        def call(connection: Any) -> Awaitable[Any]:
            request: Awaitable[Any] = connection.call_tool(name, dict(arguments))
            return request

        return unwrap_result(await self._request(link, name, call))

    async def aclose(self) -> None:
        """Close the connection; a stdio server process is stopped. Idempotent."""
        link, self._link = self._link, None
        if link is not None:
            await link.close()

    # -- the connection -----------------------------------------------------

    async def _live_link(self) -> _Link:
        """The cached connection, opened (again) when there is none or it died."""
        if self._link_lock is None:
            self._link_lock = asyncio.Lock()
        async with self._link_lock:
            link = self._link
            if link is not None and link.loop is not asyncio.get_running_loop() and not link.loop.is_closed():
                raise RuntimeError(
                    f'MCP connector "{self.name}" is connected from another event loop; use one connector per loop.'
                )
            if link is not None and (link.dead or link.loop.is_closed()):
                self._link = None
                await link.close()
                link = None
            if link is None:
                link = await self._connect()
                self._link = link
            return link

    async def _connect(self) -> _Link:
        source = await maybe_await(self.create_connection())
        link = _Link(source, self.name)
        try:
            await link.ready(self.connect_timeout)
        except BaseException as exc:  # anyio may raise a BaseExceptionGroup
            await link.close()
            if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt, SystemExit)):
                raise
            if isinstance(exc, asyncio.TimeoutError):
                detail = f"no answer within {self.connect_timeout:g} s"
            else:
                detail = _describe_error(exc)
            raise McpConnectionError(
                f'Could not connect to MCP server "{self.name}" ({self._target}): {detail}. '
                f"Check that the server starts and answers on its own.{self._stderr_note()}"
            ) from exc
        return link

    async def _request(self, link: _Link, what: str, send: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run one request on `link`, bounded by `call_timeout` and by the connection staying alive."""
        request = asyncio.ensure_future(send(link.connection))
        try:
            done, _ = await asyncio.wait(
                {request, link.task}, timeout=self.call_timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not request.done():
                request.cancel()
        if request in done:
            try:
                return request.result()
            except Exception as exc:
                if link.dead or _connection_lost(exc):
                    raise await self._lost(link, what, exc) from exc
                raise McpToolError(_tool_error_message(exc, self.name, what)) from exc
        await _settle(request)
        if link.dead:
            raise await self._lost(link, what, link.error)
        restarted = not await link.probe(min(_PROBE_TIMEOUT, self.call_timeout or _PROBE_TIMEOUT))
        if restarted:
            await self._drop(link)
        raise McpTimeoutError(
            f'MCP server "{self.name}" did not answer {what} within {self.call_timeout:g} s; the call was abandoned '
            "(it may still complete on the server)."
            + (" The server did not answer a ping either, so it is restarted on the next call." if restarted else "")
            + " Retry later or with less work, or tell the user the server is slow."
        )

    async def _lost(self, link: _Link, what: str, cause: BaseException | None) -> McpConnectionError:
        note = self._stderr_note()
        await self._drop(link)
        detail = f": {_describe_error(cause)}" if cause is not None else ""
        again = "started again" if self._stderr is not None else "reconnected"
        return McpConnectionError(
            f'The connection to MCP server "{self.name}" was lost during {what}{detail}. '
            f"It is {again} on the next call: retry if repeating this call is safe.{note}"
        )

    async def _drop(self, link: _Link) -> None:
        if self._link is link:
            self._link = None
        await link.close()

    def _stderr_note(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"\nThe server's stderr ends with:\n{tail}" if tail else ""


class _Link:
    """One live connection, owned by a task of its own: entered and exited there, used from any task."""

    def __init__(self, source: Any, label: str) -> None:
        self.loop = asyncio.get_running_loop()
        self.error: BaseException | None = None
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[Any] = self.loop.create_future()
        self.label = label
        self.task = asyncio.ensure_future(self._own(source))

    async def _own(self, source: Any) -> None:
        try:
            async with AsyncExitStack() as stack:
                connection = source
                if hasattr(source, "__aenter__") and hasattr(source, "__aexit__"):
                    connection = await stack.enter_async_context(source)
                self._ready.set_result(connection)
                await self._stop.wait()
        except asyncio.CancelledError:
            if not self._ready.done():
                self._ready.cancel()
            raise
        except BaseException as exc:  # kept for the error message: a background task has no one to raise to
            self.error = exc
            if not self._ready.done():
                self._ready.set_exception(exc)
            else:
                log.info("codemode: the MCP connection of %r ended: %r", self.label, exc)
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise

    async def ready(self, timeout: float | None) -> Any:
        return await asyncio.wait_for(asyncio.shield(self._ready), timeout)

    @property
    def connection(self) -> Any:
        return self._ready.result()

    @property
    def dead(self) -> bool:
        return self.task.done()

    async def probe(self, timeout: float) -> bool:
        """Whether the server still answers a ping (any answer counts); True when the client cannot ping."""
        connection = self.connection
        ping = getattr(connection, "send_ping", None) or getattr(connection, "ping", None)
        if ping is None or not callable(ping):
            return not self.dead
        request = asyncio.ensure_future(maybe_await(ping()))
        try:
            done, _ = await asyncio.wait({request, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not request.done():
                request.cancel()
        if request not in done:
            await _settle(request)
            return False
        error = request.exception()
        if error is not None:  # an error answer (some protocol versions have no ping) still means alive
            return not _connection_lost(error) and not self.dead
        return request.result() is not False

    async def close(self) -> None:
        """Exit the connection's context in its own task (a stdio server process exits). Idempotent."""
        self._stop.set()
        if not self._ready.done():
            self.task.cancel()
        if asyncio.current_task() is self.task:
            return
        await asyncio.wait({self.task}, timeout=_CLOSE_TIMEOUT)
        if not self.task.done():
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=_CLOSE_TIMEOUT)
        if self._ready.done() and not self._ready.cancelled():
            self._ready.exception()  # a failure nobody waited for any more is not worth a warning


class _StderrTail:
    """A stdio server's stderr, kept in a temporary file so errors can quote how it ended."""

    def __init__(self, file: TextIO, owned: bool) -> None:
        self.file = file
        self.owned = owned
        self._frozen: str | None = None

    @classmethod
    @contextmanager
    def open(cls, errlog: TextIO | None) -> Iterator[_StderrTail]:
        if errlog is not None:
            yield cls(errlog, owned=False)
            return
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as file:
            yield cls(file, owned=True)

    def tail(self) -> str:
        if self._frozen is not None or not self.owned:
            return self._frozen or ""
        try:
            fd = self.file.fileno()
            size = os.fstat(fd).st_size
            # pread leaves the offset the server writes at untouched.
            data = os.pread(fd, _STDERR_TAIL, max(0, size - _STDERR_TAIL))
        except (OSError, ValueError):
            return ""
        text = data.decode("utf-8", "replace").strip()
        return ("..." + text) if size > _STDERR_TAIL else text

    def freeze(self) -> None:
        """Keep the tail once the file is about to close."""
        self._frozen = self.tail()


# ---------------------------------------------------------------------------
# Results and listings, whatever client produced them
# ---------------------------------------------------------------------------


def unwrap_result(result: Any) -> Any:
    """The value a tool call gives the program (spec §8.2).

    1. A legacy `toolResult` is returned as is.
    2. `isError` raises `McpToolError` with the text parts joined by newlines.
    3. `structuredContent` is returned when present.
    4. Content made only of text parts: the joined text parsed as JSON, else the text itself.
    5. Anything else (no content, images, resources, mixed parts): the whole result in wire form,
       JSON-ready (image and audio data stay base64 strings), without `isError` and `resultType`.
    """
    data = _wire(result)
    if not data and not isinstance(result, Mapping) and not hasattr(result, "content"):
        return result
    if "toolResult" in data:
        return data["toolResult"]
    content = data.get("content") or []
    if data.get("isError"):
        texts = [
            str(part.get("text", "")) for part in content if isinstance(part, Mapping) and part.get("type") == "text"
        ]
        raise McpToolError("\n".join(texts) or "Tool call failed")
    if data.get("structuredContent") is not None:
        return data["structuredContent"]
    if content and all(isinstance(part, Mapping) and part.get("type") == "text" for part in content):
        text = "\n".join(str(part.get("text", "")) for part in content)
        try:
            return json.loads(text)
        except ValueError:
            return text
    return {key: value for key, value in data.items() if key not in ("isError", "resultType")}


def _wire(value: Any) -> dict[str, Any]:
    """A protocol object as its JSON wire form (camelCase keys), from pydantic models, dicts or plain objects."""
    if isinstance(value, Mapping):
        return dict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        dumped = dump(by_alias=True, mode="json", exclude_none=True)
        return dict(dumped) if isinstance(dumped, Mapping) else {}
    data: dict[str, Any] = {}
    # fastmcp's CallToolResult is a plain dataclass with snake_case fields.
    content = getattr(value, "content", None)
    if content is not None:
        data["content"] = [_wire(part) for part in content]
    for wire, attr in (("structuredContent", "structured_content"), ("isError", "is_error"), ("_meta", "meta")):
        found = getattr(value, attr, getattr(value, wire, None))
        if found is not None:
            data[wire] = found
    return data


async def _list_all(connection: Any) -> list[Any]:
    """Every tool, following pages when the client returns one `ListToolsResult` at a time."""
    tools, cursor = _page(await connection.list_tools())
    pages = 1
    while cursor is not None:
        if pages >= _MAX_PAGES:
            raise RuntimeError(f"the server kept paginating its tool list past {_MAX_PAGES} pages")
        parameters = inspect.signature(connection.list_tools).parameters
        if "cursor" in parameters:  # mcp 1.x
            listing = await connection.list_tools(cursor=cursor)
        elif "params" in parameters:  # mcp 2.x
            from mcp.types import PaginatedRequestParams

            listing = await connection.list_tools(params=PaginatedRequestParams(cursor=cursor))
        else:
            raise RuntimeError("the server paginates its tool list, and this client's list_tools() takes no cursor")
        more, cursor = _page(listing)
        tools.extend(more)
        pages += 1
    return tools


def _page(listing: Any) -> tuple[list[Any], str | None]:
    if isinstance(listing, Mapping):
        return list(listing.get("tools") or []), listing.get("nextCursor")
    if hasattr(listing, "tools"):
        cursor = getattr(listing, "next_cursor" if hasattr(listing, "next_cursor") else "nextCursor", None)
        return list(listing.tools or []), cursor
    return list(listing), None


def _instructions(connection: Any) -> str | None:
    found = getattr(connection, "instructions", None)
    if isinstance(found, str):
        return found or None
    found = getattr(getattr(connection, "initialize_result", None), "instructions", None)
    return found if isinstance(found, str) and found else None


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


async def _settle(request: asyncio.Future[Any]) -> None:
    """Give a cancelled request a moment to unwind in the client, and consume whatever it ended with."""
    await asyncio.wait({request}, timeout=1.0)
    if request.done() and not request.cancelled():
        request.exception()


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, which anyio task groups raise."""
    inner = getattr(exc, "exceptions", None)
    if isinstance(inner, (list, tuple)) and inner and all(isinstance(e, BaseException) for e in inner):
        return [leaf for e in inner for leaf in _leaves(e)]
    return [exc]


def _cause(exc: BaseException) -> BaseException:
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)]
    return leaves[0] if leaves else exc


def _describe_error(exc: BaseException) -> str:
    cause = _cause(exc)
    message = str(cause).strip()
    return f"{type(cause).__name__}: {message}" if message else type(cause).__name__


def _error_code(exc: BaseException) -> Any:
    code = getattr(exc, "code", None)
    return code if code is not None else getattr(getattr(exc, "error", None), "code", None)


def _connection_lost(exc: BaseException) -> bool:
    for leaf in _leaves(exc):
        if isinstance(leaf, (ConnectionError, EOFError)) or _error_code(leaf) == _CONNECTION_CLOSED:
            return True
        if any(klass.__name__ in _LOST for klass in type(leaf).__mro__):
            return True
    return False


def _tool_error_message(exc: BaseException, server: str, what: str) -> str:
    """The server's own words for a failed call (fastmcp's ToolError, a JSON-RPC error), else the exception."""
    cause = _cause(exc)
    if type(cause).__name__ in ("ToolError", "McpError", "MCPError") and str(cause):
        return str(cause)
    return f'MCP server "{server}" failed during {what}: {_describe_error(cause)}'
