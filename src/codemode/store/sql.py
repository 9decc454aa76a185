"""The SQL both stores share: every operation of the `Store` protocol, written once.

A backend supplies only the transaction (`_run`) and the few fragments where the dialects really
differ (`_metadata_match`). Each operation is an `async` function of one transaction (`Tx`), so a
backend with real I/O (PostgreSQL) awaits its statements, while SQLite, whose statements never
suspend, drives the same function synchronously inside its own transaction (`drive`).

Placeholders are `?` throughout; a backend with another style translates them. The operations live
in groups, one module each: a pass (`sql_pass`), decisions and rollback (`sql_decisions`), reading,
retention and snippets (`sql_reading`), on what they share (`sql_core`), the schema and statements
(`sql_schema`) and the row readers (`sql_rows`).
"""

from __future__ import annotations

from codemode.store.sql_decisions import Decisions
from codemode.store.sql_pass import PassOps
from codemode.store.sql_reading import Reading
from codemode.store.sql_schema import (
    HISTORY_INDEXES,
    MAX_ERROR_CHARS,
    PRUNE_EVERY,
    Op,
    Rows,
    Tx,
    drive,
    new_execution_id,
    now_ms,
    shared_migrations,
)

__all__ = [
    "HISTORY_INDEXES",
    "MAX_ERROR_CHARS",
    "PRUNE_EVERY",
    "Op",
    "Rows",
    "SqlStore",
    "Tx",
    "drive",
    "new_execution_id",
    "now_ms",
    "shared_migrations",
]


class SqlStore(PassOps, Decisions, Reading):
    """Every store operation as one transaction; subclasses provide `_run` and the dialect fragments."""
