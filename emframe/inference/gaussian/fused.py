"""Entry points of the compiled Gaussian-mixture E-step (numba, imported lazily).

:func:`best_first_e_step`: expanded components by two products per block, the others
about their own means where lower bounds allow them a posterior above the flush threshold
(with float32 arithmetic, each row first under the component of the largest bound).
:func:`dense_e_step`: with float32 arithmetic, when some component is too far from the
common centring point for the float32 expansion (``kernel.EXPANSION_MAX_DISTANCE_32``; the
kernel then expands none) and there are at most ``kernel.DENSE_MAX_FEATURES_32`` features:
every component on every row (:mod:`~emframe.inference.gaussian._numba_dense`) instead of
best first. Measured on the
E-step alone (one BLAS thread): at d = 10 dense is 1.4-1.9x faster than best first (K = 8
and 32, components overlapping or apart); at d = 30, K = 4 best first is 5-20% faster.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..compiled import call_interruptible

#: Principal directions per far component in the lower bounds of the best-first path.
NB32 = 3


def dense_block_rows(K: int, d: int) -> int:
    """Rows per block: the K centred copies of a block (4 K d rows bytes) within about
    1 MB; never a power of two (at 1,024 or 2,048 rows the rows of those copies alias in
    cache, and the E-step is 20-30% slower)."""
    rows = max(192, min(1536, (1 << 18) // (K * d) // 64 * 64))
    return rows - 64 if rows & (rows - 1) == 0 else rows


def dense_e_step(kernel: Any, X: np.ndarray, factors: np.ndarray, shift: np.ndarray,
                 w: np.ndarray, has_w: bool, flush: float) -> tuple[np.ndarray, float]:
    """``(Gd, log_likelihood)`` of the float32 data ``X`` (n, d), as the compiled kernel
    returns them, every component scored about its float32 mean ``kernel.direct_centres``
    through its dense factor ``factors`` (K, d, d) and ``shift`` (K, d)."""
    from . import _numba_dense

    dt = np.float32
    a, b, out, summed = kernel.kind.feature_pairs(kernel.n_features)
    return call_interruptible(
        _numba_dense.mixture_e_step_dense,
        X, np.ascontiguousarray(kernel.direct_centres, dtype=dt),
        np.ascontiguousarray(np.swapaxes(factors, 1, 2), dtype=dt),
        np.ascontiguousarray(shift, dtype=dt), np.ascontiguousarray(kernel.const[kernel.direct]),
        a, b, out, summed, kernel.nq, w, has_w,
        dense_block_rows(kernel.n_components, kernel.n_features), flush,
    )


def best_first_e_step(kernel: Any, X: np.ndarray, W: np.ndarray, factors: np.ndarray,
                      shift: np.ndarray, dt: np.dtype, w: np.ndarray, has_w: bool,
                      flush: float) -> tuple[np.ndarray, np.ndarray, float]:
    """``(G, Gd, log_likelihood)`` from :func:`~emframe.inference.gaussian._numba.mixture_e_step`
    in the arithmetic ``dt``; ``W`` the expanded components' coefficients, ``factors``
    and ``shift`` the far ones' as in :func:`dense_e_step`."""
    from . import _numba

    a, b, out, summed = kernel.kind.feature_pairs(kernel.n_features)
    # leading principal directions of each precision M M' (the columns of U S, with
    # M = U S V'), shrunk by a margin for rounding: the kernel's lower bounds
    nb = min(NB32 if dt == np.float32 else 3, kernel.n_features)
    dirs = np.empty((kernel.direct.size, nb, kernel.n_features))
    for i, f in enumerate(factors):
        u, sv, _ = np.linalg.svd(f)
        dirs[i] = (u[:, :nb] * (sv[:nb] * (1.0 - 1e-6))).T
    dirs = dirs.astype(dt).astype(np.float64)  # the kernel's, rounded to its dtype
    off = np.einsum("ktd,kd->kt", dirs, kernel.means[kernel.direct] - kernel.centre.astype(dt))
    return call_interruptible(
        _numba.mixture_e_step,
        X, kernel.centre.astype(dt), W, np.ascontiguousarray(kernel.direct_centres, dtype=dt),
        np.ascontiguousarray(np.swapaxes(factors, 1, 2), dtype=dt),
        np.ascontiguousarray(shift, dtype=dt), np.ascontiguousarray(kernel.const[kernel.direct]),
        np.ascontiguousarray(dirs.reshape(-1, kernel.n_features), dtype=dt),
        np.ascontiguousarray(off.reshape(kernel.direct.size, nb)),
        a, b, out, summed, kernel.nq, w, has_w, kernel.block, flush, dt == np.float32,
    )
