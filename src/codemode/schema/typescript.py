"""JSON Schema -> the TypeScript declarations a model reads before writing code for the Deno sandbox.

This follows the reference converter (spec §3.3-§3.4) rule for rule, so its
golden outputs hold byte for byte: schemas are inlined (no named types), `$ref`s
resolve against the root of the schema being converted, nesting deeper than 20
levels or looping back onto the current path is `unknown`, and a tool whose
schema cannot be converted keeps its place in the block with `unknown` types.

Deliberate deviations, all for inputs the reference renders as broken or
misleading text:

- An empty `anyOf`/`oneOf` is `never` and an empty `allOf` or `type: []` is
  `unknown` (the reference prints nothing, leaving `type X = `).
- `nullable: true` never turns a plain `null` into `null | null`.
- Every line break (`\\r\\n`, `\\n`, a lone `\\r`, U+2028, U+2029) in a description,
  `format`, `@param` line or tool name becomes a space, not only `\\r?\\n`.
- Property names and enum strings also escape C1 controls and lone surrogates,
  so the output can always be encoded.
- Non-string `description`/`format` values are ignored rather than failing the tool.
- A tool with `requires_approval` gets a JSDoc line saying so (our addition).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from codemode.connectors.base import ToolSpec
from codemode.schema.base import resolve_pointer
from codemode.schema.names import sanitize_identifier, to_pascal_case

__all__ = ["MAX_DEPTH", "TypeScriptDeclarations", "generate_declarations", "json_schema_to_type"]

MAX_DEPTH = 20
APPROVAL_NOTE = "Requires approval: the run pauses until a human approves this call."
_IDENT = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_LINE_BREAKS = re.compile("\r\n|[\r\n\u2028\u2029]")
_STRING_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile('[\\\\"\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]')
_SCALARS = {"string": "string", "number": "number", "integer": "number", "boolean": "boolean", "null": "null"}
_TYPE_ENTRIES = {**_SCALARS, "array": "unknown[]", "object": "Record<string, unknown>"}


# ---------------------------------------------------------------------------
# JavaScript semantics the reference relies on
# ---------------------------------------------------------------------------


def _truthy(value: object) -> bool:
    """JavaScript truthiness: unlike Python's, empty objects and arrays are true."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, (int, float)):
        return value != 0 and not math.isnan(value)
    if isinstance(value, str):
        return value != ""
    return True


def _js_number(value: float) -> str:
    """`String(n)` for a JavaScript number: `1.0` -> `1`, `1e-05` -> `0.00001`, `1e-07` -> `1e-7`."""
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" not in text:
        return text
    mantissa, exp = text.split("e")
    power = int(exp)
    if -7 < power < 21:
        return format(Decimal(text), "f")
    return f"{mantissa}e{'+' if power > 0 else '-'}{abs(power)}"


def _js_string(text: str) -> str:
    """A double-quoted string literal valid in TypeScript, whatever `text` holds."""

    def escape(match: re.Match[str]) -> str:
        ch = match.group()
        return _STRING_ESCAPES.get(ch) or f"\\u{ord(ch):04x}"

    return '"' + _NEEDS_ESCAPE.sub(escape, text) + '"'


def _json(value: object) -> str:
    """`JSON.stringify(value)`: compact, JavaScript number formatting."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, (int, float)):
        return _js_number(value) if isinstance(value, int) or math.isfinite(value) else "null"
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{_js_string(str(k))}:{_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json(v) for v in value) + "]"
    return _js_string(str(value))


def _literal(value: object) -> str:
    """One enum member or const as a type: `null`, `"text"`, `1`, `true`, or JSON for objects and arrays."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return _js_string(value)
    if isinstance(value, (Mapping, list, tuple)):
        return _json(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _js_number(value)
    return str(value)


def _doc(text: str) -> str:
    """Text safe inside a one-line JSDoc: line breaks become spaces and `*/` cannot close the comment."""
    return _LINE_BREAKS.sub(" ", text).replace("*/", "*\\/")


def _prop_name(name: str) -> str:
    return name if _IDENT.match(name) else _js_string(name)


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


class _Converter:
    """One schema's conversion: its root (for `$ref`), the depth limit and the schemas on the current path."""

    def __init__(self, root: object, max_depth: int) -> None:
        self.root = root
        self.max_depth = max_depth
        self.path: set[int] = set()

    def resolve(self, ref: str) -> object:
        """A local JSON pointer; None when external or unresolvable."""
        found = resolve_pointer(self.root, ref)
        return found if isinstance(found, (bool, Mapping)) else None

    def convert(self, schema: object, indent: str, depth: int) -> str:
        if isinstance(schema, bool):
            return "unknown" if schema else "never"
        if not isinstance(schema, Mapping) or depth >= self.max_depth or id(schema) in self.path:
            return "unknown"
        self.path.add(id(schema))
        try:
            body = self.body(schema, indent, depth + 1)
        finally:
            self.path.discard(id(schema))
        if schema.get("nullable") is True and body not in ("unknown", "never", "null"):
            return f"{body} | null"
        return body

    def each(self, schemas: object, indent: str, depth: int) -> list[str]:
        if not isinstance(schemas, list):
            raise TypeError(f"expected a list of schemas, got {type(schemas).__name__}")
        return [self.convert(s, indent, depth) for s in schemas]

    def body(self, schema: Mapping[str, Any], indent: str, depth: int) -> str:
        """The type of `schema` before `nullable`; `depth` is that of its subschemas."""
        ref = schema.get("$ref")
        if _truthy(ref):
            target = self.resolve(ref) if isinstance(ref, str) else None
            return "unknown" if target is None else self.convert(target, indent, depth)
        for key, joiner, empty in (("anyOf", " | ", "never"), ("oneOf", " | ", "never"), ("allOf", " & ", "unknown")):
            if _truthy(schema.get(key)):
                return joiner.join(self.each(schema[key], indent, depth)) or empty
        if _truthy(schema.get("enum")):
            values = schema["enum"]
            if not isinstance(values, list):
                raise TypeError("enum must be a list")
            return " | ".join(_literal(v) for v in values) or "never"
        if "const" in schema:
            return _literal(schema["const"])

        kind = schema.get("type")
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            prefix = schema.get("prefixItems")
            tuple_items = prefix if isinstance(prefix, list) else items
            if isinstance(tuple_items, list):
                return f"[{', '.join(self.each(tuple_items, indent, depth))}]"
            return f"{self.convert(items, indent, depth)}[]" if _truthy(items) else "unknown[]"
        if kind == "object" or _truthy(schema.get("properties")):
            return self.object(schema, indent, depth)
        if isinstance(kind, list):
            entries = [_TYPE_ENTRIES.get(k, "unknown") if isinstance(k, str) else "unknown" for k in kind]
            return " | ".join(entries) or "unknown"
        return "unknown"

    def object(self, schema: Mapping[str, Any], indent: str, depth: int) -> str:
        props = schema.get("properties") or {}
        if not isinstance(props, Mapping):
            raise TypeError("properties must be an object")
        required = schema.get("required")
        names = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        inner = indent + "    "
        lines: list[str] = []
        for key, sub in props.items():
            name = str(key)
            mark = "" if name in names else "?"
            if isinstance(sub, Mapping):
                desc, fmt = sub.get("description"), sub.get("format")
                desc = _doc(desc) if isinstance(desc, str) and desc else None
                fmt = f"@format {_doc(fmt)}" if isinstance(fmt, str) and fmt else None
                if desc and fmt:
                    lines += [f"{inner}/**", f"{inner} * {desc}", f"{inner} * {fmt}", f"{inner} */"]
                elif desc or fmt:
                    lines.append(f"{inner}/** {desc or fmt} */")
            lines.append(f"{inner}{_prop_name(name)}{mark}: {self.convert(sub, inner, depth)};")
        extra = schema.get("additionalProperties")
        if _truthy(extra):
            lines.append(f"{inner}[key: string]: {'unknown' if extra is True else self.convert(extra, inner, depth)};")
        if not lines:
            return "{}" if extra is False else "Record<string, unknown>"
        return "{\n" + "\n".join(lines) + f"\n{indent}}}"


def json_schema_to_type(schema: object, type_name: str, *, max_depth: int = MAX_DEPTH) -> str:
    """`type <type_name> = <body>` for one JSON Schema; local `$ref`s resolve against `schema` itself.

    Anything that is not a schema (None, a string, ...) is `unknown`. Malformed
    combinators or properties raise, so a caller can isolate the failing tool.
    """
    return f"type {type_name} = {_Converter(schema, max_depth).convert(schema, '', 0)}"


# ---------------------------------------------------------------------------
# Declaration blocks
# ---------------------------------------------------------------------------


def _field(tool: object, *names: str) -> Any:
    """A tool attribute from a `ToolSpec`-like object or a dict (snake_case or camelCase key)."""
    for name in names:
        if isinstance(tool, Mapping):
            if name in tool:
                return tool[name]
        elif hasattr(tool, name):
            return getattr(tool, name)
    return None


def _requires_approval(tool: object) -> bool:
    try:
        return _field(tool, "requires_approval", "requiresApproval") is True
    except Exception:
        return False


def _render_tool(name: str, tool: object, max_depth: int) -> tuple[list[str], list[str]]:
    """A tool's type aliases and its lines in the `declare const` block."""
    safe = sanitize_identifier(name)
    pascal = to_pascal_case(safe)
    signature = f"\t{safe}: (input: {pascal}Input) => Promise<{pascal}Output>;"
    approval = [_doc(APPROVAL_NOTE)] if _requires_approval(tool) else []
    try:
        description = _field(tool, "description")
        input_schema = _field(tool, "input_schema", "inputSchema")
        output_schema = _field(tool, "output_schema", "outputSchema")
        types = [json_schema_to_type(input_schema, f"{pascal}Input", max_depth=max_depth)]
        if _truthy(output_schema):
            types.append(json_schema_to_type(output_schema, f"{pascal}Output", max_depth=max_depth))
        else:
            types.append(f"type {pascal}Output = unknown")
        props = input_schema.get("properties") if isinstance(input_schema, Mapping) else None
        params = []
        if isinstance(props, Mapping):
            for field, sub in props.items():
                desc = sub.get("description") if isinstance(sub, Mapping) else None
                if isinstance(desc, str) and desc:
                    params.append(_doc(f"@param input.{field} - {desc}"))
        summary = description.strip() if isinstance(description, str) else ""
        doc = [_doc(summary or name), *approval, *params]
    except Exception:  # per-tool isolation: one bad schema must not take the whole block down
        types = [f"type {pascal}Input = unknown", f"type {pascal}Output = unknown"]
        doc = [_doc(name), *approval]
    return types, ["\t/**", *(f"\t * {line}" for line in doc), "\t */", signature]


def generate_declarations(
    tools: Mapping[str, ToolSpec | Mapping[str, Any]], namespace: str = "codemode", *, max_depth: int = MAX_DEPTH
) -> str:
    """Every tool's `type <P>Input`/`<P>Output` aliases, then `declare const <namespace>: {...}` (spec §3.4).

    A tool is a `ToolSpec` (or any object with its attributes) or a dict with
    `description`, `input_schema`/`inputSchema` and `output_schema`/`outputSchema`.
    """
    types: list[str] = []
    members: list[str] = []
    for name, tool in tools.items():
        tool_types, tool_lines = _render_tool(name, tool, max_depth)
        types += tool_types
        members.append("\n".join(tool_lines))
    if not members:
        return f"declare const {namespace}: {{}}"
    return "\n".join(types) + f"\n\ndeclare const {namespace}: {{\n" + "\n\n".join(members) + "\n}"


class TypeScriptDeclarations:
    """Renders connectors as TypeScript: inline type aliases, then `declare const <connector>: {...}`.

    `method` deviates from the reference, whose describe showed only a tool's
    type aliases: it also shows the one-member `declare const <connector>`
    block, because a model must see that the tool is called as
    `connector.method(input)`.
    """

    language = "typescript"

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth  # nesting beyond this renders as `unknown`; lower it to shorten huge specs

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """The whole namespace: every tool's aliases and one `declare const` block."""
        return generate_declarations(tools, sanitize_identifier(name), max_depth=self.max_depth)

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: its aliases and a `declare const <connector>` block holding only it."""
        return generate_declarations({method: spec}, sanitize_identifier(connector), max_depth=self.max_depth)
