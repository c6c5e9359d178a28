"""Far components of the fused Gaussian-mixture E-step, scored where they matter (numba).

Part of :mod:`emframe.inference.gaussian._numba`: with float32 arithmetic every component
is usually too far from the common centring point for the float32 expansion, and each is
scored about its own mean on the rows where it can have a posterior above the flush
threshold, found from lower bounds of the distances (:func:`_direct_best_first`).
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import overload


def _zero(like):
    """Zero in the dtype of the array ``like``."""


@overload(_zero, inline="always")
def _zero_impl(like):
    if like.dtype == types.float32:
        return lambda like: np.float32(0.0)
    return lambda like: 0.0


@numba.njit(cache=True, error_model="numpy")
def _gather_columns(xt, idx, m, flat):
    """The columns ``idx[:m]`` of ``xt`` (d, B) as a contiguous (d, m) view of ``flat``."""
    d = xt.shape[0]
    xg = flat[: d * m].reshape(d, m)
    for a in range(d):
        src = xt[a]
        dst = xg[a]
        for p in range(m):
            dst[p] = src[idx[p]]
    return xg


@numba.njit(cache=True, error_model="numpy")
def _direct_best_first(xt, B, Y, off_d, const_d, means_d, factors_t, shift_d, lpd, Kf, mx,
                       idx, ub, best, flush, flat, ys, top, slots, rows, seg):
    """Log-densities of the far components (rows ``Kf:`` of ``lpd``), where they matter.

    Used with float32 arithmetic (``best_first``). The lower bounds of the distances
    (``Y - off``, see :func:`~emframe.inference.gaussian._numba._rows_that_matter`) give
    every component's largest possible log-density on each row, ``ub``. First each row
    is scored exactly under the component of the largest bound (most likely the row's
    most probable): that sets ``mx`` near the row's largest log-density for every row at
    once, so the bounds then rule out nearly every other component on most rows, which
    are skipped (``-inf``: a posterior of exactly zero). Each component's rows are
    gathered and scored by one BLAS product (:func:`_gathered_log_prob`): about one
    evaluation per row when the components are well apart, instead of one per row and
    component. The rows scored for component j stay gathered and centred in ``slots[j]``
    (their indices in ``rows[j]``, (Kd, B + 1), two segments of ``seg[j]`` rows), for
    :func:`_slot_moments`. ``top`` is float64 scratch of length B; ``best`` int64 scratch
    of length 2 B + Kd + 1; ``idx`` of length 3 B; ``flat`` of length d B.
    """
    Kd, nb = off_d.shape
    for j in range(Kd):
        u = ub[j]
        for i in range(B):
            u[i] = 0.0
        for t in range(nb):
            o = off_d[j, t]
            src = Y[j * nb + t]
            for i in range(B):
                v = np.float64(src[i]) - o
                u[i] += v * v
        c = const_d[j]
        row = lpd[Kf + j]
        for i in range(B):
            u[i] = c - 0.5 * u[i]
            row[i] = -np.inf
    # the component of the largest bound of each row (vectorised: components outside)
    bst = best[:B]
    for i in range(B):
        top[i] = ub[0, i]
        bst[i] = 0
    for j in range(1, Kd):
        u = ub[j]
        for i in range(B):
            gt = u[i] > top[i]
            top[i] = u[i] if gt else top[i]
            bst[i] = j if gt else bst[i]
    # rows bucketed by it (a counting sort), each bucket scored exactly
    cnt = best[B : B + Kd + 1]
    for j in range(Kd + 1):
        cnt[j] = 0
    for i in range(B):
        cnt[bst[i] + 1] += 1
    for j in range(Kd):
        cnt[j + 1] += cnt[j]
    for i in range(B):
        b = bst[i]
        idx[cnt[b]] = i
        cnt[b] += 1
    start = 0
    for j in range(Kd):
        m = cnt[j] - start
        seg[j, 0] = m
        seg[j, 1] = 0
        if m:
            rows[j, :m] = idx[start : start + m]
            _gathered_log_prob(xt, rows[j], m, means_d[j], factors_t[j], shift_d[j],
                               const_d[j], slots[j], flat, ys, lpd[Kf + j])
        start = cnt[j]
    _update_max(lpd, Kf, B, mx)
    # rows where some other component's bound comes within the flush threshold of mx
    for i in range(B):
        top[i] = mx[i] + (flush - 1.0)
    amb = best[B + Kd + 1 : 2 * B + Kd + 1]
    for i in range(B):
        amb[i] = 0
    for j in range(Kd):
        u = ub[j]
        for i in range(B):
            amb[i] += (u[i] >= top[i]) & (bst[i] != j)
    amb_rows = idx[B:]
    na = 0
    for i in range(B):
        amb_rows[na] = i  # branch-free: the test is unpredictable
        na += amb[i] != 0
    for j in range(Kd):
        u = ub[j]
        m1 = seg[j, 0]
        sel = rows[j, m1:]  # of length B + 1 - m1: the last write may be one past the rows
        m = 0
        for q in range(na):
            i = amb_rows[q]
            sel[m] = i
            m += (u[i] >= top[i]) & (bst[i] != j)
        seg[j, 1] = m
        if m:
            d = xt.shape[0]
            _gathered_log_prob(xt, sel, m, means_d[j], factors_t[j], shift_d[j], const_d[j],
                               slots[j, d * m1 :], flat, ys, lpd[Kf + j])
    _update_max(lpd, Kf, B, mx)


@numba.njit(cache=True, error_model="numpy")
def _update_max(lpd, Kf, B, mx):
    """``mx[i] = max(mx[i], lpd[k, i])`` over the rows ``k >= Kf``."""
    for k in range(Kf, lpd.shape[0]):
        row = lpd[k]
        for i in range(B):
            v = row[i]
            mx[i] = v if v > mx[i] else mx[i]


@numba.njit(cache=True, error_model="numpy")
def _gathered_log_prob(xt, idx, m, centre, factor_t, shift, const, xg_flat, flat, acc, lp_row):
    """``lp_row[idx[:m]]`` as :func:`~emframe.inference.gaussian._numba._direct_log_prob_rows`
    computes them, with the product by BLAS and the sums in the arithmetic's dtype
    (``acc``, length >= m). The rows, centred at ``centre``, are left in
    ``xg_flat[:d m]`` as a (d, m) array, for the moments; ``flat`` is scratch of d m."""
    d = xt.shape[0]
    xg = _gather_columns(xt, idx, m, xg_flat)
    for a in range(d):
        c = centre[a]
        row = xg[a]
        for p in range(m):
            row[p] = row[p] - c
    y = flat[: d * m].reshape(d, m)
    np.dot(factor_t, xg, y)
    for p in range(m):
        acc[p] = 0.0
    for b in range(d):
        sh = shift[b]
        src = y[b]
        for p in range(m):
            v = src[p] - sh
            acc[p] += v * v
    for p in range(m):
        lp_row[idx[p]] = const - 0.5 * np.float64(acc[p])


@numba.njit(cache=True, error_model="numpy")
def _slot_moments(slots, rows, seg, resp, Kf, pair_a, pair_b, pair_out, summed, nq, rb, flat,
                  S, Gd):
    """Moments of the far components from the rows :func:`_direct_best_first` scored,
    still gathered and centred at each component's mean in ``slots`` (rows it did not
    score have posteriors of exactly zero): per segment of rows, ``S = (xc r) xc'``
    by one BLAS product, and ``sum_x = xc r``, ``nk = sum r``, added to the float64
    totals ``Gd`` in the layout of the quadratic features."""
    Kd = seg.shape[0]
    d = S.shape[0]
    nf = Gd.shape[0]
    for j in range(Kd):
        off = 0
        for part in range(2):
            m = seg[j, part]
            if m == 0:
                continue
            xs = slots[j, d * off : d * (off + m)].reshape(d, m)
            r = resp[Kf + j]
            for p in range(m):
                rb[p] = r[rows[j, off + p]]
            off += m
            nk = _sum(rb, m)
            if nk == 0.0:
                continue
            Gd[nf - 1, j] += nk
            xr = flat[: d * m].reshape(d, m)
            for a in range(d):
                Gd[nq + a, j] += _scale_sum(xs[a], rb, m, xr[a])
            np.dot(xr, xs.T, S)
            for q in range(pair_a.shape[0]):
                a = pair_a[q]
                b = a if summed else pair_b[q]
                Gd[pair_out[q], j] += S[a, b]


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _sum(v, m):
    """``sum(v[:m])`` in the dtype of ``v``, in any order (vectorised)."""
    acc = _zero(v)
    for p in range(m):
        acc += v[p]
    return acc


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _scale_sum(x, w, m, out):
    """``out[:m] = x[:m] * w[:m]``; returns its sum (any order: vectorised)."""
    acc = _zero(x)
    for p in range(m):
        v = x[p] * w[p]
        out[p] = v
        acc += v
    return acc
