"""Additive moments of an autoregression's lagged rows, about a regression per state.

The statistics of :class:`~emframe.models.hmm.emissions.AutoRegressiveEmission`: for
the rows ``[x_t, z_t]`` (``z_t`` the lags) of every state, the weighted moments of
``w = [x_t - B_k z_t, z_t]``, referenced near their weighted means, where ``B_k`` is
the E-step's regression. The residual scatter of the M-step is a difference of these
moments, known to ``eps`` times the scatter of the residuals about ``B_k``; a state
whose fit leaves far smaller residuals has its moments taken once more about that fit
(see :func:`regression_moments`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from emframe.core.params import Stats
from emframe.inference.gaussian import FullMoments
from emframe.inference.gaussian.moments import pooled_reference
from emframe.inference.gaussian.strategies import SINGULAR_FRACTION

__all__ = [
    "AutoRegressiveMoments",
    "flat_coefs",
    "pooled_magnitudes",
    "regression_moments",
    "solve_normal",
]


@dataclasses.dataclass(frozen=True)
class AutoRegressiveMoments(Stats):
    """Weighted moments of the lagged rows of every state, about a regression per state.

    Attributes
    ----------
    coefs_ref : ndarray of shape (K, d, p * d)
        ``B_k``, the regression the moments are taken about (the E-step's coefficients,
        ``[A_k1, ..., A_kp]`` side by side). Not additive: see :meth:`__add__`.
    moments : FullMoments
        Moments of ``w = [x - B_k z, z]`` (width ``d * (p + 1)``) for the rows
        ``[x, z]`` of :func:`lagged_rows`, weighted by the posteriors of state k.

    Notes
    -----
    Statistics about the same regressions add their moments. Otherwise both operands
    are first moved exactly (a linear map of the rows) to the weight-averaged
    regression, as :class:`~emframe.inference.gaussian.GaussianMoments` are shifted to a
    common reference point.
    """

    coefs_ref: np.ndarray
    moments: FullMoments

    def about(self, coefs_ref: np.ndarray) -> AutoRegressiveMoments:
        """The same statistics about the regressions ``coefs_ref`` (K, d, p d), exactly."""
        delta = np.asarray(coefs_ref, dtype=float) - self.coefs_ref  # w' = L w
        if not delta.any():
            return self
        m = self.moments
        d = delta.shape[1]
        lin = np.broadcast_to(np.eye(m.ref.shape[1]), (len(delta),) + (m.ref.shape[1],) * 2)
        lin = lin.copy()
        lin[:, :d, d:] = -delta
        moved = type(m)(
            m.nk, np.einsum("kij,kj->ki", lin, m.ref), np.einsum("kij,kj->ki", lin, m.sum_x),
            lin @ m.sum_xx @ lin.transpose(0, 2, 1),
        )
        return AutoRegressiveMoments(np.array(coefs_ref, dtype=float), moved)

    def __add__(self, other: AutoRegressiveMoments) -> AutoRegressiveMoments:
        if type(other) is not type(self):
            raise TypeError(
                f"cannot add {type(self).__name__} and {type(other).__name__}: "
                "statistics must come from the same model"
            )
        a, b = self, other
        if not np.array_equal(a.coefs_ref, b.coefs_ref):
            common = pooled_reference(a.moments.nk, a.coefs_ref, b.moments.nk, b.coefs_ref)
            a, b = a.about(common), b.about(common)
        return AutoRegressiveMoments(a.coefs_ref, a.moments + b.moments)

    def scale(self, c: float) -> AutoRegressiveMoments:
        return AutoRegressiveMoments(self.coefs_ref, self.moments.scale(c))

    def allclose(self, other: Stats, rtol: float = 1e-10, atol: float = 1e-12) -> bool:
        """True when ``other`` holds the same moments, within tolerance.

        Compared about the same regressions, as weights, means and centred scatters (the
        reference points are a representation: moments of data far from the origin are
        equal about points that differ by their rounding). A mean or a scatter entry may
        differ by ``atol`` plus ``rtol`` times its size (``|m_i| + sd_i`` and
        ``sd_i sd_j``).
        """
        if type(other) is not type(self) or other.coefs_ref.shape != self.coefs_ref.shape:
            return False
        a, b = self.moments, other.about(self.coefs_ref).moments
        if a.sum_xx.shape != b.sum_xx.shape:
            return False
        sa, sb = a.scatter(), b.scatter()
        sd = np.sqrt(np.maximum(np.diagonal(sa, axis1=1, axis2=2), 0.0))
        ma, mb = a.means(), b.means()
        return bool(
            np.allclose(a.nk, b.nk, rtol=rtol, atol=atol)
            and np.all(np.abs(ma - mb) <= atol + rtol * (np.abs(ma) + sd))
            and np.all(np.abs(sa - sb) <= atol + rtol * sd[:, :, None] * sd[:, None, :])
        )


#: At most this many more passes of :func:`regression_moments` for a state.
_REFITS = 2


def regression_moments(
    Y: np.ndarray, posteriors: np.ndarray, coefs_ref: np.ndarray
) -> AutoRegressiveMoments:
    """Moments of the rows ``Y = [x, z]`` about regressions near ``coefs_ref``, per state.

    A state whose weighted least-squares fit leaves residuals far smaller than those of
    ``coefs_ref`` (so that the M-step's difference of moments would lose more than four
    digits, as when a state settles onto a few steps it fits exactly) has its moments
    taken again about that fit, so its residual covariance is resolved relative to
    itself: the two passes of a centred variance, for a regression.

    Parameters
    ----------
    Y : ndarray of shape (n, d * (p + 1))
    posteriors : ndarray of shape (n, K)
        Non-negative weights of the rows in every state.
    coefs_ref : ndarray of shape (K, d, p * d)

    Returns
    -------
    AutoRegressiveMoments
    """
    coefs_ref = np.array(coefs_ref, dtype=float)
    k_all, d = coefs_ref.shape[:2]
    width = Y.shape[1]
    nk = posteriors.sum(axis=0)
    # reference points: the weighted means of the rows (of all rows for an empty state)
    ref = np.empty((k_all, width))
    ref[:] = Y.mean(axis=0)
    pos = nk > 0
    ref[pos] = (posteriors[:, pos].T @ Y) / nk[pos, None]
    sum_w = np.empty((k_all, width))
    sum_ww = np.empty((k_all, width, width))
    for k in range(k_all):
        r = posteriors[:, k]
        w = Y - ref[k]  # centred first: x - B z then rounds at the spread, not the offset
        for attempt in range(_REFITS + 1):
            if attempt:
                w[:, :d] = Y[:, :d] - ref[k, :d]
            w[:, :d] -= w[:, d:] @ coefs_ref[k].T
            sum_w[k] = r @ w
            sum_ww[k] = (w * r[:, None]).T @ w
            if attempt == _REFITS:
                break
            one = FullMoments(nk[k : k + 1], ref[k : k + 1], sum_w[k : k + 1], sum_ww[k : k + 1])
            delta = _refit(one.scatter()[0], d)
            if delta is None:
                break
            coefs_ref[k] = coefs_ref[k] + delta
        # moments of w = [x - B z, z] about the transformed reference point
        ref[k, :d] = ref[k, :d] - coefs_ref[k] @ ref[k, d:]
    return AutoRegressiveMoments(coefs_ref, FullMoments(nk, ref, sum_w, sum_ww))


def _refit(scatter: np.ndarray, d: int) -> np.ndarray | None:
    """The least-squares step ``delta`` if the residuals it leaves are not resolved, else None.

    ``scatter`` (D, D) is the centred scatter of ``[u, z]``; the residual scatter of the
    fit is ``C_uu - delta C_zu``, a difference of terms of sizes ``C_uu + delta C_zz
    delta'``, known to ``eps`` times them.
    """
    cuu, cuz, czz = scatter[:d, :d], scatter[:d, d:], scatter[d:, d:]
    delta = solve_normal(czz, cuz)
    dz = delta @ czz
    terms = np.diagonal(cuu) + np.einsum("ij,ij->i", dz, delta)
    resid = np.diagonal(cuu) - np.einsum("ij,ij->i", delta, cuz)
    return delta if np.any(resid < terms * SINGULAR_FRACTION) else None


def flat_coefs(coefs: np.ndarray) -> np.ndarray:
    """Coefficients (K, p, d, d) side by side, ``[A_k1, ..., A_kp]``: shape (K, d, p d)."""
    k_all, p, d, _ = coefs.shape
    return np.asarray(coefs, dtype=float).transpose(0, 2, 1, 3).reshape(k_all, d, p * d)


def pooled_magnitudes(stats: AutoRegressiveMoments) -> np.ndarray:
    """Root mean squares (D,) of the columns of the rows ``[x, z]``, over all states."""
    mom = stats.moments
    d = stats.coefs_ref.shape[1]
    means, scatter = mom.means(), mom.scatter()
    # back from w = [x - B z, z] to [x, z]: x = u + B z
    lin = np.broadcast_to(np.eye(means.shape[1]), scatter.shape).copy()
    lin[:, :d, d:] = stats.coefs_ref
    ymeans = np.einsum("kij,kj->ki", lin, means)
    second = np.einsum("kij,kjl,kil->ki", lin, scatter, lin) + ymeans**2
    w = np.asarray(mom.nk, dtype=float)
    total = w.sum()
    return np.sqrt(w @ second / total) if total > 0 else np.zeros(means.shape[1])


def solve_normal(czz: np.ndarray, cxz: np.ndarray) -> np.ndarray:
    """``cxz @ inv(czz)``; the minimum-norm solution when ``czz`` is singular.

    Any solution of the normal equations maximises the weighted least-squares
    objective, so EM stays exact for a state whose lags are collinear or that has
    too few steps.
    """
    return np.linalg.lstsq(czz, cxz.T, rcond=None)[0].T
