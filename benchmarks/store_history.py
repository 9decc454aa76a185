"""What a long run history costs: `execute`, `pending()` and `executions(50)` with 100 and with 10,000 runs
stored, on SQLite and PostgreSQL, in one run.

    .venv/bin/python benchmarks/store_history.py [--rounds 5] [--repeat 30] [--base REV] [--backends sqlite,postgres]

The history is written straight into the tables through SQL (tests/history.py: the rows the store writes
for one-call runs, one second apart, ending a day ago; 20 runs paused at a gated call, one in seven of the
rest failed, the others completed), because 10,000 `execute`s would take minutes; it takes about a second.
The runtime keeps up to 20,000 ended runs (`max_executions`), so every stored run stays and `begin` is
subject to the retention check. PostgreSQL is a real server started for the run (the test suite's
settings: Unix socket, fsync off); after filling, its tables are vacuumed and analyzed, as autovacuum would.

Measured, per backend and size, after 10 untimed `execute`s (the first checked the retention), the median
of `--repeat` calls of: `execute` of a one-call Monty program (begin, the call, complete), `pending()` (the
20 waiting actions), `executions(50)` (the console's list), and the retention check on its own
(`prune_executions(20000)`: nothing is due, so this is the walk a checking `begin` makes, on one new run in
200 here). Each round measures every side in a fresh child process (`PYTHONPATH=<tree>/src`), alternating
the order, because this machine is noisy; the table gives the median over rounds and the ratio 10,000/100.
With `--base REV`, the same child runs on that revision's `src/` (exported with `git archive`), beside the
working tree's, in the same rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from revisions import ROOT, export_tree, json_child

SIZES = (100, 10_000)
PAUSED = 20
KEEP = 20_000
WARM = 10
OPS = ("execute", "pending()", "executions(50)", "retention check")


# -- child: one side's measurement, with whichever `codemode` PYTHONPATH puts first --


async def measure(backend: str, target: str, size: int, repeat: int) -> dict[str, float]:
    import codemode
    from history import insert_history

    class Items(codemode.Connector):
        name = "items"

        @codemode.tool
        def read(self) -> int:
            """Read one thing."""
            return 1

    store = codemode.SqliteStore(target) if backend == "sqlite" else codemode.PostgresStore(target)
    await store.open()  # the schema, before the history goes in
    fill(backend, target, size, insert_history)
    runtime = codemode.Runtime([Items()], store=store, max_executions=KEEP)
    results: dict[str, list[float]] = {op: [] for op in OPS}
    async with runtime:
        for _ in range(WARM):  # the first runs of a process are slower (the worker, caches), whatever the size
            warm = await runtime.execute("return await items.read()")
            assert warm.status == "completed", warm.error
        assert len(await runtime.pending()) == PAUSED
        for _ in range(repeat):
            for op, call in (
                ("execute", lambda: runtime.execute("return await items.read()")),
                ("pending()", lambda: runtime.pending()),
                ("executions(50)", lambda: runtime.executions(50)),
            ):
                start = time.perf_counter()
                await call()
                results[op].append(time.perf_counter() - start)
        for _ in range(repeat):  # apart: a walk of the whole history would evict the others' cached pages
            start = time.perf_counter()
            await store.prune_executions(runtime.name, KEEP)
            results["retention check"].append(time.perf_counter() - start)
    return {op: statistics.median(times) for op, times in results.items()}


def fill(backend: str, target: str, size: int, insert_history: Any) -> None:
    if backend == "sqlite":
        import sqlite3

        conn = sqlite3.connect(target)
        with conn:
            insert_history(conn.executemany, "default", size, PAUSED)
        conn.close()
        return
    import psycopg

    with psycopg.connect(target) as pg:
        insert_history(lambda sql, rows: pg.cursor().executemany(sql.replace("?", "%s"), rows), "default", size, PAUSED)
    with psycopg.connect(target, autocommit=True) as pg:
        pg.execute("VACUUM ANALYZE cm_executions")
        pg.execute("VACUUM ANALYZE cm_log")


def child(args: argparse.Namespace) -> None:
    import codemode

    out: dict[str, Any] = {"file": codemode.__file__, "results": {}}
    targets = json.loads(args.child)
    with tempfile.TemporaryDirectory() as tmp:
        for backend, make in targets.items():
            for size in SIZES:
                target = str(Path(tmp) / f"{size}.db") if backend == "sqlite" else new_schema_dsn(make)
                out["results"][f"{backend}/{size}"] = asyncio.run(measure(backend, target, size, args.repeat))
    print(json.dumps(out))


def new_schema_dsn(dsn: str) -> str:
    import uuid

    import psycopg

    name = f"h_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return f"{dsn} options='-c search_path={name}'"


# -- parent: rounds of children, alternating sides --


def run_child(src: Path, targets: dict[str, str], repeat: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(ROOT / "tests")])}
    return json_child([sys.executable, __file__, "--child", json.dumps(targets), "--repeat", str(repeat)], env, 1800)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--base", help="a revision to measure beside the working tree, e.g. main~3")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    backends = args.backends.split(",")
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres_server import PostgresServer

    server = PostgresServer() if "postgres" in backends else None
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"new": ROOT / "src"}
        if args.base:
            sides[f"base {args.base}"] = export_tree(args.base, Path(tmp))
        samples: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
        try:
            targets = {}
            if "sqlite" in backends:
                targets["sqlite"] = ""
            if server is not None:
                server.start()
                targets["postgres"] = server.dsn()
            for round_no in range(args.rounds):
                order = list(sides) if round_no % 2 == 0 else list(reversed(sides))
                for side in order:
                    result = run_child(sides[side], targets, args.repeat)
                    if round_no == 0:
                        print(f"{side}: codemode from {result['file']}", file=sys.stderr)
                    samples[side].append(result["results"])
                print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
        finally:
            if server is not None:
                server.close()
    report(samples, backends)


def report(samples: dict[str, list[dict[str, Any]]], backends: list[str]) -> None:
    sides = list(samples)
    header = "| backend | operation |" + "".join(
        f" {side}: 100 runs | {side}: 10,000 runs | {side}: 10k/100 |" for side in sides
    )
    print(header)
    print("|---|---|" + "---:|---:|---:|" * len(sides))
    for backend in backends:
        for op in OPS:
            cells = []
            for side in sides:
                small = statistics.median(r[f"{backend}/{SIZES[0]}"][op] for r in samples[side]) * 1000
                large = statistics.median(r[f"{backend}/{SIZES[1]}"][op] for r in samples[side]) * 1000
                cells.append(f" {small:.2f} ms | {large:.2f} ms | {large / small:.2f}× |")
            print(f"| {backend} | {op} |" + "".join(cells))


if __name__ == "__main__":
    main()
