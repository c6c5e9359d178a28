"""Robust mixtures for data with outliers: the Student-t mixture.

:class:`StudentTMixture` fits mixtures of multivariate t distributions, whose
heavy tails keep outliers from bending the components. The uniform noise
component (``noise=True``, also on ``GaussianMixture``) lives in
:mod:`emframe.models.mixtures.noise`.
"""

from emframe.models.robust.estimator import StudentTMixture
from emframe.models.robust.student_t import (
    NoisyStudentTMixtureParams,
    StudentTMixtureModel,
    StudentTMixtureParams,
    StudentTStats,
)

__all__ = [
    "NoisyStudentTMixtureParams",
    "StudentTMixture",
    "StudentTMixtureModel",
    "StudentTMixtureParams",
    "StudentTStats",
]
