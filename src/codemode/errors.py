"""Exceptions the host application can see. The model never sees these: its errors are outcomes."""

from __future__ import annotations

__all__ = ["CodemodeError", "ConnectorUnavailableError", "RollbackError"]


class CodemodeError(Exception):
    """Base class of codemode's own exceptions."""


class RollbackError(CodemodeError):
    """Some reverts failed; raised after every revert was attempted."""

    def __init__(self, message: str, reverted: list[int], failures: list[str]) -> None:
        super().__init__(message)
        self.reverted = reverted
        self.failures = failures


class ConnectorUnavailableError(CodemodeError):
    """A connector could not describe its tools (a dead MCP server, an unreadable spec); nothing ran."""

    def __init__(self, connector: str, cause: BaseException) -> None:
        super().__init__(
            f'Connector "{connector}" is unavailable: {type(cause).__name__}: {str(cause).rstrip(".")}. '
            "Nothing ran. Retry later, or tell the user this service is down."
        )
        self.connector = connector
