"""Input checks with messages that say what is wrong and how to fix it."""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np


def check_array(
    X: Any,
    name: str = "X",
    *,
    allow_nan: bool = False,
    ensure_2d: bool = True,
    min_samples: int = 1,
    dtype: Any = np.float64,
    copy: bool = False,
) -> np.ndarray:
    """Validate array-like input and return it as a float ndarray.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    name : str
        Name used in error messages.
    allow_nan : bool
        Whether NaN marks missing entries (inf is never allowed).
    ensure_2d : bool
        Reject 1-D and 3-D or higher input.
    min_samples : int
        Minimum number of rows.
    dtype : numpy dtype or None
        Target dtype; ``None`` keeps a numeric dtype as it is.
    copy : bool
        Always return a new array.

    Returns
    -------
    ndarray
        ``X`` itself when no conversion was needed (and ``copy`` is false), else a
        converted copy. The caller's array is never modified.
    """
    if hasattr(X, "toarray") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            f"{name} is a sparse matrix, but dense data is required; "
            f"convert it with {name}.toarray()"
        )
    if isinstance(X, np.ndarray) and np.iscomplexobj(X):
        raise ValueError(f"Complex data not supported: {name} has dtype {X.dtype}")
    if isinstance(X, np.ma.MaskedArray):
        X = _unmask(X, name, allow_nan=allow_nan)
    X = _pandas_na_to_nan(X, dtype)
    try:
        arr = np.array(X, dtype=dtype, copy=copy) if copy else np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be numeric: {exc}") from None
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported: {name} has dtype {arr.dtype}")
    if ensure_2d:
        if arr.ndim == 1:
            raise ValueError(
                f"Expected a 2-D array for {name}, got a 1-D array of shape {arr.shape}. "
                f"Reshape your data with {name}.reshape(-1, 1) for a single feature "
                f"or {name}.reshape(1, -1) for a single sample."
            )
        if arr.ndim != 2:
            raise ValueError(
                f"Expected a 2-D array for {name}, got {arr.ndim} dimensions "
                f"(shape {arr.shape})"
            )
        if arr.shape[1] == 0:
            raise ValueError(
                f"{name} has 0 feature(s) (shape={arr.shape}) while a minimum of 1 is required."
            )
    if arr.ndim == 0:
        if min_samples > 0:
            raise ValueError(f"{name} must be an array, got the scalar {arr.item()!r}")
    elif arr.shape[0] < min_samples:
        raise ValueError(
            f"{name} has {arr.shape[0]} sample(s) (shape {arr.shape}), "
            f"but at least {min_samples} are required"
        )
    if arr.dtype.kind == "f":
        check_finite(arr, name, allow_nan=allow_nan)
    return arr


def _pandas_na_to_nan(X: Any, dtype: Any) -> Any:
    """A pandas object with nullable dtypes as floats with NaN for ``pd.NA``.

    ``np.asarray`` turns a frame of ``Int64``/``Float64`` columns holding ``pd.NA``
    (``read_csv(dtype_backend="numpy_nullable")``, ``convert_dtypes()``) into an object
    array that no float conversion accepts; scikit-learn reads those cells as NaN.
    pandas is never imported: its objects are recognised by their module.
    """
    if not type(X).__module__.startswith("pandas") or not hasattr(X, "to_numpy"):
        return X
    if dtype is None or np.dtype(dtype).kind != "f":
        return X
    try:
        return X.to_numpy(dtype=dtype, na_value=np.nan)
    except (TypeError, ValueError):
        return X  # text columns and the like: the generic path reports them


def _unmask(X: np.ma.MaskedArray, name: str, *, allow_nan: bool) -> np.ndarray:
    """A masked array's data with NaN at the masked entries (a new array).

    ``np.asarray`` would drop the mask and keep whatever numbers lie under it
    (pykalman's users mark missing steps this way), so those would be fitted as data.
    """
    mask = np.ma.getmaskarray(X)
    if not mask.any():
        return np.ma.getdata(X)
    if not allow_nan:
        raise ValueError(
            f"{name} is a masked array with {int(mask.sum())} masked entries, but this "
            "estimator does not take missing values; drop or impute them first (the "
            "estimators that take missing values read masked entries as missing)"
        )
    try:
        filled = np.ma.getdata(X).astype(np.float64)  # a copy: the caller's data stay
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} must be numeric: {exc}") from None
    filled[mask] = np.nan
    return filled


def check_finite(arr: np.ndarray, name: str = "X", *, allow_nan: bool = False) -> None:
    """Raise ``ValueError`` naming the first NaN or inf entry of ``arr``."""
    bad = np.isinf(arr) if allow_nan else ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        what = "inf" if allow_nan else "NaN or inf"
        where = f"row {idx[0]}, column {idx[1]}" if len(idx) == 2 else f"index {idx}"
        hint = "" if allow_nan else "; remove or impute missing values first"
        raise ValueError(f"{name} contains {what} (first at {where}: {arr[idx]}){hint}")


def check_sample_weight(sample_weight: Any, n_samples: int) -> np.ndarray | None:
    """Validate ``sample_weight``: shape (n_samples,), finite, non-negative, not all zero.

    A number is broadcast to every sample, as in scikit-learn.
    """
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Real) and not isinstance(sample_weight, bool):
        sample_weight = np.full(n_samples, float(sample_weight))
    w = check_array(sample_weight, "sample_weight", ensure_2d=False, min_samples=0)
    if w.ndim != 1 or w.shape[0] != n_samples:
        raise ValueError(
            f"sample_weight must have shape ({n_samples},) to match X, got shape {w.shape}"
        )
    if (w < 0).any():
        i = int(np.argmax(w < 0))
        raise ValueError(f"sample_weight must be non-negative; sample_weight[{i}] = {w[i]}")
    if not w.any():
        raise ValueError("sample_weight is zero for every sample; at least one must be positive")
    return w


def check_random_state(random_state: Any) -> np.random.Generator:
    """Turn ``None``, an int, a SeedSequence or a Generator into a ``numpy.random.Generator``."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.SeedSequence)):
        if isinstance(random_state, numbers.Integral) and random_state < 0:
            raise ValueError(f"random_state must be a non-negative integer, got {random_state}")
        return np.random.default_rng(random_state)
    raise TypeError(
        "random_state must be None, a non-negative int or a numpy Generator, "
        f"got {type(random_state).__name__}"
    )


def check_scalar(
    value: Any,
    name: str,
    kind: type | tuple[type, ...],
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    include_min: bool = True,
    include_max: bool = True,
) -> Any:
    """Check a hyperparameter's type and range; return it unchanged."""
    if isinstance(value, bool) or not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"{name} must be {names}, got {value!r} ({type(value).__name__})")
    if value != value and (min_value is not None or max_value is not None):  # NaN
        bounds = [f"{op} {v:g}" for op, v in ((">=" if include_min else ">", min_value),
                                            ("<=" if include_max else "<", max_value))
                  if v is not None]
        raise ValueError(f"{name} must be a number {' and '.join(bounds)}, got {value!r}")
    if min_value is not None and (value < min_value or (not include_min and value == min_value)):
        op = ">=" if include_min else ">"
        raise ValueError(f"{name} must be {op} {min_value}, got {value!r}")
    if max_value is not None and (value > max_value or (not include_max and value == max_value)):
        op = "<=" if include_max else "<"
        raise ValueError(f"{name} must be {op} {max_value}, got {value!r}")
    return value


def check_finite_params(params: Any) -> None:
    """Raise ``ValueError`` if any numeric field of a parameter set is NaN or infinite."""
    for f in dataclasses.fields(params):
        value = getattr(params, f.name)
        if value is None:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            raise ValueError(f"parameter {f.name!r} has non-finite values")


def check_prior_size(prior_size: Any) -> float | None:
    """Validate the data size a prior is attached to: None, or a finite number > 0.

    See :meth:`emframe.core.model.EMModel.with_prior_size`.
    """
    if prior_size is None:
        return None
    check_scalar(prior_size, "prior_size", numbers.Real, min_value=0.0, include_min=False)
    if not np.isfinite(prior_size):
        raise ValueError(f"prior_size must be a finite number > 0, got {prior_size!r}")
    return float(prior_size)


def check_magnitude(X: np.ndarray, name: str = "X") -> np.ndarray:
    """Refuse data so large that sums of their squares overflow float64; return ``X``.

    Covariances, variances and k-means distances sum squared deviations over the rows
    and features; beyond about ``sqrt(max_float / (n d)) / 2`` they overflow to inf,
    and the fit would fail later with a message about the parameters, not the data.
    NaN entries (missing values) are ignored.
    """
    X = np.asarray(X)
    if X.dtype.kind != "f" or X.size == 0:
        return X
    top = float(np.nanmax(np.abs(X), initial=0.0))
    limit = 0.5 * np.sqrt(np.finfo(np.float64).max / X.size)
    if top > limit:
        raise ValueError(
            f"{name} has entries as large as {top:.3g} in magnitude: the sums of squares "
            f"of its {X.size} entries overflow float64 beyond {limit:.3g}; rescale {name} "
            "(for example divide it by its standard deviation) and fit again"
        )
    return X


#: Largest output a sampling or forecasting method may allocate, in bytes (16 GiB).
MAX_OUTPUT_BYTES = 2**34


def check_output_size(n: int, name: str, bytes_each: float, *, what: str, fix: str) -> None:
    """Refuse a request whose output cannot reasonably be held in memory.

    Checked before anything is drawn or computed, so a mistyped size (``10**12``) fails at
    once with this message instead of a raw ``MemoryError`` or minutes of work.

    Parameters
    ----------
    n : int
        The requested count (samples, steps), already checked to be a positive integer.
    name : str
        Its argument name, for the message.
    bytes_each : float
        Bytes of output per unit of ``n`` (over all returned arrays).
    what : str
        What is allocated, e.g. ``"the samples and their labels"``.
    fix : str
        How to get what was wanted within the budget, e.g. ``"draw them in batches"``.

    Raises
    ------
    ValueError
        If ``n * bytes_each`` exceeds ``MAX_OUTPUT_BYTES``.
    """
    need = float(n) * float(bytes_each)
    if need > MAX_OUTPUT_BYTES:
        most = int(MAX_OUTPUT_BYTES // max(float(bytes_each), 1.0))
        raise ValueError(
            f"{name}={n} is too large: {what} would take {need / 2**30:.3g} GiB, more than "
            f"the limit of {MAX_OUTPUT_BYTES / 2**30:.0f} GiB ({name} <= {most} here); {fix}"
        )


def check_imputations_size(n_imputations: int, n_samples: int, n_features: int) -> None:
    """:func:`check_output_size` of ``n_imputations`` completed copies of (n_samples,
    n_features) float64 data (``sample_imputations`` of every estimator).

    Raises
    ------
    ValueError
        If the copies would exceed ``MAX_OUTPUT_BYTES``.
    """
    check_output_size(
        n_imputations, "n_imputations", 8.0 * n_samples * n_features,
        what=f"{n_imputations} completed copies of the {n_samples} x {n_features} data",
        fix="draw fewer at a time (a different random_state for each)",
    )
