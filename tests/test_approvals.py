"""The approval contract: a click runs exactly the action the human saw, once.

Real Monty and Deno sandboxes, real SQLite files. `Pay.ledger` is the effect ledger: one line per
effect that really ran, so "exactly once" is counted, not assumed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

import codemode
from codemode import Connector, Runtime, ToolContext, tool

from conftest import RuntimeFactory, execute_sql, new_store, program

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (conftest.pytest_generate_tests)


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Pay(Connector):
    name = "pay"

    def __init__(self) -> None:
        self.ledger: list[str] = []
        self.keys: list[str] = []
        self.flaky_calls = 0
        self.lock: sqlite3.Connection | None = None
        self.lock_path: Path | None = None
        self.disposed: list[str] = []

    @tool(requires_approval=True)
    async def pay(self, to: str, amount: int, ctx: ToolContext) -> dict[str, Any]:
        """Pay someone."""
        self.ledger.append(f"pay {to} {amount}")
        self.keys.append(ctx.idempotency_key)
        return {"to": to, "amount": amount}

    @pay.revert
    async def _refund(self, args: dict[str, Any], result: dict[str, Any]) -> None:
        self.ledger.append(f"refund {result['to']} {result['amount']}")

    @tool(requires_approval=True)
    async def send(self, text: str) -> str:
        """Send a message (cannot be unsent)."""
        self.ledger.append(f"send {text}")
        return "sent"

    @tool
    async def note(self, text: str) -> int:
        """Write a note."""
        self.ledger.append(f"note {text}")
        return len(self.ledger)

    @note.revert
    async def _unnote(self, args: dict[str, Any], result: int) -> None:
        self.ledger.append(f"unnote {args['text']}")

    @tool
    async def read(self) -> int:
        """A read."""
        self.ledger.append("read")
        return 7

    @tool(requires_approval=True)
    async def flaky(self) -> str:
        """An approved action that fails."""
        self.flaky_calls += 1
        raise ValueError("the bank is closed")

    @tool
    def block(self, seconds: float) -> str:
        """A sync tool that holds the event loop."""
        time.sleep(seconds)
        return "done"

    @tool
    async def slow(self, seconds: float) -> str:
        """An async tool that waits."""
        await asyncio.sleep(seconds)
        self.ledger.append("slow")
        return "slow done"

    @tool
    async def price(self) -> float:
        """A price as another library's number type."""
        return Decimal("1.5")  # type: ignore[return-value]

    @tool
    async def context(self, ctx: ToolContext) -> dict[str, Any]:
        """What the tool learns about its call."""
        return {"id": ctx.execution_id, "seq": ctx.seq, "key": ctx.idempotency_key}

    @tool(replay="reexecute")
    async def counter(self) -> int:
        """A read that changes on every pass."""
        self.reads = getattr(self, "reads", 0) + 1
        return self.reads

    @tool(requires_approval=True)
    async def wire(self, to: str, memo: str = "") -> str:
        """Wire money with a memo."""
        self.ledger.append(f"wire {to} {len(memo)}")
        return "wired"

    @wire.revert
    async def _unwire(self, args: dict[str, Any], result: str) -> None:
        await asyncio.sleep(self.revert_delay)
        self.ledger.append(f"unwire {args['to']}")

    revert_delay = 0.0

    @tool
    async def charge(self, seconds: float) -> str:
        """Charges at once, then takes its time to answer."""
        self.ledger.append("charge")
        await asyncio.sleep(seconds)
        return "charged"

    @tool
    async def cancelled(self) -> str:
        """A tool that raises CancelledError itself."""
        raise asyncio.CancelledError()

    async def dispose_execution(self, execution_id: str, status: str) -> None:
        self.disposed.append(status)

    @tool
    async def lock_store(self, ctx: ToolContext) -> str:
        """The first time, takes the database write lock and keeps it: the store cannot record this result."""
        self.ledger.append("locked")
        self.keys.append(ctx.idempotency_key)
        if self.lock_path is not None and self.lock is None:
            self.lock = sqlite3.connect(self.lock_path, isolation_level=None)
            self.lock.execute("BEGIN IMMEDIATE")
        return "locked"


@pytest.fixture
def pay() -> Pay:
    return Pay()


@pytest.fixture
def runtime(make_runtime: RuntimeFactory, pay: Pay) -> Runtime:
    return make_runtime(pay)


def two_payments(language: str) -> str:
    return program(
        language,
        'await pay.pay(to="alice", amount=10)\nawait pay.pay(to="mallory", amount=5000)\nreturn "paid"',
        'await pay.pay({ to: "alice", amount: 10 });\nawait pay.pay({ to: "mallory", amount: 5000 });\nreturn "paid";',
    )


def batch(language: str) -> str:
    """Three gated payments started together; a rejection is caught per payment."""
    return program(
        language,
        "import asyncio\n"
        "async def attempt(to):\n"
        "    try:\n"
        "        return await pay.pay(to=to, amount=1)\n"
        "    except PermissionError as error:\n"
        "        return str(error)\n"
        'return await asyncio.gather(attempt("a"), attempt("b"), attempt("c"))',
        'return await Promise.all(["a", "b", "c"].map(async (to) => {\n'
        "  try { return await pay.pay({ to, amount: 1 }); } catch (error) { return error.message; }\n"
        "}));",
    )


# -- approve exactly what was seen ---------------------------------------------------------------


async def test_a_stale_click_runs_nothing(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    seen = paused.pending[0]  # both reviewers see "pay alice 10"
    assert (seen.seq, seen.args) == (0, {"to": "alice", "amount": 10})
    first = await runtime.approve(paused.execution_id, seen.seq, by="ann")
    assert first.status == "paused"
    assert [(p.seq, p.args["to"]) for p in first.pending] == [(1, "mallory")]
    second = await runtime.approve(paused.execution_id, seen.seq, by="bob")  # bob's page is stale
    assert second.status == "error"
    assert "Action 0" in (second.error or "") and "not awaiting a decision" in (second.error or "")
    assert "seq 1: pay.pay" in (second.error or "") and "mallory" in (second.error or "")
    assert [(p.seq, p.args["to"]) for p in second.pending] == [(1, "mallory")]
    assert pay.ledger == ["pay alice 10"]  # mallory was never paid
    assert [p.seq for p in await runtime.pending(paused.execution_id)] == [1]
    done = await runtime.approve(paused.execution_id, 1, by="ann")
    assert done.status == "completed" and done.result == "paid"
    assert pay.ledger == ["pay alice 10", "pay mallory 5000"]


async def test_approving_an_unknown_seq_or_run_changes_nothing(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    assert (await runtime.approve(paused.execution_id, 5)).status == "error"
    missing = await runtime.approve("exec_missing", 0)
    assert missing.status == "error" and "No execution" in (missing.error or "")
    assert pay.ledger == []
    assert [p.seq for p in await runtime.pending(paused.execution_id)] == [0]


async def test_decisions_are_audit_records(runtime: Runtime, language: str) -> None:
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    paused = await runtime.execute(two_payments(language))
    await runtime.approve(paused.execution_id, 0, by="ann", reason="invoice 42")
    assert await runtime.reject(paused.execution_id, 1, by="bob", reason="unknown payee") is True
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "rejected"
    assert execution.error == "Action pay.pay rejected by bob: unknown payee"
    approval, rejection = (entry.decision for entry in execution.log)
    assert approval is not None and rejection is not None
    assert (approval.kind, approval.by, approval.reason, approval.args) == ("approve", "ann", "invoice 42", None)
    assert (rejection.kind, rejection.by, rejection.reason) == ("reject", "bob", "unknown payee")
    assert before <= approval.at <= rejection.at <= datetime.now(timezone.utc)
    assert [e.state for e in execution.log] == ["applied", "reverted"]


# -- edited arguments ----------------------------------------------------------------------------


async def test_an_edited_approval_runs_the_edited_arguments(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        'return await pay.pay(to="alice", amount=10)',
        'return await pay.pay({ to: "alice", amount: 10 });',
    )
    paused = await runtime.execute(code)
    bad = await runtime.approve(paused.execution_id, 0, by="ann", args={"to": "alice", "amount": "lots"})
    assert bad.status == "error" and "amount" in (bad.error or "") and "still pending" in (bad.error or "")
    not_an_object = await runtime.approve(paused.execution_id, 0, args=["alice", 1])  # type: ignore[arg-type]
    assert not_an_object.status == "error" and "must be an object" in (not_an_object.error or "")
    assert pay.ledger == [] and [p.seq for p in await runtime.pending(paused.execution_id)] == [0]
    done = await runtime.approve(paused.execution_id, 0, by="ann", args={"to": "alice", "amount": 5})
    assert done.status == "completed" and done.result == {"to": "alice", "amount": 5}
    assert pay.ledger == ["pay alice 5"]
    entry = done.calls[0]
    assert entry.args == {"to": "alice", "amount": 10}  # the program's own arguments stay the replay key
    assert entry.decision is not None and entry.decision.args == {"to": "alice", "amount": 5}
    report = await runtime.rollback(done.execution_id)
    assert report.reverted == [0] and pay.ledger[-1] == "refund alice 5"


# -- rejection -----------------------------------------------------------------------------------


async def test_a_rejection_can_be_caught_by_the_program(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        'try:\n    await pay.send(text="hello")\nexcept PermissionError as error:\n    return "caught: " + str(error)',
        'try {\n  await pay.send({ text: "hello" });\n} catch (error) {\n  return "caught: " + error.message;\n}',
    )
    paused = await runtime.execute(code)
    assert await runtime.reject(paused.execution_id, 0, by="bob", reason="not now", resume=True) is True
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "completed"
    assert execution.result == "caught: Action pay.send rejected by bob: not now"
    assert pay.ledger == []
    assert await runtime.reject(paused.execution_id, 0, resume=True) is False  # already decided


async def test_rejecting_a_stale_seq_is_refused(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    await runtime.approve(paused.execution_id, 0)
    assert await runtime.reject(paused.execution_id, 0) is False
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "paused"
    assert pay.ledger == ["pay alice 10"]


# -- batch pauses --------------------------------------------------------------------------------


async def test_a_batch_is_pending_together_and_decided_one_by_one(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(batch(language))
    assert paused.status == "paused"
    assert [(p.seq, p.args["to"]) for p in paused.pending] == [(0, "a"), (1, "b"), (2, "c")]
    eid = paused.execution_id
    first = await runtime.approve(eid, 2, by="ann")
    assert first.status == "paused" and [p.seq for p in first.pending] == [0, 1]
    assert pay.ledger == []  # nothing runs while the batch is undecided
    assert await runtime.reject(eid, 1, by="bob", reason="too much", resume=True) is True
    assert [p.seq for p in await runtime.pending(eid)] == [0]
    done = await runtime.approve(eid, 0, by="ann")
    assert done.status == "completed", done.error
    assert done.result == [
        {"to": "a", "amount": 1},
        "Action pay.pay rejected by bob: too much",
        {"to": "c", "amount": 1},
    ]
    assert sorted(pay.ledger) == ["pay a 1", "pay c 1"]
    assert [e.state for e in done.calls] == ["applied", "error", "applied"]
    assert (await runtime.approve(eid, 0)).status == "error"
    assert sorted(pay.ledger) == ["pay a 1", "pay c 1"]


async def test_a_read_started_with_the_batch_runs_once(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        "import asyncio\nreturn await asyncio.gather(pay.read(), pay.pay(to='a', amount=1))",
        "return await Promise.all([pay.read(), pay.pay({ to: 'a', amount: 1 })]);",
    )
    paused = await runtime.execute(code)
    assert [p.seq for p in paused.pending] == [1]
    assert pay.ledger == ["read"]  # started before the pause was known: decided, not dropped
    done = await runtime.approve(paused.execution_id, 1)
    assert done.result == [7, {"to": "a", "amount": 1}]
    assert pay.ledger == ["read", "pay a 1"]


async def test_rejecting_one_of_a_batch_ends_the_run(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(batch(language))
    await runtime.approve(paused.execution_id, 0)
    assert await runtime.reject(paused.execution_id, 1, by="bob") is True
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "rejected"
    assert [e.state for e in execution.log] == ["reverted", "reverted", "reverted"]
    assert pay.ledger == [] and await runtime.pending() == []


# -- a failed call is a recorded fact ------------------------------------------------------------


async def test_a_failed_call_never_runs_again(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        "try:\n"
        "    await pay.flaky()\n"
        "    note = 'no error'\n"
        "except ValueError as error:\n"
        "    note = str(error)\n"
        "await pay.note(text=note)\n"
        'await pay.pay(to="x", amount=1)\n'
        "return note",
        'let note;\ntry {\n  await pay.flaky();\n  note = "no error";\n} catch (error) {\n  note = error.message;\n}\n'
        'await pay.note({ text: note });\nawait pay.pay({ to: "x", amount: 1 });\nreturn note;',
    )
    paused = await runtime.execute(code)
    after_flaky = await runtime.approve(paused.execution_id, 0)
    assert after_flaky.status == "paused" and [p.seq for p in after_flaky.pending] == [2]
    done = await runtime.approve(paused.execution_id, 2)
    assert done.status == "completed", done.error
    assert done.result == "the bank is closed"
    assert pay.flaky_calls == 1  # the approved action that raised ran once, and was not offered again
    assert pay.ledger == ["note the bank is closed", "pay x 1"]  # the same order as a plain run
    assert done.calls[0].state == "error" and done.calls[0].result == {
        "error": "the bank is closed",
        "kind": "ValueError",
    }


# -- rollback ------------------------------------------------------------------------------------


def three_effects(language: str) -> str:
    return program(
        language,
        'await pay.note(text="n")\nawait pay.send(text="hi")\nawait pay.pay(to="a", amount=3)',
        'await pay.note({ text: "n" });\nawait pay.send({ text: "hi" });\nawait pay.pay({ to: "a", amount: 3 });',
    )


async def run_to_completion(runtime: Runtime, code: str) -> codemode.Outcome:
    outcome = await runtime.execute(code)
    while outcome.status == "paused":
        outcome = await runtime.approve(outcome.execution_id, outcome.pending[0].seq)
    assert outcome.status == "completed", outcome.error
    return outcome


async def test_rollback_reports_every_action(runtime: Runtime, pay: Pay, language: str) -> None:
    done = await run_to_completion(runtime, three_effects(language))
    report = await runtime.rollback(done.execution_id, by="ops")
    assert report == codemode.RollbackReport(reverted=[2, 0], irreversible=[1], failed={})
    assert pay.ledger[-2:] == ["refund a 3", "unnote n"]
    execution = await runtime.execution(done.execution_id)
    assert execution is not None and execution.status == "rolled_back"
    assert [e.state for e in execution.log] == ["reverted", "applied", "reverted"]
    note, send, paid = execution.log
    assert (
        note.decision is None
        and note.rollback is not None
        and (note.rollback.kind, note.rollback.by)
        == (
            "rollback",
            "ops",
        )
    )
    assert paid.decision is not None and paid.decision.kind == "approve"  # the approval stays on record
    assert paid.rollback is not None and paid.rollback.by == "ops"
    assert send.rollback is None
    again = await runtime.rollback(done.execution_id)
    assert again.reverted == [] and again.irreversible == [1]
    assert pay.ledger.count("refund a 3") == 1 and pay.ledger.count("unnote n") == 1


class Brittle(Connector):
    """A refund that fails until the bank is back."""

    name = "pay"

    def __init__(self) -> None:
        self.ledger: list[str] = []
        self.bank_up = False

    @tool(requires_approval=True)
    async def pay(self, to: str, amount: int) -> dict[str, Any]:
        """Pay someone."""
        self.ledger.append(f"pay {to} {amount}")
        return {"to": to}

    @pay.revert
    async def _refund(self, args: dict[str, Any], result: dict[str, Any]) -> None:
        if not self.bank_up:
            raise ConnectionError("the bank is down")
        self.ledger.append(f"refund {args['to']} {args['amount']}")


async def test_a_failed_revert_is_retried_with_the_arguments_the_call_ran_with(
    make_runtime: RuntimeFactory, language: str
) -> None:
    brittle = Brittle()
    runtime = make_runtime(brittle)
    paused = await runtime.execute(
        program(language, 'await pay.pay(to="a", amount=200)', 'await pay.pay({ to: "a", amount: 200 });')
    )
    await runtime.approve(paused.execution_id, 0, by="ann", args={"to": "a", "amount": 20})
    with pytest.raises(codemode.RollbackError, match="the bank is down") as raised:
        await runtime.rollback(paused.execution_id, by="ops")
    assert raised.value.report.failed.keys() == {0}
    brittle.bank_up = True
    report = await runtime.rollback(paused.execution_id, by="ops")
    assert report.reverted == [0]
    assert brittle.ledger == ["pay a 20", "refund a 20"]
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.log[0].decision is not None
    assert execution.log[0].decision.args == {"to": "a", "amount": 20}


async def test_an_interrupted_revert_runs_again_only_when_asked(
    runtime: Runtime, pay: Pay, db_path: Path, language: str, store_kind: str
) -> None:
    done = await run_to_completion(runtime, three_effects(language))
    # The state a host killed in the middle of reverting the payment leaves behind.
    execute_sql(
        store_kind,
        db_path,
        "UPDATE cm_log SET state = 'reverting' WHERE execution_id = ? AND seq = 2",
        (done.execution_id,),
    )
    with pytest.raises(codemode.RollbackError, match="check the effect by hand") as raised:
        await runtime.rollback(done.execution_id)
    assert raised.value.report.reverted == [0] and list(raised.value.report.failed) == [2]
    assert "refund a 3" not in pay.ledger
    with pytest.raises(codemode.RollbackError):
        await runtime.rollback(done.execution_id)  # still reported, still not run
    report = await runtime.rollback(done.execution_id, retry_interrupted=True)
    assert report.reverted == [2] and pay.ledger.count("refund a 3") == 1 and pay.ledger.count("unnote n") == 1


async def test_two_rollbacks_at_once_revert_once(runtime: Runtime, pay: Pay, language: str) -> None:
    done = await run_to_completion(runtime, three_effects(language))
    results = await asyncio.gather(
        runtime.rollback(done.execution_id), runtime.rollback(done.execution_id), return_exceptions=True
    )
    reports = [r for r in results if isinstance(r, codemode.RollbackReport)]
    reverted = sorted(seq for report in reports for seq in report.reverted)
    assert reverted == [0, 2]
    for result in results:
        assert isinstance(result, codemode.RollbackReport) or "cannot be rolled back now" in str(result)
    assert pay.ledger.count("refund a 3") == 1 and pay.ledger.count("unnote n") == 1


async def test_a_missing_connector_is_reported_then_retried(
    make_runtime: RuntimeFactory, runtime: Runtime, pay: Pay, language: str
) -> None:
    done = await run_to_completion(runtime, three_effects(language))

    class Other(Connector):
        name = "other"

    bare = make_runtime(Other())
    with pytest.raises(codemode.RollbackError) as raised:
        await bare.rollback(done.execution_id)
    assert raised.value.report.failed.keys() == {0, 1, 2}  # without the connector, nothing is known of its reverts
    assert 'connector "pay" is not configured' in raised.value.report.failed[2]
    assert raised.value.report.irreversible == []
    report = await runtime.rollback(done.execution_id)
    assert report.reverted == [2, 0] and report.irreversible == [1]


async def test_rollback_racing_an_approval_ends_consistent(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    await runtime.approve(paused.execution_id, 0)  # alice is paid; mallory pending
    approved, rolled = await asyncio.gather(
        runtime.approve(paused.execution_id, 1), runtime.rollback(paused.execution_id), return_exceptions=True
    )
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and isinstance(approved, codemode.Outcome)
    if not isinstance(rolled, codemode.RollbackReport):  # the approval resumed the run first
        assert isinstance(rolled, RuntimeError)
        assert execution.status == "completed" and approved.status == "completed"
        assert pay.ledger == ["pay alice 10", "pay mallory 5000"]
    elif approved.status == "completed":  # the approval finished, then the rollback undid both
        assert execution.status == "rolled_back" and rolled.reverted == [1, 0]
        assert pay.ledger == ["pay alice 10", "pay mallory 5000", "refund mallory 5000", "refund alice 10"]
    else:  # the rollback claimed the run first: the click was stale
        assert execution.status == "rolled_back" and rolled.reverted == [0]
        assert "not awaiting a decision" in (approved.error or "")
        assert pay.ledger == ["pay alice 10", "refund alice 10"]


async def test_rolling_back_a_paused_run_ends_its_pending_actions(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    await runtime.approve(paused.execution_id, 0)
    report = await runtime.rollback(paused.execution_id)
    assert report.reverted == [0]
    assert (await runtime.approve(paused.execution_id, 1)).status == "error"
    assert await runtime.pending() == []
    assert pay.ledger == ["pay alice 10", "refund alice 10"]


# -- idempotency ---------------------------------------------------------------------------------


async def test_tools_get_a_stable_idempotency_key(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        'c = await pay.context()\nawait pay.pay(to="a", amount=1)\nreturn c',
        'const c = await pay.context();\nawait pay.pay({ to: "a", amount: 1 });\nreturn c;',
    )
    paused = await runtime.execute(code)
    done = await runtime.approve(paused.execution_id, 1)
    eid = paused.execution_id
    assert done.result == {"id": eid, "seq": 0, "key": f"{eid}:0"}
    assert pay.keys == [f"{eid}:1"]


async def test_a_repeated_key_returns_the_same_run(runtime: Runtime, pay: Pay, language: str) -> None:
    code = two_payments(language)
    first = await runtime.execute(code, key="call_1", metadata={"user": "ann", "thread": "t1"})
    again = await runtime.execute(code, key="call_1")
    assert again.status == "paused" and again.execution_id == first.execution_id
    assert [p.seq for p in again.pending] == [0]
    other = await runtime.execute(program(language, "1", "1;"), key="call_1")
    assert other.status == "error" and "different program" in (other.error or "")
    await runtime.approve(first.execution_id, 0)
    done = await runtime.approve(first.execution_id, 1)
    replayed = await runtime.execute(code, key="call_1")
    assert replayed.status == "completed" and replayed.result == done.result == "paid"
    assert pay.ledger == ["pay alice 10", "pay mallory 5000"]
    assert len(await runtime.executions()) == 1
    await runtime.execute(program(language, "1", "1;"), metadata={"user": "bob"})
    assert [e.id for e in await runtime.executions(metadata={"user": "ann"})] == [first.execution_id]
    assert [e.id for e in await runtime.executions(metadata={"user": "ann", "thread": "t2"})] == []
    assert [e.id for e in await runtime.executions(status="completed", metadata={"thread": "t1"})] == [
        first.execution_id
    ]
    assert len(await runtime.executions(status=["completed", "paused"])) == 2
    execution = await runtime.execution(first.execution_id)
    assert execution is not None and execution.key == "call_1" and execution.metadata == {"user": "ann", "thread": "t1"}
    with pytest.raises(ValueError, match="metadata"):
        await runtime.execute("1", metadata={"n": 1})  # type: ignore[dict-item]


# -- notify --------------------------------------------------------------------------------------


async def test_on_pause_pages_approvers(make_runtime: RuntimeFactory, pay: Pay, language: str) -> None:
    paged: list[list[tuple[int, str]]] = []

    async def page(actions: list[codemode.PendingAction]) -> None:
        paged.append([(a.seq, a.args["to"]) for a in actions])

    runtime = make_runtime(pay, on_pause=page)
    paused = await runtime.execute(two_payments(language))
    await runtime.approve(paused.execution_id, 0)
    assert paged == [[(0, "alice")], [(1, "mallory")]]

    def broken(actions: list[codemode.PendingAction]) -> None:
        raise RuntimeError("the pager is down")

    failing = make_runtime(pay, on_pause=broken)
    outcome = await failing.execute(two_payments(language))
    assert outcome.status == "paused"


# -- ownership -----------------------------------------------------------------------------------


async def test_a_blocked_event_loop_does_not_make_a_live_pass_recoverable(
    make_runtime: RuntimeFactory, pay: Pay, db_path: Path, language: str, store_kind: str
) -> None:
    runtime = make_runtime(pay, heartbeat_interval=0.2)
    started = threading.Event()
    recovered: list[codemode.Outcome] = []

    def other_host() -> None:
        started.wait(30)
        time.sleep(1.5)  # the first host's event loop is blocked for longer than stale_after

        async def main() -> None:
            async with Runtime([Pay()], store=new_store(store_kind, db_path), heartbeat_interval=0.2) as rival:
                execution = (await rival.executions())[0]
                recovered.append(await rival.recover(execution.id, stale_after=timedelta(seconds=1)))

        asyncio.run(main())

    thread = threading.Thread(target=other_host)
    thread.start()
    code = program(
        language,
        "await pay.note(text='x')\nreturn await pay.block(seconds=2.5)",
        "await pay.note({ text: 'x' });\nreturn await pay.block({ seconds: 2.5 });",
    )
    task = asyncio.ensure_future(runtime.execute(code))
    while not await runtime.executions():
        await asyncio.sleep(0.01)
    started.set()
    outcome = await task
    thread.join(30)
    assert outcome.status == "completed" and outcome.result == "done"
    assert recovered and recovered[0].status == "error" and "cannot be recovered" in (recovered[0].error or "")
    assert pay.ledger == ["note x"]


async def take_over(make_runtime: RuntimeFactory, execution_id: str) -> codemode.Outcome:
    """Another host, whose heartbeat interval is much shorter than this one's, recovers the run."""
    rival = make_runtime(Pay(), heartbeat_interval=0.2)
    await asyncio.sleep(1.1)
    return await rival.recover(execution_id, stale_after=timedelta(seconds=1))


async def test_a_pass_that_lost_its_run_writes_nothing_more(
    make_runtime: RuntimeFactory, pay: Pay, language: str
) -> None:
    runtime = make_runtime(pay, heartbeat_interval=30)  # no heartbeat during the test
    code = program(
        language,
        "await pay.slow(seconds=2)\nawait pay.note(text='late')\nreturn 'finished'",
        "await pay.slow({ seconds: 2 });\nawait pay.note({ text: 'late' });\nreturn 'finished';",
    )
    task = asyncio.ensure_future(runtime.execute(code))
    while not await runtime.executions():
        await asyncio.sleep(0.01)
    [run] = await runtime.executions()
    recovered = await take_over(make_runtime, run.id)  # the run is taken from the pass mid-call
    assert recovered.status == "completed" and recovered.result == "finished"
    outcome = await task
    assert outcome.status == "error" and "no longer owns" in (outcome.error or "")
    assert pay.ledger.count("note late") == 0  # the rival runs its own connector; this pass wrote nothing
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "completed"


@pytest.mark.sqlite_only  # the fault is SQLite's write lock
async def test_a_store_failure_while_recording_stops_the_pass(
    make_runtime: RuntimeFactory, pay: Pay, db_path: Path, language: str
) -> None:
    # A real fault: the tool itself holds the database write lock, so recording its result times out.
    pay.lock_path = db_path
    runtime = make_runtime(pay, path=db_path, heartbeat_interval=0.2)
    runtime.store.busy_timeout = 0.3  # type: ignore[attr-defined]
    code = program(
        language,
        "try:\n    await pay.lock_store()\nexcept Exception:\n    pass\nawait pay.note(text='after')\nreturn 'ok'",
        "try { await pay.lock_store(); } catch {}\nawait pay.note({ text: 'after' });\nreturn 'ok';",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "error" and "could not be written" in (outcome.error or "")
    assert "recover" in (outcome.error or "")
    assert pay.ledger == ["locked"]  # the program never saw the failure as its own error
    assert pay.lock is not None
    pay.lock.execute("ROLLBACK")
    pay.lock.close()
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "running"
    assert execution.log[0].state == "executing"  # the effect is visible, to recovery and to rollback
    await asyncio.sleep(1.1)
    recovered = await runtime.recover(outcome.execution_id, stale_after=timedelta(seconds=1))
    assert recovered.status == "completed" and recovered.result == "ok"
    # The one call in the crash window ran again, with the same idempotency key; nothing else repeated.
    assert pay.ledger == ["locked", "locked", "note after"]
    assert pay.keys[0] == pay.keys[1] == f"{outcome.execution_id}:0"
    assert pay.disposed == ["completed"]  # the failed pass did not end the run, so it disposed nothing


# -- steps ---------------------------------------------------------------------------------------


async def test_a_tool_call_inside_a_step_is_refused_without_shifting_seqs(
    runtime: Runtime, pay: Pay, language: str
) -> None:
    code = program(
        language,
        "async def inner():\n"
        "    return await pay.read()\n"
        "try:\n"
        '    value = await codemode.step("s", inner)\n'
        "except RuntimeError as error:\n"
        "    value = str(error)\n"
        'await pay.pay(to="z", amount=1)\n'
        "return value",
        "let value;\n"
        'try {\n  value = await codemode.step("s", async () => await pay.read());\n'
        "} catch (error) {\n  value = error.message;\n}\n"
        'await pay.pay({ to: "z", amount: 1 });\nreturn value;',
    )
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [p.seq for p in paused.pending] == [1]
    done = await runtime.approve(paused.execution_id, 1)
    assert done.status == "completed", done.error
    assert "cannot be called while codemode.step" in done.result and "pay.read" in done.result
    assert pay.ledger == ["pay z 1"]
    assert [(e.connector, e.state) for e in done.calls] == [("__step", "error"), ("pay", "applied")]


async def test_a_nested_step_is_refused(runtime: Runtime, language: str) -> None:
    code = program(
        language,
        "async def outer():\n"
        '    return await codemode.step("inner", lambda: 1)\n'
        'return await codemode.step("outer", outer)',
        'return await codemode.step("outer", async () => await codemode.step("inner", () => 1));',
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "error"
    assert "step" in (outcome.error or "") and ("inside" in (outcome.error or "") or "while" in (outcome.error or ""))


@pytest.mark.parametrize("language", ["javascript"])  # an attack through JavaScript property accessors
async def test_the_sandbox_cannot_choose_a_steps_seq(runtime: Runtime, pay: Pay, language: str) -> None:
    code = (
        "const first = await pay.read();\n"
        'Object.defineProperty(Object.prototype, "seq", { get() { return 0; }, configurable: true });\n'
        'const value = await codemode.step("s", () => "forged");\n'
        'await pay.pay({ to: "q", amount: 1 });\n'
        "return [first, value];"
    )
    paused = await runtime.execute(code)
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None
    assert (execution.log[0].connector, execution.log[0].result) == ("pay", 7)
    assert (execution.log[1].connector, execution.log[1].result) == ("__step", "forged")
    done = await runtime.approve(paused.execution_id, 2)
    assert done.status == "completed" and done.result == [7, "forged"]


# -- recorded results keep the declared type ------------------------------------------------------


async def test_a_result_is_converted_to_the_declared_return_type(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "return await pay.price()", "return await pay.price();"))
    assert outcome.status == "completed", outcome.error
    assert outcome.result == 1.5
    assert outcome.calls[0].result == 1.5


# -- what an adversarial program or host tried ---------------------------------------------------


async def test_unrecordable_arguments_on_replay_cannot_change_the_approved_action(
    runtime: Runtime, pay: Pay, language: str
) -> None:
    code = program(
        language,
        "n = await pay.counter()\n"
        "if n == 1:\n"
        '    await pay.wire(to="bob")\n'
        "else:\n"
        '    await pay.wire(to="mallory", memo="x" * 1100000)\n'
        'return "done"',
        "const n = await pay.counter();\n"
        'if (n === 1) await pay.wire({ to: "bob" });\n'
        'else await pay.wire({ to: "mallory", memo: "x".repeat(1100000) });\n'
        'return "done";',
    )
    paused = await runtime.execute(code)
    assert [p.args for p in paused.pending] == [{"to": "bob"}]
    outcome = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert outcome.status == "error" and "divergence" in (outcome.error or "")
    assert pay.ledger == []


async def test_a_call_cancelled_at_the_time_limit_never_runs_again(
    make_runtime: RuntimeFactory, pay: Pay, language: str
) -> None:
    from conftest import new_executor

    executor = new_executor(language, timeout=1.5)
    runtime = make_runtime(pay, executor=executor)
    code = program(
        language,
        "t = pay.charge(seconds=3)\n"
        'await pay.pay(to="bob", amount=1)\n'
        "try:\n"
        "    return await t\n"
        "except TimeoutError as error:\n"
        "    return str(error)",
        "const t = pay.charge({ seconds: 3 }).catch((error) => error.message);\n"
        'await pay.pay({ to: "bob", amount: 1 });\n'
        "return await t;",
    )
    try:
        paused = await runtime.execute(code)
        assert paused.status == "paused", paused.error
        assert [(e.method, e.state) for e in paused.calls] == [("charge", "error"), ("pay", "pending")]
        done = await runtime.approve(paused.execution_id, 1)
        assert done.status == "completed", done.error
        assert "cancelled while it ran" in done.result and "not run again" in done.result
        assert pay.ledger == ["charge", "pay bob 1"]  # charged once, though its answer never came
    finally:
        await executor.aclose()


async def test_rollback_reports_a_call_whose_outcome_is_unknown(
    make_runtime: RuntimeFactory, pay: Pay, language: str
) -> None:
    runtime = make_runtime(pay, heartbeat_interval=30)
    task = asyncio.ensure_future(
        runtime.execute(program(language, "await pay.charge(seconds=3)", "await pay.charge({ seconds: 3 });"))
    )
    while "charge" not in pay.ledger:
        await asyncio.sleep(0.01)
    [run] = await runtime.executions()
    rival = make_runtime(Pay(), heartbeat_interval=0.2)
    await asyncio.sleep(1.1)
    assert await rival.expire_paused(timedelta(seconds=1)) == [run.id]  # the pass loses its run mid-call
    outcome = await task
    assert outcome.status == "error"
    with pytest.raises(codemode.RollbackError, match="whether it took effect is unknown") as raised:
        await runtime.rollback(outcome.execution_id)
    assert list(raised.value.report.failed) == [0]


async def test_a_live_rollback_cannot_be_taken_over(make_runtime: RuntimeFactory, pay: Pay, language: str) -> None:
    runtime = make_runtime(pay, heartbeat_interval=0.2)
    pay.revert_delay = 1.5
    done = await run_to_completion(runtime, program(language, 'await pay.wire(to="a")', 'await pay.wire({ to: "a" });'))
    with pytest.raises(ValueError, match="stale_after"):
        await runtime.rollback(done.execution_id, stale_after=timedelta(0))
    first = asyncio.ensure_future(runtime.rollback(done.execution_id))
    await asyncio.sleep(0.3)
    rival = make_runtime(pay, heartbeat_interval=0.2)
    with pytest.raises(RuntimeError, match="cannot be rolled back now"):
        await rival.rollback(done.execution_id, stale_after=timedelta(seconds=1), retry_interrupted=True)
    await asyncio.sleep(1.0)  # past stale_after: the live rollback's heartbeats keep it owned
    with pytest.raises(RuntimeError, match="cannot be rolled back now"):
        await rival.rollback(done.execution_id, stale_after=timedelta(seconds=1), retry_interrupted=True)
    assert (await first).reverted == [0]
    assert pay.ledger == ["wire a 0", "unwire a"]


async def test_a_step_that_raised_raises_the_same_on_every_pass(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(
        language,
        "def f():\n"
        "    return 1 / 0\n"
        "try:\n"
        '    await codemode.step("s", f)\n'
        '    r = "none"\n'
        "except ZeroDivisionError:\n"
        '    r = "zde"\n'
        "except Exception:\n"
        '    r = "other"\n'
        "await pay.pay(to=r, amount=1)\n"
        "return r",
        "let r;\n"
        'try {\n  await codemode.step("s", () => { throw new RangeError("bad"); });\n  r = "none";\n'
        '} catch (error) {\n  r = error instanceof RangeError ? "range" : "other";\n}\n'
        "await pay.pay({ to: r, amount: 1 });\nreturn r;",
    )
    paused = await runtime.execute(code)
    assert [p.args["to"] for p in paused.pending] == ["other"]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed" and done.result == "other"
    assert pay.ledger == ["pay other 1"]


async def test_a_seq_must_be_the_int_the_human_saw(runtime: Runtime, pay: Pay, language: str) -> None:
    paused = await runtime.execute(two_payments(language))
    for bad in ("0", 0.0, True, -1, 2**70):
        with pytest.raises(TypeError, match="seq must be"):
            await runtime.approve(paused.execution_id, bad, args={"to": 5, "amount": "lots"})  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="seq must be"):
            await runtime.reject(paused.execution_id, bad)  # type: ignore[arg-type]
    assert pay.ledger == [] and [p.seq for p in await runtime.pending()] == [0]


async def test_a_tool_raising_cancelled_error_is_a_recorded_error(runtime: Runtime, language: str) -> None:
    code = program(
        language,
        "try:\n    await pay.cancelled()\nexcept Exception as error:\n    return 'caught'",
        "try { await pay.cancelled(); } catch (error) { return 'caught'; }",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed" and outcome.result == "caught"
    assert outcome.calls[0].state == "error"


async def test_a_pruned_keyed_run_is_not_started_again(make_runtime: RuntimeFactory, pay: Pay, language: str) -> None:
    runtime = make_runtime(pay, max_executions=1)
    code = program(language, 'await pay.note(text="once")', 'await pay.note({ text: "once" });')
    first = await runtime.execute(code, key="toolcall-1")
    for _ in range(3):
        await runtime.execute(program(language, "0", "0;"))
    again = await runtime.execute(code, key="toolcall-1")
    assert again.status == "error" and "pruned" in (again.error or "")
    assert again.execution_id == first.execution_id
    assert pay.ledger == ["note once"]


async def test_closing_the_runtime_waits_for_a_live_pass(make_runtime: RuntimeFactory, pay: Pay, language: str) -> None:
    runtime = make_runtime(pay, heartbeat_interval=0.2)
    code = program(language, "return await pay.slow(seconds=1)", "return await pay.slow({ seconds: 1 });")
    task = asyncio.ensure_future(runtime.execute(code))
    while not await runtime.executions():
        await asyncio.sleep(0.01)
    await runtime.aclose()  # a server shutting down with a request in flight
    outcome = await task
    assert outcome.status == "completed" and outcome.result == "slow done"
    assert pay.ledger == ["slow"]
    with pytest.raises(RuntimeError, match="closed"):
        await runtime.executions()  # a closed store is not reopened behind its owner's back


async def test_a_deleted_keyed_run_is_not_started_again(runtime: Runtime, pay: Pay, language: str) -> None:
    code = program(language, 'await pay.note(text="once")', 'await pay.note({ text: "once" });')
    first = await runtime.execute(code, key="toolcall-2")
    assert await runtime.delete_execution(first.execution_id)
    again = await runtime.execute(code, key="toolcall-2")
    assert again.status == "error" and again.execution_id == first.execution_id
    assert pay.ledger == ["note once"]


async def test_a_program_that_no_longer_reaches_its_approved_action_diverges(
    runtime: Runtime, pay: Pay, language: str
) -> None:
    code = program(
        language,
        'n = await pay.counter()\nif n == 1:\n    await pay.pay(to="bob", amount=5)\nreturn n',
        'const n = await pay.counter();\nif (n === 1) await pay.pay({ to: "bob", amount: 5 });\nreturn n;',
    )
    paused = await runtime.execute(code)
    outcome = await runtime.approve(paused.execution_id, paused.pending[0].seq, by="ann")
    assert outcome.status == "error" and "without reaching the approved action pay.pay" in (outcome.error or "")
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "error"
    assert [e.state for e in execution.log if e.connector == "pay" and e.method == "pay"] == ["error"]
    assert pay.ledger == []


def test_on_pause_cannot_deadlock_the_blocking_twin(make_runtime: RuntimeFactory, pay: Pay, language: str) -> None:
    holder: dict[str, Runtime] = {}
    errors: list[str] = []

    def page(actions: list[codemode.PendingAction]) -> None:
        try:
            holder["runtime"].sync.approve(actions[0].execution_id, actions[0].seq)
        except RuntimeError as exc:
            errors.append(str(exc))
            raise

    runtime = make_runtime(pay, on_pause=page)
    holder["runtime"] = runtime
    with runtime.sync as sync:
        outcome = sync.execute(two_payments(language))
    assert outcome.status == "paused"
    assert errors and "inside the runtime's own loop" in errors[0]
    assert pay.ledger == []
