"""Gaussian components with structured covariances: statistics, M-step and fast log-densities.

One strategy object per covariance structure ("full", "diag", "spherical",
"tied") knows the shapes, the M-step from weighted moments, the Cholesky factor
of the precision, log-determinants, validation of user-given matrices and the
number of free parameters. Look one up with :func:`get_covariance_strategy`;
nothing else in emframe branches on the covariance type.

Parameters of K components in d dimensions are stored as in scikit-learn:

=========== ======================== ==========================================
type        covariances              precisions_cholesky ``U``
=========== ======================== ==========================================
full        (K, d, d)                (K, d, d), upper triangular, ``U U^T = inv(C)``
tied        (d, d)                   (d, d), upper triangular
diag        (K, d)                   (K, d), ``1 / sqrt(C)``
spherical   (K,)                     (K,), ``1 / sqrt(C)``
=========== ======================== ==========================================

Statistics (:class:`GaussianMoments`) are weighted moments *about a reference
point* carried in the statistics: ``sum_k r (x - ref_k)`` and the matching second
moment. Referencing the moments near the means keeps them free of the
cancellation that ruins ``E[x x^T] - mu mu^T`` on data far from the origin,
while they stay additive: statistics with the same reference add field by
field, and ones with different references are shifted exactly to a common one
before adding.

:class:`GaussianKernel` evaluates the (n, K) log-density matrix and the
moments of all components with a few large matrix products: it centres the data
at one point ``c`` and writes every Gaussian log-density as a linear function of
the features ``[quadratic terms of x - c, x - c, 1]``. A component whose mean is
so far from ``c`` (in its own Mahalanobis metric) that this expansion would lose
digits is evaluated directly about its own mean instead, so accuracy never
depends on where the data sit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy import linalg

from .numerics import triangular_inverse
from .params import Stats

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceStrategy",
    "DiagMoments",
    "FullMoments",
    "GaussianKernel",
    "GaussianMoments",
    "TraceMoments",
    "gaussian_moments",
    "get_covariance_strategy",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: Added to every component's total responsibility before dividing, as in
#: scikit-learn, so an empty component gives finite parameters (and M-steps match).
NK_EPS = 10.0 * np.finfo(np.float64).eps

#: A component is scored by the expanded (fast) formula only while the squared
#: Mahalanobis distance between its mean and the centring point stays below this;
#: the rounding error of the expansion is about ``eps * distance``, so this keeps
#: it near 1e-11 relative. Farther components are evaluated directly.
EXPANSION_MAX_DISTANCE = 1e5

#: Above this many quadratic features (full covariance with d > 63) the expansion
#: costs more memory than it saves, and every component is evaluated directly.
EXPANSION_MAX_FEATURES = 2016

#: Multiply-adds per matrix product on one block of rows. About 4e5 keeps a block
#: of features in L2 cache and each product small enough for BLAS to run it on one
#: thread: measured on 2 cores, threading these products gains nothing when the
#: machine is idle and costs up to 20x when it is busy (thread hand-offs).
_BLOCK_MULADDS = 3 << 17


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
            total = a.nk + b.nk
            wa = np.divide(a.nk, total, out=np.full_like(total, 0.5), where=total > 0)
            ref = wa[:, None] * a.ref + (1.0 - wa)[:, None] * b.ref
            a, b = a.shifted(ref), b.shifted(ref)
        return type(self)(a.nk + b.nk, a.ref, a.sum_x + b.sum_x, a.sum_xx + b.sum_xx)

    def scale(self, c: float) -> GaussianMoments:
        return type(self)(self.nk * c, self.ref, self.sum_x * c, self.sum_xx * c)

    # -- M-step quantities -------------------------------------------------
    @property
    def nk_eff(self) -> np.ndarray:
        """``nk`` plus a tiny constant, the divisor of every average (K,)."""
        return self.nk + NK_EPS

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
    def unpack(g: np.ndarray, d: int) -> np.ndarray:
        return g[0].copy()

    @staticmethod
    def pack_quadratic(lam: np.ndarray, d: int) -> np.ndarray:
        return -0.5 * lam[:, None]

    @staticmethod
    def direct(xc: np.ndarray, r: np.ndarray) -> np.ndarray:
        return r @ np.einsum("ij,ij->i", xc, xc)


# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
def _not_pd_error(what: str, reg_covar: float | None) -> ValueError:
    hint = (
        f"increase reg_covar (now {reg_covar:g})"
        if reg_covar is not None
        else "increase reg_covar"
    )
    return ValueError(
        f"{what} is not positive definite (a component may have collapsed onto a single "
        f"point or a subspace, e.g. duplicate points or a constant feature); {hint}, "
        "use fewer components, or rescale the data"
    )


def _chol_lower(mat: np.ndarray, what: str, reg_covar: float | None) -> np.ndarray:
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{what} has non-finite entries (NaN or inf)")
    try:
        return linalg.cholesky(mat, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise _not_pd_error(what, reg_covar) from None


def _upper_precision_cholesky(cov: np.ndarray, what: str, reg_covar: float | None) -> np.ndarray:
    """Upper-triangular ``U`` with ``U U^T = inv(cov)``."""
    chol = _chol_lower(cov, what, reg_covar)
    try:
        return triangular_inverse(chol, lower=True).T
    except np.linalg.LinAlgError:
        raise _not_pd_error(what, reg_covar) from None


def _upper_cholesky_of_precision(prec: np.ndarray, what: str) -> np.ndarray:
    """Upper-triangular ``U`` with ``U U^T = prec`` (Cholesky of the flipped matrix)."""
    return _chol_lower(prec[::-1, ::-1], what, None)[::-1, ::-1].copy()


def _check_spd(mat: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(mat)):
        raise ValueError(f"{what} has non-finite entries (NaN or inf)")
    scale = max(float(np.max(np.abs(mat))), np.finfo(float).tiny)
    if not np.allclose(mat, mat.T, rtol=1e-7, atol=1e-10 * scale):
        raise ValueError(f"{what} is not symmetric")
    try:
        linalg.cholesky(mat, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise ValueError(f"{what} is not positive definite") from None


def _as_float_array(value: Any, name: str) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array: {exc}") from None
    return arr


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], name: str, type_name: str) -> None:
    if arr.shape != shape:
        raise ValueError(
            f"{name} for covariance_type={type_name!r} must have shape {shape}, "
            f"got {arr.shape}"
        )


class CovarianceStrategy(ABC):
    """Everything that depends on the covariance structure of K Gaussian components.

    Subclasses are stateless singletons; get them with
    :func:`get_covariance_strategy`. Arrays named ``covariances`` and
    ``precisions_cholesky`` have the shapes listed in the module docstring.
    """

    #: Name used for ``covariance_type``.
    name: ClassVar[str]
    #: Statistics class (representation of the second moments) this structure needs.
    moments: ClassVar[type[GaussianMoments]]
    #: Constraint of ``covariances`` for :mod:`emframe.reparam` ("spd" or "positive").
    constraint: ClassVar[str]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    # -- shapes and counts -------------------------------------------------
    @abstractmethod
    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of ``covariances`` (and of ``precisions_cholesky``)."""

    @abstractmethod
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Number of free covariance parameters."""

    # -- M-step ------------------------------------------------------------
    @abstractmethod
    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        """Maximum-likelihood covariances from moments, plus ``reg_covar`` on the diagonal.

        Parameters
        ----------
        moments : GaussianMoments
            Statistics of class :attr:`moments`.
        reg_covar : float
            Non-negative number added to the variances.
        about : ndarray of shape (K, d), optional
            Centre the covariances here (frozen means) instead of at the
            weighted means.
        """

    @abstractmethod
    def precisions_cholesky(
        self, covariances: np.ndarray, reg_covar: float | None = None
    ) -> np.ndarray:
        """Cholesky factors of the precisions.

        Raises
        ------
        ValueError
            If a covariance is not positive definite; the message names the
            component and suggests a larger ``reg_covar``.
        """

    @abstractmethod
    def precisions_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        """Cholesky factors ``U`` (``U U^T = precision``) from precision matrices."""

    @abstractmethod
    def covariances_from_precisions_cholesky(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        """The covariances ``inv(U U^T)``."""

    @abstractmethod
    def precisions(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        """The precision matrices ``U U^T`` (or vectors/scalars for diag/spherical)."""

    # -- scoring -----------------------------------------------------------
    @abstractmethod
    def log_det_cholesky(
        self, precisions_cholesky: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        """``log det U`` per component, shape (K,) (half the log-det of the precision)."""

    @abstractmethod
    def _precision_terms(self, precisions_cholesky: np.ndarray, n_components: int) -> Any:
        """Precision in the form :meth:`apply_precision` and :meth:`quadratic_coefficients` use."""

    @abstractmethod
    def apply_precision(self, lam: Any, v: np.ndarray) -> np.ndarray:
        """``Lambda_k v_k`` for every row of ``v`` (K, d)."""

    @abstractmethod
    def quadratic_coefficients(self, lam: Any, n_components: int, n_features: int) -> np.ndarray:
        """Coefficients (K, nq) of the quadratic features in ``-(x^T Lambda_k x) / 2``."""

    @abstractmethod
    def mahalanobis(self, xc: np.ndarray, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        """Squared Mahalanobis norm of each centred row of ``xc`` (B, d) under component k."""

    @abstractmethod
    def sample_noise(
        self, precisions_cholesky: np.ndarray, k: int, z: np.ndarray
    ) -> np.ndarray:
        """Map standard normal rows ``z`` (m, d) to rows with component k's covariance."""

    @abstractmethod
    def factor_diagonal(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        """Diagonal entries of the precision factors (all positive for a valid factor)."""

    # -- validation ----------------------------------------------------------
    @abstractmethod
    def _check_matrices(self, arr: np.ndarray, name: str) -> None:
        """Positivity/symmetry checks on an array of the right shape."""

    def check_covariances(
        self, covariances: Any, n_components: int, n_features: int, name: str = "covariances"
    ) -> np.ndarray:
        """Validate user-given covariances: shape, finite, symmetric positive definite.

        Returns
        -------
        ndarray
            A float64 copy.
        """
        arr = _as_float_array(covariances, name)
        _check_shape(arr, self.shape(n_components, n_features), name, self.name)
        self._check_matrices(arr, name)
        return arr

    def check_precisions(
        self, precisions: Any, n_components: int, n_features: int, name: str = "precisions"
    ) -> np.ndarray:
        """Validate user-given precisions: shape, finite, symmetric positive definite."""
        arr = _as_float_array(precisions, name)
        _check_shape(arr, self.shape(n_components, n_features), name, self.name)
        self._check_matrices(arr, name)
        return arr


class _MatrixCovariance(CovarianceStrategy):
    """Shared code of the full and tied structures, which hold d x d matrices."""

    def factor_diagonal(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return np.diagonal(precisions_cholesky, axis1=-2, axis2=-1)

    moments = FullMoments
    constraint = "spd"

    def mahalanobis(self, xc: np.ndarray, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        y = xc @ self._factor(precisions_cholesky, k)
        return np.einsum("ij,ij->i", y, y)

    def sample_noise(self, precisions_cholesky: np.ndarray, k: int, z: np.ndarray) -> np.ndarray:
        u = self._factor(precisions_cholesky, k)
        # U U^T = inv(C)  =>  y = U^{-T} z has covariance C; as rows, Y = Z U^{-1}.
        return z @ triangular_inverse(u, lower=False)

    @abstractmethod
    def _factor(self, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        """The (d, d) factor of component k."""


class FullCovariance(_MatrixCovariance):
    """Each component has its own full covariance matrix."""

    name = "full"

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features * (n_features + 1) // 2

    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        cov = moments.scatter(about)
        cov = 0.5 * (cov + cov.transpose(0, 2, 1))
        d = cov.shape[-1]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov

    def precisions_cholesky(
        self, covariances: np.ndarray, reg_covar: float | None = None
    ) -> np.ndarray:
        return np.stack(
            [
                _upper_precision_cholesky(c, f"the covariance of component {k}", reg_covar)
                for k, c in enumerate(covariances)
            ]
        )

    def precisions_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                _upper_cholesky_of_precision(p, f"the precision of component {k}")
                for k, p in enumerate(precisions)
            ]
        )

    def covariances_from_precisions_cholesky(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        out = []
        for u in precisions_cholesky:
            inv_u = triangular_inverse(u, lower=False)
            out.append(inv_u.T @ inv_u)
        return np.stack(out)

    def precisions(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return precisions_cholesky @ precisions_cholesky.transpose(0, 2, 1)

    def log_det_cholesky(
        self, precisions_cholesky: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        return np.sum(np.log(np.diagonal(precisions_cholesky, axis1=1, axis2=2)), axis=1)

    def _precision_terms(self, precisions_cholesky: np.ndarray, n_components: int) -> Any:
        return self.precisions(precisions_cholesky)

    def apply_precision(self, lam: Any, v: np.ndarray) -> np.ndarray:
        return np.einsum("kij,kj->ki", lam, v)

    def quadratic_coefficients(self, lam: Any, n_components: int, n_features: int) -> np.ndarray:
        return FullMoments.pack_quadratic(lam, n_features)

    def _factor(self, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        return precisions_cholesky[k]

    def _check_matrices(self, arr: np.ndarray, name: str) -> None:
        for k, mat in enumerate(arr):
            _check_spd(mat, f"{name}[{k}] (component {k})")


class TiedCovariance(_MatrixCovariance):
    """All components share one full covariance matrix."""

    name = "tied"

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_features, n_features)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        return n_features * (n_features + 1) // 2

    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        scatter = moments.scatter(about)
        nk = moments.nk_eff
        cov = np.einsum("k,kij->ij", nk, scatter) / nk.sum()
        cov = 0.5 * (cov + cov.T)
        cov[np.diag_indices_from(cov)] += reg_covar
        return cov

    def precisions_cholesky(
        self, covariances: np.ndarray, reg_covar: float | None = None
    ) -> np.ndarray:
        return _upper_precision_cholesky(covariances, "the tied covariance", reg_covar)

    def precisions_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        return _upper_cholesky_of_precision(precisions, "the tied precision")

    def covariances_from_precisions_cholesky(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        u = precisions_cholesky
        inv_u = triangular_inverse(u, lower=False)
        return inv_u.T @ inv_u

    def precisions(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return precisions_cholesky @ precisions_cholesky.T

    def log_det_cholesky(
        self, precisions_cholesky: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        return np.full(n_components, np.sum(np.log(np.diag(precisions_cholesky))))

    def _precision_terms(self, precisions_cholesky: np.ndarray, n_components: int) -> Any:
        return self.precisions(precisions_cholesky)

    def apply_precision(self, lam: Any, v: np.ndarray) -> np.ndarray:
        return v @ lam

    def quadratic_coefficients(self, lam: Any, n_components: int, n_features: int) -> np.ndarray:
        row = FullMoments.pack_quadratic(lam[None], n_features)
        return np.repeat(row, n_components, axis=0)

    def _factor(self, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        return precisions_cholesky

    def _check_matrices(self, arr: np.ndarray, name: str) -> None:
        _check_spd(arr, name)


class _Variances(CovarianceStrategy):
    """Shared code of the diag and spherical structures, which hold variances."""

    constraint = "positive"

    def factor_diagonal(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return precisions_cholesky

    def precisions_cholesky(
        self, covariances: np.ndarray, reg_covar: float | None = None
    ) -> np.ndarray:
        bad = ~(covariances > 0) | ~np.isfinite(covariances)
        if bad.any():
            k = int(np.argwhere(bad)[0][0])
            raise _not_pd_error(f"the {self.name} covariance of component {k}", reg_covar)
        return 1.0 / np.sqrt(covariances)

    def precisions_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        return np.sqrt(precisions)

    def covariances_from_precisions_cholesky(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return 1.0 / precisions_cholesky**2

    def precisions(self, precisions_cholesky: np.ndarray) -> np.ndarray:
        return precisions_cholesky**2

    def _precision_terms(self, precisions_cholesky: np.ndarray, n_components: int) -> Any:
        return precisions_cholesky**2

    def _check_matrices(self, arr: np.ndarray, name: str) -> None:
        bad = ~(arr > 0) | ~np.isfinite(arr)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"{name} for covariance_type={self.name!r} must be positive and finite; "
                f"{name}{list(idx)} (component {idx[0]}) is {arr[idx]}"
            )


class DiagCovariance(_Variances):
    """Each component has its own diagonal covariance."""

    name = "diag"
    moments = DiagMoments

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components, n_features)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        return n_components * n_features

    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        return moments.scatter(about) + reg_covar

    def log_det_cholesky(
        self, precisions_cholesky: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        return np.sum(np.log(precisions_cholesky), axis=1)

    def apply_precision(self, lam: Any, v: np.ndarray) -> np.ndarray:
        return lam * v

    def quadratic_coefficients(self, lam: Any, n_components: int, n_features: int) -> np.ndarray:
        return DiagMoments.pack_quadratic(lam, n_features)

    def mahalanobis(self, xc: np.ndarray, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        y = xc * precisions_cholesky[k]
        return np.einsum("ij,ij->i", y, y)

    def sample_noise(self, precisions_cholesky: np.ndarray, k: int, z: np.ndarray) -> np.ndarray:
        return z / precisions_cholesky[k]


class SphericalCovariance(_Variances):
    """Each component has a single variance shared by all features."""

    name = "spherical"
    moments = TraceMoments

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        return (n_components,)

    def n_parameters(self, n_components: int, n_features: int) -> int:
        return n_components

    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        d = moments.ref.shape[1]
        return moments.scatter(about) / d + reg_covar

    def log_det_cholesky(
        self, precisions_cholesky: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        return n_features * np.log(precisions_cholesky)

    def apply_precision(self, lam: Any, v: np.ndarray) -> np.ndarray:
        return lam[:, None] * v

    def quadratic_coefficients(self, lam: Any, n_components: int, n_features: int) -> np.ndarray:
        return TraceMoments.pack_quadratic(lam, n_features)

    def mahalanobis(self, xc: np.ndarray, precisions_cholesky: np.ndarray, k: int) -> np.ndarray:
        return np.einsum("ij,ij->i", xc, xc) * precisions_cholesky[k] ** 2

    def sample_noise(self, precisions_cholesky: np.ndarray, k: int, z: np.ndarray) -> np.ndarray:
        return z / precisions_cholesky[k]


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------
_STRATEGIES: dict[str, CovarianceStrategy] = {
    s.name: s
    for s in (FullCovariance(), TiedCovariance(), DiagCovariance(), SphericalCovariance())
}

#: Valid values of ``covariance_type``.
COVARIANCE_TYPES: tuple[str, ...] = tuple(sorted(_STRATEGIES))


def get_covariance_strategy(name: Any) -> CovarianceStrategy:
    """The strategy object for a covariance type.

    Parameters
    ----------
    name : {"full", "tied", "diag", "spherical"}

    Returns
    -------
    CovarianceStrategy

    Raises
    ------
    ValueError
        If ``name`` is not one of the valid names (the message lists them).
    """
    if isinstance(name, str) and name in _STRATEGIES:
        return _STRATEGIES[name]
    valid = ", ".join(repr(n) for n in COVARIANCE_TYPES)
    raise ValueError(f"covariance_type must be one of {valid}; got {name!r}")


# ---------------------------------------------------------------------------
# Moments from responsibilities, exactly centred (initialisation, small data)
# ---------------------------------------------------------------------------
def gaussian_moments(
    X: np.ndarray,
    resp: np.ndarray,
    strategy: CovarianceStrategy,
    ref: np.ndarray | None = None,
) -> GaussianMoments:
    """Moments of ``X`` weighted by ``resp``, computed directly about ``ref``.

    One pass per component, like a textbook M-step; use
    :meth:`GaussianKernel.moments` on large data.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    resp : ndarray of shape (n, K)
        Non-negative weights (responsibilities times sample weights).
    strategy : CovarianceStrategy
    ref : ndarray of shape (K, d), optional
        Reference points. By default each component's weighted mean (two-pass
        centring); a component with zero weight is referenced at the mean of X.

    Returns
    -------
    GaussianMoments
        Of class ``strategy.moments``.
    """
    nk = resp.sum(axis=0)
    if ref is None:
        ref = np.empty((resp.shape[1], X.shape[1]))
        ref[:] = X.mean(axis=0)
        pos = nk > 0
        ref[pos] = (resp[:, pos].T @ X) / nk[pos, None]
    kind = strategy.moments
    sum_x = np.empty_like(ref)
    sum_xx = []
    for k in range(resp.shape[1]):
        xc = X - ref[k]
        sum_x[k] = resp[:, k] @ xc
        sum_xx.append(kind.direct(xc, resp[:, k]))
    return kind(nk, ref, sum_x, np.stack(sum_xx))


# ---------------------------------------------------------------------------
# The hot path: log-densities and moments of all components at once
# ---------------------------------------------------------------------------
class GaussianKernel:
    """Log-densities and moments of K Gaussian components, prepared for one parameter set.

    The data are centred once at ``c`` (the weighted mean of the means) and the
    log-density of component k is written as ``W_k . f(x)`` with the features
    ``f(x) = [quadratic terms of x - c, x - c, 1]``, so the (K, n) log-density
    matrix is one matrix product ``W @ F`` and the moments of all components
    are one more, ``F @ resp``. The data are processed in blocks of rows that
    fit in cache. Components too far from ``c`` for the expansion to be exact
    to about 1e-11 (see :data:`EXPANSION_MAX_DISTANCE`), and all components
    when d is large, are evaluated directly about their own means.

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (K, d)
    precisions_cholesky : ndarray
        In the strategy's shape.
    weights : ndarray of shape (K,), optional
        Mixing weights; when given, ``log(weights)`` is added to the
        log-densities and the weights choose the centring point.
    """

    def __init__(
        self,
        strategy: CovarianceStrategy,
        means: np.ndarray,
        precisions_cholesky: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> None:
        means = np.asarray(means, dtype=float)
        K, d = means.shape
        self.strategy = strategy
        self.kind = strategy.moments
        self.means = means
        self.precisions_cholesky = np.asarray(precisions_cholesky, dtype=float)
        self.n_components, self.n_features = K, d

        lam = strategy._precision_terms(self.precisions_cholesky, K)
        w = np.full(K, 1.0 / K) if weights is None else np.asarray(weights, dtype=float)
        self.centre = (w @ means) / w.sum() if w.sum() > 0 else means.mean(axis=0)
        mc = means - self.centre
        lam_mc = strategy.apply_precision(lam, mc)
        dist = np.einsum("kd,kd->k", mc, lam_mc)

        const = strategy.log_det_cholesky(self.precisions_cholesky, K, d) - 0.5 * d * _LOG_2PI
        if weights is not None:
            with np.errstate(divide="ignore"):
                const = const + np.log(w)
        self.const = const

        self.nq = self.kind.n_features(d)
        expand = self.nq <= EXPANSION_MAX_FEATURES
        near = (dist < EXPANSION_MAX_DISTANCE) if expand else np.zeros(K, dtype=bool)
        self.fast = np.flatnonzero(near)
        self.direct = np.flatnonzero(~near)
        self.n_rows = self.nq + d + 1 if self.fast.size else 0
        if self.fast.size:
            W = np.empty((K, self.n_rows))
            W[:, : self.nq] = strategy.quadratic_coefficients(lam, K, d)
            W[:, self.nq : self.nq + d] = lam_mc
            W[:, -1] = const - 0.5 * dist
            self.W = np.ascontiguousarray(W[self.fast])
        work_per_row = self.n_rows * K if self.fast.size else K * d * d
        self.block = int(min(8192, max(128, _BLOCK_MULADDS // work_per_row)))

    # -- per block -------------------------------------------------------------
    def _buffer(self) -> np.ndarray | None:
        if not self.fast.size:
            return None
        buf = np.empty((self.n_rows, self.block))
        buf[-1] = 1.0
        return buf

    def _features(self, xb: np.ndarray, buf: np.ndarray | None) -> np.ndarray | None:
        if buf is None:
            return None
        F = buf[:, : xb.shape[0]]
        xt = F[self.nq : self.nq + self.n_features]
        np.subtract(xb.T, self.centre[:, None], out=xt)
        self.kind.fill_features(xt, F[: self.nq])
        return F

    def _log_prob_block(self, xb: np.ndarray, F: np.ndarray | None) -> np.ndarray:
        """Log-densities (plus log-weights) of a block, shape (K, B)."""
        lp = np.empty((self.n_components, xb.shape[0]))
        if F is not None:
            if self.direct.size:
                lp[self.fast] = self.W @ F
            else:
                np.matmul(self.W, F, out=lp)
        for k in self.direct:
            xc = xb - self.means[k]
            maha = self.strategy.mahalanobis(xc, self.precisions_cholesky, k)
            lp[k] = self.const[k] - 0.5 * maha
        return lp

    def _accumulate(self, xb: np.ndarray, F: np.ndarray | None, rt: np.ndarray, acc: dict) -> None:
        """Add the moments of a block with responsibilities ``rt`` (K, B) to ``acc``."""
        if F is not None:
            r_fast = rt if not self.direct.size else rt[self.fast]
            acc["G"] += F @ r_fast.T
        for k in self.direct:
            xc = xb - self.means[k]
            r = rt[k]
            acc["nk"][k] += r.sum()
            acc["sum_x"][k] += r @ xc
            acc["sum_xx"][k] += self.kind.direct(xc, r)

    def _new_acc(self) -> dict:
        K, d = self.n_components, self.n_features
        xx_shape = self.kind.unpack(np.zeros((self.nq, K)), d).shape
        return {
            "G": np.zeros((self.n_rows, self.fast.size)),
            "nk": np.zeros(K),
            "sum_x": np.zeros((K, d)),
            "sum_xx": np.zeros(xx_shape),
        }

    def _finish(self, acc: dict) -> GaussianMoments:
        nk, sum_x, sum_xx = acc["nk"], acc["sum_x"], acc["sum_xx"]
        ref = np.empty((self.n_components, self.n_features))
        ref[self.direct] = self.means[self.direct]
        if self.fast.size:
            G, f, d, nq = acc["G"], self.fast, self.n_features, self.nq
            ref[f] = self.centre
            nk[f] = G[-1]
            sum_x[f] = G[nq : nq + d].T
            sum_xx[f] = self.kind.unpack(G[:nq], d)
        return self.kind(nk, ref, sum_x, sum_xx)

    # -- public ------------------------------------------------------------------
    def log_prob(self, X: np.ndarray) -> np.ndarray:
        """Log-density (plus log-weight when weights were given) of every sample.

        Parameters
        ----------
        X : ndarray of shape (n, d)

        Returns
        -------
        ndarray of shape (n, K)
        """
        n = X.shape[0]
        out = np.empty((n, self.n_components))
        buf = self._buffer()
        for s in range(0, n, self.block):
            xb = X[s : s + self.block]
            out[s : s + xb.shape[0]] = self._log_prob_block(xb, self._features(xb, buf)).T
        return out

    def moments(self, X: np.ndarray, resp: np.ndarray) -> GaussianMoments:
        """Moments of ``X`` weighted by ``resp``, referenced near the means.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        resp : ndarray of shape (n, K)
            Non-negative weights (posteriors times sample weights).

        Returns
        -------
        GaussianMoments
            Referenced at the centring point (or, for directly evaluated
            components, at their means): identical for every chunk scored with
            the same parameters, so chunk statistics add exactly.
        """
        acc = self._new_acc()
        buf = self._buffer()
        for s in range(0, X.shape[0], self.block):
            xb = X[s : s + self.block]
            rt = np.ascontiguousarray(resp[s : s + self.block].T)
            self._accumulate(xb, self._features(xb, buf), rt, acc)
        return self._finish(acc)

    def mixture_e_step(
        self, X: np.ndarray, sample_weight: np.ndarray | None = None
    ) -> tuple[GaussianMoments, float]:
        """E-step of a Gaussian mixture in one pass: posteriors, moments, log-likelihood.

        The kernel must have been built with ``weights``.

        Parameters
        ----------
        X : ndarray of shape (n, d)
        sample_weight : ndarray of shape (n,), optional

        Returns
        -------
        moments : GaussianMoments
            Moments weighted by posterior times sample weight.
        log_likelihood : float
            Total (weighted) log-likelihood of ``X``.
        """
        acc = self._new_acc()
        buf = self._buffer()
        loglik = 0.0
        for s in range(0, X.shape[0], self.block):
            xb = X[s : s + self.block]
            F = self._features(xb, buf)
            lp = self._log_prob_block(xb, F)
            with np.errstate(divide="ignore", invalid="ignore"):
                mx = lp.max(axis=0)
                lp -= mx
                np.exp(lp, out=lp)
                tot = lp.sum(axis=0)
                lp /= tot
                lse = mx + np.log(tot)
            if sample_weight is None:
                loglik += float(lse.sum())
            else:
                wb = sample_weight[s : s + self.block]
                loglik += float(wb @ lse)
                lp *= wb
            self._accumulate(xb, F, lp, acc)
        return self._finish(acc), loglik
