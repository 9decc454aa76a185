"""One long-lived Deno process of `DenoExecutor`: its channel, the runs it carries, who reads its output.

A process runs `deno_runner.js` with no `--allow-*` permission; the runner starts a module Worker (a
V8 isolate of its own, with the process's empty permissions) for each program and terminates it when
the run ends, keeping a few Workers started ahead of demand. Runs share a process's stdin and
stdout: every line the process writes starts with a nonce chosen for the process, then the run's id.

One reader thread per process reads its stdout and hands each line to its run on that run's event
loop, so a process belongs to no loop (the blocking twin's, the application's, the next
`asyncio.run`), and reaps the process when it exits. While every run of a process is of one loop and
one of them is being driven, that loop reads the process's stdout itself instead (the thread hands the
pipe over between two reads and waits), so a message reaches its run without a hop between threads
(~25 µs a message); a run of another loop arriving makes the loop give the pipe back to the thread, so
no loop goes on serving another's runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import os
import secrets
import select
import shutil
import subprocess
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from codemode.sandbox.deno_pool import ProcessPool

__all__ = ["DenoProcess", "RunListener", "rss"]

MAX_LINE = 64 * 2**20 + 4096  # a message of MAX_MESSAGE_BYTES plus the framing
_CAN_LEND = hasattr(select, "poll")  # the thread can wait for a loop's request beside the pipe
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss(pid: int) -> int:
    """Resident bytes of a process (Linux /proc; 0 elsewhere, which turns the memory watch off)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class _Lines:
    """Splits what a pipe gives into lines, each with its newline; one longer than `MAX_LINE` comes as its
    first `MAX_LINE` bytes without a newline, and the rest of it is dropped. Fed by one reader at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False

    def feed(self, chunk: bytes) -> list[bytes]:
        lines = []
        buffer = self._buffer
        searched = len(buffer)  # the buffer before this chunk holds no newline
        buffer += chunk
        start = 0
        while (newline := buffer.find(b"\n", max(searched, start))) >= 0:
            if not self._skipping:
                lines.append(bytes(buffer[start : newline + 1]))
            self._skipping = False
            start = newline + 1
        del buffer[:start]
        if len(buffer) > MAX_LINE and not self._skipping:
            lines.append(bytes(buffer[:MAX_LINE]))
            self._skipping = True
        if self._skipping:
            buffer.clear()
        return lines


class RunListener:
    """Where a run's events go: a queue on the run's own loop, fed from the reader thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ended: Callable[[], None]) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.ended = ended  # the Worker is gone (or its process): called once, on any thread

    def deliver(self, item: tuple[str, Any], loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Hand an item over; `loop` is the loop this is called on (None: another thread)."""
        if loop is self.loop:
            self.queue.put_nowait(item)
            return
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
        cache_dir: str | None = None,
    ) -> None:
        assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
        self.popen = popen
        self.cache_dir = cache_dir  # this process's DENO_DIR, removed once it has exited
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
        self.counted = 0  # the runs the pool's memory watch allows for: the most active of late
        self.settled_at = 0.0  # time.monotonic() from which the runs that ended no longer count
        self.stderr = b""
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._runs: dict[str, RunListener] = {}
        self._next_run = 0
        self._lines = _Lines()
        # Who reads stdout: the thread, or `_reading` (a loop driving runs of this process, `_drivers` of
        # them), asked for by `_handover` until the thread hands the pipe over between two reads.
        self._reading: asyncio.AbstractEventLoop | None = None
        self._handover: asyncio.AbstractEventLoop | None = None
        self._drivers = 0
        self._eof = False  # the process's stdout has ended (or must be read no more): the thread ends it
        self._lost = "exited"
        self._turn = threading.Condition(self._lock)
        self._wake_r, self._wake_w = os.pipe()  # wakes the thread to hand the pipe over
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
            other = self._reading or self._handover
            if other is not None and other is not listener.loop:
                # A run of another loop: the thread serves it, so one loop never waits on another.
                try:
                    other.call_soon_threadsafe(self._stop_driving, other)
                except RuntimeError:  # that loop has closed, and its reader with it
                    self._reading = self._handover = None
                    self._turn.notify_all()
            return run

    def holds(self, run: str) -> bool:
        with self._lock:
            return run in self._runs

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.popen.kill()

    # -- the reader thread -------------------------------------------------------------------

    def _read(self) -> None:
        try:
            first: list[bytes] = []
            while not first and (chunk := os.read(self._stdout_fd, 1 << 16)):
                first = self._lines.feed(chunk)
            if first[:1] != [b"ready\n"]:
                self.kill()
                self._stderr_thread.join(5)
                self.ready.set(self.stderr.decode("utf-8", "replace").strip()[-500:] or "no output")
                return
            self.base_rss = rss(self.pid)
            self.ready.set()
            poll = select.poll() if _CAN_LEND else None
            if poll is not None:
                poll.register(self._stdout_fd, select.POLLIN)
                poll.register(self._wake_r, select.POLLIN)
            while True:
                self._lend()
                if self._eof:
                    break
                if poll is not None and self._wake_r in [fd for fd, _ in poll.poll()]:
                    os.read(self._wake_r, 4096)
                    continue  # a loop asks for the pipe: hand it over before reading on
                chunk = os.read(self._stdout_fd, 1 << 16)
                if not chunk or not self._dispatch(self._lines.feed(chunk), None):
                    break
        except (OSError, ValueError):
            pass
        finally:
            self._exit(self._lost)

    def _lend(self) -> None:
        """Hand stdout to the loop that asked for it, and wait until it gives it back (or has closed)."""
        with self._lock:
            loop = self._handover
            if loop is None or self._eof:
                return
            self._handover, self._reading = None, loop
            try:
                loop.call_soon_threadsafe(self._attach, loop)
            except RuntimeError:  # it closed before it could read
                self._reading = None
                return
            while self._reading is loop:
                self._turn.wait(0.5)
                if self._reading is loop and loop.is_closed():
                    self._reading = None  # it closed while reading: its reader went with it

    def _dispatch(self, lines: list[bytes], loop: asyncio.AbstractEventLoop | None) -> bool:
        """Hand lines to their runs (`loop`: the loop reading, None for the thread); False on a violation."""
        prefix = self.nonce.encode()
        for line in lines:
            if not line.startswith(prefix):
                self._lost = "violation"  # something beside the runner wrote to stdout: trust none of it
                return False
            kind, rest = line[len(prefix) : len(prefix) + 1], line[len(prefix) + 2 :]
            run, _, text = rest.partition(b" ")
            if not line.endswith(b"\n"):  # longer than any message may be (the rest is skipped)
                self._to(run.decode(), ("large", None), loop)
            elif kind == b"o":
                self._to(run.decode(), ("out", text[:-1]), loop)
            elif kind == b"x":
                self._to(run.decode(), ("uncaught", text[:-1]), loop)
            elif kind == b"e":
                self._ended(run.rstrip(b"\n").decode())
        return True

    def _to(self, run: str, item: tuple[str, Any], loop: asyncio.AbstractEventLoop | None) -> None:
        with self._lock:
            listener = self._runs.get(run)
        if listener is not None:
            listener.deliver(item, loop)

    def _ended(self, run: str) -> None:
        with self._lock:
            listener = self._runs.pop(run, None)
        if listener is not None:
            listener.ended()
            self.pool.run_ended(self)

    # -- reading on a run's loop -------------------------------------------------------------

    def drive(self, loop: asyncio.AbstractEventLoop) -> bool:
        """A run of `loop` starts its pass: `loop` reads stdout while it drives runs here, if every run
        of the process is of `loop`. True when counted; `undrive` follows, on `loop`."""
        with self._lock:
            if self._eof or self.dead or not _CAN_LEND:
                return False
            if self._reading is loop or self._handover is loop:
                self._drivers += 1
                return True
            if self._reading or self._handover or any(run.loop is not loop for run in self._runs.values()):
                return False  # runs of another loop: the thread reads
            self._handover, self._drivers = loop, 1
            with contextlib.suppress(OSError):  # under the lock: `_exit` closes the pipe under it
                os.write(self._wake_w, b"\0")
        return True

    def undrive(self, loop: asyncio.AbstractEventLoop) -> None:
        """A run `drive` counted has ended its pass: the last one gives stdout back to the thread."""
        with self._lock:
            if loop is not self._reading and loop is not self._handover:
                return  # given back already (to serve another loop's run, or at the end of the output)
            self._drivers -= 1
            if self._drivers:
                return
        self._stop_driving(loop)  # nothing else touches `_drivers` of `loop` off its own thread

    def _stop_driving(self, loop: asyncio.AbstractEventLoop) -> None:
        """`loop` reads no more (called on it); the thread reads on."""
        with self._lock:
            self._drivers = 0
            if self._handover is loop:
                self._handover = None
            elif self._reading is loop:
                self._give_back(loop)

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._reading is loop and not self._eof:
                try:
                    loop.add_reader(self._stdout_fd, self._on_readable, loop)
                except NotImplementedError:  # a loop that cannot watch pipes: the thread reads on
                    self._reading = None
                    self._turn.notify_all()

    def _give_back(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading on `loop` (called on it, holding the lock); the thread reads on."""
        loop.remove_reader(self._stdout_fd)
        self._reading = None
        self._turn.notify_all()

    def _on_readable(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            chunk = os.read(self._stdout_fd, 1 << 16)
        except OSError:
            chunk = b""
        if chunk and self._dispatch(self._lines.feed(chunk), loop):
            return
        with self._lock:  # the end of the output, or a violation: the thread ends the process
            self._eof = True
            if self._reading is loop:
                self._give_back(loop)

    def _exit(self, lost: str) -> None:
        """The process is gone (or must go): reap it, tell every run it carried, leave the pool."""
        with self._lock:
            self._eof = True
        self.kill()
        with contextlib.suppress(Exception):
            self.popen.wait()
        if self.cache_dir is not None:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
        self._stderr_thread.join(1)
        for pipe in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with self._lock:
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
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
