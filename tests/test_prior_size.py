"""reg_covar's prior is attached to the training data's size: lambda = reg_covar * n / m.

So the MAP adds about reg_covar to the variances of balanced components, as in
scikit-learn and hmmlearn, whatever the amount of data, while the penalised objective
stays fixed during a fit. n is the same number in every data layout, survives save/load,
and integer weights equal repeated rows.
"""

import json
import warnings

import numpy as np
import pytest
from emframe.models import (
    GMMHMM,
    AutoRegressiveHMM,
    GaussianHMM,
    GaussianMixture,
    MissingDataGaussianMixture,
    StudentTMixture,
)
from emframe.models.mixtures.gaussian import GaussianMixtureModel
from sklearn.mixture import GaussianMixture as SKGaussianMixture

import emframe
from emframe.core.data import DataSource
from emframe.core.engine import fit_em
from emframe.exceptions import ConvergenceWarning

TYPES = ["full", "tied", "diag", "spherical"]


def _quiet(est, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kw)


def _blobs(n=300, seed=0, d=2):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0, 0.0], [5.0, 1.0, 0.0], [1.0, 6.0, 2.0]])[:, :d]
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d))


def _celsius_fahrenheit(n, scale=1.0, seed=0):
    # two exactly collinear features, in two clusters
    rng = np.random.default_rng(seed)
    c = np.concatenate([rng.normal(0, 3, n // 2), rng.normal(20, 3, n - n // 2)]) * scale
    return np.column_stack([c, 1.8 * c + 32])


def _dense(cov, covariance_type, k, d):
    return {"full": lambda: cov[k], "tied": lambda: cov, "diag": lambda: np.diag(cov[k]),
            "spherical": lambda: cov[k] * np.eye(d)}[covariance_type]()


def _trace_of_inverses(covariances, covariance_type, K, d):
    """sum_j trace(inv(Sigma_j)) over the distinct matrices, from the fitted covariances."""
    ks = [0] if covariance_type == "tied" else range(K)
    return sum(np.trace(np.linalg.inv(_dense(covariances, covariance_type, k, d))) for k in ks)


# -- the collinear example: scikit-learn's defaults fit it, so do ours -----------------------


def test_collinear_features_fit_under_the_defaults_at_two_hundred_thousand_rows():
    # With lambda = reg_covar the prior added reg_covar / N_k = 1e-11 to the variances here,
    # below float64's resolution of the collinear direction: a "numerically singular" error
    # where scikit-learn's defaults fit. Attached to n, it adds about reg_covar = 1e-6.
    X = _celsius_fahrenheit(200_000)
    gm = GaussianMixture(2, random_state=0, strict=True).fit(X)
    assert gm.converged_ and gm.prior_size_ == 200_000
    assert np.all(np.diff(gm.loglik_history_) >= 0)
    sk = SKGaussianMixture(2, random_state=0).fit(X)
    order = np.argsort(gm.means_[:, 0])
    np.testing.assert_allclose(gm.means_[order], sk.means_[np.argsort(sk.means_[:, 0])],
                               rtol=1e-4, atol=1e-3)
    # the thin variance across the two features is of the order of reg_covar, as in sklearn
    thin = [np.linalg.eigvalsh(c)[0] for c in gm.covariances_]
    assert np.all((np.array(thin) > 1e-7) & (np.array(thin) < 1e-5)), thin


@pytest.mark.parametrize("make", [
    lambda: GaussianHMM(2, "full", random_state=0, strict=True),
    lambda: MissingDataGaussianMixture(2, random_state=0, strict=True),
    lambda: StudentTMixture(2, random_state=0, strict=True),
], ids=["gaussian-hmm", "missing-gmm", "student-t"])
def test_collinear_features_fit_under_the_defaults_in_every_gaussian_model(make):
    X = _celsius_fahrenheit(20_000, scale=10.0)  # fails with lambda = reg_covar
    est = _quiet(make(), X)
    assert np.all(np.diff(est.loglik_history_) >= 0)


# -- exact: the prior's strength, against independent formulas -------------------------------


@pytest.mark.parametrize("covariance_type", TYPES)
def test_tied_and_single_component_fits_equal_scikit_learns_with_reg_covar(covariance_type):
    # scikit-learn adds reg_covar to the variances after each M-step. With lambda =
    # reg_covar * n / m the MAP adds reg_covar * n / (m N_k): exactly reg_covar for one
    # component (N = n) and for a tied covariance (m = 1, divided by sum N_k = n), so
    # the iterates are scikit-learn's. A large reg_covar, so that any other strength shows.
    X = _blobs(seed=1)
    K = 1 if covariance_type != "tied" else 3
    sk = SKGaussianMixture(K, covariance_type=covariance_type, reg_covar=0.3, max_iter=1,
                           random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    init = {"weights_init": sk.weights_, "means_init": sk.means_,
            "precisions_init": sk.precisions_}
    ours = _quiet(GaussianMixture(K, covariance_type=covariance_type, reg_covar=0.3,
                                  max_iter=10, tol=0, **init), X)
    ref = SKGaussianMixture(K, covariance_type=covariance_type, reg_covar=0.3, max_iter=10,
                            tol=0, **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref.fit(X)
    np.testing.assert_allclose(ours.means_, ref.means_, rtol=1e-10)
    np.testing.assert_allclose(ours.covariances_, ref.covariances_, rtol=1e-10)


def _case(name, covariance_type):
    """(estimator, fit args, n, number of covariance matrices m)."""
    X = _blobs(240, seed=3)
    lengths = [80, 100, 60]
    tied = covariance_type == "tied"
    if name == "gmm":
        return GaussianMixture(3, covariance_type=covariance_type, random_state=0,
                               reg_covar=0.01), (X,), 240, 1 if tied else 3
    if name == "student-t":
        return StudentTMixture(3, covariance_type=covariance_type, random_state=0,
                               reg_covar=0.01), (X,), 240, 1 if tied else 3
    if name == "missing-gmm":
        Xm = X.copy()
        Xm[np.random.default_rng(0).random(X.shape) < 0.1] = np.nan
        return MissingDataGaussianMixture(3, covariance_type=covariance_type, random_state=0,
                                          reg_covar=0.01), (Xm,), 240, 1 if tied else 3
    if name == "gaussian-hmm":
        return GaussianHMM(3, covariance_type, random_state=0, reg_covar=0.01), (
            X, lengths), 240, 1 if tied else 3
    if name == "gmm-hmm":
        # tied: one matrix per state, shared by its mixture components
        return GMMHMM(3, 2, covariance_type, random_state=0, reg_covar=0.01), (
            X, lengths), 240, 3 if tied else 6
    # the first `order` = 1 step of each sequence is a lag, not a modelled step
    return AutoRegressiveHMM(3, 1, covariance_type, random_state=0, reg_covar=0.01), (
        X, lengths), 240 - 3, 1 if tied else 3


@pytest.mark.parametrize("covariance_type", TYPES)
@pytest.mark.parametrize("name", ["gmm", "student-t", "missing-gmm", "gaussian-hmm", "gmm-hmm",
                                  "ar-hmm"])
def test_log_prior_is_reg_covar_n_over_m_times_the_trace_of_the_inverses(name, covariance_type):
    est, args, n, m = _case(name, covariance_type)
    _quiet(est, *args)
    assert est.prior_size_ == n
    covars = est.covariances_ if hasattr(est, "covariances_") else est.covars_
    if name == "gmm-hmm":
        d = est.means_.shape[-1]
        trace = sum(_trace_of_inverses(c, covariance_type, 2, d) for c in covars)
    else:
        K, d = (est.means_ if hasattr(est, "means_") else est.intercepts_).shape
        trace = _trace_of_inverses(covars, covariance_type, K, d)
    model = est._model
    emission = getattr(model, "emission", None)
    log_prior = (model.gaussian if name == "student-t" else emission or model).log_prior(
        est.params_.emission if emission is not None else est.params_)
    np.testing.assert_allclose(log_prior, -0.5 * 0.01 * n / m * trace, rtol=1e-10)


def test_a_model_without_prior_size_has_the_unscaled_strength():
    # for direct fit_em users: prior_size=None means lambda = reg_covar itself
    X = _blobs(seed=4)
    plain = GaussianMixtureModel(3, "diag", reg_covar=0.5)
    sized = GaussianMixtureModel(3, "diag", reg_covar=0.5, prior_size=300)
    assert plain.prior_strength(3) == 0.5 and sized.prior_strength(3) == 0.5 * 300 / 3
    assert sized.with_prior_size(None).prior_strength(3) == 0.5
    assert plain.with_prior_size(30).prior_size == 30 and plain.prior_size is None
    a = fit_em(plain, X, random_state=0, max_iter=3, tol=0, warn_convergence=False)
    b = fit_em(GaussianMixtureModel(3, "diag", reg_covar=0.5 * 300 / 3), X, random_state=0,
               max_iter=3, tol=0, warn_convergence=False, init_params=a.params)
    c = fit_em(sized, X, random_state=0, max_iter=3, tol=0, warn_convergence=False,
               init_params=a.params)
    assert b.params.allclose(c.params, rtol=1e-12)
    for bad in (0, -1.0, np.inf, "300"):
        with pytest.raises((ValueError, TypeError), match="prior_size"):
            GaussianMixtureModel(3, prior_size=bad)


# -- n: the same number in every layout, from the relative weights ---------------------------


def _stream(X, n_chunks, opened):
    def stream():
        opened.append(1)
        return iter(np.array_split(X, n_chunks))
    return stream


def test_prior_size_is_the_same_whole_chunked_memmapped_listed_and_streamed(tmp_path):
    X = _blobs(500, seed=5)
    path = tmp_path / "x.npy"
    np.save(path, X)
    mm = np.load(path, mmap_mode="r")
    kw = {"covariance_type": "full", "random_state": 0, "max_iter": 20, "reg_covar": 0.05}
    fits = [_quiet(GaussianMixture(3, **kw), X),
            _quiet(GaussianMixture(3, **kw), X, chunk_size=77),
            _quiet(GaussianMixture(3, **kw), mm, chunk_size=130),
            _quiet(GaussianMixture(3, **kw), np.array_split(X, 6)),
            _quiet(GaussianMixture(3, **kw), _stream(X, 4, []))]
    for f in fits:
        assert f.prior_size_ == 500
        assert f.params_.allclose(fits[0].params_, rtol=1e-9, atol=1e-12)
    seqs = [_quiet(GaussianHMM(2, "full", random_state=0, max_iter=5, reg_covar=0.05),
                   X, [100, 150, 250], chunk_size=c) for c in (None, 120)]
    assert seqs[0].prior_size_ == seqs[1].prior_size_ == 500
    assert seqs[0].params_.allclose(seqs[1].params_, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("init_sample_size", [None, 50])
def test_counting_a_stream_costs_no_extra_pass(init_sample_size):
    # the count replaces the init sample's own counting pass, and keeps small data
    X = _blobs(400, seed=6)
    opened = []
    _quiet(GaussianMixture(2, random_state=0, max_iter=2, tol=0), _stream(X, 5, opened),
           init_sample_size=init_sample_size)
    # the first chunk (model), the count (which keeps all 400 rows when they are the
    # sample), the draw when a sample of 50 is drawn, two E-steps and the final score
    assert len(opened) == 1 + 1 + (init_sample_size is not None) + 2 + 1


def test_data_source_counts_rows_of_positive_weight():
    X = _blobs(10)
    w = np.array([0.0, 2, 2, 0, 1e-300, 3, 3, 3, 0, 1])
    assert DataSource(X, sample_weight=w).count_rows() == 7
    assert DataSource(X, sample_weight=w * 1e300).count_rows() == 7
    assert DataSource(X, chunk_size=3).count_rows() == 10
    assert DataSource([X[:4], X[4:]]).count_rows() == 10


def test_prior_size_counts_relative_weights_so_zero_weights_drop_out():
    X = _blobs(seed=7)
    w = np.ones(len(X))
    w[::5] = 0.0
    start = _quiet(GaussianMixture(3, random_state=0, max_iter=1), X[w > 0])
    kw = {"max_iter": 10, "tol": 0, "reg_covar": 0.05, "weights_init": start.weights_,
          "means_init": start.means_, "precisions_init": start.precisions_}
    a = _quiet(GaussianMixture(3, **kw), X, sample_weight=3.5 * w)
    b = _quiet(GaussianMixture(3, **kw), X[w > 0])
    assert a.prior_size_ == b.prior_size_ == 240
    assert a.params_.allclose(b.params_, rtol=1e-10)


# -- online EM: the prior is attached to the samples seen ------------------------------------


def test_partial_fit_attaches_the_prior_to_the_samples_seen():
    # With a fixed size the prior would fade as batches accumulate (lambda / N_k shrinks
    # like 1 / batches) until the collinear direction is numerically singular.
    X = _celsius_fahrenheit(40_000, scale=10.0, seed=1)
    rng = np.random.default_rng(0)
    est = GaussianMixture(2, random_state=0)
    for i, batch in enumerate(np.array_split(X[rng.permutation(len(X))], 40)):
        est.partial_fit(batch)
        assert est.prior_size_ == (i + 1) * 1000
    assert est._model.prior_size == 40_000
    thin = [np.linalg.eigvalsh(c)[0] for c in est.covariances_]
    assert np.all((np.array(thin) > 1e-7) & (np.array(thin) < 1e-5)), thin


def test_online_fit_equals_batch_m_step_on_the_samples_seen():
    # one online pass with a single batch is one EM iteration from the same start
    X = _blobs(seed=8)
    batch = _quiet(GaussianMixture(3, random_state=0, max_iter=1, tol=0, reg_covar=0.05), X)
    online = GaussianMixture(3, random_state=0, reg_covar=0.05).partial_fit(X)
    assert online.params_.allclose(batch.params_, rtol=1e-12)
    fitted = GaussianMixture(3, random_state=0, reg_covar=0.05, max_iter=3).fit(
        X, method="online", batch_size=100)
    assert fitted.prior_size_ == 300  # the data's size; the M-steps use the samples seen


# -- persistence -----------------------------------------------------------------------------


def test_prior_size_survives_save_and_load(tmp_path):
    X = _blobs(seed=9)
    est = _quiet(GaussianHMM(3, "full", random_state=0, reg_covar=0.01, max_iter=5), X,
                 [100, 200])
    path = est.save(tmp_path / "m.npz")
    loaded = emframe.load(path)
    assert loaded.prior_size_ == 300 and loaded._model.prior_size == 300
    assert loaded._model.log_prior(loaded.params_) == est._model.log_prior(est.params_)
    # a warm refit continues with the same objective
    for e in (est, loaded):
        e.set_params(warm_start=True, max_iter=1)
        _quiet(e, X, [100, 200])
    assert loaded.params_.allclose(est.params_, rtol=1e-12)
    np.testing.assert_allclose(loaded.loglik_history_, est.loglik_history_, rtol=1e-12)


def test_a_file_without_prior_size_keeps_the_unscaled_prior(tmp_path):
    # files written before prior_size_ existed were fitted with lambda = reg_covar
    est = _quiet(GaussianMixture(2, random_state=0, reg_covar=0.01, max_iter=5), _blobs())
    path = est.save(tmp_path / "m.npz")
    with np.load(path, allow_pickle=False) as npz:
        entries = dict(npz)
    meta = json.loads(entries["__emframe__"].tobytes().decode("utf-8"))
    del meta["fitted"]["prior_size_"]
    entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    old = tmp_path / "old.npz"
    with open(old, "wb") as fh:
        np.savez(fh, **entries)
    loaded = emframe.load(old)
    assert not hasattr(loaded, "prior_size_") and loaded._model.prior_size is None
    assert loaded._model.prior_strength(2) == 0.01
    for bad in (-3, "300", [1, 2]):
        meta["fitted"]["prior_size_"] = bad
        entries["__emframe__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        with open(old, "wb") as fh:
            np.savez(fh, **entries)
        with pytest.raises(ValueError, match="prior_size_ must be a finite number > 0"):
            emframe.load(old)
