"""Virtual (W, H) Brownian tree on Philox counters: the Brownian path is addressed by time.

Convention (DESIGN.md, fixed; one tree for every method, so EM and SRA with the same seed see
the same W).  The tree's span ``[t0, t1]`` is the solve's tspan (with ``brownian="steps"``, N
equal fixed steps h use ``[t0, t0 + 2^⌈log2 N⌉ h]``: ``sdekit.solve.time_grid``).  On it
(length T) each dyadic interval — heap index ``i`` (root 1,
children 2i and 2i+1; level l holds i in [2^l, 2^{l+1}), length h = T 2^-l) — carries the
pair (ΔW, H) of each of the m components: the increment and the space-time Lévy area

    H_[a,b] = (1/(b−a)) ∫_a^b (W(s) − W(a) − (s−a)/(b−a) ΔW) ds,   H ~ N(0, h/12) ⊥ ΔW,

so that ``I_(1,0) = ∫_a^b (W(s) − W(a)) ds = h (ΔW/2 + H)`` (methods.md §5.3–5.4).

Normals: node ``i`` draws ``normals_block(key, i, traj, STREAM_W)`` (2m of them); components ``0 .. m−1``
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
* Below depth :data:`sdekit.abi.TREE_DEPTH` (leaf cells of length u = T 2^-48) the path is linear: a partial
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
* :meth:`BrownianTree.query` returns W(t) at any t in O(TREE_DEPTH).
The functions below are the one definition, run by every backend: kernels call them per block of
lanes (``first + src[b]`` the trajectory of lane b); :class:`BrownianTree` is their host face (the
numpy backend and tests, all trajectories as lanes).  Results depend only on (seed, trajectory,
times).
"""
from __future__ import annotations

import math

import numpy as np

from ..abi import STREAM_W, TREE_DEPTH
from .numba_runtime import jit
from .philox import normals_block, seed_key


@jit
def bridge_block(k0, k1, node, level, T, first, src, dw, hh, z, dw_l, h_l, dw_r, h_r):
    """Bisect the (ΔW, H) interval ``node`` at ``level`` of the tree (the bisection rule above):
    children into (dw_l, h_l) and (dw_r, h_r).  Normals of the
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
    stack (``level`` >= 0) or as the current interval of the query path (``path[:, TREE_DEPTH]``).

    Buffers (float64 unless said): ``zbuf`` (2M, B); walk stack ``stk_dw``, ``stk_h``
    (max(level, 0) + 2, M, B), ``stk_lv``, ``stk_node`` int64 (max(level, 0) + 2,); query path
    ``path`` (2, TREE_DEPTH + 1, M, B) when level < 0 (else (2, 1, M, B), unused)."""
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
    sibling (ΔW, H) of every level l where the point went left, ``path[:, TREE_DEPTH]`` its final
    interval; ``acc`` (6, M, B) is scratch."""
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
    # split point m (coarsest dyadic point of [a, b]) and its level c
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
    by their plans (:func:`tree_query_step`).  Buffers: see :func:`tree_start`;
    ``acc`` (6, M, B)."""
    if step == 0:
        ipa, fra, na = np.int64(0), 0.0, np.int64(0)
    else:
        ipa, fra, na = q_ipos[step - 1], q_frac[step - 1], q_levels[step - 1]
    tree_query_step(k0, k1, first, src, T, ipa, fra, na, q_ipos[step], q_frac[step], q_levels[step], zbuf,
                    path, acc, dW, dH)


@jit
def query_plan(t, t0, T):
    """(ipos, frac, levels) locating ``t`` in the tree on [t0, t0 + T]: ``ipos + frac`` is its position in
    units of T 2^-TREE_DEPTH; ``levels`` the number of bisections needed (0 for t0, -1 for t1; an exact
    dyadic t is the left end of the interval reached).  Times outside are clamped."""
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
    the path at the lane's accepted time and the trial path, each (B, 2, TREE_DEPTH + 1, m, 1)."""
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
    :func:`lane_tree_accept` keeps.  The result equals ``BrownianTree.increment(ta, tb)``: a path's
    node values do not depend on the route that reached it."""
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


class BrownianTree:
    """The Brownian paths of trajectories ``trajectories`` (int array) for ``seed``: the host face of
    the functions above (every backend runs them; the numpy backend with all trajectories as lanes)."""

    def __init__(self, seed: int, t0: float, t1: float, m: int, trajectories, dtype=np.float64):
        if not t1 > t0:
            raise ValueError(f"Brownian tree needs t1 > t0, got [{t0}, {t1}]")
        self.seed, self.t0, self.t1, self.m = int(seed), float(t0), float(t1), int(m)
        self.T = self.t1 - self.t0
        self.traj = np.ascontiguousarray(trajectories, dtype=np.int64).reshape(-1)
        self.dtype = dtype
        self.k0, self.k1 = (np.uint64(k) for k in seed_key(self.seed))

    def _buffers(self):
        m, B = self.m, len(self.traj)
        return np.empty((2 * m, B)), np.empty((m, B)), np.empty((m, B))

    def _cast(self, *xs):
        return tuple(x.astype(self.dtype) for x in xs)

    def walk(self, k: int):
        """Yield (ΔW, H), each (m, n), of the steps [t0 + (j−1)T/2^k, t0 + jT/2^k], j = 1 .. 2^k."""
        m, B = self.m, len(self.traj)
        zbuf, dW, dH = self._buffers()
        stk_dw, stk_h = np.empty((k + 2, m, B)), np.empty((k + 2, m, B))
        stk_lv, stk_node = np.empty(k + 2, np.int64), np.empty(k + 2, np.int64)
        level, first = np.int64(k), np.int64(0)
        sp = tree_start(self.k0, self.k1, first, self.traj, self.T, level, zbuf, stk_dw, stk_h, stk_lv, stk_node,
                        np.empty((2, 1, m, B)))
        for _ in range(1 << k):
            sp = tree_walk(self.k0, self.k1, first, self.traj, self.T, level, sp, zbuf, stk_dw, stk_h, stk_lv,
                           stk_node, dW, dH)
            yield self._cast(dW, dH)

    def query_plan(self, t: float):
        """(ipos, frac, levels) locating ``t`` in the tree (:func:`query_plan`); ValueError outside it."""
        s = (float(t) - self.t0) / self.T
        if not -1e-12 <= s <= 1 + 1e-12:
            raise ValueError(f"time {t} outside the Brownian tree's span [{self.t0}, {self.t1}]")
        ipos, frac, levels = query_plan(float(t), self.t0, self.T)
        return int(ipos), float(frac), int(levels)

    def increments(self, times):
        """Yield (ΔW, H), each (m, n), over [times[i], times[i+1]] for an increasing sequence
        ``times`` in [t0, t1] (any spacing)."""
        m, B = self.m, len(self.traj)
        zbuf, dW, dH = self._buffers()
        path, acc = np.empty((2, TREE_DEPTH + 1, m, B)), np.empty((6, m, B))
        stk = np.empty((2, m, B))
        first = np.int64(0)
        tree_start(self.k0, self.k1, first, self.traj, self.T, np.int64(-1), zbuf, stk, stk,
                   np.empty(2, np.int64), np.empty(2, np.int64), path)
        pa = (0, 0.0, 0)
        for i, t in enumerate(times):
            pb = self.query_plan(t)
            if i == 0 and pb == pa:
                continue
            if pa[2] == -1 or ((pb[0], pb[1]) <= (pa[0], pa[1]) and pb[2] != -1):
                raise ValueError("Brownian tree increments need strictly increasing times")
            tree_query_step(self.k0, self.k1, first, self.traj, self.T, *pa, *pb, zbuf, path, acc, dW, dH)
            pa = pb
            if i:
                yield self._cast(dW, dH)

    def increment(self, a: float, b: float):
        """(ΔW, H) over one arbitrary interval [a, b] of [t0, t1], a < b."""
        return next(self.increments([a, b]))

    def query(self, t: float):
        """W(t), shape (m, n), for a time ``t`` in [t0, t1] common to all trajectories."""
        if self.query_plan(t) == (0, 0.0, 0):
            return np.zeros((self.m, len(self.traj)), self.dtype)
        return self.increment(self.t0, t)[0]
