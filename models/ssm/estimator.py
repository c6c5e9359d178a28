"""The state-space estimator: pykalman's surface, scikit-learn's conventions, emframe's engine."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from emframe.models.hmm.external import lazy, sequence_source, sequence_total
from emframe.models.hmm.model import Sequences
from emframe.models.ssm.external import lazy_forecast, lazy_results
from emframe.models.ssm.model import LinearGaussianSSMModel
from emframe.models.ssm.params import FIELDS, SSMParams, check_covariance, shapes
from emframe.models.ssm.predict import check_horizon, predictive_log_densities, propagate, simulate

from emframe.core.data import DataSource
from emframe.core.engine import IterationInfo
from emframe.core.estimator import EMEstimator
from emframe.core.executors import External, as_external, bind, refuse_external
from emframe.core.validation import check_array, check_random_state, check_scalar
from emframe.inference.hmm import validate_lengths
from emframe.inference.kalman import kalman_filter, observation_moments, rts_smoother

__all__ = ["LinearGaussianSSM"]

_OFFSETS = ("transition_offset", "observation_offset")
DEFAULT_ACCELERATE = "squarem"  #: fit's default: plain EM is slow on flat likelihoods


class _Batches(DataSource):
    """Batches of whole sequences for the E-step; the start is drawn from all of them, so
    a chunked fit starts where the unchunked one does."""

    def __init__(self, chunks: list[Sequences], whole: Sequences) -> None:
        super().__init__(chunks)
        self._whole = whole

    def first(self) -> Sequences:
        return self._whole


def _observed_counts(unit: Sequences, _: Any) -> np.ndarray:
    return np.count_nonzero(~np.isnan(unit.X), axis=0)


class _Units:
    """A partition of a Dask array as the fit's data unit (the estimator's own check)."""

    def __init__(self, estimator: LinearGaussianSSM) -> None:
        self.estimator = estimator

    def __call__(self, block: np.ndarray, lengths: np.ndarray) -> Sequences:
        return Sequences(self.estimator._check_Y(block, reset=False), lengths)


class _LogLikelihood(_Units):
    def __call__(self, unit: Sequences, _: Any) -> tuple[float, int]:  # type: ignore[override]
        return self.estimator._log_likelihood(unit), unit.n_samples


class LinearGaussianSSM(EMEstimator):
    r"""Linear-Gaussian state-space model (Kalman filter and smoother) fitted by exact EM.

    .. math::

        x_1 &\sim N(\mu_0, \Sigma_0), \\
        x_{t+1} &= A x_t + b + w_t, \quad w_t \sim N(0, Q), \\
        y_t &= C x_t + d + v_t, \quad v_t \sim N(0, R),

    with ``x_1`` the state at the first observation (pykalman's convention). ``Y`` holds
    the sequences concatenated, with ``lengths`` their lengths (hmmlearn's convention);
    NaN entries are missing, in any pattern. EM maximises the likelihood of the observed
    entries exactly: the E-step includes the conditional moments of the missing ones.

    Parameters
    ----------
    n_dim_state : int, default 1
        State dimension ``m``.
    transition_matrix_init : array-like of shape (m, m), optional
        Initial ``A``. Each ``<field>_init`` gives the start of that field; fields not
        given start from the data (see :mod:`emframe.models.ssm.init`).
    transition_offset_init : array-like of shape (m,), optional
        Initial ``b``.
    transition_covariance_init : array-like of shape (m, m), optional
        Initial ``Q``, symmetric positive definite.
    observation_matrix_init : array-like of shape (p, m), optional
        Initial ``C`` (``p`` observed variables).
    observation_offset_init : array-like of shape (p,), optional
        Initial ``d``.
    observation_covariance_init : array-like of shape (p, p), optional
        Initial ``R``, symmetric positive definite.
    initial_state_mean_init : array-like of shape (m,), optional
        Initial ``mu0``.
    initial_state_covariance_init : array-like of shape (m, m), optional
        Initial ``S0``, symmetric positive definite.
    freeze : sequence of str, default ()
        Fields held at their initial values, named without ``_init`` (for example
        ``("transition_matrix", "observation_matrix")`` for a local-level model with
        ``A = C = 1``). The other fields' updates maximise given the frozen ones.
    transition_covariance_type : {"full", "diag"}, default "full"
        Structure of ``Q``.
    observation_covariance_type : {"full", "diag"}, default "full"
        Structure of ``R``.
    transition_offset : bool, default True
        False switches ``b`` off: it is zero and not a parameter.
    observation_offset : bool, default True
        False switches ``d`` off.
    ridge : float, default 0.0
        Prior ``p(V) ∝ exp(-ridge/2 · trace(V^{-1}))`` on each estimated covariance
        ``V`` (Q, R, S0): the update becomes ``(scatter + ridge·I) / n``, which stays
        positive definite. 0 is maximum likelihood, except that ``R`` is kept at least
        1e-7 times the observed variances (see docs/state_space.md: at a singular
        boundary the likelihood can be unbounded); with ``ridge > 0`` EM increases the
        penalised log-likelihood, which ``loglik_history_`` then records.
    tol : float, default 1e-8
        Stop when the log-likelihood per time step improves by less than this; tight, as
        state-space likelihoods are flat near their maximum.
    max_iter : int, default 200
    n_init : int, default 1
        Restarts from seeds drawn from ``random_state`` (the start's random part is a
        small perturbation of the observation matrix); the best is kept.
    random_state : None, int or numpy Generator
    strict : bool, default False
        Raise instead of warning if the log-likelihood ever decreases.
    verbose : int, default 0
    warm_start : bool, default False
        Continue from the previous fit's parameters.
    backend : {"auto", "numpy", "numba"}, default "auto"
        Kalman filter and smoother kernels; "auto" uses numba when it is installed.

    Attributes
    ----------
    transition_matrix_ : ndarray of shape (m, m)
    transition_offset_ : ndarray of shape (m,)
    transition_covariance_ : ndarray of shape (m, m)
    observation_matrix_ : ndarray of shape (p, m)
    observation_offset_ : ndarray of shape (p,)
    observation_covariance_ : ndarray of shape (p, p)
    initial_state_mean_ : ndarray of shape (m,)
    initial_state_covariance_ : ndarray of shape (m, m)
    params_ : SSMParams
        The same parameters as one immutable value.
    converged_ : bool
    n_iter_ : int
    loglik_history_ : ndarray of shape (n_iter + 1,)
        Log-likelihood (penalised when ``ridge > 0``) at the start and after every
        iteration.
    n_features_in_ : int
        Number of observed variables ``p``.

    Notes
    -----
    With one sequence, the maximum-likelihood ``initial_state_covariance`` is degenerate:
    the likelihood grows as it shrinks towards zero around the smoothed first state, and
    EM follows (slowly). Its update is pykalman's: the smoothed covariance of ``x_1``
    plus the outer product of its distance to ``initial_state_mean``. Freeze it (for
    example at a large diagonal, a vague prior on the first state) when there is one
    sequence; with several sequences it is the covariance of their first states.

    ``n_parameters`` counts the entries of the estimated fields (a covariance's
    distinct entries); it does not subtract the directions along which the likelihood
    is flat (an invertible change of state coordinates leaves it unchanged when ``A``,
    ``C`` and ``Q`` are all free).
    """

    _allow_nan = True

    def __init__(
        self,
        n_dim_state: int = 1,
        *,
        transition_matrix_init: Any = None,
        transition_offset_init: Any = None,
        transition_covariance_init: Any = None,
        observation_matrix_init: Any = None,
        observation_offset_init: Any = None,
        observation_covariance_init: Any = None,
        initial_state_mean_init: Any = None,
        initial_state_covariance_init: Any = None,
        freeze: Sequence[str] = (),
        transition_covariance_type: str = "full",
        observation_covariance_type: str = "full",
        transition_offset: bool = True,
        observation_offset: bool = True,
        ridge: float = 0.0,
        tol: float = 1e-8,
        max_iter: int = 200,
        n_init: int = 1,
        random_state: Any = None,
        strict: bool = False,
        verbose: int = 0,
        warm_start: bool = False,
        backend: str = "auto",
    ) -> None:
        self.n_dim_state = n_dim_state
        self.transition_matrix_init = transition_matrix_init
        self.transition_offset_init = transition_offset_init
        self.transition_covariance_init = transition_covariance_init
        self.observation_matrix_init = observation_matrix_init
        self.observation_offset_init = observation_offset_init
        self.observation_covariance_init = observation_covariance_init
        self.initial_state_mean_init = initial_state_mean_init
        self.initial_state_covariance_init = initial_state_covariance_init
        self.freeze = freeze
        self.transition_covariance_type = transition_covariance_type
        self.observation_covariance_type = observation_covariance_type
        self.transition_offset = transition_offset
        self.observation_offset = observation_offset
        self.ridge = ridge
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.random_state = random_state
        self.strict = strict
        self.verbose = verbose
        self.warm_start = warm_start
        self.backend = backend

    # -- validation ----------------------------------------------------------------------
    def _freeze_names(self) -> tuple[str, ...]:
        freeze = self.freeze
        if freeze is None:
            return ()
        if isinstance(freeze, str):
            freeze = (freeze,)
        try:
            names = tuple(freeze)
        except TypeError:
            raise TypeError(f"freeze must be a sequence of field names, got {freeze!r}") from None
        unknown = [n for n in names if n not in FIELDS]
        if unknown:
            raise ValueError(f"cannot freeze {unknown}: the fields are {list(FIELDS)}")
        return names

    def _check_hyper(self) -> None:
        check_scalar(self.n_dim_state, "n_dim_state", (int, np.integer), min_value=1)
        for name in _OFFSETS:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(
                    f"{name} must be True or False (it switches the offset on or off); give "
                    f"an initial value with {name}_init, got {getattr(self, name)!r}"
                )
        check_scalar(self.ridge, "ridge", (int, float), min_value=0.0)
        if not math.isfinite(self.ridge):
            raise ValueError(f"ridge must be finite, got {self.ridge!r}")
        self._freeze_names()

    def _given(self, p: int) -> dict[str, np.ndarray]:
        """The validated ``<field>_init`` values for observation dimension ``p``."""
        m = int(self.n_dim_state)
        want = shapes(m, p)
        diag = {"transition_covariance": self.transition_covariance_type == "diag",
                "observation_covariance": self.observation_covariance_type == "diag",
                "initial_state_covariance": False}
        out = {}
        for name in FIELDS:
            value = getattr(self, f"{name}_init")
            if value is None:
                continue
            if name in _OFFSETS and not getattr(self, name):
                raise ValueError(f"{name}_init is given but {name}=False switches that "
                                 "offset off; drop one of them")
            arr = check_array(value, f"{name}_init", ensure_2d=False, min_samples=0, copy=True)
            if arr.shape != want[name]:
                raise ValueError(f"{name}_init must have shape {want[name]} (n_dim_state={m}, "
                                 f"{p} observed variables), got shape {arr.shape}")
            if name in diag:
                check_covariance(arr, f"{name}_init", diag=diag[name])
            out[name] = arr
        return out

    def _check_Y(self, Y: Any, *, reset: bool) -> np.ndarray:
        self._check_feature_names(Y, reset=reset)
        Y = check_array(Y, "Y", allow_nan=True)
        self._check_n_features(Y, reset=reset)
        return Y

    def _new_model(self, p: int) -> LinearGaussianSSMModel:
        return LinearGaussianSSMModel(
            int(self.n_dim_state), p, initial=self._given(p), frozen=self._freeze_names(),
            transition_covariance_type=self.transition_covariance_type,
            observation_covariance_type=self.observation_covariance_type,
            transition_offset=bool(self.transition_offset),
            observation_offset=bool(self.observation_offset),
            ridge=float(self.ridge), backend=self.backend,
        )

    def _build(self, Y: Any, lengths: Any) -> tuple[LinearGaussianSSMModel, Sequences]:
        self._check_hyper()
        self._check_feature_names(Y, reset=True)  # _build serves fit and a first partial_fit
        Y = check_array(Y, "Y", allow_nan=True)
        seqs = Sequences(Y, validate_lengths(lengths, Y.shape[0]))
        model = self._new_model(Y.shape[1])
        model.check_unobserved_columns(np.flatnonzero(np.all(np.isnan(Y), axis=0)),
                                       self._freeze_names())
        return model, seqs

    def _external(self, ext: External, lengths: Any, chunk_size: Any
                  ) -> tuple[LinearGaussianSSMModel, DataSource]:
        """The model and source of ``fit`` on a Dask array (partitions of whole sequences)."""
        self._check_hyper()
        source = sequence_source(ext, lengths, _Units(self), chunk_size)
        self._check_n_features(ext, reset=True)
        model = self._new_model(int(ext.shape[1]))
        unobserved = np.flatnonzero(source.map_reduce(_observed_counts) == 0)
        model.check_unobserved_columns(unobserved, self._freeze_names())
        return model, source

    def _rebuild_model(self) -> LinearGaussianSSMModel:
        return self._new_model(int(self.n_features_in_))

    def _build_model(self, X: Any) -> LinearGaussianSSMModel:
        model = self.__dict__.get("_model_building")
        if model is None:
            raise NotImplementedError("LinearGaussianSSM builds its model in fit")
        return model

    def _warm_params(self) -> SSMParams | None:
        return self.__dict__.get("_start")

    def _start_params(self, model: LinearGaussianSSMModel, Y: Any = None) -> SSMParams | None:
        """The start when it does not depend on the seed: warm start, or all fields given
        (with ``R`` raised to the M-step's floor of the data ``Y``, when given)."""
        warm = self.warm_start and "params_" in self.__dict__
        params = model.warm_params(self.params_) if warm else model.given_params()
        return params if params is None or Y is None else model.inside_floor(params, Y)

    # -- fitting ----------------------------------------------------------------------------
    def fit(
        self,
        Y: Any,
        lengths: Any = None,
        *,
        chunk_size: int | None = None,
        callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
        **engine_options: Any,
    ) -> LinearGaussianSSM:
        """Estimate the parameters by EM.

        Parameters
        ----------
        Y : array-like of shape (n_steps, n_obs)
            The sequences, concatenated; NaN entries are missing. Not modified.
        lengths : array-like of int, shape (n_sequences,), optional
            Lengths of the sequences (summing to ``n_steps``); default one sequence.
        chunk_size : int, optional
            Run the E-step on batches of whole sequences of at most this many steps (a
            longer sequence is a batch of its own) and sum the statistics; the fit equals
            the unchunked one.
        callbacks : sequence of callables, optional
            Called with an :class:`~emframe.core.engine.IterationInfo` after every
            iteration; returning ``True`` stops.
        **engine_options
            Passed to the engine. ``accelerate="squarem"`` is the default here: still
            monotone, and several times fewer passes over the data on these flat
            likelihoods (bench/bench_ssm_squarem.py); ``accelerate=None`` gives plain EM's
            textbook iterates (pykalman's). For a Dask array ``Y`` (see
            docs/scaling_out.md): ``scheduler``, ``split_every``, ``persist``.

        Returns
        -------
        self
        """
        if engine_options.get("method", "batch") == "batch":
            engine_options.setdefault("accelerate", DEFAULT_ACCELERATE)
        if chunk_size is not None:
            check_scalar(chunk_size, "chunk_size", (int, np.integer), min_value=1)
        Y = bind(Y, engine_options)
        if isinstance(Y, External):
            model, source = self._external(Y, lengths, chunk_size)
        else:
            model, seqs = self._build(Y, lengths)
            self._check_n_features(seqs.X, reset=True)
            chunks = seqs.split(int(chunk_size)) if chunk_size is not None else [seqs]
            source = _Batches(chunks, seqs)
        start = self._start_params(model, None if isinstance(Y, External) else seqs.X)
        self._model_building, self._start = model, start
        try:
            self._run(model, source, callbacks, **engine_options)
        finally:
            del self._model_building, self._start
        return self

    def partial_fit(self, Y: Any, lengths: Any = None, *, kappa: float = 0.6
                    ) -> LinearGaussianSSM:
        """Update the fit with one batch of whole sequences by online (stepwise) EM.

        Parameters
        ----------
        Y : array-like of shape (n_steps, n_obs)
        lengths : array-like of int, optional
        kappa : float in (0.5, 1]

        Returns
        -------
        self
        """
        refuse_external(Y, "partial_fit", "it takes one in-memory batch of sequences at a time")
        if getattr(self, "_online_state", None) is not None:
            return self._partial_fit_unit(self._check_data(Y, lengths), None, kappa)
        model, seqs = self._build(Y, lengths)
        self._start = self._start_params(model)
        self._check_n_features(seqs.X, reset=True)
        self._model_building = model
        try:
            return self._partial_fit_unit(seqs, None, kappa)
        finally:
            del self._model_building, self._start

    def _fitted_attributes(self, params: SSMParams) -> dict[str, Any]:
        return {f"{f}_": np.asarray(getattr(params, f)) for f in FIELDS}

    # -- inference --------------------------------------------------------------------------
    def _check_data(self, Y: Any, lengths: Any) -> Sequences:
        self._check_is_fitted()
        Y = self._check_Y(Y, reset=False)
        return Sequences(Y, validate_lengths(lengths, Y.shape[0]))

    def _system(self) -> Any:
        return self.params_.system()

    def filter(self, Y: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Filtered states ``E[x_t | y_1..y_t]`` and their covariances.

        Returns
        -------
        means : ndarray, shape (n_steps, n_dim_state)
        covs : ndarray, shape (n_steps, n_dim_state, n_dim_state)
        """
        out = lazy_results(self, self.filter, Y, lengths, 1, 2)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        f = kalman_filter(s.X, self._system(), s.lengths, backend=self.backend)
        return f.filtered_means, f.filtered_covs

    def smooth(self, Y: Any, lengths: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed states ``E[x_t | Y]`` given every observed entry of their sequence.

        Returns
        -------
        means : ndarray, shape (n_steps, n_dim_state)
        covs : ndarray, shape (n_steps, n_dim_state, n_dim_state)
        """
        out = lazy_results(self, self.smooth, Y, lengths, 1, 2)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        r = rts_smoother(s.X, self._system(), s.lengths, backend=self.backend)
        return r.smoothed_means, r.smoothed_covs

    def forecast(self, Y: Any, n_steps: int, lengths: Any = None, *, states: bool = False
                 ) -> tuple[np.ndarray, ...]:
        """Predict the next ``n_steps`` observations after the end of each sequence.

        Parameters
        ----------
        Y : array-like of shape (n_steps_observed, n_obs)
            The observed history (NaN for missing entries).
        n_steps : int
            Horizon, >= 0.
        lengths : array-like of int, optional
            With ``lengths``, every sequence is continued and the results gain a leading
            axis of size ``n_sequences``; without, ``Y`` is one sequence and there is no
            such axis.
        states : bool, default False
            Also return the predicted states.

        Returns
        -------
        means : ndarray, shape ([n_sequences,] n_steps, n_obs)
            ``E[y_{T+k} | y_1..y_T]`` for ``k = 1..n_steps``.
        covs : ndarray, shape ([n_sequences,] n_steps, n_obs, n_obs)
        state_means : ndarray, shape ([n_sequences,] n_steps, n_dim_state)
            Only with ``states=True``; likewise ``state_covs``.
        state_covs : ndarray, shape ([n_sequences,] n_steps, n_dim_state, n_dim_state)
        """
        check_scalar(n_steps, "n_steps", (int, np.integer), min_value=0)
        out = lazy_forecast(self, Y, int(n_steps), lengths, states)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        system = check_horizon(self._system(), len(s.lengths), n_steps)
        f = kalman_filter(s.X, system, s.lengths, backend=self.backend)
        last = np.cumsum(s.lengths) - 1
        out = propagate(system, f.filtered_means[last], f.filtered_covs[last], int(n_steps))
        if lengths is None:
            out = tuple(a[0] for a in out)
        return out if states else out[:2]

    def impute(self, Y: Any, lengths: Any = None, *, return_std: bool = False) -> Any:
        """Replace NaN entries by their conditional means given every observed entry.

        Parameters
        ----------
        Y : array-like of shape (n_steps, n_obs)
            Not modified.
        lengths : array-like of int, optional
        return_std : bool, default False
            Also return the conditional standard deviation of every entry (0 if observed).

        Returns
        -------
        Y_imputed : ndarray, shape (n_steps, n_obs)
            A new array; observed entries are copied unchanged.
        std : ndarray, shape (n_steps, n_obs)
            Only with ``return_std``.
        """
        out = lazy_results(self, self.impute, Y, lengths, *([-1] * (1 + bool(return_std))),
                         return_std=return_std)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        system = self._system()
        sm = rts_smoother(s.X, system, s.lengths, backend=self.backend)
        means, covs = observation_moments(s.X, system, sm)
        if return_std:
            return means, np.sqrt(np.maximum(np.diagonal(covs, axis1=1, axis2=2), 0.0))
        return means

    # -- scores ------------------------------------------------------------------------------
    def score(self, Y: Any, lengths: Any = None) -> float:
        """Total log-likelihood of the observed entries of ``Y`` (as the HMMs, not per step)."""
        return self._total(Y, lengths)[0]

    def _total(self, Y: Any, lengths: Any) -> tuple[float, float]:
        """Log-likelihood and number of steps; summed where the partitions of Dask data are."""
        ext = as_external(Y)
        if ext is not None:
            return sequence_total(self, ext, lengths, func=_LogLikelihood(self))
        s = self._check_data(Y, lengths)
        return self._log_likelihood(s), s.n_samples

    def _log_likelihood(self, s: Sequences) -> float:
        # the estimator's backend (set_params may have changed it since fit)
        return float(kalman_filter(s.X, self._system(), s.lengths,
                                   backend=self.backend).log_likelihood)

    def log_likelihood(self, Y: Any, lengths: Any = None) -> float:
        """Total log-likelihood of ``Y``; the same as :meth:`score`."""
        return self.score(Y, lengths)

    def score_sequences(self, Y: Any, lengths: Any = None) -> np.ndarray:
        """Log-likelihood of every sequence, shape (n_sequences,)."""
        out = lazy(self, self.score_sequences, Y, lengths, None, ((), np.float64), out_rows=len)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        return kalman_filter(s.X, self._system(), s.lengths,
                             backend=self.backend).seq_log_likelihood

    def score_samples(self, Y: Any, lengths: Any = None) -> np.ndarray:
        """One-step-ahead predictive log-density of each step's observed entries.

        ``log p(y_t | y_1..y_{t-1})`` within its sequence, 0 for a step with nothing
        observed; the terms sum to :meth:`score`. Shape (n_steps,).
        """
        out = lazy_results(self, self.score_samples, Y, lengths, 0)
        if out is not None:
            return out
        s = self._check_data(Y, lengths)
        system = self._system()
        f = kalman_filter(s.X, system, s.lengths, backend=self.backend)
        return predictive_log_densities(s.X, system, f)

    def bic(self, Y: Any, lengths: Any = None) -> float:
        """Bayesian information criterion (lower is better); n = number of time steps."""
        ll, n = self._total(Y, lengths)
        return -2.0 * ll + self.n_parameters() * math.log(n)

    def aic(self, Y: Any, lengths: Any = None) -> float:
        """Akaike information criterion (lower is better)."""
        return -2.0 * self._total(Y, lengths)[0] + 2.0 * self.n_parameters()

    def sample(self, n_steps: int = 1, random_state: Any = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence from the fitted model.

        Parameters
        ----------
        n_steps : int
        random_state : None, int or Generator, optional
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        Y : ndarray, shape (n_steps, n_obs)
        states : ndarray, shape (n_steps, n_dim_state)
        """
        self._check_is_fitted()
        check_scalar(n_steps, "n_steps", (int, np.integer), min_value=1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return simulate(self._system(), int(n_steps), rng)
