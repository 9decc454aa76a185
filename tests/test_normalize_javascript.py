"""JavaScript/TypeScript normalization: Cloudflare's `normalizeCode` output, byte for byte.

The numbered cases follow the 38 tests of Cloudflare's `normalize.test.ts` (spec §9.7); each expected string is
derived from the rules of spec §2.2 and is checked exactly, even where Cloudflare's test only checks a part.
"""

from __future__ import annotations

import sys

import pytest

pytest.importorskip("tree_sitter_typescript", reason="install codemode[js]")

from codemode.sandbox import normalize
from codemode.sandbox.normalize import find_imports, normalize_javascript, normalize_python

FENCE = "```"


def wrapped(body: str) -> str:
    return f"async () => {{\n{body}\n}}"


SPEC_CASES: list[tuple[str, str, str]] = [
    # Empty input.
    ("01 empty string", "", "async () => {}"),
    ("02 whitespace only", "  \n\t \n ", "async () => {}"),
    # Arrow functions pass through unchanged.
    ("03 async arrow", "async () => { const r = await api.list(); return r; }", "=SAME"),
    ("04 sync arrow", "() => { return [1, 2, 3]; }", "=SAME"),
    ("05 arrow with parameters", "async (input, options) => { return input.id; }", "=SAME"),
    ("06 concise-body arrow", "() => 7 * 6", "=SAME"),
    ("07 arrow with trailing semicolon", "async () => { return 'done'; };", "=SAME"),
    # A trailing expression becomes the return value.
    ("08 single expression", "1 + 2", "async () => {\nreturn (1 + 2)\n}"),
    ("09 statements then expression", "const x = 21;\nx * 2", "async () => {\nconst x = 21;\nreturn (x * 2)\n}"),
    ("10 call expression", 'console.log("hello")', 'async () => {\nreturn (console.log("hello"))\n}'),
    (
        "11 await expression",
        "await fetch('https://example.com/data.json')",
        "async () => {\nreturn (await fetch('https://example.com/data.json'))\n}",
    ),
    # A last statement that is not an expression is wrapped as it is.
    ("12 const declaration", "const answer = 42", "async () => {\nconst answer = 42\n}"),
    ("13 for loop", "for (let i = 0; i < 3; i++) { total += i; }", "=WRAP"),
    ("14 if statement", "if (ready) { start(); }", "=WRAP"),
    ("15 several declarations", "const a = 1;\nlet b = 2;\nvar c = 3;", "=WRAP"),
    # Code that does not parse is wrapped as it is.
    ("16 invalid code", "let = nope ((( }", "=WRAP"),
    # Surrounding whitespace is trimmed first.
    ("17 trimmed", "  () => 42  ", "() => 42"),
    # A fence around the whole program is stripped.
    ("18 js fence", f"{FENCE}js\nasync () => {{ return 1; }}\n{FENCE}", "async () => { return 1; }"),
    (
        "19 javascript fence",
        f"{FENCE}javascript\nconst x = 1;\nx + 2\n{FENCE}",
        "async () => {\nconst x = 1;\nreturn (x + 2)\n}",
    ),
    ("20 typescript fence", f"{FENCE}typescript\n() => 42\n{FENCE}", "() => 42"),
    ("21 ts fence", f"{FENCE}ts\n() => 42\n{FENCE}", "() => 42"),
    ("22 tsx fence", f"{FENCE}tsx\n() => 42\n{FENCE}", "() => 42"),
    ("23 jsx fence", f"{FENCE}jsx\n() => 42\n{FENCE}", "() => 42"),
    ("24 bare fence", f"{FENCE}\nasync () => {{ return 1; }}\n{FENCE}", "async () => { return 1; }"),
    (
        "25 trailing whitespace after fence",
        f"{FENCE}js\nasync () => {{ return 1; }}\n{FENCE}  \n ",
        "async () => { return 1; }",
    ),
    (
        "26 unclosed fence",
        f"{FENCE}js\nasync () => {{ return 1; }}",
        f"async () => {{\n{FENCE}js\nasync () => {{ return 1; }}\n}}",
    ),
    # `export default` is unwrapped.
    ("27 export default async arrow", "export default async () => { return 1; }", "async () => { return 1; }"),
    ("28 export default sync arrow", "export default () => { return 1; }", "() => { return 1; }"),
    ("29 export default expression", "export default 42", "async () => {\nreturn (42)\n}"),
    (
        "30 export default anonymous function",
        "export default function() { return 42; }",
        "async () => {\nreturn (function() { return 42; })();\n}",
    ),
    (
        "31 export default anonymous class",
        "export default class { constructor() {} }",
        "async () => {\nreturn (class { constructor() {} });\n}",
    ),
    # A lone named function is called.
    (
        "32 async named function",
        "async function doStuff() { return 42; }",
        "async () => {\nasync function doStuff() { return 42; }\nreturn doStuff();\n}",
    ),
    (
        "33 sync named function",
        "function compute() { return 1 + 2; }",
        "async () => {\nfunction compute() { return 1 + 2; }\nreturn compute();\n}",
    ),
    (
        "34 function then a call",
        "function helper() { return 1; }\nhelper()",
        "async () => {\nfunction helper() { return 1; }\nreturn (helper())\n}",
    ),
    # An immediately invoked function is returned like any expression.
    (
        "35 IIFE",
        "(async () => { return 42; })()",
        "async () => {\nreturn ((async () => { return 42; })())\n}",
    ),
    # A top-level return: acorn rejects it in a module, so it is wrapped as it is.
    ("36 top-level return", "return 42", "async () => {\nreturn 42\n}"),
    # Several quirks at once.
    (
        "37 fence, export default, arrow",
        f"{FENCE}js\nexport default async () => {{ return 1; }}\n{FENCE}",
        "async () => { return 1; }",
    ),
    (
        "38 fence and named function",
        f"{FENCE}js\nasync function run() {{ return await codemode.search({{ q: 'x' }}); }}\n{FENCE}",
        "async () => {\nasync function run() { return await codemode.search({ q: 'x' }); }\nreturn run();\n}",
    ),
]


def _expected(source: str, expected: str) -> str:
    if expected == "=SAME":
        return source
    if expected == "=WRAP":
        return wrapped(source)
    return expected


def test_all_38_spec_cases_are_listed() -> None:
    assert [int(name[:2]) for name, _, _ in SPEC_CASES] == list(range(1, 39))


@pytest.mark.parametrize(("source", "expected"), [c[1:] for c in SPEC_CASES], ids=[c[0] for c in SPEC_CASES])
def test_spec_case(source: str, expected: str) -> None:
    assert normalize_javascript(source) == _expected(source, expected)


TYPESCRIPT_CASES = {
    "interface and typed function": (
        "interface Issue { id: number; title: string }\n"
        "function titles(issues: Issue[]): string[] { return issues.map((i) => i.title); }\n"
        "titles(await github.listIssues({ repo: 'x' }))",
        "async () => {\ninterface Issue { id: number; title: string }\n"
        "function titles(issues: Issue[]): string[] { return issues.map((i) => i.title); }\n"
        "return (titles(await github.listIssues({ repo: 'x' })))\n}",
    ),
    "type alias and typed arrow": (
        "type Pair = [string, number];\nconst swap = ([a, b]: Pair): [number, string] => [b, a];\nswap(['a', 1]);",
        "async () => {\ntype Pair = [string, number];\nconst swap = ([a, b]: Pair): [number, string] => [b, a];\n"
        "return (swap(['a', 1]))\n}",
    ),
    "generics": (
        "function first<T>(items: T[]): T | undefined { return items[0]; }\nfirst<number>([3, 4])",
        "async () => {\nfunction first<T>(items: T[]): T | undefined { return items[0]; }\n"
        "return (first<number>([3, 4]))\n}",
    ),
    "generic lone function is called": (
        "async function main<T = string>(): Promise<T[]> { return []; }",
        "async () => {\nasync function main<T = string>(): Promise<T[]> { return []; }\nreturn main();\n}",
    ),
    "typed arrow passes through": (
        "async (input: { id: string }): Promise<number> => input.id.length",
        "async (input: { id: string }): Promise<number> => input.id.length",
    ),
    "generic arrow passes through": ("<T,>(x: T): T => x", "<T,>(x: T): T => x"),
    "as and satisfies": (
        "const n = (await kv.get('n')) as number;\nn satisfies number",
        "async () => {\nconst n = (await kv.get('n')) as number;\nreturn (n satisfies number)\n}",
    ),
    "non-null assertion": (
        "const m = new Map<string, number>();\nm.get('a')!",
        "async () => {\nconst m = new Map<string, number>();\nreturn (m.get('a')!)\n}",
    ),
    "enum last": ("enum Color { Red, Green }", "=WRAP"),
    "interface only": ("interface A { x: number }", "=WRAP"),
}


@pytest.mark.parametrize(("source", "expected"), TYPESCRIPT_CASES.values(), ids=TYPESCRIPT_CASES.keys())
def test_typescript(source: str, expected: str) -> None:
    assert normalize_javascript(source) == _expected(source, expected)


NON_ASCII_CASES = {
    "accented and symbol": (
        'const s = "héllo ✓"; s.length',
        'async () => {\nconst s = "héllo ✓"; return (s.length)\n}',
    ),
    "astral identifiers and emoji": (
        "const 𝒳 = '😀😀'; // ünïcödé\n𝒳 + 'é'",
        "async () => {\nconst 𝒳 = '😀😀'; // ünïcödé\nreturn (𝒳 + 'é')\n}",
    ),
    "multi-byte before the export": ("// ✓ done\nexport default 'ж'", "async () => {\nreturn ('ж')\n}"),
    "CJK in a lone function": (
        "function 問() { return '答え'; }",
        "async () => {\nfunction 問() { return '答え'; }\nreturn 問();\n}",
    ),
}


@pytest.mark.parametrize(("source", "expected"), NON_ASCII_CASES.values(), ids=NON_ASCII_CASES.keys())
def test_non_ascii_slices_on_character_boundaries(source: str, expected: str) -> None:
    assert normalize_javascript(source) == expected


# What acorn (module code, strict) does where tree-sitter alone would differ.
ACORN_PARITY_CASES = {
    # Acorn drops parentheses from an expression's range.
    "parenthesized arrow passes through": ("(() => 42);", "(() => 42);"),
    "parenthesized expression": ("((1 + 2));", "async () => {\nreturn (1 + 2)\n}"),
    "parenthesized sequence": ("(a, b)", "async () => {\nreturn (a, b)\n}"),
    # A return outside any function is a module parse error, so the code is wrapped as it is.
    "nested top-level return": ("if (done) return cached;\ncompute()", "=WRAP"),
    "return in a loop": ("for (const x of xs) { if (x) return x; }\nnull", "=WRAP"),
    "return inside functions is fine": (
        "const f = () => { return 1; };\nfunction g() { return 2; }\nconst o = { m() { return 3; } };\n"
        "f() + g() + o.m()",
        "async () => {\nconst f = () => { return 1; };\nfunction g() { return 2; }\nconst o = { m() { return 3; } };\n"
        "return (f() + g() + o.m())\n}",
    ),
    "return in a class static block": ("class A { static { return; } }\nA", "=WRAP"),
    # A statement cannot start with `function`/`class`: acorn reads a declaration and fails on these.
    "anonymous function statement": ("function() { return 1; }", "=WRAP"),
    "anonymous async function statement": ("async function() { return 1; }", "=WRAP"),
    "anonymous class statement": ("class { }", "=WRAP"),
    "member of a declaration": ("function f() {}.call(null)", "=WRAP"),
    "identifier starting with a keyword": ("functional(classes)", "async () => {\nreturn (functional(classes))\n}"),
    # A statement starting with `{` is a block to acorn, never a returned object.
    "object-looking block": ("{ a: 1 }", "=WRAP"),
    "parenthesized object is returned": ("({ a: 1 })", "async () => {\nreturn ({ a: 1 })\n}"),
    "with statement (strict mode)": ("with (o) { x }\nx", "=WRAP"),
    # Other module-mode (strict) errors that tree-sitter lets through.
    "yield outside a generator": ("yield 1", "=WRAP"),
    "yield in a generator is fine": (
        "function* g() { yield 1; }\n[...g()]",
        "async () => {\nfunction* g() { yield 1; }\nreturn ([...g()])\n}",
    ),
    "new.target outside a function": ("new.target", "=WRAP"),
    "super outside a method": ("super.x()", "=WRAP"),
    "private name outside a class": ("this.#secret", "=WRAP"),
    "legacy octal literal": ("010 + 1", "=WRAP"),
    "octal escape in a string": ('"\\101"', "=WRAP"),
    "octal-looking text elsewhere is fine": (
        "const s = '0.5 \\\\1'; /\\1/.test(s) + 0.01",
        "async () => {\nconst s = '0.5 \\\\1'; return (/\\1/.test(s) + 0.01)\n}",
    ),
    # Where acorn ends a statement and tree-sitter reads on, the statements are split as acorn splits them.
    "arrow body, then an array on the next line": (
        "const double = (x) => {\n  return x * 2\n}\n\n[1, 2].map(double)",
        "async () => {\nconst double = (x) => {\n  return x * 2\n}\n\nreturn ([1, 2].map(double))\n}",
    ),
    "arrow body, then parentheses on the next line": (
        "const f = async () => {}\n(await f())",
        "async () => {\nconst f = async () => {}\nreturn (await f())\n}",
    ),
    "arrow body, comment, then a template": (
        "const f = () => {} // noop\n`done`",
        "async () => {\nconst f = () => {} // noop\nreturn (`done`)\n}",
    ),
    "arrow body, then a spread array (tree-sitter errs)": (
        "const f = () => {}\n[...xs].forEach(f)",
        "async () => {\nconst f = () => {}\nreturn ([...xs].forEach(f))\n}",
    ),
    "arrow body called on the same line": ("const f = () => {}(1)", "=WRAP"),
    "postfix update, then a template": ("i++\n`next`", "async () => {\ni++\nreturn (`next`)\n}"),
    "block, then an expression": ("{ a: 1 }\n+b", "async () => {\n{ a: 1 }\nreturn (+b)\n}"),
    "export default function, then a call": (
        "export default function () {}\n(a)",
        "async () => {\nexport default function () {}\nreturn (a)\n}",
    ),
    # `;` after a declaration is an empty statement of its own.
    "named function and semicolon": ("function f() { return 1; };", "=WRAP"),
    "export default function and semicolon": ("export default function() { return 1; };", "=WRAP"),
    # `export default` of a named or parenthesized declaration is normalized on its own.
    "export default named function": (
        "export default async function main() { return 1; }",
        "async () => {\nasync function main() { return 1; }\nreturn main();\n}",
    ),
    "export default named class": ("export default class Foo {}", "async () => {\nclass Foo {}\n}"),
    "export default parenthesized class": ("export default (class {})", "async () => {\nclass {}\n}"),
    "export default object": ("export default { a: 1 }", "async () => {\n{ a: 1 }\n}"),
    "export default anonymous generator": (
        "export default function*() { yield 1; }",
        "async () => {\nreturn (function*() { yield 1; })();\n}",
    ),
    # Comments are not statements; a trailing one is dropped with the `;`.
    "comments only": ("// nothing to do", "=WRAP"),
    "leading comment before an arrow": ("// entry\nasync () => 1", "=SAME"),
    "trailing comment dropped": ("/* a */ x; // the answer", "async () => {\n/* a */ return (x)\n}"),
    "empty statement last": ("go();;", "=WRAP"),
    # Kept, and (to acorn as well) valid JavaScript: three template literals, each tagging the next.
    "other language fence kept": (
        f"{FENCE}python\n1 + 2\n{FENCE}",
        f"async () => {{\nreturn ({FENCE}python\n1 + 2\n{FENCE})\n}}",
    ),
    "empty fence": (f"{FENCE}js\n{FENCE}", "async () => {}"),
}


@pytest.mark.parametrize(("source", "expected"), ACORN_PARITY_CASES.values(), ids=ACORN_PARITY_CASES.keys())
def test_acorn_parity(source: str, expected: str) -> None:
    assert normalize_javascript(source) == _expected(source, expected)


def test_missing_node_is_a_parse_failure() -> None:
    # tree-sitter recovers by inventing a `}`: that is a syntax error, not a program.
    assert normalize_javascript("if (x) {\n  y") == wrapped("if (x) {\n  y")


def test_jsx_falls_back_to_the_javascript_grammar() -> None:
    # Acorn rejects JSX (and wraps it as-is); Deno rejects it in a .ts program either way.
    assert normalize_javascript("const el = <b>hi</b>;\nel") == "async () => {\nconst el = <b>hi</b>;\nreturn (el)\n}"


def test_lone_surrogate_round_trips() -> None:
    source = 'const s = "\ud800"; s'
    assert normalize_javascript(source) == 'async () => {\nconst s = "\ud800"; return (s)\n}'


def test_missing_parser_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    normalize._js_grammars.cache_clear()
    monkeypatch.setitem(sys.modules, "tree_sitter_typescript", None)
    try:
        with pytest.raises(ImportError, match=r"install codemode\[js\]"):
            normalize_javascript("1")
    finally:
        normalize._js_grammars.cache_clear()


def test_python_normalization_unchanged() -> None:
    assert normalize_python(f"{FENCE}python\nx = 1\nx\n{FENCE}") == "x = 1\nx"
    assert normalize_python("async def main(input):\n    return input") == (
        "async def main(input):\n    return input\nawait main(input)"
    )
    assert normalize_python(f"{FENCE}js\n1 + 2\n{FENCE}") == f"{FENCE}js\n1 + 2\n{FENCE}"
    assert normalize_python("  ") == "None"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "# fetch the user\n\n@cached\ndef main():\n    return 1",
            "# fetch the user\n\n@cached\ndef main():\n    return 1\nmain()",
        ),
        (
            "\r\n# c\r\nasync  def main(input):\n    return input",
            "# c\r\nasync  def main(input):\n    return input\nawait main(input)",
        ),
        ("#c\rdef main():\n    return 1", "#c\rdef main():\n    return 1\nmain()"),  # a lone \r ends a line
        ("\\\ndef main():\n    return 1", "\\\ndef main():\n    return 1\nmain()"),  # a continued blank line
        ("define = 1\ndefine", "define = 1\ndefine"),  # a name that starts with `def` is not a definition
        ("asynchronous = 2", "asynchronous = 2"),
        ('"""doc"""\ndef main():\n    return 1', '"""doc"""\ndef main():\n    return 1'),  # two statements
        ("def main():\n    return 1\nmain()", "def main():\n    return 1\nmain()"),
        ("x = 1\ndef later():\n    pass", "x = 1\ndef later():\n    pass"),
        ("def broken(:\n    pass", "def broken(:\n    pass"),  # the sandbox reports the syntax error
    ],
)
def test_python_lone_function_found_without_parsing_every_program(code: str, expected: str) -> None:
    """Only code that may start with a definition is parsed; the answer is the one a full parse gives."""
    assert normalize_python(code) == expected


TYPICAL_PROGRAM = """\
const repos = await github.listRepos({ org: "acme" });
const active = repos.filter((r) => !r.archived);
const results = [];
for (const repo of active) {
  const issues = await github.listIssues({ repo: repo.name, state: "open" });
  const stale = issues.filter((i) => Date.now() - Date.parse(i.updated_at) > 30 * 86400e3);
  if (stale.length === 0) continue;
  results.push({
    repo: repo.name,
    stale: stale.length,
    oldest: stale.map((i) => i.updated_at).sort()[0],
  });
}
results.sort((a, b) => b.stale - a.stale);
function summarize(rows) {
  return rows.map((r) => `${r.repo}: ${r.stale} stale (since ${r.oldest})`).join("\\n");
}
console.log(summarize(results));
const total = results.reduce((n, r) => n + r.stale, 0);
({ total, top: results.slice(0, 5) })"""


def test_typical_program() -> None:
    assert TYPICAL_PROGRAM.count("\n") == 19
    out = normalize_javascript(TYPICAL_PROGRAM)
    assert out.endswith("return ({ total, top: results.slice(0, 5) })\n}")


def test_find_imports_reports_every_kind_of_import() -> None:
    assert find_imports("const x = 1;\nreturn x") == []
    assert find_imports('import fs from "node:fs";\nfs') == [1]
    assert find_imports('const m = await import("data:text/javascript,export default 1");') == [1]
    assert find_imports('const a = 1;\nexport { x } from "https://example.com/m.js";') == [2]
    assert find_imports('async () => {\n  const u = "node:" + "fs";\n  return (await import(u)).x;\n}') == [3]
    assert find_imports("const important = { imports: 1 }; important.imports") == []
    assert find_imports("const meta = import.meta.url") == []
