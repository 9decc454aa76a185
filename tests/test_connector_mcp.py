"""`McpConnector` against real MCP servers: mcp-server-time and mcp-server-git (PyPI, stdio), the npm
server-everything (stdio), and `tests/mcp_servers/counter.py` (the `mcp` SDK, streamable HTTP and stdio),
through the `mcp` SDK's `ClientSession` (the ready constructors) and through `fastmcp.Client`.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastmcp
import pytest
from mcp.types import CallToolResult, TextContent

import codemode
from codemode import ToolContext, ToolSpec
from codemode.connectors.mcp import (
    EXECUTION_ID_META,
    IDEMPOTENCY_KEY_META,
    McpConnectionError,
    McpConnector,
    McpTool,
    McpToolError,
    unwrap_result,
)

from conftest import RuntimeFactory, child_pids, program

TESTS = Path(__file__).resolve().parent
COUNTER = TESTS / "mcp_servers" / "counter.py"
EVERYTHING = TESTS / "npm" / "node_modules" / ".bin" / "mcp-server-everything"
# Command-line fragments of every stdio server these tests start: none may outlive its test.
STDIO_MARKERS = ("mcp_server_time", "mcp_server_git", "server-everything", "--transport stdio", "stdin.read")


def command_line(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""  # gone, or a zombie about to be reaped


def server_pids(*markers: str) -> list[int]:
    """Live child processes of this test process whose command line contains one of `markers`."""
    return [pid for pid in child_pids() if any(m in command_line(pid) for m in markers)]


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Wait until a killed process is dead (a zombie counts: it no longer runs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} is still running")


async def started(marker: str) -> list[int]:
    """The server processes matching `marker`, once at least one runs."""
    await until(lambda: bool(server_pids(marker)), f"a process matching {marker!r} runs", timeout=30)
    return server_pids(marker)


def _ctx() -> ToolContext:
    return ToolContext(execution_id="test")


@pytest.fixture(autouse=True)
def no_leaked_servers() -> Iterator[None]:
    """Every test must leave no stdio server process behind."""
    yield
    deadline = time.monotonic() + 10
    while server_pids(*STDIO_MARKERS) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_pids(*STDIO_MARKERS) == [], "an MCP server process outlived its test"


@pytest.fixture
async def opened() -> AsyncIterator[list[McpConnector]]:
    """Connectors to close after the test (closing stops their server processes)."""
    made: list[McpConnector] = []
    yield made
    for connector in made:
        await connector.aclose()


# -- the servers --------------------------------------------------------------


def time_server(**options: Any) -> McpConnector:
    return McpConnector.stdio("time", sys.executable, ["-m", "mcp_server_time", "--local-timezone", "UTC"], **options)


class GatedGit(McpConnector):
    """Commits need a human: the `tool()` hook gates one derived tool by its sanitized name."""

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        return dataclasses.replace(spec, requires_approval=True) if name == "git_commit" else spec


def git(*args: str, repo: Path) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit and one untracked file."""
    path = tmp_path / "repo"
    path.mkdir()
    git("init", "-q", "-b", "main", repo=path)
    git("config", "user.name", "Test", repo=path)
    git("config", "user.email", "test@example.com", repo=path)
    (path / "README.md").write_text("hello\n")
    git("add", "README.md", repo=path)
    git("commit", "-q", "-m", "Initial", repo=path)
    (path / "notes.txt").write_text("remember\n")
    return path


def commit_count(repo: Path) -> int:
    return int(git("rev-list", "--count", "HEAD", repo=repo))


@pytest.fixture
def everything() -> Path:
    if not EVERYTHING.exists():
        pytest.fail(f"{EVERYTHING} is missing: run scripts/test once, it installs the npm MCP test servers.")
    return EVERYTHING


@dataclass
class CounterServer:
    """`counter.py` over streamable HTTP in a subprocess; `count()` reads its state file, outside MCP."""

    process: subprocess.Popen[str]
    port: int
    state: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def count(self) -> int:
        return len(self.state.read_text().splitlines()) if self.state.exists() else 0

    def slow_calls(self, event: str) -> int:
        return slow_calls(self.state, event)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        assert self.process.stdout is not None
        self.process.stdout.close()


def slow_calls(state: Path, event: str) -> int:
    """How many `slow` calls the counter server with this state file saw `started` or `cancelled`."""
    notes = state.with_suffix(".slow")
    return notes.read_text().splitlines().count(event) if notes.exists() else 0


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait, without blocking the loop, until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


def start_counter(state: Path, port: int = 0) -> CounterServer:
    log = state.with_suffix(".log").open("a")
    process = subprocess.Popen(
        [sys.executable, str(COUNTER), "--state", str(state), "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    log.close()
    assert process.stdout is not None
    line = process.stdout.readline()  # the server prints its port once its socket listens
    if not line.startswith("PORT "):
        process.kill()
        raise AssertionError(f"counter server did not start: {state.with_suffix('.log').read_text()}")
    return CounterServer(process, int(line.split()[1]), state)


@pytest.fixture(scope="module")
def counter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CounterServer]:
    server = start_counter(tmp_path_factory.mktemp("counter") / "state")
    yield server
    server.stop()


class FastMcpConnector(McpConnector):
    """The fastmcp client as the connection: returned unentered, the connector enters it in its own task."""

    def __init__(self, name: str, url: str, **options: Any) -> None:
        super().__init__(name, **options)
        self.url = url

    def create_connection(self) -> fastmcp.Client[Any]:
        return fastmcp.Client(self.url)


CLIENTS = ["mcp-sdk", "fastmcp"]
COUNTER_TOOLS = [
    *("get_count", "increment", "weather", "json_text", "shout", "split_json"),
    *("picture", "nothing", "fail", "fail_silently", "slow", "request_meta", "busy"),
]


def counter_stdio(state: Path, **options: Any) -> McpConnector:
    """`counter.py` over stdio: a server process of the connector's own, which a test can watch or kill."""
    return McpConnector.stdio(
        "counter", sys.executable, [str(COUNTER), "--transport", "stdio", "--state", str(state)], **options
    )


def counter_connector(client: str, url: str, **options: Any) -> McpConnector:
    if client == "fastmcp":
        return FastMcpConnector("counter", url, **options)
    return McpConnector.http("counter", url, **options)


# -- describing ---------------------------------------------------------------


async def test_time_server_tools_are_derived(opened: list[McpConnector]) -> None:
    connector = time_server()
    opened.append(connector)
    description = await connector.describe()
    assert list(description.tools) == ["get_current_time", "convert_time"]
    current = description.tools["get_current_time"]
    assert current.description.startswith("Get current time")
    assert current.input_schema["required"] == ["timezone"]
    assert current.output_schema is not None and "datetime" in current.output_schema["properties"]
    assert current.requires_approval is False
    assert connector.mcp_tools["get_current_time"].read_only is True
    result = await connector.call_mcp_tool("get_current_time", {"timezone": "Europe/Oslo"})
    assert result["timezone"] == "Europe/Oslo" and result["datetime"].endswith(("+01:00", "+02:00"))


@pytest.mark.parametrize("client", CLIENTS)
async def test_names_hook_and_instructions(client: str, counter: CounterServer, opened: list[McpConnector]) -> None:
    seen: list[str] = []

    def record(name: str, spec: ToolSpec) -> ToolSpec:
        seen.append(name)
        return spec

    class RecordingSdk(McpConnector):
        tool = staticmethod(record)  # type: ignore[assignment]

    class RecordingFast(FastMcpConnector):
        tool = staticmethod(record)  # type: ignore[assignment]

    connector: McpConnector
    if client == "fastmcp":
        connector = RecordingFast("counter", counter.url, instructions="Read before you write.")
    else:
        connector = RecordingSdk.http("counter", counter.url, instructions="Read before you write.")
        assert type(connector) is RecordingSdk  # the ready constructor built the subclass
    opened.append(connector)
    description = await connector.describe()
    # Every page of the listing (the server sends 4 tools a page), under sanitized names.
    assert sorted(description.tools) == sorted(COUNTER_TOOLS)
    assert seen == list(description.tools)  # the hook got every sanitized name
    assert connector.mcp_tools["get_count"].name == "get-count"
    assert description.instructions == (
        "Counts increments; every increment is written to disk.\n\nRead before you write."
    )
    assert await connector.execute_tool("get_count", {}, _ctx()) == {"result": counter.count()}


async def test_instructions_of_one_side_only(counter: CounterServer, opened: list[McpConnector]) -> None:
    server_only = McpConnector.http("counter", counter.url)
    own_only = time_server(instructions="Times are UTC.")
    opened += [server_only, own_only]
    assert (await server_only.describe()).instructions == "Counts increments; every increment is written to disk."
    assert (await own_only.describe()).instructions == "Times are UTC."  # mcp-server-time sends none

    class Documented(McpConnector):
        instructions = "Class-level guidance."

    documented = Documented.http("counter", counter.url)
    opened.append(documented)
    assert (await documented.describe()).instructions == (
        "Counts increments; every increment is written to disk.\n\nClass-level guidance."
    )


async def test_colliding_names_are_refused(tmp_path: Path, opened: list[McpConnector]) -> None:
    args = [str(COUNTER), "--transport", "stdio", "--collide", "--state", str(tmp_path / "state")]
    dup = McpConnector.stdio("dup", sys.executable, args)
    opened.append(dup)
    with pytest.raises(ValueError) as raised:
        await dup.describe()
    assert str(raised.value) == (
        'MCP tools "foo-bar" and "foo_bar" on dup both map to "foo_bar". Override tool_name() to disambiguate.'
    )

    class Renamed(McpConnector):
        def tool_name(self, tool: McpTool) -> str:
            return "foo_dash" if tool.name == "foo-bar" else super().tool_name(tool)

    renamed = Renamed.stdio("dup", sys.executable, args)
    opened.append(renamed)
    description = await renamed.describe()
    assert {"foo_dash", "foo_bar"} <= set(description.tools)
    assert await renamed.execute_tool("foo_dash", {}, _ctx()) == {"result": "dash"}
    assert await renamed.execute_tool("foo_bar", {}, _ctx()) == {"result": "underscore"}


async def test_search_and_describe_find_mcp_tools(
    make_runtime: RuntimeFactory, repo: Path, opened: list[McpConnector]
) -> None:
    time_connector = time_server()
    git_connector = McpConnector.stdio("git", sys.executable, ["-m", "mcp_server_git", "--repository", str(repo)])
    opened += [time_connector, git_connector]
    runtime = make_runtime(time_connector, git_connector)
    found = await runtime.search("convert time between timezones")
    assert found.results[0].path == "time.convert_time"
    assert "git.git_commit" in [r.path for r in (await runtime.search("commit changes")).results]
    described = await runtime.describe("git.git_commit")
    assert (
        described.kind == "method"
        and "async def git_commit(" in described.types
        and "repo_path: str" in described.types
    )
    outcome = await runtime.execute('return (await codemode.search("current time"))["results"][0]["path"]')
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "time.get_current_time"


# -- end to end ---------------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_two_servers_one_run_pauses_at_the_gated_commit(
    language: str, make_runtime: RuntimeFactory, repo: Path, opened: list[McpConnector]
) -> None:
    time_connector = time_server()
    git_connector = GatedGit.stdio("git", sys.executable, ["-m", "mcp_server_git", "--repository", str(repo)])
    opened += [time_connector, git_connector]
    runtime = make_runtime(time_connector, git_connector)
    code = program(
        language,
        f"""
now = await time.get_current_time(timezone="UTC")
status = await git.git_status(repo_path={str(repo)!r})
await git.git_add(repo_path={str(repo)!r}, files=["notes.txt"])
commit = await git.git_commit(repo_path={str(repo)!r}, message="Add notes")
return {{"timezone": now["timezone"], "untracked": "notes.txt" in status, "commit": commit}}
""",
        f"""
const now = await time.get_current_time({{ timezone: "UTC" }});
const status = await git.git_status({{ repo_path: {str(repo)!r} }});
await git.git_add({{ repo_path: {str(repo)!r}, files: ["notes.txt"] }});
const commit = await git.git_commit({{ repo_path: {str(repo)!r}, message: "Add notes" }});
return {{ timezone: now.timezone, untracked: status.includes("notes.txt"), commit }};
""",
    )
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [(p.connector, p.method, p.args) for p in paused.pending] == [
        ("git", "git_commit", {"repo_path": str(repo), "message": "Add notes"})
    ]
    assert [(c.connector, c.method, c.state) for c in paused.calls] == [
        ("time", "get_current_time", "applied"),
        ("git", "git_status", "applied"),
        ("git", "git_add", "applied"),
        ("git", "git_commit", "pending"),
    ]
    assert commit_count(repo) == 1  # nothing committed before the approval

    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result["timezone"] == "UTC" and done.result["untracked"] is True
    assert done.result["commit"].startswith("Changes committed successfully")
    assert commit_count(repo) == 2  # the approved commit ran exactly once
    assert git("log", "-1", "--format=%s", repo=repo).strip() == "Add notes"
    assert git("status", "--porcelain", repo=repo) == ""


async def test_approve_writes_gates_every_tool_not_read_only(
    counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = McpConnector.http("counter", counter.url, approve_writes=True)
    opened.append(connector)
    gated = [name for name, spec in (await connector.describe()).tools.items() if spec.requires_approval]
    assert gated == ["increment"]  # the only tool without readOnlyHint: true
    runtime = make_runtime(connector)
    before = counter.count()
    paused = await runtime.execute(
        """
first = await counter.get_count()
after = await counter.increment(by=5)
return [first["result"], after["result"]]
"""
    )
    assert paused.status == "paused", paused.error
    assert [(p.method, p.args) for p in paused.pending] == [("increment", {"by": 5})]
    assert counter.count() == before
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [before, before + 1]
    assert counter.count() == before + 1  # exactly once, counted on the server's side
    assert (await runtime.approve(paused.execution_id, paused.pending[0].seq)).status == "error"  # no second run
    assert counter.count() == before + 1


# -- results ------------------------------------------------------------------

UNWRAP_PROGRAM = """
out = {}
out["structured"] = await counter.weather(city="Oslo")
out["json_text"] = await counter.json_text(value=[1, {"a": None}])
out["text"] = await counter.shout(text="hi")
out["joined"] = await counter.split_json()
out["mixed"] = await counter.picture()
out["empty"] = await counter.nothing()
try:
    await counter.fail(reason="the disk is full")
except Exception as e:
    out["error"] = str(e)
try:
    await counter.fail_silently()
except Exception as e:
    out["silent"] = str(e)
return out
"""


@pytest.mark.parametrize("client", CLIENTS)
async def test_every_unwrap_rule_reaches_the_program_and_the_log(
    client: str, counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = counter_connector(client, counter.url)
    opened.append(connector)
    runtime = make_runtime(connector)
    outcome = await runtime.execute(UNWRAP_PROGRAM)
    assert outcome.status == "completed", outcome.error
    out = outcome.result
    assert out["structured"] == {"city": "Oslo", "celsius": 21}  # structuredContent
    assert out["json_text"] == [1, {"a": None}]  # all-text content that is JSON
    assert out["text"] == "HI!"  # all-text content that is not JSON
    assert out["joined"] == {"parts": 2}  # text parts joined with a newline, then parsed
    image = next(part for part in out["mixed"]["content"] if part["type"] == "image")
    assert out["mixed"]["content"][0] == {"type": "text", "text": "a pixel"}
    assert image["mimeType"] == "image/png" and base64.b64decode(image["data"]).startswith(b"\x89PNG")
    assert out["empty"]["content"] == []
    assert "isError" not in out["mixed"] and "resultType" not in out["mixed"]
    assert out["error"] == "Error executing tool fail: the disk is full"  # isError: the text parts
    assert out["silent"] == ("Tool call failed" if client == "mcp-sdk" else "Tool 'fail_silently' returned an error")
    logged = {c.method: c for c in outcome.calls}
    assert logged["picture"].result == out["mixed"]  # the codec recorded the whole result
    assert (logged["fail"].state, logged["fail"].result) == ("error", {"error": out["error"], "kind": "RuntimeError"})


async def test_an_uncaught_is_error_ends_the_run_with_its_text(
    counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = McpConnector.http("counter", counter.url)
    opened.append(connector)
    outcome = await make_runtime(connector).execute('await counter.fail(reason="quota exceeded")')
    assert outcome.status == "error"
    assert "Error executing tool fail: quota exceeded" in (outcome.error or "")


def test_text_that_is_not_strict_json_stays_text() -> None:
    # A pure function on the SDK's own result type: `NaN` and `Infinity` parse in Python but not as JSON.
    def text(value: str) -> CallToolResult:
        return CallToolResult(content=[TextContent(text=value)])

    assert unwrap_result(text("NaN")) == "NaN"
    assert unwrap_result(text("[1, -Infinity]")) == "[1, -Infinity]"
    assert unwrap_result(text("[1, 2.5, null]")) == [1, 2.5, None]


async def test_everything_server_results(
    everything: Path, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = McpConnector.stdio("everything", str(everything), instructions="Use echo to test.")
    opened.append(connector)
    description = await connector.describe()
    assert {"echo", "get_sum", "get_tiny_image", "get_structured_content"} <= set(description.tools)
    assert connector.mcp_tools["get_sum"].name == "get-sum"
    instructions = description.instructions or ""
    assert instructions.startswith("# Everything Server") and instructions.endswith("\n\nUse echo to test.")
    outcome = await make_runtime(connector).execute(
        """
return {
    "echo": await everything.echo(message="hi"),
    "sum": await everything.get_sum(a=2, b=3),
    "weather": await everything.get_structured_content(location="Chicago"),
    "image": await everything.get_tiny_image(),
}
"""
    )
    assert outcome.status == "completed", outcome.error
    result = outcome.result
    assert result["echo"] == "Echo: hi"
    assert result["sum"] == "The sum of 2 and 3 is 5."
    assert set(result["weather"]) == {"temperature", "conditions", "humidity"}
    images = [part for part in result["image"]["content"] if part["type"] == "image"]
    assert len(images) == 1 and base64.b64decode(images[0]["data"]).startswith(b"\x89PNG")
    assert outcome.calls[3].result == result["image"]


async def test_a_legacy_tool_result_is_returned_as_is(make_runtime: RuntimeFactory) -> None:
    # Not a real server: the installed MCP SDKs drop the pre-2025 `toolResult` field while parsing, so this
    # shape can only reach the connector from a hand-written client that returns wire-format dicts.
    class WireConnection:
        instructions = "Old server."

        async def list_tools(self) -> Mapping[str, Any]:
            return {"tools": [{"name": "old-style", "inputSchema": {"type": "object", "properties": {}}}]}

        async def call_tool(self, name: str, arguments: dict[str, Any]) -> Mapping[str, Any]:
            return {"toolResult": {"called": name, "with": arguments}}

    class Legacy(McpConnector):
        def create_connection(self) -> WireConnection:
            return WireConnection()

    connector = Legacy("legacy")
    description = await connector.describe()
    assert list(description.tools) == ["old_style"] and description.instructions == "Old server."
    outcome = await make_runtime(connector).execute("return await legacy.old_style()")
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"called": "old-style", "with": {}}


# -- idempotency keys ---------------------------------------------------------


@pytest.mark.parametrize("client", ["stdio", *CLIENTS])
async def test_the_server_gets_each_calls_idempotency_key_in_meta(
    client: str, counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector], tmp_path: Path
) -> None:
    connector = counter_stdio(tmp_path / "state") if client == "stdio" else counter_connector(client, counter.url)
    opened.append(connector)
    outcome = await make_runtime(connector).execute(
        "return [await counter.request_meta(), await counter.get_count(), await counter.request_meta()]"
    )
    assert outcome.status == "completed", outcome.error
    first, _, last = outcome.result
    assert [c.seq for c in outcome.calls] == [0, 1, 2]
    assert IDEMPOTENCY_KEY_META == "codemode/idempotency_key" and EXECUTION_ID_META == "codemode/execution_id"
    assert first["codemode/idempotency_key"] == f"{outcome.execution_id}:0"
    assert last["codemode/idempotency_key"] == f"{outcome.execution_id}:2"
    assert first["codemode/execution_id"] == last["codemode/execution_id"] == outcome.execution_id
    # Outside a run there is no key to send: only what the context has.
    alone = await connector.execute_tool("request_meta", {}, _ctx())
    assert alone["codemode/execution_id"] == "test" and "codemode/idempotency_key" not in alone


# -- failures -----------------------------------------------------------------


async def test_a_hanging_tool_times_out_and_the_connection_stays(
    counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = McpConnector.http("counter", counter.url, call_timeout=1)
    opened.append(connector)
    runtime = make_runtime(connector)
    started = time.monotonic()
    outcome = await runtime.execute(
        """
try:
    await counter.slow(seconds=60)
    caught = None
except TimeoutError as e:
    caught = str(e)
return {"caught": caught, "count": (await counter.get_count())["result"]}
"""
    )
    elapsed = time.monotonic() - started
    assert outcome.status == "completed", outcome.error
    assert outcome.result["caught"].startswith('MCP server "counter" did not answer slow within 1 s')
    assert "Retry later" in outcome.result["caught"]
    assert outcome.result["count"] == counter.count()  # the next call on the same connection worked
    assert elapsed < 8


async def test_a_killed_stdio_server_gives_a_clear_error_then_restarts(
    make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = time_server()
    opened.append(connector)
    runtime = make_runtime(connector)
    code = 'return (await time.get_current_time(timezone="UTC"))["timezone"]'
    assert (await runtime.execute(code)).result == "UTC"
    [pid] = server_pids("mcp_server_time")
    os.kill(pid, signal.SIGKILL)
    wait_gone(pid)
    failed = await runtime.execute(code)
    assert failed.status == "error"
    assert 'The connection to MCP server "time" was lost during get_current_time' in (failed.error or "")
    assert "It is started again on the next call" in (failed.error or "")
    again = await runtime.execute(code)
    assert again.status == "completed", again.error
    assert again.result == "UTC"
    [restarted] = server_pids("mcp_server_time")
    assert restarted != pid


async def test_a_server_error_answer_is_not_a_lost_connection(tmp_path: Path, opened: list[McpConnector]) -> None:
    connector = counter_stdio(tmp_path / "state")
    opened.append(connector)
    await connector.describe()
    [pid] = server_pids("--transport stdio")
    # -32000 is also the code the SDKs give a closed connection; here the server itself answered with it.
    with pytest.raises(McpToolError) as raised:
        await connector.execute_tool("busy", {}, _ctx())
    assert str(raised.value) == "MCP error -32000: The server is busy: try again in a minute."
    assert await connector.execute_tool("get_count", {}, _ctx()) == {"result": 0}
    assert server_pids("--transport stdio") == [pid]  # the same server process: nothing was restarted


async def test_calls_in_flight_fail_when_the_server_dies_and_one_restart_serves_the_next(
    tmp_path: Path, opened: list[McpConnector]
) -> None:
    connector = counter_stdio(tmp_path / "state")
    opened.append(connector)
    await connector.describe()
    [pid] = server_pids("--transport stdio")
    calls = [asyncio.ensure_future(connector.call_mcp_tool("slow", {"seconds": 60})) for _ in range(2)]
    await until(lambda: slow_calls(tmp_path / "state", "started") == 2, "the server runs both calls")
    os.kill(pid, signal.SIGKILL)
    failures = await asyncio.gather(*calls, return_exceptions=True)
    for failure in failures:
        assert isinstance(failure, McpConnectionError), failure
        assert 'The connection to MCP server "counter" was lost during slow' in str(failure)
    again = await asyncio.gather(*(connector.call_mcp_tool("get-count", {}) for _ in range(3)))
    assert again == [{"result": 0}] * 3
    [restarted] = server_pids("--transport stdio")  # one new server for the three calls
    assert restarted != pid


async def test_a_program_stopped_at_its_time_limit_cancels_its_mcp_call(
    counter: CounterServer, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = McpConnector.http("counter", counter.url)
    opened.append(connector)
    executor = codemode.MontyExecutor(timeout=2)
    try:
        runtime = make_runtime(connector, executor=executor)
        await connector.describe()
        before = counter.slow_calls("cancelled")
        outcome = await runtime.execute("return await counter.slow(seconds=60)")
        assert outcome.status == "error" and "timed out" in (outcome.error or ""), outcome.error
        # The server was told to stop, and stopped.
        await until(lambda: counter.slow_calls("cancelled") == before + 1, "the server saw the call cancelled")
        assert await connector.execute_tool("get_count", {}, _ctx()) == {"result": counter.count()}
    finally:
        await executor.aclose()


async def test_a_restarted_http_server_is_reconnected(tmp_path: Path, opened: list[McpConnector]) -> None:
    server = start_counter(tmp_path / "state")
    try:
        connector = McpConnector.http("counter", server.url)
        opened.append(connector)
        assert await connector.execute_tool("increment", {}, _ctx()) == {"result": 1}
        server.stop()
        with pytest.raises(ConnectionError, match='The connection to MCP server "counter" was lost during increment'):
            await connector.execute_tool("increment", {}, _ctx())
        server = start_counter(tmp_path / "state", port=server.port)
        assert await connector.execute_tool("increment", {}, _ctx()) == {"result": 2}
    finally:
        server.stop()


async def test_a_server_that_cannot_start_gives_an_error_outcome(make_runtime: RuntimeFactory, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-repo"
    broken = McpConnector.stdio("git", sys.executable, ["-m", "mcp_server_git", "--repository", str(missing)])
    runtime = make_runtime(broken)
    outcome = await runtime.execute('return await git.git_status(repo_path=".")')
    assert outcome.status == "error"
    error = outcome.error or ""
    assert error.startswith(
        'OSError: git.git_status did not run. Connector "git" is unavailable: McpConnectionError: Could not connect '
        'to MCP server "git"'
    )
    assert f"{missing} does not exist" in error  # quoted from the server's stderr
    assert [(c.method, c.state) for c in outcome.calls] == [("git_status", "error")]

    absent = McpConnector.stdio("absent", str(tmp_path / "no-such-command"))
    outcome = await make_runtime(absent).execute("return await absent.anything()")
    assert "FileNotFoundError" in (outcome.error or "")


async def test_a_server_that_never_answers_times_out_on_connect(make_runtime: RuntimeFactory) -> None:
    # Reads its stdin and never answers the handshake.
    mute = McpConnector.stdio("mute", sys.executable, ["-c", "import sys; sys.stdin.read()"], connect_timeout=1)
    started = time.monotonic()
    outcome = await make_runtime(mute).execute("return await mute.anything()")
    assert 'Could not connect to MCP server "mute"' in (outcome.error or "")
    assert "no answer within 1 s" in (outcome.error or "")
    assert time.monotonic() - started < 10  # and the autouse check proves the process was stopped


async def test_a_connector_without_a_connection_says_what_to_do(make_runtime: RuntimeFactory) -> None:
    # A developer's mistake, not an outage: it is raised to the developer, not reported to the model.
    with pytest.raises(NotImplementedError, match=r"override create_connection\(\), or build it with McpConnector"):
        await make_runtime(McpConnector("bare")).execute("return 1")


async def test_aclose_stops_every_server_process(
    everything: Path, repo: Path, make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connectors = [
        time_server(),
        McpConnector.stdio("git", sys.executable, ["-m", "mcp_server_git", "--repository", str(repo)]),
        McpConnector.stdio("everything", str(everything)),
    ]
    opened += connectors
    runtime = make_runtime(*connectors)
    outcome = await runtime.execute('return await time.get_current_time(timezone="UTC")')
    assert outcome.status == "completed", outcome.error
    assert len(server_pids(*STDIO_MARKERS)) == 3
    await runtime.aclose()
    assert server_pids(*STDIO_MARKERS) == []
    await runtime.aclose()  # idempotent


async def test_concurrent_first_calls_open_one_connection(tmp_path: Path, opened: list[McpConnector]) -> None:
    connector = counter_stdio(tmp_path / "state")
    opened.append(connector)
    described, *counts = await asyncio.gather(
        connector.describe(), *(connector.call_mcp_tool("increment", {}) for _ in range(4))
    )
    assert "increment" in described.tools
    assert all(count["result"] >= 1 for count in counts)
    assert len((tmp_path / "state").read_text().splitlines()) == 4  # every increment ran once on the server
    assert len(server_pids("--transport stdio")) == 1


async def test_aclose_while_connecting_stops_the_server_at_once() -> None:
    mute = McpConnector.stdio("mute", sys.executable, ["-c", "import sys; sys.stdin.read()"], connect_timeout=60)
    describing = asyncio.ensure_future(mute.describe())
    await started("stdin.read")
    began = time.monotonic()
    await mute.aclose()
    assert server_pids("stdin.read") == []  # stopped by aclose, not left running until the connect timeout
    with pytest.raises(McpConnectionError, match=r'^MCP connector "mute" was closed while connecting'):
        await describing
    assert time.monotonic() - began < 20


async def test_a_call_in_flight_during_aclose_is_reported_as_closed(tmp_path: Path) -> None:
    connector = counter_stdio(tmp_path / "state", call_timeout=30)
    await connector.describe()
    call = asyncio.ensure_future(connector.call_mcp_tool("slow", {"seconds": 60}))
    await until(lambda: slow_calls(tmp_path / "state", "started") == 1, "the server runs the call")
    await connector.aclose()
    with pytest.raises(McpConnectionError) as raised:
        await call
    assert str(raised.value) == (
        'MCP connector "counter" was closed while slow was running, so its result is unknown: it may or may not '
        "have completed on the server. Tell the user before doing it again."
    )
    assert server_pids("--transport stdio") == []


def test_a_connector_outlives_the_event_loop_it_connected_on() -> None:
    connector = time_server()

    async def timezone() -> str:
        return str((await connector.execute_tool("get_current_time", {"timezone": "UTC"}, _ctx()))["timezone"])

    assert asyncio.run(timezone()) == "UTC"
    assert server_pids("mcp_server_time") == []  # asyncio.run cancelled the connection's task: the server exited

    async def again() -> str:
        try:
            return await timezone()
        finally:
            await connector.aclose()

    assert asyncio.run(again()) == "UTC"  # a new loop, a new connection


async def test_the_blocking_twin_and_the_async_runtime_share_a_connector(
    make_runtime: RuntimeFactory, opened: list[McpConnector]
) -> None:
    connector = time_server()
    opened.append(connector)
    runtime = make_runtime(connector)
    code = 'return (await time.get_current_time(timezone="UTC"))["timezone"]'
    assert (await runtime.execute(code)).result == "UTC"
    # `runtime.sync` runs on a loop of its own, in its own thread: the connector opens a connection there too.
    outcome = await asyncio.to_thread(runtime.sync.execute, code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "UTC"
    assert len(server_pids("mcp_server_time")) == 2  # one connection per event loop
    assert (await runtime.execute(code)).result == "UTC"  # the first loop's connection still serves it
    await asyncio.to_thread(runtime.sync.close)  # closes every connection, the one of this loop included
    await until(lambda: not server_pids("mcp_server_time"), "both time servers exited")


def test_the_example_runs() -> None:
    done = subprocess.run(
        [sys.executable, str(TESTS.parent / "examples" / "mcp_connector.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "async def get_current_time(*, timezone: str)" in done.stdout
    assert "completed: {'paris': " in done.stdout
    assert "seq 1: time.convert_time(" in done.stdout
