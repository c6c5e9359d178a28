"""Building estimators from options, fitting them with progress, and describing the result."""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

import numpy as np

from emframe.interfaces.cli.specs import PROG, InputError, ModelSpec
from emframe.interfaces.cli.tables import Data, _pyplot


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
    from emframe.interfaces import plotting

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


