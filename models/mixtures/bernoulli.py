"""Mixtures of multivariate Bernoulli distributions for binary data with missing entries.

The model is ``p(x) = sum_k w_k prod_j p_kj^x_j (1 - p_kj)^(1 - x_j)``, where the
product runs over the *observed* entries of ``x`` only: a missing entry (NaN) is
marginalised out exactly, since ``sum_{x_j in {0, 1}} p(x_j | k) = 1``.

Fitting is MAP EM with a Beta(alpha, beta) prior on every ``p_kj`` and a symmetric
Dirichlet(weight_concentration) prior on the weights; alpha = beta =
weight_concentration = 1 is plain maximum likelihood.

Speed comes from matrix products. With ``X1`` the 0/1 matrix (missing -> 0) and
``O`` the observed mask, the per-component log-likelihood is::

    log p(x_i | k) = X1 @ (log p - log(1 - p)).T + O @ log(1 - p).T

and without missing entries the second product is one constant per component.
The statistics are ``resp.T @ X1`` and ``resp.T @ O``, so one EM iteration costs
two (complete data) or four (missing data) products of sizes n x d x K.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np

from emframe.core.mixture import MixtureEstimator, MixtureModel
from emframe.core.numerics import safe_log
from emframe.core.params import Params, Stats
from emframe.core.validation import check_array, check_scalar
from emframe.inference.binary import carry_codes, table_e_step
from emframe.inference.compiled import has_numba
from emframe.inference.gaussian.kernel import FUSED_MIN_ROWS

__all__ = ["BernoulliMixture", "BernoulliMixtureModel", "BernoulliParams", "BernoulliStats",
           "BinaryData", "binary_data"]

_INIT_METHODS = ("random_from_data", "random")


# -- data unit ----------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BinaryData:
    """Binary data prepared once for fast E-steps: the model's data unit.

    Build it with :func:`binary_data`, which validates the values. Both arrays
    are read-only. Row slicing (``data[a:b]``) gives the same kind of object, so
    the engine can cut it into chunks.

    Attributes
    ----------
    ones : ndarray of shape (n_samples, n_features), float64
        1.0 where the entry is observed and equal to 1, else 0.0.
    observed : ndarray of shape (n_samples, n_features), float64, or None
        1.0 where the entry is observed, 0.0 where it is missing; ``None`` when
        nothing is missing (which saves one matrix product per step).
    """

    ones: np.ndarray
    observed: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        """(n_samples, n_features)."""
        return self.ones.shape  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.ones.shape[0]

    def __getitem__(self, rows: Any) -> BinaryData:
        obs = None if self.observed is None else self.observed[rows]
        return carry_codes(self, BinaryData(self.ones[rows], obs), rows)  # codes: see e_step

    @classmethod
    def concatenate_units(cls, parts: Any) -> BinaryData:
        """Row blocks joined in order; ``observed`` is None when no entry is missing."""
        ones = np.concatenate([p.ones for p in parts])
        obs = np.concatenate([np.ones_like(p.ones) if p.observed is None else p.observed
                              for p in parts])
        return BinaryData(_read_only(ones), None if obs.all() else _read_only(obs))

    def to_array(self) -> np.ndarray:
        """The data as a float array with NaN for missing entries, shape (n_samples, n_features)."""
        out = np.array(self.ones, dtype=np.float64)
        if self.observed is not None:
            out[self.observed == 0] = np.nan
        return out


def _read_only(a: np.ndarray) -> np.ndarray:
    # A view, so that a caller's array is never flagged read-only itself.
    v = a.view()
    v.flags.writeable = False
    return v


def binary_data(X: Any, name: str = "X") -> BinaryData:
    """Validate binary data and prepare it for the model.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features) or BinaryData
        Entries 0 or 1 (int, float or bool); NaN marks a missing entry.
    name : str
        Name used in error messages.

    Returns
    -------
    BinaryData

    Raises
    ------
    ValueError
        If an entry is not 0, 1 or NaN (the message names its row and column),
        if X contains inf, or if it is not 2-D.
    """
    if isinstance(X, BinaryData):
        return X
    arr = check_array(X, name, allow_nan=True)
    missing = np.isnan(arr)
    bad = (arr != 0) & (arr != 1)
    bad &= ~missing
    if bad.any():
        i, j = (int(v) for v in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} must contain only 0, 1 or NaN (missing); found {float(arr[i, j])!r} at "
            f"row {i}, column {j}. Binarise the data first, for example (X > threshold)."
        )
    if not missing.any():
        # No copy: arr is the caller's float64 array or check_array's conversion.
        return BinaryData(_read_only(arr), None)
    ones = np.fmax(arr, 0.0)  # fmax ignores NaN: missing -> 0, and 0/1 stay
    observed = np.logical_not(missing).astype(np.float64)
    return BinaryData(_read_only(ones), _read_only(observed))


# -- parameters and statistics ------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BernoulliParams(Params):
    """Parameters of a Bernoulli mixture.

    Attributes
    ----------
    weights : ndarray of shape (n_components,)
        Mixing weights, non-negative, summing to one.
    probs : ndarray of shape (n_components, n_features)
        ``probs[k, j]`` is the probability that feature ``j`` is 1 in component ``k``.
    """

    weights: np.ndarray
    probs: np.ndarray


@dataclasses.dataclass(frozen=True)
class BernoulliStats(Stats):
    """Additive expected sufficient statistics.

    Attributes
    ----------
    nk : ndarray of shape (n_components,)
        Responsibility mass of each component (weighted sample count).
    ones : ndarray of shape (n_components, n_features)
        ``sum_i r_ik x_ij`` over rows where feature ``j`` is observed.
    observed : ndarray of shape (n_components, n_features)
        ``sum_i r_ik`` over rows where feature ``j`` is observed: the mass that
        normalises ``probs[k, j]``.
    """

    nk: np.ndarray
    ones: np.ndarray
    observed: np.ndarray


# -- model --------------------------------------------------------------------
class BernoulliMixtureModel(MixtureModel[BernoulliParams, BernoulliStats]):
    """Mixture of multivariate Bernoulli distributions, fitted by MAP EM.

    The data unit is :class:`BinaryData`; an array (0/1 with NaN for missing)
    is also accepted by every method and converted on each call.

    Parameters
    ----------
    n_components : int
    alpha, beta : float >= 1
        Beta(alpha, beta) prior on every probability; ``alpha - 1`` pseudo-counts
        of 1 and ``beta - 1`` of 0 are added to each component's counts.
    weight_concentration : float >= 1
        Symmetric Dirichlet prior on the weights; ``weight_concentration - 1``
        pseudo-samples are added to each component.
    init_params : {"random_from_data", "random"}
        See :class:`BernoulliMixture`.
    n_features : int, optional
        When given, :meth:`check_params` also checks ``probs.shape[1]``.
    probs_init : array-like of shape (n_components, n_features), optional
        Initial probabilities (with uniform weights); ``init_params`` is then unused.
    require_observed : bool, default False
        Make the M-step refuse statistics with no observed entry (all-NaN data),
        which otherwise give the prior's mode (0.5 without a prior).
    """

    # For SQUAREM: weights on the simplex (exact zeros stay zero), probs through logits.
    param_constraints = {"weights": "simplex", "probs": "unit"}

    def __init__(
        self,
        n_components: int,
        *,
        alpha: float = 2.0,
        beta: float = 2.0,
        weight_concentration: float = 2.0,
        init_params: str = "random_from_data",
        n_features: int | None = None,
        probs_init: Any = None,
        require_observed: bool = False,
    ) -> None:
        self.n_components = int(n_components)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.weight_concentration = float(weight_concentration)
        self.init_params = init_params
        self.n_features = n_features
        self.probs_init = probs_init
        self.require_observed = require_observed

    # -- initialisation ------------------------------------------------------
    def check_init(self, n_features: int) -> np.ndarray | None:
        """The validated ``probs_init`` (a float64 copy), or None when not given."""
        if self.probs_init is None:
            return None
        p = check_array(self.probs_init, "probs_init", copy=True)
        K = self.n_components
        if p.shape != (K, n_features):
            raise ValueError(
                f"probs_init must have shape (n_components, n_features) = ({K}, {n_features}), "
                f"got {p.shape}"
            )
        if np.any(p < 0) or np.any(p > 1):
            raise ValueError(
                f"probs_init must lie in [0, 1]; got min {p.min():.6g}, max {p.max():.6g}"
            )
        return p

    def initialize(self, X: Any, rng: np.random.Generator) -> BernoulliParams:
        data = binary_data(X)
        n, d = data.shape
        K = self.n_components
        weights = np.full(K, 1.0 / K)
        given = self.check_init(d)
        if given is not None:
            return BernoulliParams(weights=weights, probs=given)
        if self.init_params == "random":
            # Random responsibilities, then the model's own (MAP) M-step.
            resp = rng.random((n, K))
            resp /= resp.sum(axis=1, keepdims=True)
            return self.m_step(self.stats_from_resp(data, resp))
        if self.init_params != "random_from_data":
            raise ValueError(
                f"init_params must be one of {list(_INIT_METHODS)}, got {self.init_params!r}"
            )
        if n < K:
            raise ValueError(
                f"init_params='random_from_data' needs at least n_components={K} samples, "
                f"got {n}"
            )
        # Smoothed feature means lie strictly inside (0, 1).
        observed = np.full(d, float(n)) if data.observed is None else data.observed.sum(0)
        pbar = (data.ones.sum(0) + 1.0) / (observed + 2.0)
        rows = rng.choice(n, size=K, replace=False)
        seeds = data.ones[rows]
        if data.observed is not None:
            seeds = np.where(data.observed[rows] > 0, seeds, pbar)
        # Halfway between a random sample and the mean: distinct, and never 0 or 1.
        return BernoulliParams(weights=weights, probs=0.5 * (seeds + pbar))

    # -- E-step ----------------------------------------------------------------
    def _log_prob_t(
        self, params: BernoulliParams, data: BinaryData, *, weighted: bool = True
    ) -> np.ndarray:
        """``log w_k + log p(x_i | k)`` as a C-ordered array of shape (n_components, n_samples).

        With ``weighted=False`` the ``log w_k`` term is left out.

        The transposed layout makes the per-sample reductions over components
        (max, sum) run over contiguous rows, several times faster than along
        short rows of an (n, K) array.
        """
        p = np.asarray(params.probs)
        zero, one = p == 0.0, p == 1.0
        degenerate = bool(zero.any() or one.any())
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
            log_q = np.log1p(-p)
        if degenerate:
            # Only reachable with alpha or beta equal to 1. Keep the products finite
            # (0 * -inf would be NaN) and add the -inf afterwards, exactly.
            log_p[zero] = 0.0
            log_q[one] = 0.0
        out = (log_p - log_q) @ data.ones.T
        if data.observed is None:
            out += log_q.sum(axis=1)[:, None]
        else:
            out += log_q @ data.observed.T
        if degenerate:
            # Number of observed entries with zero probability: x=1 where p=0, x=0 where p=1.
            # Integer-valued products, so the test `> 0.5` is exact.
            uf = one.astype(np.float64)
            bad = (zero.astype(np.float64) - uf) @ data.ones.T
            if data.observed is None:
                bad += uf.sum(axis=1)[:, None]
            else:
                bad += uf @ data.observed.T
            out[bad > 0.5] = -np.inf
        if weighted:
            out += safe_log(np.asarray(params.weights))[:, None]
        return out

    def log_component_prob(self, params: BernoulliParams, X: Any) -> np.ndarray:
        """``log p(x_i | k)`` over the observed entries, shape (n_samples, n_components)."""
        return self._log_prob_t(params, binary_data(X), weighted=False).T

    def log_weighted_prob(self, params: BernoulliParams, X: Any) -> np.ndarray:
        return self._log_prob_t(params, binary_data(X)).T

    def e_step(
        self,
        params: BernoulliParams,
        X: Any,
        sample_weight: np.ndarray | None = None,
    ) -> tuple[BernoulliStats, float]:
        data = binary_data(X)
        if len(data) >= FUSED_MIN_ROWS and has_numba():  # lookup tables, compiled
            out = table_e_step(data, params.probs, params.weights, sample_weight)
            if out is not None:
                return BernoulliStats(*out[:3]), out[3]
        a = self._log_prob_t(params, data)
        amax = a.max(axis=0)
        if not np.all(np.isfinite(amax)):
            # A row impossible under every component (only with alpha or beta = 1):
            # its log-likelihood is -inf; the generic path returns it and the engine
            # reports it.
            return super().e_step(params, data, sample_weight=sample_weight)
        # Normalise in place on our own temporary, samples along the contiguous axis.
        a -= amax
        np.exp(a, out=a)
        norm = a.sum(axis=0)
        a /= norm
        log_norm = np.log(norm)
        log_norm += amax
        if sample_weight is None:
            return self._stats_t(data, a), float(log_norm.sum())
        a *= sample_weight
        return self._stats_t(data, a), float(sample_weight @ log_norm)

    def stats_from_resp(self, X: Any, resp: np.ndarray) -> BernoulliStats:
        return self._stats_t(binary_data(X), np.asarray(resp).T)

    def _stats_t(self, data: BinaryData, resp_t: np.ndarray) -> BernoulliStats:
        """Statistics from responsibilities of shape (n_components, n_samples)."""
        nk = resp_t.sum(axis=1)
        ones = resp_t @ data.ones
        if data.observed is None:
            observed = np.repeat(nk[:, None], data.shape[1], axis=1)
        else:
            observed = resp_t @ data.observed
        return BernoulliStats(nk=nk, ones=ones, observed=observed)

    # -- M-step ----------------------------------------------------------------
    def m_step(self, stats: BernoulliStats) -> BernoulliParams:
        if self.require_observed and not np.sum(stats.observed) > 0:
            raise ValueError(
                "no entry of X is observed (every entry is NaN, or has zero sample weight), so "
                "there is nothing to fit; remove the empty rows and columns"
            )
        a1, b1, g1 = self.alpha - 1.0, self.beta - 1.0, self.weight_concentration - 1.0
        num = stats.ones + a1
        den = stats.observed + (a1 + b1)
        # den == 0 only in plain ML when no observed mass reaches (k, j): the
        # objective does not depend on probs[k, j] then, and 0.5 maximises it as well
        # as any value. Clipping removes round-off (ones may exceed observed by an ulp).
        probs = np.divide(num, den, out=np.full(num.shape, 0.5), where=den > 0)
        np.clip(probs, 0.0, 1.0, out=probs)
        w = stats.nk + g1
        total = w.sum()
        K = w.shape[0]
        weights = w / total if total > 0 else np.full(K, 1.0 / K)
        return BernoulliParams(weights=weights, probs=probs)

    def log_prior(self, params: BernoulliParams) -> float:
        """Log prior density up to a constant.

        ``(alpha-1) sum log p + (beta-1) sum log(1-p) + (weight_concentration-1) sum log w``;
        terms with a zero coefficient are left out (so no ``0 * log 0``).
        """
        p = np.asarray(params.probs)
        out = 0.0
        with np.errstate(divide="ignore"):
            if self.alpha != 1.0:
                out += (self.alpha - 1.0) * float(np.log(p).sum())
            if self.beta != 1.0:
                out += (self.beta - 1.0) * float(np.log1p(-p).sum())
            if self.weight_concentration != 1.0:
                out += (self.weight_concentration - 1.0) * float(
                    np.log(np.asarray(params.weights)).sum()
                )
        return out

    # -- other hooks -------------------------------------------------------------
    def n_samples(self, X: Any) -> int:
        return len(X)

    def check_params(self, params: BernoulliParams) -> None:
        w = np.asarray(params.weights, dtype=float)
        p = np.asarray(params.probs, dtype=float)
        K = self.n_components
        if w.shape != (K,):
            raise ValueError(f"weights must have shape ({K},), got {w.shape}")
        if p.ndim != 2 or p.shape[0] != K:
            raise ValueError(f"probs must have shape ({K}, n_features), got {p.shape}")
        if self.n_features is not None and p.shape[1] != self.n_features:
            raise ValueError(
                f"probs has {p.shape[1]} features but the data has {self.n_features}"
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(p))):
            raise ValueError("weights and probs must be finite")
        if np.any(w < 0) or not np.isclose(w.sum(), 1.0, rtol=0, atol=1e-8):
            raise ValueError(f"weights must be non-negative and sum to 1, got {w}")
        if np.any(p < 0) or np.any(p > 1):
            raise ValueError("probs must lie in [0, 1]")

    def n_features_of(self, params: BernoulliParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return int(np.shape(params.probs)[-1])

    def n_parameters(self, params: BernoulliParams) -> int:
        K, d = np.shape(params.probs)
        return int(K - 1 + K * d)

    def sample_components(
        self, params: BernoulliParams, labels: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        p = np.asarray(params.probs)[labels]
        return (rng.random(p.shape) < p).astype(np.float64)


# -- estimator ----------------------------------------------------------------
class BernoulliMixture(MixtureEstimator):
    """Mixture of multivariate Bernoulli distributions for binary data with missing entries.

    Missing entries (NaN) are marginalised out exactly: they contribute nothing
    to their row's likelihood, and each ``probs_[k, j]`` is estimated from the
    rows where feature ``j`` is observed. A row with every entry missing is
    allowed: its likelihood is 1, its responsibilities equal ``weights_``, so it
    only pulls the weights towards their current values. Data with no observed
    entry at all are refused (there is nothing to fit).

    Fitting is MAP EM under a Beta(``alpha``, ``beta``) prior on every
    probability and a symmetric Dirichlet(``weight_concentration``) prior on the
    weights. ``loglik_history_`` is then the *penalised* log-likelihood
    (log-likelihood + log prior, up to a constant), the quantity EM increases
    monotonically. With ``alpha = beta = weight_concentration = 1`` the fit is
    plain maximum likelihood and the history is the log-likelihood.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    alpha, beta : float >= 1, default=2.0
        Beta prior parameters. The update is
        ``probs[k, j] = (ones + alpha - 1) / (observed + alpha + beta - 2)``, so the
        default adds one pseudo-count of each outcome per component and feature
        (Laplace's rule of succession): no probability is ever 0 or 1, so
        ``log 0`` never occurs and a single unusual pixel cannot veto a component.
        The pseudo-counts are negligible once a component holds many samples.
    weight_concentration : float >= 1, default=2.0
        Symmetric Dirichlet prior on the weights: ``weight_concentration - 1``
        pseudo-samples per component, so no weight becomes exactly 0.
    tol : float, default=1e-3
        Stop when the mean per-sample penalised log-likelihood changes by less.
    max_iter : int, default=100
    n_init : int, default=1
        Restarts; the best penalised log-likelihood is kept.
    init_params : {"random_from_data", "random"}, default="random_from_data"
        ``"random_from_data"``: each component starts halfway between a distinct
        random sample (missing entries replaced by the feature mean) and the
        feature means. ``"random"``: random responsibilities followed by an M-step.
        Both use a seeded random sample of at most 10,000 rows drawn across all
        the data (all of it when smaller; see ``init_sample_size`` of
        :func:`~emframe.fit_em`), so chunked and in-memory fits start alike;
        they ignore ``sample_weight``.
    probs_init : array-like of shape (n_components, n_features), optional
        Initial probabilities, in [0, 1]; the weights then start uniform and
        ``init_params`` is not used.
    random_state : None, int or numpy Generator
    verbose : int, default=0
    warm_start : bool, default=False
        Continue from the previous fit's parameters.
    freeze : tuple of str, default=()
        Parameters held at their initial values: ``"weights"`` and/or ``"probs"``.
    strict : bool, default=False
        Raise instead of warn if the penalised log-likelihood decreases.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    probs_ : ndarray of shape (n_components, n_features)
        Probability that each feature is 1 in each component.
    converged_ : bool
    n_iter_ : int
    loglik_history_ : ndarray of shape (n_iter + 1,)
        Penalised log-likelihood at the initial parameters and after each M-step.
    n_features_in_ : int
    params_ : BernoulliParams

    Examples
    --------
    >>> import numpy as np
    >>> from emframe.models import BernoulliMixture
    >>> X = np.array([[1, 1, 0], [1, np.nan, 0], [0, 0, 1], [0, 0, np.nan]])
    >>> bm = BernoulliMixture(2, random_state=0).fit(X)
    >>> bm.predict(X).shape
    (4,)
    """

    _allow_nan = True

    def __init__(
        self,
        n_components: int = 1,
        *,
        alpha: float = 2.0,
        beta: float = 2.0,
        weight_concentration: float = 2.0,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "random_from_data",
        probs_init: Any = None,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        freeze: tuple[str, ...] = (),
        strict: bool = False,
    ) -> None:
        self.n_components = n_components
        self.alpha = alpha
        self.beta = beta
        self.weight_concentration = weight_concentration
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.probs_init = probs_init
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start
        self.freeze = freeze
        self.strict = strict

    def _validate_X(self, X: Any, *, reset: bool) -> BinaryData:  # type: ignore[override]
        self._check_feature_names(X, reset=reset)
        data = binary_data(X)
        self._check_n_features(data, reset=reset)
        return data

    def _build_model(self, X: Any) -> BernoulliMixtureModel:
        check_scalar(self.n_components, "n_components", (int, np.integer), min_value=1)
        for name in ("alpha", "beta", "weight_concentration"):
            value = getattr(self, name)
            check_scalar(value, name, numbers.Real)
            if not np.isfinite(value) or value < 1:
                raise ValueError(
                    f"{name} must be a finite number >= 1 (1 means no prior; "
                    f"below 1 the MAP estimate does not exist), got {value!r}"
                )
        if self.init_params not in _INIT_METHODS:
            raise ValueError(
                f"init_params must be one of {list(_INIT_METHODS)}, got {self.init_params!r}"
            )
        model = BernoulliMixtureModel(
            int(self.n_components),
            alpha=float(self.alpha),
            beta=float(self.beta),
            weight_concentration=float(self.weight_concentration),
            init_params=self.init_params,
            n_features=X.shape[1],
            probs_init=self.probs_init,
            require_observed=True,
        )
        model.check_init(X.shape[1])
        return model


    def _fitted_attributes(self, params: BernoulliParams) -> dict[str, Any]:
        return {"weights_": params.weights, "probs_": params.probs}
