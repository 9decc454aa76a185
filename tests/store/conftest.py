"""The store contract suite: every `Store` operation and transition, run against every backend.

Backends are factories `(directory) -> Store`. The built-in ones are listed in `BACKENDS`; a third-party
store joins the suite with `CODEMODE_STORE_FACTORIES=package.module:factory[,other:factory]` (each factory
takes a fresh `pathlib.Path` directory it may use and returns an unopened store).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from codemode.store.base import Store

from conftest import new_store

StoreFactory = Callable[[Path], Store]


def _sqlite(directory: Path) -> Store:
    return new_store("sqlite", directory / "contract.db")


def _postgres(directory: Path) -> Store:
    """A schema of its own per test directory, on the suite's real PostgreSQL server."""
    return new_store("postgres", directory)


BACKENDS: dict[str, StoreFactory] = {"sqlite": _sqlite, "postgres": _postgres}


def _external() -> dict[str, StoreFactory]:
    found: dict[str, StoreFactory] = {}
    for spec in filter(None, os.environ.get("CODEMODE_STORE_FACTORIES", "").split(",")):
        module, _, attribute = spec.strip().partition(":")
        found[spec.strip()] = getattr(importlib.import_module(module), attribute)
    return found


ALL_BACKENDS = {**BACKENDS, **_external()}


@pytest.fixture(params=sorted(ALL_BACKENDS))
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], Store]:
    """A factory of stores sharing one database: a second store is a second host on the same data."""
    factory = ALL_BACKENDS[request.param]
    return lambda: factory(tmp_path)


@pytest.fixture
async def store(store_factory: Callable[[], Store]) -> AsyncIterator[Store]:
    opened = store_factory()
    await opened.open()
    yield opened
    await opened.close()
