"""Square-root Kalman filter and Rauch-Tung-Striebel smoother (numpy reference, numba dispatch).

Every covariance is carried as a factor ``L`` with ``P = L L'`` and updated by an
orthogonal triangularisation (:func:`tria`: ``L = tria(M)`` is the lower-triangular
``L`` with ``L L' = M M'``, from a QR factorisation of ``M'``), the array form of the
filter. Filter step, with ``o`` the observed coordinates of ``y_t`` (NaN entries are
missing), ``L`` the factor of the predicted covariance and ``F_R`` one of ``R_oo``::

    [ F_R  C_o L ]           [ X  0  ]     X X' = S = C_o P C_o' + R_oo   (innovation)
    [ 0    L     ]  tria ->  [ Y  L_f]     L_f L_f' = P_f,  K = Y X^{-1}

    m_f = m + Y X^{-1} e,   e = y_o - C_o m - d_o,
    log p(y_o | past) = -1/2 (|o| log 2 pi + 2 sum log|X_ii| + |X^{-1} e|^2)

and the time update ``L_p = tria([A L_f, F_Q])``, ``m_p = A m_f + b`` (``F_Q F_Q' = Q``).
A step with nothing observed is a pure prediction. No covariance is ever formed by a
subtraction: ``X``, ``L_f`` and ``L_p`` come out of orthogonal transformations of their
inputs, so the innovation covariance ``X X'`` is positive semi-definite by construction
and its factor is accurate relative to the rows it is computed from, even when the
predicted covariance is many orders of magnitude larger than its observed part (an
explosive transition, nearly noiseless observations), where the covariance form
``C P C' + R`` loses every digit and may come out indefinite. A diagonal entry of ``X``
at rounding level against its row (an observed coordinate exactly determined by the
others and the past) is a clear ValueError.

Smoother step (``P_p = A P_f A' + Q``, the predicted covariance of the next step)::

    J = P_f A' P_p^{-1}                    two triangular solves with L_p; pseudo-inverse
                                           if P_p is singular
    m_s = m_f + J (m_s[t+1] - m_p[t+1])
    L_s = tria([(I - J A) L_f,  J F_Q,  J L_s[t+1]])
    Cov(x_{t+1}, x_t | Y) = P_s[t+1] J'

``P_s = L_s L_s'`` equals the textbook ``P_f + J (P_s[t+1] - P_p) J'`` (because
``J P_p = P_f A'``); it is a sum of positive semi-definite terms, and every covariance
returned is formed as ``L L'`` and symmetrised exactly.
"""

from __future__ import annotations

import dataclasses
import functools
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

    The covariances are formed from their factors on first access (``L L'``, exactly
    symmetric), so a caller that needs only the log-likelihood never pays for them.

    Attributes
    ----------
    predicted_means : ndarray, shape (T, m)
        ``E[x_t | y_1..y_{t-1}]`` within each sequence (``mu0`` at a sequence's start).
    predicted_factors : ndarray, shape (T, m, m)
        ``L`` with ``L L' = Cov(x_t | y_1..y_{t-1})``: lower triangular, except at a
        sequence's start (a factor of ``S0``, see :func:`psd_factor`).
    filtered_means : ndarray, shape (T, m)
        ``E[x_t | y_1..y_t]``.
    filtered_factors : ndarray, shape (T, m, m)
        ``L`` with ``L L' = Cov(x_t | y_1..y_t)`` (the predicted one at a step with
        nothing observed).
    log_likelihood : float
        Log-density of all observed entries, summed over sequences.
    seq_log_likelihood : ndarray, shape (n_seq,)
        The same per sequence (0.0 for a sequence with nothing observed).
    predicted_covs : ndarray, shape (T, m, m)
        ``Cov(x_t | y_1..y_{t-1})`` (``S0`` at a sequence's start, to rounding).
    filtered_covs : ndarray, shape (T, m, m)
        ``Cov(x_t | y_1..y_t)``.
    """

    predicted_means: np.ndarray
    predicted_factors: np.ndarray
    filtered_means: np.ndarray
    filtered_factors: np.ndarray
    log_likelihood: float
    seq_log_likelihood: np.ndarray

    @functools.cached_property
    def predicted_covs(self) -> np.ndarray:
        """``Cov(x_t | y_1..y_{t-1})``, shape (T, m, m)."""
        return _outer(self.predicted_factors)

    @functools.cached_property
    def filtered_covs(self) -> np.ndarray:
        """``Cov(x_t | y_1..y_t)``, shape (T, m, m)."""
        return _outer(self.filtered_factors)


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


#: A diagonal entry of a triangular factor at most this fraction of the norm of its row
#: (the entry's conditional standard deviation given the earlier coordinates, against
#: its marginal one) is not resolved by float64: the factor is treated as singular.
RANK_RTOL = 100.0 * float(np.finfo(np.float64).eps)


class _Lapack:
    """QR, Cholesky and triangular solves on small matrices via LAPACK, without scipy's
    wrappers' per-call checks (which cost more than the factorisation at these sizes)."""

    def __init__(self) -> None:
        self.geqrf, self.potrf, self.trtrs = lapack.get_lapack_funcs(
            ("geqrf", "potrf", "trtrs"), dtype=np.float64)

    def tria(self, M: np.ndarray) -> np.ndarray:
        """Lower-triangular ``L`` (n, n) with ``L L' = M M'`` for ``M`` (n, k), ``k >= n``."""
        n = M.shape[0]
        r = self.geqrf(M.T)[0]
        return np.tril(r[:n].T)

    def solve(self, L: np.ndarray, rhs: np.ndarray, trans: int = 0) -> np.ndarray:
        """``L^{-1} rhs`` (``L'^{-1} rhs`` with ``trans=1``) for a lower-triangular ``L``."""
        x, info = self.trtrs(L, rhs, lower=1, trans=trans)
        if info != 0:  # pragma: no cover - callers check the diagonal first
            raise RuntimeError(f"LAPACK trtrs failed (info={info})")
        return x


def psd_factor(V: np.ndarray) -> np.ndarray:
    """A square factor ``F`` with ``F F' = V`` of a symmetric positive semi-definite ``V``.

    The Cholesky factor when ``V`` is positive definite; otherwise ``U diag(sqrt(w))``
    from the eigendecomposition, negative eigenvalues of rounding size taken as zero.

    Parameters
    ----------
    V : ndarray, shape (n, n)

    Returns
    -------
    ndarray, shape (n, n)
        C-contiguous float64.
    """
    try:
        F = linalg.cholesky(V, lower=True, check_finite=False)
    except linalg.LinAlgError:
        w, U = np.linalg.eigh(V)
        F = U * np.sqrt(np.maximum(w, 0.0))
    return np.ascontiguousarray(F, dtype=np.float64)


def _resolved(L: np.ndarray, rows: np.ndarray) -> bool:
    """Whether every diagonal entry of the triangular ``L`` is above rounding level
    against the norm of its row in the pre-array ``rows``."""
    d = np.abs(np.diagonal(L))
    return bool(np.all(d > RANK_RTOL * np.linalg.norm(rows, axis=1)))


def _singular_innovation(t: int, post: np.ndarray) -> ValueError:
    if not np.all(np.isfinite(post)):
        return ValueError(
            f"the filter overflowed at row {t} (non-finite covariances); the system is "
            "probably unstable over long stretches of missing data"
        )
    return ValueError(
        f"the innovation covariance C P C' + R at row {t} is singular: an observed "
        "coordinate there is exactly determined by the others and the past (to float64 "
        "precision); make R or the state covariances nonsingular"
    )


def _filter_sequence(
    Y: np.ndarray, pattern: np.ndarray, pats: list[Any], sys: LinearGaussianSystem,
    factors: tuple[np.ndarray, np.ndarray], first: int, n: int,
    out: tuple[np.ndarray, ...], la: _Lapack,
) -> float:
    """Filter one sequence in place into ``out`` (means and covariance factors); return
    its log-likelihood."""
    pm, pL, fm, fL = out
    A, b = sys.A, sys.b
    L0, FQ = factors
    md = sys.n_dim_state
    terms = np.zeros(n)
    mf = Lf = None
    for i, t in enumerate(range(first, first + n)):
        if i == 0:
            m, L = sys.mu0, L0
        else:
            m = A @ mf + b
            L = la.tria(np.hstack([A @ Lf, FQ]))
        pm[t], pL[t] = m, L
        o, Co, do, Ro = pats[pattern[t]]
        k = o.size
        if k == 0:
            mf, Lf = m, L
        else:
            pre = np.zeros((k + md, k + md))
            pre[:k, :k] = Ro
            pre[:k, k:] = Co @ L
            pre[k:, k:] = L
            post = la.tria(pre)
            X = post[:k, :k]
            if not _resolved(X, pre[:k]):
                raise _singular_innovation(t, post)
            e = Y[t, o] - Co @ m - do
            z = la.solve(X, e)
            mf = m + post[k:, :k] @ z
            Lf = post[k:, k:]
            logdet = 2.0 * np.sum(np.log(np.abs(np.diagonal(X))))
            terms[i] = -0.5 * (k * _LOG_2PI + logdet + z @ z)
        fm[t], fL[t] = mf, Lf
    return math.fsum(terms)


def _prepare(Y: ArrayLike, system: LinearGaussianSystem, lengths: ArrayLike | None) -> tuple:
    if not isinstance(system, LinearGaussianSystem):
        raise TypeError(f"system must be a LinearGaussianSystem; got {type(system).__name__}")
    y = check_observations(Y, system)
    lens = check_lengths(lengths, y.shape[0])
    starts = np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64)
    return y, lens, starts


def _factors(system: LinearGaussianSystem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Square factors of ``S0``, ``Q`` and ``R`` (see :func:`psd_factor`)."""
    return psd_factor(system.S0), psd_factor(system.Q), psd_factor(system.R)


def _filter_numpy(y, system, lens, starts, seqs, out, seq_ll) -> None:
    observed = ~np.isnan(y)
    pattern, idx = missing_patterns(observed)
    la = _Lapack()
    L0, FQ, FR = _factors(system)
    # a triangular factor of R_oo for each pattern: R_oo = F_R[o] F_R[o]'
    pats = [(o, system.C[o], system.d[o], la.tria(FR[o]) if o.size else None) for o in idx]
    for s in seqs:
        seq_ll[s] = _filter_sequence(y, pattern, pats, system, (L0, FQ), starts[s], lens[s],
                                     out, la)


def _filter_arrays(y, system, lens, starts, backend):
    """Filter every sequence; ``out`` holds the predicted and filtered means and the
    factors of their covariances, ``(pm, pL, fm, fL)``."""
    T, m = y.shape[0], system.n_dim_state
    seq_ll = np.zeros(lens.size)
    if use_numba(backend):
        from . import _numba

        L0, FQ, FR = _factors(system)
        args = (y, ~np.isnan(y), starts, lens, system.A, system.b, FQ,
                system.C, system.d, FR, system.mu0, L0)
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


def _outer(L: np.ndarray) -> np.ndarray:
    """``L L'`` for a stack of factors (T, m, m), exactly symmetric (by the numba
    kernel when numba is installed: numpy's batched products of tiny matrices are slow)."""
    if L.ndim == 3 and use_numba("auto"):
        from . import _numba

        return _numba.outer_products(np.ascontiguousarray(L))
    P = L @ np.swapaxes(L, -1, -2)
    return 0.5 * (P + np.swapaxes(P, -1, -2))


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
        Bad shapes, infinite values, lengths not summing to ``T``, a singular
        innovation covariance (an observed coordinate exactly determined by the others
        and the past), or overflow.
    """
    y, lens, starts = _prepare(Y, system, lengths)
    (pm, pL, fm, fL), seq_ll, total = _filter_arrays(y, system, lens, starts, backend)
    return FilterResult(pm, pL, fm, fL, total, seq_ll)


def _smoother_gain(Lp: np.ndarray, APf: np.ndarray, la: _Lapack) -> np.ndarray:
    """``J' = Pp^{-1} A Pf`` with ``Pp = Lp Lp'``; the pseudo-inverse when ``Pp`` is
    singular, which is the exact conditional-Gaussian formula (the range of ``A Pf``
    lies in that of ``Pp``)."""
    if _resolved(Lp, Lp):
        return la.solve(Lp, la.solve(Lp, APf), trans=1)
    return linalg.pinvh(Lp @ Lp.T) @ APf


def _smooth_sequence(A, FQ, filt, first, n, out, la) -> None:
    pm, pL, fm, fL = filt
    ms, Ps, lag = out
    last = first + n - 1
    Ls = fL[last]
    ms[last], Ps[last], lag[last] = fm[last], _outer(Ls), 0.0
    for t in range(last - 1, first - 1, -1):
        Lf = fL[t]
        G = A @ Lf
        Jt = _smoother_gain(pL[t + 1], G @ Lf.T, la)
        J = Jt.T
        ms[t] = fm[t] + J @ (ms[t + 1] - pm[t + 1])
        Ls = la.tria(np.hstack([Lf - J @ G, J @ FQ, J @ Ls]))
        Ps[t] = _outer(Ls)
        lag[t] = Ps[t + 1] @ Jt


def _smooth_arrays(system, filt, lens, starts, backend):
    """Smooth every sequence from :func:`_filter_arrays`' output; ``(ms, Ps, lag)``."""
    FQ = psd_factor(system.Q)
    if use_numba(backend):
        from . import _numba

        *out, failed = call_interruptible(_numba.rts_smoother, system.A, FQ, *filt,
                                          starts, lens)
        seqs = np.flatnonzero(failed)  # singular predicted covariance: pseudo-inverse
    else:
        T, m = filt[0].shape
        out = [np.empty((T, m)), np.empty((T, m, m)), np.empty((T, m, m))]
        seqs = range(lens.size)
    la = _Lapack()
    for s in seqs:
        _smooth_sequence(system.A, FQ, filt, starts[s], lens[s], out, la)
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
