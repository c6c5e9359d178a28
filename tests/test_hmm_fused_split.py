"""The fused Gaussian HMM E-step of a long sequence split in halves on two threads
equals the numpy reference and the one-pass kernel."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from emframe.models import GaussianHMM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from interrupts import interrupted_while_running
from test_hmm_fused import assert_close, random_hmm, reference, sample

from emframe.inference.hmm import diag_gaussian_e_step

pytest.importorskip("numba")

from emframe.inference.hmm import _fused_numba, fused  # noqa: E402

BLOCK = _fused_numba.BLOCK
FIELDS = ("start_counts", "trans_counts", "nk", "sum_x", "sum_xx", "seq_log_likelihood")


@pytest.fixture
def spy(monkeypatch):
    """Split every sequence of 2 steps or more (on two threads even on one core) and
    record what each split returned (None: a check failed, the one-pass kernel ran)."""
    calls = []
    split = fused._split_sequence

    def recorded(*args):
        res = split(*args)
        calls.append(res)
        return res

    monkeypatch.setattr(fused, "_SPLIT_MIN", 2)
    monkeypatch.setattr(fused, "_two_cores", lambda: True)
    monkeypatch.setattr(fused, "_split_sequence", recorded)
    return calls


def one_pass(monkeypatch, *args):
    with monkeypatch.context() as m:
        m.setattr(fused, "_SPLIT_MIN", 2**62)
        return diag_gaussian_e_step(*args)


def assert_same(res, ref, rtol=1e-10):
    np.testing.assert_array_equal(res.failed, ref.failed)
    for name in FIELDS:
        a, b = getattr(res, name), getattr(ref, name)
        if name == "seq_log_likelihood":
            a, b = a[~ref.failed], b[~ref.failed]
        assert_close(a, b, rtol)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # spy cleared per example
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 6),
    d=st.integers(1, 3),
    lengths=st.lists(st.integers(2, 4 * BLOCK + 40), min_size=1, max_size=3),
    spread=st.sampled_from([0.5, 3.0]),
    sticky=st.sampled_from([0.0, 0.5, 0.95]),
)
def test_split_e_step_equals_the_numpy_reference(spy, monkeypatch, seed, k, d, lengths,
                                                 spread, sticky):
    spy.clear()
    rng = np.random.default_rng(seed)
    startprob, transmat, means, pc = random_hmm(rng, k, d, spread, sticky)
    lengths = np.array(lengths, dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    assert len(spy) == len(lengths)
    assert_same(res, one_pass(monkeypatch, startprob, transmat, means, pc, X, lengths))
    if not res.failed.any():
        post, nk, sx, sxx = reference(startprob, transmat, means, pc, X, lengths)
        assert_close(res.seq_log_likelihood, post.seq_log_likelihood, 1e-11)
        assert_close(res.start_counts, post.start_counts)
        assert_close(res.trans_counts, post.trans_counts)
        assert_close(res.nk, nk)
        assert_close(res.sum_x, sx)
        assert_close(res.sum_xx, sxx)


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 5),
    lengths=st.lists(st.integers(1, 400), min_size=1, max_size=6),
    solo=st.booleans(),
)
def test_sequences_in_two_groups_equal_the_numpy_reference(monkeypatch, seed, k, lengths,
                                                          solo):
    monkeypatch.setattr(fused, "_GROUP_MIN", 2)
    monkeypatch.setattr(fused, "_two_cores", lambda: True)
    monkeypatch.setattr(fused, "_SOLO", [10**9 if solo else 0])
    monkeypatch.setattr(fused, "_SOLO_AFTER_LAG", 0)
    rng = np.random.default_rng(seed)
    startprob, transmat, means, pc = random_hmm(rng, k, 2, 2.0, 0.8)
    lengths = np.array(lengths, dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    groups = fused._two_groups(np.arange(len(lengths)), lengths)
    assert len(groups) == min(2, len(lengths))
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    post, nk, sx, sxx = reference(startprob, transmat, means, pc, X, lengths)
    assert not res.failed.any()
    assert_close(res.seq_log_likelihood, post.seq_log_likelihood, 1e-11)
    assert_close(res.start_counts, post.start_counts)
    assert_close(res.trans_counts, post.trans_counts)
    assert_close(res.nk, nk)
    assert_close(res.sum_x, sx)
    assert_close(res.sum_xx, sxx)


def test_groups_are_cut_by_steps_and_only_when_large():
    lengths = np.array([100, 100, 100, 700, 50], dtype=np.int64)
    seqs = np.arange(5)
    assert [g.tolist() for g in fused._two_groups(seqs, lengths)] == [seqs.tolist()]  # < 8192
    lengths = lengths * 10
    assert [g.tolist() for g in fused._two_groups(seqs, lengths)] == [[0, 1, 2], [3, 4]]
    assert [g.tolist() for g in fused._two_groups(seqs[:1], lengths)] == [[0]]
    assert fused._two_groups(seqs[:0], lengths) == []


@pytest.mark.parametrize("n", [2, 3, BLOCK, 2 * BLOCK, 2 * BLOCK + 1, 5 * BLOCK + 17, 9000])
def test_split_path_is_taken_and_exact_across_block_boundaries(spy, n):
    # halves of odd and even lengths, block boundaries inside either half, the halves'
    # last blocks short
    rng = np.random.default_rng(n)
    startprob, transmat, means, pc = random_hmm(rng, 4, 3, 2.0, 0.8)
    lengths = np.array([n], dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    assert spy[0] is not None  # no check failed: the split recursions' result
    post, nk, sx, sxx = reference(startprob, transmat, means, pc, X, lengths)
    assert_close(res.seq_log_likelihood, post.seq_log_likelihood, 1e-12)
    assert_close(res.start_counts, post.start_counts)
    assert_close(res.trans_counts, post.trans_counts)
    assert_close(res.nk, nk)
    assert_close(res.sum_x, sx)
    assert_close(res.sum_xx, sxx)


def _hard_cases():
    """Two states, means 0 and 30 (unit variances): at x = 0 state 1 is 450 nats worse,
    at x = 30 450 nats better, at x = 15 they are equal. With disconnected states, two
    steps at 0 underflow state 1's forward probability while later evidence favours it
    (in the first or in the second half); with state 1 unreachable, a step at x = 37.7
    (state 0 680 nats worse) underflows the scale factor; at x = 60 state 0's emission
    ratio is flushed."""
    means = np.array([[0.0], [30.0]])
    pc = np.ones((2, 1))
    absorbing = (np.array([0.5, 0.5]), np.eye(2), means, pc)
    stuck = (np.array([1.0, 0.0]), np.eye(2), means, pc)
    x_under = 450.0 / 30.0 + 680.0 / 30.0
    return {
        "lost_state": (*absorbing, np.r_[[0.0, 0.0], [30.0] * 10]),
        "lost_state_second_half": (*absorbing, np.r_[[15.0] * 8, [0.0, 0.0], [30.0] * 8]),
        "scale_underflow": (*stuck, np.r_[[0.0], [x_under], [0.0] * 5]),
        "scale_underflow_second_half": (*stuck, np.r_[[0.0] * 4, [x_under], [0.0] * 3]),
        "flushed": (*absorbing, np.r_[[0.0], [60.0] * 9]),
    }


@pytest.mark.parametrize("name", sorted(_hard_cases()))
def test_hard_cases_fall_back_to_the_one_pass_kernel(spy, monkeypatch, name):
    startprob, transmat, means, pc, X = _hard_cases()[name]
    easy = np.random.default_rng(0).normal(size=(5, 1))  # state 0 throughout
    X = np.vstack([easy, X[:, None]])
    lengths = np.array([5, X.shape[0] - 5], dtype=np.int64)
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    assert spy[0] is not None and spy[1] is None  # the hard one was recomputed
    ref = one_pass(monkeypatch, startprob, transmat, means, pc, X, lengths)
    assert_same(res, ref, 1e-12)
    post = reference(startprob, transmat, means, pc, X, lengths)[0]
    ok = ~ref.failed
    assert_close(res.seq_log_likelihood[ok], post.seq_log_likelihood[ok], 1e-12)


def test_a_failed_identity_check_falls_back(spy, monkeypatch):
    rng = np.random.default_rng(11)
    startprob, transmat, means, pc = random_hmm(rng, 3, 2, 2.0, 0.9)
    lengths = np.array([1000], dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    args = (startprob, transmat, means, pc, X, lengths)
    split = diag_gaussian_e_step(*args)
    assert spy[-1] is not None
    from emframe.inference.hmm import _fused_split_numba as fs

    forward_second = fs.forward_second

    def off_by_1e_8(*a):  # as if the identity were off by 1e-8 at some step
        ok, log_prod, cd_h, d_last, qmin, qmax, p_h = forward_second(*a)
        return ok, log_prod, cd_h, d_last, qmin, qmax * (1 + 1e-8), p_h

    monkeypatch.setattr(fs, "forward_second", off_by_1e_8)
    fallback = diag_gaussian_e_step(*args)
    assert spy[-1] is None
    assert_same(split, fallback, 1e-12)
    assert_same(fallback, one_pass(monkeypatch, *args), 0.0)


def test_split_results_are_deterministic_and_thread_safe(spy):
    rng = np.random.default_rng(7)
    startprob, transmat, means, pc = random_hmm(rng, 5, 2, 2.0, 0.9)
    lengths = np.array([3000, 1700], dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    args = (startprob, transmat, means, pc, X, lengths)
    first = diag_gaussian_e_step(*args)
    results = [None] * 4

    def run(i):
        for _ in range(3):
            results[i] = diag_gaussian_e_step(*args)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for res in results:
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(res, name), getattr(first, name))


def test_where_the_halves_run_changes_no_result(spy, monkeypatch):
    # on two threads, on the calling thread after a lag, or with the worker's call taken
    # back before it started: the same numbers, bit for bit
    rng = np.random.default_rng(5)
    startprob, transmat, means, pc = random_hmm(rng, 6, 3, 2.0, 0.9)
    lengths = np.array([2500, 3001], dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    args = (startprob, transmat, means, pc, X, lengths)
    monkeypatch.setattr(fused, "_SOLO", [0])
    monkeypatch.setattr(fused, "_SOLO_AFTER_LAG", 0)
    threaded = diag_gaussian_e_step(*args)
    monkeypatch.setattr(fused, "_SOLO", [10**9])
    solo = diag_gaussian_e_step(*args)
    assert fused._SOLO[0] == 10**9 - 4  # two phases per sequence ran here
    monkeypatch.setattr(fused, "_SOLO", [0])
    blocker = threading.Event()
    fused._executor().submit(blocker.wait)  # the worker is busy: every call is taken back
    try:
        taken_back = diag_gaussian_e_step(*args)
    finally:
        blocker.set()
    for res in (solo, taken_back):
        for name in FIELDS:
            np.testing.assert_array_equal(getattr(res, name), getattr(threaded, name))
    assert all(res is not None for res in spy)


def test_a_lagging_worker_sends_the_next_phases_to_the_calling_thread(monkeypatch):
    monkeypatch.setattr(fused, "_two_cores", lambda: True)  # the worker thread, opted in
    monkeypatch.setattr(fused, "_SOLO", [0])
    started = threading.Event()

    def slow():
        started.set()
        time.sleep(0.05)
        return "there"

    def fast():
        started.wait()
        return "here"

    assert fused._both((fast,), (slow,)) == ("here", "there")
    assert fused._SOLO[0] == fused._SOLO_AFTER_LAG
    here = threading.get_ident()
    where = fused._both((threading.get_ident,), (threading.get_ident,))
    assert where == (here, here)
    assert fused._SOLO[0] == fused._SOLO_AFTER_LAG - 1


def test_the_worker_thread_only_with_two_cores(monkeypatch):
    import numba

    monkeypatch.setenv(fused.THREADS_ENV, "2")
    monkeypatch.setattr(fused.os, "sched_getaffinity", lambda pid: {0})
    assert not fused._two_cores()
    monkeypatch.setattr(fused.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 2)
    assert fused._two_cores()
    monkeypatch.delenv(fused.THREADS_ENV)  # on by default
    assert fused._two_cores()
    monkeypatch.setenv(fused.THREADS_ENV, "1")  # the user's opt-out
    assert not fused._two_cores()
    monkeypatch.setenv(fused.THREADS_ENV, "two")  # not a number: the default
    assert fused._two_cores()
    monkeypatch.setenv(fused.THREADS_ENV, "2")
    monkeypatch.setattr(numba.config, "NUMBA_NUM_THREADS", 1)  # the user's opt-out
    assert not fused._two_cores()
    here = threading.get_ident()
    assert fused._both((threading.get_ident,), (threading.get_ident,)) == (here, here)
    pool = fused._executor()
    assert fused._executor() is pool
    monkeypatch.setattr(fused, "_POOL", [-1, pool])  # as in a forked child
    assert fused._executor() is not pool


def test_model_fit_on_a_long_sequence_equals_numpy_backend(spy):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1500, 2)) + 3 * (np.arange(1500) // 100 % 2)[:, None]
    m1 = GaussianHMM(2, "diag", tol=0, max_iter=4, random_state=0).fit(X)
    m2 = GaussianHMM(2, "diag", tol=0, max_iter=4, random_state=0, backend="numpy").fit(X)
    assert spy and all(res is not None for res in spy)
    np.testing.assert_allclose(m1.loglik_history_, m2.loglik_history_, rtol=1e-11)
    np.testing.assert_allclose(m1.means_, m2.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m1.covars_, m2.covars_, rtol=1e-8)
    np.testing.assert_allclose(m1.transmat_, m2.transmat_, rtol=1e-8, atol=1e-12)


def test_ctrl_c_during_a_split_e_step_leaves_later_calls_exact(spy):
    rng = np.random.default_rng(0)
    startprob, transmat, means, pc = random_hmm(rng, 8, 4, 3.0, 0.9)
    lengths = np.array([400_000], dtype=np.int64)
    X = rng.normal(size=(400_000, 4))

    def run():
        return diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)

    expected = run()
    interrupted_while_running(run)
    again = run()
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(again, name), getattr(expected, name))
