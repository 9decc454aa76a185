"""Snippets and discovery as a runtime serves them: a run's program saved as a snippet, and the search
and describe answered over the connectors a program runs with (an unavailable one named as such)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import jsonschema

from codemode import codec
from codemode.discovery import Description, SearchOutput
from codemode.discovery import describe as describe_target
from codemode.discovery.index import Index, connector_index
from codemode.discovery.scoring import search_index
from codemode.errors import ExecutionNotFoundError
from codemode.records import Execution, Snippet
from codemode.runtime.setup import Setup
from codemode.sandbox.base import Executor
from codemode.schema.base import DeclarationRenderer
from codemode.store.base import Store

__all__ = ["Catalog", "check_snippet_name", "describe_in", "new_snippet", "renderer_for", "search_in"]


def renderer_for(language: str) -> DeclarationRenderer:
    """Declarations in the language of a sandbox."""
    if language == "javascript":
        from codemode.schema.typescript import TypeScriptDeclarations

        return TypeScriptDeclarations()
    from codemode.schema.python import PythonDeclarations

    return PythonDeclarations()


def check_snippet_name(name: object) -> None:
    """Refuse a snippet name before anything is read or written."""
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise ValueError("A snippet name must be a non-empty string of at most 200 characters.")


def new_snippet(
    name: str, execution: Execution, description: str, input_schema: dict[str, Any] | None
) -> tuple[Snippet, str | None]:
    """The snippet of a run's program, and its input schema as stored (checked to be a JSON Schema first)."""
    schema_json: str | None = None
    if input_schema is not None:
        jsonschema.validators.validator_for(input_schema).check_schema(input_schema)
        schema_json = codec.to_stored(f'The input schema of snippet "{name}"', input_schema)
    snippet = Snippet(
        name=name,
        description=description,
        code=execution.code,
        saved_at=datetime.now(timezone.utc),
        input_schema=input_schema,
        connectors=list(execution.connectors),
    )
    return snippet, schema_json


async def search_in(setup: Setup, query: str, snippets: Sequence[Snippet]) -> SearchOutput:
    """`Runtime.search` over one setup and the runtime's snippets: the setup's index is built once (a
    changed connector set is a new setup, with an index of its own)."""
    index = setup.search_index
    if index is None:
        index = await asyncio.to_thread(_index_of, setup)
    found = search_index(query, index, snippets)
    if not setup.unavailable:
        return found
    return dataclasses.replace(found, unavailable={n: setup.unavailable_message(n) for n in setup.unavailable})


def _index_of(setup: Setup) -> Index:
    """The setup's index, built on a worker thread: at thousands of tools a build takes about half a
    second, which on the event loop would stall every other run. Concurrent first searches share it."""
    with setup.index_lock:
        if setup.search_index is None:
            setup.search_index = connector_index(list(setup.descriptions.values()))
        return setup.search_index


def describe_in(setup: Setup, target: str, snippets: Sequence[Snippet], renderer: DeclarationRenderer) -> Description:
    """`Runtime.describe` over one setup and the runtime's snippets."""
    down = target.split(".")[0]
    if down in setup.unavailable and not any(s.name == target for s in snippets):
        message = setup.unavailable_message(down)
        return Description(path=target, description=None, requires_approval=False, types=message, kind="connector")
    return describe_target(target, list(setup.descriptions.values()), snippets, renderer)


class Catalog:
    """A runtime's snippets and its search and describe. `Runtime` inherits it."""

    # Set and defined by `Runtime`.
    store: Store
    name: str
    setup: Callable[[], Awaitable[Setup]]
    executor: Executor

    @property
    def renderer(self) -> DeclarationRenderer:
        """Declarations in the language of this runtime's sandbox."""
        return renderer_for(self.executor.language)

    async def save_snippet(
        self,
        name: str,
        *,
        execution_id: str,
        description: str = "",
        input_schema: dict[str, Any] | None = None,
    ) -> Snippet:
        """Promote a run's program to a snippet the model can find and re-run."""
        check_snippet_name(name)
        execution = await self.store.get_execution(self.name, execution_id)
        if execution is None:
            raise ExecutionNotFoundError(execution_id, self.name, "save from")
        snippet, schema_json = new_snippet(name, execution, description, input_schema)
        await self.store.save_snippet(self.name, snippet, schema_json)
        return snippet

    async def snippets(self) -> list[Snippet]:
        return await self.store.list_snippets(self.name)

    async def delete_snippet(self, name: str) -> bool:
        return await self.store.delete_snippet(self.name, name)

    async def search(self, query: str) -> SearchOutput:
        """Rank connector methods and snippets for a query, as `codemode.search` does in the sandbox."""
        return await self._search_in(await self.setup(), query)

    async def _search_in(self, setup: Setup, query: str) -> SearchOutput:
        """`search` over one setup (a pass searches the connectors it runs with)."""
        return await search_in(setup, query, await self.snippets())

    async def describe(self, target: str) -> Description:
        """Declarations for a connector, `connector.method` or snippet, as `codemode.describe` gives them."""
        return await self._describe_in(await self.setup(), target)

    async def _describe_in(self, setup: Setup, target: str) -> Description:
        """`describe` over one setup (a pass describes the connectors it runs with)."""
        return describe_in(setup, target, await self.snippets(), self.renderer)
