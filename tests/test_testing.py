"""emframe.testing must pass a correct model and fail each kind of broken one."""

import doctest

import numpy as np
import pytest
from custom_models import (
    FactorAnalysis,
    PoissonMixture,
    PoissonParams,
    PoissonStats,
    factor_data,
    poisson_data,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import gammaln

import emframe.testing
from emframe import fit_em
from emframe.testing import (
    check_additive,
    check_complete_data_mle,
    check_deterministic,
    check_log_likelihood,
    check_model,
    check_monotone,
    check_no_mutation,
    check_stationary,
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


# -- wrong models that stay monotone (issue 11, item 7) -------------------------------------


class OvershootingNoise(FactorAnalysis):
    """Multiplies the noise variances by 1.3 in every M-step: monotone, converges, wrong."""

    def m_step(self, stats):
        p = super().m_step(stats)
        return p.replace(noise=p.noise * 1.3)


class LogLikelihoodWithoutConstant(PoissonMixture):
    """log_likelihood forgets the -log(x!) term that the E-step includes."""

    def log_likelihood(self, params, X):
        return super().log_likelihood(params, X) + float(gammaln(X[:, 0] + 1).sum())


class WeightsIgnoredInLogLikelihood(PoissonMixture):
    """The weighted E-step weights the statistics but returns the unweighted log-likelihood."""

    def e_step(self, params, X, sample_weight=None):
        stats, ll = super().e_step(params, X, sample_weight)
        return stats, self.log_likelihood(params, X)


def test_overshooting_m_step_is_monotone_but_caught():
    X = factor_data()
    check_model(FactorAnalysis(1), X)  # the correct model passes everything
    # the wrong one converges monotonically, under strict, 40 nats below the optimum...
    good = fit_em(FactorAnalysis(1), X, tol=1e-10, max_iter=5000, random_state=0, strict=True)
    bad = fit_em(OvershootingNoise(1), X, tol=1e-10, max_iter=5000, random_state=0, strict=True)
    assert bad.converged and good.log_likelihood - bad.log_likelihood > 10
    check_monotone(OvershootingNoise(1), X, n_iter=30)
    # ...and only the stationarity check sees it
    with pytest.raises(AssertionError, match="fixed point of EM is not a maximum"):
        check_stationary(OvershootingNoise(1), X)
    with pytest.raises(AssertionError, match="fixed point of EM is not a maximum"):
        check_model(OvershootingNoise, X)


def test_log_likelihood_disagreeing_with_e_step_is_caught():
    X = poisson_data()
    with pytest.raises(AssertionError, match="they must agree"):
        check_log_likelihood(LogLikelihoodWithoutConstant(2), START, X)
    with pytest.raises(AssertionError, match="they must agree"):
        check_model(LogLikelihoodWithoutConstant(2), X)
    with pytest.raises(AssertionError, match="unit sample weights|integer sample weights"):
        check_log_likelihood(WeightsIgnoredInLogLikelihood(2), START, X)
    check_log_likelihood(PoissonMixture(2), START, X)


def test_stationarity_reports_an_unconverged_run():
    with pytest.raises(AssertionError, match="did not reach a fixed point in 3 iterations"):
        check_stationary(PoissonMixture(2), X, START, max_iter=3)


def test_module_docstring_example_runs():
    result = doctest.testmod(emframe.testing, verbose=False)
    assert result.attempted >= 5 and result.failed == 0


def test_check_model_takes_an_instance_or_a_factory():
    check_model(PoissonMixture(2), X)  # instance: copied where a fresh one is needed
    check_model(lambda: PoissonMixture(2), X)
    check_deterministic(PoissonMixture(2), X)
    with pytest.raises(TypeError, match="expected an EMModel instance or a function"):
        check_model(42, X)


class _NoisyEvaluation(PoissonMixture):
    """A correct EM whose log-likelihood evaluation drifts down by 1e-7 relative per call,
    as a coarser arithmetic's rounding might; it declares that precision."""

    def __init__(self, k: int, declared: float) -> None:
        super().__init__(k)
        self.declared = declared
        self.calls = 0

    def evaluation_rtol(self) -> float:
        return self.declared

    def e_step(self, params, X, sample_weight=None):
        stats, loglik = super().e_step(params, X, sample_weight)
        self.calls += 1
        return stats, loglik - 1e-7 * abs(loglik) * self.calls


def test_check_monotone_uses_the_model_s_declared_precision():
    # converged from START, so only the evaluation drift changes the history
    fitted = fit_em(PoissonMixture(2), X, init_params=START, tol=0.0, max_iter=200).params
    check_monotone(_NoisyEvaluation(2, declared=1e-5), X, fitted, n_iter=5)
    with pytest.raises(AssertionError, match="decreased"):
        check_monotone(_NoisyEvaluation(2, declared=0.0), X, fitted, n_iter=5)
    with pytest.raises(AssertionError, match="decreased"):
        check_monotone(_NoisyEvaluation(2, declared=1e-5), X, fitted, n_iter=5, rtol=1e-9)
