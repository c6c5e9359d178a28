"""Valid uses a newcomer from scikit-learn, hmmlearn or pykalman tries first."""

from __future__ import annotations

import numpy as np
import pytest
from emframe.models import (
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussian,
    StudentTMixture,
)

from emframe.datasets import load_old_faithful


def _nullable_frame():
    pd = pytest.importorskip("pandas")
    values = np.array([[41.0, 190.0, 7.4], [36.0, np.nan, 8.0], [np.nan, 149.0, 12.6],
                       [18.0, 313.0, 11.5], [28.0, 99.0, 14.3], [23.0, 299.0, 8.6]])
    frame = pd.DataFrame(values, columns=["ozone", "solar", "wind"])
    # pandas' nullable dtypes (read_csv(dtype_backend="numpy_nullable"), convert_dtypes())
    # mark missing cells with pd.NA instead of NaN
    return frame.convert_dtypes(), values


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("make", [
    lambda: MissingDataGaussian(),
    lambda: GaussianHMM(2, random_state=0, max_iter=3),
    lambda: LinearGaussianSSM(1, random_state=0, max_iter=3),
])
def test_pandas_nullable_missing_cells_are_nan(make):
    frame, values = _nullable_frame()
    assert str(frame.dtypes.iloc[0]) in ("Int64", "Float64")
    est = make()
    # an estimator that takes missing values reads pd.NA as missing, as it reads NaN
    assert est.fit(frame).score(frame) == make().fit(values).score(values)


def test_cli_smooth_on_an_hmm_points_to_predict(tmp_path, capsys):
    from cli_helpers import call

    model = tmp_path / "quakes.npz"
    code, _, _ = call(capsys, "fit", "poisson-hmm", "example:earthquakes", "--columns", "count",
                      "-k", "2", "--max-iter", "3", "--quiet", "--out", model)
    assert code == 0
    code, _, err = call(capsys, "smooth", model, "example:earthquakes", "--columns", "count")
    assert code == 2
    # an HMM has hidden states: the message must not deny it, and must name the command
    # that gives their posterior probabilities
    assert "no hidden states" not in err
    assert "emframe predict" in err and "fit ssm" in err


def test_verbose_prints_no_nan_change_at_the_first_iteration(capsys):
    GaussianMixture(2, random_state=0, max_iter=3, verbose=1).fit(load_old_faithful())
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) >= 2 and "iter    1" in lines[0]
    # the first iteration has no previous log-likelihood to differ from
    assert "nan" not in lines[0]
    assert "change/sample" in lines[1]


def test_outlier_scores_on_a_dask_array_are_lazy():
    da = pytest.importorskip("dask.array")
    X = load_old_faithful()
    est = StudentTMixture(2, random_state=0).fit(X)
    # like predict and score_samples, a Dask array in gives a Dask array out, by partition
    lazy = est.outlier_scores(da.from_array(X, chunks=(100, -1)))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), est.outlier_scores(X))
