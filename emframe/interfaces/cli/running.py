"""Building estimators from options, fitting them with progress, and describing the result."""

from __future__ import annotations

import argparse
import contextlib
import inspect
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import numpy as np

from emframe.inference.compiled import caused_by_interrupt
from emframe.interfaces.cli.specs import PROG, InputError, ModelSpec
from emframe.interfaces.cli.statespace import ssm_kwargs, ssm_options_given
from emframe.interfaces.cli.tables import Data, _pyplot


# -- progress --------------------------------------------------------------------------------------
class Progress:
    """Engine callback reporting a fit's progress on standard error.

    On a terminal it draws a live progress bar per restart with tqdm (installed with
    ``pip install "emframe[cli]"``). Otherwise (a file, a pipe, or no tqdm) it prints
    plain lines: one when a restart ends, and at most one every ``interval`` seconds
    while it runs, so a short fit prints one line, not one per iteration. ``quiet``
    prints nothing. Use it as a context manager around the fit, so that the last
    line is printed and the bar closed.

    Parameters
    ----------
    quiet : bool
    stream : text stream, optional
        Default: ``sys.stderr`` at construction.
    label : str
        Printed before every line (``select`` names the model being fitted).
    interval : float
        Least number of seconds between two lines in plain mode.
    bar : bool, optional
        Force the bar on (needs tqdm) or off; default: a bar when ``stream`` is a
        terminal and tqdm is installed.
    """

    def __init__(self, quiet: bool, stream: TextIO | None = None, label: str = "", *,
                 interval: float = 1.0, bar: bool | None = None) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.label = label
        self.interval = interval
        self.total: int | None = None
        self.n_init = 1
        self._tqdm = None if quiet or bar is False else _tqdm_class()
        if bar is None:
            isatty = getattr(self.stream, "isatty", None)
            bar = bool(isatty and isatty())
        self.bar = bool(bar) and self._tqdm is not None
        self.start = self._last_line = time.perf_counter()
        self._pending: Any = None  # the latest iteration, not yet printed
        self._current_bar: Any = None
        self._bar_init = -1

    def configure(self, estimator: Any) -> Progress:
        """Take the iteration budget and the number of restarts from ``estimator``."""
        params = estimator.get_params(deep=False)
        max_iter, n_init = params.get("max_iter"), params.get("n_init")
        self.total = max_iter if isinstance(max_iter, int) and max_iter > 0 else None
        self.n_init = n_init if isinstance(n_init, int) and n_init > 0 else 1
        return self

    def __call__(self, info: Any) -> None:
        if self.quiet:
            return
        if self.bar:
            self._update_bar(info)
            return
        if self._pending is not None and info.init != self._pending.init:
            self._print(self._pending)  # the last iteration of the previous restart
        self._pending = info
        if time.perf_counter() - self._last_line >= self.interval:
            self._print(info)

    def _restart(self, init: int) -> str:
        return f"restart {init + 1}" + (f"/{self.n_init}" if self.n_init > 1 else "")

    def _print(self, info: Any) -> None:
        change = "" if math.isnan(info.change) else f"  change/sample {info.change:.3e}"
        print(f"{self.label}{self._restart(info.init)}  iter {info.iteration:4d}  "
              f"loglik {info.log_likelihood:.6f}{change}  "
              f"elapsed {time.perf_counter() - self.start:.2f}s",
              file=self.stream, flush=True)
        self._last_line = time.perf_counter()
        self._pending = None

    def _update_bar(self, info: Any) -> None:
        if info.init != self._bar_init:
            self._close_bar()
            self._bar_init = info.init
            self._current_bar = self._tqdm(
                total=self.total, desc=f"{self.label}{self._restart(info.init)}", unit="iter",
                file=self.stream, leave=True, dynamic_ncols=True)
            _ACTIVE_BAR.append(self._current_bar)
        b = self._current_bar
        b.update(max(info.iteration - b.n, 0))
        change = "" if math.isnan(info.change) else f", change/sample {info.change:.2e}"
        b.set_postfix_str(f"loglik {info.log_likelihood:.6g}{change}", refresh=False)

    def _close_bar(self) -> None:
        if self._current_bar is not None:
            b = self._current_bar
            b.total = b.n  # finished (converged, or stopped at max_iter)
            b.close()
            self._current_bar = None
            if b in _ACTIVE_BAR:
                _ACTIVE_BAR.remove(b)

    def close(self) -> None:
        """Print the last line (plain mode) or close the bar."""
        if self.bar:
            self._close_bar()
        elif self._pending is not None:
            self._print(self._pending)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        if exc_type is None:
            self.close()
        elif self.bar:
            self._close_bar()


def _tqdm_class() -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


#: The progress bar being drawn, if any: warnings are printed above it, not into it.
_ACTIVE_BAR: list[Any] = []


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: Any = None) -> None:
    text = f"{PROG}: warning: {message}"
    if _ACTIVE_BAR:
        type(_ACTIVE_BAR[-1]).write(text, file=sys.stderr)  # tqdm.write: clears and redraws
    else:
        print(text, file=sys.stderr)


# -- fitting ---------------------------------------------------------------------------------------
def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def make_estimator(spec: ModelSpec, args: argparse.Namespace, n_components: int | None = None,
                   covariance_type: str | None = None, data: Data | None = None) -> Any:
    """The estimator for ``spec`` with the options given on the command line.

    ``data`` (the data to be fitted) is needed by the options of ``fit ssm`` that
    depend on the number of columns.
    """
    cls = spec.estimator_class
    kwargs: dict[str, Any] = {}
    ssm_given = ssm_options_given(args)
    if ssm_given and spec.kind != "ssm":
        raise InputError(f"{ssm_given[0]} applies to ssm, not to {spec.name}")
    if ssm_given and data is not None:
        kwargs.update(ssm_kwargs(args, data.X))
    order = getattr(args, "order", None)
    if order is not None:
        if not _accepts(cls, "order"):
            raise InputError(f"--order applies to ar-hmm, not to {spec.name}")
        kwargs["order"] = order
    if getattr(args, "noise", False):
        if not _accepts(cls, "noise"):
            raise InputError(f"--noise applies to gmm and tmix, not to {spec.name}")
        kwargs["noise"] = True
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
    state_dim = getattr(args, "state_dim", None)
    if state_dim is not None or _accepts(cls, "n_dim_state"):
        if not _accepts(cls, "n_dim_state"):
            raise InputError(f"{spec.name} has no state dimension; leave out --state-dim")
        kwargs["n_dim_state"] = 1 if state_dim is None else state_dim
        if state_dim is not None and data is not None:
            _check_state_dim(state_dim, data)
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
    with refusals(cls.__name__):
        return cls(**kwargs)


@contextlib.contextmanager
def refusals(name: str) -> Iterator[None]:
    """An estimator's ValueError or TypeError as an :class:`InputError` (exit status 2,
    one line): by the estimators' contract it means a value they refuse, and what to do."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        if caused_by_interrupt(exc):
            raise
        raise InputError(f"{name}: {' '.join(str(exc).split())}") from exc


def _order(est: Any) -> int:
    """Rows at the start of every sequence that are lags only (an autoregressive HMM)."""
    order = getattr(est, "order", 0)
    return int(order) if isinstance(order, (int, np.integer)) else 0


def _check_state_dim(state_dim: int, data: Data) -> None:
    from emframe.models.ssm.model import check_state_size

    try:
        check_state_size(state_dim, int(_sequence_bounds(data)[1].max()))
    except ValueError as exc:
        raise InputError(f"--state-dim {state_dim}: {exc}") from None


def _sequence_bounds(data: Data) -> tuple[np.ndarray, np.ndarray]:
    n = data.X.shape[0]
    lengths = np.array([n]) if data.lengths is None else np.asarray(data.lengths, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return starts, lengths


def state_rows(est: Any, data: Data) -> np.ndarray | None:
    """Which rows have a hidden state: all but the lags of an autoregressive HMM.

    Returns
    -------
    ndarray of bool, shape (n_rows,), or None
        None when every row has a state.
    """
    order = _order(est)
    if order == 0:
        return None
    starts, _ = _sequence_bounds(data)
    keep = np.ones(data.X.shape[0], dtype=bool)
    keep[(starts[:, None] + np.arange(order)).ravel()] = False
    return keep


def check_lags(est: Any, data: Data) -> None:
    """Refuse sequences with no row beyond the lags of an autoregressive HMM."""
    order = _order(est)
    if order == 0:
        return
    starts, lengths = _sequence_bounds(data)
    short = np.flatnonzero(lengths <= order)
    if short.size:
        i = int(short[0])
        what = (f"sequence {i + 1} (rows {starts[i] + 1}-{starts[i] + lengths[i]})"
                if lengths.size > 1 else "the data")
        raise InputError(
            f"{data.table.path}: {what} has {lengths[i]} row(s), but ar-hmm with order "
            f"{order} takes the first {order} rows of every sequence as lags and needs at "
            "least one more; use longer sequences or a smaller --order"
        )


def fit_estimator(est: Any, spec: ModelSpec | None, data: Data | np.ndarray,
                  progress: Progress) -> Any:
    """Fit ``est`` on the data with ``progress`` as its callback."""
    X = data if isinstance(data, np.ndarray) else data.X
    with refusals(type(est).__name__), progress.configure(est):
        if spec is not None and spec.sequential:
            return est.fit(X, data.lengths, callbacks=[progress])
        return est.fit(X, callbacks=[progress])


def _with_lengths(method: Callable[..., Any], spec: ModelSpec | None, data: Data) -> Any:
    if spec is not None and spec.sequential:
        return method(data.X, data.lengths)
    return method(data.X)


def summary(est: Any, spec: ModelSpec, data: Data) -> str:
    """A short text summary of a fitted estimator on its training data."""
    n = data.X.shape[0]
    ll = float(_with_lengths(est.log_likelihood, spec, data))
    rows = state_rows(est, data)
    # an autoregressive HMM's likelihood is of the rows after the lags
    per = "per row" if rows is None else "per modelled row"
    n_scored = n if rows is None else int(rows.sum())
    lines = [
        f"model           {est!r}",
        f"data            {data.table.path}: {n} rows, columns {', '.join(data.names)}"
        + ("" if data.lengths is None else f", {len(data.lengths)} sequences"),
        f"log-likelihood  {ll:.6f}  ({ll / n_scored:.6f} {per})",
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
    noise = ("noise_weight_",) if getattr(est, "noise", False) else ()
    for name in spec.attributes + noise:
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
    from emframe.interfaces import plotting

    plt = _pyplot()
    if spec.name == "bernoulli":
        return plotting.plot_bernoulli_components(est)
    if spec.kind == "ssm":
        fig = plotting.plot_smoothed_states(est, data.X, data.lengths, signal=True)
        for ax, name in zip(fig.axes, data.names, strict=True):
            ax.set_ylabel(name)
        return fig
    if spec.kind == "hmm":
        rows = state_rows(est, data)
        if rows is None:
            fig = plotting.plot_state_path(est, data.X, lengths=data.lengths)
        else:  # the lags have no state: draw the rows that have one, at their positions
            _, lengths = _sequence_bounds(data)
            fig = plotting.plot_state_path(
                est, data.X[rows], lengths=lengths - _order(est),
                states=_with_lengths(est.predict, spec, data), x=np.flatnonzero(rows))
            fig.axes[1].set_xlabel("time")
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


