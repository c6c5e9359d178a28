"""Exact inference for hidden Markov models, independent of any emission model.

Every routine takes the model as three arrays of log-probabilities:

* ``log_startprob``, shape (K,): log p(z_0 = k);
* ``log_transmat``, shape (K, K): log p(z_t = j | z_{t-1} = i) at ``[i, j]``;
* ``log_emission``, shape (T, K): log p(x_t | z_t = k) for every step of every sequence.

Several sequences are passed hmmlearn-style: the rows of ``log_emission`` are the
concatenation of the sequences and ``lengths`` gives their lengths.

Zeros (``-inf`` in log space) in the start or transition probabilities are allowed
and stay exact zeros in the expected counts.

Algorithms
----------
:func:`forward_backward` runs the scaled forward-backward recursion in probability
space: each step's emission likelihoods are divided by their maximum over states and
the forward variables are renormalised at every step, so nothing underflows however
small the likelihoods are, and the log-likelihood is the sum of the logs of the scale
factors. A scaled recursion can still lose information in extreme cases: a state whose
probability underflows to zero but which later evidence favours enormously (this needs
zeros in the transition matrix, or emission contrasts beyond ~700 nats). Such losses are
detected, and the affected sequences recomputed by an exact log-space recursion:

* the scaled variables satisfy ``sum_k alpha_hat[t, k] * beta_hat[t, k] == 1`` at every
  step; forward mass lost to underflow breaks this identity by the posterior weight it
  would have had (or makes it non-finite);
* emission likelihood ratios too small for a normal double are flushed to zero and the
  posterior mass of those cells is estimated in log space;
* a step whose scale factor falls below 1e-290, and a model with positive start or
  transition probabilities below the smallest normal double, go to log space directly.

Losses small enough to pass these checks change the likelihood by a relative 1e-9 at
most. In ordinary models (ergodic transitions, moderate contrasts) the log-space path
is never taken.

:func:`forward`, :func:`backward` and :func:`viterbi` work in log space. A sequence with
zero probability gets log-likelihood ``-inf``; see :class:`Posterior`.

The numpy implementation is the reference. It is vectorised across sequences: they
are stored time-major, longest first, so that at every step the sequences still
running form a prefix, and one Python loop over time serves all of them. A few long
sequences would leave that loop one Python iteration per time step; they go through the
blocked recursion of :mod:`emframe.inference.hmm.blocked` instead: cut into chunks of
about sqrt(T) steps, the chunks' transfer operators (K x K) give the exact forward and
backward vectors at the chunk boundaries, and the same per-step recursion then runs on
all the chunks at once, from those vectors, with the same checks. Its results are the
per-step recursion's up to rounding, and anything unusual hands the sequence back to
the per-step recursion. The optional
numba kernels (``emframe.inference.hmm._numba``, installed with ``pip install "emframe[fast]"``)
compute the same quantities with compiled loops and are used by ``backend="auto"``
whenever numba can be imported. :func:`forward` and :func:`backward` take no backend
argument and use numba whenever it is importable: their numpy reference calls
``scipy.special.logsumexp`` at every step (~0.1-0.3 ms per step), which is slow for long
sequences.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from emframe.inference.hmm import blocked
from emframe.inference.hmm.common import (
    _IDENTITY_TOL,
    _LOG_TINY,
    _MIN_SCALE,
    _check_inputs,
    _has_subnormal_probs,
    _numba_kernels,
    _Packing,
    _starts,
    _total,
    _use_numba,
    has_numba,
)
from emframe.inference.hmm.logspace import (
    _log_backward_numpy,
    _log_forward_numpy,
    _log_stats_numpy,
)

__all__ = ["Posterior", "backward", "forward", "forward_backward"]


# --------------------------------------------------------------------------------------
# Scaled forward-backward (numpy reference)
# --------------------------------------------------------------------------------------


def _scaled_fb_numpy(
    startprob: np.ndarray,
    transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward-backward for all sequences at once.

    Long sequences (:func:`blocked.selected`) go through the blocked recursion
    (:func:`blocked.blocked_fb`); the others, and any long sequence the blocked
    recursion hands back, through the per-step recursion :func:`_scaled_fb_steps`.

    Returns
    -------
    gamma : ndarray, shape (T, K)
        Posterior marginals (rows of failed sequences are meaningless).
    trans_counts : ndarray, shape (K, K)
        Expected transition counts of the sequences that did not fail.
    seq_ll : ndarray, shape (n_seq,)
        Log-likelihood per sequence (meaningless for failed sequences).
    failed : ndarray of bool, shape (n_seq,)
        Sequences whose scaled recursion lost precision; recompute them in log space.
    """
    long = blocked.selected(lengths, startprob.shape[0])
    if not long.any():
        return _scaled_fb_steps(startprob, transmat, log_emission, lengths)[:4]
    n_seq = lengths.shape[0]
    gamma = np.empty(log_emission.shape)
    seq_ll = np.empty(n_seq)
    failed = np.zeros(n_seq, dtype=bool)
    rows = np.repeat(long, lengths)
    sub = log_emission if long.all() else log_emission[rows]
    g, trans_counts, ll, ok = blocked.blocked_fb(startprob, transmat, sub, lengths[long],
                                                 _scaled_fb_steps)
    gamma[rows], seq_ll[long] = g, ll
    steps = ~long
    steps[long] = ~ok  # handed back: the per-step recursion decides
    if steps.any():
        rows = np.repeat(steps, lengths)
        g, tc, ll, failed[steps] = _scaled_fb_steps(
            startprob, transmat, log_emission[rows], lengths[steps])[:4]
        gamma[rows], seq_ll[steps] = g, ll
        trans_counts = trans_counts + tc
    return gamma, trans_counts, seq_ll, failed


def _scaled_fb_steps(
    startprob: np.ndarray,
    transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: np.ndarray,
    init: np.ndarray | None = None,
    beta_last: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scaled forward-backward with one Python step per time step (the reference).

    Parameters
    ----------
    init : ndarray, shape (n_seq, K), optional
        Predictive probabilities of each sequence's first step, in place of
        ``startprob`` (the blocked recursion runs its chunks as sequences that start
        from the forward variables before them).
    beta_last : ndarray, shape (n_seq, K), optional
        Scaled backward variables of each sequence's last step, in place of ones.

    Returns
    -------
    gamma, trans_counts, seq_ll, failed
        As :func:`_scaled_fb_numpy`; ``seq_ll`` is the sum of the log scale factors
        (and emission shifts) of each sequence's steps.
    first_w : ndarray, shape (n_seq, K)
        ``emis_t / c_t * beta_hat_t`` at each sequence's first step.
    last_alpha : ndarray, shape (n_seq, K)
        ``alpha_hat`` at each sequence's last step.
    """
    pk = _Packing(lengths)
    le = pk.pack(log_emission)
    n_rows, k = le.shape
    ones = np.ones(k)  # row sums as matrix-vector products: faster than .sum(axis=1)
    off = pk.offsets.tolist()  # Python ints: cheaper slicing inside the loops
    n_act = pk.n_active.tolist() + [0]
    with np.errstate(all="ignore"):
        # Subtract each step's best emission log-likelihood so exp() cannot underflow
        # for every state at once; the shift is added back to the log-likelihood.
        shift = le.max(axis=1)
        d = np.subtract(le, shift[:, None], out=le)  # le is our own packed copy
        # Flushing costs a few passes over (T, K): skip it when nothing needs it (the
        # negated test is True for NaN too).
        flushed = None if d.min() >= _LOG_TINY else d < _LOG_TINY
        if flushed is None:
            f_row = f_col = np.zeros(0, dtype=np.int64)
        else:
            f_row, f_col = np.nonzero(flushed & (d > -np.inf))  # -inf is an exact zero
        f_d = d[f_row, f_col]
        emis = np.exp(d, out=d)  # (T, K), max 1 per row
        if flushed is not None:
            emis[flushed] = 0.0

        alpha = np.empty_like(emis)
        scale = np.empty(n_rows)
        init_r = startprob if init is None else init[pk.order]  # rank order
        a = init_r * emis[: n_act[0]]
        c = a @ ones
        scale[: n_act[0]] = c
        np.divide(a, c[:, None], out=alpha[: n_act[0]])
        for t in range(1, pk.t_max):
            lo, hi = off[t], off[t] + n_act[t]
            a = alpha[off[t - 1] : off[t - 1] + n_act[t]] @ transmat
            a *= emis[lo:hi]
            c = a @ ones
            scale[lo:hi] = c
            np.divide(a, c[:, None], out=alpha[lo:hi])

        # w[t] = emis[t] / c[t] * beta_hat[t]: beta_hat[t-1] = w[t] @ A.T, and the
        # expected transition counts are A * sum_t alpha_hat[t-1]^T w[t].
        emis /= scale[:, None]
        beta = np.empty_like(alpha)
        last_r = np.ones((lengths.shape[0], k)) if beta_last is None else beta_last[pk.order]
        beta[off[pk.t_max - 1] :] = last_r[: n_act[pk.t_max - 1]]
        trans_t = np.ascontiguousarray(transmat.T)
        for t in range(pk.t_max - 2, -1, -1):
            n = n_act[t + 1]
            nlo = off[t + 1]
            w = emis[nlo : nlo + n] * beta[nlo : nlo + n]
            np.matmul(w, trans_t, out=beta[off[t] : off[t] + n])
            beta[off[t] + n : off[t] + n_act[t]] = last_r[n : n_act[t]]  # sequences ending at t

        # Posterior mass of the flushed cells: p(z_t = j | x) ~= alpha_hat_t(j) beta_hat_t(j)
        # with alpha_hat_t(j) = pred_t(j) * exp(d_tj) / c_t, all in log space.
        bad_rank = np.zeros(lengths.shape[0], dtype=bool)
        prev, nxt = pk.pair_rows()
        if f_row.size:
            prev_of = np.zeros(n_rows, dtype=np.int64)  # rows of step 0 keep a dummy 0
            prev_of[nxt] = prev
            pred = np.where(
                f_row >= off[1],
                np.einsum("ni,ni->n", alpha[prev_of[f_row]], transmat[:, f_col].T),
                init_r[pk.rank_of_row[f_row], f_col] if init is not None else startprob[f_col],
            )
            lost = np.exp(np.log(pred) + f_d - np.log(scale[f_row]) + np.log(beta[f_row, f_col]))
            lost_rank = np.bincount(pk.rank_of_row[f_row], weights=lost, minlength=lengths.shape[0])
            bad_rank |= ~(lost_rank <= _IDENTITY_TOL)

        w_all = np.multiply(emis, beta, out=emis)

        # Failed sequences may hold NaN/inf: detect them, keep them out of the counts.
        s_check = w_all @ ones  # finite iff the row of w is
        if init is None:
            s_check[: off[1]] = 0.0  # w of a sequence's first step is then never used
        gamma = np.multiply(alpha, beta, out=beta)
        s = gamma @ ones
        bad_row = (
            ~(np.abs(s - 1.0) <= _IDENTITY_TOL) | ~np.isfinite(s_check) | ~(scale >= _MIN_SCALE)
        )
        bad_rank[pk.rank_of_row[bad_row]] = True

        if bad_rank.any():
            keep = ~bad_rank[pk.rank_of_row[nxt]]
            prev, nxt = prev[keep], nxt[keep]
        trans_counts = transmat * (alpha[prev].T @ w_all[nxt])

        gamma /= s[:, None]
        # reduceat sums pairwise: accurate for T = 1e6 steps of ~-1e4.
        seq_ll = np.add.reduceat(pk.unpack(np.log(scale) + shift), _starts(lengths))
        first_w = pk.per_sequence(w_all[: off[1]])
        last_row = pk.offsets[lengths[pk.order] - 1] + np.arange(lengths.shape[0])  # by rank
        last_alpha = pk.per_sequence(alpha[last_row])
    return (pk.unpack(gamma), trans_counts, seq_ll, pk.per_sequence(bad_rank), first_w,
            last_alpha)


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posterior:
    """Result of :func:`forward_backward`.

    Attributes
    ----------
    posteriors : ndarray, shape (T, K)
        State marginals p(z_t = k | x) of every step; each row sums to 1.
    start_counts : ndarray, shape (K,)
        Sum over sequences of the posterior at each sequence's first step.
    trans_counts : ndarray, shape (K, K)
        Expected number of transitions i -> j, summed over all sequences.
    log_likelihood : float
        Total log-likelihood, the sum of ``seq_log_likelihood``.
    seq_log_likelihood : ndarray, shape (n_seq,)
        Log-likelihood of each sequence.

    Notes
    -----
    A sequence with zero probability under the model has log-likelihood ``-inf``, NaN
    posterior rows (the posterior is undefined) and contributes nothing to the counts.
    """

    posteriors: np.ndarray
    start_counts: np.ndarray
    trans_counts: np.ndarray
    log_likelihood: float
    seq_log_likelihood: np.ndarray


def forward_backward(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None = None,
    *,
    backend: str = "auto",
) -> Posterior:
    """Posterior marginals, expected counts and log-likelihood of an HMM (E-step).

    Parameters
    ----------
    log_startprob : array-like, shape (K,)
        Log initial-state probabilities; ``-inf`` allowed.
    log_transmat : array-like, shape (K, K)
        Log transition probabilities, ``[i, j]`` for i -> j; ``-inf`` allowed.
    log_emission : array-like, shape (T, K)
        Emission log-likelihoods of the concatenated sequences; any finite value or
        ``-inf``.
    lengths : array-like of int, shape (n_seq,), optional
        Lengths of the concatenated sequences; default one sequence of length T.
    backend : {"auto", "numpy", "numba"}, default "auto"
        "auto" uses the numba kernels when numba is installed, else numpy.

    Returns
    -------
    Posterior

    Raises
    ------
    ValueError
        On inconsistent shapes, NaN or +inf inputs, invalid ``lengths``, an unknown
        backend, or ``backend="numba"`` without numba.

    Notes
    -----
    Scaled recursion in probability space with per-step normalisation; sequences where
    it loses precision are recomputed in log space (see the module docstring).
    Inputs are never modified.
    """
    use_numba = _use_numba(backend)
    lpi, lA, le, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    startprob, transmat = np.exp(lpi), np.exp(lA)
    starts = _starts(lengths)

    k = lpi.shape[0]
    if _has_subnormal_probs(lpi) or _has_subnormal_probs(lA):
        # exp() of these is imprecise and would be shared by both passes, where the
        # identity check cannot see it. Such models are pathological: go to log space.
        gamma = np.empty(le.shape)
        trans_counts = np.zeros((k, k))
        seq_ll = np.empty(lengths.shape[0])
        failed = np.ones(lengths.shape[0], dtype=bool)
    elif use_numba:
        nb = _numba_kernels()
        gamma, trans_counts, seq_ll, failed = nb.scaled_forward_backward(
            startprob, transmat, le, starts, lengths, _IDENTITY_TOL, _MIN_SCALE, _LOG_TINY
        )
    else:
        gamma, trans_counts, seq_ll, failed = _scaled_fb_numpy(startprob, transmat, le, lengths)

    if failed.any():
        # Rare: recompute the failed sequences in log space and splice them back in.
        bad = np.flatnonzero(failed)
        rows = np.concatenate([np.arange(starts[s], starts[s] + lengths[s]) for s in bad])
        sub_le = np.ascontiguousarray(le[rows])
        sub_len = lengths[bad]
        sub_g, sub_tc, sub_ll = _log_forward_backward(lpi, lA, sub_le, sub_len, use_numba)
        gamma[rows] = sub_g
        trans_counts = trans_counts + sub_tc
        seq_ll[bad] = sub_ll

    possible = seq_ll > -np.inf
    start_counts = gamma[starts[possible]].sum(axis=0)
    return Posterior(
        posteriors=gamma,
        start_counts=start_counts,
        trans_counts=trans_counts,
        log_likelihood=_total(seq_ll),
        seq_log_likelihood=seq_ll,
    )


def _log_forward_backward(
    lpi: np.ndarray, lA: np.ndarray, le: np.ndarray, lengths: np.ndarray, use_numba: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-space forward-backward: (gamma (T, K), trans_counts (K, K), seq_ll (n_seq,))."""
    starts = _starts(lengths)
    ends = starts + lengths - 1
    if use_numba:
        nb = _numba_kernels()
        lah, lsc, cum = nb.log_forward(lpi, lA, le, starts, lengths)
        lbt, _ = nb.log_backward(lA, le, starts, lengths)
        seq_ll = cum[ends]
        gamma, trans_counts = nb.log_stats(lA, le, starts, lengths, lah, lsc, lbt, seq_ll)
    else:
        lah, lsc, cum = _log_forward_numpy(lpi, lA, le, lengths)
        lbt, _ = _log_backward_numpy(lA, le, lengths)
        seq_ll = cum[ends]
        gamma, trans_counts = _log_stats_numpy(lA, le, lengths, lah, lsc, lbt, seq_ll > -np.inf)
    return gamma, trans_counts, seq_ll


def forward(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Log-space forward pass.

    Parameters
    ----------
    log_startprob : array-like, shape (K,)
    log_transmat : array-like, shape (K, K)
    log_emission : array-like, shape (T, K)
    lengths : array-like of int, shape (n_seq,), optional

    Returns
    -------
    log_alpha : ndarray, shape (T, K)
        ``log_alpha[t, k] = log p(x_s, ..., x_t, z_t = k)`` where ``s`` is the first
        step of the sequence holding ``t``.
    seq_log_likelihood : ndarray, shape (n_seq,)
        Log-likelihood of each sequence.

    Notes
    -----
    Exact log-sum-exp recursion, normalised at every step so magnitudes stay small.
    Uses the numba kernel when numba is installed (the numpy path is the reference and
    agrees to rounding).
    """
    lpi, lA, le, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    if has_numba():
        lah, _, cum = _numba_kernels().log_forward(lpi, lA, le, _starts(lengths), lengths)
    else:
        lah, _, cum = _log_forward_numpy(lpi, lA, le, lengths)
    seq_ll = cum[_starts(lengths) + lengths - 1]
    # -inf + -inf = -inf, and neither term is ever +inf, so no NaN.
    return lah + cum[:, None], seq_ll


def backward(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None = None,
) -> np.ndarray:
    """Log-space backward pass.

    Parameters
    ----------
    log_startprob : array-like, shape (K,)
        Only validated (the backward variables do not depend on it).
    log_transmat : array-like, shape (K, K)
    log_emission : array-like, shape (T, K)
    lengths : array-like of int, shape (n_seq,), optional

    Returns
    -------
    log_beta : ndarray, shape (T, K)
        ``log_beta[t, k] = log p(x_{t+1}, ..., x_e | z_t = k)`` where ``e`` is the last
        step of the sequence holding ``t``; zero at every sequence's last step.
    """
    _, lA, le, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    if has_numba():
        lbt, cum = _numba_kernels().log_backward(lA, le, _starts(lengths), lengths)
    else:
        lbt, cum = _log_backward_numpy(lA, le, lengths)
    return lbt + cum[:, None]


