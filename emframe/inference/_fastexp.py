"""A branch-free exp for the compiled kernels (imports numba).

``exp(x) = 2**n * exp(r)`` with ``x = n ln 2 + r``, ``|r| <= ln 2 / 2``; ``exp(r)`` by
its Taylor polynomial of degree 13 (truncation below 5e-18 relative) and ``2**n``
written into the exponent bits: about one unit in the last place, like the C
library's exp, and vectorised by the compiler when called in a loop. The bits are
reinterpreted as a double in a register (:func:`_as_float`, an LLVM bitcast), not
through memory: a store of integers read back as floats keeps short loops from being
unrolled and vectorised.
"""

from __future__ import annotations

import numba
import numpy as np
from numba.core import types
from numba.extending import intrinsic

_LOG2E = 1.4426950408889634
# ln 2 split so that n * _LN2_HI is exact for |n| < 2**11 (as in fdlibm).
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@intrinsic
def _as_float(typingctx, bits):
    """The int64 ``bits`` reinterpreted as a float64."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return sig, codegen


@numba.njit(cache=True, error_model="numpy", inline="always")
def exp_normal(x):
    """exp(x) for ``-708 <= x <= 709`` (the caller clamps, and handles NaN)."""
    n = np.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    return p * _as_float((numba.int64(n) + 1023) << 52)
