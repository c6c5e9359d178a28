"""Multivariate t numerics: densities against scipy, the Gaussian limit, the dof update."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, special
from scipy import stats as sps

from emframe.inference.student_t import (
    DOF_MAX,
    DOF_MIN,
    expected_weights,
    log_gamma_ratio,
    log_minus_digamma,
    t_log_density,
    update_dof,
    weight_gap,
)

LOG_2PI = math.log(2 * math.pi)


def _random_t(d, seed):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d)) + 2 * np.eye(d)
    cov = A @ A.T
    mu = rng.normal(size=d)
    X = mu + rng.normal(size=(40, d)) * 3
    prec = np.linalg.inv(cov)
    xc = X - mu
    maha = np.einsum("ij,jk,ik->i", xc, prec, xc)
    log_det_u = -0.5 * np.linalg.slogdet(cov)[1]
    return X, mu, cov, maha, log_det_u


@pytest.mark.parametrize("d", [1, 2, 5])
@pytest.mark.parametrize("dof", [0.05, 0.7, 3.0, 39.9, 40.1, 300.0])
def test_log_density_equals_scipy(d, dof):
    # (scipy subtracts gammaln values itself, so above a few hundred dof it is scipy that
    # loses digits: 3e-11 at dof = 5e4; the Gaussian-limit test covers large dof)
    X, mu, cov, maha, log_det_u = _random_t(d, seed=d)
    got = t_log_density(maha[:, None], np.array([log_det_u]), np.array([dof]), d)[:, 0]
    want = sps.multivariate_t(loc=mu, shape=cov, df=dof).logpdf(X)
    np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("d", [1, 2, 7])
@pytest.mark.parametrize("dof", [1e6, 1e8, 1e12, 1e150])
def test_gaussian_limit_is_reached_without_cancellation(d, dof):
    # log t - log N = ((m - d)^2 - 2d) / (4 nu) + O(nu^-2): the first-order term is exact
    # to rounding here, which a difference of gammaln values (size nu log nu) cannot be.
    maha = np.array([0.0, 0.3, 1.0, d, 4.0 * d, 50.0])
    log_det_u = 0.37
    got = t_log_density(maha[:, None], np.array([log_det_u]), np.array([dof]), d)[:, 0]
    gauss = log_det_u - 0.5 * d * LOG_2PI - 0.5 * maha
    first_order = ((maha - d) ** 2 - 2 * d) / (4 * dof)
    bound = (1 + maha + d) ** 3 / dof**2 + 1e-14 * (1 + np.abs(gauss))
    assert np.all(np.abs(got - gauss - first_order) <= bound)


def test_naive_gamma_difference_would_fail_the_limit_test():
    # guards the test above: the textbook formula loses the first-order term at nu = 1e12
    d, dof = 2, 1e12
    naive = special.gammaln((dof + d) / 2) - special.gammaln(dof / 2) - 0.5 * d * math.log(dof / 2)
    exact = d * (d - 2) / (4 * dof)  # log_gamma_ratio's limit, here 0 to first order
    assert abs(naive - exact) > 1e-8
    assert abs(log_gamma_ratio(np.array([dof / 2]), d / 2)[0] - exact) < 1e-15


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(1e-3, 1e15),
    a=st.sampled_from([0.5, 1.0, 1.5, 3.0, 25.0]),
)
def test_log_gamma_ratio_is_continuous_and_matches_gammaln(x, a):
    got = log_gamma_ratio(np.array([x]), a)[0]
    if x < 1e6:  # where the direct formula still has enough digits
        direct = special.gammaln(x + a) - special.gammaln(x) - a * math.log(x)
        tol = 1e-14 * (abs(special.gammaln(x + a)) + abs(a * math.log(x)) + 1)
        assert abs(got - direct) <= tol
    # the asymptotic value a (a - 1) / (2x) is approached from both sides at rate 1/x^2
    assert abs(got - a * (a - 1) / (2 * x)) <= (a + 1) ** 3 / x**2 + 1e-15 * (1 + a)


@pytest.mark.parametrize("x", [1e-3, 0.5, 3.0, 99.99, 100.0, 1e4, 1e9])
def test_log_minus_digamma(x):
    got = log_minus_digamma(np.array([x]))[0]
    if x < 1e4:
        assert got == pytest.approx(math.log(x) - special.digamma(x), rel=1e-12)
    assert 1 / (2 * x) < got < 1 / x


def test_expected_weight_and_gap_match_their_definitions():
    rng = np.random.default_rng(0)
    d = 3
    maha = rng.exponential(5.0, size=(30, 2))
    dof = np.array([2.5, 40.0])
    a = (dof + d) / 2
    b = (dof + maha) / 2
    eu = expected_weights(maha, dof, d)
    np.testing.assert_allclose(eu, a / b, rtol=1e-15)
    e_log_u = special.digamma(a) - np.log(b)
    np.testing.assert_allclose(weight_gap(maha, dof, d), e_log_u - eu + 1, rtol=1e-11,
                               atol=1e-14)
    assert np.all(weight_gap(maha, dof, d) <= 0)


def _q(nu, gap, n):
    # expected complete-data log-likelihood in nu, up to terms free of nu
    return n * (nu / 2 * math.log(nu / 2) - special.gammaln(nu / 2)) + nu / 2 * (gap - n)


@settings(max_examples=60, deadline=None)
@given(n=st.floats(0.5, 1e4), t=st.floats(1e-8, 50.0))
def test_dof_update_maximises_the_expected_log_likelihood(n, t):
    gap = -t * n
    nu = update_dof(np.array([gap]), np.array([n]))[0]
    assert DOF_MIN <= nu <= DOF_MAX
    if DOF_MIN < nu < DOF_MAX:
        # the stationarity condition log x - digamma(x) = t, at x = nu / 2
        assert log_minus_digamma(np.array([nu / 2]))[0] == pytest.approx(t, rel=1e-12)
    # no better value nearby or anywhere on a grid
    best = _q(nu, gap, n)
    for other in [nu * (1 - 1e-6), nu * (1 + 1e-6), *np.geomspace(DOF_MIN, DOF_MAX, 50)]:
        other = float(np.clip(other, DOF_MIN, DOF_MAX))
        assert _q(other, gap, n) <= best + 1e-9 * abs(best) + 1e-12


def test_dof_update_against_scalar_optimiser():
    gap, n = np.array([-3.0, -40.0, -0.002]), np.array([10.0, 100.0, 50.0])
    got = update_dof(gap, n)
    for k in range(3):
        res = optimize.minimize_scalar(lambda s, k=k: -_q(math.exp(s), gap[k], n[k]),
                                       bounds=(math.log(DOF_MIN), math.log(DOF_MAX)),
                                       method="bounded", options={"xatol": 1e-10})
        assert got[k] == pytest.approx(math.exp(res.x), rel=1e-6)


def test_dof_update_clips_to_its_bounds():
    # gap 0 (every E[u] = 1): the likelihood grows without bound in nu -> the cap;
    # an empty component (n = 0) also gets the cap; a huge gap -> the floor
    got = update_dof(np.array([0.0, 0.0, -1e9]), np.array([10.0, 0.0, 1.0]))
    np.testing.assert_array_equal(got, [DOF_MAX, DOF_MAX, DOF_MIN])


def test_weight_gap_is_finite_for_far_outliers():
    # a point 1e10+ scale lengths away from a component: E[u] underflows towards 0 but
    # E[log u] - E[u] + 1 stays finite (a responsibility of 0 times it must not be NaN)
    d = 1
    dof = np.array([0.5, 3.0])
    maha = np.array([[1e17, 1e300], [np.inf, 1e40]])
    gap = weight_gap(maha, dof, d)
    assert np.all(np.isfinite(gap)) and np.all(gap <= 0)
    a = 0.5 * (dof + d)
    direct = special.digamma(a) - np.log(0.5 * (dof + np.minimum(maha, 1e300))) - (dof + d) / (
        dof + np.minimum(maha, 1e300)) + 1
    np.testing.assert_allclose(gap[0], direct[0], rtol=1e-12)
