"""What happens to the host calls a program started once the program itself is over.

They still finish and get recorded: a call already running may have taken effect, and the log must
say how it ended before the pass does. Shared by both executors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["CANCEL_GRACE", "settle"]

CANCEL_GRACE = 5.0  # seconds a cancelled call gets to record that its outcome is unknown


async def settle(tasks: Collection[asyncio.Task[Any]], deadline: float, *, hurry: bool = False) -> None:
    """Each call gets until `deadline` (loop time), then is cancelled and gets `CANCEL_GRACE` to record
    that. With `hurry` (the run itself was cancelled) they are cancelled at once.

    Goes on to its end even if the awaiting task is cancelled meanwhile, which hurries it, and then
    raises that cancellation: a call left running would write to the log after its pass ended."""
    pending = list(tasks)
    if not pending:
        return
    loop = asyncio.get_running_loop()
    work = loop.create_task(_settled(pending, loop.time() if hurry else deadline))
    cancelled = False
    while not work.done():
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            cancelled = True  # raised once the calls are settled, even if they just were
            for task in pending:
                task.cancel()
    if cancelled:
        raise asyncio.CancelledError()
    work.result()


async def _settled(pending: list[asyncio.Task[Any]], deadline: float) -> None:
    loop = asyncio.get_running_loop()
    _, late = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0))
    for task in late:
        task.cancel()
    if late:  # a cancelled call records that its outcome is unknown before the pass ends
        await asyncio.wait(late, timeout=CANCEL_GRACE)
    for task in pending:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved, so asyncio does not warn
