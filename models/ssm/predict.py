"""Forecasts, one-step-ahead predictive densities and simulation for a fitted system.

Pure functions of a :class:`~emframe.inference.kalman.LinearGaussianSystem` and filter
output; the estimator wraps them.
"""

from __future__ import annotations

import math

import numpy as np

from emframe.core.validation import check_output_size
from emframe.inference.kalman import FilterResult, LinearGaussianSystem, psd_factor

_LOG_2PI = math.log(2.0 * math.pi)


def propagate(
    system: LinearGaussianSystem, mean: np.ndarray, cov: np.ndarray, n_steps: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Predict ``n_steps`` ahead from the filtered moments of the last step of each sequence.

    Parameters
    ----------
    system : LinearGaussianSystem
    mean : ndarray, shape (n_seq, m)
        ``E[x_T | y_1..y_T]`` of each sequence.
    cov : ndarray, shape (n_seq, m, m)
        ``Cov(x_T | y_1..y_T)``.
    n_steps : int
        Horizon ``h >= 0``.

    Returns
    -------
    obs_means : ndarray, shape (n_seq, h, p)
        ``E[y_{T+k} | y_1..y_T]`` for ``k = 1..h``.
    obs_covs : ndarray, shape (n_seq, h, p, p)
    state_means : ndarray, shape (n_seq, h, m)
    state_covs : ndarray, shape (n_seq, h, m, m)
    """
    A, b, Q, C, d, R = system.A, system.b, system.Q, system.C, system.d, system.R
    n_seq, m = mean.shape
    p = C.shape[0]
    sm = np.empty((n_seq, n_steps, m))
    sP = np.empty((n_seq, n_steps, m, m))
    om = np.empty((n_seq, n_steps, p))
    oP = np.empty((n_seq, n_steps, p, p))
    x, P = mean, cov
    for k in range(n_steps):
        x = x @ A.T + b
        P = A @ P @ A.T + Q
        P = 0.5 * (P + np.swapaxes(P, -1, -2))
        S = C @ P @ C.T + R
        sm[:, k], sP[:, k] = x, P
        om[:, k], oP[:, k] = x @ C.T + d, 0.5 * (S + np.swapaxes(S, -1, -2))
    return om, oP, sm, sP


def predictive_log_densities(
    Y: np.ndarray, system: LinearGaussianSystem, filt: FilterResult
) -> np.ndarray:
    """``log p(y_t,o | y_1..y_{t-1})`` of each step's observed entries ``o``; 0 if none.

    Parameters
    ----------
    Y : ndarray, shape (T, p)
        NaN for missing entries.
    system : LinearGaussianSystem
    filt : FilterResult
        :func:`~emframe.inference.kalman.kalman_filter` of ``Y``; its predicted moments.

    Returns
    -------
    ndarray, shape (T,)
        They sum to the log-likelihood of each sequence (its steps' terms).
    """
    observed = ~np.isnan(Y)
    out = np.zeros(Y.shape[0])
    C, d, R = system.C, system.d, system.R
    patterns, inverse = np.unique(observed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    for k, row in enumerate(patterns):
        o = np.flatnonzero(row)
        if o.size == 0:
            continue
        rows = np.flatnonzero(inverse == k)
        Co = C[o]
        e = Y[np.ix_(rows, o)] - filt.predicted_means[rows] @ Co.T - d[o]
        # A triangular factor of S = C P C' + R from the factors (the filter's own
        # square-root form): S itself can lose its observed part to rounding when P is
        # huge in a direction C barely sees.
        Lr = np.broadcast_to(psd_factor(R[np.ix_(o, o)]), (rows.size, o.size, o.size))
        pre = np.concatenate([Co @ filt.predicted_factors[rows], Lr], axis=-1)
        L = np.swapaxes(np.linalg.qr(np.swapaxes(pre, -1, -2), mode="r"), -1, -2)
        z = np.linalg.solve(L, e[..., None])[..., 0]
        logdet = 2.0 * np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))).sum(axis=-1)
        out[rows] = -0.5 * (o.size * _LOG_2PI + logdet + np.sum(z**2, axis=-1))
    return out


def simulate(
    system: LinearGaussianSystem, n_steps: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One sequence drawn from the model (refused if over ``MAX_OUTPUT_BYTES``).

    Returns
    -------
    Y : ndarray, shape (n_steps, p)
    X : ndarray, shape (n_steps, m)
        The states.
    """
    m, p = system.n_dim_state, system.n_dim_obs
    check_output_size(
        n_steps, "n_steps", 8 * (p + m),
        what=f"{n_steps} steps of {p} observed and {m} state variables",
        fix="simulate fewer steps",
    )
    Lq, Lr, L0 = (np.linalg.cholesky(v) for v in (system.Q, system.R, system.S0))
    w = rng.standard_normal((n_steps, m)) @ Lq.T
    v = rng.standard_normal((n_steps, p)) @ Lr.T
    X = np.empty((n_steps, m))
    X[0] = system.mu0 + L0 @ rng.standard_normal(m)
    A, b = system.A, system.b
    for t in range(1, n_steps):
        X[t] = A @ X[t - 1] + b + w[t - 1]
    return X @ system.C.T + system.d + v, X



def check_horizon(
    system: LinearGaussianSystem, n_seq: int, n_steps: int
) -> LinearGaussianSystem:
    """Refuse a horizon whose forecast moments cannot be held, before any filtering;
    return ``system`` unchanged."""
    m, p = system.n_dim_state, system.n_dim_obs
    # the predicted states' moments are computed whether or not they are returned
    check_output_size(
        n_steps, "n_steps", 8 * n_seq * (p + p * p + m + m * m),
        what=(f"the forecast means and covariances of {n_seq} sequence(s), {p} observed "
              f"and {m} state variables, for {n_steps} steps"),
        fix="forecast a shorter horizon",
    )
    return system
