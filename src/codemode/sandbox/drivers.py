"""Threads that drive sandbox programs through a blocking API, reused across runs, loops and executors,
and the inbox through which they hand work to an event loop."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["Drivers", "Inbox", "inbox"]

IDLE_THREAD = 60.0  # seconds an idle driver thread waits for another program before it ends


class Drivers:
    """Daemon threads that drive programs, one per running program, reused; they never hold up the
    interpreter's exit (a run still in flight then is over anyway)."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:  # `_idle`: threads waiting for a job, less the jobs queued for them
            self._jobs.put(job)
            if self._idle:
                self._idle -= 1
                return
        threading.Thread(target=self._serve, name="codemode-monty", daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                job = self._jobs.get(timeout=IDLE_THREAD)
            except queue.Empty:
                with self._lock:
                    if self._idle:  # else a job is on its way to this thread
                        self._idle -= 1
                        return
                continue
            job()
            del job  # an idle thread keeps nothing of its last run (its loop, its host)
            with self._lock:
                self._idle += 1


class Inbox:
    """Callbacks handed from driver threads to one event loop: a burst of them costs one wake-up of the
    loop (one write to its self-pipe), not one each, so a busy loop is not interrupted per call."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # weak: the inbox, a value of `_INBOXES`, must not keep its key alive
        self._lock = threading.Lock()
        self._items: list[tuple[contextvars.Context, Callable[..., None], tuple[Any, ...]]] = []

    def post(self, context: contextvars.Context, fn: Callable[..., None], *args: Any) -> None:
        """Run `fn(*args)` on the loop in `context`, in the order posted; RuntimeError if the loop has closed."""
        with self._lock:
            self._items.append((context, fn, args))
            if len(self._items) > 1:
                return  # the loop is woken already and takes this one too
        loop = self._loop()
        try:
            if loop is None:
                raise RuntimeError("the event loop is gone")
            loop.call_soon_threadsafe(self._run)
        except RuntimeError:
            with self._lock:
                self._items.clear()
            raise

    def _run(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        for context, fn, args in items:
            context.run(fn, *args)


_INBOXES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Inbox] = weakref.WeakKeyDictionary()
_INBOXES_LOCK = threading.Lock()


def inbox(loop: asyncio.AbstractEventLoop) -> Inbox:
    """The loop's inbox (called on the loop, when a run starts)."""
    with _INBOXES_LOCK:
        box = _INBOXES.get(loop)
        if box is None:
            box = _INBOXES[loop] = Inbox(loop)
        return box
