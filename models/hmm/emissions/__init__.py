"""Emission components for hidden Markov models.

An emission is a small strategy object: it knows how to score every step against
every state (the T×K log-likelihood matrix the inference routines need), how to
turn state posteriors into additive weighted statistics, and how to maximise them.
It holds no data and no fitted state, so one instance can serve many fits.

Shipped: :class:`GaussianEmission` (four covariance types), :class:`CategoricalEmission`,
:class:`PoissonEmission`, :class:`MultinomialEmission` (category counts),
:class:`GMMEmission` (a Gaussian mixture per state) and
:class:`AutoRegressiveEmission` (a vector autoregression per state).
Any subclass of :class:`Emission` can be plugged into :class:`~emframe.models.hmm.HMM`.
"""

from emframe.models.hmm.emissions.autoregressive import (
    AutoRegressiveEmission,
    AutoRegressiveParams,
    lagged_rows,
)
from emframe.models.hmm.emissions.base import Emission, kmeanspp_centres
from emframe.models.hmm.emissions.categorical import (
    CategoricalEmission,
    CategoricalParams,
    CategoricalStats,
    check_symbols,
)
from emframe.models.hmm.emissions.gaussian import GaussianEmission, GaussianParams
from emframe.models.hmm.emissions.gmm import GMMEmission, GMMParams, GMMStats
from emframe.models.hmm.emissions.multinomial import (
    MultinomialEmission,
    MultinomialParams,
    MultinomialStats,
)
from emframe.models.hmm.emissions.poisson import PoissonEmission, PoissonParams, PoissonStats

__all__ = [
    "AutoRegressiveEmission",
    "AutoRegressiveParams",
    "CategoricalEmission",
    "CategoricalParams",
    "CategoricalStats",
    "Emission",
    "GMMEmission",
    "GMMParams",
    "GMMStats",
    "GaussianEmission",
    "GaussianParams",
    "MultinomialEmission",
    "MultinomialParams",
    "MultinomialStats",
    "PoissonEmission",
    "PoissonParams",
    "PoissonStats",
    "check_symbols",
    "kmeanspp_centres",
    "lagged_rows",
]
