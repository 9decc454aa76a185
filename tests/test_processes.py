"""Processes and resources: sandboxes never outlive their runtime, never hang the interpreter, stay
within their cap, and a store that cannot open or write says so and leaks nothing.

Every test here uses real OS processes: scripts run with `subprocess` and must exit, sandbox processes
are counted through /proc, and the disk-full case fills a real file size limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import codemode

from conftest import Items, child_pids

SRC = Path(os.environ.get("CODEMODE_TEST_SRC", Path(__file__).resolve().parents[1] / "src"))


def _marked(marker: str) -> list[int]:
    """Live processes whose environment or command line mentions `marker` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":
                continue  # a zombie holds no resources beyond its table slot
            blob = (entry / "environ").read_bytes() + (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in blob:
            found.append(int(entry.name))
    return found


def _wait_gone(marker: str, timeout: float = 5.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := _marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _run_script(tmp_path: Path, body: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run `body` in a fresh interpreter whose temporary files (the Deno cache dir) live in `tmp_path`,
    so every process it starts carries `tmp_path` in its environment."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = {
        **os.environ,
        "PYTHONPATH": str(SRC),
        "TMPDIR": str(tmp_path),
        "CODEMODE_TEST_MARKER": str(tmp_path),
    }
    return subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout
    )


PREAMBLE = """
import asyncio, sys
import codemode
from codemode import Connector, tool


class Items(Connector):
    name = "items"

    @tool
    async def get(self, id: int) -> int:
        \"\"\"Echo an id.\"\"\"
        return id


def make(kind):
    executor = codemode.DenoExecutor(timeout=20) if kind == "deno" else codemode.MontyExecutor(timeout=20)
    store = codemode.SqliteStore("codemode.db")
    return codemode.Runtime([Items()], executor=executor, store=store)


CODE = {"deno": "return await items.get({ id: 7 })", "monty": "return await items.get(id=7)"}
"""


# -- 1. a runtime left open never hangs the interpreter -------------------------------------------


@pytest.mark.parametrize("kind", ["deno", "monty"])
def test_an_unclosed_runtime_lets_asyncio_run_exit(tmp_path: Path, kind: str) -> None:
    started = time.monotonic()
    done = _run_script(
        tmp_path,
        PREAMBLE
        + f"""
async def main():
    runtime = make({kind!r})
    outcome = await runtime.execute(CODE[{kind!r}])
    print(outcome.status, outcome.result, flush=True)  # never closed

asyncio.run(main())
print("exited", flush=True)
""",
        timeout=30,
    )
    assert (done.returncode, done.stdout.split()) == (0, ["completed", "7", "exited"]), done.stderr
    assert time.monotonic() - started < 20
    assert "Task was destroyed" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert _wait_gone(str(tmp_path)) == []


@pytest.mark.parametrize("kind", ["deno", "monty"])
def test_an_unclosed_blocking_twin_lets_the_interpreter_exit(tmp_path: Path, kind: str) -> None:
    done = _run_script(
        tmp_path,
        PREAMBLE
        + f"""
runtime = make({kind!r})
outcome = runtime.sync.execute(CODE[{kind!r}])
print(outcome.status, outcome.result, flush=True)  # runtime.sync never closed
""",
        timeout=30,
    )
    assert (done.returncode, done.stdout.split()) == (0, ["completed", "7"]), done.stderr
    assert "Exception ignored" not in done.stderr, done.stderr
    assert _wait_gone(str(tmp_path)) == []


@pytest.mark.parametrize("kind", ["deno", "monty"])
def test_a_run_in_flight_at_loop_exit_lets_the_interpreter_exit(tmp_path: Path, kind: str) -> None:
    """The loop ends while a program runs (and while the warm pool refills): nothing hangs or leaks."""
    code = {"deno": "await new Promise(r => setTimeout(r, 60000))", "monty": "import asyncio\nawait asyncio.sleep(60)"}
    done = _run_script(
        tmp_path,
        PREAMBLE
        + f"""
async def main():
    runtime = make({kind!r})
    print((await runtime.execute(CODE[{kind!r}])).status, flush=True)
    asyncio.ensure_future(runtime.execute({code[kind]!r}))
    await asyncio.sleep(1.0)

asyncio.run(main())
print("exited", flush=True)
""",
        timeout=30,
    )
    assert (done.returncode, done.stdout.split()) == (0, ["completed", "exited"]), done.stderr
    assert _wait_gone(str(tmp_path)) == []


# -- in-process helpers -----------------------------------------------------------------------------


def _deno_children(executor: codemode.DenoExecutor | None = None) -> list[int]:
    """Live Deno runners started by this process, or by one executor (each has its own DENO_DIR);
    zombies excluded: they are gone, only not yet reaped."""
    deno_dir = executor._deno_dir.name.encode() if executor is not None and executor._deno_dir else b""
    pids = []
    for pid in child_pids():
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and b"deno_runner.js" in cmdline and deno_dir in environ:
            pids.append(pid)
    return pids


class Sampler:
    """The most programs of one executor seen running at once (each in a Worker of its own, until that
    Worker is gone), and the most Deno processes, sampled while a run goes on."""

    def __init__(self, executor: codemode.DenoExecutor) -> None:
        self.executor = executor
        self.most = 0
        self.processes = 0
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        while True:
            self.most = max(self.most, self.executor._places._alive)
            self.processes = max(self.processes, len(_deno_children(self.executor)))
            await asyncio.sleep(0.01)

    async def __aenter__(self) -> Sampler:
        self._task = asyncio.ensure_future(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def _saved(runtime: codemode.Runtime, name: str, code: str) -> None:
    """Save `code` as a snippet (a snippet is promoted from a run; this one need not succeed)."""
    first = await runtime.execute(code)
    await runtime.save_snippet(name, execution_id=first.execution_id)


# -- 4. nothing outlives aclose ---------------------------------------------------------------------


async def test_no_deno_process_outlives_aclose_after_a_nested_timeout(tmp_path: Path) -> None:
    executor = codemode.DenoExecutor(timeout=2)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    await _saved(runtime, "slow", "await new Promise((r) => setTimeout(r, 60_000));")
    outcome = await runtime.execute('return await codemode.run("slow");')
    assert outcome.status == "error" and "timed out" in (outcome.error or ""), outcome.error
    assert _deno_children()  # the warm pool is alive until the runtime closes
    await runtime.aclose()
    assert _deno_children() == []


async def test_no_deno_process_outlives_aclose_from_another_loop(tmp_path: Path) -> None:
    """Runs on the blocking twin's loop, closed from this one: the processes are the executor's, not a loop's."""
    executor = codemode.DenoExecutor(timeout=2)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    twin = runtime.sync
    await asyncio.to_thread(twin.execute, "1")
    first = await asyncio.to_thread(twin.execute, "await new Promise((r) => setTimeout(r, 60_000));")
    await asyncio.to_thread(twin.save_snippet, "slow", execution_id=first.execution_id)
    outcome = await asyncio.to_thread(twin.execute, 'return await codemode.run("slow");')
    assert "timed out" in (outcome.error or "")
    assert _deno_children(executor)
    await runtime.aclose()
    assert _deno_children(executor) == []
    twin._loop.stop()


async def test_executors_dropped_without_aclose_leave_no_process_or_descriptor(tmp_path: Path) -> None:
    class NoCalls:
        async def call(self, namespace: str, method: str, args: dict[str, object]) -> object:
            raise AssertionError("no calls expected")

    async def one_run() -> None:
        executor = codemode.DenoExecutor(timeout=20)
        assert (await executor.execute(executor.normalize("1"), [], NoCalls())).result == 1  # never closed

    await one_run()  # warm up: imports, the reaper thread
    gc.collect()
    await asyncio.sleep(0.2)
    before = _open_fds()
    for _ in range(6):
        await one_run()
        gc.collect()
    deadline = time.monotonic() + 5  # each process's reader thread reaps it and closes its pipes
    while (_deno_children() or _open_fds() > before) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert _deno_children() == []
    assert _open_fds() <= before


# -- 2. no exit status stolen from asyncio's child watcher ------------------------------------------


async def test_forty_runs_log_no_unknown_child_process(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from conftest import Items as FullItems

    caplog.set_level(logging.WARNING)
    executor = codemode.DenoExecutor(timeout=1.0)
    items = FullItems()
    runtime = codemode.Runtime([items], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    programs = {
        "completed": "return 1 + 1;",
        "paused": 'await items.create_item({ title: "t" });',
        "error": 'throw new Error("no");',
        "timed out": "await new Promise((r) => setTimeout(r, 10_000));",
    }
    seen: dict[str, int] = {}
    for i in range(40):
        kind = ["completed", "paused", "error", "completed", "paused", "completed", "error", "timed out"][i % 8]
        outcome = await runtime.execute(programs[kind])
        status = "timed out" if "timed out" in (outcome.error or "") else outcome.status
        seen[status] = seen.get(status, 0) + 1
    await runtime.aclose()
    assert seen == {"completed": 15, "paused": 10, "error": 10, "timed out": 5}
    unknown = [r.getMessage() for r in caplog.records if "child process" in r.getMessage()]
    assert unknown == []


# -- 3. a cap on Deno processes, and nesting that cannot deadlock ------------------------------------


async def test_twenty_four_snippets_at_once_stay_within_the_cap(tmp_path: Path) -> None:
    executor = codemode.DenoExecutor(timeout=60, max_runs=4)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    await _saved(runtime, "echo", "async (input) => { await new Promise((r) => setTimeout(r, 200)); return input; }")
    code = "return await Promise.all(Array.from({ length: 24 }, (_, i) => codemode.run('echo', i)));"
    async with Sampler(executor) as sampler:
        outcome = await runtime.execute(code)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == list(range(24))
    assert 2 <= sampler.most <= 4
    assert sampler.processes <= executor.max_processes
    await runtime.aclose()
    assert _deno_children(executor) == []


async def test_nested_snippets_beyond_the_cap_do_not_deadlock(tmp_path: Path) -> None:
    """Every process held by a run that waits on a snippet of its own: the deepest one starts anyway."""
    executor = codemode.DenoExecutor(timeout=60, max_runs=2)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    await _saved(runtime, "leaf", "async (n) => { await new Promise((r) => setTimeout(r, 50)); return n * 10; }")
    await _saved(runtime, "middle", "async (input) => await codemode.run('leaf', input)")
    await _saved(runtime, "top", "async (input) => await codemode.run('middle', input)")
    code = "return await Promise.all([1, 2, 3, 4].map((i) => codemode.run('top', i)));"
    async with Sampler(executor) as sampler:
        outcome = await asyncio.wait_for(runtime.execute(code), 50)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == [10, 20, 30, 40]
    assert sampler.most <= 2 + 2  # the cap, plus one per level below the second (all of them waiting)
    await runtime.aclose()


async def test_a_snippet_that_runs_itself_stops_at_the_nesting_limit(tmp_path: Path) -> None:
    executor = codemode.DenoExecutor(timeout=60, max_runs=3)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    await _saved(runtime, "again", "return 1 + await codemode.run('again');")
    async with Sampler(executor) as sampler:
        outcome = await runtime.execute("return await codemode.run('again');")
    assert outcome.status == "error"
    assert "codemode.run nests too deeply" in (outcome.error or ""), outcome.error
    assert sampler.most <= 3 + 8
    await runtime.aclose()
    assert _deno_children(executor) == []


def test_the_default_caps() -> None:
    executor = codemode.DenoExecutor()
    assert (executor.max_runs, executor.max_processes) == (64, 2)
    for option in ("max_runs", "max_processes", "recycle_after"):
        with pytest.raises(ValueError, match=option):
            codemode.DenoExecutor(**{option: 0})


def _monty_workers() -> list[int]:
    """Monty pool workers started by this process."""
    pids = []
    for pid in child_pids():
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/cmdline").read_bytes().endswith(b"monty\x00subprocess\x00"):
                pids.append(pid)
    return pids


async def test_monty_nested_snippets_beyond_max_workers_do_not_deadlock(tmp_path: Path) -> None:
    executor = codemode.MontyExecutor(timeout=30, max_workers=2)
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    await _saved(runtime, "leaf", "import asyncio\nawait asyncio.sleep(0.05)\ninput * 10")
    await _saved(runtime, "middle", 'await codemode.run("leaf", input)')
    await _saved(runtime, "top", 'await codemode.run("middle", input)')
    code = 'import asyncio\nawait asyncio.gather(*[codemode.run("top", i) for i in [1, 2, 3, 4]])'
    outcome = await asyncio.wait_for(runtime.execute(code), 25)
    assert outcome.status == "completed", outcome.error
    assert outcome.result == [10, 20, 30, 40]
    await _saved(runtime, "again", 'await codemode.run("again")')
    outcome = await runtime.execute('await codemode.run("again")')
    assert "codemode.run nests too deeply" in (outcome.error or ""), outcome.error
    await runtime.aclose()


@pytest.mark.parametrize("kind", ["deno", "monty"])
def test_one_executor_across_many_asyncio_runs_keeps_its_process_count(tmp_path: Path, kind: str) -> None:
    """A script calling asyncio.run per request with one runtime: sandboxes of ended loops are reused,
    not left behind one set per loop."""
    executor: codemode.Executor
    if kind == "deno":
        executor = deno = codemode.DenoExecutor(timeout=20, warm_workers=1)
        count = lambda: len(_deno_children(deno))  # noqa: E731
    else:
        executor = codemode.MontyExecutor(timeout=20)
        count = lambda: len(_monty_workers())  # noqa: E731
    runtime = codemode.Runtime([Items()], executor=executor, store=codemode.SqliteStore(tmp_path / "c.db"))
    code = "return 1 + 1;" if kind == "deno" else "1 + 1"
    seen = []
    for _ in range(5):
        assert asyncio.run(runtime.execute(code)).result == 2
        seen.append(count())
    asyncio.run(runtime.aclose())
    assert max(seen) <= 2, seen
    assert count() == 0


# -- 5. a store that cannot open or write says so and leaks nothing ---------------------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _open_fails(path: Path | str) -> codemode.StoreError:
    store = codemode.SqliteStore(path)
    with pytest.raises(codemode.StoreError) as caught:
        await store.open()
    return caught.value


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing directory", "does not exist; create it"),
        ("not a database", "is not a SQLite database"),
        ("a directory", "names a file (not a directory)"),
    ],
)
async def test_a_store_that_cannot_open_names_the_file_and_keeps_no_descriptor(
    tmp_path: Path, case: str, expected: str
) -> None:
    path = {
        "missing directory": tmp_path / "nowhere" / "codemode.db",
        "not a database": tmp_path / "notes.txt",
        "a directory": tmp_path,
    }[case]
    if case == "not a database":
        path.write_text("these are my notes, not a database\n" * 100)
    await _open_fails(path)  # warm up: imports and the thread pool's first start
    before = _open_fds()
    for _ in range(5):
        error = await _open_fails(path)
    assert _open_fds() == before
    assert str(path) in str(error) and expected in str(error), str(error)
    assert error.path == str(path)
    if case == "not a database":
        assert path.read_text().startswith("these are my notes")  # left exactly as it was


def _in_private_mounts(tmp_path: Path, shell: str, body: str) -> subprocess.CompletedProcess[str]:
    """Run `shell` (which mounts what the test needs under $MNT, then runs `python script.py`) in a
    mount namespace of its own (`unshare`), so the real mounts it makes vanish with it."""
    (tmp_path / "mnt").mkdir()
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(body))
    env = {**os.environ, "PYTHONPATH": str(SRC), "MNT": str(tmp_path / "mnt"), "PY": sys.executable}
    return subprocess.run(
        ["unshare", "-rm", "sh", "-ec", shell], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )


def test_a_store_on_a_read_only_mount_says_so_and_keeps_no_descriptor(tmp_path: Path) -> None:
    done = _in_private_mounts(
        tmp_path,
        'mount -t tmpfs -o size=4m tmpfs "$MNT"\n'
        '"$PY" -c "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute(\'CREATE TABLE t (x)\')" '
        '"$MNT/codemode.db"\n'
        'mount -o remount,ro "$MNT"\n'
        '"$PY" script.py',
        """
        import asyncio, os, sys
        import codemode

        async def attempt(path):
            try:
                await codemode.SqliteStore(path).open()
            except codemode.StoreError as exc:
                return str(exc)
            return "opened"

        async def main():
            mnt = os.environ["MNT"]
            await attempt(mnt + "/codemode.db")
            before = len(os.listdir("/proc/self/fd"))
            existing = [await attempt(mnt + "/codemode.db") for _ in range(5)][-1]
            new = [await attempt(mnt + "/new.db") for _ in range(5)][-1]
            print(len(os.listdir("/proc/self/fd")) - before)
            print(existing)
            print(new)

        asyncio.run(main())
        """,
    )
    assert done.returncode == 0, done.stderr
    leaked, existing, new = done.stdout.splitlines()
    assert leaked == "0"
    mnt = str(tmp_path / "mnt")
    assert existing.startswith(f"Cannot write the codemode database {mnt}/codemode.db"), existing
    assert "read-only" in existing and "pass a writable path" in existing
    assert new.startswith(f"Cannot open the codemode database {mnt}/new.db"), new


DISK_FULL = """
import asyncio, os, sys
import codemode

async def main():
    mnt = os.environ["MNT"]
    store = codemode.SqliteStore(mnt + "/codemode.db")
    await store.open()
    kept = (await store.begin("rt", "kept", [], 100)).execution_id
    ballast = os.open(mnt + "/ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(ballast, b"x" * 4096):  # take every byte left
            pass
    except OSError:
        pass
    os.close(ballast)
    try:
        await store.begin("rt", "y" * 300_000, [], 100)
        print("written")
    except codemode.StoreError as exc:
        print(f"{type(exc.__cause__).__name__}: {exc.__cause__}")
        print(exc)
    os.remove(mnt + "/ballast")  # space is back
    again = await store.begin("rt", "y" * 300_000, [], 100)
    print(sorted(e.id for e in await store.list_executions("rt", None)) == sorted([kept, again.execution_id]))
    await store.close()

asyncio.run(main())
"""


def test_a_full_disk_is_reported_as_such_and_the_store_works_once_space_is_back(tmp_path: Path) -> None:
    """A real full disk: a 1 MiB tmpfs, filled up (SQLITE_FULL)."""
    done = _in_private_mounts(tmp_path, 'mount -t tmpfs -o size=1m tmpfs "$MNT"\n"$PY" script.py', DISK_FULL)
    assert done.returncode == 0, done.stderr
    cause, message, usable = done.stdout.splitlines()
    assert cause == "OperationalError: database or disk is full"
    assert message.startswith(f"The codemode database {tmp_path}/mnt/codemode.db could not be written: the disk is")
    assert "cannot rollback" not in message and "free some space" in message
    assert usable == "True"


def test_a_file_size_limit_is_reported_as_an_io_error_and_the_store_works_after(tmp_path: Path) -> None:
    """A real write failure of another kind: RLIMIT_FSIZE makes the write fail with EFBIG."""
    script = DISK_FULL.replace(
        """    ballast = os.open(mnt + "/ballast", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(ballast, b"x" * 4096):  # take every byte left
            pass
    except OSError:
        pass
    os.close(ballast)
""",
        """    import resource, signal
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
    largest = max(os.path.getsize(mnt + "/" + name) for name in os.listdir(mnt))
    resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 8192, resource.RLIM_INFINITY))
""",
    ).replace(
        """    os.remove(mnt + "/ballast")  # space is back""",
        """    resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))""",
    )
    assert script != DISK_FULL
    (tmp_path / "mnt").mkdir()
    done = _run_script(tmp_path, script.replace('os.environ["MNT"]', repr(str(tmp_path / "mnt"))))
    assert done.returncode == 0, done.stderr
    cause, message, usable = done.stdout.splitlines()
    assert cause == "OperationalError: disk I/O error"
    assert message.startswith(f"The codemode database {tmp_path}/mnt/codemode.db could not be written: disk I/O")
    assert "cannot rollback" not in message and "a file size limit" in message
    assert usable == "True"
