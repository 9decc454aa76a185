"""One Monty program driven to its end: the driver thread that answers the worker's suspensions, and
the host calls it starts on the event loop (`MontyExecutor` leases a worker for each run)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, cast

import pydantic_monty as monty

from codemode import codec
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
from codemode.sandbox.console import Console
from codemode.sandbox.drivers import Drivers, inbox
from codemode.sandbox.monty_hints import describe_error, syntax_error
from codemode.sandbox.monty_prelude import with_prelude
from codemode.sandbox.monty_values import HostValues, call_args
from codemode.sandbox.settling import settle
from codemode.text import valid_text, valid_texts

if TYPE_CHECKING:
    from codemode.sandbox.monty import MontyExecutor

__all__ = ["MontyRun"]

_SLEEPS = frozenset({"system.sleep", "system.async_sleep", "time.sleep", "asyncio.sleep"})
_ASYNC_SLEEPS = frozenset({"system.async_sleep", "asyncio.sleep"})
_STOP = -1  # put in a run's queue of settled calls: the run is over (time limit, cancellation)


class _Unrestorable(Exception):
    """A checkpoint that does not restore to what it says: nothing was re-issued; the caller replays."""


class _Ended(Exception):
    """The driver stops here: the host stopped the program, or the run is over."""

    def __init__(self, result: ExecuteResult) -> None:
        super().__init__()
        self.result = result


class MontyRun:
    """One program in one checked-out worker, driven from a thread; its host calls run on the loop.

    Loop side: `drive`, `_launch`, `_answered`, `_stop` (also from the thread). Thread side: the rest."""

    def __init__(self, executor: MontyExecutor, namespaces: Sequence[Namespace], host: Host) -> None:
        self.executor = executor
        self.host = host
        self.console = Console()
        self.loop = asyncio.get_running_loop()
        self.inbox = inbox(self.loop)
        self.context = contextvars.copy_context()  # host calls run as if started by `execute` (its CURRENT)
        self.namespaces = namespaces
        self.tasks: dict[int, asyncio.Task[Any]] = {}  # loop side: host calls in flight
        # Each settled call's answer (None: the host stopped the program), or `_STOP`.
        self.settled: queue.SimpleQueue[tuple[int, monty.ExternalSettledResult | None]] = queue.SimpleQueue()
        # Thread side: answers not yet given to the program.
        self.results: dict[int, monty.ExternalSettledResult | None] = {}
        self.sleeps: dict[int, float] = {}  # thread side: `asyncio.sleep` futures, by when they are due
        self.lock = threading.Lock()
        self.pid: int | None = None
        self.stopping = False
        self.timed_out = False
        self.deadline = 0.0  # time.monotonic(), for the thread
        # Under a host that checkpoints: each call launched and not yet given to the program, as a
        # checkpoint would re-issue it (its namespace, method, arguments, the seq it took, its task).
        self.checkpoints = monty_checkpoint.checkpointing(host) if executor.checkpoints else None
        self.calls: dict[int, tuple[str, str, Any, CallSeq, asyncio.Task[Any]]] = {}

    def _namespaces(self, namespaces: Sequence[Namespace]) -> None:
        """The sandbox objects the program calls: one `ClassInstance` per namespace, plus the platform's."""
        self.platform = monty.ClassInstance(_host_class("codemode_host")(), allowed_methods=PLATFORM_METHODS)
        self.objects: dict[Any, str] = {self.platform.id: "codemode"}
        self.inputs: dict[str, Any] = {}
        self.namespace_values: dict[int, str] = {id(self.platform.value): "codemode"}
        for ns in namespaces:
            instance = monty.ClassInstance(_host_class(ns.name)(), allowed_methods=sorted(ns.methods))
            self.objects[instance.id] = ns.name
            self.inputs[ns.name] = instance
            self.namespace_values[id(instance.value)] = ns.name

    def _globals(self, input: Any) -> dict[str, Any]:
        """What the prelude and the program start with: the platform object, the namespaces and `input`."""
        return {"codemode": self.platform, **self.inputs, "input": valid_texts(input)}

    # -- loop side --

    async def drive(self, first: Callable[[monty.MontySession], monty.SyncSnapshot]) -> ExecuteResult:
        """The program driven to its end; `first` starts it in a checked-out session (in the thread)."""
        deadline = self.loop.time() + self.executor.timeout
        self.deadline = time.monotonic() + self.executor.timeout
        done: asyncio.Future[ExecuteResult] = self.loop.create_future()
        _DRIVERS.submit(lambda: self._thread(first, done))
        timer = self.loop.call_at(deadline, self._stop, True)  # the wall-clock limit covers host calls too
        cancelled = False
        try:
            return await asyncio.shield(done)  # shielded: a cancelled run still waits for its thread
        except asyncio.CancelledError:
            cancelled = True
            self._stop(False)
            with contextlib.suppress(BaseException):
                await done
            raise
        finally:
            timer.cancel()
            calls = list(self.tasks.values())
            self.tasks.clear()
            await settle(calls, deadline, hurry=cancelled)  # a cancelled run waits on no call

    async def drive_from(self, checkpoint: Checkpoint) -> ExecuteResult | None:
        """The program restored from `checkpoint` and driven on (the time limit starts again); None when
        it does not restore."""
        try:
            return await self.drive(lambda session: self._restored(session, checkpoint))
        except _Unrestorable:
            return None

    def _launch(
        self, call_id: int, namespace: str, method: str, args: dict[str, Any], reissued: int | None = None
    ) -> None:
        """Start a host call, in program order; the program awaits it whenever it likes. `reissued`: the
        seq a call in flight at a checkpoint took, made again under it."""
        if reissued is not None and self.checkpoints is not None:
            host_call = self.checkpoints.reissue(reissued, namespace, method, args)
        else:
            host_call = self.host.call(namespace, method, args)
        task = monty_checkpoint.start_call(self, call_id, self._answered(call_id, host_call), (namespace, method, args))
        self.tasks[call_id] = task

    async def _answered(self, call_id: int, host_call: Coroutine[Any, Any, Any]) -> None:
        """The host call, its answer handed to the thread the moment it is known (not by a done callback,
        which would cost the loop another round per call)."""
        answer: monty.ExternalSettledResult | None
        try:
            result = await host_call
        except StopExecution:
            answer = None
        except ToolError as exc:
            answer = {"exc_type": cast(monty.ExcType, exc.kind), "message": valid_text(exc.message)}
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            message = "the call was cancelled" if cancelled else f"{type(exc).__name__}: {exc}"
            self._answer_with(call_id, {"exc_type": "RuntimeError", "message": message})
            if cancelled or not isinstance(exc, Exception):
                raise
            return
        else:
            # Monty strings cannot hold lone surrogates (None, what most tools return, holds no string).
            answer = {"return_value": None if result is None else valid_texts(result)}
        self._answer_with(call_id, answer)

    def _answer_with(self, call_id: int, answer: monty.ExternalSettledResult | None) -> None:
        self.tasks.pop(call_id, None)
        self.settled.put((call_id, answer))

    def _stop(self, timed_out: bool) -> None:
        """The run is over (from either side): the worker is killed (the pool replaces it), the thread woken.

        The kill happens under the lock that the thread takes to forget the worker before handing it back
        to the pool, so a late stop (the time limit firing just as the program ended) never kills a worker
        that another run may already be using."""
        with self.lock:
            self.timed_out = self.timed_out or timed_out
            self.stopping = True
            if self.pid:
                with contextlib.suppress(OSError):
                    os.kill(self.pid, getattr(signal, "SIGKILL", signal.SIGTERM))
        self.settled.put((_STOP, None))

    # -- thread side --

    def _thread(
        self, first: Callable[[monty.MontySession], monty.SyncSnapshot], done: asyncio.Future[ExecuteResult]
    ) -> None:
        try:
            result: ExecuteResult | BaseException = self._run(first)
        except BaseException as exc:  # handed to the awaiting run, which raises it
            result = exc
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            self.loop.call_soon_threadsafe(_resolve, done, result)

    def _run(self, first: Callable[[monty.MontySession], monty.SyncSnapshot]) -> ExecuteResult:
        self._namespaces(self.namespaces)
        with contextlib.ExitStack() as stack:
            session = self._checkout(stack)
            stack.callback(self._forget_worker)  # before the session's exit hands the worker back
            with self.lock:
                if self.stopping:
                    return self._timeout_result() if self.timed_out else ExecuteResult(stopped=True)
                self.pid = session.worker_pid
            return self._program(session, first)

    def _checkout(self, stack: contextlib.ExitStack[Any]) -> monty.MontySession:
        """A worker for this run, from a new pool if `aclose()` closed the pool between taking it and
        checking out of it."""

        def checkout(pool: monty.Monty) -> monty.MontySession:
            return stack.enter_context(pool.checkout(limits=self.executor._limits(), script_name="program.py"))

        pool = self.executor._pool()
        try:
            return checkout(pool)
        except RuntimeError:
            if self.executor._is_open(pool):
                raise
        return checkout(self.executor._pool())

    def _forget_worker(self) -> None:
        with self.lock:
            self.pid = None

    def _timeout_result(self) -> ExecuteResult:
        return ExecuteResult(
            error=f"Execution timed out: the program ran longer than the {self.executor.timeout:g} s limit.",
            logs=self.console.lines(),
            timed_out=True,
        )

    def started(self, session: monty.MontySession, code: str, input: Any) -> monty.SyncSnapshot:
        """The prelude and the program, started in one feed."""
        return session.feed_start(with_prelude(code), inputs=self._globals(input), print_callback=self.console.write)

    def _restored(self, session: monty.MontySession, checkpoint: Checkpoint) -> monty.SyncSnapshot:
        """The program as `checkpoint` left it, its calls in flight re-issued."""
        restored = monty_checkpoint.restore(self, session, checkpoint)
        if restored is None:
            raise _Unrestorable()
        for call in checkpoint.calls:
            self._start(call.call_id, call.namespace, call.method, call.args, call.seq)
        return restored

    def _program(
        self, session: monty.MontySession, first: Callable[[monty.MontySession], monty.SyncSnapshot]
    ) -> ExecuteResult:
        try:
            snap = first(session)
            while not isinstance(snap, monty.MontyComplete):
                snap = self._answer(snap)
            try:  # the runtime's codec then bounds the result's expansion, without making it
                result = self._host_value(snap.output)
            except (TypeError, ValueError, RecursionError) as exc:
                return ExecuteResult(error=codec.refusal("The result", exc), logs=self.console.lines())
            return ExecuteResult(result=result, logs=self.console.lines())
        except _Ended as end:
            return end.result
        except monty.MontyCrashedError as exc:
            if self.timed_out or exc.timed_out:
                return self._timeout_result()
            return ExecuteResult(
                error=f"The sandbox worker crashed ({exc}). The program likely exhausted a resource; simplify it.",
                logs=self.console.lines(),
            )
        except monty.MontySyntaxError as exc:
            return ExecuteResult(error=syntax_error(exc), logs=self.console.lines())
        except monty.MontyRuntimeError as exc:
            if self.timed_out:
                return self._timeout_result()
            message = describe_error(exc, self.executor.timeout, self.executor.memory_limit)
            return ExecuteResult(error=message, logs=self.console.lines())
        except monty.MontyError as exc:
            return ExecuteResult(error=f"{type(exc).__name__}: {exc}", logs=self.console.lines())

    def _answer(
        self, snap: monty.FunctionSnapshot | monty.FutureSnapshot | monty.NameLookupSnapshot
    ) -> monty.SyncSnapshot:
        """One suspension answered: a call started, awaited futures settled, or an undefined name."""
        if isinstance(snap, monty.FunctionSnapshot):
            return self._call(snap)
        if isinstance(snap, monty.FutureSnapshot):
            return snap.resume(self._awaited(snap))
        return snap.resume()  # a name the program never defined

    def _host_value(self, value: Any) -> Any:
        """Sandbox-only objects become plain data; a namespace object never leaks out as itself.

        Raises `TypeError` for a value nested deeper than `MAX_VALUE_DEPTH` or containing itself, and
        `codec.TooLargeError` past `MAX_VALUE_NODES` values."""
        return HostValues(self.namespace_values, self.objects).convert(value, 0)

    def _call(self, snap: monty.FunctionSnapshot) -> monty.SyncSnapshot:
        if snap.is_os_function:
            if snap.function_name in _SLEEPS:
                return self._sleep(snap)
            return snap.resume_not_handled()  # Monty's own refusal: no files, no environment
        namespace = self.objects.get(snap.object_id)
        if namespace is None:
            return snap.resume({"exc_type": "NameError", "message": f"name {snap.function_name!r} is not defined"})
        try:
            args = call_args(namespace, snap.function_name, snap.args, snap.kwargs)
        except TypeError as exc:
            return snap.resume({"exc_type": "TypeError", "message": str(exc)})
        # What cannot cross at all is refused here, catchable, before it is validated or logged.
        if not codec.is_plain_dict(args):
            step_value = namespace == "codemode" and snap.function_name == "step_record"
            what = "The value of codemode.step" if step_value else f"Arguments to {namespace}.{snap.function_name}"
            try:
                args = self._host_value(args)
                codec.check(what, args)
            except (TypeError, ValueError, RecursionError) as exc:
                message = str(exc) if isinstance(exc, codec.DurableValueError) else codec.refusal(what, exc)
                return snap.resume({"exc_type": "TypeError", "message": message})
        self._start(snap.call_id, namespace, snap.function_name, args)
        return snap.resume({"future": ...})  # at once: the loop runs the call meanwhile

    def _start(
        self, call_id: int, namespace: str, method: str, args: dict[str, Any], reissued: int | None = None
    ) -> None:
        """Hand a host call to the loop, unless the run is over."""
        if self.stopping:
            raise _Ended(self._timeout_result() if self.timed_out else ExecuteResult(stopped=True))
        try:
            self.inbox.post(self.context, self._launch, call_id, namespace, method, args, reissued)
        except RuntimeError:  # the loop has closed under the run
            raise _Ended(ExecuteResult(logs=self.console.lines(), stopped=True)) from None

    def _sleep(self, snap: monty.FunctionSnapshot) -> monty.SyncSnapshot:
        """`time.sleep` / `asyncio.sleep` wait in the driver; the wall-clock limit still applies."""
        seconds = snap.args[0] if snap.args else snap.kwargs.get("seconds", 0)
        if not isinstance(seconds, (int, float)) or seconds < 0:
            return snap.resume({"exc_type": "ValueError", "message": "sleep length must be a non-negative number"})
        due = time.monotonic() + float(seconds)
        if snap.function_name in _ASYNC_SLEEPS:
            self.sleeps[snap.call_id] = due
            return snap.resume({"future": ...})
        while time.monotonic() < due:
            self._receive(due)
        return snap.resume({"return_value": None})

    def _awaited(self, snap: monty.FutureSnapshot) -> dict[int, monty.ExternalSettledResult]:
        """Blocks until one or more of the futures the program awaits settle; all settled ones go back.
        When the host stopped the program, its state now is what a resume can go on from."""
        pending = snap.pending_call_ids
        while True:
            now = time.monotonic()
            ready: dict[int, monty.ExternalSettledResult] = {}
            for call_id in pending:
                if call_id in self.results:
                    settled = self.results.pop(call_id)
                    if settled is None:
                        checkpoint = monty_checkpoint.take(self, snap)
                        raise _Ended(ExecuteResult(logs=self.console.lines(), stopped=True, checkpoint=checkpoint))
                    ready[call_id] = settled
                elif self.sleeps.get(call_id, now + 1) <= now:
                    del self.sleeps[call_id]
                    ready[call_id] = {"return_value": None}
            if ready:
                for call_id in ready:
                    self.calls.pop(call_id, None)
                return ready
            sleeps = self.sleeps
            self._receive(min((sleeps[c] for c in pending if c in sleeps), default=None) if sleeps else None)

    def _receive(self, until: float | None = None) -> None:
        """Waits until `until` (at most the deadline) for settled calls; keeps every one that arrives."""
        settled = self.settled
        try:
            remaining = (self.deadline if until is None else min(until, self.deadline)) - time.monotonic()
            item = settled.get(timeout=remaining)
        except queue.Empty:
            if time.monotonic() >= self.deadline:
                self._stop(True)
                raise _Ended(self._timeout_result()) from None
            return
        while True:
            call_id, answer = item
            if call_id == _STOP:
                raise _Ended(self._timeout_result() if self.timed_out else ExecuteResult(stopped=True))
            self.results[call_id] = answer
            if settled.empty():  # then take whatever else has settled, without waiting
                return
            item = settled.get_nowait()


@functools.lru_cache(maxsize=1024)
def _host_class(name: str) -> type:
    """The empty class of a namespace's host object (the sandbox shows its name), made once per name rather
    than once per run."""
    return type(name, (), {})


def _resolve(done: asyncio.Future[ExecuteResult], result: ExecuteResult | BaseException) -> None:
    if done.done():
        return
    if isinstance(result, BaseException):
        done.set_exception(result)
    else:
        done.set_result(result)


_DRIVERS = Drivers()  # shared by every executor and loop
