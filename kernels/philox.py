"""Philox4x32-10 counter-based RNG (Salmon, Moraes, Dror & Shaw 2011, SC'11), vectorised.

Counter convention (fixed: seeded results depend on it; every backend uses it):

* key     = (seed mod 2^32, seed >> 32)
* counter = (node mod 2^32, node >> 32, trajectory, stream << 16 | group)

``node`` addresses a point of the virtual Brownian tree (``sdekit.kernels.brownian``) or
another per-step quantity; ``stream`` separates independent uses (:data:`STREAM_W`,
:data:`STREAM_ZETA`, ...); ``group`` selects components 4·group .. 4·group+3.  One call
gives four 32-bit words, turned into four standard normals by Box–Muller on 32-bit
uniforms ``(x + 1/2)/2^32`` (so |Z| <= 6.77: tails beyond are cut, probability 1.3e-11).
"""
from __future__ import annotations

import numpy as np

from ..abi import STREAM_W, STREAM_ZETA  # noqa: F401  (the streams of the counter convention)

M0, M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
W0, W1 = np.uint32(0x9E3779B9), np.uint32(0xBB67AE85)
MASK32 = np.uint64(0xFFFFFFFF)
ROUNDS = 10



def philox4x32(counter, key, rounds: int = ROUNDS):
    """Philox4x32-``rounds`` on arrays: ``counter`` (4, ...) and ``key`` (2, ...) of uint32."""
    c = [np.asarray(x, dtype=np.uint32) for x in counter]
    k0, k1 = (np.asarray(x, dtype=np.uint32) for x in key)
    with np.errstate(over="ignore"):
        for r in range(rounds):
            if r:
                k0, k1 = k0 + W0, k1 + W1
            p0 = c[0].astype(np.uint64) * M0
            p1 = c[2].astype(np.uint64) * M1
            hi0, lo0 = (p0 >> np.uint64(32)).astype(np.uint32), (p0 & MASK32).astype(np.uint32)
            hi1, lo1 = (p1 >> np.uint64(32)).astype(np.uint32), (p1 & MASK32).astype(np.uint32)
            c = [hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0]
    return np.stack(np.broadcast_arrays(*c))


def seed_key(seed: int):
    """The Philox key of a 64-bit seed."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be an integer in [0, 2^64), got {seed}")
    return np.uint32(seed & 0xFFFFFFFF), np.uint32(seed >> 32)


def box_muller(words, dtype=np.float64):
    """Four uint32 words (4, ...) -> four N(0,1) (4, ...): pairs (w0, w1) and (w2, w3)."""
    u = (words.astype(np.float64) + 0.5) * 2.0**-32
    r01 = np.sqrt(-2.0 * np.log(u[0]))
    r23 = np.sqrt(-2.0 * np.log(u[2]))
    a01, a23 = 2.0 * np.pi * u[1], 2.0 * np.pi * u[3]
    return np.stack([r01 * np.cos(a01), r01 * np.sin(a01), r23 * np.cos(a23), r23 * np.sin(a23)]).astype(dtype)


def normals(seed: int, node, trajectories, stream: int, count: int, dtype=np.float64):
    """Standard normals of shape (count, n): component ``i`` of each trajectory at ``node``.

    ``node``: int or uint64 array broadcastable to the trajectories; ``trajectories``: int array (n,).
    """
    k0, k1 = seed_key(seed)
    traj = np.asarray(trajectories, dtype=np.uint64)
    node = np.asarray(node, dtype=np.uint64)
    lo = (node & MASK32).astype(np.uint32)
    hi = (node >> np.uint64(32)).astype(np.uint32)
    out = []
    for group in range((count + 3) // 4):
        tag = np.uint32((stream << 16) | group)
        words = philox4x32((lo, hi, traj.astype(np.uint32), tag), (k0, k1))
        out.append(box_muller(np.broadcast_to(words, (4,) + np.broadcast_shapes(lo.shape, traj.shape)), dtype))
    return np.concatenate(out)[:count]
