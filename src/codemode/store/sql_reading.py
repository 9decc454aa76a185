"""Reading in SQL: a run and its trail, the history, deletion and retention, and snippets."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping

from codemode.records import Execution, LogEntry, Snippet
from codemode.store import sql_checkpoints
from codemode.store.sql_core import SqlCore
from codemode.store.sql_rows import row_entry, row_execution, row_snippet, text_ok
from codemode.store.sql_schema import ENTRY_COLUMNS, EXECUTION_COLUMNS, NO_LIMIT, SNIPPET_COLUMNS, Tx


class Reading(SqlCore):
    """The audit trail's reads, deletion, retention and the snippets."""

    # -- reading and retention --------------------------------------------------

    async def get_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(
            lambda tx: self._load_execution(tx, runtime, execution_id), "get_execution", write=False, single=True
        )

    async def get_open_execution(self, runtime: str, execution_id: str) -> Execution | None:
        return await self._run(
            lambda tx: self._load_execution(tx, runtime, execution_id, entries="open"),
            "get_open_execution",
            write=False,
        )

    async def get_log(self, runtime: str, execution_id: str) -> list[LogEntry]:
        async def op(tx: Tx) -> list[LogEntry]:
            execution = await self._load_execution(tx, runtime, execution_id, strict=True)
            return execution.log if execution else []

        return await self._run(op, "get_log", write=False)

    async def list_executions(
        self,
        runtime: str,
        limit: int | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        status: Collection[str] | None = None,
    ) -> list[Execution]:
        if not all(text_ok(text) for pair in (metadata or {}).items() for text in pair):
            return []  # `begin` stores no such text, so no run has it
        where, params = "WHERE runtime = ?", [runtime]
        if status is not None:
            where += f" AND status IN ({','.join('?' * len(status))})" if status else " AND 1 = 0"
            params.extend(status)
        for name, value in (metadata or {}).items():
            where += f" AND {self._metadata_match()}"
            params.extend((name, value))

        async def op(tx: Tx) -> list[Execution]:
            rows = (
                await tx.execute(
                    f"SELECT {EXECUTION_COLUMNS} FROM cm_executions {where} ORDER BY created_at DESC, id DESC LIMIT ?",
                    (*params, NO_LIMIT if limit is None else max(limit, 0)),
                )
            ).fetchall()
            logs: dict[str, list[LogEntry]] = {r[0]: [] for r in rows}
            if rows:
                marks = ",".join("?" * len(rows))
                for r in await tx.execute(
                    f"SELECT {ENTRY_COLUMNS}, execution_id FROM cm_log WHERE runtime = ? AND execution_id IN "
                    f"({marks}) ORDER BY execution_id, seq",
                    (runtime, *logs),
                ):
                    logs[r[-1]].append(row_entry(r))
            return [row_execution(r, logs[r[0]]) for r in rows]

        return await self._run(op, "list_executions", write=False)

    async def delete_execution(self, runtime: str, execution_id: str) -> str | None:
        async def op(tx: Tx) -> str | None:
            row = (
                await tx.execute(
                    "SELECT status FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id)
                )
            ).fetchone()
            if row is None:
                return None
            await tx.execute(
                "INSERT INTO cm_keys (runtime, key, execution_id) SELECT runtime, key, id FROM cm_executions "
                "WHERE runtime = ? AND id = ? AND key IS NOT NULL "
                "ON CONFLICT (runtime, key) DO UPDATE SET execution_id = excluded.execution_id",
                (runtime, execution_id),
            )
            await tx.execute("DELETE FROM cm_log WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))
            await sql_checkpoints.drop(tx, runtime, execution_id)
            await tx.execute("DELETE FROM cm_executions WHERE runtime = ? AND id = ?", (runtime, execution_id))
            await self._notify(tx, runtime, execution_id, "deleted")
            return str(row[0])

        return await self._run(op, "delete_execution")

    async def prune_executions(self, runtime: str, keep: int, exclude: str | None = None) -> int:
        return await self._run(lambda tx: self._prune(tx, runtime, keep, exclude), "prune_executions")

    # -- snippets -------------------------------------------------------------

    async def save_snippet(self, runtime: str, snippet: Snippet, input_schema_json: str | None) -> None:
        async def op(tx: Tx) -> None:
            await tx.execute(
                "INSERT INTO cm_snippets (runtime, name, description, code, saved_at, input_schema, connectors) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (runtime, name) DO UPDATE SET "
                "description = excluded.description, code = excluded.code, saved_at = excluded.saved_at, "
                "input_schema = excluded.input_schema, connectors = excluded.connectors",
                (
                    runtime,
                    snippet.name,
                    snippet.description,
                    snippet.code,
                    int(snippet.saved_at.timestamp() * 1000),
                    input_schema_json,
                    json.dumps(snippet.connectors),
                ),
            )

        await self._run(op, "save_snippet")

    async def get_snippet(self, runtime: str, name: str) -> Snippet | None:
        async def op(tx: Tx) -> Snippet | None:
            row = (
                await tx.execute(
                    f"SELECT {SNIPPET_COLUMNS} FROM cm_snippets WHERE runtime = ? AND name = ?", (runtime, name)
                )
            ).fetchone()
            return None if row is None else row_snippet(row)

        return await self._run(op, "get_snippet", write=False)

    async def list_snippets(self, runtime: str) -> list[Snippet]:
        async def op(tx: Tx) -> list[Snippet]:
            rows = await tx.execute(
                f"SELECT {SNIPPET_COLUMNS} FROM cm_snippets WHERE runtime = ? ORDER BY name", (runtime,)
            )
            return [row_snippet(r) for r in rows]

        return await self._run(op, "list_snippets", write=False)

    async def delete_snippet(self, runtime: str, name: str) -> bool:
        async def op(tx: Tx) -> bool:
            cur = await tx.execute("DELETE FROM cm_snippets WHERE runtime = ? AND name = ?", (runtime, name))
            return cur.rowcount == 1

        return await self._run(op, "delete_snippet")
