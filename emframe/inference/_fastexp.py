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

import math

import numba
import numpy as np
from llvmlite import ir
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


# float32: ln 2 split so that n * _LN2_HI_32 is exact for |n| < 2**15 (9 bits in the high part).
_LOG2E_32 = np.float32(1.4426950408889634)
_LN2_HI_32 = np.float32(0.693359375)
_LN2_LO_32 = np.float32(-2.12194440e-4)
_HALF_32 = np.float32(0.5)
# Taylor coefficients 1/k! in float32, k = 7 .. 0: degree 7 truncates below 6e-9 relative
# for |r| <= ln 2 / 2, under half a float32 unit.
_C32 = tuple(np.float32(1.0 / math.factorial(k)) for k in range(8))


@intrinsic
def _as_float32(typingctx, bits):
    """The low 32 bits of the int64 ``bits`` reinterpreted as a float32."""
    sig = types.float32(types.int64)

    def codegen(context, builder, signature, args):
        low = builder.trunc(args[0], ir.IntType(32))
        return builder.bitcast(low, context.get_value_type(types.float32))

    return sig, codegen


@intrinsic
def _pow2_32(typingctx, n):
    """``2**n`` as a float32 for a float32 integer ``-126 <= n <= 127``, written into the
    exponent bits in 32-bit integer arithmetic (vectorised where 64-bit lanes are not)."""
    sig = types.float32(types.float32)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        k = builder.fptosi(args[0], i32)
        bits = builder.shl(builder.add(k, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(bits, context.get_value_type(types.float32))

    return sig, codegen


@numba.njit(cache=True, error_model="numpy", inline="always")
def exp_normal32(x):
    """exp(x) in float32 for float32 ``-87 <= x <= 88`` (the caller clamps, and handles NaN).

    The float32 twin of :func:`exp_normal` (degree-7 polynomial, about one float32 unit in
    the last place): twice as many lanes per vector instruction.
    """
    n = np.floor(x * _LOG2E_32 + _HALF_32)
    r = (x - n * _LN2_HI_32) - n * _LN2_LO_32
    p = _C32[7]
    p = p * r + _C32[6]
    p = p * r + _C32[5]
    p = p * r + _C32[4]
    p = p * r + _C32[3]
    p = p * r + _C32[2]
    p = p * r + _C32[1]
    p = p * r + _C32[0]
    return p * _pow2_32(n)
