"""The system matrices of a linear-Gaussian state-space model, and input validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

# re-exported: the Kalman routines and their callers import them from here
from emframe.inference.compiled import has_numba, use_numba  # noqa: F401


def _read_only(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _as_float_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        a = np.array(value, dtype=np.float64, order="C", copy=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of real numbers; got {value!r}") from exc
    if a.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values; all entries must be finite")
    return a


def _check_covariance(a: np.ndarray, name: str) -> np.ndarray:
    """Symmetric positive semi-definite within rounding; returns the exact symmetrisation."""
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    asym = float(np.max(np.abs(a - a.T))) if a.size else 0.0
    if asym > 1e-10 * max(scale, np.finfo(float).tiny):
        raise ValueError(
            f"{name} must be symmetric; max |{name} - {name}.T| = {asym:.3g}. "
            f"Pass (M + M.T) / 2 if the asymmetry is rounding error."
        )
    a = 0.5 * (a + a.T)
    if a.size:
        eig = np.linalg.eigvalsh(a)
        tol = 100.0 * a.shape[0] * np.finfo(float).eps * max(scale, np.finfo(float).tiny)
        if eig[0] < -tol:
            raise ValueError(
                f"{name} must be positive semi-definite; its smallest eigenvalue is {eig[0]:.3g}"
            )
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class LinearGaussianSystem:
    r"""System matrices of a linear-Gaussian state-space model.

    .. math::

        x_1 &\sim N(\mu_0, \Sigma_0), \\
        x_{t+1} &= A x_t + b + w_t, \quad w_t \sim N(0, Q), \\
        y_t &= C x_t + d + v_t, \quad v_t \sim N(0, R),

    with state dimension ``m`` and observation dimension ``p``; ``x_1`` is the state at
    the first observation (pykalman's convention). Every array is copied to a read-only
    float64 array on construction; the covariances are checked to be symmetric and
    positive semi-definite (singular ``Q``, ``R`` and ``S0`` are allowed: what must be
    positive definite is each step's innovation covariance, checked by the filter).

    Parameters
    ----------
    A : array_like, shape (m, m)
        Transition matrix.
    C : array_like, shape (p, m)
        Observation matrix.
    Q : array_like, shape (m, m)
        Transition noise covariance.
    R : array_like, shape (p, p)
        Observation noise covariance.
    mu0 : array_like, shape (m,)
        Mean of the first state.
    S0 : array_like, shape (m, m)
        Covariance of the first state.
    b : array_like, shape (m,), optional
        Transition offset; zeros by default.
    d : array_like, shape (p,), optional
        Observation offset; zeros by default.

    Raises
    ------
    ValueError
        Wrong shapes, non-finite entries, or a covariance that is not symmetric
        positive semi-definite.
    TypeError
        Entries that are not real numbers.
    """

    A: np.ndarray
    C: np.ndarray
    Q: np.ndarray
    R: np.ndarray
    mu0: np.ndarray
    S0: np.ndarray
    b: np.ndarray | None = None
    d: np.ndarray | None = None

    def __post_init__(self) -> None:
        A = np.asarray(self.A)
        C = np.asarray(self.C)
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 1:
            raise ValueError(f"A must be a square (m, m) matrix with m >= 1; got shape {A.shape}")
        if C.ndim != 2 or C.shape[0] < 1:
            raise ValueError(f"C must be a (p, m) matrix with p >= 1; got shape {C.shape}")
        m, p = A.shape[0], C.shape[0]
        b = np.zeros(m) if self.b is None else self.b
        d = np.zeros(p) if self.d is None else self.d
        shapes = {
            "A": (m, m), "C": (p, m), "Q": (m, m), "R": (p, p),
            "mu0": (m,), "S0": (m, m), "b": (m,), "d": (p,),
        }
        values = {**{k: getattr(self, k) for k in shapes}, "b": b, "d": d}
        for name, shape in shapes.items():
            a = _as_float_array(values[name], name, shape)
            if name in ("Q", "R", "S0"):
                a = _check_covariance(a, name)
            object.__setattr__(self, name, _read_only(a))

    @property
    def n_dim_state(self) -> int:
        """State dimension ``m``."""
        return self.A.shape[0]

    @property
    def n_dim_obs(self) -> int:
        """Observation dimension ``p``."""
        return self.C.shape[0]


def check_observations(Y: ArrayLike, system: LinearGaussianSystem) -> np.ndarray:
    """Validate observations; NaN marks a missing entry, infinity is an error.

    Parameters
    ----------
    Y : array_like, shape (T, p)
    system : LinearGaussianSystem

    Returns
    -------
    ndarray, shape (T, p)
        C-contiguous float64; may be the caller's own array (nothing writes into it).
    """
    try:
        y = np.ascontiguousarray(Y, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError("Y must be an array of real numbers (NaN for missing entries)") from exc
    p = system.n_dim_obs
    if y.ndim != 2 or y.shape[1] != p:
        hint = " (use Y.reshape(-1, 1) for one observed variable)" if y.ndim == 1 else ""
        raise ValueError(f"Y must have shape (T, {p}); got shape {y.shape}{hint}")
    if y.shape[0] < 1:
        raise ValueError("Y must have at least one row")
    bad = np.isinf(y)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"Y contains infinite values (first at row {rows[0]}, {rows.size} rows in all); "
            "NaN marks a missing entry, infinity is not allowed"
        )
    return y


def check_lengths(lengths: ArrayLike | None, n_rows: int) -> np.ndarray:
    """Validate hmmlearn-style sequence lengths.

    Parameters
    ----------
    lengths : array_like of int, shape (n_seq,), or None
        None means a single sequence of ``n_rows`` steps.
    n_rows : int

    Returns
    -------
    ndarray of int64, shape (n_seq,)
    """
    if lengths is None:
        return np.array([n_rows], dtype=np.int64)
    raw = np.asarray(lengths)
    if raw.ndim != 1 or raw.size == 0:
        raise ValueError(f"lengths must be a non-empty 1-D sequence of ints; got shape {raw.shape}")
    if raw.dtype.kind not in "iu" and not (
        raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw))
    ):
        raise ValueError(f"lengths must be integers; got {raw.dtype} values")
    out = raw.astype(np.int64)
    if np.any(out < 1):
        raise ValueError("every entry of lengths must be at least 1")
    if int(out.sum()) != n_rows:
        raise ValueError(
            f"sum(lengths) = {int(out.sum())} does not match the number of rows of Y, {n_rows}"
        )
    return out

