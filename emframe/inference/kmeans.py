"""k-means labels for initialising mixtures, fast on large data.

:func:`kmeans_labels` runs scipy's k-means (``scipy.cluster.vq.kmeans2`` with k-means++
seeding) on a seeded random subsample of at most ``sample_size`` rows, then labels every
row by its nearest centre with one matrix product. On 200,000 rows this costs a few
hundredths of a second instead of most of a second, and a few thousand rows per cluster
place the centres as well as all rows would for a starting point. Results depend only on
the data and the generator's state: the same seed gives the same labels.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.cluster.vq import kmeans2

__all__ = ["DEFAULT_SAMPLE_SIZE", "kmeans_labels", "kmeans_plusplus", "nearest_centre"]

#: Rows k-means runs on by default (all rows when there are fewer).
DEFAULT_SAMPLE_SIZE = 10_000

#: Multiply-adds per product when labelling: small enough for BLAS to stay on one
#: thread (threaded small products stall on a busy machine), large enough to be efficient.
_BLOCK_MULADDS = 3 << 17

#: Beyond this magnitude (either way) squared distances overflow or underflow: scipy's
#: k-means then crashes the interpreter (an out-of-bounds index on inf or NaN
#: probabilities) or puts every row in one cluster.
_SAFE_EXPONENT = 400


def _safely_scaled(X: np.ndarray) -> np.ndarray:
    """``X`` divided by a power of two (exact, so the labels are unchanged) when its
    largest entry is so large or small that squared distances overflow or underflow."""
    top = float(np.max(np.abs(X), initial=0.0))
    if top == 0.0 or abs(np.frexp(top)[1]) <= _SAFE_EXPONENT:
        return X
    return np.ldexp(X, -int(np.frexp(top)[1]))


def nearest_centre(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre (Euclidean) of every row of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    centres : ndarray of shape (K, d)

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    centres = np.asarray(centres, dtype=np.float64)
    # |x - c|^2 = |x|^2 - 2 c'.x + |c'|^2 with c' = c - o: referencing the centres at their
    # mean o keeps the products small, and |x|^2 is the same for every centre, so the
    # nearest centre maximises c'.x - (c'.o + |c'|^2 / 2).
    origin = centres.mean(axis=0)
    cc = centres - origin
    bias = cc @ origin + 0.5 * np.einsum("kd,kd->k", cc, cc)
    out = np.empty(X.shape[0], dtype=np.int64)
    step = max(1024, _BLOCK_MULADDS // max(1, cc.size))
    for s in range(0, X.shape[0], step):
        score = cc @ np.asarray(X[s : s + step], dtype=np.float64).T  # (K, B)
        score -= bias[:, None]
        # the maximum over K rows is K vector passes (argmax over short rows is slower)
        best = score[0].copy()
        label = out[s : s + score.shape[1]]
        label[:] = 0
        for k in range(1, len(cc)):
            np.copyto(label, k, where=score[k] > best)  # ties keep the first, as argmax
            np.maximum(best, score[k], out=best)
    return out


def kmeans_labels(
    X: np.ndarray,
    n_clusters: int,
    rng: np.random.Generator,
    sample_size: int = DEFAULT_SAMPLE_SIZE,
) -> np.ndarray:
    """Cluster labels of every row of ``X`` by k-means on a random subsample.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_clusters : int
    rng : numpy Generator
        Draws the subsample and seeds k-means++.
    sample_size : int
        Rows k-means runs on; with ``n <= sample_size`` it runs on all rows and the
        labels are k-means' own.

    Returns
    -------
    ndarray of int64, shape (n,)
        A cluster may be empty (it then labels no row).
    """
    n = X.shape[0]
    X = _safely_scaled(np.asarray(X, dtype=np.float64))
    with warnings.catch_warnings():
        # scipy warns about empty clusters and divides 0/0 on duplicate points;
        # an empty cluster simply gives a component with no initial data.
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        if n <= sample_size:
            _, labels = kmeans2(X, n_clusters, minit="++", seed=rng)
            return labels.astype(np.int64)
        rows = np.sort(rng.choice(n, size=sample_size, replace=False))
        centres, _ = kmeans2(X[rows], n_clusters, minit="++", seed=rng)
    return nearest_centre(X, centres)


def kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_components`` seed rows of ``X`` chosen by k-means++ (D^2 sampling).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    n_components : int
    rng : numpy Generator

    Returns
    -------
    ndarray of int, shape (n_components,)
    """
    n = X.shape[0]
    X = _safely_scaled(np.asarray(X, dtype=np.float64))
    idx = [int(rng.integers(n))]
    d2 = np.einsum("ij,ij->i", X - X[idx[0]], X - X[idx[0]])
    for _ in range(1, n_components):
        total = d2.sum()
        if total > 0:
            i = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            i = min(i, n - 1)
        else:  # every point coincides with a chosen seed
            i = int(rng.integers(n))
        idx.append(i)
        diff = X - X[i]
        np.minimum(d2, np.einsum("ij,ij->i", diff, diff), out=d2)
    return np.asarray(idx)
