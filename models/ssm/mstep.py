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
    """Expected moments of one regression block, about a reference regression, over ``n`` cases.

    The moments are those of the residuals ``e = u - F_ref z - g_ref`` about the
    E-step's own coefficients (zero references give the raw moments of ``u``), and of
    the regressors ``z``. Near convergence the new coefficients differ from the
    references by a small correction, so the residual scatter of the M-step is a
    difference of small quantities and keeps its digits even when the noise
    covariance is tiny against the scale of ``u``.

    Attributes
    ----------
    ee : ndarray, shape (k, k)
        ``sum E[e e']``.
    ez : ndarray, shape (k, q)
        ``sum E[e z']``.
    zz : ndarray, shape (q, q)
        ``sum E[z z']``.
    e : ndarray, shape (k,)
        ``sum E[e]``.
    z : ndarray, shape (q,)
        ``sum E[z]``.
    n : float
        Number of cases.
    F_ref : ndarray, shape (k, q)
        The coefficients the residuals are taken about.
    g_ref : ndarray, shape (k,)
        The offset the residuals are taken about.
    """

    ee: np.ndarray
    ez: np.ndarray
    zz: np.ndarray
    e: np.ndarray
    z: np.ndarray
    n: float
    F_ref: np.ndarray
    g_ref: np.ndarray

    @classmethod
    def raw(cls, uu, uz, zz, u, z, n) -> BlockMoments:
        """Raw moments of ``u`` (residuals about zero coefficients)."""
        k, q = np.shape(uz)
        return cls(uu, uz, zz, u, z, n, np.zeros((k, q)), np.zeros(k))

    def _augmented(self) -> tuple[np.ndarray, np.ndarray]:
        """``Z = sum E[[z; 1][z; 1]']`` (q+1, q+1) and ``W = sum E[e [z; 1]']`` (k, q+1)."""
        q = self.z.shape[0]
        Z = np.empty((q + 1, q + 1))
        Z[:q, :q] = self.zz
        Z[:q, q] = Z[q, :q] = self.z
        Z[q, q] = self.n
        return Z, np.column_stack([self.ez, self.e])

    def about(self, F: np.ndarray, g: np.ndarray) -> BlockMoments:
        """The same moments about coefficients ``F`` (k, q) and offset ``g`` (k,), exactly.

        ``e' = e - D [z; 1]`` with ``D = [F - F_ref, g - g_ref]``, so ``sum E[e' e']`` is
        the quadratic form below and ``sum E[e' [z; 1]'] = W - D Z``.
        """
        F = np.asarray(F, dtype=float)
        g = np.asarray(g, dtype=float)
        D = np.column_stack([F - self.F_ref, g - self.g_ref])
        if not D.any():
            return self
        Z, W = self._augmented()
        Wn = W - D @ Z
        q = self.z.shape[0]
        return BlockMoments(_scatter(self.ee, W, Z, D), Wn[:, :q], self.zz, Wn[:, q],
                            self.z, self.n, F, g)


def _scatter(ee: np.ndarray, W: np.ndarray, Z: np.ndarray, D: np.ndarray) -> np.ndarray:
    """``ee - D W' - W D' + D Z D'``, the scatter of ``e - D [z; 1]``, exactly symmetric."""
    DW = D @ W.T
    E = ee - DW - DW.T + D @ Z @ D.T
    return 0.5 * (E + E.T)


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


def fit_block(
    mom: BlockMoments, F: np.ndarray | None, g: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares ``F`` and ``g`` (a given, not None, value is held fixed) and the scatter.

    The moments are first moved to the fixed values (the references for a free one),
    then the free coefficients are found as a least-squares correction ``D`` of the
    residuals on ``[z; 1]``; the scatter is that of the residuals about the result.

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
    scatter : ndarray, shape (k, k)
        ``sum E[(u - F z - g)(u - F z - g)']``, exactly symmetric.
    """
    F0 = mom.F_ref if F is None else np.asarray(F, dtype=float)
    g0 = mom.g_ref if g is None else np.asarray(g, dtype=float)
    mom = mom.about(F0, g0)
    Z, W = mom._augmented()
    q = mom.z.shape[0]
    D = np.zeros_like(W)
    if F is None and g is None:
        D = _right_solve(W, Z)
    elif F is None:
        D[:, :q] = _right_solve(mom.ez, mom.zz)
    elif g is None:
        D[:, q] = mom.e / mom.n
    return F0 + D[:, :q], g0 + D[:, q], _scatter(mom.ee, W, Z, D)


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
