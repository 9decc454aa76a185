"""The contract between discovery and the per-language declaration renderers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol
from urllib.parse import unquote

from codemode.connectors.base import ToolSpec

__all__ = ["DeclarationRenderer", "resolve_pointer"]


class DeclarationRenderer(Protocol):
    """Renders connector tools as declarations in the sandbox's language."""

    language: str  # "python" or "typescript": the fence tag used around declarations

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """The whole namespace: every tool's types and signature under `name`."""
        ...

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: the types it uses and its signature, callable as `connector.method`."""
        ...


def resolve_pointer(root: object, ref: str) -> object | None:
    """The node a local JSON pointer names (`#`, `#/$defs/Item`, with `~0`/`~1` and percent escapes);
    None for an external reference or one that names nothing."""
    if ref == "#":
        return root
    if not ref.startswith("#/"):
        return None
    node = root
    for raw in unquote(ref[2:]).split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node
