"""The contract a latent-variable model implements to be fitted by the engine."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import numpy as np

from emframe.core.params import Params, Stats

P = TypeVar("P", bound=Params)
S = TypeVar("S", bound=Stats)


class EMModel(ABC, Generic[P, S]):
    """A model the EM engine can fit.

    Implement four methods; the engine supplies the fit loop, restarts,
    tolerance, history, the monotonicity guard, chunked data, callbacks and
    freezing.

    The data unit ``X`` is whatever the model's methods accept: usually an
    array of shape (n_samples, n_features), for HMMs a batch of whole sequences.
    The engine never looks inside it; it only hands it to these methods and asks
    :meth:`n_samples` how many samples it holds.
    """

    @abstractmethod
    def initialize(self, X: Any, rng: np.random.Generator) -> P:
        """Initial parameters, drawn with ``rng`` so a seed fixes them."""

    @abstractmethod
    def e_step(self, params: P, X: Any) -> tuple[S, float]:
        """Expected sufficient statistics of ``X`` under ``params``, and its log-likelihood.

        The statistics must be additive over disjoint parts of the data. Nothing
        may be mutated. A model that supports sample weights accepts them as the
        keyword argument ``sample_weight`` (shape (n_samples,)); it then returns
        weighted statistics and the weighted log-likelihood.
        """

    @abstractmethod
    def m_step(self, stats: S) -> P:
        """New parameters: a pure function of the summed statistics."""

    @abstractmethod
    def log_likelihood(self, params: P, X: Any) -> float:
        """Total observed-data log-likelihood of ``X``."""

    # Optional hooks, with defaults that suit most models.

    def n_samples(self, X: Any) -> int:
        """Number of samples in a data unit; the tolerance is per sample."""
        return len(X)

    def log_prior(self, params: P) -> float:
        """Log prior density of the parameters, up to a constant.

        MAP models override it; the engine then monitors (and guarantees the
        monotonicity of) the penalised log-likelihood ``log_likelihood + log_prior``.
        """
        return 0.0

    def evaluation_rtol(self) -> float:
        """Relative rounding error of this model's evaluated log-likelihood (0 by default).

        EM never decreases the log-likelihood in exact arithmetic; the engine's
        monotonicity guard forgives drops up to ``MONOTONE_RTOL`` times its magnitude,
        or ``evaluation_rtol()`` times the larger of its magnitude and the number of
        samples (each sample's log-density is rounded relative to its own magnitude), as
        rounding. A model that computes in a coarser precision
        than float64 (float32 arithmetic, for example) declares that precision here,
        so that its rounding is not reported as a bug while real inconsistencies still are.
        """
        return 0.0

    def data_warnings(self, X: Any) -> list[Warning]:
        """Warnings about fitting this model to data like ``X`` (none by default).

        The engine asks once per fit, with the initialisation sample (a seeded random
        sample of the training data, see :meth:`DataSource.init_sample`; not asked when
        the fit starts from given parameters), and issues every warning returned,
        prefixed with the name of what is fitted and pointing at the user's call.
        Models with the covariance prior ``reg_covar`` warn when it is not small
        compared with the data's variances (a :class:`DataScaleWarning`).
        """
        return []

    # Priors whose strength grows with the data (the covariance prior ``reg_covar``).

    #: Size of the training data (rows, or HMM time steps) the model's data-scaled prior
    #: is attached to, or None (then the prior has its unscaled strength).
    prior_size: float | None = None

    @property
    def scales_prior_with_data(self) -> bool:
        """Whether the model has a prior attached to a data size (see :meth:`with_prior_size`)."""
        return False

    def with_prior_size(self, prior_size: float | None) -> EMModel[P, S]:
        """This model with its data-scaled prior attached to ``prior_size`` samples.

        A prior whose strength is proportional to the size n of the data it is attached to
        (``reg_covar``: ``lambda = reg_covar * n / n_matrices``) keeps the same relative
        weight for any amount of data, as scikit-learn's and hmmlearn's added
        ``reg_covar`` does, while the objective stays fixed during a fit (n is fixed).
        Estimators attach the training data's size once per fit (``prior_size_``); online
        EM attaches, at each M-step, the number of samples seen so far, for which its
        running statistics stand. Models with such a prior return a copy (the model is
        not changed); the default returns ``self``.

        Parameters
        ----------
        prior_size : float or None
            A number > 0, or None for the prior's unscaled strength.
        """
        return self

    def constrained_m_step(self, stats: S, fixed: Mapping[str, Any]) -> P:
        """M-step with the parameters named in ``fixed`` held at the given values.

        The default runs :meth:`m_step` and overwrites the frozen fields, which is
        exact when the M-step factorises over those fields. Models in which one
        update depends on another (a covariance on its mean) override this to
        condition on the frozen values, so the step stays a maximisation.
        """
        params = self.m_step(stats)
        return params.replace(**fixed) if fixed else params

    def check_params(self, params: P) -> None:
        """Raise ``ValueError`` if ``params`` is not a valid parameter set.

        Used by ``emframe.testing`` and to validate user-supplied initial
        parameters. The default accepts anything with finite values.
        """
        from emframe.core.validation import check_finite_params

        check_finite_params(params)

    def n_features_of(self, params: P) -> int | None:
        """Number of features (columns of X) that ``params`` are for, or ``None``.

        Read from the parameters' shapes (for example ``means.shape[-1]``).
        :func:`emframe.load` compares it with a file's ``n_features_in_`` and refuses
        a file where they differ, so that no data are scored with parameters of
        another size. The default ``None`` (the parameters do not fix the number of
        features) skips that check.
        """
        return None

    # Parameters as a flat vector, for extrapolation (SQUAREM).

    #: Constraint of each parameter field, for :mod:`emframe.core.reparam`: "real",
    #: "positive", "simplex" (last axis, also stochastic rows), "unit" or "spd".
    #: Fields left out are not extrapolated; :meth:`complete_params` derives them.
    #: ``None`` means the model does not support acceleration.
    param_constraints: Mapping[str, str] | None = None

    def params_to_vector(self, params: P, fields: tuple[str, ...]) -> np.ndarray:
        """Unconstrained coordinates of the given fields, as one flat vector."""
        from emframe.core.reparam import to_vector

        return to_vector(params, self._constraints(), fields)

    def params_from_vector(self, vector: np.ndarray, like: P, fields: tuple[str, ...]) -> P:
        """Inverse of :meth:`params_to_vector`; raise ``ValueError`` if invalid."""
        from emframe.core.reparam import from_vector

        return self.complete_params(like, from_vector(vector, like, self._constraints(), fields))

    def complete_params(self, like: P, values: Mapping[str, Any]) -> P:
        """``like`` with the extrapolated ``values``, and derived fields recomputed.

        Models with derived fields (for example a precision Cholesky factor
        derived from a covariance) override this to recompute them.
        """
        return like.replace(**values)

    def _constraints(self) -> Mapping[str, str]:
        if self.param_constraints is None:
            raise NotImplementedError(
                f"{type(self).__name__} does not declare param_constraints, so it cannot be "
                "accelerated; set param_constraints or override params_to_vector/"
                "params_from_vector"
            )
        return self.param_constraints

    def n_parameters(self, params: P) -> int:
        """Number of free parameters, for BIC and AIC."""
        raise NotImplementedError(f"{type(self).__name__} does not define n_parameters")
