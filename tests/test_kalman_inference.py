"""Kalman filter, RTS smoother and EM statistics against a dense-Gaussian oracle and pykalman."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.inference.kalman import (
    KalmanStats,
    LinearGaussianSystem,
    expected_statistics,
    has_numba,
    kalman_filter,
    observation_moments,
    rts_smoother,
)

BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])
TOL = 1e-10


def _spd(rng, n, floor=0.1):
    W = rng.normal(size=(n, n))
    return W @ W.T / n + floor * np.eye(n)


def random_system(rng, m, p, full_R=True):
    A = rng.normal(size=(m, m))
    A *= 0.95 / max(1.0, np.max(np.abs(np.linalg.eigvals(A))))
    R = _spd(rng, p) if full_R else np.diag(rng.uniform(0.2, 1.0, p))
    return LinearGaussianSystem(
        A=A, C=rng.normal(size=(p, m)), Q=_spd(rng, m), R=R, mu0=rng.normal(size=m),
        S0=_spd(rng, m), b=rng.normal(size=m), d=rng.normal(size=p),
    )


def with_missing(rng, Y, rate):
    Y = Y.copy()
    Y[rng.random(Y.shape) < rate] = np.nan
    return Y


# ---------------------------------------------------------------- the oracle


class Oracle:
    """Joint Gaussian of (x_1..x_T, y_1..y_T) of one sequence, conditioned on observed y's."""

    def __init__(self, s: LinearGaussianSystem, T: int):
        m, p = s.n_dim_state, s.n_dim_obs
        self.m, self.p, self.T = m, p, T
        # X - E[X] = F e with e = (x_1 - mu0, w_1, ..., w_{T-1}), Cov(e) = diag(S0, Q, ...)
        F = np.zeros((T * m, T * m))
        mean_x = np.zeros((T, m))
        mean_x[0] = s.mu0
        for t in range(T):
            if t:
                mean_x[t] = s.A @ mean_x[t - 1] + s.b
            for k in range(t + 1):
                F[t * m:(t + 1) * m, k * m:(k + 1) * m] = np.linalg.matrix_power(s.A, t - k)
        cov_e = np.kron(np.eye(T), s.Q)
        cov_e[:m, :m] = s.S0
        cov_x = F @ cov_e @ F.T
        G = np.kron(np.eye(T), s.C)
        self.mean = np.concatenate([mean_x.ravel(), (mean_x @ s.C.T + s.d).ravel()])
        self.cov = np.block([[cov_x, cov_x @ G.T],
                             [G @ cov_x, G @ cov_x @ G.T + np.kron(np.eye(T), s.R)]])

    def x(self, t):
        return np.arange(t * self.m, (t + 1) * self.m)

    def y(self, t):
        base = self.T * self.m
        return np.arange(base + t * self.p, base + (t + 1) * self.p)

    def condition(self, Y, upto=None):
        """Mean and covariance of everything given the observed y's of steps < upto."""
        upto = self.T if upto is None else upto
        obs = np.concatenate([self.y(t)[~np.isnan(Y[t])] for t in range(upto)] + [[]]).astype(int)
        vals = np.concatenate([Y[t][~np.isnan(Y[t])] for t in range(upto)] + [[]])
        if obs.size == 0:
            return self.mean.copy(), self.cov.copy(), 0.0
        Soo = self.cov[np.ix_(obs, obs)]
        Szo = self.cov[:, obs]
        r = vals - self.mean[obs]
        mean = self.mean + Szo @ np.linalg.solve(Soo, r)
        cov = self.cov - Szo @ np.linalg.solve(Soo, Szo.T)
        _, logdet = np.linalg.slogdet(Soo)
        ll = -0.5 * (obs.size * np.log(2 * np.pi) + logdet + r @ np.linalg.solve(Soo, r))
        return mean, 0.5 * (cov + cov.T), ll


def oracle_results(s, Y, lengths):
    """Per-step filtered/predicted/smoothed moments, lag-one covs, ll and EM statistics."""
    out = {k: [] for k in ["pm", "pP", "fm", "fP", "ms", "Ps", "lag"]}
    m, p = s.n_dim_state, s.n_dim_obs
    shapes = dict(x_first=(m,), xx_first=(m, m), x_sum=(m,), xx_sum=(m, m), x_prev=(m,),
                  xx_prev=(m, m), x_next=(m,), xx_next=(m, m), x_next_x_prev=(m, m),
                  y_sum=(p,), yy_sum=(p, p), yx_sum=(p, m))
    stats = {k: np.zeros(shape) for k, shape in shapes.items()}
    Ey_all, Cy_all = [], []
    total = 0.0
    start = 0
    for n in lengths:
        Ys = Y[start:start + n]
        start += n
        o = Oracle(s, n)
        for t in range(n):
            mu, cov, _ = o.condition(Ys, t)
            out["pm"].append(mu[o.x(t)])
            out["pP"].append(cov[np.ix_(o.x(t), o.x(t))])
            mu, cov, _ = o.condition(Ys, t + 1)
            out["fm"].append(mu[o.x(t)])
            out["fP"].append(cov[np.ix_(o.x(t), o.x(t))])
        mu, cov, ll = o.condition(Ys)
        total += ll

        def E2(i, j, mu=mu, cov=cov):
            return cov[np.ix_(i, j)] + np.outer(mu[i], mu[j])

        for t in range(n):
            xt, yt = o.x(t), o.y(t)
            out["ms"].append(mu[xt])
            out["Ps"].append(cov[np.ix_(xt, xt)])
            out["lag"].append(cov[np.ix_(o.x(t + 1), xt)] if t < n - 1 else np.zeros((m, m)))
            Ey_all.append(mu[yt])
            Cy_all.append(cov[np.ix_(yt, yt)])
            stats["x_sum"] += mu[xt]
            stats["xx_sum"] += E2(xt, xt)
            stats["y_sum"] += mu[yt]
            stats["yy_sum"] += E2(yt, yt)
            stats["yx_sum"] += E2(yt, xt)
            if t == 0:
                stats["x_first"] += mu[xt]
                stats["xx_first"] += E2(xt, xt)
            if t < n - 1:
                stats["x_prev"] += mu[xt]
                stats["xx_prev"] += E2(xt, xt)
                stats["x_next_x_prev"] += E2(o.x(t + 1), xt)
            if t > 0:
                stats["x_next"] += mu[xt]
                stats["xx_next"] += E2(xt, xt)
    res = {k: np.array(v) for k, v in out.items()}
    res["ll"] = total
    res["Ey"], res["Cy"] = np.array(Ey_all), np.array(Cy_all)
    return res, stats


def check_against_oracle(s, Y, lengths, backend, tol=TOL):
    ref, ref_stats = oracle_results(s, Y, lengths)
    f = kalman_filter(Y, s, lengths, backend=backend)
    sm = rts_smoother(Y, s, lengths, backend=backend)
    pairs = [(f.predicted_means, "pm"), (f.predicted_covs, "pP"), (f.filtered_means, "fm"),
             (f.filtered_covs, "fP"), (sm.smoothed_means, "ms"), (sm.smoothed_covs, "Ps"),
             (sm.lag_one_covs, "lag")]
    for got, key in pairs:
        np.testing.assert_allclose(got, ref[key], rtol=tol, atol=tol, err_msg=key)
    for ll in (f.log_likelihood, sm.log_likelihood, f.seq_log_likelihood.sum()):
        np.testing.assert_allclose(ll, ref["ll"], rtol=tol, atol=tol)
    stats = expected_statistics(Y, s, lengths, backend=backend)
    for key, val in ref_stats.items():
        np.testing.assert_allclose(getattr(stats, key), val, rtol=tol, atol=tol, err_msg=key)
    np.testing.assert_allclose(stats.log_likelihood, ref["ll"], rtol=tol, atol=tol)
    Ey, Cy = observation_moments(Y, s, sm)
    np.testing.assert_allclose(Ey, ref["Ey"], rtol=tol, atol=tol)
    np.testing.assert_allclose(Cy, ref["Cy"], rtol=tol, atol=tol)
    assert stats.n_steps == len(Y) and stats.n_sequences == len(lengths)
    assert stats.n_transitions == len(Y) - len(lengths)
    np.testing.assert_array_equal(stats.n_observed, (~np.isnan(Y)).sum(axis=0))
    return f, sm


# ---------------------------------------------------------------- oracle tests


@pytest.mark.parametrize("backend", BACKENDS)
def test_oracle_with_missing_entries_steps_and_sequence(backend):
    rng = np.random.default_rng(1)
    s = random_system(rng, 2, 3)
    lengths = [6, 4, 1, 5]
    Y = with_missing(rng, rng.normal(size=(sum(lengths), 3)), 0.4)
    Y[2] = np.nan  # a whole step
    Y[6:10] = np.nan  # a whole sequence
    Y[12, :2] = np.nan
    check_against_oracle(s, Y, lengths, backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_oracle_everything_missing(backend):
    rng = np.random.default_rng(2)
    s = random_system(rng, 2, 2)
    Y = np.full((5, 2), np.nan)
    _, sm = check_against_oracle(s, Y, [3, 2], backend)
    assert sm.log_likelihood == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 3), p=st.integers(1, 3),
       lengths=st.lists(st.integers(1, 5), min_size=1, max_size=3),
       rate=st.sampled_from([0.0, 0.3, 0.7]), full_R=st.booleans())
def test_oracle_property(seed, m, p, lengths, rate, full_R):
    rng = np.random.default_rng(seed)
    s = random_system(rng, m, p, full_R)
    Y = with_missing(rng, rng.normal(size=(sum(lengths), p)) * 2, rate)
    for backend in BACKENDS:
        f, sm = check_against_oracle(s, Y, lengths, backend)
        for P in (f.predicted_covs, f.filtered_covs, sm.smoothed_covs):
            np.testing.assert_array_equal(P, P.transpose(0, 2, 1))
            assert np.all(np.linalg.eigvalsh(P)[:, 0] > 0)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 3), p=st.integers(1, 3),
       lengths=st.lists(st.integers(1, 8), min_size=2, max_size=6), cut=st.integers(1, 5))
def test_statistics_are_additive_over_sequences(seed, m, p, lengths, cut):
    rng = np.random.default_rng(seed)
    s = random_system(rng, m, p)
    Y = with_missing(rng, rng.normal(size=(sum(lengths), p)), 0.3)
    cut = min(cut, len(lengths) - 1)
    rows = sum(lengths[:cut])
    whole = expected_statistics(Y, s, lengths)
    parts = [expected_statistics(Y[:rows], s, lengths[:cut]),
             expected_statistics(Y[rows:], s, lengths[cut:])]
    total = sum(parts)
    assert isinstance(total, KalmanStats)
    for key, val in whole.as_dict().items():
        np.testing.assert_allclose(getattr(total, key), val, rtol=1e-10, atol=1e-10, err_msg=key)
    half = whole.scale(0.5)
    np.testing.assert_allclose(half.yy_sum + half.yy_sum, whole.yy_sum, rtol=1e-15)


@pytest.mark.skipif(not has_numba(), reason="numba not installed")
def test_numba_equals_numpy():
    rng = np.random.default_rng(3)
    s = random_system(rng, 4, 3)
    lengths = [300, 1, 200]
    Y = with_missing(rng, rng.normal(size=(sum(lengths), 3)), 0.3)
    Y[10:40] = np.nan
    a = rts_smoother(Y, s, lengths, backend="numpy")
    b = rts_smoother(Y, s, lengths, backend="numba")
    for key in ["smoothed_means", "smoothed_covs", "lag_one_covs", "seq_log_likelihood"]:
        np.testing.assert_allclose(getattr(b, key), getattr(a, key), rtol=1e-12, atol=1e-12)
    fa = kalman_filter(Y, s, lengths, backend="numpy")
    fb = kalman_filter(Y, s, lengths, backend="numba")
    for key in ["predicted_means", "predicted_covs", "filtered_means", "filtered_covs"]:
        np.testing.assert_allclose(getattr(fb, key), getattr(fa, key), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------- stability


def _local_linear_trend(T, rng):
    s = LinearGaussianSystem(A=[[1.0, 1.0], [0.0, 1.0]], C=[[1.0, 0.0]], Q=np.diag([0.1, 0.01]),
                             R=[[1.0]], mu0=[0.0, 0.0], S0=np.eye(2) * 10.0)
    x = np.cumsum(np.cumsum(rng.normal(0, 0.1, T)))  # integrated random walk
    return s, (x + rng.normal(size=T)).reshape(-1, 1)


def test_long_sequence_is_finite_and_positive_definite():
    rng = np.random.default_rng(4)
    s, Y = _local_linear_trend(200_000, rng)
    Y[rng.random(len(Y)) < 0.05] = np.nan
    sm = rts_smoother(Y, s)  # numba when installed: the numpy reference needs ~10 s here
    assert np.isfinite(sm.log_likelihood)
    for a in (sm.smoothed_means, sm.smoothed_covs, sm.lag_one_covs):
        assert np.all(np.isfinite(a))
    assert np.all(np.linalg.eigvalsh(sm.smoothed_covs)[:, 0] > 0)
    stats = expected_statistics(Y, s)
    assert all(np.all(np.isfinite(v)) for v in stats.as_dict().values())


def test_long_sequence_numpy_reference():
    rng = np.random.default_rng(5)
    s, Y = _local_linear_trend(5_000, rng)
    sm = rts_smoother(Y, s, backend="numpy")
    assert np.isfinite(sm.log_likelihood)
    assert np.all(np.linalg.eigvalsh(sm.smoothed_covs)[:, 0] > 0)


def _rotation(rng, n):
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    return q


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", ["R", "Q", "both"])
def test_nearly_singular_noise(backend, which):
    rng = np.random.default_rng(6)
    m, p = 3, 2
    base = random_system(rng, m, p)
    U, V = _rotation(rng, p), _rotation(rng, m)
    R = U @ np.diag([1.0, 1e-12]) @ U.T if which in ("R", "both") else base.R
    Q = V @ np.diag([1.0, 0.5, 1e-12]) @ V.T if which in ("Q", "both") else base.Q
    s = LinearGaussianSystem(A=base.A, C=base.C, Q=0.5 * (Q + Q.T), R=0.5 * (R + R.T),
                             mu0=base.mu0, S0=base.S0, b=base.b, d=base.d)
    Y = with_missing(rng, rng.normal(size=(6, p)), 0.2)
    # the oracle's observed covariance is well conditioned (state noise dominates), while
    # the posterior covariances have eigenvalues ~1e-12
    f, sm = check_against_oracle(s, Y, [6], backend, tol=1e-10)
    for P in (f.filtered_covs, sm.smoothed_covs):
        np.testing.assert_array_equal(P, P.transpose(0, 2, 1))
        assert np.all(np.linalg.eigvalsh(P)[:, 0] > -1e-15)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exactly_singular_R_and_Q(backend):
    rng = np.random.default_rng(7)
    base = random_system(rng, 3, 3)
    L = np.array([[1.0, 0.0], [1.0, 0.0], [0.5, 0.75**0.5]])
    R = L @ L.T  # rank two: y_1 - y_2 is noiseless
    Q = np.diag([1.0, 0.0, 0.0])
    s = LinearGaussianSystem(A=base.A, C=base.C, Q=Q, R=R, mu0=base.mu0, S0=base.S0)
    Y = with_missing(rng, rng.normal(size=(6, 3)), 0.3)
    Y[0] = rng.normal(size=3)  # everything observed: singular R_oo in the filter
    Y[1, :2], Y[1, 2] = rng.normal(size=2), np.nan  # singular R_oo for the missing y_3
    Y[2, 0], Y[2, 1:] = np.nan, rng.normal(size=2)
    check_against_oracle(s, Y, [6], backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_singular_predicted_covariance_uses_pseudo_inverse(backend):
    # Q = 0 and a singular A make the predicted covariance singular
    s = LinearGaussianSystem(A=[[0.5, 0.0], [0.0, 0.0]], C=[[1.0, 1.0]], Q=np.zeros((2, 2)),
                             R=[[0.3]], mu0=[1.0, -1.0], S0=[[1.0, 0.2], [0.2, 2.0]])
    Y = np.array([[0.3], [np.nan], [1.1], [0.2]])
    check_against_oracle(s, Y, [4], backend)


# ---------------------------------------------------------------- bad input


def _sys(**kw):
    base = dict(A=np.eye(2), C=np.ones((1, 2)), Q=np.eye(2), R=np.eye(1), mu0=np.zeros(2),
                S0=np.eye(2))
    return LinearGaussianSystem(**{**base, **kw})


@pytest.mark.parametrize("kw, msg", [
    (dict(A=np.eye(3)), "C must have shape"),
    (dict(A=np.eye(2), Q=np.eye(3)), "Q must have shape"),
    (dict(A=np.ones((2, 3))), "A must be a square"),
    (dict(C=np.ones(2)), "C must be a"),
    (dict(R=np.eye(2)), "R must have shape"),
    (dict(mu0=np.zeros(3)), "mu0 must have shape"),
    (dict(b=np.zeros(1)), "b must have shape"),
    (dict(Q=[[1.0, 0.5], [0.0, 1.0]]), "Q must be symmetric"),
    (dict(R=[[-1.0]]), "R must be positive semi-definite"),
    (dict(S0=[[1.0, 2.0], [2.0, 1.0]]), "S0 must be positive semi-definite"),
    (dict(A=[[1.0, np.inf], [0.0, 1.0]]), "A contains NaN or infinite"),
    (dict(mu0=[np.nan, 0.0]), "mu0 contains NaN"),
])
def test_bad_system(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _sys(**kw)


def test_bad_observations_and_lengths():
    s = _sys()
    Y = np.zeros((4, 1))
    Y_inf = Y.copy()
    Y_inf[2, 0] = np.inf
    with pytest.raises(ValueError, match="infinite values.*NaN marks a missing"):
        kalman_filter(Y_inf, s)
    with pytest.raises(ValueError, match=r"shape \(T, 1\)"):
        kalman_filter(np.zeros((4, 2)), s)
    with pytest.raises(ValueError, match="reshape"):
        rts_smoother(np.zeros(4), s)
    with pytest.raises(ValueError, match="does not match the number of rows"):
        expected_statistics(Y, s, [2, 3])
    with pytest.raises(ValueError, match="at least 1"):
        kalman_filter(Y, s, [4, 0])
    with pytest.raises(ValueError, match="unknown backend"):
        kalman_filter(Y, s, backend="cuda")
    with pytest.raises(TypeError, match="LinearGaussianSystem"):
        kalman_filter(Y, {"A": 1})


@pytest.mark.parametrize("backend", BACKENDS)
def test_degenerate_innovation_is_an_error(backend):
    s = _sys(R=[[0.0]], S0=np.zeros((2, 2)))  # y_1 = C mu0 exactly: no density
    with pytest.raises(ValueError, match="innovation covariance .* at row 0"):
        kalman_filter(np.zeros((3, 1)), s, backend=backend)


def test_inputs_not_modified_and_system_read_only():
    rng = np.random.default_rng(8)
    A = np.eye(2) * 0.9
    s = random_system(rng, 2, 2).__class__(A=A, C=np.eye(2), Q=np.eye(2), R=np.eye(2),
                                           mu0=np.zeros(2), S0=np.eye(2))
    A[0, 0] = 5.0
    assert s.A[0, 0] == 0.9
    with pytest.raises(ValueError):
        s.A[0, 0] = 1.0
    Y = with_missing(rng, rng.normal(size=(10, 2)), 0.3)
    Y0 = Y.copy()
    for backend in BACKENDS:
        expected_statistics(Y, s, [4, 6], backend=backend)
        observation_moments(Y, s, rts_smoother(Y, s, backend=backend))
    np.testing.assert_array_equal(Y, Y0)


# ---------------------------------------------------------------- pykalman


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("backend", BACKENDS)
def test_equals_pykalman(backend, masked):
    pykalman = pytest.importorskip("pykalman")
    rng = np.random.default_rng(9)
    s = random_system(rng, 3, 2)
    Y = rng.normal(size=(60, 2)) * 3
    if masked:
        rows = rng.random(60) < 0.25
        rows[[0, 59]] = True
        Y[rows] = np.nan
        obs = np.ma.masked_invalid(Y)
    else:
        obs = Y
    kf = pykalman.KalmanFilter(
        transition_matrices=s.A, observation_matrices=s.C, transition_covariance=s.Q,
        observation_covariance=s.R, transition_offsets=s.b, observation_offsets=s.d,
        initial_state_mean=s.mu0, initial_state_covariance=s.S0,
    )
    f = kalman_filter(Y, s, backend=backend)
    sm = rts_smoother(Y, s, backend=backend)
    fm, fP = kf.filter(obs)
    ms, Ps = kf.smooth(obs)
    tol = dict(rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(f.filtered_means, fm, **tol)
    np.testing.assert_allclose(f.filtered_covs, fP, **tol)
    np.testing.assert_allclose(sm.smoothed_means, ms, **tol)
    np.testing.assert_allclose(sm.smoothed_covs, Ps, **tol)
    np.testing.assert_allclose(f.log_likelihood, kf.loglikelihood(obs), **tol)
