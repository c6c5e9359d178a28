"""LinearGaussianSSM's defaults: SQUAREM and a tight tol reach the Nile's published optimum."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import LinearGaussianSSM

from emframe.datasets import load_nile

LOCAL_LEVEL = dict(
    transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
    initial_state_covariance_init=[[1e10]],
    freeze=("transition_matrix", "observation_matrix", "initial_state_covariance"),
    transition_offset=False, observation_offset=False,
)


@pytest.fixture(scope="module")
def nile():
    return load_nile()[1][:, None]


def test_nile_local_level_reaches_durbin_koopman_with_defaults(nile):
    level = LinearGaussianSSM(1, **LOCAL_LEVEL)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # converges, no warning
        level.fit(nile)
    # Durbin & Koopman (2012), section 2.10: 1469.1 and 15099
    assert abs(level.transition_covariance_[0, 0] - 1469.1) < 0.5
    assert abs(level.observation_covariance_[0, 0] - 15099) < 1.0
    assert level.converged_ and level.n_iter_ < 100
    assert np.all(np.diff(level.loglik_history_) >= 0)


def test_fit_accelerates_with_squarem_by_default(nile):
    default = LinearGaussianSSM(1, **LOCAL_LEVEL).fit(nile)
    squarem = LinearGaussianSSM(1, **LOCAL_LEVEL).fit(nile, accelerate="squarem")
    assert default.params_.allclose(squarem.params_, rtol=0.0, atol=0.0)
    np.testing.assert_array_equal(default.loglik_history_, squarem.loglik_history_)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = LinearGaussianSSM(1, **LOCAL_LEVEL).fit(nile, accelerate=None)
    # plain EM crawls on this flat likelihood: more iterations, and further from the optimum
    assert plain.n_iter_ > 3 * default.n_iter_
    assert plain.loglik_history_[-1] < default.loglik_history_[-1]


def test_online_fit_is_not_given_the_default_acceleration(nile):
    est = LinearGaussianSSM(1, **LOCAL_LEVEL, max_iter=2)
    est.fit(nile, method="online", batch_size=50)
    assert np.all(np.isfinite(est.loglik_history_))
