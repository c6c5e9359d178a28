"""Online (stepwise) EM, after Cappé & Moulines (2009), JRSS-B 71:593-613.

The running statistics are a per-sample average updated batch by batch,
``s <- (1 - rho_t) s + rho_t * s_hat(batch)`` with ``rho_t = (t + 2) ** -kappa``,
and the parameters are the M-step of ``s`` scaled to the number of samples
seen so far (which only matters for models with a prior). A prior whose strength
scales with the data (``reg_covar``; see
:meth:`~emframe.core.model.EMModel.with_prior_size`) is attached to those samples
too when the model has a prior size (the estimators give it one): each M-step is
then that of a batch fit to ``n_seen`` samples with statistics ``s``, and the
covariance prior adds about ``reg_covar`` to the variances however many batches
were seen. A model without a prior size keeps its unscaled prior. Any model that
follows the engine's contract works unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource, relative_weights
from emframe.core.loop import run_callbacks
from emframe.core.model import EMModel
from emframe.core.params import Params, Stats
from emframe.core.results import IterationInfo


@dataclasses.dataclass(frozen=True)
class OnlineState:
    """Where online EM stands: an immutable value, so ``partial_fit`` can resume from it.

    Attributes
    ----------
    params : Params
        Current parameters.
    stats : Stats or None
        Running per-sample average of the statistics (None before the first batch).
    t : int
        Batches blended in so far (the first batch sets the statistics and is
        not counted), so the next step size is ``(t + 2) ** -kappa``.
    n_seen : float
        Samples (or total sample weight) seen so far.
    fixed : dict
        Frozen parameter values.
    """

    params: Params
    stats: Stats | None = None
    t: int = 0
    n_seen: float = 0.0
    fixed: dict[str, Any] = dataclasses.field(default_factory=dict)


def check_kappa(kappa: Any) -> float:
    """Validate the step-size exponent: a number in (0.5, 1]."""
    if isinstance(kappa, bool) or not isinstance(kappa, (int, float, np.floating)):
        raise TypeError(f"kappa must be a number in (0.5, 1], got {kappa!r}")
    if not 0.5 < kappa <= 1.0:
        raise ValueError(
            f"kappa must be in (0.5, 1] for online EM to converge (Cappé & Moulines), got {kappa}"
        )
    return float(kappa)


def check_passes(passes: Any) -> int:
    """Validate the number of online passes over the data: a positive int."""
    if isinstance(passes, bool) or not isinstance(passes, (int, np.integer)):
        raise TypeError(f"passes must be a positive int, got {passes!r}")
    if passes <= 0:
        raise ValueError(f"passes must be a positive int, got {passes}")
    return int(passes)


def default_passes(source: DataSource, max_iter: int) -> int:
    """Online passes when none are asked for: ``max_iter`` over an array, one over chunks.

    An array (in memory or memory-mapped) is cheap to read again and is
    reshuffled every pass; a list of chunks or a stream is read once, as a
    stream is meant to be.
    """
    return int(max_iter) if source.is_array else min(1, int(max_iter))


def check_batch_size(batch_size: Any) -> int:
    """Validate the online batch size: a positive int."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive int, got {batch_size!r}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    return int(batch_size)


def step_size(t: int, kappa: float) -> float:
    """``rho_t = (t + 2) ** -kappa`` for the ``t``-th blended batch (t = 0, 1, ...)."""
    return float((t + 2) ** -kappa)


def online_update(
    model: EMModel,
    state: OnlineState,
    batch: Any,
    *,
    kappa: float,
    sample_weight: np.ndarray | None = None,
) -> tuple[OnlineState, float]:
    """Absorb one batch: E-step, blend the statistics, M-step.

    The first batch sets the running statistics; each later batch is blended
    in with ``rho_t = (t + 2) ** -kappa``, t counting the blends from 0. Sample
    weights count relative to their mean over the positive ones (see
    :func:`~emframe.core.data.relative_weights`), so scaling them changes nothing.

    Returns
    -------
    state : OnlineState
        The new state (the old one is unchanged).
    log_likelihood : float
        Log-likelihood of the batch under the parameters before the update
        (weighted by the relative weights).
    """
    if sample_weight is None:
        s_hat, ll = model.e_step(state.params, batch)
        nb = float(model.n_samples(batch))
    else:
        if not np.any(np.asarray(sample_weight) > 0):
            return state, 0.0
        # Only relative weights matter, as in batch EM: relative to their mean, the
        # batch counts as its number of weighted rows (for the prior and the floors).
        w, _ = relative_weights(sample_weight)
        s_hat, ll = model.e_step(state.params, batch, sample_weight=w)
        nb = float(np.sum(w))
    if nb <= 0:
        return state, 0.0
    s_hat = s_hat.scale(1.0 / nb)
    if state.stats is None:
        stats, t = s_hat, 0
    else:
        rho = step_size(state.t, kappa)
        stats, t = state.stats.scale(1.0 - rho) + s_hat.scale(rho), state.t + 1
    n_seen = state.n_seen + nb
    if model.prior_size is not None:
        # the running statistics stand for the n_seen samples: so does a data-scaled prior
        model = model.with_prior_size(n_seen)
    params = model.constrained_m_step(stats.scale(n_seen), state.fixed)
    model.check_params(params)
    return OnlineState(params, stats, t, n_seen, state.fixed), float(ll)


def _batches(
    source: DataSource, batch_size: int | None, rng: np.random.Generator, shuffle: bool
) -> Iterator[tuple[Any, np.ndarray | None]]:
    if source.is_chunked or batch_size is None:
        yield from source
        return
    X, w = source.data, source.sample_weight
    n = X.shape[0]
    order = rng.permutation(n) if shuffle else np.arange(n)
    for start in range(0, n, batch_size):
        # sorted indices read a memory-mapped array front to back
        idx = np.sort(order[start : start + batch_size])
        batch = X[idx] if shuffle else X[start : start + batch_size]
        yield (source.transform(batch) if source.transform else batch), (
            None if w is None else w[idx]
        )


def run_online(
    model: EMModel,
    source: DataSource,
    params: Params,
    *,
    kappa: float = 0.6,
    batch_size: int | None = None,
    passes: int = 1,
    freeze: Sequence[str] = (),
    shuffle: bool = True,
    rng: np.random.Generator | None = None,
    verbose: int = 0,
    callbacks: Sequence[Callable[[Any], Any]] = (),
    init: int = 0,
) -> tuple[OnlineState, list[float], list[float], float]:
    """Run online EM for ``passes`` passes over the data.

    Array data is cut into batches of ``batch_size`` rows (shuffled each pass
    when ``shuffle``); a list of chunks or a callable stream is used batch by
    batch as it comes, which keeps memory bounded by one batch.

    Returns
    -------
    state : OnlineState
    batch_logliks : list of float
        Log-likelihood of every batch before its update.
    batch_sizes : list of float
        Samples (or total weight) in every batch.
    elapsed : float
        Seconds taken.
    """
    rng = rng if rng is not None else np.random.default_rng()
    state = OnlineState(params, fixed={name: getattr(params, name) for name in freeze})
    history: list[float] = []
    sizes: list[float] = []
    start = time.perf_counter()
    for _ in range(passes):
        for batch, w in _batches(source, batch_size, rng, shuffle):
            seen = state.n_seen
            state, ll = online_update(model, state, batch, kappa=kappa, sample_weight=w)
            history.append(ll)
            sizes.append(state.n_seen - seen)
            elapsed = time.perf_counter() - start
            if verbose:
                print(
                    f"[emframe] online batch {len(history):6d}  batch loglik {ll:.10g}  "
                    f"seen {state.n_seen:.0f}  time {elapsed:.2f}s",
                    file=sys.stderr,
                )
            info = IterationInfo(init, len(history), ll, math.nan, state.params, elapsed)
            if run_callbacks(callbacks, info):
                return state, history, sizes, time.perf_counter() - start
    return state, history, sizes, time.perf_counter() - start
