"""Warnings and errors raised by the engine."""

from __future__ import annotations


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
