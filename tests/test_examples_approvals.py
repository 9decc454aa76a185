"""examples/approvals.py as documented: the stale click refused, each payment run once, the rollback reported."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import codemode

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    workdir = tmp_path_factory.mktemp("approvals")
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "approvals.py"), str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return workdir, [line.strip() for line in done.stdout.splitlines()]


def section(lines: list[str], number: int) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{number}. "))
    end = next((i for i, line in enumerate(lines) if line.startswith(f"{number + 1}. ")), len(lines))
    return lines[start:end]


def test_both_reviewers_see_the_payment_and_the_second_click_is_refused(run: tuple[Path, list[str]]) -> None:
    _, lines = run
    first = section(lines, 1)
    assert "ann sees: seq 0 bank.pay(amount=10, to='alice')" in first
    assert "bob sees: seq 0 bank.pay(amount=10, to='alice')" in first
    assert "ann approves seq 0 -> paused" in first
    assert "(on_pause) page #finance: run A waits for seq 1 bank.pay(amount=5000, to='mallory')" in first
    stale = next(line for line in first if line.startswith("bob approves seq 0 too"))
    assert stale.startswith('bob approves seq 0 too -> error: Action 0 of execution "A" is not awaiting a decision')
    assert 'so nothing ran. Pending now: seq 1: bank.pay({"amount":5000,"to":"mallory"})' in stale
    assert "bob's screen now shows: seq 1 bank.pay(amount=5000, to='mallory')" in first
    assert [line for line in first if line.startswith("ledger:")] == ["ledger: alice 10 (key A:0)"]
    assert "bob rejects seq 1 -> True; run A is rejected: Action bank.pay rejected by bob: not on the payroll" in first


def test_the_batch_is_decided_one_action_at_a_time(run: tuple[Path, list[str]]) -> None:
    _, lines = run
    batch = section(lines, 2)
    assert (
        "(on_pause) page #finance: run B waits for seq 0 bank.pay(amount=300, to='carol'); "
        "seq 1 bank.pay(amount=45, to='dave'); seq 2 bank.pay(amount=60, to='erin')"
    ) in batch
    assert "execute -> paused with 3 pending" in batch
    assert "finance's queue: 1 paused run(s), 3 action(s) awaiting a decision" in batch
    refused = next(line for line in batch if line.startswith("ann edits seq 0 to amount 'thirty'"))
    assert "is not of type 'integer'" in refused and "Nothing was approved; action 0 is still pending." in refused
    assert "ann approves seq 0 with amount 30 -> paused, still pending: [1, 2]" in batch
    assert "bob rejects seq 1, letting the program go on -> True" in batch
    assert "ann approves seq 2 -> completed: [{'to': 'carol', 'amount': 30}, {'to': 'erin', 'amount': 60}]" in batch
    assert "program printed: dave not paid: Action bank.pay rejected by bob: no invoice on file" in batch
    assert "the same key again -> completed, same run: True" in batch
    assert [line for line in batch if line.startswith("ledger:")] == [
        "ledger: alice 10 (key A:0)",
        "ledger: carol 30 (key B:0)",
        "ledger: erin 60 (key B:2)",
    ]
    assert "posted: ['paid 2 invoice(s)']" in batch


def test_the_audit_trail_says_who_decided_what(run: tuple[Path, list[str]]) -> None:
    _, lines = run
    audit = section(lines, 3)
    assert audit[1:] == [
        "run A [rejected]",
        "seq 0 bank.pay(amount=10, to='alice') [applied]: approve by ann",
        "seq 1 bank.pay(amount=5000, to='mallory') [reverted]: reject by bob (not on the payroll)",
        "run B [completed]",
        "seq 0 bank.pay(amount=300, to='carol') [applied]: approve by ann (the invoice says 30), "
        "ran with {'to': 'carol', 'amount': 30}",
        "seq 1 bank.pay(amount=45, to='dave') [error]: reject by bob (no invoice on file)",
        "seq 2 bank.pay(amount=60, to='erin') [applied]: approve by ann",
        "seq 3 bank.post_summary(text='paid 2 invoice(s)') [applied]: no decision needed",
    ]


def test_the_rollback_reports_every_action(run: tuple[Path, list[str]]) -> None:
    _, lines = run
    rollback = section(lines, 4)
    assert "reverted=[2, 0] irreversible=[3] failed={}" in rollback
    assert [line for line in rollback if line.startswith("ledger:")] == [
        "ledger: alice 10 (key A:0)",
        "ledger: carol 30 (key B:0) refunded",
        "ledger: erin 60 (key B:2) refunded",
    ]
    assert "run B is rolled_back: seq 0 reverted, seq 1 error, seq 2 reverted, seq 3 applied" in rollback


def test_each_approved_payment_ran_exactly_once(run: tuple[Path, list[str]]) -> None:
    workdir, _ = run
    db = sqlite3.connect(workdir / "bank.db")
    rows = db.execute("SELECT payee, amount, seq, refunded FROM payments ORDER BY rowid").fetchall()
    db.close()
    assert rows == [("alice", 10, 0, 0), ("carol", 30, 0, 1), ("erin", 60, 2, 1)]


async def test_the_approvals_survive_the_rollback(run: tuple[Path, list[str]]) -> None:
    workdir, _ = run
    async with codemode.Runtime([], store=codemode.SqliteStore(workdir / "codemode.db")) as runtime:
        [invoices] = [e for e in await runtime.executions() if e.key == "invoices-june"]
    carol = invoices.log[0].decision
    assert carol is not None
    assert (carol.kind, carol.by, carol.args) == ("approve", "ann", {"to": "carol", "amount": 30})
    assert invoices.log[0].rollback is not None and invoices.log[0].rollback.kind == "rollback"
