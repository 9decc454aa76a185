"""`MontyExecutor`: Python programs in Monty worker processes.

The program runs in a `pydantic-monty` worker: a separate process with no
filesystem, environment, network or subprocess surface. Connector namespaces
enter as `ClassInstance` objects whose method calls suspend the worker. A
driver thread per running program answers each suspension with Monty's
synchronous API (`feed_start` / `resume`, which release the GIL while the
worker runs), so it sees every call in program order: a connector call is
started on the event loop at once and the worker resumed with a future
without waiting for the loop; the thread blocks only where the program
awaits a result. It can stop the program at any point by simply not
resuming it. `codemode` is defined by a short prelude fed first, so that
`codemode.step` can call the program's own function inside the sandbox.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pydantic_monty as monty

from codemode.sandbox import monty_checkpoint
from codemode.sandbox.base import (
    Checkpoint,
    ExecuteResult,
    Host,
    Namespace,
)
from codemode.sandbox.monty_hints import MODULES, python_hint
from codemode.sandbox.monty_run import MontyRun
from codemode.sandbox.normalize import normalize_python
from codemode.sandbox.places import CURRENT, MAX_NESTING, NESTED_TOO_DEEP, Places, holder_for

__all__ = ["MODULES", "MontyExecutor", "python_hint"]


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
        # it belongs to no loop, since the driver threads use it.
        self._monty: monty.Monty | None = None
        self._lock = threading.Lock()
        # Runs take a place before a worker: snippets run by programs cannot deadlock the cap (see
        # `places`); the pool itself may go beyond it by the nesting bound, so it never blocks them.
        self._places: Places = Places(max_workers)

    def normalize(self, code: str) -> str:
        return normalize_python(code)

    def _pool(self) -> monty.Monty:
        """The worker pool, started by the first run that needs it (in its driver thread)."""
        with self._lock:
            if self._monty is None:
                pool = monty.Monty(min_processes=self.warm_workers, max_processes=self.max_workers + MAX_NESTING)
                pool.__enter__()
                self._monty = pool
            return self._monty

    def _is_open(self, pool: monty.Monty) -> bool:
        """Whether `pool` is still this executor's (not closed by `aclose()` since it was taken)."""
        with self._lock:
            return self._monty is pool

    async def aclose(self) -> None:
        """Stop the workers, from any event loop; the next run starts a new pool."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:
            pool, self._monty = self._monty, None
        if pool is not None:
            pool.__exit__(None, None, None)

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
        result = await self._leased(namespaces, host, lambda run: run.drive(lambda s: run.started(s, code, input)))
        assert result is not None
        return result

    async def resume(self, checkpoint: Checkpoint, namespaces: Sequence[Namespace], host: Host) -> ExecuteResult | None:
        """Go on from a paused program's checkpoint; None when it does not restore (replay instead)."""
        return await self._leased(namespaces, host, lambda run: run.drive_from(checkpoint))

    async def _leased(
        self, namespaces: Sequence[Namespace], host: Host, drive: Callable[[MontyRun], Any]
    ) -> ExecuteResult | None:
        holder = holder_for(self)
        if holder.depth > MAX_NESTING:
            return ExecuteResult(error=NESTED_TOO_DEEP)
        self._places.nesting(holder)
        token = CURRENT.set(holder)  # the calls of this run (its snippets among them) see it as their parent
        try:
            await self._places.lease(holder)
            try:
                result: ExecuteResult | None = await drive(MontyRun(self, namespaces, host))
                return result
            finally:
                self._places.unlease(holder, final=True, free=True)
        finally:
            CURRENT.reset(token)
            self._places.unlease(holder, final=True)
