"""Optional numba kernels for the Kalman filter and RTS smoother.

Importing this module imports numba; :mod:`._filter` only does so when numba is
installed and the backend asks for it. The kernels compute the same formulas as the
numpy reference in ``_filter`` (see there) with explicit loops, so that a step costs
no Python overhead; at small dimensions that overhead is most of the reference's time.
All array arguments must be C-contiguous float64 (bool for the mask, int64 for
``starts`` and ``lengths``) so that each kernel compiles once; compiled code is cached
on disk (``cache=True``).

A kernel that meets a matrix that is not positive definite marks the sequence as
failed and moves on; the caller recomputes failed sequences with the numpy reference,
which raises the explanatory error (filter) or uses a pseudo-inverse (smoother).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)


@numba.njit(cache=True)
def _cholesky(a, n, L):
    """Lower Cholesky factor of ``a[:n, :n]`` into ``L``; False if not positive definite."""
    for j in range(n):
        s = a[j, j]
        for k in range(j):
            s -= L[j, k] * L[j, k]
        if not s > 0.0:
            return False
        d = math.sqrt(s)
        L[j, j] = d
        for i in range(j + 1, n):
            s = a[i, j]
            for k in range(j):
                s -= L[i, k] * L[j, k]
            L[i, j] = s / d
    return True


@numba.njit(cache=True)
def _cho_solve(L, n, B, ncol):
    """Overwrite ``B[:n, :ncol]`` with ``(L L')^{-1} B``."""
    for c in range(ncol):
        for i in range(n):
            s = B[i, c]
            for k in range(i):
                s -= L[i, k] * B[k, c]
            B[i, c] = s / L[i, i]
        for i in range(n - 1, -1, -1):
            s = B[i, c]
            for k in range(i + 1, n):
                s -= L[k, i] * B[k, c]
            B[i, c] = s / L[i, i]


@numba.njit(cache=True)
def _symmetrise(a):
    n = a.shape[0]
    for i in range(n):
        for j in range(i + 1, n):
            v = 0.5 * (a[i, j] + a[j, i])
            a[i, j] = v
            a[j, i] = v


@numba.njit(cache=True)
def _sandwich(M, P, N, out, tmp):
    """``out = M P N'`` for square M, P, N of the same size; ``tmp`` is workspace."""
    n = P.shape[0]
    for i in range(n):
        for j in range(n):
            s = 0.0
            for k in range(n):
                s += M[i, k] * P[k, j]
            tmp[i, j] = s
    for i in range(n):
        for j in range(n):
            s = 0.0
            for k in range(n):
                s += tmp[i, k] * N[j, k]
            out[i, j] = s


@numba.njit(cache=True)
def kalman_filter(Y, observed, starts, lengths, A, b, Q, C, d, R, mu0, S0):
    """Filter every sequence; see ``_filter`` for the formulas.

    Returns
    -------
    pm, pP, fm, fP : ndarrays, shapes (T, m), (T, m, m), (T, m), (T, m, m)
    seq_ll : ndarray, shape (n_seq,)
    failed : ndarray of bool, shape (n_seq,)
        Sequences where an innovation covariance was not positive definite (their
        outputs are meaningless).
    """
    T, p = Y.shape
    m = A.shape[0]
    n_seq = lengths.shape[0]
    pm = np.empty((T, m))
    pP = np.empty((T, m, m))
    fm = np.empty((T, m))
    fP = np.empty((T, m, m))
    seq_ll = np.zeros(n_seq)
    failed = np.zeros(n_seq, dtype=np.bool_)
    idx = np.empty(p, dtype=np.int64)
    S = np.empty((p, p))
    L = np.zeros((p, p))
    rhs = np.empty((p, m + 1))  # [W' | e], overwritten by S^{-1} [W' | e]
    z = np.empty(p)
    K = np.empty((m, p))
    IKC = np.empty((m, m))
    work = np.empty((m, m))
    for s in range(n_seq):
        first = starts[s]
        ll = 0.0
        comp = 0.0  # Kahan summation over up to 1e6+ steps
        for t in range(first, first + lengths[s]):
            if t == first:
                pm[t] = mu0
                pP[t] = S0
            else:
                for i in range(m):
                    v = b[i]
                    for k in range(m):
                        v += A[i, k] * fm[t - 1, k]
                    pm[t, i] = v
                _sandwich(A, fP[t - 1], A, pP[t], work)
                for i in range(m):
                    for j in range(m):
                        pP[t, i, j] += Q[i, j]
                _symmetrise(pP[t])
            P = pP[t]
            n_obs = 0
            for j in range(p):
                if observed[t, j]:
                    idx[n_obs] = j
                    n_obs += 1
            if n_obs == 0:
                fm[t] = pm[t]
                fP[t] = P
                continue
            # rhs[:, :m] = W' = C_o P, rhs[:, m] = e
            for a in range(n_obs):
                r = idx[a]
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += C[r, k] * P[k, j]
                    rhs[a, j] = v
                v = Y[t, r] - d[r]
                for k in range(m):
                    v -= C[r, k] * pm[t, k]
                rhs[a, m] = v
                z[a] = v
            for a in range(n_obs):
                for c in range(n_obs):
                    v = R[idx[a], idx[c]]
                    for k in range(m):
                        v += rhs[a, k] * C[idx[c], k]
                    S[a, c] = v
            for a in range(n_obs):
                for c in range(a + 1, n_obs):
                    v = 0.5 * (S[a, c] + S[c, a])
                    S[a, c] = v
                    S[c, a] = v
            if not _cholesky(S, n_obs, L):
                failed[s] = True
                break
            _cho_solve(L, n_obs, rhs, m + 1)
            quad = 0.0
            logdet = 0.0
            for a in range(n_obs):
                quad += z[a] * rhs[a, m]
                logdet += math.log(L[a, a])
            term = -0.5 * (n_obs * _LOG_2PI + 2.0 * logdet + quad)
            yk = term - comp
            tk = ll + yk
            comp = (tk - ll) - yk
            ll = tk
            for i in range(m):
                v = pm[t, i]
                for a in range(n_obs):
                    K[i, a] = rhs[a, i]
                    v += rhs[a, i] * z[a]
                fm[t, i] = v
            for i in range(m):
                for j in range(m):
                    v = 1.0 if i == j else 0.0
                    for a in range(n_obs):
                        v -= K[i, a] * C[idx[a], j]
                    IKC[i, j] = v
            _sandwich(IKC, P, IKC, fP[t], work)
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    for a in range(n_obs):
                        ka = 0.0
                        for c in range(n_obs):
                            ka += K[i, c] * R[idx[c], idx[a]]
                        v += ka * K[j, a]
                    fP[t, i, j] += v
            _symmetrise(fP[t])
        seq_ll[s] = ll
    return pm, pP, fm, fP, seq_ll, failed


@numba.njit(cache=True)
def rts_smoother(A, Q, pm, pP, fm, fP, starts, lengths):
    """Smooth every sequence; see ``_filter`` for the formulas.

    Returns
    -------
    ms, Ps, lag : ndarrays, shapes (T, m), (T, m, m), (T, m, m)
    failed : ndarray of bool, shape (n_seq,)
        Sequences with a predicted covariance that is not positive definite (to be
        recomputed with a pseudo-inverse).
    """
    T, m = fm.shape
    n_seq = lengths.shape[0]
    ms = np.empty((T, m))
    Ps = np.empty((T, m, m))
    lag = np.zeros((T, m, m))
    failed = np.zeros(n_seq, dtype=np.bool_)
    L = np.zeros((m, m))
    Jt = np.empty((m, m))  # J' = Pp^{-1} A Pf
    IJA = np.empty((m, m))
    QP = np.empty((m, m))
    tmp = np.empty((m, m))
    work = np.empty((m, m))
    for s in range(n_seq):
        last = starts[s] + lengths[s] - 1
        ms[last] = fm[last]
        Ps[last] = fP[last]
        for t in range(last - 1, starts[s] - 1, -1):
            if not _cholesky(pP[t + 1], m, L):
                failed[s] = True
                break
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += A[i, k] * fP[t, k, j]
                    Jt[i, j] = v
            _cho_solve(L, m, Jt, m)
            for i in range(m):
                v = fm[t, i]
                for k in range(m):
                    v += Jt[k, i] * (ms[t + 1, k] - pm[t + 1, k])
                ms[t, i] = v
            for i in range(m):
                for j in range(m):
                    v = 1.0 if i == j else 0.0
                    for k in range(m):
                        v -= Jt[k, i] * A[k, j]
                    IJA[i, j] = v
                    QP[i, j] = Q[i, j] + Ps[t + 1, i, j]
            _sandwich(IJA, fP[t], IJA, Ps[t], work)
            for i in range(m):
                for j in range(m):
                    tmp[i, j] = Jt[j, i]
            _sandwich(tmp, QP, tmp, IJA, work)  # IJA reused as J (Q + Ps') J'
            for i in range(m):
                for j in range(m):
                    Ps[t, i, j] += IJA[i, j]
            _symmetrise(Ps[t])
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += Ps[t + 1, i, k] * Jt[k, j]
                    lag[t, i, j] = v
    return ms, Ps, lag, failed
