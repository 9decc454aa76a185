"""ToolsetConnector: plain Python functions and agent-framework tools as one connector.

Tools an application already has, written as plain functions or for Pydantic
AI, LangChain or the OpenAI Agents SDK, become one namespace the program calls
(`tools.get_weather(city="Paris")`). Every kind follows the same rules:

- names are sanitized (`get-weather` -> `get_weather`); two tools that map to
  the same name make `describe()` fail with an error naming both;
- a framework's approval flag becomes `requires_approval`; a flag that is a
  function cannot be evaluated before the call, so it always requires approval;
- arguments are validated before the tool runs (pydantic for functions and
  Pydantic AI tools, the tool's own JSON Schema for LangChain and OpenAI Agents);
  a refusal raises `ToolArgumentsError` and the tool never runs; a plain function
  refuses arguments it does not declare, unless it takes `**kwargs`;
- a function whose types cannot be described fails at construction, naming the
  tool and the type;
- a framework tool is called through the framework's own invocation path, so
  its own coercion, validation and error handling still apply;
- tools that cannot run on the host (hosted by a model provider, external or
  deferred, schema-only) are left out with one `ExcludedToolsWarning` naming them.

The frameworks are optional extras, imported only by the `from_*` constructors.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import uuid
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import jsonschema
import pydantic
from jsonschema.exceptions import best_match

from codemode.codec import schema_view
from codemode.connectors.base import Connector
from codemode.connectors.decorator import ToolMethod
from codemode.connectors.namespaces import validate_namespace_name
from codemode.connectors.spec import ToolContext, ToolSpec, maybe_await
from codemode.schema.names import sanitize_identifier

__all__ = ["ExcludedToolsWarning", "ToolArgumentsError", "ToolsetConnector"]

_EMPTY_OBJECT: Mapping[str, Any] = {"type": "object", "properties": {}}


class ToolArgumentsError(TypeError):
    """Arguments a tool refused before it ran; the message names the field and what to do next."""


class ExcludedToolsWarning(UserWarning):
    """Some tools were left out of a `ToolsetConnector` because they cannot run on the host."""


@dataclass(frozen=True)
class _Candidate:
    """One tool as a source found it, before naming: runnable (`spec`) or excluded (`why`)."""

    original: str
    spec: ToolSpec | None = None
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    why: str = ""


class _Source:
    """Where a connector's tools come from; `load` runs once per `describe()`."""

    async def load(self, namespace: str) -> tuple[list[_Candidate], str | None]:
        """The tools (runnable or excluded) and any instructions the tools carry."""
        raise NotImplementedError


_C = TypeVar("_C", bound="ToolsetConnector")


class ToolsetConnector(Connector):
    """A connector made of plain functions, or of tools written for an agent framework.

    `tools` are functions (sync or async) or functions decorated with
    `@codemode.tool(...)`, which keeps their name, approval, replay policy and
    revert. Schemas come from type hints and Google-style docstrings, as for
    `@codemode.tool` methods, and a parameter typed `ToolContext` receives the
    run's context. Subclasses can override `tool(name, spec)` to add approval or
    a revert to any tool, framework tools included.
    """

    def __init__(
        self, name: str | None = None, tools: Iterable[Callable[..., Any]] = (), instructions: str | None = None
    ) -> None:
        """
        Args:
            name: The global the program uses; else the class attribute `name`, else "tools".
            tools: Functions, or functions decorated with `@codemode.tool(...)`.
            instructions: Guidance for the model; else the class attribute `instructions`.
        """
        self.name = validate_namespace_name(name or self.name or "tools")
        if instructions is not None:
            self.instructions = instructions
        self._source: _Source = _Functions(list(tools))
        self._gate: bool | frozenset[str] = False

    # -- framework constructors ---------------------------------------------

    @classmethod
    def from_pydantic_ai(
        cls: type[_C],
        toolset_or_tools: Any,
        name: str | None = None,
        instructions: str | None = None,
        *,
        deps: Any = None,
        requires_approval: bool | Collection[str] = False,
    ) -> _C:
        """Tools of Pydantic AI: a toolset, an agent (its toolsets), or a list of toolsets, `Tool`s and functions.

        `deps` becomes `ctx.deps` for tools that take a `RunContext`. `requires_approval`
        gates more tools (all, or these names) on top of the framework's own flags:
        `Tool(requires_approval=True)` and tools under `toolset.approval_required(...)`.
        """
        _require("pydantic_ai", "pydantic-ai", "Pydantic AI")
        source = _PydanticAi(toolset_or_tools, deps)
        return cls._made(source, name, instructions, requires_approval)

    @classmethod
    def from_langchain(
        cls: type[_C],
        tools: Iterable[Any],
        name: str | None = None,
        instructions: str | None = None,
        *,
        requires_approval: bool | Collection[str] = False,
    ) -> _C:
        """LangChain tools (`@tool`, `StructuredTool`, any `BaseTool`).

        LangChain tools carry no approval flag, so `requires_approval` (all, or
        these names) is the way to gate them.
        """
        _require("langchain_core", "langchain", "LangChain")
        return cls._made(_LangChain(list(tools)), name, instructions, requires_approval)

    @classmethod
    def from_openai_agents(
        cls: type[_C],
        tools: Any,
        name: str | None = None,
        instructions: str | None = None,
        *,
        context: Any = None,
        requires_approval: bool | Collection[str] = False,
    ) -> _C:
        """OpenAI Agents SDK function tools: a list of tools, or an `Agent` (its `tools`).

        `context` becomes the tool context's `.context`. `needs_approval=True` or a
        function maps to `requires_approval`; hosted tools (web search, file search,
        code interpreter, ...) run at OpenAI, not here, so they are left out.
        """
        _require("agents", "openai-agents", "the OpenAI Agents SDK")
        return cls._made(_OpenAiAgents(tools, context), name, instructions, requires_approval)

    @classmethod
    def _made(
        cls: type[_C],
        source: _Source,
        name: str | None,
        instructions: str | None,
        requires_approval: bool | Collection[str],
    ) -> _C:
        connector = cls(name=name, instructions=instructions)
        connector._source = source
        if isinstance(requires_approval, str):
            requires_approval = [requires_approval]
        connector._gate = requires_approval if isinstance(requires_approval, bool) else frozenset(requires_approval)
        return connector

    # -- resolution ----------------------------------------------------------

    async def tools(self) -> Mapping[str, ToolSpec]:
        """Name, gate and guard every runnable tool; warn once about the ones left out."""
        candidates, carried = await self._source.load(self.name)
        self._source_instructions = carried
        originals: dict[str, str] = {}
        resolved: dict[str, ToolSpec] = {}
        for candidate in candidates:
            if candidate.spec is None:
                continue
            safe = sanitize_identifier(candidate.original)
            if safe in originals:
                raise ValueError(
                    f'Tools "{originals[safe]}" and "{candidate.original}" on {self.name} both map to the name '
                    f'"{safe}". Rename one of them.'
                )
            originals[safe] = candidate.original
            resolved[safe] = _guarded(f"{self.name}.{safe}", candidate)
        self._apply_gate(resolved, originals)
        excluded = [c for c in candidates if c.spec is None]
        if excluded:
            listed = ", ".join(f'"{c.original}" ({c.why})' for c in excluded)
            warnings.warn(
                f'ToolsetConnector "{self.name}" left out {len(excluded)} tool(s) that cannot run on the host: '
                f"{listed}.",
                ExcludedToolsWarning,
                stacklevel=1,
            )
        return resolved

    def _apply_gate(self, resolved: dict[str, ToolSpec], originals: Mapping[str, str]) -> None:
        if self._gate is False:
            return
        if self._gate is True:
            gated = set(resolved)
        else:
            known = set(resolved) | set(originals.values())
            unknown = sorted(self._gate - known)
            if unknown:
                names = ", ".join(f'"{n}"' for n in unknown)
                raise ValueError(
                    f"requires_approval names {names}, but {self.name} has no such tool. "
                    f"Its tools are: {', '.join(resolved) or 'none'}."
                )
            gated = {safe for safe, original in originals.items() if safe in self._gate or original in self._gate}
        for safe in gated:
            resolved[safe] = dataclasses.replace(resolved[safe], requires_approval=True)


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


def _require(module: str, extra: str, framework: str) -> None:
    """Fail at construction, with the install line, when a framework is not installed."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"ToolsetConnector needs {framework} for these tools: pip install 'codemode[{extra}]'"
        ) from exc


def _guarded(label: str, candidate: _Candidate) -> ToolSpec:
    """The candidate's spec, refusing bad arguments before the tool is called."""
    assert candidate.spec is not None
    spec, check = candidate.spec, candidate.check
    if check is None:
        return spec
    run = spec.execute

    def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
        try:
            checked = check(args)
        except (pydantic.ValidationError, jsonschema.ValidationError) as exc:
            raise ToolArgumentsError(_invalid(label, exc)) from None
        return run(checked, ctx)

    return dataclasses.replace(spec, execute=execute)


def _invalid(label: str, error: pydantic.ValidationError | jsonschema.ValidationError | str) -> str:
    """One message for every validator: where, what, and where to look."""
    if isinstance(error, pydantic.ValidationError):
        detail = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()[:3]
        )
    elif isinstance(error, jsonschema.ValidationError):
        detail = f"{''.join(f'[{p!r}]' for p in error.absolute_path) or 'arguments'}: {error.message}"
    else:
        detail = error
    return f'Invalid arguments for {label}: {detail}. See codemode.describe("{label}") for the expected arguments.'


def _schema_check(schema: Mapping[str, Any]) -> Callable[[dict[str, Any]], dict[str, Any]] | None:
    """A JSON Schema check of the arguments; None when the schema itself is unusable."""
    schema = dict(schema)
    try:
        cls = jsonschema.validators.validator_for(schema)
        cls.check_schema(schema)
    except jsonschema.SchemaError:
        return None  # the framework's own validation still runs
    validator = cls(schema)

    def check(args: dict[str, Any]) -> dict[str, Any]:
        error = best_match(validator.iter_errors(schema_view(args)))  # as the runtime sees them: bytes are text
        if error is not None:
            raise error
        return args

    return check


def _call_id(ctx: ToolContext) -> str:
    """A tool-call id for frameworks that want one: the run's id and a per-call suffix."""
    return f"{ctx.execution_id}-{uuid.uuid4().hex[:12]}"


def _label_of(namespace: str, original: str) -> str:
    return f"{namespace}.{sanitize_identifier(original)}"


# ---------------------------------------------------------------------------
# Plain functions
# ---------------------------------------------------------------------------


class _Functions(_Source):
    """Plain functions, with the `@codemode.tool` signature machinery."""

    def __init__(self, functions: list[Callable[..., Any]]) -> None:
        for fn in functions:
            if not callable(fn):
                raise TypeError(f"ToolsetConnector tools must be functions, not {type(fn).__name__}: {fn!r}.")
        self.methods = [fn if isinstance(fn, ToolMethod) else _plain(fn) for fn in functions]
        for method in self.methods:
            method.signature  # noqa: B018 - a type that cannot be described fails here, at construction

    async def load(self, namespace: str) -> tuple[list[_Candidate], str | None]:
        candidates = []
        for method in self.methods:
            adapter = method.signature.adapter

            def check(args: dict[str, Any], adapter: pydantic.TypeAdapter[Any] = adapter) -> dict[str, Any]:
                # Checked apart from the call, so a ValidationError the function itself raises is never
                # mistaken for a bad argument.
                adapter.validate_python(dict(args))
                return args

            candidates.append(_Candidate(method.name, method.spec(), check))
        return candidates, None


def _plain(fn: Callable[..., Any]) -> ToolMethod:
    """An undecorated function: what a bare `@codemode.tool` would make of it."""
    if not hasattr(fn, "__name__"):
        raise TypeError(f"ToolsetConnector tools must be functions; {fn!r} has no name. Wrap it in a def.")
    return ToolMethod(fn, name=None, description=None, requires_approval=False, replay="log")


# ---------------------------------------------------------------------------
# Pydantic AI
# ---------------------------------------------------------------------------


class _PydanticAi(_Source):
    """A Pydantic AI toolset, called through the toolset's own `call_tool`.

    What a tool taking `RunContext` sees: `deps` (the constructor's), `agent` (when an
    agent was given), `run_id` (the codemode execution id), `tool_name`,
    `tool_call_id` (`<execution id>-<random>`), `tool_call_approved` (True for gated
    tools, which only run once approved), an empty `usage`, no messages, and a
    `model` that refuses requests: no model takes part in a codemode call.
    """

    def __init__(self, toolset_or_tools: Any, deps: Any) -> None:
        from pydantic_ai import Agent
        from pydantic_ai.toolsets import AbstractToolset, CombinedToolset, FunctionToolset

        self.agent: Any = None
        self.excluded: list[_Candidate] = []
        if isinstance(toolset_or_tools, AbstractToolset):
            root: Any = toolset_or_tools
        elif isinstance(toolset_or_tools, Agent):
            self.agent = toolset_or_tools
            root = CombinedToolset(list(toolset_or_tools.toolsets))
        elif isinstance(toolset_or_tools, Iterable) and not isinstance(toolset_or_tools, (str, bytes, Mapping)):
            toolsets: list[Any] = []
            functions: list[Any] = []
            for item in toolset_or_tools:
                if isinstance(item, AbstractToolset):
                    toolsets.append(item)
                elif callable(item) or _is_pydantic_ai_tool(item):
                    functions.append(item)
                else:  # a native tool (web search, code execution, ...) runs at the model provider
                    label = str(getattr(item, "kind", None) or getattr(item, "name", None) or type(item).__name__)
                    self.excluded.append(_Candidate(label, why="runs at the model provider, not on the host"))
            root = CombinedToolset([FunctionToolset(functions), *toolsets]) if functions else CombinedToolset(toolsets)
        else:
            raise TypeError(
                "from_pydantic_ai takes a toolset, an Agent, or a list of toolsets, Tools and functions, "
                f"not {type(toolset_or_tools).__name__}."
            )
        self.root = root
        self.deps = deps

    def _context(self) -> Any:
        from pydantic_ai import RunContext
        from pydantic_ai.messages import ModelMessage, ModelResponse
        from pydantic_ai.models.function import AgentInfo, FunctionModel
        from pydantic_ai.usage import RunUsage

        def no_model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
            raise RuntimeError("A tool run by codemode has no model to call: no model takes part in a codemode call.")

        return RunContext(
            deps=self.deps, model=FunctionModel(no_model, model_name="codemode"), usage=RunUsage(), agent=self.agent
        )

    async def load(self, namespace: str) -> tuple[list[_Candidate], str | None]:
        ctx = self._context()
        toolset = await self.root.for_run(ctx)
        listed = await toolset.get_tools(ctx)
        gated = await _approval_gated(toolset, ctx)
        candidates = list(self.excluded)
        for name, tool in listed.items():
            tool_def = tool.tool_def
            if tool_def.kind == "external":
                candidates.append(_Candidate(name, why="external: its result comes from outside the agent run"))
                continue
            if tool_def.kind == "output":
                candidates.append(_Candidate(name, why="an output tool ends an agent run; it is not an action"))
                continue
            approval = tool_def.kind == "unapproved" or name in gated
            label = _label_of(namespace, name)
            spec = ToolSpec(
                execute=_PydanticAiCall(toolset, ctx, name, tool, approval, label),
                description=tool_def.description or "",
                input_schema=tool_def.parameters_json_schema or _EMPTY_OBJECT,
                output_schema=tool_def.return_schema,
                requires_approval=approval,
            )
            candidates.append(_Candidate(name, spec, _pydantic_ai_check(tool, ctx)))
        return candidates, _instruction_text(await toolset.get_instructions(ctx))


def _is_pydantic_ai_tool(item: Any) -> bool:
    from pydantic_ai import Tool

    return isinstance(item, Tool)


def _pydantic_ai_check(tool: Any, ctx: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The framework's own argument validator: it also coerces, as in an agent run."""

    def check(args: dict[str, Any]) -> dict[str, Any]:
        return dict(tool.args_validator.validate_python(args, context=ctx.validation_context))

    return check


async def _approval_gated(toolset: Any, ctx: Any) -> set[str]:
    """Names (as `toolset` lists them) of tools under an `approval_required()` wrapper.

    Its function decides per call, which cannot be known before the call, so every
    tool it wraps always requires approval here.
    """
    from pydantic_ai.toolsets import (
        ApprovalRequiredToolset,
        CombinedToolset,
        PrefixedToolset,
        RenamedToolset,
        WrapperToolset,
    )

    if isinstance(toolset, ApprovalRequiredToolset):
        return set(await toolset.get_tools(ctx))
    if isinstance(toolset, CombinedToolset):
        gated: set[str] = set()
        for child in toolset.toolsets:
            gated |= await _approval_gated(child, ctx)
        return gated
    if isinstance(toolset, WrapperToolset):
        inner = await _approval_gated(toolset.wrapped, ctx)
        if not inner:
            return set()
        if isinstance(toolset, PrefixedToolset):
            inner = {f"{toolset.prefix}_{n}" for n in inner}
        elif isinstance(toolset, RenamedToolset):
            renamed = {original: new for new, original in toolset.name_map.items()}
            inner = {renamed.get(n, n) for n in inner}
        return inner & set(await toolset.get_tools(ctx))
    return set()


def _instruction_text(parts: Any) -> str | None:
    """A toolset's instructions (a string, parts, or a list of either) as one text."""
    if parts is None:
        return None
    items = parts if isinstance(parts, Sequence) and not isinstance(parts, str) else [parts]
    texts = [item if isinstance(item, str) else str(getattr(item, "content", "")) for item in items]
    return "\n\n".join(t.strip() for t in texts if t and t.strip()) or None


@dataclass(frozen=True)
class _PydanticAiCall:
    """One Pydantic AI tool, called as an agent run would call it after validation."""

    toolset: Any
    ctx: Any
    name: str
    tool: Any
    approved: bool
    label: str

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        from pydantic_ai import ApprovalRequired, CallDeferred, ModelRetry, ToolReturn

        run_ctx = dataclasses.replace(
            self.ctx,
            run_id=ctx.execution_id,
            tool_name=self.name,
            tool_call_id=_call_id(ctx),
            tool_call_approved=self.approved,
            max_retries=self.tool.max_retries,
        )
        if self.tool.args_validator_func is not None:
            try:
                await maybe_await(self.tool.args_validator_func(run_ctx, **args))
            except ModelRetry as exc:
                raise ToolArgumentsError(_invalid(self.label, exc.message)) from None
        try:
            result = await self.toolset.call_tool(self.name, args, run_ctx, self.tool)
        except ModelRetry as exc:
            raise ValueError(f"{self.label}: {exc.message}") from None
        except ApprovalRequired:
            raise PermissionError(
                f"{self.label} asked for approval while running, which codemode cannot grant mid-call; it did not "
                "complete. Tell the user: the tool must be marked as requiring approval to be usable here."
            ) from None
        except CallDeferred:
            raise RuntimeError(
                f"{self.label} deferred its call to outside the agent run, which codemode cannot wait for; it did "
                "not complete. Do not retry it."
            ) from None
        return result.return_value if isinstance(result, ToolReturn) else result


# ---------------------------------------------------------------------------
# LangChain
# ---------------------------------------------------------------------------


class _LangChain(_Source):
    """LangChain tools, called with `ainvoke`.

    A tool taking a `RunnableConfig` sees `metadata["codemode_execution_id"]`. The
    tool's raw return value reaches the program (it is not wrapped in a message).
    """

    def __init__(self, tools: list[Any]) -> None:
        self.items = tools

    async def load(self, namespace: str) -> tuple[list[_Candidate], str | None]:
        from langchain_core.tools import BaseTool
        from langchain_core.utils.function_calling import convert_to_openai_tool

        candidates = []
        for item in self.items:
            if not isinstance(item, BaseTool):
                candidates.append(_Candidate(_schema_name(item), why="a tool schema without a function to run"))
                continue
            published = convert_to_openai_tool(item)["function"]
            schema = published.get("parameters") or _EMPTY_OBJECT
            spec = ToolSpec(
                execute=_LangChainCall(item),
                description=published.get("description") or item.description or "",
                input_schema=schema,
            )
            candidates.append(_Candidate(item.name, spec, _schema_check(schema)))
        return candidates, None


def _schema_name(item: Any) -> str:
    """The name a schema-only tool (a dict or a class) goes by, for the exclusion warning."""
    if isinstance(item, Mapping):
        function = item.get("function")
        named = function.get("name") if isinstance(function, Mapping) else None
        return str(named or item.get("name") or item.get("type") or "unnamed")
    return str(getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__)


@dataclass(frozen=True)
class _LangChainCall:
    tool: Any

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        return await self.tool.ainvoke(args, config={"metadata": {"codemode_execution_id": ctx.execution_id}})


# ---------------------------------------------------------------------------
# OpenAI Agents SDK
# ---------------------------------------------------------------------------


class _OpenAiAgents(_Source):
    """OpenAI Agents SDK function tools, called with their `on_invoke_tool`.

    The tool context a tool sees: `context` (the constructor's), `tool_name`,
    `tool_call_id` (`<execution id>-<random>`), `tool_arguments` (the JSON string),
    an empty `usage`, no agent and no run config. Guardrails and timeouts belong to
    the SDK's Runner and do not run; a failure is handled by the tool's
    `failure_error_function`, as in a run (by default the program receives the SDK's
    error text; `function_tool(failure_error_function=None)` makes failures raise).
    """

    def __init__(self, tools: Any, context: Any) -> None:
        from agents import Agent

        self.items: list[Any] = list(tools.tools if isinstance(tools, Agent) else tools)
        self.context = context

    async def load(self, namespace: str) -> tuple[list[_Candidate], str | None]:
        from agents import FunctionTool

        candidates = []
        for item in self.items:
            if not isinstance(item, FunctionTool):
                name = str(getattr(item, "name", None) or type(item).__name__)
                candidates.append(_Candidate(name, why="a hosted tool: it runs at OpenAI, not on the host"))
                continue
            if item.is_enabled is False:
                candidates.append(_Candidate(item.name, why="disabled (is_enabled=False)"))
                continue
            schema = item.params_json_schema or _EMPTY_OBJECT
            spec = ToolSpec(
                execute=_OpenAiAgentsCall(item, self.context),
                description=item.description or "",
                input_schema=schema,
                output_schema=item.output_json_schema,
                # A function decides per call, which cannot be known before the call: always ask.
                requires_approval=bool(item.needs_approval),
            )
            candidates.append(_Candidate(item.name, spec, _schema_check(schema)))
        return candidates, None


@dataclass(frozen=True)
class _OpenAiAgentsCall:
    tool: Any
    context: Any

    async def __call__(self, args: dict[str, Any], ctx: ToolContext) -> Any:
        from agents.tool_context import ToolContext as AgentsToolContext

        arguments = json.dumps(args)
        tool_ctx = AgentsToolContext(
            context=self.context, tool_name=self.tool.name, tool_call_id=_call_id(ctx), tool_arguments=arguments
        )
        return await self.tool.on_invoke_tool(tool_ctx, arguments)
