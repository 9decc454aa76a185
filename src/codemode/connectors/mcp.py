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
`connection.initialize_result.instructions`.

One connection is kept per event loop (an anyio client belongs to the loop that opened it), so the
same connector serves `await runtime.execute(...)` and the blocking `runtime.sync` twin, which runs
on a loop of its own. Calls on one loop share its connection, opened by the first of them; a
connection that dies is replaced on the next call (a crashed stdio server is started again).
`aclose()` closes them all.

`McpConnector.stdio(...)` and `McpConnector.http(...)` are ready connections on the `mcp` SDK.
They need the `mcp` SDK and say so at construction (`ImportError`: `pip install 'codemode[mcp]'`).
A call is bounded by `call_timeout`, connecting by `connect_timeout`; a server that cannot be reached
makes `describe()` raise, which the runtime reports as this connector being unavailable (the others
work on). Failures are typed (`McpToolError` and its subclasses, `McpTimeoutError`,
`McpConnectionError`). Results are unwrapped as the reference does (Cloudflare's code mode), see
`unwrap_result`.

Every tool call of a run tells the server which call it is, in the request's `_meta`:
`codemode/idempotency_key` (the same whenever the runtime performs that one call again, as after a
crash) and `codemode/execution_id`. It is sent when the client's `call_tool` takes a `meta` argument,
as the `mcp` SDK's `ClientSession` (2.x, and the 1.x releases that added it) and `fastmcp.Client` do;
a connection whose `call_tool(name, arguments)` takes none is called without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import shlex
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO, TypeVar

from codemode.connectors.base import Connector
from codemode.connectors.spec import ToolContext, ToolSpec, maybe_await
from codemode.schema.names import sanitize_identifier

__all__ = [
    "EXECUTION_ID_META",
    "IDEMPOTENCY_KEY_META",
    "McpConnection",
    "McpConnectionError",
    "McpConnector",
    "McpTimeoutError",
    "McpTool",
    "McpToolError",
    "call_meta",
    "unwrap_result",
]

# The `_meta` keys a tool call carries (prefixed, as the MCP spec asks of keys outside its own).
IDEMPOTENCY_KEY_META = "codemode/idempotency_key"
EXECUTION_ID_META = "codemode/execution_id"

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

    Optionally also `instructions` (or `initialize_result.instructions`), `send_ping()` or `ping()`,
    used to tell a slow tool from a dead server after a timeout, and a `meta` keyword argument of
    `call_tool`, which receives the request's `_meta` (the call's idempotency key).
    """

    def call_tool(self, name: str, arguments: dict[str, Any]) -> Awaitable[Any]: ...

    def list_tools(self) -> Awaitable[Any]: ...


class McpToolError(RuntimeError):
    """The server ran the tool and reported a failure (`isError`, or a JSON-RPC error).

    A tool's own failure (`isError`) is this class (`RuntimeError`), with the server's text. A JSON-RPC
    error answer is raised as the subclass for its code, also the built-in exception the program
    catches: -32700, -32600, -32602 (bad request or arguments) `ValueError`; -32601, -32002 (no such
    method or resource) `LookupError`; -32001 (request timeout) `TimeoutError`; any other code (-32603,
    server-defined -32000...) stays `RuntimeError`. Its message starts `MCP error <code>: `, and
    `code` holds the code (None for `isError`).
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class _McpRequestError(McpToolError, ValueError):
    """The server refused the request or its arguments."""


class _McpNotFoundError(McpToolError, LookupError):
    """The server has no such method or resource."""


class _McpRequestTimeoutError(McpToolError, TimeoutError):
    """The request timed out (as the SDK or the server reports it)."""


_ERROR_TYPES: dict[int, type[McpToolError]] = {
    -32700: _McpRequestError,  # parse error
    -32600: _McpRequestError,  # invalid request
    -32602: _McpRequestError,  # invalid params
    -32601: _McpNotFoundError,  # method not found
    -32002: _McpNotFoundError,  # resource not found (MCP)
    -32001: _McpRequestTimeoutError,  # request timeout (the SDKs)
}


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
            call_timeout: Seconds one request (a call, or listing the tools) may take before it fails with a
                `TimeoutError` (None: no limit).
            connect_timeout: Seconds to start or reach the server and complete the MCP handshake.
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
        self._links: dict[asyncio.AbstractEventLoop, _Link] = {}

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
        _require_sdk(f"{cls.__name__}.stdio")
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
        _require_sdk(f"{cls.__name__}.http")
        connector = cls(name, **options)
        connector._target = url

        @asynccontextmanager
        async def open_http() -> AsyncIterator[Any]:
            from mcp import ClientSession
            from mcp.client import streamable_http

            async with AsyncExitStack() as stack:
                client = getattr(streamable_http, "streamable_http_client", None)
                if client is not None:
                    # The SDK's own client factory: the SDK picks the HTTP library (httpx in 1.x, httpx2 in
                    # 2.x) and its MCP-suited timeouts, so a client built here would fit one version only.
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
        """The server's tools; also puts the server's instructions before the connector's own."""
        link = await self._connected()
        listed = await self._request(link, "listing its tools", _list_all)
        server = _instructions(link.connection) or self._handshake_instructions
        self._source_instructions = server
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
            return await self.call_mcp_tool(original, args, meta=call_meta(ctx))

        return ToolSpec(
            execute=execute,
            description=mcp_tool.description,
            input_schema=mcp_tool.input_schema,
            output_schema=mcp_tool.output_schema,
            requires_approval=self.approve_writes and not mcp_tool.read_only,
        )

    async def call_mcp_tool(
        self, name: str, arguments: Mapping[str, Any], *, meta: Mapping[str, Any] | None = None
    ) -> Any:
        """Call a tool by its MCP name and unwrap the result; for reverts and subclasses too.

        `meta` becomes the request's `_meta` (see `call_meta`) when the client's `call_tool` takes it.
        """
        link = await self._connected()
        result = await self._request(link, name, lambda connection: _call_tool(connection, name, arguments, meta))
        return unwrap_result(result)

    async def aclose(self) -> None:
        """Close every connection (a stdio server process is stopped). Idempotent; a later call reconnects.

        The connection of this event loop is closed before returning; one opened on another loop that still
        exists is closed by that loop as soon as it runs.
        """
        links, self._links = self._links, {}
        here = asyncio.get_running_loop()
        for link in links.values():
            link.shutdown = True
            if link.loop is here:
                await link.close()
            elif not link.loop.is_closed():
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile, and its connection with it
                    link.loop.call_soon_threadsafe(link.stop)

    # -- the connection -----------------------------------------------------

    def _link(self) -> _Link:
        """This loop's connection, opened if there is none or the last one ended. Never awaits: every caller
        that arrives while it is opening waits for that same connection."""
        loop = asyncio.get_running_loop()
        link = self._links.get(loop)
        if link is None or link.dead:
            for gone in [other for other in self._links if other.is_closed()]:
                self._links.pop(gone, None)  # a closed loop ended its connections' tasks (asyncio.run cancels them)
            link = self._links[loop] = _Link(self.create_connection(), self.name, self.connect_timeout)
        return link

    async def _connected(self) -> _Link:
        link = self._link()
        try:
            await link.ready()
        except asyncio.CancelledError:
            raise  # this caller was cancelled; the connection goes on opening for the others
        except BaseException as exc:  # anyio may raise a BaseExceptionGroup
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            await self._drop(link)
            if isinstance(exc, _Closed):
                raise McpConnectionError(
                    f'MCP connector "{self.name}" was closed while connecting to its server ({self._target}); '
                    "nothing ran."
                ) from None
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
        """Run one request on `link`, bounded by `call_timeout` and by the connection staying open."""

        async def run() -> Any:
            return await send(link.connection)

        request = asyncio.ensure_future(run())
        try:
            await asyncio.wait({request, link.task}, timeout=self.call_timeout, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # this caller was cancelled (its program stopped): the server is told to stop too
            _abandon(request)
            raise
        if request.done():
            error = None if request.cancelled() else request.exception()
            if error is None and not request.cancelled():
                return request.result()
            if error is not None and not (link.dead or link.closing or _connection_lost(error)):
                raise _tool_error(error, self.name, what) from error
            raise await self._lost(link, what, error) from error
        await _settle(request)
        if link.dead or link.closing:
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
        if link.shutdown:
            return McpConnectionError(
                f'MCP connector "{self.name}" was closed while {what} was running, so its result is unknown: it may '
                "or may not have completed on the server. Tell the user before doing it again."
            )
        note = self._stderr_note()
        await self._drop(link)
        detail = f": {_describe_error(cause)}" if cause is not None else ""
        again = "started again" if self._stderr is not None else "reconnected"
        return McpConnectionError(
            f'The connection to MCP server "{self.name}" was lost during {what}{detail}. '
            f"It is {again} on the next call: retry if repeating this call is safe.{note}"
        )

    async def _drop(self, link: _Link) -> None:
        """Close `link`; the next call on its loop opens a new connection."""
        if self._links.get(link.loop) is link:
            self._links.pop(link.loop, None)
        await link.close()

    def _stderr_note(self) -> str:
        tail = self._stderr.tail() if self._stderr is not None else ""
        return f"\nThe server's stderr ends with:\n{tail}" if tail else ""


def _require_sdk(constructor: str) -> None:
    """The ready connections run on the `mcp` SDK (the `mcp` extra). Without it, construction fails and says
    what to install: found only at the first run, it would reach the model as an outage to retry."""
    try:
        import mcp  # noqa: F401
        from mcp.client import stdio, streamable_http  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{constructor} needs the MCP SDK: pip install 'codemode[mcp]' ({type(exc).__name__}: {exc})."
        ) from exc


class _Closed(Exception):
    """The connection was closed before its handshake completed."""


class _Link:
    """One connection on one event loop, owned by a task of its own.

    The anyio-based clients must be entered and exited in the same task, so the owning task enters the
    connection, waits to be told to stop, and exits it; requests come from any task of the same loop.
    The task also bounds the handshake by `connect_timeout`, so every caller waiting for it gets one answer.
    """

    def __init__(self, source: Any, label: str, connect_timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.label = label
        self.closing = False
        self.shutdown = False  # closed by `aclose()`, not because the server failed
        self.error: BaseException | None = None
        self._source = source
        self._timed_out = False
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[Any] = self.loop.create_future()
        self._deadline = self.loop.call_later(connect_timeout, self._expire)
        self.task = self.loop.create_task(self._own())
        self.task.add_done_callback(self._ended)

    async def _own(self) -> None:
        async with AsyncExitStack() as stack:
            connection = await maybe_await(self._source)
            if hasattr(connection, "__aenter__") and hasattr(connection, "__aexit__"):
                connection = await stack.enter_async_context(connection)
            self._deadline.cancel()
            self._ready.set_result(connection)
            await self._stop.wait()

    def _expire(self) -> None:
        if not self._ready.done():
            self._timed_out = True
            self.task.cancel()

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._deadline.cancel()
        if inspect.iscoroutine(self._source):
            self._source.close()  # an async create_connection() the task never got to await
        self.error = None if task.cancelled() else task.exception()
        if not self._ready.done():
            if self._timed_out:
                failure: BaseException = asyncio.TimeoutError()
            elif self.closing or self.error is None:
                failure = _Closed()
            else:
                failure = self.error
            self._ready.set_exception(failure)
            self._ready.exception()  # whoever waits still gets it; no one waiting is not worth a warning
        elif self.error is not None:
            log.info("codemode: the MCP connection of %r ended: %r", self.label, self.error)

    async def ready(self) -> Any:
        """The connection once open; a caller's cancellation leaves the opening to the others."""
        return await asyncio.shield(self._ready)

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
        except BaseException:
            _abandon(request)
            raise
        if request not in done:
            await _settle(request)
            return False
        error = None if request.cancelled() else request.exception()
        if error is not None:  # an error answer (some protocol versions have no ping) still means alive
            return not _connection_lost(error) and not self.dead
        return not request.cancelled() and request.result() is not False

    def stop(self) -> None:
        """Tell the owning task to exit the connection; a handshake still running is abandoned. Same loop only."""
        self.closing = True
        self._stop.set()
        if not self._ready.done():
            self.task.cancel()

    async def close(self) -> None:
        """Exit the connection's context in its own task (a stdio server process exits). Idempotent."""
        self.stop()
        await asyncio.wait({self.task}, timeout=_CLOSE_TIMEOUT)
        if not self.task.done():  # the context did not exit in time: cut it short
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=_CLOSE_TIMEOUT)
        if not self.task.done():
            log.warning("codemode: the MCP connection of %r did not close within %g s", self.label, 2 * _CLOSE_TIMEOUT)


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


def call_meta(ctx: ToolContext) -> dict[str, Any] | None:
    """The `_meta` a tool call carries: its idempotency key and run, those it has (None: neither)."""
    meta = {IDEMPOTENCY_KEY_META: ctx.idempotency_key, EXECUTION_ID_META: ctx.execution_id}
    return {key: value for key, value in meta.items() if value} or None


def _call_tool(connection: Any, name: str, arguments: Mapping[str, Any], meta: Mapping[str, Any] | None) -> Any:
    """`call_tool`, with `meta=` only when the client's signature names it (a plain one is left as it is)."""
    if meta and _takes_meta(connection.call_tool):
        return connection.call_tool(name, dict(arguments), meta=dict(meta))
    return connection.call_tool(name, dict(arguments))


def _takes_meta(call_tool: Any) -> bool:
    try:
        parameter = inspect.signature(call_tool).parameters.get("meta")
    except (TypeError, ValueError):  # no signature to read (a builtin, a C extension)
        return False
    return parameter is not None and parameter.kind in (
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.KEYWORD_ONLY,
    )


def unwrap_result(result: Any) -> Any:
    """The value a tool call gives the program, as Cloudflare's code mode unwraps it.

    1. A legacy `toolResult` is returned as is.
    2. `isError` raises `McpToolError` with the text parts joined by newlines.
    3. `structuredContent` is returned when present.
    4. Content made only of text parts: the joined text parsed as JSON, else the text itself (`NaN` and
       `Infinity` are not JSON: they stay text, as the reference's `JSON.parse` leaves them).
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
            return json.loads(text, parse_constant=_not_json)
        except ValueError:
            return text
    return {key: value for key, value in data.items() if key not in ("isError", "resultType")}


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


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
        if "params" in parameters:  # mcp 2.x, and 1.x since `cursor` was deprecated
            from mcp.types import PaginatedRequestParams

            listing = await connection.list_tools(params=PaginatedRequestParams(cursor=cursor))
        elif "cursor" in parameters:  # early mcp 1.x
            listing = await connection.list_tools(cursor=cursor)
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
    """Cancel a request and give it a moment to unwind in the client (the server is told to stop)."""
    _abandon(request)
    await asyncio.wait({request}, timeout=1.0)


def _abandon(request: asyncio.Future[Any]) -> None:
    """Cancel a request no one waits for any more; whatever it ends with is consumed, not logged as lost."""
    request.cancel()
    request.add_done_callback(lambda done: None if done.cancelled() else done.exception())


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
        if isinstance(leaf, (ConnectionError, EOFError)):
            return True
        # The SDKs' own "Connection closed"; a server may answer -32000 (a JSON-RPC "server error") for its
        # own failures, which leave the connection as it was.
        if _error_code(leaf) == _CONNECTION_CLOSED and str(leaf) == "Connection closed":
            return True
        if any(klass.__name__ in _LOST for klass in type(leaf).__mro__):
            return True
    return False


def _tool_error(exc: BaseException, server: str, what: str) -> McpToolError:
    """A failed request in the server's own words: a JSON-RPC error typed by its code (see `McpToolError`),
    fastmcp's ToolError (a tool's `isError`) as it is, anything else named."""
    cause = _cause(exc)
    code = _error_code(cause)
    if type(cause).__name__ in ("McpError", "MCPError") and isinstance(code, int):
        words = str(cause) or "no message"
        return _ERROR_TYPES.get(code, McpToolError)(f"MCP error {code}: {words}", code)
    if type(cause).__name__ == "ToolError" and str(cause):
        return McpToolError(str(cause))
    return McpToolError(f'MCP server "{server}" failed during {what}: {_describe_error(cause)}')
