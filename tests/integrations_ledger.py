"""The connector every framework-adapter test uses: a gated `pay` whose effects land in a ledger."""

from __future__ import annotations

from typing import Any

from codemode import Connector, tool


class Bank(Connector):
    """`pay` needs approval and appends to `ledger`: each approved action must appear there exactly once."""

    name = "bank"

    def __init__(self, ledger: list[dict[str, Any]]) -> None:
        self.ledger = ledger
        self.reads = 0

    @tool
    async def balance(self) -> int:
        """The balance."""
        self.reads += 1
        return 100

    @tool(requires_approval=True)
    async def pay(self, to: str, amount: int) -> dict[str, Any]:
        """Pay someone."""
        entry = {"to": to, "amount": amount}
        self.ledger.append(entry)
        return entry


ONE = 'await bank.balance()\nawait bank.pay(to="ann", amount=5)'
TWO = 'a = await bank.pay(to="ann", amount=5)\nb = await bank.pay(to="bob", amount=7)\n[a["to"], b["to"]]'
BATCH = (
    "import asyncio\n"
    'r = await asyncio.gather(bank.pay(to="ann", amount=5), bank.pay(to="bob", amount=7))\n'
    '[x["to"] for x in r]'
)
CATCH = (
    'try:\n    await bank.pay(to="ann", amount=5)\n    r = "paid"\n'
    'except PermissionError as e:\n    r = "refused: " + str(e)\nr'
)
