"""Dense direct scoring for the fused Gaussian-mixture E-step (numba), float32 arithmetic.

Part of :mod:`emframe.inference.gaussian._numba`: every component is scored about its own
mean on every row of a block (no bounds, no gathers): the block is centred at each mean
once, one BLAS product by the component's factor gives the distances, and the same
centred block, weighted by the posteriors, gives the component's moments.
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal32
from emframe.inference.gaussian._numba import _normalise, _transpose_block
from emframe.inference.gaussian._numba_far import _gather_columns, _scale_sum, _sum, _zero


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _dot(u, v, m):
    """``sum(u[:m] * v[:m])`` in the dtype of ``u``, in any order (vectorised)."""
    acc = _zero(u)
    for p in range(m):
        acc += u[p] * v[p]
    return acc


@numba.njit(cache=True, error_model="numpy")
def _normalise32(lp, B, w, s, has_weight, mx, tot, resp, flush):
    """:func:`~emframe.inference.gaussian._numba._normalise` for float32 posteriors, given
    each row's largest log-density ``mx``: the log-likelihood from the logarithm of
    products of 16 rows' sums (one log per 16 rows; weights need one per row), the
    posteriors scaled by the float32 reciprocal of their sum."""
    K = lp.shape[0]
    for i in range(B):
        tot[i] = 0.0
    nan = False
    for k in range(K):
        row = lp[k]
        out = resp[k]
        for i in range(B):
            v = row[i] - mx[i]
            nan |= v != v
            x = np.float32(v if v > flush else flush)
            e = exp_normal32(x) if v >= flush else np.float32(0.0)
            out[i] = e
            tot[i] += e
    ll = 0.0
    if has_weight:
        for i in range(B):
            wi = w[s + i]
            ll += wi * (mx[i] + np.log(tot[i]))
            tot[i] = tot[i] / wi
    else:
        for i in range(B):
            ll += mx[i]
        for c in range(0, B, 16):
            prod = 1.0
            for i in range(c, min(c + 16, B)):
                prod *= tot[i]
            ll += np.log(prod)
    for i in range(B):
        tot[i] = 1.0 / tot[i]
    for k in range(K):
        out = resp[k]
        for i in range(B):
            out[i] = out[i] * np.float32(tot[i])
    return np.nan if nan else ll


@numba.njit(cache=True, error_model="numpy")
def _dense_block(X, s, B, means_d, factors_t, shift_d, const_d, pair_a, pair_b, pair_out,
                 summed, nq, sample_weight, has_weight, flush, xt, xcs, y, acc, lpd, resp, mx,
                 tot, xr0, S, Gd, lo, hi, mode, idx, gflat, xflat, rb):
    Kd, d = means_d.shape
    nf = Gd.shape[0]
    _transpose_block(X, s, B, xt)
    for j in range(0 if mode & 8 else Kd):
        xc = xcs[j]
        mu = means_d[j]
        for a in range(d):
            c = mu[a]
            src = xt[a]
            dst = xc[a]
            for i in range(B):
                dst[i] = src[i] - c
        for i in range(B):
            acc[i] = 0.0
        if mode & 1:
            ft = factors_t[j]
            yb = y[0]
            for b in range(d):
                for i in range(B):
                    yb[i] = 0.0
                for a in range(lo[j, b], hi[j, b]):
                    wgt = ft[b, a]
                    src = xc[a]
                    for i in range(B):
                        yb[i] += wgt * src[i]
                sh = shift_d[j, b]
                for i in range(B):
                    v = yb[i] - sh
                    acc[i] += v * v
        else:
            np.dot(factors_t[j], xc, y)
            for b in range(d):
                sh = shift_d[j, b]
                src = y[b]
                for i in range(B):
                    v = src[i] - sh
                    acc[i] += v * v
        c = const_d[j]
        row = lpd[j]
        for i in range(B):
            v = c - 0.5 * np.float64(acc[i])
            row[i] = v
            mx[i] = v if v > mx[i] or j == 0 else mx[i]
    if mode & 16:
        ll = 0.0
    elif mode & 64:
        ll = _normalise32(lpd, B, sample_weight, s, has_weight, mx, tot, resp, flush)
    else:
        ll = _normalise(lpd, B, sample_weight, s, has_weight, mx, tot, resp, flush)
    for j in range(0 if mode & 4 else Kd):
        r = resp[j]
        nk = _sum(r, B)
        if nk == 0.0:
            continue
        xc = xcs[j]
        m = B
        if mode & 32:
            m = 0
            for i in range(B):
                idx[m] = i  # branch-free
                m += r[i] != 0.0
            if 4 * m < 3 * B:
                xc = _gather_columns(xc, idx, m, gflat)
                for p in range(m):
                    rb[p] = r[idx[p]]
                r = rb
            else:
                m = B
        Gd[nf - 1, j] += nk
        if m < B:
            xr = xflat[: d * m].reshape(d, m)
        else:
            xr = xr0
        for a in range(d):
            Gd[nq + a, j] += _scale_sum(xc[a], r, m, xr[a])
        if mode & 2:
            for q in range(pair_a.shape[0]):
                a = pair_a[q]
                b = a if summed else pair_b[q]
                Gd[pair_out[q], j] += _dot(xr[a], xc[b], m)
        else:
            np.dot(xr, xc.T, S)
            for q in range(pair_a.shape[0]):
                a = pair_a[q]
                b = a if summed else pair_b[q]
                Gd[pair_out[q], j] += S[a, b]
    return ll


@numba.njit(cache=True, error_model="numpy")
def mixture_e_step_dense(X, means_d, factors_t, shift_d, const_d, pair_a, pair_b, pair_out,
                         summed, nq, sample_weight, has_weight, block, flush, lo, hi, mode):
    """Fused E-step with every component scored about its own mean on every row.

    Arguments as in :func:`~emframe.inference.gaussian._numba.mixture_e_step` (its far
    components); returns ``(Gd, log_likelihood)``.
    """
    n, d = X.shape
    Kd = means_d.shape[0]
    nf = nq + d + 1
    dt = factors_t.dtype
    Gd = np.zeros((nf, Kd))
    ll = 0.0
    size = min(block, n)
    xt = np.empty((d, size), dt)
    acc = np.empty(size, dt)
    lpd = np.empty((Kd, size))
    resp = np.empty((Kd, size), dt)
    mx = np.empty(size)
    tot = np.empty(size)
    S = np.empty((d, d), dt)
    full = n - n % size
    xcs = np.empty((Kd, d, size), dt)
    y = np.empty((d, size), dt)
    xr = np.empty((d, size), dt)
    idx = np.empty(size + 1, np.int64)
    gflat = np.empty(d * size, dt)
    xflat = np.empty(d * size, dt)
    rb = np.empty(size, dt)
    for s in range(0, full, size):
        ll += _dense_block(X, s, size, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs, y,
                           acc, lpd, resp, mx, tot, xr, S, Gd, lo, hi, mode, idx, gflat, xflat, rb)
    rest = n - full
    if rest > 0:
        xcs2 = np.empty((Kd, d, rest), dt)
        y2 = np.empty((d, rest), dt)
        xr2 = np.empty((d, rest), dt)
        ll += _dense_block(X, full, rest, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs2, y2,
                           acc, lpd, resp, mx, tot, xr2, S, Gd, lo, hi, mode, idx, gflat, xflat, rb)
    return Gd, ll
