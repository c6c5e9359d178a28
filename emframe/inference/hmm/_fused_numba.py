"""Optional numba kernel: the fused E-step of an HMM with diagonal Gaussian emissions.

Importing this module imports numba; :mod:`emframe.inference.hmm.fused` only does so
when numba is installed. One compiled call computes what the reference computes in
three numpy steps (the emission log-likelihoods, the scaled forward-backward of
:mod:`emframe.inference.hmm.recursions`, the posterior-weighted moments), sequence by
sequence and block of steps by block of steps:

* forward: a block's scores under every state, their shift by the step's maximum and
  their exponentials are computed along time (long loops the compiler vectorises);
  then the scaled forward recursion runs over the block's steps;
* backward: the scaled backward recursion runs over a block's steps, keeping the
  block's posteriors and backward messages; the block's transition counts are one
  small matrix product, its moments about every state's mean loops along time.

The (T, K) posterior matrix is never formed. The numerical safeguards are those of
the scaled reference (see there): emission ratios below the smallest normal double
are flushed to zero and their posterior mass estimated in log space, the identity
``sum_k alpha_hat beta_hat = 1`` is checked at every step, and a step whose scale
factor falls below ``min_scale`` fails its sequence. A failed sequence adds nothing;
it is reported, for the caller to recompute in log space.

The recursions accumulate each matrix-vector product in a scalar (one dot product per
state, in the reference's order), so the running sums stay in registers; the
log-likelihood is the sum of the step maxima plus the log of the running product of
the scale factors, folded into a log only when the product gets small. Compiled code
is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal

# The running product of scale factors is folded into the log-likelihood (one log)
# once it falls below this: every factor is >= min_scale (1e-290) and <= K, so the
# product stays a normal number.
_FOLD_BELOW = 1e-16
#: Steps per block: a block's scores, emissions and posteriors stay in L1/L2 cache.
BLOCK = 256


@numba.njit(cache=True, error_model="numpy")
def _transpose(X, r0, B, xt):
    """``xt[:, :B] = X[r0:r0+B].T``."""
    d = X.shape[1]
    for i in range(B):
        for a in range(d):
            xt[a, i] = X[r0 + i, a]


@numba.njit(cache=True, error_model="numpy", fastmath={"contract"})
def _scores(xt, B, means_t, prec_t, const, log_tiny, L, mx, E):
    """Shifted emission likelihoods of a block, ``E[j, i] = exp(L[j, i] - mx[i])``.

    ``L`` gets the log-likelihoods (K, B) and ``mx`` their maximum over states. Ratios
    below ``exp(log_tiny)`` are flushed to 0. Returns (any finite ratio was flushed,
    some step is impossible for every state or NaN).

    The exp is the branch-free, vectorisable :func:`~emframe.inference._fastexp.exp_normal`
    (about one unit in the last place, like the C library's exp).
    """
    k = const.shape[0]
    d = xt.shape[0]
    for j in range(k):
        row = L[j]
        for i in range(B):
            row[i] = 0.0
        for a in range(d):
            mu = means_t[a, j]
            pr = prec_t[a, j]
            src = xt[a]
            for i in range(B):
                v = (src[i] - mu) * pr
                row[i] += v * v
        c = const[j]
        for i in range(B):
            row[i] = c - 0.5 * row[i]
    for i in range(B):
        mx[i] = L[0, i]
    for j in range(1, k):
        row = L[j]
        for i in range(B):
            v = row[i]
            mx[i] = v if v > mx[i] else mx[i]
    bad = False
    for i in range(B):
        bad |= not mx[i] > -np.inf
    flushed = False
    for j in range(k):
        row = L[j]
        out = E[j]
        for i in range(B):
            dd = row[i] - mx[i]
            flushed |= dd < log_tiny
            x = dd if dd > log_tiny else log_tiny
            out[i] = exp_normal(x) if dd >= log_tiny else 0.0
    return flushed, bad


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _forward_block(startprob, trans_t, E, t0, B, emis, alpha, scale):
    """Scaled forward recursion over steps t0 .. t0 + B - 1 (local to the sequence).

    Copies the block's emissions into ``emis`` rows for the backward pass. Returns the
    product of the block's scale factors, folded: (log of the folded part, the rest).

    Within the block each step's predictions are made from the previous step's
    unnormalised forward variables and divided by its scale factor afterwards (the
    prediction is linear), so the division is off the recursion's critical path; the
    rows are normalised after the block.
    """
    k = trans_t.shape[0]
    log_prod = 0.0
    prod = 1.0
    inv = 1.0
    for i in range(B):
        t = t0 + i
        e = emis[t]
        a_t = alpha[t]
        c = 0.0
        if t == 0:
            for j in range(k):
                ej = E[j, i]
                e[j] = ej
                v = startprob[j] * ej
                a_t[j] = v
                c += v
        else:
            prev = alpha[t - 1]
            for j in range(k):
                col = trans_t[j]
                s = 0.0
                for m in range(k):
                    s += prev[m] * col[m]
                ej = E[j, i]
                e[j] = ej
                v = (s * inv) * ej
                a_t[j] = v
                c += v
        inv = 1.0 / c
        scale[t] = c
        prod *= c
        if prod < _FOLD_BELOW:
            log_prod += np.log(prod)
            prod = 1.0
    for i in range(B):
        t = t0 + i
        a_t = alpha[t]
        inv = 1.0 / scale[t]
        for j in range(k):
            a_t[j] *= inv
    return log_prod, prod


@numba.njit(cache=True, error_model="numpy")
def _lost_mass(startprob, transmat, means_t, prec_t, const, x, t, log_tiny, lsc, alpha,
               scale, beta):
    """Posterior mass of the flushed emission cells of step ``t`` (data ``x``), in log space."""
    k = transmat.shape[0]
    d = x.shape[0]
    for j in range(k):
        lsc[j] = 0.0
    for a in range(d):
        for j in range(k):
            v = (x[a] - means_t[a, j]) * prec_t[a, j]
            lsc[j] += v * v
    mx = -np.inf
    for j in range(k):
        lsc[j] = const[j] - 0.5 * lsc[j]
        mx = lsc[j] if lsc[j] > mx else mx
    lost = 0.0
    for j in range(k):
        dd = lsc[j] - mx
        if dd < log_tiny and dd > -np.inf:
            if t == 0:
                p = startprob[j]
            else:
                p = 0.0
                for i in range(k):
                    p += alpha[t - 1, i] * transmat[i, j]
            if p > 0.0 and beta[j] > 0.0:
                lost += np.exp(np.log(p) + dd - np.log(scale[t]) + np.log(beta[j]))
    return lost


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _backward_block(transmat, t0, B, n, emis, alpha, scale, beta, Wb, Gb):
    """Scaled backward recursion over steps t0 + B - 1 .. t0 (local to the sequence).

    Row ``i`` of ``Wb`` gets ``w[t + 1] = emis[t + 1] / scale[t + 1] * beta_hat[t + 1]``
    (zero at the sequence's last step), so that the block's transition counts are
    ``alpha_hat[t0:t0+B]^T Wb``; row ``i`` of ``Gb`` the posteriors of step ``t0 + i``.
    ``beta`` carries beta_hat from block to block. Returns the largest deviation of
    ``sum_k alpha_hat beta_hat`` from 1 (NaN if anything overflowed).
    """
    k = transmat.shape[0]
    dev = 0.0
    for i in range(B - 1, -1, -1):
        t = t0 + i
        w = Wb[i]
        if t < n - 1:
            inv = 1.0 / scale[t + 1]
            e = emis[t + 1]
            for j in range(k):
                w[j] = e[j] * inv * beta[j]
            for m in range(k):
                row = transmat[m]
                s = 0.0
                for j in range(k):
                    s += row[j] * w[j]
                beta[m] = s
        else:
            for j in range(k):
                w[j] = 0.0
        a_t = alpha[t]
        g = Gb[i]
        tot = 0.0
        for m in range(k):
            v = a_t[m] * beta[m]
            g[m] = v
            tot += v
        inv = 1.0 / tot
        for m in range(k):
            g[m] *= inv
        dv = abs(tot - 1.0)
        dev = dev if dv <= dev else dv  # NaN sticks: NaN <= x and x <= NaN are both False
    return dev


@numba.njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _block_moments(xt, B, means_t, Gb, Gt, nk, sx, sxx):
    """Add the block's posterior counts and moments about every state's mean.

    Sums along time, which the compiler vectorises (``reassoc``: the order of the
    additions is free; nothing here can be NaN unless the posteriors are, and those
    sequences are discarded).
    """
    k = means_t.shape[1]
    d = xt.shape[0]
    for i in range(B):
        for j in range(k):
            Gt[j, i] = Gb[i, j]
    for j in range(k):
        g = Gt[j]
        s = 0.0
        for i in range(B):
            s += g[i]
        nk[j] += s
        for a in range(d):
            mu = means_t[a, j]
            src = xt[a]
            s1 = 0.0
            s2 = 0.0
            for i in range(B):
                c = src[i] - mu
                gc = g[i] * c
                s1 += gc
                s2 += gc * c
            sx[a, j] += s1
            sxx[a, j] += s2


@numba.njit(cache=True, error_model="numpy")
def _sequence(startprob, transmat, trans_t, means_t, prec_t, const, X, first, n, tol,
              min_scale, log_tiny, work, xi, nk, sx, sxx, start):
    """E-step of one sequence (rows first .. first + n - 1) into the zeroed locals.

    Returns (failed, log-likelihood).
    """
    k = transmat.shape[0]
    emis, alpha, scale, xt, L, mx, E, Wb, Gb, Gt, beta, lsc = work
    # -- forward ------------------------------------------------------------------
    shift_sum = 0.0
    comp = 0.0  # Kahan compensation: T = 1e6 steps of ~-1e4
    log_prod = 0.0
    any_flushed = False
    for t0 in range(0, n, BLOCK):
        B = min(BLOCK, n - t0)
        _transpose(X, first + t0, B, xt)
        flushed, bad = _scores(xt, B, means_t, prec_t, const, log_tiny, L, mx, E)
        if bad:  # a step impossible for every state (or NaN)
            return True, 0.0
        any_flushed |= flushed
        for i in range(B):
            y = mx[i] - comp
            tot = shift_sum + y
            comp = (tot - shift_sum) - y
            shift_sum = tot
        lp, prod = _forward_block(startprob, trans_t, E, t0, B, emis, alpha, scale)
        log_prod += lp + np.log(prod)
    for t in range(n):
        if not scale[t] >= min_scale:  # underflow (or an impossible step)
            return True, 0.0
    # -- backward -------------------------------------------------------------------
    for j in range(k):
        beta[j] = 1.0
    dev = 0.0
    lost = 0.0
    last = ((n - 1) // BLOCK) * BLOCK
    for t0 in range(last, -1, -BLOCK):
        B = min(BLOCK, n - t0)
        if any_flushed:
            # Rare: the lost mass needs beta_hat step by step, so go one step at a time.
            for i in range(B - 1, -1, -1):
                dv = _backward_block(transmat, t0 + i, 1, n, emis, alpha, scale, beta,
                                     Wb[i:], Gb[i:])
                dev = dev if dv <= dev else dv
                lost += _lost_mass(startprob, transmat, means_t, prec_t, const,
                                   X[first + t0 + i], t0 + i, log_tiny, lsc, alpha, scale,
                                   beta)
        else:
            dv = _backward_block(transmat, t0, B, n, emis, alpha, scale, beta, Wb, Gb)
            dev = dev if dv <= dev else dv
        xi += np.dot(alpha[t0 : t0 + B].T, Wb[:B])
        _transpose(X, first + t0, B, xt)
        _block_moments(xt, B, means_t, Gb, Gt, nk, sx, sxx)
    for j in range(k):
        start[j] = Gb[0, j]
    if not (dev <= tol and lost <= tol):
        return True, 0.0
    return False, (log_prod + shift_sum)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def diag_gaussian_e_step(startprob, transmat, means_t, prec_t, const, X, starts, lengths,
                         tol, min_scale, log_tiny, emis, alpha, scale):
    """Fused E-step of an HMM with diagonal Gaussian emissions.

    Parameters
    ----------
    startprob : ndarray, shape (K,)
    transmat : ndarray, shape (K, K)
    means_t : ndarray, shape (d, K)
        The states' means, feature by feature.
    prec_t : ndarray, shape (d, K)
        The square roots of their precisions (inverse standard deviations).
    const : ndarray, shape (K,)
        Log-normalising constants: ``sum_a log prec_t[a, j] - d log(2 pi) / 2``.
    X : ndarray, shape (T, d)
    starts, lengths : ndarray of int64, shape (n_seq,)
    tol, min_scale, log_tiny : float
        As for :func:`emframe.inference.hmm._numba.scaled_forward_backward`.
    emis, alpha : ndarray, shape (>= longest sequence, K)
    scale : ndarray, shape (>= longest sequence,)
        Scratch, passed in so that a caller can keep it from one E-step to the next:
        fresh memory of this size costs a page fault per 4 KiB on first touch, about
        10% of the kernel's time on one sequence of 100,000 steps.

    Returns
    -------
    start_counts : ndarray, shape (K,)
    trans_counts : ndarray, shape (K, K)
    nk : ndarray, shape (K,)
    sum_x : ndarray, shape (d, K)
        ``sum_t gamma_tj (x_t - mean_j)``.
    sum_xx : ndarray, shape (d, K)
        ``sum_t gamma_tj (x_t - mean_j)**2``.
    seq_ll : ndarray, shape (n_seq,)
    failed : ndarray of bool, shape (n_seq,)
        Sequences that add nothing to the statistics (their ``seq_ll`` is meaningless):
        to be recomputed in log space.
    """
    k = transmat.shape[0]
    d = X.shape[1]
    n_seq = lengths.shape[0]
    max_len = 1
    for s in range(n_seq):
        max_len = max(max_len, lengths[s])
    start_counts = np.zeros(k)
    trans_counts = np.zeros((k, k))
    nk = np.zeros(k)
    sum_x = np.zeros((d, k))
    sum_xx = np.zeros((d, k))
    seq_ll = np.zeros(n_seq)
    failed = np.zeros(n_seq, dtype=np.bool_)
    work = (
        emis,
        alpha,
        scale,
        np.empty((d, BLOCK)),  # xt
        np.empty((k, BLOCK)),  # L
        np.empty(BLOCK),  # mx
        np.empty((k, BLOCK)),  # E
        np.empty((BLOCK, k)),  # Wb
        np.empty((BLOCK, k)),  # Gb
        np.empty((k, BLOCK)),  # Gt
        np.empty(k),  # beta
        np.empty(k),  # lsc
    )
    trans_t = np.ascontiguousarray(transmat.T)
    xi = np.empty((k, k))
    nk_s = np.empty(k)
    sx_s = np.empty((d, k))
    sxx_s = np.empty((d, k))
    start_s = np.empty(k)
    for s in range(n_seq):
        xi[:] = 0.0
        nk_s[:] = 0.0
        sx_s[:] = 0.0
        sxx_s[:] = 0.0
        bad, ll = _sequence(startprob, transmat, trans_t, means_t, prec_t, const, X,
                            starts[s], lengths[s], tol, min_scale, log_tiny, work, xi, nk_s,
                            sx_s, sxx_s, start_s)
        if bad:
            failed[s] = True
            continue
        for i in range(k):
            start_counts[i] += start_s[i]
            nk[i] += nk_s[i]
            for j in range(k):
                trans_counts[i, j] += transmat[i, j] * xi[i, j]
        for a in range(d):
            for i in range(k):
                sum_x[a, i] += sx_s[a, i]
                sum_xx[a, i] += sxx_s[a, i]
        seq_ll[s] = ll
    return start_counts, trans_counts, nk, sum_x, sum_xx, seq_ll, failed
