"""An HMM from parameters set by hand, without any fit (hmmlearn's way to simulate).

hmmlearn users set ``startprob_``, ``transmat_`` and the emission attributes on a new
estimator and call ``sample`` at once. :func:`given_model` builds the model and the
parameter set from those attributes, validated as ``fit`` validates them, without
data and without changing the estimator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.linalg
from emframe.models.hmm.model import HMMModel, HMMParams

from emframe.core.exceptions import not_fitted_error
from emframe.core.params import Params
from emframe.core.validation import check_output_size, check_random_state, check_scalar

__all__ = ["HandSetParameters", "given_model", "stationary_distribution"]


def given_model(estimator: Any) -> tuple[HMMModel, HMMParams]:
    """The model and parameters of an unfitted HMM estimator whose attributes were all set.

    Raises
    ------
    NotFittedError
        If some parameter was never set (naming it).
    ValueError
        If a value is invalid (a shape, a row that does not sum to one, ...).
    """
    estimator._validate_hyper()
    emission = estimator._make_emission(None)
    values: dict[str, Any] = {}
    missing = []
    whole = None  # the emission parameters of a custom emission, set as emission_params_
    for fields in estimator._letters(emission).values():
        for field in fields:
            name = estimator._attribute_name(field)
            try:
                value = getattr(estimator, name)
                if name == "emission_params_" and field != "*":
                    whole = value
                    value = getattr(value, field)  # a field of a custom emission
            except AttributeError:
                missing.append(name)
                continue
            values[field] = value
    if missing:
        raise not_fitted_error(
            f"This {type(estimator).__name__} is not fitted yet, and {', '.join(missing)} "
            f"{'was' if len(missing) == 1 else 'were'} not set: fit it on data, or set every "
            "parameter as an attribute to use the model as it is (as in hmmlearn)"
        )
    k = int(estimator.n_components)
    startprob, transmat = values.pop("startprob"), values.pop("transmat")
    if "*" in values:
        emission_params = values["*"]
    elif whole is not None:
        emission_params = whole
    else:
        width = estimator._given_width(values)
        fields = {f: emission.from_attribute(f, v, k, width) for f, v in values.items()}
        emission_params = emission.params_from_fields(fields)
    initial = {"startprob": startprob, "transmat": transmat, "*": emission_params}
    model = estimator._new_model(emission, initial, set(estimator._letters(emission)))
    params = HMMParams(model.initial["startprob"], model.initial["transmat"], emission_params)
    model.check_params(params)
    return model, params


def stationary_distribution(transmat: np.ndarray) -> np.ndarray:
    """The distribution ``pi`` with ``pi @ transmat == pi``, shape (n_components,).

    The left eigenvector of the eigenvalue 1 (the largest), normalised to sum to one, as
    hmmlearn's ``get_stationary_distribution``; for a chain with several closed classes
    it is one of the stationary distributions.
    """
    P = np.asarray(transmat, dtype=float)
    values, vectors = scipy.linalg.eig(P.T)
    v = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
    pi = v / v.sum()
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


class HandSetParameters:
    """The HMM estimators' ``sample`` and ``get_stationary_distribution``, which also work
    from parameters set by hand before any fit (hmmlearn's habit).

    Mixed into :class:`~emframe.models.hmm.HMM`, whose attributes it reads.
    """

    def sample(
        self, n_samples: int = 1, random_state: Any = None, currstate: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw one sequence from the fitted model, or from parameters set by hand.

        As in hmmlearn, an estimator that was never fitted samples from the parameters
        set as attributes (``startprob_``, ``transmat_`` and the emission's), when all
        of them were set.

        Parameters
        ----------
        n_samples : int
            Number of steps.
        random_state : None, int or Generator, optional
            Defaults to the estimator's ``random_state``.
        currstate : int, optional
            The state of the first step (to continue a sequence that ended in it, as
            in hmmlearn); default drawn from ``startprob_``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        states : ndarray of int, shape (n_samples,)
        """
        model, params = self._fitted_or_given()
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        check_sequence_size(model, params, n_samples)
        currstate = self._check_currstate(currstate)
        rng = check_random_state(self.random_state if random_state is None else random_state)
        return model.sample(params, int(n_samples), rng, currstate)

    def get_stationary_distribution(self) -> np.ndarray:
        """The stationary distribution of the states: ``pi @ transmat_ == pi``, shape (K,).

        Of the fitted ``transmat_``, or of one set by hand before any fit (hmmlearn's
        method).
        """
        return stationary_distribution(self.transmat_)

    # -- parameters set by hand (hmmlearn style) ------------------------------------------
    #: The emission field whose last axis is the number of features (``means``, ...).
    _width_field: str | None = None

    def _fitted_or_given(self) -> tuple[HMMModel, Params]:
        """The fitted model and parameters, or those set as attributes before any fit."""
        if "params_" in self.__dict__:
            return self._model, self.params_
        return given_model(self)

    def _given_width(self, values: Mapping[str, Any]) -> int:
        """Number of features (columns of X) of emission attributes set by hand."""
        if self._width_field is None or self._width_field not in values:
            raise ValueError(
                f"cannot tell the number of features of {type(self).__name__} from the "
                "attributes set; fit it on data instead"
            )
        return int(np.shape(values[self._width_field])[-1])

    def _check_currstate(self, currstate: Any) -> int | None:
        if currstate is None:
            return None
        check_scalar(currstate, "currstate", (int, np.integer), min_value=0,
                     max_value=int(self.n_components) - 1)
        return int(currstate)


def check_sequence_size(model: Any, params: Params, n_samples: int) -> None:
    """Refuse ``n_samples`` whose draws (float64 rows and int64 states) cannot be held."""
    width = model.emission.n_features_of(params.emission) or 1  # type: ignore[attr-defined]
    check_output_size(
        n_samples, "n_samples", 8 * (width + 1),
        what=f"a sequence of {n_samples} steps of {width} features and its states",
        fix="draw a shorter sequence, or several (continue one with currstate=)",
    )
