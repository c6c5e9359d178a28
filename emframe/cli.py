"""The ``emframe`` command line: fit, predict, impute, decode, select and segment from a shell.

Run ``emframe --help`` or ``emframe COMMAND --help``; the reference is docs/cli.md.

Exit codes: 0 on success; 2 for usage errors and bad input (the message names
the file, row and column); 1 for any other failure. Outputs are written
atomically and never over an input file.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import math
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import __version__
from .io import atomic_write, load, read_metadata

PROG = "emframe"
#: Cell texts read as a missing value (besides the empty cell).
MISSING = frozenset({"", "nan", "NaN", "NAN", "NA", "na"})


class InputError(Exception):
    """Bad command-line usage or bad input data: exit status 2."""


# -- models ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """How the command line builds, checks and describes one model."""

    name: str
    cls_name: str
    kind: str  # "mixture", "hmm" or "gaussian"
    attributes: tuple[str, ...]
    values: str = "real"  # "real", "binary" or "counts"
    missing_ok: bool = False
    one_column: bool = False
    help: str = ""

    @property
    def estimator_class(self) -> type:
        from . import models

        try:
            return getattr(models, self.cls_name)
        except AttributeError:
            raise RuntimeError(
                f"model {self.name!r} needs emframe.models.{self.cls_name}, which this "
                "installation of emframe does not provide"
            ) from None


MODELS: dict[str, ModelSpec] = {
    s.name: s
    for s in [
        ModelSpec("gmm", "GaussianMixture", "mixture", ("weights_", "means_", "covariances_"),
                  help="Gaussian mixture (clustering, density)"),
        ModelSpec("gmm-missing", "MissingDataGaussianMixture", "mixture",
                  ("weights_", "means_", "covariances_"), missing_ok=True,
                  help="Gaussian mixture on data with missing values (empty cells)"),
        ModelSpec("bernoulli", "BernoulliMixture", "mixture", ("weights_", "probs_"),
                  values="binary", missing_ok=True,
                  help="mixture of independent Bernoullis on 0/1 data (empty = missing)"),
        ModelSpec("gaussian-hmm", "GaussianHMM", "hmm",
                  ("startprob_", "transmat_", "means_", "covars_"),
                  help="hidden Markov model with Gaussian emissions"),
        ModelSpec("categorical-hmm", "CategoricalHMM", "hmm",
                  ("startprob_", "transmat_", "emissionprob_"), values="counts",
                  one_column=True, help="hidden Markov model over symbols 0..S-1 (one column)"),
        ModelSpec("poisson-hmm", "PoissonHMM", "hmm", ("startprob_", "transmat_", "lambdas_"),
                  values="counts", help="hidden Markov model with Poisson emissions (counts)"),
        ModelSpec("mvn-missing", "MissingDataGaussian", "gaussian", ("mean_", "covariance_"),
                  missing_ok=True, help="multivariate normal fitted to data with missing values"),
    ]
}


def _spec_of(estimator: Any) -> ModelSpec | None:
    for spec in MODELS.values():
        if type(estimator).__name__ == spec.cls_name:
            return spec
    return None


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
    from . import datasets

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


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Engine callback printing iteration, log-likelihood and elapsed time to stderr."""

    def __init__(self, quiet: bool, stream: TextIO | None = None, label: str = "") -> None:
        self.quiet = quiet
        self.stream = stream
        self.label = label
        self.start = time.perf_counter()

    def __call__(self, info: Any) -> None:
        if self.quiet:
            return
        stream = self.stream or sys.stderr
        change = "" if math.isnan(info.change) else f"  change/sample {info.change:.3e}"
        print(f"{self.label}restart {info.init + 1}  iter {info.iteration:4d}  "
              f"loglik {info.log_likelihood:.6f}{change}  "
              f"elapsed {time.perf_counter() - self.start:.2f}s", file=stream, flush=True)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


# -- fitting ---------------------------------------------------------------------------------------
def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def make_estimator(spec: ModelSpec, args: argparse.Namespace, n_components: int | None = None,
                   covariance_type: str | None = None) -> Any:
    """The estimator for ``spec`` with the options given on the command line."""
    cls = spec.estimator_class
    kwargs: dict[str, Any] = {}
    k = n_components if n_components is not None else args.components
    cov = covariance_type if covariance_type is not None else args.covariance_type
    if k is not None:
        if not _accepts(cls, "n_components"):
            raise InputError(f"{spec.name} has no components; leave out --components")
        kwargs["n_components"] = k
    elif _accepts(cls, "n_components"):
        kwargs["n_components"] = 2  # a mixture or HMM of one component is rarely wanted
    if cov is not None:
        if not _accepts(cls, "covariance_type"):
            raise InputError(f"{spec.name} has no --covariance-type")
        kwargs["covariance_type"] = cov
    if args.n_init is not None:
        if not _accepts(cls, "n_init"):
            raise InputError(f"{spec.name} has a deterministic start; leave out --n-init")
        kwargs["n_init"] = args.n_init
    if _accepts(cls, "random_state"):
        kwargs["random_state"] = args.seed
    for opt in ("max_iter", "tol"):
        value = getattr(args, opt)
        if value is not None:
            kwargs[opt] = value
    return cls(**kwargs)


def fit_estimator(est: Any, spec: ModelSpec, data: Data, progress: Progress) -> Any:
    if spec.kind == "hmm":
        return est.fit(data.X, data.lengths, callbacks=[progress])
    return est.fit(data.X, callbacks=[progress])


def _with_lengths(method: Callable[..., Any], spec: ModelSpec | None, data: Data) -> Any:
    if spec is not None and spec.kind == "hmm":
        return method(data.X, data.lengths)
    return method(data.X)


def summary(est: Any, spec: ModelSpec, data: Data) -> str:
    """A short text summary of a fitted estimator on its training data."""
    n = data.X.shape[0]
    ll = float(_with_lengths(est.log_likelihood, spec, data))
    lines = [
        f"model           {est!r}",
        f"data            {data.table.path}: {n} rows, columns {', '.join(data.names)}"
        + ("" if data.lengths is None else f", {len(data.lengths)} sequences"),
        f"log-likelihood  {ll:.6f}  ({ll / n:.6f} per row)",
        f"iterations      {est.n_iter_} ({'converged' if est.converged_ else 'NOT converged'})",
    ]
    try:
        bic = float(_with_lengths(est.bic, spec, data))
        aic = float(_with_lengths(est.aic, spec, data))
        lines.append(f"free parameters {est.n_parameters()}")
        lines.append(f"BIC             {bic:.6f}")
        lines.append(f"AIC             {aic:.6f}")
    except NotImplementedError:
        pass
    lines.append("parameters")
    for name in spec.attributes:
        value = getattr(est, name, None)
        if value is None:
            continue
        arr = np.asarray(value)
        text = np.array2string(arr, precision=4, suppress_small=True, threshold=60,
                               max_line_width=96, separator=" ")
        lines.append(f"  {name} shape {arr.shape}:")
        lines.extend(("    " + t).rstrip() for t in text.splitlines())
    return "\n".join(lines)


def plot_fit(est: Any, spec: ModelSpec, data: Data) -> Any:
    """The figure for ``fit --plot``: the picture that suits the model."""
    from . import plotting

    plt = _pyplot()
    if spec.name == "bernoulli":
        return plotting.plot_bernoulli_components(est)
    if spec.kind == "hmm":
        fig = plotting.plot_state_path(est, data.X, lengths=data.lengths)
        fig.axes[0].set_ylabel(data.names[0])
        return fig
    if data.X.shape[1] >= 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        plotting.plot_clusters(est, data.X, ax=ax, feature_names=tuple(data.names[:2]))
        return fig
    fig, ax = plt.subplots(figsize=(6, 4))
    plotting.plot_convergence(est, ax=ax)
    return fig


def _model_metadata(spec: ModelSpec, data: Data) -> dict[str, Any]:
    return {"cli_model": spec.name, "columns": data.names, "lengths_column": data.lengths_column,
            "data": os.path.basename(data.table.path)}


def cmd_fit(args: argparse.Namespace) -> int:
    args.data = resolve_input(args.data)
    spec = MODELS[args.model]
    if args.lengths is not None and spec.kind != "hmm":
        raise InputError(f"--lengths applies to HMMs, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    check_output(args.plot, [args.data, args.lengths, args.out])
    data = load_data(args.data, args.columns, args.lengths)
    if args.drop_missing:
        data = drop_missing_rows(data)
    check_values(data, spec)
    _check_components(args.components, data)
    est = make_estimator(spec, args)
    fit_estimator(est, spec, data, Progress(args.quiet))
    print(summary(est, spec, data))
    if args.out is not None:
        est.save(args.out, metadata=_model_metadata(spec, data))
        print(f"saved model   {args.out}")
    if args.plot is not None:
        fig = plot_fit(est, spec, data)
        save_figure(fig, args.plot)
        print(f"saved plot    {args.plot}")
    return 0


def _check_components(k: int | None, data: Data) -> None:
    if k is not None and k > data.X.shape[0]:
        raise InputError(f"--components {k} is more than the {data.X.shape[0]} rows of "
                         f"{data.table.path}")


# -- predict / decode --------------------------------------------------------------------------
def _load_model(path: str) -> tuple[Any, dict[str, Any]]:
    try:
        est = load(path)
        meta = read_metadata(path)["metadata"] or {}
    except (ValueError, FileNotFoundError) as exc:
        raise InputError(str(exc)) from None
    if not hasattr(est, "params_"):
        raise InputError(f"{path}: the saved model is not fitted")
    return est, meta


def _data_for_model(args: argparse.Namespace, est: Any, meta: dict[str, Any]) -> Data:
    spec = _spec_of(est)
    lengths = getattr(args, "lengths", None)
    if lengths is not None and (spec is None or spec.kind != "hmm"):
        raise InputError("--lengths applies to HMMs only")
    data = load_data(args.data, args.columns, lengths, default_columns=meta.get("columns"),
                     lengths_column=meta.get("lengths_column")
                     if spec is not None and spec.kind == "hmm" else None)
    d = getattr(est, "n_features_in_", data.X.shape[1])
    if data.X.shape[1] != d:
        raise InputError(
            f"{args.data}: {data.X.shape[1]} columns chosen ({data.names}), but the model was "
            f"fitted on {d} ({meta.get('columns', '?')}); choose them with --columns"
        )
    if spec is not None:
        check_values(data, spec)
    return data


def cmd_predict(args: argparse.Namespace) -> int:
    args.data = resolve_input(args.data)
    check_output(args.out, [args.model_file, args.data, args.lengths])
    est, meta = _load_model(args.model_file)
    if not hasattr(est, "predict_proba"):
        raise InputError(f"{args.model_file}: a {type(est).__name__} has no labels to predict; "
                         "use 'emframe impute' for missing data")
    data = _data_for_model(args, est, meta)
    spec = _spec_of(est)
    labels = np.asarray(_with_lengths(est.predict, spec, data))
    proba = np.asarray(_with_lengths(est.predict_proba, spec, data))
    name = "state" if spec is not None and spec.kind == "hmm" else "label"
    header = [name] + [f"p{k}" for k in range(proba.shape[1])]
    rows = ([int(lab)] + [_fmt(p) for p in row] for lab, row in zip(labels, proba, strict=True))
    write_csv(args.out, header, rows)
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    args.data = resolve_input(args.data)
    check_output(args.out, [args.model_file, args.data, args.lengths])
    est, meta = _load_model(args.model_file)
    if not hasattr(est, "decode"):
        raise InputError(f"{args.model_file}: a {type(est).__name__} is not an HMM; decode "
                         "needs a model saved by 'emframe fit gaussian-hmm|categorical-hmm|"
                         "poisson-hmm'")
    data = _data_for_model(args, est, meta)
    logprob, states = est.decode(data.X, data.lengths, algorithm=args.algorithm)
    if data.lengths is not None and len(data.lengths) > 1:
        seq = np.repeat(np.arange(len(data.lengths)), data.lengths)
        write_csv(args.out, ["sequence", "state"],
                  ([int(s), int(z)] for s, z in zip(seq, states, strict=True)))
    else:
        write_csv(args.out, ["state"], ([int(z)] for z in states))
    if not args.quiet:
        print(f"{args.algorithm} path: log-probability {float(logprob):.6f}", file=sys.stderr)
    return 0


# -- impute ------------------------------------------------------------------------------------
def cmd_impute(args: argparse.Namespace) -> int:
    args.data = resolve_input(args.data)
    check_output(args.out, [args.data])
    spec = MODELS["mvn-missing"]
    data = load_data(args.data, args.columns)
    check_values(data, spec)
    missing = np.isnan(data.X)
    est = spec.estimator_class(**{k: v for k, v in
                                  (("max_iter", args.max_iter), ("tol", args.tol),
                                   ("ridge", args.ridge)) if v is not None})
    est.fit(data.X, callbacks=[Progress(args.quiet)])
    imputed = est.impute(data.X)
    table = data.table
    header = list(table.names)
    out = np.array(table.values, copy=True)
    out[:, data.columns] = imputed
    rows = []
    for i in range(out.shape[0]):
        row = []
        for j in range(out.shape[1]):
            if j in data.columns or table.raw is None:
                # observed cells keep their text, so the file changes only where it was empty
                keep = table.raw is not None and not math.isnan(table.values[i, j])
                row.append(table.raw[i][j].strip() if keep else _fmt(out[i, j]))
            else:
                row.append(table.raw[i][j])
        rows.append(row)
    write_csv(args.out, header, rows)
    if not args.quiet:
        per_col = ", ".join(f"{n} {int(c)}" for n, c in zip(data.names, missing.sum(0),
                                                          strict=True) if c)
        print(f"imputed {int(missing.sum())} missing cells in {int(missing.any(1).sum())} rows "
              f"({per_col or 'none'}); {est.n_iter_} iterations, "
              f"{'converged' if est.converged_ else 'NOT converged'}", file=sys.stderr)
    return 0


# -- select ----------------------------------------------------------------------------------------
def parse_range(text: str) -> list[int]:
    """'1-8' or '2,3,5' (or a mix, '1-3,6') as a sorted list of positive ints."""
    out: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if "-" in part:
                lo, hi = (int(v) for v in part.split("-", 1))
                if lo > hi:
                    raise ValueError
                out.update(range(lo, hi + 1))
            else:
                out.add(int(part))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid component range {text!r}; write it like 1-8 or 2,3,5") from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"component counts must be positive, got {text!r}")
    return sorted(out)


def cmd_select(args: argparse.Namespace) -> int:
    args.data = resolve_input(args.data)
    spec = MODELS[args.model]
    if spec.kind == "gaussian":
        raise InputError(f"{spec.name} has no components to select")
    if args.lengths is not None and spec.kind != "hmm":
        raise InputError(f"--lengths applies to HMMs, not to {spec.name}")
    check_output(args.out, [args.data, args.lengths])
    data = load_data(args.data, args.columns, args.lengths)
    if args.drop_missing:
        data = drop_missing_rows(data)
    check_values(data, spec)
    _check_components(max(args.components), data)
    cov_types = [None] if args.covariance_type is None else args.covariance_type.split(",")
    results = []
    for cov in cov_types:
        for k in args.components:
            est = make_estimator(spec, args, n_components=k, covariance_type=cov)
            label = f"[k={k}{'' if cov is None else ' ' + cov}] "
            fit_estimator(est, spec, data, Progress(args.quiet, label=label))
            ll = float(_with_lengths(est.log_likelihood, spec, data))
            bic = float(_with_lengths(est.bic, spec, data))
            aic = float(_with_lengths(est.aic, spec, data))
            results.append((k, cov, ll, est.n_parameters(), bic, aic, est.converged_, est))
    crit = 4 if args.criterion == "bic" else 5
    best = min(range(len(results)), key=lambda r: results[r][crit])
    cov_col = args.covariance_type is not None
    head = f"{'components':>10}" + (f"  {'covariance':>10}" if cov_col else "")
    print(head + f"  {'log-likelihood':>15}  {'parameters':>10}  {'BIC':>12}  {'AIC':>12}"
          "  converged")
    for r, (k, cov, ll, npar, bic, aic, conv, _) in enumerate(results):
        mark = "  *" if r == best else ""
        print(f"{k:>10}" + (f"  {cov:>10}" if cov_col else "")
              + f"  {ll:>15.4f}  {npar:>10}  {bic:>12.4f}  {aic:>12.4f}  {str(conv):>9}{mark}")
    k, cov, *_rest, best_est = results[best]
    print(f"best by {args.criterion.upper()}: {k} components"
          + ("" if cov is None else f", covariance_type {cov}"))
    print()
    print(summary(best_est, spec, data))
    if args.out is not None:
        best_est.save(args.out, metadata=_model_metadata(spec, data))
        print(f"saved model   {args.out}")
    return 0


# -- segment ---------------------------------------------------------------------------------------
def cmd_segment(args: argparse.Namespace) -> int:
    import matplotlib.image as mpimg

    args.image = resolve_input(args.image)
    check_output(args.out, [args.image])
    check_output(args.model_out, [args.image, args.out])
    _pyplot()
    if not os.path.isfile(args.image):
        raise InputError(f"{args.image}: no such file")
    if not args.out.lower().endswith(".png"):
        raise InputError(f"--out {args.out}: segment writes PNG; give a name ending in .png")
    try:
        img = mpimg.imread(args.image, format="png")
    except Exception as exc:  # matplotlib/PIL raise many types for a bad image
        raise InputError(f"{args.image}: not a readable PNG image ({exc})") from None
    img = np.asarray(img, dtype=float)
    if img.dtype.kind != "f" or img.max() > 1.0:
        img = img / 255.0
    if img.ndim == 2:
        img = img[:, :, None]
    h, w, c = img.shape
    colour = img[:, :, : 3 if c >= 3 else 1].reshape(h * w, -1)
    rng = np.random.default_rng(args.seed)
    train = colour
    if args.max_pixels and h * w > args.max_pixels:
        # the colours of a random subset of pixels fit the mixture as well, much faster
        train = colour[rng.choice(h * w, args.max_pixels, replace=False)]
    spec = MODELS["gmm"]
    est = make_estimator(spec, args)
    est.fit(train, callbacks=[Progress(args.quiet)])
    labels = est.predict(colour)
    means = np.clip(np.asarray(est.means_), 0.0, 1.0)
    out = means[labels].reshape(h, w, -1)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    if c == 4:
        out = np.concatenate([out, img[:, :, 3:4]], axis=2)
    # round to 8 bits here: imsave would truncate floats
    out8 = np.round(np.clip(out, 0.0, 1.0) * 255).astype(np.uint8)
    with atomic_write(args.out, "wb") as fh:
        mpimg.imsave(fh, out8, format="png")
    shares = np.bincount(labels, minlength=means.shape[0]) / labels.size
    print(f"segmented {args.image} ({w}x{h} pixels) into {means.shape[0]} colours "
          f"(fitted on {train.shape[0]} pixels, {est.n_iter_} iterations)")
    for k in np.argsort(-shares):
        rgb = means[k] if means.shape[1] == 3 else np.repeat(means[k], 3)
        hexcol = "#" + "".join(f"{int(round(v * 255)):02x}" for v in rgb)
        print(f"  component {k}: colour {hexcol}  {100 * shares[k]:5.1f}% of pixels")
    print(f"saved image   {args.out}")
    if args.model_out is not None:
        est.save(args.model_out, metadata={"cli_model": "gmm", "columns": ["r", "g", "b"][:c]})
    return 0


# -- argument parsing ------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits with 2 on usage errors
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {v}")
    return v


def _non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"must be a finite non-negative number, got {text}")
    return v


def _seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer seed") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"the seed must be >= 0, got {v}")
    return v


def _add_common_fit_options(p: argparse.ArgumentParser, *, components: bool = True) -> None:
    if components:
        p.add_argument("--components", "-k", type=_positive_int, metavar="K",
                       help="number of components or hidden states (default 2)")
        p.add_argument("--covariance-type", choices=["full", "diag", "spherical", "tied"],
                       help="covariance structure of gmm, gmm-missing and gaussian-hmm "
                       "(default full for the mixtures, diag for gaussian-hmm)")
        p.add_argument("--n-init", type=_positive_int, metavar="N",
                       help="restarts from different random starts; the best is kept")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="random seed, so a run can be repeated (default 0)")
    p.add_argument("--max-iter", type=_positive_int, metavar="N", help="maximum EM iterations")
    p.add_argument("--tol", type=_non_negative_float, metavar="T",
                   help="stop when the mean log-likelihood per row improves by less than T")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="no progress lines on stderr")


def _add_columns(p: argparse.ArgumentParser) -> None:
    p.add_argument("--columns", "-c", action="append", metavar="COLS",
                   help="columns to use, by name, number from 1 or range of numbers (1-64), "
                   "comma-separated (may be repeated); default all")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``emframe`` command."""
    parser = _Parser(
        prog=PROG,
        description="Fit latent-variable models by EM from the command line. Data are CSV "
        "files with a header row (missing values as empty cells or NaN) or .npy arrays.",
        epilog="Exit status: 0 success, 2 usage error or bad input, 1 other failure. "
        "See 'emframe COMMAND --help'.",
    )
    parser.add_argument("--version", action="version", version=f"emframe {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    models_help = "; ".join(f"{s.name}: {s.help}" for s in MODELS.values())

    p = sub.add_parser("fit", help="fit a model and print a summary",
                       description=f"Fit a model by EM and print a summary. Models: "
                       f"{models_help}.")
    p.add_argument("model", choices=list(MODELS), metavar="MODEL",
                   help=f"one of {', '.join(MODELS)}")
    p.add_argument("data", metavar="DATA", help="CSV file with a header row, or .npy; "
                   "example:NAME for shipped data (example:old_faithful)")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN",
                   help="HMMs: a column of sequence ids (a new sequence starts where the id "
                   "changes) or a file of sequence lengths, one per line")
    p.add_argument("--drop-missing", action="store_true",
                   help="leave out rows with a missing value (for models without missing data)")
    _add_common_fit_options(p)
    p.add_argument("--out", "-o", metavar="MODEL.npz", help="save the fitted model here")
    p.add_argument("--plot", metavar="FILE.png", help="save a picture of the fit here")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("predict", help="labels and probabilities from a saved model",
                       description="Write the most probable component (or HMM state) of every "
                       "row and the probabilities of all of them, as CSV.")
    p.add_argument("model_file", metavar="MODEL_FILE", help="a model saved by 'emframe fit'")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="HMMs: sequences, as for fit")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("impute", help="fill missing values (multivariate normal)",
                       description="Fit a multivariate normal to data with missing values by "
                       "EM and write the data with every missing cell replaced by its "
                       "conditional mean given the observed cells of its row.")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--ridge", type=_non_negative_float, metavar="R",
                   help="covariance regularisation (default 0)")
    p.add_argument("--max-iter", type=_positive_int, metavar="N")
    p.add_argument("--tol", type=_non_negative_float, metavar="T")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_impute)

    p = sub.add_parser("decode", help="most likely hidden state path of an HMM",
                       description="Write the most likely state of every row under a saved "
                       "HMM (Viterbi path), as CSV.")
    p.add_argument("model_file", metavar="MODEL_FILE")
    p.add_argument("data", metavar="DATA")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="sequences, as for fit")
    p.add_argument("--algorithm", choices=["viterbi", "map"], default="viterbi",
                   help="viterbi: the jointly most likely path (default); map: the most "
                   "likely state at each step")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="FILE.csv", help="write here instead of stdout")
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("select", help="choose the number of components by BIC/AIC",
                       description="Fit the model for each number of components and print "
                       "a table of log-likelihood, BIC and AIC; the best is marked with *.")
    p.add_argument("model", choices=[m for m, s in MODELS.items() if s.kind != "gaussian"],
                   metavar="MODEL")
    p.add_argument("data", metavar="DATA")
    p.add_argument("--components", "-k", type=parse_range, default=parse_range("1-6"),
                   metavar="RANGE", help="component counts to try, like 1-8 or 2,3,5 "
                   "(default 1-6)")
    p.add_argument("--covariance-type", metavar="TYPES",
                   type=_covariance_types,
                   help="covariance structure(s) to try, comma-separated "
                   "(full,diag,spherical,tied)")
    p.add_argument("--criterion", choices=["bic", "aic"], default="bic")
    _add_columns(p)
    p.add_argument("--lengths", metavar="FILE|COLUMN", help="HMMs: sequences, as for fit")
    p.add_argument("--drop-missing", action="store_true")
    p.add_argument("--n-init", type=_positive_int, metavar="N")
    p.add_argument("--seed", type=_seed, default=0, metavar="S")
    p.add_argument("--max-iter", type=_positive_int, metavar="N")
    p.add_argument("--tol", type=_non_negative_float, metavar="T")
    p.add_argument("--quiet", "-q", action="store_true")
    p.add_argument("--out", "-o", metavar="MODEL.npz", help="save the best model here")
    p.set_defaults(func=cmd_select)

    p = sub.add_parser("segment", help="segment a PNG image by a Gaussian mixture on colours",
                       description="Fit a Gaussian mixture to the pixel colours of a PNG image "
                       "and paint every pixel with the mean colour of its component.")
    p.add_argument("image", metavar="IMAGE.png")
    p.add_argument("--out", "-o", required=True, metavar="SEGMENTED.png")
    _add_common_fit_options(p)
    p.add_argument("--max-pixels", type=int, default=20000, metavar="N",
                   help="fit on a random subset of at most N pixels (0: all; default 20000); "
                   "every pixel is then labelled")
    p.add_argument("--model-out", metavar="MODEL.npz", help="also save the fitted mixture")
    p.set_defaults(func=cmd_segment)
    return parser


def _covariance_types(text: str) -> str:
    valid = {"full", "diag", "spherical", "tied"}
    parts = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in parts if t not in valid]
    if not parts or bad:
        raise argparse.ArgumentTypeError(f"invalid covariance type(s) {bad or text!r}; "
                                         f"choose from {sorted(valid)}")
    return ",".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(args.func(args) or 0)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of stdout went away (emframe ... | head): not an error worth a traceback
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if os.environ.get("EMFRAME_DEBUG"):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
