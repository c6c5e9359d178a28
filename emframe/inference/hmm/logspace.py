"""Exact log-space forward, backward and expected counts (the numpy reference and the fallback)."""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from emframe.inference.hmm.common import _PAIR_CHUNK, _Packing, _starts

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


