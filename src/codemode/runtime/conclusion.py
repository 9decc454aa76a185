"""How a pass ends: one fenced write of its status, and the outcome the caller gets."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from codemode import codec
from codemode.records import MAX_DURABLE_VALUE_BYTES, MAX_RESULT_BYTES, Execution, Outcome, as_stored
from codemode.runtime.passes import Pass
from codemode.runtime.setup import Setup
from codemode.sandbox.base import ExecuteResult
from codemode.store.base import StoredCheckpoint
from codemode.text import storable_text

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["bounded_logs", "conclude", "current_outcome"]

MAX_STORED_LOG_CHARS = 1_000_000
LOGS_DROPPED = "[codemode: earlier console output dropped: too large to record]"


async def conclude(
    runtime: Runtime,
    host: Pass,
    result: ExecuteResult,
    normalized: str,
    code: str,
    checkpoint: StoredCheckpoint | None = None,
) -> Outcome:
    """Record how the pass ended (one fenced write, with the program's checkpoint at a pause) and
    build its outcome."""
    eid, attempt, store, name = host.execution_id, host.attempt, runtime.store, runtime.name
    if host.store_error is None and host.in_flight:
        host.store_error = f"{host.in_flight} connector call(s) were still running when the pass ended"
    if host.store_error is not None:
        return Outcome(
            status="error",
            execution_id=eid,
            error=f"The durable log could not be written ({host.store_error}). The run was stopped and left "
            f"running; once the store is healthy, `recover` it: a call that ran but was not recorded runs "
            "again with the same idempotency key.",
            logs=result.logs,
        )
    written = True
    if host.failure is None and not host.lost:
        if host.paused:
            written = await store.pause(name, eid, attempt, checkpoint)
        elif result.error is not None or result.stopped:
            message = original_line(
                result.error or "The program was stopped.", normalized, code, runtime.executor.language
            )
            host.failure = storable_text(with_hint(message, host.setup, runtime.executor.language, code))
            written = await store.fail(name, eid, attempt, host.failure, bounded_logs(result.logs))
        elif host.unreached:
            seq, entry = min(host.unreached.items())
            what = "approved action" if entry.decision is not None else "call"
            host.failure = (
                f"Codemode replay divergence at step {seq}: the program ended without reaching the {what} "
                f"{entry.connector}.{entry.method} it made before. Code must be deterministic up to tool calls "
                "and steps. Wrap nondeterministic work in codemode.step(name, fn)."
            )
            written = await store.fail_at(name, eid, attempt, seq, host.failure)
        else:
            stored, refusal = stored_result(result.result)
            if refusal is not None:
                host.failure = refusal
                written = await store.fail(name, eid, attempt, host.failure, bounded_logs(result.logs))
            else:
                written = await store.complete(name, eid, attempt, stored, bounded_logs(result.logs))
    execution = await store.get_execution(name, eid)
    calls = as_stored(execution) if execution else []  # decoded if the caller reads it
    if host.lost or not written:
        status = execution.status if execution else "deleted"
        return Outcome(
            status="error",
            execution_id=eid,
            error=f'This pass no longer owns execution "{eid}" (status now: {status}): it was recovered, '
            "rolled back, expired or deleted elsewhere, so the pass stopped and wrote nothing more.",
            logs=result.logs,
            calls=calls,
        )
    if host.failure is not None:
        return Outcome(status="error", execution_id=eid, error=host.failure, logs=result.logs, calls=calls)
    if host.paused:
        pending = await store.list_pending(name, eid)
        return Outcome(status="paused", execution_id=eid, pending=pending, logs=result.logs, calls=calls)
    return Outcome(
        status="completed",
        execution_id=eid,
        result=await runtime.transform(result.result),
        logs=result.logs,
        calls=calls,
    )


def with_hint(message: str, setup: Setup, language: str, code: str) -> str:
    """The error, plus at most one line of advice for a common mistake, in terms of what the sandbox offers."""
    names = [*setup.connectors, "codemode"]
    if language == "javascript":
        from codemode.sandbox.deno_hints import javascript_hint

        hint = javascript_hint(message, code, names)
    else:
        from codemode.sandbox.monty import python_hint

        hint = python_hint(message, code, names)
    if hint is None and message.startswith("Execution timed out"):
        hint = (
            "the limit covers the whole run, connector calls included: make sure every loop ends, and do less "
            "per run: fewer calls, smaller batches, or the job split over several runs"
        )
    if hint is not None:
        return f"{message}\n({hint})"
    return with_globals_hint(message, setup)


def stored_result(value: Any) -> tuple[str, str | None]:
    """The final result as the audit trail keeps it, or why the pass cannot accept it at all.

    A result within `MAX_DURABLE_VALUE_BYTES` is stored whole; one up to `MAX_RESULT_BYTES` completes
    with a placeholder in the audit trail; one the codec cannot hold, or larger than that,
    ends the pass with an error, since nothing could be given back for it. One bounded encoding."""
    try:
        text = codec.dumps(value, max_bytes=MAX_RESULT_BYTES)
    except (TypeError, ValueError, RecursionError) as exc:
        return "", codec.refusal("The result", exc)
    size = len(text.encode("utf-8"))
    if size <= MAX_DURABLE_VALUE_BYTES:
        return text, None
    placeholder = codec.too_large_message("The result", size)
    return codec.dumps(f"[codemode: result omitted from the audit trail: {placeholder}]"), None


def with_globals_hint(message: str, setup: Setup) -> str:
    """A name the program did not define: say which globals exist."""
    if re.search(r"\bis not defined\b", message):
        names = ", ".join([*setup.connectors, "codemode"])
        return f"{message}\n(the only globals available in the sandbox are: {names})"
    return message


_AT_LINE = re.compile(r"\bat line (\d+)")


# What ends a line for each sandbox's parser (not `str.splitlines`, which also breaks at form feeds and
# other separators that neither language counts).
_LINE_ENDS = {"python": re.compile(r"\r\n|\r|\n"), "javascript": re.compile(r"\r\n|\r|\n|\u2028|\u2029")}


def original_line(error: str, normalized: str, original: str, language: str = "python") -> str:
    """Point "at line N: source" at the model's own code: normalization strips fences and may wrap the program."""
    match = _AT_LINE.search(error)
    if match is None or normalized == original:
        return error
    line = int(match.group(1))
    lines = _LINE_ENDS.get(language, _LINE_ENDS["python"])
    normalized_lines = lines.split(normalized)
    original_lines = lines.split(original)
    if not 1 <= line <= len(normalized_lines):
        return error
    target = normalized_lines[line - 1].strip()
    candidates = [
        number
        for number, text in enumerate(original_lines, 1)
        if (stripped := text.strip().rstrip(";").rstrip()) and stripped in target
    ]
    if not candidates:
        return error
    best = min(candidates, key=lambda number: abs(number - line))
    rest = error[match.end(1) :]
    if rest.startswith(": "):  # the line as the model wrote it, not as normalization rewrote it
        end = rest.find("\n")
        rest = ": " + original_lines[best - 1].strip() + (rest[end:] if end >= 0 else "")
    return error[: match.start(1)] + str(best) + rest


def bounded_logs(logs: list[str]) -> list[str]:
    """Stored console output is capped: the oldest half is dropped until it fits, and a first line says
    how much was dropped."""
    kept, dropped = list(logs), False
    while kept and sum(len(line) for line in kept) > MAX_STORED_LOG_CHARS:
        dropped = True
        kept = kept[len(kept) // 2 :] if len(kept) > 1 else [kept[0][-MAX_STORED_LOG_CHARS // 2 :]]
    if not dropped:
        return kept
    chars = sum(len(line) for line in logs) - sum(len(line) for line in kept)
    return [f"{LOGS_DROPPED[:-1]} ({chars:,} characters)]", *kept]


async def current_outcome(runtime: Runtime, execution: Execution) -> Outcome:
    """What a run stands at now, as an outcome, without running anything."""
    eid = execution.id
    if execution.status == "paused":
        pending = await runtime.store.list_pending(runtime.name, eid)
        return Outcome(
            status="paused", execution_id=eid, pending=pending, logs=execution.logs, calls=as_stored(execution)
        )
    if execution.status == "completed":
        result = await runtime.transform(execution.result)
        return Outcome(
            status="completed", execution_id=eid, result=result, logs=execution.logs, calls=as_stored(execution)
        )
    if execution.status in ("running", "rolling_back"):
        error = f'Execution "{eid}" is {execution.status} elsewhere; ask for its outcome again later.'
    else:
        error = execution.error or f"Execution ended with status {execution.status}."
    return Outcome(status="error", execution_id=eid, error=error, logs=execution.logs, calls=as_stored(execution))
