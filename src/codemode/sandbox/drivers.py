"""Threads that drive sandbox programs through a blocking API, reused across runs, loops and executors."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["Drivers"]

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
            with self._lock:
                self._idle += 1
