"""Optional numba kernels for :mod:`emframe.inference.hmm`.

Importing this module imports numba; :mod:`emframe.inference.hmm` only does so when
numba is installed. Each kernel loops over sequences and, within a sequence, over time,
and computes the same quantities as the numpy reference in ``hmm_inference`` (see
there for the algorithms). All array arguments must be C-contiguous float64 (int64
for ``starts`` and ``lengths``) so that each kernel is compiled only once; compiled
code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal

_NEG_INF = -np.inf


@numba.njit(cache=True, error_model="numpy")
def _shifted_emissions(log_emission, first, last, log_tiny, emis, shift):
    """``emis[r] = exp(log_emission[r] - max_j log_emission[r, j])`` for rows first..last.

    Values below ``exp(log_tiny)`` (subnormal) are flushed to 0. The exp is the
    branch-free, vectorisable :func:`emframe.inference._fastexp.exp_normal`.

    Returns
    -------
    status : int
        0: fine; 1: some finite cell was flushed; -1: an impossible step (every
        state ``-inf``) or NaN.
    """
    k = log_emission.shape[1]
    any_flushed = False
    for r in range(first, last + 1):
        row = log_emission[r]
        sh = row[0]
        for j in range(1, k):
            v = row[j]
            sh = v if v > sh else sh
        if not sh > -np.inf:
            return -1
        shift[r] = sh
        out = emis[r]
        for j in range(k):
            d = row[j] - sh
            any_flushed |= (d < log_tiny) & (d > -np.inf)
            x = d if d > log_tiny else log_tiny
            out[j] = exp_normal(x) if d >= log_tiny else 0.0
    return 1 if any_flushed else 0


@numba.njit(cache=True, error_model="numpy")
def _forward_pass(startprob, transmat, emis, shift, first, last, alpha, scale, pred):
    """Scaled forward recursion over rows first..last; returns the log-likelihood.

    No test inside the loop (a zero scale gives inf/NaN, which the caller finds), so
    the loops over states stay simple enough to vectorise.
    """
    k = transmat.shape[0]
    # Kahan summation: T = 1e6 steps of ~-1e4 would otherwise lose ~1e-3.
    ll = 0.0
    comp = 0.0
    for r in range(first, last + 1):
        if r == first:
            for j in range(k):
                pred[j] = startprob[j]
        else:
            for j in range(k):
                pred[j] = 0.0
            for i in range(k):
                a = alpha[r - 1, i]
                for j in range(k):
                    pred[j] += a * transmat[i, j]
        c = 0.0
        for j in range(k):
            a = pred[j] * emis[r, j]
            alpha[r, j] = a
            c += a
        inv = 1.0 / c
        for j in range(k):
            alpha[r, j] *= inv
        scale[r] = c
        y = (np.log(c) + shift[r]) - comp
        tot = ll + y
        comp = (tot - ll) - y
        ll = tot
    return ll


@numba.njit(cache=True, error_model="numpy")
def _backward_pass(startprob, transmat, trans_t, log_emission, shift, log_tiny, flushed,
                   first, last, alpha, scale, gamma, xi, beta, beta_new, w, e_next):
    """Scaled backward recursion over rows last..first; returns (max deviation, lost mass).

    ``gamma`` holds the shifted emission likelihoods on entry (rows first..last) and the
    posteriors on exit: row r of the emissions is read before row r of the posteriors
    overwrites it. Adds ``sum_r alpha_hat[r-1]^T w[r]`` to ``xi``. The deviation is the
    largest ``|sum_k alpha_hat beta_hat - 1|`` (NaN if anything overflowed); the lost
    mass is the posterior mass of flushed emission cells, computed in log space on the
    rows that have them (only when ``flushed``).
    """
    k = transmat.shape[0]
    dev = 0.0
    lost = 0.0
    for i in range(k):
        beta[i] = 1.0
    for r in range(last, first - 1, -1):
        if r < last:
            inv = 1.0 / scale[r + 1]
            for j in range(k):
                w[j] = e_next[j] * inv * beta[j]
            for i in range(k):
                beta_new[i] = 0.0
            for j in range(k):
                wj = w[j]
                for i in range(k):
                    beta_new[i] += trans_t[j, i] * wj
            for i in range(k):
                a = alpha[r, i]
                for j in range(k):
                    xi[i, j] += a * w[j]
            for i in range(k):
                beta[i] = beta_new[i]
        if flushed:
            for j in range(k):
                d = log_emission[r, j] - shift[r]
                if d < log_tiny and d > -np.inf:
                    if r == first:
                        p = startprob[j]
                    else:
                        p = 0.0
                        for i in range(k):
                            p += alpha[r - 1, i] * transmat[i, j]
                    if p > 0.0 and beta[j] > 0.0:
                        lost += np.exp(np.log(p) + d - np.log(scale[r]) + np.log(beta[j]))
        for j in range(k):
            e_next[j] = gamma[r, j]
        tot = 0.0
        for i in range(k):
            g = alpha[r, i] * beta[i]
            gamma[r, i] = g
            tot += g
        inv = 1.0 / tot
        for i in range(k):
            gamma[r, i] *= inv
        a = abs(tot - 1.0)
        dev = dev if a <= dev else a  # NaN sticks: NaN <= x and x <= NaN are both False
    return dev, lost


@numba.njit(cache=True, error_model="numpy")
def scaled_forward_backward(
    startprob, transmat, log_emission, starts, lengths, tol, min_scale, log_tiny
):
    """Scaled forward-backward in probability space.

    Parameters
    ----------
    startprob : ndarray, shape (K,)
    transmat : ndarray, shape (K, K)
    log_emission : ndarray, shape (T, K)
    starts, lengths : ndarray of int64, shape (n_seq,)
    tol : float
        Largest accepted ``|sum_k alpha_hat * beta_hat - 1|``.
    min_scale : float
        Smallest accepted per-step scale factor.
    log_tiny : float
        Shifted emission log-likelihoods below it are flushed to zero and their
        posterior mass is checked against ``tol``.

    Returns
    -------
    gamma : ndarray, shape (T, K)
    trans_counts : ndarray, shape (K, K)
        Sum over the sequences that did not fail.
    seq_ll : ndarray, shape (n_seq,)
    failed : ndarray of bool, shape (n_seq,)
        Sequences to recompute in log space (their other outputs are meaningless).

    Notes
    -----
    The recursions have no early exit, and every inner loop runs over the states with
    unit stride and independent updates (``pred += alpha_i A[i, :]``,
    ``beta += w_j A[:, j]``), so the compiler vectorises them; the checks are
    accumulated on the way and tested after each pass. Only two (T, K) arrays are
    allocated (the emissions live in ``gamma`` until the backward pass replaces them):
    first touches of fresh memory cost about as much as the arithmetic here.
    """
    n_rows, k = log_emission.shape
    n_seq = lengths.shape[0]
    gamma = np.zeros((n_rows, k))
    trans_counts = np.zeros((k, k))
    seq_ll = np.zeros(n_seq)
    failed = np.zeros(n_seq, dtype=np.bool_)
    alpha = np.empty((n_rows, k))
    shift = np.empty(n_rows)
    scale = np.empty(n_rows)
    trans_t = np.ascontiguousarray(transmat.T)
    pred = np.empty(k)
    beta = np.empty(k)
    beta_new = np.empty(k)
    w = np.empty(k)
    e_next = np.empty(k)
    xi = np.empty((k, k))

    for s in range(n_seq):
        first = starts[s]
        last = first + lengths[s] - 1
        status = _shifted_emissions(log_emission, first, last, log_tiny, gamma, shift)
        if status < 0:
            failed[s] = True  # an impossible step (or NaN)
            continue
        ll = _forward_pass(startprob, transmat, gamma, shift, first, last, alpha, scale, pred)
        ok = True
        for r in range(first, last + 1):
            if not scale[r] >= min_scale:  # underflow (or an impossible step)
                ok = False
                break
        if not ok:
            failed[s] = True
            continue
        for i in range(k):
            for j in range(k):
                xi[i, j] = 0.0
        dev, lost = _backward_pass(startprob, transmat, trans_t, log_emission, shift,
                                   log_tiny, status == 1, first, last, alpha, scale, gamma,
                                   xi, beta, beta_new, w, e_next)
        if not (dev <= tol and lost <= tol):
            failed[s] = True
            continue
        for i in range(k):
            for j in range(k):
                trans_counts[i, j] += transmat[i, j] * xi[i, j]
        seq_ll[s] = ll
    return gamma, trans_counts, seq_ll, failed


@numba.njit(cache=True)
def _normalise_log_row(x, out):
    """out = x - logsumexp(x); returns logsumexp(x). An all -inf row stays -inf."""
    k = x.shape[0]
    mx = _NEG_INF
    for j in range(k):
        if x[j] > mx:
            mx = x[j]
    if mx == _NEG_INF:
        for j in range(k):
            out[j] = _NEG_INF
        return _NEG_INF
    s = 0.0
    for j in range(k):
        s += np.exp(x[j] - mx)
    norm = mx + np.log(s)
    for j in range(k):
        out[j] = x[j] - norm
    return norm


@numba.njit(cache=True)
def log_forward(log_startprob, log_transmat, log_emission, starts, lengths):
    """Normalised log-space forward pass.

    Returns
    -------
    log_alpha_hat : ndarray, shape (T, K)
        log p(z_t | x_{s..t}).
    log_scale : ndarray, shape (T,)
        log p(x_t | x_{s..t-1}).
    cum_log_scale : ndarray, shape (T,)
        log p(x_{s..t}).
    """
    n_rows, k = log_emission.shape
    lah = np.empty((n_rows, k))
    lsc = np.empty(n_rows)
    cum = np.empty(n_rows)
    x = np.empty(k)
    for s in range(lengths.shape[0]):
        first = starts[s]
        total = 0.0
        for r in range(first, first + lengths[s]):
            for j in range(k):
                if r == first:
                    pred = log_startprob[j]
                else:
                    # log sum_i exp(lah[r-1, i] + log_transmat[i, j]), per-column max.
                    mx = _NEG_INF
                    for i in range(k):
                        v = lah[r - 1, i] + log_transmat[i, j]
                        if v > mx:
                            mx = v
                    if mx == _NEG_INF:
                        pred = _NEG_INF
                    else:
                        acc = 0.0
                        for i in range(k):
                            acc += np.exp(lah[r - 1, i] + log_transmat[i, j] - mx)
                        pred = mx + np.log(acc)
                x[j] = pred + log_emission[r, j]
            norm = _normalise_log_row(x, lah[r])
            lsc[r] = norm
            total += norm
            cum[r] = total
    return lah, lsc, cum


@numba.njit(cache=True)
def log_backward(log_transmat, log_emission, starts, lengths):
    """Self-normalised log-space backward pass.

    Returns
    -------
    log_beta_tilde : ndarray, shape (T, K)
    cum_log_norm : ndarray, shape (T,)
        ``log_beta = log_beta_tilde + cum_log_norm[:, None]``.
    """
    n_rows, k = log_emission.shape
    lbt = np.empty((n_rows, k))
    cum = np.empty(n_rows)
    x = np.empty(k)
    v = np.empty(k)
    for s in range(lengths.shape[0]):
        first = starts[s]
        last = first + lengths[s] - 1
        for j in range(k):
            lbt[last, j] = 0.0
        cum[last] = 0.0
        total = 0.0
        for r in range(last - 1, first - 1, -1):
            for j in range(k):
                v[j] = log_emission[r + 1, j] + lbt[r + 1, j]
            for i in range(k):
                mx = _NEG_INF
                for j in range(k):
                    t = log_transmat[i, j] + v[j]
                    if t > mx:
                        mx = t
                if mx == _NEG_INF:
                    x[i] = _NEG_INF
                else:
                    acc = 0.0
                    for j in range(k):
                        acc += np.exp(log_transmat[i, j] + v[j] - mx)
                    x[i] = mx + np.log(acc)
            total += _normalise_log_row(x, lbt[r])
            cum[r] = total
    return lbt, cum


@numba.njit(cache=True)
def log_stats(
    log_transmat,
    log_emission,
    starts,
    lengths,
    log_alpha_hat,
    log_scale,
    log_beta_tilde,
    seq_ll,
):
    """Posterior marginals and expected transition counts from log-space passes.

    Sequences with ``seq_ll == -inf`` get NaN posteriors and no counts.
    """
    n_rows, k = log_emission.shape
    gamma = np.empty((n_rows, k))
    trans_counts = np.zeros((k, k))
    x = np.empty(k)
    lg = np.empty(k)
    right = np.empty(k)
    for s in range(lengths.shape[0]):
        first = starts[s]
        last = first + lengths[s] - 1
        if seq_ll[s] == _NEG_INF:
            for r in range(first, last + 1):
                for j in range(k):
                    gamma[r, j] = np.nan
            continue
        for r in range(last, first - 1, -1):
            for j in range(k):
                x[j] = log_alpha_hat[r, j] + log_beta_tilde[r, j]
            norm = _normalise_log_row(x, lg)
            for j in range(k):
                gamma[r, j] = np.exp(lg[j])
            if r > first:
                # xi_{r-1}(i, j) = alpha_hat_{r-1}(i) A(i, j) e_r(j) beta_tilde_r(j)
                #                  / (c_r * sum_k alpha_hat_r(k) beta_tilde_r(k))
                for j in range(k):
                    right[j] = log_emission[r, j] + log_beta_tilde[r, j] - (log_scale[r] + norm)
                for i in range(k):
                    for j in range(k):
                        trans_counts[i, j] += np.exp(
                            log_alpha_hat[r - 1, i] + log_transmat[i, j] + right[j]
                        )
    return gamma, trans_counts


@numba.njit(cache=True)
def viterbi(log_startprob, log_transmat, log_emission, starts, lengths):
    """Max-plus Viterbi; same operations in the same order as the numpy reference.

    Returns
    -------
    path : ndarray of int64, shape (T,)
    best : ndarray, shape (n_seq,)
        log p(best path, x) per sequence.
    """
    n_rows, k = log_emission.shape
    n_seq = lengths.shape[0]
    path = np.empty(n_rows, dtype=np.int64)
    best = np.empty(n_seq)
    max_len = 0
    for s in range(n_seq):
        if lengths[s] > max_len:
            max_len = lengths[s]
    backptr = np.zeros((max_len, k), dtype=np.int32)
    delta = np.empty(k)
    new = np.empty(k)
    for s in range(n_seq):
        first = starts[s]
        n = lengths[s]
        offset = 0.0
        for t in range(n):
            r = first + t
            for j in range(k):
                if t == 0:
                    new[j] = log_startprob[j] + log_emission[r, j]
                else:
                    # First maximum wins: ties go to the lowest predecessor index.
                    arg = 0
                    mx = delta[0] + log_transmat[0, j]
                    for i in range(1, k):
                        v = delta[i] + log_transmat[i, j]
                        if v > mx:
                            mx = v
                            arg = i
                    backptr[t, j] = arg
                    new[j] = mx + log_emission[r, j]
            # Renormalise so delta stays near 0; leave an all -inf row as is.
            mx = new[0]
            for j in range(1, k):
                if new[j] > mx:
                    mx = new[j]
            offset += mx
            sub = mx if mx > _NEG_INF else 0.0
            for j in range(k):
                delta[j] = new[j] - sub
        state = 0
        mx = delta[0]
        for j in range(1, k):
            if delta[j] > mx:
                mx = delta[j]
                state = j
        best[s] = offset + mx
        path[first + n - 1] = state
        for t in range(n - 1, 0, -1):
            state = backptr[t, state]
            path[first + t - 1] = state
    return path, best
