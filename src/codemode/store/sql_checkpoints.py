"""The SQL of paused runs' checkpoints (`StoredCheckpoint`), shared by both stores.

One row per paused run at most, in a table of its own (so a run's status writes never rewrite the
program state): written in the transaction that pauses the run, removed by the resume that takes it,
and dropped by every other way a run leaves `paused`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from codemode.store.base import StoredCheckpoint

if TYPE_CHECKING:
    from codemode.store.sql_schema import Tx

__all__ = ["MIGRATION", "drop", "save", "take"]

# The migration that adds the table: SQLite's 3rd, PostgreSQL's 4th (after its own 3rd).
MIGRATION = """
    CREATE TABLE cm_checkpoints (
        runtime TEXT NOT NULL, execution_id TEXT NOT NULL, attempt {bigint} NOT NULL,
        binding TEXT NOT NULL, digest TEXT NOT NULL, meta TEXT NOT NULL, state {blob} NOT NULL,
        PRIMARY KEY (runtime, execution_id)
    );
"""


async def drop(tx: Tx, runtime: str, execution_id: str) -> None:
    await tx.execute("DELETE FROM cm_checkpoints WHERE runtime = ? AND execution_id = ?", (runtime, execution_id))


async def save(tx: Tx, runtime: str, execution_id: str, checkpoint: StoredCheckpoint | None) -> None:
    """The run's checkpoint becomes `checkpoint` (none when None)."""
    await drop(tx, runtime, execution_id)
    if checkpoint is None:
        return
    await tx.execute(
        "INSERT INTO cm_checkpoints (runtime, execution_id, attempt, binding, digest, meta, state) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            runtime,
            execution_id,
            checkpoint.attempt,
            checkpoint.binding,
            checkpoint.digest,
            checkpoint.meta,
            checkpoint.state,
        ),
    )


async def take(tx: Tx, runtime: str, execution_id: str) -> StoredCheckpoint | None:
    """The run's checkpoint, removed."""
    row = (
        await tx.execute(
            "SELECT attempt, binding, digest, meta, state FROM cm_checkpoints WHERE runtime = ? AND execution_id = ?",
            (runtime, execution_id),
        )
    ).fetchone()
    if row is None:
        return None
    await drop(tx, runtime, execution_id)
    return StoredCheckpoint(int(row[0]), str(row[1]), str(row[2]), str(row[3]), bytes(row[4]))
