"""Deno: a fresh Worker per run in long-lived processes (this tree) beside a process per run (a base revision).

    .venv/bin/python benchmarks/deno_workers.py --base 1178cea [--rounds 2] [--fixed 40] [--calls 1000]

One side is the base revision (its `src/` exported with `git archive` into a temporary directory, removed at the
end); the other is this working tree's `src/`. Each round measures each side once, in a fresh `python` process
with `PYTHONPATH=<tree>/src` (the child reports `codemode.__file__`), in alternating order; the table shows the
median over the rounds. Monty is measured in the same children, for the fixed-cost ratio.

What a child measures, with `DenoExecutor` (and `MontyExecutor` for the fixed cost):
  - fixed cost: `execute` of `return 1` through the bare executor (a host that answers at once) and through a
    `Runtime` on SQLite on disk, with 150 ms untimed between runs so warm pools refill (as between model turns);
  - throughput: runs per second of `return 1` through the bare executor with K programs in flight at once
    (K = 1, 10, 50, 200), the executor's cap set to K;
  - memory: 200 programs each awaiting a host call that answers only once all 200 are waiting; the sum of the
    RSS of every Deno process of the child at that moment (and the sum of PSS, which counts shared pages once);
  - per call: 1,000 sequential no-op calls, through the bare executor (the floor) and through the `Runtime` on
    SQLite on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from revisions import ROOT, export_tree, json_child

LEVELS = (1, 10, 50, 200)


# -- child: one side's measurements -------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _deno_memory() -> tuple[int, int, int]:
    """(processes, sum of RSS, sum of PSS) of the Deno processes below this one, in bytes."""
    count = rss = pss = 0
    for pid in _descendants(os.getpid()):
        try:
            if b"deno" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                continue
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in rollup.splitlines()[1:]}
        count += 1
        rss += fields.get("Rss", 0)
        pss += fields.get("Pss", 0)
    return count, rss, pss


async def child(fixed: int, calls: int) -> dict[str, Any]:
    import codemode
    from codemode.sandbox.base import Namespace

    class Bench(codemode.Connector):
        name = "bench"

        @codemode.tool
        def noop(self) -> None:
            """Do nothing."""

    class NullHost:
        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            return None

    new = "max_runs" in inspect.signature(codemode.DenoExecutor).parameters

    def deno(cap: int | None = None) -> codemode.DenoExecutor:
        if cap is None:
            return codemode.DenoExecutor(timeout=120)
        if new:
            return codemode.DenoExecutor(timeout=120, max_runs=cap)  # type: ignore[call-arg]
        return codemode.DenoExecutor(timeout=120, max_processes=cap)

    out: dict[str, Any] = {"file": codemode.__file__, "mode": "worker per run" if new else "process per run"}
    bench_ns = [Namespace("bench", frozenset({"noop"}))]

    async def bare(executor: codemode.Executor, code: str, host: Any = None) -> Any:
        result = await executor.execute(executor.normalize(code), bench_ns, host or NullHost())
        assert result.error is None, result.error
        return result.result

    with tempfile.TemporaryDirectory() as tmp:
        # fixed cost, Deno and Monty interleaved
        executors = {"deno": deno(), "monty": codemode.MontyExecutor(timeout=120)}
        one = {"deno": "return 1;", "monty": "return 1"}
        runtimes = {
            name: codemode.Runtime(
                [Bench()], executor=ex, store=codemode.SqliteStore(Path(tmp) / f"{name}.db"), max_executions=5
            )
            for name, ex in executors.items()
        }
        samples: dict[str, list[float]] = {}
        for name in executors:
            await bare(executors[name], one[name])
            await runtimes[name].execute(one[name])
        for _ in range(fixed):
            for name, ex in executors.items():
                for how in ("executor", "runtime"):
                    await asyncio.sleep(0.15)
                    start = time.perf_counter()
                    if how == "executor":
                        assert await bare(ex, one[name]) == 1
                    else:
                        outcome = await runtimes[name].execute(one[name])
                        assert outcome.result == 1, outcome.error
                    samples.setdefault(f"{name} {how}", []).append(time.perf_counter() - start)
        out["fixed_ms"] = {key: statistics.median(v) * 1e3 for key, v in samples.items()}

        # per call: the bare executor (the floor) and the durable runtime
        loop_code = f"for (let i = 0; i < {calls}; i++) await bench.noop();\nreturn {calls};"
        per_call: dict[str, list[float]] = {}
        ex = executors["deno"]
        await bare(ex, loop_code)
        for _ in range(3):
            start = time.perf_counter()
            await bare(ex, loop_code)
            per_call.setdefault("floor", []).append((time.perf_counter() - start) / calls)
            start = time.perf_counter()
            outcome = await runtimes["deno"].execute(loop_code)
            assert outcome.status == "completed", outcome.error
            per_call.setdefault("durable", []).append((time.perf_counter() - start) / calls)
        out["per_call_us"] = {key: statistics.median(v) * 1e6 for key, v in per_call.items()}
        for runtime in runtimes.values():
            await runtime.aclose()

    # throughput at K in flight
    out["runs_per_s"] = {}
    for level in LEVELS:
        executor = deno(level)
        await bare(executor, "return 1;")
        total = max(40, 2 * level)
        queue = iter(range(total))

        async def worker(executor: codemode.DenoExecutor = executor, queue: Any = queue) -> None:
            for _ in queue:
                assert await bare(executor, "return 1;") == 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(level)))
        out["runs_per_s"][str(level)] = total / (time.perf_counter() - start)
        await executor.aclose()

    # memory with 200 programs live at once
    executor = deno(200)
    waiting = 0
    release = asyncio.Event()
    all_in = asyncio.Event()

    class SlowHost:
        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            nonlocal waiting
            waiting += 1
            if waiting == 200:
                all_in.set()
            await release.wait()

    await bare(executor, "return 1;")
    runs = asyncio.gather(*(bare(executor, "await bench.noop();\nreturn 1;", SlowHost()) for _ in range(200)))
    start = time.perf_counter()
    await asyncio.wait_for(all_in.wait(), 300)
    out["live_200_s"] = time.perf_counter() - start
    await asyncio.sleep(0.5)
    out["processes"], out["rss"], out["pss"] = _deno_memory()
    release.set()
    assert await runs == [1] * 200
    await executor.aclose()
    return out


# -- parent: both sides, alternating ------------------------------------------------------------------------


def run_side(src: Path, fixed: int, calls: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return json_child([sys.executable, __file__, "--child", "--fixed", str(fixed), "--calls", str(calls)], env, 1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="1178cea", help="the revision with a Deno process per run")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fixed", type=int, default=40, help="fixed-cost samples per configuration")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.fixed, args.calls))))
        return

    with tempfile.TemporaryDirectory() as tmp:
        sides = {"base": export_tree(args.base, Path(tmp)), "new": ROOT / "src"}
        results: dict[str, list[dict[str, Any]]] = {"base": [], "new": []}
        for round_ in range(args.rounds):
            for side in ("base", "new") if round_ % 2 == 0 else ("new", "base"):
                results[side].append(run_side(sides[side], args.fixed, args.calls))
                print(f"round {round_ + 1}: {side} done ({results[side][-1]['file']})", file=sys.stderr)

    def med(side: str, *path: str) -> float:
        values = []
        for result in results[side]:
            value: Any = result
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    label = {side: results[side][0]["mode"] for side in results}
    print(f"\nDeno, {label['base']} ({args.base}) beside {label['new']} (this tree): median of {args.rounds} rounds\n")
    print(f"| measure | {label['base']} | {label['new']} | new / old |")
    print("|---|---:|---:|---:|")

    def row(name: str, unit: str, *path: str, digits: int = 1) -> None:
        old, new = med("base", *path), med("new", *path)
        print(f"| {name} ({unit}) | {old:,.{digits}f} | {new:,.{digits}f} | {new / old:.2f} |")

    row("fixed cost, executor", "ms", "fixed_ms", "deno executor", digits=2)
    row("fixed cost, Runtime on SQLite", "ms", "fixed_ms", "deno runtime", digits=2)
    for level in LEVELS:
        row(f"throughput, {level} in flight", "runs/s", "runs_per_s", str(level))
    row("200 live runs: time until all wait", "s", "live_200_s", digits=2)
    row("200 live runs: Deno processes", "count", "processes", digits=0)
    print(
        f"| 200 live runs: sum of RSS (MiB) | {med('base', 'rss') / 2**20:,.0f} | {med('new', 'rss') / 2**20:,.0f} "
        f"| {med('new', 'rss') / med('base', 'rss'):.2f} |"
    )
    print(
        f"| 200 live runs: sum of PSS (MiB) | {med('base', 'pss') / 2**20:,.0f} | {med('new', 'pss') / 2**20:,.0f} "
        f"| {med('new', 'pss') / med('base', 'pss'):.2f} |"
    )
    row("per call, bare executor (floor)", "µs", "per_call_us", "floor", digits=0)
    row("per call, Runtime on SQLite", "µs", "per_call_us", "durable", digits=0)

    print("\nRatios of this tree (targets: fixed cost <= 1.5x Monty's, durable call <= 3x the floor):\n")
    print("| ratio | value |")
    print("|---|---:|")
    for how in ("executor", "runtime"):
        deno_ms, monty_ms = med("new", "fixed_ms", f"deno {how}"), med("new", "fixed_ms", f"monty {how}")
        print(
            f"| fixed cost through the {how}: Deno {deno_ms:.2f} ms / Monty {monty_ms:.2f} ms | "
            f"{deno_ms / monty_ms:.2f} |"
        )
    floor, durable = med("new", "per_call_us", "floor"), med("new", "per_call_us", "durable")
    print(f"| per call: Runtime on SQLite {durable:.0f} µs / bare executor {floor:.0f} µs | {durable / floor:.2f} |")
    print(f"| sum of RSS at 200 live runs / 1 GiB | {med('new', 'rss') / 2**30:.2f} |")


if __name__ == "__main__":
    main()
