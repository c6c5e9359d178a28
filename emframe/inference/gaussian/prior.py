"""The covariance prior ``reg_covar``, with a strength that scales with the training data.

Every covariance matrix ``Sigma_j`` of a Gaussian model has the prior
``p(Sigma_j) ∝ exp(-lambda / 2 * trace(inv(Sigma_j)))`` (see :mod:`.strategies`, whose
M-step is its MAP estimate ``(S_k + lambda I) / N_k``), with

    ``lambda = reg_covar * n / m``,

n the size of the training data the prior is attached to (its rows; time steps for
HMMs; with sample weights, the rows of positive weight, which is the sum of the
relative weights the engine uses) and m the number of covariance matrices of the
model (K; 1 when tied; K * n_mix for a mixture in each of K HMM states). The MAP
then adds ``reg_covar * n / (m N_k)`` to the variances of a component of weight
``N_k``: about ``reg_covar`` when the components have balanced weights, as
scikit-learn's and hmmlearn's ``reg_covar`` does (a component of weight ``pi_k``
gets ``reg_covar / (K pi_k)``), so the regularisation no longer fades as the data
grow. n is fixed during a fit, so the penalised objective ``loglik + sum_j log
p(Sigma_j)`` is a fixed function that EM increases exactly; integer sample weights
give the fit of repeated rows, and scaling every weight changes nothing.

A model built without a data size (``prior_size=None``, for example by hand for
:func:`~emframe.core.engine.fit_em`) uses ``lambda = reg_covar`` itself. The
estimators attach the training data's size (``prior_size_``); online EM attaches
the samples seen so far (see :mod:`emframe.core.online`).
"""

from __future__ import annotations

import copy
from typing import Any, TypeVar

from emframe.core.validation import check_prior_size

__all__ = ["CovariancePrior"]

T = TypeVar("T", bound="CovariancePrior")


class CovariancePrior:
    """Mixin: the ``reg_covar`` prior attached to ``prior_size`` samples (module docstring).

    For models and HMM emissions with the attributes ``reg_covar`` (float),
    ``strategy`` (a :class:`~.strategies.CovarianceStrategy`) and ``prior_size``
    (float or None, set with :func:`~emframe.core.validation.check_prior_size`);
    it implements ``EMModel.with_prior_size`` and ``scales_prior_with_data``.
    """

    reg_covar: float
    prior_size: float | None
    strategy: Any

    @property
    def scales_prior_with_data(self) -> bool:
        return True

    def with_prior_size(self: T, prior_size: float | None) -> T:
        """A copy whose prior is attached to ``prior_size`` samples (None: unscaled)."""
        out = copy.copy(self)
        out.prior_size = check_prior_size(prior_size)
        return out

    def prior_strength(self, n_components: int) -> float:
        """``lambda`` of each covariance matrix of ``n_components`` components."""
        if self.prior_size is None:
            return self.reg_covar
        return self.reg_covar * self.prior_size / self.strategy.n_matrices(n_components)

    def for_sample(self: T, n_rows: int) -> T:
        """The model with its prior attached to an initialisation sample of ``n_rows`` rows.

        Initial covariances then get about ``reg_covar`` too, like the M-steps of the
        fit; ``self`` when the model has no prior size.
        """
        return self if self.prior_size is None else self.with_prior_size(max(int(n_rows), 1))
