"""Plots: the artists drawn carry exactly the model's numbers."""

import sys

import matplotlib
import numpy as np
import pytest
from custom_models import PoissonMixtureEstimator, poisson_data
from matplotlib.image import AxesImage
from matplotlib.patches import Ellipse

from emframe import fit_em
from emframe.interfaces import plotting as ep

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


class GaussianStub:
    """A fitted Gaussian mixture as plot_clusters sees it (duck typing)."""

    def __init__(self, means, covariances, covariance_type):
        self.means_ = np.asarray(means, dtype=float)
        self.covariances_ = np.asarray(covariances, dtype=float)
        self.covariance_type = covariance_type

    def predict(self, X):
        return np.argmin(((X[:, None, :] - self.means_[None]) ** 2).sum(-1), axis=1)


def _rot(deg):
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


# -- convergence ---------------------------------------------------------------------------------
def test_convergence_line_is_the_history():
    X = poisson_data()
    est = PoissonMixtureEstimator(random_state=0, tol=1e-6).fit(X)
    ax = ep.plot_convergence(est)
    line = ax.get_lines()[-1]
    np.testing.assert_array_equal(line.get_ydata(), est.loglik_history_)
    np.testing.assert_array_equal(line.get_xdata(), np.arange(est.loglik_history_.size))
    assert "converged" in ax.get_title() and ax.get_xlabel() == "EM iteration"


def test_convergence_from_fit_result_and_array_on_given_axes():
    from custom_models import PoissonMixture

    result = fit_em(PoissonMixture(2), poisson_data(), random_state=1, max_iter=5, tol=0)
    fig, ax = plt.subplots()
    out = ep.plot_convergence(result, ax=ax, label="restart")
    assert out is ax
    ep.plot_convergence([-3.0, -2.0, -1.5], ax=ax, label="manual")
    lines = ax.get_lines()
    assert len(lines) == 2
    np.testing.assert_array_equal(lines[0].get_ydata(), result.loglik_history)
    np.testing.assert_array_equal(lines[1].get_ydata(), [-3.0, -2.0, -1.5])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["restart", "manual"]
    with pytest.raises(ValueError, match="1-D array of log-likelihoods"):
        ep.plot_convergence(np.zeros((2, 2)))


# -- clusters ------------------------------------------------------------------------------------
def test_ellipse_geometry_matches_a_rotated_covariance():
    cov = _rot(30) @ np.diag([4.0, 1.0]) @ _rot(30).T
    w, h, angle = ep.ellipse_geometry(cov, n_std=2.0)
    assert w == pytest.approx(2 * 2 * 2.0) and h == pytest.approx(2 * 2 * 1.0)
    assert angle % 180 == pytest.approx(30.0)


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical"])
def test_cluster_scatter_has_one_ellipse_per_component(kind):
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0, 1.0], [5.0, 5.0, 0.0], [0.0, 6.0, 2.0]])
    full = _rot(45) @ np.diag([3.0, 0.5]) @ _rot(45).T
    covs = {
        "full": np.stack([np.pad(full * (c + 1), (0, 1)) + np.diag([0, 0, 1.0])
                          for c in range(3)]),
        "tied": np.pad(full, (0, 1)) + np.diag([0, 0, 1.0]),
        "diag": np.array([[1.0, 4.0, 1.0], [2.0, 0.5, 1.0], [1.0, 1.0, 1.0]]),
        "spherical": np.array([1.0, 2.0, 0.25]),
    }[kind]
    est = GaussianStub(means, covs, kind)
    X = means[rng.integers(0, 3, 90)] + rng.normal(size=(90, 3))
    X_before = X.copy()
    ax = ep.plot_clusters(est, X, n_std=1.5, feature_names=("a", "b"))
    np.testing.assert_array_equal(X, X_before)  # the data are not modified
    ellipses = [p for p in ax.patches if isinstance(p, Ellipse)]
    assert len(ellipses) == 3
    _, full_covs = ep._component_covariances(est)
    for c, e in enumerate(ellipses):
        np.testing.assert_allclose(e.center, means[c, :2])
        w, h, _ = ep.ellipse_geometry(full_covs[c][:2, :2], 1.5)
        assert (e.width, e.height) == pytest.approx((w, h))
    # the data points, coloured by the predicted component
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_array_equal(np.asarray(offsets), X[:, :2])
    colors = ax.collections[0].get_facecolors()
    labels = est.predict(X)
    for c in range(3):
        assert len({tuple(col) for col in colors[labels == c]}) == 1
    means_line = ax.get_lines()[-1]
    np.testing.assert_array_equal(means_line.get_xdata(), means[:, 0])
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("a", "b")


def test_cluster_plot_other_dims_and_errors():
    est = GaussianStub([[0, 0, 0], [3, 3, 3]], np.stack([np.diag([1.0, 2.0, 9.0])] * 2), "full")
    X = np.random.default_rng(1).normal(size=(20, 3))
    ax = ep.plot_clusters(est, X, dims=(0, 2), n_std=1.0)
    e = [p for p in ax.patches if isinstance(p, Ellipse)][0]
    assert (e.width, e.height) == pytest.approx((6.0, 2.0))  # sqrt(9) and sqrt(1), times 2
    with pytest.raises(ValueError, match="dims must be two different"):
        ep.plot_clusters(est, X, dims=(1, 1))
    with pytest.raises(ValueError, match=r"n_samples, >= 2"):
        ep.plot_clusters(est, X[:, :1])
    with pytest.raises(TypeError, match="no fitted means_"):
        ep.plot_clusters(object(), X)


def test_single_gaussian_gets_one_ellipse():
    class One:
        mean_ = np.array([1.0, 2.0])
        covariance_ = np.array([[2.0, 0.0], [0.0, 0.5]])

    X = np.array([[1.0, 2.0], [np.nan, 1.0], [0.0, 0.0]])
    ax = ep.plot_clusters(One(), X)
    assert len([p for p in ax.patches if isinstance(p, Ellipse)]) == 1
    assert len(ax.collections[0].get_offsets()) == 2  # the row with a missing value is skipped


# -- state paths ---------------------------------------------------------------------------------
def test_state_path_draws_series_states_and_state_means():
    class HMMStub:
        lambdas_ = np.array([2.0, 9.0])

        def predict(self, X, lengths=None):
            return (X[:, 0] > 5).astype(int)

    series = np.array([1.0, 2.0, 8.0, 10.0, 3.0, 9.0])
    years = np.arange(1990, 1996)
    fig = ep.plot_state_path(HMMStub(), series[:, None], x=years, lengths=[4, 2])
    ax0, ax1 = fig.axes
    data_line, level_line = ax0.get_lines()[:2]
    np.testing.assert_array_equal(data_line.get_ydata(), series)
    np.testing.assert_array_equal(data_line.get_xdata(), years)
    states = np.array([0, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(level_line.get_ydata(), HMMStub.lambdas_[states])
    np.testing.assert_array_equal(ax1.get_lines()[0].get_ydata(), states)
    # one dashed boundary between the two sequences, on each panel
    boundary = [ln for ln in ax1.get_lines() if ln.get_linestyle() == "--"]
    assert len(boundary) == 1 and boundary[0].get_xdata()[0] == pytest.approx(1993.5)


def test_state_path_with_given_states_and_errors():
    X = np.random.default_rng(0).normal(size=(10, 2))
    states = np.repeat([0, 1], 5)
    fig = ep.plot_state_path(None, X, states=states, feature=1)
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), X[:, 1])
    assert len(fig.axes[0].get_lines()) == 1  # no state means without an estimator
    with pytest.raises(ValueError, match=r"states must have shape \(10,\)"):
        ep.plot_state_path(None, X, states=states[:5])
    with pytest.raises(ValueError, match="fitted estimator or the states"):
        ep.plot_state_path(None, X)


# -- Bernoulli components ------------------------------------------------------------------------
def test_bernoulli_components_are_images_of_the_probabilities():
    rng = np.random.default_rng(0)
    probs = rng.uniform(size=(7, 64))
    weights = rng.dirichlet(np.ones(7))

    class Stub:
        probs_ = probs
        weights_ = weights

    fig = ep.plot_bernoulli_components(Stub(), ncols=4)
    assert len(fig.axes) == 7  # the eighth grid cell is removed
    for c, ax in enumerate(fig.axes):
        (img,) = [a for a in ax.get_children() if isinstance(a, AxesImage)]
        np.testing.assert_array_equal(img.get_array(), probs[c].reshape(8, 8))
        assert img.get_clim() == (0.0, 1.0)
        assert ax.get_title() == f"{c}: w={weights[c]:.2f}"
    fig2 = ep.plot_bernoulli_components(probs[:2, :6], image_shape=(2, 3))
    assert fig2.axes[0].images[0].get_array().shape == (2, 3)
    assert fig2.axes[1].get_title() == "1"
    with pytest.raises(ValueError, match="does not hold 6 features"):
        ep.plot_bernoulli_components(probs[:2, :6], image_shape=(4, 4))


# -- optional dependency -------------------------------------------------------------------------
def test_missing_matplotlib_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r'pip install "emframe\[plot\]"'):
        ep.plot_convergence([1.0, 2.0])
    # importing the module itself never needs matplotlib
    import subprocess

    code = ("import sys; sys.modules['matplotlib'] = None; "
            "import emframe.plotting, emframe.interfaces.io; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
