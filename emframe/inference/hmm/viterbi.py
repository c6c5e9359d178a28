"""Most likely state paths (Viterbi), in log space."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from emframe.inference.hmm.common import (
    _check_inputs,
    _numba_kernels,
    _Packing,
    _starts,
    _total,
    _use_numba,
)


def _viterbi_numpy(
    lpi: np.ndarray, lA: np.ndarray, le: np.ndarray, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Batched max-plus Viterbi: (path (T,), best log-probability per sequence)."""
    pk = _Packing(lengths)
    lep = pk.pack(le)
    n_seq = lengths.shape[0]
    backptr = np.zeros(lep.shape, dtype=np.int32)  # rows of step 0 are unused
    final_state = np.zeros(n_seq, dtype=np.int64)  # by rank
    best = np.empty(n_seq)  # by rank
    offset = np.zeros(n_seq)  # by rank: sum of the maxima subtracted so far

    def renormalise(new: np.ndarray, n: int) -> np.ndarray:
        # Keep delta near 0 (precise comparisons for long sequences); an all -inf row
        # (impossible so far) is left as is to avoid -inf - -inf.
        mx = new.max(axis=1)
        offset[:n] += mx
        return new - np.where(mx > -np.inf, mx, 0.0)[:, None]

    def finish(delta: np.ndarray, lo: int, hi: int) -> None:
        # Sequences of ranks lo..hi-1 end at this step; argmax takes the lowest index.
        final_state[lo:hi] = delta[lo:hi].argmax(axis=1)
        best[lo:hi] = offset[lo:hi] + delta[lo:hi].max(axis=1)

    delta = renormalise(lpi + lep[pk.rows(0)], int(pk.n_active[0]))
    for t in range(1, pk.t_max):
        n = int(pk.n_active[t])
        finish(delta, n, delta.shape[0])
        scores = delta[:n, :, None] + lA  # (n, i, j)
        bp = scores.argmax(axis=1)
        backptr[pk.rows(t)] = bp
        new = scores.max(axis=1) + lep[pk.rows(t)]
        delta = renormalise(new, n)
    finish(delta, 0, delta.shape[0])

    states = np.empty(lep.shape[0], dtype=np.int64)
    t_last = pk.t_max - 1
    states[pk.rows(t_last)] = final_state[: int(pk.n_active[t_last])]
    for t in range(t_last - 1, -1, -1):
        n_next = int(pk.n_active[t + 1])
        lo = int(pk.offsets[t])
        nxt = np.arange(int(pk.offsets[t + 1]), int(pk.offsets[t + 1]) + n_next)
        states[lo : lo + n_next] = backptr[nxt, states[nxt]]
        states[lo + n_next : lo + int(pk.n_active[t])] = final_state[n_next : int(pk.n_active[t])]
    return pk.unpack(states), pk.per_sequence(best)


def viterbi(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None = None,
    *,
    backend: str = "auto",
) -> tuple[np.ndarray, float]:
    """Most probable state path (max-plus recursion in log space).

    Parameters
    ----------
    log_startprob : array-like, shape (K,)
    log_transmat : array-like, shape (K, K)
    log_emission : array-like, shape (T, K)
    lengths : array-like of int, shape (n_seq,), optional
    backend : {"auto", "numpy", "numba"}, default "auto"

    Returns
    -------
    path : ndarray of int64, shape (T,)
        The best state sequence of every sequence, concatenated.
    log_prob : float
        Sum over sequences of log p(best path, x); ``-inf`` if some sequence is
        impossible (its path is then arbitrary but deterministic).

    Notes
    -----
    Ties are broken deterministically towards the lowest state index, decided from the
    last step backwards (the final state, then each predecessor in turn). Both backends
    perform the same floating-point operations in the same order, so they return the
    same path.
    """
    use_numba = _use_numba(backend)
    lpi, lA, le, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    if use_numba:
        path, best = _numba_kernels().viterbi(lpi, lA, le, _starts(lengths), lengths)
    else:
        path, best = _viterbi_numpy(lpi, lA, le, lengths)
    return path, _total(best)
