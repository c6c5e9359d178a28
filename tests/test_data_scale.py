"""A reg_covar prior that dominates the data's variances draws a DataScaleWarning."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from emframe.models import (
    GMMHMM,
    AutoRegressiveHMM,
    GaussianHMM,
    GaussianMixture,
    MissingDataGaussianMixture,
    StudentTMixture,
)
from emframe.models.mixtures.gaussian import GaussianMixtureModel

from emframe import fit_em
from emframe.datasets import load_old_faithful
from emframe.exceptions import DataScaleWarning
from emframe.inference.gaussian.prior import prior_scale_warnings

ESTIMATORS = [
    lambda **kw: GaussianMixture(2, random_state=0, **kw),
    lambda **kw: GaussianMixture(2, covariance_type="spherical", random_state=0, **kw),
    lambda **kw: MissingDataGaussianMixture(2, random_state=0, **kw),
    lambda **kw: StudentTMixture(2, random_state=0, **kw),
    lambda **kw: GaussianHMM(2, random_state=0, **kw),
    lambda **kw: GMMHMM(2, 2, random_state=0, **kw),
    lambda **kw: AutoRegressiveHMM(2, order=2, random_state=0, **kw),
]


@pytest.fixture(scope="module")
def z():
    X = load_old_faithful()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    X[:, 1] *= 2.0  # feature 0 has the smaller variance
    return X


def _scale_warnings(est, X):
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        est.fit(X)
    return [w for w in rec if issubclass(w.category, DataScaleWarning)]


@pytest.mark.parametrize("make", ESTIMATORS)
def test_small_scale_warns_once_naming_estimator_feature_and_fix(make, z):
    est = make()
    (w,) = _scale_warnings(est, z * 1e-3)
    msg = str(w.message)
    assert msg.startswith(f"{type(est).__name__}: reg_covar=1e-06 is not small")
    assert "variance of feature 0, " in msg  # 1e-06 (the AR rows drop the first lags)
    assert "Rescale the data" in msg and "lower reg_covar" in msg
    assert w.filename == __file__  # the user's line, not emframe's


@pytest.mark.parametrize("make", ESTIMATORS)
def test_no_warning_at_unit_scale_or_with_a_matching_reg_covar(make, z):
    assert not _scale_warnings(make(), z)
    assert not _scale_warnings(make(reg_covar=1e-12), z * 1e-3)


def test_the_warning_is_about_the_merge_it_explains():
    # standardised Old Faithful x 1e-3: one component is left, as the warning says
    X = load_old_faithful()
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    with pytest.warns(DataScaleWarning):
        gm = GaussianMixture(2, random_state=0).fit(X * 1e-3)
    assert np.min(gm.weights_) < 1e-6


def test_criterion_constant_features_and_missing_values():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3))
    X[:, 2] = 7.3  # constant: reg_covar is what keeps it definite, no warning
    assert 0 < np.var(X[:, 2]) < 1e-28  # (up to rounding)
    assert prior_scale_warnings(1e-6, X) == []
    X[:, 1] *= 1e-2  # variance 1e-4: reg_covar is 1% of it, not more
    assert prior_scale_warnings(0.99e-6, X) == []
    (w,) = prior_scale_warnings(1.01e-6 * np.var(X[:, 1]) / 1e-4, X)
    assert "feature 1," in str(w) and "other feature" not in str(w)
    X[:, 0] *= 1e-3
    X[:, 1] *= 0.5
    X[::3, 0] = np.nan  # missing entries are left out of the variance
    X[:, 2] = np.nan  # a column with nothing observed is skipped
    (w,) = prior_scale_warnings(1e-6, X)
    assert "feature 0," in str(w) and "(and 1 other feature of variance below 0.0001)" in str(w)
    assert prior_scale_warnings(0.0, X) == []


def test_fit_em_on_a_model_without_prior_size_does_not_warn(z):
    # lambda = reg_covar then adds reg_covar / N_k, which the data outweigh
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataScaleWarning)
        fit_em(GaussianMixtureModel(2), z * 1e-3, random_state=0)
    with pytest.warns(DataScaleWarning, match="^GaussianMixtureModel: reg_covar"):
        fit_em(GaussianMixtureModel(2, prior_size=272), z * 1e-3, random_state=0)
