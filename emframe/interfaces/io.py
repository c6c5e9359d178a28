"""Saving and loading fitted estimators in a portable format without pickle.

A model file is a NumPy ``.npz`` archive. Every array (parameters, array-valued
constructor arguments, histories) is one entry, and one more entry,
``__emframe__``, holds UTF-8 JSON metadata as a ``uint8`` array: the format name
and version, the emframe version, the estimator's module and class, its
constructor arguments and its fitted attributes. Arrays appear in the JSON as
references to their entries.

Loading never unpickles and never imports a module named by the file. It
instantiates only classes that are already defined in the ``emframe`` namespace
(``emframe.models`` is imported on demand) and are concrete
:class:`~emframe.core.estimator.EMEstimator` or :class:`~emframe.core.params.Params`
subclasses, or exactly the classes the caller passes in ``classes`` (not other
classes of their modules). So an untrusted file cannot run code; at worst it
yields an estimator with wrong numbers, which the model's ``check_params``
rejects when they are invalid.

Loading also bounds the resources a file can claim: array sizes are checked
against the file before anything is allocated and each array entry is read once
(:mod:`emframe.interfaces.archive`), the JSON metadata may nest at most
``MAX_JSON_DEPTH`` levels, and the fitted state is checked against ``params_``
before it is trusted: the only fitted attributes restored are the fit summary
(``converged_``, ``n_iter_``, ...), ``params_``, what the estimator derives from
``params_`` as ``fit`` does (which must equal what the file holds), and the
attributes its class lists in ``_saved_attributes``. Loaded arrays are read-only.

The model object (``estimator._model``) is not stored: it holds no fitted
state, and ``estimator._rebuild_model()`` rebuilds it from the constructor
arguments and ``n_features_in_`` (and, if it needs to, ``params_``); the size of
the training data a prior is attached to (``prior_size_``, see
``EMModel.with_prior_size``) is part of the fit summary. An estimator that cannot
do that without data cannot be saved.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import sys
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
    saved_attribute_names,
)
from emframe.interfaces.archive import Archive

__all__ = ["MAX_JSON_DEPTH", "atomic_write", "load", "read_metadata", "save"]

#: Deepest nesting of lists and objects accepted in a file's JSON metadata. emframe's
#: own files nest about ten levels; the cap keeps decoding far from Python's recursion
#: limit.
MAX_JSON_DEPTH = 100


class _Decoder:
    def __init__(self, arrays: Archive, resolver: _Resolver, path: str) -> None:
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
            if not isinstance(key, str) or key not in self.arrays:
                raise self._corrupt(f"the array entry {key!r} is missing")
            arr = self.arrays.array(key)  # read-only, read once however often referenced
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
            try:
                return cls(**{k: self.decode(v) for k, v in fields.items()})
            except (TypeError, ValueError) as exc:
                raise self._corrupt(f"cannot make {cls.__name__} from the file: {exc}") from None
        raise self._corrupt(f"unknown metadata node with keys {sorted(node)}")


def _expect(value: Any, kind: type, dec: _Decoder) -> Any:
    if not isinstance(value, kind):
        raise dec._corrupt(f"expected a {kind.__name__}, got {value!r}")
    return value


_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON text (brackets inside strings ignored)."""
    depth = deepest = 0
    for match in _JSON_TOKENS.finditer(text):
        tok = match.group()
        if tok in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif tok in "]}":
            depth -= 1
    return deepest


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
        if not _in_emframe(module):
            listed = ", ".join(c.__name__ for c in self.classes)
            raise ValueError(
                f"{self.path!r} names the class {module}.{name}, which is outside emframe "
                + (f"and not one of classes=[{listed}]" if listed else "")
                + "; emframe.load only creates emframe classes and the classes passed to it. "
                "If you trust this file and the class, pass it explicitly: "
                f"emframe.load(path, classes=[{listed + ', ' if listed else ''}{name}])"
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
def _open(path: str | os.PathLike[str]) -> tuple[Archive, dict[str, Any], str]:
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"no such model file: {name!r}")
    arch = Archive(name)
    try:
        meta = _read_meta(arch, name)
    except BaseException:
        arch.close()
        raise
    return arch, meta, name


def _read_meta(arch: Archive, name: str) -> dict[str, Any]:
    if _META_KEY not in arch:
        raise ValueError(f"{name!r} is not an emframe model file: it has no {_META_KEY!r} "
                         "metadata entry (is it an ordinary .npz archive?)")
    raw = arch.array(_META_KEY)
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError("the metadata entry is not a uint8 vector")
        text = raw.tobytes().decode("utf-8")
        depth = _json_depth(text)
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"the JSON nests {depth} levels deep, more than the "
                             f"{MAX_JSON_DEPTH} emframe accepts")
        meta = json.loads(text)
        if not isinstance(meta, dict):
            raise ValueError("the metadata is not a JSON object")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{name!r} is corrupted: unreadable metadata ({exc})") from None
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{name!r} is not an emframe model file (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"{name!r} is corrupted: bad format_version {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{name!r} uses emframe model format version {version}, written by emframe "
            f"{meta.get('emframe_version')}; this emframe ({_emframe_version()}) reads up to "
            f"version {FORMAT_VERSION}: upgrade emframe to load it"
        )
    return meta


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of a model file, without creating the estimator.

    Returns
    -------
    dict
        Keys ``format``, ``format_version``, ``emframe_version``, ``module``,
        ``class`` and ``metadata`` (what was passed to :func:`save`).
    """
    arch, meta, _ = _open(path)
    arch.close()
    keys = ("format", "format_version", "emframe_version", "module", "class", "metadata")
    return {k: meta.get(k) for k in keys}


def load(path: str | os.PathLike[str], *, classes: Iterable[type] = ()) -> Any:
    """Load an estimator saved with :func:`save` or ``estimator.save``.

    Parameters
    ----------
    path : str or path-like
    classes : iterable of classes, optional
        Estimator and parameter classes defined outside emframe (your own
        models, and their parameter classes) that this file may instantiate.
        emframe's own classes are always allowed; of other classes, exactly
        these and nothing else (not other classes of their modules).

    Returns
    -------
    EMEstimator
        The estimator with its constructor arguments and fitted attributes;
        its predictions and scores equal the saved estimator's. Arrays read
        from the file (fitted attributes and array constructor arguments) are
        read-only.

    Raises
    ------
    ValueError
        If the file is not an emframe model file, is corrupted, declares more
        data than it holds, names a class outside emframe (or an abstract
        base), holds fitted attributes the class does not have or that
        disagree with ``params_``, or was written by a newer format version.
    FileNotFoundError
        If there is no such file.
    """
    arch, meta, name = _open(path)
    with arch:
        resolver = _Resolver(classes, name)
        cls = resolver.resolve(meta.get("module"), meta.get("class"), EMEstimator)
        _check_concrete(cls, name)
        dec = _Decoder(arch, resolver, name)
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
        kwargs = {k: dec.decode(v) for k, v in params.items()}
        try:
            estimator = cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name!r}: cannot create {cls.__name__} from the saved "
                             f"constructor parameters: {exc}") from None
        state = {}
        for key, node in fitted.items():
            if not (isinstance(key, str) and _FITTED_RE.match(key)) or key in valid:
                raise ValueError(f"{name!r} is corrupted: bad fitted attribute name {key!r}")
            state[key] = dec.decode(node)
    if not state:
        return estimator
    return _restore_fitted(estimator, state, name)


def _check_concrete(cls: type, name: str) -> None:
    """Refuse base classes: they cannot build a model (and are not what any file holds)."""
    if inspect.isabstract(cls) or cls._build_model is EMEstimator._build_model:
        raise ValueError(
            f"{name!r} names {cls.__module__}.{cls.__qualname__}, an abstract base class that "
            "cannot be fitted or loaded; a model file names a concrete estimator class"
        )


#: Types of the fit summary attributes (see SUMMARY_ATTRIBUTES).
_SUMMARY_CHECKS: dict[str, tuple[str, Any]] = {
    "converged_": ("a bool", lambda v: isinstance(v, (bool, np.bool_))),
    "n_iter_": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "n_e_steps_": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "n_features_in_": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "lower_bound_": ("a number", lambda v: _is_real(v)),
    "loglik_history_": ("a 1-D float array", lambda v: _is_float_vector(v)),
    "lower_bounds_": ("a 1-D float array", lambda v: _is_float_vector(v)),
    "prior_size_": ("a finite number > 0", lambda v: _is_real(v) and 0 < v < np.inf),
    "feature_names_in_": ("a 1-D array of strings", lambda v: isinstance(v, np.ndarray)
                          and v.ndim == 1 and v.dtype.kind == "U"),
}


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return _is_int(v) or isinstance(v, (float, np.floating))


def _is_float_vector(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f"


def _restore_fitted(estimator: Any, state: dict[str, Any], name: str) -> Any:
    """Restore a fitted state, checking it as it goes.

    The fit summary (type-checked), ``params_`` and the attributes the class lists in
    ``_saved_attributes`` (state taken from the data, such as a bounding box) are set
    from the file; the model is rebuilt and checks ``params_``; then the estimator
    derives its other fitted attributes from ``params_`` exactly as ``fit`` does
    (``_set_params``). The file may hold no attribute beyond these, and its copies of
    derived ones must agree with what was derived.
    """
    cls = type(estimator)

    def refuse(msg: str) -> ValueError:
        return ValueError(f"{name!r}: the saved parameters do not fit {cls.__name__}: {msg}")

    params = state.get("params_")
    if not isinstance(params, Params):
        raise ValueError(f"{name!r} is corrupted: a fitted estimator needs a 'params_' entry")
    for key, (what, ok) in _SUMMARY_CHECKS.items():
        if key in state and not ok(state[key]):
            raise refuse(f"{key} must be {what}, got {state[key]!r}")
    restored = saved_attribute_names(cls, ())  # the summary and the class's own list
    for key, value in state.items():
        if key in restored:
            setattr(estimator, key, value)
    if "feature_names_in_" in state:  # saved as strings; fit makes an object array of str
        names = [str(v) for v in state["feature_names_in_"]]
        if len(names) != state.get("n_features_in_"):
            raise refuse(f"feature_names_in_ has {len(names)} names, but n_features_in_ = "
                         f"{state.get('n_features_in_')}")
        estimator.feature_names_in_ = np.asarray(names, dtype=object)
    before = set(vars(estimator))
    try:
        # the model object holds no fitted state: rebuild it from the hyperparameters
        model = estimator._restored_model()  # _rebuild_model, with the fitted prior size
        model.check_params(params)
        estimator._model = model
        estimator._set_params(params)  # derives the fitted attributes, as fit does
    except (ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise refuse(str(exc)) from None
    now = vars(estimator)
    derived = set(now) - before
    unknown = sorted(k for k in state if k not in now or k not in restored | derived)
    if unknown:
        raise refuse(f"{cls.__name__} has no fitted attribute {', '.join(map(repr, unknown))}")
    for key, value in state.items():
        # the file repeats what params_ determines; it must agree
        if key not in _SUMMARY_CHECKS and not _identical(value, now[key]):
            raise refuse(f"the fitted attribute {key!r} disagrees with params_")
    _check_n_features(estimator, params, refuse, own=_in_emframe(cls.__module__))
    return estimator


#: Relative tolerance (to the array's largest magnitude) for derived arrays: a file
#: written on another machine may have computed them with another BLAS.
_DERIVED_RTOL = 1e-9


def _identical(saved: Any, derived: Any) -> bool:
    """Whether a saved fitted attribute agrees with the one derived from ``params_``."""
    if isinstance(saved, np.ndarray) or isinstance(derived, np.ndarray):
        if not (isinstance(saved, np.ndarray) and isinstance(derived, np.ndarray)
                and saved.dtype == derived.dtype and saved.shape == derived.shape):
            return False
        if saved.dtype.kind not in "fc":
            return bool(np.array_equal(saved, derived))
        if not np.array_equal(np.isnan(saved), np.isnan(derived)):
            return False
        a, b = np.nan_to_num(saved, nan=0.0), np.nan_to_num(derived, nan=0.0)
        if not np.array_equal(np.isinf(a), np.isinf(b)) or np.any(a[np.isinf(a)]
                                                                 != b[np.isinf(b)]):
            return False
        a, b = np.where(np.isinf(a), 0.0, a), np.where(np.isinf(b), 0.0, b)
        scale = float(np.max(np.abs(b), initial=0.0))
        return bool(np.all(np.abs(a - b) <= _DERIVED_RTOL * scale))
    if isinstance(saved, Params) or isinstance(derived, Params):
        return type(saved) is type(derived) and saved.allclose(derived, rtol=_DERIVED_RTOL)
    return type(saved) is type(derived) and (saved == derived
                                             or (saved != saved and derived != derived))


def _check_n_features(estimator: Any, params: Params, refuse: Any, *, own: bool) -> None:
    """Check ``n_features_in_`` against the shapes of ``params_``.

    The model reads the number of features from the parameters
    (:meth:`~emframe.core.model.EMModel.n_features_of`); nothing is scored. Every
    shipped model declares it; a custom model that leaves it at ``None`` is not
    checked. For emframe's own models (``own``), which have at least one parameter
    per feature, a count beyond the numbers in ``params_`` is refused first.
    """
    d = getattr(estimator, "n_features_in_", None)
    if d is None:
        return
    if own:
        size = sum(np.size(leaf) for leaf in _param_arrays(params))
        if d > size:
            raise refuse(f"n_features_in_ = {d}, but params_ holds only {size} numbers")
    try:
        n = estimator._model.n_features_of(params)
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise refuse(f"cannot tell the number of features of params_ ({exc})") from None
    if n is not None and int(n) != d:
        raise refuse(f"n_features_in_ = {d} does not match params_, which are for {n} "
                     "features")


def _param_arrays(obj: Any) -> list[Any]:
    if isinstance(obj, Params):
        return [leaf for v in obj.as_dict().values() for leaf in _param_arrays(v)]
    if isinstance(obj, (tuple, list)):
        return [leaf for v in obj for leaf in _param_arrays(v)]
    return [obj] if isinstance(obj, np.ndarray) else []
