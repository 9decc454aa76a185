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
  `<Tool>Output`), in PascalCase. Clashes get a number; identical definitions
  are shared across the tools of one block.
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
  without disturbing the rest of the block.
"""

from __future__ import annotations

import inspect
import keyword
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

from codemode.connectors.base import ToolSpec
from codemode.schema.base import resolve_pointer
from codemode.schema.names import sanitize_identifier, to_pascal_case

__all__ = ["MAX_DEPTH", "PythonDeclarations"]

MAX_DEPTH = 20
_WRAP = 100  # wrap a signature one parameter per line beyond this width
_TYPING_NAMES = ("Any", "Literal", "Never", "NotRequired", "TypedDict")
# Keywords that say what a schema is (as opposed to constraints and docs), with and without combinators.
_OWN_TYPE_KEYS = frozenset(
    {"$ref", "type", "properties", "additionalProperties", "items", "prefixItems", "enum", "const"}
)
_TYPE_KEYS = _OWN_TYPE_KEYS | {"anyOf", "oneOf", "allOf"}
_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool", "null": "None"}
_DEF_CONTAINERS = ("$defs", "definitions", "schemas")
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


def _type_name(*parts: str) -> str:
    """A PascalCase type name from free text (`"simple-user"` -> `SimpleUser`); "" if nothing is left."""
    pieces = [to_pascal_case(s) for p in parts if (s := sanitize_identifier(p).strip("_"))]
    return sanitize_identifier("".join(pieces)) if pieces else ""


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
    """The TypedDicts of one rendered block, in dependency order and shared by its tools."""

    def __init__(self, reserved: Iterable[str], max_depth: int) -> None:
        self.max_depth = max_depth
        self.defs: dict[str, str] = {}
        self.used: set[str] = set(reserved)
        self.by_id: dict[int, tuple[object, str]] = {}  # schema object -> its TypedDict (object kept alive)
        self.by_body: dict[tuple[str, str], str] = {}  # (base name, definition body) -> name
        self.forward: dict[str, int] = {}  # forward references made to each name

    def snapshot(self) -> tuple[Any, ...]:
        return dict(self.defs), set(self.used), dict(self.by_id), dict(self.by_body), dict(self.forward)

    def restore(self, snap: tuple[Any, ...]) -> None:
        self.defs, self.used, self.by_id, self.by_body, self.forward = snap

    def reserve(self, base: str) -> str:
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}{n}"
        self.used.add(name)
        return name


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

    def __init__(self, block: _Block, root: object, names: Mapping[int, str] | None = None) -> None:
        self.block = block
        self.root = root
        self.names = names or {}  # preferred TypedDict name per schema object (a tool's `<Tool>Input`)
        self.active: dict[int, str | None] = {}  # schemas being converted -> their TypedDict name, if any

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
        if key in self.active:
            name = self.active[key]
            if name is None:
                return ["Any"]
            self.block.forward[name] = self.block.forward.get(name, 0) + 1
            return [f'"{name}"']
        self.active[key] = None
        try:
            members = self.convert(schema, schema, hint, depth)
        finally:
            del self.active[key]
        if (schema.get("nullable") is True or schema.get("x-nullable") is True) and members != ["Any"]:
            members = _union([members, ["None"]])
        return members

    def convert(self, schema: Mapping[str, Any], key: Mapping[str, Any], hint: str, depth: int) -> list[str]:
        """`type` without the cycle and nullable handling; `key` is the object a TypedDict is cached under."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            parts = ref.split("/")
            named = len(parts) >= 2 and parts[-2] in _DEF_CONTAINERS
            name = _type_name(unquote(parts[-1]).replace("~1", "/").replace("~0", "~")) if named else ""
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
            return _union([_enum_member(v)] for v in values) if isinstance(values, list) else ["Any"]
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
        props = schema.get("properties")
        if not isinstance(props, Mapping) or not props:
            extra = schema.get("additionalProperties", True)
            if extra is False:
                return ["dict[str, Never]"]
            return [f"dict[str, {_fmt(self.type(extra, hint + 'Value', depth + 1))}]"]
        cached = self.block.by_id.get(id(key))
        if cached is not None:
            return [cached[1]]

        title = schema.get("title")
        titled = _type_name(title) if isinstance(title, str) else ""
        base = titled or self.names.get(id(key)) or hint or "Object"
        name = self.block.reserve(base)
        self.active[id(key)] = name
        required = schema.get("required")
        req = {r for r in required if isinstance(r, str)} if isinstance(required, list) else set()
        prefix = titled or hint
        fields = []
        for prop, sub in props.items():
            t = _fmt(self.type(sub, prefix + _type_name(prop), depth + 1))
            fields.append((prop, t if prop in req else f"NotRequired[{t}]", self.doc(sub, with_default=True)))

        desc = schema.get("description")
        desc = inspect.cleandoc(desc) if isinstance(desc, str) else ""
        functional = not all(_is_name(p) for p, _, _ in fields)
        if not functional:
            body = _docstring(desc, "    ") if desc else []
            for prop, t, doc in fields:
                body.append(f"    {prop}: {t}")
                body.extend(_docstring(doc, "    ") if doc else ())
            head = [f"class {name}(TypedDict):"]
        else:  # keys that cannot be attribute names: the functional syntax, docs as comments
            body = ["    {"]
            for prop, t, doc in fields:
                body.extend([f"        # {_one_line(doc)}"] if doc else ())
                body.append(f"        {_py_str(str(prop))}: {t},")
            body += ["    },", ")"]
            head = [f"# {_one_line(desc)}"] if desc else []
            head += [f"{name} = TypedDict(", f"    {_py_str(name)},"]

        # The definition without its name, so identical types from different tools are shared; a recursive
        # type can be shared too when every forward reference to it is its own.
        self_ref = f'"{name}"'
        text = ("F" if functional else "C") + desc + "\n" + "\n".join(body).replace(self_ref, '"\0"')
        shared = self.block.by_body.get((base, text))
        if shared is not None and self.block.forward.get(name, 0) == sum(line.count(self_ref) for line in body):
            self.block.used.discard(name)
            self.block.forward.pop(name, None)
            name = shared
        else:
            self.block.defs[name] = "\n".join([*head, *body])
            self.block.by_body[(base, text)] = name
        self.block.by_id[id(key)] = (key, name)
        return [name]

    def params(self, pascal: str) -> tuple[list[str], list[str], str | None]:
        """A tool's parameter list, its `Args:` lines and a note on how to call it."""
        root = self.root
        obj = self.deref(root)
        if obj is True:
            obj = {}
        if isinstance(obj, Mapping) and isinstance(obj.get("allOf"), list):
            obj = self.merge(obj) or obj
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

        for schema in (root, obj):  # a reference back to the root has no TypedDict to name: `Any`
            self.active[id(schema)] = None
        required = obj.get("required")
        req = [p for p in props if isinstance(required, list) and p in required]
        required_params, optional_params, docs = [], [], []
        for prop in [*req, *(p for p in props if p not in req)]:
            sub = props[prop]
            t = _fmt(self.type(sub, pascal + _type_name(prop), 1))
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


def _signature(name: str, params: list[str], returns: str, doc: str) -> str:
    line = f"    async def {name}({', '.join(params)}) -> {returns}:"
    if len(line) > _WRAP and params:
        sig = [f"    async def {name}(", *(f"        {p}," for p in params), f"    ) -> {returns}:"]
    else:
        sig = [line]
    return "\n".join([*sig, *(_docstring(doc, "        ") if doc else ["        ..."])])


def _render_tool(block: _Block, name: str, spec: ToolSpec) -> str:
    """One method of the connector class; on any conversion error, a permissive fallback."""
    method = sanitize_identifier(name)
    pascal = _type_name(name) or "Tool"
    description = spec.description if isinstance(spec.description, str) else str(spec.description or "")
    description = inspect.cleandoc(description)
    approval = [_APPROVAL_NOTE] if spec.requires_approval else []
    snap = block.snapshot()
    try:
        root = spec.input_schema
        params, docs, note = _Converter(block, root, {id(root): pascal + "Input"}).params(pascal)
        returns = "Any"
        if spec.output_schema is not None:
            output = spec.output_schema
            returns = _fmt(_Converter(block, output).type(output, pascal + "Output", 0))
    except Exception:  # per-tool isolation: one bad schema must not take the whole block down
        block.restore(snap)
        doc = "\n\n".join(p for p in [description, *approval, _FALLBACK_NOTE] if p)
        return _signature(method, ["**kwargs: Any"], "Any", doc)
    args = ["Args:\n" + "\n".join(f"    {d}" for d in docs)] if docs else []
    doc = "\n\n".join(p for p in [description, *approval, *([note] if note else []), *args] if p)
    return _signature(method, params, returns, doc)


class PythonDeclarations:
    """Renders connectors as Python stubs: TypedDicts, then `class <connector>:` of async methods."""

    language = "python"

    def __init__(self, max_depth: int = MAX_DEPTH) -> None:
        self.max_depth = max_depth  # nesting beyond this renders as `Any`; lower it to shorten huge specs

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """Every tool's types (shared and de-duplicated) and one class holding every method."""
        cls = sanitize_identifier(name)
        block = _Block({*_TYPING_NAMES, cls}, self.max_depth)
        methods = [_render_tool(block, tool_name, spec) for tool_name, spec in tools.items()]
        body = "\n\n".join(methods) if methods else "    ..."
        return "\n\n".join([*block.defs.values(), f"class {cls}:\n{body}"])

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: only the types it needs, and its method shown inside `class <connector>:`."""
        return self.connector(connector, {method: spec})
