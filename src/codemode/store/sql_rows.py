"""Rows of the stores' tables as the records the runtime reads (`Execution`, `LogEntry`, `Snippet`)."""

from __future__ import annotations

import json
import operator
from collections.abc import Sequence
from typing import Any

from codemode.codec import dumps, loads, read
from codemode.records import Decision, Execution, ExecutionStatus, LogEntry, Snippet
from codemode.replay import Recorded
from codemode.store.sql_schema import utc_datetime


def text_ok(text: str) -> bool:
    """Whether every store keeps `text` as it is: PostgreSQL text refuses NUL, UTF-8 lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def stored_decision(decision: Decision) -> str:
    return dumps(
        {
            "kind": decision.kind,
            "by": decision.by,
            "reason": decision.reason,
            "at": int(decision.at.timestamp() * 1000),
            "args": decision.args,
        }
    )


def row_decision(text: str | None) -> Decision | None:
    data = loads(text)
    if data is None:
        return None
    return Decision(
        kind=data["kind"], by=data["by"], reason=data["reason"], at=utc_datetime(data["at"]), args=data["args"]
    )


def row_recorded(row: Sequence[Any]) -> Recorded:
    connector, method, args, result, ephemeral, state, decision = row
    kind = args_json = None
    if decision is not None:
        data = json.loads(decision)
        kind = data["kind"]
        args_json = None if data.get("args") is None else json.dumps(data["args"], ensure_ascii=False)
    return Recorded(connector, method, args, result, bool(ephemeral), state, kind, args_json)


def row_trail(text: str | None) -> list[LogEntry]:
    """The entries of a `_run_with_trail` trail, in seq order."""
    rows: list[list[Any]] = json.loads(text) if text else []
    rows.sort(key=operator.itemgetter(0))
    return [row_entry(row) for row in rows]


def row_entry(row: Sequence[Any], strict: bool = False) -> LogEntry:
    seq, connector, method, args, result, requires_approval, ephemeral, state, decision, rollback = row[:10]
    return LogEntry(
        seq=seq,
        connector=connector,
        method=method,
        args=(loads if strict else read)(args),
        result=(loads if strict else read)(result),
        requires_approval=bool(requires_approval),
        ephemeral=bool(ephemeral),
        state=state,
        decision=row_decision(decision),
        rollback=row_decision(rollback),
    )


def row_execution(row: Sequence[Any], log: list[LogEntry], strict: bool = False) -> Execution:
    execution_id, code, status, result, error, logs, connectors, created_at, updated_at, key, metadata = row
    status_value: ExecutionStatus = status
    return Execution(
        id=execution_id,
        code=code,
        status=status_value,
        log=log,
        result=(loads if strict else read)(result),
        error=error,
        logs=json.loads(logs) if logs else [],
        connectors=json.loads(connectors) if connectors else [],
        created_at=utc_datetime(created_at),
        updated_at=utc_datetime(updated_at),
        key=key,
        metadata=json.loads(metadata) if metadata else {},
    )


def row_snippet(row: Sequence[Any]) -> Snippet:
    name, description, code, saved_at, input_schema, connectors = row
    return Snippet(
        name=name,
        description=description,
        code=code,
        saved_at=utc_datetime(saved_at),
        input_schema=loads(input_schema),
        connectors=json.loads(connectors) if connectors else [],
    )
