"""Autoregressive Gaussian emissions: a vector autoregression of order p per state.

In state k, ``x_t = A_k1 x_{t-1} + ... + A_kp x_{t-p} + b_k + e_t`` with
``e_t ~ N(0, Sigma_k)``. The emission sees each modelled step with its lags: the data
unit's rows are ``[x_t, x_{t-1}, ..., x_{t-p}]`` (:func:`lagged_rows` builds them one
sequence at a time, so batches of whole sequences keep the statistics exactly
additive). The first p steps of every sequence are conditioned on: they are lags
only, never modelled steps.

The statistics are the weighted moments of these rows, per state, referenced near
their means (no cancellation). The M-step is weighted least squares per state on the
centred moments, ``A = C_xz inv(C_zz)``, ``b = m_x - A m_z``, then the covariance of the
residuals through the covariance strategy (the MAP estimate under the ``reg_covar`` prior,
exactly as the Gaussian emission), in any of the four covariance types: with the same
regressors for every output, the least-squares coefficients maximise the likelihood
whatever ``Sigma_k``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_precisions,
    _check_shape,
    _take_states,
    kmeanspp_centres,
)

from emframe.core.params import Params
from emframe.core.validation import check_prior_size, check_scalar
from emframe.inference.gaussian import (
    CovariancePrior,
    FullCovariance,
    GaussianMoments,
    effective_counts,
    gaussian_moments,
    get_covariance_strategy,
)

__all__ = ["AutoRegressiveEmission", "AutoRegressiveParams", "lagged_rows"]

_LOG_2PI = math.log(2.0 * math.pi)
_FULL = FullCovariance()


def lagged_rows(X: np.ndarray, lengths: np.ndarray, order: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows ``[x_t, x_{t-1}, ..., x_{t-order}]`` of every modelled step, sequence by sequence.

    Parameters
    ----------
    X : ndarray of shape (n_samples, d)
    lengths : ndarray of int, shape (n_sequences,)
    order : int

    Returns
    -------
    rows : ndarray of shape (n_samples - order * n_sequences, d * (order + 1))
    lengths : ndarray of int, shape (n_sequences,)
        ``lengths - order``.

    Raises
    ------
    ValueError
        If a sequence is not longer than ``order``.
    """
    short = np.flatnonzero(lengths <= order)
    if short.size:
        i = int(short[0])
        raise ValueError(
            f"sequence {i} has {int(lengths[i])} step(s), but an autoregressive HMM of "
            f"order={order} conditions on the first {order} steps of every sequence and "
            f"needs at least one more; use longer sequences or a smaller order"
        )
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    keep = np.ones(X.shape[0], dtype=bool)
    for lag in range(order):
        keep[starts + lag] = False
    t = np.flatnonzero(keep)
    rows = np.concatenate([X[t - lag] for lag in range(order + 1)], axis=1)
    return rows, np.asarray(lengths, dtype=np.int64) - order


@dataclasses.dataclass(frozen=True)
class AutoRegressiveParams(Params):
    """Parameters of a vector autoregression per state.

    Attributes
    ----------
    coefs : ndarray of shape (n_components, order, n_features, n_features)
        ``coefs[k, l - 1]`` is ``A_kl``, the coefficient of ``x_{t-l}`` in state k.
    intercepts : ndarray of shape (n_components, n_features)
        ``b_k``.
    covars : ndarray
        Noise covariances in the covariance type's shape: (K, d, d) full, (K, d) diag,
        (K,) spherical, (d, d) tied.
    precisions_cholesky : ndarray, same shape as ``covars`` (derived)
    """

    coefs: np.ndarray
    intercepts: np.ndarray
    covars: np.ndarray
    precisions_cholesky: np.ndarray


class AutoRegressiveEmission(CovariancePrior, Emission):
    """Gaussian vector autoregression of order ``order`` in every state.

    Its data are the rows built by :func:`lagged_rows`, not the raw observations.

    Parameters
    ----------
    order : int
        Number of lags p (>= 1).
    covariance_type : {"full", "diag", "spherical", "tied"}, default "full"
    reg_covar : float, default 1e-6
        Scale of the prior ``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` on
        the noise covariances, as for the Gaussian emission (``lambda = reg_covar *
        prior_size / m``, m = K or 1 when tied): the M-step is its exact MAP estimate
        and :meth:`log_prior` its log density.
    prior_size : float, optional
        Modelled time steps of the training data the prior is attached to (set by the
        estimators); None gives ``lambda = reg_covar``.
    """

    letters: ClassVar[Mapping[str, str]] = {"a": "coefs", "b": "intercepts", "c": "covars"}
    attributes: ClassVar[Mapping[str, str]] = {
        "coefs": "coefs_", "intercepts": "intercepts_", "covars": "covars_"
    }

    def __init__(
        self, order: int, covariance_type: str = "full", reg_covar: float = 1e-6,
        prior_size: float | None = None,
    ) -> None:
        self.order = int(check_scalar(order, "order", numbers.Integral, min_value=1))
        self.strategy = get_covariance_strategy(covariance_type)
        self.reg_covar = float(check_scalar(reg_covar, "reg_covar", numbers.Real, min_value=0.0))
        self.prior_size = check_prior_size(prior_size)
        self.param_constraints = {
            "coefs": "real", "intercepts": "real", "covars": self.strategy.constraint
        }

    @property
    def covariance_type(self) -> str:
        return self.strategy.name

    # -- the rows ----------------------------------------------------------------------
    def n_features(self, Y: np.ndarray) -> int:
        """Dimension d of the observations behind rows of width ``d * (order + 1)``."""
        return Y.shape[1] // (self.order + 1)

    def _predict(self, params: AutoRegressiveParams, Y: np.ndarray, k: int) -> np.ndarray:
        """``A_k1 x_{t-1} + ... + A_kp x_{t-p} + b_k`` for every row, shape (n, d)."""
        d = self.n_features(Y)
        flat = np.concatenate(list(params.coefs[k]), axis=1)  # (d, p d)
        return Y[:, d:] @ flat.T + params.intercepts[k]

    # -- the EM contract ---------------------------------------------------------------
    def initialize(
        self, Y: np.ndarray, n_components: int, rng: np.random.Generator
    ) -> AutoRegressiveParams:
        """One pooled least-squares fit; the states differ by their intercepts.

        The coefficients and the noise covariance come from a vector autoregression
        fitted to all steps; the intercepts are the pooled one shifted to k-means++
        centres of the pooled residuals, so the states start apart, as a Gaussian
        HMM's means do.
        """
        pooled = gaussian_moments(Y, np.ones((Y.shape[0], 1)), _FULL)
        one = self.for_sample(len(Y))._regress(pooled, {})
        residual = Y[:, : self.n_features(Y)] - self._predict(one, Y, 0)
        centres = kmeanspp_centres(residual, n_components, rng)
        coefs = np.repeat(one.coefs, n_components, axis=0)
        intercepts = one.intercepts + centres
        target = self.strategy.shape(n_components, one.intercepts.shape[1])
        covars = one.covars.copy() if one.covars.shape == target else np.repeat(
            one.covars, n_components, axis=0
        )
        return self.complete_params(
            AutoRegressiveParams(coefs, intercepts, covars, covars), {"covars": covars}
        )

    def log_likelihood(self, params: AutoRegressiveParams, Y: np.ndarray) -> np.ndarray:
        d = self.n_features(Y)
        k_all = params.intercepts.shape[0]
        pc = params.precisions_cholesky
        const = self.strategy.log_det_cholesky(pc, k_all, d) - 0.5 * d * _LOG_2PI
        out = np.empty((Y.shape[0], k_all))
        for k in range(k_all):
            r = Y[:, :d] - self._predict(params, Y, k)
            out[:, k] = const[k] - 0.5 * self.strategy.mahalanobis(r, pc, k)
        return out

    def statistics(
        self, params: AutoRegressiveParams, Y: np.ndarray, posteriors: np.ndarray
    ) -> GaussianMoments:
        # Weighted moments of [x_t, lags] per state, each about its weighted mean.
        return gaussian_moments(Y, posteriors, _FULL)

    def m_step(self, stats: GaussianMoments) -> AutoRegressiveParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(
        self, stats: GaussianMoments, fixed: Mapping[str, Any]
    ) -> AutoRegressiveParams:
        return self._regress(stats, fixed)

    def _regress(self, stats: GaussianMoments, fixed: Mapping[str, Any]) -> AutoRegressiveParams:
        """Weighted least squares per state, with any of the fields held at ``fixed``."""
        means, scatter = stats.means(), stats.scatter()  # (K, D), (K, D, D), centred
        k_all, width = means.shape
        p = self.order
        d = width // (p + 1)
        coefs = np.empty((k_all, p, d, d))
        intercepts = np.empty((k_all, d))
        expected = np.empty((k_all, d, d))  # E[r r'] of the residuals, per unit weight
        mean_res = np.empty((k_all, d))
        for k in range(k_all):
            mx, mz = means[k, :d], means[k, d:]
            cxx, cxz, czz = scatter[k, :d, :d], scatter[k, :d, d:], scatter[k, d:, d:]
            b_fixed = fixed.get("intercepts")
            if "coefs" in fixed:
                flat = np.concatenate(list(np.asarray(fixed["coefs"])[k]), axis=1)
            elif b_fixed is not None:
                # no intercept to fit: second moments about the origin (x shifted by b)
                dx = mx - np.asarray(b_fixed)[k]
                flat = _solve(czz + np.outer(mz, mz), cxz + np.outer(dx, mz))
            else:
                flat = _solve(czz, cxz)
            b = mx - flat @ mz if b_fixed is None else np.asarray(b_fixed)[k]
            e = mx - flat @ mz - b  # mean residual: 0 when b is fitted
            mean_res[k] = e
            fz = flat @ czz
            expected[k] = cxx - flat @ cxz.T - cxz @ flat.T + fz @ flat.T + np.outer(e, e)
            coefs[k] = flat.reshape(d, p, d).transpose(1, 0, 2)
            intercepts[k] = b
        if "covars" in fixed:
            covars = np.asarray(fixed["covars"])
        else:
            covars = self.strategy.covariances(
                _residual_moments(self.strategy, stats.nk, mean_res, expected),
                self.prior_strength(k_all),
                about=np.zeros((k_all, d)),
            )
        pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        return AutoRegressiveParams(coefs, intercepts, covars, pc)

    def complete_params(
        self, params: AutoRegressiveParams, values: Mapping[str, Any]
    ) -> AutoRegressiveParams:
        out = params.replace(**values)
        if "covars" in values and "precisions_cholesky" not in values:
            out = out.replace(
                precisions_cholesky=self.strategy.precisions_cholesky(out.covars, self.reg_covar)
            )
        return out

    def log_prior(self, params: AutoRegressiveParams) -> float:
        k, d = np.shape(params.intercepts)
        return self.strategy.log_prior(params.precisions_cholesky, self.prior_strength(k), d)

    def check_params(self, params: AutoRegressiveParams, n_components: int) -> None:
        b = np.asarray(params.intercepts)
        if b.ndim != 2 or b.shape[0] != n_components:
            raise ValueError(
                f"intercepts_ must have shape (n_components={n_components}, n_features), "
                f"got {b.shape}"
            )
        d = b.shape[1]
        _check_shape(np.asarray(params.coefs), (n_components, self.order, d, d), "coefs_")
        for name in ("coefs", "intercepts"):
            if not np.all(np.isfinite(getattr(params, name))):
                raise ValueError(f"{name}_ has non-finite values")
        self.strategy.check_covariances(params.covars, n_components, d, name="covars_")
        _check_shape(
            np.asarray(params.precisions_cholesky), self.strategy.shape(n_components, d),
            "precisions_cholesky",
        )
        _check_precisions(self.strategy, params.precisions_cholesky, "a covariance in covars_")

    def permute_states(
        self, params: AutoRegressiveParams, order: np.ndarray
    ) -> AutoRegressiveParams:
        fields = ["coefs", "intercepts"]
        if self.strategy.name != "tied":  # one covariance for all states
            fields += ["covars", "precisions_cholesky"]
        return _take_states(params, order, fields)

    def n_features_of(self, params: AutoRegressiveParams) -> int | None:
        """Number of features the parameters are for (see ``Emission.n_features_of``)."""
        return int(np.shape(params.intercepts)[-1])

    def n_parameters(self, params: AutoRegressiveParams, frozen: Collection[str] = ()) -> int:
        k, p, d, _ = params.coefs.shape
        n = 0 if "coefs" in frozen else k * p * d * d
        n += 0 if "intercepts" in frozen else k * d
        return n + (0 if "covars" in frozen else self.strategy.n_parameters(k, d))

    # -- sampling ----------------------------------------------------------------------
    def sample(
        self, params: AutoRegressiveParams, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        raise NotImplementedError(
            "autoregressive emissions depend on the previous observations: use "
            "sample_sequence(params, states, initial, rng)"
        )

    def sample_sequence(
        self,
        params: AutoRegressiveParams,
        states: np.ndarray,
        initial: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """One sequence: the ``order`` initial rows, then one step per entry of ``states``.

        Returns
        -------
        ndarray of shape (order + len(states), n_features)
        """
        p = self.order
        d = params.intercepts.shape[1]
        out = np.empty((p + states.shape[0], d))
        out[:p] = initial
        noise = rng.standard_normal((states.shape[0], d))
        for i, k in enumerate(states):
            t = p + i
            lags = out[t - p : t][::-1].reshape(1, -1)  # [x_{t-1}, ..., x_{t-p}]
            mean = self._predict(params, np.concatenate([np.zeros((1, d)), lags], 1), int(k))
            out[t] = mean[0] + self.strategy.sample_noise(
                params.precisions_cholesky, int(k), noise[i : i + 1]
            )[0]
        return out

    # -- attributes --------------------------------------------------------------------
    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        if field == "covars":
            return self.strategy.check_covariances(value, n_components, n_features, "covars_")
        arr = super().from_attribute(field, value, n_components, n_features)
        d = n_features
        shape = (n_components, self.order, d, d) if field == "coefs" else (n_components, d)
        _check_shape(arr, shape, self.attributes[field])
        return arr


def _solve(czz: np.ndarray, cxz: np.ndarray) -> np.ndarray:
    """``cxz @ inv(czz)``; the minimum-norm solution when ``czz`` is singular.

    Any solution of the normal equations maximises the weighted least-squares
    objective, so EM stays exact for a state whose lags are collinear or that has
    too few steps.
    """
    return np.linalg.lstsq(czz, cxz.T, rcond=None)[0].T


def _residual_moments(
    strategy: Any, nk: np.ndarray, mean: np.ndarray, expected: np.ndarray
) -> GaussianMoments:
    """Moments about 0 of residuals with mean ``mean[k]``, ``E[r r'] = expected[k]``, weight ``nk``.

    In the strategy's representation, so its ``covariances(..., about=0)`` is the
    covariance M-step of every covariance type, with its ``reg_covar`` handling.
    Scaled by the floored counts, the divisor of every average, so the averages are exact.
    """
    kind = strategy.moments
    nk_eff = effective_counts(nk)
    d = expected.shape[-1]
    rep = np.stack([kind.cross(np.eye(d), m.T).sum(axis=0) for m in expected])
    shape = (-1,) + (1,) * (rep.ndim - 1)
    return kind(nk, np.zeros((len(nk), d)), mean * nk_eff[:, None], rep * nk_eff.reshape(shape))
