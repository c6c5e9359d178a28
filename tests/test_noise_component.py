"""The uniform noise component (noise=True) on GaussianMixture and StudentTMixture.

Also the textbook oracle: from the same start, the iterates of both estimators, with
and without noise, equal a direct transcription of the EM equations (McLachlan & Peel
2000, ch. 7; mclust's noise component), with scipy's densities and root finder.
"""

import warnings

import numpy as np
import pytest
from emframe.models import GaussianMixture, MissingDataGaussianMixture, StudentTMixture
from emframe.models.mixtures import GaussianMixtureModel
from emframe.models.mixtures.gaussian import NoisyGaussianMixtureParams
from emframe.models.mixtures.noise import UniformNoiseModel
from emframe.models.robust import NoisyStudentTMixtureParams, StudentTMixtureModel
from scipy import optimize, special
from scipy import stats as sps

import emframe
from emframe.exceptions import ConvergenceWarning
from emframe.testing import check_model

BOX = ([-10.0, -10.0], [20.0, 15.0])


def noisy_data(seed=0, n_noise=100):
    """900 points in two Gaussian clusters plus ``n_noise`` uniform on BOX (last rows)."""
    rng = np.random.default_rng(seed)
    return np.vstack([
        rng.normal(size=(450, 2)),
        rng.normal(size=(450, 2)) @ [[1.0, 0.5], [0.0, 0.7]] + [6.0, 2.0],
        rng.uniform(*BOX, size=(n_noise, 2)),
    ])


def quiet(est, X, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X, **kw)


# ---------------------------------------------------------------------------
# the textbook oracle
# ---------------------------------------------------------------------------
def textbook_step(X, weights, means, covs, dof, pi0, volume):
    """One EM step of a (t or Gaussian) mixture plus a uniform component, written out.

    ``dof=None`` means Gaussian components; ``pi0=None`` means no noise component.
    ``weights`` are the component weights given not-noise.
    """
    n, d = X.shape
    K = len(weights)
    dens = np.empty((n, K))
    for k in range(K):
        if dof is None:
            dens[:, k] = sps.multivariate_normal(means[k], covs[k]).pdf(X)
        else:
            dens[:, k] = sps.multivariate_t(means[k], covs[k], df=dof[k]).pdf(X)
    noise = 0.0 if pi0 is None else pi0
    joint = np.column_stack([(1 - noise) * weights * dens, np.full(n, noise / volume)])
    R = joint / joint.sum(axis=1, keepdims=True)
    Rk, N = R[:, :K], R[:, :K].sum(axis=0)
    new_pi0 = None if pi0 is None else R[:, K].sum() / n
    new_w = N / N.sum()
    new_means, new_covs, new_dof = [], [], []
    for k in range(K):
        if dof is None:
            u = np.ones(n)
        else:
            m = np.einsum("ij,jk,ik->i", X - means[k], np.linalg.inv(covs[k]), X - means[k])
            u = (dof[k] + d) / (dof[k] + m)
            e_log_u = special.digamma((dof[k] + d) / 2) - np.log((dof[k] + m) / 2)
            c = 1 + Rk[:, k] @ (e_log_u - u) / N[k]
            new_dof.append(optimize.brentq(
                lambda nu, c=c: -special.digamma(nu / 2) + np.log(nu / 2) + c, 1e-3, 1e7,
                xtol=1e-14, rtol=1e-15))
        mu = (Rk[:, k] * u) @ X / (Rk[:, k] @ u)
        xc = X - mu
        new_means.append(mu)
        new_covs.append((xc * (Rk[:, k] * u)[:, None]).T @ xc / N[k])
    return (new_w, np.array(new_means), np.array(new_covs),
            None if dof is None else np.array(new_dof), new_pi0)


@pytest.mark.parametrize("family", ["gaussian", "t"])
@pytest.mark.parametrize("noise", [False, True])
def test_iterates_equal_the_textbook_algorithm(family, noise):
    X = noisy_data(n_noise=60)[::3]
    w, means = np.array([0.6, 0.4]), np.array([[0.5, 0.0], [5.0, 2.5]])
    covs = np.array([np.eye(2) * 3.0, [[2.0, 0.3], [0.3, 1.5]]])
    dof = None if family == "gaussian" else np.array([3.0, 8.0])
    pi0 = 0.2 if noise else None
    cls = GaussianMixture if family == "gaussian" else StudentTMixture
    kw = {"weights_init": w, "means_init": means, "precisions_init": np.linalg.inv(covs),
          "reg_covar": 0.0, "tol": 0.0, "noise": noise, "noise_init": pi0 or 0.05}
    if dof is not None:
        kw["dof_init"] = dof
    volume = np.prod(X.max(axis=0) - X.min(axis=0))
    state = (w, means, covs, dof, pi0)
    for n_iter in (1, 2, 3):
        est = quiet(cls(2, max_iter=n_iter, **kw), X)
        state = textbook_step(X, *state[:4], state[4], volume)
        p = est.params_
        np.testing.assert_allclose(p.weights, state[0], rtol=1e-9)
        np.testing.assert_allclose(p.means, state[1], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(p.covariances, state[2], rtol=1e-9)
        if dof is not None:
            np.testing.assert_allclose(p.dof, state[3], rtol=1e-9)
        if noise:
            assert p.noise_weight == pytest.approx(state[4], rel=1e-9)
            assert est.noise_volume_ == pytest.approx(volume, rel=1e-14)


# ---------------------------------------------------------------------------
# the engine's contract and recovery of the noise fraction
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("base", ["gaussian", "t"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_engine_conformance(base, covariance_type):
    X = noisy_data(n_noise=40)[::4] + 50.0
    bounds = np.stack([X.min(axis=0), X.max(axis=0)])

    def factory():
        if base == "gaussian":
            return UniformNoiseModel(GaussianMixtureModel(2, covariance_type), bounds, 0.1,
                                     NoisyGaussianMixtureParams)
        return UniformNoiseModel(StudentTMixtureModel(2, covariance_type), bounds, 0.1,
                                 NoisyStudentTMixtureParams)

    # with the outliers in the noise component the t components' dof grow without bound
    # (the maximum is at the Gaussian limit, a boundary): no stationary point to check there
    check_model(factory, X, chunks=[X[:70], X[70:150], X[150:]], stationary=base == "gaussian")


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_fraction_is_recovered(seed):
    # 10% uniform noise over the whole box; the MLE of the noise weight is consistent
    X = noisy_data(seed)
    g = GaussianMixture(2, noise=True, random_state=0).fit(X)
    assert abs(g.noise_weight_ - 0.1) < 0.03
    assert g.weights_.sum() + g.noise_weight_ == pytest.approx(1.0)
    labels = g.predict(X)
    assert (labels[900:] == -1).mean() > 0.75  # noise inside the clusters is not noticed
    assert (labels[:900] == -1).mean() < 0.01
    t = StudentTMixture(2, noise=True, random_state=0).fit(X)
    assert abs(t.noise_weight_ - 0.1) < 0.03
    assert np.all(np.diff(t.loglik_history_) >= 0)


def test_noise_estimator_surface():
    X = noisy_data()
    g = GaussianMixture(2, noise=True, noise_init=0.2, random_state=0).fit(X)
    proba = g.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    labels = g.predict(X)
    np.testing.assert_array_equal(labels, np.where(proba.argmax(1) == 2, -1, proba.argmax(1)))
    assert g.predict(np.array([[1e3, 1e3]]))[0] == -1  # far outside: noise, not a component
    assert g.n_parameters() == 2 * 5 + 1 + 1  # means, covariances, weight, noise weight
    np.testing.assert_allclose(g.noise_bounds_, [X.min(axis=0), X.max(axis=0)])
    S, s_labels = g.sample(2000, random_state=0)
    noise = s_labels == -1
    assert abs(noise.mean() - g.noise_weight_) < 0.03
    assert np.all((S[noise] >= g.noise_bounds_[0]) & (S[noise] <= g.noise_bounds_[1]))
    frozen = GaussianMixture(2, noise=True, noise_init=0.3, freeze=("noise_weight",),
                             random_state=0).fit(X)
    assert frozen.noise_weight_ == 0.3
    fast = GaussianMixture(2, noise=True, tol=1e-8, random_state=0).fit(X, accelerate="squarem")
    assert fast.noise_weight_ == pytest.approx(g.noise_weight_, abs=1e-3)
    chunked = GaussianMixture(2, noise=True, random_state=0).fit(X, chunk_size=128)
    assert chunked.noise_volume_ == g.noise_volume_  # the box of all chunks
    # switching the option off refits without the attributes
    g.set_params(noise=False).fit(X)
    assert not hasattr(g, "noise_weight_") and g.predict_proba(X).shape == (len(X), 2)


def test_save_load_round_trip(tmp_path):
    X = noisy_data()
    g = GaussianMixture(2, noise=True, random_state=0).fit(X)
    back = emframe.load(g.save(tmp_path / "g.npz"))
    assert back.noise_weight_ == g.noise_weight_
    np.testing.assert_array_equal(back.score_samples(X), g.score_samples(X))
    np.testing.assert_array_equal(back.predict(X), g.predict(X))


def test_bad_noise_input():
    X = noisy_data()
    flat = X.copy()
    flat[:, 1] = 3.0
    before = flat.copy()
    with pytest.raises(ValueError, match="feature 1 is constant"):
        GaussianMixture(2, noise=True).fit(flat)
    with pytest.raises(ValueError, match="positive volume"):
        StudentTMixture(1, noise=True).fit(flat)
    np.testing.assert_array_equal(flat, before)
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="noise_init"):
            GaussianMixture(2, noise=True, noise_init=bad).fit(X)
    with pytest.raises(TypeError, match="noise must be True or False"):
        GaussianMixture(2, noise="yes").fit(X)
    with pytest.raises(ValueError, match="not supported by MissingDataGaussianMixture"):
        MissingDataGaussianMixture(2, noise=True).fit(X)
    # with noise=True there is no partial_fit (hasattr is False, as scikit-learn asks)
    for est in (GaussianMixture(2, noise=True), StudentTMixture(2, noise=True)):
        assert not hasattr(est, "partial_fit")
        with pytest.raises(AttributeError, match="partial_fit is not available with noise"):
            est.partial_fit(X)
        assert hasattr(est.set_params(noise=False), "partial_fit")
    assert hasattr(GaussianMixture, "partial_fit")  # the class still documents it
    with pytest.raises(TypeError, match="noise must be True or False"):
        GaussianMixture(2, noise="yes").partial_fit(X)
    with pytest.raises(ValueError, match="at least 2 samples .* got n_samples = 1"):
        GaussianMixture(1, noise=True).fit(X[:1])
    g = GaussianMixture(2, random_state=0).fit(X)
    with pytest.raises(ValueError, match="warm_start cannot switch the noise option"):
        g.set_params(warm_start=True, noise=True).fit(X)


def test_plot_clusters_draws_noise_grey():
    from emframe.plotting import plot_clusters

    X = noisy_data()
    g = GaussianMixture(2, noise=True, random_state=0).fit(X)
    ax = plot_clusters(g, X)
    colours = ax.collections[0].get_facecolors()
    noise = g.predict(X) == -1
    assert noise.any()
    np.testing.assert_allclose(colours[noise, :3], 0.55)
    assert not np.allclose(colours[~noise, :3], 0.55)


def _tiny_scale(scale):
    """Old-Faithful-like clusters, standardised, then shrunk: the default reg_covar prior
    (in the data's units squared) makes the components much wider than the data."""
    rng = np.random.default_rng(1)
    X = np.vstack([rng.normal(size=(150, 2)) * 0.3 - 1, rng.normal(size=(120, 2)) * 0.3 + 1])
    return X * scale


@pytest.mark.parametrize("cls", [GaussianMixture, StudentTMixture])
def test_noise_taking_every_point_is_a_clear_error(cls):
    with pytest.raises(ValueError, match="the noise component has taken every point") as err:
        cls(2, noise=True, random_state=0).fit(_tiny_scale(1e-5))
    assert "reg_covar" in str(err.value)


@pytest.mark.parametrize("cls", [GaussianMixture, StudentTMixture])
def test_noise_taking_practically_every_point_warns(cls):
    # uniform data and one narrow component (frozen) on a single row of weight 1/4:
    # the maximum-likelihood noise weight leaves the component a quarter of a row
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(270, 2))
    X[0] = [0.5, 0.5]
    w = np.ones(len(X))
    w[0] = 0.25
    est = cls(1, noise=True, means_init=[X[0]], precisions_init=[np.eye(2) * 1e6],
              freeze=("means", "covariances"), tol=1e-12, random_state=0)
    with pytest.warns(UserWarning, match="the noise component holds practically every point"
                      ) as record:
        est.fit(X, sample_weight=w)
    assert record[0].filename == __file__  # points at the caller's fit
    np.testing.assert_allclose((1 - est.noise_weight_) * len(X), 0.25, rtol=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a sound fit does not warn
        quiet(cls(2, noise=True, random_state=0), _tiny_scale(1.0))
