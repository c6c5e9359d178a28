"""Compiled kernels called through emframe.inference.compiled: a Ctrl-C is a KeyboardInterrupt.

A KeyboardInterrupt raised while a numba kernel runs comes out of numba's dispatcher as
``SystemError(... returned a result with an exception set)``; every kernel is called
through :func:`call_interruptible`, which turns it back into the KeyboardInterrupt.
"""


import numpy as np
import pytest
from interrupts import interrupted_while_running

from emframe.inference import compiled
from emframe.inference.hmm import common
from emframe.inference.kalman import LinearGaussianSystem, has_numba
from emframe.inference.kalman import _filter as kalman_filter_module

needs_numba = pytest.mark.skipif(not has_numba(), reason="numba is not installed")


def _long_series(T=100_000):
    rng = np.random.default_rng(0)
    system = LinearGaussianSystem(
        A=np.array([[0.9, 0.1], [0.0, 0.8]]), C=np.eye(2), Q=0.1 * np.eye(2),
        R=0.5 * np.eye(2), mu0=np.zeros(2), S0=np.eye(2), b=np.zeros(2), d=np.zeros(2),
    )
    Y = rng.normal(size=(T, 2))
    Y[rng.random(Y.shape) < 0.1] = np.nan  # missing entries: the kernel's general path
    lens, starts = np.array([T], dtype=np.int64), np.array([0], dtype=np.int64)
    return system, Y, lens, starts


@needs_numba
def test_ctrl_c_inside_the_kalman_filter_kernel_is_keyboard_interrupt():
    system, Y, lens, starts = _long_series()
    interrupted_while_running(
        lambda: kalman_filter_module._filter_arrays(Y, system, lens, starts, "numba"))


@needs_numba
def test_ctrl_c_inside_the_rts_smoother_kernel_is_keyboard_interrupt():
    system, Y, lens, starts = _long_series()
    filt, _, _ = kalman_filter_module._filter_arrays(Y, system, lens, starts, "numba")
    interrupted_while_running(
        lambda: kalman_filter_module._smooth_arrays(system, filt, lens, starts, "numba"))


def _chained_interrupt():
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise SystemError("inner returned a result with an exception set") from exc
    except SystemError as exc:
        raise SystemError("outer returned a result with an exception set") from exc


def test_call_interruptible_unwraps_interrupts_only():
    with pytest.raises(KeyboardInterrupt):
        compiled.call_interruptible(_chained_interrupt)

    def other(x, y):
        raise SystemError(f"unrelated {x} {y}")

    with pytest.raises(SystemError, match="unrelated 1 2"):
        compiled.call_interruptible(other, 1, 2)
    assert compiled.call_interruptible(lambda a, b: a + b, 2, 3) == 5


def test_caused_by_interrupt_follows_causes_and_contexts_without_looping():
    try:
        _chained_interrupt()
    except SystemError as exc:
        assert compiled.caused_by_interrupt(exc)
    a, b = ValueError("a"), ValueError("b")
    a.__context__, b.__context__ = b, a  # a cycle: must terminate
    assert not compiled.caused_by_interrupt(a)


def test_hmm_common_keeps_its_names():
    # the HMM layer (and code written against it) still finds the helpers where they were
    assert common.call_interruptible is compiled.call_interruptible
    assert common.caused_by_interrupt is compiled.caused_by_interrupt
