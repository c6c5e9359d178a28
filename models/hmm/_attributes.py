"""Fitted attributes of the HMM estimators backed by their parameter set."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["_ParamAttribute", "_store_args"]


def _store_args(obj: Any, args: Mapping[str, Any]) -> None:
    """Store constructor arguments unchanged (scikit-learn's convention)."""
    for name, value in args.items():
        if name not in ("self", "__class__"):
            setattr(obj, name, value)


class _ParamAttribute:
    """A fitted attribute (``startprob_``, ``means_``, ...) backed by the parameter set.

    Before ``fit`` it stores a user-supplied initial value (hmmlearn style: leave its
    letter out of ``init_params``). After ``fit`` it reads ``params_``, and assigning
    to it replaces that field of ``params_`` (validated), so the attribute and the
    parameters used for scoring can never disagree.
    """

    def __init__(self, field: str, doc: str = "") -> None:
        self.field = field
        self.__doc__ = doc

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        return obj._get_param_attribute(self.field, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        obj._set_param_attribute(self.field, self.name, value)

    def __delete__(self, obj: Any) -> None:
        obj.__dict__.get("_given", {}).pop(self.field, None)
