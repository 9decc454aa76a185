"""The contract between discovery and the per-language declaration renderers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from codemode.connectors.base import ToolSpec

__all__ = ["DeclarationRenderer"]


class DeclarationRenderer(Protocol):
    """Renders connector tools as declarations in the sandbox's language."""

    language: str  # "python" or "typescript": the fence tag used around declarations

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """The whole namespace: every tool's types and signature under `name`."""
        ...

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: the types it uses and its signature, callable as `connector.method`."""
        ...
