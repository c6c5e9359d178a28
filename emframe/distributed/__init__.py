"""Fitting, scoring and predicting on Dask arrays: emframe's passes where the data live.

Install with ``pip install "emframe[dask]"``. Importing this package (``import
emframe`` does) does not import Dask: it registers :class:`DaskExecutor` with
:mod:`emframe.core.executors`, which recognises a ``dask.array.Array`` by looking at
``sys.modules``; the modules that use Dask are loaded when a Dask array is first
passed.

- :class:`~emframe.distributed.source.DaskSource`: a
  :class:`~emframe.core.data.DataSource` whose passes (E-steps, log-likelihoods)
  run on the partitions of a Dask array, summed by a tree reduction on the workers.
- :func:`~emframe.distributed.lazy.map_rows`,
  :func:`~emframe.distributed.lazy.map_sequences`: a fitted estimator's method on
  every partition, as a lazy Dask array.
- :func:`~emframe.distributed.files.read_lazy`: ``.npy`` (and CSV) files as Dask
  arrays, for the command line.

See docs/scaling_out.md.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource
from emframe.core.executors import Executor, register

_LAZY = {
    "DaskSource": ".source",
    "prepare_rows": ".source",
    "Runner": ".runner",
    "partition_sequences": ".sequences",
    "map_rows": ".lazy",
    "map_sequences": ".lazy",
    "read_lazy": ".files",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_dask_array(x: Any) -> bool:
    """True when ``x`` is a ``dask.array.Array`` (checked without importing dask)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(x, da.Array)


class DaskExecutor(Executor):
    """emframe's passes on Dask arrays (registered when this package is imported).

    Options of ``fit`` (see :class:`~emframe.distributed.source.DaskSource`):
    ``scheduler`` (a ``distributed.Client``, ``"threads"``, ``"sync"``; default the
    default client if there is one, else Dask's local scheduler), ``split_every``
    (fan-in of the tree reduction, default 8) and ``persist`` (keep the validated
    partitions in worker memory for the fit, default True).
    """

    name = "Dask"
    options = ("scheduler", "split_every", "persist")

    def accepts(self, data: Any) -> bool:
        return is_dask_array(data)

    def source(self, data: Any, *, options: Mapping[str, Any], sample_weight: Any = None,
               transform: Callable[..., Any] | None = None,
               lengths: np.ndarray | None = None, row_data: Sequence[Any] = (),
               one_pass: bool = False) -> DataSource:
        from .source import DaskSource

        opts = dict(options)
        if one_pass and opts.get("persist") is None:
            opts["persist"] = False  # read once: keeping the partitions would not pay
        return DaskSource(data, sample_weight=sample_weight, transform=transform,
                          lengths=lengths, row_data=row_data, **opts)

    def map_rows(self, func: Callable[..., Any], data: Any, outputs: Sequence[Any], *,
                 first_row: bool = False) -> Any:
        from .lazy import map_rows

        return map_rows(func, data, outputs, first_row=first_row)

    def map_sequences(self, func: Callable[..., Any], data: Any, lengths: np.ndarray,
                      outputs: Sequence[Any], *, row_data: Sequence[Any] = (),
                      out_rows: Callable[[np.ndarray], int] | None = None) -> Any:
        from .lazy import map_sequences

        return map_sequences(func, data, lengths, outputs, row_data=row_data,
                             out_rows=out_rows)

    def probe_rows(self, data: Any, n_head: int, options: Mapping[str, Any],
                   lengths: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        import dask.array as da

        from .runner import Runner
        from .sequences import partition_sequences
        from .source import prepare_rows

        runner = Runner(options.get("scheduler"))
        X = prepare_rows(data)
        if lengths is not None:
            sizes, _ = partition_sequences([int(c) for c in X.chunks[0]], lengths)
            if tuple(sizes) != X.chunks[0]:
                X = X.rechunk({0: tuple(sizes)})
        if options.get("persist") is None or options.get("persist"):
            X = runner.persist_collection(X)  # read once: the probe and the fit use it
        m = min(int(X.shape[0]), int(n_head))
        if X.dtype.kind in "fc":
            top = runner.compute(da.where(da.isnan(X), -np.inf, X).argmax(axis=0))
        else:
            top = runner.compute(X.argmax(axis=0))
        rows = np.unique(np.concatenate([np.arange(m), np.asarray(top, dtype=np.int64)]))
        return X, np.asarray(runner.compute(X[rows]))

    def to_local(self, data: Any, options: Mapping[str, Any]) -> np.ndarray:
        from .runner import Runner

        return np.asarray(Runner(options.get("scheduler")).compute(data))


register(DaskExecutor())

__all__ = [
    "DaskExecutor",
    "DaskSource",
    "Runner",
    "is_dask_array",
    "map_rows",
    "map_sequences",
    "partition_sequences",
    "prepare_rows",
    "read_lazy",
]
