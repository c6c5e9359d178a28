"""Online (stepwise) EM in the engine and partial_fit on estimators."""

import numpy as np
import pytest
from custom_models import PoissonMixture, PoissonMixtureEstimator, PoissonParams, poisson_data

from emframe import fit_em
from emframe.core.online import OnlineState, online_update, step_size

X = poisson_data(6000, 4000, seed=2)
START = PoissonParams(np.array([0.5, 0.5]), np.array([1.0, 5.0]))


def test_step_size_schedule():
    assert step_size(0, 1.0) == pytest.approx(0.5)
    assert step_size(2, 0.6) == pytest.approx(4 ** -0.6)


def test_online_converges_to_batch_em():
    batch = fit_em(PoissonMixture(2), X, init_params=START, tol=1e-10, max_iter=1000)
    online = fit_em(PoissonMixture(2), X, init_params=START, method="online", batch_size=200,
                    max_iter=3, kappa=0.6, random_state=0)
    per_sample = online.log_likelihood / len(X), batch.log_likelihood / len(X)
    assert abs(per_sample[0] - per_sample[1]) <= 1e-3 * abs(per_sample[1])
    np.testing.assert_allclose(np.sort(online.params.rates), np.sort(batch.params.rates),
                               rtol=0.02)
    assert online.n_iter == 3 * len(X) // 200 and len(online.loglik_history) == online.n_iter


def test_first_batch_sets_statistics_then_blends():
    model = PoissonMixture(2)
    s0 = OnlineState(START)
    a, _ = online_update(model, s0, X[:100], kappa=0.8)
    stats_a, _ = model.e_step(START, X[:100])
    assert a.stats.allclose(stats_a.scale(1 / 100)) and a.t == 0 and a.n_seen == 100
    b, _ = online_update(model, a, X[100:300], kappa=0.8)
    stats_b, _ = model.e_step(a.params, X[100:300])
    rho = 2 ** -0.8
    assert b.stats.allclose(a.stats.scale(1 - rho) + stats_b.scale(rho / 200)) and b.t == 1
    assert b.params.allclose(model.m_step(b.stats.scale(300)))


def test_online_on_a_stream_of_chunks():
    def stream():
        r = np.random.default_rng(7)
        for _ in range(40):
            lab = r.random(250) < 0.4
            yield np.where(lab, r.poisson(10.0, 250), r.poisson(2.0, 250))[:, None].astype(float)

    res = fit_em(PoissonMixture(2), stream, init_params=START, method="online", max_iter=1)
    np.testing.assert_allclose(np.sort(res.params.rates), [2.0, 10.0], rtol=0.05)
    assert res.n_samples == 40 * 250


@pytest.mark.parametrize("kappa", [0.5, 0.3, 1.5])
def test_kappa_outside_range(kappa):
    with pytest.raises(ValueError, match=r"kappa must be in \(0.5, 1\]"):
        fit_em(PoissonMixture(2), X, init_params=START, method="online", kappa=kappa)
    with pytest.raises(ValueError, match=r"kappa must be in \(0.5, 1\]"):
        PoissonMixtureEstimator(2).partial_fit(X[:100], kappa=kappa)


@pytest.mark.parametrize("batch_size, exc", [(0, ValueError), (-5, ValueError), (1.5, TypeError)])
def test_bad_batch_size(batch_size, exc):
    with pytest.raises(exc, match="batch_size must be a positive int"):
        fit_em(PoissonMixture(2), X, init_params=START, method="online", batch_size=batch_size)


def test_bad_method_options():
    with pytest.raises(ValueError, match="unknown method='stream'"):
        fit_em(PoissonMixture(2), X, method="stream")
    with pytest.raises(ValueError, match="batch_size applies to method='online'"):
        fit_em(PoissonMixture(2), X, batch_size=10)
    with pytest.raises(ValueError, match="accelerate applies to batch EM"):
        fit_em(PoissonMixture(2), X, method="online", accelerate="squarem")
    with pytest.raises(TypeError, match="unexpected keyword argument"):
        PoissonMixtureEstimator(2).fit(X, acclerate="squarem")


def test_partial_fit_matches_online_updates():
    est = PoissonMixtureEstimator(2, random_state=0)
    batches = np.array_split(X, 20)
    for b in batches:
        est.partial_fit(b, kappa=0.7)
    model = PoissonMixture(2)
    state = OnlineState(model.initialize(batches[0], np.random.default_rng(0)))
    for b in batches:
        state, _ = online_update(model, state, b, kappa=0.7)
    assert est.params_.allclose(state.params, rtol=1e-12)
    assert est.n_iter_ == 20 and est.loglik_history_.shape == (20,)
    for _ in range(4):  # more passes: the stochastic approximation settles near batch EM
        for b in batches:
            est.partial_fit(b, kappa=0.7)
    batch = fit_em(PoissonMixture(2), X, init_params=START, tol=1e-10, max_iter=1000)
    np.testing.assert_allclose(np.sort(est.rates_), np.sort(batch.params.rates), rtol=0.02)


def test_estimator_fit_online_and_squarem():
    est = PoissonMixtureEstimator(2, random_state=0, max_iter=2)
    est.fit(X, method="online", batch_size=500)
    assert est.n_iter_ == 2 * 20
    est2 = PoissonMixtureEstimator(2, random_state=0, tol=1e-8, max_iter=1000)
    est2.fit(X, accelerate="squarem")
    assert est2.converged_
    np.testing.assert_allclose(np.sort(est2.rates_), np.sort(est.rates_), rtol=0.05)
