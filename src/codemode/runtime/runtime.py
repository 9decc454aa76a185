"""`Runtime`: connectors + a sandbox + a durable store, and everything you do with runs.

Every method is async; `runtime.sync` is the blocking twin for scripts.
Errors meant for the model come back as `Outcome`s; only misuse by the host
application raises. The audit trail (`audit.py`) and the snippets and
discovery (`catalog.py`) are mixed in.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, cast

from codemode import codec
from codemode.connectors.base import Connector
from codemode.errors import ExecutionNotFoundError
from codemode.records import (
    DEFAULT_MAX_EXECUTIONS,
    DEFAULT_PAUSED_TTL,
    MAX_DURABLE_VALUE_BYTES,
    Execution,
    LogEntry,
    Outcome,
    PendingAction,
    RollbackReport,
)
from codemode.runtime import checkpoint, resumption
from codemode.runtime.audit import AuditTrail
from codemode.runtime.catalog import Catalog
from codemode.runtime.conclusion import conclude, current_outcome
from codemode.runtime.decisions import (
    check_key_and_metadata,
    check_seq,
    refused,
)
from codemode.runtime.heartbeat import Heartbeats
from codemode.runtime.hooks import fan_out, notify_pause, transformed
from codemode.runtime.passes import Pass
from codemode.runtime.rollback import roll_back
from codemode.runtime.setup import Setup, Setups, check_connector_names
from codemode.sandbox.base import Executor
from codemode.store.base import Store
from codemode.text import storable_text

if TYPE_CHECKING:
    from codemode.runtime.sync import SyncRuntime
    from codemode.runtime.tool import CodeTool

__all__ = ["Runtime"]

log = logging.getLogger("codemode")
_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

# How long a run waits for connectors that were unavailable to be described again before it goes on
# without them (the attempt goes on, for the next run).
UNAVAILABLE_RETRY_WAIT = 5.0
# How many heartbeat intervals a run must go without one before another host may take it over
# (recover, rollback, expire): a heartbeat late by less than an interval never makes a live pass look dead.
STALE_HEARTBEATS = 2

TransformResult = Callable[[Any], Any]
OnPause = Callable[[list[PendingAction]], Any]


F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def _counted(method: F) -> F:
    """Counts the operations in flight, so `aclose` can wait for them instead of pulling the store away."""

    @functools.wraps(method)
    async def wrapper(self: Runtime, *args: Any, **kwargs: Any) -> Any:
        self._active += 1
        try:
            return await method(self, *args, **kwargs)
        finally:
            self._active -= 1

    return cast(F, wrapper)


class Runtime(AuditTrail, Catalog):
    """A durable code-mode runtime. Construct once; use from many tasks (and processes sharing the store).

    Without `executor`, programs run in a `MontyExecutor()` (Python). Without `store`, the runtime uses
    `SqliteStore("codemode.db")`: a file `codemode.db` (plus its `-wal`/`-shm` files) in the current
    working directory, created by the first operation and kept across restarts. Pass a store with an
    explicit path, or `SqliteStore(":memory:")` for a throwaway one.
    """

    def __init__(
        self,
        connectors: Sequence[Connector],
        executor: Executor | None = None,
        store: Store | None = None,
        *,
        name: str = "default",
        max_executions: int = DEFAULT_MAX_EXECUTIONS,
        transform_result: TransformResult | None = None,
        heartbeat_interval: float = 10.0,
        on_pause: OnPause | None = None,
    ) -> None:
        check_connector_names(connectors)
        if not _RUNTIME_NAME.match(name):
            raise ValueError(f'Invalid codemode runtime name "{name}": use letters, digits, "_", "." or "-".')
        if executor is None:
            from codemode.sandbox.monty import MontyExecutor

            executor = MontyExecutor()
        if store is None:
            from codemode.store.sqlite import SqliteStore

            store = SqliteStore("codemode.db")
        self.connectors = list(connectors)
        self.executor = executor
        self.store = store
        self.name = name
        self.max_executions = max_executions
        self.transform_result = transform_result
        self.heartbeat_interval = heartbeat_interval
        self.on_pause = on_pause
        self._heartbeats = Heartbeats(store, name, heartbeat_interval)
        self._active = 0  # operations that may run a pass or a rollback, on any event loop
        self._setups = Setups(self.connectors)
        self._sync: SyncRuntime | None = None

    # -- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.store.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release sandboxes, connector connections and the store's connections.

        Passes and rollbacks still running are waited for first (a pass is bounded by the sandbox's
        time limit), so none is left running unfenced while another host takes its run over."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._pass_bound()
        while self._active and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await self.executor.aclose()
        results = await asyncio.gather(*(c.aclose() for c in self.connectors), return_exceptions=True)
        for connector, result in zip(self.connectors, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("codemode: closing connector %r failed: %s", connector.name, result)
        # The store first: its connections opened from the heartbeat thread are closed on that thread's
        # loop, which must still be running (no pass is left to beat for).
        await self.store.close()
        self._heartbeats.close()

    @property
    def sync(self) -> SyncRuntime:
        """The blocking twin of every method, for scripts and CLIs."""
        if self._sync is None:
            from codemode.runtime.sync import SyncRuntime

            self._sync = SyncRuntime(self)
        return self._sync

    def tool(self, description: str | None = None, connector_hints: dict[str, str] | None = None) -> CodeTool:
        """The one model-facing tool, `codemode(code)`."""
        from codemode.runtime.tool import CodeTool

        return CodeTool(self, description=description, connector_hints=connector_hints)

    async def setup(self) -> Setup:
        """Describe every connector, each on its own: memoized once all are described.

        A connector whose service is down (`ConnectorUnavailableError`) does not stop the others: it is
        named in `Setup.unavailable`, and each later call describes it again, sharing one attempt and
        waiting for it at most `UNAVAILABLE_RETRY_WAIT` seconds (a server that hangs must not delay
        every run by its connect timeout; an attempt that ends later serves the next call). A mistake in
        a connector itself raises."""
        return await self._setups.get(UNAVAILABLE_RETRY_WAIT)

    # -- running ------------------------------------------------------------

    @_counted
    async def execute(self, code: str, *, key: str | None = None, metadata: Mapping[str, str] | None = None) -> Outcome:
        """Run a program: completed, paused for approval, or error.

        With a `key` already used on this runtime, nothing new starts: the outcome is that run's
        current one (frameworks that re-run a tool call on resume pass their tool-call id)."""
        if not isinstance(code, str):
            return Outcome(status="error", execution_id="", error="code must be a string of Python source.")
        code = storable_text(code)  # no lone surrogate (not UTF-8) or NUL (not PostgreSQL text): U+FFFD
        size = len(code.encode("utf-8"))
        if size > MAX_DURABLE_VALUE_BYTES:
            return Outcome(status="error", execution_id="", error=codec.too_large_message("The execution code", size))
        check_key_and_metadata(key, metadata)
        setup = await self.setup()
        begun = await self.store.begin(
            self.name, code, [c.name for c in self.connectors], self.max_executions, key=key, metadata=metadata
        )
        if begun.pruned:
            return refused(
                begun.execution_id,
                f'The key "{key}" belongs to execution "{begun.execution_id}", which ended and was pruned from the '
                "history, so its outcome is no longer known; nothing ran. Use a new key to run the program again.",
            )
        if begun.existing is not None:
            if begun.existing.code != code:
                return refused(
                    begun.execution_id,
                    f'The key "{key}" already belongs to execution "{begun.execution_id}", which runs a different '
                    "program; use a new key for a new program.",
                )
            return await self._current_outcome(begun.existing)
        return await self._run_pass(begun.execution_id, code, setup, begun.attempt)

    async def _current_outcome(self, execution: Execution) -> Outcome:
        return await current_outcome(self, execution)

    @_counted
    async def approve(
        self,
        execution_id: str,
        seq: int,
        *,
        by: str | None = None,
        reason: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Outcome:
        """Approve exactly the pending action `seq` that a human saw; with `args`, run it with edited
        arguments instead (validated; the program's own stay the replay key).

        When it was the last undecided action, the run resumes (from its checkpoint when it has one
        that matches, else by replay) and runs it once. A `seq` that is not pending (decided already,
        another action pending now, run not paused) changes nothing: the outcome is an error naming it
        and what is pending now."""
        check_seq(seq)
        return await resumption.approve(self, execution_id, seq, by, reason, args)

    @_counted
    async def reject(
        self,
        execution_id: str,
        seq: int,
        *,
        by: str | None = None,
        reason: str | None = None,
        resume: bool = False,
    ) -> bool:
        """Reject the pending action `seq`; False when it was not pending (stale, raced, or no such run).

        `resume=False` ends the run `rejected`. `resume=True` lets the program go on: the call raises
        `PermissionError` inside it, catchable, and the same on every replay; once nothing is left
        undecided the run resumes here (see `execution(execution_id)` for where it got to)."""
        check_seq(seq)
        return await resumption.reject(self, execution_id, seq, by, reason, resume)

    @_counted
    async def recover(self, execution_id: str, *, stale_after: timedelta = timedelta(minutes=1)) -> Outcome:
        """Resume a run whose host died mid-pass (still `running`, no heartbeat for `stale_after`).

        The log is replayed; a call that was `executing` when the host died runs again, with the same
        idempotency key, so a connector call is never lost. Exactly one caller wins the takeover, and
        the pass it took the run from (if still alive) writes nothing more."""
        self._check_stale_after(stale_after)
        return await resumption.recover(self, execution_id, stale_after)

    def _pass_bound(self) -> float:
        """How long a pass can run: the sandbox's time limit plus time for its calls to record."""
        return float(getattr(self.executor, "timeout", 60.0)) + 15.0

    def _long_silence(self, age: timedelta) -> bool:
        """Whether a run without a heartbeat for `age` is surely dead: at least a second, and at least
        `STALE_HEARTBEATS` heartbeat intervals, so a live pass whose heartbeat is late (a busy database, a
        loaded host) is not taken for dead."""
        return age >= timedelta(seconds=1) and age.total_seconds() >= STALE_HEARTBEATS * self.heartbeat_interval

    def _check_stale_after(self, stale_after: timedelta) -> None:
        if not self._long_silence(stale_after):
            raise ValueError(
                f"stale_after must be at least 1 second and {STALE_HEARTBEATS} heartbeat intervals "
                f"({STALE_HEARTBEATS * self.heartbeat_interval:g} s), or a live pass whose heartbeat is late "
                "could be taken over."
            )

    async def _run_pass(
        self,
        execution_id: str,
        code: str,
        setup: Setup,
        attempt: int,
        recorded: Sequence[LogEntry] = (),
        *,
        resume: bool = False,
    ) -> Outcome:
        """One pass; with `resume`, from the run's checkpoint when it has one that matches, else by replay.
        A resume takes over a settlement's claim, whose `recorded` holds only the open entries: a
        replay then reads the whole log first."""
        ended = False
        beat = self._heartbeats.start(execution_id, attempt)

        async def end(status: str) -> None:
            nonlocal ended
            ended = True
            await self._hooks("on_pass_end", execution_id, status)
            if status != "paused":
                await self._hooks("dispose_execution", execution_id, status)

        try:
            normalized = self.executor.normalize(code)

            def new_host(log: Sequence[LogEntry]) -> Pass:
                return Pass(self, setup, execution_id, attempt, log, beat.is_lost)

            replay_log = (lambda: self.store.get_log(self.name, execution_id)) if resume else None
            host, result, stored = await checkpoint.run_program(self, new_host, recorded, replay_log, normalized)
            outcome = await conclude(self, host, result, normalized, code, stored)
            if host.lost or host.store_error:
                # The run did not end here: it belongs to another pass, or waits for `recover`.
                ended = True
                await self._hooks("on_pass_end", execution_id, "error")
            else:
                await end(outcome.status)
            if outcome.status == "paused":
                await self._notify_pause(outcome.pending)
            return outcome
        finally:
            self._heartbeats.stop(beat)
            if not ended:
                await self._hooks("on_pass_end", execution_id, "error")
                await self._hooks("dispose_execution", execution_id, "error")

    async def _notify_pause(self, pending: list[PendingAction]) -> None:
        await notify_pause(self.on_pause, pending)

    async def transform(self, result: Any) -> Any:
        """`transform_result` applied to a completed run's result (the raw result if it raises)."""
        return await transformed(self.transform_result, result)

    async def _hooks(self, hook: str, execution_id: str, status: str) -> None:
        await fan_out(self.connectors, hook, execution_id, status)

    # -- approvals and undo ---------------------------------------------------

    async def pending(self, execution_id: str | None = None) -> list[PendingAction]:
        """Actions awaiting a human: of one run (`ExecutionNotFoundError` when there is no such run), or of
        every paused run (newest first)."""
        pending = await self.store.list_pending(self.name, execution_id)
        # Only a run with nothing pending needs reading, to tell "none" from "no such run".
        if (
            not pending
            and execution_id is not None
            and not await self.store.get_open_execution(self.name, execution_id)
        ):
            raise ExecutionNotFoundError(execution_id, self.name, "list the pending actions of")
        return pending

    @_counted
    async def rollback(
        self,
        execution_id: str,
        *,
        by: str | None = None,
        stale_after: timedelta = timedelta(minutes=1),
        retry_interrupted: bool = False,
    ) -> RollbackReport:
        """Revert every applied action that has a revert, newest first, and end the run `rolled_back`.

        The run is claimed first (`rolling_back`), so a second rollback, an approval or a recovery
        cannot interleave; each revert is logged before and after it runs, so none ever runs twice. A
        rollback whose host died can be retried after `stale_after`. Actions without a revert are
        reported `irreversible`; failed reverts (and those of connectors this runtime lacks) are
        reported `failed` and raised as `RollbackError` after every revert was tried; rolling back
        again retries just those. A revert a crash interrupted may or may not have run: it is reported
        until a human who checked the effect passes `retry_interrupted=True` (it then runs again,
        with the same idempotency key)."""
        self._check_stale_after(stale_after)
        return await roll_back(self, execution_id, by, stale_after, retry_interrupted)

    async def expire_paused(self, max_age: timedelta = DEFAULT_PAUSED_TTL) -> list[str]:
        """Expire runs paused (or stuck running) longer than `max_age`; returns their ids.

        Running runs are expired only when `max_age` is at least a second and `STALE_HEARTBEATS`
        heartbeat intervals: a live pass heartbeats, so it is never taken for stuck."""
        running = self._long_silence(max_age)
        expired = await self.store.expire(self.name, max_age, running=running)
        for execution_id in expired:
            await self._hooks("dispose_execution", execution_id, "rejected")
        return expired
