"""hmmlearn habits: sampling from parameters set by hand, currstate, the stationary
distribution, ``n_features``, and integer imputations of symbols."""

from __future__ import annotations

import numpy as np
import pytest
from emframe.models import (
    GMMHMM,
    AutoRegressiveHMM,
    CategoricalHMM,
    GaussianHMM,
    PoissonHMM,
)

from emframe.exceptions import NotFittedError

START = [0.6, 0.4]
TRANS = [[0.7, 0.3], [0.4, 0.6]]


def _gaussian(covariance_type):
    h = GaussianHMM(2, covariance_type)
    covars = {"spherical": [4.0, 3.0], "diag": [[4.0, 1.0], [3.0, 2.0]],
              "full": [[[4.0, 1.0], [1.0, 2.0]], [[3.0, 0.0], [0.0, 1.0]]],
              "tied": [[4.0, 1.0], [1.0, 2.0]]}[covariance_type]
    h.means_ = [[3.0, 0.0], [5.0, 1.0]]
    h.covars_ = covars
    return h


def _categorical():
    h = CategoricalHMM(2)
    h.emissionprob_ = [[0.1, 0.4, 0.5], [0.6, 0.3, 0.1]]
    return h


def _poisson():
    h = PoissonHMM(2)
    h.lambdas_ = [[15.0, 1.0], [26.0, 3.0]]
    return h


def _gmm():
    h = GMMHMM(2, 2, "diag")
    h.weights_ = [[0.5, 0.5], [0.3, 0.7]]
    h.means_ = np.arange(12.0).reshape(2, 2, 3)
    h.covars_ = np.ones((2, 2, 3))
    return h


def _ar():
    h = AutoRegressiveHMM(2, order=1)
    h.coefs_ = [[[[0.95]]], [[[-0.3]]]]
    h.intercepts_ = [[0.1], [0.0]]
    h.covars_ = [[[0.05]], [[1.0]]]
    return h


MAKERS = {
    **{f"gaussian-{t}": (lambda t=t: _gaussian(t)) for t in ("spherical", "diag", "full", "tied")},
    "categorical": _categorical, "poisson": _poisson, "gmm": _gmm, "ar": _ar,
}


def _hand_set(name):
    h = MAKERS[name]()
    h.startprob_ = START
    h.transmat_ = TRANS
    return h


def _data_for(name, h):
    # a few rows of the right kind for the old workaround fit(init_params="", max_iter=0)
    if name == "categorical":
        return np.array([[0], [1], [2], [1]])
    if name == "poisson":
        return np.array([[10, 1], [20, 3], [30, 2], [12, 0]])
    width = np.shape(h.means_ if name != "ar" else h.intercepts_)[-1]
    return np.random.default_rng(0).normal(size=(8, width))


@pytest.mark.parametrize("name", list(MAKERS))
def test_sample_from_hand_set_parameters_without_fit(name):
    h = _hand_set(name)
    X, Z = h.sample(60, random_state=3)
    assert "params_" not in h.__dict__  # sampling does not fit the estimator
    # the same draws as the former workaround: a zero-iteration fit from the given values
    ref = _hand_set(name).set_params(init_params="", max_iter=0)
    ref.fit(_data_for(name, ref))
    X_ref, Z_ref = ref.sample(60, random_state=3)
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(Z, Z_ref)
    # and a later fit still starts from the values set (init_params="")
    h.set_params(init_params="", max_iter=0).fit(_data_for(name, h))
    np.testing.assert_array_equal(h.sample(60, random_state=3)[0], X_ref)


@pytest.mark.parametrize("name", ["gaussian-diag", "categorical", "ar"])
def test_currstate_continues_a_sequence(name):
    h = _hand_set(name)
    _, Z0 = h.sample(10, random_state=0)
    for state in (0, 1):
        _, Z = h.sample(10, random_state=1, currstate=state)
        assert Z[0] == state
    _, Z = h.sample(10, currstate=Z0[-1])  # hmmlearn's example
    assert len(Z) == len(Z0) and Z[0] == Z0[-1]
    with pytest.raises(ValueError, match="currstate"):
        h.sample(5, currstate=2)


def test_sample_before_all_parameters_are_set_names_the_missing_ones():
    h = GaussianHMM(2)
    h.startprob_ = START
    with pytest.raises(NotFittedError, match="transmat_, means_, covars_ were not set"):
        h.sample(3)
    h.transmat_ = [[0.5, 0.6], [0.5, 0.5]]
    h.means_ = [[0.0], [1.0]]
    h.covars_ = [[1.0], [1.0]]
    with pytest.raises(ValueError, match="transmat_"):
        h.sample(3)


def test_stationary_distribution_matches_hmmlearn():
    hmmlearn = pytest.importorskip("hmmlearn.hmm")
    rng = np.random.default_rng(0)
    P = rng.random((5, 5))
    P /= P.sum(axis=1, keepdims=True)
    ours = GaussianHMM(5)
    ours.transmat_ = P
    pi = ours.get_stationary_distribution()  # before any fit, as in hmmlearn
    assert pi.dtype == float and pi.shape == (5,)
    np.testing.assert_allclose(pi @ P, pi, atol=1e-12)
    theirs = hmmlearn.GaussianHMM(5)
    theirs.transmat_ = P
    np.testing.assert_allclose(pi, theirs.get_stationary_distribution(), atol=1e-12)
    fitted = _hand_set("gaussian-diag").set_params(max_iter=5, random_state=0)
    fitted.fit(fitted.sample(200, random_state=0)[0])
    pi = fitted.get_stationary_distribution()
    np.testing.assert_allclose(pi @ fitted.transmat_, pi, atol=1e-12)


@pytest.mark.parametrize("name", ["gaussian-diag", "poisson", "gmm"])
def test_n_features_as_in_hmmlearn(name):
    h = MAKERS[name]()
    assert h.n_features == (3 if name == "gmm" else 2)  # from the attribute set
    fresh = type(h)(2)
    with pytest.raises(AttributeError, match="n_features"):
        _ = fresh.n_features
    X = _data_for("poisson", h) if name == "poisson" else np.random.default_rng(0).normal(
        size=(40, 4))
    fresh.set_params(random_state=0, max_iter=2).fit(X)
    assert fresh.n_features == X.shape[1] == fresh.n_features_in_
    fresh.n_features = X.shape[1]  # setting the same value is fine
    with pytest.raises(ValueError, match="fitted parameters are for"):
        fresh.n_features = X.shape[1] + 1
    wrong = type(h)(2, random_state=0, max_iter=2)
    wrong.n_features = X.shape[1] + 1
    with pytest.raises(ValueError, match="n_features was set to"):
        wrong.fit(X)


def test_hmmlearn_spherical_sampling_example():
    # hmmlearn's test_issue_385, in emframe's covars_ shape
    model = GaussianHMM(n_components=2, covariance_type="spherical")
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.4, 0.6], [0.9, 0.1]])
    model.means_ = np.array([[3.0], [5.0]])
    model.covars_ = np.array([4.0, 3.0])
    model.n_features = 1
    X, Z = model.sample(1000, random_state=0)
    assert X.shape == (1000, 1) and set(np.unique(Z)) == {0, 1}
    assert abs(X[Z == 0].mean() - 3.0) < 0.3 and abs(X[Z == 1].mean() - 5.0) < 0.3


def test_categorical_impute_returns_integers_also_lazily():
    truth = _hand_set("categorical")
    X, _ = truth.sample(400, random_state=0)
    hm = CategoricalHMM(2, random_state=0).fit(X, [200, 200])
    Xm = X.copy()
    Xm[::7] = -1
    out = hm.impute(Xm, [200, 200])
    assert out.dtype == np.int64 and np.all(out[Xm >= 0] == Xm[Xm >= 0]) and out.min() >= 0
    Xf = Xm.astype(float)
    Xf[Xf < 0] = np.nan  # NaN marks missing symbols too: the result is the same integers
    np.testing.assert_array_equal(hm.impute(Xf, [200, 200]), out)
    assert hm.impute(Xf, [200, 200]).dtype == np.int64
    draws = hm.sample_imputations(Xm, [200, 200], 3, random_state=0)
    seen = Xm[:, 0] >= 0
    assert draws.dtype == np.int64 and np.all(draws[:, seen, 0] == Xm[seen, 0])
    # Gaussian imputations stay floats
    g = GaussianHMM(2, random_state=0, max_iter=3).fit(np.random.default_rng(0).normal(
        size=(50, 2)))
    Y = np.random.default_rng(1).normal(size=(10, 2))
    Y[3, 1] = np.nan
    assert g.impute(Y).dtype == np.float64
    da = pytest.importorskip("dask.array")
    lazy = hm.impute(da.from_array(Xm, chunks=(200, 1)), [200, 200])
    assert lazy.dtype == np.int64  # declared up front as computed
    got = lazy.compute(scheduler="sync")
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, out)
