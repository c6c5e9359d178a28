"""Fitted attributes that write through to the parameters, as scikit-learn users expect.

An estimator scores with its immutable parameter set ``params_``; attributes such as
``means_`` are views of it. In scikit-learn, assigning ``gm.means_ = ...`` changes what
``predict`` does, so here an assignment after ``fit`` replaces the matching field of
``params_`` (checked by the model) and re-derives every other fitted attribute from the
new set: the attributes and the parameters used for scoring never disagree, and nothing
is silently ignored. An attribute that cannot be set by itself says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emframe.core.params import Params

#: ``setter(params, value) -> new params`` for one fitted attribute.
Setter = Callable[[Params, np.ndarray], Params]


def same_shape(name: str, value: Any, current: Any) -> np.ndarray:
    """``value`` as a new float array of the shape of ``current``.

    Parameters
    ----------
    name : str
        The attribute, for the message.
    value : array-like
        What the user assigned.
    current : array-like
        The attribute's present value.

    Returns
    -------
    ndarray
        A copy (the caller's array is never kept, so changing it later changes nothing).

    Raises
    ------
    ValueError
        If the shapes differ or the values are not numbers.
    """
    current = np.asarray(current)
    try:
        if np.iscomplexobj(value):
            raise TypeError  # float() would drop the imaginary part with only a warning
        arr = np.array(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of real numbers, got {value!r}") from None
    if arr.shape != current.shape:
        raise ValueError(
            f"{name} must have the shape of the fitted one, {current.shape}, got {arr.shape}; "
            "to change the number of components or features, refit"
        )
    return arr


def field_setter(field: str) -> Setter:
    """The setter that replaces the parameter field ``field`` by the assigned value."""

    def setter(params: Params, value: np.ndarray) -> Params:
        return params.replace(**{field: value})

    return setter


class WriteThroughAttributes:
    """Mixin of :class:`~emframe.core.estimator.EMEstimator`: assigning a fitted attribute
    after ``fit`` replaces it in ``params_``.

    By default an attribute ``<field>_`` that :meth:`_fitted_attributes` derives from the
    parameter field ``<field>`` is settable; :meth:`_attribute_setters` adds or overrides
    setters (an attribute derived from several fields, such as a covariance and its
    Cholesky factor). Any other fitted attribute refuses assignment.
    """

    def _fitted_attributes(self, params: Params) -> dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    def _attribute_setters(self) -> dict[str, Setter]:
        """Setters beyond the fields' own (see the class docstring)."""
        return {}

    def _set_params(self, params: Params) -> None:
        """Make ``params`` the fitted parameters and derive the fitted attributes from them."""
        attrs = self._fitted_attributes(params)
        object.__setattr__(self, "params_", params)
        for name, value in attrs.items():
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_derived_names", frozenset(attrs))

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dict__.get("_derived_names", ()) and "params_" in self.__dict__:
            self._write_through(name, value)
        else:
            object.__setattr__(self, name, value)

    def _write_through(self, name: str, value: Any) -> None:
        params = self.__dict__["params_"]
        setters = {f"{f}_": field_setter(f) for f in params.field_names()}
        setters.update(self._attribute_setters())
        setter = setters.get(name)
        if setter is None:
            settable = sorted(n for n, f in setters.items()
                              if f is not None and n in self.__dict__["_derived_names"])
            raise AttributeError(
                f"{name} cannot be set by itself (it is derived from the fit); the fitted "
                f"attributes of {type(self).__name__} that can be set are "
                f"{', '.join(settable)}"
            )
        arr = same_shape(name, value, self.__dict__[name])
        model = self._model_for_scoring()  # type: ignore[attr-defined]
        try:
            new = setter(params, arr)
            model.check_params(new)
        except ValueError as exc:
            raise ValueError(f"invalid value for {name}: {exc}") from None
        self._set_params(new)
