"""Text every store and sandbox can hold: lone surrogates (invalid Unicode that JavaScript strings may
hold) made valid, and NUL kept out of text columns."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["storable_text", "valid_text", "valid_texts"]

_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """`text` as valid Unicode: a surrogate pair split in two code points is joined, a lone surrogate
    (which UTF-8 cannot hold) becomes U+FFFD."""
    if text.isascii() or not _SURROGATE.search(text):
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def valid_texts(value: Any) -> Any:
    """`value` with every string (dict keys included) made `valid_text`: for a sandbox that cannot hold
    lone surrogates. The very same object when there is nothing to change."""
    return _valid_texts(value) if _has_surrogates(value) else value


def _has_surrogates(value: Any) -> bool:
    if isinstance(value, str):
        return not value.isascii() and _SURROGATE.search(value) is not None
    if isinstance(value, dict):
        return any(_has_surrogates(k) or _has_surrogates(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_surrogates(v) for v in value)
    return False


def _valid_texts(value: Any) -> Any:
    if isinstance(value, str):
        return valid_text(value)
    if isinstance(value, dict):
        return {_valid_texts(k): _valid_texts(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_valid_texts(v) for v in value)
    return value


def storable_text(text: str) -> str:
    """`valid_text` that a text column of any store holds: NUL (which PostgreSQL text refuses) becomes
    U+FFFD too. For program text, error messages and step names; values keep NUL (JSON escapes it)."""
    return valid_text(text).replace("\x00", "\ufffd")
