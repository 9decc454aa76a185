"""Exceptions the host application can see. The model never sees these: its errors are outcomes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codemode.runtime.outcome import RollbackReport

__all__ = ["CodemodeError", "ConnectorUnavailableError", "RollbackError"]


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
