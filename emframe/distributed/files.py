"""Files as Dask arrays, read by the workers: what ``emframe fit --scheduler`` fits.

Only the file's header is read here; each partition's task opens the file (memory
mapped) and reads its own rows, so the data never pass through the client. The path
must therefore be readable by the workers (a local cluster, or a shared file system).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _read_rows(path: str, start: int, stop: int) -> np.ndarray:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    rows = np.array(arr[start:stop], dtype=np.float64)
    return rows[:, None] if rows.ndim == 1 else rows


def npy_shape(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, from its header alone."""
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return tuple(arr.shape), arr.dtype


def read_lazy(path: str, rows: int = 100_000) -> Any:
    """A ``.npy`` file of shape (n,) or (n, d) as a float Dask array of (n, d), lazily.

    Parameters
    ----------
    path : str
        A ``.npy`` file (not pickled objects), readable by the workers at this path.
    rows : int
        Rows per partition.

    Returns
    -------
    dask.array.Array of shape (n_samples, n_features), float64
        One task per partition reads its rows from the file when computed.

    Raises
    ------
    ValueError
        If the file holds no numeric 1-D or 2-D array.
    """
    import dask.array as da
    from dask import delayed

    shape, dtype = npy_shape(path)
    if dtype.kind not in "biuf":
        raise ValueError(f"{path}: the array has dtype {dtype}; a numeric array is needed")
    if len(shape) not in (1, 2):
        raise ValueError(f"{path}: expected a 1-D or 2-D array, got shape {shape}")
    n, d = shape[0], (shape[1] if len(shape) == 2 else 1)
    if n == 0 or d == 0:
        raise ValueError(f"{path}: the array is empty (shape {shape})")
    rows = max(1, int(rows))
    read = delayed(_read_rows, pure=True)
    blocks = [da.from_delayed(read(str(path), a, min(a + rows, n)), shape=(min(a + rows, n) - a, d),
                              dtype=np.float64)
              for a in range(0, n, rows)]
    return da.concatenate(blocks, axis=0) if len(blocks) > 1 else blocks[0]
