"""AutoRegressiveHMM: exact oracles, the Gaussian-HMM identity, EM properties, bad input."""

import itertools

import numpy as np
import pytest
from emframe.models import AutoRegressiveHMM, GaussianHMM
from emframe.models.hmm import HMMModel, Sequences
from emframe.models.hmm.emissions import AutoRegressiveEmission, lagged_rows
from emframe.models.hmm.emissions.autoregressive import regression_moments
from hmm_bruteforce import brute_force
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize
from scipy import stats as sps

import emframe
from emframe.core import reparam
from emframe.testing import check_additive, check_model

pytestmark = pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning")

COVARIANCE_TYPES = ["full", "diag", "spherical", "tied"]
START = np.array([0.6, 0.4])
TRANS = np.array([[0.85, 0.15], [0.25, 0.75]])


def simulate(n, lengths=None, seed=0, d=2):
    """A two-regime VAR(1): a slow, persistent regime and a fast, mean-reverting one."""
    rng = np.random.default_rng(seed)
    A = np.array([np.eye(d) * 0.9, -0.5 * np.eye(d)])
    if d > 1:
        A[0, 0, -1] = 0.1
    b = np.array([np.zeros(d), np.full(d, 2.0)])
    x = np.zeros((n, d))
    z = 0
    starts = set(np.cumsum([0, *(lengths or [n])[:-1]]).tolist())
    for t in range(n):
        z = z if rng.random() < 0.9 else 1 - z
        prev = np.zeros(d) if t in starts else x[t - 1]
        x[t] = A[z] @ prev + b[z] + 0.4 * rng.normal(size=d)
    return x


def _params(cov_type, order, rng, d=2):
    coefs = rng.normal(scale=0.3, size=(2, order, d, d))
    intercepts = rng.normal(size=(2, d))
    a = rng.normal(size=(2, d, d))
    full = a @ a.transpose(0, 2, 1) + np.eye(d)
    covars = {"full": full, "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
              "spherical": np.array([0.6, 1.4]), "tied": full[0]}[cov_type]
    return coefs, intercepts, covars


def _dense(cov_type, covars, k, d=2):
    c = np.asarray(covars)
    return {"full": lambda: c[k], "diag": lambda: np.diag(c[k]),
            "spherical": lambda: c[k] * np.eye(d), "tied": lambda: c}[cov_type]()


def _given(cov_type, order, coefs, intercepts, covars, **kw):
    est = AutoRegressiveHMM(2, order, cov_type, init_params="", backend="numpy", **kw)
    est.startprob_, est.transmat_ = START, TRANS
    est.coefs_, est.intercepts_, est.covars_ = coefs, intercepts, covars
    return est


def _modelled(lengths, order):
    starts = np.cumsum([0, *lengths[:-1]])
    return np.concatenate([np.arange(s + order, s + n) for s, n in zip(starts, lengths,
                                                                     strict=True)])


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("order", [1, 2])
def test_oracle(cov_type, order):
    rng = np.random.default_rng(order)
    lengths = [order + 4, order + 3]
    X = simulate(sum(lengths), lengths, seed=1)
    coefs, intercepts, covars = _params(cov_type, order, rng)
    est = _given(cov_type, order, coefs, intercepts, covars, max_iter=0).fit(X, lengths)
    steps = _modelled(lengths, order)

    def logpdf(t, k):
        mean = intercepts[k] + sum(coefs[k, lag - 1] @ X[t - lag] for lag in range(1, order + 1))
        return sps.multivariate_normal(mean, _dense(cov_type, covars, k)).logpdf(X[t])

    le = np.array([[logpdf(t, k) for k in range(2)] for t in steps])
    eff = [n - order for n in lengths]
    bf = brute_force(START, TRANS, le, eff)
    ll, post = est.score_samples(X, lengths)
    np.testing.assert_allclose(ll, bf["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    logprob, path = est.decode(X, lengths)
    np.testing.assert_array_equal(path, bf["path"])
    np.testing.assert_allclose(logprob, bf["path_logprob"], rtol=1e-12)
    # with known states, given per row of X (-1 at the lags) or per modelled step
    labels = np.full(len(X), -1)
    labels[steps[2]] = 1
    bf_l = brute_force(START, TRANS, le, eff, labels=labels[steps])
    np.testing.assert_allclose(est.score(X, lengths, states=labels), bf_l["loglik"], rtol=1e-12)
    np.testing.assert_allclose(est.predict_proba(X, lengths, states=labels[steps]),
                               bf_l["posteriors"], atol=1e-12)
    np.testing.assert_array_equal(est.predict(X, lengths, states=labels), bf_l["path"])

    # one EM step: weighted least squares per state, then the residual covariance
    one = _given(cov_type, order, coefs, intercepts, covars, reg_covar=1e-3, max_iter=1,
                 tol=0.0).fit(X, lengths)
    Z = np.column_stack([X[steps - lag] for lag in range(1, order + 1)] + [np.ones(len(steps))])
    g = bf["posteriors"]
    scatter, nk = [], g.sum(axis=0)
    for k in range(2):
        w = np.sqrt(g[:, k])[:, None]
        B = np.linalg.lstsq(Z * w, X[steps] * w, rcond=None)[0]  # (p d + 1, d)
        A = B[:-1].T.reshape(2, order, 2).transpose(1, 0, 2)
        np.testing.assert_allclose(one.coefs_[k], A, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(one.intercepts_[k], B[-1], rtol=1e-8, atol=1e-10)
        r = X[steps] - Z @ B
        scatter.append((r * g[:, [k]]).T @ r / nk[k])
    scatter = np.array(scatter)
    # the MAP under the reg_covar prior attached to the n modelled steps: lambda / N_k on
    # the variances, lambda = reg_covar * n / m for m = 2 matrices (1 when tied)
    n = len(steps)
    assert one.prior_size_ == n
    r = 1e-3 * n / (2 * nk)
    want = {"full": scatter + r[:, None, None] * np.eye(2),
            "diag": np.diagonal(scatter, axis1=1, axis2=2) + r[:, None],
            "spherical": np.trace(scatter, axis1=1, axis2=2) / 2 + r,
            "tied": np.einsum("k,kij->ij", nk, scatter) / nk.sum()
            + 1e-3 * n / nk.sum() * np.eye(2)}[cov_type]
    np.testing.assert_allclose(one.covars_, want, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("order", [1, 3])
def test_zero_coefficients_equal_gaussian_hmm(order):
    lengths = [50, 40, 60]
    X = simulate(sum(lengths), lengths, seed=2)
    rng = np.random.default_rng(0)
    means = rng.normal(size=(2, 2))
    covars = np.array([np.eye(2), 2 * np.eye(2)])
    ar = _given("full", order, np.zeros((2, order, 2, 2)), means, covars, params="stbc",
                max_iter=12, tol=0.0).fit(X, lengths)
    ghmm = GaussianHMM(2, "full", init_params="", max_iter=12, tol=0.0, backend="numpy")
    ghmm.startprob_, ghmm.transmat_, ghmm.means_, ghmm.covars_ = START, TRANS, means, covars
    # the Gaussian HMM of the steps after the first `order` of each sequence
    ghmm.fit(X[_modelled(lengths, order)], [n - order for n in lengths])
    np.testing.assert_allclose(ar.loglik_history_, ghmm.loglik_history_, rtol=1e-11)
    np.testing.assert_array_equal(ar.coefs_, 0.0)
    np.testing.assert_allclose(ar.intercepts_, ghmm.means_, rtol=1e-9)
    np.testing.assert_allclose(ar.covars_, ghmm.covars_, rtol=1e-9)
    np.testing.assert_allclose(ar.transmat_, ghmm.transmat_, rtol=1e-9)


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
def test_conformance(cov_type):
    lengths = [40, 25, 35, 20]
    X = simulate(sum(lengths), lengths, seed=3)
    rows, steps = lagged_rows(X, np.array(lengths), 2)
    seqs = Sequences(rows, steps)
    chunks = [Sequences(rows[: steps[0] + steps[1]], steps[:2]),
              Sequences(rows[steps[0] + steps[1]:], steps[2:])]
    check_model(lambda: HMMModel(AutoRegressiveEmission(2, cov_type), 3), seqs, chunks=chunks,
                n_iter=15)


@settings(max_examples=25, deadline=None)
@given(
    cov_type=st.sampled_from(COVARIANCE_TYPES),
    order=st.integers(1, 2),
    extra=st.lists(st.integers(20, 60), min_size=1, max_size=3),
    letters=st.sampled_from(["stabc", "stbc", "stac", "stab", "abc", "c"]),
    seed=st.integers(0, 2**16),
    split=st.integers(1, 80),
)
def test_monotone_additive_and_frozen(cov_type, order, extra, letters, seed, split):
    lengths = [order + e for e in extra]
    X = simulate(sum(lengths), lengths, seed=seed)
    # reg_covar=0: exact maximum likelihood (the default prior is covered, for every shipped
    # model, by test_regularisation.py)
    kw = {"random_state": seed, "tol": 0.0, "reg_covar": 0.0}
    est = AutoRegressiveHMM(2, order, cov_type, params=letters, max_iter=8, strict=True, **kw)
    try:
        est.fit(X, lengths)  # strict: raises on any decrease
    except ValueError as exc:
        # such a collapse makes a covariance singular: a clear error, and nothing to check
        assert "not positive definite" in str(exc) or "numerically singular" in str(exc), exc
        assume(False)
    start = AutoRegressiveHMM(2, order, cov_type, max_iter=0, **kw).fit(X, lengths)
    for letter, name in (("a", "coefs_"), ("b", "intercepts_"), ("c", "covars_")):
        if letter not in letters:
            np.testing.assert_array_equal(getattr(est, name), getattr(start, name))
    rows, steps = lagged_rows(X, np.array(lengths), order)
    seqs = Sequences(rows, steps)
    check_additive(est._model, est.params_, seqs, seqs.split(split))


def test_chunked_fit_equals_whole():
    lengths = [30, 45, 25, 50]
    X = simulate(sum(lengths), lengths, seed=4)
    start = AutoRegressiveHMM(2, 2, random_state=0, max_iter=0).fit(X, lengths)

    def fit(**kw):
        est = _given("full", 2, start.coefs_, start.intercepts_, start.covars_, max_iter=8,
                     tol=0.0)
        est.startprob_, est.transmat_ = start.startprob_, start.transmat_
        return est.fit(X, lengths, **kw)

    whole, chunked = fit(), fit(chunk_size=60)
    np.testing.assert_allclose(chunked.loglik_history_, whole.loglik_history_, rtol=1e-10)
    np.testing.assert_allclose(chunked.coefs_, whole.coefs_, rtol=1e-7, atol=1e-9)


def test_squarem_reaches_the_em_fixed_point():
    X = simulate(400, seed=5) + np.random.default_rng(0).normal(scale=0.8, size=(400, 2))
    start = AutoRegressiveHMM(2, 1, random_state=0, max_iter=0).fit(X)

    def fit(**kw):
        est = _given("full", 1, start.coefs_, start.intercepts_, start.covars_, max_iter=2000,
                     tol=1e-12, strict=True)
        est.startprob_, est.transmat_ = start.startprob_, start.transmat_
        return est.fit(X, **kw)

    plain, fast = fit(), fit(accelerate="squarem")
    assert fast.n_iter_ < plain.n_iter_
    np.testing.assert_allclose(fast.score(X), plain.score(X), rtol=1e-8)
    np.testing.assert_allclose(fast.coefs_, plain.coefs_, atol=1e-4)


def test_recovers_a_simulated_model_and_round_trips(tmp_path):
    X = simulate(3000, seed=6, d=1)
    est = AutoRegressiveHMM(2, 1, random_state=0, n_init=2).fit(X)
    slow = int(np.argmax(est.coefs_[:, 0, 0, 0]))
    np.testing.assert_allclose(est.coefs_[[slow, 1 - slow], 0, 0, 0], [0.9, -0.5], atol=0.05)
    np.testing.assert_allclose(est.intercepts_[[slow, 1 - slow], 0], [0.0, 2.0], atol=0.15)
    n_params = 1 + 2 + 2 + 2 + 2  # start, transitions, coefficients, intercepts, variances
    assert est.n_parameters() == n_params
    ll = est.score(X)
    np.testing.assert_allclose(est.bic(X), -2 * ll + n_params * np.log(len(X) - 1))
    np.testing.assert_allclose(est.aic(X), -2 * ll + 2 * n_params)
    assert est.predict(X).shape == (len(X) - 1,)
    est.save(tmp_path / "ar.npz")
    loaded = emframe.load(tmp_path / "ar.npz")
    assert isinstance(loaded, AutoRegressiveHMM)
    np.testing.assert_array_equal(loaded.predict(X), est.predict(X))
    np.testing.assert_allclose(loaded.score(X), ll, rtol=1e-14)


def test_sample():
    X = simulate(200, seed=7)
    est = AutoRegressiveHMM(2, 2, random_state=0).fit(X)
    Y, z = est.sample(50, random_state=1, initial=X[:2])
    assert Y.shape == (50, 2) and z.shape == (48,)
    np.testing.assert_array_equal(Y[:2], X[:2])
    Y2, z2 = est.sample(50, random_state=1, initial=X[:2])
    np.testing.assert_array_equal(Y, Y2)
    np.testing.assert_array_equal(z, z2)
    assert est.sample(3, random_state=0)[0].shape == (3, 2)


def test_sample_follows_the_model():
    # one state: least squares on a long draw recovers the coefficients and the noise
    coefs = np.array([[[[0.5, 0.2], [0.0, 0.3]], [[0.2, 0.0], [0.1, -0.2]]]])
    cov = np.array([[[1.0, 0.3], [0.3, 0.5]]])
    est = AutoRegressiveHMM(1, 2, init_params="", max_iter=0)
    est.startprob_, est.transmat_ = [1.0], [[1.0]]
    est.coefs_, est.intercepts_, est.covars_ = coefs, [[1.0, -1.0]], cov
    est.fit(simulate(10))
    Y, z = est.sample(20000, random_state=0)
    np.testing.assert_array_equal(z, 0)
    Z = np.column_stack([Y[1:-1], Y[:-2], np.ones(len(Y) - 2)])
    B = np.linalg.lstsq(Z, Y[2:], rcond=None)[0]
    np.testing.assert_allclose(B[:2].T, coefs[0, 0], atol=0.03)
    np.testing.assert_allclose(B[2:4].T, coefs[0, 1], atol=0.03)
    np.testing.assert_allclose(B[4], [1.0, -1.0], atol=0.05)
    np.testing.assert_allclose(np.cov((Y[2:] - Z @ B).T), cov[0], atol=0.03)


# -- bad input ---------------------------------------------------------------------------------
def test_sequences_not_longer_than_the_order():
    X = simulate(20)
    with pytest.raises(ValueError, match=r"sequence 1 has 2 step\(s\), but an autoregressive "
                                         r"HMM of order=2"):
        AutoRegressiveHMM(2, order=2).fit(X, [18, 2])
    est = AutoRegressiveHMM(2, order=2, random_state=0, max_iter=2).fit(X)
    with pytest.raises(ValueError, match=r"sequence 0 has 1 step"):
        est.score(X, [1, 19])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"order": 0}, ValueError, "order must be >= 1"),
    ({"order": 1.5}, TypeError, "order must be Integral"),
    ({"covariance_type": "banana"}, ValueError, "covariance_type must be one of"),
])
def test_bad_hyperparameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        AutoRegressiveHMM(2, **kwargs).fit(simulate(20))


def test_bad_data_and_states():
    X = simulate(20)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        AutoRegressiveHMM(2).fit(bad)
    labels = np.full(20, -1)
    labels[10] = 0
    labels[0] = 1
    with pytest.raises(ValueError, match=r"states\[0\] = 1 labels one of the first order=1 "
                                         r"steps"):
        AutoRegressiveHMM(2).fit(X, states=labels)
    with pytest.raises(ValueError, match=r"shape \(20,\), or one per modelled step.*shape "
                                         r"\(19,\); got shape \(7,\)"):
        AutoRegressiveHMM(2).fit(X, states=np.zeros(7, int))
    est = AutoRegressiveHMM(2, random_state=0, max_iter=2).fit(X)
    with pytest.raises(ValueError, match=r"initial must have shape \(order, n_features\)"):
        est.sample(10, initial=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        est.sample(1)
    with pytest.raises(ValueError, match="X has 3 features"):
        est.predict(np.zeros((10, 3)))


# -- numerical robustness ----------------------------------------------------------------------
def test_a_state_that_fits_its_steps_exactly_is_a_clear_error_without_prior():
    # With reg_covar=0 one state settles on three steps, which its regression (two lags and
    # an intercept per output) fits exactly: its maximum-likelihood covariance is 0. Its
    # residual variance used to be computed by cancellation (C_xx - A C_zx ...) and came out
    # as rounding noise (~1e-17), whose likelihood dropped by 1.89 nats (MonotonicityError).
    est = AutoRegressiveHMM(2, 1, "spherical", params="stabc", max_iter=8, strict=True,
                            random_state=298, tol=0, reg_covar=0)
    with pytest.raises(ValueError, match=r"(numerically singular|not positive definite).*"
                                         r"increase reg_covar \(now 0\)"):
        est.fit(simulate(28, [28], seed=298), [28])


def _map_covariances(cov_type, scatter, nk, lam):
    """The reg_covar MAP of every covariance type from residual scatters (K, d, d) / N_k."""
    d = scatter.shape[-1]
    r = lam / nk
    return {"full": scatter + r[:, None, None] * np.eye(d),
            "diag": np.diagonal(scatter, axis1=1, axis2=2) + r[:, None],
            "spherical": np.trace(scatter, axis1=1, axis2=2) / d + r,
            "tied": np.einsum("k,kij->ij", nk, scatter) / nk.sum()
            + lam / nk.sum() * np.eye(d)}[cov_type]


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("start", ["far", "fitted"])
@pytest.mark.parametrize("offset", [0.0, 1e7, 1e10])
def test_the_residual_covariance_of_a_collapsed_state_is_resolved(cov_type, start, offset):
    # Data on a scale of 1e5; state 1 holds three steps, which its regression fits exactly,
    # so its covariance is only the prior's lambda / N_1 (about 1e-5), 1e-15 of the data's
    # variance. From moments of the raw rows it came out wrong by up to 70%; about the
    # E-step's regression (a second pass about the state's own fit when that one is far) it
    # equals a direct computation from the residuals.
    lengths = [60]
    X = simulate(60, lengths, seed=11) * 1e5 + offset
    rows, _ = lagged_rows(X, np.array(lengths), 1)
    n = len(rows)
    post = np.zeros((n, 2))
    post[:, 0] = 1.0
    post[[5, 20, 40], :] = [0.0, 1.0]
    em = AutoRegressiveEmission(1, cov_type, reg_covar=1e-6, prior_size=n)
    Z = np.column_stack([rows[:, 2:], np.ones(n)])
    scatter, coefs = [], []
    for k in range(2):
        w = post[:, k]
        centre = w @ rows / w.sum()
        Zc = np.column_stack([rows[:, 2:] - centre[2:], np.ones(n)])
        B = np.linalg.lstsq(Zc * np.sqrt(w)[:, None], (rows[:, :2] - centre[:2])
                            * np.sqrt(w)[:, None], rcond=None)[0]
        r = rows[:, :2] - centre[:2] - Zc @ B
        scatter.append((r * w[:, None]).T @ r / w.sum())
        coefs.append(B[:2].T)
    nk = post.sum(axis=0)
    want = _map_covariances(cov_type, np.array(scatter), nk, em.prior_strength(2))
    if start == "far":
        params = em.initialize(rows, 2, np.random.default_rng(0))
    else:
        b = [Z[post[:, k] > 0].mean(0)[:2] for k in range(2)]  # any intercepts will do
        params = em.complete_params(
            em.initialize(rows, 2, np.random.default_rng(0)),
            {"coefs": np.array(coefs)[:, None], "intercepts": np.array(b)})
    stats = em.statistics(params, rows, post)
    if offset == 1e10 and cov_type != "tied":  # tied: state 0's residuals are in it too
        # a residual sd of ~3e-3 on data of ~1e10, whose residuals x - A z - b are
        # computed to ~1e-6: float64 does not resolve it to 1e-4, a clear error
        with pytest.raises(ValueError, match=r"state 1.* is numerically singular: the "
                                             r"residual variance of feature 0"):
            em.m_step(stats)
        return
    new = em.m_step(stats)
    np.testing.assert_allclose(new.covars, want, rtol=1e-9, atol=1e-9 * em.prior_strength(2) / n)
    np.testing.assert_allclose(new.coefs[:, 0], coefs, rtol=1e-6, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), order=st.integers(1, 2), split=st.integers(5, 60),
       log_offset=st.floats(0.0, 6.0))
def test_moments_about_any_regression_are_the_same_statistics(seed, order, split, log_offset):
    rng = np.random.default_rng(seed)
    X = simulate(80, seed=seed) + 10.0**log_offset
    rows, _ = lagged_rows(X, np.array([80]), order)
    post = rng.dirichlet(np.ones(2), size=len(rows))
    refs = [rng.normal(scale=s, size=(2, 2, 2 * order)) for s in (0.0, 0.5, 3.0)]
    whole = [regression_moments(rows, post, b) for b in refs]
    for a, b in zip(whole, whole[1:] + whole[:1], strict=True):
        np.testing.assert_array_equal(a.about(b.coefs_ref).coefs_ref, b.coefs_ref)
        assert a.about(b.coefs_ref).allclose(b, rtol=1e-9, atol=1e-9)
        assert a.allclose(b, rtol=1e-9, atol=1e-9)
    # chunks about different regressions add up to the whole
    parts = regression_moments(rows[:split], post[:split], refs[1]) + regression_moments(
        rows[split:], post[split:], refs[2])
    assert parts.allclose(whole[0], rtol=1e-9, atol=1e-9)
    assert (whole[1].scale(0.25) + whole[2].scale(0.75)).allclose(whole[0], 1e-9, 1e-9)
    # the definition: sums of w = [x - B z, z] about the reference point, per state
    mom = whole[1].moments
    d = 2
    for k in range(2):
        w = rows.copy()
        w[:, :d] -= rows[:, d:] @ refs[1][k].T
        wc = w - mom.ref[k]
        np.testing.assert_allclose(mom.sum_x[k], post[:, k] @ wc, atol=1e-7 * 10.0**log_offset)
        np.testing.assert_allclose(mom.nk[k], post[:, k].sum(), rtol=1e-12)
        np.testing.assert_allclose(mom.scatter()[k], np.cov(w.T, aweights=post[:, k], bias=True),
                                   rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
def test_m_step_maximises_the_expected_complete_data_log_likelihood(cov_type):
    # For every set of frozen fields (the intercept, the coefficients, the covariances), no
    # numerical optimiser improves the M-step's expected complete-data log-likelihood (plus
    # the log prior) over the free fields: it is the exact maximiser.
    X = simulate(40, seed=298)
    est = AutoRegressiveHMM(2, 1, cov_type, max_iter=2, tol=0, random_state=3, reg_covar=0.1)
    est.fit(X)
    model, em = est._model, est._model.emission
    rows, steps = lagged_rows(X, np.array([40]), 1)
    seqs = Sequences(rows, steps)
    g = model.posterior(est.params_, seqs).posteriors
    stats = em.statistics(est.params_.emission, rows, g)
    cur, cons = est.params_.emission, em.param_constraints
    names = ["coefs", "intercepts", "covars"]
    for free in [f for r in (1, 2, 3) for f in itertools.combinations(names, r)]:
        best = em.constrained_m_step(stats, {f: getattr(cur, f) for f in names if f not in free})

        def minus_q(v, best=best, free=free):
            p = em.complete_params(best, reparam.from_vector(v, best, cons, free))
            return -(np.sum(g * em.log_likelihood(p, rows)) + em.log_prior(p))

        v0 = reparam.to_vector(best, cons, free)
        res = optimize.minimize(minus_q, v0, method="BFGS", options={"gtol": 1e-9})
        assert -res.fun <= -minus_q(v0) + 1e-9 * abs(minus_q(v0)), (free, minus_q(v0) - res.fun)
