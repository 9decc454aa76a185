"""The framework examples in examples/ run as documented: one pause, one approval, the payment made once."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["pydantic_ai", "openai_agents", "langgraph"])
def test_framework_example_pauses_and_approves(name: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"frameworks_{name}.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "bank" in lines[0] and "ann" in lines[0]  # what the human was asked
    assert lines.count("PAID 5 to ann") == 1
    assert lines[-1].startswith("model sees: ") and '"status": "completed"' in lines[-1]
    assert '"result": "paid 5 to ann"' in lines[-1]


@pytest.mark.parametrize(
    ("heading", "name"),
    [("## Pydantic AI", "pydantic_ai"), ("## OpenAI Agents SDK", "openai_agents"), ("## LangChain", "langgraph")],
)
def test_docs_show_each_example_as_it_is_in_examples(heading: str, name: str) -> None:
    doc = (ROOT / "docs" / "integrations.md").read_text()
    block = re.compile(r"```python\n(.*?)```", re.DOTALL).search(doc, doc.index(heading))
    assert block is not None
    example = (ROOT / "examples" / f"frameworks_{name}.py").read_text()
    assert example.endswith(block.group(1))
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    assert len(lines) <= 20  # from import to an approved action


def test_codemode_imports_no_framework() -> None:
    code = (
        "import sys, codemode, codemode.integrations\n"
        "loaded = {'pydantic_ai', 'agents', 'langchain_core', 'langgraph', 'openai', 'anthropic'} & set(sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
