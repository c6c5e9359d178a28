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


_SKLEARN_TWINS: dict[tuple[type, type], type] = {}


def _sklearn_twin(ours: type, name: str) -> type:
    """``ours``, or a subclass of both ``ours`` and scikit-learn's class ``name``.

    scikit-learn is only looked up in ``sys.modules``: code that filters or
    catches its classes has imported it already, and emframe never imports it.
    The twin is created once per scikit-learn class, so warning filters and the
    "once" registry see one stable class.
    """
    sk = sys.modules.get("sklearn.exceptions")
    theirs = getattr(sk, name, None) if sk is not None else None
    if theirs is None:
        return ours
    key = (ours, theirs)
    if key not in _SKLEARN_TWINS:
        twin = type(name, (ours, theirs), {"__doc__": ours.__doc__})
        twin.__module__ = __name__
        _SKLEARN_TWINS[key] = twin
    return _SKLEARN_TWINS[key]


def convergence_warning() -> type[ConvergenceWarning]:
    """The class to warn with when a fit does not converge.

    :class:`ConvergenceWarning`, which is also a subclass of
    ``sklearn.exceptions.ConvergenceWarning`` once scikit-learn is loaded, so
    ``warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)``
    (as in scikit-learn pipelines and model selection) silences emframe's too.
    """
    return _sklearn_twin(ConvergenceWarning, "ConvergenceWarning")


def not_fitted_error(message: str) -> NotFittedError:
    """A :class:`NotFittedError`, that is also scikit-learn's when scikit-learn is loaded.

    Code that catches ``sklearn.exceptions.NotFittedError`` (pipelines, model
    selection) then works with emframe estimators, without emframe importing
    scikit-learn itself.
    """
    return _sklearn_twin(NotFittedError, "NotFittedError")(message)
