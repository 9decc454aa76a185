"""Finding what a command works on: the application's runtime (`--app`) or just its store (`--db`/`--dsn`)."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from codemode.runtime.runtime import Runtime
from codemode.store.base import Store

__all__ = ["AppLoadError", "Target", "load_runtime", "open_target"]


class AppLoadError(Exception):
    """`--app`, `--db` or `--dsn` does not lead to a runtime or a store; the message says what to fix."""


async def load_runtime(spec: str) -> Runtime:
    """Import `module:attribute` (the current directory first on sys.path, as uvicorn does) and return
    the `Runtime` it names, calling it first when it is a zero-argument factory (sync or async)."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise AppLoadError(
            f'--app "{spec}" is not of the form module:attribute (for example "myapp.agent:runtime", '
            "a codemode.Runtime or a function without arguments that returns one)."
        )
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise AppLoadError(
                f'--app "{spec}": no module "{module_name}" importable from {cwd} '
                "(run the command from your project's directory, or install the package)."
            ) from exc
        raise AppLoadError(f'--app "{spec}": importing "{module_name}" failed: {exc}') from exc
    value: object = module
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise AppLoadError(f'--app "{spec}": module "{module_name}" has no attribute "{attribute}".')
        value = getattr(value, part)
    if not isinstance(value, Runtime):
        if not callable(value):
            raise AppLoadError(
                f'--app "{spec}" is a {type(value).__name__}, not a codemode.Runtime or a function returning one.'
            )
        try:
            value = value()
        except TypeError as exc:
            raise AppLoadError(f'--app "{spec}": calling it without arguments failed: {exc}') from exc
        if inspect.isawaitable(value):
            value = await value
    if not isinstance(value, Runtime):
        raise AppLoadError(f'--app "{spec}" returned a {type(value).__name__}, not a codemode.Runtime.')
    return value


def open_store(db: str | None, dsn: str | None) -> Store:
    """The store named by `--db`/`--dsn`; without either, the runtime's default `./codemode.db` if it exists."""
    if db is not None and dsn is not None:
        raise AppLoadError("Pass either --db (a SQLite file) or --dsn (PostgreSQL), not both.")
    if dsn is not None:
        try:
            from codemode.store.postgres import PostgresStore

            return PostgresStore(dsn)
        except ImportError as exc:  # pragma: no cover - the postgres extra is part of dev
            raise AppLoadError(f"--dsn needs the PostgreSQL driver: pip install 'codemode[postgres]' ({exc})") from exc
    from codemode.store.sqlite import SqliteStore

    path = Path(db if db is not None else "codemode.db")
    if not path.exists():
        where = f'"{path}"' if db is not None else f"codemode.db in {os.getcwd()}"
        raise AppLoadError(
            f"No codemode database at {where}: pass --db PATH (the file your Runtime's SqliteStore uses), "
            "--dsn for PostgreSQL, or --app module:attribute to use your application's runtime."
        )
    return SqliteStore(path)


@dataclass
class Target:
    """What a command works on: a store and the runtime name in it, and the runtime when `--app` gave one."""

    store: Store
    name: str
    runtime: Runtime | None = None


@asynccontextmanager
async def open_target(
    app: str | None, db: str | None, dsn: str | None, name: str | None, *, need_runtime: bool
) -> AsyncIterator[Target]:
    """Open the runtime (or only the store) for one command and close it afterwards."""
    if app is None:
        if need_runtime:
            raise AppLoadError(
                "This command runs connectors (an approved action, a revert), so it needs your application's "
                "runtime: pass --app module:attribute (a codemode.Runtime or a zero-argument factory), "
                "or set CODEMODE_APP."
            )
        store = open_store(db, dsn)
        try:
            await store.open()
        except Exception as exc:
            raise AppLoadError(f"Could not open the store: {exc}") from exc
        try:
            yield Target(store, name or "default")
        finally:
            await store.close()
        return
    if db is not None or dsn is not None:
        raise AppLoadError("--app brings its own store: leave out --db and --dsn.")
    runtime = await load_runtime(app)
    if name is not None and name != runtime.name:
        raise AppLoadError(f'--name "{name}" differs from the runtime\'s own name "{runtime.name}": leave --name out.')
    async with runtime:
        yield Target(runtime.store, runtime.name, runtime)
