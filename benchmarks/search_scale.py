"""Search at scale: index build, query latency and index memory at 100 / 1,000 / 10,000 tools, the working
tree's discovery beside a base revision's, in one run.

    .venv/bin/python benchmarks/search_scale.py [--base 1178cea] [--rounds 3] [--sizes 100,1000,10000]

The catalog: the real GitHub (1,224 operations), Stripe (453) and Slack (175) OpenAPI documents vendored in
`tests/specs/`, each derived by `HttpOpenApiConnector` as users get it, then repeated under distinct connector
names (`github`, `stripe`, `slack`, `github2`, `stripe2`, ...) until the catalog holds N tools (the last
connector cut short). The copies share their words, so a catalog of N tools here has the vocabulary of about
1,850 real ones; nothing in the index is cached per description text, so the copies cost the build as much
as distinct tools would.

The base side is the base revision's `src/codemode/discovery.py` (from `git show`), loaded as a module of its
own beside the working tree's `codemode.discovery`, so both run in this one process on the same catalog
objects. Each round builds each side's index from scratch (its memo emptied) and then runs the 120
hand-written queries of `benchmarks/search_quality.py` once each, at the default limit of 50 results (what
`codemode.search` in the sandbox asks for); the order of the sides alternates every round. Reported: the
median over rounds of the build time and of each round's query p50 and p95; the memory the built index holds
(tracemalloc, measured once per side outside the timed rounds); and how many queries return the same results
on both sides (same scores, in order, and the same total; equal scores may list tied tools in another order).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import importlib.util
import json
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from revisions import ROOT, git  # this directory is on sys.path when run as a script
from search_quality import GITHUB_HAND, STRIPE_HAND

import codemode.discovery as new_discovery
import codemode.discovery.index as new_index
from codemode.connectors.openapi import HttpOpenApiConnector
from codemode.connectors.spec import ConnectorDescription

SPECS = ROOT / "tests" / "specs"
NAMES = ("github", "stripe", "slack")
DEFAULT_BASE = "1178cea"  # the last revision with the single-module discovery


def load_base(rev: str) -> ModuleType:
    """The base revision's discovery module, imported under a name of its own."""
    source = git("show", f"{rev}:src/codemode/discovery.py")
    spec = importlib.util.spec_from_loader("base_discovery", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["base_discovery"] = module  # dataclasses look their module up while the class is made
    exec(compile(source, f"{rev}:src/codemode/discovery.py", "exec"), module.__dict__)
    return module


def real_catalogs() -> list[ConnectorDescription]:
    out = []
    for name in NAMES:
        with gzip.open(SPECS / f"{name}.json.gz", "rt", encoding="utf-8") as handle:
            doc = json.load(handle)
        out.append(asyncio.run(HttpOpenApiConnector(name, doc).describe()))
    return out


def catalog(size: int, real: Sequence[ConnectorDescription]) -> list[ConnectorDescription]:
    """`size` tools: the real catalogs in turn, each copy under a new connector name."""
    conns: list[ConnectorDescription] = []
    total, copy = 0, 1
    while total < size:
        for desc in real:
            if total >= size:
                break
            tools = dict(list(desc.tools.items())[: size - total])
            name = desc.name if copy == 1 else f"{desc.name}{copy}"
            conns.append(ConnectorDescription(name=name, instructions=desc.instructions, tools=tools))
            total += len(tools)
        copy += 1
    return conns


class Side:
    def __init__(self, label: str, module: Any, clear: Callable[[], None], build: Callable[[Any], Any]) -> None:
        self.label, self.module, self.clear, self.build = label, module, clear, build


def measure(side: Side, conns: list[ConnectorDescription], queries: list[str]) -> tuple[float, float, float]:
    """One round: build seconds, query p50 and p95 in ms (the other side's index is gone by then)."""
    gc.collect()
    start = time.perf_counter()
    side.build(conns)
    build_s = time.perf_counter() - start
    times = []
    for query in queries:
        start = time.perf_counter()
        side.module.search(query, conns, [])
        times.append(time.perf_counter() - start)
    times.sort()
    return build_s, statistics.median(times) * 1e3, times[min(len(times) - 1, int(0.95 * len(times)))] * 1e3


def memory(side: Side, conns: list[ConnectorDescription]) -> tuple[float, float]:
    """MiB the built index holds, and the build's peak, by tracemalloc."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    index = side.build(conns)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del index
    side.clear()
    return (held - before) / 2**20, (peak - before) / 2**20


def same_results(base: ModuleType, conns: list[ConnectorDescription], queries: list[str]) -> int:
    same = 0
    for query in queries:
        a, b = base.search(query, conns, []), new_discovery.search(query, conns, [])
        if (a.total, [r.score for r in a.results]) == (b.total, [r.score for r in b.results]):
            same += 1
    return same


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", default=DEFAULT_BASE, help="revision whose src/codemode/discovery.py is the base")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="100,1000,10000")
    args = parser.parse_args(argv)

    base = load_base(args.base)
    sides = [
        Side(f"base ({args.base})", base, base._INDEX_CACHE.clear, base._connector_index),
        Side("now", new_discovery, new_index._INDEX_CACHE.clear, new_index.connector_index),
    ]
    real = real_catalogs()
    queries = [q for q, _ in GITHUB_HAND + STRIPE_HAND]
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{len(queries)} queries, limit 50, {args.rounds} rounds, sides alternating\n")
    header = (
        f"{'tools':>6} {'side':<16} | {'build s':>8} {'query p50 ms':>13} {'p95 ms':>8} | "
        f"{'index MiB':>9} {'build peak MiB':>14} | {'same results':>12}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        conns = catalog(size, real)
        rows: dict[str, list[tuple[float, float, float]]] = {s.label: [] for s in sides}
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                for each in sides:
                    each.clear()
                rows[side.label].append(measure(side, conns, queries))
        same = same_results(base, conns, queries)
        for side in sides:
            side.clear()
        for side in sides:
            held, peak = memory(side, conns)
            build, p50, p95 = (statistics.median(x[i] for x in rows[side.label]) for i in range(3))
            shown = f"{same}/{len(queries)}" if side is sides[1] else ""
            print(
                f"{size:>6} {side.label:<16} | {build:>8.3f} {p50:>13.2f} {p95:>8.2f} | "
                f"{held:>9.1f} {peak:>14.1f} | {shown:>12}"
            )
        for side in sides:
            side.clear()
    return 0


if __name__ == "__main__":
    sys.exit(main())
