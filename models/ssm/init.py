"""Data-driven initial parameters of a linear-Gaussian state-space model.

Every field given by the user is used as given; the others are derived from the data
(NaN entries missing), in this order, each from what came before:

1. ``observation_offset``: the observed column means (zero if the offset is off).
2. ``observation_matrix``: principal axes of the standardised data (missing entries
   filled with their column means), the ``j``-th column scaled so that a state of unit
   variance explains half of the ``j``-th principal variance; columns beyond the number
   of observed variables start at zero. A small random perturbation (a tenth of each
   column's standard deviation over ``sqrt(m)``) drawn from the seed breaks ties, gives
   such extra state columns a direction, and lets restarts (``n_init``) differ.
3. ``observation_covariance``: a quarter of each column's mean squared step-to-step
   difference (within sequences, where both steps are observed), on the diagonal: for
   white noise that is half its variance, and unlike the variance it is not inflated by
   trends or random walks. A column with no such pair of steps takes half its variance.
4. States ``x_t = C^+ (y_t - d)`` (the mean-filled data projected by the pseudo-inverse).
5. ``transition_matrix`` and ``transition_offset``: least squares of ``x_{t+1}`` on
   ``x_t`` within sequences (the identity and zero when no sequence has two steps).
6. ``transition_covariance``: the diagonal of that regression's residual mean square.
7. ``initial_state_mean``: the mean of the projected first states of the sequences;
   ``initial_state_covariance``: the variances of the projected states, on the diagonal.

A variance that comes out zero or below 1e-3 of its reference (a constant column, a
perfectly predicted state) is raised to that floor, or to 1 when the reference is zero
too, so that every initial covariance is positive definite. The same data and seed
always give the same start.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from emframe.models.ssm.mstep import BlockMoments, fit_block
from emframe.models.ssm.params import SSMParams

_FLOOR = 1e-3


def _floor(v: np.ndarray, ref: np.ndarray) -> np.ndarray:
    ref = np.where(ref > 0, ref, 1.0)
    return np.maximum(v, _FLOOR * ref)


def _observed_moments(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    observed = ~np.isnan(Y)
    n = observed.sum(axis=0)
    filled = np.where(observed, Y, 0.0)
    mean = np.divide(filled.sum(axis=0), n, out=np.zeros(Y.shape[1]), where=n > 0)
    dev = np.where(observed, Y - mean, 0.0)
    var = np.divide((dev**2).sum(axis=0), n, out=np.zeros(Y.shape[1]), where=n > 1)
    return mean, np.where(var > 0, var, 1.0)


def _noise_variance(Y: np.ndarray, prev: np.ndarray, var: np.ndarray) -> np.ndarray:
    """A quarter of the mean squared difference of consecutive observed values per column."""
    diff = Y[prev + 1] - Y[prev]
    ok = ~np.isnan(diff)
    n = ok.sum(axis=0)
    msd = np.divide(np.where(ok, diff, 0.0).__pow__(2).sum(axis=0), n,
                    out=np.zeros(Y.shape[1]), where=n > 0)
    return np.where(msd > 0, msd / 4.0, var / 2.0)


def _principal_loadings(Yf: np.ndarray, mean: np.ndarray, var: np.ndarray, m: int,
                        rng: np.random.Generator) -> np.ndarray:
    p = Yf.shape[1]
    sd = np.sqrt(var)
    Z = (Yf - mean) / sd
    lam, V = np.linalg.eigh(Z.T @ Z / Z.shape[0])
    order = np.argsort(lam)[::-1]
    lam, V = np.maximum(lam[order], 0.0), V[:, order]
    # an eigenvector's sign is arbitrary, and eigh's choice can change with the data's
    # scale: make each column's first clearly non-zero entry positive, so rescaled data
    # rescale C. Not the largest entry: standardised data make ties common (p = 2 gives
    # (1, 1) / sqrt(2) and (1, -1) / sqrt(2) always), which rounding would break.
    first = np.argmax(np.abs(V) > 1e-6, axis=0)
    V = V * np.where(V[first, np.arange(p)] < 0, -1.0, 1.0)
    k = min(m, p)
    C = np.zeros((p, m))
    C[:, :k] = V[:, :k] * np.sqrt(lam[:k] / 2.0)
    C += 0.1 / np.sqrt(m) * rng.standard_normal((p, m))
    return sd[:, None] * C


def initial_params(
    Y: np.ndarray,
    lengths: np.ndarray,
    n_dim_state: int,
    given: Mapping[str, Any],
    rng: np.random.Generator,
) -> SSMParams:
    """Initial parameters for data ``Y`` (see the module docstring for the recipe).

    Parameters
    ----------
    Y : ndarray, shape (T, p)
        Observations, NaN for missing entries.
    lengths : ndarray of int, shape (n_seq,)
    n_dim_state : int
    given : mapping of str to ndarray
        Validated values of some fields (user-given, and zero offsets switched off).
    rng : numpy Generator

    Returns
    -------
    SSMParams
    """
    m = int(n_dim_state)
    Y = np.asarray(Y, dtype=float)
    out: dict[str, np.ndarray] = dict(given)
    mean, var = _observed_moments(Y)
    Yf = np.where(np.isnan(Y), mean, Y)
    # draw even when C is given, so a seed means the same stream whatever is given
    C = _principal_loadings(Yf, mean, var, m, rng)
    out.setdefault("observation_offset", mean)
    out.setdefault("observation_matrix", C)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    has_next = np.ones(Y.shape[0], dtype=bool)
    has_next[starts + np.asarray(lengths) - 1] = False
    prev = np.flatnonzero(has_next)
    out.setdefault("observation_covariance", np.diag(_noise_variance(Y, prev, var)))
    X = (Yf - out["observation_offset"]) @ np.linalg.pinv(out["observation_matrix"]).T
    x_var = X.var(axis=0)
    if prev.size:
        Xp, Xn = X[prev], X[prev + 1]
        mom = BlockMoments.raw(Xn.T @ Xn, Xn.T @ Xp, Xp.T @ Xp, Xn.sum(0), Xp.sum(0),
                               float(prev.size))
        A, b, scatter, _ = fit_block(mom, out.get("transition_matrix"),
                                  out.get("transition_offset"))
        q = np.diag(scatter) / prev.size
    else:
        A = out.get("transition_matrix", np.eye(m))
        b = out.get("transition_offset", np.zeros(m))
        q = x_var
    out.setdefault("transition_matrix", A)
    out.setdefault("transition_offset", b)
    out.setdefault("transition_covariance", np.diag(_floor(q, x_var)))
    out.setdefault("initial_state_mean", X[starts].mean(axis=0))
    out.setdefault("initial_state_covariance", np.diag(_floor(x_var, x_var)))
    return SSMParams(**out)
