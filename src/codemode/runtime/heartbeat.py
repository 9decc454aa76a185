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
import time
import weakref
from typing import TYPE_CHECKING

from codemode.runtime.loop_thread import LoopThread

if TYPE_CHECKING:
    from codemode.store.base import Store

__all__ = ["Beat", "Heartbeats"]

log = logging.getLogger("codemode")


class Beat:
    """The heartbeat of one pass (or rollback)."""

    def __init__(self, execution_id: str, attempt: int, due: float) -> None:
        self.execution_id = execution_id
        self.attempt = attempt
        self.lost = False
        self.due = due  # time.monotonic() of its next beat
        self.beating = False  # a beat is being written

    def is_lost(self) -> bool:
        return self.lost


class Heartbeats:
    """Every live pass of one runtime, kept alive from one background thread.

    Starting and stopping a pass only adds it to / removes it from the live set: while other passes
    live, no call crosses to the thread (a wake-up there costs the busy application loop its CPU and the
    GIL). One ticker on the thread's loop writes the beats that are due, each `interval` after the pass
    started or last beat; it starts with the first live pass and is cancelled when the last one ends, so
    nothing is left pending on that loop between runs (an interpreter may exit then)."""

    def __init__(self, store: Store, runtime: str, interval: float) -> None:
        self.store = store
        self.runtime = runtime
        self.interval = interval
        self._loop = LoopThread("codemode-heartbeat")
        self._lock = threading.Lock()
        self._live: set[Beat] = set()
        self._ticking: asyncio.AbstractEventLoop | None = None  # the loop the ticker runs on, if it runs
        self._ticker: list[asyncio.Task[None]] = []  # filled on that loop, right after it is started
        self._writing: set[asyncio.Task[None]] = set()
        # A runtime dropped without aclose() must not keep a thread and its loop's descriptors forever.
        weakref.finalize(self, self._loop.stop_soon)

    def start(self, execution_id: str, attempt: int) -> Beat:
        beat = Beat(execution_id, attempt, time.monotonic() + self.interval)
        with self._lock:
            self._live.add(beat)
            loop = self._loop.loop()
            first, self._ticking = self._ticking is not loop, loop
            if first:  # the only live pass: start a ticker (scheduled in order before any cancel of it)
                ticker = self._ticker = []
                loop.call_soon_threadsafe(self._start_ticker, loop, ticker)
        return beat

    def _start_ticker(self, loop: asyncio.AbstractEventLoop, ticker: list[asyncio.Task[None]]) -> None:
        task = loop.create_task(self._tick())
        task.add_done_callback(_retrieved)
        ticker.append(task)

    def stop(self, beat: Beat) -> None:
        with self._lock:
            self._live.discard(beat)
            if self._live or self._ticking is None:
                return
            loop, ticker, self._ticking = self._ticking, self._ticker, None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the ticker is gone with it
                loop.call_soon_threadsafe(_cancel, ticker)

    async def _tick(self) -> None:
        """Forever: start the beats that are due, then sleep until the next one is (at most `interval`;
        a pass started meanwhile is due no sooner than that)."""
        while True:
            with self._lock:
                now = time.monotonic()
                due = [b for b in self._live if b.due <= now and not b.beating]
                for beat in due:
                    beat.due, beat.beating = now + self.interval, True
                after = min((b.due for b in self._live), default=now + self.interval)
            for beat in due:  # each beat on its own: a slow store write holds up no other pass
                task = asyncio.ensure_future(self._beat(beat))
                self._writing.add(task)
                task.add_done_callback(self._writing.discard)
            await asyncio.sleep(max(after - time.monotonic(), 0.001))

    async def _beat(self, beat: Beat) -> None:
        try:
            owned = await self.store.heartbeat(self.runtime, beat.execution_id, beat.attempt)
        except Exception as exc:  # a store hiccup: the next beat tries again
            log.warning("codemode: heartbeat of %s failed: %r", beat.execution_id, exc)
            return
        finally:
            beat.beating = False
        if not owned:
            beat.lost = True
            self.stop(beat)

    def close(self) -> None:
        """Stop the thread; beats still running end with it."""
        self._loop.stop(timeout=10)


def _cancel(ticker: list[asyncio.Task[None]]) -> None:
    for task in ticker:
        task.cancel()


def _retrieved(task: asyncio.Task[None]) -> None:
    """A ticker ends only by cancellation (its thread stopping); anything else is logged."""
    if not task.cancelled() and task.exception() is not None:
        log.error("codemode: the heartbeat ticker stopped: %r", task.exception())
