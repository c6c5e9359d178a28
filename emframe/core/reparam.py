"""Parameters as flat vectors in an unconstrained form, for extrapolation (SQUAREM).

Each constrained field is mapped to unconstrained coordinates and back, so any
point on the line through two parameter vectors maps back to valid parameters:

============== ===================================== ============================
constraint     forward                               back
============== ===================================== ============================
``real``       identity                              identity
``positive``   ``log``                               ``exp``
``simplex``    ``log`` of the entries (last axis)    ``softmax``; exact zeros stay
                                                     zero (sparse topologies)
``unit``       ``logit``                             ``expit`` (clipped off 0, 1)
``spd``        log-Cholesky of (..., d, d) stacks    ``L @ L.T`` with ``exp`` diag
============== ===================================== ============================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit, logit

from emframe.core.numerics import safe_log

CONSTRAINTS = ("real", "positive", "simplex", "unit", "spd")
_EPS = 1e-12


def _spd_forward(a: np.ndarray) -> np.ndarray:
    L = np.linalg.cholesky(a)
    d = a.shape[-1]
    il = np.tril_indices(d, -1)
    diag = np.log(np.diagonal(L, axis1=-2, axis2=-1))
    return np.concatenate([L[..., il[0], il[1]], diag], axis=-1)


def _spd_back(v: np.ndarray, like: np.ndarray) -> np.ndarray:
    d = like.shape[-1]
    il = np.tril_indices(d, -1)
    n_off = len(il[0])
    L = np.zeros(like.shape)
    L[..., il[0], il[1]] = v[..., :n_off]
    idx = np.arange(d)
    L[..., idx, idx] = np.exp(v[..., n_off:])
    return L @ np.swapaxes(L, -1, -2)


def forward(value: np.ndarray, constraint: str) -> np.ndarray:
    """Map a constrained array to unconstrained coordinates, flattened."""
    a = np.asarray(value, dtype=float)
    if constraint == "real":
        out = a
    elif constraint == "positive":
        out = safe_log(a)  # a parameter at 0 gives -inf: the caller then does not extrapolate
    elif constraint == "simplex":
        # zeros are structural (kept zero on the way back), so any finite stand-in works
        out = np.where(a > 0, safe_log(a), 0.0)
    elif constraint == "unit":
        out = logit(np.clip(a, _EPS, 1 - _EPS))
    elif constraint == "spd":
        out = _spd_forward(a)
    else:
        raise ValueError(f"unknown constraint {constraint!r}; expected one of {CONSTRAINTS}")
    return np.ravel(out)


def back(vector: np.ndarray, like: np.ndarray, constraint: str) -> np.ndarray:
    """Inverse of :func:`forward`, shaped like ``like`` (whose zeros a simplex keeps)."""
    like = np.asarray(like, dtype=float)
    if constraint == "spd":
        d = like.shape[-1]
        v = vector.reshape(like.shape[:-2] + (d * (d + 1) // 2,))
        return _spd_back(v, like)
    v = vector.reshape(like.shape)
    if constraint == "real":
        return v.copy()
    if constraint == "positive":
        return np.exp(v)
    if constraint == "unit":
        return np.clip(expit(v), _EPS, 1 - _EPS)
    if constraint == "simplex":
        keep = like > 0
        z = np.where(keep, v, -np.inf)
        z = z - np.max(z, axis=-1, keepdims=True)
        e = np.where(keep, np.exp(z), 0.0)
        return e / e.sum(axis=-1, keepdims=True)
    raise ValueError(f"unknown constraint {constraint!r}; expected one of {CONSTRAINTS}")


def size(like: np.ndarray, constraint: str) -> int:
    """Length of the vector for one field."""
    like = np.asarray(like)
    if constraint == "spd":
        d = like.shape[-1]
        return int(np.prod(like.shape[:-2], dtype=int)) * d * (d + 1) // 2
    return int(like.size)


def to_vector(params: Any, constraints: Mapping[str, str], fields: Sequence[str]) -> np.ndarray:
    """Concatenate the unconstrained coordinates of ``fields`` of ``params``."""
    parts = [forward(getattr(params, f), constraints[f]) for f in fields]
    return np.concatenate(parts) if parts else np.zeros(0)


def from_vector(
    vector: np.ndarray, like: Any, constraints: Mapping[str, str], fields: Sequence[str]
) -> dict[str, np.ndarray]:
    """Split ``vector`` back into constrained field values, shaped like those of ``like``."""
    out = {}
    start = 0
    for f in fields:
        ref = getattr(like, f)
        n = size(ref, constraints[f])
        out[f] = back(vector[start : start + n], ref, constraints[f])
        start += n
    return out
