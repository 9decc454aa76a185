"""Connector base behaviour (spec §9.4, base cases): the decorator form, the dict form, the hooks."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping
from datetime import date
from typing import Any

import pytest

from codemode import Connector, ConnectorDescription, ToolContext, ToolSpec, tool

from conftest import Items


async def test_describe_is_derived_from_tools(items: Items) -> None:
    description = await items.describe()
    assert description.name == "items"
    assert description.instructions == "Manage the item store."
    assert list(description.tools)[:3] == ["list_items", "read_counter", "get_bytes"]
    create = description.tools["create_item"]
    assert create.description == "Create an item."
    assert create.requires_approval is True
    assert create.input_schema["required"] == ["title"]
    assert create.input_schema["properties"]["title"] == {"type": "string", "description": "The item's title."}
    assert [n for n, s in description.tools.items() if s.requires_approval] == ["create_item"]
    assert [n for n, s in description.tools.items() if s.replay == "reexecute"] == ["read_counter"]
    assert await items.describe() is description  # memoized per instance


async def test_execute_and_revert(items: Items) -> None:
    ctx = ToolContext(execution_id="e1")
    created = await items.execute_tool("create_item", {"title": "a"}, ctx)
    assert created == {"id": 1, "title": "a"} and items.items == [created]
    assert await items.revert_action("create_item", {"title": "a"}, created, ctx) is True
    assert items.items == []
    assert await items.revert_action("list_items", {}, [], ctx) is False
    with pytest.raises(LookupError, match='Tool "nope" not found on items'):
        await items.execute_tool("nope", {}, ctx)


class Derived(Connector):
    """The dict form, with the decoration hook adding approval to writes."""

    name = "derived"

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], str]] = []

    async def tools(self) -> Mapping[str, ToolSpec]:
        def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
            self.calls.append((args, ctx.execution_id))
            return args

        return {
            "get_thing": ToolSpec(execute=execute, description="Read."),
            "put_thing": ToolSpec(execute=execute, description="Write."),
        }

    def tool(self, name: str, spec: ToolSpec) -> ToolSpec:
        return dataclasses.replace(spec, requires_approval=name.startswith("put_"))


async def test_tool_hook_decorates_derived_tools() -> None:
    connector = Derived()
    description = await connector.describe()
    assert description.tools["put_thing"].requires_approval is True
    assert description.tools["get_thing"].requires_approval is False
    assert await connector.execute_tool("get_thing", {"a": 1}, ToolContext("x")) == {"a": 1}
    assert connector.calls == [({"a": 1}, "x")]


def test_approval_with_reexecute_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="cannot combine requires_approval with replay"):

        class Bad(Connector):
            name = "bad"

            @tool(requires_approval=True, replay="reexecute")
            def write(self) -> None: ...


async def test_approval_with_reexecute_is_refused_from_the_dict_form() -> None:
    class Bad(Connector):
        name = "bad"

        def tools(self) -> Mapping[str, ToolSpec]:
            return {"w": ToolSpec(execute=lambda a, c: None, requires_approval=True, replay="reexecute")}

    with pytest.raises(ValueError, match="cannot combine requires_approval with replay"):
        await Bad().describe()


async def test_tool_names_must_be_identifiers() -> None:
    class Bad(Connector):
        name = "bad"

        def tools(self) -> Mapping[str, ToolSpec]:
            return {"get-thing": ToolSpec(execute=lambda a, c: None)}

    with pytest.raises(ValueError, match="sanitize_identifier"):
        await Bad().describe()


async def test_sync_tools_and_pydantic_coercion() -> None:
    class Calendar(Connector):
        name = "calendar"

        @tool
        def weekday(self, day: date, ctx: ToolContext) -> str:
            """Name the weekday of a date."""
            return f"{day:%A} for {ctx.execution_id}"

    description = await Calendar().describe()
    assert description.tools["weekday"].input_schema["properties"]["day"]["format"] == "date"
    assert "ctx" not in description.tools["weekday"].input_schema["properties"]
    assert await Calendar().execute_tool("weekday", {"day": "2026-11-24"}, ToolContext("e")) == "Tuesday for e"


class Flaky(Connector):
    """A connector whose backend is down until `up` is set, and which records being closed."""

    name = "flaky"

    def __init__(self) -> None:
        self.up = False
        self.closed = 0

    def tools(self) -> Mapping[str, ToolSpec]:
        if not self.up:
            raise ConnectionRefusedError("backend refused the connection")
        return {"ping": ToolSpec(execute=lambda args, ctx: "pong", description="Ping.")}

    async def aclose(self) -> None:
        self.closed += 1


async def test_an_unavailable_connector_gives_an_error_outcome_and_recovers(make_runtime: Any) -> None:
    flaky = Flaky()
    runtime = make_runtime(flaky)
    outcome = await runtime.execute("return await flaky.ping()")
    assert outcome.status == "error"
    assert 'OSError: flaky.ping did not run. Connector "flaky" is unavailable' in (outcome.error or "")
    assert "backend refused the connection" in (outcome.error or "")
    assert [(c.method, c.state) for c in outcome.calls] == [("ping", "error")]  # a recorded fact
    flaky.up = True  # the failure is not memoized: the next run describes again
    outcome = await runtime.execute("return await flaky.ping()")
    assert outcome.status == "completed" and outcome.result == "pong"
    await runtime.aclose()
    assert flaky.closed == 1


class Blobs(Connector):
    name = "blobs"

    @tool
    def size(self, data: bytes, day: date) -> str:
        """Size of a blob, stamped with a day."""
        return f"{len(data)} bytes on {day:%A}"


async def test_bytes_and_dates_pass_argument_validation(make_runtime: Any) -> None:
    runtime = make_runtime(Blobs())
    outcome = await runtime.execute(
        "import datetime\nreturn await blobs.size(data=b'abc', day=datetime.date(2026, 11, 24))"
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "3 bytes on Tuesday"
    bad = await runtime.execute("return await blobs.size(data=3, day='2026-11-24')")
    assert bad.status == "error" and "Invalid arguments for blobs.size" in (bad.error or "")


async def test_reprs_stay_small_whatever_the_schemas() -> None:
    # Python 3.11's asyncio.run formats the main task (and so its result) when it restores SIGINT,
    # so a describe() result's repr must not walk megabytes of schema.
    huge = {
        "type": "object",
        "properties": {f"p{i}": {"type": "string", "description": "x" * 1000} for i in range(500)},
    }
    spec = ToolSpec(execute=lambda args, ctx: None, description="Big.", input_schema=huge, output_schema=huge)
    description = ConnectorDescription(name="big", instructions=None, tools={"t": spec})
    assert len(repr(spec)) < 500
    assert repr(description) == "ConnectorDescription(name='big', tools=1)"


def test_describe_contended_on_two_event_loops() -> None:
    class Slow(Connector):
        name = "slow"

        async def tools(self) -> Mapping[str, ToolSpec]:
            await asyncio.sleep(0.05)
            return {"ping": ToolSpec(execute=lambda args, ctx: "pong")}

    async def twice(connector: Connector) -> int:
        first, second = await asyncio.gather(connector.describe(), connector.describe())
        assert first is second
        return len(first.tools)

    connector = Slow()
    assert asyncio.run(twice(connector)) == 1
    connector._description = None  # force a second contended resolution, on a new loop
    assert asyncio.run(twice(connector)) == 1


async def test_a_connector_mistake_reaches_the_developer_not_the_model(make_runtime: Any) -> None:
    class Misnamed(Connector):
        name = "misnamed"

        def tools(self) -> Mapping[str, ToolSpec]:
            return {"get-thing": ToolSpec(execute=lambda args, ctx: None)}

    runtime = make_runtime(Misnamed())
    with pytest.raises(ValueError, match="sanitize_identifier"):
        await runtime.execute("return 1")


async def test_instructions_set_after_construction_follow_the_sources_own() -> None:
    class Derived(Connector):
        name = "derived"

        def tools(self) -> Mapping[str, ToolSpec]:
            self._source_instructions = "From the server."
            return {}

    connector = Derived()
    connector.instructions = "Use metric units."
    assert (await connector.describe()).instructions == "From the server.\n\nUse metric units."


class _Quiet(Connector):
    """Keeps the base class's empty hooks."""

    name = "quiet"

    @tool
    def ping(self) -> str:
        """Answer."""
        return "pong"

    @tool
    def ping_ctx(self, ctx: ToolContext) -> str:
        """Answer with the call's seq."""
        return f"pong {ctx.seq}"


class _Hooked(_Quiet):
    name = "hooked"

    def __init__(self) -> None:
        self.ends: list[tuple[str, str]] = []
        self.disposed: list[tuple[str, str]] = []

    async def on_pass_end(self, execution_id: str, status: str) -> None:
        self.ends.append((execution_id, status))

    async def dispose_execution(self, execution_id: str, status: str) -> None:
        self.disposed.append((execution_id, status))


async def test_lifecycle_hooks_reach_every_connector_that_has_them(tmp_path: Any) -> None:
    import codemode

    quiet, one, two = _Quiet(), _Hooked(), _Hooked()
    two.name = "hooked2"
    on_instance: list[str] = []

    async def instance_hook(execution_id: str, status: str) -> None:
        on_instance.append(status)

    quiet.on_pass_end = instance_hook  # type: ignore[method-assign]  # a hook set on the instance counts too
    store = codemode.SqliteStore(tmp_path / "hooks.db")
    for connectors in ([quiet, one], [quiet, one, two]):
        async with codemode.Runtime(connectors, store=store) as runtime:
            outcome = await runtime.execute("return await hooked.ping()")
        assert outcome.status == "completed" and outcome.result == "pong"
        assert one.ends[-1] == (outcome.execution_id, "completed")
        assert one.disposed[-1] == (outcome.execution_id, "completed")
    assert len(one.ends) == 2 and two.ends == [(outcome.execution_id, "completed")]
    assert on_instance == ["completed", "completed"]


async def test_hooks_of_the_base_class_are_skipped_and_overrides_are_seen() -> None:
    from codemode.runtime.hooks import has_hook

    assert not has_hook(_Quiet(), "on_pass_end") and not has_hook(_Quiet(), "dispose_execution")
    assert has_hook(_Hooked(), "on_pass_end") and has_hook(_Hooked(), "dispose_execution")


async def test_a_tool_without_parameters_still_refuses_arguments() -> None:
    quiet = _Quiet()
    ctx = ToolContext(execution_id="e1", seq=3)
    assert await quiet.execute_tool("ping", {}, ctx) == "pong"
    assert await quiet.execute_tool("ping_ctx", {}, ctx) == "pong 3"
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        await quiet.execute_tool("ping", {"x": 1}, ctx)
