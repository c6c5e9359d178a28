"""Optional numba kernel: the fused E-step of a Gaussian mixture.

Importing this module imports numba; :mod:`emframe.inference.gaussian.kernel` only does
so when numba is installed (``pip install "emframe[fast]"``). The kernel computes
exactly what :meth:`GaussianKernel.mixture_e_step` computes with numpy, block of rows by
block of rows, but with no Python-level step per block: for each block it builds the
features ``[quadratic terms of x - c, x - c, 1]`` (samples along the contiguous axis),
forms all log-densities with one BLAS product, normalises them in place and adds the
block's moments with a second product. Only the totals leave the kernel.

Components too far from the centring point for the expansion are scored about their
own means (through a dense factor of their precision), and only on the rows where they
can matter: a lower bound of the distance along their principal directions (one small
product for all of them) tells which rows would give them a posterior below the flush
threshold, exactly zero either way; their moments are added from the rows where their
posteriors are not zero. A tight component (most of them) is then nearly free.

With float32 arithmetic (``best_first``) the features, the products, the distances
and the posteriors are float32 (a float32 exp, flushed below ``exp(-87)``, where float32
posteriors become subnormal); each row's log-densities are kept and its log-likelihood
summed in float64, and each block's moments are added to float64 totals. The far
components are then scored by :func:`~emframe.inference.gaussian._numba_far._direct_best_first`
(each row first under the component whose bound is largest). float64 arithmetic gives
the same results as before these float32 paths, bit for bit.
Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import overload

from emframe.inference._fastexp import exp_normal, exp_normal32
from emframe.inference.gaussian._numba_far import (
    _direct_best_first,
    _gather_columns,
    _slot_moments,
    _zero,
)


@numba.njit(cache=True, error_model="numpy")
def _transpose_block(X, s, B, xt):
    """``xt[:, :B] = X[s:s+B].T`` in the arithmetic's dtype (read once per block)."""
    d = X.shape[1]
    for i in range(B):
        for j in range(d):
            xt[j, i] = X[s + i, j]


@numba.njit(cache=True, error_model="numpy")
def _fill_features(xt, B, centre, pair_a, pair_b, pair_out, summed, nq, F):
    """Features of the block ``xt`` (d, B) about ``centre`` into ``F[:, :B]``."""
    d = xt.shape[0]
    for j in range(d):
        cj = centre[j]
        row = F[nq + j]
        src = xt[j]
        for i in range(B):
            row[i] = src[i] - cj
    if summed:
        for i in range(B):
            F[0, i] = 0.0
        for p in range(pair_a.shape[0]):
            xa = F[nq + pair_a[p]]
            out = F[pair_out[p]]
            for i in range(B):
                out[i] += xa[i] * xa[i]
    else:
        for p in range(pair_a.shape[0]):
            xa = F[nq + pair_a[p]]
            xb = F[nq + pair_b[p]]
            out = F[pair_out[p]]
            for i in range(B):
                out[i] = xa[i] * xb[i]


def _flushed_exp(v, flush, like):
    """``exp(v)`` in the dtype of ``like``, 0 below ``flush`` (>= -87 for float32)."""


@overload(_flushed_exp, inline="always")
def _flushed_exp_impl(v, flush, like):
    if like.dtype == types.float32:

        def exp32(v, flush, like):
            x = np.float32(v if v > flush else flush)
            return exp_normal32(x) if v >= flush else np.float32(0.0)

        return exp32

    def exp64(v, flush, like):
        x = v if v > flush else flush
        return exp_normal(x) if v >= flush else 0.0

    return exp64


@numba.njit(cache=True, error_model="numpy")
def _exp_rows(lp, B, mx, resp, flush):
    """``resp[k, i] = exp(lp[k, i] - mx[i])`` (0 below ``flush``) in ``resp``'s dtype;
    True if any NaN.

    A branch-free exp that the compiler vectorises (:mod:`emframe.inference._fastexp`),
    accurate to about one unit in the last place, like the C library's exp, and
    several times faster; in float32 twice as many at once.
    """
    K = lp.shape[0]
    nan = False
    for k in range(K):
        row = lp[k]
        out = resp[k]
        for i in range(B):
            v = np.float64(row[i]) - mx[i]
            nan |= v != v
            out[i] = _flushed_exp(v, flush, out)
    return nan


@numba.njit(cache=True, error_model="numpy")
def _normalise(lp, B, w, s, has_weight, mx, tot, resp, flush):
    """Posteriors (times sample weight) of a block into ``resp`` (K, B); returns its log-likelihood.

    ``lp`` (K, B) holds the log-densities plus log-weights; the arithmetic here is
    float64. Any NaN makes the log-likelihood NaN, as in the numpy reference.
    """
    K = lp.shape[0]
    for i in range(B):
        mx[i] = lp[0, i]
    for k in range(1, K):
        row = lp[k]
        for i in range(B):
            v = row[i]
            mx[i] = v if v > mx[i] else mx[i]
    nan = _exp_rows(lp, B, mx, resp, flush)
    for i in range(B):
        tot[i] = 0.0
    for k in range(K):
        out = resp[k]
        for i in range(B):
            tot[i] += out[i]
    ll = 0.0
    for i in range(B):
        lse = mx[i] + np.log(tot[i])
        if has_weight:
            wi = w[s + i]
            ll += wi * lse
            tot[i] = tot[i] / wi
        else:
            ll += lse
    for k in range(K):
        out = resp[k]
        for i in range(B):
            out[i] = out[i] / tot[i]
    return np.nan if nan else ll


@numba.njit(cache=True, error_model="numpy")
def _direct_log_prob(xt, B, centre, factor_t, shift, const, xc, y, lp_row):
    """``lp_row[:B] = const - |(x - centre) M - shift|^2 / 2``, accumulated in float64.

    ``xc`` and ``y`` are (d, B) scratch of the block's exact size (for BLAS); ``factor_t``
    is ``M'``, so one product gives every row's ``(x - centre) M``.
    """
    d = xt.shape[0]
    for a in range(d):
        c = centre[a]
        src = xt[a]
        out = xc[a]
        for i in range(B):
            out[i] = src[i] - c
    np.dot(factor_t, xc, y)
    for i in range(B):
        lp_row[i] = 0.0
    for b in range(d):
        sh = shift[b]
        src = y[b]
        for i in range(B):
            v = np.float64(src[i]) - sh
            lp_row[i] += v * v
    for i in range(B):
        lp_row[i] = const - 0.5 * lp_row[i]


@numba.njit(cache=True, error_model="numpy")
def _direct_moments(Fd, r, rb, Gd, j):
    """``Gd[:, j] += Fd @ r[:B]`` (one BLAS product), added to float64 totals; nothing to
    do when every posterior of the block is zero (a tight far component, far from it)."""
    nonzero = False
    for i in range(rb.shape[0]):
        rb[i] = r[i]
        nonzero |= r[i] != 0.0
    if not nonzero:
        return
    v = np.dot(Fd, rb)
    for p in range(v.shape[0]):
        Gd[p, j] += v[p]


@numba.njit(cache=True, error_model="numpy")
def _rows_that_matter(Y, off, B, const, mx, idx, lb, flush):
    """Rows of the block whose log-density under a far component can be within
    ``-flush + 1`` nats of ``mx`` (the largest log-density found so far), into
    ``idx``; returns their number.

    The squared Mahalanobis distance is a sum of squares along any orthogonal basis;
    the few terms along the precision's principal directions bound it from below:
    ``Y[t] - off[t]`` is ``(x - mean) . dir_t`` (each direction scaled by the square
    root of its eigenvalue). So ``const - sum_t (Y[t] - off[t])^2 / 2`` bounds the
    log-density from above; rows below the flush threshold by more than one nat more
    (for rounding) would get a posterior of exactly zero, and their log-densities need
    not be computed. A tight component is far from most rows along its tight
    directions: this saves its d x d product on them.
    """
    for i in range(B):
        lb[i] = 0.0
    for t in range(off.shape[0]):
        o = off[t]
        src = Y[t]
        for i in range(B):
            v = np.float64(src[i]) - o
            lb[i] += v * v
    m = 0
    for i in range(B):
        idx[m] = i  # branch-free: the test is unpredictable
        m += const - 0.5 * lb[i] >= mx[i] + (flush - 1.0)
    return m


@numba.njit(cache=True, error_model="numpy")
def _direct_log_prob_rows(xt, idx, m, centre, factor_t, shift, const, flat, y, acc, lp_row):
    """:func:`_direct_log_prob` on the rows ``idx[:m]`` only (the others are left alone).

    The rows are gathered, then every loop runs along them (vectorised); ``flat`` is
    scratch of at least d * m entries in the arithmetic's dtype, ``y`` and ``acc``
    scratch of at least m (float64, or float32 to sum in float32: twice as fast).
    """
    d = xt.shape[0]
    xg = _gather_columns(xt, idx, m, flat)
    for a in range(d):
        c = centre[a]
        row = xg[a]
        for p in range(m):
            row[p] = row[p] - c
    for p in range(m):
        acc[p] = 0.0
    for b in range(d):
        for p in range(m):
            y[p] = 0.0
        for a in range(d):
            w = factor_t[b, a]
            row = xg[a]
            for p in range(m):
                y[p] += row[p] * w
        sh = shift[b]
        for p in range(m):
            v = y[p] - sh
            acc[p] += v * v
    for p in range(m):
        lp_row[idx[p]] = const - 0.5 * acc[p]


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _weighted_row_sums(F, w, m, out, j):
    """``out[q, j] += sum_p F[q, p] w[p]`` for p < m (sums in any order: vectorised), in
    the dtype of ``F`` and ``w`` (a block's float32 sums are added to float64 totals)."""
    for q in range(F.shape[0]):
        row = F[q]
        acc = _zero(row)
        for p in range(m):
            acc += row[p] * w[p]
        out[q, j] += acc


@numba.njit(cache=True, error_model="numpy")
def _direct_moments_rows(xt, idx, m, centre, r, pair_a, pair_b, pair_out, summed, nq, flat,
                         flat_f, rb, Gd, j):
    """``Gd[:, j] +=`` the features about ``centre`` of the rows ``idx[:m]``, weighted by
    their posteriors ``r`` (rows with a zero posterior add nothing)."""
    d = xt.shape[0]
    nf = nq + d + 1
    xg = _gather_columns(xt, idx, m, flat)
    Fc = flat_f[: nf * m].reshape(nf, m)
    for p in range(m):
        Fc[nf - 1, p] = 1.0
        rb[p] = r[idx[p]]
    _fill_features(xg, m, centre, pair_a, pair_b, pair_out, summed, nq, Fc)
    _weighted_row_sums(Fc, rb, m, Gd, j)


@numba.njit(cache=True, error_model="numpy")
def _block_pass(X, s, B, centre, W, means_d, factors_t, shift_d, const_d, dirs, off_d,
                pair_a, pair_b, pair_out, summed, nq, sample_weight, has_weight, xt, xc, y, F,
                Fd, lp, lpd, resp, resp_t, rb, mx, tot, Gb, G, Gd, idx, xcm, ym, Fr,
                y64, flush, best_first, ub, best, ys, slots, rows, seg, S):
    Kf = W.shape[0]
    Kd = means_d.shape[0]
    _transpose_block(X, s, B, xt)
    for i in range(B):
        mx[i] = -np.inf
    if Kf:
        _fill_features(xt, B, centre, pair_a, pair_b, pair_out, summed, nq, F)
        np.dot(W, F, lp)
        for k in range(Kf):
            for i in range(B):
                v = lp[k, i]
                lpd[k, i] = v
                mx[i] = v if v > mx[i] else mx[i]
    if Kd:
        # lower bounds of the far components' distances: one product for all of them
        nb = off_d.shape[1]
        for a in range(xt.shape[0]):
            c = centre[a]
            src = xt[a]
            dst = xc[a]
            for i in range(B):
                dst[i] = src[i] - c
        Y = y64[: Kd * nb * B].reshape(Kd * nb, B)
        np.dot(dirs, xc, Y)
    if Kd and best_first:
        _direct_best_first(xt, B, Y, off_d, const_d, means_d, factors_t, shift_d, lpd, Kf, mx,
                           idx, ub, best, flush, xcm, ys, tot, slots, rows, seg)
    for j in range(0 if best_first else Kd):
        # Far components: x - mean_j from the data, so nothing cancels; only on the rows
        # where the component can have a posterior above the flush threshold.
        row = lpd[Kf + j]
        m = _rows_that_matter(Y[j * nb : (j + 1) * nb], off_d[j], B, const_d[j], mx, idx, tot,
                              flush)
        if m == B:
            _direct_log_prob(xt, B, means_d[j], factors_t[j], shift_d[j], const_d[j], xc, y,
                             row)
        else:
            for i in range(B):
                row[i] = -np.inf
            if m:
                _direct_log_prob_rows(xt, idx, m, means_d[j], factors_t[j], shift_d[j],
                                      const_d[j], xcm, ym, tot, row)
        for i in range(B):
            v = row[i]
            mx[i] = v if v > mx[i] else mx[i]
    ll = _normalise(lpd, B, sample_weight, s, has_weight, mx, tot, resp, flush)
    if Kf:
        for k in range(Kf):
            for i in range(B):
                resp_t[i, k] = resp[k, i]
        np.dot(F, resp_t, Gb)
        nf = G.shape[0]
        for a in range(nf):
            for k in range(Kf):
                G[a, k] += Gb[a, k]
    if Kd and best_first:
        _slot_moments(slots, rows, seg, resp, Kf, pair_a, pair_b, pair_out, summed, nq, rb, xcm,
                      S, Gd)
    for j in range(0 if best_first else Kd):
        # A tight far component has posteriors of exactly zero on most rows: only the
        # others add to its moments.
        r = resp[Kf + j]
        m = 0
        for i in range(B):
            idx[m] = i  # branch-free
            m += r[i] != 0.0
        if 2 * m >= B:
            _fill_features(xt, B, means_d[j], pair_a, pair_b, pair_out, summed, nq, Fd)
            _direct_moments(Fd, r, rb, Gd, j)
        elif m:
            _direct_moments_rows(xt, idx, m, means_d[j], r, pair_a, pair_b, pair_out, summed,
                                 nq, xcm, Fr, rb, Gd, j)
    return ll


@numba.njit(cache=True, error_model="numpy")
def mixture_e_step(X, centre, W, means_d, factors_t, shift_d, const_d, dirs, off_d, pair_a,
                   pair_b, pair_out, summed, nq, sample_weight, has_weight, block, flush,
                   best_first):
    """Fused E-step over all rows of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float64 or float32, C-contiguous
    centre : ndarray of shape (d,), dtype of the arithmetic (float64, or float32)
    W : ndarray of shape (Kf, nf), dtype of the arithmetic
        Coefficients of the features about ``centre`` in the log-densities plus
        log-weights of the expanded components.
    means_d : ndarray of shape (Kd, d), dtype of the arithmetic
        Reference points of the components evaluated directly: their means (rounded to
        float32 with float32 arithmetic).
    factors_t : ndarray of shape (Kd, d, d), dtype of the arithmetic
        Transposed factors ``M'``: the squared Mahalanobis distance is
        ``|(x - mean) M|^2 = |(x - means_d) M - shift_d|^2``.
    dirs : ndarray of shape (Kd * nb, d), dtype of the arithmetic
        The nb leading principal directions of each of their precisions, scaled by the
        square roots of the eigenvalues (shrunk by a margin for rounding).
    off_d : ndarray of shape (Kd, nb), float64
        ``(mean - centre) . dir`` of each: ``(x - centre) . dir - off`` is
        ``(x - mean) . dir``, and their squares add up to a lower bound of the squared
        Mahalanobis distance (a log-density is not computed where this bound puts it
        below the flush threshold).
    pair_a, pair_b, pair_out : ndarray of int64, shape (n_pairs,)
        Quadratic feature ``pair_out[p]`` is ``xc[pair_a[p]] * xc[pair_b[p]]``
        (summed over ``p`` when ``summed``).
    summed : bool
    nq : int
        Number of quadratic features; ``nf = nq + d + 1``.
    sample_weight : ndarray of shape (n,), float64 (ignored unless ``has_weight``)
    has_weight : bool
    block : int
        Rows per block.

    Returns
    -------
    G : ndarray of shape (nf, Kf), float64
        Sums over rows of the features about ``centre`` times posterior (times
        sample weight), expanded components.
    Gd : ndarray of shape (nf, Kd), float64
        The same about each direct component's mean.
    log_likelihood : float
    """
    n, d = X.shape
    Kf = W.shape[0]
    Kd = means_d.shape[0]
    K = Kf + Kd
    nf = nq + d + 1
    dt = W.dtype  # the arithmetic's precision (X may be float32 with float64 arithmetic)
    G = np.zeros((nf, Kf))
    Gd = np.zeros((nf, Kd))
    ll = 0.0
    size = min(block, n)
    F = np.empty((nf, size), dt)
    F[nf - 1] = 1.0
    xt = np.empty((d, size), dt)
    xc = np.empty((d, size), dt)
    y = np.empty((d, size), dt)
    Fd = np.empty((nf, size), dt)
    Fd[nf - 1] = 1.0
    lp = np.empty((Kf, size), dt)
    lpd = np.empty((K, size))
    resp = np.empty((K, size), dt)
    resp_t = np.empty((size, Kf), dt)
    rb = np.empty(size, dt)
    mx = np.empty(size)
    tot = np.empty(size)
    Gb = np.empty((nf, Kf), dt)
    idx = np.empty(size, np.int64)
    xcm = np.empty(size * d, dt)  # flat scratch for gathered rows
    ym = np.empty(size)
    Fr = np.empty(size * nf, dt)
    y64 = np.empty(dirs.shape[0] * size, dt)
    ub = np.empty((Kd if best_first else 0, size))
    best = np.empty(2 * size + Kd + 1 if best_first else 0, np.int64)
    nbf = Kd if best_first else 0
    slots = np.empty((nbf, d * size), dt)  # the rows each far component was scored on
    rows = np.empty((nbf, size + 1), np.int64)  # + 1: branch-free selection writes one past
    seg = np.empty((nbf, 2), np.int64)
    S = np.empty((d, d), dt)
    if best_first:
        idx = np.empty(3 * size, np.int64)
        xcm = np.empty(2 * size * d, dt)
    ys = np.empty(size, dt)
    full = n - n % size
    for s in range(0, full, size):
        ll += _block_pass(X, s, size, centre, W, means_d, factors_t, shift_d, const_d, dirs,
                          off_d, pair_a, pair_b, pair_out, summed, nq,
                          sample_weight, has_weight, xt, xc, y, F, Fd, lp, lpd, resp, resp_t,
                          rb, mx, tot, Gb, G, Gd, idx, xcm, ym, Fr, y64, flush, best_first, ub,
                          best, ys, slots, rows, seg, S)
    rest = n - full
    if rest > 0:
        # np.dot needs whole contiguous arrays: buffers of the last block's size
        F2 = np.empty((nf, rest), dt)
        F2[nf - 1] = 1.0
        Fd2 = np.empty((nf, rest), dt)
        Fd2[nf - 1] = 1.0
        xc2 = np.empty((d, rest), dt)
        y2 = np.empty((d, rest), dt)
        lp2 = np.empty((Kf, rest), dt)
        resp_t2 = np.empty((rest, Kf), dt)
        rb2 = np.empty(rest, dt)
        ll += _block_pass(X, full, rest, centre, W, means_d, factors_t, shift_d, const_d,
                          dirs, off_d, pair_a, pair_b, pair_out, summed, nq,
                          sample_weight, has_weight, xt, xc2, y2, F2, Fd2, lp2, lpd, resp,
                          resp_t2, rb2, mx, tot, Gb, G, Gd, idx, xcm, ym, Fr, y64, flush,
                          best_first, ub, best, ys, slots, rows, seg, S)
    return G, Gd, ll
