"""emframe: a general latent-variable EM framework on numpy and scipy.

The engine fits any model that implements :class:`~emframe.core.model.EMModel`;
the shipped models live in ``emframe.models``. The layers, bottom up:

- :mod:`emframe.core`: the model contract, parameters and statistics, the fit
  loop, data sources and the estimator base;
- :mod:`emframe.inference`: numerics the models share (Gaussian kernels and
  covariance strategies, conditional Gaussians, HMM forward-backward);
- :mod:`emframe.models`: the shipped models;
- :mod:`emframe.interfaces`: the command line, model files, plots, data sets.

:mod:`emframe.distributed` (fitting on Dask arrays) is imported here so that it
registers its executor with the core; it imports Dask only when a Dask array is
passed.

:mod:`emframe.testing` is the conformance kit for models, shipped or your own.
"""

import emframe.distributed  # noqa: F401  (registers the Dask executor; imports no Dask)
from emframe._version import __version__
from emframe.core.data import DataSource
from emframe.core.engine import FitResult, IterationInfo, fit_em
from emframe.core.estimator import EMEstimator
from emframe.core.exceptions import (
    ConvergenceWarning,
    DataScaleWarning,
    MonotonicityError,
    MonotonicityWarning,
    NotFittedError,
)
from emframe.core.mixture import MixtureEstimator, MixtureModel
from emframe.core.model import EMModel
from emframe.core.params import Params, Stats
from emframe.interfaces.io import load

__all__ = [
    "ConvergenceWarning",
    "DataScaleWarning",
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
    "__version__",
    "fit_em",
    "load",
]
