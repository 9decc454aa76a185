"""What the model reads when a program fails: the sandbox's own message, then one line of advice that fits it.

Every case runs a real program on the real Monty or Deno sandbox, and checks that the next run still works.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

import codemode
from codemode import Runtime
from codemode.sandbox.monty import MODULES

from conftest import Items, RuntimeFactory, new_executor


async def failing(runtime: Runtime, code: str) -> tuple[str, str]:
    """The error's own text and its one hint line; the run after it still works."""
    outcome = await runtime.execute(code)
    assert outcome.status == "error", outcome.result
    error = outcome.error or ""
    message, _, hint = error.rpartition("\n")
    assert hint.startswith("(") and hint.endswith(")"), error
    assert "\n(" not in message, f"more than one hint line: {error}"
    after = await runtime.execute("await items.list_items()")
    assert after.status == "completed", after.error
    return message, hint


@pytest.fixture(params=["python", "javascript"])
def language(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def quick(make_runtime: RuntimeFactory, items: Items, language: str) -> AsyncIterator[Runtime]:
    """A runtime whose sandbox has a one-second limit."""
    executor = new_executor(language, timeout=1)
    yield make_runtime(items, executor=executor)
    await executor.aclose()


# -- both sandboxes -----------------------------------------------------------------


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_an_endless_loop_names_the_limit_and_what_to_do(quick: Runtime, language: str) -> None:
    code = "while True:\n    pass" if language == "python" else "while (true) {}"
    message, hint = await failing(quick, code)
    assert message == "Execution timed out: the program ran longer than the 1 s limit."
    assert "make sure every loop ends" in hint and "fewer calls" in hint and "several runs" in hint


# -- Python (Monty) -----------------------------------------------------------------


@pytest.mark.parametrize("language", ["python"])
async def test_asyncio_must_be_imported_and_the_description_says_so(runtime: Runtime) -> None:
    message, hint = await failing(runtime, "await asyncio.gather(items.list_items(), items.list_items())")
    assert "NameError: name 'asyncio' is not defined" in message
    assert hint == "(modules are not preloaded: `import asyncio` first; the only globals are items, codemode)"
    imported = await runtime.execute("import asyncio\nawait asyncio.gather(items.list_items(), items.list_items())")
    assert imported.status == "completed" and imported.result == [[], []]
    description = codemode.CodeTool(runtime).description
    assert "no module is preloaded" in description
    assert "`import asyncio`, then `await asyncio.gather(...)`" in description


@pytest.mark.parametrize("language", ["python"])
async def test_the_module_list_is_what_monty_imports(runtime: Runtime) -> None:
    """The hint and the description name exactly the modules `import` finds."""
    for module in MODULES:
        outcome = await runtime.execute(f"import {module}\n1")
        assert outcome.status == "completed", f"{module}: {outcome.error}"
    for module in ("contextlib", "logging", "subprocess", "socket", "enum", "requests"):
        message, hint = await failing(runtime, f"import {module}")
        assert f"ModuleNotFoundError: No module named '{module}'" in message
        assert hint.startswith("(the sandbox's only modules are asyncio, base64,")
        assert "no third-party packages" in hint
    assert ", ".join(MODULES) in codemode.CodeTool(runtime).description


PY_NO_AWAIT = {
    "subscript": (
        "r = items.list_items()\nr[0]",
        "TypeError: 'coroutine' object is not subscriptable",
        "r = await items.list_items",
    ),
    "attribute": (
        'found = codemode.search("items")\nfound.get("results")',
        "AttributeError: 'coroutine' object has no attribute 'get'",
        "found = await codemode.search",
    ),
    "iteration": (
        "for item in items.list_items():\n    pass",
        "'coroutine' object is not iterable",
        "`await items.list_items(...)`",
    ),
    "gather": (
        "import asyncio\nboth = asyncio.gather(items.list_items(), items.list_items())\nboth[0]",
        "TypeError: 'coroutine' object is not subscriptable",
        "`both = await asyncio.gather(...)`",
    ),
    "len": ("len(codemode.search('items'))", "object of type 'coroutine' has no len()", "`await codemode.search(...)`"),
}


@pytest.mark.parametrize("language", ["python"])
@pytest.mark.parametrize(("code", "error", "fix"), PY_NO_AWAIT.values(), ids=PY_NO_AWAIT.keys())
async def test_a_forgotten_await_in_python(runtime: Runtime, code: str, error: str, fix: str) -> None:
    message, hint = await failing(runtime, code)
    assert error in message
    assert hint.startswith("(connector and codemode methods are async: `await` each call") and fix in hint


PY_NO_FILES = {
    "open": ('open("/etc/passwd").read()', "PermissionError: Permission denied: '/etc/passwd'"),
    "write a file": ('with open("notes.txt", "w") as f:\n    f.write("x")', "PermissionError: Permission denied"),
    "os.listdir": ('import os\nos.listdir(".")', "PermissionError: Permission denied: '/'"),
    "pathlib": ('from pathlib import Path\nPath("data.json").read_text()', "PermissionError: Permission denied"),
    "os.environ": ('import os\nos.environ["HOME"]', "'os.environ' is not supported in this environment"),
}


@pytest.mark.parametrize("language", ["python"])
@pytest.mark.parametrize(("code", "error"), PY_NO_FILES.values(), ids=PY_NO_FILES.keys())
async def test_file_and_environment_access_in_python(runtime: Runtime, code: str, error: str) -> None:
    message, hint = await failing(runtime, code)
    assert error in message
    assert hint.startswith("(the sandbox has no file system, environment or network:")
    assert "connector methods" in hint


@pytest.mark.parametrize("language", ["python"])
async def test_a_rejection_or_a_programs_own_permission_error_gets_no_file_hint(runtime: Runtime) -> None:
    outcome = await runtime.execute('raise PermissionError("not allowed")')
    assert outcome.status == "error"
    assert outcome.error == 'PermissionError: not allowed\n  at line 1: raise PermissionError("not allowed")'


JS_IN_PYTHON = {
    "const": "const found = await items.list_items();\nreturn found;",
    "arrow function": "async () => { return await items.list_items(); }",
    "console.log": 'console.log("hi")',
}


@pytest.mark.parametrize("language", ["python"])
@pytest.mark.parametrize("code", JS_IN_PYTHON.values(), ids=JS_IN_PYTHON.keys())
async def test_javascript_sent_to_the_python_sandbox(runtime: Runtime, code: str) -> None:
    message, hint = await failing(runtime, code)
    assert "SyntaxError" in message or "NameError: name 'console' is not defined" in message
    assert hint.startswith("(this sandbox runs Python, not JavaScript:") and "asyncio.gather" in hint


@pytest.mark.parametrize("language", ["python", "javascript"])
async def test_a_plain_undefined_name_keeps_the_globals_hint(runtime: Runtime, language: str) -> None:
    """A string that merely mentions the other language does not make the program that language."""
    code = (
        'note = "null => None"\nmissing_name' if language == "python" else 'const note = "print(None)";\nmissingName;'
    )
    message, hint = await failing(runtime, code)
    assert "is not defined" in message
    assert hint == "(the only globals available in the sandbox are: items, codemode)"


# -- JavaScript (Deno) --------------------------------------------------------------

JS_NO_NETWORK = {
    "fetch": (
        'await fetch("https://example.com/")',
        'NotCapable: Requires net access to "example.com:443"',
        "network access",
    ),
    "file URL": (
        'await fetch("file:///etc/passwd")',
        'NotCapable: Requires read access to "/etc/passwd"',
        "file system",
    ),
}


@pytest.mark.parametrize("language", ["javascript"])
@pytest.mark.parametrize(("code", "error", "missing"), JS_NO_NETWORK.values(), ids=JS_NO_NETWORK.keys())
async def test_fetch_says_there_is_no_network_not_to_rerun_with_a_flag(
    runtime: Runtime, code: str, error: str, missing: str
) -> None:
    message, hint = await failing(runtime, code)
    assert message.splitlines()[0] == error
    assert "--allow" not in message + hint and "run again" not in message
    assert hint.startswith(f"(the sandbox has no {missing}, and none can be granted:")
    assert "connector methods" in hint and "codemode.search" in hint


JS_NO_AWAIT = {
    "index": (
        "const r = items.list_items();\nreturn r[0].id;",
        "Cannot read properties of undefined",
        "r",
        "items.list_items",
    ),
    "property": (
        'const found = codemode.search("items");\nreturn found.results[0];',
        "Cannot read properties of undefined",
        "found",
        "codemode.search",
    ),
    "method": (
        "const r = items.list_items();\nreturn r.map((x) => x);",
        "r.map is not a function",
        "r",
        "items.list_items",
    ),
}


@pytest.mark.parametrize("language", ["javascript"])
async def test_an_unrelated_error_gets_no_await_hint(runtime: Runtime) -> None:
    """A call kept unawaited on purpose (awaited later) is not blamed for an error on another value."""
    outcome = await runtime.execute("const later = items.list_items();\nconst row = {};\nrow.id.x;\nawait later;")
    assert outcome.status == "error"
    assert (outcome.error or "").splitlines()[-1] == "  at line 3: row.id.x;"


@pytest.mark.parametrize("language", ["python"])
async def test_the_await_hint_names_the_value_the_failing_line_uses(runtime: Runtime) -> None:
    code = 'later = items.list_items()\nfound = codemode.search("x")\nfound["results"]\nawait later'
    message, hint = await failing(runtime, code)
    assert "'coroutine' object is not subscriptable" in message
    assert hint.endswith("e.g. `found = await codemode.search(...)`)")


@pytest.mark.parametrize("language", ["javascript"])
async def test_a_promise_used_as_a_value_in_place(runtime: Runtime) -> None:
    message, hint = await failing(runtime, "for (const item of items.list_items()) {\n  console.log(item);\n}")
    assert message.startswith("TypeError: ") and "is not iterable" in message
    assert hint == (
        "(`items.list_items(...)` returns a Promise: connector and codemode methods are async, write "
        "`await items.list_items(...)`)"
    )


@pytest.mark.parametrize("language", ["javascript"])
@pytest.mark.parametrize(("code", "error", "name", "call"), JS_NO_AWAIT.values(), ids=JS_NO_AWAIT.keys())
async def test_a_promise_used_as_a_value(runtime: Runtime, code: str, error: str, name: str, call: str) -> None:
    message, hint = await failing(runtime, code)
    assert message.startswith(f"TypeError: {error}")
    assert hint == (
        f"(`{name} = {call}(...)` has no `await`, so `{name}` is a Promise: connector and codemode methods are "
        f"async, write `const {name} = await {call}(...)`)"
    )


PYTHON_IN_JS = {
    "def": "def count():\n    return 1\ncount()",
    "for loop": "for item in [1, 2]:\n    print(item)",
    "print": 'print("hi")',
    "None": "found = None\nfound",
    "import": "import json\njson.dumps({})",
}


@pytest.mark.parametrize("language", ["javascript"])
@pytest.mark.parametrize("code", PYTHON_IN_JS.values(), ids=PYTHON_IN_JS.keys())
async def test_python_sent_to_the_javascript_sandbox(runtime: Runtime, code: str) -> None:
    message, hint = await failing(runtime, code)
    assert message.startswith(("SyntaxError: ", "ReferenceError: ")), message
    assert "blob:" not in message and "TypeError: SyntaxError" not in message
    assert hint.startswith("(this sandbox runs JavaScript, not Python:") and "Promise.all" in hint


@pytest.mark.parametrize("language", ["javascript"])
async def test_a_syntax_error_is_the_parsers_message_on_the_models_line(runtime: Runtime) -> None:
    outcome = await runtime.execute("const x = 1;\nconst y = ;\n")
    assert outcome.error == "SyntaxError: Expression expected\n  at line 2: const y = ;"


@pytest.mark.parametrize("language", ["javascript"])
async def test_an_undeclared_variable(runtime: Runtime) -> None:
    message, hint = await failing(runtime, "found = await items.list_items();\nreturn found;")
    assert message.startswith("ReferenceError: found is not defined")
    assert (
        hint == "(declare variables before use: `const found = ...` or `let found = ...` (programs run in strict mode))"
    )


@pytest.mark.parametrize("language", ["javascript"])
async def test_the_error_shows_the_line_as_the_model_wrote_it(runtime: Runtime) -> None:
    outcome = await runtime.execute("foo + 1")
    assert outcome.error is not None
    assert outcome.error.splitlines()[:2] == ["ReferenceError: foo is not defined", "  at line 1: foo + 1"]
