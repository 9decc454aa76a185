"""Servers over a codemode runtime: the approval console (`codemode.server.console`) and more."""
