"""HMM estimators: the hmmlearn-style API, initial parameters, freezing, priors, topologies."""

import inspect
import math
import warnings

import numpy as np
import pytest
from emframe.models import GMMHMM, HMM, CategoricalHMM, GaussianHMM, MultinomialHMM, PoissonHMM
from emframe.models.hmm import Sequences
from emframe.models.hmm.emissions import PoissonEmission

import emframe
from emframe.exceptions import ConvergenceWarning, NotFittedError

LENGTHS = [60, 90, 50]


def _gauss(seed=0, n=200, d=2):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 3, size=n // 10), 10)
    centres = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])[:, :d]
    return centres[states] + rng.normal(size=(n, d))


def _counts(seed=0, n=200):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 2, size=n // 20), 20)
    return rng.poisson(np.array([2.0, 9.0])[states])[:, None]


def _category_counts(seed=0, n=200):
    rng = np.random.default_rng(seed)
    states = np.repeat(rng.integers(0, 2, size=n // 20), 20)
    return rng.multinomial(6, np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])[states])


def _symbols(seed=0, n=200):
    return np.random.default_rng(seed).integers(0, 4, size=(n, 1))


def _quiet_fit(model, X, lengths=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X, lengths, **kw)


ESTIMATORS = {
    "gaussian": (lambda **kw: GaussianHMM(3, "full", **kw), _gauss),
    "categorical": (lambda **kw: CategoricalHMM(3, **kw), _symbols),
    "poisson": (lambda **kw: PoissonHMM(2, **kw), _counts),
    "poisson-prior": (lambda **kw: PoissonHMM(2, lambdas_prior=1.0, lambdas_weight=0.2, **kw),
                      _counts),
    "multinomial": (lambda **kw: MultinomialHMM(2, 6, **kw), _category_counts),
    "gmm": (lambda **kw: GMMHMM(2, 2, "diag", **kw), _gauss),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_common_api(name):
    make, data = ESTIMATORS[name]
    X = data()
    model = _quiet_fit(make(random_state=0, max_iter=30), X, LENGTHS)
    assert model.converged_ in (True, False) and model.n_iter_ >= 1
    h = model.loglik_history_
    assert h.shape == (model.n_iter_ + 1,) and np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    # score and log_likelihood are the total; per-sequence scores add up to it
    total = model.score(X, LENGTHS)
    assert total == model.log_likelihood(X, LENGTHS)
    np.testing.assert_allclose(model.score_sequences(X, LENGTHS).sum(), total, rtol=1e-12)
    # the history is penalised by the log prior (the reg_covar prior of Gaussian emissions)
    assert math.isclose(total + model._model.log_prior(model.params_), h[-1], rel_tol=1e-10)
    # score_samples is hmmlearn's (log_prob, posteriors)
    logprob, post = model.score_samples(X, LENGTHS)
    np.testing.assert_allclose(logprob, total, rtol=1e-10)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(post, model.predict_proba(X, LENGTHS))
    # decoding
    lp_v, path = model.decode(X, LENGTHS)
    assert lp_v <= total + 1e-9  # one path is at most the sum over all paths
    np.testing.assert_array_equal(path, model.predict(X, LENGTHS))
    lp_map, states_map = model.decode(X, LENGTHS, algorithm="map")
    np.testing.assert_array_equal(states_map, post.argmax(axis=1))
    np.testing.assert_allclose(lp_map, np.log(post.max(axis=1)).sum(), rtol=1e-12)
    # criteria on the number of steps
    k = model.n_parameters()
    np.testing.assert_allclose(model.bic(X, LENGTHS), -2 * total + k * np.log(len(X)))
    np.testing.assert_allclose(model.aic(X, LENGTHS), -2 * total + 2 * k)
    # sampling is reproducible and has the training data's shape
    Xs, zs = model.sample(50, random_state=1)
    Xs2, zs2 = model.sample(50, random_state=1)
    assert Xs.shape == (50, X.shape[1]) and zs.shape == (50,)
    np.testing.assert_array_equal(Xs, Xs2)
    np.testing.assert_array_equal(zs, zs2)
    assert model.score(Xs) < 0 or name == "categorical"


def test_n_parameters():
    X = _gauss()
    m = _quiet_fit(GaussianHMM(3, "diag", random_state=0, max_iter=5), X)
    assert m.n_parameters() == 2 + 6 + 6 + 6
    m = _quiet_fit(GaussianHMM(3, "full", random_state=0, max_iter=5, params="tmc"), X)
    assert m.n_parameters() == 6 + 6 + 9  # startprob frozen: not a free parameter
    m = _quiet_fit(GMMHMM(2, 3, "spherical", random_state=0, max_iter=5), X)
    assert m.n_parameters() == 1 + 2 + 2 * 2 + 2 * 3 * 2 + 2 * 3
    m = _quiet_fit(CategoricalHMM(3, n_features=5, random_state=0, max_iter=5), _symbols())
    assert m.n_parameters() == 2 + 6 + 3 * 4
    # a left-right topology has fewer free transition parameters
    lr = PoissonHMM(2, init_params="l", max_iter=5, random_state=0)
    lr.startprob_, lr.transmat_ = [1.0, 0.0], [[0.9, 0.1], [0.0, 1.0]]
    assert _quiet_fit(lr, _counts()).n_parameters() == 0 + 1 + 2


def test_given_initial_parameters_are_the_start():
    X = _gauss()
    init = {
        "startprob_": np.array([0.2, 0.3, 0.5]),
        "transmat_": np.full((3, 3), 1 / 3),
        "means_": np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]]),
        "covars_": np.ones((3, 2)),
    }
    ref = GaussianHMM(3, init_params="", max_iter=0)
    for k, v in init.items():
        setattr(ref, k, v)
    ref.fit(X, LENGTHS)  # zero iterations: the given parameters themselves
    for k, v in init.items():
        np.testing.assert_array_equal(getattr(ref, k), v)
    m = GaussianHMM(3, init_params="", tol=0, max_iter=3)
    for k, v in init.items():
        setattr(m, k, v)
    m.fit(X, LENGTHS)
    assert m.loglik_history_[0] == ref.score(X, LENGTHS) + ref._model.log_prior(ref.params_)


def test_init_params_partial_and_params_freeze():
    X = _gauss()
    sp = np.array([0.6, 0.3, 0.1])
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    m = GaussianHMM(3, init_params="tc", params="tc", n_init=3, random_state=0, max_iter=20)
    m.startprob_, m.means_ = sp, means
    _quiet_fit(m, X, LENGTHS)
    # s and m were given and are not updated; t and c were drawn and fitted
    np.testing.assert_array_equal(m.startprob_, sp)
    np.testing.assert_array_equal(m.means_, means)
    assert not np.allclose(m.covars_, m.covars_[0])
    # covariances fitted around the frozen means: the exact conditional M-step
    post = m.predict_proba(X, LENGTHS)
    cov0 = post[:, 0] @ (X - means[0]) ** 2 / post[:, 0].sum()
    m2 = GaussianHMM(3, init_params="", params="c", max_iter=1, tol=0, reg_covar=0.0)
    m2.startprob_, m2.transmat_, m2.means_, m2.covars_ = sp, m.transmat_, means, m.covars_
    m2.fit(X, LENGTHS)
    np.testing.assert_allclose(m2.covars_[0], cov0, rtol=1e-10)


def test_letters_are_validated():
    X = _gauss()
    with pytest.raises(ValueError, match=r"unknown letter\(s\) \['x'\] in init_params"):
        GaussianHMM(2, init_params="stx").fit(X)
    with pytest.raises(ValueError, match=r"'l' \(lambdas_\)"):
        PoissonHMM(2, params="q").fit(_counts())
    with pytest.raises(TypeError, match="init_params must be a string"):
        GaussianHMM(2, init_params=["s"]).fit(X)


def test_n_init_keeps_the_best_restart():
    X = _gauss(seed=3)
    m = _quiet_fit(GaussianHMM(3, "diag", n_init=4, random_state=0, max_iter=50), X, LENGTHS)
    finals = m._fit_result.init_log_likelihoods
    assert len(finals) == 4 and len(set(finals)) > 1  # the restarts differ
    assert m.loglik_history_[-1] == max(finals)
    # scikit-learn's meaning: the objective per sample, at the kept parameters
    assert m.lower_bound_ == max(finals) / len(X)
    np.testing.assert_array_equal(m.lower_bounds_, m.loglik_history_ / len(X))


@pytest.mark.parametrize("prior", [1.0, 3.0])
def test_left_right_zeros_stay_exactly_zero(prior):
    X = _gauss(seed=1)
    tm = np.array([[0.7, 0.2, 0.1], [0.0, 0.8, 0.2], [0.0, 0.0, 1.0]])
    m = GaussianHMM(3, init_params="mc", transmat_prior=prior, startprob_prior=prior,
                    random_state=0, max_iter=30)
    m.startprob_, m.transmat_ = [1.0, 0.0, 0.0], tm
    _quiet_fit(m, X, LENGTHS)
    assert np.all(m.transmat_[tm == 0] == 0.0)
    assert np.all(m.transmat_[tm > 0] > 0.0)
    np.testing.assert_array_equal(m.startprob_, [1.0, 0.0, 0.0])
    # a path that violates the topology is impossible
    assert np.all(np.diff(m.predict(X)) >= 0)


def test_map_prior_history_is_penalised_and_monotone():
    X = _gauss(seed=2)
    alpha = np.full((3, 3), 2.0) + 8.0 * np.eye(3)
    m = _quiet_fit(GaussianHMM(3, transmat_prior=alpha, startprob_prior=2.0, random_state=0,
                               max_iter=40, tol=0), X, LENGTHS)
    h = m.loglik_history_
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    log_prior = np.sum((alpha - 1) * np.log(m.transmat_)) + np.sum(np.log(m.startprob_))
    # reg_covar: -lambda/2 trace(inv(Sigma_k)), lambda = reg_covar * n_steps / K (diag)
    log_prior -= 0.5 * 1e-6 * len(X) / 3 * np.sum(1.0 / m.covars_)
    np.testing.assert_allclose(h[-1], m.score(X, LENGTHS) + log_prior, rtol=1e-10)
    # the M-step is the Dirichlet mode of the expected counts
    model = m._model
    stats, _ = model.e_step(m.params_, Sequences(X, LENGTHS))
    step = model.m_step(stats)
    rows = stats.trans + alpha - 1
    np.testing.assert_allclose(step.transmat, rows / rows.sum(axis=1, keepdims=True), rtol=1e-12)


@pytest.mark.parametrize("given_start", [True, False], ids=["given-start", "same-seed"])
def test_chunked_fit_equals_whole_fit(given_start):
    # From the same start: given, or drawn from the same seed (the initialisation
    # sample is drawn across all chunks, whole sequences, so chunking does not change it).
    X = _gauss(seed=4)
    lengths = [30, 20, 50, 40, 60]
    start = GaussianHMM(3, "full", random_state=0, max_iter=0).fit(X, lengths)
    fits = []
    for chunk_size in (None, 70):
        if given_start:
            m = GaussianHMM(3, "full", init_params="", max_iter=10, tol=0)
            m.startprob_, m.transmat_ = start.startprob_, start.transmat_
            m.means_, m.covars_ = start.means_, start.covars_
        else:
            m = GaussianHMM(3, "full", random_state=0, max_iter=10, tol=0)
        fits.append(m.fit(X, lengths, chunk_size=chunk_size))
    whole, chunked = fits
    assert whole.params_.allclose(chunked.params_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(whole.loglik_history_, chunked.loglik_history_, rtol=1e-11)


def test_sequences_split_keeps_whole_sequences():
    seqs = Sequences(np.zeros((200, 1)), LENGTHS)
    parts = seqs.split(100)
    assert [list(p.lengths) for p in parts] == [[60], [90], [50]]
    parts = seqs.split(150)
    assert [list(p.lengths) for p in parts] == [[60, 90], [50]]
    assert sum(p.n_samples for p in parts) == 200


@pytest.mark.skipif(not emframe.inference.hmm.has_numba(), reason="numba not installed")
def test_numba_and_numpy_backends_fit_the_same():
    X = _gauss(seed=5)
    fits = [GaussianHMM(3, random_state=0, max_iter=10, tol=0, backend=b).fit(X, LENGTHS)
            for b in ("numpy", "numba")]
    assert fits[0].params_.allclose(fits[1].params_, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fits[0].predict(X, LENGTHS), fits[1].predict(X, LENGTHS))


def test_inputs_are_not_modified():
    X = _gauss()
    lengths = np.array(LENGTHS)
    sp = np.array([0.2, 0.3, 0.5])
    copies = X.copy(), lengths.copy(), sp.copy()
    m = GaussianHMM(3, init_params="tmc", max_iter=5, random_state=0)
    m.startprob_ = sp
    _quiet_fit(m, X, lengths)
    m.predict(X, lengths)
    m.score_samples(X, lengths)
    for a, b in zip((X, lengths, sp), copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_attributes_after_fit_drive_predictions_and_are_validated():
    X = _gauss()
    m = _quiet_fit(GaussianHMM(3, "diag", random_state=0, max_iter=20), X)
    before = m.score(X)
    m.means_ = m.means_ + 1.0  # hmmlearn semantics: the attribute is the parameter
    assert m.params_.emission.means[0, 0] == m.means_[0, 0]
    assert m.score(X) < before
    cov = m.covars_
    m.covars_ = cov  # read and set in the same (compact) shape
    assert m.covars_.shape == (3, 2)
    with pytest.raises(ValueError, match="transmat"):
        m.transmat_ = np.ones((3, 3))
    with pytest.raises(ValueError, match="covars_"):
        m.covars_ = -np.ones((3, 2))
    with pytest.raises(ValueError, match="read-only"):
        m.transmat_[0, 0] = 0.5  # assign a new array instead


def test_refit_with_empty_init_params_continues_from_fitted_values():
    X = _gauss()
    m = _quiet_fit(GaussianHMM(3, random_state=0, max_iter=5, tol=0), X)
    last = m.loglik_history_[-1]
    m.set_params(init_params="")
    _quiet_fit(m, X)
    assert m.loglik_history_[0] == pytest.approx(last, rel=1e-12)
    w = _quiet_fit(GaussianHMM(3, random_state=0, max_iter=5, tol=0, warm_start=True), X)
    last = w.loglik_history_[-1]
    _quiet_fit(w, X)
    assert w.loglik_history_[0] == pytest.approx(last, rel=1e-12)


def test_save_load_round_trip(tmp_path):
    X = _gauss()
    for m in (_quiet_fit(GaussianHMM(3, "tied", random_state=0, max_iter=5), X, LENGTHS),
              _quiet_fit(GMMHMM(2, 2, "full", random_state=0, max_iter=5), X),
              _quiet_fit(CategoricalHMM(2, random_state=0, max_iter=5), _symbols())):
        data = _symbols() if isinstance(m, CategoricalHMM) else X
        path = m.save(tmp_path / "hmm.npz")
        loaded = emframe.load(path)
        assert loaded.score(data) == m.score(data)
        np.testing.assert_array_equal(loaded.predict(data), m.predict(data))
        assert loaded.n_parameters() == m.n_parameters()


def test_clone_and_repr():
    sklearn_base = pytest.importorskip("sklearn.base")
    m = GMMHMM(2, n_mix=3, covariance_type="full", tol=1e-3)
    c = sklearn_base.clone(m)
    assert c.get_params() == m.get_params()
    assert "n_mix=3" in repr(m)


def test_sample_and_refit_recovers_parameters():
    # max_iter=0 "fits" the given parameters exactly, so the estimator can sample from them
    truth = PoissonHMM(2, init_params="", max_iter=0)
    truth.startprob_ = [0.5, 0.5]
    truth.transmat_ = [[0.95, 0.05], [0.1, 0.9]]
    truth.lambdas_ = [[2.0], [10.0]]
    truth.fit(_counts())
    X, z = truth.sample(5000, random_state=0)
    assert X.dtype.kind == "i" and np.all(X >= 0)
    fit = _quiet_fit(PoissonHMM(2, random_state=0, n_init=2), X)
    order = np.argsort(fit.lambdas_[:, 0])
    np.testing.assert_allclose(fit.lambdas_[order, 0], [2.0, 10.0], rtol=0.05)
    np.testing.assert_allclose(fit.transmat_[np.ix_(order, order)], truth.transmat_, atol=0.03)
    assert np.mean(order[fit.predict(X)] == z) > 0.97


def test_not_fitted():
    with pytest.raises(NotFittedError):
        GaussianHMM(2).predict(np.zeros((3, 2)))
    with pytest.raises(AttributeError, match="fit the model, or set it before fit"):
        GaussianHMM(2).means_  # noqa: B018


def test_generic_hmm_accepts_a_shipped_emission():
    X = _counts()
    generic = _quiet_fit(HMM(PoissonEmission(), 2, random_state=0, max_iter=20), X)
    named = _quiet_fit(PoissonHMM(2, random_state=0, max_iter=20), X)
    np.testing.assert_allclose(generic.emission_params_.lambdas, named.lambdas_, rtol=1e-12)
    with pytest.raises(TypeError, match="emission must be an Emission"):
        HMM("poisson", 2).fit(X)


def test_partial_fit_over_batches_of_sequences():
    X = _gauss(seed=6, n=2000)
    lengths = [100] * 20
    online = GaussianHMM(3, "diag", random_state=0)
    for i in range(0, 20, 4):
        online.partial_fit(X[i * 100 : (i + 4) * 100], lengths[i : i + 4])
    assert online.n_iter_ == 5 and online.loglik_history_.shape == (5,)
    batch = _quiet_fit(GaussianHMM(3, "diag", random_state=0), X, lengths)
    # one pass of online EM gets close to the batch optimum
    assert online.score(X, lengths) > batch.score(X, lengths) - 0.02 * abs(batch.score(X, lengths))
    with pytest.raises(ValueError, match="X has 3 features"):
        online.partial_fit(np.zeros((10, 3)))


def test_squarem_is_monotone_keeps_topology_and_saves_e_steps():
    X = _gauss(seed=0, n=800)
    plain = _quiet_fit(GMMHMM(2, 2, "diag", random_state=0, tol=1e-6, max_iter=3000), X)
    fast = GMMHMM(2, 2, "diag", random_state=0, tol=1e-6, max_iter=3000)
    _quiet_fit(fast, X, accelerate="squarem")
    assert fast.converged_ and plain.converged_
    # a slowly converging case (169 plain E-steps); SQUAREM does not always save steps
    assert fast._fit_result.n_e_steps < plain._fit_result.n_e_steps / 2
    h = fast.loglik_history_
    assert np.all(np.diff(h) >= -1e-9 * np.abs(h[1:]))
    lr = GaussianHMM(3, init_params="mc", transmat_prior=2.0, random_state=0, max_iter=50)
    lr.startprob_, lr.transmat_ = [1.0, 0.0, 0.0], [[0.8, 0.2, 0], [0, 0.8, 0.2], [0, 0, 1]]
    _quiet_fit(lr, X, [200] * 4, accelerate="squarem")
    assert np.all(lr.transmat_[np.tril_indices(3, -1)] == 0.0)
    np.testing.assert_array_equal(lr.startprob_, [1.0, 0.0, 0.0])


def test_online_method_over_sequence_batches():
    X = _gauss(seed=6, n=2000)
    lengths = [100] * 20
    online = GaussianHMM(3, random_state=0, max_iter=3)
    online.fit(X, lengths, chunk_size=400, method="online")
    assert online.n_iter_ == 5  # one pass over 5 batches, whatever max_iter
    online.fit(X, lengths, chunk_size=400, method="online", passes=3)
    assert online.n_iter_ == 15  # 3 passes over 5 batches
    batch = _quiet_fit(GaussianHMM(3, random_state=0), X, lengths)
    assert online.score(X, lengths) > batch.score(X, lengths) - 0.02 * abs(batch.score(X, lengths))
    with pytest.raises(TypeError, match="unexpected keyword"):
        GaussianHMM(3).fit(X, lengths, acelerate="squarem")


def test_constructor_signatures_are_explicit():
    # written out in full (scikit-learn style), as get_params, clone, help() and IDEs read them
    sig = inspect.signature(GMMHMM)
    assert list(sig.parameters)[:3] == ["n_components", "n_mix", "covariance_type"]
    assert sig.parameters["init_params"].default == "stmcw"
    assert sig.parameters["tol"].default == 1e-4
    assert sig.parameters["tol"].kind is inspect.Parameter.KEYWORD_ONLY
    assert inspect.signature(HMM).parameters["params"].default is None
    est = GMMHMM(3, 2, "full", tol=0.5)
    assert (est.n_components, est.n_mix, est.covariance_type, est.tol) == (3, 2, "full", 0.5)
    assert est.backend == "auto" and est.params == "stmcw"
    with pytest.raises(TypeError, match=r"GMMHMM.__init__\(\) got an unexpected keyword "
                                        r"argument 'n_iter'"):
        GMMHMM(n_iter=5)
