"""`CodeTool`: the single tool the model gets, and the description that teaches it the sandbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from codemode.runtime.outcome import Outcome

if TYPE_CHECKING:
    from codemode.runtime.runtime import Runtime

__all__ = ["CodeTool"]

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"code": {"type": "string", "description": "The Python program to run in the sandbox."}},
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
        self.input_schema = INPUT_SCHEMA
        self.description = description if description is not None else build_description(runtime, connector_hints)

    async def __call__(self, code: str) -> Outcome:
        return await self.runtime.execute(code)

    def parse_input(self, arguments: Any) -> str:
        """The `code` string from a framework's tool-call arguments, or a clear error."""
        if isinstance(arguments, dict) and isinstance(arguments.get("code"), str):
            code: str = arguments["code"]
            return code
        raise ValueError('Expected an object with a string "code" property.')


def build_description(runtime: Runtime, hints: dict[str, str] | None = None) -> str:
    """The default description: language, the only globals, the discovery workflow, pauses."""
    names = [c.name for c in runtime.connectors]
    example = names[0] if names else "connector"
    globals_list = ", ".join(f"`{n}`" for n in names)
    lines = [
        "Run a Python program in a sandbox with access to connector SDKs.",
        "",
        "## Workflow",
        '1. `matches = await codemode.search("short intent phrase")`',
        '2. `docs = await codemode.describe(matches["results"][0]["path"])` (Python stubs: TypedDicts and '
        "async signatures)",
        f"3. `result = await {example}.<method>(name=value)`",
        "",
        "## Rules",
        f"- The ONLY globals are {globals_list + ' and ' if names else ''}`codemode` (plus Python builtins and "
        "standard modules such as json, re, math, datetime, asyncio). There is no file system, network, "
        "environment or subprocess access: all I/O goes through connector methods.",
        "- Never guess method names. Unless they were used earlier in this conversation, discover them with "
        "`codemode.search(query)`, which ranks connector methods and saved snippets.",
        "- Connector methods are async: always `await` them, and pass keyword arguments (or one dict). Run "
        "independent calls concurrently with `asyncio.gather(...)`.",
        "- The program's result is the value of a top-level `return`, or of its last expression. `print()` output "
        "comes back as logs.",
        "- Wrap nondeterministic or side-effecting local work (random numbers, the current time) in "
        '`await codemode.step("name", fn)`: it runs once and is replayed on resume. All other code must be '
        "deterministic.",
        "- Some methods need human approval. Write the code as if the call returns normally: the run pauses there "
        "and resumes by itself once approved.",
        '- A result with `status: "paused"` means the run awaits approval. Tell the user what is pending and wait; '
        "do NOT run the code again.",
        "- The sandbox runs a subset of Python: no class inheritance, no generators (`yield`), no `del`, no "
        "third-party packages.",
        "",
        "## Snippets",
        '- `await codemode.run("name", input)` runs a saved snippet; snippets also appear in search results.',
        "- A program that may be saved as a snippet reads its parameters from the global `input`.",
        "",
        "## Available connectors",
    ]
    for connector in runtime.connectors:
        hint = (hints or {}).get(connector.name) or _first_line(connector.instructions)
        lines.append(f"- `{connector.name}`" + (f" — {hint}" if hint else ""))
    return "\n".join(lines)


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0].strip() if text and text.strip() else ""
