"""`python -m codemode.cli`."""

from codemode.cli.main import main

main()
