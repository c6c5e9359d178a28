"""LinearGaussianSSM's surface: filter/smooth/forecast/impute/score against the inference
layer and oracles, sampling, criteria, persistence, freezing, robustness and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import LinearGaussianSSM
from emframe.models.ssm.mstep import FLOOR, covariance_update
from test_ssm_em import as_init, random_params, simulate

import emframe
from emframe.core.exceptions import ConvergenceWarning, NotFittedError
from emframe.inference.kalman import (
    LinearGaussianSystem,
    kalman_filter,
    observation_moments,
    rts_smoother,
)


def _quiet_fit(est, Y, lengths=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(Y, lengths, **kw)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    P = random_params(rng, 2, 3)
    lengths = [50, 30, 40]
    Y = np.vstack([simulate(rng, P, n) for n in lengths])
    Y[rng.random(Y.shape) < 0.2] = np.nan
    Y[10] = np.nan
    est = _quiet_fit(LinearGaussianSSM(2, random_state=0, max_iter=10), Y, lengths)
    return est, Y, lengths


def _system(est):
    return est.params_.system()


def test_fitted_attributes_and_filter_smooth_equal_the_inference_layer(fitted):
    est, Y, lengths = fitted
    assert est.transition_matrix_.shape == (2, 2) and est.observation_matrix_.shape == (3, 2)
    assert est.n_features_in_ == 3
    f = kalman_filter(Y, _system(est), lengths)
    s = rts_smoother(Y, _system(est), lengths)
    means, covs = est.filter(Y, lengths)
    np.testing.assert_array_equal(means, f.filtered_means)
    np.testing.assert_array_equal(covs, f.filtered_covs)
    means, covs = est.smooth(Y, lengths)
    np.testing.assert_array_equal(means, s.smoothed_means)
    np.testing.assert_array_equal(covs, s.smoothed_covs)
    assert est.score(Y, lengths) == pytest.approx(f.log_likelihood, rel=1e-12)
    assert est.log_likelihood(Y, lengths) == est.score(Y, lengths)
    np.testing.assert_allclose(est.score_sequences(Y, lengths), f.seq_log_likelihood)


def test_score_samples_are_one_step_predictive_densities_summing_to_the_score(fitted):
    est, Y, lengths = fitted
    terms = est.score_samples(Y, lengths)
    assert terms.shape == (Y.shape[0],) and terms[10] == 0.0
    bounds = np.cumsum([0, *lengths])
    per_seq = [terms[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    np.testing.assert_allclose(per_seq, est.score_sequences(Y, lengths), rtol=1e-10)
    # a step's term is the log-likelihood gained by adding it
    t = 20
    gain = est.score(Y[: t + 1]) - est.score(Y[:t])
    assert terms[t] == pytest.approx(gain, rel=1e-9)


@pytest.mark.parametrize("several", [False, True])
def test_forecast_equals_filtering_appended_missing_steps(fitted, several):
    est, Y, lengths = fitted
    h = 4
    if not several:
        Y, lengths = Y[:50], None
    seqs = np.split(Y, np.cumsum(lengths)[:-1]) if several else [Y]
    padded = np.vstack([np.vstack([s, np.full((h, 3), np.nan)]) for s in seqs])
    f = kalman_filter(padded, _system(est), None if not several else [len(s) + h for s in seqs])
    means, covs, smeans, scovs = est.forecast(Y, h, lengths, states=True)
    C, d, R = est.observation_matrix_, est.observation_offset_, est.observation_covariance_
    ends = np.cumsum([len(s) + h for s in seqs])
    for i, end in enumerate(ends):
        rows = slice(end - h, end)
        get = (lambda a, i=i: a[i]) if several else (lambda a: a)
        np.testing.assert_allclose(get(smeans), f.predicted_means[rows], rtol=1e-10)
        np.testing.assert_allclose(get(scovs), f.predicted_covs[rows], rtol=1e-10)
        np.testing.assert_allclose(get(means), f.predicted_means[rows] @ C.T + d, rtol=1e-10)
        np.testing.assert_allclose(get(covs), C @ f.predicted_covs[rows] @ C.T + R, rtol=1e-10)
    m2, c2 = est.forecast(Y, h, lengths)
    np.testing.assert_array_equal(m2, means)
    zero = est.forecast(Y, 0, lengths)
    assert zero[0].shape == ((len(seqs),) if several else ()) + (0, 3)


def test_impute_is_the_conditional_mean_and_leaves_input_alone(fitted):
    est, Y, lengths = fitted
    before = Y.copy()
    filled, std = est.impute(Y, lengths, return_std=True)
    np.testing.assert_array_equal(Y, before)
    observed = ~np.isnan(Y)
    np.testing.assert_array_equal(filled[observed], Y[observed])
    assert np.all(np.isfinite(filled))
    assert np.all(std[observed] == 0) and np.all(std[~observed] > 0)
    # per sequence, against the inference layer
    a, b = 50, 80
    sm = rts_smoother(Y[a:b], _system(est))
    want, _ = observation_moments(Y[a:b], _system(est), sm)
    np.testing.assert_allclose(filled[a:b], want, rtol=1e-10)
    np.testing.assert_array_equal(est.impute(Y, lengths), filled)


def test_sample_is_seeded_and_has_the_model_mean():
    P = dict(A=np.array([[0.5]]), b=np.array([1.0]), Q=np.array([[0.3]]),
             C=np.array([[2.0], [-1.0]]), d=np.array([0.5, 3.0]), R=np.eye(2) * 0.2,
             mu0=np.array([2.0]), S0=np.array([[0.4]]))
    est = LinearGaussianSSM(1, **as_init(P), max_iter=0, random_state=3).fit(np.zeros((5, 2)))
    Y1, X1 = est.sample(20000, random_state=1)
    Y2, _ = est.sample(20000, random_state=1)
    np.testing.assert_array_equal(Y1, Y2)
    assert Y1.shape == (20000, 2) and X1.shape == (20000, 1)
    # stationary state mean b / (1 - a) = 2, variance q / (1 - a^2) = 0.4
    assert X1.mean() == pytest.approx(2.0, abs=0.05)
    assert X1.var() == pytest.approx(0.4, rel=0.05)
    np.testing.assert_allclose(Y1.mean(0), [4.5, 1.0], atol=0.1)
    assert not np.array_equal(est.sample(5)[0], est.sample(5, random_state=2)[0])


def test_bic_aic_and_parameter_counts(fitted):
    est, Y, lengths = fitted
    ll = est.score(Y, lengths)
    k = 4 + 2 + 3 + 6 + 3 + 6 + 2 + 3
    assert est.n_parameters() == k
    assert est.bic(Y, lengths) == pytest.approx(-2 * ll + k * np.log(Y.shape[0]))
    assert est.aic(Y, lengths) == pytest.approx(-2 * ll + 2 * k)
    other = _quiet_fit(LinearGaussianSSM(
        2, transition_covariance_type="diag", observation_covariance_type="diag",
        transition_offset=False, freeze=("observation_matrix", "initial_state_mean"),
        max_iter=2), Y, lengths)
    assert other.n_parameters() == 4 + 2 + 3 + 3 + 3  # A, Q, d, R, S0
    assert np.all(other.transition_offset_ == 0)
    for cov in (other.transition_covariance_, other.observation_covariance_):
        np.testing.assert_array_equal(cov, np.diag(np.diag(cov)))


def test_save_load_round_trip(fitted, tmp_path):
    est, Y, lengths = fitted
    est2 = LinearGaussianSSM(2, transition_matrix_init=[[0.5, 0.0], [0.0, 0.5]],
                             freeze=("transition_matrix",), observation_offset=False,
                             observation_covariance_type="diag", max_iter=3)
    _quiet_fit(est2, Y, lengths)
    for e in (est, est2):
        path = e.save(tmp_path / "ssm.npz")
        loaded = emframe.load(path)
        assert type(loaded) is LinearGaussianSSM
        assert loaded.get_params().keys() == e.get_params().keys()
        assert loaded.params_.allclose(e.params_, rtol=0.0)
        assert loaded.score(Y, lengths) == e.score(Y, lengths)
        np.testing.assert_array_equal(loaded.smooth(Y, lengths)[0], e.smooth(Y, lengths)[0])
        np.testing.assert_array_equal(loaded.impute(Y, lengths), e.impute(Y, lengths))
        assert loaded.n_parameters() == e.n_parameters()


def test_determinism_restarts_and_warm_start(fitted):
    _, Y, lengths = fitted
    a = _quiet_fit(LinearGaussianSSM(2, random_state=5, max_iter=4), Y, lengths)
    b = _quiet_fit(LinearGaussianSSM(2, random_state=5, max_iter=4), Y, lengths)
    c = _quiet_fit(LinearGaussianSSM(2, random_state=6, max_iter=4), Y, lengths)
    assert a.params_.allclose(b.params_, rtol=0.0)
    assert not a.params_.allclose(c.params_, rtol=1e-3)
    many = _quiet_fit(LinearGaussianSSM(2, random_state=5, max_iter=4, n_init=3), Y, lengths)
    assert many.lower_bound_ >= a.lower_bound_ - 1e-9
    # warm start: 4 + 4 iterations of plain EM are 8 (SQUAREM's cycles restart)
    eight = _quiet_fit(LinearGaussianSSM(2, random_state=5, max_iter=8), Y, lengths,
                       accelerate=None)
    _quiet_fit(a, Y, lengths, accelerate=None)
    a.set_params(warm_start=True)
    _quiet_fit(a, Y, lengths, accelerate=None)
    assert a.params_.allclose(eight.params_, rtol=1e-8, atol=1e-10)


def test_frozen_fields_keep_their_values_and_partial_fit_runs(fitted):
    _, Y, lengths = fitted
    A0 = np.array([[0.9, 0.1], [0.0, 0.8]])
    Q0 = np.diag([0.5, 0.7])
    est = _quiet_fit(LinearGaussianSSM(2, transition_matrix_init=A0, transition_covariance_init=Q0,
                                       freeze=("transition_matrix", "transition_covariance"),
                                       max_iter=5, random_state=0), Y, lengths)
    np.testing.assert_array_equal(est.transition_matrix_, A0)
    np.testing.assert_array_equal(est.transition_covariance_, Q0)
    assert np.all(np.diff(est.loglik_history_) > -1e-9 * np.abs(est.loglik_history_[:-1]))
    online = LinearGaussianSSM(2, random_state=0)
    for _ in range(3):
        online.partial_fit(Y, lengths)
    assert online.n_iter_ == 3 and np.all(np.isfinite(online.transition_matrix_))
    online._model.check_params(online.params_)


def test_long_series_and_nearly_singular_covariances():
    rng = np.random.default_rng(12)
    T = 100_000
    level = np.cumsum(rng.normal(scale=0.1, size=T))
    y = (level + rng.normal(size=T))[:, None]
    y[rng.random(T) < 0.1] = np.nan
    ll = LinearGaussianSSM(1, transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
                           freeze=("transition_matrix", "observation_matrix"),
                           transition_offset=False, observation_offset=False, strict=True,
                           max_iter=3)
    _quiet_fit(ll, y)
    assert np.all(np.isfinite(ll.loglik_history_))
    assert np.all(np.diff(ll.loglik_history_) > 0)
    # R near singular (noise 1e-5 of the signal) and Q near singular (a nearly fixed state)
    P = random_params(rng, 2, 2)
    P["R"] = np.diag([1e-10, 1e-9])
    P["Q"] = np.diag([1e-12, 1.0])
    Y = simulate(rng, P, 300)
    Y[rng.random(Y.shape) < 0.1] = np.nan
    est = _quiet_fit(LinearGaussianSSM(2, **as_init(P), max_iter=5, strict=True), Y)
    h = est.loglik_history_
    assert np.all(np.isfinite(h)) and np.all(np.diff(h) >= -1e-9 * np.abs(h[:-1]))
    est._model.check_params(est.params_)


def test_never_observed_column_is_allowed_when_its_rows_are_frozen():
    rng = np.random.default_rng(13)
    P = random_params(rng, 1, 2, offsets=False)
    Y = simulate(rng, P, 60)
    Y[:, 1] = np.nan
    init = {k: v for k, v in as_init(P).items() if "offset" not in k}
    kw = dict(freeze=("observation_matrix", "observation_covariance"), observation_offset=False,
              transition_offset=False, max_iter=3)
    est = _quiet_fit(LinearGaussianSSM(1, **init, **kw), Y)
    filled = est.impute(Y)
    means, _ = est.smooth(Y)
    # E[y_1 | x, y_0] = C_1 x + G (y_0 - C_0 x) with G = R_10 / R_00 (y_0 is never missing)
    G = P["R"][1, 0] / P["R"][0, 0]
    want = means @ P["C"][1] + G * (Y[:, 0] - means @ P["C"][0])
    np.testing.assert_allclose(filled[:, 1], want, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"column\(s\) 1 of Y have no observed value"):
        LinearGaussianSSM(1, **init, freeze=("observation_matrix",), observation_offset=False
                          ).fit(Y)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs,lengths,error,match", [
    ({}, [10, 10], ValueError, "sum"),
    ({"transition_matrix_init": np.eye(3)}, None, ValueError,
     r"transition_matrix_init must have shape \(2, 2\)"),
    ({"observation_offset_init": [1.0, 2.0]}, None, ValueError,
     r"observation_offset_init must have shape \(3,\)"),
    ({"transition_covariance_init": [[1.0, 0.5], [0.0, 1.0]]}, None, ValueError, "symmetric"),
    ({"observation_covariance_init": -np.eye(3)}, None, ValueError, "positive definite"),
    ({"initial_state_covariance_init": [[1.0, 2.0], [2.0, 1.0]]}, None, ValueError,
     "positive definite"),
    ({"observation_covariance_init": np.ones((3, 3)) + np.eye(3),
      "observation_covariance_type": "diag"}, None, ValueError, "diagonal"),
    ({"n_dim_state": 0}, None, ValueError, "n_dim_state must be >= 1"),
    ({"n_dim_state": 1.5}, None, TypeError, "n_dim_state"),
    ({"freeze": ("transition_matrix", "A")}, None, ValueError, r"cannot freeze \['A'\]"),
    ({"transition_offset": [0.0, 0.0]}, None, TypeError, "transition_offset_init"),
    ({"transition_offset_init": [0.0, 0.0], "transition_offset": False}, None, ValueError,
     "switches that offset off"),
    ({"observation_covariance_type": "spherical"}, None, ValueError, "observation_covariance"),
    ({"ridge": -1.0}, None, ValueError, "ridge"),
])
def test_bad_constructor_arguments_and_lengths(fitted, kwargs, lengths, error, match):
    est, Y, _ = fitted
    Y = Y[:30].copy()
    before = Y.copy()
    kwargs = {"n_dim_state": 2, **kwargs}
    new = LinearGaussianSSM(**kwargs)
    with pytest.raises(error, match=match):
        new.fit(Y, lengths)
    assert not hasattr(new, "params_")
    # a fitted estimator keeps its fit when a refit fails
    saved = est.params_
    old = est.get_params()
    est.set_params(**kwargs)
    try:
        with pytest.raises(error, match=match):
            est.fit(Y, lengths)
    finally:
        est.set_params(**old)
    assert est.params_ is saved
    np.testing.assert_array_equal(Y, before)


def test_bad_data(fitted):
    est, Y, lengths = fitted
    bad = Y.copy()
    bad[3, 1] = np.inf
    with pytest.raises(ValueError, match="inf"):
        LinearGaussianSSM(2).fit(bad, lengths)
    with pytest.raises(ValueError, match="inf"):
        est.smooth(bad, lengths)
    with pytest.raises(ValueError, match="reshape"):
        LinearGaussianSSM(1).fit(np.arange(5.0))
    with pytest.raises(ValueError, match="3 features"):
        est.score(Y[:, :2])
    with pytest.raises(ValueError, match="n_steps must be >= 0"):
        est.forecast(Y, -1, lengths)
    with pytest.raises(TypeError, match="n_steps"):
        est.forecast(Y, 2.5, lengths)
    with pytest.raises(ValueError, match=r"column\(s\) 0 of Y have no observed value"):
        LinearGaussianSSM(1).fit(np.column_stack([np.full(10, np.nan), np.arange(10.0)]))
    with pytest.raises(ValueError, match="every sequence has length 1"):
        LinearGaussianSSM(1, max_iter=2).fit(Y[:4], [1, 1, 1, 1])
    with pytest.raises(NotFittedError):
        LinearGaussianSSM(1).smooth(Y)
    with pytest.raises(NotFittedError):
        LinearGaussianSSM(1).sample(3)


def test_a_collapsing_covariance_stops_at_the_floor():
    # two identical columns fitted with a state per column and free C: R must collapse.
    # Its M-step update is singular up to rounding, so it is held at the floor (R >=
    # FLOOR * the columns' variances), where EM stays monotone, instead of an error
    rng = np.random.default_rng(14)
    x = np.cumsum(rng.normal(size=40))
    Y = np.column_stack([x, x])
    est = _quiet_fit(LinearGaussianSSM(2, max_iter=200, random_state=0, strict=True), Y)
    est._model.check_params(est.params_)
    R = est.observation_covariance_
    floor = FLOOR * Y.var(axis=0)
    scaled = R / np.sqrt(np.outer(floor, floor))
    np.testing.assert_allclose(np.linalg.eigvalsh(scaled)[0], 1.0, rtol=1e-6)
    est = _quiet_fit(LinearGaussianSSM(2, max_iter=20, random_state=0, ridge=1e-3), Y)
    est._model.check_params(est.params_)
    assert np.linalg.eigvalsh(est.observation_covariance_)[0] >= 1e-3 / 40 * (1 - 1e-9)


def test_an_indefinite_covariance_update_is_a_clear_error():
    # beyond rounding, an indefinite update means inconsistent statistics: an error
    scatter = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="observation_covariance is not positive semi-def"):
        covariance_update(scatter, 10.0, False, 0.0, "observation_covariance")
    # at rounding level it is raised to the floor, or to the rounding level
    scatter = np.array([[1.0, 1.0], [1.0, 1.0 - 1e-16]])
    V = covariance_update(scatter, 1.0, False, 0.0, "R", floor=np.array([1e-10, 1e-10]))
    assert np.linalg.eigvalsh(V)[0] >= 1e-10 * (1 - 1e-6)
    V = covariance_update(scatter, 1.0, False, 0.0, "Q")
    np.linalg.cholesky(V)


def test_the_system_matches_the_parameters(fitted):
    est = fitted[0]
    s = _system(est)
    assert isinstance(s, LinearGaussianSystem)
    np.testing.assert_array_equal(s.A, est.transition_matrix_)
    np.testing.assert_array_equal(s.d, est.observation_offset_)


def test_methods_use_the_current_backend(fitted, monkeypatch):
    from emframe.inference.kalman import has_numba

    if not has_numba():
        pytest.skip("numba not installed")
    from emframe.inference.kalman import _numba

    def fail(*args, **kwargs):
        raise AssertionError("numba kernel called")

    est, Y, lengths = fitted
    monkeypatch.setattr(_numba, "kalman_filter", fail)
    monkeypatch.setattr(_numba, "rts_smoother", fail)
    old = est.backend
    try:
        est.set_params(backend="numpy")
        est.score(Y, lengths), est.bic(Y, lengths), est.smooth(Y, lengths)
        est.impute(Y, lengths), est.forecast(Y, 2, lengths), est.score_samples(Y, lengths)
        est.set_params(backend="numba")
        with pytest.raises(AssertionError, match="numba kernel called"):
            est.score(Y, lengths)
    finally:
        est.set_params(backend=old)
