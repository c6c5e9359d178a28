"""StudentTMixture: exact EM, the Gaussian limit, the K=1 MLE, robustness, API and bad input."""

import math
import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture, StudentTMixture
from emframe.models.robust import StudentTMixtureModel
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps

import emframe
from emframe.exceptions import ConvergenceWarning, NotFittedError
from emframe.inference.student_t import DOF_MAX, DOF_MIN
from emframe.interfaces.cli import main as cli_main
from emframe.testing import check_additive, check_model, check_monotone, check_valid_params

TYPES = ["full", "tied", "diag", "spherical"]


def clusters(n=(150, 100), seed=0, dof=None):
    """Two clusters in 2-D, Gaussian or (with ``dof``) t-distributed."""
    rng = np.random.default_rng(seed)
    shapes = [np.eye(2), np.array([[1.0, 0.5], [0.0, 0.7]])]
    centres = [np.zeros(2), np.array([6.0, 2.0])]
    parts = []
    for m, A, c in zip(n, shapes, centres, strict=True):
        z = rng.normal(size=(m, 2))
        if dof is not None:
            z /= np.sqrt(rng.gamma(dof / 2, 2 / dof, size=(m, 1)))
        parts.append(c + z @ A.T)
    return np.concatenate(parts)


def quiet(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, **kw)


def gauss_init(X, covariance_type, K=2):
    g = quiet(GaussianMixture(K, covariance_type=covariance_type, max_iter=1, random_state=0), X)
    return {"weights_init": g.weights_, "means_init": g.means_, "precisions_init": g.precisions_}


def rel_err(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(b)))


# ---------------------------------------------------------------------------
# the engine's contract
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
def test_engine_conformance(covariance_type):
    X = clusters(dof=3.0) + 20.0
    check_model(lambda: StudentTMixtureModel(2, covariance_type=covariance_type), X,
                chunks=[X[:90], X[90:170], X[170:]])


@settings(max_examples=12, deadline=None)
@given(
    K=st.integers(1, 3),
    d=st.integers(1, 3),
    dof=st.floats(0.5, 30.0),
    n_out=st.integers(0, 6),
    seed=st.integers(0, 2**16),
    offset=st.sampled_from([0.0, 1e4]),
    reg_covar=st.sampled_from([0.0, 1e-6, 1e-3]),
)
@pytest.mark.parametrize("covariance_type", TYPES)
def test_properties_monotone_additive_valid(covariance_type, K, d, dof, n_out, seed, offset,
                                            reg_covar):
    # without regularisation a component may collapse onto one point (as in a Gaussian
    # mixture): the likelihood is unbounded there
    assume(reg_covar > 0 or K == 1)
    rng = np.random.default_rng(seed)
    n = 60
    labels = rng.integers(K, size=n)
    centres = rng.normal(scale=5.0, size=(K, d))
    u = rng.gamma(dof / 2, 2 / dof, size=(n, 1))
    X = centres[labels] + rng.normal(size=(n, d)) / np.sqrt(u)
    X[:n_out] += rng.normal(scale=60.0, size=(n_out, d))  # gross outliers
    X += offset
    model = StudentTMixtureModel(K, covariance_type=covariance_type, reg_covar=reg_covar,
                                 dof_init=rng.uniform(1.0, 20.0, size=K))
    params = model.initialize(X, np.random.default_rng(seed))
    history = check_monotone(model, X, params, n_iter=15)
    assert np.all(np.isfinite(history))
    check_additive(model, params, X, [X[:17], X[17:41], X[41:]])
    new = check_valid_params(model, params, X)
    assert np.all((new.dof >= DOF_MIN) & (new.dof <= DOF_MAX))
    # weighted statistics are additive too
    w = rng.uniform(0.0, 2.0, size=n)
    whole, ll = model.e_step(params, X, sample_weight=w)
    a, ll_a = model.e_step(params, X[:30], sample_weight=w[:30])
    b, ll_b = model.e_step(params, X[30:], sample_weight=w[30:])
    assert (a + b).allclose(whole, rtol=1e-9, atol=1e-9)
    assert ll_a + ll_b == pytest.approx(ll, rel=1e-12)


@pytest.mark.parametrize("covariance_type", TYPES)
def test_chunked_weighted_and_accelerated_fits(covariance_type):
    X = clusters(dof=4.0)
    init = gauss_init(X, covariance_type)
    kw = {"covariance_type": covariance_type, "max_iter": 8, "tol": 0, **init}
    a = quiet(StudentTMixture(2, **kw), X)
    b = quiet(StudentTMixture(2, **kw), X, chunk_size=37)
    assert b.params_.allclose(a.params_, rtol=1e-10)
    # integer weights equal repeated rows, the same reg_covar included (its prior is
    # attached to the data size, counted in relative weights; strong, so that it shows)
    w = np.random.default_rng(1).integers(0, 3, size=len(X))
    c = quiet(StudentTMixture(2, **{**kw, "reg_covar": 0.05}), X, sample_weight=w)
    d = quiet(StudentTMixture(2, **{**kw, "reg_covar": 0.05}), np.repeat(X, w, axis=0))
    assert c.params_.allclose(d.params_, rtol=1e-9, atol=1e-12)
    # SQUAREM reaches the same maximum (on data whose maximum has finite dof: EM creeps
    # slowly towards a dof at infinity)
    X = clusters(dof=2.0, seed=1)
    full = {**kw, **gauss_init(X, covariance_type), "max_iter": 1000, "tol": 1e-9}
    plain = quiet(StudentTMixture(2, **full), X)
    fast = quiet(StudentTMixture(2, **full), X, accelerate="squarem")
    assert plain.converged_ and fast.converged_ and fast.n_iter_ < plain.n_iter_
    assert fast.loglik_history_[-1] == pytest.approx(plain.loglik_history_[-1], abs=1e-5)
    assert np.all(np.diff(fast.loglik_history_) >= -1e-9 * np.abs(fast.loglik_history_[1:]))


def test_online_fitting_approaches_the_batch_fit():
    X = np.tile(clusters(dof=3.0), (8, 1))
    batch = StudentTMixture(2, random_state=0).fit(X)
    online = StudentTMixture(2, random_state=0, max_iter=5).fit(X, method="online",
                                                                batch_size=200)
    order = np.argsort(online.means_[:, 0])
    ref = np.argsort(batch.means_[:, 0])
    np.testing.assert_allclose(online.means_[order], batch.means_[ref], atol=0.1)
    np.testing.assert_allclose(online.dof_[order], batch.dof_[ref], rtol=0.3)
    stream = StudentTMixture(2, random_state=0)
    for start in range(0, len(X), 250):
        stream.partial_fit(X[start:start + 250])
    assert np.all(np.isfinite(stream.dof_)) and stream.n_iter_ == 8


def test_blocked_e_step_equals_one_block(monkeypatch):
    import emframe.models.robust.student_t as module

    X = np.tile(clusters(dof=3.0), (40, 1)) + 1e3  # 10000 rows: three blocks
    w = np.random.default_rng(0).uniform(0, 2, size=len(X))
    model = StudentTMixtureModel(2)
    params = model.initialize(X, np.random.default_rng(0))
    blocked = [model.e_step(params, X), model.e_step(params, X, sample_weight=w)]
    monkeypatch.setattr(module, "_BLOCK", 10**9)
    for (a, ll_a), (b, ll_b) in zip(blocked, [model.e_step(params, X),
                                             model.e_step(params, X, sample_weight=w)],
                                    strict=True):
        assert a.allclose(b, rtol=1e-10, atol=1e-8)
        assert ll_a == pytest.approx(ll_b, rel=1e-12)


# ---------------------------------------------------------------------------
# oracles: the Gaussian limit and the K = 1 maximum likelihood estimate
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("covariance_type", TYPES)
def test_frozen_large_dof_approaches_gaussian_mixture_as_one_over_dof(covariance_type):
    # E[u] = 1 + (d - m) / (nu + m) and log t = log N + O(1/nu): from a common start the
    # iterates differ by c / nu. On these data c is about 1.7 for every covariance type;
    # we assert err <= 10 / nu and that err * nu is constant to 2% from nu = 1e3 to 1e9
    # (first order, and no loss of digits at large nu).
    X = clusters()
    init = gauss_init(X, covariance_type)
    kw = {"covariance_type": covariance_type, "max_iter": 5, "tol": 0, **init}
    g = quiet(GaussianMixture(2, **kw), X)
    scaled = []
    for nu in [1e3, 1e5, 1e7, 1e9]:
        t = quiet(StudentTMixture(2, dof_init=nu, freeze=("dof",), **kw), X)
        np.testing.assert_array_equal(t.dof_, nu)
        err = max(rel_err(getattr(t, a), getattr(g, a))
                  for a in ("weights_", "means_", "covariances_"))
        assert err <= 10.0 / nu
        gap = np.max(np.abs(t.loglik_history_ - g.loglik_history_)) / len(X)
        assert gap <= 1.0 / nu
        scaled.append(err * nu)
    assert max(scaled) <= 1.02 * min(scaled)


def _neg_loglik(theta, X, covariance_type):
    d = X.shape[1]
    mu, rest, log_nu = theta[:d], theta[d:-1], theta[-1]
    if covariance_type == "full":
        L = np.zeros((d, d))
        L[np.tril_indices(d)] = rest
        L[np.diag_indices(d)] = np.exp(np.diag(L))
        scale = L @ L.T
    elif covariance_type == "diag":
        scale = np.diag(np.exp(rest))
    else:
        scale = np.exp(rest[0]) * np.eye(d)
    return -sps.multivariate_t(loc=mu, shape=scale, df=math.exp(log_nu)).logpdf(X).sum()


@pytest.mark.parametrize("covariance_type,n_scale", [("full", 3), ("diag", 2), ("spherical", 1)])
def test_single_component_mle_equals_direct_maximisation(covariance_type, n_scale):
    # scipy's t log-density, maximised over location, scale and dof by BFGS then
    # Nelder-Mead, is an independent oracle for the EM fixed point
    rng = np.random.default_rng(0)
    A = np.array([[1.0, 0.3], [0.0, 0.7]])
    X = sps.multivariate_t(loc=[1.0, -2.0], shape=A @ A.T, df=4.0, seed=rng).rvs(300)
    est = quiet(StudentTMixture(1, covariance_type=covariance_type, reg_covar=0.0, tol=1e-12,
                                max_iter=3000), X, accelerate="squarem")
    theta0 = np.concatenate([np.median(X, axis=0), np.zeros(n_scale), [math.log(10.0)]])
    res = optimize.minimize(_neg_loglik, theta0, args=(X, covariance_type), method="BFGS",
                            options={"gtol": 1e-9})
    res = optimize.minimize(_neg_loglik, res.x, args=(X, covariance_type),
                            method="Nelder-Mead",
                            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 20000})
    ll_em = est.log_likelihood(X)
    assert ll_em == pytest.approx(-res.fun, abs=1e-6)
    assert ll_em >= -res.fun - 1e-6
    assert est.dof_[0] == pytest.approx(math.exp(res.x[-1]), rel=1e-3)
    np.testing.assert_allclose(est.means_[0], res.x[:2], atol=1e-4)


# ---------------------------------------------------------------------------
# robustness and outlier scores
# ---------------------------------------------------------------------------
def _matched_shift(means, reference):
    order = np.argsort(means[:, 0])
    return float(np.max(np.linalg.norm(means[order] - reference, axis=1)))


def test_gross_outliers_move_gaussian_means_not_t_means():
    # 5% gross outliers, scattered 15-25 units away on one side of the data (the clusters
    # have unit scale): the Gaussian mixture's means move by more than 0.5, the t
    # mixture's stay within 0.1 of its fit to the clean data
    X = clusters(n=(200, 200), seed=3)
    rng = np.random.default_rng(4)
    angle = rng.uniform(0.6, 1.2, size=20)
    radius = rng.uniform(15, 25, size=20)
    out = np.column_stack([radius * np.cos(angle), radius * np.sin(angle)]) + [3.0, 1.0]
    dirty = np.vstack([X, out])
    clean_t = StudentTMixture(2, random_state=0).fit(X)
    reference = clean_t.means_[np.argsort(clean_t.means_[:, 0])]
    t = StudentTMixture(2, random_state=0).fit(dirty)
    g = GaussianMixture(2, random_state=0).fit(dirty)
    clean_g = GaussianMixture(2, random_state=0).fit(X)
    assert _matched_shift(clean_g.means_, reference) < 0.05  # both agree on clean data
    assert _matched_shift(t.means_, reference) < 0.1
    assert _matched_shift(g.means_, reference) > 0.5
    # the outliers get the largest outlier scores
    scores = t.outlier_scores(dirty)
    assert set(np.argsort(scores)[-20:]) == set(range(400, 420))


def test_outlier_scores_single_component_closed_form():
    X = clusters(n=(200, 0), dof=5.0)
    t = StudentTMixture(1, max_iter=20, random_state=0).fit(X)
    xc = X - t.means_[0]
    m = np.einsum("ij,jk,ik->i", xc, t.precisions_[0], xc)
    nu, d = t.dof_[0], 2
    np.testing.assert_allclose(t.outlier_scores(X), np.log((nu + m) / (nu + d)), rtol=1e-10,
                               atol=1e-12)


# ---------------------------------------------------------------------------
# the estimator surface
# ---------------------------------------------------------------------------
def test_api_predict_score_bic_and_attributes():
    X = clusters(dof=3.0)
    t = StudentTMixture(2, random_state=0).fit(X)
    assert t.converged_ and t.dof_.shape == (2,) and t.weights_.sum() == pytest.approx(1)
    np.testing.assert_array_equal(t.predict(X), t.predict_proba(X).argmax(axis=1))
    np.testing.assert_allclose(t.predict_proba(X).sum(axis=1), 1.0)
    assert t.score(X) == pytest.approx(t.score_samples(X).mean(), rel=1e-12)
    # full covariance in 2-D: weights 1 + means 4 + scales 6 + dof 2
    assert t.n_parameters() == 13
    assert t.bic(X) == pytest.approx(-2 * t.score(X) * len(X) + 13 * math.log(len(X)))
    assert t.aic(X) == pytest.approx(-2 * t.score(X) * len(X) + 26)
    np.testing.assert_array_equal(StudentTMixture(2, random_state=0).fit_predict(X),
                                  t.predict(X))
    assert np.all(np.diff(t.loglik_history_) >= 0)
    np.testing.assert_allclose(t.precisions_[0] @ t.covariances_[0], np.eye(2), atol=1e-10)
    with pytest.raises(ValueError):
        t.means_[0, 0] = 1.0  # read-only views of params_


def test_dof_init_per_component_freeze_and_warm_start():
    X = clusters(dof=3.0)
    t = StudentTMixture(2, dof_init=[2.0, 50.0], freeze=("dof",), random_state=0).fit(X)
    np.testing.assert_array_equal(t.dof_, [2.0, 50.0])
    free = StudentTMixture(2, dof_init=[2.0, 50.0], random_state=0, max_iter=3, tol=0)
    quiet(free, X)
    assert not np.allclose(free.dof_, [2.0, 50.0])
    free.set_params(warm_start=True, max_iter=5)
    before = free.loglik_history_[-1]
    quiet(free, X)
    assert free.loglik_history_[0] == pytest.approx(before, rel=1e-12)


def test_sampling_draws_t_distributed_points():
    # under a t component, m / d is F(d, dof) distributed
    t = StudentTMixture(1, random_state=0).fit(clusters(n=(200, 0), dof=3.0))
    X, labels = t.sample(4000, random_state=1)
    assert X.shape == (4000, 2) and np.all(labels == 0)
    xc = X - t.means_[0]
    m = np.einsum("ij,jk,ik->i", xc, t.precisions_[0], xc)
    assert sps.kstest(m / 2, sps.f(2, t.dof_[0]).cdf).pvalue > 1e-3
    two = StudentTMixture(2, random_state=0).fit(clusters())
    X2, labels2 = two.sample(50)
    assert np.all(np.diff(labels2) >= 0) and X2.shape == (50, 2)


def test_save_load_round_trip(tmp_path):
    X = clusters(dof=3.0)
    for est in (StudentTMixture(2, covariance_type="diag", random_state=0),
                StudentTMixture(2, noise=True, random_state=0)):
        est.fit(X)
        path = est.save(tmp_path / "t.npz")
        back = emframe.load(path)
        assert type(back) is StudentTMixture and back.get_params() == est.get_params()
        np.testing.assert_array_equal(back.dof_, est.dof_)
        np.testing.assert_array_equal(back.score_samples(X), est.score_samples(X))
        np.testing.assert_array_equal(back.predict(X), est.predict(X))
        np.testing.assert_array_equal(back.outlier_scores(X), est.outlier_scores(X))


def test_cli_fits_tmix(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert cli_main(["fit", "tmix", "example:old_faithful", "--components", "2", "--quiet",
                     "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "StudentTMixture" in text and "dof_" in text
    assert type(emframe.load(out)) is StudentTMixture


# ---------------------------------------------------------------------------
# bad input: a clear error, nothing modified
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("dof_init,match", [
    (0.0, "positive and finite"), (-1.0, "positive and finite"),
    (float("nan"), "positive and finite"), (float("inf"), "positive and finite"),
    ([3.0, 0.0], "component 1"), ([1.0, 2.0, 3.0], r"shape \(2,\)"), ("a", "number"),
])
def test_bad_dof_init(dof_init, match):
    with pytest.raises((ValueError, TypeError), match=match):
        StudentTMixture(2, dof_init=dof_init).fit(clusters())


def test_bad_data_and_init_arrays():
    X = clusters()
    X_nan = X.copy()
    X_nan[3, 1] = np.nan
    before = X_nan.copy()
    with pytest.raises(ValueError, match="MissingDataGaussianMixture"):
        StudentTMixture(2).fit(X_nan)
    np.testing.assert_array_equal(X_nan, before)
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        StudentTMixture(5).fit(X[:3])
    with pytest.raises(ValueError, match=r"means_init must have shape"):
        StudentTMixture(2, means_init=np.zeros((3, 2))).fit(X)
    with pytest.raises(ValueError, match=r"weights_init must have shape"):
        StudentTMixture(2, weights_init=[1.0]).fit(X)
    with pytest.raises(ValueError, match=r"precisions_init .*shape"):
        StudentTMixture(2, precisions_init=np.ones((2, 3, 3))).fit(X)
    with pytest.raises(ValueError, match="covariance_type"):
        StudentTMixture(2, covariance_type="banana").fit(X)
    with pytest.raises(ValueError, match="cannot freeze"):
        StudentTMixture(2, freeze=("noise_weight",)).fit(X)
    with pytest.raises(NotFittedError):
        StudentTMixture(2).outlier_scores(X)
    t = StudentTMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="3 features"):
        t.outlier_scores(np.zeros((4, 3)))


def test_input_is_never_modified():
    X = clusters(dof=3.0)
    X.flags.writeable = False
    w = np.ones(len(X))
    w.flags.writeable = False
    means = np.array([[0.0, 0.0], [6.0, 2.0]])
    dof = np.array([3.0, 4.0])
    t = StudentTMixture(2, means_init=means, dof_init=dof, random_state=0).fit(
        X, sample_weight=w)
    t.outlier_scores(X)
    np.testing.assert_array_equal(means, [[0.0, 0.0], [6.0, 2.0]])
    np.testing.assert_array_equal(dof, [3.0, 4.0])
    assert t.dof_init is dof
