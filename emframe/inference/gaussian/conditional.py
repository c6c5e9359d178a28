"""Conditional Gaussians for data with missing entries, grouped by missingness pattern.

Pure functions of arrays, reusable by any model whose components are multivariate
normals (the missing-data Gaussian, a Gaussian mixture on incomplete data, ...).

For ``x ~ N(mu, Sigma)`` with precision ``Lambda = inv(Sigma)``, and a row whose
entries ``m`` are missing and ``o`` observed (``r = x - mu`` with ``r_m = 0`` and
``b = (Lambda r)_m = Lambda_mo r_o``)::

    x_m | x_o ~ N(mu_m - inv(Lambda_mm) b, inv(Lambda_mm))
    log det Sigma_oo = log det Sigma + log det Lambda_mm
    r_o' inv(Sigma_oo) r_o = r' Lambda r - b' inv(Lambda_mm) b

The last two follow from ``inv(Sigma_oo) = Lambda_oo - Lambda_om inv(Lambda_mm) Lambda_mo``
(the Schur complement) and ``det Sigma = det Sigma_oo det inv(Lambda_mm)``. So a row needs
only its *missing* block of ``Lambda`` factorised, which is small when few entries are
missing. Rows are grouped by pattern (the conditional covariance depends only on the
pattern) and patterns by their number ``k`` of missing entries; every ``(k, k)`` block
of one group is factorised in one batched call, so the only Python loop is over the
at most ``d + 1`` values of ``k``, however many distinct patterns there are.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from emframe.core.numerics import cholesky_lower, log_det_cholesky, triangular_inverse
from emframe.inference.compiled import call_interruptible, has_numba

__all__ = [
    "PatternGroup",
    "MissingPatterns",
    "GaussianConditionals",
    "missing_patterns",
    "conditional_gaussian",
    "observed_moments",
    "weighted_scatter",
]

_LOG_2PI = math.log(2.0 * math.pi)

#: Multiply-adds per matrix product on one block of rows. Products this small run on one
#: BLAS thread, which on a busy 2-core machine is many times faster than a threaded
#: product of all rows (thread hand-offs), and no slower when it is idle.
_BLOCK_MULADDS = 3 << 17


def _block_rows(work_per_row: int) -> int:
    return max(128, _BLOCK_MULADDS // max(work_per_row, 1))


def _matmul_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` for tall ``a`` (n, k), block of rows by block of rows."""
    out = np.empty((a.shape[0], b.shape[1]))
    step = _block_rows(b.size)
    for s in range(0, a.shape[0], step):
        np.matmul(a[s : s + step], b, out=out[s : s + step])
    return out


def weighted_scatter(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_i w_i x_i x_i'``, block of rows by block of rows.

    Parameters
    ----------
    x : ndarray of shape (n_samples, n_features)
    w : ndarray of shape (n_samples,)

    Returns
    -------
    ndarray of shape (n_features, n_features)
    """
    d = x.shape[1]
    out = np.zeros((d, d))
    step = _block_rows(d * d)
    for s in range(0, x.shape[0], step):
        xb = x[s : s + step]
        out += (xb * w[s : s + step, None]).T @ xb
    return out


@dataclass(frozen=True)
class PatternGroup:
    """The rows whose missingness patterns all have ``n_missing`` missing entries.

    Attributes
    ----------
    n_missing : int
        Number ``k`` of missing entries in every pattern of the group (``1 <= k <= d``).
    missing : ndarray of shape (n_patterns, k), int
        Missing columns of each distinct pattern, ascending.
    rows : ndarray of shape (n_rows,), int
        Rows of ``X`` in the group.
    row_pattern : ndarray of shape (n_rows,), int
        Index into ``missing`` of each row's pattern.
    """

    n_missing: int
    missing: np.ndarray
    rows: np.ndarray
    row_pattern: np.ndarray

    @functools.cached_property
    def row_missing(self) -> np.ndarray:
        """Missing columns of each row, shape (n_rows, k) (computed once, shared by components)."""
        return self.missing[self.row_pattern]


@dataclass(frozen=True)
class MissingPatterns:
    """Rows of a data matrix grouped by missingness pattern.

    They depend only on where the NaNs are, so one grouping serves every
    parameter set and every mixture component.

    Attributes
    ----------
    missing : ndarray of shape (n_samples, n_features), bool
        True where ``X`` is NaN.
    n_observed : ndarray of shape (n_samples,), int
        Number of observed entries of each row.
    groups : tuple of PatternGroup
        One per number of missing entries that occurs (at least one), ascending.
        Rows with nothing missing are in no group.
    n_patterns : int
        Number of distinct patterns, including the complete one if it occurs.
    """

    missing: np.ndarray
    n_observed: np.ndarray
    groups: tuple[PatternGroup, ...]
    n_patterns: int

    @property
    def n_features(self) -> int:
        return self.missing.shape[1]


def observed_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and (biased) variance of the observed entries of each column.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data with NaN marking missing entries.

    Returns
    -------
    count, mean, var : ndarrays of shape (n_features,)
        Mean and variance are 0 for a column with no observed entry (no warning).
    """
    observed = ~np.isnan(X)
    count = observed.sum(axis=0)
    safe = np.maximum(count, 1)
    mean = np.where(observed, X, 0.0).sum(axis=0) / safe
    var = (np.where(observed, X - mean, 0.0) ** 2).sum(axis=0) / safe
    return count, mean, var


def missing_patterns(X: np.ndarray) -> MissingPatterns:
    """Group the rows of ``X`` by which entries are NaN.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data with NaN marking missing entries.

    Returns
    -------
    MissingPatterns
    """
    mask = np.isnan(X)
    n, d = mask.shape
    n_observed = d - mask.sum(axis=1)
    if n == 0 or not mask.any():
        return MissingPatterns(mask, n_observed, (), int(n > 0))
    # one scalar key per row makes np.unique one-dimensional: far faster than axis=0
    if d <= 62:
        keys = mask @ (1 << np.arange(d, dtype=np.int64))
    else:
        packed = np.ascontiguousarray(np.packbits(mask, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    patterns = mask[first]
    k_pattern = d - n_observed[first]
    k_row = k_pattern[inverse].astype(np.int16)  # small ints: the stable sort is a radix sort
    order = np.argsort(k_row, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(k_row, minlength=d + 1))])
    local = np.empty(len(first), dtype=np.intp)
    groups = []
    for k in range(1, d + 1):
        rows = order[bounds[k] : bounds[k + 1]]
        if not rows.size:
            continue
        in_group = np.flatnonzero(k_pattern == k)
        local[in_group] = np.arange(len(in_group))
        missing = np.nonzero(patterns[in_group])[1].reshape(len(in_group), k)
        groups.append(PatternGroup(k, missing, rows, local[inverse[rows]]))
    return MissingPatterns(mask, n_observed, tuple(groups), len(first))


@dataclass(frozen=True)
class GaussianConditionals:
    """The distribution of each row's missing entries given its observed ones.

    Returned by :func:`conditional_gaussian`; the methods derive imputations,
    variances, draws and weighted second moments from it.

    Attributes
    ----------
    patterns : MissingPatterns
    mean : ndarray of shape (n_features,)
    log_pdf : ndarray of shape (n_samples,)
        Log-density of each row's observed entries (0 for a row with none).
    residual : ndarray of shape (n_samples, n_features)
        ``x_hat - mean``, where ``x_hat`` is the row with its missing entries
        replaced by their conditional means.
    cond_cov : tuple of ndarray, one of shape (n_patterns, k, k) per group
        Conditional covariance of the missing entries of each pattern.
    cond_sqrt : tuple of ndarray, one of shape (n_patterns, k, k) per group
        ``F`` with ``F @ F.T == cond_cov``, for sampling.
    """

    patterns: MissingPatterns
    mean: np.ndarray
    log_pdf: np.ndarray
    residual: np.ndarray
    cond_cov: tuple[np.ndarray, ...]
    cond_sqrt: tuple[np.ndarray, ...]

    def imputed(self, X: np.ndarray) -> np.ndarray:
        """``X`` with missing entries replaced by conditional means, shape (n_samples, n_features).

        Observed entries are copied bit for bit; ``X`` is not modified.
        """
        return np.where(self.patterns.missing, self.mean + self.residual, X)

    def conditional_variance(self) -> np.ndarray:
        """Conditional variance of every entry, 0 where observed; shape (n_samples, n_features)."""
        out = np.zeros(self.patterns.missing.shape)
        for g, cov in zip(self.patterns.groups, self.cond_cov, strict=True):
            diag = np.diagonal(cov, axis1=1, axis2=2)[g.row_pattern]
            out[g.rows[:, None], g.row_missing] = diag
        return out

    def weighted_cov_sum(self, weights: np.ndarray) -> np.ndarray:
        """``sum_i weights[i] * Cov(x_i | observed part of x_i)``, embedded in (d, d).

        Parameters
        ----------
        weights : ndarray of shape (n_samples,)

        Returns
        -------
        ndarray of shape (n_features, n_features)
            Zero outside the rows and columns of missing entries.
        """
        d = self.patterns.n_features
        out = np.zeros(d * d)
        for g, cov in zip(self.patterns.groups, self.cond_cov, strict=True):
            # rows sharing a pattern share its conditional covariance: sum their weights first
            w = np.bincount(g.row_pattern, weights=weights[g.rows], minlength=len(g.missing))
            flat = g.missing[:, :, None] * d + g.missing[:, None, :]
            out += np.bincount(flat.ravel(), weights=(w[:, None, None] * cov).ravel(),
                               minlength=d * d)
        return out.reshape(d, d)

    def sample(self, X: np.ndarray, n_draws: int, rng: np.random.Generator) -> np.ndarray:
        """Draws of ``X`` with missing entries from their conditional distribution.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        n_draws : int
        rng : numpy Generator

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
            Observed entries equal ``X`` in every draw.
        """
        out = np.repeat(self.imputed(X)[None], n_draws, axis=0)
        for g, root in zip(self.patterns.groups, self.cond_sqrt, strict=True):
            z = rng.standard_normal((n_draws, len(g.rows), g.n_missing))
            noise = np.einsum("rij,srj->sri", root[g.row_pattern], z)
            out[:, g.rows[:, None], g.row_missing] += noise
        return out

    def sample_from_normals(self, X: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """:meth:`sample` with given standard normal numbers, a row's own for each row.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
        normals : ndarray of shape (n_draws, n_samples, n_features)
            Row ``i`` of draw ``s`` uses ``normals[s, i, :m]`` for its ``m`` missing
            entries, so a row's draws do not depend on the other rows.

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
        """
        out = np.repeat(self.imputed(X)[None], normals.shape[0], axis=0)
        for g, root in zip(self.patterns.groups, self.cond_sqrt, strict=True):
            z = normals[:, g.rows, : g.n_missing]
            noise = np.einsum("rij,srj->sri", root[g.row_pattern], z)
            out[:, g.rows[:, None], g.row_missing] += noise
        return out


def conditional_gaussian(
    X: np.ndarray,
    mean: np.ndarray,
    covariance: np.ndarray,
    patterns: MissingPatterns | None = None,
) -> GaussianConditionals:
    """Condition ``N(mean, covariance)`` on the observed entries of every row of ``X``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Data with NaN marking missing entries.
    mean : ndarray of shape (n_features,)
    covariance : ndarray of shape (n_features, n_features)
        Symmetric positive definite.
    patterns : MissingPatterns, optional
        ``missing_patterns(X)``, when already computed (for example once for all
        mixture components).

    Returns
    -------
    GaussianConditionals

    Raises
    ------
    ValueError
        If ``covariance`` is not positive definite.
    """
    if patterns is None:
        patterns = missing_patterns(X)
    mask = patterns.missing
    n, d = mask.shape
    chol = cholesky_lower(covariance)
    chol_inv = triangular_inverse(chol, lower=True)  # Lambda = chol_inv' chol_inv
    precision = chol_inv.T @ chol_inv
    log_det = float(log_det_cholesky(chol))
    residual = np.where(mask, 0.0, X - mean)  # r with r_m = 0
    white = _matmul_rows(residual, chol_inv.T)
    quad = np.einsum("ij,ij->i", white, white)  # r' Lambda r
    log_det_obs = np.full(n, log_det)
    lam_r = _matmul_rows(white, chol_inv) if patterns.groups else None  # Lambda r, row by row
    covs, roots = [], []
    for g in patterns.groups:
        k = g.n_missing
        if k == d:
            # nothing observed: the conditional is the marginal, and the row has density 1
            covs.append(np.asarray(covariance, dtype=float)[None])
            roots.append(chol[None])
            continue
        block_inv, cov, block_log_det = _pattern_blocks(precision, g.missing)
        # block_inv: M with inv(Lambda_mm) = M' M
        covs.append(cov)
        roots.append(np.swapaxes(block_inv, 1, 2))
        log_det_obs[g.rows] += block_log_det[g.row_pattern]
        row_missing = g.row_missing
        b = np.take_along_axis(lam_r[g.rows], row_missing, axis=1)
        m_rows = block_inv[g.row_pattern]
        v = np.einsum("rij,rj->ri", m_rows, b)
        quad[g.rows] -= np.einsum("ri,ri->r", v, v)  # b' inv(Lambda_mm) b = |M b|^2
        # conditional mean minus mean: -inv(Lambda_mm) b = -M' (M b)
        residual[g.rows[:, None], row_missing] = -np.einsum("rji,rj->ri", m_rows, v)
    n_obs = patterns.n_observed
    log_pdf = -0.5 * (n_obs * _LOG_2PI + log_det_obs + quad)
    log_pdf[n_obs == 0] = 0.0
    return GaussianConditionals(
        patterns=patterns,
        mean=np.asarray(mean, dtype=float),
        log_pdf=log_pdf,
        residual=residual,
        cond_cov=tuple(covs),
        cond_sqrt=tuple(roots),
    )


#: Patterns from which the compiled factorisation is used (a fresh process spends
#: 0.5-1 s importing numba and loading compiled code; few patterns are cheap in numpy).
_COMPILED_MIN_PATTERNS = 2_000


def _not_pd() -> ValueError:
    return ValueError(
        "a block of the precision matrix is not numerically positive definite: the "
        "covariance is too close to singular; increase the regularisation or check "
        "the data for collinear or constant features"
    )


def _pattern_blocks(
    precision: np.ndarray, missing: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``M = inv(chol(Lambda_mm))``, ``M' M`` and ``log det Lambda_mm`` of every pattern.

    One compiled loop over the patterns when numba is installed, else the vectorised
    numpy recurrences of :func:`_batched_cholesky_and_inverse`.
    """
    if len(missing) >= _COMPILED_MIN_PATTERNS and has_numba():
        from emframe.inference.gaussian._conditional_numba import pattern_blocks

        M, cov, log_det, ok = call_interruptible(
            pattern_blocks,
            np.ascontiguousarray(precision, dtype=np.float64),
            np.ascontiguousarray(missing, dtype=np.int64),
        )
        if not ok:
            raise _not_pd()
        return M, cov, log_det
    L, M = _batched_cholesky_and_inverse(precision[missing[:, :, None], missing[:, None, :]])
    return M, np.swapaxes(M, 1, 2) @ M, log_det_cholesky(L)


def _batched_cholesky_and_inverse(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors ``L`` of a stack of (k, k) SPD blocks, and their inverses.

    Column by column across the whole stack (the Python loops run k times, each step
    a vectorised operation on all blocks): with tens of thousands of blocks of a few
    rows, one LAPACK call per block (``np.linalg.cholesky``, ``np.linalg.inv``) costs
    far more in per-call overhead than the arithmetic. The same textbook recurrences.

    Parameters
    ----------
    blocks : ndarray of shape (P, k, k)

    Returns
    -------
    chol, chol_inv : ndarrays of shape (P, k, k), lower triangular
    """
    P, k, _ = blocks.shape
    L = np.zeros_like(blocks)
    for j in range(k):
        row = L[:, j, :j]
        diag = blocks[:, j, j] - np.einsum("pi,pi->p", row, row)
        if not np.all(diag > 0):  # also catches NaN
            raise _not_pd()
        ljj = np.sqrt(diag)
        L[:, j, j] = ljj
        if j + 1 < k:
            below = blocks[:, j + 1 :, j] - np.einsum("pri,pi->pr", L[:, j + 1 :, :j], row)
            L[:, j + 1 :, j] = below / ljj[:, None]
    # inverse by forward substitution, row by row: M[j] = (e_j - L[j, :j] M[:j]) / L[j, j]
    M = np.zeros_like(blocks)
    for j in range(k):
        inv_jj = 1.0 / L[:, j, j]
        M[:, j, j] = inv_jj
        if j:
            M[:, j, :j] = -np.einsum("pi,pic->pc", L[:, j, :j], M[:, :j, :j]) * inv_jj[:, None]
    return L, M
