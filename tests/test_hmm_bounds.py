"""Bounds that keep compiled code and allocations safe (issue 11, item 3).

Sequence lengths are checked exactly before any compiled kernel sees them, the kernels
check their arguments again at entry, a Ctrl-C inside a kernel is a KeyboardInterrupt,
and a categorical alphabet is refused before it would allocate past a stated budget.
"""


import numpy as np
import pytest
from emframe.models import CategoricalHMM, GaussianHMM
from emframe.models.hmm.emissions.categorical import MAX_TABLE_SIZE
from hypothesis import given, settings
from hypothesis import strategies as st
from interrupts import interrupted_while_running

from emframe.inference.hmm import common, has_numba, validate_lengths

needs_numba = pytest.mark.skipif(not has_numba(), reason="numba is not installed")


# -- lengths -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("lengths", "dtype"),
    [
        ([2**62, 2**62, 2**62, 2**62 + 10], np.int64),  # int64 sum wraps around to 10
        ([2**63 - 1, 2**63 - 1, 12], np.uint64),
        ([2**63 - 1, 2**63 - 1, 12], np.float64),
        ([11, -1], np.int64),
        ([20], np.int64),
    ],
)
def test_lengths_whose_sum_wraps_around_are_refused(lengths, dtype):
    arr = np.array(lengths, dtype=dtype)
    with pytest.raises(ValueError, match="larger than the number of samples|positive"):
        validate_lengths(arr, 10)


def test_more_sequences_than_samples_is_refused():
    with pytest.raises(ValueError, match="3 sequences cannot hold n_samples = 2"):
        validate_lengths([1, 1, 1], 2)


@settings(max_examples=200, deadline=None)
@given(
    lengths=st.lists(st.integers(-(2**63), 2**63 - 1) | st.integers(1, 2**61), min_size=1,
                     max_size=6),
    offset=st.sampled_from([0, 0, -1, 1, 2**64]) | st.integers(-(2**62), 2**62),
)
def test_lengths_accepted_exactly_when_they_tile_the_rows(lengths, offset):
    n = sum(lengths) + offset
    if n < 1 or n >= 2**63:
        n = 1 + (n % 2**62)
    # oracle: Python integers, which never wrap
    valid = all(1 <= v <= n for v in lengths) and sum(lengths) == n
    arr = np.array(lengths, dtype=np.int64)
    if valid:
        assert validate_lengths(arr, n).tolist() == lengths
    else:
        with pytest.raises(ValueError):
            validate_lengths(arr, n)


def test_estimator_refuses_wrapping_lengths_before_any_kernel():
    X = np.random.default_rng(0).normal(size=(10, 1))
    lengths = np.array([2**62, 2**62, 2**62, 2**62 + 10], dtype=np.int64)
    for backend in ("numpy", "auto"):
        with pytest.raises(ValueError, match="larger than the number of samples"):
            GaussianHMM(2, backend=backend).fit(X, lengths)


# -- kernel entry checks -----------------------------------------------------------------
def _model(k=3, t=12, seed=0):
    rng = np.random.default_rng(seed)
    le = rng.normal(size=(t, k))
    return np.log(np.full(k, 1 / k)), np.log(np.full((k, k), 1 / k)), le


@needs_numba
@pytest.mark.parametrize(
    ("starts", "lengths"),
    [
        ([0, 5], [5, 8]),  # runs past the last row
        ([0, 6], [5, 7]),  # a gap
        ([0, 2**62], [2**62, 12 - 2**62]),  # wraps
        ([0], [11]),  # too short
        ([1], [12]),
    ],
)
def test_kernels_refuse_bounds_that_do_not_tile_the_rows(starts, lengths):
    lpi, la, le = _model()
    nb = common._numba_kernels()
    s, n = np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64)
    for call in (lambda: nb.viterbi(lpi, la, le, s, n),
                 lambda: nb.log_forward(lpi, la, le, s, n),
                 lambda: nb.log_backward(la, le, s, n),
                 lambda: nb.scaled_forward_backward(np.exp(lpi), np.exp(la), le, s, n,
                                                    1e-9, 1e-290, -708.0)):
        with pytest.raises(ValueError, match="do not tile"):
            call()


@needs_numba
def test_kernels_refuse_mismatched_shapes():
    lpi, la, le = _model()
    nb = common._numba_kernels()
    s, n = np.array([0], dtype=np.int64), np.array([12], dtype=np.int64)
    with pytest.raises(ValueError, match="C-contiguous float64 array of shape"):
        nb.viterbi(lpi[:2], la, le, s, n)
    with pytest.raises(ValueError, match="C-contiguous float64 array of shape"):
        nb.log_backward(np.asfortranarray(la[:, :2]), le, s, n)
    path, best = nb.viterbi(lpi, la, le, s, n)  # the checks pass good arguments through
    assert path.shape == (12,)


# -- Ctrl-C inside a kernel --------------------------------------------------------------
@needs_numba
def test_ctrl_c_inside_a_kernel_is_keyboard_interrupt():
    rng = np.random.default_rng(0)
    k, t = 20, 40_000
    le = rng.normal(size=(t, k))
    args = (np.full(k, 1 / k), np.full((k, k), 1 / k), le, np.array([0]), np.array([t]),
            1e-9, 1e-290, -708.0)
    kernel = common._numba_kernels().scaled_forward_backward
    interrupted_while_running(lambda: kernel(*args))


# -- categorical alphabets ---------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::emframe.ConvergenceWarning")
def test_categorical_alphabet_over_the_budget_is_refused():
    X = np.array([[0.0], [3e9], [1.0], [2.0]])
    with pytest.raises(ValueError, match=r"2 x 3000000001 = 6000000002 probabilities .*"
                                         r"budget of 134217728 entries \(1 GiB\)"):
        CategoricalHMM(2).fit(X)
    with pytest.raises(ValueError, match="budget"):
        CategoricalHMM(4, n_features=MAX_TABLE_SIZE // 4 + 1).fit(np.zeros((5, 1)))
    with pytest.warns(UserWarning, match="11 free parameters but the data hold only 3"):
        CategoricalHMM(2, n_features=5, max_iter=2).fit(np.array([[0.0], [4.0], [1.0]]))
