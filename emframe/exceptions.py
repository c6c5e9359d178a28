"""emframe's warnings and errors (public path; defined in :mod:`emframe.core.exceptions`)."""

from emframe.core.exceptions import (
    ConvergenceWarning,
    DataScaleWarning,
    MonotonicityError,
    MonotonicityWarning,
    NotFittedError,
)

__all__ = [
    "ConvergenceWarning",
    "DataScaleWarning",
    "MonotonicityError",
    "MonotonicityWarning",
    "NotFittedError",
]
