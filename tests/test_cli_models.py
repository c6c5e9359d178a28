"""The command line for the autoregressive HMM (--order, rows aligned with the input, plots)
and for state-space models built from the shell (--local-level, --freeze, --init,
--no-offsets)."""

import warnings

import matplotlib
import numpy as np
import pytest
from cli_helpers import call, read_csv
from emframe.models import AutoRegressiveHMM, LinearGaussianSSM
from emframe.models.ssm.params import FIELDS

import emframe
from emframe.datasets import load_nile
from emframe.datasets import path as data_path
from emframe.interfaces.cli import parser as cli_main
from emframe.interfaces.cli.specs import SSM_FIELDS
from emframe.interfaces.cli.statespace import VAGUE_SCALE

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

AIR = str(data_path("airquality.csv"))
NILE = str(data_path("nile.csv"))
LAGS = [0, 1, 40, 41]  # the lag rows of two sequences (40 + 113 rows) at order 2


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ar_fit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ar")
    lengths = folder / "len.txt"
    lengths.write_text("40\n113\n")
    model = folder / "ar.npz"
    code = cli_main.main(["fit", "ar-hmm", AIR, "-c", "Wind,Temp", "-k", "2", "--order", "2",
                          "--max-iter", "30", "-q", "--lengths", str(lengths),
                          "--out", str(model)])
    assert code == 0
    X = emframe.datasets.load_airquality()[0][:, 2:4]  # Wind, Temp: no gaps
    return emframe.load(model), model, lengths, X


# -- ar-hmm ------------------------------------------------------------------------------
def test_ar_hmm_order_reaches_the_estimator(ar_fit, capsys):
    est, model, lengths, X = ar_fit
    assert isinstance(est, AutoRegressiveHMM) and est.order == 2
    assert est.coefs_.shape == (2, 2, 2, 2)
    code, out, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "-k", "2", "-q",
                          "--max-iter", "2", "--lengths", lengths)
    assert code == 0, err
    assert "coefs_ shape (2, 1, 2, 2)" in out  # the default order is 1
    # the likelihood of the rows after the lags, per such row
    per_row = est.score(X, [40, 113]) / (X.shape[0] - 4)
    code, out, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "-k", "2", "-q",
                          "--order", "2", "--max-iter", "30", "--lengths", lengths)
    assert f"({per_row:.6f} per modelled row)" in out


def test_ar_hmm_predict_has_one_line_per_input_row(ar_fit, capsys):
    est, model, lengths, X = ar_fit
    code, out, err = call(capsys, "predict", model, AIR, "-c", "Wind,Temp", "--lengths", lengths)
    assert code == 0, err
    header, rows = read_csv(out)
    assert header == ["state", "p0", "p1"] and len(rows) == X.shape[0]
    assert [i for i, r in enumerate(rows) if r == ["", "", ""]] == LAGS
    kept = [r for i, r in enumerate(rows) if i not in LAGS]
    np.testing.assert_array_equal([int(r[0]) for r in kept], est.predict(X, [40, 113]))
    np.testing.assert_array_equal(np.array([r[1:] for r in kept], dtype=float),
                                  est.predict_proba(X, [40, 113]))


def test_ar_hmm_decode_has_one_line_per_input_row(ar_fit, capsys):
    est, model, lengths, X = ar_fit
    code, out, err = call(capsys, "decode", model, AIR, "-c", "Wind,Temp", "--lengths", lengths)
    assert code == 0, err
    header, rows = read_csv(out)
    assert header == ["sequence", "state"] and len(rows) == X.shape[0]
    assert [r[0] for r in rows] == ["0"] * 40 + ["1"] * 113
    assert [i for i, r in enumerate(rows) if r[1] == ""] == LAGS
    _, path = est.decode(X, [40, 113])
    np.testing.assert_array_equal([int(r[1]) for i, r in enumerate(rows) if i not in LAGS], path)
    # one sequence: the first two rows are the lags
    code, out, err = call(capsys, "decode", model, AIR, "-c", "Wind,Temp", "-q")
    assert code == 0, err
    header, rows = read_csv(out)
    assert len(rows) == X.shape[0] and rows[0] == rows[1] == [""] and rows[2] != [""]
    np.testing.assert_array_equal([int(r[0]) for r in rows[2:]], est.decode(X)[1])


def test_ar_hmm_plot_draws_the_states_of_the_modelled_rows(tmp_path, capsys):
    plot = tmp_path / "ar.png"
    code, _, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "-k", "2", "-q",
                        "--order", "3", "--max-iter", "5", "--plot", plot)
    assert code == 0, err
    assert plot.read_bytes()[:4] == b"\x89PNG"
    from emframe.interfaces.cli.running import plot_fit
    from emframe.interfaces.cli.specs import MODELS
    from emframe.interfaces.cli.tables import load_data

    data = load_data(AIR, ["Wind,Temp"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = AutoRegressiveHMM(2, order=3, max_iter=5, random_state=0).fit(data.X)
    fig = plot_fit(est, MODELS["ar-hmm"], data)
    xs, states = fig.axes[1].lines[0].get_data()
    np.testing.assert_array_equal(xs, np.arange(3, 153))
    np.testing.assert_array_equal(states, est.predict(data.X))
    np.testing.assert_array_equal(fig.axes[0].lines[0].get_ydata(), data.X[3:, 0])


def test_ar_hmm_sequences_must_be_longer_than_the_order(ar_fit, tmp_path, capsys):
    _, model, _, _ = ar_fit
    short = tmp_path / "short.txt"
    short.write_text("150\n2\n1\n")
    code, _, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "--order", "2",
                        "--lengths", short, "-q")
    assert code == 2
    assert ("sequence 2 (rows 151-152) has 2 row(s), but ar-hmm with order 2 takes the first "
            "2 rows of every sequence as lags") in err
    for command in ("predict", "decode"):
        code, _, err = call(capsys, command, model, AIR, "-c", "Wind,Temp", "--lengths", short)
        assert code == 2 and "smaller --order" in err
    code, _, err = call(capsys, "select", "ar-hmm", AIR, "-c", "Wind,Temp", "--order", "200",
                        "-k", "1", "-q")
    assert code == 2 and "the data has 153 row(s)" in err


def test_order_is_for_ar_hmm_only(capsys):
    code, _, err = call(capsys, "fit", "gaussian-hmm", AIR, "-c", "Wind,Temp", "--order", "2")
    assert code == 2 and "--order applies to ar-hmm, not to gaussian-hmm" in err
    code, _, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "--order", "0")
    assert code == 2 and "must be a positive integer" in err


def test_select_ar_hmm_with_an_order(capsys):
    code, out, err = call(capsys, "select", "ar-hmm", AIR, "-c", "Wind,Temp", "--order", "2",
                          "-k", "1-2", "--n-init", "1", "--max-iter", "5", "-q")
    assert code == 0, err
    assert "order=2" in out and "coefs_ shape" in out


# -- fit ssm -----------------------------------------------------------------------------
def test_the_parser_knows_the_ssm_fields():
    assert SSM_FIELDS == FIELDS


def test_local_level_from_the_shell_is_the_python_local_level(tmp_path, capsys):
    model = tmp_path / "nile.npz"
    code, out, err = call(capsys, "fit", "ssm", NILE, "--columns", "volume", "--local-level",
                          "--max-iter", "40", "-q", "--out", model)
    assert code == 0, err
    est = emframe.load(model)
    _, flow = load_nile()
    want = LinearGaussianSSM(
        1, transition_matrix_init=[[1.0]], observation_matrix_init=[[1.0]],
        initial_state_covariance_init=[[VAGUE_SCALE * np.var(flow)]],
        freeze=("transition_matrix", "observation_matrix", "initial_state_covariance"),
        transition_offset=False, observation_offset=False, max_iter=40, random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want.fit(flow[:, None])
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(est, field + "_"), getattr(want, field + "_"))
    assert est.transition_offset is False and est.observation_offset is False
    assert est.transition_matrix_[0, 0] == est.observation_matrix_[0, 0] == 1.0
    assert "free parameters 3" in out  # the two variances and the first level's mean


def test_freeze_init_and_no_offsets_build_a_local_linear_trend(tmp_path, capsys):
    model = tmp_path / "trend.npz"
    code, out, err = call(
        capsys, "fit", "ssm", NILE, "--columns", "volume", "--state-dim", "2", "--no-offsets",
        "--init", "transition_matrix=1,1;0,1", "--init", "observation_matrix=1,0",
        "--freeze", "transition_matrix,observation_matrix", "--freeze",
        "initial_state_covariance", "--init", "initial_state_covariance=1e8,0;0,1e4",
        "--init", "observation_covariance=15000", "--max-iter", "3", "-q", "--out", model)
    assert code == 0, err
    est = emframe.load(model)
    np.testing.assert_array_equal(est.transition_matrix_, [[1.0, 1.0], [0.0, 1.0]])
    np.testing.assert_array_equal(est.observation_matrix_, [[1.0, 0.0]])
    np.testing.assert_array_equal(est.initial_state_covariance_, np.diag([1e8, 1e4]))
    np.testing.assert_array_equal(est.transition_offset_, [0.0, 0.0])
    np.testing.assert_array_equal(est.observation_covariance_init, [[15000.0]])
    assert est.freeze == ("transition_matrix", "observation_matrix",
                          "initial_state_covariance")


@pytest.mark.parametrize(("options", "message"), [
    (["--init", "transition_matrix=1,0"], "--init transition_matrix: needs shape (1, 1)"),
    (["--init", "foo=1"], "--init: no field 'foo'; the fields are transition_matrix,"),
    (["--freeze", "bar"], "--freeze: no field 'bar'"),
    (["--init", "transition_matrix"], "write FIELD=VALUES"),
    (["--init", "transition_matrix=x"], "not a list of numbers"),
    (["--init", "transition_matrix=inf"], "values must be finite"),
    (["--init", "transition_matrix=1,2;3"], "the rows have different lengths"),
    (["--init", "transition_matrix=1", "--init", "transition_matrix=2"], "twice"),
    (["--init", "observation_covariance=-1"], "must be positive definite"),
    (["--init", "initial_state_mean=1;2"], "initial_state_mean is a vector"),
    (["--local-level", "--state-dim", "2"], "--local-level has a state of dimension 1"),
    (["--local-level", "--init", "observation_matrix=2"], "--local-level sets "
                                                          "observation_matrix"),
    (["--no-offsets", "--freeze", "transition_offset"], "--no-offsets switches the offsets "
                                                        "off; transition_offset"),
])
def test_ssm_options_refuse_bad_input(options, message, capsys):
    code, _, err = call(capsys, "fit", "ssm", NILE, "--columns", "volume", "-q", *options)
    assert code == 2, err
    assert message in err


def test_ssm_options_are_for_ssm_only(capsys):
    for option in (["--local-level"], ["--freeze", "transition_matrix"],
                   ["--init", "transition_matrix=1"], ["--no-offsets"]):
        code, _, err = call(capsys, "fit", "gmm", NILE, "--columns", "volume", *option)
        assert code == 2 and f"{option[0]} applies to ssm, not to gmm" in err


def test_noise_option_fits_a_background_component_and_predict_marks_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (150, 2)), rng.normal(8, 1, (150, 2)),
                   rng.uniform(-20, 30, (15, 2)), [[-60.0, 70.0]]])
    data = tmp_path / "noisy.csv"
    np.savetxt(data, X, delimiter=",", header="a,b", comments="")
    model = tmp_path / "t.npz"
    code, out, err = call(capsys, "fit", "tmix", data, "--noise", "--quiet", "--out", model)
    assert code == 0, err
    weight = float(out.split("noise_weight_ shape ():")[1].split()[0])
    assert 0.01 < weight < 0.2
    code, out, err = call(capsys, "predict", model, data)
    assert code == 0, err
    header, rows = read_csv(out)
    assert int(rows[-1][0]) == -1  # the far point is the background's
    assert len(header) == 1 + 2 + 1  # label, two components, the noise column
    code, out, err = call(capsys, "fit", "gaussian-hmm", data, "--noise", "--quiet")
    assert code == 2 and "--noise applies to gmm and tmix" in err
