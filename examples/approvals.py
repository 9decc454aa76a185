"""Approvals with several reviewers: a stale click, a batch decided one by one, a rollback, the audit trail.

Run it with `python examples/approvals.py [workdir]` (the databases go in the workdir, else in a
temporary directory).
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any, TypedDict

import codemode


class Payment(TypedDict):
    to: str
    amount: int


class Bank(codemode.Connector):
    """Payments kept in their own SQLite table, one row per idempotency key."""

    name = "bank"
    instructions = "Pay people and post to the finance channel."

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS payments "
            "(key TEXT PRIMARY KEY, run TEXT, seq INTEGER, payee TEXT, amount INTEGER, refunded INTEGER)"
        )
        self.posts: list[str] = []

    @codemode.tool(requires_approval=True)
    def pay(self, to: str, amount: int, ctx: codemode.ToolContext) -> Payment:
        """Pay someone. A human approves every payment.

        Args:
            to: Who gets the money.
            amount: How much, in whole euros.
        """
        # The key names this one call of this one run: a call repeated after a crash pays nobody twice.
        self.db.execute(
            "INSERT OR IGNORE INTO payments (key, run, seq, payee, amount, refunded) VALUES (?, ?, ?, ?, ?, 0)",
            (ctx.idempotency_key, ctx.execution_id, ctx.seq, to, amount),
        )
        return {"to": to, "amount": amount}

    @pay.revert
    def _refund(self, args: dict[str, Any], result: Payment, ctx: codemode.ToolContext) -> None:
        # A revert's context names the call it undoes: the same run and seq.
        self.db.execute("UPDATE payments SET refunded = 1 WHERE run = ? AND seq = ?", (ctx.execution_id, ctx.seq))

    @codemode.tool
    def post_summary(self, text: str) -> str:
        """Post a message to the finance channel (it cannot be unsent).

        Args:
            text: The message.
        """
        self.posts.append(text)
        return "posted"

    def ledger(self) -> list[tuple[str, str, int, bool]]:
        rows = self.db.execute("SELECT key, payee, amount, refunded FROM payments ORDER BY rowid")
        return [(key, payee, amount, bool(refunded)) for key, payee, amount, refunded in rows]


PAYROLL = """
await bank.pay(to="alice", amount=10)
await bank.pay(to="mallory", amount=5000)
return "payroll done"
"""

INVOICES = """
import asyncio

async def pay(to, amount):
    try:
        return await bank.pay(to=to, amount=amount)
    except PermissionError as refused:
        print(f"{to} not paid: {refused}")
        return None

results = await asyncio.gather(pay("carol", 300), pay("dave", 45), pay("erin", 60))
paid = [r for r in results if r is not None]
await bank.post_summary(text=f"paid {len(paid)} invoice(s)")
return paid
"""


class Names:
    """Execution ids are unique and random; the printout calls the runs A and B instead."""

    def __init__(self) -> None:
        self.labels: dict[str, str] = {}

    def add(self, execution_id: str) -> str:
        return self.labels.setdefault(execution_id, "AB"[len(self.labels)])

    def __call__(self, text: object) -> str:
        out = str(text)
        for execution_id, label in self.labels.items():
            out = out.replace(execution_id, label)
        return out


def action(pending: codemode.PendingAction) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(pending.args.items()))
    return f"seq {pending.seq} {pending.connector}.{pending.method}({args})"


def decision(entry: codemode.LogEntry) -> str:
    d = entry.decision
    if d is None:
        return "no decision needed"
    text = f"{d.kind} by {d.by or 'user'}"
    if d.reason:
        text += f" ({d.reason})"
    if d.args is not None:
        text += f", ran with {d.args}"
    return text


async def main(workdir: Path) -> None:
    for stale in ("bank.db", "codemode.db"):  # the story starts from empty databases every time
        for suffix in ("", "-wal", "-shm"):
            (workdir / f"{stale}{suffix}").unlink(missing_ok=True)
    bank = Bank(workdir / "bank.db")
    name = Names()

    def show_ledger() -> None:
        for key, payee, amount, refunded in bank.ledger():
            print(f"   ledger: {payee} {amount} (key {name(key)}){' refunded' if refunded else ''}")

    async def page(pending: list[codemode.PendingAction]) -> None:
        # on_pause: whenever a run pauses, tell the approvers what needs them (chat, e-mail, a queue...).
        label = name.add(pending[0].execution_id)
        print(f"   (on_pause) page #finance: run {label} waits for {'; '.join(action(p) for p in pending)}")

    store = codemode.SqliteStore(workdir / "codemode.db")
    async with codemode.Runtime([bank], store=store, on_pause=page) as runtime:
        print("1. Two reviewers see the same pending payment")
        outcome = await runtime.execute(PAYROLL)
        run_a = outcome.execution_id
        print(f"   execute -> {outcome.status}")
        ann_sees = await runtime.pending(run_a)
        bob_sees = await runtime.pending(run_a)
        print(f"   ann sees: {action(ann_sees[0])}")
        print(f"   bob sees: {action(bob_sees[0])}")

        outcome = await runtime.approve(run_a, ann_sees[0].seq, by="ann")
        print(f"   ann approves seq {ann_sees[0].seq} -> {outcome.status}")

        outcome = await runtime.approve(run_a, bob_sees[0].seq, by="bob")
        print(f"   bob approves seq {bob_sees[0].seq} too -> {outcome.status}: {name(outcome.error)}")
        print(f"   bob's screen now shows: {', '.join(action(p) for p in outcome.pending)}")
        show_ledger()

        rejected = await runtime.reject(run_a, outcome.pending[0].seq, by="bob", reason="not on the payroll")
        execution = await runtime.execution(run_a)
        assert execution is not None
        print(
            f"   bob rejects seq {outcome.pending[0].seq} -> {rejected}; run A is {execution.status}: {execution.error}"
        )

        print("2. Three invoices paid in parallel, decided one by one")
        outcome = await runtime.execute(INVOICES, key="invoices-june", metadata={"team": "finance"})
        run_b = outcome.execution_id
        print(f"   execute -> {outcome.status} with {len(outcome.pending)} pending")
        queue = await runtime.executions(metadata={"team": "finance"}, status="paused")
        waiting = await runtime.pending()  # every action awaiting a human, across paused runs
        print(f"   finance's queue: {len(queue)} paused run(s), {len(waiting)} action(s) awaiting a decision")

        carol, dave, erin = outcome.pending
        outcome = await runtime.approve(run_b, carol.seq, by="ann", args={"to": "carol", "amount": "thirty"})
        print(f"   ann edits seq {carol.seq} to amount 'thirty' -> {outcome.status}: {outcome.error}")
        outcome = await runtime.approve(
            run_b, carol.seq, by="ann", reason="the invoice says 30", args={"to": "carol", "amount": 30}
        )
        still = [p.seq for p in outcome.pending]
        print(f"   ann approves seq {carol.seq} with amount 30 -> {outcome.status}, still pending: {still}")
        rejected = await runtime.reject(run_b, dave.seq, by="bob", reason="no invoice on file", resume=True)
        print(f"   bob rejects seq {dave.seq}, letting the program go on -> {rejected}")
        outcome = await runtime.approve(run_b, erin.seq, by="ann")
        print(f"   ann approves seq {erin.seq} -> {outcome.status}: {outcome.result}")
        for line in outcome.logs:
            print(f"   program printed: {line}")

        again = await runtime.execute(INVOICES, key="invoices-june", metadata={"team": "finance"})
        print(f"   the same key again -> {again.status}, same run: {again.execution_id == run_b}")
        show_ledger()
        print(f"   posted: {bank.posts}")

        print("3. The audit trail: who decided what")
        for run in (run_a, run_b):
            execution = await runtime.execution(run)
            assert execution is not None
            print(f"   run {name(run)} [{execution.status}]")
            for entry in execution.log:
                call = f"{entry.connector}.{entry.method}({', '.join(f'{k}={v!r}' for k, v in entry.args.items())})"
                print(f"     seq {entry.seq} {call} [{entry.state}]: {decision(entry)}")

        print("4. Roll run B back")
        report = await runtime.rollback(run_b, by="ann")
        print(f"   reverted={report.reverted} irreversible={report.irreversible} failed={report.failed}")
        show_ledger()
        execution = await runtime.execution(run_b)
        assert execution is not None
        print(f"   run B is {execution.status}: " + ", ".join(f"seq {e.seq} {e.state}" for e in execution.log))


if __name__ == "__main__":
    if len(sys.argv) > 1:
        target = Path(sys.argv[1])
        target.mkdir(parents=True, exist_ok=True)
        asyncio.run(main(target))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(main(Path(tmp)))
