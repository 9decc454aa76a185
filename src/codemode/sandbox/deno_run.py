"""One program in one Worker of a Deno process: the conversation with the runner, from the program
sent to its result (`DenoExecutor` places each run on a process)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from codemode import codec
from codemode.records import MAX_RESULT_BYTES, MAX_VALUE_DEPTH, MAX_VALUE_NODES
from codemode.sandbox.base import ExecuteResult, Host, Namespace, StopExecution, ToolError
from codemode.sandbox.console import dropped_line
from codemode.sandbox.deno_process import DenoProcess, RunListener
from codemode.sandbox.settling import settle
from codemode.text import valid_text

if TYPE_CHECKING:
    from codemode.sandbox.deno import DenoExecutor

log = logging.getLogger("codemode")
MAX_MESSAGE_BYTES = 64 * 2**20  # the largest message the channel carries (`deno_process.MAX_LINE` frames one)
# How long a stopping pass keeps reading calls the program had already sent.
STOP_GRACE = 0.02
KILL_GRACE = 10.0  # seconds a Worker gets to stop before its whole process is killed (starting a
# Worker blocks the process for ~20 ms, so a burst of starts can delay a stop by seconds)


class DenoRun:
    """One program in one Worker of a Deno process."""

    def __init__(self, executor: DenoExecutor, process: DenoProcess, host: Host, listener: RunListener) -> None:
        self.executor = executor
        self.process = process
        self.host = host
        self.listener = listener
        self.nonce = secrets.token_hex(12) + ":"
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopped = False
        self.logs: list[str] = []
        self.heard = False  # whether the Worker has sent anything for this program
        self.lost_before_start = False
        self.id: str | None = None

    async def drive(self, code: str, namespaces: Sequence[Namespace], input: Any) -> ExecuteResult:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.executor.timeout
        limits = {"depth": MAX_VALUE_DEPTH, "nodes": MAX_VALUE_NODES, "bytes": MAX_RESULT_BYTES}
        request = {
            "nonce": self.nonce,
            "code": code,
            "namespaces": {ns.name: sorted(ns.methods) for ns in namespaces},
            "input": codec.encode(input),
            "limits": {**limits, "memory": self.executor.memory_limit},
        }
        self.id = self.process.open(self.listener)
        if self.id is None:
            self.listener.ended()
            self.executor._pool.run_ended(self.process)
            self.lost_before_start = True
            return ExecuteResult(error="The sandbox process exited unexpectedly (before the program started).")
        queue = self.listener.queue
        # One timer for the run (not one per message), in a context of its own: a cancelled timer stays
        # scheduled until its time, and the run's context would keep its place (and the executor) alive.
        timer = loop.call_at(deadline, queue.put_nowait, ("timeout", None), context=contextvars.Context())
        driving = cancelled = False
        try:
            self.process.send(f"start {self.id} {codec.json_text(request)}\n")
            # This loop reads the process's output while the run is driven; asked for once the program is
            # on its way, so the hand-over from the reader thread overlaps the Worker's start.
            driving = self.process.drive(loop)
            while True:
                kind, payload = await queue.get()
                if kind == "timeout":
                    return self._timed_out()
                if kind == "stop":
                    return ExecuteResult(stopped=True, logs=self.logs)
                if kind == "lost":
                    if self.stopped:
                        return ExecuteResult(stopped=True, logs=self.logs)
                    return self._died(payload)
                if kind == "large":  # a line beyond the channel's limit: a value far past every size bound
                    return ExecuteResult(
                        error=f"A value the program sent (a result, call arguments or console line) was larger "
                        f"than the {MAX_MESSAGE_BYTES // 2**20} MiB the sandbox channel carries; the run was "
                        "stopped. Return or pass only the fields you need.",
                        logs=self.logs,
                    )
                if kind == "uncaught":
                    return self._uncaught(payload)
                result = self._receive(payload)
                if result is not None:
                    return result
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            timer.cancel()
            if driving:
                self.process.undrive(loop)
            self._end()
            await settle(self.tasks, deadline, hurry=cancelled)  # a cancelled run waits on no call

    def _receive(self, line: bytes) -> ExecuteResult | None:
        """One message the Worker posted: a console line, a call, or the end of the program."""
        text = line.decode("utf-8", "replace")
        if not text.startswith(self.nonce):
            return self._violation()
        self.heard = True
        try:
            message = json.loads(text[len(self.nonce) :])
        except RecursionError:  # the runner bounds nesting; this is a deeper value all the same
            return ExecuteResult(error=codec.refusal("A value the program sent", RecursionError()), logs=self.logs)
        except ValueError:
            return self._violation()  # framed, but not JSON: fail closed
        try:
            kind = message.get("t")
            if kind == "log":
                self._log(message)
            elif kind == "call":
                task = asyncio.ensure_future(self._answer(message))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            elif kind == "done":
                return self._done(message)
            else:
                return self._violation()
        except (ValueError, TypeError, KeyError, AttributeError):
            return self._violation()  # well-framed but malformed: fail closed
        return None

    def _end(self) -> None:
        """Terminate the Worker; if it has not gone within `KILL_GRACE`, its whole process goes."""
        if self.id is None or not self.process.holds(self.id):
            return
        self.process.send(f"kill {self.id}\n")
        run, process = self.id, self.process

        def check() -> None:
            if process.holds(run):
                log.warning("codemode: a Deno Worker did not stop; killing its process %s", process.pid)
                process.kill()

        # In a context of its own: the run's context holds its place in the nesting tree (and the executor).
        asyncio.get_running_loop().call_later(KILL_GRACE, check, context=contextvars.Context())

    def _log(self, message: dict[str, Any]) -> None:
        """A console line (text: a lone surrogate becomes U+FFFD); `dropped` marks where the runner's cap hit."""
        if message.get("dropped"):
            self.logs.append(dropped_line())
        else:
            self.logs.append(valid_text(str(message["s"])))

    def _done(self, message: dict[str, Any]) -> ExecuteResult:
        """How the program ended: its result, decoded, or a clear error about a value the host cannot read."""
        dropped = message.get("dropped")
        if isinstance(dropped, int) and self.logs and self.logs[-1] == dropped_line():
            self.logs[-1] = dropped_line(dropped)
        if message.get("memory"):
            return ExecuteResult(error=self._memory_error(), logs=self.logs)
        if message.get("ok"):
            try:
                return ExecuteResult(result=codec.decode(message.get("value")), logs=self.logs)
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                error = codec.refusal("The result", TypeError(f"the host could not decode it: {exc}"))
                return ExecuteResult(error=error, logs=self.logs)
        refused = message.get("refused")
        if isinstance(refused, dict):
            return ExecuteResult(error=_refusal("The result", refused), logs=self.logs)
        return ExecuteResult(error=valid_text(str(message.get("error"))), logs=self.logs)

    def _memory_error(self) -> str:
        limit = self.executor.memory_limit // 2**20
        return f"MemoryError: the program exceeded the sandbox memory limit ({limit} MiB)."

    def _write(self, message: dict[str, Any]) -> None:
        if self.id is not None:
            self.process.send(f"reply {self.id} {codec.json_text(message)}\n")

    async def _answer(self, message: dict[str, Any]) -> None:
        call_id = message.get("id")
        namespace, method = str(message.get("ns")), str(message.get("m"))
        try:
            refused = message.get("refused")
            if isinstance(refused, dict):
                step = namespace == "codemode" and method == "step_record"
                what = "The value of codemode.step" if step else f"Arguments to {namespace}.{method}"
                raise ToolError(_refusal(what, refused), "TypeError")
            try:
                args = codec.decode(message.get("a"))
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
                raise ToolError(f"{namespace}.{method}: arguments could not be decoded ({exc}).", "TypeError") from None
            if not isinstance(args, dict) or not all(isinstance(k, str) for k in args):
                raise ToolError(
                    f"{namespace}.{method}() takes one object of arguments, e.g. {{ name: value }}.", "TypeError"
                )
            value = await self.host.call(namespace, method, args)
            reply = {"id": call_id, "ok": True, "value": codec.encode(value)}
        except StopExecution:
            if not self.stopped:
                # Calls the program started together with this one (a batch under Promise.all) are
                # already on their way: read them for a moment, answer nothing more, then stop.
                self.stopped = True
                asyncio.get_running_loop().call_later(
                    STOP_GRACE, self.listener.queue.put_nowait, ("stop", None), context=contextvars.Context()
                )
            return
        except ToolError as exc:
            reply = {"id": call_id, "ok": False, "error": exc.message, "kind": exc.kind}
        except Exception as exc:
            reply = {"id": call_id, "ok": False, "error": f"{type(exc).__name__}: {exc}", "kind": "Error"}
        if self.stopped:
            return  # the program gets no more answers once the pass is stopping
        self._write(reply)

    def _timed_out(self) -> ExecuteResult:
        return ExecuteResult(
            error=f"Execution timed out: the program ran longer than the {self.executor.timeout:g} s limit.",
            logs=self.logs,
            timed_out=True,
        )

    def _violation(self) -> ExecuteResult:
        return ExecuteResult(error="The program wrote to the host channel; the run was stopped.", logs=self.logs)

    def _uncaught(self, payload: bytes) -> ExecuteResult:
        """The Worker stopped on an error outside the program's own flow (a rejection nobody awaited)."""
        try:
            message = valid_text(str(json.loads(payload)))
        except ValueError:
            return self._violation()
        message = re.sub(r",? run again with the --allow-\w+ flag", "", message)
        return ExecuteResult(error=message or "Uncaught error", logs=self.logs)

    def _died(self, stderr: str) -> ExecuteResult:
        """The process this run was in is gone: a crash, a program over the memory limit, or a kill."""
        if stderr == "violation":
            return self._violation()
        self.lost_before_start = not self.heard and not stderr.strip()
        if "out of memory" in stderr.lower():
            # V8 ends the whole process when one isolate runs out of heap, and which one did is not known.
            limit = self.executor.memory_limit // 2**20
            return ExecuteResult(
                error=f"MemoryError: a program in this sandbox process exceeded the memory limit ({limit} MiB), "
                "which stops the process and every program running in it, this one included. If this program "
                "builds large values, build smaller ones; otherwise run it again.",
                logs=self.logs,
            )
        tail = stderr.strip().splitlines()[-1] if stderr.strip() else "no output"
        return ExecuteResult(error=f"The sandbox process exited unexpectedly ({tail}).", logs=self.logs)


def _refusal(what: str, refused: dict[str, Any]) -> str:
    """The message for a value the runner would not send (too large, too deep, a cycle)."""
    reason = valid_text(str(refused.get("reason", "")))
    return codec.refusal(what, codec.TooLargeError(0, MAX_RESULT_BYTES) if refused.get("large") else TypeError(reason))
