"""Options of ``fit ssm``: the local-level shortcut, frozen fields, initial values, offsets."""

from __future__ import annotations

import argparse
import math
import warnings
from typing import Any

import numpy as np

from emframe.interfaces.cli.specs import SSM_FIELDS, InputError

_OPTIONS = ("local_level", "freeze", "init", "no_offsets")
_OFFSETS = ("transition_offset", "observation_offset")
_COVARIANCES = ("transition_covariance", "observation_covariance", "initial_state_covariance")

#: The local level's prior variance of the first level, relative to the largest variance
#: of the data: vague (the data, not the prior, place the first level), and still far
#: from the floating-point range.
VAGUE_SCALE = 1e6


def ssm_options_given(args: argparse.Namespace) -> list[str]:
    """The ``fit ssm`` options given on the command line, as written."""
    return [f"--{name.replace('_', '-')}" for name in _OPTIONS if getattr(args, name, None)]


def ssm_kwargs(args: argparse.Namespace, X: np.ndarray) -> dict[str, Any]:
    """Constructor arguments of ``LinearGaussianSSM`` for the options, for data ``X``.

    Raises
    ------
    InputError
        Unknown fields, values of the wrong shape, covariances that are not symmetric
        positive definite, or options that contradict each other.
    """
    m = 1 if args.state_dim is None else int(args.state_dim)
    p = X.shape[1]
    kwargs: dict[str, Any] = {}
    freeze = _split_fields(args.freeze or [], "--freeze")
    init = _parse_inits(args.init or [])
    if args.local_level:
        if m != 1:
            raise InputError(f"--local-level has a state of dimension 1; leave out "
                             f"--state-dim {m}")
        fixed = [f for f in ("transition_matrix", "observation_matrix", *_OFFSETS) if f in init]
        if fixed:
            raise InputError(f"--local-level sets {', '.join(fixed)}; leave out --init "
                             f"{fixed[0]}=...")
        init["transition_matrix"] = np.ones((1, 1))
        init["observation_matrix"] = np.ones((p, 1))
        freeze += ["transition_matrix", "observation_matrix"]
        if "initial_state_covariance" not in init:
            # one series cannot estimate the first level's variance (its maximum
            # likelihood is degenerate): a vague prior instead, which --init may replace
            init["initial_state_covariance"] = np.array([[_vague_variance(X)]])
            freeze.append("initial_state_covariance")
    if args.local_level or args.no_offsets:
        given = [f for f in _OFFSETS if f in init or f in freeze]
        if given:
            why = "--local-level" if args.local_level else "--no-offsets"
            raise InputError(f"{why} switches the offsets off; {given[0]} cannot be given "
                             "or frozen")
        kwargs["transition_offset"] = kwargs["observation_offset"] = False
    want = _shapes(m, p)
    for name, value in init.items():
        if value.shape != want[name]:
            raise InputError(
                f"--init {name}: needs shape {want[name]} (state dimension {m}, {p} "
                f"observed columns), got {value.shape}; write numbers separated by commas "
                "and the rows of a matrix separated by semicolons"
            )
        if name in _COVARIANCES:
            _check_covariance(name, value)
        kwargs[f"{name}_init"] = value
    if freeze:
        kwargs["freeze"] = tuple(dict.fromkeys(freeze))  # in order, once each
    return kwargs


def _split_fields(items: list[str], option: str) -> list[str]:
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    unknown = [n for n in names if n not in SSM_FIELDS]
    if unknown:
        raise InputError(f"{option}: no field {unknown[0]!r}; the fields are "
                         f"{', '.join(SSM_FIELDS)}")
    return names


def _parse_inits(items: list[str]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--init {item!r}: write FIELD=VALUES, like "
                             "observation_covariance=15000")
        _split_fields([name], "--init")
        if name in out:
            raise InputError(f"--init gives {name} twice")
        out[name] = _parse_values(name, text)
    return out


def _parse_values(name: str, text: str) -> np.ndarray:
    rows = text.split(";")
    if name in _VECTORS and len(rows) > 1:
        raise InputError(f"--init {name}={text}: {name} is a vector; give one row of numbers "
                         "separated by commas")
    try:
        values = [[float(v) for v in row.split(",")] for row in rows]
    except ValueError:
        raise InputError(f"--init {name}={text}: not a list of numbers (separate numbers by "
                         "commas and the rows of a matrix by semicolons)") from None
    if len({len(r) for r in values}) != 1:
        raise InputError(f"--init {name}={text}: the rows have different lengths")
    if not all(math.isfinite(v) for r in values for v in r):
        raise InputError(f"--init {name}={text}: values must be finite")
    arr = np.array(values)
    # a vector field is written as one row; a matrix field with one row stays 2-D
    return arr[0] if name in _VECTORS else arr


_VECTORS = ("transition_offset", "observation_offset", "initial_state_mean")


def _shapes(m: int, p: int) -> dict[str, tuple[int, ...]]:
    from emframe.models.ssm.params import shapes

    return shapes(m, p)


def _check_covariance(name: str, value: np.ndarray) -> None:
    from emframe.models.ssm.params import check_covariance

    try:
        check_covariance(value, f"--init {name}")
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _vague_variance(X: np.ndarray) -> float:
    # np.nanvar also reduces a Dask array (fit --scheduler) where it is
    observed = np.asarray(np.sum(~np.isnan(X), axis=0)) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # columns with nothing observed
        var = np.asarray(np.nanvar(X, axis=0))[observed]
    scale = float(var.max()) if var.size else 0.0
    return VAGUE_SCALE * (scale if scale > 0 else 1.0)
