"""The JavaScript sandbox: escapes that must fail, limits that must trip, and the program conventions.

The twin of test_sandbox_monty.py for `DenoExecutor`, plus what only JavaScript has: the host channel on
stdout, prototype pollution, Workers, TypeScript, and the codec's JavaScript types.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import codemode
from codemode import Connector, Runtime, tool

from conftest import Items, RuntimeFactory, child_pids


@pytest.fixture
def language() -> str:
    return "javascript"


NOT_DEFINED = "ReferenceError: {} is not defined"
NO_IMPORT = "SyntaxError: import is not available in the sandbox"
NO_CODEGEN = "EvalError: Code generation from strings disallowed"

ESCAPES: dict[str, tuple[str, str]] = {
    "read a file": ('Deno.readTextFileSync("/etc/passwd")', NOT_DEFINED.format("Deno")),
    "environment": ('Deno.env.get("HOME")', NOT_DEFINED.format("Deno")),
    "run a command": ('new Deno.Command("id").outputSync()', NOT_DEFINED.format("Deno")),
    "run a command, legacy API": ('Deno.run({ cmd: ["id"] })', NOT_DEFINED.format("Deno")),
    "connect a socket": ('await Deno.connect({ hostname: "127.0.0.1", port: 22 })', NOT_DEFINED.format("Deno")),
    "listen on a port": ("Deno.listen({ port: 0 })", NOT_DEFINED.format("Deno")),
    "Deno internals": ('Deno[Symbol.for("Deno.internal")]', NOT_DEFINED.format("Deno")),
    "Node process": ("process.env.HOME", NOT_DEFINED.format("process")),
    "Node process on globalThis": ("globalThis.process.env.HOME", "TypeError: Cannot read properties of undefined"),
    "require": ('require("fs")', NOT_DEFINED.format("require")),
    "import node:fs": ('const fs = await import("node:fs");\nfs.readFileSync("/etc/passwd", "utf8")', NO_IMPORT),
    "static remote import": ('import x from "https://example.com/x.js";\nx', NO_IMPORT),
    "dynamic remote import": ('(await import("https://example.com/x.js")).default', NO_IMPORT),
    "data: import": ('(await import("data:text/javascript,export default 1")).default', NO_IMPORT),
    "import with a comment": (
        '(await import /* hidden */ ("data:text/javascript,export default 1")).default',
        NO_IMPORT,
    ),
    "new Function": ('new Function("return this")()', NO_CODEGEN),
    "eval": ('eval("1 + 1")', NO_CODEGEN),
    "async function constructor": ('(async function () {}).constructor("return 1")', NO_CODEGEN),
    "generator function constructor": ('(function* () {}).constructor("yield 1")', NO_CODEGEN),
    "globalThis.constructor.constructor": ('globalThis.constructor.constructor("return this")()', NO_CODEGEN),
    "string timer": ('setTimeout("globalThis.x = 1", 0)', 'The "callback" argument must be of type function'),
    "fetch a file URL": ('await fetch("file:///etc/passwd")', 'Requires read access to "/etc/passwd"'),
}


async def assert_next_run_works(runtime: Runtime) -> None:
    after = await runtime.execute("await items.list_items();")
    assert after.status == "completed", after.error
    assert after.result == []


@pytest.mark.parametrize(("code", "expected"), ESCAPES.values(), ids=ESCAPES.keys())
async def test_escape_fails_inside_the_sandbox(runtime: Runtime, code: str, expected: str) -> None:
    outcome = await runtime.execute(code)
    assert outcome.status == "error", f"escape succeeded: {outcome.result!r}"
    assert expected in (outcome.error or "")
    await assert_next_run_works(runtime)


def worker(source: str) -> str:
    """A program that runs `source` in a Worker and returns what the Worker posts back (or its error)."""
    return (
        f"const source = {json.dumps(source)};\n"
        'const w = new Worker("data:text/javascript," + encodeURIComponent(source), { type: "module" });\n'
        "return await new Promise((resolve) => {\n"
        "  w.onmessage = (event) => resolve(event.data);\n"
        '  w.onerror = (event) => { event.preventDefault(); resolve("worker error: " + event.message); };\n'
        "});"
    )


async def test_writing_a_file_leaves_no_file(runtime: Runtime, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    for code in (
        f"await Deno.writeTextFile({json.dumps(str(target))}, 'x');",
        f"Deno.writeFileSync({json.dumps(str(target))}, new Uint8Array([1]));",
    ):
        outcome = await runtime.execute(code)
        assert outcome.status == "error"
        assert NOT_DEFINED.format("Deno") in (outcome.error or "")
    assert not target.exists()
    await assert_next_run_works(runtime)


# -- the network: a real server on 127.0.0.1 that must never hear from the sandbox -------------


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server on 127.0.0.1 recording every request it receives."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"export default 'fetched';")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


NET_REFUSED = "NotCapable: Requires net access to"
NETWORK: dict[str, tuple[str, str, str]] = {
    "fetch": ('await fetch("http://{addr}/fetch");', "error", NET_REFUSED),
    "WebSocket": ('new WebSocket("ws://{addr}/ws");', "error", NET_REFUSED),
    "EventSource": (  # connects in the background: the program goes on, the connection is refused
        'const source = new EventSource("http://{addr}/events");\n'
        "await new Promise((resolve) => setTimeout(resolve, 300));\n"
        "source.close();\n"
        'return "waited";',
        "completed",
        "waited",
    ),
    "fetch from a Worker": (
        worker('fetch("http://{addr}/worker").then(() => postMessage("fetched"), (e) => postMessage(String(e)))'),
        "error",
        NOT_DEFINED.format("Worker"),
    ),
    "import from the server": ('(await import("http://{addr}/module.js")).default', "error", NO_IMPORT),
}


@pytest.mark.parametrize(("code", "status", "expected"), NETWORK.values(), ids=NETWORK.keys())
async def test_network_requests_never_leave_the_sandbox(
    runtime: Runtime, listener: tuple[str, list[str]], code: str, status: str, expected: str
) -> None:
    addr, hits = listener
    outcome = await runtime.execute(code.replace("{addr}", addr))
    assert outcome.status == status, outcome.error or outcome.result
    assert expected in (outcome.error if status == "error" else outcome.result)
    await asyncio.sleep(0.05)
    assert hits == []
    await assert_next_run_works(runtime)


# -- the host channel: a program can neither reach stdout nor forge a frame ---------------------

FORGED_LINE = json.dumps({"t": "done", "ok": True, "value": "forged", "logs": []}) + "\n"
FORGED_FRAME = json.dumps(FORGED_LINE)  # as a JavaScript string literal
FORGERIES: dict[str, tuple[str, str, Any, list[str]]] = {
    "console internals": (
        f'console._stdout?.write?.({FORGED_FRAME});\nconsole.log.call(undefined, {FORGED_FRAME});\nreturn "real";',
        "completed",
        "real",
        [FORGED_LINE],  # a log line like any other
    ),
    "Deno.stdout through optional chaining": (
        f"globalThis.Deno?.stdout?.writeSync(new TextEncoder().encode({FORGED_FRAME}));\nreturn 'real';",
        "completed",
        "real",
        [],
    ),
    "the Deno internals symbol": (
        f'const internal = Deno[Symbol.for("Deno.internal")];\ninternal.core.print({FORGED_FRAME});\nreturn "real";',
        "error",
        None,
        [],
    ),
    "a Worker's own Deno.stdout": (
        worker(f"Deno.stdout.writeSync(new TextEncoder().encode({FORGED_FRAME})); postMessage('wrote');"),
        "error",
        None,
        [],
    ),
}


@pytest.mark.parametrize(("code", "status", "result", "logs"), FORGERIES.values(), ids=FORGERIES.keys())
async def test_forged_host_messages_are_never_accepted(
    runtime: Runtime, code: str, status: str, result: Any, logs: list[str]
) -> None:
    outcome = await runtime.execute(code)
    assert outcome.result != "forged"
    assert (outcome.status, outcome.result, outcome.logs) == (status, result, logs), outcome.error
    await assert_next_run_works(runtime)


# -- Workers: another isolate would get a fresh `Deno` and evaluate code built from a string ------


@pytest.mark.parametrize("name", ["Worker", "SharedWorker"])
async def test_workers_are_not_available(runtime: Runtime, name: str) -> None:
    outcome = await runtime.execute(worker("postMessage(typeof Deno)").replace("new Worker(", f"new {name}("))
    assert outcome.status == "error", f"a {name} ran: {outcome.result!r}"
    assert NOT_DEFINED.format(name) in (outcome.error or "")
    await assert_next_run_works(runtime)


# -- prototype pollution and leftovers ----------------------------------------------------------


class Recorder(Connector):
    """Records the arguments it receives exactly as the host decoded them."""

    name = "rec"

    def __init__(self) -> None:
        self.seen: list[Any] = []

    @tool
    def record(self, value: Any) -> Any:
        """Record a value and echo it."""
        self.seen.append(value)
        return {"echo": value, "list": [1, 2]}


async def test_prototype_pollution_does_not_change_what_the_host_sees(make_runtime: RuntimeFactory) -> None:
    rec = Recorder()
    runtime = make_runtime(rec)
    code = (
        "Object.prototype.polluted = 1;\n"
        "Array.prototype.extra = 2;\n"
        "const r = await rec.record({ value: { a: 1, list: [1, 2] } });\n"
        "return { r, inherited: [r.polluted, r.list.extra], keys: Object.keys(r) };"
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert rec.seen == [{"a": 1, "list": [1, 2]}]
    assert outcome.result == {
        "r": {"echo": {"a": 1, "list": [1, 2]}, "list": [1, 2]},
        "inherited": [1, 2],
        "keys": ["echo", "list"],
    }
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.log[0].args == {"value": {"a": 1, "list": [1, 2]}}


@pytest.mark.parametrize("target", ["Object.prototype", "Array.prototype"])
async def test_to_json_pollution_does_not_reshape_frames(make_runtime: RuntimeFactory, target: str) -> None:
    rec = Recorder()
    runtime = make_runtime(rec)
    code = (
        f"{target}.toJSON = function () {{ return {{ forged: true }}; }};\n"
        "const r = await rec.record({ value: { a: 1, list: [1, 2] } });\n"
        'console.log("real log");\n'
        "return r.list;"
    )
    outcome = await runtime.execute(code)
    assert rec.seen == [{"a": 1, "list": [1, 2]}]
    assert (outcome.status, outcome.result, outcome.logs) == ("completed", [1, 2], ["real log"])


async def test_a_forged_codec_tag_ends_the_run(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        'Array.prototype.toJSON = function () { return { __codemode__: "bogus" }; };\nreturn [1];'
    )
    assert (outcome.status, outcome.result) == ("completed", [1]), outcome.error
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "completed"
    await assert_next_run_works(runtime)


async def test_pollution_and_timers_do_not_reach_the_next_run(runtime: Runtime, items: Items) -> None:
    first = await runtime.execute(
        "Object.prototype.polluted = 1;\n"
        "globalThis.leftover = 1;\n"
        'setTimeout(() => items.add_note({ text: "late" }), 100);\n'
        'return "first";'
    )
    assert first.result == "first"
    await asyncio.sleep(0.3)
    second = await runtime.execute("return [({}).polluted ?? null, globalThis.leftover ?? null];")
    assert second.result == [None, None]
    assert items.notes == []
    assert first.calls == []


STORAGE = {
    "localStorage": ('localStorage.setItem("k", "leak");', 'return globalThis.localStorage?.getItem("k") ?? null;'),
    "caches": (
        'const c = await caches.open("x");\nawait c.put("https://a.example/", new Response("leak"));',
        "const c = await globalThis.caches?.open('x');\n"
        'const hit = await c?.match("https://a.example/");\n'
        "return hit ? await hit.text() : null;",
    ),
}


@pytest.mark.parametrize(("write", "read"), STORAGE.values(), ids=STORAGE.keys())
async def test_storage_does_not_persist_across_runs(runtime: Runtime, write: str, read: str) -> None:
    first = await runtime.execute(write)
    second = await runtime.execute(read)
    assert (second.status, second.result) == ("completed", None)  # whether or not the first run could write
    assert first.status == "error" or first.result is None


async def test_sandbox_mutation_does_not_reach_the_host(runtime: Runtime, items: Items) -> None:
    items.items.append({"id": 1, "title": "host"})
    outcome = await runtime.execute('const found = await items.list_items();\nfound[0].title = "changed";\nfound')
    assert outcome.result == [{"id": 1, "title": "changed"}]
    assert items.items == [{"id": 1, "title": "host"}]


# -- limits ---------------------------------------------------------------------------------------


@pytest.fixture
async def limited(make_runtime: RuntimeFactory, items: Items, request: pytest.FixtureRequest) -> AsyncIterator[Runtime]:
    # Memory cases get a generous clock: on a loaded machine, filling 64 MiB must not lose the race
    # against the wall clock, or the test would report a timeout instead of the memory limit.
    callspec = getattr(request.node, "callspec", None)
    memory_case = "memory" in request.node.name or (
        callspec is not None and callspec.params["expected"] == "MemoryError"
    )
    executor = codemode.DenoExecutor(timeout=20 if memory_case else 1.5, memory_limit=64 * 2**20)
    yield make_runtime(items, executor=executor)
    await executor.aclose()


LIMITS = {
    "infinite loop": ("while (true) {}", "timed out"),
    "loop after an await": ("await items.list_items();\nwhile (true) {}", "timed out"),
    "loop that swallows errors": ("while (true) {\n  try {\n    while (true) {}\n  } catch {}\n}", "timed out"),
    "long timer": ("await new Promise((resolve) => setTimeout(resolve, 30_000));", "timed out"),
    "memory growth": ("const x = [];\nwhile (true) x.push(new Array(100_000).fill(x.length));", "MemoryError"),
    "string growth": ('const x = [];\nwhile (true) x.push("a".repeat(1_000_000) + x.length);', "MemoryError"),
    "deep recursion": ("function f(n) {\n  return f(n + 1);\n}\nf(0);", "RangeError: Maximum call stack size exceeded"),
}


@pytest.mark.parametrize(("code", "expected"), LIMITS.values(), ids=LIMITS.keys())
async def test_limits_end_the_pass(limited: Runtime, code: str, expected: str) -> None:
    outcome = await limited.execute(code)
    assert outcome.status == "error"
    assert expected in (outcome.error or "")
    if expected == "MemoryError":
        assert "memory limit (64 MiB)" in (outcome.error or "")
    if expected == "timed out":
        assert "1.5 s limit" in (outcome.error or "")
    execution = await limited.execution(outcome.execution_id)
    assert execution is not None and execution.status == "error"
    after = await limited.execute("await items.list_items();")
    assert after.status == "completed"


async def test_typed_arrays_count_against_the_memory_limit(limited: Runtime) -> None:
    outcome = await limited.execute(
        "const keep = [];\nfor (let i = 0; i < 8; i++) keep.push(new Uint8Array(32 * 2 ** 20).fill(1));\nkeep.length"
    )
    assert outcome.status == "error", f"allocated past the limit: {outcome.result!r}"
    # Refused either by V8 (a catchable RangeError) or as the process runs out of its data limit.
    assert "MemoryError" in (outcome.error or "") or "RangeError: Array buffer allocation failed" in (
        outcome.error or ""
    )
    assert (await limited.execute("await items.list_items();")).status == "completed"


async def test_logs_survive_a_timeout(limited: Runtime) -> None:
    outcome = await limited.execute('console.log("started");\nconsole.warn("looping");\nwhile (true) {}')
    assert outcome.status == "error" and "timed out" in (outcome.error or "")
    assert outcome.logs == ["started", "[warn] looping"]


class Slow(Connector):
    name = "slow"

    @tool
    async def wait(self, seconds: float) -> str:
        """Sleep on the host."""
        await asyncio.sleep(seconds)
        return "woke"


async def test_wall_clock_covers_host_calls(make_runtime: RuntimeFactory) -> None:
    executor = codemode.DenoExecutor(timeout=1.0)
    runtime = make_runtime(Slow(), executor=executor)
    try:
        outcome = await runtime.execute("await slow.wait({ seconds: 30 });")
        assert outcome.status == "error" and "timed out" in (outcome.error or "")
        assert (await runtime.execute("await slow.wait({ seconds: 0 });")).result == "woke"
    finally:
        await executor.aclose()


async def test_breaking_the_runners_builtins_forges_no_call(make_runtime: RuntimeFactory) -> None:
    rec = Recorder()
    executor = codemode.DenoExecutor(timeout=1.5)
    runtime = make_runtime(rec, executor=executor)
    try:
        # The runner keeps its own Object.keys: the call and its arguments arrive exactly as made.
        outcome = await runtime.execute('Object.keys = () => ["t"];\nawait rec.record({ value: 3 });\nreturn "real";')
        assert outcome.status == "completed" and outcome.result == "real"
        assert rec.seen == [3] and [c.args for c in outcome.calls] == [{"value": 3}]
        assert (await runtime.execute("await rec.record({ value: 4 });")).result == {"echo": 4, "list": [1, 2]}
    finally:
        await executor.aclose()


# -- program conventions ------------------------------------------------------------------------


async def test_typescript_is_accepted(runtime: Runtime, items: Items) -> None:
    items.items.append({"id": 1, "title": "typed"})
    code = (
        "interface Item {\n"
        "  id: number;\n"
        "  title: string;\n"
        "}\n"
        "type Summary<T> = { count: number; first: T | null };\n"
        "function summarize<T>(xs: readonly T[]): Summary<T> {\n"
        "  return { count: xs.length, first: xs[0] ?? null };\n"
        "}\n"
        "const found: Item[] = await items.list_items();\n"
        "const note = (await items.add_note({ text: found[0].title })) as number;\n"
        "const summary: Summary<Item> = summarize<Item>(found);\n"
        "return { ...summary, note } satisfies Summary<Item> & { note: number };"
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"count": 1, "first": {"id": 1, "title": "typed"}, "note": 1}
    assert items.notes == ["typed"]


async def test_console_capture(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        'console.log("a", { x: 1 }, [1, "b"]);\n'
        'console.info("i");\n'
        'console.debug("d");\n'
        'console.warn("careful");\n'
        'console.error("bad", 2);\n'
        'return "done";'
    )
    assert outcome.status == "completed"
    assert outcome.logs == ['a { x: 1 } [ 1, "b" ]', "i", "d", "[warn] careful", "[error] bad 2"]


async def test_error_names_the_program_line(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        'console.log("before");\nconst item = { id: 1 };\nconst title = item.details.title;\nreturn title;'
    )
    assert outcome.status == "error"
    assert outcome.logs == ["before"]
    assert "TypeError: Cannot read properties of undefined (reading 'title')" in (outcome.error or "")
    assert "line 3: const title = item.details.title;" in (outcome.error or "")


@pytest.mark.parametrize("end", ["", ";"], ids=["no semicolon", "semicolon"])
async def test_an_error_in_the_last_expression_names_its_line(runtime: Runtime, end: str) -> None:
    outcome = await runtime.execute(f"const item = {{ id: 1 }};\nitem.details.title{end}")
    assert outcome.status == "error"
    assert "TypeError: Cannot read properties of undefined (reading 'title')" in (outcome.error or "")
    assert "at line 2: " in (outcome.error or "")


async def test_import_refusal_names_the_program_line(runtime: Runtime) -> None:
    outcome = await runtime.execute('const a = 1;\nconst fs = await import("node:fs");\nreturn a;')
    assert outcome.status == "error"
    assert "import is not available in the sandbox" in (outcome.error or "")
    assert 'at line 2: const fs = await import("node:fs");' in (outcome.error or "")


async def test_error_keeps_the_message_and_logs(runtime: Runtime) -> None:
    outcome = await runtime.execute('console.log("before");\nthrow new RangeError("out of range");')
    assert outcome.status == "error"
    assert outcome.logs == ["before"]
    assert (outcome.error or "").startswith("RangeError: out of range")
    thrown = await runtime.execute('throw "plain string";')
    assert thrown.status == "error" and "plain string" in (thrown.error or "")


async def test_syntax_error_names_the_line(runtime: Runtime) -> None:
    outcome = await runtime.execute("const x = 1;\nconst y = ;\n")
    assert outcome.status == "error"
    assert "SyntaxError" in (outcome.error or "") and "line" in (outcome.error or "")
    assert "const y = ;" in (outcome.error or "")


async def test_undefined_global_gets_the_globals_hint(runtime: Runtime) -> None:
    outcome = await runtime.execute('fs.readFileSync("/etc/passwd");')
    assert outcome.status == "error"
    assert "ReferenceError: fs is not defined" in (outcome.error or "")
    assert "(the only globals available in the sandbox are: items, codemode)" in (outcome.error or "")


async def test_program_conventions(runtime: Runtime) -> None:
    assert (await runtime.execute("1 + 1")).result == 2
    assert (await runtime.execute("const x = 3;\nif (x > 2) {\n  return 'big';\n}\nreturn 'small';")).result == "big"
    assert (await runtime.execute("const x = 1;")).result is None
    assert (await runtime.execute("")).result is None
    assert (await runtime.execute("```ts\n40 + 2\n```")).result == 42
    assert (await runtime.execute("async () => (await items.list_items()).length")).result == 0
    assert (
        await runtime.execute("async function main() {\n  return (await items.list_items()).length;\n}")
    ).result == 0
    assert (await runtime.execute("export default async function () {\n  return 7;\n}")).result == 7
    assert (await runtime.execute("async (input) => input")).result is None


async def test_async_step_and_gather_of_steps(runtime: Runtime) -> None:
    code = (
        'const a = await codemode.step("a", async () => 21);\n'
        'const [b, c] = await Promise.all([codemode.step("b", () => a * 2), codemode.step("c", () => [1, 2])]);\n'
        "return [a, b, c];"
    )
    outcome = await runtime.execute(code)
    assert outcome.result == [21, 42, [1, 2]]
    assert [c.method for c in outcome.calls] == ["a", "b", "c"]


async def test_promise_all_numbers_calls_in_program_order(make_runtime: RuntimeFactory, items: Items) -> None:
    runtime = make_runtime(items, Slow())
    code = (
        "const [woke, found, note] = await Promise.all([\n"
        "  slow.wait({ seconds: 0.2 }),\n"
        "  items.list_items(),\n"
        '  items.add_note({ text: "n" }),\n'
        "]);\n"
        'const created = await items.create_item({ title: "after" });\n'
        "return [woke, found.length, note, created.id];"
    )
    paused = await runtime.execute(code)
    assert [(c.seq, c.method) for c in paused.calls] == [
        (0, "wait"),
        (1, "list_items"),
        (2, "add_note"),
        (3, "create_item"),
    ]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == ["woke", 0, 1, 1]
    assert items.notes == ["n"] and items.counts == {"list_items": 1, "create_item": 1}


async def test_discovery_inside_the_sandbox(runtime: Runtime) -> None:
    code = (
        'const found = await codemode.search("create item");\n'
        "const doc = await codemode.describe(found.results[0].path);\n"
        'return [found.results[0].path, doc.kind, doc.types.includes("create_item")];'
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == ["items.create_item", "method", True]


async def test_unknown_method_is_a_type_error(runtime: Runtime) -> None:
    outcome = await runtime.execute("await items.nope();")
    assert outcome.status == "error"
    assert "TypeError: items.nope is not a function" in (outcome.error or "")
    assert outcome.calls == []


async def test_positional_arguments_are_refused_clearly(runtime: Runtime) -> None:
    outcome = await runtime.execute('await items.create_item("x");')
    assert outcome.status == "error"
    assert "items.create_item() takes one object of arguments" in (outcome.error or "")
    assert outcome.calls == []


async def test_many_calls(runtime: Runtime) -> None:
    code = "let n = 0;\nfor (let i = 0; i < 1500; i++) n += (await items.list_items()).length + 1;\nreturn n;"
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == 1500
    assert len(outcome.calls) == 1500


async def test_odd_results_become_plain_data(runtime: Runtime) -> None:
    assert (await runtime.execute("items")).result == {}
    assert (await runtime.execute("class P {\n  constructor() {\n    this.x = 1;\n  }\n}\nnew P()")).result == {"x": 1}
    assert (await runtime.execute("new Set([1, 2])")).result == {1, 2}
    assert (await runtime.execute('new Map([[1, "a"]])')).result == {1: "a"}
    assert (await runtime.execute("[undefined, () => 1, null]")).result == [None, None, None]


# -- values across the boundary -------------------------------------------------------------------

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=timezone.utc)
BIG = 2**60 + 1


class Values(Connector):
    """Returns and receives the values JSON cannot hold."""

    name = "values"

    def __init__(self) -> None:
        self.received: list[Any] = []

    @tool
    def sample(self) -> Any:
        """Bytes, a big integer and a datetime."""
        return {"data": bytes([0, 1, 255]), "big": BIG, "small": 7, "when": WHEN}

    @tool(requires_approval=True)
    def keep(self, value: Any) -> Any:
        """Keep a value (needs approval) and return it."""
        self.received.append(value)
        return value


async def test_bytes_bigint_and_dates_round_trip_on_every_pass(make_runtime: RuntimeFactory) -> None:
    values = Values()
    runtime = make_runtime(values)
    code = (
        "const s = await values.sample();\n"
        "const kinds = (v) => [v.data instanceof Uint8Array, typeof v.big, typeof v.small, v.when instanceof Date];\n"
        "const value = { data: s.data, big: s.big + 1n, small: 5n, when: s.when };\n"
        "const kept = await values.keep({ value: { ...value, kinds: kinds(s), iso: s.when.toISOString() } });\n"
        "return { kinds: kinds(s), keptKinds: kinds(kept), sample: s, kept };"
    )
    kinds = [True, "bigint", "number", True]
    kept = {"data": bytes([0, 1, 255]), "big": BIG + 1, "small": 5, "when": WHEN, "kinds": kinds}
    kept["iso"] = "2024-05-06T07:08:09.123Z"
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert paused.pending[0].args == {"value": kept}  # what the first pass saw and sent
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert values.received == [kept]  # the replayed read: the same types, so the same arguments
    received = values.received[0]
    assert (type(received["data"]), type(received["big"]), type(received["when"])) == (bytes, int, datetime)
    assert done.result == {
        "kinds": kinds,
        "keptKinds": kinds,
        "sample": {"data": bytes([0, 1, 255]), "big": BIG, "small": 7, "when": WHEN},
        "kept": kept,
    }


# -- a crashed sandbox --------------------------------------------------------------------------


class Killer(Connector):
    """Kills the sandbox processes from the host, as the OOM killer would."""

    name = "killer"

    def __init__(self) -> None:
        self.killed: list[int] = []

    @tool
    def kill_sandboxes(self) -> int:
        """Kill every child process of this process (the running one and the warm pool)."""
        pids = child_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        self.killed.extend(pids)
        return len(pids)


async def test_a_killed_process_is_an_error_and_the_next_run_works(make_runtime: RuntimeFactory) -> None:
    killer = Killer()
    runtime = make_runtime(killer)
    outcome = await runtime.execute('await killer.kill_sandboxes();\nconsole.log("unreachable");')
    assert outcome.status == "error"
    assert "The sandbox process exited unexpectedly" in (outcome.error or "")
    assert outcome.logs == []
    assert killer.killed
    # Wait until the killed processes are reaped: an unreaped one still looks alive to the warm pool.
    for _ in range(200):
        if not any(Path(f"/proc/{pid}").exists() for pid in killer.killed):
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.01)
    assert (await runtime.execute("1 + 1")).result == 2


# -- long-lived processes: a fresh Worker per program, nothing shared between runs ---------------


def _pids(executor: codemode.DenoExecutor) -> list[int]:
    """The Deno processes the executor has alive now."""
    return sorted(p.pid for p in executor._pool.processes() if not p.dead)


@pytest.fixture
async def one_process(make_runtime: RuntimeFactory, items: Items) -> AsyncIterator[tuple[Runtime, Any]]:
    """A runtime whose executor has a single Deno process, so consecutive runs share it."""
    executor = codemode.DenoExecutor(timeout=20, max_processes=1)
    yield make_runtime(items, Slow(), executor=executor), executor
    await executor.aclose()


LEFTOVERS = (
    "Object.prototype.polluted = 1;\n"
    "Array.prototype.extra = 2;\n"
    "String.prototype.trim = () => 'patched';\n"
    "JSON.parse = () => 'patched';\n"
    "Math.random = () => 4;\n"
    "globalThis.leftover = 1;\n"
    "globalThis.items = { list_items: async () => ['forged'] };\n"
    "globalThis.Deno = { env: { get: () => 'forged' } };\n"
    "globalThis.console = { log: () => {} };\n"
    'setTimeout(() => items.add_note({ text: "late timeout" }), 150);\n'
    'setInterval(() => items.add_note({ text: "late interval" }), 50);\n'
    "queueMicrotask(() => { globalThis.fromMicrotask = 1; });\n"
    'new Promise((resolve) => setTimeout(resolve, 100)).then(() => items.add_note({ text: "late promise" }));\n'
    'return "first";'
)
CHECK = (
    "console.log('seen');\n"
    "return {\n"
    "  polluted: ({}).polluted ?? null,\n"
    "  extra: [].extra ?? null,\n"
    "  trim: ' x '.trim(),\n"
    "  parsed: JSON.parse('[1]'),\n"
    "  random: Math.random() < 1,\n"
    "  leftover: globalThis.leftover ?? null,\n"
    "  microtask: globalThis.fromMicrotask ?? null,\n"
    "  deno: typeof Deno,\n"
    "  listed: await items.list_items(),\n"
    "};"
)


async def test_consecutive_runs_on_one_process_share_no_state(one_process: tuple[Runtime, Any], items: Items) -> None:
    runtime, executor = one_process
    first = await runtime.execute(LEFTOVERS)
    assert (first.status, first.result) == ("completed", "first"), first.error
    pids = _pids(executor)
    await asyncio.sleep(0.4)  # the first run's timers would have fired by now, had its Worker lived on
    second = await runtime.execute(CHECK)
    assert second.status == "completed", second.error
    assert second.result == {
        "polluted": None,
        "extra": None,
        "trim": "x",
        "parsed": [1],
        "random": True,
        "leftover": None,
        "microtask": None,
        "deno": "undefined",
        "listed": [],
    }
    assert second.logs == ["seen"]
    assert items.notes == [] and first.calls == []
    assert _pids(executor) == pids and len(pids) == 1  # the same process ran both programs
    assert executor._pool.processes()[0].runs_started == 2


async def test_a_run_at_its_time_limit_leaves_the_other_runs_of_its_process_unaffected(
    make_runtime: RuntimeFactory, items: Items
) -> None:
    """The run over its time limit is stopped by terminating its Worker: runs beside it in the same
    process, one finishing before that and one after, complete as if nothing happened."""
    executor = codemode.DenoExecutor(timeout=2.0, max_processes=1)
    runtime = make_runtime(items, Slow(), executor=executor)
    try:
        await runtime.execute("1")
        pids = _pids(executor)

        async def later() -> codemode.Outcome:
            await asyncio.sleep(1.0)
            return await runtime.execute("return await slow.wait({ seconds: 1.5 });")  # ends after the kill

        looping, before, after = await asyncio.gather(
            runtime.execute("while (true) {}"),
            runtime.execute('await slow.wait({ seconds: 0.5 });\nreturn "before";'),
            later(),
        )
        assert looping.status == "error" and "timed out" in (looping.error or ""), looping.error
        assert (before.status, before.result) == ("completed", "before"), before.error
        assert (after.status, after.result) == ("completed", "woke"), after.error
        assert _pids(executor) == pids  # the process lived on: only the looping run's Worker was stopped
    finally:
        await executor.aclose()


async def test_a_run_over_the_memory_limit_stops_its_process_and_the_others_there_say_so(
    make_runtime: RuntimeFactory, items: Items
) -> None:
    """V8 ends the whole process when one isolate runs out of heap: the run beside it gets a clear
    MemoryError saying so, and the next run gets a fresh process."""
    executor = codemode.DenoExecutor(timeout=20, memory_limit=64 * 2**20, max_processes=1)
    runtime = make_runtime(items, Slow(), executor=executor)
    try:
        await runtime.execute("1")
        pids = _pids(executor)
        waiting = asyncio.ensure_future(runtime.execute('await slow.wait({ seconds: 3 });\nreturn "woke";'))
        await asyncio.sleep(0.3)
        growing = await runtime.execute("const x = [];\nwhile (true) x.push(new Array(100_000).fill(x.length));")
        beside = await waiting
        for outcome in (growing, beside):
            assert outcome.status == "error"
            assert "MemoryError" in (outcome.error or "") and "memory limit (64 MiB)" in (outcome.error or "")
        assert "stops the process and every program running in it" in (beside.error or "")
        assert (await runtime.execute("return 1 + 1;")).result == 2
        assert _pids(executor) != pids
    finally:
        await executor.aclose()


async def test_ended_workers_give_their_memory_back_and_their_process_lives_on() -> None:
    """A terminated Worker's memory goes back to the operating system, not into a pool the process keeps:
    after a burst of runs the process holds only what its live runs do, so the memory watch (which allows
    each live run its limit) does not take a busy process, or the next run in it, for one over its limit."""
    from codemode.sandbox.base import Namespace
    from codemode.sandbox.deno_process import rss

    burst = 30  # ~6 MiB each: well past what one run of a 16 MiB limit may hold beside the process's base
    executor = codemode.DenoExecutor(timeout=60, memory_limit=16 * 2**20, max_runs=burst, max_processes=1)
    release = asyncio.Event()
    waiting = 0

    class Parked:
        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            nonlocal waiting
            waiting += 1
            await release.wait()
            return waiting

    namespaces = [Namespace("bench", frozenset({"wait"}))]
    program = executor.normalize("return await bench.wait();")
    try:
        runs = asyncio.gather(*(executor.execute(program, namespaces, Parked()) for _ in range(burst)))
        while waiting < burst:
            await asyncio.sleep(0.05)
        [process] = executor._pool.processes()
        peak = rss(process.pid)
        release.set()
        assert all(result.error is None for result in await runs)
        await asyncio.sleep(1.0)  # the memory watch looks every 50 ms
        assert _pids(executor) == [process.pid] and not process.over_memory
        assert rss(process.pid) < peak - (burst // 2) * 5 * 2**20  # most of the burst's memory is gone
        after = await executor.execute(program, namespaces, Parked())
        assert after.error is None and _pids(executor) == [process.pid]
    finally:
        await executor.aclose()


async def test_runs_of_two_event_loops_on_one_process_each_get_their_own_answers() -> None:
    """A loop driving a run reads its process's output itself; a run of another loop on that process at
    the same time (started before or after) is served all the same, and each run sees only its answers."""
    from codemode.sandbox.base import Namespace

    executor = codemode.DenoExecutor(timeout=60, max_processes=1)
    namespaces = [Namespace("bench", frozenset({"echo"}))]
    program = executor.normalize(
        "let total = 0;\nfor (let i = 0; i < 300; i++) total += await bench.echo({ n: i });\nreturn total;"
    )

    class Echo:
        def __init__(self, scale: int) -> None:
            self.scale = scale

        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            await asyncio.sleep(0)
            return args["n"] * self.scale

    def on_another_loop(delay: float) -> Any:
        async def run() -> Any:
            await asyncio.sleep(delay)
            return await executor.execute(program, namespaces, Echo(2))

        return asyncio.run(run())

    async def here(delay: float) -> Any:
        await asyncio.sleep(delay)
        return await executor.execute(program, namespaces, Echo(1))

    try:
        await executor.execute(program, namespaces, Echo(1))
        pids = _pids(executor)
        for mine_after, theirs_after in ((0.0, 0.05), (0.05, 0.0)):
            mine, theirs = await asyncio.gather(here(mine_after), asyncio.to_thread(on_another_loop, theirs_after))
            assert (mine.error, mine.result) == (None, sum(range(300)))
            assert (theirs.error, theirs.result) == (None, 2 * sum(range(300)))
        assert (await executor.execute(program, namespaces, Echo(3))).result == 3 * sum(range(300))
        assert _pids(executor) == pids  # one process served both loops throughout
    finally:
        await executor.aclose()


async def test_a_crashed_process_is_replaced(one_process: tuple[Runtime, Any]) -> None:
    runtime, executor = one_process
    assert (await runtime.execute("1")).result == 1
    [pid] = _pids(executor)
    os.kill(pid, signal.SIGKILL)  # a crash while idle, between two runs
    for _ in range(200):
        if pid not in _pids(executor):
            break
        await asyncio.sleep(0.01)
    outcome = await runtime.execute("return 2;")
    assert (outcome.status, outcome.result) == ("completed", 2), outcome.error
    assert _pids(executor) and pid not in _pids(executor)


async def test_processes_are_recycled_after_a_number_of_runs(make_runtime: RuntimeFactory) -> None:
    executor = codemode.DenoExecutor(timeout=20, max_processes=1, recycle_after=3)
    runtime = make_runtime(executor=executor)
    seen: list[int] = []  # the process each run was placed on (the real `acquire` runs)
    acquire = executor._pool.acquire

    async def recorded() -> Any:
        process = await acquire()
        seen.append(process.pid)
        return process

    executor._pool.acquire = recorded  # type: ignore[method-assign]
    try:
        for i in range(7):
            assert (await runtime.execute(f"return {i};")).result == i
        # Runs 1-3, 4-6 and 7 each on a process of their own (a retired process may take a moment to
        # exit, so which processes are alive right after a run says nothing).
        assert [seen.index(pid) for pid in seen] == [0, 0, 0, 3, 3, 3, 6], seen
        for _ in range(500):  # retired processes are gone once their last run ended
            if len(_pids(executor)) <= 1:
                break
            await asyncio.sleep(0.01)
        assert _pids(executor) == [seen[-1]]
    finally:
        await executor.aclose()


async def test_each_process_has_its_own_cache_directory_removed_when_it_exits(make_runtime: RuntimeFactory) -> None:
    """Deno records every program it analyses in its DENO_DIR: a directory per process, removed once
    the process has exited, keeps a long-lived executor's disk use bounded by `recycle_after` runs."""
    executor = codemode.DenoExecutor(timeout=20, max_processes=1, recycle_after=4)
    runtime = make_runtime(executor=executor)
    try:
        for i in range(13):  # four processes in turn, each retired after four distinct programs
            assert (await runtime.execute(f"const n = {i};\nreturn n * 2;")).result == 2 * i
        assert executor._deno_dir is not None
        root = Path(executor._deno_dir.name)
        for _ in range(500):  # a retired process's directory goes once its reader has reaped it
            if len(list(root.iterdir())) <= 1:
                break
            await asyncio.sleep(0.01)
        dirs = list(root.iterdir())
        assert len(dirs) == 1 and dirs[0].name.startswith("process-"), dirs
        assert (dirs[0] / "dep_analysis_cache_v2").exists()  # Deno's cache is really written there
        (pid,) = _pids(executor)
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert f"DENO_DIR={dirs[0]}".encode() in environ
    finally:
        await executor.aclose()
    assert not root.exists()


async def test_globals_are_in_place_when_the_program_module_is_evaluated() -> None:
    """The Worker starts loading the program before it sets up the connector globals and `codemode`: code
    evaluated with the module itself (not only inside the program's function) sees them all."""
    from codemode.sandbox.base import Namespace

    class Host:
        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            return f"{namespace}.{method}"

    executor = codemode.DenoExecutor(timeout=20, max_processes=1)
    namespaces = [Namespace("bench", frozenset({"echo"}))]
    # Not normalized: the expression is evaluated when the module is, and its value is the program.
    program = (
        "typeof bench.echo === 'function' && typeof codemode.search === 'function' "
        "? async () => await bench.echo({}) : async () => 'globals missing'"
    )
    try:
        for _ in range(3):  # a warm Worker each time
            result = await executor.execute(program, namespaces, Host())
            assert (result.error, result.result) == (None, "bench.echo")
    finally:
        await executor.aclose()


async def test_programs_leave_no_code_cache_behind() -> None:
    """Each program is a module of its own that never runs again: nothing of it is written to the
    processes' Deno directory, which would grow with every program run."""
    from codemode.sandbox.base import Namespace

    class Host:
        async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
            return None

    executor = codemode.DenoExecutor(timeout=20, max_processes=1)
    try:
        for i in range(5):
            code = executor.normalize(f"const values = [{i}, {i + 1}];\nreturn values.length;")
            assert (await executor.execute(code, [Namespace("bench", frozenset())], Host())).result == 2
        assert executor._deno_dir is not None
        cached = [p.name for p in Path(executor._deno_dir.name).rglob("*") if "code_cache" in p.name]
        assert cached == []
    finally:
        await executor.aclose()
