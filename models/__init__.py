"""Shipped models: estimators built on the emframe engine, grouped by family.

- :mod:`emframe.models.mixtures`: :class:`GaussianMixture`, :class:`BernoulliMixture`;
- :mod:`emframe.models.hmm`: :class:`GaussianHMM`, :class:`CategoricalHMM`,
  :class:`PoissonHMM`, :class:`MultinomialHMM`, :class:`GMMHMM`,
  :class:`AutoRegressiveHMM` and the generic :class:`HMM`;
- :mod:`emframe.models.missing`: :class:`MissingDataGaussian`,
  :class:`MissingDataGaussianMixture`;
- :mod:`emframe.models.robust`: :class:`StudentTMixture`;
- :mod:`emframe.models.ssm`: :class:`LinearGaussianSSM` (Kalman filter and smoother).
"""

from emframe.models.hmm import (
    GMMHMM,
    HMM,
    AutoRegressiveHMM,
    CategoricalHMM,
    GaussianHMM,
    MultinomialHMM,
    PoissonHMM,
)
from emframe.models.missing import MissingDataGaussian, MissingDataGaussianMixture
from emframe.models.mixtures import BernoulliMixture, GaussianMixture
from emframe.models.robust import StudentTMixture
from emframe.models.ssm import LinearGaussianSSM

__all__ = [
    "AutoRegressiveHMM",
    "BernoulliMixture",
    "CategoricalHMM",
    "GMMHMM",
    "GaussianHMM",
    "GaussianMixture",
    "HMM",
    "LinearGaussianSSM",
    "MissingDataGaussian",
    "MissingDataGaussianMixture",
    "MultinomialHMM",
    "PoissonHMM",
    "StudentTMixture",
]
