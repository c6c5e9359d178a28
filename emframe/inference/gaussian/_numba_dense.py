"""Dense direct scoring for the fused Gaussian-mixture E-step (numba), float32 arithmetic.

Part of :mod:`emframe.inference.gaussian._numba`, for float32 arithmetic when every
component is too far from the common centring point for the float32 expansion (see
:data:`~emframe.inference.gaussian.kernel.EXPANSION_MAX_DISTANCE_32`): every component is
scored about its own (float32) mean on every row of a block, with no bounds and no row
selection. The block is centred at each mean once; one BLAS product by the component's
factor gives the distances (squared norms summed in float32, each row's log-density in
float64); the same centred block, weighted by the posteriors, gives the component's
moments (:func:`_weighted_moments`: the upper triangle only, by register tiles, over
the gathered rows of non-zero posterior when they are fewer than 35% of the block).
With few components per row within reach this does more arithmetic than
:func:`~emframe.inference.gaussian._numba_far._direct_best_first`, but regular arithmetic
that float32 vectors run twice as wide: at d = 10 it is the faster.
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal32
from emframe.inference.gaussian._numba import _transpose_block
from emframe.inference.gaussian._numba_far import _gather_columns, _zero


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


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _weighted_moments(xc, r, m, S, sx):
    """Moments of the rows ``:m`` of ``xc`` (d, B) weighted by ``r`` (B,): the upper
    triangle of ``S = sum_p r_p xc_p xc_p^T`` (d, d) and ``sx = sum_p r_p xc_p`` (d,).

    ``S`` by tiles of 4 x 2 entries over the rows (8 sums in vector registers, the
    weighted rows formed on the fly, never stored): about 60% of the arithmetic of the
    whole product, which the BLAS pads further.
    """
    d = xc.shape[0]
    for a in range(d):
        acc = _zero(xc)
        row = xc[a]
        for p in range(m):
            acc += r[p] * row[p]
        sx[a] = acc
    for a0 in range(0, d, 4):
        # indices past the end repeat the last one: duplicates of valid entries
        a1, a2, a3 = min(a0 + 1, d - 1), min(a0 + 2, d - 1), min(a0 + 3, d - 1)
        x0, x1, x2, x3 = xc[a0], xc[a1], xc[a2], xc[a3]
        for b0 in range(a0, d, 2):
            b1 = min(b0 + 1, d - 1)
            c0, c1 = xc[b0], xc[b1]
            s00 = s01 = s10 = s11 = s20 = s21 = s30 = s31 = _zero(xc)
            for p in range(m):
                u = r[p] * c0[p]
                v = r[p] * c1[p]
                s00 += x0[p] * u
                s01 += x0[p] * v
                s10 += x1[p] * u
                s11 += x1[p] * v
                s20 += x2[p] * u
                s21 += x2[p] * v
                s30 += x3[p] * u
                s31 += x3[p] * v
            S[a0, b0], S[a0, b1], S[a1, b0], S[a1, b1] = s00, s01, s10, s11
            S[a2, b0], S[a2, b1], S[a3, b0], S[a3, b1] = s20, s21, s30, s31


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _sum_count(r, B):
    """``(sum(r[:B]), count_nonzero(r[:B]))``, vectorised."""
    acc = _zero(r)
    m = 0
    for i in range(B):
        acc += r[i]
        m += r[i] != 0.0
    return acc, m


@numba.njit(cache=True, error_model="numpy")
def _dense_block(X, s, B, means_d, factors_t, shift_d, const_d, pair_a, pair_b, pair_out,
                 summed, nq, sample_weight, has_weight, flush, xt, xcs, y, acc, lpd, resp, mx,
                 tot, sx, S, Gd, idx, gflat, rb):
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
        nk, m = _sum_count(r, B)
        if nk == 0.0:
            continue
        xc = xcs[j]
        if 100 * m < 35 * B:
            m = 0
            for i in range(B):
                idx[m] = i  # branch-free: the test is unpredictable
                m += r[i] != 0.0
            # rows of zero posterior add nothing: the others, gathered (gathering costs
            # about as much per row as the moments: worth it only for few rows)
            xc = _gather_columns(xc, idx, m, gflat)
            for p in range(m):
                rb[p] = r[idx[p]]
            r = rb
        else:
            m = B
        Gd[nf - 1, j] += nk
        _weighted_moments(xc, r, m, S, sx)
        for a in range(d):
            Gd[nq + a, j] += sx[a]
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
    sx = np.empty(d, dt)
    idx = np.empty(size + 1, np.int64)  # + 1: branch-free selection writes one past
    gflat = np.empty(d * size, dt)
    rb = np.empty(size, dt)
    full = n - n % size
    xcs = np.empty((Kd, d, size), dt)
    y = np.empty((d, size), dt)
    for s in range(0, full, size):
        ll += _dense_block(X, s, size, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs, y,
                           acc, lpd, resp, mx, tot, sx, S, Gd, idx, gflat, rb)
    rest = n - full
    if rest > 0:
        # np.dot needs whole contiguous arrays: buffers of the last block's size
        xcs = np.empty((Kd, d, rest), dt)
        y = np.empty((d, rest), dt)
        ll += _dense_block(X, full, rest, means_d, factors_t, shift_d, const_d, pair_a, pair_b,
                           pair_out, summed, nq, sample_weight, has_weight, flush, xt, xcs, y,
                           acc, lpd, resp, mx, tot, sx, S, Gd, idx, gflat, rb)
    return Gd, ll
