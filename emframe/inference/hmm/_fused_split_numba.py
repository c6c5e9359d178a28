"""Optional numba kernels: the fused Gaussian HMM E-step of one long sequence, in two halves.

The forward recursion and a backward recursion scaled by its *own* normalisers do not
depend on each other, so one sequence's E-step splits into four phases over its halves
(steps ``0 .. h-1`` and ``h .. n-1``):

1. :func:`forward_first` (forward over the first half, keeping the scaled forward
   variables) runs while :func:`backward_second` (backward over the second half,
   keeping its backward variables) runs on another thread;
2. :func:`forward_second` (forward over the second half, combining with the stored
   backward variables into posteriors, pairwise posteriors and moments) runs while
   :func:`backward_first` (backward over the first half, combining with the stored
   forward variables) runs on the other thread.

Each phase is one compiled call that releases the GIL (``nogil=True``): two Python
threads, no numba threading layer. Each phase writes only its own rows and its own
accumulators, so the result does not depend on the threads' timing.

Notation (``A`` the transition matrix, ``e_t`` the step's emission likelihoods
divided by their maximum): the forward variables ``alpha_hat_t`` and scale factors
``c_t`` are the reference's (see :mod:`emframe.inference.hmm.recursions`); the
backward variables are ``b_t = A (e_{t+1} * beta_t)``, ``nb_t = sum(b_t)``,
``beta_t = b_t / nb_t`` (``beta_{n-1} = 1``). Posteriors and pairwise posteriors are
normalised per step by ``alpha_hat_t . b_t`` (first half) or ``c_t alpha_hat_t .
beta_t`` (second half): exact up to rounding.

The reference's identity ``sum_k alpha_hat_t beta_hat_t = 1`` reads here
``I_t = D_{n-1} prod_{s=t}^{n-2} rho_s`` with ``D_t = alpha_hat_t . beta_t`` and
``rho_t = nb_t D_t / (c_{t+1} D_{t+1})``: each phase 2 returns the extremes of its
running product of ``rho``, from which the driver gets the largest ``|I_t - 1|``. A
sequence that fails any check (the identity, a scale factor or normaliser below
``min_scale``, a flushed emission ratio, an impossible step) is recomputed by the
one-pass kernel of :mod:`emframe.inference.hmm._fused_numba`, which decides as the
reference does.
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference.hmm._fused_numba import (
    _FOLD_BELOW,
    BLOCK,
    _block_moments,
    _forward_block,
    _scores,
    _transpose,
)

#: Statuses returned by the phases.
OK, FLUSHED, BAD = 0, 1, 2


@numba.njit(cache=True, nogil=True)
def _block_buffers(k, d):
    """xt, L, mx, E: one block's transposed data, scores and emission ratios."""
    return np.empty((d, BLOCK)), np.empty((k, BLOCK)), np.empty(BLOCK), np.empty((k, BLOCK))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _kahan(mx, B, acc):
    """``acc = (sum, compensation)`` plus ``mx[:B]``."""
    s, comp = acc[0], acc[1]
    for i in range(B):
        y = mx[i] - comp
        tot = s + y
        comp = (tot - s) - y
        s = tot
    acc[0], acc[1] = s, comp


@numba.njit(cache=True, nogil=True, error_model="numpy")
def forward_first(startprob, trans_t, means_t, prec_t, const, X, first, h, log_tiny,
                  min_scale, emis, alpha, scale):
    """Phase 1, forward: steps 0 .. h-1 into ``emis``, ``alpha`` (scaled) and ``scale``.

    Returns (status, sum of the steps' score maxima, log of the product of the scale
    factors).
    """
    k, d = const.shape[0], X.shape[1]
    xt, L, mx, E = _block_buffers(k, d)
    acc = np.zeros(2)
    log_prod = 0.0
    flushed = False
    for t0 in range(0, h, BLOCK):
        B = min(BLOCK, h - t0)
        _transpose(X, first + t0, B, xt)
        fl, bad = _scores(xt, B, means_t, prec_t, const, log_tiny, L, mx, E)
        if bad:
            return BAD, 0.0, 0.0
        flushed |= fl
        _kahan(mx, B, acc)
        lp, prod = _forward_block(startprob, trans_t, E, t0, B, emis, alpha, scale)
        log_prod += lp + np.log(prod)
    for t in range(h):
        if not scale[t] >= min_scale:  # underflow
            return BAD, 0.0, 0.0
    return (FLUSHED if flushed else OK), acc[0], log_prod


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def backward_second(transmat, means_t, prec_t, const, X, first, n, h, log_tiny, emis, beta,
                    nbs):
    """Phase 1, backward: steps n-1 .. h into ``emis``, ``beta`` (normalised) and ``nbs``.

    Returns (status, sum of the steps' score maxima). As in the forward blocks, a step's
    products are taken from the next step's unnormalised variables times the inverse of
    its normaliser, and the rows are normalised after the block.
    """
    k, d = const.shape[0], X.shape[1]
    xt, L, mx, E = _block_buffers(k, d)
    u = np.empty(k)
    acc = np.zeros(2)
    flushed = False
    inv = 1.0
    t1 = n
    while t1 > h:
        t0 = max(h, t1 - BLOCK)
        B = t1 - t0
        _transpose(X, first + t0, B, xt)
        fl, bad = _scores(xt, B, means_t, prec_t, const, log_tiny, L, mx, E)
        if bad:
            return BAD, 0.0
        flushed |= fl
        _kahan(mx, B, acc)
        for i in range(B):
            e = emis[t0 + i]
            for j in range(k):
                e[j] = E[j, i]
        for i in range(B - 1, -1, -1):
            t = t0 + i
            b = beta[t]
            if t == n - 1:
                for j in range(k):
                    b[j] = 1.0
                nbs[t] = 1.0
                inv = 1.0
                continue
            e = emis[t + 1]
            nxt = beta[t + 1]
            for j in range(k):
                u[j] = e[j] * nxt[j]
            tot = 0.0
            for m in range(k):
                row = transmat[m]
                s = 0.0
                for j in range(k):
                    s += row[j] * u[j]
                v = s * inv
                b[m] = v
                tot += v
            nbs[t] = tot
            inv = 1.0 / tot
        for i in range(B):
            t = t0 + i
            if t < n - 1:
                b = beta[t]
                w = 1.0 / nbs[t]
                for j in range(k):
                    b[j] *= w
        inv = 1.0
        t1 = t0
    return (FLUSHED if flushed else OK), acc[0]


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def forward_second(trans_t, means_t, X, first, n, h, min_scale, emis, alpha, beta, nbs,
                   scale, xi, nk, sx, sxx):
    """Phase 2, forward: steps h .. n-1, with the posteriors of steps h .. n-1 and the
    pairwise posteriors of (h-1, h) .. (n-2, n-1) added to the zeroed accumulators.

    Reads ``alpha[h-1]`` and ``beta[h:]``, ``nbs[h:]``, ``emis[h:]``; overwrites
    ``beta[h:]`` with the scaled forward variables as it goes. Returns (ok, log of the
    product of the scale factors, ``c_h D_h``, ``D_{n-1}``, and the minimum, maximum and
    last value of ``q_t = prod_{s=h}^{t-1} rho_s`` over t = h .. n-1).
    """
    k, d = trans_t.shape[0], X.shape[1]
    xt = np.empty((d, BLOCK))
    Ab = np.empty((BLOCK + 1, k))  # alpha_hat of steps t0-1 .. t0+B-1
    Wb = np.empty((BLOCK, k))
    Gb = np.empty((BLOCK, k))
    Gt = np.empty((k, BLOCK))
    for j in range(k):
        Ab[0, j] = alpha[h - 1, j]
    log_prod = 0.0
    prod = 1.0
    inv = 1.0
    cd_h = 0.0
    d_prev = 0.0
    q = 1.0
    qmin = 1.0
    qmax = 1.0
    ok = True
    for t0 in range(h, n, BLOCK):
        B = min(BLOCK, n - t0)
        for i in range(B):
            t = t0 + i
            prev = Ab[i]
            a_t = Ab[i + 1]
            e = emis[t]
            bt = beta[t]
            c = 0.0
            z = 0.0
            for j in range(k):
                col = trans_t[j]
                s = 0.0
                for m in range(k):
                    s += prev[m] * col[m]
                v = (s * inv) * e[j]
                a_t[j] = v
                c += v
                z += v * bt[j]
            inv = 1.0 / c
            scale[t] = c
            ok &= c >= min_scale
            prod *= c
            if prod < _FOLD_BELOW:
                log_prod += np.log(prod)
                prod = 1.0
            # z = c_t D_t: posteriors of t and pairwise posteriors of (t-1, t)
            iz = 1.0 / z
            w = Wb[i]
            g = Gb[i]
            for j in range(k):
                wj = e[j] * bt[j] * iz
                w[j] = wj
                g[j] = a_t[j] * bt[j] * iz
            d_t = z * inv
            ok &= d_t >= min_scale
            if t == h:
                cd_h = z
            else:
                q *= nbs[t - 1] * d_prev * iz
                qmin = q if q < qmin else qmin
                qmax = q if q > qmax else qmax
            d_prev = d_t
        # rows of Ab are c_t alpha_hat_t: normalise them (Ab[0] already is)
        for i in range(B):
            r = Ab[i + 1]
            w = 1.0 / scale[t0 + i]
            for j in range(k):
                r[j] *= w
        inv = 1.0
        xi += np.dot(Ab[:B].T, Wb[:B])
        for j in range(k):
            Ab[0, j] = Ab[B, j]
        _transpose(X, first + t0, B, xt)
        _block_moments(xt, B, means_t, Gb, Gt, nk, sx, sxx)
    log_prod += np.log(prod)
    return ok, log_prod, cd_h, d_prev, qmin, qmax, q


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract"})
def backward_first(transmat, means_t, X, first, h, min_scale, emis, alpha, beta_h, scale,
                   xi, nk, sx, sxx, start):
    """Phase 2, backward: steps h-1 .. 0 from ``beta_h`` (the normalised backward
    variables of step h, copied before phase 2), with the
    posteriors of steps 0 .. h-1 and the pairwise posteriors of (0, 1) .. (h-2, h-1)
    added to the zeroed accumulators, and the posteriors of step 0 into ``start``.

    Reads ``alpha[:h]``, ``emis[1:h+1]`` and ``scale[1:h]``. Returns (ok, ``Z_{h-1} =
    alpha_hat_{h-1} . b_{h-1}``, and the minimum and maximum of
    ``r_t = prod_{s=t}^{h-2} rho_s`` over t = 0 .. h-1).
    """
    k, d = transmat.shape[0], X.shape[1]
    xt = np.empty((d, BLOCK))
    Wb = np.empty((BLOCK, k))
    Gb = np.empty((BLOCK, k))
    Gt = np.empty((k, BLOCK))
    u = np.empty(k)
    bcur = np.empty(k)
    bnext = beta_h.copy()
    inv = 1.0
    d_next = 0.0
    z_last = 0.0
    r = 1.0
    rmin = 1.0
    rmax = 1.0
    ok = True
    t1 = h
    while t1 > 0:
        t0 = max(0, t1 - BLOCK)
        B = t1 - t0
        for i in range(B - 1, -1, -1):
            t = t0 + i
            e = emis[t + 1]
            for j in range(k):
                u[j] = e[j] * bnext[j]
            nb = 0.0
            for m in range(k):
                row = transmat[m]
                s = 0.0
                for j in range(k):
                    s += row[j] * u[j]
                v = s * inv
                bcur[m] = v
                nb += v
            a_t = alpha[t]
            z = 0.0
            for m in range(k):
                z += a_t[m] * bcur[m]
            iz = 1.0 / z
            g = Gb[i]
            w = Wb[i]
            for m in range(k):
                g[m] = a_t[m] * bcur[m] * iz
            if t == h - 1:
                z_last = z
                for j in range(k):
                    w[j] = 0.0  # the pair (h-1, h) is forward_second's
            else:
                f = inv * iz
                for j in range(k):
                    w[j] = u[j] * f
                r *= z / (scale[t + 1] * d_next)
                rmin = r if r < rmin else rmin
                rmax = r if r > rmax else rmax
            ok &= nb >= min_scale
            d_t = z / nb
            ok &= d_t >= min_scale
            d_next = d_t
            inv = 1.0 / nb
            for m in range(k):
                bnext[m] = bcur[m]
        xi += np.dot(alpha[t0:t1].T, Wb[:B])
        _transpose(X, first + t0, B, xt)
        _block_moments(xt, B, means_t, Gb, Gt, nk, sx, sxx)
        if t0 == 0:
            for j in range(k):
                start[j] = Gb[0, j]
        t1 = t0
    return ok, z_last, rmin, rmax
