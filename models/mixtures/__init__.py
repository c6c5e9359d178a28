"""Mixture models on complete data: Gaussian and Bernoulli."""

from emframe.models.mixtures.bernoulli import BernoulliMixture, BernoulliMixtureModel
from emframe.models.mixtures.gaussian import (
    GaussianMixture,
    GaussianMixtureModel,
    GaussianMixtureParams,
)

__all__ = [
    "BernoulliMixture",
    "BernoulliMixtureModel",
    "GaussianMixture",
    "GaussianMixtureModel",
    "GaussianMixtureParams",
]
