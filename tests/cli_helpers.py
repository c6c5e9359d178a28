"""Test helpers: the command line run in-process, and its CSV output read back."""

import csv
import io

from emframe.interfaces.cli import parser as cli_main


def call(capsys, *args):
    """The command line in-process: (exit status, stdout, stderr)."""
    code = cli_main.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_csv(text):
    """(header, rows) of CSV text."""
    rows = list(csv.reader(io.StringIO(text)))
    return rows[0], rows[1:]
