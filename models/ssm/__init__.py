"""Linear-Gaussian state-space models (Kalman filter and smoother), fitted by exact EM.

- :class:`LinearGaussianSSM`: the estimator (``fit``, ``filter``, ``smooth``,
  ``forecast``, ``impute``, ``score``, ``sample``);
- :class:`LinearGaussianSSMModel`: the EM model behind it, with its parameters
  :class:`SSMParams` and statistics :class:`SSMStats`.

The inference (filter, smoother, expected statistics) is
:mod:`emframe.inference.kalman`.
"""

from emframe.models.ssm.estimator import LinearGaussianSSM
from emframe.models.ssm.model import LinearGaussianSSMModel
from emframe.models.ssm.params import SSMParams, SSMStats

__all__ = ["LinearGaussianSSM", "LinearGaussianSSMModel", "SSMParams", "SSMStats"]
