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
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES
from codemode.sandbox.base import ExecuteResult, Host, Namespace, StopExecution, ToolError

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
    """Runs JavaScript or TypeScript with a wall-clock timeout and a memory limit."""

    language: Literal["python", "javascript"] = "javascript"
    # The runner refuses calls made inside a step's function itself (it knows them by async context).
    scopes_steps = True

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int = 256 * 2**20,
        *,
        warm_processes: int = 2,
        deno_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.warm_processes = warm_processes
        self.deno = find_deno(deno_path)
        self._idle: dict[asyncio.AbstractEventLoop, list[asyncio.subprocess.Process]] = {}
        self._refills: set[asyncio.Task[None]] = set()
        self._reaping: dict[int, asyncio.Task[None]] = {}
        self._deno_dir: tempfile.TemporaryDirectory[str] | None = None

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

    async def _spawn(self) -> asyncio.subprocess.Process:
        """A runner that has started and is waiting for its one program."""
        process = await asyncio.create_subprocess_exec(
            *self._command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self._env(),
            limit=MAX_MESSAGE_BYTES,
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            ready = await asyncio.wait_for(process.stdout.readline(), 30)
        except asyncio.TimeoutError:
            ready = b""
        except BaseException:  # cancelled (aclose): never leave a half-started process behind
            await _kill(process)
            raise
        if ready != b"ready\n":
            await _kill(process)
            detail = (await process.stderr.read()).decode("utf-8", "replace").strip()[-500:]
            raise RuntimeError(f"The Deno sandbox failed to start: {detail or 'no output'}")
        return process

    async def _checkout(self) -> asyncio.subprocess.Process:
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        process = None
        while idle and process is None:
            candidate = idle.pop()
            if candidate.returncode is None:
                process = candidate
        if process is None:
            process = await self._spawn()
        _limit_memory(process.pid, self.memory_limit)
        return process

    def _top_up(self) -> None:
        """Start replacements for used processes; called after a run, so spawning never competes with it."""
        idle = self._idle.setdefault(asyncio.get_running_loop(), [])
        if len(idle) < self.warm_processes and not self._refills:
            task = asyncio.ensure_future(self._refill(idle))
            self._refills.add(task)
            task.add_done_callback(self._refill_done)

    def _discard(self, process: asyncio.subprocess.Process) -> None:
        """Kill a used process now; reaping it happens off the caller's path."""
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        if process.pid not in self._reaping:
            task = asyncio.ensure_future(_kill(process))
            self._reaping[process.pid] = task
            task.add_done_callback(lambda _: self._reaping.pop(process.pid, None))

    def _refill_done(self, task: asyncio.Task[None]) -> None:
        self._refills.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("codemode: could not start a warm Deno process: %s", task.exception())

    async def _refill(self, idle: list[asyncio.subprocess.Process]) -> None:
        while len(idle) < self.warm_processes:
            idle.append(await self._spawn())

    async def aclose(self) -> None:
        refills = list(self._refills)
        for task in refills:
            task.cancel()
        await asyncio.gather(*refills, *self._reaping.values(), return_exceptions=True)
        idle = self._idle.pop(asyncio.get_running_loop(), [])
        for process in idle:
            await _kill(process)
        if not self._idle and self._deno_dir is not None:
            self._deno_dir.cleanup()
            self._deno_dir = None

    async def execute(
        self, code: str, namespaces: Sequence[Namespace], host: Host, *, input: Any = None
    ) -> ExecuteResult:
        blocked = _import_error(code)
        if blocked is not None:
            return ExecuteResult(error=blocked)
        for attempt in range(2):
            process = await self._checkout()
            run = _Run(self, process, host)
            try:
                result = await run.drive(code, namespaces, input)
            finally:
                self._discard(process)
                self._top_up()
            if not run.killed_while_idle or attempt:
                return result
            # The process was killed before the program said or printed anything (a warm process that
            # died while idle): nothing ran, so one retry on a fresh process is safe.
        raise AssertionError("unreachable")


# How long a stopping pass keeps reading calls the program had already sent.
STOP_GRACE = 0.02
CANCEL_GRACE = 5.0  # seconds a call cancelled at the time limit gets to record that


class _Run:
    """One program in one Deno process."""

    def __init__(self, executor: DenoExecutor, process: asyncio.subprocess.Process, host: Host) -> None:
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
            self.logs.append(codec.valid_text(str(message["s"])))

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
        return ExecuteResult(error=codec.valid_text(str(message.get("error"))), logs=self.logs)

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
    reason = codec.valid_text(str(refused.get("reason", "")))
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


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    if process.stdin is not None and not process.stdin.is_closing():
        process.stdin.close()
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(process.wait(), 5)
