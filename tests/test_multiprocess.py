"""Correctness across OS processes sharing one SQLite file: approvals race, hosts get killed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("proc_worker.py")


def run(*args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, str(WORKER), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def ledger_lines(path: Path) -> list[str]:
    return [line.split()[0] for line in path.read_text().splitlines()] if path.exists() else []


def test_four_processes_approve_one_pause(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "shared.db"), tmp_path / "ledger.txt"
    paused = run("pause", db, str(ledger), "")
    assert paused["status"] == "paused"
    assert ledger_lines(ledger) == ["read"]
    start_at = time.time() + 1.5  # all four start approving at the same instant
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "approve", db, str(ledger), f"{paused['id']}:{start_at}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    completed = [o for o in outcomes if o["status"] == "completed"]
    assert len(completed) == 1, outcomes
    assert completed[0]["result"] == {"read": 7, "write": {"written": 42}}
    assert all("not awaiting a decision" in o["error"] for o in outcomes if o["status"] != "completed")
    # The approved action ran exactly once; the read logged before the pause never ran again.
    assert ledger_lines(ledger) == ["read", "write-start", "write-done"]


def test_killed_host_mid_call_is_recovered_by_another_process(tmp_path: Path) -> None:
    db, ledger = str(tmp_path / "shared.db"), tmp_path / "ledger.txt"
    paused = run("pause", db, str(ledger), "")
    victim = subprocess.Popen(
        [sys.executable, str(WORKER), "approve-slow", db, str(ledger), paused["id"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 60
    while "write-start" not in ledger_lines(ledger):
        assert time.time() < deadline, "the approved call never started"
        assert victim.poll() is None, victim.stderr.read() if victim.stderr else ""
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)  # the host dies while the call is `executing`
    victim.wait(timeout=30)
    time.sleep(1.2)  # no heartbeat from the dead host for longer than stale_after
    recovered = run("recover", db, str(ledger), paused["id"])
    assert recovered["status"] == "completed", recovered
    assert recovered["result"] == {"read": 7, "write": {"written": 42}}
    # Re-executed, never lost; the earlier read was replayed from the log.
    assert ledger_lines(ledger) == ["read", "write-start", "write-start", "write-done"]
