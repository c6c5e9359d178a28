"""State-space models in the interfaces: the Nile data, the smoothed-state plot, and the
command line (fit ssm, smooth, impute --model)."""

from __future__ import annotations

import csv
import subprocess
import sys
import warnings

import matplotlib
import numpy as np
import pytest
from cli_helpers import call, read_csv
from emframe.models import LinearGaussianSSM

import emframe
from emframe.core.exceptions import ConvergenceWarning
from emframe.datasets import load_nile
from emframe.datasets import path as data_path
from emframe.plotting import plot_smoothed_states

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

NILE = str(data_path("nile.csv"))


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _local_level(**kw):
    return LinearGaussianSSM(
        1, transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
        freeze=("transition_matrix", "observation_matrix"), transition_offset=False,
        observation_offset=False, **kw)


def test_load_nile():
    years, flow = load_nile()
    assert years.shape == flow.shape == (100,)
    assert years[0] == 1871 and years[-1] == 1970 and flow[0] == 1120.0 and flow[-1] == 740.0
    assert flow.dtype == float and years.dtype.kind == "i"


def test_plot_smoothed_states_draws_the_smoothed_moments():
    years, flow = load_nile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = _local_level(max_iter=20).fit(flow[:, None])
    means, covs = est.smooth(flow[:, None])
    sd = np.sqrt(covs[:, 0, 0])
    for signal in (False, True):
        fig = plot_smoothed_states(est, flow, signal=signal, x=years, n_std=2.0)
        (ax,) = fig.axes
        line = ax.get_lines()[0]
        np.testing.assert_array_equal(line.get_xdata(), years)
        np.testing.assert_allclose(line.get_ydata(), means[:, 0])
        band = ax.collections[0].get_paths()[0].vertices
        assert band[:, 1].min() == pytest.approx((means[:, 0] - 2 * sd).min())
        assert band[:, 1].max() == pytest.approx((means[:, 0] + 2 * sd).max())
        if signal:  # C = 1, d = 0: the signal is the level, drawn with the data
            np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), flow)


def test_plot_smoothed_states_components_lengths_and_errors():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(60, 2)).cumsum(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearGaussianSSM(3, max_iter=3, random_state=0).fit(Y, [30, 30])
    fig = plot_smoothed_states(est, Y, [30, 30], components=[0, 2])
    assert len(fig.axes) == 2
    means, _ = est.smooth(Y, [30, 30])
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), means[:, 2])
    fig = plot_smoothed_states(est, Y, [30, 30], signal=True)
    assert len(fig.axes) == 2
    np.testing.assert_allclose(
        fig.axes[1].get_lines()[0].get_ydata(),
        means @ est.observation_matrix_[1] + est.observation_offset_[1])
    with pytest.raises(ValueError, match="components"):
        plot_smoothed_states(est, Y, [30, 30], components=[3])
    with pytest.raises(ValueError, match="x must have shape"):
        plot_smoothed_states(est, Y, [30, 30], x=np.arange(5))


# -- command line -------------------------------------------------------------------------------
def test_cli_fit_ssm_smooth_and_impute(tmp_path, capsys):
    model, plot = tmp_path / "nile.npz", tmp_path / "nile.png"
    r = subprocess.run([sys.executable, "-m", "emframe", "fit", "ssm", "example:nile",
                        "--columns", "volume", "--state-dim", "1", "--max-iter", "30",
                        "--out", str(model), "--plot", str(plot), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "observation_covariance_" in r.stdout and "BIC" in r.stdout
    assert plot.stat().st_size > 0
    est = emframe.load(model)
    years, flow = load_nile()
    means, covs = est.smooth(flow[:, None])
    code, out, err = call(capsys, "smooth", model, "example:nile")
    assert code == 0, err
    header, rows = read_csv(out)
    assert header == ["state0", "state0_sd"] and len(rows) == 100
    got = np.array(rows, dtype=float)
    np.testing.assert_allclose(got[:, 0], means[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got[:, 1], np.sqrt(covs[:, 0, 0]), rtol=1e-12)


def test_cli_impute_with_a_saved_ssm_and_sequences(tmp_path, capsys):
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(40, 2)).cumsum(0)
    ids = np.repeat([1, 2], 20)
    Y[[3, 25], 0] = np.nan
    Y[30, 1] = np.nan
    data = tmp_path / "panel.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "a", "b"])
        for i, row in zip(ids, Y, strict=True):
            w.writerow([i] + ["" if np.isnan(v) else repr(float(v)) for v in row])
    model = tmp_path / "m.npz"
    code, out, err = call(capsys, "fit", "ssm", data, "--columns", "a,b", "--lengths", "id",
                          "--state-dim", "2", "--max-iter", "5", "--out", model, "--quiet")
    assert code == 0, err
    est = emframe.load(model)
    want = est.impute(Y, [20, 20])
    code, out, err = call(capsys, "impute", data, "--model", model, "--lengths", "id")
    assert code == 0, err
    assert "imputed 3 missing cells in 3 rows (a 2, b 1)" in err
    header, rows = read_csv(out)
    assert header == ["id", "a", "b"]
    got = np.array([[float(c) for c in r[1:]] for r in rows])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    code, out, err = call(capsys, "smooth", model, data, "--lengths", "id", "--filter")
    assert code == 0, err
    header, rows = read_csv(out)
    assert header[:3] == ["sequence", "state0", "state0_sd"] and len(header) == 5
    np.testing.assert_allclose(np.array(rows, dtype=float)[:, 1],
                               est.filter(Y, [20, 20])[0][:, 0], rtol=1e-12)


def test_cli_ssm_bad_usage(tmp_path, capsys):
    code, _, err = call(capsys, "fit", "gmm", NILE, "--state-dim", "2")
    assert code == 2 and "no state dimension" in err
    code, _, err = call(capsys, "fit", "ssm", NILE, "-k", "2")
    assert code == 2 and "no components" in err
    code, _, err = call(capsys, "impute", NILE, "--lengths", "year")
    assert code == 2 and "--lengths applies with --model" in err
    model = tmp_path / "g.npz"
    code, _, err = call(capsys, "fit", "gmm", NILE, "--columns", "volume", "-k", "1",
                        "--out", model, "--quiet")
    assert code == 0, err
    code, _, err = call(capsys, "smooth", model, NILE, "--columns", "volume")
    assert code == 2 and "is not a state-space model" in err
    code, _, err = call(capsys, "impute", NILE, "--model", model, "--tol", "1")
    assert code == 2 and "--tol" in err
