"""Shipped models: estimators built on the emframe engine."""

from .bernoulli_mixture import BernoulliMixture
from .gaussian_mixture import GaussianMixture
from .missing_gaussian import MissingDataGaussian

__all__ = [
    "BernoulliMixture",
    "GaussianMixture",
    "MissingDataGaussian",
]
