"""`DenoExecutor`: JavaScript and TypeScript programs, each in a fresh Worker of a long-lived Deno process.

A few `deno` processes run with no `--allow-*` permission, no remote or npm modules, and code
generation from strings disabled (`eval`, `new Function`); see `deno_process.py`. Each program runs in a
module Worker of its own (a fresh V8 isolate that inherits the process's empty permissions), started
ahead of demand and terminated when the run ends, so nothing a program leaves behind (globals,
prototypes, timers, pending promises, modules) reaches the next one. Time is enforced by terminating
the Worker, memory by V8's heap limit per isolate plus a check of the memory outside the heap.

The runner in the Worker removes `Deno`, `process` and `postMessage` from the program's reach before
it runs, and every message it sends starts with a nonce chosen for the run: any other output fails
the run (fail closed), so a program can neither forge nor corrupt host messages.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from codemode.sandbox.base import ExecuteResult, Host, Namespace
from codemode.sandbox.deno_hints import import_error
from codemode.sandbox.deno_pool import ProcessPool
from codemode.sandbox.deno_process import DenoProcess, RunListener
from codemode.sandbox.deno_run import DenoRun
from codemode.sandbox.places import CURRENT, MAX_NESTING, NESTED_TOO_DEEP, Places, holder_for

__all__ = ["DenoExecutor", "find_deno"]

RUNNER = Path(__file__).with_name("deno_runner.js")
WORKER = Path(__file__).with_name("deno_worker.js")
# V8 flags of every runner process, beside the heap limit (measured in benchmarks/deno_workers.py):
V8_FLAGS: tuple[str, ...] = (
    # `eval`, `new Function` and their kin throw: a program is the code it was given.
    "--disallow-code-generation-from-strings",
    # Each isolate maps its own copy of V8's builtins unless short builtin calls are off: ~1.7 MiB per
    # Worker, for a speed-up JavaScript that mostly waits on connectors does not notice.
    "--no-short-builtin-calls",
    # A terminated Worker's heap pages go back to the operating system instead of into a pool for the
    # process's other isolates: after a burst of runs a process holds its live Workers, not its peak
    # (200 runs that ended: ~145 instead of ~630 MiB), at no measured cost to starting a Worker.
    "--no-memory-pool-share-memory-on-teardown",
)


def find_deno(explicit: str | os.PathLike[str] | None = None) -> str:
    """The deno binary: an explicit path, `$CODEMODE_DENO`, the `deno` package from PyPI, or PATH."""
    if explicit:
        return str(explicit)
    if os.environ.get("CODEMODE_DENO"):
        return os.environ["CODEMODE_DENO"]
    try:
        import deno  # the official binary redistributed on PyPI: `pip install codemode[js]`

        return str(deno.find_deno_bin())
    except ImportError:
        pass
    import shutil

    found = shutil.which("deno")
    if found:
        return found
    raise RuntimeError("DenoExecutor needs the deno binary: pip install 'codemode[js]' (or set CODEMODE_DENO).")


class DenoExecutor:
    """Runs JavaScript or TypeScript with a wall-clock timeout and a memory limit.

    At most `max_runs` programs run at once (default 64); runs beyond it wait. They share at most
    `max_processes` Deno processes (default 2), each carrying up to `max_runs / max_processes` runs
    before the next one starts, and each replaced after `recycle_after` runs or when it dies. A
    snippet run by a program (`codemode.run`) is a run of its own under the same cap, except that when
    every running program is waiting on a snippet of its own, the deepest waiting snippet starts
    anyway: a parent never waits for a place only its own descendants could free, so nesting cannot
    deadlock. Snippets nest at most `MAX_NESTING` levels, which bounds that excess."""

    language: Literal["python", "javascript"] = "javascript"
    # The runner refuses calls made inside a step's function itself (it knows them by async context).
    scopes_steps = True

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int = 256 * 2**20,
        *,
        max_runs: int = 64,
        max_processes: int = 2,
        warm_workers: int = 2,
        recycle_after: int = 1000,
        deno_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        for name, value in (("max_runs", max_runs), ("max_processes", max_processes), ("recycle_after", recycle_after)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1")
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.max_runs = max_runs
        self.max_processes = max_processes
        self.warm_workers = warm_workers
        self.recycle_after = recycle_after
        self.deno = find_deno(deno_path)
        self._places: Places = Places(max_runs)
        # The pool holds no reference to the executor, so an executor dropped without aclose() is collected.
        self._spawner = _Spawner(self.deno, memory_limit, warm_workers)
        self._pool = ProcessPool(
            self._spawner,
            max_processes=max_processes,
            runs_per_process=-(-max_runs // max_processes),
            recycle_after=recycle_after,
            # a run may hold its heap limit in V8's heap and as much again in typed arrays
            memory_per_run=2 * memory_limit + 32 * 2**20,
        )
        # Dropped without aclose(), or still open at interpreter exit: its processes are killed then.
        weakref.finalize(self, _abandon, self._pool, os.getpid())

    def normalize(self, code: str) -> str:
        return _normalize(code)

    async def aclose(self) -> None:
        """Kill the processes and wait until they have exited.

        Works from any event loop (or after the loop that used the executor has ended). A run still in
        flight loses its process; `Runtime.aclose` waits for those first."""
        self._pool.kill_all()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not self._pool.empty() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if self._pool.empty():
            self._spawner.cleanup()

    @property
    def _deno_dir(self) -> tempfile.TemporaryDirectory[str] | None:
        """The cache directory of this executor's processes (each executor has its own)."""
        return self._spawner.deno_dir

    async def execute(
        self, code: str, namespaces: Sequence[Namespace], host: Host, *, input: Any = None
    ) -> ExecuteResult:
        blocked = import_error(code)
        if blocked is not None:
            return ExecuteResult(error=blocked)
        holder = holder_for(self)
        if holder.depth > MAX_NESTING:
            return ExecuteResult(error=NESTED_TOO_DEEP)
        self._places.nesting(holder)
        token = CURRENT.set(holder)  # the calls of this run (its snippets among them) see it as their parent
        try:
            for attempt in range(2):
                await self._places.lease(holder)
                released = False

                def release() -> None:  # the Worker is gone: its place goes to the next run
                    nonlocal released
                    if not released:
                        released = True
                        self._places.release()

                try:
                    process = await self._pool.acquire()
                except BaseException:
                    self._places.unlease(holder, free=True)
                    raise
                run = DenoRun(self, process, host, RunListener(asyncio.get_running_loop(), release))
                retry = False
                try:
                    result = await run.drive(code, namespaces, input)
                    # The process died before the program said anything (it died while idle, or beside
                    # another run): nothing of this program ran, so one retry on a live process is safe.
                    retry = run.lost_before_start and not attempt
                finally:
                    self._places.unlease(holder, final=not retry)
                if not retry:
                    return result
            raise AssertionError("unreachable")
        finally:
            CURRENT.reset(token)
            self._places.unlease(holder, final=True)


class _Spawner:
    """Starts runner processes: the command, its environment and the Worker's source."""

    def __init__(self, deno: str, memory_limit: int, warm_workers: int) -> None:
        self.deno = deno
        self.memory_limit = memory_limit
        self.warm_workers = warm_workers
        self.deno_dir: tempfile.TemporaryDirectory[str] | None = None
        self._worker_source: str | None = None

    def command(self) -> list[str]:
        heap_mib = max(self.memory_limit // 2**20, 16)
        flags = ",".join((f"--max-old-space-size={heap_mib}", *V8_FLAGS))
        return [
            self.deno,
            "run",
            "--quiet",
            "--no-prompt",
            "--no-config",
            "--no-lock",
            "--no-npm",
            "--no-remote",
            # Each program is a module of its own: looking it up in V8's code cache (a SQLite file in
            # DENO_DIR) and writing it there cost ~0.3 ms a run, for code that never runs again.
            "--no-code-cache",
            f"--v8-flags={flags}",
            str(RUNNER),
        ]

    def env(self, cache_dir: str) -> dict[str, str]:
        return {"TZ": "UTC", "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_DIR": cache_dir}

    def cache_dir(self) -> str:
        """A fresh cache directory for one process, inside the executor's own. Deno records every
        module it analyses there (about 0.3 KiB per distinct program); the directory goes with its
        process, so a long-lived executor's disk use stays bounded by `recycle_after` runs."""
        if self.deno_dir is None:
            self.deno_dir = tempfile.TemporaryDirectory(prefix="codemode-deno-", ignore_cleanup_errors=True)
        return tempfile.mkdtemp(prefix="process-", dir=self.deno_dir.name)

    def __call__(self, pool: ProcessPool) -> DenoProcess:
        """Start a runner process; it boots on its own while nothing waits for it.

        A plain `Popen` rather than `asyncio.create_subprocess_exec`: starting takes no await, so a loop
        that ends (or a task cancelled) can never catch a process half set up, and the process belongs
        to no loop. Its reader thread reaps it, so asyncio's child watcher never races us for its exit
        status (gh-87744)."""
        if self._worker_source is None:
            self._worker_source = WORKER.read_text(encoding="utf-8")
        try:
            cache_dir = self.cache_dir()
        except OSError as exc:
            raise RuntimeError(f"The Deno sandbox failed to start: no cache directory ({exc})") from exc
        try:
            popen = subprocess.Popen(
                self.command(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=self.env(cache_dir),
            )
        except OSError as exc:
            shutil.rmtree(cache_dir, ignore_errors=True)
            raise RuntimeError(f"The Deno sandbox failed to start: {exc}") from exc
        return DenoProcess(popen, self._worker_source, self.warm_workers, pool, cache_dir)

    def cleanup(self) -> None:
        if self.deno_dir is not None:
            self.deno_dir.cleanup()
            self.deno_dir = None


def _abandon(pool: ProcessPool, owner: int) -> None:
    """An executor dropped without aclose(), or open at interpreter exit: kill every process it
    started; their reader threads reap them (nothing here blocks)."""
    if os.getpid() != owner:
        return  # a forked child: these processes are its parent's
    pool.kill_all()


@functools.lru_cache(maxsize=64)
def _normalize(code: str) -> str:
    """Parsing takes longer than a warm run of a short program; a run resumed or retried is the same code."""
    from codemode.sandbox.normalize import normalize_javascript

    return normalize_javascript(code)
