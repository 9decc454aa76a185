"""Connector faults and the runtime's host API, on real parts: real MCP servers (`tests/mcp_servers/counter.py`
over stdio, started and stopped by the test), a real HTTP server on 127.0.0.1 (`openapi_server`), real SQLite
files, real Monty and Deno sandboxes, and real subprocesses for missing optional dependencies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import codemode
import codemode.runtime.runtime as runtime_module
from codemode import Connector, ExecutionNotFoundError, McpConnector, Runtime, SyncRuntime, ToolSpec, tool
from openapi_server import Reply, ValidatingServer

from conftest import RuntimeFactory, child_pids, new_executor, program

TESTS = Path(__file__).resolve().parent
COUNTER = TESTS / "mcp_servers" / "counter.py"
SRC = TESTS.parent / "src"

# A stdio MCP server that is up only while its flag file exists: otherwise it exits at once, as a server
# whose backend is down does. When up it is the real counter server.
SWITCHED = """
import os, runpy, sys
flag = sys.argv.pop(1)
if not os.path.exists(flag):
    sys.exit("the counter backend is down")
sys.argv[0] = {counter!r}
runpy.run_path({counter!r}, run_name="__main__")
"""


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Notes(Connector):
    """A healthy connector beside the broken one; `write` needs approval."""

    name = "notes"

    def __init__(self) -> None:
        self.written: list[str] = []

    @tool
    def read(self) -> list[str]:
        """Every note."""
        return list(self.written)

    @tool(requires_approval=True)
    def write(self, text: str) -> int:
        """Add a note."""
        self.written.append(text)
        return len(self.written)


class Switch:
    """The flag that keeps the switched server up."""

    def __init__(self, tmp_path: Path) -> None:
        self.flag = tmp_path / "up"
        self.state = tmp_path / "state"
        self.script = tmp_path / "switched.py"
        self.script.write_text(SWITCHED.format(counter=str(COUNTER)))

    def up(self) -> None:
        self.flag.touch()

    def down(self) -> None:
        self.flag.unlink(missing_ok=True)

    def connector(self, **options: Any) -> McpConnector:
        args = [str(self.script), str(self.flag), "--transport", "stdio", "--state", str(self.state)]
        return McpConnector.stdio("counter", sys.executable, args, **options)

    def increments(self) -> int:
        return len(self.state.read_text().splitlines()) if self.state.exists() else 0


def servers() -> list[int]:
    """Live child processes running the switched server."""
    found = []
    for pid in child_pids():
        try:
            cmdline = (Path("/proc") / str(pid) / "cmdline").read_bytes()
        except OSError:
            continue
        if any(marker in cmdline for marker in (b"switched.py", b"faulty.py", b"stdin.read()")):
            found.append(pid)
    return found


@pytest.fixture
def switch(tmp_path: Path) -> Iterator[Switch]:
    made = Switch(tmp_path)
    yield made
    deadline = time.monotonic() + 10
    while servers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert servers() == [], "an MCP server process outlived its test"


@pytest.fixture
async def closing() -> AsyncIterator[list[Runtime]]:
    """Runtimes whose connectors (and server processes) are closed after the test."""
    made: list[Runtime] = []
    yield made
    for runtime in made:
        for connector in runtime.connectors:
            await connector.aclose()


# -- 1. a connector that cannot start blocks nothing else ----------------------------------------------


async def test_a_dead_server_blocks_no_program_that_does_not_use_it(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], language: str
) -> None:
    runtime = make_runtime(switch.connector(), Notes())
    closing.append(runtime)
    simple = await runtime.execute(program(language, "return 1 + 1", "return 1 + 1"))
    assert simple.status == "completed" and simple.result == 2, simple.error
    notes = await runtime.execute(program(language, "return await notes.read()", "return await notes.read()"))
    assert notes.status == "completed" and notes.result == [], notes.error


async def test_a_call_on_a_dead_server_raises_a_catchable_error_naming_it(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], language: str
) -> None:
    runtime = make_runtime(switch.connector(), Notes())
    closing.append(runtime)
    caught = await runtime.execute(
        program(
            language,
            "try:\n    await counter.get_count()\nexcept OSError as e:\n    return ['OSError', str(e)]",
            "try { await counter.get_count(); } catch (e) { return [e.name, e.message]; }",
        )
    )
    assert caught.status == "completed", caught.error
    kind, message = caught.result
    assert kind == "OSError"
    assert message.startswith('counter.get_count did not run. Connector "counter" is unavailable')
    assert 'Could not connect to MCP server "counter"' in message
    assert "the counter backend is down" in message  # the cause, quoted from the server's stderr
    assert "try again in a later run" in message
    # The failed call is a recorded fact: its seq keeps the log in program order.
    assert [(c.seq, c.connector, c.method, c.state) for c in caught.calls] == [(0, "counter", "get_count", "error")]
    uncaught = await runtime.execute(
        program(language, "return await counter.increment(by=2)", "return await counter.increment({ by: 2 });")
    )
    assert uncaught.status == "error" and 'Connector "counter" is unavailable' in (uncaught.error or "")
    assert switch.increments() == 0


async def test_discovery_works_for_the_healthy_and_names_the_unavailable(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], language: str
) -> None:
    runtime = make_runtime(switch.connector(), Notes())
    closing.append(runtime)
    found = await runtime.search("add a note")
    assert found.results[0].path == "notes.write"
    assert list(found.unavailable) == ["counter"] and "the counter backend is down" in found.unavailable["counter"]
    described = await runtime.describe("counter.get_count")
    assert described.kind == "connector" and 'Connector "counter" is unavailable' in described.types
    assert "write" in (await runtime.describe("notes")).types
    inside = await runtime.execute(
        program(
            language,
            'return [await codemode.search("add a note"), await codemode.describe("counter")]',
            'return [await codemode.search("add a note"), await codemode.describe("counter")];',
        )
    )
    assert inside.status == "completed", inside.error
    searched, desc = inside.result
    assert searched["results"][0]["path"] == "notes.write" and "counter" in searched["unavailable"]
    assert 'Connector "counter" is unavailable' in desc["types"]
    # All healthy: the search output keeps its usual shape for the sandbox.
    assert "unavailable" not in (await make_runtime(Notes()).search("note")).to_dict()


async def test_a_later_run_retries_the_setup(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], language: str
) -> None:
    runtime = make_runtime(switch.connector(), Notes())
    closing.append(runtime)
    code = program(language, "return await counter.increment(by=1)", "return await counter.increment({ by: 1 });")
    down = await runtime.execute(code)
    assert down.status == "error" and "unavailable" in (down.error or "")
    switch.up()
    up = await runtime.execute(code)
    assert up.status == "completed" and up.result == {"result": 1}, up.error
    assert "unavailable" not in (await runtime.search("count")).to_dict()
    assert switch.increments() == 1


async def test_the_search_index_is_built_once_per_connector_set(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], language: str
) -> None:
    runtime = make_runtime(switch.connector(), Notes())
    closing.append(runtime)
    search = program(
        language, 'return await codemode.search("increment")', 'return await codemode.search("increment");'
    )
    first = await runtime.execute(search)
    assert first.status == "completed" and first.result["results"] == [], first.error
    down = await runtime.setup()
    index = down.search_index
    assert index is not None
    again = await runtime.execute(search)  # the counter is still down: the same connector set, the same index
    assert again.status == "completed", again.error
    assert (await runtime.setup()).search_index is index
    switch.up()
    up = await runtime.execute(search)  # the counter is back: a new set, a new index that holds its tools
    assert up.status == "completed", up.error
    assert up.result["results"][0]["path"] == "counter.increment"
    renewed = (await runtime.setup()).search_index
    assert renewed is not None and renewed is not index
    assert (await runtime.search("increment")).results[0].path == "counter.increment"
    assert (await runtime.setup()).search_index is renewed


async def test_concurrent_first_searches_share_one_index_built_off_the_event_loop(
    make_runtime: RuntimeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large catalog's index takes a good part of a second to build: it is built once, on a worker
    thread, while the event loop goes on serving other runs."""
    from codemode.runtime import catalog

    builds: list[int] = []
    real = catalog.connector_index

    def counted(descriptions: Any) -> Any:
        builds.append(threading.get_ident())
        return real(descriptions)

    monkeypatch.setattr(catalog, "connector_index", counted)
    runtime = make_runtime(Notes())
    found = await asyncio.gather(*(runtime.search("note") for _ in range(8)))
    assert len(builds) == 1 and builds[0] != threading.get_ident()
    assert all(f.to_dict() == found[0].to_dict() for f in found) and found[0].results
    assert (await runtime.setup()).search_index is not None
    await runtime.search("add")
    assert len(builds) == 1


async def test_a_hanging_server_delays_only_the_first_setup(
    make_runtime: RuntimeFactory, switch: Switch, closing: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that never answers its handshake costs the first run its connect timeout; later runs wait a
    bounded time for the retry (the `UNAVAILABLE_RETRY_WAIT` setting, shortened here) and go on."""
    monkeypatch.setattr(runtime_module, "UNAVAILABLE_RETRY_WAIT", 0.5)
    mute = McpConnector.stdio("mute", sys.executable, ["-c", "import sys; sys.stdin.read()"], connect_timeout=3)
    runtime = make_runtime(mute, Notes())
    closing.append(runtime)
    first = await runtime.execute("return 1 + 1")
    assert first.status == "completed" and first.result == 2, first.error
    started = time.monotonic()
    second = await runtime.execute("return await notes.read()")
    assert second.status == "completed" and second.result == [], second.error
    assert time.monotonic() - started < 2.5  # not the 3 s connect timeout of the retry still running
    found = await runtime.search("note")
    assert "no answer within 3 s" in found.unavailable["mute"]


async def test_an_approval_needing_a_down_connector_is_refused_and_kept(
    db_path: Path, switch: Switch, closing: list[Runtime], language: str
) -> None:
    """A paused run resumed on a host where the connector of its approved action is down: nothing is
    consumed, the run stays paused, and the same approval works once the server is back."""
    switch.up()
    gated = program(language, "return await counter.increment(by=5)", "return await counter.increment({ by: 5 });")
    first = Runtime([switch.connector(approve_writes=True)], new_executor(language), codemode.SqliteStore(db_path))
    closing.append(first)
    paused = await first.execute(gated)
    assert paused.status == "paused", paused.error
    [action] = paused.pending
    await first.aclose()
    switch.down()
    # Another host (a restart) whose server is down now.
    second = Runtime([switch.connector(approve_writes=True)], new_executor(language), codemode.SqliteStore(db_path))
    closing.append(second)
    try:
        refused = await second.approve(paused.execution_id, action.seq, by="ann")
        assert refused.status == "error"
        assert f'Cannot approve execution "{paused.execution_id}" now: step 0 (counter.increment)' in (
            refused.error or ""
        )
        assert "the counter backend is down" in (refused.error or "") and "approve again" in (refused.error or "")
        execution = await second.execution(paused.execution_id)
        assert execution is not None and execution.status == "paused"
        assert execution.log[0].state == "pending" and execution.log[0].decision is None  # not consumed
        assert [p.seq for p in await second.pending(paused.execution_id)] == [action.seq]
        assert switch.increments() == 0
        switch.up()
        approved = await second.approve(paused.execution_id, action.seq, by="ann")
        assert approved.status == "completed" and approved.result == {"result": 1}, approved.error
        assert switch.increments() == 1
    finally:
        await second.aclose()


async def test_a_rejection_that_would_resume_into_a_down_connector_is_refused(
    db_path: Path, switch: Switch, closing: list[Runtime], language: str
) -> None:
    """Batch pause: the counter call was approved; rejecting the other would resume and run it, so while
    the counter is down the rejection is refused and nothing is recorded."""
    switch.up()
    code = program(
        language,
        "import asyncio\ntry:\n    return await asyncio.gather(counter.increment(by=1), notes.write(text='x'))\n"
        "except PermissionError as e:\n    return str(e)",
        "try { return await Promise.all([counter.increment({ by: 1 }), notes.write({ text: 'x' })]); }\n"
        "catch (e) { return e.message; }",
    )

    def host() -> Runtime:
        connectors = [switch.connector(approve_writes=True), Notes()]
        return Runtime(connectors, new_executor(language), codemode.SqliteStore(db_path))

    first = host()
    closing.append(first)
    paused = await first.execute(code)
    assert [(p.seq, p.method) for p in paused.pending] == [(0, "increment"), (1, "write")], paused.error
    waiting = await first.approve(paused.execution_id, 0, by="ann")
    assert waiting.status == "paused" and [p.seq for p in waiting.pending] == [1]
    await first.aclose()
    switch.down()
    second = host()
    closing.append(second)
    try:
        with pytest.raises(RuntimeError, match=r'Cannot reject execution ".*" now: step 0 \(counter.increment\)'):
            await second.reject(paused.execution_id, 1, by="bob", resume=True)
        execution = await second.execution(paused.execution_id)
        assert execution is not None and execution.status == "paused" and execution.log[1].decision is None
        switch.up()
        assert await second.reject(paused.execution_id, 1, by="bob", resume=True) is True
        done = await second.execution(paused.execution_id)
        assert done is not None and done.status == "completed"
        assert done.result == "Action notes.write rejected by bob"
        assert switch.increments() == 1
    finally:
        await second.aclose()


async def test_recorded_calls_on_a_down_connector_replay_from_the_log(
    db_path: Path, switch: Switch, closing: list[Runtime], language: str
) -> None:
    """The connector is needed only for calls already recorded: the resumed pass serves them from the log."""
    switch.up()
    code = program(
        language,
        'n = await counter.get_count()\nawait notes.write(text="seen")\nreturn n',
        'const n = await counter.get_count();\nawait notes.write({ text: "seen" });\nreturn n;',
    )
    first = Runtime([switch.connector(), Notes()], new_executor(language), codemode.SqliteStore(db_path))
    closing.append(first)
    paused = await first.execute(code)
    assert paused.status == "paused", paused.error
    await first.aclose()
    switch.down()
    notes = Notes()
    second = Runtime([switch.connector(), notes], new_executor(language), codemode.SqliteStore(db_path))
    closing.append(second)
    try:
        done = await second.approve(paused.execution_id, paused.pending[0].seq)
        assert done.status == "completed" and done.result == {"result": 0}, done.error
        assert notes.written == ["seen"]
    finally:
        await second.aclose()


class Undoable(McpConnector):
    """The counter with a revert for `increment` (the revert adds the opposite amount)."""

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        if name != "increment":
            return spec

        async def undo(args: dict[str, Any], result: Any, ctx: Any) -> None:
            await self.call_mcp_tool("increment", {"by": -int(args.get("by", 1))})

        return dataclasses.replace(spec, revert=undo)


async def test_rollback_on_a_down_connector_reports_its_reverts_failed_and_retries(
    db_path: Path, switch: Switch, closing: list[Runtime]
) -> None:
    switch.up()
    args = [str(switch.script), str(switch.flag), "--transport", "stdio", "--state", str(switch.state)]
    first = Runtime([Undoable.stdio("counter", sys.executable, args), Notes()], store=codemode.SqliteStore(db_path))
    closing.append(first)
    done = await first.execute("await counter.increment(by=2)\nreturn await notes.read()")
    assert done.status == "completed", done.error
    await first.aclose()
    switch.down()
    second = Runtime([Undoable.stdio("counter", sys.executable, args), Notes()], store=codemode.SqliteStore(db_path))
    closing.append(second)
    try:
        with pytest.raises(codemode.RollbackError) as raised:
            await second.rollback(done.execution_id)
        assert list(raised.value.report.failed) == [0]
        assert raised.value.report.failed[0].startswith('connector "counter" is unavailable (McpConnectionError: ')
        assert "roll back again when it is up" in raised.value.report.failed[0]
        switch.up()
        again = await second.rollback(done.execution_id)
        assert again.reverted == [0]
        assert switch.state.read_text().split() == ["2", "-2"]
    finally:
        await second.aclose()


# -- 4. unknown execution ids: one style ------------------------------------------------------------


def _not_found(action: str) -> str:
    return f'No execution "exec_nope" to {action} on runtime "default": it never existed there, or it was deleted'


async def test_unknown_execution_ids_get_one_style(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Notes())
    # Methods returning an Outcome: an error outcome, nothing changes.
    for outcome, action in (
        (await runtime.approve("exec_nope", 0), "approve"),
        (await runtime.recover("exec_nope"), "recover"),
    ):
        assert outcome.status == "error" and outcome.execution_id == "exec_nope"
        assert (outcome.error or "").startswith(_not_found(action)), outcome.error
    # Methods that act on a run and return something else: ExecutionNotFoundError, a LookupError.
    with pytest.raises(ExecutionNotFoundError, match=_not_found("roll back")) as raised:
        await runtime.rollback("exec_nope")
    assert isinstance(raised.value, LookupError) and raised.value.execution_id == "exec_nope"
    with pytest.raises(ExecutionNotFoundError, match=_not_found("save from")):
        await runtime.save_snippet("s", execution_id="exec_nope")
    with pytest.raises(ExecutionNotFoundError, match=_not_found("list the pending actions of")):
        await runtime.pending("exec_nope")
    # The answers DESIGN §3.2 gives: a reject that decided nothing, a lookup that found nothing.
    assert await runtime.reject("exec_nope", 0) is False
    assert await runtime.reject("exec_nope", 0, resume=True) is False
    assert await runtime.execution("exec_nope") is None
    assert await runtime.delete_execution("exec_nope") is False
    assert await runtime.pending() == []
    # A run deleted between two clicks is unknown the same way.
    paused = await runtime.execute('return await notes.write(text="x")')
    assert await runtime.delete_execution(paused.execution_id) is True
    gone = await runtime.approve(paused.execution_id, 0)
    assert gone.status == "error" and f'No execution "{paused.execution_id}" to approve' in (gone.error or "")
    with pytest.raises(ExecutionNotFoundError):
        await runtime.pending(paused.execution_id)


def test_unknown_execution_ids_through_the_blocking_twin(db_path: Path) -> None:
    runtime = Runtime([Notes()], store=codemode.SqliteStore(db_path))
    with runtime.sync as sync:
        assert (sync.approve("exec_nope", 0).error or "").startswith(_not_found("approve"))
        assert (sync.recover("exec_nope").error or "").startswith(_not_found("recover"))
        with pytest.raises(ExecutionNotFoundError, match=_not_found("roll back")):
            sync.rollback("exec_nope")
        with pytest.raises(ExecutionNotFoundError):
            sync.save_snippet("s", execution_id="exec_nope")
        with pytest.raises(ExecutionNotFoundError):
            sync.pending("exec_nope")
        assert sync.reject("exec_nope", 0) is False
        assert sync.execution("exec_nope") is None
        assert sync.delete_execution("exec_nope") is False


# -- 5. every async method has a blocking twin ------------------------------------------------------

# Async methods of Runtime without a twin of the same name, and why.
NOT_TWINNED = {
    "aclose": "SyncRuntime.close() closes the runtime and stops the twin's loop",
    "setup": "describes the connectors for a pass; the twin's calls do it themselves",
    "transform": "the transform_result hook applied to a result, for the runtime's own use",
}


def _public_async(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.iscoroutinefunction)
        if not name.startswith("_")
    }


def test_every_async_runtime_method_has_a_blocking_twin_with_the_same_parameters() -> None:
    asynchronous = _public_async(Runtime)
    assert set(NOT_TWINNED) <= set(asynchronous), "NOT_TWINNED names a method Runtime no longer has"
    twinned = {name: sig for name, sig in asynchronous.items() if name not in NOT_TWINNED}
    assert "recover" in twinned
    for name, signature in twinned.items():
        twin = getattr(SyncRuntime, name, None)
        assert twin is not None and callable(twin), f"runtime.sync has no {name}()"
        assert not inspect.iscoroutinefunction(twin), f"runtime.sync.{name} must block, not be async"
        theirs = inspect.signature(twin)
        assert [(p.name, p.kind, p.default) for p in theirs.parameters.values()] == [
            (p.name, p.kind, p.default) for p in signature.parameters.values()
        ], f"runtime.sync.{name}{theirs} differs from Runtime.{name}{signature}"
    assert callable(SyncRuntime.close)


def test_the_blocking_recover_recovers(db_path: Path) -> None:
    runtime = Runtime([Notes()], store=codemode.SqliteStore(db_path))
    with runtime.sync as sync:
        done = sync.execute("return 3")
        refused = sync.recover(done.execution_id, stale_after=timedelta(seconds=30))
        assert refused.status == "error" and "cannot be recovered (status: completed)" in (refused.error or "")


# -- 2. a missing optional dependency is the developer's to fix --------------------------------------


def _blocked(module: str, statement: str) -> subprocess.CompletedProcess[str]:
    """Run `statement` in a fresh interpreter where `module` cannot be imported (a real ImportError)."""
    code = (
        f"import sys\nsys.modules[{module!r}] = None\nimport codemode\n"
        f"try:\n    {statement}\nexcept ImportError as exc:\n    print(json.dumps(['ImportError', str(exc)]))\n"
        "else:\n    print(json.dumps(['no error', '']))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
        check=False,
    )


@pytest.mark.parametrize(
    ("module", "statement", "extra"),
    [
        ("mcp", "codemode.McpConnector.stdio('srv', 'true')", "mcp"),
        ("mcp", "codemode.McpConnector.http('srv', 'http://127.0.0.1:9/mcp')", "mcp"),
        ("httpx", "codemode.HttpOpenApiConnector('api', {'openapi': '3.0.3', 'paths': {}})", "openapi"),
    ],
)
def test_a_missing_extra_raises_import_error_at_construction(module: str, statement: str, extra: str) -> None:
    done = _blocked(module, statement)
    assert done.returncode == 0, done.stderr
    kind, message = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "ImportError", done.stdout
    assert f"pip install 'codemode[{extra}]'" in message
    assert "retry" not in message.lower()


# -- 3. HTTP and MCP errors reach the program typed ---------------------------------------------------

FAULTY = TESTS / "mcp_servers" / "faulty.py"
STATUS_DOC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Statuses", "version": "1"},
    "paths": {
        "/status/{code}": {
            "get": {
                "operationId": "get_status",
                "summary": "Answer with the given status.",
                "parameters": [{"name": "code", "in": "path", "required": True, "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {}}}}},
            },
        },
    },
}
# status -> the exception type the program catches
HTTP_KINDS = {
    400: "ValueError",
    401: "PermissionError",
    403: "PermissionError",
    404: "LookupError",
    408: "TimeoutError",
    409: "ValueError",
    410: "LookupError",
    422: "ValueError",
    429: "OSError",
    500: "OSError",
    503: "OSError",
    504: "TimeoutError",
    302: "RuntimeError",
}
CATCH_ALL_PY = """
out = {}
for code in CODES:
    try:
        await api.get_status(code=code)
        out[str(code)] = "ok"
    except Exception as e:
        out[str(code)] = [type(e).__name__, str(e)]
try:
    await api.get_status(code=403)
except PermissionError as e:
    out["caught"] = "PermissionError"
try:
    await api.get_status(code=503)
except OSError as e:
    out["caught_os"] = "OSError"
return out
"""
CATCH_ALL_JS = """
const out = {};
for (const code of CODES) {
  try { await api.get_status({ code }); out[String(code)] = "ok"; }
  catch (e) { out[String(code)] = [e.name, e.message]; }
}
try { await api.get_status({ code: 403 }); } catch (e) { if (e.name === "PermissionError") out.caught = e.name; }
try { await api.get_status({ code: 503 }); } catch (e) { if (e.name === "OSError") out.caught_os = e.name; }
return out;
"""


@pytest.fixture
def status_server() -> Iterator[ValidatingServer]:
    with ValidatingServer(STATUS_DOC) as server:
        for code in HTTP_KINDS:
            body = json.dumps({"message": f"answer {code}", "pad": "x" * 3000}).encode()
            headers = {"Location": "https://elsewhere.example/x"} if code == 302 else {}
            server.reply("GET", f"/status/{code}", Reply(code, body, headers=headers))
        yield server


async def test_http_errors_reach_the_program_as_typed_exceptions(
    make_runtime: RuntimeFactory, status_server: ValidatingServer, language: str
) -> None:
    api = codemode.HttpOpenApiConnector("api", STATUS_DOC, base_url=status_server.api_url)
    runtime = make_runtime(api)
    codes = json.dumps(list(HTTP_KINDS))
    outcome = await runtime.execute(program(language, CATCH_ALL_PY, CATCH_ALL_JS).replace("CODES", codes))
    await api.aclose()
    assert outcome.status == "completed", outcome.error
    out = outcome.result
    assert {int(code): out[str(code)][0] for code in HTTP_KINDS} == HTTP_KINDS
    assert out["caught"] == "PermissionError" and out["caught_os"] == "OSError"
    message = out["404"][1]
    assert message.startswith('GET /status/404 failed with HTTP 404 Not Found: {"message": "answer 404", "pad": "xx')
    assert len(message) < 800  # a bounded excerpt of the body
    assert "HTTP 503 Service Unavailable" in out["503"][1] and "HTTP 401 Unauthorized" in out["401"][1]
    assert "Location: https://elsewhere.example/x" in out["302"][1]
    # The recorded errors keep their type.
    kinds = {c.args["code"]: c.result["kind"] for c in outcome.calls if c.args["code"] in HTTP_KINDS}
    assert kinds == HTTP_KINDS


async def test_the_host_catches_http_errors_by_built_in_type_too(status_server: ValidatingServer) -> None:
    api = codemode.HttpOpenApiConnector("api", STATUS_DOC, base_url=status_server.api_url)
    try:
        with pytest.raises(PermissionError) as denied:
            await api.execute_tool("get_status", {"code": 403}, codemode.ToolContext("x"))
        assert isinstance(denied.value, codemode.OpenApiHttpError) and denied.value.status == 403
        assert denied.value.reason == "Forbidden" and denied.value.body.startswith('{"message": "answer 403"')
        with pytest.raises(ConnectionError):
            await api.execute_tool("get_status", {"code": 429}, codemode.ToolContext("x"))
        with pytest.raises(LookupError):
            await api.execute_tool("get_status", {"code": 404}, codemode.ToolContext("x"))
    finally:
        await api.aclose()


async def test_a_recorded_http_error_replays_with_its_type_without_calling_again(
    make_runtime: RuntimeFactory, status_server: ValidatingServer, language: str
) -> None:
    api = codemode.HttpOpenApiConnector("api", STATUS_DOC, base_url=status_server.api_url)
    notes = Notes()
    runtime = make_runtime(api, notes)
    code = program(
        language,
        "try:\n    await api.get_status(code=404)\n    kind = 'none'\nexcept LookupError as e:\n"
        "    kind = type(e).__name__\nawait notes.write(text=kind)\nreturn kind",
        "let kind = 'none';\ntry { await api.get_status({ code: 404 }); } catch (e) { kind = e.name; }\n"
        "await notes.write({ text: kind });\nreturn kind;",
    )
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    asked = len(status_server.seen)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    await api.aclose()
    assert done.status == "completed" and done.result == "LookupError", done.error
    assert notes.written == ["LookupError"]
    assert len(status_server.seen) == asked == 1  # the replay raised the recorded error; no second request


MCP_PY = """
out = []
for code in [-32602, -32600, -32601, -32001, -32000, -32603]:
    try:
        await faulty.refuse(code=code, message="nope")
    except Exception as e:
        out.append([type(e).__name__, str(e)])
try:
    await faulty.fail(reason="the disk is full")
except RuntimeError as e:
    out.append([type(e).__name__, str(e)])
try:
    await faulty.crash()
except OSError as e:
    out.append([type(e).__name__, str(e)])
out.append(await faulty.echo(value=7))
return out
"""
MCP_JS = """
const out = [];
for (const code of [-32602, -32600, -32601, -32001, -32000, -32603]) {
  try { await faulty.refuse({ code, message: "nope" }); } catch (e) { out.push([e.name, e.message]); }
}
try { await faulty.fail({ reason: "the disk is full" }); } catch (e) { out.push([e.name, e.message]); }
try { await faulty.crash(); } catch (e) { out.push([e.name, e.message]); }
out.push(await faulty.echo({ value: 7 }));
return out;
"""


async def test_mcp_errors_reach_the_program_as_typed_exceptions(
    make_runtime: RuntimeFactory, closing: list[Runtime], language: str
) -> None:
    faulty = McpConnector.stdio("faulty", sys.executable, [str(FAULTY)])
    runtime = make_runtime(faulty, Notes())
    closing.append(runtime)
    outcome = await runtime.execute(program(language, MCP_PY, MCP_JS))
    assert outcome.status == "completed", outcome.error
    *errors, echoed = outcome.result
    assert errors[:6] == [
        ["ValueError", "MCP error -32602: nope"],
        ["ValueError", "MCP error -32600: nope"],
        ["LookupError", "MCP error -32601: nope"],
        ["TimeoutError", "MCP error -32001: nope"],
        ["RuntimeError", "MCP error -32000: nope"],
        ["RuntimeError", "MCP error -32603: nope"],
    ]
    assert errors[6] == ["RuntimeError", "Error executing tool fail: the disk is full"]  # isError: the tool's text
    kind, message = errors[7]
    assert kind == "OSError" and message.startswith('The connection to MCP server "faulty" was lost during crash')
    assert echoed == 7  # the server was started again for the next call
    # Replayed from the log, every error keeps its type.
    assert [c.result["kind"] for c in outcome.calls if c.state == "error"] == [e[0] for e in errors]
