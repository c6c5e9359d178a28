"""Kalman filter, RTS smoother and EM statistics for linear-Gaussian state-space models.

Model (pykalman's convention, ``x_1`` is the state at the first observation)::

    x_1 ~ N(mu0, S0),  x_{t+1} = A x_t + b + w_t,  w_t ~ N(0, Q),
                       y_t     = C x_t + d + v_t,  v_t ~ N(0, R).

Pure functions of arrays, independent of any estimator: :class:`LinearGaussianSystem`
holds and validates the matrices; :func:`kalman_filter`, :func:`rts_smoother`,
:func:`expected_statistics` (the E-step, as additive :class:`KalmanStats`) and
:func:`observation_moments` (for imputation) take observations ``Y`` of shape (T, p)
with NaN for missing entries (any pattern: single entries, whole steps, whole
sequences) and hmmlearn-style ``lengths`` for several independent sequences.

Each step uses its observed coordinates only. The filter is in square-root (array)
form: covariances are carried as factors and updated by orthogonal triangularisation,
so no innovation covariance can come out indefinite; the smoother forms its covariances
as Gram matrices of its factors, and sums the transition residuals' posterior
covariances without cancellation (see ``_filter``). The numpy path is
the reference; optional numba kernels (``pip install "emframe[fast]"``) compute the
same quantities without per-step Python overhead and are used by ``backend="auto"``
whenever numba can be imported.
"""

from ._filter import FilterResult, SmootherResult, kalman_filter, psd_factor, rts_smoother
from ._stats import KalmanStats, expected_statistics, observation_moments
from ._system import LinearGaussianSystem, has_numba

__all__ = [
    "LinearGaussianSystem",
    "FilterResult",
    "SmootherResult",
    "KalmanStats",
    "kalman_filter",
    "rts_smoother",
    "expected_statistics",
    "observation_moments",
    "psd_factor",
    "has_numba",
]
