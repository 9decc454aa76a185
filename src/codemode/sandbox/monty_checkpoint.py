"""Checkpoints of paused Monty programs: what is dumped at a pause, and how a restore goes on from it.

A pause is seen while the program waits on its calls (a future snapshot): that snapshot is dumped,
with each call it waits on (its sandbox call id, the log seq it took, namespace, method, arguments),
the sandbox ids of the namespace objects and the console so far. Namespace objects survive a dump as
stand-ins with the same id, and their method calls still reach the host under that id, so a restore
only needs the id-to-namespace map again. Anything a restore could not reproduce exactly (a sleep
or a call still starting, a platform call with side effects, a dump over `MAX_CHECKPOINT_BYTES`)
means no checkpoint: the run is resumed by replay, as without one.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import pydantic_monty as monty

from codemode.sandbox.base import CALL_SEQ, CallSeq, Checkpoint, CheckpointHost, Host, InFlight

if TYPE_CHECKING:
    from codemode.sandbox.monty import _Run

__all__ = ["FORMAT", "MAX_CHECKPOINT_BYTES", "restore", "start_call", "take"]

FORMAT = f"monty/pydantic-monty {monty.__version__}"
MAX_CHECKPOINT_BYTES = 4 * 2**20  # a larger program state is not kept: the run resumes by replay
# Platform calls that only read: one in flight at a pause is simply made again on restore.
_REISSUABLE_PLATFORM = frozenset({"search", "describe"})


def checkpointing(host: Host) -> CheckpointHost | None:
    """The host as a checkpoint host, when it is one (the runtime's pass)."""
    if hasattr(host, "checkpoint_seq") and hasattr(host, "reissue"):
        return host  # type: ignore[return-value]
    return None


def start_call(run: _Run, call_id: int, coroutine: Coroutine[Any, Any, Any], call: tuple[str, str, Any]) -> None:
    """Start a host call as a task; under a checkpoint host, in a context whose `CALL_SEQ` the host
    fills in, so a dump knows the seq of each call in flight."""
    loop = asyncio.get_running_loop()
    if run.checkpoints is None:
        run.tasks[call_id] = loop.create_task(coroutine)
        return
    cell = CallSeq()

    def started() -> asyncio.Task[Any]:
        CALL_SEQ.set(cell)  # in a copy of this context, which the task copies in turn
        return loop.create_task(coroutine)

    run.tasks[call_id] = contextvars.copy_context().run(started)
    run.calls[call_id] = (*call, cell)


def take(run: _Run, snap: monty.AsyncFutureSnapshot) -> Checkpoint | None:
    """The paused program's checkpoint, or None when a restore could not go on exactly from here."""
    host = run.checkpoints
    if host is None:
        return None
    next_seq = host.checkpoint_seq()
    if next_seq is None:
        return None
    pending = list(snap.pending_call_ids)
    if set(run.tasks) != set(pending):
        return None
    calls: list[InFlight] = []
    for call_id in sorted(pending):
        known = run.calls.get(call_id)
        if known is None:  # a sleep
            return None
        namespace, method, args, cell = known
        if cell.seq is None:
            if not run.tasks[call_id].done():  # not started yet, or a platform call still running
                return None
            if namespace == "codemode" and method not in _REISSUABLE_PLATFORM:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(InFlight(call_id, namespace, method, args, cell.seq))
    try:
        state = snap.dump()
    except monty.MontyError:
        return None
    if len(state) > MAX_CHECKPOINT_BYTES:
        return None
    return Checkpoint(
        format=FORMAT,
        state=state,
        calls=tuple(calls),
        objects={str(object_id): name for object_id, name in run.objects.items()},
        console=list(run.console.parts),
        console_dropped=run.console.dropped,
        next_seq=next_seq,
    )


async def restore(
    run: _Run, session: monty.AsyncMontySession, checkpoint: Checkpoint
) -> monty.AsyncFutureSnapshot | None:
    """The restored program, waiting on its calls again, each re-issued to the host under the seq it
    took; None when the state does not restore to what the checkpoint says (nothing was re-issued)."""
    host = run.checkpoints
    if host is None or checkpoint.format != FORMAT:
        return None
    try:
        snap = await session.load_snapshot(checkpoint.state, print_callback=run.console.write)
        objects = {uuid.UUID(object_id): name for object_id, name in checkpoint.objects.items()}
    except (monty.MontyError, ValueError, TypeError):
        return None
    if not isinstance(snap, monty.AsyncFutureSnapshot):
        return None
    if sorted(snap.pending_call_ids) != sorted(call.call_id for call in checkpoint.calls):
        return None
    run.objects = objects
    run.console.parts = list(checkpoint.console)
    run.console.size = sum(len(text) for _, text in checkpoint.console)
    run.console.dropped = checkpoint.console_dropped
    for call in checkpoint.calls:
        issued = (
            host.reissue(call.seq, call.namespace, call.method, call.args)
            if call.seq is not None
            else run.host.call(call.namespace, call.method, call.args)
        )
        start_call(run, call.call_id, issued, (call.namespace, call.method, call.args))
    return snap
