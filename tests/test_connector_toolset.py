"""ToolsetConnector (spec §8.3, §9.5): plain functions, Pydantic AI, LangChain and OpenAI Agents tools.

Every framework is the real installed package; every end-to-end run goes through `codemode.Runtime` on real
Monty (and Deno for the JavaScript twin) with a real SQLite store.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent as OpenAiAgent
from agents import RunContextWrapper, function_tool
from agents import WebSearchTool as OpenAiWebSearch
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import StructuredTool
from langchain_core.tools import tool as langchain_tool
from pydantic_ai import Agent, ModelRetry, RunContext, Tool
from pydantic_ai.native_tools import WebSearchTool
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import CombinedToolset, ExternalToolset, FunctionToolset

import codemode
from codemode.connectors.spec import ToolContext, ToolSpec
from codemode.connectors.toolset import ExcludedToolsWarning, ToolArgumentsError, ToolsetConnector

from conftest import RuntimeFactory, program

CTX = ToolContext(execution_id="exec_test")


class Calls:
    """Counts how often each tool body really ran."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ExcludedToolsWarning)
        yield


def excluded_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ExcludedToolsWarning)]


# ---------------------------------------------------------------------------
# Plain functions
# ---------------------------------------------------------------------------


def plain_tools(calls: Calls, notes: list[str]) -> list[Any]:
    def add(a: int, b: int = 2) -> int:
        """Add two numbers.

        Args:
            a: The first number.
            b: The second number.
        """
        calls.hit("add")
        return a + b

    async def whoami(ctx: ToolContext) -> str:
        """The id of the run calling this tool."""
        return ctx.execution_id

    @codemode.tool(name="save-note", requires_approval=True)
    async def save_note(text: str) -> int:
        """Save a note; a human approves every note.

        Args:
            text: What to write down.
        """
        calls.hit("save_note")
        notes.append(text)
        return len(notes)

    @save_note.revert
    def _forget(args: dict[str, Any], result: int, ctx: ToolContext) -> None:
        notes[result - 1] = f"reverted by {ctx.execution_id}"

    @codemode.tool(replay="reexecute")
    def clock() -> int:
        """A reading that changes every time."""
        calls.hit("clock")
        return calls.counts["clock"]

    return [add, whoami, save_note, clock]


async def test_default_name_is_tools_and_a_custom_name_is_honoured() -> None:
    assert (await ToolsetConnector(tools=[len]).describe()).name == "tools"
    custom = ToolsetConnector(name="math", tools=[], instructions="Arithmetic.")
    description = await custom.describe()
    assert (description.name, description.instructions, dict(description.tools)) == ("math", "Arithmetic.", {})


async def test_plain_functions_are_described_like_tool_methods(calls: Calls) -> None:
    description = await ToolsetConnector(tools=plain_tools(calls, [])).describe()
    assert list(description.tools) == ["add", "whoami", "save_note", "clock"]
    add = description.tools["add"]
    assert add.description == "Add two numbers."
    assert add.input_schema == {
        "type": "object",
        "properties": {
            "a": {"type": "integer", "description": "The first number."},
            "b": {"type": "integer", "default": 2, "description": "The second number."},
        },
        "required": ["a"],
        "additionalProperties": False,  # a misspelled argument is refused, not ignored
    }
    assert add.output_schema == {"type": "integer"}
    assert description.tools["whoami"].input_schema["properties"] == {}  # the ToolContext is injected, not asked for
    save = description.tools["save_note"]  # "save-note" sanitized; the decorator's flags survive
    assert (save.requires_approval, save.replay, save.revert is not None) == (True, "log", True)
    assert (description.tools["clock"].replay, description.tools["add"].requires_approval) == ("reexecute", False)


async def test_plain_functions_run_sync_and_async_with_the_context(calls: Calls) -> None:
    notes: list[str] = []
    connector = ToolsetConnector(tools=plain_tools(calls, notes))
    assert await connector.execute_tool("add", {"a": 40}, CTX) == 42
    assert await connector.execute_tool("whoami", {}, CTX) == "exec_test"
    assert await connector.execute_tool("save_note", {"text": "hi"}, CTX) == 1
    assert await connector.revert_action("save_note", {"text": "hi"}, 1, CTX) is True
    assert notes == ["reverted by exec_test"]


async def test_plain_invalid_arguments_never_reach_the_function(calls: Calls) -> None:
    connector = ToolsetConnector(tools=plain_tools(calls, []))
    with pytest.raises(
        ToolArgumentsError, match=r"Invalid arguments for tools\.add: a: Input should be a valid integer"
    ):
        await connector.execute_tool("add", {"a": "many"}, CTX)
    with pytest.raises(ToolArgumentsError, match=r'a: Field required.*codemode\.describe\("tools\.add"\)'):
        await connector.execute_tool("add", {"b": 1}, CTX)
    assert "add" not in calls.counts


def test_a_decorated_plain_function_stays_callable() -> None:
    @codemode.tool(requires_approval=True)
    def double(x: int) -> int:
        """Double it."""
        return 2 * x

    assert double(21) == 42


def test_a_non_function_is_refused_at_construction() -> None:
    with pytest.raises(TypeError, match="must be functions, not int"):
        ToolsetConnector(tools=[42])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"has no name\. Wrap it in a def"):
        ToolsetConnector(tools=[functools.partial(max, 1)])


async def test_sanitized_name_collision_names_both_tools() -> None:
    @codemode.tool(name="get-weather")
    def weather_a(city: str) -> str:
        """A."""
        return city

    def get_weather(city: str) -> str:
        """B."""
        return city

    with pytest.raises(ValueError, match='"get-weather" and "get_weather" on tools both map to the name "get_weather"'):
        await ToolsetConnector(tools=[weather_a, get_weather]).describe()


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_plain_functions_end_to_end(make_runtime: RuntimeFactory, calls: Calls, language: str) -> None:
    notes: list[str] = []
    runtime = make_runtime(ToolsetConnector(tools=plain_tools(calls, notes)))
    code = program(
        language,
        'total = await tools.add(a=1, b=2)\nn = await tools.save_note(text=f"total {total}")\n'
        "return {'total': total, 'notes': n, 'me': await tools.whoami()}",
        "async () => {\n  const total = await tools.add({ a: 1, b: 2 });\n"
        "  const n = await tools.save_note({ text: `total ${total}` });\n"
        "  return { total, notes: n, me: await tools.whoami() };\n}",
    )
    paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [(p.connector, p.method, p.args) for p in paused.pending] == [("tools", "save_note", {"text": "total 3"})]
    assert notes == []
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"total": 3, "notes": 1, "me": paused.execution_id}
    assert notes == ["total 3"] and calls.counts == {"add": 1, "save_note": 1}  # the read was replayed, not rerun
    assert (await runtime.rollback(done.execution_id)).reverted == [1]
    assert notes == [f"reverted by {done.execution_id}"]


# ---------------------------------------------------------------------------
# Pydantic AI
# ---------------------------------------------------------------------------


def pydantic_ai_toolset(calls: Calls) -> Any:
    def forecast(city: str, days: int = 1) -> dict[str, Any]:
        """Forecast the weather.

        Args:
            city: Where.
            days: How many days ahead.
        """
        calls.hit("forecast")
        return {"city": city, "days": days}

    def book(ctx: RunContext[str], room: str) -> dict[str, Any]:
        """Book a room."""
        calls.hit("book")
        return {
            "room": room,
            "deps": ctx.deps,
            "run_id": ctx.run_id,
            "tool_name": ctx.tool_name,
            "approved": ctx.tool_call_approved,
        }

    def picky(word: str) -> str:
        """Only likes short words."""
        calls.hit("picky")
        if len(word) > 3:
            raise ModelRetry("Use a word of at most three letters.")
        return word

    def wipe(disk: str) -> str:
        """Wipe a disk."""
        calls.hit("wipe")
        return f"wiped {disk}"

    own = FunctionToolset([forecast, Tool(book, requires_approval=True), picky], instructions="Weather and rooms.")
    dangerous = FunctionToolset([wipe]).approval_required(lambda ctx, tool_def, args: args.get("disk") == "c")
    external = ExternalToolset([ToolDefinition(name="ask_human", parameters_json_schema={"type": "object"})])
    return CombinedToolset([own, dangerous.prefixed("admin"), external]), WebSearchTool()


async def test_pydantic_ai_tools_are_described(calls: Calls) -> None:
    toolset, web_search = pydantic_ai_toolset(calls)
    connector = ToolsetConnector.from_pydantic_ai([toolset, web_search], instructions="Be careful.")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        description = await connector.describe()
        assert await connector.describe() is description
    assert list(description.tools) == ["forecast", "book", "picky", "admin_wipe"]
    assert description.instructions == "Weather and rooms.\n\nBe careful."
    forecast = description.tools["forecast"]
    assert forecast.description == "Forecast the weather."
    assert forecast.input_schema["properties"]["days"] == {
        "type": "integer",
        "default": 1,
        "description": "How many days ahead.",
    }
    assert forecast.input_schema["required"] == ["city"]
    assert forecast.output_schema == {"type": "object", "additionalProperties": True}
    approvals = {name: spec.requires_approval for name, spec in description.tools.items()}
    # Tool(requires_approval=True) and a function-valued approval_required() both always ask.
    assert approvals == {"forecast": False, "book": True, "picky": False, "admin_wipe": True}
    [message] = excluded_warnings(caught)
    assert '"web_search" (runs at the model provider' in message
    assert '"ask_human" (external' in message


async def test_pydantic_ai_tools_run_through_the_toolset(calls: Calls) -> None:
    toolset, _ = pydantic_ai_toolset(calls)
    connector = ToolsetConnector.from_pydantic_ai(toolset, deps="the-deps")
    with pytest.warns(ExcludedToolsWarning, match="ask_human"):
        await connector.describe()
    forecast = await connector.execute_tool("forecast", {"city": "Oslo", "days": "3"}, CTX)
    assert forecast == {"city": "Oslo", "days": 3}  # the framework's own validator coerced "3"
    booked = await connector.execute_tool("book", {"room": "A1"}, CTX)
    assert booked == {"room": "A1", "deps": "the-deps", "run_id": "exec_test", "tool_name": "book", "approved": True}
    # The wrapped approval function would refuse disk "c" mid-call; codemode approved it before the call.
    assert await connector.execute_tool("admin_wipe", {"disk": "c"}, CTX) == "wiped c"
    with pytest.raises(ValueError, match=r"tools\.picky: Use a word of at most three letters\."):
        await connector.execute_tool("picky", {"word": "longer"}, CTX)


async def test_pydantic_ai_invalid_arguments_never_reach_the_tool(calls: Calls) -> None:
    toolset, _ = pydantic_ai_toolset(calls)
    connector = ToolsetConnector.from_pydantic_ai(toolset)
    with pytest.warns(ExcludedToolsWarning, match="ask_human"):
        await connector.describe()
    with pytest.raises(ToolArgumentsError, match=r"tools\.forecast: days: Input should be a valid integer"):
        await connector.execute_tool("forecast", {"city": "Oslo", "days": "soon"}, CTX)
    with pytest.raises(ToolArgumentsError, match=r"tools\.book: extra: Extra inputs are not permitted"):
        await connector.execute_tool("book", {"room": "A1", "extra": 1}, CTX)
    assert calls.counts == {}


async def test_pydantic_ai_agent_and_plain_list(no_warnings: None) -> None:
    def shout(text: str) -> str:
        """Shout."""
        return text.upper()

    def hush(text: str) -> str:
        """Hush."""
        return text.lower()

    agent = Agent(tools=[shout])
    from_agent = ToolsetConnector.from_pydantic_ai(agent, name="voice")
    assert list((await from_agent.describe()).tools) == ["shout"]
    assert await from_agent.execute_tool("shout", {"text": "hey"}, CTX) == "HEY"
    from_list = ToolsetConnector.from_pydantic_ai([shout, Tool(hush, requires_approval=True)])
    tools = (await from_list.describe()).tools
    assert {n: s.requires_approval for n, s in tools.items()} == {"shout": False, "hush": True}


async def test_pydantic_ai_end_to_end(make_runtime: RuntimeFactory, calls: Calls) -> None:
    toolset, _ = pydantic_ai_toolset(calls)
    runtime = make_runtime(ToolsetConnector.from_pydantic_ai(toolset, name="hotel", deps="guest-7"))
    code = 'w = await hotel.forecast(city="Rome")\nb = await hotel.book(room="12")\nreturn [w, b]'
    with pytest.warns(ExcludedToolsWarning, match="ask_human"):  # described once, on the first run
        paused = await runtime.execute(code)
    assert paused.status == "paused", paused.error
    assert [(p.method, p.args) for p in paused.pending] == [("book", {"room": "12"})]
    assert "book" not in calls.counts
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [
        {"city": "Rome", "days": 1},
        {"room": "12", "deps": "guest-7", "run_id": done.execution_id, "tool_name": "book", "approved": True},
    ]
    assert calls.counts == {"forecast": 1, "book": 1}
    bad = await runtime.execute('return await hotel.forecast(city="Rome", days="soon")')
    assert bad.status == "error" and "Invalid arguments for hotel.forecast" in (bad.error or "")
    assert calls.counts["forecast"] == 1


# ---------------------------------------------------------------------------
# LangChain
# ---------------------------------------------------------------------------


def langchain_tools(calls: Calls) -> list[Any]:
    @langchain_tool(parse_docstring=True)
    def lookup(term: str, limit: int = 3) -> list[str]:
        """Look a term up.

        Args:
            term: What to look up.
            limit: At most this many results.
        """
        calls.hit("lookup")
        return [f"{term} {i}" for i in range(limit)]

    @langchain_tool
    async def publish(title: str, config: RunnableConfig) -> dict[str, Any]:
        """Publish a post."""
        calls.hit("publish")
        return {"title": title, "run": config["metadata"]["codemode_execution_id"]}

    def scale(x: int, factor: int = 2) -> int:
        calls.hit("scale")
        return x * factor

    scale_tool = StructuredTool.from_function(
        func=scale,
        name="scale-number",
        description="Scale a number.",
        args_schema={
            "type": "object",
            "properties": {"x": {"type": "integer"}, "factor": {"type": "integer"}},
            "required": ["x"],
        },
    )
    schema_only = {"type": "function", "function": {"name": "client_side", "parameters": {"type": "object"}}}
    return [lookup, publish, scale_tool, schema_only]


async def test_langchain_tools_are_described(calls: Calls) -> None:
    connector = ToolsetConnector.from_langchain(langchain_tools(calls), requires_approval=["publish"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        description = await connector.describe()
    assert list(description.tools) == ["lookup", "publish", "scale_number"]
    lookup = description.tools["lookup"]
    assert lookup.description == "Look a term up."
    assert lookup.input_schema == {
        "type": "object",
        "properties": {
            "term": {"type": "string", "description": "What to look up."},
            "limit": {"type": "integer", "default": 3, "description": "At most this many results."},
        },
        "required": ["term"],
    }
    assert description.tools["publish"].input_schema["properties"] == {"title": {"type": "string"}}  # no config
    assert {n: s.requires_approval for n, s in description.tools.items()} == {
        "lookup": False,
        "publish": True,
        "scale_number": False,
    }
    assert excluded_warnings(caught) == [
        'ToolsetConnector "tools" left out 1 tool(s) that cannot run on the host: '
        '"client_side" (a tool schema without a function to run).'
    ]


async def test_langchain_arguments_are_checked_against_the_schema(calls: Calls) -> None:
    connector = ToolsetConnector.from_langchain(langchain_tools(calls)[:3])
    assert await connector.execute_tool("scale_number", {"x": 4}, CTX) == 8
    # LangChain does not validate a dict schema itself: "ab" * 2 would have run. The schema refuses it first.
    with pytest.raises(ToolArgumentsError, match=r"tools\.scale_number: \['x'\]: 'ab' is not of type 'integer'"):
        await connector.execute_tool("scale_number", {"x": "ab"}, CTX)
    with pytest.raises(ToolArgumentsError, match="'term' is a required property"):
        await connector.execute_tool("lookup", {}, CTX)
    assert calls.counts == {"scale": 1}
    assert await connector.execute_tool("lookup", {"term": "owl", "limit": 2}, CTX) == ["owl 0", "owl 1"]
    assert await connector.execute_tool("publish", {"title": "T"}, CTX) == {"title": "T", "run": "exec_test"}


async def test_langchain_approval_names_must_exist(calls: Calls) -> None:
    connector = ToolsetConnector.from_langchain(langchain_tools(calls)[:3], requires_approval=["publsh"])
    with pytest.raises(ValueError, match='requires_approval names "publsh", but tools has no such tool'):
        await connector.describe()
    everything = ToolsetConnector.from_langchain(langchain_tools(calls)[:3], requires_approval=True)
    assert all(spec.requires_approval for spec in (await everything.describe()).tools.values())


async def test_langchain_sanitized_collision(calls: Calls) -> None:
    twins = [
        StructuredTool.from_function(func=lambda city: city, name=name, description="Weather.")
        for name in ("get-weather", "get_weather")
    ]
    with pytest.raises(ValueError, match='"get-weather" and "get_weather" on tools both map to the name "get_weather"'):
        await ToolsetConnector.from_langchain(twins).describe()


async def test_langchain_end_to_end(make_runtime: RuntimeFactory, calls: Calls) -> None:
    connector = ToolsetConnector.from_langchain(langchain_tools(calls)[:3], name="blog", requires_approval={"publish"})
    runtime = make_runtime(connector)
    paused = await runtime.execute(
        'hits = await blog.lookup(term="owl", limit=1)\nreturn await blog.publish(title=hits[0])'
    )
    assert paused.status == "paused", paused.error
    assert [(p.method, p.args) for p in paused.pending] == [("publish", {"title": "owl 0"})]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"title": "owl 0", "run": done.execution_id}
    assert calls.counts == {"lookup": 1, "publish": 1}


# ---------------------------------------------------------------------------
# OpenAI Agents SDK
# ---------------------------------------------------------------------------


def openai_agents_tools(calls: Calls) -> list[Any]:
    @function_tool
    def convert(amount: float, currency: str) -> dict[str, Any]:
        """Convert an amount to euros.

        Args:
            amount: How much.
            currency: The currency code.
        """
        calls.hit("convert")
        return {"eur": amount * 2, "from": currency}

    @function_tool(needs_approval=True, failure_error_function=None)
    async def transfer(ctx: RunContextWrapper[dict[str, str]], to: str, amount: float) -> dict[str, Any]:
        """Transfer money."""
        calls.hit("transfer")
        if amount <= 0:
            raise ValueError("amount must be positive")
        return {"to": to, "amount": amount, "account": ctx.context["account"]}

    async def only_large(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        return bool(params["amount"] > 100)

    @function_tool(needs_approval=only_large)
    def refund(amount: float) -> str:
        """Refund a payment."""
        calls.hit("refund")
        return f"refunded {amount}"

    return [convert, transfer, refund, OpenAiWebSearch()]


async def test_openai_agents_tools_are_described(calls: Calls) -> None:
    connector = ToolsetConnector.from_openai_agents(openai_agents_tools(calls), context={"account": "acct-1"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        description = await connector.describe()
        await connector.describe()
    assert list(description.tools) == ["convert", "transfer", "refund"]
    convert = description.tools["convert"]
    assert convert.description == "Convert an amount to euros."
    assert convert.input_schema["properties"]["amount"] == {
        "type": "number",
        "title": "Amount",
        "description": "How much.",
    }
    assert convert.input_schema["additionalProperties"] is False
    # needs_approval=True and a callable (which cannot be evaluated ahead of time) both always ask.
    assert {n: s.requires_approval for n, s in description.tools.items()} == {
        "convert": False,
        "transfer": True,
        "refund": True,
    }
    assert len(excluded_warnings(caught)) == 1
    assert '"web_search" (a hosted tool: it runs at OpenAI' in excluded_warnings(caught)[0]


async def test_openai_agents_tools_run_through_on_invoke_tool(calls: Calls, no_warnings: None) -> None:
    connector = ToolsetConnector.from_openai_agents(openai_agents_tools(calls)[:3], context={"account": "acct-1"})
    assert await connector.execute_tool("convert", {"amount": 2.5, "currency": "USD"}, CTX) == {
        "eur": 5.0,
        "from": "USD",
    }
    moved = await connector.execute_tool("transfer", {"to": "bob", "amount": 5}, CTX)
    assert moved == {"to": "bob", "amount": 5.0, "account": "acct-1"}
    with pytest.raises(Exception, match="amount must be positive"):  # failure_error_function=None: failures raise
        await connector.execute_tool("transfer", {"to": "bob", "amount": -1}, CTX)
    with pytest.raises(ToolArgumentsError, match=r"tools\.convert: arguments: 'currency' is a required property"):
        await connector.execute_tool("convert", {"amount": 1}, CTX)
    with pytest.raises(ToolArgumentsError, match="Additional properties are not allowed"):
        await connector.execute_tool("convert", {"amount": 1, "currency": "X", "fee": 0}, CTX)
    assert calls.counts == {"convert": 1, "transfer": 2}


async def test_openai_agents_agent_input(no_warnings: None, calls: Calls) -> None:
    agent = OpenAiAgent(name="bank", tools=openai_agents_tools(calls)[:1])
    assert list((await ToolsetConnector.from_openai_agents(agent).describe()).tools) == ["convert"]


async def test_openai_agents_end_to_end(make_runtime: RuntimeFactory, calls: Calls) -> None:
    tools = openai_agents_tools(calls)[:3]
    runtime = make_runtime(ToolsetConnector.from_openai_agents(tools, name="bank", context={"account": "acct-9"}))
    paused = await runtime.execute(
        'q = await bank.convert(amount=10, currency="USD")\nreturn await bank.transfer(to="ann", amount=q["eur"])'
    )
    assert paused.status == "paused", paused.error
    assert [(p.method, p.args) for p in paused.pending] == [("transfer", {"to": "ann", "amount": 20.0})]
    assert "transfer" not in calls.counts
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"to": "ann", "amount": 20.0, "account": "acct-9"}
    assert calls.counts == {"convert": 1, "transfer": 1}


# ---------------------------------------------------------------------------
# The frameworks are optional
# ---------------------------------------------------------------------------


def test_the_module_imports_without_any_framework() -> None:
    # The frameworks are installed here, so their absence is simulated: a None entry in sys.modules makes
    # Python refuse the import exactly as if the package were missing.
    script = """
import sys
for name in ("pydantic_ai", "langchain_core", "agents"):
    sys.modules[name] = None
from codemode.connectors.toolset import ToolsetConnector
for make, extra in (
    (lambda: ToolsetConnector.from_pydantic_ai([]), "pydantic-ai"),
    (lambda: ToolsetConnector.from_langchain([]), "langchain"),
    (lambda: ToolsetConnector.from_openai_agents([]), "openai-agents"),
):
    try:
        make()
    except ImportError as exc:
        assert f"pip install 'codemode[{extra}]'" in str(exc), exc
    else:
        raise AssertionError(extra)
print("ok", sorted(m for m in ("pydantic_ai", "langchain_core", "agents") if sys.modules.get(m) is not None))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok []"


# ---------------------------------------------------------------------------
# Subclasses
# ---------------------------------------------------------------------------


class GatedLangChain(ToolsetConnector):
    """The decoration hook works on framework tools too: every tool whose name starts with "publish" asks."""

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        return dataclasses.replace(spec, requires_approval=name.startswith("publish"))


async def test_framework_constructors_build_the_subclass(calls: Calls) -> None:
    connector = GatedLangChain.from_langchain(langchain_tools(calls)[:3], name="blog")
    assert isinstance(connector, GatedLangChain)
    description = await connector.describe()
    assert {n: s.requires_approval for n, s in description.tools.items()} == {
        "lookup": False,
        "publish": True,
        "scale_number": False,
    }


async def test_a_subclass_keeps_its_class_level_name_and_instructions(calls: Calls) -> None:
    class Shop(ToolsetConnector):
        name = "shop"
        instructions = "The shop's stock."

    plain = await Shop(tools=plain_tools(calls, [])[:1]).describe()
    assert (plain.name, plain.instructions, list(plain.tools)) == ("shop", "The shop's stock.", ["add"])
    framework = await Shop.from_langchain(langchain_tools(calls)[:1]).describe()
    assert (framework.name, framework.instructions, list(framework.tools)) == ("shop", "The shop's stock.", ["lookup"])
    renamed = await Shop(name="store", instructions="Another store.").describe()
    assert (renamed.name, renamed.instructions) == ("store", "Another store.")


def test_the_example_runs() -> None:
    example = Path(__file__).resolve().parent.parent / "examples" / "toolset_connector.py"
    done = subprocess.run([sys.executable, str(example)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "execute -> paused",
        "  waiting for approval: shop.order({'item': 'pears', 'quantity': 10})",
        "approve -> completed: {'low': ['pears'], 'orders': [{'id': 1, 'item': 'pears', 'quantity': 10}]}",
        "orders placed on the host: [{'id': 1, 'item': 'pears', 'quantity': 10}]",
    ]


async def test_instructions_set_after_construction_are_kept() -> None:
    def ping() -> str:
        """Ping."""
        return "pong"

    connector = ToolsetConnector(tools=[ping])
    connector.instructions = "Use metric units."
    assert (await connector.describe()).instructions == "Use metric units."
