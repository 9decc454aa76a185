"""The Python sandbox: escapes that must fail, limits that must trip, and the program conventions."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

import codemode
from codemode import Connector, Runtime, tool

from conftest import Items, RuntimeFactory, child_pids

ESCAPES = {
    "read a file": "open('/etc/passwd').read()",
    "read a file with pathlib": "from pathlib import Path\nPath('/etc/hostname').read_text()",
    "list a directory": "import os\nos.listdir('/')",
    "environment mapping": "import os\nos.environ['HOME']",
    "environment lookup": "import os\nos.getenv('HOME')",
    "run a command": "import os\nos.system('id')",
    "subprocess": "import subprocess\nsubprocess.run(['id'])",
    "sockets": "import socket\nsocket.create_connection(('127.0.0.1', 22))",
    "http client": "import urllib.request\nurllib.request.urlopen('http://127.0.0.1')",
    "ctypes": "import ctypes\nctypes.CDLL(None)",
    "importlib": "import importlib\nimportlib.import_module('os')",
    "__import__": "__import__('os').system('id')",
    "exec an import": 'exec("import subprocess")',
    "eval an import": "eval(\"__import__('os')\")",
    "subclass walk": "().__class__.__bases__[0].__subclasses__()",
    "function globals": "(lambda: 0).__globals__",
    "frame walk": "import sys\nsys._getframe(0).f_back",
    "sys.modules": "import sys\nsys.modules['os']",
    "builtins module": "__builtins__",
    "host object internals": "items.__class__.__init__",
    "host object dict": "items.__dict__",
    "platform handle": "__codemode_host__()",
    "format attribute traversal": "'{0.__class__.__init__.__globals__}'.format(items)",
}


@pytest.mark.parametrize("code", ESCAPES.values(), ids=ESCAPES.keys())
async def test_escape_fails_inside_the_sandbox(runtime: Runtime, code: str) -> None:
    outcome = await runtime.execute(code)
    assert outcome.status == "error", f"escape succeeded: {outcome.result!r}"
    assert outcome.error
    after = await runtime.execute("await items.list_items()")
    assert after.status == "completed" and after.result == []


async def test_writing_a_file_leaves_no_file(runtime: Runtime, tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    outcome = await runtime.execute(f"open({str(target)!r}, 'w').write('x')")
    assert outcome.status == "error"
    assert "PermissionError" in (outcome.error or "")
    assert not target.exists()


async def test_sandbox_mutation_does_not_reach_the_host(runtime: Runtime, items: Items) -> None:
    items.items.append({"id": 1, "title": "host"})
    outcome = await runtime.execute("found = await items.list_items()\nfound[0]['title'] = 'changed'\nfound")
    assert outcome.result == [{"id": 1, "title": "changed"}]
    assert items.items == [{"id": 1, "title": "host"}]


@pytest.fixture
def limited(make_runtime: RuntimeFactory, items: Items, request: pytest.FixtureRequest) -> Runtime:
    # Memory cases get a generous clock, so a loaded machine cannot turn the memory limit into a timeout.
    callspec = getattr(request.node, "callspec", None)
    memory_case = "memory" in request.node.name or (
        callspec is not None and callspec.params["expected"] == "MemoryError"
    )
    executor = codemode.MontyExecutor(timeout=20 if memory_case else 1.5, memory_limit=64 * 2**20, recursion_limit=200)
    return make_runtime(items, executor=executor)


LIMITS = {
    "infinite loop": ("while True:\n    pass", "timed out"),
    "infinite loop that swallows timeouts": (
        "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass",
        "timed out",
    ),
    "memory bomb": ("x = []\nwhile True:\n    x.append('a' * 100000)", "MemoryError"),
    "up-front allocation": ("[0] * 10**10", "MemoryError"),
    "string doubling": ("s = 'a'\nwhile True:\n    s = s + s", "MemoryError"),
    "deep recursion": ("def f(n):\n    return f(n + 1)\nf(0)", "RecursionError"),
}


@pytest.mark.parametrize(("code", "expected"), LIMITS.values(), ids=LIMITS.keys())
async def test_limits_end_the_pass(limited: Runtime, code: str, expected: str) -> None:
    outcome = await limited.execute(code)
    assert outcome.status == "error"
    assert expected in (outcome.error or "")
    execution = await limited.execution(outcome.execution_id)
    assert execution is not None and execution.status == "error"
    after = await limited.execute("await items.list_items()")
    assert after.status == "completed"


class Slow(Connector):
    name = "slow"

    @tool
    async def wait(self, seconds: float) -> str:
        """Sleep on the host."""
        await asyncio.sleep(seconds)
        return "woke"


async def test_wall_clock_covers_host_calls(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Slow(), executor=codemode.MontyExecutor(timeout=1.0))
    outcome = await runtime.execute("await slow.wait(seconds=30)")
    assert outcome.status == "error" and "timed out" in (outcome.error or "")
    assert (await runtime.execute("await slow.wait(seconds=0)")).result == "woke"


async def test_console_capture_and_error_line(runtime: Runtime) -> None:
    outcome = await runtime.execute("import sys\nprint('a', {'x': 1})\nprint('warn', file=sys.stderr)\nx = 1\nx['k']")
    assert outcome.status == "error"
    assert outcome.logs == ["a {'x': 1}", "[error] warn"]
    assert "TypeError" in (outcome.error or "")
    assert "line 5: x['k']" in (outcome.error or "")


async def test_syntax_error_names_the_line(runtime: Runtime) -> None:
    outcome = await runtime.execute("x = 1\ny = (\n")
    assert outcome.status == "error"
    assert "SyntaxError" in (outcome.error or "") and "line" in (outcome.error or "")


async def test_errors_name_the_program_s_own_lines(runtime: Runtime) -> None:
    """The platform's prelude is fed with the program: neither its lines nor its frames show."""
    syntax = await runtime.execute("x = 1\ny = = 2\n")
    assert (syntax.error or "").startswith("File <program>, line 2\n    y = = 2\n"), syntax.error
    # The place is rewritten in the report's own line only, not in a program line that reads like one.
    place = "'File \"<python-input-0>\", line 99' = 1"
    quoted = await runtime.execute(f"x = 1\n{place}")
    assert (quoted.error or "").startswith(f"File <program>, line 2\n    {place}\n"), quoted.error
    # A form feed is not a line end for Python (nor for the line the model is shown).
    fed = await runtime.execute("\fx = 1\nraise ValueError('ff')")
    assert fed.error == "ValueError: ff\n  at line 2: raise ValueError('ff')"
    bom = await runtime.execute("\ufeffx = 1\nx")  # a byte-order mark from a pasted file
    assert (bom.status, bom.result) == ("completed", 1), bom.error
    raised = await runtime.execute("x = 1\n\nraise ValueError('boom')")
    assert raised.error == "ValueError: boom\n  at line 3: raise ValueError('boom')"
    # A step whose function failed is raised again at the program's call of the step, not in the prelude.
    stepped = await runtime.execute("def f():\n    return 1 / 0\n\nawait codemode.step('s', f)")
    assert stepped.error == (
        "RuntimeError: ZeroDivisionError: division by zero\n  at line 4: await codemode.step('s', f)"
    )


async def test_program_conventions(runtime: Runtime) -> None:
    assert (await runtime.execute("1 + 1")).result == 2
    assert (await runtime.execute("x = 3\nif x > 2:\n    return 'big'\nreturn 'small'")).result == "big"
    assert (await runtime.execute("x = 1")).result is None
    assert (await runtime.execute("")).result is None
    assert (await runtime.execute("```py\n40 + 2\n```")).result == 42
    assert (await runtime.execute("async def main():\n    return len(await items.list_items())")).result == 0
    assert (await runtime.execute("input")).result is None


async def test_async_step_and_gather_of_steps(runtime: Runtime) -> None:
    code = (
        "import asyncio\n"
        "async def compute():\n"
        "    return 21\n"
        "a = await codemode.step('a', compute)\n"
        "b, c = await asyncio.gather(codemode.step('b', lambda: a * 2), codemode.step('c', lambda: (1, 2)))\n"
        "return [a, b, c]"
    )
    outcome = await runtime.execute(code)
    assert outcome.result == [21, 42, [1, 2]]  # tuples come back as lists, on every pass alike
    assert [c.method for c in outcome.calls] == ["a", "b", "c"]


async def test_discovery_inside_the_sandbox(runtime: Runtime) -> None:
    code = (
        "found = await codemode.search('create item')\n"
        "doc = await codemode.describe(found['results'][0]['path'])\n"
        "return [found['results'][0]['path'], doc['kind'], 'def create_item' in doc['types']]"
    )
    outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == ["items.create_item", "method", True]


async def test_unknown_method_is_an_attribute_error(runtime: Runtime) -> None:
    outcome = await runtime.execute("await items.nope()")
    assert outcome.status == "error"
    assert "AttributeError" in (outcome.error or "") and "nope" in (outcome.error or "")
    assert outcome.calls == []


async def test_positional_arguments_are_refused_clearly(runtime: Runtime) -> None:
    outcome = await runtime.execute("await items.create_item('x')")
    assert "takes keyword arguments" in (outcome.error or "")


async def test_many_calls_beyond_the_default_monty_cap(runtime: Runtime) -> None:
    outcome = await runtime.execute("n = 0\nfor i in range(1500):\n    n += len(await items.list_items())\nn")
    assert outcome.status == "completed", outcome.error
    assert len(outcome.calls) == 1500


async def test_odd_results_become_plain_data(runtime: Runtime) -> None:
    assert (await runtime.execute("items")).result == "<namespace items>"
    assert (
        await runtime.execute("from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\nP(1)")
    ).result == {"x": 1}
    assert (await runtime.execute("{1, 2}")).result == {1, 2}


async def test_sleeps_wait_on_the_host(make_runtime: RuntimeFactory, items: Items) -> None:
    runtime = make_runtime(items, executor=codemode.MontyExecutor(timeout=2))
    code = (
        "import asyncio, time\ntime.sleep(0.05)\nawait asyncio.gather(asyncio.sleep(0.05), asyncio.sleep(0.05))\n'ok'"
    )
    assert (await runtime.execute(code)).result == "ok"
    too_long = await runtime.execute("import time\ntime.sleep(30)")
    assert too_long.status == "error" and "sleep limit exceeded" in (too_long.error or "")


class Killer(Connector):
    """Kills the sandbox worker from the host, as the OOM killer would."""

    name = "killer"

    @tool
    def kill_workers(self) -> int:
        """Kill every Monty worker of this process."""
        pids = child_pids()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return len(pids)


async def test_a_dead_worker_is_an_error_and_the_next_run_works(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Killer())
    outcome = await runtime.execute("await killer.kill_workers()\nprint('unreachable')")
    assert outcome.status == "error"
    assert "sandbox worker crashed" in (outcome.error or "")
    assert (await runtime.execute("1 + 1")).result == 2


class _Answers:
    """A host that answers every call with None."""

    async def call(self, namespace: str, method: str, args: dict[str, object]) -> None:
        return None


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_a_late_stop_never_kills_a_worker_back_in_the_pool() -> None:
    """The time limit may fire just as a program ends, after its worker went back to the pool (where
    another run may be using it): that stop must leave the worker alone."""
    from codemode.sandbox.monty_run import MontyRun

    executor = codemode.MontyExecutor(max_workers=1, warm_workers=1)
    try:
        run = MontyRun(executor, [], _Answers())
        assert (await run.drive(lambda session: run.started(session, "return 1", None))).result == 1
        workers = [pid for pid in child_pids() if _alive(pid)]
        assert workers, "the pool keeps its worker"
        run._stop(True)  # what the run's timer does when it fires late
        await asyncio.sleep(0.2)
        assert all(_alive(pid) for pid in workers), "a stop after the run killed a pooled worker"
        again = MontyRun(executor, [], _Answers())
        assert (await again.drive(lambda session: again.started(session, "return 2", None))).result == 2
    finally:
        await executor.aclose()


async def test_a_worker_that_died_in_the_pool_is_replaced_for_the_next_run() -> None:
    executor = codemode.MontyExecutor(max_workers=1, warm_workers=1)
    try:
        assert (await executor.execute("return 1", [], _Answers())).result == 1
        for pid in child_pids():
            os.kill(pid, signal.SIGKILL)  # the idle worker dies (the OOM killer, an operator)
        await asyncio.sleep(0.2)
        result = await executor.execute("return 2", [], _Answers())
        assert (result.result, result.error) == (2, None)
    finally:
        await executor.aclose()


async def test_a_run_starting_while_the_executor_closes_gets_a_new_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """`aclose()` may close the pool between a starting run taking it and checking a worker out of it.
    That window is microseconds wide, so the test widens it: the driver thread is held for a moment
    after it took the pool (the only stand-in here; the pool, workers and close are real)."""
    executor = codemode.MontyExecutor(max_workers=2)
    taken = threading.Event()
    real_pool = codemode.MontyExecutor._pool

    def held_pool(self: codemode.MontyExecutor) -> object:
        pool = real_pool(self)
        if threading.current_thread().name == "codemode-monty" and not taken.is_set():
            taken.set()
            time.sleep(0.3)  # meanwhile the loop closes the executor
        return pool

    try:
        assert (await executor.execute("return 1", [], _Answers())).result == 1
        monkeypatch.setattr(codemode.MontyExecutor, "_pool", held_pool)
        run = asyncio.ensure_future(executor.execute("return 2", [], _Answers()))
        while not taken.is_set():
            await asyncio.sleep(0.01)
        await executor.aclose()
        result = await run
        assert (result.result, result.error) == (2, None)
    finally:
        await executor.aclose()


def _driver_threads() -> int:
    import threading

    return sum(1 for t in threading.enumerate() if t.name == "codemode-monty")


async def test_a_cancelled_run_ends_at_once_and_the_next_run_works(make_runtime: RuntimeFactory) -> None:
    runtime = make_runtime(Killer(), executor=codemode.MontyExecutor(timeout=30))
    before = child_pids()
    task = asyncio.ensure_future(runtime.execute("import asyncio\nawait asyncio.sleep(20)"))
    await asyncio.sleep(0.5)
    task.cancel()
    started = asyncio.get_running_loop().time()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert asyncio.get_running_loop().time() - started < 5  # the driver thread was woken, not left to sleep
    assert (await runtime.execute("1 + 1")).result == 2
    assert len(child_pids()) <= len(before) + 2  # the cancelled run's worker was killed and replaced


async def test_concurrent_runs_share_reused_driver_threads(make_runtime: RuntimeFactory, items: Items) -> None:
    runtime = make_runtime(items, executor=codemode.MontyExecutor(max_workers=4))
    code = "import asyncio\nawait asyncio.gather(*[items.add_note(text=f'{input}-{i}') for i in range(5)])"

    async def one(i: int) -> None:
        outcome = await runtime.execute(code.replace("{input}", str(i)))
        assert outcome.status == "completed", outcome.error

    for _ in range(2):
        await asyncio.gather(*(one(i) for i in range(12)))
    assert sorted(items.notes) == sorted([f"{i}-{j}" for i in range(12) for j in range(5)] * 2)
    for i in range(12):  # each run's calls started in program order
        mine = [n for n in items.notes if n.startswith(f"{i}-")]
        assert mine == [f"{i}-{j}" for j in range(5)] * 2
    assert 1 <= _driver_threads() <= 4 + 8  # one per running program at most: the cap plus the nesting bound


def test_an_executor_keeps_no_ended_event_loop_alive() -> None:
    """One executor across many `asyncio.run`s: neither its inboxes nor its idle driver threads hold a
    closed loop (or the run's host) after the run."""
    import gc
    import weakref

    from codemode.sandbox.base import Namespace

    class Host:
        async def call(self, namespace: str, method: str, args: dict[str, object]) -> object:
            return 1

    executor = codemode.MontyExecutor()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        result = await executor.execute("return await bench.noop()", [Namespace("bench", frozenset({"noop"}))], Host())
        assert result.result == 1, result.error

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
    asyncio.run(executor.aclose())
