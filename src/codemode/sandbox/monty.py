"""`MontyExecutor`: Python programs in Monty worker processes.

The program runs in a `pydantic-monty` worker: a separate process with no
filesystem, environment, network or subprocess surface. Connector namespaces
enter as `ClassInstance` objects whose method calls suspend the worker; this
driver answers each suspension itself (`feed_start` / `resume`), so it sees
every call in program order, starts host work concurrently for
`asyncio.gather`, and can stop the program at any point by simply not
resuming it. `codemode` is defined by a short prelude fed first, so that
`codemode.step` can call the program's own function inside the sandbox.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import date
from typing import Any, Literal, cast

import pydantic_monty as monty

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES
from codemode.sandbox import monty_checkpoint
from codemode.sandbox.base import (
    PLATFORM_METHODS,
    CallSeq,
    Checkpoint,
    ExecuteResult,
    Host,
    Namespace,
    StopExecution,
    ToolError,
)
from codemode.sandbox.normalize import normalize_python
from codemode.sandbox.places import CURRENT, MAX_NESTING, NESTED_TOO_DEEP, Places, holder_for
from codemode.text import valid_text, valid_texts

__all__ = ["MontyExecutor"]

# Fed before the program in the same session. The host object reaches the
# factory through a one-time call, so the program's only new global is `codemode`.
PRELUDE = """
def codemode(host):
    class Codemode:
        depth = 0

        async def search(self, query):
            return await host.search(query=query)

        async def describe(self, target):
            return await host.describe(target=target)

        async def run(self, name, input=None):
            return await host.run(name=name, input=input)

        async def step(self, name, fn):
            if self.depth:
                raise RuntimeError(
                    "codemode.step cannot run inside another step's function: a step is replayed without "
                    "running its function. Run the steps one after the other."
                )
            decision = await host.step_decide(name=name)
            if decision["replay"]:
                return decision["value"]
            self.depth += 1
            try:
                value = fn()
                if type(value).__name__ == "coroutine":
                    value = await value
            except Exception as error:
                self.depth -= 1
                await host.step_fail(token=decision["token"], kind=type(error).__name__, message=str(error))
                raise
            self.depth -= 1
            return await host.step_record(token=decision["token"], value=value)

    return Codemode()


codemode = codemode(__codemode_host__())
"""
_SLEEPS = frozenset({"system.sleep", "system.async_sleep", "time.sleep", "asyncio.sleep"})
_PROGRAM_FILE = "<python-input-1>"  # the second feed of a session: the program itself
MAX_CONSOLE_CHARS = 1_000_000
CANCEL_GRACE = 5.0  # seconds a call cancelled at the time limit gets to record that


class MontyExecutor:
    """Runs Python (Monty's subset) with a wall-clock timeout, memory and recursion limits."""

    language: Literal["python", "javascript"] = "python"

    def __init__(
        self,
        timeout: float = 60.0,
        memory_limit: int = 256 * 2**20,
        *,
        recursion_limit: int = 1000,
        max_round_trips: int = 100_000,
        max_workers: int = 16,
        warm_workers: int = 1,
        checkpoints: bool = True,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self.memory_limit = memory_limit
        self.recursion_limit = recursion_limit
        self.max_round_trips = max_round_trips
        self.max_workers = max_workers
        self.warm_workers = warm_workers
        # A paused program's state is handed to the runtime to resume from; False: every resume replays.
        self.checkpoints = checkpoints
        # One pool for every event loop (the blocking twin's, the application's, each `asyncio.run`):
        # a pool per loop was never closed when its loop ended, so its workers piled up.
        self._ready: concurrent.futures.Future[monty.AsyncMonty] | None = None
        self._lock = threading.Lock()
        # Runs take a place before a worker: snippets run by programs cannot deadlock the cap (see
        # `places`); the pool itself may go beyond it by the nesting bound, so it never blocks them.
        self._places: Places[None] = Places(max_workers)

    def normalize(self, code: str) -> str:
        return normalize_python(code)

    async def _pool(self) -> monty.AsyncMonty:
        with self._lock:
            ready, starting = self._ready, self._ready is None
            if ready is None:
                ready = self._ready = concurrent.futures.Future()
        if not starting:
            return ready.result() if ready.done() else await asyncio.shield(asyncio.wrap_future(ready))
        try:
            pool = monty.AsyncMonty(min_processes=self.warm_workers, max_processes=self.max_workers + MAX_NESTING)
            await pool.__aenter__()
        except BaseException as exc:
            with self._lock:
                self._ready = None
            ready.set_exception(exc)
            ready.exception()  # retrieved: a later caller starts over
            raise
        ready.set_result(pool)
        return pool

    async def aclose(self) -> None:
        """Stop the workers, from any event loop; the next run starts a new pool."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is None:
            return
        try:
            pool = await asyncio.shield(asyncio.wrap_future(ready))
        except Exception:
            return  # it never started
        await pool.__aexit__(None, None, None)

    def _limits(self) -> monty.ResourceLimits:
        return {
            "max_feed_duration_secs": self.timeout,
            "max_memory": self.memory_limit,
            "max_recursion_depth": self.recursion_limit,
            "max_suspensions": self.max_round_trips,
            "max_total_sleep_secs": self.timeout,
        }

    @property
    def checkpoint_format(self) -> str:
        """Checkpoints are this pydantic-monty version's dumps: another version's are not restored."""
        return monty_checkpoint.FORMAT

    async def execute(
        self, code: str, namespaces: Sequence[Namespace], host: Host, *, input: Any = None
    ) -> ExecuteResult:
        result = await self._leased(namespaces, host, lambda run, session: run.drive(session, code, input))
        assert result is not None
        return result

    async def resume(self, checkpoint: Checkpoint, namespaces: Sequence[Namespace], host: Host) -> ExecuteResult | None:
        """Go on from a paused program's checkpoint; None when it does not restore (replay instead)."""
        return await self._leased(namespaces, host, lambda run, session: run.drive_from(session, checkpoint))

    async def _leased(
        self,
        namespaces: Sequence[Namespace],
        host: Host,
        drive: Callable[[_Run, monty.AsyncMontySession], Awaitable[ExecuteResult | None]],
    ) -> ExecuteResult | None:
        holder = holder_for(self)
        if holder.depth > MAX_NESTING:
            return ExecuteResult(error=NESTED_TOO_DEEP)
        self._places.nesting(holder)
        token = CURRENT.set(holder)  # the calls of this run (its snippets among them) see it as their parent
        try:
            await self._places.lease(holder)
            try:
                pool = await self._pool()
                run = _Run(self, namespaces, host)
                async with pool.checkout(limits=self._limits(), script_name="program.py") as session:
                    return await drive(run, session)
            finally:
                self._places.unlease(holder, final=True, free=True)
        finally:
            CURRENT.reset(token)
            self._places.unlease(holder, final=True)


class _Run:
    """One program in one checked-out worker."""

    def __init__(self, executor: MontyExecutor, namespaces: Sequence[Namespace], host: Host) -> None:
        self.executor = executor
        self.host = host
        self.console = _Console()
        self.platform = monty.ClassInstance(type("codemode_host", (), {})(), allowed_methods=PLATFORM_METHODS)
        self.objects: dict[Any, str] = {self.platform.id: "codemode"}
        self.inputs: dict[str, Any] = {}
        self.namespace_values: dict[int, str] = {id(self.platform.value): "codemode"}
        for ns in namespaces:
            instance = monty.ClassInstance(type(ns.name, (), {})(), allowed_methods=sorted(ns.methods))
            self.objects[instance.id] = ns.name
            self.inputs[ns.name] = instance
            self.namespace_values[id(instance.value)] = ns.name
        self.tasks: dict[int, asyncio.Task[Any]] = {}
        # Under a host that checkpoints: each call in flight, as a checkpoint would re-issue it.
        self.checkpoints = monty_checkpoint.checkpointing(host) if executor.checkpoints else None
        self.calls: dict[int, tuple[str, str, Any, CallSeq]] = {}
        self.timed_out = False

    async def drive(self, session: monty.AsyncMontySession, code: str, input: Any) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.executor.timeout
        await session.feed_run(PRELUDE, external_lookup={"__codemode_host__": lambda: self.platform})
        pid = session.worker_pid
        timer = loop.call_at(deadline, self._kill, pid)
        try:
            return await self._drive(session, code, input, deadline)
        finally:
            timer.cancel()
            await self._settle(deadline)

    async def drive_from(self, session: monty.AsyncMontySession, checkpoint: Checkpoint) -> ExecuteResult | None:
        """The program restored from `checkpoint`, driven on to its end (the time limit starts again)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.executor.timeout
        timer = loop.call_at(deadline, self._kill, session.worker_pid)
        try:
            restored = await monty_checkpoint.restore(self, session, checkpoint)
            if restored is None:
                return None
            return await self._drive(session, "", None, deadline, restored)
        finally:
            timer.cancel()
            await self._settle(deadline)

    def _kill(self, pid: int | None) -> None:
        """The wall-clock limit: the worker is killed; the pool replaces it."""
        self.timed_out = True
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, getattr(signal, "SIGKILL", signal.SIGTERM))

    def _timeout_result(self) -> ExecuteResult:
        return ExecuteResult(
            error=f"Execution timed out: the program ran longer than the {self.executor.timeout:g} s limit.",
            logs=self.console.lines(),
            timed_out=True,
        )

    async def _drive(
        self,
        session: monty.AsyncMontySession,
        code: str,
        input: Any,
        deadline: float,
        restored: monty.AsyncSnapshot | None = None,
    ) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        try:
            snap: monty.AsyncSnapshot = (
                restored
                if restored is not None
                else await session.feed_start(
                    code, inputs={**self.inputs, "input": valid_texts(input)}, print_callback=self.console.write
                )
            )
            while not isinstance(snap, monty.MontyComplete):
                if isinstance(snap, monty.AsyncFunctionSnapshot):
                    snap = await self._call(snap)
                elif isinstance(snap, monty.AsyncFutureSnapshot):
                    waiting = [self.tasks[c] for c in snap.pending_call_ids if c in self.tasks]
                    done, _ = await asyncio.wait(
                        waiting, timeout=max(deadline - loop.time(), 0), return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        return self._timeout_result()
                    results: dict[int, monty.ExternalSettledResult] = {}
                    for call_id in snap.pending_call_ids:
                        task = self.tasks.get(call_id)
                        if task is not None and task.done():
                            settled = _settle(task)
                            if settled is None:  # the state now is what a resume can go on from
                                checkpoint = monty_checkpoint.take(self, snap)
                                return ExecuteResult(logs=self.console.lines(), stopped=True, checkpoint=checkpoint)
                            results[call_id] = settled
                    for call_id in results:
                        del self.tasks[call_id]
                        self.calls.pop(call_id, None)
                    snap = await snap.resume(results)
                else:  # a name the program never defined
                    snap = await snap.resume()
            try:  # the runtime's codec then bounds the result's expansion, without making it
                result = self._host_value(snap.output)
            except (TypeError, ValueError, RecursionError) as exc:
                return ExecuteResult(error=codec.refusal("The result", exc), logs=self.console.lines())
            return ExecuteResult(result=result, logs=self.console.lines())
        except monty.MontyCrashedError as exc:
            if self.timed_out or exc.timed_out:
                return self._timeout_result()
            return ExecuteResult(
                error=f"The sandbox worker crashed ({exc}). The program likely exhausted a resource; simplify it.",
                logs=self.console.lines(),
            )
        except monty.MontySyntaxError as exc:
            text = exc.display("traceback").replace(f'File "{_PROGRAM_FILE}"', "File <program>")
            return ExecuteResult(error=_strip_traceback_header(text), logs=self.console.lines())
        except monty.MontyRuntimeError as exc:
            if self.timed_out:
                return self._timeout_result()
            return ExecuteResult(error=_describe_error(exc, self.executor), logs=self.console.lines())
        except monty.MontyError as exc:
            return ExecuteResult(error=f"{type(exc).__name__}: {exc}", logs=self.console.lines())

    def _host_value(self, value: Any) -> Any:
        """Sandbox-only objects become plain data; a namespace object never leaks out as itself.

        Raises `TypeError` for a value nested deeper than `MAX_VALUE_DEPTH` or containing itself, and
        `codec.TooLargeError` past `MAX_VALUE_NODES` values."""
        return _HostValues(self.namespace_values, self.objects).convert(value, 0)

    async def _call(self, snap: monty.AsyncFunctionSnapshot) -> monty.AsyncSnapshot:
        if snap.is_os_function:
            if snap.function_name in _SLEEPS:
                return await self._sleep(snap)
            return await snap.resume_not_handled()  # Monty's own refusal: no files, no environment
        namespace = self.objects.get(snap.object_id)
        if namespace is None:
            return await snap.resume(
                {"exc_type": "NameError", "message": f"name {snap.function_name!r} is not defined"}
            )
        try:
            args = _call_args(namespace, snap.function_name, snap.args, snap.kwargs)
        except TypeError as exc:
            return await snap.resume({"exc_type": "TypeError", "message": str(exc)})
        step_value = namespace == "codemode" and snap.function_name == "step_record"
        what = "The value of codemode.step" if step_value else f"Arguments to {namespace}.{snap.function_name}"
        try:  # what cannot cross at all is refused here, catchable, before anything is validated or logged
            args = self._host_value(args)
            codec.check(what, args)
        except (TypeError, ValueError, RecursionError) as exc:
            message = str(exc) if isinstance(exc, codec.DurableValueError) else codec.refusal(what, exc)
            return await snap.resume({"exc_type": "TypeError", "message": message})
        # Started now, in program order; the program awaits it whenever it likes.
        call = (namespace, snap.function_name, args)
        monty_checkpoint.start_call(self, snap.call_id, self.host.call(*call), call)
        return await snap.resume({"future": ...})

    async def _sleep(self, snap: monty.AsyncFunctionSnapshot) -> monty.AsyncSnapshot:
        """`time.sleep` / `asyncio.sleep` wait on the host loop; the wall-clock limit still applies."""
        seconds = snap.args[0] if snap.args else snap.kwargs.get("seconds", 0)
        if not isinstance(seconds, (int, float)) or seconds < 0:
            return await snap.resume(
                {"exc_type": "ValueError", "message": "sleep length must be a non-negative number"}
            )
        if snap.function_name in ("system.async_sleep", "asyncio.sleep"):
            self.tasks[snap.call_id] = asyncio.ensure_future(asyncio.sleep(float(seconds)))
            return await snap.resume({"future": ...})
        await asyncio.sleep(float(seconds))
        return await snap.resume({"return_value": None})

    async def _settle(self, deadline: float) -> None:
        """Calls the program started but never awaited still finish and get recorded."""
        if not self.tasks:
            return
        loop = asyncio.get_running_loop()
        pending = list(self.tasks.values())
        self.tasks.clear()
        _, late = await asyncio.wait(pending, timeout=max(deadline - loop.time(), 0))
        for task in late:
            task.cancel()
        if late:  # a cancelled call records that its outcome is unknown before the pass ends
            await asyncio.wait(late, timeout=CANCEL_GRACE)
        for task in pending:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved, so asyncio does not warn


def _settle(task: asyncio.Task[Any]) -> monty.ExternalSettledResult | None:
    """A finished host call as Monty's answer; None when the host stopped the program."""
    exc = task.exception()
    if exc is None:
        return {"return_value": valid_texts(task.result())}  # Monty strings cannot hold lone surrogates
    if isinstance(exc, StopExecution):
        return None
    if isinstance(exc, ToolError):
        return {"exc_type": cast(monty.ExcType, exc.kind), "message": valid_text(exc.message)}
    return {"exc_type": "RuntimeError", "message": f"{type(exc).__name__}: {exc}"}


def _call_args(namespace: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments, or one dict of them: `ns.m(a=1)` or `ns.m({"a": 1})`."""
    if not args:
        return dict(kwargs)
    if len(args) == 1 and isinstance(args[0], dict) and not kwargs and all(isinstance(k, str) for k in args[0]):
        return dict(args[0])
    raise TypeError(
        f"{namespace}.{method}() takes keyword arguments (e.g. {namespace}.{method}(name=value)) or a single "
        "dict of them, not positional values."
    )


class _HostValues:
    """One conversion of a sandbox value to host data.

    Each container is converted once (shared references stay shared, so a value built by doubling a
    list costs its distinct containers, not its expansion); the codec's budget then counts the expansion
    without making it. Only what the codec can hold comes out: None, bools, numbers, strings, bytes, dates,
    lists, tuples, dicts, sets and frozensets; a dataclass instance becomes a dict of its fields; anything
    else (classes, functions, other instances, exceptions, complex numbers, timedeltas) becomes a short
    description string, so no host object ever reaches the caller."""

    def __init__(self, namespaces: Mapping[int, str], objects: Mapping[Any, str]) -> None:
        self.namespaces = namespaces
        self.objects = objects  # by sandbox id: a restored program's namespaces are stand-ins carrying it
        self.memo: dict[int, Any] = {}
        self.active: set[int] = set()
        self.visits = 0  # never more than the expanded value's count, so within budget for any value that fits

    def convert(self, value: Any, depth: int) -> Any:
        self.visits += 1
        if self.visits > MAX_VALUE_NODES:
            raise codec.TooLargeError(2 * self.visits, MAX_RESULT_BYTES)
        if value is None or isinstance(value, (bool, int, float, str, bytes, date)):
            return value
        if id(value) in self.namespaces:
            return f"<namespace {self.namespaces[id(value)]}>"
        if isinstance(value, (list, tuple, dict, set, frozenset)):
            return self._container(value, depth)
        if isinstance(value, monty.MontyClassProxy):
            if value.id in self.objects:
                return f"<namespace {self.objects[value.id]}>"
            if value.is_dataclass:
                return self._container(value, depth)
            return f"<{value.name} object>"
        if isinstance(value, monty.MontyClassTypeProxy):
            return f"<class '{value.name}'>"
        if isinstance(value, monty.MontyStdTypeProxy):
            return f"<built-in {value.kind} {value.name}>"
        if isinstance(value, type):
            return f"<class '{value.__name__}'>"
        return _describe(value)

    def _container(self, value: Any, depth: int) -> Any:
        marker = id(value)
        if marker in self.memo:
            return self.memo[marker]
        if marker in self.active:
            raise TypeError("the value contains a cycle (a container inside itself)")
        if depth > MAX_VALUE_DEPTH:
            raise TypeError(f"nesting deeper than {MAX_VALUE_DEPTH} levels")
        self.active.add(marker)
        try:
            out = self._children(value, depth + 1)
        finally:
            self.active.discard(marker)
        self.memo[marker] = out
        return out

    def _children(self, value: Any, depth: int) -> Any:
        if isinstance(value, monty.MontyClassProxy):
            value = dict(value.attributes)
        if isinstance(value, dict):
            pairs = [(self.convert(k, depth), self.convert(v, depth)) for k, v in value.items()]
            try:
                return dict(pairs)
            except TypeError:  # a key that became unhashable data
                return {_describe(k) if not isinstance(k, str) else k: v for k, v in pairs}
        items = [self.convert(v, depth) for v in value]
        if isinstance(value, list):
            return items
        try:
            return type(value)(items)
        except TypeError:  # a set item that became unhashable data
            return items


def _describe(value: Any) -> str:
    """A short description of a value that is not data."""
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= 200 else text[:200] + "…"


def _describe_error(exc: monty.MontyRuntimeError, executor: MontyExecutor) -> str:
    """`Type: message`, then the program line it happened on."""
    message = exc.display("type-msg")
    if message.startswith("TimeoutError: feed time limit exceeded"):
        return f"Execution timed out: the program ran longer than the {executor.timeout:g} s limit."
    if message.startswith("MemoryError"):
        message += f" (the sandbox memory limit is {executor.memory_limit // 2**20} MiB)"
    frames = [f for f in exc.traceback() if f.filename == _PROGRAM_FILE]
    if frames:
        frame = frames[-1]
        source = (frame.source_line or "").strip()
        message += f"\n  at line {frame.line}" + (f": {source}" if source else "")
    return message


# What `import` finds in Monty 1.4 (checked by tests/test_hints.py): no other module, no third-party package.
MODULES = (
    *("asyncio", "base64", "binascii", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal"),
    *("functools", "hashlib", "itertools", "json", "math", "os", "pathlib", "random", "re", "sys", "time", "typing"),
    "unicodedata",
)
# Signs that a program is JavaScript: its structure (any error), or a JavaScript name Python does not define.
_JAVASCRIPT = re.compile(
    r"^\s*(?:const|let|var)\s+[\w${\[]|=>|\bfunction\b\s*[\w$]*\s*\(|[!=]==|^\s*\}",
    re.MULTILINE,
)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'")
_JAVASCRIPT_NAMES = frozenset({"console", "null", "undefined", "true", "false", "JSON", "Math", "Promise", "require"})


def _looks_like_javascript(message: str, code: str) -> bool:
    first = message.splitlines()[0] if message else ""
    if "SyntaxError" in message:
        return _JAVASCRIPT.search(code) is not None
    missing = re.match(r"NameError: name '(\w+)' is not defined", first)
    # For a name error, what string literals say is no sign: the program parsed as Python.
    unquoted = _STRINGS.sub('""', code)
    return missing is not None and (missing.group(1) in _JAVASCRIPT_NAMES or _JAVASCRIPT.search(unquoted) is not None)


def python_hint(message: str, code: str, names: Sequence[str]) -> str | None:
    """One line of advice for a mistake the Python sandbox sees often, in terms of what it offers.

    `names` are the namespaces the program can call (connectors, then `codemode`)."""
    ns = names[0] if names else "codemode"
    if _looks_like_javascript(message, code):
        return (
            f"this sandbox runs Python, not JavaScript: write `x = await {ns}.method(...)`, `print(...)`, "
            "`None`/`True`/`False`, and `import asyncio` then `asyncio.gather(...)` for concurrent calls"
        )
    missing = re.match(r"NameError: name '(\w+)' is not defined", message)
    if missing and missing.group(1) in MODULES:
        module = missing.group(1)
        return f"modules are not preloaded: `import {module}` first; the only globals are {', '.join(names)}"
    if "'coroutine'" in message:
        return "connector and codemode methods are async: `await` each call before using its result, e.g. " + _awaited(
            message, code, [*names, "asyncio"], ns
        )
    first = message.splitlines()[0] if message else ""
    if first.startswith("ModuleNotFoundError"):
        return (
            f"the sandbox's only modules are {', '.join(MODULES)}; there are no third-party packages, and "
            "files, network and environment are reached only through connector methods"
        )
    if first.startswith("PermissionError: Permission denied: '/") or "is not supported in this environment" in first:
        return (
            "the sandbox has no file system, environment or network: keep data in variables and read or write "
            "it through connector methods, found with `codemode.search(...)`"
        )
    return None


def _awaited(message: str, code: str, names: Sequence[str], ns: str) -> str:
    """The program's own call without `await`, written with it: an `x = ns.method(` assignment, else a
    call on the failing line, else a generic example."""
    spaces = "|".join(re.escape(n) for n in names)
    line = re.search(r"\n  at line \d+: (.*)", message)
    for assigned in re.finditer(rf"^\s*([A-Za-z_]\w*)\s*=\s*((?:{spaces})\.\w+)\s*\(", code, re.MULTILINE):
        name, call = assigned.groups()
        if line is None or re.search(rf"(?<![\w.]){re.escape(name)}\b", line.group(1)):  # the failing line uses it
            return f"`{name} = await {call}(...)`"
    called = re.search(rf"(?<![\w.])((?:{spaces})\.\w+)\s*\(", line.group(1)) if line else None
    if called and not re.search(rf"\bawait\s+{re.escape(called.group(1))}", line.group(1) if line else ""):
        return f"`await {called.group(1)}(...)`"
    return f"`x = await {ns}.method(...)`"


def _strip_traceback_header(text: str) -> str:
    return text.removeprefix("Traceback (most recent call last):\n").strip()


class _Console:
    """`print` output, bounded; stderr lines are prefixed `[error] `."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []
        self.size = 0
        self.dropped = 0  # characters not kept

    def write(self, stream: Literal["stdout", "stderr"], text: str) -> None:
        if self.dropped or self.size + len(text) > MAX_CONSOLE_CHARS:
            self.dropped += len(text)
            return
        self.size += len(text)
        self.parts.append((stream, text))

    def lines(self) -> list[str]:
        out: list[str] = []
        for stream, chunk in _join_streams(self.parts):
            prefix = "[error] " if stream == "stderr" else ""
            out.extend(prefix + line for line in chunk.split("\n"))
        if self.dropped:
            out.append(
                f"[codemode: console output beyond {MAX_CONSOLE_CHARS:,} characters was dropped "
                f"({self.dropped:,} more characters)]"
            )
        return out


def _join_streams(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Merge consecutive chunks of one stream, then drop the final newline of each."""
    merged: list[tuple[str, str]] = []
    for stream, text in parts:
        if merged and merged[-1][0] == stream and not merged[-1][1].endswith("\n"):
            merged[-1] = (stream, merged[-1][1] + text)
        else:
            merged.append((stream, text))
    return [(s, t[:-1] if t.endswith("\n") else t) for s, t in merged]
