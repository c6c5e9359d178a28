"""The ``emframe`` command line, run as users run it: the real console script in a subprocess.

A few in-process calls of ``emframe.interfaces.cli.parser`` cover the many bad-input cases
quickly; every
command also runs at least once as ``python -m emframe`` on the shipped data, and once through
the installed ``emframe`` entry point.
"""

import io
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import emframe.models
import numpy as np
import pytest
from cli_helpers import call, read_csv

import emframe
from emframe.datasets import path as data_path
from emframe.interfaces.cli import fit as cli_fit
from emframe.interfaces.cli import tables
from emframe.interfaces.cli.specs import InputError

FAITHFUL = str(data_path("old_faithful.csv"))
AIR = str(data_path("airquality.csv"))
QUAKES = str(data_path("earthquakes.csv"))
DIGITS = str(data_path("digits_binary.csv"))
COFFEE = str(data_path("coffee.png"))


def run(*args, cwd=None):
    """The real command, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "emframe", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def write(path, text):
    Path(path).write_text(text)
    return str(path)


# -- each command on the shipped data, as a subprocess ---------------------------------------
def test_fit_gmm_then_predict(tmp_path):
    model, plot = tmp_path / "faithful.npz", tmp_path / "faithful.png"
    r = run("fit", "gmm", FAITHFUL, "--components", "2", "--seed", "0", "--out", model,
            "--plot", plot)
    assert r.returncode == 0, r.stderr
    for key in ("log-likelihood", "iterations", "converged", "BIC", "means_", "weights_"):
        assert key in r.stdout
    # progress on stderr: iteration, log-likelihood, elapsed time
    progress = [ln for ln in r.stderr.splitlines() if "iter" in ln]
    assert progress and all("loglik" in ln and "elapsed" in ln for ln in progress)
    est = emframe.load(model)
    X = emframe.datasets.load_old_faithful()
    assert f"BIC             {est.bic(X):.6f}" in r.stdout
    assert f"iterations      {est.n_iter_} " in r.stdout
    # a short fit: one line, for the last iteration (not one per iteration)
    assert len(progress) == 1 and f"iter {est.n_iter_:4d}" in progress[0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    out = tmp_path / "pred.csv"
    r = run("predict", model, FAITHFUL, "--out", out)
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(out.read_text())
    assert header == ["label", "p0", "p1"]
    labels = np.array([int(r[0]) for r in rows])
    proba = np.array([[float(v) for v in r[1:]] for r in rows])
    np.testing.assert_array_equal(labels, est.predict(X))
    np.testing.assert_array_equal(proba, est.predict_proba(X))  # repr floats read back exactly


def test_predict_to_stdout_and_quiet(tmp_path):
    model = tmp_path / "digits.npz"
    r = run("fit", "bernoulli", DIGITS, "--columns", "1-64", "-k", "3", "--max-iter", "5",
            "--quiet", "--out", model)
    assert r.returncode == 0, r.stderr
    assert "restart" not in r.stderr  # --quiet: no progress lines
    r = run("predict", model, DIGITS)  # the model remembers its columns p0..p63
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(r.stdout)
    assert header == ["label", "p0", "p1", "p2"] and len(rows) == 1797


def test_impute_airquality(tmp_path):
    out = tmp_path / "filled.csv"
    r = run("impute", AIR, "--columns", "Ozone,Solar.R,Wind,Temp", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "imputed 44 missing cells in 42 rows (Ozone 37, Solar.R 7)" in r.stderr
    header, rows = read_csv(out.read_text())
    with open(AIR, newline="") as fh:
        orig_header, orig = read_csv(fh.read())
    assert header == orig_header and len(rows) == len(orig) == 153
    X, _ = emframe.datasets.load_airquality()
    est = emframe.models.MissingDataGaussian().fit(X[:, :4])
    expected = est.impute(X[:, :4])
    for i, (new, old) in enumerate(zip(rows, orig, strict=True)):
        for j, cell in enumerate(old):
            if cell.strip():
                assert new[j] == cell  # observed cells are copied unchanged
            else:
                assert float(new[j]) == pytest.approx(expected[i, j], rel=1e-9)
    assert all(c != "" for row in rows for c in row[:4])


def test_poisson_hmm_fit_then_decode(tmp_path):
    model = tmp_path / "quakes.npz"
    r = run("fit", "poisson-hmm", QUAKES, "--columns", "count", "-k", "2", "--out", model,
            "--plot", tmp_path / "q.png", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "lambdas_" in r.stdout and "transmat_" in r.stdout
    r = run("decode", model, QUAKES)
    assert r.returncode == 0, r.stderr
    header, rows = read_csv(r.stdout)
    assert header == ["state"] and len(rows) == 107
    est = emframe.load(model)
    counts = emframe.datasets.load_earthquakes()[1][:, None]
    logprob, states = est.decode(counts)
    np.testing.assert_array_equal([int(r[0]) for r in rows], states)
    assert f"log-probability {logprob:.6f}" in r.stderr


def test_select_gmm(tmp_path):
    best = tmp_path / "best.npz"
    r = run("select", "gmm", FAITHFUL, "--components", "1-3", "--quiet", "--out", best)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ["components", "log-likelihood", "parameters"]
    table = [ln.split() for ln in lines[1:4]]
    assert [int(t[0]) for t in table] == [1, 2, 3]
    bics = [float(t[3]) for t in table]
    starred = [int(t[0]) for t in table if t[-1] == "*"]
    assert starred == [1 + int(np.argmin(bics))]
    assert lines[4] == f"best by BIC: {starred[0]} components"
    est = emframe.load(best)
    assert est.n_components == starred[0]
    X = emframe.datasets.load_old_faithful()
    assert est.bic(X) == pytest.approx(min(bics), abs=1e-4)


def test_segment_coffee(tmp_path):
    import matplotlib.image as mpimg

    out = tmp_path / "seg.png"
    r = run("segment", COFFEE, "--components", "3", "--out", out, "--max-pixels", "3000",
            "--max-iter", "20", "--quiet", "--model-out", tmp_path / "seg.npz")
    assert r.returncode == 0, r.stderr
    src = mpimg.imread(COFFEE)
    seg = mpimg.imread(out)
    assert seg.shape[:2] == src.shape[:2]
    colours = np.unique(seg[:, :, :3].reshape(-1, 3), axis=0)
    means = np.clip(emframe.load(tmp_path / "seg.npz").means_, 0, 1)
    assert len(colours) == 3
    # every pixel is painted with its component's mean colour (to 8-bit precision)
    assert np.abs(colours[:, None, :] - means[None]).max(axis=2).min(axis=1).max() <= 0.5 / 255
    assert "component" in r.stdout and "% of pixels" in r.stdout


def test_installed_entry_point(tmp_path):
    exe = Path(sys.executable).parent / ("emframe.exe" if os.name == "nt" else "emframe")
    assert exe.exists(), f"the console script is not installed next to {sys.executable}"
    r = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"emframe {emframe.__version__}"
    bad = write(tmp_path / "bad.csv", "a,b\n1,2\n3,x\n")
    r = subprocess.run([str(exe), "fit", "gmm", bad], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert "bad.csv: row 2 (line 3), column 2 'b': 'x' is not a number" in r.stderr


def test_exit_status_of_the_process(tmp_path):
    r = run("fit", "nosuchmodel", FAITHFUL)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    r = run("fit", "gmm", tmp_path / "nothere.csv")
    assert r.returncode == 2 and "nothere.csv: no such file" in r.stderr
    # an output that cannot be written is bad input, found before the fit
    (tmp_path / "adir").mkdir()
    r = run("impute", AIR, "--quiet", "--out", tmp_path / "adir")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert f"cannot write {tmp_path / 'adir'}: it is a directory" in r.stderr


# -- bad input and usage, in-process ---------------------------------------------------------
def test_help_and_version(capsys):
    code, out, _ = call(capsys, "--help")
    assert code == 0 and "fit" in out and "segment" in out
    code, out, _ = call(capsys, "fit", "--help")
    assert code == 0 and "--covariance-type" in out and "mvn-missing" in out
    code, _, err = call(capsys)
    assert code == 2 and "required" in err


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a,b\n1,2\n3,abc\n", r"bad.csv: row 2 \(line 3\), column 2 'b': 'abc' is not a number"),
        ("a,b\n1,2\n\n3,4,5\n", r"bad.csv: row 2 \(line 4\) has 3 cells, but the header has 2"),
        ("a,b\n1,inf\n", r"row 1 \(line 2\), column 2 'b': infinite value"),
        ("", "the file is empty"),
        ("a,b\n", "no data rows"),
    ],
)
def test_bad_csv_names_file_row_and_column(capsys, tmp_path, text, match):
    bad = write(tmp_path / "bad.csv", text)
    code, out, err = call(capsys, "fit", "gmm", bad)
    assert code == 2 and out == ""
    assert err.startswith("emframe: error: ")
    assert __import__("re").search(match, err), err


def test_missing_values_rejected_or_dropped(capsys, tmp_path):
    data = write(tmp_path / "m.csv", "x,y\n1,2\n2,3\n,4\n8,9\n9,8\n8,8\n1,1\n")
    code, _, err = call(capsys, "fit", "gmm", data, "-k", "2")
    assert code == 2
    assert "m.csv: row 3 (line 4), column 1 'x': missing value, but gmm cannot handle" in err
    code, out, err = call(capsys, "fit", "gmm", data, "-k", "2", "--drop-missing", "-q")
    assert code == 0, err
    assert "6 rows" in out
    # too few rows left for the (default) components: bad input, not a failed fit
    few = write(tmp_path / "few.csv", "x,y\n1,2\n,3\n4,\n")
    for model in ("gmm", "tmix", "bernoulli"):
        code, _, err = call(capsys, "fit", model, few, "--drop-missing", "-q")
        assert code == 2, err
        assert "2 components are more than the 1 row of" in err
        assert "set a smaller --components" in err
    model = tmp_path / "gm.npz"
    code, out, err = call(capsys, "fit", "gmm-missing", AIR, "-c", "Ozone,Solar.R,Wind,Temp",
                          "-k", "2", "-q", "--out", model)
    assert code == 0, err
    assert "153 rows" in out
    code, out, err = call(capsys, "predict", model, AIR)  # rows with missing cells get labels
    assert code == 0, err
    X = emframe.datasets.load_airquality()[0][:, :4]
    labels = [int(r[0]) for r in read_csv(out)[1]]
    assert labels == emframe.load(model).predict(X).tolist()
    # the same saved mixture imputes; one without missing-data support says which can
    code, out, err = call(capsys, "impute", AIR, "--model", model)
    assert code == 0, err
    assert "imputed 44 missing cells" in err
    plain = tmp_path / "plain.npz"
    assert call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", plain)[0] == 0
    code, _, err = call(capsys, "impute", AIR, "--model", plain)
    assert code == 2
    assert "a GaussianMixture cannot impute; use a model saved by 'emframe fit' with " \
           "mvn-missing, gmm-missing, ssm or an HMM" in err


def test_missing_values_as_nan_text_and_npy(capsys, tmp_path):
    X = np.array([[1.0, 2.0], [2.0, np.nan], [3.0, 5.0], [4.0, 7.0], [np.nan, 1.0]])
    csv_path = write(tmp_path / "n.csv", "a,b\n1,2\n2,NaN\n3,5\n4,7\n,1\n")
    npy_path = tmp_path / "n.npy"
    np.save(npy_path, X)
    code1, out1, _ = call(capsys, "impute", csv_path, "-q")
    code2, out2, _ = call(capsys, "impute", npy_path, "-q")
    assert code1 == code2 == 0
    _, rows1 = read_csv(out1)
    header2, rows2 = read_csv(out2)
    assert header2 == ["1", "2"]
    np.testing.assert_allclose(np.array(rows1, dtype=float), np.array(rows2, dtype=float))
    assert rows1[0] == ["1", "2"] and rows2[0] == ["1.0", "2.0"]


def test_value_checks_per_model(capsys, tmp_path):
    data = write(tmp_path / "v.csv", "a,b\n0,1\n1,2\n1,0\n0,0\n")
    code, _, err = call(capsys, "fit", "bernoulli", data)
    assert code == 2 and "row 2 (line 3), column 2 'b': 2 is not 0 or 1" in err
    data = write(tmp_path / "c.csv", "a,b\n0,1\n1,2.5\n1,0\n0,0\n")
    code, _, err = call(capsys, "fit", "poisson-hmm", data)
    assert code == 2 and "column 2 'b': 2.5 is not a non-negative integer" in err
    code, _, err = call(capsys, "fit", "categorical-hmm", data)
    assert code == 2 and "one column of symbols" in err
    code, _, err = call(capsys, "fit", "mvn-missing", data, "--components", "2")
    assert code == 2 and "mvn-missing has no components" in err
    code, _, err = call(capsys, "fit", "gmm", data, "--lengths", "a")
    assert code == 2 and "--lengths applies to HMMs" in err
    code, _, err = call(capsys, "fit", "gmm", data, "--components", "9")
    assert code == 2 and "more than the 4 rows" in err
    code, _, err = call(capsys, "fit", "gmm", data, "-q", "--plot", tmp_path / "fit.txt")
    assert code == 2 and "--plot" in err and "matplotlib cannot write .txt files" in err
    assert not (tmp_path / "fit.txt").exists()


def test_columns_by_name_number_and_range(capsys, tmp_path):
    table = tables.read_table(AIR)
    assert tables.select_columns(table, ["Ozone,3"]) == [0, 2]
    assert tables.select_columns(table, ["Wind", "1-2"]) == [2, 0, 1]
    assert tables.select_columns(table, None) == list(range(6))
    with pytest.raises(InputError, match=r"no column 'Ozon'.*\['Ozone'"):
        tables.select_columns(table, ["Ozon"])
    with pytest.raises(InputError, match="names a column twice"):
        tables.select_columns(table, ["Ozone,1"])
    code, _, err = call(capsys, "impute", AIR, "--columns", "7")
    assert code == 2 and "no column '7'" in err


def test_lengths_from_a_column_or_a_file(tmp_path):
    table = tables.read_table(write(tmp_path / "s.csv", "id,x\n5,1\n5,2\n7,3\n5,4\n5,5\n5,6\n"))
    lengths, col, path = tables.read_lengths("id", table)
    assert lengths.tolist() == [2, 1, 3] and col == 0 and path is None
    data = tables.load_data(str(tmp_path / "s.csv"), None, "id")
    assert data.names == ["x"] and data.lengths.tolist() == [2, 1, 3]
    lfile = write(tmp_path / "len.txt", "length\n4\n2\n")
    lengths, col, path = tables.read_lengths(lfile, table)
    assert lengths.tolist() == [4, 2] and col is None and path == lfile
    with pytest.raises(InputError, match=r"sum to 5, but .*s.csv has 6 rows"):
        tables.read_lengths(write(tmp_path / "l2.txt", "3\n2\n"), table)
    with pytest.raises(InputError, match="positive integers"):
        tables.read_lengths(write(tmp_path / "l3.txt", "3\n2.5\n0.5\n"), table)
    with pytest.raises(InputError, match="neither a column"):
        tables.read_lengths("nope", table)
    with pytest.raises(InputError, match="holds the sequence ids"):
        tables.load_data(str(tmp_path / "s.csv"), ["id,x"], "id")


def test_drop_missing_shortens_sequences():
    table = tables.Table("t", ["x"], np.array([[1.0], [np.nan], [2.0], [np.nan], [3.0]]))
    data = tables.Data(table, [0], table.values, np.array([2, 1, 2]))
    out = tables.drop_missing_rows(data)
    assert out.X.ravel().tolist() == [1.0, 2.0, 3.0] and out.lengths.tolist() == [1, 1, 1]
    data = tables.Data(table, [0], table.values, np.array([1, 1, 3]))
    assert tables.drop_missing_rows(data).lengths.tolist() == [1, 2]


def test_hmm_lengths_column_on_the_command_line(capsys, tmp_path):
    counts = emframe.datasets.load_earthquakes()[1]
    ids = np.repeat([1, 2], [50, 57])
    lines = "\n".join(f"{i},{c}" for i, c in zip(ids, counts, strict=True))
    data = write(tmp_path / "q.csv", "seq,count\n" + lines + "\n")
    model = tmp_path / "q.npz"
    code, out, err = call(capsys, "fit", "poisson-hmm", data, "--lengths", "seq", "-q",
                          "--out", model)
    assert code == 0, err
    assert "2 sequences" in out
    est = emframe.load(model)
    assert est.n_features_in_ == 1
    # decode finds the sequence-id column again from the saved model
    code, out, err = call(capsys, "decode", model, data, "-q")
    assert code == 0, err
    header, rows = read_csv(out)
    assert header == ["sequence", "state"]
    _, states = est.decode(counts[:, None].astype(float), [50, 57])
    assert [int(r[1]) for r in rows] == states.tolist()
    assert [int(r[0]) for r in rows] == [0] * 50 + [1] * 57


def test_never_overwrites_an_input(capsys, tmp_path):
    data = tmp_path / "air.csv"
    data.write_bytes(Path(AIR).read_bytes())
    before = data.read_bytes()
    for out in (data, tmp_path / "." / "air.csv"):
        code, _, err = call(capsys, "impute", data, "--out", out, "-q")
        assert code == 2 and "refusing to overwrite the input file" in err
    link = tmp_path / "link.csv"
    os.link(data, link)
    code, _, err = call(capsys, "impute", data, "--out", link, "-q")
    assert code == 2 and "refusing to overwrite" in err
    assert data.read_bytes() == before
    model = tmp_path / "m.npz"
    assert call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", model, "--max-iter", "3")[0] == 0
    code, _, err = call(capsys, "predict", model, FAITHFUL, "--out", model)
    assert code == 2 and "refusing" in err
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", model, "--plot", model)
    assert code == 2 and "refusing" in err
    code, _, err = call(capsys, "segment", COFFEE, "--out", COFFEE)
    assert code == 2 and "refusing" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["air.csv", "link.csv", "m.npz"]


def test_failed_output_leaves_no_file(capsys, tmp_path):
    out = tmp_path / "m.npz"
    out.write_bytes(b"previous")
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", out, "--plot",
                        tmp_path / "plot.unknownformat", "--max-iter", "3")
    assert code == 2 and "emframe: error: --plot" in err  # a format matplotlib cannot write
    assert not (tmp_path / "plot.unknownformat").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # the model itself was saved
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--out", tmp_path / "no" / "m.npz")
    assert code == 2 and "does not exist" in err


def test_predict_and_decode_reject_wrong_models_and_data(capsys, tmp_path):
    gmm = tmp_path / "g.npz"
    mvn = tmp_path / "m.npz"
    assert call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", gmm, "--max-iter", "3")[0] == 0
    assert call(capsys, "fit", "mvn-missing", AIR, "-c", "Ozone,Wind", "-q", "--out", mvn)[0] == 0
    code, _, err = call(capsys, "decode", gmm, FAITHFUL)
    assert code == 2 and "is not an HMM" in err
    code, _, err = call(capsys, "predict", mvn, AIR)
    assert code == 2 and "no labels to predict" in err
    code, _, err = call(capsys, "predict", gmm, AIR)
    assert code == 2 and "fitted on 2" in err
    code, out, err = call(capsys, "predict", gmm, AIR, "--columns", "Wind,Temp")
    assert code == 0, err  # any two columns, when chosen explicitly
    junk = write(tmp_path / "junk.npz", "not a model")
    code, _, err = call(capsys, "predict", junk, FAITHFUL)
    assert code == 2 and "not an emframe model file" in err


def test_select_ranges_and_covariance_types(capsys):
    assert cli_fit.parse_range("1-3,6") == [1, 2, 3, 6]
    for bad in ("0-2", "3-1", "a", ""):
        with pytest.raises(Exception, match="component"):
            cli_fit.parse_range(bad)
    code, _, err = call(capsys, "select", "gmm", FAITHFUL, "-k", "x-2")
    assert code == 2 and "invalid component range" in err
    code, out, err = call(capsys, "select", "gmm", FAITHFUL, "-k", "1,2", "--covariance-type",
                          "full,spherical", "--criterion", "aic", "-q", "--max-iter", "20")
    assert code == 0, err
    rows = [ln.split() for ln in out.splitlines()[1:5]]
    assert [(r[0], r[1]) for r in rows] == [("1", "full"), ("2", "full"), ("1", "spherical"),
                                            ("2", "spherical")]
    assert sum(r[-1] == "*" for r in rows) == 1
    assert out.splitlines()[5].startswith("best by AIC:")
    code, _, err = call(capsys, "select", "gmm", FAITHFUL, "--covariance-type", "round")
    assert code == 2 and "invalid covariance type" in err


def test_warnings_are_one_line_messages(capsys):
    with warnings.catch_warnings():
        code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "-q", "--max-iter", "1", "-k", "3")
    assert code == 0
    assert "emframe: warning:" in err and "did not converge" in err


def test_segment_bad_image(capsys, tmp_path):
    bad = write(tmp_path / "x.png", "not an image")
    code, _, err = call(capsys, "segment", bad, "--out", tmp_path / "o.png")
    assert code == 2 and "x.png: not a readable PNG image" in err
    code, _, err = call(capsys, "segment", COFFEE, "--out", tmp_path / "o.jpg")
    assert code == 2 and "segment writes PNG" in err


def test_readme_main_job_command_runs(tmp_path):
    """The README's shell command (after the install step) works as written."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```(?:bash|sh|shell|text)\n(.*?)^```", readme, re.S | re.M)
    commands = [part.strip() for block in blocks for line in block.splitlines()
                for part in line.split("&&") if part.strip().startswith("emframe ")]
    assert commands, "README.md shows no emframe command"
    for command in commands:
        argv = shlex.split(command)[1:]
        r = run(*argv, cwd=tmp_path)
        assert r.returncode == 0, f"{command}\n{r.stderr}"
        if "--plot" in argv:
            plot = tmp_path / argv[argv.index("--plot") + 1]
            assert plot.read_bytes()[:4] == b"\x89PNG"


def test_example_names_resolve_to_shipped_data(capsys):
    assert tables.resolve_input("example:old_faithful") == FAITHFUL
    assert tables.resolve_input("example:coffee") == COFFEE
    assert tables.resolve_input("example:earthquakes.csv") == QUAKES
    assert tables.resolve_input("data.csv") == "data.csv"
    code, _, err = call(capsys, "fit", "gmm", "example:nope")
    assert code == 2 and "no shipped example data called 'nope'" in err
    assert "example:old_faithful" in err


def test_gaussian_and_categorical_hmms(capsys, tmp_path):
    X = emframe.datasets.load_old_faithful()
    lengths = write(tmp_path / "len.txt", "100\n172\n")
    model, plot = tmp_path / "g.npz", tmp_path / "g.png"
    code, out, err = call(capsys, "fit", "gaussian-hmm", FAITHFUL, "--lengths", lengths, "-k",
                          "2", "--covariance-type", "full", "--max-iter", "20", "-q",
                          "--out", model, "--plot", plot)
    assert code == 0, err
    assert "means_" in out and "covars_" in out and "2 sequences" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"
    est = emframe.load(model)
    assert est.covariance_type == "full"
    code, out, err = call(capsys, "decode", model, FAITHFUL, "--lengths", lengths,
                          "--algorithm", "map", "-q")
    assert code == 0, err
    _, rows = read_csv(out)
    _, states = est.decode(X, [100, 172], algorithm="map")
    assert [int(r[1]) for r in rows] == states.tolist()
    code, out, err = call(capsys, "predict", model, FAITHFUL, "--lengths", lengths)
    assert code == 0, err
    header, rows = read_csv(out)
    assert header == ["state", "p0", "p1"]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows], dtype=float),
                                  est.predict_proba(X, [100, 172]))

    symbols = np.minimum(emframe.datasets.load_earthquakes()[1] // 10, 3)
    data = write(tmp_path / "sym.csv", "symbol\n" + "\n".join(map(str, symbols)) + "\n")
    code, out, err = call(capsys, "fit", "categorical-hmm", data, "-k", "2", "-q")
    assert code == 0, err
    assert "emissionprob_ shape (2, 4)" in out


def test_fit_plots_of_each_model_kind(capsys, tmp_path):
    import matplotlib.image as mpimg

    cases = [
        ["fit", "bernoulli", DIGITS, "-c", "1-64", "-k", "4", "--max-iter", "5"],
        ["fit", "mvn-missing", AIR, "-c", "Ozone,Temp"],
        ["fit", "gmm", QUAKES, "-c", "count", "--max-iter", "10"],  # one column: the trace
    ]
    for i, args in enumerate(cases):
        plot = tmp_path / f"p{i}.png"
        code, _, err = call(capsys, *args, "-q", "--plot", plot)
        assert code == 0, err
        assert mpimg.imread(plot).ndim == 3


# -- issue 11: bounded resources, closed pipes, Ctrl-C, bad input, labels, progress ----------
def test_closed_stdout_keeps_the_model_file(tmp_path):
    """``emframe fit ... --out m.npz | head -1``: the reader closes stdout early."""
    model = tmp_path / "m.npz"
    p = subprocess.Popen([sys.executable, "-m", "emframe", "fit", "gmm", FAITHFUL, "-q",
                          "--out", model], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    p.stdout.close()  # before the command prints anything
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0, err
    assert err == ""
    assert emframe.load(model).n_components == 2
    # and through a real shell pipe
    r = subprocess.run(f"'{sys.executable}' -m emframe fit gmm '{FAITHFUL}' -q --out "
                       f"'{tmp_path / 'h.npz'}' | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.startswith("model ") and r.stderr == ""
    assert emframe.load(tmp_path / "h.npz").n_components == 2


def test_ctrl_c_during_an_hmm_fit_exits_130(tmp_path):
    import signal
    import time

    rng = np.random.default_rng(0)
    data = tmp_path / "long.npy"
    np.save(data, rng.normal(size=(150_000, 2)))
    # A shell starts background jobs with SIGINT ignored, and a child inherits that (then
    # Python installs no KeyboardInterrupt handler): restore the terminal's default, as
    # for a command typed at a prompt, or the test depends on how the suite was started.
    p = subprocess.Popen([sys.executable, "-m", "emframe", "fit", "gaussian-hmm", data, "-k", "8",
                          "--max-iter", "1000", "--tol", "0"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        first = p.stderr.readline()  # the first progress line: the fit is under way
        assert "iter" in first, first
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        p.kill()
    assert p.returncode == 130, err
    assert err.strip().endswith("emframe: interrupted") and "Traceback" not in err


def test_label_like_and_text_columns(capsys, tmp_path):
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (30, 2)), rng.normal(5, 1, (30, 2))]
    codes = np.repeat([0, 1], 30)
    lines = "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(X, codes, strict=True))
    data = write(tmp_path / "coded.csv", "length,width,species\n" + lines + "\n")
    code, _, err = call(capsys, "fit", "gmm", data, "-q")
    assert code == 0
    assert ("emframe: warning: " in err and "column 3 'species' looks like a class label"
            in err and "--columns 1-2" in err)
    code, _, err = call(capsys, "fit", "gmm", data, "-q", "--columns", "1-2")
    assert code == 0 and "warning" not in err
    names = np.where(codes == 0, "setosa", "virginica")
    lines = "\n".join(f"{a:.4f},{b:.4f},{c}" for (a, b), c in zip(X, names, strict=True))
    data = write(tmp_path / "named.csv", "length,width,species\n" + lines + "\n")
    code, _, err = call(capsys, "fit", "gmm", data, "-q")
    assert code == 2
    assert ("named.csv: column 3 'species' holds text ('setosa'), not numbers; choose the "
            "numeric columns with --columns 1-2") in err
    code, out, err = call(capsys, "fit", "gmm", data, "-q", "--columns", "length,width")
    assert code == 0, err  # an unused text column is no obstacle
    code, out, err = call(capsys, "impute", data, "-q", "--columns", "1-2")
    assert code == 0 and out.splitlines()[1].endswith(",setosa")  # passed through as text


def test_bad_inputs_exit_2_naming_the_file(capsys, tmp_path):
    big = write(tmp_path / "big.csv", "a,b\n1," + "9" * 200_000 + "\n")
    code, _, err = call(capsys, "fit", "gmm", big)
    assert code == 2 and "big.csv: line 2: not a readable CSV table" in err
    series = write(tmp_path / "s.csv", "x\n" + "\n".join(map(str, range(10))) + "\n")
    latin = tmp_path / "len.txt"
    latin.write_bytes("longueur\u00e9\n5\n5\n".encode("latin-1"))
    code, _, err = call(capsys, "fit", "gaussian-hmm", series, "--lengths", latin)
    assert code == 2 and "len.txt: not a UTF-8 text file of sequence lengths" in err
    wraps = write(tmp_path / "wrap.txt", f"{2**62}\n{2**62}\n{2**62}\n{2**62 + 10}\n")
    code, _, err = call(capsys, "fit", "gaussian-hmm", series, "--lengths", wraps)
    assert code == 2 and "wrap.txt: sequence length 4611686018427387904 (number 1) is more " \
                         "than the 10 rows" in err
    holes = write(tmp_path / "holes.csv", "a,b,c\n1,,3\n2,,1\n3,,4\n5,,2\n")
    for cmd in (["fit", "gmm-missing", holes], ["impute", holes], ["fit", "mvn-missing", holes]):
        code, _, err = call(capsys, *cmd, "-q")
        assert code == 2, cmd
        assert "holes.csv: column 2 'b' has no observed values; leave it out with --columns " \
               "1,3" in err
    code, _, err = call(capsys, "segment", COFFEE, "--out", tmp_path / "o.png", "--max-pixels",
                        "-5")
    assert code == 2 and "--max-pixels: must be a non-negative integer, got -5" in err
    code, _, err = call(capsys, "segment", COFFEE, "--out", tmp_path / "o.png", "--max-pixels",
                        "50", "--components", "60")
    assert code == 2 and "--components 60 is more than the 50 pixels sampled" in err
    symbols = write(tmp_path / "sym.csv", "s\n0\n1\n3000000000\n2\n")
    code, _, err = call(capsys, "fit", "categorical-hmm", symbols, "-q")
    assert code == 2
    assert ("sym.csv: row 3 (line 4), column 1 's': symbol 3000000000 makes an alphabet of "
            "3000000001 symbols") in err and "budget of 134217728 (1 GiB)" in err


def test_unwritable_output_names_the_target(capsys, tmp_path, monkeypatch):
    import tempfile

    from emframe.core import serialization

    def refuse(*args, dir=None, **kwargs):
        name = os.path.join(dir or ".", ".out.npz.x1y2.tmp")
        raise PermissionError(13, "Permission denied", name)

    target = tmp_path / "out.npz"
    with monkeypatch.context() as m:
        m.setattr(tempfile, "mkstemp", refuse)
        code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", target)
        assert code == 2 and f"cannot write {target}: Permission denied" in err
        assert ".tmp" not in err
        with pytest.raises(PermissionError, match=r"cannot write '.*out.npz': Permission den"
                           ) as info:
            with serialization.atomic_write(target):
                pass
        assert ".tmp" not in str(info.value)
    if not os.access("/sys", os.W_OK) or _mkstemp_fails("/sys"):
        code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "-q", "--out", "/sys/m.npz")
        assert code == 2 and "cannot write /sys/m.npz" in err and ".tmp" not in err


def _mkstemp_fails(directory):
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir=directory)
    except OSError:
        return True
    os.close(fd)
    os.unlink(name)
    return False


def test_select_uses_several_starts_and_warns_on_worse_nested_fits(capsys):
    code, out, err = call(capsys, "select", "gmm", FAITHFUL, "-k", "1-4", "--covariance-type",
                          "tied", "--n-init", "1", "-q")
    assert code == 0
    assert re.search(r"emframe: warning: the tied model with 3 components fits worse "
                     r"\(log-likelihood -1140\.54\d*\) than the one with 2 \(-1140\.18\d*\)",
                     err) and "--n-init, now 1" in err
    code, out, err = call(capsys, "select", "gmm", FAITHFUL, "-k", "1-4", "--covariance-type",
                          "tied", "-q")
    assert code == 0 and "warning" not in err
    assert "n_init=5" in out  # the default: several starts per fit
    lls = [float(ln.split()[2]) for ln in out.splitlines()[1:5]]
    assert lls == sorted(lls)


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _info(init, iteration, ll):
    from emframe.core.results import IterationInfo

    return IterationInfo(init, iteration, ll, float("nan") if iteration == 1 else 1e-3,
                         None, 0.0)


def test_progress_lines_bar_and_quiet(monkeypatch):
    from emframe.interfaces.cli.running import Progress

    def feed(progress):
        with progress:
            for init in range(2):
                for it in range(1, 21):
                    progress(_info(init, it, -100.0 + it))
        return progress.stream.getvalue()

    # not a terminal: one line per restart (its last iteration) for a short fit
    text = feed(Progress(False, io.StringIO()))
    assert [ln.split()[:4] for ln in text.splitlines()] == [
        ["restart", "1", "iter", "20"], ["restart", "2", "iter", "20"]]
    # a line at most every `interval` seconds while a restart runs
    assert len(feed(Progress(False, io.StringIO(), interval=0)).splitlines()) == 40
    assert feed(Progress(True, io.StringIO(), interval=0)) == ""
    # a terminal: a live bar (tqdm), one per restart
    text = feed(Progress(False, _Terminal()))
    assert "\r" in text and "restart 1" in text and "restart 2" in text and "iter" in text
    assert "loglik" in text and "20/20" in text
    # without tqdm: plain lines on a terminal too
    monkeypatch.setitem(sys.modules, "tqdm", None)
    text = feed(Progress(False, _Terminal()))
    assert "\r" not in text and len(text.splitlines()) == 2


def test_progress_bar_in_a_real_fit(capsys):
    from emframe.interfaces.cli.running import Progress, fit_estimator

    stream = _Terminal()
    est = emframe.models.GaussianMixture(2, random_state=0, n_init=2)
    fit_estimator(est, None, emframe.datasets.load_old_faithful(), Progress(False, stream))
    text = stream.getvalue()
    assert "restart 1/2" in text and "restart 2/2" in text and "loglik" in text


def test_warnings_print_above_the_progress_bar(capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--max-iter", "1", "-k", "3")
    assert code == 0
    assert "\r" in err and "restart 1" in err  # the bar
    lines = [seg for ln in err.split("\n") for seg in ln.split("\r")]
    assert any(seg.startswith("emframe: warning:") and "did not converge" in seg
               for seg in lines)
