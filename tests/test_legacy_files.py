"""Model files written by emframe 0.1.0, before the modules moved into subpackages, still load."""

import json
from pathlib import Path

import numpy as np
import pytest

import emframe

HERE = Path(__file__).parent / "data" / "legacy_models"
CLASSES = json.loads((HERE / "classes.json").read_text())


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_legacy_file_loads_and_scores_as_saved(name):
    est = emframe.load(HERE / f"{name}.npz")
    assert type(est).__name__ == CLASSES[name]
    assert type(est).__module__.startswith("emframe.models.")
    with np.load(HERE / f"{name}.expected.npz") as expected:
        X, value = expected["X"], expected["value"]
    got = est.score_samples(X)
    got = got[0] if isinstance(got, tuple) else got
    np.testing.assert_allclose(got, value, rtol=1e-12, atol=0)
    # the parameters are the current release's classes, not stand-ins
    assert type(est.params_).__module__.startswith("emframe.models.")


def test_legacy_files_name_the_old_flat_modules():
    # guards the point of this test data: these files predate the layout change
    modules = set()
    for name in CLASSES:
        with np.load(HERE / f"{name}.npz", allow_pickle=False) as npz:
            modules.add(json.loads(npz["__emframe__"].tobytes())["module"])
    assert modules == {
        "emframe.models.gaussian_mixture",
        "emframe.models.bernoulli_mixture",
        "emframe.models.hmm_estimators",
        "emframe.models.missing_gaussian",
        "emframe.models.gaussian_mixture_missing",
    }
