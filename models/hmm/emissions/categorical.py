"""Categorical emissions: one discrete distribution over symbols per state."""

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

from emframe.core.numerics import normalize, safe_log
from emframe.core.params import Params, Stats
from emframe.core.validation import check_array

__all__ = [
    "MAX_TABLE_SIZE",
    "CategoricalEmission",
    "CategoricalParams",
    "CategoricalStats",
    "check_symbols",
    "check_table_size",
]

#: Memory budget of one (n_components, n_symbols) float64 table, in entries (1 GiB).
#: Fitting holds a few such tables (probabilities, counts, their logarithms).
MAX_TABLE_SIZE = 2**27


# ----------------------------------------------------------------------------------------
# Categorical
# ----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CategoricalParams(Params):
    """Categorical emission parameters.

    Attributes
    ----------
    emissionprob : ndarray of shape (n_components, n_symbols)
        ``emissionprob[k, s] = p(x = s | state k)``; rows sum to one.
    """

    emissionprob: np.ndarray


@dataclasses.dataclass(frozen=True)
class CategoricalStats(Stats):
    """``counts[k, s]``: expected number of emissions of symbol ``s`` from state ``k``."""

    counts: np.ndarray


#: The symbol marking a missing observation (NaN in float input is read as it too).
MISSING_SYMBOL = -1


class CategoricalEmission(Emission):
    """Integer symbols ``0 .. n_symbols - 1`` (one column), a categorical distribution per state.

    A missing observation is written -1 (or NaN in float input; :meth:`check_X` turns
    it into -1). A missing step has emission log-likelihood 0 in every state: it
    contributes only through the transitions, and nothing to the emission counts.

    Parameters
    ----------
    n_symbols : int
        Size of the alphabet.
    emissionprob_prior : float or array-like of shape (n_components, n_symbols), default 1.0
        Dirichlet concentration for every row of ``emissionprob`` (MAP); 1 is no prior.
    """

    letters: ClassVar[Mapping[str, str]] = {"e": "emissionprob"}
    param_constraints: Mapping[str, str] | None = {"emissionprob": "simplex"}
    attributes: ClassVar[Mapping[str, str]] = {"emissionprob": "emissionprob_"}
    supports_missing: ClassVar[bool] = True

    def __init__(self, n_symbols: int, emissionprob_prior: Any = 1.0) -> None:
        self.n_symbols = int(n_symbols)
        self.emissionprob_prior = emissionprob_prior

    def check_X(self, X: Any) -> np.ndarray:
        return check_symbols(X, self.n_symbols, allow_missing=True)

    def missing_mask(self, X: np.ndarray) -> np.ndarray:
        return X == MISSING_SYMBOL

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> CategoricalParams:
        x = X[:, 0].astype(np.intp)
        x = x[x != MISSING_SYMBOL]
        if x.shape[0] == 0:
            raise ValueError("every symbol of X is missing (-1 or NaN): nothing to fit")
        freq = np.bincount(x, minlength=self.n_symbols) / max(x.shape[0], 1)
        # Half the empirical frequencies, half a random draw: every entry positive, states differ.
        noise = rng.dirichlet(np.ones(self.n_symbols), size=n_components)
        return CategoricalParams(0.5 * freq + 0.5 * noise)

    def log_likelihood(self, params: CategoricalParams, X: np.ndarray) -> np.ndarray:
        x = X[:, 0].astype(np.intp)
        missing = x == MISSING_SYMBOL
        if not missing.any():
            return safe_log(params.emissionprob).T[x]
        out = safe_log(params.emissionprob).T[np.where(missing, 0, x)]
        out[missing] = 0.0
        return out

    def statistics(
        self, params: CategoricalParams, X: np.ndarray, posteriors: np.ndarray
    ) -> CategoricalStats:
        x = X[:, 0].astype(np.intp)
        missing = x == MISSING_SYMBOL
        if missing.any():
            x, posteriors = x[~missing], posteriors[~missing]
        counts = np.stack(
            [np.bincount(x, weights=posteriors[:, k], minlength=self.n_symbols)
             for k in range(posteriors.shape[1])]
        )
        return CategoricalStats(counts)

    def _predictive(self, params: CategoricalParams, posteriors: np.ndarray) -> np.ndarray:
        return posteriors @ params.emissionprob

    impute_dtype = np.int64  # symbols, also when NaN marked the missing ones

    def impute(
        self, params: CategoricalParams, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, None]:
        """The most probable symbol given all observed data (an expectation means nothing)."""
        mode = np.argmax(self._predictive(params, posteriors), axis=1).astype(float)
        missing = X[:, 0] == MISSING_SYMBOL
        return np.where(missing, mode, X[:, 0])[:, None], None

    def sample_missing(
        self, params: CategoricalParams, X: np.ndarray, states: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        draws = self.sample(params, states.ravel(), rng).astype(float)
        return np.where(X == MISSING_SYMBOL, draws.reshape(*states.shape, 1), X)

    def _alpha_minus_one(self, k: int) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.emissionprob_prior, dtype=float) - 1.0,
                               (k, self.n_symbols))

    def m_step(self, stats: CategoricalStats) -> CategoricalParams:
        w = stats.counts + self._alpha_minus_one(stats.counts.shape[0])
        out = normalize(w, axis=1)
        # A state that emitted nothing (zero posterior mass) is unused; keep it uniform.
        empty = out.sum(axis=1) == 0
        out[empty] = 1.0 / self.n_symbols
        return CategoricalParams(out)

    def log_prior(self, params: CategoricalParams) -> float:
        a1 = self._alpha_minus_one(params.emissionprob.shape[0])
        if not np.any(a1):
            return 0.0
        # log(1) where there is no prior: 0 * log(0) must not give NaN
        return float(np.sum(a1 * safe_log(np.where(a1 != 0, params.emissionprob, 1.0))))

    def check_params(self, params: CategoricalParams, n_components: int) -> None:
        _check_shape(params.emissionprob, (n_components, self.n_symbols), "emissionprob_")
        _check_stochastic_rows(params.emissionprob, "emissionprob_")

    def permute_states(self, params: CategoricalParams, order: np.ndarray) -> CategoricalParams:
        return _take_states(params, order, ("emissionprob",))

    def n_features_of(self, params: CategoricalParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return 1  # one column of symbols

    def n_parameters(self, params: CategoricalParams, frozen: Collection[str] = ()) -> int:
        if "emissionprob" in frozen:
            return 0
        return int(params.emissionprob.shape[0] * (self.n_symbols - 1))

    def sample(
        self, params: CategoricalParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        cdf = np.cumsum(params.emissionprob[states], axis=1)
        u = rng.random(states.shape[0]) * cdf[:, -1]
        x = np.minimum((u[:, None] >= cdf).sum(axis=1), self.n_symbols - 1)
        return x[:, None].astype(np.int64)

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        arr = super().from_attribute(field, value, n_components, n_features)
        _check_shape(arr, (n_components, self.n_symbols), "emissionprob_")
        _check_stochastic_rows(arr, "emissionprob_")
        return arr


def check_table_size(n_components: int, n_symbols: int) -> None:
    """Refuse an alphabet whose (n_components, n_symbols) tables exceed :data:`MAX_TABLE_SIZE`.

    Raises
    ------
    ValueError
        Naming the size needed and the budget, before anything is allocated.
    """
    size = int(n_components) * int(n_symbols)
    if size > MAX_TABLE_SIZE:
        raise ValueError(
            f"{n_symbols} symbols with n_components={n_components} need emission tables of "
            f"{n_components} x {n_symbols} = {size} probabilities ({size * 8 / 2**30:.3g} GiB "
            f"each), more than the budget of {MAX_TABLE_SIZE} entries (1 GiB); symbols must "
            "be codes 0, 1, ..., S-1 (relabel sparse codes, e.g. with "
            "np.unique(x, return_inverse=True))"
        )


def check_symbols(
    X: Any, n_symbols: int | None = None, *, allow_missing: bool = False
) -> np.ndarray:
    """Validate a column of integer symbols; return it as a float array of shape (n, 1).

    With ``allow_missing``, -1 and NaN mark missing observations; NaN is returned as -1
    (in a new array: the input is never modified).

    Raises
    ------
    ValueError
        If ``X`` is not one column, holds NaN (unless allowed), non-integers, negatives
        (other than a -1 that is allowed), or symbols ``>= n_symbols``.
    """
    X = check_array(X, allow_nan=allow_missing)
    if allow_missing and X.ndim == 2 and np.isnan(X).any():
        X = np.where(np.isnan(X), float(MISSING_SYMBOL), X)
    if X.shape[1] != 1:
        raise ValueError(
            f"X must be one column of integer symbols, shape (n_samples, 1), got shape {X.shape}"
        )
    x = X[:, 0]
    bad = np.flatnonzero(x != np.round(x))
    if bad.size:
        raise ValueError(
            f"X must hold integer symbols, but X[{int(bad[0])}] = {x[bad[0]]:g} is not an integer"
        )
    bad = np.flatnonzero((x < 0) & ~(allow_missing & (x == MISSING_SYMBOL)))
    if bad.size:
        hint = " (-1 or NaN marks a missing symbol)" if allow_missing else ""
        raise ValueError(
            f"X must hold symbols 0, 1, 2, ...{hint}; X[{int(bad[0])}] = {x[bad[0]]:g} "
            "is negative"
        )
    if n_symbols is not None:
        bad = np.flatnonzero(x >= n_symbols)
        if bad.size:
            raise ValueError(
                f"symbol {x[bad[0]]:g} at X[{int(bad[0])}] is out of range: the model has "
                f"n_features={n_symbols} symbols (0 to {n_symbols - 1})"
            )
    return X


