"""The compiled (numba) E-step kernels and float32 paths equal the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import emframe.inference.compiled as compiled
import emframe.inference.gaussian.kernel as kernel_mod
from emframe.inference.gaussian import GaussianKernel, get_covariance_strategy
from emframe.inference.kmeans import kmeans_labels, nearest_centre

numba = pytest.importorskip("numba")

TYPES = ["full", "tied", "diag", "spherical"]
REAL_FUSED_MIN_ROWS = kernel_mod.FUSED_MIN_ROWS


@pytest.fixture(autouse=True, scope="module")
def compiled_kernels_on_small_data():
    """The tests here run the compiled kernels on small data ("auto" uses them only
    from FUSED_MIN_ROWS rows, to spare small fits the import of numba)."""
    import emframe.models.mixtures.bernoulli as bern

    kernel_mod.FUSED_MIN_ROWS = bern.FUSED_MIN_ROWS = 0
    yield
    kernel_mod.FUSED_MIN_ROWS = bern.FUSED_MIN_ROWS = REAL_FUSED_MIN_ROWS


def test_auto_backend_uses_numpy_on_small_data(monkeypatch):
    rng = np.random.default_rng(0)
    strategy, means, pc, weights = random_params(rng, "full", 2, 3, 0.0)
    kern = GaussianKernel(strategy, means, pc, weights=weights)
    calls = []
    monkeypatch.setattr(kern, "_fused_e_step", lambda *a: calls.append(1))
    monkeypatch.setattr(kernel_mod, "FUSED_MIN_ROWS", REAL_FUSED_MIN_ROWS)
    kern.mixture_e_step(rng.normal(size=(REAL_FUSED_MIN_ROWS - 1, 3)))
    assert calls == []
    kern.mixture_e_step(rng.normal(size=(REAL_FUSED_MIN_ROWS, 3)))
    assert calls == [1]


def random_params(rng, covariance_type, K, d, offset):
    strategy = get_covariance_strategy(covariance_type)
    means = rng.normal(size=(K, d)) * 2.0 + offset
    A = rng.normal(size=(K, d, d))
    full = np.einsum("kij,klj->kil", A, A) + 0.5 * np.eye(d)
    covs = {
        "full": full,
        "tied": full[0],
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.trace(full, axis1=1, axis2=2) / d,
    }[covariance_type]
    return strategy, means, strategy.precisions_cholesky(covs), rng.dirichlet(np.ones(K))


def assert_moments_close(a, b, rtol):
    for name in ("nk", "ref", "sum_x", "sum_xx"):
        x, y = getattr(a, name), getattr(b, name)
        scale = max(float(np.max(np.abs(y))), 1e-300)
        assert float(np.max(np.abs(x - y))) <= rtol * scale, name


@settings(max_examples=40, deadline=None)
@given(
    covariance_type=st.sampled_from(TYPES),
    K=st.integers(1, 5),
    d=st.integers(1, 6),
    n=st.integers(1, 700),
    block=st.sampled_from([1, 7, 128, 512]),
    weighted=st.booleans(),
    offset=st.sampled_from([0.0, 1e3, -1e5]),
    far=st.sampled_from([None, 0.0, 30.0]),
    seed=st.integers(0, 2**32 - 1),
)
def test_fused_e_step_equals_numpy(covariance_type, K, d, n, block, weighted, offset, far,
                                   seed):
    rng = np.random.default_rng(seed)
    strategy, means, pc, weights = random_params(rng, covariance_type, K, d, offset)
    X = means[rng.integers(K, size=n)] + rng.normal(size=(n, d))
    w = rng.uniform(0, 3, size=n) if weighted else None
    real = kernel_mod.EXPANSION_MAX_DISTANCE
    if far is not None:  # some or all components scored about their own means
        kernel_mod.EXPANSION_MAX_DISTANCE = far
    try:
        kern = GaussianKernel(strategy, means, pc, weights=weights)
    finally:
        kernel_mod.EXPANSION_MAX_DISTANCE = real
    if far == 0.0:
        assert kern.direct.size == K
    kern.block = block  # block edges and a partial last block
    ref, ll_ref = kern.mixture_e_step(X, w, backend="numpy")
    got, ll = kern.mixture_e_step(X, w, backend="numba")
    assert ll == pytest.approx(ll_ref, rel=1e-12, abs=1e-9)
    assert_moments_close(got, ref, 1e-12)


@settings(max_examples=25, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), d=st.integers(1, 6), n=st.integers(1, 900),
       spread=st.sampled_from([0.05, 0.3, 1.0]), weighted=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_far_components_skip_rows_where_their_posterior_is_zero(covariance_type, d, n, spread,
                                                                weighted, seed):
    # Tight, well separated components scored about their own means: most rows are
    # beyond the flush threshold of most components, whose log-densities the compiled
    # kernel then does not compute (a bound along their principal directions); the
    # result equals the numpy path's.
    rng = np.random.default_rng(seed)
    K = 4
    strategy, means, pc, weights = random_params(rng, covariance_type, K, d, 0.0)
    means = means * 10.0
    pc = strategy.precisions_cholesky(strategy.covariances_from_precisions_cholesky(pc)
                                      * spread**2)
    X = means[rng.integers(K, size=n)] + spread * rng.normal(size=(n, d))
    w = rng.uniform(0, 3, size=n) if weighted else None
    real = kernel_mod.EXPANSION_MAX_DISTANCE
    kernel_mod.EXPANSION_MAX_DISTANCE = 0.0
    try:
        kern = GaussianKernel(strategy, means, pc, weights=weights)
    finally:
        kernel_mod.EXPANSION_MAX_DISTANCE = real
    kern.block = 256
    ref, ll_ref = kern.mixture_e_step(X, w, backend="numpy")
    got, ll = kern.mixture_e_step(X, w, backend="numba")
    assert ll == pytest.approx(ll_ref, rel=1e-12, abs=1e-9)
    assert_moments_close(got, ref, 1e-12)


@pytest.mark.parametrize("flush", [kernel_mod.EXP_FLUSH, kernel_mod.EXP_FLUSH_32])
def test_far_component_row_bound_keeps_every_row_that_matters(flush):
    from emframe.inference.gaussian._numba import _rows_that_matter

    rng = np.random.default_rng(5)
    d, B = 3, 400
    A = rng.normal(size=(d, d))
    prec = A @ A.T * 50 + np.eye(d)
    mean = rng.normal(size=d)
    xc = rng.normal(size=(d, B)) * 3  # about the centre 0
    u, sv, _ = np.linalg.svd(np.linalg.cholesky(prec))
    dirs = (u[:, :2] * (sv[:2] * (1 - 1e-6))).T
    maha = np.einsum("ib,ij,jb->b", xc - mean[:, None], prec, xc - mean[:, None])
    const, mx = 2.0, np.full(B, 2.0 + 0.6 * flush)
    idx = np.empty(B, np.int64)
    m = _rows_that_matter(dirs @ xc, dirs @ mean, B, const, mx, idx, np.empty(B), flush)
    kept = np.zeros(B, bool)
    kept[idx[:m]] = True
    assert 0 < m < B
    # every row left out is beyond the flush threshold
    assert np.all(const - 0.5 * maha[~kept] < mx[~kept] + flush)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_auto_backend_runs_the_compiled_kernel_when_numba_is_installed(
    covariance_type, monkeypatch
):
    rng = np.random.default_rng(0)
    strategy, means, pc, weights = random_params(rng, covariance_type, 3, 4, 0.0)
    X = rng.normal(size=(300, 4))
    kern = GaussianKernel(strategy, means, pc, weights=weights)
    calls = []
    real = kern._fused_e_step
    monkeypatch.setattr(kern, "_fused_e_step", lambda *a: calls.append(1) or real(*a))
    kern.mixture_e_step(X)
    assert calls == [1]
    # without numba, "auto" falls back to numpy, with the same result
    monkeypatch.setattr(compiled, "has_numba", lambda: False)
    a, la = kern.mixture_e_step(X)
    assert calls == [1]
    b, lb = real(X, None)
    assert la == pytest.approx(lb, rel=1e-12)
    assert_moments_close(a, b, 1e-12)
    with pytest.raises(ValueError, match="needs numba"):
        kern.mixture_e_step(X, backend="numba")
    with pytest.raises(ValueError, match="unknown backend"):
        kern.mixture_e_step(X, backend="fortran")


@settings(max_examples=25, deadline=None)
@given(
    covariance_type=st.sampled_from(TYPES),
    K=st.integers(1, 5),
    d=st.integers(1, 6),
    n=st.integers(50, 600),
    weighted=st.booleans(),
    offset=st.sampled_from([0.0, 30.0, -1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_float32_e_step_is_close_to_float64_on_the_same_numbers(
    covariance_type, K, d, n, weighted, offset, seed
):
    rng = np.random.default_rng(seed)
    strategy, means, pc, weights = random_params(rng, covariance_type, K, d, offset)
    X32 = (means[rng.integers(K, size=n)] + rng.normal(size=(n, d))).astype(np.float32)
    X64 = X32.astype(np.float64)  # the same numbers: only the arithmetic differs
    w = rng.uniform(0, 3, size=n) if weighted else None
    k64 = GaussianKernel(strategy, means, pc, weights=weights)
    k32 = GaussianKernel(strategy, means, pc, weights=weights, dtype=np.float32)
    ref, ll_ref = k64.mixture_e_step(X64, w, backend="numpy")
    got, ll = k32.mixture_e_step(X32, w)
    # per-sample log-likelihood error ~ 1e-7 times the squared distances involved
    assert abs(ll - ll_ref) <= 1e-5 * (abs(ll_ref) + n)
    got = got.shifted(ref.ref)
    np.testing.assert_allclose(got.nk, ref.nk, rtol=1e-4, atol=1e-4 * n)
    np.testing.assert_allclose(got.means(), ref.means(), rtol=1e-4, atol=1e-4 * (1 + abs(offset)))
    np.testing.assert_allclose(got.scatter(), ref.scatter(), rtol=1e-3, atol=1e-3)


def test_float32_kernel_references_a_float32_centre_and_limits_the_expansion():
    rng = np.random.default_rng(1)
    strategy, means, pc, weights = random_params(rng, "full", 3, 3, 10.0)
    k32 = GaussianKernel(strategy, means, pc, weights=weights, dtype=np.float32)
    assert np.array_equal(k32.centre, k32.centre.astype(np.float32))
    means_far = means.copy()
    means_far[0] += 30.0  # squared Mahalanobis distance to the centre > 200
    k32 = GaussianKernel(strategy, means_far, pc, weights=weights, dtype=np.float32)
    k64 = GaussianKernel(strategy, means_far, pc, weights=weights)
    assert 0 in k32.direct and 0 not in k64.direct


# ---------------------------------------------------------------------------
# k-means for initialisation
# ---------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 300), K=st.integers(1, 6), d=st.integers(1, 4),
       offset=st.sampled_from([0.0, 1e6]), seed=st.integers(0, 2**32 - 1))
def test_nearest_centre_equals_brute_force(n, K, d, offset, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 5 + offset
    C = rng.normal(size=(K, d)) * 5 + offset
    dist = ((X[:, None, :] - C[None]) ** 2).sum(-1)
    got = nearest_centre(X, C)
    # ties (equal distances up to rounding) may go either way
    np.testing.assert_allclose(dist[np.arange(n), got], dist.min(axis=1), rtol=1e-9, atol=1e-9)


def test_kmeans_on_a_subsample_is_deterministic_and_labels_every_row():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    X = centres[rng.integers(3, size=3000)] + rng.normal(size=(3000, 2))
    a = kmeans_labels(X, 3, np.random.default_rng(5), sample_size=300)
    b = kmeans_labels(X, 3, np.random.default_rng(5), sample_size=300)
    assert a.shape == (3000,) and np.array_equal(a, b)
    # the clusters are recovered: every true cluster maps to one label
    truth = nearest_centre(X, centres)
    for k in range(3):
        assert len(np.unique(a[truth == k])) == 1
    c = kmeans_labels(X, 3, np.random.default_rng(6), sample_size=300)
    assert c.shape == (3000,)


# ---------------------------------------------------------------------------
# float32 through the estimator, as in scikit-learn
# ---------------------------------------------------------------------------
def _float32_blobs(n=600, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 0.0], [0.0, 6.0, 2.0]]) + 20.0
    X = centres[rng.integers(3, size=n)] + rng.normal(size=(n, 3))
    return X.astype(np.float32)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_fit_keeps_float32_and_matches_the_float64_fit(covariance_type):
    import warnings

    from emframe.models import GaussianMixture

    X32 = _float32_blobs()
    X64 = X32.astype(np.float64)
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-8, max_iter=60)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no monotonicity (or other) warning in float32
        a = GaussianMixture(3, **kw).fit(X64)
        b = GaussianMixture(3, **kw).fit(X32)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert getattr(b, name).dtype == np.float32, name
        assert getattr(a, name).dtype == np.float64, name
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(a.predict(X64), b.predict(X32))
    # float32 data get float32 arithmetic by default, whose rounding moves the
    # log-likelihood by ~1e-9 relative: within the precision the model declares
    from emframe.core.loop import monotone_limit

    assert b._model.uses_float32() and not a._model.uses_float32()
    hist = b.loglik_history_
    limit = [monotone_limit(b._model, h, len(X32)) for h in hist[:-1]]
    assert np.all(-np.diff(hist) <= limit)


def test_float32_weights_init_summing_to_1_00000006_is_accepted():
    from emframe.models import GaussianMixture

    w = np.full(3, 1 / 3, dtype=np.float32)
    w = np.array([0.1, 0.2, 0.7], dtype=np.float32) if float(w.sum()) == 1.0 else w
    w = (w / w.sum()).astype(np.float32)
    w32 = np.nextafter(w, np.float32(1))  # pushes the float64 sum above 1 + 1e-8
    assert abs(float(w32.astype(np.float64).sum()) - 1.0) > 1e-8
    assert abs(float(w32.astype(np.float64).sum()) - 1.0) < 1e-6
    GaussianMixture(3, weights_init=w32, random_state=0, max_iter=2).fit(_float32_blobs())
    with pytest.raises(ValueError, match="sum to 1"):
        GaussianMixture(3, weights_init=w32.astype(np.float64), max_iter=2).fit(_float32_blobs())


@pytest.mark.parametrize("covariance_type", TYPES)
def test_float32_arithmetic_fit_is_within_1e_4_of_the_float64_fit(covariance_type, monkeypatch):
    import warnings

    from emframe.models import GaussianMixture
    from emframe.models.mixtures.gaussian import GaussianMixtureModel

    X32 = _float32_blobs(2000, seed=3)
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-6, max_iter=30)
    a = GaussianMixture(3, **kw).fit(X32.astype(np.float64))
    monkeypatch.setattr(GaussianMixtureModel, "float32_arithmetic", True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # see float32_arithmetic: rounding near convergence
        b = GaussianMixture(3, **kw).fit(X32)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-4, atol=1e-5)


def test_hmms_and_mixtures_use_numba_by_default_when_it_is_installed(monkeypatch):
    """The numpy-only HMM path is slower than hmmlearn on one long sequence, so the
    compiled kernels must be used whenever numba is importable (the README recommends
    the ``fast`` extra)."""
    from emframe.models import GaussianHMM, GaussianMixture

    from emframe.inference.gaussian import _numba as gauss_nb
    from emframe.inference.hmm import _fused_numba as hmm_fused
    from emframe.inference.hmm import _numba as hmm_nb

    calls = []

    def spy(mod, name):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a: calls.append(name) or real(*a))

    spy(hmm_nb, "scaled_forward_backward")
    spy(hmm_fused, "diag_gaussian_e_step")
    spy(gauss_nb, "mixture_e_step")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    GaussianHMM(2, random_state=0, max_iter=2).fit(X)  # diagonal: the fused E-step
    assert "diag_gaussian_e_step" in calls
    GaussianHMM(2, "full", random_state=0, max_iter=2).fit(X)
    assert "scaled_forward_backward" in calls
    GaussianMixture(2, random_state=0, max_iter=2).fit(X)
    assert "mixture_e_step" in calls


@settings(max_examples=30, deadline=None)
@given(P=st.integers(1, 40), k=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_batched_cholesky_and_inverse_equal_lapack(P, k, seed):
    from emframe.inference.gaussian.conditional import _batched_cholesky_and_inverse

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(P, k, k))
    blocks = A @ np.swapaxes(A, 1, 2) + 0.1 * np.eye(k)
    L, M = _batched_cholesky_and_inverse(blocks)
    np.testing.assert_allclose(L, np.linalg.cholesky(blocks), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(M, np.linalg.inv(np.linalg.cholesky(blocks)), rtol=1e-8,
                               atol=1e-10 * np.abs(M).max())
    bad = blocks.copy()
    bad[0] = -np.eye(k)
    with pytest.raises(ValueError, match="not numerically positive definite"):
        _batched_cholesky_and_inverse(bad)


@settings(max_examples=30, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), n=st.integers(1, 200), K=st.integers(1, 5),
       d=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_hard_assignment_moments_equal_the_general_computation(covariance_type, n, K, d, seed):
    """The sorted-by-component path for one-hot (or empty) rows equals the textbook sums."""
    from emframe.inference.gaussian import gaussian_moments
    from emframe.inference.gaussian.kernel import _hard_moments

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 3 + 50
    resp = np.zeros((n, K))
    rows = rng.random(n) < 0.9  # some rows carry no weight at all
    resp[np.flatnonzero(rows), rng.integers(K, size=rows.sum())] = rng.uniform(0.5, 2, rows.sum())
    strategy = get_covariance_strategy(covariance_type)
    got = gaussian_moments(X, resp, strategy)
    # the general path, forced by a second tiny weight in one row
    resp2 = resp.copy()
    r0 = int(np.argmax(resp.max(axis=1) > 0))  # a row with a weight (or row 0)
    resp2[r0, (np.argmax(resp[r0]) + 1) % K] += 1e-300 if K > 1 else 0.0
    if K > 1 and resp[r0].any():
        assert _hard_moments(X, resp2, strategy, None) is None
    ref = gaussian_moments(X, resp2, strategy) if K > 1 else got
    np.testing.assert_allclose(got.nk, ref.nk, rtol=1e-12, atol=1e-250)
    used = got.nk > 0  # an empty component's reference point is arbitrary
    np.testing.assert_allclose(got.means()[used], ref.means()[used], rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(got.scatter()[used], ref.scatter()[used], rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------
# BernoulliMixture: lookup-table kernel against the matrix-product reference
# ---------------------------------------------------------------------------
@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 700), d=st.integers(1, 23), K=st.integers(1, 6),
       missing=st.sampled_from([0.0, 0.3]), weighted=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_bernoulli_table_kernel_equals_matrix_products(n, d, K, missing, weighted, seed):
    import emframe.models.mixtures.bernoulli as bern

    rng = np.random.default_rng(seed)
    X = (rng.random((n, d)) < 0.4).astype(float)
    X[rng.random((n, d)) < missing] = np.nan
    model = bern.BernoulliMixtureModel(K)
    params = bern.BernoulliParams(weights=rng.dirichlet(np.ones(K)),
                                  probs=rng.uniform(0.02, 0.98, (K, d)))
    w = rng.uniform(0, 2, n) if weighted else None
    data = bern.binary_data(X)
    got, ll = model.e_step(params, data, w)
    from emframe.inference.binary import cached_codes

    assert cached_codes(data)[1] == (3 if np.isnan(X).any() else 2)
    real = bern.has_numba
    bern.has_numba = lambda: False
    try:
        ref, ll_ref = model.e_step(params, data, w)
    finally:
        bern.has_numba = real
    assert ll == pytest.approx(ll_ref, rel=1e-12, abs=1e-9)
    for name in ("nk", "ones", "observed"):
        np.testing.assert_allclose(getattr(got, name), getattr(ref, name), rtol=1e-11,
                                   atol=1e-11 * n)
    # slices of encoded data keep their codes
    half = data[: n // 2 + 1]
    assert "_codes" in half.__dict__
    assert np.array_equal(cached_codes(half)[0], cached_codes(data)[0][: n // 2 + 1])


def test_bernoulli_table_kernel_folds_the_product_of_normalisers():
    # 64 identical components: every row's normaliser is 64, and a block's product
    # (64**256 ~ 1e462) would overflow unless folded into the log-likelihood in time
    import emframe.models.mixtures.bernoulli as bern

    rng = np.random.default_rng(0)
    X = (rng.random((600, 9)) < 0.5).astype(float)
    K = 64
    model = bern.BernoulliMixtureModel(K)
    params = bern.BernoulliParams(weights=np.full(K, 1 / K),
                                  probs=np.tile(rng.uniform(0.1, 0.9, 9), (K, 1)))
    got, ll = model.e_step(params, bern.binary_data(X))
    log_px = X @ np.log(params.probs[0]) + (1 - X) @ np.log1p(-params.probs[0])
    assert ll == pytest.approx(log_px.sum(), rel=1e-13)
    np.testing.assert_allclose(got.nk, 600 / K, rtol=1e-13)


def test_bernoulli_table_kernel_hands_impossible_rows_to_the_general_path():
    import emframe.models.mixtures.bernoulli as bern

    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    model = bern.BernoulliMixtureModel(2, alpha=1.0, beta=1.0)
    params = bern.BernoulliParams(weights=np.array([0.5, 0.5]),
                                  probs=np.array([[1.0, 0.0], [1.0, 0.5]]))
    _, ll = model.e_step(params, X)  # row 1 has probability 0 under both components
    assert ll == -np.inf


@settings(max_examples=30, deadline=None)
@given(P=st.integers(1, 30), d=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
def test_compiled_pattern_blocks_equal_the_numpy_recurrences(P, d, seed):
    from emframe.inference.gaussian._conditional_numba import pattern_blocks
    from emframe.inference.gaussian.conditional import _batched_cholesky_and_inverse

    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    prec = A @ A.T + 0.2 * np.eye(d)
    k = int(rng.integers(1, d + 1))
    missing = np.sort(np.stack([rng.choice(d, size=k, replace=False) for _ in range(P)]), 1)
    M, cov, log_det, ok = pattern_blocks(prec, missing.astype(np.int64))
    L, M_ref = _batched_cholesky_and_inverse(prec[missing[:, :, None], missing[:, None, :]])
    assert ok
    scale = np.abs(M_ref).max()
    np.testing.assert_allclose(M, M_ref, rtol=1e-10, atol=1e-12 * scale)
    np.testing.assert_allclose(cov, np.swapaxes(M_ref, 1, 2) @ M_ref, rtol=1e-10,
                               atol=1e-12 * scale**2)
    np.testing.assert_allclose(log_det, 2 * np.log(np.diagonal(L, axis1=1, axis2=2)).sum(1),
                               rtol=1e-12, atol=1e-12)
    bad = -np.eye(d)
    assert not pattern_blocks(bad, missing.astype(np.int64))[3]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_seq=st.integers(1, 4), scale=st.sampled_from([1.0, 30.0]))
def test_hmm_sequence_log_likelihood_equals_the_log_space_forward_pass(seed, n_seq, scale):
    """The final pass uses the scaled forward-backward; it equals the exact log-space pass."""
    from emframe.models import GaussianHMM

    from emframe.core.numerics import safe_log
    from emframe.inference.hmm import forward

    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=n_seq)
    X = rng.normal(size=(int(lengths.sum()), 2)) * scale
    hmm = GaussianHMM(3, random_state=0, max_iter=3, tol=0).fit(X, lengths)
    from emframe.models.hmm.model import Sequences

    model, params = hmm._model, hmm.params_
    got = model.sequence_log_likelihood(params, Sequences(X, np.asarray(lengths)))
    _, ref = forward(safe_log(params.startprob), safe_log(params.transmat),
                     model.emission.log_likelihood(params.emission, X), lengths)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-8)


@pytest.mark.filterwarnings("error")
def test_incomplete_rows_shortcut():
    from emframe.models.hmm.emissions._missing import incomplete_rows

    X = np.arange(12.0).reshape(4, 3)
    assert incomplete_rows(X) is None
    X[2, 1] = np.nan
    np.testing.assert_array_equal(incomplete_rows(X), [False, False, True, False])
    big = np.array([[1e308, 1e308], [-1e308, -1e308], [-1e308, -1e308]])  # sum: inf - inf
    assert incomplete_rows(big) is None


def test_fused_e_step_hands_overflowing_rows_to_the_numpy_path():
    rng = np.random.default_rng(0)
    strategy, means, pc, weights = random_params(rng, "full", 2, 3, 0.0)
    X = rng.normal(size=(50, 3))
    X[7] = 1e160  # the expansion overflows to inf - inf there
    kern = GaussianKernel(strategy, means, pc, weights=weights)
    with np.errstate(all="ignore"):  # the numpy path's features overflow (and say so)
        got, ll = kern.mixture_e_step(X, backend="numba")
        ref, ll_ref = kern.mixture_e_step(X, backend="numpy")
    np.testing.assert_equal(ll, ll_ref)  # the same answer as the numpy path, NaN or not
    for name in ("nk", "ref", "sum_x", "sum_xx"):
        np.testing.assert_equal(getattr(got, name), getattr(ref, name))
