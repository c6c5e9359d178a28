"""Where a fit's Dask graphs run: a ``distributed.Client`` or one of Dask's local schedulers.

Imported only once a Dask array has been passed, so importing ``dask`` here is fine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import dask
from dask import delayed

#: Partial results combined per task in the tree reduction of the statistics. The
#: statistics are small (O(K d^2)), so a wide fan-in keeps the tree shallow at little
#: cost per task; see docs/scaling_out.md for the cost model.
DEFAULT_SPLIT_EVERY = 8

_LOCAL = tuple(dask.base.named_schedulers)


def _default_client() -> Any:
    dist = sys.modules.get("distributed")
    if dist is None:  # no Client can exist without distributed imported
        return None
    try:
        return dist.default_client()
    except ValueError:
        return None


def _is_client(obj: Any) -> bool:
    dist = sys.modules.get("distributed")
    return dist is not None and isinstance(obj, dist.Client)


def _check_running(client: Any, when: str) -> None:
    status = getattr(client, "status", "running")
    if status != "running":
        raise ValueError(
            f"the Dask client {when} is not running (status {status!r}); connect a new "
            "distributed.Client, or pass scheduler=None to use Dask's local scheduler"
        )


def check_split_every(split_every: Any) -> int:
    """Validate the fan-in of the tree reduction (``None`` gives the default)."""
    if split_every is None:
        return DEFAULT_SPLIT_EVERY
    if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
        raise ValueError(
            f"split_every must be an int >= 2 (partial results combined per task), "
            f"got {split_every!r}"
        )
    return int(split_every)


class Runner:
    """Runs Dask graphs on the scheduler chosen for a fit.

    Parameters
    ----------
    scheduler : None, distributed.Client or str
        ``None``: the default ``distributed.Client`` if there is one, else Dask's
        local scheduler (``dask.config``'s ``"scheduler"``, normally threads). A
        ``Client``: that cluster. A string: a local scheduler (``"threads"``,
        ``"sync"``, ``"processes"``), or ``"distributed"`` for the default client.
        ``"processes"`` pickles every partition between tasks: slow, and only useful
        for testing.

    Raises
    ------
    ValueError
        For a closed client, an unknown scheduler name, or ``"distributed"`` without
        a default client.
    """

    def __init__(self, scheduler: Any = None) -> None:
        self.client: Any = None
        self.local: str | None = None
        if scheduler is None:
            self.client = _default_client()
        elif _is_client(scheduler):
            _check_running(scheduler, "passed as scheduler")
            self.client = scheduler
        elif isinstance(scheduler, str):
            if scheduler in ("distributed", "dask.distributed"):
                self.client = _default_client()
                if self.client is None:
                    raise ValueError(
                        f"scheduler={scheduler!r} needs a running distributed.Client; "
                        "create one first, or pass the Client itself"
                    )
            elif scheduler in _LOCAL:
                self.local = scheduler
            else:
                raise ValueError(
                    f"unknown scheduler {scheduler!r}; pass a distributed.Client, None (the "
                    f"active scheduler) or one of {sorted(_LOCAL)}"
                )
        else:
            raise TypeError(
                "scheduler must be None, a distributed.Client or the name of a Dask "
                f"scheduler, got {type(scheduler).__name__}"
            )

    def __repr__(self) -> str:
        where = self.client if self.client is not None else (self.local or "dask default")
        return f"Runner({where})"

    def persist(self, lazy: Sequence[Any]) -> list[Any]:
        """Compute delayed partitions and keep them where they are (worker memory for a Client).

        Returns handles for :meth:`map_reduce` and :meth:`map_gather`: futures for a
        Client, delayed objects holding the values for a local scheduler. Waits for
        them, so a failed partition (bad data) raises its error here.
        """
        if self.client is None:
            return list(dask.persist(*lazy, scheduler=self.local))
        futures = self.handles(lazy)
        _wait(futures)
        return futures

    def handles(self, lazy: Sequence[Any]) -> list[Any]:
        """Handles on delayed partitions, computed anew (released when dropped)."""
        if self.client is None:
            return list(lazy)
        _check_running(self.client, "of this fit")
        return list(self.client.compute(list(lazy)))

    def map_reduce(
        self,
        func: Callable[..., Any],
        parts: Sequence[Any],
        consts: Sequence[Any],
        combine: Callable[..., Any],
        split_every: int,
    ) -> Any:
        """``combine`` over ``func(part, *consts)`` for every partition, on the workers.

        Each of ``consts`` (the model, the parameters) is one node of the graph: sent
        once to the cluster, and fetched once by each worker that runs a task. Being part
        of the graph, it is recomputed like any task if the worker holding it is lost (a
        broadcast scatter would fail instead). The partial results are combined in a
        tree of fan-in ``split_every`` whose shape depends only on the number of
        partitions, so the floating-point result does not depend on where the tasks
        ran. Only the final value comes back.
        """
        if not parts:
            raise ValueError("nothing to reduce: the Dask array has no partition")
        nodes = [literal(c) for c in consts]
        leaves = [delayed(func, pure=False)(part, *nodes) for part in parts]
        return self.compute(tree_reduce(leaves, combine, split_every))

    def map_gather(self, func: Callable[..., Any], parts: Sequence[Any],
                   args: Sequence[Any]) -> list[Any]:
        """``[func(part, arg) for part, arg in zip(parts, args)]``, brought to this process."""
        if self.client is None:
            tasks = [delayed(func, pure=False)(p, a) for p, a in zip(parts, args, strict=True)]
            return list(dask.compute(*tasks, scheduler=self.local))
        _check_running(self.client, "of this fit")
        futures = self.client.map(func, parts, list(args), pure=False)
        return list(self.client.gather(futures))

    def compute(self, obj: Any) -> Any:
        """The value of one Dask collection, brought to this process."""
        if self.client is None:
            return dask.compute(obj, scheduler=self.local)[0]
        _check_running(self.client, "of this fit")
        return self.client.compute(obj, sync=True)

    def persist_collection(self, obj: Any) -> Any:
        """A Dask collection (an array) computed and kept in (worker) memory."""
        if self.client is None:
            return dask.persist(obj, scheduler=self.local)[0]
        from distributed import futures_of

        _check_running(self.client, "of this fit")
        out = self.client.persist(obj)
        _wait(futures_of(out))
        return out


def _wait(futures: Sequence[Any]) -> None:
    """Wait for futures (of any client: ``distributed.wait`` needs the default one) and
    raise the first failure's exception, with its remote traceback. No data move."""
    for fut in futures:
        if fut.exception() is not None:
            fut.result()


def literal(obj: Any) -> Any:
    """``obj`` as one node of a graph: serialised once, however many tasks read it."""
    return delayed(obj, traverse=False)


def tree_reduce(leaves: Sequence[Any], combine: Callable[..., Any], split_every: int) -> Any:
    """Combine delayed partial results in a tree of fan-in ``split_every``; one delayed result."""
    level = list(leaves)
    while len(level) > 1:
        level = [
            delayed(combine, pure=False)(*level[i : i + split_every])
            for i in range(0, len(level), split_every)
        ]
    return level[0]
