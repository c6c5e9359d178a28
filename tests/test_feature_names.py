"""``feature_names_in_`` and the column-name checks of scikit-learn, for every estimator family.

A DataFrame's string column names are recorded by ``fit``; every later call that
validates X (predict, score, decode, impute, filter, forecast, partial_fit, ...)
raises when the names differ in content or order, and warns when only one side has
names. A new-user trial scored ``df[['waiting', 'eruptions']]`` with the columns
swapped without a word.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
from emframe.models import (
    AutoRegressiveHMM,
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

import emframe
from emframe.datasets import load_old_faithful

pd = pytest.importorskip("pandas")
pytestmark = pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
_G = np.vstack([rng.normal(0, 1, (40, 3)), rng.normal(4, 1, (40, 3))])
_B = (rng.random((80, 3)) < 0.5).astype(float)
_M = np.where(rng.random(_G.shape) < 0.1, np.nan, _G)
_P = rng.poisson(3.0, (80, 3)).astype(float)
_C = rng.integers(0, 3, (80, 1))

CASES = {
    "GaussianMixture": (lambda: GaussianMixture(2, random_state=0), _G),
    "GaussianMixture+noise": (lambda: GaussianMixture(2, noise=True, random_state=0), _G),
    "StudentTMixture": (lambda: StudentTMixture(2, random_state=0, max_iter=20), _G),
    "BernoulliMixture": (lambda: BernoulliMixture(2, random_state=0), _B),
    "MissingDataGaussian": (lambda: MissingDataGaussian(), _M),
    "MissingDataGaussianMixture": (lambda: MissingDataGaussianMixture(2, random_state=0), _M),
    "GaussianHMM": (lambda: GaussianHMM(2, random_state=0, max_iter=10), _M),
    "AutoRegressiveHMM": (lambda: AutoRegressiveHMM(2, random_state=0, max_iter=5), _G),
    "PoissonHMM": (lambda: PoissonHMM(2, random_state=0, max_iter=10), _P),
    "CategoricalHMM": (lambda: CategoricalHMM(2, random_state=0, max_iter=10), _C),
    "LinearGaussianSSM": (lambda: LinearGaussianSSM(1, random_state=0, max_iter=5), _M),
}

#: Every method that takes X after fit (those an estimator has), called with X alone.
_METHODS = {
    name: (lambda est, X, name=name: getattr(est, name)(X))
    for name in ("predict", "predict_proba", "score", "score_samples", "score_sequences",
                 "log_likelihood", "bic", "aic", "decode", "transform", "impute",
                 "filter", "smooth", "outlier_scores")
}
_METHODS["forecast"] = lambda est, X: est.forecast(X, 2)
# continuing the fit (a sequence estimator's partial_fit after fit otherwise starts afresh)
_METHODS["partial_fit"] = lambda est, X: est.set_params(warm_start=True).partial_fit(X)
_METHODS["fit(warm_start)"] = lambda est, X: est.set_params(warm_start=True).fit(X)


def _frame(X, names=None):
    names = [f"f{i}" for i in range(X.shape[1])] if names is None else names
    return pd.DataFrame(X, columns=names)


def _methods(est):
    return [(name, call) for name, call in _METHODS.items()
            if hasattr(est, name.split("(")[0])]


@pytest.fixture(scope="module", params=list(CASES))
def fitted(request):
    make, X = CASES[request.param]
    return make().fit(_frame(X)), X


def test_fit_on_a_dataframe_records_the_names(fitted):
    est, X = fitted
    names = est.feature_names_in_
    assert isinstance(names, np.ndarray) and names.dtype == object
    assert list(names) == [f"f{i}" for i in range(X.shape[1])]
    assert len(names) == est.n_features_in_


def test_same_names_pass_silently_and_equal_the_array_results(fitted):
    est, X = fitted
    for _name, call in _methods(est):
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*feature names", category=UserWarning)
            call(copy.deepcopy(est), _frame(X))


def test_reordered_or_renamed_columns_raise_in_every_method(fitted):
    est, X = fitted
    names = [f"f{i}" for i in range(X.shape[1])]
    bad = [(["g0", *names[1:]], "Feature names unseen at fit time:\n- g0\n")]
    if len(names) > 1:
        bad.append((names[::-1], "Feature names must be in the same order as they were in fit"))
        bad.append((names[:-1], f"seen at fit time, yet now missing:\n- {names[-1]}\n"))
    for columns, why in bad:
        frame = _frame(X[:, : len(columns)], columns)
        for name, call in _methods(est):
            copied = copy.deepcopy(est)
            with pytest.raises(ValueError, match="should match those that were passed during "
                               "fit") as info:
                call(copied, frame)
            assert why in str(info.value), name


def test_an_array_after_a_dataframe_fit_warns(fitted):
    est, X = fitted
    for _name, call in _methods(est):
        with pytest.warns(UserWarning, match=f"X does not have valid feature names, but "
                          f"{type(est).__name__} was fitted with feature names"):
            call(copy.deepcopy(est), X)


@pytest.mark.parametrize("name", list(CASES))
def test_a_dataframe_after_an_array_fit_warns_and_refit_forgets_names(name):
    make, X = CASES[name]
    est = make().fit(_frame(X))
    est.fit(X)
    assert not hasattr(est, "feature_names_in_")
    with pytest.warns(UserWarning, match=f"X has feature names, but {type(est).__name__} was "
                      "fitted without feature names"):
        est.score(_frame(X))


@pytest.mark.parametrize("name", ["GaussianMixture", "BernoulliMixture", "GaussianHMM",
                                  "LinearGaussianSSM"])
def test_first_partial_fit_records_names_and_later_batches_are_checked(name):
    make, X = CASES[name]
    est = make().partial_fit(_frame(X[:40]))
    assert list(est.feature_names_in_) == [f"f{i}" for i in range(X.shape[1])]
    before = dict(vars(est))
    with pytest.raises(ValueError, match="same order"):
        est.partial_fit(_frame(X[40:], [f"f{i}" for i in range(X.shape[1])][::-1]))
    assert vars(est).keys() == before.keys() and all(vars(est)[k] is v for k, v in before.items())


def test_the_new_user_trial_old_faithful_swapped_columns():
    df = pd.DataFrame(load_old_faithful(), columns=["eruptions", "waiting"])
    g = GaussianMixture(2, random_state=0).fit(df)
    assert list(g.feature_names_in_) == ["eruptions", "waiting"]
    with pytest.raises(ValueError, match=r"same order(.|\n)*X\[estimator.feature_names_in_\]"):
        g.predict(df[["waiting", "eruptions"]])
    np.testing.assert_array_equal(g.predict(df[list(g.feature_names_in_)]), g.predict(df))


def test_integer_column_labels_are_not_names_and_mixed_types_are_refused():
    est = GaussianMixture(2, random_state=0).fit(pd.DataFrame(_G))  # columns 0, 1, 2
    assert not hasattr(est, "feature_names_in_")
    est.score(pd.DataFrame(_G))  # no names on either side: silent
    with pytest.raises(TypeError, match="only supported if all input features have string"):
        GaussianMixture(2).fit(pd.DataFrame(_G, columns=["a", 1, "c"]))


def test_float32_arrays_take_the_same_checks():
    # GaussianMixture keeps float32 arrays float32, by its own validation path
    est = GaussianMixture(2, random_state=0).fit(_frame(_G))
    with pytest.warns(UserWarning, match="X does not have valid feature names"):
        est.predict(_G.astype(np.float32))
    est.fit(_G.astype(np.float32))
    assert est.means_.dtype == np.float32 and not hasattr(est, "feature_names_in_")


@pytest.mark.parametrize("name", ["GaussianMixture", "BernoulliMixture", "GaussianHMM",
                                  "LinearGaussianSSM"])
def test_save_and_load_keep_the_names(name, tmp_path):
    make, X = CASES[name]
    est = make().fit(_frame(X))
    loaded = emframe.load(est.save(tmp_path / "m.npz"))
    assert loaded.feature_names_in_.dtype == object
    assert list(loaded.feature_names_in_) == list(est.feature_names_in_)
    with pytest.raises(ValueError, match="same order"):
        loaded.score(_frame(X, [f"f{i}" for i in range(X.shape[1])][::-1]))
    plain = emframe.load(make().fit(X).save(tmp_path / "plain.npz"))
    assert not hasattr(plain, "feature_names_in_")


@pytest.mark.parametrize("name", ["GaussianMixture", "GaussianHMM", "LinearGaussianSSM"])
def test_a_failed_fit_restores_the_names(name):
    make, X = CASES[name]

    def boom(info):
        raise KeyboardInterrupt

    est = make()
    with pytest.raises(KeyboardInterrupt):
        est.fit(_frame(X), callbacks=[boom])
    assert not hasattr(est, "feature_names_in_")
    est.fit(_frame(X))
    names = est.feature_names_in_
    for other in (X, _frame(X, ["x", "y", "z"])):
        with pytest.raises(KeyboardInterrupt):
            est.fit(other, callbacks=[boom])
        assert est.feature_names_in_ is names


@pytest.mark.parametrize("make", [lambda: GaussianMixture(2, random_state=0),
                                  lambda: GaussianHMM(2, random_state=0, max_iter=5),
                                  lambda: LinearGaussianSSM(1, random_state=0, max_iter=3)])
def test_dask_arrays_have_no_names(make):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    est = make().fit(_frame(_G))
    Xd = da.from_array(_G, chunks=(40, 3))
    with warnings.catch_warnings(), dask.config.set(scheduler="sync"):
        # the partitions are not checked (they have no names; neither has the Dask array)
        warnings.filterwarnings("error", message=".*feature names", category=UserWarning)
        assert est.score(Xd) == pytest.approx(est.score(_frame(_G)))
    est.fit(Xd, scheduler="sync")  # a fit on data without names forgets the old ones
    assert not hasattr(est, "feature_names_in_")
