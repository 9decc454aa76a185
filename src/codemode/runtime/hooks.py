"""The runtime's calls into code it does not own: connector lifecycle hooks and the application's
callbacks (`on_pause`, `transform_result`). Their failures are logged, never the run's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from codemode.connectors.base import Connector
from codemode.connectors.spec import maybe_await
from codemode.records import PendingAction

__all__ = ["fan_out", "has_hook", "notify_pause", "transformed"]

log = logging.getLogger("codemode")


async def fan_out(connectors: Sequence[Connector], hook: str, execution_id: str, status: str) -> None:
    """Fan a lifecycle hook out to every connector that has one; failures are logged, never raised.

    A connector that keeps `Connector`'s empty hook is skipped, and a lone one is awaited in place: a
    gather costs a task per connector and a loop round, twice per run, for hooks that do nothing."""

    async def one(connector: Connector) -> None:
        try:
            await getattr(connector, hook)(execution_id, status)
        except Exception:
            log.warning("codemode: %s.%s failed for %s", connector.name, hook, execution_id, exc_info=True)

    hooked = [c for c in connectors if has_hook(c, hook)]
    if len(hooked) == 1:
        await one(hooked[0])
    elif hooked:
        await asyncio.gather(*(one(c) for c in hooked))


def has_hook(connector: Connector, hook: str) -> bool:
    """Whether `connector` does something at `hook`: its class (or the instance itself) replaces the
    base class's empty method."""
    if hook in getattr(connector, "__dict__", ()):
        return True
    return getattr(type(connector), hook, None) is not getattr(Connector, hook)


async def notify_pause(on_pause: Callable[[list[PendingAction]], Any] | None, pending: list[PendingAction]) -> None:
    """`on_pause` pages the approvers; its failure is logged, never the run's."""
    if on_pause is None or not pending:
        return
    try:
        await maybe_await(on_pause(pending))
    except Exception:
        log.warning("codemode: on_pause raised for %s", pending[0].execution_id, exc_info=True)


async def transformed(transform_result: Callable[[Any], Any] | None, result: Any) -> Any:
    """`transform_result` applied to a completed run's result (the raw result if it raises)."""
    if transform_result is None:
        return result
    try:
        shaped = transform_result(result)
        if isinstance(shaped, Awaitable):
            shaped = await shaped
        return shaped
    except Exception:
        log.warning("codemode: transform_result raised; returning the raw result.", exc_info=True)
        return result
