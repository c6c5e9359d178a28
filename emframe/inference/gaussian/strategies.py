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

Each of the :meth:`~CovarianceStrategy.n_matrices` distinct covariances has the prior
``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` (inverse-Wishart), of strength
``lambda`` (the argument ``reg_covar``): :meth:`CovarianceStrategy.covariances` is its
MAP, ``(S_k + lambda I) / N_k`` (tied: ``(sum S_k + lambda I) / sum N_k``; spherical:
``(trace S_k + d lambda) / (d N_k)``), :meth:`CovarianceStrategy.log_prior` its log
density; 0 is maximum likelihood. Models pass ``lambda = reg_covar * n / m`` (:mod:`.prior`).

The moments they consume live in :mod:`.moments`, the fast log-density kernel
in :mod:`.kernel`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from scipy import linalg

from ...core.numerics import triangular_inverse
from .moments import DiagMoments, FullMoments, GaussianMoments, TraceMoments

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceStrategy",
    "DiagCovariance",
    "FullCovariance",
    "SphericalCovariance",
    "TiedCovariance",
    "get_covariance_strategy",
]

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------
def _not_pd_error(what: str, reg_covar: float | None, numerically: bool = False) -> ValueError:
    hint = (
        f"increase reg_covar (now {reg_covar:g}), about the variance that the covariance "
        "prior adds to components of balanced weights"
        if reg_covar is not None
        else "increase reg_covar"
    )
    state = "numerically singular" if numerically else "not positive definite"
    return ValueError(
        f"{what} is {state} (a component may have collapsed onto a single "
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


#: A covariance one of whose features keeps less than this fraction of its variance
#: given the others (``L_ii^2 / C_ii``) is numerically singular: its thinnest direction is
#: resolved to worse than 1e-4, and its log-density's rounding noise can trip the guard.
SINGULAR_FRACTION = 1e4 * np.finfo(np.float64).eps


def _upper_precision_cholesky(cov: np.ndarray, what: str, reg_covar: float | None) -> np.ndarray:
    """Upper-triangular ``U`` with ``U U^T = inv(cov)``."""
    chol = _chol_lower(cov, what, reg_covar)
    if np.min(np.diagonal(chol) ** 2 / np.diagonal(cov)) < SINGULAR_FRACTION:
        raise _not_pd_error(what, reg_covar, numerically=True)
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
    #: Constraint of ``covariances`` for :mod:`emframe.core.reparam` ("spd" or "positive").
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

    def n_matrices(self, n_components: int) -> int:
        """Number of distinct covariance matrices of K components (each has the prior)."""
        return int(n_components)

    # -- M-step and prior ----------------------------------------------------
    @abstractmethod
    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        """MAP covariances from moments under the ``reg_covar`` prior (see the module docstring).

        Parameters
        ----------
        moments : GaussianMoments
            Statistics of class :attr:`moments`.
        reg_covar : float
            Non-negative prior strength ``lambda`` of each matrix, added to the diagonal
            of each scatter matrix before dividing by the component's weight, so
            ``lambda / N_k`` to its variances. 0 gives maximum likelihood.
        about : ndarray of shape (K, d), optional
            Centre the covariances here (frozen means) instead of at the
            weighted means; the result is then the MAP given those means.
        """

    def trace_precisions(self, precisions_cholesky: np.ndarray, n_features: int) -> float:
        """``sum_k trace(inv(Sigma_k))`` over the distinct covariances (one if tied)."""
        # trace(U U^T) is the sum of the squared entries of U (of 1/variances for diag)
        return float(np.sum(np.square(precisions_cholesky)))

    def log_prior(
        self, precisions_cholesky: np.ndarray, reg_covar: float, n_features: int
    ) -> float:
        """The prior's log density, ``-reg_covar / 2 * sum_j trace(inv(Sigma_j))``."""
        if reg_covar == 0.0:
            return 0.0
        return -0.5 * reg_covar * self.trace_precisions(precisions_cholesky, n_features)

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

    def variance_inflation(self, precisions_cholesky: np.ndarray, n_components: int) -> np.ndarray:
        """``max_i Lambda_ii Sigma_ii`` per component, shape (K,); 1 without correlations.

        How much the kernel's quadratic expansion amplifies rounding: large for collinear features.
        """
        return np.ones(n_components)

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

    def variance_inflation(self, precisions_cholesky: np.ndarray, n_components: int) -> np.ndarray:
        u = precisions_cholesky  # (K, d, d), or one (d, d) when tied
        # Lambda = U U^T and Sigma = U^-T U^-1: row norms of U, column norms of U^-1
        inv_u = np.linalg.inv(u)
        lam_ii = np.einsum("...ij,...ij->...i", u, u)
        vif = np.max(lam_ii * np.einsum("...ji,...ji->...i", inv_u, inv_u), axis=-1)
        return np.broadcast_to(vif, (n_components,)).copy()

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
        cov[:, np.arange(d), np.arange(d)] += (reg_covar / moments.nk_eff)[:, None]
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

    def n_matrices(self, n_components: int) -> int:
        return 1

    def covariances(
        self, moments: GaussianMoments, reg_covar: float, about: np.ndarray | None = None
    ) -> np.ndarray:
        scatter = moments.scatter(about)
        nk = moments.nk_eff
        total = nk.sum()
        cov = np.einsum("k,kij->ij", nk, scatter) / total
        cov = 0.5 * (cov + cov.T)
        cov[np.diag_indices_from(cov)] += reg_covar / total
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
        return moments.scatter(about) + (reg_covar / moments.nk_eff)[:, None]

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
        # trace(inv(sigma^2 I)) = d / sigma^2: the prior adds d * reg_covar to trace(S_k)
        d = moments.ref.shape[1]
        return moments.scatter(about) / d + reg_covar / moments.nk_eff

    def trace_precisions(self, precisions_cholesky: np.ndarray, n_features: int) -> float:
        return n_features * float(np.sum(np.square(precisions_cholesky)))

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


