"""The contract between discovery and the per-language declaration renderers, and what both renderers share.

Shared: local JSON pointers, the names `$ref` targets are given, and `NamedTypes`,
the named type definitions of one rendered block. A describe result must fit in
a model's context, so a block has a size budget (`DESCRIBE_BUDGET` characters):
named types are expanded breadth first (the types a tool uses directly before the
types those use) while they fit, and the rest are declared as opaque JSON objects
under their own names, with a note saying how to describe one of them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol
from urllib.parse import unquote

from codemode.connectors.spec import ToolSpec
from codemode.schema.names import sanitize_identifier, to_pascal_case

__all__ = [
    "COMPACT_THRESHOLD",
    "DESCRIBE_BUDGET",
    "LONG_ENUM",
    "DeclarationRenderer",
    "NamedTypes",
    "Slot",
    "nonspace",
    "omitted_note",
    "ref_name",
    "resolve_pointer",
    "type_name",
    "unique_name",
]

# About 5,000 tokens: several describe results fit in a prompt next to the task, and one method's
# types (its input, its output, and what they use directly) fit in it for all but the densest specs.
DESCRIBE_BUDGET = 20_000
# A connector with more tools than this is described by signatures only: its full types would not fit.
COMPACT_THRESHOLD = 25
# An inline enum with more values is declared as a type of its own (named after where it is used), so
# that, like an object, it can be left out of a block that would otherwise be too long.
LONG_ENUM = 32


class DeclarationRenderer(Protocol):
    """Renders connector tools as declarations in the sandbox's language."""

    language: str  # "python" or "typescript": the fence tag used around declarations

    def connector(self, name: str, tools: Mapping[str, ToolSpec]) -> str:
        """The whole namespace under `name`: every tool's types and signature, or, for a large connector,
        signatures only, with a note on how to see one tool's types."""
        ...

    def method(self, connector: str, method: str, spec: ToolSpec) -> str:
        """One tool: the types it uses and its signature, callable as `connector.method`."""
        ...

    def named_type(self, connector: str, method: str, spec: ToolSpec, path: Sequence[str]) -> str | None:
        """A type named in a tool's declarations (`path[0]`), or one named in that type's own
        declarations (`path[1]`), and so on; None when there is no such type."""
        ...


def pointer_parts(ref: str) -> list[str] | None:
    """The tokens of a local JSON pointer in URI-fragment form (`#/components/schemas/Item`): percent-decoded
    first, then split, then `~1`/`~0` unescaped (RFC 6901 §6); None for anything but a local pointer."""
    if not ref.startswith("#/"):
        return None
    return [raw.replace("~1", "/").replace("~0", "~") for raw in unquote(ref[2:]).split("/")]


def resolve_pointer(root: object, ref: str) -> object | None:
    """The node a local JSON pointer names (`#`, `#/$defs/Item`, with `~0`/`~1` and percent escapes);
    None for an external reference or one that names nothing."""
    if ref == "#":
        return root
    parts = pointer_parts(ref)
    if parts is None:
        return None
    node = root
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def ref_name(ref: str) -> str | None:
    """The definition name a local `$ref` points at (`#/$defs/X`, `#/definitions/X`,
    `#/components/schemas/X`, unescaped), or None for any other pointer."""
    parts = pointer_parts(ref)
    if parts is None:
        return None
    named = len(parts) >= 2 and parts[-2] in ("$defs", "definitions")
    if not named and parts[-3:-1] != ["components", "schemas"]:
        return None
    return parts[-1]


def unique_name(base: str, taken: Container[str], separator: str = "") -> str:
    """`base`, or the first of `base2`, `base3`, ... (with `separator` before the number) not taken."""
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}{separator}{n}"
    return name


@functools.lru_cache(maxsize=4096)
def type_name(*parts: str) -> str:
    """A PascalCase type name from free text (`"simple-user"` -> `SimpleUser`); "" if nothing is left."""
    pieces = [to_pascal_case(s) for p in parts if (s := sanitize_identifier(p).strip("_"))]
    return sanitize_identifier("".join(pieces)) if pieces else ""


def nonspace(text: object) -> int:
    """How many characters of a text are not white space: a lower bound of its length once rendered."""
    return _nonspace(text) if isinstance(text, str) else 0


@functools.lru_cache(maxsize=16384)
def _nonspace(text: str) -> int:
    return len("".join(text.split()))


def omitted_note(hint: str) -> str:
    """The note above the opaque declarations of the types left out to keep a block within budget;
    `hint` is what to describe for more (`"stripe.GetCharge.<TypeName>"`)."""
    return f'Not expanded, to keep this short; for more: codemode.describe("{hint}").'


# ---------------------------------------------------------------------------
# Named types of one block
# ---------------------------------------------------------------------------


def _safe(floor: Callable[[Slot], int], slot: Slot) -> int:
    try:
        return floor(slot)
    except Exception:  # a schema that cannot be read fails when rendered; the bound just stays out of the way
        return 0


# While a block is built, definitions refer to each other by markers, so a type can be used before it
# is known whether it will be expanded, merged with an identical one, or named `Item` or `Item2`.
_MARKER = re.compile("([\x00\x01])([0-9]+)\\1")
_SELF = "\x02"

SlotState = Literal["pending", "expanded", "omitted"]


@dataclass(eq=False)
class Slot:
    """One named type: what it is keyed by and how to render it (both the renderer's business), its
    preferred name and its breadth-first level; after `NamedTypes.finish`, its final name."""

    index: int
    key: object  # kept alive, so its `id` cannot be reused while the block exists
    base: str
    level: int
    payload: Any
    forced: bool
    state: SlotState = "pending"
    body: str = ""
    redirect: Slot | None = None
    name: str = ""

    @property
    def ref(self) -> str:
        """A use of the type, as a type expression (Python may quote it as a forward reference)."""
        return f"\x00{self.index}\x00"

    @property
    def label(self) -> str:
        """The bare name, where a definition names itself."""
        return f"\x01{self.index}\x01"


class NamedTypes:
    """The named types of one block: collected as the renderer meets them, expanded breadth first within
    a character budget, de-duplicated, then named (`Item`, `Item2`, ... never a reserved name)."""

    def __init__(self, reserved: Iterable[str], budget: int) -> None:
        self.reserved = set(reserved)
        self.budget = budget
        self.slots: list[Slot] = []
        self.by_key: dict[int, Slot] = {}
        self.by_content: dict[str, object] = {}
        self.level = 1  # the level of slots created now: 1 while the tools' own types are rendered

    def slot(self, key: object, base: str, payload: Any, *, forced: bool = False) -> Slot:
        """The slot of `key` (by identity), created on first use. A forced slot is always expanded."""
        found = self.by_key.get(id(key))
        if found is not None:
            return found
        slot = Slot(len(self.slots), key, base, self.level, payload, forced)
        self.slots.append(slot)
        self.by_key[id(key)] = slot
        return slot

    def shared(self, content: str, key: object) -> object:
        """The first key met with this `content`, so that equal types met apart (the same long enum
        in two places) share one slot."""
        return self.by_content.setdefault(content, key)

    def snapshot(self) -> int:
        return len(self.slots)

    def restore(self, mark: int) -> None:
        """Forget the slots created since `snapshot()` (a tool that failed, a type left out)."""
        for slot in self.slots[mark:]:
            del self.by_key[id(slot.key)]
        del self.slots[mark:]

    def resolve(self, index: int) -> Slot:
        slot = self.slots[index]
        while slot.redirect is not None:
            slot = slot.redirect
        return slot

    def cost(self, text: str) -> int:
        """The length `text` will have once its markers are names (a bound: a name may get a digit,
        a Python forward reference two quotes)."""
        extra = sum(len(self.slots[int(m.group(2))].base) + 2 - len(m.group()) for m in _MARKER.finditer(text))
        return len(text) + extra

    def mandatory(self, fixed: int, opaque_cost: Callable[[Slot], int]) -> int:
        """The cost of a block before `expand`: `fixed`, the slots already expanded (a tool's own types)
        and the others as opaque."""
        return fixed + sum(self.cost(s.body) if s.state == "expanded" else opaque_cost(s) for s in self.slots)

    def expand(
        self,
        render: Callable[[Slot], str],
        fixed: int,
        opaque_cost: Callable[[Slot], int],
        floor: Callable[[Slot], int] | None = None,
    ) -> None:
        """Render pending slots breadth first while the block stays within budget.

        `fixed` is the cost of everything but the named types; a slot that is not expanded costs
        `opaque_cost(slot)`. A slot that does not fit, or fails to render, is left opaque and the
        slots its rendering created are dropped; smaller slots after it may still fit. `floor(slot)`,
        a lower bound of a slot's cost, spares rendering the slots that cannot fit.
        """
        used = self.mandatory(fixed, opaque_cost)
        i = 0
        while i < len(self.slots):
            slot = self.slots[i]
            i += 1
            if slot.state != "pending":
                continue
            if floor is not None and used + _safe(floor, slot) - opaque_cost(slot) > self.budget:
                slot.state = "omitted"
                continue
            mark = self.snapshot()
            self.level = slot.level + 1
            try:
                body = render(slot)
            except Exception:  # a type that cannot be rendered is shown as opaque, not fatal to the block
                body = None
            delta = 0
            if body is not None:
                delta = self.cost(body) - opaque_cost(slot) + sum(opaque_cost(s) for s in self.slots[mark:])
            if body is not None and used + delta <= self.budget:
                slot.body, slot.state = body, "expanded"
                used += delta
            else:
                self.restore(mark)
                slot.state = "omitted"
        self.level = 1

    def _canonical(self, slot: Slot) -> str:
        def sub(match: re.Match[str]) -> str:
            target = self.resolve(int(match.group(2)))
            return _SELF if target is slot else f"{match.group(1)}{target.index}{match.group(1)}"

        return _MARKER.sub(sub, slot.body)

    def dedupe(self) -> None:
        """Merge expanded types that have the same preferred name and the same definition (per-tool copies
        of one schema), repeating until nothing changes, so identical nested types merge their parents.
        A tool's own type (forced) stays, and an identical nested type merges into it: a `Task` returned by
        one tool and listed by another is one `Task`."""
        changed = True
        while changed:
            changed = False
            seen: dict[tuple[str, str], Slot] = {}
            for slot in sorted(self.slots, key=lambda s: not s.forced):
                if slot.state != "expanded" or slot.redirect is not None:
                    continue
                if slot.forced:
                    seen.setdefault((slot.base, self._canonical(slot)), slot)
                    continue
                key = (slot.base, self._canonical(slot))
                first = seen.setdefault(key, slot)
                if first is not slot:
                    slot.redirect = first
                    changed = True

    def children(self, text: str) -> Iterator[Slot]:
        """The slots `text` refers to, in order of appearance."""
        for match in _MARKER.finditer(text):
            yield self.resolve(int(match.group(2)))

    def finish(self, roots: Sequence[str]) -> list[Slot]:
        """Name every slot reachable from `roots` (texts outside the named types): forced slots first, in
        order, then the others depth first in reading order. Returns the named slots in that order."""
        used = set(self.reserved)

        def take(slot: Slot) -> None:
            slot.name = unique_name(slot.base, used)
            used.add(slot.name)
            order.append(slot)

        order: list[Slot] = []
        forced = [slot for slot in self.slots if slot.forced and slot.redirect is None]
        for slot in forced:
            take(slot)
        seen: set[int] = set()
        # Each root, then each forced slot (normally reached from a root already), depth first.
        pending: list[Iterator[Slot]] = [*(self.children(t) for t in roots), *(iter([s]) for s in forced)]
        for start in pending:
            stack = [start]
            while stack:
                child = next(stack[-1], None)
                if child is None:
                    stack.pop()
                elif child.index not in seen:
                    seen.add(child.index)
                    if not child.name:
                        take(child)
                    if child.state == "expanded":
                        stack.append(self.children(child.body))
        return order

    def dependency_order(self, roots: Sequence[str]) -> list[Slot]:
        """The expanded slots reachable from `roots`, each after the slots it uses (but for cycles)."""
        out: list[Slot] = []
        seen: set[int] = set()
        for text in roots:
            stack: list[tuple[Slot | None, Iterator[Slot]]] = [(None, self.children(text))]
            while stack:
                owner, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    if owner is not None:
                        out.append(owner)
                elif child.index not in seen and child.state == "expanded":
                    seen.add(child.index)
                    stack.append((child, self.children(child.body)))
        return out

    def named(self, text: str, quoted: Callable[[Slot], bool] | None = None) -> str:
        """`text` with its markers replaced by names; a use of a type for which `quoted` says so is
        a quoted forward reference."""

        def sub(match: re.Match[str]) -> str:
            slot = self.resolve(int(match.group(2)))
            if match.group(1) == "\x00" and quoted is not None and quoted(slot):
                return f'"{slot.name}"'
            return slot.name

        return _MARKER.sub(sub, text)
