"""What the program gets for a call whose outcome the log holds: the recorded result, or the recorded
error raised again (the same exception on this pass and on every replay), and the kind a tool's
exception is recorded as."""

from __future__ import annotations

from typing import Any

from codemode.replay import Verdict
from codemode.sandbox.base import StopExecution, ToolError

__all__ = ["python_kind", "recorded_answer", "recorded_error"]


def recorded_answer(verdict: Verdict) -> Any:
    """What a call the log has already decided gives the program: the recorded result, the recorded
    error raised again, or (pause, divergence, a lost run) the end of this pass."""
    if verdict.kind == "replay":
        return verdict.result
    if verdict.kind == "raise":
        raise recorded_error(verdict.result)
    raise StopExecution()


def recorded_error(error: Any) -> ToolError:
    """The exception a recorded failure raises in the program, on this pass and every replay."""
    if isinstance(error, dict):
        return ToolError(str(error.get("error", "The call failed.")), str(error.get("kind") or "RuntimeError"))
    return ToolError(str(error))


def python_kind(exc: BaseException) -> str:
    """Keep the common exception types so `except ValueError:` in the program works. A `ConnectionError`
    (the sandboxes have no such name) becomes the `OSError` it derives from, as do other OS errors."""
    kinds = ("PermissionError", "TimeoutError", "KeyError", "LookupError", "ValueError", "TypeError", "OSError")
    for kind in kinds:
        if any(cls.__name__ == kind for cls in type(exc).__mro__):
            return kind
    return "RuntimeError"
