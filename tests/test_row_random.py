"""Random numbers tied to row numbers (emframe.core.row_random): a block of rows gets the
same numbers wherever it starts being drawn, and they are valid uniforms and normals."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from emframe.core.row_random import row_normals, row_uniforms, stream_key


@settings(max_examples=50, deadline=None)
@given(key=st.integers(0, 2**63 - 2), n=st.integers(1, 60), per_row=st.integers(1, 13),
       cuts=st.lists(st.integers(1, 59), max_size=5))
def test_any_split_of_the_rows_draws_the_same_numbers(key, n, per_row, cuts):
    whole = row_uniforms(key, 0, n, per_row)
    bounds = sorted({0, n, *(c for c in cuts if c < n)})
    parts = [row_uniforms(key, a, b - a, per_row)
             for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_array_equal(np.vstack(parts), whole)
    assert whole.shape == (n, per_row) and np.all((whole > 0) & (whole < 1))


def test_numbers_are_uniform_and_normal_and_keys_differ():
    u = row_uniforms(stream_key(0), 0, 20_000, 3)
    assert stats.kstest(u.ravel(), "uniform").pvalue > 1e-3
    z = row_normals(u)
    assert np.all(np.isfinite(z)) and stats.kstest(z.ravel(), "norm").pvalue > 1e-3
    assert not np.array_equal(row_uniforms(stream_key(1), 0, 5, 3), u[:5])
    # the same seed gives the same key; a Generator is drawn from
    assert stream_key(3) == stream_key(3)
    rng = np.random.default_rng(3)
    assert stream_key(rng) != stream_key(rng)


def test_the_extreme_uniforms_have_finite_normal_quantiles():
    lo, hi = 0.5 * 2.0**-52, (2.0**52 - 0.5) * 2.0**-52
    assert hi < 1.0
    assert np.all(np.isfinite(row_normals(np.array([lo, hi]))))
