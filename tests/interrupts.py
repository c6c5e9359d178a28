"""Test helper: a Ctrl-C delivered while a compiled kernel runs must raise KeyboardInterrupt."""

import signal
import time

import pytest


def interrupted_while_running(run):
    """Deliver a Ctrl-C (SIGALRM with the SIGINT handler) while ``run()`` is in a kernel.

    ``run`` is called twice first: to compile the kernel (or load it from numba's
    cache), then to time it, so that the alarm falls inside the third call.
    """
    run()
    start = time.perf_counter()
    run()
    duration = time.perf_counter() - start
    old = signal.signal(signal.SIGALRM, signal.default_int_handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, min(0.02, duration / 4))
        with pytest.raises(KeyboardInterrupt):
            run()
            time.sleep(1.0)  # pragma: no cover - only if the kernel finished first
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
