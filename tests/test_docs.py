"""The README example and the quickstart run as documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import codemode

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


class Github(codemode.Connector):
    """Just enough of the connector the docs/sandboxes.md samples call."""

    name = "github"

    @codemode.tool
    def list_issues(self, state: str) -> list[dict[str, Any]]:
        """Issues in a state."""
        return [{"number": 1, "state": state}, {"number": 2, "state": state}]

    @codemode.tool
    def add_label(self, issue: int, label: str) -> None:
        """Label an issue."""


class Items(codemode.Connector):
    name = "items"

    @codemode.tool
    def get(self, id: int) -> dict[str, int]:
        """One item."""
        return {"id": id}


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_the_sandbox_samples_run(tmp_path: Path, language: str) -> None:
    text = (ROOT / "docs" / "sandboxes.md").read_text()
    sample = re.search(rf"```{language}\n(.*?)```", text, re.DOTALL)
    assert sample is not None
    executor = codemode.MontyExecutor() if language == "python" else codemode.DenoExecutor()
    store = codemode.SqliteStore(tmp_path / "codemode.db")
    async with codemode.Runtime([Github(), Items()], executor=executor, store=store) as runtime:
        outcome = await runtime.execute(sample.group(1))
    await executor.aclose()
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"open": 2}
    assert outcome.logs == ["2"]
    labelled = [("github", "add_label")] if language == "python" else []
    calls = [("github", "list_issues"), *labelled, ("items", "get"), ("items", "get")]
    assert [(c.connector, c.method) for c in outcome.calls] == calls


def test_the_default_store_is_codemode_db_in_the_working_directory_and_the_docs_say_so(tmp_path: Path) -> None:
    script = "import codemode\nprint(codemode.Runtime([]).sync.execute('1 + 1').result)\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "2"
    assert (tmp_path / "codemode.db").exists()
    said = 'Without `store=`, `codemode.Runtime(connectors)` uses `SqliteStore("codemode.db")`'
    for doc in (ROOT / "README.md", ROOT / "docs" / "storage.md"):
        text = " ".join(doc.read_text().split())
        assert said.replace("Without", "without") in text or said in text, doc
        assert "current working directory" in text, doc
    assert 'SqliteStore("codemode.db")' in (codemode.Runtime.__doc__ or "")


def test_the_openapi_derivation_time_is_stated_one_way() -> None:
    table = re.search(
        r"^\| github \| 1,223 \| [\d.]+ ms \| (\d+) ms \|", (ROOT / "docs/performance.md").read_text(), re.M
    )
    assert table is not None
    stated = f"about {int(table.group(1)) / 1000:.1f} s"
    assert f"GitHub's 1,223 derive in {stated}" in (ROOT / "README.md").read_text()
    assert f"derives in {stated} cold" in " ".join((ROOT / "docs/connectors.md").read_text().split())


def test_docs_and_sources_cite_no_sections_of_documents_users_do_not_have() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "examples").glob("*.py")]
    files += (ROOT / "src").rglob("*.py")
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            cited = re.sub(r"RFC \d+ §[\d.]+", "", line)
            assert "§" not in cited and "DESIGN" not in cited, f"{path.relative_to(ROOT)}:{number}: {line}"
            # "the spec" in the OpenAPI connector means the OpenAPI document, which users do have.
            spec = re.search(r"\bthe spec\b(?! says to serialize|'s `encoding`)", cited)
            assert spec is None, f"{path.relative_to(ROOT)}:{number}: {line}"
