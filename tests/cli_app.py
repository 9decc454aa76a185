"""An application for the CLI and console tests: a runtime module written to a temporary directory, as a
user's project would have it, a script that starts runs in it, and the `codemode` command as a process.

The bank connector appends every effect (a payment, a refund) to a ledger file, so a test can prove that
an approved action ran exactly once, with the arguments the human approved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

APP = '''
import json
import os
from pathlib import Path

import codemode

HERE = Path(__file__).parent
LEDGER = HERE / "ledger.jsonl"


def effect(**fields):
    with LEDGER.open("a") as f:
        f.write(json.dumps(fields, sort_keys=True) + "\\n")


class Bank(codemode.Connector):
    name = "bank"

    @codemode.tool
    def balance(self) -> int:
        """The account balance."""
        return 100

    @codemode.tool(requires_approval=True)
    def pay(self, to: str, amount: int) -> dict:
        """Pay someone; a human approves every payment."""
        effect(op="pay", to=to, amount=amount)
        return {"paid": amount, "to": to}

    @pay.revert
    def _refund(self, args, result) -> None:
        effect(op="refund", to=args["to"], amount=args["amount"])

    @codemode.tool(requires_approval=True)
    def wire(self, to: str) -> str:
        """A wire transfer that cannot be recalled."""
        effect(op="wire", to=to)
        return "sent"

    @wire.revert
    def _recall(self, args, result) -> None:
        raise RuntimeError("the bank refused the recall")


class Mail(codemode.Connector):
    name = "mail"

    @codemode.tool
    def send(self, to: str, text: str) -> str:
        """Send a message (no approval, no revert)."""
        effect(op="mail", to=to)
        return "ok"


def runtime():
    dsn = os.environ.get("CODEMODE_TEST_DSN")  # a PostgreSQL schema of the test's own, else a SQLite file
    store = codemode.PostgresStore(dsn) if dsn else codemode.SqliteStore(HERE / "codemode.db")
    return codemode.Runtime([Bank(), Mail()], store=store)


async def async_runtime():
    return runtime()


not_a_runtime = 42
'''

SEED = """
import asyncio, json, os, sys

import app


async def main():
    async with app.runtime() as rt:
        metadata = json.loads(sys.argv[2]) if len(sys.argv) > 2 else None
        outcome = await rt.execute(sys.argv[1], metadata=metadata)
        print(json.dumps(outcome.to_model_output()))


asyncio.run(main())
sys.stdout.flush()
os._exit(0)  # pydantic_monty can abort in interpreter finalization; everything is committed by now
"""

PAY = 'b = await bank.balance()\nr = await bank.pay(to="carol", amount=30)\nreturn r'


def write_app(directory: Path) -> Path:
    (directory / "app.py").write_text(APP)
    (directory / "seed.py").write_text(SEED)
    return directory


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "src"), "NO_COLOR": "", "COLUMNS": "200"}


def seed(directory: Path, code: str = PAY, metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """Start a run in a separate process; returns its model output (status, execution_id, pending)."""
    argv = [sys.executable, "seed.py", code, *([json.dumps(metadata)] if metadata else [])]
    done = subprocess.run(argv, cwd=directory, env=env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out: dict[str, Any] = json.loads(done.stdout)
    return out


def codemode(
    directory: Path, *args: str, timeout: float = 120, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `codemode` command, as a real process in `directory`."""
    argv = [sys.executable, "-m", "codemode.cli", *args]
    environ = {**env(), **(extra_env or {})}
    return subprocess.run(argv, cwd=directory, env=environ, capture_output=True, text=True, timeout=timeout)


def ledger(directory: Path) -> list[dict[str, Any]]:
    path = directory / "ledger.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
