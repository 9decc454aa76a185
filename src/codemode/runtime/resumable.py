"""The part of a pass that checkpoints use: whether its pause can be resumed from, and going on from one.

`Pass` inherits it; kept apart so the pass's call path reads on its own. See `runtime/checkpoint.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from codemode.records import LogEntry

__all__ = ["Resumable"]


class Resumable:
    """A pass as a checkpoint host (`sandbox.base.CheckpointHost`)."""

    # The pass's own state (set by `Pass.__init__`).
    _seq: int
    _recorded: dict[int, LogEntry]
    unreached: dict[int, LogEntry]
    _open_steps: dict[str, tuple[int, str]]
    _snippets: int
    _reissued: int | None
    checkpoints: bool
    unrepeatable: bool
    paused: bool
    ended: bool
    lost: bool
    failure: str | None
    store_error: str | None

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any: ...

    def start_at(self, next_seq: int, in_flight: Sequence[int]) -> None:
        """Go on from a checkpoint: calls before `next_seq` were reached, except those still in flight
        then (`in_flight`, made again under their seqs); the next new call takes `next_seq`."""
        self._seq = next_seq
        kept = set(in_flight)
        self._recorded = {seq: e for seq, e in self._recorded.items() if seq >= next_seq or seq in kept}
        self.unreached = {seq: e for seq, e in self.unreached.items() if seq >= next_seq or seq in kept}

    def resumable_pause(self) -> bool:
        """The pass is pausing cleanly, with no step open, no snippet running and nothing a checkpoint
        must not hold: its program's state could be resumed from exactly."""
        if not self.checkpoints or not self.paused or self.unrepeatable or self._open_steps or self._snippets:
            return False
        return not self.lost and self.failure is None and self.store_error is None

    def checkpoint_seq(self) -> int | None:
        """The next seq, when the program's state now could be resumed from (see `resumable_pause`)."""
        return self._seq if not self.ended and self.resumable_pause() else None

    async def reissue(self, seq: int, namespace: str, method: str, args: dict[str, Any]) -> Any:
        """A call in flight at a checkpoint, made again under the seq it took then (judged by the
        replay rule like any call)."""
        self._reissued = seq  # taken before `call` first suspends
        try:
            return await self.call(namespace, method, args)
        finally:
            self._reissued = None
