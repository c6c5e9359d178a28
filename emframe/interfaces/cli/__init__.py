"""The ``emframe`` command line; one module per command family, ``main`` parses and dispatches."""

from emframe.interfaces.cli.parser import build_parser, main

__all__ = ["build_parser", "main"]
