"""What a fit reports: the per-iteration record callbacks see, and the result of a fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emframe.core.params import Params


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
        (Penalised) log-likelihood of ``params`` on the data. With sample weights,
        the weights count relative to their mean (see ``weight_scale``).
    loglik_history : ndarray of shape (n_iter + 1,)
        ``loglik_history[i]`` is the (penalised) log-likelihood after ``i``
        M-steps; entry 0 is at the initial parameters, the last at ``params``.
    converged : bool
    n_iter : int
        Number of M-steps done.
    n_samples : float
        Number of samples (with sample weights, the sum of the relative weights:
        the number of rows with positive weight when they are all equal).
    n_e_steps : int
        E-steps (passes over the data) done in the kept restart, including the
        final evaluation; SQUAREM needs more per iteration than plain EM.
    best_init : int
        Index of the restart kept.
    init_log_likelihoods : tuple of float
        Final (penalised) log-likelihood of every restart.
    weight_scale : float
        Mean of the positive sample weights (1.0 without weights). The fit uses the
        weights divided by it, so only relative weights matter; the weighted
        log-likelihood in the caller's scale is ``weight_scale`` times the
        log-likelihood part of ``log_likelihood``.
    lower_bounds : ndarray of shape (len(loglik_history),), optional
        Each history entry per sample: ``loglik_history / n_samples`` in batch EM
        (the default when None), each batch's mean in online EM.
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
    weight_scale: float = 1.0
    lower_bounds: np.ndarray | None = None

    @property
    def lower_bound(self) -> float:
        """The (penalised) log-likelihood of ``params`` per sample."""
        return float(self.log_likelihood / self.n_samples)

    def per_sample_history(self) -> np.ndarray:
        """:attr:`lower_bounds`, or the history divided by the sample count."""
        if self.lower_bounds is not None:
            return self.lower_bounds
        return np.asarray(self.loglik_history) / self.n_samples

