"""Scalar helpers that generated Numba kernels call (small plain @njit functions: LLVM inlines
and vectorises them; Numba-IR inlining cost seconds of compile per call site): Philox4x32-10,
Box–Muller normals and a vectorisable tanh.

Everything stays ``uint64`` in the RNG (mixing with int64 silently promotes to float64 in
Numba; platform-notes.md).  Bit casts are LLVM intrinsics, so they inline and vectorise.
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import types
from numba.extending import intrinsic

from ..abi import STREAM_W, TREE_DEPTH

#: every runtime function is compiled with the kernels' flags (FMA contraction, numpy error model):
#: Numba links a callee compiled first from Python with its own flags and one compiled first inside a
#: kernel with the kernel's, so mixed flags made a kernel's bits depend on what ran before it
jit = numba.njit(cache=True, error_model="numpy", fastmath={"contract"})

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_TWO_PI = 2.0 * math.pi
_U32 = 2.0**-32


@jit
def _round(c0, c1, c2, c3, k0, k1):
    p0 = c0 * _M0
    p1 = c2 * _M1
    return ((p1 >> _S32) ^ c1 ^ k0) & _MASK, p1 & _MASK, ((p0 >> _S32) ^ c3 ^ k1) & _MASK, p0 & _MASK


@numba.njit(inline="always", error_model="numpy")
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 on uint64-held 32-bit words (Salmon et al. 2011); same as kernels.philox.
    The ten rounds are written out: a loop inside the lane loop would stop vectorisation."""
    k0b, k1b = (k0 + _W0) & _MASK, (k1 + _W1) & _MASK
    k0c, k1c = (k0b + _W0) & _MASK, (k1b + _W1) & _MASK
    k0d, k1d = (k0c + _W0) & _MASK, (k1c + _W1) & _MASK
    k0e, k1e = (k0d + _W0) & _MASK, (k1d + _W1) & _MASK
    k0f, k1f = (k0e + _W0) & _MASK, (k1e + _W1) & _MASK
    k0g, k1g = (k0f + _W0) & _MASK, (k1f + _W1) & _MASK
    k0h, k1h = (k0g + _W0) & _MASK, (k1g + _W1) & _MASK
    k0i, k1i = (k0h + _W0) & _MASK, (k1h + _W1) & _MASK
    k0j, k1j = (k0i + _W0) & _MASK, (k1i + _W1) & _MASK
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0, k1)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0b, k1b)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0c, k1c)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0d, k1d)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0e, k1e)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0f, k1f)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0g, k1g)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0h, k1h)
    c0, c1, c2, c3 = _round(c0, c1, c2, c3, k0i, k1i)
    return _round(c0, c1, c2, c3, k0j, k1j)


@numba.njit(inline="always", error_model="numpy", fastmath={"contract"})
def normal4(k0, k1, node, traj, tag):
    """Four N(0,1) for counter (node lo, node hi, traj, tag): Box–Muller exactly as
    kernels.philox.box_muller, with branch-free log and sin/cos (a few ulp from libm)."""
    nd = np.uint64(node)
    w0, w1, w2, w3 = philox4x32(nd & _MASK, nd >> _S32, np.uint64(traj) & _MASK, np.uint64(tag), k0, k1)
    u0 = (u32_to_f64(w0) + 0.5) * _U32
    u1 = (u32_to_f64(w1) + 0.5) * _U32
    u2 = (u32_to_f64(w2) + 0.5) * _U32
    u3 = (u32_to_f64(w3) + 0.5) * _U32
    r01 = math.sqrt(-2.0 * log_pos(u0))
    r23 = math.sqrt(-2.0 * log_pos(u2))
    s01, c01 = sincos_2pi(u1)
    s23, c23 = sincos_2pi(u3)
    return r01 * c01, r01 * s01, r23 * c23, r23 * s23


_EXP52_BITS = np.uint64(0x4330000000000000)


@jit
def u32_to_f64(w):
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
def log_pos(x):
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
def sincos_2pi(u):
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


@jit
def normals_block(k0, k1, node, first, src, stream, out):
    """out[c, b] = component c of the normals at ``node`` of trajectory first + src[b] in ``stream``."""
    m, nb = out.shape
    for g in range((m + 3) // 4):
        c = 4 * g
        tag = (stream << 16) | g
        for b in range(nb):
            z0, z1, z2, z3 = normal4(k0, k1, node, first + src[b], tag)
            out[c, b] = z0
            if c + 1 < m:
                out[c + 1, b] = z1
            if c + 2 < m:
                out[c + 2, b] = z2
            if c + 3 < m:
                out[c + 3, b] = z3




@jit
def bridge_block(k0, k1, node, level, T, first, src, dw, hh, z, dw_l, h_l, dw_r, h_r):
    """Bisect the (ΔW, H) interval ``node`` at ``level`` of the tree (kernels/brownian.py, same
    arithmetic as ``brownian.bisect``): children into (dw_l, h_l) and (dw_r, h_r).  Normals of the
    node: ``z[c]`` = Z1, ``z[M + c]`` = Z2 (``z`` is (2M, B)).  Outputs may alias the inputs."""
    normals_block(k0, k1, node, first, src, STREAM_W, z)
    hl = T * 2.0 ** (-level)
    s1 = math.sqrt(hl) * 0.25
    s2 = math.sqrt(hl / 48.0)
    m, nb = dw.shape
    for c in range(m):
        for b in range(nb):
            a = 1.5 * hh[c, b] + s1 * z[c, b]
            d = s2 * z[m + c, b]
            half = 0.5 * dw[c, b]
            hc = hh[c, b] - 0.5 * a
            dw_l[c, b] = half + a
            h_l[c, b] = hc + d
            dw_r[c, b] = half - a
            h_r[c, b] = hc - d


@jit
def copy2(src, dst):
    for c in range(src.shape[0]):
        for b in range(src.shape[1]):
            dst[c, b] = src[c, b]


@jit
def tree_start(k0, k1, first, src, T, level, zbuf, stk_dw, stk_h, stk_lv, stk_node, path):
    """Initialise a block's (W, H) tree: root ΔW = √T Z1, H = √(T/12) Z2 of node 0, put on the walk
    stack (``level`` >= 0) or as the current interval of the query path (``path[:, DEPTH]``).

    Buffers (float64 unless said): ``zbuf`` (2M, B); walk stack ``stk_dw``, ``stk_h``
    (max(level, 0) + 2, M, B), ``stk_lv``, ``stk_node`` int64 (max(level, 0) + 2,); query path
    ``path`` (2, DEPTH + 1, M, B) when level < 0 (else (2, 1, M, B), unused)."""
    normals_block(k0, k1, 0, first, src, STREAM_W, zbuf)
    sd_w = math.sqrt(T)
    sd_h = math.sqrt(T / 12.0)
    m, nb = stk_dw.shape[1], stk_dw.shape[2]
    if level >= 0:
        for c in range(m):
            for b in range(nb):
                stk_dw[0, c, b] = sd_w * zbuf[c, b]
                stk_h[0, c, b] = sd_h * zbuf[m + c, b]
        stk_lv[0] = 0
        stk_node[0] = 1
    else:
        for c in range(m):
            for b in range(nb):
                path[0, TREE_DEPTH, c, b] = sd_w * zbuf[c, b]
                path[1, TREE_DEPTH, c, b] = sd_h * zbuf[m + c, b]
    return np.int64(0)


@jit
def _bit_length(x):
    n = 0
    while x > 0:
        x >>= 1
        n += 1
    return n


@jit
def tree_query_step(k0, k1, first, src, T, ipa, fra, na, ipb, frb, nb, zbuf, path, acc, dW, dH):
    """(ΔW, H) of the step from the point with plan (ipa, fra, na), whose path is in ``path``, to
    the point with plan (ipb, frb, nb); moves ``path`` there.  ``path[:, l]`` holds the right
    sibling (ΔW, H) of every level l where the point went left, ``path[:, DEPTH]`` its final
    interval; ``acc`` (6, M, B) is scratch.  Steps and arithmetic of ``BrownianTree._advance``."""
    m, nbl = dW.shape
    u = T * 2.0 ** (-TREE_DEPTH)
    top_pos = np.int64(1) << TREE_DEPTH
    cur_dw = path[0, TREE_DEPTH]
    cur_h = path[1, TREE_DEPTH]
    if ipb == ipa and frb == fra:  # a zero-length step (times closer than T 2^-48): nothing moves
        for c in range(m):
            for b in range(nbl):
                dW[c, b] = 0.0
                dH[c, b] = 0.0
        return
    # split point m (coarsest dyadic point of [a, b]) and its level c (brownian.split_point)
    if nb == -1:
        mpos = top_pos
        c0 = 0
        ipb = top_pos
        frb = 0.0
    elif na == 0:
        mpos = np.int64(0)
        c0 = 0
    else:
        xa = ipa if fra == 0.0 else ipa + 1
        if xa > ipb:   # one leaf cell: linear piece, no Lévy area
            for c in range(m):
                for b in range(nbl):
                    dW[c, b] = (frb - fra) * cur_dw[c, b]
                    dH[c, b] = 0.0
            return
        top = _bit_length((xa - 1) ^ ipb) - 1
        mpos = (ipb >> top) << top
        c0 = TREE_DEPTH - top
    E, K, D, J, Ld, Lh = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    for c in range(m):
        for b in range(nbl):
            E[c, b] = 0.0
            K[c, b] = 0.0
            D[c, b] = 0.0
            J[c, b] = 0.0
    # suffix [a, m] of a's level-c interval: E = W(m) − W(a), K = ∫_a^m (W − W(a))
    a_empty = fra == 0.0 and ipa == mpos
    if not a_empty:
        if fra != 0.0:
            s = TREE_DEPTH
            g = 1.0 - fra
            gu = 0.5 * (g * u)
            for c in range(m):
                for b in range(nbl):
                    e = g * cur_dw[c, b]
                    E[c, b] = e
                    K[c, b] = gu * e
        else:
            s = na
            hs0 = T * 2.0 ** (-na)
            for c in range(m):
                for b in range(nbl):
                    E[c, b] = cur_dw[c, b]
                    K[c, b] = hs0 * (0.5 * cur_dw[c, b] + cur_h[c, b])
        for lv in range(s - 1, c0 - 1, -1):
            if (ipa >> (TREE_DEPTH - 1 - lv)) & 1 == 0:
                hr = T * 2.0 ** (-(lv + 1))
                for c in range(m):
                    for b in range(nbl):
                        dr = path[0, lv, c, b]
                        K[c, b] = K[c, b] + hr * (0.5 * dr + path[1, lv, c, b] + E[c, b])
                        E[c, b] = E[c, b] + dr
    # prefix [m, b] of b's level-c interval: D = W(b) − W(m), J = ∫_m^b (W − W(m))
    if nb != -1:
        if not a_empty:
            copy2(path[0, c0 - 1], cur_dw)
            copy2(path[1, c0 - 1], cur_h)
        for lv in range(c0, nb):
            node = (np.int64(1) << lv) + (ipb >> (TREE_DEPTH - lv))
            if (ipb >> (TREE_DEPTH - 1 - lv)) & 1:
                bridge_block(k0, k1, node, lv, T, first, src, cur_dw, cur_h, zbuf, Ld, Lh, cur_dw, cur_h)
                hl = T * 2.0 ** (-(lv + 1))
                for c in range(m):
                    for b in range(nbl):
                        J[c, b] = J[c, b] + hl * (0.5 * Ld[c, b] + Lh[c, b] + D[c, b])
                        D[c, b] = D[c, b] + Ld[c, b]
            else:
                bridge_block(k0, k1, node, lv, T, first, src, cur_dw, cur_h, zbuf, cur_dw, cur_h,
                             path[0, lv], path[1, lv])
        if frb != 0.0:
            fu = frb * u
            for c in range(m):
                for b in range(nbl):
                    pw = frb * cur_dw[c, b]
                    J[c, b] = J[c, b] + fu * (D[c, b] + 0.5 * pw)
                    D[c, b] = D[c, b] + pw
    bm = (np.float64(ipb - mpos) + frb) * u
    hs = (np.float64(ipb - ipa) + (frb - fra)) * u
    for c in range(m):
        for b in range(nbl):
            dw = E[c, b] + D[c, b]
            dW[c, b] = dw
            dH[c, b] = (K[c, b] + J[c, b] + bm * E[c, b]) / hs - 0.5 * dw


@jit
def tree_walk(k0, k1, first, src, T, level, sp, zbuf, stk_dw, stk_h, stk_lv, stk_node, dW, dH):
    """(ΔW, H) of the next interval of level ``level`` of the dyadic tree, visited in order, into
    dW, dH (M, B); returns the new stack pointer.  Same order and arithmetic as
    ``BrownianTree.walk``: about one node (one :func:`bridge_block`) per step."""
    m, nb = dW.shape
    lv = stk_lv[sp]
    while lv != level:
        # bisect the top interval: left child on top, right child in place (BrownianTree.walk's order)
        node = stk_node[sp]
        bridge_block(k0, k1, node, lv, T, first, src, stk_dw[sp], stk_h[sp], zbuf, stk_dw[sp + 1],
                     stk_h[sp + 1], stk_dw[sp], stk_h[sp])
        stk_lv[sp] = lv + 1
        stk_node[sp] = 2 * node + 1
        sp += 1
        lv += 1
        stk_lv[sp] = lv
        stk_node[sp] = 2 * node
    for c in range(m):
        for b in range(nb):
            dW[c, b] = stk_dw[sp, c, b]
            dH[c, b] = stk_h[sp, c, b]
    return sp - 1


@jit
def tree_query_increment(k0, k1, first, src, T, step, q_ipos, q_frac, q_levels, zbuf, path, acc, dW, dH):
    """(ΔW, H) of step ``step`` into dW, dH (M, B): move the query path from t_step to t_{step+1}
    by their plans (kernels/brownian.py, same arithmetic).  Buffers: see :func:`tree_start`;
    ``acc`` (6, M, B)."""
    if step == 0:
        ipa, fra, na = np.int64(0), 0.0, np.int64(0)
    else:
        ipa, fra, na = q_ipos[step - 1], q_frac[step - 1], q_levels[step - 1]
    tree_query_step(k0, k1, first, src, T, ipa, fra, na, q_ipos[step], q_frac[step], q_levels[step], zbuf,
                    path, acc, dW, dH)


@jit
def query_plan(t, t0, T):
    """(ipos, frac, levels) of time ``t`` in the tree on [t0, t0 + T]: the arithmetic of
    ``kernels/brownian.BrownianTree.query_plan`` (times outside are clamped)."""
    s = (t - t0) / T
    pos = min(max(s, 0.0), 1.0) * 2.0 ** TREE_DEPTH
    ipos = np.int64(math.floor(pos))
    frac = pos - np.float64(ipos)
    if ipos >= (np.int64(1) << TREE_DEPTH):
        return ipos, 0.0, np.int64(-1)
    if ipos == 0 and frac == 0.0:
        return np.int64(0), 0.0, np.int64(0)
    if frac == 0.0:
        return ipos, frac, np.int64(TREE_DEPTH - _bit_length(ipos & -ipos) + 1)
    return ipos, frac, np.int64(TREE_DEPTH)


@jit
def lane_tree_buffers(B, m):
    """Per-lane query paths of the adaptive kernel: plan (ipos, levels) int64 (2, B), frac (B,),
    the path at the lane's accepted time and the trial path, each (B, 2, DEPTH + 1, m, 1)."""
    return (np.zeros((2, B), np.int64), np.zeros(B), np.empty((B, 2, TREE_DEPTH + 1, m, 1)),
            np.empty((B, 2, TREE_DEPTH + 1, m, 1)))


@jit
def lane_tree_start(k0, k1, first, src, T, plan, frac, paths):
    """Every lane's path at t0 (the root interval; plan (0, 0.0, 0))."""
    m = paths.shape[3]
    zbuf = np.empty((2 * m, 1))
    stk = np.empty((2, m, 1))
    stk_i = np.empty(2, dtype=np.int64)
    for b in range(src.shape[0]):
        tree_start(k0, k1, first, src[b:b + 1], T, -1, zbuf, stk, stk, stk_i, stk_i, paths[b])
        plan[0, b] = 0
        plan[1, b] = 0
        frac[b] = 0.0


@jit
def lane_tree_increments(k0, k1, first, src, T, t0, ta, tb, act, plan, frac, paths, trial, dW, dH):
    """(ΔW, H) over [ta[b], tb[b]] of every active lane b into dW, dH (M, B), each lane on its own
    times (adaptive steps).  ``paths[b]`` is the lane's tree path at its last accepted time (moved
    forward to ta[b] first if it lags); the step is taken on a copy, ``trial[b]``, which
    :func:`lane_tree_accept` keeps.  Same arithmetic as ``BrownianTree.increment(ta, tb)``:
    a path's node values do not depend on the route that reached it."""
    m = dW.shape[0]
    zbuf = np.empty((2 * m, 1))
    acc = np.empty((6, m, 1))
    dwl = np.empty((m, 1))
    dhl = np.empty((m, 1))
    for b in range(src.shape[0]):
        if not act[b]:
            for c in range(m):
                dW[c, b] = 0.0
                dH[c, b] = 0.0
            continue
        ia, fa, na = query_plan(ta[b], t0, T)
        if ia < plan[0, b] or (ia == plan[0, b] and fa < frac[b]):   # behind its path (a stop snapped
            lane_tree_start(k0, k1, first, src[b:b + 1], T, plan[:, b:b + 1], frac[b:b + 1], paths[b:b + 1])
        if ia != plan[0, b] or fa != frac[b]:                        # back by rounding): from the root
            tree_query_step(k0, k1, first, src[b:b + 1], T, plan[0, b], frac[b], plan[1, b], ia, fa, na, zbuf,
                            paths[b], acc, dwl, dhl)
            plan[0, b], frac[b], plan[1, b] = ia, fa, na
        tr = trial[b]
        pa = paths[b]
        for i in range(2):
            for lv in range(TREE_DEPTH + 1):
                for c in range(m):
                    tr[i, lv, c, 0] = pa[i, lv, c, 0]
        ib, fb, nb = query_plan(tb[b], t0, T)
        tree_query_step(k0, k1, first, src[b:b + 1], T, ia, fa, na, ib, fb, nb, zbuf, tr, acc, dwl, dhl)
        for c in range(m):
            dW[c, b] = dwl[c, 0]
            dH[c, b] = dhl[c, 0]


@jit
def lane_tree_accept(b, tb, t0, T, plan, frac, paths, trial):
    """Lane b accepted its step to ``tb``: its trial path becomes its path."""
    plan[0, b], frac[b], plan[1, b] = query_plan(tb, t0, T)
    pa, tr = paths[b], trial[b]
    for i in range(2):
        for lv in range(TREE_DEPTH + 1):
            for c in range(pa.shape[2]):
                pa[i, lv, c, 0] = tr[i, lv, c, 0]
