"""Pydantic AI: the `codemode` tool as a toolset, whose pauses are Pydantic AI deferred tool approvals.

```python
agent = Agent(model, toolsets=[CodemodeToolset(runtime)], output_type=[str, DeferredToolRequests])
result = await agent.run("...")                        # a pause ends the run with DeferredToolRequests
results = DeferredToolResults(approvals={call.tool_call_id: True for call in result.output.approvals})
result = await agent.run(message_history=result.all_messages(), deferred_tool_results=results)
```

Mapping (every answer is by seq, on the run found again by its key, the tool-call id):
- `True` / `ToolApproved()` approves every pending action of that call;
- `ToolApproved(override_args={"edits": {seq: args}, "reject": [seq]})` approves with edited arguments,
  and rejects the listed seqs while the program goes on (they raise `PermissionError` inside it);
- `ToolDenied(message)` rejects every pending action with `message` as the reason and ends the run
  `rejected` (`CodemodeToolset(runtime, resume_on_deny=True)`: the program goes on instead);
- `DeferredToolResults.metadata[tool_call_id] = {"by": ..., "reason": ...}` records who decided and why;
  passing the request's own metadata back (its `pending`) guards against a stale approval: if the run
  waits on other actions by now, nothing is decided and a new request asks about those.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from pydantic import TypeAdapter
from pydantic_ai import ApprovalRequired, ModelRetry, RunContext
from pydantic_ai.messages import ModelRequest, ModelResponse, ToolCallPart, ToolReturnPart
from pydantic_ai.tools import ToolDefinition
from pydantic_ai.toolsets import AbstractToolset
from pydantic_ai.toolsets.abstract import ToolsetTool
from pydantic_core import SchemaValidator
from typing_extensions import NotRequired, TypedDict

from codemode.integrations._decide import Answer, pause_request, settle, stale
from codemode.records import Outcome
from codemode.runtime.runtime import Runtime
from codemode.runtime.tool import CodeTool

__all__ = ["CodemodeToolset"]


class _Args(TypedDict):
    """What the tool accepts: the model's `code`; on an approved call, the human's `ToolApproved` overrides too."""

    code: NotRequired[str]
    edits: NotRequired[dict[int, dict[str, Any]]]
    reject: NotRequired[list[int]]
    by: NotRequired[str]
    reason: NotRequired[str]


_ARGS = TypeAdapter(_Args)
_OVERRIDES = ("edits", "reject", "by", "reason")


class CodemodeToolset(AbstractToolset[Any]):
    """A toolset with the one `codemode` tool of `runtime`; a pause raises `ApprovalRequired`.

    `ApprovalRequired.metadata` (so `DeferredToolRequests.metadata[tool_call_id]`) is
    `{"execution_id": ..., "pending": [{"seq", "connector", "method", "args"}, ...]}`: what the human
    approves. The store holds everything else, so the approval may come from another process."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        tool: CodeTool | None = None,
        resume_on_deny: bool = False,
        max_retries: int = 1,
        id: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.code_tool = tool if tool is not None else runtime.tool()
        self.resume_on_deny = resume_on_deny
        self.max_retries = max_retries
        self._id = id

    @property
    def id(self) -> str | None:
        return self._id

    async def get_tools(self, ctx: RunContext[Any]) -> dict[str, ToolsetTool[Any]]:
        # A `ToolDenied` never reaches `call_tool`: Pydantic AI answers the model itself. The denial is
        # in the request about to go to the model, so it is settled here, before the model reads it.
        await self._settle_denials(ctx)
        definition = ToolDefinition(
            name=self.code_tool.name,
            description=self.code_tool.description,
            parameters_json_schema=self.code_tool.input_schema,
        )
        return {
            definition.name: ToolsetTool(
                toolset=self,
                tool_def=definition,
                max_retries=self.max_retries,
                args_validator=cast(SchemaValidator, _ARGS.validator),
            )
        }

    async def call_tool(
        self, name: str, tool_args: dict[str, Any], ctx: RunContext[Any], tool: ToolsetTool[Any]
    ) -> Any:
        key = ctx.tool_call_id
        if key is None:  # pragma: no cover - Pydantic AI always gives a function tool its call id
            raise RuntimeError("The codemode tool needs the tool-call id as its execution key.")
        code = _call_code(ctx.messages, key) or tool_args.get("code")
        if not ctx.tool_call_approved:
            if set(tool_args) != {"code"}:
                raise ModelRetry('The codemode tool takes exactly one argument: "code", the program to run.')
            outcome = await self.runtime.execute(tool_args["code"], key=key)
        elif not isinstance(code, str):
            raise ModelRetry('The codemode tool needs "code", the program to run.')
        else:
            answer = _approval(tool_args, ctx.tool_call_metadata)
            outcome = await self.runtime.execute(code, key=key)
            if not stale(outcome, answer):  # a stale approval asks again, about what is pending now
                outcome = await settle(self.runtime, code, key, answer)
        return _result(outcome)

    async def _settle_denials(self, ctx: RunContext[Any]) -> None:
        last = ctx.messages[-1] if ctx.messages else None
        if not isinstance(last, ModelRequest):
            return
        for part in last.parts:
            if isinstance(part, ToolReturnPart) and part.tool_name == self.code_tool.name and part.outcome == "denied":
                code = _call_code(ctx.messages, part.tool_call_id)
                if code is not None:
                    reason = part.content if isinstance(part.content, str) else None
                    await settle(
                        self.runtime,
                        code,
                        part.tool_call_id,
                        Answer(approve=False, reason=reason, resume=self.resume_on_deny),
                    )


def _result(outcome: Outcome) -> dict[str, Any]:
    if outcome.status == "paused":
        raise ApprovalRequired(metadata=pause_request(outcome))
    output: dict[str, Any] = outcome.to_model_output()
    return output


def _approval(overrides: Mapping[str, Any], metadata: Any) -> Answer:
    """A Pydantic AI approval as decisions: edits and rejections from `override_args`, who and why from metadata."""
    meta: Mapping[str, Any] = metadata if isinstance(metadata, Mapping) else {}
    return Answer(
        approve=True,
        by=overrides.get("by") or meta.get("by"),
        reason=overrides.get("reason") or meta.get("reason"),
        edits=overrides.get("edits") or meta.get("edits") or {},
        reject=overrides.get("reject") or meta.get("reject") or (),
        resume=True,
        seen=_seqs(meta.get("pending")),
    )


def _seqs(pending: Any) -> list[int] | None:
    """The seqs of a request's `pending` list passed back in `DeferredToolResults.metadata`, if it was."""
    if not isinstance(pending, list):
        return None
    return [p["seq"] for p in pending if isinstance(p, Mapping) and isinstance(p.get("seq"), int)]


def _call_code(messages: list[Any], tool_call_id: str) -> str | None:
    """The program of the model's tool call `tool_call_id`, from the history (overrides may omit it)."""
    for message in reversed(messages):
        if isinstance(message, ModelResponse):
            for part in message.parts:
                if isinstance(part, ToolCallPart) and part.tool_call_id == tool_call_id:
                    code = part.args_as_dict().get("code")
                    return code if isinstance(code, str) else None
    return None
