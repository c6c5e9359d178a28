"""The command line with the HMM extensions: gaps in gaussian-hmm/poisson-hmm data, ar-hmm."""

import csv
import io

import numpy as np
from cli_helpers import call
from emframe.models import AutoRegressiveHMM, GaussianHMM

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
