"""Numerical building blocks shared by every model: log-space arithmetic and Cholesky utilities."""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

__all__ = [
    "logsumexp",
    "log_normalize",
    "safe_log",
    "normalize",
    "cholesky_lower",
    "precision_cholesky",
    "triangular_inverse",
    "log_det_cholesky",
    "TINY",
]

#: Smallest positive float64, used to floor probabilities before taking logs.
TINY = np.finfo(np.float64).tiny


def log_normalize(a: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """Normalise log-weights along ``axis``.

    Parameters
    ----------
    a : ndarray
        Log of unnormalised non-negative weights; ``-inf`` entries are allowed.
    axis : int
        Axis to normalise over.

    Returns
    -------
    log_p : ndarray, same shape as ``a``
        ``a - logsumexp(a, axis)``, so ``exp(log_p)`` sums to one along ``axis``.
    log_norm : ndarray
        ``logsumexp(a, axis)``, with ``axis`` removed.
    """
    log_norm = logsumexp(a, axis=axis)
    with np.errstate(invalid="ignore"):
        log_p = a - np.expand_dims(log_norm, axis)
    if a.size:
        mx = np.max(a, axis=axis, keepdims=True)
        # Beyond 2**50 the log of the sum (at most log of the number of terms) can be
        # absorbed by the maximum, and a - logsumexp(a) no longer sums to one (a = -1e200
        # twice gives 0 twice); there (a - max) - log(sum(exp(a - max))) does.
        big = (np.abs(mx) >= 2.0**50) & np.isfinite(mx)
        if big.any():
            shifted = a - np.where(big, mx, 0.0)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                stable = shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))
            log_p = np.where(big, stable, log_p)
    return log_p, log_norm


def safe_log(p: np.ndarray | float) -> np.ndarray:
    """Logarithm that maps exact zeros to ``-inf`` without a RuntimeWarning."""
    with np.errstate(divide="ignore"):
        return np.log(p)


def normalize(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Divide non-negative weights by their sum along ``axis``; all-zero slices stay zero."""
    a = np.asarray(a, dtype=float)
    s = a.sum(axis=axis, keepdims=True)
    return np.divide(a, s, out=np.zeros_like(a), where=s > 0)


def cholesky_lower(cov: np.ndarray, what: str = "covariance") -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive definite matrix.

    Parameters
    ----------
    cov : ndarray of shape (d, d)
    what : str
        How to name the matrix in the error message.

    Raises
    ------
    ValueError
        If ``cov`` is not positive definite, with a message naming ``what``.
    """
    try:
        return linalg.cholesky(cov, lower=True, check_finite=True)
    except (linalg.LinAlgError, ValueError):
        raise ValueError(
            f"{what} is not symmetric positive definite (or not finite); "
            "increase the regularisation (for example reg_covar) or check the data "
            "for duplicate points and constant features"
        ) from None


def precision_cholesky(cov: np.ndarray, what: str = "covariance") -> np.ndarray:
    """Upper-triangular ``U`` with ``U @ U.T == inv(cov)``.

    Scoring a point then needs one triangular product, no inverse or determinant.

    Parameters
    ----------
    cov : ndarray of shape (d, d)

    Returns
    -------
    ndarray of shape (d, d)
    """
    return triangular_inverse(cholesky_lower(cov, what), lower=True).T


def triangular_inverse(tri: np.ndarray, lower: bool = True) -> np.ndarray:
    """Inverse of a non-singular triangular matrix.

    LAPACK ``trtri`` directly: on small matrices it is much cheaper than
    ``scipy.linalg.solve_triangular``, whose per-call overhead stalled for
    milliseconds on a busy machine.

    Parameters
    ----------
    tri : ndarray of shape (d, d)
    lower : bool
        Whether ``tri`` is lower (else upper) triangular.

    Raises
    ------
    numpy.linalg.LinAlgError
        (a ``ValueError``) if ``tri`` is singular.
    """
    inv, info = linalg.lapack.dtrtri(tri, lower=int(lower))
    if info != 0:
        raise np.linalg.LinAlgError(
            "singular triangular factor: the matrix is not positive definite"
        )
    return inv


def log_det_cholesky(chol: np.ndarray) -> np.ndarray:
    """Log-determinant of ``A`` from a triangular factor ``chol`` of ``A`` (``A = chol chol^T``).

    Parameters
    ----------
    chol : ndarray of shape (..., d, d)

    Returns
    -------
    ndarray of shape (...)
        ``2 * sum(log(diag(chol)))``.
    """
    return 2.0 * np.sum(np.log(np.abs(np.diagonal(chol, axis1=-2, axis2=-1))), axis=-1)
