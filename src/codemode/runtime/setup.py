"""The connector set a runtime runs with: each connector described on its own, the unreachable ones
named (and described again by a later run) rather than failing every run, and the per-tool argument
validators and result adapters every pass shares."""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import jsonschema
from jsonschema.exceptions import best_match
from pydantic import TypeAdapter

from codemode import codec
from codemode.connectors.base import Connector
from codemode.connectors.namespaces import validate_namespace_name
from codemode.connectors.spec import ConnectorDescription, ToolSpec
from codemode.discovery.index import Index
from codemode.errors import ConnectorUnavailableError
from codemode.runtime.arguments import QuickCheck, quick_check
from codemode.sandbox.base import Namespace

__all__ = ["Setup", "Setups", "check_connector_names", "describe_all"]

log = logging.getLogger("codemode")


@dataclass
class Setup:
    """The resolved connector set of a runtime: described once, reused by every pass."""

    connectors: dict[str, Connector]
    descriptions: dict[str, ConnectorDescription]
    namespaces: list[Namespace]
    validators: dict[tuple[str, str], Any] = field(default_factory=dict)
    # Per tool, beside its validator: a quick test accepting the common valid arguments (see `arguments`).
    quick_checks: dict[tuple[str, str], QuickCheck | None] = field(default_factory=dict)
    result_adapters: dict[tuple[str, str], TypeAdapter[Any] | None] = field(default_factory=dict)
    # Connectors whose service could not be reached when this setup was made: left out of `connectors`,
    # retried by the next `Runtime.setup()`.
    unavailable: dict[str, ConnectorUnavailableError] = field(default_factory=dict)
    # The search index of `descriptions`, built by the first search and kept as long as this setup;
    # the lock makes concurrent first searches share one build (see `catalog.search_in`).
    search_index: Index | None = None
    index_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def configured(self, name: str) -> bool:
        """The runtime has this connector, reachable or not."""
        return name in self.connectors or name in self.unavailable

    def namespaces_for(self, code: str) -> list[Namespace]:
        """The namespaces a program gets: every healthy connector's, and for an unavailable one the
        methods `code` names on it (a namespace's methods are fixed before the program starts, and its
        tool list is unknown), so those calls reach the host and fail there with the cause."""
        if not self.unavailable:
            return self.namespaces
        extra = []
        for name in self.unavailable:
            named = re.findall(rf"(?<![\w$.]){re.escape(name)}\s*\??\.\s*([A-Za-z][\w$]*)", code)
            extra.append(Namespace(name, frozenset(named)))
        return [*self.namespaces, *extra]

    def unavailable_message(self, name: str) -> str:
        """What the model is told about a connector that is down: the cause, and what to do."""
        return (
            f'Connector "{name}" is unavailable: {self.unavailable[name].reason}. Its tools cannot be listed or '
            "called in this run; try again in a later run, or tell the user this service is down."
        )

    def validator(self, connector: str, method: str, spec: ToolSpec) -> Any:
        """A compiled JSON Schema validator per tool; None when the tool's schema is itself invalid."""
        key = (connector, method)
        if key not in self.validators:
            try:
                schema = dict(spec.input_schema)
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
                self.quick_checks[key] = quick_check(schema)
                self.validators[key] = cls(schema)
            except Exception as exc:  # a connector bug must not make the tool uncallable
                log.warning(
                    "codemode: %s.%s has an invalid input schema, arguments are not validated: %s",
                    connector,
                    method,
                    exc,
                )
                self.validators[key] = None
        return self.validators[key]

    def invalid_arguments(self, namespace: str, method: str, spec: ToolSpec, args: Any) -> str | None:
        """Why `args` do not fit the tool's input schema, or None when they do.

        Unknown names come first, with the closest known one ("did you mean"), since a misspelled
        argument is what also makes a required one look missing; arguments the host supplies
        (`ToolSpec.bound`) are refused by name."""
        label = f"{namespace}.{method}"
        see = f'See codemode.describe("{label}") for the expected arguments.'
        if isinstance(args, Mapping) and spec.bound:
            given = [name for name in spec.bound if name in args]
            if given:
                names = ", ".join(f'"{name}"' for name in given)
                return (
                    f"Invalid arguments for {label}: {names} is supplied by the application, not by the program; "
                    f"call {label} without it. {see}"
                )
        validator = self.validator(namespace, method, spec)
        if validator is None:
            return None
        quick = self.quick_checks.get((namespace, method))
        if quick is not None and quick(args):
            return None  # surely valid: the full validator would find nothing
        try:
            errors = list(validator.iter_errors(codec.schema_view(args)))
        except (TypeError, ValueError) as exc:
            return f"Invalid arguments for {label}: {exc}"
        if not errors:
            return None
        unknown = _unknown_names(errors)
        error = best_match(errors)
        if unknown is None and error.validator == "additionalProperties":  # inside a union (`X | None`)
            unknown = _unknown_names([error])
        if unknown:
            return f"Invalid arguments for {label}: {unknown}. {see}"
        where = "".join(f"[{p!r}]" for p in error.absolute_path) or "arguments"
        return f"Invalid arguments for {label}: {where}: {error.message}. {see}"

    def result_adapter(self, connector: str, method: str, spec: ToolSpec) -> TypeAdapter[Any] | None:
        """The tool's declared return type as a pydantic adapter (None without one)."""
        key = (connector, method)
        if key not in self.result_adapters:
            try:
                self.result_adapters[key] = None if spec.result_type is None else TypeAdapter(spec.result_type)
            except Exception:  # an annotation pydantic cannot use converts nothing
                self.result_adapters[key] = None
        return self.result_adapters[key]


async def describe_all(candidates: Sequence[Connector], previous: Setup | None) -> Setup:
    """Describe every one of `candidates`, each on its own, reusing what `previous` described: a connector whose
    service is down is named in `Setup.unavailable`; a mistake in a connector itself raises."""
    known = previous.descriptions if previous is not None else {}

    async def one(connector: Connector) -> ConnectorDescription:
        return known.get(connector.name) or await _describe(connector)

    found = await asyncio.gather(*(one(c) for c in candidates), return_exceptions=True)
    descriptions: dict[str, ConnectorDescription] = {}
    connectors: dict[str, Connector] = {}
    unavailable: dict[str, ConnectorUnavailableError] = {}
    for connector, result in zip(candidates, found, strict=True):
        if isinstance(result, ConnectorUnavailableError):
            log.warning(
                "codemode: connector %r is unavailable, tried again next run: %s", result.connector, result.reason
            )
            unavailable[connector.name] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            descriptions[result.name] = result
            connectors[result.name] = connector
    # The same descriptions (a retry that found the same connectors down) keep the search index.
    before = [*previous.descriptions.items()] if previous is not None else []
    same = len(before) == len(descriptions) and all(
        name == n and d is desc for (name, d), (n, desc) in zip(before, descriptions.items(), strict=True)
    )
    return Setup(
        connectors=connectors,
        descriptions=descriptions,
        namespaces=[Namespace(d.name, frozenset(d.tools)) for d in descriptions.values()],
        validators=previous.validators if previous is not None else {},
        quick_checks=previous.quick_checks if previous is not None else {},
        result_adapters=previous.result_adapters if previous is not None else {},
        unavailable=unavailable,
        search_index=previous.search_index if previous is not None and same else None,
    )


def check_connector_names(connectors: Sequence[Connector]) -> None:
    """Each connector's name is a valid namespace, and no two share one."""
    seen: set[str] = set()
    for connector in connectors:
        cname = validate_namespace_name(getattr(connector, "name", None))
        if cname in seen:
            raise ValueError(
                f'Duplicate connector name "{cname}": each connector needs a unique namespace in the sandbox.'
            )
        seen.add(cname)


class Setups:
    """A runtime's `Setup`, described once and memoized once every connector is described (see
    `Runtime.setup`): the unavailable connectors are described again by later calls, one attempt at a
    time, and a call waits for that attempt at most `wait` seconds."""

    def __init__(self, connectors: Sequence[Connector]) -> None:
        self.connectors = connectors
        self.current: Setup | None = None
        self._lock = asyncio.Lock()
        self._retry: asyncio.Task[None] | None = None  # describing the unavailable connectors again

    async def get(self, wait: float) -> Setup:
        current = self.current
        if current is not None and not current.unavailable:
            return current
        if current is None:
            async with self._lock:
                if self.current is None:
                    self.current = await describe_all(self.connectors, None)
                return self.current
        retry = self._retry
        if retry is not None and retry.done():
            self._retry = None
            if not retry.cancelled() and retry.exception() is not None:
                raise cast(BaseException, retry.exception())  # a connector's own mistake, found on the retry
        loop = asyncio.get_running_loop()
        if retry is None or retry.done() or retry.get_loop() is not loop:
            retry = self._retry = loop.create_task(self._retry_unavailable(current))
        await asyncio.wait({retry}, timeout=wait)
        if retry.done() and not retry.cancelled() and retry.exception() is not None:
            self._retry = None
            raise cast(BaseException, retry.exception())
        assert self.current is not None
        return self.current

    async def _retry_unavailable(self, previous: Setup) -> None:
        renewed = await describe_all(self.connectors, previous)
        if self.current is previous:
            self.current = renewed


# What a connector's describe() raises for a developer's mistake (a name collision, a bad schema or
# document): it must reach the developer, not be reported to the model as a service outage.
# A missing optional dependency (ImportError) is one too: the developer installs an extra.
_SETUP_MISTAKES = (ValueError, TypeError, LookupError, AttributeError, NotImplementedError, ImportError)


async def _describe(connector: Connector) -> ConnectorDescription:
    try:
        return await connector.describe()
    except (ConnectorUnavailableError, *_SETUP_MISTAKES):
        raise
    except Exception as exc:  # the service behind the connector: a dead server, a refused connection
        raise ConnectorUnavailableError(connector.name, exc) from exc


def _unknown_names(errors: Sequence[jsonschema.ValidationError]) -> str | None:
    """Names an object does not allow (`additionalProperties: false`), each with the closest name it
    does allow, and the required names that are missing beside them; None when none is unknown."""
    for error in sorted(errors, key=lambda e: len(e.absolute_path)):
        schema, instance = error.schema, error.instance
        if error.validator != "additionalProperties" or not isinstance(schema, Mapping):
            continue
        if not isinstance(instance, Mapping):
            continue
        known = [str(k) for k in schema.get("properties") or {}]
        patterns = [str(p) for p in schema.get("patternProperties") or {}]
        extra = [str(k) for k in instance if k not in known and not any(re.search(p, str(k)) for p in patterns)]
        if not extra:
            continue
        top = not error.absolute_path
        noun = "argument" if top else "key"
        where = "" if top else " in " + "".join(f"[{p!r}]" for p in error.absolute_path)
        parts = []
        for name in extra[:5]:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else ""
            parts.append(f'unknown {noun} "{name}"{where}{hint}')
        text = "; ".join(parts)
        required = schema.get("required") or []
        missing = [str(r) for r in required if r not in instance]
        if missing:
            text += f"; missing required {noun}{'s' if len(missing) > 1 else ''} " + ", ".join(
                f'"{m}"' for m in missing
            )
        if known:
            shown = ", ".join(known[:30]) + (", ..." if len(known) > 30 else "")
            text += f". Allowed {noun}s: {shown}"
        else:
            text += f". It takes no {noun}s"
        return text
    return None
