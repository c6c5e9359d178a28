"""Exact HMM answers by enumerating every state path (tiny problems only).

The emission log-likelihoods are computed independently of emframe by the tests; this
module only sums over paths, so it shares no code with the recursions it checks.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.special import logsumexp


def path_log_probs(
    startprob: np.ndarray,
    transmat: np.ndarray,
    log_emission: np.ndarray,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All state paths of one sequence and ``log p(path, x)`` of each (-inf if excluded).

    ``labels`` (-1 where unknown) excludes the paths that disagree with them.
    """
    T, K = log_emission.shape
    paths = np.array(list(itertools.product(range(K), repeat=T)))
    with np.errstate(divide="ignore"):
        lp = np.log(startprob)[paths[:, 0]] + log_emission[0, paths[:, 0]]
        for t in range(1, T):
            lp = lp + np.log(transmat)[paths[:, t - 1], paths[:, t]] + log_emission[t, paths[:, t]]
    if labels is not None:
        ok = np.all((labels < 0) | (paths == labels), axis=1)
        lp = np.where(ok, lp, -np.inf)
    return paths, lp


def brute_force(
    startprob: np.ndarray,
    transmat: np.ndarray,
    log_emission: np.ndarray,
    lengths: list[int],
    labels: np.ndarray | None = None,
) -> dict[str, Any]:
    """Exact answers for all sequences.

    Returns a dict: ``loglik`` (total), ``posteriors`` (T, K), ``path`` (Viterbi, (T,)),
    ``path_logprob`` (its total log-probability), ``start`` (K,) and ``trans`` (K, K)
    expected counts.
    """
    K = log_emission.shape[1]
    out: dict[str, Any] = {"loglik": 0.0, "path_logprob": 0.0, "start": np.zeros(K),
                           "trans": np.zeros((K, K))}
    post, best = [], []
    start = 0
    for n in lengths:
        rows = slice(start, start + n)
        lab = None if labels is None else labels[rows]
        paths, lp = path_log_probs(startprob, transmat, log_emission[rows], lab)
        ll = logsumexp(lp)
        w = np.exp(lp - ll)
        post.append(np.stack([[w[paths[:, t] == k].sum() for k in range(K)] for t in range(n)]))
        out["start"] += post[-1][0]
        for t in range(1, n):
            np.add.at(out["trans"], (paths[:, t - 1], paths[:, t]), w)
        i = int(np.argmax(lp))
        best.append(paths[i])
        out["loglik"] += ll
        out["path_logprob"] += lp[i]
        start += n
    out["posteriors"] = np.concatenate(post)
    out["path"] = np.concatenate(best)
    return out
