"""Shipped models: estimators built on the emframe engine."""

from .bernoulli_mixture import BernoulliMixture

__all__ = [
    "BernoulliMixture",
]
