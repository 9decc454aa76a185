"""The approval console in a real headless Chromium (Debian's package, driven by Playwright) against the
real `codemode console` process, a uvicorn server on 127.0.0.1, and a real SQLite file.

The bank connector's ledger proves each approved action ran exactly once. Screenshots of the pages go to
tmp_path, or to $CODEMODE_SCREENSHOTS (docs/images for docs/console.md).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from cli_app import codemode, env, ledger, seed, write_app

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TRY_CATCH = (
    "try:\n    await bank.pay(to='erin', amount=5)\nexcept PermissionError as e:\n    return 'not paid: ' + str(e)"
)


@dataclass
class Console:
    directory: Path
    url: str  # with ?token=
    base: str
    token: str
    process: subprocess.Popen[str]

    @property
    def cookie(self) -> dict[str, str]:
        port = self.base.rsplit(":", 1)[1]
        return {f"codemode_console_{port}": self.token}


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def console_on(directory: Path) -> Iterator[Console]:
    """Start `codemode console --app app:runtime --port 0` in `directory`; read the URL it prints."""
    write_app(directory)
    process = subprocess.Popen(
        [sys.executable, "-m", "codemode.cli", "console", "--app", "app:runtime", "--port", "0"],
        cwd=directory,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = ""
    for _ in range(5):
        line = process.stdout.readline()
        if "http://" in line:
            url = line.strip()
            break
    if not url:
        process.kill()
        pytest.fail(f"the console did not start: {process.communicate()}")
    match = re.fullmatch(r"(http://127\.0\.0\.1:\d+)/\?token=(\S+)", url)
    assert match is not None, url
    yield Console(directory, url, match.group(1), match.group(2), process)


def stop(console: Console) -> None:
    console.process.terminate()
    try:
        console.process.wait(15)
    except subprocess.TimeoutExpired:
        console.process.kill()
        console.process.wait()
        pytest.fail("the console did not stop on SIGTERM")
    # uvicorn re-raises the signal once it has shut down (the runtime closed first), as a server should.
    out, err = console.process.communicate()
    assert console.process.returncode in (0, -signal.SIGTERM), err
    assert "codemode console stopped; the runtime is closed." in out, (out, err)


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    started = next(console_on(tmp_path))
    yield started
    stop(started)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext, console: Console) -> Page:
    page = context.new_page()
    page.goto(console.url)
    return page


def shoot(page: Page, name: str, tmp_path: Path) -> None:
    target = Path(os.environ.get("CODEMODE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(target / f"{name}.png"), full_page=True)
    assert (target / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def record(console: Console, execution_id: str) -> dict[str, object]:
    done = codemode(console.directory, "show", execution_id, "--json")
    assert done.returncode == 0, done.stderr
    out: dict[str, object] = json.loads(done.stdout)
    return out


def card(page: Page, execution_id: str, seq: int) -> object:
    return page.locator(f'form.action[data-key="{execution_id}:{seq}"]')


# -- access ------------------------------------------------------------------


def test_a_missing_or_wrong_token_is_refused(console: Console, browser: Browser) -> None:
    plain = httpx.get(f"{console.base}/pending")
    assert plain.status_code == 403 and "Access token missing" in plain.text
    wrong = httpx.get(f"{console.base}/pending?token=nope")
    assert wrong.status_code == 403 and "Access token wrong" in wrong.text
    assert httpx.get(f"{console.base}/events").status_code == 403
    right = httpx.get(console.url)
    assert right.status_code == 303 and "token" not in right.headers["location"]
    assert (
        "httponly" in right.headers["set-cookie"].lower() and "samesite=strict" in right.headers["set-cookie"].lower()
    )

    context = browser.new_context()
    try:
        tab = context.new_page()
        response = tab.goto(f"{console.base}/pending")
        assert response is not None and response.status == 403
        expect(tab.locator("h1")).to_have_text("Access token missing")
        tab.goto(console.url)  # the printed URL: the token becomes a cookie, and leaves the address bar
        assert tab.url == f"{console.base}/pending"
        expect(tab.locator("h1")).to_have_text("Pending actions")
        tab.goto(f"{console.base}/runs")
        expect(tab.locator("h1")).to_have_text("Runs")
    finally:
        context.close()


def test_posts_without_the_csrf_token_are_refused(console: Console) -> None:
    eid = seed(console.directory)["execution_id"]
    cookies = console.cookie
    form = {"seq": "1", "by": "mallory", "action": "approve"}
    url = f"{console.base}/runs/{eid}/decide"
    missing = httpx.post(url, data=form, cookies=cookies)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = httpx.post(url, data={**form, "csrf": "guess"}, cookies=cookies)
    assert wrong.status_code == 403
    page = httpx.get(f"{console.base}/pending", cookies=cookies).text
    csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert csrf is not None
    foreign = httpx.post(url, data={**form, "csrf": csrf.group(1)}, cookies=cookies, headers={"Origin": "http://evil"})
    assert foreign.status_code == 403
    rollback = httpx.post(f"{console.base}/runs/{eid}/rollback", data={"by": "mallory"}, cookies=cookies)
    assert rollback.status_code == 403
    check = httpx.post(
        f"{console.base}/api/validate", json={"execution_id": eid, "seq": 1, "args": "{}"}, cookies=cookies
    )
    assert check.status_code == 403
    no_token = httpx.post(url, data={**form, "csrf": csrf.group(1)})
    assert no_token.status_code == 403
    assert ledger(console.directory) == [] and record(console, eid)["status"] == "paused"
    allowed = httpx.post(url, data={**form, "csrf": csrf.group(1)}, cookies=cookies)  # the control: it works
    assert allowed.status_code == 303 and len(ledger(console.directory)) == 1


# -- deciding ----------------------------------------------------------------


def test_approve_shows_the_program_and_the_calls_and_runs_the_action_once(
    console: Console, page: Page, context: BrowserContext, tmp_path: Path
) -> None:
    eid = seed(console.directory, metadata={"team": "finance"})["execution_id"]
    page.reload()
    paused = page.locator(".line.paused")
    expect(paused).to_have_count(1)
    expect(paused).to_contain_text('r = await bank.pay(to="carol", amount=30)')
    calls = page.locator(f'section[data-key="{eid}"] table.calls')
    expect(calls).to_contain_text("bank.balance")
    expect(calls).to_contain_text("applied")
    expect(calls).to_contain_text("100")
    form = card(page, eid, 1)
    expect(form.locator("textarea")).to_have_value('{\n  "amount": 30,\n  "to": "carol"\n}')
    page.fill("#approver", "ann")
    form.locator("input[name=reason]").fill("invoice checked")
    shoot(page, "console-pending", tmp_path)
    form.locator("button.approve").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Approved bank.pay (seq 1) of run {eid}; the run completed.")
    assert ledger(console.directory) == [{"amount": 30, "op": "pay", "to": "carol"}]
    decision = record(console, eid)["log"][1]["decision"]  # type: ignore[index]
    assert decision["by"] == "ann" and decision["reason"] == "invoice checked" and decision["args"] is None
    other = context.new_page()  # the approver's name is remembered
    other.goto(f"{console.base}/pending")
    expect(other.locator("#approver")).to_have_value("ann")


def test_edited_arguments_are_checked_against_the_schema(console: Console, page: Page, tmp_path: Path) -> None:
    eid = seed(console.directory)["execution_id"]
    page.reload()
    page.fill("#approver", "ann")
    form = card(page, eid, 1)
    area = form.locator("textarea")
    area.fill("{oops")
    expect(form.locator(".validation")).to_contain_text("Not valid JSON")
    form.locator("button.approve").click()
    expect(form.locator(".validation")).to_contain_text("Not valid JSON")
    area.fill('{"to": 5, "amount": 30}')
    expect(form.locator(".validation")).to_contain_text("5 is not of type 'string'")
    shoot(page, "console-invalid-args", tmp_path)
    form.locator("button.approve").click()
    page.wait_for_timeout(500)
    expect(form.locator(".validation")).to_contain_text("is not of type")
    assert ledger(console.directory) == [] and record(console, eid)["status"] == "paused"
    area.fill('{"to": "dave", "amount": 31}')
    expect(form.locator(".validation")).to_have_text("")
    form.locator("button.approve").click()
    expect(page.locator(".flash.ok")).to_contain_text("with edited arguments; the run completed")
    assert ledger(console.directory) == [{"amount": 31, "op": "pay", "to": "dave"}]
    entry = record(console, eid)["log"][1]  # type: ignore[index]
    assert entry["args"] == {"amount": 30, "to": "carol"} and entry["decision"]["args"] == {"amount": 31, "to": "dave"}


def test_the_server_validates_edited_arguments_too(console: Console, browser: Browser) -> None:
    eid = seed(console.directory)["execution_id"]
    context = browser.new_context(java_script_enabled=False)  # the form goes straight to the server
    try:
        tab = context.new_page()
        tab.goto(console.url)
        form = card(tab, eid, 1)
        form.locator("input[name=by]").fill("ann")
        form.locator("textarea").fill('{"to": "dave"}')
        form.locator("button.approve").click()
        expect(tab.locator(".flash.error")).to_contain_text("'amount' is a required property")
        expect(tab.locator(".flash.error")).to_contain_text("Nothing was approved")
        form.locator("textarea").fill("[1, 2")
        form.locator("button.approve").click()
        expect(tab.locator(".flash.error")).to_contain_text("not valid JSON")
    finally:
        context.close()
    assert ledger(console.directory) == [] and record(console, eid)["status"] == "paused"


def test_reject_and_reject_and_continue(console: Console, page: Page) -> None:
    ended = seed(console.directory)["execution_id"]
    resumed = seed(console.directory, TRY_CATCH)["execution_id"]
    page.reload()
    page.fill("#approver", "bob")
    form = card(page, ended, 1)
    form.locator("input[name=reason]").fill("not on the payroll")
    form.locator("button.reject").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Rejected bank.pay (seq 1) of run {ended}; the run ended")
    run = record(console, ended)
    assert run["status"] == "rejected" and run["error"] == "Action bank.pay rejected by bob: not on the payroll"
    card(page, resumed, 0).locator("button.reject-resume").click()
    expect(page.locator(".flash.ok")).to_contain_text("the program continues (status: completed)")
    assert record(console, resumed)["result"] == "not paid: Action bank.pay rejected by bob"
    assert ledger(console.directory) == []
    expect(page.locator(".empty")).to_have_text("Nothing is waiting for a decision.")


def test_a_stale_page_says_already_decided_and_changes_nothing(console: Console, browser: Browser) -> None:
    first = seed(console.directory)["execution_id"]
    second = seed(console.directory)["execution_id"]
    # A tab without scripts keeps showing what it loaded (no live updates): the stalest page there is.
    stale_context = browser.new_context(java_script_enabled=False)
    live_context = browser.new_context()
    try:
        stale = stale_context.new_page()
        stale.goto(console.url)
        for form in (card(stale, first, 1), card(stale, second, 1)):
            form.locator("input[name=by]").fill("carl")
        # decided first from the command line...
        done = codemode(
            console.directory, "approve", first, "1", "--by", "bob", "--reason", "ok", "--app", "app:runtime"
        )
        assert done.returncode == 0, done.stderr
        card(stale, first, 1).locator("button.approve").click()
        expect(stale.locator(".flash.stale")).to_contain_text(
            f"Action 1 of run {first} was already decided: approved by bob"
        )
        expect(stale.locator(".flash.stale")).to_contain_text("Nothing changed.")
        # ...and from another tab, which sees the first tab's action go away by itself
        other = live_context.new_page()
        other.goto(console.url)
        other.fill("#approver", "ann")
        card(other, second, 1).locator("input[name=reason]").fill("typing a reason")
        httpx_cookies = console.cookie
        tab = httpx.get(f"{console.base}/pending", cookies=httpx_cookies).text
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', tab)
        assert csrf is not None
        stale.goto(f"{console.base}/pending")  # reload: the second run is still pending there
        card(stale, second, 1).locator("input[name=by]").fill("carl")
        card(stale, second, 1).locator("button.reject").click()
        expect(stale.locator(".flash.ok")).to_contain_text("Rejected bank.pay")
        note = other.locator(f'section[data-key="{second}"] .gone-note')
        expect(note).to_contain_text("no longer pending", timeout=10_000)
        expect(card(other, second, 1).locator("button.approve")).to_be_disabled()
    finally:
        stale_context.close()
        live_context.close()
    assert ledger(console.directory) == [{"amount": 30, "op": "pay", "to": "carol"}]  # the first run's, once
    assert record(console, second)["status"] == "rejected"


def test_a_new_pause_appears_without_reloading(console: Console, page: Page) -> None:
    expect(page.locator(".empty")).to_have_text("Nothing is waiting for a decision.")
    expect(page.locator("#live-status.on")).to_have_count(1)  # the event stream is open
    page.evaluate("window.loadedOnce = true")
    eid = seed(console.directory)["execution_id"]
    expect(page.locator(f'section[data-key="{eid}"]')).to_have_count(1, timeout=10_000)
    expect(page.locator("#pending-count")).to_have_text("1")
    expect(page.locator(".empty")).to_have_count(0)
    assert page.evaluate("window.loadedOnce") is True  # the same page: nothing reloaded it
    runs = page.context.new_page()
    runs.goto(f"{console.base}/runs")
    runs.evaluate("window.loadedOnce = true")
    later = seed(console.directory, "return await bank.balance()")["execution_id"]
    expect(runs.locator(f'tr[data-key="{later}"] .status')).to_have_text("completed", timeout=10_000)
    codemode(console.directory, "approve", eid, "1", "--by", "bob", "--app", "app:runtime")
    expect(runs.locator(f'tr[data-key="{eid}"] .status')).to_have_text("completed", timeout=10_000)
    expect(page.locator(f'section[data-key="{eid}"]')).to_have_count(0, timeout=10_000)
    assert runs.evaluate("window.loadedOnce") is True


# -- the audit trail -----------------------------------------------------------


def test_rollback_shows_the_report(console: Console, page: Page, tmp_path: Path) -> None:
    eid = seed(console.directory)["execution_id"]
    codemode(
        console.directory, "approve", eid, "1", "--by", "ann", "--reason", "invoice checked", "--app", "app:runtime"
    )
    page.goto(f"{console.base}/runs/{eid}")
    timeline = page.locator("table.timeline")
    expect(timeline.locator('tr[data-seq="1"]')).to_contain_text("approve by ann")
    expect(timeline.locator('tr[data-seq="1"]')).to_contain_text("invoice checked")
    page.fill("#approver", "ann")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button.rollback").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Rolled back run {eid}.")
    expect(page.locator("#report-reverted")).to_have_text("1")
    expect(page.locator("#report-irreversible")).to_have_text("0")
    expect(page.locator("#report-failed")).to_have_text("none")
    expect(page.locator("#run-status")).to_have_text("rolled_back")
    expect(timeline.locator('tr[data-seq="1"]')).to_contain_text("rollback by ann")
    shoot(page, "console-run", tmp_path)
    assert ledger(console.directory) == [
        {"amount": 30, "op": "pay", "to": "carol"},
        {"amount": 30, "op": "refund", "to": "carol"},
    ]

    wired = seed(console.directory, "return await bank.wire(to='mallory')")["execution_id"]
    codemode(console.directory, "approve", wired, "0", "--by", "ann", "--app", "app:runtime")
    page.goto(f"{console.base}/runs/{wired}")
    page.once("dialog", lambda dialog: dialog.dismiss())  # a second thought: nothing happens
    page.locator("button.rollback").click()
    expect(page.locator("#run-status")).to_have_text("completed")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("button.rollback").click()
    expect(page.locator(".flash.error")).to_contain_text("failed")
    expect(page.locator("#report-failed")).to_contain_text("seq 0: ")
    expect(page.locator("#report-failed")).to_contain_text("the bank refused the recall")


def test_runs_filter_by_status_connector_and_metadata(console: Console, page: Page, tmp_path: Path) -> None:
    paid = seed(console.directory, metadata={"team": "finance"})["execution_id"]
    mailed = seed(console.directory, "return await mail.send(to='ann', text='hi')", metadata={"team": "ops"})
    codemode(console.directory, "reject", paid, "1", "--by", "bob", "--app", "app:runtime")
    waiting = seed(console.directory)["execution_id"]
    page.goto(f"{console.base}/runs")
    rows = page.locator("tbody#live tr")
    expect(rows).to_have_count(3)
    shoot(page, "console-runs", tmp_path)
    page.select_option("select[name=status]", "rejected")
    page.locator(".filters button").click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", paid)
    page.goto(f"{console.base}/runs?connector=mail")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", mailed["execution_id"])
    page.goto(f"{console.base}/runs?metadata=team%3Dfinance")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-key", paid)
    page.goto(f"{console.base}/runs?status=paused")
    expect(rows.first).to_have_attribute("data-key", waiting)
    page.goto(f"{console.base}/runs?metadata=oops")
    expect(page.locator(".flash.error")).to_contain_text('"oops" is not key=value')
    page.goto(f"{console.base}/runs/exec_nope")
    expect(page.locator("h1")).to_contain_text("No run exec_nope")


def test_on_postgresql_pauses_arrive_by_notify(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, browser: Browser
) -> None:
    from postgres_server import shared_server

    server = shared_server()
    dsn = server.dsn(server.new_schema())
    monkeypatch.setenv("CODEMODE_TEST_DSN", dsn)
    console = next(console_on(tmp_path))
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(console.url)
        expect(page.locator("#live-status.on")).to_have_count(1)
        eid = seed(tmp_path)["execution_id"]
        # The stream waits on LISTEN/NOTIFY (it polls only every 15 s without it): this arrives by NOTIFY.
        expect(page.locator(f'section[data-key="{eid}"]')).to_have_count(1, timeout=8_000)
        page.fill("#approver", "ann")
        card(page, eid, 1).locator("button.approve").click()
        expect(page.locator(".flash.ok")).to_contain_text("the run completed")
        listed = codemode(tmp_path, "runs", "--dsn", dsn, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(r["id"], r["status"]) for r in json.loads(listed.stdout)] == [(eid, "completed")]
    finally:
        context.close()
        stop(console)
    assert ledger(tmp_path) == [{"amount": 30, "op": "pay", "to": "carol"}]


def test_create_app_serves_a_runtime_of_your_own(tmp_path: Path) -> None:
    import importlib.util
    import socket
    import threading

    import uvicorn

    from codemode.server.console import create_app

    write_app(tmp_path)
    eid = seed(tmp_path)["execution_id"]
    spec = importlib.util.spec_from_file_location("embedded_app", tmp_path / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    app = create_app(module.runtime(), token="a-long-random-secret")
    assert app.state.console.token == "a-long-random-secret"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        page = httpx.get(f"{base}/pending", headers={"Authorization": "Bearer a-long-random-secret"})
        assert page.status_code == 200 and f'data-key="{eid}:1"' in page.text
        assert httpx.get(f"{base}/pending", headers={"Authorization": "Bearer wrong"}).status_code == 403
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
    assert not thread.is_alive()


def test_open_tabs_share_one_read_of_the_store(tmp_path: Path) -> None:
    """Every open page polls the console's version; the console reads the store for it at most twice a
    poll interval, however many tabs ask, and sees a new pause once the interval has passed."""
    import asyncio
    import time

    import codemode as cm
    from codemode.server.console import create_app

    class CountingStore(cm.SqliteStore):
        reads = 0

        async def list_executions(self, *args: object, **kwargs: object) -> list[cm.Execution]:
            CountingStore.reads += 1
            return await super().list_executions(*args, **kwargs)  # type: ignore[arg-type]

    class Gate(cm.Connector):
        name = "gate"

        @cm.tool(requires_approval=True)
        def open(self) -> str:
            """Open the gate."""
            return "open"

    async def scenario() -> None:
        runtime = cm.Runtime([Gate()], store=CountingStore(tmp_path / "tabs.db"))
        console = create_app(runtime, token="a-long-random-secret", poll_interval=1.0).state.console
        console.runtime = runtime
        async with runtime:
            first = await asyncio.gather(*(console.version() for _ in range(50)))
            assert len(set(first)) == 1 and CountingStore.reads == 1
            assert (await runtime.execute("return await gate.open()")).status == "paused"
            time.sleep(0.6)  # past half the poll interval: the next tab to ask reads again
            assert await console.version() != first[0] and CountingStore.reads == 2

    import concurrent.futures

    # A thread of its own: the browser tests of this module leave Playwright's event loop running on this one.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, scenario()).result()
