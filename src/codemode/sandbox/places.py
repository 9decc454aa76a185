"""Places under a cap for sandbox processes, shared by every loop and thread, that nesting cannot deadlock.

A run of a program takes a place (a process or worker) before it starts, and waits while every place
is taken. A snippet a program runs (`codemode.run`) is a run of its own that needs a place while its
parent holds one, so a plain cap deadlocks as soon as every holder waits on a snippet. The rule here:
a place is handed beyond the cap only when every run holding one waits on a snippet run of its own
(no place would ever free up otherwise), and then to the deepest waiting snippet. So the excess is
at most one place per nesting level, and `MAX_NESTING` bounds the levels.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import threading

__all__ = ["MAX_NESTING", "NESTED_TOO_DEEP", "Holder", "Places", "holder_for"]

MAX_NESTING = 8  # how deep snippets may run snippets (a snippet that runs itself would never end)
NESTED_TOO_DEEP = (
    f"codemode.run nests too deeply: a snippet may run other snippets at most {MAX_NESTING} levels down. A "
    "snippet that runs itself never ends; call the connectors directly instead."
)


@dataclasses.dataclass(eq=False)
class Holder:
    """One run's claim on a place; a snippet's run points at the run that started it."""

    owner: object  # the executor: a run of another one counts there, not here
    parent: Holder | None
    depth: int
    nested: int = 0  # snippet runs this run has started that have not ended (waiting or running)
    ended: bool = False


CURRENT: contextvars.ContextVar[Holder | None] = contextvars.ContextVar("codemode_sandbox_run", default=None)


def holder_for(owner: object) -> Holder:
    """The holder of a new run of `owner`: nested under the run whose call started it, if any."""
    parent = CURRENT.get()
    if parent is not None and parent.owner is not owner:
        parent = None
    return Holder(owner, parent, 0 if parent is None else parent.depth + 1)


@dataclasses.dataclass(eq=False)
class _Waiter:
    holder: Holder
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]
    order: int
    granted: bool = False


class Places:
    """The cap, the runs holding a place, and the runs waiting for one.

    Guarded by a lock and waking waiters on their own loops, so one executor can serve every loop."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._lock = threading.Lock()
        self._alive = 0  # places taken: by runs, by processes still dying
        self._busy: set[Holder] = set()  # runs holding (or starting) a place
        self._waiters: list[_Waiter] = []
        self._order = 0

    async def lease(self, holder: Holder) -> None:
        """Wait for a place under the cap; it is reserved for `holder` until `unlease`."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._order += 1
            waiter = _Waiter(holder, loop, loop.create_future(), self._order)
            self._waiters.append(waiter)
            self._grant()
            if waiter.granted:  # a place was free: no need to wait a loop iteration for the wake-up
                return
        try:
            await waiter.future
        except BaseException:
            with self._lock:
                if not waiter.granted:
                    self._waiters.remove(waiter)
                else:
                    self._busy.discard(holder)
                    self._alive -= 1
                self._grant()
            raise

    def unlease(self, holder: Holder, *, final: bool = False, free: bool = False) -> None:
        """The run no longer holds its place; `free`: the place is free now (else it frees when its
        process is gone, see `release`). `final`: the run has ended, so its parent no longer waits on
        it (counted in the same step, so no place is handed out beyond the cap meanwhile)."""
        with self._lock:
            if holder in self._busy:
                self._busy.discard(holder)
                if free:
                    self._alive -= 1
            if final and not holder.ended:
                holder.ended = True
                if holder.parent is not None:
                    holder.parent.nested -= 1
            self._grant()

    def nesting(self, holder: Holder) -> None:
        """A run started a snippet run: while it waits on it, it may free no place. (Nothing is granted
        here: the snippet's own request, made right after, is the one that must go first.)"""
        if holder.parent is None:
            return
        with self._lock:
            holder.parent.nested += 1

    def release(self) -> None:
        """A place freed (its process exited, or never started): it goes to the next waiter."""
        with self._lock:
            self._alive -= 1
            self._grant()

    def _stuck(self, waiter: _Waiter) -> bool:
        """A snippet waits while every run holding a place waits on a snippet: none will free one."""
        if waiter.holder.parent is None or not self._busy or self._alive > len(self._busy):
            return False  # a top-level run, or a killed process is about to free a place
        return all(h.nested for h in self._busy)

    def _grant(self) -> None:
        """Hand free places to waiters: deepest snippet first, then first come."""
        while self._waiters:
            best = max(self._waiters, key=lambda w: (w.holder.depth, -w.order))
            if self._alive < self.cap or self._stuck(best):
                self._alive += 1
            else:
                return
            self._waiters.remove(best)
            try:
                best.loop.call_soon_threadsafe(_wake, best.future)
            except RuntimeError:  # its loop has closed: nobody waits there any more
                self._alive -= 1
                continue
            best.granted = True
            self._busy.add(best.holder)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
