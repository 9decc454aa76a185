"""`Runtime`: connectors + a sandbox + a durable store, and everything you do with runs.

Every method is async; `runtime.sync` is the blocking twin for scripts.
Errors meant for the model come back as `Outcome`s; only misuse by the host
application raises.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import TYPE_CHECKING, Any

import jsonschema

from codemode.connectors.base import Connector, ConnectorDescription, ToolContext, validate_namespace_name
from codemode.discovery import Description, SearchOutput
from codemode.discovery import describe as describe_target
from codemode.discovery import search as search_catalog
from codemode.errors import ConnectorUnavailableError, RollbackError
from codemode.runtime import codec
from codemode.runtime.codec import DurableValueError
from codemode.runtime.outcome import (
    DEFAULT_MAX_EXECUTIONS,
    DEFAULT_PAUSED_TTL,
    MAX_DURABLE_VALUE_BYTES,
    Execution,
    LogEntry,
    Outcome,
    PendingAction,
    Snippet,
)
from codemode.runtime.passes import Pass, Setup
from codemode.sandbox.base import Executor, Namespace
from codemode.schema.base import DeclarationRenderer
from codemode.store.base import Store

if TYPE_CHECKING:
    from codemode.runtime.sync import SyncRuntime
    from codemode.runtime.tool import CodeTool

__all__ = ["Runtime"]

log = logging.getLogger("codemode")
_RUNTIME_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
MAX_STORED_LOG_CHARS = 1_000_000
LOGS_DROPPED = "[codemode: earlier console output dropped: too large to record]"

TransformResult = Callable[[Any], Any]


class Runtime:
    """A durable code-mode runtime. Construct once; use from many tasks (and processes sharing the store)."""

    def __init__(
        self,
        connectors: Sequence[Connector],
        executor: Executor | None = None,
        store: Store | None = None,
        *,
        name: str = "default",
        max_executions: int = DEFAULT_MAX_EXECUTIONS,
        transform_result: TransformResult | None = None,
        heartbeat_interval: float = 10.0,
    ) -> None:
        seen: set[str] = set()
        for connector in connectors:
            cname = validate_namespace_name(getattr(connector, "name", None))
            if cname in seen:
                raise ValueError(
                    f'Duplicate connector name "{cname}": each connector needs a unique namespace in the sandbox.'
                )
            seen.add(cname)
        if not _RUNTIME_NAME.match(name):
            raise ValueError(f'Invalid codemode runtime name "{name}": use letters, digits, "_", "." or "-".')
        if executor is None:
            from codemode.sandbox.monty import MontyExecutor

            executor = MontyExecutor()
        if store is None:
            from codemode.store.sqlite import SqliteStore

            store = SqliteStore("codemode.db")
        self.connectors = list(connectors)
        self.executor = executor
        self.store = store
        self.name = name
        self.max_executions = max_executions
        self.transform_result = transform_result
        self.heartbeat_interval = heartbeat_interval
        self._setup: Setup | None = None
        self._setup_lock = asyncio.Lock()
        self._sync: SyncRuntime | None = None

    # -- lifecycle ----------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        await self.store.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release sandboxes, connector connections and the store's connections."""
        await self.executor.aclose()
        results = await asyncio.gather(*(c.aclose() for c in self.connectors), return_exceptions=True)
        for connector, result in zip(self.connectors, results, strict=True):
            if isinstance(result, BaseException):
                log.warning("codemode: closing connector %r failed: %s", connector.name, result)
        await self.store.close()

    @property
    def sync(self) -> SyncRuntime:
        """The blocking twin of every method, for scripts and CLIs."""
        if self._sync is None:
            from codemode.runtime.sync import SyncRuntime

            self._sync = SyncRuntime(self)
        return self._sync

    def tool(self, description: str | None = None, connector_hints: dict[str, str] | None = None) -> CodeTool:
        """The one model-facing tool, `codemode(code)`."""
        from codemode.runtime.tool import CodeTool

        return CodeTool(self, description=description, connector_hints=connector_hints)

    @property
    def renderer(self) -> DeclarationRenderer:
        """Declarations in the language of this runtime's sandbox."""
        if self.executor.language == "javascript":
            from codemode.schema.typescript import TypeScriptDeclarations

            return TypeScriptDeclarations()
        from codemode.schema.python import PythonDeclarations

        return PythonDeclarations()

    async def setup(self) -> Setup:
        """Describe every connector once (memoized)."""
        if self._setup is None:
            async with self._setup_lock:
                if self._setup is None:
                    descriptions = await asyncio.gather(*(_describe(c) for c in self.connectors))
                    self._setup = Setup(
                        connectors={d.name: c for d, c in zip(descriptions, self.connectors, strict=True)},
                        descriptions={d.name: d for d in descriptions},
                        namespaces=[Namespace(d.name, frozenset(d.tools)) for d in descriptions],
                    )
        return self._setup

    async def _setup_or_refusal(self, execution_id: str) -> Setup | Outcome:
        """The setup, or an error outcome when a connector is unavailable (nothing changes: retry later)."""
        try:
            return await self.setup()
        except ConnectorUnavailableError as exc:
            return Outcome(status="error", execution_id=execution_id, error=str(exc))

    # -- running ------------------------------------------------------------

    async def execute(self, code: str) -> Outcome:
        """Run a program: completed, paused for approval, or error."""
        if not isinstance(code, str):
            return Outcome(status="error", execution_id="", error="code must be a string of Python source.")
        size = len(code.encode("utf-8"))
        if size > MAX_DURABLE_VALUE_BYTES:
            return Outcome(status="error", execution_id="", error=codec.too_large_message("The execution code", size))
        setup = await self._setup_or_refusal("")
        if isinstance(setup, Outcome):
            return setup
        execution_id = await self.store.begin(self.name, code, list(setup.connectors), self.max_executions)
        return await self._run_pass(execution_id, code, setup)

    async def approve(self, execution_id: str) -> Outcome:
        """Resume a paused run: replay the log, run the approved action once, continue."""
        setup = await self._resumable_setup(execution_id)
        if isinstance(setup, Outcome):
            return setup
        resumed = await self.store.resume(self.name, execution_id)
        if resumed is None:
            return _refused(
                execution_id,
                f'Execution "{execution_id}" is not paused (status: {await self._status(execution_id)}); only a '
                "paused run can be approved.",
            )
        return await self._run_pass(execution_id, resumed.code, setup, resumed.log)

    async def recover(self, execution_id: str, *, stale_after: timedelta = timedelta(minutes=1)) -> Outcome:
        """Resume a run whose host died mid-pass (still `running`, no heartbeat for `stale_after`).

        The log is replayed; a call that was `executing` when the host died runs again, so a
        connector call is never lost. Exactly one caller wins the takeover.
        """
        if stale_after < timedelta(seconds=1) or stale_after.total_seconds() <= self.heartbeat_interval:
            raise ValueError(
                f"stale_after must be at least 1 second and longer than the heartbeat interval "
                f"({self.heartbeat_interval:g} s), or a live pass could be taken over."
            )
        setup = await self._resumable_setup(execution_id)
        if isinstance(setup, Outcome):
            return setup
        claimed = await self.store.claim_stale(self.name, execution_id, stale_after)
        if claimed is None:
            return _refused(
                execution_id,
                f'Execution "{execution_id}" cannot be recovered (status: {await self._status(execution_id)}); only '
                f"a run left running with no heartbeat for {stale_after} can be.",
            )
        return await self._run_pass(execution_id, claimed.code, setup, claimed.log)

    async def _resumable_setup(self, execution_id: str) -> Setup | Outcome:
        """The setup, or an error outcome when a connector is unavailable, the run does not exist, or it
        needs connectors this runtime lacks."""
        setup = await self._setup_or_refusal(execution_id)
        if isinstance(setup, Outcome):
            return setup
        existing = await self.store.get_execution(self.name, execution_id)
        if existing is None:
            return _refused(execution_id, f'No execution "{execution_id}" to resume.')
        missing = [c for c in existing.connectors if c not in setup.connectors]
        if missing:
            names = ", ".join(f'"{c}"' for c in missing)
            return _refused(
                execution_id,
                f'Execution "{execution_id}" requires connector(s) {names} that are not configured on this runtime.',
            )
        return setup

    async def _status(self, execution_id: str) -> str:
        current = await self.store.get_execution(self.name, execution_id)
        return current.status if current else "deleted"

    async def _heartbeat(self, execution_id: str) -> None:
        """Keep a live pass from looking abandoned to `recover` and `expire_paused`."""
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if not await self.store.heartbeat(self.name, execution_id):
                return

    async def _run_pass(self, execution_id: str, code: str, setup: Setup, recorded: Sequence[LogEntry] = ()) -> Outcome:
        ended = False
        heartbeat = asyncio.ensure_future(self._heartbeat(execution_id))

        async def end(status: str) -> None:
            nonlocal ended
            ended = True
            await self._hooks("on_pass_end", execution_id, status)
            if status != "paused":
                await self._hooks("dispose_execution", execution_id, status)

        try:
            host = Pass(self, setup, execution_id, recorded)
            normalized = self.executor.normalize(code)
            result = await self.executor.execute(normalized, setup.namespaces, host)
            execution = await self.store.get_execution(self.name, execution_id)
            if execution is None:
                await end("error")
                return Outcome(status="error", execution_id=execution_id, error="The execution was deleted mid-run.")
            calls = execution.log
            if execution.status == "paused":
                await end("paused")
                pending = await self.store.list_pending(self.name, execution_id)
                return Outcome(
                    status="paused", execution_id=execution_id, pending=pending, logs=result.logs, calls=calls
                )
            if execution.status != "running":
                await end("error")
                error = execution.error or f"Execution ended with status {execution.status}."
                return Outcome(status="error", execution_id=execution_id, error=error, logs=result.logs, calls=calls)
            if result.error is not None or result.stopped:
                message = _original_line(result.error or "The program was stopped.", normalized, code)
                message = self._with_globals_hint(message, setup)
                await self.store.fail(self.name, execution_id, message, _bounded_logs(result.logs))
                await end("error")
                return Outcome(status="error", execution_id=execution_id, error=message, logs=result.logs, calls=calls)
            try:
                stored = codec.to_stored("The result", result.result)
            except DurableValueError as exc:
                stored = codec.dumps(f"[codemode: result omitted from the audit trail: {exc}]")
            if not await self.store.complete(self.name, execution_id, stored, _bounded_logs(result.logs)):
                status = await self._status(execution_id)
                await end("error")
                return Outcome(
                    status="error",
                    execution_id=execution_id,
                    error=f"The execution was ended elsewhere (status: {status}).",
                    calls=calls,
                )
            await end("completed")
            return Outcome(
                status="completed",
                execution_id=execution_id,
                result=await self._transform(result.result),
                logs=result.logs,
                calls=calls,
            )
        finally:
            heartbeat.cancel()
            if not ended:
                await self._hooks("on_pass_end", execution_id, "error")
                await self._hooks("dispose_execution", execution_id, "error")

    def _with_globals_hint(self, message: str, setup: Setup) -> str:
        if re.search(r"\bis not defined\b", message):
            names = ", ".join([*setup.connectors, "codemode"])
            return f"{message}\n(the only globals available in the sandbox are: {names})"
        return message

    async def _transform(self, result: Any) -> Any:
        if self.transform_result is None:
            return result
        try:
            shaped = self.transform_result(result)
            if isinstance(shaped, Awaitable):
                shaped = await shaped
            return shaped
        except Exception:
            log.warning("codemode: transform_result raised; returning the raw result.", exc_info=True)
            return result

    async def _hooks(self, hook: str, execution_id: str, status: str) -> None:
        """Fan a lifecycle hook out to every connector; failures are logged, never raised."""

        async def one(connector: Connector) -> None:
            try:
                await getattr(connector, hook)(execution_id, status)
            except Exception:
                log.warning("codemode: %s.%s failed for %s", connector.name, hook, execution_id, exc_info=True)

        await asyncio.gather(*(one(c) for c in self.connectors))

    # -- approvals and undo ---------------------------------------------------

    async def pending(self, execution_id: str | None = None) -> list[PendingAction]:
        """Actions awaiting approval: of one run, or of every paused run (newest first)."""
        return await self.store.list_pending(self.name, execution_id)

    async def reject(self, execution_id: str, seq: int) -> bool:
        """End a paused run as `rejected`; False when nothing was pending at `seq` (stale or raced)."""
        rejected = await self.store.reject(self.name, execution_id, seq)
        if rejected:
            await self._hooks("dispose_execution", execution_id, "rejected")
        return rejected

    async def rollback(self, execution_id: str) -> list[int]:
        """Revert every applied action that has a revert, newest first; returns the reverted seqs."""
        execution = await self.store.get_execution(self.name, execution_id)
        if execution is None:
            raise LookupError(f'No execution "{execution_id}" to roll back.')
        if execution.status == "running":
            raise RuntimeError(f'Execution "{execution_id}" is running; roll it back after its pass ends.')
        setup = await self.setup()
        ctx = ToolContext(execution_id=execution_id)
        reverted: list[int] = []
        failures: list[str] = []
        for action in await self.store.actions_to_revert(self.name, execution_id):
            connector = setup.connectors.get(action.connector)
            if connector is None:
                continue
            try:
                if await connector.revert_action(action.method, action.args, action.result, ctx):
                    await self.store.mark_reverted(self.name, execution_id, action.seq)
                    reverted.append(action.seq)
            except Exception as exc:
                failures.append(f"{action.connector}.{action.method}: {exc}")
        if reverted:
            await self.store.mark_rolled_back(self.name, execution_id)
            await self._hooks("dispose_execution", execution_id, "rolled_back")
        if failures:
            raise RollbackError(
                f"Rollback reverted {len(reverted)} action(s) but {len(failures)} failed: " + "; ".join(failures),
                reverted,
                failures,
            )
        return reverted

    async def expire_paused(self, max_age: timedelta = DEFAULT_PAUSED_TTL) -> list[str]:
        """Expire runs paused (or stuck running) longer than `max_age`; returns their ids."""
        expired = await self.store.expire(self.name, max_age)
        for execution_id in expired:
            await self._hooks("dispose_execution", execution_id, "rejected")
        return expired

    # -- the audit trail ----------------------------------------------------

    async def executions(self, limit: int | None = None) -> list[Execution]:
        """Every run, newest first."""
        return await self.store.list_executions(self.name, limit)

    async def execution(self, execution_id: str) -> Execution | None:
        return await self.store.get_execution(self.name, execution_id)

    async def delete_execution(self, execution_id: str) -> bool:
        """Delete a run and its log; a paused or running run's resources are disposed."""
        status = await self.store.delete_execution(self.name, execution_id)
        if status in ("paused", "running"):
            await self._hooks("dispose_execution", execution_id, "rejected")
        return status is not None

    async def prune_executions(self, keep: int = DEFAULT_MAX_EXECUTIONS) -> int:
        """Delete the oldest ended runs beyond `keep`; paused and running runs are kept."""
        return await self.store.prune_executions(self.name, keep)

    # -- snippets -----------------------------------------------------------

    async def save_snippet(
        self,
        name: str,
        *,
        execution_id: str,
        description: str = "",
        input_schema: dict[str, Any] | None = None,
    ) -> Snippet:
        """Promote a run's program to a snippet the model can find and re-run."""
        if not isinstance(name, str) or not name.strip() or len(name) > 200:
            raise ValueError("A snippet name must be a non-empty string of at most 200 characters.")
        execution = await self.store.get_execution(self.name, execution_id)
        if execution is None:
            raise LookupError(f'No execution "{execution_id}" to save from.')
        schema_json: str | None = None
        if input_schema is not None:
            jsonschema.validators.validator_for(input_schema).check_schema(input_schema)
            schema_json = codec.to_stored(f'The input schema of snippet "{name}"', input_schema)
        snippet = Snippet(
            name=name,
            description=description,
            code=execution.code,
            saved_at=datetime.now(timezone.utc),
            input_schema=input_schema,
            connectors=list(execution.connectors),
        )
        await self.store.save_snippet(self.name, snippet, schema_json)
        return snippet

    async def snippets(self) -> list[Snippet]:
        return await self.store.list_snippets(self.name)

    async def delete_snippet(self, name: str) -> bool:
        return await self.store.delete_snippet(self.name, name)

    # -- discovery ----------------------------------------------------------

    async def search(self, query: str) -> SearchOutput:
        """Rank connector methods and snippets for a query, as `codemode.search` does in the sandbox."""
        setup = await self.setup()
        return search_catalog(query, list(setup.descriptions.values()), await self.snippets())

    async def describe(self, target: str) -> Description:
        """Declarations for a connector, `connector.method` or snippet, as `codemode.describe` gives them."""
        setup = await self.setup()
        return describe_target(target, list(setup.descriptions.values()), await self.snippets(), self.renderer)


# What a connector's describe() raises for a developer's mistake (a name collision, a bad schema or
# document): it must reach the developer, not be reported to the model as a service outage.
_SETUP_MISTAKES = (ValueError, TypeError, LookupError, AttributeError, NotImplementedError)


async def _describe(connector: Connector) -> ConnectorDescription:
    try:
        return await connector.describe()
    except (ConnectorUnavailableError, *_SETUP_MISTAKES):
        raise
    except Exception as exc:  # the service behind the connector: a dead server, a refused connection
        raise ConnectorUnavailableError(connector.name, exc) from exc


_AT_LINE = re.compile(r"\bat line (\d+)")


def _original_line(error: str, normalized: str, original: str) -> str:
    """Point "at line N" at the model's own code: normalization strips fences and may wrap the program."""
    match = _AT_LINE.search(error)
    if match is None or normalized == original:
        return error
    line = int(match.group(1))
    normalized_lines = normalized.splitlines()
    if not 1 <= line <= len(normalized_lines):
        return error
    target = normalized_lines[line - 1].strip()
    candidates = [
        number
        for number, text in enumerate(original.splitlines(), 1)
        if (stripped := text.strip().rstrip(";").rstrip()) and stripped in target
    ]
    if not candidates:
        return error
    best = min(candidates, key=lambda number: abs(number - line))
    return error[: match.start(1)] + str(best) + error[match.end(1) :]


def _refused(execution_id: str, message: str) -> Outcome:
    """An error outcome for a request that changed nothing."""
    return Outcome(status="error", execution_id=execution_id, error=message)


def _bounded_logs(logs: list[str]) -> list[str]:
    """Stored console output is capped: the oldest half is dropped until it fits."""
    kept, dropped = list(logs), False
    while kept and sum(len(line) for line in kept) > MAX_STORED_LOG_CHARS:
        dropped = True
        kept = kept[len(kept) // 2 :] if len(kept) > 1 else [kept[0][-MAX_STORED_LOG_CHARS // 2 :]]
    return [LOGS_DROPPED, *kept] if dropped else kept
