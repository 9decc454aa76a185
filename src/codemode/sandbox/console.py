"""A program's console output, bounded, as the lines an execution reports."""

from __future__ import annotations

from typing import Literal

__all__ = ["MAX_CONSOLE_CHARS", "Console", "dropped_line"]

MAX_CONSOLE_CHARS = 1_000_000  # deno_worker.js caps its console at the same MAX_LOG_CHARS


def dropped_line(chars: int | None = None) -> str:
    """The line that ends output cut at the cap, saying how much was dropped when that is known."""
    more = "" if chars is None else f" ({chars:,} more characters)"
    return f"[codemode: console output beyond {MAX_CONSOLE_CHARS:,} characters was dropped{more}]"


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
            out.append(dropped_line(self.dropped))
        return out

    def restore(self, parts: list[tuple[str, str]], dropped: int) -> None:
        """Continue the output a checkpoint kept (its size follows from its parts)."""
        self.parts = list(parts)
        self.size = sum(len(text) for _, text in parts)
        self.dropped = dropped


def _join_streams(parts: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Merge consecutive chunks of one stream, then drop the final newline of each."""
    merged: list[tuple[str, str]] = []
    for stream, text in parts:
        if merged and merged[-1][0] == stream and not merged[-1][1].endswith("\n"):
            merged[-1] = (stream, merged[-1][1] + text)
        else:
            merged.append((stream, text))
    return [(s, t[:-1] if t.endswith("\n") else t) for s, t in merged]
