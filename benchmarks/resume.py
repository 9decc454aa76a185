"""Approve after N recorded calls: resume from a checkpoint beside resume by replay, in one run.

    .venv/bin/python benchmarks/resume.py [--sizes 50,500,5000] [--rounds 5]

The program makes N sequential no-op connector calls (each logged), then one call that requires approval, then
returns. For each size and round, one run per mode is paused (untimed) and then approved (timed: from the
`approve` call to its completed outcome). "checkpoint" is the default `MontyExecutor()`, whose pause stores the
program's state with the run; "replay" is `MontyExecutor(checkpoints=False)`, which replays the program from the
start against the log, as every resume did before checkpoints. Both use `codemode.SqliteStore` on disk (WAL) in a
fresh temporary directory, one runtime per mode; the order of the modes alternates every round, because this
machine is noisy.

Table: per size and mode, the median approve time over the rounds (ms) and replay/checkpoint; beside them, the
median time of one whole read of the run's audit trail (`runtime.execution(id)` with every log entry decoded)
at that size, for scale: an approve reads only the run's open entries to decide and to go on from a checkpoint,
and its outcome's `calls` are decoded only when read. Last row: the ratio of the medians at the largest size
to those at the smallest (O(1) in the number of recorded calls means a ratio near 1).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import codemode


class Bench(codemode.Connector):
    name = "bench"

    @codemode.tool
    def noop(self) -> None:
        """Do nothing."""

    @codemode.tool(requires_approval=True)
    def act(self) -> str:
        """An action a human approves."""
        return "done"


def program(calls: int) -> str:
    return f"for i in range({calls}):\n    await bench.noop()\nawait bench.act()\nreturn {calls}"


async def approve_once(runtime: codemode.Runtime, calls: int) -> tuple[float, float]:
    """The approve's time, and then one read of the run's audit trail."""
    paused = await runtime.execute(program(calls))
    assert paused.status == "paused", paused.error
    start = time.perf_counter()
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    elapsed = time.perf_counter() - start
    assert done.status == "completed" and done.result == calls, done.error
    start = time.perf_counter()
    read = await runtime.execution(paused.execution_id)
    assert read is not None and len(read.log) == calls + 1
    return elapsed, time.perf_counter() - start


async def main(sizes: list[int], rounds: int) -> None:
    modes = {"checkpoint": codemode.MontyExecutor(), "replay": codemode.MontyExecutor(checkpoints=False)}
    samples: dict[tuple[str, int], list[float]] = {(m, n): [] for m in [*modes, "trail"] for n in sizes}
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {
            mode: codemode.Runtime([Bench()], executor=executor, store=codemode.SqliteStore(Path(tmp) / f"{mode}.db"))
            for mode, executor in modes.items()
        }
        try:
            for runtime in runtimes.values():
                await approve_once(runtime, 1)  # warm: workers, schema, imports
            for round_ in range(rounds):
                order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
                for calls in sizes:
                    for mode in order:
                        approve, trail = await approve_once(runtimes[mode], calls)
                        samples[mode, calls].append(approve)
                        samples["trail", calls].append(trail)
        finally:
            for runtime in runtimes.values():
                await runtime.aclose()
    median = {key: statistics.median(values) * 1000 for key, values in samples.items()}
    print(f"approve after N recorded calls, median of {rounds} rounds (ms); Monty, SQLite on disk")
    print(f"{'N':>8} {'checkpoint':>12} {'replay':>12} {'replay/checkpoint':>18} {'one trail read':>15}")
    for calls in sizes:
        cp, rp, tr = median["checkpoint", calls], median["replay", calls], median["trail", calls]
        print(f"{calls:>8,} {cp:>12.2f} {rp:>12.2f} {rp / cp:>17.1f}x {tr:>15.2f}")
    first, last = sizes[0], sizes[-1]
    ratios = [median[mode, last] / median[mode, first] for mode in ("checkpoint", "replay", "trail")]
    print(f"{f'{last:,}/{first:,}':>8} {ratios[0]:>11.1f}x {ratios[1]:>11.1f}x {'':>18} {ratios[2]:>14.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50,500,5000")
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()
    asyncio.run(main([int(n) for n in options.sizes.split(",")], options.rounds))
