"""The processes of one `DenoExecutor`: where a run goes, when a process starts, retires or is killed.

Runs go to the least loaded live process; another starts as load grows, up to the executor's cap. A
process (see `deno_process.py`) is replaced when it dies (a crash, a program over the memory limit, a
Worker that would not stop) and retired after `recycle_after` runs; a thread per pool watches the
processes' resident memory as a backstop for the runs' own checks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from codemode.sandbox.deno_process import DenoProcess, rss

__all__ = ["ProcessPool"]

START_TIMEOUT = 30.0
WATCH_INTERVAL = 0.05
TEARDOWN_GRACE = 2.0  # seconds the memory watch still counts a run that ended: its Worker's memory goes
# back to the OS as the Worker's thread tears it down, after the run has ended


class ProcessPool:
    """The processes of one executor: runs go to the least loaded one; more start as load grows."""

    def __init__(
        self,
        spawn: Callable[[ProcessPool], DenoProcess],
        *,
        max_processes: int,
        runs_per_process: int,
        recycle_after: int,
        memory_per_run: int,
    ) -> None:
        self._spawn = spawn
        self.max_processes = max_processes
        self.runs_per_process = runs_per_process
        self.recycle_after = recycle_after
        self.memory_per_run = memory_per_run
        self._lock = threading.Lock()
        self._processes: list[DenoProcess] = []
        self._watch: threading.Thread | None = None

    def _start(self) -> DenoProcess:
        process = self._spawn(self)
        self._processes.append(process)
        if self._watch is None or not self._watch.is_alive():
            self._watch = threading.Thread(target=self._watch_memory, name="codemode-deno-memory", daemon=True)
            self._watch.start()
        return process

    def _watch_memory(self) -> None:
        """A backstop for memory a run takes between two of its own checks (typed arrays filled in one
        synchronous loop): a process resident beyond what its runs may hold is killed, and its runs end
        with MemoryError. One thread per pool, while the pool has processes."""
        while True:
            time.sleep(WATCH_INTERVAL)
            with self._lock:
                processes = list(self._processes)
            if not processes:
                return
            for process in processes:
                if not process.base_rss or process.dead:
                    continue
                with self._lock:
                    if time.monotonic() >= process.settled_at:
                        process.counted = process.active
                    runs = max(process.counted, process.active, 1)
                if rss(process.pid) > process.base_rss + runs * self.memory_per_run:
                    process.over_memory = True
                    process.kill()

    async def acquire(self) -> DenoProcess:
        """A ready process with room for one more run (counted as placed on it)."""
        for _ in range(3):
            with self._lock:
                live = [p for p in self._processes if not p.retiring and not p.dead]
                room = [p for p in live if p.active < self.runs_per_process]
                if room:
                    process = min(room, key=lambda p: p.active)
                elif len(live) < self.max_processes:
                    process = self._start()
                else:
                    process = min(live, key=lambda p: p.active)
                process.active += 1
                process.counted = max(process.counted, process.active)
                process.runs_started += 1
                if process.runs_started >= self.recycle_after:
                    process.retiring = True  # takes no new run; killed once its last run ends
                    if len(live) == 1:
                        self._start()  # the replacement starts now, ahead of the next run
            try:
                await process.ready.wait(START_TIMEOUT)
            except BaseException:
                self.run_ended(process)
                raise
            if not process.dead:
                return process
            self.run_ended(process)  # it died while starting or idle: take another
        raise RuntimeError("The Deno sandbox failed to start: its processes keep exiting")

    def run_ended(self, process: DenoProcess) -> None:
        with self._lock:
            process.active = max(process.active - 1, 0)
            process.settled_at = time.monotonic() + TEARDOWN_GRACE
            drained = process.retiring and process.active == 0
        if drained:
            process.kill()

    def gone(self, process: DenoProcess) -> None:
        with self._lock:
            if process in self._processes:
                self._processes.remove(process)

    def kill_all(self) -> None:
        with self._lock:
            processes = list(self._processes)
        for process in processes:
            process.kill()

    def empty(self) -> bool:
        with self._lock:
            return not self._processes

    def processes(self) -> list[DenoProcess]:
        with self._lock:
            return list(self._processes)
