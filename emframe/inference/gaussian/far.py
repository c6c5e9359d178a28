"""Posteriors of Gaussian mixture components at points too far out for their densities.

Beyond about 1e154 (in units of the components' spreads) every squared Mahalanobis
distance overflows, every log-density is ``-inf`` and the usual normalisation of the
posteriors is ``0 / 0``. The posteriors themselves are still well defined: they
depend only on the differences of the log-densities, and those grow like the square
of the distance at most. :func:`far_posteriors` computes them exactly (to rounding)
from the differences, written so that no huge quantity is formed and then cancelled.

With ``x = s u`` (``s`` a power of two, so that ``u = x / s`` is exact and
``|u| < 2``), the squared distance to component ``k`` (mean ``m_k``, precision ``P_k``)
is ``s**2 A_k - 2 s B_k + C_k`` with ``A_k = u'P_k u``, ``B_k = m_k'P_k u`` and
``C_k = m_k'P_k m_k``. For two components ``k`` and ``b`` the differences are formed
from ``P_k - P_b`` and ``m_k - m_b`` directly:

* ``A_k - A_b = u'(P_k - P_b)u``,
* ``B_k - B_b = (m_k - m_b)'P_k u + m_b'(P_k - P_b)u``,
* ``C_k - C_b = (m_k - m_b)'P_k(m_k + m_b) + m_b'(P_k - P_b)m_b``,

so components with equal precisions (a tied covariance) differ by the linear term
alone, exactly, as they do at any distance. A tournament over the components finds
the most probable one ``b`` of each row, and the posteriors are
``exp(gap_k) / sum_j exp(gap_j)`` with ``gap_k`` the log-density of ``k`` minus that of
``b`` (``-inf`` where the difference overflows: that component has posterior 0).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .strategies import CovarianceStrategy

__all__ = ["far_log_mahalanobis", "far_posteriors"]

_LOG_2PI = math.log(2.0 * math.pi)


def _full_precisions(strategy: CovarianceStrategy, pc: np.ndarray, K: int, d: int) -> np.ndarray:
    """(K, d, d) precision matrices from the factors: one per covariance structure."""
    prec = np.asarray(strategy.precisions(pc), dtype=float)
    # the array's shape does not tell the structure (when K = d); the strategy's does
    if strategy.shape(K, d) == strategy.shape(K + 1, d):  # one matrix shared (tied)
        return np.broadcast_to(prec.reshape(d, d), (K, d, d))
    if prec.ndim == 3:  # full
        return prec
    # diag, spherical: the variances' factors, (K, d) or (K,)
    return np.broadcast_to(prec.reshape(K, -1), (K, d))[:, :, None] * np.eye(d)


def far_posteriors(
    strategy: CovarianceStrategy,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    log_weights: np.ndarray,
    X: np.ndarray,
) -> np.ndarray:
    """Posterior probabilities of the components at any points, however far out.

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (K, d)
    precisions_cholesky : ndarray
        In the strategy's shape.
    log_weights : ndarray of shape (K,)
        ``-inf`` for a component of weight zero.
    X : ndarray of shape (n, d)
        Finite points (each row not all zero).

    Returns
    -------
    ndarray of shape (n, K)
        Rows sum to one; no NaN.
    """
    means = np.asarray(means, dtype=float)
    K, d = means.shape
    X = np.asarray(X, dtype=float)
    P = _full_precisions(strategy, np.asarray(precisions_cholesky, dtype=float), K, d)
    g = (np.asarray(log_weights, dtype=float)
         + strategy.log_det_cholesky(np.asarray(precisions_cholesky, dtype=float), K, d))
    # s = 2**(e - 1) with max|x| = f 2**e, f in [0.5, 1): finite, and |u| < 2 exactly
    _, e = np.frexp(np.max(np.abs(X), axis=1))
    s = np.ldexp(1.0, e - 1)
    u = X / s[:, None]

    def gap(k: int, b: np.ndarray) -> np.ndarray:
        """log-density (plus log-weight) of component k minus that of b, per row."""
        dP = P[k] - P[b]  # (n, d, d)
        dm = means[k] - means[b]  # (n, d)
        mb = means[b]
        Pu = P[k] @ u.T  # (d, n)
        dPu = np.einsum("nij,nj->ni", dP, u)
        dA = np.einsum("ni,ni->n", u, dPu)
        dB = np.einsum("ni,in->n", dm, Pu) + np.einsum("ni,ni->n", mb, dPu)
        dC = (np.einsum("ni,ij,nj->n", dm, P[k], means[k] + mb)
              + np.einsum("ni,nij,nj->n", mb, dP, mb))
        with np.errstate(over="ignore", invalid="ignore"):
            quad = s * (s * dA) - 2.0 * (s * dB) + dC
            # inf - inf only if the quadratic and linear terms both overflow: the
            # quadratic one wins as the point goes further out
            quad = np.where(np.isnan(quad), np.where(dA > 0, np.inf, -np.inf), quad)
            out = (g[k] - g[b]) - 0.5 * quad
        same = b == k  # exactly 0 (also for a component of weight 0)
        out[same] = 0.0
        return np.where(np.isnan(out), -np.inf, out)

    n = X.shape[0]
    best = np.zeros(n, dtype=np.int64)
    for k in range(1, K):
        best = np.where(gap(k, best) > 0, k, best)
    gaps = np.stack([gap(k, best) for k in range(K)], axis=1)
    gaps -= gaps.max(axis=1, keepdims=True)  # 0 at best, unless rounding says otherwise
    post = np.exp(gaps)
    return post / post.sum(axis=1, keepdims=True)


def far_log_mahalanobis(
    strategy: CovarianceStrategy,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    X: np.ndarray,
) -> np.ndarray:
    """Logarithms of the squared Mahalanobis distances, finite however far out ``X`` is.

    With ``x = s u`` (``s`` a power of two, ``|u| < 2``), ``m_k = s**2 q_k`` where
    ``q_k = (u - m_k/s)' P_k (u - m_k/s)`` is formed from exactly scaled numbers, so
    ``log m_k = 2 log s + log q_k`` does not overflow where ``m_k`` itself would.

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (K, d)
    precisions_cholesky : ndarray
        In the strategy's shape.
    X : ndarray of shape (n, d)
        Finite points.

    Returns
    -------
    ndarray of shape (n, K)
    """
    means = np.asarray(means, dtype=float)
    K, d = means.shape
    X = np.asarray(X, dtype=float)
    P = _full_precisions(strategy, np.asarray(precisions_cholesky, dtype=float), K, d)
    _, e = np.frexp(np.max(np.abs(X), axis=1))
    diff = np.ldexp(X, 1 - e[:, None])[:, None, :] - np.ldexp(means, (1 - e)[:, None, None])
    q = np.einsum("nki,kij,nkj->nk", diff, P, diff)
    with np.errstate(divide="ignore"):
        return np.log(np.maximum(q, 0.0)) + (2.0 * math.log(2.0)) * (e - 1)[:, None]
