"""The audit trail of a runtime: its runs, newest first, each with its log and decisions; deleting and
pruning them. `Runtime` inherits it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from codemode.records import DEFAULT_MAX_EXECUTIONS, Execution
from codemode.store.base import Store

__all__ = ["AuditTrail"]


class AuditTrail:
    """The runs a runtime has kept."""

    # Set and defined by `Runtime`.
    store: Store
    name: str
    _hooks: Callable[[str, str, str], Awaitable[None]]

    async def executions(
        self,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: str | Sequence[str] | None = None,
    ) -> list[Execution]:
        """Runs newest first; `metadata` keeps those carrying every given pair, `status` those in it."""
        statuses = [status] if isinstance(status, str) else status
        return await self.store.list_executions(self.name, limit, metadata=metadata, status=statuses)

    async def execution(self, execution_id: str) -> Execution | None:
        return await self.store.get_execution(self.name, execution_id)

    async def delete_execution(self, execution_id: str) -> bool:
        """Delete a run and its log; a paused or running run's resources are disposed."""
        status = await self.store.delete_execution(self.name, execution_id)
        if status in ("paused", "running"):
            await self._hooks("dispose_execution", execution_id, "rejected")
        return status is not None

    async def prune_executions(self, keep: int = DEFAULT_MAX_EXECUTIONS) -> int:
        """Delete the oldest ended runs beyond `keep`; paused and running runs are kept."""
        return await self.store.prune_executions(self.name, keep)
