"""Where the engine's E-steps get their data: one array, slices of it, or a sequence of chunks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
        if isinstance(data, Iterator):
            raise TypeError(
                "data is a one-shot iterator, but EM reads the data once per iteration; "
                "pass a list of chunks, or a function that returns a new iterator of chunks"
            )
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

    @property
    def is_chunked(self) -> bool:
        """True when the E-step sees the data in more than one piece."""
        return not self._is_array or self.chunk_size is not None

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
        """The data used to initialise: the whole array, or the first chunk."""
        for chunk, _ in self:
            return chunk
        raise ValueError("the data source is empty: it yielded no chunk")
