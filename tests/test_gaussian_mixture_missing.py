"""MissingDataGaussianMixture: oracles, conformance, and equality with its two special cases."""

import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture, MissingDataGaussian, MissingDataGaussianMixture
from emframe.models.missing.gaussian import MissingGaussianModel
from emframe.models.missing.gaussian_mixture import MissingGaussianMixtureModel
from emframe.models.mixtures.gaussian import GaussianMixtureModel, GaussianMixtureParams
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

import emframe
from emframe import fit_em
from emframe.testing import check_model

TYPES = ["full", "tied", "diag", "spherical"]


def dense(params, covariance_type):
    """Oracle: the components' covariances as (K, d, d), written out per type."""
    K, d = params.means.shape
    c = np.asarray(params.covariances)
    if covariance_type == "full":
        return c
    if covariance_type == "tied":
        return np.broadcast_to(c, (K, d, d))
    if covariance_type == "diag":
        return np.stack([np.diag(v) for v in c])
    return np.stack([v * np.eye(d) for v in c])


def blobs(n=240, d=3, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[4.0, 0, 0, 0], [-3.0, 3, 0, 0], [0.0, -4, 2, 0]])[:, :d]
    z = rng.integers(0, 3, n)
    X = centres[z] + rng.normal(size=(n, d)) * [1.0, 0.7, 1.3, 0.9][:d]
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
    return X


def fitted_model(X, covariance_type, K=3, seed=0):
    """A model and a (non-converged, correlated) parameter set for it."""
    model = MissingGaussianMixtureModel(K, covariance_type=covariance_type, reg_covar=1e-3)
    params = model.initialize(X, np.random.default_rng(seed))
    for _ in range(3):
        params = model.m_step(model.e_step(params, X)[0])
    return model, params


def observed_logpdf(x, mean, cov):
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])


def direct_conditional(x, mean, cov):
    o, m = ~np.isnan(x), np.isnan(x)
    if not o.any():
        return mean[m], cov[np.ix_(m, m)]
    gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
    return mean[m] + gain @ (x[o] - mean[o]), cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]


def brute_force_m_step(X, params, covs, reg_covar):
    """One EM step written row by row: posteriors, conditional moments, full M-step."""
    K, d = params.means.shape
    logp = np.array([[np.log(params.weights[k]) + observed_logpdf(x, params.means[k], covs[k])
                      for k in range(K)] for x in X])
    informative = ~np.isnan(X).all(axis=1)
    resp = np.exp(logp - logsumexp(logp, axis=1, keepdims=True)) * informative[:, None]
    nk = resp.sum(axis=0)
    ex = np.empty((K, len(X), d))
    exx = np.empty((K, len(X), d, d))
    for k in range(K):
        for i, x in enumerate(X):
            m = np.isnan(x)
            filled = x.copy()
            cond_cov = np.zeros((d, d))
            if m.any():
                filled[m], cond_cov[np.ix_(m, m)] = direct_conditional(x, params.means[k], covs[k])
            ex[k, i] = filled
            exx[k, i] = np.outer(filled, filled) + cond_cov
    means = np.einsum("ik,kid->kd", resp, ex) / nk[:, None]
    full = np.einsum("ik,kide->kde", resp, exx) / nk[:, None, None]
    full -= np.einsum("kd,ke->kde", means, means)
    return nk / nk.sum(), means, full, logsumexp(logp, axis=1) @ informative


def as_type(full, nk, covariance_type, reg):
    """The MAP covariances under the reg_covar prior: reg / N_k added to the variances."""
    d = full.shape[-1]
    if covariance_type == "full":
        return full + (reg / nk)[:, None, None] * np.eye(d)
    if covariance_type == "tied":
        return np.einsum("k,kde->de", nk / nk.sum(), full) + reg / nk.sum() * np.eye(d)
    diag = np.diagonal(full, axis1=1, axis2=2)
    if covariance_type == "diag":
        return diag + (reg / nk)[:, None]
    return diag.mean(axis=1) + reg / nk


def quiet(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return est.fit(*args, **kw)


# -- exact oracles ---------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", TYPES)
def test_log_density_is_the_brute_force_marginal(covariance_type):
    X = blobs(60, missing=0.35, seed=1)
    X[5] = np.nan
    model, params = fitted_model(X, covariance_type)
    covs = dense(params, covariance_type)
    np.testing.assert_allclose(model.dense_covariances(params), covs, rtol=1e-10, atol=1e-12)
    expected = np.array([[np.log(params.weights[k]) + observed_logpdf(x, params.means[k], covs[k])
                          for k in range(3)] for x in X])
    np.testing.assert_allclose(model.log_weighted_prob(params, X), expected, rtol=1e-10)
    np.testing.assert_allclose(model.score_samples(params, X), logsumexp(expected, axis=1),
                               rtol=1e-10, atol=1e-12)
    assert model.score_samples(params, X)[5] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_one_em_step_is_the_brute_force_one(covariance_type):
    X = blobs(50, missing=0.3, seed=2)
    X[7] = np.nan  # nothing observed: contributes nothing
    model, params = fitted_model(X, covariance_type)
    stats, loglik = model.e_step(params, X)
    new = model.m_step(stats)
    weights, means, full, expected_ll = brute_force_m_step(
        X, params, dense(params, covariance_type), model.reg_covar)
    assert loglik == pytest.approx(expected_ll, rel=1e-11)
    np.testing.assert_allclose(new.weights, weights, rtol=1e-10)
    np.testing.assert_allclose(new.means, means, rtol=1e-9, atol=1e-10)
    nk = weights * stats.nk.sum()
    np.testing.assert_allclose(new.covariances,
                               as_type(full, nk, covariance_type, model.reg_covar),
                               rtol=1e-9, atol=1e-10)


def test_imputation_is_the_posterior_mixture_of_conditionals():
    X = blobs(40, missing=0.4, seed=3)
    model, params = fitted_model(X, "full")
    imputed, var = model.impute(params, X)
    std = np.sqrt(var)
    covs = params.covariances
    for i, x in enumerate(X):
        m = np.isnan(x)
        if not m.any():
            continue
        logp = [np.log(params.weights[k]) + observed_logpdf(x, params.means[k], covs[k])
                for k in range(3)]
        post = np.exp(logp - logsumexp(logp))
        conds = [direct_conditional(x, params.means[k], covs[k]) for k in range(3)]
        mean = sum(p * c[0] for p, c in zip(post, conds, strict=True))
        second = sum(p * (np.diag(c[1]) + c[0] ** 2) for p, c in zip(post, conds, strict=True))
        np.testing.assert_allclose(imputed[i, m], mean, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(std[i, m] ** 2, second - mean**2, rtol=1e-8, atol=1e-9)
    obs = ~np.isnan(X)
    np.testing.assert_array_equal(imputed[obs], X[obs])
    assert np.all(std[obs] == 0.0)


def test_multiple_imputations_follow_the_conditional_mixture():
    X = blobs(6, missing=0.0, seed=4)
    X[:, 0] = np.nan  # the component is uncertain given the other columns for some rows
    est = quiet(MissingDataGaussianMixture(3, random_state=0), blobs(300, missing=0.2))
    draws = est.sample_imputations(X, n_imputations=20_000, random_state=1)
    assert draws.shape == (20_000, 6, 3)
    np.testing.assert_array_equal(draws[:, :, 1:], np.broadcast_to(X[:, 1:], (20_000, 6, 2)))
    imputed, std = est.impute(X, return_std=True)
    se = std[:, 0] / np.sqrt(20_000)
    assert np.all(np.abs(draws[:, :, 0].mean(axis=0) - imputed[:, 0]) < 5 * se)
    np.testing.assert_allclose(draws[:, :, 0].std(axis=0), std[:, 0], rtol=0.05)


# -- the engine's conformance checks under random masks -------------------------------------------


@settings(max_examples=12, deadline=None)
@given(
    covariance_type=st.sampled_from(TYPES),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_conformance_under_random_masks(covariance_type, seed, data):
    X = blobs(60, d=2, seed=seed)
    mask = data.draw(arrays(np.bool_, X.shape, elements=st.booleans(), fill=st.nothing()))
    mask &= data.draw(arrays(np.bool_, X.shape, elements=st.booleans(), fill=st.nothing()))
    assume((~mask).sum(axis=0).min() >= 10)
    X[mask] = np.nan
    cut = data.draw(st.integers(1, len(X) - 1))
    check_model(lambda: MissingGaussianMixtureModel(2, covariance_type=covariance_type), X,
                chunks=[X[:cut], X[cut:]], n_iter=15)


# -- the two special cases -------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", TYPES)
def test_without_missing_values_it_is_the_ordinary_gaussian_mixture(covariance_type):
    X = blobs(200, seed=5)
    kw = dict(covariance_type=covariance_type, random_state=3, n_init=2, tol=1e-6)
    a = quiet(GaussianMixture(3, **kw), X)
    b = quiet(MissingDataGaussianMixture(3, **kw), X)
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_array_equal(a.loglik_history_, b.loglik_history_)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))


@pytest.mark.parametrize("covariance_type", TYPES)
def test_marginalising_e_step_on_complete_rows_equals_the_kernel(covariance_type):
    # the incomplete-row path must agree with the parent's kernel where both apply
    X = blobs(80, seed=6)
    model, params = fitted_model(blobs(80, seed=6, missing=0.2), covariance_type)
    own, ll_own = model._incomplete_e_step(params, X, None)
    ref, ll_ref = GaussianMixtureModel.e_step(model, params, X)  # the parent's kernel
    assert ll_own == pytest.approx(ll_ref, rel=1e-12)
    np.testing.assert_allclose(model.m_step(own).covariances, model.m_step(ref).covariances,
                               rtol=1e-10)
    np.testing.assert_allclose(model.m_step(own).means, model.m_step(ref).means, rtol=1e-11)


def test_one_component_equals_missing_data_gaussian():
    X = blobs(150, seed=7, missing=0.3)
    X[3] = np.nan
    single = MissingGaussianModel(center=np.nanmean(X, axis=0))
    start = single.initialize(X, np.random.default_rng(0))
    mix = MissingGaussianMixtureModel(1, reg_covar=0.0)
    cov = start.covariance[None]
    mix_start = GaussianMixtureParams(np.ones(1), start.mean[None], cov,
                                      mix.strategy.precisions_cholesky(cov))
    seen_a, seen_b = [], []
    a = fit_em(single, X, init_params=start, tol=0.0, max_iter=15, warn_convergence=False,
               callbacks=[lambda info: seen_a.append(info.params)])
    b = fit_em(mix, X, init_params=mix_start, tol=0.0, max_iter=15, warn_convergence=False,
               callbacks=[lambda info: seen_b.append(info.params)])
    np.testing.assert_allclose(b.loglik_history, a.loglik_history, rtol=1e-12)
    for pa, pb in zip(seen_a, seen_b, strict=True):  # every iterate
        np.testing.assert_allclose(pb.means[0], pa.mean, rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(pb.covariances[0], pa.covariance, rtol=1e-10, atol=1e-12)
    # reg_covar and ridge are the same prior, exp(-r / 2 trace(inv(Sigma))): equal fits
    # and equal penalised histories
    reg = MissingGaussianMixtureModel(1, reg_covar=0.25)
    ridge = MissingGaussianModel(ridge=0.25, center=np.nanmean(X, axis=0))
    a = fit_em(ridge, X, init_params=start, tol=0.0, max_iter=15, warn_convergence=False)
    b = fit_em(reg, X, init_params=mix_start, tol=0.0, max_iter=15, warn_convergence=False)
    np.testing.assert_allclose(b.params.covariances[0], a.params.covariance, rtol=1e-10)
    np.testing.assert_allclose(b.params.means[0], a.params.mean, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(b.loglik_history, a.loglik_history, rtol=1e-12)
    assert reg.log_prior(b.params) == pytest.approx(ridge.log_prior(a.params), rel=1e-10)
    # as the estimators build it, the prior is attached to the n rows: lambda = reg_covar * n
    sized = MissingGaussianMixtureModel(1, reg_covar=0.25 / len(X), prior_size=len(X))
    c = fit_em(sized, X, init_params=mix_start, tol=0.0, max_iter=15, warn_convergence=False)
    np.testing.assert_allclose(c.params.covariances[0], a.params.covariance, rtol=1e-10)


# -- behaviour on realistic data and the estimator surface ----------------------------------------


def test_recovers_the_mixture_under_mcar():
    X = blobs(3000, seed=8)
    Xm = blobs(3000, seed=8, missing=0.3)
    full = quiet(GaussianMixture(3, random_state=0), X)
    part = quiet(MissingDataGaussianMixture(3, random_state=0), Xm)
    order_a, order_b = np.argsort(full.means_[:, 0]), np.argsort(part.means_[:, 0])
    np.testing.assert_allclose(part.means_[order_b], full.means_[order_a], atol=0.1)
    np.testing.assert_allclose(part.weights_[order_b], full.weights_[order_a], atol=0.02)
    # labels from the observed entries only: as often right as their posteriors promise
    relabel = np.empty(3, dtype=int)
    relabel[order_b] = order_a
    truth = full.predict(X)
    proba = part.predict_proba(Xm)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(part.predict(Xm), np.argmax(proba, axis=1))
    hit = relabel[part.predict(Xm)] == truth
    promised = proba[np.arange(len(X)), order_b[np.argsort(order_a)][truth]]
    complete = ~np.isnan(Xm).any(axis=1)
    assert hit[complete].mean() > 0.99
    assert abs(hit.mean() - promised.mean()) < 3 * np.sqrt(0.25 / len(X))


def test_rows_with_nothing_observed_contribute_nothing():
    X = blobs(100, seed=9, missing=0.2)
    padded = np.vstack([X, np.full((7, 3), np.nan)])
    est = quiet(MissingDataGaussianMixture(3, random_state=0, max_iter=5), X)
    init = dict(weights_init=est.weights_, means_init=est.means_,
                precisions_init=est.precisions_, max_iter=10, tol=0.0)
    a = quiet(MissingDataGaussianMixture(3, **init), X)
    # the empty rows count in the data size the reg_covar prior is attached to (n = 107
    # rows, not 100): the same prior strength reg_covar * n / K needs a smaller reg_covar
    b = quiet(MissingDataGaussianMixture(3, reg_covar=1e-6 * 100 / 107, **init), padded)
    assert (a.prior_size_, b.prior_size_) == (100, 107)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-12)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-12)
    np.testing.assert_allclose(b.loglik_history_, a.loglik_history_, rtol=1e-12)
    np.testing.assert_allclose(b.predict_proba(padded[-7:]),
                               np.broadcast_to(b.weights_, (7, 3)), rtol=1e-12)


def test_chunked_and_accelerated_fits():
    X = blobs(200, seed=10, missing=0.25)
    est = quiet(MissingDataGaussianMixture(3, random_state=0, max_iter=3), X)
    init = dict(weights_init=est.weights_, means_init=est.means_,
                precisions_init=est.precisions_)
    a = quiet(MissingDataGaussianMixture(3, max_iter=12, tol=0.0, **init), X)
    b = quiet(MissingDataGaussianMixture(3, max_iter=12, tol=0.0, **init), X, chunk_size=33)
    np.testing.assert_allclose(b.means_, a.means_, rtol=1e-10)
    np.testing.assert_allclose(b.covariances_, a.covariances_, rtol=1e-9)
    fast = quiet(MissingDataGaussianMixture(3, tol=1e-9, max_iter=500, **init), X,
                 accelerate="squarem")
    assert np.all(np.diff(fast.loglik_history_) >= -1e-9 * np.abs(fast.loglik_history_[:-1]))


def test_inputs_unmodified_errors_and_persistence(tmp_path):
    X = blobs(120, seed=11, missing=0.3)
    before = X.copy()
    est = quiet(MissingDataGaussianMixture(2, random_state=0), X)
    est.predict(X), est.predict_proba(X), est.score_samples(X), est.score(X), est.bic(X)
    est.impute(X, return_std=True), est.transform(X), est.sample_imputations(X, 2, 0)
    np.testing.assert_array_equal(X, before)
    path = est.save(tmp_path / "mix.npz")
    loaded = emframe.load(path)
    assert type(loaded) is MissingDataGaussianMixture
    np.testing.assert_array_equal(loaded.impute(X), est.impute(X))
    bad = X.copy()
    bad[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) 1 of X have no observed value"):
        MissingDataGaussianMixture(2).fit(bad)
    with pytest.raises(ValueError, match="X has 2 features, but MissingDataGaussianMixture"):
        est.impute(X[:, :2])
    with pytest.raises(ValueError, match="n_imputations must be >= 1"):
        est.sample_imputations(X, 0)
    with pytest.raises(ValueError, match="stats_from_resp needs complete data"):
        est._model.stats_from_resp(X, np.ones((len(X), 2)) / 2)
    with pytest.raises(ValueError, match="X contains NaN"):
        GaussianMixture(2).fit(X)  # the plain estimator still refuses NaN


def test_one_component_estimator_matches_missing_data_gaussian_estimate():
    from emframe.datasets import load_airquality

    X = load_airquality()[0][:, :4]
    single = MissingDataGaussian(tol=1e-12, max_iter=1000).fit(X)
    mix = quiet(MissingDataGaussianMixture(1, reg_covar=0.0, tol=1e-12, max_iter=1000), X)
    np.testing.assert_allclose(mix.means_[0], single.mean_, rtol=1e-8)
    np.testing.assert_allclose(mix.covariances_[0], single.covariance_, rtol=1e-7)
    assert mix.score(X) == pytest.approx(single.score(X), rel=1e-10)
    np.testing.assert_allclose(mix.impute(X), single.impute(X), rtol=1e-7, atol=1e-5)


with warnings.catch_warnings():
    # emframe estimators follow scikit-learn's conventions without inheriting its BaseEstimator
    warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base")
    from sklearn.utils.estimator_checks import parametrize_with_checks

    _sklearn_checks = parametrize_with_checks(
        [MissingDataGaussianMixture(n_components=2, random_state=0)],
        expected_failed_checks=lambda est: {
            "check_sample_weight_equivalence_on_dense_data": (
                "initialisation does not see sample_weight (engine contract initialize(X, rng)),"
                " as for GaussianMixture"
            ),
        },
    )


@_sklearn_checks
def test_sklearn_conventions(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        check(estimator)


def test_float32_data_keep_float64_arithmetic_and_its_guard():
    # its E-step computes the conditionals in float64 whatever the data's dtype, so it
    # declares no float32 precision to the monotonicity guard
    rng = np.random.default_rng(0)
    X = (rng.normal(size=(300, 3)) + 4.0 * (rng.random((300, 1)) < 0.5)).astype(np.float32)
    X[rng.random(X.shape) < 0.2] = np.nan
    est = MissingDataGaussianMixture(2, random_state=0, max_iter=5).fit(X)
    assert not est._model.uses_float32() and est._model.evaluation_rtol() == 0.0
