"""Fitting on Dask arrays (issue 13): the same EM, with the E-step where the data live.

One module-scoped LocalCluster of 2 worker processes serves the tests that need a
cluster; it is the default client, so fits without ``scheduler=`` run on it. Tests
of what is decided on the client (the initialisation sample, errors) use Dask's
in-process "sync" scheduler, which runs the same graphs faster.
"""

import contextlib
import gc
import io
import logging
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from emframe.models import (  # noqa: E402
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
from emframe.models.mixtures.gaussian import GaussianMixtureModel  # noqa: E402

from emframe import fit_em  # noqa: E402
from emframe.core import executors  # noqa: E402
from emframe.distributed import DaskSource, partition_sequences  # noqa: E402
from emframe.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402


@pytest.fixture(scope="module")
def client():
    # dashboard_address=None would still serve HTTP on the default port 8787, which
    # another cluster on the machine may hold; ":0" takes any free port
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as c:
        yield c


def _gauss(n=400, d=3, seed=0, missing=0.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * d, [5.0] * d, [0.0] * (d - 1) + [6.0]])
    states = np.repeat(rng.integers(0, 3, size=n // 10 + 1), 10)[:n]
    X = centres[states] + rng.normal(size=(n, d)) * (1.0 + 0.3 * np.arange(d))
    if missing:
        X[rng.random(X.shape) < missing] = np.nan
        X[np.isnan(X).all(axis=1), 0] = 1.0  # keep every row informative
    return X


def _heavy(n=400, seed=4):
    X = _gauss(n=n, d=2, seed=seed)
    return X + np.random.default_rng(seed).standard_t(2.0, size=X.shape) * 0.3


def _binary(n=400, d=8, seed=1):
    rng = np.random.default_rng(seed)
    p = np.where(np.arange(n)[:, None] % 3 == 0, 0.15, 0.8)
    B = (rng.random((n, d)) < p).astype(float)
    B[rng.random(B.shape) < 0.1] = np.nan
    return B


def _counts(n=400, seed=2):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 2, size=n // 20), 20)
    return rng.poisson(np.array([2.0, 9.0])[states])[:, None].astype(float)


def _symbols(n=400, seed=3):
    return np.random.default_rng(seed).integers(0, 4, size=(n, 1)).astype(float)


def _walk(n=400, seed=5):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=n))
    Y = np.stack([x + rng.normal(size=n), 0.5 * x + rng.normal(size=n)], axis=1)
    Y[rng.random(Y.shape) < 0.1] = np.nan
    return Y


def _category_counts(n=400, seed=7):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 2, size=n // 20 + 1), 20)[:n]
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])[states]
    return np.array([rng.multinomial(10, p) for p in probs]).astype(float)


LENGTHS = [70, 130, 45, 95, 60]  # 400 rows; chunks of 64 rows cut through them
STATES = np.full(400, -1)
STATES[[3, 80, 81, 250]] = [0, 1, 1, 2]

CASES = {  # name: (estimator factory, data, fit keywords)
    "gmm-full": (lambda: GaussianMixture(3, random_state=0), _gauss, {}),
    "gmm-tied": (lambda: GaussianMixture(3, covariance_type="tied", random_state=1), _gauss, {}),
    "gmm-diag": (lambda: GaussianMixture(3, covariance_type="diag", random_state=2), _gauss, {}),
    "gmm-spherical": (
        lambda: GaussianMixture(3, covariance_type="spherical", random_state=3), _gauss, {}),
    "gmm-noise": (lambda: GaussianMixture(3, noise=True, random_state=0), _gauss, {}),
    "student-t": (lambda: StudentTMixture(2, random_state=0), _heavy, {}),
    "bernoulli-nan": (lambda: BernoulliMixture(3, random_state=0), _binary, {}),
    "missing-gaussian": (MissingDataGaussian, lambda: _gauss(missing=0.2), {}),
    "missing-gmm": (
        lambda: MissingDataGaussianMixture(3, random_state=0), lambda: _gauss(missing=0.2), {}),
    "gaussian-hmm": (lambda: GaussianHMM(3, "full", random_state=0), _gauss, {}),
    "gaussian-hmm-nan-states": (lambda: GaussianHMM(3, "diag", random_state=0),
                                lambda: _gauss(missing=0.1), {"states": STATES}),
    "categorical-hmm": (lambda: CategoricalHMM(3, random_state=0), _symbols, {}),
    "poisson-hmm": (lambda: PoissonHMM(2, random_state=0), _counts, {}),
    "multinomial-hmm": (lambda: MultinomialHMM(2, random_state=0), _category_counts, {}),
    "gmm-hmm": (lambda: GMMHMM(2, 2, "diag", random_state=0), _gauss, {}),
    "ar-hmm": (lambda: AutoRegressiveHMM(2, random_state=0), lambda: _gauss(d=2), {}),
    "ssm": (lambda: LinearGaussianSSM(1, random_state=0), _walk, {}),
}
SEQUENCES = {"gaussian-hmm", "gaussian-hmm-nan-states", "categorical-hmm", "poisson-hmm",
             "multinomial-hmm", "gmm-hmm", "ar-hmm", "ssm"}


def _fit(est, X, lengths=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if lengths is not None:
            return est.fit(X, lengths, **kw)
        return est.fit(X, **kw)


def _same(a, b, rtol=1e-10):
    assert type(a) is type(b)
    assert a.allclose(b, rtol=rtol, atol=rtol), (a, b)


def _case(name):
    make, gen, kw = CASES[name]
    X = gen()
    return make, X, (LENGTHS if name in SEQUENCES else None), kw


@pytest.mark.parametrize("sample", [None, 150], ids=["all-rows", "sample-150"])
@pytest.mark.parametrize("name", list(CASES))
def test_same_seed_same_initial_parameters(name, sample):
    # the rows (or whole sequences) initialisation reads are drawn as for in-memory
    # data: on every path the same seed gives the same start
    make, X, lengths, kw = _case(name)
    dX = da.from_array(X, chunks=(64, -1))
    start = _fit(make().set_params(max_iter=0), X, lengths, init_sample_size=sample, **kw)
    dstart = _fit(make().set_params(max_iter=0), dX, lengths, init_sample_size=sample,
                  scheduler="sync", **kw)
    _same(start.params_, dstart.params_, rtol=1e-13)


@pytest.mark.parametrize("name", list(CASES))
def test_fit_equals_in_memory(client, name):
    make, X, lengths, kw = _case(name)
    mem = _fit(make().set_params(max_iter=4, tol=0), X, lengths, **kw)
    dsk = _fit(make().set_params(max_iter=4, tol=0), da.from_array(X, chunks=(64, -1)),
               lengths, **kw)
    _same(mem.params_, dsk.params_)
    np.testing.assert_allclose(dsk.loglik_history_, mem.loglik_history_, rtol=1e-10)
    assert dsk.n_iter_ == mem.n_iter_ == 4 and dsk.n_features_in_ == mem.n_features_in_


@pytest.mark.parametrize("name", ["gmm-noise", "bernoulli-nan", "gaussian-hmm-nan-states",
                                  "ar-hmm", "ssm"])
def test_scores_reduce_on_the_workers(name):
    make, X, lengths, kw = _case(name)
    est = _fit(make().set_params(max_iter=3), X, lengths, **kw)
    dX = da.from_array(X, chunks=(64, -1))
    args = () if lengths is None else (lengths,)
    for method in ("score", "log_likelihood", "bic", "aic"):
        np.testing.assert_allclose(getattr(est, method)(dX, *args),
                                   getattr(est, method)(X, *args), rtol=1e-12)


def test_engine_features_unchanged(client):
    X = _gauss(seed=5)
    dX = da.from_array(X, chunks=(100, -1))
    seen = {"mem": [], "dask": []}
    runs = {}
    for key, data in (("mem", X), ("dask", dX)):
        err = io.StringIO()
        # five components on three clusters: the restarts end at distinct likelihoods
        est = GaussianMixture(5, n_init=3, random_state=4, max_iter=6, tol=0, strict=True,
                              freeze=("weights",), verbose=1)
        with contextlib.redirect_stderr(err):
            _fit(est, data, accelerate="squarem",
                 callbacks=[lambda info, k=key: seen[k].append((info.init, info.iteration))])
        runs[key] = (est, err.getvalue().count("[emframe] init"))
    (mem, mem_lines), (dsk, dsk_lines) = runs["mem"], runs["dask"]
    _same(mem.params_, dsk.params_)
    np.testing.assert_array_equal(dsk.weights_, mem.weights_)  # frozen
    np.testing.assert_allclose(dsk.loglik_history_, mem.loglik_history_, rtol=1e-10)
    assert dsk.n_e_steps_ == mem.n_e_steps_ and seen["mem"] == seen["dask"]
    assert mem_lines == dsk_lines >= 18
    assert dsk._fit_result.best_init == mem._fit_result.best_init
    assert dsk._fit_result.init_log_likelihoods == pytest.approx(
        mem._fit_result.init_log_likelihoods, rel=1e-10)


def test_fit_em_and_sample_weights(client):
    X = _gauss(seed=6)
    w = np.random.default_rng(0).uniform(0.2, 2.0, size=len(X)) * 1e-3  # relative weights
    model = GaussianMixtureModel(3)
    kw = {"random_state": 0, "tol": 0, "max_iter": 5, "warn_convergence": False}
    mem = fit_em(model, X, sample_weight=w, **kw)
    for weights in (w, da.from_array(w, chunks=50)):
        dsk = fit_em(model, da.from_array(X, chunks=(90, 2)), sample_weight=weights,
                     scheduler=client, split_every=2, **kw)
        _same(mem.params, dsk.params)
        assert dsk.weight_scale == pytest.approx(mem.weight_scale, rel=1e-14)
        assert dsk.n_samples == pytest.approx(mem.n_samples, rel=1e-12)
    est = _fit(GaussianMixture(3, random_state=0, max_iter=5, tol=0), X, sample_weight=w)
    dest = _fit(GaussianMixture(3, random_state=0, max_iter=5, tol=0),
                da.from_array(X, chunks=(90, -1)), sample_weight=w)
    _same(est.params_, dest.params_)


@pytest.mark.parametrize("make, lengths", [
    (lambda: GaussianMixture(2, random_state=0, max_iter=3, tol=0), None),
    (lambda: AutoRegressiveHMM(2, random_state=0, max_iter=3, tol=0), [5000, 7000]),
], ids=["gmm-weighted", "ar-hmm"])
def test_data_larger_than_the_initialisation_sample(make, lengths):
    # 12,000 rows: the model is built from the first 10,000, the start drawn from a
    # sample of 10,000 rows (or whole sequences) across the partitions, and the
    # size of the data (rows of positive weight, modelled steps) is that of all of it
    rng = np.random.default_rng(23)
    X = rng.normal(size=(12_000, 2))
    X[::3] += 4.0
    kw = {}
    if lengths is None:
        kw["sample_weight"] = np.where(np.arange(12_000) % 7 == 0, 0.0, 1.0 + (X[:, 0] > 2))
    mem = _fit(make(), X, lengths, **kw)
    dsk = _fit(make(), da.from_array(X, chunks=(2_500, -1)), lengths, scheduler="sync", **kw)
    _same(mem.params_, dsk.params_)
    np.testing.assert_allclose(dsk.loglik_history_, mem.loglik_history_, rtol=1e-10)


def test_local_schedulers_without_a_cluster():
    X = _gauss(seed=7)
    mem = _fit(GaussianMixture(2, random_state=0, max_iter=5, tol=0), X)
    for sched in ("sync", "threads"):
        dsk = _fit(GaussianMixture(2, random_state=0, max_iter=5, tol=0),
                   da.from_array(X, chunks=(50, -1)), scheduler=sched)
        _same(mem.params_, dsk.params_)


class CountingGMM(GaussianMixture):
    """Counts validations of the partitions (the sync scheduler runs them in-process)."""

    calls = 0

    def _validate_X(self, X, *, reset):
        CountingGMM.calls += 1
        return super()._validate_X(X, reset=reset)


@pytest.mark.parametrize("persist", [True, False])
def test_partitions_read_once_per_fit_unless_asked(persist):
    X = _gauss(seed=8)
    dX = da.from_array(X, chunks=(100, -1))  # 4 partitions
    CountingGMM.calls = 0
    est = _fit(CountingGMM(2, random_state=0, max_iter=5, tol=0), dX, scheduler="sync",
               persist=persist)
    # persisted: each partition validated once; otherwise again at every E-step and
    # for the rows read on the client (first rows, initialisation sample)
    expected = 4 if persist else 4 * (est.n_e_steps_ + 2)
    assert CountingGMM.calls == expected


def test_not_persisted_and_warm_start_on_the_cluster(client):
    X = _gauss(seed=18)
    dX = da.from_array(X, chunks=(100, -1))
    mem = _fit(GaussianMixture(2, random_state=0, max_iter=4, tol=0), X)
    dsk = _fit(GaussianMixture(2, random_state=0, max_iter=4, tol=0), dX, persist=False)
    _same(mem.params_, dsk.params_)
    _same(_fit(mem.set_params(warm_start=True), X).params_,
          _fit(dsk.set_params(warm_start=True), dX).params_)


def test_tree_reduction_fan_in():
    X = _gauss(seed=9, n=640)
    src = DaskSource(da.from_array(X, chunks=(10, -1)), split_every=4, scheduler="sync")
    assert src.n_partitions == 64 and not src.is_local
    model = GaussianMixtureModel(2)
    params = model.initialize(X, np.random.default_rng(0))
    from emframe.core.loop import e_step_all

    stats, ll, n = e_step_all(model, params, src)
    ref_stats, ref_ll = model.e_step(params, X)
    assert stats.allclose(ref_stats) and ll == pytest.approx(ref_ll, rel=1e-12) and n == 640
    with pytest.raises(ValueError, match="split_every must be an int >= 2"):
        DaskSource(da.from_array(X), split_every=1)


def test_count_rows():
    # the size of the training data, as the in-memory source counts it: rows, rows of
    # positive weight, modelled steps of sequences
    X = _gauss(seed=22, d=2)
    dX = da.from_array(X, chunks=(64, -1))
    assert DaskSource(dX, scheduler="sync").count_rows() == 400
    w = np.where(np.arange(400) % 4 == 0, 0.0, 2.0)
    for weights in (w, da.from_array(w, chunks=100)):
        assert DaskSource(dX, sample_weight=weights, scheduler="sync").count_rows() == 300
    ar = AutoRegressiveHMM(2, order=2)
    model, _ = ar._build(X, LENGTHS)

    def units(block, lengths):
        return ar._validate_sequences(block, lengths, model.emission)

    src = DaskSource(dX, lengths=np.array(LENGTHS), transform=units, scheduler="sync")
    assert src.count_rows() == 400 - 2 * len(LENGTHS)


def test_released_after_fit(client):
    # the partitions (and an HMM's probed array) are kept on the workers during the fit only
    X = _gauss(seed=10)
    _fit(GaussianMixture(2, random_state=0, max_iter=3), da.from_array(X, chunks=(100, -1)))
    _fit(GaussianHMM(2, random_state=0, max_iter=3), da.from_array(X, chunks=(100, -1)),
         LENGTHS)
    gc.collect()
    deadline = time.time() + 10
    while any(client.has_what().values()) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(client.has_what().values()), client.has_what()


# -- sequences: partitions of whole sequences ----------------------------------------


def test_partition_sequences_never_splits():
    lengths = np.array([70, 130, 45, 95, 60])
    sizes, parts = partition_sequences([64] * 6 + [16], lengths)
    assert sum(sizes) == 400 and [int(p.sum()) for p in parts] == sizes
    assert np.concatenate(parts).tolist() == lengths.tolist()
    assert max(sizes) <= 130  # a partition over the chunk size holds one sequence
    assert partition_sequences([200, 200], lengths)[0] == [200, 200]  # kept


def test_categorical_alphabet_read_from_all_the_data():
    X = np.zeros((1500, 1))
    X[::3] = 1.0
    X[1400:1410] = 5.0  # the largest symbol appears only far beyond the first rows
    X[1200] = np.nan  # missing
    lengths = [500, 500, 500]
    mem = _fit(CategoricalHMM(2, random_state=0, max_iter=3), X, lengths)
    dsk = _fit(CategoricalHMM(2, random_state=0, max_iter=3),
               da.from_array(X, chunks=(400, 1)), lengths, scheduler="sync")
    assert dsk.emissionprob_.shape == mem.emissionprob_.shape == (2, 6)
    assert dsk.n_features == 6
    _same(mem.params_, dsk.params_)


# -- lazy results --------------------------------------------------------------------


def test_lazy_predictions_equal_in_memory(client):
    # every lazy result is built first, then all are computed on the cluster at once
    lazy, expected = [], []
    X = _gauss(seed=11)
    dX = da.from_array(X, chunks=(64, 2))
    for gm in (_fit(GaussianMixture(3, random_state=0), X),
               _fit(GaussianMixture(3, noise=True, random_state=0), X),
               _fit(StudentTMixture(2, random_state=0), X)):
        for method in ("predict", "predict_proba", "score_samples"):
            lazy.append(getattr(gm, method)(dX))
            expected.append(getattr(gm, method)(X))
    B = _binary()
    bm = _fit(BernoulliMixture(3, random_state=0), B)
    lazy.append(bm.predict_proba(da.from_array(B, chunks=(64, -1))))
    expected.append(bm.predict_proba(B))
    Xm = _gauss(seed=12, missing=0.2)
    dXm = da.from_array(Xm, chunks=(64, -1))
    for est in (_fit(MissingDataGaussian(), Xm), _fit(MissingDataGaussianMixture(2), Xm)):
        lazy += [est.transform(dXm), est.score_samples(dXm), *est.impute(dXm, return_std=True)]
        expected += [est.transform(Xm), est.score_samples(Xm), *est.impute(Xm, return_std=True)]
    assert all(isinstance(a, da.Array) for a in lazy)
    for got, want in zip(client.compute(lazy, sync=True), expected, strict=True):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(NotFittedError):
        GaussianMixture(2).predict(dX)


@pytest.mark.parametrize("make", [lambda: MissingDataGaussian(),
                                  lambda: MissingDataGaussianMixture(2, random_state=0)],
                         ids=["MissingDataGaussian", "MissingDataGaussianMixture"])
def test_sample_imputations_on_dask_are_lazy_and_equal_the_in_memory_draws(make):
    # each row's random numbers depend on the seed and the row's number only: the draws
    # are made partition by partition where the data are, the same for any chunking
    Xm = _gauss(seed=14, missing=0.2)
    est = _fit(make(), Xm)
    expected = est.sample_imputations(Xm, 3, random_state=5)
    for rows in (64, 101, len(Xm)):
        got = est.sample_imputations(da.from_array(Xm, chunks=(rows, -1)), 3, random_state=5)
        assert isinstance(got, da.Array) and got.shape == expected.shape
        np.testing.assert_array_equal(got.compute(scheduler="sync"), expected)
    # a different seed draws differently; observed entries are the data in every draw
    other = est.sample_imputations(Xm, 3, random_state=6)
    missing = np.isnan(Xm)
    assert not np.any(other[:, missing] == expected[:, missing])
    np.testing.assert_array_equal(other[:, ~missing],
                                  np.broadcast_to(Xm[~missing], other[:, ~missing].shape))


def test_lazy_sequence_results():
    X = _gauss(seed=13, missing=0.05)
    dX = da.from_array(X, chunks=(64, -1))
    hmm = _fit(GaussianHMM(3, random_state=0), X, LENGTHS)
    for states in (None, STATES, da.from_array(STATES, chunks=100)):
        ref_states = None if states is None else STATES
        path = hmm.predict(dX, LENGTHS, states=states)
        assert isinstance(path, da.Array)
        np.testing.assert_array_equal(path.compute(scheduler="sync"),
                                      hmm.predict(X, LENGTHS, states=ref_states))
    logprob, post = hmm.score_samples(dX, LENGTHS)
    ref_logprob, ref_post = hmm.score_samples(X, LENGTHS)
    assert logprob.compute(scheduler="sync") == pytest.approx(ref_logprob, rel=1e-12)
    np.testing.assert_allclose(post.compute(scheduler="sync"), ref_post, rtol=1e-12,
                               atol=1e-300)
    imp, std = hmm.impute(dX, LENGTHS, return_std=True)
    np.testing.assert_allclose(imp.compute(scheduler="sync"), hmm.impute(X, LENGTHS),
                               rtol=1e-12)
    np.testing.assert_allclose(hmm.score_sequences(dX, LENGTHS).compute(scheduler="sync"),
                               hmm.score_sequences(X, LENGTHS), rtol=1e-12)
    # an autoregressive HMM has one result per modelled step (T - order per sequence)
    Xa = _gauss(d=2)
    ar = _fit(AutoRegressiveHMM(2, order=2, random_state=0, max_iter=3), Xa, LENGTHS)
    lazy = ar.predict(da.from_array(Xa, chunks=(64, -1)), LENGTHS)
    assert lazy.shape == (400 - 2 * len(LENGTHS),)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), ar.predict(Xa, LENGTHS))
    Y = _walk()
    ssm = _fit(LinearGaussianSSM(1, random_state=0, max_iter=3), Y, LENGTHS)
    dY = da.from_array(Y, chunks=(64, -1))
    for method in ("filter", "smooth"):
        for lazy_out, ref in zip(getattr(ssm, method)(dY, LENGTHS),
                                 getattr(ssm, method)(Y, LENGTHS), strict=True):
            np.testing.assert_allclose(lazy_out.compute(scheduler="sync"), ref, rtol=1e-12)
    np.testing.assert_allclose(ssm.impute(dY, LENGTHS).compute(scheduler="sync"),
                               ssm.impute(Y, LENGTHS), rtol=1e-12)
    # forecasts: one horizon per sequence, lazily, with and without lengths and states
    for lengths, states in ((LENGTHS, False), (LENGTHS, True), (None, True)):
        got = ssm.forecast(dY, 4, lengths, states=states)
        want = ssm.forecast(Y, 4, lengths, states=states)
        assert all(isinstance(a, da.Array) for a in got) and len(got) == len(want)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape
            np.testing.assert_allclose(a.compute(scheduler="sync"), b, rtol=1e-12)


class _RunSpecCollisions(logging.Handler):
    """Counts the scheduler's "different run_spec for key" warnings (dask/dask#9888)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def emit(self, record):
        self.count += "run_spec" in record.getMessage()


def test_fit_then_predict_on_the_same_array_reuses_no_key():
    # a fit persists rechunked partitions; a prediction right after rechunks the same
    # array: their keys must not collide with other task definitions. (An in-process
    # cluster: its fast turnaround is where the collisions showed.)
    X = _gauss(seed=17, n=272, d=2)
    handler = _RunSpecCollisions()
    logging.getLogger("distributed.scheduler").addHandler(handler)
    try:
        with distributed.LocalCluster(n_workers=2, processes=False, dashboard_address=":0"
                                      ) as cluster, distributed.Client(
                                          cluster, set_as_default=False) as c:
            for _ in range(2):
                dX = da.from_array(X, chunks=(100, -1))
                hmm = _fit(GaussianHMM(2, random_state=0, max_iter=3), dX, [90, 100, 82],
                           scheduler=c)
                c.compute(hmm.predict(dX, [90, 100, 82]), sync=True)
                gm = _fit(GaussianMixture(2, random_state=0, max_iter=3), dX, scheduler=c)
                c.compute(gm.predict(dX), sync=True)
    finally:
        logging.getLogger("distributed.scheduler").removeHandler(handler)
    assert handler.count == 0


# -- bad input -----------------------------------------------------------------------


def test_bad_input():
    X = _gauss(seed=14)
    dX = da.from_array(X, chunks=(100, -1))
    sync = {"scheduler": "sync"}
    with pytest.raises(ValueError, match="2-D Dask array"):
        GaussianMixture(2).fit(da.from_array(X[:, 0]), **sync)
    with pytest.raises(ValueError, match="lengths"):
        GaussianHMM(2).fit(dX, [100, 100], **sync)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        GaussianMixture(2).fit(dX[dX[:, 0] > 0], **sync)
    with pytest.raises(ValueError, match="chunk_size applies to in-process"):
        GaussianMixture(2).fit(dX, chunk_size=10)
    with pytest.raises(ValueError, match="chunk_size applies to in-process"):
        GaussianHMM(2).fit(dX, chunk_size=10)
    with pytest.raises(ValueError, match="apply to data held by an executor"):
        GaussianMixture(2).fit(X, scheduler="sync")
    with pytest.raises(ValueError, match="states must have one label per row"):
        GaussianHMM(2).fit(dX, states=np.zeros(10, dtype=int), **sync)
    with pytest.raises(TypeError, match="online"):
        GaussianMixture(2).fit(dX, method="online", **sync)
    for est in (GaussianMixture(2), GaussianHMM(2), LinearGaussianSSM(1)):
        with pytest.raises(TypeError, match="partial_fit does not accept a Dask array"):
            est.partial_fit(dX)
    bad = X.copy()
    bad[250, 1] = np.inf
    with pytest.raises(ValueError, match=r"rows 200 to 299 of the Dask array: X contains"):
        GaussianMixture(2).fit(da.from_array(bad, chunks=(100, -1)), **sync)
    with pytest.raises(ValueError, match="unknown scheduler"):
        GaussianMixture(2).fit(dX, scheduler="gpu")
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        GaussianMixture(2).fit(dX, sample_weight=da.from_array(-np.ones(400)), **sync)
    all_nan = X.copy()
    all_nan[:, 1] = np.nan
    with pytest.raises(ValueError, match=r"column\(s\) 1 of Y have no observed value"):
        LinearGaussianSSM(1).fit(da.from_array(all_nan, chunks=(100, -1)), **sync)
    est = GaussianMixture(2, random_state=0).fit(X)
    hmm = GaussianHMM(2, random_state=0, max_iter=2, tol=0).fit(X)
    wide = da.from_array(np.zeros((10, 5)))
    for lazy_call in (est.predict, est.predict_proba, lambda a: hmm.predict(a),
                      lambda a: hmm.score_samples(a)):
        with pytest.raises(ValueError, match="X has 5 features"):  # at once, not at compute
            lazy_call(wide)
    with pytest.raises(TypeError, match="fit_em\\(\\) got unexpected keyword"):
        fit_em(est._model, dX, schedular="sync")
    assert not hasattr(GaussianMixture(2).set_params(), "n_features_in_")


def test_closed_client(client):
    other = distributed.Client(client.cluster, set_as_default=False)
    other.close()
    X = da.from_array(_gauss(seed=15), chunks=(100, -1))
    with pytest.raises(ValueError, match="client passed as scheduler is not running"):
        GaussianMixture(2).fit(X, scheduler=other)
    est = GaussianMixture(2, random_state=0).fit(_gauss(seed=15))
    with pytest.raises(ValueError, match="client passed as scheduler is not running"):
        est.fit(X, scheduler=other)
    assert est.n_iter_ > 0  # the failed refit kept the previous fit


def test_no_dask_import_for_in_memory_data():
    code = ("import sys, numpy as np; from emframe.models import GaussianMixture, GaussianHMM;"
            "X = np.random.default_rng(0).normal(size=(50, 2));"
            "GaussianMixture(2, random_state=0).fit(X).predict(X); GaussianHMM(2).fit(X);"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')]")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_unregistered_dask_data_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(executors, "_REGISTRY", [])
    with pytest.raises(TypeError, match="no executor for Dask data is registered"):
        GaussianMixture(2).fit(da.from_array(_gauss(seed=19)))


# -- the command line ----------------------------------------------------------------


def _loglik_line(text):
    return next(line for line in text.splitlines() if line.startswith("log-likelihood"))


def test_read_lazy_keeps_the_data_out_of_the_graph(tmp_path):
    import pickle

    from emframe.distributed import read_lazy

    X = _gauss(seed=21, n=1000)
    np.save(tmp_path / "x.npy", X)
    lazy = read_lazy(str(tmp_path / "x.npy"), rows=300)
    assert lazy.chunks == ((300, 300, 300, 100), (3,))
    assert len(pickle.dumps(dict(lazy.__dask_graph__()))) < X.nbytes / 10
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), X)
    np.save(tmp_path / "v.npy", X[:, 0])  # one column
    assert read_lazy(str(tmp_path / "v.npy")).shape == (1000, 1)


def test_cli_fit_on_a_cluster(client, tmp_path, capsys, monkeypatch):
    import functools

    from emframe.interfaces.cli import parser as cli

    # --local-cluster's workers as threads: the same code path, without starting processes
    monkeypatch.setattr(distributed, "LocalCluster",
                        functools.partial(distributed.LocalCluster, processes=False))
    X = _gauss(seed=20, n=300, d=2)
    npy, csv, lens = tmp_path / "x.npy", tmp_path / "x.csv", tmp_path / "lens.txt"
    np.save(npy, X)
    np.savetxt(csv, X, delimiter=",", header="a,b", comments="")
    lens.write_text("100\n200\n")
    runs = {}
    for key, argv in {
        "memory": ["fit", "gmm", str(npy), "-q"],
        "csv": ["fit", "gmm", str(csv), "-q", "--local-cluster", "1", "-o",
                str(tmp_path / "m.npz")],
        "hmm-memory": ["fit", "gaussian-hmm", str(npy), "--lengths", str(lens), "-q"],
        "hmm-npy": ["fit", "gaussian-hmm", str(npy), "--lengths", str(lens), "-q",
                    "--scheduler", client.scheduler.address, "--partition-rows", "64"],
    }.items():
        assert cli.main(argv) == 0, key
        runs[key] = _loglik_line(capsys.readouterr().out)
    assert runs["memory"] == runs["csv"]
    assert runs["hmm-memory"] == runs["hmm-npy"]
    assert (tmp_path / "m.npz").is_file()
    for argv, message in [
        (["fit", "gmm", str(npy), "--partition-rows", "10"], "applies with --scheduler"),
        (["fit", "gmm", str(npy), "--local-cluster", "1", "--plot", str(tmp_path / "p.png")],
         "--plot draws the data"),
        (["fit", "gaussian-hmm", str(npy), "--lengths", "1", "--scheduler",
          client.scheduler.address], "give the sequence lengths as a file"),
        (["fit", "gmm", str(npy), "--scheduler", "no-port"], "cannot connect"),
    ]:
        assert cli.main(argv) == 2, argv
        assert message in capsys.readouterr().err


# -- fault tolerance (last: it restarts a worker) ----------------------------------------


def test_worker_killed_mid_fit(client):
    X = _gauss(seed=16, n=600)
    make = lambda: GaussianMixture(3, random_state=0, max_iter=8, tol=0)  # noqa: E731
    ref = _fit(make(), X)
    pids = client.run(os.getpid)
    killed = []

    def kill_one(info):
        if info.iteration == 2 and not killed:
            os.kill(next(iter(pids.values())), signal.SIGKILL)
            killed.append(True)

    dsk = _fit(make(), da.from_array(X, chunks=(50, -1)), callbacks=[kill_one])
    assert killed and dsk.n_iter_ == 8
    _same(ref.params_, dsk.params_)
    np.testing.assert_allclose(dsk.loglik_history_, ref.loglik_history_, rtol=1e-10)
    client.wait_for_workers(2, timeout=60)
    assert next(iter(pids.values())) not in client.run(os.getpid).values()  # replaced
