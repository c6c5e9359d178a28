"""float32 arithmetic for float32 data (GaussianMixtureModel.float32_arithmetic) against the
float64 reference, and the monotonicity guard's tolerance declared by the model."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
from emframe.models.mixtures.gaussian import GaussianMixtureModel
from hypothesis import example, given, settings
from hypothesis import strategies as st

import emframe.inference.gaussian.kernel as kernel_mod
from emframe.core.exceptions import MonotonicityError, MonotonicityWarning
from emframe.core.loop import MONOTONE_RTOL, _Guard, monotone_limit, monotone_rtol
from emframe.inference.gaussian import GaussianKernel, get_covariance_strategy
from emframe.inference.gaussian.moments import NK_EPS

numba = pytest.importorskip("numba")

TYPES = ["full", "tied", "diag", "spherical"]


@pytest.fixture(autouse=True, scope="module")
def compiled_kernel_on_small_data():
    """float32 arithmetic is the compiled kernel's ("auto" uses it from FUSED_MIN_ROWS)."""
    real = kernel_mod.FUSED_MIN_ROWS
    kernel_mod.FUSED_MIN_ROWS = 0
    yield
    kernel_mod.FUSED_MIN_ROWS = real


@contextlib.contextmanager
def float32_arithmetic(value=True):
    saved = GaussianMixtureModel.float32_arithmetic
    GaussianMixtureModel.float32_arithmetic = value
    try:
        yield
    finally:
        GaussianMixtureModel.float32_arithmetic = saved


def separated_blobs(rng, covariance_type, K, d, n, spread, offset):
    """float32 data from K components whose means are far apart in their own metric
    (all scored about their own means in float32), and parameters near the truth."""
    strategy = get_covariance_strategy(covariance_type)
    means = rng.normal(size=(K, d)) * 6.0 + offset
    A = rng.normal(size=(K, d, d)) * spread
    full = np.einsum("kij,klj->kil", A, A) + 0.3 * spread**2 * np.eye(d)
    covs = {"full": full, "tied": full[0], "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
            "spherical": np.trace(full, axis1=1, axis2=2) / d}[covariance_type]
    pc = strategy.precisions_cholesky(covs)
    eye = np.eye(d)
    labels = rng.integers(K, size=n)
    z = rng.normal(size=(n, d))
    X = means[labels].copy()
    for k in range(K):
        noise = strategy.sample_noise(pc, k, eye)
        X[labels == k] += z[labels == k] @ noise.T
    return strategy, means, pc, rng.dirichlet(np.ones(K) * 3), X.astype(np.float32)


@settings(max_examples=25, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), K=st.integers(1, 6), d=st.integers(1, 6),
       n=st.integers(20, 1500), spread=st.sampled_from([0.05, 0.5, 2.0]),
       offset=st.sampled_from([0.0, 40.0]), weighted=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
# an empty component (weight 8e-184), whose mean is the floor's convention, not the data's
@example(covariance_type="full", K=5, d=1, n=20, spread=0.05, offset=0.0, weighted=False, seed=7)
# a component expanded about the common centre at a squared distance of 123
@example(covariance_type="full", K=5, d=1, n=20, spread=0.05, offset=0.0, weighted=False, seed=2)
# a component with one row, whose float32 second moments are indefinite by rounding
@example(covariance_type="full", K=5, d=1, n=20, spread=0.5, offset=0.0, weighted=True, seed=18)
def test_float32_e_step_of_far_components_is_within_1e_4_of_float64(
        covariance_type, K, d, n, spread, offset, weighted, seed):
    # Components far from the common centre are scored about their own means, each row
    # first under the component of the largest bound, in float32 (posteriors flushed
    # below exp(-87)): the M-step's parameters stay within 1e-4 of the float64 numpy
    # path's on the same numbers, and the log-likelihood within float32 rounding.
    rng = np.random.default_rng(seed)
    strategy, means, pc, weights, X32 = separated_blobs(rng, covariance_type, K, d, n, spread,
                                                        offset)
    X64 = X32.astype(np.float64)
    w = rng.uniform(0.1, 3, size=n) if weighted else None
    k64 = GaussianKernel(strategy, means, pc, weights=weights)
    k32 = GaussianKernel(strategy, means, pc, weights=weights, dtype=np.float32)
    ref, ll_ref = k64.mixture_e_step(X64, w, backend="numpy")
    got, ll = k32.mixture_e_step(X32, w, backend="numba")
    assert np.isfinite(ll)
    # Per row, float32 rounding of a log-density about the common centre grows with the
    # squared distance of its component from the centre, which the kernel keeps below
    # EXPANSION_MAX_DISTANCE_32 (the design's ~1e-5 nats per row); about a component's own
    # mean it is a few float32 units.
    eps = np.finfo(np.float32).eps
    bound = 8 * eps * (abs(ll_ref) + n) + n * kernel_mod.EXPANSION_MAX_DISTANCE_32 * eps
    assert abs(ll - ll_ref) <= bound
    model = GaussianMixtureModel(K, covariance_type=covariance_type)
    a = model.m_step(ref)
    # A component of weight below the floor NK_EPS every average divides by has the
    # floor's parameters, not the data's (its mean is its moments' reference point).
    live = ref.nk > 1e3 * NK_EPS
    # A component on d rows or fewer has a singular scatter matrix: in float32 its
    # second moments about the common centre can come out indefinite by rounding, and
    # then the M-step reports the collapse (raise reg_covar) where float64 did not.
    rows = (k64.posteriors(X64) > 1e-6).sum(axis=0)
    if np.any(live & (rows <= d)):
        try:
            b = model.m_step(got)
        except ValueError as err:
            assert "not positive definite" in str(err)
            return
    else:
        b = model.m_step(got)
    model.check_params(b)
    per_component = ("means",) if covariance_type == "tied" else ("means", "covariances")
    for name in ("weights", "means", "covariances"):
        x, y = getattr(b, name), getattr(a, name)
        assert np.all(np.isfinite(x)), name
        if name in per_component:
            x, y = x[live], y[live]
        assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(y)), name


@settings(max_examples=10, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), K=st.integers(2, 4), d=st.integers(1, 4),
       spread=st.sampled_from([0.1, 1.0]), seed=st.integers(0, 2**32 - 1))
def test_float32_arithmetic_fit_is_within_1e_4_and_monotone_under_its_declared_tolerance(
        covariance_type, K, d, spread, seed):
    from emframe.models import GaussianMixture

    rng = np.random.default_rng(seed)
    *_, X32 = separated_blobs(rng, covariance_type, K, d, 1500, spread, 20.0)
    kw = dict(covariance_type=covariance_type, random_state=0, tol=1e-7, max_iter=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning of either fit alike
        a = GaussianMixture(K, **kw).fit(X32.astype(np.float64))
    with float32_arithmetic(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", MonotonicityWarning)  # after: it takes precedence
        b = GaussianMixture(K, **kw).fit(X32)
        rtol = monotone_rtol(b._model)
        hist = b.loglik_history_
        limit = [monotone_limit(b._model, h, len(X32)) for h in hist[:-1]]
    assert np.all(np.isfinite(hist))
    assert rtol == pytest.approx(8 * np.finfo(np.float32).eps)
    assert np.all(-np.diff(hist) <= limit)
    if b.n_iter_ == a.n_iter_:  # the same path (a tie in convergence may end them apart)
        for name in ("weights_", "means_", "covariances_"):
            x, y = np.asarray(getattr(b, name), float), getattr(a, name)
            assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(y)), name


def test_float32_exp_is_within_two_float32_units():
    from emframe.inference._fastexp import exp_normal32

    @numba.njit
    def apply(x, out):
        for i in range(x.size):
            out[i] = exp_normal32(x[i])

    x = np.linspace(-87.0, 88.0, 400_001).astype(np.float32)
    out = np.empty_like(x)
    apply(x, out)
    assert out.dtype == np.float32
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(out - ref) / ref) <= 2 * np.finfo(np.float32).eps


# ---------------------------------------------------------------------------
# the guard's tolerance comes from the model
# ---------------------------------------------------------------------------
class _Declares:
    def __init__(self, rtol):
        self.rtol = rtol

    def evaluation_rtol(self):
        return self.rtol


def test_guard_tolerance_is_the_engine_s_or_the_model_s_if_coarser():
    assert monotone_rtol(_Declares(0.0)) == MONOTONE_RTOL
    assert monotone_rtol(_Declares(1e-12)) == MONOTONE_RTOL
    assert monotone_rtol(_Declares(1e-6)) == 1e-6
    assert monotone_rtol(object()) == MONOTONE_RTOL  # a model without the hook
    prev = -1e6
    cur = prev - 1e-7 * abs(prev)  # a drop of 1e-7 relative: float32 rounding
    _Guard(_Declares(1e-6), strict=True)(prev, cur, 3)  # forgiven
    with pytest.raises(MonotonicityError, match="decreased"):
        _Guard(_Declares(0.0), strict=True)(prev, cur, 3)
    with pytest.raises(MonotonicityError):  # a real inconsistency is still caught
        _Guard(_Declares(1e-6), strict=True)(prev, prev - 1e-5 * abs(prev), 3)


def test_a_declared_precision_scales_with_the_samples_when_the_sum_is_small():
    # 1,500 rows whose log-densities (several nats each) nearly cancel to a total of 92:
    # their float32 rounding is relative to each row's magnitude, not to the total
    prev, n = 92.0, 1500.0
    assert monotone_limit(_Declares(1e-6), prev, n) == pytest.approx(1e-6 * n)
    _Guard(_Declares(1e-6), strict=True)(prev, prev - 3e-4, 2, n)  # forgiven
    with pytest.raises(MonotonicityError):  # float64 models keep the relative tolerance
        _Guard(_Declares(0.0), strict=True)(prev, prev - 3e-4, 2, n)
    assert monotone_limit(_Declares(0.0), prev, n) == MONOTONE_RTOL * prev
    assert monotone_limit(_Declares(1e-6), -1e6, n) == pytest.approx(1.0)  # |total| > n


def test_gaussian_mixture_declares_float32_precision_only_with_float32_arithmetic(monkeypatch):
    model = GaussianMixtureModel(2)
    assert model.evaluation_rtol() == 0.0
    assert monotone_rtol(model) == MONOTONE_RTOL  # float64: the guard as tight as ever
    monkeypatch.setattr(GaussianMixtureModel, "float32_arithmetic", True)
    assert model.evaluation_rtol() == 8 * np.finfo(np.float32).eps
    assert monotone_rtol(model) == 8 * np.finfo(np.float32).eps


def test_float32_data_get_float32_arithmetic_by_default_and_float64_data_never(monkeypatch):
    # the default (None) follows the fitted data's dtype, as scikit-learn computes float32
    # data in float32; the estimator records that dtype when it builds the model
    from emframe.models import GaussianMixture

    rng = np.random.default_rng(0)
    *_, X32 = separated_blobs(rng, "full", 3, 2, 1500, 0.5, 20.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(3, random_state=0).fit(X32.astype(np.float64))
        b = GaussianMixture(3, random_state=0).fit(X32)
    assert GaussianMixtureModel.float32_arithmetic is None
    assert not a._model.uses_float32() and a._model.evaluation_rtol() == 0.0
    assert b._model.uses_float32()
    assert b._model.evaluation_rtol() == 8 * np.finfo(np.float32).eps
    for name in ("weights_", "means_", "covariances_"):
        x, y = getattr(b, name), getattr(a, name)
        assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(y)), name
    # forcing it off gives float64 arithmetic on float32 data again
    monkeypatch.setattr(GaussianMixtureModel, "float32_arithmetic", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = GaussianMixture(3, random_state=0).fit(X32)
    assert not c._model.uses_float32() and c._model.evaluation_rtol() == 0.0


def test_the_fit_loop_uses_the_model_s_tolerance():
    # A model whose evaluation is perturbed by 1e-7 relative (a deterministic function of
    # the parameters, like rounding): with 1e-6 declared the fit raises nothing in strict
    # mode; declaring nothing, the engine's 1e-9 flags the perturbation.
    from emframe.core.engine import fit_em

    class Perturbed(GaussianMixtureModel):
        declared = 0.0

        def e_step(self, params, X, sample_weight=None):
            stats, ll = super().e_step(params, X, sample_weight)
            wobble = np.sin(1e4 * float(np.sum(params.means)))
            return stats, ll * (1.0 + 1e-7 * wobble)

        def evaluation_rtol(self):
            return self.declared

    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 4.0])
    model = Perturbed(2, covariance_type="diag")
    model.declared = 1e-6
    fit_em(model, X, tol=0.0, max_iter=30, random_state=0, strict=True)
    model.declared = 0.0
    with pytest.raises(MonotonicityError):
        fit_em(model, X, tol=0.0, max_iter=30, random_state=0, strict=True)


@settings(max_examples=15, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), K=st.integers(1, 6), d=st.integers(1, 6),
       n=st.integers(20, 3000), spread=st.sampled_from([0.05, 0.5, 2.0]),
       weighted=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_dense_float32_e_step_is_within_1e_4_of_float64_and_of_best_first(
        covariance_type, K, d, n, spread, weighted, seed):
    # Every component scored about its own mean on every row (the dense path, taken when
    # none is expanded and d <= DENSE_MAX_FEATURES_32) against the float64 numpy path and
    # the best-first path on the same numbers.
    import emframe.inference.gaussian.fused as fused

    rng = np.random.default_rng(seed)
    strategy, means, pc, weights, X32 = separated_blobs(rng, covariance_type, K, d, n, spread,
                                                        40.0)
    w = rng.uniform(0.1, 3, size=n) if weighted else None
    k64 = GaussianKernel(strategy, means, pc, weights=weights)
    k32 = GaussianKernel(strategy, means, pc, weights=weights, dtype=np.float32)
    ref, ll_ref = k64.mixture_e_step(X32.astype(np.float64), w, backend="numpy")
    calls = []
    real = fused.dense_e_step
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernel_mod, "dense_e_step", lambda *a: calls.append(1) or real(*a))
        dense, ll_dense = k32.mixture_e_step(X32, w, backend="numba")
        assert len(calls) == (0 if k32.fast.size else 1)
        mp.setattr(kernel_mod, "DENSE_MAX_FEATURES_32", 0)
        best, ll_best = k32.mixture_e_step(X32, w, backend="numba")
        assert len(calls) <= 1
    eps = np.finfo(np.float32).eps
    bound = 8 * eps * (abs(ll_ref) + n) + n * kernel_mod.EXPANSION_MAX_DISTANCE_32 * eps
    assert abs(ll_dense - ll_ref) <= bound
    assert abs(ll_dense - ll_best) <= bound
    model = GaussianMixtureModel(K, covariance_type=covariance_type)
    live = ref.nk > 1e3 * NK_EPS
    rows = (k64.posteriors(X32.astype(np.float64)) > 1e-6).sum(axis=0)
    if np.any(live & (rows <= d)):
        return  # a collapsing component: see the test above
    a, b = model.m_step(ref), model.m_step(dense)
    per_component = ("means",) if covariance_type == "tied" else ("means", "covariances")
    for name in ("weights", "means", "covariances"):
        x, y = getattr(b, name), getattr(a, name)
        if name in per_component:
            x, y = x[live], y[live]
        assert np.max(np.abs(x - y)) <= 1e-4 * np.max(np.abs(y)), name
