"""What the three framework examples share: a bank whose `pay` needs approval, and the program a model writes."""

from __future__ import annotations

import sys
from pathlib import Path

import codemode

PROGRAM = 'await bank.pay(to="ann", amount=5)'
DB = str(Path(sys.argv[1] if len(sys.argv) > 1 else ".") / "codemode.db")


class Bank(codemode.Connector):
    name = "bank"

    @codemode.tool(requires_approval=True)
    def pay(self, to: str, amount: int) -> str:
        """Pay someone."""
        print(f"PAID {amount} to {to}")
        return f"paid {amount} to {to}"
