"""One execution pass: the host side of every call a program makes.

Used by `Runtime.execute` (first pass), `approve`/`reject` and `recover` (a
replay from the start). Each connector call is validated, given the next
sequence number by the host, and judged by the replay rule (`replay.py`):
served from the log, raised again, executed and recorded, or pended. Every
write carries the pass's attempt token, so a pass that lost its run writes
nothing more and stops at its next call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter

from codemode import codec, crashpoints
from codemode.codec import DurableValueError
from codemode.connectors.spec import ToolContext, ToolSpec, idempotency_key
from codemode.records import LogEntry
from codemode.replay import Call, Recorded, Verdict, judge
from codemode.runtime.answers import python_kind, recorded_answer, recorded_error
from codemode.runtime.platform import PlatformCalls
from codemode.runtime.resumable import Resumable
from codemode.runtime.setup import Setup
from codemode.sandbox.base import CALL_SEQ, PLATFORM, StopExecution, ToolError

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["Pass"]

log = logging.getLogger("codemode")


class Pass(PlatformCalls, Resumable):
    """The `Host` of one pass of one execution, owning the run under one attempt token."""

    def __init__(
        self,
        runtime: Runtime,
        setup: Setup,
        execution_id: str,
        attempt: int,
        recorded: Sequence[LogEntry] = (),
        is_lost: Callable[[], bool] = lambda: False,
    ) -> None:
        self.runtime = runtime
        self.setup = setup
        self.execution_id = execution_id
        self.attempt = attempt
        self._is_lost = is_lost
        self._seq = 0
        self._decide_lock = asyncio.Lock()
        self._open_steps: dict[str, tuple[int, str]] = {}  # step token -> (seq, name)
        # The log as it was when this pass took the run over: recorded facts (applied results and
        # errors) are final while the pass owns the run, so they are served from memory.
        self._recorded = {
            entry.seq: entry for entry in recorded if entry.state in ("applied", "error") and not entry.ephemeral
        }
        # Entries waiting for this pass to reach them: an approved (or undecided) action, or a call a
        # crash left unrecorded. A program that ends without reaching one has diverged.
        self.unreached = {entry.seq: entry for entry in recorded if entry.state in ("pending", "executing")}
        self.paused = False  # some call is pending a human: the pass ends paused
        self.failure: str | None = None  # the run failed at a call (divergence, unrecordable value)
        self.lost = False  # the run is no longer this pass's: write nothing more
        self.store_error: str | None = None  # the store failed under this pass
        self.ended = False  # the program is over: late calls are refused
        self.in_flight = 0  # connector calls started and not yet recorded
        self.checkpoints = False  # the executor may checkpoint a pause of this pass (set by the runtime)
        self.unrepeatable = False  # a value a checkpoint must not hold reached the program (a reexecute result)
        self._snippets = 0  # snippets (`codemode.run`) running
        self._reissued: int | None = None  # the seq the next call takes: a call re-issued from a checkpoint

    @property
    def stopped(self) -> bool:
        return self.ended or self.lost or self.failure is not None or self.store_error is not None

    async def _decide(self, call: Call) -> Verdict:
        """The replay rule, from memory for recorded facts, else from the store (one transaction)."""
        if self._is_lost() and not self.ended:
            self.lost = True  # the heartbeat found the run owned elsewhere
        if self.stopped:
            return Verdict("lost", call.seq)
        self.unreached.pop(call.seq, None)
        entry = self._recorded.pop(call.seq, None)
        if entry is not None:
            verdict = judge(call, _as_recorded(entry))
            if verdict.kind in ("replay", "raise"):
                return Verdict(verdict.kind, call.seq, entry.result)
        try:
            async with self._decide_lock:
                verdict = await self.runtime.store.decide(self.runtime.name, self.execution_id, self.attempt, call)
        except Exception as exc:
            self._store_failed(exc)
            return Verdict("lost", call.seq)
        if verdict.kind == "pause":
            self.paused = True
        elif verdict.kind == "fail":
            self.failure = verdict.message
        elif verdict.kind == "lost":
            self.lost = True
        return verdict

    def _store_failed(self, exc: BaseException) -> None:
        log.error("codemode: the store failed during execution %s: %r", self.execution_id, exc)
        self.store_error = f"{type(exc).__name__}: {exc}"

    async def _write(self, op: Awaitable[bool]) -> None:
        """One fenced write of this pass; a lost run or a failing store stops the program."""
        try:
            owned = await op
        except Exception as exc:
            self._store_failed(exc)
            raise StopExecution() from None
        if not owned:
            self.lost = True
            raise StopExecution()

    def _next_seq(self) -> int:
        seq = self._reissued
        if seq is None:
            seq = self._seq
            self._seq += 1
        else:
            self._reissued = None
        cell = CALL_SEQ.get()
        if cell is not None:  # the executor keeps which entry each call in flight is
            cell.seq = seq
        return seq

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
        if namespace == PLATFORM:
            return await self._platform(method, args)
        if namespace in self.setup.unavailable:
            return await self._unavailable(namespace, method, args)
        description = self.setup.descriptions.get(namespace)
        spec = description.tools.get(method) if description else None
        if description is None or spec is None:
            raise ToolError(
                f'{namespace} has no method "{method}". Use codemode.search("...") to find the right name.',
                "AttributeError",
            )
        self._validate(namespace, method, spec, args)
        if self._open_steps:
            self._refuse_inside_step(f"{namespace}.{method}")
        seq = self._next_seq()  # taken synchronously: program order, even under asyncio.gather
        call = _call(seq, namespace, method, args, spec.requires_approval, spec.replay == "reexecute")
        verdict = await self._decide(call)
        if verdict.kind != "execute":
            return recorded_answer(verdict)
        run_args = args if verdict.args_json is None else codec.loads(verdict.args_json)
        ctx = ToolContext(self.execution_id, seq, idempotency_key(self.execution_id, seq))
        store, runtime = self.runtime.store, self.runtime.name
        self.in_flight += 1
        try:
            result = await self.setup.connectors[namespace].execute_tool(method, run_args, ctx)
        except BaseException as exc:
            cancelled = _really_cancelled(exc)
            if not cancelled and not isinstance(exc, (Exception, asyncio.CancelledError)):
                raise  # KeyboardInterrupt, SystemExit: the host is going down; recovery re-runs the call
            log.info("codemode: %s.%s failed (execution %s): %r", namespace, method, self.execution_id, exc)
            message = str(exc) or type(exc).__name__
            if cancelled:
                message = (
                    f"{namespace}.{method} was cancelled while it ran (the program hit its time limit or the host "
                    "stopped the pass); whether it took effect is unknown, so it is not run again."
                )
            error = {"error": message, "kind": "TimeoutError" if cancelled else python_kind(exc)}
            crashpoints.reached("after:effect")
            try:
                failure = await self._record_failure(seq, error)
            finally:
                self.in_flight -= 1
            if cancelled:
                raise
            raise failure from None
        self.in_flight -= 1
        crashpoints.reached("after:effect")
        if call.ephemeral:
            self.unrepeatable = True  # its result is never stored: not in a checkpoint either
            await self._write(store.record_result(runtime, self.execution_id, self.attempt, seq, None))
            try:
                return codec.roundtrip(result)
            except (TypeError, ValueError) as exc:
                raise ToolError(
                    f"{namespace}.{method} returned a value that cannot cross into the sandbox: {exc}"
                ) from None
        adapter = self.setup.result_adapter(namespace, method, spec)
        return await self._record(seq, f"The result of {namespace}.{method}", result, adapter)

    async def _unavailable(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
        """A call on a connector that could not be set up: it takes its seq like any call, so the log
        stays in program order; a result recorded while the connector was up replays, and a new call
        is recorded as failed (a fact: every replay raises the same `OSError`, even once it is back)."""
        self._refuse_inside_step(f"{namespace}.{method}")
        seq = self._next_seq()
        verdict = await self._decide(_call(seq, namespace, method, args))
        if verdict.kind != "execute":
            return recorded_answer(verdict)
        message = f"{namespace}.{method} did not run. {self.setup.unavailable_message(namespace)}"
        raise await self._record_failure(seq, {"error": message, "kind": "OSError"})

    async def _record(self, seq: int, what: str, value: Any, adapter: TypeAdapter[Any] | None = None) -> Any:
        """Log a result, then hand the program exactly what a replay will return.

        A value the codec cannot hold is first converted to the tool's declared return type; one that
        still cannot be recorded fails the run, and the program is stopped."""
        text: str | None
        try:
            text = codec.to_stored(what, value)
        except DurableValueError as exc:
            text = _conformed(what, value, adapter)
            if text is None:
                await self._write(
                    self.runtime.store.fail_at(self.runtime.name, self.execution_id, self.attempt, seq, str(exc))
                )
                self.failure = str(exc)
                raise StopExecution() from None
        await self._write(
            self.runtime.store.record_result(self.runtime.name, self.execution_id, self.attempt, seq, text)
        )
        return codec.loads(text)

    async def _record_failure(self, seq: int, error: dict[str, str]) -> ToolError:
        """Log a failure as a fact; the exception the program gets, now and on every replay."""
        store = self.runtime.store
        await self._write(
            store.record_error(self.runtime.name, self.execution_id, self.attempt, seq, codec.dumps(error))
        )
        return recorded_error(error)

    def _refuse_inside_step(self, what: str) -> None:
        """A step's value is replayed without running its function, so what the function calls would
        shift every later sequence number: calls inside a step are refused.

        An executor that knows which calls a step's function makes (`scopes_steps`, as Deno does
        with async context) refuses exactly those itself; otherwise no call may start while a step
        is open."""
        if self._open_steps and not getattr(self.runtime.executor, "scopes_steps", False):
            names = ", ".join(f'"{name}"' for _, name in self._open_steps.values())
            raise ToolError(
                f"{what} cannot be called while codemode.step {names} is running: a step's function is skipped "
                "on replay, so it must not call tools or other steps. Call the tool outside the step and pass "
                "its result in, or make the call a step of its own after this one.",
                "RuntimeError",
            )

    def _validate(self, namespace: str, method: str, spec: ToolSpec, args: dict[str, Any]) -> None:
        """Bad arguments never reach the log: the program gets an error naming the field."""
        message = self.setup.invalid_arguments(namespace, method, spec, args)
        if message is not None:
            raise ToolError(message, "TypeError")


def _as_recorded(entry: LogEntry) -> Recorded:
    """A decoded entry as the replay rule sees stored ones (arguments in canonical form)."""
    args_json = None if entry.args is None else codec.canonical(entry.args)
    return Recorded(entry.connector, entry.method, args_json, None, entry.ephemeral, entry.state)


def _really_cancelled(exc: BaseException) -> bool:
    """A cancellation of this task (not a tool that merely raised CancelledError itself)."""
    if not isinstance(exc, asyncio.CancelledError):
        return False
    task = asyncio.current_task()
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    return True if cancelling is None else bool(cancelling())


def _call(
    seq: int, namespace: str, method: str, args: Any, requires_approval: bool = False, ephemeral: bool = False
) -> Call:
    """The call as the replay rule sees it: its arguments in canonical stored form, or why they cannot be."""
    try:
        args_json, args_error = codec.to_stored(f"Arguments to {namespace}.{method}", args, sort_keys=True), None
    except DurableValueError as exc:
        args_json, args_error = None, str(exc)
    return Call(seq, namespace, method, args_json, args_error, requires_approval, ephemeral)


def _conformed(what: str, value: Any, adapter: TypeAdapter[Any] | None) -> str | None:
    """`value` converted to the tool's declared return type and recorded, or None when that fails too."""
    if adapter is None:
        return None
    try:
        return codec.to_stored(what, adapter.dump_python(adapter.validate_python(value), mode="json"))
    except Exception:
        return None
