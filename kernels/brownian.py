"""Virtual (W, H) Brownian tree on Philox counters: the Brownian path is addressed by time.

Convention (DESIGN.md, fixed; one tree for every method, so EM and SRA with the same seed see
the same W).  The tree's span ``[t0, t1]`` is the solve's tspan (with ``brownian="steps"``, N
equal fixed steps h use ``[t0, t0 + 2^⌈log2 N⌉ h]``: ``sdekit.solve.time_grid``).  On it
(length T) each dyadic interval — heap index ``i`` (root 1,
children 2i and 2i+1; level l holds i in [2^l, 2^{l+1}), length h = T 2^-l) — carries the
pair (ΔW, H) of each of the m components: the increment and the space-time Lévy area

    H_[a,b] = (1/(b−a)) ∫_a^b (W(s) − W(a) − (s−a)/(b−a) ΔW) ds,   H ~ N(0, h/12) ⊥ ΔW,

so that ``I_(1,0) = ∫_a^b (W(s) − W(a)) ds = h (ΔW/2 + H)`` (methods.md §5.3–5.4).

Normals: node ``i`` draws ``normals(seed, i, traj, STREAM_W, 2m)``; components ``0 .. m−1``
are Z1 (one per Wiener component), components ``m .. 2m−1`` are Z2.  For m <= 2 that is one
Philox4x32 call (one group of four normals) per node.

* Root (node 0): ``ΔW = √T Z1``, ``H = √(T/12) Z2``.
* Bisection of interval ``i`` (level l, h = T 2^-l) with the normals of node ``i``:
  ``a = 1.5 H + (√h/4) Z1``, ``δ = √(h/48) Z2``;
  left  ``ΔW_L = ΔW/2 + a``, ``H_L = (H − a/2) + δ``;
  right ``ΔW_R = ΔW/2 − a``, ``H_R = (H − a/2) − δ``.
  This is the exact conditional law of the halves given (ΔW, H) (Foster 2020; diffrax
  ``_brownian/tree.py``, space-time Lévy area): halves compose back as
  ``ΔW = ΔW_L + ΔW_R``, ``H = (H_L + H_R)/2 + (ΔW_L − ΔW_R)/4``.
* Below depth :data:`DEPTH` (leaf cells of length u = T 2^-48) the path is linear: a partial
  leaf piece contributes its share of the leaf's ΔW and no Lévy area.  Against a true Brownian
  path refined further, W(t) at a non-dyadic t misses a leaf bridge (~√u ≈ 6e-8 √T) and
  ``I_(1,0)`` of a step misses ~u^{3/2}; the law of a step's (ΔW, H) is Brownian up to relative
  variance errors O(u/h) (< 1e-11 for h > 1e-3 T).  Whole leaves (exact dyadic times at level
  48) keep their H.

Access:

* :meth:`BrownianTree.walk` visits the dyadic grid of level k in order (about one node per
  step) and yields each step's (ΔW, H) — the node values themselves.
* :meth:`BrownianTree.increments` gives (ΔW, H) over consecutive intervals of ANY increasing
  time sequence; :meth:`BrownianTree.increment` over one arbitrary [a, b].  The step
  [a, b] is split at its coarsest dyadic point m: (ΔW, I_(1,0)) of the suffix [a, m] of a's
  level-c interval and of the prefix [m, b] of b's are composed from tree intervals
  (``I = I_am + I_mb + (b − m) ΔW_am``), all relative to W(a), W(m) — no cancellation of
  large numbers, so H is accurate to rounding relative to √h even for tiny steps.  The
  levels above c are shared with the previous point (their normals are not drawn again).
* :meth:`BrownianTree.query` returns W(t) at any t in O(DEPTH).
The Numba kernels (``kernels/numba_runtime.tree_start``, ``tree_walk``,
``tree_query_increment``) do the same arithmetic in the same order, so the backends agree to rounding (their Box–Muller differs by
a few ulp); results depend only on (seed, trajectory, times).
"""
from __future__ import annotations

import math

import numpy as np

from ..abi import STREAM_W, TREE_DEPTH as DEPTH
from .philox import normals

_TOP = 1 << DEPTH


def bisect(dw, hh, z1, z2, T: float, level: int):
    """Children (ΔW_L, H_L, ΔW_R, H_R) of an interval (ΔW, H) at ``level`` given its node's normals.
    The arithmetic (and its order) is that of ``numba_runtime.bridge_block``."""
    hl = T * 2.0 ** -level
    s1 = math.sqrt(hl) * 0.25
    s2 = math.sqrt(hl / 48.0)
    a = 1.5 * hh + s1 * z1
    d = s2 * z2
    half = 0.5 * dw
    hc = hh - 0.5 * a
    return half + a, hc + d, half - a, hc - d


def split_point(pa, pb):
    """(m, c) for a step between tree positions ``pa = (ipos, frac, levels)`` < ``pb``: ``m`` the
    coarsest dyadic point (units T 2^-DEPTH) in [a, b], ``c`` the level of the intervals that
    end / start at m.  ``m = -1`` when a and b lie inside one leaf cell."""
    ipa, fra, na = pa
    ipb, frb, nb = pb
    if nb == -1:
        return _TOP, 0
    if na == 0:
        return 0, 0
    xa = ipa if fra == 0.0 else ipa + 1
    if xa > ipb:
        return -1, DEPTH
    top = ((xa - 1) ^ ipb).bit_length() - 1
    return (ipb >> top) << top, DEPTH - top


class _Path:
    """The tree path of the last point reached: its plan, the right siblings ``sib[l]`` of the
    levels where it went left, and its final interval ``cur`` (the leaf, or the interval it
    starts)."""

    def __init__(self, plan, sib, cur):
        self.plan, self.sib, self.cur = plan, sib, cur


class BrownianTree:
    """The Brownian paths of trajectories ``trajectories`` (int array) for ``seed``."""

    def __init__(self, seed: int, t0: float, t1: float, m: int, trajectories, dtype=np.float64):
        if not t1 > t0:
            raise ValueError(f"Brownian tree needs t1 > t0, got [{t0}, {t1}]")
        self.seed, self.t0, self.t1, self.m = int(seed), float(t0), float(t1), int(m)
        self.T = self.t1 - self.t0
        self.traj = np.asarray(trajectories, dtype=np.int64)
        self.dtype = dtype
        z = self._z(0)
        self.dw_root = math.sqrt(self.T) * z[:self.m]
        self.h_root = math.sqrt(self.T / 12.0) * z[self.m:]
        self.w_end = self.dw_root  # W(t1)

    def _z(self, node):
        return normals(self.seed, node, self.traj, STREAM_W, 2 * self.m, np.float64)

    def _cast(self, *xs):
        return tuple(x.astype(self.dtype, copy=False) for x in xs)

    def walk(self, k: int):
        """Yield (ΔW, H), each (m, n), of the steps [t0 + (j−1)T/2^k, t0 + jT/2^k], j = 1 .. 2^k."""
        m = self.m
        stack = [(0, 1, self.dw_root, self.h_root)]  # (level, heap index, ΔW, H)
        while stack:
            level, node, dw, hh = stack.pop()
            if level == k:
                yield self._cast(dw, hh)
                continue
            z = self._z(node)
            dl, hl, dr, hr = bisect(dw, hh, z[:m], z[m:], self.T, level)
            stack.append((level + 1, 2 * node + 1, dr, hr))
            stack.append((level + 1, 2 * node, dl, hl))

    def query_plan(self, t: float):
        """(ipos, frac, levels) locating ``t`` in the tree: ``ipos + frac`` is its position in
        units of T 2^-DEPTH; ``levels`` the number of bisections needed (0 for t0, -1 for t1;
        an exact dyadic t is the left end of the interval reached).  Shared by every backend
        so all of them walk the same nodes."""
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

    def _nodes_z(self, ipos: int, lo: int, hi: int):
        """Normals (2m, hi − lo, n) of the nodes at levels lo .. hi−1 on the path to ``ipos``."""
        nodes = np.array([(1 << lv) + (ipos >> (DEPTH - lv)) for lv in range(lo, hi)], dtype=np.uint64)
        return normals(self.seed, nodes[:, None], self.traj[None, :], STREAM_W, 2 * self.m, np.float64)

    def query(self, t: float):
        """W(t), shape (m, n), for a time ``t`` in [t0, t1] common to all trajectories."""
        ipos, frac, levels = self.query_plan(t)
        if levels == -1:
            return self.w_end.astype(self.dtype, copy=False)
        m = self.m
        z = self._nodes_z(ipos, 0, levels)
        w = np.zeros_like(self.dw_root)
        dw, hh = self.dw_root, self.h_root
        for level in range(levels):
            dl, hl, dr, hr = bisect(dw, hh, z[:m, level], z[m:, level], self.T, level)
            if (ipos >> (DEPTH - 1 - level)) & 1:
                w = w + dl
                dw, hh = dr, hr
            else:
                dw, hh = dl, hl
        if frac != 0.0:
            w = w + frac * dw
        return w.astype(self.dtype, copy=False)

    def _start(self):
        return _Path((0, 0.0, 0), {}, (self.dw_root, self.h_root))

    def _advance(self, path: _Path, pb):
        """(ΔW, H) (float64) from the point of ``path`` to the point with plan ``pb``; moves
        ``path`` there.  Same steps and arithmetic as ``numba_runtime.tree_query_step``."""
        pa = path.plan
        ipa, fra, na = pa
        ipb, frb, nb = pb
        if na == -1 or (ipb, frb) <= (ipa, fra) and nb != -1:
            raise ValueError("Brownian tree increments need strictly increasing times")
        u = self.T * 2.0 ** -DEPTH
        mpos, c = split_point(pa, pb)
        cur_dw, cur_h = path.cur
        if mpos == -1:  # a and b in one leaf cell: linear piece, no Lévy area
            path.plan = pb
            dw = (frb - fra) * cur_dw
            return dw, np.zeros_like(dw)
        if nb == -1:
            ipb, frb = _TOP, 0.0
        zero = np.zeros((self.m, len(self.traj)))
        # suffix [a, m] of a's level-c interval: E = W(m) − W(a), K = ∫_a^m (W − W(a))
        a_empty = fra == 0.0 and ipa == mpos
        if a_empty:
            E = K = zero
        else:
            if fra != 0.0:
                s = DEPTH
                g = 1.0 - fra
                E = g * cur_dw
                K = 0.5 * (g * u) * E
            else:
                s = na
                E = cur_dw
                K = (self.T * 2.0 ** -na) * (0.5 * cur_dw + cur_h)
            for lv in range(s - 1, c - 1, -1):
                if not (ipa >> (DEPTH - 1 - lv)) & 1:
                    dr, hr = path.sib[lv]
                    K = K + (self.T * 2.0 ** -(lv + 1)) * (0.5 * dr + hr + E)
                    E = E + dr
        # prefix [m, b] of b's level-c interval: D = W(b) − W(m), J = ∫_m^b (W − W(m))
        D = J = zero
        if nb != -1:
            if not a_empty:
                cur_dw, cur_h = path.sib[c - 1]
            m = self.m
            if nb > c:
                z = self._nodes_z(ipb, c, nb)
            for lv in range(c, nb):
                dl, hl, dr, hr = bisect(cur_dw, cur_h, z[:m, lv - c], z[m:, lv - c], self.T, lv)
                if (ipb >> (DEPTH - 1 - lv)) & 1:
                    J = J + (self.T * 2.0 ** -(lv + 1)) * (0.5 * dl + hl + D)
                    D = D + dl
                    cur_dw, cur_h = dr, hr
                else:
                    path.sib[lv] = (dr, hr)
                    cur_dw, cur_h = dl, hl
            if frb != 0.0:
                pbw = frb * cur_dw
                J = J + (frb * u) * (D + 0.5 * pbw)
                D = D + pbw
            path.cur = (cur_dw, cur_h)
        path.plan = pb
        bm = (float(ipb - mpos) + frb) * u
        hs = (float(ipb - ipa) + (frb - fra)) * u
        dw = E + D
        hh = (K + J + bm * E) / hs - 0.5 * dw
        return dw, hh

    def increments(self, times):
        """Yield (ΔW, H), each (m, n), over [times[i], times[i+1]] for an increasing sequence
        ``times`` in [t0, t1] (any spacing)."""
        times = list(times)
        path = self._start()
        if times:
            p0 = self.query_plan(times[0])
            if p0 != path.plan:
                self._advance(path, p0)
        for t in times[1:]:
            yield self._cast(*self._advance(path, self.query_plan(t)))

    def increment(self, a: float, b: float):
        """(ΔW, H) over one arbitrary interval [a, b] of [t0, t1], a < b."""
        return next(self.increments([a, b]))
