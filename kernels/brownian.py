"""Virtual Brownian tree on Philox counters: the Brownian path is addressed by time.

Convention (DESIGN.md, fixed): on ``[t0, t1]`` (length T) each trajectory's m-dimensional
W has ``W(t0) = 0`` and ``W(t1) = √T Z_0``; the midpoint of the dyadic interval with heap
index ``i`` (root 1, children 2i and 2i+1; level l holds i in [2^l, 2^{l+1})) is drawn from
the Brownian bridge, ``W_mid = (W_a + W_b)/2 + √(T 2^{-l}/4) Z_i``, where ``Z_i`` are the
normals of node ``i`` in stream :data:`~sdekit.kernels.philox.STREAM_W` (Gaines & Lyons
1997; Li et al. 2020; methods.md §5.4).  Below depth :data:`DEPTH` the path is linearly
interpolated (|error| <~ √(T 2^-DEPTH)).

* :meth:`BrownianTree.walk` visits the dyadic grid of level k in order, one node per step;
* :meth:`BrownianTree.query` returns W at any time in O(DEPTH);
both compute the same node values with the same arithmetic, so W at a grid time is
bitwise the same however it was reached, and ``dt`` and ``dt/2`` see the same path.
"""
from __future__ import annotations

import math

import numpy as np

from .philox import STREAM_W, normals

DEPTH = 48


class BrownianTree:
    """The Brownian paths of trajectories ``trajectories`` (int array) for ``seed``."""

    def __init__(self, seed: int, t0: float, t1: float, m: int, trajectories, dtype=np.float64):
        if not t1 > t0:
            raise ValueError(f"Brownian tree needs t1 > t0, got [{t0}, {t1}]")
        self.seed, self.t0, self.t1, self.m = int(seed), float(t0), float(t1), int(m)
        self.T = self.t1 - self.t0
        self.traj = np.asarray(trajectories, dtype=np.int64)
        self.dtype = dtype
        self.w_end = math.sqrt(self.T) * self._z(0)

    def _z(self, node):
        return normals(self.seed, node, self.traj, STREAM_W, self.m, np.float64)

    def _mid(self, wa, wb, node: int, level: int):
        return 0.5 * (wa + wb) + math.sqrt(self.T * 2.0**-level / 4.0) * self._z(node)

    def walk(self, k: int):
        """Yield W(t0 + j T/2^k) for j = 1 .. 2^k, each of shape (m, n)."""
        current = np.zeros_like(self.w_end)
        stack = [(0, 1, self.w_end)]  # (level, heap index, W at the interval's right end)
        while stack:
            level, node, w_right = stack[-1]
            if level == k:
                stack.pop()
                current = w_right
                yield current.astype(self.dtype, copy=False)
                continue
            w_mid = self._mid(current, w_right, node, level)
            stack[-1] = (level + 1, 2 * node + 1, w_right)
            stack.append((level + 1, 2 * node, w_mid))

    def query_plan(self, t: float):
        """(ipos, frac, levels) locating ``t`` in the tree: ``ipos + frac`` is its position in
        units of T 2^-DEPTH; ``levels`` the number of bisections needed (0 for W(t0),
        -1 for W(t1)).  Shared by every backend so all of them walk the same nodes."""
        s = (float(t) - self.t0) / self.T
        if not -1e-12 <= s <= 1 + 1e-12:
            raise ValueError(f"time {t} outside the Brownian tree's span [{self.t0}, {self.t1}]")
        pos = min(max(s, 0.0), 1.0) * 2.0**DEPTH
        ipos = int(math.floor(pos))
        frac = pos - ipos
        if ipos >= 1 << DEPTH:
            return ipos, 0.0, -1
        if ipos == 0 and frac == 0.0:
            return 0, 0.0, 0
        # down to where t is a midpoint (exact dyadic time), else all DEPTH levels
        levels = DEPTH - (ipos & -ipos).bit_length() + 1 if frac == 0.0 else DEPTH
        return ipos, frac, levels

    def query(self, t: float):
        """W(t), shape (m, n), for a time ``t`` in [t0, t1] common to all trajectories.

        The nodes on the path to ``t`` are known from ``t`` alone, so their normals are drawn
        in one vectorised call; the bridge arithmetic then runs level by level.
        """
        ipos, frac, levels = self.query_plan(t)
        if levels == -1:
            return self.w_end.astype(self.dtype, copy=False)
        nodes = np.array([(1 << lv) + (ipos >> (DEPTH - lv)) for lv in range(levels)], dtype=np.uint64)
        z = normals(self.seed, nodes[:, None], self.traj[None, :], STREAM_W, self.m, np.float64)
        wa, wb = np.zeros_like(self.w_end), self.w_end
        lo = 0
        for level in range(levels):
            half = 1 << (DEPTH - level - 1)
            w_mid = 0.5 * (wa + wb) + math.sqrt(self.T * 2.0**-level / 4.0) * z[:, level]
            if ipos < lo + half:
                wb = w_mid
            else:
                wa, lo = w_mid, lo + half
        if frac == 0.0:
            return wa.astype(self.dtype, copy=False)
        return (wa + frac * (wb - wa)).astype(self.dtype, copy=False)
