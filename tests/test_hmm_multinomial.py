"""MultinomialHMM: exact log-likelihoods and M-step, zeros, missing rows, sampling, bad input."""

import warnings

import numpy as np
import pytest
from emframe.models import MultinomialHMM
from emframe.models.hmm import HMMModel, Sequences
from emframe.models.hmm.emissions import MultinomialEmission, MultinomialParams
from hmm_bruteforce import brute_force
from scipy import stats as sps

import emframe
from emframe.exceptions import ConvergenceWarning

START = np.array([0.6, 0.4])
TRANS = np.array([[0.7, 0.3], [0.2, 0.8]])
PROB = np.array([[0.5, 0.5, 0.0], [0.1, 0.3, 0.6]])


def _counts(seed=0, n=120, n_trials=None):
    """Rows over 3 categories from two regimes; totals vary unless ``n_trials`` is given."""
    rng = np.random.default_rng(seed)
    regime = np.repeat(rng.integers(0, 2, size=n // 10), 10)
    p = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])[regime]
    totals = rng.integers(0, 9, size=n) if n_trials is None else np.full(n, n_trials)
    return rng.multinomial(totals, p)


def _given(n_trials=None, **kw):
    m = MultinomialHMM(2, n_trials, init_params="", **kw)
    m.startprob_, m.transmat_, m.emissionprob_ = START, TRANS, PROB
    return m


def _log_emission(X, prob):
    """Independent of emframe: scipy's multinomial log-pmf, 0 for a missing row."""
    out = np.zeros((len(X), len(prob)))
    for t, x in enumerate(X):
        if not np.isnan(x).any():
            out[t] = [sps.multinomial.logpmf(x, int(x.sum()), p) for p in prob]
    return out


def test_log_likelihood_posteriors_and_viterbi_equal_brute_force():
    # a zero probability (category 2 in state 0), an empty row and a missing row
    X = np.array([[1, 2, 0], [0, 1, 3], [0, 0, 0], [np.nan] * 3, [4, 1, 0], [2, 0, 1],
                  [1, 1, 1]], dtype=float)
    lengths = [4, 3]
    m = _given(max_iter=0).fit(X, lengths)
    log_e = _log_emission(X, PROB)
    assert np.isneginf(log_e[1, 0]) and log_e[2, 0] == 0.0
    ref = brute_force(START, TRANS, log_e, lengths)
    np.testing.assert_allclose(m.score(X, lengths), ref["loglik"], rtol=1e-12)
    np.testing.assert_allclose(m.predict_proba(X, lengths), ref["posteriors"], atol=1e-12)
    lp, path = m.decode(X, lengths)
    np.testing.assert_allclose(lp, ref["path_logprob"], rtol=1e-12)
    np.testing.assert_array_equal(path, ref["path"])


def test_one_iteration_is_the_closed_form_m_step():
    X = _counts(1, n=10).astype(float)
    X[4] = np.nan
    lengths = [6, 4]
    prob = np.array([[0.3, 0.3, 0.4], [0.2, 0.1, 0.7]])
    m = MultinomialHMM(2, init_params="", params="e", max_iter=1, tol=0.0)
    m.startprob_, m.transmat_, m.emissionprob_ = START, TRANS, prob
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        m.fit(X, lengths)
    gamma = brute_force(START, TRANS, _log_emission(X, prob), lengths)["posteriors"]
    counts = gamma.T @ np.nan_to_num(X)
    np.testing.assert_allclose(m.emissionprob_, counts / counts.sum(axis=1, keepdims=True),
                               rtol=1e-12)


def test_fit_is_monotone_keeps_zeros_and_counts_parameters():
    X = _counts(2)
    m = _given(tol=0.0, max_iter=30)
    m.emissionprob_ = [[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]
    m.fit(X)
    h = m.loglik_history_
    assert np.all(np.diff(h) >= -1e-10 * np.abs(h[1:]))
    assert m.emissionprob_[0, 2] == 0.0  # a zero stays zero
    np.testing.assert_allclose(m.emissionprob_.sum(axis=1), 1.0, rtol=1e-12)
    assert m.n_parameters() == 1 + 2 + 2 * 2
    n = len(X)
    np.testing.assert_allclose(m.bic(X), -2 * m.score(X) + 7 * np.log(n), rtol=1e-12)


def test_init_draws_rows_and_given_emissionprob_is_the_start():
    X = _counts(3)
    a = MultinomialHMM(2, random_state=0, max_iter=0).fit(X)
    b = MultinomialHMM(2, random_state=1, max_iter=0).fit(X)
    assert not np.allclose(a.emissionprob_, b.emissionprob_)
    assert np.all(a.emissionprob_ > 0)
    given = MultinomialHMM(2, init_params="st", random_state=0, max_iter=0)
    given.emissionprob_ = PROB[::-1]
    np.testing.assert_array_equal(given.fit(X).emissionprob_, PROB[::-1])


def test_n_trials_checks_every_row():
    X = _counts(4, n_trials=6)
    m = MultinomialHMM(2, n_trials=6, random_state=0).fit(X)
    none = MultinomialHMM(2, random_state=0).fit(X)  # the same rows, each its own total
    np.testing.assert_allclose(m.loglik_history_, none.loglik_history_, rtol=1e-12)
    bad = X.copy()
    bad[7, 0] += 1
    with pytest.raises(ValueError, match=r"must sum to n_trials = 6, but row 7 sums to 7"):
        m.score(bad)
    for n_trials in (0, 2.5, "6"):
        with pytest.raises((ValueError, TypeError), match="n_trials"):
            MultinomialHMM(2, n_trials=n_trials).fit(X)


@pytest.mark.parametrize("value, message", [
    (-1, r"non-negative integer counts .* X\[5, 1\] = -1"),
    (0.5, r"non-negative integer counts .* X\[5, 1\] = 0.5"),
    (np.inf, "inf"),
])
def test_bad_counts_are_refused(value, message):
    X = _counts(5).astype(float)
    X[5, 1] = value
    with pytest.raises(ValueError, match=message):
        MultinomialHMM(2).fit(X)


def test_partly_missing_row_and_wrong_width_are_refused():
    X = _counts(6).astype(float)
    X[3, 0] = np.nan
    with pytest.raises(ValueError, match="row 3 of X has some counts missing"):
        MultinomialHMM(2).fit(X)
    m = MultinomialHMM(2, random_state=0).fit(_counts(6))
    with pytest.raises(ValueError, match="features"):
        m.score(_counts(6)[:, :2])
    with pytest.raises(ValueError, match="every row of X is missing"):
        MultinomialHMM(2).fit(np.full((4, 3), np.nan))


def test_missing_rows_count_only_through_the_transitions_and_are_imputed():
    X = _counts(7, n_trials=5).astype(float)
    X[[4, 30]] = np.nan
    m = MultinomialHMM(2, n_trials=5, random_state=0).fit(X)
    model, p = m._model, m.params_
    # the likelihood is the brute-force one with a missing row's emission term 0
    small = Sequences(X[:8], [8])
    ref = brute_force(p.startprob, p.transmat, _log_emission(X[:8], p.emission.emissionprob),
                      [8])
    np.testing.assert_allclose(model.log_likelihood(p, small), ref["loglik"], rtol=1e-12)
    filled, std = m.impute(X, return_std=True)
    post = m.predict_proba(X)
    np.testing.assert_allclose(filled[4], 5 * post[4] @ m.emissionprob_, rtol=1e-12)
    np.testing.assert_array_equal(filled[~np.isnan(X)], X[~np.isnan(X)])
    assert np.all(std[4] > 0) and np.all(std[0] == 0)
    draws = m.sample_imputations(X, n_imputations=3, random_state=0)
    assert np.all(draws[:, [4, 30]].sum(axis=2) == 5)
    # with each row its own total, a missing row's total is unknown
    m_none = MultinomialHMM(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="n_trials is None"):
        m_none.impute(X)


def test_sampling_needs_n_trials_and_matches_the_model():
    m = _given(n_trials=20)
    X, states = m.sample(4000, random_state=0)  # from parameters set by hand
    assert X.dtype == np.int64 and np.all(X.sum(axis=1) == 20)
    assert np.all(X[states == 0, 2] == 0)
    freq = X[states == 1].sum(axis=0) / X[states == 1].sum()
    np.testing.assert_allclose(freq, PROB[1], atol=0.01)
    with pytest.raises(ValueError, match="sampling needs the number of trials"):
        _given().sample(5, random_state=0)


def test_emission_statistics_are_additive_and_inputs_untouched():
    X = _counts(8).astype(float)
    X[10] = np.nan
    keep = X.copy()
    model = HMMModel(MultinomialEmission(), 2)
    seqs = Sequences(X, [60, 60])
    params = model.initialize(seqs, np.random.default_rng(0))
    assert isinstance(params.emission, MultinomialParams)
    whole = model.e_step(params, seqs)[0]
    parts = [model.e_step(params, s)[0] for s in seqs.split(60)]
    np.testing.assert_allclose(whole.emission.counts,
                               parts[0].emission.counts + parts[1].emission.counts, rtol=1e-12)
    np.testing.assert_array_equal(X, keep)


def test_save_load_round_trip(tmp_path):
    X = _counts(9, n_trials=8)
    m = MultinomialHMM(2, n_trials=8, random_state=0).fit(X, [60, 60])
    loaded = emframe.load(m.save(tmp_path / "m.npz"))
    assert type(loaded) is MultinomialHMM and loaded.n_trials == 8
    np.testing.assert_array_equal(loaded.emissionprob_, m.emissionprob_)
    assert loaded.score(X, [60, 60]) == m.score(X, [60, 60])
