"""`CodeTool`: the single tool the model gets, and the description that teaches it the sandbox."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from codemode.records import Outcome
from codemode.sandbox.monty import MODULES

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["CodeTool"]


@dataclass(frozen=True)
class _Language:
    """What the description says differently for each sandbox language."""

    title: str
    code_hint: str
    describe_result: str
    call: str
    builtins: str
    parallel: str
    result: str
    step: str
    subset: str
    snippet_input: str
    rejected: str


PYTHON = _Language(
    title="Run a Python program in a sandbox with access to connector SDKs.",
    code_hint="The Python program to run in the sandbox.",
    describe_result="Python stubs: TypedDicts and async signatures",
    call="{ns}.<method>(name=value)",
    builtins="Python builtins; no module is preloaded, and `import` offers only " + ", ".join(MODULES),
    parallel="pass keyword arguments (or one dict). Run independent calls concurrently with `import asyncio`, "
    "then `await asyncio.gather(...)`",
    result="The program's result is the value of a top-level `return`, or of its last expression. `print()` "
    "output comes back as logs.",
    step='`await codemode.step("name", fn)`',
    subset="The sandbox runs a subset of Python: no class inheritance, no generators (`yield`), no `del`, no "
    "third-party packages.",
    snippet_input="reads its parameters from the global `input`",
    rejected="`PermissionError`",
)
JAVASCRIPT = _Language(
    title="Run a JavaScript program in a sandbox with access to connector SDKs (TypeScript annotations are "
    "accepted and ignored).",
    code_hint="The JavaScript program to run in the sandbox: statements, or an async arrow function.",
    describe_result="TypeScript declarations",
    call="{ns}.<method>({{ name: value }})",
    builtins="standard JavaScript built-ins",
    parallel="pass one object of arguments. Run independent calls concurrently with `Promise.all([...])`",
    result="The program's result is the value of a `return` (or of the last expression). `console.log/warn/"
    "error` output comes back as logs.",
    step='`await codemode.step("name", () => ...)`',
    subset="There is no `import`, `require`, `fetch`, `eval`, `Deno` or `process`; everything comes from the "
    "globals above.",
    snippet_input="is written `async (input) => { ... }`",
    rejected="an error named `PermissionError`",
)


def language_of(runtime: Runtime) -> _Language:
    return JAVASCRIPT if runtime.executor.language == "javascript" else PYTHON


def input_schema(language: _Language) -> dict[str, Any]:
    """`{"code": string}`, required, nothing else."""
    return {
        "type": "object",
        "properties": {"code": {"type": "string", "description": language.code_hint}},
        "required": ["code"],
        "additionalProperties": False,
    }


class CodeTool:
    """`codemode(code)`: name, description and input schema for any agent framework, and the call itself."""

    name = "codemode"

    def __init__(
        self, runtime: Runtime, *, description: str | None = None, connector_hints: dict[str, str] | None = None
    ) -> None:
        self.runtime = runtime
        self.input_schema = input_schema(language_of(runtime))
        self.description = description if description is not None else build_description(runtime, connector_hints)

    async def __call__(self, code: str) -> Outcome:
        return await self.runtime.execute(code)

    def to_openai(self, api: str = "chat") -> dict[str, Any]:
        """The tool definition for OpenAI: Chat Completions (`api="chat"`) or the Responses API (`"responses"`)."""
        if api == "responses":
            return {
                "type": "function",
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema,
                "strict": True,
            }
        if api != "chat":
            raise ValueError('api must be "chat" (Chat Completions) or "responses" (the Responses API).')
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.input_schema,
                "strict": True,
            },
        }

    def to_anthropic(self) -> dict[str, Any]:
        """The tool definition for the Anthropic Messages API."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}

    async def handle(self, tool_call: Any) -> str:
        """Run one tool call from a hand-written loop and return the tool-result content (a JSON string).

        Takes the SDK's object or its dict: an OpenAI Chat Completions tool call (`id`,
        `function.arguments`), a Responses API function call (`call_id`, `arguments`) or an Anthropic
        `tool_use` block (`id`, `input`). The call id is the `execute` key: handling the same call again
        returns that run's current outcome instead of starting another."""
        import json

        call_id, arguments = _call_parts(tool_call)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                arguments = None
        try:
            code = self.parse_input(arguments)
        except ValueError as exc:
            return json.dumps({"status": "error", "error": str(exc)})
        outcome = await self.runtime.execute(code, key=call_id)
        return json.dumps(outcome.to_model_output())

    def parse_input(self, arguments: Any) -> str:
        """The `code` string from a framework's tool-call arguments, or a clear error."""
        if isinstance(arguments, dict) and isinstance(arguments.get("code"), str):
            code: str = arguments["code"]
            return code
        raise ValueError('Expected an object with a string "code" property.')


def _call_parts(tool_call: Any) -> tuple[str | None, Any]:
    """The call id and the arguments of an OpenAI or Anthropic tool call, object or dict."""

    def get(obj: Any, name: str) -> Any:
        return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)

    function = get(tool_call, "function")
    if function is not None:  # Chat Completions: {"id", "type": "function", "function": {"name", "arguments"}}
        return get(tool_call, "id"), get(function, "arguments")
    if get(tool_call, "type") == "tool_use":  # Anthropic: {"type": "tool_use", "id", "name", "input"}
        return get(tool_call, "id"), get(tool_call, "input")
    # Responses API: {"type": "function_call", "call_id", "name", "arguments"}
    return get(tool_call, "call_id") or get(tool_call, "id"), get(tool_call, "arguments")


def build_description(runtime: Runtime, hints: dict[str, str] | None = None) -> str:
    """The default description: language, the only globals, the discovery workflow, pauses."""
    lang = language_of(runtime)
    names = [c.name for c in runtime.connectors]
    example = names[0] if names else "connector"
    globals_list = ", ".join(f"`{n}`" for n in names)
    lines = [
        lang.title,
        "",
        "## Workflow",
        '1. `const matches = await codemode.search("short intent phrase")`'
        if lang is JAVASCRIPT
        else '1. `matches = await codemode.search("short intent phrase")`',
        "2. `const docs = await codemode.describe(matches.results[0].path)`"
        if lang is JAVASCRIPT
        else '2. `docs = await codemode.describe(matches["results"][0]["path"])`',
        f"   ({lang.describe_result})",
        f"3. `await {lang.call.format(ns=example)}`",
        "",
        "## Rules",
        f"- The ONLY globals are {globals_list + ' and ' if names else ''}`codemode` (plus {lang.builtins}). "
        "There is no file system, network, environment or subprocess access: all I/O goes through connector "
        "methods.",
        "- Never guess method names. Unless they were used earlier in this conversation, discover them with "
        "`codemode.search(query)`, which ranks connector methods and saved snippets.",
        f"- Connector methods are async: always `await` them, and {lang.parallel}.",
        f"- {lang.result}",
        f"- Wrap nondeterministic or side-effecting local work (random numbers, the current time) in {lang.step}: "
        "it runs once and is replayed on resume. A step's function must not call connector methods or other "
        "steps. All other code must be deterministic.",
        "- Some methods need human approval. Write the code as if the call returns normally: the run pauses there "
        "and resumes by itself once approved (calls started together are approved together). A human may reject "
        f"a call instead: it then raises {lang.rejected}, which the program may catch.",
        '- A result with `status: "paused"` means the run awaits approval. Tell the user what is pending and wait; '
        "do NOT run the code again.",
        f"- {lang.subset}",
        "",
        "## Snippets",
        '- `await codemode.run("name", input)` runs a saved snippet; snippets also appear in search results.',
        f"- A program that may be saved as a snippet {lang.snippet_input}.",
        "",
        "## Available connectors",
    ]
    for connector in runtime.connectors:
        hint = (hints or {}).get(connector.name) or _first_line(connector.instructions)
        lines.append(f"- `{connector.name}`" + (f" — {hint}" if hint else ""))
    return "\n".join(lines)


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0].strip() if text and text.strip() else ""
