"""Fused E-step of an HMM with diagonal Gaussian emissions (compiled, numba).

The reference E-step of :class:`~emframe.models.hmm.GaussianHMM` is three passes over
the data: the (T, K) emission log-likelihoods, the scaled forward-backward
(:func:`~emframe.inference.hmm.forward_backward`) and the posterior-weighted moments.
:func:`diag_gaussian_e_step` computes the same quantities in one compiled call that
never forms the (T, K) posterior matrix (see ``_fused_numba``). It applies to diagonal
(and spherical, whose precisions are repeated over the features) covariances on
complete data; the scaled recursion's checks are the reference's, and a sequence that
fails them is reported for its caller to recompute by the reference path, whose
log-space fallback then takes over.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from emframe.inference.compiled import call_interruptible
from emframe.inference.hmm.common import (
    _IDENTITY_TOL,
    _LOG_TINY,
    _MIN_SCALE,
    _has_subnormal_probs,
    _starts,
    check_kernel_bounds,
    has_numba,
)

__all__ = ["FusedGaussianStats", "diag_gaussian_e_step"]

_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class FusedGaussianStats:
    """Result of :func:`diag_gaussian_e_step`, summed over the sequences that did not fail.

    Attributes
    ----------
    start_counts : ndarray, shape (K,)
    trans_counts : ndarray, shape (K, K)
    nk : ndarray, shape (K,)
        Posterior counts of the states.
    sum_x : ndarray, shape (K, d)
        ``sum_t gamma_tk (x_t - means_k)``.
    sum_xx : ndarray, shape (K, d)
        ``sum_t gamma_tk (x_t - means_k)**2``.
    seq_log_likelihood : ndarray, shape (n_seq,)
        Meaningless for failed sequences.
    failed : ndarray of bool, shape (n_seq,)
        Sequences left out of every sum, to be recomputed by the reference path.
    """

    start_counts: np.ndarray
    trans_counts: np.ndarray
    nk: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    seq_log_likelihood: np.ndarray
    failed: np.ndarray


_LOCAL = threading.local()

#: Largest scratch (in float64 numbers) kept from one call to the next: 64 MiB.
_KEEP_SCRATCH = 1 << 23


def _scratch(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's (n, K), (n, K) and (n,) scratch, kept per thread from one call to the
    next when it is at most :data:`_KEEP_SCRATCH` numbers (the E-steps of a fit have the
    same sizes; threads never share it).

    Fresh memory costs a page fault per 4 KiB when first touched: at T = 100,000 and
    K = 8 that was a third of the E-step's time.
    """
    cached = getattr(_LOCAL, "scratch", None)
    if cached is not None and cached[0].shape[0] >= n and cached[0].shape[1] == k:
        return cached
    fresh = (np.empty((n, k)), np.empty((n, k)), np.empty(n))
    _LOCAL.scratch = fresh if n * (2 * k + 1) <= _KEEP_SCRATCH else None
    return fresh


def diag_gaussian_e_step(
    startprob: np.ndarray,
    transmat: np.ndarray,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    X: np.ndarray,
    lengths: np.ndarray,
) -> FusedGaussianStats | None:
    """Posterior counts and moments of an HMM with diagonal Gaussian emissions.

    Parameters
    ----------
    startprob : ndarray, shape (K,)
    transmat : ndarray, shape (K, K)
    means : ndarray, shape (K, d)
    precisions_cholesky : ndarray, shape (K, d)
        Inverse standard deviations.
    X : ndarray, shape (T, d)
        The concatenated sequences. A sequence with a NaN (a missing entry) is
        reported failed.
    lengths : ndarray of int64, shape (n_seq,)
        Validated lengths (see :func:`~emframe.inference.hmm.validate_lengths`).

    Returns
    -------
    FusedGaussianStats or None
        None when the model has positive start or transition probabilities below the
        smallest normal double: the reference sends such models to log space.

    Raises
    ------
    ValueError
        If numba is not installed.
    """
    if not has_numba():
        raise ValueError('the fused HMM E-step needs numba: pip install "emframe[fast]"')
    startprob = np.ascontiguousarray(startprob, dtype=np.float64)
    transmat = np.ascontiguousarray(transmat, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if _has_subnormal_probs(np.log(startprob)) or _has_subnormal_probs(np.log(transmat)):
            return None
    X = np.ascontiguousarray(X, dtype=np.float64)
    pc = np.asarray(precisions_cholesky, dtype=np.float64)
    k, d = np.shape(means)
    if X.ndim != 2 or X.shape[1] != d or pc.shape != (k, d) or startprob.shape != (k,) \
            or transmat.shape != (k, k):
        raise ValueError("internal error: inconsistent shapes for the fused HMM E-step")
    lengths = np.asarray(lengths, dtype=np.int64)
    starts = _starts(lengths)
    check_kernel_bounds(starts, lengths, X.shape[0])
    const = np.sum(np.log(pc), axis=1) - 0.5 * d * _LOG_2PI
    from emframe.inference.hmm import _fused_numba

    emis, alpha, scale = _scratch(int(lengths.max()), k)
    start, trans, nk, sx, sxx, seq_ll, failed = call_interruptible(
        _fused_numba.diag_gaussian_e_step,
        startprob, transmat, np.ascontiguousarray(np.asarray(means, dtype=np.float64).T),
        np.ascontiguousarray(pc.T), const, X, starts, lengths,
        _IDENTITY_TOL, _MIN_SCALE, _LOG_TINY, emis, alpha, scale,
    )
    return FusedGaussianStats(start, trans, nk, sx.T.copy(), sxx.T.copy(), seq_ll, failed)
