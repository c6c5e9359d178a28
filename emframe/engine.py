"""The single EM fit loop shared by every model."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import DataSource
from .exceptions import ConvergenceWarning, MonotonicityError, MonotonicityWarning
from .model import EMModel
from .params import Params, Stats
from .validation import check_random_state, check_scalar

#: Relative size of a likelihood drop that is still floating-point noise.
MONOTONE_RTOL = 1e-9


@dataclass(frozen=True)
class IterationInfo:
    """What a callback sees after each EM iteration.

    Attributes
    ----------
    init : int
        Index of the restart (0-based).
    iteration : int
        Number of M-steps done so far in this restart.
    log_likelihood : float
        (Penalised) log-likelihood of the parameters *before* this iteration's M-step.
    change : float
        Change of the mean per-sample log-likelihood since the previous iteration
        (``nan`` on the first).
    params : Params
        Parameters after this iteration's M-step.
    elapsed : float
        Seconds since this restart began.
    """

    init: int
    iteration: int
    log_likelihood: float
    change: float
    params: Params
    elapsed: float


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit_em`: the best restart.

    Attributes
    ----------
    params : Params
        Fitted parameters.
    log_likelihood : float
        (Penalised) log-likelihood of ``params`` on the data.
    loglik_history : ndarray of shape (n_iter + 1,)
        ``loglik_history[i]`` is the (penalised) log-likelihood after ``i``
        M-steps; entry 0 is at the initial parameters, the last at ``params``.
    converged : bool
    n_iter : int
        Number of M-steps done.
    n_samples : float
        Number of samples (sum of the weights when weighted).
    best_init : int
        Index of the restart kept.
    init_log_likelihoods : tuple of float
        Final (penalised) log-likelihood of every restart.
    """

    params: Params
    log_likelihood: float
    loglik_history: np.ndarray
    converged: bool
    n_iter: int
    n_samples: float
    best_init: int = 0
    init_log_likelihoods: tuple[float, ...] = field(default=())


def e_step_all(model: EMModel, params: Params, source: DataSource) -> tuple[Stats, float, float]:
    """Run the E-step chunk by chunk and sum the statistics.

    Returns
    -------
    stats : Stats
        Statistics summed over all chunks.
    log_likelihood : float
        Total (weighted) log-likelihood of the data under ``params``.
    n_samples : float
        Number of samples seen (sum of weights when weighted).
    """
    total: Stats | None = None
    loglik = 0.0
    n = 0.0
    for chunk, w in source:
        if w is None:
            stats, ll = model.e_step(params, chunk)
            n += model.n_samples(chunk)
        else:
            stats, ll = _weighted_e_step(model, params, chunk, w)
            n += float(np.sum(w))
        total = stats if total is None else total + stats
        loglik += float(ll)
    if total is None:
        raise ValueError("the data source is empty: it yielded no chunk")
    return total, loglik, n


def _weighted_e_step(model: EMModel, params: Params, chunk: Any, w: np.ndarray) -> Any:
    try:
        return model.e_step(params, chunk, sample_weight=w)
    except TypeError as exc:
        if "sample_weight" in str(exc):
            raise TypeError(
                f"{type(model).__name__}.e_step does not accept sample_weight, so this model "
                "cannot be fitted with sample weights"
            ) from None
        raise


def total_log_likelihood(model: EMModel, params: Params, source: DataSource) -> tuple[float, float]:
    """(Penalised) log-likelihood of all the data under ``params``, and the sample count."""
    loglik = 0.0
    n = 0.0
    for chunk, w in source:
        if w is None:
            loglik += float(model.log_likelihood(params, chunk))
            n += model.n_samples(chunk)
        else:
            loglik += float(_weighted_e_step(model, params, chunk, w)[1])
            n += float(np.sum(w))
    return loglik + float(model.log_prior(params)), n


def check_freeze(freeze: Iterable[str] | None, params: Params) -> tuple[str, ...]:
    """Validate the names of parameters to hold fixed."""
    if freeze is None:
        return ()
    if isinstance(freeze, str):
        freeze = (freeze,)
    names = tuple(freeze)
    valid = params.field_names()
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(
            f"cannot freeze {unknown}: {type(params).__name__} has parameters {list(valid)}"
        )
    return names


class _Guard:
    """Watches the objective for drops that exact EM cannot produce."""

    def __init__(self, model: EMModel, strict: bool) -> None:
        self.model = model
        self.strict = strict

    def __call__(self, prev: float, cur: float, iteration: int) -> None:
        drop = prev - cur
        if drop > MONOTONE_RTOL * max(1.0, abs(prev)):
            msg = (
                f"log-likelihood decreased by {drop:.6g} at iteration {iteration} "
                f"(from {prev:.10g} to {cur:.10g}); exact EM never decreases it, so "
                f"{type(self.model).__name__}'s E-step, M-step or log-likelihood is inconsistent"
            )
            if self.strict:
                raise MonotonicityError(msg)
            warnings.warn(msg, MonotonicityWarning, stacklevel=4)


def _check_finite(value: float, what: str, iteration: int, model: EMModel) -> None:
    if not math.isfinite(value):
        raise ValueError(
            f"the {what} is {value} at iteration {iteration} of {type(model).__name__}; "
            "the data or the initial parameters give zero probability to some sample"
        )


def _check_new_params(model: EMModel, params: Params, iteration: int) -> None:
    try:
        model.check_params(params)
    except ValueError as exc:
        raise ValueError(
            f"the M-step of {type(model).__name__} at iteration {iteration} produced "
            f"invalid parameters: {exc}"
        ) from None


def run_em(
    model: EMModel,
    source: DataSource,
    params: Params,
    *,
    tol: float,
    max_iter: int,
    freeze: Sequence[str] = (),
    strict: bool = False,
    verbose: int = 0,
    callbacks: Sequence[Callable[[IterationInfo], Any]] = (),
    init: int = 0,
) -> FitResult:
    """Run EM from ``params`` until the tolerance or ``max_iter`` is reached.

    The convergence test compares the mean per-sample objective of successive
    parameter sets, so ``tol`` means the same for any number of samples. A
    callback returning ``True`` stops the run.
    """
    guard = _Guard(model, strict)
    fixed = {name: getattr(params, name) for name in freeze}
    history: list[float] = []
    converged = False
    n = 1.0
    start = time.perf_counter()
    n_iter = 0
    for n_iter in range(1, max_iter + 1):
        stats, loglik, n = e_step_all(model, params, source)
        obj = loglik + float(model.log_prior(params))
        _check_finite(obj, "log-likelihood", n_iter - 1, model)
        change = math.nan
        if history:
            guard(history[-1], obj, n_iter - 1)
            change = (obj - history[-1]) / n
        history.append(obj)
        params = model.constrained_m_step(stats, fixed)
        _check_new_params(model, params, n_iter)
        elapsed = time.perf_counter() - start
        if verbose:
            print(
                f"[emframe] init {init} iter {n_iter:4d}  loglik {obj:.10g}  "
                f"change/sample {change:.3e}  time {elapsed:.2f}s",
                file=sys.stderr,
            )
        info = IterationInfo(init, n_iter, obj, change, params, elapsed)
        stop = any([bool(cb(info)) for cb in callbacks])
        if abs(change) < tol:
            converged = True
            break
        if stop:
            break
    final, n_final = total_log_likelihood(model, params, source)
    _check_finite(final, "log-likelihood", n_iter, model)
    if history:
        guard(history[-1], final, n_iter)
    else:
        n = n_final
    history.append(final)
    return FitResult(
        params=params,
        log_likelihood=final,
        loglik_history=np.asarray(history),
        converged=converged,
        n_iter=n_iter,
        n_samples=n,
    )


def fit_em(
    model: EMModel,
    data: Any,
    *,
    init_params: Params | None = None,
    sample_weight: np.ndarray | None = None,
    chunk_size: int | None = None,
    transform: Callable[[Any], Any] | None = None,
    tol: float = 1e-3,
    max_iter: int = 100,
    n_init: int = 1,
    random_state: Any = None,
    freeze: Iterable[str] | None = None,
    strict: bool = False,
    verbose: int = 0,
    callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
    warn_convergence: bool = True,
) -> FitResult:
    """Fit ``model`` by EM and return the best of ``n_init`` restarts.

    Parameters
    ----------
    model : EMModel
    data : array-like, DataSource, list of chunks or callable
        See :class:`~emframe.data.DataSource`.
    init_params : Params, optional
        Start from these parameters (one run; ``n_init`` is ignored).
    sample_weight : ndarray of shape (n_samples,), optional
    chunk_size : int, optional
        Run the E-step on slices of this many rows and sum the statistics.
    transform : callable, optional
        Applied to each chunk as it is read (for example validation).
    tol : float
        Stop when the mean per-sample log-likelihood changes by less than this.
    max_iter : int
        Maximum number of M-steps per restart.
    n_init : int
        Number of restarts from independent seeds; the best is kept.
    random_state : None, int or numpy Generator
    freeze : iterable of str, optional
        Names of parameter fields held at their initial values.
    strict : bool
        Raise :class:`MonotonicityError` instead of warning when the
        log-likelihood decreases.
    verbose : int
        Print progress to stderr when positive.
    callbacks : sequence of callables, optional
        Each is called with an :class:`IterationInfo` after every iteration;
        one returning ``True`` stops the restart.
    warn_convergence : bool
        Emit :class:`ConvergenceWarning` when the kept restart did not converge.

    Returns
    -------
    FitResult
    """
    check_scalar(tol, "tol", (int, float), min_value=0.0)
    check_scalar(max_iter, "max_iter", (int, np.integer), min_value=0)
    check_scalar(n_init, "n_init", (int, np.integer), min_value=1)
    if not isinstance(data, DataSource):
        data = DataSource(data, sample_weight=sample_weight, chunk_size=chunk_size,
                          transform=transform)
    elif sample_weight is not None or chunk_size is not None:
        raise TypeError("pass sample_weight and chunk_size to the DataSource, not to fit_em")
    rng = check_random_state(random_state)
    callbacks = tuple(callbacks or ())
    runs = 1 if init_params is not None else int(n_init)
    seeds = rng.integers(0, 2**63 - 1, size=runs)
    init_data = None
    best: FitResult | None = None
    best_index = 0
    finals = []
    for i in range(runs):
        if init_params is not None:
            model.check_params(init_params)
            params = init_params
        else:
            if init_data is None:
                init_data = data.first()
            params = model.initialize(init_data, np.random.default_rng(seeds[i]))
        names = check_freeze(freeze, params)
        result = run_em(
            model, data, params, tol=tol, max_iter=int(max_iter), freeze=names, strict=strict,
            verbose=verbose, callbacks=callbacks, init=i,
        )
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best, best_index = result, i
    assert best is not None
    if warn_convergence and not best.converged and max_iter > 0 and tol > 0:
        warnings.warn(
            f"{type(model).__name__}: EM did not converge in max_iter={max_iter} iterations "
            f"(tol={tol}); increase max_iter or tol, or try other initialisations",
            ConvergenceWarning,
            stacklevel=2,
        )
    return FitResult(
        params=best.params,
        log_likelihood=best.log_likelihood,
        loglik_history=best.loglik_history,
        converged=best.converged,
        n_iter=best.n_iter,
        n_samples=best.n_samples,
        best_init=best_index,
        init_log_likelihoods=tuple(finals),
    )
