"""Conventions users rely on, from scikit-learn's and hmmlearn's own tests (issue 11, item 5)."""

import warnings

import numpy as np
import pytest
import sklearn.exceptions
from emframe.models import CategoricalHMM, GaussianHMM, GaussianMixture, PoissonHMM
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import emframe

rng0 = np.random.default_rng(0)
X2 = np.vstack([rng0.normal([0, 0], 1, (100, 2)), rng0.normal([30, 40], 1, (100, 2))])
OVERLAP = np.vstack([rng0.normal([0, 0], 1, (100, 2)), rng0.normal([1, 1], 1, (100, 2))])


# -- scikit-learn -------------------------------------------------------------------------


@pytest.mark.parametrize("max_iter", [1, 2, 50])
def test_convergence_detected_with_warm_start(max_iter):
    # scikit-learn's test_convergence_detected_with_warm_start: repeated short warm fits
    seed = np.random.RandomState(0)
    gm = GaussianMixture(2, warm_start=True, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        for _ in range(100):
            gm.fit(X2)
            if gm.converged_:
                break
    assert gm.converged_
    assert gm.n_iter_ <= max_iter


def test_lower_bound_is_per_sample_at_the_kept_parameters():
    # the objective is the penalised log-likelihood; reg_covar=0 makes it the likelihood
    penalised = GaussianMixture(2, tol=1e-10, max_iter=500, random_state=0).fit(X2)
    prior = penalised._model.log_prior(penalised.params_)
    assert penalised.lower_bound_ == pytest.approx(penalised.score(X2) + prior / len(X2),
                                                   rel=1e-12)
    gm = GaussianMixture(2, reg_covar=0.0, tol=1e-10, max_iter=500, random_state=0).fit(X2)
    assert gm.lower_bound_ == pytest.approx(gm.score(X2), rel=1e-12)
    assert gm.lower_bound_ == gm.loglik_history_[-1] / len(X2)
    np.testing.assert_array_equal(gm.lower_bounds_, gm.loglik_history_ / len(X2))
    assert gm.lower_bounds_.shape == (gm.n_iter_ + 1,)
    sk = SKGaussianMixture(2, reg_covar=0.0, tol=1e-10, max_iter=500, random_state=0).fit(X2)
    assert gm.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-8)
    w = np.full(len(X2), 3.0)
    weighted = GaussianMixture(2, reg_covar=0.0, tol=1e-10, max_iter=500, random_state=0)
    weighted.fit(X2, sample_weight=w)
    assert weighted.lower_bound_ == pytest.approx(gm.lower_bound_, rel=1e-9)  # per unit weight


def _fit_one_iteration(filters):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in filters:
            warnings.simplefilter("ignore", f)
        GaussianMixture(2, max_iter=1, tol=1e-12, random_state=0).fit(OVERLAP)
    return [w for w in caught if "did not converge" in str(w.message)]


def test_convergence_warning_is_silenced_by_scikit_learns_filter():
    [w] = _fit_one_iteration([])
    assert issubclass(w.category, emframe.ConvergenceWarning)
    assert issubclass(w.category, sklearn.exceptions.ConvergenceWarning)
    assert _fit_one_iteration([sklearn.exceptions.ConvergenceWarning]) == []
    assert _fit_one_iteration([emframe.ConvergenceWarning]) == []
    with pytest.warns(emframe.ConvergenceWarning, match="max_iter=1"):
        GaussianMixture(2, max_iter=1, tol=1e-12, random_state=0).fit(OVERLAP)


def test_float32_weights_init_is_accepted():
    w32 = np.ones(3, dtype=np.float32) / np.float32(3)
    assert w32.astype(np.float64).sum() != 1.0  # 1.00000003: not 1 in float64
    gm = GaussianMixture(3, weights_init=w32, max_iter=0, random_state=0).fit(X2)
    assert gm.weights_.sum() == pytest.approx(1.0, abs=1e-15)
    sk = SKGaussianMixture(3, weights_init=w32, max_iter=100, random_state=0)
    sk.fit(X2.astype(np.float32))  # scikit-learn accepts it as well
    with pytest.raises(ValueError, match="weights_init must sum to 1"):
        GaussianMixture(3, weights_init=np.array([0.3, 0.3, 0.3])).fit(X2)


# -- hmmlearn -------------------------------------------------------------------------------


def _two_state_counts(n=300, seed=0):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 2, n // 20), 20)
    return rng.poisson(np.array([2.0, 9.0])[states])[:, None]


def test_parameters_never_set_are_initialised_even_without_their_letter():
    # hmmlearn's assert_log_likelihood_increasing on a fresh model: init_params="" and
    # n_iter=1, fitted repeatedly; every fit continues from the previous one
    X = _two_state_counts()
    m = PoissonHMM(2, init_params="", max_iter=1, random_state=0)
    scores = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        for _ in range(10):
            m.fit(X)
            scores.append(m.score(X))
    assert np.all(np.diff(scores) >= -1e-9 * np.abs(scores[1:]))
    part = GaussianHMM(2, init_params="st", random_state=0)  # means and covars never set
    part.fit(np.random.default_rng(1).normal(size=(100, 2)))
    assert part.means_.shape == (2, 2)


def test_setting_an_attribute_that_init_params_overwrites_warns():
    h = GaussianHMM(2, random_state=0)  # init_params contains every letter
    h.startprob_ = [0.5, 0.5]
    msg = r"startprob_ was set, but init_params='stmc' contains 's'"
    with pytest.warns(UserWarning, match=msg):
        h.fit(np.random.default_rng(2).normal(size=(100, 2)))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        h.fit(np.random.default_rng(3).normal(size=(100, 2)))  # fitted values: no warning
        g = GaussianHMM(2, init_params="tmc", random_state=0)
        g.startprob_ = [0.5, 0.5]
        g.fit(np.random.default_rng(2).normal(size=(100, 2)))


def test_categorical_n_features_is_set_by_fit():
    X = np.random.default_rng(4).integers(0, 3, (200, 1))
    m = CategoricalHMM(2, random_state=0).fit(X)
    assert m.n_features == 3
    m5 = CategoricalHMM(2, n_features=5, random_state=0).fit(X)
    assert m5.n_features == 5 and m5.emissionprob_.shape == (2, 5)


def test_one_dimensional_emissionprob_is_a_clear_error():
    m = CategoricalHMM(2, init_params="st")
    m.emissionprob_ = [0.5, 0.5]
    with pytest.raises(ValueError, match=r"emissionprob_ must be a 2-D array .* got shape \(2,\)"):
        m.fit(np.array([[0], [1], [1], [0]]))


def test_more_free_parameters_than_data_warns():
    X = np.random.default_rng(5).normal(size=(5, 2))
    with pytest.warns(UserWarning, match=r"has \d+ free parameters but the data hold only 10"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", emframe.ConvergenceWarning)
            GaussianHMM(3, "full", random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        GaussianHMM(2, random_state=0).fit(np.random.default_rng(5).normal(size=(100, 2)))

