"""JSON Schema -> the Python stubs a model reads before writing code for the Monty sandbox.

Tools read as what the program writes: `await items.create_item(title="x")` is
declared as `async def create_item(*, title: str)` inside `class items:`, and
object types are `TypedDict`s. The output is for reading, so no imports are
emitted, but it is always syntactically valid Python (the tests `ast.parse` it
over the real GitHub and Stripe specs).

Conventions:

- Parameters are keyword-only, required ones first. An optional parameter shows
  its JSON `default` as a Python literal (`limit: int = 30`); one without a
  default shows `= ...`, the stub-file convention for "may be omitted"
  (`T | None = None` would claim that `None` is accepted).
- A tool whose property names are not Python identifiers (or are keywords,
  non-ASCII, or would be name-mangled) takes one positional dict instead:
  `async def m(args: MInput, /)`. So does a tool whose input is not an object.
- TypedDict names come from the schema `title`, else the `$defs`/`definitions`/
  `components/schemas` name, else the path (`<Tool>Input`, `<Tool><Prop>`,
  `<Tool>Output`), in PascalCase. A name already taken, or one that is a
  builtin, a typing name or a method of the block's class, gets a number
  (`Exception2`); identical definitions are shared across the tools of one block.
- Property docs (description, `format`, `default`, deprecated) are attribute
  docstrings; the functional `TypedDict("X", {...})` form, used when a key is not
  an identifier, carries them as comments.
- A recursive reference is the quoted forward reference `"Name"` of the
  TypedDict being defined, or `Any` when the cycle has no TypedDict to name.
  Nesting deeper than `max_depth` (default 20) is `Any`.
- `allOf` of objects is merged; anything else is approximated by a union,
  since Python has no intersection type. `enum`/`const` values that cannot be
  `Literal` members (arrays, objects) are shown by their type.
- A tool whose schema fails to convert falls back to `(**kwargs: Any) -> Any`
  without disturbing the rest of the block; a nested TypedDict that fails is
  shown as an opaque `dict[str, Any]`.

Size: a block stays within a character budget (`DESCRIBE_BUDGET` by default).
The signatures and the tool's own input/output TypedDicts are always shown;
the TypedDicts they use are expanded breadth first while they fit, and the rest
are declared first as `Name = dict[str, Any]` under a comment saying how to see
them (`codemode.describe("conn.method.Name")`, which `named_type` answers). A
connector with more than `COMPACT_THRESHOLD` tools, or whose signatures alone
do not fit, is shown as one-line signatures (top-level parameter types only,
objects as `dict[str, Any]`) with the first line of each description, as many
as fit.
"""

from __future__ import annotations

import builtins
import functools
import inspect
import keyword
import math
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

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
from codemode.schema.names import sanitize_identifier

__all__ = ["MAX_DEPTH", "PythonDeclarations"]

MAX_DEPTH = 20
_WRAP = 100  # wrap a signature one parameter per line beyond this width
# Names a reader takes for what Python means by them, so no TypedDict is given one: the typing names the
# stubs use, every other typing name (`Optional`, `List`), and the builtins (`Exception`, `TimeoutError`).
_RESERVED_NAMES = frozenset({"Any", "Literal", "Never", "NotRequired", "TypedDict", *typing.__all__, *dir(builtins)})
# Keywords that say what a schema is (as opposed to constraints and docs), with and without combinators.
_OWN_TYPE_KEYS = frozenset(
    {"$ref", "type", "properties", "additionalProperties", "items", "prefixItems", "enum", "const"}
)
_TYPE_KEYS = _OWN_TYPE_KEYS | {"anyOf", "oneOf", "allOf"}
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_COMPACT_LITERALS = 8  # a longer enum is shown by its type in one-line signatures
_APPROVAL_NOTE = "Requires approval: the run pauses until a human approves this call."
_DICT_NOTE = "Takes one dict (positional), because some of its keys are not valid Python parameter names."
_FALLBACK_NOTE = "The argument types of this tool could not be rendered; pass its arguments as keywords."
_UNSET: Any = object()


# ---------------------------------------------------------------------------
# Literals, names and text
# ---------------------------------------------------------------------------


def _py_str(text: str) -> str:
    """A double-quoted Python string literal (repr's escapes, one quote style)."""
    out = []
    for ch in text:
        if ch in '\\"':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return '"' + "".join(out) + '"'


def _literal(value: object) -> str | None:
    """The Python literal for a JSON value, or None when it has none."""
    if isinstance(value, str):
        return _py_str(value)
    if value is None or isinstance(value, (bool, int)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, list):
        items = [_literal(v) for v in value]
        return None if None in items else "[" + ", ".join(i for i in items if i is not None) + "]"
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        pairs = [(_py_str(k), _literal(v)) for k, v in value.items()]
        return None if any(v is None for _, v in pairs) else "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"
    return None


def _enum_member(value: object) -> str:
    """One enum/const value as a type: a `Literal` where Python allows one."""
    if value is None:
        return "None"
    if isinstance(value, list):
        return "list[Any]"
    if isinstance(value, Mapping):
        return "dict[str, Any]"
    lit = _literal(value)
    return f"Literal[{lit}]" if lit is not None else "Any"


def _value_type(value: object) -> str:
    """The Python type of a JSON value, for enums too long to list."""
    if value is None:
        return "None"
    if isinstance(value, (bool, int, float, str)):
        return type(value).__name__
    return "list[Any]" if isinstance(value, list) else "dict[str, Any]"


def _is_name(name: object) -> bool:
    """Whether a key can be a parameter or class-syntax field name.

    ASCII only (NFKC folding could make two keys the same name), no keywords,
    and no `__x` names, which Python mangles inside a class body.
    """
    return (
        isinstance(name, str)
        and name.isascii()
        and name.isidentifier()
        and not keyword.iskeyword(name)
        and name != "__debug__"
        and not (name.startswith("__") and not name.endswith("__"))
    )


def _union(parts: Iterable[list[str]]) -> list[str]:
    """Flatten union members: dedupe, `Any` absorbs, `Never` vanishes, `None` goes last."""
    out: list[str] = []
    for part in parts:
        for member in part:
            if member not in out:
                out.append(member)
    if "Any" in out:
        return ["Any"]
    if "Never" in out and len(out) > 1:
        out.remove("Never")
    if "None" in out:
        out.remove("None")
        out.append("None")
    return out or ["Never"]


def _fmt(members: list[str]) -> str:
    """Render union members, merging single-value `Literal[x]`s into one `Literal[x, y]`."""
    literals = [m[8:-1] for m in members if m.startswith("Literal[")]
    if len(literals) > 1:
        first = next(i for i, m in enumerate(members) if m.startswith("Literal["))
        members = [m for m in members if not m.startswith("Literal[")]
        members.insert(first, f"Literal[{', '.join(literals)}]")
    return " | ".join(members)


# Characters a source file cannot hold as-is: control characters (Cc) and lone surrogates (Cs).
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_DOC_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # docstrings keep \n and \t


@functools.lru_cache(maxsize=16384)
def _one_line(text: str) -> str:
    return " ".join(_CONTROLS.sub(" ", text).split())


def _docstring(text: str, indent: str) -> list[str]:
    """A triple-quoted docstring holding `text` exactly, whatever quotes or backslashes it contains."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "\\" in text and '"' not in text and not text.endswith("\\") and not _DOC_CONTROLS.search(text):
        prefix = "r"  # a raw docstring keeps regexes and paths readable
    else:
        prefix = ""
        text = _DOC_CONTROLS.sub(lambda m: repr(m.group())[1:-1], text.replace("\\", "\\\\"))
        # No two unescaped quotes in a row (nor one right before a closing `"""` on the same line), so
        # `"""` can only ever close the string.
        text = re.sub(r'"(?=")' if "\n" in text else r'"(?="|\Z)', r"\"", text)
    lines = text.split("\n")
    if len(lines) == 1:
        return [f'{indent}{prefix}"""{lines[0]}"""']
    rest = [f"{indent}{line}".rstrip() if line.strip() else "" for line in lines[1:]]
    return [f'{indent}{prefix}"""{lines[0]}', *rest, f'{indent}"""']


# ---------------------------------------------------------------------------
# Conversion
# ---------------------------------------------------------------------------


class _Block:
    """The TypedDicts of one rendered block, shared by its tools; `shallow` blocks have none (objects are
    `dict[str, Any]`), for one-line signatures, and blocks without `docs` show no property docs (for
    tools whose signatures would not fit otherwise)."""

    def __init__(
        self, reserved: Iterable[str], max_depth: int, budget: int, *, shallow: bool = False, docs: bool = True
    ) -> None:
        self.max_depth = max_depth
        self.shallow = shallow
        self.docs = docs
        self.types = NamedTypes(reserved, budget)

    def render_forced(self, mark: int) -> None:
        """Render the tools' own TypedDicts created since `mark` now, so a failure fails its tool."""
        slots = self.types.slots
        i = mark
        while i < len(slots):
            slot = slots[i]
            i += 1
            if slot.forced and slot.state == "pending":
                slot.body, slot.state = _render_slot(slot), "expanded"


@dataclass
class _Pending:
    """What a TypedDict slot renders: an object schema, in the context of the converter that met it."""

    converter: _Converter
    schema: Mapping[str, Any]
    prefix: str  # the start of the names of the TypedDicts its properties need
    depth: int
    kind: Literal["typeddict", "alias"] = "typeddict"  # an alias is a long enum: `X = Literal[...]`


def _render_slot(slot: Slot) -> str:
    pending: _Pending = slot.payload
    if pending.kind == "alias":
        return f"{slot.label} = {_fmt(_union([_enum_member(v)] for v in pending.schema['enum']))}"
    return pending.converter.definition(slot)


def _opaque(slot: Slot) -> str:
    """What a type left out stands for: an object, or (for a long enum) the types of its values."""
    pending: _Pending = slot.payload
    if pending.kind == "alias":
        return _fmt(_union([_value_type(v)] for v in pending.schema["enum"]))
    return "dict[str, Any]"


def _typed(schema: object) -> bool:
    """Whether a subschema says anything about the type (not just `required` or a description)."""
    return not isinstance(schema, Mapping) or any(k in schema for k in _TYPE_KEYS)


def _not_plain_object(schema: Mapping[str, Any]) -> bool:
    """Whether a schema is more than an object: typed alternatives, enums, arrays or another type."""
    if schema.get("type", "object") != "object" or any(k in schema for k in ("enum", "const", "items", "prefixItems")):
        return True
    return any(_typed(m) for k in ("anyOf", "oneOf") for m in (schema.get(k) or ()))


class _Converter:
    """Converts one schema of one tool; local `$ref`s resolve against `root`."""

    def __init__(
        self,
        block: _Block,
        root: object,
        names: Mapping[int, str] | None = None,
        forced: Iterable[int] = (),
        opaque: Iterable[int] = (),
    ) -> None:
        self.block = block
        self.root = root
        self.names = names or {}  # preferred TypedDict name per schema object (a tool's `<Tool>Input`)
        self.forced = set(forced)  # schema objects whose TypedDict is always shown (a tool's own)
        self.opaque = set(opaque)  # schema objects that are `Any` wherever met (a keyword-parameter root)
        self.active: set[int] = set()  # schemas being converted, to cut cycles that no TypedDict names
        self.alive: object = None

    def rehome(self, block: _Block) -> _Converter:
        """The same schema context in another block."""
        converter = _Converter(block, self.root, self.names, opaque=self.opaque)
        converter.alive = self.alive
        return converter

    def resolve(self, ref: str) -> object:
        """A local JSON pointer; anything unresolvable or external means "any" (`True`)."""
        found = resolve_pointer(self.root, ref)
        return True if found is None else found

    def deref(self, schema: object) -> object:
        for _ in range(MAX_DEPTH):
            if not (isinstance(schema, Mapping) and isinstance(schema.get("$ref"), str)):
                return schema
            schema = self.resolve(schema["$ref"])
        return True

    def lookup(self, schema: object, key: str, missing: Any = None) -> Any:
        """A keyword from the schema or, failing that, from what its `$ref` chain points to."""
        for _ in range(MAX_DEPTH):
            if not isinstance(schema, Mapping):
                return missing
            if key in schema:
                return schema[key]
            if not isinstance(schema.get("$ref"), str):
                return missing
            schema = self.resolve(schema["$ref"])
        return missing

    def doc(self, schema: object, with_default: bool) -> str:
        """A property's one-line doc: description plus format, default and deprecation."""
        if not self.block.docs:
            return ""
        desc = self.lookup(schema, "description")
        extras = []
        fmt = self.lookup(schema, "format")
        if isinstance(fmt, str):
            extras.append(f"format: {_one_line(fmt)}")
        if with_default and (lit := _literal(self.lookup(schema, "default", _UNSET))) is not None:
            extras.append(f"default: {_one_line(lit)}")
        if self.lookup(schema, "deprecated") is True:
            extras.append("deprecated")
        text = _one_line(desc) if isinstance(desc, str) else ""
        return f"{text} ({'; '.join(extras)})".strip() if extras else text

    def type(self, schema: object, hint: str, depth: int) -> list[str]:
        """The union members of a schema's Python type; `hint` names TypedDicts without a title."""
        if isinstance(schema, bool):
            return ["Any"] if schema else ["Never"]
        if not isinstance(schema, Mapping) or depth > self.block.max_depth:
            return ["Any"]
        key = id(schema)
        if key in self.active or key in self.opaque:
            return ["Any"]
        self.active.add(key)
        try:
            members = self.convert(schema, schema, hint, depth)
        finally:
            self.active.discard(key)
        if (schema.get("nullable") is True or schema.get("x-nullable") is True) and members != ["Any"]:
            members = _union([members, ["None"]])
        return members

    def convert(self, schema: Mapping[str, Any], key: Mapping[str, Any], hint: str, depth: int) -> list[str]:
        """`type` without the cycle and nullable handling; `key` is the object a TypedDict is cached under."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = ref_name(ref)
            name = type_name(target) if target is not None else ""
            return self.type(self.resolve(ref), name or hint, depth + 1)

        own = any(k in schema for k in _OWN_TYPE_KEYS)
        options = [m for k in ("anyOf", "oneOf") if isinstance(schema.get(k), list) for m in schema[k]]
        options = [m for m in options if not own or _typed(m)]  # untyped members only add constraints
        if options:
            return _union(self.type(m, hint, depth + 1) for m in options)

        all_of = schema.get("allOf")
        if isinstance(all_of, list):
            rest = {k: v for k, v in schema.items() if k not in ("allOf", "anyOf", "oneOf")}
            parts_ = [m for m in all_of if _typed(m)]
            if not parts_:
                return self.convert(rest, key, hint, depth)
            if len(parts_) == 1 and not own:
                return self.type(parts_[0], hint, depth + 1)
            merged = self.merge(schema)
            if merged is not None:
                return self.object(merged, key, hint, depth)
            return _union(self.type(m, hint, depth + 1) for m in [*parts_, *([rest] if own else [])])

        if "enum" in schema:
            values = schema["enum"]
            if not isinstance(values, list):
                return ["Any"]
            if self.block.shallow and len(values) > _COMPACT_LITERALS:
                return _union([_value_type(v)] for v in values)
            if len(values) > LONG_ENUM and not self.block.shallow:  # its own alias, which the budget may leave out
                title = schema.get("title")
                base = (type_name(title) if isinstance(title, str) else "") or hint or "Values"
                shared = self.block.types.shared(repr(values), key)  # equal long enums share one alias
                return [self.block.types.slot(shared, base, _Pending(self, schema, base, depth, "alias")).ref]
            return _union([_enum_member(v)] for v in values)
        if "const" in schema:
            return [_enum_member(schema["const"])]

        kind = schema.get("type")
        if isinstance(kind, list):
            return _union(self.convert({**schema, "type": k}, key, hint, depth) for k in kind) if kind else ["Any"]
        if kind is None:
            if "properties" in schema or "additionalProperties" in schema:
                kind = "object"
            elif "items" in schema or "prefixItems" in schema:
                kind = "array"
        if kind == "object":
            return self.object(schema, key, hint, depth)
        if kind == "array":
            return [self.array(schema, hint, depth)]
        if kind == "string" and schema.get("format") == "binary":
            return ["bytes"]  # how pydantic describes `bytes`; the sandbox receives real bytes
        return [_SCALARS[kind]] if isinstance(kind, str) and kind in _SCALARS else ["Any"]

    def array(self, schema: Mapping[str, Any], hint: str, depth: int) -> str:
        items = schema.get("items")
        prefix = schema.get("prefixItems", items if isinstance(items, list) else None)
        if isinstance(prefix, list):
            return f"tuple[{', '.join(_fmt(self.type(s, hint, depth + 1)) for s in prefix) or '()'}]"
        return f"list[{_fmt(self.type(items, hint, depth + 1)) if items is not None else 'Any'}]"

    def merge(self, schema: Mapping[str, Any]) -> dict[str, Any] | None:
        """Flatten an `allOf` whose parts are all object schemas into one object schema, else None."""
        props: dict[str, Any] = {}
        required: list[str] = []
        merged: dict[str, Any] = {"type": "object", "properties": props, "required": required}

        def add(part: object, level: int) -> bool:
            part = self.deref(part)
            if part is True:
                return True
            if not isinstance(part, Mapping) or level > MAX_DEPTH or _not_plain_object(part):
                return False
            if not all(add(sub, level + 1) for sub in part.get("allOf") or ()):
                return False
            if isinstance(part.get("properties"), Mapping):
                props.update(part["properties"])
            if isinstance(part.get("required"), list):
                required.extend(r for r in part["required"] if isinstance(r, str) and r not in required)
            if "additionalProperties" in part:
                merged["additionalProperties"] = part["additionalProperties"]
            return True

        if not add(schema, 0):
            return None
        merged.update({k: schema[k] for k in ("title", "description") if k in schema})
        return merged

    def object(self, schema: Mapping[str, Any], key: Mapping[str, Any], hint: str, depth: int) -> list[str]:
        """An object with properties is a TypedDict (rendered later, if it fits); without, a `dict`."""
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props:
            extra = schema.get("additionalProperties", True)
            if extra is False:
                return ["dict[str, Never]"]
            return [f"dict[str, {_fmt(self.type(extra, hint + 'Value', depth + 1))}]"]
        if self.block.shallow:
            return ["dict[str, Any]"]
        title = schema.get("title")
        titled = type_name(title) if isinstance(title, str) else ""
        base = titled or self.names.get(id(key)) or hint or "Object"
        pending = _Pending(self, schema, titled or hint, depth)
        return [self.block.types.slot(key, base, pending, forced=id(key) in self.forced).ref]

    def definition(self, slot: Slot) -> str:
        """The TypedDict of an object slot, naming itself and other types by markers."""
        pending: _Pending = slot.payload
        schema, prefix, depth = pending.schema, pending.prefix, pending.depth
        props: Mapping[str, Any] = schema["properties"]
        required = schema.get("required")
        req = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        fields = []
        for prop, sub in props.items():
            t = _fmt(self.type(sub, prefix + type_name(prop), depth + 1))
            fields.append((prop, t if prop in req else f"NotRequired[{t}]", self.doc(sub, with_default=True)))

        desc = schema.get("description")
        desc = inspect.cleandoc(desc) if isinstance(desc, str) and self.block.docs else ""
        if all(_is_name(p) for p, _, _ in fields):
            body = _docstring(desc, "    ") if desc else []
            for prop, t, doc in fields:
                body.append(f"    {prop}: {t}")
                body.extend(_docstring(doc, "    ") if doc else ())
            head = [f"class {slot.label}(TypedDict):"]
        else:  # keys that cannot be attribute names: the functional syntax, docs as comments
            body = ["    {"]
            for prop, t, doc in fields:
                body.extend([f"        # {_one_line(doc)}"] if doc else ())
                body.append(f"        {_py_str(str(prop))}: {t},")
            body += ["    },", ")"]
            head = [f"# {_one_line(desc)}"] if desc else []
            head += [f"{slot.label} = TypedDict(", f'    "{slot.label}",']
        return "\n".join([*head, *body])

    def params(self, pascal: str) -> tuple[list[str], list[str], str | None]:
        """A tool's parameter list, its `Args:` lines and a note on how to call it."""
        root = self.root
        obj = self.deref(root)
        if obj is True:
            obj = {}
        if isinstance(obj, Mapping) and isinstance(obj.get("allOf"), list):
            obj = self.merge(obj) or obj
        self.alive = obj  # `obj` may be a new dict: kept, so its `id` in `forced`/`opaque` stays its own
        self.forced.update((id(root), id(obj)))
        if not isinstance(obj, Mapping) or _not_plain_object(obj) or "allOf" in obj or "$ref" in obj:
            return [f"args: {_fmt(self.type(root, pascal + 'Input', 0))}", "/"], [], None
        props = obj.get("properties")
        if not isinstance(props, Mapping) or not props:
            extra = obj.get("additionalProperties", None if "properties" in obj else True)
            if extra is None or extra is False:
                return [], [], None
            return [f"**kwargs: {_fmt(self.type(extra, pascal + 'Value', 1))}"], [], None
        if not all(_is_name(p) for p in props):
            return [f"args: {_fmt(self.type(root, pascal, 0))}", "/"], [], _DICT_NOTE

        self.opaque.update((id(root), id(obj)))  # a reference back to the root has no TypedDict to name: `Any`
        required = obj.get("required")
        req = [p for p in props if isinstance(required, list) and p in required]
        required_params, optional_params, docs = [], [], []
        for prop in [*req, *(p for p in props if p not in req)]:
            sub = props[prop]
            t = _fmt(self.type(sub, pascal + type_name(prop), 1))
            if prop in req:
                required_params.append(f"{prop}: {t}")
            else:
                default = _literal(self.lookup(sub, "default", _UNSET))
                optional_params.append(f"{prop}: {t} = {default if default is not None else '...'}")
            if doc := self.doc(sub, with_default=False):
                docs.append(f"{prop}: {doc}")
        params = ["*", *required_params, *optional_params]
        extra = obj.get("additionalProperties")
        if extra is not None and extra is not False:
            kwargs = "kwargs"
            while kwargs in props:
                kwargs += "_"
            params.append(f"**{kwargs}: {_fmt(self.type(extra, pascal + 'Value', 1))}")
        return params, docs, None


# ---------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------


def _signature(name: str, params: list[str], returns: str, doc: str, *, wrap: bool = True) -> str:
    line = f"    async def {name}({', '.join(params)}) -> {returns}:"
    if wrap and len(line) > _WRAP and params:
        sig = [f"    async def {name}(", *(f"        {p}," for p in params), f"    ) -> {returns}:"]
    else:
        sig = [line]
    return "\n".join([*sig, *(_docstring(doc, "        ") if doc else ["        ..."])])


def _summary(description: str) -> str:
    """The first line of a description: what a one-line signature shows."""
    return next((line.strip() for line in description.splitlines() if line.strip()), "")


def _render_tool(block: _Block, name: str, spec: ToolSpec) -> str:
    """One method of the connector class; on any conversion error, a permissive fallback.

    In a shallow block the method is one line and its docstring the first line of its description.
    """
    method = sanitize_identifier(name)
    pascal = type_name(name) or "Tool"
    description = spec.description if isinstance(spec.description, str) else str(spec.description or "")
    description = inspect.cleandoc(description)
    approval = [_APPROVAL_NOTE] if spec.requires_approval else []
    if block.shallow:
        description = _summary(description)
        approval = ["(Requires approval.)"] if approval else []
    snap = block.types.snapshot()
    try:
        root = spec.input_schema
        params, docs, note = _Converter(block, root, {id(root): pascal + "Input"}).params(pascal)
        returns = "Any"
        if spec.output_schema is not None:
            output = spec.output_schema
            returns = _fmt(_Converter(block, output, forced=[id(output)]).type(output, pascal + "Output", 0))
        block.render_forced(snap)
    except Exception:  # per-tool isolation: one bad schema must not take the whole block down
        block.types.restore(snap)
        fallback = _summary(_FALLBACK_NOTE) if block.shallow else _FALLBACK_NOTE
        doc = ("\n\n" if not block.shallow else " ").join(p for p in [description, *approval, fallback] if p)
        return _signature(method, ["**kwargs: Any"], "Any", doc)
    if block.shallow:
        doc = " ".join(p for p in [description, *approval] if p)
        return _signature(method, params, returns, doc, wrap=False)
    args = ["Args:\n" + "\n".join(f"    {d}" for d in docs)] if docs else []
    doc = "\n\n".join(p for p in [description, *approval, *([note] if note else []), *args] if p)
    return _signature(method, params, returns, doc)


def _opaque_cost(slot: Slot) -> int:
    return len(slot.base) + 1 + len(" = ") + len(_opaque(slot)) + 1


def _floor(slot: Slot) -> int:
    """A lower bound of a TypedDict's length, from its schema alone: `class X(TypedDict):`, one
    `name: T` line per property, and the words of the descriptions it shows."""
    pending: _Pending = slot.payload
    schema = pending.schema
    if pending.kind == "alias":
        return len(slot.base) + 13 + sum(len(str(v)) + 2 for v in schema["enum"])  # X = Literal["a", "b"]
    total = len(slot.base) + 19 + nonspace(schema.get("description"))
    for prop, sub in schema["properties"].items():
        total += len(str(prop)) + 10
        if isinstance(sub, Mapping) and (words := nonspace(sub.get("description"))):
            total += words + 11
    return total


def _fixed(block: _Block, roots: list[str], more: str) -> int:
    """The cost of a block's roots and of the note on types left out."""
    return sum(block.types.cost(root) + 2 for root in roots) + len(f"# {omitted_note(more)}\n\n")


def _settle(block: _Block, roots: list[str], more: str) -> list[Slot]:
    """Expand the block's TypedDicts within its budget, merge duplicates and name them all."""
    block.types.expand(_render_slot, _fixed(block, roots, more), _opaque_cost, _floor)
    block.types.dedupe()
    return block.types.finish(roots)


def _fits(block: _Block, roots: list[str], more: str) -> bool:
    """Whether a block's signatures and own TypedDicts fit in its budget, the types they use left out."""
    return block.types.mandatory(_fixed(block, roots, more), _opaque_cost) <= block.types.budget


def _text(block: _Block, named: list[Slot], roots: list[str], more: str, *, show_roots: bool = True) -> str:
    """Opaque TypedDicts first, then the expanded ones in dependency order, then the roots (the class)."""
    types = block.types
    omitted = [slot for slot in named if slot.state == "omitted"]
    parts = []
    if omitted:
        note = f"# {_one_line(omitted_note(more))}"
        parts.append("\n".join([note, *(f"{s.name} = {_opaque(s)}" for s in omitted)]))
    emitted: set[int] = set()

    def quoted(slot: Slot) -> bool:
        return slot.state == "expanded" and slot.index not in emitted

    for slot in types.dependency_order(roots):
        parts.append(types.named(slot.body, quoted))
        emitted.add(slot.index)
    if show_roots:
        parts += [types.named(root) for root in roots]
    return "\n\n".join(parts)


class PythonDeclarations:
    """Renders connectors as Python stubs: TypedDicts, then `class <connector>:` of async methods."""

    language = "python"

    def __init__(self, max_depth: int = MAX_DEPTH, budget: int = DESCRIBE_BUDGET) -> None:
        self.max_depth = max_depth  # nesting beyond this renders as `Any`; lower it to shorten huge specs
        self.budget = budget  # characters a block aims to stay within (its signatures are always shown)

    def _block(self, reserved: Iterable[str], *, shallow: bool = False, docs: bool = True) -> _Block:
        return _Block(_RESERVED_NAMES | set(reserved), self.max_depth, self.budget, shallow=shallow, docs=docs)

    def _tools(
        self, name: str, tools: Mapping[str, ToolSpec], more: str, *, docs: Sequence[bool]
    ) -> tuple[_Block, list[str]]:
        """The tools' own types and the class of their methods, with property docs unless only their
        absence makes it fit (`docs` lists what to try)."""
        cls = sanitize_identifier(name)
        # A TypedDict named like a method would be shadowed by it inside the class body.
        reserved = [cls, *(sanitize_identifier(tool_name) for tool_name in tools)]
        for with_docs in docs:
            block = self._block(reserved, docs=with_docs)
            methods = [_render_tool(block, tool_name, spec) for tool_name, spec in tools.items()]
            roots = [f"class {cls}:\n" + ("\n\n".join(methods) if methods else "    ...")]
            if _fits(block, roots, more):
                break
        return block, roots

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """Every tool's types (shared and de-duplicated) and one class holding every method; for a large
        connector, one-line signatures instead."""
        if len(tools) <= COMPACT_THRESHOLD:
            more = f"{name}.<method>"
            block, roots = self._tools(name, tools, more, docs=[True])
            if _fits(block, roots, more):
                return _text(block, _settle(block, roots, more), roots, more)
        return self._compact(name, sanitize_identifier(name), tools)

    def _compact(self, name: str, cls: str, tools: Mapping[str, ToolSpec]) -> str:
        """One line per method, in order, as many as fit in the budget; the rest are counted."""
        block = self._block([cls], shallow=True)
        head = "# " + _one_line(
            f"{len(tools)} methods, shown without their types; "
            f'see a method\'s types with codemode.describe("{name}.<method>").'
        )
        tail = '    # ... and {n} more methods: find one with codemode.search("...").'
        used = len(head) + len(f"\nclass {cls}:\n") + len(tail) + 8
        shown: list[str] = []
        for tool_name, spec in tools.items():
            text = _render_tool(block, tool_name, spec)
            if used + len(text) + 1 > self.budget:
                break
            shown.append(text)
            used += len(text) + 1
        rest = len(tools) - len(shown)
        body = "\n".join(shown) if shown else "    ..."
        if rest:
            body += "\n" + tail.format(n=rest)
        return f"{head}\nclass {cls}:\n{body}"

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: only the types it needs, and its method shown inside `class <connector>:`."""
        more = f"{connector}.{method}.<TypeName>"
        block, roots = self._tools(connector, {method: spec}, more, docs=[True, False])
        return _text(block, _settle(block, roots, more), roots, more)

    def named_type(self, connector: str, method: str, spec: ToolSpec, path: Sequence[str]) -> str | None:
        """A TypedDict named in `method`'s declarations (then in that type's, and so on), expanded within
        the budget like a method; None when no such type is named there."""
        where = f"{connector}.{method}"
        block, roots = self._tools(connector, {method: spec}, f"{where}.<TypeName>", docs=[True, False])
        named = _settle(block, roots, f"{where}.<TypeName>")
        for wanted in path:
            found = next((slot for slot in named if slot.name == wanted), None)
            if found is None:
                return None
            where = f"{where}.{wanted}"
            pending: _Pending = found.payload
            for docs in (True, False):
                block = self._block([], docs=docs)
                converter = pending.converter.rehome(block)
                again = _Pending(converter, pending.schema, pending.prefix, 0, pending.kind)
                slot = block.types.slot(found.key, wanted, again, forced=True)
                try:
                    slot.body, slot.state = _render_slot(slot), "expanded"
                except Exception:  # the type was shown as opaque for the same reason
                    return f"# {wanted}: its schema could not be rendered; it stands for {_opaque(slot)}."
                roots = [slot.ref]
                if _fits(block, roots, f"{where}.<TypeName>"):
                    break
            named = _settle(block, roots, f"{where}.<TypeName>")
        return _text(block, named, roots, f"{where}.<TypeName>", show_roots=False)
