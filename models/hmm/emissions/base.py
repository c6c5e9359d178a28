"""Emission components for hidden Markov models.

An emission is a small strategy object: it knows how to score every step against
every state (the T×K log-likelihood matrix the inference routines need), how to
turn state posteriors into additive weighted statistics, and how to maximise them.
It holds no data and no fitted state, so one instance can serve many fits.

Shipped: :class:`GaussianEmission` (four covariance types), :class:`CategoricalEmission`,
:class:`PoissonEmission` and :class:`GMMEmission` (a Gaussian mixture per state).
Any subclass of :class:`Emission` can be plugged into :class:`~emframe.models.hmm.HMM`.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any, ClassVar

import numpy as np

from emframe.core.params import Params, Stats
from emframe.core.validation import check_array, check_finite_params
from emframe.inference.gaussian import (
    CovarianceStrategy,
)

__all__ = ["Emission", "kmeanspp_centres"]


class Emission(ABC):
    """Base class of HMM emission components.

    A subclass implements :meth:`initialize`, :meth:`log_likelihood`,
    :meth:`statistics` and :meth:`m_step`; the rest has usable defaults.
    Statistics must be additive over steps (sums of posterior-weighted terms), so
    that the E-step on whole sequences can be chunked.

    Attributes
    ----------
    letters : mapping of str to str
        hmmlearn-style letters for ``init_params`` / ``params``, mapped to parameter
        field names (for example ``{"m": "means", "c": "covars"}``). Empty means the
        whole emission is addressed by the single letter ``"e"``.
    attributes : mapping of str to str
        Public estimator attribute of each parameter field (``{"means": "means_"}``).
    """

    letters: ClassVar[Mapping[str, str]] = {}
    attributes: ClassVar[Mapping[str, str]] = {}
    #: Constraint of each field for SQUAREM extrapolation (see :mod:`emframe.core.reparam`);
    #: derived fields are left out and recomputed by :meth:`complete_params`. ``None``:
    #: the emission is not extrapolated (SQUAREM then moves only start and transitions).
    param_constraints: Mapping[str, str] | None = None

    # -- required ---------------------------------------------------------------
    @abstractmethod
    def initialize(self, X: np.ndarray, n_components: int, rng: np.random.Generator) -> Params:
        """Initial emission parameters for ``n_components`` states, drawn with ``rng``.

        Parameters
        ----------
        X : ndarray of shape (n_samples, n_features)
            Validated training data (the concatenated sequences).
        n_components : int
        rng : numpy Generator
        """

    @abstractmethod
    def log_likelihood(self, params: Params, X: np.ndarray) -> np.ndarray:
        """Log-likelihood of every step under every state.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            ``log p(x_t | z_t = k)``; ``-inf`` where impossible, never NaN.
        """

    @abstractmethod
    def statistics(self, params: Params, X: np.ndarray, posteriors: np.ndarray) -> Stats:
        """Posterior-weighted sufficient statistics.

        Parameters
        ----------
        params : Params
            The parameters of this E-step (emissions that need none ignore them;
            others use them, e.g. as a reference point or for within-state posteriors).
        X : ndarray of shape (n_samples, n_features)
        posteriors : ndarray of shape (n_samples, n_components)
            Weights of every step in every state (rows sum to one in an E-step).

        Returns
        -------
        Stats
            Additive: the statistics of two disjoint sets of steps add up to those
            of their union.
        """

    @abstractmethod
    def m_step(self, stats: Stats) -> Params:
        """Parameters maximising the expected complete-data log-likelihood."""

    # -- optional -----------------------------------------------------------------
    def check_X(self, X: Any) -> np.ndarray:
        """Validate data and return it as a 2-D float array (never modified in place)."""
        return check_array(X)

    def constrained_m_step(self, stats: Stats, fixed: Mapping[str, Any]) -> Params:
        """M-step with the fields in ``fixed`` held at the given values.

        The default is exact when the update of each field does not depend on the
        others; emissions where it does (a covariance on its mean) override it.
        """
        params = self.m_step(stats)
        return self.complete_params(params, fixed) if fixed else params

    def complete_params(self, params: Params, values: Mapping[str, Any]) -> Params:
        """``params`` with some fields replaced and any derived fields recomputed."""
        return params.replace(**values)

    def log_prior(self, params: Params) -> float:
        """Log prior density of the emission parameters (MAP emissions override it)."""
        return 0.0

    #: Time steps the emission's data-scaled prior is attached to, or None (see
    #: ``EMModel.with_prior_size``; Gaussian emissions take it from
    #: :class:`~emframe.inference.gaussian.CovariancePrior`).
    prior_size: float | None = None

    @property
    def scales_prior_with_data(self) -> bool:
        """Whether the emission has a prior whose strength grows with the data."""
        return False

    def with_prior_size(self, prior_size: float | None) -> Emission:
        """The emission with its data-scaled prior attached to ``prior_size`` steps (a copy)."""
        return self

    def fused_e_step(
        self, params: Params, X: np.ndarray, startprob: np.ndarray, transmat: np.ndarray,
        lengths: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, Stats, np.ndarray, np.ndarray] | None:
        """The whole HMM E-step in one compiled pass, where this emission has one.

        Called only when the numba backend is in use and no state is labelled. The
        default returns None: the HMM then scores the steps with
        :meth:`log_likelihood`, runs the forward-backward and calls :meth:`statistics`.

        Parameters
        ----------
        params : Params
        X : ndarray of shape (n_samples, n_features)
        startprob : ndarray of shape (K,)
        transmat : ndarray of shape (K, K)
        lengths : ndarray of int64, shape (n_sequences,)

        Returns
        -------
        (start_counts, trans_counts, stats, seq_log_likelihood, failed) or None
            Summed over the sequences not marked in ``failed`` (bool, (n_sequences,)),
            which the HMM recomputes by the reference path.
        """
        return None

    def data_warnings(self, X: np.ndarray) -> list[Warning]:
        """Warnings about fitting to observations like ``X`` (see ``EMModel.data_warnings``)."""
        return []

    def check_params(self, params: Params, n_components: int) -> None:
        """Raise ``ValueError`` unless ``params`` are valid for ``n_components`` states."""
        check_finite_params(params)

    def n_features_of(self, params: Params) -> int | None:
        """Number of features (columns of X) the emission parameters are for, or ``None``.

        Read from their shapes; :func:`emframe.load` checks a file's ``n_features_in_``
        against it. ``None`` (the default) means the parameters do not fix it.
        """
        return None

    def n_parameters(self, params: Params, frozen: Collection[str] = ()) -> int:
        """Number of free emission parameters (fields in ``frozen`` are not free)."""
        raise NotImplementedError(f"{type(self).__name__} does not define n_parameters")

    def sample(self, params: Params, states: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One observation from state ``states[t]`` for every ``t``; shape (n, n_features)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sampling")

    def permute_states(self, params: Params, order: np.ndarray) -> Params:
        """The parameters with state ``order[k]`` renumbered ``k`` (used to match labels).

        Emissions that cannot renumber their states raise ``NotImplementedError`` (the
        default); labelled fits then start from the random parameters as they are.
        """
        raise NotImplementedError(f"{type(self).__name__} does not renumber its states")

    def to_attribute(self, field: str, value: Any) -> Any:
        """Public form of a parameter field (the identity unless overridden)."""
        return value

    def params_from_fields(self, values: Mapping[str, Any]) -> Params:
        """The emission parameters from a value of every field a letter stands for.

        For parameters set by hand, without data (``sample`` before any ``fit``, as in
        hmmlearn). The parameter class is read from :meth:`m_step`'s return annotation;
        fields no letter names (derived ones, such as a precision factor) start empty and
        :meth:`complete_params` computes them from ``values``. Emissions whose
        parameters cannot be made this way override it.
        """
        try:
            cls = typing.get_type_hints(type(self).m_step).get("return")
        except Exception:  # an annotation that does not resolve
            cls = None
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls is not Params):
            raise NotImplementedError(
                f"{type(self).__name__}.m_step has no Params return annotation, so its "
                "parameters cannot be made from attributes; set emission_params_ instead"
            )
        empty = {f.name: np.zeros(0) for f in dataclasses.fields(cls) if f.name not in values}
        return self.complete_params(cls(**empty, **values), values)

    def from_attribute(self, field: str, value: Any, n_components: int, n_features: int) -> Any:
        """Validate and convert a user-supplied attribute into the parameter field."""
        arr = np.array(value, dtype=float)
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{self.attributes.get(field, field)} contains NaN or inf")
        return arr

    # -- missing values (emissions with ``supports_missing``) --------------------------
    #: Whether ``check_X`` accepts missing entries (NaN). The shipped Gaussian, GMM,
    #: Poisson and categorical emissions do; their log-likelihoods marginalise the
    #: missing entries and their statistics hold their conditional expectations.
    supports_missing: ClassVar[bool] = False
    #: dtype of imputed data and of completions (integers for symbols), whatever the
    #: dtype of the input: fixed, so that lazy (Dask) results can declare it up front.
    impute_dtype: ClassVar[type] = np.float64

    def missing_mask(self, X: np.ndarray) -> np.ndarray:
        """Where ``X`` (validated by :meth:`check_X`) is missing, bool (n_samples, n_features)."""
        return np.isnan(X)

    def impute(
        self, params: Params, X: np.ndarray, posteriors: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Posterior mean and variance of every entry, mixing the states by ``posteriors``.

        Parameters
        ----------
        params : Params
        X : ndarray of shape (n_samples, n_features)
            Validated data with missing entries.
        posteriors : ndarray of shape (n_samples, n_components)
            Smoothed state posteriors given all observed data.

        Returns
        -------
        imputed : ndarray of shape (n_samples, n_features)
            Observed entries copied from ``X``.
        variance : ndarray of shape (n_samples, n_features) or None
            0 where observed; None where a variance means nothing (symbols).
        """
        raise NotImplementedError(f"{type(self).__name__} does not support missing values")

    def sample_missing(
        self, params: Params, X: np.ndarray, states: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Completions of ``X``: every missing entry drawn given its step's state.

        Parameters
        ----------
        params : Params
        X : ndarray of shape (n_samples, n_features)
        states : ndarray of int, shape (n_draws, n_samples)
            One state path per draw.
        rng : numpy Generator

        Returns
        -------
        ndarray of shape (n_draws, n_samples, n_features)
            Draw ``i`` has the missing entries of step t drawn from their conditional
            given the observed entries and state ``states[i, t]``; observed entries
            equal ``X``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not support missing values")

    # -- helpers --------------------------------------------------------------------
    @property
    def field_letters(self) -> dict[str, tuple[str, ...]]:
        """Letter -> tuple of the parameter fields it stands for."""
        if self.letters:
            return {k: (v,) for k, v in self.letters.items()}
        return {"e": ("*",)}


def _check_precisions(strategy: CovarianceStrategy, pc: np.ndarray, what: str) -> None:
    """Reject covariances so small that their precisions overflow (numerically singular)."""
    with np.errstate(over="ignore", invalid="ignore"):
        ok = np.all(np.isfinite(strategy.precisions(np.asarray(pc))))
    if not ok:
        raise ValueError(f"{what} is numerically singular: its precision overflows")


def _take_states(params: Params, order: np.ndarray, fields: Collection[str]) -> Params:
    """``params`` with the per-state ``fields`` (state on the first axis) reordered."""
    return params.replace(**{f: np.asarray(getattr(params, f))[order] for f in fields})


def _check_shape(arr: np.ndarray, shape: tuple[int, ...], name: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")


def _check_stochastic_rows(p: np.ndarray, name: str, atol: float = 1e-6) -> None:
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise ValueError(f"{name} must be finite and non-negative")
    sums = p.sum(axis=-1)
    bad = np.flatnonzero(np.abs(sums - 1.0) > atol)
    if bad.size:
        raise ValueError(
            f"each row of {name} must sum to 1, but row {int(bad[0])} sums to "
            f"{float(np.ravel(sums)[bad[0]]):.6g}"
        )


def kmeanspp_centres(X: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows of ``X`` chosen by k-means++ seeding (D² sampling), shape (n, n_features).

    Spreads the initial state means over the data, so restarts differ but are sensible.
    """
    idx = [int(rng.integers(X.shape[0]))]
    d2 = np.sum((X - X[idx[0]]) ** 2, axis=1)
    for _ in range(1, n):
        total = d2.sum()
        # Fewer distinct points than states: fall back to uniform draws.
        if total > 0:
            i = int(rng.choice(X.shape[0], p=d2 / total))
        else:
            i = int(rng.integers(X.shape[0]))
        idx.append(i)
        d2 = np.minimum(d2, np.sum((X - X[i]) ** 2, axis=1))
    return X[idx].copy()


