"""Resume from a checkpoint: a paused Monty program goes on from its stored state instead of a replay.

Real Monty (and Deno, which always replays), real SQLite files and a real PostgreSQL server. Host
calls are counted by wrapping `Pass.call` (the real method runs): a replay makes every call of the
program again, a resume from a checkpoint only those the program was waiting on and the new ones.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import codemode
from codemode import Outcome, Runtime
from codemode.runtime.passes import Pass

from conftest import Items, RuntimeFactory, execute_sql, new_executor

BOTH_STORES = True

READS = 20
GATED = (
    "print('start')\n"
    f"for i in range({READS}):\n"
    "    await items.list_items()\n"
    "print('before')\n"
    "item = await items.create_item(title='x')\n"
    "print('after', item['id'])\n"
    "after = await items.list_items()\n"
    "[item, len(after)]\n"
)


@pytest.fixture
def host_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every call a program makes to the host, in order."""
    seen: list[tuple[str, str]] = []
    original = Pass.call

    async def counted(self: Pass, namespace: str, method: str, args: dict[str, Any]) -> Any:
        seen.append((namespace, method))
        return await original(self, namespace, method, args)

    monkeypatch.setattr(Pass, "call", counted)
    return seen


@pytest.fixture
async def replaying() -> AsyncIterator[codemode.Executor]:
    made = new_executor("python", timeout=20, checkpoints=False)
    yield made
    await made.aclose()


def checkpoints(store_kind: str, path: Path, execution_id: str) -> int:
    """How many checkpoints the run has (a read behind the runtime's back)."""
    if store_kind == "sqlite":
        import sqlite3

        with sqlite3.connect(path) as conn:
            found = conn.execute("SELECT count(*) FROM cm_checkpoints WHERE execution_id = ?", (execution_id,))
            return int(found.fetchone()[0])
    import psycopg

    from postgres_server import shared_server

    from conftest import _pg_schemas

    with psycopg.connect(shared_server().dsn(_pg_schemas[path]), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM cm_checkpoints WHERE execution_id = %s", (execution_id,)).fetchone()
        assert row is not None
        return int(row[0])


def trail(outcome: Outcome) -> list[tuple[Any, ...]]:
    """The audit trail as a user compares it: what ran, with what, and how it ended."""
    return [(c.seq, c.connector, c.method, c.args, c.result, c.state) for c in outcome.calls]


async def test_a_resume_goes_on_from_the_checkpoint(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    paused = await runtime.execute(GATED)
    assert paused.status == "paused"
    assert checkpoints(store_kind, db_path, paused.execution_id) == 1
    before = len(host_calls)
    assert before == READS + 1
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [{"id": 1, "title": "x"}, 1]
    # The gated call made again under its seq, then the one read after it: nothing before the gate.
    assert host_calls[before:] == [("items", "create_item"), ("items", "list_items")]
    assert items.counts == {"list_items": READS + 1, "create_item": 1}
    assert done.logs == ["start", "before", "after 1"]
    assert checkpoints(store_kind, db_path, paused.execution_id) == 0  # a decided run no longer needs it


async def test_the_outcome_of_a_resume_carries_the_whole_trail_as_a_plain_list(runtime: Runtime) -> None:
    """An approve reads only the run's open entries to decide and to go on; the outcome's `calls` are
    still every entry of the run, decoded when first read, and behave as the list they are."""
    paused = await runtime.execute(GATED, key="trail")
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    stored = await runtime.execution(paused.execution_id)
    assert stored is not None
    assert [c.seq for c in done.calls] == list(range(READS + 2)) == [e.seq for e in stored.log]
    assert done.calls == stored.log and type(done.calls) is list
    assert done.calls[READS].method == "create_item" and done.calls[READS].result == {"id": 1, "title": "x"}
    assert done.calls[READS].decision is not None and done.calls[READS].decision.kind == "approve"
    for copy_of in (lambda o: pickle.loads(pickle.dumps(o)), copy.deepcopy, dataclasses.replace):
        again = await runtime.execute(GATED, key="trail")  # the run's outcome as it stands, read anew
        copied = copy_of(again)
        assert type(copied.calls) is list and trail(copied) == trail(done) and copied == again
    assert Outcome(status="completed", execution_id="x").calls == []


async def test_checkpoint_and_replay_give_the_same_outcome(
    make_runtime: RuntimeFactory, replaying: codemode.Executor, tmp_path: Path
) -> None:
    code = (
        "import asyncio\n"
        "print('one'); print('two', end='')\n"
        "a = await items.list_items()\n"
        "x, y = await asyncio.gather(items.get_bytes(), items.create_item(title='t'))\n"
        "try:\n"
        "    await items.boom()\n"
        "except Exception as e:\n"
        "    print('caught', type(e).__name__)\n"
        "z = await items.add_note(text='n')\n"
        "{'a': a, 'x': x, 'y': y, 'z': z, 'namespace': items}\n"
    )
    outcomes = []
    for executor, path in ((None, tmp_path / "checkpoint.db"), (replaying, tmp_path / "replay.db")):
        runtime = make_runtime(Items(), path=path, **({"executor": executor} if executor else {}))
        paused = await runtime.execute(code)
        outcomes.append(await runtime.approve(paused.execution_id, paused.pending[0].seq))
    resumed, replayed = outcomes
    assert resumed.status == replayed.status == "completed"
    assert resumed.result == replayed.result
    assert resumed.result["namespace"] == "<namespace items>"
    assert resumed.logs == replayed.logs
    assert trail(resumed) == trail(replayed)


async def test_a_resume_runs_the_action_as_the_human_saw_it(runtime: Runtime, items: Items) -> None:
    """The program is not run again, so what it computed before the pause cannot change (a replay
    of this program diverges: see test_runtime)."""
    paused = await runtime.execute("import random\nawait items.create_item(title=str(random.random()))")
    title = paused.pending[0].args["title"]
    outcome = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert outcome.status == "completed", outcome.error
    assert items.items == [{"id": 1, "title": title}]


async def test_a_corrupted_checkpoint_falls_back_to_replay(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    paused = await runtime.execute(GATED)
    execute_sql(store_kind, db_path, "UPDATE cm_checkpoints SET state = ?", (b"\x00corrupted" * 100,))
    before = len(host_calls)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [{"id": 1, "title": "x"}, 1]
    assert len(host_calls) - before == READS + 2  # replayed from the start
    assert items.counts == {"list_items": READS + 1, "create_item": 1}
    assert done.logs == ["start", "before", "after 1"]


async def test_a_changed_digest_or_metadata_is_detected(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    paused = await runtime.execute(GATED)
    execute_sql(store_kind, db_path, "UPDATE cm_checkpoints SET meta = meta || ' '")
    before = len(host_calls)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert len(host_calls) - before == READS + 2


class MoreItems(Items):
    """The same connector with one more tool: another connector set for the program."""

    @codemode.tool
    async def count_items(self) -> int:
        """How many items there are."""
        return len(self.items)


async def test_a_changed_connector_set_falls_back_to_replay(
    make_runtime: RuntimeFactory, items: Items, host_calls: list[tuple[str, str]]
) -> None:
    paused = await make_runtime(items).execute(GATED)
    other = MoreItems()
    before = len(host_calls)
    done = await make_runtime(other).approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert len(host_calls) - before == READS + 2
    assert other.counts == {"list_items": 1, "create_item": 1}  # the gated action and the read after it


async def test_changed_code_falls_back_to_replay(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    paused = await runtime.execute(GATED)
    execute_sql(store_kind, db_path, "UPDATE cm_executions SET code = code || ?", ("\n# edited\n",))
    before = len(host_calls)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert len(host_calls) - before == READS + 2


async def test_a_batch_decided_one_by_one_resumes_from_the_checkpoint(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    code = (
        "import asyncio\n"
        "first = await items.list_items()\n"
        "a, b, c = await asyncio.gather(items.create_item(title='a'), items.get_bytes(), "
        "items.create_item(title='b'))\n"
        "[a, b, c]\n"
    )
    paused = await runtime.execute(code)
    assert [p.args["title"] for p in paused.pending] == ["a", "b"]
    waiting = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert waiting.status == "paused"
    assert checkpoints(store_kind, db_path, paused.execution_id) == 1
    before = len(host_calls)
    done = await runtime.approve(paused.execution_id, paused.pending[1].seq)
    assert done.status == "completed", done.error
    assert done.result == [{"id": 1, "title": "a"}, b"\x01\x02\x03\x04\x05", {"id": 2, "title": "b"}]
    # The three calls in flight at the pause, made again; the read before them is not.
    assert sorted(host_calls[before:]) == [("items", "create_item"), ("items", "create_item"), ("items", "get_bytes")]
    assert items.counts == {"list_items": 1, "create_item": 2, "get_bytes": 1}


async def test_rejected_with_resume_raises_in_the_program_from_the_checkpoint(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]]
) -> None:
    code = (
        "await items.list_items()\n"
        "try:\n"
        "    await items.create_item(title='no')\n"
        "except PermissionError as e:\n"
        "    print('refused:', e)\n"
        "'went on'\n"
    )
    paused = await runtime.execute(code)
    before = len(host_calls)
    assert await runtime.reject(paused.execution_id, paused.pending[0].seq, by="ann", reason="nope", resume=True)
    assert host_calls[before:] == [("items", "create_item")]
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "completed"
    assert execution.result == "went on"
    assert execution.logs == ["refused: Action items.create_item rejected by ann: nope"]
    assert items.counts == {"list_items": 1}


async def test_a_second_pause_after_a_resume_checkpoints_again(
    make_runtime: RuntimeFactory, replaying: codemode.Executor, tmp_path: Path
) -> None:
    code = (
        "a = await items.create_item(title='a')\n"
        "print('one', a['id'])\n"
        "b = await items.create_item(title='b')\n"
        "print('two', b['id'])\n"
        "[a, b]\n"
    )
    outcomes = []
    for executor, path in ((None, tmp_path / "checkpoint.db"), (replaying, tmp_path / "replay.db")):
        runtime = make_runtime(Items(), path=path, **({"executor": executor} if executor else {}))
        first = await runtime.execute(code)
        second = await runtime.approve(first.execution_id, first.pending[0].seq)
        assert second.status == "paused"
        outcomes.append(await runtime.approve(second.execution_id, second.pending[0].seq))
    resumed, replayed = outcomes
    assert resumed.status == replayed.status == "completed"
    assert resumed.result == replayed.result
    assert resumed.logs == replayed.logs == ["one 1", "two 2"]
    assert trail(resumed) == trail(replayed)


async def test_a_reexecute_read_is_never_kept_in_a_checkpoint(
    runtime: Runtime, items: Items, store_kind: str, db_path: Path
) -> None:
    paused = await runtime.execute("r = await items.read_counter()\nawait items.create_item(title='x')\nr\n")
    assert checkpoints(store_kind, db_path, paused.execution_id) == 0
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed"
    assert done.result == {"reads": 2}  # replayed: the read ran again, fresh


async def test_deleting_rolling_back_rejecting_or_expiring_drops_the_checkpoint(
    runtime: Runtime, store_kind: str, db_path: Path
) -> None:
    from datetime import timedelta

    runs = [await runtime.execute(GATED) for _ in range(4)]
    assert all(checkpoints(store_kind, db_path, r.execution_id) == 1 for r in runs)
    await runtime.delete_execution(runs[0].execution_id)
    await runtime.rollback(runs[1].execution_id)
    assert await runtime.reject(runs[2].execution_id, runs[2].pending[0].seq)
    await asyncio.sleep(0.01)
    assert runs[3].execution_id in await runtime.expire_paused(timedelta(0))
    assert [checkpoints(store_kind, db_path, r.execution_id) for r in runs] == [0, 0, 0, 0]


async def test_two_hosts_approving_at_once_run_the_action_once(
    make_runtime: RuntimeFactory, items: Items, store_kind: str, db_path: Path
) -> None:
    paused = await make_runtime(items).execute(GATED)
    hosts = [make_runtime(items) for _ in range(2)]
    outcomes = await asyncio.gather(*(h.approve(paused.execution_id, paused.pending[0].seq) for h in hosts))
    assert sorted(o.status for o in outcomes) == ["completed", "error"]
    assert items.counts["create_item"] == 1


async def test_deno_replays(
    make_runtime: RuntimeFactory, items: Items, host_calls: list[tuple[str, str]], store_kind: str, db_path: Path
) -> None:
    deno = new_executor("javascript", timeout=20)
    try:
        runtime = make_runtime(items, executor=deno)
        paused = await runtime.execute(
            "await items.list_items();\nconst item = await items.create_item({ title: 'x' });\nreturn item;"
        )
        assert checkpoints(store_kind, db_path, paused.execution_id) == 0
        before = len(host_calls)
        done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    finally:
        await deno.aclose()
    assert done.status == "completed", done.error
    assert host_calls[before:] == [("items", "list_items"), ("items", "create_item")]


@pytest.mark.sqlite_only
async def test_a_restore_that_fails_falls_back_to_replay(
    runtime: Runtime, items: Items, host_calls: list[tuple[str, str]], db_path: Path
) -> None:
    """Bytes that pass the digest (rewritten with it) but do not restore: the resume replays."""
    import sqlite3

    from codemode.runtime.checkpoint import _digest

    paused = await runtime.execute(GATED)
    with sqlite3.connect(db_path) as conn:
        binding, meta = conn.execute("SELECT binding, meta FROM cm_checkpoints").fetchone()
        state = b"not a monty dump"
        conn.execute("UPDATE cm_checkpoints SET state = ?, digest = ?", (state, _digest(binding, meta, state)))
    before = len(host_calls)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert len(host_calls) - before == READS + 2
    assert items.counts == {"list_items": READS + 1, "create_item": 1}


async def test_a_pause_inside_a_snippet_replays(runtime: Runtime, items: Items, store_kind: str, db_path: Path) -> None:
    source = await runtime.execute("await items.create_item(title='from a snippet')")
    await runtime.save_snippet("make_item", execution_id=source.execution_id)
    paused = await runtime.execute("await items.list_items()\nmade = await codemode.run('make_item')\nmade\n")
    assert paused.status == "paused", paused.error
    assert checkpoints(store_kind, db_path, paused.execution_id) == 0
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert items.counts["create_item"] == 1


async def test_a_pause_with_a_sleep_in_flight_replays(
    runtime: Runtime, items: Items, store_kind: str, db_path: Path
) -> None:
    code = (
        "import asyncio\n"
        "_, item = await asyncio.gather(asyncio.sleep(0.5), items.create_item(title='x'))\n"
        "print('done')\n"
        "item\n"
    )
    paused = await runtime.execute(code)
    assert checkpoints(store_kind, db_path, paused.execution_id) == 0
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"id": 1, "title": "x"}
    assert done.logs == ["done"]
