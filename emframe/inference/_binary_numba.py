"""Optional numba kernel for :mod:`emframe.inference.binary` (imports numba).

One pass over the rows: a row's log-likelihoods are the sums of its groups' table
entries, its posteriors are normalised with a vectorised exp (as in the Gaussian
kernel: ``x = n ln 2 + r``, Taylor polynomial of degree 13, ``2**n`` in the exponent
bits; about one unit in the last place), and they are added into the histogram of
(group, code, component). Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np

from emframe.inference._fastexp import exp_normal

#: Posteriors below exp(-500) of a row's largest are exact zeros (see the Gaussian kernel).
_EXP_FLUSH = -500.0


#: Rows per block: a block's log-likelihoods are normalised along the rows, in loops
#: long enough for the compiler to vectorise (a loop over K = 20 components is not).
BLOCK = 256
#: The product of the rows' normalisers (each in [1, K]) is folded into the
#: log-likelihood (one log) before it can overflow.
_FOLD_ABOVE = 1e280


@numba.njit(cache=True, error_model="numpy")
def mixture_e_step(codes, tables, log_weights, sample_weight, has_weight):
    """Histogram of posteriors by (group, code, component) and the log-likelihood.

    Parameters
    ----------
    codes : ndarray of uint8, shape (n, G)
    tables : ndarray of shape (G, n_codes, K)
    log_weights : ndarray of shape (K,)
    sample_weight : ndarray of shape (n,) (ignored unless ``has_weight``)
    has_weight : bool

    Returns
    -------
    hist : ndarray of shape (G, n_codes, K)
    nk : ndarray of shape (K,)
    log_likelihood : float
    impossible : bool
        A row had log-likelihood ``-inf`` (or NaN) under every component; the other
        outputs are then incomplete and the caller uses its general path.

    Notes
    -----
    Block by block of :data:`BLOCK` rows: the table lookups add each row's
    log-likelihoods (contiguous in the components), the block is transposed, its
    maxima, exponentials and normalisers are computed along the rows, and the
    posteriors, transposed back, are added into the histogram. The histogram and the
    other accumulators are allocated here, not passed in: the compiler then knows they
    alias nothing (passed-in buffers made the kernel twice as slow).
    """
    n, G = codes.shape
    n_codes, K = tables.shape[1], tables.shape[2]
    flat = tables.ravel()
    hist = np.zeros(tables.shape)
    hflat = hist.ravel()
    nk = np.zeros(K)
    lp = np.empty((BLOCK, K))
    lt = np.empty((K, BLOCK))
    mx = np.empty(BLOCK)
    tot = np.empty(BLOCK)
    ll = 0.0
    for s in range(0, n, BLOCK):
        B = min(BLOCK, n - s)
        for i in range(B):
            row = lp[i]
            for k in range(K):
                row[k] = log_weights[k]
            for g in range(G):
                base = (g * n_codes + codes[s + i, g]) * K
                for k in range(K):
                    row[k] += flat[base + k]
        for i in range(B):
            for k in range(K):
                lt[k, i] = lp[i, k]
        for i in range(B):
            mx[i] = lt[0, i]
        for k in range(1, K):
            src = lt[k]
            for i in range(B):
                v = src[i]
                mx[i] = v if v > mx[i] else mx[i]
        bad = False
        for i in range(B):
            bad |= not (mx[i] > -np.inf and mx[i] < np.inf)
        if bad:
            return hist, nk, ll, True
        for i in range(B):
            tot[i] = 0.0
        for k in range(K):
            src = lt[k]
            for i in range(B):
                v = src[i] - mx[i]
                x = v if v > _EXP_FLUSH else _EXP_FLUSH
                e = exp_normal(x) if v >= _EXP_FLUSH else 0.0
                src[i] = e
                tot[i] += e
        block_ll = 0.0
        if has_weight:
            for i in range(B):
                w = sample_weight[s + i]
                block_ll += w * (mx[i] + np.log(tot[i]))
                tot[i] = w / tot[i]
        else:
            prod = 1.0
            for i in range(B):
                block_ll += mx[i]
                prod *= tot[i]
                if prod > _FOLD_ABOVE:
                    block_ll += np.log(prod)
                    prod = 1.0
                tot[i] = 1.0 / tot[i]
            block_ll += np.log(prod)
        ll += block_ll
        for k in range(K):
            src = lt[k]
            for i in range(B):
                src[i] *= tot[i]
        for i in range(B):
            row = lp[i]
            for k in range(K):
                row[k] = lt[k, i]
        for i in range(B):
            row = lp[i]
            for k in range(K):
                nk[k] += row[k]
            for g in range(G):
                base = (g * n_codes + codes[s + i, g]) * K
                for k in range(K):
                    hflat[base + k] += row[k]
    return hist, nk, ll, False
