"""The single EM fit loop shared by every model."""

from __future__ import annotations

import dataclasses
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
from .online import check_batch_size, check_kappa, run_online
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
    n_e_steps : int
        E-steps (passes over the data) done in the kept restart, including the
        final evaluation; SQUAREM needs more per iteration than plain EM.
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
    n_e_steps: int = 0


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
    ) -> None:
        self.model = model
        self.source = source
        self.tol = tol
        self.max_iter = max_iter
        self.guard = _Guard(model, strict)
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
        _check_finite(obj, "log-likelihood", self.n_iter, self.model)
        return stats, obj

    def m_step(self, stats: Stats, fixed: dict[str, Any]) -> Params:
        params = self.model.constrained_m_step(stats, fixed)
        _check_new_params(self.model, params, self.n_iter + 1)
        return params

    def record(self, obj: float, new_params: Params) -> bool:
        """Accept the objective of the current point and the M-step from it; True = stop."""
        self.n_iter += 1
        change = math.nan
        if self.history:
            self.guard(self.history[-1], obj, self.n_iter - 1)
            change = (obj - self.history[-1]) / self.n
        self.history.append(obj)
        elapsed = time.perf_counter() - self.start
        if self.verbose:
            print(
                f"[emframe] init {self.init} iter {self.n_iter:4d}  loglik {obj:.10g}  "
                f"change/sample {change:.3e}  time {elapsed:.2f}s",
                file=sys.stderr,
            )
        info = IterationInfo(self.init, self.n_iter, obj, change, new_params, elapsed)
        stop = any([bool(cb(info)) for cb in self.callbacks])
        if abs(change) < self.tol:
            self.converged = True
            return True
        return stop or self.n_iter >= self.max_iter

    def finish(self, params: Params) -> FitResult:
        final, n_final = total_log_likelihood(self.model, params, self.source)
        _check_finite(final, "log-likelihood", self.n_iter, self.model)
        if self.history:
            self.guard(self.history[-1], final, self.n_iter)
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


#: SQUAREM's step-length bound starts at plain EM and is multiplied (divided)
#: by this factor after a step that reached (failed at) the bound, as in
#: Varadhan & Roland's reference implementation.
SQUAREM_STEP_FACTOR = 4.0


def _squarem_steps(loop: _Loop, params: Params, fixed: dict[str, Any]) -> Params:
    """SQUAREM (Varadhan & Roland 2008, scheme S3) with a monotone fallback.

    Each cycle takes two EM steps from θ0 and extrapolates along the squared
    iteration ``θ0 - 2αr + α²v`` in the model's unconstrained coordinates, with
    ``|α|`` capped by an adaptive bound. The extrapolated point is kept only if
    its objective is at least that of θ1; otherwise the cycle falls back to θ2,
    plain EM, and the bound shrinks. So every recorded objective is at least the
    previous one, and the guard still watches each step.
    """
    model = loop.model
    fields = tuple(f for f in model._constraints() if f not in fixed)
    step_max = 1.0
    while loop.n_iter < loop.max_iter:
        s0, obj0 = loop.evaluate(params)
        p1 = loop.m_step(s0, fixed)
        if loop.record(obj0, p1):
            return p1
        s1, obj1 = loop.evaluate(p1)
        p2 = loop.m_step(s1, fixed)
        if loop.record(obj1, p2):
            return p2
        with np.errstate(invalid="ignore", divide="ignore"):
            v0 = model.params_to_vector(params, fields)
            r = model.params_to_vector(p1, fields) - v0
            v = model.params_to_vector(p2, fields) - v0 - 2 * r
        step = 1.0
        # a parameter on the boundary (a rate at 0) has no unconstrained coordinate
        if np.all(np.isfinite(v0)) and np.all(np.isfinite(r)) and np.all(np.isfinite(v)):
            nr, nv = float(np.linalg.norm(r)), float(np.linalg.norm(v))
            if nv > 0 and math.isfinite(nr / nv):
                step = min(max(nr / nv, 1.0), step_max)
        at_bound = step == step_max
        accepted = None
        if step > 1.0:  # step 1 is θ2 itself, plain EM
            try:
                trial = model.params_from_vector(v0 + 2 * step * r + step**2 * v, params, fields)
                trial = trial.replace(**fixed) if fixed else trial
                model.check_params(trial)
                s_t, obj_t = loop.evaluate(trial)
                if obj_t >= obj1:
                    accepted = (s_t, obj_t)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                pass  # an invalid or non-finite extrapolation: plain EM instead
            if accepted is None:
                if at_bound:
                    step_max = max(1.0, step_max / SQUAREM_STEP_FACTOR)
                params = p2
                continue
        if at_bound:
            step_max *= SQUAREM_STEP_FACTOR
        if accepted is None:
            params = p2
            continue
        s_t, obj_t = accepted
        params = loop.m_step(s_t, fixed)
        if loop.record(obj_t, params):
            return params
    return params


ACCELERATORS: dict[str | None, Callable[[_Loop, Params, dict[str, Any]], Params]] = {
    None: _plain_steps,
    "squarem": _squarem_steps,
}


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
    accelerate: str | None = None,
) -> FitResult:
    """Run EM from ``params`` until the tolerance or ``max_iter`` is reached.

    The convergence test compares the mean per-sample objective of successive
    parameter sets, so ``tol`` means the same for any number of samples. A
    callback returning ``True`` stops the run. ``accelerate="squarem"`` takes
    SQUAREM steps instead of plain EM steps; the monotonicity guarantee holds
    either way.
    """
    step = _check_accelerate(accelerate)
    fixed = {name: getattr(params, name) for name in freeze}
    loop = _Loop(
        model, source, tol=tol, max_iter=max_iter, strict=strict, verbose=verbose,
        callbacks=callbacks, init=init,
    )
    params = step(loop, params, fixed) if max_iter > 0 else params
    return loop.finish(params)


def _check_accelerate(accelerate: str | None) -> Callable[[_Loop, Params, dict[str, Any]], Params]:
    try:
        return ACCELERATORS[accelerate]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown accelerate={accelerate!r}; use None (plain EM) or 'squarem'"
        ) from None


def _fit_online(model: EMModel, source: DataSource, params: Params, **kw: Any) -> FitResult:
    state, history, _ = run_online(model, source, params, **kw)
    final, n = total_log_likelihood(model, state.params, source)
    _check_finite(final, "log-likelihood", len(history), model)
    return FitResult(
        params=state.params,
        log_likelihood=final,
        loglik_history=np.asarray(history),
        converged=False,
        n_iter=len(history),
        n_samples=n,
        n_e_steps=len(history) + 1,
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
    accelerate: str | None = None,
    method: str = "batch",
    batch_size: int | None = None,
    kappa: float = 0.6,
    shuffle: bool = True,
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
    accelerate : {None, "squarem"}
        ``"squarem"`` extrapolates the EM map (Varadhan & Roland 2008) and falls
        back to plain EM whenever that would lower the likelihood.
    method : {"batch", "online"}
        ``"online"`` runs stepwise EM (Cappé & Moulines 2009) on batches; then
        ``max_iter`` counts passes over the data, there is no tolerance test,
        ``loglik_history`` holds each batch's log-likelihood before its update,
        and ``log_likelihood`` is that of all the data after the last batch.
    batch_size : int, optional
        Rows per online batch for array data (chunks are used as they come).
    kappa : float in (0.5, 1]
        Online step-size exponent: ``rho_t = (t + 2) ** -kappa``.
    shuffle : bool
        Shuffle array rows before each online pass.

    Returns
    -------
    FitResult
    """
    check_scalar(tol, "tol", (int, float), min_value=0.0)
    check_scalar(max_iter, "max_iter", (int, np.integer), min_value=0)
    check_scalar(n_init, "n_init", (int, np.integer), min_value=1)
    _check_accelerate(accelerate)
    if method not in ("batch", "online"):
        raise ValueError(f"unknown method={method!r}; use 'batch' or 'online'")
    if method == "online":
        kappa = check_kappa(kappa)
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        if accelerate is not None:
            raise ValueError("accelerate applies to batch EM, not to method='online'")
    elif batch_size is not None:
        raise ValueError("batch_size applies to method='online'; use chunk_size for batch EM")
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
        if method == "online":
            result = _fit_online(
                model, data, params, kappa=kappa, batch_size=batch_size, max_iter=int(max_iter),
                freeze=names, shuffle=shuffle, rng=np.random.default_rng(seeds[i]),
                verbose=verbose, callbacks=callbacks, init=i,
            )
        else:
            result = run_em(
                model, data, params, tol=tol, max_iter=int(max_iter), freeze=names,
                strict=strict, verbose=verbose, callbacks=callbacks, init=i,
                accelerate=accelerate,
            )
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best, best_index = result, i
    assert best is not None
    if warn_convergence and method == "batch" and not best.converged and max_iter > 0 and tol > 0:
        warnings.warn(
            f"{type(model).__name__}: EM did not converge in max_iter={max_iter} iterations "
            f"(tol={tol}); increase max_iter or tol, or try other initialisations",
            ConvergenceWarning,
            stacklevel=2,
        )
    return dataclasses.replace(best, best_init=best_index, init_log_likelihoods=tuple(finals))
