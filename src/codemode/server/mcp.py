"""codemode as an MCP server: `search`, `describe`, `execute` and `result`, over stdio or streamable HTTP.

Any MCP client (Claude Desktop, an IDE, an agent framework) gets the runtime's one `codemode` tool as
`execute(code)`, plus host-side discovery. Programs run in the runtime's sandbox with its durable log,
so a gated call pauses the run. What happens then depends on the client:

- a client that supports elicitation is asked, once per pending action, to show the human the call
  (`connector.method` and its arguments): accept approves that action by its seq, decline rejects it,
  cancel leaves the run paused. The run goes on until it ends or a decision is left open, and the tool
  returns the final outcome. Handshake-era clients (protocol 2025-11-25 and older) are asked mid-call;
  2026-07-28 clients get the questions in an `InputRequiredResult` and answer in a retry of the same
  call, which continues the same run (its id rides the SDK's sealed `requestState`).
- any other client gets the `paused` outcome, with the approval console's URL when one is known, and
  the model is told to call `result(execution_id)` once a human has decided in the console or the CLI.

The model is never offered a tool that approves or rejects: `result` only reports. Each `execute`
starts one run; JSON-RPC request ids restart with every session, so they are no replay key.

Run it with `python -m codemode.server.mcp --app module:attribute [--http PORT] [--console-url URL]`
(or `codemode mcp ...`). `--app` names a `Runtime` or a zero-argument factory (sync or async).
Requires the `mcp` SDK 2.x (the `mcp-server` extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Annotated, Any

from pydantic import Field

try:
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.request_state import RequestStateSecurity
    from mcp.types import (
        CallToolResult,
        ElicitRequest,
        ElicitRequestFormParams,
        ElicitResult,
        InputRequiredResult,
        TextContent,
        ToolAnnotations,
    )
    from mcp_types.version import is_version_at_least
except ImportError as exc:  # no SDK, or a 1.x one
    raise ImportError(
        f"codemode's MCP server needs the mcp SDK 2.x: pip install 'codemode[mcp-server]' (import failed: {exc})"
    ) from exc

from codemode.cli.loading import AppLoadError, load_runtime
from codemode.records import DEFAULT_PAUSED_TTL, Outcome, PendingAction
from codemode.runtime.runtime import Runtime
from codemode.truncate import truncate_response, truncate_result

__all__ = ["MAX_RESULT_CHARS", "build_server", "main", "serve"]

logger = logging.getLogger("codemode.server.mcp")

MAX_RESULT_CHARS = 24_000  # a tool result's text, as Cloudflare's code mode bounds it (6,000 tokens)
MAX_ARGS_CHARS = 4_000  # the arguments shown for one pending action, in the result and in a question
MAX_ERROR_CHARS = 8_000
MODERN = "2026-07-28"  # from this protocol on, questions ride an InputRequiredResult, not a server request
DEFAULT_BY = "mcp-user"
READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# What the elicitation form asks besides accept/decline: a note kept as the decision's reason.
APPROVAL_FORM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "note": {
            "type": "string",
            "title": "Note (optional)",
            "description": "Recorded with your decision in the run's audit trail.",
        }
    },
}


def _dumps(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


class _CodemodeTools:
    """The four tools, bound to one runtime."""

    def __init__(self, runtime: Runtime, console_url: str | None) -> None:
        self.runtime = runtime
        self.console_url = console_url

    # -- discovery ----------------------------------------------------------

    async def search(
        self, query: Annotated[str, Field(description="A short phrase for what you want to do.")]
    ) -> CallToolResult:
        """Rank the connector methods and saved snippets the sandbox offers for a query."""
        try:
            found = (await self.runtime.search(query)).to_dict()
        except Exception as exc:  # a connector whose service is down: tell the model, keep serving
            return _error(f"search failed: {exc}")
        return _structured(found)

    async def describe(
        self,
        target: Annotated[
            str, Field(description='A connector ("items"), a method ("items.create_item") or a snippet name.')
        ],
    ) -> CallToolResult:
        """Declarations (signatures, types, docs) of a connector, one method, a type it uses, or a snippet."""
        try:
            described = (await self.runtime.describe(target)).to_dict()
        except Exception as exc:
            return _error(f"describe failed: {exc}")
        head = f"{described['path']}" + (" (requires approval)" if described.get("requires_approval") else "")
        text = "\n\n".join(part for part in (head, described.get("description") or "", described["types"]) if part)
        return _structured(described, text)

    # -- running ------------------------------------------------------------

    async def execute(
        self, code: Annotated[str, Field(description="The program to run in the sandbox.")], ctx: Context
    ) -> CallToolResult | InputRequiredResult:
        state = _read_state(ctx.request_state)
        left_open = False
        if state is not None:  # a 2026-07-28 retry carrying the answers to our questions: same run
            outcome, left_open = await self._apply_answers(state, ctx)
        else:
            outcome = await self.runtime.execute(code, metadata={"via": "mcp", "client": _client_name(ctx)})
        if outcome.status != "paused" or not _can_elicit(ctx) or left_open:
            return self._shaped(outcome)
        if _is_modern(ctx):
            return _questions(outcome)
        return self._shaped(await self._ask_mid_call(outcome, ctx))

    async def result(
        self, execution_id: Annotated[str, Field(description="The execution_id that execute returned.")]
    ) -> CallToolResult:
        """Report where a run stands now (paused, completed, error); never decides anything."""
        execution = await self.runtime.execution(execution_id)
        if execution is None:
            return _error(
                f'No run with execution_id "{execution_id}" (it may have been pruned). Use the execution_id '
                "that execute returned."
            )
        if execution.status in ("running", "rolling_back"):
            return _structured(
                {
                    "status": "running",
                    "execution_id": execution_id,
                    "message": "The run is still in progress; call result again in a moment.",
                }
            )
        outcome = await _current(self.runtime, execution_id)
        shaped = self._shaped(outcome)
        if execution.status in ("rejected", "rolled_back") and shaped.structured_content is not None:
            shaped.structured_content["run_status"] = execution.status
            shaped.content = [TextContent(type="text", text=_text(shaped.structured_content))]
        return shaped

    # -- approval by elicitation ----------------------------------------------

    async def _ask_mid_call(self, outcome: Outcome, ctx: Context) -> Outcome:
        """Handshake-era clients: ask per pending action over the back-channel until nothing is open."""
        by = _client_name(ctx)
        while outcome.status == "paused" and outcome.pending:
            action = outcome.pending[0]
            try:
                answer = await ctx.session.elicit_form(
                    _question(action), APPROVAL_FORM, related_request_id=ctx.request_context.request_id
                )
            except Exception as exc:  # no back-channel (stateless HTTP) or the client failed: leave it paused
                logger.info("elicitation unavailable, leaving run %s paused: %r", outcome.execution_id, exc)
                return outcome
            if answer.action == "cancel":
                return outcome
            outcome = await self._decide(action, answer, by)
        return outcome

    async def _apply_answers(self, state: dict[str, Any], ctx: Context) -> tuple[Outcome, bool]:
        """2026-07-28 clients: apply the answers in the retry, in seq order. Returns the outcome and
        whether a question asked was left open (cancelled or unanswered); actions pending now that
        were not asked (a pause reached after a decision elsewhere) are asked next."""
        eid = str(state["execution_id"])
        asked = set(state["asked"])
        responses = ctx.input_responses or {}
        by = _client_name(ctx)
        left_open = False
        outcome = await _current(self.runtime, eid)
        for action in outcome.pending:
            if action.seq not in asked:
                continue
            answer = responses.get(_key(action.seq))
            if not isinstance(answer, ElicitResult) or answer.action == "cancel":
                left_open = True
                continue
            outcome = await self._decide(action, answer, by)
            if outcome.status != "paused":
                break
        return (outcome if outcome.status != "paused" else await _current(self.runtime, eid)), left_open

    async def _decide(self, action: PendingAction, answer: ElicitResult, by: str) -> Outcome:
        """Approve or reject exactly the action the human was shown, by its seq."""
        note = (answer.content or {}).get("note") if answer.content else None
        reason = str(note).strip() or None if note is not None else None
        eid = action.execution_id
        if answer.action == "accept":
            outcome = await self.runtime.approve(eid, action.seq, by=by, reason=reason)
            if outcome.status != "error":
                return outcome
            # A stale seq (decided elsewhere meanwhile): report where the run is now. Still pending (a
            # connector unavailable, say): the approval's error, so nobody is asked the same again.
            now = await _current(self.runtime, eid)
            return outcome if any(p.seq == action.seq for p in now.pending) else now
        await self.runtime.reject(eid, action.seq, by=by, reason=reason or "declined in the MCP client")
        return await _current(self.runtime, eid)

    # -- shaping ------------------------------------------------------------

    def _shaped(self, outcome: Outcome) -> CallToolResult:
        """`outcome.to_model_output()`, bounded, as structured content plus the same as text."""
        out = outcome.to_model_output()
        if "result" in out:
            out["result"] = truncate_result(out["result"], max_chars=MAX_RESULT_CHARS)
        if isinstance(out.get("error"), str):
            out["error"] = truncate_response(out["error"], max_chars=MAX_ERROR_CHARS)
        for action in out.get("pending", []):
            action["args"] = truncate_result(action["args"], max_chars=MAX_ARGS_CHARS)
        if outcome.status == "paused":
            where = f"in the approval console at {self.console_url}" if self.console_url else "in the approval console"
            out["message"] = (
                f"The run is paused: a human must approve or reject the pending action(s) {where} or with the "
                f"codemode CLI (`codemode approve {outcome.execution_id} SEQ`). You cannot decide them yourself. "
                "Tell the user what is pending, then call result(execution_id) once they have decided; do not "
                "run the code again."
            )
            if self.console_url:
                out["console_url"] = self.console_url
        return CallToolResult(
            content=[TextContent(type="text", text=_text(out))],
            structured_content=out,
            is_error=outcome.status == "error",
        )


# -- helpers ------------------------------------------------------------------


def _text(value: dict[str, Any]) -> str:
    return truncate_response(_dumps(value), max_chars=MAX_RESULT_CHARS + 2 * MAX_ARGS_CHARS)


def _structured(value: dict[str, Any], text: str | None = None) -> CallToolResult:
    bounded = truncate_result(value, max_chars=MAX_RESULT_CHARS)
    body = truncate_response(text, max_chars=MAX_RESULT_CHARS) if text is not None else _text(bounded)
    return CallToolResult(content=[TextContent(type="text", text=body)], structured_content=bounded)


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


async def _current(runtime: Runtime, execution_id: str) -> Outcome:
    """Where a run stands now, as an outcome, without running or deciding anything."""
    execution = await runtime.execution(execution_id)
    if execution is None:
        return Outcome(status="error", execution_id=execution_id, error=f'No run "{execution_id}".')
    common: dict[str, Any] = {"execution_id": execution_id, "logs": execution.logs, "calls": execution.log}
    if execution.status == "paused":
        return Outcome(status="paused", pending=await runtime.pending(execution_id), **common)
    if execution.status == "completed":
        return Outcome(status="completed", result=await runtime.transform(execution.result), **common)
    if execution.status in ("running", "rolling_back"):
        error = f'Execution "{execution_id}" is still {execution.status}; call result again in a moment.'
    else:
        error = execution.error or f"Execution ended with status {execution.status}."
    return Outcome(status="error", error=error, **common)


def _client_name(ctx: Context) -> str:
    params = ctx.session.client_params
    name = params.client_info.name if params is not None and params.client_info is not None else None
    return name or DEFAULT_BY


def _can_elicit(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    # An empty elicitation capability means form mode (MCP's default before modes existed).
    return elicitation is not None and (elicitation.form is not None or elicitation.url is None)


def _is_modern(ctx: Context) -> bool:
    version = ctx.protocol_version
    return version is not None and is_version_at_least(version, MODERN)


def _key(seq: int) -> str:
    return f"approve-seq-{seq}"


def _question(action: PendingAction) -> str:
    args = truncate_response(_dumps(action.args), max_chars=MAX_ARGS_CHARS)
    return (
        f"Approve {action.connector}.{action.method}?\n\nArguments:\n{args}\n\n"
        f"(run {action.execution_id}, action seq {action.seq}). Accept runs it once; decline rejects it and "
        "ends the run; cancel leaves it paused for the approval console."
    )


def _questions(outcome: Outcome) -> InputRequiredResult:
    requests: dict[str, Any] = {
        _key(action.seq): ElicitRequest(
            params=ElicitRequestFormParams(message=_question(action), requested_schema=APPROVAL_FORM)
        )
        for action in outcome.pending
    }
    # The SDK seals requestState (AES-GCM, bound to this request), so the client cannot point it elsewhere.
    state = {"execution_id": outcome.execution_id, "asked": [action.seq for action in outcome.pending]}
    return InputRequiredResult(input_requests=requests, request_state=_dumps(state, indent=None))


def _read_state(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        state = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(state, dict) or not isinstance(state.get("execution_id"), str):
        return None
    asked = state.get("asked")
    return state if isinstance(asked, list) and all(isinstance(seq, int) for seq in asked) else None


# -- the server -----------------------------------------------------------------


def build_server(runtime: Runtime, *, console_url: str | None = None, name: str = "codemode") -> MCPServer[Any]:
    """An `MCPServer` with exactly the four codemode tools; mount or run it as any MCPServer."""
    tools = _CodemodeTools(runtime, console_url)
    server: MCPServer[Any] = MCPServer(
        name,
        instructions=(
            "Run programs against this application's connectors with `execute`. Discover methods first with "
            "`search` and `describe`. Actions that need approval are decided by a human, never by you."
        ),
        # A human may take a while to answer: the sealed round state lives as long as a paused run.
        request_state_security=RequestStateSecurity.ephemeral(ttl=DEFAULT_PAUSED_TTL.total_seconds()),
        log_level="WARNING",
    )
    server.add_tool(tools.search, name="search", annotations=READ_ONLY, structured_output=False)
    server.add_tool(tools.describe, name="describe", annotations=READ_ONLY, structured_output=False)
    server.add_tool(
        tools.execute,
        name="execute",
        description=runtime.tool().description,
        annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True),
        structured_output=False,
    )
    server.add_tool(tools.result, name="result", annotations=READ_ONLY, structured_output=False)
    return server


async def serve(runtime: Runtime, *, http_port: int | None = None, console_url: str | None = None) -> None:
    """Serve until the client hangs up (stdio) or the task is cancelled (HTTP). The caller owns the
    runtime (`async with runtime: await serve(runtime)`), as `main` and `codemode mcp` do.

    HTTP binds 127.0.0.1 only, where the SDK also refuses requests whose Host or Origin is not local
    (DNS rebinding); the endpoint has no authentication of its own, so it is not for other machines."""
    server = build_server(runtime, console_url=console_url)
    if http_port is None:
        await server.run_stdio_async()
        return
    import uvicorn

    host = "127.0.0.1"
    # Bind and listen first, so port 0 works, the printed URL is the real one, and a client that
    # connects at once waits in the backlog until uvicorn has started instead of being refused.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, http_port))
    sock.listen(128)
    port = sock.getsockname()[1]
    config = uvicorn.Config(server.streamable_http_app(host=host), log_level="warning")
    print(f"codemode MCP server on http://{host}:{port}/mcp", file=sys.stderr, flush=True)
    await uvicorn.Server(config).serve(sockets=[sock])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codemode.server.mcp", description=__doc__.splitlines()[0])
    parser.add_argument("--app", required=True, help="module:attribute naming a Runtime or a factory for one")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT")
    parser.add_argument("--console-url", metavar="URL", help="the approval console, shown when a run pauses")
    options = parser.parse_args(argv)

    async def run() -> None:
        runtime = await load_runtime(options.app)
        async with runtime:
            await serve(runtime, http_port=options.http, console_url=options.console_url)

    try:
        asyncio.run(run())
    except AppLoadError as exc:
        print(f"codemode mcp: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
