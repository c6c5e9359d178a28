"""Shared pieces of HMM inference: sequence lengths, the numba backend, packing of sequences."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# re-exported for code written against this module (they used to live here)
from emframe.inference.compiled import (  # noqa: F401
    call_interruptible,
    caused_by_interrupt,
    has_numba,
)
from emframe.inference.compiled import use_numba as _use_numba

#: Whether a ``backend`` runs the numba kernels (the HMM layer's name for ``use_numba``).
uses_numba = _use_numba

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
        If ``lengths`` is not 1-D, is empty, holds a non-integer, a value <= 0 or a
        value larger than ``n_samples``, or does not sum to ``n_samples``.

    Notes
    -----
    Every length is compared with ``n_samples`` before any conversion and the sum is
    taken in Python integers, so lengths whose 64-bit sum would wrap around (and let
    compiled kernels index out of bounds) are refused.
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
    # Compare in the input's own dtype (no wrap-around yet): every length in 1..n_samples.
    if np.any(arr <= 0):
        raise ValueError(f"every length must be positive, got {arr[arr <= 0][0].item()!r}")
    if np.any(arr > n_samples):
        raise ValueError(
            f"a sequence length ({arr[arr > n_samples][0].item()!r}) is larger than the number of "
            f"samples n_samples = {n_samples}"
        )
    if arr.size > n_samples:
        raise ValueError(
            f"{arr.size} sequences cannot hold n_samples = {n_samples} samples: every "
            "sequence needs at least one"
        )
    out = arr.astype(np.int64)
    # Exact: at most n_samples values, each at most n_samples, summed in Python integers.
    total = sum(out.tolist())
    if total != n_samples:
        raise ValueError(
            f"sum(lengths) = {total} does not match the number of samples n_samples = {n_samples}"
        )
    return out


def check_kernel_bounds(starts: np.ndarray, lengths: np.ndarray, n_rows: int) -> None:
    """Check that ``starts``/``lengths`` tile rows ``0 .. n_rows - 1`` exactly.

    The compiled kernels index without bounds checks, so this is the last check before
    them. It is exact and vectorised: every value is bounded first, so no sum can wrap.

    Raises
    ------
    ValueError
        If the sequences do not cover the rows exactly, in order.
    """
    ok = (
        starts.ndim == 1
        and lengths.ndim == 1
        and starts.shape == lengths.shape
        and starts.size >= 1
        and starts.dtype == np.int64
        and lengths.dtype == np.int64
        and n_rows >= 1
        and bool(np.all(lengths >= 1))
        and bool(np.all(lengths <= n_rows))
        and bool(np.all(starts >= 0))
        and bool(np.all(starts < n_rows))
        and int(starts[0]) == 0
        and bool(np.all(starts[1:] == starts[:-1] + lengths[:-1]))
        and int(starts[-1]) + int(lengths[-1]) == n_rows
    )
    if not ok:
        raise ValueError(
            f"internal error: sequence bounds do not tile the {n_rows} rows "
            "(refusing to run a compiled kernel out of bounds)"
        )


def _numba_kernels() -> Any:
    """The numba kernels, each behind its entry check (see :class:`_GuardedKernels`)."""
    return _GuardedKernels()


class _GuardedKernels:
    """The compiled kernels of :mod:`emframe.inference.hmm._numba`, called safely.

    Before a call, the arrays' dtypes and shapes and the sequence bounds are checked
    (:func:`check_kernel_bounds`): compiled code does not check its indices. A Ctrl-C
    that arrives while a kernel runs makes numba's dispatcher raise ``SystemError:
    CPUDispatcher(...) returned a result with an exception set``, with the
    KeyboardInterrupt as its cause; it is raised as the KeyboardInterrupt it is.
    """

    # kernel name -> shapes of its array arguments ("T", "K", "N": rows, states, sequences;
    # "S" and "L" are starts and lengths); scalars are not listed
    _SIGNATURES: dict[str, tuple[str, ...]] = {
        "scaled_forward_backward": ("K", "KK", "TK", "S", "L"),
        "log_forward": ("K", "KK", "TK", "S", "L"),
        "log_backward": ("KK", "TK", "S", "L"),
        "log_stats": ("KK", "TK", "S", "L", "TK", "T", "TK", "N"),
        "viterbi": ("K", "KK", "TK", "S", "L"),
    }

    def __getattr__(self, name: str) -> Any:
        if name not in self._SIGNATURES:
            raise AttributeError(name)
        # Imported lazily: importing numba costs ~0.5 s and it is optional.
        from emframe.inference.hmm import _numba

        kernel = getattr(_numba, name)
        signature = self._SIGNATURES[name]

        def call(*args: Any) -> Any:
            _check_kernel_args(name, signature, args)
            return call_interruptible(kernel, *args)

        return call


def _check_kernel_args(name: str, signature: tuple[str, ...], args: tuple[Any, ...]) -> None:
    arrays = dict(zip(signature, args, strict=False))
    le, starts, lengths = arrays["TK"], arrays["S"], arrays["L"]
    if not (isinstance(le, np.ndarray) and le.ndim == 2):
        raise ValueError(f"internal error: {name} needs a 2-D log_emission")
    sizes = {"T": le.shape[0], "K": le.shape[1], "N": np.shape(starts)[0]}
    for code, a in zip(signature, args, strict=False):
        if code in ("S", "L"):
            continue
        if not (isinstance(a, np.ndarray) and a.dtype == np.float64 and a.flags.c_contiguous
                and a.shape == tuple(sizes[c] for c in code)):
            raise ValueError(f"internal error: an argument of {name} is not a C-contiguous "
                             f"float64 array of shape {code} = "
                             f"{tuple(sizes[c] for c in code)}")
    check_kernel_bounds(starts, lengths, le.shape[0])


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


