"""Deno: a fresh Worker per run in long-lived processes, beside a process per run and beside other configurations.

    .venv/bin/python benchmarks/deno_workers.py [--base 1178cea] [--before d867b15] [--rounds 2] [--fixed 40]
    .venv/bin/python benchmarks/deno_workers.py --candidates [--rounds 1] [--fixed 40] [--calls 1000]

Sides, each measured once per round in a fresh `python` process, in alternating order (the table shows the median
over the rounds):
  - `process per run`: the base revision (its `src/` exported with `git archive` into a temporary directory, removed
    at the end), which started one `deno` process per run;
  - `before`: the revision before, the same way: a Worker per run, V8's memory pool kept on Worker teardown, and a
    thread reading every process's output;
  - `ours`: this working tree as it is.
With `--candidates`, the sides are all this working tree: `old config` (ours with the V8 flags of before), `ours`,
and each candidate configuration of `CANDIDATES` (V8 flags added to ours, an environment variable of the Deno
processes, or other executor settings). The child reports `codemode.__file__`. Monty is measured in the same
children, for the fixed-cost ratio (its rows in the table compare the revisions' Monty too).

What a child measures, with `DenoExecutor` (and `MontyExecutor` for the fixed cost):
  - fixed cost: `execute` of `return 1` through the bare executor (a host that answers at once), the same with code
    never run before (a comment that differs each run, so nothing cached of its parse helps), and through a
    `Runtime` on SQLite on disk, with 150 ms untimed between runs so warm pools refill (as between model turns);
  - throughput: runs per second of `return 1` through the bare executor with K programs in flight at once
    (K = 1, 10, 50, 200), the executor's cap set to K;
  - memory: 200 programs each awaiting a host call that answers only once all 200 are waiting; the sum of the
    RSS of every Deno process of the child at that moment (and the sum of PSS, which counts shared pages once),
    the same sum just before (the processes idle, spare Workers started), whence the cost of one live run, and
    the sum 2 s after the 200 runs ended;
  - CPU: a CPU-bound program (sorting and summing 200,000 numbers, a JSON round trip of 50,000 objects);
  - per call: 1,000 sequential no-op calls, through the bare executor (the floor) and through the `Runtime` on
    SQLite on disk.
The parent also measures the floor of the memory: one `deno` process of the same flags holding 200 Workers that run
nothing (no runner, no program).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from revisions import ROOT, export_tree, json_child

LEVELS = (1, 10, 50, 200)
TEARDOWN = "--no-memory-pool-share-memory-on-teardown"
# name -> (V8 flags added to ours, environment of the Deno processes, DenoExecutor settings)
CANDIDATES: dict[str, tuple[tuple[str, ...], dict[str, str], dict[str, int]]] = {
    "--jitless": (("--jitless",), {}, {}),
    "--lite-mode": (("--lite-mode",), {}, {}),
    "--optimize-for-size": (("--optimize-for-size",), {}, {}),
    "--max-lazy": (("--max-lazy",), {}, {}),
    "--single-generation": (("--single-generation",), {}, {}),
    "--minor-ms": (("--minor-ms",), {}, {}),
    "semi-space 1 MiB": (("--min-semi-space-size=1", "--max-semi-space-size=1"), {}, {}),
    "--single-threaded-gc": (("--single-threaded-gc",), {}, {}),
    "MALLOC_ARENA_MAX=2": ((), {"MALLOC_ARENA_MAX": "2"}, {}),
    "1 warm Worker": ((), {}, {"warm_workers": 1}),
    "1 process": ((), {}, {"max_processes": 1}),
    "4 processes": ((), {}, {"max_processes": 4}),
}


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


def configure(config: str) -> dict[str, int]:
    """Apply a configuration of this tree (before any executor starts); the DenoExecutor settings it takes."""
    if config in ("", "ours"):
        return {}
    from codemode.sandbox import deno

    if config == "old config":
        deno.V8_FLAGS = tuple(flag for flag in deno.V8_FLAGS if flag != TEARDOWN)
        return {}
    flags, env, settings = CANDIDATES[config]
    deno.V8_FLAGS = (*deno.V8_FLAGS, *flags)
    spawner_env = deno._Spawner.env
    deno._Spawner.env = lambda self: {**spawner_env(self), **env}  # type: ignore[method-assign]
    return settings


async def child(fixed: int, calls: int, config: str) -> dict[str, Any]:
    settings = configure(config)
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
            return codemode.DenoExecutor(timeout=120, **settings)
        if new:
            return codemode.DenoExecutor(timeout=120, max_runs=cap, **settings)  # type: ignore[call-arg]
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
        comment = {"deno": "//", "monty": "#"}
        for sample in range(fixed):
            for name, ex in executors.items():
                for how in ("executor", "new code", "runtime"):
                    await asyncio.sleep(0.15)
                    start = time.perf_counter()
                    if how == "executor":
                        assert await bare(ex, one[name]) == 1
                    elif how == "new code":  # code never run before: nothing of its parse is cached
                        assert await bare(ex, f"{one[name]}  {comment[name]} {os.getpid()} {sample}") == 1
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
        cpu = []
        for _ in range(5):
            start = time.perf_counter()
            await bare(ex, CPU)
            cpu.append(time.perf_counter() - start)
        out["cpu_ms"] = statistics.median(cpu) * 1e3
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
    await asyncio.sleep(0.5)
    out["idle_rss"] = _deno_memory()[1]
    runs = asyncio.gather(*(bare(executor, "await bench.noop();\nreturn 1;", SlowHost()) for _ in range(200)))
    start = time.perf_counter()
    await asyncio.wait_for(all_in.wait(), 300)
    out["live_200_s"] = time.perf_counter() - start
    await asyncio.sleep(0.5)
    out["processes"], out["rss"], out["pss"] = _deno_memory()
    release.set()
    assert await runs == [1] * 200
    await asyncio.sleep(2.0)
    out["after_rss"] = _deno_memory()[1]
    await executor.aclose()
    return out


CPU = """let a = [];
for (let i = 0; i < 200000; i++) a.push((i * 7919) % 10007);
a.sort((x, y) => x - y);
let s = 0;
for (const v of a) s += v;
const o = JSON.parse(JSON.stringify(a.slice(0, 50000).map((v) => ({ v, k: "x" + v }))));
return s + o.length;"""

EMPTY_WORKERS = """
const url = URL.createObjectURL(new Blob(["onmessage = () => postMessage(1);"], { type: "text/javascript" }));
const workers = [];
let ready = 0;
for (let i = 0; i < 200; i++) {
  const worker = new Worker(url, { type: "module" });
  worker.onmessage = () => {
    if (++ready === 200) setTimeout(() => { console.log(Deno.memoryUsage().rss); Deno.exit(0); }, 500);
  };
  worker.postMessage(0);
  workers.push(worker);
}
"""


def empty_workers_rss() -> int:
    """RSS of one `deno` process (this tree's flags) holding 200 Workers that run nothing: the memory floor."""
    sys.path.insert(0, str(ROOT / "src"))
    from codemode.sandbox.deno import V8_FLAGS, find_deno

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "empty_workers.js"
        script.write_text(EMPTY_WORKERS)
        flags = ",".join(("--max-old-space-size=256", *V8_FLAGS))
        command = [find_deno(), "run", "--quiet", "--no-prompt", f"--v8-flags={flags}", str(script)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return int(done.stdout.split()[-1])


# -- parent: both sides, alternating ------------------------------------------------------------------------


def run_side(src: Path, fixed: int, calls: int, config: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    command = [sys.executable, __file__, "--child", "--fixed", str(fixed), "--calls", str(calls), f"--config={config}"]
    return json_child(command, env, 1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="1178cea", help="the revision with a Deno process per run")
    parser.add_argument("--before", default="d867b15", help="the revision with the previous configuration")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fixed", type=int, default=40, help="fixed-cost samples per configuration")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--candidates", action="store_true", help="every candidate configuration, no base revision")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--config", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(child(args.fixed, args.calls, args.config))))
        return

    names = ["old config", "ours", *CANDIDATES] if args.candidates else ["process per run", "before", "ours"]
    reference = "old config" if args.candidates else "before"
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as tmp:
        trees = {name: ROOT / "src" for name in names}
        if not args.candidates:
            trees["process per run"] = export_tree(args.base, Path(tmp) / "base")
            trees["before"] = export_tree(args.before, Path(tmp) / "before")
        for round_ in range(args.rounds):
            for name in names if round_ % 2 == 0 else names[::-1]:
                config = name if args.candidates else ""
                results[name].append(run_side(trees[name], args.fixed, args.calls, config))
                print(f"round {round_ + 1}: {name} done ({results[name][-1]['file']})", file=sys.stderr)
    floor = empty_workers_rss()

    def med(side: str, *path: str) -> float:
        values = []
        for result in results[side]:
            value: Any = result
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    if args.candidates:
        what = "candidate configurations beside the old one and ours, all on this tree"
    else:
        what = f"a process per run ({args.base}) and the revision before ({args.before}) beside this tree"
    print(f"\nDeno, {what}: median of {args.rounds} rounds\n")
    print("| measure | " + " | ".join(names) + f" | ours / {reference} |")
    print("|---|" + "---:|" * (len(names) + 1))

    def row(name: str, values: list[float], fmt: str, ratio: bool = True) -> None:
        old, ours = values[names.index(reference)], values[names.index("ours")]
        cells = " | ".join(format(value, fmt) for value in values)
        print(f"| {name} | {cells} | {ours / old:.2f} |" if ratio and old else f"| {name} | {cells} | |")

    def measure(name: str, *path: str, fmt: str = ",.1f", scale: float = 1.0) -> None:
        row(name, [med(side, *path) * scale for side in names], fmt)

    mib = 1 / 2**20
    measure("fixed cost, executor (ms)", "fixed_ms", "deno executor", fmt=".2f")
    if "deno new code" in results["ours"][0]["fixed_ms"]:
        measure("fixed cost, executor, code never run before (ms)", "fixed_ms", "deno new code", fmt=".2f")
    measure("fixed cost, Runtime on SQLite (ms)", "fixed_ms", "deno runtime", fmt=".2f")
    measure("Monty fixed cost, executor (ms)", "fixed_ms", "monty executor", fmt=".2f")
    measure("Monty fixed cost, executor, code never run before (ms)", "fixed_ms", "monty new code", fmt=".2f")
    measure("Monty fixed cost, Runtime on SQLite (ms)", "fixed_ms", "monty runtime", fmt=".2f")
    for level in LEVELS:
        measure(f"throughput, {level} in flight (runs/s)", "runs_per_s", str(level))
    measure("200 live runs: seconds until all wait", "live_200_s", fmt=".2f")
    measure("200 live runs: Deno processes", "processes", fmt=".0f")
    measure("200 live runs: sum of RSS (MiB)", "rss", fmt=",.0f", scale=mib)
    measure("200 live runs: sum of PSS (MiB)", "pss", fmt=",.0f", scale=mib)
    if "idle_rss" in results["ours"][0]:
        worker = [
            (med(side, "rss") - med(side, "idle_rss")) / 200 * mib if "idle_rss" in results[side][0] else 0.0
            for side in names
        ]
        row("one live run: (RSS at 200 - RSS idle) / 200 (MiB)", worker, ".2f")
        measure("2 s after the 200 runs ended: sum of RSS (MiB)", "after_rss", fmt=",.0f", scale=mib)
    if "cpu_ms" in results["ours"][0]:
        measure("CPU-bound program (ms)", "cpu_ms", fmt=".1f")
    measure("per call, bare executor (µs)", "per_call_us", "floor", fmt=",.0f")
    measure("per call, Runtime on SQLite (µs)", "per_call_us", "durable", fmt=",.0f")
    print(f"\nThe floor, same run: one `deno` process with 200 Workers that run nothing: {floor * mib:,.0f} MiB.")

    print("\nRatios of ours (targets: fixed cost <= 1.5x Monty's, durable call <= 3x the floor):\n")
    print("| ratio | value |")
    print("|---|---:|")
    for how in ("executor", "new code", "runtime"):
        deno_ms, monty_ms = med("ours", "fixed_ms", f"deno {how}"), med("ours", "fixed_ms", f"monty {how}")
        print(
            f"| fixed cost through the {how.replace('new code', 'executor, code never run before')}: "
            f"Deno {deno_ms:.2f} ms / Monty {monty_ms:.2f} ms | "
            f"{deno_ms / monty_ms:.2f} |"
        )
    floor_us, durable = med("ours", "per_call_us", "floor"), med("ours", "per_call_us", "durable")
    ratio = durable / floor_us
    print(f"| per call: Runtime on SQLite {durable:.0f} µs / bare executor {floor_us:.0f} µs | {ratio:.2f} |")
    print(f"| sum of RSS at 200 live runs / 1 GiB | {med('ours', 'rss') / 2**30:.2f} |")


if __name__ == "__main__":
    main()
