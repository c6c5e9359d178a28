"""Random numbers tied to row numbers, the same however the rows are cut into blocks.

Row ``i`` of a draw always gets the same ``per_row`` numbers from one Philox stream (a
counter-based generator: any row's numbers are reached directly, without generating
the rows before it). So a block of rows, drawn where it lives (a Dask partition),
gets exactly what an in-memory draw over all rows gives it, whatever the chunking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtri

from emframe.core.validation import check_random_state

__all__ = ["row_normals", "row_uniforms", "stream_key"]

#: 64-bit outputs of Philox per counter step.
_PER_STEP = 4


def stream_key(random_state: Any) -> int:
    """The stream's key: one draw from ``random_state`` (None, an int or a Generator)."""
    return int(check_random_state(random_state).integers(0, 2**63 - 1))


def row_uniforms(key: int, first_row: int, n_rows: int, per_row: int) -> np.ndarray:
    """Uniforms in (0, 1) for rows ``first_row`` to ``first_row + n_rows - 1``.

    Parameters
    ----------
    key : int
        From :func:`stream_key`.
    first_row : int
        Number of the first row in the whole data.
    n_rows, per_row : int

    Returns
    -------
    ndarray of shape (n_rows, per_row)
        ``(k + 1/2) 2**-52`` for 52 random bits ``k``: never exactly 0 or 1 (both ends
        are representable), so their normal quantiles are finite.
    """
    steps = -(-per_row // _PER_STEP)  # whole counter steps per row: rows start on one
    bits = np.random.Philox(key=key, counter=[first_row * steps, 0, 0, 0])
    raw = bits.random_raw(n_rows * steps * _PER_STEP).reshape(n_rows, steps * _PER_STEP)
    return ((raw[:, :per_row] >> np.uint64(12)).astype(np.float64) + 0.5) * 2.0**-52


def row_normals(uniforms: np.ndarray) -> np.ndarray:
    """Standard normal numbers from :func:`row_uniforms` (their quantiles)."""
    return ndtri(uniforms)
