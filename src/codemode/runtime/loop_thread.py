"""A private event loop in a daemon thread, started on first use.

The blocking twin runs the runtime on one, so sandboxes and connections stay warm between calls;
heartbeats run on another, so a busy application loop cannot silence them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

__all__ = ["LoopThread"]


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def started(self) -> asyncio.AbstractEventLoop | None:
        """The loop if it was started (and not stopped since), without starting it."""
        return self._loop

    def is_current(self) -> bool:
        """Whether the caller runs on this loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started now if it was not running."""
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=_serve, args=(loop,), name=self.name, daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def stop(self, timeout: float | None = None) -> None:
        """Cancel what still runs on the loop, stop it and join its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=timeout)
        self._stop_loop(loop)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=timeout)

    def stop_soon(self) -> None:
        """Ask the loop to stop without waiting (safe from a finalizer, on any thread): its thread then
        closes it, releasing the loop's descriptors."""
        with self._lock:
            loop = self._loop
            self._loop = self._thread = None
        if loop is not None:
            self._stop_loop(loop)

    @staticmethod
    def _stop_loop(loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)


def _serve(loop: asyncio.AbstractEventLoop) -> None:
    """The thread's body: run the loop until it is stopped, then close it (its selector and self-pipe)."""
    try:
        loop.run_forever()
    finally:
        loop.close()
