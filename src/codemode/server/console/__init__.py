"""The approval console: a local web app where humans decide pending actions and read the audit trail.

`codemode console --app module:attribute` serves it (`pip install 'codemode[console]'`); see docs/console.md.
"""

from codemode.server.console.app import Console, create_app, serve

__all__ = ["Console", "create_app", "serve"]
