"""HMMs with partially known states: exact oracles, the supervised MLE, EM properties, bad input."""

import numpy as np
import pytest
from emframe.models import CategoricalHMM, GaussianHMM, PoissonHMM
from emframe.models.hmm import HMMModel, Sequences
from emframe.models.hmm.emissions import (
    AutoRegressiveEmission,
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    PoissonEmission,
)
from hmm_bruteforce import brute_force
from hmm_kinds import emission
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from emframe.testing import check_additive, check_model, check_monotone

pytestmark = [
    pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning"),
    # the oracles use a handful of steps: more free parameters than data, on purpose
    pytest.mark.filterwarnings("ignore:.*free parameters but the data hold only:UserWarning"),
]

START = np.array([0.5, 0.3, 0.2])
TRANS = np.array([[0.7, 0.2, 0.1], [0.15, 0.7, 0.15], [0.25, 0.25, 0.5]])
LENGTHS = [4, 3]


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [2.0, 2.0], [-2.0, 1.0]])
    z = rng.integers(0, 3, n)
    return centres[z] + rng.normal(size=(n, 2)), z


def _given_gaussian(X, lengths, means, covars, **kw):
    est = GaussianHMM(3, "full", init_params="", max_iter=0, backend="numpy", **kw)
    est.startprob_, est.transmat_, est.means_, est.covars_ = START, TRANS, means, covars
    return est.fit(X, lengths)


@pytest.mark.parametrize("with_nan", [False, True])
def test_clamped_states_oracle(with_nan):
    X, _ = _data(sum(LENGTHS))
    if with_nan:
        X[[1, 5], 0] = np.nan
        X[3] = np.nan
    labels = np.array([-1, 2, -1, 0, 1, -1, -1])
    rng = np.random.default_rng(1)
    means = rng.normal(size=(3, 2))
    covars = np.array([np.eye(2) * s for s in (0.5, 1.0, 2.0)])
    est = _given_gaussian(X, LENGTHS, means, covars)

    def logpdf(x, k):
        o = ~np.isnan(x)
        return sps.multivariate_normal(means[k][o], covars[k][np.ix_(o, o)]).logpdf(x[o]) \
            if o.any() else 0.0

    le = np.array([[logpdf(x, k) for k in range(3)] for x in X])
    bf = brute_force(START, TRANS, le, LENGTHS, labels=labels)
    # the joint likelihood of the observations and the known states
    np.testing.assert_allclose(est.score(X, LENGTHS, states=labels), bf["loglik"], rtol=1e-12)
    post = est.predict_proba(X, LENGTHS, states=labels)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    known = labels >= 0
    np.testing.assert_array_equal(post[known], np.eye(3)[labels[known]])
    logprob, path = est.decode(X, LENGTHS, states=labels)
    np.testing.assert_array_equal(path, bf["path"])
    np.testing.assert_allclose(logprob, bf["path_logprob"], rtol=1e-12)
    np.testing.assert_array_equal(est.predict(X, LENGTHS, states=labels), bf["path"])
    map_path = est.decode(X, LENGTHS, algorithm="map", states=labels)[1]
    np.testing.assert_array_equal(map_path, np.argmax(bf["posteriors"], axis=1))
    np.testing.assert_allclose(
        est.score_sequences(X, LENGTHS, states=labels).sum(), bf["loglik"], rtol=1e-12
    )
    # one EM step: expected counts given the observations and the labels
    one = GaussianHMM(3, "full", init_params="", max_iter=1, tol=0.0, backend="numpy")
    one.startprob_, one.transmat_, one.means_, one.covars_ = START, TRANS, means, covars
    one.fit(X, LENGTHS, states=labels)
    np.testing.assert_allclose(one.startprob_, bf["start"] / 2, atol=1e-12)
    np.testing.assert_allclose(
        one.transmat_, bf["trans"] / bf["trans"].sum(axis=1, keepdims=True), atol=1e-12
    )


def _supervised(lengths, z, n_states):
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    startprob = np.bincount(z[starts], minlength=n_states) / len(lengths)
    counts = np.zeros((n_states, n_states))
    for s, n in zip(starts, lengths, strict=True):
        np.add.at(counts, (z[s : s + n - 1], z[s + 1 : s + n]), 1.0)
    return startprob, counts / counts.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("cov_type", ["full", "diag"])
def test_fully_labelled_one_step_is_the_supervised_mle(cov_type):
    lengths = [60, 45, 75]
    X, z = _data(sum(lengths), seed=2)
    # from any start: one iteration gives the closed form (counts and per-state moments)
    for seed in (0, 1):
        est = GaussianHMM(3, cov_type, reg_covar=1e-4, random_state=seed, max_iter=1, tol=0.0)
        est.fit(X, lengths, states=z)
        startprob, transmat = _supervised(lengths, z, 3)
        np.testing.assert_allclose(est.startprob_, startprob, atol=1e-12)
        np.testing.assert_allclose(est.transmat_, transmat, atol=1e-12)
        for k in range(3):
            xk = X[z == k]
            np.testing.assert_allclose(est.means_[k], xk.mean(axis=0), rtol=1e-10)
            # the MAP under the reg_covar prior: lambda / N_k on the variances, with
            # lambda = reg_covar * n / K attached to the n steps
            cov = np.cov(xk.T, bias=True) + 1e-4 * len(X) / (3 * len(xk)) * np.eye(2)
            want = cov if cov_type == "full" else np.diag(cov)
            np.testing.assert_allclose(est.covars_[k], want, rtol=1e-10)


def test_fully_labelled_supervised_mle_counts_and_symbols():
    lengths = [50, 70]
    rng = np.random.default_rng(3)
    z = rng.integers(0, 2, sum(lengths))
    counts = rng.poisson(np.array([[2.0, 9.0], [6.0, 1.0]])[z]).astype(float)
    est = PoissonHMM(2, random_state=0, max_iter=1, tol=0.0).fit(counts, lengths, states=z)
    for k in range(2):
        np.testing.assert_allclose(est.lambdas_[k], counts[z == k].mean(axis=0), rtol=1e-12)
    symbols = np.where(z == 0, rng.integers(0, 2, z.size), rng.integers(1, 4, z.size))[:, None]
    est = CategoricalHMM(2, random_state=0, max_iter=1, tol=0.0).fit(symbols, lengths, states=z)
    for k in range(2):
        freq = np.bincount(symbols[z == k, 0], minlength=4) / (z == k).sum()
        np.testing.assert_allclose(est.emissionprob_[k], freq, rtol=1e-12)
    startprob, transmat = _supervised(lengths, z, 2)
    np.testing.assert_allclose(est.transmat_, transmat, atol=1e-12)


@pytest.mark.parametrize("data_seed", range(4))
@pytest.mark.parametrize("fraction", [0.02, 0.1])
def test_labels_pin_the_state_identities(data_seed, fraction):
    rng = np.random.default_rng(data_seed)
    z = np.repeat(rng.permutation([0, 1, 2, 0, 1, 2]), 30)
    X = np.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])[z] + rng.normal(size=(z.size, 2))
    labels = np.where(rng.random(z.size) < fraction, z, -1)
    # Without labels the states come out in any order; with a few, state k is the
    # labelled k: the random start is renumbered to fit them (else EM stalls with every
    # label on the wrong state).
    for seed in range(3):
        est = GaussianHMM(3, "full", random_state=seed).fit(X, states=labels)
        assert np.mean(est.predict(X) == z) > 0.95


@pytest.mark.parametrize("emission, fields", [
    (GaussianEmission("full"), ("means", "covars")),
    (GaussianEmission("tied"), ("means",)),
    (PoissonEmission(), ("lambdas",)),
    (CategoricalEmission(4), ("emissionprob",)),
    (GMMEmission(2, "tied"), ("weights", "means", "covars")),
    (AutoRegressiveEmission(1, "diag"), ("coefs", "intercepts", "covars")),
    (AutoRegressiveEmission(1, "tied"), ("coefs", "intercepts")),
])
def test_permute_states_renumbers_the_log_likelihood(emission, fields):
    kind = {"PoissonEmission": "poisson", "CategoricalEmission": "categorical"}.get(
        type(emission).__name__, "full")
    X, _ = _labelled(kind, np.random.default_rng(0), 30, 0.0, 0.0)
    params = emission.initialize(X, 3, np.random.default_rng(1))
    order = np.array([2, 0, 1])
    moved = emission.permute_states(params, order)
    np.testing.assert_array_equal(emission.log_likelihood(moved, X),
                                  emission.log_likelihood(params, X)[:, order])
    for f in fields:
        np.testing.assert_array_equal(getattr(moved, f), np.asarray(getattr(params, f))[order])


# -- EM properties with random label masks -----------------------------------------------------
KINDS = ["full", "diag", "poisson", "categorical"]


def _labelled(kind, rng, n, p_label, p_missing):
    z = rng.integers(0, 3, n)
    if kind == "categorical":
        X = np.where(rng.random(n) < 0.7, z, rng.integers(0, 4, n))[:, None].astype(float)
        X[rng.random(n) < p_missing] = -1
    elif kind == "poisson":
        X = rng.poisson(np.array([[1.0, 3.0], [5.0, 1.0], [9.0, 9.0]])[z]).astype(float)
        X[rng.random(X.shape) < p_missing] = np.nan
    else:
        X = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 1.0]])[z] + rng.normal(size=(n, 2))
        X[rng.random(X.shape) < p_missing] = np.nan
    X[0] = 1.0  # every column observed somewhere
    return X, np.where(rng.random(n) < p_label, z, -1)


@pytest.mark.parametrize("kind", KINDS)
def test_conformance_with_labels(kind):
    lengths = [40, 25, 35, 20]
    X, labels = _labelled(kind, np.random.default_rng(0), sum(lengths), 0.3, 0.1)
    seqs = Sequences(X, lengths, labels)
    chunks = [Sequences(X[:65], [40, 25], labels[:65]), Sequences(X[65:], [35, 20], labels[65:])]
    check_model(lambda: HMMModel(emission(kind), 3), seqs, chunks=chunks, n_iter=15)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    # big enough that no state collapses onto a few steps (where reg_covar, added to
    # the variances and not yet a prior, can lower the likelihood)
    lengths=st.lists(st.integers(1, 40), min_size=0, max_size=3).map(lambda v: [*v, 40]),
    p_label=st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    p_missing=st.sampled_from([0.0, 0.3]),
    seed=st.integers(0, 2**16),
    split=st.integers(1, 40),
)
def test_monotone_and_additive_with_random_labels(kind, lengths, p_label, p_missing, seed, split):
    rng = np.random.default_rng(seed)
    X, labels = _labelled(kind, rng, sum(lengths), p_label, p_missing)
    seqs = Sequences(X, lengths, labels)
    model = HMMModel(emission(kind), 3)
    params = model.initialize(seqs, np.random.default_rng(seed))
    check_monotone(model, seqs, params, n_iter=8)
    parts = seqs.split(split)
    check_additive(model, params, seqs, parts)
    np.testing.assert_array_equal(np.concatenate([p.states for p in parts]), labels)


def test_chunked_fit_with_labels_equals_whole():
    lengths = [30, 25, 40, 15]
    X, labels = _labelled("full", np.random.default_rng(5), sum(lengths), 0.3, 0.1)
    start = GaussianHMM(3, "full", random_state=0, max_iter=0).fit(X, lengths)

    def fit(**kw):
        est = GaussianHMM(3, "full", init_params="", max_iter=8, tol=0.0)
        est.startprob_, est.transmat_ = start.startprob_, start.transmat_
        est.means_, est.covars_ = start.means_, start.covars_
        return est.fit(X, lengths, states=labels, **kw)

    whole, chunked = fit(), fit(chunk_size=35)
    np.testing.assert_allclose(chunked.loglik_history_, whole.loglik_history_, rtol=1e-10)
    np.testing.assert_allclose(chunked.covars_, whole.covars_, rtol=1e-8)


@pytest.mark.parametrize("sample", [None, 60])
def test_random_start_sees_the_labels_of_every_chunk(sample):
    # the initialisation sample keeps its sequences' known states (take_units,
    # concatenate_units), so a chunked fit's label matching starts where the whole one does
    lengths = [30, 25, 40, 15]
    X, labels = _labelled("full", np.random.default_rng(5), sum(lengths), 0.3, 0.1)
    starts = [GaussianHMM(3, "full", random_state=0, max_iter=0).fit(
        X, lengths, states=labels, chunk_size=c, init_sample_size=sample).params_
        for c in (None, 35)]
    assert starts[0].allclose(starts[1], rtol=1e-13, atol=0)
    picked = Sequences(X, lengths, labels).take_units(np.array([1, 3]))
    np.testing.assert_array_equal(picked.states, np.concatenate([labels[30:55], labels[95:]]))


def test_partial_fit_with_labels():
    X, labels = _labelled("full", np.random.default_rng(6), 120, 0.2, 0.0)
    est = GaussianHMM(3, "full", random_state=0)
    est.partial_fit(X[:60], states=labels[:60]).partial_fit(X[60:], states=labels[60:])
    post = est.predict_proba(X[60:], states=labels[60:])
    known = labels[60:] >= 0
    np.testing.assert_array_equal(post[known], np.eye(3)[labels[60:][known]])
    with pytest.raises(ValueError, match="states must have shape"):
        est.partial_fit(X[:10], states=labels[:9])


def test_split_keeps_labels_aligned():
    X = np.arange(20.0)[:, None]
    labels = np.tile([0, 1, -1, 2], 5)
    parts = Sequences(X, [5, 5, 4, 6], labels).split(9)
    np.testing.assert_array_equal(np.concatenate([p.states for p in parts]), labels)
    np.testing.assert_array_equal(np.concatenate([p.X for p in parts]), X)


# -- bad input ---------------------------------------------------------------------------------
X9, _ = _data(9)


@pytest.mark.parametrize("states, error, match", [
    (np.zeros(8, int), ValueError, r"states must have shape \(n_samples,\) = \(9,\)"),
    ([0, 1, 2, 3, -1, -1, -1, -1, -1], ValueError,
     r"states\[3\] = 3 is out of range: the model has n_components=3"),
    ([0, 0.5, 1, -1, -1, -1, -1, -1, -1], ValueError, r"states must be integers.*states\[1\]"),
    ([0, np.nan, 1, -1, -1, -1, -1, -1, -1], ValueError, r"states must be integers"),
    ([0, -2, 1, -1, -1, -1, -1, -1, -1], ValueError, r"states\[1\] = -2 is not a state"),
    (np.ones(9, bool), TypeError, "states must be integer state indices"),
    (["a"] * 9, TypeError, "states must be integer state indices"),
])
def test_bad_states(states, error, match):
    with pytest.raises(error, match=match):
        GaussianHMM(3).fit(X9, states=states)
    fitted = GaussianHMM(3, random_state=0, max_iter=2).fit(X9)
    for method in ("score", "predict", "predict_proba", "score_samples", "impute"):
        with pytest.raises(error, match=match):
            getattr(fitted, method)(X9, states=states)


def test_labels_impossible_under_zero_transitions():
    left_right = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]])

    def est():
        e = GaussianHMM(3, init_params="mc", random_state=0, max_iter=3)
        e.startprob_, e.transmat_ = [1.0, 0.0, 0.0], left_right
        return e

    adjacent = np.array([-1, 1, 0, -1, -1, -1, -1, -1, -1])
    with pytest.raises(ValueError, match=r"zero probability.*states\[1\] = 1 is followed by "
                                         r"states\[2\] = 0, but transmat_\[1, 0\] is zero"):
        est().fit(X9, states=adjacent)
    first = np.array([2, -1, -1, -1, -1, -1, -1, -1, -1])
    with pytest.raises(ValueError, match=r"zero probability.*sequence 0 starts in state 2"):
        est().fit(X9, states=first)
    apart = np.array([-1, 2, -1, 0, -1, -1, -1, -1, -1])  # 2 then 0, two steps apart
    with pytest.raises(ValueError, match=r"zero probability.*no state path"):
        est().fit(X9, states=apart)
    # the second sequence may start anywhere the start probabilities allow
    with pytest.raises(ValueError, match=r"sequence 1 starts in state 1"):
        est().fit(X9, [4, 5], states=[0, 0, 1, 1, 1, -1, -1, -1, -1])
    fitted = est().fit(X9)
    with pytest.raises(ValueError, match=r"zero probability under the fitted model"):
        fitted.predict(X9, states=adjacent)
    with pytest.raises(ValueError, match=r"zero probability under the fitted model"):
        fitted.score(X9, states=apart)
    ok = np.array([0, 0, 1, -1, 2, -1, -1, -1, 2])
    assert np.isfinite(fitted.score(X9, states=ok))
