"""Durable call overhead and cold `execute` latency, side by side in one run.

    .venv/bin/python benchmarks/runtime_overhead.py [--calls 1000] [--rounds 5] [--cold 200]

Table 1: 1,000 sequential no-op connector calls in one program, per call:
  - bare Monty driver (no runtime, no log): the sandbox round-trip floor;
  - runtime with SQLite in memory (`:memory:`): everything but the disk;
  - runtime with SQLite on disk (WAL): the real durable path.
Table 2: `execute("return 1")` latency with a warm worker pool:
  - pydantic-monty alone (checkout + feed_run), the engine floor;
  - the Monty executor alone (checkout + prelude + program);
  - the runtime on SQLite in memory and on disk.
Table 3: resume cost: `approve` of a run paused after 1,000 recorded reads, beside its first pass.
Rounds alternate between configurations, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pydantic_monty

import codemode
from codemode.sandbox.base import ExecuteResult


class Bench(codemode.Connector):
    name = "bench"

    @codemode.tool
    def noop(self) -> None:
        """Do nothing."""


class Gate(codemode.Connector):
    name = "gate"

    @codemode.tool(requires_approval=True)
    def release(self) -> str:
        """An approved action."""
        return "released"


class NullHost:
    """A host that answers every call at once: no validation, no log."""

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
        return None


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def main(calls: int, rounds: int, cold: int) -> None:
    program = f"for i in range({calls}):\n    await bench.noop()\nreturn {calls}"
    with tempfile.TemporaryDirectory() as tmp:
        executor = codemode.MontyExecutor()
        on_disk = codemode.Runtime(
            [Bench()], executor=executor, store=codemode.SqliteStore(Path(tmp) / "b.db"), max_executions=5
        )
        in_memory = codemode.Runtime(
            [Bench()], executor=executor, store=codemode.SqliteStore(":memory:"), max_executions=5
        )
        namespaces = [codemode.sandbox.base.Namespace("bench", frozenset({"noop"}))]

        async def bare(code: str) -> ExecuteResult:
            result = await executor.execute(code, namespaces, NullHost())
            assert result.error is None, result.error
            return result

        async def durable(runtime: codemode.Runtime, code: str) -> None:
            outcome = await runtime.execute(code)
            assert outcome.status == "completed", outcome.error

        # Warm everything once.
        await bare(program)
        await durable(in_memory, program)
        await durable(on_disk, program)

        per_call: dict[str, list[float]] = {"bare Monty driver": [], "SQLite :memory:": [], "SQLite on disk": []}
        for _ in range(rounds):
            per_call["bare Monty driver"].append(await timed(lambda: bare(program)) / calls)
            per_call["SQLite :memory:"].append(await timed(lambda: durable(in_memory, program)) / calls)
            per_call["SQLite on disk"].append(await timed(lambda: durable(on_disk, program)) / calls)

        print(f"\nDurable call overhead: {calls} sequential no-op calls, median of {rounds} rounds")
        print(f"{'configuration':<22} {'µs per call':>12} {'vs bare':>10}")
        base = statistics.median(per_call["bare Monty driver"])
        for name, samples in per_call.items():
            med = statistics.median(samples)
            extra = "" if name == "bare Monty driver" else f"+{(med - base) * 1e6:.0f}"
            print(f"{name:<22} {med * 1e6:>12.0f} {extra:>10}")

        async with pydantic_monty.AsyncMonty() as pool:

            async def engine() -> None:
                async with pool.checkout() as session:
                    assert await session.feed_run("1") == 1

            latencies: dict[str, list[float]] = {
                "pydantic-monty alone": [],
                "MontyExecutor": [],
                "Runtime, :memory:": [],
                "Runtime, on disk": [],
            }
            await engine()
            for _ in range(cold):
                latencies["pydantic-monty alone"].append(await timed(engine))
                latencies["MontyExecutor"].append(await timed(lambda: bare("return 1")))
                latencies["Runtime, :memory:"].append(await timed(lambda: durable(in_memory, "return 1")))
                latencies["Runtime, on disk"].append(await timed(lambda: durable(on_disk, "return 1")))

        print(f'\nCold execute("return 1") with a warm pool, {cold} runs each')
        print(f"{'configuration':<22} {'median ms':>10} {'p95 ms':>8}")
        for name, samples in latencies.items():
            samples.sort()
            p95 = samples[int(len(samples) * 0.95) - 1]
            print(f"{name:<22} {statistics.median(samples) * 1e3:>10.2f} {p95 * 1e3:>8.2f}")

        # Resume cost: approve a run paused after `calls` recorded reads (replayed from one log query).
        gated = codemode.Runtime(
            [Bench(), Gate()], executor=executor, store=codemode.SqliteStore(Path(tmp) / "g.db"), max_executions=5
        )
        paused_program = f"for i in range({calls}):\n    await bench.noop()\nreturn await gate.release()"
        first: list[float] = []
        resume: list[float] = []
        for _ in range(rounds):
            start = time.perf_counter()
            paused = await gated.execute(paused_program)
            first.append(time.perf_counter() - start)
            assert paused.status == "paused", paused.error
            start = time.perf_counter()
            done = await gated.approve(paused.execution_id)
            resume.append(time.perf_counter() - start)
            assert done.status == "completed" and done.result == "released", done.error
        print(f"\nResume cost: a run paused after {calls} recorded reads (SQLite on disk), median of {rounds}")
        print(f"{'pass':<34} {'ms':>8} {'µs per call':>12}")
        print(
            f"{'first pass (reads executed, logged)':<34} {statistics.median(first) * 1e3:>8.1f} "
            f"{statistics.median(first) / calls * 1e6:>12.0f}"
        )
        print(
            f"{'approve (reads replayed from log)':<34} {statistics.median(resume) * 1e3:>8.1f} "
            f"{statistics.median(resume) / calls * 1e6:>12.0f}"
        )
        await gated.store.close()

        await in_memory.store.close()
        await on_disk.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.cold))
