"""GaussianMixture: equality with scikit-learn, closed forms, weights, bad input, degeneracy."""

import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture
from emframe.models.mixtures.gaussian import GaussianMixtureModel, GaussianMixtureParams
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from sklearn.exceptions import ConvergenceWarning as SKConvergenceWarning
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import emframe.inference.gaussian.kernel as cov_mod
from emframe.datasets import load_old_faithful
from emframe.exceptions import ConvergenceWarning, NotFittedError
from emframe.inference.gaussian import (
    COVARIANCE_TYPES,
    GaussianKernel,
    gaussian_moments,
    get_covariance_strategy,
)
from emframe.testing import check_complete_data_mle, check_model

TYPES = ["full", "tied", "diag", "spherical"]


def blobs(n=(120, 90, 60), d=3, seed=0, offset=0.0):
    """Three well-separated Gaussian clusters with different shapes."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [4.0] + [0.0] * (d - 1), [0.0, 5.0] + [1.0] * (d - 2)])
    parts = []
    for k, m in enumerate(n):
        A = rng.normal(size=(d, d)) * 0.4 + np.eye(d) * (0.5 + 0.3 * k)
        parts.append(centres[k] + rng.normal(size=(m, d)) @ A.T)
    return np.concatenate(parts) + offset


def sk_init(X, covariance_type, K=3, seed=0):
    """Initial values from one sklearn iteration, as the init arrays of both libraries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = SKGaussianMixture(K, covariance_type=covariance_type, max_iter=1,
                               random_state=seed).fit(X)
    return {"weights_init": sk.weights_, "means_init": sk.means_,
            "precisions_init": sk.precisions_}


def fit_quiet(est, X, **kw):
    """Fit without the convergence warnings that tol=0 or a small max_iter cause."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", SKConvergenceWarning)
        return est.fit(X, **kw)


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------
# exact EM: equal to scikit-learn iterate by iterate
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("max_iter", [1, 4, 25])
def test_iterates_equal_sklearn(covariance_type, max_iter):
    X = blobs()
    init = sk_init(X, covariance_type)
    # reg_covar=0 on both sides: emframe's reg_covar is a prior strength (it adds
    # reg_covar / N_k to the variances), scikit-learn's a constant added to them
    sk = fit_quiet(SKGaussianMixture(3, covariance_type=covariance_type, max_iter=max_iter,
                                     tol=0, reg_covar=0.0, **init), X)
    em = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=max_iter, tol=0,
                                   reg_covar=0.0, **init), X)
    assert em.n_iter_ == sk.n_iter_ == max_iter
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert rel_err(getattr(em, name), getattr(sk, name)) < 1e-8, name
    np.testing.assert_allclose(em.score_samples(X), sk.score_samples(X), rtol=1e-10)
    np.testing.assert_allclose(em.predict_proba(X), sk.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(em.predict(X), sk.predict(X))
    assert em.score(X) == pytest.approx(sk.score(X), rel=1e-12)
    assert em.bic(X) == pytest.approx(sk.bic(X), rel=1e-12)
    assert em.aic(X) == pytest.approx(sk.aic(X), rel=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_history_is_sklearn_lower_bounds(covariance_type):
    # loglik_history_[i] is the total log-likelihood before M-step i+1; sklearn records the
    # mean one of the same E-steps
    X = blobs()
    init = sk_init(X, covariance_type)
    sk = fit_quiet(SKGaussianMixture(3, covariance_type=covariance_type, max_iter=6, tol=0,
                                     reg_covar=0.0, **init), X)
    em = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=6, tol=0,
                                   reg_covar=0.0, **init), X)
    np.testing.assert_allclose(em.loglik_history_[:-1] / len(X), sk.lower_bounds_, rtol=1e-12)
    assert np.all(np.diff(em.loglik_history_) >= -1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_far_from_origin_equals_centred_fit(covariance_type):
    # Moments about a reference point: shifting the data by 1e6 changes nothing but the means.
    X = blobs()
    shift = np.array([1e6, -3e6, 2e6])
    init = sk_init(X, covariance_type)
    a = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=20, tol=0,
                                  **init), X)
    init_shifted = dict(init, means_init=init["means_init"] + shift)
    b = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=20, tol=0,
                                  **init_shifted), X + shift)
    assert rel_err(b.covariances_, a.covariances_) < 1e-8
    assert rel_err(b.means_ - shift, a.means_) < 1e-8
    assert rel_err(b.weights_, a.weights_) < 1e-8


def test_sklearn_init_methods_give_finite_fits():
    X = blobs()
    for init_params in ("kmeans", "k-means++", "random", "random_from_data"):
        gm = fit_quiet(GaussianMixture(3, init_params=init_params, random_state=0), X)
        assert np.all(np.isfinite(gm.means_)) and gm.converged_, init_params
        assert gm.weights_.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# closed forms
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
def test_single_component_is_weighted_map(covariance_type):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 3)) @ rng.normal(size=(3, 3)) + [5.0, -2.0, 100.0]
    w = rng.uniform(0.1, 3.0, size=50)
    gm = GaussianMixture(1, covariance_type=covariance_type, reg_covar=1e-4).fit(
        X, sample_weight=w)
    mean = w @ X / w.sum()
    cov = (X - mean).T @ ((X - mean) * w[:, None]) / w.sum()
    # the MAP estimate (S + lambda I) / N with lambda = reg_covar * n / 1: one component
    # holds all the data (N = n = 50, the weights counted relative to their mean), so
    # exactly reg_covar joins the variances, as in scikit-learn
    r = 1e-4
    expected = {
        "full": cov[None] + r * np.eye(3),
        "tied": cov + r * np.eye(3),
        "diag": np.diag(cov)[None] + r,
        "spherical": np.array([np.trace(cov) / 3 + r]),
    }[covariance_type]
    np.testing.assert_allclose(gm.means_, mean[None], rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-10)
    # one M-step reaches the MLE; the next iteration sees no change
    assert gm.n_iter_ <= 3 and gm.converged_


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_density_matches_scipy(covariance_type):
    X = blobs()
    gm = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=5,
                                   random_state=0), X)
    K, d = gm.means_.shape
    full = {
        "full": lambda c: c,
        "tied": lambda c: np.repeat(c[None], K, 0),
        "diag": lambda c: np.stack([np.diag(v) for v in c]),
        "spherical": lambda c: np.stack([v * np.eye(d) for v in c]),
    }[covariance_type](gm.covariances_)
    dens = np.stack([sps.multivariate_normal(gm.means_[k], full[k]).logpdf(X)
                     for k in range(K)], axis=1)
    expected = np.log(np.exp(dens) @ gm.weights_)
    np.testing.assert_allclose(gm.score_samples(X), expected, rtol=1e-10)
    precisions = np.linalg.inv(full)
    if covariance_type == "tied":
        precisions = precisions[0]
    elif covariance_type == "diag":
        precisions = np.diagonal(precisions, axis1=1, axis2=2)
    elif covariance_type == "spherical":
        precisions = precisions[:, 0, 0]
    np.testing.assert_allclose(gm.precisions_, precisions, rtol=1e-9)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_complete_data_mle(covariance_type):
    X = blobs()
    labels = np.repeat([0, 1, 2], [120, 90, 60])
    model = GaussianMixtureModel(3, covariance_type=covariance_type, reg_covar=1e-6)
    strategy = get_covariance_strategy(covariance_type)
    means = np.stack([X[labels == k].mean(0) for k in range(3)])
    covs = np.stack([np.cov(X[labels == k], rowvar=False, bias=True) for k in range(3)])
    counts = np.bincount(labels)
    weights = counts / len(X)
    # the complete-data MAP: (S_k + reg_covar I) / N_k, so reg_covar / N_k on the variances
    # (reg_covar / n for the tied covariance; d reg_covar on trace(S_k) for spherical)
    r = 1e-6 / counts
    expected_cov = {
        "full": covs + r[:, None, None] * np.eye(3),
        "tied": np.einsum("k,kij->ij", weights, covs) + 1e-6 / len(X) * np.eye(3),
        "diag": np.diagonal(covs, axis1=1, axis2=2) + r[:, None],
        "spherical": np.trace(covs, axis1=1, axis2=2) / 3 + r,
    }[covariance_type]
    expected = GaussianMixtureParams(weights, means, expected_cov,
                                     strategy.precisions_cholesky(expected_cov))
    check_complete_data_mle(model, model.stats_from_resp, X, labels, 3, expected, rtol=1e-9)


def test_n_parameters_match_sklearn():
    X = blobs()
    for ct in TYPES:
        gm = fit_quiet(GaussianMixture(3, covariance_type=ct, max_iter=2, random_state=0), X)
        sk = fit_quiet(SKGaussianMixture(3, covariance_type=ct, max_iter=2, random_state=0), X)
        assert gm.n_parameters() == sk._n_parameters()


# ---------------------------------------------------------------------------
# statistics: additive, exact shifts, chunked fits
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
def test_moments_shift_and_add_exactly(covariance_type):
    rng = np.random.default_rng(0)
    strategy = get_covariance_strategy(covariance_type)
    X = rng.normal(size=(80, 3)) + 50.0
    resp = rng.dirichlet(np.ones(2), size=80)
    ref_a, ref_b = rng.normal(size=(2, 3)) + 50.0, rng.normal(size=(2, 3)) + 49.0
    whole = gaussian_moments(X, resp, strategy)
    # chunks referenced at different points, added: same means and scatter as the whole
    total = (gaussian_moments(X[:30], resp[:30], strategy, ref=ref_a)
             + gaussian_moments(X[30:], resp[30:], strategy, ref=ref_b))
    np.testing.assert_allclose(total.means(), whole.means(), rtol=1e-13)
    np.testing.assert_allclose(total.scatter(), whole.scatter(), rtol=1e-10)
    # shifting to a new reference is exact
    moved = whole.shifted(ref_a)
    direct = gaussian_moments(X, resp, strategy, ref=ref_a)
    np.testing.assert_allclose(moved.sum_x, direct.sum_x, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(moved.sum_xx, direct.sum_xx, rtol=1e-12)
    # scale keeps the reference and scales the rest
    half = whole.scale(0.5)
    np.testing.assert_array_equal(half.ref, whole.ref)
    np.testing.assert_allclose((half + half).sum_xx, whole.sum_xx, rtol=1e-15)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_engine_conformance(covariance_type):
    X = blobs(offset=30.0)
    check_model(lambda: GaussianMixtureModel(3, covariance_type=covariance_type), X,
                chunks=[X[:100], X[100:170], X[170:]])


@pytest.mark.parametrize("covariance_type", TYPES)
def test_chunked_fit_equals_whole(covariance_type):
    X = blobs()
    init = sk_init(X, covariance_type)
    a = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=10, tol=0,
                                  **init), X)
    b = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=10, tol=0,
                                  **init), X, chunk_size=47)
    assert b.params_.allclose(a.params_, rtol=1e-10)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_kernel_direct_path_equals_expanded(covariance_type, monkeypatch):
    # A component far (in its own metric) from the centring point is scored directly; both
    # paths must agree with each other and with sklearn's formula.
    X = blobs()
    gm = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=5,
                                   random_state=0), X)
    p = gm.params_
    strategy = get_covariance_strategy(covariance_type)
    fast = GaussianKernel(strategy, p.means, p.precisions_cholesky, weights=p.weights)
    assert fast.direct.size == 0
    monkeypatch.setattr(cov_mod, "EXPANSION_MAX_DISTANCE", -1.0)
    slow = GaussianKernel(strategy, p.means, p.precisions_cholesky, weights=p.weights)
    assert slow.fast.size == 0
    np.testing.assert_allclose(slow.log_prob(X), fast.log_prob(X), rtol=1e-12)
    s_fast, ll_fast = fast.mixture_e_step(X)
    s_slow, ll_slow = slow.mixture_e_step(X)
    assert ll_fast == pytest.approx(ll_slow, rel=1e-13)
    np.testing.assert_allclose(s_fast.means(), s_slow.means(), rtol=1e-12)
    np.testing.assert_allclose(s_fast.scatter(), s_slow.scatter(), rtol=1e-10)


def test_tight_far_component_uses_direct_path_and_stays_accurate():
    # One component 1e4 standard deviations from the centre of the others: the expansion
    # would lose ~8 digits there, so it is evaluated directly.
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(size=(200, 2)), 100.0 + 1e-2 * rng.normal(size=(100, 2))])
    gm = fit_quiet(GaussianMixture(2, random_state=0, tol=1e-10, max_iter=200), X)
    p = gm.params_
    kern = GaussianKernel(get_covariance_strategy("full"), p.means, p.precisions_cholesky,
                          weights=p.weights)
    assert kern.direct.size >= 1
    tight = int(np.argmin(gm.covariances_[:, 0, 0]))
    pts = X[200:]
    np.testing.assert_allclose(gm.means_[tight], pts.mean(0), rtol=1e-12)
    np.testing.assert_allclose(gm.covariances_[tight],
                               np.cov(pts, rowvar=False, bias=True)
                               + 1e-6 * 300 / (2 * 100) * np.eye(2),  # reg_covar n / (K N_k)
                               rtol=1e-7)


# ---------------------------------------------------------------------------
# sample weights
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    # Only relative weights matter: the fit uses w / mean(w). The prior is attached to
    # n = sum(w / mean(w)) rows, so the weighted objective is the repeated one divided by
    # mean(w), the same reg_covar included: the fits are equal, the histories differ by
    # that factor. A strong reg_covar, so that a prior of another strength would show.
    X = blobs()
    w = np.random.default_rng(0).integers(1, 4, size=len(X))
    init = sk_init(X, covariance_type)
    a = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0,
                                  reg_covar=0.05, **init), X, sample_weight=w)
    b = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0,
                                  reg_covar=0.05, **init), np.repeat(X, w, axis=0))
    assert a.params_.allclose(b.params_, rtol=1e-10)
    np.testing.assert_allclose(a.loglik_history_ * w.mean(), b.loglik_history_, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_zero_weight_equals_dropping_rows(covariance_type):
    X = blobs()
    w = np.ones(len(X))
    w[::7] = 0.0
    init = sk_init(X, covariance_type)
    a = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0,
                                  **init), X, sample_weight=w)
    b = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, max_iter=15, tol=0,
                                  **init), X[w > 0])
    assert a.params_.allclose(b.params_, rtol=1e-10)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_bad_data_is_rejected():
    X = blobs()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first at row 3, column 1"):
        GaussianMixture(2).fit(bad)
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        GaussianMixture(2).fit(bad)
    with pytest.raises(ValueError, match="Expected a 2-D array for X, got a 1-D array"):
        GaussianMixture(2).fit(X[:, 0])
    with pytest.raises(ValueError, match="Expected n_samples >= n_components"):
        GaussianMixture(5).fit(X[:4])
    gm = fit_quiet(GaussianMixture(2, random_state=0), X)
    with pytest.raises(ValueError, match="X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(X[:, :2])
    with pytest.raises(NotFittedError, match="not fitted yet"):
        GaussianMixture(2).predict(X)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"covariance_type": "ful"}, r"covariance_type must be one of 'diag', 'full', "
                                     r"'spherical', 'tied'; got 'ful'"),
        ({"init_params": "kmeans++"}, r"init_params must be one of 'kmeans', 'k-means\+\+', "
                                      r"'random', 'random_from_data'"),
        ({"n_components": 0}, "n_components must be >= 1"),
        ({"reg_covar": -1e-3}, "reg_covar must be >= 0"),
        ({"weights_init": [0.5, 0.5, 0.5]}, r"weights_init must have shape \(2,\)"),
        ({"weights_init": [1.5, -0.5]}, r"weights_init must lie in \[0, 1\]"),
        ({"weights_init": [0.2, 0.3]}, "weights_init must sum to 1"),
        ({"means_init": np.zeros((2, 2))}, r"means_init must have shape .* = \(2, 3\)"),
        ({"means_init": [[0, 0, np.nan], [1, 1, 1]]}, "means_init contains NaN"),
        ({"precisions_init": np.ones((2, 3))},
         r"precisions_init for covariance_type='full' must have shape \(2, 3, 3\)"),
        ({"precisions_init": np.stack([np.eye(3), -np.eye(3)])},
         r"precisions_init\[1\] \(component 1\) is not positive definite"),
        ({"precisions_init": np.stack([np.eye(3), np.triu(np.ones((3, 3)))])},
         r"precisions_init\[1\] \(component 1\) is not symmetric"),
        ({"covariance_type": "diag", "precisions_init": [[1, 1, 1], [1, 0, 1]]},
         r"precisions_init for covariance_type='diag' must be positive.*component 1"),
        ({"covariance_type": "spherical", "precisions_init": [1.0]},
         r"precisions_init for covariance_type='spherical' must have shape \(2,\)"),
        ({"covariance_type": "tied", "precisions_init": -np.eye(3)},
         "precisions_init is not positive definite"),
    ],
)
def test_bad_hyperparameters_are_rejected_at_fit(kwargs, match):
    X = blobs()
    gm = GaussianMixture(kwargs.pop("n_components", 2), **kwargs)  # stored unchanged
    with pytest.raises(ValueError, match=match):
        gm.fit(X)


def test_bad_sample_weight_is_rejected():
    X = blobs()
    with pytest.raises(ValueError, match=r"sample_weight must have shape \(270,\)"):
        GaussianMixture(2).fit(X, sample_weight=np.ones(10))
    w = np.ones(len(X))
    w[5] = -1.0
    with pytest.raises(ValueError, match=r"sample_weight must be non-negative; sample_weight\[5\]"):
        GaussianMixture(2).fit(X, sample_weight=w)


def test_input_is_never_modified():
    X = blobs()
    X.flags.writeable = False  # any in-place write raises
    w = np.ones(len(X))
    w.flags.writeable = False
    gm = fit_quiet(GaussianMixture(3, random_state=0), X, sample_weight=w)
    gm.predict(X), gm.predict_proba(X), gm.score_samples(X), gm.score(X), gm.bic(X)
    init = sk_init(blobs(), "full")
    copies = {k: np.array(v) for k, v in init.items()}
    fit_quiet(GaussianMixture(3, max_iter=3, **init), X)
    for k in init:
        np.testing.assert_array_equal(init[k], copies[k])


# ---------------------------------------------------------------------------
# degenerate data: never NaN
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_duplicate_points_give_finite_parameters(covariance_type, init_params):
    X = np.repeat([[1.0, 2.0], [1.0, 2.0], [3.0, -1.0]], 10, axis=0)
    gm = fit_quiet(GaussianMixture(3, covariance_type=covariance_type, init_params=init_params,
                                   random_state=0), X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.all(np.isfinite(gm.score_samples(X)))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_constant_feature_and_collapsed_component(covariance_type):
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=60), np.full(60, 7.3)])  # second feature constant
    X[:15] = [5.0, 7.3]  # a cluster of identical points: a component collapses onto it
    gm = fit_quiet(GaussianMixture(2, covariance_type=covariance_type, random_state=0), X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert np.all(np.isfinite(getattr(gm, name))), name
    assert np.all(np.isfinite(gm.score_samples(X)))
    assert np.allclose(gm.means_[:, 1], 7.3)


def test_collapse_without_regularisation_names_component_and_reg_covar():
    X = np.repeat([[1.0, 2.0], [3.0, -1.0]], 10, axis=0)
    with pytest.raises(ValueError, match=r"covariance of component \d is not positive definite"
                                         r".*increase reg_covar \(now 0\)"):
        GaussianMixture(2, reg_covar=0.0, random_state=0).fit(X)


# ---------------------------------------------------------------------------
# real data, determinism, freezing, estimator behaviour
# ---------------------------------------------------------------------------
def test_old_faithful_n_init_reaches_global_maximum():
    X = load_old_faithful()
    best = fit_quiet(GaussianMixture(2, n_init=10, random_state=0), X)
    # the best of 200 random-data restarts, refined to convergence, is the global maximum
    many = fit_quiet(GaussianMixture(2, n_init=200, init_params="random_from_data",
                                     tol=1e-10, max_iter=500, random_state=1), X)
    assert best.lower_bound_ == pytest.approx(many.lower_bound_, rel=1e-6)
    order = np.argsort(best.means_[:, 0])
    # the well-known solution: short eruptions after ~54 min, long ones after ~80 min
    np.testing.assert_allclose(best.means_[order], [[2.04, 54.5], [4.29, 80.0]], rtol=0.01)
    np.testing.assert_allclose(np.sort(best.weights_), [0.356, 0.644], atol=0.01)


def test_same_seed_same_fit_different_seed_different_start():
    X = blobs()
    a = fit_quiet(GaussianMixture(3, init_params="random", max_iter=5, random_state=7), X)
    b = fit_quiet(GaussianMixture(3, init_params="random", max_iter=5, random_state=7), X)
    c = fit_quiet(GaussianMixture(3, init_params="random", max_iter=5, random_state=8), X)
    assert a.params_.allclose(b.params_, rtol=0.0)
    np.testing.assert_array_equal(a.loglik_history_, b.loglik_history_)
    assert not a.params_.allclose(c.params_, rtol=1e-6)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_frozen_means_centre_the_covariance_there(covariance_type):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 2)) * [1.0, 2.0] + [3.0, -1.0]
    m0 = np.array([[2.0, 0.0]])
    gm = fit_quiet(GaussianMixture(1, covariance_type=covariance_type, means_init=m0,
                                   freeze=("means",), reg_covar=0.0), X)
    np.testing.assert_array_equal(gm.means_, m0)
    scatter = (X - m0).T @ (X - m0) / len(X)  # about the frozen mean, not the sample mean
    expected = {
        "full": scatter[None], "tied": scatter, "diag": np.diag(scatter)[None],
        "spherical": np.array([np.trace(scatter) / 2]),
    }[covariance_type]
    np.testing.assert_allclose(gm.covariances_, expected, rtol=1e-12)


def test_frozen_weights_and_covariances_stay_fixed():
    X = blobs()
    init = sk_init(X, "full")
    gm = fit_quiet(GaussianMixture(3, max_iter=10, freeze=("weights", "covariances"), **init), X)
    np.testing.assert_array_equal(gm.weights_, init["weights_init"])
    np.testing.assert_allclose(gm.precisions_, init["precisions_init"], rtol=1e-10)
    assert np.all(np.diff(gm.loglik_history_) >= -1e-9)


def test_fit_predict_warm_start_and_sampling():
    X = blobs()
    gm = GaussianMixture(3, random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = gm.fit_predict(X)
        np.testing.assert_array_equal(labels, gm.predict(X))
        gm.set_params(warm_start=True, max_iter=100)
        before = gm.loglik_history_[-1]
        gm.fit(X)
    assert gm.loglik_history_[0] == pytest.approx(before, rel=1e-12)
    Xs, ys = gm.sample(20000, random_state=0)
    assert Xs.shape == (20000, 3) and np.all(np.diff(ys) >= 0)
    for k in range(3):
        np.testing.assert_allclose(Xs[ys == k].mean(0), gm.means_[k], atol=0.1)
        np.testing.assert_allclose(np.cov(Xs[ys == k], rowvar=False), gm.covariances_[k],
                                   atol=0.15)
    np.testing.assert_allclose(np.bincount(ys) / 20000, gm.weights_, atol=0.015)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_sampling_shapes_per_type(covariance_type):
    gm = fit_quiet(GaussianMixture(2, covariance_type=covariance_type, random_state=0), blobs())
    Xs, ys = gm.sample(5000, random_state=1)
    assert Xs.shape == (5000, 3) and ys.shape == (5000,)
    k = int(np.argmax(gm.weights_))
    var = {"full": lambda c: np.diag(c[k]), "tied": np.diag, "diag": lambda c: c[k],
           "spherical": lambda c: np.full(3, c[k])}[covariance_type](gm.covariances_)
    np.testing.assert_allclose(Xs[ys == k].var(0), var, rtol=0.15)


def test_squarem_and_online_reach_the_batch_optimum():
    X = blobs()
    plain = fit_quiet(GaussianMixture(3, random_state=0, tol=1e-8, max_iter=500), X)
    fast = fit_quiet(GaussianMixture(3, random_state=0, tol=1e-8, max_iter=500), X,
                     accelerate="squarem")
    assert fast.lower_bound_ == pytest.approx(plain.lower_bound_, rel=1e-6)
    online = GaussianMixture(3, random_state=0, max_iter=20).fit(
        X, method="online", batch_size=30)
    assert np.all(np.isfinite(online.covariances_))
    assert online.score(X) == pytest.approx(plain.score(X), abs=0.05)


def test_fitted_arrays_are_read_only_views_of_params():
    gm = fit_quiet(GaussianMixture(2, random_state=0), blobs())
    with pytest.raises(ValueError, match="read-only"):
        gm.means_[0, 0] = 1.0
    assert repr(GaussianMixture(2, covariance_type="diag")) == (
        "GaussianMixture(covariance_type='diag', n_components=2)")


def test_save_and_load_round_trip(tmp_path):
    from emframe.interfaces.io import load

    X = blobs()
    gm = fit_quiet(GaussianMixture(3, covariance_type="tied", random_state=0), X)
    path = gm.save(tmp_path / "gmm.npz")
    back = load(path)
    np.testing.assert_array_equal(back.predict_proba(X), gm.predict_proba(X))


def test_registry_lists_valid_names():
    assert COVARIANCE_TYPES == ("diag", "full", "spherical", "tied")
    for name in COVARIANCE_TYPES:
        assert get_covariance_strategy(name).name == name
    with pytest.raises(ValueError, match="covariance_type must be one of"):
        get_covariance_strategy(None)


def test_large_dimension_uses_direct_path_and_matches_sklearn():
    # d = 70 > 63: the quadratic expansion would need 2485 features, so every component is
    # evaluated directly about its mean
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(150, 70)), rng.normal(size=(150, 70)) + 1.5])
    init = sk_init(X, "full", K=2)
    em = fit_quiet(GaussianMixture(2, max_iter=3, tol=0, reg_covar=0.0, **init), X)
    sk = fit_quiet(SKGaussianMixture(2, max_iter=3, tol=0, reg_covar=0.0, **init), X)
    p = em.params_
    kern = GaussianKernel(get_covariance_strategy("full"), p.means, p.precisions_cholesky)
    assert kern.fast.size == 0
    for name in ("weights_", "means_", "covariances_"):
        assert rel_err(getattr(em, name), getattr(sk, name)) < 1e-8, name


@settings(max_examples=25, deadline=None)
@given(
    covariance_type=st.sampled_from(TYPES),
    K=st.integers(1, 4),
    d=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    offset=st.sampled_from([0.0, 1e3, -1e5]),
)
def test_kernel_matches_naive_density(covariance_type, K, d, seed, offset):
    rng = np.random.default_rng(seed)
    strategy = get_covariance_strategy(covariance_type)
    X = rng.normal(size=(40, d)) * 2.0 + offset
    means = rng.normal(size=(K, d)) + offset
    weights = rng.dirichlet(np.ones(K))
    A = rng.normal(size=(K, d, d))
    full = np.einsum("kij,klj->kil", A, A) + 0.5 * np.eye(d)
    covs = {
        "full": lambda: full,
        "tied": lambda: full[0],
        "diag": lambda: np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": lambda: np.trace(full, axis1=1, axis2=2) / d,
    }[covariance_type]()
    dense = {
        "full": lambda c: c,
        "tied": lambda c: np.repeat(c[None], K, 0),
        "diag": lambda c: np.stack([np.diag(v) for v in c]),
        "spherical": lambda c: np.stack([v * np.eye(d) for v in c]),
    }[covariance_type](covs)
    pc = strategy.precisions_cholesky(covs)
    kern = GaussianKernel(strategy, means, pc, weights=weights)
    naive = np.stack([np.log(weights[k]) + sps.multivariate_normal(means[k], dense[k]).logpdf(X)
                      for k in range(K)], axis=1)
    np.testing.assert_allclose(kern.log_prob(X), naive, rtol=1e-9, atol=1e-9)
    # moments from the kernel equal the exactly centred two-pass moments
    resp = rng.dirichlet(np.ones(K), size=40)
    a, b = kern.moments(X, resp), gaussian_moments(X, resp, strategy)
    np.testing.assert_allclose(a.means(), b.means(), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(a.scatter(), b.scatter(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_kmeans_start_from_labels_equals_the_one_hot_responsibilities(covariance_type):
    """The k-means start takes its moments from the labels (no (n, K) matrix); the draws
    and the initial parameters are those of the one-hot responsibilities, bit for bit."""
    from emframe.models.mixtures.gaussian import INIT_METHODS, GaussianMixtureModel

    from emframe.inference.gaussian import gaussian_moments, label_moments

    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(size=(400, 3)) + 20 * k for k in range(3)])
    model = GaussianMixtureModel(4, covariance_type=covariance_type)
    got = model.initialize(X, np.random.default_rng(11))
    resp = INIT_METHODS["kmeans"](X, 4, np.random.default_rng(11))
    want = model.for_sample(len(X)).m_step(gaussian_moments(X, resp, model.strategy))
    for field in ("weights", "means", "covariances", "precisions_cholesky"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
    # weighted labels, with an empty component
    labels = rng.integers(3, size=len(X))
    w = rng.uniform(0.5, 2.0, len(X))
    onehot = np.zeros((len(X), 4))
    onehot[np.arange(len(X)), labels] = w
    a = label_moments(X, labels, 4, model.strategy, w)
    b = gaussian_moments(X, onehot, model.strategy)
    np.testing.assert_array_equal(a.nk, b.nk)
    np.testing.assert_allclose(a.scatter()[:3], b.scatter()[:3], rtol=1e-12)
