"""A Gaussian mixture per state (GMM-HMM emissions)."""

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
    _check_stochastic_rows,
    _take_states,
    kmeanspp_centres,
)
from emframe.models.hmm.emissions.gaussian import _data_covariance
from emframe.models.mixtures.gaussian import GaussianMixtureModel, GaussianMixtureParams
from scipy.special import logsumexp

from emframe.core.numerics import log_normalize
from emframe.core.params import Params, Stats
from emframe.core.validation import (
    check_array,
    check_magnitude,
    check_prior_size,
    check_scalar,
)
from emframe.inference.gaussian import (
    CovariancePrior,
    GaussianKernel,
    GaussianMoments,
)
from emframe.inference.gaussian.conditional import GaussianConditionals, missing_patterns

__all__ = ["GMMEmission", "GMMParams", "GMMStats"]


# ----------------------------------------------------------------------------------------
# Gaussian mixture per state
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GMMParams(Params):
    """Parameters of a Gaussian mixture in every state (hmmlearn's GMMHMM shapes).

    Attributes
    ----------
    weights : ndarray of shape (n_components, n_mix)
    means : ndarray of shape (n_components, n_mix, n_features)
    covars : ndarray
        (K, M) spherical, (K, M, d) diag, (K, M, d, d) full, (K, d, d) tied (one
        matrix shared by the mixture components of a state).
    precisions_cholesky : ndarray, same shape as ``covars`` (derived)
    """

    weights: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    precisions_cholesky: np.ndarray


@dataclasses.dataclass(frozen=True)
class GMMStats(Stats):
    """One :class:`~emframe.inference.gaussian.GaussianMoments` per state (its mixture's)."""

    states: tuple[GaussianMoments, ...]


class GMMEmission(CovariancePrior, Emission):
    """A Gaussian mixture of ``n_mix`` components in every state.

    Each state is a :class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`
    whose responsibilities are multiplied by the state posteriors; its statistics
    and its M-step are reused unchanged.

    Missing entries (NaN) are supported as in
    :class:`~emframe.models.hmm.emissions.GaussianEmission`: every mixture component
    marginalises them in the log-likelihood, and its statistics hold their conditional
    moments, weighted by the joint posterior of the state and the component.

    Parameters
    ----------
    n_mix : int
        Mixture components per state.
    covariance_type : {"full", "diag", "spherical", "tied"}, default "diag"
    reg_covar : float, default 1e-6
        Scale of the covariance prior of
        :class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`, on every
        covariance matrix of every state (one per state when tied), of strength
        ``lambda = reg_covar * prior_size / m`` with m = K * n_mix matrices (K when
        tied): each state's mixture has its prior attached to ``prior_size / K``
        steps. The M-step is its exact MAP estimate and :meth:`log_prior` sums its
        log density over the states. 0 gives maximum likelihood.
    prior_size : float, optional
        Time steps of the training data the prior is attached to (set by the
        estimators); None gives ``lambda = reg_covar``.
    """

    letters: ClassVar[Mapping[str, str]] = {"w": "weights", "m": "means", "c": "covars"}
    supports_missing: ClassVar[bool] = True
    attributes: ClassVar[Mapping[str, str]] = {
        "weights": "weights_", "means": "means_", "covars": "covars_"
    }

    def __init__(
        self, n_mix: int, covariance_type: str = "diag", reg_covar: float = 1e-6,
        prior_size: float | None = None,
    ) -> None:
        self.n_mix = int(check_scalar(n_mix, "n_mix", numbers.Integral, min_value=1))
        self.mixture = GaussianMixtureModel(self.n_mix, covariance_type, reg_covar)
        self.strategy = self.mixture.strategy
        self.reg_covar = self.mixture.reg_covar
        self.prior_size = check_prior_size(prior_size)
        self.param_constraints = {
            "weights": "simplex", "means": "real", "covars": self.strategy.constraint
        }
        self._cache: tuple[Params, list[GaussianKernel]] | None = None
        self._cond_cache: tuple[Params, np.ndarray, list[np.ndarray], list] | None = None

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    def state_mixture(self, n_components: int) -> GaussianMixtureModel:
        """The mixture model of each of ``n_components`` states.

        Its prior is attached to the state's share ``prior_size / n_components`` of the
        steps, so each of its matrices has ``lambda = reg_covar * prior_size / m``.
        """
        if self.prior_size is None:
            return self.mixture
        return self.mixture.with_prior_size(self.prior_size / n_components)

    def state_params(self, params: GMMParams, k: int) -> GaussianMixtureParams:
        """The mixture parameters of state ``k``."""
        return GaussianMixtureParams(
            params.weights[k], params.means[k], params.covars[k], params.precisions_cholesky[k]
        )

    def _kernels(self, params: GMMParams) -> list[GaussianKernel]:
        cache = self._cache
        if cache is not None and cache[0] is params:
            return cache[1]
        kernels = [
            GaussianKernel(self.strategy, params.means[k], params.precisions_cholesky[k],
                           weights=params.weights[k])
            for k in range(params.weights.shape[0])
        ]
        self._cache = (params, kernels)
        return kernels

    def check_X(self, X: Any) -> np.ndarray:
        return check_array(X, allow_nan=True)

    def _state_conditionals(
        self, params: GMMParams, X: np.ndarray
    ) -> list[list[GaussianConditionals]]:
        """Conditionals of the rows of ``X`` under every mixture component of every state."""
        patterns = missing_patterns(X)
        return [
            component_conditionals(
                self.strategy, params.means[k], params.precisions_cholesky[k], X, patterns
            )
            for k in range(params.weights.shape[0])
        ]

    def _incomplete(
        self, params: GMMParams, X: np.ndarray, incomplete: np.ndarray, *, reuse: bool
    ) -> tuple[list[np.ndarray], list[list[GaussianConditionals]]]:
        """Per state: ``log w_m + log p_m(observed entries)`` (n_inc, M), and the conditionals.

        Computed once per E-step, as in the Gaussian emission (see its ``_conditionals``).
        """
        cache, self._cond_cache = self._cond_cache, None
        if reuse and cache is not None and cache[0] is params and cache[1] is X:
            return cache[2], cache[3]
        X_inc = X if incomplete.all() else X[incomplete]
        conds = self._state_conditionals(params, X_inc)
        with np.errstate(divide="ignore"):
            log_w = np.log(params.weights)
        joint = [np.column_stack([c.log_pdf for c in ck]) + log_w[k] for k, ck in enumerate(conds)]
        if not reuse:
            self._cond_cache = (params, X, joint, conds)
        return joint, conds

    def initialize(self, X: np.ndarray, n_components: int, rng: np.random.Generator) -> GMMParams:
        X = mean_imputed(check_magnitude(X))  # k-means++ and the data covariance need complete rows
        m, d = self.n_mix, X.shape[1]
        means = kmeanspp_centres(X, n_components * m, rng).reshape(n_components, m, d)
        lam = self.for_sample(len(X)).prior_strength(1)  # one covariance of the sample
        one = _data_covariance(X, self.strategy, lam, m)
        covars = np.repeat(one[None], n_components, axis=0)
        weights = np.full((n_components, m), 1.0 / m)
        return self.complete_params(GMMParams(weights, means, covars, covars), {"covars": covars})

    def log_likelihood(self, params: GMMParams, X: np.ndarray) -> np.ndarray:
        incomplete = incomplete_rows(X)
        if incomplete is None:
            return np.stack(
                [logsumexp(kern.log_prob(X), axis=1) for kern in self._kernels(params)], axis=1
            )
        out = np.empty((X.shape[0], params.weights.shape[0]))
        if not incomplete.all():
            out[~incomplete] = self.log_likelihood(params, X[~incomplete])
        joint, _ = self._incomplete(params, X, incomplete, reuse=False)
        out[incomplete] = np.column_stack([logsumexp(j, axis=1) for j in joint])
        return out

    def statistics(
        self, params: GMMParams, X: np.ndarray, posteriors: np.ndarray
    ) -> GMMStats:
        incomplete = incomplete_rows(X)
        if incomplete is None:
            return self._complete_statistics(params, X, posteriors)
        joint, conds = self._incomplete(params, X, incomplete, reuse=True)
        # a step with nothing observed carries no information about the emissions
        informative = conds[0][0].patterns.n_observed > 0
        post = posteriors[incomplete] * informative[:, None]
        out = []
        for k, ck in enumerate(conds):
            resp = np.exp(log_normalize(joint[k], axis=1)[0]) * post[:, k : k + 1]
            out.append(incomplete_moments(self.strategy, params.means[k], ck, resp))
        stats = GMMStats(tuple(out))
        if not incomplete.all():
            done = ~incomplete
            stats = self._complete_statistics(params, X[done], posteriors[done]) + stats
        return stats

    def _complete_statistics(
        self, params: GMMParams, X: np.ndarray, posteriors: np.ndarray
    ) -> GMMStats:
        out = []
        for k, kern in enumerate(self._kernels(params)):
            log_resp, _ = log_normalize(kern.log_prob(X), axis=1)
            # Joint posterior of (state k, mixture component m) at every step.
            resp = np.exp(log_resp) * posteriors[:, k : k + 1]
            out.append(kern.moments(X, resp))
        return GMMStats(tuple(out))

    def impute(
        self, params: GMMParams, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        joint, conds = self._incomplete(params, X, np.ones(X.shape[0], bool), reuse=False)
        self._cond_cache = None
        # weight of (state k, component m): p(k | all data) p(m | k, observed entries)
        weights = np.concatenate(
            [np.exp(log_normalize(j, axis=1)[0]) * posteriors[:, [k]] for k, j in enumerate(joint)],
            axis=1,
        )
        return mixture_impute([c for ck in conds for c in ck], weights, X)

    def sample_missing(
        self, params: GMMParams, X: np.ndarray, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        joint, conds = self._incomplete(params, X, np.ones(X.shape[0], bool), reuse=False)
        self._cond_cache = None
        m = self.n_mix
        # the mixture component given the state and the observed entries
        prob = np.exp(log_normalize(np.stack(joint, axis=1), axis=2)[0])  # (n, K, M)
        cum = np.cumsum(prob[np.arange(X.shape[0]), states], axis=-1)  # (n_draws, n, M)
        comp = (rng.random((*states.shape, 1)) > cum).sum(axis=-1)
        labels = states * m + np.minimum(comp, m - 1)
        return sample_from_conditionals([c for ck in conds for c in ck], labels, X, rng)

    def m_step(self, stats: GMMStats) -> GMMParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(self, stats: GMMStats, fixed: Mapping[str, Any]) -> GMMParams:
        names = {"weights": "weights", "means": "means", "covars": "covariances"}
        mixture = self.state_mixture(len(stats.states))
        states = [
            mixture.constrained_m_step(
                s, {names[f]: np.asarray(v)[k] for f, v in fixed.items() if f in names}
            )
            for k, s in enumerate(stats.states)
        ]
        return GMMParams(
            np.stack([s.weights for s in states]),
            np.stack([s.means for s in states]),
            np.stack([s.covariances for s in states]),
            np.stack([s.precisions_cholesky for s in states]),
        )

    def complete_params(self, params: GMMParams, values: Mapping[str, Any]) -> GMMParams:
        out = params.replace(**values)
        if "covars" in values and "precisions_cholesky" not in values:
            pc = np.stack(
                [self.strategy.precisions_cholesky(c, self.reg_covar) for c in out.covars]
            )
            out = out.replace(precisions_cholesky=pc)
        return out

    def log_prior(self, params: GMMParams) -> float:
        k_all = np.shape(params.weights)[0]
        mixture = self.state_mixture(k_all)
        return sum(mixture.log_prior(self.state_params(params, k)) for k in range(k_all))

    def check_params(self, params: GMMParams, n_components: int) -> None:
        w = np.asarray(params.weights)
        _check_shape(w, (n_components, self.n_mix), "weights_")
        _check_stochastic_rows(w, "weights_")
        means = np.asarray(params.means)
        if means.ndim != 3 or means.shape[:2] != (n_components, self.n_mix):
            raise ValueError(
                f"means_ must have shape (n_components={n_components}, n_mix={self.n_mix}, "
                f"n_features), got {means.shape}"
            )
        d = means.shape[2]
        for name in ("covars", "precisions_cholesky"):
            _check_shape(
                np.asarray(getattr(params, name)),
                (n_components, *self.strategy.shape(self.n_mix, d)), name,
            )
        for k in range(n_components):
            try:
                self.mixture.check_params(self.state_params(params, k))
                _check_precisions(self.strategy, params.precisions_cholesky[k], "a covariance")
            except ValueError as exc:
                raise ValueError(f"state {k}: {exc}") from None

    def permute_states(self, params: GMMParams, order: np.ndarray) -> GMMParams:
        # every field, "tied" included, holds one entry per state
        return _take_states(params, order, params.field_names())

    def n_features_of(self, params: GMMParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return int(np.shape(params.means)[-1])

    def n_parameters(self, params: GMMParams, frozen: Collection[str] = ()) -> int:
        k, m, d = params.means.shape
        n = 0 if "weights" in frozen else k * (m - 1)
        n += 0 if "means" in frozen else k * m * d
        return n + (0 if "covars" in frozen else k * self.strategy.n_parameters(m, d))

    def sample(
        self, params: GMMParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        out = np.empty((states.shape[0], params.means.shape[2]))
        for k in np.unique(states):
            rows = np.flatnonzero(states == k)
            labels = rng.choice(self.n_mix, size=rows.size, p=params.weights[k])
            out[rows] = self.mixture.sample_components(self.state_params(params, int(k)),
                                                       labels, rng)
        return out

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        m = self.n_mix
        if field == "covars":
            arr = np.array(value, dtype=float)
            _check_shape(arr, (n_components, *self.strategy.shape(m, n_features)), "covars_")
            for k in range(n_components):
                self.strategy.check_covariances(arr[k], m, n_features, f"covars_[{k}]")
            return arr
        arr = super().from_attribute(field, value, n_components, n_features)
        if field == "weights":
            _check_shape(arr, (n_components, m), "weights_")
            _check_stochastic_rows(arr, "weights_")
        else:
            _check_shape(arr, (n_components, m, n_features), "means_")
        return arr
