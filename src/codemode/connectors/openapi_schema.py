"""OpenAPI schemas -> JSON Schema 2020-12, the dialect the runtime validates tool arguments with.

One `SchemaSet` per OpenAPI document converts each schema once. `$ref`s are
never inlined (Stripe inlined is tens of megabytes): a reference to
`#/components/schemas/Name` becomes `#/$defs/Name`, and every tool schema
carries, in its own `$defs`, the converted definitions it can reach. Those
definition objects are shared by all the tools of the document, so they must
be treated as read-only. Recursion through properties or items needs no care:
it stays a reference.

Schemas are converted for a direction, `request` (arguments) or `response`
(results), because OpenAPI says a `readOnly` property is only ever required in
a response and a `writeOnly` one only in a request: `required` drops the
other direction's properties. Schemas without such properties are shared by
both directions.

OpenAPI 3.0 schemas are a dialect of JSON Schema draft 4; they are rewritten
so a 2020-12 validator accepts exactly what the 3.0 document means:

- `nullable: true` adds `"null"` to `type` (and `None` to an `enum`); a
  nullable schema without its own `type` (`allOf`/`oneOf`/`anyOf`/`$ref`)
  becomes `anyOf: [<schema>, {"type": "null"}]`.
- Boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric 2020-12
  form (`minimum: 1, exclusiveMinimum: true` -> `exclusiveMinimum: 1`).
- `example` becomes `examples: [example]`.
- Siblings of a `$ref` are ignored, as 3.0 says, except `description` and
  `nullable: true` (documents use it to mean "this reference, or null").
- `discriminator`, `xml`, `externalDocs` and `x-` extensions are dropped: they
  only make schemas bigger.

OpenAPI 3.1 schemas already are 2020-12 and pass through; only their `$ref`s
are rewritten. An external `$ref` or one naming nothing becomes `{}` (any
value), with a warning; so does a reference that loops back to its own
definition without descending into a property or an item (`A: {allOf: [$ref:
A]}`), which would send a validator into endless recursion.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Literal
from urllib.parse import quote

from codemode.schema.base import pointer_parts, resolve_pointer, unique_name

__all__ = ["Direction", "SchemaSet", "is_openapi_30"]

Direction = Literal["request", "response"]

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
# Keywords whose subschemas apply to the instance itself rather than to a part of it: a reference
# cycle through these alone never reaches a smaller value, so validating it would never end.
_IN_PLACE = frozenset({"allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas"})
_SUBSCHEMAS = _SCHEMA_MAPS | _SCHEMA_VALUES | _SCHEMA_LISTS
_COMBINATORS = ("allOf", "anyOf", "oneOf", "not", "$ref")
_NOTES = ("description", "title", "default", "deprecated")
# The property flag that keeps a required property out of `required`, per direction.
_ONE_WAY = {"request": "readOnly", "response": "writeOnly"}


def is_openapi_30(doc: Mapping[str, Any]) -> bool:
    """Whether a document uses the 3.0 schema dialect (anything that does not say 3.1 or later)."""
    major, _, rest = str(doc.get("openapi", "3.0")).partition(".")
    minor = rest.partition(".")[0]
    return not (major.isdigit() and minor.isdigit() and (int(major), int(minor)) >= (3, 1))


def _def_ref(key: str) -> str:
    """The `$ref` naming `$defs/<key>` (JSON pointer escapes, then URI escapes)."""
    return "#/$defs/" + quote(key.replace("~", "~0").replace("/", "~1"), safe="!$&'()*+,;=:@-._~")


def _subschemas(node: Mapping[str, Any], keywords: frozenset[str]) -> Iterator[Any]:
    """The subschemas of `node` under `keywords`, whatever their container (one, a list or a map)."""
    for k, v in node.items():
        if k not in keywords:
            continue
        if isinstance(v, Mapping) and k in _SCHEMA_MAPS:
            yield from v.values()
        elif isinstance(v, list):
            yield from v
        else:
            yield v


class SchemaSet:
    """The converted schemas of one OpenAPI document, shared by every tool derived from it."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.doc = doc
        self.v30 = is_openapi_30(doc)
        self.defs: dict[Direction, dict[str, Any]] = {"request": {}, "response": {}}  # key -> converted
        self._deps: dict[str, tuple[str, ...]] = {}  # key -> keys its definition references, in reverse order
        self._keys: dict[str, str | None] = {}  # $ref -> key (None: names nothing)
        self._targets: dict[str, Any] = {}  # key -> the schema it names
        self._pending: list[tuple[str, Direction]] = []
        # (id(source), direction or None when the result is the same both ways, cycle home) -> result
        self._memo: dict[tuple[int, Direction | None, str | None], tuple[Any, Any, frozenset[str]]] = {}
        self._active: set[int] = set()
        self._one_way: dict[int, tuple[Any, bool]] = {}  # id(source) -> (source, whether direction matters)
        self._in_place: dict[str, frozenset[str]] = {}

    # -- public -----------------------------------------------------------

    def convert(self, schema: Any, direction: Direction) -> tuple[Any, frozenset[str]]:
        """Convert one schema; returns it with the `$defs` keys it references directly."""
        refs: set[str] = set()
        out = self._node(schema, refs, direction, None)
        while self._pending:
            key, way = self._pending.pop()
            target_refs: set[str] = set()
            self.defs[way][key] = self._node(self._targets[key], target_refs, way, key)
            self._deps[key] = tuple(sorted(target_refs, reverse=True))
        return out, frozenset(refs)

    def defs_for(self, refs: Iterable[str], direction: Direction) -> dict[str, Any]:
        """The `$defs` a schema referencing `refs` needs: their transitive closure, in discovery order."""
        defs = self.defs[direction]
        seen: dict[str, Any] = {}
        stack = sorted(refs, reverse=True)
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen[key] = defs[key]
            stack.extend(k for k in self._deps[key] if k not in seen)
        return seen

    def resolve(self, node: Any, limit: int = 32) -> Any:
        """Follow a chain of local `$ref`s to the object it names (parameters, bodies, responses); None if none."""
        for _ in range(limit):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            node = resolve_pointer(self.doc, node["$ref"]) if node["$ref"].startswith("#/") else None
        return None

    # -- references -------------------------------------------------------

    def _key(self, ref: str) -> str | None:
        """The `$defs` key for a reference; None when it names nothing here (with a warning, once)."""
        if ref in self._keys:
            return self._keys[ref]
        target = resolve_pointer(self.doc, ref) if ref.startswith("#/") else None
        if target is None:
            self._keys[ref] = None
            what = "names nothing in the document" if ref.startswith("#") else "is external (not supported)"
            warnings.warn(f"OpenAPI $ref {ref!r} {what}: it accepts any value.", stacklevel=2)
            return None
        parts = pointer_parts(ref) or []
        if len(parts) == 3 and parts[:2] == ["components", "schemas"]:
            base = parts[2]
        else:  # a schema elsewhere in the document: a key with a "/", so it never takes a component's name
            base = "/".join(parts[1:] if parts[0] == "components" and len(parts) > 1 else parts)
            base = base if "/" in base else "/" + base
        key = unique_name(base, self._targets, "_")
        self._keys[ref] = key
        self._targets[key] = target
        return key

    def _schedule(self, keys: Iterable[str], direction: Direction) -> None:
        """Convert the definitions of `keys` for `direction` too (before `convert` returns), once each."""
        defs = self.defs[direction]
        for key in keys:
            if key not in defs:
                defs[key] = None  # a placeholder until converted
                self._pending.append((key, direction))

    def _in_place_refs(self, key: str) -> frozenset[str]:
        """The keys a definition references in place (not inside a property or an item)."""
        found = self._in_place.get(key)
        if found is None:
            keys: set[str] = set()
            seen: set[int] = set()
            stack = [self._targets[key]]
            while stack:
                node = stack.pop()
                if not isinstance(node, Mapping) or id(node) in seen:
                    continue
                seen.add(id(node))
                ref = node.get("$ref")
                if isinstance(ref, str):
                    target = self._key(ref)
                    keys.update([target] if target is not None else [])
                    if self.v30:  # a 3.0 reference replaces its siblings
                        continue
                stack.extend(_subschemas(node, _IN_PLACE))
            found = self._in_place[key] = frozenset(keys)
        return found

    def _loops(self, start: str, home: str) -> bool:
        """Whether `start` leads back to the definition `home` through in-place references only."""
        stack, seen = [start], set()
        while stack:
            key = stack.pop()
            if key == home:
                return True
            if key not in seen:
                seen.add(key)
                stack.extend(self._in_place_refs(key))
        return False

    # -- conversion -------------------------------------------------------

    def _directional(self, node: Mapping[str, Any]) -> bool:
        """Whether `node` (or an inline subschema) requires a `readOnly` or `writeOnly` property."""
        found = self._one_way.get(id(node))
        if found is not None:
            return bool(found[1])
        self._one_way[id(node)] = (node, False)  # an object cycle in a hand-built document ends here
        props = node.get("properties")
        required = node.get("required")
        result = (
            isinstance(props, Mapping)
            and isinstance(required, list)
            and any(self._flag(props.get(r), "readOnly") or self._flag(props.get(r), "writeOnly") for r in required)
        ) or any(isinstance(sub, Mapping) and self._directional(sub) for sub in _subschemas(node, _SUBSCHEMAS))
        self._one_way[id(node)] = (node, result)
        return result

    def _flag(self, schema: Any, flag: str) -> bool:
        """Whether a property's schema (or what its `$ref` names) says `flag: true`."""
        if isinstance(schema, Mapping) and schema.get(flag) is True:
            return True
        target = self.resolve(schema)
        return isinstance(target, Mapping) and target.get(flag) is True

    def _node(self, node: Any, refs: set[str], direction: Direction, home: str | None) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, Mapping):
            return {}
        marker = (id(node), direction if self._directional(node) else None, home)
        memo = self._memo.get(marker)
        if memo is not None:
            refs.update(memo[2])
            self._schedule(memo[2], direction)  # a result shared by both directions may be new to this one
            return memo[1]
        if id(node) in self._active:  # an object cycle in a hand-built document: stop here
            return {}
        self._active.add(id(node))
        own: set[str] = set()
        try:
            out = self._convert(node, own, direction, home)
        finally:
            self._active.discard(id(node))
        self._memo[marker] = (node, out, frozenset(own))
        refs.update(own)
        return out

    def _convert(self, node: Mapping[str, Any], refs: set[str], direction: Direction, home: str | None) -> Any:
        out: dict[str, Any] = {}
        ref = node.get("$ref")
        if isinstance(ref, str):
            key = self._key(ref)
            if key is not None and home is not None and self._loops(key, home):
                warnings.warn(
                    f"OpenAPI schema {home!r}: its $ref {ref!r} leads back to it without going into a property "
                    "or an item, so validating it would never end: it accepts any value there.",
                    stacklevel=2,
                )
                key = None
            if key is not None:
                out["$ref"] = _def_ref(key)
                refs.add(key)
                self._schedule((key,), direction)
            if self.v30:  # 3.0: a reference replaces its siblings, but for its description and `nullable`
                if isinstance(node.get("description"), str):
                    out["description"] = node["description"]
                return _nullable(out) if node.get("nullable") is True and out.get("$ref") else out
            node = {k: v for k, v in node.items() if k != "$ref"}
        for k, v in node.items():
            if k.startswith("x-") or k in _DROPPED:
                continue
            inner = home if k in _IN_PLACE else None
            if k in _SCHEMA_MAPS and isinstance(v, Mapping):
                out[k] = {name: self._node(sub, refs, direction, inner) for name, sub in v.items()}
            elif k in _SCHEMA_VALUES:
                if isinstance(v, list):  # draft-4 tuple `items`
                    out["prefixItems" if k == "items" else k] = [self._node(s, refs, direction, None) for s in v]
                else:
                    out[k] = self._node(v, refs, direction, inner)
            elif k in _SCHEMA_LISTS and isinstance(v, list):
                out[k] = [self._node(s, refs, direction, inner) for s in v]
            elif self.v30 and k in ("nullable", "exclusiveMinimum", "exclusiveMaximum", "example"):
                continue  # rewritten below
            else:
                out[k] = v
        props, required = node.get("properties"), out.get("required")
        if isinstance(props, Mapping) and isinstance(required, list):
            kept = [r for r in required if not self._flag(props.get(r), _ONE_WAY[direction])]
            if len(kept) < len(required):
                out["required"] = kept
                if not kept:
                    del out["required"]
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
        notes: dict[str, Any] = {k: schema.pop(k) for k in _NOTES if k in schema}
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
