"""Warnings and errors raised by the engine."""

from __future__ import annotations

import sys
import warnings


class ConvergenceWarning(UserWarning):
    """A fit stopped at ``max_iter`` before the tolerance was reached."""


class MonotonicityWarning(UserWarning):
    """The log-likelihood decreased between two EM iterations.

    Exact EM never decreases the likelihood, so a drop beyond floating-point
    noise points to a bug in the model's E-step, M-step or log-likelihood.
    """


class DataScaleWarning(UserWarning):
    """A regularisation constant in the data's units is not small next to the data.

    Raised for ``reg_covar`` (about the variance the covariance prior adds) when it
    is more than a hundredth of a feature's variance: the prior then shapes the fit
    (components widen and can merge). Rescale the data or lower ``reg_covar``.
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


def _ours(frame: object) -> bool:
    name = getattr(frame, "f_globals", {}).get("__name__", "")
    return name == "emframe" or name.startswith("emframe.")


def user_stacklevel() -> int:
    """The ``stacklevel`` that makes a warning issued by the caller point at the user's code.

    Counted from the function calling this one (level 1) up to the first frame outside
    emframe (the models included, installed as ``emframe.models``), so the warning's
    file and line are those of the user's call, however deep inside emframe it arose.
    """
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None and _ours(frame):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` pointing at the first frame outside emframe (see :func:`user_stacklevel`).

    Every warning of emframe's about a user's call goes through this, so it names the
    user's line rather than an internal frame (a fit loop, a wrapper, an override).
    """
    warnings.warn(message, category, stacklevel=user_stacklevel())
