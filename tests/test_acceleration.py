"""SQUAREM acceleration in the engine, on a custom model that only declares its constraints."""

import numpy as np
import pytest
from custom_models import PoissonMixture, PoissonParams, poisson_data
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe import fit_em
from emframe.core.reparam import back, forward

SLOW = poisson_data(600, 400, seed=1)  # rates 2 and 10: fine
# strongly overlapping components converge slowly under plain EM
rng = np.random.default_rng(5)
OVERLAP = np.concatenate([rng.poisson(4.0, 1500), rng.poisson(5.5, 1500)])[:, None].astype(float)
START = PoissonParams(np.array([0.3, 0.7]), np.array([2.0, 8.0]))


def test_squarem_reaches_the_same_optimum_with_fewer_e_steps():
    plain = fit_em(PoissonMixture(2), OVERLAP, init_params=START, tol=1e-10, max_iter=100000)
    fast = fit_em(PoissonMixture(2), OVERLAP, init_params=START, tol=1e-10, max_iter=100000,
                  accelerate="squarem")
    assert plain.converged and fast.converged
    # plain EM crawls, so at the same tolerance it stops a little short of the optimum
    assert fast.log_likelihood >= plain.log_likelihood - 1e-8
    assert fast.log_likelihood == pytest.approx(plain.log_likelihood, abs=1e-3)
    np.testing.assert_allclose(np.sort(fast.params.rates), np.sort(plain.params.rates), rtol=1e-3)
    assert fast.n_e_steps * 2 <= plain.n_e_steps, (fast.n_e_steps, plain.n_e_steps)
    assert np.all(np.diff(fast.loglik_history) >= -1e-9 * abs(fast.log_likelihood))


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 3), n=st.integers(10, 200))
def test_squarem_never_lowers_the_likelihood(seed, k, n):
    r = np.random.default_rng(seed)
    X = r.poisson(r.uniform(0.5, 15), size=(n, 1)).astype(float)
    start = PoissonParams(r.dirichlet(np.ones(k)), r.uniform(0.2, 20, k))
    res = fit_em(PoissonMixture(k), X, init_params=start, tol=0, max_iter=30,
                 accelerate="squarem", strict=True)
    h = res.loglik_history
    assert np.all(h[1:] - h[:-1] >= -1e-9 * np.maximum(1, np.abs(h[:-1])))
    assert np.all(np.isfinite(res.params.rates)) and res.params.weights.sum() == pytest.approx(1)


def test_squarem_respects_freezing():
    res = fit_em(PoissonMixture(2), OVERLAP, init_params=START, tol=1e-8, max_iter=500,
                 accelerate="squarem", freeze=["weights"])
    np.testing.assert_array_equal(res.params.weights, START.weights)


def test_unknown_accelerate_and_unsupported_model():
    with pytest.raises(ValueError, match="unknown accelerate='fast'"):
        fit_em(PoissonMixture(2), SLOW, init_params=START, accelerate="fast")

    class NoConstraints(PoissonMixture):
        param_constraints = None

    with pytest.raises(NotImplementedError, match="does not declare param_constraints"):
        fit_em(NoConstraints(2), SLOW, init_params=START, accelerate="squarem", max_iter=5)


@pytest.mark.parametrize(
    "value, constraint",
    [
        (np.array([0.2, 0.0, 0.8]), "simplex"),
        (np.array([[0.5, 0.5, 0.0], [0.0, 0.1, 0.9]]), "simplex"),
        (np.array([0.1, 3.0]), "positive"),
        (np.array([0.01, 0.99]), "unit"),
        (np.array([[[2.0, 0.3], [0.3, 1.0]], [[1.0, -0.5], [-0.5, 4.0]]]), "spd"),
        (np.array([-1.0, 2.0]), "real"),
    ],
)
def test_reparametrisation_round_trips_and_keeps_zeros(value, constraint):
    np.testing.assert_allclose(back(forward(value, constraint), value, constraint), value,
                               atol=1e-12)
    # any vector maps back to a valid value
    u = forward(value, constraint)
    v = u + np.random.default_rng(0).normal(0, 3, u.shape)
    out = back(v, value, constraint)
    if constraint == "simplex":
        np.testing.assert_allclose(out.sum(axis=-1), 1.0)
        assert np.all(out[value == 0] == 0)
    if constraint == "spd":
        assert np.all(np.linalg.eigvalsh(out) > 0)
    if constraint in ("positive", "unit"):
        assert np.all(out > 0)


@settings(max_examples=15)
@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 3),
       cov=st.sampled_from(["full", "tied", "diag", "spherical"]))
def test_squarem_never_lowers_the_likelihood_of_a_gaussian_mixture(seed, k, cov):
    from emframe.models import GaussianMixture

    r = np.random.default_rng(seed)
    X = r.normal(size=(120, 2)) + r.integers(0, 3, 120)[:, None] * r.uniform(0.5, 2.0)
    est = GaussianMixture(k, covariance_type=cov, tol=0, max_iter=25, random_state=seed % 1000,
                          strict=True).fit(X, accelerate="squarem")
    h = est.loglik_history_
    assert np.all(h[1:] - h[:-1] >= -1e-9 * np.maximum(1, np.abs(h[:-1])))
    assert np.all(np.isfinite(est.means_)) and est.weights_.sum() == pytest.approx(1.0)
