"""Writing estimators in emframe's portable, pickle-free model format.

A model file is a NumPy ``.npz`` archive. Every array (parameters, array-valued
constructor arguments, histories) is one entry, and one more entry,
``__emframe__``, holds UTF-8 JSON metadata as a ``uint8`` array: the format name
and version, the emframe version, the estimator's module and class, its
constructor arguments and its fitted attributes. Arrays appear in the JSON as
references to their entries. Reading (and the safety rules it enforces) is
:mod:`emframe.interfaces.io`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from emframe.core.exceptions import warn
from emframe.core.params import Params

FORMAT_NAME = "emframe-model"
#: Version of the file layout; bump on incompatible changes, and keep reading older ones.
FORMAT_VERSION = 1
_META_KEY = "__emframe__"
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Fitted attributes are public names ending in "_" (scikit-learn's convention); nothing
# else is restored, so a file cannot replace methods.
_FITTED_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*_$")

#: The fit summary every fitted estimator may hold besides what it derives from
#: ``params_`` (its ``_fitted_attributes``). A file may restore only these, the derived
#: ones, and the names an estimator class lists in ``_saved_attributes``.
SUMMARY_ATTRIBUTES = frozenset({
    "params_", "converged_", "n_iter_", "n_e_steps_", "n_features_in_", "lower_bound_",
    "loglik_history_", "lower_bounds_", "prior_size_", "feature_names_in_",
})


def saved_attribute_names(cls: type, derived: Any) -> frozenset[str]:
    """The fitted attributes a file of ``cls`` may hold, given those derived from ``params_``.

    Parameters
    ----------
    cls : type
        The estimator class.
    derived : iterable of str
        Names returned by its ``_fitted_attributes(params_)``.
    """
    extra = getattr(cls, "_saved_attributes", ())
    return SUMMARY_ATTRIBUTES | frozenset(derived) | frozenset(extra)


# -- atomic output -----------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    If the block raises, the temporary file is removed and ``path`` is left as it
    was, so a failure never leaves a half-written file.

    Parameters
    ----------
    path : str or path-like
        Final destination.
    mode : {"wb", "w"}
        Binary or text (UTF-8, ``newline=""``) mode.
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot write {str(path)!r}: directory {str(directory)!r} "
                                "does not exist")
    with _naming(path):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        kwargs: dict[str, Any] = {} if mode == "wb" else {"encoding": "utf-8", "newline": ""}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            with _naming(path):
                fh.flush()
                os.fsync(fh.fileno())
        with _naming(path):
            # mkstemp creates the file with mode 0600; give it the usual permissions.
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise an OSError about the temporary file as one about ``path``, the target."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise
        raise type(exc)(exc.errno, f"cannot write {str(path)!r}: {exc.strerror}") from None


# -- encoding ----------------------------------------------------------------------------------
class _Encoder:
    """Turns a value into JSON plus a dict of arrays; the inverse is :class:`_Decoder`."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def _array(self, value: np.ndarray | np.generic, what: str) -> dict[str, Any]:
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"cannot save {what}: object arrays need pickle, which emframe "
                            "files never use; convert it to a numeric array")
        key = f"a{len(self.arrays)}"
        self.arrays[key] = arr
        node: dict[str, Any] = {"__ndarray__": key}
        if isinstance(value, np.generic):
            node["scalar"] = True
        return node

    def encode(self, value: Any, what: str) -> Any:
        if value is None or isinstance(value, (bool, str)):
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            if math.isfinite(value):
                return value
            return {"__float__": repr(value)}  # 'nan', 'inf', '-inf': JSON has no such numbers
        if isinstance(value, (np.ndarray, np.generic)):
            return self._array(value, what)
        if isinstance(value, Params):
            cls = type(value)
            return {
                "__params__": {
                    "module": cls.__module__,
                    "class": cls.__qualname__,
                    "fields": {
                        f.name: self.encode(getattr(value, f.name), f"{what}.{f.name}")
                        for f in dataclasses.fields(value)
                    },
                }
            }
        if isinstance(value, tuple):
            return {"__tuple__": [self.encode(v, f"{what}[{i}]") for i, v in enumerate(value)]}
        if isinstance(value, list):
            return [self.encode(v, f"{what}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"cannot save {what}: only dicts with string keys are supported")
            # a list of pairs keeps the insertion order through any JSON reader
            return {"__dict__": [[k, self.encode(v, f"{what}[{k!r}]")] for k, v in value.items()]}
        raise TypeError(
            f"cannot save {what} = {value!r} of type {type(value).__name__}: emframe files hold "
            "only None, bool, int, float, str, numpy arrays and scalars, parameter sets, and "
            "lists, tuples and dicts of these"
        )


def _constructor_params(estimator: Any) -> dict[str, Any]:
    params = estimator.get_params(deep=False)
    rs = params.get("random_state")
    if isinstance(rs, (np.random.Generator, np.random.RandomState, np.random.SeedSequence)):
        # A generator's state is not data we store; it does not affect predictions.
        warn(
            f"random_state={type(rs).__name__}(...) cannot be saved without pickle and is saved "
            "as None; use an int seed to keep it",
            UserWarning,
        )
        params["random_state"] = None
    return params


def _fitted_state(estimator: Any) -> dict[str, Any]:
    names = set(estimator._get_param_names())
    state = {
        k: v
        for k, v in vars(estimator).items()
        if _FITTED_RE.match(k) and k not in names
    }
    if "feature_names_in_" in state:
        # strings, not an object array (which would need pickle); load makes them objects again
        state["feature_names_in_"] = np.asarray(state["feature_names_in_"], dtype=str)
    derived = estimator._fitted_attributes(state["params_"]) if "params_" in state else {}
    allowed = saved_attribute_names(type(estimator), derived)
    unknown = sorted(set(state) - allowed)
    if unknown:
        # refuse now rather than write a file that load refuses
        cls = type(estimator).__name__
        raise TypeError(
            f"cannot save {cls}: its fitted attributes {unknown} are neither the fit summary "
            f"nor derived from params_ by _fitted_attributes; list them in "
            f"{cls}._saved_attributes to save them"
        )
    return state


def save(estimator: Any, path: str | os.PathLike[str], *, metadata: dict[str, Any] | None = None
         ) -> Path:
    """Save an estimator (fitted or not) to ``path`` as an emframe model file.

    The file is written to a temporary file in the same directory and renamed
    over ``path`` only when complete, so a failure leaves no partial file. The
    name is used as given (no ``.npz`` is appended).

    Parameters
    ----------
    estimator : EMEstimator
    path : str or path-like
    metadata : dict, optional
        Extra JSON-serialisable information stored with the model (for example
        the names of the data columns); read it back with :func:`read_metadata`.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    # duck-typed: the estimator base imports this module, so it cannot be imported here
    if not (hasattr(estimator, "_get_param_names") and hasattr(estimator, "_rebuild_model")):
        raise TypeError(f"only EMEstimator instances can be saved, got {type(estimator).__name__}")
    cls = type(estimator)
    if cls.__qualname__ != cls.__name__:
        raise TypeError(f"cannot save {cls.__qualname__}: define the estimator class at module "
                        "level so that it can be found again when loading")
    if metadata is not None:
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"metadata must be JSON-serialisable: {exc}") from None
    if hasattr(estimator, "params_"):
        try:
            estimator._rebuild_model()
        except NotImplementedError:
            # refuse now rather than write a file that cannot be loaded
            raise TypeError(
                f"cannot save {cls.__name__}: it does not say how to rebuild its model "
                "without data; its author must implement EMEstimator._rebuild_model"
            ) from None
    enc = _Encoder()
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "emframe_version": _emframe_version(),
        "module": cls.__module__,
        "class": cls.__name__,
        "params": {
            k: enc.encode(v, f"constructor parameter {k!r}")
            for k, v in _constructor_params(estimator).items()
        },
        "fitted": {
            k: enc.encode(v, f"fitted attribute {k!r}") for k, v in _fitted_state(estimator).items()
        },
        "metadata": metadata,
    }
    blob = json.dumps(meta, allow_nan=False, sort_keys=True).encode("utf-8")
    entries = dict(enc.arrays)
    entries[_META_KEY] = np.frombuffer(blob, dtype=np.uint8)
    path = Path(path)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **entries)
    return path


def _emframe_version() -> str:
    from emframe._version import __version__

    return __version__


