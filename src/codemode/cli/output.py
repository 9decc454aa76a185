"""What the CLI prints: plain tables for a person (colour only on a terminal) and JSON for scripts."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import click

from codemode.records import Execution, LogEntry, PendingAction

__all__ = ["STATUS_COLOURS", "dumps", "echo", "jsonable", "short_json", "table"]

STATUS_COLOURS = {
    "paused": "yellow",
    "completed": "green",
    "applied": "green",
    "approve": "green",
    "error": "red",
    "rejected": "red",
    "reject": "red",
    "running": "blue",
    "executing": "blue",
    "pending": "yellow",
    "rolling_back": "magenta",
    "rolled_back": "magenta",
    "reverted": "magenta",
    "reverting": "magenta",
    "rollback": "magenta",
}


def _colour() -> bool | None:
    """None lets click decide (colour on a terminal only); NO_COLOR turns it off everywhere."""
    return False if os.environ.get("NO_COLOR") else None


def echo(text: str = "", *, err: bool = False) -> None:
    click.echo(text, err=err, color=_colour())


def status(text: str) -> str:
    colour = STATUS_COLOURS.get(text)
    return click.style(text, fg=colour) if colour else text


def jsonable(value: Any) -> Any:
    """Records and the values programs return, as JSON: datetimes in ISO 8601, bytes in base64."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def dumps(value: Any) -> str:
    return json.dumps(jsonable(value), indent=2, ensure_ascii=False)


def short_json(value: Any, limit: int = 60) -> str:
    text = json.dumps(jsonable(value), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], styles: dict[int, Any] | None = None) -> str:
    """Left-aligned columns; `styles` maps a column to a function styling its cells (after padding)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    head = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()
    lines = [click.style(head, bold=True)]
    for row in rows:
        cells = []
        for i, (cell, w) in enumerate(zip(row, widths, strict=True)):
            padded = cell.ljust(w) if i < len(row) - 1 else cell
            cells.append(styles[i](cell) + " " * (len(padded) - len(cell)) if styles and i in styles else padded)
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def first_line(code: str, limit: int = 50) -> str:
    line = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def runs_table(executions: Sequence[Execution]) -> str:
    rows = [
        [
            e.id,
            e.status,
            when(e.created_at),
            str(sum(1 for entry in e.log if entry.connector != "__step")),
            first_line(e.code),
        ]
        for e in executions
    ]
    return table(["ID", "STATUS", "CREATED", "CALLS", "PROGRAM"], rows, {1: status})


def pending_table(actions: Sequence[PendingAction]) -> str:
    rows = [[a.execution_id, str(a.seq), f"{a.connector}.{a.method}", short_json(a.args, 70)] for a in actions]
    return table(["EXECUTION", "SEQ", "ACTION", "ARGS"], rows)


def decision_text(entry: LogEntry) -> str:
    parts = []
    for d in (entry.decision, entry.rollback):
        if d is None:
            continue
        text = f"{d.kind} by {d.by or 'user'}" + (f": {d.reason}" if d.reason else "")
        if d.args is not None:
            text += f" (edited args {short_json(d.args, 40)})"
        parts.append(text)
    return "; ".join(parts)


def show_text(e: Execution) -> str:
    out = [
        f"{click.style('Execution', bold=True)} {e.id}  {status(e.status)}",
        f"created {when(e.created_at)}, updated {when(e.updated_at)}"
        + (f", key {e.key}" if e.key else "")
        + (f", metadata {short_json(e.metadata, 200)}" if e.metadata else ""),
        "",
        click.style("Program", bold=True),
    ]
    lines = e.code.strip("\n").splitlines()
    out += [f"{n:>4}  {line}" for n, line in enumerate(lines, 1)]
    out += ["", click.style("Log", bold=True)]
    if e.log:
        rows = [
            [
                str(entry.seq),
                f"{entry.connector}.{entry.method}" if entry.connector != "__step" else f"step {entry.method}",
                short_json(entry.args, 40),
                entry.state,
                short_json(entry.result, 40) if entry.result is not None else "",
                decision_text(entry),
            ]
            for entry in e.log
        ]
        out.append(table(["SEQ", "CALL", "ARGS", "STATE", "RESULT", "DECISION"], rows, {3: status}))
    else:
        out.append("(no calls)")
    if e.logs:
        out += ["", click.style("Console output", bold=True), *e.logs]
    if e.status == "completed":
        out += ["", click.style("Result", bold=True), dumps(e.result)]
    if e.error:
        out += ["", click.style("Error", bold=True), click.style(e.error, fg="red")]
    return "\n".join(out)
