"""`codemode.describe(target)`: declarations for a snippet, a connector, a method or a type it names."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from codemode.connectors.spec import ConnectorDescription
from codemode.discovery.results import Description
from codemode.discovery.scoring import search
from codemode.records import Snippet
from codemode.schema.base import DeclarationRenderer

__all__ = ["describe"]


def _fence(language: str, code: str) -> str:
    return f"```{language}\n{code}\n```"


def describe(
    target: str,
    connectors: Sequence[ConnectorDescription],
    snippets: Sequence[Snippet],
    renderer: DeclarationRenderer,
) -> Description:
    """Declarations for a snippet, a whole connector, one method, or a type a method uses, in the
    sandbox's language.

    Lookup order follows Cloudflare's code mode: a snippet with that exact name; a connector
    (`"github"`); a method (`"github.create_issue"`, or a bare `"create_issue"`
    on any connector). A miss names the closest paths instead of just failing.
    Beyond Cloudflare's, which ignores what follows `connector.method`, further
    pieces name a type in the method's declarations (`"stripe.GetCharge.Customer"`)
    and then a type in that type's (`"stripe.GetCharge.Customer.Address"`): the
    declarations of a large method leave some types out and say so.
    The renderer keeps every result within its size budget; a connector with
    many tools is shown as signatures only.
    """
    for snippet in snippets:
        if snippet.name == target:
            return Description(
                path=snippet.name,
                description=snippet.description or None,
                requires_approval=False,
                types=f"{snippet.description}\n\n{_fence(renderer.language, snippet.code)}",
                kind="snippet",
            )
    parts = target.split(".")
    conn_name = parts[0]
    method_name = parts[1] if len(parts) > 1 else None
    type_path = [part for part in parts[2:] if part]
    by_name = {c.name: c for c in connectors}
    conn = by_name.get(conn_name)
    if conn is not None and not method_name:
        declarations = _fence(renderer.language, renderer.connector(conn.name, conn.tools))
        return Description(
            path=conn.name,
            description=conn.instructions or None,
            requires_approval=False,
            types="\n\n".join(part for part in (conn.instructions, declarations) if part),
            kind="connector",
        )
    candidates = [conn] if conn is not None else list(connectors)
    wanted = method_name if method_name is not None else target
    for candidate in candidates:
        spec = candidate.tools.get(wanted)
        if spec is None:
            continue
        path = f"{candidate.name}.{wanted}"
        note = ""
        if type_path:
            found = renderer.named_type(candidate.name, wanted, spec, type_path)
            if found is not None:
                return Description(
                    path=f"{path}.{'.'.join(type_path)}",
                    description=None,
                    requires_approval=False,
                    types=_fence(renderer.language, found),
                    kind="type",
                )
            note = f'No type "{".".join(type_path)}" is named in the declarations of {path}; here they are.\n\n'
        return Description(
            path=path,
            description=spec.description or None,
            requires_approval=bool(spec.requires_approval),
            types=note + _fence(renderer.language, renderer.method(candidate.name, wanted, spec)),
            kind="method",
        )
    message = f'"{target}" not found.'
    suggestions = _closest(target, connectors, snippets)
    if suggestions:
        message += " Closest names: " + ", ".join(suggestions) + "."
    message += ' Use codemode.search("...") to find the right name.'
    return Description(path=target, description=None, requires_approval=False, types=message, kind="method")


def _closest(
    target: str, connectors: Sequence[ConnectorDescription], snippets: Sequence[Snippet], n: int = 3
) -> list[str]:
    """Up to `n` likely intended paths: search hits first, then spelling neighbours."""
    found: list[str] = [r.path for r in search(target, connectors, snippets, limit=n).results]
    if len(found) < n:
        names = [s.name for s in snippets] + [f"{c.name}.{m}" for c in connectors for m in c.tools]
        bare = {f"{c.name}.{m}": m for c in connectors for m in c.tools}
        pool = names if "." in target else [*names, *bare.values()]
        for match in difflib.get_close_matches(target, pool, n=n * 2, cutoff=0.6):
            path = match
            if match not in names:  # a bare method name: report its full path
                path = next(p for p, m in bare.items() if m == match)
            if path not in found:
                found.append(path)
            if len(found) >= n:
                break
    return found[:n]
