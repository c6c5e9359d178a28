"""Generic finite mixtures: the E-step, scoring and sampling shared by every mixture model.

A concrete mixture supplies the per-component log-densities and how to turn
responsibilities into statistics; this module does the rest in log space.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, Generic, TypeVar

import numpy as np

from emframe.core.estimator import EMEstimator
from emframe.core.executors import as_external, lazy_rows
from emframe.core.model import EMModel
from emframe.core.numerics import log_normalize
from emframe.core.params import Params, Stats
from emframe.core.validation import check_output_size, check_random_state, check_scalar

P = TypeVar("P", bound=Params)
S = TypeVar("S", bound=Stats)


class MixtureModel(EMModel[P, S], Generic[P, S]):
    """A finite mixture ``p(x) = sum_k w_k p_k(x)``.

    Subclasses implement :meth:`log_weighted_prob`, :meth:`stats_from_resp` and
    (for sampling) :meth:`sample_components`, plus ``initialize`` and ``m_step``.
    """

    @abstractmethod
    def log_weighted_prob(self, params: P, X: Any) -> np.ndarray:
        """``log w_k + log p_k(x_i)``, shape (n_samples, n_components)."""

    @abstractmethod
    def stats_from_resp(self, X: Any, resp: np.ndarray) -> S:
        """Statistics from responsibilities ``resp`` (n_samples, n_components).

        ``resp`` already includes any sample weights, so its rows may not sum to one.
        """

    def sample_components(self, params: P, labels: np.ndarray, rng: np.random.Generator) -> Any:
        """Draw one sample from component ``labels[i]`` for every ``i``."""
        raise NotImplementedError(f"{type(self).__name__} does not implement sampling")

    def e_step(
        self, params: P, X: Any, sample_weight: np.ndarray | None = None
    ) -> tuple[S, float]:
        log_resp, log_norm = log_normalize(self.log_weighted_prob(params, X), axis=1)
        resp = np.exp(log_resp)
        if sample_weight is None:
            return self.stats_from_resp(X, resp), float(log_norm.sum())
        resp *= sample_weight[:, None]
        return self.stats_from_resp(X, resp), float(sample_weight @ log_norm)

    def log_likelihood(self, params: P, X: Any) -> float:
        return float(self.score_samples(params, X).sum())

    def score_samples(self, params: P, X: Any) -> np.ndarray:
        """Log-density of each sample, shape (n_samples,)."""
        return log_normalize(self.log_weighted_prob(params, X), axis=1)[1]

    def predict_proba(self, params: P, X: Any) -> np.ndarray:
        """Posterior component probabilities, shape (n_samples, n_components).

        Models whose log-densities can all overflow to ``-inf`` far from the data
        override it with a defined limit (see ``GaussianMixtureModel``).
        """
        return np.exp(log_normalize(self.log_weighted_prob(params, X), axis=1)[0])

    def predict(self, params: P, X: Any) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,)."""
        return np.argmax(self.log_weighted_prob(params, X), axis=1)


class MixtureEstimator(EMEstimator):
    """Estimator surface shared by mixtures: predict, predict_proba, score_samples, sample.

    On a Dask array, ``predict``, ``predict_proba`` and ``score_samples`` return
    Dask arrays, computed lazily partition by partition where the data are.
    """

    _estimator_type = "density_estimator"

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-density of each sample under the fitted mixture, shape (n_samples,)."""
        lazy = lazy_rows(self.score_samples, X)
        if lazy is not None:
            return lazy
        model = self._model_for_scoring()
        return model.score_samples(self.params_, self._validate_X(X, reset=False))

    def _check_sample_size(self, n_samples: int) -> None:
        """Refuse ``n_samples`` whose draws (float64 rows and int64 labels) cannot be held."""
        width = int(getattr(self, "n_features_in_", 1))
        check_output_size(
            n_samples, "n_samples", 8 * (width + 1),
            what=f"{n_samples} samples of {width} features and their labels",
            fix="draw fewer, or in batches (a different random_state for each)",
        )

    def _n_posterior_columns(self) -> int:
        """Columns of :meth:`predict_proba`: one per component."""
        return len(self.params_.weights)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Posterior probability of each component, shape (n_samples, n_components)."""
        if as_external(X) is not None:
            self._check_is_fitted()
            return lazy_rows(self.predict_proba, X, ((self._n_posterior_columns(),), np.float64))
        model = self._model_for_scoring()
        return model.predict_proba(self.params_, self._validate_X(X, reset=False))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable component of each sample, shape (n_samples,)."""
        lazy = lazy_rows(self.predict, X, ((), np.intp))
        if lazy is not None:
            return lazy
        model = self._model_for_scoring()
        return model.predict(self.params_, self._validate_X(X, reset=False))

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit, then label ``X`` with the fitted parameters (equals ``fit(X).predict(X)``)."""
        return self.fit(X, sample_weight=sample_weight).predict(X)

    def sample(self, n_samples: int = 1, random_state: Any = None) -> tuple[Any, np.ndarray]:
        """Draw samples from the fitted mixture.

        Parameters
        ----------
        n_samples : int
        random_state : None, int or Generator, optional
            Defaults to the estimator's ``random_state``.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        labels : ndarray of shape (n_samples,)
            Component of each sample, sorted ascending as in scikit-learn.
        """
        model = self._model_for_scoring()
        check_scalar(n_samples, "n_samples", (int, np.integer), min_value=1)
        self._check_sample_size(n_samples)
        seed = self.random_state if random_state is None else random_state
        rng = check_random_state(seed)
        weights = np.asarray(self.params_.weights)
        counts = rng.multinomial(n_samples, weights / weights.sum())
        labels = np.repeat(np.arange(len(weights)), counts)
        return model.sample_components(self.params_, labels, rng), labels
