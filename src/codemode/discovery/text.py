"""Text as both scorers see it: Cloudflare's normalization (exact), and the folding of the "codemode"
scorer (stop words, plural and verb forms, verb synonyms)."""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["CANONICAL", "SOFT_HINTS", "STOP_WORDS", "fold", "normalize", "stem", "tokenize", "tokens_of"]

# A zero-width split point between a lowercase letter or digit and an uppercase letter: the same
# places as Cloudflare's `([a-z0-9])([A-Z])` -> `$1 $2`, but replaced by a literal space, which `re`
# does in C (a group template costs a Python call per match).
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[_./:\-]+")
_TOKEN = re.compile(r"[a-z0-9]+")


def normalize(text: str) -> str:
    """Split camelCase, turn `_ . / : -` runs into one space, lowercase, trim."""
    return _SEPARATORS.sub(" ", _CAMEL.sub(" ", text)).lower().strip()


def tokens_of(normalized: str) -> list[str]:
    """The tokens of an already normalized text: its `[a-z0-9]` runs."""
    return _TOKEN.findall(normalized)


def tokenize(text: str) -> list[str]:
    """`normalize`, then split on anything that is not `[a-z0-9]`."""
    return tokens_of(normalize(text))


# Words that carry no intent in a tool query; they only dilute coverage (and in
# the baseline, "a" or "i" match as substrings of almost everything).
def _words(text: str) -> list[str]:
    return text.split()


STOP_WORDS = frozenset(
    _words(
        """a an the of for to in on by with from and or my our your their me i we you it its this that these those
    is are be been was were do does did how can could should would will what which who whose where when please
    using use used via into onto at as some any all each every just also about there here want need like let
        lets one much many"""
    )
)

# Verbs and abbreviations that mean the same thing in API catalogs. Plain words;
# they are stemmed below, and the first word of a group is its canonical form.
# Mind the stems: "settings" would fold to "set" and "logged" to "log".
_SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    ("get", "fetch", "retrieve", "obtain", "show", "lookup", "look", "read", "view", "describe"),
    ("list", "enumerate", "browse"),
    ("search", "find", "query"),
    ("create", "add", "new", "make", "insert", "generate", "register", "post", "publish", "start", "begin"),
    ("delete", "remove", "destroy", "erase", "drop", "purge", "unregister"),
    ("update", "edit", "modify", "change", "patch", "alter", "amend"),
    ("repo", "repository"),
    ("org", "organization", "organisation"),
    ("config", "configuration"),
    ("pr", "pull"),
    ("compare", "diff", "comparison"),
    ("latest", "recent", "newest", "last"),
    ("trigger", "dispatch"),
)

# Query words that hint at a concept without being required: "my repositories"
# leans toward the tools "for the authenticated user" but must still match
# tools that do not say so.
SOFT_HINTS: dict[str, str] = {"my": "authenticated", "me": "authenticated", "mine": "authenticated"}
_VOWELS = frozenset("aeiouy")


def stem(token: str) -> str:
    """Fold plurals and verb forms so "issues"/"issue" and "created"/"create" meet.

    Deliberately tiny (not Porter): it only needs to map both sides of a match
    to the same string, and it must be cheap to run over a whole vocabulary.
    """
    t = token
    if len(t) <= 3 or not t.isalpha():
        return t
    if t.endswith(("ies", "ied")) and len(t) > 4:
        t = t[:-3] + "y"
    elif t.endswith("s") and not t.endswith(("ss", "us", "is")):
        t = t[:-1]
    for suffix in ("ing", "ed"):
        if t.endswith(suffix):
            rest = t[: -len(suffix)]
            if len(rest) >= 3 and any(ch in _VOWELS for ch in rest):
                t = rest
                if len(t) >= 4 and t[-1] == t[-2] and t[-1] not in "lsz":
                    t = t[:-1]
            break
    if t.endswith("e") and len(t) > 3:
        t = t[:-1]
    return t


CANONICAL: dict[str, str] = {stem(word): stem(group[0]) for group in _SYNONYM_GROUPS for word in group}


def fold(token: str) -> str:
    """A token's stem, folded to the canonical word of its synonym group."""
    s = stem(token)
    return CANONICAL.get(s, s)


def folded(tokens: Sequence[str]) -> list[str]:
    """Meaningful words in order, stemmed and folded to their canonical synonym."""
    return [fold(t) for t in tokens if t not in STOP_WORDS]
