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
import contextvars
import functools
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES
from codemode.sandbox.base import ExecuteResult, Host, Namespace, StopExecution, ToolError
from codemode.sandbox.console import dropped_line
from codemode.sandbox.deno_pool import ProcessPool
from codemode.sandbox.deno_process import DenoProcess, RunListener
from codemode.sandbox.places import CURRENT, MAX_NESTING, NESTED_TOO_DEEP, Places, holder_for
from codemode.text import valid_text

__all__ = ["DenoExecutor", "find_deno"]

log = logging.getLogger("codemode")
RUNNER = Path(__file__).with_name("deno_runner.js")
WORKER = Path(__file__).with_name("deno_worker.js")
MAX_MESSAGE_BYTES = 64 * 2**20
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
        blocked = _import_error(code)
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
                run = _Run(self, process, host, RunListener(asyncio.get_running_loop(), release))
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


# How long a stopping pass keeps reading calls the program had already sent.
STOP_GRACE = 0.02
CANCEL_GRACE = 5.0  # seconds a call cancelled at the time limit gets to record that
KILL_GRACE = 10.0  # seconds a Worker gets to stop before its whole process is killed (starting a
# Worker blocks the process for ~20 ms, so a burst of starts can delay a stop by seconds)


class _Run:
    """One program in one Worker of a Deno process."""

    def __init__(self, executor: DenoExecutor, process: DenoProcess, host: Host, listener: RunListener) -> None:
        self.executor = executor
        self.process = process
        self.host = host
        self.listener = listener
        self.nonce = secrets.token_hex(12) + ":"
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = False
        self.logs: list[str] = []
        self.heard = False  # whether the Worker has sent anything for this program
        self.lost_before_start = False
        self.id: str | None = None

    async def drive(self, code: str, namespaces: Sequence[Namespace], input: Any) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.executor.timeout
        limits = {"depth": MAX_VALUE_DEPTH, "nodes": MAX_VALUE_NODES, "bytes": MAX_RESULT_BYTES}
        request = {
            "nonce": self.nonce,
            "code": code,
            "namespaces": {ns.name: sorted(ns.methods) for ns in namespaces},
            "input": codec.encode(input),
            "limits": {**limits, "memory": self.executor.memory_limit},
        }
        self.id = self.process.open(self.listener)
        if self.id is None:
            self.listener.ended()
            self.executor._pool.run_ended(self.process)
            self.lost_before_start = True
            return ExecuteResult(error="The sandbox process exited unexpectedly (before the program started).")
        queue = self.listener.queue
        # One timer for the run (not one per message), in a context of its own: a cancelled timer stays
        # scheduled until its time, and the run's context would keep its place (and the executor) alive.
        timer = loop.call_at(deadline, queue.put_nowait, ("timeout", None), context=contextvars.Context())
        driving = False
        try:
            self.process.send(f"start {self.id} {codec.json_text(request)}\n")
            # This loop reads the process's output while the run is driven; asked for once the program is
            # on its way, so the hand-over from the reader thread overlaps the Worker's start.
            driving = self.process.drive(loop)
            while True:
                kind, payload = await queue.get()
                if kind == "timeout":
                    return self._timed_out()
                if kind == "stop":
                    return ExecuteResult(stopped=True, logs=self.logs)
                if kind == "lost":
                    if self.stopped:
                        return ExecuteResult(stopped=True, logs=self.logs)
                    return self._died(payload)
                if kind == "large":  # a line beyond the channel's limit: a value far past every size bound
                    return ExecuteResult(
                        error=f"A value the program sent (a result, call arguments or console line) was larger "
                        f"than the {MAX_MESSAGE_BYTES // 2**20} MiB the sandbox channel carries; the run was "
                        "stopped. Return or pass only the fields you need.",
                        logs=self.logs,
                    )
                if kind == "uncaught":
                    return self._uncaught(payload)
                result = self._receive(payload)
                if result is not None:
                    return result
        finally:
            timer.cancel()
            if driving:
                self.process.undrive(loop)
            self._end()
            await self._settle(deadline)

    def _receive(self, line: bytes) -> ExecuteResult | None:
        """One message the Worker posted: a console line, a call, or the end of the program."""
        text = line.decode("utf-8", "replace")
        if not text.startswith(self.nonce):
            return self._violation()
        self.heard = True
        try:
            message = json.loads(text[len(self.nonce) :])
        except RecursionError:  # the runner bounds nesting; this is a deeper value all the same
            return ExecuteResult(error=codec.refusal("A value the program sent", RecursionError()), logs=self.logs)
        except ValueError:
            return self._violation()  # framed, but not JSON: fail closed
        try:
            kind = message.get("t")
            if kind == "log":
                self._log(message)
            elif kind == "call":
                task = asyncio.ensure_future(self._answer(message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif kind == "done":
                return self._done(message)
            else:
                return self._violation()
        except (ValueError, TypeError, KeyError, AttributeError):
            return self._violation()  # well-framed but malformed: fail closed
        return None

    def _end(self) -> None:
        """Terminate the Worker; if it has not gone within `KILL_GRACE`, its whole process goes."""
        if self.id is None or not self.process.holds(self.id):
            return
        self.process.send(f"kill {self.id}\n")
        run, process = self.id, self.process

        def check() -> None:
            if process.holds(run):
                log.warning("codemode: a Deno Worker did not stop; killing its process %s", process.pid)
                process.kill()

        # In a context of its own: the run's context holds its place in the nesting tree (and the executor).
        asyncio.get_running_loop().call_later(KILL_GRACE, check, context=contextvars.Context())

    def _log(self, message: dict[str, Any]) -> None:
        """A console line (text: a lone surrogate becomes U+FFFD); `dropped` marks where the runner's cap hit."""
        if message.get("dropped"):
            self.logs.append(dropped_line())
        else:
            self.logs.append(valid_text(str(message["s"])))

    def _done(self, message: dict[str, Any]) -> ExecuteResult:
        """How the program ended: its result, decoded, or a clear error about a value the host cannot read."""
        dropped = message.get("dropped")
        if isinstance(dropped, int) and self.logs and self.logs[-1] == dropped_line():
            self.logs[-1] = dropped_line(dropped)
        if message.get("memory"):
            return ExecuteResult(error=self._memory_error(), logs=self.logs)
        if message.get("ok"):
            try:
                return ExecuteResult(result=codec.decode(message.get("value")), logs=self.logs)
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                error = codec.refusal("The result", TypeError(f"the host could not decode it: {exc}"))
                return ExecuteResult(error=error, logs=self.logs)
        refused = message.get("refused")
        if isinstance(refused, dict):
            return ExecuteResult(error=_refusal("The result", refused), logs=self.logs)
        return ExecuteResult(error=valid_text(str(message.get("error"))), logs=self.logs)

    def _memory_error(self) -> str:
        limit = self.executor.memory_limit // 2**20
        return f"MemoryError: the program exceeded the sandbox memory limit ({limit} MiB)."

    def _write(self, message: dict[str, Any]) -> None:
        if self.id is not None:
            self.process.send(f"reply {self.id} {codec.json_text(message)}\n")

    async def _answer(self, message: dict[str, Any]) -> None:
        call_id = message.get("id")
        namespace, method = str(message.get("ns")), str(message.get("m"))
        try:
            refused = message.get("refused")
            if isinstance(refused, dict):
                step = namespace == "codemode" and method == "step_record"
                what = "The value of codemode.step" if step else f"Arguments to {namespace}.{method}"
                raise ToolError(_refusal(what, refused), "TypeError")
            try:
                args = codec.decode(message.get("a"))
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                raise ToolError(f"{namespace}.{method}: arguments could not be decoded ({exc}).", "TypeError") from None
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise ToolError(
                    f"{namespace}.{method}() takes one object of arguments, e.g. {{ name: value }}.", "TypeError"
                )
            value = await self.host.call(namespace, method, args)
            reply = {"id": call_id, "ok": True, "value": codec.encode(value)}
        except StopExecution:
            if not self.stopped:
                # Calls the program started together with this one (a batch under Promise.all) are
                # already on their way: read them for a moment, answer nothing more, then stop.
                self.stopped = True
                asyncio.get_running_loop().call_later(
                    STOP_GRACE, self.listener.queue.put_nowait, ("stop", None), context=contextvars.Context()
                )
            return
        except ToolError as exc:
            reply = {"id": call_id, "ok": False, "error": exc.message, "kind": exc.kind}
        except Exception as exc:
            reply = {"id": call_id, "ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "Error"}
        if self.stopped:
            return  # the program gets no more answers once the pass is stopping
        self._write(reply)

    async def _settle(self, deadline: float) -> None:
        """Calls already started still finish and get recorded; the program itself is gone."""
        if not self.tasks:
            return
        loop = asyncio.get_running_loop()
        pending = list(self.tasks)
        _, late = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0))
        for task in late:
            task.cancel()
        if late:  # a cancelled call records that its outcome is unknown before the pass ends
            await asyncio.wait(late, timeout=CANCEL_GRACE)

    def _timed_out(self) -> ExecuteResult:
        return ExecuteResult(
            error=f"Execution timed out: the program ran longer than the {self.executor.timeout:g} s limit.",
            logs=self.logs,
            timed_out=True,
        )

    def _violation(self) -> ExecuteResult:
        return ExecuteResult(error="The program wrote to the host channel; the run was stopped.", logs=self.logs)

    def _uncaught(self, payload: bytes) -> ExecuteResult:
        """The Worker stopped on an error outside the program's own flow (a rejection nobody awaited)."""
        try:
            message = valid_text(str(json.loads(payload)))
        except ValueError:
            return self._violation()
        message = re.sub(r",? run again with the --allow-\w+ flag", "", message)
        return ExecuteResult(error=message or "Uncaught error", logs=self.logs)

    def _died(self, stderr: str) -> ExecuteResult:
        """The process this run was in is gone: a crash, a program over the memory limit, or a kill."""
        if stderr == "violation":
            return self._violation()
        self.lost_before_start = not self.heard and not stderr.strip()
        if "out of memory" in stderr.lower():
            # V8 ends the whole process when one isolate runs out of heap, and which one did is not known.
            limit = self.executor.memory_limit // 2**20
            return ExecuteResult(
                error=f"MemoryError: a program in this sandbox process exceeded the memory limit ({limit} MiB), "
                "which stops the process and every program running in it, this one included. If this program "
                "builds large values, build smaller ones; otherwise run it again.",
                logs=self.logs,
            )
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        return ExecuteResult(error=f"The sandbox process exited unexpectedly ({tail}).", logs=self.logs)


def _refusal(what: str, refused: dict[str, Any]) -> str:
    """The message for a value the runner would not send (too large, too deep, a cycle)."""
    reason = valid_text(str(refused.get("reason", "")))
    return codec.refusal(what, codec.TooLargeError(0, MAX_RESULT_BYTES) if refused.get("large") else TypeError(reason))


@functools.lru_cache(maxsize=64)
def _normalize(code: str) -> str:
    """Parsing takes longer than a warm run of a short program; a run resumed or retried is the same code."""
    from codemode.sandbox.normalize import normalize_javascript

    return normalize_javascript(code)


def _import_error(code: str) -> str | None:
    """Programs may not import modules: connectors are the only way out of the sandbox."""
    # Every way to load a module spells `import`, or `export ... from` (a keyword cannot be written with
    # escapes), so most programs need no parse here.
    if "import" not in code and not ("export" in code and "from" in code):
        return None
    from codemode.sandbox.normalize import find_imports

    lines = find_imports(code)
    if not lines:
        return None
    source = code.splitlines()[lines[0] - 1].strip()
    return (
        "SyntaxError: import is not available in the sandbox. Use the connector globals and codemode.* "
        f"instead; standard JavaScript built-ins need no import.\n  at line {lines[0]}: {source}"
    )


# Signs that a program is Python: its structure (any error), or a Python name JavaScript does not define.
_PYTHON = re.compile(
    r"^\s*(?:def\s+\w+\s*\(.*\)\s*(?:->.*)?:|(?:if|elif|for|while|with|try|except|class)\b.*:|else\s*:|"
    r"from\s+[\w.]+\s+import\s|import\s+[\w.]+(?:\s+as\s+\w+)?)\s*$|\bf[\"']\{",
    re.MULTILINE,
)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`")
_PYTHON_NAMES = frozenset(
    {"print", "None", "True", "False", "len", "range", "str", "int", "dict", "list", "asyncio", "self", "elif"}
)


def _looks_like_python(first: str, code: str) -> bool:
    if first.startswith("SyntaxError"):
        return _PYTHON.search(code) is not None
    missing = re.match(r"ReferenceError: ([\w$]+) is not defined", first)
    # For a reference error, what string literals say is no sign: the program parsed as JavaScript.
    unquoted = _STRINGS.sub('""', code)
    return missing is not None and (missing.group(1) in _PYTHON_NAMES or _PYTHON.search(unquoted) is not None)


_NO_ACCESS = {
    "net": "the sandbox has no network access",
    "read": "the sandbox has no file system",
    "write": "the sandbox has no file system",
    "env": "the sandbox has no environment variables",
    "run": "the sandbox cannot start processes",
    "sys": "the sandbox has no access to the system",
    "ffi": "the sandbox cannot load native code",
}


def javascript_hint(message: str, code: str, names: Sequence[str]) -> str | None:
    """One line of advice for a mistake the JavaScript sandbox sees often, in terms of what it offers.

    `names` are the namespaces the program can call (connectors, then `codemode`)."""
    ns = names[0] if names else "codemode"
    first = message.splitlines()[0] if message else ""
    access = re.search(r"Requires (\w+) access", first)
    if access or "Fetch failed" in first:
        what = _NO_ACCESS.get(access.group(1), "the sandbox has no such access") if access else _NO_ACCESS["net"]
        return (
            f"{what}, and none can be granted: reach the outside only through connector methods, found with "
            "`codemode.search(...)`"
        )
    if _looks_like_python(first, code):
        return (
            f"this sandbox runs JavaScript, not Python: write `const x = await {ns}.method({{ ... }});`, "
            "`console.log(...)`, `null`/`true`/`false`, and `Promise.all([...])` for concurrent calls"
        )
    if first.startswith("TypeError") and re.search(
        r"Cannot read properties of|is not a function|is not iterable", first
    ):
        call = _unawaited(message, code, names)
        if call is not None:
            return call
    undeclared = re.match(r"ReferenceError: ([\w$]+) is not defined", first)
    if undeclared and re.search(rf"^\s*{re.escape(undeclared.group(1))}\s*=[^=]", code, re.MULTILINE):
        name = undeclared.group(1)
        return f"declare variables before use: `const {name} = ...` or `let {name} = ...` (programs run in strict mode)"
    return None


def _unawaited(message: str, code: str, names: Sequence[str]) -> str | None:
    """A call used without `await` (so its Promise is used as the value), and how to write it."""
    if not names:
        return None
    spaces = "|".join(re.escape(n) for n in names)
    line = re.search(r"\n  at line \d+: (.*)", message)
    source = line.group(1) if line else ""
    for assigned in re.finditer(rf"([A-Za-z_$][\w$]*)\s*=\s*((?:{spaces})\.[\w$]+)\s*\(", code):
        name, call = assigned.groups()
        if not source or re.search(rf"(?<![\w$.]){re.escape(name)}(?![\w$])", source):  # the failing line uses it
            return (
                f"`{name} = {call}(...)` has no `await`, so `{name}` is a Promise: connector and codemode methods "
                f"are async, write `const {name} = await {call}(...)`"
            )
    called = re.search(rf"(?<![\w$.])((?:{spaces})\.[\w$]+)\s*\(", source)
    if called and not re.search(rf"\bawait\s+{re.escape(called.group(1))}", source):
        call = called.group(1)
        return f"`{call}(...)` returns a Promise: connector and codemode methods are async, write `await {call}(...)`"
    return None
