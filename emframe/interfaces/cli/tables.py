"""Reading the command line's inputs (CSV tables, columns, lengths) and writing its outputs."""

from __future__ import annotations

import csv
import math
import os
import sys
import tempfile
import warnings
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
    values: np.ndarray  # (n_rows, n_columns), NaN where missing or not a number
    raw: list[list[str]] | None = None  # cell texts of a CSV (for pass-through output)
    lines: list[int] = field(default_factory=list)  # file line of every row (CSV)
    # column -> (row of its first cell that is not a number, number of such cells); such a
    # column is an error only if it is used
    text: dict[int, tuple[int, int]] = field(default_factory=dict)

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
    reader = None
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            rows = list(reader)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text (CSV) file; give a CSV file or a .npy array"
                         ) from None
    except csv.Error as exc:
        line = reader.line_num if reader is not None else "?"
        raise InputError(f"{path}: line {line}: not a readable CSV table ({exc})") from None
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
                values[i, j] = math.nan
                first, count = table.text.get(j, (i, 0))
                table.text[j] = (first, count + 1)
    _check_finite_cells(table)
    return table


def _check_finite_cells(table: Table) -> None:
    bad = np.argwhere(np.isinf(table.values))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise InputError(f"{table.where(i, j)}: infinite value {table.values[i, j]}")


def check_numeric(table: Table, columns: Sequence[int]) -> None:
    """Refuse used columns with cells that are not numbers; point to ``--columns``."""
    for j in columns:
        if j not in table.text:
            continue
        i, count = table.text[j]
        cell = table.raw[i][j].strip() if table.raw is not None else "?"
        observed = int(np.sum(~np.isnan(table.values[:, j]))) + count
        if count == observed:  # a column of text, like a class name
            numeric = [k for k in range(len(table.names)) if k not in table.text]
            hint = (f"choose the numeric columns with --columns {_ranges(numeric)}" if numeric
                    else "choose numeric columns with --columns")
            raise InputError(f"{table.path}: column {j + 1} {table.names[j]!r} holds text "
                             f"({cell!r}), not numbers; {hint}")
        raise InputError(f"{table.where(i, j)}: {cell!r} is not a number (missing values "
                         "must be empty cells or NaN)")


def _ranges(columns: Sequence[int]) -> str:
    """0-based column indices as 1-based ranges for --columns, like '1-4,6'."""
    parts: list[str] = []
    cols = sorted(columns)
    start = prev = cols[0]
    for c in [*cols[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start + 1) if start == prev else f"{start + 1}-{prev + 1}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


#: Header names that usually mark a label rather than a feature (compared in lower case).
LABEL_NAMES = frozenset({"class", "classes", "label", "labels", "species", "target", "y",
                         "category", "cluster", "group", "outcome"})


def warn_label_columns(table: Table, columns: Sequence[int]) -> None:
    """Warn about used columns that look like class labels (small integer codes, label name)."""
    for j in columns:
        name = table.names[j].strip().lower()
        if name not in LABEL_NAMES:
            continue
        v = table.values[:, j]
        v = v[~np.isnan(v)]
        codes = np.unique(v)
        if v.size == 0 or np.any(codes != np.round(codes)) or codes.size > 20:
            continue
        others = [k for k in columns if k != j]
        hint = f"--columns {_ranges(others)}" if others else "--columns"
        warnings.warn(
            f"{table.path}: column {j + 1} {table.names[j]!r} looks like a class label "
            f"({codes.size} integer codes), but it is used as a feature because every column "
            f"is used by default; to leave it out: {hint}",
            UserWarning, stacklevel=2,
        )


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
        if j in table.text and table.raw is not None:
            ids: Any = np.array([row[j].strip() for row in table.raw])  # text ids
            missing = np.isin(ids, list(MISSING))
        else:
            ids = table.values[:, j]
            missing = np.isnan(ids)
        if missing.any():
            i = int(np.argmax(missing))
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
    if (lengths > n).any():
        i = int(np.argmax(lengths > n))
        raise InputError(f"{value}: sequence length {lengths[i]:.0f} (number {i + 1}) is more "
                         f"than the {n} rows of {table.path}")
    lengths = lengths.astype(np.int64)  # each in 1..n: no overflow
    total = sum(lengths.tolist())  # in Python integers, which never wrap
    if total != n:
        raise InputError(f"{value}: the sequence lengths sum to {total}, but "
                         f"{table.path} has {n} rows")
    return lengths, None, value


def _read_lengths_text(path: str) -> Table:
    vals: list[float] = []
    lines: list[int] = []
    try:
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
                    raise InputError(f"{path}: line {line_no}: {text[:40]!r} is not a "
                                     "sequence length") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file of sequence lengths (one per line)"
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
    chosen = bool(columns)
    cols = select_columns(table, columns, exclude=() if lcol is None else (lcol,))
    if lcol is not None and lcol in cols:
        raise InputError(f"column {table.names[lcol]!r} holds the sequence ids (--lengths); "
                         "it cannot also be a feature")
    if not cols:
        raise InputError(f"{path}: no feature columns left to model")
    check_numeric(table, cols)
    if not chosen:
        warn_label_columns(table, cols)
    return Data(table, cols, table.values[:, cols], lens,
                None if lcol is None else table.names[lcol], lpath)


def check_values(data: Data, spec: ModelSpec, *, missing_ok: bool | None = None,
                 n_components: int | None = None) -> None:
    """Check the cells suit the model; name the first bad one.

    ``n_components`` (the largest number fitted) bounds the alphabet of a model of
    symbols.
    """
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
    if spec.kind == "mixture" and n_components is not None and X.shape[0] < n_components:
        rows = "row" if X.shape[0] == 1 else "rows"
        raise InputError(f"{n_components} components are more than the {X.shape[0]} {rows} of "
                         f"{data.table.path} (a mixture needs a row per component); set a "
                         "smaller --components")
    if spec.one_column and X.shape[1] != 1:
        raise InputError(f"{spec.name} models one column of symbols, but {X.shape[1]} columns "
                         f"were chosen ({data.names}); pick one with --columns")
    empty = np.flatnonzero(nan.all(axis=0))
    if empty.size:
        j = int(empty[0])
        others = [c for c in data.columns if c != data.columns[j]]
        hint = f"--columns {_ranges(others)}" if others else "--columns"
        raise InputError(f"{data.table.path}: column {data.columns[j] + 1} {data.names[j]!r} "
                         f"has no observed values; leave it out with {hint}")
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
    if spec.one_column and n_components is not None and not nan.all():
        _check_alphabet(data, spec, n_components)


def _check_alphabet(data: Data, spec: ModelSpec, n_components: int) -> None:
    from emframe.models.hmm.emissions.categorical import MAX_TABLE_SIZE

    i = int(np.nanargmax(data.X[:, 0]))
    n_symbols = int(data.X[i, 0]) + 1
    if n_components * n_symbols > MAX_TABLE_SIZE:
        raise InputError(
            f"{data.where(i, 0)}: symbol {int(data.X[i, 0])} makes an alphabet of {n_symbols} "
            f"symbols; with {n_components} states {spec.name} would need tables of "
            f"{n_components * n_symbols} probabilities, more than its budget of "
            f"{MAX_TABLE_SIZE} (1 GiB); symbols must be codes 0, 1, ..., S-1: relabel them"
        )


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
    if out.is_dir():
        raise InputError(f"cannot write {path}: it is a directory; give a file name")
    try:
        # the same kind of temporary file the output is written through
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
    os.close(fd)
    os.unlink(tmp)


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
    supported = fig.canvas.get_supported_filetypes()
    if fmt not in supported:
        raise InputError(f"--plot {path}: matplotlib cannot write .{fmt} files; give a name "
                         f"ending in one of .{', .'.join(sorted(supported))} (.png, say)")
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


