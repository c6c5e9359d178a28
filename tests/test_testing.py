"""emframe.testing must pass a correct model and fail each kind of broken one."""

import numpy as np
import pytest
from custom_models import PoissonMixture, PoissonParams, PoissonStats, poisson_data
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.testing import (
    check_additive,
    check_complete_data_mle,
    check_deterministic,
    check_model,
    check_monotone,
    check_no_mutation,
    check_valid_params,
)

X = poisson_data()
START = PoissonParams(np.array([0.5, 0.5]), np.array([1.0, 5.0]))


def test_correct_model_passes_every_check():
    check_model(lambda: PoissonMixture(2), X)
    labels = (X[:, 0] > 5).astype(int)
    expected = PoissonParams(
        np.bincount(labels) / len(labels),
        np.array([X[labels == k, 0].mean() for k in range(2)]),
    )
    m = PoissonMixture(2)
    check_complete_data_mle(m, m.stats_from_resp, X, labels, 2, expected)


@settings(max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 4),
    n=st.integers(5, 80),
)
def test_monotone_property_on_random_data_and_starts(seed, k, n):
    rng = np.random.default_rng(seed)
    Xr = rng.poisson(rng.uniform(0.5, 20), size=(n, 1)).astype(float)
    params = PoissonParams(rng.dirichlet(np.ones(k)), rng.uniform(0.1, 30, k))
    check_monotone(PoissonMixture(k), Xr, params, n_iter=15)


class NotAdditive(PoissonMixture):
    def stats_from_resp(self, X, resp):
        # means instead of sums: the classic mistake that breaks chunking
        return PoissonStats(resp.mean(axis=0), resp.T @ X[:, 0] / len(X))


class WrongMStep(PoissonMixture):
    def m_step(self, stats):
        p = super().m_step(stats)
        return p.replace(rates=p.rates * 1.5)


class Mutating(PoissonMixture):
    def log_weighted_prob(self, params, X):
        X[0, 0] += 1.0
        return super().log_weighted_prob(params, X)


class Invalid(PoissonMixture):
    def m_step(self, stats):
        p = super().m_step(stats)
        return p.replace(weights=p.weights * np.nan)


class Random(PoissonMixture):
    def initialize(self, X, rng):
        return super().initialize(X, np.random.default_rng())


def test_checks_catch_broken_models():
    with pytest.raises(AssertionError, match="not additive"):
        check_additive(NotAdditive(2), START, X, [X[:100], X[100:]])
    with pytest.raises(AssertionError, match="decreased"):
        check_monotone(WrongMStep(2), X, START, n_iter=10)
    with pytest.raises(AssertionError, match="data was modified"):
        check_no_mutation(Mutating(2), START, X.copy())
    with pytest.raises(AssertionError, match="non-finite"):
        check_valid_params(Invalid(2), START, X)
    with pytest.raises(AssertionError, match="same seed differ"):
        check_deterministic(lambda: Random(2), X)
    m = WrongMStep(2)
    labels = (X[:, 0] > 5).astype(int)
    with pytest.raises(AssertionError, match="complete-data MLE"):
        check_complete_data_mle(m, m.stats_from_resp, X, labels, 2, START)
