"""One execution pass: the host side of every call a program makes.

Used by both `Runtime.execute` (first pass) and `Runtime.approve` (a replay
from the start). Each connector call is validated, given the next sequence
number, and decided by the store: served from the log, executed and recorded,
or refused (the pass stops). The store's status, not the sandbox, decides how
the pass ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jsonschema
from jsonschema.exceptions import best_match

from codemode.connectors.base import Connector, ConnectorDescription, ToolContext, ToolSpec, idempotency_key
from codemode.runtime import codec
from codemode.runtime.codec import DurableValueError
from codemode.runtime.outcome import STEP_CONNECTOR, LogEntry
from codemode.sandbox.base import PLATFORM, Namespace, StopExecution, ToolError
from codemode.store.base import Decision

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["Pass", "Setup"]

log = logging.getLogger("codemode")


@dataclass
class Setup:
    """The resolved connector set of a runtime: described once, reused by every pass."""

    connectors: dict[str, Connector]
    descriptions: dict[str, ConnectorDescription]
    namespaces: list[Namespace]
    validators: dict[tuple[str, str], Any] = field(default_factory=dict)

    def validator(self, connector: str, method: str, spec: ToolSpec) -> Any:
        """A compiled JSON Schema validator per tool; None when the tool's schema is itself invalid."""
        key = (connector, method)
        if key not in self.validators:
            try:
                schema = dict(spec.input_schema)
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                self.validators[key] = cls(schema)
            except Exception as exc:  # a connector bug must not make the tool uncallable
                log.warning(
                    "codemode: %s.%s has an invalid input schema, arguments are not validated: %s",
                    connector,
                    method,
                    exc,
                )
                self.validators[key] = None
        return self.validators[key]


class Pass:
    """The `Host` of one pass of one execution."""

    def __init__(self, runtime: Runtime, setup: Setup, execution_id: str, recorded: Sequence[LogEntry] = ()) -> None:
        self.runtime = runtime
        self.setup = setup
        self.execution_id = execution_id
        self._seq = 0
        self._decide_lock = asyncio.Lock()
        self._step_names: dict[int, str] = {}
        # The log as it was when this pass took the run over: applied results are final while the
        # pass owns the run, so replays are served from memory (one query for the whole log).
        self._recorded = {entry.seq: entry for entry in recorded if entry.state == "applied" and not entry.ephemeral}
        self._stopped = False

    async def _decide(
        self,
        seq: int,
        connector: str,
        method: str,
        args_json: str | None,
        args_error: str | None,
        requires_approval: bool,
        ephemeral: bool,
    ) -> Decision:
        """The store's decision, short-cut for calls the preloaded log already answers."""
        if self._stopped:
            return Decision("pause", seq)  # this pass already paused or failed: refuse progress
        entry = self._recorded.pop(seq, None)
        if (
            entry is not None
            and (entry.connector, entry.method) == (connector, method)
            and (args_json is None or entry.args is None or codec.canonical(entry.args) == args_json)
        ):
            return Decision("replay", seq, entry.result)
        async with self._decide_lock:
            decision = await self.runtime.store.decide(
                self.runtime.name,
                self.execution_id,
                seq,
                connector,
                method,
                args_json,
                args_error,
                requires_approval,
                ephemeral,
            )
        if decision.kind == "pause":
            self._stopped = True
        return decision

    async def _fail_at(self, seq: int, message: str) -> None:
        self._stopped = True
        await self.runtime.store.fail_at(self.runtime.name, self.execution_id, seq, message)

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq += 1
        return seq

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any:
        if namespace == PLATFORM:
            return await self._platform(method, args)
        description = self.setup.descriptions.get(namespace)
        spec = description.tools.get(method) if description else None
        if description is None or spec is None:
            raise ToolError(
                f'{namespace} has no method "{method}". Use codemode.search("...") to find the right name.',
                "AttributeError",
            )
        self._validate(namespace, method, spec, args)
        seq = self._next_seq()  # taken synchronously: program order, even under asyncio.gather
        try:
            args_json, args_error = codec.to_stored(f"Arguments to {namespace}.{method}", args, sort_keys=True), None
        except DurableValueError as exc:
            args_json, args_error = None, str(exc)
        ephemeral = spec.replay == "reexecute"
        store, runtime = self.runtime.store, self.runtime.name
        decision = await self._decide(seq, namespace, method, args_json, args_error, spec.requires_approval, ephemeral)
        if decision.kind == "replay":
            return decision.result
        if decision.kind == "pause":
            raise StopExecution()
        connector = self.setup.connectors[namespace]
        try:
            ctx = ToolContext(self.execution_id, seq, idempotency_key(self.execution_id, seq))
            result = await connector.execute_tool(method, args, ctx)
        except Exception as exc:
            log.info("codemode: %s.%s failed (execution %s): %r", namespace, method, self.execution_id, exc)
            message = str(exc) or type(exc).__name__
            await store.record_error(runtime, self.execution_id, seq, codec.dumps({"error": message}))
            raise ToolError(message, _python_kind(exc)) from None
        if ephemeral:
            await store.record_result(runtime, self.execution_id, seq, None)
            try:
                return codec.roundtrip(result)
            except (TypeError, ValueError) as exc:
                raise ToolError(
                    f"{namespace}.{method} returned a value that cannot cross into the sandbox: {exc}"
                ) from None
        return await self._record(seq, f"The result of {namespace}.{method}", result)

    async def _record(self, seq: int, what: str, value: Any) -> Any:
        """Log a result, then hand the program exactly what a replay will return.

        A value that cannot be recorded fails the run: the program is stopped."""
        try:
            text = codec.to_stored(what, value)
        except DurableValueError as exc:
            await self._fail_at(seq, str(exc))
            raise StopExecution() from None
        await self.runtime.store.record_result(self.runtime.name, self.execution_id, seq, text)
        return codec.loads(text)

    def _validate(self, namespace: str, method: str, spec: ToolSpec, args: dict[str, Any]) -> None:
        """Bad arguments never reach the log: the program gets an error naming the field."""
        validator = self.setup.validator(namespace, method, spec)
        if validator is None:
            return
        try:
            error = best_match(validator.iter_errors(codec.schema_view(args)))
        except (TypeError, ValueError) as exc:
            raise ToolError(f"Invalid arguments for {namespace}.{method}: {exc}", "TypeError") from None
        if error is None:
            return
        where = "".join(f"[{p!r}]" for p in error.absolute_path) or "arguments"
        raise ToolError(
            f"Invalid arguments for {namespace}.{method}: {where}: {error.message}. "
            f'See codemode.describe("{namespace}.{method}") for the expected arguments.',
            "TypeError",
        )

    # -- the codemode platform namespace ------------------------------------

    async def _platform(self, method: str, args: Mapping[str, Any]) -> Any:
        if method == "search":
            return (await self.runtime.search(str(args.get("query", "")))).to_dict()
        if method == "describe":
            return (await self.runtime.describe(str(args.get("target", "")))).to_dict()
        if method == "step_decide":
            return await self._step_decide(str(args.get("name", "")))
        if method == "step_record":
            return await self._step_record(int(args["seq"]), args.get("value"))
        if method == "run":
            return await self._run_snippet(str(args.get("name", "")), args.get("input"))
        raise ToolError(f'codemode has no method "{method}"', "AttributeError")

    async def _step_decide(self, name: str) -> dict[str, Any]:
        seq = self._next_seq()
        decision = await self._decide(seq, STEP_CONNECTOR, name, None, None, False, False)
        if decision.kind == "replay":
            return {"replay": True, "value": decision.result}
        if decision.kind == "pause":
            raise StopExecution()
        self._step_names[seq] = name
        return {"replay": False, "seq": seq}

    async def _step_record(self, seq: int, value: Any) -> Any:
        name = self._step_names.get(seq, "?")
        return await self._record(seq, f'The result of codemode.step("{name}")', value)

    async def _run_snippet(self, name: str, input: Any) -> Any:
        snippet = await self.runtime.store.get_snippet(self.runtime.name, name)
        if snippet is None:
            return {"error": f'Snippet "{name}" not found.'}
        missing = [c for c in snippet.connectors if c not in self.setup.connectors]
        if missing:
            names = ", ".join(f'"{c}"' for c in missing)
            return {"error": f'Snippet "{name}" requires connector(s) {names} that are not configured on this runtime.'}
        if snippet.input_schema is not None:
            try:
                jsonschema.validate(codec.schema_view(input), snippet.input_schema)
            except jsonschema.ValidationError as exc:
                where = "".join(f"[{p!r}]" for p in exc.absolute_path) or "input"
                raise ToolError(f'Invalid input for snippet "{name}": {where}: {exc.message}', "TypeError") from None
        executor = self.runtime.executor
        result = await executor.execute(
            executor.normalize(snippet.code), self.setup.namespaces, self, input=codec.roundtrip(input)
        )
        if result.stopped:
            raise StopExecution()
        if result.error is not None:
            raise ToolError(f'Snippet "{name}" failed: {result.error}')
        return codec.roundtrip(result.result)


def _python_kind(exc: BaseException) -> str:
    """Keep the common exception types so `except ValueError:` in the program works."""
    for kind in ("PermissionError", "TimeoutError", "KeyError", "LookupError", "ValueError", "TypeError"):
        if any(cls.__name__ == kind for cls in type(exc).__mro__):
            return kind
    return "RuntimeError"
