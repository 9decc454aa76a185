"""`SyncRuntime`: the blocking twin of `Runtime`, for scripts, CLIs and notebooks.

All calls run on one private event loop in a background thread, so sandboxes
and store connections stay warm between calls (a fresh `asyncio.run` per call
would start them cold every time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from codemode.discovery import Description, SearchOutput
from codemode.records import (
    DEFAULT_MAX_EXECUTIONS,
    DEFAULT_PAUSED_TTL,
    Execution,
    Outcome,
    PendingAction,
    RollbackReport,
    Snippet,
)
from codemode.runtime.loop_thread import LoopThread

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["SyncRuntime"]

T = TypeVar("T")


class SyncRuntime:
    """Every `Runtime` method, blocking. Get it as `runtime.sync`; close it with `close()` or `with`."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._loop = LoopThread("codemode-sync")

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_current():
            coro.close()
            raise RuntimeError(
                "runtime.sync was called from inside the runtime's own loop (from a hook such as on_pause); "
                "that would wait on itself forever. Use the async API there, or hand the work to another thread."
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop.loop()).result()

    def close(self) -> None:
        """Release sandboxes and the store, then stop the background loop."""
        if self._loop.started is None:
            return
        try:
            self._call(self.runtime.aclose())
        finally:
            self._loop.stop()

    def __enter__(self) -> SyncRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def execute(self, code: str, *, key: str | None = None, metadata: Mapping[str, str] | None = None) -> Outcome:
        return self._call(self.runtime.execute(code, key=key, metadata=metadata))

    def approve(
        self,
        execution_id: str,
        seq: int,
        *,
        by: str | None = None,
        reason: str | None = None,
        args: Mapping[str, Any] | None = None,
    ) -> Outcome:
        return self._call(self.runtime.approve(execution_id, seq, by=by, reason=reason, args=args))

    def reject(
        self, execution_id: str, seq: int, *, by: str | None = None, reason: str | None = None, resume: bool = False
    ) -> bool:
        return self._call(self.runtime.reject(execution_id, seq, by=by, reason=reason, resume=resume))

    def rollback(
        self,
        execution_id: str,
        *,
        by: str | None = None,
        stale_after: timedelta = timedelta(minutes=1),
        retry_interrupted: bool = False,
    ) -> RollbackReport:
        return self._call(
            self.runtime.rollback(execution_id, by=by, stale_after=stale_after, retry_interrupted=retry_interrupted)
        )

    def recover(self, execution_id: str, *, stale_after: timedelta = timedelta(minutes=1)) -> Outcome:
        return self._call(self.runtime.recover(execution_id, stale_after=stale_after))

    def pending(self, execution_id: str | None = None) -> list[PendingAction]:
        return self._call(self.runtime.pending(execution_id))

    def expire_paused(self, max_age: timedelta = DEFAULT_PAUSED_TTL) -> list[str]:
        return self._call(self.runtime.expire_paused(max_age))

    def executions(
        self,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[Execution]:
        return self._call(self.runtime.executions(limit, metadata=metadata, status=status))

    def execution(self, execution_id: str) -> Execution | None:
        return self._call(self.runtime.execution(execution_id))

    def delete_execution(self, execution_id: str) -> bool:
        return self._call(self.runtime.delete_execution(execution_id))

    def prune_executions(self, keep: int = DEFAULT_MAX_EXECUTIONS) -> int:
        return self._call(self.runtime.prune_executions(keep))

    def save_snippet(
        self, name: str, *, execution_id: str, description: str = "", input_schema: dict[str, Any] | None = None
    ) -> Snippet:
        return self._call(
            self.runtime.save_snippet(
                name, execution_id=execution_id, description=description, input_schema=input_schema
            )
        )

    def snippets(self) -> list[Snippet]:
        return self._call(self.runtime.snippets())

    def delete_snippet(self, name: str) -> bool:
        return self._call(self.runtime.delete_snippet(name))

    def search(self, query: str) -> SearchOutput:
        return self._call(self.runtime.search(query))

    def describe(self, target: str) -> Description:
        return self._call(self.runtime.describe(target))
