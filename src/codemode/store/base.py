"""The storage contract of the durable runtime.

Every operation is one atomic transaction, and every state transition is a
compare-and-set on the current status, so several processes (or hosts, with
PostgreSQL) sharing one database can never both resume, both reject, or both
execute an approved action. Values cross this boundary already serialized by
the durable codec (`codec.py`); records come back decoded.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal, Protocol

from codemode.records import Decision, Execution, LogEntry, PendingAction, Snippet
from codemode.replay import Call, Verdict

__all__ = ["Begun", "Claim", "Settlement", "Store", "StoredCheckpoint"]


@dataclass(frozen=True)
class Begun:
    """A new run, or (`existing` set) the run an earlier `execute` with the same key started, or
    (`pruned`) the id of that run, ended and since pruned from the history."""

    execution_id: str
    attempt: int
    existing: Execution | None = None
    pruned: bool = False


@dataclass(frozen=True)
class Claim:
    """A run this caller now owns: its state, and the attempt token every later write must carry."""

    execution: Execution
    attempt: int


@dataclass(frozen=True)
class Settlement:
    """The result of deciding one pending action.

    - `stale`: `seq` was not an undecided pending action of a paused run; nothing changed;
    - `waiting`: decided; other actions of the batch still await a human;
    - `resumed`: decided, none undecided: the caller owns the run (`claim`) and must run a pass;
    - `ended`: decided, and the decision ended the run (a reject without resume).
    """

    kind: Literal["stale", "waiting", "resumed", "ended"]
    status: str  # the run's status after the call ("deleted" when it does not exist)
    pending: list[PendingAction] = field(default_factory=list)  # still undecided
    claim: Claim | None = None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A paused run's program state as the store keeps it (see `runtime/checkpoint.py`): written by the
    pass that paused (`attempt`), bound to what it can be restored under (`binding`), with `digest`
    over `meta` and `state` so a changed byte is detected."""

    attempt: int
    binding: str
    digest: str
    meta: str
    state: bytes


class Store(Protocol):
    """Durable state of one or more runtimes, keyed by runtime name.

    Methods that take `attempt` are writes of one pass: each checks, in its own transaction, that
    the run is still owned by that attempt (and `running`), and does nothing when it is not.
    """

    async def open(self) -> None:
        """Create or migrate the schema; idempotent."""
        ...

    async def close(self) -> None: ...

    async def begin(
        self,
        runtime: str,
        code: str,
        connectors: Sequence[str],
        max_executions: int,
        *,
        key: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Begun:
        """Insert a `running` execution (attempt 1) and prune terminal ones beyond `max_executions`;
        with a `key` already used by this runtime, insert nothing and return that run (a pruned run's
        key stays taken)."""
        ...

    async def heartbeat(self, runtime: str, execution_id: str, attempt: int) -> bool:
        """Touch a run this attempt owns; False when it no longer does."""
        ...

    async def claim_stale(self, runtime: str, execution_id: str, older_than: timedelta) -> Claim | None:
        """Take over a run stuck `running` with no sign of life for `older_than`; None if it is not stale."""
        ...

    async def decide(self, runtime: str, execution_id: str, attempt: int, call: Call) -> Verdict:
        """Apply the replay rule (`replay.py`) to `call` and record what it implies."""
        ...

    async def record_result(
        self, runtime: str, execution_id: str, attempt: int, seq: int, result_json: str | None
    ) -> bool:
        """`executing` -> `applied` with the result (None for ephemeral entries); False when not owned."""
        ...

    async def record_error(self, runtime: str, execution_id: str, attempt: int, seq: int, error_json: str) -> bool:
        """`executing` -> `error`: a recorded fact every later pass raises again; False when not owned."""
        ...

    async def fail_at(self, runtime: str, execution_id: str, attempt: int, seq: int, message: str) -> bool:
        """Fail the run because of the call at `seq` (its entry -> `error`)."""
        ...

    async def pause(
        self, runtime: str, execution_id: str, attempt: int, checkpoint: StoredCheckpoint | None = None
    ) -> bool:
        """`running` -> `paused` at the end of a pass that left actions pending; False when not owned.

        In the same transaction the run's checkpoint becomes `checkpoint` (none when it is None)."""
        ...

    async def take_checkpoint(self, runtime: str, execution_id: str, attempt: int) -> StoredCheckpoint | None:
        """The run's checkpoint, removed, when `attempt` owns the running run; None otherwise. Every
        other way a run leaves `paused` (ending, expiring, rolling back, deletion, pruning) drops it."""
        ...

    async def complete(
        self, runtime: str, execution_id: str, attempt: int, result_json: str, logs: Sequence[str]
    ) -> bool:
        """`running` -> `completed`; False when not owned."""
        ...

    async def fail(self, runtime: str, execution_id: str, attempt: int, error: str, logs: Sequence[str]) -> bool:
        """`running` -> `error`; False when not owned."""
        ...

    async def list_pending(self, runtime: str, execution_id: str | None = None) -> list[PendingAction]:
        """Undecided pending actions of paused runs."""
        ...

    async def settle(
        self,
        runtime: str,
        execution_id: str,
        seq: int,
        decision: Decision,
        *,
        error_json: str | None = None,
        end_error: str | None = None,
    ) -> Settlement:
        """Decide the pending action at `seq`, only if it is an undecided pending action of a paused run.

        An approval keeps the entry pending with its decision; a rejection with `error_json` makes it
        an `error` entry the program will catch; one with `end_error` ends the run `rejected` with that
        message. When nothing is left undecided the run moves to `running` under a new attempt,
        returned in the claim; its `log` needs to hold only the open entries (a pass that replays
        reads the rest with `get_log`)."""
        ...

    async def expire(self, runtime: str, max_age: timedelta, *, running: bool = True) -> list[str]:
        """Paused runs (and, with `running`, runs stuck running) untouched for `max_age`: paused ones end
        `rejected`, running ones `error`, each under a new attempt so a pass still alive is fenced."""
        ...

    async def claim_rollback(self, runtime: str, execution_id: str, stale_after: timedelta) -> Claim | None:
        """Move a paused or ended run (or a `rolling_back` one whose rollback died) to `rolling_back`."""
        ...

    async def begin_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, decision: Decision) -> bool:
        """`applied` (or, retrying an interrupted revert, `reverting`) -> `reverting` with the rollback's
        decision, committed before the revert runs."""
        ...

    async def end_revert(self, runtime: str, execution_id: str, attempt: int, seq: int, reverted: bool) -> bool:
        """`reverting` -> `reverted`, or back to `applied` when the revert failed."""
        ...

    async def finish_rollback(self, runtime: str, execution_id: str, attempt: int, decision: Decision) -> bool:
        """`rolling_back` -> `rolled_back`; pending actions that never ran are marked reverted."""
        ...

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None: ...

    async def get_open_execution(self, runtime: str, execution_id: str) -> Execution | None:
        """The run as `get_execution` gives it, with only its open entries (pending or executing) in
        `log`: what a decision on the run checks, without reading its whole history."""
        ...

    async def get_log(self, runtime: str, execution_id: str) -> list[LogEntry]:
        """Every entry of the run (none when it is gone), with its values exactly as recorded (a value
        that cannot be decoded raises): what a pass that replays the program serves from."""
        ...

    async def list_executions(
        self,
        runtime: str,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: Collection[str] | None = None,
    ) -> list[Execution]:
        """Newest first; `metadata` keeps runs whose metadata contains every given pair."""
        ...

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        """Delete a run and its log; returns the status it had, or None if it did not exist."""
        ...

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int: ...

    async def save_snippet(self, runtime: str, snippet: Snippet, input_schema_json: str | None) -> None: ...

    async def get_snippet(self, runtime: str, name: str) -> Snippet | None: ...

    async def list_snippets(self, runtime: str) -> list[Snippet]: ...

    async def delete_snippet(self, runtime: str, name: str) -> bool: ...
