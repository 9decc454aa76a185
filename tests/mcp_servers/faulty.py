"""A stdio MCP server whose tools fail on purpose, for the error-type tests (the `mcp` SDK's `MCPServer`).

`refuse(code, message)` answers with a JSON-RPC error of that code, `fail(reason)` is a tool reporting its
own failure (`isError`), `crash()` ends the server process mid-call, `echo(value)` answers.

Run: `python faulty.py`.
"""

from __future__ import annotations

import os
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError


def build() -> MCPServer:
    server = MCPServer("faulty", instructions="Fails on purpose.", log_level="WARNING")

    @server.tool()
    def refuse(code: int, message: str) -> str:
        """Answer with a JSON-RPC error of the given code."""
        raise MCPError(code=code, message=message)

    @server.tool()
    def fail(reason: str) -> str:
        """Report a failure of the tool itself (isError)."""
        raise ToolError(reason)

    @server.tool()
    def crash() -> str:
        """End the server process while the call is running."""
        os._exit(1)

    @server.tool()
    def echo(value: Any) -> Any:
        """Answer with the value."""
        return value

    return server


if __name__ == "__main__":
    build().run("stdio")
