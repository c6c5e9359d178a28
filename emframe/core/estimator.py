"""scikit-learn style estimator surface over an :class:`~emframe.core.model.EMModel`."""

from __future__ import annotations

import functools
import inspect
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emframe.core.data import DataSource, check_not_iterator
from emframe.core.engine import FitResult, IterationInfo, check_freeze, fit_em
from emframe.core.exceptions import not_fitted_error
from emframe.core.executors import External, as_external, bind, refuse_external
from emframe.core.feature_names import check_feature_names
from emframe.core.fitted_attributes import WriteThroughAttributes
from emframe.core.loop import ChunkLogLikelihood
from emframe.core.model import EMModel
from emframe.core.online import OnlineState, check_kappa, online_update
from emframe.core.params import Params
from emframe.core.serialization import save
from emframe.core.validation import check_array, check_random_state, check_sample_weight


def _transactional(method: Callable[..., Any]) -> Callable[..., Any]:
    """Make a fitting method all-or-nothing: on any exception the estimator is as before.

    The attributes are restored from a shallow snapshot, which is enough because
    fitting replaces attributes and never changes a value in place (parameter
    sets and their arrays are immutable). This covers errors in the data or the
    model, a callback that raises, ``strict=True`` and KeyboardInterrupt alike:
    a refit that fails keeps the previous fit, a first fit leaves the estimator
    unfitted (no ``n_features_in_`` either).
    """
    if getattr(method, "_emframe_transactional", False):
        return method

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        saved = self.__dict__.copy()
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    wrapper._emframe_transactional = True  # type: ignore[attr-defined]
    return wrapper


#: Methods of every estimator class wrapped by :func:`_transactional`.
_TRANSACTIONAL = ("fit", "partial_fit")


class available_if:
    """Decorator: a method that exists only while ``check(estimator)`` returns None.

    Like scikit-learn's ``available_if``: otherwise reading the attribute raises
    ``AttributeError`` with the reason ``check`` returns, so ``hasattr(estimator,
    "partial_fit")`` answers whether the estimator, as configured, supports it (which
    is how scikit-learn and duck-typing callers ask). The method is made transactional
    here (see :func:`_transactional`), since it bypasses ``__init_subclass__``.
    """

    def __init__(self, check: Callable[[Any], str | None]) -> None:
        self.check = check

    def __call__(self, method: Callable[..., Any]) -> available_if:
        self.method = _transactional(method)
        functools.update_wrapper(self, self.method)  # type: ignore[arg-type]
        return self

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self.method
        why = self.check(obj)
        if why is not None:
            raise AttributeError(f"{type(obj).__name__} has no {self.name!r}: {why}")
        return self.method.__get__(obj, owner)


class EMEstimator(WriteThroughAttributes):
    """Base class for estimators fitted by the EM engine.

    Follows scikit-learn's conventions: constructor arguments are stored
    unchanged and validated in :meth:`fit`; ``fit`` returns ``self``; fitted
    attributes end in ``_``; ``get_params``/``set_params`` make estimators
    cloneable.

    Subclasses implement :meth:`_build_model` and :meth:`_fitted_attributes`,
    and expose these common constructor arguments: ``tol``, ``max_iter``,
    ``n_init``, ``random_state``, ``verbose``, ``warm_start``, ``freeze``,
    ``strict``.

    Fitted attributes set by the base: ``params_`` (the immutable parameter
    set), ``converged_``, ``n_iter_``, ``loglik_history_`` (the total, or with a
    prior the penalised, log-likelihood after each iteration, entry 0 at the
    initial parameters), ``n_e_steps_`` (passes over the data, including the
    final evaluation), ``n_features_in_`` for array data, ``feature_names_in_``
    (object array of the column names) for a DataFrame with string column names
    (later calls must pass the same columns in the same order), ``lower_bound_`` (the
    (penalised) log-likelihood per sample at the fitted parameters, as in
    scikit-learn), ``lower_bounds_`` (``loglik_history_`` per sample) and, for a
    model whose prior scales with the data (``reg_covar``), ``prior_size_``: the
    rows (HMM steps) of the training data the prior is attached to, counting rows
    of positive weight, and after ``partial_fit`` the samples seen.

    Fitting is transactional: ``fit`` and ``partial_fit`` (also when a subclass
    overrides them) change the fitted attributes only when they succeed.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in _TRANSACTIONAL:
            # also a method a mixin placed before the base brings in
            method = getattr(cls, name, None)
            if callable(method) and not getattr(method, "_emframe_transactional", False):
                setattr(cls, name, _transactional(method))

    #: Whether NaN in X marks missing values (otherwise it is an error).
    _allow_nan: bool = False
    _estimator_type: str = "density_estimator"

    # -- parameters ---------------------------------------------------------
    @classmethod
    def _get_param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments as a dict, for cloning and grid search."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> EMEstimator:
        """Set constructor arguments; returns ``self``."""
        valid = self._get_param_names()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(
                    f"Invalid parameter {key!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = []
        for name in self._get_param_names():
            default = sig.parameters[name].default
            value = getattr(self, name)
            if default is inspect.Parameter.empty or not _same(value, default):
                changed.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(changed)})"

    def __sklearn_tags__(self) -> Any:
        # Only scikit-learn calls this, so importing it here adds no dependency.
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(
            estimator_type=self._estimator_type,
            target_tags=TargetTags(required=False),
            transformer_tags=None,
            classifier_tags=None,
            regressor_tags=None,
            input_tags=InputTags(allow_nan=self._allow_nan),
        )

    # -- hooks for subclasses ------------------------------------------------
    def _build_model(self, X: Any) -> EMModel:
        """The model for these hyperparameters; validate them here."""
        raise NotImplementedError

    def _fitted_attributes(self, params: Params) -> dict[str, Any]:
        """Attributes (ending in ``_``) that expose ``params`` to users."""
        return {}

    def _rebuild_model(self) -> EMModel:
        """The model for the current hyperparameters, rebuilt without data by ``emframe.load``.

        ``params_`` and ``n_features_in_`` are already restored when it is called. The
        default calls :meth:`_build_model` on a placeholder array of zeros of shape
        (1, n_features_in_); override it when ``_build_model`` needs real data.
        """
        return self._build_model(np.zeros((1, getattr(self, "n_features_in_", 1))))

    def _validate_X(self, X: Any, *, reset: bool) -> np.ndarray:
        """Validate X; with ``reset`` record ``n_features_in_``, else check against it.

        Column names too (``feature_names_in_``): see :meth:`_check_feature_names`.
        """
        self._check_feature_names(X, reset=reset)
        X = check_array(X, allow_nan=self._allow_nan)
        self._check_n_features(X, reset=reset)
        return X

    def _continues_fit(self) -> bool:
        """True when ``fit`` will start from the fitted parameters (``warm_start``)."""
        return bool(getattr(self, "warm_start", False)) and "params_" in self.__dict__

    def _check_feature_names(self, X: Any, *, reset: bool) -> None:
        """Record (``reset``) or check ``feature_names_in_``; call it before converting X.

        See :mod:`emframe.core.feature_names`: a DataFrame's string column names are
        recorded by ``fit``, and later calls must pass the same names in the same order;
        so must a fit that continues the previous one (``warm_start``).
        """
        if reset and self._continues_fit():
            check_feature_names(self, X, reset=False)
        check_feature_names(self, X, reset=reset)

    def _check_n_features(self, X: Any, *, reset: bool) -> None:
        if reset and isinstance(X, External):
            self._check_feature_names(X, reset=True)  # a Dask array has no names: forget them
        d = X.shape[1]
        previous = getattr(self, "n_features_in_", d)
        if reset and self._continues_fit() and d != previous:
            raise ValueError(
                f"X has {d} features, but warm_start=True continues the previous fit, which "
                f"has {previous}; set warm_start=False to fit afresh"
            )
        if reset:
            self.n_features_in_ = d
        elif d != self.n_features_in_:
            raise ValueError(
                f"X has {d} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )

    # -- fitting -------------------------------------------------------------
    def _check_is_fitted(self) -> None:
        if not hasattr(self, "params_"):
            msg = (f"This {type(self).__name__} instance is not fitted yet. "
                   "Call 'fit' with appropriate arguments before using this estimator.")
            # scikit-learn users build a model by assigning means_ etc.: say how here
            by_hand = sorted(k for k in vars(self) if k.endswith("_") and not k.startswith("_"))
            if by_hand:
                inits = [n for n in self._get_param_names()
                         if n.endswith("_init") and n != "n_init"]
                how = (f"give them as initial values ({', '.join(inits)}) and fit with "
                       "max_iter=0" if inits else "fit")
                msg += (f" Attributes assigned before a fit ({', '.join(by_hand)}) are not "
                        f"used: to score with known parameters, {how}.")
            raise not_fitted_error(msg)

    def _warm_params(self) -> Params | None:
        """Parameters to continue from under ``warm_start``, or None."""
        if getattr(self, "warm_start", False) and hasattr(self, "params_"):
            return self.params_
        return None

    @_transactional
    def fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: Any = None,
        *,
        chunk_size: int | None = None,
        callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
        **engine_options: Any,
    ) -> EMEstimator:
        """Fit the model by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a list of such chunks
            Training data. With ``chunk_size`` (for example on a ``numpy.memmap``)
            or a list of chunks, the E-step runs chunk by chunk and memory stays
            bounded by one chunk; the fit equals the in-memory one.
        y : ignored
        sample_weight : float or array-like of shape (n_samples,), optional
            Non-negative per-sample weights (array data only, with or without
            ``chunk_size``); a number weights every sample equally. Only relative
            weights matter: the fit uses them divided by the mean of the positive
            ones, so priors count in units of that mean (``reg_covar``'s is attached
            to their sum, the number of rows of positive weight, so integer weights
            equal repeated rows) and ``loglik_history_`` is the log-likelihood under
            those relative weights.
        chunk_size : int, optional
            Rows per E-step chunk for array data.
        callbacks : sequence of callables, optional
            Called with an :class:`~emframe.core.engine.IterationInfo` after every
            iteration; returning ``True`` stops the run.
        **engine_options
            Passed to :func:`~emframe.core.engine.fit_em`: ``accelerate="squarem"``;
            ``method="online"`` with ``batch_size``, ``kappa``, ``shuffle`` and
            ``passes`` (default: ``max_iter`` passes over an array, one over a list
            of chunks or a stream); ``init_sample_size``. For a Dask array ``X``
            (fitted where its partitions are, see docs/scaling_out.md): ``scheduler``
            (a ``distributed.Client``, ``"threads"`` or ``"sync"``; default the
            default client if there is one, else Dask's local scheduler),
            ``split_every`` (fan-in of the sum of the statistics) and ``persist``
            (keep the validated partitions in worker memory during the fit, default
            True).

        Returns
        -------
        self
        """
        X = bind(X, engine_options)
        source = self._make_source(X, sample_weight, chunk_size)
        model = self._build_model(source.first())
        self._run(model, source, callbacks, **engine_options)
        return self

    def _make_source(self, X: Any, sample_weight: Any, chunk_size: int | None) -> DataSource:
        ext = as_external(X)
        if ext is not None:
            return self._external_source(ext, sample_weight, chunk_size)
        check_not_iterator(X, "X")
        pieces = callable(X) or isinstance(X, (list, tuple)) and _is_chunk_list(X)
        if sample_weight is not None and pieces:
            raise TypeError(
                "sample_weight needs the rows in one array: it is not supported with a list "
                "of chunks or a stream. Pass one array (a numpy.memmap for data on disk) "
                "with chunk_size, and a sample_weight with one entry per row"
            )
        chunked = chunk_size is not None or pieces
        if not chunked:
            X = self._validate_X(X, reset=True)
            w = check_sample_weight(sample_weight, X.shape[0])
            return DataSource(X, sample_weight=w)
        first = {"seen": False}

        def validate(chunk: Any) -> np.ndarray:
            out = self._validate_X(chunk, reset=not first["seen"])
            first["seen"] = True
            return out

        w = None
        if sample_weight is not None:
            w = check_sample_weight(sample_weight, np.shape(X)[0])
        return DataSource(X, sample_weight=w, chunk_size=chunk_size, transform=validate)

    def _external_source(self, ext: External, sample_weight: Any, chunk_size: int | None
                         ) -> DataSource:
        """The source of ``fit`` on data held by an executor (a Dask array).

        Records ``n_features_in_`` from the array's shape; every partition is checked
        by :meth:`_validate_X` where it lives.
        """
        if chunk_size is not None:
            raise ValueError(
                f"chunk_size applies to in-process arrays; a {ext.executor.name} array is "
                "processed one partition (chunk) at a time: rechunk it instead, for example "
                "X.rechunk({0: 100_000})"
            )
        _check_2d(ext)
        self._check_n_features(ext, reset=True)
        return ext.source(sample_weight=sample_weight, transform=ValidateRows(self))

    def _run(
        self,
        model: EMModel,
        source: DataSource,
        callbacks: Sequence[Callable[[IterationInfo], Any]] | None = None,
        **engine_options: Any,
    ) -> FitResult:
        unknown = set(engine_options) - _ENGINE_OPTIONS
        if unknown:
            raise TypeError(
                f"fit() got unexpected keyword argument(s) {sorted(unknown)}; "
                f"engine options are {sorted(_ENGINE_OPTIONS)}"
            )
        model = self._attach_prior(model, source.count_rows)
        warm = self._warm_params()
        result = fit_em(
            model,
            source,
            init_params=warm,
            tol=self.tol,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.random_state,
            freeze=self.freeze,
            strict=self.strict,
            verbose=self.verbose,
            callbacks=callbacks,
            name=type(self).__name__,
            **engine_options,
        )
        self._model = model
        self._fit_result = result
        self._online_state = None
        self.converged_ = result.converged
        self.n_iter_ = result.n_iter
        self.n_e_steps_ = result.n_e_steps
        self.loglik_history_ = result.loglik_history
        self.lower_bound_ = result.lower_bound
        self.lower_bounds_ = result.per_sample_history()
        self._set_params(result.params)
        return result

    def _attach_prior(self, model: EMModel, count: Callable[[], float]) -> EMModel:
        """``model`` with its data-scaled prior attached to the training data's size.

        Sets ``prior_size_`` to ``count()`` (the rows, or HMM steps, of the data: see
        :meth:`DataSource.count_rows`) for a model with such a prior (``reg_covar``), and
        removes it otherwise; ``count`` is not called then (a stream is not read for it).
        """
        if not model.scales_prior_with_data:
            self.__dict__.pop("prior_size_", None)
            return model
        self.prior_size_ = count()
        return model.with_prior_size(self.prior_size_)

    def _restored_model(self) -> EMModel:
        """The model of a loaded estimator: :meth:`_rebuild_model`, its prior attached as fitted.

        Files written before ``prior_size_`` existed have none: their prior keeps the
        unscaled strength they were fitted with.
        """
        return self._rebuild_model().with_prior_size(self.__dict__.get("prior_size_"))

    # -- online ----------------------------------------------------------------
    @_transactional
    def partial_fit(
        self, X: Any, y: Any = None, sample_weight: Any = None, *, kappa: float = 0.6
    ) -> EMEstimator:
        """Update the fit with one batch by online (stepwise) EM.

        The first call initialises from the batch (or continues from fitted
        parameters under ``warm_start``); each call then blends the batch's
        statistics into the running average with step size
        ``(t + 2) ** -kappa`` (Cappé & Moulines 2009) and takes an M-step.

        After each call ``loglik_history_`` holds every batch's log-likelihood
        under the parameters before its update, ``lower_bounds_`` the same per
        sample, ``lower_bound_`` the last of them, ``n_iter_`` and ``n_e_steps_``
        the number of batches, and ``converged_`` is False.

        Parameters
        ----------
        X : array-like of shape (n_batch, n_features)
        y : ignored
        sample_weight : array-like of shape (n_batch,), optional
        kappa : float in (0.5, 1]

        Returns
        -------
        self
        """
        refuse_external(X, "partial_fit", _PARTIAL_FIT_HINT)
        first = getattr(self, "_online_state", None) is None
        X = self._validate_X(X, reset=first and not hasattr(self, "params_"))
        w = check_sample_weight(sample_weight, X.shape[0])
        return self._partial_fit_unit(X, w, kappa)

    def _partial_fit_unit(self, data: Any, w: np.ndarray | None, kappa: float) -> EMEstimator:
        """Online step on one validated data unit (estimators with their own units call this)."""
        kappa = check_kappa(kappa)
        state = getattr(self, "_online_state", None)
        if state is None:
            # the first batch's prior until online_update attaches the samples seen
            built = self._build_model(data)
            model = self._attach_prior(built, lambda: built.n_samples(data))
            params = self._warm_params()
            if params is None:
                params = model.initialize(data, check_random_state(self.random_state))
            names = check_freeze(self.freeze, params)
            state = OnlineState(params, fixed={n: getattr(params, n) for n in names})
            self._model = model
            self.loglik_history_ = np.zeros(0)
            self.lower_bounds_ = np.zeros(0)
        seen = state.n_seen
        state, ll = online_update(self._model, state, data, kappa=kappa, sample_weight=w)
        nb = state.n_seen - seen
        self._online_state = state
        if self._model.scales_prior_with_data and state.n_seen > 0:
            # the prior of the last M-step: attached to the samples seen (see online_update)
            self.prior_size_ = state.n_seen
            self._model = self._model.with_prior_size(state.n_seen)
        self.loglik_history_ = np.append(self.loglik_history_, ll)
        self.lower_bound_ = ll / nb if nb > 0 else math.nan
        self.lower_bounds_ = np.append(self.lower_bounds_, self.lower_bound_)
        self.n_iter_ = len(self.loglik_history_)
        self.n_e_steps_ = self.n_iter_
        self.converged_ = False
        self._set_params(state.params)
        return self

    # -- persistence -----------------------------------------------------------
    def save(self, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
             ) -> Path:
        """Save the estimator to ``path`` in emframe's pickle-free model format.

        Load it back with ``emframe.load(path)``; the file is written atomically.
        See :mod:`emframe.core.serialization` for the format.
        """
        return save(self, path, metadata=metadata)

    # -- scoring ---------------------------------------------------------------
    def _model_for_scoring(self) -> EMModel:
        self._check_is_fitted()
        return self._model

    def _external_total(self, ext: External) -> tuple[float, float]:
        """Log-likelihood and sample count of external data, summed where they are."""
        model = self._model_for_scoring()
        _check_2d(ext)
        self._check_n_features(ext, reset=False)
        source = ext.source(transform=ValidateRows(self), one_pass=True)
        return source.map_reduce(ChunkLogLikelihood(model, self.params_))

    def _total(self, X: Any) -> tuple[float, float]:
        """Total log-likelihood of ``X`` and its number of samples."""
        ext = as_external(X)
        if ext is not None:
            return self._external_total(ext)
        model = self._model_for_scoring()
        X = self._validate_X(X, reset=False)
        return float(model.log_likelihood(self.params_, X)), float(model.n_samples(X))

    def log_likelihood(self, X: Any) -> float:
        """Total log-likelihood of ``X`` under the fitted parameters.

        On a Dask array it is computed where the partitions are (by the default
        scheduler) and only the sum comes back; likewise :meth:`score`, :meth:`bic`
        and :meth:`aic`.
        """
        return self._total(X)[0]

    def score(self, X: Any, y: Any = None) -> float:
        """Mean per-sample log-likelihood of ``X``."""
        ll, n = self._total(X)
        return ll / n

    def n_parameters(self) -> int:
        """Number of free parameters of the fitted model."""
        return int(self._model_for_scoring().n_parameters(self.params_))

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        ll, n = self._total(X)
        return -2.0 * ll + self.n_parameters() * math.log(n)

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        return -2.0 * self._total(X)[0] + 2.0 * self.n_parameters()


class ValidateRows:
    """An estimator's own input check (``_validate_X``), run on a partition where it lives."""

    def __init__(self, estimator: EMEstimator) -> None:
        self.estimator = estimator

    def __call__(self, block: Any) -> Any:
        return self.estimator._validate_X(block, reset=False)


def _check_2d(ext: External) -> None:
    if len(ext.shape) != 2:
        raise ValueError(
            f"Expected a 2-D {ext.executor.name} array for X (n_samples, n_features), got "
            f"shape {ext.shape}; reshape it, for example X.reshape(-1, 1) for one feature"
        )


_PARTIAL_FIT_HINT = (
    "it takes one in-memory batch at a time (compute a block, e.g. X.blocks[i].compute()); "
    "fit(X) runs batch EM on the whole Dask array where it is"
)


_ENGINE_OPTIONS = frozenset(
    {"accelerate", "method", "batch_size", "kappa", "shuffle", "passes", "init_sample_size"}
)


def _is_chunk_list(X: Sequence[Any]) -> bool:
    return len(X) > 0 and all(isinstance(c, np.ndarray) and c.ndim == 2 for c in X)


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b) if not isinstance(a, np.ndarray) else False
    except (TypeError, ValueError):
        return False
