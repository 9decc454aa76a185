"""JSON Schema -> the TypeScript declarations a model reads before writing code for the Deno sandbox.

This follows Cloudflare's code-mode converter rule for rule, so its
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

`TypeScriptDeclarations`, what the sandbox's `describe` shows, differs from
`generate_declarations` in one way the reference has no counterpart for: a
`$ref` to a named definition (`#/$defs/X`, `#/definitions/X`,
`#/components/schemas/X`) is a named type, `type X = {...}`, declared once per
block, so recursive schemas read as recursive types and a schema used in many
places is written once (a definition that is only a scalar or a short enum stays
inline). A reference to the root (`#`) names the tool's `<Tool>Input`/`Output`.
A name already taken, or one of a JavaScript, TypeScript or Deno global type
(`Record`, `Partial`, `File`), gets a number (`File2`).
The block keeps within a character budget (`DESCRIBE_BUDGET`): the tools' own
aliases are always shown, named types breadth first while they fit, and the rest
as `Record<string, unknown>` (`unknown` for a non-object) under a note saying how
to describe them (`named_type`). A connector with more than `COMPACT_THRESHOLD`
tools, or whose own aliases do not fit, shows one-line signatures (top-level
input properties only) with the first line of each description, as many as fit.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from codemode.connectors.spec import ToolSpec
from codemode.schema.base import (
    COMPACT_THRESHOLD,
    DESCRIBE_BUDGET,
    LONG_ENUM,
    NamedTypes,
    Slot,
    nonspace,
    omitted_note,
    ref_name,
    resolve_pointer,
    type_name,
)
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

    prop_docs = True  # whether properties get their JSDoc

    def __init__(self, root: object, max_depth: int) -> None:
        self.root = root
        self.max_depth = max_depth
        self.path: set[int] = set()

    def doc(self, text: str) -> str:
        return _doc(text)

    def prop_type(self, name: str, schema: object, indent: str, depth: int) -> str:
        """The type of one property (`name`) of an object, or of its other values (`"Value"`)."""
        return self.convert(schema, indent, depth)

    def array_of(self, item: str) -> str:
        """An array type; the reference does not parenthesize a union item (`A | B[]`)."""
        return f"{item}[]"

    def kind(self, schema: Mapping[str, Any]) -> object:
        """The `type` keyword, as the body is chosen by it."""
        return schema.get("type")

    def nullable(self, schema: Mapping[str, Any]) -> bool:
        """Whether ` | null` is added to the body (OpenAPI 3.0 `nullable`)."""
        return schema.get("nullable") is True

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
        if self.nullable(schema) and body not in ("unknown", "never", "null"):
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

        kind = self.kind(schema)
        if isinstance(kind, str) and kind in _SCALARS:
            return _SCALARS[kind]
        if kind == "array":
            items = schema.get("items")
            prefix = schema.get("prefixItems")
            tuple_items = prefix if isinstance(prefix, list) else items
            if isinstance(tuple_items, list):
                return f"[{', '.join(self.each(tuple_items, indent, depth))}]"
            return self.array_of(self.convert(items, indent, depth)) if _truthy(items) else "unknown[]"
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
            if isinstance(sub, Mapping) and self.prop_docs:
                desc, fmt = sub.get("description"), sub.get("format")
                desc = self.doc(desc) if isinstance(desc, str) and desc else None
                fmt = f"@format {self.doc(fmt)}" if isinstance(fmt, str) and fmt else None
                if desc and fmt:
                    lines += [f"{inner}/**", f"{inner} * {desc}", f"{inner} * {fmt}", f"{inner} */"]
                elif desc or fmt:
                    lines.append(f"{inner}/** {desc or fmt} */")
            lines.append(f"{inner}{_prop_name(name)}{mark}: {self.prop_type(name, sub, inner, depth)};")
        extra = schema.get("additionalProperties")
        if _truthy(extra):
            value = "unknown" if extra is True else self.prop_type("Value", extra, inner, depth)
            lines.append(f"{inner}[key: string]: {value};")
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


def _tool_doc(
    name: str, description: object, input_schema: object, approval: list[str], doc: Callable[[str], str]
) -> list[str]:
    """A tool's JSDoc lines: its description (or name), the approval note, one `@param` per described field."""
    props = input_schema.get("properties") if isinstance(input_schema, Mapping) else None
    params = []
    if isinstance(props, Mapping):
        for field, sub in props.items():
            desc = sub.get("description") if isinstance(sub, Mapping) else None
            if isinstance(desc, str) and desc:
                params.append(doc(f"@param input.{field} - {desc}"))
    summary = description.strip() if isinstance(description, str) else ""
    return [doc(summary or name), *approval, *params]


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
        doc = _tool_doc(name, description, input_schema, approval, _doc)
    except Exception:  # per-tool isolation: one bad schema must not take the whole block down
        types = [f"type {pascal}Input = unknown", f"type {pascal}Output = unknown"]
        doc = [_doc(name), *approval]
    return types, ["\t/**", *(f"\t * {line}" for line in doc), "\t */", signature]


def generate_declarations(
    tools: Mapping[str, ToolSpec | Mapping[str, Any]], namespace: str = "codemode", *, max_depth: int = MAX_DEPTH
) -> str:
    """Every tool's `type <P>Input`/`<P>Output` aliases, then `declare const <namespace>: {...}`.

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


# ---------------------------------------------------------------------------
# Named types, for TypeScriptDeclarations
# ---------------------------------------------------------------------------

_CONTROLS = re.compile("[\x00-\x1f\x7f]")
# Inline rather than named: a definition that says nothing about structure and has few values.
_STRUCTURE_KEYS = frozenset(
    {"properties", "additionalProperties", "items", "prefixItems", "anyOf", "oneOf", "allOf", "$ref"}
)
_INLINE_ENUM = 8
_COMPACT_ENUM = 8  # a longer enum is shown by its type in one-line signatures
_OBJECT = "Record<string, unknown>"
# Global types the declarations use or a model expects to mean what they always do: the JavaScript
# built-ins, TypeScript's utility types, and the web APIs Deno provides. A named type never takes one.
_GLOBAL_TYPES = frozenset(
    """
    Array ArrayBuffer ArrayLike AsyncGenerator AsyncIterable AsyncIterator Atomics BigInt BigInt64Array
    BigUint64Array Boolean DataView Date Error EvalError Float32Array Float64Array Function Generator
    Int16Array Int32Array Int8Array Intl Iterable IterableIterator Iterator JSON Map Math NaN Number Object
    Promise PromiseLike Proxy RangeError ReadonlyArray ReadonlyMap ReadonlySet ReferenceError Reflect RegExp
    Set SharedArrayBuffer String Symbol SyntaxError TypeError URIError Uint16Array Uint32Array Uint8Array
    Uint8ClampedArray WeakMap WeakRef WeakSet Infinity
    Awaited Capitalize ConstructorParameters Exclude Extract InstanceType Lowercase NonNullable Omit
    OmitThisParameter Parameters Partial Pick Readonly Record Required ReturnType ThisParameterType ThisType
    Uncapitalize Uppercase
    AbortController AbortSignal Blob BroadcastChannel Cache CacheStorage Console Crypto CryptoKey
    CustomEvent Deno DOMException Event EventTarget File FileReader FormData Headers Location
    MessageChannel MessageEvent MessagePort Navigator Performance ReadableStream Request Response Storage
    TextDecoder TextEncoder TransformStream URL URLPattern URLSearchParams WebAssembly WebSocket Window
    Worker WritableStream
    """.split()  # noqa: SIM905
)


@functools.lru_cache(maxsize=16384)
def _named_doc(text: str) -> str:
    """`_doc`, and no control characters (which also keeps the block's markers unambiguous)."""
    return _CONTROLS.sub(" ", _doc(text))


def _inline(schema: Mapping[str, Any]) -> bool:
    if any(key in schema for key in _STRUCTURE_KEYS):
        return False
    values = schema.get("enum")
    return not isinstance(values, list) or len(values) <= _INLINE_ENUM


def _is_object(schema: object) -> bool:
    """Whether a schema describes a JSON object, so an opaque stand-in can still say so."""
    if not isinstance(schema, Mapping):
        return False
    kind = schema.get("type")
    if isinstance(kind, list) and kind:
        return all(k in ("object", "null") for k in kind) and "object" in kind
    return kind == "object" or (kind is None and ("properties" in schema or "additionalProperties" in schema))


def _value_type(value: object) -> str:
    """The TypeScript type of a JSON value, for enums too long to list."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "unknown[]" if isinstance(value, (list, tuple)) else _OBJECT


def _top_level_operator(text: str) -> bool:
    """Whether a type has a `|` or `&` outside brackets, strings and comments (so `T[]` needs parentheses)."""
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = len(text) if end < 0 else end + 1
        elif ch in "{[(<":
            depth += 1
        elif ch in "}])>":
            depth -= 1
        elif ch in "|&" and depth == 0:
            return True
        i += 1
    return False


@dataclass
class _Detail:
    """How much a block shows. A block whose own aliases are too long is rendered again with `hoist`
    (nested objects are named types too, so the budget can leave them out), then without property docs."""

    hoist: bool = False
    prop_docs: bool = True


_DETAILS = (_Detail(), _Detail(hoist=True), _Detail(hoist=True, prop_docs=False))


@dataclass
class _Named:
    """What a named slot renders: a schema, with the root its `$ref`s resolve against, the slot (or,
    outside the tool's own block, the name) a reference to that root stands for, and the start of
    the names of the types it hoists."""

    schema: object
    root: object
    root_type: Slot | None
    root_name: str
    hint: str
    detail: _Detail


class _NamedConverter(_Converter):
    """The reference conversion, but `$ref`s to named definitions are named types (markers until the
    block is finished), and so are long enums and, when hoisting, objects (named after where they are
    used, like `CreateItemBody`). A `shallow` converter, for one-line signatures, shows objects as
    `Record<string, unknown>` and long enums by their type instead."""

    def __init__(self, types: NamedTypes, named: _Named, max_depth: int, *, shallow: bool = False) -> None:
        super().__init__(named.root, max_depth)
        self.types = types
        self.named = named
        self.shallow = shallow
        self.hint = named.hint
        self.prop_docs = named.detail.prop_docs

    def doc(self, text: str) -> str:
        return _named_doc(text)

    def prop_type(self, name: str, schema: object, indent: str, depth: int) -> str:
        outer = self.hint
        self.hint = outer + type_name(name)
        try:
            return self.convert(schema, indent, depth)
        finally:
            self.hint = outer

    def body(self, schema: Mapping[str, Any], indent: str, depth: int) -> str:
        ref = schema.get("$ref")
        if _truthy(ref):
            if not isinstance(ref, str):
                return "unknown"
            target = self.resolve(ref)
            if ref == "#":
                root_type = self.named.root_type
                return self.refer(self.root, self.named.root_name) if root_type is None else root_type.ref
            name = ref_name(ref)
            if target is None:
                return "unknown"
            if not isinstance(target, Mapping) or name is None or _inline(target) or self.shallow:
                return self.convert(target, indent, depth)
            return self.refer(target, type_name(name) or "Type")
        if self.shallow:
            for key in ("anyOf", "oneOf"):
                if _truthy(schema.get(key)):
                    return " | ".join(dict.fromkeys(self.each(schema[key], indent, depth))) or "never"
        values = schema.get("enum")
        if (
            isinstance(values, list)
            and len(values) > (_COMPACT_ENUM if self.shallow else LONG_ENUM)
            and not any(_truthy(schema.get(k)) for k in ("anyOf", "oneOf", "allOf"))
        ):
            if self.shallow:
                return " | ".join(dict.fromkeys(_value_type(v) for v in values))
            if schema is not self.named.schema:
                return self.hoisted(schema)
        return super().body(schema, indent, depth)

    def refer(self, target: object, base: str) -> str:
        """A use of a named type: its slot's marker, or in a shallow converter an opaque type."""
        if self.shallow:
            return _OBJECT if _is_object(target) else "unknown"
        named = _Named(target, self.root, self.named.root_type, self.named.root_name, base, self.named.detail)
        return self.types.slot(target, base, named).ref

    def array_of(self, item: str) -> str:
        return f"({item})[]" if _top_level_operator(item) else f"{item}[]"

    def kind(self, schema: Mapping[str, Any]) -> object:
        """`type: [T, "null"]` (how JSON Schema says nullable) reads as `T`, so `T` keeps its structure
        (an object its properties, an array its items); `nullable` adds the `| null`."""
        kind = schema.get("type")
        if isinstance(kind, list) and len(kind) == 2 and "null" in kind:
            other = kind[1 - kind.index("null")]
            return other if other != "null" else kind
        return kind

    def nullable(self, schema: Mapping[str, Any]) -> bool:
        return super().nullable(schema) or self.kind(schema) is not schema.get("type")

    def hoisted(self, schema: Mapping[str, Any]) -> str:
        """A long enum or (when hoisting) an object as a type named after where it is used; equal long
        enums share the first one's."""
        title = schema.get("title")
        if "properties" not in schema:
            shared = self.types.shared(f"{_json(schema['enum'])} {schema.get('nullable') is True}", schema)
            schema = shared if isinstance(shared, Mapping) else schema
        return self.refer(schema, (type_name(title) if isinstance(title, str) else "") or self.hint or "Type")

    def object(self, schema: Mapping[str, Any], indent: str, depth: int) -> str:
        if self.shallow:
            return _OBJECT
        if self.named.detail.hoist and schema is not self.named.schema and _truthy(schema.get("properties")):
            return self.hoisted(schema)
        return super().object(schema, indent, depth)


def _signature_input(converter: _NamedConverter, schema: object) -> str:
    """A shallow converter's one-line input type: `{ a: string; b?: number }`."""
    target = schema
    for _ in range(MAX_DEPTH):  # a reference chain to the input object
        ref = target.get("$ref") if isinstance(target, Mapping) else None
        if not isinstance(ref, str):
            break
        target = converter.resolve(ref)
    if not isinstance(target, Mapping) or not isinstance(target.get("properties"), Mapping):
        return converter.convert(schema, "", 0)
    if not target["properties"]:
        return "{}" if not _truthy(target.get("additionalProperties")) else _OBJECT
    required = target.get("required")
    names = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
    fields = [
        f"{_prop_name(str(key))}{'' if str(key) in names else '?'}: {converter.convert(sub, '', 1)}"
        for key, sub in target["properties"].items()
    ]
    return "{ " + "; ".join(fields) + " }"


def _root_slot(types: NamedTypes, name: str, hint: str, schema: object, detail: _Detail, max_depth: int) -> Slot:
    """A tool's own `<Tool>Input`/`<Tool>Output` alias, always shown; `#` inside it refers to it."""
    slot = types.slot(object(), name, None, forced=True)
    slot.payload = _Named(schema, schema, slot, name, hint, detail)
    if _truthy(schema):
        slot.body = f"type {slot.label} = {_NamedConverter(types, slot.payload, max_depth).convert(schema, '', 0)}"
    else:
        slot.body = f"type {slot.label} = unknown"
    slot.state = "expanded"
    return slot


def _named_tool(types: NamedTypes, name: str, tool: object, detail: _Detail, max_depth: int) -> str:
    """A tool's lines in the `declare const` block; its aliases become forced slots of `types`."""
    safe = sanitize_identifier(name)
    pascal = to_pascal_case(safe)
    approval = [_named_doc(APPROVAL_NOTE)] if _requires_approval(tool) else []
    mark = types.snapshot()
    try:
        description = _field(tool, "description")
        input_schema = _field(tool, "input_schema", "inputSchema")
        output_schema = _field(tool, "output_schema", "outputSchema")
        inp = _root_slot(types, f"{pascal}Input", pascal, input_schema, detail, max_depth)
        out = _root_slot(types, f"{pascal}Output", f"{pascal}Output", output_schema, detail, max_depth)
        doc = _tool_doc(name, description, input_schema, approval, _named_doc)
    except Exception:  # per-tool isolation, as in generate_declarations
        types.restore(mark)
        inp = _root_slot(types, f"{pascal}Input", pascal, None, detail, max_depth)
        out = _root_slot(types, f"{pascal}Output", pascal, None, detail, max_depth)
        doc = [_named_doc(name), *approval]
    signature = f"\t{safe}: (input: {inp.ref}) => Promise<{out.ref}>;"
    return "\n".join(["\t/**", *(f"\t * {line}" for line in doc), "\t */", signature])


def _compact_tool(name: str, tool: object, max_depth: int) -> str:
    """A tool as two lines: the first line of its description, and its signature with shallow types."""
    safe = sanitize_identifier(name)
    approval = " (Requires approval.)" if _requires_approval(tool) else ""
    types = NamedTypes((), 0)
    try:
        description = _field(tool, "description")
        input_schema = _field(tool, "input_schema", "inputSchema")
        output_schema = _field(tool, "output_schema", "outputSchema")
        summary = description.strip().splitlines()[0] if isinstance(description, str) and description.strip() else ""
        named = _Named(input_schema, input_schema, None, "", "", _Detail())
        inp = _signature_input(_NamedConverter(types, named, max_depth, shallow=True), input_schema)
        out = "unknown"
        if _truthy(output_schema):
            named = _Named(output_schema, output_schema, None, "", "", _Detail())
            out = _NamedConverter(types, named, max_depth, shallow=True).convert(output_schema, "", 0)
    except Exception:  # per-tool isolation
        summary, inp, out = name, "unknown", "unknown"
    doc = _named_doc(summary or name) + approval
    return f"\t/** {doc} */\n\t{safe}: (input: {inp}) => Promise<{out}>;"


def _floor(slot: Slot) -> int:
    """A lower bound of a named type's length, from its schema alone: `type X = {`, one `name: T;` line per
    property, and the words of the descriptions it shows."""
    named: _Named = slot.payload
    schema = named.schema
    if not isinstance(schema, Mapping):
        return 0
    docs = named.detail.prop_docs
    total = len(slot.base) + 10 + (nonspace(schema.get("description")) if docs else 0)
    props = schema.get("properties")
    kind = schema.get("type")
    shown = not any(_truthy(schema.get(k)) for k in ("$ref", "anyOf", "oneOf", "allOf", "enum")) and (
        "const" not in schema and (kind in (None, "object") or kind in (["object", "null"], ["null", "object"]))
    )
    if shown and isinstance(props, Mapping):  # the properties are what the type shows
        for key, sub in props.items():
            total += len(str(key)) + 10
            if docs and isinstance(sub, Mapping) and (words := nonspace(sub.get("description"))):
                total += words + 8
    return total


def _opaque(slot: Slot) -> str:
    """What a type left out stands for: an object, the types of an enum's values, or `unknown`."""
    named: _Named = slot.payload
    schema = named.schema
    values = schema.get("enum") if isinstance(schema, Mapping) else None
    if isinstance(values, list) and values and not _is_object(schema):
        return " | ".join(dict.fromkeys(_value_type(v) for v in values))
    return _OBJECT if _is_object(schema) else "unknown"


def _opaque_cost(slot: Slot) -> int:
    return len(f"type {slot.base} = {_opaque(slot)}") + 1


class TypeScriptDeclarations:
    """Renders connectors as TypeScript: type aliases (named types included), then `declare const
    <connector>: {...}`, within a size budget.

    `method` deviates from the reference, whose describe showed only a tool's
    type aliases: it also shows the one-member `declare const <connector>`
    block, because a model must see that the tool is called as
    `connector.method(input)`.
    """

    language = "typescript"

    def __init__(self, max_depth: int = MAX_DEPTH, budget: int = DESCRIBE_BUDGET) -> None:
        self.max_depth = max_depth  # nesting beyond this renders as `unknown`; lower it to shorten huge specs
        self.budget = budget  # characters a block aims to stay within (the tools' own aliases are always shown)

    def _render(self, types: NamedTypes, slot: Slot) -> str:
        """A named type's definition, with its description as JSDoc."""
        named: _Named = slot.payload
        converter = _NamedConverter(types, named, self.max_depth)
        desc = named.schema.get("description") if isinstance(named.schema, Mapping) else None
        head = (
            f"/** {_named_doc(desc)} */\n" if isinstance(desc, str) and desc.strip() and named.detail.prop_docs else ""
        )
        return f"{head}type {slot.label} = {converter.convert(named.schema, '', 0)}"

    def _fits(self, types: NamedTypes, tail: str, detail: _Detail) -> bool:
        """Whether a block's own aliases (with the types they use left out) leave room for those types
        (half the budget), or, once hoisting, fit at all; the last level of detail is taken whatever
        its size."""
        own = types.mandatory(types.cost(tail), _opaque_cost)
        return detail is _DETAILS[-1] or own <= (self.budget if detail.hoist else self.budget // 2)

    def _settle(self, types: NamedTypes, roots: list[str], more: str) -> list[Slot]:
        fixed = sum(types.cost(root) for root in roots) + len(omitted_note(more)) + 8
        types.expand(lambda slot: self._render(types, slot), fixed, _opaque_cost, _floor)
        types.dedupe()
        return types.finish(roots)

    def _text(self, types: NamedTypes, named: list[Slot], tail: str, more: str) -> str:
        """Forced aliases in order, then expanded named types breadth first, then the opaque ones."""
        forced = [slot.body for slot in named if slot.forced]
        expanded = sorted((s for s in named if s.state == "expanded" and not s.forced), key=lambda s: s.index)
        omitted = [f"type {s.label} = {_opaque(s)}" for s in named if s.state == "omitted"]
        lines = [*forced, *(s.body for s in expanded)]
        if omitted:
            lines += [f"/** {_named_doc(omitted_note(more))} */", *omitted]
        return types.named("\n".join(lines) + tail)

    def _tools(self, connector: str, tools: Mapping[str, Any], details: Sequence[_Detail]) -> tuple[NamedTypes, str]:
        """The tools' own aliases (forced slots) and the `declare const` block, at the first level of
        detail that fits."""
        namespace = sanitize_identifier(connector)
        for detail in details:
            types = NamedTypes(_GLOBAL_TYPES, self.budget)
            members = [_named_tool(types, name, tool, detail, self.max_depth) for name, tool in tools.items()]
            tail = f"\n\ndeclare const {namespace}: {{\n" + "\n\n".join(members) + "\n}"
            if self._fits(types, tail, detail):
                break
        return types, tail

    def _block(self, connector: str, tools: Mapping[str, Any], more: str, details: Sequence[_Detail]) -> str:
        if not tools:
            return f"declare const {sanitize_identifier(connector)}: {{}}"
        types, tail = self._tools(connector, tools, details)
        return self._text(types, self._settle(types, [tail], more), tail, more)

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """Every tool's aliases and one `declare const` block; for a large connector, one-line signatures."""
        if len(tools) <= COMPACT_THRESHOLD:
            out = self._block(name, tools, f"{name}.<method>", _DETAILS[:1])
            if len(out) <= self.budget:
                return out
        return self._compact(name, tools)

    def _compact(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """One signature per tool, in order, as many as fit in the budget; the rest are counted."""
        head = _named_doc(
            f"{len(tools)} methods, shown without their types; "
            f'see a method\'s types with codemode.describe("{name}.<method>").'
        )
        head = f"/** {head} */"
        opening = f"\ndeclare const {sanitize_identifier(name)}: {{\n"
        tail = '\t/** ... and {n} more methods: find one with codemode.search("..."). */'
        used = len(head) + len(opening) + len(tail) + 10
        shown: list[str] = []
        for tool_name, spec in tools.items():
            text = _compact_tool(tool_name, spec, self.max_depth)
            if used + len(text) + 1 > self.budget:
                break
            shown.append(text)
            used += len(text) + 1
        if len(shown) < len(tools):
            shown.append(tail.format(n=len(tools) - len(shown)))
        return head + opening + "\n".join(shown) + "\n}"

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: its aliases, the named types they use, and a `declare const <connector>` block holding it."""
        return self._block(connector, {method: spec}, f"{connector}.{method}.<TypeName>", _DETAILS)

    def named_type(self, connector: str, method: str, spec: ToolSpec, path: Sequence[str]) -> str | None:
        """A type named in `method`'s declarations (then in that type's, and so on), expanded within the
        budget like a method; None when no such type is named there."""
        where = f"{connector}.{method}"
        types, tail = self._tools(connector, {method: spec}, _DETAILS)
        named = self._settle(types, [tail], f"{where}.<TypeName>")
        for wanted in path:
            found = next((slot for slot in named if slot.name == wanted), None)
            if found is None:
                return None
            where = f"{where}.{wanted}"
            old: _Named = found.payload
            for detail in _DETAILS:
                types = NamedTypes(_GLOBAL_TYPES, self.budget)
                payload = _Named(old.schema, old.root, None, old.root_name, old.hint, detail)
                slot = types.slot(found.key, wanted, payload, forced=True)
                if old.root_type is found:  # a tool's own alias: `#` inside it still means itself
                    payload.root_type = slot
                try:
                    slot.body, slot.state = self._render(types, slot), "expanded"
                except Exception:
                    return f"/** {wanted}: its schema could not be rendered. */\ntype {wanted} = unknown"
                if self._fits(types, "", detail):
                    break
            named = self._settle(types, [slot.ref], f"{where}.<TypeName>")
        return self._text(types, named, "", f"{where}.<TypeName>")
