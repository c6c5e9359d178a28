"""emframe: a general latent-variable EM framework on numpy and scipy.

The engine (this package) fits any model that implements
:class:`~emframe.model.EMModel`; the shipped models live in ``emframe.models``.
"""

from .data import DataSource
from .engine import FitResult, IterationInfo, fit_em
from .estimator import EMEstimator
from .exceptions import (
    ConvergenceWarning,
    MonotonicityError,
    MonotonicityWarning,
    NotFittedError,
)
from .io import load
from .mixture import MixtureEstimator, MixtureModel
from .model import EMModel
from .params import Params, Stats

__version__ = "0.1.0"

__all__ = [
    "ConvergenceWarning",
    "DataSource",
    "EMEstimator",
    "EMModel",
    "FitResult",
    "IterationInfo",
    "MixtureEstimator",
    "MixtureModel",
    "MonotonicityError",
    "MonotonicityWarning",
    "NotFittedError",
    "Params",
    "Stats",
    "fit_em",
    "load",
]
