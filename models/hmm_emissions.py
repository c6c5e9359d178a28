"""Emission components for hidden Markov models.

An emission is a small strategy object: it knows how to score every step against
every state (the T×K log-likelihood matrix the inference routines need), how to
turn state posteriors into additive weighted statistics, and how to maximise them.
It holds no data and no fitted state, so one instance can serve many fits.

Shipped: :class:`GaussianEmission` (four covariance types), :class:`CategoricalEmission`,
:class:`PoissonEmission` and :class:`GMMEmission` (a Gaussian mixture per state).
Any subclass of :class:`Emission` can be plugged into :class:`~emframe.models.hmm.HMM`.
"""

from __future__ import annotations

import dataclasses
import numbers
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from scipy.special import gammaln, logsumexp

from emframe.covariance import (
    CovarianceStrategy,
    GaussianKernel,
    GaussianMoments,
    gaussian_moments,
    get_covariance_strategy,
)
from emframe.numerics import log_normalize, normalize, safe_log
from emframe.params import Params, Stats
from emframe.validation import check_array, check_finite_params, check_scalar

from .gaussian_mixture import GaussianMixtureModel, GaussianMixtureParams

__all__ = [
    "Emission",
    "GaussianEmission",
    "GaussianParams",
    "GMMEmission",
    "GMMParams",
    "GMMStats",
    "CategoricalEmission",
    "CategoricalParams",
    "CategoricalStats",
    "PoissonEmission",
    "PoissonParams",
    "PoissonStats",
    "kmeanspp_centres",
]


class Emission(ABC):
    """Base class of HMM emission components.

    A subclass implements :meth:`initialize`, :meth:`log_likelihood`,
    :meth:`statistics` and :meth:`m_step`; the rest has usable defaults.
    Statistics must be additive over steps (sums of posterior-weighted terms), so
    that the E-step on whole sequences can be chunked.

    Class attributes
    ----------------
    letters : mapping of str to str
        hmmlearn-style letters for ``init_params`` / ``params``, mapped to parameter
        field names (for example ``{"m": "means", "c": "covars"}``). Empty means the
        whole emission is addressed by the single letter ``"e"``.
    attributes : mapping of str to str
        Public estimator attribute of each parameter field (``{"means": "means_"}``).
    """

    letters: ClassVar[Mapping[str, str]] = {}
    attributes: ClassVar[Mapping[str, str]] = {}
    #: Constraint of each field for SQUAREM extrapolation (see :mod:`emframe.reparam`);
    #: derived fields are left out and recomputed by :meth:`complete_params`. ``None``:
    #: the emission is not extrapolated (SQUAREM then moves only start and transitions).
    param_constraints: Mapping[str, str] | None = None

    # -- required ---------------------------------------------------------------
    @abstractmethod
    def initialize(self, X: np.ndarray, n_components: int, rng: np.random.Generator) -> Params:
        """Initial emission parameters for ``n_components`` states, drawn with ``rng``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Validated training data (the concatenated sequences).
        n_components : int
        rng : numpy Generator
        """

    @abstractmethod
    def log_likelihood(self, params: Params, X: np.ndarray) -> np.ndarray:
        """Log-likelihood of every step under every state.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            ``log p(x_t | z_t = k)``; ``-inf`` where impossible, never NaN.
        """

    @abstractmethod
    def statistics(self, params: Params, X: np.ndarray, posteriors: np.ndarray) -> Stats:
        """Posterior-weighted sufficient statistics.

        Parameters
        ----------
        params : Params
            The parameters of this E-step (emissions that need none ignore them;
            others use them, e.g. as a reference point or for within-state posteriors).
        X : ndarray of shape (n_samples, n_features)
        posteriors : ndarray of shape (n_samples, n_components)
            Weights of every step in every state (rows sum to one in an E-step).

        Returns
        -------
        Stats
            Additive: the statistics of two disjoint sets of steps add up to those
            of their union.
        """

    @abstractmethod
    def m_step(self, stats: Stats) -> Params:
        """Parameters maximising the expected complete-data log-likelihood."""

    # -- optional -----------------------------------------------------------------
    def check_X(self, X: Any) -> np.ndarray:
        """Validate data and return it as a 2-D float array (never modified in place)."""
        return check_array(X)

    def constrained_m_step(self, stats: Stats, fixed: Mapping[str, Any]) -> Params:
        """M-step with the fields in ``fixed`` held at the given values.

        The default is exact when the update of each field does not depend on the
        others; emissions where it does (a covariance on its mean) override it.
        """
        params = self.m_step(stats)
        return self.complete_params(params, fixed) if fixed else params

    def complete_params(self, params: Params, values: Mapping[str, Any]) -> Params:
        """``params`` with some fields replaced and any derived fields recomputed."""
        return params.replace(**values)

    def log_prior(self, params: Params) -> float:
        """Log prior density of the emission parameters (MAP emissions override it)."""
        return 0.0

    def check_params(self, params: Params, n_components: int) -> None:
        """Raise ``ValueError`` unless ``params`` are valid for ``n_components`` states."""
        check_finite_params(params)

    def n_parameters(self, params: Params, frozen: Collection[str] = ()) -> int:
        """Number of free emission parameters (fields in ``frozen`` are not free)."""
        raise NotImplementedError(f"{type(self).__name__} does not define n_parameters")

    def sample(self, params: Params, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One observation from state ``states[t]`` for every ``t``; shape (n, n_features)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sampling")

    def to_attribute(self, field: str, value: Any) -> Any:
        """Public form of a parameter field (the identity unless overridden)."""
        return value

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        """Validate and convert a user-supplied attribute into the parameter field."""
        arr = np.array(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.attributes.get(field, field)} contains NaN or inf")
        return arr

    # -- helpers --------------------------------------------------------------------
    @property
    def field_letters(self) -> dict[str, tuple[str, ...]]:
        """Letter -> tuple of the parameter fields it stands for."""
        if self.letters:
            return {k: (v,) for k, v in self.letters.items()}
        return {"e": ("*",)}


def _check_precisions(strategy: CovarianceStrategy, pc: np.ndarray, what: str) -> None:
    """Reject covariances so small that their precisions overflow (numerically singular)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.all(np.isfinite(strategy.precisions(np.asarray(pc))))
    if not ok:
        raise ValueError(f"{what} is numerically singular: its precision overflows")


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


def _check_stochastic_rows(p: np.ndarray, name: str, atol: float = 1e-6) -> None:
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = p.sum(axis=-1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        raise ValueError(
            f"each row of {name} must sum to 1, but row {int(bad[0])} sums to "
            f"{float(np.ravel(sums)[bad[0]]):.6g}"
        )


def kmeanspp_centres(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``X`` chosen by k-means++ seeding (D² sampling), shape (n, n_features).

    Spreads the initial state means over the data, so restarts differ but are sensible.
    """
    idx = [int(rng.integers(X.shape[0]))]
    d2 = np.sum((X - X[idx[0]]) ** 2, axis=1)
    for _ in range(1, n):
        total = d2.sum()
        # Fewer distinct points than states: fall back to uniform draws.
        if total > 0:
            i = int(rng.choice(X.shape[0], p=d2 / total))
        else:
            i = int(rng.integers(X.shape[0]))
        idx.append(i)
        d2 = np.minimum(d2, np.sum((X - X[i]) ** 2, axis=1))
    return X[idx].copy()


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


class CategoricalEmission(Emission):
    """Integer symbols ``0 .. n_symbols - 1`` (one column), a categorical distribution per state.

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

    def __init__(self, n_symbols: int, emissionprob_prior: Any = 1.0) -> None:
        self.n_symbols = int(n_symbols)
        self.emissionprob_prior = emissionprob_prior

    def check_X(self, X: Any) -> np.ndarray:
        return check_symbols(X, self.n_symbols)

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> CategoricalParams:
        freq = np.bincount(X[:, 0].astype(np.intp), minlength=self.n_symbols) / X.shape[0]
        # Half the empirical frequencies, half a random draw: every entry positive, states differ.
        noise = rng.dirichlet(np.ones(self.n_symbols), size=n_components)
        return CategoricalParams(0.5 * freq + 0.5 * noise)

    def log_likelihood(self, params: CategoricalParams, X: np.ndarray) -> np.ndarray:
        return safe_log(params.emissionprob).T[X[:, 0].astype(np.intp)]

    def statistics(
        self, params: CategoricalParams, X: np.ndarray, posteriors: np.ndarray
    ) -> CategoricalStats:
        x = X[:, 0].astype(np.intp)
        counts = np.stack(
            [np.bincount(x, weights=posteriors[:, k], minlength=self.n_symbols)
             for k in range(posteriors.shape[1])]
        )
        return CategoricalStats(counts)

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


def check_symbols(X: Any, n_symbols: int | None = None) -> np.ndarray:
    """Validate a column of integer symbols; return it as a float array of shape (n, 1).

    Raises
    ------
    ValueError
        If ``X`` is not one column, holds NaN, non-integers, negatives, or symbols
        ``>= n_symbols``.
    """
    X = check_array(X)
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
    bad = np.flatnonzero(x < 0)
    if bad.size:
        raise ValueError(
            f"X must hold symbols 0, 1, 2, ...; X[{int(bad[0])}] = {x[bad[0]]:g} is negative"
        )
    if n_symbols is not None:
        bad = np.flatnonzero(x >= n_symbols)
        if bad.size:
            raise ValueError(
                f"symbol {x[bad[0]]:g} at X[{int(bad[0])}] is out of range: the model has "
                f"n_features={n_symbols} symbols (0 to {n_symbols - 1})"
            )
    return X


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
    """Non-negative integer counts, independent Poisson features per state."""

    letters: ClassVar[Mapping[str, str]] = {"l": "lambdas"}
    param_constraints: Mapping[str, str] | None = {"lambdas": "positive"}
    attributes: ClassVar[Mapping[str, str]] = {"lambdas": "lambdas_"}

    def check_X(self, X: Any) -> np.ndarray:
        X = check_array(X)
        bad = np.argwhere(X < 0)
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(f"counts must be non-negative, but X[{i}, {j}] = {X[i, j]:g}")
        bad = np.argwhere(X != np.round(X))
        if bad.size:
            i, j = (int(v) for v in bad[0])
            raise ValueError(f"counts must be integers, but X[{i}, {j}] = {X[i, j]:g}")
        return X

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> PoissonParams:
        centres = kmeanspp_centres(X, n_components, rng)
        # Halfway to the overall mean: a zero count in a seed must not give a zero rate.
        return PoissonParams(0.5 * (centres + X.mean(axis=0)))

    def log_likelihood(self, params: PoissonParams, X: np.ndarray) -> np.ndarray:
        lam = params.lambdas
        zero = lam == 0
        log_lam = np.log(np.where(zero, 1.0, lam))
        out = X @ log_lam.T - lam.sum(axis=1) - gammaln(X + 1.0).sum(axis=1)[:, None]
        if zero.any():
            # Rate 0 gives probability 1 to a zero count and 0 to any positive count.
            impossible = (X > 0).astype(float) @ zero.T.astype(float) > 0
            out[impossible] = -np.inf
        return out

    def statistics(
        self, params: PoissonParams, X: np.ndarray, posteriors: np.ndarray
    ) -> PoissonStats:
        return PoissonStats(posteriors.sum(axis=0), posteriors.T @ X)

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
        Derived from ``covars`` (see :mod:`emframe.covariance`), so scoring needs no
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


class GaussianEmission(Emission):
    """Multivariate Gaussian emissions with a covariance structure per state.

    The covariance type is a strategy object from :mod:`emframe.covariance`, which
    also supplies the fast log-density/moment kernel and the M-step.

    Parameters
    ----------
    covariance_type : {"full", "diag", "spherical", "tied"}, default "diag"
    reg_covar : float, default 1e-6
        Added to the variances in every M-step (keeps covariances positive definite).
    """

    letters: ClassVar[Mapping[str, str]] = {"m": "means", "c": "covars"}
    attributes: ClassVar[Mapping[str, str]] = {"means": "means_", "covars": "covars_"}

    def __init__(self, covariance_type: str = "diag", reg_covar: float = 1e-6) -> None:
        self.strategy = get_covariance_strategy(covariance_type)
        self.reg_covar = float(check_scalar(reg_covar, "reg_covar", numbers.Real, min_value=0.0))
        self.param_constraints = {"means": "real", "covars": self.strategy.constraint}
        self._cache: tuple[Params, GaussianKernel] | None = None

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    def _kernel(self, params: GaussianParams) -> GaussianKernel:
        # The E-step scores and then accumulates with the same parameters: build once.
        cache = self._cache
        if cache is not None and cache[0] is params:
            return cache[1]
        kernel = GaussianKernel(self.strategy, params.means, params.precisions_cholesky)
        self._cache = (params, kernel)
        return kernel

    def initialize(
        self, X: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> GaussianParams:
        means = kmeanspp_centres(X, n_components, rng)
        covars = _data_covariance(X, self.strategy, self.reg_covar, n_components)
        pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        return GaussianParams(means, covars, pc)

    def log_likelihood(self, params: GaussianParams, X: np.ndarray) -> np.ndarray:
        return self._kernel(params).log_prob(X)

    def statistics(
        self, params: GaussianParams, X: np.ndarray, posteriors: np.ndarray
    ) -> GaussianMoments:
        # Moments about a point fixed by params: chunks scored with the same params add exactly.
        return self._kernel(params).moments(X, posteriors)

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
            covars = self.strategy.covariances(stats, self.reg_covar, about=frozen_means)
        pc = fixed.get("precisions_cholesky")
        if pc is None or "covars" not in fixed:
            pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        return GaussianParams(means, covars, pc)

    def complete_params(self, params: GaussianParams, values: Mapping[str, Any]) -> GaussianParams:
        out = params.replace(**values)
        if "covars" in values and "precisions_cholesky" not in values:
            out = out.replace(
                precisions_cholesky=self.strategy.precisions_cholesky(out.covars, self.reg_covar)
            )
        return out

    def check_params(self, params: GaussianParams, n_components: int) -> None:
        means = np.asarray(params.means)
        if means.ndim != 2 or means.shape[0] != n_components:
            raise ValueError(
                f"means_ must have shape (n_components={n_components}, n_features), "
                f"got {means.shape}"
            )
        if not np.all(np.isfinite(means)):
            raise ValueError("means_ has non-finite values")
        d = means.shape[1]
        self.strategy.check_covariances(params.covars, n_components, d, name="covars_")
        _check_shape(
            np.asarray(params.precisions_cholesky), self.strategy.shape(n_components, d),
            "precisions_cholesky",
        )
        _check_precisions(self.strategy, params.precisions_cholesky, "a covariance in covars_")

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
    """One :class:`~emframe.covariance.GaussianMoments` per state (the mixture's statistics)."""

    states: tuple[GaussianMoments, ...]


class GMMEmission(Emission):
    """A Gaussian mixture of ``n_mix`` components in every state.

    Each state is a :class:`~emframe.models.gaussian_mixture.GaussianMixtureModel`
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
