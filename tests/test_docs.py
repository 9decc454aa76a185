"""The README example and the quickstart run as documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_example_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## Example\n\n```python\n(.*?)```", readme, re.DOTALL)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("paused [PendingAction(")
    assert done.stdout.splitlines()[1] == "completed {'id': 1, 'title': 'hello'}"


def test_quickstart_pauses_resumes_and_prints_the_audit_trail(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1. execute -> paused" in out
    assert "pending: tasks.add_task({'title': 'Write the release notes'})" in out
    assert "approve -> completed: ['Triage the inbox', 'Write the release notes']" in out
    assert "seq 1: tasks.add_task({'title': 'Write the release notes'}) [applied]" in out
    assert "tasks now: ['Triage the inbox']" in out
    assert (tmp_path / "codemode.db").exists()
