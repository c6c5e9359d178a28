"""Gaussian components: covariance strategies, additive moments, the log-density kernel.

One strategy object per covariance structure ("full", "diag", "spherical",
"tied") knows the shapes, the M-step from weighted moments, the Cholesky factor
of the precision and the validation of user-given matrices; look one up with
:func:`get_covariance_strategy`. Nothing else in emframe branches on the
covariance type. The covariance prior ``reg_covar`` and how its strength scales
with the training data are in :mod:`.prior`.
"""

from emframe.inference.gaussian.kernel import GaussianKernel, gaussian_moments, label_moments
from emframe.inference.gaussian.moments import (
    NK_EPS,
    DiagMoments,
    FullMoments,
    GaussianMoments,
    TraceMoments,
    effective_counts,
)
from emframe.inference.gaussian.prior import CovariancePrior
from emframe.inference.gaussian.strategies import (
    COVARIANCE_TYPES,
    CovarianceStrategy,
    DiagCovariance,
    FullCovariance,
    SphericalCovariance,
    TiedCovariance,
    get_covariance_strategy,
)

__all__ = [
    "COVARIANCE_TYPES",
    "NK_EPS",
    "CovariancePrior",
    "CovarianceStrategy",
    "DiagCovariance",
    "DiagMoments",
    "FullCovariance",
    "FullMoments",
    "GaussianKernel",
    "GaussianMoments",
    "SphericalCovariance",
    "TiedCovariance",
    "TraceMoments",
    "effective_counts",
    "gaussian_moments",
    "label_moments",
    "get_covariance_strategy",
]
