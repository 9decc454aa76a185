"""PostgresStore specifics, on a real server of the test's own: bad DSNs, a server restart or a killed
connection in the middle of a pass, a server that is down, and notifications across hosts.

Everything else a store must do is the contract suite (tests/store) and the runtime, approval and race
suites, which run on PostgreSQL too.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

import codemode
from codemode import Connector, ToolContext, tool
from codemode.replay import Call
from history import exercise, insert_history
from postgres_server import PostgresServer


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of this test alone: these tests stop and restart it."""
    own = PostgresServer()
    own.start()
    yield own
    own.close()


class Effects(Connector):
    """Every effect is counted by idempotency key; `hook` runs inside the call (the fault)."""

    name = "fx"

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.hook: Any = None

    @tool
    async def act(self, n: int, ctx: ToolContext) -> int:
        """An effect."""
        self.ran.append(ctx.idempotency_key)
        if self.hook is not None:
            hook, self.hook = self.hook, None
            await asyncio.to_thread(hook)
        return n

    @tool(requires_approval=True)
    async def pay(self, n: int, ctx: ToolContext) -> int:
        """A gated effect."""
        self.ran.append(ctx.idempotency_key)
        return n


PROGRAM = "a = await fx.act(n=1)\nb = await fx.act(n=2)\nreturn a + b"


async def test_a_bad_dsn_says_what_is_wrong_without_the_password() -> None:
    store = codemode.PostgresStore("host=/nonexistent-dir dbname=nope user=someone password=s3cret connect_timeout=2")
    with pytest.raises(codemode.StoreConnectionError, match="Cannot connect to PostgreSQL") as raised:
        await store.open()
    assert "s3cret" not in str(raised.value)
    assert isinstance(raised.value, codemode.StoreError) and isinstance(raised.value, ConnectionError)
    assert "Check the DSN" in str(raised.value)
    garbled = codemode.PostgresStore("this is = not a dsn =")
    with pytest.raises(codemode.StoreConnectionError):
        await garbled.open()


async def test_a_server_restart_mid_pass_loses_nothing(server: PostgresServer) -> None:
    fx = Effects()
    fx.hook = lambda: server.restart("fast")  # every pooled connection breaks while the call runs
    async with codemode.Runtime([fx], store=codemode.PostgresStore(server.dsn())) as runtime:
        outcome = await runtime.execute(PROGRAM)
        assert outcome.status == "completed", outcome.error
        assert outcome.result == 3
        assert len(fx.ran) == 2 and len(set(fx.ran)) == 2  # each effect once
        execution = await runtime.execution(outcome.execution_id)
        assert execution is not None and [e.state for e in execution.log] == ["applied", "applied"]


async def test_a_killed_connection_mid_pass_is_replaced(server: PostgresServer) -> None:
    fx = Effects()

    def kill_every_backend() -> None:
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                "AND datname = current_database()"
            )

    fx.hook = kill_every_backend
    async with codemode.Runtime([fx], store=codemode.PostgresStore(server.dsn())) as runtime:
        outcome = await runtime.execute(PROGRAM)
        assert outcome.status == "completed", outcome.error
        assert len(fx.ran) == 2


async def test_a_server_down_mid_pass_fails_the_pass_cleanly_and_recover_finishes_it(server: PostgresServer) -> None:
    fx = Effects()
    fx.hook = lambda: server.stop("fast")
    store = codemode.PostgresStore(server.dsn(), connect_timeout=2)
    async with codemode.Runtime([fx], store=store, heartbeat_interval=0.2) as runtime:
        failed = await runtime.execute(PROGRAM)
        assert failed.status == "error"
        assert "durable log could not be written" in (failed.error or "") and "`recover` it" in (failed.error or "")
        server.start()
        [execution] = await runtime.executions()
        assert execution.status == "running"  # the first call ran; its result could not be recorded
        await asyncio.sleep(1.2)
        outcome = await runtime.recover(execution.id, stale_after=timedelta(seconds=1))
        assert outcome.status == "completed", outcome.error
        # The call whose result was lost re-ran once, with the same idempotency key (the crash window).
        assert fx.ran[0] == fx.ran[1] and len(fx.ran) == 3 and len(set(fx.ran)) == 2


async def test_a_restart_while_paused_keeps_the_approval_exactly_once(server: PostgresServer) -> None:
    fx = Effects()
    async with codemode.Runtime([fx], store=codemode.PostgresStore(server.dsn())) as runtime:
        paused = await runtime.execute("return await fx.pay(n=5)")
        assert paused.status == "paused"
        server.restart("immediate")  # a crash of the server, not a clean shutdown
        done = await runtime.approve(paused.execution_id, paused.pending[0].seq, by="ana")
        assert done.status == "completed", done.error
        assert done.result == 5 and len(fx.ran) == 1
        again = await runtime.approve(paused.execution_id, paused.pending[0].seq, by="bob")
        assert again.status == "error" and "not awaiting a decision" in (again.error or "")
        assert len(fx.ran) == 1


async def test_every_host_hears_of_a_pause_and_its_decision(server: PostgresServer) -> None:
    dsn = server.dsn()
    listener = codemode.PostgresStore(dsn)
    heard: list[codemode.StoreChange] = []
    ready = asyncio.Event()

    async def listen() -> None:
        async for change in listener.changes(ready=ready):
            heard.append(change)
            if change.status == "completed":
                return

    task = asyncio.ensure_future(listen())
    await asyncio.wait_for(ready.wait(), 10)
    async with codemode.Runtime([Effects()], store=codemode.PostgresStore(dsn), name="other-host") as runtime:
        paused = await runtime.execute("return await fx.pay(n=5)")
        await runtime.approve(paused.execution_id, paused.pending[0].seq)
    await asyncio.wait_for(task, 10)
    assert [(c.runtime, c.execution_id, c.status) for c in heard] == [
        ("other-host", paused.execution_id, "paused"),
        ("other-host", paused.execution_id, "running"),
        ("other-host", paused.execution_id, "completed"),
    ]


def test_the_several_hosts_example_runs(server: PostgresServer) -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "postgres_hosts.py"
    done = subprocess.run([sys.executable, str(example), server.dsn()], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("sending 3000 to ana") == 1  # one approved action, sent once, by the approval host
    assert "heard paused" in done.stdout and "the run is completed" in done.stdout
    assert "approve by finance-lead" in done.stdout
    assert done.stdout.count("is not awaiting a decision") == 2


def test_a_host_whose_clock_runs_ahead_does_not_take_a_live_run_for_dead(
    server: PostgresServer, tmp_path: Path
) -> None:
    """Runs are stamped and aged by the database's clock: a host an hour ahead sees the live pass as live."""
    from test_races import Worker

    dsn, ledger = server.dsn(server.new_schema()), str(tmp_path / "ledger")
    paused = Worker("pause", dsn, ledger).result()
    assert paused["status"] == "paused", paused
    # The approved payment takes 4 s: the pass is live, its heartbeat touching the run every 0.2 s.
    approver = Worker("approve", dsn, ledger, paused["id"], "1", "--delay", "4")
    time.sleep(2.0)
    skewed = Worker("recover", dsn, ledger, paused["id"], "--stale", "60", "--clock-skew", "3600").result()
    assert "cannot be recovered (status: running)" in (skewed.get("error") or ""), skewed
    done = approver.result()
    assert done["status"] == "completed", done
    assert [line.split()[1] for line in Path(ledger).read_text().splitlines()] == ["reserve", "pay"]


STORM_HOST = """
import asyncio, json, sys
import codemode

async def host(dsn: str, runs: int) -> None:
    store = codemode.PostgresStore(dsn)
    await store.open()
    errors: list[str] = []

    async def one() -> None:
        try:
            begun = await store.begin("storm", "return 1", [], 5)
            assert await store.heartbeat("storm", begun.execution_id, 1)
            assert await store.complete("storm", begun.execution_id, 1, "1", [])
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one() for _ in range(runs)))
    await store.close()
    print(json.dumps(errors))

asyncio.run(host(sys.argv[1], int(sys.argv[2])))
"""


def test_eight_hosts_passing_many_runs_at_once_all_commit(server: PostgresServer) -> None:
    """Passes of different runs share no row, so none may lose a serialization conflict for good: with a
    status index the point writes read every live run, and `begin`'s prune read every ended one."""
    dsn = server.dsn(server.new_schema())
    asyncio.run(_opened(dsn))
    hosts = [
        subprocess.Popen([sys.executable, "-c", STORM_HOST, dsn, "40"], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    errors = [error for host in hosts for error in json.loads(host.communicate(timeout=240)[0])]
    assert errors == []
    with psycopg.connect(dsn) as conn:
        statuses = conn.execute("SELECT status, count(*) FROM cm_executions GROUP BY status").fetchall()
    assert [status for status, _ in statuses] == ["completed"]  # nothing left running
    assert 5 <= statuses[0][1] <= 8 * 40  # each begin pruned what had ended before it


async def _opened(dsn: str) -> None:
    store = codemode.PostgresStore(dsn)
    await store.open()
    await store.close()


async def test_a_conflict_past_the_retries_says_so(server: PostgresServer) -> None:
    """A transaction aborted more often than `conflict_retries` raises StoreConflictError naming the
    operation, not the driver's SerializationFailure."""
    dsn = server.dsn(server.new_schema())
    store = codemode.PostgresStore(dsn, conflict_retries=0)
    await store.open()
    begun = await store.begin("rt", "return 1", [], 10)
    other = await psycopg.AsyncConnection.connect(dsn)
    await other.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
    await other.execute("UPDATE cm_executions SET updated_at = updated_at + 1 WHERE id = %s", (begun.execution_id,))
    beat = asyncio.ensure_future(store.heartbeat("rt", begun.execution_id, 1))  # waits for the row lock
    await asyncio.sleep(0.5)
    await other.commit()
    await other.close()
    with pytest.raises(codemode.StoreConflictError, match="aborted heartbeat 1 times in a row"):
        await beat
    assert await store.heartbeat("rt", begun.execution_id, 1)  # the next try goes through
    await store.close()


async def test_changes_end_with_a_store_connection_error_when_the_connection_drops(server: PostgresServer) -> None:
    """A listener must learn that it stopped hearing (it may have missed changes), as the documented error."""
    store = codemode.PostgresStore(server.dsn())
    ready = asyncio.Event()

    async def listen() -> None:
        async for _ in store.changes(ready=ready):
            pass

    task = asyncio.ensure_future(listen())
    await asyncio.wait_for(ready.wait(), 10)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%'")
    with pytest.raises(codemode.StoreConnectionError, match="stopped listening"):
        await asyncio.wait_for(task, 10)


FROZEN_HOST = """
import asyncio, os, signal, sys
import codemode

async def freeze(dsn: str, execution_id: str) -> None:
    store = codemode.PostgresStore(dsn)
    await store.open()
    pool = await store._loop_pool()
    async with pool.connection() as conn:  # one of the store's own connections, mid-transaction
        await conn.execute("UPDATE cm_executions SET updated_at = updated_at WHERE id = %s", (execution_id,))
        print("locked", flush=True)
        os.kill(os.getpid(), signal.SIGSTOP)  # the host freezes holding the row lock

asyncio.run(freeze(sys.argv[1], sys.argv[2]))
"""


async def test_a_host_frozen_mid_transaction_does_not_hang_the_others(server: PostgresServer) -> None:
    """A host stopped (SIGSTOP) inside a transaction holds its row lock; the server ends that transaction
    after a while, so other hosts' operations on the run go through instead of waiting forever."""
    dsn = server.dsn(server.new_schema())
    store = codemode.PostgresStore(dsn)
    await store.open()
    begun = await store.begin("rt", "return 1", [], 10)
    frozen = subprocess.Popen(
        [sys.executable, "-c", FROZEN_HOST, dsn, begun.execution_id], stdout=subprocess.PIPE, text=True
    )
    try:
        assert frozen.stdout is not None and frozen.stdout.readline().strip() == "locked"
        started = time.monotonic()
        assert await asyncio.wait_for(store.heartbeat("rt", begun.execution_id, 1), 40)
        assert time.monotonic() - started < 30
    finally:
        frozen.kill()
        frozen.wait()
        await store.close()


class CommitDropper:
    """A real Unix-socket proxy in front of the server that, while `armed`, cuts the connection at the
    next COMMIT: before passing it on (`deliver=False`: the server never commits) or right after (the
    server commits, its reply is lost), a network break exactly while a transaction commits."""

    def __init__(self, server: PostgresServer, directory: Path) -> None:
        self.target = str(server.socket_dir / ".s.PGSQL.5432")
        self.directory = directory
        self.armed = 0
        self.deliver = False
        self.dropped = 0
        self.marker = b"COMMIT"  # what the cut waits for: a COMMIT, or a statement that commits by itself

    async def start(self) -> asyncio.AbstractServer:
        return await asyncio.start_unix_server(self._serve, path=str(self.directory / ".s.PGSQL.5432"))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        cut = asyncio.Event()

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter, client: bool) -> None:
            try:
                while chunk := await source.read(65536):
                    if not client and cut.is_set():
                        break  # the server's reply to the COMMIT is lost
                    if client and self.armed and self.marker in chunk:
                        self.armed -= 1
                        self.dropped += 1
                        cut.set()
                        if self.deliver:
                            sink.write(chunk)
                            await sink.drain()
                            await asyncio.sleep(0.3)  # the server commits meanwhile
                        break
                    sink.write(chunk)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            for side in (writer, up_writer):
                side.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))


async def test_a_break_while_committing_is_resolved_by_asking_the_server(
    server: PostgresServer, tmp_path: Path
) -> None:
    """A connection cut at COMMIT used to fail the operation with "it may or may not have been applied"
    (an approval then left its run running with no pass, until `recover`). The store now asks the
    server, on a fresh connection, what became of that transaction: a read or an aborted write is
    retried, a committed write returns its result."""
    proxy = CommitDropper(server, tmp_path)
    listening = await proxy.start()
    store = codemode.PostgresStore(f"host={tmp_path} dbname=postgres user={server.user}", connect_timeout=5)
    try:
        await store.open()
        begun = await store.begin("rt", "return 1", [], 10)
        proxy.armed = 1  # a read of two statements (one alone is autocommitted: it sends no COMMIT)
        execution = await asyncio.wait_for(store.get_open_execution("rt", begun.execution_id), 30)
        assert proxy.dropped == 1 and execution is not None and execution.status == "running"
        proxy.armed = 1  # a write the server never got to commit: retried
        assert await asyncio.wait_for(store.heartbeat("rt", begun.execution_id, 1), 30)
        assert proxy.dropped == 2
        # A write the server committed, its reply lost: the approval stands, and the caller owns the run.
        call = Call(seq=0, connector="fx", method="pay", args_json="{}", requires_approval=True)
        assert (await store.decide("rt", begun.execution_id, 1, call)).kind == "pause"
        assert await store.pause("rt", begun.execution_id, 1)
        proxy.armed, proxy.deliver = 1, True
        decision = codemode.Decision("approve", "ana", None, datetime.now(timezone.utc), None)
        settled = await asyncio.wait_for(store.settle("rt", begun.execution_id, 0, decision), 30)
        assert proxy.dropped == 3
        assert settled.kind == "resumed" and settled.claim is not None and settled.claim.attempt == 2
        again = await store.settle("rt", begun.execution_id, 0, decision)
        assert again.kind == "stale" and again.status == "running"  # decided once
    finally:
        proxy.armed = 0
        await store.close()
        listening.close()


async def test_a_lost_reply_to_a_per_call_statement_gives_the_same_answer_again(
    server: PostgresServer, tmp_path: Path
) -> None:
    """Logging a call and recording its result are single autocommitted statements (one round trip).
    When the server applies one and its reply is lost, the statement is sent again: the call is still
    `execute` once, the record still succeeds, and the log holds each exactly once."""
    proxy = CommitDropper(server, tmp_path)
    listening = await proxy.start()
    store = codemode.PostgresStore(f"host={tmp_path} dbname=postgres user={server.user}", connect_timeout=5)
    try:
        await store.open()
        begun = await store.begin("rt", "return 1", [], 10)
        eid = begun.execution_id
        proxy.marker, proxy.armed, proxy.deliver = b"INSERT INTO cm_log", 1, True
        call = Call(seq=0, connector="fx", method="read", args_json="{}")
        assert (await asyncio.wait_for(store.decide("rt", eid, 1, call), 30)).kind == "execute"
        assert proxy.dropped == 1
        proxy.marker, proxy.armed = b"UPDATE cm_log SET result", 1
        assert await asyncio.wait_for(store.record_result("rt", eid, 1, 0, '{"n":1}'), 30)
        assert proxy.dropped == 2
        execution = await store.get_execution("rt", eid)
        assert execution is not None
        assert [(e.seq, e.state, e.result) for e in execution.log] == [(0, "applied", {"n": 1})]
        # A second record of that seq is still refused: only the very same record answers True twice.
        with pytest.raises(LookupError):
            await store.record_result("rt", eid, 1, 0, '{"n":2}')
    finally:
        proxy.armed = 0
        await store.close()
        listening.close()


def _full_reads(node: dict[str, Any]) -> list[str]:
    """The plan nodes that read a whole table, or all of a runtime's rows by a primary key."""
    found = []
    relation = node.get("Relation Name", "")
    if relation.startswith("cm_") and node["Node Type"] == "Seq Scan":
        found.append(f"Seq Scan on {relation}")
    if node.get("Index Name", "").endswith("_pkey") and " AND " not in node.get("Index Cond", ""):
        found.append(f"{node['Node Type']} on {node['Index Name']} by {node.get('Index Cond')}")
    for child in node.get("Plans", []):
        found += _full_reads(child)
    return found


async def test_every_hot_query_reads_by_index_in_a_long_history(
    server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With 10,000 runs stored (vacuumed and analyzed, as autovacuum would), no statement of a run's life (begin and
    its retention check, calls, a pause, the approval queue, a decision, the listings, pruning, deleting)
    reads a whole table: each uses an index. The statements are recorded as the store sends them."""
    from codemode.store import postgres

    dsn = server.dsn(server.new_schema())
    store = codemode.PostgresStore(dsn)
    await store.open()
    with psycopg.connect(dsn) as conn:
        insert_history(
            lambda sql, rows: conn.cursor().executemany(sql.replace("?", "%s"), rows), "rt", 10_000, paused=10
        )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE cm_executions")
        conn.execute("VACUUM ANALYZE cm_log")
    sent: list[tuple[str, tuple[Any, ...]]] = []
    send = postgres._PgTx.execute

    async def recorded(self: Any, sql: str, params: Sequence[Any] = ()) -> Any:
        sent.append((sql, tuple(params)))
        return await send(self, sql, params)

    monkeypatch.setattr(postgres._PgTx, "execute", recorded)  # records, then sends as it was
    await exercise(store, "rt", keep=9990)
    monkeypatch.undo()
    await store.close()
    statements = {sql: params for sql, params in sent if sql.split()[0] in ("SELECT", "UPDATE", "DELETE", "INSERT")}
    assert any("OFFSET" in sql for sql in statements)  # the retention check ran
    bad = {}
    with psycopg.connect(dsn) as conn:
        for sql, params in statements.items():
            if "pg_" in sql:
                continue  # the server's own functions (notify, transaction id)
            plan = conn.execute(f"EXPLAIN (FORMAT JSON) {sql.replace('?', '%s')}", params).fetchone()[0][0]["Plan"]
            if _full_reads(plan):
                bad[sql] = _full_reads(plan)
    assert bad == {}, "\n".join(f"{k}: {v}" for k, v in bad.items())
