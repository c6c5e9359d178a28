"""The dense float32 E-step's weighted moments (upper triangle by register tiles)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from emframe.inference.gaussian._numba_dense import _weighted_moments  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 16), B=st.integers(1, 70), data=st.data(),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_weighted_moments_equal_the_weighted_product_on_the_upper_triangle(d, B, data, dtype,
                                                                          seed):
    # Every d up to DENSE_MAX_FEATURES_32 (tiles of 4 x 2 with indices clamped at the
    # edge), on the first m of B rows: S's upper triangle and sx as float64 products give.
    m = data.draw(st.integers(0, B))
    rng = np.random.default_rng(seed)
    xc = rng.normal(size=(d, B)).astype(dtype)
    r = rng.uniform(0, 1, size=B).astype(dtype) * (rng.uniform(size=B) < 0.7)
    S = np.full((d, d), np.nan, dtype)
    sx = np.full(d, np.nan, dtype)
    _weighted_moments(xc, r, m, S, sx)
    x64, r64 = xc[:, :m].astype(np.float64), r[:m].astype(np.float64)
    want = (x64 * r64) @ x64.T
    iu = np.triu_indices(d)
    tol = 4 * m * np.finfo(dtype).eps * (np.abs(x64) * r64) @ np.abs(x64).T + 1e-300
    assert np.all(np.abs(S[iu] - want[iu]) <= tol[iu])
    tol1 = 4 * m * np.finfo(dtype).eps * (np.abs(x64) @ r64) + 1e-300
    assert np.all(np.abs(sx - x64 @ r64) <= tol1)
