"""HMMs with missing observations: exact oracles, EM properties, imputation, bad input."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from emframe.models import GMMHMM, CategoricalHMM, GaussianHMM, PoissonHMM
from emframe.models.hmm import HMMModel, Sequences
from emframe.models.hmm.emissions import (
    GaussianEmission,
)
from hmm_bruteforce import brute_force, path_log_probs
from hmm_kinds import COVARIANCE_TYPES, emission
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps
from scipy.special import logsumexp

from emframe.inference.hmm import sample_paths
from emframe.testing import check_additive, check_model, check_monotone

pytestmark = [
    pytest.mark.filterwarnings("ignore::emframe.exceptions.ConvergenceWarning"),
    # the oracles use a handful of steps: more free parameters than data, on purpose
    pytest.mark.filterwarnings("ignore:.*free parameters but the data hold only:UserWarning"),
]

ROOT = Path(__file__).resolve().parent
START = np.array([0.6, 0.4])
TRANS = np.array([[0.8, 0.2], [0.3, 0.7]])
LENGTHS = [5, 4]


# -- complete data: nothing changes ------------------------------------------------------------
def _reference_module():
    spec = importlib.util.spec_from_file_location(
        "make_reference", ROOT / "data" / "hmm_reference" / "make_reference.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_complete_data_results_are_unchanged():
    # tests/data/hmm_reference/no_missing.npz was written by the code before missing values
    # and labels existed; the fast complete-data path must reproduce it.
    ref = np.load(ROOT / "data" / "hmm_reference" / "no_missing.npz")
    got = _reference_module().snapshot()
    assert sorted(got) == sorted(ref.files)
    for key in ref.files:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-14, atol=0, err_msg=key)


# -- oracles -----------------------------------------------------------------------------------
def _dense(cov_type, covars, k):
    c = np.asarray(covars, dtype=float)
    if cov_type == "full":
        return c[k]
    if cov_type == "diag":
        return np.diag(c[k])
    if cov_type == "spherical":
        return c[k] * np.eye(DIM)
    return c


def _mvn_observed(x, mean, cov):
    o = ~np.isnan(x)
    if not o.any():
        return 0.0
    return sps.multivariate_normal(mean[o], cov[np.ix_(o, o)]).logpdf(x[o])


def _conditional(x, mean, cov):
    """E[x | x_o] (all entries) and Cov[x | x_o] embedded in (d, d)."""
    o, m = ~np.isnan(x), np.isnan(x)
    filled = np.where(o, x, 0.0)
    C = np.zeros((len(x), len(x)))
    if m.any():
        if o.any():
            gain = cov[np.ix_(m, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
            filled[m] = mean[m] + gain @ (x[o] - mean[o])
            C[np.ix_(m, m)] = cov[np.ix_(m, m)] - gain @ cov[np.ix_(o, m)]
        else:
            filled[m] = mean[m]
            C[np.ix_(m, m)] = cov[np.ix_(m, m)]
    return filled, C


DIM = 3


def _gaussian_data(seed, p_missing=0.3):
    rng = np.random.default_rng(seed)
    n = sum(LENGTHS)
    X = rng.normal(size=(n, DIM)) + np.where(rng.random(n) < 0.5, 0.0, 2.5)[:, None]
    X[rng.random(X.shape) < p_missing] = np.nan
    X[2] = np.nan  # a step with nothing observed
    X[0, 0] = 0.3  # every column observed somewhere
    return X


def _gaussian_params(cov_type, rng):
    means = rng.normal(size=(2, DIM)) * 2
    a = rng.normal(size=(2, DIM, DIM))
    full = a @ a.transpose(0, 2, 1) + np.eye(DIM)
    covars = {
        "full": full,
        "diag": np.diagonal(full, axis1=1, axis2=2).copy(),
        "spherical": np.array([0.7, 1.6]),
        "tied": full[0],
    }[cov_type]
    return means, covars


def _given(est, X, lengths=LENGTHS, **attrs):
    est.set_params(init_params="", max_iter=0)
    est.startprob_, est.transmat_ = START, TRANS
    for name, value in attrs.items():
        setattr(est, name, value)
    return est.fit(X, lengths)


@pytest.mark.parametrize("cov_type", COVARIANCE_TYPES)
def test_gaussian_oracle_with_nan(cov_type):
    rng = np.random.default_rng(1)
    X = _gaussian_data(2)
    means, covars = _gaussian_params(cov_type, rng)
    est = _given(GaussianHMM(2, cov_type, backend="numpy"), X, means_=means, covars_=covars)
    le = np.array([[_mvn_observed(x, means[k], _dense(cov_type, covars, k)) for k in range(2)]
                   for x in X])
    bf = brute_force(START, TRANS, le, LENGTHS)
    ll, post = est.score_samples(X, LENGTHS)
    np.testing.assert_allclose(ll, bf["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    logprob, path = est.decode(X, LENGTHS)
    np.testing.assert_array_equal(path, bf["path"])
    np.testing.assert_allclose(logprob, bf["path_logprob"], rtol=1e-12)

    # one EM step: expected sufficient statistics of the missing entries given each state
    one = GaussianHMM(2, cov_type, reg_covar=1e-3, backend="numpy", init_params="",
                      max_iter=1, tol=0.0)
    one.startprob_, one.transmat_, one.means_, one.covars_ = START, TRANS, means, covars
    one.fit(X, LENGTHS)
    informative = ~np.isnan(X).all(axis=1)
    g = bf["posteriors"] * informative[:, None]
    nk = g.sum(axis=0)
    new_means, scatter = [], []
    for k in range(2):
        ex, exx = zip(*[_conditional(x, means[k], _dense(cov_type, covars, k)) for x in X],
                      strict=True)
        ex = np.array(ex)
        mu = g[:, k] @ ex / nk[k]
        second = sum(g[t, k] * (np.outer(ex[t] - mu, ex[t] - mu) + exx[t])
                     for t in range(len(X)))
        new_means.append(mu)
        scatter.append(second / nk[k])
    scatter = np.array(scatter)
    # the MAP under the reg_covar prior: lambda / N_k on the variances, with
    # lambda = reg_covar * n / m attached to the n steps (m = 2 matrices, 1 when tied)
    lam = 1e-3 * len(X) / (1 if cov_type == "tied" else 2)
    r = lam / nk
    expected = {
        "full": scatter + r[:, None, None] * np.eye(DIM),
        "diag": np.diagonal(scatter, axis1=1, axis2=2) + r[:, None],
        "spherical": np.trace(scatter, axis1=1, axis2=2) / DIM + r,
        "tied": np.einsum("k,kij->ij", nk, scatter) / nk.sum() + lam / nk.sum() * np.eye(DIM),
    }[cov_type]
    np.testing.assert_allclose(one.means_, np.array(new_means), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one.covars_, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(one.startprob_, bf["start"] / len(LENGTHS), atol=1e-12)
    trans = bf["trans"] / bf["trans"].sum(axis=1, keepdims=True)
    np.testing.assert_allclose(one.transmat_, trans, atol=1e-12)


@pytest.mark.parametrize("cov_type", ["full", "diag", "tied"])
def test_gmm_oracle_with_nan(cov_type):
    rng = np.random.default_rng(3)
    X = _gaussian_data(4)
    means = rng.normal(size=(2, 2, DIM)) * 2
    a = rng.normal(size=(2, 2, DIM, DIM))
    full = a @ np.swapaxes(a, -1, -2) + np.eye(DIM)
    covars = {"full": full, "diag": np.diagonal(full, axis1=2, axis2=3).copy(),
              "tied": full[:, 0]}[cov_type]
    weights = np.array([[0.3, 0.7], [0.5, 0.5]])

    def dense(k, m):
        c = np.asarray(covars)
        return {"full": c[k, m], "diag": np.diag(c[k, m]) if c.ndim == 3 else None,
                "tied": c[k]}[cov_type]

    est = _given(GMMHMM(2, 2, cov_type, backend="numpy"), X, weights_=weights, means_=means,
                 covars_=covars)
    # log p(observed part | state k, component m) + log w_km
    lj = np.array([[[np.log(weights[k, m]) + _mvn_observed(x, means[k, m], dense(k, m))
                     for m in range(2)] for k in range(2)] for x in X])
    le = logsumexp(lj, axis=2)
    bf = brute_force(START, TRANS, le, LENGTHS)
    ll, post = est.score_samples(X, LENGTHS)
    np.testing.assert_allclose(ll, bf["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    np.testing.assert_array_equal(est.predict(X, LENGTHS), bf["path"])

    one = GMMHMM(2, 2, cov_type, reg_covar=1e-3, backend="numpy", init_params="", max_iter=1,
                 tol=0.0)
    one.startprob_, one.transmat_ = START, TRANS
    one.weights_, one.means_, one.covars_ = weights, means, covars
    one.fit(X, LENGTHS)
    informative = ~np.isnan(X).all(axis=1)
    resp = np.exp(lj - le[:, :, None]) * (bf["posteriors"] * informative[:, None])[:, :, None]
    # lambda = reg_covar * n / m: m = K * n_mix = 4 matrices, or K = 2 when tied
    lam = 1e-3 * len(X) / (2 if cov_type == "tied" else 4)
    for k in range(2):
        nk = resp[:, k].sum(axis=0)
        np.testing.assert_allclose(one.weights_[k], nk / nk.sum(), rtol=1e-10)
        scat = []
        for m in range(2):
            ex, exx = zip(*[_conditional(x, means[k, m], dense(k, m)) for x in X], strict=True)
            ex = np.array(ex)
            mu = resp[:, k, m] @ ex / nk[m]
            np.testing.assert_allclose(one.means_[k, m], mu, rtol=1e-10, atol=1e-12)
            scat.append(sum(resp[t, k, m] * (np.outer(ex[t] - mu, ex[t] - mu) + exx[t])
                            for t in range(len(X))) / nk[m])
        scat = np.array(scat)
        r = lam / nk  # the reg_covar MAP: lambda / N_km on the variances
        want = {"full": scat + r[:, None, None] * np.eye(DIM),
                "diag": np.diagonal(scat, axis1=1, axis2=2) + r[:, None],
                "tied": np.einsum("m,mij->ij", nk, scat) / nk.sum()
                + lam / nk.sum() * np.eye(DIM)}
        np.testing.assert_allclose(one.covars_[k], want[cov_type], rtol=1e-10, atol=1e-12)


def test_poisson_oracle_with_nan():
    rng = np.random.default_rng(5)
    n = sum(LENGTHS)
    X = rng.poisson([[2.0, 6.0]], size=(n, 2)).astype(float)
    X[rng.random(X.shape) < 0.3] = np.nan
    X[3] = np.nan
    lam = np.array([[1.5, 4.0], [5.0, 8.0]])
    est = _given(PoissonHMM(2, backend="numpy"), X, lambdas_=lam)
    le = np.array([[np.nansum(sps.poisson.logpmf(x, lam[k])) for k in range(2)] for x in X])
    bf = brute_force(START, TRANS, le, LENGTHS)
    ll, post = est.score_samples(X, LENGTHS)
    np.testing.assert_allclose(ll, bf["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    np.testing.assert_array_equal(est.predict(X, LENGTHS), bf["path"])
    one = PoissonHMM(2, backend="numpy", init_params="", max_iter=1, tol=0.0)
    one.startprob_, one.transmat_, one.lambdas_ = START, TRANS, lam
    one.fit(X, LENGTHS)
    g = bf["posteriors"] * (~np.isnan(X).all(axis=1))[:, None]
    for k in range(2):
        filled = np.where(np.isnan(X), lam[k], X)  # E[x_tj | z_t = k] for a missing count
        np.testing.assert_allclose(one.lambdas_[k], g[:, k] @ filled / g[:, k].sum(), rtol=1e-12)


@pytest.mark.parametrize("sentinel", [np.nan, -1])
def test_categorical_oracle_with_missing(sentinel):
    rng = np.random.default_rng(6)
    X = rng.integers(0, 3, size=(sum(LENGTHS), 1)).astype(float)
    X[[1, 4, 7]] = sentinel
    E = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    est = _given(CategoricalHMM(2, backend="numpy"), X, emissionprob_=E)
    missing = (X[:, 0] < 0) | np.isnan(X[:, 0])
    le = np.where(missing[:, None], 0.0, np.log(E[:, np.where(missing, 0, X[:, 0]).astype(int)]).T)
    bf = brute_force(START, TRANS, le, LENGTHS)
    ll, post = est.score_samples(X, LENGTHS)
    np.testing.assert_allclose(ll, bf["loglik"], rtol=1e-12)
    np.testing.assert_allclose(post, bf["posteriors"], atol=1e-12)
    np.testing.assert_array_equal(est.predict(X, LENGTHS), bf["path"])
    one = CategoricalHMM(2, backend="numpy", init_params="", max_iter=1, tol=0.0)
    one.startprob_, one.transmat_, one.emissionprob_ = START, TRANS, E
    one.fit(X, LENGTHS)
    counts = np.stack([np.bincount(X[~missing, 0].astype(int), bf["posteriors"][~missing, k],
                                   minlength=3) for k in range(2)])
    np.testing.assert_allclose(one.emissionprob_, counts / counts.sum(1, keepdims=True),
                               rtol=1e-12)
    # the two sentinels are the same data
    other = X.copy()
    other[missing] = -1 if np.isnan(sentinel) else np.nan
    np.testing.assert_array_equal(est.predict_proba(other, LENGTHS), post)


# -- EM properties with random missing masks ---------------------------------------------------
KINDS = ["categorical", "poisson", *COVARIANCE_TYPES, "gmm-diag", "gmm-full"]


def _incomplete(kind, rng, n, p_missing):
    if kind == "categorical":
        X = rng.integers(0, 4, size=(n, 1)).astype(float)
        X[rng.random(n) < p_missing] = -1
        X[0] = 0
        return X
    if kind == "poisson":
        X = rng.poisson([2.0, 7.0], size=(n, 2)).astype(float)
    else:
        centres = np.array([[0.0, 0.0], [3.0, 3.0], [-3.0, 1.0]])
        X = centres[rng.integers(0, 3, n)] + rng.normal(size=(n, 2))
    X[rng.random(X.shape) < p_missing] = np.nan
    X[0] = np.abs(X[0]) if kind == "poisson" else 0.5  # every column observed somewhere
    X[0] = np.nan_to_num(X[0], nan=1.0)
    return X


@pytest.mark.parametrize("kind", KINDS)
def test_conformance_with_missing_values(kind):
    rng = np.random.default_rng(0)
    lengths = [40, 25, 35, 20]
    seqs = Sequences(_incomplete(kind, rng, sum(lengths), 0.25), lengths)
    chunks = [Sequences(seqs.X[:65], [40, 25]), Sequences(seqs.X[65:], [35, 20])]
    check_model(lambda: HMMModel(emission(kind), 3), seqs, chunks=chunks, n_iter=15)


@settings(max_examples=25, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    # big enough that no state collapses onto a few steps (where reg_covar, added to
    # the variances and not yet a prior, can lower the likelihood)
    lengths=st.lists(st.integers(1, 40), min_size=0, max_size=3).map(lambda v: [*v, 40]),
    p_missing=st.sampled_from([0.0, 0.2, 0.4, 0.7]),
    seed=st.integers(0, 2**16),
    split=st.integers(1, 40),
)
def test_monotone_and_additive_with_random_masks(kind, lengths, p_missing, seed, split):
    rng = np.random.default_rng(seed)
    seqs = Sequences(_incomplete(kind, rng, sum(lengths), p_missing), lengths)
    model = HMMModel(emission(kind), 2)
    params = model.initialize(seqs, np.random.default_rng(seed))
    check_monotone(model, seqs, params, n_iter=8)
    check_additive(model, params, seqs, seqs.split(split))


def test_entirely_missing_sequence_contributes_nothing_to_emissions():
    rng = np.random.default_rng(7)
    X = _incomplete("full", rng, 50, 0.2)
    model = HMMModel(GaussianEmission("full"), 2)
    params = model.initialize(Sequences(X, [30, 20]), rng)
    blank = np.full((6, 2), np.nan)
    with_blank = Sequences(np.vstack([X, blank]), [30, 20, 6])
    s0, ll0 = model.e_step(params, Sequences(X, [30, 20]))
    s1, ll1 = model.e_step(params, with_blank)
    np.testing.assert_allclose(ll1, ll0, rtol=1e-13)  # p(nothing observed) = 1
    assert s1.emission.allclose(s0.emission, rtol=1e-12, atol=1e-12)
    # but it does count through the chain: one more start, five more transitions
    np.testing.assert_allclose(s1.start.sum(), 3.0)
    np.testing.assert_allclose(s1.trans.sum() - s0.trans.sum(), 5.0)


def test_chunked_fit_equals_whole_with_missing():
    rng = np.random.default_rng(8)
    lengths = [30, 25, 40, 15]
    X = _incomplete("diag", rng, sum(lengths), 0.3)
    # the same start for both (a chunked fit initialises from its first chunk)
    start = GaussianHMM(3, "full", random_state=0, max_iter=0).fit(X, lengths)

    def fit(**kw):
        est = GaussianHMM(3, "full", init_params="", max_iter=10, tol=0.0)
        est.startprob_, est.transmat_ = start.startprob_, start.transmat_
        est.means_, est.covars_ = start.means_, start.covars_
        return est.fit(X, lengths, **kw)

    whole, chunked = fit(), fit(chunk_size=40)
    np.testing.assert_allclose(chunked.loglik_history_, whole.loglik_history_, rtol=1e-10)
    np.testing.assert_allclose(chunked.means_, whole.means_, rtol=1e-8, atol=1e-10)


def test_squarem_with_missing_is_monotone():
    X = _incomplete("full", np.random.default_rng(9), 150, 0.3)
    est = GaussianHMM(3, "full", random_state=0, strict=True, max_iter=30, tol=1e-8)
    est.fit(X, [100, 50], accelerate="squarem")
    assert np.all(np.diff(est.loglik_history_) >= -1e-9 * np.abs(est.loglik_history_[1:]))


# -- imputation --------------------------------------------------------------------------------
def test_impute_is_the_posterior_mean():
    rng = np.random.default_rng(10)
    X = _gaussian_data(11)
    before = X.copy()
    means, covars = _gaussian_params("full", rng)
    est = _given(GaussianHMM(2, "full"), X, means_=means, covars_=covars)
    imputed, std = est.impute(X, LENGTHS, return_std=True)
    np.testing.assert_array_equal(X, before)  # input untouched
    observed = ~np.isnan(X)
    np.testing.assert_array_equal(imputed[observed], X[observed])
    np.testing.assert_array_equal(std[observed], 0.0)
    post = est.predict_proba(X, LENGTHS)
    cond = [[_conditional(x, means[k], covars[k]) for x in X] for k in range(2)]
    m = np.array([[c[0] for c in ck] for ck in cond])  # (K, T, d)
    v = np.array([[np.diag(c[1]) for c in ck] for ck in cond])
    mix = np.einsum("tk,ktd->td", post, m)
    var = np.einsum("tk,ktd->td", post, v + (m - mix) ** 2)
    np.testing.assert_allclose(imputed[~observed], mix[~observed], rtol=1e-10)
    np.testing.assert_allclose(std[~observed], np.sqrt(var[~observed]), rtol=1e-10)
    # multiple imputation: observed entries fixed, draws centred on the posterior mean
    draws = est.sample_imputations(X, LENGTHS, n_imputations=4000, random_state=0)
    np.testing.assert_array_equal(X, before)
    assert draws.shape == (4000, *X.shape)
    np.testing.assert_array_equal(draws[:, observed], np.broadcast_to(X[observed], (4000,
                                  observed.sum())))
    err = np.abs(draws.mean(axis=0) - imputed)[~observed]
    assert np.all(err < 5 * std[~observed] / np.sqrt(4000))
    np.testing.assert_allclose(draws.std(axis=0)[~observed], std[~observed], rtol=0.1)


@pytest.mark.parametrize("make, X", [
    (lambda: PoissonHMM(2, random_state=0), np.array([[1.0, 4], [np.nan, 5], [2, np.nan]] * 8)),
    (lambda: CategoricalHMM(2, random_state=0), np.array([[0.0], [np.nan], [2], [1]] * 6)),
    (lambda: GMMHMM(2, 2, "diag", random_state=0), _gaussian_data(12)),
])
def test_impute_and_draws_keep_observed_entries(make, X):
    lengths = [len(X) // 2, len(X) - len(X) // 2]
    est = make().fit(X, lengths)
    observed = ~np.isnan(X)
    imputed = est.impute(X, lengths)
    assert not np.isnan(imputed).any()
    np.testing.assert_array_equal(imputed[observed], X[observed])
    draws = est.sample_imputations(X, lengths, 3, random_state=1)
    assert not np.isnan(draws).any()
    np.testing.assert_array_equal(draws[:, observed], np.broadcast_to(X[observed],
                                  (3, observed.sum())))
    np.testing.assert_array_equal(draws, est.sample_imputations(X, lengths, 3, random_state=1))


def test_impute_symbols_gives_the_most_probable_symbol():
    X = np.array([[0.0], [0], [np.nan], [2], [2], [np.nan]])
    E = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]])
    est = _given(CategoricalHMM(2), X, lengths=[6], emissionprob_=E)
    post = est.predict_proba(X)
    want = np.argmax(post @ E, axis=1)
    np.testing.assert_array_equal(est.impute(X)[[2, 5], 0], want[[2, 5]])
    with pytest.raises(ValueError, match="no standard deviation"):
        est.impute(X, return_std=True)


def test_ffbs_draws_follow_the_path_posterior():
    rng = np.random.default_rng(13)
    le = rng.normal(size=(4, 3))
    start = np.array([0.5, 0.3, 0.2])
    trans = np.array([[0.7, 0.2, 0.1], [0.0, 0.6, 0.4], [0.3, 0.3, 0.4]])
    paths, lp = path_log_probs(start, trans, le)
    exact = np.exp(lp - logsumexp(lp))
    with np.errstate(divide="ignore"):
        draws = sample_paths(np.log(start), np.log(trans), le, n_draws=20000,
                             rng=np.random.default_rng(0))
    code = draws @ (3 ** np.arange(3, -1, -1))  # path -> its row in `paths`
    freq = np.bincount(code, minlength=len(paths)) / len(draws)
    assert np.all(freq[exact == 0] == 0)  # impossible paths never drawn
    sd = np.sqrt(exact * (1 - exact) / len(draws))
    assert np.all(np.abs(freq - exact) <= 5 * sd + 1e-12)


def test_complete_data_imputation_is_a_copy():
    X = np.random.default_rng(0).normal(size=(30, 2))
    est = GaussianHMM(2, random_state=0).fit(X)
    out = est.impute(X)
    assert out is not X
    np.testing.assert_array_equal(out, X)
    np.testing.assert_array_equal(est.sample_imputations(X, n_imputations=2)[1], X)


# -- bad input ---------------------------------------------------------------------------------
def test_poisson_nan_mixed_with_negative_counts():
    X = np.array([[1.0, np.nan], [np.nan, 2.0], [-3.0, 1.0]])
    with pytest.raises(ValueError, match=r"counts must be non-negative, but X\[2, 0\] = -3"):
        PoissonHMM(2).fit(X)
    with pytest.raises(ValueError, match=r"counts must be integers, but X\[1, 1\] = 2.5"):
        PoissonHMM(2).fit([[1.0, np.nan], [np.nan, 2.5]])


def test_column_never_observed():
    X = np.random.default_rng(0).normal(size=(20, 2))
    X[:, 1] = np.nan
    for est in (GaussianHMM(2), GMMHMM(2, 2), PoissonHMM(2)):
        with pytest.raises(ValueError, match="column 1 of X has no observed value"):
            est.fit(np.abs(np.round(X)) if isinstance(est, PoissonHMM) else X)


def test_all_symbols_missing():
    with pytest.raises(ValueError, match="every symbol of X is missing"):
        CategoricalHMM(2).fit([[-1], [np.nan]])


def test_missing_symbol_sentinel_only():
    with pytest.raises(ValueError, match=r"-1 or NaN marks a missing symbol.*X\[1\] = -2"):
        CategoricalHMM(2).fit([[0], [-2], [1]])
