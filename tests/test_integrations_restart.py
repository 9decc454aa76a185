"""A real process restart between each pause and its approval: every step of the conversation runs in
its own OS process, with the framework's state and the codemode store on disk, and the payments land
in a ledger file exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def step(framework: str, name: str, workdir: Path) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])}
    done = subprocess.run(
        [sys.executable, str(TESTS / "integrations_worker.py"), framework, name, str(workdir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("framework", ["openai-agents", "pydantic-ai"])
def test_each_approval_in_a_new_process_resumes_the_same_run(framework: str, tmp_path: Path) -> None:
    ledger = tmp_path / "ledger.jsonl"
    assert step(framework, "start", tmp_path) == ["paused", "1"]
    assert not ledger.exists()
    assert step(framework, "approve", tmp_path) == ["paused", "1"]  # the second pause, in another process
    assert [json.loads(line) for line in ledger.read_text().splitlines()] == [{"to": "ann", "amount": 5}]
    final, runs = step(framework, "approve", tmp_path)
    assert json.loads(final)["result"] == ["ann", "bob"] and runs == "1"
    assert [json.loads(line)["to"] for line in ledger.read_text().splitlines()] == ["ann", "bob"]
