"""An MCP server as a connector: the program calls mcp-server-time's tools as methods of `time`.

Run it with `.venv/bin/python examples/mcp_connector.py` (needs the `mcp` and `mcp-server-time` packages).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import codemode
from codemode.connectors.mcp import McpConnector

PROGRAM = """
now = await time.get_current_time(timezone="Europe/Paris")
hhmm = now["datetime"][11:16]
tokyo = await time.convert_time(source_timezone="Europe/Paris", time=hhmm, target_timezone="Asia/Tokyo")
print(f"It is {hhmm} in Paris")
return {"paris": now["datetime"], "tokyo": tokyo["target"]["datetime"], "difference": tokyo["time_difference"]}
"""


async def main(workdir: Path) -> None:
    # The server runs as a subprocess of this script, started on first use and stopped by `aclose`.
    clock = McpConnector.stdio(
        "time",
        sys.executable,
        ["-m", "mcp_server_time", "--local-timezone", "UTC"],
        instructions="Every time zone is an IANA name, like Europe/Paris.",
    )
    async with codemode.Runtime([clock], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
        print((await runtime.describe("time")).types)
        outcome = await runtime.execute(PROGRAM)
        print(f"{outcome.status}: {outcome.result if outcome.status == 'completed' else outcome.error}")
        print(f"logs: {outcome.logs}")
        for call in outcome.calls:
            print(f"seq {call.seq}: {call.connector}.{call.method}({call.args}) [{call.state}]")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
