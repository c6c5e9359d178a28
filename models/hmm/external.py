"""Sequence estimators (HMMs, state-space models) on data held by an executor (Dask).

The data unit is a :class:`~emframe.models.hmm.model.Sequences` built where each
partition lives; the executor cuts the rows so that every partition holds whole
sequences (and its rows of the known ``states``). The model is built on the client
from a few rows (:data:`PROBE_ROWS` and the rows of each column's maximum, so that an
alphabet read off the data is that of all of it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from emframe.core.data import DataSource
from emframe.core.executors import External, as_external, lazy_sequences
from emframe.core.loop import ChunkLogLikelihood
from emframe.inference.hmm import validate_lengths

__all__ = ["PROBE_ROWS", "count_values", "hmm_source", "lazy", "sequence_total",
           "sequence_source"]

#: Leading rows read into memory to build an HMM's model from a Dask array.
PROBE_ROWS = 1000


def count_values(unit: Any, _: Any) -> int:
    """Observed values (not NaN) of a :class:`Sequences` unit; a map-reduce function."""
    X = np.asarray(unit.X)
    return int(np.count_nonzero(~np.isnan(X))) if X.dtype.kind == "f" else int(X.size)


class _FitUnits:
    """A partition as the data unit of a fit: the estimator's own validation, its labels."""

    def __init__(self, estimator: Any, model: Any) -> None:
        self.estimator = estimator
        self.model = model

    def __call__(self, block: np.ndarray, lengths: np.ndarray, states: Any = None) -> Any:
        seqs = self.estimator._validate_sequences(block, lengths, self.model.emission, states)
        self.model.check_labels(seqs)
        return seqs


class _CheckedUnits:
    """A partition checked against a fitted estimator (``_check_data``)."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def __call__(self, block: np.ndarray, lengths: np.ndarray, *states: Any) -> Any:
        return self.estimator._check_data(block, lengths, *states)


class _Call:
    """``method(block, lengths, [states=...], **kwargs)`` for a partition (picklable)."""

    def __init__(self, method: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.method = method
        self.kwargs = kwargs

    def __call__(self, block: np.ndarray, lengths: np.ndarray, *states: Any) -> Any:
        extra = {"states": states[0]} if states else {}
        return self.method(block, lengths, **extra, **self.kwargs)


def _check(ext: External, lengths: Any, states: Any, chunk_size: Any = None) -> np.ndarray:
    if chunk_size is not None:
        raise ValueError(
            f"chunk_size applies to in-process data; a {ext.executor.name} array is cut into "
            "partitions of whole sequences following its chunks: rechunk it to change them"
        )
    if len(ext.shape) != 2:
        raise ValueError(
            f"Expected a 2-D {ext.executor.name} array (n_samples, n_features), got shape "
            f"{ext.shape}; reshape it, for example X.reshape(-1, 1) for one feature"
        )
    n = ext.n_rows()
    if np.dtype(getattr(ext.data, "dtype", float)).kind in "USV":
        raise TypeError(f"the data must be numeric, got a {ext.executor.name} array of dtype "
                        f"{ext.data.dtype}")
    if states is not None and tuple(np.shape(states)) != (n,):
        raise ValueError(
            f"states must have one label per row of X, shape ({n},), for a "
            f"{ext.executor.name} array; got shape {tuple(np.shape(states))}"
        )
    return validate_lengths(ext.to_local(lengths), n)


def hmm_source(estimator: Any, ext: External, lengths: Any, states: Any,
               chunk_size: Any) -> tuple[Any, DataSource]:
    """The model and data source of ``HMM.fit`` on external data.

    The model is built by the estimator's ``_build`` from the rows the executor
    probes (see :meth:`~emframe.core.executors.Executor.probe_rows`); every partition
    is validated (and its labels checked) where it lives.
    """
    lengths = _check(ext, lengths, states, chunk_size)
    data, probe = ext.executor.probe_rows(ext.data, PROBE_ROWS, ext.options, lengths)
    try:
        model, seqs = estimator._build(probe, None)
    except ValueError as exc:
        m = min(PROBE_ROWS, int(ext.shape[0]))
        raise ValueError(
            f"{exc} (in the rows of X read to build the model: its first {m} rows and the "
            "row of each column's maximum)"
        ) from None
    estimator._check_width(seqs, model.emission, reset=True)
    source = ext.executor.source(data, options=ext.options, lengths=lengths,
                                 transform=_FitUnits(estimator, model), row_data=(states,))
    return model, source


def sequence_source(ext: External, lengths: Any, transform: Callable[..., Any],
                    chunk_size: Any = None) -> DataSource:
    """A source of whole sequences over external data, units made by ``transform``."""
    lengths = _check(ext, lengths, None, chunk_size)
    return ext.source(lengths=lengths, transform=transform)


def sequence_total(estimator: Any, ext: External, lengths: Any, states: Any = None,
                   func: Any = None) -> tuple[float, float]:
    """Total log-likelihood and number of modelled steps of external data.

    Summed where the partitions are; ``func(unit, weights)`` gives one partition's
    pair (default: the fitted model's ``log_likelihood`` and ``n_samples``).
    """
    estimator._check_is_fitted()
    lengths = _check(ext, lengths, states)
    source = ext.source(lengths=lengths, transform=_CheckedUnits(estimator),
                        row_data=(states,), one_pass=True)
    if func is None:
        func = ChunkLogLikelihood(estimator._model, estimator.params_)
    ll, n = source.map_reduce(func)
    return float(ll), float(n)


def lazy(estimator: Any, method: Callable[..., Any], X: Any, lengths: Any, states: Any,
         *outputs: Any, out_rows: Callable[[np.ndarray], int] | None = None,
         **kwargs: Any) -> Any:
    """``method(block, lengths, states=..., **kwargs)`` per partition of whole sequences.

    Lazy arrays of the executor's kind for external ``X`` (see
    :func:`~emframe.core.executors.lazy_sequences`); None for in-memory data. Per-row
    outputs have one row per modelled step (``T - order`` of a sequence of ``T``
    steps for an emission with lags).
    """
    if as_external(X) is None:
        return None
    estimator._check_is_fitted()  # before reading its model
    if out_rows is None:
        order = int(getattr(estimator._model.emission, "order", 0) or 0) if hasattr(
            estimator._model, "emission") else 0

        def out_rows(part: np.ndarray) -> int:
            return int((part - order).sum())

    return lazy_sequences(_Call(method, kwargs), X, lengths, *outputs, estimator=estimator,
                          check_lengths=validate_lengths, row_data=(states,),
                          out_rows=out_rows)
