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
import threading
from typing import TYPE_CHECKING

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="codemode-heartbeat", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def start(self, execution_id: str, attempt: int) -> Beat:
        beat = Beat(execution_id, attempt)
        loop = self._running_loop()

        def schedule() -> None:
            beat.task = loop.create_task(self._beat(beat))

        loop.call_soon_threadsafe(schedule)
        return beat

    def stop(self, beat: Beat) -> None:
        loop = self._loop
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
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def shutdown() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=10)
        if not loop.is_running():
            loop.close()
