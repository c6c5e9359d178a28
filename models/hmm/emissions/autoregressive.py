"""Autoregressive Gaussian emissions: a vector autoregression of order p per state.

In state k, ``x_t = A_k1 x_{t-1} + ... + A_kp x_{t-p} + b_k + e_t`` with
``e_t ~ N(0, Sigma_k)``. The emission sees each modelled step with its lags: the data
unit's rows are ``[x_t, x_{t-1}, ..., x_{t-p}]`` (:func:`lagged_rows` builds them one
sequence at a time, so batches of whole sequences keep the statistics exactly
additive). The first p steps of every sequence are conditioned on: they are lags
only, never modelled steps.

The statistics (:class:`AutoRegressiveMoments`) are the weighted moments of these rows,
per state, taken about the state's current regression: of ``[x_t - B_k z_t, z_t]``, with
``z_t`` the lags and ``B_k`` the coefficients of the E-step's parameters, referenced near
their weighted means. The M-step is weighted least squares per state on these centred
moments, ``A = B + C_uz inv(C_zz)`` (u = x - B z), ``b = m_x - A m_z``, then the covariance
of the residuals through the covariance strategy (the MAP estimate under the ``reg_covar``
prior, exactly as the Gaussian emission), in any of the four covariance types: with the
same regressors for every output, the least-squares coefficients maximise the likelihood
whatever ``Sigma_k``.

Why about the regression: the residual scatter is a difference of second moments
(``C_uu - (A - B) C_zu``), which loses about ``eps * C_uu`` to rounding. Moments of the
raw rows (B = 0) lose ``eps * C_xx``, the variance of the data themselves, and a state
whose regression fits its steps almost exactly (one with as few steps as regressors,
which EM finds) then got rounding noise as its covariance and broke the monotonicity of
EM at data scales from ~1e4. About the current regression, ``C_uu`` is the scatter of
the current residuals, so the new residual covariance is resolved relative to it, as
moments about the means resolve a Gaussian's covariance; a state whose fit leaves
residuals much smaller than those has its moments taken once more about that fit (the
second pass of a centred variance). What float64 cannot resolve to 1e-4, the bound of
:data:`~emframe.inference.gaussian.strategies.SINGULAR_FRACTION` for Gaussian
covariances (a residual variance below the rounding of the M-step's difference, or a
residual standard deviation within 1e4 times the rounding of ``x_t - A z_t - b``), is a
clear "numerically singular" error: with ``reg_covar=0``, a state that fits its steps
exactly has nothing else.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np
from emframe.models.hmm.emissions._ar_moments import (
    AutoRegressiveMoments,
    flat_coefs,
    pooled_magnitudes,
    regression_moments,
    solve_normal,
)
from emframe.models.hmm.emissions.base import (
    Emission,
    _check_shape,
    _take_states,
    kmeanspp_centres,
)
from emframe.models.hmm.emissions.gaussian import StateCovariances

from emframe.core.params import Params
from emframe.core.validation import check_magnitude, check_prior_size, check_scalar
from emframe.inference.gaussian import (
    FullCovariance,
    GaussianMoments,
    effective_counts,
    get_covariance_strategy,
)
from emframe.inference.gaussian.strategies import SINGULAR_FRACTION

__all__ = [
    "AutoRegressiveEmission",
    "AutoRegressiveMoments",
    "AutoRegressiveParams",
    "lagged_rows",
]

_LOG_2PI = math.log(2.0 * math.pi)
_FULL = FullCovariance()
#: Floor of the sizes of the M-step's terms (all zero only for data the regression fits
#: exactly), so that their inverses stay finite.
_TINY = 1e-290


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


class AutoRegressiveEmission(StateCovariances, Emission):
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
    _width_field = "intercepts"

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

    # -- the rows ----------------------------------------------------------------------
    def n_features(self, Y: np.ndarray) -> int:
        """Dimension d of the observations behind rows of width ``d * (order + 1)``."""
        return Y.shape[1] // (self.order + 1)

    def _predict(self, params: AutoRegressiveParams, Y: np.ndarray, k: int) -> np.ndarray:
        """``A_k1 x_{t-1} + ... + A_kp x_{t-p} + b_k`` for every row, shape (n, d)."""
        d = self.n_features(Y)
        flat = np.concatenate(list(params.coefs[k]), axis=1)  # (d, p d)
        return Y[:, d:] @ flat.T + params.intercepts[k]

    def _scale_columns(self, Y: np.ndarray) -> np.ndarray:
        """The observations ``x_t`` of the lagged rows (for ``data_warnings``)."""
        return Y[:, : self.n_features(Y)]

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
        d = self.n_features(check_magnitude(Y))
        pooled = regression_moments(
            Y, np.ones((Y.shape[0], 1)), np.zeros((1, d, Y.shape[1] - d))
        )
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
    ) -> AutoRegressiveMoments:
        # Weighted moments of [x_t - B_k lags, lags] per state, about the current regression.
        return regression_moments(Y, posteriors, flat_coefs(params.coefs))

    def m_step(self, stats: AutoRegressiveMoments) -> AutoRegressiveParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(
        self, stats: AutoRegressiveMoments, fixed: Mapping[str, Any]
    ) -> AutoRegressiveParams:
        return self._regress(stats, fixed)

    def _regress(
        self, stats: AutoRegressiveMoments, fixed: Mapping[str, Any]
    ) -> AutoRegressiveParams:
        """Weighted least squares per state, with any of the fields held at ``fixed``.

        In the coordinates of the statistics, ``u = x - B z``: the regression of ``u`` on
        the lags ``z`` has the coefficients ``delta = A - B``.
        """
        mom = stats.moments
        means, scatter = mom.means(), mom.scatter()  # (K, D), (K, D, D), centred
        k_all, width = means.shape
        p = self.order
        d = width // (p + 1)
        coefs = np.empty((k_all, d, p * d))
        intercepts = np.empty((k_all, d))
        expected = np.empty((k_all, d, d))  # E[r r'] of the residuals, per unit weight
        terms = np.empty((k_all, d))  # sizes of the terms whose difference is E[r r']
        mean_res = np.empty((k_all, d))
        b_fixed = fixed.get("intercepts")
        a_fixed = None if "coefs" not in fixed else flat_coefs(np.asarray(fixed["coefs"]))
        for k in range(k_all):
            mu, mz = means[k, :d], means[k, d:]
            cuu, cuz, czz = scatter[k, :d, :d], scatter[k, :d, d:], scatter[k, d:, d:]
            if a_fixed is not None:
                delta = a_fixed[k] - stats.coefs_ref[k]
            elif b_fixed is not None:
                # no intercept to fit: second moments about the origin (u shifted by b)
                du = mu - np.asarray(b_fixed)[k]
                delta = solve_normal(czz + np.outer(mz, mz), cuz + np.outer(du, mz))
            else:
                delta = solve_normal(czz, cuz)
            b = mu - delta @ mz if b_fixed is None else np.asarray(b_fixed)[k]
            e = mu - delta @ mz - b  # mean residual: 0 when b is fitted
            mean_res[k] = e
            dz = delta @ czz
            expected[k] = cuu - delta @ cuz.T - cuz @ delta.T + dz @ delta.T + np.outer(e, e)
            terms[k] = np.diagonal(cuu) + np.einsum("ij,ij->i", dz, delta)
            coefs[k] = stats.coefs_ref[k] + delta if a_fixed is None else a_fixed[k]
            intercepts[k] = b
        if "covars" in fixed:
            covars = np.asarray(fixed["covars"])
            pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
        else:
            covars = self.strategy.covariances(
                _residual_moments(self.strategy, mom.nk, mean_res, expected),
                self.prior_strength(k_all),
                about=np.zeros((k_all, d)),
            )
            pc = self.strategy.precisions_cholesky(covars, self.reg_covar)
            self._check_resolved(pc, coefs, stats, terms)
        coefs = coefs.reshape(k_all, d, p, d).transpose(0, 2, 1, 3)
        return AutoRegressiveParams(coefs, intercepts, covars, pc)

    def _check_resolved(
        self,
        pc: np.ndarray,
        coefs: np.ndarray,
        stats: AutoRegressiveMoments,
        terms: np.ndarray,
    ) -> None:
        """Raise if a residual variance is not resolved in float64 to about 1e-4.

        Two roundings bound it, each held to the 1e-4 of
        :data:`~emframe.inference.gaussian.strategies.SINGULAR_FRACTION` (the bound of
        the Gaussian covariances):

        - the M-step's: the residual scatter is a difference of moments of sizes
          ``terms`` (about the E-step's regression), so it is known to
          ``eps * terms``; with ``reg_covar=0`` a state whose regression fits its steps
          exactly has nothing but that rounding as its covariance;
        - the log-density's: a residual ``x_ti - sum_j A_ij z_tj - b_i`` is computed to
          about ``eps * s_i``, ``s_i = |x_i| + sum_j |A_ij| |z_j|`` (root mean squares
          of the data over all states), so its standard deviation must exceed
          ``eps * s_i`` 1e4 times.

        The variance compared is that of residual i given the others,
        ``1 / inv(Sigma_k)_ii`` (the variance itself but for full covariances).
        """
        k_all, d = terms.shape
        mom = stats.moments
        eye = np.eye(d)
        # the rounding of the covariance M-step, pooled as it pools the residuals
        # (over states when tied, over features when spherical)
        diag_terms = np.maximum(terms, _TINY)[:, :, None] * eye
        pooled = self.strategy.covariances(
            _residual_moments(self.strategy, mom.nk, np.zeros((k_all, d)), diag_terms),
            0.0, about=np.zeros((k_all, d)),
        )
        pooled_pc = self.strategy.precisions_cholesky(pooled)
        size = pooled_magnitudes(stats)  # (D,)
        scale = size[:d] + np.abs(coefs) @ size[d:]  # (K, d)
        for k in range(k_all):
            prec = self.strategy.mahalanobis(eye, pc, k)  # inv(Sigma_k)_ii
            inv_terms = self.strategy.mahalanobis(eye, pooled_pc, k)
            floor = np.maximum(
                SINGULAR_FRACTION / inv_terms, (SINGULAR_FRACTION * scale[k]) ** 2
            )
            bad = np.flatnonzero(prec * floor > 1.0)
            if bad.size:
                i = int(bad[0])
                shared = self.strategy.n_matrices(k_all) < k_all
                which = f"the noise covariance of state {k}" + (
                    " (shared by all states)" if shared else ""
                )
                raise ValueError(
                    f"{which} is numerically singular: the residual variance of feature "
                    f"{i}, {1.0 / prec[i]:.3g}, is below what float64 resolves here "
                    f"({floor[i]:.3g}; a state's regression may fit its steps exactly, as "
                    "one with as few steps as regressors does); increase reg_covar (now "
                    f"{self.reg_covar:g}), about the variance that the covariance prior adds "
                    "to states of balanced weights, or use fewer states or a smaller order"
                )

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
        self._check_covars(params, n_components, d)

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
