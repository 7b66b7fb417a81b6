"""Scalar helpers that generated Numba kernels call (small plain @njit functions: LLVM inlines
and vectorises them; Numba-IR inlining cost seconds of compile per call site): the branch-free
log and sin/cos(2πu) of Box–Muller (kernels/philox.py), tanh and expm1.  ``jit``: the flags of
every runtime function.

Everything stays ``uint64`` in the RNG (mixing with int64 silently promotes to float64 in
Numba; platform-notes.md).  Bit casts are LLVM intrinsics, so they inline and vectorise.
"""
from __future__ import annotations

import math
import os
from contextlib import contextmanager

import numba
import numpy as np
from numba import types
from numba.core.compiler import CompilerBase, DefaultPassBuilder
from numba.core.compiler_machinery import PassManager
from numba.core.untyped_passes import InlineClosureLikes
from numba.extending import intrinsic

from ..abi import JIT_FLAGS

#: every runtime function is compiled with the kernels' flags (sdekit.abi.JIT_FLAGS)
jit = numba.njit(**JIT_FLAGS)

#: LLVM optimisation level of sdekit's kernels when NUMBA_OPT is not set: 2 rather than Numba's 3.  Measured
#: (2 cores, fresh caches, O2 vs O3): within 4% for every kernel tried (neural EM N = 65536: 0.65-0.69 s vs
#: 0.67-0.69 s over runs; adaptive Tsit5 0.045 vs 0.044 s; adaptive Exprb43 0.32 vs 0.31 s) and half the compile
#: of the big ones (adaptive Exprb43 16 s vs 30 s: O3's extra loop passes over its ~100 lane loops).
#: benchmarks/compile_times.py measures it again.
KERNEL_OPT = 2


@contextmanager
def kernel_opt_level():
    """Compile what runs inside at :data:`KERNEL_OPT` (the kernel and the runtime functions it compiles
    first), unless the user set NUMBA_OPT."""
    if "NUMBA_OPT" in os.environ:
        yield
        return
    from numba.core import config
    old = config.OPT
    config.OPT = type(old)(KERNEL_OPT)
    try:
        yield
    finally:
        config.OPT = old


class GeneratedCompiler(CompilerBase):
    """Numba's nopython pipeline without the front-end passes that generated code never needs, for the kernels
    and lane functions that sdekit prints (``codegen/print_numba``).  Numba's passes are linear to quadratic in
    a function's blocks, and a kernel has hundreds of lane loops.  Left out, with what they would act on:

    - ``InlineClosureLikes``: closures and list comprehensions, which printed code never holds;
    - the rewrites (the ``no_rewrites`` flag, set beside this class in ``codegen.numba_lanes.JIT``): constant
      folding of ``raise`` and getitem arguments, dead-branch pruning of literal conditions, and array-expression
      fusion.  Printed code has no ``raise`` and no branch on a constant; kernels and ODE lane functions write
      their loops out.  Field kernels' transforms hold a few whole-array expressions (``eig * fwd_L(...)``, a
      complex pair's ``x[:G] + 1j * x[G:]``): unfused, a 256-point complex-pair transform takes ~5 % longer
      (2.00 → 2.13 µs, the same bits), a small part of a step.

    Type inference, lowering and LLVM are Numba's.  Measured (2 cores, -O1, fresh caches): adaptive ETDAdams3
    17.6 → 12.8 s, DP5 6.5 → 4.9 s, Heun 5.0 → 3.8 s; the passes besides type inference and lowering 7.0 → 2.9 s
    of ETDAdams3's.  Runtime functions keep Numba's pipeline: they are written by hand."""

    def define_pipelines(self):
        default = DefaultPassBuilder.define_nopython_pipeline(self.state)
        pm = PassManager("generated")
        for pass_class, description in default.passes:
            if pass_class is not InlineClosureLikes:
                pm.add_pass(pass_class, description)
        pm.finalize()
        return [pm]


_TWO_PI = 2.0 * math.pi


@jit
def nan_min(a, b):
    """The loop IR's ``min``: NaN when either argument is NaN (as numpy's ``np.minimum``; Python's
    ``min`` returns whichever comes first)."""
    return a if (a < b or a != a) else b


@jit
def nan_max(a, b):
    """The loop IR's ``max``: NaN when either argument is NaN (as ``np.maximum``)."""
    return a if (a > b or a != a) else b


_EXP52_BITS = np.uint64(0x4330000000000000)


@jit
def u32_to_f64(w: np.uint64):
    """Exact float of a 32-bit value held in uint64, by bits (2^52 + w) − 2^52: vectorises on AVX2,
    where a uint64 -> double conversion does not."""
    return _i64_as_f64(np.int64(w | _EXP52_BITS)) - 4503599627370496.0


_EXP52_I = 0x4330000000000000
_TWO52 = 4503599627370496.0
_SQRT2 = math.sqrt(2.0)
_LN2 = math.log(2.0)
_MANT = 0x000FFFFFFFFFFFFF
_ONE_BITS = 0x3FF0000000000000


@jit
def log_pos(x: float):
    """log(x) for normal x > 0, branch-free: x = 2^e m, m in [√½, √2), log m = 2 atanh((m−1)/(m+1))
    by its series to f^23 (|f| <= 0.172: truncation < 1e-19).  Max error ~2 ulp."""
    bits = _f64_as_i64(x)
    e = (bits >> 52) - 1023
    m = _i64_as_f64((bits & _MANT) | _ONE_BITS)
    big = m > _SQRT2
    m = m * 0.5 if big else m
    e = e + 1 if big else e
    f = (m - 1.0) / (m + 1.0)
    f2 = f * f
    p = 1.0 / 23.0
    p = p * f2 + 1.0 / 21.0
    p = p * f2 + 1.0 / 19.0
    p = p * f2 + 1.0 / 17.0
    p = p * f2 + 1.0 / 15.0
    p = p * f2 + 1.0 / 13.0
    p = p * f2 + 1.0 / 11.0
    p = p * f2 + 1.0 / 9.0
    p = p * f2 + 1.0 / 7.0
    p = p * f2 + 1.0 / 5.0
    p = p * f2 + 1.0 / 3.0
    return np.float64(e) * _LN2 + 2.0 * (f + f * f2 * p)


_SIN_C = tuple((-1.0) ** k / math.factorial(2 * k + 1) for k in range(1, 10))
_COS_C = tuple((-1.0) ** k / math.factorial(2 * k) for k in range(1, 10))


@jit
def sincos_2pi(u: float):
    """(sin 2πu, cos 2πu) for u in (0, 1), branch-free: u = q/4 + r exactly, |r| <= 1/8,
    Taylor of sin/cos at 2πr (|2πr| <= π/4, to degree 19/18), then a quarter-turn rotation."""
    qm = 4.0 * u + _MAGIC                      # round(4u) in the low mantissa bits
    q = qm - _MAGIC
    k = _f64_as_i64(qm) & 3
    x = _TWO_PI * (u - 0.25 * q)
    x2 = x * x
    sp = ((((((((_SIN_C[8] * x2 + _SIN_C[7]) * x2 + _SIN_C[6]) * x2 + _SIN_C[5]) * x2 + _SIN_C[4]) * x2
              + _SIN_C[3]) * x2 + _SIN_C[2]) * x2 + _SIN_C[1]) * x2 + _SIN_C[0])
    cp = ((((((((_COS_C[8] * x2 + _COS_C[7]) * x2 + _COS_C[6]) * x2 + _COS_C[5]) * x2 + _COS_C[4]) * x2
              + _COS_C[3]) * x2 + _COS_C[2]) * x2 + _COS_C[1]) * x2 + _COS_C[0])
    sn = x + x * x2 * sp
    cs = 1.0 + x2 * cp
    # rotate by k quarter turns without branches (selects chains do not vectorise):
    # k = 0: (sn, cs), 1: (cs, -sn), 2: (-sn, -cs), 3: (-cs, sn)
    swap = _i64_as_f64((k & 1) | _EXP52_I) - _TWO52
    sgn_s = 1.0 - 2.0 * (_i64_as_f64((k >> 1) | _EXP52_I) - _TWO52)
    sgn_c = 1.0 - 2.0 * (_i64_as_f64(((k ^ (k >> 1)) & 1) | _EXP52_I) - _TWO52)
    a = sn + swap * (cs - sn)
    b = cs + swap * (sn - cs)
    return a * sgn_s, b * sgn_c


def _bitcast(src, dst):
    """An LLVM bitcast ``src -> dst`` as a Numba intrinsic (inlines and vectorises)."""
    @intrinsic
    def cast(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], context.get_value_type(dst))
        return dst(src), codegen
    return cast


_f64_as_i64 = _bitcast(types.float64, types.int64)
_i64_as_f64 = _bitcast(types.int64, types.float64)
_f32_as_i32 = _bitcast(types.float32, types.int32)
_i32_as_f32 = _bitcast(types.int32, types.float32)
#: the bit casts as C types (codegen/print_c_function prints a runtime function that calls one)
C_BITCASTS = {"_f64_as_i64": ("double", "long long"), "_i64_as_f64": ("long long", "double"),
              "_f32_as_i32": ("float", "int"), "_i32_as_f32": ("int", "float")}


_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_LOG2E = 1.4426950408889634
_MAGIC = 6755399441055744.0  # 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits
_MAGIC_BITS = 0x4338000000000000
# expm1(r) = r + r^2/2! + ... on |r| <= ln2/2: Taylor to r^13 (truncation < 3e-18 relative)
_EXPM1_C = tuple(1.0 / math.factorial(k) for k in range(2, 14))


@jit
def expm1_neg(x):
    """expm1(x) for x <= 0, branch-free (Cody–Waite reduction, Taylor on |r| <= ln2/2, 2^k by bit
    construction).  Max error ~2 ulp; clamps at x = -745 (result -1)."""
    x = max(x, -745.0)
    kf = x * _LOG2E + _MAGIC
    k = _f64_as_i64(kf) - _MAGIC_BITS          # round(x/ln2) as int64
    kd = kf - _MAGIC
    r = (x - kd * _LN2_HI) - kd * _LN2_LO
    p = _EXPM1_C[11]
    p = p * r + _EXPM1_C[10]
    p = p * r + _EXPM1_C[9]
    p = p * r + _EXPM1_C[8]
    p = p * r + _EXPM1_C[7]
    p = p * r + _EXPM1_C[6]
    p = p * r + _EXPM1_C[5]
    p = p * r + _EXPM1_C[4]
    p = p * r + _EXPM1_C[3]
    p = p * r + _EXPM1_C[2]
    p = p * r + _EXPM1_C[1]
    p = p * r + _EXPM1_C[0]
    em1 = r + r * r * p                          # expm1(r)
    two_k = _i64_as_f64((max(k, -1022) + 1023) << 52)
    return two_k * em1 + (two_k - 1.0)


@jit
def tanh64(x):
    """tanh(x) = sign(x)·(−u/(2+u)), u = expm1(−2|x|): branch-free, vectorisable, <= 4 ulp."""
    u = expm1_neg(-2.0 * abs(x))
    return math.copysign(-u / (2.0 + u), x)


_F = np.float32
_LN2_HI32, _LN2_LO32 = _F(0.693145751953125), _F(1.428606765330187e-06)
_LOG2E32, _MAGIC32 = _F(1.4426950408889634), _F(12582912.0)   # 1.5 * 2^23
_MAGIC32_BITS = np.int32(0x4B400000)
_E32 = tuple(_F(1.0 / math.factorial(k)) for k in range(2, 8))


@jit
def tanh32(x):
    """float32 tanh with the same construction in float32 arithmetic (Taylor of expm1 to r^7):
    twice the SIMD width of tanh64, error <= 4 float32 ulp.  A float64 argument (Numba promotes
    ``0.5 * x`` to float64) is rounded to float32 first: the bit tricks below read float32 bits."""
    xf = _F(x)
    t = max(_F(-2.0) * abs(xf), _F(-103.0))
    kf = t * _LOG2E32 + _MAGIC32
    k = _f32_as_i32(kf) - _MAGIC32_BITS
    kd = kf - _MAGIC32
    r = (t - kd * _LN2_HI32) - kd * _LN2_LO32
    p = ((((_E32[5] * r + _E32[4]) * r + _E32[3]) * r + _E32[2]) * r + _E32[1]) * r + _E32[0]
    em1 = r + r * r * p
    two_k = _i32_as_f32((max(k, np.int32(-126)) + np.int32(127)) << np.int32(23))
    u = two_k * em1 + (two_k - _F(1.0))
    return math.copysign(-u / (_F(2.0) + u), xf)
