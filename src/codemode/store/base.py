"""The storage contract of the durable runtime.

Every operation is one atomic transaction, and every state transition is a
compare-and-set on the current status, so several processes (or hosts, with
PostgreSQL) sharing one database can never both resume, both reject, or both
execute an approved action. Values cross this boundary already serialized by
the durable codec (`runtime/codec.py`); records come back decoded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal, Protocol

from codemode.runtime.outcome import Execution, LogEntry, PendingAction, Snippet

__all__ = ["Decision", "Store"]


@dataclass(frozen=True)
class Decision:
    """What the host must do with one call: serve a recorded result, run it, or stop the sandbox."""

    kind: Literal["replay", "execute", "pause"]
    seq: int
    result: Any = None


class Store(Protocol):
    """Durable state of one or more runtimes, keyed by runtime name."""

    async def open(self) -> None:
        """Create or migrate the schema; idempotent."""
        ...

    async def close(self) -> None: ...

    async def begin(self, runtime: str, code: str, connectors: Sequence[str], max_executions: int) -> str:
        """Insert a `running` execution and prune terminal ones beyond `max_executions`."""
        ...

    async def resume(self, runtime: str, execution_id: str) -> Execution | None:
        """`paused` -> `running`, only if paused; None otherwise."""
        ...

    async def heartbeat(self, runtime: str, execution_id: str) -> bool:
        """Touch a running run so it is not taken for abandoned; False when it is no longer running."""
        ...

    async def claim_stale(self, runtime: str, execution_id: str, older_than: timedelta) -> Execution | None:
        """Take over a run stuck `running` with no sign of life for `older_than`; None if it is not stale."""
        ...

    async def decide(
        self,
        runtime: str,
        execution_id: str,
        seq: int,
        connector: str,
        method: str,
        args_json: str | None,
        args_error: str | None,
        requires_approval: bool,
        ephemeral: bool,
    ) -> Decision:
        """The replay algorithm (spec §4.5). `args_json` is the canonical encoding, or
        None with `args_error` saying why the arguments cannot be recorded."""
        ...

    async def record_result(self, runtime: str, execution_id: str, seq: int, result_json: str | None) -> None:
        """`executing` -> `applied` with the result (None for ephemeral entries)."""
        ...

    async def record_error(self, runtime: str, execution_id: str, seq: int, error_json: str) -> None:
        """`executing` -> `error`: the tool raised; a replay calls it again."""
        ...

    async def fail_at(self, runtime: str, execution_id: str, seq: int, message: str) -> None:
        """Fail the run because of the call at `seq` (its entry -> `error`)."""
        ...

    async def complete(self, runtime: str, execution_id: str, result_json: str, logs: Sequence[str]) -> bool:
        """`running` -> `completed`; False when the run was no longer running."""
        ...

    async def fail(self, runtime: str, execution_id: str, error: str, logs: Sequence[str]) -> bool:
        """`running` -> `error`; False when the run was no longer running."""
        ...

    async def list_pending(self, runtime: str, execution_id: str | None = None) -> list[PendingAction]: ...

    async def reject(self, runtime: str, execution_id: str, seq: int) -> bool:
        """Reject the pending entry at `seq` of a paused run; False if nothing was pending there."""
        ...

    async def expire(self, runtime: str, max_age: timedelta) -> list[str]: ...

    async def actions_to_revert(self, runtime: str, execution_id: str) -> list[LogEntry]: ...

    async def mark_reverted(self, runtime: str, execution_id: str, seq: int) -> None: ...

    async def mark_rolled_back(self, runtime: str, execution_id: str) -> None: ...

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None: ...

    async def list_executions(self, runtime: str, limit: int | None = None) -> list[Execution]: ...

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        """Delete a run and its log; returns the status it had, or None if it did not exist."""
        ...

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int: ...

    async def save_snippet(self, runtime: str, snippet: Snippet, input_schema_json: str | None) -> None: ...

    async def get_snippet(self, runtime: str, name: str) -> Snippet | None: ...

    async def list_snippets(self, runtime: str) -> list[Snippet]: ...

    async def delete_snippet(self, runtime: str, name: str) -> bool: ...
