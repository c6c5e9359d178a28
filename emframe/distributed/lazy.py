"""Lazy results on Dask arrays: a fitted estimator's method applied to every partition.

Nothing is computed and no data reach the client: the results are Dask arrays whose
blocks are the estimator's in-memory method applied to the blocks of ``X`` (so they
equal the in-memory results exactly). The method, with the fitted estimator, enters
the graph once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask import delayed

from emframe.core.executors import TOTAL
from emframe.core.feature_names import partition_scope

from .runner import literal
from .sequences import partition_sequences
from .source import prepare_rows, row_blocks


def _call(func: Callable[..., Any], *args: Any) -> Any:
    with partition_scope():  # a block has no column names: the client checked X
        return func(*args)


def _total(values: Sequence[Any]) -> float:
    return float(sum(values))


def _assemble(results: list[Any], outputs: Sequence[Any], rows: list[int]) -> Any:
    """Dask arrays of the outputs of one delayed call per partition."""
    single = len(outputs) == 1
    arrays = []
    for j, spec in enumerate(outputs):
        parts = [r if single else r[j] for r in results]
        if spec == TOTAL:
            arrays.append(da.from_delayed(delayed(_total)(parts), shape=(), dtype=np.float64))
            continue
        tail, dtype = spec
        pieces = [da.from_delayed(p, shape=(rows[i], *tail), dtype=dtype)
                  for i, p in enumerate(parts)]
        arrays.append(da.concatenate(pieces, axis=0) if len(pieces) > 1 else pieces[0])
    return arrays[0] if single else tuple(arrays)


def map_rows(func: Callable[..., Any], X: Any, outputs: Sequence[Any], *,
             first_row: bool = False) -> Any:
    """``func(block)`` on every row partition of ``X``, as lazy Dask arrays.

    Parameters
    ----------
    func : callable
        Maps an array of shape (n_rows, n_features) to an array of n_rows rows, or
        to a tuple of such arrays (typically a bound method of a fitted estimator).
    X : dask.array.Array of shape (n_samples, n_features)
        Columns are rechunked into one chunk when needed.
    outputs : sequence of (shape, dtype)
        For each array ``func`` returns: its shape after the row axis, its dtype.
    first_row : bool, default False
        Call ``func(block, first)`` with the number of the block's first row in ``X``.

    Returns
    -------
    dask.array.Array or tuple of them
        Chunked as the rows of ``X``.
    """
    X = prepare_rows(X)
    rows = [int(c) for c in X.chunks[0]]
    fn = literal(func)
    blocks = X.to_delayed().ravel()
    if first_row:
        firsts = np.concatenate([[0], np.cumsum(rows)[:-1]]).tolist()
        results = [delayed(_call, pure=False)(fn, block, first)
                   for block, first in zip(blocks, firsts, strict=True)]
    else:
        results = [delayed(_call, pure=False)(fn, block) for block in blocks]
    return _assemble(results, outputs, rows)


def map_sequences(
    func: Callable[..., Any],
    X: Any,
    lengths: np.ndarray,
    outputs: Sequence[Any],
    *,
    row_data: Sequence[Any] = (),
    out_rows: Callable[[np.ndarray], int] | None = None,
) -> Any:
    """``func(block, block_lengths, *row_data_blocks)`` on partitions of whole sequences.

    ``X`` is repartitioned at sequence boundaries (as for fitting), so each call sees
    whole sequences and equals the in-memory result on them.

    Parameters
    ----------
    func : callable
    X : dask.array.Array of shape (n_samples, n_features)
    lengths : ndarray of int
        Validated sequence lengths summing to ``n_samples``.
    outputs : sequence of (shape, dtype) or ``TOTAL``
        What ``func`` returns, in order: ``TOTAL`` for a number summed over the
        partitions (a 0-d Dask array), else per-row arrays.
    row_data : sequence of arrays of shape (n_samples,) or None
        Cut like ``X`` and passed after the lengths (``None`` entries are skipped).
    out_rows : callable, optional
        Rows of a per-row output from a partition's lengths (default their sum).

    Returns
    -------
    dask.array.Array or tuple of them
    """
    X = prepare_rows(X)
    sizes, parts = partition_sequences([int(c) for c in X.chunks[0]], lengths)
    if tuple(sizes) != X.chunks[0]:
        X = X.rechunk({0: tuple(sizes)})
    extra = [row_blocks(r, "row data", sizes) for r in row_data if r is not None]
    fn = literal(func)
    results = [
        delayed(_call, pure=False)(fn, block, parts[i], *(e[i] for e in extra))
        for i, block in enumerate(X.to_delayed().ravel())
    ]
    rows = [int(out_rows(p)) if out_rows is not None else int(p.sum()) for p in parts]
    return _assemble(results, outputs, rows)
