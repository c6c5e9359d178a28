"""BernoulliMixture: exact oracles, engine conformance, missing entries and bad input."""

import itertools
import math
import warnings

import numpy as np
import pytest
from emframe.models import BernoulliMixture
from emframe.models.mixtures.bernoulli import (
    BernoulliMixtureModel,
    BernoulliParams,
    BinaryData,
    binary_data,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe import fit_em
from emframe.exceptions import ConvergenceWarning, NotFittedError
from emframe.testing import (
    check_additive,
    check_complete_data_mle,
    check_deterministic,
    check_model,
    check_monotone,
    check_no_mutation,
    check_valid_params,
)


# ---------------------------------------------------------------------------
# helpers: data and a deliberately naive reference implementation
# ---------------------------------------------------------------------------
def make_data(n=200, d=6, K=3, missing=0.2, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.05, 0.95, (K, d))
    z = rng.integers(0, K, n)
    X = (rng.random((n, d)) < probs[z]).astype(float)
    X[rng.random((n, d)) < missing] = np.nan
    return X, z, probs


def ref_log_weighted(X, weights, probs):
    """log w_k + log p(x_i | k), by explicit loops over rows, components and observed entries."""
    n, d = X.shape
    K = len(weights)
    out = np.empty((n, K))
    for i in range(n):
        for k in range(K):
            s = math.log(weights[k]) if weights[k] > 0 else -math.inf
            for j in range(d):
                x, p = X[i, j], probs[k, j]
                if np.isnan(x):
                    continue
                q = p if x == 1 else 1.0 - p
                s += math.log(q) if q > 0 else -math.inf
            out[i, k] = s
    return out


def ref_em_step(X, weights, probs, a=1.0, b=1.0, g=1.0):
    """One MAP-EM step written out entry by entry."""
    lw = ref_log_weighted(X, weights, probs)
    n, d = X.shape
    K = len(weights)
    resp = np.empty_like(lw)
    for i in range(n):
        m = max(lw[i])
        e = [math.exp(v - m) for v in lw[i]]
        resp[i] = np.array(e) / sum(e)
    new_w = np.array([(resp[:, k].sum() + g - 1) / (n + K * (g - 1)) for k in range(K)])
    new_p = np.empty((K, d))
    for k in range(K):
        for j in range(d):
            ones = sum(resp[i, k] for i in range(n) if X[i, j] == 1)
            obs = sum(resp[i, k] for i in range(n) if not np.isnan(X[i, j]))
            new_p[k, j] = (ones + a - 1) / (obs + a + b - 2)
    return new_w, new_p


def brute_force_row_loglik(x, weights, probs):
    """log p(x) with missing entries summed over all 2^m completions (no marginalisation trick)."""
    miss = np.flatnonzero(np.isnan(x))
    total = 0.0
    for fill in itertools.product([0.0, 1.0], repeat=len(miss)):
        xc = x.copy()
        xc[miss] = fill
        lik = 0.0
        for k in range(len(weights)):
            lik += weights[k] * np.prod(np.where(xc == 1, probs[k], 1 - probs[k]))
        total += lik
    return math.log(total)


def random_params(K, d, seed=1):
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(K))
    return BernoulliParams(weights=w, probs=rng.uniform(0.05, 0.95, (K, d)))


# ---------------------------------------------------------------------------
# exact oracles
# ---------------------------------------------------------------------------
def test_log_weighted_prob_matches_loops_with_missing():
    X, _, _ = make_data(n=40, d=5, K=3, missing=0.3)
    params = random_params(3, 5)
    model = BernoulliMixtureModel(3)
    np.testing.assert_allclose(
        model.log_weighted_prob(params, X), ref_log_weighted(X, params.weights, params.probs),
        rtol=1e-12, atol=1e-12,
    )
    # log p(x | k) alone, also for a component of weight 0
    dead = params.replace(weights=np.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(
        model.log_component_prob(dead, X), ref_log_weighted(X, np.ones(3), params.probs),
        rtol=1e-12, atol=1e-12,
    )
    assert np.all(np.isneginf(model.log_weighted_prob(dead, X)[:, 1:]))


def test_missing_entries_are_marginalised_exactly():
    # The likelihood of a row with missing entries equals the sum over every completion.
    X, _, _ = make_data(n=15, d=6, K=3, missing=0.4, seed=3)
    params = random_params(3, 6, seed=4)
    got = BernoulliMixtureModel(3).score_samples(params, X)
    want = [brute_force_row_loglik(x, params.weights, params.probs) for x in X]
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("prior", [(1.0, 1.0, 1.0), (2.0, 2.0, 2.0), (1.5, 3.0, 1.2)])
def test_em_step_matches_naive_reference(prior):
    a, b, g = prior
    X, _, _ = make_data(n=30, d=4, K=3, missing=0.25, seed=5)
    params = random_params(3, 4, seed=6)
    model = BernoulliMixtureModel(3, alpha=a, beta=b, weight_concentration=g)
    stats, ll = model.e_step(params, X)
    new = model.m_step(stats)
    w, p = ref_em_step(X, params.weights, params.probs, a, b, g)
    np.testing.assert_allclose(new.weights, w, rtol=1e-12)
    np.testing.assert_allclose(new.probs, p, rtol=1e-12)
    lw = ref_log_weighted(X, params.weights, params.probs)
    assert ll == pytest.approx(np.logaddexp.reduce(lw, axis=1).sum(), rel=1e-12)


def test_complete_data_mle_with_missing_entries():
    # alpha = beta = weight_concentration = 1 is plain ML: per-component frequencies, and
    # each feature's frequency over the rows where it is observed.
    X, z, _ = make_data(n=120, d=5, K=3, missing=0.3, seed=7)
    model = BernoulliMixtureModel(3, alpha=1.0, beta=1.0, weight_concentration=1.0)
    expected = BernoulliParams(
        weights=np.bincount(z, minlength=3) / len(z),
        probs=np.array([np.nanmean(X[z == k], axis=0) for k in range(3)]),
    )
    check_complete_data_mle(model, model.stats_from_resp, X, z, 3, expected)


def test_complete_data_map_with_priors():
    X, z, _ = make_data(n=120, d=5, K=3, missing=0.3, seed=8)
    a, b, g = 2.5, 1.5, 3.0
    model = BernoulliMixtureModel(3, alpha=a, beta=b, weight_concentration=g)
    ones = np.array([np.nansum(X[z == k], axis=0) for k in range(3)])
    obs = np.array([(~np.isnan(X[z == k])).sum(axis=0) for k in range(3)])
    expected = BernoulliParams(
        weights=(np.bincount(z, minlength=3) + g - 1) / (len(z) + 3 * (g - 1)),
        probs=(ones + a - 1) / (obs + a + b - 2),
    )
    check_complete_data_mle(model, model.stats_from_resp, X, z, 3, expected)


def test_one_component_ml_fit_is_feature_frequency():
    X, _, _ = make_data(n=300, d=7, K=2, missing=0.2, seed=9)
    bm = BernoulliMixture(1, alpha=1, beta=1, weight_concentration=1, tol=0).fit(X)
    np.testing.assert_allclose(bm.probs_[0], np.nanmean(X, axis=0), rtol=1e-12)
    np.testing.assert_allclose(bm.weights_, [1.0])


def test_history_is_penalised_log_likelihood():
    X, _, _ = make_data(seed=10)
    bm = BernoulliMixture(3, alpha=2.0, beta=3.0, weight_concentration=2.0, random_state=0,
                          max_iter=500, tol=1e-8).fit(X)
    model = bm._model
    ll = bm.log_likelihood(X)
    lp = model.log_prior(bm.params_)
    assert lp < 0
    assert bm.loglik_history_[-1] == pytest.approx(ll + lp, rel=1e-12)
    # the closed form of the (unnormalised) log prior
    want = (1.0 * np.log(bm.probs_).sum() + 2.0 * np.log1p(-bm.probs_).sum()
            + 1.0 * np.log(bm.weights_).sum())
    assert lp == pytest.approx(want, rel=1e-12)
    assert np.all(np.diff(bm.loglik_history_) >= -1e-9 * np.abs(bm.loglik_history_[:-1]))
    ml = BernoulliMixture(3, alpha=1, beta=1, weight_concentration=1, random_state=0).fit(X)
    assert ml.loglik_history_[-1] == pytest.approx(ml.log_likelihood(X), rel=1e-12)


def test_recovers_generating_mixture_with_missing_entries():
    rng = np.random.default_rng(11)
    probs = np.array([[0.9, 0.9, 0.1, 0.1, 0.8, 0.2], [0.1, 0.2, 0.9, 0.8, 0.1, 0.9],
                      [0.9, 0.1, 0.9, 0.1, 0.5, 0.5]])
    weights = np.array([0.5, 0.3, 0.2])
    n = 6000
    z = rng.choice(3, n, p=weights)
    X = (rng.random((n, 6)) < probs[z]).astype(float)
    X[rng.random(X.shape) < 0.3] = np.nan
    bm = BernoulliMixture(3, n_init=3, random_state=0, tol=1e-6, max_iter=500).fit(X)
    order = [int(np.argmin(np.abs(bm.probs_ - p).sum(1))) for p in probs]
    assert sorted(order) == [0, 1, 2]
    # 4200 observed values per feature at most; standard errors about 0.01-0.02
    np.testing.assert_allclose(bm.probs_[order], probs, atol=0.06)
    np.testing.assert_allclose(bm.weights_[order], weights, atol=0.04)


# ---------------------------------------------------------------------------
# engine conformance
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("alpha", [1.0, 2.0])
@pytest.mark.parametrize("init", ["random_from_data", "random"])
def test_check_model(alpha, init):
    X, _, _ = make_data(n=80, d=5, missing=0.25)
    data = binary_data(X)

    def factory():
        return BernoulliMixtureModel(3, alpha=alpha, beta=alpha, weight_concentration=alpha,
                                     init_params=init)

    check_model(factory, data)
    check_model(factory, X)  # raw arrays are accepted too


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(3, 40),
    d=st.integers(1, 8),
    K=st.integers(1, 4),
    missing=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
    prior=st.sampled_from([1.0, 1.01, 2.0]),
    split=st.floats(0.05, 0.95),
)
def test_property_monotone_valid_additive_with_random_missing(seed, n, d, K, missing, prior,
                                                             split):
    rng = np.random.default_rng(seed)
    X = (rng.random((n, d)) < rng.random(d)).astype(float)
    X[rng.random((n, d)) < missing] = np.nan
    K = min(K, n)
    data = binary_data(X)
    model = BernoulliMixtureModel(K, alpha=prior, beta=prior, weight_concentration=prior)
    params = model.initialize(data, rng)
    h = check_monotone(model, data, params, n_iter=15)
    assert np.all(np.isfinite(h))
    new = check_valid_params(model, params, data)
    assert np.all((new.probs >= 0) & (new.probs <= 1))
    if prior > 1:
        assert np.all((new.probs > 0) & (new.probs < 1)) and np.all(new.weights > 0)
    cut = min(max(1, int(split * n)), n - 1) if n > 1 else 1
    check_additive(model, params, data, [data[:cut], data[cut:]])
    check_no_mutation(model, params, data)


def test_deterministic_and_chunked_fit_equals_whole():
    X, _, _ = make_data(n=150, missing=0.2, seed=12)
    data = binary_data(X)
    check_deterministic(lambda: BernoulliMixtureModel(3), data)
    model = BernoulliMixtureModel(3)
    p0 = model.initialize(data, np.random.default_rng(0))
    a = fit_em(model, data, init_params=p0, tol=0, max_iter=15, warn_convergence=False)
    b = fit_em(model, data, init_params=p0, tol=0, max_iter=15, chunk_size=37,
               warn_convergence=False)
    assert a.params.allclose(b.params, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.loglik_history, b.loglik_history, rtol=1e-12)


def test_estimator_chunk_size_and_chunk_list_match_whole_fit():
    X, _, _ = make_data(n=120, missing=0.2, seed=13)
    base = BernoulliMixture(3, random_state=0, tol=0, max_iter=10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole = base.fit(X)
        # warm_start makes all three start from the same parameters
        p = whole.params_
        fits = []
        for kwargs in ({}, {"chunk_size": 25}):
            est = BernoulliMixture(3, tol=0, max_iter=10, warm_start=True)
            est.params_ = p
            fits.append(est.fit(X, **kwargs).params_)
        est = BernoulliMixture(3, tol=0, max_iter=10, warm_start=True)
        est.params_ = p
        fits.append(est.fit([X[:50], X[50:]]).params_)
    assert fits[0].allclose(fits[1], rtol=1e-10, atol=1e-12)
    assert fits[0].allclose(fits[2], rtol=1e-10, atol=1e-12)


def test_sample_weight_equals_repeated_rows():
    X, _, _ = make_data(n=30, missing=0.3, seed=14)
    w = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    Xr = np.repeat(X, w.astype(int), axis=0)
    model = BernoulliMixtureModel(3)
    params = random_params(3, X.shape[1])
    s_w, ll_w = model.e_step(params, binary_data(X), sample_weight=w)
    s_r, ll_r = model.e_step(params, binary_data(Xr))
    assert s_w.allclose(s_r, rtol=1e-12, atol=1e-12)
    assert ll_w == pytest.approx(ll_r, rel=1e-12)
    a = fit_em(model, binary_data(X), sample_weight=w, init_params=params, tol=0, max_iter=8,
               warn_convergence=False)
    # only relative weights matter: the fit sees w / c, c the mean positive weight, so the
    # prior's pseudo-counts count c times on the repeated rows
    c = w[w > 0].mean()
    scaled = BernoulliMixtureModel(3, alpha=1 + c, beta=1 + c, weight_concentration=1 + c)
    b = fit_em(scaled, binary_data(Xr), init_params=params, tol=0, max_iter=8,
               warn_convergence=False)
    assert a.params.allclose(b.params, rtol=1e-10)
    np.testing.assert_allclose(a.loglik_history * c, b.loglik_history, rtol=1e-10)
    est = BernoulliMixture(3, random_state=0).fit(X, sample_weight=w)
    assert est.weights_.shape == (3,)


def test_squarem_acceleration_is_monotone_and_reaches_the_same_objective():
    X, _, _ = make_data(n=300, d=8, missing=0.2, seed=15)
    kw = dict(n_components=3, random_state=0, tol=1e-9, max_iter=2000)
    plain = BernoulliMixture(**kw).fit(X)
    fast = BernoulliMixture(**kw).fit(X, accelerate="squarem")
    h = fast.loglik_history_
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[:-1]))
    assert fast.n_iter_ <= plain.n_iter_
    assert fast.loglik_history_[-1] == pytest.approx(plain.loglik_history_[-1], abs=1e-3)


def test_online_partial_fit_runs_on_missing_data():
    X, _, _ = make_data(n=400, missing=0.2, seed=16)
    est = BernoulliMixture(3, random_state=0)
    for start in range(0, 400, 100):
        est.partial_fit(X[start:start + 100])
    assert est.probs_.shape == (3, X.shape[1])
    assert np.all((est.probs_ > 0) & (est.probs_ < 1))
    assert est.weights_.sum() == pytest.approx(1.0)


def test_save_load_round_trip(tmp_path):
    import emframe

    X, _, _ = make_data(seed=17)
    bm = BernoulliMixture(3, random_state=0).fit(X)
    loaded = emframe.load(bm.save(tmp_path / "bm.npz"))
    np.testing.assert_array_equal(loaded.predict_proba(X), bm.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), bm.score_samples(X))


# ---------------------------------------------------------------------------
# missing entries: all-missing rows and columns, degenerate ML
# ---------------------------------------------------------------------------
def test_all_missing_rows_are_allowed_and_contribute_only_through_weights():
    X, _, _ = make_data(n=100, missing=0.1, seed=18)
    X[[3, 50]] = np.nan
    bm = BernoulliMixture(3, random_state=0).fit(X)
    assert np.all(np.isfinite(bm.probs_))
    blank = np.full((2, X.shape[1]), np.nan)
    np.testing.assert_allclose(bm.score_samples(blank), 0.0, atol=1e-12)  # likelihood 1
    np.testing.assert_allclose(bm.predict_proba(blank), [bm.weights_] * 2, rtol=1e-12)
    assert np.all(bm.predict(blank) == np.argmax(bm.weights_))
    # they add responsibility mass (pulling the weights) but no observed mass
    model, p = bm._model, bm.params_
    s, ll = model.e_step(p, binary_data(blank))
    np.testing.assert_allclose(s.nk, 2 * p.weights, rtol=1e-12)
    assert not s.ones.any() and not s.observed.any() and ll == pytest.approx(0.0, abs=1e-12)


def test_only_missing_data_gives_no_nan_in_the_model_and_is_refused_by_the_estimator():
    X = np.full((10, 4), np.nan)
    for kw in ({}, {"alpha": 1, "beta": 1, "weight_concentration": 1}):
        model = BernoulliMixtureModel(2, **kw)
        res = fit_em(model, X, random_state=0)
        assert np.all(np.isfinite(res.params.probs)) and np.all(np.isfinite(res.params.weights))
        assert model.log_likelihood(res.params, X) == pytest.approx(0.0, abs=1e-12)
        with pytest.raises(ValueError, match="no entry of X is observed"):
            BernoulliMixture(2, random_state=0, **kw).fit(X)


def test_never_observed_feature_under_ml_gets_a_finite_probability():
    X, _, _ = make_data(n=60, d=4, missing=0.1, seed=19)
    X[:, 2] = np.nan
    bm = BernoulliMixture(2, alpha=1, beta=1, weight_concentration=1, random_state=0).fit(X)
    np.testing.assert_array_equal(bm.probs_[:, 2], 0.5)  # any value maximises; 0.5 chosen


def test_ml_with_probabilities_exactly_zero_and_one_is_exact():
    # Column 0 is always 1 and column 1 always 0, so ML puts p = 1 and p = 0 there.
    rng = np.random.default_rng(20)
    X = (rng.random((50, 4)) < 0.5).astype(float)
    X[:, 0], X[:, 1] = 1.0, 0.0
    X[rng.random(X.shape) < 0.2] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning, no MonotonicityWarning
        bm = BernoulliMixture(2, alpha=1, beta=1, weight_concentration=1, random_state=0,
                              max_iter=200).fit(X)
    assert np.all(bm.probs_[:, 0] == 1.0) and np.all(bm.probs_[:, 1] == 0.0)
    # a row contradicting those certainties has likelihood exactly 0, with no NaN
    odd = np.array([[0.0, np.nan, 1, 0], [np.nan, 1.0, 0, 0], [1.0, 0.0, np.nan, 1]])
    ref = ref_log_weighted(odd, bm.weights_, bm.probs_)
    got = bm._model.log_weighted_prob(bm.params_, odd)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(ref))
    np.testing.assert_allclose(got[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-12)
    assert np.isneginf(bm.score_samples(odd)[:2]).all() and np.isfinite(bm.score_samples(odd)[2])


def test_default_prior_keeps_probabilities_off_zero_and_one():
    X = np.zeros((40, 3))
    X[:, 1] = 1
    bm = BernoulliMixture(2, random_state=0).fit(X)
    assert np.all((bm.probs_ > 0) & (bm.probs_ < 1))
    assert np.all(np.isfinite(bm.score_samples(1 - X)))


# ---------------------------------------------------------------------------
# estimator surface
# ---------------------------------------------------------------------------
def test_estimator_api_and_shapes():
    X, _, _ = make_data(n=90, d=5, seed=21)
    bm = BernoulliMixture(3, random_state=0)
    labels = bm.fit_predict(X)
    np.testing.assert_array_equal(labels, bm.predict(X))
    assert bm.probs_.shape == (3, 5) and bm.weights_.shape == (3,)
    assert bm.predict_proba(X).shape == (90, 3)
    np.testing.assert_allclose(bm.predict_proba(X).sum(1), 1.0)
    assert bm.score(X) == pytest.approx(bm.score_samples(X).mean(), rel=1e-12)
    assert bm.log_likelihood(X) == pytest.approx(bm.score_samples(X).sum(), rel=1e-12)
    n_par = 3 - 1 + 3 * 5
    assert bm.n_parameters() == n_par
    assert bm.bic(X) == pytest.approx(-2 * bm.log_likelihood(X) + n_par * np.log(90))
    assert bm.aic(X) == pytest.approx(-2 * bm.log_likelihood(X) + 2 * n_par)
    assert isinstance(bm.converged_, bool) and bm.n_iter_ >= 1
    assert len(bm.loglik_history_) == bm.n_iter_ + 1
    assert bm.get_params()["n_components"] == 3
    assert bm.set_params(alpha=3.0) is bm and bm.alpha == 3.0


def test_int_bool_and_float_inputs_agree():
    X, _, _ = make_data(n=60, missing=0.0, seed=22)
    fits = [BernoulliMixture(2, random_state=0).fit(A).params_
            for A in (X, X.astype(int), X.astype(bool), X.tolist())]
    for f in fits[1:]:
        assert f.allclose(fits[0], rtol=0)


def test_sklearn_clone():
    from sklearn.base import clone

    bm = BernoulliMixture(4, alpha=1.5, random_state=2)
    c = clone(bm)
    assert c.get_params() == bm.get_params()


def test_sample():
    bm = BernoulliMixture(2, random_state=0).fit(make_data(n=50, K=2, seed=23)[0])
    Xs, labels = bm.sample(5000, random_state=1)
    assert Xs.shape == (5000, bm.probs_.shape[1]) and set(np.unique(Xs)) <= {0.0, 1.0}
    assert np.all(np.diff(labels) >= 0)
    for k in range(2):
        # binomial standard error <= 0.5 / sqrt(n_k)
        se = 0.5 / np.sqrt((labels == k).sum())
        assert np.all(np.abs(Xs[labels == k].mean(0) - bm.probs_[k]) < 5 * se)


def test_freeze_and_warm_start():
    X, _, _ = make_data(seed=24)
    bm = BernoulliMixture(3, random_state=0, max_iter=3, tol=0, freeze=("weights",))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bm.fit(X)
    np.testing.assert_array_equal(bm.weights_, np.full(3, 1 / 3))
    warm = BernoulliMixture(3, random_state=0, max_iter=500, tol=1e-6).fit(X)
    h_end = warm.loglik_history_[-1]
    warm.set_params(warm_start=True, max_iter=5)
    warm.fit(X)
    assert warm.loglik_history_[0] == pytest.approx(h_end, rel=1e-12)
    with pytest.raises(ValueError, match="features"):
        warm.fit(X[:, :4])


def test_fitting_does_not_modify_inputs():
    X, _, _ = make_data(missing=0.3, seed=25)
    X0 = X.copy()
    w = np.ones(len(X))
    bm = BernoulliMixture(3, random_state=0).fit(X, sample_weight=w)
    for method in (bm.predict, bm.predict_proba, bm.score_samples, bm.score, bm.bic):
        method(X)
    np.testing.assert_array_equal(X, X0)
    assert X.flags.writeable
    np.testing.assert_array_equal(w, 1.0)


def test_binary_data_container():
    X, _, _ = make_data(n=10, missing=0.3, seed=26)
    data = binary_data(X)
    assert isinstance(data, BinaryData) and data.shape == X.shape and len(data) == 10
    np.testing.assert_array_equal(data.to_array(), X)
    np.testing.assert_array_equal(data[2:5].to_array(), X[2:5])
    assert binary_data(data) is data
    with pytest.raises(ValueError, match="read-only"):
        data.ones[0, 0] = 1.0
    full = binary_data(np.ones((3, 2)))
    assert full.observed is None


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_non_binary_value_names_row_and_column(bad):
    X = np.zeros((5, 4))
    X[1, 3] = np.nan
    X[3, 2] = bad
    X[4, 0] = bad  # only the first offender is named
    with pytest.raises(ValueError, match=r"only 0, 1 or NaN.*row 3, column 2"):
        BernoulliMixture(2).fit(X)
    bm = BernoulliMixture(1).fit(np.zeros((5, 4)))
    with pytest.raises(ValueError, match=r"row 3, column 2"):
        bm.predict(X)


@pytest.mark.parametrize(
    "X, err, match",
    [
        (np.array([[0.0, np.inf]]), ValueError, "inf"),
        (np.array([0.0, 1.0]), ValueError, "2-D"),
        (np.zeros((2, 2, 2)), ValueError, "2-D"),
        (np.zeros((0, 3)), ValueError, "at least 1"),
        (np.array([["a", "b"]]), ValueError, "numeric"),
    ],
)
def test_bad_arrays(X, err, match):
    with pytest.raises(err, match=match):
        BernoulliMixture(1).fit(X)


@pytest.mark.parametrize(
    "kwargs, err, match",
    [
        ({"n_components": 0}, ValueError, "n_components"),
        ({"n_components": 2.5}, TypeError, "n_components"),
        ({"alpha": 0.5}, ValueError, "alpha must be a finite number >= 1"),
        ({"beta": "1"}, TypeError, "beta"),
        ({"weight_concentration": np.nan}, ValueError, "weight_concentration"),
        ({"init_params": "kmeans"}, ValueError, "init_params must be one of"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"max_iter": -1}, ValueError, "max_iter"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"freeze": ("means",)}, ValueError, "cannot freeze"),
    ],
)
def test_bad_hyperparameters(kwargs, err, match):
    X, _, _ = make_data(n=20, seed=27)
    with pytest.raises(err, match=match):
        BernoulliMixture(**{"n_components": 2, **kwargs}).fit(X)


def test_more_components_than_samples():
    with pytest.raises(ValueError, match="at least n_components=5 samples"):
        BernoulliMixture(5).fit(np.zeros((3, 2)))
    # random responsibilities need no distinct seed rows
    BernoulliMixture(5, init_params="random", random_state=0).fit(np.zeros((3, 2)))


def test_not_fitted_and_wrong_feature_count():
    X, _, _ = make_data(n=20, seed=28)
    with pytest.raises(NotFittedError):
        BernoulliMixture(2).predict(X)
    bm = BernoulliMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but BernoulliMixture is expecting 6"):
        bm.score_samples(X[:, :3])


def test_check_params_rejects_invalid_parameters():
    model = BernoulliMixtureModel(2, n_features=3)
    good = BernoulliParams(weights=np.array([0.5, 0.5]), probs=np.full((2, 3), 0.5))
    model.check_params(good)
    for bad, match in [
        (good.replace(weights=np.array([0.7, 0.7])), "sum to 1"),
        (good.replace(weights=np.ones(3) / 3), "shape"),
        (good.replace(probs=np.full((2, 3), 1.5)), r"\[0, 1\]"),
        (good.replace(probs=np.full((2, 4), 0.5)), "features"),
        (good.replace(probs=np.full((2, 3), np.nan)), "finite"),
    ]:
        with pytest.raises(ValueError, match=match):
            model.check_params(bad)


def test_sklearn_conventions_on_binary_data(tmp_path):
    # scikit-learn's common checks feed continuous data, which this estimator rightly
    # rejects; the conventions they test are checked here on binary data instead.
    import pickle

    X, _, _ = make_data(n=80, missing=0.2, seed=29)
    bm = BernoulliMixture(3, random_state=0)
    before = bm.get_params()
    bm.fit(X)
    assert bm.get_params() == before  # constructor arguments untouched
    again = BernoulliMixture(3, random_state=0).fit(X).fit(X)
    assert again.params_.allclose(bm.params_, rtol=0)  # fit is idempotent
    restored = pickle.loads(pickle.dumps(bm))
    np.testing.assert_array_equal(restored.score_samples(X), bm.score_samples(X))
    # F-ordered, read-only and memory-mapped inputs give the same answers
    ref = bm.score_samples(X)
    ro = X.copy()
    ro.flags.writeable = False
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", shape=X.shape)
    mm[:] = X
    for A in (np.asfortranarray(X), ro, np.load(tmp_path / "X.npy", mmap_mode="r")):
        np.testing.assert_allclose(bm.score_samples(A), ref, rtol=1e-12)
    # per-sample outputs do not depend on the order or the company of the other samples
    perm = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(bm.score_samples(X[perm]), ref[perm], rtol=1e-12)
    np.testing.assert_allclose(bm.predict_proba(X[:7]), bm.predict_proba(X)[:7], rtol=1e-12)
