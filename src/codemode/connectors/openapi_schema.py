"""OpenAPI schemas -> JSON Schema 2020-12, the dialect the runtime validates tool arguments with.

One `SchemaSet` per OpenAPI document converts each schema once. `$ref`s are
never inlined (Stripe inlined is tens of megabytes): a reference to
`#/components/schemas/Name` becomes `#/$defs/Name`, and every tool schema
carries, in its own `$defs`, the converted definitions it can reach. Those
definition objects are shared by all the tools of the document, so they must
be treated as read-only. Cycles need no special care: they stay references.

OpenAPI 3.0 schemas are a dialect of JSON Schema draft 4; they are rewritten
so a 2020-12 validator accepts exactly what the 3.0 document means:

- `nullable: true` adds `"null"` to `type` (and `None` to an `enum`); a
  nullable schema without its own `type` (`allOf`/`oneOf`/`anyOf`/`$ref`)
  becomes `anyOf: [<schema>, {"type": "null"}]`.
- Boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric 2020-12
  form (`minimum: 1, exclusiveMinimum: true` -> `exclusiveMinimum: 1`).
- `example` becomes `examples: [example]`.
- Siblings of a `$ref` are ignored, as 3.0 says, except `description`.
- `discriminator`, `xml`, `externalDocs` and `x-` extensions are dropped: they
  only make schemas bigger.

OpenAPI 3.1 schemas already are 2020-12 and pass through; only their `$ref`s
are rewritten. An external `$ref` or one naming nothing becomes `{}` (any value).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

__all__ = ["SchemaSet", "def_ref", "is_openapi_30"]

DEFS = "$defs"
_DROPPED = frozenset({"discriminator", "xml", "externalDocs"})
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})
_SCHEMA_VALUES = frozenset(
    {
        "items",
        "additionalProperties",
        "not",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "unevaluatedItems",
        "unevaluatedProperties",
        "contentSchema",
    }
)
_SCHEMA_LISTS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_NOTES = ("description", "title", "default", "deprecated")
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not", "$ref")


def is_openapi_30(doc: Mapping[str, Any]) -> bool:
    """Whether a document uses the 3.0 schema dialect (anything that does not say 3.1 or later)."""
    major, _, rest = str(doc.get("openapi", "3.0")).partition(".")
    minor = rest.partition(".")[0]
    return not (major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (3, 1))


def def_ref(key: str) -> str:
    """The `$ref` naming `$defs/<key>` (JSON pointer escapes, then URI escapes)."""
    return "#/$defs/" + quote(key.replace("~", "~0").replace("/", "~1"), safe="!$&'()*+,;=:@-._~")


def _pointer_parts(ref: str) -> list[str] | None:
    """The segments of a local JSON pointer `#/a/b`; None for anything else."""
    if not ref.startswith("#/"):
        return None
    return [p.replace("~1", "/").replace("~0", "~") for p in unquote(ref[2:]).split("/")]


class SchemaSet:
    """The converted schemas of one OpenAPI document, shared by every tool derived from it."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.v30 = is_openapi_30(doc)
        self.defs: dict[str, Any] = {}  # key -> converted definition
        self._deps: dict[str, frozenset[str]] = {}  # key -> keys its definition references directly
        self._keys: dict[tuple[str, ...], str | None] = {}  # pointer segments -> key (None: names nothing)
        self._owners: dict[str, tuple[str, ...]] = {}  # key -> pointer segments
        self._pending: list[tuple[str, Any]] = []
        self._memo: dict[int, tuple[Any, Any, frozenset[str]]] = {}  # id(source) -> (source, converted, refs)
        self._active: set[int] = set()

    # -- public -----------------------------------------------------------

    def convert(self, schema: Any) -> tuple[Any, frozenset[str]]:
        """Convert one schema; returns it with the `$defs` keys it references directly."""
        refs: set[str] = set()
        out = self._node(schema, refs)
        while self._pending:
            key, target = self._pending.pop()
            target_refs: set[str] = set()
            self.defs[key] = self._node(target, target_refs)
            self._deps[key] = frozenset(target_refs)
        return out, frozenset(refs)

    def defs_for(self, refs: Iterable[str]) -> dict[str, Any]:
        """The `$defs` a schema referencing `refs` needs: their transitive closure, in discovery order."""
        seen: dict[str, Any] = {}
        stack = sorted(refs, reverse=True)
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen[key] = self.defs[key]
            stack.extend(sorted((k for k in self._deps[key] if k not in seen), reverse=True))
        return seen

    def resolve(self, node: Any, limit: int = 32) -> Any:
        """Follow a chain of local `$ref`s to the object it names (parameters, bodies, responses); None if none."""
        for _ in range(limit):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            parts = _pointer_parts(node["$ref"])
            node = self._lookup(parts) if parts is not None else None
        return None

    # -- conversion -------------------------------------------------------

    def _lookup(self, parts: list[str]) -> Any:
        node: Any = self.doc
        for part in parts:
            if isinstance(node, Mapping) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    def _key(self, ref: str) -> str | None:
        """The `$defs` key for a reference, scheduling its target's conversion; None when it names nothing."""
        parts = _pointer_parts(ref)
        if parts is None:
            return None
        pointer = tuple(parts)
        if pointer in self._keys:
            return self._keys[pointer]
        target = self._lookup(parts)
        if target is None:
            self._keys[pointer] = None
            return None
        if len(parts) == 3 and parts[:2] == ["components", "schemas"]:
            base = parts[2]
        else:  # a schema elsewhere in the document: a key with a "/", so it never takes a component's name
            base = "/".join(parts[1:] if parts[0] == "components" and len(parts) > 1 else parts)
            base = base if "/" in base else "/" + base
        key, n = base, 1
        while key in self._owners:
            n += 1
            key = f"{base}_{n}"
        self._keys[pointer] = key
        self._owners[key] = pointer
        self._pending.append((key, target))
        return key

    def _node(self, node: Any, refs: set[str]) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, Mapping):
            return {}
        marker = id(node)
        memo = self._memo.get(marker)
        if memo is not None:
            refs.update(memo[2])
            return memo[1]
        if marker in self._active:  # an object cycle in a hand-built document: stop here
            return {}
        self._active.add(marker)
        own: set[str] = set()
        try:
            out = self._convert(node, own)
        finally:
            self._active.discard(marker)
        self._memo[marker] = (node, out, frozenset(own))
        refs.update(own)
        return out

    def _convert(self, node: Mapping[str, Any], refs: set[str]) -> Any:
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = self._key(ref)
            out: dict[str, Any] = {}
            if key is not None:
                out["$ref"] = def_ref(key)
                refs.add(key)
            if self.v30:  # 3.0: a reference replaces its siblings; its description still helps the reader
                if isinstance(node.get("description"), str):
                    out["description"] = node["description"]
                return out
            node = {k: v for k, v in node.items() if k != "$ref"}
        else:
            out = {}
        for k, v in node.items():
            if k.startswith("x-") or k in _DROPPED:
                continue
            if k in _SCHEMA_MAPS and isinstance(v, Mapping):
                out[k] = {name: self._node(sub, refs) for name, sub in v.items()}
            elif k in _SCHEMA_VALUES:
                if isinstance(v, list):  # draft-4 tuple `items`
                    out["prefixItems" if k == "items" else k] = [self._node(s, refs) for s in v]
                else:
                    out[k] = self._node(v, refs)
            elif k in _SCHEMA_LISTS and isinstance(v, list):
                out[k] = [self._node(s, refs) for s in v]
            elif self.v30 and k in ("nullable", "exclusiveMinimum", "exclusiveMaximum", "example"):
                continue  # rewritten below
            else:
                out[k] = v
        if not self.v30:
            return out
        for flag, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            value = node.get(flag)
            if value is True and bound in node:
                out[flag] = out.pop(bound)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[flag] = value  # already the numeric form
        if "example" in node and "examples" not in node:
            out["examples"] = [node["example"]]
        if node.get("nullable") is True or node.get("x-nullable") is True:
            return _nullable(out)
        return out


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` that also accepts null."""
    kind = schema.get("type")
    if any(k in schema for k in _COMBINATORS) or not (kind is None or isinstance(kind, (str, list))):
        notes: dict[str, Any] = {
            k: schema.pop(k) for k in ("description", "title", "default", "deprecated") if k in schema
        }
        return {"anyOf": [schema, {"type": "null"}], **notes}
    if kind is None and "enum" not in schema:
        return schema  # no type constraint: null is already accepted
    if isinstance(kind, str) and kind != "null":
        schema["type"] = [kind, "null"]
    elif isinstance(kind, list) and "null" not in kind:
        schema["type"] = [*kind, "null"]
    enum = schema.get("enum")
    if isinstance(enum, list) and None not in enum:
        schema["enum"] = [*enum, None]
    return schema
