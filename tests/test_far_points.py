"""Posteriors of Gaussian mixtures far from the data: defined, never NaN, no warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.core.numerics import log_normalize
from emframe.inference.gaussian import GaussianKernel, get_covariance_strategy
from emframe.inference.gaussian.far import far_posteriors

TYPES = ["full", "tied", "diag", "spherical"]


def random_params(rng, covariance_type, K, d):
    strategy = get_covariance_strategy(covariance_type)
    means = rng.normal(size=(K, d)) * 3.0
    A = rng.normal(size=(K, d, d))
    full = np.einsum("kij,klj->kil", A, A) + 0.3 * np.eye(d)
    covs = {"full": full, "tied": full[0], "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
            "spherical": np.trace(full, axis1=1, axis2=2) / d}[covariance_type]
    return strategy, means, strategy.precisions_cholesky(covs), rng.dirichlet(np.ones(K))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), covariance_type=st.sampled_from(TYPES),
       K=st.integers(1, 5), d=st.integers(1, 4), scale=st.sampled_from([0.3, 3.0, 30.0]))
def test_far_formula_equals_the_direct_posteriors_where_both_are_accurate(
        seed, covariance_type, K, d, scale):
    rng = np.random.default_rng(seed)
    strategy, means, pc, w = random_params(rng, covariance_type, K, d)
    X = rng.normal(size=(50, d)) * scale
    kern = GaussianKernel(strategy, means, pc, weights=w)
    lp = kern.log_prob(X)
    direct = np.exp(lp - lp.max(axis=1, keepdims=True))
    direct /= direct.sum(axis=1, keepdims=True)
    got = far_posteriors(strategy, means, pc, np.log(w), X)
    np.testing.assert_allclose(got, direct, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("far", [1e10, 1e160, 1e300, np.finfo(float).max])
def test_far_points_have_defined_posteriors_without_warnings(covariance_type, far):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(size=(150, 2)), rng.normal(size=(150, 2)) * 2 + [6, 1]])
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(X)
    pts = np.array([[far, 0.0], [-far, 0.0], [0.0, far], [far, -far / 3], [far, far]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        post = gm.predict_proba(pts)
        labels = gm.predict(pts)
        scores = gm.score_samples(pts)
    assert np.all(np.isfinite(post))
    np.testing.assert_allclose(post.sum(axis=1), 1.0)
    np.testing.assert_array_equal(labels, post.argmax(axis=1))
    assert not np.any(np.isnan(scores))


@pytest.mark.parametrize("far", [1e12, 1e100, 1e200, 1e307])
def test_far_limits_follow_the_leading_terms(far):
    # One dimension, N(0, 1) and N(0, 4): the wider component takes every far point.
    strategy = get_covariance_strategy("spherical")
    pc = np.array([1.0, 0.5])
    for x in (far, -far):
        post = far_posteriors(strategy, np.zeros((2, 1)), pc, np.log([0.9, 0.1]),
                              np.array([[x]]))
        np.testing.assert_array_equal(post, [[0.0, 1.0]])
    # Tied: N(0, 1) and N(1, 1) differ by the linear term only; the nearer mean wins.
    tied = get_covariance_strategy("tied")
    means = np.array([[0.0], [1.0]])
    kern = GaussianKernel(tied, means, np.array([[1.0]]), weights=np.array([0.99, 0.01]))
    np.testing.assert_array_equal(kern.posteriors(np.array([[far], [-far]])),
                                  [[0.0, 1.0], [1.0, 0.0]])
    # Identical components: the posteriors are the weights at any distance.
    same = GaussianKernel(tied, np.zeros((2, 1)), np.array([[1.0]]), weights=np.array([0.3, 0.7]))
    np.testing.assert_allclose(same.posteriors(np.array([[far], [-far]])), [[0.3, 0.7]] * 2)


def test_log_normalize_sums_to_one_when_the_maximum_is_huge():
    log_p, log_norm = log_normalize(np.array([[-1e200, -1e200], [0.0, -np.inf]]), axis=1)
    np.testing.assert_allclose(np.exp(log_p), [[0.5, 0.5], [1.0, 0.0]])
    np.testing.assert_allclose(log_norm, [-1e200, 0.0])
    _, log_norm = log_normalize(np.array([[-np.inf, -np.inf]]), axis=1)
    assert log_norm[0] == -np.inf
