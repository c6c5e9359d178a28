"""Closed-form M-step of a linear-Gaussian state-space model, one Gaussian regression at a time.

The expected complete-data log-likelihood splits into three independent blocks, each a
multivariate Gaussian regression ``u = F z + g + e``, ``e ~ N(0, V)``, with expected
moments summed over ``n`` cases:

============== ========= ========= ========== ================== =====================
block          ``u``     ``z``     ``F``      ``g``              ``V``
============== ========= ========= ========== ================== =====================
initial state  ``x_1``   (none)    (none)     ``mu0``            ``S0``
transition     ``x_t+1`` ``x_t``   ``A``      ``b``              ``Q``
observation    ``y_t``   ``x_t``   ``C``      ``d``              ``R``
============== ========= ========= ========== ================== =====================

Within a block, every row of ``u`` has the same regressors, so least squares gives the
maximising ``F`` and ``g`` whatever ``V`` is (full or diagonal, free or frozen); with
``F`` or ``g`` frozen the other is the least-squares fit given the frozen value. The
covariance is then the expected residual scatter about the chosen ``F`` and ``g``,
divided by ``n``; for a diagonal ``V`` its diagonal, which maximises the objective over
diagonal matrices because the objective then splits coordinate by coordinate. So each
update is the exact maximiser under whatever is frozen, and the M-step is a
maximisation (the EM iteration is exact).

With a ``ridge`` prior ``p(V) ∝ exp(-ridge/2 · trace(V^{-1}))`` the covariance is the
MAP estimate ``(scatter + ridge·I) / n``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy import linalg


@dataclasses.dataclass(frozen=True)
class BlockMoments:
    """Expected moments of one regression block, summed over its ``n`` cases.

    Attributes
    ----------
    uu : ndarray, shape (k, k)
        ``sum E[u u']``.
    uz : ndarray, shape (k, q)
        ``sum E[u z']``.
    zz : ndarray, shape (q, q)
        ``sum E[z z']``.
    u : ndarray, shape (k,)
        ``sum E[u]``.
    z : ndarray, shape (q,)
        ``sum E[z]``.
    n : float
        Number of cases.
    """

    uu: np.ndarray
    uz: np.ndarray
    zz: np.ndarray
    u: np.ndarray
    z: np.ndarray
    n: float


def _right_solve(B: np.ndarray, S: np.ndarray) -> np.ndarray:
    """``B S^{-1}`` for a symmetric positive semi-definite ``S``.

    Cholesky when ``S`` is positive definite; otherwise the pseudo-inverse, which gives
    the minimum-norm least-squares solution (every solution maximises the objective
    equally: the data do not determine the coefficients along the null space).
    """
    if S.shape[0] == 0:
        return np.zeros((B.shape[0], 0))
    try:
        return linalg.cho_solve(linalg.cho_factor(S, lower=True), B.T).T
    except linalg.LinAlgError:
        return B @ linalg.pinvh(S)


def regression_coefficients(
    mom: BlockMoments, F: np.ndarray | None, g: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares ``F`` and ``g``; a given (not None) value is held fixed.

    Parameters
    ----------
    mom : BlockMoments
    F : ndarray, shape (k, q), or None
        Frozen coefficient matrix, or None to estimate it.
    g : ndarray, shape (k,), or None
        Frozen offset, or None to estimate it.

    Returns
    -------
    F : ndarray, shape (k, q)
    g : ndarray, shape (k,)
    """
    q = mom.z.shape[0]
    if F is None and g is None:
        # joint least squares on the regressors augmented with a constant 1
        Szz = np.empty((q + 1, q + 1))
        Szz[:q, :q] = mom.zz
        Szz[:q, q] = Szz[q, :q] = mom.z
        Szz[q, q] = mom.n
        W = _right_solve(np.column_stack([mom.uz, mom.u]), Szz)
        return W[:, :q], W[:, q]
    if F is None:
        return _right_solve(mom.uz - np.outer(g, mom.z), mom.zz), g
    if g is None:
        return F, (mom.u - F @ mom.z) / mom.n
    return F, g


def residual_scatter(mom: BlockMoments, F: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``sum E[(u - F z - g)(u - F z - g)']``, exactly symmetric; shape (k, k)."""
    Fz = F @ mom.z
    cross = mom.uz @ F.T + np.outer(mom.u, g)  # sum E[u (F z + g)']
    fit = F @ mom.zz @ F.T + np.outer(Fz, g) + np.outer(g, Fz) + mom.n * np.outer(g, g)
    E = mom.uu - cross - cross.T + fit
    return 0.5 * (E + E.T)


def covariance_update(
    scatter: np.ndarray, n: float, diag: bool, ridge: float, name: str
) -> np.ndarray:
    """``(scatter + ridge I) / n`` (its diagonal when ``diag``), checked positive definite.

    Raises
    ------
    ValueError
        If the update is not positive definite: the data are fitted exactly along some
        direction (a degenerate maximum of the likelihood), so the covariance collapses.
    """
    V = (scatter + ridge * np.eye(scatter.shape[0])) / n
    if diag:
        V = np.diag(np.diag(V))
    V = 0.5 * (V + V.T)
    try:
        np.linalg.cholesky(V)
    except np.linalg.LinAlgError:
        smallest = float(np.linalg.eigvalsh(V)[0])
        raise ValueError(
            f"the M-step's {name} is not positive definite (smallest eigenvalue "
            f"{smallest:.3g}): the model fits the data exactly along some direction, so "
            f"EM is driving {name} to a singular matrix. Set ridge > 0 (a prior that keeps "
            f"covariances positive definite), freeze {name}, or reduce n_dim_state"
        ) from None
    return V
