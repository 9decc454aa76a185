"""The `@tool` decorator: a connector method (or a plain function) marked as a tool, made a `ToolSpec`."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from codemode.connectors.signatures import _Signature
from codemode.connectors.spec import ReplayPolicy, RevertFn, ToolContext, ToolSpec

__all__ = ["ToolMethod", "tool"]

F = TypeVar("F", bound=Callable[..., Any])


class ToolMethod:
    """A method marked with `@tool`: turned into a `ToolSpec` per instance."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None,
        description: str | None,
        requires_approval: bool,
        replay: ReplayPolicy,
    ) -> None:
        if replay not in ("log", "reexecute"):
            raise ValueError(f"replay must be 'log' or 'reexecute', not {replay!r}")
        if requires_approval and replay == "reexecute":
            raise ValueError(
                f"Tool {fn.__name__!r} cannot combine requires_approval with replay='reexecute': "
                "an approved action must run exactly once, so its result has to be logged."
            )
        self.fn = fn
        self.name = name or fn.__name__
        self.description = description
        self.requires_approval = requires_approval
        self.replay: ReplayPolicy = replay
        self.revert_fn: Callable[..., Any] | None = None
        self._signature: _Signature | None = None

    def revert(self, fn: F) -> F:
        """Register the undo of this tool, run by `Runtime.rollback`."""
        self.revert_fn = fn
        return fn

    @overload
    def __get__(self, instance: None, owner: type) -> ToolMethod: ...
    @overload
    def __get__(self, instance: object, owner: type) -> Callable[..., Any]: ...
    def __get__(self, instance: object | None, owner: type) -> Any:
        if instance is None:
            return self
        # Plain attribute access calls the function directly, for host-side use and tests.
        return self.fn.__get__(instance, owner)

    @property
    def signature(self) -> _Signature:
        if self._signature is None:
            self._signature = _Signature.of(self.fn)
        return self._signature

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """A decorated plain function stays callable, for host-side use and tests."""
        return self.fn(*args, **kwargs)

    def bind(self, instance: object) -> ToolSpec:
        """The tool of one connector instance."""
        owner = type(instance)
        revert = None if self.revert_fn is None else self.revert_fn.__get__(instance, owner)
        return self._spec(self.fn.__get__(instance, owner), revert)

    def spec(self) -> ToolSpec:
        """The tool of a plain function, not a method: for connectors built from functions."""
        return self._spec(self.fn, self.revert_fn)

    def _spec(self, fn: Callable[..., Any], revert_fn: Callable[..., Any] | None) -> ToolSpec:
        sig = self.signature

        def execute(args: dict[str, Any], ctx: ToolContext) -> Any:
            kwargs = sig.call_kwargs(args, ctx)
            return fn(*[kwargs.pop(name) for name in sig.positional], **kwargs)

        revert: RevertFn | None = None
        if revert_fn is not None:
            undo = revert_fn
            undo_takes_ctx = _accepts_context(undo)

            def revert(args: dict[str, Any], result: Any, ctx: ToolContext) -> Any:
                if undo_takes_ctx:
                    return undo(args, result, ctx)
                return undo(args, result)

        return ToolSpec(
            execute=execute,
            description=self.description if self.description is not None else sig.description,
            input_schema=sig.input_schema,
            output_schema=sig.output_schema,
            requires_approval=self.requires_approval,
            replay=self.replay,
            revert=revert,
            result_type=sig.result_type,
        )


@overload
def tool(fn: F, /) -> F: ...
@overload
def tool(
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    replay: ReplayPolicy = "log",
) -> Callable[[F], F]: ...
def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    replay: ReplayPolicy = "log",
) -> Any:
    """Mark a connector method as a tool.

    The docstring's first paragraph becomes the description and its `Args:`
    section the parameter descriptions; type hints become the JSON Schema
    (via pydantic). A parameter annotated `ToolContext` receives the run's
    context and is not part of the schema.
    """

    def wrap(f: Callable[..., Any]) -> ToolMethod:
        return ToolMethod(f, name=name, description=description, requires_approval=requires_approval, replay=replay)

    if fn is not None:
        return wrap(fn)
    return wrap


def _accepts_context(fn: Callable[..., Any]) -> bool:
    """Whether a revert (a bound method or a plain function) takes `(args, result, ctx)`."""
    params = list(inspect.signature(fn).parameters.values())
    return len(params) >= 3 or any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
