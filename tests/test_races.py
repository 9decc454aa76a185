"""Races and crashes on one run: several OS processes, threads and tasks sharing one database (every
test runs on a SQLite file and on a real PostgreSQL server: the processes are hosts).

Every effect and every revert is a line in an append-only ledger file (see `race_worker.py`), with the
call's idempotency key, so each test counts what *really* ran, across processes, and checks it against
the run's durable log:

- an effect runs at most once (the one documented exception: a host killed after a call ran and
  before its result was recorded re-runs that call once on recovery, with the same key);
- a revert runs at most once, and only for an effect that ran;
- whatever wins a race, the final state is consistent with the ledger: `completed` means every
  call applied once, `rolled_back` means every applied revertible effect was reverted exactly once,
  `rejected` means the gated effect never ran.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from race_worker import act, describe, make_runtime, programs, wait_until

from conftest import execute_sql

BOTH_STORES = True  # every test runs on a SQLite file and on a PostgreSQL schema (see `database`)
_backend = "sqlite"


@pytest.fixture(autouse=True)
def _store_backend(store_kind: str) -> None:
    global _backend
    _backend = store_kind


def database(tmp_path: Path, name: str) -> Any:
    """A fresh database for one run of a test: a SQLite file, or a PostgreSQL DSN with a schema of its own."""
    if _backend == "sqlite":
        return tmp_path / name
    from postgres_server import shared_server

    server = shared_server()
    return server.dsn(server.new_schema())


WORKER = Path(__file__).with_name("race_worker.py")
TIMEOUT = 60.0  # seconds, for every subprocess and thread
EXPECTED = {"reserve": {"reserved": 1}, "pay": {"paid": "x"}}
MIXED = ["approve", "reject", "rollback", "expire", "delete"]
# An approval that lost: the seq was decided (or the run ended) first, the run was deleted before it
# could be resumed, or deleted while the approved pass ran (which then wrote nothing more).
APPROVE_LOSSES = ("not awaiting a decision", "No execution", "no longer owns")
ROLLBACK_LOSSES = ("cannot be rolled back now", "is running", "was taken over", "No execution")

Ledger = list[tuple[str, str, str, int]]  # (effect | revert, method, idempotency key, pid)


# -- processes --------------------------------------------------------------------------------------


class Worker:
    """One `race_worker.py` process; with `ready`, it waits for a start instant on stdin."""

    def __init__(self, *args: str, crash_at: str | None = None, ready: bool = False) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CODEMODE_CRASH_AT"}
        if crash_at is not None:
            env["CODEMODE_CRASH_AT"] = crash_at
        command = [sys.executable, str(WORKER), *args, *(["--at", "-"] if ready else [])]
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        self.buffer = b""
        self.args = args
        LIVE.append(self)

    def wait_ready(self, deadline: float) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, "a worker never became ready"
            poller = select.poll()  # not select(): it cannot wait on a descriptor numbered 1024 or more
            poller.register(fd, select.POLLIN)
            if poller.poll(left * 1000):
                chunk = os.read(fd, 65536)
                if not chunk:
                    self.proc.wait(timeout=TIMEOUT)
                    raise AssertionError(f"a worker died before it was ready: {self.stderr()}")
                self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        assert json.loads(line) == {"ready": True}, line

    def start(self, instant: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{instant!r}\n".encode())
        self.proc.stdin.flush()

    def finish(self) -> tuple[int, str, str]:
        try:
            out, err = self.proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate(timeout=10)
            raise AssertionError(f"a worker ran longer than {TIMEOUT} s") from None
        return self.proc.returncode, (self.buffer + out).decode(), err.decode()

    def result(self) -> dict[str, Any]:
        code, out, err = self.finish()
        assert code == 0, f"worker {self.args} exited {code}: stdout {out!r}, stderr {err!r}"
        return dict(json.loads(out.strip().splitlines()[-1]))

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()


LIVE: list[Worker] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """A failed test leaves no worker behind (only the processes this test started, by pid)."""
    yield
    while LIVE:
        worker = LIVE.pop()
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait(timeout=10)


def run(*args: str) -> dict[str, Any]:
    return Worker(*args).result()


def race(db: Path, ledger: Path, ops: list[list[str]], offsets: list[float] | None = None) -> list[dict[str, Any]]:
    """Start one worker per op, wait until all are warm, then release them at one instant (+ offsets)."""
    workers = [Worker(op[0], str(db), str(ledger), *op[1:], ready=True) for op in ops]
    deadline = time.monotonic() + TIMEOUT
    for worker in workers:
        worker.wait_ready(deadline)
    start = time.time() + 0.05
    for worker, offset in zip(workers, offsets or [0.0] * len(ops), strict=True):
        worker.start(start + offset)
    return [worker.result() for worker in workers]


# -- in-process runs --------------------------------------------------------------------------------


async def pause_run(db: Path, ledger: Path, program: str = "pause") -> str:
    async with make_runtime(db, ledger) as runtime:
        outcome = await runtime.execute(programs()[program])
    assert outcome.status == "paused", outcome.error
    return outcome.execution_id


async def completed_run(db: Path, ledger: Path) -> str:
    execution_id = await pause_run(db, ledger)
    async with make_runtime(db, ledger) as runtime:
        outcome = await runtime.approve(execution_id, 1)
    assert outcome.status == "completed", outcome.error
    return execution_id


async def show(db: Path, ledger: Path, execution_id: str) -> dict[str, Any] | None:
    async with make_runtime(db, ledger) as runtime:
        execution = await runtime.execution(execution_id)
    return None if execution is None else describe(execution)


async def last_execution_id(db: Path, ledger: Path) -> str:
    async with make_runtime(db, ledger) as runtime:
        executions = await runtime.executions(limit=1)
    assert executions, "no run was begun"
    return executions[0].id


def backdate(db: Path, execution_id: str) -> None:
    """Make a paused run an hour old, so an expiry sweep (max_age 10 min) races for it."""
    sql = "UPDATE cm_executions SET updated_at = updated_at - 3600000 WHERE id = ?"
    if isinstance(db, Path):
        execute_sql("sqlite", db, sql, (execution_id,))
    else:
        import psycopg

        with psycopg.connect(str(db), autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), (execution_id,))


async def gather_race(db: Path, ledger: Path, ops: list[list[str]], delay: float = 0.0) -> list[dict[str, Any]]:
    """The ops as tasks of one event loop, alternating between two Runtime objects on the same file."""
    first, second = make_runtime(db, ledger, delay), make_runtime(db, ledger, delay)
    async with first, second:
        for runtime in (first, second):
            await runtime.setup()
            await runtime.executions(limit=1)
        tasks = []
        for i, op in enumerate(ops):
            mode, execution_id, seq, options = _parsed(op)
            tasks.append(act((first, second)[i % 2], mode, execution_id, seq, **options))
        results = await asyncio.wait_for(asyncio.gather(*tasks), TIMEOUT)
    return list(results)


def thread_race(
    db: Path, ledger: Path, ops: list[list[str]], offsets: list[float] | None = None, delay: float = 0.0
) -> list[dict[str, Any]]:
    """The ops in threads, each with its own Runtime and event loop, released together at one instant."""
    offsets = offsets or [0.0] * len(ops)
    start: list[float] = []
    barrier = threading.Barrier(len(ops), action=lambda: start.append(time.time() + 0.02))
    results: list[dict[str, Any] | None] = [None] * len(ops)
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        async def go() -> None:
            async with make_runtime(db, ledger, delay) as runtime:
                await runtime.setup()
                await runtime.executions(limit=1)
                barrier.wait(timeout=TIMEOUT)
                wait_until(start[0] + offsets[i])
                mode, execution_id, seq, options = _parsed(ops[i])
                results[i] = await act(runtime, mode, execution_id, seq, **options)

        try:
            asyncio.run(go())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(len(ops))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
        assert not thread.is_alive(), "a racing thread hung"
    assert not errors, errors
    assert all(r is not None for r in results), results
    return [r for r in results if r is not None]


def _parsed(op: list[str]) -> tuple[str, str, int, dict[str, Any]]:
    """`[mode, id, seq, --resume, --max-age N]` as act()'s arguments (the worker's CLI, in-process)."""
    words, options = list(op), dict[str, Any]()
    if "--resume" in words:
        words.remove("--resume")
        options["resume"] = True
    if "--max-age" in words:
        i = words.index("--max-age")
        options["max_age"] = float(words[i + 1])
        del words[i : i + 2]
    return words[0], words[1] if len(words) > 1 else "", int(words[2]) if len(words) > 2 else 0, options


# -- the ledger and the checks ---------------------------------------------------------------------


def read_ledger(path: Path) -> Ledger:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        kind, method, key, pid = line.split()
        rows.append((kind, method, key, int(pid)))
    return rows


def counts(ledger: Ledger, kind: str) -> Counter[str]:
    return Counter(key for k, _, key, _ in ledger if k == kind)


def assert_no_repeats(ledger: Ledger, execution_id: str, repeated: frozenset[str] = frozenset()) -> None:
    """No effect twice (except a documented crash window), no revert twice, no revert without its effect."""
    effects, reverts = counts(ledger, "effect"), counts(ledger, "revert")
    assert all(key.startswith(execution_id + ":") for _, _, key, _ in ledger), ledger
    for key, n in effects.items():
        assert n == (2 if key in repeated else 1), f"effect {key} ran {n} times: {ledger}"
    for key in repeated:
        assert effects[key] == 2, f"{key} was expected to re-run once on recovery: {ledger}"
    for i, (kind, _, key, _) in enumerate(ledger):
        if kind == "revert":
            assert reverts[key] == 1, f"revert of {key} ran {reverts[key]} times: {ledger}"
            assert any(k == "effect" and earlier == key for k, _, earlier, _ in ledger[:i]), ledger


def assert_consistent(execution: dict[str, Any] | None, ledger: Ledger, execution_id: str) -> None:
    """The durable log and the ledger agree, whatever state the run ended in."""
    assert_no_repeats(ledger, execution_id)
    if execution is None:  # deleted: only the at-most-once rules above are left to check
        return
    effects, reverts = counts(ledger, "effect"), counts(ledger, "revert")
    states = {}
    for entry in execution["log"]:
        key, state = f"{execution_id}:{entry['seq']}", entry["state"]
        states[entry["seq"]] = state
        if state == "applied":
            assert effects[key] == 1 and reverts[key] == 0, (entry, ledger)
        elif state == "reverted":
            assert reverts[key] == effects[key], (entry, ledger)  # 0 == 0: a pending call that never ran
        elif state == "pending":
            assert effects[key] == 0, (entry, ledger)
        else:
            raise AssertionError(f"an ended run holds an entry {state}: {execution}")
    status = execution["status"]
    assert status in ("completed", "rejected", "rolled_back"), execution
    if status == "completed":
        assert set(states.values()) == {"applied"}, execution
        assert execution["result"] == EXPECTED, execution
    elif status == "rolled_back":
        assert set(states.values()) == {"reverted"}, execution
        assert effects.keys() == reverts.keys(), ledger  # every applied effect reverted exactly once
    else:
        assert effects[f"{execution_id}:1"] == 0, f"a rejected run's gated call ran: {ledger}"


def check_approve4(outcomes: list[dict[str, Any]], execution: dict[str, Any] | None, ledger: Ledger, eid: str) -> None:
    completed = [o for o in outcomes if o["status"] == "completed"]
    assert len(completed) == 1, outcomes
    assert completed[0]["result"] == EXPECTED
    for o in outcomes:
        if o is not completed[0]:
            assert o["status"] == "error" and "not awaiting a decision" in o["error"], o
    assert [(k, m) for k, m, _, _ in ledger] == [("effect", "reserve"), ("effect", "pay")], ledger
    assert execution is not None and execution["status"] == "completed"
    assert_consistent(execution, ledger, eid)


def check_mixed(
    results: dict[str, dict[str, Any]], execution: dict[str, Any] | None, ledger: Ledger, eid: str
) -> str | None:
    """One paused run raced by approve, reject, rollback, expire (and maybe delete).

    Returns who decided the pending call: the approval (it ran), the rejection or the expiry (it
    never ran), or the rollback (it claimed the run while paused: it never ran); None when the
    delete came first."""
    assert_consistent(execution, ledger, eid)
    pay_runs = counts(ledger, "effect")[f"{eid}:1"]
    approve, reject, rollback, expire = (results[m] for m in ("approve", "reject", "rollback", "expire"))
    delete = results.get("delete")
    approved = approve["status"] == "completed"
    if approved:
        assert approve["result"] == EXPECTED and pay_runs == 1, (approve, ledger)
    else:
        assert approve["status"] == "error" and any(s in approve["error"] for s in APPROVE_LOSSES), approve
    # It won the pending call, and then the delete cut its pass short (the pass wrote nothing more).
    cut_short = not approved and "no longer owns" in approve["error"]
    if cut_short:
        assert execution is None, (approve, execution)
    assert isinstance(reject["ok"], bool), reject
    assert expire["expired"] in ([], [eid]), expire
    rolled = "report" in rollback and "exc" not in rollback
    taken_over = not rolled and "was taken over" in rollback.get("message", "")  # deleted mid-rollback
    if not rolled:
        assert rollback.get("exc") in ("RuntimeError", "ExecutionNotFoundError"), rollback
        assert any(s in rollback["message"] for s in ROLLBACK_LOSSES), rollback
    if taken_over:
        assert execution is None, (rollback, execution)
    contenders = (("approve", approved or cut_short), ("reject", reject["ok"]), ("expire", expire["expired"]))
    deciders = [m for m, won in contenders if won]
    if (rolled or taken_over) and not deciders:
        deciders = ["rollback"]  # it claimed the paused run (a reject or an expiry needs it paused)
    assert len(deciders) <= 1, results  # the pending call was decided once
    if deciders != ["approve"]:
        assert pay_runs == 0, (results, ledger)
    if delete is not None:
        assert isinstance(delete["ok"], bool), delete
        assert delete["ok"] == (execution is None), (delete, execution)
        return deciders[0] if deciders else None
    # No delete: someone decided, and the final state follows from who did and whether a rollback ran.
    assert len(deciders) == 1 and execution is not None, results
    if rolled:
        # newest first: the payment only if it ran; the reserve in any case
        assert rollback["report"] == {"reverted": [1, 0] if approved else [0], "irreversible": [], "failed": []}
        assert execution["status"] == "rolled_back", (results, execution)
    else:
        assert execution["status"] == ("completed" if approved else "rejected"), (results, execution)
    return deciders[0]


def mixed_rounds() -> list[tuple[list[str], bool]]:
    """(start order, staggered): without delete, all at once and then each contender first; with
    delete, all at once, then a delete landing inside the approved pass and inside a rollback."""
    four = ["approve", "reject", "rollback", "expire"]
    return [
        (four, False),
        *((four[i:] + four[:i], True) for i in range(len(four))),
        (MIXED, False),
        (["approve", "delete", "reject", "rollback", "expire"], True),
        (["rollback", "delete", "approve", "reject", "expire"], True),
    ]


def mixed_ops(eid: str) -> dict[str, list[str]]:
    return {
        "approve": ["approve", eid, "1"],
        "reject": ["reject", eid, "1"],
        "rollback": ["rollback", eid],
        "expire": ["expire", "--max-age", "600"],
        "delete": ["delete", eid],
    }


def mixed_race(tmp_path: Path, racer: Any, stagger: float) -> list[tuple[list[str], str | None]]:
    """Every round on a fresh paused run (made an hour old, so the expiry sweep is a contender).

    `racer(db, ledger, ops, offsets)` runs the ops, op i starting `offsets[i]` after the first."""
    seen = []
    for n, (order, staggered) in enumerate(mixed_rounds()):
        db, ledger = database(tmp_path, f"{n}.db"), tmp_path / f"{n}.ledger"
        eid = asyncio.run(pause_run(db, ledger))
        backdate(db, eid)
        ops = mixed_ops(eid)
        offsets = [stagger * i if staggered else 0.0 for i in range(len(order))]
        results = racer(db, ledger, [ops[mode] for mode in order], offsets)
        execution = asyncio.run(show(db, ledger, eid))
        decided = check_mixed(dict(zip(order, results, strict=True)), execution, read_ledger(ledger), eid)
        seen.append((order, decided))
        # A head start wins: the start orders really differed. Tasks on one event loop (stagger 0) get
        # their head start from list order only where a store call never yields (SQLite); on PostgreSQL
        # their statements interleave at the server, so any of them may win.
        if staggered and (stagger > 0 or _backend == "sqlite"):
            assert decided == order[0], (order, decided, results)
    return seen


def check_rollback4(results: list[dict[str, Any]], execution: dict[str, Any] | None, ledger: Ledger, eid: str) -> None:
    reports = [r["report"] for r in results if "report" in r and "exc" not in r]
    assert reports, results
    reverted = [seq for report in reports for seq in report["reverted"]]
    assert sorted(reverted) == [0, 1], results  # each action reverted by exactly one of them
    assert [r["reverted"] for r in reports if r["reverted"]] == [[1, 0]], results  # newest first, by one
    for r in results:
        if "exc" in r:
            assert r["exc"] == "RuntimeError" and "cannot be rolled back now" in r["message"], r
    assert all(not report["failed"] and not report["irreversible"] for report in reports), reports
    assert [(k, m) for k, m, _, _ in ledger] == [
        ("effect", "reserve"),
        ("effect", "pay"),
        ("revert", "pay"),
        ("revert", "reserve"),
    ], ledger
    assert execution is not None and execution["status"] == "rolled_back"
    assert_consistent(execution, ledger, eid)


# -- four processes on one run ----------------------------------------------------------------------


def test_four_processes_approve_the_same_seq(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(pause_run(db, ledger))
    outcomes = race(db, ledger, [["approve", eid, "1"]] * 4)
    check_approve4(outcomes, asyncio.run(show(db, ledger, eid)), read_ledger(ledger), eid)


def test_processes_race_approve_reject_rollback_expire_delete(tmp_path: Path) -> None:
    def racer(db: Path, ledger: Path, ops: list[list[str]], offsets: list[float]) -> list[dict[str, Any]]:
        return race(db, ledger, [[*op, "--delay", "0.05"] for op in ops], offsets)

    mixed_race(tmp_path, racer, stagger=0.02)


def test_four_processes_roll_back_one_completed_run(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(completed_run(db, ledger))
    results = race(db, ledger, [["rollback", eid]] * 4)
    check_rollback4(results, asyncio.run(show(db, ledger, eid)), read_ledger(ledger), eid)


# -- tasks of one event loop over two Runtime objects on one file ----------------------------------


async def test_gather_two_runtimes_approve_the_same_seq(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = await pause_run(db, ledger)
    outcomes = await gather_race(db, ledger, [["approve", eid, "1"]] * 4)
    check_approve4(outcomes, await show(db, ledger, eid), read_ledger(ledger), eid)


def test_gather_two_runtimes_race_approve_reject_rollback_expire_delete(tmp_path: Path) -> None:
    def racer(db: Path, ledger: Path, ops: list[list[str]], offsets: list[float]) -> list[dict[str, Any]]:
        return asyncio.run(gather_race(db, ledger, ops, delay=0.02))  # the head start: earlier in the list

    mixed_race(tmp_path, racer, stagger=0.0)


async def test_gather_two_runtimes_roll_back_one_completed_run(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = await completed_run(db, ledger)
    results = await gather_race(db, ledger, [["rollback", eid]] * 4)
    check_rollback4(results, await show(db, ledger, eid), read_ledger(ledger), eid)


# -- threads, each with its own Runtime and event loop ---------------------------------------------


def test_threads_approve_the_same_seq(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(pause_run(db, ledger))
    outcomes = thread_race(db, ledger, [["approve", eid, "1"]] * 4)
    check_approve4(outcomes, asyncio.run(show(db, ledger, eid)), read_ledger(ledger), eid)


def test_threads_race_approve_reject_rollback_expire_delete(tmp_path: Path) -> None:
    def racer(db: Path, ledger: Path, ops: list[list[str]], offsets: list[float]) -> list[dict[str, Any]]:
        return thread_race(db, ledger, ops, offsets, delay=0.05)

    mixed_race(tmp_path, racer, stagger=0.02)


def test_threads_roll_back_one_completed_run(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(completed_run(db, ledger))
    results = thread_race(db, ledger, [["rollback", eid]] * 4)
    check_rollback4(results, asyncio.run(show(db, ledger, eid)), read_ledger(ledger), eid)


# -- a batch of three gated calls, decided from different processes --------------------------------


def check_batch(db: Path, ledger: Path, eid: str, rejected: int, context: Any) -> None:
    execution = asyncio.run(show(db, ledger, eid))
    assert execution is not None and execution["status"] == "completed", (context, execution)
    names = ["a", "b", "c"]
    assert execution["result"] == ["rejected" if seq == rejected else {"paid": names[seq]} for seq in range(3)], context
    states = {e["seq"]: (e["state"], e["decision"]) for e in execution["log"]}
    assert states == {seq: ("error", "reject") if seq == rejected else ("applied", "approve") for seq in range(3)}, (
        context,
        states,
    )
    rows = read_ledger(ledger)
    assert_no_repeats(rows, eid)
    assert sorted(key for _, _, key, _ in rows) == [f"{eid}:{seq}" for seq in range(3) if seq != rejected], (
        context,
        rows,
    )
    assert all(kind == "effect" and method == "pay" for kind, method, _, _ in rows), rows


def test_batch_decided_one_by_one_from_different_processes(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    for n in range(2):
        db, ledger = database(tmp_path, f"{n}.db"), tmp_path / f"{n}.ledger"
        eid = asyncio.run(pause_run(db, ledger, "batch"))
        order = [0, 1, 2]
        rng.shuffle(order)
        rejected = rng.choice(order)
        context = {"seed": seed, "order": order, "rejected": rejected}
        for i, seq in enumerate(order):
            last = i == len(order) - 1
            if seq == rejected:
                out = run("reject", str(db), str(ledger), eid, str(seq), "--resume")
                assert out["ok"] is True, (context, out)
            else:
                out = run("approve", str(db), str(ledger), eid, str(seq))
                if last:
                    assert out["status"] == "completed", (context, out)
                else:
                    assert out["status"] == "paused" and out["pending"] == sorted(order[i + 1 :]), (context, out)
            if not last:
                assert read_ledger(ledger) == [], (context, "nothing runs before the last decision")
            # A second click on the same seq, from yet another process, changes nothing.
            again = run("approve", str(db), str(ledger), eid, str(seq))
            assert again["status"] == "error" and "not awaiting a decision" in again["error"], (context, again)
        check_batch(db, ledger, eid, rejected, context)


def test_batch_decided_at_once_by_three_processes(tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rejected = random.Random(seed).randrange(3)
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(pause_run(db, ledger, "batch"))
    ops = [["reject", eid, str(seq), "--resume"] if seq == rejected else ["approve", eid, str(seq)] for seq in range(3)]
    results = race(db, ledger, ops)
    context = {"seed": seed, "rejected": rejected, "results": results}
    approvals = [r for r in results if r["mode"] == "approve"]
    assert all(r["status"] in ("paused", "completed") for r in approvals), context
    assert results[rejected]["ok"] is True, context
    # Exactly one decision was the last one and resumed the run: an approval that completed, or the
    # rejection (then both approvals saw it still paused).
    assert sum(r["status"] == "completed" for r in approvals) <= 1, context
    check_batch(db, ledger, eid, rejected, context)


# -- SIGKILL at every commit point, then recovery in another process -------------------------------


@dataclass(frozen=True)
class Crash:
    point: str  # CODEMODE_CRASH_AT
    phase: str  # what the killed host was doing: execute | approve | rollback
    status: str  # the run's status once the host is dead
    states: dict[int, str]  # log states then
    ledger: list[tuple[str, str]]  # (kind, method) then
    repeated: int | None = None  # the seq whose call ran and was not recorded: re-run once on recovery
    reverted: list[int] = field(default_factory=list)  # the retried rollback's report
    failed: list[int] = field(default_factory=list)


R, P, UNDO_P = ("effect", "reserve"), ("effect", "pay"), ("revert", "pay")
CRASHES = [
    Crash("before:decide", "approve", "running", {0: "applied", 1: "pending"}, [R]),
    Crash("after:decide", "approve", "running", {0: "applied", 1: "executing"}, [R]),
    Crash("after:effect", "approve", "running", {0: "applied", 1: "executing"}, [R, P], repeated=1),
    Crash("before:record_result", "approve", "running", {0: "applied", 1: "executing"}, [R, P], repeated=1),
    Crash("after:record_result", "approve", "running", {0: "applied", 1: "applied"}, [R, P]),
    Crash("after:settle", "approve", "running", {0: "applied", 1: "pending"}, [R]),
    # The checkpoint was taken (and so removed) and nothing re-issued yet: recovery replays.
    Crash("after:take_checkpoint", "approve", "running", {0: "applied", 1: "pending"}, [R]),
    Crash("after:pause", "execute", "paused", {0: "applied", 1: "pending"}, [R]),
    Crash("after:effect", "execute", "running", {0: "executing"}, [R], repeated=0),
    Crash("after:decide@2", "execute", "running", {0: "applied", 1: "pending"}, [R]),
    Crash("after:claim_rollback", "rollback", "rolling_back", {0: "applied", 1: "applied"}, [R, P], reverted=[1, 0]),
    Crash("after:begin_revert", "rollback", "rolling_back", {0: "applied", 1: "reverting"}, [R, P], None, [0], [1]),
    Crash("after:revert", "rollback", "rolling_back", {0: "applied", 1: "reverting"}, [R, P, UNDO_P], None, [0], [1]),
    Crash("after:end_revert", "rollback", "rolling_back", {0: "applied", 1: "reverted"}, [R, P, UNDO_P], None, [0]),
]


# The same crashes on the replay path: no checkpoint, so the approved pass (and the recovery) reads the
# whole log and replays the program up to the approved call.
REPLAY_CRASHES = [
    Crash("after:settle", "approve", "running", {0: "applied", 1: "pending"}, [R]),
    Crash("after:get_log", "approve", "running", {0: "applied", 1: "pending"}, [R]),
    Crash("after:decide", "approve", "running", {0: "applied", 1: "executing"}, [R]),
    Crash("after:effect", "approve", "running", {0: "applied", 1: "executing"}, [R, P], repeated=1),
    Crash("after:record_result", "approve", "running", {0: "applied", 1: "applied"}, [R, P]),
]


@pytest.mark.parametrize("crash", CRASHES, ids=[f"{c.point}-{c.phase}" for c in CRASHES])
def test_sigkill_then_recover_in_another_process(tmp_path: Path, crash: Crash) -> None:
    crash_then_recover(tmp_path, crash)


@pytest.mark.parametrize("crash", REPLAY_CRASHES, ids=[f"{c.point}-{c.phase}" for c in REPLAY_CRASHES])
def test_sigkill_on_the_replay_path_then_recover_in_another_process(
    tmp_path: Path, crash: Crash, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RACE_RESUME", "replay")  # every worker process, and the in-process helpers
    crash_then_recover(tmp_path, crash)


# Deno resumes by replay only: the replay-path crashes of an approval, and those of the first pass.
DENO_CRASHES = [*REPLAY_CRASHES, *(c for c in CRASHES if c.phase == "execute")]


@pytest.mark.parametrize("crash", DENO_CRASHES, ids=[f"{c.point}-{c.phase}" for c in DENO_CRASHES])
def test_sigkill_of_a_deno_host_then_recover_in_another_process(
    tmp_path: Path, crash: Crash, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RACE_EXECUTOR", "deno")  # JavaScript on Deno, in every worker and helper
    before = deno_processes()
    crash_then_recover(tmp_path, crash, after_kill=lambda: assert_deno_processes_end(before))


def deno_processes() -> set[int]:
    """Live `deno` processes on this machine that are not this test process's own children."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # ended meanwhile
        if comm == "deno" and ppid != os.getpid():
            found.add(int(entry.name))
    return found


def assert_deno_processes_end(before: set[int]) -> None:
    """The Deno processes of a killed host see their input close and exit on their own."""
    deadline = time.monotonic() + 10
    while (left := deno_processes() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"Deno processes outlived their killed host: {sorted(left)}"


def crash_then_recover(tmp_path: Path, crash: Crash, after_kill: Callable[[], None] = lambda: None) -> None:
    """Kill a host at `crash.point`, check what it left, let other processes finish: exactly once."""
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    s_db, s_ledger = str(db), str(ledger)
    # 1. The victim: a host killed at the crash point.
    if crash.phase == "execute":
        victim = Worker("pause", s_db, s_ledger, crash_at=crash.point)
    elif crash.phase == "approve":
        eid = asyncio.run(pause_run(db, ledger))
        victim = Worker("approve", s_db, s_ledger, eid, "1", crash_at=crash.point)
    else:
        eid = asyncio.run(completed_run(db, ledger))
        victim = Worker("rollback", s_db, s_ledger, eid, crash_at=crash.point)
    code, stdout, stderr = victim.finish()
    assert code == -signal.SIGKILL, f"the host was not killed at {crash.point} (exit {code}): {stdout} {stderr}"
    after_kill()
    if crash.phase == "execute":
        eid = asyncio.run(last_execution_id(db, ledger))
    # 2. What the dead host left behind: exactly the commit point it died at.
    left = asyncio.run(show(db, ledger, eid))
    assert left is not None and left["status"] == crash.status, left
    assert {e["seq"]: e["state"] for e in left["log"]} == crash.states, left
    assert [(k, m) for k, m, _, _ in read_ledger(ledger)] == crash.ledger
    # 3. Another process finishes the job.
    if crash.phase == "rollback":
        out = run("rollback", s_db, s_ledger, eid, "--stale", "1", "--retry-for", "20")
        assert out["report"] == {"reverted": crash.reverted, "irreversible": [], "failed": crash.failed}, out
        assert ("exc" in out) == bool(crash.failed), out  # a revert it could not confirm raises RollbackError
        if crash.failed:
            assert out["exc"] == "RollbackError", out
    else:
        if crash.status == "running":
            out = run("recover", s_db, s_ledger, eid, "--stale", "1", "--retry-for", "20")
            assert out["status"] in ("completed", "paused"), out
        now = asyncio.run(show(db, ledger, eid))
        if now is not None and now["status"] == "paused":
            out = run("approve", s_db, s_ledger, eid, "1")
        assert out["status"] == "completed" and out["result"] == EXPECTED, out
    # 4. Nothing lost, nothing twice but the documented window.
    rows = read_ledger(ledger)
    final = asyncio.run(show(db, ledger, eid))
    assert final is not None
    if crash.phase == "rollback":
        assert final["status"] == "rolled_back", final
        undone_pay = crash.point != "after:begin_revert"  # a revert never started is reported, not guessed
        assert [(k, m) for k, m, _, _ in rows] == [R, P, *([UNDO_P] if undone_pay else []), ("revert", "reserve")]
        assert_no_repeats(rows, eid)
        assert {e["seq"]: e["state"] for e in final["log"]} == {
            0: "reverted",
            1: "reverting" if crash.failed else "reverted",  # an unconfirmed revert stays visible, unretried
        }, final
    else:
        repeated = frozenset() if crash.repeated is None else frozenset({f"{eid}:{crash.repeated}"})
        assert_no_repeats(rows, eid, repeated)
        assert final["status"] == "completed" and final["result"] == EXPECTED, final
        assert {e["seq"]: e["state"] for e in final["log"]} == {0: "applied", 1: "applied"}, final
        assert sorted(Counter(m for k, m, _, _ in rows if k == "effect").items()) == [
            ("pay", 2 if crash.repeated == 1 else 1),
            ("reserve", 2 if crash.repeated == 0 else 1),
        ], rows
        if crash.repeated is not None:
            first, second = [row for row in rows if row[2] == f"{eid}:{crash.repeated}"]
            assert first[2] == second[2], "the re-run carries the same idempotency key"
            assert first[3] == victim.proc.pid and second[3] != victim.proc.pid, (first, second)


def test_four_processes_recover_a_run_whose_host_died_after_the_approval(tmp_path: Path) -> None:
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(pause_run(db, ledger))
    code, _, err = Worker("approve", str(db), str(ledger), eid, "1", crash_at="after:settle").finish()
    assert code == -signal.SIGKILL, err
    results = race(db, ledger, [["recover", eid, "0", "--stale", "1", "--retry-for", "20"]] * 4)
    completed = [r for r in results if r["status"] == "completed"]
    assert len(completed) == 1, results
    assert completed[0]["result"] == EXPECTED
    for r in results:
        if r is not completed[0]:
            assert r["status"] == "error" and "cannot be recovered" in r["error"], r
    rows = read_ledger(ledger)
    assert [(k, m) for k, m, _, _ in rows] == [R, P], rows
    assert_consistent(asyncio.run(show(db, ledger, eid)), rows, eid)


def test_a_recovery_killed_after_its_takeover_is_recovered_again(tmp_path: Path) -> None:
    """Host 1 dies after the approved call ran (not recorded); host 2 takes the run over and dies at
    once; host 3 finishes: the call ran twice in all (the documented window, once), same key."""
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    s_db, s_ledger = str(db), str(ledger)
    eid = asyncio.run(pause_run(db, ledger))
    first = Worker("approve", s_db, s_ledger, eid, "1", crash_at="after:effect")
    code, _, err = first.finish()
    assert code == -signal.SIGKILL, err
    second = Worker("recover", s_db, s_ledger, eid, "--stale", "1", "--retry-for", "20", crash_at="after:claim_stale")
    code, _, err = second.finish()
    assert code == -signal.SIGKILL, err
    assert [(k, m) for k, m, _, _ in read_ledger(ledger)] == [R, P]  # the dead takeover ran nothing
    out = run("recover", s_db, s_ledger, eid, "--stale", "1", "--retry-for", "20")
    assert out["status"] == "completed" and out["result"] == EXPECTED, out
    rows = read_ledger(ledger)
    assert_no_repeats(rows, eid, frozenset({f"{eid}:1"}))
    assert [(k, m) for k, m, _, _ in rows] == [R, P, P], rows
    assert (
        rows[1][2] == rows[2][2]
        and rows[1][3] == first.proc.pid
        and rows[2][3] not in (first.proc.pid, second.proc.pid)
    )
    final = asyncio.run(show(db, ledger, eid))
    assert final is not None and final["status"] == "completed", final


async def expire_when_stale(db: Path, ledger: Path, max_age: float, within: float) -> list[str]:
    """Poll the expiry sweep until it takes something (a run without heartbeat for `max_age`)."""
    deadline = time.monotonic() + within
    async with make_runtime(db, ledger) as runtime:
        while not (expired := await runtime.expire_paused(timedelta(seconds=max_age))):
            assert time.monotonic() < deadline, "the stuck run never expired"
            await asyncio.sleep(0.05)
    return expired


def test_rollback_of_a_run_expired_after_its_host_died_mid_call_reports_that_call(tmp_path: Path) -> None:
    """A host dies after the approved call ran and before it was recorded (the entry stays
    `executing`); the expiry sweep ends the stuck run `error`; the rollback must not leave that
    effect unmentioned, and must not guess: it reports it."""
    db, ledger = database(tmp_path, "db"), tmp_path / "ledger"
    eid = asyncio.run(pause_run(db, ledger))
    code, _, err = Worker("approve", str(db), str(ledger), eid, "1", crash_at="after:effect").finish()
    assert code == -signal.SIGKILL, err
    assert [(k, m) for k, m, _, _ in read_ledger(ledger)] == [R, P]  # the payment happened
    assert asyncio.run(expire_when_stale(db, ledger, max_age=1.0, within=20)) == [eid]
    left = asyncio.run(show(db, ledger, eid))
    assert left is not None and left["status"] == "error", left
    assert {e["seq"]: e["state"] for e in left["log"]} == {0: "applied", 1: "executing"}, left
    out = run("rollback", str(db), str(ledger), eid)
    report = out["report"]
    mentioned = set(report["reverted"]) | set(report["irreversible"]) | set(report["failed"])
    assert 1 in mentioned, f"the payment that ran is neither reverted nor reported: {out}, {read_ledger(ledger)}"
    assert report["reverted"] == [0], out
    rows = read_ledger(ledger)
    assert_no_repeats(rows, eid)
    assert [(k, m) for k, m, _, _ in rows] == [R, P, ("revert", "reserve")], rows
