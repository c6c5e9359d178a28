"""Initial responsibilities and checks of user-given initial values for Gaussian mixtures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emframe.core.validation import check_array
from emframe.inference.kmeans import kmeans_labels, kmeans_plusplus

__all__ = ["INIT_METHODS", "LABEL_METHODS"]


def _one_hot(n: int, n_components: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    resp = np.zeros((n, n_components))
    resp[rows, cols] = 1.0
    return resp


def _resp_kmeans(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    # k-means on a seeded subsample of at most 10,000 rows, then every row labelled.
    labels = kmeans_labels(X, n_components, rng)
    return _one_hot(X.shape[0], n_components, np.arange(X.shape[0]), labels)


def _resp_kmeans_plusplus(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    idx = kmeans_plusplus(X, n_components, rng)
    return _one_hot(X.shape[0], n_components, idx, np.arange(n_components))


def _resp_random(X: np.ndarray, n_components: int, rng: np.random.Generator) -> np.ndarray:
    resp = rng.uniform(size=(X.shape[0], n_components))
    return resp / resp.sum(axis=1, keepdims=True)


def _resp_random_from_data(X: np.ndarray, n_components: int, rng: np.random.Generator) -> Any:
    idx = rng.choice(X.shape[0], size=n_components, replace=False)
    return _one_hot(X.shape[0], n_components, idx, np.arange(n_components))


#: Initial responsibilities for each ``init_params`` value.
INIT_METHODS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "kmeans": _resp_kmeans,
    "k-means++": _resp_kmeans_plusplus,
    "random": _resp_random,
    "random_from_data": _resp_random_from_data,
}


def _check_init_params(init_params: Any) -> str:
    if isinstance(init_params, str) and init_params in INIT_METHODS:
        return init_params
    valid = ", ".join(repr(k) for k in INIT_METHODS)
    raise ValueError(f"init_params must be one of {valid}; got {init_params!r}")


def _check_weights(weights: Any, n_components: int) -> np.ndarray:
    given = np.asarray(weights)
    # a sum is only as exact as the dtype it was normalised in (float32: 1.00000006)
    eps = np.finfo(given.dtype).eps if given.dtype.kind == "f" else 0.0
    w = check_array(weights, "weights_init", ensure_2d=False, copy=True)
    if w.shape != (n_components,):
        raise ValueError(
            f"weights_init must have shape ({n_components},) (one weight per component), "
            f"got {w.shape}"
        )
    if (w < 0).any() or (w > 1).any():
        raise ValueError(
            f"weights_init must lie in [0, 1]; got min {w.min():.6g}, max {w.max():.6g}"
        )
    if abs(w.sum() - 1.0) > max(1e-8, 4 * n_components * eps):
        raise ValueError(f"weights_init must sum to 1; got sum {w.sum():.10g}")
    # renormalised in float64 when given in a coarser dtype
    return w if given.dtype == np.float64 else w / w.sum()


def _check_means(means: Any, n_components: int, n_features: int) -> np.ndarray:
    m = check_array(means, "means_init", ensure_2d=False, copy=True)
    if m.shape != (n_components, n_features):
        raise ValueError(f"means_init must have shape (n_components, n_features) = "
                         f"({n_components}, {n_features}), got {m.shape}")
    return m

#: The ``init_params`` values that label every row with one component, and their labels;
#: their moments are taken from the labels (no (n, K) responsibility matrix), with the
#: same draws and the same results as from :data:`INIT_METHODS`' one-hot responsibilities.
LABEL_METHODS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "kmeans": kmeans_labels,
}
