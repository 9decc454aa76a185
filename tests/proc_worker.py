"""A host process for the multi-process tests: one runtime call on a shared SQLite file.

Side effects go to a ledger file (one line per effect, appended atomically), so the
test can count what really ran across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import codemode
from codemode import Connector, tool


class Ledger(Connector):
    name = "ledger"

    def __init__(self, path: Path, slow: bool) -> None:
        self.path = path
        self.slow = slow

    def _write(self, line: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    @tool
    async def read(self) -> int:
        """A logged read."""
        self._write(f"read {os.getpid()}")
        return 7

    @tool(requires_approval=True)
    async def write(self, value: int) -> dict[str, Any]:
        """The approved action."""
        self._write(f"write-start {os.getpid()}")
        if self.slow:
            await asyncio.sleep(120)  # killed here
        self._write(f"write-done {os.getpid()}")
        return {"written": value}


PROGRAM = "r = await ledger.read()\nw = await ledger.write(value=r * 6)\nreturn {'read': r, 'write': w}"


async def main(mode: str, db: str, ledger: str, arg: str) -> None:
    connector = Ledger(Path(ledger), slow=mode == "approve-slow")
    async with codemode.Runtime([connector], store=codemode.SqliteStore(db), heartbeat_interval=0.2) as runtime:
        if mode == "pause":
            outcome = await runtime.execute(PROGRAM)
        elif mode in ("approve", "approve-slow"):
            start_at = float(arg.split(":")[1]) if ":" in arg else 0.0
            execution_id = arg.split(":")[0]
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            outcome = await runtime.approve(execution_id, 1)
        elif mode == "recover":
            outcome = await runtime.recover(arg, stale_after=timedelta(seconds=1))
        else:
            raise SystemExit(f"unknown mode {mode}")
    print(
        json.dumps(
            {"status": outcome.status, "id": outcome.execution_id, "result": outcome.result, "error": outcome.error}
        )
    )


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
