"""The `codemode` command: read the audit trail, decide pending actions, roll back, serve the console.

Built on click: one small, mature dependency (typer would add itself, rich and shellingham for the
same commands), with the option, environment-variable and testing support this CLI needs.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource

from codemode.cli import output
from codemode.cli.loading import AppLoadError, Target, load_runtime, open_target
from codemode.errors import RollbackError
from codemode.records import Outcome

__all__ = ["EXIT", "CliError", "cli", "main"]

# Exit codes (docs/cli.md lists them for scripts).
EXIT = {
    "ok": 0,  # done; for approve/reject: the decision was recorded (the run's new status is in the output)
    "failed": 1,  # an unexpected error (its message is printed)
    "usage": 2,  # bad options or arguments: unparseable or schema-invalid --args, a bad duration, ...
    "not_found": 3,  # no execution with that id
    "stale": 4,  # the seq is not an undecided pending action (decided already, or the run moved on)
    "rollback_incomplete": 5,  # a rollback ran but some reverts failed (rolling back again retries them)
    "unavailable": 6,  # --app, --db or --dsn did not lead to a runtime or store; nothing was done
}

PAST = {"approve": "approved", "reject": "rejected", "rollback": "rolled back"}

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class CliError(Exception):
    """A refusal with a message that says what to do, and the exit code that classifies it."""

    def __init__(self, message: str, code: str = "failed") -> None:
        super().__init__(message)
        self.code = EXIT[code]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def store_options(fn: F) -> F:
    """--db/--dsn/--name/--app, each also read from a CODEMODE_* environment variable."""
    options = [
        click.option(
            "--app",
            envvar="CODEMODE_APP",
            metavar="MODULE:ATTR",
            help="Your application's codemode.Runtime, or a zero-argument factory returning one (sync or async), "
            "imported with the current directory on sys.path. [env CODEMODE_APP]",
        ),
        click.option(
            "--db",
            envvar="CODEMODE_DB",
            metavar="PATH",
            help="The SQLite store file (default ./codemode.db). [env CODEMODE_DB]",
        ),
        click.option(
            "--dsn", envvar="CODEMODE_DSN", metavar="DSN", help="A PostgreSQL store's DSN. [env CODEMODE_DSN]"
        ),
        click.option(
            "--name",
            envvar="CODEMODE_NAME",
            metavar="NAME",
            help='The runtime name within the store (default "default"). [env CODEMODE_NAME]',
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of text.")(fn)


def target(kwargs: dict[str, Any], *, need_runtime: bool = False) -> Any:
    """Read-only commands prefer the store (--db/--dsn) to importing the application; the others need
    --app, whose runtime brings its own store: a --db or --dsn typed beside it is refused, one from the
    environment is ignored (so CODEMODE_DB and CODEMODE_APP can both be set)."""
    app, db, dsn = kwargs["app"], kwargs["db"], kwargs["dsn"]
    if need_runtime and app is not None:
        ctx = click.get_current_context()
        typed = [f"--{n}" for n in ("db", "dsn") if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if typed:
            raise CliError(f"--app brings its own store: leave out {' and '.join(typed)}.", "usage")
        db = dsn = None
    elif not need_runtime and (db is not None or dsn is not None):
        app = None
    return open_target(app, db, dsn, kwargs["name"], need_runtime=need_runtime)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="codemode", prog_name="codemode")
def cli() -> None:
    """Operate codemode runs: the audit trail, pending approvals, rollbacks and the approval console.

    Read-only commands (runs, show, pending) need only the store: --db PATH or --dsn DSN. Commands
    that run connectors (approve, reject, rollback, expire, console, mcp) load your application's
    runtime with --app module:attribute.
    """


# -- reading ---------------------------------------------------------------


@cli.command()
@store_options
@click.option("--status", "statuses", multiple=True, help="Only runs with this status (repeatable).")
@click.option("--metadata", "pairs", multiple=True, metavar="KEY=VALUE", help="Only runs carrying it (repeatable).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many runs.")
@json_option
def runs(statuses: tuple[str, ...], pairs: tuple[str, ...], limit: int, as_json: bool, **kwargs: Any) -> None:
    """List runs, newest first."""
    metadata = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CliError(f'--metadata "{pair}" is not KEY=VALUE.', "usage")
        metadata[key] = value

    async def body() -> None:
        async with target(kwargs) as t:
            found = await t.store.list_executions(
                t.name, limit, metadata=metadata or None, status=list(statuses) or None
            )
        if as_json:
            output.echo(output.dumps([_summary(e) for e in found]))
        elif found:
            output.echo(output.runs_table(found))
        else:
            output.echo("No runs" + (" match" if statuses or metadata else " yet") + ".")

    run(body())


def _summary(e: Any) -> dict[str, Any]:
    return {
        "id": e.id,
        "status": e.status,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "key": e.key,
        "metadata": e.metadata,
        "calls": len(e.log),
        "pending": [entry.seq for entry in e.log if entry.state == "pending" and entry.decision is None],
        "error": e.error,
    }


@cli.command()
@click.argument("execution_id")
@store_options
@json_option
def show(execution_id: str, as_json: bool, **kwargs: Any) -> None:
    """Show one run: program, status, every call with its state and decision, console output, result or error."""

    async def body() -> None:
        async with target(kwargs) as t:
            execution = await _get(t, execution_id)
        output.echo(output.dumps(execution) if as_json else output.show_text(execution))

    run(body())


async def _get(t: Target, execution_id: str) -> Any:
    execution = await t.store.get_execution(t.name, execution_id)
    if execution is None:
        raise CliError(
            f'No execution "{execution_id}" in runtime "{t.name}": `codemode runs` lists the ids.', "not_found"
        )
    return execution


@cli.command()
@click.argument("execution_id", required=False)
@store_options
@json_option
def pending(execution_id: str | None, as_json: bool, **kwargs: Any) -> None:
    """List the actions waiting for a decision (of every paused run, or of one)."""

    async def body() -> None:
        async with target(kwargs) as t:
            actions = await t.store.list_pending(t.name, execution_id)
        if as_json:
            output.echo(output.dumps(actions))
        elif actions:
            output.echo(output.pending_table(actions))
            output.echo("\nDecide one with: codemode approve EXECUTION SEQ --by NAME --app MODULE:ATTR")
        else:
            output.echo("Nothing is waiting for a decision.")

    run(body())


# -- deciding --------------------------------------------------------------


def _outcome_text(outcome: Outcome) -> str:
    lines = [f"{outcome.execution_id}: {output.status(outcome.status)}"]
    if outcome.status == "completed":
        lines.append(f"result: {output.short_json(outcome.result, 500)}")
    elif outcome.status == "error" and outcome.error:
        lines.append(click.style(outcome.error, fg="red"))
    for action in outcome.pending:
        lines.append(
            f"pending: seq {action.seq}: {action.connector}.{action.method}({output.short_json(action.args, 200)})"
        )
    return "\n".join(lines)


async def _check_pending(t: Target, execution_id: str, seq: int) -> None:
    """Refuse early, with what is pending now, when `seq` is not an undecided action of a paused run."""
    execution = await _get(t, execution_id)
    now = await t.store.list_pending(t.name, execution_id)
    if any(a.seq == seq for a in now):
        return
    entry = next((e for e in execution.log if e.seq == seq), None)
    why = f"run status: {execution.status}"
    if entry is not None and entry.decision is not None:
        d = entry.decision
        why = f"already {PAST[d.kind]} by {d.by or 'user'} at {output.when(d.at)}" + (
            f": {d.reason}" if d.reason else ""
        )
    listed = ", ".join(f"seq {a.seq} ({a.connector}.{a.method})" for a in now) or "nothing"
    raise CliError(
        f'Action {seq} of execution "{execution_id}" is not awaiting a decision ({why}); nothing changed. '
        f"Pending now: {listed}.",
        "stale",
    )


@cli.command()
@click.argument("execution_id")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--by", required=True, help="Who approves (recorded in the audit trail).")
@click.option("--reason", help="Why (recorded in the audit trail).")
@click.option("--args", "args_json", metavar="JSON", help="Run the action with these edited arguments (a JSON object).")
@store_options
@json_option
def approve(
    execution_id: str, seq: int, by: str, reason: str | None, args_json: str | None, as_json: bool, **kwargs: Any
) -> None:
    """Approve pending action SEQ of a run; the run resumes when nothing else is pending."""
    args: dict[str, Any] | None = None
    if args_json is not None:
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise CliError(
                f"--args is not valid JSON ({exc}); pass an object, e.g. '{{\"amount\": 30}}'.", "usage"
            ) from None
        if not isinstance(args, dict):
            raise CliError("--args must be a JSON object of the tool's arguments.", "usage")

    async def body() -> None:
        async with target(kwargs, need_runtime=True) as t:
            await _check_pending(t, execution_id, seq)
            assert t.runtime is not None
            outcome = await t.runtime.approve(execution_id, seq, by=by, reason=reason, args=args)
        _decided(outcome, as_json)

    run(body())


def _decided(outcome: Outcome, as_json: bool) -> None:
    error = outcome.error or ""
    if outcome.status == "error" and "is not awaiting a decision" in error:
        raise CliError(error, "stale")
    if outcome.status == "error" and "Nothing was approved" in error:
        raise CliError(error, "usage")
    output.echo(output.dumps(outcome) if as_json else _outcome_text(outcome))


@cli.command()
@click.argument("execution_id")
@click.argument("seq", type=click.IntRange(min=0))
@click.option("--by", help='Who rejects (recorded; "user" when left out).')
@click.option("--reason", help="Why (recorded, and part of the error the run ends with or the program sees).")
@click.option(
    "--resume", is_flag=True, help="Let the program go on: the call raises PermissionError in it, which it may catch."
)
@store_options
@json_option
def reject(
    execution_id: str, seq: int, by: str | None, reason: str | None, resume: bool, as_json: bool, **kwargs: Any
) -> None:
    """Reject pending action SEQ: end the run (default), or with --resume let the program continue."""

    async def body() -> None:
        async with target(kwargs, need_runtime=True) as t:
            await _check_pending(t, execution_id, seq)
            assert t.runtime is not None
            done = await t.runtime.reject(execution_id, seq, by=by, reason=reason, resume=resume)
            if not done:
                await _check_pending(t, execution_id, seq)  # raced: say who decided it
                raise CliError(f"Action {seq} of {execution_id} was not pending; nothing changed.", "stale")
            execution = await _get(t, execution_id)
        if as_json:
            output.echo(output.dumps({"rejected": True, "execution_id": execution_id, "status": execution.status}))
        else:
            output.echo(f"{execution_id}: rejected seq {seq}; run is now {output.status(execution.status)}")
            if execution.error:
                output.echo(execution.error)

    run(body())


@cli.command()
@click.argument("execution_id")
@click.option("--by", help="Who rolls back (recorded on every reverted entry).")
@click.option(
    "--retry-interrupted",
    is_flag=True,
    help="Also re-run reverts a crash interrupted (check first that their effect is not already undone).",
)
@store_options
@json_option
def rollback(execution_id: str, by: str | None, retry_interrupted: bool, as_json: bool, **kwargs: Any) -> None:
    """Revert every applied action of a run that has a revert, newest first; print what was and was not undone."""

    async def body() -> None:
        async with target(kwargs, need_runtime=True) as t:
            await _get(t, execution_id)
            assert t.runtime is not None
            failed: str | None = None
            try:
                report = await t.runtime.rollback(execution_id, by=by, retry_interrupted=retry_interrupted)
            except RollbackError as exc:
                report, failed = exc.report, str(exc)
            except RuntimeError as exc:
                raise CliError(str(exc)) from exc
        if as_json:
            output.echo(
                output.dumps({"execution_id": execution_id, "complete": failed is None, **output.jsonable(report)})
            )
        else:
            output.echo(f"{execution_id}: " + ("rolled back" if failed is None else "rolled back with failures"))
            output.echo(f"  reverted:     {', '.join(map(str, report.reverted)) or '-'}")
            output.echo(f"  irreversible: {', '.join(map(str, sorted(report.irreversible))) or '-'}")
            for seq, why in sorted(report.failed.items()):
                output.echo(click.style(f"  failed: seq {seq}: {why}", fg="red"))
        if failed is not None:
            raise CliError(
                failed + " Run `codemode rollback` again to retry the failed reverts.", "rollback_incomplete"
            )

    run(body())


# -- retention -------------------------------------------------------------


@cli.command()
@click.option("--keep", type=click.IntRange(min=0), default=50, show_default=True, help="Ended runs to keep.")
@store_options
@json_option
def prune(keep: int, as_json: bool, **kwargs: Any) -> None:
    """Delete the oldest ended runs beyond --keep (paused and running runs are always kept)."""

    async def body() -> None:
        async with target(kwargs) as t:
            deleted = await t.store.prune_executions(t.name, keep)
        output.echo(json.dumps({"deleted": deleted}) if as_json else f"Deleted {deleted} ended run(s).")

    run(body())


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> timedelta:
    match = _DURATION.match(text)
    if match is None:
        raise CliError(f'"{text}" is not a duration: use e.g. 90s, 30m, 24h or 7d.', "usage")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=float(match.group(1)) * unit)


@cli.command()
@click.option(
    "--max-age", default="24h", show_default=True, help="Expire runs paused longer than this (90s, 30m, 24h, 7d)."
)
@store_options
@json_option
def expire(max_age: str, as_json: bool, **kwargs: Any) -> None:
    """End runs left paused (or stuck running) longer than --max-age: paused ones end rejected."""
    age = parse_duration(max_age)

    async def body() -> None:
        async with target(kwargs, need_runtime=True) as t:
            assert t.runtime is not None
            expired = await t.runtime.expire_paused(age)
        if as_json:
            output.echo(json.dumps({"expired": expired}))
        else:
            output.echo(f"Expired {len(expired)} run(s)" + (": " + ", ".join(expired) if expired else "."))

    run(body())


# -- servers ---------------------------------------------------------------


@cli.command()
@click.option("--app", envvar="CODEMODE_APP", required=True, metavar="MODULE:ATTR", help="Your application's runtime.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind (keep it local).")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="0 picks a free port.")
@click.option("--token", envvar="CODEMODE_CONSOLE_TOKEN", help="Access token (default: a new random one per start).")
@click.option("--open/--no-open", "open_browser", default=False, help="Open the console in a web browser.")
def console(app: str, host: str, port: int, token: str | None, open_browser: bool) -> None:
    """Serve the approval console: pending actions, the audit trail, rollback; live updates."""
    try:
        from codemode.server.console import serve
    except ImportError as exc:
        raise CliError(f"The console needs its extra: pip install 'codemode[console]' ({exc}).", "unavailable") from exc
    serve(functools.partial(load_runtime, app), host=host, port=port, token=token, open_browser=open_browser)


@cli.command()
@click.option("--app", envvar="CODEMODE_APP", required=True, metavar="MODULE:ATTR", help="Your application's runtime.")
@click.option(
    "--http", "http_port", type=click.IntRange(0, 65535), help="Serve streamable HTTP on this port (default: stdio)."
)
@click.option(
    "--console-url", envvar="CODEMODE_CONSOLE_URL", help="Where approvers decide paused runs (given to clients)."
)
def mcp(app: str, http_port: int | None, console_url: str | None) -> None:
    """Serve the runtime as an MCP server (tools search, describe, execute, result), over stdio or HTTP."""
    try:
        from codemode.server.mcp import serve
    except ImportError as exc:
        raise CliError(
            f"codemode's MCP server needs the MCP SDK 2.x ({exc}): pip install 'codemode[mcp-server]'",
            "unavailable",
        ) from exc

    async def body() -> None:
        runtime = await load_runtime(app)
        async with runtime:
            await serve(runtime, http_port=http_port, console_url=console_url)

    run(body())


# -- entry point -----------------------------------------------------------


def _exit(code: int) -> NoReturn:
    """Flush, then leave without interpreter finalization: a process that ran Monty passes can abort
    while finalizing (a pool thread calling back into Python), which must not change the exit code."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script."""
    code = EXIT["ok"]
    try:
        cli.main(args=argv, prog_name="codemode", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Abort:
        output.echo("Aborted.", err=True)
        code = EXIT["failed"]
    except CliError as exc:
        output.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)
        code = exc.code
    except AppLoadError as exc:
        output.echo(click.style("error: ", fg="red", bold=True) + str(exc), err=True)
        code = EXIT["unavailable"]
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # the message, not a traceback: the user needs what went wrong
        output.echo(click.style("error: ", fg="red", bold=True) + f"{type(exc).__name__}: {exc}", err=True)
        code = EXIT["failed"]
    _exit(code)
