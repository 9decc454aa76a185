"""Names that are valid identifiers in both sandbox languages.

`sanitize_identifier` follows Cloudflare's code-mode sanitizer step by step,
with two deliberate deviations, because its result must be usable as-is in
Python *and* in JavaScript:

- `$` is not kept. It is legal in JavaScript but not in Python, so it is
  deleted like any other invalid character: `"@#$"` -> `"_"`, `"$jquery"` -> `"jquery"`.
- The reserved set is Cloudflare's JavaScript list plus every Python keyword
  (`keyword.kwlist`: `None`, `True`, `def`, `lambda`, `pass`, `not`, ...) and
  `__debug__`, which Python refuses as a binding name. Soft keywords (`match`,
  `case`, `type`, `_`) are ordinary names in Python, so they are left alone.
"""

from __future__ import annotations

import keyword
import re

__all__ = ["RESERVED_WORDS", "sanitize_identifier", "to_pascal_case"]

# Cloudflare's list, verbatim.
_JS_RESERVED = """
abstract arguments await boolean break byte case catch char class const continue debugger default delete do double
else enum eval export extends false final finally float for function goto if implements import in instanceof int
interface let long native new null package private protected public return short static super switch synchronized
this throw throws transient true try typeof undefined var void volatile while with yield
""".split()  # noqa: SIM905

RESERVED_WORDS: frozenset[str] = frozenset(_JS_RESERVED) | frozenset(keyword.kwlist) | {"__debug__"}

_SEPARATORS = re.compile(r"[-.\s]")
_INVALID = re.compile(r"[^A-Za-z0-9_]")
_AFTER_UNDERSCORE = re.compile(r"_([A-Za-z])")


def sanitize_identifier(name: str) -> str:
    """Turn any tool or type name into an identifier valid in Python and JavaScript."""
    if not name:
        return "_"
    name = _INVALID.sub("", _SEPARATORS.sub("_", name))
    if not name:
        return "_"
    if name[0].isdigit():
        name = "_" + name
    if name in RESERVED_WORDS:
        name += "_"
    return name


def to_pascal_case(name: str) -> str:
    """PascalCase a sanitized name, as Cloudflare's code mode does: `get_item` -> `GetItem`, `_3drender` unchanged.

    Each letter after an `_` is uppercased and the `_` dropped; then a lowercase
    first character is uppercased. Underscores before digits stay, so the result
    never starts with a digit when the input did not.
    """
    name = _AFTER_UNDERSCORE.sub(lambda m: m.group(1).upper(), name)
    return name[:1].upper() + name[1:] if name[:1].islower() else name
