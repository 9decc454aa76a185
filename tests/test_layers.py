"""Every import inside the package points down the stack (imports inside functions included).

bottom      errors, records, codec, text, model_view, replay, truncate, crashpoints
parts       schema, connectors, sandbox, store, discovery (they may use each other and the bottom)
runtime     runtime/ (the Runtime, one pass, the tool the model gets)
surfaces    integrations/, cli/, server/ (built on the public API)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "codemode"
LAYERS = {
    "errors": 0,
    "records": 0,
    "codec": 0,
    "text": 0,
    "model_view": 0,
    "replay": 0,
    "truncate": 0,
    "crashpoints": 0,
    "schema": 1,
    "connectors": 1,
    "sandbox": 1,
    "store": 1,
    "discovery": 1,
    "runtime": 2,
    "integrations": 3,
    "cli": 3,
    "server": 3,
}


def part(module: str) -> str:
    """`codemode.store.sql` -> `store`; `codemode` itself (the public API) -> `__init__`."""
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "__init__"


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "codemode":
                found += [(node.lineno, f"codemode.{alias.name}") for alias in node.names]
            elif node.module.startswith("codemode."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("codemode.")]
    return found


def test_every_import_points_down_the_stack() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(relative.parts).removesuffix(".__init__")
        here = part(module)
        if here == "__init__":
            continue  # the public API re-exports from every layer
        assert here in LAYERS, f"{module} belongs to no layer: add it to LAYERS in this test"
        for line, target in imports(path):
            there = part(target)
            if there == "__init__" or (LAYERS.get(there, 99) > LAYERS[here] and there != here):
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {target}")
            if LAYERS[here] == 0 and LAYERS.get(there, 99) != 0:
                wrong.append(f"{path.relative_to(PACKAGE.parent)}:{line} (bottom layer) imports {target}")
    assert not wrong, "imports pointing up the stack:\n" + "\n".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from codemode.runtime.runtime import Runtime\n")
    assert imports(sample) == [(2, "codemode.runtime.runtime")]
    assert LAYERS[part("codemode.runtime.runtime")] > LAYERS[part("codemode.store.sql")]
