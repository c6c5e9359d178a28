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

The moments are those of the residuals about the E-step's own coefficients
(:class:`BlockMoments`), so the new ``F`` and ``g`` are a small least-squares correction
and the residual scatter a difference of small quantities: a noise covariance far below
the data's scale keeps its digits. ``R`` is the maximiser over the covariances above a
floor fixed by the data (:data:`FLOOR`), ``Q`` and ``S0`` are raised to rounding level
when their update is singular only by rounding (:func:`covariance_update`).
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
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
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
    terms : ndarray, shape (k,)
        The size of the largest term each diagonal entry of the scatter was computed
        from (its rounding error is a small multiple of ``eps`` times it).
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
    terms = np.maximum(np.diagonal(mom.ee), np.einsum("ij,jk,ik->i", D, Z, D))
    return F0 + D[:, :q], g0 + D[:, q], _scatter(mom.ee, W, Z, D), terms


#: The M-step keeps the observation covariance at least this fraction of the observed
#: variances ``v`` of the columns: ``R >= FLOOR * diag(v)`` in the Loewner order, a
#: fixed set (``v`` depends on the data only), over which the M-step is the exact
#: maximiser, so EM stays monotone. With a single sequence and a free ``S0`` the
#: likelihood is unbounded as ``S0`` and ``R`` become singular together (the first
#: observation fitted exactly along ``R``'s thinnest direction); the Cholesky factor of
#: the innovation covariance ``C P C' + R`` resolves that direction only to about
#: ``eps`` times the column's scale, so far below the floor the log-likelihood's
#: rounding would exceed the monotonicity guard's tolerance. The floor bounds every
#: innovation covariance from below, and so the likelihood from above.
FLOOR = 1e-7

#: Relative rounding level of a covariance computed from terms of a given size: a
#: smallest eigenvalue above ``-ROUNDING`` times the terms (each coordinate scaled by
#: its own) is rounding, raised to ``ROUNDING``; one below is indefinite beyond
#: rounding, an error.
ROUNDING = 1e4 * float(np.finfo(np.float64).eps)


def _scaled(V: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``T^{-1/2} V T^{-1/2}`` and ``T^{1/2}`` (k,) for ``T = diag(scale)`` (non-positive -> 1)."""
    root = np.sqrt(np.where(scale > 0, scale, 1.0))
    return V / np.outer(root, root), root


def raise_to_floor(V: np.ndarray, floor: np.ndarray, diag: bool = False) -> np.ndarray:
    """The maximiser over ``V' >= diag(floor)`` of the objective whose plain maximiser is ``V``.

    The eigenvalues of ``F^{-1/2} V F^{-1/2}`` (``F = diag(floor)``) raised to 1: the
    objective ``-n/2 log|V'| - 1/2 trace(V'^{-1} S)`` is invariant under the congruence,
    and over ``V' >= I`` it is maximised by clipping the eigenvalues of ``S / n`` at 1.
    A diagonal ``V`` (``diag``) has its entries raised to ``floor``.

    Parameters
    ----------
    V : ndarray, shape (k, k)
        Symmetric positive semi-definite.
    floor : ndarray, shape (k,)
        Positive.
    diag : bool

    Returns
    -------
    ndarray, shape (k, k)
        ``V`` itself when it is above the floor already.
    """
    if diag:
        d = np.diagonal(V)
        return V if np.all(d >= floor) else np.diag(np.maximum(d, floor))
    scaled, root = _scaled(V, floor)
    w, U = np.linalg.eigh(scaled)
    if V.shape[0] == 0 or w[0] >= 1.0:
        return V
    V = ((U * np.maximum(w, 1.0)) @ U.T) * np.outer(root, root)
    return 0.5 * (V + V.T)


def covariance_update(
    scatter: np.ndarray,
    n: float,
    diag: bool,
    ridge: float,
    name: str,
    *,
    floor: np.ndarray | None = None,
    terms: np.ndarray | None = None,
) -> np.ndarray:
    """``(scatter + ridge I) / n`` (its diagonal when ``diag``), kept positive definite.

    Parameters
    ----------
    scatter : ndarray, shape (k, k)
        Expected residual scatter about the new regression.
    n : float
        Number of cases.
    diag : bool
        Keep the diagonal only.
    ridge : float
        Prior strength (see the module docstring).
    name : str
        The field, for the error message.
    floor : ndarray, shape (k,), optional
        Positive: the update is the maximiser over ``V >= diag(floor)`` (see
        :func:`raise_to_floor`).
    terms : ndarray, shape (k,), optional
        Size of the terms each diagonal entry of ``scatter`` was computed from (see
        :func:`fit_block`), for the rounding level.

    Returns
    -------
    ndarray, shape (k, k)
        The plain update, unless EM is at a singular boundary (the likelihood rising
        towards a singular covariance): then it is raised to ``floor``, or, without
        one, its eigenvalues below ``ROUNDING`` (not resolved by float64, possibly
        negative) of ``T^{-1/2} V T^{-1/2}`` are raised to that level, where ``T``
        holds the larger of the terms and of ``V``'s diagonal per coordinate (so
        columns of different scales are judged each against its own). The result is
        symmetric positive definite.

    Raises
    ------
    ValueError
        If the plain update is indefinite beyond rounding error.
    """
    k = scatter.shape[0]
    V = (scatter + ridge * np.eye(k)) / n
    if diag:
        V = np.diag(np.diag(V))
    V = 0.5 * (V + V.T)
    if k == 0:
        return V
    scale = np.diagonal(V) if terms is None else np.maximum(terms / n, np.diagonal(V))
    scaled, root = _scaled(V, scale)
    w, U = np.linalg.eigh(scaled)
    if w[0] < -ROUNDING:
        smallest = float(np.linalg.eigvalsh(V)[0])
        raise ValueError(
            f"the M-step's {name} is not positive semi-definite (smallest eigenvalue "
            f"{smallest:.3g}, beyond rounding error): the expected statistics are "
            f"inconsistent with a covariance. Set ridge > 0, or freeze {name}"
        )
    if floor is not None:
        return raise_to_floor(V, floor, diag)
    if w[0] < ROUNDING:
        V = ((U * np.maximum(w, ROUNDING)) @ U.T) * np.outer(root, root)
        V = np.diag(np.diag(V)) if diag else 0.5 * (V + V.T)
    return V
