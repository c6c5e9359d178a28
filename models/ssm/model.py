"""The linear-Gaussian state-space model as an EM model: parameters, statistics, E- and M-step.

Model (``x_1`` is the state at the first observation, pykalman's convention)::

    x_1 ~ N(mu0, S0),   x_{t+1} = A x_t + b + w_t,  w_t ~ N(0, Q),
                        y_t     = C x_t + d + v_t,  v_t ~ N(0, R).

The E-step is :func:`emframe.inference.kalman.expected_statistics` (filter, smoother and
the conditional moments of missing coordinates), whose sums are returned as an
additive :class:`SSMStats`. The M-step is closed form (see :mod:`.mstep`). The data unit
is a :class:`~emframe.models.hmm.model.Sequences`: a batch of whole sequences, so
chunking splits between sequences and the statistics stay exactly additive.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import numpy as np
from emframe.models.hmm.model import Sequences
from emframe.models.ssm.init import initial_params
from emframe.models.ssm.mstep import covariance_update, fit_block, raise_to_floor
from emframe.models.ssm.params import (
    COVARIANCES,
    FIELDS,
    SSMParams,
    SSMStats,
    check_covariance,
    data_floor,
    observation_floor,
    observed_sums,
    shapes,
)

from emframe.core.model import EMModel
from emframe.core.validation import check_magnitude
from emframe.inference.kalman import expected_statistics, kalman_filter

__all__ = ["LinearGaussianSSMModel"]

_COV_TYPES = ("full", "diag")
#: SQUAREM's trials must keep ``R`` this factor above the M-step's floor.
_TRIAL_MARGIN = 1.0 + 1e-6
_BACKENDS = ("auto", "numpy", "numba")


class LinearGaussianSSMModel(EMModel[SSMParams, SSMStats]):
    """EM model of a linear-Gaussian state-space model.

    Parameters
    ----------
    n_dim_state : int
        State dimension ``m``.
    n_dim_obs : int
        Observation dimension ``p``.
    initial : mapping of str to array, optional
        Given initial values of some fields (validated by the caller); the others are
        derived from the data by :func:`emframe.models.ssm.init.initial_params`.
    frozen : collection of str
        Fields held fixed by the engine (used for the parameter count, the prior and
        the identifiability checks; the engine passes their values to the M-step).
    transition_covariance_type, observation_covariance_type : {"full", "diag"}
    transition_offset, observation_offset : bool
        False switches the offset off: it is zero and not a parameter.
    ridge : float
        Prior strength on the three covariances (see :mod:`.mstep`); 0 is plain ML.
    backend : {"auto", "numpy", "numba"}
        Backend of the Kalman filter and smoother.
    """

    def __init__(
        self,
        n_dim_state: int,
        n_dim_obs: int,
        *,
        initial: Mapping[str, Any] | None = None,
        frozen: Collection[str] = (),
        transition_covariance_type: str = "full",
        observation_covariance_type: str = "full",
        transition_offset: bool = True,
        observation_offset: bool = True,
        ridge: float = 0.0,
        backend: str = "auto",
    ) -> None:
        for name, value in (("transition_covariance_type", transition_covariance_type),
                            ("observation_covariance_type", observation_covariance_type)):
            if value not in _COV_TYPES:
                raise ValueError(f"{name} must be one of {_COV_TYPES}, got {value!r}")
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        self.n_dim_state = int(n_dim_state)
        self.n_dim_obs = int(n_dim_obs)
        self.initial = {k: np.asarray(v, dtype=float) for k, v in (initial or {}).items()}
        self.frozen = tuple(frozen)
        self.diag = {
            "transition_covariance": transition_covariance_type == "diag",
            "observation_covariance": observation_covariance_type == "diag",
            "initial_state_covariance": False,
        }
        self.offsets = {"transition_offset": bool(transition_offset),
                        "observation_offset": bool(observation_offset)}
        self.ridge = float(ridge)
        self.backend = backend
        # R's floor: a function of the data only, so the same at every M-step of a fit;
        # kept for SQUAREM's trials (see complete_params)
        self._r_floor: np.ndarray | None = None

    # -- fields that are not free ----------------------------------------------------------
    def _disabled(self) -> dict[str, np.ndarray]:
        """Offsets switched off: held at zero, not parameters."""
        m, p = self.n_dim_state, self.n_dim_obs
        size = {"transition_offset": m, "observation_offset": p}
        return {k: np.zeros(size[k]) for k, on in self.offsets.items() if not on}

    def free_fields(self) -> tuple[str, ...]:
        """Fields EM estimates: neither frozen nor switched off."""
        off = self._disabled()
        return tuple(f for f in FIELDS if f not in self.frozen and f not in off)

    # -- the EM contract ------------------------------------------------------------------
    def n_samples(self, X: Sequences) -> int:
        return X.n_samples

    def initialize(self, X: Sequences, rng: np.random.Generator) -> SSMParams:
        check_state_size(self.n_dim_state, int(np.max(X.lengths)))
        given = {**self._disabled(), **self.initial}
        params = initial_params(check_magnitude(X.X, "Y"), X.lengths, self.n_dim_state, given,
                                rng)
        self.check_params(params)
        return self.inside_floor(params, X.X)

    def given_params(self) -> SSMParams | None:
        """The start made of the given values when every field is given (checked), else None."""
        given = {**self._disabled(), **self.initial}
        if not all(f in given for f in FIELDS):
            return None
        params = SSMParams(**{f: given[f] for f in FIELDS})
        self.check_params(params)
        return params

    def warm_params(self, params: SSMParams) -> SSMParams:
        """The previous fit's ``params`` as the start of a warm fit, or ``ValueError``
        saying which setting changed since (the state dimension, a covariance type, an
        offset switched off)."""
        try:
            self.check_params(params)
        except ValueError as exc:
            raise ValueError(
                f"warm_start=True continues the previous fit, but its parameters do not "
                f"fit the current settings ({exc}); restore the settings of that fit, or "
                "set warm_start=False to fit afresh"
            ) from None
        return params

    def inside_floor(self, params: SSMParams, Y: np.ndarray) -> SSMParams:
        """``params`` with a free ``R`` raised to the M-step's floor for the data ``Y``.

        EM is monotone from inside the set the M-step maximises over (``R`` at least
        ``mstep.FLOOR`` times the observed variances), so a start below it is raised
        to it first.
        """
        name = "observation_covariance"
        if name in self.frozen:
            return params
        R = raise_to_floor(params.observation_covariance, data_floor(Y), self.diag[name])
        return params.replace(observation_covariance=R)

    def e_step(self, params: SSMParams, X: Sequences) -> tuple[SSMStats, float]:
        ks = expected_statistics(X.X, params.system(), X.lengths, backend=self.backend)
        refs = {"ref_" + k: getattr(params, k) for k in (
            "transition_matrix", "transition_offset", "observation_matrix",
            "observation_offset", "initial_state_mean")}
        total, squares, ref = observed_sums(np.asarray(X.X, dtype=float))
        return SSMStats(**ks.as_dict(), **refs, obs_sum=total, obs_sumsq=squares, ref_obs=ref
                        ), float(ks.log_likelihood)

    def log_likelihood(self, params: SSMParams, X: Sequences) -> float:
        return float(kalman_filter(X.X, params.system(), X.lengths,
                                   backend=self.backend).log_likelihood)

    def m_step(self, stats: SSMStats) -> SSMParams:
        return self.constrained_m_step(stats, {})

    def constrained_m_step(self, stats: SSMStats, fixed: Mapping[str, Any]) -> SSMParams:
        """Exact maximiser of the expected complete-data log-likelihood given ``fixed``.

        Switched-off offsets are zero. Each of the three blocks (initial state,
        transition, observation) is a Gaussian regression; see :mod:`.mstep`.
        """
        fixed = {**{k: np.asarray(v, dtype=float) for k, v in fixed.items()},
                 **self._disabled()}
        self._check_identified(stats, fixed)
        out: dict[str, np.ndarray] = {}
        blocks = (
            ("initial", None, "initial_state_mean", "initial_state_covariance"),
            ("transition", "transition_matrix", "transition_offset", "transition_covariance"),
            ("observation", "observation_matrix", "observation_offset",
             "observation_covariance"),
        )
        for block, f_name, g_name, v_name in blocks:
            names = [n for n in (f_name, g_name, v_name) if n is not None]
            if all(n in fixed for n in names):
                out.update({n: fixed[n] for n in names})
                continue
            mom = stats.block(block)
            if not mom.n > 0:
                raise ValueError(
                    f"the data hold no {block} step (every sequence has length 1), so "
                    f"{', '.join(n for n in names if n not in fixed)} cannot be estimated; "
                    f"freeze {', '.join(names)} (give their values by <name>_init)"
                )
            F0 = mom.F_ref if f_name is None else fixed.get(f_name)
            F, g, scatter, terms = fit_block(mom, F0, fixed.get(g_name))
            if f_name is not None:
                out[f_name] = F
            out[g_name] = g
            if v_name in fixed:
                out[v_name] = fixed[v_name]
            else:
                floor = None
                if block == "observation":
                    floor = self._r_floor = observation_floor(stats)
                out[v_name] = covariance_update(
                    scatter, mom.n, self.diag[v_name], self.ridge, v_name,
                    floor=floor, terms=terms,
                )
        return SSMParams(**out)

    def _check_identified(self, stats: SSMStats, fixed: Mapping[str, Any]) -> None:
        self.check_unobserved_columns(np.flatnonzero(np.asarray(stats.n_observed) <= 0), fixed)

    def check_unobserved_columns(self, columns: np.ndarray, fixed: Collection[str]) -> None:
        """Raise ``ValueError`` if some ``columns`` (never observed) make fields unidentified.

        A never-observed column's rows of ``C``, ``d`` and ``R`` are not determined by the
        data, so they must all be held fixed (``d`` frozen or switched off).
        """
        held = set(fixed) | set(self._disabled())
        obs = ("observation_matrix", "observation_offset", "observation_covariance")
        if len(columns) and not all(n in held for n in obs):
            cols = ", ".join(str(int(j)) for j in columns)
            raise ValueError(
                f"column(s) {cols} of Y have no observed value, so their rows of the "
                "observation matrix, offset and covariance are not identified; drop these "
                "columns, or freeze observation_matrix, observation_offset (or switch it "
                "off) and observation_covariance"
            )

    def log_prior(self, params: SSMParams) -> float:
        if self.ridge == 0.0:
            return 0.0
        total = 0.0
        for name in COVARIANCES:
            if name in self.frozen:
                continue
            L = np.linalg.cholesky(getattr(params, name))
            Linv = np.linalg.solve(L, np.eye(L.shape[0]))  # trace(V^-1) = ||L^-1||_F^2
            total -= 0.5 * self.ridge * float(np.sum(Linv**2))
        return total

    def check_params(self, params: SSMParams) -> None:
        if not isinstance(params, SSMParams):
            raise TypeError(f"expected SSMParams, got {type(params).__name__}")
        want = shapes(self.n_dim_state, self.n_dim_obs)
        for name, shape in want.items():
            a = np.asarray(getattr(params, name))
            if a.shape != shape:
                raise ValueError(f"{name} must have shape {shape}, got {a.shape}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} has non-finite entries")
        for name in COVARIANCES:
            check_covariance(getattr(params, name), name, diag=self.diag[name])
        for name in self._disabled():
            if np.any(getattr(params, name)):
                raise ValueError(f"{name} is switched off, so it must be zero")

    def n_features_of(self, params: SSMParams) -> int | None:
        """Number of features the parameters are for (see ``EMModel.n_features_of``)."""
        return int(np.shape(params.observation_matrix)[0])

    def n_parameters(self, params: SSMParams) -> int:
        m, p = self.n_dim_state, self.n_dim_obs
        sizes = {k: int(np.prod(s)) for k, s in shapes(m, p).items()}
        dims = {"transition_covariance": m, "observation_covariance": p,
                "initial_state_covariance": m}
        for name, k in dims.items():
            sizes[name] = k if self.diag[name] else k * (k + 1) // 2
        return sum(sizes[f] for f in self.free_fields())

    # -- SQUAREM ----------------------------------------------------------------------------
    @property
    def param_constraints(self) -> dict[str, str]:  # type: ignore[override]
        """Matrices and offsets are unconstrained, covariances symmetric positive definite."""
        off = self._disabled()
        return {f: ("spd" if f in COVARIANCES else "real") for f in FIELDS if f not in off}

    def complete_params(self, like: SSMParams, values: Mapping[str, Any]) -> SSMParams:
        """``like`` with SQUAREM's extrapolated ``values``; covariances symmetrised.

        Raises
        ------
        ValueError
            If an extrapolated ``R`` is not above (just above) the M-step's floor
            (``mstep.FLOOR`` times the observed variances): the M-step maximises over
            the covariances above the floor, so from such a trial it could lower the
            likelihood; SQUAREM then takes the plain EM step instead.
        """
        vals = dict(values)
        for name in COVARIANCES:
            if name in vals:
                v = np.asarray(vals[name], dtype=float)
                vals[name] = v = 0.5 * (v + v.T)
                floor = self._r_floor
                if (name == "observation_covariance" and floor is not None
                        and raise_to_floor(v, _TRIAL_MARGIN * floor) is not v):
                    raise ValueError("extrapolated observation_covariance below the floor")
        return like.replace(**vals)


#: Bytes of one (n_steps, m, m) array of state covariances that a fit may need.
MAX_STATE_BYTES = 2**34


def check_state_size(m: int, longest: int) -> None:
    """Refuse a state so large that the smoother's covariances of the longest sequence
    (each ``m x m``) cannot be held, instead of allocating for minutes and failing."""
    need = 8.0 * longest * m * m
    if need > MAX_STATE_BYTES:
        raise ValueError(
            f"n_dim_state={m} is too large: the smoother holds a {m} x {m} covariance for "
            f"each of the {longest} steps of the longest sequence, {need / 2**30:.3g} GiB per "
            f"array (at most {MAX_STATE_BYTES / 2**30:.0f} GiB); use a much smaller "
            "n_dim_state"
        )
