"""Additive weighted moments of Gaussian components, referenced near their means.

Statistics (:class:`GaussianMoments`) are weighted moments *about a reference
point* carried in the statistics: ``sum_k r (x - ref_k)`` and the matching second
moment, as full matrices, diagonals or traces depending on the covariance
structure. Referencing the moments near the means keeps them free of the
cancellation that ruins ``E[x x^T] - mu mu^T`` on data far from the origin,
while they stay additive: statistics with the same reference add field by
field, and ones with different references are shifted exactly to a common one
before adding.
"""

from __future__ import annotations

import dataclasses
import functools
from abc import abstractmethod
from typing import ClassVar

import numpy as np

from ...core.params import Stats

#: Relative floor of the responsibilities: a component whose total weight is below
#: ``NK_EPS`` times the total weight of the statistics counts as holding that much
#: (so an empty component gets finite parameters and a positive mixing weight).
#: Relative, so multiplying every sample weight by a constant (1e-50, 1e300)
#: changes nothing; a floor, not an addition, so components above it get the exact
#: M-step, whatever the reference point of their moments. Its size is scikit-learn's
#: ``10 * eps`` per sample of unit weight.
NK_EPS = 10.0 * np.finfo(np.float64).eps

#: Statistics whose total weight is below this (a hidden state that is never
#: visited) use the absolute floor ``NK_EPS``: no scale is defined, and a relative
#: floor would make the regularised variances ``reg_covar / floor`` overflow.
NK_MIN_TOTAL = 1e-250


def effective_counts(nk: np.ndarray) -> np.ndarray:
    """Component totals ``nk`` (K,) raised to the relative floor :data:`NK_EPS`.

    The divisor of every average in the M-step (:attr:`GaussianMoments.nk_eff`).
    """
    nk = np.asarray(nk, dtype=float)
    total = float(np.sum(nk))
    return np.maximum(nk, NK_EPS * total if total > NK_MIN_TOTAL else NK_EPS)


def pooled_reference(
    nk_a: np.ndarray, ref_a: np.ndarray, nk_b: np.ndarray, ref_b: np.ndarray
) -> np.ndarray:
    """The count-weighted mean of two reference points per component, for adding statistics.

    Parameters
    ----------
    nk_a, nk_b : ndarray of shape (K,)
        The weights of the two statistics.
    ref_a, ref_b : ndarray of shape (K, ...)
        Their reference points (means, or regressions).

    Returns
    -------
    ndarray of shape (K, ...)
        ``(nk_a ref_a + nk_b ref_b) / (nk_a + nk_b)``; the midpoint where both weights are 0.
    """
    total = nk_a + nk_b
    wa = np.divide(nk_a, total, out=np.full_like(total, 0.5), where=total > 0)
    wa = wa.reshape(wa.shape + (1,) * (np.ndim(ref_a) - 1))
    return wa * ref_a + (1.0 - wa) * ref_b


# ---------------------------------------------------------------------------
# Sufficient statistics
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _triu(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices of the upper triangle of a d x d matrix, and the
    coefficients (-1/2 on the diagonal, -1 off it) of ``-x^T A x / 2`` in its entries."""
    iu = np.triu_indices(d)
    coef = np.where(iu[0] == iu[1], -0.5, -1.0)
    for a in (*iu, coef):
        a.flags.writeable = False
    return iu[0], iu[1], coef


@dataclasses.dataclass(frozen=True)
class GaussianMoments(Stats):
    """Weighted moments of K components about per-component reference points.

    Attributes
    ----------
    nk : ndarray of shape (K,)
        Total responsibility (times sample weight) of each component.
    ref : ndarray of shape (K, d)
        Reference point of each component's moments. Not additive: see
        :meth:`__add__`.
    sum_x : ndarray of shape (K, d)
        ``sum_i r_ik (x_i - ref_k)``.
    sum_xx : ndarray
        Second moment about ``ref``, in the subclass's representation:
        full matrices (:class:`FullMoments`), their diagonals
        (:class:`DiagMoments`) or their traces (:class:`TraceMoments`).

    Notes
    -----
    Adding statistics with identical references adds the fields. Otherwise both
    operands are first shifted exactly to the responsibility-weighted mean of
    their references, which is close to both, so the shift loses no accuracy.
    ``scale`` multiplies everything except ``ref``.
    """

    nk: np.ndarray
    ref: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray

    #: Name of the representation of ``sum_xx``.
    kind: ClassVar[str] = ""

    # -- the representation of second moments, per subclass ---------------
    @staticmethod
    @abstractmethod
    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a b^T`` in this representation, row by row: (..., d) x (..., d) -> (...)."""

    @staticmethod
    @abstractmethod
    def n_features(d: int) -> int:
        """Number of quadratic features of a d-dimensional sample."""

    @staticmethod
    @abstractmethod
    def fill_features(xt: np.ndarray, out: np.ndarray) -> None:
        """Write the quadratic features of the columns of ``xt`` (d, B) into ``out`` (nq, B)."""

    @staticmethod
    @abstractmethod
    def unpack(g: np.ndarray, d: int) -> np.ndarray:
        """Sums of the quadratic features, (nq, K), to ``sum_xx`` of shape (K, ...)."""

    @staticmethod
    @abstractmethod
    def feature_pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        """The quadratic features as products, for compiled kernels.

        Returns ``(a, b, out, summed)``: feature ``out[p]`` is ``xt[a[p]] * xt[b[p]]``,
        or, when ``summed``, the sum of those products over every ``p`` with that
        ``out[p]``; the same values as :meth:`fill_features`.
        """

    @staticmethod
    @abstractmethod
    def pack_quadratic(lam: np.ndarray, d: int) -> np.ndarray:
        """Coefficients (K, nq) of the quadratic features in ``-x^T Lam_k x / 2``."""

    @staticmethod
    @abstractmethod
    def direct(xc: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Second moment ``sum_i r_i xc_i xc_i^T`` of centred rows ``xc`` (B, d)."""

    # -- algebra ---------------------------------------------------------------
    def shifted(self, new_ref: np.ndarray) -> GaussianMoments:
        """The same moments about the reference points ``new_ref`` (K, d), exactly."""
        new_ref = np.broadcast_to(np.asarray(new_ref, dtype=float), self.ref.shape)
        delta = self.ref - new_ref  # x - new = (x - ref) + delta
        if not delta.any():
            return type(self)(self.nk, new_ref, self.sum_x, self.sum_xx)
        sum_x = self.sum_x + self.nk[:, None] * delta
        sum_xx = (
            self.sum_xx
            + self.cross(self.sum_x, delta)
            + self.cross(delta, self.sum_x)
            + self.nk.reshape((-1,) + (1,) * (self.sum_xx.ndim - 1)) * self.cross(delta, delta)
        )
        return type(self)(self.nk, new_ref, sum_x, sum_xx)

    def __add__(self, other: GaussianMoments) -> GaussianMoments:
        if type(other) is not type(self):
            raise TypeError(
                f"cannot add {type(self).__name__} and {type(other).__name__}: "
                "statistics must come from the same covariance type"
            )
        a, b = self, other
        if not np.array_equal(a.ref, b.ref):
            ref = pooled_reference(a.nk, a.ref, b.nk, b.ref)
            a, b = a.shifted(ref), b.shifted(ref)
        return type(self)(a.nk + b.nk, a.ref, a.sum_x + b.sum_x, a.sum_xx + b.sum_xx)

    def scale(self, c: float) -> GaussianMoments:
        return type(self)(self.nk * c, self.ref, self.sum_x * c, self.sum_xx * c)

    # -- M-step quantities -------------------------------------------------
    @property
    def nk_eff(self) -> np.ndarray:
        """``nk`` raised to the relative floor :data:`NK_EPS`: the divisor of every average (K,)."""
        return effective_counts(self.nk)

    def means(self) -> np.ndarray:
        """Weighted means of the components, (K, d)."""
        return self.ref + self.sum_x / self.nk_eff[:, None]

    def scatter(self, about: np.ndarray | None = None) -> np.ndarray:
        """Average centred second moment of each component, shape (K, ...).

        Parameters
        ----------
        about : ndarray of shape (K, d), optional
            Centre the moments here (for example frozen means) instead of at
            the weighted means.
        """
        nk = self.nk_eff.reshape((-1,) + (1,) * (self.sum_xx.ndim - 1))
        if about is not None:
            return self.shifted(about).sum_xx / nk
        delta = self.sum_x / self.nk_eff[:, None]
        return self.sum_xx / nk - self.cross(delta, delta)


@dataclasses.dataclass(frozen=True)
class FullMoments(GaussianMoments):
    """Moments with full second-moment matrices, ``sum_xx`` of shape (K, d, d)."""

    kind: ClassVar[str] = "full"

    @staticmethod
    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a[..., :, None] * b[..., None, :]

    @staticmethod
    def n_features(d: int) -> int:
        return d * (d + 1) // 2

    @staticmethod
    def fill_features(xt: np.ndarray, out: np.ndarray) -> None:
        d = xt.shape[0]
        start = 0
        for i in range(d):
            np.multiply(xt[i], xt[i:], out=out[start : start + d - i])
            start += d - i

    @staticmethod
    def feature_pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        rows, cols, _ = _triu(d)
        return rows.astype(np.int64), cols.astype(np.int64), np.arange(rows.size), False

    @staticmethod
    def unpack(g: np.ndarray, d: int) -> np.ndarray:
        rows, cols, _ = _triu(d)
        out = np.empty((g.shape[1], d, d))
        out[:, rows, cols] = g.T
        out[:, cols, rows] = g.T
        return out

    @staticmethod
    def pack_quadratic(lam: np.ndarray, d: int) -> np.ndarray:
        rows, cols, coef = _triu(d)
        return lam[:, rows, cols] * coef

    @staticmethod
    def direct(xc: np.ndarray, r: np.ndarray) -> np.ndarray:
        return (xc * r[:, None]).T @ xc


@dataclasses.dataclass(frozen=True)
class DiagMoments(GaussianMoments):
    """Moments with only the diagonal of the second moment, ``sum_xx`` of shape (K, d)."""

    kind: ClassVar[str] = "diag"

    @staticmethod
    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a * b

    @staticmethod
    def n_features(d: int) -> int:
        return d

    @staticmethod
    def fill_features(xt: np.ndarray, out: np.ndarray) -> None:
        np.multiply(xt, xt, out=out)

    @staticmethod
    def feature_pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        j = np.arange(d, dtype=np.int64)
        return j, j, j, False

    @staticmethod
    def unpack(g: np.ndarray, d: int) -> np.ndarray:
        return g.T.copy()

    @staticmethod
    def pack_quadratic(lam: np.ndarray, d: int) -> np.ndarray:
        return -0.5 * lam

    @staticmethod
    def direct(xc: np.ndarray, r: np.ndarray) -> np.ndarray:
        return r @ (xc * xc)


@dataclasses.dataclass(frozen=True)
class TraceMoments(GaussianMoments):
    """Moments with only the trace of the second moment, ``sum_xx`` of shape (K,)."""

    kind: ClassVar[str] = "trace"

    @staticmethod
    def cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.sum(a * b, axis=-1)

    @staticmethod
    def n_features(d: int) -> int:
        return 1

    @staticmethod
    def fill_features(xt: np.ndarray, out: np.ndarray) -> None:
        np.einsum("ij,ij->j", xt, xt, out=out[0])

    @staticmethod
    def feature_pairs(d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
        j = np.arange(d, dtype=np.int64)
        return j, j, np.zeros(d, dtype=np.int64), True

    @staticmethod
    def unpack(g: np.ndarray, d: int) -> np.ndarray:
        return g[0].copy()

    @staticmethod
    def pack_quadratic(lam: np.ndarray, d: int) -> np.ndarray:
        return -0.5 * lam[:, None]

    @staticmethod
    def direct(xc: np.ndarray, r: np.ndarray) -> np.ndarray:
        return r @ np.einsum("ij,ij->i", xc, xc)
