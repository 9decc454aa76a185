"""The durable runtime end to end (the twins of spec §9.1 and §9.2), on both executors and real SQLite files.

Every program is written twice, in Python for Monty and in JavaScript for Deno, with the same behaviour, and
each test runs once per language (`[python]` / `[javascript]` in the test ids).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import codemode
from codemode import Connector, Runtime, tool
from codemode.replay import Call

from conftest import Items, RuntimeFactory, execute_sql, new_executor, program

BOTH_STORES = True  # every test runs on SQLite and on PostgreSQL (conftest.pytest_generate_tests)


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def create(language: str, title: str) -> str:
    """A program whose only statement is a call needing approval."""
    return program(
        language, f'await items.create_item(title="{title}")', f'await items.create_item({{ title: "{title}" }});'
    )


async def test_read_only_call_completes(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(language, "return await items.list_items()", "async () => await items.list_items()")
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == []
    assert outcome.execution_id.startswith("exec_")


def test_tool_description_names_the_only_globals(runtime: Runtime) -> None:
    description = runtime.tool().description
    assert "The ONLY globals are `items` and `codemode`" in description
    assert "- `items` — Manage the item store." in description
    hinted = runtime.tool(connector_hints={"items": "manage the item store"}).description
    assert "- `items` — manage the item store" in hinted
    assert runtime.tool(description="custom").description == "custom"


async def test_undefined_global_gets_the_globals_hint(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(language, "host.write_file('/etc/passwd', 'x')", 'host.write_file("/etc/passwd", "x");')
    )
    assert outcome.status == "error"
    assert outcome.error is not None
    assert program(language, "name 'host' is not defined", "ReferenceError: host is not defined") in outcome.error
    assert "the only globals available in the sandbox are: items, codemode" in outcome.error
    assert "line 1" in outcome.error


async def test_approval_pauses_then_runs_exactly_once(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(
        program(
            language,
            'return await items.create_item(title="hello")',
            'return await items.create_item({ title: "hello" });',
        )
    )
    assert paused.status == "paused"
    assert [(p.connector, p.method, p.args) for p in paused.pending] == [("items", "create_item", {"title": "hello"})]
    assert items.items == []
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == {"id": 1, "title": "hello"}
    assert items.counts["create_item"] == 1


async def test_calls_echo_the_log(runtime: Runtime, language: str) -> None:
    code = program(
        language,
        'await items.list_items()\nreturn await items.create_item(title="t")',
        'await items.list_items();\nreturn await items.create_item({ title: "t" });',
    )
    paused = await runtime.execute(code)
    assert [(c.method, c.state, c.requires_approval) for c in paused.calls] == [
        ("list_items", "applied", False),
        ("create_item", "pending", True),
    ]
    assert paused.calls[1].args == {"title": "t"}
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.calls[1].state == "applied"
    assert done.calls[1].result == {"id": 1, "title": "t"}


async def test_reads_before_the_pause_are_replayed(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        "before = await items.list_items()\n"
        'created = await items.create_item(title="x")\n'
        'return {"before_count": len(before), "created": created}',
        "const before = await items.list_items();\n"
        'const created = await items.create_item({ title: "x" });\n'
        "return { before_count: before.length, created };",
    )
    paused = await runtime.execute(code)
    items.items.append({"id": 99, "title": "changed meanwhile"})
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result["before_count"] == 0  # the recorded read, not a fresh one
    assert items.counts["list_items"] == 1
    assert items.counts["create_item"] == 1


async def test_a_paused_pass_keeps_its_logs(runtime: Runtime, language: str) -> None:
    paused = await runtime.execute(
        program(
            language,
            'print("before")\nawait items.create_item(title="x")',
            'console.log("before");\nawait items.create_item({ title: "x" });',
        )
    )
    assert paused.status == "paused"
    assert paused.logs == ["before"]
    assert paused.to_model_output()["logs"] == ["before"]


async def test_reject_ends_the_run(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "no"))
    assert await runtime.reject(paused.execution_id, paused.pending[0].seq) is True
    assert items.items == []
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "rejected"
    assert execution.error == "Action items.create_item rejected by user"


async def test_approving_a_rejected_run_revives_nothing(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "no"))
    await runtime.reject(paused.execution_id, paused.pending[0].seq)
    outcome = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert outcome.status == "error"
    assert "not awaiting a decision" in (outcome.error or "") and "rejected" in (outcome.error or "")
    assert await runtime.pending() == []
    assert items.items == []
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "rejected"


async def test_rollback_reverts_in_reverse_order(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        'await items.add_note(text="n")\nreturn await items.create_item(title="second")',
        'await items.add_note({ text: "n" });\nreturn await items.create_item({ title: "second" });',
    )
    paused = await runtime.execute(code)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed"
    report = await runtime.rollback(done.execution_id)
    assert report == codemode.RollbackReport(reverted=[1, 0])
    assert items.deleted == [{"id": 1, "title": "second"}]
    assert items.notes == ["__reverted__"]
    execution = await runtime.execution(done.execution_id)
    assert execution is not None and execution.status == "rolled_back"
    assert [c.state for c in execution.log] == ["reverted", "reverted"]


async def test_swallowing_the_pause_cannot_drive_more_effects(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        "try:\n"
        '    await items.create_item(title="a")\n'
        "except BaseException:\n"
        "    pass\n"
        "try:\n"
        '    await items.create_item(title="b")\n'
        "except BaseException:\n"
        "    pass\n"
        'await items.add_note(text="sneaky")\n'
        "return 'done'",
        "try {\n"
        '  await items.create_item({ title: "a" });\n'
        "} catch {}\n"
        "try {\n"
        '  await items.create_item({ title: "b" });\n'
        "} catch {}\n"
        'await items.add_note({ text: "sneaky" });\n'
        'return "done";',
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "paused"
    assert len(outcome.pending) == 1
    assert items.items == [] and items.notes == []


async def test_pending_aggregates_paused_runs(runtime: Runtime, language: str) -> None:
    a, b = await asyncio.gather(runtime.execute(create(language, "A")), runtime.execute(create(language, "B")))
    titles = sorted(p.args["title"] for p in await runtime.pending())
    assert titles == ["A", "B"]
    assert [p.args["title"] for p in await runtime.pending(a.execution_id)] == ["A"]
    assert b.status == "paused"


async def test_nondeterministic_arguments_diverge_on_replay(
    make_runtime: RuntimeFactory, items: Items, language: str
) -> None:
    code = program(
        language,
        "import random\nawait items.create_item(title=str(random.random()))",
        "await items.create_item({ title: String(Math.random()) });",
    )
    replaying = new_executor(language, checkpoints=False) if language == "python" else None
    runtime = make_runtime(items, **({"executor": replaying} if replaying else {}))
    try:
        paused = await runtime.execute(code)
        outcome = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    finally:
        if replaying is not None:
            await replaying.aclose()
    assert outcome.status == "error"
    assert "divergence" in (outcome.error or "").lower()
    assert items.items == []
    assert await runtime.pending() == []
    assert await runtime.pending(paused.execution_id) == []


async def test_step_makes_nondeterminism_replayable(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        "import random\n"
        'value = await codemode.step("rand", lambda: random.random())\n'
        "return await items.create_item(title=str(value))",
        'const value = await codemode.step("rand", () => Math.random());\n'
        "return await items.create_item({ title: String(value) });",
    )
    paused = await runtime.execute(code)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert len(items.items) == 1
    assert done.calls[0].connector == "__step" and done.calls[0].method == "rand"


async def test_reject_racing_an_approved_execute(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "race"))
    store, name, eid = runtime.store, runtime.name, paused.execution_id
    approval = codemode.Decision("approve", "ann", None, datetime.now(timezone.utc))
    settled = await store.settle(name, eid, 0, approval)
    assert settled.kind == "resumed" and settled.claim is not None
    attempt = settled.claim.attempt
    verdict = await store.decide(name, eid, attempt, Call(0, "items", "create_item", '{"title":"race"}', None, True))
    assert verdict.kind == "execute"
    assert await runtime.reject(eid, 0) is False
    execution = await runtime.execution(eid)
    assert execution is not None and execution.status == "running"
    assert execution.log[0].state == "executing"
    assert await store.record_result(name, eid, attempt, 0, '{"id":1}')
    execution = await runtime.execution(eid)
    assert execution is not None and execution.log[0].state == "applied"


async def test_throwing_connector_is_an_error_outcome(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "await items.boom()", "await items.boom();"))
    assert outcome.status == "error"
    assert "connector boom" in (outcome.error or "")
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "error"


async def test_tool_errors_are_catchable(runtime: Runtime, language: str) -> None:
    code = program(
        language,
        "try:\n    await items.boom()\nexcept RuntimeError as e:\n    return 'caught: ' + str(e)",
        "try {\n"
        "  await items.boom();\n"
        "} catch (e) {\n"
        '  if (e.name !== "RuntimeError") throw e;\n'
        '  return "caught: " + e.message;\n'
        "}",
    )
    outcome = await runtime.execute(code)
    assert outcome.result == "caught: connector boom"
    assert outcome.calls[0].state == "error"


async def test_concurrent_runs_are_independent(runtime: Runtime, language: str) -> None:
    a, b = await asyncio.gather(
        runtime.execute(program(language, "'A'", '"A"')), runtime.execute(program(language, "'B'", '"B"'))
    )
    assert (a.result, b.result) == ("A", "B")
    assert a.execution_id != b.execution_id


async def test_retention_keeps_max_executions(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    runtime = make_runtime(items, max_executions=2)
    for i in range(5):
        await runtime.execute(program(language, str(i), f"return {i};"))
    assert len(await runtime.executions()) <= 3


async def test_snippet_runs_with_input(runtime: Runtime, language: str) -> None:
    first = await runtime.execute(
        program(
            language,
            "return 'ran:' + (input if input is not None else 'none')",
            'async (input) => "ran:" + (input ?? "none")',
        )
    )
    assert first.result == "ran:none"
    await runtime.save_snippet("greet", execution_id=first.execution_id, description="Greets")
    outcome = await runtime.execute(
        program(language, 'return await codemode.run("greet", "world")', 'return await codemode.run("greet", "world");')
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "ran:world"


async def test_snippets_from_fenced_and_statement_code(runtime: Runtime, language: str) -> None:
    fenced = await runtime.execute(
        program(language, "```python\nx = 40\nreturn x + 2\n```", "```javascript\nconst x = 40;\nreturn x + 2;\n```")
    )
    block = await runtime.execute(
        program(
            language,
            "found = await items.list_items()\nreturn len(found)",
            "const found = await items.list_items();\nreturn found.length;",
        )
    )
    assert (fenced.result, block.result) == (42, 0)
    await runtime.save_snippet("fenced", execution_id=fenced.execution_id)
    await runtime.save_snippet("block", execution_id=block.execution_id)
    outcome = await runtime.execute(
        program(
            language,
            'return [await codemode.run("fenced"), await codemode.run("block")]',
            'return [await codemode.run("fenced"), await codemode.run("block")];',
        )
    )
    assert outcome.result == [42, 0]


async def test_delete_execution(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "1", "1;"))
    assert await runtime.delete_execution(outcome.execution_id) is True
    assert await runtime.execution(outcome.execution_id) is None
    assert await runtime.delete_execution(outcome.execution_id) is False


async def test_tools_receive_the_execution_id(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "await items.session_id()", "await items.session_id();"))
    assert outcome.result == outcome.execution_id


async def test_completed_run_disposes_once(runtime: Runtime, items: Items, language: str) -> None:
    outcome = await runtime.execute(program(language, "1", "1;"))
    assert items.disposed == [(outcome.execution_id, "completed")]


async def test_no_dispose_while_paused(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    assert items.disposed == []
    await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert items.disposed == [(paused.execution_id, "completed")]


async def test_reject_disposes(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    await runtime.reject(paused.execution_id, paused.pending[0].seq)
    assert items.disposed == [(paused.execution_id, "rejected")]


async def test_stale_reject_changes_nothing(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    assert await runtime.reject(paused.execution_id, 999) is False
    assert items.disposed == []
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed"
    assert items.disposed == [(paused.execution_id, "completed")]


async def test_rollback_disposes_again(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    await runtime.approve(paused.execution_id, paused.pending[0].seq)
    await runtime.rollback(paused.execution_id)
    assert [s for _, s in items.disposed] == ["completed", "rolled_back"]


async def test_pass_end_fires_on_pause_and_resume(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    assert items.pass_ends == [(paused.execution_id, "paused")]
    await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert [s for _, s in items.pass_ends] == ["paused", "completed"]


async def test_ephemeral_reads_reexecute_on_resume(runtime: Runtime, language: str) -> None:
    code = program(
        language,
        'counter = await items.read_counter()\nawait items.create_item(title="x")\nreturn counter',
        'const counter = await items.read_counter();\nawait items.create_item({ title: "x" });\nreturn counter;',
    )
    paused = await runtime.execute(code)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.result == {"reads": 2}
    entry = done.calls[0]
    assert (entry.state, entry.result, entry.ephemeral) == ("applied", None, True)


async def test_bytes_replay_as_bytes(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        'data = await items.get_bytes()\nawait items.create_item(title="x")\nreturn [type(data).__name__, list(data)]',
        "const data = await items.get_bytes();\n"
        'await items.create_item({ title: "x" });\n'
        'return [data instanceof Uint8Array ? "Uint8Array" : typeof data, Array.from(data)];',
    )
    paused = await runtime.execute(code)
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.result == [program(language, "bytes", "Uint8Array"), [1, 2, 3, 4, 5]]
    assert items.counts["get_bytes"] == 1


async def test_unrecordable_result_fails_the_run(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(
            language,
            "r = await items.big_result()\nreturn len(r)",
            "const r = await items.big_result();\nreturn r.length;",
        )
    )
    assert outcome.status == "error"
    assert "too large to record durably" in (outcome.error or "")
    assert "only the fields you need" in (outcome.error or "")
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "error"
    assert execution.log[0].state == "error"


async def test_huge_final_result_still_completes(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "'y' * 1_100_000", '"y".repeat(1_100_000);'))
    assert outcome.status == "completed"
    assert outcome.result == "y" * 1_100_000
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and "result omitted from the audit trail" in execution.result


async def test_expire_paused(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    assert await runtime.expire_paused(timedelta(minutes=1)) == []
    assert items.disposed == []
    await asyncio.sleep(0.01)
    assert await runtime.expire_paused(timedelta(0)) == [paused.execution_id]
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.status == "rejected"
    assert "Expired awaiting approval" in (execution.error or "")
    assert await runtime.pending() == []
    assert items.disposed == [(paused.execution_id, "rejected")]
    assert (await runtime.approve(paused.execution_id, paused.pending[0].seq)).status == "error"


async def test_expire_stuck_running(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    runtime = make_runtime(items, heartbeat_interval=0.2)
    eid = (await runtime.store.begin(runtime.name, program(language, "1", "1;"), ["items"], 50)).execution_id
    assert await runtime.expire_paused(timedelta(minutes=1)) == []
    await asyncio.sleep(1.1)
    assert await runtime.expire_paused(timedelta(0)) == []  # too short to tell a stuck run from a live one
    assert await runtime.expire_paused(timedelta(seconds=1)) == [eid]
    execution = await runtime.execution(eid)
    assert execution is not None and execution.status == "error"
    assert "Expired while running" in (execution.error or "")
    assert await runtime.expire_paused(timedelta(seconds=1)) == []


async def test_deleting_a_paused_run_disposes(runtime: Runtime, items: Items, language: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    assert await runtime.delete_execution(paused.execution_id)
    assert items.disposed == [(paused.execution_id, "rejected")]


async def test_oversized_code_records_nothing(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "#", "//") + "x" * 1_000_001)
    assert outcome.status == "error" and outcome.execution_id == ""
    assert "too large to record durably" in (outcome.error or "")
    assert await runtime.executions() == []


async def test_runtime_names_keep_separate_histories(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    default, other = make_runtime(items), make_runtime(items, name="other")
    await default.execute(program(language, "'d'", '"d";'))
    await other.execute(program(language, "'o'", '"o";'))
    assert [e.result for e in await default.executions()] == ["d"]
    assert [e.result for e in await other.executions()] == ["o"]


async def test_resume_needs_the_recorded_connectors(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    runtime = make_runtime(items)
    paused = await runtime.execute(create(language, "x"))
    execution = await runtime.execution(paused.execution_id)
    assert execution is not None and execution.connectors == ["items"]
    bare = make_runtime()
    outcome = await bare.approve(paused.execution_id, paused.pending[0].seq)
    assert outcome.status == "error"
    assert 'requires connector(s) "items"' in (outcome.error or "")
    assert (await runtime.execution(paused.execution_id)).status == "paused"  # type: ignore[union-attr]
    assert (await runtime.approve(paused.execution_id, paused.pending[0].seq)).status == "completed"


async def test_snippet_needs_its_connectors(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    runtime = make_runtime(items)
    first = await runtime.execute(program(language, "await items.list_items()", "await items.list_items();"))
    snippet = await runtime.save_snippet("lister", execution_id=first.execution_id)
    assert snippet.connectors == ["items"]
    bare = make_runtime()
    outcome = await bare.execute(program(language, 'await codemode.run("lister")', 'await codemode.run("lister");'))
    assert outcome.status == "completed"
    assert 'requires connector(s) "items"' in outcome.result["error"]


async def test_transform_result_shapes_only_the_model_view(
    make_runtime: RuntimeFactory, items: Items, language: str
) -> None:
    runtime = make_runtime(items, transform_result=lambda r: {"shaped": r})
    first = await runtime.execute(program(language, "await items.list_items()", "await items.list_items();"))
    assert first.result == {"shaped": []}
    paused = await runtime.execute(create(language, "z"))
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.result == {"shaped": {"id": 1, "title": "z"}}
    stored = await runtime.execution(done.execution_id)
    assert stored is not None and stored.result == {"id": 1, "title": "z"}


# -- recovery with a fresh runtime instance (spec §9.2: "eviction") ----------


async def test_fresh_instance_resumes_without_reexecuting_reads(make_runtime: RuntimeFactory, language: str) -> None:
    first_items = Items()
    runtime = make_runtime(first_items)
    code = program(
        language,
        "before = await items.list_items()\n"
        "data = await items.get_bytes()\n"
        'created = await items.create_item(title="x")\n'
        'return {"before": len(before), "bytes": list(data), "created": created}',
        "const before = await items.list_items();\n"
        "const data = await items.get_bytes();\n"
        'const created = await items.create_item({ title: "x" });\n'
        "return { before: before.length, bytes: Array.from(data), created };",
    )
    paused = await runtime.execute(code)
    assert first_items.counts == {"list_items": 1, "get_bytes": 1}
    fresh_items = Items()
    fresh = make_runtime(fresh_items)
    assert [p.method for p in await fresh.pending(paused.execution_id)] == ["create_item"]
    done = await fresh.approve(paused.execution_id, paused.pending[0].seq)
    assert done.result == {"before": 0, "bytes": [1, 2, 3, 4, 5], "created": {"id": 1, "title": "x"}}
    assert fresh_items.counts == {"create_item": 1}
    assert fresh_items.disposed == [(paused.execution_id, "completed")]
    assert fresh_items.pass_ends == [(paused.execution_id, "completed")]


async def test_fresh_instance_rejects(make_runtime: RuntimeFactory, language: str) -> None:
    runtime = make_runtime(Items())
    paused = await runtime.execute(create(language, "x"))
    fresh_items = Items()
    fresh = make_runtime(fresh_items)
    assert await fresh.reject(paused.execution_id, paused.pending[0].seq) is True
    assert fresh_items.disposed == [(paused.execution_id, "rejected")]
    assert (await fresh.execution(paused.execution_id)).status == "rejected"  # type: ignore[union-attr]
    assert fresh_items.items == [] and await fresh.pending() == []


# -- our additions (DESIGN §5) -----------------------------------------------


async def test_bad_arguments_are_caught_before_logging(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        "try:\n    await items.create_item(title=42)\nexcept TypeError as e:\n    return str(e)",
        "try {\n"
        "  await items.create_item({ title: 42 });\n"
        "} catch (e) {\n"
        "  if (!(e instanceof TypeError)) throw e;\n"
        "  return e.message;\n"
        "}",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed"
    assert "Invalid arguments for items.create_item" in outcome.result
    assert "'title'" in outcome.result
    assert outcome.calls == []


async def test_missing_argument_is_named(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "await items.create_item()", "await items.create_item();"))
    assert outcome.status == "error"
    assert "'title' is a required property" in (outcome.error or "")


async def test_dict_argument_form(runtime: Runtime, language: str) -> None:
    paused = await runtime.execute(
        program(language, 'await items.create_item({"title": "d"})', 'await items.create_item({ "title": "d" });')
    )
    assert paused.pending[0].args == {"title": "d"}


async def test_parallel_calls_get_program_order_seqs(runtime: Runtime, items: Items, language: str) -> None:
    code = program(
        language,
        "import asyncio\n"
        "a, b, c = await asyncio.gather(items.list_items(), items.get_bytes(), items.add_note(text='n'))\n"
        'await items.create_item(title="after")\n'
        "return [len(a), len(b), c]",
        "const [a, b, c] = await Promise.all([items.list_items(), items.get_bytes(), items.add_note({ text: 'n' })]);\n"
        'await items.create_item({ title: "after" });\n'
        "return [a.length, b.length, c];",
    )
    paused = await runtime.execute(code)
    assert [c.method for c in paused.calls] == ["list_items", "get_bytes", "add_note", "create_item"]
    done = await runtime.approve(paused.execution_id, paused.pending[0].seq)
    assert done.status == "completed", done.error
    assert done.result == [0, 5, 1]
    assert items.counts == {"list_items": 1, "get_bytes": 1, "create_item": 1}
    assert items.notes == ["n"]


async def test_reject_needs_a_paused_run(runtime: Runtime, db_path: Path, language: str, store_kind: str) -> None:
    paused = await runtime.execute(create(language, "x"))
    # Another writer failed the run while its entry still reads `pending`.
    execute_sql(store_kind, db_path, "UPDATE cm_executions SET status = 'error' WHERE id = ?", (paused.execution_id,))
    assert await runtime.reject(paused.execution_id, paused.pending[0].seq) is False


async def test_snippet_input_is_validated(runtime: Runtime, language: str) -> None:
    first = await runtime.execute(program(language, "return input['n'] * 2", "async (input) => input.n * 2"))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    await runtime.save_snippet("double", execution_id=first.execution_id, input_schema=schema)
    ok = await runtime.execute(
        program(
            language, 'return await codemode.run("double", {"n": 4})', 'return await codemode.run("double", { n: 4 });'
        )
    )
    assert ok.result == 8
    bad = await runtime.execute(
        program(
            language,
            'return await codemode.run("double", {"n": "four"})',
            'return await codemode.run("double", { n: "four" });',
        )
    )
    assert bad.status == "error"
    assert 'Invalid input for snippet "double"' in (bad.error or "")


async def test_connector_names_are_checked(items: Items, db_path: Path) -> None:
    with pytest.raises(ValueError, match='Duplicate connector name "items"'):
        Runtime([items, Items()], store=codemode.SqliteStore(db_path))
    bad = Items()
    bad.name = "codemode"
    with pytest.raises(ValueError, match="reserved"):
        Runtime([bad], store=codemode.SqliteStore(db_path))
    bad.name = "not-valid"
    with pytest.raises(ValueError, match="not a valid identifier"):
        Runtime([bad], store=codemode.SqliteStore(db_path))


async def test_model_output_has_no_call_log(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(language, "print('hi')\nawait items.list_items()", 'console.log("hi");\nawait items.list_items();')
    )
    out = outcome.to_model_output()
    assert out == {"status": "completed", "execution_id": outcome.execution_id, "result": [], "logs": ["hi"]}
    paused = (await runtime.execute(create(language, "p"))).to_model_output()
    assert paused["status"] == "paused" and "do not run the code again" in paused["message"]


async def test_recover_refuses_a_live_or_ended_run(make_runtime: RuntimeFactory, items: Items, language: str) -> None:
    runtime = make_runtime(items, heartbeat_interval=0.1)
    eid = (await runtime.store.begin(runtime.name, program(language, "1", "1;"), ["items"], 50)).execution_id
    live = await runtime.recover(eid, stale_after=timedelta(seconds=30))
    assert live.status == "error" and "cannot be recovered (status: running)" in (live.error or "")
    done = await runtime.execute(program(language, "1", "1;"))
    ended = await runtime.recover(done.execution_id, stale_after=timedelta(seconds=30))
    assert "status: completed" in (ended.error or "")
    with pytest.raises(ValueError, match="stale_after"):
        await runtime.recover(eid, stale_after=timedelta(seconds=0))


# -- coverage gaps the spec lists (§9.22) -------------------------------------


async def test_oversized_arguments_fail_the_run(runtime: Runtime, items: Items, language: str) -> None:
    outcome = await runtime.execute(
        program(
            language,
            'await items.add_note(text="x" * 1_100_000)',
            'await items.add_note({ text: "x".repeat(1_100_000) });',
        )
    )
    assert outcome.status == "error"
    assert "Arguments to items.add_note is too large to record durably" in (outcome.error or "")
    assert items.notes == []


async def test_divergence_on_a_different_method(runtime: Runtime, items: Items, language: str) -> None:
    # A recorded run read list_items, then paused at create_item; its stored program now reads get_bytes.
    name = runtime.name
    code = program(
        language,
        'await items.get_bytes()\nawait items.create_item(title="x")',
        'await items.get_bytes();\nawait items.create_item({ title: "x" });',
    )
    eid = (await runtime.store.begin(name, code, ["items"], 50)).execution_id
    await runtime.store.decide(name, eid, 1, Call(0, "items", "list_items", "{}"))
    await runtime.store.record_result(name, eid, 1, 0, "[]")
    await runtime.store.decide(name, eid, 1, Call(1, "items", "create_item", '{"title":"x"}', None, True))
    assert await runtime.store.pause(name, eid, 1)
    outcome = await runtime.approve(eid, 1)
    assert outcome.status == "error"
    assert "replay divergence at step 0: expected items.list_items, got items.get_bytes" in (outcome.error or "")
    assert items.items == [] and "get_bytes" not in items.counts


async def test_prune_executions_keeps_paused_runs(runtime: Runtime, language: str) -> None:
    paused = await runtime.execute(create(language, "keep me"))
    for i in range(4):
        await runtime.execute(program(language, str(i), f"return {i};"))
    assert await runtime.prune_executions(keep=1) == 3
    remaining = {e.id: e.status for e in await runtime.executions()}
    assert remaining[paused.execution_id] == "paused"
    assert sorted(remaining.values()) == ["completed", "paused"]


class Fragile(Connector):
    name = "fragile"

    def __init__(self) -> None:
        self.undone: list[int] = []

    @tool
    def make(self, n: int) -> int:
        """Make something."""
        return n

    @make.revert
    def _unmake(self, args: dict[str, object], result: int) -> None:
        if result == 2:
            raise RuntimeError("cannot undo 2")
        self.undone.append(result)


async def test_rollback_tries_every_revert_then_reports(make_runtime: RuntimeFactory, language: str) -> None:
    fragile = Fragile()
    runtime = make_runtime(fragile)
    outcome = await runtime.execute(
        program(
            language,
            "for n in (1, 2, 3):\n    await fragile.make(n=n)",
            "for (const n of [1, 2, 3]) {\n  await fragile.make({ n });\n}",
        )
    )
    assert outcome.status == "completed", outcome.error
    with pytest.raises(
        codemode.RollbackError, match=r"reverted 2 action\(s\) but 1 failed: step 1: fragile.make: cannot undo 2"
    ):
        await runtime.rollback(outcome.execution_id)
    assert fragile.undone == [3, 1]
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "rolled_back"
    assert [c.state for c in execution.log] == ["reverted", "applied", "reverted"]


class Hang(Connector):
    """A call that runs until it is cancelled, and says when it started and how it ended."""

    name = "hang"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.ended: list[str] = []

    @tool
    async def forever(self) -> None:
        """Never returns."""
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise


@pytest.mark.parametrize("awaited", [True, False], ids=["awaited", "never awaited"])
async def test_a_cancelled_run_cancels_its_calls_at_once(
    make_runtime: RuntimeFactory, language: str, awaited: bool
) -> None:
    """Cancelling `execute` ends the run now, not at its time limit, and no call it started is left
    running (it would write to the log after the pass ended): each is cancelled and records that."""
    hang = Hang()
    runtime = make_runtime(hang, executor=new_executor(language, timeout=60))
    if awaited:
        code = program(language, "await hang.forever()", "await hang.forever({});")
    else:  # the program ends at once; the run then waits for the call it never awaited
        code = program(
            language, "pending = hang.forever()\n'done'", 'const pending = hang.forever({});\nreturn "done";'
        )
    run = asyncio.ensure_future(runtime.execute(code))
    await asyncio.wait_for(hang.started.wait(), 20)
    await asyncio.sleep(0.2)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 20)  # bounded well below the 60 s limit the run would wait for before
    assert hang.ended == ["cancelled"]


async def test_a_run_is_taken_for_dead_only_after_two_heartbeat_intervals(
    make_runtime: RuntimeFactory, items: Items, language: str
) -> None:
    """A late heartbeat (a busy database, a loaded host) never lets another host take a live pass over."""
    runtime = make_runtime(items, heartbeat_interval=1.0)
    done = await runtime.execute(program(language, "1", "return 1;"))
    for too_soon in (timedelta(seconds=1), timedelta(seconds=1.5)):
        with pytest.raises(ValueError, match="2 heartbeat intervals"):
            await runtime.recover(done.execution_id, stale_after=too_soon)
        with pytest.raises(ValueError, match="2 heartbeat intervals"):
            await runtime.rollback(done.execution_id, stale_after=too_soon)
    refused = await runtime.recover(done.execution_id, stale_after=timedelta(seconds=2))
    assert refused.status == "error" and "cannot be recovered" in (refused.error or "")
