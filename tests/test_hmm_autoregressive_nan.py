"""AutoRegressiveHMM refuses NaN with a message naming the estimators that take NaN as
missing (it said only "remove or impute missing values first"), and those it names do."""

from __future__ import annotations

import re
import warnings

import emframe.models as models
import numpy as np
import pytest
from emframe.models import AutoRegressiveHMM

from emframe.exceptions import ConvergenceWarning

rng = np.random.default_rng(0)
X = np.cumsum(rng.normal(size=(60, 2)), axis=0)
X_nan = X.copy()
X_nan[7, 1] = np.nan
MESSAGE = (r"AutoRegressiveHMM does not accept missing values, but X contains NaN \(first at "
           r"row 7, column 1\): a missing row would also be a lag of the next 2 step\(s\)\. "
           r"Impute or drop them first, or use an estimator that takes NaN as missing: ")


def _named(message):
    return re.findall(r"\b([A-Z][A-Za-z]+(?:HMM|SSM|Mixture))\b", message.split("missing: ")[1])


@pytest.mark.parametrize("method", ["fit", "score", "predict"])
def test_nan_is_refused_with_the_estimators_that_accept_it(method):
    est = AutoRegressiveHMM(2, order=2, random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if method != "fit":
            est.fit(X)
        with pytest.raises(ValueError, match=MESSAGE) as info:
            getattr(est, method)(X_nan)
    assert len(_named(str(info.value))) >= 4


def test_the_estimators_named_do_accept_nan():
    with pytest.raises(ValueError) as info:
        AutoRegressiveHMM(2, order=2).fit(X_nan)
    for name in _named(str(info.value)):
        data = X_nan
        if name == "PoissonHMM":
            data = np.where(np.isnan(X_nan), np.nan, np.abs(np.round(X_nan)))
        elif name == "CategoricalHMM":
            data = np.where(np.isnan(X_nan), np.nan, X_nan > 0)[:, 1:]
        est = getattr(models, name)(**({"n_dim_state": 1} if name.endswith("SSM") else {}),
                                    max_iter=3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(data)
        assert np.isfinite(est.score(data)), name


def test_inf_is_still_refused_as_such():
    bad = X.copy()
    bad[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"X contains inf \(first at row 3, column 0"):
        AutoRegressiveHMM(2).fit(bad)
