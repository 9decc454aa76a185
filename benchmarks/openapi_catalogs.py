"""OpenAPI catalogs: derivation time (cold and memoized) and prompt size beside a classic tool list.

Derivation: `HttpOpenApiConnector(...).describe()` over the real GitHub, Stripe
and Slack documents. "cold" parses a fresh copy of the document each time (no
memo can apply); "memoized" builds a new connector on the same document object
(derivation is memoized per document). `json.loads` of the file is printed
beside them as the floor any OpenAPI tool has to pay.

Prompt size: what the model reads before its first call. For codemode, the
`codemode` tool's description and input schema (the model then discovers
tools with `codemode.search` / `codemode.describe` inside the sandbox). For
the classic approach, one function tool per operation with its full JSON
Schema (OpenAI `tools=[{"type": "function", ...}]` form, component schemas
carried in `$defs`, which is the most compact self-contained form).
Tokens are estimated at 4 characters per token.

Run: `.venv/bin/python benchmarks/openapi_catalogs.py` (about a minute).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import codemode
from codemode.connectors.openapi import HttpOpenApiConnector

SPECS = Path(__file__).resolve().parents[2] / "shared" / "specs"
SPECS_FALLBACK = Path("/work/shared/specs")
CATALOGS = ("github", "stripe", "slack")


def _timed(fn: Any, repeats: int) -> float:
    """Median seconds of `repeats` runs of a coroutine factory."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        asyncio.run(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def derivation(specs: Path, repeats: int) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for name in CATALOGS:
        text = (specs / f"{name}.json").read_text()
        start = time.perf_counter()
        for _ in range(repeats):
            json.loads(text)
        parse_s = (time.perf_counter() - start) / repeats
        doc = json.loads(text)
        fresh = [copy.deepcopy(doc) for _ in range(repeats)]

        async def cold(name: str = name, fresh: list[Any] = fresh) -> int:
            return len((await HttpOpenApiConnector(name, fresh.pop()).describe()).tools)

        async def memoized(name: str = name, doc: Any = doc) -> int:
            return len((await HttpOpenApiConnector(name, doc).describe()).tools)

        tools = asyncio.run(memoized())  # also warms the memo for the memoized row
        rows[name] = {
            "operations": tools - 1,  # minus the `request` escape hatch
            "parse": parse_s,
            "cold": _timed(cold, repeats),
            "memoized": _timed(memoized, repeats),
        }
    return rows


def classic_tool_list(descriptions: Sequence[codemode.ConnectorDescription]) -> str:
    tools = []
    for desc in descriptions:
        for name, spec in desc.tools.items():
            tools.append(
                {
                    "type": "function",
                    "function": {
                        "name": f"{desc.name}__{name}",
                        "description": spec.description,
                        "parameters": spec.input_schema,
                    },
                }
            )
    return json.dumps(tools, separators=(",", ":"))


async def prompt_sizes(specs: Path) -> list[tuple[str, int, int, int, int]]:
    docs = {name: json.loads((specs / f"{name}.json").read_text()) for name in CATALOGS}
    rows = []
    for label, names in (("github", ["github"]), ("stripe", ["stripe"]), ("github + stripe + slack", list(CATALOGS))):
        connectors = [HttpOpenApiConnector(n, docs[n]) for n in names]
        descriptions = [await c.describe() for c in connectors]
        classic = len(classic_tool_list(descriptions))
        sizes = []
        for executor in (codemode.MontyExecutor(), codemode.DenoExecutor()):
            runtime = codemode.Runtime(connectors, executor=executor, store=codemode.SqliteStore(":memory:"))
            code_tool = runtime.tool()
            sizes.append(len(code_tool.description) + len(json.dumps(code_tool.input_schema)))
            await runtime.aclose()
        tool_count = sum(len(d.tools) for d in descriptions)
        rows.append((label, tool_count, classic, sizes[0], sizes[1]))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--specs", type=Path, default=SPECS if SPECS.exists() else SPECS_FALLBACK)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)

    print("Derivation: HttpOpenApiConnector(...).describe(), median of", args.repeats, "runs\n")
    header = f"{'spec':<8} {'operations':>10} | {'json.loads':>10} | {'cold':>9} | {'memoized':>9}"
    print(header)
    print("-" * len(header))
    for name, row in derivation(args.specs, args.repeats).items():
        print(
            f"{name:<8} {row['operations']:>10} | {row['parse'] * 1e3:>7.0f} ms | {row['cold'] * 1e3:>6.0f} ms "
            f"| {row['memoized'] * 1e3:>6.1f} ms"
        )

    print("\nPrompt size before the first call (characters; ~tokens at 4 characters per token)\n")
    header = (
        f"{'catalog':<24} {'tools':>6} | {'classic tool list':>22} | {'codemode (Python)':>18} "
        f"| {'codemode (JS)':>16} | {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for label, tools, classic, python, javascript in asyncio.run(prompt_sizes(args.specs)):
        print(
            f"{label:<24} {tools:>6} | {classic:>12,} (~{classic // 4:>6,}) | {python:>8,} (~{python // 4:>5,}) "
            f"| {javascript:>6,} (~{javascript // 4:>5,}) | {classic / python:>5.0f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
