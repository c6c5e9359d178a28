"""Optional numba kernels for the square-root Kalman filter and RTS smoother.

Importing this module imports numba; :mod:`._filter` only does so when numba is
installed and the backend asks for it. The kernels compute the same formulas as the
numpy reference in ``_filter`` (see there: covariances carried as factors, updated by
Householder triangularisation of the pre-arrays) with explicit loops, so that a step
costs no Python overhead; at small dimensions that overhead is most of the reference's
time. All array arguments must be C-contiguous float64 (bool for the mask, int64 for
``starts`` and ``lengths``) so that each kernel compiles once; compiled code is cached
on disk (``cache=True``).

A kernel that meets a singular factor marks the sequence as failed and moves on; the
caller recomputes failed sequences with the numpy reference, which raises the
explanatory error (filter) or uses a pseudo-inverse (smoother).
"""

from __future__ import annotations

import math

import numba
import numpy as np

_LOG_2PI = math.log(2.0 * math.pi)
#: as ``_filter.RANK_RTOL`` (not imported: this module imports numba only)
_RANK_RTOL = 100.0 * 2.220446049250313e-16


@numba.njit(cache=True)
def _tria(W, nr, nc):
    """Householder reflections from the right turn ``W[:nr, :nc]`` (``nc >= nr``) into
    ``[L, 0]`` in place, ``L`` lower triangular with a non-negative diagonal and
    ``L L' = W W'`` (an LQ factorisation, the transpose of QR)."""
    for i in range(nr):
        x0 = W[i, i]
        tail = 0.0
        for k in range(i + 1, nc):
            tail += W[i, k] * W[i, k]
        if tail == 0.0:
            if x0 < 0.0:
                for r in range(i, nr):
                    W[r, i] = -W[r, i]
            continue
        alpha = math.sqrt(x0 * x0 + tail)
        beta = -alpha if x0 >= 0.0 else alpha
        v0 = x0 - beta
        vv = v0 * v0 + tail
        for r in range(i + 1, nr):
            s = v0 * W[r, i]
            for k in range(i + 1, nc):
                s += W[i, k] * W[r, k]
            f = 2.0 * s / vv
            W[r, i] -= f * v0
            for k in range(i + 1, nc):
                W[r, k] -= f * W[i, k]
        W[i, i] = beta
        for k in range(i + 1, nc):
            W[i, k] = 0.0
        if beta < 0.0:
            for r in range(i, nr):
                W[r, i] = -W[r, i]


@numba.njit(cache=True)
def _row_norms(W, nr, nc, out):
    for i in range(nr):
        s = 0.0
        for k in range(nc):
            s += W[i, k] * W[i, k]
        out[i] = math.sqrt(s)


@numba.njit(cache=True)
def _resolved(W, n, norms):
    """Every ``|W[i, i]|`` (i < n) above rounding level against ``norms[i]``."""
    for i in range(n):
        if not abs(W[i, i]) > _RANK_RTOL * norms[i]:
            return False
    return True


@numba.njit(cache=True)
def _outer(L, out):
    """``out = L L'``, exactly symmetric (each entry computed once)."""
    n = L.shape[0]
    for i in range(n):
        for j in range(i + 1):
            s = 0.0
            for k in range(n):
                s += L[i, k] * L[j, k]
            out[i, j] = s
            out[j, i] = s


@numba.njit(cache=True)
def outer_products(L):
    """``L[t] L[t]'`` for every ``t`` of a stack of factors (T, m, m), exactly symmetric."""
    P = np.empty_like(L)
    for t in range(L.shape[0]):
        _outer(L[t], P[t])
    return P


@numba.njit(cache=True)
def kalman_filter(Y, observed, starts, lengths, A, b, FQ, C, d, FR, mu0, L0):
    """Filter every sequence; see ``_filter`` for the formulas.

    ``FQ``, ``FR`` and ``L0`` are square factors of ``Q``, ``R`` and ``S0``
    (``F F' = V``); the rows ``FR[o]`` factor ``R_oo``.

    Returns
    -------
    pm, pL, fm, fL : ndarrays, shapes (T, m), (T, m, m), (T, m), (T, m, m)
        Means and factors of the covariances (lower triangular, except ``L0`` at a
        sequence's start and at the steps that follow it with nothing observed).
    seq_ll : ndarray, shape (n_seq,)
    failed : ndarray of bool, shape (n_seq,)
        Sequences where an innovation covariance was singular or not finite (their
        outputs are meaningless).
    """
    T, p = Y.shape
    m = A.shape[0]
    n_seq = lengths.shape[0]
    pm = np.empty((T, m))
    pL = np.empty((T, m, m))
    fm = np.empty((T, m))
    fL = np.empty((T, m, m))
    seq_ll = np.zeros(n_seq)
    failed = np.zeros(n_seq, dtype=np.bool_)
    idx = np.empty(p, dtype=np.int64)
    pre = np.empty((p + m, p + m))  # [[F_R[o], C_o L], [0, L]]
    tw = np.empty((m, 2 * m))  # [A L_f, F_Q]
    norms = np.empty(p)
    z = np.empty(p)
    for s in range(n_seq):
        first = starts[s]
        ll = 0.0
        comp = 0.0  # Kahan summation over up to 1e6+ steps
        for t in range(first, first + lengths[s]):
            if t == first:
                pm[t] = mu0
                pL[t] = L0
            else:
                for i in range(m):
                    v = b[i]
                    for k in range(m):
                        v += A[i, k] * fm[t - 1, k]
                    pm[t, i] = v
                    for j in range(m):
                        v = 0.0
                        for k in range(m):
                            v += A[i, k] * fL[t - 1, k, j]
                        tw[i, j] = v
                        tw[i, m + j] = FQ[i, j]
                _tria(tw, m, 2 * m)
                for i in range(m):
                    for j in range(m):
                        pL[t, i, j] = tw[i, j]
            L = pL[t]
            n_obs = 0
            for j in range(p):
                if observed[t, j]:
                    idx[n_obs] = j
                    n_obs += 1
            if n_obs == 0:
                fm[t] = pm[t]
                fL[t] = L
                continue
            nr, nc = n_obs + m, p + m
            for a in range(n_obs):
                r = idx[a]
                for j in range(p):
                    pre[a, j] = FR[r, j]
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += C[r, k] * L[k, j]
                    pre[a, p + j] = v
                v = Y[t, r] - d[r]
                for k in range(m):
                    v -= C[r, k] * pm[t, k]
                z[a] = v
            for i in range(m):
                for j in range(p):
                    pre[n_obs + i, j] = 0.0
                for j in range(m):
                    pre[n_obs + i, p + j] = L[i, j]
            _row_norms(pre, n_obs, nc, norms)
            _tria(pre, nr, nc)
            if not _resolved(pre, n_obs, norms):
                failed[s] = True
                break
            # z = X^{-1} e, X = pre[:n_obs, :n_obs]
            quad = 0.0
            logdet = 0.0
            for a in range(n_obs):
                v = z[a]
                for c in range(a):
                    v -= pre[a, c] * z[c]
                z[a] = v / pre[a, a]
                quad += z[a] * z[a]
                logdet += math.log(pre[a, a])
            term = -0.5 * (n_obs * _LOG_2PI + 2.0 * logdet + quad)
            yk = term - comp
            tk = ll + yk
            comp = (tk - ll) - yk
            ll = tk
            for i in range(m):
                v = pm[t, i]
                for a in range(n_obs):
                    v += pre[n_obs + i, a] * z[a]
                fm[t, i] = v
                for j in range(m):
                    fL[t, i, j] = pre[n_obs + i, n_obs + j]
        seq_ll[s] = ll
    return pm, pL, fm, fL, seq_ll, failed


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
        for i in range(j):
            L[i, j] = 0.0
    return True


@numba.njit(cache=True)
def rts_smoother(A, Q, FQ, pm, pL, fm, fL, starts, lengths):
    """Smooth every sequence from the filter's factors; see ``_filter`` for the formulas.

    Returns
    -------
    ms, Ps, lag : ndarrays, shapes (T, m), (T, m, m), (T, m, m)
    ww, wx : ndarrays, shape (n_seq, m, m)
        Per sequence, ``sum_t Cov(w_t | Y)`` and ``sum_t Cov(w_t, x_t | Y)`` of the
        transition residuals ``w_t = x_{t+1} - A x_t - b`` (see ``_filter``).
    failed : ndarray of bool, shape (n_seq,)
        Sequences with a singular predicted covariance (to be recomputed with a
        pseudo-inverse).
    """
    T, m = fm.shape
    n_seq = lengths.shape[0]
    ms = np.empty((T, m))
    Ps = np.empty((T, m, m))
    lag = np.zeros((T, m, m))
    ww = np.zeros((n_seq, m, m))
    wx = np.zeros((n_seq, m, m))
    failed = np.zeros(n_seq, dtype=np.bool_)
    G = np.empty((m, m))  # A L_f
    Jt = np.empty((m, 2 * m))  # [J', D'] = Pp^{-1} [A Pf, Q]
    pre = np.empty((m, 3 * m))  # [M_c, J L_s[t+1]], M_c = [(I - J A) L_f, J F_Q]
    H = np.empty((m, m))  # D P_s[t+1]
    Sc = np.empty((m, m))  # sum of Sigma_c = M_c M_c' over a sequence
    Ls = np.empty((m, m))  # factor of P_s[t+1]
    norms = np.empty(m)
    for s in range(n_seq):
        last = starts[s] + lengths[s] - 1
        ms[last] = fm[last]
        Ls[:, :] = fL[last]
        Sc[:, :] = 0.0
        _outer(Ls, Ps[last])
        for t in range(last - 1, starts[s] - 1, -1):
            Lp = pL[t + 1]
            Lf = fL[t]
            Pn = Ps[t + 1]
            P = Ps[t]
            _row_norms(Lp, m, m, norms)
            if not _resolved(Lp, m, norms):
                failed[s] = True
                break
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += A[i, k] * Lf[k, j]
                    G[i, j] = v
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    for k in range(m):
                        v += G[i, k] * Lf[j, k]
                    Jt[i, j] = v
                    Jt[i, m + j] = Q[i, j]
            # [J', D'] <- Lp'^{-1} Lp^{-1} [A Pf, Q]
            for c in range(2 * m):
                for i in range(m):
                    v = Jt[i, c]
                    for k in range(i):
                        v -= Lp[i, k] * Jt[k, c]
                    Jt[i, c] = v / Lp[i, i]
                for i in range(m - 1, -1, -1):
                    v = Jt[i, c]
                    for k in range(i + 1, m):
                        v -= Lp[k, i] * Jt[k, c]
                    Jt[i, c] = v / Lp[i, i]
            for i in range(m):
                v = fm[t, i]
                for k in range(m):
                    v += Jt[k, i] * (ms[t + 1, k] - pm[t + 1, k])
                ms[t, i] = v
                for j in range(m):
                    v1 = Lf[i, j]
                    v2 = 0.0
                    v3 = 0.0
                    for k in range(m):
                        v1 -= Jt[k, i] * G[k, j]
                        v2 += Jt[k, i] * FQ[k, j]
                        v3 += Jt[k, i] * Ls[k, j]
                    pre[i, j] = v1
                    pre[i, m + j] = v2
                    pre[i, 2 * m + j] = v3
            # Sigma_c = M_c M_c' (summed), P_s[t] = Sigma_c + (J L_s)(J L_s)'
            for i in range(m):
                for j in range(i + 1):
                    v = 0.0
                    for k in range(2 * m):
                        v += pre[i, k] * pre[j, k]
                    Sc[i, j] += v
                    for k in range(2 * m, 3 * m):
                        v += pre[i, k] * pre[j, k]
                    P[i, j] = v
                    P[j, i] = v
            # lag = P_s[t+1] J'; D P_s[t+1] D' and D lag summed (A Sigma_c at the end)
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    w = 0.0
                    for k in range(m):
                        v += Jt[k, m + i] * Pn[k, j]
                        w += Pn[i, k] * Jt[k, j]
                    H[i, j] = v
                    lag[t, i, j] = w
            for i in range(m):
                for j in range(m):
                    v = 0.0
                    w = 0.0
                    for k in range(m):
                        v += H[i, k] * Jt[k, m + j]
                        w += H[i, k] * Jt[k, j]
                    ww[s, i, j] += v
                    wx[s, i, j] += w
            if not _cholesky(P, m, Ls):
                _tria(pre, m, 3 * m)  # singular P_s: its factor from the pre-array
                for i in range(m):
                    for j in range(m):
                        Ls[i, j] = pre[i, j]
        for i in range(m):
            for j in range(i):
                Sc[j, i] = Sc[i, j]
        for i in range(m):
            for j in range(m):
                v = 0.0
                for k in range(m):
                    v += A[i, k] * Sc[k, j]
                G[i, j] = v  # A Sigma_c, summed
                wx[s, i, j] -= v
        for i in range(m):
            for j in range(m):
                v = 0.0
                for k in range(m):
                    v += G[i, k] * A[j, k]
                ww[s, i, j] += v
    return ms, Ps, lag, ww, wx, failed
