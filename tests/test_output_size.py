"""A sample or forecast too large to hold is refused at once, with a message naming the
size needed, the limit and what to do, before anything is drawn (it was a raw numpy
MemoryError from sample(10**12), and minutes of work from forecast with a huge horizon)."""

import warnings

import numpy as np
import pytest
from emframe.models import (
    GMMHMM,
    AutoRegressiveHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussianMixture,
    PoissonHMM,
    StudentTMixture,
)
from emframe.models.ssm import estimator as ssm_estimator

from emframe.core.validation import MAX_OUTPUT_BYTES, check_output_size
from emframe.exceptions import ConvergenceWarning

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 2))
FITTED = {
    "GaussianMixture": (GaussianMixture(2), X),
    "GaussianMixture-noise": (GaussianMixture(2, noise=True), X),
    "StudentTMixture-noise": (StudentTMixture(2, noise=True), X),
    "StudentTMixture": (StudentTMixture(2), X),
    "MissingDataGaussianMixture": (MissingDataGaussianMixture(2), X),
    "BernoulliMixture": (BernoulliMixture(2), (X > 0).astype(float)),
    "GaussianHMM": (GaussianHMM(2), X),
    "GMMHMM": (GMMHMM(2, 2), X),
    "PoissonHMM": (PoissonHMM(2), rng.poisson(3.0, (40, 2))),
    "CategoricalHMM": (CategoricalHMM(2), rng.integers(0, 3, (40, 1))),
    "AutoRegressiveHMM": (AutoRegressiveHMM(2, order=1), X),
    "LinearGaussianSSM": (LinearGaussianSSM(1), X),
}


def _fitted(name):
    est, data = FITTED[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.set_params(random_state=0, max_iter=3).fit(data)


@pytest.mark.parametrize("name", list(FITTED))
def test_sample_of_a_huge_size_is_a_clear_value_error(name):
    est = _fitted(name)
    arg = "n_steps" if name == "LinearGaussianSSM" else "n_samples"
    with pytest.raises(ValueError, match=rf"{arg}=1000000000000 is too large: .* GiB, "
                                         r"more than the limit of 16 GiB .*; .*(fewer|shorter)"):
        est.sample(10**12)
    X_small = est.sample(5, random_state=1)[0]  # a sane size still works
    assert len(X_small) == 5


def test_forecast_of_a_huge_horizon_is_refused_before_filtering(monkeypatch):
    est = _fitted("LinearGaussianSSM")

    def never(*args, **kwargs):
        raise AssertionError("the filter ran before the size was checked")

    monkeypatch.setattr(ssm_estimator, "kalman_filter", never)
    with pytest.raises(ValueError, match=r"n_steps=10000000000 is too large: the forecast "
                                         r"means and covariances of 3 sequence\(s\).*shorter"):
        est.forecast(X, 10**10, lengths=[10, 10, 20])


def test_forecast_at_a_sane_horizon_still_works():
    means, covs = _fitted("LinearGaussianSSM").forecast(X, 3)
    assert means.shape == (3, 2) and covs.shape == (3, 2, 2)


def test_output_size_limit_is_inclusive_and_names_the_largest_size():
    check_output_size(MAX_OUTPUT_BYTES // 24, "n", 24, what="w", fix="f")
    with pytest.raises(ValueError, match=rf"n <= {MAX_OUTPUT_BYTES // 24} here\); f$"):
        check_output_size(MAX_OUTPUT_BYTES // 24 + 1, "n", 24, what="w", fix="f")


@pytest.mark.parametrize("est", [MissingDataGaussianMixture(2), GaussianHMM(2)],
                         ids=lambda e: type(e).__name__)
def test_sample_imputations_of_a_huge_count_is_refused_before_drawing(est):
    Xm = X.copy()
    Xm[::5, 0] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.set_params(random_state=0, max_iter=3).fit(Xm)
    with pytest.raises(ValueError, match=r"n_imputations=100000000000 is too large: "
                                         r"100000000000 completed copies of the 40 x 2 data "
                                         r"would take .* GiB.*; draw fewer at a time"):
        est.sample_imputations(Xm, n_imputations=10**11)
    assert est.sample_imputations(Xm, n_imputations=2, random_state=0).shape == (2, 40, 2)
