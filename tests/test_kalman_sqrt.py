"""The square-root form of the Kalman filter where the covariance form breaks down.

An explosive mode that the observations barely see makes the predicted covariance grow
like 2.1^(2t) in the state basis while its observed part stays ~0.1: in covariance form
``C P C' + R`` is then a difference of numbers ~1e17 and comes out negative. The exact
oracle is the textbook filter in rational arithmetic (``fractions``) on the very same
float64 inputs, so it has no rounding at all.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.inference.kalman import (
    LinearGaussianSystem,
    has_numba,
    kalman_filter,
    rts_smoother,
)
from emframe.inference.kalman._filter import psd_factor

BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])

_V = np.array([[0.6, 0.8], [0.8, -0.6]])  # orthogonal: eigenvectors of A
A = _V @ np.diag([-2.1, 0.5]) @ _V
C = np.array([[0.8, -0.6]])  # orthogonal to the explosive eigenvector (up to rounding)
Q, R, S0, MU0 = 1e-4 * np.eye(2), np.array([[1e-16]]), np.eye(2), np.zeros(2)
T = 28


def _exact_filter(Y):
    """Covariance-form filter in exact rational arithmetic: log-likelihood, filtered
    means and covariances (converted to float at the end only)."""
    def fr(a):
        return [[Fraction(float(x)) for x in row] for row in np.atleast_2d(a)]

    A_, C_, Q_, P = fr(A), fr(C)[0], fr(Q), fr(S0)
    r, m = Fraction(float(R[0, 0])), [Fraction(0), Fraction(0)]
    ll, fm, fP = [], [], []
    for y in Y[:, 0]:
        PC = [P[i][0] * C_[0] + P[i][1] * C_[1] for i in range(2)]
        S = C_[0] * PC[0] + C_[1] * PC[1] + r
        e = Fraction(float(y)) - (C_[0] * m[0] + C_[1] * m[1])
        ll.append(-0.5 * (math.log(2 * math.pi) + math.log(S) + float(e * e / S)))
        m = [m[i] + PC[i] * e / S for i in range(2)]
        P = [[P[i][j] - PC[i] * PC[j] / S for j in range(2)] for i in range(2)]
        fm.append([float(x) for x in m])
        fP.append([[float(x) for x in row] for row in P])
        m = [A_[i][0] * m[0] + A_[i][1] * m[1] for i in range(2)]
        AP = [[sum(A_[i][k] * P[k][j] for k in range(2)) for j in range(2)] for i in range(2)]
        P = [[sum(AP[i][k] * A_[j][k] for k in range(2)) + Q_[i][j] for j in range(2)]
             for i in range(2)]
    return math.fsum(ll), np.array(fm), np.array(fP)


def _covariance_form_innovations(Y):
    """The former filter's innovation variances (Joseph update, float64)."""
    m, P, out = MU0.copy(), S0.copy(), []
    for y in Y[:, 0]:
        S = C @ P @ C.T + R
        out.append(S[0, 0])
        K = P @ C.T / S
        m = m + K[:, 0] * (y - C @ m)[0]
        IKC = np.eye(2) - K @ C
        P = IKC @ P @ IKC.T + K @ R @ K.T
        m, P = A @ m, A @ P @ A.T + Q
    return np.array(out)


@pytest.mark.parametrize("backend", BACKENDS)
def test_explosive_unobserved_mode_matches_the_exact_rational_filter(backend):
    Y = 0.1 * np.random.default_rng(0).normal(size=(T, 1))
    assert _covariance_form_innovations(Y).min() < 0  # the covariance form breaks down
    ll, fm, fP = _exact_filter(Y)
    s = LinearGaussianSystem(A=A, C=C, Q=Q, R=R, mu0=MU0, S0=S0)
    f = kalman_filter(Y, s, backend=backend)
    np.testing.assert_allclose(f.log_likelihood, ll, rtol=1e-11)
    # the filtered covariances to 1e-9 of their size (~1e15); the observed direction of
    # the means (the explosive one is determined by a 1e-17 observability only)
    np.testing.assert_allclose(f.filtered_covs, fP, rtol=0, atol=1e-9 * np.abs(fP).max())
    np.testing.assert_allclose(f.filtered_means @ C.T, fm @ C.T, rtol=0, atol=1e-10)
    sm = rts_smoother(Y, s, backend=backend)  # formerly the filter's error
    assert np.all(np.isfinite(sm.smoothed_covs)) and np.all(np.isfinite(sm.lag_one_covs))
    assert np.all(np.diagonal(sm.smoothed_covs, axis1=1, axis2=2) > 0)
    np.testing.assert_allclose(sm.smoothed_covs[-1], f.filtered_covs[-1], rtol=0, atol=0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exactly_determined_observation_is_a_clear_error(backend):
    # two noiseless copies of one coordinate: the innovation covariance is exactly singular
    s = LinearGaussianSystem(A=0.5 * np.eye(2), C=[[1.0, 0.0], [1.0, 0.0]], Q=np.eye(2),
                             R=np.zeros((2, 2)), mu0=np.zeros(2), S0=np.eye(2))
    Y = np.array([[0.3, np.nan], [0.1, 0.2], [0.0, 0.0]])
    with pytest.raises(ValueError, match="at row 1 is singular to float64 precision: an observed"):
        kalman_filter(Y, s, backend=backend)
    Y[:, 1] = np.nan  # one copy observed per step: well defined
    assert np.isfinite(kalman_filter(Y, s, backend=backend).log_likelihood)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 4), rank=st.integers(0, 4))
def test_psd_factor_reproduces_singular_covariances(seed, n, rank):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(n, min(rank, n)))
    V = W @ W.T
    F = psd_factor(V)
    assert F.shape == (n, n) and F.flags.c_contiguous
    np.testing.assert_allclose(F @ F.T, V, rtol=0, atol=1e-12 * max(1.0, np.abs(V).max()))


def _exact_local_level(a, q, r, s0, y):
    """Scalar filter and RTS smoother in rational arithmetic: the sums of
    ``Cov(w_t | Y)`` and ``Cov(w_t, x_t | Y)`` and ``sum E[w_t^2 | Y]``."""
    a, q, r = Fraction(a), Fraction(q), Fraction(r)
    m, P = Fraction(0), Fraction(s0)
    pm, pP, fm, fP = [], [], [], []
    for v in y:
        pm.append(m)
        pP.append(P)
        K = P / (P + r)
        m, P = m + K * (Fraction(float(v)) - m), P - K * P
        fm.append(m)
        fP.append(P)
        m, P = a * m, a * a * P + q
    n = len(y)
    ms, Ps, lag = fm[:], fP[:], [Fraction(0)] * n
    for t in range(n - 2, -1, -1):
        J = fP[t] * a / pP[t + 1]
        ms[t] = fm[t] + J * (ms[t + 1] - pm[t + 1])
        Ps[t] = fP[t] + J * J * (Ps[t + 1] - pP[t + 1])
        lag[t] = Ps[t + 1] * J
    ww = sum(Ps[t + 1] - 2 * a * lag[t] + a * a * Ps[t] for t in range(n - 1))
    wx = sum(lag[t] - a * Ps[t] for t in range(n - 1))
    ee = ww + sum((ms[t + 1] - a * ms[t]) ** 2 for t in range(n - 1))
    return float(ww), float(wx), float(ee)


@pytest.mark.parametrize("backend", BACKENDS)
def test_transition_residual_covariance_keeps_its_digits_when_q_is_tiny(backend):
    # a nearly constant level: Cov(w_t | Y) ~ Q = 1e-12 while the smoothed variances are
    # ~0.025; the four-term form P_s[t+1] - 2 A L + A^2 P_s[t] kept only ~5 digits
    from emframe.inference.kalman import _filter, expected_statistics

    a, q, r, s0 = 1.0, 1e-12, 1.0, 1.0
    Y = np.random.default_rng(0).normal(size=(40, 1)) + 5.0
    ww, wx, ee = _exact_local_level(a, q, r, s0, Y[:, 0])
    s = LinearGaussianSystem(A=[[a]], C=[[1.0]], Q=[[q]], R=[[r]], mu0=[0.0], S0=[[s0]])
    lens, starts = np.array([40]), np.array([0])
    filt, _, _ = _filter._filter_arrays(Y, s, lens, starts, backend)
    (_, Ps, lag), got_ww, got_wx = _filter._smooth_arrays(s, filt, lens, starts, backend)
    np.testing.assert_allclose(got_ww[0, 0, 0], ww, rtol=1e-12)
    np.testing.assert_allclose(got_wx[0, 0, 0], wx, rtol=1e-12)
    np.testing.assert_allclose(expected_statistics(Y, s, backend=backend).ee_trans[0, 0], ee,
                               rtol=1e-12)
    four_term = Ps[1:].sum() - 2 * a * lag[:-1].sum() + a * a * Ps[:-1].sum()
    assert abs(four_term / ww - 1) > 1e-9  # what the former formula lost


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_step_log_densities_of_the_explosive_mode_sum_to_the_exact_likelihood(backend):
    # LinearGaussianSSM.score_samples forms each step's innovation factor from the
    # filter's factors: the covariance C P C' + R it used before was negative here
    from emframe.models.ssm.predict import predictive_log_densities

    Y = 0.1 * np.random.default_rng(0).normal(size=(T, 1))
    ll, _, _ = _exact_filter(Y)
    s = LinearGaussianSystem(A=A, C=C, Q=Q, R=R, mu0=MU0, S0=S0)
    per_step = predictive_log_densities(Y, s, kalman_filter(Y, s, backend=backend))
    assert np.all(np.isfinite(per_step))
    assert per_step.sum() == pytest.approx(ll, rel=1e-11)
