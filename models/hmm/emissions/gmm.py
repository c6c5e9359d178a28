"""A Gaussian mixture per state (GMM-HMM emissions)."""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_precisions,
    _check_shape,
    _check_stochastic_rows,
    kmeanspp_centres,
)
from emframe.models.hmm.emissions.gaussian import _data_covariance
from emframe.models.mixtures.gaussian import GaussianMixtureModel, GaussianMixtureParams
from scipy.special import logsumexp

from emframe.core.numerics import log_normalize
from emframe.core.params import Params, Stats
from emframe.core.validation import check_scalar
from emframe.inference.gaussian import (
    GaussianKernel,
    GaussianMoments,
)

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


class GMMEmission(Emission):
    """A Gaussian mixture of ``n_mix`` components in every state.

    Each state is a :class:`~emframe.models.mixtures.gaussian.GaussianMixtureModel`
    whose responsibilities are multiplied by the state posteriors; its statistics
    and its M-step are reused unchanged.

    Parameters
    ----------
    n_mix : int
        Mixture components per state.
    covariance_type : {"full", "diag", "spherical", "tied"}, default "diag"
    reg_covar : float, default 1e-6
    """

    letters: ClassVar[Mapping[str, str]] = {"w": "weights", "m": "means", "c": "covars"}
    attributes: ClassVar[Mapping[str, str]] = {
        "weights": "weights_", "means": "means_", "covars": "covars_"
    }

    def __init__(self, n_mix: int, covariance_type: str = "diag", reg_covar: float = 1e-6) -> None:
        self.n_mix = int(check_scalar(n_mix, "n_mix", numbers.Integral, min_value=1))
        self.mixture = GaussianMixtureModel(self.n_mix, covariance_type, reg_covar)
        self.strategy = self.mixture.strategy
        self.reg_covar = self.mixture.reg_covar
        self.param_constraints = {
            "weights": "simplex", "means": "real", "covars": self.strategy.constraint
        }
        self._cache: tuple[Params, list[GaussianKernel]] | None = None

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

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

    def initialize(self, X: np.ndarray, n_components: int, rng: np.random.Generator) -> GMMParams:
        m, d = self.n_mix, X.shape[1]
        means = kmeanspp_centres(X, n_components * m, rng).reshape(n_components, m, d)
        one = _data_covariance(X, self.strategy, self.reg_covar, m)
        covars = np.repeat(one[None], n_components, axis=0)
        weights = np.full((n_components, m), 1.0 / m)
        return self.complete_params(GMMParams(weights, means, covars, covars), {"covars": covars})

    def log_likelihood(self, params: GMMParams, X: np.ndarray) -> np.ndarray:
        return np.stack(
            [logsumexp(kern.log_prob(X), axis=1) for kern in self._kernels(params)], axis=1
        )

    def statistics(
        self, params: GMMParams, X: np.ndarray, posteriors: np.ndarray
    ) -> GMMStats:
        out = []
        for k, kern in enumerate(self._kernels(params)):
            log_resp, _ = log_normalize(kern.log_prob(X), axis=1)
            # Joint posterior of (state k, mixture component m) at every step.
            resp = np.exp(log_resp) * posteriors[:, k : k + 1]
            out.append(kern.moments(X, resp))
        return GMMStats(tuple(out))

    def m_step(self, stats: GMMStats) -> GMMParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(self, stats: GMMStats, fixed: Mapping[str, Any]) -> GMMParams:
        names = {"weights": "weights", "means": "means", "covars": "covariances"}
        states = [
            self.mixture.constrained_m_step(
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
