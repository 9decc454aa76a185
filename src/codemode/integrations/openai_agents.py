"""OpenAI Agents SDK: the `codemode` tool as a `FunctionTool` whose pauses are run interruptions.

```python
agent = Agent(name="ops", model=model, tools=[codemode_tool(runtime)])
result = await Runner.run(agent, "...")                  # a pause: result.interruptions
state = result.to_state()
for item in result.interruptions:
    state.approve(item)                                  # or state.reject(item, rejection_message="...")
result = await Runner.run(agent, state)
```

The SDK decides `needs_approval` before a tool runs, while a codemode program learns that it needs
approval while it runs. So `needs_approval` starts the run (keyed by the tool-call id, in the store):
a paused run asks for approval, a finished one does not. Approving the interruption approves every
pending action by seq; rejecting rejects them with the rejection message as the reason. A program that
pauses again after an approval interrupts the run again, on the same tool call. The approval state the
SDK keeps lives in `RunState` (serialize it with `to_json()`), the run itself in the codemode store.
"""

from __future__ import annotations

import json
from typing import Any

from agents import FunctionTool, RunContextWrapper
from agents.items import ToolApprovalItem
from agents.tool_context import ToolContext

from codemode.integrations._decide import Answer, pause_request, settle
from codemode.records import Outcome
from codemode.runtime.runtime import Runtime
from codemode.runtime.tool import CodeTool

__all__ = ["codemode_tool", "pending_actions"]

_FRAMEWORK = {"framework": "openai-agents"}


def codemode_tool(
    runtime: Runtime, *, tool: CodeTool | None = None, by: str | None = None, resume_on_reject: bool = False
) -> FunctionTool:
    """The `codemode` function tool of `runtime`, with approvals as run interruptions.

    `by` is recorded as the decider of every approval and rejection given through the SDK (its
    `RunState.approve/reject` take no name); `resume_on_reject=True` lets the program go on after a
    rejection (the call raises `PermissionError` inside it) instead of ending the run `rejected`."""
    code_tool = tool if tool is not None else runtime.tool()
    name = code_tool.name

    async def needs_approval(ctx: RunContextWrapper[Any], params: dict[str, Any], call_id: str) -> bool:
        code = params.get("code")
        if not isinstance(code, str):
            return False  # the invocation reports the bad arguments to the model
        outcome = await runtime.execute(code, key=call_id, metadata=_FRAMEWORK)
        return outcome.status == "paused"

    async def decide(ctx: RunContextWrapper[Any], agent: Any) -> bool:
        # `is_enabled` is asked before every model turn, so also before a resumed run acts on the
        # decisions in its `RunState`: the one point where a rejection (after which the SDK never calls
        # the tool) and an approval that pauses again (which must interrupt again) can both be handled.
        for execution in await runtime.executions(status="paused", metadata=_FRAMEWORK):
            key = execution.key
            decision = ctx.is_tool_approved(name, key) if key else None
            if key is None or decision is None:
                continue
            reason = ctx.get_rejection_message(name, key) if decision is False else None
            answer = Answer(approve=decision, by=by, reason=reason, resume=resume_on_reject)
            outcome = await settle(runtime, execution.code, key, answer)
            if outcome.status == "paused":
                _forget_approval(ctx, key)  # the SDK then raises the same interruption again
        return True

    async def invoke(ctx: ToolContext[Any], arguments: str) -> str:
        code = _code(arguments)
        if code is None:
            return json.dumps({"status": "error", "error": 'Pass {"code": "<program>"}: one string property.'})
        outcome = await runtime.execute(code, key=ctx.tool_call_id, metadata=_FRAMEWORK)
        return json.dumps(outcome.to_model_output())

    return FunctionTool(
        name=name,
        description=code_tool.description,
        params_json_schema=code_tool.input_schema,
        on_invoke_tool=invoke,
        strict_json_schema=True,
        is_enabled=decide,
        needs_approval=needs_approval,
    )


def _forget_approval(ctx: RunContextWrapper[Any], call_id: str) -> None:
    """Undo the SDK's record that `call_id` was approved, so its next pause is asked about anew.

    The SDK has no public call for this (an approval is final for a call id there), so this edits its
    per-call approval records; a test pins the behaviour against the installed SDK."""
    for record in ctx._approvals.values():
        if isinstance(record.approved, list) and call_id in record.approved:
            record.approved.remove(call_id)


async def pending_actions(runtime: Runtime, item: ToolApprovalItem) -> dict[str, Any]:
    """What an interruption asks a human to approve: `{"execution_id", "pending": [...]}`."""
    raw = item.raw_item
    arguments = raw.get("arguments") if isinstance(raw, dict) else getattr(raw, "arguments", None)
    call_id = raw.get("call_id") if isinstance(raw, dict) else getattr(raw, "call_id", None)
    code = _code(arguments if isinstance(arguments, str) else "")
    if code is None or not isinstance(call_id, str):
        return {"execution_id": "", "pending": []}
    outcome: Outcome = await runtime.execute(code, key=call_id, metadata=_FRAMEWORK)
    if outcome.status != "paused":
        return {"execution_id": outcome.execution_id, "pending": []}
    return pause_request(outcome)


def _code(arguments: str) -> str | None:
    try:
        parsed = json.loads(arguments)
    except (TypeError, ValueError):
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, str) else None
