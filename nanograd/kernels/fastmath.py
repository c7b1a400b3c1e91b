"""Vectorizable exp and max for numba kernels, exact in float64.

Without Intel's SVML (numba uses it only when installed), `math.exp` inside a jitted loop is a scalar
libm call and the loop cannot vectorize. `fast_exp(x)` is a generic function the kernels call instead:

- float32: Cody-Waite range reduction and a polynomial, all plain arithmetic that LLVM vectorizes.
      x = n ln2 + r,  n = floor(x / ln2 + 1/2),  |r| <= ln2 / 2
      exp(x) = 2^n * exp(r),  exp(r) ~ 1 + r + r^2 P(r)   (Cephes expf coefficients)
  2^n is built directly from exponent bits: the float32 whose bits are (n + 127) << 23.
  Inputs are clamped to [-87.3, 88.3] so 2^n stays a normal number; below -87.3 (including -inf)
  the result is exactly 0, above 88.3 it saturates at ~2e38 instead of inf; NaN gives NaN.
  Measured maximum relative error against float64 exp of the same float32 input: 8.4e-8 (float32
  rounding alone is 6e-8), on 5 million points spanning the range.
- float64: math.exp itself, so float64 gradient checks through the kernels stay exact.

The choice happens at compile time through numba's `overload`, by the argument's type.

`row_max(row)` is the maximum of a 1-D float array. LLVM will not vectorize a floating-point
max reduction (it emits scalar `vmaxss`, ~1 element per cycle), but it does vectorize integer max.
IEEE floats become order-preserving signed integers by flipping the magnitude bits of negative
numbers: key = bits ^ ((bits >> (w-1)) & (2^(w-1) - 1)) for w-bit floats. The same transform maps a
key back. Exact in both dtypes.

numba's on-disk cache (cache=True) checks only the source file of the kernel it compiled: after
editing this module, delete nanograd/kernels/__pycache__ so kernels in other modules recompile.

`FAST` is the set of LLVM fast-math flags the kernels compile with: `reassoc` lets row sums and
dot products vectorize (it only reorders additions) and `contract` allows fused multiply-add. The
flags that assume no inf/NaN are left out on purpose: causal masks use -inf. Every kernel also
compiles with error_model="numpy": a division by zero gives inf or NaN as in NumPy instead of
raising inside the kernel, so a diverging model's NaN reaches the trainer's check as a NaN loss.
"""
import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

FAST = {"reassoc", "contract"}

_LOG2E = np.float32(1.4426950408889634)
_LN2_HI = np.float32(0.693359375)  # ln2 split in two so n * _LN2_HI is exact in float32
_LN2_LO = np.float32(-2.12194440e-4)
_HALF = np.float32(0.5)
_ONE = np.float32(1.0)
_ZERO = np.float32(0.0)
_X_MIN = np.float32(-87.3)
_X_MAX = np.float32(88.3)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    """Reinterpret an int32's bits as a float32 (a no-op bitcast LLVM can vectorize)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


def _order_key_ir(builder, bits):
    """bits ^ ((bits >> (w-1)) & (2^(w-1) - 1)): its own inverse, maps float order to int order."""
    width = bits.type.width
    sign_mask = builder.ashr(bits, ir.Constant(bits.type, width - 1))
    magnitude = builder.and_(sign_mask, ir.Constant(bits.type, (1 << (width - 1)) - 1))
    return builder.xor(bits, magnitude)


@intrinsic
def _order_key(typingctx, x):
    """The float x as a signed integer of the same width that sorts like x."""
    if x not in (types.float32, types.float64):
        return None
    key_type = types.int32 if x == types.float32 else types.int64

    def codegen(context, builder, signature, args):
        return _order_key_ir(builder, builder.bitcast(args[0], ir.IntType(key_type.bitwidth)))

    return key_type(x), codegen


@intrinsic
def _from_order_key(typingctx, key, like):
    """Inverse of _order_key: the float (of like's type) whose key is key."""
    if like not in (types.float32, types.float64):
        return None

    def codegen(context, builder, signature, args):
        float_type = ir.FloatType() if like == types.float32 else ir.DoubleType()
        return builder.bitcast(_order_key_ir(builder, args[0]), float_type)

    return like(key, like), codegen


@njit(cache=True, error_model="numpy")
def row_max(row):
    """max(row) for a non-empty 1-D float32/float64 array, as a vectorizable integer max."""
    key = _order_key(row[0])
    for j in range(1, row.shape[0]):
        key = max(key, _order_key(row[j]))
    return _from_order_key(key, row[0])


def fast_exp(x):
    """exp(x). In Python this is math.exp; inside numba kernels see the overload below."""
    return math.exp(x)


def _exp_float32(x):
    clamped = min(max(x, _X_MIN), _X_MAX)
    n = np.floor(clamped * _LOG2E + _HALF)
    r = clamped - n * _LN2_HI - n * _LN2_LO
    p = _P0
    p = p * r + _P1
    p = p * r + _P2
    p = p * r + _P3
    p = p * r + _P4
    p = p * r + _P5
    exp_r = p * r * r + r + _ONE
    two_to_n = _int32_bits_as_float32(np.int32((np.int32(n) + np.int32(127)) << np.int32(23)))
    if x < _X_MIN:
        return _ZERO
    return x if x != x else exp_r * two_to_n  # NaN in, NaN out (both branches are vector selects)


def _exp_float64(x):
    return math.exp(x)


@overload(fast_exp)
def _fast_exp_overload(x):
    if x == types.float32:
        return _exp_float32
    if x == types.float64:
        return _exp_float64
    return None
