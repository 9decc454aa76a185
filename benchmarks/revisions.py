"""Durable per-call cost of two revisions of the library side by side, in one run.

    .venv/bin/python benchmarks/revisions.py --base 150bf1d [--calls 1000] [--rounds 7] [--repeat 3] [--js]

One side is the base revision (its `src/` exported with `git archive` into a temporary directory, removed at the end
of the run, also on error); the other is the working tree's `src/`. Each round runs the same measurement once per side,
each in a fresh `python` process with `PYTHONPATH=<tree>/src` first, so that tree's `codemode` is imported (the child
reports `codemode.__file__`, checked and printed once per side). The order of the sides alternates every round,
because this machine is noisy.

The measurement in the child: a `codemode.Runtime` with one connector holding one sync no-op tool,
`codemode.SqliteStore` on disk (WAL) in a fresh temporary directory and the default Monty executor; one small
untimed `execute` to warm up; then R timed `execute`s (`--repeat`) of a program making N sequential no-op calls; the
round's sample is their median, per call. With `--js`, the same with `codemode.DenoExecutor()` and a JavaScript
program. Only API that both revisions have is used: `Runtime(connectors, executor=..., store=...)`, `execute(code)`
and `async with`.

Table: for each executor and side, the median over the rounds and the minimum over every timed `execute`, in µs per
call; new/base of the medians, checked against the threshold (default 1.10: the per-call cost grew by at most 10 %);
"paired": the median (and range) of each round's new/base, which cancels load that drifts between rounds. On a
shared 2-CPU machine an A/A run (the same code on both sides) has given new/base from 0.77 to 1.12 over 7 rounds:
run on a quiet machine, or with more rounds, before reading a few percent into it. The exit status is 1 when a ratio
is over the threshold or when the working tree's `src/` changed during the run (its rounds then measured more than
one version: the run is void).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LANGUAGES = {
    "python": (
        "python (Monty)",
        lambda n: f"for i in range({n}):\n    await bench.noop()\nreturn {n}",
    ),
    "javascript": (
        "javascript (Deno)",
        lambda n: f"for (let i = 0; i < {n}; i++) await bench.noop();\nreturn {n};",
    ),
}
CHILD_TIMEOUT = 600.0


# -- child: one measurement against whichever `codemode` PYTHONPATH puts first --


async def measure(calls: int, repeat: int, languages: list[str], tmp: Path) -> dict[str, list[float]]:
    import codemode

    class Bench(codemode.Connector):
        name = "bench"

        @codemode.tool
        def noop(self) -> None:
            """Do nothing."""

    executors = {"python": codemode.MontyExecutor, "javascript": codemode.DenoExecutor}
    per_call: dict[str, list[float]] = {}
    for key in languages:
        program = LANGUAGES[key][1]
        store = codemode.SqliteStore(tmp / f"bench-{key}.db")
        async with codemode.Runtime([Bench()], executor=executors[key](), store=store) as runtime:
            warm = await runtime.execute(program(1))
            assert warm.status == "completed", warm.error
            for _ in range(repeat):
                start = time.perf_counter()
                outcome = await runtime.execute(program(calls))
                elapsed = time.perf_counter() - start
                assert outcome.status == "completed" and outcome.result == calls, outcome.error
                per_call.setdefault(key, []).append(elapsed / calls * 1e6)
    return per_call


def child(calls: int, repeat: int, languages: list[str]) -> None:
    import codemode

    with tempfile.TemporaryDirectory(prefix="codemode-bench-") as tmp:
        per_call = asyncio.run(measure(calls, repeat, languages, Path(tmp)))
    print(json.dumps({"file": codemode.__file__, "per_call": per_call}))


# -- parent: export the base, alternate the sides, print the table --


def git(*args: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True).stdout


def export_src(rev: str, dest: Path) -> None:
    """The revision's `src/` under `dest`, from `git archive` (the repository's index and worktrees are untouched)."""
    with tarfile.open(fileobj=io.BytesIO(git("archive", "--format=tar", rev, "src"))) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(dest, filter="data")
        else:  # Python before 3.10.12 / 3.11.4: our own repository's content
            archive.extractall(dest)


def export_tree(rev: str, into: Path) -> Path:
    """`export_src`, returning the exported `src/`."""
    export_src(rev, into)
    return into / "src"


def json_child(command: list[str], env: dict[str, str], timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
    """Run a measuring child; its result is the JSON object on its last line of output."""
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(
            f"the measurement {' '.join(command[1:3])} failed:\n{done.stderr[-4000:]}{done.stdout[-1000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def fingerprint(src: Path) -> str:
    """A digest of every file under `src` (names and contents): tells whether the tree changed during the run."""
    digest = hashlib.sha256()
    for path in sorted(p for p in src.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        try:
            digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
        except FileNotFoundError:  # removed while we looked: a change
            digest.update(b"\1")
    return digest.hexdigest()


def tree_child(script: str, tree: Path, args: list[str]) -> dict[str, Any]:
    """Run `script --child *args` with `tree`'s `src/` first on the path; refuse a child that imported another
    `codemode` (its result must carry `file`, its `codemode.__file__`)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), *filter(None, [env.get("PYTHONPATH")])])
    result = json_child([sys.executable, str(Path(script).resolve()), "--child", *args], env)
    expected = (tree / "src" / "codemode").resolve()
    if Path(result["file"]).resolve().parent != expected:
        raise RuntimeError(f"the child imported {result['file']}, not the package under {expected}")
    return result


def describe_base(base: str) -> str:
    """Print which two trees are compared; the base's full commit id."""
    sha = git("rev-parse", "--verify", f"{base}^{{commit}}").decode().strip()
    subject = git("log", "-1", "--format=%s", sha).decode().strip()
    dirty = git("status", "--porcelain", "--", "src").decode().splitlines()
    print(f"base:         {sha[:10]} {subject[:90]}")
    head = git("rev-parse", "--short=10", "HEAD").decode().strip()
    print(f"working tree: {ROOT / 'src'} (HEAD {head}, {len(dirty)} changed path(s) under src/)")
    return sha


def run_child(tree: Path, calls: int, repeat: int, languages: list[str]) -> dict[str, Any]:
    return tree_child(__file__, tree, ["--calls", str(calls), "--repeat", str(repeat), "--lang", *languages])


def main(base: str, calls: int, rounds: int, repeat: int, languages: list[str], threshold: float) -> int:
    sha = describe_base(base)

    before = fingerprint(ROOT / "src")
    with tempfile.TemporaryDirectory(prefix="codemode-base-") as tmp:
        base_tree = Path(tmp)
        export_src(sha, base_tree)
        sides = {f"base {sha[:7]}": base_tree, "working tree": ROOT}
        medians: dict[tuple[str, str], list[float]] = {}  # one per round: the median of its child's executes
        lows: dict[tuple[str, str], float] = {}  # the fastest execute of all
        seen: set[str] = set()
        for r in range(rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                result = run_child(sides[side], calls, repeat, languages)
                if side not in seen:
                    seen.add(side)
                    print(f"{side:<13} imports {result['file']}")
                for key, us in result["per_call"].items():
                    medians.setdefault((key, side), []).append(statistics.median(us))
                    lows[(key, side)] = min(lows.get((key, side), float("inf")), *us)
            print(f"round {r + 1}/{rounds} done ({order[0]} first)", file=sys.stderr)

    changed = fingerprint(ROOT / "src") != before

    print(f"\nDurable per-call cost: {calls} sequential no-op calls, SQLite on disk, {rounds} rounds")
    print(f"(a fresh process per side per round, order alternating; median of {repeat} executes in each)")
    header = f"{'executor':<20} {'side':<14} {'median µs':>10} {'min µs':>8} {'new/base':>9}"
    print(f"{header} {'paired (range)':>20}  verdict")
    worst = 0.0
    base_side, new_side = sides
    for key in languages:
        label = LANGUAGES[key][0]
        old = statistics.median(medians[(key, base_side)])
        new = statistics.median(medians[(key, new_side)])
        ratio = new / old
        pairs = [n / o for n, o in zip(medians[(key, new_side)], medians[(key, base_side)], strict=True)]
        paired = f"{statistics.median(pairs):.3f} ({min(pairs):.2f}-{max(pairs):.2f})"
        worst = max(worst, ratio)
        verdict = f"ok (<= {threshold:.2f})" if ratio <= threshold else f"over {threshold:.2f}"
        for side, med, extra in ((base_side, old, ""), (new_side, new, f"{ratio:>9.3f} {paired:>20}  {verdict}")):
            print(f"{label:<20} {side:<14} {med:>10.1f} {lows[(key, side)]:>8.1f} {extra}".rstrip())
    if changed:
        print("WARNING: the working tree's src/ changed during the run: its rounds measured more than one version")
    return 0 if worst <= threshold and not changed else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="150bf1d", help="the base revision (default 150bf1d)")
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=3, help="timed executes per process (default 3)")
    parser.add_argument("--js", action="store_true", help="also measure DenoExecutor with a JavaScript program")
    parser.add_argument("--threshold", type=float, default=1.10, help="largest acceptable new/base (default 1.10)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lang", nargs="+", choices=list(LANGUAGES), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    langs = args.lang or (["python", "javascript"] if args.js else ["python"])
    if args.child:
        child(args.calls, args.repeat, langs)
    else:
        sys.exit(main(args.base, args.calls, args.rounds, args.repeat, langs, args.threshold))
