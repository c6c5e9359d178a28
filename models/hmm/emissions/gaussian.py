"""Gaussian emissions, with every covariance structure of the Gaussian kernel."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions._missing import (
    component_conditionals,
    incomplete_moments,
    incomplete_rows,
    mean_imputed,
    mixture_impute,
    sample_from_conditionals,
)
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_precisions,
    _check_shape,
    _take_states,
    kmeanspp_centres,
)

from emframe.core.params import Params
from emframe.core.validation import (
    check_array,
    check_magnitude,
    check_prior_size,
    check_scalar,
)
from emframe.inference.gaussian import (
    CovariancePrior,
    CovarianceStrategy,
    GaussianKernel,
    GaussianMoments,
    gaussian_moments,
    get_covariance_strategy,
)
from emframe.inference.gaussian.conditional import GaussianConditionals
from emframe.inference.hmm import diag_gaussian_e_step

__all__ = ["GaussianEmission", "GaussianParams", "StateCovariances"]


# ----------------------------------------------------------------------------------------
# Gaussian
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GaussianParams(Params):
    """Gaussian emission parameters (shapes as in hmmlearn's ``covars_`` setter).

    Attributes
    ----------
    means : ndarray of shape (n_components, n_features)
    covars : ndarray
        (K,) spherical, (K, d) diag, (K, d, d) full or (d, d) tied.
    precisions_cholesky : ndarray, same shape as ``covars``
        Derived from ``covars`` (see :mod:`emframe.inference.gaussian`), so scoring needs no
        inverse.
    """

    means: np.ndarray
    covars: np.ndarray
    precisions_cholesky: np.ndarray


def _data_covariance(
    X: np.ndarray, strategy: CovarianceStrategy, reg_covar: float, n: int
) -> np.ndarray:
    """Covariance of all of ``X`` in the strategy's shape for ``n`` components (each the same)."""
    one = strategy.covariances(
        gaussian_moments(X, np.ones((X.shape[0], 1)), strategy), reg_covar
    )
    target = strategy.shape(n, X.shape[1])
    # Tied covariances are shared already; per-component ones are repeated.
    return one.copy() if one.shape == target else np.repeat(one, n, axis=0)


class StateCovariances(CovariancePrior):
    """The covariances of an emission with one Gaussian noise per state (Gaussian, autoregressive).

    The subclass sets ``strategy``, ``reg_covar`` and ``prior_size``; its parameters
    have the fields ``covars`` and ``precisions_cholesky`` in the strategy's shape and
    the (n_components, n_features) field named by ``_width_field``.
    """

    _width_field: ClassVar[str]

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    def complete_params(self, params: Any, values: Mapping[str, Any]) -> Any:
        out = params.replace(**values)
        if "covars" in values and "precisions_cholesky" not in values:
            out = out.replace(
                precisions_cholesky=self.strategy.precisions_cholesky(out.covars, self.reg_covar)
            )
        return out

    def log_prior(self, params: Any) -> float:
        k, d = np.shape(getattr(params, self._width_field))
        return self.strategy.log_prior(params.precisions_cholesky, self.prior_strength(k), d)

    def _check_covars(self, params: Any, n_components: int, d: int) -> None:
        """Check ``covars`` and their precision factors for ``n_components`` states in ``d``-D.

        Parameters
        ----------
        params : Params
        n_components : int
        d : int

        Raises
        ------
        ValueError
            On a wrong shape, an invalid covariance or a numerically singular one.
        """
        self.strategy.check_covariances(params.covars, n_components, d, name="covars_")
        _check_shape(
            np.asarray(params.precisions_cholesky), self.strategy.shape(n_components, d),
            "precisions_cholesky",
        )
        _check_precisions(self.strategy, params.precisions_cholesky, "a covariance in covars_")


class GaussianEmission(StateCovariances, Emission):
    """Multivariate Gaussian emissions with a covariance structure per state.

    The covariance type is a strategy object from :mod:`emframe.inference.gaussian`, which
    also supplies the fast log-density/moment kernel and the M-step.

    Missing entries (NaN) are supported: a step's log-likelihood is the density of its
    observed entries (1 if it has none), and its statistics hold the conditional
    moments of the missing entries given the observed ones and the state, so Baum-Welch
    stays exact for the observed-data likelihood. Complete steps take the fast kernel,
    so on complete data nothing changes.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}, default "diag"
    reg_covar : float, default 1e-6
        Scale of the prior ``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` on
        each of the m state covariances (m = K, or 1 when tied), which keeps them
        positive definite, with ``lambda = reg_covar * prior_size / m``
        (:class:`~emframe.inference.gaussian.CovariancePrior`). The M-step is
        its exact MAP estimate (``lambda / N_k`` added to the maximum-likelihood
        variances of a state with occupancy ``N_k``: about ``reg_covar`` for balanced
        states) and :meth:`log_prior` its log density, so EM increases the penalised
        log-likelihood. 0 gives maximum likelihood (hmmlearn's update with
        ``covars_prior=0``, ``covars_weight=1``).
    prior_size : float, optional
        Time steps of the training data the prior is attached to (set by the
        estimators); None gives ``lambda = reg_covar``.
    """

    letters: ClassVar[Mapping[str, str]] = {"m": "means", "c": "covars"}
    attributes: ClassVar[Mapping[str, str]] = {"means": "means_", "covars": "covars_"}
    supports_missing: ClassVar[bool] = True
    _width_field = "means"

    def __init__(
        self, covariance_type: str = "diag", reg_covar: float = 1e-6,
        prior_size: float | None = None,
    ) -> None:
        self.strategy = get_covariance_strategy(covariance_type)
        self.reg_covar = float(check_scalar(reg_covar, "reg_covar", numbers.Real, min_value=0.0))
        self.prior_size = check_prior_size(prior_size)
        self.param_constraints = {"means": "real", "covars": self.strategy.constraint}
        self._cache: tuple[Params, GaussianKernel] | None = None
        self._cond_cache: tuple[Params, np.ndarray, list[GaussianConditionals]] | None = None

    def _kernel(self, params: GaussianParams) -> GaussianKernel:
        # The E-step scores and then accumulates with the same parameters: build once.
        cache = self._cache
        if cache is not None and cache[0] is params:
            return cache[1]
        kernel = GaussianKernel(self.strategy, params.means, params.precisions_cholesky)
        self._cache = (params, kernel)
        return kernel

    def check_X(self, X: Any) -> np.ndarray:
        return check_array(X, allow_nan=True)

    def _conditionals(
        self, params: GaussianParams, X: np.ndarray, incomplete: np.ndarray, *, reuse: bool
    ) -> list[GaussianConditionals]:
        """Conditionals of the incomplete rows of ``X`` under every state.

        An E-step scores (``reuse=False``: always computed, then kept) and accumulates
        (``reuse=True``: taken over if computed for the same arrays, then dropped) with
        the same parameters, so they are computed once per E-step; data modified
        between two calls are never served stale.
        """
        cache, self._cond_cache = self._cond_cache, None
        if reuse and cache is not None and cache[0] is params and cache[1] is X:
            return cache[2]
        X_inc = X if incomplete.all() else X[incomplete]
        conds = component_conditionals(
            self.strategy, params.means, params.precisions_cholesky, X_inc
        )
        if not reuse:
            self._cond_cache = (params, X, conds)
        return conds

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> GaussianParams:
        # k-means++ and the data covariance need complete rows: start from mean imputation.
        X = mean_imputed(check_magnitude(X))
        means = kmeanspp_centres(X, n_components, rng)
        lam = self.for_sample(len(X)).prior_strength(1)  # one covariance of the sample
        covars = _data_covariance(X, self.strategy, lam, n_components)
        pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        return GaussianParams(means, covars, pc)

    def log_likelihood(self, params: GaussianParams, X: np.ndarray) -> np.ndarray:
        incomplete = incomplete_rows(X)
        if incomplete is None:
            return self._kernel(params).log_prob(X)
        out = np.empty((X.shape[0], params.means.shape[0]))
        if not incomplete.all():
            out[~incomplete] = self._kernel(params).log_prob(X[~incomplete])
        conds = self._conditionals(params, X, incomplete, reuse=False)
        out[incomplete] = np.column_stack([c.log_pdf for c in conds])
        return out

    def statistics(
        self, params: GaussianParams, X: np.ndarray, posteriors: np.ndarray
    ) -> GaussianMoments:
        incomplete = incomplete_rows(X)
        if incomplete is None:
            # Moments about a point fixed by params: chunks scored with the same params
            # add exactly.
            return self._kernel(params).moments(X, posteriors)
        conds = self._conditionals(params, X, incomplete, reuse=True)
        # a step with nothing observed carries no information about the emissions
        informative = conds[0].patterns.n_observed > 0
        resp = posteriors[incomplete] * informative[:, None]
        stats = incomplete_moments(self.strategy, params.means, conds, resp)
        if not incomplete.all():
            done = ~incomplete
            stats = self._kernel(params).moments(X[done], posteriors[done]) + stats
        return stats

    def fused_e_step(
        self, params: GaussianParams, X: np.ndarray, startprob: np.ndarray,
        transmat: np.ndarray, lengths: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, GaussianMoments, np.ndarray, np.ndarray] | None:
        """Compiled E-step for diagonal and spherical covariances.

        Moments are referenced at the states' means (see
        :func:`emframe.inference.hmm.diag_gaussian_e_step`); other covariance types
        return None (the reference path). A sequence with a missing entry (NaN) fails
        in the compiled pass (its scores are NaN) and is recomputed by the reference
        path, which marginalises the missing entries: no separate scan for NaN.
        """
        name = self.strategy.name
        if name not in ("diag", "spherical"):
            return None
        means = np.asarray(params.means, dtype=float)
        pc = np.asarray(params.precisions_cholesky, dtype=float)
        if name == "spherical":
            pc = np.repeat(pc[:, None], means.shape[1], axis=1)
        res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
        if res is None:
            return None
        sum_xx = res.sum_xx if name == "diag" else res.sum_xx.sum(axis=1)
        stats = self.strategy.moments(res.nk, means.copy(), res.sum_x, sum_xx)
        return res.start_counts, res.trans_counts, stats, res.seq_log_likelihood, res.failed

    def impute(
        self, params: GaussianParams, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        conds = component_conditionals(
            self.strategy, params.means, params.precisions_cholesky, X
        )
        return mixture_impute(conds, posteriors, X)

    def sample_missing(
        self, params: GaussianParams, X: np.ndarray, states: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        conds = component_conditionals(
            self.strategy, params.means, params.precisions_cholesky, X
        )
        return sample_from_conditionals(conds, states, X, rng)

    def m_step(self, stats: GaussianMoments) -> GaussianParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(
        self, stats: GaussianMoments, fixed: Mapping[str, Any]
    ) -> GaussianParams:
        # With frozen means the covariances are centred at them: the exact conditional maximiser.
        frozen_means = fixed.get("means")
        means = stats.means() if frozen_means is None else frozen_means
        if "covars" in fixed:
            covars = fixed["covars"]
        else:
            lam = self.prior_strength(stats.nk.shape[0])
            covars = self.strategy.covariances(stats, lam, about=frozen_means)
        pc = fixed.get("precisions_cholesky")
        if pc is None or "covars" not in fixed:
            pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        return GaussianParams(means, covars, pc)

    def check_params(self, params: GaussianParams, n_components: int) -> None:
        means = np.asarray(params.means)
        if means.ndim != 2 or means.shape[0] != n_components:
            raise ValueError(
                f"means_ must have shape (n_components={n_components}, n_features), "
                f"got {means.shape}"
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means_ has non-finite values")
        self._check_covars(params, n_components, means.shape[1])

    def permute_states(self, params: GaussianParams, order: np.ndarray) -> GaussianParams:
        shared = self.strategy.name == "tied"  # one covariance for all states
        fields = ("means",) if shared else ("means", "covars", "precisions_cholesky")
        return _take_states(params, order, fields)

    def n_features_of(self, params: GaussianParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return int(np.shape(params.means)[-1])

    def n_parameters(self, params: GaussianParams, frozen: Collection[str] = ()) -> int:
        k, d = params.means.shape
        n = 0 if "means" in frozen else k * d
        return n + (0 if "covars" in frozen else self.strategy.n_parameters(k, d))

    def sample(
        self, params: GaussianParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        d = params.means.shape[1]
        z = rng.standard_normal((states.shape[0], d))
        out = params.means[states].copy()
        for k in np.unique(states):
            rows = states == k
            out[rows] += self.strategy.sample_noise(params.precisions_cholesky, int(k), z[rows])
        return out

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        if field == "covars":
            return self.strategy.check_covariances(value, n_components, n_features, "covars_")
        arr = super().from_attribute(field, value, n_components, n_features)
        _check_shape(arr, (n_components, n_features), "means_")
        return arr


