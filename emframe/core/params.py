"""Immutable parameter sets and additive sufficient statistics.

Both are frozen dataclasses whose fields are numpy arrays, Python scalars or
nested instances. ``Params`` makes a read-only copy of every array it holds, so
a parameter set can be snapshotted, compared and restarted without defensive
copies. ``Stats`` adds field by field, which is what lets the engine fit in
batch, in chunks or online with no change to a model.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import numpy as np

P = TypeVar("P", bound="Params")
S = TypeVar("S", bound="Stats")


def _frozen_copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        out = np.array(value, copy=True)
        out.flags.writeable = False
        return out
    if isinstance(value, tuple):
        return tuple(_frozen_copy(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class Params:
    """Base class for a model's parameters: a frozen dataclass of read-only arrays.

    Subclass it with ``@dataclasses.dataclass(frozen=True)`` and declare the
    fields. Arrays are copied and made read-only on construction, so no later
    change to the caller's arrays, or to the estimator, can alter a snapshot.
    """

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _frozen_copy(getattr(self, f.name)))

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Names of the parameter fields, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self: P, **changes: Any) -> P:
        """Return a copy with some fields replaced (the original is unchanged)."""
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        """The fields as a shallow ``{name: value}`` dict."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def allclose(self, other: Params, rtol: float = 1e-10, atol: float = 0.0) -> bool:
        """True when every field of ``other`` equals this one's within tolerance."""
        if type(other) is not type(self):
            return False
        return all(
            _allclose(a, b, rtol, atol) for a, b in zip(_leaves(self), _leaves(other), strict=True)
        )


def _leaves(obj: Any) -> list[Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: list[Any] = []
        for f in dataclasses.fields(obj):
            out.extend(_leaves(getattr(obj, f.name)))
        return out
    if isinstance(obj, tuple):
        return [leaf for v in obj for leaf in _leaves(v)]
    return [obj]


def _allclose(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        return bool(np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=False))
    return bool(np.array_equal(a, b))


def _combine(a: Any, b: Any, op: Any) -> Any:
    if isinstance(a, Stats):
        # a nested Stats may define its own addition (e.g. moments about a reference point)
        return a + b if op is np.add else a._zip(b, op)
    if isinstance(a, tuple):
        return tuple(_combine(x, y, op) for x, y in zip(a, b, strict=True))
    if a is None:
        return None
    return op(a, b)


def _scale(a: Any, c: float) -> Any:
    if isinstance(a, Stats):
        return a.scale(c)
    if isinstance(a, tuple):
        return tuple(_scale(x, c) for x in a)
    if a is None:
        return None
    return a * c


@dataclasses.dataclass(frozen=True)
class Stats:
    """Base class for additive sufficient statistics.

    Subclass it with ``@dataclasses.dataclass(frozen=True)``. Every field must be
    additive: an array, a number, a nested ``Stats`` or a tuple of these (``None``
    marks an unused field). Then ``stats(X1) + stats(X2) == stats(X1 ∪ X2)`` is
    the whole contract, and ``scale`` gives the convex combinations online EM
    needs. Neither operation mutates its operands.
    """

    def _zip(self: S, other: Any, op: Any) -> S:
        if type(other) is not type(self):
            raise TypeError(
                f"cannot combine {type(self).__name__} with {type(other).__name__}: "
                "statistics must come from the same model"
            )
        return type(self)(
            **{
                f.name: _combine(getattr(self, f.name), getattr(other, f.name), op)
                for f in dataclasses.fields(self)
            }
        )

    def __add__(self: S, other: S) -> S:
        return self._zip(other, np.add)

    def __radd__(self: S, other: Any) -> S:
        # lets sum() start from 0
        if isinstance(other, int) and other == 0:
            return self
        return NotImplemented

    def scale(self: S, c: float) -> S:
        """Every field multiplied by the number ``c``."""
        return type(self)(
            **{f.name: _scale(getattr(self, f.name), c) for f in dataclasses.fields(self)}
        )

    def allclose(self, other: Stats, rtol: float = 1e-10, atol: float = 1e-12) -> bool:
        """True when every field equals ``other``'s within tolerance.

        A nested ``Stats`` compares itself (it may define its own equality, as it may
        its own addition: moments about different reference points can be equal).
        """
        if type(other) is not type(self):
            return False
        return all(
            _stats_close(getattr(self, f.name), getattr(other, f.name), rtol, atol)
            for f in dataclasses.fields(self)
        )


def _stats_close(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, Stats):
        return a.allclose(b, rtol=rtol, atol=atol)
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(_stats_close(x, y, rtol, atol) for x, y in zip(a, b, strict=True))
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(
        _allclose(x, y, rtol, atol) for x, y in zip(la, lb, strict=True)
    )
