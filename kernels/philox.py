"""Philox4x32-10 counter-based RNG (Salmon, Moraes, Dror & Shaw 2011, SC'11), the one definition.

Counter convention (fixed: seeded results depend on it; every backend uses it):

* key     = (seed mod 2^32, seed >> 32)
* counter = (node mod 2^32, node >> 32, trajectory, stream << 16 | group)

``node`` addresses a point of the virtual Brownian tree (``sdekit.kernels.brownian``) or
another per-step quantity; ``stream`` separates independent uses (:data:`STREAM_W`,
:data:`STREAM_ZETA`, ...); ``group`` selects components 4·group .. 4·group+3.  One call
gives four 32-bit words, turned into four standard normals by Box–Muller on 32-bit
uniforms ``(x + 1/2)/2^32`` (so |Z| <= 6.77: tails beyond are cut, probability 1.3e-11).

Every backend runs these functions: the kernels call :func:`normal4` / :func:`normals_block`
per lane; the host (numpy backend, tests) calls :func:`normals`, which runs the same code.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .numba_runtime import jit, log_pos, sincos_2pi, u32_to_f64

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_U32 = 2.0**-32


@jit
def _round(c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64):
    p0 = c0 * _M0
    p1 = c2 * _M1
    return ((p1 >> _S32) ^ c1 ^ k0) & _MASK, p1 & _MASK, ((p0 >> _S32) ^ c3 ^ k1) & _MASK, p0 & _MASK


@numba.njit(inline="always", error_model="numpy")
def philox4x32(c0: np.uint64, c1: np.uint64, c2: np.uint64, c3: np.uint64, k0: np.uint64, k1: np.uint64):
    """Philox4x32-10 on uint64-held 32-bit words (Salmon et al. 2011).  The ten rounds are written
    out: a loop inside the lane loop would stop vectorisation."""
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
def normal4(k0: np.uint64, k1: np.uint64, node: np.int64, traj: np.int64, tag: np.int64):
    """Four N(0,1) for counter (node lo, node hi, traj, tag): Box–Muller on the uniforms
    (w + 1/2)/2^32 of the four words, with branch-free log and sin/cos (a few ulp from libm)."""
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


@jit
def normals_block(k0: np.uint64, k1: np.uint64, node: int, first: int, src: "int[:]", stream: int, out: "float[:, :]"):
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


def seed_key(seed: int):
    """The Philox key of a 64-bit seed."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed}")
    return np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)


def normals(seed: int, node: int, trajectories, stream: int, count: int, dtype=np.float64):
    """Standard normals of shape (count, n): component ``i`` of each trajectory at ``node``
    (:func:`normals_block` with the trajectories as lanes)."""
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    traj = np.ascontiguousarray(trajectories, dtype=np.int64).reshape(-1)
    out = np.empty((count, traj.size))
    normals_block(k0, k1, np.int64(node), np.int64(0), traj, np.int64(stream), out)
    return out.astype(dtype)


@jit
def _words(counter, k0, k1, out):
    for j in range(counter.shape[1]):
        out[0, j], out[1, j], out[2, j], out[3, j] = philox4x32(counter[0, j], counter[1, j], counter[2, j],
                                                                counter[3, j], k0, k1)


def philox_words(counter, key):
    """Philox4x32-10 of counters (4, n) under ``key`` (2,), as uint32 words (4, n) (known-answer checks)."""
    c = np.ascontiguousarray(np.asarray(counter, dtype=np.uint64).reshape(4, -1))
    out = np.empty_like(c)
    _words(c, np.uint64(key[0]), np.uint64(key[1]), out)
    return out.astype(np.uint32)
