"""Where the engine's E-steps get their data: one array, slices of it, or a sequence of chunks.

A :class:`DataSource` also says how a pass over all its data runs
(:meth:`DataSource.map_reduce`): here chunk by chunk in this process. A source whose
data live elsewhere (``emframe.distributed.DaskSource``, registered through
:mod:`emframe.core.executors`) overrides it and :meth:`DataSource.init_sample`, so the
one fit loop serves both.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from emframe.core.validation import check_sample_weight


def relative_weights(sample_weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights divided by the mean of the positive ones, and that mean.

    Only relative weights matter to a fit: the engine works with weights of mean
    one over the rows that have positive weight, so multiplying every weight by a
    constant (1e-300 or 1e300) changes nothing, and the responsibility floors,
    the priors (``reg_covar``, Dirichlet pseudo-counts) and the monotonicity
    guard act as for unit weights. Computed without overflow or underflow.

    Parameters
    ----------
    sample_weight : ndarray of shape (n_samples,)
        Finite, non-negative, not all zero.

    Returns
    -------
    weights : ndarray of shape (n_samples,)
        A new array; equal positive weights become exactly 1.
    scale : float
        The mean of the positive weights: ``weights * scale`` is the input.
    """
    w = np.asarray(sample_weight, dtype=float)
    top = float(w.max())
    positive = w > 0
    scale = top * float(np.mean(w[positive] / top))
    return w / scale, scale
#: Default number of rows drawn by :meth:`DataSource.init_sample` to initialise a fit.
INIT_SAMPLE_SIZE = 10_000


def unit_sizes(chunk: Any) -> np.ndarray:
    """Rows in each independent unit of a data chunk, shape (n_units,).

    A row array is made of units of one row each. A data unit that groups rows
    (for example a batch of whole HMM sequences) says so by implementing the
    sampling protocol: ``unit_sizes()``, ``take_units(indices)`` and the
    class method ``concatenate_units(parts)``.
    """
    if hasattr(chunk, "unit_sizes"):
        return np.asarray(chunk.unit_sizes(), dtype=np.int64)
    return np.ones(len(chunk), dtype=np.int64)


def take_units(chunk: Any, idx: np.ndarray) -> Any:
    """The units at the sorted indices ``idx`` of a data chunk (rows, or whole sequences)."""
    if hasattr(chunk, "take_units"):
        return chunk.take_units(idx)
    if not hasattr(chunk, "__getitem__") or isinstance(chunk, (list, tuple)):
        chunk = np.asarray(chunk)
    return chunk[idx]


def concatenate_units(parts: Sequence[Any]) -> Any:
    """Data chunks of one kind joined along their units, in order (one is returned as is)."""
    if len(parts) == 1:
        return parts[0]
    if hasattr(parts[0], "concatenate_units"):
        return type(parts[0]).concatenate_units(parts)
    return np.concatenate([np.asarray(p) for p in parts])


def _samplable(chunk: Any) -> bool:
    return hasattr(chunk, "take_units") or isinstance(chunk, (np.ndarray, list, tuple))


def draw_rows(n: int, rng: np.random.Generator, max_rows: int | None) -> np.ndarray:
    """:func:`draw_units` for ``n`` units of one row each, without building their sizes."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(rng.choice(n, size=max_rows, replace=False))


def draw_units(sizes: np.ndarray, rng: np.random.Generator, max_rows: int | None) -> np.ndarray:
    """Sorted indices of the units to keep: all if they hold at most ``max_rows`` rows.

    Otherwise rows (units of one row) are drawn without replacement, and larger
    units (whole sequences) in a random order until the next one would exceed
    ``max_rows`` rows (at least one is kept). Only ``rng`` and ``sizes`` decide the
    draw, so any way of cutting the same data into chunks gives the same units.
    """
    n_units = len(sizes)
    if max_rows is None or int(sizes.sum()) <= max_rows:
        return np.arange(n_units)
    if np.all(sizes == 1):
        return draw_rows(n_units, rng, max_rows)
    order = rng.permutation(n_units)
    keep = max(1, int(np.searchsorted(np.cumsum(sizes[order]), max_rows, side="right")))
    return np.sort(order[:keep])


def check_not_iterator(data: Any, name: str = "data") -> None:
    """Refuse a one-shot iterator (a generator object), which EM could read only once."""
    if isinstance(data, Iterator):
        raise TypeError(
            f"{name} is a one-shot iterator ({type(data).__name__}), but EM reads the data "
            "more than once (to initialise, on every iteration, and to score the result); "
            "pass a list of chunks, or a function that returns a new iterator of chunks "
            "on every call (for a generator function gen, pass gen, not gen())"
        )


def add(a: Any, b: Any) -> Any:
    """``a + b``, element by element for tuples (partial results of a map-reduce)."""
    if isinstance(a, tuple):
        return tuple(add(x, y) for x, y in zip(a, b, strict=True))
    return a + b


class DataSource:
    """A re-iterable source of data chunks for the E-step.

    Parameters
    ----------
    data : array-like, sequence of chunks, or callable
        - an ndarray (including ``numpy.memmap``): one chunk, or slices of
          ``chunk_size`` rows when ``chunk_size`` is given, so only one slice is
          in memory at a time;
        - a list or tuple of chunks;
        - a callable returning a fresh iterator of chunks on every call (for
          data generated or read on the fly).

        A one-shot iterator or generator is rejected, because EM passes over the
        data once per iteration.
    sample_weight : ndarray of shape (n_samples,), optional
        Per-sample weights, only with array data; sliced along with it. They are
        stored relative to the mean positive weight (see :func:`relative_weights`),
        which is kept as :attr:`weight_scale`.
    chunk_size : int, optional
        Rows per chunk for array data.
    transform : callable, optional
        Applied to every chunk as it is read (validation, conversion).
    """

    def __init__(
        self,
        data: Any,
        *,
        sample_weight: np.ndarray | None = None,
        chunk_size: int | None = None,
        transform: Callable[[Any], Any] | None = None,
    ) -> None:
        check_not_iterator(data)
        if chunk_size is not None:
            if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)):
                raise TypeError(f"chunk_size must be a positive int, got {chunk_size!r}")
            if chunk_size <= 0:
                raise ValueError(f"chunk_size must be a positive int, got {chunk_size}")
            if not hasattr(data, "shape"):
                raise TypeError(
                    "chunk_size applies to array data; a list of chunks is chunked already"
                )
        self._is_array = hasattr(data, "shape") and hasattr(data, "__getitem__")
        if sample_weight is not None and not self._is_array:
            raise TypeError("sample_weight is only supported with array data, not with chunks")
        #: Mean of the positive sample weights (1.0 without weights): the fit sees
        #: ``sample_weight / weight_scale``.
        self.weight_scale = 1.0
        if sample_weight is not None:
            w = check_sample_weight(sample_weight, data.shape[0])
            sample_weight, self.weight_scale = relative_weights(w)
        self.data = data
        self.sample_weight = sample_weight
        self.chunk_size = chunk_size
        self.transform = transform
        # rows in each unit of each chunk, once counted (lists of chunks and streams), and
        # the chunks themselves while they hold at most INIT_SAMPLE_SIZE rows
        self._unit_sizes: list[np.ndarray] | None = None
        self._small: list[Any] | None = None

    @property
    def is_array(self) -> bool:
        """True for one array (in memory or memory-mapped), sliced or not."""
        return self._is_array

    @property
    def is_chunked(self) -> bool:
        """True when the E-step sees the data in more than one piece."""
        return not self._is_array or self.chunk_size is not None

    @property
    def is_local(self) -> bool:
        """True when the chunks are read in this process and can be iterated here.

        A source on a cluster is not: it runs passes with :meth:`map_reduce` only,
        so online EM, which steps through the chunks here, does not apply to it.
        """
        return True

    def map_reduce(self, func: Callable[[Any, np.ndarray | None], Any],
                   combine: Callable[[Any, Any], Any] | None = None) -> Any:
        """One pass over the data: ``func(chunk, weights)`` on every chunk, results combined.

        Every pass the engine makes (E-steps, log-likelihoods) and every summary an
        estimator needs of all the data (a bounding box, observed counts) goes
        through here, so a source that holds its data elsewhere overrides this one
        method (there ``func`` must be picklable and the partial results are
        combined in a tree, in an order that depends only on the number of chunks).

        Parameters
        ----------
        func : callable
            ``func(chunk, weights_or_None)``, a chunk as iteration yields it
            (transformed), its weights relative to their mean.
        combine : callable, optional
            Combines two results; default :func:`add`.

        Returns
        -------
        The combined result.

        Raises
        ------
        ValueError
            If the source yields no chunk.
        """
        combine = add if combine is None else combine
        total: Any = None
        first = True
        for chunk, w in self:
            value = func(chunk, w)
            total, first = (value if first else combine(total, value)), False
        if first:
            raise ValueError("the data source is empty: it yielded no chunk")
        return total

    def _raw(self) -> Iterable[tuple[Any, np.ndarray | None]]:
        if self._is_array:
            n = self.data.shape[0]
            step = self.chunk_size or max(n, 1)
            for start in range(0, n, step):
                w = None if self.sample_weight is None else self.sample_weight[start : start + step]
                yield self.data[start : start + step], w
        else:
            chunks = self.data() if callable(self.data) else self.data
            for chunk in chunks:
                yield chunk, None

    def __iter__(self) -> Iterator[tuple[Any, np.ndarray | None]]:
        """Yield ``(chunk, weights_or_None)`` pairs, transformed."""
        for chunk, w in self._raw():
            yield (self.transform(chunk) if self.transform else chunk), w

    def first(self) -> Any:
        """The first chunk (the whole array when not chunked), transformed."""
        for chunk, _ in self:
            return chunk
        raise ValueError("the data source is empty: it yielded no chunk")

    def _count_units(self) -> list[np.ndarray]:
        """Rows in every unit of every chunk (see :func:`unit_sizes`), read once and kept.

        Data small enough to be the default initialisation sample are kept too, so that
        :meth:`init_sample` need not read them again.
        """
        if self._unit_sizes is None:
            sizes: list[np.ndarray] = []
            small: list[Any] | None = []
            total = 0
            for chunk, _ in self._raw():
                sizes.append(unit_sizes(chunk))
                total += int(sizes[-1].sum())
                if small is not None and total <= INIT_SAMPLE_SIZE and _samplable(chunk):
                    small.append(chunk)
                else:
                    small = None
            self._unit_sizes, self._small = sizes, small
        return self._unit_sizes

    def count_rows(self) -> int:
        """Number of rows in the data (time steps for HMM sequences), counted once.

        With sample weights, the rows of positive weight: the sum of the relative
        weights the fit uses (see :func:`relative_weights`). The same number whether
        the data come whole, sliced, memory-mapped, as a list of chunks or streamed.
        An array's rows come from its shape; a list of chunks or a stream is read
        once (raw, without ``transform``), and :meth:`init_sample` then reuses the
        count instead of reading it once more for it.

        Executors that hold the data elsewhere override this method.
        """
        if self._is_array:
            if self.sample_weight is not None:
                return int(np.count_nonzero(self.sample_weight > 0))
            return int(self.data.shape[0])
        return int(sum(int(s.sum()) for s in self._count_units()))

    def init_sample(self, rng: np.random.Generator, max_rows: int | None = INIT_SAMPLE_SIZE) -> Any:
        """A seeded random sample of the data, to initialise a fit from.

        The units are drawn over the whole data (all chunks), by their global
        index, with :func:`draw_units`: rows of an array, or whole sequences for a
        data unit that groups rows (see :func:`unit_sizes`). Whether the data come
        as one array, as slices of it (``chunk_size``, a ``numpy.memmap``), as a
        list of chunks or as a stream, the same ``rng`` state therefore gives the
        same sample, in the data's order, and so the same initial parameters.
        When the data hold at most ``max_rows`` rows the sample is all of it
        (``None``: always all of it). Sample weights are not used.

        A list of chunks is read once; a callable stream is read once to count
        its rows and, if it holds more than ``max_rows``, once more to collect
        the sample (after :meth:`count_rows`, which keeps small data, only the
        second pass is needed). Chunks of a type that supports none of this
        (neither an array nor the protocol) give the first chunk, as in earlier
        versions.

        Executors that hold the data elsewhere (a cluster) override this method
        and must return the same sample for the same ``rng`` state.

        Parameters
        ----------
        rng : numpy Generator
            Decides the sample; it is not used when all the data are taken.
        max_rows : int or None
            Largest number of rows in the sample.

        Returns
        -------
        data unit
            Transformed like every chunk (validated, converted).
        """
        if self._is_array:
            n = self.data.shape[0]
            if n == 0:
                raise ValueError("the data source is empty: it has no rows")
            if max_rows is None or n <= max_rows:
                sample = self.data
            else:
                sample = self.data[draw_rows(n, rng, max_rows)]
            return self.transform(sample) if self.transform else sample
        sizes, kept, complete = [], [], True
        budget = np.inf if max_rows is None else max_rows
        counted, small, self._small = self._unit_sizes, self._small, None
        if counted is not None and budget < sum(int(s.sum()) for s in counted):
            sizes, complete = counted, False  # counted already: only the pass that draws
        elif counted is not None and small is not None:
            sizes, kept = counted, small  # counted and kept already: no pass at all
        else:
            for chunk, _ in self._raw():
                if not _samplable(chunk):
                    return self.first()
                s = unit_sizes(chunk)
                sizes.append(s)
                budget -= int(s.sum())
                if budget >= 0:
                    kept.append(chunk)  # all the data may fit: keep it, no second pass
                else:
                    complete, kept = False, []
            self._unit_sizes = sizes
        if not sizes or not any(int(s.sum()) for s in sizes):
            raise ValueError("the data source is empty: it yielded no rows")
        if not complete:
            idx = draw_units(np.concatenate(sizes), rng, max_rows)
            offsets = np.cumsum([0] + [len(s) for s in sizes])
            for i, (chunk, _) in enumerate(self._raw()):
                if not _samplable(chunk):
                    return self.first()
                local = idx[(idx >= offsets[i]) & (idx < offsets[i + 1])] - offsets[i]
                if local.size:
                    kept.append(take_units(chunk, local))
        kept = [c for c in kept if len(unit_sizes(c))]
        sample = concatenate_units(kept)
        return self.transform(sample) if self.transform else sample
