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
import sys
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import pydantic_monty as monty

from codemode.sandbox.base import CALL_SEQ, CallSeq, Checkpoint, CheckpointHost, Host, InFlight

if TYPE_CHECKING:
    from codemode.sandbox.monty_run import MontyRun

__all__ = ["FORMAT", "MAX_CHECKPOINT_BYTES", "restore", "start_call", "take"]

# "inline prelude": the program is fed after the prelude in one feed (older dumps fed them apart, so their
# line numbers would be read wrong): such a checkpoint is not restored, and its run resumes by replay.
FORMAT = f"monty/pydantic-monty {monty.__version__}; inline prelude"
MAX_CHECKPOINT_BYTES = 4 * 2**20  # a larger program state is not kept: the run resumes by replay
START_WAIT = 1.0  # seconds a pause waits for the calls in flight to take their seqs before it gives up
# Platform calls that only read: one in flight at a pause is simply made again on restore.
_REISSUABLE_PLATFORM = frozenset({"search", "describe"})


def checkpointing(host: Host) -> CheckpointHost | None:
    """The host as a checkpoint host, when it is one (the runtime's pass)."""
    if hasattr(host, "checkpoint_seq") and hasattr(host, "reissue"):
        return host  # type: ignore[return-value]
    return None


def start_call(
    run: MontyRun, call_id: int, coroutine: Coroutine[Any, Any, Any], call: tuple[str, str, Any]
) -> asyncio.Task[Any]:
    """Start a host call as a task (on the loop); under a checkpoint host, in a context whose
    `CALL_SEQ` the host fills in, so a dump knows the seq of each call in flight."""
    loop = run.loop
    if run.checkpoints is None:
        return loop.create_task(coroutine)
    cell = CallSeq()
    context = contextvars.copy_context()
    context.run(CALL_SEQ.set, cell)
    if sys.version_info >= (3, 11):
        task = loop.create_task(coroutine, context=context)  # the task runs in this very copy
    else:
        task = context.run(loop.create_task, coroutine)  # the task copies the copy
    run.calls[call_id] = (*call, cell, task)
    return task


def take(run: MontyRun, snap: monty.FutureSnapshot) -> Checkpoint | None:
    """The paused program's checkpoint (from the driver thread), or None when a restore could not go
    on exactly from here."""
    host = run.checkpoints
    if host is None or host.checkpoint_seq() is None:
        return None
    pending = sorted(snap.pending_call_ids)
    if any(call_id in run.sleeps for call_id in pending):  # a sleep is not a call a restore can make again
        return None
    # The loop starts the calls the program made just before the pause a moment later: wait for each
    # to take its seq (or finish without one), briefly.
    deadline = time.monotonic() + START_WAIT
    while not all(_started(run, call_id) for call_id in pending) and time.monotonic() < deadline:
        time.sleep(0.001)
    calls: list[InFlight] = []
    for call_id in pending:
        known = run.calls.get(call_id)
        if known is None:  # a sleep, or a call the loop has not started yet
            return None
        namespace, method, args, cell, task = known
        if cell.seq is None:
            if not task.done():  # not started yet, or a platform call still running
                return None
            if namespace == "codemode" and method not in _REISSUABLE_PLATFORM:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(InFlight(call_id, namespace, method, args, cell.seq))
    # Read after every call in flight has its seq: no call of this program can take one after it.
    next_seq = host.checkpoint_seq()
    if next_seq is None or any(c.seq is not None and c.seq >= next_seq for c in calls):
        return None
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


def _started(run: MontyRun, call_id: int) -> bool:
    known = run.calls.get(call_id)
    return known is not None and (known[3].seq is not None or known[4].done())


def restore(run: MontyRun, session: monty.MontySession, checkpoint: Checkpoint) -> monty.FutureSnapshot | None:
    """The restored program (from the driver thread), waiting on its calls again; None when the state
    does not restore to what the checkpoint says. The caller re-issues the calls."""
    if run.checkpoints is None or checkpoint.format != FORMAT:
        return None
    try:
        snap = session.load_snapshot(checkpoint.state, print_callback=run.console.write)
        objects = {uuid.UUID(object_id): name for object_id, name in checkpoint.objects.items()}
    except (monty.MontyError, ValueError, TypeError):
        return None
    if not isinstance(snap, monty.FutureSnapshot):
        return None
    if sorted(snap.pending_call_ids) != sorted(call.call_id for call in checkpoint.calls):
        return None
    run.objects = objects
    run.console.restore(list(checkpoint.console), checkpoint.console_dropped)
    return snap
