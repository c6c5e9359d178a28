"""Dense direct scoring for the fused Gaussian-mixture E-step (numba), float32 arithmetic.

Part of :mod:`emframe.inference.gaussian._numba`, for float32 arithmetic when every
component is too far from the common centring point for the float32 expansion (see
:data:`~emframe.inference.gaussian.kernel.EXPANSION_MAX_DISTANCE_32`): every component is
scored about its own (float32) mean on every row of a block, with no bounds and no row
selection. The block is centred at each mean once; one BLAS product by the component's
factor gives the distances (squared norms summed in float32, each row's log-density in
float64); the same centred block, weighted by the posteriors, gives the component's
moments (one more product, over the rows of non-zero posterior only when they are
fewer than half the block). With few components per row within reach this does more
arithmetic than :func:`~emframe.inference.gaussian._numba_far._direct_best_first`, but
regular arithmetic that float32 vectors run twice as wide: at d = 10 it is the faster.
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal32
from emframe.inference.gaussian._numba import _transpose_block
from emframe.inference.gaussian._numba_far import _gather_columns, _scale_sum, _sum


@numba.njit(cache=True, error_model="numpy")
def _normalise32(lp, B, w, s, has_weight, mx, tot, resp, flush):
    """Float32 posteriors (times sample weight) of a block into ``resp`` (K, B), given the
    float64 log-densities ``lp`` and each row's largest ``mx``; returns the block's
    log-likelihood (float64), NaN if any log-density is NaN.

    Row sums in float64; without sample weights the log-likelihood takes one logarithm
    per 16 rows (of the product of their sums, each in [1, K]: no overflow below
    K = 2**60); the posteriors are scaled by the reciprocal of their sum.
    """
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
                 tot, xr_full, S, Gd, idx, gflat, xflat, rb):
    Kd, d = means_d.shape
    nf = Gd.shape[0]
    _transpose_block(X, s, B, xt)
    for j in range(Kd):
        # x - mean from the data (float32, nothing cancels); |(x - mean) M - shift|^2
        xc = xcs[j]
        mu = means_d[j]
        for a in range(d):
            c = mu[a]
            src = xt[a]
            dst = xc[a]
            for i in range(B):
                dst[i] = src[i] - c
        np.dot(factors_t[j], xc, y)
        for i in range(B):
            acc[i] = 0.0
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
    ll = _normalise32(lpd, B, sample_weight, s, has_weight, mx, tot, resp, flush)
    for j in range(Kd):
        r = resp[j]
        nk = _sum(r, B)
        if nk == 0.0:
            continue
        xc = xcs[j]
        xr = xr_full
        m = 0
        for i in range(B):
            idx[m] = i  # branch-free: the test is unpredictable
            m += r[i] != 0.0
        if 2 * m < B:
            # rows of zero posterior add nothing: the others, gathered
            xc = _gather_columns(xc, idx, m, gflat)
            for p in range(m):
                rb[p] = r[idx[p]]
            r = rb
            xr = xflat[: d * m].reshape(d, m)
        else:
            m = B
        Gd[nf - 1, j] += nk
        for a in range(d):
            Gd[nq + a, j] += _scale_sum(xc[a], r, m, xr[a])
        np.dot(xr, xc.T, S)
        for q in range(pair_a.shape[0]):
            a = pair_a[q]
            b = a if summed else pair_b[q]
            Gd[pair_out[q], j] += S[a, b]
    return ll


@numba.njit(cache=True, error_model="numpy")
def mixture_e_step_dense(X, means_d, factors_t, shift_d, const_d, pair_a, pair_b, pair_out,
                         summed, nq, sample_weight, has_weight, block, flush):
    """Fused E-step with every component scored about its own mean on every row.

    Arguments as in :func:`~emframe.inference.gaussian._numba.mixture_e_step` (its far
    components, which are all of them here), in the arithmetic's dtype (float32).

    Returns
    -------
    Gd : ndarray of shape (nf, Kd), float64
        Sums over rows of the features about each component's ``means_d`` times
        posterior (times sample weight).
    log_likelihood : float
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
    idx = np.empty(size + 1, np.int64)  # + 1: branch-free selection writes one past
    gflat = np.empty(d * size, dt)
    xflat = np.empty(d * size, dt)
    rb = np.empty(size, dt)
    full = n - n % size
    xcs = np.empty((Kd, d, size), dt)
    y = np.empty((d, size), dt)
    xr = np.empty((d, size), dt)
    for s in range(0, full, size):
        ll += _dense_block(X, s, size, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs, y,
                           acc, lpd, resp, mx, tot, xr, S, Gd, idx, gflat, xflat, rb)
    rest = n - full
    if rest > 0:
        # np.dot needs whole contiguous arrays: buffers of the last block's size
        xcs = np.empty((Kd, d, rest), dt)
        y = np.empty((d, rest), dt)
        xr = np.empty((d, rest), dt)
        ll += _dense_block(X, full, rest, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs, y,
                           acc, lpd, resp, mx, tot, xr, S, Gd, idx, gflat, xflat, rb)
    return Gd, ll
