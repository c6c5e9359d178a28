"""Reading the command line's inputs (CSV tables, columns, lengths) and writing its outputs."""

from __future__ import annotations

import csv
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emframe.interfaces.cli.specs import MISSING, InputError, ModelSpec
from emframe.interfaces.io import atomic_write


# -- reading data ----------------------------------------------------------------------------------
@dataclass
class Table:
    """A data file read as floats, with its column names and raw cells."""

    path: str
    names: list[str]
    values: np.ndarray  # (n_rows, n_columns), NaN where missing
    raw: list[list[str]] | None = None  # cell texts of a CSV (for pass-through output)
    lines: list[int] = field(default_factory=list)  # file line of every row (CSV)

    def where(self, row: int, col: int) -> str:
        """'file: row r (line l), column c 'name'' for 0-based row and column."""
        line = f" (line {self.lines[row]})" if self.lines else ""
        return (f"{self.path}: row {row + 1}{line}, column {col + 1} "
                f"{self.names[col]!r}")


def resolve_input(arg: str) -> str:
    """The file named by a DATA argument; ``example:NAME`` is a shipped data set.

    For example ``example:old_faithful`` is emframe's copy of the Old Faithful
    data (``old_faithful.csv``) and ``example:coffee`` the coffee photograph.
    """
    if not arg.startswith("example:"):
        return arg
    from emframe.interfaces import datasets

    name = arg[len("example:"):]
    names = [name] if Path(name).suffix else [name + ".csv", name + ".png"]
    for candidate in names:
        try:
            return str(datasets.path(candidate))
        except ValueError:
            continue
    shipped = sorted({p.stem for p in datasets.path("old_faithful.csv").parent.iterdir()
                      if p.suffix in (".csv", ".png")})
    raise InputError(f"{arg}: no shipped example data called {name!r}; the examples are "
                     + ", ".join(f"example:{n}" for n in shipped))


def _parse_cell(text: str) -> float:
    t = text.strip()
    if t in MISSING:
        return math.nan
    return float(t)


def read_table(path: str) -> Table:
    """Read a CSV file with a header row, or a ``.npy`` array.

    Missing values are empty cells or NaN (also NA). A cell that is not a
    number raises :class:`InputError` naming the file, row and column.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    if p.suffix.lower() == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from None
        if arr.dtype.kind not in "biuf":
            raise InputError(f"{path}: the array has dtype {arr.dtype}; a numeric array is needed")
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise InputError(f"{path}: expected a 1-D or 2-D array, got shape {arr.shape}")
        names = [str(j + 1) for j in range(arr.shape[1])]
        table = Table(str(path), names, arr.astype(float))
        _check_finite_cells(table)
        return table
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text (CSV) file; give a CSV file or a .npy array"
                         ) from None
    # keep the file line of every row; blank lines are skipped
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not numbered:
        raise InputError(f"{path}: the file is empty; a header row and data rows are needed")
    header = [h.strip() for h in numbered[0][1]]
    if not numbered[1:]:
        raise InputError(f"{path}: there are no data rows after the header")
    names = [h if h else str(j + 1) for j, h in enumerate(header)]
    d = len(names)
    values = np.empty((len(numbered) - 1, d))
    raw: list[list[str]] = []
    lines: list[int] = []
    table = Table(str(path), names, values, raw, lines)
    for i, (line, cells) in enumerate(numbered[1:]):
        lines.append(line)
        if len(cells) != d:
            raise InputError(f"{path}: row {i + 1} (line {line}) has {len(cells)} cells, but "
                             f"the header has {d} columns")
        raw.append(cells)
        for j, cell in enumerate(cells):
            try:
                values[i, j] = _parse_cell(cell)
            except ValueError:
                raise InputError(
                    f"{table.where(i, j)}: {cell.strip()!r} is not a number (missing values "
                    "must be empty cells or NaN)"
                ) from None
    _check_finite_cells(table)
    return table


def _check_finite_cells(table: Table) -> None:
    bad = np.argwhere(np.isinf(table.values))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise InputError(f"{table.where(i, j)}: infinite value {table.values[i, j]}")


def _resolve_column(table: Table, key: str) -> int | None:
    key = key.strip()
    if key in table.names:
        return table.names.index(key)
    if key.isdigit() and 1 <= int(key) <= len(table.names):
        return int(key) - 1
    return None


def select_columns(table: Table, columns: Sequence[str] | None, exclude: Sequence[int] = ()
                   ) -> list[int]:
    """Indices of the columns named (or numbered from 1) in ``columns``; default all."""
    if not columns:
        return [j for j in range(len(table.names)) if j not in exclude]
    keys = [k.strip() for item in columns for k in item.split(",") if k.strip()]
    out = []
    d = len(table.names)
    for key in keys:
        j = _resolve_column(table, key)
        if j is not None:
            out.append(j)
            continue
        lo, _, hi = key.partition("-")
        if lo.isdigit() and hi.isdigit() and 1 <= int(lo) <= int(hi) <= d:
            out.extend(range(int(lo) - 1, int(hi)))  # a range of column numbers, like 1-64
            continue
        raise InputError(f"{table.path}: no column {key!r}; the columns are {table.names} "
                         f"(or numbers 1..{d}, or ranges of numbers like 1-{d})")
    if len(set(out)) != len(out):
        raise InputError(f"--columns names a column twice: {keys}")
    return out


def read_lengths(value: str, table: Table) -> tuple[np.ndarray, int | None, str | None]:
    """Sequence lengths from a column of sequence ids or from a file of lengths.

    Returns
    -------
    lengths : ndarray of int
    column : int or None
        The id column used (to leave out of the features), if any.
    path : str or None
        The lengths file read, if any.
    """
    n = table.values.shape[0]
    j = _resolve_column(table, value) if not os.path.isfile(value) else None
    if j is not None:
        ids = table.values[:, j]
        if np.isnan(ids).any():
            i = int(np.argmax(np.isnan(ids)))
            raise InputError(f"{table.where(i, j)}: the sequence id is missing")
        # a new sequence starts wherever the id changes
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        return np.diff(np.r_[starts, n]), j, None
    if not os.path.isfile(value):
        raise InputError(f"--lengths {value!r} is neither a column of {table.path} "
                         f"({table.names}) nor a file")
    ltab = read_table(value) if value.endswith(".npy") else _read_lengths_text(value)
    lengths = ltab.values.ravel()
    if np.isnan(lengths).any() or (lengths != np.round(lengths)).any() or (lengths < 1).any():
        raise InputError(f"{value}: sequence lengths must be positive integers")
    lengths = lengths.astype(int)
    if lengths.sum() != n:
        raise InputError(f"{value}: the sequence lengths sum to {int(lengths.sum())}, but "
                         f"{table.path} has {n} rows")
    return lengths, None, value


def _read_lengths_text(path: str) -> Table:
    vals, lines = [], []
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            text = line.strip()
            if not text:
                continue
            try:
                vals.append(float(text))
            except ValueError:
                if not vals and not lines:  # a header line
                    lines.append(line_no)
                    continue
                raise InputError(f"{path}: line {line_no}: {text!r} is not a sequence length"
                                 ) from None
    if not vals:
        raise InputError(f"{path}: no sequence lengths in the file")
    return Table(path, ["length"], np.array(vals)[:, None])


@dataclass
class Data:
    """The features chosen from a table, with their sequence lengths (HMMs)."""

    table: Table
    columns: list[int]
    X: np.ndarray
    lengths: np.ndarray | None = None
    lengths_column: str | None = None
    lengths_path: str | None = None

    @property
    def names(self) -> list[str]:
        return [self.table.names[j] for j in self.columns]

    def where(self, row: int, feature: int) -> str:
        return self.table.where(row, self.columns[feature])


def load_data(path: str, columns: Sequence[str] | None, lengths: str | None = None,
              default_columns: Sequence[str] | None = None,
              lengths_column: str | None = None) -> Data:
    """Read ``path`` and pick the feature columns and the sequence lengths."""
    table = read_table(path)
    lens, lcol, lpath = None, None, None
    if lengths is None and lengths_column is not None and lengths_column in table.names:
        lengths = lengths_column
    if lengths is not None:
        lens, lcol, lpath = read_lengths(lengths, table)
    if not columns and default_columns and all(c in table.names for c in default_columns):
        columns = [",".join(default_columns)]
    cols = select_columns(table, columns, exclude=() if lcol is None else (lcol,))
    if lcol is not None and lcol in cols:
        raise InputError(f"column {table.names[lcol]!r} holds the sequence ids (--lengths); "
                         "it cannot also be a feature")
    if not cols:
        raise InputError(f"{path}: no feature columns left to model")
    return Data(table, cols, table.values[:, cols], lens,
                None if lcol is None else table.names[lcol], lpath)


def check_values(data: Data, spec: ModelSpec, *, missing_ok: bool | None = None) -> None:
    """Check the cells suit the model; name the first bad one."""
    X = data.X
    missing_ok = spec.missing_ok if missing_ok is None else missing_ok
    nan = np.isnan(X)
    if nan.any() and not missing_ok:
        i, j = (int(v) for v in np.argwhere(nan)[0])
        raise InputError(
            f"{data.where(i, j)}: missing value, but {spec.name} cannot handle missing values "
            "(use gmm-missing, drop the rows with --drop-missing, choose other --columns, or "
            "impute them first with 'emframe impute')"
        )
    if spec.one_column and X.shape[1] != 1:
        raise InputError(f"{spec.name} models one column of symbols, but {X.shape[1]} columns "
                         f"were chosen ({data.names}); pick one with --columns")
    ok = nan.copy()
    if spec.values == "binary":
        ok |= (X == 0) | (X == 1)
        need = "0 or 1"
    elif spec.values == "counts":
        ok |= (X >= 0) & (X == np.round(X))
        need = "a non-negative integer"
    else:
        return
    if not ok.all():
        i, j = (int(v) for v in np.argwhere(~ok)[0])
        raise InputError(f"{data.where(i, j)}: {X[i, j]:g} is not {need}, as {spec.name} needs")


def drop_missing_rows(data: Data) -> Data:
    """Data without the rows that have a missing feature (sequences are shortened)."""
    keep = ~np.isnan(data.X).any(axis=1)
    if keep.all():
        return data
    if not keep.any():
        raise InputError(f"{data.table.path}: every row has a missing value")
    lengths = data.lengths
    if lengths is not None:
        seq = np.repeat(np.arange(len(lengths)), lengths)[keep]
        lengths = np.bincount(seq, minlength=len(lengths))
        lengths = lengths[lengths > 0]
    return Data(data.table, data.columns, data.X[keep], lengths, data.lengths_column,
                data.lengths_path)


# -- outputs ---------------------------------------------------------------------------------------
def check_output(path: str | None, inputs: Sequence[str | None]) -> None:
    """Refuse to write ``path`` over one of the input files."""
    if path is None:
        return
    out = Path(path)
    for inp in inputs:
        if inp is None:
            continue
        same = out.resolve() == Path(inp).resolve()
        if not same and out.exists() and Path(inp).exists():
            same = os.path.samefile(out, inp)
        if same:
            raise InputError(f"refusing to overwrite the input file {inp} with an output; "
                             "choose another output name")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: directory {parent} does not exist")


def _fmt(v: float) -> str:
    # repr is the shortest text that reads back to the same float
    return "" if math.isnan(v) else repr(float(v))


def write_csv(path: str | None, header: Sequence[str], rows: Any) -> None:
    """Write CSV to ``path`` atomically, or to stdout when ``path`` is None."""
    if path is None:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
        sys.stdout.flush()
        return
    with atomic_write(path, "w") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def save_figure(fig: Any, path: str) -> None:
    """Save a matplotlib figure atomically; the format follows the file suffix."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format=fmt, dpi=110, bbox_inches="tight")


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never open a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError('--plot and segment need matplotlib: pip install "emframe[plot]"'
                         ) from None
    return plt


