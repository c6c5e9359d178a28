"""Mixture of multivariate Student-t distributions, fitted by exact EM.

Each component is a t distribution with location ``mu_k``, scale matrix
``Sigma_k`` (any covariance structure of :mod:`emframe.inference.gaussian`) and
``nu_k`` degrees of freedom: a Gaussian whose precision is scaled by a latent
weight ``u ~ Gamma(nu_k/2, rate nu_k/2)``. A point far from every component
gets a small expected weight ``E[u]`` and so pulls little on the locations and
scales: the fit is robust to outliers where a Gaussian mixture's is not.

EM treats the component labels and the weights ``u`` as missing data
(McLachlan & Peel 2000, ch. 7). The E-step gives the responsibilities
``r_ik``, ``E[u_ik] = (nu_k + d) / (nu_k + m_ik)`` (``m_ik`` the squared
Mahalanobis distance) and ``E[log u_ik]``; its additive statistics are the
Gaussian moments weighted by ``r_ik E[u_ik]``, the counts ``sum_i r_ik`` and
``sum_i r_ik (E[log u_ik] - E[u_ik] + 1)``. The M-step maximises the expected
complete-data log-likelihood exactly; it separates into

- weights ``N_k / n`` with ``N_k = sum_i r_ik``;
- locations ``sum_i r_ik E[u_ik] x_i / sum_i r_ik E[u_ik]``;
- scale matrices ``sum_i r_ik E[u_ik] (x_i - mu_k)(x_i - mu_k)^T / N_k`` (through
  the covariance strategy: the MAP estimate under the ``reg_covar`` prior, as for
  the Gaussian mixture, ``reg_covar / N_k`` added to the variances);
- degrees of freedom by the exact one-dimensional maximisation of
  :func:`emframe.inference.student_t.update_dof` (a root found by ``brentq``,
  clipped to ``[DOF_MIN, DOF_MAX]``).

So every iteration is an EM step and the observed-data likelihood never
decreases. The alternative ECME update (Liu & Rubin 1995), which maximises the
observed-data likelihood in ``nu`` directly, converges faster in ``nu`` but needs
the data inside the M-step; here the M-step is a function of additive statistics
only, which is what lets the engine fit in chunks, online or distributed.
"""

from __future__ import annotations

import copy
import dataclasses
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np
from emframe.models.mixtures.gaussian import GaussianMixtureModel, GaussianMixtureParams
from scipy.special import logsumexp

from emframe.core.mixture import MixtureModel
from emframe.core.numerics import log_normalize, safe_log
from emframe.core.params import Params, Stats
from emframe.core.validation import check_scalar
from emframe.inference.gaussian import GaussianKernel, GaussianMoments
from emframe.inference.gaussian.far import far_log_mahalanobis
from emframe.inference.student_t import (
    expected_weights,
    far_log_expected_weights,
    far_t_log_density,
    t_log_density,
    update_dof,
    weight_gap,
)

#: Rows per block of the E-step: its (rows, K) temporaries then stay in cache.
_BLOCK = 4096

__all__ = [
    "NoisyStudentTMixtureParams",
    "StudentTMixtureModel",
    "StudentTMixtureParams",
    "StudentTStats",
    "check_dof",
]


@dataclasses.dataclass(frozen=True)
class StudentTMixtureParams(Params):
    """Parameters of a mixture of K multivariate t distributions in d dimensions.

    Attributes
    ----------
    weights : ndarray of shape (K,)
        Mixing weights, summing to one.
    means : ndarray of shape (K, d)
        Locations (the means when ``dof > 1``).
    covariances : ndarray
        Scale matrices, shaped by the covariance type as for the Gaussian
        mixture: (K, d, d) full, (d, d) tied, (K, d) diag, (K,) spherical. The
        covariance of component k is ``dof_k / (dof_k - 2)`` times its scale
        matrix when ``dof_k > 2``.
    precisions_cholesky : ndarray
        Cholesky factors of the inverse scale matrices, same shape.
    dof : ndarray of shape (K,)
        Degrees of freedom, positive.
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray
    dof: np.ndarray


@dataclasses.dataclass(frozen=True)
class NoisyStudentTMixtureParams(StudentTMixtureParams):
    """t mixture parameters plus the weight of a uniform noise component.

    ``weights`` are the component weights given that a point is not noise (they sum
    to one); see :mod:`emframe.models.mixtures.noise`.
    """

    noise_weight: float


@dataclasses.dataclass(frozen=True)
class StudentTStats(Stats):
    """Additive statistics of a t mixture.

    Attributes
    ----------
    moments : GaussianMoments
        Moments of the data weighted by ``r_ik E[u_ik]`` (times sample weights).
    nk : ndarray of shape (K,)
        ``sum_i r_ik``.
    gap : ndarray of shape (K,)
        ``sum_i r_ik (E[log u_ik] - E[u_ik] + 1)``, never positive; it drives the
        degrees of freedom (see :func:`emframe.inference.student_t.update_dof`).
    """

    moments: GaussianMoments
    nk: np.ndarray
    gap: np.ndarray


def check_dof(dof: Any, n_components: int, name: str = "dof_init") -> np.ndarray:
    """Validate degrees of freedom: a scalar or one per component, positive and finite.

    Returns
    -------
    ndarray of shape (n_components,)
        A new array.
    """
    if isinstance(dof, (bool, np.bool_)):
        raise TypeError(f"{name} must be a number or an array of numbers, got {dof!r}")
    try:
        arr = np.array(dof, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number or an array of numbers, got {dof!r}") from None
    if arr.ndim == 0:
        arr = np.full(n_components, float(arr))
    if arr.shape != (n_components,):
        raise ValueError(
            f"{name} must be a scalar or have shape ({n_components},) (one value per "
            f"component), got shape {arr.shape}"
        )
    bad = ~(arr > 0) | ~np.isfinite(arr)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be positive and finite (degrees of freedom of the t components); "
            f"component {k} has {arr[k]}"
        )
    return arr


class StudentTMixtureModel(MixtureModel[StudentTMixtureParams, StudentTStats]):
    """Mixture of multivariate t distributions as a pure EM model.

    Parameters
    ----------
    n_components : int
    covariance_type : {"full", "tied", "diag", "spherical"}
        Structure of the scale matrices.
    reg_covar : float
        Scale of the prior on the scale matrices, exactly as in the Gaussian
        mixture (:meth:`log_prior` is its log density, monitored by the engine):
        strength ``lambda = reg_covar * prior_size / m`` per matrix.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}
    weights_init, means_init, precisions_init : array-like, optional
        As for :class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`;
        ``precisions_init`` are inverse scale matrices.
    dof_init : float or array-like of shape (n_components,)
        Initial degrees of freedom.
    prior_size : float, optional
        Size of the training data the prior is attached to, as for the Gaussian
        mixture (None: ``lambda = reg_covar``).

    Notes
    -----
    Initial weights, locations and scale matrices are the Gaussian mixture's
    (one M-step on the ``init_params`` responsibilities, then the given arrays).
    """

    def __init__(
        self,
        n_components: int,
        covariance_type: str = "full",
        reg_covar: float = 1e-6,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        dof_init: Any = 10.0,
        prior_size: float | None = None,
    ) -> None:
        self.gaussian = GaussianMixtureModel(
            n_components, covariance_type, reg_covar, init_params, weights_init, means_init,
            precisions_init, prior_size,
        )
        self.n_components = self.gaussian.n_components
        self.strategy = self.gaussian.strategy
        self.reg_covar = self.gaussian.reg_covar
        self.dof_init = check_dof(dof_init, self.n_components)
        self.param_constraints = {
            "weights": "simplex",
            "means": "real",
            "covariances": self.strategy.constraint,
            "dof": "positive",
        }

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    # -- the Gaussian part's prior on the scale matrices ---------------------------
    @property
    def prior_size(self) -> float | None:  # type: ignore[override]
        return self.gaussian.prior_size

    @property
    def scales_prior_with_data(self) -> bool:
        return True

    def with_prior_size(self, prior_size: float | None) -> StudentTMixtureModel:
        """A copy whose prior is attached to ``prior_size`` samples (see ``EMModel``)."""
        model = copy.copy(self)
        model.gaussian = self.gaussian.with_prior_size(prior_size)
        return model

    def data_warnings(self, X: Any) -> list[Warning]:
        """The scale prior's warnings, as the Gaussian mixture's (``EMModel.data_warnings``)."""
        return self.gaussian.data_warnings(X)

    def check_init(self, n_features: int) -> dict[str, np.ndarray]:
        """Validate the given initial arrays against ``n_features`` (see the Gaussian model)."""
        return self.gaussian.check_init(n_features)

    def initialize(self, X: Any, rng: np.random.Generator) -> StudentTMixtureParams:
        """The Gaussian mixture's initial parameters, with ``dof_init``."""
        g = self.gaussian.initialize(X, rng)
        return StudentTMixtureParams(
            g.weights, g.means, g.covariances, g.precisions_cholesky, self.dof_init
        )

    def _as_gaussian(self, params: StudentTMixtureParams) -> GaussianMixtureParams:
        return GaussianMixtureParams(
            params.weights, params.means, params.covariances, params.precisions_cholesky
        )

    # -- densities -----------------------------------------------------------------
    def mahalanobis(
        self, params: StudentTMixtureParams, X: np.ndarray
    ) -> tuple[GaussianKernel, np.ndarray]:
        """The Gaussian kernel of the scale matrices and the squared distances (n, K).

        The kernel scores ``const_k - m_ik / 2`` in a few matrix products; the
        distances are recovered from it (clipped at 0 against rounding).
        """
        kernel = GaussianKernel(self.strategy, params.means, params.precisions_cholesky)
        return kernel, self._maha(kernel, X)

    @staticmethod
    def _maha(kernel: GaussianKernel, X: np.ndarray) -> np.ndarray:
        maha = kernel.log_prob(X)
        np.subtract(kernel.const, maha, out=maha)
        maha *= 2.0
        np.maximum(maha, 0.0, out=maha)
        return maha

    def _log_density(self, params: StudentTMixtureParams, maha: np.ndarray) -> np.ndarray:
        K, d = np.shape(params.means)
        log_det = self.strategy.log_det_cholesky(params.precisions_cholesky, K, d)
        return t_log_density(maha, log_det, params.dof, d)

    def _far(self, params: StudentTMixtureParams, X: np.ndarray, maha: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray]:
        """Rows whose squared distances overflowed, and the logarithms of those distances."""
        far = ~np.isfinite(maha).all(axis=1)
        log_maha = far_log_mahalanobis(self.strategy, params.means,
                                       params.precisions_cholesky, X[far])
        return far, log_maha

    def log_weighted_prob(self, params: StudentTMixtureParams, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        _, maha = self.mahalanobis(params, X)
        out = safe_log(params.weights) + self._log_density(params, maha)
        far, log_maha = self._far(params, X, maha)
        if far.any():  # t densities decay like a power: far out they are still defined
            K, d = np.shape(params.means)
            log_det = self.strategy.log_det_cholesky(params.precisions_cholesky, K, d)
            out[far] = safe_log(params.weights) + far_t_log_density(log_maha, log_det,
                                                                     params.dof, d)
        return out

    def expected_weight(self, params: StudentTMixtureParams, X: Any) -> np.ndarray:
        """``E[u | x] = sum_k P(k | x) E[u | x, k]``, the weight of each row in the M-step (n,)."""
        return np.exp(self.log_expected_weight(params, X))

    def log_expected_weight(self, params: StudentTMixtureParams, X: Any) -> np.ndarray:
        """``log E[u | x]`` (n,), finite also where ``E[u | x]`` underflows far out."""
        X = np.asarray(X, dtype=float)
        _, maha = self.mahalanobis(params, X)
        log_resp, _ = log_normalize(self.log_weighted_prob(params, X), axis=1)
        with np.errstate(divide="ignore"):
            log_eu = np.log(expected_weights(maha, params.dof, X.shape[1]))
        far, log_maha = self._far(params, X, maha)
        log_eu[far] = far_log_expected_weights(log_maha, params.dof, X.shape[1])
        return logsumexp(log_resp + log_eu, axis=1)

    # -- EM ------------------------------------------------------------------------
    def e_step(
        self,
        params: StudentTMixtureParams,
        X: Any,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[StudentTStats, float]:
        """Responsibilities, expected precision weights and their statistics, in one pass.

        Returns
        -------
        stats : StudentTStats
            The moments are referenced at a point fixed by ``params``, so the
            statistics of chunks scored with the same parameters add exactly.
        log_likelihood : float
            Total (weighted) log-likelihood of ``X``.
        """
        X = np.asarray(X, dtype=float)
        n, d = X.shape
        kernel = GaussianKernel(self.strategy, params.means, params.precisions_cholesky)
        log_w = safe_log(params.weights)
        K = log_w.shape[0]
        moments = None
        nk, gap, loglik = np.zeros(K), np.zeros(K), 0.0
        # rows in blocks, so that the (rows, K) temporaries stay in cache
        for s in range(0, max(n, 1), _BLOCK):
            xb = X[s : s + _BLOCK]
            maha = self._maha(kernel, xb)
            resp, log_norm = _posteriors(log_w + self._log_density(params, maha))
            if sample_weight is None:
                loglik += float(log_norm.sum())
            else:
                wb = sample_weight[s : s + _BLOCK]
                resp *= wb[:, None]
                loglik += float(wb @ log_norm)
            part = kernel.moments(xb, resp * expected_weights(maha, params.dof, d))
            moments = part if moments is None else moments + part
            nk += resp.sum(axis=0)
            gap += np.einsum("ik,ik->k", resp, weight_gap(maha, params.dof, d))
        return StudentTStats(moments, nk, gap), loglik

    def stats_from_resp(self, X: Any, resp: np.ndarray) -> StudentTStats:
        raise NotImplementedError(
            "the statistics of a t mixture depend on the parameters through the expected "
            "precision weights E[u]; use e_step(params, X)"
        )

    def m_step(self, stats: StudentTStats) -> StudentTMixtureParams:
        return self.constrained_m_step(stats, {})

    def scale_matrices(self, stats: StudentTStats, means: np.ndarray) -> np.ndarray:
        """``sum_i r_ik E[u_ik] (x_i - mu_k)(x_i - mu_k)^T / N_k`` by the covariance strategy.

        The moments weighted by ``r E[u]`` are moved to ``means`` and given the
        counts ``N_k = sum_i r_ik``: the strategy divides by those, and so gives
        the t M-step (also the tied one, ``sum_k S_k / n``) with its regularisation.
        """
        counted = self._counted(stats.moments.shifted(means), stats.nk)
        lam = self.gaussian.prior_strength(self.n_components)
        return self.strategy.covariances(counted, lam, about=means)

    @staticmethod
    def _counted(moments: GaussianMoments, nk: np.ndarray) -> GaussianMoments:
        """``moments`` with the responsibility totals ``nk`` as their counts.

        Only for dividing: shifting needs the true weights of the moments.
        """
        return type(moments)(nk, moments.ref, moments.sum_x, moments.sum_xx)

    def constrained_m_step(
        self, stats: StudentTStats, fixed: Mapping[str, Any]
    ) -> StudentTMixtureParams:
        """The exact M-step with the parameters in ``fixed`` held at their values.

        With frozen locations the scale matrices are centred at them (the
        conditional maximiser). ``covariances`` and ``precisions_cholesky``
        describe the same thing: freezing either freezes both.
        """
        if "weights" in fixed:
            weights = fixed["weights"]
        else:
            nk = self._counted(stats.moments, stats.nk).nk_eff  # floored as in the Gaussian
            weights = nk / nk.sum()
        means = fixed["means"] if "means" in fixed else stats.moments.means()
        cov, pc = self.gaussian.covariances_and_factors(
            fixed, lambda: self.scale_matrices(stats, np.asarray(means))
        )
        dof = fixed["dof"] if "dof" in fixed else update_dof(stats.gap, stats.nk)
        return StudentTMixtureParams(weights, means, cov, pc, dof)

    def log_prior(self, params: StudentTMixtureParams) -> float:
        """The Gaussian mixture's prior on the same scale matrices (``reg_covar``)."""
        return float(self.gaussian.log_prior(self._as_gaussian(params)))

    def complete_params(
        self, like: StudentTMixtureParams, values: Mapping[str, Any]
    ) -> StudentTMixtureParams:
        """``like`` with extrapolated ``values``; the precision factors follow the scales."""
        return self.gaussian.complete_params(like, values)  # type: ignore[return-value]

    # -- sampling and checks ---------------------------------------------------------
    def sample_components(
        self, params: StudentTMixtureParams, labels: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """One draw from component ``labels[i]`` for each i: ``mu + z / sqrt(u)``."""
        d = params.means.shape[1]
        out = np.empty((len(labels), d))
        for k in np.unique(labels):
            rows = labels == k
            m = int(rows.sum())
            z = self.strategy.sample_noise(
                params.precisions_cholesky, int(k), rng.standard_normal((m, d))
            )
            nu = float(params.dof[k])
            u = rng.gamma(0.5 * nu, 2.0 / nu, size=m)
            out[rows] = params.means[k] + z / np.sqrt(u)[:, None]
        return out

    def check_params(self, params: StudentTMixtureParams) -> None:
        """The Gaussian mixture's checks, and positive finite degrees of freedom."""
        self.gaussian.check_params(self._as_gaussian(params))
        dof = np.asarray(params.dof)
        if dof.shape != (self.n_components,):
            raise ValueError(f"dof must have shape ({self.n_components},), got {dof.shape}")
        if not (np.all(np.isfinite(dof)) and np.all(dof > 0)):
            raise ValueError(f"dof must be positive and finite, got {dof}")

    def n_features_of(self, params: StudentTMixtureParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return int(np.shape(params.means)[-1])

    def n_parameters(self, params: StudentTMixtureParams) -> int:
        return int(self.gaussian.n_parameters(self._as_gaussian(params)) + self.n_components)


def _posteriors(lwp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``lwp`` (n, K) normalised in place to posteriors, and their log-sum-exp (n,).

    The same shifted-exponential normalisation as scipy's ``logsumexp``, without its
    overhead (it was half the cost of the E-step). Every row has a finite entry,
    since t densities are positive and some weight is.
    """
    mx = lwp.max(axis=1, keepdims=True)
    np.subtract(lwp, mx, out=lwp)
    np.exp(lwp, out=lwp)
    tot = lwp.sum(axis=1, keepdims=True)
    lwp /= tot
    return lwp, (mx + np.log(tot))[:, 0]


def _check_n_samples(n: int, n_components: int) -> None:
    check_scalar(n_components, "n_components", numbers.Integral, min_value=1)
    if n < n_components:
        raise ValueError(
            f"Expected n_samples >= n_components, but got n_samples = {n}, "
            f"n_components = {n_components}"
        )
