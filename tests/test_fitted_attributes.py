"""Assigning a fitted attribute after fit changes the parameters the estimator scores with
(scikit-learn's behaviour), checked by the model, and never silently does nothing."""

from __future__ import annotations

import numpy as np
import pytest
from emframe.models import (
    BernoulliMixture,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussian,
    MissingDataGaussianMixture,
    StudentTMixture,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import emframe
from emframe.exceptions import NotFittedError

TYPES = ["full", "tied", "diag", "spherical"]


def blobs(n=200, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[: n // 2] += 5.0
    return X


def random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.5 * np.eye(d)


def covariances_of(rng, covariance_type, k, d):
    full = np.stack([random_spd(rng, d) for _ in range(k)])
    return {"full": full, "tied": full[0], "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
            "spherical": np.trace(full, axis1=1, axis2=2) / d}[covariance_type]


@settings(max_examples=20, deadline=None)
@given(covariance_type=st.sampled_from(TYPES), k=st.integers(1, 4), d=st.integers(1, 4),
       seed=st.integers(0, 2**32 - 1), via=st.sampled_from(["covariances_", "precisions_",
                                                             "precisions_cholesky_"]))
def test_set_parameters_score_as_scikit_learn_scores_the_same_attributes(
        covariance_type, k, d, seed, via):
    # scikit-learn's predict_proba and score_samples read the attributes: after the same
    # assignments both give the same numbers
    from sklearn.mixture import GaussianMixture as SkGaussianMixture

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, d)) * 3
    ours = GaussianMixture(k, covariance_type=covariance_type, random_state=0).fit(X)
    sk = SkGaussianMixture(k, covariance_type=covariance_type, random_state=0).fit(X)
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d)) * 3
    cov = covariances_of(rng, covariance_type, k, d)
    ours.weights_, ours.means_ = weights, means
    if via == "covariances_":
        ours.covariances_ = cov
    else:
        ours.precisions_ = ours._model.strategy.precisions(
            ours._model.strategy.precisions_cholesky(cov))
        if via == "precisions_cholesky_":
            ours.precisions_cholesky_ = ours.precisions_cholesky_.copy()
    sk.weights_, sk.means_ = weights, means
    sk.precisions_cholesky_ = ours._model.strategy.precisions_cholesky(cov)
    np.testing.assert_allclose(ours.covariances_, cov, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X), rtol=1e-10)
    # every fitted attribute is re-derived from the one parameter set
    assert ours.params_.allclose(ours.params_.replace(means=ours.means_))
    np.testing.assert_allclose(
        ours.precisions_, ours._model.strategy.precisions(ours.precisions_cholesky_))


def test_a_set_attribute_is_what_predict_uses_and_what_a_warm_start_continues_from():
    X = blobs()
    g = GaussianMixture(2, random_state=0).fit(X)
    before = g.predict(X)
    g.means_ = g.means_[::-1]
    assert np.array_equal(g.predict(X), 1 - before)  # the swapped means swap the labels
    assert np.array_equal(g.params_.means, g.means_)
    g.set_params(warm_start=True, max_iter=1)
    with pytest.warns(UserWarning, match="did not converge"):
        g.fit(X)
    assert np.array_equal(g.predict(X), 1 - before)


def test_the_assigned_array_is_copied_and_the_attribute_stays_read_only():
    X = blobs()
    g = GaussianMixture(2, random_state=0).fit(X)
    means = g.means_ + 1.0
    g.means_ = means
    means[:] = 0.0  # changing the caller's array later changes nothing
    assert not np.any(g.means_ == 0.0)
    with pytest.raises(ValueError, match="read-only"):
        g.means_[0, 0] = 3.0


@pytest.mark.parametrize("name, value, match", [
    ("means_", np.ones((3, 2)), r"means_ must have the shape of the fitted one, \(2, 2\)"),
    ("means_", [[np.nan, 0.0], [0.0, 1.0]], "invalid value for means_: .*non-finite"),
    ("means_", [["a", "b"], ["c", "d"]], "means_ must be an array of real numbers"),
    ("weights_", [0.3, 0.3], "invalid value for weights_: weights must be non-negative and "
                             "sum to 1"),
    ("covariances_", -np.stack([np.eye(2)] * 2), "invalid value for covariances_: .*not "
                                                 "positive definite"),
    ("covariances_", np.stack([[[1.0, 0.5], [0.0, 1.0]]] * 2), "invalid value for "
                                                               "covariances_: .*symmetric"),
    ("precisions_cholesky_", np.stack([[[1.0, 0.0], [0.5, 1.0]]] * 2),
     "precisions_cholesky_ must be the Cholesky factor U .*upper triangular"),
    ("precisions_cholesky_", -np.stack([np.eye(2)] * 2), "invalid value for "
                                                         "precisions_cholesky_"),
    ("means_", np.ones((2, 2)) + 1j, "means_ must be an array of real numbers"),
])
def test_bad_values_are_refused_and_leave_the_fit_unchanged(name, value, match):
    X = blobs()
    g = GaussianMixture(2, random_state=0).fit(X)
    params = g.params_
    with pytest.raises(ValueError, match=match):
        setattr(g, name, value)
    assert g.params_ is params
    assert np.array_equal(getattr(g, name), getattr(params, name[:-1]))


def test_noise_weights_and_the_noise_component():
    X = blobs()
    g = GaussianMixture(2, noise=True, random_state=0).fit(X)
    pi0 = g.noise_weight_
    with pytest.raises(ValueError, match="weights_ must sum to 1 - noise_weight_"):
        g.weights_ = [0.5, 0.5]
    g.weights_ = g.weights_[::-1]
    assert g.weights_.sum() + g.noise_weight_ == pytest.approx(1.0)
    g.noise_weight_ = 0.1
    assert g.noise_weight_ == pytest.approx(0.1) and g.weights_.sum() == pytest.approx(0.9)
    assert g.predict_proba(X)[:, -1].mean() != pytest.approx(pi0)
    with pytest.raises(AttributeError, match="noise_volume_ cannot be set by itself .*"
                                             "that can be set are covariances_, means_"):
        g.noise_volume_ = 3.0


def test_student_t_degrees_of_freedom():
    X = blobs()
    t = StudentTMixture(2, random_state=0).fit(X)
    before = t.score(X)
    t.dof_ = np.array([1.0, 1.0])
    assert t.score(X) < before  # heavier tails than the fitted ones fit worse
    with pytest.raises(ValueError, match="invalid value for dof_: dof must be positive"):
        t.dof_ = [-1.0, 2.0]


def test_bernoulli_probabilities():
    rng = np.random.default_rng(0)
    B = (rng.random((300, 5)) < 0.3).astype(float)
    b = BernoulliMixture(2, random_state=0).fit(B)
    b.probs_ = np.full((2, 5), 0.5)
    assert b.score(B) == pytest.approx(5 * np.log(0.5))
    with pytest.raises(ValueError, match="probs must lie in"):
        b.probs_ = np.full((2, 5), 1.5)


def test_missing_data_imputations_follow_the_set_mean():
    X = blobs()
    X[::7, 0] = np.nan
    m = MissingDataGaussian().fit(X)
    m.mean_ = [0.0, 0.0]
    conditional = m.covariance_[0, 1] / m.covariance_[1, 1] * X[0, 1]
    assert m.impute(X)[0, 0] == pytest.approx(conditional)
    mm = MissingDataGaussianMixture(2, random_state=0).fit(X)
    ref = MissingDataGaussianMixture(2, weights_init=mm.weights_, means_init=mm.means_ + 1.0,
                                     precisions_init=mm.precisions_, max_iter=0).fit(X)
    assert not np.allclose(mm.impute(X), ref.impute(X))
    mm.means_ = mm.means_ + 1.0
    np.testing.assert_allclose(mm.impute(X), ref.impute(X), rtol=1e-12)


def test_state_space_filter_uses_the_set_matrices():
    rng = np.random.default_rng(0)
    y = np.cumsum(rng.normal(size=100))[:, None] + rng.normal(size=(100, 1))
    s = LinearGaussianSSM(1, random_state=0).fit(y)
    ref = LinearGaussianSSM(
        1, transition_matrix_init=[[0.5]], **{f"{f}_init": getattr(s, f"{f}_") for f in (
            "transition_offset", "transition_covariance", "observation_matrix",
            "observation_offset", "observation_covariance", "initial_state_mean",
            "initial_state_covariance")}, max_iter=0).fit(y)
    s.transition_matrix_ = [[0.5]]
    np.testing.assert_allclose(s.filter(y)[0], ref.filter(y)[0], rtol=1e-12)
    with pytest.raises(ValueError, match="invalid value for observation_covariance_"):
        s.observation_covariance_ = [[-1.0]]


def test_a_saved_model_keeps_the_set_parameters(tmp_path):
    X = blobs()
    g = GaussianMixture(2, random_state=0).fit(X)
    g.means_ = g.means_ + 0.5
    g.save(tmp_path / "m.emf")
    back = emframe.load(tmp_path / "m.emf")
    np.testing.assert_array_equal(back.means_, g.means_)
    np.testing.assert_array_equal(back.predict_proba(X), g.predict_proba(X))


def test_before_fit_an_attribute_is_a_plain_attribute():
    g = GaussianMixture(2)
    g.means_ = np.zeros((2, 2))  # nothing to write through to yet; fit replaces it
    g.fit(blobs())
    assert not np.array_equal(g.means_, np.zeros((2, 2)))


def test_attributes_assigned_before_fit_get_a_message_saying_how_to_use_known_parameters():
    # scikit-learn users build a mixture by assigning its attributes; here that needs a fit
    g = GaussianMixture(2)
    g.weights_, g.means_ = np.array([0.5, 0.5]), np.zeros((2, 2))
    with pytest.raises(NotFittedError,
                       match=r"Attributes assigned before a fit \(means_, weights_\) are not "
                             r"used: .* initial values \(means_init, .*precisions_init, "
                             r"weights_init\) and fit with max_iter=0"):
        g.predict(np.zeros((3, 2)))
    X = blobs()
    known = GaussianMixture(2, weights_init=[0.5, 0.5], means_init=[[0, 0], [5, 5]],
                            precisions_init=np.stack([np.eye(2)] * 2), max_iter=0).fit(X)
    np.testing.assert_array_equal(known.means_, [[0, 0], [5, 5]])
    with pytest.raises(NotFittedError, match=r"yet\. Call 'fit' with "
                                                                r"appropriate arguments[^A]*$"):
        GaussianMixture(2).predict(X)  # nothing assigned: the plain message
