"""Initialisation from a seeded sample drawn across all the data, and online EM over passes."""

import numpy as np
import pytest
from custom_models import PoissonMixture, PoissonMixtureEstimator, PoissonParams, poisson_data
from emframe.models import BernoulliMixture, GaussianHMM, GaussianMixture, MissingDataGaussian
from emframe.models.hmm import Sequences
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe import DataSource, fit_em
from emframe.core.data import draw_units

pytestmark = pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning")


def _regimes(n=2000, seed=0):
    """Three well-separated regimes, the first 600 steps all in regime 0."""
    rng = np.random.default_rng(seed)
    head = min(600, n)
    states = np.concatenate([np.zeros(head, int), rng.integers(0, 3, (n - head) // 50 + 1)])
    states = np.concatenate([states[:head], np.repeat(states[head:], 50)])[:n]
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    return centres[states] + rng.normal(size=(n, 2))


# -- the cases: chunk_size no longer changes the fit ---------------------------


def test_hmm_chunk_size_does_not_change_the_fit():
    X = _regimes()
    lengths = [100] * 20
    whole = GaussianHMM(3, random_state=0, max_iter=30).fit(X, lengths)
    chunked = GaussianHMM(3, random_state=0, max_iter=30).fit(X, lengths, chunk_size=400)
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(chunked.transmat_, whole.transmat_, rtol=1e-9, atol=1e-12)


def test_bernoulli_chunk_size_does_not_change_the_fit():
    rng = np.random.default_rng(1)
    probs = np.array([[0.9] * 4 + [0.1] * 4, [0.1] * 4 + [0.9] * 4, [0.5] * 8])
    z = np.sort(rng.integers(0, 3, 2000))  # sorted: the first chunk holds only component 0
    X = (rng.random((2000, 8)) < probs[z]).astype(float)
    whole = BernoulliMixture(3, random_state=0, max_iter=30).fit(X)
    chunked = BernoulliMixture(3, random_state=0, max_iter=30).fit(X, chunk_size=400)
    listed = BernoulliMixture(3, random_state=0, max_iter=30).fit(np.array_split(X, 7))
    np.testing.assert_allclose(chunked.probs_, whole.probs_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(listed.probs_, whole.probs_, rtol=1e-9, atol=1e-12)


def test_memmap_chunks_and_stream_start_like_the_whole_array(tmp_path):
    rng = np.random.default_rng(2)
    X = np.vstack([rng.normal(0, 1, (9000, 2)), rng.normal(5, 1, (6000, 2))])  # > 10,000 rows
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=float, shape=X.shape)
    mm[:] = X
    mm.flush()
    kw = dict(random_state=3, max_iter=2, tol=0)
    whole = GaussianMixture(2, **kw).fit(X)
    fits = [
        GaussianMixture(2, **kw).fit(np.load(tmp_path / "x.npy", mmap_mode="r"), chunk_size=1000),
        GaussianMixture(2, **kw).fit(np.array_split(X, 6)),
        GaussianMixture(2, **kw).fit(lambda: iter(np.array_split(X, 4))),
    ]
    for f in fits:
        np.testing.assert_allclose(f.means_, whole.means_, rtol=1e-10)
        assert f.loglik_history_[0] == pytest.approx(whole.loglik_history_[0], rel=1e-12)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 60),
    cuts=st.lists(st.integers(0, 60), max_size=5),
    max_rows=st.one_of(st.none(), st.integers(1, 70)),
    seed=st.integers(0, 2**32 - 1),
)
def test_init_sample_is_the_same_for_any_chunking(n, cuts, max_rows, seed):
    X = np.arange(2 * n, dtype=float).reshape(n, 2)
    chunks = [c for c in np.split(X, sorted(min(c, n) for c in cuts)) if len(c)]
    ref = DataSource(X).init_sample(np.random.default_rng(seed), max_rows)
    expected = min(n, max_rows) if max_rows is not None else n
    assert ref.shape == (expected, 2)
    assert len(np.unique(ref[:, 0])) == expected and np.all(np.diff(ref[:, 0]) > 0)  # data order
    for source in (
        DataSource(X, chunk_size=7),
        DataSource(chunks),
        DataSource(lambda: iter(chunks)),
    ):
        got = source.init_sample(np.random.default_rng(seed), max_rows)
        np.testing.assert_array_equal(got, ref)


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 30), min_size=1, max_size=12),
    batch=st.integers(1, 80),
    max_rows=st.integers(1, 200),
    seed=st.integers(0, 2**32 - 1),
)
def test_hmm_init_sample_takes_whole_sequences(lengths, batch, max_rows, seed):
    X = np.arange(sum(lengths), dtype=float)[:, None]
    seqs = Sequences(X, lengths)
    ref = DataSource([seqs]).init_sample(np.random.default_rng(seed), max_rows)
    got = DataSource(seqs.split(batch)).init_sample(np.random.default_rng(seed), max_rows)
    np.testing.assert_array_equal(got.X, ref.X)
    np.testing.assert_array_equal(got.lengths, ref.lengths)
    # whole sequences, each one of the originals, at most max_rows steps (at least one sequence)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for first, length in zip(ref.bounds()[:-1], ref.lengths, strict=True):
        i = int(np.searchsorted(starts, ref.X[first, 0]))
        assert starts[i] == ref.X[first, 0] and lengths[i] == length
    assert ref.n_samples <= max(max_rows, min(lengths)) or ref.n_sequences == 1


def test_draw_units_takes_everything_when_small():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(draw_units(np.ones(5, np.int64), rng, 10), np.arange(5))
    np.testing.assert_array_equal(draw_units(np.array([3, 4]), rng, None), [0, 1])
    assert len(draw_units(np.ones(50, np.int64), rng, 10)) == 10


def test_init_sample_size_is_an_engine_option():
    X = poisson_data(3000, 2000, seed=4)
    a = fit_em(PoissonMixture(2), X, random_state=0, max_iter=0, init_sample_size=100)
    b = fit_em(PoissonMixture(2), X, random_state=0, max_iter=0, init_sample_size=None)
    c = fit_em(PoissonMixture(2), X, random_state=0, max_iter=0)  # 5000 rows < 10,000: all
    assert b.params.allclose(c.params, rtol=0)
    assert not a.params.allclose(b.params)
    with pytest.raises(ValueError, match="init_sample_size must be >= 1"):
        fit_em(PoissonMixture(2), X, init_sample_size=0)


def test_missing_data_gaussian_chunked_starts_from_all_rows():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(300, 3)) + np.arange(300)[:, None] / 100
    X[rng.random(X.shape) < 0.2] = np.nan
    whole = MissingDataGaussian(max_iter=3, tol=0).fit(X)
    chunked = MissingDataGaussian(max_iter=3, tol=0).fit(X, chunk_size=50)
    np.testing.assert_allclose(chunked.mean_, whole.mean_, rtol=1e-10)
    np.testing.assert_allclose(chunked.loglik_history_, whole.loglik_history_, rtol=1e-10)


# -- online EM: passes over the data ----------------------------------------------------


def _counting_stream(X, n_chunks):
    calls = []

    def stream():
        calls.append(1)
        return iter(np.array_split(X, n_chunks))

    return stream, calls


def test_online_fit_on_a_stream_makes_one_pass_by_default():
    X = poisson_data(3000, 2000, seed=6)
    stream, calls = _counting_stream(X, 10)
    est = PoissonMixtureEstimator(2, random_state=0)  # max_iter=100: not passes over a stream
    est.fit(stream, method="online")
    assert est.n_iter_ == 10
    # first chunk (model), the init sample (all rows fit: one read), one pass, final score
    assert len(calls) == 4
    listed = PoissonMixtureEstimator(2, random_state=0).fit(np.array_split(X, 10), method="online")
    assert listed.n_iter_ == 10 and listed.params_.allclose(est.params_, rtol=1e-12)
    three = PoissonMixtureEstimator(2, random_state=0).fit(stream, method="online", passes=3)
    assert three.n_iter_ == 30
    # over an array, max_iter passes as before
    arr = PoissonMixtureEstimator(2, random_state=0, max_iter=2).fit(X, method="online",
                                                                      batch_size=1000)
    assert arr.n_iter_ == 10


def test_online_passes_are_validated():
    X = poisson_data()
    start = PoissonParams(np.array([0.5, 0.5]), np.array([1.0, 5.0]))
    with pytest.raises(ValueError, match="passes must be a positive int"):
        fit_em(PoissonMixture(2), X, init_params=start, method="online", passes=0)
    with pytest.raises(ValueError, match="passes applies to method='online'"):
        fit_em(PoissonMixture(2), X, init_params=start, passes=2)


def test_a_generator_object_is_refused_with_a_hint():
    X = poisson_data()

    def gen():
        yield X[:100]
        yield X[100:]

    with pytest.raises(TypeError, match=r"function that returns a new iterator.*pass gen, not gen"):
        PoissonMixtureEstimator(2).fit(gen(), method="online")
    with pytest.raises(TypeError, match="one-shot iterator"):
        fit_em(PoissonMixture(2), gen())
    PoissonMixtureEstimator(2, random_state=0).fit(gen, method="online")  # the function is fine


def test_summary_attributes_exist_after_partial_fit():
    X = poisson_data()
    est = PoissonMixtureEstimator(2, random_state=0)
    for batch in np.array_split(X, 5):
        est.partial_fit(batch)
    assert est.n_iter_ == est.n_e_steps_ == 5 and est.converged_ is False
    assert est.lower_bounds_.shape == (5,)
    np.testing.assert_allclose(est.lower_bounds_ * 100, est.loglik_history_)
    assert est.lower_bound_ == est.lower_bounds_[-1]
    hmm = GaussianHMM(2, random_state=0).partial_fit(_regimes(400), [200, 200])
    assert np.isfinite(hmm.lower_bound_) and hmm.n_e_steps_ == 1


def test_online_fit_reports_per_sample_history():
    X = poisson_data()
    est = PoissonMixtureEstimator(2, random_state=0, max_iter=1).fit(X, method="online",
                                                                     batch_size=100)
    np.testing.assert_allclose(est.lower_bounds_, est.loglik_history_ / 100)
    assert est.lower_bound_ == pytest.approx(est.score(X), rel=1e-12)


# -- BernoulliMixture probs_init ----------------------------------------------------------


def test_bernoulli_probs_init_is_the_start():
    rng = np.random.default_rng(7)
    X = (rng.random((50, 4)) < 0.5).astype(float)
    p0 = np.array([[0.2, 0.3, 0.4, 0.5], [0.6, 0.7, 0.8, 0.9]])
    est = BernoulliMixture(2, probs_init=p0, max_iter=0).fit(X)
    np.testing.assert_array_equal(est.probs_, p0)
    np.testing.assert_array_equal(est.weights_, [0.5, 0.5])
    a = BernoulliMixture(2, probs_init=p0, random_state=1, max_iter=5).fit(X)
    b = BernoulliMixture(2, probs_init=p0, random_state=2, max_iter=5).fit(X)
    assert a.params_.allclose(b.params_, rtol=0)  # the seed no longer matters
    with pytest.raises(ValueError, match=r"probs_init must have shape \(n_components, n_feat"):
        BernoulliMixture(2, probs_init=p0[:, :3]).fit(X)
    with pytest.raises(ValueError, match=r"probs_init must lie in \[0, 1\]"):
        BernoulliMixture(2, probs_init=p0 * 2).fit(X)

