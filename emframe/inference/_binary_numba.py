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

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: Posteriors below exp(-500) of a row's largest are exact zeros (see the Gaussian kernel).
_EXP_FLUSH = -500.0


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
    The histogram and the other accumulators are allocated here, not passed in: the
    compiler then knows they alias nothing and keeps the loops over components
    vectorised (passed-in buffers made the kernel twice as slow).
    """
    n, G = codes.shape
    n_codes, K = tables.shape[1], tables.shape[2]
    flat = tables.ravel()
    hist = np.zeros(tables.shape)
    hflat = hist.ravel()
    nk = np.zeros(K)
    lp = np.empty(K)
    e = np.empty(K)
    bits = np.empty(K, np.int64)
    scale = bits.view(np.float64)
    ll = 0.0
    for i in range(n):
        for k in range(K):
            lp[k] = log_weights[k]
        for g in range(G):
            base = (g * n_codes + codes[i, g]) * K
            for k in range(K):
                lp[k] += flat[base + k]
        mx = lp[0]
        for k in range(1, K):
            mx = lp[k] if lp[k] > mx else mx
        if not (mx > -np.inf and mx < np.inf):
            return hist, nk, ll, True
        tot = 0.0
        for k in range(K):
            v = lp[k] - mx
            x = v if v > _EXP_FLUSH else _EXP_FLUSH
            m = np.floor(x * _LOG2E + 0.5)
            t = (x - m * _LN2_HI) - m * _LN2_LO
            p = 1.0 / 6227020800.0
            p = p * t + 1.0 / 479001600.0
            p = p * t + 1.0 / 39916800.0
            p = p * t + 1.0 / 3628800.0
            p = p * t + 1.0 / 362880.0
            p = p * t + 1.0 / 40320.0
            p = p * t + 1.0 / 5040.0
            p = p * t + 1.0 / 720.0
            p = p * t + 1.0 / 120.0
            p = p * t + 1.0 / 24.0
            p = p * t + 1.0 / 6.0
            p = p * t + 0.5
            p = p * t + 1.0
            p = p * t + 1.0
            bits[k] = (np.int64(m) + 1023) << 52
            e[k] = p * scale[k] if v >= _EXP_FLUSH else 0.0
            tot += e[k]
        lse = mx + np.log(tot)
        if has_weight:
            w = sample_weight[i]
            ll += w * lse
            inv = w / tot
        else:
            ll += lse
            inv = 1.0 / tot
        for k in range(K):
            e[k] *= inv
            nk[k] += e[k]
        for g in range(G):
            base = (g * n_codes + codes[i, g]) * K
            for k in range(K):
                hflat[base + k] += e[k]
    return hist, nk, ll, False
