"""The blocked scaled forward-backward (numpy backend, long sequences).

The per-step recursion ``recursions._scaled_fb_steps`` is the reference: the blocked
path must give its answers up to rounding, hand back (to it) every sequence it cannot
vouch for, and so trigger the log-space fallback exactly where the reference does. The
tests force the blocked path onto small data by lowering its length threshold and its
chunk length; brute-force enumeration checks the end result on tiny problems.
"""

import contextlib
from unittest import mock

import numpy as np
import pytest
from hmm_bruteforce import brute_force
from hypothesis import example, given, settings
from hypothesis import strategies as st

from emframe.inference.hmm import blocked, forward_backward, has_numba
from emframe.inference.hmm import recursions as fb_mod
from emframe.inference.hmm.common import _MIN_SCALE


@contextlib.contextmanager
def forced_blocked(chunk: int, block_min: int = 1):
    """Send every sequence of at least ``block_min`` steps to the blocked path."""
    with mock.patch.object(blocked, "BLOCK_MIN", block_min), \
            mock.patch.object(blocked, "_COST_RATIO", np.inf), \
            mock.patch.object(blocked, "chunk_length", lambda t_max: chunk):
        yield


@contextlib.contextmanager
def spy_blocked():
    """Record the ``ok`` flags of every blocked call."""
    calls = []
    real = blocked.blocked_fb

    def spy(*args):
        out = real(*args)
        calls.append(out[3].copy())
        return out

    with mock.patch.object(blocked, "blocked_fb", spy):
        yield calls


def _log(p):
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(p, dtype=float))


@st.composite
def problems(draw, max_k=5, max_len=50, max_seq=4):
    """HMMs with exact zeros (some left-right), huge emission contrasts, -inf cells."""
    k = draw(st.integers(1, max_k))
    lengths = np.array(draw(st.lists(st.integers(1, max_len), min_size=1, max_size=max_seq)))
    n = int(lengths.sum())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    zero_frac = draw(st.sampled_from([0.0, 0.3, 0.6]))
    start = rng.random(k) * (rng.random(k) > zero_frac)
    start[rng.integers(k)] += 0.5
    trans = rng.random((k, k)) * (rng.random((k, k)) > zero_frac)
    if draw(st.booleans()):
        trans = np.triu(trans)  # left-right: no way back
    trans[np.arange(k), np.arange(k)] += 0.5
    start /= start.sum()
    trans /= trans.sum(axis=1, keepdims=True)
    # spread 1000 flushes cells (below exp()'s range) and makes states vanish and come
    # back, which must go to log space; 680 puts scales near _MIN_SCALE.
    spread = draw(st.sampled_from([1.0, 30.0, 300.0, 680.0, 1000.0]))
    le = rng.random((n, k)) * -spread + draw(st.sampled_from([0.0, -1e4]))
    if draw(st.booleans()):
        le[(rng.random((n, k)) < 0.15)] = -np.inf
    return start, trans, le, lengths


def _reference(start, trans, le, lengths):
    return fb_mod._scaled_fb_steps(start, trans, le, lengths)[:4]


def assert_same_as_reference(got, want, lengths):
    gamma, tc, ll, failed = got
    r_gamma, r_tc, r_ll, r_failed = want
    np.testing.assert_array_equal(failed, r_failed)
    ok = ~r_failed
    np.testing.assert_allclose(ll[ok], r_ll[ok], rtol=1e-10, atol=1e-10)
    rows = np.repeat(ok, lengths)
    np.testing.assert_allclose(gamma[rows], r_gamma[rows], rtol=0, atol=1e-10)
    np.testing.assert_allclose(tc, r_tc, rtol=1e-10, atol=1e-10 * max(1.0, r_tc.max()))


# --------------------------------------------------------------------------------------
# Equality with the per-step reference
# --------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(problems(), st.integers(2, 7), st.integers(1, 30))
# The per-step recursion fails here (the backward variable of the impossible state 0
# overflows over 14 steps, so the sequence goes to log space); the blocked one, whose
# chunks are short, does not, and must then give the exact result.
@example(problem=(np.array([0.0, 1.0]), np.eye(2), np.array(
    [[-167.17, -595.19], [-162.67, -711.05], [-198.45, -187.62], [-213.34, -396.49],
     [-636.44, -824.69], [-806.98, -461.98], [-302.73, -589.49], [-275.41, -740.09],
     [-934.06, -610.77], [-824.1, -716.19], [-385.6, -71.29], [-253.54, -825.57],
     [-9.91, -446.61], [-689.77, -2.79]]), np.array([14])), chunk=3, block_min=1)
def test_blocked_equals_per_step_reference(problem, chunk, block_min):
    start, trans, le, lengths = problem
    want = _reference(start, trans, le, lengths)
    with forced_blocked(chunk, block_min):
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    # the blocked path fails (hands over to log space) only where the per-step one does
    assert not np.any(got[3] & ~want[3])
    if np.array_equal(got[3], want[3]):
        assert_same_as_reference(got, want, lengths)
        return
    # where only the per-step path failed, the results of the whole computation (the
    # per-step path's failed sequences redone in log space) are the same
    ref = forward_backward(_log(start), _log(trans), le, lengths, backend="numpy")
    with forced_blocked(chunk, block_min):
        post = forward_backward(_log(start), _log(trans), le, lengths, backend="numpy")
    np.testing.assert_allclose(post.seq_log_likelihood, ref.seq_log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(post.posteriors, ref.posteriors, rtol=0, atol=1e-10)
    np.testing.assert_allclose(post.trans_counts, ref.trans_counts, rtol=1e-10,
                               atol=1e-10 * max(1.0, ref.trans_counts.max()))


@settings(max_examples=60, deadline=None)
@given(problems(max_k=3, max_len=6, max_seq=3), st.integers(2, 4))
def test_blocked_matches_brute_force(problem, chunk):
    start, trans, le, lengths = problem
    with np.errstate(invalid="ignore"):  # impossible sequences: -inf - -inf
        oracle = brute_force(start, trans, le, list(lengths))
    with forced_blocked(chunk):
        post = forward_backward(_log(start), _log(trans), le, lengths, backend="numpy")
    np.testing.assert_allclose(post.log_likelihood, oracle["loglik"], rtol=1e-10, atol=1e-8)
    if np.isfinite(oracle["loglik"]):
        np.testing.assert_allclose(post.posteriors, oracle["posteriors"], atol=1e-9)
        np.testing.assert_allclose(post.start_counts, oracle["start"], atol=1e-9)
        np.testing.assert_allclose(post.trans_counts, oracle["trans"], atol=1e-9)


def _ordinary(rng, k, lengths):
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k)
    return start, trans, rng.normal(0.0, 3.0, size=(int(np.sum(lengths)), k)) - 20.0


def test_blocked_path_is_taken_and_accepts_ordinary_data():
    rng = np.random.default_rng(0)
    lengths = np.array([3000, 700, 40, 1999])  # not multiples of the chunk length
    start, trans, le = _ordinary(rng, 5, lengths)
    with spy_blocked() as calls:
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    # the default selection: the three sequences of >= BLOCK_MIN steps, all accepted
    assert len(calls) == 1 and calls[0].tolist() == [True, True, True]
    assert_same_as_reference(got, _reference(start, trans, le, lengths), lengths)


def test_selection():
    # one long sequence (issue 12's W3) is blocked; 100 x 1,000 (W2) stays per step
    assert blocked.selected(np.array([100_000]), 8).all()
    assert not blocked.selected(np.full(100, 1000), 8).any()
    assert blocked.selected(np.array([50, 100_000, 5000]), 8).tolist() == [False, True, True]
    # the operators cost ~K**3: not worth it for many states
    assert not blocked.selected(np.array([100_000]), 40).any()


# --------------------------------------------------------------------------------------
# What the blocked path must hand back, and what it may keep
# --------------------------------------------------------------------------------------


def _left_right_segments(contrast, seg=12):
    """3-state left-right chain; the data are seg steps of each state in turn."""
    start = np.array([1.0, 0.0, 0.0])
    trans = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    le = np.full((3 * seg, 3), -contrast)
    for s in range(3):
        le[s * seg : (s + 1) * seg, s] = 0.0
    return start, trans, le, np.array([3 * seg])


def test_rows_that_die_cleanly_are_kept():
    # Contrasts beyond exp()'s range flush the other states' emissions: the operator
    # rows of states that cannot explain a chunk become exact zeros. That is exact
    # (in the flushed model the per-step recursion computes too), so no hand-back.
    start, trans, le, lengths = _left_right_segments(1000.0)
    with forced_blocked(5):
        emis = blocked._emissions(le)
        clen = np.full(36 // 5 + 1, 5)
        clen[-1] = 36 - 5 * 7
        first = np.zeros(clen.shape[0], dtype=bool)
        first[0] = True
        _, log_scale, log_lost, odd = blocked._operators(start, trans, emis, clen, first)
        assert np.isneginf(log_scale).any() and np.isneginf(log_lost).all() and not odd.any()
        with spy_blocked() as calls:
            got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    assert calls[0].all()
    assert_same_as_reference(got, _reference(start, trans, le, lengths), lengths)


def test_tiny_operator_scale_negligible_row_is_dropped():
    # Started in state 1, the chain stays there and every step costs 680 nats: the
    # operator row's scale falls to ~1e-295, below _MIN_SCALE, where products can be
    # subnormal. The row is dropped with a bound on its mass; here that bound is
    # negligible (the chain is in state 0), so the sequence is kept.
    start = np.array([1.0, 0.0])
    trans = np.array([[0.5, 0.5], [0.0, 1.0]])
    le = np.tile([0.0, -680.0], (20, 1))
    lengths = np.array([20])
    assert np.exp(-680.0) < _MIN_SCALE
    clen, first = np.full(5, 4), np.arange(5) == 0
    _, _, log_lost, _ = blocked._operators(start, trans, blocked._emissions(le), clen, first)
    assert np.isfinite(log_lost[1:, 1]).all()
    with forced_blocked(4), spy_blocked() as calls:
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    assert calls[0].all()
    assert_same_as_reference(got, _reference(start, trans, le, lengths), lengths)


def test_dropped_row_that_matters_is_handed_back():
    # Two disconnected states; state 1 is 645 nats less likely after step 0, then state 0
    # loses 680 nats at step 2: the operator row of state 0 is dropped there, and the
    # bound on what it held (~1e-290 against the chunk's likelihood ~1e-280) is too large.
    # The per-step recursion is fine (every scale factor is ~1e-280 or more), so the
    # sequence must be handed back to it; the ordinary sequence beside it is kept.
    start = np.array([0.5, 0.5])
    trans = np.eye(2)
    hard = np.array([[0.0, -645.0], [0.0, 0.0], [-680.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    easy = np.random.default_rng(1).normal(size=(9, 2))
    le = np.vstack([easy, hard])
    lengths = np.array([9, 5])
    want = _reference(start, trans, le, lengths)
    assert not want[3].any()
    with forced_blocked(2):
        assert blocked.blocked_fb(start, trans, le, lengths,
                                  fb_mod._scaled_fb_steps)[3].tolist() == [True, False]
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    assert_same_as_reference(got, want, lengths)


HARD = {
    # a state 750 nats worse at one step (flushed), then 600 nats better at every step
    "lost_state": ([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]],
                   [[0.0, 0.0]] * 4 + [[0.0, -750.0]] + [[-600.0, 0.0]] * 4),
    # the scaled backward variable of an unreachable state overflows
    "backward_overflow": ([1.0, 0.0, 0.0], [[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.0, 0.0, 1.0]],
                          [[0.0, 0.0, 0.0]] + [[-1000.0, -1000.0, 0.0]] * 6),
    # the only possible path's probability underflows (a zero scale factor)
    "scale_underflow": ([1.0, 0.0], [[0.5, 0.5], [0.0, 1.0]],
                        [[0.0, 0.0]] * 3 + [[-1000.0, 0.0]] + [[0.0, -2000.0]] * 5),
}


@pytest.mark.parametrize("chunk", [2, 3, 4])
@pytest.mark.parametrize("name", sorted(HARD))
def test_hard_cases_fail_as_in_the_reference(name, chunk):
    start, trans, hard = (np.array(x, dtype=float) for x in HARD[name])
    easy = np.zeros((5, start.shape[0]))
    le = np.vstack([easy, hard])
    lengths = np.array([5, hard.shape[0]])
    want = _reference(start, trans, le, lengths)
    assert want[3].tolist() == [False, True]
    with forced_blocked(chunk):
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
        assert_same_as_reference(got, want, lengths)
        post = forward_backward(_log(start), _log(trans), le, lengths, backend="numpy")
    oracle = brute_force(start, trans, le, list(lengths))
    np.testing.assert_allclose(post.log_likelihood, oracle["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post.posteriors, oracle["posteriors"], atol=1e-9)
    np.testing.assert_allclose(post.trans_counts, oracle["trans"], atol=1e-9)


def test_inconsistent_boundaries_are_handed_back():
    # With a negative tolerance every boundary looks inconsistent: every sequence is
    # handed back and the answer is the reference's, bit for bit.
    rng = np.random.default_rng(2)
    lengths = np.array([30, 17])
    start, trans, le = _ordinary(rng, 3, lengths)
    with forced_blocked(4), mock.patch.object(blocked, "_CONSISTENCY_TOL", -1.0):
        assert not blocked.blocked_fb(start, trans, le, lengths, fb_mod._scaled_fb_steps)[3].any()
        got = fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    for a, b in zip(got, _reference(start, trans, le, lengths), strict=True):
        np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(3)
    lengths = np.array([40, 9])
    start, trans, le = _ordinary(rng, 3, lengths)
    copies = [x.copy() for x in (start, trans, le, lengths)]
    with forced_blocked(3):
        fb_mod._scaled_fb_numpy(start, trans, le, lengths)
    for x, c in zip((start, trans, le, lengths), copies, strict=True):
        np.testing.assert_array_equal(x, c)


# --------------------------------------------------------------------------------------
# Model level
# --------------------------------------------------------------------------------------


@pytest.mark.skipif(not has_numba(), reason="numba not installed")
def test_gaussian_hmm_numpy_fit_on_a_long_sequence_equals_numba():
    from emframe.models import GaussianHMM

    rng = np.random.default_rng(4)
    k, d, n = 4, 2, 6000
    z = np.cumsum(rng.random(n) < 0.05) % k
    X = rng.normal(size=(k, d))[z] * 3.0 + rng.normal(size=(n, d))
    fits = {}
    for backend in ("numpy", "numba"):
        model = GaussianHMM(k, "diag", init_params="", tol=0.0, max_iter=8, backend=backend)
        model.startprob_ = np.full(k, 1.0 / k)
        model.transmat_ = 0.7 * np.eye(k) + 0.3 / k
        model.means_ = X[:: n // k][:k]
        model.covars_ = np.tile(X.var(axis=0), (k, 1))
        with spy_blocked() as calls:
            fits[backend] = model.fit(X)
        if backend == "numpy":
            assert calls and all(c.all() for c in calls)  # the blocked path did the work
    a, b = fits["numpy"], fits["numba"]
    np.testing.assert_allclose(a.loglik_history_, b.loglik_history_, rtol=1e-11)
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-12)
