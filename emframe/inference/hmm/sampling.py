"""Posterior sampling of state paths: forward filtering, backward sampling (FFBS)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from emframe.inference.hmm.common import _check_inputs, _starts
from emframe.inference.hmm.recursions import forward

__all__ = ["sample_paths"]


def sample_paths(
    log_startprob: ArrayLike,
    log_transmat: ArrayLike,
    log_emission: ArrayLike,
    lengths: ArrayLike | None = None,
    *,
    n_draws: int = 1,
    rng: np.random.Generator,
) -> np.ndarray:
    """Independent draws of the state paths from their joint posterior ``p(z | x)``.

    The forward pass gives the filtered distributions ``p(z_t | x_1..t)``; the last
    state is drawn from the filter, then each earlier one from
    ``p(z_t | z_{t+1}, x_1..t) ∝ p(z_t | x_1..t) A[z_t, z_{t+1}]``, all in log space
    (Gumbel-max draws, so ``-inf`` entries are exact zeros).

    Parameters
    ----------
    log_startprob : array-like, shape (K,)
    log_transmat : array-like, shape (K, K)
    log_emission : array-like, shape (T, K)
    lengths : array-like of int, shape (n_seq,), optional
    n_draws : int, default 1
    rng : numpy Generator

    Returns
    -------
    ndarray of int64, shape (n_draws, T)
        Each row one draw of every sequence's path, concatenated.

    Raises
    ------
    ValueError
        If a sequence has zero probability (its posterior does not exist).
    """
    lpi, lA, le, lengths = _check_inputs(log_startprob, log_transmat, log_emission, lengths)
    log_alpha, seq_ll = forward(lpi, lA, le, lengths)
    bad = np.flatnonzero(seq_ll == -np.inf)
    if bad.size:
        raise ValueError(
            f"sequence {int(bad[0])} has zero probability under the model: its state "
            "posterior does not exist"
        )
    n_draws = int(n_draws)
    n, k = le.shape
    last = np.zeros(n, dtype=bool)
    last[_starts(lengths) + lengths - 1] = True
    out = np.empty((n_draws, n), dtype=np.int64)
    for t in range(n - 1, -1, -1):
        logw = np.broadcast_to(log_alpha[t], (n_draws, k))
        if not last[t]:
            logw = logw + lA[:, out[:, t + 1]].T
        out[:, t] = np.argmax(logw + rng.gumbel(size=(n_draws, k)), axis=1)
    return out
