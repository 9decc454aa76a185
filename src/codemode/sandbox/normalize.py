"""Turning what a model wrote into a program the sandbox can run.

Models wrap code in markdown fences, and sometimes write only a function
definition. Python programs otherwise run as written: the sandbox supports a
top-level `return`, top-level `await`, and gives the value of a trailing
expression as the result.
"""

from __future__ import annotations

import ast
import re

__all__ = ["normalize_python", "strip_fence"]

_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)\r?\n?```\s*$", re.DOTALL)


def strip_fence(code: str, languages: frozenset[str]) -> str:
    """Return the inside of `code` when the whole of it is one fenced block in one of `languages`."""
    text = code.strip()
    match = _FENCE.match(text)
    if match and (not match.group(1) or match.group(1).lower() in languages):
        return match.group(2).strip("\n")
    return text


PYTHON_FENCES = frozenset({"python", "py", "python3", "py3"})


def normalize_python(code: str) -> str:
    """Fences stripped; a lone function definition is called (with `input` when it takes a parameter)."""
    text = strip_fence(code, PYTHON_FENCES)
    if not text.strip():
        return "None"
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text  # the sandbox reports the error with the right line
    if len(tree.body) == 1 and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        fn = tree.body[0]
        arity = len(fn.args.posonlyargs) + len(fn.args.args)
        call = f"{fn.name}(input)" if arity else f"{fn.name}()"
        prefix = "await " if isinstance(fn, ast.AsyncFunctionDef) else ""
        return f"{text}\n{prefix}{call}"
    return text
