"""Heartbeats from a thread of their own.

A live pass touches its run every `interval` seconds so that `recover` on another host does not
take it for abandoned. The beats run on a private event loop in a daemon thread: a tool that
blocks the application's event loop (CPU work in a sync tool) cannot silence them. A beat that
finds the run no longer owned by its attempt marks itself lost, and the pass stops at its next call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from typing import TYPE_CHECKING

from codemode.runtime.loop_thread import LoopThread

if TYPE_CHECKING:
    from codemode.store.base import Store

__all__ = ["Beat", "Heartbeats"]

log = logging.getLogger("codemode")


class Beat:
    """The heartbeat of one pass (or rollback)."""

    def __init__(self, execution_id: str, attempt: int) -> None:
        self.execution_id = execution_id
        self.attempt = attempt
        self.lost = False
        self.task: asyncio.Task[None] | None = None

    def is_lost(self) -> bool:
        return self.lost


class Heartbeats:
    """Every live pass of one runtime, kept alive from one background thread."""

    def __init__(self, store: Store, runtime: str, interval: float) -> None:
        self.store = store
        self.runtime = runtime
        self.interval = interval
        self._loop = LoopThread("codemode-heartbeat")
        # A runtime dropped without aclose() must not keep a thread and its loop's descriptors forever.
        weakref.finalize(self, self._loop.stop_soon)

    def start(self, execution_id: str, attempt: int) -> Beat:
        beat = Beat(execution_id, attempt)
        loop = self._loop.loop()

        def schedule() -> None:
            beat.task = loop.create_task(self._beat(beat))

        loop.call_soon_threadsafe(schedule)
        return beat

    def stop(self, beat: Beat) -> None:
        loop = self._loop.started
        if loop is None or loop.is_closed():
            return

        def cancel() -> None:
            if beat.task is not None:
                beat.task.cancel()

        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(cancel)

    async def _beat(self, beat: Beat) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                owned = await self.store.heartbeat(self.runtime, beat.execution_id, beat.attempt)
            except Exception as exc:  # a store hiccup: the next beat tries again
                log.warning("codemode: heartbeat of %s failed: %r", beat.execution_id, exc)
                continue
            if not owned:
                beat.lost = True
                return

    def close(self) -> None:
        """Stop the thread; beats still running end with it."""
        self._loop.stop(timeout=10)
