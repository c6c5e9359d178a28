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

The prior is in the data's units squared. When ``reg_covar`` is not small next to a
feature's variance (more than :data:`SCALE_RATIO` of it) the prior, not the data,
shapes the covariances: every component widens by about ``reg_covar`` and components
that overlap then merge. :meth:`CovariancePrior.data_warnings` says so, once per fit,
from the initialisation sample (a :class:`~emframe.core.exceptions.DataScaleWarning`).
"""

from __future__ import annotations

import copy
import warnings
from typing import Any, TypeVar

import numpy as np

from emframe.core.exceptions import DataScaleWarning
from emframe.core.validation import check_prior_size

__all__ = ["SCALE_RATIO", "CovariancePrior", "prior_scale_warnings"]

#: ``reg_covar`` above this fraction of a feature's variance draws a DataScaleWarning.
SCALE_RATIO = 1e-2

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

    def data_warnings(self, X: Any) -> list[Warning]:
        """A :class:`~emframe.core.exceptions.DataScaleWarning` if ``reg_covar`` dominates
        a feature of ``X`` (the ``EMModel.data_warnings`` hook; see :func:`prior_scale_warnings`).

        Only for a prior attached to the data's size (``prior_size`` set, as by the
        estimators), which adds about ``reg_covar`` to the variances; ``lambda =
        reg_covar`` alone adds ``reg_covar / N_k``, which fades with the data.
        """
        if self.prior_size is None:
            return []
        return prior_scale_warnings(self.reg_covar, self._scale_columns(np.asarray(X)))

    def _scale_columns(self, X: np.ndarray) -> np.ndarray:
        """The columns of a data unit that are the observed features (all of them here)."""
        return X


def prior_scale_warnings(reg_covar: float, X: np.ndarray) -> list[Warning]:
    """A warning when ``reg_covar`` exceeds ``SCALE_RATIO`` times a feature's variance.

    Parameters
    ----------
    reg_covar : float
    X : ndarray of shape (n_samples, n_features)
        A sample of the training data; NaN entries (missing values) are left out of the
        variances. Constant features (variance 0 up to rounding) are exempt: keeping
        their covariances positive definite is what ``reg_covar`` is for.

    Returns
    -------
    list of Warning
        Empty, or one :class:`~emframe.core.exceptions.DataScaleWarning` naming the
        feature of smallest variance and the fix.
    """
    if reg_covar <= 0 or X.ndim != 2 or X.shape[0] < 2:
        return []
    X = np.asarray(X, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a column that is all NaN
        var = np.nanvar(X, axis=0)
        # constant up to rounding: a variance within the resolution of the values
        resolution = (1e3 * np.finfo(float).eps * np.nanmax(np.abs(X), axis=0)) ** 2
    var = np.where(np.isfinite(var) & (var > resolution), var, np.inf)
    small = np.flatnonzero(reg_covar > SCALE_RATIO * var)
    if not small.size:
        return []
    j = int(small[np.argmin(var[small])])
    n_more = small.size - 1
    more = ""
    if n_more:
        plural = "s" if n_more > 1 else ""
        bound = reg_covar / SCALE_RATIO
        more = f" (and {n_more} other feature{plural} of variance below {bound:g})"
    return [DataScaleWarning(
        f"reg_covar={reg_covar:g} is not small compared with the variance of feature {j}, "
        f"{var[j]:.3g}{more}: the covariance prior adds about reg_covar to every variance, "
        "so it, not the data, shapes the covariances, and components that overlap can "
        "merge (a weight going to 0). Rescale the data (for example standardise the "
        f"features) or lower reg_covar (for example to {1e-6 * var[j]:.2g}, which is to "
        "this variance what the default 1e-6 is to a variance of 1)"
    )]
