"""Warnings and errors raised by the engine."""

from __future__ import annotations

import sys


class ConvergenceWarning(UserWarning):
    """A fit stopped at ``max_iter`` before the tolerance was reached."""


class MonotonicityWarning(UserWarning):
    """The log-likelihood decreased between two EM iterations.

    Exact EM never decreases the likelihood, so a drop beyond floating-point
    noise points to a bug in the model's E-step, M-step or log-likelihood.
    """


class MonotonicityError(RuntimeError):
    """Raised instead of :class:`MonotonicityWarning` when fitting with ``strict=True``."""


class NotFittedError(ValueError, AttributeError):
    """An estimator method needing fitted parameters was called before ``fit``."""


def not_fitted_error(message: str) -> NotFittedError:
    """A :class:`NotFittedError`, that is also scikit-learn's when scikit-learn is loaded.

    Code that catches ``sklearn.exceptions.NotFittedError`` (pipelines, model
    selection) then works with emframe estimators, without emframe importing
    scikit-learn itself.
    """
    sk = sys.modules.get("sklearn.exceptions")
    if sk is None:
        return NotFittedError(message)
    both = type("NotFittedError", (NotFittedError, sk.NotFittedError), {})
    both.__module__ = __name__
    return both(message)
