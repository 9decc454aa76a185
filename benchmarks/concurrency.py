"""Throughput of many concurrent runs, two revisions of the library side by side, in one run.

    .venv/bin/python benchmarks/concurrency.py --base 1178cea [--concurrency 1 10 50] [--runs 300] [--rounds 5]

The workload: `--runs` executes of a program making 10 sequential no-op connector calls (`--calls`), at most
`--concurrency` of them in flight at once (a semaphore over `asyncio.gather`), on one `codemode.Runtime` with
`codemode.SqliteStore` on disk (WAL) in a fresh temporary directory and the default `MontyExecutor`. Every run
must complete with the right result. The sample is the runs per second of that batch, after one untimed batch
that warms the pool and the store.

As in `benchmarks/revisions.py` (whose helpers this uses): one side is the base revision's `src/` (exported with
`git archive`), the other the working tree's; each round measures every concurrency once per side, each side in a
fresh `python` process, the order of the sides alternating every round. The table gives, per side and
concurrency, the median over the rounds of runs/s and of host CPU per run (every thread of the process), new/base
of the medians, and the paired ratio (median and range of each round's new/base).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from revisions import ROOT, describe_base, export_src, fingerprint, tree_child


async def measure(concurrency: list[int], runs: int, calls: int, tmp: Path) -> dict[str, tuple[float, float]]:
    import codemode

    class Bench(codemode.Connector):
        name = "bench"

        @codemode.tool
        def noop(self) -> None:
            """Do nothing."""

    program = f"for i in range({calls}):\n    await bench.noop()\nreturn {calls}"
    out: dict[str, tuple[float, float]] = {}  # concurrency: (runs per second, host CPU seconds per run)
    store = codemode.SqliteStore(tmp / "bench.db")
    async with codemode.Runtime([Bench()], executor=codemode.MontyExecutor(), store=store) as runtime:

        async def batch(width: int) -> tuple[float, float]:
            gate = asyncio.Semaphore(width)

            async def one() -> None:
                async with gate:
                    outcome = await runtime.execute(program)
                assert outcome.status == "completed" and outcome.result == calls, outcome.error

            start, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(one() for _ in range(runs)))
            return runs / (time.perf_counter() - start), (time.process_time() - cpu) / runs

        await batch(max(concurrency))  # untimed: warms the pool, the store and the caches
        for width in concurrency:
            out[str(width)] = await batch(width)
    return out


def child(concurrency: list[int], runs: int, calls: int) -> None:
    import codemode

    with tempfile.TemporaryDirectory(prefix="codemode-bench-") as tmp:
        rates = asyncio.run(measure(concurrency, runs, calls, Path(tmp)))
    print(json.dumps({"file": codemode.__file__, "rates": rates}))


def run_child(tree: Path, concurrency: list[int], runs: int, calls: int) -> dict[str, Any]:
    args = ["--runs", str(runs), "--calls", str(calls), "--concurrency", *map(str, concurrency)]
    return tree_child(__file__, tree, args)


def main(base: str, concurrency: list[int], runs: int, calls: int, rounds: int) -> int:
    sha = describe_base(base)
    before = fingerprint(ROOT / "src")
    rates: dict[tuple[str, str], list[float]] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="codemode-base-") as tmp:
        export_src(sha, Path(tmp))
        sides = {f"base {sha[:7]}": Path(tmp), "working tree": ROOT}
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                result = run_child(sides[side], concurrency, runs, calls)
                for width, (rate, cpu) in result["rates"].items():
                    rates.setdefault((width, side), []).append(rate)
                    cpus.setdefault((width, side), []).append(cpu)
            print(f"round {r + 1}/{rounds} done ({order[0]} first)", file=sys.stderr)
    changed = fingerprint(ROOT / "src") != before

    print(f"\nThroughput: {runs} runs of a {calls}-call program, Monty, SQLite on disk, {rounds} rounds")
    print("(a fresh process per side per round, order alternating; runs per second, host CPU ms per run)")
    header = f"{'concurrent runs':>15} {'side':<14} {'median runs/s':>14} {'CPU ms/run':>11}"
    print(f"{header} {'new/base':>9} {'paired (range)':>20}")
    base_side, new_side = sides
    for width in map(str, concurrency):
        old = statistics.median(rates[(width, base_side)])
        new = statistics.median(rates[(width, new_side)])
        pairs = [n / o for n, o in zip(rates[(width, new_side)], rates[(width, base_side)], strict=True)]
        paired = f"{statistics.median(pairs):.2f} ({min(pairs):.2f}-{max(pairs):.2f})"
        old_cpu = statistics.median(cpus[(width, base_side)]) * 1e3
        new_cpu = statistics.median(cpus[(width, new_side)]) * 1e3
        print(f"{width:>15} {base_side:<14} {old:>14.1f} {old_cpu:>11.2f}")
        print(f"{width:>15} {new_side:<14} {new:>14.1f} {new_cpu:>11.2f} {new / old:>9.2f} {paired:>20}")
    if changed:
        print("WARNING: the working tree's src/ changed during the run: its rounds measured more than one version")
    return 1 if changed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="1178cea", help="the base revision (default 1178cea)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument("--runs", type=int, default=300, help="executes per batch (default 300)")
    parser.add_argument("--calls", type=int, default=10, help="connector calls per program (default 10)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.concurrency, args.runs, args.calls)
    else:
        sys.exit(main(args.base, args.concurrency, args.runs, args.calls, args.rounds))
