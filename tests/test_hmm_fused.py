"""The fused compiled E-step of Gaussian HMMs equals the numpy reference path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from emframe.models import GaussianHMM
from emframe.models.hmm.emissions import GaussianEmission
from emframe.models.hmm.model import HMMModel, HMMParams, Sequences
from hypothesis import given, settings
from hypothesis import strategies as st
from interrupts import interrupted_while_running

from emframe.inference.hmm import diag_gaussian_e_step, forward_backward

pytest.importorskip("numba")


def reference(startprob, transmat, means, pc, X, lengths):
    """Emission log-likelihoods, numpy forward-backward, moments about the means."""
    const = np.log(pc).sum(axis=1) - 0.5 * X.shape[1] * math.log(2 * math.pi)
    le = const - 0.5 * np.sum(((X[:, None, :] - means) * pc) ** 2, axis=2)
    with np.errstate(divide="ignore"):
        post = forward_backward(np.log(startprob), np.log(transmat), le, lengths,
                                backend="numpy")
    g = post.posteriors
    xc = X[:, None, :] - means
    return post, g.sum(axis=0), np.einsum("tk,tkd->kd", g, xc), np.einsum("tk,tkd->kd", g, xc**2)


def random_hmm(rng, k, d, spread, sticky):
    startprob = rng.dirichlet(np.ones(k))
    transmat = sticky * np.eye(k) + (1 - sticky) * rng.dirichlet(np.ones(k), size=k)
    means = rng.normal(scale=spread, size=(k, d))
    pc = 1.0 / rng.uniform(0.3, 2.0, size=(k, d))
    return startprob, transmat, means, pc


def sample(rng, means, pc, lengths):
    z = rng.integers(means.shape[0], size=int(np.sum(lengths)))
    return means[z] + rng.normal(size=(z.size, means.shape[1])) / pc[z]


def assert_close(a, b, rtol=1e-9):
    a, b = np.asarray(a), np.asarray(b)
    scale = max(1.0, float(np.max(np.abs(b))) if b.size else 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    k=st.integers(1, 6),
    d=st.integers(1, 4),
    lengths=st.lists(st.integers(1, 600), min_size=1, max_size=4),
    spread=st.sampled_from([0.5, 3.0, 30.0]),
    sticky=st.sampled_from([0.0, 0.5, 0.95]),
)
def test_fused_e_step_equals_the_numpy_reference(seed, k, d, lengths, spread, sticky):
    rng = np.random.default_rng(seed)
    startprob, transmat, means, pc = random_hmm(rng, k, d, spread, sticky)
    lengths = np.array(lengths, dtype=np.int64)
    X = sample(rng, means, pc, lengths)
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    post, nk, sx, sxx = reference(startprob, transmat, means, pc, X, lengths)
    ok = ~res.failed
    assert_close(res.seq_log_likelihood[ok], post.seq_log_likelihood[ok], 1e-11)
    if ok.all():  # otherwise the sums miss the failed sequences (tested below)
        assert_close(res.start_counts, post.start_counts)
        assert_close(res.trans_counts, post.trans_counts)
        assert_close(res.nk, nk)
        assert_close(res.sum_x, sx)
        assert_close(res.sum_xx, sxx)


def test_flushed_emission_ratios_are_handled_as_in_the_reference():
    # A very tight state far from the data: its emission ratios are below exp(-708)
    # (flushed to zero) on most steps, yet no mass is lost.
    rng = np.random.default_rng(3)
    startprob, transmat, means, pc = random_hmm(rng, 3, 2, 3.0, 0.5)
    pc[2] = 50.0
    lengths = np.array([400, 300], dtype=np.int64)
    X = sample(rng, means[:2], pc[:2], lengths)
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    post, nk, sx, sxx = reference(startprob, transmat, means, pc, X, lengths)
    assert not res.failed.any()
    assert_close(res.seq_log_likelihood, post.seq_log_likelihood, 1e-12)
    assert_close(res.trans_counts, post.trans_counts)
    assert_close(res.sum_xx, sxx)


def _diverging_case():
    """Two states that never switch, whose emissions disagree by ~5,000 nats at every
    step: the scaled recursion underflows on the second sequence only."""
    startprob = np.array([0.5, 0.5])
    transmat = np.eye(2)
    means = np.array([[0.0], [100.0]])
    pc = np.ones((2, 1))
    X = np.array([[0.1], [-0.3], [0.2], [0.0], [100.0], [0.5], [99.0]])
    lengths = np.array([3, 4], dtype=np.int64)
    return startprob, transmat, means, pc, X, lengths


def test_a_sequence_the_scaled_recursion_loses_is_reported_failed():
    startprob, transmat, means, pc, X, lengths = _diverging_case()
    res = diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)
    np.testing.assert_array_equal(res.failed, [False, True])
    post, nk, sx, sxx = reference(startprob, transmat, means, pc, X[:3], lengths[:1])
    assert_close(res.nk, nk)  # the failed sequence adds nothing
    assert_close(res.seq_log_likelihood[:1], post.seq_log_likelihood)


def _model_and_params(covariance_type, startprob, transmat, means, pc, backend="auto"):
    emission = GaussianEmission(covariance_type, reg_covar=0.0)
    model = HMMModel(emission, len(startprob), backend=backend)
    covars = 1.0 / pc**2
    em = emission.complete_params(
        emission.initialize(means, len(startprob), np.random.default_rng(0)),
        {"means": means, "covars": covars},
    )
    return model, HMMParams(startprob, transmat, em)


@pytest.mark.parametrize("covariance_type", ["diag", "spherical"])
def test_model_e_step_with_failed_sequences_equals_numpy_backend(covariance_type):
    startprob, transmat, means, pc, X, lengths = _diverging_case()
    pcs = pc if covariance_type == "diag" else pc[:, 0]
    seqs = Sequences(X, lengths)
    fused_model, params = _model_and_params(covariance_type, startprob, transmat, means, pcs)
    ref_model, _ = _model_and_params(covariance_type, startprob, transmat, means, pcs, "numpy")
    s1, ll1 = fused_model.e_step(params, seqs)
    s2, ll2 = ref_model.e_step(params, seqs)
    assert math.isfinite(ll1)
    assert ll1 == pytest.approx(ll2, rel=1e-12)
    p1, p2 = fused_model.m_step(s1), ref_model.m_step(s2)
    for a, b in [(p1.startprob, p2.startprob), (p1.transmat, p2.transmat),
                 (p1.emission.means, p2.emission.means),
                 (p1.emission.covars, p2.emission.covars)]:
        assert_close(a, b, 1e-10)
    np.testing.assert_allclose(fused_model.sequence_log_likelihood(params, seqs),
                               ref_model.sequence_log_likelihood(params, seqs), rtol=1e-12)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), covariance_type=st.sampled_from(["diag", "spherical"]))
def test_model_uses_the_fused_e_step_and_equals_numpy_backend(seed, covariance_type):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 3)) + 3 * rng.integers(0, 2, size=(500, 1))
    lengths = [200, 250, 50]
    m1 = GaussianHMM(3, covariance_type, tol=0, max_iter=4, random_state=seed).fit(X, lengths)
    m2 = GaussianHMM(3, covariance_type, tol=0, max_iter=4, random_state=seed,
                     backend="numpy").fit(X, lengths)
    np.testing.assert_allclose(m1.loglik_history_, m2.loglik_history_, rtol=1e-11)
    np.testing.assert_allclose(m1.means_, m2.means_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(m1.covars_, m2.covars_, rtol=1e-8)
    np.testing.assert_allclose(m1.transmat_, m2.transmat_, rtol=1e-8, atol=1e-12)


def test_fused_path_skips_the_posterior_matrix(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    model, params = _model_and_params("diag", np.full(2, 0.5), np.full((2, 2), 0.5),
                                      np.array([[0.0, 0.0], [1.0, 1.0]]), np.ones((2, 2)))

    def forbidden(*args, **kwargs):
        raise AssertionError("the reference path ran")

    monkeypatch.setattr(model.emission, "statistics", forbidden)
    monkeypatch.setattr(model.emission, "log_likelihood", forbidden)
    stats, ll = model.e_step(params, Sequences(X, [100, 200]))
    assert stats.start.sum() == pytest.approx(2.0)
    assert math.isfinite(ll)


def test_reference_path_with_labels_or_missing_entries(monkeypatch):
    # labelled states and missing entries are not handled by the fused pass
    rng = np.random.default_rng(1)
    X = rng.normal(size=(50, 2))
    model, params = _model_and_params("diag", np.full(2, 0.5), np.full((2, 2), 0.5),
                                      np.array([[0.0, 0.0], [1.0, 1.0]]), np.ones((2, 2)))
    calls = []
    monkeypatch.setattr(model.emission, "fused_e_step", lambda *a: calls.append(1))
    states = np.full(50, -1)
    states[3] = 1
    model.e_step(params, Sequences(X, None, states))
    assert calls == []
    monkeypatch.undo()
    # a missing entry fails its sequence in the fused pass; the reference path then
    # marginalises it
    X[4, 1] = np.nan
    lengths = np.array([20, 30])
    res = model.emission.fused_e_step(params.emission, X, params.startprob, params.transmat,
                                      lengths)
    np.testing.assert_array_equal(res[4], [True, False])
    ref_model, _ = _model_and_params("diag", np.full(2, 0.5), np.full((2, 2), 0.5),
                                     np.array([[0.0, 0.0], [1.0, 1.0]]), np.ones((2, 2)),
                                     "numpy")
    (s1, ll1), (s2, ll2) = (m.e_step(params, Sequences(X, lengths)) for m in (model, ref_model))
    assert ll1 == pytest.approx(ll2, rel=1e-12)
    assert_close(model.m_step(s1).emission.covars, ref_model.m_step(s2).emission.covars)


def test_scratch_is_kept_per_thread_and_bounded(monkeypatch):
    import threading

    from emframe.inference.hmm import fused

    a = fused._scratch(1000, 4)
    assert fused._scratch(800, 4) is a  # reused (the kernel reads only what it writes)
    other = []
    t = threading.Thread(target=lambda: other.append(fused._scratch(1000, 4)))
    t.start()
    t.join()
    assert other[0] is not a  # another thread's own
    # results do not depend on the scratch's history
    rng = np.random.default_rng(2)
    startprob, transmat, means, pc = random_hmm(rng, 3, 2, 3.0, 0.5)
    X = sample(rng, means, pc, [300])
    r1 = diag_gaussian_e_step(startprob, transmat, means, pc, X, np.array([300]))
    for buf in fused._scratch(5000, 3):
        buf[:] = np.nan
    r2 = diag_gaussian_e_step(startprob, transmat, means, pc, X, np.array([300]))
    assert fused._scratch(300, 3)[0].shape[0] == 5000  # that poisoned scratch was used
    np.testing.assert_array_equal(r1.sum_xx, r2.sum_xx)
    assert r1.seq_log_likelihood[0] == r2.seq_log_likelihood[0]
    monkeypatch.setattr(fused, "_KEEP_SCRATCH", 100)
    big = fused._scratch(20000, 4)
    assert fused._scratch(20000, 4) is not big  # too large to keep


def test_ctrl_c_inside_the_fused_hmm_kernel_is_keyboard_interrupt():
    rng = np.random.default_rng(0)
    startprob, transmat, means, pc = random_hmm(rng, 8, 4, 3.0, 0.9)
    lengths = np.array([400_000], dtype=np.int64)
    X = rng.normal(size=(400_000, 4))

    def run():
        diag_gaussian_e_step(startprob, transmat, means, pc, X, lengths)

    interrupted_while_running(run)
