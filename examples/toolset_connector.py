"""Plain functions as a connector: a read, a write a human approves, and the run resuming by replay.

Run it with `python examples/toolset_connector.py`.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import codemode
from codemode.connectors.toolset import ToolsetConnector

STOCK = {"apples": 3, "pears": 0}
ORDERS: list[dict[str, object]] = []


def stock(item: str) -> int:
    """How many of an item are in stock.

    Args:
        item: The item's name, e.g. "apples".
    """
    return STOCK.get(item, 0)


@codemode.tool(requires_approval=True)
async def order(item: str, quantity: int) -> dict[str, object]:
    """Order more of an item from the supplier. A human approves every order.

    Args:
        item: What to order.
        quantity: How many.
    """
    placed = {"id": len(ORDERS) + 1, "item": item, "quantity": quantity}
    ORDERS.append(placed)
    return placed


PROGRAM = """
low = [name for name in ["apples", "pears"] if await shop.stock(item=name) < 2]
placed = [await shop.order(item=name, quantity=10) for name in low]
return {"low": low, "orders": placed}
"""


async def main(workdir: Path) -> None:
    shop = ToolsetConnector(name="shop", tools=[stock, order], instructions="The shop's stock and supplier.")
    async with codemode.Runtime([shop], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
        outcome = await runtime.execute(PROGRAM)
        print(f"execute -> {outcome.status}")
        for action in outcome.pending:
            print(f"  waiting for approval: {action.connector}.{action.method}({action.args})")
        action = outcome.pending[0]  # approve exactly the action that was shown, by its seq
        outcome = await runtime.approve(action.execution_id, action.seq, by="ann")
        print(f"approve -> {outcome.status}: {outcome.result}")
        print(f"orders placed on the host: {ORDERS}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(main(Path(tmp)))
