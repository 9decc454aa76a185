"""A host process for the race tests: one runtime operation on a shared database, one JSON line out.

    python race_worker.py MODE DB LEDGER [ID] [SEQ] [--at T | --at -] [--delay S] [--program NAME] ...

Modes: `pause` (execute a program, print its outcome), `approve ID SEQ`, `reject ID SEQ [--resume]`,
`rollback ID`, `recover ID`, `expire`, `delete ID`, `show ID`. DB is a SQLite file or a PostgreSQL DSN.

`--at T` starts the operation at wall-clock instant T (time.time()); `--at -` first prints
`{"ready": true}` (runtime open, connectors described) and then reads T from stdin, so a test can
line several processes up on one instant after every one of them is warm.

Every real effect and every revert is appended to the ledger file (one line, one `os.write` on an
O_APPEND descriptor, so processes can share it) with the call's idempotency key:

    effect <method> <idempotency key> <pid>
    revert <method> <idempotency key of the call it undoes> <pid>

The same connector and `act` are imported by the in-process (thread and gather) tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import codemode
from codemode import Connector, ToolContext, tool

# seq 0: an ungated, revertible effect; seq 1: the gated, revertible payment.
PAUSE_PROGRAM = "r = await ledger.reserve(n=1)\np = await ledger.pay(to='x')\nreturn {'reserve': r, 'pay': p}"

# Three gated payments started in parallel (seq 0, 1, 2); a rejected one is caught by the program.
BATCH_PROGRAM = """import asyncio
async def one(to):
    try:
        return await ledger.pay(to=to)
    except PermissionError as e:
        return 'rejected'
return await asyncio.gather(one('a'), one('b'), one('c'))"""

PROGRAMS = {"pause": PAUSE_PROGRAM, "batch": BATCH_PROGRAM}

# The same programs in JavaScript, for RACE_EXECUTOR=deno.
JS_PROGRAMS = {
    "pause": "const r = await ledger.reserve({ n: 1 });\nconst p = await ledger.pay({ to: 'x' });\n"
    "return { reserve: r, pay: p };",
    "batch": "const one = async (to) => {\n  try { return await ledger.pay({ to }); }\n"
    "  catch (e) { return 'rejected'; }\n};\nreturn await Promise.all([one('a'), one('b'), one('c')]);",
}


def programs() -> dict[str, str]:
    """The programs in the language of the executor `make_runtime` uses (RACE_EXECUTOR)."""
    return JS_PROGRAMS if os.environ.get("RACE_EXECUTOR") == "deno" else PROGRAMS


class Ledger(Connector):
    name = "ledger"

    def __init__(self, path: str | Path, delay: float = 0.0) -> None:
        self.path = Path(path)
        self.delay = delay

    def _write(self, kind: str, method: str, key: str) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{kind} {method} {key} {os.getpid()}\n".encode())
        finally:
            os.close(fd)

    @tool
    async def reserve(self, n: int, ctx: ToolContext) -> dict[str, Any]:
        """Reserve n units (an ungated effect)."""
        self._write("effect", "reserve", ctx.idempotency_key)
        return {"reserved": n}

    @reserve.revert
    async def _unreserve(self, args: dict[str, Any], result: Any, ctx: ToolContext) -> None:
        self._write("revert", "reserve", ctx.idempotency_key.removesuffix(":revert"))
        if self.delay:
            await asyncio.sleep(self.delay)  # widens the window in which a rollback owns the run

    @tool(requires_approval=True)
    async def pay(self, to: str, ctx: ToolContext) -> dict[str, Any]:
        """Pay someone (needs approval)."""
        self._write("effect", "pay", ctx.idempotency_key)
        if self.delay:
            await asyncio.sleep(self.delay)  # widens the window in which the pass owns a running run
        return {"paid": to}

    @pay.revert
    async def _unpay(self, args: dict[str, Any], result: Any, ctx: ToolContext) -> None:
        self._write("revert", "pay", ctx.idempotency_key.removesuffix(":revert"))
        if self.delay:
            await asyncio.sleep(self.delay)


def make_store(db: str | Path) -> codemode.Store:
    """`db` is a SQLite file, or a PostgreSQL DSN (`host=...` or `postgresql://...`)."""
    text = str(db)
    if text.startswith(("host=", "postgresql://", "postgres://")):
        return codemode.PostgresStore(text)
    return codemode.SqliteStore(db)


def make_runtime(db: str | Path, ledger: str | Path, delay: float = 0.0) -> codemode.Runtime:
    # RACE_EXECUTOR=deno: JavaScript on Deno, whose resumes always replay the log. RACE_RESUME=replay:
    # Monty without checkpoints, so every resume replays too.
    executor: codemode.Executor
    if os.environ.get("RACE_EXECUTOR") == "deno":
        executor = codemode.DenoExecutor()
    else:
        executor = codemode.MontyExecutor(checkpoints=os.environ.get("RACE_RESUME") != "replay")
    return codemode.Runtime([Ledger(ledger, delay)], store=make_store(db), executor=executor, heartbeat_interval=0.2)


def _outcome(outcome: codemode.Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "id": outcome.execution_id,
        "result": outcome.result,
        "error": outcome.error,
        "pending": [p.seq for p in outcome.pending],
    }


def _report(report: codemode.RollbackReport) -> dict[str, Any]:
    return {"reverted": report.reverted, "irreversible": report.irreversible, "failed": sorted(report.failed)}


async def act(
    runtime: codemode.Runtime,
    mode: str,
    execution_id: str = "",
    seq: int = 0,
    *,
    program: str = "pause",
    resume: bool = False,
    stale: float = 60.0,
    retry_for: float = 0.0,
    max_age: float = 0.0,
) -> dict[str, Any]:
    """One operation; whatever it returns or raises (of the documented kinds) becomes a JSON-able dict."""
    out: dict[str, Any] = {"mode": mode, "pid": os.getpid(), "t": time.time()}
    try:
        if mode == "pause":
            out.update(_outcome(await runtime.execute(programs()[program])))
        elif mode == "approve":
            out.update(_outcome(await runtime.approve(execution_id, seq, by=f"pid{os.getpid()}")))
        elif mode == "reject":
            out["ok"] = await runtime.reject(execution_id, seq, by=f"pid{os.getpid()}", resume=resume)
        elif mode == "rollback":
            deadline = time.time() + retry_for
            while True:
                try:
                    out["report"] = _report(await runtime.rollback(execution_id, stale_after=timedelta(seconds=stale)))
                    break
                except RuntimeError as exc:
                    # Retried only while a dead rollback still owns the run (it goes stale).
                    if "status: rolling_back" not in str(exc) or time.time() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        elif mode == "recover":
            deadline = time.time() + retry_for
            while True:
                outcome = await runtime.recover(execution_id, stale_after=timedelta(seconds=stale))
                error = outcome.error or ""
                if "cannot be recovered (status: running)" not in error or time.time() > deadline:
                    break
                await asyncio.sleep(0.05)  # the dead pass's heartbeat has not gone stale yet
            out.update(_outcome(outcome))
        elif mode == "expire":
            out["expired"] = await runtime.expire_paused(timedelta(seconds=max_age))
        elif mode == "delete":
            out["ok"] = await runtime.delete_execution(execution_id)
        elif mode == "show":
            execution = await runtime.execution(execution_id)
            out["execution"] = None if execution is None else describe(execution)
        else:
            raise SystemExit(f"unknown mode {mode}")
    except codemode.RollbackError as exc:
        out.update(exc="RollbackError", message=str(exc), report=_report(exc.report))
    except (RuntimeError, LookupError) as exc:
        out.update(exc=type(exc).__name__, message=str(exc))
    return out


def describe(execution: codemode.Execution) -> dict[str, Any]:
    return {
        "status": execution.status,
        "result": execution.result,
        "error": execution.error,
        "log": [
            {
                "seq": e.seq,
                "method": e.method,
                "state": e.state,
                "decision": None if e.decision is None else e.decision.kind,
            }
            for e in execution.log
        ],
    }


def wait_until(instant: float) -> None:
    """Sleep to just before `instant`, then spin, so processes started together really overlap."""
    while (left := instant - time.time()) > 0.003:
        time.sleep(left - 0.002)
    while time.time() < instant:
        pass


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode")
    parser.add_argument("db")
    parser.add_argument("ledger")
    parser.add_argument("id", nargs="?", default="")
    parser.add_argument("seq", nargs="?", type=int, default=0)
    parser.add_argument("--at", default=None)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--program", default="pause")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--stale", type=float, default=60.0)
    parser.add_argument("--retry-for", type=float, default=0.0)
    parser.add_argument("--max-age", type=float, default=0.0)
    parser.add_argument("--clock-skew", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.clock_skew:
        # A host whose clock is wrong by that many seconds. One machine has one clock, so this is the one
        # place the tests fake something: time.time() (and so every timestamp this host takes) is shifted.
        real_time = time.time
        time.time = lambda: real_time() + args.clock_skew
    async with make_runtime(args.db, args.ledger, args.delay) as runtime:
        await runtime.setup()
        await runtime.executions(limit=1)  # the store is open and migrated before the start line
        if args.at == "-":
            print(json.dumps({"ready": True}), flush=True)
            line = sys.stdin.readline()
            if not line:
                raise SystemExit("no start instant on stdin")
            wait_until(float(line))
        elif args.at is not None:
            wait_until(float(args.at))
        out = await act(
            runtime,
            args.mode,
            args.id,
            args.seq,
            program=args.program,
            resume=args.resume,
            stale=args.stale,
            retry_for=args.retry_for,
            max_age=args.max_age,
        )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
    # Everything durable is committed and the JSON line is out. Skip interpreter finalization: with
    # pydantic_monty 1.4.0 a pool thread sometimes calls back into Python (call_soon_threadsafe)
    # during Py_FinalizeEx and CPython aborts the process (SIGABRT/SIGBUS, ~1-2% of hosts that ran
    # a pass), which says nothing about the races these tests are about.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
