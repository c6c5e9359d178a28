"""Data that live elsewhere (a Dask cluster): the core's side of an executor.

The core imports no executor and no Dask. An executor package (``emframe.distributed``,
which ``import emframe`` loads, without importing Dask) registers an :class:`Executor`
here with :func:`register`. For the data it accepts:

- ``fit`` and :func:`~emframe.core.engine.fit_em` build its :class:`DataSource`,
  whose :meth:`~emframe.core.data.DataSource.map_reduce` runs every pass of the
  engine where the data are (the fit loop is the same one);
- the estimators' scores (``score``, ``log_likelihood``, ``bic``, ``aic``) reduce
  on it too, and their per-row methods (``predict``, ...) become lazy arrays of
  the executor's kind through :func:`lazy_rows` and :func:`lazy_sequences`.

Options of an executor (for Dask ``scheduler``, ``split_every``, ``persist``) are
keyword arguments of ``fit``; :func:`bind` takes them out of the engine options and
keeps them with the data in an :class:`External`.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from emframe.core.data import DataSource

#: A per-call output of :func:`lazy_sequences` that is one number per call (a
#: log-likelihood), summed over the partitions into a 0-d result.
TOTAL = "total"

#: An output of one value per row: the shape after the row axis and the dtype.
RowOutput = tuple[tuple[int, ...], Any]


class Executor(ABC):
    """Runs emframe's passes over data held by an engine outside this process.

    Subclasses implement the methods below for their kind of data; see
    ``emframe.distributed.DaskExecutor``.
    """

    #: Short name for messages ("Dask").
    name: str = "external"
    #: Keyword arguments of ``fit`` that configure where and how the data are processed.
    options: tuple[str, ...] = ()

    @abstractmethod
    def accepts(self, data: Any) -> bool:
        """True for data of this executor's kind (checked without importing its engine)."""

    @abstractmethod
    def source(
        self,
        data: Any,
        *,
        options: Mapping[str, Any],
        sample_weight: Any = None,
        transform: Callable[..., Any] | None = None,
        lengths: np.ndarray | None = None,
        row_data: Sequence[Any] = (),
        one_pass: bool = False,
    ) -> DataSource:
        """A :class:`DataSource` over ``data`` of shape (n_samples, n_features).

        Parameters
        ----------
        data : array of this executor's kind
        options : mapping
            The executor's options given to ``fit``.
        sample_weight : array-like of shape (n_samples,), optional
        transform : callable, optional
            Turns one partition into the model's data unit (validation, conversion),
            where the partition lives: ``transform(block)``, or with ``lengths``
            ``transform(block, block_lengths, *row_data_blocks)``.
        lengths : ndarray of int, optional
            Lengths of consecutive sequences (validated, summing to n_samples): the
            partitions then hold whole sequences.
        row_data : sequence of arrays of shape (n_samples,) or None
            Further per-row arrays (an HMM's known states) partitioned like ``data``.
        one_pass : bool
            The source is read once (a score): nothing is kept between passes.
        """

    @abstractmethod
    def map_rows(self, func: Callable[..., Any], data: Any,
                 outputs: Sequence[RowOutput], *, first_row: bool = False) -> Any:
        """``func(block)`` on every row partition, as lazy arrays of the executor's kind.

        ``func`` returns one array with one row per input row (or a tuple of them,
        one per entry of ``outputs``). Returns one lazy array, or a tuple of them.
        With ``first_row``, ``func(block, first)`` also gets the number of the block's
        first row in the whole data (for draws tied to rows).
        """

    @abstractmethod
    def map_sequences(
        self,
        func: Callable[..., Any],
        data: Any,
        lengths: np.ndarray,
        outputs: Sequence[RowOutput | str],
        *,
        row_data: Sequence[Any] = (),
        out_rows: Callable[[np.ndarray], int] | None = None,
    ) -> Any:
        """``func(block, block_lengths, *row_data_blocks)`` on partitions of whole sequences.

        ``outputs`` describes what ``func`` returns: a :data:`TOTAL` entry is one
        number per call, summed into a lazy 0-d result; a ``(shape, dtype)`` entry an
        array of ``out_rows(block_lengths)`` rows (default: one per input row).
        """

    @abstractmethod
    def probe_rows(self, data: Any, n_head: int, options: Mapping[str, Any],
                   lengths: np.ndarray | None = None) -> tuple[Any, np.ndarray]:
        """Rows an estimator reads in memory to build its model, before the fit.

        Returns ``data`` ready for :meth:`source` (kept where it is when ``options``
        ask for it, so that the probe and the fit read it once) and, in memory, its
        first ``n_head`` rows followed by the rows holding each column's maximum (NaN
        ignored): what a model that depends on the range of the data (the alphabet
        of a categorical HMM) needs to be built as from all of it.
        """

    @abstractmethod
    def to_local(self, data: Any, options: Mapping[str, Any]) -> np.ndarray:
        """A small array of this executor's kind (lengths, weights) brought into memory."""


_REGISTRY: list[Executor] = []


def register(executor: Executor) -> None:
    """Make ``executor`` handle the data it accepts (registering twice changes nothing)."""
    if not any(type(e) is type(executor) for e in _REGISTRY):
        _REGISTRY.append(executor)


def executor_for(data: Any) -> Executor | None:
    """The registered executor that accepts ``data``, or None for in-process data.

    Raises
    ------
    TypeError
        For a Dask collection when no executor for Dask is registered.
    """
    if isinstance(data, External):
        return data.executor
    for executor in _REGISTRY:
        if executor.accepts(data):
            return executor
    if type(data).__module__.split(".")[0] == "dask":
        raise TypeError(
            f"{type(data).__name__} is a Dask collection, but no executor for Dask data is "
            "registered: install emframe's dask extra (pip install 'emframe[dask]') and "
            "import emframe.distributed"
        )
    return None


@dataclasses.dataclass(frozen=True)
class External:
    """Data held by an :class:`Executor`, with the options ``fit`` was given for them."""

    executor: Executor
    data: Any
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    def n_rows(self, name: str = "X") -> int:
        """The number of rows, or ``ValueError`` when the executor does not know it yet."""
        n = self.shape[0] if self.shape else 0
        if not np.isfinite(n):
            raise ValueError(
                f"{name} has unknown chunk sizes (after boolean indexing, or a Dask array "
                f"made from a DataFrame?); call {name}.compute_chunk_sizes() or build it "
                "with to_dask_array(lengths=True)"
            )
        return int(n)

    def source(self, **kwargs: Any) -> DataSource:
        """The executor's :class:`DataSource` over these data (see :meth:`Executor.source`)."""
        return self.executor.source(self.data, options=self.options, **kwargs)

    def to_local(self, value: Any) -> Any:
        """``value`` in memory when it is of the executor's kind (else unchanged)."""
        if value is not None and self.executor.accepts(value):
            return self.executor.to_local(value, self.options)
        return value

    def refuse(self, what: str, hint: str) -> TypeError:
        """The error for an operation this kind of data does not support."""
        return TypeError(
            f"{what} does not accept a {self.executor.name} array: {hint}"
        )


def as_external(data: Any) -> External | None:
    """``data`` as :class:`External` when an executor holds it (default options), else None."""
    if isinstance(data, External):
        return data
    executor = executor_for(data)
    return None if executor is None else External(executor, data, {})


def option_names() -> frozenset[str]:
    """Every registered executor's option names."""
    return frozenset(name for e in _REGISTRY for name in e.options)


def bind(data: Any, engine_options: dict[str, Any]) -> Any:
    """Take the executors' options out of ``engine_options``; keep them with external data.

    Parameters
    ----------
    data : any
        The training data given to ``fit``.
    engine_options : dict
        ``fit``'s extra keyword arguments; the executors' options are removed from it.

    Returns
    -------
    External or data
        ``data`` unchanged when no executor holds it.

    Raises
    ------
    ValueError
        If executor options are given for in-process data, or options of another
        executor than the one holding ``data``.
    """
    given = {k: engine_options.pop(k) for k in sorted(option_names()) if k in engine_options}
    ext = as_external(data)
    if ext is None:
        if any(v is not None for v in given.values()):
            raise ValueError(
                f"{sorted(given)} apply to data held by an executor (a Dask array), but X is "
                f"a {type(data).__name__}; pass a dask.array.Array (for example "
                "dask.array.from_array(X, chunks=(100_000, -1))) or leave them out"
            )
        return data
    wrong = sorted(set(given) - set(ext.executor.options))
    if wrong:
        raise ValueError(f"{wrong} are not options of the {ext.executor.name} executor")
    return dataclasses.replace(ext, options={**ext.options, **given})


def refuse_external(data: Any, what: str, hint: str) -> None:
    """Raise a clear TypeError when ``data`` are held by an executor (for ``what``)."""
    ext = as_external(data)
    if ext is not None:
        raise ext.refuse(what, hint)


def _check_ready(estimator: Any, ext: External) -> None:
    """Fail now, not when the lazy result is computed: fitted, and of the right width."""
    if estimator is None:
        return
    check = getattr(estimator, "_check_is_fitted", None)
    if check is not None:
        check()
    if len(ext.shape) == 2 and hasattr(estimator, "n_features_in_"):
        estimator._check_n_features(ext, reset=False)


def lazy_rows(method: Callable[..., Any], data: Any, *outputs: RowOutput,
              estimator: Any = None, first_row: bool = False) -> Any:
    """``method`` on every row partition of external ``data``, lazily; None for other data.

    ``method`` is a fitted estimator's bound method (``est.predict``; pass
    ``estimator`` when it is another callable); each block of the result is
    ``method(block)``, so it equals the in-memory result. ``outputs`` give the shape
    after the row axis and dtype of each array ``method`` returns (default: one float
    per row). Whether the estimator is fitted and the width of ``data`` are checked
    at once. With ``first_row``, ``method(block, first)`` also gets the number of the
    block's first row.
    """
    ext = as_external(data)
    if ext is None:
        return None
    _check_ready(getattr(method, "__self__", None) if estimator is None else estimator, ext)
    return ext.executor.map_rows(method, ext.data, outputs or (((), np.float64),),
                                 first_row=first_row)


def lazy_sequences(
    method: Callable[..., Any],
    data: Any,
    lengths: Any,
    *outputs: RowOutput | str,
    estimator: Any,
    check_lengths: Callable[[Any, int], np.ndarray],
    row_data: Sequence[Any] = (),
    out_rows: Callable[[np.ndarray], int] | None = None,
) -> Any:
    """``method(block, block_lengths, *row_data_blocks)`` on partitions of whole sequences.

    Lazy, for external ``data``; None for other data. ``estimator`` is the fitted
    estimator ``method`` belongs to (checked at once); ``lengths`` (hmmlearn's
    convention, ``None`` for one sequence) may be in memory or of the executor's
    kind; ``check_lengths(lengths, n_samples)`` validates them (the model's rule).
    See :meth:`Executor.map_sequences` for ``outputs`` and ``out_rows``.
    """
    ext = as_external(data)
    if ext is None:
        return None
    _check_ready(estimator, ext)
    lengths = check_lengths(ext.to_local(lengths), ext.n_rows())
    return ext.executor.map_sequences(method, ext.data, lengths, outputs, row_data=row_data,
                                      out_rows=out_rows)
