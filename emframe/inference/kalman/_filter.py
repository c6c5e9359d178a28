"""Square-root Kalman filter and Rauch-Tung-Striebel smoother (numpy reference, numba dispatch).

Every covariance is carried as a factor ``L`` with ``P = L L'`` and updated by an
orthogonal triangularisation (``L = tria(M)`` is the lower-triangular
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
    M_c = [(I - J A) L_f,  J F_Q]          M_c M_c' = Sigma_c = Cov(x_t | x_{t+1}, Y)
    P_s = M_c M_c' + (J L_s[t+1]) (J L_s[t+1])'
    L_s = chol(P_s), or tria([M_c, J L_s[t+1]]) when P_s is singular
    Cov(x_{t+1}, x_t | Y) = P_s[t+1] J'

``P_s`` equals the textbook ``P_f + J (P_s[t+1] - P_p) J'`` (because ``J P_p = P_f A'``);
it is formed as the Gram matrix ``K K'`` of the pre-array ``K = [M_c, J L_s[t+1]]``,
positive semi-definite up to the rounding of ``P_s`` itself, and symmetrised exactly.
The factor for the next step comes from a Cholesky factorisation of ``P_s``, about a
tenth of the cost of triangularising ``K``, which is the fallback when ``P_s`` is
singular.

The smoother also sums the posterior covariances of the transition residuals
``w_t = x_{t+1} - A x_t - b`` for the M-step. Given ``Y`` the states are backward
Markov, ``x_t = J x_{t+1} + c_t + eta_t`` with ``eta_t ~ N(0, Sigma_c)`` independent of
``x_{t+1}`` and ``Sigma_c = M_c M_c'``, so with ``D = I - A J = Q P_p^{-1}`` (formed
as the latter: the former cancels when ``Q`` is small)::

    Cov(w_t | Y)      = D P_s[t+1] D' + A Sigma_c A'
    Cov(w_t, x_t | Y) = D Cov(x_{t+1}, x_t | Y) - A Sigma_c

summed over the steps (the ``A Sigma_c`` terms as ``A (sum Sigma_c) A'`` and
``A sum Sigma_c``). Every term is of the size of ``Q``: the four-term form
``P_s[t+1] - A L' - L A' + A P_s[t] A'`` (``L`` the lag-one covariance) subtracts terms
of the size of the state's posterior covariance and loses the digits of a ``Q`` far
below it.
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

    def cholesky(self, V: np.ndarray) -> np.ndarray | None:
        """Lower Cholesky factor of ``V``, or None if it is not positive definite."""
        c, info = self.potrf(V, lower=1, clean=1)
        return c if info == 0 else None

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
        f"the innovation covariance C P C' + R at row {t} is singular to float64 precision: "
        "an observed coordinate there is determined by the others and the past (its "
        f"conditional standard deviation is below {RANK_RTOL:.1e} of its standard "
        "deviation: R is singular there, or far too small against C P C'); make R "
        "nonsingular or the state covariances smaller"
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


def _smoother_gains(Lp: np.ndarray, APf: np.ndarray, Q: np.ndarray, la: _Lapack):
    """``J' = Pp^{-1} A Pf`` and ``D' = Pp^{-1} Q`` with ``Pp = Lp Lp'``; the
    pseudo-inverse when ``Pp`` is singular, which is the exact conditional-Gaussian
    formula (the ranges of ``A Pf`` and ``Q`` lie in that of ``Pp``)."""
    rhs = np.hstack([APf, Q])
    if _resolved(Lp, Lp):
        sol = la.solve(Lp, la.solve(Lp, rhs), trans=1)
    else:
        sol = linalg.pinvh(Lp @ Lp.T) @ rhs
    m = Lp.shape[0]
    return sol[:, :m], sol[:, m:]


def _smooth_sequence(A, Q, FQ, filt, first, n, out, la) -> tuple[np.ndarray, np.ndarray]:
    """Smooth one sequence in place into ``out``; return its transition residual
    covariance sums ``(sum Cov(w_t | Y), sum Cov(w_t, x_t | Y))``."""
    pm, pL, fm, fL = filt
    ms, Ps, lag = out
    md = A.shape[0]
    ww, wx, Sc = np.zeros((md, md)), np.zeros((md, md)), np.zeros((md, md))
    last = first + n - 1
    Ls = fL[last]
    ms[last], Ps[last], lag[last] = fm[last], _outer(Ls), 0.0
    for t in range(last - 1, first - 1, -1):
        Lf = fL[t]
        G = A @ Lf
        Jt, Dt = _smoother_gains(pL[t + 1], G @ Lf.T, Q, la)
        J, D = Jt.T, Dt.T
        ms[t] = fm[t] + J @ (ms[t + 1] - pm[t + 1])
        lag[t] = Ps[t + 1] @ Jt
        Mc = np.hstack([Lf - J @ G, J @ FQ])  # factor of Sigma_c = Cov(x_t | x_{t+1}, Y)
        K = J @ Ls
        Sigma = Mc @ Mc.T
        Sc += Sigma
        Ps[t] = _sym(Sigma + K @ K.T)
        H = D @ Ps[t + 1]
        ww += H @ D.T
        wx += H @ Jt
        Ls = la.cholesky(Ps[t])
        if Ls is None:  # singular P_s: its factor from the pre-array
            Ls = la.tria(np.hstack([Mc, K]))
    ASc = A @ Sc  # the A Sigma_c terms, summed over the sequence
    ww += ASc @ A.T
    wx -= ASc
    return ww, wx


def _smooth_arrays(system, filt, lens, starts, backend):
    """Smooth every sequence from :func:`_filter_arrays`' output; ``(ms, Ps, lag)`` and
    the transition residual covariance sums per sequence ``(ww, wx)``, each
    (n_seq, m, m)."""
    FQ = psd_factor(system.Q)
    if use_numba(backend):
        from . import _numba

        *out, ww, wx, failed = call_interruptible(_numba.rts_smoother, system.A, system.Q,
                                                  FQ, *filt, starts, lens)
        seqs = np.flatnonzero(failed)  # singular predicted covariance: pseudo-inverse
    else:
        T, m = filt[0].shape
        out = [np.empty((T, m)), np.empty((T, m, m)), np.empty((T, m, m))]
        ww, wx = np.zeros((lens.size, m, m)), np.zeros((lens.size, m, m))
        seqs = range(lens.size)
    la = _Lapack()
    for s in seqs:
        ww[s], wx[s] = _smooth_sequence(system.A, system.Q, FQ, filt, starts[s], lens[s],
                                        out, la)
    return out, ww, wx


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
    (ms, Ps, lag), _, _ = _smooth_arrays(system, filt, lens, starts, backend)
    return SmootherResult(ms, Ps, lag, total, seq_ll)
