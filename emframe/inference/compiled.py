"""Calling compiled (numba) kernels so that Ctrl-C still works.

A KeyboardInterrupt raised while a numba kernel runs comes out of numba's dispatcher
as ``SystemError: CPUDispatcher(...) returned a result with an exception set`` (possibly
a chain of them) caused by the KeyboardInterrupt. Every compiled kernel of the inference
layer (HMM recursions, Kalman filter and smoother) is called through
:func:`call_interruptible`, which raises the KeyboardInterrupt it is; the command line
uses :func:`caused_by_interrupt` to report such an error as an interruption.

:func:`has_numba` and :func:`use_numba` decide whether the compiled kernels run at all
(numba is an optional dependency).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["call_interruptible", "caused_by_interrupt", "has_numba", "use_numba"]

#: The values of every ``backend`` argument.
BACKENDS = ("auto", "numpy", "numba")


@functools.cache
def has_numba() -> bool:
    """Whether the optional numba kernels can be used (numba importable).

    Returns
    -------
    bool
    """
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def use_numba(backend: str) -> bool:
    """Resolve ``backend`` to "use the numba kernels": "numba", or "auto" with numba installed.

    Parameters
    ----------
    backend : {"auto", "numpy", "numba"}

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        On an unknown backend, or ``"numba"`` without numba.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "numba":
        if not has_numba():
            raise ValueError(
                'backend="numba" needs numba, which is not installed; install it with '
                'pip install "emframe[fast]" or use backend="numpy"'
            )
        return True
    return backend == "auto" and has_numba()


def call_interruptible(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)``; a Ctrl-C during it raises KeyboardInterrupt.

    Parameters
    ----------
    fn : callable
        Usually a numba-compiled kernel.
    *args
        Its arguments.

    Returns
    -------
    object
        What ``fn`` returns.

    Raises
    ------
    KeyboardInterrupt
        When ``fn`` raised a ``SystemError`` caused by a KeyboardInterrupt; any other
        exception propagates unchanged.
    """
    try:
        return fn(*args)
    except SystemError as exc:
        if caused_by_interrupt(exc):
            raise KeyboardInterrupt from None
        raise


def caused_by_interrupt(exc: BaseException) -> bool:
    """Whether a KeyboardInterrupt is somewhere in the chain of causes of ``exc``.

    Both explicit causes (``raise ... from``) and implicit contexts are followed; a
    cyclic chain is walked once.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    bool
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False
