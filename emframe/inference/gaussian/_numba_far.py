"""Far components of the fused Gaussian-mixture E-step, scored where they matter (numba).

Part of :mod:`emframe.inference.gaussian._numba`: with float32 arithmetic every component
is usually too far from the common centring point for the float32 expansion, and each is
scored about its own mean on the rows where it can have a posterior above the flush
threshold, found from lower bounds of the distances (:func:`_direct_best_first`).
"""

from __future__ import annotations

import numba
import numpy as np


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
                       idx, ub, best, flush, flat, ys, top):
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
    component. ``top`` is float64 scratch of length B; ``best`` int64 scratch of length
    2 B + Kd + 1; ``idx`` of length 3 B; ``flat`` of length 2 d B.
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
        if m:
            _gathered_log_prob(xt, idx[start:], m, means_d[j], factors_t[j], shift_d[j],
                               const_d[j], flat, ys, lpd[Kf + j])
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
    rows = idx[B:]
    na = 0
    for i in range(B):
        rows[na] = i  # branch-free: the test is unpredictable
        na += amb[i] != 0
    sel = idx[2 * B :]
    for j in range(Kd):
        u = ub[j]
        m = 0
        for q in range(na):
            i = rows[q]
            sel[m] = i
            m += (u[i] >= top[i]) & (bst[i] != j)
        if m:
            _gathered_log_prob(xt, sel, m, means_d[j], factors_t[j], shift_d[j], const_d[j],
                               flat, ys, lpd[Kf + j])
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
def _gathered_log_prob(xt, idx, m, centre, factor_t, shift, const, flat, acc, lp_row):
    """``lp_row[idx[:m]]`` as :func:`~emframe.inference.gaussian._numba._direct_log_prob_rows`
    computes them, with the product by BLAS and the sums in the arithmetic's dtype
    (``acc``, length >= m); ``flat`` holds at least 2 d m entries."""
    d = xt.shape[0]
    xg = _gather_columns(xt, idx, m, flat)
    for a in range(d):
        c = centre[a]
        row = xg[a]
        for p in range(m):
            row[p] = row[p] - c
    y = flat[d * m : 2 * d * m].reshape(d, m)
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
