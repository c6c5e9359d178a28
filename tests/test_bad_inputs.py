"""Remaining bad and extreme inputs: each a clear error or correct handling (issue 11, item 9)."""

import numpy as np
import pytest
from custom_models import PoissonMixtureEstimator, poisson_data
from emframe.models import BernoulliMixture, GaussianMixture, PoissonHMM

rng = np.random.default_rng(0)
X = np.vstack([rng.normal(0, 1, (50, 2)), rng.normal(4, 1, (50, 2))])


def test_tol_nan_is_refused():
    with pytest.raises(ValueError, match="tol must be a number >= 0, got nan"):
        GaussianMixture(2, tol=float("nan")).fit(X)


def test_scalar_sample_weight_is_broadcast():
    plain = GaussianMixture(2, random_state=0).fit(X)
    scaled = GaussianMixture(2, random_state=0).fit(X, sample_weight=2.0)
    ones = GaussianMixture(2, random_state=0).fit(X, sample_weight=np.full(len(X), 2.0))
    assert scaled.params_.allclose(ones.params_, rtol=0)
    assert scaled.params_.allclose(plain.params_, rtol=1e-10)
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        GaussianMixture(2).fit(X, sample_weight=-1.0)


@pytest.mark.parametrize("data", [
    lambda: iter([X[:50], X[50:]]),
    [X[:30], X[30:]],
    [X[:50], X[50:]],
])
def test_sample_weight_with_chunks_or_a_stream_is_a_clear_error(data):
    with pytest.raises(TypeError, match="sample_weight needs the rows in one array"):
        GaussianMixture(2).fit(data, sample_weight=np.ones(len(X)))
    GaussianMixture(2).fit(X, sample_weight=np.ones(len(X)), chunk_size=30)  # the way to do it


def test_warm_start_with_other_features_is_a_clear_error():
    gm = GaussianMixture(2, warm_start=True, random_state=0).fit(X)
    with pytest.raises(ValueError, match="X has 3 features, but warm_start=True continues"):
        gm.fit(np.column_stack([X, X[:, 0]]))
    assert gm.n_features_in_ == 2 and gm.predict(X).shape == (100,)


def test_callback_returning_an_array_is_a_clear_error():
    with pytest.raises(TypeError, match="callback .* returned ndarray .* must return None or"):
        GaussianMixture(2).fit(X, callbacks=[lambda info: np.array([1.0, 2.0])])
    with pytest.raises(TypeError, match="returned float"):
        PoissonMixtureEstimator(2).fit(poisson_data(), method="online",
                                       callbacks=[lambda info: 0.5])
    stops = GaussianMixture(2, tol=0, max_iter=50).fit(X, callbacks=[lambda i: np.bool_(True)])
    assert stops.n_iter_ == 1


def test_poisson_hmm_huge_counts_are_a_clear_error():
    counts = np.array([[1e300], [2.0], [3.0], [1.0]] * 10)
    with pytest.raises(ValueError, match=r"counts must be at most 2\*\*53"):
        PoissonHMM(2, random_state=0).fit(counts)
    big = np.array([[2.0**52], [3.0], [2.0**50], [1.0]] * 10)
    m = PoissonHMM(2, random_state=0, max_iter=10).fit(big)
    assert np.all(np.isfinite(m.lambdas_)) and np.all(np.isfinite(m.loglik_history_))


def test_bernoulli_on_all_missing_data_is_refused():
    est = BernoulliMixture(2, random_state=0)
    with pytest.raises(ValueError, match="no entry of X is observed"):
        est.fit(np.full((10, 3), np.nan))
    with pytest.raises(ValueError, match="no entry of X is observed"):
        est.fit(np.full((10, 3), np.nan), chunk_size=4)
    assert not hasattr(est, "params_")
    partly = np.full((10, 3), np.nan)
    partly[0, 0] = 1.0
    BernoulliMixture(2, random_state=0).fit(partly)  # one observed entry is enough


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_score_samples_far_away_is_minus_inf_not_nan(covariance_type):
    Xc = X.copy()
    Xc[:, 1] += 0.8 * Xc[:, 0]  # correlated: off-diagonal precision terms
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Xc)
    far = np.array([[1e155, -1e155], [1e160, 1e160], [-1e160, 1e160], [1e300, 1e300],
                    [1e307, -1e308], [1e170, 0.0]])
    with np.errstate(over="ignore", invalid="ignore"):
        s = gm.score_samples(np.vstack([far, Xc[:3]]))
    assert np.all(s[: len(far)] == -np.inf)
    np.testing.assert_allclose(s[len(far):], gm.score_samples(Xc[:3]), rtol=1e-12)
