"""PoissonHMM at any count: log-probabilities against exact oracles, monotone EM up to 2**53."""

import math
import warnings
from decimal import Decimal, localcontext

import numpy as np
import pytest
from emframe.models import PoissonHMM
from emframe.models.hmm.emissions import PoissonEmission, PoissonParams
from emframe.models.hmm.emissions.poisson import LARGE_COUNT, MAX_COUNT, poisson_log_pmf
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from emframe.core.engine import MONOTONE_RTOL
from emframe.exceptions import ConvergenceWarning, MonotonicityWarning

_PI = Decimal("3.14159265358979323846264338327950288419716939937510582097494459")
# B_2k for Stirling's series of log(n!)
_BERNOULLI = [Decimal(1) / 6, Decimal(-1) / 30, Decimal(1) / 42, Decimal(-1) / 30,
              Decimal(5) / 66, Decimal(-691) / 2730, Decimal(7) / 6]


def _log_factorial(n):
    """log(n!) to about 50 digits: exactly from n! below 2000, by Stirling's series above
    (whose next term is below 1e-45 there)."""
    if n < 2000:
        return Decimal(math.factorial(n)).ln()
    big = Decimal(n)
    out = (big + Decimal("0.5")) * big.ln() - big + (2 * _PI).ln() / 2
    for k, b in enumerate(_BERNOULLI, 1):
        out += b / (2 * k * (2 * k - 1) * big ** (2 * k - 1))
    return out


def exact_log_pmf(x, lam):
    """log P(x; lam) in 60-digit decimal arithmetic, rounded once to float."""
    if lam == 0:
        return 0.0 if x == 0 else -math.inf
    with localcontext() as ctx:
        ctx.prec = 60
        rate = Decimal(float(lam))
        return float(Decimal(int(x)) * rate.ln() - rate - _log_factorial(int(x)))


@pytest.mark.parametrize("lam", [1e-3, 0.5, 3.7, 50.0, 1e4])
def test_small_counts_are_exact(lam):
    x = np.arange(0.0, 200.0)
    want = np.array([exact_log_pmf(v, lam) for v in x])
    np.testing.assert_allclose(poisson_log_pmf(x, lam), want, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(sps.poisson.logpmf(x, lam), want, rtol=1e-13, atol=1e-13)
    ll = PoissonEmission().log_likelihood(PoissonParams(np.array([[lam]])), x[:, None])
    np.testing.assert_allclose(ll[:, 0], want, rtol=1e-13, atol=1e-13)


@settings(max_examples=200, deadline=None)
@given(log2_count=st.floats(0.0, 53.0), spread=st.sampled_from([1e-9, 1e-6, 1e-3, 0.05, 0.3, 3.0]),
       z=st.floats(-3.0, 3.0))
# just below the former 2**16 switch the matrix form was 2.2e-10 wrong (1.7 times the bound)
@example(log2_count=15.776, spread=1e-9, z=0.0)
@example(log2_count=15.776, spread=1e-3, z=1.0)
# either side of the switch, and of the 2**26 change from log1p to Loader's series in bd0
@example(log2_count=math.log2(LARGE_COUNT - 1), spread=1e-3, z=1.0)
@example(log2_count=math.log2(LARGE_COUNT), spread=1e-3, z=1.0)
@example(log2_count=25.999, spread=0.05, z=-1.0)
@example(log2_count=26.0, spread=0.05, z=-1.0)
def test_log_probabilities_are_accurate_at_any_count(log2_count, spread, z):
    # x log(lam) - lam - lgamma(x + 1) cancels to about -log(2 pi x) / 2: it was 2e-3 wrong
    # at counts of 1e12, 2.5 nats at 1e15 and 28 at 2**53 (so is scipy.stats.poisson.logpmf)
    x = float(min(np.floor(2.0**log2_count), MAX_COUNT))
    lam = max(x, 1.0) * math.exp(spread * z)
    want = exact_log_pmf(x, lam)
    tol = 2e-11 * max(1.0, abs(want))
    assert abs(poisson_log_pmf(x, lam) - want) <= tol
    ll = PoissonEmission().log_likelihood(PoissonParams(np.array([[lam], [2 * lam]])),
                                           np.array([[x]]))
    assert abs(ll[0, 0] - want) <= tol


def test_large_counts_with_missing_values_and_zero_rates():
    X = np.array([[3.0, 2.0**50, np.nan],
                  [np.nan, 1e12, 0.0],
                  [LARGE_COUNT, LARGE_COUNT - 1, 7.0],
                  [0.0, np.nan, 2.0**52]])
    lam = np.array([[2.5, 2.0**50 + 1e7, 0.0],
                    [1e-300, 1e12 - 3e6, 4e15],
                    [0.0, 1e12, 1.0]])
    ll = PoissonEmission().log_likelihood(PoissonParams(lam), X)
    want = np.array([[sum(exact_log_pmf(x, lam[k, j]) for j, x in enumerate(row)
                          if not np.isnan(x)) for k in range(3)] for row in X])
    np.testing.assert_array_equal(np.isneginf(ll), np.isneginf(want))
    fin = np.isfinite(want)
    np.testing.assert_allclose(ll[fin], want[fin], rtol=1e-12, atol=1e-10)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), log_count=st.floats(0.0, 15.5),
       separation=st.floats(0.5, 5.0), n_features=st.integers(1, 2))
def test_em_is_monotone_at_any_count_scale(seed, log_count, separation, n_features):
    # Two states a few standard deviations apart at counts up to ~3e15: the history of the
    # default fit never drops (it did from counts of ~1e9, by up to hundreds of nats)
    rng = np.random.default_rng(seed)
    lam0 = 10.0**log_count
    rates = np.array([lam0, lam0 + separation * math.sqrt(lam0)])
    states = np.repeat(rng.integers(0, 2, 9), 10)
    X = rng.poisson(rates[states][:, None] * [1.0, 0.7][:n_features]).astype(float)
    est = PoissonHMM(2, random_state=seed, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonotonicityWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, [30, 30, 30])
    h = est.loglik_history_
    assert np.all(np.isfinite(h)) and np.all(np.isfinite(est.lambdas_))
    assert np.all(h[:-1] - h[1:] <= MONOTONE_RTOL * np.maximum(1.0, np.abs(h[:-1]))), h


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_score_is_exact_either_side_of_the_switch_on_every_backend(backend):
    # one state: the score is the count's log-probability, whichever recursions run;
    # the counts straddle LARGE_COUNT and reach 2**16, near their rates
    if backend == "numba":
        pytest.importorskip("numba")
    for x in (LARGE_COUNT - 1, LARGE_COUNT, np.floor(2.0**15.776), 2.0**16 - 1, 2.0**16):
        lam = x  # at the mode, where the cancellation is worst
        h = PoissonHMM(1, backend=backend, init_params="", max_iter=0)
        h.startprob_, h.transmat_, h.lambdas_ = [1.0], [[1.0]], [[lam]]
        h.fit([[x]])
        want = exact_log_pmf(x, lam)
        assert abs(h.score([[x]]) - want) <= 2e-11 * abs(want)
