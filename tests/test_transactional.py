"""A failed fit leaves the estimator as it was (issue 11, item 4), for every estimator family."""

import numpy as np
import pytest
from custom_models import PoissonMixtureEstimator, poisson_data
from emframe.models import (
    GMMHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussian,
    MissingDataGaussianMixture,
    PoissonHMM,
    StudentTMixture,
)

from emframe import MonotonicityError, NotFittedError

pytestmark = pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
_G2 = np.vstack([rng.normal(0, 1, (60, 2)), rng.normal(4, 1, (60, 2))])
_G3 = np.column_stack([_G2, rng.normal(size=120)])
_B2 = (rng.random((120, 2)) < 0.5).astype(float)
_B3 = (rng.random((120, 3)) < 0.5).astype(float)
_M2 = np.where(rng.random(_G2.shape) < 0.1, np.nan, _G2)
_M3 = np.where(rng.random(_G3.shape) < 0.1, np.nan, _G3)
_C1 = rng.integers(0, 3, (120, 1))
_C1b = rng.integers(0, 3, (90, 1))
_P1 = rng.poisson(3.0, (120, 1))
_P2 = rng.poisson(3.0, (120, 2))

# (estimator factory, first data, other data for the refit)
CASES = {
    "GaussianMixture": (lambda: GaussianMixture(2, random_state=0), _G2, _G3),
    "GaussianMixture+noise": (lambda: GaussianMixture(2, noise=True, random_state=0), _G2, _G3),
    "StudentTMixture": (lambda: StudentTMixture(2, random_state=0), _G2, _G3),
    "BernoulliMixture": (lambda: BernoulliMixture(2, random_state=0), _B2, _B3),
    "MissingDataGaussian": (lambda: MissingDataGaussian(), _M2, _M3),
    "MissingDataGaussianMixture": (
        lambda: MissingDataGaussianMixture(2, random_state=0), _M2, _M3),
    "GaussianHMM": (lambda: GaussianHMM(2, random_state=0), _G2, _G3),
    "GMMHMM": (lambda: GMMHMM(2, 2, random_state=0), _G2, _G3),
    "CategoricalHMM": (lambda: CategoricalHMM(2, random_state=0), _C1, _C1b),
    "PoissonHMM": (lambda: PoissonHMM(2, random_state=0), _P1, _P2),
    "LinearGaussianSSM": (lambda: LinearGaussianSSM(1, random_state=0, max_iter=20), _G2, _G3),
    "custom": (lambda: PoissonMixtureEstimator(2, random_state=0), poisson_data(), None),
}


class Boom(Exception):
    pass


def _raise_at(iteration, exc):
    def callback(info):
        if info.iteration >= iteration:
            raise exc
    return callback


def _state(est):
    return dict(vars(est))


def _assert_same_state(est, before):
    after = _state(est)
    assert after.keys() == before.keys()
    for k, v in before.items():
        assert after[k] is v, f"attribute {k} changed"


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("exc", [Boom("callback failed"), KeyboardInterrupt()])
def test_failed_first_fit_leaves_the_estimator_unfitted(name, exc):
    make, X, _ = CASES[name]
    est = make()
    before = _state(est)
    with pytest.raises(type(exc)):
        est.fit(X, callbacks=[_raise_at(2, exc)])
    _assert_same_state(est, before)
    assert not hasattr(est, "n_features_in_") and not hasattr(est, "params_")
    with pytest.raises(NotFittedError):
        est.score(X)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("exc", [Boom("callback failed"), KeyboardInterrupt()])
def test_failed_refit_keeps_the_previous_fit(name, exc):
    make, X, other = CASES[name]
    est = make().fit(X)
    score = est.score(X)
    before = _state(est)
    with pytest.raises(type(exc)):
        est.fit(X if other is None else other, callbacks=[_raise_at(1, exc)])
    _assert_same_state(est, before)
    assert est.score(X) == score


@pytest.mark.parametrize("name", ["GaussianMixture", "GaussianHMM", "custom"])
def test_any_error_in_a_refit_keeps_the_previous_fit(name):
    make, X, _ = CASES[name]
    est = make().fit(X)
    before = _state(est)
    with pytest.raises(ValueError):
        est.fit(np.vstack([X, np.full((1, X.shape[1]), np.inf)]))
    _assert_same_state(est, before)
    est.set_params(warm_start=True)
    if name != "custom":
        with pytest.raises(ValueError, match="warm_start=True continues the previous fit"):
            est.fit(CASES[name][2])
        _assert_same_state(est, {**before, "warm_start": True})


def test_strict_monotonicity_error_keeps_the_previous_fit():
    class Broken(PoissonMixtureEstimator):
        def _build_model(self, X):
            model = super()._build_model(X)
            m_step = model.m_step
            model.m_step = lambda stats: m_step(stats).replace(rates=m_step(stats).rates * 0.5)
            return model

    X = poisson_data()
    est = Broken(2, random_state=0, strict=True)
    with pytest.raises(MonotonicityError):
        est.fit(X)
    assert not hasattr(est, "n_features_in_")


def test_failed_partial_fit_keeps_the_online_state():
    est = PoissonMixtureEstimator(2, random_state=0)
    X = poisson_data()
    est.partial_fit(X[:100])
    before = _state(est)
    with pytest.raises(ValueError, match="contains NaN"):
        est.partial_fit(np.vstack([X[100:200], [[np.nan]]]))
    _assert_same_state(est, before)
    hmm = GaussianHMM(2, random_state=0).partial_fit(_G2[:60])
    before = _state(hmm)
    with pytest.raises(ValueError):
        hmm.partial_fit(_G3)
    _assert_same_state(hmm, before)


def test_a_mixin_fit_is_transactional_too():
    class Tagging:
        def fit(self, X, **kw):
            self.tag_ = "fitting"
            return super().fit(X, **kw)

    class Tagged(Tagging, PoissonMixtureEstimator):
        pass

    est = Tagged(2, random_state=0)
    with pytest.raises(Boom):
        est.fit(poisson_data(), callbacks=[_raise_at(1, Boom())])
    assert not hasattr(est, "tag_") and not hasattr(est, "n_features_in_")
