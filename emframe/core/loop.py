"""One restart's bookkeeping: E-steps over the data source, the history, the guard, stopping."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource
from emframe.core.exceptions import MonotonicityError, MonotonicityWarning, warn
from emframe.core.model import EMModel
from emframe.core.params import Params, Stats
from emframe.core.results import FitResult, IterationInfo

#: Relative size of a likelihood drop that is still floating-point noise.
MONOTONE_RTOL = 1e-9


class EStep:
    """One chunk's E-step, ``(stats, log_likelihood, n_samples)``: a map-reduce's function.

    A picklable callable holding the model and the parameters, so that an executor
    on a cluster ships them once per pass, however many chunks read them.
    """

    def __init__(self, model: EMModel, params: Params) -> None:
        self.model = model
        self.params = params

    def __call__(self, chunk: Any, w: np.ndarray | None) -> tuple[Stats, float, float]:
        if w is None:
            stats, ll = self.model.e_step(self.params, chunk)
            return stats, float(ll), float(self.model.n_samples(chunk))
        stats, ll = _weighted_e_step(self.model, self.params, chunk, w)
        return stats, float(ll), float(np.sum(w))


class ChunkLogLikelihood(EStep):
    """One chunk's (weighted) log-likelihood and sample count, without the log prior."""

    def __call__(self, chunk: Any, w: np.ndarray | None) -> tuple[float, float]:  # type: ignore[override]
        if w is None:
            ll = self.model.log_likelihood(self.params, chunk)
            return float(ll), float(self.model.n_samples(chunk))
        return float(_weighted_e_step(self.model, self.params, chunk, w)[1]), float(np.sum(w))


def e_step_all(model: EMModel, params: Params, source: DataSource) -> tuple[Stats, float, float]:
    """Run the E-step over all the data (chunk by chunk, or on a cluster) and sum the statistics.

    Returns
    -------
    stats : Stats
        Statistics summed over all chunks.
    log_likelihood : float
        Total (weighted) log-likelihood of the data under ``params``.
    n_samples : float
        Number of samples seen (sum of weights when weighted).
    """
    stats, ll, n = source.map_reduce(EStep(model, params))
    return stats, float(ll), float(n)


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
    loglik, n = source.map_reduce(ChunkLogLikelihood(model, params))
    return float(loglik) + float(model.log_prior(params)), float(n)


def monotone_rtol(model: EMModel) -> float:
    """The guard's relative tolerance for ``model``: the engine's, or the model's
    declared evaluation precision (:meth:`EMModel.evaluation_rtol`) if coarser."""
    return max(MONOTONE_RTOL, _declared_rtol(model))


def _declared_rtol(model: EMModel) -> float:
    """The model's declared evaluation precision (0 for a model without the hook)."""
    declared = getattr(model, "evaluation_rtol", None)
    return float(declared()) if callable(declared) else 0.0


def monotone_limit(model: EMModel, prev: float, n_samples: float = 1.0) -> float:
    """The largest drop from ``prev`` the guard forgives as rounding.

    ``MONOTONE_RTOL`` times ``max(1, |prev|)``, or, if coarser, the model's declared
    evaluation precision times ``max(1, |prev|, n_samples)``: each sample's
    log-density is rounded to about that fraction of its own magnitude (of order one
    nat or more), and the sum can be much smaller than the sum of the magnitudes.
    """
    scale = max(1.0, abs(prev))
    return max(MONOTONE_RTOL * scale, _declared_rtol(model) * max(scale, float(n_samples)))


class _Guard:
    """Watches the objective for drops that exact EM cannot produce."""

    def __init__(self, model: EMModel, strict: bool, name: str | None = None) -> None:
        self.model = model
        self.strict = strict
        self.name = display_name(model, name)

    def __call__(self, prev: float, cur: float, iteration: int, n_samples: float = 1.0) -> None:
        drop = prev - cur
        if drop > monotone_limit(self.model, prev, n_samples):
            msg = (
                f"log-likelihood decreased by {drop:.6g} at iteration {iteration} "
                f"(from {prev:.10g} to {cur:.10g}); exact EM never decreases it, so "
                f"{self.name}'s E-step, M-step or log-likelihood is inconsistent"
            )
            if self.strict:
                raise MonotonicityError(msg)
            warn(msg, MonotonicityWarning)


def display_name(model: EMModel, name: str | None = None) -> str:
    """How messages name the model: ``name`` (an estimator's class name) or its class name."""
    return type(model).__name__ if name is None else str(name)


def _check_finite(value: float, what: str, iteration: int, model: EMModel,
                  name: str | None = None) -> None:
    if not math.isfinite(value):
        raise ValueError(
            f"the {what} is {value} at iteration {iteration} of {display_name(model, name)}; "
            "the data or the initial parameters give zero probability to some sample"
        )


def run_callbacks(callbacks: Sequence[Callable[[IterationInfo], Any]], info: IterationInfo) -> bool:
    """Call every callback with ``info``; True when one of them asks to stop.

    A callback returns ``None`` or ``False`` to go on and ``True`` to stop; any
    other value (an array, a number) is refused, since its truth is ambiguous.
    """
    stop = False
    for cb in callbacks:
        answer = cb(info)
        if answer is None:
            continue
        if not isinstance(answer, (bool, np.bool_)):
            name = getattr(cb, "__name__", type(cb).__name__)
            raise TypeError(
                f"callback {name} returned {type(answer).__name__} {answer!r:.60}; a callback "
                "must return None or False to go on, or True to stop the run"
            )
        stop = stop or bool(answer)
    return stop


def _check_new_params(model: EMModel, params: Params, iteration: int,
                      name: str | None = None) -> None:
    try:
        model.check_params(params)
    except ValueError as exc:
        raise ValueError(
            f"the M-step of {display_name(model, name)} at iteration {iteration} produced "
            f"invalid parameters: {exc}"
        ) from None


class _Loop:
    """Bookkeeping shared by every way of stepping: E-steps, history, guard, stopping.

    A step strategy calls :meth:`evaluate` for each E-step it needs and
    :meth:`record` for each point it accepts into the history.
    """

    def __init__(
        self,
        model: EMModel,
        source: DataSource,
        *,
        tol: float,
        max_iter: int,
        strict: bool,
        verbose: int,
        callbacks: Sequence[Callable[[IterationInfo], Any]],
        init: int,
        name: str | None = None,
    ) -> None:
        self.model = model
        self.name = name
        self.source = source
        self.tol = tol
        self.max_iter = max_iter
        self.guard = _Guard(model, strict, name)
        self.verbose = verbose
        self.callbacks = callbacks
        self.init = init
        self.history: list[float] = []
        self.n_iter = 0
        self.n_e_steps = 0
        self.n = 1.0
        self.converged = False
        self.start = time.perf_counter()

    def evaluate(self, params: Params) -> tuple[Stats, float]:
        """One E-step over all the data: summed statistics and the objective."""
        stats, loglik, self.n = e_step_all(self.model, params, self.source)
        self.n_e_steps += 1
        obj = loglik + float(self.model.log_prior(params))
        _check_finite(obj, "log-likelihood", self.n_iter, self.model, self.name)
        return stats, obj

    def m_step(self, stats: Stats, fixed: dict[str, Any]) -> Params:
        params = self.model.constrained_m_step(stats, fixed)
        _check_new_params(self.model, params, self.n_iter + 1, self.name)
        return params

    def record(self, obj: float, new_params: Params) -> bool:
        """Accept the objective of the current point and the M-step from it; True = stop."""
        self.n_iter += 1
        change = math.nan
        if self.history:
            self.guard(self.history[-1], obj, self.n_iter - 1, self.n)
            change = (obj - self.history[-1]) / self.n
        self.history.append(obj)
        elapsed = time.perf_counter() - self.start
        if self.verbose:
            # the first iteration has no previous value to differ from: no "nan"
            shown = "-" if math.isnan(change) else f"{change:.3e}"
            print(
                f"[emframe] init {self.init} iter {self.n_iter:4d}  loglik {obj:.10g}  "
                f"change/sample {shown}  time {elapsed:.2f}s",
                file=sys.stderr,
            )
        info = IterationInfo(self.init, self.n_iter, obj, change, new_params, elapsed)
        stop = run_callbacks(self.callbacks, info)
        if abs(change) < self.tol:
            self.converged = True
            return True
        return stop or self.n_iter >= self.max_iter

    def finish(self, params: Params) -> FitResult:
        final, n_final = total_log_likelihood(self.model, params, self.source)
        _check_finite(final, "log-likelihood", self.n_iter, self.model, self.name)
        if self.history:
            self.guard(self.history[-1], final, self.n_iter, self.n)
            # the last M-step's own change: a run cut short by max_iter (for example
            # repeated warm-started one-iteration fits) converges when it is small
            if abs(final - self.history[-1]) / self.n < self.tol:
                self.converged = True
        else:
            self.n = n_final
        self.history.append(final)
        return FitResult(
            params=params,
            log_likelihood=final,
            loglik_history=np.asarray(self.history),
            converged=self.converged,
            n_iter=self.n_iter,
            n_samples=self.n,
            n_e_steps=self.n_e_steps + 1,
            weight_scale=self.source.weight_scale,
        )


def _plain_steps(loop: _Loop, params: Params, fixed: dict[str, Any]) -> Params:
    while loop.n_iter < loop.max_iter:
        stats, obj = loop.evaluate(params)
        params_new = loop.m_step(stats, fixed)
        stop = loop.record(obj, params_new)
        params = params_new
        if stop:
            break
    return params

