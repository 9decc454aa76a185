"""The console's Starlette app: server-rendered pages, form posts, and server-sent events for live updates.

Safe by default: every request needs the per-start access token (from the `?token=` URL printed at start,
then an HttpOnly cookie), every POST the CSRF token the page carries, and every decision the `seq` the
page showed, so a stale page changes nothing and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from codemode.errors import RollbackError
from codemode.records import STEP_CONNECTOR, TERMINAL_STATUSES, Execution, LogEntry, PendingAction
from codemode.runtime.runtime import Runtime

__all__ = ["Console", "create_app", "serve"]

HERE = Path(__file__).parent
STATUSES = ["paused", "running", "completed", "error", "rejected", "rolling_back", "rolled_back"]
BY_COOKIE = "codemode_console_by"
MAX_RUNS = 200  # the Runs page shows at most this many (newest first)
_SEE_DESCRIBE = re.compile(r'\s*See codemode\.describe\("[^"]*"\) for the expected arguments\.')


def _json(value: Any, indent: int | None = 2) -> str:
    """Values as the approver reads them: JSON where possible, repr for the rest."""
    return json.dumps(value, indent=indent, ensure_ascii=False, sort_keys=True, default=_fallback)


def _fallback(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return repr(value)


def _when(moment: datetime | None) -> str:
    return "" if moment is None else moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def call_lines(code: str, connector: str, method: str) -> list[int]:
    """The 1-based lines of `code` that call `connector.method`: where the run paused."""
    pattern = re.compile(rf"\b{re.escape(connector)}\s*\.\s*{re.escape(method)}\b")
    return [n for n, line in enumerate(code.splitlines(), 1) if pattern.search(line)]


@dataclass
class Flash:
    """A message shown once after a post (post/redirect/get)."""

    kind: str  # ok | stale | error
    text: str
    report: dict[str, Any] | None = None
    link: str | None = None


@dataclass
class Console:
    """The console's state for one start: the runtime, the secrets, the messages waiting to be shown."""

    load: Callable[[], Awaitable[Runtime]]
    token: str
    cookie: str = "codemode_console_token"
    poll_interval: float = 1.0
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    runtime: Runtime | None = None
    flashes: dict[str, Flash] = field(default_factory=dict)
    changed: asyncio.Event | None = None  # set on every PostgreSQL NOTIFY; None: poll the store
    listener: asyncio.Task[None] | None = None
    notified: int = 0  # NOTIFYs seen so far
    _version: tuple[float, int, str] | None = None  # (read at, NOTIFYs then, digest): shared by every open tab

    @property
    def rt(self) -> Runtime:
        assert self.runtime is not None, "the console's runtime is opened by its lifespan"
        return self.runtime

    # -- lifecycle --------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.runtime = await self.load()
        async with self.runtime:
            changes = getattr(self.runtime.store, "changes", None)
            if changes is not None:
                self.changed = asyncio.Event()
                ready = asyncio.Event()
                self.listener = asyncio.create_task(self._listen(changes, ready))
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ready.wait(), 10)
            try:
                yield
            finally:
                if self.listener is not None:
                    self.listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await self.listener
        print("codemode console stopped; the runtime is closed.", flush=True)

    async def _listen(self, changes: Callable[..., AsyncIterator[Any]], ready: asyncio.Event) -> None:
        """Wake the event streams on every status change any host commits (LISTEN/NOTIFY)."""
        assert self.changed is not None
        while True:
            try:
                async for change in changes(ready=ready):
                    if change.runtime == self.rt.name:
                        self.notified += 1
                        self.changed.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # the connection broke: poll until it is back
                self.notified += 1
                self.changed.set()
                await asyncio.sleep(1)

    # -- security ---------------------------------------------------------

    def authorized(self, request: Request) -> bool:
        cookie = request.cookies.get(self.cookie, "")
        header = request.headers.get("authorization", "")
        return hmac.compare_digest(cookie, self.token) or hmac.compare_digest(header, f"Bearer {self.token}")

    def csrf_ok(self, request: Request, sent: str | None) -> bool:
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return sent is not None and hmac.compare_digest(sent, self.csrf)

    def flash(self, message: Flash) -> str:
        key = secrets.token_urlsafe(8)
        self.flashes[key] = message
        while len(self.flashes) > 100:
            self.flashes.pop(next(iter(self.flashes)))
        return key

    # -- reading the store ------------------------------------------------

    async def version(self) -> str:
        """A digest of what the pages show; it changes when a run pauses, is decided, or ends.

        Read from the store at most twice per poll interval however many tabs are open (and again at
        once after a NOTIFY), so the console's load does not grow with its viewers."""
        now = time.monotonic()
        cached = self._version
        if cached is not None and now - cached[0] < self.poll_interval / 2 and cached[1] == self.notified:
            return cached[2]
        notified = self.notified
        pending = await self.rt.pending()
        runs = await self.rt.executions(50)
        basis = [(p.execution_id, p.seq) for p in pending], [(e.id, e.status, e.updated_at.isoformat()) for e in runs]
        digest = hashlib.sha256(json.dumps(basis).encode()).hexdigest()[:16]
        self._version = (now, notified, digest)
        return digest

    async def schema(self, connector: str, method: str) -> Mapping[str, Any] | None:
        setup = await self.rt.setup()
        description = setup.descriptions.get(connector)
        spec = description.tools.get(method) if description else None
        return spec.input_schema if spec else None

    async def invalid(self, connector: str, method: str, args: Any) -> str | None:
        """Why edited arguments do not fit the tool's schema (the runtime's own check), or None."""
        setup = await self.rt.setup()
        description = setup.descriptions.get(connector)
        spec = description.tools.get(method) if description else None
        if spec is None:
            return f"This runtime has no tool {connector}.{method}: start the console with the application that ran it."
        if not isinstance(args, dict):
            return "The arguments must be a JSON object."
        problem = setup.invalid_arguments(connector, method, spec, args)
        return None if problem is None else _SEE_DESCRIBE.sub("", problem)

    async def card(self, execution: Execution, action: PendingAction) -> dict[str, Any]:
        schema = await self.schema(action.connector, action.method)
        return {
            "action": action,
            "key": f"{action.execution_id}:{action.seq}",
            "args": _json(action.args),
            "schema": _json(schema) if schema is not None else None,
            "lines": call_lines(execution.code, action.connector, action.method),
        }


def entry_view(entry: LogEntry) -> dict[str, Any]:
    step = entry.connector == STEP_CONNECTOR
    return {
        "e": entry,
        "call": f"step {entry.method}" if step else f"{entry.connector}.{entry.method}",
        "args": "" if step else _json(entry.args, None),
        "result": "" if entry.result is None else _json(entry.result, None),
        "decision": entry.decision,
        "rollback": entry.rollback,
        "edited": None if entry.decision is None or entry.decision.args is None else _json(entry.decision.args, None),
    }


def program_view(code: str, marked: set[int]) -> list[dict[str, Any]]:
    return [{"n": n, "text": line, "marked": n in marked} for n, line in enumerate(code.splitlines(), 1)]


def create_app(
    runtime: Runtime | Callable[[], Awaitable[Runtime]],
    *,
    token: str | None = None,
    cookie: str = "codemode_console_token",
    poll_interval: float = 1.0,
) -> Starlette:
    """The console as an ASGI app; `runtime` is a Runtime or an async function returning one (opened and
    closed by the app's lifespan). `app.state.console.token` is the access token."""
    load: Callable[[], Awaitable[Runtime]]
    if isinstance(runtime, Runtime):
        given = runtime

        async def opened() -> Runtime:
            return given

        load = opened
    else:
        load = runtime
    console = Console(load, token or secrets.token_urlsafe(24), cookie, poll_interval)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.globals.update(when=_when, statuses=STATUSES)

    async def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        flash = console.flashes.pop(request.query_params.get("flash", ""), None)
        partial = request.headers.get("x-partial") == "1"
        version = await console.version()
        pending_count = len(await console.rt.pending())
        html = env.get_template(name).render(
            partial=partial,
            csrf=console.csrf,
            by=request.cookies.get(BY_COOKIE, ""),
            flash=flash,
            version=version,
            pending_count=pending_count,
            runtime_name=console.rt.name,
            path=request.url.path,
            **context,
        )
        headers = {"Cache-Control": "no-store", "X-Version": version, "X-Pending": str(pending_count)}
        return HTMLResponse(html, status_code, headers=headers)

    async def guard(request: Request) -> Response | None:
        """None when the request may go on; else the 403 (or the redirect that trades a ?token= for a cookie)."""
        sent = request.query_params.get("token")
        if sent is not None and hmac.compare_digest(sent, console.token):
            response = RedirectResponse(str(request.url.remove_query_params("token")), 303)
            response.set_cookie(console.cookie, console.token, httponly=True, samesite="strict")
            return response
        if console.authorized(request):
            return None
        page = env.get_template("forbidden.html").render(wrong=sent is not None)
        return HTMLResponse(page, 403)

    def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            refusal = await guard(request)
            return refusal if refusal is not None else await handler(request)

        return endpoint

    async def form(request: Request) -> dict[str, str] | Response:
        data = await request.form()
        fields = {k: v for k, v in data.items() if isinstance(v, str)}
        if not console.csrf_ok(request, fields.get("csrf")):
            return HTMLResponse(env.get_template("forbidden.html").render(wrong=False, csrf=True), 403)
        return fields

    def back(url: str, message: Flash, by: str | None = None) -> RedirectResponse:
        response = RedirectResponse(f"{url}?flash={console.flash(message)}", 303)
        if by:
            response.set_cookie(BY_COOKIE, by, max_age=365 * 86400, samesite="strict")
        return response

    # -- pages ------------------------------------------------------------

    async def home(request: Request) -> Response:
        return RedirectResponse("/pending", 303)

    async def pending_page(request: Request) -> Response:
        actions = await console.rt.pending()
        runs: list[dict[str, Any]] = []
        for execution_id in dict.fromkeys(a.execution_id for a in actions):
            execution = await console.rt.execution(execution_id)
            if execution is None:
                continue
            mine = [a for a in actions if a.execution_id == execution_id]
            cards = [await console.card(execution, a) for a in mine]
            marked = {n for c in cards for n in c["lines"]}
            runs.append(
                {
                    "execution": execution,
                    "cards": cards,
                    "program": program_view(execution.code, marked),
                    "done": [entry_view(e) for e in execution.log if e.state != "pending"],
                    "approved": [entry_view(e) for e in execution.log if e.state == "pending" and e.decision],
                }
            )
        return await render(request, "pending.html", runs=runs)

    async def runs_page(request: Request) -> Response:
        status = request.query_params.get("status", "")
        connector = request.query_params.get("connector", "")
        meta_text = request.query_params.get("metadata", "").strip()
        metadata: dict[str, str] = {}
        problem = None
        for pair in filter(None, (p.strip() for p in meta_text.split(","))):
            key, sep, value = pair.partition("=")
            if not sep:
                problem = f'Metadata filter "{pair}" is not key=value.'
                break
            metadata[key.strip()] = value.strip()
        found = await console.rt.executions(MAX_RUNS, metadata=metadata or None, status=status or None)
        if connector:
            found = [e for e in found if any(entry.connector == connector for entry in e.log)]
        names = sorted(c.name for c in console.rt.connectors)
        return await render(
            request,
            "runs.html",
            runs=found,
            status=status,
            connector=connector,
            metadata=meta_text,
            connectors=names,
            problem=problem,
            limit=MAX_RUNS,
        )

    async def run_page(request: Request) -> Response:
        execution_id = request.path_params["execution_id"]
        execution = await console.rt.execution(execution_id)
        if execution is None:
            return await render(request, "missing.html", 404, execution_id=execution_id)
        marked = {
            n
            for e in execution.log
            if e.state == "pending" and execution.status == "paused"
            for n in call_lines(execution.code, e.connector, e.method)
        }
        return await render(
            request,
            "run.html",
            execution=execution,
            program=program_view(execution.code, marked),
            entries=[entry_view(e) for e in execution.log],
            result=_json(execution.result) if execution.status == "completed" else None,
            can_roll_back=execution.status in (*TERMINAL_STATUSES, "paused"),
        )

    # -- actions ----------------------------------------------------------

    async def stale_text(execution_id: str, seq: int) -> str:
        execution = await console.rt.execution(execution_id)
        if execution is None:
            return f"Run {execution_id} no longer exists; nothing changed."
        entry = next((e for e in execution.log if e.seq == seq), None)
        d = entry.decision if entry else None
        past = {"approve": "approved", "reject": "rejected", "rollback": "rolled back"}
        who = (
            f"{past[d.kind]} by {d.by or 'user'} at {_when(d.at)}" + (f" ({d.reason})" if d.reason else "")
            if d
            else f"the run is {execution.status}"
        )
        return f"Action {seq} of run {execution_id} was already decided: {who}. Nothing changed."

    async def decide(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        execution_id = request.path_params["execution_id"]
        action = fields.get("action", "")
        by = fields.get("by", "").strip()
        reason = fields.get("reason", "").strip() or None
        try:
            seq = int(fields.get("seq", ""))
        except ValueError:
            return back("/pending", Flash("error", "The form did not carry the action's seq: reload the page."))
        if action not in ("approve", "reject", "reject_resume"):
            return back("/pending", Flash("error", f'Unknown action "{action}".'))
        if not by:
            return back("/pending", Flash("error", "Enter your name (who is deciding) before approving or rejecting."))
        current = {a.seq: a for a in await console.rt.pending(execution_id)}
        if seq not in current:
            return back("/pending", Flash("stale", await stale_text(execution_id, seq)), by)
        pending_action = current[seq]
        label = f"{pending_action.connector}.{pending_action.method} (seq {seq}) of run {execution_id}"
        link = f"/runs/{execution_id}"
        if action == "approve":
            args: dict[str, Any] | None = None
            text = fields.get("args", "").strip()
            if text:
                try:
                    edited = json.loads(text)
                except json.JSONDecodeError as exc:
                    return back(
                        "/pending", Flash("error", f"The arguments are not valid JSON: {exc}. Nothing changed."), by
                    )
                problem = await console.invalid(pending_action.connector, pending_action.method, edited)
                if problem is not None:
                    return back("/pending", Flash("error", f"{problem} Nothing was approved."), by)
                args = edited if edited != pending_action.args else None
            outcome = await console.rt.approve(execution_id, seq, by=by, reason=reason, args=args)
            error = outcome.error or ""
            if outcome.status == "error" and "is not awaiting a decision" in error:
                return back("/pending", Flash("stale", await stale_text(execution_id, seq)), by)
            if outcome.status == "error" and "Nothing was approved" in error:
                return back("/pending", Flash("error", _SEE_DESCRIBE.sub("", error)), by)
            edited_note = " with edited arguments" if args is not None else ""
            after = {"completed": "the run completed", "paused": "the run is paused", "error": "the run ended in error"}
            return back(
                "/pending", Flash("ok", f"Approved {label}{edited_note}; {after[outcome.status]}.", link=link), by
            )
        resume = action == "reject_resume"
        done = await console.rt.reject(execution_id, seq, by=by, reason=reason, resume=resume)
        if not done:
            return back("/pending", Flash("stale", await stale_text(execution_id, seq)), by)
        execution = await console.rt.execution(execution_id)
        status = execution.status if execution else "deleted"
        how = "the program continues" if resume else "the run ended"
        return back("/pending", Flash("ok", f"Rejected {label}; {how} (status: {status}).", link=link), by)

    async def rollback(request: Request) -> Response:
        fields = await form(request)
        if isinstance(fields, Response):
            return fields
        execution_id = request.path_params["execution_id"]
        url = f"/runs/{execution_id}"
        by = fields.get("by", "").strip()
        if not by:
            return back(url, Flash("error", "Enter your name (who is rolling back) first."))
        try:
            report = await console.rt.rollback(execution_id, by=by)
            message = Flash("ok", f"Rolled back run {execution_id}.")
        except RollbackError as exc:
            report = exc.report
            message = Flash("error", str(exc))
        except (LookupError, RuntimeError) as exc:
            return back(url, Flash("error", str(exc)), by)
        message.report = {
            "reverted": report.reverted,
            "irreversible": sorted(report.irreversible),
            "failed": sorted(report.failed.items()),
        }
        return back(url, message, by)

    async def validate(request: Request) -> Response:
        """Check edited arguments against the tool's schema before the form is submitted."""
        if not console.csrf_ok(request, request.headers.get("x-csrf-token")):
            return JSONResponse({"error": "CSRF token missing or wrong: reload the page."}, 403)
        try:
            body = await request.json()
            execution_id, seq, text = body["execution_id"], int(body["seq"]), body["args"]
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "Send execution_id, seq and args."}, 400)
        action = next((a for a in await console.rt.pending(execution_id) if a.seq == seq), None)
        if action is None:
            return JSONResponse({"ok": False, "stale": True, "error": await stale_text(execution_id, seq)})
        try:
            args = json.loads(text)
        except json.JSONDecodeError as exc:
            return JSONResponse({"ok": False, "error": f"Not valid JSON: {exc}."})
        problem = await console.invalid(action.connector, action.method, args)
        return JSONResponse({"ok": problem is None, "error": problem})

    async def events(request: Request) -> Response:
        """Server-sent events: `change` with the new version whenever what the pages show changes."""

        async def stream() -> AsyncIterator[str]:
            yield "retry: 2000\n\n"
            last = ""
            while not await request.is_disconnected():
                version = await console.version()
                if version != last:
                    yield f"event: change\ndata: {json.dumps({'version': version})}\n\n"
                    last = version
                else:
                    yield ": keep-alive\n\n"
                if console.changed is not None:
                    console.changed.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(console.changed.wait(), 15)
                else:
                    await asyncio.sleep(console.poll_interval)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", guarded(home)),
        Route("/pending", guarded(pending_page)),
        Route("/runs", guarded(runs_page)),
        Route("/runs/{execution_id}", guarded(run_page)),
        Route("/runs/{execution_id}/decide", guarded(decide), methods=["POST"]),
        Route("/runs/{execution_id}/rollback", guarded(rollback), methods=["POST"]),
        Route("/api/validate", guarded(validate), methods=["POST"]),
        Route("/events", guarded(events)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=console.lifespan)
    app.state.console = console
    return app


def serve(
    load: Callable[[], Awaitable[Runtime]],
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    token: str | None = None,
    open_browser: bool = False,
    poll_interval: float = 1.0,
) -> None:
    """Run the console until interrupted; prints the URL with the access token (port 0: a free port)."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(
            f"Cannot listen on {host}:{port} ({exc.strerror}): pass another --port, or 0 for any."
        ) from exc
    sock.listen(128)
    actual = sock.getsockname()[1]
    token = token or secrets.token_urlsafe(24)

    async def main() -> None:
        runtime = await load()  # a bad --app fails here, before anything is served
        app = create_app(runtime, token=token, cookie=f"codemode_console_{actual}", poll_interval=poll_interval)
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        url = f"http://{shown}:{actual}/?token={token}"
        print("codemode console is running. Open this URL (it carries the access token for this start):", flush=True)
        print(f"    {url}", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            print(f"warning: listening on {host}: anyone who reaches it with the token can approve.", file=sys.stderr)
        print("Press Ctrl+C to stop.", flush=True)
        if open_browser:
            import webbrowser

            webbrowser.open(url)
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1, lifespan="on")
        await uvicorn.Server(config).serve(sockets=[sock])

    try:
        asyncio.run(main())
    finally:
        sock.close()
