"""Hostile values at the sandbox boundary: every one ends in an outcome, never an exception out of `execute`,
a frozen event loop, a run left `running` or an unreadable store; and the model always gets plain UTF-8 JSON.

Each runtime test runs on both executors (`[python]` / `[javascript]`), on a real SQLite file and on a real
PostgreSQL server.
"""

from __future__ import annotations

import json
import math
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from codemode import Connector, Runtime, codec, tool
from codemode.codec import DurableValueError
from codemode.model_view import model_view
from codemode.records import MAX_VALUE_NODES, Outcome
from codemode.runtime.conclusion import bounded_logs
from codemode.sandbox import deno_run as deno_sandbox  # a run tells its runner the value limits

from conftest import Items, RuntimeFactory, execute_sql, program

BOTH_STORES = True


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def model_json(outcome: Outcome, **bounds: Any) -> dict[str, Any]:
    """What a framework sends the model: it must serialize as strict UTF-8 JSON."""
    out = outcome.to_model_output(**bounds)
    text = json.dumps(out, ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    assert '"__codemode__":"' not in text.replace(" ", "")  # no codec tag (a user key may have the name)
    return out


async def ended_with_error(runtime: Runtime, outcome: Outcome) -> str:
    """The run ended `error` (not left running), the store stays readable, and the error text is returned."""
    assert outcome.status == "error", outcome.result
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "error"
    await runtime.executions()
    model_json(outcome)
    return outcome.error or ""


DOUBLING = (
    "x = [1]\nfor i in range(20):\n    x = [x, x]\n",
    "let x = [1];\nfor (let i = 0; i < 20; i++) x = [x, x];\n",
)
DEEP = (
    "x = []\nfor i in range(10000):\n    x = [x]\n",
    "let x = [];\nfor (let i = 0; i < 10000; i++) x = [x];\n",
)


# -- 1. values that expand exponentially through shared references ----------------------------------


async def test_a_result_that_doubles_shared_lists_is_refused_quickly(runtime: Runtime, language: str) -> None:
    py, js = DOUBLING
    started = time.monotonic()
    outcome = await runtime.execute(program(language, py + "return x", js + "return x;"))
    elapsed = time.monotonic() - started
    error = await ended_with_error(runtime, outcome)
    assert "The result is too large" in error and f"more than {MAX_VALUE_NODES} values" in error
    assert "only the fields you need" in error
    assert elapsed < 3, f"took {elapsed:.1f} s"
    assert (await runtime.execute(program(language, "1 + 1", "1 + 1;"))).result == 2


async def test_arguments_that_double_shared_lists_are_a_catchable_error(
    runtime: Runtime, items: Items, language: str
) -> None:
    py, js = DOUBLING
    code = program(
        language,
        py + "try:\n    await items.add_note(text=x)\nexcept TypeError as e:\n    return str(e)",
        js + "try { await items.add_note({ text: x }); } catch (e) { return `${e.name}: ${e.message}`; }",
    )
    started = time.monotonic()
    outcome = await runtime.execute(code)
    assert time.monotonic() - started < 3
    assert outcome.status == "completed", outcome.error
    assert "Arguments to items.add_note is too large" in outcome.result
    assert items.notes == [] and outcome.calls == []


async def test_a_result_with_too_many_values_is_refused(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(language, "return list(range(600_000))", "return Array.from({ length: 600_000 }, (_, i) => i);")
    )
    assert "The result is too large" in await ended_with_error(runtime, outcome)
    fits = await runtime.execute(program(language, "return list(range(1000))", "return [...Array(1000).keys()];"))
    assert fits.result == list(range(1000))


def test_the_codec_refuses_an_expanding_value_before_expanding_it() -> None:
    x: list[Any] = [1]
    for _ in range(40):  # 2**40 leaves once expanded
        x = [x, x]
    started = time.monotonic()
    with pytest.raises(DurableValueError, match="too large to record durably"):
        codec.to_stored("The result of x.y", x)
    with pytest.raises(DurableValueError, match="The result is too large"):
        codec.check("The result", x)
    assert time.monotonic() - started < 1
    assert len(json.dumps(model_view(x))) < 10_000_000  # bounded too, with a marker for the rest


def test_shared_references_within_budget_still_encode() -> None:
    shared = {"a": [1, 2, 3]}
    assert codec.loads(codec.dumps([shared, shared])) == [shared, shared]


# -- 2. deep nesting ----------------------------------------------------------------------------------


async def test_a_deeply_nested_result_is_an_error_naming_the_depth_limit(runtime: Runtime, language: str) -> None:
    py, js = DEEP
    outcome = await runtime.execute(program(language, py + "return x", js + "return x;"))
    error = await ended_with_error(runtime, outcome)
    assert "nesting deeper than 200 levels" in error and "nested at most 200 levels deep" in error


async def test_deeply_nested_arguments_are_a_catchable_error_and_nothing_is_logged(
    runtime: Runtime, items: Items, language: str
) -> None:
    py, js = DEEP
    code = program(
        language,
        py + "try:\n    await items.add_note(text=x)\nexcept TypeError as e:\n    return str(e)",
        js + "try { await items.add_note({ text: x }); } catch (e) { return `${e.name}: ${e.message}`; }",
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert "Arguments to items.add_note cannot cross the sandbox boundary" in outcome.result
    assert "nesting deeper than 200 levels" in outcome.result
    assert items.notes == [] and outcome.calls == []


async def test_a_deep_step_value_is_a_catchable_error(runtime: Runtime, language: str) -> None:
    py, js = DEEP
    code = program(
        language,
        py + 'try:\n    await codemode.step("deep", lambda: x)\nexcept TypeError as e:\n    return str(e)',
        js + 'try { await codemode.step("deep", () => x); } catch (e) { return e.message; }',
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result.startswith("The value of codemode.step cannot cross the sandbox boundary")


@pytest.mark.parametrize("language", ["javascript"])
@pytest.mark.parametrize("levels", [700, 1500])
async def test_a_deep_frame_from_the_runner_is_a_clear_error(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch, levels: int
) -> None:
    # The runner never sends a value deeper than the limit the host gives it; a higher limit makes a real
    # runner send one, proving the host reads such a frame safely (at 1500 levels `json.loads` itself raises
    # RecursionError, at 700 the codec's decoding refuses it).
    monkeypatch.setattr(deno_sandbox, "MAX_VALUE_DEPTH", 100_000)
    outcome = await runtime.execute(f"let x = []; for (let i = 0; i < {levels}; i++) x = [x]; return x;")
    assert "nesting deeper than 200 levels" in await ended_with_error(runtime, outcome)
    called = await runtime.execute(
        f"let x = []; for (let i = 0; i < {levels}; i++) x = [x]; return await items.add_note({{ text: x }});"
    )
    assert "nesting deeper than 200 levels" in (called.error or "") + str(called.result)
    assert called.calls == []


def test_decoding_a_deep_document_raises_value_error_not_recursion_error() -> None:
    text = "[" * 5000 + "]" * 5000
    data: Any = []
    for _ in range(900):
        data = [data]
    with pytest.raises(ValueError, match="nesting deeper"):
        codec.decode(data)
    with pytest.raises(RecursionError):
        json.loads(text)  # why the Deno host bounds what the runner sends, and catches this too
    assert isinstance(codec.read(text), codec.Undecodable)


# -- 3. values that encode must decode ---------------------------------------------------------------


ROUND_TRIPS: list[Any] = [
    {(1, 2), (3, 4)},
    {frozenset({1, 2}): "a", frozenset(): "b"},
    {(1, (2, frozenset({3}))): [1]},
    frozenset({frozenset({1}), frozenset({2, 3})}),
    {(b"\x00", date(2026, 1, 2)): {"__codemode__": "set"}},
    {datetime(2026, 1, 2, tzinfo=timezone.utc), 2**70, -(2**60)},
    [10**5000, -(10**5000)],
    {"s": "a\ud800b", "\udc00": ["\ud83d"]},
]


@pytest.mark.parametrize("value", ROUND_TRIPS, ids=range(len(ROUND_TRIPS)))
def test_everything_the_codec_encodes_decodes_to_an_equal_value(value: Any) -> None:
    text = codec.to_stored("The value", value, limit=10_000_000)
    text.encode("utf-8")  # storable as SQLite text
    assert codec.loads(text) == value
    assert codec.roundtrip(value) == value


async def test_a_step_returning_a_set_of_tuples_completes_and_history_stays_readable(
    runtime: Runtime, language: str
) -> None:
    outcome = await runtime.execute(
        program(
            language,
            'return await codemode.step("s", lambda: {(1, 2), (3, 4)})',
            'return await codemode.step("s", () => new Set([[1, 2], [3, 4]]));',
        )
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {(1, 2), (3, 4)}
    keyed = await runtime.execute(
        program(
            language,
            'return await codemode.step("k", lambda: {frozenset([1]): 2})',
            'return await codemode.step("k", () => new Map([[new Set([1]), 2]]));',
        )
    )
    assert keyed.status == "completed", keyed.error
    assert keyed.result == {frozenset([1]): 2}
    assert [e.status for e in await runtime.executions()] == ["completed", "completed"]
    assert model_json(outcome)["result"] == [[1, 2], [3, 4]]


async def test_one_undecodable_stored_value_does_not_hide_the_history(
    runtime: Runtime, db_path: Path, store_kind: str, language: str
) -> None:
    good = await runtime.execute(program(language, "return 1", "return 1;"))
    bad = await runtime.execute(program(language, "return 2", "return 2;"))
    damaged = '{"__codemode__": "nope"}'  # written outside codemode (or by another program)
    execute_sql(store_kind, db_path, "UPDATE cm_executions SET result = ? WHERE id = ?", (damaged, bad.execution_id))
    executions = {e.id: e for e in await runtime.executions()}
    assert executions[good.execution_id].result == 1
    read_back = executions[bad.execution_id].result
    assert isinstance(read_back, codec.Undecodable) and "could not be decoded" in read_back
    execution = await runtime.execution(bad.execution_id)
    assert execution is not None and isinstance(execution.result, codec.Undecodable)


async def test_a_blob_written_into_the_log_reads_as_undecodable_and_hides_nothing(
    runtime: Runtime, db_path: Path, store_kind: str, language: str
) -> None:
    """SQLite keeps whatever type a writer gives a column; a BLOB in the log (which SQLite's JSON
    functions refuse) still lets the run, and every other entry of it, be read."""
    if store_kind != "sqlite":
        return  # PostgreSQL's typed columns refuse the write itself
    outcome = await runtime.execute(
        program(
            language,
            "await items.list_items()\nawait items.add_note(text='x')\nreturn 1",
            "await items.list_items(); await items.add_note({ text: 'x' }); return 1;",
        )
    )
    assert outcome.status == "completed", outcome.error
    execute_sql(
        store_kind,
        db_path,
        "UPDATE cm_log SET result = X'ff' WHERE execution_id = ? AND seq = 0",
        (outcome.execution_id,),
    )
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.status == "completed" and execution.result == 1
    first, second = execution.log
    assert isinstance(first.result, codec.Undecodable) and "could not be decoded" in first.result
    assert (second.method, second.args, second.state) == ("add_note", {"text": "x"}, "applied")
    assert second.result == outcome.calls[1].result


# -- 4. lone surrogates --------------------------------------------------------------------------------


@pytest.mark.parametrize("language", ["javascript"])  # Monty strings cannot hold lone surrogates
async def test_lone_surrogates_in_javascript_values_logs_and_errors(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        'console.log("a\\ud800"); return { s: "b\\udc00", [String.fromCharCode(0xd801)]: 1 };'
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == {"s": "b\udc00", "\ud801": 1}  # faithful for Python callers
    assert outcome.logs == ["a\ufffd"]
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.result == {"s": "b\udc00", "\ud801": 1}  # stored losslessly
    assert model_json(outcome)["result"] == {"s": "b\ufffd", "\ufffd": 1}
    failed = await runtime.execute('throw new Error("bad \\ud800 value");')
    assert "bad \ufffd value" in await ended_with_error(runtime, failed)


async def test_a_lone_surrogate_in_the_program_text(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "# note \ud800\nreturn 'ok'", "// note \ud800\nreturn 'ok';"))
    assert outcome.status == "completed", outcome.error
    assert outcome.result == "ok"
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and "note \ufffd" in execution.code
    model_json(outcome)


class Source(Connector):
    name = "source"

    @tool
    async def text(self) -> str:
        """Text with a lone surrogate, as a JSON API may send it."""
        text: str = json.loads('"x\\ud800"')
        return text


async def test_lone_surrogates_from_a_connector_are_recorded(make_runtime: RuntimeFactory, language: str) -> None:
    runtime = make_runtime(Source())
    outcome = await runtime.execute(program(language, "return await source.text()", "return await source.text();"))
    assert outcome.status == "completed", outcome.error
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.log[0].result == "x\ud800"  # recorded losslessly
    assert outcome.result == program(language, "x\ufffd", "x\ud800")  # Monty strings cannot hold it
    model_json(outcome)


async def test_nul_and_lone_surrogates_in_error_texts_and_step_names(runtime: Runtime, language: str) -> None:
    # PostgreSQL text cannot hold NUL; no store's text can hold a lone surrogate.
    failed = await runtime.execute(program(language, 'raise ValueError("a\\x00b")', 'throw new Error("a\\u0000b");'))
    assert "a\ufffdb" in await ended_with_error(runtime, failed)
    stepped = await runtime.execute(
        program(
            language,
            'return await codemode.step("s\\x00", lambda: 1)',
            'return [await codemode.step("s\\u0000", () => 1), await codemode.step("t\\ud800", () => 2)];',
        )
    )
    assert stepped.status == "completed", stepped.error
    assert [c.method for c in stepped.calls] == program(language, ["s\ufffd"], ["s\ufffd", "t\ufffd"])
    coded = await runtime.execute(program(language, "return 'ok' # \x00", "return 'ok'; // \x00"))
    assert coded.status == "completed" and coded.result == "ok", coded.error


# -- 5. huge integers ------------------------------------------------------------------------------------


async def test_a_huge_integer_result_completes_and_gives_model_output(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(program(language, "return 10**5000", "return 10n ** 5000n;"))
    assert outcome.status == "completed", outcome.error
    assert outcome.result == 10**5000
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.result == 10**5000
    assert model_json(outcome)["result"] == "[codemode: an integer of about 5001 digits]"
    big = await runtime.execute(program(language, "return 2**70", "return 2n ** 70n;"))
    assert model_json(big)["result"] == str(2**70)


# -- 6. what the model and Python callers get ----------------------------------------------------------


@pytest.mark.parametrize("language", ["python"])  # Monty hands the host its own objects
async def test_no_host_object_reaches_the_result(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        "return [type(items), items.__class__, items, int, type, ValueError('x'), 1j, ..., print, codemode, "
        "type(codemode)]"
    )
    assert outcome.status == "completed", outcome.error
    assert all(isinstance(v, str) for v in outcome.result), outcome.result
    assert outcome.result[:4] == ["<class 'items'>", "<class 'items'>", "<namespace items>", "<class 'int'>"]
    assert "codemode.sandbox" not in json.dumps(model_json(outcome))


async def test_the_model_gets_plain_json_and_python_callers_the_faithful_value(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(
            language,
            "import datetime\nreturn {'set': {1, 2}, 'bytes': b'ab', 'day': datetime.date(2026, 1, 2), "
            "'nan': float('nan'), 'inf': float('-inf'), 'big': 2**60, 'keys': {1: 'a'}, 'tag': {'__codemode__': 1}}",
            "return { set: new Set([1, 2]), bytes: new Uint8Array([97, 98]), day: new Date('2026-01-02T00:00:00Z'), "
            "nan: NaN, inf: -Infinity, big: 2n ** 60n, keys: new Map([[1, 'a']]), tag: { __codemode__: 1 } };",
        )
    )
    assert outcome.status == "completed", outcome.error
    result = outcome.result
    assert result["set"] == {1, 2} and result["bytes"] == b"ab" and result["big"] == 2**60
    assert math.isnan(result["nan"]) and result["keys"] == {1: "a"}
    day = "2026-01-02" if language == "python" else "2026-01-02T00:00:00+00:00"
    assert model_json(outcome)["result"] == {
        "set": [1, 2],
        "bytes": "YWI=",
        "day": day,
        "nan": "NaN",
        "inf": "-Infinity",
        "big": str(2**60),
        "keys": {"1": "a"},
        "tag": {"__codemode__": 1},
    }


def test_model_view_of_awkward_keys_and_objects() -> None:
    assert model_view({1: "a", "1": "b"}) == [[1, "a"], ["1", "b"]]  # the keys' text would collide
    assert model_view({(1, 2): "t"}) == {"[1,2]": "t"}
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    assert model_view(cyclic) == ["[codemode: omitted, a reference to a value that contains itself]"]
    assert model_view(object()).startswith("<object object at")


# -- 7. undecodable JavaScript values and console overflow ------------------------------------------


@pytest.mark.parametrize("language", ["javascript"])
async def test_javascript_values_python_cannot_hold_as_is_are_not_an_attack(runtime: Runtime) -> None:
    outcome = await runtime.execute(
        "return [new Set([{ a: 1 }]), new Map([[{ a: 1 }, 2]]), new Date(8.64e15), new Set([[1, 2]]), -(10n ** 5000n)];"
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result[:4] == [[{"a": 1}], [[{"a": 1}, 2]], "+275760-09-13T00:00:00.000Z", {(1, 2)}]
    assert outcome.result[4] == -(10**5000)
    model_json(outcome)


async def test_console_output_past_the_cap_leaves_a_marker_saying_how_much(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(
            language,
            "for i in range(30):\n    print('x' * 50_000)\nreturn 1",
            "for (let i = 0; i < 30; i++) console.log('x'.repeat(50_000));\nreturn 1;",
        )
    )
    assert outcome.status == "completed", outcome.error
    marker = outcome.logs[-1]
    assert marker.startswith("[codemode: console output beyond 1,000,000 characters was dropped (")
    assert "more characters)]" in marker
    assert model_json(outcome)["logs"][-1] == marker


def test_stored_logs_say_how_much_was_dropped() -> None:
    kept = bounded_logs(["a" * 600_000, "b" * 600_000])
    assert kept == [
        "[codemode: earlier console output dropped: too large to record (600,000 characters)]",
        "b" * 600_000,
    ]


# -- 8. the model-facing result is bounded ---------------------------------------------------------------


async def test_a_large_result_is_bounded_for_the_model_and_whole_elsewhere(runtime: Runtime, language: str) -> None:
    outcome = await runtime.execute(
        program(language, "return ['y' * 1000] * 900", "return Array(900).fill('y'.repeat(1000));")
    )
    assert outcome.status == "completed", outcome.error
    assert outcome.result == ["y" * 1000] * 900
    execution = await runtime.execution(outcome.execution_id)
    assert execution is not None and execution.result == ["y" * 1000] * 900  # the audit trail keeps it all
    shown = model_json(outcome)["result"]
    assert len(json.dumps(shown, indent=2, ensure_ascii=False)) <= 24_000
    assert "more items omitted" in json.dumps(shown)
    wider = model_json(outcome, max_chars=100_000)["result"]
    assert 24_000 < len(json.dumps(wider, indent=2, ensure_ascii=False)) <= 100_000
    huge = await runtime.execute(program(language, "return 'z' * 3_000_000", "return 'z'.repeat(3_000_000);"))
    assert huge.status == "completed" and huge.result == "z" * 3_000_000
    assert len(model_json(huge)["result"]) < 25_000


# -- 9. the size-limit message -------------------------------------------------------------------------------


def test_the_size_limit_message_says_what_the_sandbox_can_do() -> None:
    with pytest.raises(DurableValueError) as raised:
        codec.to_stored("The result of items.big_result", "x" * 1_100_000)
    message = str(raised.value)
    assert "file" not in message and "workspace" not in message
    assert "only the fields you need" in message and "paging or limit parameters" in message
