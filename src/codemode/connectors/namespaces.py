"""The naming rules of connectors: a namespace must work as a global in both sandbox languages."""

from __future__ import annotations

import re

from codemode.schema.names import JAVASCRIPT_GLOBALS, PYTHON_BUILTINS, RESERVED_WORDS, SANDBOX_GLOBALS

__all__ = ["RESERVED_NAMESPACES", "validate_namespace_name"]

# Names the program can never use as a connector namespace: `codemode` is the platform SDK, `asyncio`
# the one module a Python program imports, and the rest would shadow (or be shadowed by) a word or a
# global of one of the sandbox languages. A connector's name must work in both, so that programs and
# snippets do not depend on the executor.
RESERVED_NAMESPACES = frozenset({"codemode", "asyncio"}) | RESERVED_WORDS | SANDBOX_GLOBALS

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # always with fullmatch: `$` would let "a\n" through


def validate_namespace_name(name: object, what: str = "Connector") -> str:
    """Check a namespace name is usable as a global in both sandbox languages.

    Valid identifier (the whole string), not a keyword of either language, not a built-in or a global
    of either (`type`, `print`, `Set`, `JSON`, ...), not `codemode`, and not `__`-prefixed: names
    like `__step` belong to the platform (the log's step entries use it).
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} name {name!r} is not a valid identifier: use ASCII letters, digits and _, not starting "
            "with a digit."
        )
    if name == "codemode":
        raise ValueError(f'{what} name "codemode" is reserved for the codemode platform SDK.')
    if name.startswith("__"):
        raise ValueError(f"{what} name {name!r} is reserved: names starting with __ belong to the platform.")
    if name in RESERVED_NAMESPACES:
        if name in RESERVED_WORDS:
            why = "a keyword of Python or JavaScript"
        elif name in PYTHON_BUILTINS and name in JAVASCRIPT_GLOBALS:
            why = "a built-in of Python and a global of JavaScript"
        elif name in PYTHON_BUILTINS:
            why = "a Python built-in"
        elif name in JAVASCRIPT_GLOBALS:
            why = "a JavaScript global"
        else:
            why = "a name the sandbox needs"
        raise ValueError(
            f"{what} name {name!r} is reserved: it is {why}, and a namespace of that name would shadow it (or be "
            f"shadowed by it) in the sandbox. Rename it, for example to {name + '_api'!r}."
        )
    return name
