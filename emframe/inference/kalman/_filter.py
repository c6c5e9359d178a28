"""Kalman filter and Rauch-Tung-Striebel smoother (numpy reference, numba dispatch).

Filter step, with ``o`` the observed coordinates of ``y_t`` (NaN entries are missing)::

    S = C_o P C_o' + R_oo                  innovation covariance, Cholesky-factorised
    K = P C_o' S^{-1}                      by two triangular solves, no inverse
    m_f = m + K (y_o - C_o m - d_o)
    P_f = (I - K C_o) P (I - K C_o)' + K R_oo K'      Joseph form

The Joseph form is a sum of positive semi-definite terms, so rounding cannot make the
filtered covariance indefinite (the textbook ``(I - K C) P`` can, when ``R`` is nearly
singular); every covariance is also symmetrised exactly. A step with nothing observed
is a pure prediction.

Smoother step (``P_p = A P_f A' + Q`` is the predicted covariance of the next step)::

    J = P_f A' P_p^{-1}                    Cholesky solve; pseudo-inverse if P_p is singular
    m_s = m_f + J (m_s[t+1] - m_p[t+1])
    P_s = (I - J A) P_f (I - J A)' + J (Q + P_s[t+1]) J'
    Cov(x_{t+1}, x_t | Y) = P_s[t+1] J'

The smoothed covariance is written in the same Joseph-like form (it equals the textbook
``P_f + J (P_s[t+1] - P_p) J'`` because ``J P_p = P_f A'``), again a sum of positive
semi-definite terms.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import linalg
from scipy.linalg import lapack

from emframe.inference.compiled import call_interruptible

from ._system import LinearGaussianSystem, check_lengths, check_observations, use_numba

_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True, eq=False)
class FilterResult:
    """Output of :func:`kalman_filter` (``T`` steps, state dimension ``m``).

    Attributes
    ----------
    predicted_means : ndarray, shape (T, m)
        ``E[x_t | y_1..y_{t-1}]`` within each sequence (``mu0`` at a sequence's start).
    predicted_covs : ndarray, shape (T, m, m)
        ``Cov(x_t | y_1..y_{t-1})`` (``S0`` at a sequence's start).
    filtered_means : ndarray, shape (T, m)
        ``E[x_t | y_1..y_t]``.
    filtered_covs : ndarray, shape (T, m, m)
        ``Cov(x_t | y_1..y_t)``.
    log_likelihood : float
        Log-density of all observed entries, summed over sequences.
    seq_log_likelihood : ndarray, shape (n_seq,)
        The same per sequence (0.0 for a sequence with nothing observed).
    """

    predicted_means: np.ndarray
    predicted_covs: np.ndarray
    filtered_means: np.ndarray
    filtered_covs: np.ndarray
    log_likelihood: float
    seq_log_likelihood: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class SmootherResult:
    """Output of :func:`rts_smoother` (``T`` steps, state dimension ``m``).

    Attributes
    ----------
    smoothed_means : ndarray, shape (T, m)
        ``E[x_t | Y]``, conditioning on every observed entry of the step's sequence.
    smoothed_covs : ndarray, shape (T, m, m)
        ``Cov(x_t | Y)``.
    lag_one_covs : ndarray, shape (T, m, m)
        ``lag_one_covs[t] = Cov(x_{t+1}, x_t | Y)``; zero at the last step of each
        sequence (there is no ``x_{t+1}`` there).
    log_likelihood : float
        Log-density of all observed entries, summed over sequences.
    seq_log_likelihood : ndarray, shape (n_seq,)
    """

    smoothed_means: np.ndarray
    smoothed_covs: np.ndarray
    lag_one_covs: np.ndarray
    log_likelihood: float
    seq_log_likelihood: np.ndarray


def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + a.T)


def missing_patterns(observed: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """Group steps by their set of observed coordinates.

    Parameters
    ----------
    observed : ndarray of bool, shape (T, p)

    Returns
    -------
    pattern : ndarray of int64, shape (T,)
        Index of each step's pattern.
    observed_idx : list of ndarray of int64
        Observed coordinates of each pattern, in increasing order.
    """
    p = observed.shape[1]
    if p <= 62:
        codes = observed.astype(np.int64) @ (np.int64(1) << np.arange(p, dtype=np.int64))
        uniq, pattern = np.unique(codes, return_inverse=True)
        idx = [np.flatnonzero((int(c) >> np.arange(p)) & 1) for c in uniq]
    else:
        rows, pattern = np.unique(observed, axis=0, return_inverse=True)
        idx = [np.flatnonzero(r) for r in rows]
    return pattern.reshape(-1).astype(np.int64), idx


class _Potrf:
    """Cholesky factor / solve on small matrices via LAPACK, without scipy's wrappers'
    per-call checks (which cost more than the factorisation at these sizes)."""

    def __init__(self) -> None:
        self.potrf, self.potrs = lapack.get_lapack_funcs(("potrf", "potrs"), dtype=np.float64)

    def factor(self, a: np.ndarray) -> np.ndarray | None:
        c, info = self.potrf(a, lower=1, clean=1)
        return c if info == 0 else None

    def solve(self, c: np.ndarray, rhs: np.ndarray) -> np.ndarray:
        x, info = self.potrs(c, rhs, lower=1)
        if info != 0:  # pragma: no cover - potrs only fails on bad arguments
            raise RuntimeError(f"LAPACK potrs failed (info={info})")
        return x


def _filter_sequence(
    Y: np.ndarray, pattern: np.ndarray, pats: list[Any], sys: LinearGaussianSystem,
    first: int, n: int, out: tuple[np.ndarray, ...], chol: _Potrf,
) -> float:
    """Filter one sequence in place into ``out``; return its log-likelihood."""
    pm, pP, fm, fP = out
    A, b, Q = sys.A, sys.b, sys.Q
    eye = np.eye(sys.n_dim_state)
    terms = np.zeros(n)
    mf = Pf = None
    for i, t in enumerate(range(first, first + n)):
        if i == 0:
            m, P = sys.mu0, sys.S0
        else:
            m = A @ mf + b
            P = _sym(A @ Pf @ A.T + Q)
        pm[t], pP[t] = m, P
        o, Co, do, Roo = pats[pattern[t]]
        if o.size == 0:
            mf, Pf = m, P
        else:
            W = P @ Co.T
            S = _sym(Co @ W + Roo)
            c = chol.factor(S)
            if c is None:
                raise ValueError(
                    f"the innovation covariance C P C' + R at row {t} is not positive definite "
                    "(the observed coordinates there have a degenerate distribution); make R or "
                    "the state covariances nonsingular"
                )
            e = Y[t, o] - Co @ m - do
            sol = chol.solve(c, np.column_stack([W.T, e]))
            K = sol[:, :-1].T
            mf = m + K @ e
            IKC = eye - K @ Co
            Pf = _sym(IKC @ P @ IKC.T + K @ Roo @ K.T)
            logdet = 2.0 * np.sum(np.log(np.diagonal(c)))
            terms[i] = -0.5 * (o.size * _LOG_2PI + logdet + e @ sol[:, -1])
        fm[t], fP[t] = mf, Pf
    return math.fsum(terms)


def _prepare(Y: ArrayLike, system: LinearGaussianSystem, lengths: ArrayLike | None) -> tuple:
    if not isinstance(system, LinearGaussianSystem):
        raise TypeError(f"system must be a LinearGaussianSystem; got {type(system).__name__}")
    y = check_observations(Y, system)
    lens = check_lengths(lengths, y.shape[0])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return y, lens, starts


def _filter_numpy(y, system, lens, starts, seqs, out, seq_ll) -> None:
    observed = ~np.isnan(y)
    pattern, idx = missing_patterns(observed)
    pats = [(o, system.C[o], system.d[o], system.R[np.ix_(o, o)]) for o in idx]
    chol = _Potrf()
    for s in seqs:
        seq_ll[s] = _filter_sequence(y, pattern, pats, system, starts[s], lens[s], out, chol)


def _filter_arrays(y, system, lens, starts, backend):
    T, m = y.shape[0], system.n_dim_state
    seq_ll = np.zeros(lens.size)
    if use_numba(backend):
        from . import _numba

        args = (y, ~np.isnan(y), starts, lens, system.A, system.b, system.Q,
                system.C, system.d, system.R, system.mu0, system.S0)
        *out, seq_ll, failed = call_interruptible(_numba.kalman_filter, *args)
        if failed.any():
            # the reference path raises the explanatory error
            _filter_numpy(y, system, lens, starts, np.flatnonzero(failed), out, seq_ll)
    else:
        out = [np.empty((T, m)), np.empty((T, m, m)), np.empty((T, m)), np.empty((T, m, m))]
        _filter_numpy(y, system, lens, starts, range(lens.size), out, seq_ll)
    total = math.fsum(seq_ll)
    if not np.isfinite(total) or not np.all(np.isfinite(out[3][starts + lens - 1])):
        raise ValueError(
            "the filter overflowed (non-finite log-likelihood or covariances); "
            "the system is probably unstable over long stretches of missing data"
        )
    return out, seq_ll, total


def kalman_filter(
    Y: ArrayLike,
    system: LinearGaussianSystem,
    lengths: ArrayLike | None = None,
    *,
    backend: str = "auto",
) -> FilterResult:
    """Kalman filter with missing entries and several sequences.

    Parameters
    ----------
    Y : array_like, shape (T, p)
        Observations, the sequences concatenated; NaN entries are missing (single
        entries, whole steps or whole sequences). Not modified.
    system : LinearGaussianSystem
    lengths : array_like of int, shape (n_seq,), optional
        Lengths of the sequences (hmmlearn convention); each restarts from ``mu0, S0``.
        Default: one sequence.
    backend : {"auto", "numpy", "numba"}, default "auto"
        "auto" uses the numba kernels when numba is installed; the numpy path is the
        reference.

    Returns
    -------
    FilterResult

    Raises
    ------
    ValueError
        Bad shapes, infinite values, lengths not summing to ``T``, an innovation
        covariance that is not positive definite, or overflow.
    """
    y, lens, starts = _prepare(Y, system, lengths)
    (pm, pP, fm, fP), seq_ll, total = _filter_arrays(y, system, lens, starts, backend)
    return FilterResult(pm, pP, fm, fP, total, seq_ll)


def _smoother_gain(Pp: np.ndarray, APf: np.ndarray, chol: _Potrf) -> np.ndarray:
    """``J' = Pp^{-1} A Pf``; the pseudo-inverse when ``Pp`` is singular, which is the
    exact conditional-Gaussian formula (the range of ``A Pf`` lies in that of ``Pp``)."""
    c = chol.factor(Pp)
    if c is not None:
        return chol.solve(c, APf)
    return linalg.pinvh(Pp) @ APf


def _smooth_sequence(A, Q, filt, first, n, out, chol) -> None:
    pm, pP, fm, fP = filt
    ms, Ps, lag = out
    last = first + n - 1
    ms[last], Ps[last], lag[last] = fm[last], fP[last], 0.0
    eye = np.eye(A.shape[0])
    for t in range(last - 1, first - 1, -1):
        J = _smoother_gain(pP[t + 1], A @ fP[t], chol).T
        ms[t] = fm[t] + J @ (ms[t + 1] - pm[t + 1])
        IJA = eye - J @ A
        Ps[t] = _sym(IJA @ fP[t] @ IJA.T + J @ (Q + Ps[t + 1]) @ J.T)
        lag[t] = Ps[t + 1] @ J.T


def _smooth_arrays(system, filt, lens, starts, backend):
    if use_numba(backend):
        from . import _numba

        *out, failed = call_interruptible(_numba.rts_smoother, system.A, system.Q, *filt,
                                          starts, lens)
        seqs = np.flatnonzero(failed)  # singular predicted covariance: pseudo-inverse
    else:
        T, m = filt[0].shape
        out = [np.empty((T, m)), np.empty((T, m, m)), np.empty((T, m, m))]
        seqs = range(lens.size)
    chol = _Potrf()
    for s in seqs:
        _smooth_sequence(system.A, system.Q, filt, starts[s], lens[s], out, chol)
    return out


def rts_smoother(
    Y: ArrayLike,
    system: LinearGaussianSystem,
    lengths: ArrayLike | None = None,
    *,
    backend: str = "auto",
) -> SmootherResult:
    """Rauch-Tung-Striebel smoother: moments of the states given all observed entries.

    Parameters
    ----------
    Y : array_like, shape (T, p)
        Observations; NaN entries are missing. Not modified.
    system : LinearGaussianSystem
    lengths : array_like of int, shape (n_seq,), optional
        Lengths of the sequences; default one sequence.
    backend : {"auto", "numpy", "numba"}, default "auto"

    Returns
    -------
    SmootherResult
        Smoothed means and covariances, lag-one covariances and the log-likelihood.

    Raises
    ------
    ValueError
        As :func:`kalman_filter`.
    """
    y, lens, starts = _prepare(Y, system, lengths)
    filt, seq_ll, total = _filter_arrays(y, system, lens, starts, backend)
    ms, Ps, lag = _smooth_arrays(system, filt, lens, starts, backend)
    return SmootherResult(ms, Ps, lag, total, seq_ll)
