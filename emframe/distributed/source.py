"""The engine's passes over a Dask array: each partition's part computed where it lives.

:class:`DaskSource` is a :class:`~emframe.core.data.DataSource` whose
:meth:`~DaskSource.map_reduce` is a Dask graph instead of the in-process chunk loop;
the fit loop (restarts, tolerance, SQUAREM, the guard, callbacks, history) is the
engine's, unchanged. Per E-step:

1. the E-step task (the model and the parameters) enters the graph once, as one
   node (each worker fetches it once); being a node of the graph and not a
   broadcast, it is recomputed like any task when a worker is lost;
2. every partition computes ``(stats, log_likelihood, n_samples)`` with the
   model's own ``e_step`` (the engine's :class:`~emframe.core.loop.EStep`);
3. the partial results are summed in a tree of fan-in ``split_every`` on the workers;
4. only the summed statistics (O(K d^2) numbers) and two floats reach the client.

The partitions are validated (the estimator's own check) and persisted once per fit
(``persist=True``), so later E-steps neither re-read nor re-validate the data.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from dask import delayed

from emframe.core import data as _data
from emframe.core.data import DataSource, add, concatenate_units, take_units, unit_sizes
from emframe.core.feature_names import partition_scope
from emframe.core.validation import check_sample_weight

from .runner import Runner, check_split_every, literal
from .sequences import partition_sequences


def _same(block: np.ndarray) -> np.ndarray:
    return block


def prepare_rows(X: Any, name: str = "X") -> Any:
    """Check a Dask array for row-wise processing; rechunk its columns into one chunk.

    Every task needs whole rows, so a column-chunked array is rechunked (lazily, once:
    the result is what gets persisted). The result is renamed (an identity layer with
    a name of its own, fused away by Dask's optimisation), so the keys emframe derives
    from it never meet the same expression computed by the user, say a lazy prediction
    right after a fit, under another task definition ("different run_spec for key").

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has no row or no feature, or has unknown chunk sizes.
    """
    if X.ndim != 2:
        raise ValueError(
            f"Expected a 2-D Dask array for {name} (n_samples, n_features), got {X.ndim} "
            f"dimension(s) (shape {X.shape}); reshape it, e.g. {name}.reshape(-1, 1)"
        )
    if any(np.isnan(c) for c in X.chunks[0]) or any(np.isnan(c) for c in X.chunks[1]):
        raise ValueError(
            f"{name} has unknown chunk sizes (a Dask array made from a DataFrame?); call "
            f"{name}.compute_chunk_sizes() or build it with to_dask_array(lengths=True)"
        )
    if X.shape[1] == 0:
        raise ValueError(f"{name} has 0 features (shape {X.shape}); at least 1 is required")
    if X.shape[0] == 0:
        raise ValueError(f"{name} has 0 samples (shape {X.shape}); at least 1 is required")
    X = X.map_blocks(_same, name=f"emframe-rows-{uuid.uuid4().hex}", dtype=X.dtype,
                     meta=X._meta)
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def row_blocks(values: Any, name: str, sizes: Sequence[int]) -> list[Any]:
    """A per-row array (NumPy or Dask, shape (n_samples,)) cut like the partitions."""
    n = int(sum(sizes))
    if values is None:
        return [None] * len(sizes)
    if tuple(np.shape(values)) != (n,):
        raise ValueError(
            f"{name} must have shape ({n},), one entry per row of X, got shape "
            f"{tuple(np.shape(values))}"
        )
    if hasattr(values, "to_delayed"):
        return list(values.rechunk((tuple(sizes),)).to_delayed().ravel())
    values = np.asarray(values)
    starts = np.concatenate([[0], np.cumsum(sizes)])
    return [literal(values[starts[i]: starts[i + 1]]) for i in range(len(sizes))]


# -- the tasks (module level: they are pickled by reference) ------------------------------
def _make_part(transform: Any, block: np.ndarray, w: Any, lengths: Any, start: int,
               *rows: Any) -> tuple[Any, np.ndarray | None]:
    """One partition as the model's data unit (validated) and its weights."""
    try:
        with partition_scope():  # a block has no column names: the client checked X
            unit = _unit(transform, block, lengths, rows)
    except ValueError as exc:
        stop = start + block.shape[0] - 1
        raise ValueError(f"in rows {start} to {stop} of the Dask array: {exc}") from None
    return unit, (None if w is None else np.asarray(w, dtype=np.float64))


def _unit(transform: Any, block: np.ndarray, lengths: Any, rows: Any) -> Any:
    if transform is None:
        return block
    if lengths is None:
        return transform(block)
    return transform(block, lengths, *rows)


def _apply(part: tuple[Any, Any], func: Callable[..., Any]) -> Any:
    return func(part[0], part[1])


def fold(combine: Callable[[Any, Any], Any], *values: Any) -> Any:
    """``values`` combined pairwise, in order."""
    return functools.reduce(combine, values)


def _unit_sizes(part: tuple[Any, Any], _: Any) -> np.ndarray:
    return unit_sizes(part[0])


def _take(part: tuple[Any, Any], units: np.ndarray | None) -> Any:
    return part[0] if units is None else take_units(part[0], units)


class DaskSource(DataSource):
    """Dask array data for the EM engine: every pass runs on the partitions, where they live.

    Parameters
    ----------
    data : dask.array.Array of shape (n_samples, n_features)
        Chunked along rows; chunks along columns are merged into one (lazily). Every
        row partition is one task.
    sample_weight : float, ndarray or dask array of shape (n_samples,), optional
        Divided by the mean positive weight, as :class:`DataSource` does.
    transform : callable, optional
        Applied to every partition on the workers, giving the model's data unit
        (validation, conversion); called as ``transform(block, lengths, *row_data)``
        when ``lengths`` is given.
    lengths : ndarray of int, optional
        Validated lengths of consecutive sequences summing to ``n_samples``. The rows
        are then repartitioned so that no sequence is split (see
        :func:`~emframe.distributed.sequences.partition_sequences`).
    row_data : sequence of arrays of shape (n_samples,) or None
        Per-row arrays (NumPy or Dask) handed to ``transform`` with each partition.
    scheduler : None, distributed.Client or str
        Where the graphs run (see :class:`~emframe.distributed.runner.Runner`): by
        default the default ``distributed.Client``, else Dask's local scheduler.
    split_every : int >= 2, optional
        Fan-in of the tree reduction (default 8).
    persist : bool, default True
        Keep the validated partitions in (worker) memory from their first use until
        the source is dropped at the end of the fit. ``False`` recomputes them from
        the array's graph (re-reading the data) at every pass, which bounds worker
        memory for data loaded lazily from storage.
    chunk_size : None
        Not used: the partitions are the Dask chunks (rechunk the array to change them).
    """

    def __init__(
        self,
        data: Any,
        *,
        sample_weight: Any = None,
        transform: Callable[..., Any] | None = None,
        lengths: np.ndarray | None = None,
        row_data: Sequence[Any] = (),
        scheduler: Any = None,
        split_every: int | None = None,
        persist: bool | None = None,
        chunk_size: int | None = None,
    ) -> None:
        if chunk_size is not None:
            raise ValueError(
                "chunk_size applies to in-process arrays; a Dask array is processed one "
                "partition (chunk) at a time: rechunk it instead, e.g. X.rechunk({0: 100_000})"
            )
        if persist is not None and not isinstance(persist, (bool, np.bool_)):
            raise TypeError(f"persist must be True, False or None, got {persist!r}")
        X = prepare_rows(data)
        sizes = [int(c) for c in X.chunks[0]]
        part_lengths: list[Any] = [None] * len(sizes)
        if lengths is not None:
            if transform is None:
                raise TypeError("sequences (lengths) need a transform(block, lengths, ...)")
            sizes, part_lengths = partition_sequences(sizes, np.asarray(lengths))
            if tuple(sizes) != X.chunks[0]:
                X = X.rechunk({0: tuple(sizes)})
        self.runner = Runner(scheduler)
        self.split_every = check_split_every(split_every)
        self.persist = True if persist is None else bool(persist)
        self.n = int(X.shape[0])
        self.data = X
        self.lengths = None if lengths is None else np.asarray(lengths)
        self.transform = transform
        self.chunk_size = None
        self._is_array = False
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._positive: int | None = None
        self._sizes: np.ndarray | None = None
        self.sample_weight, self.weight_scale = self._relative_weights(sample_weight)
        tf = literal(transform)
        blocks = X.to_delayed().ravel()
        weights = row_blocks(self.sample_weight, "sample_weight", sizes)
        rows = [row_blocks(r, "row data", sizes) for r in row_data if r is not None]
        self._lazy = [
            delayed(_make_part, pure=False)(tf, blocks[i], weights[i], part_lengths[i],
                                            int(self.bounds[i]), *(r[i] for r in rows))
            for i in range(len(sizes))
        ]
        self._persisted: list[Any] | None = None

    # -- weights ---------------------------------------------------------------------------
    def _relative_weights(self, sample_weight: Any) -> tuple[Any, float]:
        """Weights divided by their mean positive value (as :class:`DataSource`), and it."""
        if sample_weight is None:
            return None, 1.0
        if not hasattr(sample_weight, "to_delayed"):  # numbers and NumPy arrays
            w = check_sample_weight(sample_weight, self.n)
            return _data.relative_weights(w)
        import dask.array as da

        if sample_weight.shape != (self.n,):
            raise ValueError(
                f"sample_weight must have shape ({self.n},) to match X, got shape "
                f"{sample_weight.shape}"
            )
        w = sample_weight.astype(np.float64)
        finite, low, top = self.runner.compute((da.isfinite(w).all(), w.min(), w.max()))
        if not finite:
            raise ValueError("sample_weight contains NaN or inf; weights must be finite")
        if low < 0:
            raise ValueError(f"sample_weight must be non-negative; found {low}")
        if top == 0:
            raise ValueError(
                "sample_weight is zero for every sample; at least one must be positive")
        positive = w > 0
        total, count = self.runner.compute((da.where(positive, w / top, 0.0).sum(),
                                            positive.sum()))
        scale = float(top) * float(total) / int(count)
        self._positive = int(count)
        return w / scale, scale

    # -- the partitions ------------------------------------------------------------------
    def partitions(self) -> list[Any]:
        """Handles on every partition's ``(unit, weights)``, persisted on first use if asked.

        Futures for a Client, delayed objects for a local scheduler; without ``persist``
        they are computed anew from the array's graph at every call.
        """
        if not self.persist:
            return self.runner.handles(self._lazy)
        if self._persisted is None:
            self._persisted = self.runner.persist(self._lazy)
        return self._persisted

    @property
    def n_partitions(self) -> int:
        return len(self._lazy)

    @property
    def is_chunked(self) -> bool:
        return True

    @property
    def is_local(self) -> bool:
        return False

    def __iter__(self) -> Any:
        raise TypeError(
            "a DaskSource is processed partition by partition on the Dask scheduler and "
            "is not iterated in this process; use its map_reduce (online EM, "
            "method='online', does not apply to Dask arrays: use batch EM)"
        )

    # -- passes --------------------------------------------------------------------------
    def map_reduce(self, func: Callable[[Any, np.ndarray | None], Any],
                   combine: Callable[[Any, Any], Any] | None = None) -> Any:
        """``func(unit, weights)`` on every partition where it lives, combined on the workers.

        ``func`` enters the graph once; the partial results are combined in a tree of
        fan-in ``split_every`` whose shape depends only on the number of partitions
        (so the rounding does not depend on where the tasks ran). Only the result
        comes back.
        """
        combine = add if combine is None else combine
        return self.runner.map_reduce(_apply, self.partitions(), (func,),
                                      functools.partial(fold, combine), self.split_every)

    # -- units brought to the client -------------------------------------------------------
    def _gather(self, picks: list[tuple[int, np.ndarray | None]]) -> Any:
        """Units of the chosen partitions (all of them where the index array is None)."""
        which = [i for i, _ in picks]
        if self.persist:
            handles = self.partitions()
            parts = [handles[i] for i in which]
        else:  # only the partitions holding these units
            parts = self.runner.handles([self._lazy[i] for i in which])
        return concatenate_units(self.runner.map_gather(_take, parts, [u for _, u in picks]))

    def _unit_bounds(self) -> np.ndarray:
        """``[0, ...]``: the units of partition ``i`` are ``bounds[i]:bounds[i+1]``.

        For sequences, the units' sizes as the validated units report them (an
        autoregressive HMM's sequences are shorter by their lags) are gathered once.
        """
        if self.lengths is None:  # one unit per row
            return self.bounds
        if self._sizes is None:
            sizes = self.runner.map_gather(_unit_sizes, self.partitions(),
                                           [None] * self.n_partitions)
            self._sizes = np.concatenate(sizes)
            self._size_bounds = np.concatenate(
                [[0], np.cumsum([len(s) for s in sizes])]).astype(np.int64)
        return self._size_bounds

    def count_rows(self) -> int:
        """Rows of the data (modelled steps of sequences), as :class:`DataSource` counts them.

        With sample weights, the rows of positive weight. Known from the shape, or
        from the units' sizes gathered from the workers (one small array each).
        """
        if self.lengths is not None:
            self._unit_bounds()
            return int(self._sizes.sum())
        if self.sample_weight is None:
            return self.n
        if self._positive is None:  # NumPy weights
            self._positive = int(np.count_nonzero(self.sample_weight > 0))
        return self._positive

    def _pick(self, units: np.ndarray, bounds: np.ndarray) -> list[tuple[int, np.ndarray | None]]:
        picks = []
        for i in range(self.n_partitions):
            lo, hi = int(bounds[i]), int(bounds[i + 1])
            local = units[(units >= lo) & (units < hi)] - lo
            if local.size == hi - lo and hi > lo:
                picks.append((i, None))
            elif local.size:
                picks.append((i, local))
        return picks

    def init_sample(self, rng: np.random.Generator,
                    max_rows: int | None = _data.INIT_SAMPLE_SIZE) -> Any:
        """The sample :meth:`DataSource.init_sample` draws from in-memory data, from the workers.

        The units (rows, or whole sequences) are drawn on the client with the same
        ``rng`` calls, from the numbers of rows alone (or the sequences' sizes as the
        validated units report them); only the drawn units are transferred.
        """
        bounds = self._unit_bounds()
        if self.lengths is None:
            units = _data.draw_rows(self.n, rng, max_rows)
        else:
            units = _data.draw_units(self._sizes, rng, max_rows)
        return self._gather(self._pick(units, bounds))

    def first(self) -> Any:
        """The first rows (at most ``INIT_SAMPLE_SIZE``; all of small data), on the client.

        Estimators build their model from them (shapes, reference points). For
        sequences: the first partition.
        """
        if self.lengths is not None:
            return self._gather([(0, None)])
        m = min(self.n, _data.INIT_SAMPLE_SIZE)
        return self._gather(self._pick(np.arange(m), self.bounds))


__all__ = ["DaskSource", "prepare_rows"]
