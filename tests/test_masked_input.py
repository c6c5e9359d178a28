"""numpy masked arrays: masked entries are missing values, never data.

pykalman's users mark missing observations with ``np.ma.masked`` and keep
arbitrary numbers under the mask; ``np.asarray`` silently drops the mask, so
without this rule those numbers would be fitted as if observed.
"""

import warnings

import numpy as np
import pytest
from emframe.models import (
    AutoRegressiveHMM,
    BernoulliMixture,
    CategoricalHMM,
    GaussianHMM,
    GaussianMixture,
    LinearGaussianSSM,
    MissingDataGaussian,
    MissingDataGaussianMixture,
    PoissonHMM,
    StudentTMixture,
)

rng = np.random.default_rng(0)
REAL = np.vstack([rng.normal(0, 1, (40, 2)), rng.normal(4, 1, (40, 2))])
MASK = np.zeros(REAL.shape, bool)
MASK[[3, 10, 50], 0] = True
MASK[20, :] = True


def _masked(X):
    """X masked at MASK, with junk (not NaN) under the mask, as pykalman users write it."""
    data = np.array(X, copy=True)
    data[MASK] = 1e3
    return np.ma.masked_array(data, mask=MASK)


def _nan(X):
    out = np.array(X, dtype=float, copy=True)
    out[MASK] = np.nan
    return out


COUNTS = rng.poisson(3.0, REAL.shape).astype(float)
BINARY = (REAL > 2).astype(float)
SYMBOLS = rng.integers(0, 3, (REAL.shape[0], 1))
SYMBOL_MASK = MASK[:, :1]

WITH_MISSING = [
    (lambda: LinearGaussianSSM(1, max_iter=5, random_state=0), REAL, "smooth"),
    (lambda: GaussianHMM(2, max_iter=5, random_state=0), REAL, "predict_proba"),
    (lambda: PoissonHMM(2, max_iter=5, random_state=0), COUNTS, "predict_proba"),
    (lambda: MissingDataGaussian(max_iter=5), REAL, "transform"),
    (lambda: MissingDataGaussianMixture(2, max_iter=5, random_state=0), REAL, "predict_proba"),
    (lambda: BernoulliMixture(2, max_iter=5, random_state=0), BINARY, "predict_proba"),
]


def _fit(make, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few iterations on purpose
        return make().fit(X)


@pytest.mark.parametrize("make, X, method", WITH_MISSING)
def test_masked_entries_are_missing_values(make, X, method):
    masked = _masked(X)
    before = masked.copy()
    a, b = _fit(make, masked), _fit(make, _nan(X))
    assert a.params_.allclose(b.params_, rtol=1e-12)
    np.testing.assert_allclose(a.score(masked), b.score(_nan(X)), rtol=1e-12)
    out_a, out_b = getattr(b, method)(masked), getattr(b, method)(_nan(X))
    if not isinstance(out_a, tuple):  # smooth returns (means, covariances)
        out_a, out_b = (out_a,), (out_b,)
    for u, v in zip(out_a, out_b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12)
    # the caller's masked array is untouched
    np.testing.assert_array_equal(masked.data, before.data)
    np.testing.assert_array_equal(masked.mask, before.mask)


def test_masked_integer_symbols_are_missing_symbols():
    masked = np.ma.masked_array(SYMBOLS, mask=SYMBOL_MASK)
    sentinel = np.where(SYMBOL_MASK, -1, SYMBOLS)
    a = _fit(lambda: CategoricalHMM(2, max_iter=5, random_state=0), masked)
    b = _fit(lambda: CategoricalHMM(2, max_iter=5, random_state=0), sentinel)
    assert a.params_.allclose(b.params_, rtol=1e-12)


@pytest.mark.parametrize("make", [
    lambda: GaussianMixture(2, random_state=0),
    lambda: StudentTMixture(2, random_state=0),
    lambda: AutoRegressiveHMM(2, random_state=0),
])
def test_masked_entries_for_a_model_without_missing_values_are_a_clear_error(make):
    with pytest.raises(ValueError, match=r"X is a masked array with 5 masked entries"):
        make().fit(_masked(REAL))


def test_a_mask_with_nothing_masked_is_plain_data():
    plain = GaussianMixture(2, random_state=0).fit(REAL)
    masked = GaussianMixture(2, random_state=0).fit(np.ma.masked_array(REAL, mask=False))
    assert masked.params_.allclose(plain.params_, rtol=0)
