"""The `codemode` command line (`pip install 'codemode[cli]'`): see docs/cli.md."""

from __future__ import annotations

import sys
from typing import NoReturn

__all__ = ["main"]


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script; says which extra to install when click is missing."""
    try:
        from codemode.cli.main import main as run
    except ImportError as exc:
        print(f"error: the codemode command needs its extra: pip install 'codemode[cli]' ({exc})", file=sys.stderr)
        raise SystemExit(6) from exc
    run(argv)
