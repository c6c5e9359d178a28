"""Expected sufficient statistics of a linear-Gaussian state-space model for EM.

The complete data are all states and *all* observation coordinates; the missing
coordinates of ``y_t`` are latent like the states. Given ``x_t`` and the observed part
``y_o`` of ``y_t``, the missing part is Gaussian (the noise ``v_t`` is independent of
everything else)::

    y_m | x_t, y_o  ~  N(H x_t + h_t, R_c),   G = R_mo R_oo^{-1},
    H = C_m - G C_o,   h_t = d_m + G (y_o - d_o),   R_c = R_mm - G R_om,

so with the smoothed moments ``x_t | Y ~ N(m_t, P_t)``::

    E[y_m | Y] = H m_t + h_t,   Cov(y_m | Y) = H P_t H' + R_c,   Cov(y_m, x_t | Y) = H P_t,

and the observed coordinates have zero conditional variance. ``G`` uses a Cholesky
solve with ``R_oo``, or the pseudo-inverse (the exact formula for a degenerate Gaussian)
when ``R_oo`` is singular. All of this depends on the step only through ``h_t``, so the
sums are formed per missing-data pattern.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg

from ._filter import (
    SmootherResult,
    _filter_arrays,
    _prepare,
    _smooth_arrays,
    _sym,
    missing_patterns,
)
from ._system import LinearGaussianSystem


@dataclasses.dataclass(frozen=True, eq=False)
class KalmanStats:
    r"""Expected sufficient statistics, summed over steps and sequences.

    Every field is a sum over the sequences of a batch, so statistics of disjoint sets
    of sequences add up (``+``, and ``sum()`` of a list) to those of their union.
    Expectations are conditional on all observed entries, under the system the
    statistics were computed with. Within a sequence of length ``T_s`` the steps are
    ``t = 1..T_s``; ``m`` is the state and ``p`` the observation dimension.

    Attributes
    ----------
    n_sequences : float
        Number of sequences.
    n_steps : float
        ``sum_s T_s``.
    n_transitions : float
        ``sum_s (T_s - 1)``.
    n_observed : ndarray, shape (p,)
        Number of observed (non-NaN) entries of each coordinate.
    log_likelihood : float
        Log-density of the observed entries.
    x_first : ndarray, shape (m,)
        ``sum_s E[x_1]``.
    xx_first : ndarray, shape (m, m)
        ``sum_s E[x_1 x_1']``.
    x_sum : ndarray, shape (m,)
        ``sum_s sum_{t=1}^{T_s} E[x_t]``.
    xx_sum : ndarray, shape (m, m)
        ``sum_s sum_{t=1}^{T_s} E[x_t x_t']``.
    x_prev : ndarray, shape (m,)
        ``sum_s sum_{t=1}^{T_s-1} E[x_t]`` (every step that has a successor).
    xx_prev : ndarray, shape (m, m)
        ``sum_s sum_{t=1}^{T_s-1} E[x_t x_t']``.
    x_next : ndarray, shape (m,)
        ``sum_s sum_{t=2}^{T_s} E[x_t]`` (every step that has a predecessor).
    xx_next : ndarray, shape (m, m)
        ``sum_s sum_{t=2}^{T_s} E[x_t x_t']``.
    x_next_x_prev : ndarray, shape (m, m)
        ``sum_s sum_{t=1}^{T_s-1} E[x_{t+1} x_t']``.
    y_sum : ndarray, shape (p,)
        ``sum_s sum_{t=1}^{T_s} E[y_t]`` (observed entries as observed, missing ones by
        their conditional mean).
    yy_sum : ndarray, shape (p, p)
        ``sum_s sum_{t=1}^{T_s} E[y_t y_t']``, including the conditional covariance of
        the missing entries.
    yx_sum : ndarray, shape (p, m)
        ``sum_s sum_{t=1}^{T_s} E[y_t x_t']``.
    e_obs : ndarray, shape (p,)
        ``sum E[e_t]`` of the observation residuals ``e_t = y_t - C x_t - d`` about the
        system's own ``C`` and ``d``, over all steps.
    ee_obs : ndarray, shape (p, p)
        ``sum E[e_t e_t']``.
    ex_obs : ndarray, shape (p, m)
        ``sum E[e_t x_t']``.
    e_trans : ndarray, shape (m,)
        ``sum E[w_t]`` of the transition residuals ``w_t = x_{t+1} - A x_t - b`` about
        the system's own ``A`` and ``b``, over every step that has a successor.
    ee_trans : ndarray, shape (m, m)
        ``sum E[w_t w_t']``.
    ex_trans : ndarray, shape (m, m)
        ``sum E[w_t x_t']``.
    e_first : ndarray, shape (m,)
        ``sum_s E[x_1 - mu0]``, about the system's own ``mu0``.
    ee_first : ndarray, shape (m, m)
        ``sum_s E[(x_1 - mu0)(x_1 - mu0)']``.

    Notes
    -----
    The residual moments are what an M-step needs to resolve a noise covariance that is
    small against the data: ``sum E[y y'] - C sum E[x y'] - ...`` cancels the data's
    scale and keeps only ``eps`` times it, while the residuals are formed step by step
    (``y_t - C m_t - d`` from the smoothed mean ``m_t``, plus the posterior covariance
    terms), so their moments are known relative to their own size. They are additive
    like the raw sums as long as every batch uses the same system, as within an E-step.
    """

    n_sequences: float
    n_steps: float
    n_transitions: float
    n_observed: np.ndarray
    log_likelihood: float
    x_first: np.ndarray
    xx_first: np.ndarray
    x_sum: np.ndarray
    xx_sum: np.ndarray
    x_prev: np.ndarray
    xx_prev: np.ndarray
    x_next: np.ndarray
    xx_next: np.ndarray
    x_next_x_prev: np.ndarray
    y_sum: np.ndarray
    yy_sum: np.ndarray
    yx_sum: np.ndarray
    e_obs: np.ndarray
    ee_obs: np.ndarray
    ex_obs: np.ndarray
    e_trans: np.ndarray
    ee_trans: np.ndarray
    ex_trans: np.ndarray
    e_first: np.ndarray
    ee_first: np.ndarray

    def _zip(self, other: Any, op: Any) -> KalmanStats:
        if not isinstance(other, KalmanStats):
            return NotImplemented
        return KalmanStats(
            **{f.name: op(getattr(self, f.name), getattr(other, f.name))
               for f in dataclasses.fields(self)}
        )

    def __add__(self, other: KalmanStats) -> KalmanStats:
        return self._zip(other, np.add)

    def __radd__(self, other: Any) -> KalmanStats:
        # lets sum() start from 0
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def scale(self, c: float) -> KalmanStats:
        """Every field multiplied by ``c`` (for convex combinations in online EM)."""
        return KalmanStats(**{f.name: getattr(self, f.name) * c for f in dataclasses.fields(self)})

    def as_dict(self) -> dict[str, Any]:
        """The fields as a ``{name: value}`` dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _conditional_gain(R: np.ndarray, o: np.ndarray, mi: np.ndarray):
    """``G = R_mo R_oo^{-1}`` and ``R_c = R_mm - G R_om``."""
    Rmm = R[np.ix_(mi, mi)]
    if o.size == 0:
        return np.zeros((mi.size, 0)), Rmm
    Rmo = R[np.ix_(mi, o)]
    if not np.any(Rmo):
        return np.zeros((mi.size, o.size)), Rmm
    Roo = R[np.ix_(o, o)]
    try:
        G = linalg.cho_solve(linalg.cho_factor(Roo, lower=True), Rmo.T).T
    except linalg.LinAlgError:
        G = Rmo @ linalg.pinvh(Roo)
    Rc = Rmm - G @ Rmo.T
    return G, 0.5 * (Rc + Rc.T)


def _observation_moments(y, system, ms, Ps, with_cov):
    """E[y_t | Y] for every step; per-pattern ``(mi, H, n, sum_t P_t)`` for the sums;
    optionally Cov(y_t | Y), shape (T, p, p)."""
    observed = ~np.isnan(y)
    pattern, idx = missing_patterns(observed)
    C, d, R = system.C, system.d, system.R
    p = C.shape[0]
    Ey = np.array(y, copy=True)
    cov = np.zeros((y.shape[0], p, p)) if with_cov else None
    groups = []
    for k, o in enumerate(idx):
        mi = np.setdiff1d(np.arange(p), o)
        if mi.size == 0:
            continue
        rows = np.flatnonzero(pattern == k)
        G, Rc = _conditional_gain(R, o, mi)
        H = C[mi] - G @ C[o]
        h = d[mi] + (y[np.ix_(rows, o)] - d[o]) @ G.T
        Ey[np.ix_(rows, mi)] = ms[rows] @ H.T + h
        P_rows = Ps[rows]
        if with_cov:
            cov[np.ix_(rows, mi, mi)] = H @ P_rows @ H.T + Rc
        groups.append((mi, H, Rc, rows.size, P_rows.sum(axis=0)))
    return Ey, groups, cov


def observation_moments(
    Y: ArrayLike, system: LinearGaussianSystem, smoothed: SmootherResult
) -> tuple[np.ndarray, np.ndarray]:
    """Moments of the observations given all observed entries (for imputation).

    Parameters
    ----------
    Y : array_like, shape (T, p)
        Observations; NaN entries are missing. Not modified.
    system : LinearGaussianSystem
    smoothed : SmootherResult
        :func:`rts_smoother` of the same ``Y``, ``system`` and lengths.

    Returns
    -------
    means : ndarray, shape (T, p)
        ``E[y_t | Y]``: the observed entries themselves, and the conditional means of
        the missing ones.
    covs : ndarray, shape (T, p, p)
        ``Cov(y_t | Y)``, zero in the rows and columns of observed entries.
    """
    y, _, _ = _prepare(Y, system, None)
    if smoothed.smoothed_means.shape != (y.shape[0], system.n_dim_state):
        raise ValueError("smoothed does not match Y and system (wrong number of steps or states)")
    Ey, _, cov = _observation_moments(y, system, smoothed.smoothed_means,
                                      smoothed.smoothed_covs, True)
    return Ey, cov


def _sum_outer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a.T @ b


def expected_statistics(
    Y: ArrayLike,
    system: LinearGaussianSystem,
    lengths: ArrayLike | None = None,
    *,
    backend: str = "auto",
) -> KalmanStats:
    """E-step of EM for a linear-Gaussian state-space model.

    Runs the filter and smoother and sums the expected complete-data sufficient
    statistics (states and all observation coordinates, the missing ones by their
    conditional moments); see :class:`KalmanStats` for each sum.

    Parameters
    ----------
    Y : array_like, shape (T, p)
        Observations, sequences concatenated; NaN entries are missing. Not modified.
    system : LinearGaussianSystem
        The current parameters.
    lengths : array_like of int, shape (n_seq,), optional
        Lengths of the sequences; default one sequence.
    backend : {"auto", "numpy", "numba"}, default "auto"

    Returns
    -------
    KalmanStats
        Additive over sequences: the statistics of a split of the sequences into
        groups sum to those of all of them.
    """
    y, lens, starts = _prepare(Y, system, lengths)
    filt, seq_ll, total = _filter_arrays(y, system, lens, starts, backend)
    (ms, Ps, lag), ww, wx = _smooth_arrays(system, filt, lens, starts, backend)
    del filt
    return _statistics(y, system, lens, starts, ms, Ps, lag, total, ww.sum(axis=0),
                       wx.sum(axis=0))


def _statistics(y, system, lens, starts, ms, Ps, lag, total, ww, wx) -> KalmanStats:
    lasts = starts + lens - 1
    has_next = np.ones(y.shape[0], dtype=bool)
    has_next[lasts] = False
    prev = np.flatnonzero(has_next)

    x_sum = ms.sum(axis=0)
    xx_sum = Ps.sum(axis=0) + _sum_outer(ms, ms)
    x_first = ms[starts].sum(axis=0)
    xx_first = Ps[starts].sum(axis=0) + _sum_outer(ms[starts], ms[starts])
    x_last = ms[lasts].sum(axis=0)
    xx_last = Ps[lasts].sum(axis=0) + _sum_outer(ms[lasts], ms[lasts])
    cross = lag.sum(axis=0) + _sum_outer(ms[prev + 1], ms[prev])

    Ey, groups, _ = _observation_moments(y, system, ms, Ps, False)
    yy = _sum_outer(Ey, Ey)
    yx = _sum_outer(Ey, ms)
    for mi, H, Rc, n, P_sum in groups:
        yy[np.ix_(mi, mi)] += H @ P_sum @ H.T + n * Rc
        yx[mi] += H @ P_sum
    return KalmanStats(
        n_sequences=float(lens.size),
        n_steps=float(y.shape[0]),
        n_transitions=float(y.shape[0] - lens.size),
        n_observed=(~np.isnan(y)).sum(axis=0).astype(float),
        log_likelihood=total,
        x_first=x_first,
        xx_first=_sym(xx_first),
        x_sum=x_sum,
        xx_sum=_sym(xx_sum),
        x_prev=x_sum - x_last,
        xx_prev=_sym(xx_sum - xx_last),
        x_next=x_sum - x_first,
        xx_next=_sym(xx_sum - xx_first),
        x_next_x_prev=cross,
        y_sum=Ey.sum(axis=0),
        yy_sum=_sym(yy),
        yx_sum=yx,
        **_residual_moments(y, system, starts, prev, ms, Ps, ww, wx),
    )


def _residual_moments(y, system, starts, prev, ms, Ps, ww, wx) -> dict[str, np.ndarray]:
    """The residual sums of :class:`KalmanStats` (``e_obs`` ... ``ee_first``).

    With ``r_t = y_o - C_o m_t - d_o`` on the observed coordinates ``o``, the missing
    ones' residual is ``e_m = G e_o + nu`` (``G``, ``R_c`` of :func:`_conditional_gain`,
    ``nu ~ N(0, R_c)`` independent of the state), so ``e_t = M e_o + nu`` with
    ``M = [I; G]``, ``E[e_t] = M r_t``, ``Cov(e_t) = K P_t K' + R_c`` and
    ``Cov(e_t, x_t) = -K P_t`` where ``K = M C_o``. No step subtracts two quantities of
    the data's size: the means are differences formed step by step. The transition
    residuals' posterior covariances ``ww = sum Cov(w_t | Y)`` and
    ``wx = sum Cov(w_t, x_t | Y)`` come from the smoother, formed without cancellation
    (see ``_filter``).
    """
    A, b, C, d, R = system.A, system.b, system.C, system.d, system.R
    p, m = C.shape
    pattern, idx = missing_patterns(~np.isnan(y))
    E = np.empty((y.shape[0], p))
    ee = np.zeros((p, p))
    ex = np.zeros((p, m))
    for k, o in enumerate(idx):
        rows = np.flatnonzero(pattern == k)
        r = y[np.ix_(rows, o)] - (ms[rows] @ C[o].T + d[o])
        E[np.ix_(rows, o)] = r
        K = np.zeros((p, m))
        K[o] = C[o]
        mi = np.setdiff1d(np.arange(p), o)
        if mi.size:
            G, Rc = _conditional_gain(R, o, mi)
            E[np.ix_(rows, mi)] = r @ G.T
            K[mi] = G @ C[o]
            ee[np.ix_(mi, mi)] += rows.size * Rc
        KP = K @ Ps[rows].sum(axis=0)
        ee += KP @ K.T
        ex -= KP
    ee += _sum_outer(E, E)
    ex += _sum_outer(E, ms)

    nxt = prev + 1
    W = ms[nxt] - (ms[prev] @ A.T + b)
    F = ms[starts] - system.mu0
    return dict(
        e_obs=E.sum(axis=0), ee_obs=_sym(ee), ex_obs=ex,
        e_trans=W.sum(axis=0), ee_trans=_sym(_sum_outer(W, W) + ww),
        ex_trans=_sum_outer(W, ms[prev]) + wx,
        e_first=F.sum(axis=0), ee_first=_sym(_sum_outer(F, F) + Ps[starts].sum(axis=0)),
    )
