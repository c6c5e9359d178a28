"""Blocked scaled forward-backward for long sequences (numpy only).

The per-step scaled recursion (``recursions._scaled_fb_steps``) is vectorised across
sequences but makes a few small numpy calls per time step, so one sequence of ``T``
steps costs ``T`` Python iterations however few states it has. Here a long sequence is
cut into ``B`` chunks of ``L ~ sqrt(T)`` steps and every pass runs over the chunks at
once, in ``O(L + B)`` Python iterations:

1. *Transfer operators*, all chunks at once in a loop of ``L`` steps. Chunk ``b``
   (steps ``s .. e``) has the operator ``P_b = A D_s A D_{s+1} ... A D_e`` with ``D_t``
   the diagonal of the step's emission likelihoods, shifted and flushed exactly as the
   per-step recursion does. Row ``i`` of ``P_b`` is the forward vector started from
   state ``i`` at step ``s - 1``; it is kept normalised, ``R_t = rownorm(R_{t-1} A D_t)``,
   with the logarithm of its scale, so nothing under- or overflows. A sequence's first
   chunk starts from ``startprob`` instead (all its rows alike).
2. *Boundaries*, one pass over the chunks (vectorised across sequences). Forward:
   ``alpha_hat_e ~ alpha_hat_{s-1} P_b``, combined in log scale from the rows (all terms
   are non-negative, so there is no cancellation); its normaliser is the likelihood of
   the chunk given the past, ``log C_b``. Backward, the same operator:
   ``beta_hat_{s-1} = P_b beta_hat_e / C_b``.
3. *The per-step recursion, rerun on the chunks as if they were sequences*, from those
   boundary vectors: its scale factors are the textbook ones, so the log-likelihood,
   the posteriors and the expected counts are the per-step recursion's up to rounding,
   and its checks (the identity ``sum_k alpha_hat * beta_hat == 1``, the flushed cells'
   posterior mass, the smallest scale factor) run on every step as usual. The
   transitions that cross a chunk boundary are added from the first and last steps of
   the chunks.

An operator row whose scale falls below ``_MIN_SCALE`` (its products may be subnormal)
is dropped, unless it dies cleanly (every path out of its state meets an exact zero),
and a bound on the posterior mass it held is kept. A sequence is handed back to the
per-step recursion (which then decides, as for any sequence, whether to recompute it in
log space) whenever something is unusual: that bound above ``_CONSISTENCY_TOL``, a NaN,
a non-finite boundary, a check of the rerun failing, or a rerun chunk whose last forward
(or first backward) vector differs from the boundary computed from the operators by
more than ``_CONSISTENCY_TOL`` (a second line of defence: the identity check already
sees such differences). So the blocked path never returns an answer other than the
exact one beyond rounding. It may succeed where the per-step recursion has to go to log
space (a backward variable of an impossible state that overflows over many steps does
not overflow within a short chunk); the tests then compare it with that log-space result.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from emframe.inference.hmm.common import _LOG_TINY, _MIN_SCALE, _Packing, _starts

_LOG_MIN_SCALE = math.log(_MIN_SCALE)

#: Sequences of at least this many steps may use the blocked recursion.
BLOCK_MIN = 256

#: The blocked recursion's operators cost ~K**3 per step and state row where the
#: per-step recursion costs ~K**2 per step plus a fixed ~10 us of Python per time step,
#: shared by all the sequences running at that step. So it pays when the sequences
#: it takes hold at most ``_COST_RATIO / K**3`` times as many steps as the longest of
#: them (measured: with K = 8, 10 sequences of 10,000 steps take as long either way).
_COST_RATIO = 6000


def selected(lengths: np.ndarray, n_states: int) -> np.ndarray:
    """Which sequences the blocked recursion takes: bool, shape (n_seq,).

    The sequences of at least :data:`BLOCK_MIN` steps, if together they are few
    enough for the blocked recursion to be faster (see :data:`_COST_RATIO`); else none.
    """
    long = lengths >= BLOCK_MIN
    if long.any() and int(lengths[long].sum()) * n_states**3 > _COST_RATIO * int(lengths.max()):
        long[:] = False
    return long

#: Chunk length ``L = _CHUNK_FACTOR * sqrt(T)`` for the longest sequence ``T``
#: (measured: K = 8, T = 1e5; the cost is flat within a factor 2 of the optimum).
_CHUNK_FACTOR = 1.0

#: Largest L1 distance between a rerun chunk's last forward vector (and, weighted by
#: it, its first backward vector) and the boundary computed from the operators. Rounding
#: gives ~1e-14; the identity check's tolerance is 1e-9.
_CONSISTENCY_TOL = 1e-11


#: Largest m * k * k of an (m, k) @ (k, k) product that OpenBLAS runs on one thread
#: (its threshold is 4 * 65536).
_BLAS_ONE_THREAD = 200_000


def chunk_length(t_max: int) -> int:
    """Chunk length for sequences of at most ``t_max`` steps."""
    return max(2, int(round(_CHUNK_FACTOR * math.sqrt(t_max))))


def _emissions(log_emission: np.ndarray) -> np.ndarray:
    """exp(log_emission - row max) with the cells below the smallest normal double set to 0.

    The per-step recursion's own emission factors, so that the operators describe the
    model it computes.
    """
    d = log_emission - log_emission.max(axis=1, keepdims=True)
    flushed = d < _LOG_TINY
    emis = np.exp(d, out=d)
    emis[flushed] = 0.0
    return emis


def _times(x: np.ndarray, transmat: np.ndarray) -> np.ndarray:
    """``x @ transmat`` in blocks of rows small enough for one BLAS thread.

    OpenBLAS splits a larger product over threads; for these thin products (K columns)
    that costs far more than it saves, 30x more on a busy machine (measured).
    """
    k = transmat.shape[0]
    step = max(1, _BLAS_ONE_THREAD // (k * k))
    if x.shape[0] <= step:
        return x @ transmat
    out = np.empty((x.shape[0], k))
    for lo in range(0, x.shape[0], step):
        np.matmul(x[lo : lo + step], transmat, out=out[lo : lo + step])
    return out


def _operators(
    startprob: np.ndarray, transmat: np.ndarray, emis: np.ndarray, clen: np.ndarray,
    first: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Row-normalised transfer operators of the chunks.

    Returns
    -------
    R : ndarray, shape (n_chunks, K, K)
        Each row sums to 1, or is zero (the row died).
    log_scale : ndarray, shape (n_chunks, K)
        ``P_b[i] = exp(log_scale[b, i]) * R[b, i]``; -inf for dead rows.
    log_lost : ndarray, shape (n_chunks, K)
        Log of a bound on the mass of ``P_b[i]`` dropped (-inf if none, in particular
        when a row dies cleanly: every path out of it meets an exact zero). A row whose
        scale falls below ``_MIN_SCALE`` otherwise is dropped, as its products may be
        subnormal; its mass then was below ``exp(log_scale) * _MIN_SCALE`` and, if the
        rows of ``transmat`` sum to at most 1, cannot grow in later steps.
    odd : ndarray of bool, shape (n_chunks,)
        Chunks where a row scale became NaN.
    """
    pk = _Packing(clen)
    e = pk.pack(emis)
    n_c, k = clen.shape[0], transmat.shape[0]
    first_r = first[pk.order]
    base = np.empty((n_c, k, k))  # row i of a chunk before its first step's emissions
    base[:] = transmat
    base[first_r] = startprob
    base = base.reshape(n_c * k, k)
    p = base * np.repeat(e[:n_c], k, axis=0)
    r_mat = np.empty_like(p)
    log_scale = np.zeros(n_c * k)
    log_lost = np.full(n_c * k, -np.inf)
    odd_rows = np.zeros(n_c * k, dtype=bool)
    ones = np.ones(k)
    lr = np.empty(n_c * k)
    off, n_act = pk.offsets.tolist(), pk.n_active.tolist()
    with np.errstate(all="ignore"):
        for t in range(pk.t_max):
            n = n_act[t]
            nk = n * k
            if t:
                p = _times(r_mat[:nk], transmat)
                p.reshape(n, k, k)[...] *= e[off[t] : off[t] + n, None, :]
            r = p @ ones
            if r.min() >= _MIN_SCALE:  # False for NaN
                np.divide(p, r[:, None], out=r_mat[:nk])
            else:
                odd_rows[:nk] |= np.isnan(r)
                low = ~(r >= _MIN_SCALE)
                new = np.flatnonzero(low & (log_scale[:nk] > -np.inf))
                if new.size:
                    before = r_mat[new] @ transmat if t else base[new]
                    step_e = np.repeat(e[off[t] : off[t] + n], k, axis=0)[new]
                    clean = (r[new] == 0) & ~((before > 0) & (step_e > 0)).any(axis=1)
                    cut = new[~clean]
                    log_lost[cut] = np.logaddexp(log_lost[cut], log_scale[cut] + _LOG_MIN_SCALE)
                    p[cut] = 0.0
                    r[cut] = 0.0
                np.divide(p, np.where(low, 1.0, r)[:, None], out=r_mat[:nk])
            np.log(r, out=lr[:nk])
            log_scale[:nk] += lr[:nk]
    odd = odd_rows.reshape(n_c, k).any(axis=1)
    return (pk.per_sequence(r_mat.reshape(n_c, k, k)), pk.per_sequence(log_scale.reshape(n_c, k)),
            pk.per_sequence(log_lost.reshape(n_c, k)), pk.per_sequence(odd))


def _boundaries(
    r_mat: np.ndarray, log_scale: np.ndarray, cstart: np.ndarray, n_chunks: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forward and backward vectors at the chunk ends (chunks in sequence order).

    Returns
    -------
    alpha_end : ndarray, shape (n_chunks, K)
        Normalised forward vector at each chunk's last step.
    log_c : ndarray, shape (n_chunks,)
        Log-likelihood of each chunk given the steps before it.
    beta_end : ndarray, shape (n_chunks, K)
        Scaled backward vector at each chunk's last step (ones at a sequence's end).
    """
    n_c, k = log_scale.shape
    by_count = np.argsort(-n_chunks, kind="stable")
    starts_sorted = cstart[by_count]
    counts_sorted = n_chunks[by_count]
    max_chunks = int(counts_sorted[0])
    # n_with[j]: how many sequences have more than j chunks (a prefix of starts_sorted)
    n_with = np.searchsorted(-counts_sorted, -np.arange(max_chunks), side="left").tolist()
    alpha_end = np.empty((n_c, k))
    log_c = np.empty(n_c)
    beta_end = np.ones((n_c, k))
    with np.errstate(all="ignore"):
        alpha_end[cstart] = r_mat[cstart, 0]  # first chunks: every row is the forward vector
        log_c[cstart] = log_scale[cstart, 0]
        for j in range(1, max_chunks):
            cs = starts_sorted[: n_with[j]] + j
            lw = np.log(alpha_end[cs - 1]) + log_scale[cs]
            top = lw.max(axis=1)
            w = np.exp(lw - top[:, None])
            v = np.matmul(w[:, None, :], r_mat[cs])[:, 0, :]
            sv = v.sum(axis=1)
            alpha_end[cs] = v / sv[:, None]
            log_c[cs] = top + np.log(sv)
        for j in range(max_chunks - 2, -1, -1):
            cs = starts_sorted[: n_with[j + 1]] + j
            nx = cs + 1
            beta_end[cs] = np.exp(log_scale[nx] - log_c[nx, None]) * np.matmul(
                r_mat[nx], beta_end[nx, :, None])[:, :, 0]
    return alpha_end, log_c, beta_end


def _log_lost_posterior(
    transmat: np.ndarray, log_lost: np.ndarray, alpha_end: np.ndarray, log_c: np.ndarray,
    beta_end: np.ndarray, clen: np.ndarray, follow: np.ndarray,
) -> np.ndarray:
    """Log of a bound on the posterior mass the dropped operator rows take away, per chunk.

    Row ``i`` of chunk ``b`` is weighted by ``alpha_hat_{s-1}(i)`` and its end by at most
    ``max(beta_hat_e)``, relative to the chunk's likelihood ``C_b``: the same bound holds
    for what the forward boundary and the backward boundary lose. Transition rows summing
    to more than 1 could let the dropped mass grow by ``max row sum ** L``.
    """
    log_w = np.full(log_lost.shape, -np.inf)
    log_w[follow] = np.log(alpha_end[follow - 1])
    log_w[~np.isin(np.arange(clen.shape[0]), follow), 0] = 0.0  # first chunks: one row
    growth = clen * math.log(max(1.0, float(transmat.sum(axis=1).max())))
    terms = log_w + log_lost
    top = terms.max(axis=1)
    finite = np.isfinite(top)
    lost = np.full(clen.shape[0], -np.inf)
    lost[finite] = top[finite] + np.log(np.exp(terms[finite] - top[finite, None]).sum(axis=1))
    return lost - log_c + growth + np.log(beta_end.max(axis=1))


def _run(
    startprob: np.ndarray, transmat: np.ndarray, log_emission: np.ndarray, lengths: np.ndarray,
    steps: Callable[..., tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One blocked pass over all the sequences (counts include the sequences not ok)."""
    chunk = chunk_length(int(lengths.max()))
    n_chunks = -(-lengths // chunk)
    cstart = _starts(n_chunks)
    clen = np.full(int(n_chunks.sum()), chunk, dtype=np.int64)
    last = cstart + n_chunks - 1
    clen[last] = lengths - (n_chunks - 1) * chunk
    first = np.zeros(clen.shape[0], dtype=bool)
    first[cstart] = True
    seq_of_chunk = np.repeat(np.arange(lengths.shape[0]), n_chunks)

    # A row of log_emission that is all -inf makes NaN, as in the per-step recursion,
    # whose checks then fail the sequence.
    with np.errstate(all="ignore"):
        r_mat, log_scale, log_lost, odd = _operators(startprob, transmat,
                                                     _emissions(log_emission), clen, first)
        alpha_end, log_c, beta_end = _boundaries(r_mat, log_scale, cstart, n_chunks)
        follow = np.flatnonzero(~first)
        if np.isfinite(log_lost).any():
            odd |= ~(_log_lost_posterior(transmat, log_lost, alpha_end, log_c, beta_end, clen,
                                         follow) <= math.log(_CONSISTENCY_TOL))
        init = np.empty_like(alpha_end)
        init[first] = startprob
        init[follow] = alpha_end[follow - 1] @ transmat
        gamma, trans_counts, chunk_ll, failed, first_w, last_alpha = steps(
            startprob, transmat, log_emission, clen, init, beta_end)
        fwd_err = np.abs(last_alpha - alpha_end).sum(axis=1)
        bwd_err = np.zeros(clen.shape[0])
        prev = follow - 1
        bwd_err[prev] = (last_alpha[prev] * np.abs(first_w[follow] @ transmat.T - beta_end[prev])
                         ).sum(axis=1)
        trans_counts = trans_counts + transmat * (last_alpha[prev].T @ first_w[follow])
    bad = (odd | failed | ~np.isfinite(log_c) | ~(fwd_err <= _CONSISTENCY_TOL)
           | ~(bwd_err <= _CONSISTENCY_TOL))
    ok = np.bincount(seq_of_chunk, weights=bad, minlength=lengths.shape[0]) == 0
    return gamma, trans_counts, np.add.reduceat(chunk_ll, cstart), ok


def blocked_fb(
    startprob: np.ndarray, transmat: np.ndarray, log_emission: np.ndarray, lengths: np.ndarray,
    steps: Callable[..., tuple[np.ndarray, ...]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Blocked scaled forward-backward of long sequences.

    Parameters
    ----------
    startprob : ndarray, shape (K,)
    transmat : ndarray, shape (K, K)
    log_emission : ndarray, shape (T, K)
        The concatenated sequences; not modified.
    lengths : ndarray of int64, shape (n_seq,)
    steps : callable
        The per-step recursion ``recursions._scaled_fb_steps`` (passed in: that module
        imports this one), run on the chunks.

    Returns
    -------
    gamma : ndarray, shape (T, K)
        Posterior marginals (meaningless for the sequences not ok).
    trans_counts : ndarray, shape (K, K)
        Expected transition counts of the sequences that are ok.
    seq_ll : ndarray, shape (n_seq,)
        Log-likelihood per sequence (meaningless for the sequences not ok).
    ok : ndarray of bool, shape (n_seq,)
        False for the sequences handed back to the per-step recursion.
    """
    gamma, trans_counts, seq_ll, ok = _run(startprob, transmat, log_emission, lengths, steps)
    if ok.all():
        return gamma, trans_counts, seq_ll, ok
    # Rare: the counts hold the sequences not ok; redo the others without them.
    k = startprob.shape[0]
    if ok.any():
        rows = np.repeat(ok, lengths)
        g, tc, ll, ok_again = _run(startprob, transmat, log_emission[rows], lengths[ok], steps)
        if ok_again.all():
            gamma[rows], seq_ll[ok] = g, ll
            return gamma, tc, seq_ll, ok
    return gamma, np.zeros((k, k)), seq_ll, np.zeros(lengths.shape[0], dtype=bool)
