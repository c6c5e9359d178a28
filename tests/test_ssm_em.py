"""EM of LinearGaussianSSM is exact: equal to pykalman's em, to a textbook EM on a dense
Gaussian oracle (missing entries, offsets, diagonal covariances, freezing), and to closed
forms; monotone, additive over sequences, valid (emframe.testing conformance)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import LinearGaussianSSM, MissingDataGaussian
from emframe.models.hmm.model import Sequences
from emframe.models.ssm import LinearGaussianSSMModel, SSMParams
from hypothesis import given, settings
from hypothesis import strategies as st

from emframe.core.data import DataSource
from emframe.core.engine import run_em
from emframe.core.exceptions import ConvergenceWarning
from emframe.inference.kalman import has_numba
from emframe.testing import (
    check_additive,
    check_model,
    check_monotone,
    check_stationary,
    check_valid_params,
)

BACKENDS = ["numpy"] + (["numba"] if has_numba() else [])
NAMES = ("A", "b", "Q", "C", "d", "R", "mu0", "S0")
FIELDS = SSMParams.field_names()


def _spd(rng, n, floor=0.3):
    W = rng.normal(size=(n, n))
    return W @ W.T / n + floor * np.eye(n)


def random_params(rng, m, p, *, offsets=True, diag=False):
    A = rng.normal(size=(m, m))
    A *= 0.9 / max(1.0, np.max(np.abs(np.linalg.eigvals(A))))
    Q, R = _spd(rng, m), _spd(rng, p)
    if diag:
        Q, R = np.diag(np.diag(Q)), np.diag(np.diag(R))
    return dict(A=A, b=rng.normal(size=m) if offsets else np.zeros(m), Q=Q,
                C=rng.normal(size=(p, m)), d=rng.normal(size=p) if offsets else np.zeros(p),
                R=R, mu0=rng.normal(size=m), S0=_spd(rng, m))


def simulate(rng, P, T):
    m, p = P["A"].shape[0], P["C"].shape[0]
    x = rng.multivariate_normal(P["mu0"], P["S0"])
    Y = np.empty((T, p))
    for t in range(T):
        Y[t] = P["C"] @ x + P["d"] + rng.multivariate_normal(np.zeros(p), P["R"])
        x = P["A"] @ x + P["b"] + rng.multivariate_normal(np.zeros(m), P["Q"])
    return Y


def as_init(P):
    return {f"{f}_init": P[n] for f, n in zip(FIELDS, NAMES, strict=True)}


def estimated(est):
    return {n: getattr(est, f"{f}_") for f, n in zip(FIELDS, NAMES, strict=True)}


def assert_close(got, want, rtol=1e-8, names=NAMES):
    for n in names:
        a, b = np.asarray(got[n]), np.asarray(want[n])
        scale = max(1.0, float(np.max(np.abs(b))))
        assert np.max(np.abs(a - b)) <= rtol * scale, (n, a, b)


# ----------------------------------------------------------------------------- pykalman


@pytest.fixture(scope="module")
def pk():
    return pytest.importorskip("pykalman")


def _pykalman_em(pk, Y, P, em_vars, n_iter):
    kf = pk.KalmanFilter(
        transition_matrices=P["A"], observation_matrices=P["C"], transition_covariance=P["Q"],
        observation_covariance=P["R"], transition_offsets=P["b"], observation_offsets=P["d"],
        initial_state_mean=P["mu0"], initial_state_covariance=P["S0"], em_vars=em_vars,
    )
    kf = kf.em(Y, n_iter=n_iter)
    return dict(A=kf.transition_matrices, b=kf.transition_offsets, Q=kf.transition_covariance,
                C=kf.observation_matrices, d=kf.observation_offsets,
                R=kf.observation_covariance, mu0=kf.initial_state_mean,
                S0=kf.initial_state_covariance), kf


def _fit(Y, P, n_iter, m, lengths=None, chunk_size=None, **kw):
    init = as_init(P)
    for name in ("transition_offset", "observation_offset"):
        if not kw.get(name, True):
            del init[f"{name}_init"]  # switched off: zero, and no initial value
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearGaussianSSM(m, **init, tol=0.0, max_iter=n_iter, **kw)
        # plain EM (fit's default is SQUAREM): the textbook iterates
        return est.fit(Y, lengths, chunk_size=chunk_size, accelerate=None)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m,p", [(1, 1), (2, 3), (3, 2)])
def test_em_equals_pykalman_all_matrices(pk, backend, m, p):
    # pykalman estimates A, C, Q, R, mu0, S0 here; its offsets stay at the given values,
    # so ours are frozen there (pykalman's offset update is a separate, conditional step)
    rng = np.random.default_rng(10 * m + p)
    truth = random_params(rng, m, p)
    Y = simulate(rng, truth, 150)
    start = random_params(rng, m, p)
    em_vars = ["transition_matrices", "observation_matrices", "transition_covariance",
               "observation_covariance", "initial_state_mean", "initial_state_covariance"]
    want, kf = _pykalman_em(pk, Y, start, em_vars, 6)
    est = _fit(Y, start, 6, m, freeze=("transition_offset", "observation_offset"),
               backend=backend)
    assert_close(estimated(est), want)
    assert np.isclose(est.score(Y), kf.loglikelihood(Y), rtol=1e-10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_em_equals_pykalman_default_em_vars(pk, backend):
    # pykalman's default: Q, R, mu0, S0; A, C and the offsets held (A = C = 1: local level)
    rng = np.random.default_rng(3)
    P = dict(A=np.eye(1), b=np.zeros(1), Q=np.eye(1) * 0.5, C=np.eye(1), d=np.zeros(1),
             R=np.eye(1) * 2.0, mu0=np.zeros(1), S0=np.eye(1) * 4.0)
    Y = simulate(rng, P, 120)
    want, _ = _pykalman_em(pk, Y, P, ["transition_covariance", "observation_covariance",
                                      "initial_state_mean", "initial_state_covariance"], 10)
    est = _fit(Y, P, 10, 1, freeze=("transition_matrix", "observation_matrix"),
               transition_offset=False, observation_offset=False, backend=backend)
    assert_close(estimated(est), want)


def test_em_equals_pykalman_whole_steps_missing(pk):
    # pykalman masks whole steps; with no offset estimated, the C and R updates of both
    # schemes are least squares; the schemes differ in the complete data they use for
    # the missing steps, so the comparison is on Q, A, mu0, S0 with C and R frozen
    rng = np.random.default_rng(4)
    truth = random_params(rng, 2, 2, offsets=False)
    Y = simulate(rng, truth, 120)
    Y[rng.random(120) < 0.2] = np.nan
    start = random_params(rng, 2, 2, offsets=False)
    want, _ = _pykalman_em(pk, np.ma.masked_invalid(Y), start,
                           ["transition_matrices", "transition_covariance",
                            "initial_state_mean", "initial_state_covariance"], 5)
    est = _fit(Y, start, 5, 2, freeze=("observation_matrix", "observation_covariance"),
               transition_offset=False, observation_offset=False)
    assert_close(estimated(est), want)


# ------------------------------------------------------------------ textbook EM (dense)


def dense_posterior(Y, P):
    """Joint Gaussian of (x_1..x_T, y_1..y_T) of one sequence given its observed entries."""
    T, (p, m) = Y.shape[0], P["C"].shape
    F = np.zeros((T * m, T * m))
    mx = np.zeros((T, m))
    mx[0] = P["mu0"]
    for t in range(T):
        if t:
            mx[t] = P["A"] @ mx[t - 1] + P["b"]
        for k in range(t + 1):
            F[t * m:(t + 1) * m, k * m:(k + 1) * m] = np.linalg.matrix_power(P["A"], t - k)
    cov_e = np.kron(np.eye(T), P["Q"])
    cov_e[:m, :m] = P["S0"]
    Sx = F @ cov_e @ F.T
    G = np.kron(np.eye(T), P["C"])
    mean = np.concatenate([mx.ravel(), (mx @ P["C"].T + P["d"]).ravel()])
    cov = np.block([[Sx, Sx @ G.T], [G @ Sx, G @ Sx @ G.T + np.kron(np.eye(T), P["R"])]])
    o = T * m + np.flatnonzero(~np.isnan(Y.ravel()))
    K = np.linalg.solve(cov[np.ix_(o, o)], cov[o]).T
    e = Y.ravel()[o - T * m] - mean[o]
    post_mean = mean + K @ e
    post_cov = cov - K @ cov[o]
    sign, logdet = np.linalg.slogdet(cov[np.ix_(o, o)])
    ll = -0.5 * (o.size * np.log(2 * np.pi) + logdet + e @ np.linalg.solve(cov[np.ix_(o, o)], e))
    second = post_cov + np.outer(post_mean, post_mean)
    return post_mean, second, ll, T, m, p


def textbook_em_step(seqs, P, *, fixed=(), diag=()):
    """One EM step with per-step sums: regressions of x_1 on 1, x_{t+1} on (x_t, 1) and y_t
    on (x_t, 1), with frozen coefficients held; covariances from the expected residuals."""
    blocks = {"init": [], "trans": [], "obs": []}
    total = 0.0
    for Y in seqs:
        mu, M, ll, T, m, p = dense_posterior(Y, P)
        total += ll
        xi = [np.arange(t * m, (t + 1) * m) for t in range(T)]
        yi = [T * m + np.arange(t * p, (t + 1) * p) for t in range(T)]

        def mom(u, z, mu=mu, M=M):
            # E[[u; z; 1][u; z; 1]'] for index sets u, z
            idx = np.concatenate([u, z])
            E = np.ones((idx.size + 1, idx.size + 1))
            E[:-1, :-1] = M[np.ix_(idx, idx)]
            E[:-1, -1] = E[-1, :-1] = mu[idx]
            return E, u.size
        blocks["init"].append(mom(xi[0], np.arange(0)))
        blocks["trans"] += [mom(xi[t + 1], xi[t]) for t in range(T - 1)]
        blocks["obs"] += [mom(yi[t], xi[t]) for t in range(T)]
    new = dict(P)
    for block, (Fn, gn, Vn) in {"init": (None, "mu0", "S0"), "trans": ("A", "b", "Q"),
                                "obs": ("C", "d", "R")}.items():
        Es = blocks[block]
        k = Es[0][1]
        S = sum(E for E, _ in Es)
        n = len(Es)
        Suz, Szz = S[:k, k:], S[k:, k:]          # regressors z = (x, 1)
        q = Szz.shape[0] - 1
        free_F = Fn is not None and Fn not in fixed
        if free_F and gn not in fixed:
            W = Suz @ np.linalg.inv(Szz)
        elif free_F:
            g = P[gn]
            W = np.column_stack([(Suz[:, :q] - np.outer(g, Szz[q, :q]))
                                 @ np.linalg.inv(Szz[:q, :q]), g])
        elif gn not in fixed:
            F = P[Fn] if Fn is not None else np.zeros((k, 0))
            W = np.column_stack([F, (Suz[:, q] - F @ Szz[:q, q]) / n])
        else:
            W = np.column_stack([P[Fn] if Fn is not None else np.zeros((k, 0)), P[gn]])
        if Fn is not None:
            new[Fn] = W[:, :q]
        new[gn] = W[:, q]
        if Vn not in fixed:
            L = np.hstack([np.eye(k), -W])       # residual u - W z as a linear map
            V = sum(L @ E @ L.T for E, _ in Es) / n
            new[Vn] = np.diag(np.diag(V)) if Vn in diag else V
    return new, total


@pytest.mark.parametrize("case", ["all", "diag", "local-level", "no-offsets", "offsets-fixed"])
def test_em_equals_textbook_with_missing_entries(case):
    rng = np.random.default_rng(["all", "diag", "local-level", "no-offsets",
                                 "offsets-fixed"].index(case))
    m, p = (1, 2) if case == "local-level" else (2, 3)
    truth = random_params(rng, m, p)
    lengths = [9, 6, 1, 7]
    Y = np.vstack([simulate(rng, truth, n) for n in lengths])
    Y[rng.random(Y.shape) < 0.3] = np.nan
    Y[3] = np.nan  # a whole step missing
    start = random_params(rng, m, p, offsets=case != "no-offsets", diag=case == "diag")
    kw: dict = {}
    fixed: tuple = ()
    names_map = dict(zip(FIELDS, NAMES, strict=True))
    if case == "diag":
        kw = dict(transition_covariance_type="diag", observation_covariance_type="diag")
    elif case == "local-level":
        start["A"], start["C"] = np.eye(1), np.ones((p, 1))
        kw = dict(freeze=("transition_matrix", "observation_matrix"))
    elif case == "no-offsets":
        kw = dict(transition_offset=False, observation_offset=False)
        fixed = ("b", "d")
    elif case == "offsets-fixed":
        kw = dict(freeze=("transition_offset", "observation_offset", "initial_state_mean"))
    fixed = fixed + tuple(names_map[f] for f in kw.get("freeze", ()))
    diag = ("Q", "R") if case == "diag" else ()
    seqs = np.split(Y, np.cumsum(lengths)[:-1])
    want, lls = dict(start), []
    for _ in range(3):
        want, ll = textbook_em_step(seqs, want, fixed=fixed, diag=diag)
        lls.append(ll)
    est = _fit(Y, start, 3, m, lengths, **kw)
    assert_close(estimated(est), want, rtol=1e-8)
    np.testing.assert_allclose(est.loglik_history_[:3], lls, rtol=1e-10)


# ----------------------------------------------------------------------- closed forms


def test_only_R_free_with_nearly_deterministic_states_gives_residual_covariance():
    # Q and S0 nearly zero: the states are the known deterministic path, so one EM step
    # gives R's closed form, the mean outer product of y_t - C x_t - d
    rng = np.random.default_rng(5)
    P = random_params(rng, 2, 3)
    P["Q"], P["S0"] = 1e-12 * np.eye(2), 1e-12 * np.eye(2)
    Y = simulate(rng, P, 200)
    x = np.empty((200, 2))
    x[0] = P["mu0"]
    for t in range(1, 200):
        x[t] = P["A"] @ x[t - 1] + P["b"]
    E = Y - x @ P["C"].T - P["d"]
    start = dict(P, R=np.eye(3))
    est = _fit(Y, start, 1, 2, freeze=tuple(f for f in FIELDS if f != "observation_covariance"))
    np.testing.assert_allclose(est.observation_covariance_, E.T @ E / 200, rtol=1e-8)


def test_zero_observation_matrix_gives_the_missing_data_gaussian():
    # With C = 0 frozen, y_t = d + v_t: d and R are the mean and covariance of a normal
    # observed with missing entries, whose EM is MissingDataGaussian's
    rng = np.random.default_rng(6)
    Y = rng.multivariate_normal([1.0, -2.0, 0.5], _spd(rng, 3), size=80)
    Y[rng.random(Y.shape) < 0.25] = np.nan
    P = random_params(rng, 1, 3)
    P["C"], P["d"], P["R"] = np.zeros((3, 1)), np.zeros(3), np.eye(3)
    est = _fit(Y, P, 150, 1, freeze=("observation_matrix",))
    mvn = MissingDataGaussian(tol=0.0, max_iter=150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mvn.fit(Y)
    np.testing.assert_allclose(est.observation_offset_, mvn.mean_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(est.observation_covariance_, mvn.covariance_, rtol=1e-8)
    # complete data: one step gives the sample mean and covariance
    Yc = np.nan_to_num(Y, nan=0.3)
    one = _fit(Yc, P, 1, 1, freeze=("observation_matrix",))
    np.testing.assert_allclose(one.observation_offset_, Yc.mean(0), rtol=1e-12)
    np.testing.assert_allclose(one.observation_covariance_, np.cov(Yc.T, bias=True), rtol=1e-10)


# ------------------------------------------------------------------ engine properties


def _model(m, p, **kw):
    return LinearGaussianSSMModel(m, p, **kw)


def test_check_model_conformance():
    rng = np.random.default_rng(7)
    P = random_params(rng, 2, 3)
    lengths = [30, 20, 25]
    Y = np.vstack([simulate(rng, P, n) for n in lengths])
    Y[rng.random(Y.shape) < 0.15] = np.nan
    seqs = Sequences(Y, lengths)
    chunks = [Sequences(Y[:50], [30, 20]), Sequences(Y[50:], [25])]
    # EM of the full model needs tens of thousands of iterations here (the state is free up
    # to a rotation): stationarity is checked below with the matrices held fixed. Diagonal
    # covariances are declared "spd", so their off-diagonal coordinates leave the model and
    # the stationarity check does not apply to them.
    check_model(lambda: _model(2, 3), seqs, chunks=chunks, n_iter=10, stationary=False)
    check_model(lambda: _model(2, 3, transition_covariance_type="diag",
                               observation_covariance_type="diag", ridge=0.5),
                seqs, chunks=chunks, n_iter=10, stationary=False)
    check_stationary(_model(2, 3, ridge=0.5), seqs,
                     freeze=("observation_matrix", "transition_matrix"))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(1, 3), p=st.integers(1, 3), seed=st.integers(0, 2**16),
    lengths=st.lists(st.integers(6, 25), min_size=1, max_size=4),
    missing=st.sampled_from([0.0, 0.2, 0.5]),
    cov=st.sampled_from(["full", "diag"]),
    offsets=st.booleans(),
    freeze=st.sets(st.sampled_from(["transition_matrix", "observation_matrix",
                                    "transition_covariance", "initial_state_mean"]),
                   max_size=2),
)
def test_monotone_valid_additive_hypothesis(m, p, seed, lengths, missing, cov, offsets, freeze):
    rng = np.random.default_rng(seed)
    P = random_params(rng, m, p)
    Y = np.vstack([simulate(rng, P, n) for n in lengths])
    Y[rng.random(Y.shape) < missing] = np.nan
    Y[0, 0] = 0.1 if np.isnan(Y[0, 0]) else Y[0, 0]
    Y[:, np.all(np.isnan(Y), axis=0)] = 0.0  # every column observed somewhere
    seqs = Sequences(Y, lengths)
    model = _model(m, p, frozen=tuple(freeze), transition_covariance_type=cov,
                   observation_covariance_type=cov, transition_offset=offsets,
                   observation_offset=offsets)
    params = model.initialize(seqs, np.random.default_rng(seed))
    check_valid_params(model, params, seqs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        result = run_em(model, DataSource([seqs]), params, tol=0.0, max_iter=8,
                        freeze=tuple(freeze), strict=True)
    h = result.loglik_history
    assert np.all(np.diff(h) >= -1e-9 * np.maximum(1.0, np.abs(h[:-1])))
    for name in freeze:
        np.testing.assert_array_equal(getattr(result.params, name), getattr(params, name))
    if len(lengths) > 1:
        check_additive(model, params, seqs, seqs.split(int(np.sum(lengths[:-1]))))


@pytest.mark.parametrize("accelerate", [None, "squarem"])
def test_chunked_by_sequences_equals_whole(accelerate):
    rng = np.random.default_rng(8)
    P = random_params(rng, 2, 2)
    lengths = [40, 15, 30, 25]
    Y = np.vstack([simulate(rng, P, n) for n in lengths])
    Y[rng.random(Y.shape) < 0.2] = np.nan
    fits = []
    for chunk_size in (None, 50):
        est = LinearGaussianSSM(2, random_state=1, tol=0.0, max_iter=15)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            fits.append(est.fit(Y, lengths, chunk_size=chunk_size, accelerate=accelerate))
    a, b = fits
    assert a.params_.allclose(b.params_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.loglik_history_, b.loglik_history_, rtol=1e-11)


def test_squarem_is_monotone_and_faster_than_plain_em():
    rng = np.random.default_rng(9)
    P = random_params(rng, 1, 2)
    Y = np.vstack([simulate(rng, P, 60) for _ in range(3)])
    lengths = [60, 60, 60]
    fits = {}
    for acc in (None, "squarem"):
        fits[acc] = LinearGaussianSSM(
            1, observation_matrix_init=[[1.0], [0.5]], freeze=("observation_matrix",),
            transition_offset=False, random_state=0, tol=1e-8, max_iter=2000, strict=True,
        ).fit(Y, lengths, accelerate=acc)
    plain, fast = fits[None], fits["squarem"]
    assert fast.converged_ and plain.converged_
    assert np.all(np.diff(fast.loglik_history_) >= -1e-9 * np.abs(fast.loglik_history_[:-1]))
    assert fast.n_e_steps_ < plain.n_e_steps_ / 2
    assert fast.score(Y, lengths) >= plain.score(Y, lengths) - 1e-9
    np.testing.assert_array_equal(fast.observation_matrix_, [[1.0], [0.5]])


def test_ridge_is_the_map_update_and_monotone_in_the_penalised_likelihood():
    rng = np.random.default_rng(11)
    P = random_params(rng, 2, 2)
    Y = simulate(rng, P, 50)
    free = _fit(Y, P, 1, 2)
    ridged = _fit(Y, P, 1, 2, ridge=3.0)
    # one step from the same start: the ridge adds ridge/n to the diagonal of each update
    np.testing.assert_allclose(ridged.observation_covariance_,
                               free.observation_covariance_ + 3.0 / 50 * np.eye(2), rtol=1e-10)
    np.testing.assert_allclose(ridged.transition_covariance_,
                               free.transition_covariance_ + 3.0 / 49 * np.eye(2), rtol=1e-10)
    np.testing.assert_allclose(ridged.initial_state_covariance_,
                               free.initial_state_covariance_ + 3.0 * np.eye(2), rtol=1e-10)
    model = _model(2, 2, ridge=3.0)
    check_monotone(model, Sequences(Y), n_iter=15)


@settings(max_examples=10, deadline=None)
@given(
    lengths=st.lists(st.integers(3, 20), min_size=2, max_size=5),
    chunk=st.integers(1, 40), seed=st.integers(0, 2**16), missing=st.sampled_from([0.0, 0.3]),
)
def test_chunked_fit_equals_whole_hypothesis(lengths, chunk, seed, missing):
    rng = np.random.default_rng(seed)
    P = random_params(rng, 1, 2)
    Y = np.vstack([simulate(rng, P, n) for n in lengths])
    Y[rng.random(Y.shape) < missing] = np.nan
    Y[0] = np.nan_to_num(Y[0], nan=0.5)  # every column observed somewhere
    fits = [_fit(Y, P, 4, 1, lengths, chunk_size=c) for c in (None, chunk)]
    assert fits[0].params_.allclose(fits[1].params_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fits[0].loglik_history_, fits[1].loglik_history_, rtol=1e-11)
