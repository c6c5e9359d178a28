"""Hidden Markov models: the model, its estimators and the emission strategies.

- :mod:`.model`: :class:`HMMModel` (the EM model) and :class:`Sequences` (its data unit);
- :mod:`.estimator`: :class:`HMM`, hmmlearn's surface over any emission;
- :mod:`.estimators`: :class:`GaussianHMM`, :class:`CategoricalHMM`, :class:`PoissonHMM`,
  :class:`MultinomialHMM`, :class:`GMMHMM`; :mod:`.autoregressive`: :class:`AutoRegressiveHMM`;
- :mod:`.emissions`: the emission strategies, and :class:`Emission` to write your own;
- :mod:`.labels` (partially known states) and :mod:`.imputation` (missing values).
"""

from emframe.models.hmm.autoregressive import AutoRegressiveHMM
from emframe.models.hmm.emissions import Emission
from emframe.models.hmm.estimator import HMM
from emframe.models.hmm.estimators import (
    GMMHMM,
    CategoricalHMM,
    GaussianHMM,
    MultinomialHMM,
    PoissonHMM,
)
from emframe.models.hmm.model import HMMModel, HMMParams, HMMStats, Sequences

__all__ = [
    "AutoRegressiveHMM",
    "GMMHMM",
    "HMM",
    "CategoricalHMM",
    "Emission",
    "GaussianHMM",
    "HMMModel",
    "HMMParams",
    "HMMStats",
    "MultinomialHMM",
    "PoissonHMM",
    "Sequences",
]
