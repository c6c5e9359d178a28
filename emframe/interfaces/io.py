"""Saving and loading fitted estimators in a portable format without pickle.

A model file is a NumPy ``.npz`` archive. Every array (parameters, array-valued
constructor arguments, histories) is one entry, and one more entry,
``__emframe__``, holds UTF-8 JSON metadata as a ``uint8`` array: the format name
and version, the emframe version, the estimator's module and class, its
constructor arguments and its fitted attributes. Arrays appear in the JSON as
references to their entries.

Loading never unpickles (``np.load(..., allow_pickle=False)``) and never
imports a module named by the file. It instantiates only classes that are
already defined in the ``emframe`` namespace (``emframe.models`` is imported on
demand) and are :class:`~emframe.core.estimator.EMEstimator` or
:class:`~emframe.core.params.Params` subclasses, or classes the caller passes
explicitly in ``classes``. So an untrusted file cannot run code; at worst it
yields an estimator with wrong numbers, which the model's ``check_params``
rejects when they are invalid.

The model object (``estimator._model``) is not stored: it holds no fitted
state, and ``estimator._rebuild_model()`` rebuilds it from the constructor
arguments and ``n_features_in_`` (and, if it needs to, ``params_``). An
estimator that cannot do that without data cannot be saved.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zipfile
from collections.abc import Iterable
from typing import Any

import numpy as np

from emframe.core.estimator import EMEstimator
from emframe.core.params import Params
from emframe.core.serialization import (
    _FITTED_RE,
    _META_KEY,
    _MODULE_RE,
    _NAME_RE,
    FORMAT_NAME,
    FORMAT_VERSION,
    _emframe_version,
    atomic_write,
    save,
)

__all__ = ["atomic_write", "load", "read_metadata", "save"]


class _Decoder:
    def __init__(self, arrays: Any, resolver: _Resolver, path: str) -> None:
        self.arrays = arrays
        self.resolver = resolver
        self.path = path

    def _corrupt(self, msg: str) -> ValueError:
        return ValueError(f"{self.path!r} is not a valid emframe model file: {msg}")

    def decode(self, node: Any) -> Any:
        if node is None or isinstance(node, (bool, str, int, float)):
            return node
        if isinstance(node, list):
            return [self.decode(v) for v in node]
        if not isinstance(node, dict) or len(node) == 0:
            raise self._corrupt(f"unexpected metadata node {node!r}")
        if "__ndarray__" in node:
            key = node["__ndarray__"]
            if not isinstance(key, str) or key not in self.arrays.files:
                raise self._corrupt(f"the array entry {key!r} is missing")
            arr = _read_entry(self.arrays, key, self.path)
            return arr[()] if node.get("scalar") else arr
        if "__float__" in node:
            text = node["__float__"]
            if text not in ("nan", "inf", "-inf"):
                raise self._corrupt(f"bad float {text!r}")
            return float(text)
        if "__tuple__" in node:
            return tuple(self.decode(v) for v in _expect(node["__tuple__"], list, self))
        if "__dict__" in node:
            items = _expect(node["__dict__"], list, self)
            if not all(isinstance(it, list) and len(it) == 2 and isinstance(it[0], str)
                       for it in items):
                raise self._corrupt("a dict entry is not a [key, value] pair")
            return {k: self.decode(v) for k, v in items}
        if "__params__" in node:
            spec = _expect(node["__params__"], dict, self)
            cls = self.resolver.resolve(spec.get("module"), spec.get("class"), Params)
            fields = _expect(spec.get("fields"), dict, self)
            expected = set(cls.field_names())
            if set(fields) != expected:
                raise self._corrupt(
                    f"{cls.__name__} has fields {sorted(expected)}, the file has {sorted(fields)}"
                )
            return cls(**{k: self.decode(v) for k, v in fields.items()})
        raise self._corrupt(f"unknown metadata node with keys {sorted(node)}")


def _expect(value: Any, kind: type, dec: _Decoder) -> Any:
    if not isinstance(value, kind):
        raise dec._corrupt(f"expected a {kind.__name__}, got {value!r}")
    return value


def _read_entry(npz: Any, key: str, path: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:
        # object arrays (which need pickle) land here
        raise ValueError(f"{path!r}: cannot read entry {key!r} safely: {exc}") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"{path!r} is corrupted: cannot read entry {key!r} ({exc})") from None


#: Where the classes of files written by emframe 0.1.0 (one flat package) live now.
_MOVED_MODULES = {
    "emframe.models.gaussian_mixture": "emframe.models.mixtures.gaussian",
    "emframe.models.bernoulli_mixture": "emframe.models.mixtures.bernoulli",
    "emframe.models.missing_gaussian": "emframe.models.missing.gaussian",
    "emframe.models.gaussian_mixture_missing": "emframe.models.missing.gaussian_mixture",
    "emframe.models.hmm_estimators": "emframe.models.hmm.estimators",
    "emframe.models.hmm_emissions": "emframe.models.hmm.emissions",
}


def _in_emframe(module: str) -> bool:
    return module == "emframe" or module.startswith("emframe.")


class _Resolver:
    """Finds the classes a file names, without importing any module the file names."""

    def __init__(self, classes: Iterable[type], path: str) -> None:
        self.classes = tuple(classes)
        self.modules = {c.__module__ for c in self.classes}
        self.path = path

    def resolve(self, module: Any, name: Any, base: type) -> type:
        if not (isinstance(module, str) and _MODULE_RE.match(module)):
            raise ValueError(f"{self.path!r}: invalid module name {module!r} in the metadata")
        if not (isinstance(name, str) and _NAME_RE.match(name)):
            raise ValueError(f"{self.path!r}: invalid class name {name!r} in the metadata")
        for cls in self.classes:
            if cls.__module__ == module and cls.__qualname__ == name:
                return cls
        module = _MOVED_MODULES.get(module, module)
        if not _in_emframe(module) and module not in self.modules:
            raise ValueError(
                f"{self.path!r} names the class {module}.{name}, which is outside emframe; "
                "emframe.load only creates emframe classes. If you trust this file and the "
                f"class, pass it explicitly: emframe.load(path, classes=[{name}])"
            )
        if module not in sys.modules and module.startswith("emframe.models"):
            # the shipped models: a trusted package, imported by its fixed name
            importlib.import_module("emframe.models")
        mod = sys.modules.get(module)
        cls = getattr(mod, name, None) if mod is not None else None
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ValueError(
                f"{self.path!r} names {module}.{name}, which is not a known "
                f"{base.__name__} subclass (was the file written by another version of emframe, "
                "or for a custom model whose module is not imported?)"
            )
        return cls


# -- public API --------------------------------------------------------------------------------
def _open(path: str | os.PathLike[str]) -> tuple[Any, dict[str, Any], str]:
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such model file: {name!r}")
    try:
        npz = np.load(name, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{name!r} is not an emframe model file: cannot read it as .npz "
                         f"({exc})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"{name!r} is not an emframe model file: it is a single .npy array, "
                         "not an .npz archive")
    if _META_KEY not in npz.files:
        npz.close()
        raise ValueError(f"{name!r} is not an emframe model file: it has no {_META_KEY!r} "
                         "metadata entry (is it an ordinary .npz archive?)")
    raw = _read_entry(npz, _META_KEY, name)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the metadata entry is not a uint8 vector")
        meta = json.loads(raw.tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("the metadata is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        npz.close()
        raise ValueError(f"{name!r} is corrupted: unreadable metadata ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        npz.close()
        raise ValueError(f"{name!r} is not an emframe model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        npz.close()
        raise ValueError(f"{name!r} is corrupted: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        npz.close()
        raise ValueError(
            f"{name!r} uses emframe model format version {version}, written by emframe "
            f"{meta.get('emframe_version')}; this emframe ({_emframe_version()}) reads up to "
            f"version {FORMAT_VERSION}: upgrade emframe to load it"
        )
    return npz, meta, name


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a model file, without creating the estimator.

    Returns
    -------
    dict
        Keys ``format``, ``format_version``, ``emframe_version``, ``module``,
        ``class`` and ``metadata`` (what was passed to :func:`save`).
    """
    npz, meta, _ = _open(path)
    npz.close()
    keys = ("format", "format_version", "emframe_version", "module", "class", "metadata")
    return {k: meta.get(k) for k in keys}


def load(path: str | os.PathLike[str], *, classes: Iterable[type] = ()) -> Any:
    """Load an estimator saved with :func:`save` or ``estimator.save``.

    Parameters
    ----------
    path : str or path-like
    classes : iterable of classes, optional
        Estimator and parameter classes defined outside emframe (your own
        models) that this file may instantiate. emframe's own classes are
        always allowed; nothing else is.

    Returns
    -------
    EMEstimator
        The estimator with its constructor arguments and fitted attributes;
        its predictions and scores equal the saved estimator's.

    Raises
    ------
    ValueError
        If the file is not an emframe model file, is corrupted, names a class
        outside emframe, or was written by a newer format version.
    FileNotFoundError
        If there is no such file.
    """
    npz, meta, name = _open(path)
    with npz:
        resolver = _Resolver(classes, name)
        cls = resolver.resolve(meta.get("module"), meta.get("class"), EMEstimator)
        dec = _Decoder(npz, resolver, name)
        params = meta.get("params")
        fitted = meta.get("fitted")
        if not isinstance(params, dict) or not isinstance(fitted, dict):
            raise ValueError(f"{name!r} is corrupted: missing constructor or fitted sections")
        valid = set(cls._get_param_names())
        unknown = sorted(set(params) - valid)
        if unknown:
            raise ValueError(
                f"{name!r} has constructor parameters {unknown} that {cls.__name__} does not "
                f"accept (saved by emframe {meta.get('emframe_version')}, a different version?)"
            )
        estimator = cls(**{k: dec.decode(v) for k, v in params.items()})
        state = {}
        for key, node in fitted.items():
            if not (isinstance(key, str) and _FITTED_RE.match(key)) or key in valid:
                raise ValueError(f"{name!r} is corrupted: bad fitted attribute name {key!r}")
            state[key] = dec.decode(node)
    if not state:
        return estimator
    if "params_" not in state or not isinstance(state["params_"], Params):
        raise ValueError(f"{name!r} is corrupted: a fitted estimator needs a 'params_' entry")
    for key, value in state.items():
        setattr(estimator, key, value)
    try:
        # the model object holds no fitted state: rebuild it from the hyperparameters
        model = estimator._rebuild_model()
        model.check_params(estimator.params_)
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"{name!r}: the saved parameters do not fit {cls.__name__}: {exc}"
                         ) from None
    estimator._model = model
    return estimator
