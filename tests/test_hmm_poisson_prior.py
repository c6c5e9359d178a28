"""PoissonHMM's Gamma prior on the rates: the MAP M-step, the penalised history, bad input."""

import warnings

import numpy as np
import pytest
from emframe.models import PoissonHMM
from hmm_bruteforce import brute_force
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from emframe.exceptions import ConvergenceWarning

START = np.array([0.5, 0.5])
TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
LAMBDAS = np.array([[1.0, 6.0], [4.0, 2.0]])


def _counts(seed=0, n=10):
    rng = np.random.default_rng(seed)
    return rng.poisson([[2.0, 5.0]], size=(n, 2))


def _given(max_iter, **kw):
    m = PoissonHMM(2, init_params="", tol=0.0, max_iter=max_iter, **kw)
    m.startprob_, m.transmat_, m.lambdas_ = START, TRANS, LAMBDAS
    return m


def _fit(m, X, lengths=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return m.fit(X, lengths)


def _log_emission(X, lam):
    return np.stack([sps.poisson.logpmf(X, lam[k]).sum(axis=1) for k in range(len(lam))], 1)


def _log_prior(lam, a, b):
    """log of prod lam**a exp(-b lam), the Gamma(a + 1, b) density up to a constant."""
    return float(np.sum(a * np.log(lam) - b * lam))


@pytest.mark.parametrize("a, b", [
    (2.0, 0.5),
    (np.array([[0.0, 3.0], [1.5, 0.0]]), np.array([[1.0], [0.25]])),  # per (state, feature)
])
def test_one_iteration_is_the_closed_form_map_update(a, b):
    X = _counts(0)
    lengths = [6, 4]
    m = _fit(_given(1, lambdas_prior=a, lambdas_weight=b), X, lengths)
    gamma = brute_force(START, TRANS, _log_emission(X, LAMBDAS), lengths)["posteriors"]
    # each state's own expected count N_k (hmmlearn would use the total over the states)
    expected = (a + gamma.T @ X) / (b + gamma.sum(axis=0)[:, None])
    np.testing.assert_allclose(m.lambdas_, expected, rtol=1e-12)


def test_history_is_the_penalised_log_likelihood_and_increases():
    X = _counts(1, n=200)
    a, b = np.array([[2.0, 0.0]]), 0.5
    m = _fit(_given(40, lambdas_prior=a, lambdas_weight=b), X)
    h = m.loglik_history_
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:])) and h[-1] > h[0]
    np.testing.assert_allclose(h[-1], m.score(X) + _log_prior(m.lambdas_, a, b), rtol=1e-12)
    start = _fit(_given(0, lambdas_prior=a, lambdas_weight=b), X)
    np.testing.assert_allclose(h[0], start.score(X) + _log_prior(LAMBDAS, a, b), rtol=1e-12)
    # the prior pulls the rates towards its mode lambdas_prior / lambdas_weight
    free = _fit(_given(40), X)
    assert m.lambdas_[:, 0].sum() > free.lambdas_[:, 0].sum()


def test_fixed_point_is_the_map_estimate_of_a_one_state_model():
    X = _counts(2, n=50)
    a, b = 4.0, 2.0
    m = _fit(PoissonHMM(1, lambdas_prior=a, lambdas_weight=b, random_state=0), X)
    # the mode of Gamma(a + 1 + sum x, b + n)
    np.testing.assert_allclose(m.lambdas_[0], (a + X.sum(axis=0)) / (b + len(X)), rtol=1e-12)


def test_unused_state_takes_the_prior_mode():
    # a state the start and transitions never reach has N_k = 0: its rate is a / b
    m = PoissonHMM(2, init_params="", params="l", lambdas_prior=3.0, lambdas_weight=2.0,
                   max_iter=1)
    m.startprob_, m.transmat_, m.lambdas_ = [1.0, 0.0], [[1.0, 0.0], [0.5, 0.5]], LAMBDAS
    _fit(m, _counts(3))
    np.testing.assert_allclose(m.lambdas_[1], [1.5, 1.5], rtol=1e-12)


@pytest.mark.parametrize("kw, message", [
    (dict(lambdas_prior=-1.0), "lambdas_prior must be finite and non-negative"),
    (dict(lambdas_weight=[[0.5, -0.1]]), "lambdas_weight must be finite and non-negative"),
    (dict(lambdas_weight=np.nan), "lambdas_weight must be finite"),
    (dict(lambdas_prior=[1.0, 2.0, 3.0]), r"broadcastable to \(n_components, n_features\)"),
    # an improper prior: a state with no steps would take an infinite rate
    (dict(lambdas_prior=4.0), r"lambdas_prior > 0 needs lambdas_weight > 0"),
    (dict(lambdas_prior=[[1.0, 0.0]], lambdas_weight=[[0.0, 1.0]]),
     r"lambdas_prior > 0 needs lambdas_weight > 0"),
])
def test_bad_prior_is_refused(kw, message):
    with pytest.raises(ValueError, match=message):
        PoissonHMM(2, **kw).fit(_counts(4))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), a=st.floats(0.0, 5.0), b=st.floats(0.0, 3.0),
       k=st.integers(1, 3))
@example(seed=3, a=4.0, b=0.5, k=3)  # with b = 0 (now refused) a state's rate ran off to e**276
def test_penalised_history_is_monotone(seed, a, b, k):
    assume(a == 0.0 or b > 0.0)  # a proper prior
    rng = np.random.default_rng(seed)
    X = rng.poisson(rng.choice([1.0, 4.0, 9.0], size=(60, 1)), size=(60, 2))
    m = _fit(PoissonHMM(k, lambdas_prior=a, lambdas_weight=b, random_state=seed, max_iter=15,
                        tol=0.0), X, [30, 30])
    h = m.loglik_history_
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    assert np.all(m.lambdas_ >= 0)
