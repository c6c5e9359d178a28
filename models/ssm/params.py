"""Parameters and additive statistics of a linear-Gaussian state-space model."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from emframe.core.params import Params, Stats
from emframe.inference.kalman import KalmanStats, LinearGaussianSystem

__all__ = ["COVARIANCES", "FIELDS", "SSMParams", "SSMStats", "check_covariance", "shapes"]


@dataclasses.dataclass(frozen=True)
class SSMParams(Params):
    """Parameters of a linear-Gaussian state-space model (state dim ``m``, observation dim ``p``).

    Attributes
    ----------
    transition_matrix : ndarray, shape (m, m)
        ``A``.
    transition_offset : ndarray, shape (m,)
        ``b``.
    transition_covariance : ndarray, shape (m, m)
        ``Q``.
    observation_matrix : ndarray, shape (p, m)
        ``C``.
    observation_offset : ndarray, shape (p,)
        ``d``.
    observation_covariance : ndarray, shape (p, p)
        ``R``.
    initial_state_mean : ndarray, shape (m,)
        ``mu0``.
    initial_state_covariance : ndarray, shape (m, m)
        ``S0``.
    """

    transition_matrix: np.ndarray
    transition_offset: np.ndarray
    transition_covariance: np.ndarray
    observation_matrix: np.ndarray
    observation_offset: np.ndarray
    observation_covariance: np.ndarray
    initial_state_mean: np.ndarray
    initial_state_covariance: np.ndarray

    def system(self) -> LinearGaussianSystem:
        """The same parameters as an :class:`~emframe.inference.kalman.LinearGaussianSystem`."""
        return LinearGaussianSystem(
            A=self.transition_matrix, C=self.observation_matrix,
            Q=self.transition_covariance, R=self.observation_covariance,
            mu0=self.initial_state_mean, S0=self.initial_state_covariance,
            b=self.transition_offset, d=self.observation_offset,
        )


#: The parameter fields, in order.
FIELDS = SSMParams.field_names()
COVARIANCES = ("transition_covariance", "observation_covariance", "initial_state_covariance")


@dataclasses.dataclass(frozen=True)
class SSMStats(Stats, KalmanStats):
    """The fields of :class:`emframe.inference.kalman.KalmanStats`, as engine statistics.

    See there for the meaning of each sum; all are additive over sequences. The
    arithmetic is the engine's (:class:`~emframe.core.params.Stats` comes first).
    """


def shapes(m: int, p: int) -> dict[str, tuple[int, ...]]:
    """Shape of every parameter field for state dim ``m`` and observation dim ``p``."""
    return {
        "transition_matrix": (m, m), "transition_offset": (m,), "transition_covariance": (m, m),
        "observation_matrix": (p, m), "observation_offset": (p,),
        "observation_covariance": (p, p), "initial_state_mean": (m,),
        "initial_state_covariance": (m, m),
    }


def check_covariance(value: Any, name: str, *, diag: bool = False) -> np.ndarray:
    """A symmetric positive-definite matrix (diagonal when ``diag``), or ``ValueError``."""
    a = np.asarray(value, dtype=float)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square matrix, got shape {a.shape}")
    scale = float(np.max(np.abs(a))) if a.size else 0.0
    if np.max(np.abs(a - a.T), initial=0.0) > 1e-10 * scale:
        raise ValueError(f"{name} must be symmetric; pass (M + M.T) / 2 if the asymmetry is "
                         "rounding error")
    if diag and np.any(a - np.diag(np.diag(a))):
        raise ValueError(f"{name} must be diagonal, since its covariance type is 'diag'")
    try:
        np.linalg.cholesky(0.5 * (a + a.T))
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite; its smallest eigenvalue is "
                         f"{float(np.linalg.eigvalsh(0.5 * (a + a.T))[0]):.3g}") from None
    return a
