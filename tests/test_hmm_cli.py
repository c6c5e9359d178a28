"""The command line with the HMM extensions: gaps in gaussian-hmm/poisson-hmm data, ar-hmm,
multinomial-hmm."""

import csv
import io

import numpy as np
from cli_helpers import call
from emframe.models import AutoRegressiveHMM, GaussianHMM, MultinomialHMM

import emframe
from emframe.datasets import path as data_path

AIR = str(data_path("airquality.csv"))
COLUMNS = "Ozone,Solar.R,Wind,Temp"


def test_gaussian_hmm_fits_data_with_gaps(capsys, tmp_path):
    model = tmp_path / "air.npz"
    code, out, err = call(capsys, "fit", "gaussian-hmm", AIR, "-c", COLUMNS, "-k", "2",
                          "--seed", "0", "-q", "--out", model)
    assert code == 0, err
    est = emframe.load(model)
    X = emframe.datasets.load_airquality()[0][:, :4]
    assert isinstance(est, GaussianHMM) and np.isnan(X).any()
    np.testing.assert_allclose(est.score(X), float(out.split("log-likelihood")[1].split()[0]),
                               rtol=1e-9)
    code, out, err = call(capsys, "decode", model, AIR, "-c", COLUMNS)
    assert code == 0, err
    rows = list(csv.reader(io.StringIO(out)))
    assert len(rows) == 1 + 153  # every day, the incomplete ones too


def test_poisson_hmm_fits_counts_with_gaps(capsys, tmp_path):
    data = tmp_path / "counts.csv"
    data.write_text("a,b\n" + "\n".join(["1,4", ",5", "2,", "0,3", "7,1", "6,", "5,0"] * 4))
    code, out, err = call(capsys, "fit", "poisson-hmm", data, "-k", "2", "-q")
    assert code == 0, err
    data.write_text("a,b\n1,4\n,5\n-2,3\n")
    code, out, err = call(capsys, "fit", "poisson-hmm", data, "-k", "2", "-q")
    assert code == 2 and "-2 is not a non-negative integer" in err


def test_ar_hmm(capsys, tmp_path):
    model = tmp_path / "ar.npz"
    code, out, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Wind,Temp", "-k", "2",
                          "--seed", "0", "-q", "--out", model)
    assert code == 0, err
    assert "coefs_ shape (2, 1, 2, 2)" in out
    est = emframe.load(model)
    assert isinstance(est, AutoRegressiveHMM) and est.order == 1
    code, out, err = call(capsys, "fit", "ar-hmm", AIR, "-c", "Ozone,Temp", "-q")
    assert code == 2 and "missing value, but ar-hmm cannot handle missing values" in err


def test_multinomial_hmm(capsys, tmp_path):
    data = tmp_path / "votes.csv"
    rows = ["3,1,0", "2,2,1", "0,1,4", "1,0,5", "4,0,0", "0,2,3", "5,1,0"] * 5
    data.write_text("a,b,c\n" + "\n".join(rows))
    model = tmp_path / "votes.npz"
    code, out, err = call(capsys, "fit", "multinomial-hmm", data, "-k", "2", "--seed", "0",
                          "-q", "--out", model)
    assert code == 0, err
    est = emframe.load(model)
    X = np.array([[int(v) for v in r.split(",")] for r in rows])
    assert isinstance(est, MultinomialHMM) and est.emissionprob_.shape == (2, 3)
    np.testing.assert_allclose(est.score(X), float(out.split("log-likelihood")[1].split()[0]),
                               rtol=1e-9)
    code, out, err = call(capsys, "decode", model, data)
    assert code == 0, err
    assert len(list(csv.reader(io.StringIO(out)))) == 1 + len(rows)
    data.write_text("a,b,c\n1,2,0\n1,-1,3\n")
    code, out, err = call(capsys, "fit", "multinomial-hmm", data, "-q")
    assert code == 2 and "-1 is not a non-negative integer" in err
