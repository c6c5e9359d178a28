"""The HMM estimator: hmmlearn's surface (``lengths``, ``startprob_``, ...) over an HMMModel."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from emframe.models.hmm._attributes import _ParamAttribute, _store_args
from emframe.models.hmm.emissions import Emission
from emframe.models.hmm.external import count_values, hmm_source, lazy, sequence_total
from emframe.models.hmm.handset import HandSetParameters
from emframe.models.hmm.imputation import MissingValuesMixin
from emframe.models.hmm.model import (
    _BACKENDS,
    _DECODERS,
    HMMModel,
    Sequences,
)

from emframe.core.data import DataSource
from emframe.core.engine import IterationInfo
from emframe.core.estimator import EMEstimator
from emframe.core.exceptions import warn
from emframe.core.executors import External, as_external, bind, refuse_external
from emframe.core.params import Params
from emframe.core.validation import check_scalar
from emframe.inference.hmm import validate_lengths

__all__ = ["HMM"]


class HMM(MissingValuesMixin, HandSetParameters, EMEstimator):
    """Hidden Markov model over a pluggable emission component, fitted by Baum-Welch.

    Follows hmmlearn's conventions: ``X`` is the concatenation of all sequences and
    ``lengths`` their lengths (``states``, where given, the known states, -1 elsewhere);
    initial parameters can be given as attributes
    (``startprob_``, ``transmat_``, emission attributes) and left out of
    ``init_params``; ``params`` lists the parameters EM updates.

    Parameters
    ----------
    emission : Emission
        The emission component (see :mod:`emframe.models.hmm.emissions`).
    n_components : int, default 1
        Number of hidden states.
    startprob_prior : float or array-like of shape (n_components,), default 1.0
        Dirichlet concentration of the start probabilities (>= 1; 1 means no prior).
    transmat_prior : float or array-like of shape (n_components, n_components), default 1.0
        Dirichlet concentration of each transition row (>= 1; 1 means no prior).
    algorithm : {"viterbi", "map"}, default "viterbi"
        Default decoder of :meth:`decode` and :meth:`predict`.
    init_params : str, optional
        Letters of the parameters initialised by ``fit``: ``"s"`` start, ``"t"``
        transitions, and the emission's letters. Parameters whose letter is absent
        are taken from the attributes set before ``fit``; ``""`` means all were
        given. Default: all letters.
    params : str, optional
        Letters of the parameters updated by EM; the others stay at their initial
        values. Default: all letters.
    tol : float, default 1e-4
        Stop when the mean per-step log-likelihood improves by less than this.
    max_iter : int, default 100
        Maximum EM iterations per restart (hmmlearn's ``n_iter``).
    n_init : int, default 1
        Number of restarts; the one with the highest (penalised) log-likelihood is kept.
    random_state : None, int or numpy Generator
    verbose : int, default 0
    warm_start : bool, default False
        Continue from the previous fit's parameters.
    strict : bool, default False
        Raise instead of warning if the log-likelihood ever decreases.
    backend : {"auto", "numpy", "numba"}, default "auto"
        Inference backend; "auto" uses the numba kernels when numba is installed.

    Attributes
    ----------
    startprob_ : ndarray of shape (n_components,)
    transmat_ : ndarray of shape (n_components, n_components)
    emission_params_ : Params
        The emission parameters (named estimators expose them as ``means_`` etc.).
    params_ : HMMParams
    converged_, n_iter_, loglik_history_, n_features_in_
    """

    _estimator_type = "density_estimator"

    startprob_ = _ParamAttribute("startprob", "Start probabilities, shape (n_components,).")
    transmat_ = _ParamAttribute(
        "transmat", "Transition matrix, shape (n_components, n_components); rows sum to one."
    )
    emission_params_ = _ParamAttribute("*", "Emission parameters (a Params instance).")

    def __init__(
        self,
        emission: Emission | None = None,
        n_components: int = 1,
        *,
        startprob_prior: Any = 1.0,
        transmat_prior: Any = 1.0,
        algorithm: str = "viterbi",
        init_params: str | None = None,
        params: str | None = None,
        tol: float = 1e-4,
        max_iter: int = 100,
        n_init: int = 1,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
        strict: bool = False,
        backend: str = "auto",
    ) -> None:
        _store_args(self, locals())

    # -- hooks for the named subclasses -------------------------------------------------
    def _make_emission(self, X: Any) -> Emission:
        """The emission component for these hyperparameters.

        ``X`` is the raw training data, or None when a loaded estimator is rebuilt.
        """
        if not isinstance(self.emission, Emission):
            raise TypeError(
                "emission must be an Emission instance (see emframe.models.hmm.emissions), "
                f"got {type(self.emission).__name__}"
            )
        return self.emission

    # -- letters ----------------------------------------------------------------------------
    def _letters(self, emission: Emission) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {"s": ("startprob",), "t": ("transmat",)}
        out.update(emission.field_letters)
        return out

    def _attribute_name(self, field: str) -> str:
        """The attribute holding ``field``; ``emission_params_`` for an emission without one."""
        for name in dir(type(self)):
            attr = getattr(type(self), name, None)
            if isinstance(attr, _ParamAttribute) and attr.field == field:
                return name
        return "emission_params_"

    def _parse_letters(self, value: str | None, name: str, emission: Emission) -> set[str]:
        letters = self._letters(emission)
        if value is None:
            return set(letters)
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a string of letters, got {value!r}")
        unknown = sorted(set(value) - set(letters))
        if unknown:
            valid = ", ".join(
                f"{c!r} ({'/'.join(self._attribute_name(f) for f in fs)})"
                for c, fs in letters.items()
            )
            raise ValueError(
                f"unknown letter(s) {unknown} in {name}={value!r}; valid letters for "
                f"{type(self).__name__} are {valid}"
            )
        return set(value)

    # -- attributes -------------------------------------------------------------------------
    def _get_param_attribute(self, field: str, name: str) -> Any:
        if "params_" in self.__dict__:
            p = self.params_
            if field in ("startprob", "transmat"):
                return getattr(p, field)
            if field == "*":
                return p.emission
            value = getattr(p.emission, field)
            model = self.__dict__.get("_model")  # absent while emframe.load rebuilds it
            return value if model is None else model.emission.to_attribute(field, value)
        given = self.__dict__.get("_given", {})
        if field in given:
            return given[field]
        raise AttributeError(
            f"{type(self).__name__} has no attribute {name!r}: fit the model, or set it "
            "before fit to give an initial value"
        )

    def _set_param_attribute(self, field: str, name: str, value: Any) -> None:
        if "params_" not in self.__dict__:
            # Validated at fit time, when n_components and n_features are known.
            frozen = np.array(value, dtype=float) if not isinstance(value, Params) else value
            if isinstance(frozen, np.ndarray):
                frozen.flags.writeable = False
            self.__dict__.setdefault("_given", {})[field] = frozen
            self.__dict__["_user_set"] = self.__dict__.get("_user_set", set()) | {field}
            return
        model: HMMModel = self._model
        p = self.params_
        if field in ("startprob", "transmat"):
            new = p.replace(**{field: np.array(value, dtype=float)})
        elif field == "*":
            new = p.replace(emission=value)
        else:
            conv = model.emission.from_attribute(
                field, value, model.n_components, self.n_features_in_
            )
            new = p.replace(emission=model.emission.complete_params(p.emission, {field: conv}))
        try:
            model.check_params(new)
        except ValueError as exc:
            raise ValueError(f"invalid value for {name}: {exc}") from None
        self.params_ = new
        self.__dict__["_user_set"] = self.__dict__.get("_user_set", set()) | {field}

    # -- validation ---------------------------------------------------------------------------
    def _validate_hyper(self) -> None:
        check_scalar(self.n_components, "n_components", (int, np.integer), min_value=1)
        if self.algorithm not in _DECODERS:
            raise ValueError(f"algorithm must be one of {_DECODERS}, got {self.algorithm!r}")
        if self.backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {self.backend!r}")

    def _validate_sequences(
        self, X: Any, lengths: Any, emission: Emission, states: Any = None
    ) -> Sequences:
        """The data unit of ``X``, ``lengths`` and the known ``states`` (validated)."""
        X = emission.check_X(X)
        return Sequences(X, validate_lengths(lengths, X.shape[0]), states)

    def _unit_n_features(self, seqs: Sequences, emission: Emission) -> int:
        """Number of features of the user's data behind a data unit."""
        return int(seqs.X.shape[1])

    def _check_width(self, seqs: Sequences, emission: Emission, *, reset: bool) -> None:
        self._check_n_features(np.empty((0, self._unit_n_features(seqs, emission))), reset=reset)

    def _check_data(self, X: Any, lengths: Any, states: Any = None) -> Sequences:
        """Validate data (and labels) for scoring against the fitted model."""
        self._check_is_fitted()
        self._check_feature_names(X, reset=False)
        seqs = self._validate_sequences(X, lengths, self._model.emission, states)
        self._check_width(seqs, self._model.emission, reset=False)
        self._model.check_labels(seqs, self.params_)
        return seqs

    def _build_model(self, X: Any) -> HMMModel:
        # The model is built from the raw data and lengths by _build (in fit/partial_fit);
        # the engine's hooks only ask for the one being built.
        model = self.__dict__.get("_model_building")
        if model is None:
            raise NotImplementedError("HMM estimators build their model in fit")
        return model

    def _is_warm(self) -> bool:
        return bool(getattr(self, "warm_start", False)) and "params_" in self.__dict__

    def _new_model(
        self, emission: Emission, initial: Mapping[str, Any], update_letters: set[str]
    ) -> HMMModel:
        letters = self._letters(emission)
        frozen = [f for c, fs in letters.items() if c not in update_letters for f in fs]
        return HMMModel(
            emission, int(self.n_components),
            startprob_prior=self.startprob_prior, transmat_prior=self.transmat_prior,
            initial=initial, frozen=frozen, backend=self.backend,
        )

    def _build(
        self, X_raw: Any, lengths: Any, states: Any = None
    ) -> tuple[HMMModel, Sequences]:
        self._validate_hyper()
        self._check_feature_names(X_raw, reset=True)  # _build serves fit and a first partial_fit
        emission = self._make_emission(X_raw)
        seqs = self._validate_sequences(X_raw, lengths, emission, states)
        k = int(self.n_components)
        init_letters = self._parse_letters(self.init_params, "init_params", emission)
        update_letters = self._parse_letters(self.params, "params", emission)
        letters = self._letters(emission)
        initial: dict[str, Any] = {}
        if self._is_warm():
            p = self.params_
            initial = {"startprob": p.startprob, "transmat": p.transmat, "*": p.emission}
            all_given = True
        else:
            # hmmlearn's rule: a parameter is initialised when its letter is in init_params
            # (overwriting a value the user set, with a warning) or when it has no value.
            user_set = self.__dict__.get("_user_set", set())
            all_given = True
            for letter, fields in letters.items():
                for field in fields:
                    name = self._attribute_name(field)
                    if letter in init_letters:
                        all_given = False
                        if field in user_set:
                            warn(
                                f"{name} was set, but init_params={self.init_params!r} contains "
                                f"{letter!r}, so fit initialises it afresh; leave {letter!r} out "
                                "of init_params to start from the value you set",
                                UserWarning,
                            )
                        continue
                    try:
                        value = getattr(self, name)
                        if name == "emission_params_" and field != "*":
                            value = getattr(value, field)  # a field of a custom emission
                    except AttributeError:
                        all_given = False  # never set: initialised as if its letter were given
                        continue
                    if field in ("startprob", "transmat", "*"):
                        initial[field] = value
                    else:
                        initial[field] = emission.from_attribute(
                            field, value, k, self._unit_n_features(seqs, emission)
                        )
        model = self._new_model(emission, initial, update_letters)
        model.check_labels(seqs)
        # All given (or warm): one run from those values, checked together; restarts
        # would all coincide.
        self._all_given = model.initialize(seqs, np.random.default_rng(0)) if all_given else None
        return model, seqs

    def _rebuild_model(self) -> HMMModel:
        """The model of a loaded estimator, rebuilt from its hyperparameters and ``params_``.

        The topology (which start/transition entries may be non-zero) is taken from the
        zeros of the fitted ``startprob_`` and ``transmat_``.
        """
        p = self.params_
        k = self.n_components
        if not (isinstance(k, (int, np.integer)) and np.shape(p.startprob) == (k,)
                and np.shape(p.transmat) == (k, k)):
            # checked before building the model, which allocates (K, K) arrays
            raise ValueError(
                f"n_components = {k!r}, but params_ has start probabilities of shape "
                f"{np.shape(p.startprob)} and transitions of shape {np.shape(p.transmat)}"
            )
        emission = self._make_emission(None)
        initial = {"startprob": p.startprob, "transmat": p.transmat, "*": p.emission}
        return self._new_model(
            emission, initial, self._parse_letters(self.params, "params", emission)
        )

    @property
    def freeze(self) -> tuple[str, ...]:
        """Engine ``freeze`` names derived from ``params`` (read-only)."""
        model = self.__dict__.get("_model_building") or self.__dict__.get("_model")
        return model.engine_freeze if model is not None else ()

    def _warm_params(self) -> Params | None:
        # Set by _build: the given (or warm-start) parameters, else None (random restarts).
        return self.__dict__.get("_all_given")

    # -- fitting --------------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        lengths: Any = None,
        *,
        states: Any = None,
        chunk_size: int | None = None,
        callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
        **engine_options: Any,
    ) -> HMM:
        """Estimate the parameters by Baum-Welch (EM).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            All sequences, concatenated.
        lengths : array-like of int, shape (n_sequences,), optional
            Length of each sequence (summing to ``n_samples``); default one sequence.
        states : array-like of int, shape (n_samples,), optional
            Known states: a state index at labelled steps, -1 where unknown. EM then
            maximises the joint likelihood of ``X`` and the known states (the
            forward-backward pass is conditioned on them). Labels that a zero of a given
            ``startprob_``/``transmat_`` makes impossible are an error.
        chunk_size : int, optional
            Run the E-step on batches of whole sequences of at most this many steps
            (a longer sequence is its own batch) and sum the statistics; the result
            equals the unchunked fit.
        callbacks : sequence of callables, optional
            Called with an :class:`~emframe.core.engine.IterationInfo` after every
            iteration; returning ``True`` stops.
        **engine_options
            Passed to the engine (:func:`~emframe.core.engine.fit_em`): ``accelerate="squarem"``
            for SQUAREM steps (still monotone); ``method="online"`` with ``kappa`` for one
            pass of online EM over the batches of ``chunk_size``. For a Dask array ``X``
            (partitioned into whole sequences, ``states`` per row of X; see
            docs/scaling_out.md): ``scheduler``, ``split_every``, ``persist``.

        Returns
        -------
        self
        """
        if chunk_size is not None:
            check_scalar(chunk_size, "chunk_size", (int, np.integer), min_value=1)
        X = bind(X, engine_options)
        if isinstance(X, External):
            model, source = hmm_source(self, X, lengths, states, chunk_size)
        else:
            model, seqs = self._build(X, lengths, states)
            self._check_width(seqs, model.emission, reset=True)
            source = DataSource(seqs.split(int(chunk_size)) if chunk_size is not None else [seqs])
        self._model_building = model
        try:
            # A fully-given start is never restarted; a warm start continues from params_.
            self._run(model, source, callbacks, **engine_options)
        finally:
            del self._model_building
        self.__dict__.pop("_given", None)
        self.__dict__.pop("_user_set", None)
        self._warn_if_underdetermined(source)
        return self

    def _warn_if_underdetermined(self, source: DataSource) -> None:
        if self.max_iter <= 0:  # max_iter=0 only sets given values
            return
        n_free = self.n_parameters()
        n_values = source.map_reduce(count_values)
        if n_free > n_values:
            warn(
                f"{type(self).__name__} has {n_free} free parameters but the data hold only "
                f"{n_values} values, so the fit is degenerate (it can match the data exactly); "
                "use fewer states or more data, or hold parameters fixed (params)",
                UserWarning,
            )

    def partial_fit(
        self, X: Any, lengths: Any = None, *, states: Any = None, kappa: float = 0.6
    ) -> HMM:
        """Update the fit with one batch of whole sequences by online (stepwise) EM.

        The first call initialises from the batch (or from given/fitted parameters, as
        ``fit`` does); every call blends the batch's statistics into a running average
        with step size ``(t + 2) ** -kappa`` and takes an M-step. Unlike ``fit``, the
        log-likelihood is not guaranteed to increase from batch to batch.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of sequences, concatenated.
        lengths : array-like of int, optional
        states : array-like of int, shape (n_samples,), optional
            Known states (-1 where unknown), as in :meth:`fit`.
        kappa : float in (0.5, 1]

        Returns
        -------
        self
        """
        refuse_external(X, "partial_fit", "it takes one in-memory batch of sequences at a time")
        if getattr(self, "_online_state", None) is not None:
            return self._partial_fit_unit(self._check_data(X, lengths, states), None, kappa)
        model, seqs = self._build(X, lengths, states)
        self._check_width(seqs, model.emission, reset=True)
        self._model_building = model
        try:
            return self._partial_fit_unit(seqs, None, kappa)
        finally:
            del self._model_building

    # -- scoring: ``states`` (-1 where unknown) conditions on the known states -----------------

    def score(self, X: Any, lengths: Any = None, *, states: Any = None) -> float:
        """Total log-likelihood of ``X`` (hmmlearn's convention, not a per-sample mean).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, shape (n_sequences,), optional
        states : array-like of int, shape (n_samples,), optional
            Known states (-1 where unknown); the score is then ``log p(X, known states)``.

        Returns
        -------
        float
        """
        return self._total(X, lengths, states)[0]

    def _total(self, X: Any, lengths: Any = None, states: Any = None) -> tuple[float, float]:
        """Total log-likelihood and number of (modelled) steps; summed where Dask data are."""
        ext = as_external(X)
        if ext is not None:
            return sequence_total(self, ext, lengths, states)
        seqs = self._check_data(X, lengths, states)
        return self._model.log_likelihood(self.params_, seqs), seqs.n_samples

    def log_likelihood(self, X: Any, lengths: Any = None, *, states: Any = None) -> float:
        """Total log-likelihood of ``X``; the same as :meth:`score`."""
        return self.score(X, lengths, states=states)

    def score_sequences(self, X: Any, lengths: Any = None, *, states: Any = None) -> np.ndarray:
        """Log-likelihood of every sequence, shape (n_sequences,) (lazy on a Dask array)."""
        out = lazy(self, self.score_sequences, X, lengths, states, ((), np.float64), out_rows=len)
        if out is not None:
            return out
        seqs = self._check_data(X, lengths, states)
        return self._model.sequence_log_likelihood(self.params_, seqs)

    def score_samples(
        self, X: Any, lengths: Any = None, *, states: Any = None
    ) -> tuple[float, np.ndarray]:
        """Total log-likelihood and state posteriors (hmmlearn's convention).

        Returns
        -------
        log_prob : float
            Total log-likelihood of ``X`` (and of the known ``states``, if given).
        posteriors : ndarray of shape (n_samples, n_components)
            ``p(z_t = k | the whole sequence holding t)``; one-hot at labelled steps.
            On a Dask array both are lazy Dask arrays (a 0-d one for ``log_prob``).
        """
        out = lazy(self, self.score_samples, X, lengths, states,
                   "total", ((self.n_components,), np.float64))
        if out is not None:
            return out
        seqs = self._check_data(X, lengths, states)
        post = self._model.posterior(self.params_, seqs)
        return float(post.log_likelihood), post.posteriors

    def predict_proba(self, X: Any, lengths: Any = None, *, states: Any = None) -> np.ndarray:
        """State posteriors, shape (n_samples, n_components)."""
        return self.score_samples(X, lengths, states=states)[1]

    def decode(
        self, X: Any, lengths: Any = None, algorithm: str | None = None, *, states: Any = None
    ) -> tuple[float, np.ndarray]:
        """Most likely state sequence.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        lengths : array-like of int, optional
        algorithm : {"viterbi", "map"}, optional
            Default: the estimator's ``algorithm``. "viterbi" finds the jointly most
            probable path; "map" takes the most probable state at every step.
        states : array-like of int, shape (n_samples,), optional
            Known states (-1 where unknown): the path goes through them.

        Returns
        -------
        log_prob : float
            For "viterbi", ``log p(path, X)``. For "map", the sum of the log posterior
            probabilities of the chosen states (hmmlearn sums the probabilities
            themselves, which is not a log-probability).
        states : ndarray of int, shape (n_samples,)
        """
        algorithm = self.algorithm if algorithm is None else algorithm
        if algorithm not in _DECODERS:
            raise ValueError(f"algorithm must be one of {_DECODERS}, got {algorithm!r}")
        out = lazy(self, self.decode, X, lengths, states, "total", ((), np.intp),
                   algorithm=algorithm)
        if out is not None:
            return out
        seqs = self._check_data(X, lengths, states)
        return self._model.decode(self.params_, seqs, algorithm)

    def predict(self, X: Any, lengths: Any = None, *, states: Any = None) -> np.ndarray:
        """Most likely states (with the estimator's ``algorithm``), shape (n_samples,)."""
        return self.decode(X, lengths, states=states)[1]

    def bic(self, X: Any, lengths: Any = None) -> float:
        """Bayesian information criterion (lower is better); n = number of steps."""
        ll, n = self._total(X, lengths)
        return -2.0 * ll + self.n_parameters() * math.log(n)

    def aic(self, X: Any, lengths: Any = None) -> float:
        """Akaike information criterion (lower is better)."""
        return -2.0 * self._total(X, lengths)[0] + 2.0 * self.n_parameters()


