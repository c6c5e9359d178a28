"""Models for data with missing values: the multivariate normal and the Gaussian mixture."""

from emframe.models.missing.gaussian import MissingDataGaussian, MissingGaussianModel
from emframe.models.missing.gaussian_mixture import (
    MissingDataGaussianMixture,
    MissingGaussianMixtureModel,
)

__all__ = [
    "MissingDataGaussian",
    "MissingDataGaussianMixture",
    "MissingGaussianMixtureModel",
    "MissingGaussianModel",
]
