"""The single EM fit loop shared by every model."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from emframe.core.acceleration import ACCELERATORS
from emframe.core.data import INIT_SAMPLE_SIZE, DataSource
from emframe.core.exceptions import convergence_warning, warn
from emframe.core.executors import External, bind
from emframe.core.loop import (
    MONOTONE_RTOL,
    _check_finite,
    _Loop,
    display_name,
    total_log_likelihood,
)
from emframe.core.model import EMModel
from emframe.core.online import (
    check_batch_size,
    check_kappa,
    check_passes,
    default_passes,
    run_online,
)
from emframe.core.params import Params
from emframe.core.results import FitResult, IterationInfo
from emframe.core.validation import check_random_state, check_scalar

__all__ = ["MONOTONE_RTOL", "FitResult", "IterationInfo", "check_freeze", "fit_em", "run_em"]


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
    name: str | None = None,
) -> FitResult:
    """Run EM from ``params`` until the tolerance or ``max_iter`` is reached.

    The convergence test compares the mean per-sample objective of successive
    parameter sets, so ``tol`` means the same for any number of samples. A
    callback returning ``True`` stops the run. ``accelerate="squarem"`` takes
    SQUAREM steps instead of plain EM steps; the monotonicity guarantee holds
    either way. ``name`` is how warnings and errors name the model (default: its
    class name).
    """
    step = _check_accelerate(accelerate)
    fixed = {name: getattr(params, name) for name in freeze}
    loop = _Loop(
        model, source, tol=tol, max_iter=max_iter, strict=strict, verbose=verbose,
        callbacks=callbacks, init=init, name=name,
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


def _fit_online(model: EMModel, source: DataSource, params: Params, name: str | None = None,
                **kw: Any) -> FitResult:
    state, history, sizes, _ = run_online(model, source, params, **kw)
    final, n = total_log_likelihood(model, state.params, source)
    _check_finite(final, "log-likelihood", len(history), model, name)
    h, b = np.asarray(history, dtype=float), np.asarray(sizes, dtype=float)
    per_sample = np.divide(h, b, out=np.full(h.shape, np.nan), where=b > 0)
    return FitResult(
        params=state.params,
        log_likelihood=final,
        loglik_history=h,
        converged=False,
        n_iter=len(history),
        n_samples=n,
        n_e_steps=len(history) + 1,
        weight_scale=source.weight_scale,
        lower_bounds=per_sample,
    )


def _check_tol(tol: Any) -> None:
    check_scalar(tol, "tol", (int, float, np.floating), min_value=0.0)
    if math.isnan(tol):
        raise ValueError("tol must be a number >= 0, got nan")


def _check_init_sample_size(size: Any) -> int | None:
    if size is None:
        return None
    check_scalar(size, "init_sample_size", (int, np.integer), min_value=1)
    return int(size)


def as_source(
    data: Any,
    sample_weight: Any = None,
    chunk_size: int | None = None,
    transform: Callable[[Any], Any] | None = None,
    executor_options: dict[str, Any] | None = None,
) -> DataSource:
    """The :class:`DataSource` of ``fit_em``'s ``data``: in process, or an executor's.

    Raises
    ------
    TypeError
        For options ``fit_em`` does not know, or ``sample_weight``/``chunk_size``
        given next to a ready-made DataSource.
    ValueError
        For executor options with in-process data, or ``chunk_size`` with external data.
    """
    options = dict(executor_options or {})
    if isinstance(data, DataSource):
        if sample_weight is not None or chunk_size is not None or options:
            raise TypeError(
                "pass sample_weight, chunk_size and executor options to the DataSource, "
                "not to fit_em"
            )
        return data
    data = bind(data, options)
    if options:
        raise TypeError(f"fit_em() got unexpected keyword argument(s) {sorted(options)}")
    if isinstance(data, External):
        if chunk_size is not None:
            raise ValueError(
                f"chunk_size applies to in-process arrays; a {data.executor.name} array is "
                "processed one partition (chunk) at a time: rechunk it instead, for example "
                "X.rechunk({0: 100_000})"
            )
        return data.source(sample_weight=sample_weight, transform=transform)
    return DataSource(data, sample_weight=sample_weight, chunk_size=chunk_size,
                      transform=transform)


#: Most restarts ``fit_em`` accepts (their seeds are drawn at once, 8 bytes each).
MAX_N_INIT = 10**6


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
    passes: int | None = None,
    init_sample_size: int | None = INIT_SAMPLE_SIZE,
    name: str | None = None,
    **executor_options: Any,
) -> FitResult:
    """Fit ``model`` by EM and return the best of ``n_init`` restarts.

    Parameters
    ----------
    model : EMModel
    data : array-like, DataSource, list of chunks, callable, or a Dask array
        See :class:`~emframe.core.data.DataSource`. A ``dask.array.Array``
        (chunked along rows) is fitted where its partitions are: see
        :mod:`emframe.core.executors` and docs/scaling_out.md.
    init_params : Params, optional
        Start from these parameters (one run; ``n_init`` is ignored).
    sample_weight : ndarray of shape (n_samples,), optional
    chunk_size : int, optional
        Run the E-step on slices of this many rows and sum the statistics.
    transform : callable, optional
        Applied to each chunk as it is read (for example validation).
    tol : float
        Stop when the mean per-sample log-likelihood changes by less than this
        (checked after every M-step, the last one included).
    max_iter : int
        Maximum number of M-steps per restart. For ``method="online"`` over an
        array it is the number of passes (see ``passes``).
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
        ``"online"`` runs stepwise EM (Cappé & Moulines 2009) on batches for
        ``passes`` passes over the data; there is no tolerance test,
        ``loglik_history`` holds each batch's log-likelihood before its update,
        and ``log_likelihood`` is that of all the data after the last batch.
    batch_size : int, optional
        Rows per online batch for array data (chunks are used as they come).
    kappa : float in (0.5, 1]
        Online step-size exponent: ``rho_t = (t + 2) ** -kappa``.
    shuffle : bool
        Shuffle array rows before each online pass.
    passes : int, optional
        Online passes over the data. Default: ``max_iter`` passes over an array
        (in memory or memory-mapped), ONE pass over a list of chunks or a
        callable stream.
    init_sample_size : int or None, default 10_000
        Restarts initialise from a seeded random sample of at most this many
        rows drawn across all the data (whole sequences for HMMs), the same
        sample whether the data come whole, sliced, memory-mapped, in chunks or
        streamed (:meth:`DataSource.init_sample`); all the data when they are
        smaller, and always with ``None``.
    name : str, optional
        How warnings and errors name what is fitted; default the model's class name
        (estimators pass their own, e.g. ``"GaussianHMM"``).
    **executor_options
        For a Dask array: ``scheduler``, ``split_every``, ``persist`` (see
        ``emframe.distributed.DaskSource``).

    Returns
    -------
    FitResult
    """
    _check_tol(tol)
    init_sample_size = _check_init_sample_size(init_sample_size)
    check_scalar(max_iter, "max_iter", (int, np.integer), min_value=0)
    # the restart seeds are drawn up front: a mistyped 10**20 fails here, not in numpy
    check_scalar(n_init, "n_init", (int, np.integer), min_value=1, max_value=MAX_N_INIT)
    _check_accelerate(accelerate)
    if method not in ("batch", "online"):
        raise ValueError(f"unknown method={method!r}; use 'batch' or 'online'")
    if method == "online":
        kappa = check_kappa(kappa)
        if batch_size is not None:
            batch_size = check_batch_size(batch_size)
        if accelerate is not None:
            raise ValueError("accelerate applies to batch EM, not to method='online'")
        if passes is not None:
            passes = check_passes(passes)
    elif batch_size is not None:
        raise ValueError("batch_size applies to method='online'; use chunk_size for batch EM")
    elif passes is not None:
        raise ValueError("passes applies to method='online'; use max_iter for batch EM")
    data = as_source(data, sample_weight, chunk_size, transform, executor_options)
    if method == "online" and not data.is_local:
        raise TypeError(
            f"method='online' steps through the data chunk by chunk in this process, which "
            f"a {type(data).__name__} does not offer; use batch EM (the default) on it, or "
            "online EM on in-memory chunks"
        )
    rng = check_random_state(random_state)
    callbacks = tuple(callbacks or ())
    runs = 1 if init_params is not None else int(n_init)
    seeds = rng.integers(0, 2**63 - 1, size=runs)
    if method == "online" and passes is None:
        passes = default_passes(data, int(max_iter))
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
                # one sample for every restart, drawn after the restart seeds
                sample_rng = np.random.default_rng(rng.integers(0, 2**63 - 1))
                init_data = data.init_sample(sample_rng, init_sample_size)
                for w in model.data_warnings(init_data):
                    warn(f"{display_name(model, name)}: {w}", type(w))
            params = model.initialize(init_data, np.random.default_rng(seeds[i]))
        names = check_freeze(freeze, params)
        if method == "online":
            result = _fit_online(
                model, data, params, kappa=kappa, batch_size=batch_size, passes=passes,
                freeze=names, shuffle=shuffle, rng=np.random.default_rng(seeds[i]),
                verbose=verbose, callbacks=callbacks, init=i, name=name,
            )
        else:
            result = run_em(
                model, data, params, tol=tol, max_iter=int(max_iter), freeze=names,
                strict=strict, verbose=verbose, callbacks=callbacks, init=i,
                accelerate=accelerate, name=name,
            )
        finals.append(result.log_likelihood)
        if best is None or result.log_likelihood > best.log_likelihood:
            best, best_index = result, i
    assert best is not None
    if warn_convergence and method == "batch" and not best.converged and max_iter > 0 and tol > 0:
        warn(
            f"{display_name(model, name)}: EM did not converge in max_iter={max_iter} "
            f"iterations (tol={tol}); increase max_iter or tol, or try other initialisations",
            convergence_warning(),
        )
    return dataclasses.replace(best, best_init=best_index, init_log_likelihoods=tuple(finals))
