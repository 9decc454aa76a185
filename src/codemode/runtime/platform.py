"""The `codemode` namespace of a pass: search, describe, steps and snippets, as the program calls them.

`Pass` inherits it; kept apart so the pass's connector call path reads on its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import jsonschema

from codemode import codec
from codemode.records import STEP_CONNECTOR
from codemode.replay import Call, Verdict
from codemode.runtime.answers import recorded_error
from codemode.runtime.setup import Setup
from codemode.sandbox.base import TOOL_ERROR_KINDS, StopExecution, ToolError
from codemode.text import storable_text

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["MAX_STEP_NAME_CHARS", "PlatformCalls"]

MAX_STEP_NAME_CHARS = 200


class PlatformCalls:
    """The platform calls of a pass (`codemode.search`, `describe`, `step`, `run`)."""

    # The pass's own state and call path (set and defined by `Pass`).
    runtime: Runtime
    setup: Setup
    _open_steps: dict[str, tuple[int, str]]
    _snippets: int
    _next_seq: Callable[[], int]
    _decide: Callable[[Call], Awaitable[Verdict]]
    _record: Callable[[int, str, Any], Awaitable[Any]]
    _record_failure: Callable[[int, dict[str, str]], Awaitable[ToolError]]
    _refuse_inside_step: Callable[[str], None]

    async def call(self, namespace: str, method: str, args: dict[str, Any]) -> Any: ...

    async def _platform(self, method: str, args: Mapping[str, Any]) -> Any:
        if method == "search":
            return (await self.runtime._search_in(self.setup, str(args.get("query", "")))).to_dict()
        if method == "describe":
            return (await self.runtime._describe_in(self.setup, str(args.get("target", "")))).to_dict()
        if method == "step_decide":
            return await self._step_decide(_step_name(args.get("name")))
        if method == "step_record":
            return await self._step_record(args.get("token"), args.get("value"))
        if method == "step_fail":
            return await self._step_fail(args.get("token"), str(args.get("kind", "")), str(args.get("message", "")))
        if method == "run":
            self._refuse_inside_step(f'codemode.run("{args.get("name", "")}")')
            return await self._run_snippet(str(args.get("name", "")), args.get("input"))
        raise ToolError(f'codemode has no method "{method}"', "AttributeError")

    async def _step_decide(self, name: str) -> dict[str, Any]:
        seq = self._next_seq()
        verdict = await self._decide(Call(seq, STEP_CONNECTOR, name, None))
        if verdict.kind == "replay":
            return {"replay": True, "value": verdict.result}
        if verdict.kind == "raise":
            raise recorded_error(verdict.result)
        if verdict.kind != "execute":
            raise StopExecution()
        # The host keeps the seq; the sandbox only gets a token it cannot forge for another entry.
        token = secrets.token_hex(16)
        self._open_steps[token] = (seq, name)
        return {"replay": False, "token": token}

    def _close_step(self, token: Any) -> tuple[int, str]:
        opened = self._open_steps.pop(token, None) if isinstance(token, str) else None
        if opened is None:
            raise ToolError("codemode.step: this step is not open (already recorded, or not a step).", "RuntimeError")
        return opened

    async def _step_record(self, token: Any, value: Any) -> Any:
        seq, name = self._close_step(token)
        return await self._record(seq, f'The result of codemode.step("{name}")', value)

    async def _step_fail(self, token: Any, kind: str, message: str) -> None:
        """A step whose function raised: a recorded fact. The program gets the recorded error now, the
        same exception every replay raises, not its original one."""
        seq, _ = self._close_step(token)
        if kind not in TOOL_ERROR_KINDS:
            message, kind = f"{kind}: {message}" if kind else message, "RuntimeError"
        raise await self._record_failure(seq, {"error": message, "kind": kind})

    async def _run_snippet(self, name: str, input: Any) -> Any:
        snippet = await self.runtime.store.get_snippet(self.runtime.name, name)
        if snippet is None:
            return {"error": f'Snippet "{name}" not found.'}
        missing = [c for c in snippet.connectors if not self.setup.configured(c)]
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
        normalized = executor.normalize(snippet.code)
        self._snippets += 1
        try:
            result = await executor.execute(
                normalized, self.setup.namespaces_for(normalized), self, input=codec.roundtrip(input)
            )
        finally:
            self._snippets -= 1
        if result.stopped:
            raise StopExecution()
        if result.error is not None:
            raise ToolError(f'Snippet "{name}" failed: {result.error}')
        return codec.roundtrip(result.result)


def _step_name(name: Any) -> str:
    """A step's name, checked before it takes a seq: it is the log entry's method, kept with the run."""
    if not isinstance(name, str) or not name.strip():
        got = "an empty string" if isinstance(name, str) else f"a {type(name).__name__}"
        raise ToolError(
            f"codemode.step needs a name: a non-empty string saying what the step does, for example "
            f'codemode.step("pick_winner", fn); it got {got}.',
            "TypeError",
        )
    if len(name) > MAX_STEP_NAME_CHARS:
        raise ToolError(
            f"codemode.step's name is {len(name):,} characters long; the limit is {MAX_STEP_NAME_CHARS}. Give the "
            'step a short label (for example "pick_winner"): the value belongs in what its function returns, '
            "not in its name.",
            "ValueError",
        )
    return storable_text(name)  # the log's method column is text: no lone surrogate, no NUL
