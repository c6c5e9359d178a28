"""Multivariate Student-t numerics: stable log-densities, latent-weight moments, the dof update.

A d-dimensional t distribution with location ``mu``, scale matrix ``Sigma`` and
``nu`` degrees of freedom is a scale mixture of Gaussians: ``u ~ Gamma(nu/2,
rate nu/2)`` and ``x | u ~ N(mu, Sigma / u)``. Every function here works from the
squared Mahalanobis distance ``m = (x - mu)^T inv(Sigma) (x - mu)``, which the
Gaussian kernel and covariance strategies compute, so any covariance structure
works.

The functions stay accurate for every ``nu`` up to the float range. As ``nu``
grows the t log-density tends to the Gaussian one; written naively, as a
difference of ``gammaln`` values of size ``nu log nu``, it would lose all its
digits to cancellation (at ``nu = 1e8`` the two log-gammas are about ``1e9``,
so the difference has an absolute error near ``1e-7``). Here the gamma ratio is
expanded by Stirling's series about ``nu / 2``, and the expansion is exact to
rounding for ``nu >= 40``; below that ``gammaln`` is exact enough.

Pure functions of arrays; the models in ``emframe.models.robust`` use them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import digamma, gammaln

__all__ = [
    "DOF_MAX",
    "DOF_MIN",
    "expected_weights",
    "far_log_expected_weights",
    "far_t_log_density",
    "log_gamma_ratio",
    "log_minus_digamma",
    "t_log_density",
    "update_dof",
    "weight_gap",
]

#: Smallest degrees of freedom the M-step returns. Below it the t density is so
#: heavy-tailed that a component is essentially a spike of arbitrary height at one point.
DOF_MIN = 1e-2
#: Largest degrees of freedom the M-step returns. The log-density differs from the
#: Gaussian one by ``((m - d)^2 - 2 d) / (4 nu) + O(nu^-2)``: at the cap, in 2-D, about
#: 1e-5 at 3 standard deviations and 2e-3 at 10. A component at the cap is Gaussian for
#: practical purposes, and EM stops pushing ``nu`` towards infinity on Gaussian data.
DOF_MAX = 1e6

_LOG_2PI = math.log(2.0 * math.pi)
#: From here on Stirling's series with four terms is exact to rounding (its next term,
#: ``1 / (1188 z^9)``, is below 1e-15 for z >= 20).
_STIRLING_MIN = 20.0
#: From here on ``log(x) - digamma(x)`` is taken from its asymptotic series.
_SERIES_MIN = 100.0


def _stirling_tail(z: np.ndarray) -> np.ndarray:
    """``gammaln(z) - ((z - 1/2) log z - z + log(2 pi) / 2)`` for ``z >= 20``."""
    r = 1.0 / z
    r2 = r * r
    return r * (1.0 / 12.0 - r2 * (1.0 / 360.0 - r2 * (1.0 / 1260.0 - r2 / 1680.0)))


def log_gamma_ratio(x: np.ndarray, a: float | np.ndarray) -> np.ndarray:
    """``gammaln(x + a) - gammaln(x) - a log(x)``, without cancellation for large ``x``.

    It tends to ``a (a - 1) / (2 x)`` as ``x`` grows: for large ``x`` it is computed
    as ``(x + a - 1/2) log1p(a / x) - a`` plus the difference of Stirling tails,
    whose error is rounding in numbers of size ``a``, not ``x log x``.

    Parameters
    ----------
    x : ndarray
        Positive.
    a : float or ndarray
        Non-negative, broadcast against ``x``.

    Returns
    -------
    ndarray
    """
    x, a = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(a, dtype=float))
    out = np.empty(x.shape)
    big = x >= _STIRLING_MIN
    xb, ab = x[big], a[big]
    out[big] = (xb + ab - 0.5) * np.log1p(ab / xb) - ab + (
        _stirling_tail(xb + ab) - _stirling_tail(xb)
    )
    xs, as_ = x[~big], a[~big]
    out[~big] = gammaln(xs + as_) - gammaln(xs) - as_ * np.log(xs)
    return out


def t_log_density(
    maha: np.ndarray, log_det_chol: np.ndarray, dof: np.ndarray, n_features: int
) -> np.ndarray:
    """Log-density of multivariate t components from squared Mahalanobis distances.

    ``log t = log_gamma_ratio(nu/2, d/2) - d/2 log(2 pi) + log det U
    - (nu + d)/2 log1p(m / nu)``, the form in which the Gaussian limit
    ``-d/2 log(2 pi) + log det U - m/2`` is approached without cancellation.

    Parameters
    ----------
    maha : ndarray of shape (n, K)
        Squared Mahalanobis distances under each component's scale matrix.
    log_det_chol : ndarray of shape (K,)
        ``log det U`` with ``U U^T = inv(Sigma_k)`` (half the log-det of the precision).
    dof : ndarray of shape (K,)
        Degrees of freedom, positive and finite.
    n_features : int
        Dimension d.

    Returns
    -------
    ndarray of shape (n, K)
    """
    dof = np.asarray(dof, dtype=float)
    return _t_const(log_det_chol, dof, n_features) - 0.5 * (dof + n_features) * np.log1p(
        maha / dof)


def _t_const(log_det_chol: np.ndarray, dof: np.ndarray, n_features: int) -> np.ndarray:
    d = float(n_features)
    return log_gamma_ratio(0.5 * dof, 0.5 * d) - 0.5 * d * _LOG_2PI + log_det_chol


def far_t_log_density(
    log_maha: np.ndarray, log_det_chol: np.ndarray, dof: np.ndarray, n_features: int
) -> np.ndarray:
    """:func:`t_log_density` from the logarithms of the squared distances (n, K).

    For points so far out that the distances themselves overflow (see
    :func:`emframe.inference.gaussian.far.far_log_mahalanobis`).
    """
    dof = np.asarray(dof, dtype=float)
    log1p = np.logaddexp(0.0, log_maha - np.log(dof))
    return _t_const(log_det_chol, dof, n_features) - 0.5 * (dof + n_features) * log1p


def far_log_expected_weights(log_maha: np.ndarray, dof: np.ndarray, n_features: int
                             ) -> np.ndarray:
    """``log E[u | x]`` from the logarithms of the squared distances (n, K)."""
    dof = np.asarray(dof, dtype=float)
    return np.log(dof + n_features) - np.logaddexp(np.log(dof), log_maha)


def expected_weights(maha: np.ndarray, dof: np.ndarray, n_features: int) -> np.ndarray:
    """``E[u | x]`` of the latent precision weight, ``(nu + d) / (nu + m)``, shape of ``maha``."""
    dof = np.asarray(dof, dtype=float)
    return (dof + n_features) / (dof + maha)


def log_minus_digamma(x: np.ndarray) -> np.ndarray:
    """``log(x) - digamma(x)`` for ``x > 0``, accurate also for large ``x``.

    It is positive and decreasing, between ``1/(2x)`` and ``1/x``; for ``x >= 100``
    its asymptotic series replaces the difference of two numbers of size ``log x``.
    """
    x = np.asarray(x, dtype=float)
    out = np.empty(x.shape)
    big = x >= _SERIES_MIN
    r = 1.0 / x[big]
    r2 = r * r
    out[big] = 0.5 * r + r2 * (1.0 / 12.0 - r2 * (1.0 / 120.0 - r2 * (1.0 / 252.0 - r2 / 240.0)))
    out[~big] = np.log(x[~big]) - digamma(x[~big])
    return out


def weight_gap(maha: np.ndarray, dof: np.ndarray, n_features: int) -> np.ndarray:
    """``E[log u | x] - E[u | x] + 1``, never positive, computed without cancellation.

    With ``a = (nu + d)/2`` and ``E[u] = 1 + delta`` it equals
    ``-(log a - digamma(a)) + log1p(delta) - delta``: both terms are small when
    ``nu`` is large, and neither is a difference of large numbers.

    Parameters
    ----------
    maha : ndarray of shape (n, K)
    dof : ndarray of shape (K,)
    n_features : int

    Returns
    -------
    ndarray of shape (n, K)
    """
    dof = np.asarray(dof, dtype=float)
    maha = np.minimum(maha, np.finfo(float).max / 4)  # an overflowed distance: a far outlier
    delta = (n_features - maha) / (dof + maha)
    # log E[u] = log1p(delta); far from the component delta rounds to -1, where the
    # ratio of the two sums is exact instead
    with np.errstate(divide="ignore"):
        log_eu = np.where(delta > -0.5, np.log1p(delta),
                          np.log(dof + n_features) - np.log(dof + maha))
    return log_eu - delta - log_minus_digamma(0.5 * (dof + n_features))


def update_dof(gap_sum: np.ndarray, nk: np.ndarray) -> np.ndarray:
    """The EM update of the degrees of freedom: exact maximiser of the expected log-likelihood.

    For each component the expected complete-data log-likelihood in ``nu`` is
    ``N [(nu/2) log(nu/2) - gammaln(nu/2)] + (nu/2) sum_i r_i (E[log u_i] - E[u_i])``,
    strictly concave, with derivative ``(N/2) [phi(nu/2) - t]`` where
    ``phi(x) = log x - digamma(x)`` and ``t = -gap_sum / N >= 0``. ``phi`` is
    decreasing from infinity to 0, so the maximiser over ``[DOF_MIN, DOF_MAX]`` is the
    root of ``phi(nu/2) = t`` clipped to that interval. Because ``1/(2x) < phi(x) <
    1/x``, the root lies in ``[1/t, 2/t]``, where :func:`scipy.optimize.brentq`
    finds it to machine precision.

    Parameters
    ----------
    gap_sum : ndarray of shape (K,)
        ``sum_i r_ik (E[log u_ik] - E[u_ik] + 1)`` (see :func:`weight_gap`), <= 0.
    nk : ndarray of shape (K,)
        ``sum_i r_ik``, positive.

    Returns
    -------
    ndarray of shape (K,)
        Degrees of freedom in ``[DOF_MIN, DOF_MAX]``.
    """
    gap_sum = np.asarray(gap_sum, dtype=float)
    nk = np.asarray(nk, dtype=float)
    out = np.empty(gap_sum.shape)
    for k, (g, n) in enumerate(zip(gap_sum, nk, strict=True)):
        t = -g / n if n > 0 else 0.0
        out[k] = 2.0 * _solve_phi(t, 0.5 * DOF_MIN, 0.5 * DOF_MAX)
    return out


def _phi(x: float) -> float:
    return float(log_minus_digamma(np.array([x]))[0])


def _solve_phi(t: float, lo: float, hi: float) -> float:
    """The ``x`` in ``[lo, hi]`` nearest to the root of ``log x - digamma(x) = t``."""
    if not t > 0.0 or _phi(hi) >= t:
        return hi
    if _phi(lo) <= t:
        return lo
    a, b = max(0.5 / t, lo), min(1.0 / t, hi)
    if a >= b:  # rounding at the very ends of the bracket
        return a
    fa, fb = _phi(a) - t, _phi(b) - t
    if fa <= 0.0:
        return a
    if fb >= 0.0:
        return b
    return float(brentq(lambda x: _phi(x) - t, a, b, xtol=1e-15 * a, rtol=4 * np.finfo(float).eps))
