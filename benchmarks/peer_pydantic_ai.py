"""Per-call overhead: our durable runtime next to Pydantic AI's `CodeMode`, both on Monty 1.4.0.

Needs one Python with both `codemode` and `pydantic-ai-harness[codemode]`. A throwaway venv:

    python3 -m venv /tmp/pai && /tmp/pai/bin/pip install 'pydantic-ai-harness[codemode]' \
        'pydantic-monty==1.4.0' -e /work/main
    /tmp/pai/bin/python benchmarks/peer_pydantic_ai.py [--calls 1000] [--rounds 15]

Each configuration runs one program of N sequential no-op tool calls and the same program with 0
calls; µs per call = (median time with N calls - median time with 0 calls) / N, so the fixed cost
of a run (agent loop, model stub, sandbox checkout) cancels out. Configurations:

  - Pydantic AI `CodeMode`: a whole `agent.run` driven by a `FunctionModel` whose first response
    calls `run_code` with the program (`await noop()`) and whose second is final text. Measured
    with an `async def` tool and with a plain `def` tool (which Pydantic AI runs in a thread).
    `max_tool_calls` (default 100) and `resource_limits["max_suspensions"]` (default 1,000, and an
    awaited call costs two) are raised so N calls fit.
  - `codemode.Runtime` with `SqliteStore(":memory:")` and with `SqliteStore` on disk
    (`await bench.noop()`), with a row in the execution log for every call.
  - Our Monty driver with no runtime and no log, for reference.
  - The floor of a durable call: pydantic-monty's synchronous API driven from a thread (each call answered
    with a future, then settled) plus one SQLite WAL commit per call (`runtime_overhead.Floor`).

Rounds interleave the configurations (rotating their order), because this machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai_harness import CodeMode

import codemode
from codemode.sandbox.base import Namespace

from runtime_overhead import Bench, Floor, NullHost  # same directory: the two benchmarks share their fixture

Runner = Callable[[int], Awaitable[None]]


def peer_program(calls: int) -> str:
    """The peer's calling convention: tools are bare async functions; the last expression is returned."""
    return f"for i in range({calls}):\n    await noop()\n{calls}"


def our_program(calls: int) -> str:
    """Our calling convention: tools live in connector namespaces; the program returns with `return`."""
    return f"for i in range({calls}):\n    await bench.noop()\nreturn {calls}"


def scripted_model(code: str, expected: int) -> FunctionModel:
    """A model that calls `run_code(code)` once, checks the result, then answers with text."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        if len(messages) == 1:
            return ModelResponse(parts=[ToolCallPart("run_code", {"code": code})])
        returns = [part for part in messages[-1].parts if isinstance(part, ToolReturnPart)]
        if len(returns) != 1 or returns[0].tool_name != "run_code" or returns[0].content != expected:
            raise RuntimeError(f"run_code did not return {expected}: {messages[-1].parts!r}")
        return ModelResponse(parts=[TextPart("done")])

    return FunctionModel(respond)


def peer_agent(calls: int, *, async_tool: bool) -> Agent[None, str]:
    """An agent whose only tool, `noop`, is sandboxed behind `run_code`, with limits raised for `calls`."""
    code_mode: CodeMode[None] = CodeMode(max_tool_calls=calls + 1, resource_limits={"max_suspensions": 4 * calls + 100})
    agent: Agent[None, str] = Agent(capabilities=[code_mode])
    if async_tool:

        @agent.tool_plain
        async def noop() -> None:
            """Do nothing."""

    else:

        @agent.tool_plain
        def noop() -> None:  # Pydantic AI runs a plain `def` tool in a worker thread.
            """Do nothing."""

    return agent


def peer_runner(calls: int, *, async_tool: bool) -> Runner:
    """Run one agent turn whose `run_code` program makes `n` calls (`n` is `calls` or 0)."""
    agent = peer_agent(calls, async_tool=async_tool)
    models = {n: scripted_model(peer_program(n), n) for n in (0, calls)}

    async def run(n: int) -> None:
        result = await agent.run("Call noop.", model=models[n])
        assert result.output == "done", result.output

    return run


def runtime_runner(runtime: codemode.Runtime) -> Runner:
    """Run `execute` on our runtime with a program of `n` calls."""

    async def run(n: int) -> None:
        outcome = await runtime.execute(our_program(n))
        assert outcome.status == "completed" and outcome.result == n, (outcome.status, outcome.error)

    return run


def bare_runner(executor: codemode.MontyExecutor) -> Runner:
    """Run a program of `n` calls on our Monty driver alone, answering calls with `NullHost`."""
    namespaces = [Namespace("bench", frozenset({"noop"}))]

    async def run(n: int) -> None:
        result = await executor.execute(our_program(n), namespaces, NullHost())
        assert result.error is None, result.error

    return run


@dataclass
class Config:
    """One row of the table and its timings in seconds, keyed by calls per program."""

    name: str
    durable: str
    notes: str
    run: Runner
    times: dict[int, list[float]] = field(default_factory=dict)

    async def measure(self, n: int) -> None:
        start = time.perf_counter()
        await self.run(n)
        self.times.setdefault(n, []).append(time.perf_counter() - start)


def report(configs: list[Config], calls: int, rounds: int) -> None:
    """Print the table: median-based µs per call, the per-round range, and the fixed cost of a 0-call run."""
    print(f"\n{calls} sequential no-op tool calls in one program; {rounds} interleaved rounds")
    print("µs per call = (median time, N calls - median time, 0 calls) / N; range = min..max over rounds")
    header = f"{'configuration':<40} {'µs/call':>8} {'range':>11} {'0-call ms':>10} {'durable':>8}  notes"
    print(header)
    print("-" * len(header))
    for config in configs:
        full, empty = config.times[calls], config.times[0]
        per_call = (statistics.median(full) - statistics.median(empty)) / calls * 1e6
        each = [(f - e) / calls * 1e6 for f, e in zip(full, empty, strict=True)]
        spread = f"{min(each):.0f}..{max(each):.0f}"
        fixed = statistics.median(empty) * 1e3
        print(f"{config.name:<40} {per_call:>8.0f} {spread:>11} {fixed:>10.1f} {config.durable:>8}  {config.notes}")


async def main(calls: int, rounds: int) -> None:
    """Build every configuration, warm it, then time interleaved rounds and print the table."""
    print(
        f"python {platform.python_version()}; pydantic-ai-harness {version('pydantic-ai-harness')}, "
        f"pydantic-ai-slim {version('pydantic-ai-slim')}, pydantic-monty {version('pydantic-monty')}, "
        f"codemode {version('codemode')}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        executor = codemode.MontyExecutor()
        in_memory = codemode.Runtime(
            [Bench()], executor=executor, store=codemode.SqliteStore(":memory:"), max_executions=5
        )
        on_disk = codemode.Runtime(
            [Bench()], executor=executor, store=codemode.SqliteStore(Path(tmp) / "bench.db"), max_executions=5
        )
        floor = Floor(Path(tmp) / "floor.db")
        configs = [
            Config(
                "Pydantic AI CodeMode, async def noop",
                "no",
                "whole agent.run; ToolManager dispatch, nested-call records",
                peer_runner(calls, async_tool=True),
            ),
            Config(
                "Pydantic AI CodeMode, def noop",
                "no",
                "as above; a plain def tool runs in a worker thread",
                peer_runner(calls, async_tool=False),
            ),
            Config(
                "codemode Runtime, SQLite :memory:",
                "no",
                "validation + log row per call; log lost on exit",
                runtime_runner(in_memory),
            ),
            Config(
                "codemode Runtime, SQLite on disk",
                "yes",
                "same; WAL, synchronous=NORMAL (no fsync per commit)",
                runtime_runner(on_disk),
            ),
            Config(
                "our Monty driver, no runtime",
                "no",
                "sandbox round trip only, host answers None",
                bare_runner(executor),
            ),
            Config(
                "(floor) sync API from a thread + commit",
                "yes",
                "pydantic-monty's sync API, one WAL INSERT commit per call",
                floor.run,
            ),
        ]
        for config in configs:  # Warm-up, not timed: worker pools, imports, SQLite schema.
            await config.run(calls)
            await config.run(0)
        for round_no in range(rounds):
            shift = round_no % len(configs)
            for config in configs[shift:] + configs[:shift]:
                await config.measure(calls)
                await config.measure(0)
        report(configs, calls, rounds)
        await in_memory.store.close()
        await on_disk.aclose()
        floor.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds))
