"""Optional numba kernel: the fused E-step of a Gaussian mixture.

Importing this module imports numba; :mod:`emframe.inference.gaussian.kernel` only does
so when numba is installed (``pip install "emframe[fast]"``). The kernel computes
exactly what :meth:`GaussianKernel.mixture_e_step` computes with numpy, block of rows by
block of rows, but with no Python-level step per block: for each block it builds the
features ``[quadratic terms of x - c, x - c, 1]`` (samples along the contiguous axis),
forms all log-densities with one BLAS product, normalises them in place and adds the
block's moments with a second product. Only the totals leave the kernel.

With float32 data the features and both products are float32; each block's
log-densities are normalised in float64 and its moments added to float64 totals.
Compiled code is cached on disk (``cache=True``).
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, error_model="numpy")
def _fill_features(X, s, B, centre, pair_a, pair_b, pair_out, summed, nq, F):
    """Features of rows ``X[s:s+B]`` into ``F[:, :B]`` (F has one row per feature)."""
    d = X.shape[1]
    for j in range(d):
        cj = centre[j]
        row = F[nq + j]
        for i in range(B):
            row[i] = X[s + i, j] - cj
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


@numba.njit(cache=True, error_model="numpy")
def _normalise(lp, B, w, s, has_weight, mx, tot, resp):
    """Posteriors (times sample weight) of a block into ``resp`` (K, B); returns its log-likelihood.

    ``lp`` (K, B) holds the log-densities plus log-weights, in the data's precision;
    the arithmetic here is float64.
    """
    K = lp.shape[0]
    for i in range(B):
        mx[i] = lp[0, i]
    for k in range(1, K):
        for i in range(B):
            v = lp[k, i]
            if v > mx[i]:
                mx[i] = v
    for i in range(B):
        tot[i] = 0.0
    for k in range(K):
        for i in range(B):
            e = np.exp(np.float64(lp[k, i]) - mx[i])
            resp[k, i] = e
            tot[i] += e
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
        for i in range(B):
            resp[k, i] = resp[k, i] / tot[i]
    return ll


@numba.njit(cache=True, error_model="numpy")
def _block_pass(X, s, B, centre, W, pair_a, pair_b, pair_out, summed, nq, sample_weight,
                has_weight, F, lp, resp, resp_t, mx, tot, Gb, G):
    _fill_features(X, s, B, centre, pair_a, pair_b, pair_out, summed, nq, F)
    np.dot(W, F, lp)
    ll = _normalise(lp, B, sample_weight, s, has_weight, mx, tot, resp)
    K = W.shape[0]
    for k in range(K):
        for i in range(B):
            resp_t[i, k] = resp[k, i]
    np.dot(F, resp_t, Gb)
    nf = G.shape[0]
    for a in range(nf):
        for k in range(K):
            G[a, k] += Gb[a, k]
    return ll


@numba.njit(cache=True, error_model="numpy")
def mixture_e_step(X, centre, W, pair_a, pair_b, pair_out, summed, nq, sample_weight,
                   has_weight, block):
    """Fused E-step over all rows of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d), float64 or float32, C-contiguous
    centre : ndarray of shape (d,), same dtype as X
    W : ndarray of shape (K, nf), same dtype as X
        Coefficients of the features in the log-densities plus log-weights.
    pair_a, pair_b, pair_out : ndarray of int64, shape (n_pairs,)
        Quadratic feature ``pair_out[p]`` is ``xc[pair_a[p]] * xc[pair_b[p]]``
        (summed over ``p`` when ``summed``).
    summed : bool
    nq : int
        Number of quadratic features.
    sample_weight : ndarray of shape (n,), float64 (ignored unless ``has_weight``)
    has_weight : bool
    block : int
        Rows per block.

    Returns
    -------
    G : ndarray of shape (nf, K), float64
        Sums over rows of features times posterior (times sample weight).
    log_likelihood : float
    """
    n = X.shape[0]
    K, nf = W.shape
    dt = X.dtype
    G = np.zeros((nf, K))
    ll = 0.0
    size = min(block, n)
    F = np.empty((nf, size), dt)
    F[nf - 1] = 1.0
    lp = np.empty((K, size), dt)
    resp = np.empty((K, size))
    resp_t = np.empty((size, K), dt)
    mx = np.empty(size)
    tot = np.empty(size)
    Gb = np.empty((nf, K), dt)
    full = n - n % size
    for s in range(0, full, size):
        ll += _block_pass(X, s, size, centre, W, pair_a, pair_b, pair_out, summed, nq,
                          sample_weight, has_weight, F, lp, resp, resp_t, mx, tot, Gb, G)
    rest = n - full
    if rest > 0:
        F2 = np.empty((nf, rest), dt)
        F2[nf - 1] = 1.0
        lp2 = np.empty((K, rest), dt)
        resp_t2 = np.empty((rest, K), dt)
        ll += _block_pass(X, full, rest, centre, W, pair_a, pair_b, pair_out, summed, nq,
                          sample_weight, has_weight, F2, lp2, resp, resp_t2, mx, tot, Gb, G)
    return G, ll
