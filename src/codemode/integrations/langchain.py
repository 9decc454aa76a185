"""LangChain and LangGraph: the `codemode` tool as a `BaseTool`; inside a graph a pause is an `interrupt`.

```python
graph = create_react_agent(model, [CodemodeTool(runtime)], checkpointer=InMemorySaver())
state = await graph.ainvoke({"messages": [...]}, config)    # a pause: state["__interrupt__"]
state = await graph.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}), config)
```

The interrupt value follows LangChain's human-in-the-loop request: `action_requests` (one per pending
action: `name` "connector.method", `args`, `description`) and `review_configs`, plus `execution_id` and
`pending` (with each `seq`). The resume value follows its decisions, one per pending action in order:
`{"type": "approve"}`, `{"type": "edit", "edited_action": {"name": ..., "args": {...}}}`,
`{"type": "reject", "message": "..."}`, inside `{"decisions": [...], "by": "who"}`; `True` approves
all, `False` rejects all. Echo the request's `pending` in the resume value to guard against a stale
answer (the run waits on other actions by now: nothing is decided, and a new interrupt asks again).
The tool-call id is the `execute` key, so the node LangGraph re-runs on resume continues the same run
instead of starting another. Outside a graph a pause is returned to the model as the paused result
(approve it with `runtime.approve`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from langchain_core.tools import BaseTool, InjectedToolCallId
from pydantic import BaseModel, ConfigDict, Field

from codemode.integrations._decide import Answer, pause_request, settle, stale
from codemode.records import Outcome
from codemode.runtime.runtime import Runtime
from codemode.runtime.tool import CodeTool

__all__ = ["CodemodeTool"]


class _CodeInput(BaseModel):
    code: str = Field(description="The program to run in the sandbox.")
    tool_call_id: Annotated[str | None, InjectedToolCallId] = None


class CodemodeTool(BaseTool):
    """The `codemode` tool of `runtime` for LangChain agents and LangGraph graphs."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "codemode"
    description: str = ""
    args_schema: type[BaseModel] = _CodeInput
    runtime: Runtime
    resume_on_reject: bool = False
    """After a rejection let the program go on (the call raises `PermissionError` inside it) instead of
    ending the run `rejected`."""

    def __init__(self, runtime: Runtime, *, tool: CodeTool | None = None, **kwargs: Any) -> None:
        code_tool = tool if tool is not None else runtime.tool()
        hint = code_tool.input_schema["properties"]["code"].get("description", "The program to run.")
        schema = type(
            "CodemodeInput",
            (_CodeInput,),
            {"__annotations__": {"code": str}, "code": Field(description=hint), "__module__": __name__},
        )
        kwargs.setdefault("description", code_tool.description)
        kwargs.setdefault("args_schema", schema)
        super().__init__(runtime=runtime, name=code_tool.name, **kwargs)

    def _run(self, code: str, tool_call_id: str | None = None, **_: Any) -> str:
        raise NotImplementedError("The codemode tool is asynchronous: use `ainvoke` (or `graph.ainvoke`).")

    async def _arun(self, code: str, tool_call_id: str | None = None, **_: Any) -> str:
        outcome = await self.runtime.execute(code, key=tool_call_id)
        if outcome.status == "paused" and tool_call_id is not None and _in_graph():
            from langgraph.types import interrupt

            # LangGraph re-runs the node on every resume and hands back, in order, the answers to the
            # interrupts this node raised before; those were applied by earlier passes, so skip them.
            for _answered in range(_answers_before()):
                interrupt(None)
            while outcome.status == "paused":
                answer = interrupt(_request(outcome))
                decided = _answer(answer, outcome, self.resume_on_reject)
                if not stale(outcome, decided):  # a stale answer asks again, about what is pending now
                    outcome = await settle(self.runtime, code, tool_call_id, decided)
        return json.dumps(outcome.to_model_output())


def _request(outcome: Outcome) -> dict[str, Any]:
    request = pause_request(outcome)
    actions = [
        {
            "name": f"{p['connector']}.{p['method']}",
            "args": p["args"],
            "description": f"Approve {p['connector']}.{p['method']} (seq {p['seq']}) of run {outcome.execution_id}",
        }
        for p in request["pending"]
    ]
    configs = [{"action_name": a["name"], "allowed_decisions": ["approve", "edit", "reject"]} for a in actions]
    return {"action_requests": actions, "review_configs": configs, **request}


def _answer(value: Any, outcome: Outcome, resume: bool) -> Answer:
    """A LangGraph resume value as decisions by seq, in the order of the pending actions."""
    if isinstance(value, bool):
        return Answer(approve=value, resume=resume)
    if not isinstance(value, Mapping):
        raise ValueError('Resume with {"decisions": [{"type": "approve"}, ...]} (one per pending action), or True.')
    shown = value.get("pending")
    seen = [p["seq"] for p in shown if isinstance(p, Mapping) and "seq" in p] if isinstance(shown, list) else None
    if seen is not None and sorted(seen) != sorted(p.seq for p in outcome.pending):
        return Answer(approve=False, seen=seen)  # stale: decides nothing
    raw = value.get("decisions")
    decisions: Sequence[Any] = raw if isinstance(raw, Sequence) else [value]
    if len(decisions) == 1 and len(outcome.pending) > 1:
        decisions = list(decisions) * len(outcome.pending)  # one decision for the whole batch
    if len(decisions) != len(outcome.pending):
        raise ValueError(f"Expected {len(outcome.pending)} decisions, one per pending action; got {len(decisions)}.")
    edits: dict[int | str, Mapping[str, Any]] = {}
    rejects: list[int | str] = []
    reasons: list[str] = []
    for pending, decision in zip(outcome.pending, decisions, strict=True):
        kind = decision.get("type") if isinstance(decision, Mapping) else None
        if kind == "reject":
            rejects.append(pending.seq)
            if isinstance(decision.get("message"), str):
                reasons.append(decision["message"])
        elif kind == "edit":
            edited = decision.get("edited_action") or {}
            args = edited.get("args") if isinstance(edited, Mapping) else None
            if not isinstance(args, Mapping):
                raise ValueError('An "edit" decision needs "edited_action": {"name": ..., "args": {...}}.')
            edits[pending.seq] = args
        elif kind != "approve":
            raise ValueError(f'Unknown decision {decision!r}: use "approve", "edit" or "reject".')
    by = value.get("by")
    reason = value.get("reason") or ("; ".join(reasons) if reasons else None)
    return Answer(
        approve=True,
        by=by if isinstance(by, str) else None,
        reason=reason,
        edits=edits,
        reject=rejects,
        resume=resume,
        seen=seen,
    )


def _in_graph() -> bool:
    """True inside a LangGraph node (where `interrupt` works), False for a plain LangChain call."""
    try:
        from langgraph.config import get_config
    except ImportError:
        return False
    try:
        return _SCRATCHPAD in get_config().get("configurable", {})
    except RuntimeError:
        return False


def _answers_before() -> int:
    """How many of this node's answers earlier passes already applied.

    LangGraph re-runs a resumed node from the start and hands back, in order, every answer given to
    its interrupts; only the newest is new. It arrives either as the plain `Command(resume=value)` or,
    with `Command(resume={interrupt_id: value})`, already appended to the task's answers: then the last
    one is new. LangGraph has no public call for this count, so it is read from the task's scratchpad
    the way `interrupt` itself reads it (a test pins both resume forms against the installed version)."""
    from langgraph.config import get_config
    from langgraph.types import _interrupt_id

    conf = get_config()["configurable"]
    scratchpad = conf[_SCRATCHPAD]
    answers = len(scratchpad.resume)
    if answers == 0 or scratchpad.get_null_resume(False) is not None:
        return answers
    resume_map = conf.get(_RESUME_MAP) or {}
    ns = conf.get("checkpoint_ns", "")
    if _interrupt_id(ns, answers - 1) in resume_map or _interrupt_id(ns, 0) in resume_map:
        return answers - 1
    return answers


_SCRATCHPAD = "__pregel_scratchpad"
_RESUME_MAP = "__pregel_resume_map"
