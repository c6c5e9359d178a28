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

A sequence of at least :data:`_SPLIT_MIN` steps is split in halves whose forward and
backward recursions run on two threads when the process may use two cores (see
``_fused_split_numba``); if a check of the split recursions fails, the one-pass kernel
recomputes it. Shorter sequences holding at least :data:`_GROUP_MIN` steps together are
cut in two groups whose one-pass kernels run on the two threads. ``NUMBA_NUM_THREADS=1``
keeps every E-step on the calling thread; the results are the same, bit for bit, wherever
the parts run.
"""

from __future__ import annotations

import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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


def _scratch(n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The kernels' (n, K), (n, K), (n,) and (n,) scratch, kept per thread from one call
    to the next when it is at most :data:`_KEEP_SCRATCH` numbers (the E-steps of a fit
    have the same sizes; threads never share it).

    Fresh memory costs a page fault per 4 KiB when first touched: at T = 100,000 and
    K = 8 that was a third of the E-step's time.
    """
    cached = getattr(_LOCAL, "scratch", None)
    if cached is not None and cached[0].shape[0] >= n and cached[0].shape[1] == k:
        return cached
    fresh = (np.empty((n, k)), np.empty((n, k)), np.empty(n), np.empty(n))
    _LOCAL.scratch = fresh if n * (2 * k + 2) <= _KEEP_SCRATCH else None
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
    model = (startprob, transmat, np.ascontiguousarray(np.asarray(means, dtype=np.float64).T),
             np.ascontiguousarray(pc.T), const, X)
    n_seq = lengths.shape[0]
    sums = [np.zeros(k), np.zeros((k, k)), np.zeros(k), np.zeros((d, k)), np.zeros((d, k))]
    seq_ll = np.zeros(n_seq)
    failed = np.zeros(n_seq, dtype=bool)
    split = lengths >= _SPLIT_MIN
    groups = _two_groups(np.flatnonzero(~split), lengths)
    if len(groups) == 2:  # the one-pass kernel on each, on two threads
        results = _both(*((_one_pass, model, starts[g], lengths[g]) for g in groups))
    else:
        results = [_one_pass(model, starts[g], lengths[g]) for g in groups]
    for g, res in zip(groups, results, strict=True):
        seq_ll[g], failed[g] = res[5], res[6]
        sums = [a + b for a, b in zip(sums, res[:5], strict=True)]
    for s in np.flatnonzero(split):
        res = _split_sequence(model, int(starts[s]), int(lengths[s]))
        if res is None:  # a check failed: the one-pass kernel decides as the reference does
            res = _one_pass(model, starts[s : s + 1], lengths[s : s + 1])
        seq_ll[s], failed[s] = res[5][0], res[6][0]
        if not failed[s]:
            sums = [a + b for a, b in zip(sums, res[:5], strict=True)]
    start, trans, nk, sx, sxx = sums
    return FusedGaussianStats(start, trans, nk, sx.T.copy(), sxx.T.copy(), seq_ll, failed)


def _two_groups(seqs: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    """``seqs`` cut in two runs of about equal total length when they hold at least
    :data:`_GROUP_MIN` steps (whatever the number of cores, so that the sums, added group
    by group, do not depend on it); else ``[seqs]``, or nothing if empty."""
    if seqs.size < 2:
        return [seqs] if seqs.size else []
    cum = np.cumsum(lengths[seqs])
    if cum[-1] < _GROUP_MIN:
        return [seqs]
    cut = int(np.clip(np.searchsorted(cum, cum[-1] / 2), 1, seqs.size - 1))
    return [seqs[:cut], seqs[cut:]]


def _one_pass(model: tuple, starts: np.ndarray, lengths: np.ndarray) -> tuple:
    """The one-pass kernel on the given sequences (see ``_fused_numba``)."""
    from emframe.inference.hmm import _fused_numba

    k = model[0].shape[0]
    emis, alpha, scale, _ = _scratch(int(lengths.max()), k)
    return call_interruptible(
        _fused_numba.diag_gaussian_e_step, *model, starts, lengths,
        _IDENTITY_TOL, _MIN_SCALE, _LOG_TINY, emis, alpha, scale,
    )


#: Sequences at least this long are split in halves, run on two threads when two cores
#: are available (see ``_fused_split_numba``); below it the two hand-overs to the other
#: thread (tens of microseconds) are not worth it.
_SPLIT_MIN = 8192

#: Shorter sequences holding together at least this many steps are cut in two groups,
#: whose one-pass kernels run on two threads when two cores are available.
_GROUP_MIN = 8192

_POOL: list = [None, None]  # (pid, executor): a forked child makes its own


#: Environment variable for the number of threads: ``EMFRAME_HMM_THREADS=1`` keeps every
#: E-step on the calling thread.
THREADS_ENV = "EMFRAME_HMM_THREADS"


def _two_cores() -> bool:
    """Whether this process runs the worker thread on a second core.

    On when the process may use two cores, as BLAS uses the cores it finds: the E-step's
    wall clock drops by about a fifth on one long sequence and by half on many short ones,
    for 12-35% more CPU time in all. Where CPU time matters more (many fits in parallel
    processes), ``EMFRAME_HMM_THREADS=1`` (or numba's ``NUMBA_NUM_THREADS=1``) keeps one
    thread; the results are the same, bit for bit.
    """
    import numba

    try:
        wanted = int(os.environ.get(THREADS_ENV, "2"))
    except ValueError:
        wanted = 2
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count() or 1
    return min(wanted, cores, numba.config.NUMBA_NUM_THREADS) >= 2


def _executor() -> ThreadPoolExecutor:
    """The one worker thread (created on first use)."""
    if _POOL[0] != os.getpid():
        _POOL[:] = [os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="emframe-hmm")]
    return _POOL[1]


#: Split sequences left to run on the calling thread alone (see :func:`_both`).
_SOLO = [0]
#: After a phase in which the worker thread started late or lagged so much (no free core)
#: that the calling thread waited longer than its own part took, this many phases run
#: both halves on the calling thread, one after the other.
_SOLO_AFTER_LAG = 16


def _both(here: tuple, there: tuple) -> tuple:
    """``(here[0](*here[1:]), there[0](*there[1:]))``, the second on the worker thread.

    On a busy machine the worker may start late or be preempted, and the calling thread
    would wait for it: if the worker has not started by the time the first call returns,
    the second call runs here instead, and after a phase in which the worker lagged the
    next :data:`_SOLO_AFTER_LAG` phases run both calls here. The calls compute the same
    numbers wherever they run: this changes the time, never the results.
    """
    if not _two_cores():
        return call_interruptible(*here), call_interruptible(*there)
    if _SOLO[0] > 0:
        _SOLO[0] -= 1
        return call_interruptible(*here), call_interruptible(*there)
    pending = _executor().submit(*there)
    try:
        t0 = time.perf_counter()
        mine = call_interruptible(*here)
        t1 = time.perf_counter()
        if pending.cancel():  # not started: no core was free
            theirs = call_interruptible(*there)
            lagged = True
        else:
            theirs = pending.result()
            # running both here would have cost about twice this thread's phase
            lagged = time.perf_counter() - t1 > t1 - t0
    finally:
        if not pending.done():
            # Interrupted while the worker writes into the scratch: the next call must
            # not reuse it.
            _LOCAL.scratch = None
    if lagged:
        _SOLO[0] = _SOLO_AFTER_LAG
    return mine, theirs


def _split_sequence(model: tuple, first: int, n: int) -> tuple | None:
    """E-step of one sequence, its forward and backward halves on two threads.

    Returns the one-pass kernel's outputs for this one sequence, or None if a check of
    the split recursions failed (or a step's emission ratio was flushed).
    """
    from emframe.inference.hmm import _fused_split_numba as fs

    startprob, transmat, means_t, prec_t, const, X = model
    k, d = means_t.shape[1], X.shape[1]
    trans_t = np.ascontiguousarray(transmat.T)
    emis, msg, scale, nbs = _scratch(n, k)
    h = n // 2
    fwd = [np.zeros((k, k)), np.zeros(k), np.zeros((d, k)), np.zeros((d, k))]
    bwd = [np.zeros((k, k)), np.zeros(k), np.zeros((d, k)), np.zeros((d, k))]
    start = np.zeros(k)
    (status_f, shift_f, log_f), (status_b, shift_b) = _both(
        (fs.forward_first, startprob, trans_t, means_t, prec_t, const, X, first, h, _LOG_TINY,
         _MIN_SCALE, emis, msg, scale),
        (fs.backward_second, transmat, means_t, prec_t, const, X, first, n, h, _LOG_TINY, emis,
         msg, nbs),
    )
    if status_f != fs.OK or status_b != fs.OK:
        return None
    (ok_f, log_s, cd_h, d_last, qmin, qmax, p_h), (ok_b, z_h, rmin, rmax) = _both(
        (fs.forward_second, trans_t, means_t, X, first, n, h, _MIN_SCALE, emis, msg, msg, nbs,
         scale, *fwd),
        (fs.backward_first, transmat, means_t, X, first, h, _MIN_SCALE, emis, msg,
         msg[h].copy(), scale, *bwd, start),
    )
    if not (ok_f and ok_b):
        return None
    # The reference's identity sum_k alpha_hat_t beta_hat_t = 1, at its extremes over t.
    with np.errstate(all="ignore"):
        top = d_last * p_h
        first_half = top * (z_h / cd_h)
        dev = max(abs(top / qmin - 1.0), abs(top / qmax - 1.0), abs(first_half * rmin - 1.0),
                  abs(first_half * rmax - 1.0))
    if not dev <= _IDENTITY_TOL:  # NaN fails too
        return None
    xi = fwd[0] + bwd[0]
    return (start, transmat * xi, fwd[1] + bwd[1], fwd[2] + bwd[2], fwd[3] + bwd[3],
            np.array([shift_f + shift_b + log_f + log_s]), np.zeros(1, dtype=bool))
