"""Exceptions the host application can see. The model never sees these: its errors are outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codemode.records import RollbackReport

__all__ = ["CodemodeError", "ConnectorUnavailableError", "ExecutionNotFoundError", "RollbackError", "StoreError"]


class CodemodeError(Exception):
    """Base class of codemode's own exceptions."""


class RollbackError(CodemodeError):
    """Some reverts failed; raised after every revert was attempted. `report` says what happened to each."""

    def __init__(self, message: str, report: RollbackReport) -> None:
        super().__init__(message)
        self.report = report
        self.reverted = report.reverted
        self.failures = [f"step {seq}: {why}" for seq, why in sorted(report.failed.items())]


class ConnectorUnavailableError(CodemodeError):
    """A connector could not describe its tools (a dead MCP server, an unreadable spec); nothing ran."""

    def __init__(self, connector: str, cause: BaseException) -> None:
        super().__init__(
            f'Connector "{connector}" is unavailable: {type(cause).__name__}: {str(cause).rstrip(".")}. '
            "Nothing ran. Retry later, or tell the user this service is down."
        )
        self.connector = connector
        self.reason = f"{type(cause).__name__}: {str(cause).rstrip('.')}"  # the cause alone, for other messages


class ExecutionNotFoundError(CodemodeError, LookupError):
    """A method that acts on one run was given an id this runtime has no run for (never existed here,
    or deleted or pruned). Methods returning an `Outcome` report the same message as an error outcome."""

    def __init__(self, execution_id: str, runtime: str, action: str) -> None:
        super().__init__(not_found_message(execution_id, runtime, action))
        self.execution_id = execution_id


def not_found_message(execution_id: str, runtime: str, action: str) -> str:
    """The one wording for an unknown execution id, whether raised or returned as an error outcome."""
    return (
        f'No execution "{execution_id}" to {action} on runtime "{runtime}": it never existed there, '
        "or it was deleted or pruned."
    )


class StoreError(CodemodeError):
    """The store's database could not be opened or written. The message names the database, what went
    wrong and what to do; `path` is the SQLite file (None for a server), `__cause__` the database's own error."""

    def __init__(self, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class StoreConnectionError(StoreError, ConnectionError):
    """The database server could not be reached, or the connection broke while a write was committing."""


class StoreConflictError(StoreError, RuntimeError):
    """A transaction kept losing serialization conflicts to other hosts, past `conflict_retries` tries."""
