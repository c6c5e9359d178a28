"""Tests of the engine's fit loop, data sources and parameter/statistic values."""

import dataclasses
import warnings

import numpy as np
import pytest
from custom_models import (
    PoissonMixture,
    PoissonMixtureEstimator,
    PoissonParams,
    PoissonStats,
    poisson_data,
)

from emframe import (
    ConvergenceWarning,
    DataSource,
    MonotonicityError,
    MonotonicityWarning,
    NotFittedError,
    fit_em,
)

X = poisson_data()
START = PoissonParams(np.array([0.5, 0.5]), np.array([1.0, 5.0]))


def manual_em(params, X, n_iter):
    """Textbook EM for a Poisson mixture, written out longhand as an oracle."""
    from scipy.stats import poisson

    w, lam = params.weights.copy(), params.rates.copy()
    for _ in range(n_iter):
        joint = w * poisson.pmf(X[:, :1], lam)
        r = joint / joint.sum(axis=1, keepdims=True)
        w = r.mean(axis=0)
        lam = (r * X[:, :1]).sum(axis=0) / r.sum(axis=0)
    return w, lam


# -- Params and Stats ------------------------------------------------------------


def test_params_are_read_only_copies():
    rates = np.array([1.0, 2.0])
    p = PoissonParams(np.array([0.5, 0.5]), rates)
    rates[0] = 99.0
    assert p.rates[0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        p.rates[0] = 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.rates = rates
    q = p.replace(rates=np.array([3.0, 4.0]))
    assert p.rates[0] == 1.0 and q.rates[0] == 3.0
    assert p.allclose(PoissonParams(np.array([0.5, 0.5]), np.array([1.0, 2.0])))
    assert not p.allclose(q)


def test_stats_add_and_scale_without_mutation():
    a = PoissonStats(np.array([1.0, 2.0]), np.array([3.0, 4.0]))
    b = PoissonStats(np.array([10.0, 20.0]), np.array([30.0, 40.0]))
    c = a + b
    np.testing.assert_array_equal(c.resp_sum, [11.0, 22.0])
    np.testing.assert_array_equal(a.resp_sum, [1.0, 2.0])
    np.testing.assert_array_equal(a.scale(0.5).x_sum, [1.5, 2.0])
    assert sum([a, b]).allclose(c)


def test_stats_of_different_models_do_not_add():
    @dataclasses.dataclass(frozen=True)
    class Other(PoissonStats.__mro__[1]):
        resp_sum: np.ndarray

    with pytest.raises(TypeError, match="same model"):
        PoissonStats(np.ones(2), np.ones(2)) + Other(np.ones(2))


# -- the fit loop ------------------------------------------------------------------


def test_iterates_equal_textbook_em():
    res = fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=7)
    w, lam = manual_em(START, X, 7)
    np.testing.assert_allclose(res.params.weights, w, rtol=1e-12)
    np.testing.assert_allclose(res.params.rates, lam, rtol=1e-12)
    assert res.n_iter == 7 and not res.converged


def test_history_semantics():
    model = PoissonMixture(2)
    res = fit_em(model, X, init_params=START, tol=0, max_iter=5)
    assert res.loglik_history.shape == (6,)
    assert res.loglik_history[0] == pytest.approx(model.log_likelihood(START, X), rel=1e-12)
    assert res.loglik_history[-1] == pytest.approx(model.log_likelihood(res.params, X), rel=1e-12)
    assert res.log_likelihood == res.loglik_history[-1]
    assert np.all(np.diff(res.loglik_history) >= 0)


def test_tolerance_is_per_sample():
    small = fit_em(PoissonMixture(2), X, init_params=START, tol=1e-4, max_iter=500)
    big = fit_em(PoissonMixture(2), np.tile(X, (50, 1)), init_params=START, tol=1e-4, max_iter=500)
    assert small.converged and big.converged
    assert small.n_iter == big.n_iter
    np.testing.assert_allclose(big.loglik_history, 50 * small.loglik_history, rtol=1e-10)


def test_restarts_keep_the_best_and_are_deterministic():
    a = fit_em(PoissonMixture(3), X, n_init=5, random_state=3, tol=1e-4, max_iter=2000)
    b = fit_em(PoissonMixture(3), X, n_init=5, random_state=3, tol=1e-4, max_iter=2000)
    assert a.params.allclose(b.params, rtol=0)
    assert len(a.init_log_likelihoods) == 5
    assert a.log_likelihood == max(a.init_log_likelihoods)
    assert a.init_log_likelihoods[a.best_init] == a.log_likelihood
    g = fit_em(PoissonMixture(3), X, n_init=5, random_state=np.random.default_rng(3), tol=1e-4,
               max_iter=2000)
    assert g.params.allclose(a.params, rtol=0)


def test_convergence_warning():
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        fit_em(PoissonMixture(2), X, init_params=START, tol=1e-12, max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=2)


class BrokenMStep(PoissonMixture):
    """Halves the rates after the first step: the likelihood drops, as from a buggy M-step."""

    calls = 0

    def m_step(self, stats):
        params = super().m_step(stats)
        type(self).calls += 1
        return params.replace(rates=params.rates * 0.5) if type(self).calls == 3 else params


def test_monotonicity_guard_warns_and_strict_raises():
    BrokenMStep.calls = 0
    with pytest.warns(MonotonicityWarning, match="decreased by .* at iteration 3"):
        fit_em(BrokenMStep(2), X, init_params=START, tol=0, max_iter=6)
    BrokenMStep.calls = 0
    with pytest.raises(MonotonicityError, match="iteration 3"):
        fit_em(BrokenMStep(2), X, init_params=START, tol=0, max_iter=6, strict=True)


def test_callbacks_see_every_iteration_and_can_stop():
    seen = []
    fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=4, callbacks=[seen.append])
    assert [i.iteration for i in seen] == [1, 2, 3, 4]
    assert np.isnan(seen[0].change) and seen[1].change > 0
    res = fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=50,
                 callbacks=[lambda info: info.iteration >= 3])
    assert res.n_iter == 3


def test_verbose_prints_progress_to_stderr(capsys):
    fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=3, verbose=1)
    err = capsys.readouterr().err
    assert err.count("iter") == 3 and "loglik" in err and "change/sample" in err and "time" in err


def test_chunked_fit_equals_in_memory(tmp_path):
    whole = fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=10)
    chunks = fit_em(PoissonMixture(2), [X[:123], X[123:400], X[400:]], init_params=START, tol=0,
                    max_iter=10)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=float, shape=X.shape)
    mm[:] = X
    mm.flush()
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    sliced = fit_em(PoissonMixture(2), mm, chunk_size=64, init_params=START, tol=0, max_iter=10)
    for res in (chunks, sliced):
        assert res.params.allclose(whole.params, rtol=1e-12)
        np.testing.assert_allclose(res.loglik_history, whole.loglik_history, rtol=1e-12)


def test_chunk_sizes_seen_by_the_model():
    sizes = []

    class Spy(PoissonMixture):
        def e_step(self, params, X, sample_weight=None):
            sizes.append(len(X))
            return super().e_step(params, X, sample_weight)

    fit_em(Spy(2), X, chunk_size=200, init_params=START, tol=0, max_iter=1)
    assert sizes == [200, 200, 100]


def test_callable_chunk_source_and_one_shot_iterator():
    res = fit_em(PoissonMixture(2), lambda: iter([X[:250], X[250:]]), init_params=START, tol=0,
                 max_iter=3)
    ref = fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=3)
    assert res.params.allclose(ref.params, rtol=1e-12)
    with pytest.raises(TypeError, match="one-shot iterator"):
        fit_em(PoissonMixture(2), iter([X]), init_params=START)


@pytest.mark.parametrize("chunk_size, exc", [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_chunk_size(chunk_size, exc):
    with pytest.raises(exc, match="chunk_size must be a positive int"):
        fit_em(PoissonMixture(2), X, chunk_size=chunk_size, init_params=START)


def test_sample_weight_equals_repeated_rows():
    w = np.random.default_rng(0).integers(0, 4, size=len(X))
    weighted = fit_em(PoissonMixture(2), X, sample_weight=w.astype(float), init_params=START,
                      tol=0, max_iter=8)
    repeated = fit_em(PoissonMixture(2), np.repeat(X, w, axis=0), init_params=START, tol=0,
                      max_iter=8)
    assert weighted.params.allclose(repeated.params, rtol=1e-10)
    # the fit sees the weights relative to their mean over the positive ones
    scale = w[w > 0].mean()
    assert weighted.weight_scale == pytest.approx(scale, rel=1e-15)
    np.testing.assert_allclose(weighted.loglik_history * scale, repeated.loglik_history,
                               rtol=1e-10)
    assert weighted.n_samples == pytest.approx(np.count_nonzero(w), rel=1e-14)


def test_freezing_holds_parameters_fixed():
    res = fit_em(PoissonMixture(2), X, init_params=START, freeze=["weights"], tol=0, max_iter=10)
    np.testing.assert_array_equal(res.params.weights, START.weights)
    assert not np.allclose(res.params.rates, START.rates)
    assert np.all(np.diff(res.loglik_history) >= -1e-9)
    with pytest.raises(ValueError, match=r"cannot freeze \['means'\].*weights.*rates"):
        fit_em(PoissonMixture(2), X, init_params=START, freeze=["means"])


def test_log_prior_enters_the_history():
    class WithPrior(PoissonMixture):
        def log_prior(self, params):
            return -float(np.sum(params.rates))

    plain = fit_em(PoissonMixture(2), X, init_params=START, tol=0, max_iter=3)
    prior = fit_em(WithPrior(2), X, init_params=START, tol=0, max_iter=3)
    assert prior.loglik_history[0] == pytest.approx(plain.loglik_history[0] - 6.0)


@pytest.mark.filterwarnings("ignore:.*encountered in:RuntimeWarning")
def test_zero_probability_data_is_a_clear_error():
    bad = START.replace(rates=np.array([0.0, 0.0]))
    with pytest.raises(ValueError, match=r"log-likelihood is (-inf|nan) at iteration 0"):
        fit_em(PoissonMixture(2), X, init_params=bad, tol=0, max_iter=3)


def test_bad_loop_options():
    with pytest.raises(ValueError, match="n_init must be >= 1"):
        fit_em(PoissonMixture(2), X, n_init=0)
    with pytest.raises(ValueError, match="tol must be >= 0"):
        fit_em(PoissonMixture(2), X, tol=-1.0)
    with pytest.raises(TypeError, match="max_iter must be int"):
        fit_em(PoissonMixture(2), X, max_iter=2.5)
    with pytest.raises(TypeError, match="random_state must be"):
        fit_em(PoissonMixture(2), X, random_state="seed")


def test_data_source_first_and_empty():
    src = DataSource([X[:10], X[10:]])
    assert src.first().shape == (10, 1) and src.is_chunked
    assert not DataSource(X).is_chunked
    with pytest.raises(ValueError, match="empty"):
        DataSource([]).first()


# -- the estimator base --------------------------------------------------------------


def test_estimator_conventions():
    est = PoissonMixtureEstimator(3, tol=1e-6)
    assert est.get_params()["n_components"] == 3
    assert est.set_params(n_components=2) is est and est.n_components == 2
    assert repr(est) == "PoissonMixtureEstimator(tol=1e-06)"
    with pytest.raises(ValueError, match="Invalid parameter 'bogus'"):
        est.set_params(bogus=1)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        est.predict(X)
    assert est.fit(X) is est
    assert est.weights_.shape == (2,) and est.n_features_in_ == 1
    assert est.score(X) == pytest.approx(est.log_likelihood(X) / len(X))
    assert est.bic(X) == pytest.approx(-2 * est.log_likelihood(X) + 3 * np.log(len(X)))
    assert est.aic(X) == pytest.approx(-2 * est.log_likelihood(X) + 6)
    np.testing.assert_array_equal(est.fit_predict(X), est.predict(X))
    with pytest.raises(ValueError, match="X has 2 features, but PoissonMixtureEstimator is "
                                         "expecting 1 features"):
        est.predict(np.ones((3, 2)))


def test_not_fitted_error_is_sklearns_when_sklearn_is_loaded():
    from sklearn.exceptions import NotFittedError as SkNotFitted

    with pytest.raises(SkNotFitted):
        PoissonMixtureEstimator(2).predict(X)
    with pytest.raises(NotFittedError):
        PoissonMixtureEstimator(2).score(X)


def test_sklearn_clone():
    from sklearn.base import clone

    est = PoissonMixtureEstimator(3, random_state=0).fit(X)
    c = clone(est)
    assert c.get_params() == est.get_params() and not hasattr(c, "params_")


def test_warm_start_continues_from_fitted_parameters():
    est = PoissonMixtureEstimator(2, tol=0, max_iter=3, random_state=0, warm_start=True).fit(X)
    first = est.params_
    est.fit(X)
    ref = fit_em(PoissonMixture(2), X, init_params=first, tol=0, max_iter=3)
    assert est.params_.allclose(ref.params, rtol=1e-12)


def test_estimator_chunks_and_memmap_equal_in_memory():
    a = PoissonMixtureEstimator(2, random_state=0, tol=0, max_iter=5, warm_start=True)
    b = PoissonMixtureEstimator(2, random_state=0, tol=0, max_iter=5, warm_start=True)
    a.params_ = b.params_ = START
    a.fit(X)
    b.fit(X, chunk_size=77)
    assert a.params_.allclose(b.params_, rtol=1e-12)
    with pytest.raises(ValueError, match="contains NaN"):
        b.fit(np.vstack([X, [[np.nan]]]), chunk_size=77)


def test_sample_draws_from_fitted_components():
    est = PoissonMixtureEstimator(2, random_state=0).fit(X)
    Xs, labels = est.sample(2000, random_state=1)
    assert Xs.shape == (2000, 1) and np.all(np.diff(labels) >= 0)
    for k in range(2):
        assert Xs[labels == k].mean() == pytest.approx(est.rates_[k], rel=0.1)


def test_estimator_does_not_modify_input():
    Xc = X.copy()
    PoissonMixtureEstimator(2, random_state=0).fit(Xc)
    np.testing.assert_array_equal(Xc, X)


@pytest.mark.parametrize(
    "bad, exc, match",
    [
        (np.array([1.0, 2.0, 3.0]), ValueError, "Expected a 2-D array"),
        (np.array([[1.0], [np.inf]]), ValueError, r"contains NaN or inf \(first at row 1"),
        (np.array([[1.0], [np.nan]]), ValueError, "contains NaN or inf"),
        (np.empty((0, 1)), ValueError, "0 sample"),
        (np.array([["a"], ["b"]]), ValueError, "must be numeric"),
        (np.array([[1 + 2j]]), ValueError, "Complex data not supported"),
    ],
)
def test_bad_input(bad, exc, match):
    with pytest.raises(exc, match=match):
        PoissonMixtureEstimator(2).fit(bad)


@pytest.mark.parametrize(
    "w, match",
    [(np.ones(3), r"shape \(500,\)"), (-np.ones(500), "non-negative"), (np.zeros(500), "zero")],
)
def test_bad_sample_weight(w, match):
    with pytest.raises(ValueError, match=match):
        PoissonMixtureEstimator(2).fit(X, sample_weight=w)
