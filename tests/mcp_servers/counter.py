"""A small MCP server for the connector tests, built on the `mcp` SDK's `MCPServer`.

It serves over streamable HTTP on 127.0.0.1 (printing `PORT <n>` once it listens) or over stdio.
Every successful `increment` appends a line to the `--state` file, so a test can count, outside
MCP, how many times the write really ran; `slow` appends `started` to `<state>.slow` when it begins
and `cancelled` when the client cancels it. Its tool list comes in pages of `--page-size` tools, so
clients have to follow the cursor. `request_meta` answers with the `_meta` its request carried.

Run: `python counter.py --state FILE [--transport http|stdio] [--port N] [--page-size N] [--collide]`.
"""

from __future__ import annotations

import argparse
import base64
import socket
import sys
from pathlib import Path
from typing import Any, TypedDict

import anyio
import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CallToolResult,
    ImageContent,
    ListToolsResult,
    PaginatedRequestParams,
    TextContent,
    ToolAnnotations,
)

# The smallest valid PNG (1x1, transparent): image content the client must pass on as base64.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
READ_ONLY = ToolAnnotations(read_only_hint=True)


class Weather(TypedDict):
    city: str
    celsius: int


class PagedServer(MCPServer):
    """Lists its tools `page_size` at a time; the cursor is the index of the next tool."""

    page_size = 4

    async def _handle_list_tools(self, ctx: Any, params: PaginatedRequestParams | None) -> ListToolsResult:
        tools = await self.list_tools()
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + self.page_size
        return ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)


def build(state: Path, collide: bool, page_size: int) -> MCPServer:
    server = PagedServer(
        "counter", instructions="Counts increments; every increment is written to disk.", log_level="WARNING"
    )
    server.page_size = page_size

    def count() -> int:
        return len(state.read_text().splitlines()) if state.exists() else 0

    def note(event: str) -> None:
        with state.with_suffix(".slow").open("a") as f:
            f.write(f"{event}\n")

    @server.tool(name="get-count", annotations=READ_ONLY)
    def get_count() -> int:
        """How many increments ran so far."""
        return count()

    @server.tool()
    def increment(by: int = 1) -> int:
        """Add to the counter (a write: not read-only)."""
        with state.open("a") as f:
            f.write(f"{by}\n")
        return count()

    @server.tool(annotations=READ_ONLY)
    def weather(city: str) -> Weather:
        """Structured output: the weather in a city."""
        return {"city": city, "celsius": 21}

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def json_text(value: Any) -> str:
        """Unstructured output that is JSON text."""
        import json

        return json.dumps(value)

    @server.tool(annotations=READ_ONLY, structured_output=False)
    def shout(text: str) -> str:
        """Unstructured plain text."""
        return text.upper() + "!"

    @server.tool(annotations=READ_ONLY)
    def split_json() -> CallToolResult:
        """Two text parts that are JSON only once joined with a newline."""
        return CallToolResult(content=[TextContent(text='{"parts":'), TextContent(text="2}")])

    @server.tool(annotations=READ_ONLY)
    def picture() -> CallToolResult:
        """Mixed content: a caption and an image."""
        return CallToolResult(
            content=[
                TextContent(text="a pixel"),
                ImageContent(data=base64.b64encode(PIXEL).decode(), mime_type="image/png"),
            ]
        )

    @server.tool(annotations=READ_ONLY)
    def nothing() -> CallToolResult:
        """No content at all."""
        return CallToolResult(content=[])

    @server.tool(annotations=READ_ONLY)
    def fail(reason: str) -> str:
        """Always fails with the given reason."""
        raise ToolError(reason)

    @server.tool(annotations=READ_ONLY)
    def fail_silently() -> CallToolResult:
        """Fails without saying why (no text)."""
        return CallToolResult(content=[], is_error=True)

    @server.tool(annotations=READ_ONLY)
    async def slow(seconds: float) -> str:
        """Sleeps, then answers: the hanging tool. Its start and its cancellation are written down."""
        note("started")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            note("cancelled")
            raise
        return "done"

    @server.tool(annotations=READ_ONLY)
    def request_meta(ctx: Context) -> dict[str, Any]:
        """The `_meta` of this call's request, as the server received it."""
        return dict(ctx.request_context.meta or {})

    @server.tool(annotations=READ_ONLY)
    def busy() -> str:
        """Answers with a JSON-RPC error of its own, code -32000 (the range for server-defined errors)."""
        raise MCPError(code=-32000, message="The server is busy: try again in a minute.")

    if collide:

        @server.tool(name="foo-bar", annotations=READ_ONLY)
        def foo_dash() -> str:
            """Named with a dash."""
            return "dash"

        @server.tool(name="foo_bar", annotations=READ_ONLY)
        def foo_underscore() -> str:
            """Named with an underscore."""
            return "underscore"

    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--state", type=Path, required=True)
    parser.add_argument("--transport", choices=["http", "stdio"], default="http")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=4)
    parser.add_argument("--collide", action="store_true")
    options = parser.parse_args()
    server = build(options.state, options.collide, options.page_size)
    if options.transport == "stdio":
        server.run("stdio")
        return
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", options.port))
    sock.listen(128)  # connections made from now on wait in the backlog until uvicorn accepts them
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning")
    anyio.run(lambda: uvicorn.Server(config).serve(sockets=[sock]))


if __name__ == "__main__":
    sys.exit(main())
