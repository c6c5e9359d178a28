"""The dense float32 E-step: when it is taken, and its weighted moments (register tiles)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("numba")

from emframe.models.mixtures.gaussian import GaussianMixtureModel  # noqa: E402

import emframe.inference.gaussian.kernel as kernel_mod  # noqa: E402
from emframe.inference.gaussian import GaussianKernel, get_covariance_strategy  # noqa: E402
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


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_float32_mixture_with_near_and_far_components_takes_the_dense_path(covariance_type):
    # A wide component near the common centre (expandable in float32) and a tight one
    # 2,500 squared units of its own from it (too far): with numba, every component is
    # scored about its own mean (the dense path), none expanded; the M-step then agrees
    # with float64 to 1e-4. Float64 arithmetic still expands both.
    rng = np.random.default_rng(3)
    d = 3
    strategy = get_covariance_strategy(covariance_type)
    means = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    sd = np.array([10.0, 0.01])
    full = (sd**2)[:, None, None] * np.eye(d)
    covs = full if covariance_type == "full" else np.diagonal(full, axis1=1, axis2=2).copy()
    pc = strategy.precisions_cholesky(covs)
    labels = rng.integers(2, size=30_000)
    X32 = (means[labels] + rng.normal(size=(30_000, d)) * sd[labels, None]).astype(np.float32)
    weights = np.array([0.5, 0.5])
    k64 = GaussianKernel(strategy, means, pc, weights=weights)
    k32 = GaussianKernel(strategy, means, pc, weights=weights, dtype=np.float32)
    assert k64.fast.size == 2
    assert k32.fast.size == 0 and k32.direct.size == 2
    calls = []
    real = kernel_mod.dense_e_step
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel_mod, "dense_e_step", lambda *a: calls.append(1) or real(*a))
        dense, ll_dense = k32.mixture_e_step(X32, backend="numba")
    assert calls == [1]
    ref, ll_ref = k64.mixture_e_step(X32.astype(np.float64), backend="numpy")
    assert abs(ll_dense - ll_ref) <= 1e-5 * abs(ll_ref)
    model = GaussianMixtureModel(2, covariance_type=covariance_type)
    a, b = model.m_step(ref), model.m_step(dense)
    for name in ("weights", "means", "covariances"):
        x, y = getattr(b, name), getattr(a, name)
        assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(y)), name
