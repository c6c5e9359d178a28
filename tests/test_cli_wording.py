"""The command line's wording: singular and plural, and select on models without components."""

from __future__ import annotations

from cli_helpers import call

from emframe.datasets import path as data_path
from emframe.interfaces.cli.specs import plural

FAITHFUL = str(data_path("old_faithful.csv"))
AIR = str(data_path("airquality.csv"))


def test_plural():
    assert plural(1, "column") == "1 column"
    assert plural(2, "column") == "2 columns"
    assert plural(0, "row") == "0 rows"
    assert plural(1, "index", "indices") == "1 index" and plural(3, "index", "indices") == (
        "3 indices")


def test_select_one_component_is_singular(capsys):
    code, out, _ = call(capsys, "select", "gmm", FAITHFUL, "-k", "1", "--quiet")
    assert code == 0
    assert "best by BIC: 1 component\n" in out


def test_one_column_chosen_is_singular(capsys, tmp_path):
    model = tmp_path / "gm.npz"
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--quiet", "--out", model)
    assert code == 0, err
    code, _, err = call(capsys, "predict", model, FAITHFUL, "-c", "1")
    assert code == 2 and "1 column chosen" in err and "1 columns" not in err


def test_components_more_than_one_row_is_singular(capsys, tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("a,b\n1.0,2.0\n")
    code, _, err = call(capsys, "fit", "gaussian-hmm", one, "--components", "2", "--quiet")
    assert code == 2 and "the 1 row of" in err


def test_select_on_models_without_components_says_why(capsys):
    code, _, err = call(capsys, "select", "ssm", AIR, "-c", "Ozone")
    assert code == 2
    assert "ssm has a state dimension" in err and "--state-dim" in err
    code, _, err = call(capsys, "select", "mvn-missing", AIR)
    assert code == 2 and "has no components to select" in err
