"""An estimator's ValueError or TypeError on the command line (a value it refuses) is a
usage error: exit status 2 and one line naming the estimator, no traceback; any other
failure keeps status 1. Before, such a ValueError exited 1 as "error: ValueError: ..."."""

from __future__ import annotations

import subprocess
import sys

import pytest
from cli_helpers import call
from emframe.models import GaussianMixture

from emframe.datasets import path as data_path

FAITHFUL = str(data_path("old_faithful.csv"))


def test_an_initial_value_the_fit_refuses_exits_2_in_one_line():
    # a subprocess: the run warns (overflow) on its way, which the test suite makes errors
    r = subprocess.run([sys.executable, "-m", "emframe", "fit", "ssm", FAITHFUL, "--columns",
                        "eruptions", "--init", "transition_matrix=1e300", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == ""
    err = r.stderr
    last = err.strip().splitlines()[-1]
    assert last == "emframe: error: LinearGaussianSSM: transition_covariance has non-finite entries"
    assert "Traceback" not in err


@pytest.mark.parametrize("exc", [ValueError, TypeError])
def test_a_refusal_during_fit_exits_2_with_the_message_on_one_line(capsys, monkeypatch, exc):
    def refuse(self, *args, **kwargs):
        raise exc("n_init is too large:\n  use fewer restarts")

    monkeypatch.setattr(GaussianMixture, "fit", refuse)
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--quiet")
    assert code == 2
    assert err == ("emframe: error: GaussianMixture: n_init is too large: use fewer "
                   "restarts\n")


def test_other_failures_keep_status_1(capsys, monkeypatch):
    def fail(self, *args, **kwargs):
        raise RuntimeError("the fit failed numerically")

    monkeypatch.setattr(GaussianMixture, "fit", fail)
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--quiet")
    assert code == 1 and "RuntimeError: the fit failed numerically" in err


def test_debug_shows_the_estimators_own_error(capsys, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise ValueError("refused")

    monkeypatch.setattr(GaussianMixture, "fit", refuse)
    monkeypatch.setenv("EMFRAME_DEBUG", "1")
    with pytest.raises(ValueError, match="^refused$"):
        call(capsys, "fit", "gmm", FAITHFUL, "--quiet")


def test_a_refusal_at_construction_exits_2(capsys, monkeypatch):
    original = GaussianMixture.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise ValueError("covariance_type 'full' refused here")

    monkeypatch.setattr(GaussianMixture, "__init__", init)
    code, _, err = call(capsys, "fit", "gmm", FAITHFUL, "--quiet")
    assert code == 2
    assert err == "emframe: error: GaussianMixture: covariance_type 'full' refused here\n"
