"""Partially known states: validation, clamping, and the zero-probability check.

A label vector ``states`` has one entry per step: the known state index, or -1 where
the state is unknown. Conditioning an HMM on the known states is exact and cheap: at
a labelled step, the emission log-likelihood of every other state is set to ``-inf``.
The forward-backward recursion then computes ``p(x, known states)`` as the
likelihood, and posteriors, expected counts and Viterbi paths given both, with no
change to the inference routines.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from emframe.inference.hmm import forward

__all__ = ["UNKNOWN", "check_labels_possible", "check_states", "clamp"]

#: The label of a step whose state is unknown.
UNKNOWN = -1


def check_states(states: Any, n_samples: int) -> np.ndarray:
    """Validate a label vector; return it as a new int64 array of shape (n_samples,).

    Raises
    ------
    TypeError
        If ``states`` is not numeric (or is boolean).
    ValueError
        On the wrong shape, NaN, non-integer values, or values below -1.
    """
    arr = np.asarray(states)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(
            f"states must be integer state indices (-1 for unknown), got dtype {arr.dtype}"
        )
    if arr.shape != (n_samples,):
        raise ValueError(
            f"states must have shape (n_samples,) = ({n_samples},), one label per row of X "
            f"(-1 where the state is unknown), got shape {arr.shape}"
        )
    if np.issubdtype(arr.dtype, np.floating):
        bad = np.flatnonzero(~np.isfinite(arr) | (arr != np.round(arr)))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"states must be integers (-1 for unknown), but states[{i}] = {arr[i]!r}"
            )
    out = arr.astype(np.int64)
    bad = np.flatnonzero(out < UNKNOWN)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"states[{i}] = {out[i]} is not a state: use 0 .. n_components-1 for a known "
            "state and -1 where it is unknown"
        )
    out.flags.writeable = False
    return out


def check_range(states: np.ndarray, n_components: int) -> None:
    """Raise ``ValueError`` if a label is ``>= n_components``."""
    bad = np.flatnonzero(states >= n_components)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"states[{i}] = {int(states[i])} is out of range: the model has "
            f"n_components={n_components} states (0 to {n_components - 1}; -1 for unknown)"
        )


def clamp(log_emission: np.ndarray, states: np.ndarray | None) -> np.ndarray:
    """Emission log-likelihoods conditioned on the known states (a new array when labelled).

    Parameters
    ----------
    log_emission : ndarray of shape (n_samples, K)
    states : ndarray of int, shape (n_samples,), or None

    Returns
    -------
    ndarray of shape (n_samples, K)
        ``-inf`` for every state but the known one at labelled steps.
    """
    if states is None:
        return log_emission
    rows = np.flatnonzero(states >= 0)
    if not rows.size:
        return log_emission
    check_range(states, log_emission.shape[1])
    out = np.full_like(log_emission, -np.inf)
    keep = np.ones(log_emission.shape[0], dtype=bool)
    keep[rows] = False
    out[keep] = log_emission[keep]
    out[rows, states[rows]] = log_emission[rows, states[rows]]
    return out


def check_labels_possible(
    start_ok: np.ndarray,
    trans_ok: np.ndarray,
    states: np.ndarray | None,
    lengths: np.ndarray,
    where: str,
) -> None:
    """Raise ``ValueError`` if the labels have zero probability under a start/transition support.

    Exact reachability: a forward pass over the support (log 0 or log 1) with only the
    labels as evidence. Adjacent labels ``i -> j`` with ``trans_ok[i, j]`` false and a
    first step labelled with an impossible start are named in the message.

    Parameters
    ----------
    start_ok : ndarray of bool, shape (K,)
        States a sequence may start in.
    trans_ok : ndarray of bool, shape (K, K)
        Allowed transitions.
    states : ndarray of int, shape (n_samples,), or None
    lengths : ndarray of int, shape (n_sequences,)
    where : str
        What the support comes from, for the message (e.g. "the fitted model").
    """
    if states is None or not np.any(states >= 0):
        return
    k = start_ok.shape[0]
    check_range(states, k)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for s, t0 in enumerate(starts):
        lab = states[t0]
        if lab >= 0 and not start_ok[lab]:
            raise ValueError(
                f"the given states have zero probability under {where}: sequence {s} starts "
                f"in state {lab} (states[{t0}]), whose start probability is zero"
            )
    a, b = states[:-1], states[1:]
    pair = (a >= 0) & (b >= 0)
    pair[starts[1:] - 1] = False  # no transition between sequences
    bad = np.flatnonzero(pair)
    bad = bad[~trans_ok[a[bad], b[bad]]]
    if bad.size:
        t = int(bad[0])
        raise ValueError(
            f"the given states have zero probability under {where}: states[{t}] = {a[t]} "
            f"is followed by states[{t + 1}] = {b[t]}, but transmat_[{a[t]}, {b[t]}] is zero"
        )
    with np.errstate(divide="ignore"):
        log_start = np.log(start_ok.astype(float))
        log_trans = np.log(trans_ok.astype(float))
    evidence = clamp(np.zeros((states.shape[0], k)), states)
    _, seq_ll = forward(log_start, log_trans, evidence, lengths)
    impossible = np.flatnonzero(seq_ll == -np.inf)
    if impossible.size:
        s = int(impossible[0])
        raise ValueError(
            f"the given states have zero probability under {where}: no state path allowed "
            f"by the zeros of startprob_/transmat_ passes through the labels of sequence {s} "
            f"(rows {int(starts[s])} to {int(starts[s] + lengths[s] - 1)})"
        )
