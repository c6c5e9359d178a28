"""Gaussian components on incomplete rows: the shared machinery of the Gaussian emissions.

Built on :mod:`emframe.inference.gaussian.conditional` (rows grouped by missingness
pattern, batched factorisations). For a row whose entries ``m`` are missing and ``o``
observed, under a component N(mu, Sigma):

* its log-density is that of ``x_o`` (the missing entries are marginalised out; a row
  with nothing observed has density 1);
* its expected sufficient statistics hold the conditional mean of ``x_m`` given ``x_o``
  in place of the missing entries, and the conditional covariance added to the second
  moment. Summed with the complete rows' moments they give the exact EM M-step for the
  observed-data likelihood.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emframe.inference.gaussian import CovarianceStrategy, GaussianMoments
from emframe.inference.gaussian.conditional import (
    GaussianConditionals,
    MissingPatterns,
    conditional_gaussian,
    missing_patterns,
    observed_moments,
    weighted_scatter,
)

__all__ = [
    "component_conditionals",
    "dense_covariances",
    "incomplete_moments",
    "mean_imputed",
    "mixture_impute",
    "sample_from_conditionals",
]


def mean_imputed(X: np.ndarray) -> np.ndarray:
    """``X`` with NaN replaced by its column's observed mean (for initialisation only).

    Raises
    ------
    ValueError
        If a column has no observed entry: its parameters would be unidentified.
    """
    missing = np.isnan(X)
    if not missing.any():
        return X
    count, mean, _ = observed_moments(X)
    empty = np.flatnonzero(count == 0)
    if empty.size:
        raise ValueError(
            f"column {int(empty[0])} of X has no observed value (every entry is NaN): "
            "its parameters cannot be estimated; drop the column"
        )
    return np.where(missing, mean, X)


def dense_covariances(
    strategy: CovarianceStrategy, precisions_cholesky: np.ndarray, n: int, d: int
) -> np.ndarray:
    """The covariance of each of ``n`` components as a (d, d) matrix, shape (n, d, d).

    Generic over covariance types: ``sample_noise`` maps standard normal rows ``Z`` to
    ``Z B`` with ``B' B`` the component's covariance.
    """
    eye = np.eye(d)
    out = np.empty((n, d, d))
    for k in range(n):
        b = strategy.sample_noise(precisions_cholesky, k, eye)
        out[k] = b.T @ b
    return out


def component_conditionals(
    strategy: CovarianceStrategy,
    means: np.ndarray,
    precisions_cholesky: np.ndarray,
    X: np.ndarray,
    patterns: MissingPatterns | None = None,
) -> list[GaussianConditionals]:
    """The conditional of every row's missing entries under each component (n items).

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (n, d)
    precisions_cholesky : ndarray in the strategy's shape for n components
    X : ndarray of shape (n_rows, d)
        Rows with NaN for missing entries.
    patterns : MissingPatterns, optional
        ``missing_patterns(X)`` if already computed.
    """
    n, d = np.shape(means)
    patterns = missing_patterns(X) if patterns is None else patterns
    covs = dense_covariances(strategy, precisions_cholesky, n, d)
    return [conditional_gaussian(X, means[k], covs[k], patterns) for k in range(n)]


def _represent(strategy: CovarianceStrategy, matrix: np.ndarray) -> np.ndarray:
    """A symmetric (d, d) matrix in the statistics' representation (full, diagonal, trace)."""
    d = matrix.shape[0]
    # sum_j e_j m_j' is the matrix itself; cross() builds each term in the representation
    return strategy.moments.cross(np.eye(d), matrix.T).sum(axis=0)


def incomplete_moments(
    strategy: CovarianceStrategy,
    means: np.ndarray,
    conds: Sequence[GaussianConditionals],
    resp: np.ndarray,
) -> GaussianMoments:
    """Expected moments of incomplete rows, referenced at the component means.

    Parameters
    ----------
    strategy : CovarianceStrategy
    means : ndarray of shape (n, d)
        The means the conditionals were computed with.
    conds : sequence of GaussianConditionals, one per component
    resp : ndarray of shape (n_rows, n)
        Non-negative weights of every row in every component (zero for a row with
        nothing observed, which carries no information).

    Returns
    -------
    GaussianMoments
        Of class ``strategy.moments``: ``sum_x`` holds the conditional-mean residuals,
        ``sum_xx`` their scatter plus the weighted conditional covariances.
    """
    sum_x = np.empty(np.shape(means))
    sum_xx = []
    for k, c in enumerate(conds):
        r = resp[:, k]
        sum_x[k] = r @ c.residual
        sum_xx.append(
            _represent(strategy, weighted_scatter(c.residual, r) + c.weighted_cov_sum(r))
        )
    return strategy.moments(resp.sum(axis=0), np.array(means, dtype=float), sum_x,
                            np.stack(sum_xx))


def mixture_impute(
    conds: Sequence[GaussianConditionals], weights: np.ndarray, X: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of every entry under a mixture of the components' conditionals.

    Parameters
    ----------
    conds : sequence of GaussianConditionals, one per component
    weights : ndarray of shape (n_rows, n)
        Probability of every component for every row (rows sum to one).
    X : ndarray of shape (n_rows, d)

    Returns
    -------
    imputed, variance : ndarrays of shape (n_rows, d)
        Observed entries copied from ``X`` with variance 0.
    """
    means = [c.mean + c.residual for c in conds]
    mix = sum(weights[:, [k]] * m for k, m in enumerate(means))
    # law of total variance, about the mixture mean (no cancellation)
    var = sum(
        weights[:, [k]] * (c.conditional_variance() + (m - mix) ** 2)
        for k, (c, m) in enumerate(zip(conds, means, strict=True))
    )
    missing = conds[0].patterns.missing
    return np.where(missing, mix, X), np.where(missing, var, 0.0)


def sample_from_conditionals(
    conds: Sequence[GaussianConditionals],
    labels: np.ndarray,
    X: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Completions of ``X``: in draw i, row t's missing entries from component ``labels[i, t]``.

    Parameters
    ----------
    conds : sequence of GaussianConditionals, one per component
    labels : ndarray of int, shape (n_draws, n_rows)
    X : ndarray of shape (n_rows, d)
    rng : numpy Generator

    Returns
    -------
    ndarray of shape (n_draws, n_rows, d)
        Observed entries equal ``X``.
    """
    out = np.repeat(np.array(X, dtype=float)[None], labels.shape[0], axis=0)
    for k, c in enumerate(conds):
        chosen = labels == k
        if chosen.any():
            out[chosen] = c.sample(X, labels.shape[0], rng)[chosen]
    return out


def incomplete_rows(X: np.ndarray) -> np.ndarray | None:
    """Which rows of ``X`` have a NaN, or None when none has (the common case).

    One sum over ``X`` decides the common case: a sum is NaN whenever an entry is (it
    can also be NaN from inf - inf, and then the rows are simply checked). Several
    times cheaper than ``np.isnan(X).any(axis=1)`` over short rows, every E-step.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.sum(X)
    if not np.isnan(total):
        return None
    rows = np.isnan(X).any(axis=1)
    return rows if rows.any() else None

