"""`DenoExecutor`: JavaScript and TypeScript programs in Deno subprocesses.

Each program runs in its own `deno` process started with no `--allow-*`
permission, no remote or npm modules, and code generation from strings
disabled (`eval`, `new Function`). Processes are started ahead of time (a warm
pool) and used once, so nothing a program leaves behind can reach the next
one. Time is enforced by killing the process and memory by V8's heap limit.

The host talks to `deno_runner.js` over the process's stdin and stdout, one
JSON document per line. The runner removes `Deno` and `process` from the
program's reach before it runs, and every line it writes starts with a nonce
chosen for the run: any other output fails the run (fail closed), so a program
can neither forge nor corrupt host messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES
from codemode.sandbox.base import ExecuteResult, Host, Namespace, StopExecution, ToolError
from codemode.sandbox.places import CURRENT, MAX_NESTING, NESTED_TOO_DEEP, Holder, Places, holder_for
from codemode.text import valid_text

__all__ = ["DenoExecutor", "find_deno"]

log = logging.getLogger("codemode")
RUNNER = Path(__file__).with_name("deno_runner.js")
MAX_MESSAGE_BYTES = 64 * 2**20


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
    found = shutil.which("deno")
    if found:
        return found
    raise RuntimeError("DenoExecutor needs the deno binary: pip install 'codemode[js]' (or set CODEMODE_DENO).")


class DenoExecutor:
    """Runs JavaScript or TypeScript with a wall-clock timeout and a memory limit.

    At most `max_processes` Deno processes are alive at once (warm ones included; default: twice the
    CPU count, at least 4); runs beyond it wait for one. A snippet run by a program (`codemode.run`)
    takes its own process under the same cap, except that when every running program is waiting on
    a snippet of its own, the deepest waiting snippet starts anyway: a parent never waits for a slot
    only its own descendants could free, so nesting cannot deadlock. Snippets nest at most
    `MAX_NESTING` levels, which bounds that excess."""

    language: Literal["python", "javascript"] = "javascript"
    # The runner refuses calls made inside a step's function itself (it knows them by async context).
    scopes_steps = True

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int = 256 * 2**20,
        *,
        warm_processes: int = 2,
        max_processes: int | None = None,
        deno_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_processes is not None and max_processes < 1:
            raise ValueError("max_processes must be at least 1")
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.warm_processes = warm_processes
        self.max_processes = max_processes if max_processes is not None else max(4, 2 * (os.cpu_count() or 1))
        self.deno = find_deno(deno_path)
        self._pool = _Pool(self.max_processes)
        self._deno_dir: tempfile.TemporaryDirectory[str] | None = None
        # Dropped without aclose(), or still open at interpreter exit: its processes are killed then.
        weakref.finalize(self, _abandon, self._pool, os.getpid())

    def normalize(self, code: str) -> str:
        from codemode.sandbox.normalize import normalize_javascript

        return normalize_javascript(code)

    def _command(self) -> list[str]:
        heap_mib = max(self.memory_limit // 2**20, 16)
        return [
            self.deno,
            "run",
            "--quiet",
            "--no-prompt",
            "--no-config",
            "--no-lock",
            "--no-npm",
            "--no-remote",
            f"--v8-flags=--max-old-space-size={heap_mib},--disallow-code-generation-from-strings",
            str(RUNNER),
        ]

    def _env(self) -> dict[str, str]:
        if self._deno_dir is None:
            self._deno_dir = tempfile.TemporaryDirectory(prefix="codemode-deno-", ignore_cleanup_errors=True)
        return {"TZ": "UTC", "NO_COLOR": "1", "DENO_NO_UPDATE_CHECK": "1", "DENO_DIR": self._deno_dir.name}

    def _spawn(self) -> subprocess.Popen[bytes]:
        """Start a runner; it boots on its own while nothing waits for it.

        A plain `Popen` rather than `asyncio.create_subprocess_exec`: starting takes no await, so a loop
        that ends (or a task cancelled) can never catch a process half set up (asyncio then waits
        forever for pipes it never connected), and the process belongs to no loop, so any loop (the
        blocking twin's, the application's, the next `asyncio.run`) can use or close it. We reap it
        ourselves, so asyncio's child watcher never races us for its exit status (gh-87744)."""
        return subprocess.Popen(
            self._command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self._env(),
            bufsize=0,
        )

    async def _checkout(self, holder: Holder) -> _Process:
        """A runner that has started and is waiting for its one program (waits its turn under the cap)."""
        try:
            return await self._start(holder)
        except BaseException:
            self._pool.unlease(holder)
            raise

    async def _start(self, holder: Holder) -> _Process:
        while True:
            popen = await self._pool.lease(holder)
            if popen is None:
                try:
                    popen = self._spawn()
                except OSError as exc:
                    self._pool.reaped()
                    raise RuntimeError(f"The Deno sandbox failed to start: {exc}") from exc
                self._pool.started(popen)
            elif popen.poll() is not None:  # a warm process that died while idle (reaped just now)
                self._pool.reaped(popen)
                self._pool.unlease(holder)
                continue
            try:
                process = await _attach(popen)
            except BaseException:
                self._kill(popen)
                raise
            try:
                ready = await asyncio.wait_for(process.stdout.readline(), 30)
            except asyncio.TimeoutError:
                ready = b""
            except BaseException:  # cancelled: never leave a half-started process behind
                self._discard(process)
                raise
            if ready != b"ready\n":
                process.kill()
                detail = b""
                with contextlib.suppress(asyncio.TimeoutError):
                    detail = await asyncio.wait_for(process.stderr.read(), 5)
                self._discard(process)
                text = detail.decode("utf-8", "replace").strip()[-500:]
                raise RuntimeError(f"The Deno sandbox failed to start: {text or 'no output'}")
            _limit_memory(process.pid, self.memory_limit)
            return process

    def _top_up(self) -> None:
        """Start replacements for used processes; called after a run, so spawning never competes with it."""
        while self._pool.reserve_warm(self.warm_processes):
            try:
                popen = self._spawn()
            except OSError as exc:
                self._pool.reaped()
                log.warning("codemode: could not start a warm Deno process: %s", exc)
                return
            self._pool.started(popen)
            self._pool.add_idle(popen)

    def _discard(self, process: _Process) -> None:
        """Kill a used process now; reaping it happens off the caller's path."""
        if process.discarded:
            return
        process.discarded = True
        process.close()
        self._kill(process.popen)

    def _kill(self, popen: subprocess.Popen[bytes]) -> None:
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                popen.kill()
        for pipe in (popen.stdin, popen.stdout, popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        _REAPER.add(popen, self._pool.reaped)

    async def aclose(self) -> None:
        """Kill the warm processes and wait until every process this executor killed has exited.

        Works from any event loop (or after the loop that used the executor has ended). A run still in
        flight keeps its process until it ends; `Runtime.aclose` waits for those first."""
        for popen in self._pool.take_idle():
            self._kill(popen)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while self._pool.dying() and loop.time() < deadline:
            await asyncio.sleep(0.005)
        if self._pool.empty() and self._deno_dir is not None:
            self._deno_dir.cleanup()
            self._deno_dir = None

    async def execute(
        self, code: str, namespaces: Sequence[Namespace], host: Host, *, input: Any = None
    ) -> ExecuteResult:
        blocked = _import_error(code)
        if blocked is not None:
            return ExecuteResult(error=blocked)
        holder = holder_for(self)
        if holder.depth > MAX_NESTING:
            return ExecuteResult(error=NESTED_TOO_DEEP)
        self._pool.nesting(holder)
        token = CURRENT.set(holder)  # the calls of this run (its snippets among them) see it as their parent
        try:
            for attempt in range(2):
                process = await self._checkout(holder)
                run = _Run(self, process, host)
                retry = False
                try:
                    result = await run.drive(code, namespaces, input)
                    # Killed before the program said or printed anything (a warm process that died while
                    # idle): nothing ran, so one retry on a fresh process is safe.
                    retry = run.killed_while_idle and not attempt
                finally:
                    self._discard(process)
                    self._pool.unlease(holder, final=not retry)
                    self._top_up()
                if not retry:
                    return result
            raise AssertionError("unreachable")
        finally:
            CURRENT.reset(token)
            self._pool.unlease(holder, final=True)


class _Pool(Places["subprocess.Popen[bytes]"]):
    """Every process of one executor: the cap, the warm ones, the runs waiting for one."""

    def __init__(self, cap: int) -> None:
        super().__init__(cap)
        self._all: set[subprocess.Popen[bytes]] = set()

    def started(self, popen: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._all.add(popen)

    def reaped(self, popen: subprocess.Popen[bytes] | None = None) -> None:
        """A process exited and was reaped (or never started): its place goes to the next waiter."""
        with self._lock:
            if popen is not None:
                self._all.discard(popen)
            self._all = {p for p in self._all if p.returncode is None}
        self.release()

    def reserve_warm(self, warm: int) -> bool:
        """Whether to start one more warm process: below `warm` idle, below the cap, nobody waiting."""
        with self._lock:
            if len(self._idle) < warm and self._alive < self.cap and not self._waiters:
                self._alive += 1
                return True
            return False

    def add_idle(self, popen: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._idle.append(popen)
            self._grant()

    def take_idle(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            idle, self._idle = self._idle, []
            return idle

    def dying(self) -> bool:
        """Whether a process is alive that no run holds and no warm slot keeps: killed, not yet reaped."""
        with self._lock:
            return self._alive > len(self._busy) + len(self._idle)

    def empty(self) -> bool:
        with self._lock:
            return self._alive == 0

    def every_process(self) -> list[subprocess.Popen[bytes]]:
        with self._lock:
            return [*self._all, *self._idle]


class _Process:
    """A started runner with its pipes connected to the running event loop."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        stdin: asyncio.StreamWriter,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._transports = transports
        self.discarded = False

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.kill()

    def close(self) -> None:
        for transport in self._transports:
            transport.close()


async def _attach(popen: subprocess.Popen[bytes]) -> _Process:
    """Connect a started runner's pipes to the running loop (each step closes its pipe if cancelled)."""
    assert popen.stdin is not None and popen.stdout is not None and popen.stderr is not None
    loop = asyncio.get_running_loop()
    transports: list[asyncio.BaseTransport] = []
    try:
        stdout = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES)
        out, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdout), popen.stdout)
        transports.append(out)
        stderr = asyncio.StreamReader()
        err, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stderr), popen.stderr)
        transports.append(err)
        write, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, popen.stdin)
        transports.append(write)
    except BaseException:
        for transport in transports:
            transport.close()
        raise
    return _Process(popen, asyncio.StreamWriter(write, protocol, None, loop), stdout, stderr, transports)


class _Reaper:
    """Waits for killed runners to exit, off every event loop: one daemon thread, started when there
    is something to reap, so it never keeps the interpreter alive."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._dying: dict[subprocess.Popen[bytes], Callable[[subprocess.Popen[bytes]], None]] = {}
        self._thread: threading.Thread | None = None

    def add(self, popen: subprocess.Popen[bytes], done: Callable[[subprocess.Popen[bytes]], None]) -> None:
        with self._cond:
            if popen in self._dying:
                return
            self._dying[popen] = done
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="codemode-deno-reaper", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._dying:
                    self._cond.wait()
                dying = list(self._dying.items())
            exited = [(popen, done) for popen, done in dying if popen.poll() is not None]
            with self._cond:
                for popen, _ in exited:
                    self._dying.pop(popen, None)
            for popen, done in exited:
                done(popen)
            if len(exited) < len(dying):
                time.sleep(0.002)


_REAPER = _Reaper()


def _abandon(pool: _Pool, owner: int) -> None:
    """An executor dropped without aclose(), or open at interpreter exit: kill every process it
    started, close their pipes, and leave the reaping to the reaper (nothing here blocks)."""
    if os.getpid() != owner:
        return  # a forked child: these processes are its parent's
    for popen in pool.every_process():
        if popen.poll() is None:
            with contextlib.suppress(OSError):
                popen.kill()
        for pipe in (popen.stdin, popen.stdout, popen.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        _REAPER.add(popen, pool.reaped)


# How long a stopping pass keeps reading calls the program had already sent.
STOP_GRACE = 0.02
CANCEL_GRACE = 5.0  # seconds a call cancelled at the time limit gets to record that


class _Run:
    """One program in one Deno process."""

    def __init__(self, executor: DenoExecutor, process: _Process, host: Host) -> None:
        self.executor = executor
        self.process = process
        self.host = host
        self.nonce = secrets.token_hex(12) + ":"
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = False
        self.stderr = b""
        self.logs: list[str] = []
        self.heard = False  # whether the runner has sent anything for this program
        self.killed_while_idle = False

    async def drive(self, code: str, namespaces: Sequence[Namespace], input: Any) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.executor.timeout
        assert self.process.stdin and self.process.stdout and self.process.stderr
        drain_stderr = asyncio.ensure_future(self._drain_stderr())
        request = {
            "nonce": self.nonce,
            "code": code,
            "namespaces": {ns.name: sorted(ns.methods) for ns in namespaces},
            "input": codec.encode(input),
            "limits": {"depth": MAX_VALUE_DEPTH, "nodes": MAX_VALUE_NODES, "bytes": MAX_RESULT_BYTES},
        }
        try:
            self._write(request)
            while True:
                try:
                    line = await asyncio.wait_for(self.process.stdout.readline(), max(deadline - loop.time(), 0))
                except asyncio.TimeoutError:
                    return self._timed_out()
                except ValueError:  # a line beyond the stream limit: a value far past every size bound
                    return ExecuteResult(
                        error=f"A value the program sent (a result, call arguments or console line) was larger "
                        f"than the {MAX_MESSAGE_BYTES // 2**20} MiB the sandbox channel carries; the run was "
                        "stopped. Return or pass only the fields you need.",
                        logs=self.logs,
                    )
                if not line:
                    if self.stopped:
                        return ExecuteResult(stopped=True, logs=self.logs)
                    return await self._died(drain_stderr)
                text = line.decode("utf-8", "replace")
                if not text.startswith(self.nonce):
                    return self._violation()
                self.heard = True
                try:
                    message = json.loads(text[len(self.nonce) :])
                except RecursionError:  # the runner bounds nesting; this is a deeper value all the same
                    return ExecuteResult(
                        error=codec.refusal("A value the program sent", RecursionError()), logs=self.logs
                    )
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
        finally:
            self.executor._discard(self.process)
            await self._settle(deadline)
            drain_stderr.cancel()

    def _log(self, message: dict[str, Any]) -> None:
        """A console line (text: a lone surrogate becomes U+FFFD); `dropped` marks where the runner's cap hit."""
        if message.get("dropped"):
            self.logs.append(_LOGS_DROPPED + "]")
        else:
            self.logs.append(valid_text(str(message["s"])))

    def _done(self, message: dict[str, Any]) -> ExecuteResult:
        """How the program ended: its result, decoded, or a clear error about a value the host cannot read."""
        dropped = message.get("dropped")
        if isinstance(dropped, int) and self.logs and self.logs[-1] == _LOGS_DROPPED + "]":
            self.logs[-1] = f"{_LOGS_DROPPED} ({dropped:,} more characters)]"
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

    def _write(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        if self.process.stdin.is_closing():
            return
        data = codec.json_text(message) + "\n"
        self.process.stdin.write(data.encode("utf-8"))

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
                asyncio.get_running_loop().call_later(STOP_GRACE, self.executor._discard, self.process)
            return
        except ToolError as exc:
            reply = {"id": call_id, "ok": False, "error": exc.message, "kind": exc.kind}
        except Exception as exc:
            reply = {"id": call_id, "ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "Error"}
        if self.stopped:
            return  # the program gets no more answers once the pass is stopping
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._write(reply)
            assert self.process.stdin is not None
            await self.process.stdin.drain()

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

    async def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        while chunk := await self.process.stderr.read(65536):
            self.stderr = (self.stderr + chunk)[-8192:]

    def _timed_out(self) -> ExecuteResult:
        return ExecuteResult(
            error=f"Execution timed out: the program ran longer than the {self.executor.timeout:g} s limit.",
            logs=self.logs,
            timed_out=True,
        )

    def _violation(self) -> ExecuteResult:
        return ExecuteResult(error="The program wrote to the host channel; the run was stopped.", logs=self.logs)

    async def _died(self, drain_stderr: asyncio.Future[None]) -> ExecuteResult:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(drain_stderr), 1.0)
        text = self.stderr.decode("utf-8", "replace")
        self.killed_while_idle = not self.heard and not text.strip()
        if "out of memory" in text.lower():
            return ExecuteResult(
                error=f"MemoryError: the program exceeded the sandbox memory limit "
                f"({self.executor.memory_limit // 2**20} MiB).",
                logs=self.logs,
            )
        tail = text.strip().splitlines()[-1] if text.strip() else "no output"
        return ExecuteResult(error=f"The sandbox process exited unexpectedly ({tail}).", logs=self.logs)


_LOGS_DROPPED = "[codemode: console output beyond 1,000,000 characters was dropped"


def _refusal(what: str, refused: dict[str, Any]) -> str:
    """The message for a value the runner would not send (too large, too deep, a cycle)."""
    reason = valid_text(str(refused.get("reason", "")))
    return codec.refusal(what, codec.TooLargeError(0, MAX_RESULT_BYTES) if refused.get("large") else TypeError(reason))


def _import_error(code: str) -> str | None:
    """Programs may not import modules: connectors are the only way out of the sandbox."""
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


def _limit_memory(pid: int, limit: int) -> None:
    """Bound everything the process maps from now on, typed arrays included (V8's heap limit does not
    cover ArrayBuffer memory). Linux only: the data limit is set to what the idle process already has
    plus `limit`, since V8 reserves several hundred MiB of address space at start."""
    try:
        import resource

        with open(f"/proc/{pid}/status") as status:
            data_kib = next(int(line.split()[1]) for line in status if line.startswith("VmData:"))
        ceiling = data_kib * 1024 + limit
        resource.prlimit(pid, resource.RLIMIT_DATA, (ceiling, ceiling))
    except (ImportError, OSError, StopIteration, ValueError, AttributeError):
        pass  # not Linux: the V8 heap limit still applies
