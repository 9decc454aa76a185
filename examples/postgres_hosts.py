"""Several hosts, one runtime, on PostgreSQL: a pause on one host is approved from another.

Run it with `python examples/postgres_hosts.py DSN` (for example
`python examples/postgres_hosts.py postgresql://app@localhost/agents`); needs `pip install 'codemode[postgres]'`.

Three OS processes share one database:
- the *agent host* runs a program that reads and then asks to send a payment: the run pauses;
- the *approval host* waits for the pause (no polling: PostgreSQL notifies it), shows what is pending,
  and approves it: the payment is sent there, exactly once;
- two more hosts click "approve" on the same action at one instant, from pages that went stale:
  both are told it was already decided, and nothing runs twice.
Then the audit trail is printed.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
import time
from typing import Any

import codemode


class Payments(codemode.Connector):
    name = "payments"

    @codemode.tool
    def balance(self) -> int:
        """The account balance, in cents."""
        return 12_000

    @codemode.tool(requires_approval=True)
    def send(self, to: str, cents: int, ctx: codemode.ToolContext) -> dict[str, Any]:
        """Send money. A human approves every payment."""
        print(f"  [pid {multiprocessing.current_process().pid}] sending {cents} to {to} (key {ctx.idempotency_key})")
        return {"sent": cents, "to": to}


PROGRAM = """balance = await payments.balance()
receipt = await payments.send(to="ana", cents=balance // 4)
return {"balance": balance, "receipt": receipt}"""


def finish() -> None:
    """End a host process: everything durable is committed by now. (pydantic-monty 1.4.0 can abort a
    process during interpreter shutdown after it ran a program, so hosts skip the shutdown.)"""
    sys.stdout.flush()
    os._exit(0)


def runtime(dsn: str) -> codemode.Runtime:
    return codemode.Runtime([Payments()], store=codemode.PostgresStore(dsn), name="example-hosts")


def agent_host(dsn: str) -> None:
    async def main() -> None:
        async with runtime(dsn) as rt:
            outcome = await rt.execute(PROGRAM, metadata={"user": "ana"})
            print(f"agent host: the run {outcome.status} at {[(p.method, p.args) for p in outcome.pending]}")

    asyncio.run(main())
    finish()


def approval_host(dsn: str, listening: Any) -> None:
    async def main() -> None:
        store = codemode.PostgresStore(dsn)
        ready = asyncio.Event()
        changes = store.changes(ready=ready)
        waiting = asyncio.ensure_future(anext(changes))
        await ready.wait()
        listening.set()
        change = await waiting
        while change.status != "paused":
            change = await anext(changes)
        await changes.aclose()
        async with runtime(dsn) as rt:
            [action] = await rt.pending(change.execution_id)
            print(f"approval host: heard {change.status}; approving seq {action.seq} {action.method}{action.args}")
            outcome = await rt.approve(action.execution_id, action.seq, by="finance-lead", reason="within budget")
            print(f"approval host: the run is {outcome.status}: {outcome.result}")

    asyncio.run(main())
    finish()


def racing_host(dsn: str, execution_id: str, seq: int, start: float) -> None:
    async def main() -> None:
        async with runtime(dsn) as rt:
            await rt.executions(limit=1)  # connected before the start line
            await asyncio.sleep(max(0.0, start - time.time()))
            outcome = await rt.approve(execution_id, seq, by=f"pid {multiprocessing.current_process().pid}")
            print(f"racing host: {outcome.status}: {(outcome.error or '').splitlines()[0]}")

    asyncio.run(main())
    finish()


async def audit(dsn: str) -> str:
    async with runtime(dsn) as rt:
        [execution] = await rt.executions(limit=1)
        print(f"\naudit trail of {execution.id} ({execution.status}, metadata {execution.metadata}):")
        for entry in execution.log:
            decided = "" if entry.decision is None else f"  {entry.decision.kind} by {entry.decision.by}"
            print(f"  #{entry.seq} {entry.connector}.{entry.method}{entry.args} -> {entry.state}{decided}")
        return execution.id


def main(dsn: str) -> None:
    context = multiprocessing.get_context("spawn")
    listening = context.Event()
    approver = context.Process(target=approval_host, args=(dsn, listening))
    approver.start()
    listening.wait(30)
    agent = context.Process(target=agent_host, args=(dsn,))
    agent.start()
    for process in (agent, approver):
        process.join(120)
        assert process.exitcode == 0, f"a host failed ({process.exitcode})"
    execution_id = asyncio.run(audit(dsn))
    start = time.time() + 1.0
    racers = [context.Process(target=racing_host, args=(dsn, execution_id, 1, start)) for _ in range(2)]
    for process in racers:
        process.start()
    for process in racers:
        process.join(120)
        assert process.exitcode == 0, f"a host failed ({process.exitcode})"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
