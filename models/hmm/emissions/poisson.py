"""Poisson emissions: independent Poisson counts per feature and state."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions._missing import mean_imputed
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_shape,
    _take_states,
    kmeanspp_centres,
)
from scipy.special import gammaln

from emframe.core.params import Params, Stats
from emframe.core.validation import check_array

__all__ = ["MAX_COUNT", "PoissonEmission", "PoissonParams", "PoissonStats"]

#: Largest count accepted: every integer up to 2**53 is exact in float64.
MAX_COUNT = float(2**53)


# ----------------------------------------------------------------------------------------
# Poisson
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PoissonParams(Params):
    """Poisson emission parameters.

    Attributes
    ----------
    lambdas : ndarray of shape (n_components, n_features)
        Rate of every feature in every state (features independent given the state).
    """

    lambdas: np.ndarray


@dataclasses.dataclass(frozen=True)
class PoissonStats(Stats):
    """``post[k]``: expected steps in state ``k``; ``obs[k]``: posterior-weighted sum of counts."""

    post: np.ndarray
    obs: np.ndarray


class PoissonEmission(Emission):
    """Non-negative integer counts, independent Poisson features per state.

    NaN marks a missing count. A step's log-likelihood is that of its observed counts
    (0 if it has none); in the statistics a missing count of a step in state k is
    replaced by its conditional expectation, the rate ``lambdas[k, j]`` (features are
    independent given the state), and steps with no observed count are left out.
    """

    letters: ClassVar[Mapping[str, str]] = {"l": "lambdas"}
    param_constraints: Mapping[str, str] | None = {"lambdas": "positive"}
    attributes: ClassVar[Mapping[str, str]] = {"lambdas": "lambdas_"}
    supports_missing: ClassVar[bool] = True

    def check_X(self, X: Any) -> np.ndarray:
        X = check_array(X, allow_nan=True)
        with np.errstate(invalid="ignore"):
            bad = np.argwhere(X < 0)
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(f"counts must be non-negative, but X[{i}, {j}] = {X[i, j]:g}")
        bad = np.argwhere((X != np.round(X)) & ~np.isnan(X))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(f"counts must be integers, but X[{i}, {j}] = {X[i, j]:g}")
        bad = np.argwhere(X > MAX_COUNT)
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(
                f"counts must be at most 2**53 = {MAX_COUNT:.0f} (beyond it float64 cannot "
                f"hold every integer, and the Poisson log-probabilities lose all precision), "
                f"but X[{i}, {j}] = {X[i, j]:g}; rescale the data or use a Gaussian emission"
            )
        return X

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> PoissonParams:
        X = mean_imputed(X)  # k-means++ needs complete rows
        centres = kmeanspp_centres(X, n_components, rng)
        # Halfway to the overall mean: a zero count in a seed must not give a zero rate.
        return PoissonParams(0.5 * (centres + X.mean(axis=0)))

    def log_likelihood(self, params: PoissonParams, X: np.ndarray) -> np.ndarray:
        lam = params.lambdas
        zero = lam == 0
        log_lam = np.log(np.where(zero, 1.0, lam))
        missing = np.isnan(X)
        if missing.any():
            # only the observed counts: 0 for the missing ones, and their rates left out
            X = np.where(missing, 0.0, X)
            rate = (~missing).astype(float) @ lam.T
        else:
            rate = lam.sum(axis=1)
        out = X @ log_lam.T - rate - gammaln(X + 1.0).sum(axis=1)[:, None]
        if zero.any():
            # Rate 0 gives probability 1 to a zero count and 0 to any positive count.
            impossible = (X > 0).astype(float) @ zero.T.astype(float) > 0
            out[impossible] = -np.inf
        return out

    def statistics(
        self, params: PoissonParams, X: np.ndarray, posteriors: np.ndarray
    ) -> PoissonStats:
        missing = np.isnan(X)
        if not missing.any():
            return PoissonStats(posteriors.sum(axis=0), posteriors.T @ X)
        informative = ~missing.all(axis=1)
        w = posteriors * informative[:, None]
        # E[x_tj | z_t = k] = lambdas[k, j] for a missing count
        obs = w.T @ np.where(missing, 0.0, X) + (w.T @ missing.astype(float)) * params.lambdas
        return PoissonStats(w.sum(axis=0), obs)

    def impute(
        self, params: PoissonParams, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        lam = params.lambdas
        mean = posteriors @ lam
        # law of total variance: E[Var] + Var[E], a Poisson's variance being its rate
        var = posteriors @ lam + sum(
            posteriors[:, [k]] * (lam[k] - mean) ** 2 for k in range(lam.shape[0])
        )
        missing = np.isnan(X)
        return np.where(missing, mean, X), np.where(missing, var, 0.0)

    def sample_missing(
        self, params: PoissonParams, X: np.ndarray, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        draws = rng.poisson(params.lambdas[states]).astype(float)  # (n_draws, n, d)
        return np.where(np.isnan(X), draws, X)

    def m_step(self, stats: PoissonStats) -> PoissonParams:
        post = stats.post[:, None]
        # An unused state (zero posterior mass) gets the overall mean rate.
        overall = stats.obs.sum(axis=0) / max(float(stats.post.sum()), np.finfo(float).tiny)
        lam = np.where(post > 0, stats.obs / np.where(post > 0, post, 1.0), overall)
        return PoissonParams(lam)

    def check_params(self, params: PoissonParams, n_components: int) -> None:
        lam = params.lambdas
        if lam.ndim != 2 or lam.shape[0] != n_components:
            raise ValueError(
                f"lambdas_ must have shape (n_components={n_components}, n_features), "
                f"got {lam.shape}"
            )
        if not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ValueError("lambdas_ must be finite and non-negative")

    def permute_states(self, params: PoissonParams, order: np.ndarray) -> PoissonParams:
        return _take_states(params, order, ("lambdas",))

    def n_features_of(self, params: PoissonParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return int(np.shape(params.lambdas)[-1])

    def n_parameters(self, params: PoissonParams, frozen: Collection[str] = ()) -> int:
        return 0 if "lambdas" in frozen else int(params.lambdas.size)

    def sample(
        self, params: PoissonParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.poisson(params.lambdas[states]).astype(np.int64)

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        arr = super().from_attribute(field, value, n_components, n_features)
        _check_shape(arr, (n_components, n_features), "lambdas_")
        if np.any(arr < 0):
            raise ValueError("lambdas_ must be non-negative")
        return arr


