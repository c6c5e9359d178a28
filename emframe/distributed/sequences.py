"""Sequence data (HMMs, state-space models) on Dask: partitions of whole sequences.

The forward-backward recursion (and the Kalman smoother) runs along a whole sequence,
so a task must hold every step of each of its sequences. :func:`partition_sequences`
moves the row chunk boundaries to sequence boundaries.
"""

from __future__ import annotations

import numpy as np


def partition_sequences(row_chunks: list[int], lengths: np.ndarray
                        ) -> tuple[list[int], list[np.ndarray]]:
    """Partition sizes that keep every sequence whole, and each partition's lengths.

    The array's own chunks are kept when each of their boundaries is a sequence
    boundary. Otherwise consecutive sequences are grouped into partitions of at most
    the largest chunk's number of rows (a longer sequence is a partition of its own).

    Parameters
    ----------
    row_chunks : list of int
        Rows per chunk of the array.
    lengths : ndarray of int, shape (n_sequences,)
        Validated sequence lengths, summing to ``sum(row_chunks)``.

    Returns
    -------
    sizes : list of int
        Rows per partition.
    part_lengths : list of ndarray
        Lengths of the sequences of each partition.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    seq_bounds = np.concatenate([[0], np.cumsum(lengths)])
    if int(seq_bounds[-1]) != int(sum(row_chunks)):
        raise ValueError(
            f"lengths sum to {int(seq_bounds[-1])}, but X has {int(sum(row_chunks))} rows"
        )
    cuts = np.cumsum([c for c in row_chunks if c > 0])
    if np.isin(cuts, seq_bounds).all():
        bounds = np.concatenate([[0], cuts])
    else:
        target = max(row_chunks)
        keep = [0]
        for i in range(1, len(seq_bounds) - 1):
            # start a new partition before a sequence that would overflow this one
            if seq_bounds[i + 1] - keep[-1] > target:
                keep.append(int(seq_bounds[i]))
        bounds = np.asarray(keep + [int(seq_bounds[-1])])
    first_seq = np.searchsorted(seq_bounds, bounds)
    sizes = [int(s) for s in np.diff(bounds)]
    parts = [lengths[first_seq[i] : first_seq[i + 1]] for i in range(len(sizes))]
    return sizes, parts
