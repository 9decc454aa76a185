"""The `codemode` platform object inside the Monty sandbox, written in the sandbox's own Python."""

from __future__ import annotations

__all__ = ["PRELUDE", "PRELUDE_LINES", "with_prelude"]

# Put in front of the program, in the same feed, with the host object bound as `codemode`: the factory
# keeps it as its default argument and the name is then rebound to what it makes, so the program's only
# new global is `codemode` (an input costs the feed no round trip, as a lookup and a call would). One feed,
# not a feed of its own before the program's: a feed is a worker round trip of about 0.25 ms.
PRELUDE = """
def codemode(host=codemode):
    class Codemode:
        depth = 0

        async def search(self, query):
            return await host.search(query=query)

        async def describe(self, target):
            return await host.describe(target=target)

        async def run(self, name, input=None):
            return await host.run(name=name, input=input)

        async def step(self, name, fn):
            if self.depth:
                raise RuntimeError(
                    "codemode.step cannot run inside another step's function: a step is replayed without "
                    "running its function. Run the steps one after the other."
                )
            decision = await host.step_decide(name=name)
            if decision["replay"]:
                return decision["value"]
            self.depth += 1
            try:
                value = fn()
                if type(value).__name__ == "coroutine":
                    value = await value
            except Exception as error:
                self.depth -= 1
                await host.step_fail(token=decision["token"], kind=type(error).__name__, message=str(error))
                raise
            self.depth -= 1
            return await host.step_record(token=decision["token"], value=value)

    return Codemode()


codemode = codemode()
"""

PRELUDE_LINES = PRELUDE.count("\n")  # the program's line N is line PRELUDE_LINES + N of what is fed


def with_prelude(code: str) -> str:
    """The source fed for `code`: the prelude, then the program from a line of its own. A byte-order
    mark, which the parser skips only at the start of a feed, is dropped."""
    return PRELUDE + code.removeprefix("\ufeff")
