"""What `codemode.search` and `codemode.describe` hand back to the sandbox."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

__all__ = ["MAX_SEARCH_RESULTS", "Description", "DescriptionKind", "ResultKind", "SearchOutput", "SearchResult"]

MAX_SEARCH_RESULTS = 50
ResultKind = Literal["method", "snippet"]
DescriptionKind = Literal["connector", "method", "snippet", "type"]


@dataclass(frozen=True)
class SearchResult:
    """One hit: a connector method, or a saved snippet (`connector == "snippet"`)."""

    path: str
    connector: str
    method: str
    description: str
    requires_approval: bool
    kind: ResultKind
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox."""
        return asdict(self)


@dataclass(frozen=True)
class SearchOutput:
    """The best `limit` hits, plus how many matched in all."""

    results: list[SearchResult]
    total: int
    truncated: bool
    # Connectors whose service is down, so their tools could not be searched: name -> why, what to do.
    unavailable: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox (`unavailable` only when some connector is)."""
        data = asdict(self)
        if not self.unavailable:
            del data["unavailable"]
        return data


@dataclass(frozen=True)
class Description:
    """What `describe(target)` returns: declarations in the sandbox language, or a not-found hint.

    `kind` is `"type"` for a type named in a method's declarations (`"stripe.GetCharge.Customer"`).
    """

    path: str
    description: str | None
    requires_approval: bool
    types: str
    kind: DescriptionKind

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as handed to the sandbox."""
        return asdict(self)
