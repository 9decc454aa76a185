"""Resume from a checkpoint: a paused program's state, stored with the run, instead of a replay.

When a pass pauses cleanly on an executor that can checkpoint (Monty), the program's suspended state
is stored with the run in the transaction that pauses it, bound to the normalized code, the
connector set as the program sees it (namespaces, methods and their declarations) and the executor
and its version, with a digest over the bytes. The resume that follows (the last approval, or a
rejection with `resume=True`) takes it and, when all of that still matches, goes on from it: calls
before the checkpoint count as reached, the calls the program was waiting on are made again under
their seqs and judged by the replay rule, and new calls continue the log. Anything else (no
checkpoint, a mismatch, a failed restore, another executor, `recover`) replays from the start.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from codemode import codec
from codemode.records import LogEntry
from codemode.runtime.passes import Pass
from codemode.runtime.setup import Setup
from codemode.sandbox.base import Checkpoint, Checkpointing, ExecuteResult, Executor, InFlight, Namespace
from codemode.store.base import StoredCheckpoint

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["binding", "checkpointing", "resume_from", "run_program", "to_store"]


def checkpointing(executor: Executor) -> Checkpointing | None:
    """The executor, when it checkpoints pauses (and was not told not to)."""
    if _is_checkpointing(executor) and getattr(executor, "checkpoints", True):
        return cast(Checkpointing, executor)
    return None


# Whether each executor is a `Checkpointing` one: an `isinstance` against a runtime-checkable protocol
# inspects every member (about 40 µs a run), and an executor's methods do not change.
_CHECKPOINTING: weakref.WeakKeyDictionary[Executor, bool] = weakref.WeakKeyDictionary()


def _is_checkpointing(executor: Executor) -> bool:
    try:
        return _CHECKPOINTING[executor]
    except KeyError:
        found = _CHECKPOINTING[executor] = isinstance(executor, Checkpointing)
        return found
    except TypeError:  # an executor that cannot be weakly referenced (or hashed): asked each time
        return isinstance(executor, Checkpointing)


def binding(executor: Checkpointing, normalized: str, namespaces: Sequence[Namespace], setup: Setup) -> str:
    """What a checkpoint is only valid under: the program, what each namespace offers it (methods with
    their schemas and policies), unavailable connectors, and the executor with its version."""
    view: dict[str, Any] = {}
    for namespace in namespaces:
        description = setup.descriptions.get(namespace.name)
        methods: dict[str, Any] = {}
        for method in sorted(namespace.methods):
            spec = description.tools.get(method) if description else None
            methods[method] = (
                None if spec is None else [spec.input_schema, spec.output_schema, spec.requires_approval, spec.replay]
            )
        view[namespace.name] = methods
    text = json.dumps(
        [executor.checkpoint_format, normalized, view, sorted(setup.unavailable)],
        sort_keys=True,
        default=repr,
        ensure_ascii=False,
    )
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _digest(bound: str, meta: str, state: bytes) -> str:
    return hashlib.sha256(b"\0".join([bound.encode(), meta.encode("utf-8", "surrogatepass"), state])).hexdigest()


def to_store(host: Pass, result: ExecuteResult, bound: str) -> StoredCheckpoint | None:
    """The pass's checkpoint as the store keeps it, when its pause is one a resume can go on from."""
    checkpoint = result.checkpoint
    if checkpoint is None or not host.resumable_pause() or host.in_flight:
        return None
    try:
        meta = json.dumps(
            {
                "format": checkpoint.format,
                "next_seq": checkpoint.next_seq,
                "objects": checkpoint.objects,
                "console": checkpoint.console,
                "console_dropped": checkpoint.console_dropped,
                "calls": [[c.call_id, c.namespace, c.method, codec.dumps(c.args), c.seq] for c in checkpoint.calls],
            },
            ensure_ascii=False,
        )
    except (TypeError, ValueError, RecursionError):
        return None
    return StoredCheckpoint(host.attempt, bound, _digest(bound, meta, checkpoint.state), meta, checkpoint.state)


def _from_store(stored: StoredCheckpoint, attempt: int, bound: str) -> Checkpoint | None:
    """The checkpoint, when it was written by the pass just before this one (`attempt - 1`), under the
    same binding, and its bytes are the ones written."""
    if stored.attempt != attempt - 1 or stored.binding != bound:
        return None
    if _digest(stored.binding, stored.meta, stored.state) != stored.digest:
        return None
    try:
        meta = json.loads(stored.meta)
        calls = tuple(
            InFlight(int(call_id), str(ns), str(method), codec.loads(args), None if seq is None else int(seq))
            for call_id, ns, method, args, seq in meta["calls"]
        )
        return Checkpoint(
            format=str(meta["format"]),
            state=stored.state,
            calls=calls,
            objects={str(k): str(v) for k, v in meta["objects"].items()},
            console=[(str(stream), str(text)) for stream, text in meta["console"]],
            console_dropped=int(meta["console_dropped"]),
            next_seq=int(meta["next_seq"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


async def resume_from(
    runtime: Runtime,
    host: Pass,
    executor: Checkpointing,
    namespaces: Sequence[Namespace],
    bound: str,
) -> ExecuteResult | None:
    """The pass run on from the run's checkpoint; None (nothing written, nothing called) when there is
    none that matches and restores: the caller replays instead."""
    stored = await runtime.store.take_checkpoint(runtime.name, host.execution_id, host.attempt)
    checkpoint = None if stored is None else _from_store(stored, host.attempt, bound)
    if checkpoint is None or checkpoint.format != executor.checkpoint_format:
        return None
    host.start_at(checkpoint.next_seq, [c.seq for c in checkpoint.calls if c.seq is not None])
    return await executor.resume(checkpoint, namespaces, host)


async def run_program(
    runtime: Runtime,
    new_host: Callable[[Sequence[LogEntry]], Pass],
    recorded: Sequence[LogEntry],
    replay_log: Callable[[], Awaitable[Sequence[LogEntry]]] | None,
    normalized: str,
) -> tuple[Pass, ExecuteResult, StoredCheckpoint | None]:
    """One pass's program run to its end, from the start over the log `recorded`; or, given `replay_log`
    (a resume, whose `recorded` holds only the open entries), from the run's checkpoint when one
    matches and restores, else from the start over the whole log `replay_log` reads. Returns the pass,
    how the program ended and, at a pause a resume can go on from, the checkpoint to store with it."""
    host = new_host(recorded)
    setup, executor = host.setup, runtime.executor
    namespaces = setup.namespaces_for(normalized)
    checkpoints = checkpointing(executor)
    host.checkpoints = checkpoints is not None
    result, bound = None, ""
    if replay_log is not None:
        if checkpoints is not None:
            bound = binding(checkpoints, normalized, namespaces, setup)
            result = await resume_from(runtime, host, checkpoints, namespaces, bound)
        if result is None:  # no checkpoint that restores: replay, with a pass that has seen the whole log
            host = new_host(await replay_log())
            host.checkpoints = checkpoints is not None
    if result is None:
        result = await executor.execute(normalized, namespaces, host)
    host.ended = True
    stored = None
    if checkpoints is not None and result.checkpoint is not None:
        stored = to_store(host, result, bound or binding(checkpoints, normalized, namespaces, setup))
    return host, result, stored
