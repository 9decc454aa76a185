"""Durable call overhead, cold `execute` latency, resume cost and CPU speed: Monty beside Deno, in one run.

    .venv/bin/python benchmarks/runtime_overhead.py [--calls 1000] [--rounds 5] [--cold 200] [--only python]

Table 1: 1,000 sequential no-op connector calls in one program, per call, for each executor:
  - Monty only, the physical floor of a durable call: pydantic-monty's synchronous API driven from a thread (each
    call answered with a future, then settled), plus one SQLite WAL commit (an INSERT) per call;
  - the bare executor (a host that answers every call at once, no validation, no log): the floor;
  - the runtime with SQLite in memory (`:memory:`): everything but the disk;
  - the runtime with SQLite on disk (WAL): the real durable path.
Table 2: `execute` of a program returning 1, with warm pools (150 ms untimed between runs so pools refill, as
between model turns): the engine alone (Monty only), the executor, the runtime in memory and on disk.
Table 3: resume cost: `approve` of a run paused after 1,000 recorded reads, beside its first pass.
Table 4: a CPU-bound loop (sum of i*i for i < 1,000,000) inside the sandbox.
Rounds alternate between configurations, because this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic_monty

import codemode
from codemode.sandbox.base import Namespace


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


class Floor:
    """The floor of a durable Monty call: the synchronous API from a thread, plus one WAL commit per call."""

    def __init__(self, path: Path) -> None:
        self.pool = pydantic_monty.Monty(min_processes=1, max_processes=1)
        self.pool.__enter__()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, value TEXT NOT NULL)")
        self.bench = pydantic_monty.ClassInstance(type("bench", (), {})(), allowed_methods=["noop"])

    def _drive(self, calls: int) -> Any:
        code = f"for i in range({calls}):\n    await bench.noop()\n{calls}"
        with self.pool.checkout(limits={"max_suspensions": 4 * calls + 10}) as session:
            snap = session.feed_start(code, inputs={"bench": self.bench})
            while not isinstance(snap, pydantic_monty.MontyComplete):
                if isinstance(snap, pydantic_monty.FunctionSnapshot):
                    self.db.execute("BEGIN IMMEDIATE")
                    self.db.execute("INSERT INTO log (value) VALUES ('null')")
                    self.db.execute("COMMIT")
                    snap = snap.resume({"future": ...})
                elif isinstance(snap, pydantic_monty.FutureSnapshot):
                    snap = snap.resume({c: {"return_value": None} for c in snap.pending_call_ids})
                else:
                    raise AssertionError(snap)
            return snap.output

    async def run(self, calls: int) -> None:
        assert await asyncio.to_thread(self._drive, calls) == calls

    def close(self) -> None:
        self.pool.__exit__(None, None, None)
        self.db.close()


@dataclass(frozen=True)
class Language:
    name: str
    executor: Callable[[], codemode.Executor]
    loop_calls: Callable[[int], str]
    return_one: str
    paused: Callable[[int], str]
    cpu: str


LANGUAGES = [
    Language(
        "python (Monty)",
        codemode.MontyExecutor,
        lambda n: f"for i in range({n}):\n    await bench.noop()\nreturn {n}",
        "return 1",
        lambda n: f"for i in range({n}):\n    await bench.noop()\nreturn await gate.release()",
        "s = 0\nfor i in range(1000000):\n    s += i * i\nreturn s",
    ),
    Language(
        "javascript (Deno)",
        codemode.DenoExecutor,
        lambda n: f"for (let i = 0; i < {n}; i++) await bench.noop();\nreturn {n};",
        "return 1;",
        lambda n: f"for (let i = 0; i < {n}; i++) await bench.noop();\nreturn await gate.release();",
        "let s = 0;\nfor (let i = 0; i < 1000000; i++) s += i * i;\nreturn s;",
    ),
]


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1e3:.2f}"


def p95_ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    return f"{ordered[max(int(len(ordered) * 0.95) - 1, 0)] * 1e3:.2f}"


class Setup:
    """One language's executor and runtimes."""

    def __init__(self, language: Language, tmp: Path) -> None:
        self.language = language
        self.executor = language.executor()
        key = language.name.split()[0]
        self.memory = codemode.Runtime(
            [Bench(), Gate()], executor=self.executor, store=codemode.SqliteStore(":memory:"), max_executions=5
        )
        self.disk = codemode.Runtime(
            [Bench(), Gate()],
            executor=self.executor,
            store=codemode.SqliteStore(tmp / f"{key}.db"),
            max_executions=5,
        )
        self.namespaces = [Namespace("bench", frozenset({"noop"})), Namespace("gate", frozenset({"release"}))]

    async def bare(self, code: str) -> None:
        result = await self.executor.execute(self.executor.normalize(code), self.namespaces, NullHost())
        assert result.error is None, result.error

    @staticmethod
    async def durable(runtime: codemode.Runtime, code: str) -> Any:
        outcome = await runtime.execute(code)
        assert outcome.status == "completed", outcome.error
        return outcome.result

    async def close(self) -> None:
        await self.memory.store.close()
        await self.disk.aclose()


async def main(calls: int, rounds: int, cold: int, only: str | None) -> None:
    languages = [lang for lang in LANGUAGES if only is None or lang.name.startswith(only)]
    with tempfile.TemporaryDirectory() as tmp:
        setups = [Setup(lang, Path(tmp)) for lang in languages]
        floor = Floor(Path(tmp) / "floor.db") if any(s.language.name.startswith("python") for s in setups) else None
        if floor is not None:
            await floor.run(calls)
        for s in setups:  # warm pools, caches and imports
            await s.bare(s.language.loop_calls(calls))
            await s.durable(s.memory, s.language.loop_calls(calls))
            await s.durable(s.disk, s.language.loop_calls(calls))

        print(f"\nDurable call overhead: {calls} sequential no-op calls, median of {rounds} rounds")
        print(f"{'executor':<20} {'configuration':<20} {'µs per call':>12} {'vs bare':>8}")
        per_call: dict[tuple[str, str], list[float]] = {}
        for _ in range(rounds):
            if floor is not None:
                samples = per_call.setdefault(("python (Monty)", "floor (sync, commit)"), [])
                samples.append(await timed(lambda: floor.run(calls)) / calls)
            for s in setups:
                code = s.language.loop_calls(calls)
                for name, fn in (
                    ("bare executor", lambda s=s, code=code: s.bare(code)),
                    ("SQLite :memory:", lambda s=s, code=code: s.durable(s.memory, code)),
                    ("SQLite on disk", lambda s=s, code=code: s.durable(s.disk, code)),
                ):
                    per_call.setdefault((s.language.name, name), []).append(await timed(fn) / calls)
        for s in setups:
            base = statistics.median(per_call[(s.language.name, "bare executor")])
            names = ("floor (sync, commit)", "bare executor", "SQLite :memory:", "SQLite on disk")
            for name in (n for n in names if (s.language.name, n) in per_call):
                med = statistics.median(per_call[(s.language.name, name)])
                extra = "" if name in ("floor (sync, commit)", "bare executor") else f"+{(med - base) * 1e6:.0f}"
                print(f"{s.language.name:<20} {name:<20} {med * 1e6:>12.0f} {extra:>8}")

        latencies: dict[tuple[str, str], list[float]] = {}
        async with pydantic_monty.AsyncMonty() as pool:

            async def engine() -> None:
                async with pool.checkout() as session:
                    assert await session.feed_run("1") == 1

            await engine()
            for _ in range(cold):
                latencies.setdefault(("python (Monty)", "pydantic-monty alone"), []).append(await timed(engine))
                for s in setups:
                    one = s.language.return_one
                    for name, fn in (
                        ("executor", lambda s=s, one=one: s.bare(one)),
                        ("Runtime, :memory:", lambda s=s, one=one: s.durable(s.memory, one)),
                        ("Runtime, on disk", lambda s=s, one=one: s.durable(s.disk, one)),
                    ):
                        await asyncio.sleep(0.15)  # untimed: lets the warm pools refill, as between model turns
                        latencies.setdefault((s.language.name, name), []).append(await timed(fn))
        print(f"\nCold execute (a program returning 1) with warm pools, {cold} runs each")
        print(f"{'executor':<20} {'configuration':<22} {'median ms':>10} {'p95 ms':>8}")
        for (lang, name), samples in latencies.items():
            if any(lang == s.language.name for s in setups):
                print(f"{lang:<20} {name:<22} {median_ms(samples):>10} {p95_ms(samples):>8}")

        print(f"\nResume cost: a run paused after {calls} recorded reads (SQLite on disk), median of {rounds}")
        print(f"{'executor':<20} {'pass':<36} {'ms':>8} {'µs per call':>12}")
        for s in setups:
            first: list[float] = []
            resume: list[float] = []
            for _ in range(rounds):
                start = time.perf_counter()
                paused = await s.disk.execute(s.language.paused(calls))
                first.append(time.perf_counter() - start)
                assert paused.status == "paused", paused.error
                start = time.perf_counter()
                done = await s.disk.approve(paused.execution_id, paused.pending[0].seq)
                resume.append(time.perf_counter() - start)
                assert done.status == "completed" and done.result == "released", done.error
            for label, samples in (
                ("first pass (reads executed, logged)", first),
                ("approve (reads replayed)", resume),
            ):
                med = statistics.median(samples)
                print(f"{s.language.name:<20} {label:<36} {med * 1e3:>8.1f} {med / calls * 1e6:>12.0f}")

        print(f"\nCPU-bound loop (sum of i*i for i < 1,000,000) in the sandbox, median of {rounds}")
        print(f"{'executor':<20} {'ms':>8}")
        for s in setups:
            samples = [await timed(lambda s=s: s.durable(s.memory, s.language.cpu)) for _ in range(rounds)]
            print(f"{s.language.name:<20} {median_ms(samples):>8}")

        for s in setups:
            await s.close()
        if floor is not None:
            floor.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--cold", type=int, default=200)
    parser.add_argument("--only", choices=["python", "javascript"], default=None)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.cold, args.only))
