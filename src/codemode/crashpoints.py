"""Named crash points, for durability tests: kill this process at an exact commit point.

Every store operation passes `before:<operation>` and `after:<operation>` (for example
`after:settle`, the instant an approval is committed and before its pass runs, or
`before:record_result`, after a tool ran and before its result is recorded). Set
`CODEMODE_CRASH_AT=after:settle` (optionally `@N`: the N-th time) in a child process's
environment and it dies there by SIGKILL, as a host does when its machine fails. Unset, a
crash point costs one comparison.
"""

from __future__ import annotations

import os
import signal

__all__ = ["reached"]

_spec = os.environ.get("CODEMODE_CRASH_AT") or None
_name, _, _count = (_spec or "").partition("@")
_remaining = int(_count) if _count.isdigit() else 1


def reached(name: str) -> None:
    """Die here if this point is armed."""
    global _remaining
    if _spec is None or name != _name:
        return
    _remaining -= 1
    if _remaining <= 0:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
