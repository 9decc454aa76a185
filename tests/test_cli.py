"""The `codemode` command as real processes against a real SQLite file and an application module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cli_app import ROOT, codemode, env, ledger, seed, write_app


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    return write_app(tmp_path)


def status_of(directory: Path, execution_id: str) -> str:
    done = codemode(directory, "show", execution_id, "--json")
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["status"])


def test_read_only_commands_need_only_the_store(app_dir: Path) -> None:
    paused = seed(app_dir)
    done_run = seed(app_dir, "return await bank.balance()", metadata={"team": "finance"})
    eid = paused["execution_id"]
    (app_dir / "app.py").unlink()  # no application: the store alone answers

    runs = codemode(app_dir, "runs", "--db", "codemode.db")
    assert runs.returncode == 0, runs.stderr
    assert eid in runs.stdout and "paused" in runs.stdout and "completed" in runs.stdout
    assert "\x1b[" not in runs.stdout  # no colour when the output is not a terminal

    listed = json.loads(codemode(app_dir, "runs", "--json", "--status", "paused").stdout)
    assert [r["id"] for r in listed] == [eid] and listed[0]["pending"] == [1]
    tagged = json.loads(codemode(app_dir, "runs", "--json", "--metadata", "team=finance").stdout)
    assert [r["id"] for r in tagged] == [done_run["execution_id"]]

    show = codemode(app_dir, "show", eid)
    assert show.returncode == 0, show.stderr
    assert 'r = await bank.pay(to="carol", amount=30)' in show.stdout
    assert "bank.balance" in show.stdout and "applied" in show.stdout and "pending" in show.stdout
    record = json.loads(codemode(app_dir, "show", eid, "--json").stdout)
    assert record["status"] == "paused" and [e["state"] for e in record["log"]] == ["applied", "pending"]

    pending = codemode(app_dir, "pending", "--json")
    assert json.loads(pending.stdout) == [
        {"execution_id": eid, "seq": 1, "connector": "bank", "method": "pay", "args": {"amount": 30, "to": "carol"}}
    ]
    assert "bank.pay" in codemode(app_dir, "pending").stdout


def test_not_found_and_missing_store_have_their_own_exit_codes(tmp_path: Path) -> None:
    missing = codemode(tmp_path, "runs")
    assert missing.returncode == 6
    assert "No codemode database" in missing.stderr and "--db PATH" in missing.stderr
    write_app(tmp_path)
    seed(tmp_path)
    unknown = codemode(tmp_path, "show", "exec_nope")
    assert unknown.returncode == 3 and 'No execution "exec_nope"' in unknown.stderr
    assert codemode(tmp_path, "runs", "--metadata", "oops").returncode == 2
    assert codemode(tmp_path, "runs", "--bogus").returncode == 2


def test_approve_runs_the_action_once_and_a_second_approval_is_stale(app_dir: Path) -> None:
    eid = seed(app_dir)["execution_id"]
    done = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--reason", "invoice checked", "--app", "app:runtime")
    assert done.returncode == 0, done.stderr
    assert "completed" in done.stdout and '"paid":30' in done.stdout
    again = codemode(app_dir, "approve", eid, "1", "--by", "bob", "--app", "app:runtime")
    assert again.returncode == 4
    assert "already approved by ann" in again.stderr and "invoice checked" in again.stderr
    assert ledger(app_dir) == [{"amount": 30, "op": "pay", "to": "carol"}]
    entry = json.loads(codemode(app_dir, "show", eid, "--json").stdout)["log"][1]
    assert entry["decision"]["by"] == "ann" and entry["decision"]["reason"] == "invoice checked"


def test_approve_with_edited_arguments_is_validated_first(app_dir: Path) -> None:
    eid = seed(app_dir)["execution_id"]
    app = ["--app", "app:runtime"]
    bad_json = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--args", "{amount: 5", *app)
    assert bad_json.returncode == 2 and "not valid JSON" in bad_json.stderr
    bad_schema = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--args", '{"to": "dave"}', *app)
    assert bad_schema.returncode == 2
    assert "'amount' is a required property" in bad_schema.stderr and "still pending" in bad_schema.stderr
    assert ledger(app_dir) == [] and status_of(app_dir, eid) == "paused"
    edited = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--args", '{"to": "dave", "amount": 31}', *app)
    assert edited.returncode == 0, edited.stderr
    assert ledger(app_dir) == [{"amount": 31, "op": "pay", "to": "dave"}]
    entry = json.loads(codemode(app_dir, "show", eid, "--json").stdout)["log"][1]
    assert entry["args"] == {"amount": 30, "to": "carol"} and entry["decision"]["args"] == {"amount": 31, "to": "dave"}


def test_decisions_need_the_application_runtime(app_dir: Path) -> None:
    eid = seed(app_dir)["execution_id"]
    no_app = codemode(app_dir, "approve", eid, "1", "--by", "ann")
    assert no_app.returncode == 6 and "--app module:attribute" in no_app.stderr
    for spec, message in [
        ("app", "not of the form module:attribute"),
        ("nomodule:runtime", 'no module "nomodule"'),
        ("app:missing", 'has no attribute "missing"'),
        ("app:not_a_runtime", "not a codemode.Runtime"),
    ]:
        done = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--app", spec)
        assert done.returncode == 6 and message in done.stderr, done.stderr
    both = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--app", "app:runtime", "--db", "codemode.db")
    assert both.returncode == 2 and "--app brings its own store: leave out --db" in both.stderr
    assert ledger(app_dir) == [] and status_of(app_dir, eid) == "paused"
    factory = codemode(app_dir, "approve", eid, "1", "--by", "ann", "--app", "app:async_runtime", "--json")
    assert factory.returncode == 0, factory.stderr
    assert json.loads(factory.stdout)["status"] == "completed"


def test_reject_ends_the_run_or_lets_the_program_continue(app_dir: Path) -> None:
    app = ["--app", "app:runtime"]
    ended = seed(app_dir)["execution_id"]
    done = codemode(app_dir, "reject", ended, "1", "--by", "bob", "--reason", "not on the payroll", *app)
    assert done.returncode == 0, done.stderr
    assert "rejected" in done.stdout and "Action bank.pay rejected by bob: not on the payroll" in done.stdout
    assert codemode(app_dir, "reject", ended, "1", *app).returncode == 4

    program = "try:\n    await bank.pay(to='x', amount=1)\nexcept PermissionError as e:\n    return 'no: ' + str(e)"
    resumed = seed(app_dir, program)["execution_id"]
    done = codemode(app_dir, "reject", resumed, "0", "--by", "bob", "--resume", "--json", *app)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "completed"
    record = json.loads(codemode(app_dir, "show", resumed, "--json").stdout)
    assert record["result"] == "no: Action bank.pay rejected by bob"
    assert ledger(app_dir) == []


def test_a_batch_is_decided_one_action_at_a_time(app_dir: Path) -> None:
    program = "import asyncio\nreturn await asyncio.gather(bank.pay(to='a', amount=1), bank.pay(to='b', amount=2))"
    eid = seed(app_dir, program)["execution_id"]
    first = codemode(app_dir, "approve", eid, "0", "--by", "ann", "--app", "app:runtime", "--json")
    assert first.returncode == 0, first.stderr
    outcome = json.loads(first.stdout)
    assert outcome["status"] == "paused" and [p["seq"] for p in outcome["pending"]] == [1]
    assert ledger(app_dir) == []
    codemode(app_dir, "approve", eid, "1", "--by", "ann", "--app", "app:runtime")
    assert status_of(app_dir, eid) == "completed" and len(ledger(app_dir)) == 2


def test_rollback_reports_what_was_and_was_not_undone(app_dir: Path) -> None:
    app = ["--app", "app:runtime"]
    eid = seed(app_dir)["execution_id"]
    codemode(app_dir, "approve", eid, "1", "--by", "ann", *app)
    done = codemode(app_dir, "rollback", eid, "--by", "ann", "--json", *app)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["complete"] is True and report["reverted"] == [1] and report["irreversible"] == [0]
    assert ledger(app_dir)[-1] == {"amount": 30, "op": "refund", "to": "carol"}
    assert status_of(app_dir, eid) == "rolled_back"

    wired = seed(app_dir, "return await bank.wire(to='mallory')")["execution_id"]
    codemode(app_dir, "approve", wired, "0", "--by", "ann", *app)
    failed = codemode(app_dir, "rollback", wired, "--by", "ann", *app)
    assert failed.returncode == 5
    assert "failed: seq 0: " in failed.stdout and "the bank refused the recall" in failed.stdout
    assert "again to retry" in failed.stderr
    assert codemode(app_dir, "rollback", "exec_nope", *app).returncode == 3


def test_prune_and_expire(app_dir: Path) -> None:
    for _ in range(3):
        seed(app_dir, "return 1")
    paused = seed(app_dir)["execution_id"]
    pruned = codemode(app_dir, "prune", "--keep", "1", "--db", "codemode.db", "--json")
    assert pruned.returncode == 0, pruned.stderr
    assert json.loads(pruned.stdout) == {"deleted": 2}
    assert len(json.loads(codemode(app_dir, "runs", "--json").stdout)) == 2
    assert codemode(app_dir, "expire", "--max-age", "soon", "--app", "app:runtime").returncode == 2
    kept = codemode(app_dir, "expire", "--max-age", "1h", "--app", "app:runtime", "--json")
    assert json.loads(kept.stdout) == {"expired": []}
    expired = codemode(app_dir, "expire", "--max-age", "0s", "--app", "app:runtime", "--json")
    assert json.loads(expired.stdout) == {"expired": [paused]}
    assert status_of(app_dir, paused) == "rejected"


def test_the_console_script_help_and_version(app_dir: Path) -> None:
    done = codemode(app_dir, "--help")
    assert done.returncode == 0
    for command in ["runs", "show", "pending", "approve", "reject", "rollback", "prune", "expire", "console", "mcp"]:
        assert command in done.stdout
    assert codemode(app_dir, "--version").returncode == 0


def test_mcp_without_its_server_module_says_what_to_install(app_dir: Path) -> None:
    # Simulated: codemode.server.mcp is blocked from importing, as in an installation that lacks it.
    script = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'codemode.server.mcp': raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from codemode.cli import main\n"
        "main(['mcp', '--app', 'app:runtime'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=app_dir, env=env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 6 and "pip install 'codemode[mcp-server]'" in done.stderr


def test_the_quickstart_leaves_a_run_for_the_cli_and_the_console(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py"), str(tmp_path)],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert demo.returncode == 0, demo.stderr
    assert "5. the model runs its program again: it pauses, and waits for you" in demo.stdout
    assert "codemode console --app examples.quickstart:app" in demo.stdout
    pending = codemode(ROOT, "pending", "--db", str(tmp_path / "codemode.db"), "--json")
    assert pending.returncode == 0, pending.stderr
    [action] = json.loads(pending.stdout)
    assert (action["method"], action["args"]) == ("add_task", {"title": "Write the release notes"})
    quickstart = {"CODEMODE_QUICKSTART_DIR": str(tmp_path)}
    done = codemode(
        ROOT, "approve", action["execution_id"], str(action["seq"]), "--by", "you", "--json",
        "--app", "examples.quickstart:app", extra_env=quickstart,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == ["Triage the inbox", "Write the release notes"]


def test_the_session_in_docs_cli_md_runs(tmp_path: Path) -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    block = text.split("## A session", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "quickstart.py").write_text((ROOT / "examples" / "quickstart.py").read_text())
    shims = tmp_path / "bin"  # `codemode` and `python` as an installed codemode would have them
    shims.mkdir()
    for name, target in {"codemode": f'"{sys.executable}" -m codemode.cli', "python": f'"{sys.executable}"'}.items():
        (shims / name).write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        (shims / name).chmod(0o755)
    environ = {**env(), "PATH": f"{shims}:{env()['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "tasks.add_task" in done.stdout and "completed" in done.stdout
    assert "exit 4: ann decided it first" in done.stdout and "already approved by ann" in done.stderr
    assert "reverted:     1" in done.stdout and "rolled_back" in done.stdout


@pytest.mark.parametrize("no_color", ["", "1"])
def test_colour_only_on_a_terminal(app_dir: Path, no_color: str) -> None:
    import pty

    seed(app_dir)
    main, replica = pty.openpty()
    environ = {**env(), "NO_COLOR": no_color, "TERM": "xterm"}
    done = subprocess.run(
        [sys.executable, "-m", "codemode.cli", "runs"], cwd=app_dir, env=environ, stdout=replica, timeout=120
    )
    os.close(replica)
    out = b""
    try:
        while chunk := os.read(main, 65536):
            out += chunk
    except OSError:  # the terminal's other end is closed: everything was read
        pass
    os.close(main)
    assert done.returncode == 0
    assert b"paused" in out
    assert (b"\x1b[" in out) is (no_color == "")
