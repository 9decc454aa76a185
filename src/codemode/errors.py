"""Exceptions the host application can see. The model never sees these: its errors are outcomes."""

from __future__ import annotations

__all__ = ["CodemodeError", "RollbackError"]


class CodemodeError(Exception):
    """Base class of codemode's own exceptions."""


class RollbackError(CodemodeError):
    """Some reverts failed; raised after every revert was attempted."""

    def __init__(self, message: str, reverted: list[int], failures: list[str]) -> None:
        super().__init__(message)
        self.reverted = reverted
        self.failures = failures
