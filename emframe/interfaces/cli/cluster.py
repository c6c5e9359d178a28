"""``emframe fit`` on a Dask cluster: ``--scheduler ADDRESS`` or ``--local-cluster N``.

The E-steps run on the cluster's workers (see docs/scaling_out.md). A ``.npy`` file is
read by the workers, each partition its own rows (so its path must be readable
there); a CSV file is read and checked here, as without a cluster, and its rows are
sent to the workers once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Iterator, Sequence
from typing import Any

from emframe.interfaces.cli.specs import InputError
from emframe.interfaces.cli.tables import Data, Table, load_data, read_lengths, select_columns

#: Default rows per partition on a cluster: large enough that the fixed cost of a
#: task (about a millisecond) is small next to its E-step.
PARTITION_ROWS = 100_000

#: Worker processes per core that --local-cluster may start: a few more than the cores
#: can help with I/O, thousands only exhaust the machine before the fit starts.
MAX_WORKERS_PER_CORE = 4


def add_cluster_options(p: argparse.ArgumentParser, positive_int: Any) -> None:
    """The cluster options of ``fit``."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="fit on the Dask cluster whose scheduler is at ADDRESS (like "
                       "tcp://head:8786); needs the dask extra. A .npy file is read by the "
                       "workers (its path must be readable there), a CSV file here")
    where.add_argument("--local-cluster", type=positive_int, metavar="N",
                       help="fit on a Dask cluster of N worker processes started on this "
                       "machine for the run (one thread each); needs the dask extra")
    p.add_argument("--partition-rows", type=positive_int, metavar="R",
                   help=f"with a cluster: rows per partition (default {PARTITION_ROWS})")


def on_cluster(args: argparse.Namespace) -> bool:
    """True when the command runs on a Dask cluster."""
    return (getattr(args, "scheduler", None) is not None
            or getattr(args, "local_cluster", None) is not None)


def _distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise InputError("--scheduler and --local-cluster need Dask: "
                         "pip install 'emframe[dask]'") from None
    return distributed


@contextlib.contextmanager
def connect(args: argparse.Namespace) -> Iterator[Any]:
    """The ``distributed.Client`` of the run (the default client while it lasts), or None."""
    if not on_cluster(args):
        yield None
        return
    distributed = _distributed()
    if args.local_cluster is not None:
        cores = os.cpu_count() or 1
        if args.local_cluster > MAX_WORKERS_PER_CORE * cores:
            raise InputError(f"--local-cluster {args.local_cluster}: this machine has {cores} "
                             f"cores; start at most {MAX_WORKERS_PER_CORE * cores} worker "
                             "processes (one per core is best), or use --scheduler")
        with distributed.LocalCluster(n_workers=args.local_cluster, threads_per_worker=1,
                                      dashboard_address=":0") as cluster, \
                distributed.Client(cluster) as client:
            yield client
        return
    try:
        client = distributed.Client(args.scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"--scheduler {args.scheduler}: cannot connect to a Dask scheduler "
                         f"there ({exc})") from None
    with client:
        yield client


def load_on_cluster(path: str, columns: Sequence[str] | None, lengths: str | None,
                    rows: int | None) -> Data:
    """The data of ``fit`` as a Dask array: a ``.npy`` file read by the workers, lazily.

    A CSV file is read and checked here (the returned ``X`` is in memory; see
    :func:`to_cluster`).
    """
    if not path.lower().endswith(".npy"):
        return load_data(path, columns, lengths)
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such file")
    from emframe.distributed.files import read_lazy

    try:
        X = read_lazy(path, rows or PARTITION_ROWS)
    except (ValueError, OSError) as exc:
        raise InputError(f"{path}: not a readable .npy array ({exc})") from None
    table = Table(path, [str(j + 1) for j in range(X.shape[1])], X)
    lens, lpath = None, None
    if lengths is not None:
        if not os.path.isfile(lengths):
            raise InputError(f"--lengths {lengths!r}: with a .npy file on a cluster, give the "
                             "sequence lengths as a file (one per line), not as a column")
        lens, _, lpath = read_lengths(lengths, table)
    cols = select_columns(table, columns)
    return Data(table, cols, X if cols == list(range(X.shape[1])) else X[:, cols], lens,
                None, lpath)


def to_cluster(data: Data, rows: int | None) -> Data:
    """``data`` with ``X`` a Dask array of partitions of ``rows`` rows (lazy data as they are)."""
    import dask.array as da

    if isinstance(data.X, da.Array):
        return data
    return dataclasses.replace(data, X=da.from_array(data.X, chunks=(rows or PARTITION_ROWS, -1)))
