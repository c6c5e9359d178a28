"""Column names of DataFrame input: recorded by ``fit``, checked by every later call.

scikit-learn's rules: ``fit`` on a DataFrame-like ``X`` (anything with a ``columns``
attribute, so pandas is never imported) whose names are all strings sets
``feature_names_in_``; ``fit`` on anything else removes it. A later call with other
names, or the same names in another order, raises ValueError (a reordered DataFrame
would otherwise be scored silently with its columns swapped); names on one side only
give a UserWarning.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

import numpy as np

from emframe.core.exceptions import warn

_IN_PARTITION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "emframe_in_partition", default=False
)


@contextlib.contextmanager
def partition_scope() -> Iterator[None]:
    """Within: no name checks (a partition of a Dask array, which has no names).

    Executors run each partition's validation in this scope, in the thread that runs
    it; the estimator's names were dealt with on the client.
    """
    token = _IN_PARTITION.set(True)
    try:
        yield
    finally:
        _IN_PARTITION.reset(token)


def feature_names(X: Any) -> np.ndarray | None:
    """The column names of DataFrame-like ``X`` as an object array, or None.

    None for data without a ``columns`` attribute, without columns, or whose names
    are not strings (integer column labels, as sklearn does). Names mixing strings
    and other types raise TypeError.
    """
    columns = getattr(X, "columns", None)
    if columns is None or isinstance(X, np.ndarray):
        return None
    names = np.asarray(list(columns), dtype=object)
    if names.ndim != 1 or names.size == 0:
        return None
    kinds = {type(v) for v in names}
    strings = {k for k in kinds if issubclass(k, str)}
    if strings and len(kinds) > 1:
        raise TypeError(
            "Feature names are only supported if all input features have string names, but "
            f"X has names of types {sorted(k.__qualname__ for k in kinds)}. Convert them all "
            "to strings (X.columns = X.columns.astype(str)) to have them stored and checked, "
            "or to another type to have them ignored"
        )
    return names if strings else None


def check_feature_names(estimator: Any, X: Any, *, reset: bool) -> None:
    """Record (``reset``) or check ``estimator.feature_names_in_`` against ``X``'s names.

    Call it with the data as the user passed them, before any conversion to an array.

    Raises
    ------
    ValueError
        If ``X`` has names that differ from the fitted ones in content or order.
    """
    if _IN_PARTITION.get():
        return
    names = feature_names(X)
    if reset:
        if names is None:
            estimator.__dict__.pop("feature_names_in_", None)
        else:
            estimator.feature_names_in_ = names
        return
    fitted = getattr(estimator, "feature_names_in_", None)
    cls = type(estimator).__name__
    if fitted is None and names is None:
        return
    if fitted is None:
        warn(f"X has feature names, but {cls} was fitted without feature names", UserWarning)
        return
    if names is None:
        warn(f"X does not have valid feature names, but {cls} was fitted with feature names",
             UserWarning)
        return
    if len(fitted) == len(names) and all(a == b for a, b in zip(fitted, names, strict=True)):
        return
    raise ValueError(_mismatch(fitted, names))


def _mismatch(fitted: np.ndarray, names: np.ndarray) -> str:
    unexpected = sorted(set(names) - set(fitted))
    missing = sorted(set(fitted) - set(names))
    lines = ["The feature names should match those that were passed during fit."]
    if unexpected:
        lines += ["Feature names unseen at fit time:", *_listed(unexpected)]
    if missing:
        lines += ["Feature names seen at fit time, yet now missing:", *_listed(missing)]
    if not unexpected and not missing:
        lines.append("Feature names must be in the same order as they were in fit.")
        if len(fitted) <= 10:
            lines.append(f"Fitted order: {list(fitted)}; X has {list(names)}.")
        lines.append("Select the columns in the fitted order: X[estimator.feature_names_in_]")
    return "\n".join(lines) + "\n"


def _listed(names: list[Any], limit: int = 5) -> list[str]:
    shown = [f"- {n}" for n in names[:limit]]
    return shown + (["- ..."] if len(names) > limit else [])
