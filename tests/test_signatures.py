"""The host API around tool signatures: connector and tool names, step names, unknown arguments,
`typing.TypedDict` in signatures, and arguments bound on the host side (`Connector.bind`, `ToolSpec.bound`).

Every runtime test runs on both executors (`[python]` / `[javascript]`) against a real SQLite file; the
OpenAPI tests call a real HTTP server on 127.0.0.1 that validates each request against Slack's document.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import codemode
from codemode import Connector, HttpOpenApiConnector, Runtime, ToolContext, ToolsetConnector, ToolSpec, tool
from codemode.connectors.toolset import ToolArgumentsError
from codemode.records import STEP_CONNECTOR
from codemode.schema.python import PythonDeclarations
from codemode.schema.typescript import TypeScriptDeclarations
from openapi_server import Reply, ValidatingServer

from catalog import load_spec
from conftest import RuntimeFactory, program

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def stored_bytes(db_path: Path) -> bytes:
    """Everything SQLite holds on disk for this store: the database and its write-ahead log."""
    return b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*") if p.is_file())


def ping_connector(name: str) -> Connector:
    class Named(Connector):
        @tool
        def ping(self) -> str:
            """Answer pong."""
            return "pong"

    connector = Named()
    connector.name = name
    return connector


# ---------------------------------------------------------------------------
# 1. Connector and tool names
# ---------------------------------------------------------------------------

SANDBOX_NAMES = [
    # Python built-ins
    "type",
    "print",
    "len",
    "input",
    "list",
    "map",
    "Exception",
    # JavaScript globals (Deno's)
    "Set",
    "Number",
    "Object",
    "Promise",
    "console",
    "JSON",
    "Math",
    "globalThis",
    "crypto",
    "self",
    "name",
    # keywords of either language
    "class",
    "delete",
    "None",
]


@pytest.mark.parametrize("name", SANDBOX_NAMES)
def test_sandbox_builtins_and_globals_are_refused_as_connector_names(name: str, db_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"Connector name {name!r} is reserved: .* Rename it, for example to"):
        Runtime([ping_connector(name)], store=codemode.SqliteStore(db_path))
    with pytest.raises(ValueError, match="is reserved"):
        ToolsetConnector(name=name, tools=[len])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("__step", "names starting with __ belong to the platform"),
        ("__items", "names starting with __ belong to the platform"),
        ("items\n", "is not a valid identifier"),
        ("items ", "is not a valid identifier"),
        ("1items", "is not a valid identifier"),
        ("", "is not a valid identifier"),
        ("codemode", "reserved for the codemode platform SDK"),
    ],
)
def test_platform_names_and_non_identifiers_are_refused(name: str, message: str, db_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        Runtime([ping_connector(name)], store=codemode.SqliteStore(db_path))


@pytest.mark.parametrize("bad", ["ping\n", "__ping", "pi ng", "class"])
async def test_tool_names_are_checked_whole(bad: str) -> None:
    class Raw(Connector):
        name = "raw"

        def tools(self) -> dict[str, ToolSpec]:
            return {bad: ToolSpec(execute=lambda args, ctx: 1)}

    with pytest.raises(ValueError, match="tool name"):
        await Raw().describe()


async def test_names_near_the_reserved_ones_run_on_both_executors(make_runtime: RuntimeFactory, language: str) -> None:
    """The check refuses exactly the colliding names: `type_api` and `sets` work, and the built-ins stay intact."""
    runtime = make_runtime(ping_connector("type_api"), ping_connector("sets"))
    code = program(
        language,
        "return [await type_api.ping(), await sets.ping(), type(1).__name__, len([1, 2])]",
        "return [await type_api.ping(), await sets.ping(), new Set([1, 1]).size, Number('2')];",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == (["pong", "pong", "int", 2] if language == "python" else ["pong", "pong", 1, 2])


# ---------------------------------------------------------------------------
# 2. Step names
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python_name", "javascript_name", "message"),
    [
        ('"x" * 201', '"x".repeat(201)', "the limit is 200"),
        ('""', '""', "codemode.step needs a name"),
        ('"   "', '"   "', "codemode.step needs a name"),
    ],
)
async def test_step_names_are_bounded(
    make_runtime: RuntimeFactory, db_path: Path, language: str, python_name: str, javascript_name: str, message: str
) -> None:
    runtime = make_runtime(ping_connector("items"))
    code = program(
        language,
        f"""
async def pick():
    return 4
try:
    await codemode.step({python_name}, pick)
except Exception as error:
    caught = str(error)
return [caught, await codemode.step("x" * 200, pick)]
""",
        f"""
let caught;
try {{
  await codemode.step({javascript_name}, async () => 4);
}} catch (error) {{
  caught = String(error.message);
}}
return [caught, await codemode.step("x".repeat(200), async () => 4)];
""",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    caught, value = outcome.result
    assert message in caught and "pick_winner" in caught
    assert value == 4
    # Only the valid step is in the log, at seq 0: the refused one took no sequence number.
    assert [(c.seq, c.connector, c.method) for c in outcome.calls] == [(0, STEP_CONNECTOR, "x" * 200)]
    assert b"x" * 201 not in stored_bytes(db_path)


@pytest.mark.parametrize("language", ["python"])
async def test_a_step_name_that_is_not_a_string_is_refused(make_runtime: RuntimeFactory) -> None:
    """Monty passes the name as the program gave it (Deno's runner makes it a string first)."""
    runtime = make_runtime(ping_connector("items"))
    outcome = await runtime.execute("async def f():\n    return 1\nreturn await codemode.step(['a'], f)")
    assert outcome.status == "error"
    assert "codemode.step needs a name" in str(outcome.error) and "it got a list" in str(outcome.error)
    assert outcome.calls == []


# ---------------------------------------------------------------------------
# 3. Unknown arguments
# ---------------------------------------------------------------------------


class Shelf(Connector):
    """A method tool with an optional argument, and a gated one."""

    name = "shelf"

    def __init__(self) -> None:
        self.placed: list[dict[str, Any]] = []

    @tool
    def find(self, title: str, limit: int = 5) -> list[str]:
        """Find books by title."""
        return [title] * limit

    @tool(requires_approval=True)
    def place(self, title: str, copies: int = 1) -> int:
        """Put a book on the shelf."""
        self.placed.append({"title": title, "copies": copies})
        return copies


def lend(title: str, days: int = 14) -> str:
    """Lend a book (a plain-function tool)."""
    return f"{title} for {days} days"


def tag(title: str, **labels: str) -> dict[str, str]:
    """Tag a book with free-form labels (extra arguments are the labels)."""
    return {"title": title, **labels}


@pytest.fixture
def shelf() -> Shelf:
    return Shelf()


@pytest.fixture
def library(make_runtime: RuntimeFactory, shelf: Shelf) -> Runtime:
    return make_runtime(shelf, ToolsetConnector("desk", [lend, tag]))


@pytest.mark.parametrize(
    ("python", "javascript", "expected"),
    [
        (
            'shelf.find(title="Dune", limt=2)',
            'shelf.find({ title: "Dune", limt: 2 })',
            'shelf.find: unknown argument "limt" (did you mean "limit"?). Allowed arguments: title, limit.',
        ),
        (
            'desk.lend(title="Dune", dayz=3)',
            'desk.lend({ title: "Dune", dayz: 3 })',
            'desk.lend: unknown argument "dayz" (did you mean "days"?). Allowed arguments: title, days.',
        ),
        (
            'shelf.find(titel="Dune")',
            'shelf.find({ titel: "Dune" })',
            'shelf.find: unknown argument "titel" (did you mean "title"?); missing required argument "title".',
        ),
        (
            'shelf.find(title="Dune", colour="red")',
            'shelf.find({ title: "Dune", colour: "red" })',
            'shelf.find: unknown argument "colour". Allowed arguments: title, limit.',
        ),
    ],
)
async def test_unknown_arguments_are_refused_before_anything_is_logged(
    library: Runtime, db_path: Path, language: str, python: str, javascript: str, expected: str
) -> None:
    outcome = await library.execute(program(language, f"return await {python}", f"return await {javascript};"))
    assert outcome.status == "error"
    assert expected in str(outcome.error)
    assert 'See codemode.describe("' in str(outcome.error)
    assert outcome.calls == []
    execution = await library.execution(outcome.execution_id)
    assert execution is not None and execution.log == []


async def test_a_misspelled_argument_of_a_gated_tool_never_reaches_an_approver(
    library: Runtime, shelf: Shelf, language: str
) -> None:
    code = program(
        language,
        'try:\n    await shelf.place(title="Dune", copise=2)\nexcept TypeError as error:\n    return str(error)',
        'try { await shelf.place({ title: "Dune", copise: 2 }); } catch (error) { return error.message; }',
    )
    outcome = await library.execute(code)
    assert outcome.status == "completed", outcome.error  # caught by the program: nothing paused
    assert 'unknown argument "copise" (did you mean "copies"?)' in outcome.result
    assert outcome.pending == [] and await library.pending() == [] and shelf.placed == []


async def test_edited_arguments_with_an_unknown_name_are_refused(library: Runtime, shelf: Shelf, language: str) -> None:
    paused = await library.execute(
        program(language, 'return await shelf.place(title="Dune")', 'return await shelf.place({ title: "Dune" });')
    )
    assert paused.status == "paused"
    refused = await library.approve(paused.execution_id, 0, args={"title": "Dune", "copis": 3})
    assert refused.status == "error" and 'unknown argument "copis" (did you mean "copies"?)' in str(refused.error)
    assert shelf.placed == []
    approved = await library.approve(paused.execution_id, 0, args={"title": "Dune", "copies": 3})
    assert approved.status == "completed" and approved.result == 3


async def test_kwargs_functions_keep_accepting_extra_arguments(library: Runtime, language: str) -> None:
    code = program(
        language,
        'return await desk.tag(title="Dune", genre="sf", shelf="B2")',
        'return await desk.tag({ title: "Dune", genre: "sf", shelf: "B2" });',
    )
    outcome = await library.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"title": "Dune", "genre": "sf", "shelf": "B2"}
    # The extras are typed by the annotation of **labels.
    wrong = await library.execute(
        program(
            language,
            'return await desk.tag(title="Dune", year=1965)',
            'return await desk.tag({ title: "Dune", year: 1965 });',
        )
    )
    assert wrong.status == "error" and "['year']: 1965 is not of type 'string'" in str(wrong.error)


async def test_derived_schemas_say_which_arguments_exist() -> None:
    described = (await ToolsetConnector("desk", [lend, tag]).describe()).tools
    assert described["lend"].input_schema["additionalProperties"] is False
    assert described["tag"].input_schema["additionalProperties"] == {"type": "string"}
    method = (await Shelf().describe()).tools["find"]
    assert method.input_schema["additionalProperties"] is False
    # Host-side calls are held to the same rule.
    with pytest.raises(ToolArgumentsError, match="dayz"):
        await ToolsetConnector("desk", [lend]).execute_tool("lend", {"title": "x", "dayz": 1}, ToolContext("t"))


def positional(text: str, /, times: int = 2) -> str:
    """Repeat a text (its first parameter is positional-only)."""
    return text * times


async def test_positional_only_parameters_are_passed_by_position(make_runtime: RuntimeFactory, language: str) -> None:
    runtime = make_runtime(ToolsetConnector("text", [positional]))
    code = program(language, 'return await text.positional(text="ab")', 'return await text.positional({ text: "ab" });')
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "abab"


# ---------------------------------------------------------------------------
# 4. typing.TypedDict in signatures
# ---------------------------------------------------------------------------


class Book(typing.TypedDict):
    """A book on the shelf."""

    isbn: str
    pages: int


class Filter(typing.TypedDict, total=False):
    author: str
    year: typing.Required[int]


class Node(typing.TypedDict):
    label: str
    children: list[Node]


class Catalog(Connector):
    name = "catalog"

    @tool
    def add(self, book: Book, where: Filter | None = None) -> Book:
        """Add a book; returns it."""
        return {"isbn": book["isbn"], "pages": book["pages"] + (where or {}).get("year", 0)}

    @tool
    def books(self) -> list[Book]:
        """Every book."""
        return [{"isbn": "1", "pages": 10}]

    @tool
    def tree(self, root: Node) -> int:
        """Count the nodes of a tree."""
        return 1 + sum(self.tree(child) for child in root["children"])


async def test_typing_typeddict_parameters_and_results_run_on_both_executors(
    make_runtime: RuntimeFactory, language: str
) -> None:
    runtime = make_runtime(Catalog())
    code = program(
        language,
        'return [await catalog.add(book={"isbn": "9", "pages": 1}, where={"year": 2}), await catalog.books(), '
        'await catalog.tree(root={"label": "a", "children": [{"label": "b", "children": []}]})]',
        'return [await catalog.add({ book: { isbn: "9", pages: 1 }, where: { year: 2 } }), await catalog.books(), '
        'await catalog.tree({ root: { label: "a", children: [{ label: "b", children: [] }] } })];',
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == [{"isbn": "9", "pages": 3}, [{"isbn": "1", "pages": 10}], 2]
    # Validation sees the TypedDict's fields: a wrong type, a missing key, an unknown key.
    for python, javascript, expected in [
        ('{"isbn": "9", "pages": "many"}', '{ isbn: "9", pages: "many" }', "['book']['pages']: 'many' is not of type"),
        ('{"isbn": "9"}', '{ isbn: "9" }', "['book']: 'pages' is a required property"),
        ('{"isbn": "9", "pages": 1, "pgaes": 2}', '{ isbn: "9", pages: 1, pgaes: 2 }', 'unknown key "pgaes"'),
    ]:
        bad = await runtime.execute(
            program(
                language,
                f"return await catalog.add(book={python})",
                f"return await catalog.add({{ book: {javascript} }});",
            )
        )
        assert bad.status == "error" and expected in str(bad.error), bad.error
        assert bad.calls == []


async def test_typing_typeddict_reaches_both_declarations() -> None:
    tools = (await Catalog().describe()).tools
    assert tools["add"].output_schema is not None and tools["add"].output_schema["title"] == "Book"
    python = PythonDeclarations().connector("catalog", tools)
    assert 'class Book(TypedDict):\n    """A book on the shelf."""\n    isbn: str\n    pages: int' in python
    assert "async def add(*, book: Book, where: Filter | None = None) -> Book:" in python
    assert "async def books() -> list[Book]:" in python
    assert "year: int" in python and "author: NotRequired[str]" in python
    assert 'children: list["Node"]' in python
    assert python.count("class Book(") == 1  # the same TypedDict in and out is declared once
    typescript = TypeScriptDeclarations().connector("catalog", tools)
    assert "isbn: string;" in typescript and "pages: number;" in typescript and "author?: string;" in typescript


async def test_the_quickstart_result_types_are_declared() -> None:
    import quickstart

    connector = quickstart.Tasks(Path(":memory:"))
    tools = (await connector.describe()).tools
    assert tools["add_task"].output_schema is not None and tools["list_tasks"].output_schema is not None
    python = PythonDeclarations().connector("tasks", tools)
    assert "-> list[Task]:" in python and "-> Task:" in python and python.count("class Task(") == 1
    assert "done: bool" in python


class Opaque:
    """Not a type pydantic can describe."""


def takes_opaque(thing: Opaque) -> str:
    return "x"


def returns_opaque() -> Opaque:
    return Opaque()


def test_a_tool_whose_schema_cannot_be_built_fails_at_construction() -> None:
    with pytest.raises(TypeError, match=r"Tool 'takes_opaque': the parameter 'thing' \(Opaque\) cannot be described"):
        ToolsetConnector("odd", [takes_opaque])
    with pytest.raises(TypeError, match=r"Tool 'returns_opaque': the return type \(Opaque\) cannot be described"):
        ToolsetConnector("odd", [returns_opaque])


async def test_a_method_whose_schema_cannot_be_built_is_a_developer_error_not_an_outage(
    make_runtime: RuntimeFactory,
) -> None:
    class Odd(Connector):
        name = "odd"

        @tool
        def get(self, thing: Opaque) -> str:
            return "x"

    runtime = make_runtime(Odd())
    with pytest.raises(TypeError, match=r"Tool '.*Odd.get': the parameter 'thing' \(Opaque\)") as raised:
        await runtime.execute("return 1")
    assert "unavailable" not in str(raised.value) and "Retry later" not in str(raised.value)
    with pytest.raises(TypeError, match="cannot be described as JSON Schema"):
        await runtime.describe("odd")


# ---------------------------------------------------------------------------
# 5. Arguments bound on the host side
# ---------------------------------------------------------------------------

SECRET = "xoxb-0123456789-secret-token-value"


class GatedSlack(HttpOpenApiConnector):
    """Slack, with posting a message gated: an approver sees the pending action."""

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        if name == "chat_postMessage":
            return dataclasses.replace(spec, requires_approval=True)
        return spec


@pytest.fixture(scope="module")
def slack_server() -> Iterator[ValidatingServer]:
    with ValidatingServer(load_spec("slack")) as server:
        yield server


async def test_a_bound_credential_never_reaches_the_model_the_log_or_the_approver(
    make_runtime: RuntimeFactory, db_path: Path, language: str, slack_server: ValidatingServer
) -> None:
    slack = GatedSlack("slack", load_spec("slack"), slack_server.base_url).bind(token=SECRET)
    runtime = make_runtime(slack)
    described = (await slack.describe()).tools["chat_postMessage"]
    assert "token" not in described.input_schema["properties"]
    assert "token" not in described.input_schema.get("required", [])
    unbound = (await HttpOpenApiConnector("slack", load_spec("slack"), slack_server.base_url).describe()).tools
    for renderer in (PythonDeclarations(), TypeScriptDeclarations()):
        assert "token" in renderer.method("slack", "chat_postMessage", unbound["chat_postMessage"])
        assert "token" not in renderer.method("slack", "chat_postMessage", described)
    assert "token" not in (await runtime.describe("slack.chat_postMessage")).types
    code = program(
        language,
        'await slack.auth_test()\nreturn await slack.chat_postMessage(body={"channel": "C1", "text": "hi"})',
        'await slack.auth_test();\nreturn await slack.chat_postMessage({ body: { channel: "C1", text: "hi" } });',
    )
    before = len(slack_server.seen)
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [p.args for p in paused.pending] == [{"body": {"channel": "C1", "text": "hi"}}]
    assert [p.args for p in await runtime.pending()] == [{"body": {"channel": "C1", "text": "hi"}}]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq, by="ann")
    assert done.status == "completed", done.error
    sent = slack_server.seen[before:]
    assert [s.operation for s in sent] == ["GET /auth.test", "POST /chat.postMessage"]
    assert all(s.ok for s in sent), [s.errors for s in sent]
    assert [s.headers.get("token") for s in sent] == [SECRET, SECRET]  # the API got the credential
    # The test server echoes what it received; the echoed credential is redacted before it is recorded.
    assert done.result["parameters"]["header"]["token"] == "<token>"
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None
    assert all("token" not in (entry.args or {}) for entry in execution.log)
    assert SECRET not in json.dumps([dataclasses.asdict(e) for e in execution.log], default=str)
    assert SECRET not in json.dumps(done.to_model_output(), default=str)
    assert SECRET.encode() not in stored_bytes(db_path)


async def test_a_bound_credential_is_redacted_from_errors(
    make_runtime: RuntimeFactory, db_path: Path, language: str, slack_server: ValidatingServer
) -> None:
    slack = HttpOpenApiConnector("slack", load_spec("slack"), slack_server.base_url).bind(token=lambda: SECRET)
    runtime = make_runtime(slack)
    body = json.dumps({"ok": False, "error": f"invalid_auth for {SECRET}"}).encode()
    slack_server.reply("GET", "/auth.revoke", Reply(401, body))
    code = program(language, "return await slack.auth_revoke()", "return await slack.auth_revoke();")
    outcome = await runtime.execute(code)
    assert outcome.status == "error"
    assert "invalid_auth for <token>" in str(outcome.error)
    assert SECRET not in str(outcome.error)
    assert SECRET.encode() not in stored_bytes(db_path)


async def test_the_program_cannot_pass_a_bound_argument(
    make_runtime: RuntimeFactory, language: str, slack_server: ValidatingServer
) -> None:
    runtime = make_runtime(HttpOpenApiConnector("slack", load_spec("slack"), slack_server.base_url).bind(token=SECRET))
    before = len(slack_server.seen)
    code = program(
        language, 'return await slack.auth_test(token="mine")', 'return await slack.auth_test({ token: "mine" });'
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "error"
    assert '"token" is supplied by the application, not by the program' in str(outcome.error)
    assert outcome.calls == [] and len(slack_server.seen) == before


class Vault:
    """Where the application keeps its credential; the bound value is read from it at every call."""

    def __init__(self) -> None:
        self.secret = SECRET
        self.reads = 0

    def read(self) -> str:
        self.reads += 1
        return self.secret


def billing_tools(log: list[tuple[str, str, str]]) -> list[Any]:
    @tool(requires_approval=True)
    def charge(customer: str, api_key: str, cents: int = 100) -> dict[str, Any]:
        """Charge a customer."""
        log.append(("charge", customer, api_key))
        return {"customer": customer, "cents": cents}

    @charge.revert
    def _refund(args: dict[str, Any], result: dict[str, Any]) -> None:
        log.append(("refund", args["customer"], args["api_key"]))

    def balance(customer: str, api_key: str) -> int:
        """A customer's balance."""
        log.append(("balance", customer, api_key))
        if customer == "nobody":
            raise LookupError(f"no customer {customer!r} under key {api_key}")
        return 7

    def echo(text: str) -> str:
        """Echo a text (takes no credential)."""
        return text

    return [charge, balance, echo]


def make_toolset(log: list[tuple[str, str, str]]) -> ToolsetConnector:
    return ToolsetConnector("billing", billing_tools(log))


async def test_a_bound_argument_of_a_plain_function_and_its_revert(
    make_runtime: RuntimeFactory, db_path: Path, language: str
) -> None:
    log: list[tuple[str, str, str]] = []
    vault = Vault()
    billing = make_toolset(log).bind(api_key=vault.read)
    runtime = make_runtime(billing)
    tools = (await billing.describe()).tools
    assert [list(t.input_schema["properties"]) for t in tools.values()] == [
        ["customer", "cents"],
        ["customer"],
        ["text"],
    ]
    for target in ("billing", "billing.charge"):
        assert "api_key" not in (await runtime.describe(target)).types
    search = await runtime.search("charge customer api key")
    assert SECRET not in json.dumps(search.to_dict())
    code = program(
        language,
        'try:\n    await billing.balance(customer="nobody")\nexcept LookupError as error:\n    print(str(error))\n'
        'return [await billing.balance(customer="c1"), await billing.charge(customer="c1", cents=250)]',
        'try { await billing.balance({ customer: "nobody" }); } catch (error) { console.log(error.message); }\n'
        'return [await billing.balance({ customer: "c1" }), await billing.charge({ customer: "c1", cents: 250 })];',
    )
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [p.args for p in paused.pending] == [{"customer": "c1", "cents": 250}]
    assert paused.logs == ["no customer 'nobody' under key <api_key>"]
    vault.secret = SECRET + "-rotated"  # a callable value is read at each call
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [7, {"customer": "c1", "cents": 250}]
    report = await runtime.rollback(paused.execution_id)
    assert report.reverted == [2]
    assert log == [
        ("balance", "nobody", SECRET),
        ("balance", "c1", SECRET),
        ("charge", "c1", SECRET + "-rotated"),
        ("refund", "c1", SECRET + "-rotated"),  # the revert needs the key, and gets it injected too
    ]
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None
    assert [e.args for e in execution.log] == [
        {"customer": "nobody"},
        {"customer": "c1"},
        {"customer": "c1", "cents": 250},
    ]
    assert SECRET.encode() not in stored_bytes(db_path)


async def test_bind_mistakes_are_the_developers() -> None:
    with pytest.raises(ValueError, match=r"bind\(\) names \"apikey\", but none of its tools takes such a parameter"):
        await make_toolset([]).bind(apikey=SECRET).describe()
    described = make_toolset([])
    await described.describe()
    with pytest.raises(RuntimeError, match="already described"):
        described.bind(api_key=SECRET)

    class PerTool(ToolsetConnector):
        def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
            return dataclasses.replace(spec, bound={"tokn": "x"}) if name == "echo" else spec

    with pytest.raises(ValueError, match=r"tool 'echo': ToolSpec.bound names 'tokn', which is not one of its"):
        await PerTool("billing", billing_tools([])).describe()


async def test_a_per_tool_binding_in_the_decoration_hook(make_runtime: RuntimeFactory, language: str) -> None:
    log: list[tuple[str, str, str]] = []

    class OnlyBalance(ToolsetConnector):
        def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
            return dataclasses.replace(spec, bound={"api_key": SECRET}) if name == "balance" else spec

    billing = OnlyBalance("billing", billing_tools(log))
    tools = (await billing.describe()).tools
    assert "api_key" not in tools["balance"].input_schema["properties"]
    assert "api_key" in tools["charge"].input_schema["properties"]  # not bound: the model still supplies it
    assert repr(tools["balance"]).count(SECRET) == 0
    runtime = make_runtime(billing)
    code = program(
        language, 'return await billing.balance(customer="c")', 'return await billing.balance({ customer: "c" });'
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed" and outcome.result == 7
    assert log == [("balance", "c", SECRET)]


COUNTER = Path(__file__).resolve().parent / "mcp_servers" / "counter.py"


async def test_a_bound_argument_of_an_mcp_tool(
    make_runtime: RuntimeFactory, db_path: Path, tmp_path: Path, language: str
) -> None:
    """The same `bind()` on a real MCP server (stdio): no MCP-specific code is involved."""
    city = "Atlantis-secret-city"
    weather = codemode.McpConnector.stdio(
        "counter", sys.executable, [str(COUNTER), "--transport", "stdio", "--state", str(tmp_path / "state")]
    ).bind(city=city)
    runtime = make_runtime(weather)
    try:
        assert "city" not in (await weather.describe()).tools["weather"].input_schema.get("properties", {})
        outcome = await runtime.execute(
            program(language, "return await counter.weather()", "return await counter.weather();")
        )
        assert outcome.status == "completed", outcome.error
        assert outcome.result == {"city": "<city>", "celsius": 21}  # the server echoed it; redacted
        assert outcome.calls[0].args == {}
        assert city.encode() not in stored_bytes(db_path)
    finally:
        await weather.aclose()


async def test_an_unknown_key_inside_an_optional_typeddict_is_named(
    make_runtime: RuntimeFactory, language: str
) -> None:
    runtime = make_runtime(Catalog())
    code = program(
        language,
        'return await catalog.add(book={"isbn": "9", "pages": 1}, where={"year": 2, "autor": "x"})',
        'return await catalog.add({ book: { isbn: "9", pages: 1 }, where: { year: 2, autor: "x" } });',
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "error"
    assert """unknown key "autor" in ['where'] (did you mean "author"?)""" in str(outcome.error)
