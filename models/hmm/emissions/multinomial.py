"""Multinomial emissions: a vector of category counts per step, one distribution per state."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_shape,
    _check_stochastic_rows,
    _take_states,
)
from emframe.models.hmm.emissions.poisson import MAX_COUNT
from scipy.special import gammaln

from emframe.core.numerics import normalize
from emframe.core.params import Params, Stats
from emframe.core.validation import check_array

__all__ = ["MultinomialEmission", "MultinomialParams", "MultinomialStats"]


@dataclasses.dataclass(frozen=True)
class MultinomialParams(Params):
    """Multinomial emission parameters.

    Attributes
    ----------
    emissionprob : ndarray of shape (n_components, n_features)
        ``emissionprob[k, j]``: probability that a trial of a step in state ``k`` falls
        in category ``j``; rows sum to one.
    """

    emissionprob: np.ndarray


@dataclasses.dataclass(frozen=True)
class MultinomialStats(Stats):
    """``counts[k, j]``: posterior-weighted sum over the steps of the counts of category j."""

    counts: np.ndarray


class MultinomialEmission(Emission):
    """Rows of non-negative integer counts over ``n_features`` categories.

    A step in state ``k`` is ``Multinomial(n, emissionprob[k])``:
    ``log p(x | k) = log n! - sum_j log x_j! + sum_j x_j log emissionprob[k, j]``,
    ``n = sum_j x_j``.

    A row of NaN is a missing step (log-likelihood 0 in every state, no counts),
    as a missing symbol of :class:`CategoricalEmission`. A row with only some counts
    missing is refused: its total, hence its number of trials, would be unknown.

    Parameters
    ----------
    n_trials : int or None, default None
        Number of trials of every step: every observed row must sum to it. None
        takes each row's own total as its number of trials (the likelihood is then
        conditional on the totals, as hmmlearn's); sampling and imputing need an int.
    """

    letters: ClassVar[Mapping[str, str]] = {"e": "emissionprob"}
    param_constraints: Mapping[str, str] | None = {"emissionprob": "simplex"}
    attributes: ClassVar[Mapping[str, str]] = {"emissionprob": "emissionprob_"}
    supports_missing: ClassVar[bool] = True

    def __init__(self, n_trials: int | None = None) -> None:
        self.n_trials = None if n_trials is None else int(n_trials)

    def check_X(self, X: Any) -> np.ndarray:
        X = check_array(X, allow_nan=True)
        nan = np.isnan(X)
        partial = np.flatnonzero(nan.any(axis=1) & ~nan.all(axis=1))
        if partial.size:
            i = int(partial[0])
            raise ValueError(
                f"row {i} of X has some counts missing (NaN) and others not; a multinomial "
                "row is missing as a whole (all NaN) or observed as a whole, since its "
                "total is its number of trials"
            )
        with np.errstate(invalid="ignore"):
            bad = np.argwhere(((X < 0) | (X != np.round(X)) | (X > MAX_COUNT)) & ~nan)
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(
                f"X must hold non-negative integer counts (at most 2**53), but "
                f"X[{i}, {j}] = {X[i, j]:g}"
            )
        if self.n_trials is not None:
            totals = np.where(nan.any(axis=1), self.n_trials, X.sum(axis=1))
            bad_rows = np.flatnonzero(totals != self.n_trials)
            if bad_rows.size:
                i = int(bad_rows[0])
                raise ValueError(
                    f"every row of X must sum to n_trials = {self.n_trials}, but row {i} "
                    f"sums to {totals[i]:g}; fix the data, or give n_trials=None to take "
                    "each row's total as its number of trials"
                )
        return X

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> MultinomialParams:
        if np.isnan(X).all():
            raise ValueError("every row of X is missing (NaN): nothing to fit")
        # hmmlearn's start: a random distribution per state, whatever the data
        return MultinomialParams(rng.dirichlet(np.ones(X.shape[1]), size=n_components))

    def log_likelihood(self, params: MultinomialParams, X: np.ndarray) -> np.ndarray:
        p = params.emissionprob
        missing = np.isnan(X).any(axis=1)
        x = np.where(missing[:, None], 0.0, X)
        zero = p == 0
        # 0 * log(0) is 0: a category of probability 0 that is not observed costs nothing
        log_p = np.log(np.where(zero, 1.0, p))
        const = gammaln(x.sum(axis=1) + 1.0) - gammaln(x + 1.0).sum(axis=1)
        out = x @ log_p.T + const[:, None]
        if zero.any():
            impossible = (x > 0).astype(float) @ zero.T.astype(float) > 0
            out[impossible] = -np.inf
        out[missing] = 0.0
        return out

    def statistics(
        self, params: MultinomialParams, X: np.ndarray, posteriors: np.ndarray
    ) -> MultinomialStats:
        x = np.where(np.isnan(X), 0.0, X)  # a missing row adds no counts
        return MultinomialStats(posteriors.T @ x)

    def m_step(self, stats: MultinomialStats) -> MultinomialParams:
        out = normalize(stats.counts, axis=1)
        # A state with no counts (unused, or only empty rows) does not change the
        # likelihood whatever its probabilities: keep it uniform.
        empty = stats.counts.sum(axis=1) == 0
        out[empty] = 1.0 / stats.counts.shape[1]
        return MultinomialParams(out)

    def _trials(self, what: str) -> int:
        if self.n_trials is None:
            raise ValueError(
                f"{what} needs the number of trials of a step, but n_trials is None (each "
                "row's own total); give n_trials (an int) to the model before fitting"
            )
        return self.n_trials

    def impute(
        self, params: MultinomialParams, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        n = self._trials("imputing a missing row")
        p = params.emissionprob
        mean = n * (posteriors @ p)
        # law of total variance; a multinomial count's variance is n p (1 - p)
        var = n * (posteriors @ (p * (1.0 - p))) + sum(
            posteriors[:, [k]] * (n * p[k] - mean) ** 2 for k in range(p.shape[0])
        )
        missing = np.isnan(X)
        return np.where(missing, mean, X), np.where(missing, var, 0.0)

    def sample_missing(
        self, params: MultinomialParams, X: np.ndarray, states: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        n = self._trials("drawing a missing row")
        draws = rng.multinomial(n, params.emissionprob[states]).astype(float)
        return np.where(np.isnan(X), draws, X)

    def check_params(self, params: MultinomialParams, n_components: int) -> None:
        p = params.emissionprob
        if p.ndim != 2 or p.shape[0] != n_components:
            raise ValueError(
                f"emissionprob_ must have shape (n_components={n_components}, n_features), "
                f"got {p.shape}"
            )
        _check_stochastic_rows(p, "emissionprob_")

    def permute_states(self, params: MultinomialParams, order: np.ndarray) -> MultinomialParams:
        return _take_states(params, order, ("emissionprob",))

    def n_features_of(self, params: MultinomialParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return int(np.shape(params.emissionprob)[-1])

    def n_parameters(self, params: MultinomialParams, frozen: Collection[str] = ()) -> int:
        if "emissionprob" in frozen:
            return 0
        k, d = params.emissionprob.shape
        return int(k * (d - 1))

    def sample(
        self, params: MultinomialParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        n = self._trials("sampling")
        return rng.multinomial(n, params.emissionprob[states]).astype(np.int64)

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        arr = super().from_attribute(field, value, n_components, n_features)
        _check_shape(arr, (n_components, n_features), "emissionprob_")
        _check_stochastic_rows(arr, "emissionprob_")
        return arr
