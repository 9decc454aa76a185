"""codemode as an MCP server, driven by the real `mcp` client over stdio and streamable HTTP.

The server is `python -m codemode.server.mcp --app mcp_server_app:runtime` (examples/mcp_server_app.py)
in a subprocess, on real Monty and real SQLite files. Every task the connector really adds is appended
to a ledger file with its run id, so a test counts what ran outside the runtime's own log. A "human"
decides in this process through a second Runtime on the same SQLite files, as the console or CLI would.

The elicitation paths differ by protocol: `mode="legacy"` (the initialize handshake, 2025-11-25) asks
mid-call over the back-channel; `mode="auto"` negotiates 2026-07-28, where the questions come back in
an `InputRequiredResult` and the client answers in a retry of the same call.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.types import (
    CallToolResult,
    ElicitRequestParams,
    ElicitResult,
    Implementation,
    InputRequiredResult,
    TextContent,
)

import codemode
from codemode.server.mcp import MAX_RESULT_CHARS

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
EXAMPLES = ROOT / "examples"
CLIENT = Implementation(name="test-desk", version="1.0")
CONSOLE = "http://127.0.0.1:8123/?token=abc"
GATED = "task = await tasks.add_task(title='Ship it')\nreturn task['title']"

Answer = Callable[[Any, ElicitRequestParams], Awaitable[ElicitResult]]


@dataclass
class App:
    """The two SQLite files a server subprocess and the test's own Runtime share."""

    dir: Path
    tasks_db: Path = field(init=False)
    codemode_db: Path = field(init=False)

    def __post_init__(self) -> None:
        self.tasks_db = self.dir / "tasks.db"
        self.codemode_db = self.dir / "codemode.db"

    def env(self) -> dict[str, str]:
        return dict(
            os.environ,
            PYTHONPATH=os.pathsep.join([str(SRC), str(EXAMPLES)]),
            TASKS_DB=str(self.tasks_db),
            CODEMODE_DB=str(self.codemode_db),
        )

    def ledger(self, execution_id: str) -> list[str]:
        """What really ran for one run, outside the runtime's log."""
        path = Path(f"{self.tasks_db}.ledger")
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        return [line for line in lines if line.split(" ", 1)[0] == execution_id]

    def human(self, example: ModuleType) -> codemode.Runtime:
        """A second runtime on the same files: how a person in the console or CLI decides."""
        return codemode.Runtime([example.Tasks(self.tasks_db)], store=codemode.SqliteStore(self.codemode_db))


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """examples/mcp_server_app.py imported with its files in a temporary directory."""
    where = tmp_path_factory.mktemp("example-import")
    env = {"TASKS_DB": str(where / "tasks.db"), "CODEMODE_DB": str(where / "codemode.db")}
    with mock.patch.dict(os.environ, env):
        spec = importlib.util.spec_from_file_location("mcp_server_app_under_test", EXAMPLES / "mcp_server_app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


@pytest.fixture
def app(tmp_path: Path) -> App:
    return App(tmp_path)


def answering(action: str, note: str | None = None, asked: list[str] | None = None) -> Answer:
    """An elicitation callback that answers every question the same way, recording the messages."""

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        if asked is not None:
            asked.append(params.message)
        content = {"note": note} if action == "accept" and note is not None else ({} if action == "accept" else None)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return answer


@asynccontextmanager
async def stdio(
    app: App, *, mode: str = "legacy", elicit: Answer | None = None, console_url: str | None = CONSOLE
) -> AsyncIterator[Client]:
    args = ["-m", "codemode.server.mcp", "--app", "mcp_server_app:runtime"]
    if console_url:
        args += ["--console-url", console_url]
    params = StdioServerParameters(command=sys.executable, args=args, env=app.env(), cwd=str(app.dir))
    async with Client(params, mode=mode, elicitation_callback=elicit, client_info=CLIENT) as client:
        yield client


@pytest.fixture
def http_server(app: App) -> Iterator[str]:
    """The server on streamable HTTP, on a port the OS picks, in its own process: yields its URL."""
    args = ["-m", "codemode.server.mcp", "--app", "mcp_server_app:make_runtime", "--http", "0"]
    proc = subprocess.Popen(
        [sys.executable, *args, "--console-url", CONSOLE],
        env=app.env(),
        cwd=app.dir,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    stderr = proc.stderr
    assert stderr is not None

    def pump() -> None:  # keeps the pipe drained for the whole test, so the server never blocks on it
        for line in stderr:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        seen: list[str] = []
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                assert proc.poll() is None, f"the server exited before listening: {''.join(seen)}"
                continue
            found = re.search(r"(http://127\.0\.0\.1:\d+/mcp)", seen[-1])
            url = found.group(1) if found else None
        assert url is not None, f"the server printed no 127.0.0.1 URL: {''.join(seen)}"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@asynccontextmanager
async def http(url: str, *, mode: str = "auto", elicit: Answer | None = None) -> AsyncIterator[Client]:
    async with Client(url, mode=mode, elicitation_callback=elicit, client_info=CLIENT) as client:
        yield client


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured content, checked to say the same as the text block."""
    assert result.structured_content is not None
    assert len(result.content) == 1 and isinstance(result.content[0], TextContent)
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


# -- the tool list ----------------------------------------------------------------


async def test_exactly_four_tools_and_none_that_decides(app: App, example: ModuleType) -> None:
    async with stdio(app) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert sorted(tools) == ["describe", "execute", "result", "search"]
    deciding = re.compile(r"approv|reject|decid|decline|accept|confirm|grant", re.IGNORECASE)
    assert not [name for name in tools if deciding.search(name)]
    assert tools["execute"].description == example.runtime.tool().description
    assert tools["execute"].input_schema["properties"]["code"]["type"] == "string"
    assert tools["execute"].input_schema["required"] == ["code"]
    assert tools["result"].input_schema["required"] == ["execution_id"]
    assert tools["search"].annotations is not None and tools["search"].annotations.read_only_hint


# -- discovery and plain programs ---------------------------------------------------


async def test_search_and_describe(app: App) -> None:
    async with stdio(app) as client:
        found = data(await client.call_tool("search", {"query": "add a new task"}))
        described = await client.call_tool("describe", {"target": "tasks.add_task"})
        missing = await client.call_tool("describe", {"target": "tasks.nothing_like_it"})
    assert found["results"][0]["path"] == "tasks.add_task"
    assert found["results"][0]["requires_approval"] is True
    assert described.structured_content is not None
    assert described.structured_content["requires_approval"] is True
    text = described.content[0]
    assert isinstance(text, TextContent)
    assert text.text.startswith("tasks.add_task (requires approval)")
    assert "add_task" in described.structured_content["types"] and "title" in text.text
    assert missing.structured_content is not None
    assert "not found. Closest names: tasks.list_tasks, tasks.add_task" in missing.structured_content["types"]


async def test_execute_a_plain_program_and_an_error_and_a_huge_result(app: App) -> None:
    async with stdio(app) as client:
        done = await client.call_tool("execute", {"code": "print('hi')\nreturn len(await tasks.list_tasks()) + 42"})
        failed = await client.call_tool("execute", {"code": "raise ValueError('boom')"})
        huge = await client.call_tool("execute", {"code": "return ['x' * 1000 for _ in range(200)]"})
        unknown = await client.call_tool("result", {"execution_id": "exec_nope"})
    out = data(done)
    assert out["status"] == "completed" and out["result"] == 42 and out["logs"] == ["hi"]
    assert not done.is_error
    bad = data(failed)
    assert failed.is_error and bad["status"] == "error" and "boom" in bad["error"]
    big = data(huge)
    assert big["status"] == "completed"
    assert len(huge.content[0].text) < MAX_RESULT_CHARS + 2_000  # type: ignore[union-attr]
    assert "more items omitted" in json.dumps(big["result"])
    assert unknown.is_error and "No run" in unknown.content[0].text  # type: ignore[union-attr]


# -- a gated call, with elicitation --------------------------------------------------

MODES = ["legacy", "auto"]  # back-channel elicitation mid-call; InputRequiredResult and a retry


@pytest.mark.parametrize("mode", MODES)
async def test_accept_over_stdio_approves_and_runs_once(app: App, example: ModuleType, mode: str) -> None:
    asked: list[str] = []
    async with stdio(app, mode=mode, elicit=answering("accept", "looks right", asked)) as client:
        out = data(await client.call_tool("execute", {"code": GATED}))
    assert out["status"] == "completed" and out["result"] == "Ship it"
    eid = out["execution_id"]
    assert len(app.ledger(eid)) == 1
    assert len(asked) == 1 and "tasks.add_task" in asked[0] and '"title": "Ship it"' in asked[0]
    async with app.human(example) as human:
        runs = await human.executions()
        execution = await human.execution(eid)
    assert [r.id for r in runs] == [eid]  # the retry of the same call started no second run
    assert execution is not None and execution.metadata == {"via": "mcp", "client": "test-desk"}
    decision = execution.log[0].decision
    assert decision is not None
    assert (decision.kind, decision.by, decision.reason) == ("approve", "test-desk", "looks right")


@pytest.mark.parametrize("mode", MODES)
async def test_accept_over_http_approves_each_pause_of_a_longer_program(
    app: App, http_server: str, example: ModuleType, mode: str
) -> None:
    code = (
        "import asyncio\n"
        "a, b = await asyncio.gather(tasks.add_task(title='one'), tasks.add_task(title='two'))\n"
        "c = await tasks.add_task(title='three')\n"
        "return [t['title'] for t in await tasks.list_tasks()]"
    )
    asked: list[str] = []
    async with http(http_server, mode=mode, elicit=answering("accept", asked=asked)) as client:
        out = data(await client.call_tool("execute", {"code": code}))
    assert out["status"] == "completed" and out["result"] == ["one", "two", "three"]
    assert [line.split(" ", 2)[2] for line in app.ledger(out["execution_id"])] == ["one", "two", "three"]
    assert len(asked) == 3  # the batch of two, then the third after the resume
    async with app.human(example) as human:
        assert len(await human.executions()) == 1


@pytest.mark.parametrize("transport", ["stdio", "http"])
@pytest.mark.parametrize("mode", MODES)
async def test_decline_rejects_and_nothing_runs(
    app: App, example: ModuleType, request: pytest.FixtureRequest, transport: str, mode: str
) -> None:
    opened = (
        stdio(app, mode=mode, elicit=answering("decline"))
        if transport == "stdio"
        else http(request.getfixturevalue("http_server"), mode=mode, elicit=answering("decline"))
    )
    async with opened as client:
        declined = await client.call_tool("execute", {"code": GATED})
        out = data(declined)
        later = data(await client.call_tool("result", {"execution_id": out["execution_id"]}))
    assert declined.is_error and out["status"] == "error"
    assert "Action tasks.add_task rejected by test-desk" in out["error"]
    assert later["run_status"] == "rejected" and later["error"] == out["error"]
    assert app.ledger(out["execution_id"]) == []
    async with app.human(example) as human:
        execution = await human.execution(out["execution_id"])
    assert execution is not None and execution.status == "rejected"
    decision = execution.log[0].decision
    assert decision is not None and (decision.kind, decision.by) == ("reject", "test-desk")


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_leaves_the_run_paused(app: App, example: ModuleType, mode: str) -> None:
    asked: list[str] = []
    async with stdio(app, mode=mode, elicit=answering("cancel", asked=asked)) as client:
        out = data(await client.call_tool("execute", {"code": GATED}))
        again = data(await client.call_tool("result", {"execution_id": out["execution_id"]}))
    assert out["status"] == "paused" and len(asked) == 1
    assert out["pending"] == [{"seq": 0, "connector": "tasks", "method": "add_task", "args": {"title": "Ship it"}}]
    assert out["console_url"] == CONSOLE and again["status"] == "paused"
    assert app.ledger(out["execution_id"]) == []
    async with app.human(example) as human:
        pending = await human.pending(out["execution_id"])
    assert [(p.seq, p.method) for p in pending] == [(0, "add_task")]


# -- a gated call, without elicitation: a human decides elsewhere ----------------------


@pytest.mark.parametrize("transport", ["stdio", "http"])
async def test_without_elicitation_pauses_and_result_reports_the_humans_decision(
    app: App, example: ModuleType, request: pytest.FixtureRequest, transport: str
) -> None:
    opened = stdio(app) if transport == "stdio" else http(request.getfixturevalue("http_server"))
    async with opened as client:
        paused = data(await client.call_tool("execute", {"code": GATED}))
        eid = paused["execution_id"]
        assert paused["status"] == "paused" and paused["console_url"] == CONSOLE
        assert CONSOLE in paused["message"] and "call result(execution_id)" in paused["message"]
        assert "cannot decide them yourself" in paused["message"]
        assert data(await client.call_tool("result", {"execution_id": eid}))["status"] == "paused"
        assert app.ledger(eid) == []

        async with app.human(example) as human:
            approved = await human.approve(eid, paused["pending"][0]["seq"], by="ann")
        assert approved.status == "completed"

        done = data(await client.call_tool("result", {"execution_id": eid}))
        assert (done["status"], done["result"]) == ("completed", "Ship it")
        assert data(await client.call_tool("result", {"execution_id": eid})) == done  # result decides nothing
    assert len(app.ledger(eid)) == 1


async def test_without_a_console_url_the_pause_points_at_the_cli(app: App) -> None:
    async with stdio(app, console_url=None) as client:
        paused = data(await client.call_tool("execute", {"code": GATED}))
    assert "console_url" not in paused
    assert f"codemode approve {paused['execution_id']} SEQ" in paused["message"]


# -- loading the application ----------------------------------------------------------


@pytest.mark.parametrize("launcher", [["-m", "codemode.server.mcp"], ["-m", "codemode.cli", "mcp"]])
async def test_an_async_factory_is_served_by_the_module_and_by_the_cli(tmp_path: Path, launcher: list[str]) -> None:
    (tmp_path / "async_app.py").write_text(
        "import codemode\n"
        "async def make():\n"
        f"    return codemode.Runtime([], store=codemode.SqliteStore({str(tmp_path / 'c.db')!r}))\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))  # the app module is found from the working directory
    params = StdioServerParameters(
        command=sys.executable, args=[*launcher, "--app", "async_app:make"], env=env, cwd=str(tmp_path)
    )
    async with Client(params, mode="legacy") as client:
        out = data(await client.call_tool("execute", {"code": "return 6 * 7"}))
        names = sorted(t.name for t in (await client.list_tools()).tools)
    assert out["result"] == 42 and names == ["describe", "execute", "result", "search"]


def test_a_bad_app_exits_2_with_a_clear_message(app: App) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "codemode.server.mcp", "--app", "mcp_server_app:nothing"],
        env=app.env(),
        cwd=app.dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert 'module "mcp_server_app" has no attribute "nothing"' in done.stderr
    assert done.stderr.startswith("codemode mcp: ") and done.stdout == ""


# -- the 2026-07-28 round trip, driven by hand ------------------------------------------


async def test_a_retried_round_continues_the_same_run_and_forged_state_is_refused(
    app: App, http_server: str, example: ModuleType
) -> None:
    accept = ElicitResult(action="accept", content={"note": "ok"})
    async with http(http_server, elicit=answering("accept")) as client:
        session = client.session
        first = await session.call_tool("execute", {"code": GATED}, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        assert first.input_requests is not None and list(first.input_requests) == ["approve-seq-0"]
        state = first.request_state
        assert state is not None and "exec_" not in state  # sealed by the SDK, not the plain run id

        async with app.human(example) as human:
            (run,) = await human.executions()
        eid = run.id
        forged = json.dumps({"execution_id": eid})
        with pytest.raises(MCPError, match="Invalid or expired requestState"):
            await session.call_tool(
                "execute", {"code": GATED}, input_responses={"approve-seq-0": accept}, request_state=forged
            )
        assert app.ledger(eid) == []

        unanswered = await session.call_tool("execute", {"code": GATED}, request_state=state)
        assert data(unanswered)["status"] == "paused"  # no answer: the decision is left open
        answered = await session.call_tool(
            "execute", {"code": GATED}, input_responses={"approve-seq-0": accept}, request_state=state
        )
        again = await session.call_tool(
            "execute", {"code": GATED}, input_responses={"approve-seq-0": accept}, request_state=state
        )
    assert data(answered)["status"] == "completed"
    assert data(again) == data(answered)  # a replayed round decides nothing new
    assert len(app.ledger(eid)) == 1
    async with app.human(example) as human:
        assert [r.id for r in await human.executions()] == [eid]


@pytest.mark.parametrize("mode", MODES)
async def test_an_action_decided_in_the_console_meanwhile_is_not_decided_again(
    app: App, example: ModuleType, mode: str
) -> None:
    """A person approves in the console while the client's question is still open; then the client accepts."""

    async def console_first(context: Any, params: ElicitRequestParams) -> ElicitResult:
        async with app.human(example) as human:
            (action,) = await human.pending()
            assert (await human.approve(action.execution_id, action.seq, by="ann")).status == "completed"
        return ElicitResult(action="accept", content={})

    async with stdio(app, mode=mode, elicit=console_first) as client:
        out = data(await client.call_tool("execute", {"code": GATED}))
    assert (out["status"], out["result"]) == ("completed", "Ship it")
    assert len(app.ledger(out["execution_id"])) == 1
    async with app.human(example) as human:
        execution = await human.execution(out["execution_id"])
    assert execution is not None and execution.log[0].decision is not None
    assert execution.log[0].decision.by == "ann"


# -- transport safety -------------------------------------------------------------------


async def test_a_connector_writing_to_stdout_does_not_break_the_stdio_stream(tmp_path: Path) -> None:
    (tmp_path / "noisy_app.py").write_text(
        "import codemode\n"
        "class Noisy(codemode.Connector):\n"
        "    name = 'noisy'\n"
        "    @codemode.tool\n"
        "    def shout(self) -> str:\n"
        "        print('NOT JSON-RPC', flush=True)\n"
        "        return 'done'\n"
        f"runtime = codemode.Runtime([Noisy()], store=codemode.SqliteStore({str(tmp_path / 'c.db')!r}))\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), str(tmp_path)]))
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "codemode.server.mcp", "--app", "noisy_app:runtime"], env=env
    )
    async with Client(params, mode="legacy") as client:
        first = data(await client.call_tool("execute", {"code": "return await noisy.shout()"}))
        second = data(await client.call_tool("execute", {"code": "return 1 + 1"}))
    assert (first["status"], first["result"], second["result"]) == ("completed", "done", 2)


def test_http_binds_localhost_and_refuses_a_foreign_host_header(http_server: str) -> None:
    import httpx

    port = int(http_server.rsplit(":", 1)[1].split("/")[0])
    # The kernel's table of listening TCP sockets (Linux): this port listens on 127.0.0.1 alone.
    rows = [line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:]]
    listening = [row[1] for row in rows if row[3] == "0A" and int(row[1].split(":")[1], 16) == port]
    assert listening == [f"0100007F:{port:04X}"]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    headers = {"Host": "evil.example", "Accept": "application/json, text/event-stream"}
    refused = httpx.post(http_server, json=body, headers=headers, timeout=10)
    assert refused.status_code in (400, 403, 421)


# -- the documented client configuration ----------------------------------------------------


async def test_the_documented_claude_desktop_config_starts_a_working_server(app: App) -> None:
    doc = (ROOT / "docs" / "mcp-server.md").read_text(encoding="utf-8")
    configs = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", doc, re.DOTALL)]
    stdio_config = next(c["mcpServers"]["codemode"] for c in configs if "command" in c["mcpServers"]["codemode"])
    http_config = next(c["mcpServers"]["codemode"] for c in configs if "url" in c["mcpServers"]["codemode"])
    assert http_config["url"] == "http://127.0.0.1:8765/mcp"
    assert set(stdio_config["env"]) == {"PYTHONPATH", "CODEMODE_DB", "TASKS_DB"}
    # The documented command line, with the placeholders filled in and no working directory set.
    env = dict(app.env(), PYTHONPATH=os.pathsep.join([str(SRC), str(EXAMPLES)]))
    params = StdioServerParameters(command=sys.executable, args=stdio_config["args"], env=env)
    async with Client(params, mode="legacy") as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        paused = data(await client.call_tool("execute", {"code": GATED}))
    assert names == ["describe", "execute", "result", "search"]
    assert paused["console_url"] == "http://127.0.0.1:8000/"
    assert app.codemode_db.exists() and app.tasks_db.exists()


@pytest.mark.parametrize("mode", MODES)
async def test_a_pause_reached_after_a_decision_in_the_console_is_asked_next(
    app: App, example: ModuleType, mode: str
) -> None:
    """The console approves the first action while its question is open; the run pauses again at the
    second, which the client was never asked about: it is asked next, not left open."""
    code = "await tasks.add_task(title='one')\nawait tasks.add_task(title='two')\nreturn 'both'"
    asked: list[str] = []

    async def console_then_client(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        if len(asked) == 1:
            async with app.human(example) as human:
                (action,) = await human.pending()
                assert (await human.approve(action.execution_id, action.seq, by="ann")).status == "paused"
        return ElicitResult(action="accept", content={})

    async with stdio(app, mode=mode, elicit=console_then_client) as client:
        out = data(await client.call_tool("execute", {"code": code}))
    assert (out["status"], out["result"]) == ("completed", "both")
    assert [line.split(" ", 2)[2] for line in app.ledger(out["execution_id"])] == ["one", "two"]
    assert len(asked) == 2 and '"title": "two"' in asked[1]
    async with app.human(example) as human:
        execution = await human.execution(out["execution_id"])
    assert execution is not None
    assert [e.decision.by for e in execution.log if e.decision] == ["ann", "test-desk"]
