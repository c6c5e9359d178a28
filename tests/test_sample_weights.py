"""Sample weights count relative to their mean: scaling them all by any constant changes nothing."""

import warnings

import numpy as np
import pytest
from emframe.models import BernoulliMixture, GaussianMixture, MissingDataGaussian
from emframe.models.mixtures.gaussian import GaussianMixtureModel
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.core.data import relative_weights
from emframe.core.engine import fit_em
from emframe.exceptions import ConvergenceWarning, MonotonicityError

TYPES = ["full", "tied", "diag", "spherical"]


def _blobs(seed=0, n=150):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [4.0, 1.0], [1.0, 5.0]])
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 2)), rng


def _case(name, seed):
    """An estimator with default settings, data and base weights (some of them zero)."""
    X, rng = _blobs(seed)
    w = rng.uniform(0.2, 3.0, size=len(X))
    w[rng.random(len(X)) < 0.1] = 0.0
    if name == "bernoulli":
        probs = rng.uniform(0.1, 0.9, size=(3, 5))
        X = (rng.random((len(X), 5)) < probs[rng.integers(0, 3, len(X))]).astype(float)
        return BernoulliMixture(3, random_state=seed), X, w
    if name == "missing-gaussian":
        X = X.copy()
        X[rng.random(X.shape) < 0.2] = np.nan
        return MissingDataGaussian(ridge=1.0), X, w
    return GaussianMixture(3, covariance_type=name, random_state=seed), X, w


def _fit(est, X, w):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, sample_weight=w)


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from([*TYPES, "bernoulli", "missing-gaussian"]),
    seed=st.integers(0, 2**16),
    log_factor=st.floats(-300.0, 300.0),
)
def test_scaling_every_weight_changes_nothing(name, seed, log_factor):
    # Default priors included (reg_covar, Bernoulli's Beta/Dirichlet, the ridge): they
    # count in units of the mean weight, as do the responsibility floor and the guard.
    est, X, w = _case(name, seed)
    a = _fit(est, X, w)
    pa, na, ca, ha = a.params_, a.n_iter_, a.converged_, a.loglik_history_
    b = _fit(est, X, w * 10.0**log_factor)
    assert b.params_.allclose(pa, rtol=1e-10, atol=1e-12)
    assert (b.n_iter_, b.converged_) == (na, ca)
    np.testing.assert_allclose(b.loglik_history_, ha, rtol=1e-10)


@pytest.mark.parametrize("factor", [1e307, 1e-300, 1e-50])
@pytest.mark.parametrize("covariance_type", TYPES)
def test_extreme_equal_weights_are_the_unweighted_fit(factor, covariance_type):
    # 1e307 made every weighted sum overflow (reported as a zero-probability sample);
    # 1e-50 and 1e-300 collapsed both means onto the grand mean, silently.
    X, _ = _blobs(1)
    plain = _fit(GaussianMixture(3, covariance_type=covariance_type, random_state=0), X, None)
    weighted = _fit(GaussianMixture(3, covariance_type=covariance_type, random_state=0), X,
                    np.full(len(X), factor))
    assert weighted.params_.allclose(plain.params_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(weighted.loglik_history_, plain.loglik_history_, rtol=1e-12)
    assert weighted.converged_ and weighted.n_iter_ == plain.n_iter_


def test_weights_whose_sum_overflows():
    X, rng = _blobs(2)
    w = rng.uniform(0.5, 1.5, size=len(X))
    a = _fit(GaussianMixture(3, random_state=0), X, w)
    b = _fit(GaussianMixture(3, random_state=0), X, w * 1e307)  # sum ~1.5e309
    assert b.params_.allclose(a.params_, rtol=1e-10)
    assert b._fit_result.weight_scale == pytest.approx(w.mean() * 1e307, rel=1e-14)


def test_relative_weights():
    w = np.array([0.0, 2e300, 4e300, 0.0, 6e300])
    rel, scale = relative_weights(w)
    np.testing.assert_allclose(rel, [0.0, 0.5, 1.0, 0.0, 1.5], rtol=1e-15)
    assert scale == pytest.approx(4e300, rel=1e-15)
    assert np.array_equal(relative_weights(np.full(4, 1e-310))[0], np.ones(4))
    assert w[1] == 2e300  # the input is not modified


def test_all_zero_weights_are_a_clear_error():
    X, _ = _blobs(3)
    msg = "sample_weight is zero for every sample"
    with pytest.raises(ValueError, match=msg):
        GaussianMixture(2).fit(X, sample_weight=np.zeros(len(X)))
    model = GaussianMixtureModel(2)
    with pytest.raises(ValueError, match=msg):
        fit_em(model, X, sample_weight=np.zeros(len(X)))


def test_responsibility_floor_is_relative_to_the_total_weight():
    # Statistics scaled by 1e-50 (with the prior scaled alike) give the same M-step: the
    # floor that keeps an empty component finite is relative, no mean collapses onto it.
    X, rng = _blobs(4)
    resp = rng.dirichlet(np.ones(3), size=len(X))
    resp[:, 2] = 0.0  # an empty component
    a_model = GaussianMixtureModel(3, reg_covar=1e-3)
    b_model = GaussianMixtureModel(3, reg_covar=1e-53)
    stats = a_model.stats_from_resp(X, resp)
    a = a_model.m_step(stats)
    b = b_model.m_step(stats.scale(1e-50))
    assert b.allclose(a, rtol=1e-12)
    assert np.all(np.isfinite(b.covariances)) and 0 < b.weights[2] < 1e-14


def test_the_guard_watches_tiny_weights_too():
    # An M-step that lowers the likelihood every other step: the guard's tolerance is
    # relative, so weights of 1e-50 (a log-likelihood of ~1e-48) do not hide the drops.
    class Wrong(GaussianMixtureModel):
        calls = 0

        def constrained_m_step(self, stats, fixed):
            Wrong.calls += 1
            params = super().constrained_m_step(stats, fixed)
            return params.replace(means=params.means + 1.0) if Wrong.calls % 2 else params

    X, _ = _blobs(5)
    model = Wrong(2)
    start = model.initialize(X, np.random.default_rng(0))
    with pytest.raises(MonotonicityError):
        fit_em(model, X, sample_weight=np.full(len(X), 1e-50), init_params=start, tol=0.0,
               max_iter=6, strict=True)


def test_partial_fit_is_invariant_to_the_weight_scale():
    X, rng = _blobs(6, n=300)
    w = rng.uniform(0.2, 3.0, size=len(X))
    fits = []
    for factor in (1.0, 1e-50, 1e250):
        est = GaussianMixture(3, random_state=0)
        for part in np.array_split(np.arange(len(X)), 3):
            est.partial_fit(X[part], sample_weight=w[part] * factor)
        fits.append(est.params_)
    assert fits[1].allclose(fits[0], rtol=1e-10)
    assert fits[2].allclose(fits[0], rtol=1e-10)
