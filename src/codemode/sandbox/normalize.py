"""Turning what a model wrote into a program the sandbox can run.

Models wrap code in markdown fences, and sometimes write only a function
definition. Python programs otherwise run as written: the sandbox supports a
top-level `return`, top-level `await`, and gives the value of a trailing
expression as the result. JavaScript/TypeScript programs become one async
arrow function, exactly as Cloudflare's `normalizeCode` makes them, so code
written for Cloudflare's code mode behaves the same here.
"""

from __future__ import annotations

import ast
import functools
import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Collection

    from tree_sitter import Language, Node, Query

__all__ = ["JAVASCRIPT_FENCES", "find_imports", "normalize_javascript", "normalize_python", "strip_fence"]

_FENCE = re.compile(r"^```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)\r?\n?```\s*$", re.DOTALL)


def strip_fence(code: str, languages: frozenset[str]) -> str:
    """Return the inside of `code` when the whole of it is one fenced block in one of `languages`."""
    text = code.strip()
    match = _FENCE.match(text)
    if match and (not match.group(1) or match.group(1).lower() in languages):
        return match.group(2).strip("\n")
    return text


PYTHON_FENCES = frozenset({"python", "py", "python3", "py3"})
# A program that is one function definition starts, past blank, comment and continued lines (any of
# Python's line ends), with a decorator or `def`.
_LINE_END = r"(?:\r\n?|\n)"
_MAY_BE_A_FUNCTION = re.compile(
    rf"(?:[ \t\f]*(?:#[^\r\n]*|\\)?{_LINE_END})*[ \t\f]*(?:@|def\b|async(?:[ \t\f]|\\{_LINE_END})+def\b)"
)


def normalize_python(code: str) -> str:
    """Fences stripped; a lone function definition is called (with `input` when it takes a parameter)."""
    text = strip_fence(code, PYTHON_FENCES)
    if not text.strip():
        return "None"
    if not _MAY_BE_A_FUNCTION.match(text):
        return text  # the common case: a program of statements, which needs no parse here
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return text  # the sandbox reports the error with the right line
    if len(tree.body) == 1 and isinstance(tree.body[0], (ast.FunctionDef, ast.AsyncFunctionDef)):
        fn = tree.body[0]
        arity = len(fn.args.posonlyargs) + len(fn.args.args)
        call = f"{fn.name}(input)" if arity else f"{fn.name}()"
        prefix = "await " if isinstance(fn, ast.AsyncFunctionDef) else ""
        return f"{text}\n{prefix}{call}"
    return text


JAVASCRIPT_FENCES = frozenset({"js", "javascript", "typescript", "ts", "tsx", "jsx"})

_EMPTY_JS = "async () => {}"
# Nodes that start a new function body: a `return` inside one of them is legal.
_FUNCTION_NODES = frozenset(
    {
        "function_declaration",
        "function_expression",
        "function",
        "generator_function_declaration",
        "generator_function",
        "arrow_function",
        "method_definition",
    }
)
# `new.target` needs a function that is not an arrow, or a class field or static block.
_NEW_TARGET_SCOPES = (_FUNCTION_NODES - {"arrow_function"}) | {"class_body"}
_ANONYMOUS_FUNCTIONS = frozenset({"function_expression", "function", "generator_function"})
_NAMED_FUNCTIONS = frozenset({"function_declaration", "generator_function_declaration"})
# ECMAScript forbids an expression statement from starting with these: acorn reads a declaration (and
# fails on an anonymous one), where tree-sitter accepts an expression.
_DECLARATION_START = re.compile(rb"(?:function|class|async[ \t]+function)(?![A-Za-z0-9_$\x80-\xff])")
# Constructs that tree-sitter accepts but acorn (module code, so strict mode) rejects.
_STRICT_QUERY = """
(expression_statement) @statement
(return_statement) @return
(with_statement) @with
(private_property_identifier) @private
(super) @super
(yield_expression) @yield
(meta_property) @meta
(arrow_function) @arrow
(update_expression) @update
(export_statement value: (_) @default)
"""
# Strict mode forbids legacy octal literals (`010`, `08`) and escapes (`"\1"`).
_LEGACY_OCTAL = re.compile(rb"(?<![\w$.])0[0-9]")
_OCTAL_ESCAPE = re.compile(rb"\\(?:0[0-9]|[1-9])")
# tree-sitter lets an arrow function be the left operand of these (`() => {}\n[1].map(f)` as a subscript);
# JavaScript does not, so acorn ends the statement after the arrow if a line break follows, or fails.
_OPERAND_PARENTS = frozenset(
    {
        "call_expression",
        "member_expression",
        "subscript_expression",
        "binary_expression",
        "ternary_expression",
        "update_expression",
        "non_null_expression",
        "assignment_expression",
        "augmented_assignment_expression",
    }
)
_DECLARATION_VALUES = frozenset({"function_expression", "function", "generator_function", "class"})
_BLOCK_LOOKALIKES = frozenset({"object", "object_pattern"})
# Nor can a postfix `a++` be called, indexed or tagged (tree-sitter makes `a++\n`t`` an ERROR).
_POSTFIX_PARENTS = frozenset({"call_expression", "member_expression", "subscript_expression", "ERROR"})
_LINE_BREAKS = (b"\n", b"\r", "\u2028".encode(), "\u2029".encode())
_WHITESPACE = (b" ", b"\t", b"\n", b"\r", b"\v", b"\f")


class _Grammar(NamedTuple):
    language: Language
    strict: Query


@functools.lru_cache(maxsize=1)
def _js_grammars() -> tuple[_Grammar, ...]:
    """TypeScript first (Deno strips types, and it parses plain JavaScript too), then JavaScript for what the
    TypeScript grammar rejects (JSX; names like `interface` that only sloppy-mode scripts may use)."""
    try:
        import tree_sitter
        import tree_sitter_javascript
        import tree_sitter_typescript
    except ImportError as exc:
        raise ImportError(
            "normalize_javascript needs the tree-sitter JavaScript/TypeScript parsers: install codemode[js]"
        ) from exc
    grammars = []
    for pointer in (tree_sitter_typescript.language_typescript(), tree_sitter_javascript.language()):
        language = tree_sitter.Language(pointer)
        grammars.append(_Grammar(language, tree_sitter.Query(language, _STRICT_QUERY)))
    return tuple(grammars)


def normalize_javascript(code: str) -> str:
    """Turn a JavaScript/TypeScript program into an async arrow function, as Cloudflare's `normalizeCode` does.

    The sandbox calls the result with no arguments, so whatever the model wrote must become a function:

    1. The code is trimmed and a fence around the whole of it (js, javascript, typescript, ts, tsx, jsx or
       bare) is stripped. Nothing left gives `async () => {}`.
    2. A single arrow-function expression (parenthesized, or with a trailing `;`) is returned unchanged.
    3. A single `export default X`: an anonymous function becomes `async () => {\\nreturn (X)();\\n}`, an
       anonymous class `async () => {\\nreturn (X);\\n}`, anything else is normalized again on its own.
    4. A single named function declaration is kept and called: `async () => {\\nSOURCE\\nreturn name();\\n}`.
    5. A last expression statement is returned: `async () => {\\nBEFORE_IT` + `return (EXPR)\\n}`, its `;` and
       any trailing comment dropped.
    6. Anything else, and code that does not parse, is wrapped as it is: `async () => {\\nSOURCE\\n}`. That is
       how a top-level `return` works.

    Parsing is tree-sitter's TypeScript grammar (JavaScript's as a fallback), so typed programs get the same
    treatment as plain ones. tree-sitter is more lenient than acorn, Cloudflare's parser (module code, so
    strict mode), and so is corrected to give Cloudflare's output: code acorn rejects (a `return`, `yield`,
    `super`, `new.target` or `#private` out of place, `with`, legacy octals, a statement starting with
    `function` or `class` that is no declaration) counts as unparsable, and statements tree-sitter runs on
    where acorn ends them (after an arrow function body or a `{...}` block, before a line break) are split.
    """
    grammars = _js_grammars()
    source = strip_fence(code, JAVASCRIPT_FENCES).strip()
    if not source:
        return _EMPTY_JS
    data = source.encode("utf-8", "surrogatepass")
    program = _parse_js(data, grammars)
    if program is None:
        return _wrap_js(source)

    def text(node: Node) -> str:
        return data[node.start_byte : node.end_byte].decode("utf-8", "surrogatepass")

    statements = [n for n in program.named_children if not n.is_extra and n.type != "hash_bang_line"]
    if not statements:  # only comments
        return _wrap_js(source)
    if len(statements) == 1:
        only = statements[0]
        if only.type == "expression_statement" and _unparen(_first_named(only)).type == "arrow_function":
            return source
        if only.type == "export_statement" and any(c.type == "default" for c in only.children):
            value = only.child_by_field_name("value")  # an expression; a named declaration is not a value
            if value is not None and value.type in _DECLARATION_VALUES:
                if data[only.end_byte - 1 : only.end_byte] == b";":
                    return _wrap_js(source)  # acorn: a declaration, then an empty statement
                if value.type in _ANONYMOUS_FUNCTIONS:
                    return f"async () => {{\nreturn ({text(value)})();\n}}"
                if value.type == "class":
                    return f"async () => {{\nreturn ({text(value)});\n}}"
            inner = value or only.child_by_field_name("declaration")
            if inner is None:
                return _wrap_js(source)
            return normalize_javascript(text(_unparen(inner)))
        if only.type in _NAMED_FUNCTIONS:
            name = only.child_by_field_name("name")
            return f"async () => {{\n{source}\nreturn {text(name) if name else 'fn'}();\n}}"
    last = statements[-1]
    if last.type == "expression_statement" and data[last.start_byte : last.start_byte + 1] != b"{":
        before = data[: last.start_byte].decode("utf-8", "surrogatepass")
        return f"async () => {{\n{before}return ({text(_unparen(_first_named(last)))})\n}}"
    return _wrap_js(source)


def find_imports(code: str) -> list[int]:
    """Lines of the program that load a module: `import` declarations, `import()` calls, `export ... from`.

    The sandbox refuses them before running anything: connectors are the only way out, and eval being
    disabled means an import cannot be assembled at run time. Parsing errors do not hide an import:
    the tolerant parser still yields the node.
    """
    from tree_sitter import Parser

    root = Parser(_js_grammars()[0].language).parse(code.encode("utf-8")).root_node
    lines: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        callee = node.child_by_field_name("function") if node.type == "call_expression" else None
        loads = (
            node.type == "import_statement"
            or (callee is not None and callee.type == "import")
            or (node.type == "export_statement" and node.child_by_field_name("source") is not None)
        )
        if loads:
            lines.add(node.start_point[0] + 1)
        stack.extend(node.children)
    return sorted(lines)


def _wrap_js(source: str) -> str:
    return f"async () => {{\n{source}\n}}"


def _parse_js(data: bytes, grammars: tuple[_Grammar, ...]) -> Node | None:
    """The program node from the first grammar that parses `data` cleanly, read as acorn would read it.

    Where acorn inserts a semicolon that tree-sitter does not, the whitespace byte there is made a `;` and the
    code parsed again: byte offsets stay those of `data`, for slicing it.
    """
    from tree_sitter import Parser, QueryCursor  # importable: `_js_grammars` checked

    for grammar in grammars:
        parser = Parser(grammar.language)
        text = data
        while True:
            root = parser.parse(text).root_node
            clean = not root.has_error  # has_error: an ERROR or MISSING node somewhere
            captures = QueryCursor(grammar.strict).captures(root)
            if clean and not _acorn_accepts(root, captures, text):
                return None  # parsed, but a syntax error to acorn
            semicolons = _missed_semicolons(captures, text)
            if semicolons:
                patched = bytearray(text)  # each pass turns whitespace into `;`, so this loop ends
                for at in semicolons:
                    patched[at] = ord(";")
                text = bytes(patched)
            elif clean:
                return root if semicolons is not None else None
            else:
                break  # try the next grammar
    return None


def _acorn_accepts(root: Node, captures: dict[str, list[Node]], data: bytes) -> bool:
    """False for module-mode errors that acorn reports and tree-sitter does not: such code is wrapped as-is."""
    if _has_legacy_octal(root, data):
        return False
    if captures.get("with"):
        return False
    if any(_DECLARATION_START.match(data, node.start_byte) for node in captures.get("statement", ())):
        return False
    functions = _FUNCTION_NODES | {"class_static_block"}
    if any(_nearest(node, functions) in (None, "class_static_block") for node in captures.get("return", ())):
        return False
    if any(not _is_generator(_nearest_node(node, _FUNCTION_NODES)) for node in captures.get("yield", ())):
        return False
    targets = [node for node in captures.get("meta", ()) if data[node.start_byte : node.start_byte + 3] == b"new"]
    if any(_nearest(node, _NEW_TARGET_SCOPES) is None for node in targets):
        return False
    if any(_nearest(node, {"method_definition", "class_body"}) is None for node in captures.get("super", ())):
        return False
    return all(_nearest(node, {"class_body"}) for node in captures.get("private", ()))


def _has_legacy_octal(root: Node, data: bytes) -> bool:
    """A `010` number or a `"\\1"` string escape: the regexes find candidates, the tree says which are code."""
    for match in _LEGACY_OCTAL.finditer(data):
        node = root.descendant_for_byte_range(match.start(), match.start() + 1)
        if node is not None and node.type == "number":
            return True
    for match in _OCTAL_ESCAPE.finditer(data):
        node = root.descendant_for_byte_range(match.start(), match.start() + 1)
        if node is None or node.type != "escape_sequence" or node.start_byte != match.start():
            continue
        if node.parent is not None and node.parent.type == "string":
            return True
    return False


def _missed_semicolons(captures: dict[str, list[Node]], data: bytes) -> list[int] | None:
    """Where acorn ends a statement that tree-sitter continues; None if acorn fails there (or we cannot say)."""
    semicolons = []
    operands = [a for a in captures.get("arrow", ()) if _is_left_operand(a, _OPERAND_PARENTS)]
    operands += [
        u
        for u in captures.get("update", ())
        if u.children[0].type not in ("++", "--") and _is_left_operand(u, _POSTFIX_PARENTS)
    ]
    for node in operands:  # automatic semicolon insertion: only before a line break
        gap = data[node.end_byte : _next_code(node, len(data))]
        if gap[:1] not in _WHITESPACE or not any(brk in gap for brk in _LINE_BREAKS):
            return None
        semicolons.append(node.end_byte)
    # To acorn these are declarations and blocks, which end at their `}` with no semicolon needed:
    # `export default function () {}(x)` and a statement `{ a: 1 }\n+b` are two statements each.
    ends = [_leftmost(value, _DECLARATION_VALUES) for value in captures.get("default", ())]
    ends += [_leftmost(statement, _BLOCK_LOOKALIKES) for statement in captures.get("statement", ())]
    for end in ends:
        if end is None:
            continue
        if data[end.end_byte : end.end_byte + 1] not in _WHITESPACE:
            return None  # acorn reads on; a same-length rewrite cannot say it
        semicolons.append(end.end_byte)
    return semicolons


def _leftmost(node: Node, types: frozenset[str]) -> Node | None:
    """The node of one of `types` that starts `node` and is not all of it (of its expression, for a statement)."""
    whole = node.children[0] if node.type == "expression_statement" else node
    current = whole
    while current.type not in types:
        if not current.children or not current.children[0].is_named:  # a token: `(`, `{`, a keyword...
            return None
        current = current.children[0]
    return current if current.end_byte < whole.end_byte else None


def _next_code(node: Node, end: int) -> int:
    """Where the code after `node` starts (comments are skipped; they may hold the line break)."""
    current: Node | None = node
    while current is not None:
        following = current.next_sibling
        while following is not None and following.is_extra:
            following = following.next_sibling
        if following is not None:
            return following.start_byte
        current = current.parent
    return end


def _is_left_operand(node: Node, parents: frozenset[str]) -> bool:
    parent = node.parent
    return parent is not None and parent.type in parents and parent.start_byte == node.start_byte


def _nearest_node(node: Node, types: Collection[str]) -> Node | None:
    parent = node.parent
    while parent is not None and parent.type not in types:
        parent = parent.parent
    return parent


def _nearest(node: Node, types: Collection[str]) -> str | None:
    """The type of the closest ancestor among `types`: where a `return`, `yield`, `super`... may stand."""
    ancestor = _nearest_node(node, types)
    return ancestor.type if ancestor is not None else None


def _is_generator(function: Node | None) -> bool:
    if function is None:
        return False
    if function.type in ("generator_function", "generator_function_declaration"):
        return True
    return function.type == "method_definition" and any(c.type == "*" for c in function.children)


def _first_named(node: Node) -> Node:
    """The first child that is not a comment: an expression statement's expression."""
    return next(c for c in node.named_children if not c.is_extra)


def _unparen(node: Node) -> Node:
    """Acorn drops the parentheses around an expression from its range; tree-sitter keeps a node for them."""
    while node.type == "parenthesized_expression":
        inner = [c for c in node.named_children if not c.is_extra]
        if len(inner) != 1:  # `(x: T)`: a TypeScript annotation, not plain parentheses
            break
        node = inner[0]
    return node
