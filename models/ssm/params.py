"""Parameters and additive statistics of a linear-Gaussian state-space model."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from emframe.models.ssm.mstep import FLOOR, BlockMoments

from emframe.core.params import Params, Stats
from emframe.inference.kalman import KalmanStats, LinearGaussianSystem

__all__ = [
    "COVARIANCES", "FIELDS", "SSMParams", "SSMStats", "check_covariance", "data_floor",
    "observation_floor",
    "shapes",
]


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


#: The residual fields of each block of :class:`SSMStats`: (mean, scatter, cross moment
#: or None), its regressor moments and count, and its reference coefficients and offset.
_BLOCKS = {
    "initial": (("e_first", "ee_first", None), (None, None, "n_sequences"),
                (None, "ref_initial_state_mean")),
    "transition": (("e_trans", "ee_trans", "ex_trans"), ("x_prev", "xx_prev", "n_transitions"),
                   ("ref_transition_matrix", "ref_transition_offset")),
    "observation": (("e_obs", "ee_obs", "ex_obs"), ("x_sum", "xx_sum", "n_steps"),
                    ("ref_observation_matrix", "ref_observation_offset")),
}
_REFS = ("ref_transition_matrix", "ref_transition_offset", "ref_observation_matrix",
         "ref_observation_offset", "ref_initial_state_mean", "ref_obs")


@dataclasses.dataclass(frozen=True)
class SSMStats(Stats, KalmanStats):
    """The fields of :class:`emframe.inference.kalman.KalmanStats`, as engine statistics.

    See there for the meaning of each sum; all are additive over sequences. The
    residual moments are taken about the E-step's coefficients, held in the ``ref_*``
    fields, which are not additive: statistics about different references (online EM
    blends those of different iterations) are first moved, exactly, to the
    count-weighted mean of the references, and then added.

    Attributes
    ----------
    ref_transition_matrix, ref_transition_offset : ndarray, shape (m, m) and (m,)
        ``A`` and ``b`` of the transition residuals.
    ref_observation_matrix, ref_observation_offset : ndarray, shape (p, m) and (p,)
        ``C`` and ``d`` of the observation residuals.
    ref_initial_state_mean : ndarray, shape (m,)
        ``mu0`` of the first states' residuals.
    obs_sum : ndarray, shape (p,)
        Sum of the observed entries of each column about ``ref_obs`` (the data only,
        whatever the parameters: the scale of ``R``'s floor, see :func:`observation_floor`).
    obs_sumsq : ndarray, shape (p,)
        Sum of their squares about ``ref_obs``.
    ref_obs : ndarray, shape (p,)
        A value of each column near its entries (so their variance does not cancel
        away in ``obs_sumsq / n - (obs_sum / n)**2``); moved like the other references.
    """

    ref_transition_matrix: np.ndarray
    ref_transition_offset: np.ndarray
    ref_observation_matrix: np.ndarray
    ref_observation_offset: np.ndarray
    ref_initial_state_mean: np.ndarray
    obs_sum: np.ndarray
    obs_sumsq: np.ndarray
    ref_obs: np.ndarray

    def block(self, name: str) -> BlockMoments:
        """The moments of block ``name`` ("initial", "transition" or "observation")."""
        (e, ee, ez), (z, zz, n), (F, g) = _BLOCKS[name]
        g_ref = getattr(self, g)
        m = g_ref.shape[0]
        if z is None:  # no regressors
            return BlockMoments(getattr(self, ee), np.zeros((m, 0)), np.zeros((0, 0)),
                                getattr(self, e), np.zeros(0), float(getattr(self, n)),
                                np.zeros((m, 0)), g_ref)
        return BlockMoments(getattr(self, ee), getattr(self, ez), getattr(self, zz),
                            getattr(self, e), getattr(self, z), float(getattr(self, n)),
                            getattr(self, F), g_ref)

    def about(self, refs: dict[str, np.ndarray]) -> SSMStats:
        """The same statistics about the references ``refs`` (``ref_*`` names), exactly."""
        changes: dict[str, Any] = {}
        if "ref_obs" in refs and not np.array_equal(refs["ref_obs"], self.ref_obs):
            shift = self.ref_obs - refs["ref_obs"]
            changes.update(
                obs_sum=self.obs_sum + self.n_observed * shift,
                obs_sumsq=self.obs_sumsq + shift * (2.0 * self.obs_sum + self.n_observed * shift),
                ref_obs=refs["ref_obs"])
        for name, ((e, ee, ez), _, (F, g)) in _BLOCKS.items():
            mom = self.block(name)
            F_new = mom.F_ref if F is None else refs[F]
            moved = mom.about(F_new, refs[g])
            if moved is mom:
                continue
            changes.update({e: moved.e, ee: moved.ee, g: moved.g_ref})
            if ez is not None:
                changes.update({ez: moved.ez, F: moved.F_ref})
        return dataclasses.replace(self, **changes) if changes else self

    def _split(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in d.items() if k not in _REFS}, {k: d[k] for k in _REFS}

    def __add__(self, other: SSMStats) -> SSMStats:
        if type(other) is not type(self):
            raise TypeError(f"cannot add {type(self).__name__} and {type(other).__name__}: "
                            "statistics must come from the same model")
        a, b = self, other
        if not all(np.array_equal(getattr(a, r), getattr(b, r)) for r in _REFS):
            common = {}
            for _, (_, (_, _, n), refs) in _BLOCKS.items():
                na, nb = float(getattr(a, n)), float(getattr(b, n))
                wa = na / (na + nb) if na + nb > 0 else 0.5
                for r in refs:
                    if r is not None:
                        common[r] = wa * getattr(a, r) + (1.0 - wa) * getattr(b, r)
            na, nb = a.n_observed, b.n_observed
            with np.errstate(invalid="ignore", divide="ignore"):
                wa = np.where(na + nb > 0, na / (na + nb), 0.5)
            common["ref_obs"] = wa * a.ref_obs + (1.0 - wa) * b.ref_obs
            a, b = a.about(common), b.about(common)
        (sa, refs), (sb, _) = a._split(), b._split()
        return type(self)(**{k: sa[k] + sb[k] for k in sa}, **refs)

    def scale(self, c: float) -> SSMStats:
        moments, refs = self._split()
        return type(self)(**{k: v * c for k, v in moments.items()}, **refs)

    def allclose(self, other: Stats, rtol: float = 1e-10, atol: float = 1e-12) -> bool:
        """True when ``other``, moved to this reference, has the same moments within tolerance."""
        if type(other) is not type(self):
            return False
        mine, _ = self._split()
        theirs, _ = other.about(self._split()[1])._split()  # type: ignore[attr-defined]
        return all(np.allclose(mine[k], theirs[k], rtol=rtol, atol=atol) for k in mine)


def observation_floor(stats: SSMStats) -> np.ndarray:
    """``FLOOR`` times the observed variance of every column: ``R``'s floor, shape (p,).

    See :data:`emframe.models.ssm.mstep.FLOOR`. A variance that cancels to nothing (a
    constant column) is replaced by ``eps`` times the mean square, the level float64
    resolves, and that by 1 if it is zero too.
    """
    return _floor(stats.n_observed, stats.obs_sum, stats.obs_sumsq)


def data_floor(Y: np.ndarray) -> np.ndarray:
    """:func:`observation_floor` of the observations ``Y`` (T, p), NaN missing."""
    total, squares, _ = observed_sums(Y)
    return _floor((~np.isnan(Y)).sum(axis=0), total, squares)


def observed_sums(Y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sums of the observed entries of each column of ``Y`` (T, p) and of their squares,
    about a reference in the column (its first observed entry; 0 if none), returned third."""
    observed = ~np.isnan(Y)
    first = np.argmax(observed, axis=0)
    ref = np.where(observed.any(axis=0), Y[first, np.arange(Y.shape[1])], 0.0)
    centred = np.where(observed, Y - ref, 0.0)
    return centred.sum(axis=0), np.einsum("ij,ij->j", centred, centred), ref


def _floor(n_observed: Any, total: np.ndarray, squares: np.ndarray) -> np.ndarray:
    n = np.maximum(np.asarray(n_observed, dtype=float), 1.0)
    raw = squares / n
    var = np.maximum(raw - (total / n) ** 2, np.finfo(np.float64).eps * raw)
    return FLOOR * np.where(var > 0, var, 1.0)


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
        low = float(np.linalg.eigvalsh(0.5 * (a + a.T))[0])
        rounding = 100 * a.shape[0] * np.finfo(float).eps * scale
        why = (f"its smallest eigenvalue is {low:.3g}" if low < -rounding else
               f"it is singular to working precision (smallest eigenvalue {low:.3g}, largest "
               f"entry {scale:.3g})")
        raise ValueError(f"{name} must be positive definite; {why}") from None
    return a
