"""What the model is told when its JavaScript fails: the sandbox's refusal of imports, and hints for
Python written as JavaScript, for missing `await`s and for names the sandbox does not have."""

from __future__ import annotations

import re
from collections.abc import Sequence


def import_error(code: str) -> str | None:
    """Programs may not import modules: connectors are the only way out of the sandbox."""
    # Every way to load a module spells `import`, or `export ... from` (a keyword cannot be written with
    # escapes), so most programs need no parse here.
    if "import" not in code and not ("export" in code and "from" in code):
        return None
    from codemode.sandbox.normalize import find_imports

    lines = find_imports(code)
    if not lines:
        return None
    source = code.splitlines()[lines[0] - 1].strip()
    return (
        "SyntaxError: import is not available in the sandbox. Use the connector globals and codemode.* "
        f"instead; standard JavaScript built-ins need no import.\n  at line {lines[0]}: {source}"
    )


# Signs that a program is Python: its structure (any error), or a Python name JavaScript does not define.
_PYTHON = re.compile(
    r"^\s*(?:def\s+\w+\s*\(.*\)\s*(?:->.*)?:|(?:if|elif|for|while|with|try|except|class)\b.*:|else\s*:|"
    r"from\s+[\w.]+\s+import\s|import\s+[\w.]+(?:\s+as\s+\w+)?)\s*$|\bf[\"']\{",
    re.MULTILINE,
)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`")
_PYTHON_NAMES = frozenset(
    {"print", "None", "True", "False", "len", "range", "str", "int", "dict", "list", "asyncio", "self", "elif"}
)


def _looks_like_python(first: str, code: str) -> bool:
    if first.startswith("SyntaxError"):
        return _PYTHON.search(code) is not None
    missing = re.match(r"ReferenceError: ([\w$]+) is not defined", first)
    # For a reference error, what string literals say is no sign: the program parsed as JavaScript.
    unquoted = _STRINGS.sub('""', code)
    return missing is not None and (missing.group(1) in _PYTHON_NAMES or _PYTHON.search(unquoted) is not None)


_NO_ACCESS = {
    "net": "the sandbox has no network access",
    "read": "the sandbox has no file system",
    "write": "the sandbox has no file system",
    "env": "the sandbox has no environment variables",
    "run": "the sandbox cannot start processes",
    "sys": "the sandbox has no access to the system",
    "ffi": "the sandbox cannot load native code",
}


def javascript_hint(message: str, code: str, names: Sequence[str]) -> str | None:
    """One line of advice for a mistake the JavaScript sandbox sees often, in terms of what it offers.

    `names` are the namespaces the program can call (connectors, then `codemode`)."""
    ns = names[0] if names else "codemode"
    first = message.splitlines()[0] if message else ""
    access = re.search(r"Requires (\w+) access", first)
    if access or "Fetch failed" in first:
        what = _NO_ACCESS.get(access.group(1), "the sandbox has no such access") if access else _NO_ACCESS["net"]
        return (
            f"{what}, and none can be granted: reach the outside only through connector methods, found with "
            "`codemode.search(...)`"
        )
    if _looks_like_python(first, code):
        return (
            f"this sandbox runs JavaScript, not Python: write `const x = await {ns}.method({{ ... }});`, "
            "`console.log(...)`, `null`/`true`/`false`, and `Promise.all([...])` for concurrent calls"
        )
    if first.startswith("TypeError") and re.search(
        r"Cannot read properties of|is not a function|is not iterable", first
    ):
        call = _unawaited(message, code, names)
        if call is not None:
            return call
    undeclared = re.match(r"ReferenceError: ([\w$]+) is not defined", first)
    if undeclared and re.search(rf"^\s*{re.escape(undeclared.group(1))}\s*=[^=]", code, re.MULTILINE):
        name = undeclared.group(1)
        return f"declare variables before use: `const {name} = ...` or `let {name} = ...` (programs run in strict mode)"
    return None


def _unawaited(message: str, code: str, names: Sequence[str]) -> str | None:
    """A call used without `await` (so its Promise is used as the value), and how to write it."""
    if not names:
        return None
    spaces = "|".join(re.escape(n) for n in names)
    line = re.search(r"\n  at line \d+: (.*)", message)
    source = line.group(1) if line else ""
    for assigned in re.finditer(rf"([A-Za-z_$][\w$]*)\s*=\s*((?:{spaces})\.[\w$]+)\s*\(", code):
        name, call = assigned.groups()
        if not source or re.search(rf"(?<![\w$.]){re.escape(name)}(?![\w$])", source):  # the failing line uses it
            return (
                f"`{name} = {call}(...)` has no `await`, so `{name}` is a Promise: connector and codemode methods "
                f"are async, write `const {name} = await {call}(...)`"
            )
    called = re.search(rf"(?<![\w$.])((?:{spaces})\.[\w$]+)\s*\(", source)
    if called and not re.search(rf"\bawait\s+{re.escape(called.group(1))}", source):
        call = called.group(1)
        return f"`{call}(...)` returns a Promise: connector and codemode methods are async, write `await {call}(...)`"
    return None
