"""What the Monty sandbox tells the model about an error: the message, its program line, and a hint."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pydantic_monty as monty

from codemode.sandbox.monty_prelude import PRELUDE_LINES

__all__ = ["MODULES", "describe_error", "python_hint", "syntax_error"]

_FED_FILE = "<python-input-0>"  # the session's first feed: the prelude, then the program
_SYNTAX_PLACE = re.compile(rf'^File "{re.escape(_FED_FILE)}", line (\d+)$', re.MULTILINE)


def describe_error(exc: monty.MontyRuntimeError, timeout: float, memory_limit: int) -> str:
    """`Type: message`, then the program line it happened on."""
    message = exc.display("type-msg")
    if message.startswith("TimeoutError: feed time limit exceeded"):
        return f"Execution timed out: the program ran longer than the {timeout:g} s limit."
    if message.startswith("MemoryError"):
        message += f" (the sandbox memory limit is {memory_limit // 2**20} MiB)"
    # The program's own frames (not the prelude's, above its first line), in its own line numbers.
    frames = [f for f in exc.traceback() if f.filename == _FED_FILE and f.line > PRELUDE_LINES]
    if frames:
        frame = frames[-1]
        source = (frame.source_line or "").strip()
        message += f"\n  at line {frame.line - PRELUDE_LINES}" + (f": {source}" if source else "")
    return message


def syntax_error(exc: monty.MontySyntaxError) -> str:
    """The parser's report, its place given as the program's own line (`File <program>, line N`)."""
    text = exc.display("traceback").removeprefix("Traceback (most recent call last):\n").strip()

    def place(match: re.Match[str]) -> str:
        return f"File <program>, line {max(int(match.group(1)) - PRELUDE_LINES, 1)}"

    # Only the report's own place line, not a line of the program that happens to read the same.
    return _SYNTAX_PLACE.sub(place, text, count=1)


# What `import` finds in Monty 1.4 (checked by tests/test_hints.py): no other module, no third-party package.
MODULES = (
    *("asyncio", "base64", "binascii", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal"),
    *("functools", "hashlib", "itertools", "json", "math", "os", "pathlib", "random", "re", "sys", "time", "typing"),
    "unicodedata",
)
# Signs that a program is JavaScript: its structure (any error), or a JavaScript name Python does not define.
_JAVASCRIPT = re.compile(
    r"^\s*(?:const|let|var)\s+[\w${\[]|=>|\bfunction\b\s*[\w$]*\s*\(|[!=]==|^\s*\}",
    re.MULTILINE,
)
_STRINGS = re.compile(r"\"(?:[^\"\\\n]|\\.)*\"|'(?:[^'\\\n]|\\.)*'")
_JAVASCRIPT_NAMES = frozenset({"console", "null", "undefined", "true", "false", "JSON", "Math", "Promise", "require"})


def _looks_like_javascript(message: str, code: str) -> bool:
    first = message.splitlines()[0] if message else ""
    if "SyntaxError" in message:
        return _JAVASCRIPT.search(code) is not None
    missing = re.match(r"NameError: name '(\w+)' is not defined", first)
    # For a name error, what string literals say is no sign: the program parsed as Python.
    unquoted = _STRINGS.sub('""', code)
    return missing is not None and (missing.group(1) in _JAVASCRIPT_NAMES or _JAVASCRIPT.search(unquoted) is not None)


def python_hint(message: str, code: str, names: Sequence[str]) -> str | None:
    """One line of advice for a mistake the Python sandbox sees often, in terms of what it offers.

    `names` are the namespaces the program can call (connectors, then `codemode`)."""
    ns = names[0] if names else "codemode"
    if _looks_like_javascript(message, code):
        return (
            f"this sandbox runs Python, not JavaScript: write `x = await {ns}.method(...)`, `print(...)`, "
            "`None`/`True`/`False`, and `import asyncio` then `asyncio.gather(...)` for concurrent calls"
        )
    missing = re.match(r"NameError: name '(\w+)' is not defined", message)
    if missing and missing.group(1) in MODULES:
        module = missing.group(1)
        return f"modules are not preloaded: `import {module}` first; the only globals are {', '.join(names)}"
    if "'coroutine'" in message:
        return "connector and codemode methods are async: `await` each call before using its result, e.g. " + _awaited(
            message, code, [*names, "asyncio"], ns
        )
    first = message.splitlines()[0] if message else ""
    if first.startswith("ModuleNotFoundError"):
        return (
            f"the sandbox's only modules are {', '.join(MODULES)}; there are no third-party packages, and "
            "files, network and environment are reached only through connector methods"
        )
    if first.startswith("PermissionError: Permission denied: '/") or "is not supported in this environment" in first:
        return (
            "the sandbox has no file system, environment or network: keep data in variables and read or write "
            "it through connector methods, found with `codemode.search(...)`"
        )
    return None


def _awaited(message: str, code: str, names: Sequence[str], ns: str) -> str:
    """The program's own call without `await`, written with it: an `x = ns.method(` assignment, else a
    call on the failing line, else a generic example."""
    spaces = "|".join(re.escape(n) for n in names)
    line = re.search(r"\n  at line \d+: (.*)", message)
    for assigned in re.finditer(rf"^\s*([A-Za-z_]\w*)\s*=\s*((?:{spaces})\.\w+)\s*\(", code, re.MULTILINE):
        name, call = assigned.groups()
        if line is None or re.search(rf"(?<![\w.]){re.escape(name)}\b", line.group(1)):  # the failing line uses it
            return f"`{name} = await {call}(...)`"
    called = re.search(rf"(?<![\w.])((?:{spaces})\.\w+)\s*\(", line.group(1)) if line else None
    if called and not re.search(rf"\bawait\s+{re.escape(called.group(1))}", line.group(1) if line else ""):
        return f"`await {called.group(1)}(...)`"
    return f"`x = await {ns}.method(...)`"
