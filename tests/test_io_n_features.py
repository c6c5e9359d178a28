"""Loading checks a file's n_features_in_ against the shapes of its parameters.

The check reads the number of features from ``params_`` (``EMModel.n_features_of``):
no data are scored at load time, and a file claiming fewer features than its
parameters have is refused as well (scoring a row of zeros broadcast against them and
let such a file through, to give wrong numbers later).
"""

import json
import warnings

import emframe.models
import numpy as np
import pytest
from custom_models import PoissonMixture, PoissonMixtureEstimator, PoissonParams, poisson_data
from emframe.models import (
    GMMHMM,
    AutoRegressiveHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussian,
    MissingDataGaussianMixture,
    MultinomialHMM,
    PoissonHMM,
    StudentTMixture,
)

import emframe

_rng = np.random.default_rng(0)
_REAL = _rng.normal(size=(40, 3))
_COUNTS = _rng.poisson(3.0, size=(40, 3)).astype(float)
_SYMBOLS = _rng.integers(0, 4, size=(40, 1)).astype(float)

# one small fit of every shipped estimator (and the noise-component variants)
CASES = {
    "GaussianMixture": (lambda: GaussianMixture(2, random_state=0), _REAL),
    "GaussianMixture-noise": (lambda: GaussianMixture(2, noise=True, random_state=0), _REAL),
    "StudentTMixture": (lambda: StudentTMixture(2, random_state=0), _REAL),
    "StudentTMixture-noise": (lambda: StudentTMixture(2, noise=True, random_state=0), _REAL),
    "BernoulliMixture": (lambda: BernoulliMixture(2, random_state=0), (_REAL > 0) * 1.0),
    "MissingDataGaussian": (lambda: MissingDataGaussian(), _REAL),
    "MissingDataGaussianMixture": (lambda: MissingDataGaussianMixture(2, random_state=0),
                                   _REAL),
    "GaussianHMM": (lambda: GaussianHMM(2, random_state=0), _REAL),
    "GMMHMM": (lambda: GMMHMM(2, 2, random_state=0), _REAL),
    "PoissonHMM": (lambda: PoissonHMM(2, random_state=0), _COUNTS),
    "MultinomialHMM": (lambda: MultinomialHMM(2, random_state=0), _COUNTS),
    "CategoricalHMM": (lambda: CategoricalHMM(2, random_state=0), _SYMBOLS),
    "AutoRegressiveHMM": (lambda: AutoRegressiveHMM(2, order=2, random_state=0), _REAL),
    "LinearGaussianSSM": (lambda: LinearGaussianSSM(2), _REAL),
}


def test_the_message_names_both_numbers(saved, tmp_path):
    _, path, _ = saved["GaussianHMM"]
    with pytest.raises(ValueError, match=r"n_features_in_ = 2 does not match params_, which "
                                         r"are for 3 features"):
        emframe.load(_with_n_features(path, tmp_path / "bad.npz", 2))


def test_every_shipped_estimator_is_covered():
    shipped = {name for name in emframe.models.__all__ if name != "HMM"}
    assert shipped <= {case.split("-")[0] for case in CASES}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    out = {}
    folder = tmp_path_factory.mktemp("models")
    for name, (make, X) in CASES.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = make().set_params(max_iter=3).fit(X)
        out[name] = (est, est.save(folder / f"{name}.npz"), X)
    return out


def _with_n_features(src, dst, d):
    with np.load(src, allow_pickle=False) as npz:
        entries = dict(npz)
    meta = json.loads(entries["__emframe__"].tobytes().decode("utf-8"))
    meta["fitted"]["n_features_in_"] = d
    entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(dst, "wb") as fh:
        np.savez(fh, **entries)
    return dst


@pytest.mark.parametrize("name", list(CASES))
def test_the_model_reads_the_number_of_features_from_its_parameters(name, saved):
    est, _, X = saved[name]
    assert est._model.n_features_of(est.params_) == est.n_features_in_ == X.shape[1]


@pytest.mark.parametrize("name", list(CASES))
def test_a_wrong_n_features_in_is_refused(name, saved, tmp_path):
    est, path, _ = saved[name]
    d = est.n_features_in_
    for wrong in {d + 1, d - 1} - {0}:
        bad = _with_n_features(path, tmp_path / "bad.npz", wrong)
        # (a model whose check_params already compares shapes may say it first)
        with pytest.raises(ValueError, match="the saved parameters do not fit"):
            emframe.load(bad)
    assert emframe.load(path).n_features_in_ == d


@pytest.mark.parametrize("name", list(CASES))
def test_loading_scores_no_data(name, saved, monkeypatch):
    est, path, X = saved[name]
    cls = type(est)

    def refuse(*args, **kwargs):
        raise AssertionError("load scored data")

    for method in ("log_likelihood", "score", "score_samples", "_check_X"):
        if hasattr(cls, method):
            monkeypatch.setattr(cls, method, refuse)
    loaded = emframe.load(path)
    monkeypatch.undo()
    assert loaded.log_likelihood(X) == est.log_likelihood(X)


class DeclaredPoissonMixture(PoissonMixture):
    """A custom model that says how many features its parameters are for (one column)."""

    def n_features_of(self, params):
        return 1


class DeclaredEstimator(PoissonMixtureEstimator):
    def _build_model(self, X):
        return DeclaredPoissonMixture(self.n_components)


def test_custom_models_are_checked_when_they_declare_their_features(tmp_path):
    X = poisson_data()
    classes = [DeclaredEstimator, PoissonMixtureEstimator, PoissonParams]
    declared = DeclaredEstimator(2, random_state=0).fit(X).save(tmp_path / "d.npz")
    bad = _with_n_features(declared, tmp_path / "bad.npz", 2)
    with pytest.raises(ValueError, match="n_features_in_ = 2 does not match params_"):
        emframe.load(bad, classes=classes)
    # the default n_features_of is None: a model whose parameters do not fix the
    # number of features (this one reads the first column only) is not refused
    plain = PoissonMixtureEstimator(2, random_state=0).fit(X).save(tmp_path / "p.npz")
    assert PoissonMixture(2).n_features_of(None) is None
    assert emframe.load(_with_n_features(plain, tmp_path / "p2.npz", 2),
                        classes=classes).n_features_in_ == 2
