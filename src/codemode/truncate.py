"""Keep what goes back to the model within a token budget.

A tool result that floods the context window costs money and buries the
answer, so results are cut before the model sees them. The budget is in
characters: `max_chars`, or `max_tokens * 4` (about four characters a token).

- `truncate_response(text)` cuts text and appends a footer saying how big the
  response was (the same text as Cloudflare's code mode).
- `truncate_result(value)` leaves strings to `truncate_response` and measures
  any other value as pretty JSON (`indent=2`). Unlike Cloudflare's code mode, which turns an
  oversized value into a cut string of JSON, it returns a smaller value of the
  same shape, so the model still gets valid, navigable data. The largest parts
  are cut first, and every cut leaves a marker:

  - a long string keeps its head: `"abc…[+1234 chars]"`;
  - a long list keeps its first items, then one marker element:
    `"[codemode: 123 more items omitted]"`;
  - an object with many keys keeps its first keys, then the key `"…"` with
    `"[codemode: 12 more keys omitted]"`;
  - a container nested too deep becomes one string:
    `"[codemode: list of 40 items omitted]"` or
    `"[codemode: object with 7 keys omitted]"`;
  - an integer with thousands of digits becomes a clipped string of digits.

If even the harshest level does not fit (a budget of a few dozen characters),
the harshest result is returned anyway: a stub of the root container.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

__all__ = ["DEFAULT_MAX_TOKENS", "truncate_response", "truncate_result"]

DEFAULT_MAX_TOKENS = 6000
CHARS_PER_TOKEN = 4
OMITTED_KEY = "…"


def _budget(max_chars: int | None, max_tokens: int) -> int:
    return max_chars if max_chars is not None else max_tokens * CHARS_PER_TOKEN


def truncate_response(text: str, *, max_chars: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> str:
    """Cut `text` to the budget and say so in a footer; text within budget comes back unchanged."""
    limit = _budget(max_chars, max_tokens)
    if len(text) <= limit:
        return text
    approx_tokens = math.ceil(len(text) / CHARS_PER_TOKEN)
    return (
        text[: max(limit, 0)]
        + "\n\n--- TRUNCATED ---\n"
        + f"Response was ~{approx_tokens:,} tokens (limit: {max_tokens:,}). "
        + "Narrow the request to reduce response size."
    )


def _dumps(value: Any) -> str:
    # default=str: a datetime, a UUID or a Decimal counts at the size of its text,
    # which is how the model will eventually see it.
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _compact(value: Any) -> str:
    # The C encoder (no indent) is many times faster than the pretty one, and a
    # value whose compact form is over budget is over budget pretty too.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _fits(value: Any, limit: int) -> bool:
    return len(_compact(value)) <= limit and len(_dumps(value)) <= limit


def truncate_result(value: Any, *, max_chars: int | None = None, max_tokens: int = DEFAULT_MAX_TOKENS) -> Any:
    """Bound a tool or program result for the model.

    Strings go through `truncate_response`. Anything else is measured as pretty
    JSON: within budget the very same object is returned; over budget, a new,
    plain JSON value of the same shape that fits (see the module docstring for
    the markers). A value that cannot be serialized at all (a cycle, a key type
    JSON refuses) is returned unchanged, as is `None`.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return truncate_response(value, max_chars=max_chars, max_tokens=max_tokens)
    limit = _budget(max_chars, max_tokens)
    try:
        compact = _compact(value)
        if len(compact) <= limit and len(_dumps(value)) <= limit:
            return value
    except (TypeError, ValueError, RecursionError):
        return value
    # Round-tripping gives a plain tree (tuples -> lists, keys -> str, unknown
    # objects -> their str) that the clipping below can rebuild freely.
    return _shrink(json.loads(compact), limit)


# ---------------------------------------------------------------------------
# Shrinking
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Caps:
    """How hard to clip; `None` means no limit. Smaller caps never give a larger result."""

    chars: int | None = None  # longest string kept whole
    items: int | None = None  # most list items or object keys kept
    depth: int | None = None  # deepest container level kept (the root is level 0)


def _clip_string(s: str, cap: int | None) -> str:
    if cap is None or len(s) <= cap:
        return s
    clipped = f"{s[:cap]}…[+{len(s) - cap} chars]"
    return clipped if len(clipped) < len(s) else s


def _items_marker(n: int) -> str:
    return f"[codemode: {n} more items omitted]"


def _clip(node: Any, caps: _Caps, depth: int = 0) -> Any:
    if isinstance(node, str):
        return _clip_string(node, caps.chars)
    if isinstance(node, int) and not isinstance(node, bool) and caps.chars is not None:
        digits = str(node)
        return node if len(digits) <= caps.chars + 20 else _clip_string(digits, caps.chars)
    if isinstance(node, list):
        if caps.depth is not None and depth >= caps.depth:
            return f"[codemode: list of {len(node)} items omitted]"
        kept = node if caps.items is None else node[: caps.items]
        out = [_clip(item, caps, depth + 1) for item in kept]
        if len(kept) < len(node):
            out.append(_items_marker(len(node) - len(kept)))
        return out
    if isinstance(node, dict):
        if caps.depth is not None and depth >= caps.depth:
            return f"[codemode: object with {len(node)} keys omitted]"
        keys = list(node) if caps.items is None else list(node)[: caps.items]
        result: dict[str, Any] = {}
        for key in keys:
            short = _clip_string(key, caps.chars)
            while short in result or short == OMITTED_KEY:  # clipping made two keys equal
                short += "#"
            result[short] = _clip(node[key], caps, depth + 1)
        if len(keys) < len(node):
            marker_key = OMITTED_KEY
            while marker_key in result:
                marker_key += "#"
            result[marker_key] = f"[codemode: {len(node) - len(keys)} more keys omitted]"
        return result
    return node


@dataclass
class _Stats:
    longest_string: int = 0
    longest_container: int = 0
    depth: int = 0


def _stats(value: Any) -> _Stats:
    """Longest string (keys included), longest container and nesting depth, without recursion."""
    stats = _Stats()
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            stats.longest_string = max(stats.longest_string, len(node))
        elif isinstance(node, (list, dict)):
            stats.depth = max(stats.depth, depth + 1)
            stats.longest_container = max(stats.longest_container, len(node))
            children: list[Any] | Any = node
            if isinstance(node, dict):
                stats.longest_string = max(stats.longest_string, max((len(k) for k in node), default=0))
                children = node.values()
            stack.extend((child, depth + 1) for child in children if isinstance(child, (str, list, dict, int)))
        elif isinstance(node, int) and not isinstance(node, bool):
            stats.longest_string = max(stats.longest_string, len(str(node)))
    return stats


def _levels(limit: int, stats: _Stats) -> list[_Caps]:
    """Clipping levels from gentle to harsh; every cap is non-increasing along the list.

    Long strings go first (they are usually the bulk), then long lists, then
    deep nesting; only then are strings and lists cut to a stub.
    """
    levels = [_Caps()]

    def push(**change: int) -> None:
        levels.append(replace(levels[-1], **change))

    for chars in (limit // 4, limit // 16, 256):
        if chars < stats.longest_string and (levels[-1].chars is None or chars < levels[-1].chars):
            push(chars=chars)
    for items in (100, 30, 10):
        if items < stats.longest_container:
            push(items=items)
    for depth in (8, 6, 4):
        if depth < stats.depth:
            push(depth=depth)
    for chars in (64, 16):
        if chars < stats.longest_string and (levels[-1].chars is None or chars < levels[-1].chars):
            push(chars=chars)
    for items in (5, 3, 1, 0):
        if items < stats.longest_container:
            push(items=items)
    for depth in (3, 2, 1):
        if depth < stats.depth:
            push(depth=depth)
    return levels


def _largest_fitting(lo: int, hi: int, fits: Callable[[int], bool]) -> int:
    """Largest n in [lo, hi] with fits(n), given fits(lo) holds and fits is monotone."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _shrink(value: Any, limit: int) -> Any:
    """The gentlest clipping whose pretty JSON fits `limit` characters.

    A binary search over the levels finds the first level that fits, then a
    second one tunes the single cap that changed from the level before, so
    the result keeps as much as the budget allows rather than jumping a level.
    """
    stats = _stats(value)
    levels = _levels(limit, stats)
    cache: dict[_Caps, tuple[Any, bool]] = {}

    def attempt(caps: _Caps) -> tuple[Any, bool]:
        if caps not in cache:
            clipped = _clip(value, caps)
            cache[caps] = (clipped, _fits(clipped, limit))
        return cache[caps]

    def fits(caps: _Caps) -> bool:
        return attempt(caps)[1]

    if not fits(levels[-1]):
        return attempt(levels[-1])[0]  # nothing fits: the smallest stub we can make
    lo, hi = 0, len(levels) - 1  # levels[hi] fits; find the first that does
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(levels[mid]):
            hi = mid
        else:
            lo = mid + 1
    found = levels[hi]
    before = levels[hi - 1] if hi > 0 else found
    ceilings = {"chars": stats.longest_string, "items": stats.longest_container, "depth": stats.depth}
    changed = [name for name in ceilings if getattr(before, name) != getattr(found, name)]
    if changed:  # exactly one cap differs between neighbouring levels
        name = changed[0]
        old, new = getattr(before, name), getattr(found, name)
        top = (old if old is not None else ceilings[name]) - 1

        def fits_with(n: int) -> bool:
            return fits(replace(found, **{name: n}))

        found = replace(found, **{name: _largest_fitting(new, max(new, top), fits_with)})
    return attempt(found)[0]
