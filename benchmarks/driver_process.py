"""Where the Monty driver threads should live: in the host process, or in a process of their own.

    .venv/bin/python benchmarks/driver_process.py [--runs 1500] [--rounds 3] [--width 50]

Not the library: a measurement of a design. Both sides run the same workload with pydantic-monty directly:
`--runs` programs of 10 sequential awaited calls, at most `--width` in flight and 16 in sandboxes (16 Monty
workers, as `MontyExecutor` has). Each call costs the host what a durable call costs the event loop, roughly:
an autocommitted SQLite INSERT, 60 µs of Python, an UPDATE (a WAL file on disk).

  - threads: a driver thread per running program in the host process (what `MontyExecutor` does). Each call
    is handed to the event loop, the sandbox resumed with a future, and resumed again when the loop answers.
  - driver process: the same driver threads in a forked process; the host's event loop reads their calls
    from a socket (one line each, every line that arrived handled in one read) and writes the answers back.

Each side runs in a fresh interpreter, alternating, `--rounds` times. The table gives runs per second and CPU
per run, of the host process and (driver process) of the driver process, medians over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import queue
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

PROGRAM = "for i in range(10):\n    await h.f(i)\n10"
PLACES = 16


def host_work(directory: str) -> Callable[[], None]:
    """What one durable call costs the event loop, roughly: two autocommitted statements and some Python."""
    conn = sqlite3.connect(os.path.join(directory, "log.db"), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, state TEXT)")
    counter = [0]

    def work() -> None:
        counter[0] += 1
        conn.execute("INSERT INTO log VALUES (?, ?)", (counter[0], "executing"))
        end = time.perf_counter() + 60e-6
        while time.perf_counter() < end:
            pass
        conn.execute("UPDATE log SET state = ? WHERE id = ?", ("applied", counter[0]))

    return work


def drive(pool: Any, call: Callable[[int], None], answers: queue.SimpleQueue[int]) -> None:
    """One program to its end: each call reported through `call`, its answer taken from `answers`."""
    import pydantic_monty as monty

    class Host:
        pass

    with pool.checkout(script_name="program.py") as session:
        snap = session.feed_start(PROGRAM, inputs={"h": monty.ClassInstance(Host(), allowed_methods=["f"])})
        while not isinstance(snap, monty.MontyComplete):
            if isinstance(snap, monty.FunctionSnapshot):
                call(snap.call_id)
                snap = snap.resume({"future": ...})
            else:
                snap = snap.resume({answers.get(): {"return_value": None}})


def worker_pool() -> Any:
    import pydantic_monty as monty

    pool = monty.Monty(min_processes=PLACES, max_processes=PLACES)
    pool.__enter__()
    return pool


async def threads_side(directory: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], float]]:
    loop = asyncio.get_running_loop()
    pool, work = worker_pool(), host_work(directory)
    executor = concurrent.futures.ThreadPoolExecutor(32)

    async def one() -> None:
        done: asyncio.Future[None] = loop.create_future()
        answers: queue.SimpleQueue[int] = queue.SimpleQueue()

        def answer(call_id: int) -> None:
            work()
            answers.put(call_id)

        def run() -> None:
            drive(pool, lambda call_id: loop.call_soon_threadsafe(answer, call_id), answers)
            loop.call_soon_threadsafe(done.set_result, None)

        executor.submit(run)
        await done

    return one, lambda: 0.0


def driver_process(fd: int) -> None:
    """The forked side: driver threads answering the host's `start` lines, reporting calls and ends."""
    sock = socket.socket(fileno=fd)
    pool = worker_pool()
    write_lock = threading.Lock()
    inboxes: dict[int, queue.SimpleQueue[int]] = {}
    executor = concurrent.futures.ThreadPoolExecutor(32)

    def send(line: bytes) -> None:
        with write_lock:
            sock.sendall(line)

    def run(run_id: int) -> None:
        drive(pool, lambda call_id: send(b"c %d %d\n" % (run_id, call_id)), inboxes[run_id])
        del inboxes[run_id]
        send(b"d %d\n" % run_id)

    pending = b""
    while chunk := sock.recv(1 << 16):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            kind, run_id, *rest = line.split()
            if kind == b"s":
                inboxes[int(run_id)] = queue.SimpleQueue()
                executor.submit(run, int(run_id))
            else:
                inboxes[int(run_id)].put(int(rest[0]))


async def process_side(directory: str) -> tuple[Callable[[], Awaitable[None]], Callable[[], float]]:
    host_end, driver_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the driver process; it never returns into the event loop it was forked from
        host_end.close()
        try:
            driver_process(driver_end.detach())
        finally:
            os._exit(0)
    driver_end.close()
    loop = asyncio.get_running_loop()
    work = host_work(directory)
    waiting: dict[int, asyncio.Future[None]] = {}
    pending = [b""]

    def readable() -> None:
        *lines, pending[0] = (pending[0] + host_end.recv(1 << 16)).split(b"\n")
        out = []
        for line in lines:
            kind, run_id, *rest = line.split()
            if kind == b"c":
                work()
                out.append(b"a %s %s\n" % (run_id, rest[0]))
            else:
                waiting.pop(int(run_id)).set_result(None)
        if out:
            host_end.sendall(b"".join(out))

    loop.add_reader(host_end.fileno(), readable)
    runs = [0]

    async def one() -> None:
        runs[0] += 1
        done = waiting[runs[0]] = loop.create_future()
        host_end.sendall(b"s %d\n" % runs[0])
        await done

    def driver_cpu() -> float:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    return one, driver_cpu


async def measure(side: str, runs: int, width: int, directory: str) -> dict[str, float]:
    one, driver_cpu = await (process_side(directory) if side == "process" else threads_side(directory))
    gate, places = asyncio.Semaphore(width), asyncio.Semaphore(PLACES)

    async def gated() -> None:
        async with gate, places:
            await one()

    await asyncio.gather(*(gated() for _ in range(200)))  # untimed: warms the workers
    start, cpu, other = time.perf_counter(), time.process_time(), driver_cpu()
    await asyncio.gather(*(gated() for _ in range(runs)))
    elapsed = time.perf_counter() - start
    return {
        "rate": runs / elapsed,
        "host": (time.process_time() - cpu) / runs,
        "driver": (driver_cpu() - other) / runs,
    }


def main(runs: int, rounds: int, width: int) -> None:
    results: dict[str, list[dict[str, float]]] = {"threads": [], "process": []}
    for r in range(rounds):
        for side in ["threads", "process"] if r % 2 == 0 else ["process", "threads"]:
            args = [sys.executable, __file__, "--child", side, "--runs", str(runs), "--width", str(width)]
            out = subprocess.run(args, capture_output=True, text=True, check=True, timeout=600)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    print(f"\n{runs} programs of 10 awaited calls, {width} in flight, 16 in sandboxes, {rounds} rounds (medians)")
    print(f"{'drivers':<16} {'runs/s':>8} {'host CPU µs/run':>16} {'driver process CPU µs/run':>26}")
    for side, label in (("threads", "host threads"), ("process", "driver process")):
        rows = results[side]
        rate = statistics.median(row["rate"] for row in rows)
        host = statistics.median(row["host"] for row in rows) * 1e6
        driver = statistics.median(row["driver"] for row in rows) * 1e6
        print(f"{label:<16} {rate:>8.0f} {host:>16.0f} {driver:>26.0f}")
    pairs = zip(results["process"], results["threads"], strict=True)
    ratio = statistics.median(p["rate"] / t["rate"] for p, t in pairs)
    print(f"driver process / host threads, paired median: {ratio:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--child", choices=["threads", "process"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory(prefix="codemode-bench-") as directory:
            print(json.dumps(asyncio.run(measure(args.child, args.runs, args.width, directory))), flush=True)
        os._exit(0)  # the workers and the driver process go with this process
    else:
        main(args.runs, args.rounds, args.width)
