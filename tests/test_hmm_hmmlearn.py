"""Exactness: from the same initial parameters the iterates equal hmmlearn's (textbook Baum-Welch).

hmmlearn's defaults regularise its M-step (``covars_prior=1e-2`` for GaussianHMM), so
they are set here to give the plain maximum-likelihood update, and emframe's
``reg_covar`` is 0. Parameters are compared after several iterations, and the
log-likelihood histories entry by entry.
"""

import warnings

import numpy as np
import pytest
from emframe.models import GMMHMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
from threadpoolctl import threadpool_limits

from emframe.core.numerics import logsumexp
from emframe.inference.hmm import forward_backward

hmm = pytest.importorskip("hmmlearn.hmm")

K = 3
N_ITER = 12
LENGTHS = [100, 120, 80]
RTOL = 1e-8


def _close(a, b, rtol=RTOL, atol=1e-10):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def start():
    rng = np.random.default_rng(0)
    return {
        "startprob": np.array([0.5, 0.3, 0.2]),
        "transmat": rng.dirichlet(np.full(K, 3.0), size=K),
    }


def _gauss_data(d=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(6, d))
    return rng.normal(size=(300, d)) + np.repeat(centres, 50, axis=0)


def _set(model, **values):
    for name, value in values.items():
        setattr(model, name + "_", value)
    return model


def _fit_hmmlearn(model, X, lengths):
    # hmmlearn's GMMHMM runs scikit-learn's KMeans even when init_params="": one thread
    # keeps that from crawling on a busy machine.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # hmmlearn's own warnings are not under test
        return model.fit(X, lengths)


def _check_history(ours, ref):
    # emframe's history has one more entry: the log-likelihood of the final parameters.
    _close(ours.loglik_history_[:-1], ref.monitor_.history, rtol=1e-10)


def _hmmlearn_covars(ref, covariance_type):
    """hmmlearn's covariances in the compact shape (its covars_ getter returns full
    matrices, and for "spherical" even the wrong number of them)."""
    cov = ref._covars_
    return cov[:, 0] if covariance_type == "spherical" else cov


COVARS = {
    "diag": np.array([[1.5, 0.7], [1.0, 2.0], [0.5, 0.9]]),
    "spherical": np.array([1.0, 2.0, 0.5]),
    "full": np.array([np.eye(2) * v + 0.2 for v in (1.0, 2.0, 0.5)]),
    "tied": np.eye(2) * 1.3 + 0.1,
}


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
def test_gaussian_hmm_equals_hmmlearn(start, covariance_type):
    X = _gauss_data()
    means = X[[0, 120, 260]] + 0.1
    init = dict(start, means=means, covars=COVARS[covariance_type])
    ours = _set(GaussianHMM(K, covariance_type, init_params="", tol=0.0, max_iter=N_ITER,
                            reg_covar=0.0), **init)
    ours.fit(X, LENGTHS)
    ref = _set(hmm.GaussianHMM(K, covariance_type, init_params="", n_iter=N_ITER, tol=-np.inf,
                               covars_prior=0.0, covars_weight=1.0, means_weight=0.0), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.startprob_, ref.startprob_)
    _close(ours.transmat_, ref.transmat_)
    _close(ours.means_, ref.means_)
    _close(ours.covars_, _hmmlearn_covars(ref, covariance_type))
    _check_history(ours, ref)
    # Scoring and decoding of the fitted models agree too.
    _close(ours.score(X, LENGTHS), ref.score(X, LENGTHS), rtol=1e-10)
    lp, states = ours.decode(X, LENGTHS)
    lp_ref, states_ref = ref.decode(X, LENGTHS)
    _close(lp, lp_ref, rtol=1e-10)
    np.testing.assert_array_equal(states, states_ref)
    _close(ours.predict_proba(X, LENGTHS), ref.predict_proba(X, LENGTHS), rtol=1e-7, atol=1e-9)


def test_gaussian_hmm_map_priors_and_left_right_equal_hmmlearn():
    # Dirichlet priors on start and transitions give hmmlearn's MAP update; zeros stay zero.
    X = _gauss_data(seed=3)
    init = {
        "startprob": np.array([1.0, 0.0, 0.0]),
        "transmat": np.array([[0.8, 0.2, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]]),
        "means": X[[0, 120, 260]],
        "covars": COVARS["diag"],
    }
    sp_prior = np.array([3.0, 1.0, 1.0])
    tm_prior = np.array([[2.0, 4.0, 1.0], [1.0, 2.5, 1.5], [1.0, 1.0, 3.0]])
    ours = _set(GaussianHMM(K, "diag", init_params="", tol=0.0, max_iter=N_ITER, reg_covar=0.0,
                            startprob_prior=sp_prior, transmat_prior=tm_prior), **init)
    ours.fit(X, LENGTHS)
    ref = _set(hmm.GaussianHMM(K, "diag", init_params="", n_iter=N_ITER, tol=-np.inf,
                               covars_prior=0.0, covars_weight=1.0, means_weight=0.0,
                               startprob_prior=sp_prior, transmat_prior=tm_prior), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.transmat_, ref.transmat_)
    _close(ours.startprob_, ref.startprob_)
    _close(ours.means_, ref.means_)
    _close(ours.covars_, ref._covars_)
    assert np.all(ours.transmat_[init["transmat"] == 0] == 0.0)


@pytest.mark.parametrize("n_features", [1, 3])
def test_poisson_hmm_equals_hmmlearn(start, n_features):
    rng = np.random.default_rng(1)
    X = rng.poisson(rng.choice([1.0, 5.0, 12.0], size=(300, 1)), size=(300, n_features))
    lambdas = np.array([[1.0], [5.0], [10.0]]) * np.linspace(1.0, 1.5, n_features)
    init = dict(start, lambdas=lambdas)
    ours = _set(PoissonHMM(K, init_params="", tol=0.0, max_iter=N_ITER), **init).fit(X, LENGTHS)
    ref = _set(hmm.PoissonHMM(K, init_params="", n_iter=N_ITER, tol=-np.inf), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.lambdas_, ref.lambdas_)
    _close(ours.transmat_, ref.transmat_)
    _close(ours.startprob_, ref.startprob_)
    _check_history(ours, ref)


@pytest.mark.parametrize("n_trials", [None, 7])
def test_multinomial_hmm_equals_hmmlearn(start, n_trials):
    # n_trials=None: every row is its own number of trials, in both (hmmlearn stores the
    # training totals in n_trials); rows of total 0 included
    rng = np.random.default_rng(5)
    p = rng.dirichlet(np.ones(4), size=3)[np.repeat(rng.integers(0, 3, 30), 10)]
    totals = rng.integers(0, 12, size=300) if n_trials is None else np.full(300, n_trials)
    X = rng.multinomial(totals, p)
    init = dict(start, emissionprob=rng.dirichlet(np.ones(4), size=K))
    ours = _set(MultinomialHMM(K, n_trials, init_params="", tol=0.0, max_iter=N_ITER), **init)
    ours.fit(X, LENGTHS)
    ref = _set(hmm.MultinomialHMM(K, n_trials, init_params="", n_iter=N_ITER, tol=-np.inf),
               **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.emissionprob_, ref.emissionprob_)
    _close(ours.transmat_, ref.transmat_)
    _close(ours.startprob_, ref.startprob_)
    _check_history(ours, ref)
    _close(ours.score(X, LENGTHS), ref.score(X, LENGTHS), rtol=1e-10)
    assert ours.n_parameters() == 2 + 6 + 9  # hmmlearn's count: 's', 't', 'e'


@pytest.mark.parametrize("lambdas_prior, lambdas_weight", [
    (3.0, 0.5), (np.array([[1.0, 4.0]]), np.array([[2.0, 0.1]])),
])
def test_poisson_prior_with_one_state_equals_hmmlearn(lambdas_prior, lambdas_weight):
    # hmmlearn divides by lambdas_weight plus the steps of ALL states: with one state that
    # is the state's own count, the MAP update emframe makes for any number of states
    X = np.random.default_rng(6).poisson([3.0, 8.0], size=(300, 2))
    init = {"startprob": np.array([1.0]), "transmat": np.array([[1.0]]),
            "lambdas": np.array([[1.0, 2.0]])}
    kw = dict(lambdas_prior=lambdas_prior, lambdas_weight=lambdas_weight, init_params="")
    ours = _set(PoissonHMM(1, tol=0.0, max_iter=3, **kw), **init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        ours.fit(X, LENGTHS)
    ref = _set(hmm.PoissonHMM(1, n_iter=3, tol=-np.inf, **kw), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.lambdas_, ref.lambdas_)
    expected = (lambdas_prior + X.sum(axis=0)) / (lambdas_weight + len(X))
    _close(ours.lambdas_, np.broadcast_to(expected, (1, 2)), rtol=1e-12)


def test_categorical_hmm_equals_hmmlearn(start):
    rng = np.random.default_rng(2)
    X = rng.integers(0, 4, size=(300, 1))
    emissionprob = rng.dirichlet(np.ones(4), size=K)
    init = dict(start, emissionprob=emissionprob)
    ours = _set(CategoricalHMM(K, init_params="", tol=0.0, max_iter=N_ITER), **init)
    ours.fit(X, LENGTHS)
    ref = _set(hmm.CategoricalHMM(K, init_params="", n_iter=N_ITER, tol=-np.inf), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.emissionprob_, ref.emissionprob_)
    _close(ours.transmat_, ref.transmat_)
    _check_history(ours, ref)


def test_categorical_hmm_emission_prior_equals_hmmlearn(start):
    rng = np.random.default_rng(4)
    X = rng.integers(0, 3, size=(300, 1))
    init = dict(start, emissionprob=rng.dirichlet(np.ones(3), size=K))
    ours = _set(CategoricalHMM(K, init_params="", tol=0.0, max_iter=N_ITER,
                               emissionprob_prior=2.5, transmat_prior=1.5), **init)
    ours.fit(X, LENGTHS)
    ref = _set(hmm.CategoricalHMM(K, init_params="", n_iter=N_ITER, tol=-np.inf,
                                  emissionprob_prior=2.5, transmat_prior=1.5), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.emissionprob_, ref.emissionprob_)
    _close(ours.transmat_, ref.transmat_)


GMM_COVARS = {
    "diag": np.ones((K, 2, 2)),
    "full": np.tile(np.eye(2), (K, 2, 1, 1)),
    "spherical": np.ones((K, 2)),
    "tied": np.tile(np.eye(2), (K, 1, 1)),
}


# State k emits a two-component mixture centred at (5k, +-2): well separated, so the
# comparison is not at the mercy of a dying component's ill-conditioned update.
GMM_CENTRES = np.array([[[5.0 * k, -2.0], [5.0 * k, 2.0]] for k in range(K)])


def _gmm_data(seed=0):
    rng = np.random.default_rng(seed)
    n = sum(LENGTHS)
    states = np.repeat(rng.integers(0, K, size=n // 20), 20)
    mix = rng.integers(0, 2, size=n)
    return GMM_CENTRES[states, mix] + rng.normal(scale=0.8, size=(n, 2))


def _gmm_init(start, covariance_type):
    return dict(
        start,
        weights=np.array([[0.5, 0.5], [0.3, 0.7], [0.6, 0.4]]),
        means=GMM_CENTRES + 0.3,
        covars=GMM_COVARS[covariance_type],
    )


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
@pytest.mark.parametrize("params", ["stmw", "stwc"])
def test_gmm_hmm_equals_hmmlearn(start, covariance_type, params):
    # hmmlearn centres its covariance update at the previous means (not the textbook
    # M-step); with the means or the covariances held fixed both are exact EM.
    X = _gmm_data()
    init = _gmm_init(start, covariance_type)
    ours = _set(GMMHMM(K, 2, covariance_type, init_params="", params=params, tol=0.0,
                       max_iter=N_ITER, reg_covar=0.0), **init)
    ours.fit(X, LENGTHS)
    d = X.shape[1]
    # hmmlearn's default spherical prior is not flat unless n_mix == n_features; set it so.
    extra = {"covars_prior": -(d + 2) / 2} if covariance_type == "spherical" else {}
    ref = _set(hmm.GMMHMM(K, 2, covariance_type=covariance_type, init_params="", params=params,
                          n_iter=N_ITER, tol=-np.inf, **extra), **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.weights_, ref.weights_)
    _close(ours.means_, ref.means_)
    _close(ours.covars_, ref.covars_)
    _close(ours.transmat_, ref.transmat_)
    _check_history(ours, ref)


@pytest.mark.parametrize("covariance_type", ["diag", "full"])
def test_gmm_hmm_one_step_is_textbook_baum_welch(start, covariance_type):
    """One EM step against a direct implementation of the textbook M-step."""
    X = _gmm_data(seed=5)
    init = _gmm_init(start, covariance_type)
    ours = _set(GMMHMM(K, 2, covariance_type, init_params="", tol=0.0, max_iter=1,
                       reg_covar=0.0), **init)
    ours.fit(X, LENGTHS)

    # Direct computation: state posteriors times within-state responsibilities.
    dens = np.empty((X.shape[0], K, 2))
    for k in range(K):
        for m in range(2):
            cov = init["covars"][k, m]
            cov = np.diag(cov) if covariance_type == "diag" else cov
            diff = X - init["means"][k, m]
            maha = np.einsum("ij,jk,ik->i", diff, np.linalg.inv(cov), diff)
            dens[:, k, m] = (np.log(init["weights"][k, m]) - 0.5 * maha
                             - 0.5 * np.linalg.slogdet(2 * np.pi * cov)[1])
    log_b = logsumexp(dens, axis=2)
    post = forward_backward(np.log(init["startprob"]), np.log(init["transmat"]), log_b,
                            LENGTHS, backend="numpy")
    r = post.posteriors[:, :, None] * np.exp(dens - log_b[:, :, None])  # (T, K, M)
    nkm = r.sum(axis=0)
    weights = nkm / nkm.sum(axis=1, keepdims=True)
    means = np.einsum("tkm,td->kmd", r, X) / nkm[:, :, None]
    diff = X[:, None, None, :] - means[None]
    covars = np.einsum("tkm,tkmd,tkme->kmde", r, diff, diff) / nkm[:, :, None, None]
    if covariance_type == "diag":
        covars = np.diagonal(covars, axis1=2, axis2=3)
    _close(ours.weights_, weights)
    _close(ours.means_, means)
    _close(ours.covars_, covars)
    _close(ours.transmat_, post.trans_counts / post.trans_counts.sum(axis=1, keepdims=True))
    _close(ours.startprob_, post.start_counts / len(LENGTHS))


@pytest.mark.parametrize("covariance_type", ["diag", "full", "spherical", "tied"])
def test_reg_covar_is_hmmlearns_covars_prior(start, covariance_type):
    # emframe's reg_covar prior has the M-step of hmmlearn's covars_prior with the
    # weight that adds no pseudo-samples (covars_weight=1; for full and tied, any value up
    # to n_features) and no prior on the means: (S_k + lambda I) / N_k, with the strength
    # lambda = reg_covar * n / m attached to the n steps, m matrices (K; 1 when tied).
    X = _gauss_data()
    reg = 0.5 / 100  # strong (lambda = 0.5, tied 1.5), so that a different update would show
    init = dict(start, means=X[[0, 120, 260]] + 0.1, covars=COVARS[covariance_type])
    ours = _set(GaussianHMM(K, covariance_type, init_params="", tol=0.0, max_iter=N_ITER,
                            reg_covar=reg), **init)
    ours.fit(X, LENGTHS)
    n, m = sum(LENGTHS), 1 if covariance_type == "tied" else K
    assert ours.prior_size_ == n
    lam = reg * n / m
    prior = lam * np.eye(2) if covariance_type in ("full", "tied") else lam
    ref = _set(hmm.GaussianHMM(K, covariance_type, init_params="", n_iter=N_ITER, tol=-np.inf,
                               covars_prior=prior, covars_weight=1.0, means_weight=0.0),
               **init)
    _fit_hmmlearn(ref, X, LENGTHS)
    _close(ours.transmat_, ref.transmat_)
    _close(ours.means_, ref.means_)
    _close(ours.covars_, _hmmlearn_covars(ref, covariance_type))
