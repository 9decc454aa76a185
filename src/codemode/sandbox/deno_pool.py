"""Long-lived Deno processes for `DenoExecutor`, each running many programs, one fresh Worker per program.

A process runs `deno_runner.js` with no `--allow-*` permission; the runner starts a module Worker (a
V8 isolate of its own, with the process's empty permissions) for each program and terminates it when
the run ends, keeping a few Workers started ahead of demand. Runs share a process's stdin and
stdout: every line the process writes starts with a nonce chosen for the process, then the run's id.

One reader thread per process reads its stdout and hands each line to its run on that run's event
loop, so a process belongs to no loop (the blocking twin's, the application's, the next
`asyncio.run`), and reaps the process when it exits. A process is replaced when it dies (a crash, a
program over the memory limit, a Worker that would not stop) and retired after `recycle_after` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["DenoProcess", "ProcessPool", "RunListener"]

MAX_LINE = 64 * 2**20 + 4096  # a message of MAX_MESSAGE_BYTES plus the framing
START_TIMEOUT = 30.0
WATCH_INTERVAL = 0.05
TEARDOWN_GRACE = 2.0  # seconds the memory watch still counts a run that ended: its Worker's memory goes
# back to the OS as the Worker's thread tears it down, after the run has ended
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss(pid: int) -> int:
    """Resident bytes of a process (Linux /proc; 0 elsewhere, which turns the memory watch off)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _lines(fd: int) -> Iterator[bytes]:
    """The lines read from a pipe, each with its newline; one longer than `MAX_LINE` comes as its first
    `MAX_LINE` bytes without a newline, and the rest of it is dropped."""
    buffer = bytearray()
    skipping = False
    while chunk := os.read(fd, 1 << 16):
        searched = len(buffer)  # the buffer before this chunk holds no newline
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", max(searched, start))) >= 0:
            if not skipping:
                yield bytes(buffer[start : newline + 1])
            skipping = False
            start = newline + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE and not skipping:
            yield bytes(buffer[:MAX_LINE])
            skipping = True
        if skipping:
            buffer.clear()


class RunListener:
    """Where a run's events go: a queue on the run's own loop, fed from the reader thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ended: Callable[[], None]) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.ended = ended  # the Worker is gone (or its process): called once, on any thread

    def deliver(self, item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the run's loop has closed: nobody reads any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


class _Ready:
    """A one-shot signal that coroutines on any loop can await."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._error: str | None = None
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self, error: str | None = None) -> None:
        with self._lock:
            if self._set:
                return
            self._set, self._error = True, error
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, timeout: float) -> None:
        future: asyncio.Future[None] | None = None
        with self._lock:
            if not self._set:
                loop = asyncio.get_running_loop()
                future = loop.create_future()
                self._waiters.append((loop, future))
        if future is not None:
            # A timer in a context of its own: a cancelled timer stays scheduled until its time, and
            # the run's context would keep the run's place in the nesting tree (and the executor) alive.
            timer = loop.call_later(timeout, _resolve, future, context=contextvars.Context())
            try:
                await future
            finally:
                timer.cancel()
            if not self._set:
                raise RuntimeError(f"The Deno sandbox failed to start within {timeout:g} s")
        if self._error is not None:
            raise RuntimeError(f"The Deno sandbox failed to start: {self._error}")


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class DenoProcess:
    """One runner process: its pipes, the runs it carries, and the threads that read it."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        worker_source: str,
        warm: int,
        pool: ProcessPool,
    ) -> None:
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        self.popen = popen
        self.pid = popen.pid
        self.pool = pool
        self.nonce = secrets.token_hex(12)
        self.ready = _Ready()
        self.active = 0  # runs placed on this process whose Worker is not yet gone
        self.runs_started = 0
        self.retiring = False
        self.dead = False
        self.over_memory = False  # killed by the pool's watch for holding more than its runs may
        self.base_rss = 0  # bytes resident once started, spare Workers included
        self.counted = 0  # the runs the memory watch allows for: the most active within TEARDOWN_GRACE
        self.settled_at = 0.0  # when the last run to end is past TEARDOWN_GRACE (time.monotonic)
        self.stderr = b""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._runs: dict[str, RunListener] = {}
        self._next_run = 0
        self._stdin_fd = popen.stdin.fileno()
        # Read with os.read, never through the pipe's buffered file object: a daemon thread blocked in
        # a buffered read holds its lock, and interpreter shutdown aborts on such a lock.
        self._stdout_fd = popen.stdout.fileno()
        self._stderr_fd = popen.stderr.fileno()
        hello = json.dumps({"nonce": self.nonce, "worker": worker_source, "warm": warm})
        self._stderr_thread = threading.Thread(target=self._drain_stderr, name="codemode-deno-stderr", daemon=True)
        self._reader = threading.Thread(target=self._read, name="codemode-deno-reader", daemon=True)
        self._stderr_thread.start()
        self._reader.start()
        self.send(hello + "\n")

    # -- the host side of the channel --------------------------------------------------------

    def send(self, line: str) -> bool:
        """Write one command line; False when the process is gone (its reader reports that to every run)."""
        data = memoryview(line.encode("utf-8", "surrogatepass"))
        with self._write_lock:
            try:
                while data:
                    data = data[os.write(self._stdin_fd, data) :]
            except OSError:
                return False
        return True

    def open(self, listener: RunListener) -> str | None:
        """Register a run; its id, or None when the process is already gone."""
        with self._lock:
            if self.dead:
                return None
            self._next_run += 1
            run = str(self._next_run)
            self._runs[run] = listener
            return run

    def holds(self, run: str) -> bool:
        with self._lock:
            return run in self._runs

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        prefix = self.nonce.encode()
        lost = "exited"
        try:
            lines = _lines(self._stdout_fd)
            if next(lines, b"") != b"ready\n":
                self.kill()
                self._stderr_thread.join(5)
                self.ready.set(self.stderr.decode("utf-8", "replace").strip()[-500:] or "no output")
                return
            self.base_rss = _rss(self.pid)
            self.ready.set()
            for line in lines:
                if not line.startswith(prefix):
                    lost = "violation"  # something beside the runner wrote to stdout: trust none of it
                    break
                kind, rest = line[len(prefix) : len(prefix) + 1], line[len(prefix) + 2 :]
                run, _, text = rest.partition(b" ")
                if not line.endswith(b"\n"):  # longer than any message may be (the rest is skipped)
                    self._to(run.decode(), ("large", None))
                elif kind == b"o":
                    self._to(run.decode(), ("out", text[:-1]))
                elif kind == b"x":
                    self._to(run.decode(), ("uncaught", text[:-1]))
                elif kind == b"e":
                    self._ended(run.rstrip(b"\n").decode())
        except (OSError, ValueError):
            pass
        finally:
            self._exit(lost)

    def _to(self, run: str, item: tuple[str, Any]) -> None:
        with self._lock:
            listener = self._runs.get(run)
        if listener is not None:
            listener.deliver(item)

    def _ended(self, run: str) -> None:
        with self._lock:
            listener = self._runs.pop(run, None)
        if listener is not None:
            listener.ended()
            self.pool.run_ended(self)

    def _exit(self, lost: str) -> None:
        """The process is gone (or must go): reap it, tell every run it carried, leave the pool."""
        self.kill()
        with contextlib.suppress(Exception):
            self.popen.wait()
        self._stderr_thread.join(1)
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with self._lock:
            self.dead = True
            runs, self._runs = self._runs, {}
        self.ready.set("the process exited before it was ready")
        detail = lost if lost == "violation" else self.stderr.decode("utf-8", "replace")
        if self.over_memory:
            detail += "\nout of memory: the process held more than its runs' memory limits"
        for listener in runs.values():
            listener.deliver(("lost", detail))
            listener.ended()
        self.pool.gone(self)

    def _drain_stderr(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := os.read(self._stderr_fd, 65536):
                self.stderr = (self.stderr + chunk)[-8192:]


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
                if _rss(process.pid) > process.base_rss + runs * self.memory_per_run:
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
