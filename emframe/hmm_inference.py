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
running form a prefix, and one Python loop over time serves all of them. The optional
numba kernels (``emframe._hmm_numba``, installed with ``pip install "emframe[fast]"``)
compute the same quantities with compiled loops and are used by ``backend="auto"``
whenever numba can be imported. :func:`forward` and :func:`backward` take no backend
argument and use numba whenever it is importable: their numpy reference calls
``scipy.special.logsumexp`` at every step (~0.1-0.3 ms per step), which is slow for long
sequences.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import logsumexp

__all__ = [
    "Posterior",
    "backward",
    "forward",
    "forward_backward",
    "has_numba",
    "validate_lengths",
    "viterbi",
]

_BACKENDS = ("auto", "numpy", "numba")

# Largest accepted |sum_k alpha_hat * beta_hat - 1| (and posterior mass of flushed cells)
# before a sequence is recomputed in log space. Such a deviation is the relative
# likelihood mass lost to underflow, so it bounds the log-likelihood error. Rounding alone
# drifts by ~1e-12 at T = 1e6 (measured), well below it.
_IDENTITY_TOL = 1e-9

# Smallest accepted per-step scale factor (predictive probability of a step relative to
# its best emission). Above it, any subnormal term of the scale is below 1e-17 of it.
_MIN_SCALE = 1e-290

# Shifted emission likelihoods exp(log_emission - max) below the smallest normal double
# are flushed to exact zeros: subnormals have lost precision, and since the forward and
# backward passes would share the error the identity check could not see it. Instead,
# the posterior mass of every flushed (step, state) cell is estimated in log space after
# the backward pass and the sequence is recomputed in log space if it matters.
_LOG_TINY = math.log(np.finfo(np.float64).tiny)  # about -708.4

# Pairs of consecutive steps processed at once by the log-space expected-count routine;
# bounds its (chunk, K, K) temporary.
_PAIR_CHUNK = 4096


# --------------------------------------------------------------------------------------
# Validation and helpers
# --------------------------------------------------------------------------------------


def validate_lengths(lengths: ArrayLike | None, n_samples: int) -> np.ndarray:
    """Check sequence lengths against the number of samples.

    Parameters
    ----------
    lengths : array-like of int, shape (n_seq,), or None
        Lengths of the concatenated sequences. ``None`` means one sequence holding
        all ``n_samples`` samples.
    n_samples : int
        Number of rows of the concatenated data.

    Returns
    -------
    lengths : ndarray of int64, shape (n_seq,)
        A new array (the input is never returned or modified).

    Raises
    ------
    ValueError
        If ``lengths`` is not 1-D, is empty, holds a non-integer or a value <= 0, or
        does not sum to ``n_samples``.
    """
    n_samples = int(n_samples)
    if lengths is None:
        if n_samples <= 0:
            raise ValueError(f"need at least one sample, got n_samples={n_samples}")
        return np.array([n_samples], dtype=np.int64)

    arr = np.asarray(lengths)
    if arr.ndim != 1:
        raise ValueError(f"lengths must be 1-D, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("lengths must contain at least one sequence length")
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"lengths must be integers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        # Accept integral floats such as 3.0, reject 2.5, nan and inf.
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            bad = arr[~np.isfinite(arr) | (arr != np.round(arr))][0]
            raise ValueError(f"lengths must be integers, got {bad!r}")
    out = arr.astype(np.int64)
    if np.any(out <= 0):
        raise ValueError(f"every length must be positive, got {int(out[out <= 0][0])}")
    total = int(out.sum())
    if total != n_samples:
        raise ValueError(
            f"sum(lengths) = {total} does not match the number of samples n_samples = {n_samples}"
        )
    return out


@functools.cache
def has_numba() -> bool:
    """Whether the optional numba kernels can be used (numba importable).

    Returns
    -------
    bool
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def _use_numba(backend: str) -> bool:
    """Resolve a backend name to "use the numba kernels or not"."""
    if backend not in _BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {_BACKENDS}")
    if backend == "numba":
        if not has_numba():
            raise ValueError(
                'backend="numba" needs numba, which is not installed; install it with '
                'pip install "emframe[fast]" or use backend="numpy"'
            )
        return True
    return backend == "auto" and has_numba()


def _numba_kernels() -> Any:
    # Imported lazily: importing numba costs ~0.5 s and it is optional.
    from . import _hmm_numba

    return _hmm_numba


def _check_inputs(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Validate shapes and values; return float64 C-contiguous arrays and int64 lengths.

    The returned arrays may be the caller's own arrays: nothing here writes into them.
    """
    lpi = np.ascontiguousarray(log_startprob, dtype=np.float64)
    la = np.ascontiguousarray(log_transmat, dtype=np.float64)
    le = np.ascontiguousarray(log_emission, dtype=np.float64)
    if lpi.ndim != 1 or lpi.size == 0:
        raise ValueError(f"log_startprob must have shape (K,) with K >= 1, got {lpi.shape}")
    k = lpi.shape[0]
    if la.shape != (k, k):
        raise ValueError(f"log_transmat must have shape ({k}, {k}), got {la.shape}")
    if le.ndim != 2 or le.shape[1] != k:
        raise ValueError(f"log_emission must have shape (T, {k}), got {le.shape}")
    for name, arr in (("log_startprob", lpi), ("log_transmat", la), ("log_emission", le)):
        # NaN < inf is False, so this one pass rejects both NaN and +inf.
        if not np.all(arr < np.inf):
            raise ValueError(f"{name} must not contain NaN or +inf")
    lengths = validate_lengths(lengths, le.shape[0])
    return lpi, la, le, lengths


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Index of the first row of every sequence, shape (n_seq,)."""
    starts = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return starts


class _Packing:
    """Time-major layout of several sequences for batched recursions.

    Sequences are ranked longest first, so at step ``t`` the ``n_active[t]`` sequences
    still running are ranks ``0 .. n_active[t] - 1`` and occupy the contiguous packed rows
    ``offsets[t] .. offsets[t] + n_active[t] - 1``. Step ``t`` of rank ``r`` is packed row
    ``offsets[t] + r`` and its predecessor is ``offsets[t - 1] + r``. Unlike padding, this
    wastes no memory on sequences of very different lengths.
    """

    def __init__(self, lengths: np.ndarray) -> None:
        n_seq = lengths.shape[0]
        n_rows = int(lengths.sum())
        self.order = np.argsort(-lengths, kind="stable")  # rank -> sequence
        rank = np.empty(n_seq, dtype=np.int64)
        rank[self.order] = np.arange(n_seq)
        self.t_max = int(lengths.max())
        n_ended = np.cumsum(np.bincount(lengths, minlength=self.t_max + 1))
        self.n_active = (n_seq - n_ended[: self.t_max]).astype(np.int64)  # (t_max,)
        self.offsets = np.zeros(self.t_max + 1, dtype=np.int64)
        np.cumsum(self.n_active, out=self.offsets[1:])
        seq_of_row = np.repeat(np.arange(n_seq), lengths)
        t_of_row = np.arange(n_rows) - np.repeat(_starts(lengths), lengths)
        # perm[i]: packed row of concatenated row i.
        self.perm = self.offsets[t_of_row] + rank[seq_of_row]
        self.rank_of_row = np.empty(n_rows, dtype=np.int64)  # packed row -> rank
        self.rank_of_row[self.perm] = rank[seq_of_row]

    def pack(self, x: np.ndarray) -> np.ndarray:
        out = np.empty_like(x)
        out[self.perm] = x
        return out

    def unpack(self, x: np.ndarray) -> np.ndarray:
        return x[self.perm]

    def rows(self, t: int, n: int | None = None) -> slice:
        """Packed rows of step ``t`` for the first ``n`` ranks (default: all active)."""
        lo = int(self.offsets[t])
        return slice(lo, lo + int(self.n_active[t] if n is None else n))

    def pair_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """Packed rows (prev, next) of every pair of consecutive steps within a sequence."""
        nxt = np.arange(int(self.offsets[1]), int(self.offsets[-1]))
        prev = nxt - np.repeat(self.n_active[:-1], self.n_active[1:])
        return prev, nxt

    def per_sequence(self, rank_values: np.ndarray) -> np.ndarray:
        """Reorder an array indexed by rank into sequence order."""
        out = np.empty_like(rank_values)
        out[self.order] = rank_values
        return out


def _has_subnormal_probs(log_p: np.ndarray) -> bool:
    """Whether some probability is positive but below the smallest normal double."""
    return bool(np.any((log_p < _LOG_TINY) & (log_p > -np.inf)))


def _total(seq_values: np.ndarray) -> float:
    # fsum: exact summation of per-sequence log-likelihoods; -inf propagates.
    return math.fsum(seq_values.tolist()) if seq_values.size else 0.0


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
        a = startprob * emis[: n_act[0]]
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
        beta[off[pk.t_max - 1] :] = 1.0
        trans_t = np.ascontiguousarray(transmat.T)
        for t in range(pk.t_max - 2, -1, -1):
            n = n_act[t + 1]
            nlo = off[t + 1]
            w = emis[nlo : nlo + n] * beta[nlo : nlo + n]
            np.matmul(w, trans_t, out=beta[off[t] : off[t] + n])
            beta[off[t] + n : off[t] + n_act[t]] = 1.0  # sequences ending at t

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
                startprob[f_col],
            )
            lost = np.exp(np.log(pred) + f_d - np.log(scale[f_row]) + np.log(beta[f_row, f_col]))
            lost_rank = np.bincount(pk.rank_of_row[f_row], weights=lost, minlength=lengths.shape[0])
            bad_rank |= ~(lost_rank <= _IDENTITY_TOL)

        w_all = np.multiply(emis, beta, out=emis)

        # Failed sequences may hold NaN/inf: detect them, keep them out of the counts.
        s_check = w_all @ ones  # finite iff the row of w is
        s_check[: off[1]] = 0.0  # w of a sequence's first step is never used
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
    return pk.unpack(gamma), trans_counts, seq_ll, pk.per_sequence(bad_rank)


# --------------------------------------------------------------------------------------
# Log-space recursions (numpy reference)
# --------------------------------------------------------------------------------------


def _normalise_log_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract each row's log-sum-exp; rows that are all -inf stay all -inf."""
    norm = logsumexp(x, axis=1)
    finite = np.isfinite(norm)
    out = x - np.where(finite, norm, 0.0)[:, None]
    out[~finite] = -np.inf
    return out, norm


def _log_forward_numpy(
    log_startprob: np.ndarray,
    log_transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised log-space forward pass.

    Returns
    -------
    log_alpha_hat : ndarray, shape (T, K)
        log p(z_t | x_{s..t}), each row log-normalised.
    log_scale : ndarray, shape (T,)
        log p(x_t | x_{s..t-1}).
    cum_log_scale : ndarray, shape (T,)
        log p(x_{s..t}), the running sum of ``log_scale`` within each sequence.
    """
    pk = _Packing(lengths)
    le = pk.pack(log_emission)
    lah = np.empty_like(le)
    lsc = np.empty(le.shape[0])
    cum_rows = np.empty(le.shape[0])
    with np.errstate(divide="ignore", invalid="ignore"):
        rows = pk.rows(0)
        lah[rows], lsc[rows] = _normalise_log_rows(log_startprob + le[rows])
        cum = lsc[rows].copy()  # by rank
        cum_rows[rows] = cum
        for t in range(1, pk.t_max):
            n = int(pk.n_active[t])
            rows = pk.rows(t)
            prev = lah[pk.rows(t - 1, n)]
            pred = logsumexp(prev[:, :, None] + log_transmat, axis=1)
            lah[rows], lsc[rows] = _normalise_log_rows(pred + le[rows])
            cum = cum[:n] + lsc[rows]
            cum_rows[rows] = cum
    return pk.unpack(lah), pk.unpack(lsc), pk.unpack(cum_rows)


def _log_backward_numpy(
    log_transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Self-normalised log-space backward pass.

    Returns
    -------
    log_beta_tilde : ndarray, shape (T, K)
        log p(x_{t+1..e} | z_t) up to a per-step constant; each row log-normalised
        except the last step of a sequence, which is all zeros.
    cum_log_norm : ndarray, shape (T,)
        The constant: ``log_beta = log_beta_tilde + cum_log_norm[:, None]``.
    """
    pk = _Packing(lengths)
    le = pk.pack(log_emission)
    lbt = np.empty_like(le)
    cum_rows = np.empty(le.shape[0])
    cum = np.zeros(0)  # by rank, for the sequences active at step t + 1
    with np.errstate(divide="ignore", invalid="ignore"):
        for t in range(pk.t_max - 1, -1, -1):
            lo = int(pk.offsets[t])
            n_next = int(pk.n_active[t + 1]) if t + 1 < pk.t_max else 0
            n_now = int(pk.n_active[t])
            if n_next:
                nxt = pk.rows(t + 1)
                v = le[nxt] + lbt[nxt]  # (n_next, K) over the next state j
                raw = logsumexp(log_transmat + v[:, None, :], axis=2)
                lbt[lo : lo + n_next], norm = _normalise_log_rows(raw)
                cum = cum + norm
            lbt[lo + n_next : lo + n_now] = 0.0  # sequences ending at t
            cum = np.concatenate([cum, np.zeros(n_now - n_next)])
            cum_rows[lo : lo + n_now] = cum
    return pk.unpack(lbt), pk.unpack(cum_rows)


def _log_stats_numpy(
    log_transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: np.ndarray,
    log_alpha_hat: np.ndarray,
    log_scale: np.ndarray,
    log_beta_tilde: np.ndarray,
    possible: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Posterior marginals and expected transition counts from log-space passes.

    Only sequences with ``possible`` True contribute to the counts; the posterior rows
    of the others are NaN.
    """
    starts = _starts(lengths)
    with np.errstate(divide="ignore", invalid="ignore"):
        lg, lnorm = _normalise_log_rows(log_alpha_hat + log_beta_tilde)
        gamma = np.exp(lg)
        gamma[~np.repeat(possible, lengths)] = np.nan

        # xi_t(i, j) = alpha_hat_t(i) A(i, j) e_{t+1}(j) beta_tilde_{t+1}(j)
        #              / (c_{t+1} * sum_k alpha_hat_{t+1}(k) beta_tilde_{t+1}(k)).
        right = log_emission + log_beta_tilde - (log_scale + lnorm)[:, None]
        is_pair = np.ones(log_emission.shape[0], dtype=bool)  # row i+1 continues row i
        is_pair[starts] = False
        is_pair &= np.repeat(possible, lengths)
        nxt = np.flatnonzero(is_pair)
        k = log_transmat.shape[0]
        trans_counts = np.zeros((k, k))
        for lo in range(0, nxt.shape[0], _PAIR_CHUNK):
            idx = nxt[lo : lo + _PAIR_CHUNK]
            log_xi = log_alpha_hat[idx - 1, :, None] + log_transmat + right[idx, None, :]
            trans_counts += np.exp(log_xi).sum(axis=0)
    return gamma, trans_counts


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
