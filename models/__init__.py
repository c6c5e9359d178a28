"""Shipped models: estimators built on the emframe engine."""

from .bernoulli_mixture import BernoulliMixture
from .gaussian_mixture import GaussianMixture
from .gaussian_mixture_missing import MissingDataGaussianMixture
from .hmm import HMM
from .hmm_estimators import GMMHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from .missing_gaussian import MissingDataGaussian

__all__ = [
    "BernoulliMixture",
    "CategoricalHMM",
    "GaussianHMM",
    "GaussianMixture",
    "GMMHMM",
    "HMM",
    "MissingDataGaussian",
    "MissingDataGaussianMixture",
    "PoissonHMM",
]
