"""Saving and loading estimators: exact round trips, no pickle, clear errors on bad files."""

import io
import json
import os
import sys
import warnings
import zipfile

import numpy as np
import pytest
from custom_models import PoissonMixtureEstimator, PoissonParams, poisson_data
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import emframe
from emframe.exceptions import NotFittedError
from emframe.interfaces import io as emio


class PoissonWithInit(PoissonMixtureEstimator):
    """Adds array-valued and free-form constructor arguments, as real models have."""

    def __init__(self, n_components=2, *, rates_init=None, extra=None, random_state=None,
                 max_iter=100, tol=1e-3):
        super().__init__(n_components, random_state=random_state, max_iter=max_iter, tol=tol)
        self.rates_init = rates_init
        self.extra = extra


CUSTOM = [PoissonMixtureEstimator, PoissonWithInit, PoissonParams]


@pytest.fixture(scope="module")
def X():
    return poisson_data()


@pytest.fixture(scope="module")
def fitted(X):
    return PoissonMixtureEstimator(2, random_state=0, tol=1e-8, max_iter=200).fit(X)


def _metadata(path):
    with np.load(path, allow_pickle=False) as npz:
        return json.loads(npz["__emframe__"].tobytes().decode("utf-8")), dict(npz)


def _write_npz(path, entries):
    with open(path, "wb") as fh:
        np.savez(fh, **entries)


def _rewrite_meta(src, dst, change):
    meta, entries = _metadata(src)
    change(meta)
    entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _write_npz(dst, entries)


# -- round trips ---------------------------------------------------------------------------
def test_round_trip_predictions_and_scores_identical(fitted, X, tmp_path):
    path = fitted.save(tmp_path / "m.npz")
    assert path == tmp_path / "m.npz"
    loaded = emframe.load(path, classes=CUSTOM)
    assert type(loaded) is PoissonMixtureEstimator
    assert loaded.get_params() == fitted.get_params()
    np.testing.assert_array_equal(loaded.predict(X), fitted.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_array_equal(loaded.score_samples(X), fitted.score_samples(X))
    assert loaded.score(X) == fitted.score(X)
    assert loaded.bic(X) == fitted.bic(X)
    assert loaded.params_.allclose(fitted.params_, rtol=0)
    np.testing.assert_array_equal(loaded.loglik_history_, fitted.loglik_history_)
    assert (loaded.converged_, loaded.n_iter_, loaded.n_features_in_) == (
        fitted.converged_, fitted.n_iter_, fitted.n_features_in_)
    assert loaded.lower_bound_ == fitted.lower_bound_
    np.testing.assert_array_equal(loaded.rates_, fitted.rates_)
    # restored parameters stay immutable, as after fit
    assert not loaded.params_.rates.flags.writeable


def test_loaded_estimator_can_refit_and_warm_start(fitted, X, tmp_path):
    loaded = emframe.load(fitted.save(tmp_path / "m.npz"), classes=CUSTOM)
    loaded.set_params(warm_start=True, max_iter=3)
    loaded.fit(X)
    assert loaded.loglik_history_[0] == pytest.approx(fitted.loglik_history_[-1], rel=1e-12)


def test_array_constructor_params_round_trip(X, tmp_path):
    init = np.array([1.5, 9.0])
    est = PoissonWithInit(rates_init=init, extra={"a": (1, 2.5), "b": [np.float32(3), "s"],
                                                  "nan": float("nan"), "inf": -np.inf})
    est.fit(X)
    loaded = emframe.load(est.save(tmp_path / "m.npz"), classes=CUSTOM)
    np.testing.assert_array_equal(loaded.rates_init, init)
    assert loaded.rates_init.dtype == init.dtype
    extra = loaded.extra
    assert extra["a"] == (1, 2.5) and isinstance(extra["a"], tuple)
    assert isinstance(extra["b"][0], np.float32) and extra["b"] == [3.0, "s"]
    assert np.isnan(extra["nan"]) and extra["inf"] == -np.inf
    # the file is portable JSON: no NaN tokens
    meta, _ = _metadata(tmp_path / "m.npz")
    json.dumps(meta, allow_nan=False)


def test_unfitted_estimator_round_trip(tmp_path):
    est = PoissonWithInit(3, rates_init=np.arange(3.0) + 1)
    loaded = emframe.load(est.save(tmp_path / "u.npz"), classes=CUSTOM)
    assert loaded.n_components == 3
    np.testing.assert_array_equal(loaded.rates_init, [1.0, 2.0, 3.0])
    with pytest.raises(NotFittedError):
        loaded.predict(np.ones((2, 1)))


def test_metadata_is_stored_and_readable(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.npz", metadata={"columns": ["count"]})
    meta = emio.read_metadata(path)
    assert meta["format"] == "emframe-model"
    assert meta["format_version"] == emio.FORMAT_VERSION
    assert meta["emframe_version"] == emframe.__version__
    assert meta["class"] == "PoissonMixtureEstimator"
    assert meta["metadata"] == {"columns": ["count"]}
    with pytest.raises(TypeError, match="JSON-serialisable"):
        fitted.save(tmp_path / "bad.npz", metadata={"x": object()})


def test_generator_random_state_saved_as_none_with_warning(X, tmp_path):
    est = PoissonMixtureEstimator(random_state=np.random.default_rng(0)).fit(X)
    with pytest.warns(UserWarning, match="random_state"):
        path = est.save(tmp_path / "g.npz")
    assert emframe.load(path, classes=CUSTOM).random_state is None


@settings(max_examples=40, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.text(max_size=5)
        | st.floats(allow_nan=True, allow_infinity=True)
        | hnp.arrays(
            hnp.scalar_dtypes().filter(lambda d: d.kind in "biufcUS"),
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3),
        ),
        lambda children: st.lists(children, max_size=3)
        | st.tuples(children, children)
        | st.dictionaries(st.text(max_size=4), children, max_size=3),
        max_leaves=8,
    )
)
def test_any_supported_value_round_trips_exactly(value):
    buf_dir = _TMP
    path = os.path.join(buf_dir, "h.npz")
    PoissonWithInit(extra=value).save(path)
    _assert_identical(emframe.load(path, classes=CUSTOM).extra, value)


_TMP = None


@pytest.fixture(autouse=True, scope="module")
def _module_tmp(tmp_path_factory):
    global _TMP
    _TMP = str(tmp_path_factory.mktemp("hyp"))


def _assert_identical(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(b, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_identical(x, y)
    elif isinstance(b, dict):
        assert list(a) == list(b)
        for k in b:
            _assert_identical(a[k], b[k])
    elif isinstance(b, float) and np.isnan(b):
        assert np.isnan(a)
    else:
        assert a == b


# -- safe writing ----------------------------------------------------------------------------
def test_unsaveable_param_raises_and_leaves_existing_file(fitted, X, tmp_path):
    path = fitted.save(tmp_path / "m.npz")
    before = path.read_bytes()
    est = PoissonWithInit(extra=lambda x: x).fit(X)
    with pytest.raises(TypeError, match=r"constructor parameter 'extra'.*function"):
        est.save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]  # no temp file left


def test_object_array_param_is_refused(tmp_path):
    with pytest.raises(TypeError, match="object arrays need pickle"):
        PoissonWithInit(extra=np.array([{}, 1], dtype=object)).save(tmp_path / "o.npz")


def test_atomic_write_failure_keeps_old_content(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(RuntimeError), emio.atomic_write(target, "w") as fh:
        fh.write("partial")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    with emio.atomic_write(target, "w") as fh:
        fh.write("new")
    assert target.read_text() == "new"
    with pytest.raises(FileNotFoundError, match="does not exist"), emio.atomic_write(
            tmp_path / "nodir" / "x.csv"):
        pass


def test_save_rejects_non_estimators_and_local_classes(tmp_path):
    with pytest.raises(TypeError, match="only EMEstimator"):
        emio.save(object(), tmp_path / "x.npz")

    class Local(PoissonMixtureEstimator):
        pass

    with pytest.raises(TypeError, match="module level"):
        Local().save(tmp_path / "x.npz")


# -- bad files -------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such model file"):
        emframe.load(tmp_path / "nope.npz")


def test_random_bytes_and_truncated_files(fitted, tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"this is not a model" * 10)
    with pytest.raises(ValueError, match="not an emframe model file"):
        emframe.load(junk)
    good = fitted.save(tmp_path / "m.npz").read_bytes()
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        emframe.load(cut, classes=CUSTOM)


def test_corrupted_array_entry(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.startswith("a"):
                data = data[:20]  # a truncated .npy header
            zout.writestr(item, data)
    with pytest.raises(ValueError, match="bad.npz"):
        emframe.load(bad, classes=CUSTOM)


def test_foreign_npz_and_npy(tmp_path):
    plain = tmp_path / "plain.npz"
    _write_npz(plain, {"x": np.arange(3)})
    with pytest.raises(ValueError, match="no '__emframe__' metadata"):
        emframe.load(plain)
    npy = tmp_path / "a.npy"
    np.save(npy, np.arange(3))
    with pytest.raises(ValueError, match="single .npy array"):
        emframe.load(npy)
    other = tmp_path / "other.npz"
    _write_npz(other, {"__emframe__": np.frombuffer(b'{"format": "x"}', dtype=np.uint8)})
    with pytest.raises(ValueError, match="not an emframe model file"):
        emframe.load(other)
    garbled = tmp_path / "garbled.npz"
    _write_npz(garbled, {"__emframe__": np.frombuffer(b"{not json", dtype=np.uint8)})
    with pytest.raises(ValueError, match="unreadable metadata"):
        emframe.load(garbled)


def test_pickled_entry_is_never_unpickled(tmp_path):
    src = PoissonWithInit().save(tmp_path / "m.npz")
    meta, entries = _metadata(src)
    meta["params"]["extra"] = {"__ndarray__": "evil"}
    entries["evil"] = np.array([{"x": 1}], dtype=object)
    entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    bad = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, **entries)  # savez pickles the object array
    bad.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="cannot read entry 'evil' safely"):
        emframe.load(bad, classes=CUSTOM)


def test_newer_format_version(fitted, tmp_path):
    bad = tmp_path / "new.npz"
    _rewrite_meta(fitted.save(tmp_path / "m.npz"), bad,
                  lambda m: m.update(format_version=emio.FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="upgrade emframe"):
        emframe.load(bad, classes=CUSTOM)
    _rewrite_meta(tmp_path / "m.npz", bad, lambda m: m.update(format_version="1"))
    with pytest.raises(ValueError, match="bad format_version"):
        emframe.load(bad, classes=CUSTOM)


@pytest.mark.parametrize(
    ("module", "cls", "match"),
    [
        ("os", "system", "outside emframe"),
        ("builtins", "eval", "outside emframe"),
        ("emframe.__main__", "main", "not a known EMEstimator"),
        ("emframe.core.params", "Params", "not a known EMEstimator"),
        ("emframe.core.estimator", "np", "not a known EMEstimator"),
        ("emframe;import os", "X", "invalid module name"),
        ("emframe.models", "os.system", "invalid class name"),
    ],
)
def test_file_cannot_name_arbitrary_classes(fitted, tmp_path, module, cls, match):
    had_main = "emframe.__main__" in sys.modules
    bad = tmp_path / "bad.npz"
    _rewrite_meta(fitted.save(tmp_path / "m.npz"), bad, lambda m: m.update(module=module,
                                                                           **{"class": cls}))
    with pytest.raises(ValueError, match=match):
        emframe.load(bad)
    # the file's module name is never imported
    assert ("emframe.__main__" in sys.modules) == had_main


def test_custom_class_needs_explicit_permission(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.npz")
    with pytest.raises(ValueError, match=r"classes=\[PoissonMixtureEstimator\]"):
        emframe.load(path)


def test_params_class_outside_emframe_is_refused(fitted, tmp_path):
    bad = tmp_path / "bad.npz"

    def change(meta):
        meta["fitted"]["params_"]["__params__"]["module"] = "collections"
        meta["fitted"]["params_"]["__params__"]["class"] = "OrderedDict"

    _rewrite_meta(fitted.save(tmp_path / "m.npz"), bad, change)
    with pytest.raises(ValueError, match="outside emframe"):
        emframe.load(bad, classes=[PoissonMixtureEstimator])


def test_unknown_constructor_param_and_bad_fitted_names(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    bad = tmp_path / "bad.npz"
    _rewrite_meta(src, bad, lambda m: m["params"].update(bogus=1))
    with pytest.raises(ValueError, match=r"\['bogus'\].*does not accept"):
        emframe.load(bad, classes=CUSTOM)
    _rewrite_meta(src, bad, lambda m: m["fitted"].update(predict=1))
    with pytest.raises(ValueError, match="bad fitted attribute name 'predict'"):
        emframe.load(bad, classes=CUSTOM)
    _rewrite_meta(src, bad, lambda m: m["fitted"].pop("params_"))
    with pytest.raises(ValueError, match="needs a 'params_' entry"):
        emframe.load(bad, classes=CUSTOM)
    _rewrite_meta(src, bad, lambda m: m["fitted"]["params_"]["__params__"]["fields"].pop("rates"))
    with pytest.raises(ValueError, match="has fields"):
        emframe.load(bad, classes=CUSTOM)
    _rewrite_meta(src, bad, lambda m: m["fitted"].update(n_iter_={"__weird__": 1}))
    with pytest.raises(ValueError, match="unknown metadata node"):
        emframe.load(bad, classes=CUSTOM)


def test_invalid_saved_parameters_are_rejected(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    meta, entries = _metadata(src)
    key = meta["fitted"]["params_"]["__params__"]["fields"]["rates"]["__ndarray__"]
    entries[key] = np.array([np.nan, 1.0])
    _write_npz(tmp_path / "nan.npz", entries)
    with pytest.raises(ValueError, match="do not fit PoissonMixtureEstimator.*non-finite"):
        emframe.load(tmp_path / "nan.npz", classes=CUSTOM)


def test_loading_does_not_warn(fitted, tmp_path):
    path = fitted.save(tmp_path / "m.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emframe.load(path, classes=CUSTOM)


# -- every shipped model ---------------------------------------------------------------------
def _faithful():
    from emframe.datasets import load_old_faithful

    return load_old_faithful()


def _digits_with_missing():
    from emframe.datasets import load_digits_binary

    X = load_digits_binary()[0][:300].copy()
    X[np.random.default_rng(0).uniform(size=X.shape) < 0.05] = np.nan
    return X


def _airquality():
    from emframe.datasets import load_airquality

    return load_airquality()[0][:, :4]


def _quakes():
    from emframe.datasets import load_earthquakes

    return load_earthquakes()[1][:, None].astype(float)


def _model(name):
    import emframe.models

    return getattr(emframe.models, name)


MIXTURE_CASES = {
    "gmm-full": lambda: (_model("GaussianMixture")(2, random_state=0), _faithful()),
    "gmm-tied-means-init": lambda: (
        _model("GaussianMixture")(2, covariance_type="tied", random_state=0,
                                  means_init=np.array([[2.0, 55.0], [4.5, 80.0]])),
        _faithful()),
    "gmm-diag": lambda: (_model("GaussianMixture")(3, covariance_type="diag", random_state=0),
                         _faithful()),
    "gmm-spherical": lambda: (
        _model("GaussianMixture")(2, covariance_type="spherical", random_state=0), _faithful()),
    "bernoulli": lambda: (_model("BernoulliMixture")(4, random_state=0, max_iter=30),
                          _digits_with_missing()),
    "gmm-missing": lambda: (_model("MissingDataGaussianMixture")(2, random_state=0),
                            _airquality()),
}


@pytest.mark.parametrize("case", list(MIXTURE_CASES))
def test_shipped_mixtures_round_trip(case, tmp_path):
    est, X = MIXTURE_CASES[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        est.fit(X)
    loaded = emframe.load(est.save(tmp_path / "m.npz"))
    assert type(loaded) is type(est)
    assert repr(loaded) == repr(est)
    for name, value in est.get_params().items():
        _assert_identical(getattr(loaded, name), value)
    assert loaded.params_.allclose(est.params_, rtol=0)
    for method in ("predict", "predict_proba", "score_samples"):
        np.testing.assert_array_equal(getattr(loaded, method)(X), getattr(est, method)(X))
    assert loaded.score(X) == est.score(X)
    assert loaded.bic(X) == est.bic(X) and loaded.aic(X) == est.aic(X)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "probs_"):
        if hasattr(est, name):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(est, name))
    np.testing.assert_array_equal(loaded.loglik_history_, est.loglik_history_)


def test_missing_data_gaussian_round_trip(tmp_path):
    X = _airquality()
    est = _model("MissingDataGaussian")(ridge=0.5).fit(X)
    loaded = emframe.load(est.save(tmp_path / "m.npz"))
    assert loaded.ridge == 0.5
    np.testing.assert_array_equal(loaded.mean_, est.mean_)
    np.testing.assert_array_equal(loaded.covariance_, est.covariance_)
    np.testing.assert_array_equal(loaded.score_samples(X), est.score_samples(X))
    np.testing.assert_array_equal(loaded.impute(X), est.impute(X))
    assert loaded.score(X) == est.score(X) and loaded.bic(X) == est.bic(X)


HMM_CASES = {
    "poisson": lambda: (_model("PoissonHMM")(3, random_state=0), _quakes(), None),
    "poisson-lengths": lambda: (_model("PoissonHMM")(2, random_state=1), _quakes(), [50, 57]),
    "categorical": lambda: (_model("CategoricalHMM")(2, random_state=0),
                           np.minimum(_quakes() // 10, 3), [60, 47]),
    "multinomial": lambda: (_model("MultinomialHMM")(2, random_state=0),
                            np.hstack([_quakes() % 3, _quakes() // 10]), [60, 47]),
    "poisson-prior": lambda: (_model("PoissonHMM")(2, lambdas_prior=[[1.0], [2.0]],
                                                   lambdas_weight=0.1, random_state=0),
                              _quakes(), None),
    "gaussian": lambda: (_model("GaussianHMM")(2, random_state=0), _faithful(), [100, 172]),
    "gmmhmm": lambda: (_model("GMMHMM")(2, n_mix=2, random_state=0), _faithful(), None),
}


@pytest.mark.parametrize("case", list(HMM_CASES))
def test_shipped_hmms_round_trip(case, tmp_path):
    est, X, lengths = HMM_CASES[case]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        est.fit(X, lengths)
    loaded = emframe.load(est.save(tmp_path / "m.npz"))
    assert type(loaded) is type(est) and repr(loaded) == repr(est)
    assert loaded.params_.allclose(est.params_, rtol=0)
    assert loaded.score(X, lengths) == est.score(X, lengths)
    np.testing.assert_array_equal(loaded.predict(X, lengths), est.predict(X, lengths))
    np.testing.assert_array_equal(loaded.predict_proba(X, lengths), est.predict_proba(X, lengths))
    lp, states = loaded.decode(X, lengths)
    lp0, states0 = est.decode(X, lengths)
    assert lp == lp0
    np.testing.assert_array_equal(states, states0)
    assert loaded.bic(X, lengths) == est.bic(X, lengths)
    for name in ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_"):
        if hasattr(type(est), name):
            np.testing.assert_array_equal(getattr(loaded, name), getattr(est, name))


# -- estimators that cannot rebuild their model without data --------------------------------
class NoRebuild(PoissonMixtureEstimator):
    def _rebuild_model(self):
        raise NotImplementedError


def test_model_outside_emframe_without_rebuild_cannot_be_saved(X, tmp_path):
    est = NoRebuild().fit(X)
    with pytest.raises(TypeError, match="must implement EMEstimator._rebuild_model"):
        est.save(tmp_path / "x.npz")
    assert list(tmp_path.iterdir()) == []


# -- bounded resources (issue 11, item 3) ----------------------------------------------------
def _npy_bytes(shape, dtype="<f8", payload=b""):
    """A .npy file whose header declares ``shape`` but which holds only ``payload``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def _with_entry(src, dst, key, raw, change=None):
    """Copy the model file ``src`` to ``dst`` with entry ``key`` replaced by raw .npy bytes."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == key + ".npy":
                data = raw
            if item.filename == "__emframe__.npy" and change is not None:
                meta = json.loads(np.load(io.BytesIO(data)).tobytes())
                change(meta)
                out = io.BytesIO()
                np.save(out, np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
                data = out.getvalue()
            zout.writestr(item.filename, data)
    return dst


def _peak_mb(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak / 1e6


def test_declared_shape_is_checked_against_the_file_before_allocating(tmp_path):
    src = PoissonWithInit(rates_init=np.array([1.0, 2.0])).save(tmp_path / "m.npz")
    meta, _ = _metadata(src)
    key = meta["params"]["rates_init"]["__ndarray__"]
    for shape in [(2**40,), (2**20, 2**20), (3,)]:
        bad = _with_entry(src, tmp_path / "bad.npz", key, _npy_bytes(shape, payload=b"\0" * 16))

        def attempt(bad=bad):
            with pytest.raises(ValueError, match=r"declares shape .* but the entry holds 16"):
                emframe.load(bad, classes=CUSTOM)

        assert _peak_mb(attempt) < 5
    bad = _with_entry(src, tmp_path / "bad.npz", key, _npy_bytes((2,), "|O", b"\0" * 16))
    with pytest.raises(ValueError, match="object array"):
        emframe.load(bad, classes=CUSTOM)


def test_an_entry_referenced_many_times_is_read_once(tmp_path):
    src = PoissonWithInit(extra=np.zeros(500_000)).save(tmp_path / "m.npz")  # 4 MB
    meta, entries = _metadata(src)
    meta["params"]["extra"] = [meta["params"]["extra"]] * 10
    entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    _write_npz(tmp_path / "ten.npz", entries)
    loaded = []
    peak = _peak_mb(lambda: loaded.append(emframe.load(tmp_path / "ten.npz", classes=CUSTOM)))
    extra = loaded[0].extra
    assert len(extra) == 10 and all(a is extra[0] for a in extra)
    assert not extra[0].flags.writeable  # shared, so read-only
    assert peak < 12  # one 4 MB array (and its bytes), not ten


def test_zip_directory_sizes_are_checked(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    # an entry compressed with a method emframe never writes
    bad = tmp_path / "bz.npz"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(bad, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item.filename, zin.read(item.filename), zipfile.ZIP_BZIP2)
    with pytest.raises(ValueError, match="unsupported compression"):
        emframe.load(bad, classes=CUSTOM)
    # deflated entries (np.savez_compressed) are read
    deflated = tmp_path / "deflated.npz"
    with np.load(src) as npz:
        np.savez_compressed(deflated, **dict(npz))
    assert emframe.load(deflated, classes=CUSTOM).params_.allclose(fitted.params_, rtol=0)
    # a directory declaring more stored bytes than an entry holds
    raw = bytearray(src.read_bytes())
    at = raw.index(b"PK\x01\x02")  # first central directory record: its uncompressed size
    raw[at + 24: at + 28] = (2**31).to_bytes(4, "little")
    (tmp_path / "size.npz").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="size.npz"):
        emframe.load(tmp_path / "size.npz", classes=CUSTOM)


def test_deep_json_nesting_is_a_clear_error(tmp_path):
    src = PoissonWithInit().save(tmp_path / "m.npz")
    deep = None
    for _ in range(600):
        deep = [deep]
    bad = tmp_path / "deep.npz"
    _rewrite_meta(src, bad, lambda m: m["params"].update(extra=deep))
    with pytest.raises(ValueError, match=r"nests 60\d levels deep, more than the 100"):
        emframe.load(bad, classes=CUSTOM)
    ok = None
    for _ in range(50):
        ok = [ok]
    assert emframe.load(PoissonWithInit(extra=ok).save(tmp_path / "ok.npz"),
                        classes=CUSTOM).extra == ok


def test_more_components_than_the_parameters_is_refused_before_allocating(tmp_path):
    from emframe.models import GaussianHMM

    X = np.random.default_rng(0).normal(size=(50, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", emframe.ConvergenceWarning)
        src = GaussianHMM(2, random_state=0, max_iter=2).fit(X).save(tmp_path / "h.npz")
    bad = tmp_path / "big.npz"
    _rewrite_meta(src, bad, lambda m: m["params"].update(n_components=20000))
    assert bad.stat().st_size < 4000

    def attempt():
        with pytest.raises(ValueError, match=r"n_components = 20000, but params_ has start"):
            emframe.load(bad)

    assert _peak_mb(attempt) < 20  # not the 3.6 GB of (20000, 20000) arrays


# -- what a file may create and restore (issue 11, item 9) -----------------------------------
@pytest.mark.parametrize(("module", "cls"), [("emframe.core.estimator", "EMEstimator"),
                                             ("emframe.core.mixture", "MixtureEstimator")])
def test_abstract_base_classes_are_refused(tmp_path, module, cls):
    src = PoissonWithInit().save(tmp_path / "m.npz")
    bad = tmp_path / "base.npz"
    _rewrite_meta(src, bad, lambda m: m.update(module=module, params={}, **{"class": cls}))
    with pytest.raises(ValueError, match="abstract base class"):
        emframe.load(bad)
    fitted_src = PoissonMixtureEstimator().fit(poisson_data()).save(tmp_path / "f.npz")
    _rewrite_meta(fitted_src, bad, lambda m: m.update(module=module, params={},
                                                      **{"class": cls}))
    with pytest.raises(ValueError, match="abstract base class"):
        emframe.load(bad, classes=CUSTOM)


def test_only_the_listed_classes_are_created(fitted, tmp_path):
    src = PoissonWithInit(extra=1).save(tmp_path / "m.npz")
    # defined in the same module as the listed class, but not listed
    assert ExtraAttribute.__module__ == PoissonWithInit.__module__
    with pytest.raises(ValueError, match=r"PoissonWithInit.*not one of "
                                         r"classes=\[ExtraAttribute\]"):
        emframe.load(src, classes=[ExtraAttribute])
    assert type(emframe.load(src, classes=[PoissonWithInit])) is PoissonWithInit
    src = fitted.save(tmp_path / "f.npz")  # its params_ is a custom_models.PoissonParams
    with pytest.raises(ValueError, match=r"PoissonParams.*classes=\[PoissonMixtureEstimator, "
                                         r"PoissonParams\]"):
        emframe.load(src, classes=[PoissonMixtureEstimator])
    loaded = emframe.load(src, classes=[PoissonMixtureEstimator, PoissonParams])
    assert loaded.params_.allclose(fitted.params_, rtol=0)


def test_fitted_keys_must_be_attributes_of_the_class(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    bad = tmp_path / "bad.npz"
    _rewrite_meta(src, bad, lambda m: m["fitted"].update(bogus_=1))
    with pytest.raises(ValueError, match="PoissonMixtureEstimator has no fitted attribute "
                                         "'bogus_'"):
        emframe.load(bad, classes=CUSTOM)
    for key, value in [("n_iter_", "3"), ("converged_", 1), ("n_features_in_", 0),
                       ("lower_bound_", [1.0])]:
        _rewrite_meta(src, bad, lambda m, key=key, value=value: m["fitted"].update(
            {key: value}))
        with pytest.raises(ValueError, match=f"{key} must be"):
            emframe.load(bad, classes=CUSTOM)
    # saving refuses what loading would refuse, unless the class lists it
    est = PoissonMixtureEstimator().fit(poisson_data())
    est.extra_ = 1
    with pytest.raises(TypeError, match=r"\['extra_'\].*_saved_attributes"):
        est.save(tmp_path / "x.npz")
    est = ExtraAttribute().fit(poisson_data())
    est.extra_ = np.arange(3.0)
    loaded = emframe.load(est.save(tmp_path / "x.npz"), classes=[ExtraAttribute, PoissonParams])
    np.testing.assert_array_equal(loaded.extra_, [0.0, 1.0, 2.0])


class ExtraAttribute(PoissonMixtureEstimator):
    _saved_attributes = ("extra_",)


def test_fitted_arrays_must_agree_with_params(fitted, tmp_path):
    src = fitted.save(tmp_path / "m.npz")
    meta, entries = _metadata(src)
    key = meta["fitted"]["rates_"]["__ndarray__"]
    rates = entries[key]
    entries[key] = rates * (1 + 1e-6)
    _write_npz(tmp_path / "bad.npz", entries)
    with pytest.raises(ValueError, match="'rates_' disagrees with params_"):
        emframe.load(tmp_path / "bad.npz", classes=CUSTOM)
    # rounding differences (another machine's BLAS) are not disagreements; the values
    # restored are the ones derived from params_
    entries[key] = rates * (1 + 4e-16)
    _write_npz(tmp_path / "ulp.npz", entries)
    loaded = emframe.load(tmp_path / "ulp.npz", classes=CUSTOM)
    np.testing.assert_array_equal(loaded.rates_, loaded.params_.rates)

    from emframe.models import GaussianMixture

    X = _faithful()
    src = GaussianMixture(2, random_state=0).fit(X).save(tmp_path / "g.npz")
    meta, entries = _metadata(src)
    key = meta["fitted"]["means_"]["__ndarray__"]
    entries[key] = entries[key][::-1].copy()
    _write_npz(tmp_path / "g_bad.npz", entries)
    with pytest.raises(ValueError, match="'means_' disagrees with params_"):
        emframe.load(tmp_path / "g_bad.npz")
    _rewrite_meta(src, tmp_path / "g_d.npz", lambda m: m["fitted"].update(n_features_in_=3))
    with pytest.raises(ValueError, match="n_features_in_ = 3 does not match params_"):
        emframe.load(tmp_path / "g_d.npz")
    _rewrite_meta(src, tmp_path / "g_d.npz", lambda m: m["fitted"].update(n_features_in_=10**9))
    with pytest.raises(ValueError, match="n_features_in_ = 1000000000, but params_ holds only"):
        emframe.load(tmp_path / "g_d.npz")


def test_loaded_arrays_are_read_only(fitted, tmp_path):
    from emframe.models import GaussianMixture

    X = _faithful()
    gm = GaussianMixture(2, random_state=0, means_init=np.array([[2.0, 55.0], [4.5, 80.0]]))
    for est, classes in [(gm.fit(X), ()), (fitted, CUSTOM)]:
        loaded = emframe.load(est.save(tmp_path / "m.npz"), classes=classes)
        arrays = {k: v for k, v in vars(loaded).items()
                  if k.endswith("_") and isinstance(v, np.ndarray)}
        assert "loglik_history_" in arrays and len(arrays) >= 3
        for name, arr in arrays.items():
            assert not arr.flags.writeable, name
            with pytest.raises(ValueError, match="read-only"):
                arr[...] = 0
    assert not loaded.rates_.flags.writeable
