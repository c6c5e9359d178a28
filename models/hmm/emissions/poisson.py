"""Poisson emissions: independent Poisson counts per feature and state."""

from __future__ import annotations

import dataclasses
import math
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
from scipy.special import gammaln, xlogy

from emframe.core.params import Params, Stats
from emframe.core.validation import check_array

__all__ = [
    "LARGE_COUNT",
    "MAX_COUNT",
    "PoissonEmission",
    "PoissonParams",
    "PoissonStats",
    "poisson_log_pmf",
]

#: Largest count accepted: every integer up to 2**53 is exact in float64.
MAX_COUNT = float(2**53)

#: Counts from this size on are scored in the saddle-point form (:func:`poisson_log_pmf`).
#: Below it ``x log(lam) - lam - lgamma(x + 1)`` costs one matrix product for all states
#: and loses a few ulps of ``x log(x)`` to cancellation near the mode, where the result
#: is only ``-log(2 pi x) / 2``: below 2**10 that is at most ~1e-12, a 2e-12 relative
#: error (it reached 2e-11 relative at counts of 2**16, the former switch).
LARGE_COUNT = float(2**10)

#: Up to this count, ``bd0`` near ``x = lam`` is summed as ``x log1p(d / lam) - d``,
#: ``d = x - lam`` (exact there): its error, a few ulps of ``|d|``, stays below 1e-12
#: relative to ``log(2 pi x) / 2 + bd0``; beyond it, Loader's series is needed.
_LOG1P_COUNT = float(2**26)


# ----------------------------------------------------------------------------------------
# The Poisson log-probability for any count
# ----------------------------------------------------------------------------------------
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _stirling_bracket(x: np.ndarray) -> np.ndarray:
    """``x log(x) - x - lgamma(x + 1)`` for counts ``x >= 0``, without cancellation.

    It is ``-log(2 pi x) / 2 - stirlerr(x)`` for ``x >= 1``, with the error of Stirling's
    approximation ``stirlerr(x) = lgamma(x + 1) - (x + 1/2) log(x) + x - log(2 pi) / 2``
    from its asymptotic series from x = 16 on (the next term is below 1e-16 there).
    """
    x = np.asarray(x, dtype=float)
    out = np.empty_like(x)
    small = x < 16.0
    xs = x[small]
    out[small] = xlogy(xs, xs) - xs - gammaln(xs + 1.0)
    xl = x[~small]
    inv = 1.0 / xl
    inv2 = inv * inv
    stirlerr = inv * (1.0 / 12 - inv2 * (1.0 / 360 - inv2 * (
        1.0 / 1260 - inv2 * (1.0 / 1680 - inv2 / 1188))))
    out[~small] = -0.5 * np.log(xl) - _HALF_LOG_2PI - stirlerr
    return out


def _deviance_part(
    x: np.ndarray, lam: np.ndarray, log_x: np.ndarray, log_lam: np.ndarray
) -> np.ndarray:
    """``bd0 = x log(x / lam) + lam - x >= 0`` (Loader), to rounding, for ``lam > 0``.

    ``log_x`` and ``log_lam`` are the logarithms of ``x`` (any value where ``x = 0``) and
    of ``lam``. Near ``x = lam`` (within 10% of ``x + lam``) the terms cancel, so there
    it is ``x log1p(d / lam) - d``, ``d = x - lam``, for counts below 2**26, and above
    it the series ``(x - lam) v + 2 x (v^3 / 3 + v^5 / 5 + ...)``,
    ``v = (x - lam) / (x + lam)``, whose terms shrink at least a hundredfold at each step;
    elsewhere ``bd0`` is at least 2% of ``lam`` and the direct form loses nothing.
    """
    x, lam = np.broadcast_arrays(x, lam)
    out = log_x - log_lam
    out *= x  # 0 where x = 0, log_x being finite there
    d = x - lam  # exact where x and lam are within a factor 2 (Sterbenz)
    out -= d
    v = d / (x + lam)
    near = np.abs(v) < 0.1
    moderate = near & (x < _LOG1P_COUNT)
    if moderate.any():
        # cheaper than the series; elsewhere (where it may overflow) the direct form stays
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            close = np.log1p(d / lam)
            close *= x
            close -= d
        out = np.where(moderate, close, out)
    near &= ~moderate
    if near.any():
        xn, vn = x[near], v[near]
        v2 = vn * vn
        # terms to reach 1e-17 of the first for the largest |v|
        largest = float(np.max(v2))
        n_terms = 0 if largest == 0.0 else min(9, int(np.ceil(-17.0 / np.log10(largest))))
        total = d[near] * vn
        term = 2.0 * xn * vn
        for j in range(1, n_terms + 1):
            term *= v2
            total += term / (2 * j + 1)
        out[near] = total
    return out


def poisson_log_pmf(x: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``log P(x; lam)`` of a Poisson count, accurate to rounding for every count up to 2**53.

    The textbook ``x log(lam) - lam - lgamma(x + 1)`` subtracts terms of size ``x log(x)``
    to leave ``-log(2 pi x) / 2`` near the mode: about 1e-3 wrong at counts of 1e12 and
    several nats at 1e15 (``scipy.stats.poisson.logpmf`` too). Loader's saddle-point form
    ``-log(2 pi x) / 2 - stirlerr(x) - bd0(x, lam)`` has no such cancellation.

    Parameters
    ----------
    x : array-like of non-negative integers (as floats)
    lam : array-like of non-negative rates, broadcast against ``x``

    Returns
    -------
    ndarray
        ``-inf`` for a positive count at rate 0.
    """
    x, lam = np.broadcast_arrays(np.asarray(x, dtype=float), np.asarray(lam, dtype=float))
    out = np.full(x.shape, -np.inf)
    pos = lam > 0
    xp, lp = x[pos], lam[pos]
    log_x = np.log(np.where(xp > 0, xp, 1.0))
    out[pos] = _stirling_bracket(xp) - _deviance_part(xp, lp, log_x, np.log(lp))
    out[~pos & (x == 0)] = 0.0
    return out


def _large_counts_log_pmf(X: np.ndarray, large: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Sum over the ``large`` entries of each row of their log-probabilities, (n, K)."""
    out = np.zeros((X.shape[0], lam.shape[0]))
    rows = np.flatnonzero(large.any(axis=1))
    mask = large[rows]
    x = np.where(mask, X[rows], LARGE_COUNT)  # a stand-in for the other entries
    bracket = _stirling_bracket(x)
    log_x = np.log(x)
    # a rate of 0 makes these counts impossible, which the caller marks: any finite value
    rates = np.where(lam > 0, lam, 1.0)
    log_rates = np.log(rates)
    for k in range(lam.shape[0]):
        terms = bracket - _deviance_part(x, rates[k], log_x, log_rates[k])
        out[rows, k] = np.sum(terms, axis=1, where=mask)
    return out


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

    Parameters
    ----------
    lambdas_prior, lambdas_weight : float or array-like, default 0.0
        Broadcastable to (n_components, n_features), non-negative.
        A Gamma prior on every rate, with density proportional to
        ``lam ** lambdas_prior * exp(-lambdas_weight * lam)`` (shape
        ``lambdas_prior + 1``, rate ``lambdas_weight``, which must be positive where
        ``lambdas_prior`` is, for a proper prior); both 0 is no prior. The
        M-step is the MAP update ``(lambdas_prior + S_k) / (lambdas_weight + N_k)``
        with ``N_k`` the expected steps in state k and ``S_k`` their summed counts,
        and :meth:`log_prior` adds the log density to the monitored objective. A
        state with ``lambdas_weight + N_k = 0`` (unused, no prior rate) takes the
        overall mean rate.
    """

    letters: ClassVar[Mapping[str, str]] = {"l": "lambdas"}
    param_constraints: Mapping[str, str] | None = {"lambdas": "positive"}
    attributes: ClassVar[Mapping[str, str]] = {"lambdas": "lambdas_"}
    supports_missing: ClassVar[bool] = True

    def __init__(self, lambdas_prior: Any = 0.0, lambdas_weight: Any = 0.0) -> None:
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _prior(self, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``lambdas_prior`` and ``lambdas_weight`` broadcast to ``shape`` (validated)."""
        out = []
        for name in ("lambdas_prior", "lambdas_weight"):
            value = getattr(self, name)
            try:
                arr = np.broadcast_to(np.asarray(value, dtype=float), shape)
            except (TypeError, ValueError):
                raise ValueError(
                    f"{name} must be a number or an array broadcastable to (n_components, "
                    f"n_features) = {shape}, got {value!r}"
                ) from None
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise ValueError(
                    f"{name} must be finite and non-negative (a Gamma prior "
                    f"lam**lambdas_prior * exp(-lambdas_weight * lam); 0 is no prior), "
                    f"got {value!r}"
                )
            out.append(arr)
        if np.any((out[0] > 0) & (out[1] == 0)):
            raise ValueError(
                "lambdas_prior > 0 needs lambdas_weight > 0: with lambdas_weight = 0 the prior "
                "lam**lambdas_prior grows without bound, and a state with no steps would take "
                f"an infinite rate (got lambdas_prior={self.lambdas_prior!r}, "
                f"lambdas_weight={self.lambdas_weight!r})"
            )
        return out[0], out[1]

    def check_prior(self, n_components: int, n_features: int) -> None:
        """Raise ``ValueError`` unless the prior is valid for these shapes."""
        self._prior((n_components, n_features))

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
        lam = 0.5 * (centres + X.mean(axis=0))
        alpha, beta = self._prior(lam.shape)
        # With a prior, its update as if that start were one observation: inside the
        # prior's support (a rate of 0 has zero density when lambdas_prior > 0).
        prior = (alpha > 0) | (beta > 0)
        return PoissonParams(np.where(prior, (alpha + lam) / (beta + 1.0), lam))

    def log_likelihood(self, params: PoissonParams, X: np.ndarray) -> np.ndarray:
        lam = params.lambdas
        zero = lam == 0
        log_lam = np.log(np.where(zero, 1.0, lam))
        missing = np.isnan(X)
        large = X >= LARGE_COUNT  # False where missing
        if missing.any() or large.any():
            # the fast form for the small observed counts (0 for the others, their rates
            # left out); the large ones below
            X_small = np.where(missing | large, 0.0, X)
            rate = (~(missing | large)).astype(float) @ lam.T
        else:
            X_small, rate = X, lam.sum(axis=1)
        out = X_small @ log_lam.T - rate - gammaln(X_small + 1.0).sum(axis=1)[:, None]
        if large.any():
            out += _large_counts_log_pmf(X, large, lam)
        if zero.any():
            # Rate 0 gives probability 1 to a zero count and 0 to any positive count.
            positive = np.where(missing, 0.0, X) > 0
            impossible = positive.astype(float) @ zero.T.astype(float) > 0
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
        alpha, beta = self._prior(stats.obs.shape)
        num = stats.obs + alpha
        den = stats.post[:, None] + beta
        # An unused state (zero posterior mass) without prior weight gets the overall mean rate.
        overall = stats.obs.sum(axis=0) / max(float(stats.post.sum()), np.finfo(float).tiny)
        lam = np.where(den > 0, num / np.where(den > 0, den, 1.0), overall)
        return PoissonParams(lam)

    def log_prior(self, params: PoissonParams) -> float:
        lam = params.lambdas
        alpha, beta = self._prior(lam.shape)
        if not (np.any(alpha) or np.any(beta)):
            return 0.0
        # alpha * log(lam) is 0 where alpha is 0, also at a rate of 0
        with np.errstate(divide="ignore"):
            log_lam = np.where(alpha > 0, np.log(np.where(alpha > 0, lam, 1.0)), 0.0)
        return float(np.sum(alpha * log_lam - beta * lam))

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


