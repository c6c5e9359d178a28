"""Tests of the pure HMM inference routines in emframe.inference.hmm.

The oracle is brute force: enumerate every state path of tiny problems and sum or
maximise their probabilities directly.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from emframe.inference import compiled
from emframe.inference.hmm import (
    Posterior,
    backward,
    forward,
    forward_backward,
    has_numba,
    logspace,
    validate_lengths,
    viterbi,
)
from emframe.inference.hmm import common as hmm_common
from emframe.inference.hmm import recursions as fb_mod

BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])
needs_numba = pytest.mark.skipif(not has_numba(), reason="numba not installed")


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=float))


def _starts(lengths):
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int)


# --------------------------------------------------------------------------------------
# Brute-force oracle
# --------------------------------------------------------------------------------------


def _scores(lpi, lA, e, paths):
    """log p(path, x) for each row of ``paths`` (n_paths, L); lpi=None: no start term."""
    L = paths.shape[1]
    s = e[np.arange(L), paths].sum(axis=1)
    if lpi is not None:
        s = s + lpi[paths[:, 0]]
    if L > 1:
        s = s + lA[paths[:, :-1], paths[:, 1:]].sum(axis=1)
    return s


def brute_force(lpi, lA, le, lengths):
    """Exact answers by enumerating all K**L paths of every sequence."""
    k = lpi.shape[0]
    out = {
        "seq_ll": [],
        "gamma": np.full(le.shape, np.nan),
        "start": np.zeros(k),
        "trans": np.zeros((k, k)),
        "best": [],
        "best_paths": [],  # per sequence: all optimal paths
    }
    for first, L in zip(_starts(lengths), lengths, strict=True):
        e = le[first : first + L]
        paths = np.array(list(itertools.product(range(k), repeat=L)))
        with np.errstate(invalid="ignore"):
            sc = _scores(lpi, lA, e, paths)
        ll = logsumexp(sc)
        out["seq_ll"].append(ll)
        best = sc.max()
        out["best"].append(best)
        # Paths within rounding of the optimum count as ties.
        out["best_paths"].append(paths[sc >= best - 1e-9 * (1.0 + abs(best))])
        if ll == -np.inf:
            continue
        w = np.exp(sc - ll)
        for t in range(L):
            out["gamma"][first + t] = np.bincount(paths[:, t], weights=w, minlength=k)
        out["start"] += out["gamma"][first]
        for t in range(1, L):
            np.add.at(out["trans"], (paths[:, t - 1], paths[:, t]), w)
    out["seq_ll"] = np.array(out["seq_ll"])
    return out


def brute_alpha_beta(lpi, lA, le, lengths):
    """log alpha and log beta by enumerating prefixes and suffixes."""
    k = lpi.shape[0]
    la = np.empty(le.shape)
    lb = np.empty(le.shape)
    for first, L in zip(_starts(lengths), lengths, strict=True):
        e = le[first : first + L]
        for t in range(L):
            pre = np.array(list(itertools.product(range(k), repeat=t + 1)))
            with np.errstate(invalid="ignore"):
                sc = _scores(lpi, lA, e[: t + 1], pre)
            for j in range(k):
                la[first + t, j] = logsumexp(sc[pre[:, -1] == j])
            if t == L - 1:
                lb[first + t] = 0.0
                continue
            suf = np.array(list(itertools.product(range(k), repeat=L - t - 1)))
            with np.errstate(invalid="ignore"):
                sc = _scores(None, lA, e[t + 1 :], suf)
                for j in range(k):
                    lb[first + t, j] = logsumexp(sc + lA[j, suf[:, 0]])
    return la, lb


def path_score(lpi, lA, le, lengths, path):
    """log p(path, x) summed over sequences."""
    total = 0.0
    for first, L in zip(_starts(lengths), lengths, strict=True):
        with np.errstate(invalid="ignore"):
            total += _scores(lpi, lA, le[first : first + L], path[None, first : first + L])[0]
    return total


# --------------------------------------------------------------------------------------
# Random problems
# --------------------------------------------------------------------------------------


@st.composite
def hmm_problems(draw, max_k=3, max_len=6, max_seq=3):
    """Tiny HMMs with exact zeros, emissions of very different scales, some -inf."""
    k = draw(st.integers(1, max_k))
    lengths = np.array(draw(st.lists(st.integers(1, max_len), min_size=1, max_size=max_seq)))
    n = int(lengths.sum())
    weight = st.one_of(st.just(0.0), st.floats(0.01, 1.0))
    start = np.array(draw(st.lists(weight, min_size=k, max_size=k)))
    if start.sum() == 0:
        start[draw(st.integers(0, k - 1))] = 1.0
    trans = np.array(draw(st.lists(weight, min_size=k * k, max_size=k * k))).reshape(k, k)
    for i in range(k):
        if trans[i].sum() == 0:
            trans[i, draw(st.integers(0, k - 1))] = 1.0
    start /= start.sum()
    trans /= trans.sum(axis=1, keepdims=True)
    # spread 1000 gives contrasts beyond exp()'s range, which the scaled recursion must
    # detect and hand to the log-space one; offset -1e4 tests the per-step shift.
    spread = draw(st.sampled_from([1.0, 30.0, 1000.0]))
    offset = draw(st.sampled_from([0.0, -1e4]))
    le = np.array(draw(st.lists(st.floats(-1.0, 0.0), min_size=n * k, max_size=n * k)))
    le = le.reshape(n, k) * spread + offset
    if draw(st.booleans()):
        impossible = draw(st.lists(st.booleans(), min_size=n * k, max_size=n * k))
        mask = np.array(impossible).reshape(n, k) & (np.arange(n * k).reshape(n, k) % 3 == 0)
        le[mask] = -np.inf
    return _log(start), _log(trans), le, lengths


def random_problem(rng, k, lengths, zero_frac=0.3, spread=5.0):
    lengths = np.asarray(lengths)
    start = rng.random(k) * (rng.random(k) > zero_frac)
    start[rng.integers(k)] += 0.5
    trans = rng.random((k, k)) * (rng.random((k, k)) > zero_frac)
    trans[np.arange(k), rng.integers(0, k, size=k)] += 0.5
    start /= start.sum()
    trans /= trans.sum(axis=1, keepdims=True)
    le = rng.normal(0.0, spread, size=(int(lengths.sum()), k)) - 50.0
    return _log(start), _log(trans), le, lengths


def assert_matches_oracle(post, oracle, lengths):
    assert isinstance(post, Posterior)
    np.testing.assert_allclose(post.seq_log_likelihood, oracle["seq_ll"], rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(post.log_likelihood, oracle["seq_ll"].sum(), rtol=1e-12, atol=1e-8)
    possible = np.repeat(np.isfinite(oracle["seq_ll"]), lengths)
    np.testing.assert_allclose(post.posteriors[possible], oracle["gamma"][possible], atol=1e-9)
    assert np.all(np.isnan(post.posteriors[~possible]))
    np.testing.assert_allclose(post.start_counts, oracle["start"], atol=1e-9)
    np.testing.assert_allclose(post.trans_counts, oracle["trans"], atol=1e-9)


# --------------------------------------------------------------------------------------
# Exact oracle
# --------------------------------------------------------------------------------------


@settings(max_examples=150)
@given(hmm_problems())
def test_forward_backward_matches_brute_force(problem):
    lpi, lA, le, lengths = problem
    oracle = brute_force(lpi, lA, le, lengths)
    for backend in BACKENDS:
        post = forward_backward(lpi, lA, le, lengths, backend=backend)
        assert_matches_oracle(post, oracle, lengths)
        # Exact zeros stay exact zeros.
        assert np.all(post.trans_counts[lA == -np.inf] == 0.0)
        assert np.all(post.start_counts[lpi == -np.inf] == 0.0)


@settings(max_examples=60)
@given(hmm_problems())
def test_log_space_forward_backward_matches_brute_force(problem):
    # The log-space recursion is normally only a fallback; test it on every problem.
    lpi, lA, le, lengths = problem
    oracle = brute_force(lpi, lA, le, lengths)
    for use_numba in [False] + ([True] if has_numba() else []):
        gamma, trans, seq_ll = fb_mod._log_forward_backward(lpi, lA, le, lengths, use_numba)
        possible = np.isfinite(oracle["seq_ll"])
        post = Posterior(
            gamma, gamma[_starts(lengths)[possible]].sum(axis=0), trans, seq_ll.sum(), seq_ll
        )
        assert_matches_oracle(post, oracle, lengths)


@settings(max_examples=150)
@given(hmm_problems())
def test_viterbi_matches_brute_force(problem):
    lpi, lA, le, lengths = problem
    oracle = brute_force(lpi, lA, le, lengths)
    expected = sum(oracle["best"])
    for backend in BACKENDS:
        path, log_prob = viterbi(lpi, lA, le, lengths, backend=backend)
        assert path.dtype == np.int64 and path.shape == (le.shape[0],)
        if expected == -np.inf:
            assert log_prob == -np.inf
            continue
        np.testing.assert_allclose(log_prob, expected, rtol=1e-12)
        # The returned path really achieves the optimum ...
        np.testing.assert_allclose(path_score(lpi, lA, le, lengths, path), expected, rtol=1e-12)
        # ... and is the oracle's when the optimum is unique.
        for first, L, ties in zip(_starts(lengths), lengths, oracle["best_paths"], strict=True):
            if len(ties) == 1:
                np.testing.assert_array_equal(path[first : first + L], ties[0])


@settings(max_examples=60)
@given(hmm_problems(max_len=5))
def test_forward_and_backward_match_brute_force(problem):
    lpi, lA, le, lengths = problem
    la_true, lb_true = brute_alpha_beta(lpi, lA, le, lengths)
    oracle = brute_force(lpi, lA, le, lengths)
    la, seq_ll = forward(lpi, lA, le, lengths)
    lb = backward(lpi, lA, le, lengths)
    for got, want in [(la, la_true), (lb, lb_true)]:
        assert got.shape == want.shape
        np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
        finite = np.isfinite(want)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-12, atol=1e-8)
    np.testing.assert_allclose(seq_ll, oracle["seq_ll"], rtol=1e-12, atol=1e-8)


def test_forward_and_backward_without_numba(monkeypatch):
    # The public log-space functions fall back to the numpy reference.
    lpi, lA, le, lengths = random_problem(np.random.default_rng(3), 3, [4, 1, 5])
    expected_la, expected_ll = forward(lpi, lA, le, lengths)
    expected_lb = backward(lpi, lA, le, lengths)
    la_true, lb_true = brute_alpha_beta(lpi, lA, le, lengths)
    monkeypatch.setattr(compiled, "has_numba", lambda: False)
    monkeypatch.setattr(fb_mod, "has_numba", lambda: False)
    la, ll = forward(lpi, lA, le, lengths)
    lb = backward(lpi, lA, le, lengths)
    finite = np.isfinite(la_true)
    np.testing.assert_allclose(la[finite], la_true[finite], rtol=1e-12)
    np.testing.assert_allclose(lb, lb_true, rtol=1e-12)
    np.testing.assert_allclose(la[finite], expected_la[finite], rtol=1e-12)
    np.testing.assert_allclose(lb, expected_lb, rtol=1e-12)
    np.testing.assert_allclose(ll, expected_ll, rtol=1e-12)
    post = forward_backward(lpi, lA, le, lengths)  # "auto" -> numpy
    np.testing.assert_allclose(post.seq_log_likelihood, ll, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Cases the scaled recursion cannot represent: they must be detected and recomputed
# --------------------------------------------------------------------------------------

HARD_CASES = {
    # Two disconnected absorbing states: at step 0 state 1 is 750 nats worse (its
    # probability underflows), afterwards it is 600 nats better at every step.
    "lost_state": (
        [0.5, 0.5],
        [[1.0, 0.0], [0.0, 1.0]],
        [[0.0, -750.0], [-600.0, 0.0], [-600.0, 0.0]],
    ),
    # Left-right chain starting in state 0 while the data look like state 2: the
    # scaled backward variable of the unreachable state overflows.
    "backward_overflow": (
        [1.0, 0.0, 0.0],
        [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]],
        [[0.0, 0.0, 0.0]] + [[-1000.0, -1000.0, 0.0]] * 4,
    ),
    # The only possible path's probability underflows at step 1 (c_t == 0).
    "scale_underflow": (
        [1.0, 0.0],
        [[0.5, 0.5], [0.0, 1.0]],
        [[0.0, 0.0], [-1000.0, 0.0], [0.0, -2000.0], [0.0, -2000.0]],
    ),
    # A positive transition probability below the smallest normal double (log = -800,
    # set in the test) that the best explanation needs.
    "subnormal_transition": (
        [0.0, 1.0],
        [[1.0, 0.0], [0.0, 1.0]],
        [[0.0, 0.0], [0.0, -900.0], [0.0, -900.0]],
    ),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(HARD_CASES))
def test_hard_cases_match_brute_force(name, backend):
    start, trans, le = HARD_CASES[name]
    lpi, lA, le = _log(start), _log(trans), np.array(le)
    if name == "subnormal_transition":
        lA[1, 0] = -800.0
    # Add an easy sequence so that fallback results are spliced in among good ones.
    easy = np.zeros((3, lpi.shape[0]))
    le_all = np.vstack([easy, le])
    lengths = np.array([3, le.shape[0]])
    oracle = brute_force(lpi, lA, le_all, lengths)
    post = forward_backward(lpi, lA, le_all, lengths, backend=backend)
    assert_matches_oracle(post, oracle, lengths)
    path, log_prob = viterbi(lpi, lA, le_all, lengths, backend=backend)
    np.testing.assert_allclose(log_prob, sum(oracle["best"]), rtol=1e-12)


@pytest.mark.parametrize("name", ["lost_state", "backward_overflow", "scale_underflow"])
def test_hard_cases_are_detected(name):
    start, trans, le = HARD_CASES[name]
    args = (np.array(start), np.array(trans), np.array(le), np.array([len(le)]))
    assert fb_mod._scaled_fb_numpy(*args)[3].all()
    if has_numba():
        from emframe.inference.hmm import _numba

        failed = _numba.scaled_forward_backward(
            *args[:3], np.array([0]), args[3],
            hmm_common._IDENTITY_TOL, hmm_common._MIN_SCALE, hmm_common._LOG_TINY,
        )[3]
        assert failed.all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_impossible_sequences(backend):
    lpi, lA = _log([1.0, 0.0]), _log([[1.0, 0.0], [0.0, 1.0]])
    le = np.array(
        [
            [0.0, -1.0],  # sequence 0: fine
            [-np.inf, 0.0],  # sequence 1: needs state 1, never reachable
            [-np.inf, -np.inf],  # sequence 2: impossible step
            [0.0, 0.0],
        ]
    )
    lengths = [1, 1, 2]
    post = forward_backward(lpi, lA, le, lengths, backend=backend)
    np.testing.assert_array_equal(post.seq_log_likelihood, [0.0, -np.inf, -np.inf])
    assert post.log_likelihood == -np.inf
    np.testing.assert_array_equal(post.posteriors[0], [1.0, 0.0])
    assert np.all(np.isnan(post.posteriors[1:]))
    np.testing.assert_array_equal(post.start_counts, [1.0, 0.0])
    np.testing.assert_array_equal(post.trans_counts, np.zeros((2, 2)))
    path, log_prob = viterbi(lpi, lA, le, lengths, backend=backend)
    assert log_prob == -np.inf and path.shape == (4,)
    la, seq_ll = forward(lpi, lA, le, lengths)
    np.testing.assert_array_equal(seq_ll, [0.0, -np.inf, -np.inf])
    assert not np.any(np.isnan(la)) and not np.any(np.isnan(backward(lpi, lA, le, lengths)))


# --------------------------------------------------------------------------------------
# Backends agree
# --------------------------------------------------------------------------------------


@needs_numba
@pytest.mark.parametrize("seed", range(6))
def test_numpy_and_numba_agree(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, 7))
    lengths = rng.integers(1, 60, size=int(rng.integers(1, 12)))
    lengths[rng.random(lengths.shape) < 0.3] = 1  # T = 1 sequences
    lpi, lA, le, lengths = random_problem(rng, k, lengths, spread=[1.0, 20.0, 400.0][seed % 3])
    a = forward_backward(lpi, lA, le, lengths, backend="numpy")
    b = forward_backward(lpi, lA, le, lengths, backend="numba")
    np.testing.assert_allclose(a.posteriors, b.posteriors, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.start_counts, b.start_counts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.trans_counts, b.trans_counts, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.seq_log_likelihood, b.seq_log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(a.log_likelihood, b.log_likelihood, rtol=1e-12)
    pa, lpa = viterbi(lpi, lA, le, lengths, backend="numpy")
    pb, lpb = viterbi(lpi, lA, le, lengths, backend="numba")
    np.testing.assert_array_equal(pa, pb)
    np.testing.assert_allclose(lpa, lpb, rtol=1e-12)
    # The log-space kernels agree with the numpy reference too.
    from emframe.inference.hmm import _numba

    starts = _starts(lengths)
    for got, want in zip(
        _numba.log_forward(lpi, lA, le, starts, lengths),
        logspace._log_forward_numpy(lpi, lA, le, lengths),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    for got, want in zip(
        _numba.log_backward(lA, le, starts, lengths),
        logspace._log_backward_numpy(lA, le, lengths),
        strict=True,
    ):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    ga, ta, la_ = fb_mod._log_forward_backward(lpi, lA, le, lengths, False)
    gb, tb, lb_ = fb_mod._log_forward_backward(lpi, lA, le, lengths, True)
    np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ta, tb, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(la_, lb_, rtol=1e-12)
    np.testing.assert_allclose(ga, a.posteriors, atol=1e-9)


def test_viterbi_ties_go_to_lowest_index():
    k, n = 3, 5
    lpi, lA, le = np.full(k, -np.log(k)), np.full((k, k), -np.log(k)), np.zeros((n, k))
    for backend in BACKENDS:
        path, log_prob = viterbi(lpi, lA, le, [2, 3], backend=backend)
        np.testing.assert_array_equal(path, np.zeros(n, dtype=np.int64))
        np.testing.assert_allclose(log_prob, -n * np.log(k))


# --------------------------------------------------------------------------------------
# Numerical stability
# --------------------------------------------------------------------------------------


def test_long_sequence_with_tiny_likelihoods_is_stable():
    # T = 1e6 with emission log-likelihoods around -1e4, left-right-cyclic zeros.
    rng = np.random.default_rng(0)
    n = 1_000_000
    lpi = _log([1.0, 0.0, 0.0])
    lA = _log([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.1, 0.0, 0.9]])
    le = -1e4 + rng.normal(0.0, 20.0, size=(n, 3))
    post = forward_backward(lpi, lA, le)  # fastest backend
    assert np.isfinite(post.log_likelihood)
    assert np.all(np.isfinite(post.posteriors))
    np.testing.assert_allclose(post.posteriors.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(post.trans_counts.sum(), n - 1, rtol=1e-9)
    assert post.trans_counts[0, 2] == post.trans_counts[1, 0] == post.trans_counts[2, 1] == 0.0
    # The log-likelihood lies between the best path's and the best-state bound.
    _, best_path = viterbi(lpi, lA, le)
    assert best_path <= post.log_likelihood <= le.max(axis=1).sum()


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_step_with_all_emissions_very_small(backend):
    lpi, lA = _log([0.2, 0.3, 0.5]), _log(np.full((3, 3), 1 / 3))
    le = np.full((1, 3), -1e4)
    post = forward_backward(lpi, lA, le, backend=backend)
    np.testing.assert_allclose(post.log_likelihood, -1e4, rtol=1e-15)
    np.testing.assert_allclose(post.posteriors, [[0.2, 0.3, 0.5]], rtol=1e-14)
    np.testing.assert_allclose(post.start_counts, [0.2, 0.3, 0.5], rtol=1e-14)
    np.testing.assert_array_equal(post.trans_counts, np.zeros((3, 3)))
    path, log_prob = viterbi(lpi, lA, le, backend=backend)
    np.testing.assert_array_equal(path, [2])
    np.testing.assert_allclose(log_prob, -1e4 + np.log(0.5), rtol=1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_transitions_stay_exactly_zero(backend):
    rng = np.random.default_rng(1)
    k = 4
    trans = np.triu(rng.random((k, k)))  # left-right
    trans[np.abs(np.subtract.outer(range(k), range(k))) > 1] = 0.0
    trans /= trans.sum(axis=1, keepdims=True)
    lpi, lA = _log([0.7, 0.3, 0.0, 0.0]), _log(trans)
    lengths = [50, 1, 30, 2]
    for spread in [1.0, 100.0, 2000.0]:
        le = rng.normal(0.0, spread, size=(sum(lengths), k)) - 1e4
        post = forward_backward(lpi, lA, le, lengths, backend=backend)
        assert np.all(np.isfinite(post.posteriors))
        assert np.all(post.trans_counts[trans == 0.0] == 0.0)
        assert np.all(post.start_counts[2:] == 0.0)
        assert np.all(post.posteriors[_starts(lengths)][:, 2:] == 0.0)


# --------------------------------------------------------------------------------------
# API contract
# --------------------------------------------------------------------------------------


def test_validate_lengths():
    np.testing.assert_array_equal(validate_lengths(None, 7), [7])
    out = validate_lengths([3, 4], 7)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, [3, 4])
    np.testing.assert_array_equal(validate_lengths(np.array([3.0, 4.0]), 7), [3, 4])
    with pytest.raises(ValueError, match=r"sum\(lengths\) = 6.*n_samples = 7"):
        validate_lengths([3, 3], 7)
    with pytest.raises(ValueError, match="positive"):
        validate_lengths([0, 7], 7)
    with pytest.raises(ValueError, match="positive"):
        validate_lengths([-1, 8], 7)
    with pytest.raises(ValueError, match="integer"):
        validate_lengths([2.5, 4.5], 7)
    with pytest.raises(ValueError, match="integer"):
        validate_lengths(["3", "4"], 7)
    with pytest.raises(ValueError, match="1-D"):
        validate_lengths([[3, 4]], 7)
    with pytest.raises(ValueError, match="1-D"):
        validate_lengths(7, 7)
    with pytest.raises(ValueError, match="at least one"):
        validate_lengths([], 0)


def test_lengths_are_checked_by_every_routine():
    lpi, lA, le, _ = random_problem(np.random.default_rng(0), 2, [5])
    for fn in (forward, backward, forward_backward, viterbi):
        with pytest.raises(ValueError, match="n_samples = 5"):
            fn(lpi, lA, le, [2, 2])


def test_bad_inputs_raise():
    lpi, lA, le, _ = random_problem(np.random.default_rng(0), 2, [5])
    with pytest.raises(ValueError, match="log_transmat"):
        forward_backward(lpi, lA[:1], le)
    with pytest.raises(ValueError, match="log_emission"):
        forward_backward(lpi, lA, le[:, :1])
    bad = le.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        viterbi(lpi, lA, bad)
    with pytest.raises(ValueError, match="unknown backend"):
        forward_backward(lpi, lA, le, backend="cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        viterbi(lpi, lA, le, backend="cuda")


def test_numba_backend_without_numba(monkeypatch):
    monkeypatch.setattr(compiled, "has_numba", lambda: False)
    monkeypatch.setattr(fb_mod, "has_numba", lambda: False)
    lpi, lA, le, _ = random_problem(np.random.default_rng(0), 2, [5])
    with pytest.raises(ValueError, match=r'pip install "emframe\[fast\]"'):
        forward_backward(lpi, lA, le, backend="numba")
    with pytest.raises(ValueError, match=r'pip install "emframe\[fast\]"'):
        viterbi(lpi, lA, le, backend="numba")
    forward_backward(lpi, lA, le, backend="auto")  # silently uses numpy


def test_inputs_are_not_modified():
    lpi, lA, le, lengths = random_problem(np.random.default_rng(0), 3, [4, 1, 6], spread=900.0)
    lengths = list(lengths)
    copies = [lpi.copy(), lA.copy(), le.copy(), list(lengths)]
    for backend in BACKENDS:
        forward_backward(lpi, lA, le, lengths, backend=backend)
        viterbi(lpi, lA, le, lengths, backend=backend)
    forward(lpi, lA, le, lengths)
    backward(lpi, lA, le, lengths)
    for before, after in zip(copies, [lpi, lA, le, lengths], strict=True):
        np.testing.assert_array_equal(before, after)


def test_posterior_is_frozen():
    lpi, lA, le, _ = random_problem(np.random.default_rng(0), 2, [3])
    post = forward_backward(lpi, lA, le)
    with pytest.raises(AttributeError):
        post.log_likelihood = 0.0  # type: ignore[misc]
    assert isinstance(post.log_likelihood, float)
    assert post.seq_log_likelihood.shape == (1,)
