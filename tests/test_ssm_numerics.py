"""LinearGaussianSSM at singular boundaries: monotone, valid, no error from rounding.

The M-step's covariances come from residual moments about the E-step's own
coefficients (not by cancellation from raw moments), the observation covariance is
held above a fixed floor of the observed variances (where the likelihood would be
unbounded), and an update singular only by rounding is raised to rounding level.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import LinearGaussianSSM
from emframe.models.hmm.model import Sequences
from emframe.models.ssm import LinearGaussianSSMModel
from emframe.models.ssm.mstep import FLOOR
from emframe.models.ssm.params import observation_floor
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_ssm_em import random_params, simulate

from emframe.core.exceptions import ConvergenceWarning
from emframe.datasets import load_airquality
from emframe.inference.kalman import LinearGaussianSystem, expected_statistics


def _valid(est):
    est._model.check_params(est.params_)
    for name in ("transition_covariance_", "observation_covariance_",
                 "initial_state_covariance_"):
        V = getattr(est, name)
        np.testing.assert_array_equal(V, V.T)
        np.linalg.cholesky(V)


def _monotone(h):
    h = np.asarray(h)
    assert np.all(np.isfinite(h))
    assert np.all(np.diff(h) >= -1e-9 * np.maximum(1.0, np.abs(h[:-1])))


def test_airquality_defaults_are_monotone_and_converge():
    # ``emframe fit ssm airquality.csv -c 1-6 --state-dim 1 --max-iter 2000``: Month and
    # Day are nearly a linear function of the time, so R's thinnest direction and S0
    # collapse together (an unbounded likelihood); formerly decreases of up to 4e-3 and
    # then "observation_covariance is not positive definite"
    Y, _ = load_airquality()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearGaussianSSM(1, max_iter=2000, random_state=0).fit(Y)
    assert est.converged_
    _monotone(est.loglik_history_)
    _valid(est)
    # R sits on its floor along the (Month, Day) direction
    floor = FLOOR * np.nanvar(Y, axis=0)
    scaled = est.observation_covariance_ / np.sqrt(np.outer(floor, floor))
    np.testing.assert_allclose(np.linalg.eigvalsh(scaled)[0], 1.0, rtol=1e-6)


def _ar1(T, noise, seed=0):
    rng = np.random.default_rng(seed)
    x = np.empty(T)
    x[0] = rng.normal()
    for t in range(1, T):
        x[t] = 0.9 * x[t - 1] + rng.normal(scale=0.3)
    return (x + noise * rng.normal(size=T))[:, None]


@pytest.mark.parametrize("noise", [0.0, 1e-6])
def test_noiseless_ar1_with_squarem_at_tight_tolerance(noise):
    # R -> 0 at the MLE: formerly a drop of 6e-4 at iteration ~360 (a MonotonicityError
    # under strict=True), then "observation_covariance is not positive definite"
    Y = _ar1(500, noise)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearGaussianSSM(1, tol=1e-12, max_iter=450, random_state=0, strict=True).fit(Y)
    _monotone(est.loglik_history_)
    _valid(est)
    R = est.observation_covariance_[0, 0]
    assert FLOOR * Y.var() * (1 - 1e-9) <= R < 1e-6 * Y.var()


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16), m=st.integers(1, 2), p=st.integers(1, 3),
    log_scale=st.integers(-6, 6), noise=st.sampled_from([0.0, 1e-8, 1e-4, 1e-1]),
    shift=st.sampled_from([0.0, 1e3]), duplicate=st.booleans(),
    missing=st.sampled_from([0.0, 0.2]), n_seq=st.integers(1, 2),
    accelerate=st.sampled_from([None, "squarem"]),
)
# nearly constant columns far from 0: R's floor once lost three digits to cancellation
@example(seed=1195, m=1, p=2, log_scale=0, noise=1e-8, shift=1e3, duplicate=False,
         missing=0.0, n_seq=1, accelerate=None)
def test_monotone_and_valid_at_any_scale_and_noise_level(
    seed, m, p, log_scale, noise, shift, duplicate, missing, n_seq, accelerate
):
    rng = np.random.default_rng(seed)
    P = random_params(rng, m, p)
    P["R"] = noise**2 * P["R"] if noise else 1e-300 * np.eye(p)
    P["Q"] = P["Q"] * rng.choice([1.0, 1e-8])
    Y = simulate(rng, P, 60)
    if duplicate and p > 1:
        Y[:, -1] = Y[:, 0]  # exactly collinear columns: a singular R at the MLE
    Y = (Y + shift) * 10.0**log_scale
    Y[rng.random(Y.shape) < missing] = np.nan
    Y[0] = np.where(np.isnan(Y[0]), Y[1], Y[0])  # every column observed somewhere
    Y[0] = np.where(np.isnan(Y[0]), shift, Y[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearGaussianSSM(m, max_iter=40, tol=0.0, random_state=seed, strict=True)
        # no error: the square-root filter stays positive at any transition EM reaches
        est.fit(Y, [60] if n_seq == 1 else [25, 35], accelerate=accelerate)
    _monotone(est.loglik_history_)
    _valid(est)
    floor = est._model._r_floor  # from sums of the data, which may lose a few digits
    np.testing.assert_allclose(floor, FLOOR * np.nanvar(Y, axis=0), rtol=1e-3)
    w = np.linalg.eigvalsh(est.observation_covariance_ / np.sqrt(np.outer(floor, floor)))
    assert w[0] >= 1 - 1e-9 - 1e3 * np.finfo(float).eps * w[-1]  # eigvalsh's own rounding


def test_explosive_transition_on_nearly_noiseless_data_keeps_the_filter_positive():
    # after 5 iterations EM reaches a transition with eigenvalue -2.09 on nearly noiseless
    # data; over 25 steps the predicted state covariance grows to ~1e15 and its observed
    # direction (~0.1) is below float64's resolution in covariance form, where C P C' + R
    # came out negative ("innovation covariance not positive definite"); the square-root
    # filter's innovation factor comes from an orthogonal triangularisation and stays
    # positive
    seed, m, p = 228, 2, 1
    rng = np.random.default_rng(seed)
    P = random_params(rng, m, p)
    P["R"] = 1e-16 * P["R"]
    P["Q"] = P["Q"] * rng.choice([1.0, 1e-8])
    Y = (simulate(rng, P, 60) + 1e3) * 1e2
    est = LinearGaussianSSM(m, max_iter=6, tol=0.0, random_state=seed, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(Y, [25, 35], accelerate=None)
    _monotone(est.loglik_history_)


def _system(rng, m, p):
    P = random_params(rng, m, p)
    return P, LinearGaussianSystem(A=P["A"], C=P["C"], Q=P["Q"], R=P["R"], mu0=P["mu0"],
                                   S0=P["S0"], b=P["b"], d=P["d"])


@pytest.mark.parametrize("m, p", [(1, 1), (2, 3), (3, 2)])
def test_residual_moments_equal_the_raw_moments_algebra(m, p):
    rng = np.random.default_rng(m * 10 + p)
    P, s = _system(rng, m, p)
    Y = simulate(rng, P, 30)
    Y[rng.random(Y.shape) < 0.3] = np.nan
    k = expected_statistics(Y, s, [12, 18])
    C, d, A, b = P["C"], P["d"], P["A"], P["b"]
    Cx = C @ k.yx_sum.T
    ee = (k.yy_sum - Cx - Cx.T + C @ k.xx_sum @ C.T - np.outer(k.y_sum - C @ k.x_sum, d)
          - np.outer(d, k.y_sum - C @ k.x_sum) + k.n_steps * np.outer(d, d))
    np.testing.assert_allclose(k.ee_obs, ee, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(k.ex_obs, k.yx_sum - C @ k.xx_sum - np.outer(d, k.x_sum),
                               rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(k.e_obs, k.y_sum - C @ k.x_sum - k.n_steps * d, atol=1e-10)
    Ax = A @ k.x_next_x_prev.T
    r = k.x_next - A @ k.x_prev
    ww = (k.xx_next - Ax - Ax.T + A @ k.xx_prev @ A.T - np.outer(r, b) - np.outer(b, r)
          + k.n_transitions * np.outer(b, b))
    np.testing.assert_allclose(k.ee_trans, ww, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(k.ex_trans, k.x_next_x_prev - A @ k.xx_prev
                               - np.outer(b, k.x_prev), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(k.e_trans, r - k.n_transitions * b, atol=1e-10)
    mu = P["mu0"]
    np.testing.assert_allclose(
        k.ee_first, k.xx_first - np.outer(k.x_first, mu) - np.outer(mu, k.x_first)
        + 2 * np.outer(mu, mu), rtol=1e-10, atol=1e-10)


def test_statistics_about_other_references_add_and_give_the_same_m_step():
    # online EM blends statistics of different iterations: they are moved exactly to a
    # common reference before they are added, and the M-step does not depend on it
    rng = np.random.default_rng(5)
    P = random_params(rng, 2, 2)
    Y = simulate(rng, P, 80)
    seqs = Sequences(Y, [50, 30])
    model = LinearGaussianSSMModel(2, 2)
    p1 = model.initialize(seqs, np.random.default_rng(0))
    p2 = model.m_step(model.e_step(p1, seqs)[0])
    a, b = seqs.split(50)
    sa, sb = model.e_step(p1, a)[0], model.e_step(p2, b)[0]
    moved = sb.about({k: getattr(sa, k) for k in sa._split()[1]})
    assert moved.allclose(sb) and sb.allclose(moved)
    assert model.m_step(moved).allclose(model.m_step(sb), rtol=1e-9, atol=1e-12)
    total = sa + sb
    assert total.allclose(sb + sa)
    np.testing.assert_allclose(total.n_steps, 80)
    np.testing.assert_allclose(observation_floor(total), observation_floor(
        model.e_step(p1, seqs)[0]), rtol=1e-12)
    half = total.scale(0.5)
    assert (half + half).allclose(total)


def test_observation_floor_keeps_its_digits_for_columns_far_from_zero_in_any_chunks():
    # the column sums are taken about a value in each column and moved exactly when
    # statistics of chunks with different references are added
    rng = np.random.default_rng(0)
    Y = 1e6 + 1e-4 * rng.normal(size=(90, 2))
    Y[rng.random(Y.shape) < 0.2] = np.nan
    model = LinearGaussianSSMModel(1, 2)
    params = model.initialize(Sequences(Y, np.array([90])), rng)
    whole, _ = model.e_step(params, Sequences(Y, np.array([90])))
    parts = [model.e_step(params, Sequences(Y[a:b], np.array([b - a])))[0]
             for a, b in ((0, 20), (20, 57), (57, 90))]
    expected = FLOOR * np.nanvar(Y, axis=0)
    np.testing.assert_allclose(observation_floor(whole), expected, rtol=1e-9)
    np.testing.assert_allclose(observation_floor(sum(parts[1:], parts[0])), expected, rtol=1e-9)
