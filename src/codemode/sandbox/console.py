"""A program's console output, bounded, as the lines an execution reports."""

from __future__ import annotations

from typing import Literal

__all__ = ["MAX_CONSOLE_CHARS", "Console"]

MAX_CONSOLE_CHARS = 1_000_000


class Console:
    """`print` output, bounded; stderr lines are prefixed `[error] `."""

    def __init__(self) -> None:
        self.parts: list[tuple[str, str]] = []
        self.size = 0
        self.dropped = 0  # characters not kept

    def write(self, stream: Literal["stdout", "stderr"], text: str) -> None:
        if self.dropped or self.size + len(text) > MAX_CONSOLE_CHARS:
            self.dropped += len(text)
            return
        self.size += len(text)
        self.parts.append((stream, text))

    def lines(self) -> list[str]:
        out: list[str] = []
        for stream, chunk in _join_streams(self.parts):
            prefix = "[error] " if stream == "stderr" else ""
            out.extend(prefix + line for line in chunk.split("\n"))
        if self.dropped:
            out.append(
                f"[codemode: console output beyond {MAX_CONSOLE_CHARS:,} characters was dropped "
                f"({self.dropped:,} more characters)]"
            )
        return out


def _join_streams(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Merge consecutive chunks of one stream, then drop the final newline of each."""
    merged: list[tuple[str, str]] = []
    for stream, text in parts:
        if merged and merged[-1][0] == stream and not merged[-1][1].endswith("\n"):
            merged[-1] = (stream, merged[-1][1] + text)
        else:
            merged.append((stream, text))
    return [(s, t[:-1] if t.endswith("\n") else t) for s, t in merged]
