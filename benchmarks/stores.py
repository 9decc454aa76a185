"""SQLite beside PostgreSQL, in one run: the durable call, approvals, and several host processes.

    .venv/bin/python benchmarks/stores.py [--calls 300] [--rounds 5] [--approvals 100] [--runs 40]

The PostgreSQL server is a real one started for the run (initdb into a temporary directory, Unix
socket, the test suite's settings: fsync off), so both stores are measured on this machine's disk.

Table 1: per-call cost of `--calls` sequential no-op connector calls in one Monty program.
Table 2: approvals per second: `--approvals` paused runs approved one after another (each approval
         resumes its run, which completes).
Table 3: aggregate throughput of 1, 2 and 4 OS processes, each with its own Runtime, on one database:
         `--runs` programs of 10 calls per process.
Rounds alternate between the stores, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import codemode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from postgres_server import PostgresServer  # the test suite's throwaway server


class Bench(codemode.Connector):
    name = "bench"

    @codemode.tool
    def noop(self) -> None:
        """Do nothing."""

    @codemode.tool(requires_approval=True)
    def release(self) -> str:
        """An approved action."""
        return "released"


def loop_program(calls: int) -> str:
    return f"for i in range({calls}):\n    await bench.noop()\nreturn {calls}"


def make_store(kind: str, target: str) -> codemode.Store:
    return codemode.SqliteStore(target) if kind == "sqlite" else codemode.PostgresStore(target)


async def per_call(kind: str, target: str, calls: int) -> float:
    async with codemode.Runtime([Bench()], store=make_store(kind, target), max_executions=10) as runtime:
        await runtime.execute("return 1")  # warm: pools, schema
        start = time.perf_counter()
        outcome = await runtime.execute(loop_program(calls))
        elapsed = time.perf_counter() - start
    assert outcome.status == "completed", outcome.error
    return elapsed / calls * 1e6


async def approvals(kind: str, target: str, count: int) -> float:
    async with codemode.Runtime([Bench()], store=make_store(kind, target), max_executions=10) as runtime:
        paused = [await runtime.execute("return await bench.release()") for _ in range(count)]
        start = time.perf_counter()
        for outcome in paused:
            done = await runtime.approve(outcome.execution_id, outcome.pending[0].seq)
            assert done.status == "completed", done.error
        return count / (time.perf_counter() - start)


def host(kind: str, target: str, runs: int, barrier: Any, results: Any) -> None:
    async def go() -> None:
        async with codemode.Runtime([Bench()], store=make_store(kind, target), max_executions=10) as runtime:
            await runtime.execute("return 1")
            barrier.wait()
            start = time.perf_counter()
            for _ in range(runs):
                outcome = await runtime.execute(loop_program(10))
                assert outcome.status == "completed", outcome.error
            results.put(time.perf_counter() - start)

    asyncio.run(go())


def hosts(kind: str, target: str, processes: int, runs: int) -> float:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes)
    results = context.Queue()
    workers = [context.Process(target=host, args=(kind, target, runs, barrier, results)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    elapsed = [results.get(timeout=600) for _ in workers]
    for worker in workers:
        worker.join()
    return processes * runs / max(elapsed)


def main(calls: int, rounds: int, approval_count: int, runs: int) -> None:
    server = PostgresServer()
    server.start()
    directory = Path(tempfile.mkdtemp(prefix="codemode-bench-"))
    targets = {"sqlite": str(directory / "bench.db"), "postgres": server.dsn(server.new_schema())}
    try:
        call_us: dict[str, list[float]] = {kind: [] for kind in targets}
        approve_rate: dict[str, list[float]] = {kind: [] for kind in targets}
        for _ in range(rounds):
            for kind, target in targets.items():
                call_us[kind].append(asyncio.run(per_call(kind, target, calls)))
                approve_rate[kind].append(asyncio.run(approvals(kind, target, approval_count)))
        print(f"\nTable 1: per durable call, {calls} no-op calls per program, median of {rounds} rounds")
        print("| store | µs per call |\n|---|---|")
        for kind in targets:
            print(f"| {kind} | {statistics.median(call_us[kind]):.0f} |")
        print(f"\nTable 2: approvals per second ({approval_count} paused runs approved in turn, each completing)")
        print("| store | approvals/s |\n|---|---|")
        for kind in targets:
            print(f"| {kind} | {statistics.median(approve_rate[kind]):.0f} |")
        print(f"\nTable 3: aggregate runs per second (10 calls each), {runs} runs per process, one database")
        print("| store | 1 process | 2 processes | 4 processes |\n|---|---|---|---|")
        for kind, target in targets.items():
            rates = [hosts(kind, target, n, runs) for n in (1, 2, 4)]
            print(f"| {kind} | " + " | ".join(f"{r:.1f}" for r in rates) + " |")
    finally:
        server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--approvals", type=int, default=100)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    main(args.calls, args.rounds, args.approvals, args.runs)
