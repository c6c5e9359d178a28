"""MissingDataGaussian and conditional Gaussians: oracles, conformance, the estimator surface."""

import re
import warnings

import numpy as np
import pytest
from emframe.models import MissingDataGaussian
from emframe.models.missing.gaussian import MissingGaussianModel, MissingGaussianParams
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import multivariate_normal

import emframe
from emframe import NotFittedError, fit_em
from emframe.inference.gaussian.conditional import (
    conditional_gaussian,
    missing_patterns,
    observed_moments,
)
from emframe.testing import check_additive, check_model, check_valid_params

# -- helpers ------------------------------------------------------------------------------------


def random_gaussian(d, rng, scale=1.0):
    A = rng.normal(size=(d, d))
    cov = A @ A.T / d + 0.3 * np.eye(d)
    return rng.normal(size=d) * scale, cov


def with_mcar(X, rate, rng):
    Xm = X.copy()
    Xm[rng.random(X.shape) < rate] = np.nan
    return Xm


def direct_conditional(x, mean, cov):
    """Textbook conditional of the missing entries of one row, via the observed block of cov."""
    o = ~np.isnan(x)
    m = ~o
    if not o.any():
        return mean[m], cov[np.ix_(m, m)]
    gain = np.linalg.solve(cov[np.ix_(o, o)], cov[np.ix_(o, m)]).T
    return mean[m] + gain @ (x[o] - mean[o]), cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]


def observed_logpdf(x, mean, cov):
    """Brute-force oracle: scipy's log-density of the observed coordinates (0 if none)."""
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])


@st.composite
def incomplete_data(draw, max_d=4, max_n=40):
    """Gaussian data with a hypothesis-chosen missingness mask (a few values in every column)."""
    d = draw(st.integers(1, max_d))
    n = draw(st.integers(4 * d + 4, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        mask = draw(arrays(np.bool_, (n, d), elements=st.booleans(), fill=st.nothing()))
    else:
        mask = rng.random((n, d)) < draw(st.floats(0.0, 0.6))
    assume((~mask).sum(axis=0).min() >= d + 3)
    mean, cov = random_gaussian(d, rng, scale=3.0)
    X = rng.multivariate_normal(mean, cov, size=n)
    X[mask] = np.nan
    return X


# -- emframe.inference.gaussian.conditional: exact oracles ----------------------------


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_conditionals_match_direct_formulas(data):
    d = data.draw(st.integers(1, 5))
    n = data.draw(st.integers(1, 30))
    mask = data.draw(arrays(np.bool_, (n, d), elements=st.booleans(), fill=st.nothing()))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    mean, cov = random_gaussian(d, rng, scale=2.0)
    X = rng.normal(size=(n, d)) * 2.0
    X[mask] = np.nan
    X_before = X.copy()
    cond = conditional_gaussian(X, mean, cov)
    imputed, var = cond.imputed(X), cond.conditional_variance()
    weights = rng.uniform(0.1, 2.0, n)
    cov_sum = np.zeros((d, d))
    for i in range(n):
        m = mask[i]
        np.testing.assert_allclose(cond.log_pdf[i], observed_logpdf(X[i], mean, cov),
                                   rtol=1e-10, atol=1e-10)
        cmean, ccov = direct_conditional(X[i], mean, cov)
        np.testing.assert_allclose(imputed[i, m], cmean, rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(var[i, m], np.diag(ccov), rtol=1e-9, atol=1e-10)
        np.testing.assert_allclose(cond.residual[i], imputed[i] - mean, rtol=1e-9, atol=1e-10)
        cov_sum[np.ix_(m, m)] += weights[i] * ccov
    np.testing.assert_array_equal(imputed[~mask], X[~mask])  # bit for bit
    assert np.all(var[~mask] == 0.0)
    np.testing.assert_allclose(cond.weighted_cov_sum(weights), cov_sum, rtol=1e-9, atol=1e-10)
    for g, c, root in zip(cond.patterns.groups, cond.cond_cov, cond.cond_sqrt, strict=True):
        np.testing.assert_allclose(root @ np.swapaxes(root, 1, 2), c, rtol=1e-9, atol=1e-10)
        assert g.row_missing.shape == (len(g.rows), g.n_missing)
    np.testing.assert_array_equal(X, X_before)


@settings(max_examples=40, deadline=None)
@given(mask=arrays(np.bool_, st.tuples(st.integers(0, 30), st.sampled_from([1, 2, 3, 9, 62, 70])),
                  elements=st.booleans(), fill=st.nothing()))
def test_missing_patterns_partition_rows(mask):
    X = np.where(mask, np.nan, 1.0)
    pats = missing_patterns(X)
    seen = np.zeros(len(X), dtype=int)
    for g in pats.groups:
        seen[g.rows] += 1
        rows_mask = mask[g.rows]
        assert np.all(rows_mask.sum(axis=1) == g.n_missing)
        np.testing.assert_array_equal(np.nonzero(rows_mask)[1].reshape(-1, g.n_missing),
                                      g.row_missing)
        assert len(np.unique(g.missing, axis=0)) == len(g.missing)  # one entry per pattern
    # every incomplete row is in exactly one group, complete rows in none
    np.testing.assert_array_equal(seen, mask.any(axis=1).astype(int))
    assert pats.n_patterns == len(np.unique(mask, axis=0))
    np.testing.assert_array_equal(pats.n_observed, (~mask).sum(axis=1))


def test_rows_with_nothing_observed_have_density_one_and_the_marginal():
    rng = np.random.default_rng(0)
    mean, cov = random_gaussian(3, rng)
    X = np.array([[np.nan, np.nan, np.nan], [1.0, np.nan, 2.0]])
    cond = conditional_gaussian(X, mean, cov)
    assert cond.log_pdf[0] == 0.0
    np.testing.assert_array_equal(cond.imputed(X)[0], mean)
    np.testing.assert_allclose(cond.conditional_variance()[0], np.diag(cov))


def test_conditional_draws_have_the_conditional_mean_and_covariance():
    rng = np.random.default_rng(1)
    mean, cov = random_gaussian(4, rng)
    X = np.array([[0.5, np.nan, np.nan, -1.0], [np.nan, np.nan, np.nan, np.nan]])
    cond = conditional_gaussian(X, mean, cov)
    draws = cond.sample(X, 40_000, np.random.default_rng(2))
    assert draws.shape == (40_000, 2, 4)
    np.testing.assert_array_equal(draws[:, 0, [0, 3]], np.broadcast_to([0.5, -1.0], (40_000, 2)))
    for i in range(2):
        m = np.isnan(X[i])
        cmean, ccov = direct_conditional(X[i], mean, cov)
        sample = draws[:, i][:, m]
        se = np.sqrt(np.diag(ccov) / len(sample))
        assert np.all(np.abs(sample.mean(axis=0) - cmean) < 4.5 * se)
        # sampling sd of a covariance entry is about sqrt((s_ii s_jj + s_ij^2) / N)
        sd = np.sqrt((np.outer(np.diag(ccov), np.diag(ccov)) + ccov**2) / len(sample))
        assert np.all(np.abs(np.cov(sample.T, bias=True) - ccov) < 4.5 * sd)


def test_observed_moments_ignore_nan_without_warnings():
    X = np.array([[1.0, np.nan], [3.0, np.nan], [np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count, mean, var = observed_moments(X)
    np.testing.assert_array_equal(count, [2, 0])
    np.testing.assert_array_equal(mean, [2.0, 0.0])
    np.testing.assert_array_equal(var, [1.0, 0.0])


def test_conditional_rejects_a_singular_covariance():
    X = np.array([[1.0, np.nan]])
    with pytest.raises(ValueError, match="not symmetric positive definite"):
        conditional_gaussian(X, np.zeros(2), np.ones((2, 2)))


# -- the model: engine conformance under hypothesis masks -----------------------------------------


@settings(max_examples=25, deadline=None)
@given(X=incomplete_data(), ridge=st.sampled_from([0.0, 0.0, 0.5, 5.0]))
def test_conformance_under_random_masks(X, ridge):
    center = observed_moments(X)[1]
    # random masks often leave the ML covariance on the boundary (singular), where the
    # gradient need not vanish: stationarity is checked below on well-posed data
    check_model(lambda: MissingGaussianModel(ridge=ridge, center=center), X, n_iter=15,
                stationary=False)


@pytest.mark.parametrize("ridge", [0.0, 0.5])
def test_conformance_with_stationarity(ridge):
    rng = np.random.default_rng(3)
    X = rng.multivariate_normal([1.0, -2.0, 0.5], [[2, 0.8, 0.3], [0.8, 1, 0.2], [0.3, 0.2, 1.5]],
                                size=200)
    X[rng.random(X.shape) < 0.25] = np.nan
    check_model(MissingGaussianModel(ridge=ridge, center=observed_moments(X)[1]), X)


@settings(max_examples=30, deadline=None)
@given(X=incomplete_data(), data=st.data())
def test_statistics_are_additive_over_any_split(X, data):
    n = len(X)
    cuts = sorted(data.draw(st.lists(st.integers(1, n - 1), max_size=3, unique=True)))
    chunks = np.split(X, cuts)
    model = MissingGaussianModel(center=data.draw(st.sampled_from([None, np.nanmean(X, 0)])))
    params = model.initialize(X, np.random.default_rng(0))
    params = model.m_step(model.e_step(params, X)[0])  # a correlated parameter set
    check_additive(model, params, X, chunks)


@settings(max_examples=20, deadline=None)
@given(X=incomplete_data(max_d=3))
def test_observed_data_log_likelihood_is_the_brute_force_one(X):
    model = MissingGaussianModel()
    params = model.initialize(X, np.random.default_rng(0))
    params = model.m_step(model.e_step(params, X)[0])
    expected = sum(observed_logpdf(x, params.mean, params.covariance) for x in X)
    assert np.isclose(model.log_likelihood(params, X), expected, rtol=1e-11, atol=1e-9)
    assert np.isclose(model.e_step(params, X)[1], expected, rtol=1e-11, atol=1e-9)


def test_online_blending_of_statistics_is_exact():
    # statistics from different parameters (as online EM blends them) must still add up:
    # moments about the model's fixed centre, not about a per-E-step mean
    rng = np.random.default_rng(3)
    mean, cov = random_gaussian(3, rng, scale=50.0)
    X = rng.multivariate_normal(mean, cov, size=300)
    model = MissingGaussianModel(center=mean + 1.0)
    p1 = MissingGaussianParams(mean, cov)
    p2 = MissingGaussianParams(mean + 0.5, 2 * cov)
    s = model.e_step(p1, X[:100])[0] + model.e_step(p2, X[100:])[0]
    got = model.m_step(s)
    # complete data: the E-step does not depend on the parameters at all
    np.testing.assert_allclose(got.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(got.covariance, np.cov(X.T, bias=True), rtol=1e-10)


# -- complete data, known truth, imputation ------------------------------------------------------


def test_complete_data_gives_the_closed_form_mle_in_one_step():
    rng = np.random.default_rng(4)
    mean, cov = random_gaussian(5, rng, scale=1e3)  # far from the origin: tests cancellation
    X = rng.multivariate_normal(mean, cov, size=200)
    model = MissingGaussianModel(center=X[0])
    start = MissingGaussianParams(np.zeros(5), np.eye(5))
    new = check_valid_params(model, start, X)
    np.testing.assert_allclose(new.mean, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(new.covariance, np.cov(X.T, bias=True), rtol=1e-9, atol=1e-12)
    with pytest.warns(Warning, match="did not converge"):
        est = MissingDataGaussian(max_iter=1).fit(X)
    np.testing.assert_allclose(est.mean_, X.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(est.covariance_, np.cov(X.T, bias=True), rtol=1e-9, atol=1e-12)
    # and the ridge prior's M-step is (scatter + ridge I) / n
    ridged = MissingGaussianModel(ridge=7.0).m_step(model.e_step(start, X)[0])
    np.testing.assert_allclose(ridged.covariance, np.cov(X.T, bias=True) + 7.0 / 200 * np.eye(5),
                               rtol=1e-9)


def test_mcar_estimates_approach_the_truth_as_n_grows():
    rng = np.random.default_rng(5)
    mean, cov = random_gaussian(3, rng, scale=2.0)
    errors = []
    for n in (300, 3_000, 30_000):
        X = with_mcar(rng.multivariate_normal(mean, cov, size=n), 0.3, rng)
        est = MissingDataGaussian(tol=1e-9).fit(X)
        assert est.converged_
        errors.append(max(np.abs(est.mean_ - mean).max(), np.abs(est.covariance_ - cov).max()))
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.05  # about 3 standard errors at n = 30,000


def test_imputations_have_the_conditional_mean_and_variance_of_the_truth():
    rng = np.random.default_rng(6)
    mean, cov = random_gaussian(4, rng, scale=5.0)
    X = rng.multivariate_normal(mean, cov, size=20_000)
    Xm = with_mcar(X, 0.3, rng)
    est = MissingDataGaussian(tol=1e-9).fit(Xm)
    imputed, std = est.impute(Xm, return_std=True)
    mask = np.isnan(Xm)
    rows = np.flatnonzero(mask.any(axis=1))[:300]
    for i in rows:
        cmean, ccov = direct_conditional(Xm[i], mean, cov)
        np.testing.assert_allclose(imputed[i, mask[i]], cmean, atol=0.06)
        np.testing.assert_allclose(std[i, mask[i]], np.sqrt(np.diag(ccov)), atol=0.03)
    # calibration: the hidden true values are N(imputed, std^2) given the observed ones
    z = (X[mask] - imputed[mask]) / std[mask]
    se = 1.0 / np.sqrt(z.size)
    assert abs(z.mean()) < 4 * se
    assert abs((z**2).mean() - 1.0) < 4 * np.sqrt(2.0) * se
    # multiple imputations: the spread across draws is the conditional sd
    draws = est.sample_imputations(Xm[:200], n_imputations=2_000, random_state=0)
    m200 = mask[:200]
    spread = draws.std(axis=0)[m200]
    np.testing.assert_allclose(spread, std[:200][m200], rtol=0.1)
    np.testing.assert_allclose(draws.mean(axis=0)[m200], imputed[:200][m200],
                               atol=5 * std[:200][m200].max() / np.sqrt(2_000))


# -- the estimator surface ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def air():
    from emframe.datasets import load_airquality

    data, _ = load_airquality()
    return data[:, :4]


def test_fit_on_air_quality_is_monotone_and_matches_scipy(air):
    est = MissingDataGaussian().fit(air)
    assert est.converged_
    assert np.all(np.diff(est.loglik_history_) >= -1e-9 * np.abs(est.loglik_history_[:-1]))
    expected = sum(observed_logpdf(x, est.mean_, est.covariance_) for x in air)
    assert np.isclose(est.log_likelihood(air), expected, rtol=1e-12)
    assert np.isclose(est.loglik_history_[-1], expected, rtol=1e-12)
    np.testing.assert_allclose(est.score_samples(air).sum(), expected, rtol=1e-12)
    assert est.n_parameters() == 4 + 10


def test_inputs_are_never_modified(air):
    X = air.copy()
    w = np.linspace(0.5, 2.0, len(X))
    w_before = w.copy()
    est = MissingDataGaussian().fit(X, sample_weight=w)
    imputed = est.impute(X)
    est.impute(X, return_std=True)
    est.transform(X)
    est.sample_imputations(X, 2, random_state=0)
    est.score_samples(X)
    np.testing.assert_array_equal(X, air)
    np.testing.assert_array_equal(w, w_before)
    assert np.isnan(X).sum() == 44 and not np.isnan(imputed).any()
    obs = ~np.isnan(X)
    np.testing.assert_array_equal(imputed[obs], X[obs])


def test_transform_equals_impute_and_fit_transform(air):
    est = MissingDataGaussian()
    out = est.fit_transform(air)
    np.testing.assert_array_equal(out, est.transform(air))
    np.testing.assert_array_equal(out, est.impute(air))
    imputed, std = est.impute(air, return_std=True)
    np.testing.assert_array_equal(imputed, out)
    assert np.all(std[~np.isnan(air)] == 0.0) and np.all(std[np.isnan(air)] > 0)


def test_rows_with_every_entry_missing_contribute_nothing(air):
    blank = np.full((10, 4), np.nan)
    padded = np.vstack([air[:50], blank, air[50:]])
    a = MissingDataGaussian(tol=0.0, max_iter=30)
    b = MissingDataGaussian(tol=0.0, max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.fit(air)
        b.fit(padded)
    np.testing.assert_allclose(b.mean_, a.mean_, rtol=1e-12)
    np.testing.assert_allclose(b.covariance_, a.covariance_, rtol=1e-12)
    np.testing.assert_allclose(b.loglik_history_, a.loglik_history_, rtol=1e-12)
    np.testing.assert_array_equal(b.score_samples(blank), np.zeros(10))
    imputed, std = b.impute(blank, return_std=True)
    np.testing.assert_array_equal(imputed, np.broadcast_to(b.mean_, (10, 4)))
    np.testing.assert_allclose(std**2, np.broadcast_to(np.diag(b.covariance_), (10, 4)))


def test_a_column_with_every_entry_missing_is_named(air):
    X = air.copy()
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) 2 of X have no observed value"):
        MissingDataGaussian().fit(X)
    with pytest.raises(ValueError, match=r"column\(s\) 2 of X have no observed value"):
        MissingDataGaussian().fit(X, chunk_size=40)
    w = np.ones(len(air))
    w[~np.isnan(air[:, 0])] = 0.0
    with pytest.raises(ValueError, match=r"column\(s\) 0 .*zero sample weight"):
        MissingDataGaussian().fit(air, sample_weight=w)


def test_chunked_fit_equals_the_in_memory_fit(air):
    model = MissingGaussianModel(center=np.nanmean(air, axis=0))
    start = model.initialize(air, np.random.default_rng(0))
    whole = fit_em(model, air, init_params=start, tol=0.0, max_iter=25, warn_convergence=False)
    parts = fit_em(model, air, init_params=start, tol=0.0, max_iter=25, chunk_size=17,
                   warn_convergence=False)
    assert parts.params.allclose(whole.params, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(parts.loglik_history, whole.loglik_history, rtol=1e-12)


def test_integer_weights_equal_repeated_rows(air):
    w = np.arange(len(air)) % 3
    model = MissingGaussianModel(center=np.nanmean(air, axis=0))
    start = model.initialize(air, np.random.default_rng(0))
    a = fit_em(model, air, init_params=start, sample_weight=w.astype(float), tol=0.0,
               max_iter=20, warn_convergence=False)
    b = fit_em(model, np.repeat(air, w, axis=0), init_params=start, tol=0.0, max_iter=20,
               warn_convergence=False)
    assert a.params.allclose(b.params, rtol=1e-11, atol=1e-11)
    # the fit sees the weights relative to their mean over the positive ones
    np.testing.assert_allclose(a.loglik_history * a.weight_scale, b.loglik_history, rtol=1e-12)


def test_squarem_and_online_reach_the_same_estimate(air):
    plain = MissingDataGaussian(tol=1e-12, max_iter=2000).fit(air)
    fast = MissingDataGaussian(tol=1e-12, max_iter=2000).fit(air, accelerate="squarem")
    assert fast.n_iter_ < plain.n_iter_
    np.testing.assert_allclose(fast.mean_, plain.mean_, rtol=1e-6)
    np.testing.assert_allclose(fast.covariance_, plain.covariance_, rtol=1e-5)
    online = MissingDataGaussian()
    for start in range(0, len(air), 40):
        online.partial_fit(air[start:start + 40])
    assert np.all(np.isfinite(online.covariance_))
    np.linalg.cholesky(online.covariance_)


def test_freezing_the_mean_gives_the_scatter_about_it():
    rng = np.random.default_rng(7)
    mean, cov = random_gaussian(3, rng)
    X = rng.multivariate_normal(mean, cov, size=400)
    model = MissingGaussianModel(center=X.mean(axis=0))
    m0 = np.array([1.0, -2.0, 0.5])
    start = MissingGaussianParams(m0, np.eye(3))
    new = model.constrained_m_step(model.e_step(start, X)[0], {"mean": m0})
    np.testing.assert_array_equal(new.mean, m0)
    np.testing.assert_allclose(new.covariance, (X - m0).T @ (X - m0) / 400, rtol=1e-10)
    Xm = with_mcar(X, 0.3, rng)
    est = MissingDataGaussian().fit(Xm[:200])
    first_mean = est.mean_.copy()
    est.set_params(freeze=["mean"], warm_start=True).fit(Xm[200:])
    np.testing.assert_array_equal(est.mean_, first_mean)
    assert np.all(np.diff(est.loglik_history_) >= -1e-9 * np.abs(est.loglik_history_[:-1]))


def test_ridge_handles_more_features_than_samples():
    rng = np.random.default_rng(8)
    X = with_mcar(rng.normal(size=(6, 10)), 0.2, rng)
    X[0] = rng.normal(size=10)  # every column observed at least once
    with pytest.raises(ValueError, match="not positive definite.*set ridge > 0"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MissingDataGaussian(max_iter=50).fit(X)
    est = MissingDataGaussian(ridge=1.0).fit(X)
    assert np.all(np.linalg.eigvalsh(est.covariance_) > 0)
    hist = est.loglik_history_
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[:-1]))
    # the history is the penalised log-likelihood
    penalty = -0.5 * np.trace(np.linalg.inv(est.covariance_))
    assert np.isclose(hist[-1], est.log_likelihood(X) + penalty, rtol=1e-10)


def test_clear_errors_on_bad_input(air):
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        MissingDataGaussian(ridge=-1.0).fit(air)
    with pytest.raises(TypeError, match="ridge must be"):
        MissingDataGaussian(ridge="big").fit(air)
    with pytest.raises(ValueError, match="ridge must be finite"):
        MissingDataGaussian(ridge=np.inf).fit(air)
    bad = air.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match=re.escape("X contains inf (first at row 3, column 1")):
        MissingDataGaussian().fit(bad)
    with pytest.raises(ValueError, match="Expected a 2-D array"):
        MissingDataGaussian().fit(air[:, 0])
    with pytest.raises(ValueError, match="n_samples = 1: one sample determines no covariance"):
        MissingDataGaussian().fit(air[:1])
    MissingDataGaussian(ridge=1.0).fit(air[:1])  # a prior makes one sample enough
    with pytest.raises(NotFittedError):
        MissingDataGaussian().impute(air)
    est = MissingDataGaussian().fit(air)
    with pytest.raises(ValueError, match="X has 3 features, but MissingDataGaussian is expect"):
        est.impute(air[:, :3])
    with pytest.raises(ValueError, match="n_imputations must be >= 1"):
        est.sample_imputations(air, 0)
    with pytest.raises(TypeError, match="n_imputations must be int"):
        est.sample_imputations(air, 2.5)
    with pytest.raises(ValueError, match="no row has an observed entry"):
        MissingGaussianModel().m_step(
            MissingGaussianModel().e_step(MissingGaussianParams(np.zeros(2), np.eye(2)),
                                          np.full((3, 2), np.nan))[0])


def test_sample_imputations_shape_and_reproducibility(air):
    est = MissingDataGaussian().fit(air)
    a = est.sample_imputations(air, n_imputations=3, random_state=4)
    b = est.sample_imputations(air, n_imputations=3, random_state=4)
    assert a.shape == (3, 153, 4)
    np.testing.assert_array_equal(a, b)
    obs = ~np.isnan(air)
    for draw in a:
        np.testing.assert_array_equal(draw[obs], air[obs])
    assert not np.array_equal(a[0], a[1])


def test_sklearn_clone_and_params():
    from sklearn.base import clone

    est = MissingDataGaussian(ridge=0.5, tol=1e-4)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert repr(est) == "MissingDataGaussian(ridge=0.5, tol=0.0001)"


with warnings.catch_warnings():
    # emframe estimators follow scikit-learn's conventions without inheriting its BaseEstimator
    warnings.filterwarnings("ignore", message=".*does not inherit from `sklearn.base")
    from sklearn.utils.estimator_checks import parametrize_with_checks

    _sklearn_checks = parametrize_with_checks(
        [MissingDataGaussian()],
        expected_failed_checks=lambda est: {
            "check_sample_weight_equivalence_on_dense_data": (
                "its data have fewer informative rows than columns, where the maximum-"
                "likelihood covariance does not exist (ridge=0); the clear error is tested above"
            ),
        },
    )


@_sklearn_checks
def test_sklearn_conventions(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        check(estimator)


def test_fits_of_large_data_are_reproducible():
    # the initialisation reads a seeded sample of data larger than init_sample_size:
    # the seed is fixed, so every fit of the same data starts (and ends) the same
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.3], [0, 0, 1.0]])
    X[rng.random(X.shape) < 0.2] = np.nan
    fits = [MissingDataGaussian(max_iter=2, tol=0).fit(X, init_sample_size=40) for _ in range(2)]
    np.testing.assert_array_equal(fits[0].covariance_, fits[1].covariance_)
    np.testing.assert_array_equal(fits[0].loglik_history_, fits[1].loglik_history_)
