"""Virtual (W, H) Brownian tree on Philox counters: the Brownian path is addressed by time.

Convention (DESIGN.md; one tree for every method, every dt and every adaptive solve, so they all
see the same W).  The tree's span is ``[t0, t0 + T]`` with ``T`` = :func:`tree_span` (the smallest
power of ten >= the tspan's length), addressed by integer *positions* ``0 .. U``,
``U = TREE_UNITS = 2^27 5^11`` (units of T/U ≈ 1.5e-16 T).  Each cell [lo, hi] of the tree carries
the pair (ΔW, H) of each of the m components: the increment and the space-time Lévy area

    H_[a,b] = (1/(b−a)) ∫_a^b (W(s) − W(a) − (s−a)/(b−a) ΔW) ds,   H ~ N(0, h/12) ⊥ ΔW,

so that ``I_(1,0) = ∫_a^b (W(s) − W(a)) ds = h (ΔW/2 + H)`` (methods.md §5.3–5.4).

* **Shape.**  The root is [0, U].  A cell splits in two at the *coarsest* point of its middle half
  (:func:`split_point`): the one of largest grain 2^i 5^j (largest divisor of that form), i.e.
  the time of smallest denominator T/(2^a 5^b).  So every grid T/n with n = 2^a 5^b (dt = 0.01,
  0.005, 0.001, 0.02, 2^-k, ... for T = 1) is a set of tree points reached in order at 1.5–3
  splits per step, where a dyadic tree is one split per step for dyadic grids only and ~40 for
  the rest.  Cells narrower than TREE_FINE units (grids finer than T/4e8) split at their middle.
* **Split rule** (exact conditional law, derived by Gaussian conditioning in
  tests/test_brownian.py): a cell of length h with (ΔW, H) splits at fraction q (p = 1 − q) with
  the node's two normals Z1, Z2, c = 1 − 3qp, s = √(h q p / c):

      ΔW_L = q ΔW + 6qp H + s c Z1,          ΔW_R = ΔW − ΔW_L,
      H_L  = q² (H − s Z1 / 2) + p s Z2/√12,  H_R = p² (H − s Z1 / 2) − q s Z2/√12.

  At q = ½ this is the bisection of Foster (2020) / diffrax ``_brownian/tree.py``.  The halves
  compose back: ``h (ΔW/2 + H) = h_L (ΔW_L/2 + H_L) + h_R (ΔW_R/2 + H_R) + h_R ΔW_L``.
* **Normals.**  Splitting at position m draws ``normals_block(key, m, traj, STREAM_W)`` (2m of
  them: Z1 of each component, then Z2); the root (ΔW = √T Z1, H = √(T/12) Z2) is node 0.
* **Times to positions** (:func:`tree_position`): the coarsest position within TREE_SNAP units
  (plus the time's float rounding) of (t − t0)/T · U, so t0 + 0.3 computed as 30 · 0.01 or
  3 · 0.1 is the same point.  The path is exact down to the unit: no linear leaf.

Access: a *frontier* — the cells that tile [a, U] after the current point a, nearest on top of a
stack (at most one per depth) — moves forward to b by :func:`tree_advance`: whole cells before b
are composed into (ΔW, I) relative to W(a), the cell holding b is split until b is a split point.
Every access (fixed grids per block of lanes, adaptive steps per lane, the host) is this one
function; a path's node values do not depend on the route that reached them.  Results depend
only on (seed, trajectory, times).  The kernels call these functions per block of lanes
(``first + src[b]`` the trajectory of lane b); :class:`BrownianTree` is their host face.
"""
from __future__ import annotations

import math

import numpy as np

from ..abi import STREAM_W, TREE_FINE, TREE_POW2, TREE_POW5, TREE_SNAP, TREE_STACK, TREE_UNITS
from .numba_runtime import jit
from .philox import normals_block, seed_key

_SQRT12 = math.sqrt(12.0)


def tree_span(t0: float, t1: float) -> float:
    """Length T of the tree's span [t0, t0 + T]: the smallest power of ten >= t1 − t0 (to 1e-12), so
    that decimal step sizes (0.01, 0.005, ...) are tree points whatever the tspan."""
    length = float(t1) - float(t0)
    if not (np.isfinite(length) and length > 0):
        raise ValueError(f"Brownian tree needs t1 > t0, got [{t0}, {t1}]")
    k = math.ceil(math.log10(length))
    while 10.0 ** (k - 1) >= length * (1 - 1e-12):
        k -= 1
    while 10.0 ** k < length * (1 - 1e-12):
        k += 1
    return 10.0 ** k


@jit
def _bit_length(x: int):
    return 0 if x == 0 else math.frexp(np.float64(x))[1]     # exact for x < 2^53


@jit
def coarsest_point(lo: int, hi: int):
    """The interior integer of (lo, hi) of largest grain 2^i 5^j (i <= TREE_POW2, j <= TREE_POW5);
    where several share it (only at i = TREE_POW2), the one nearest the middle, the lower on a tie.
    Needs hi − lo >= 2.  (Within one j the integer of most trailing binary zeros is unique.)"""
    best = lo + 1
    best_g = np.int64(0)
    p5 = np.int64(1)
    for _ in range(TREE_POW5 + 1):
        a = lo // p5 + 1                 # multiples a·5^j .. b·5^j lie inside
        b = (hi - 1) // p5
        if a > b:
            break
        top = _bit_length((a - 1) ^ b) - 1
        if top > TREE_POW2:
            g = p5 << TREE_POW2
            amin, amax = lo // g + 1, (hi - 1) // g
            k = (lo + hi) // (2 * g)
            if 2 * (k + 1) * g - (lo + hi) < (lo + hi) - 2 * k * g:
                k += 1
            x = min(max(k, amin), amax) * g
        else:
            g = p5 << top
            x = ((b >> top) << top) * p5
        if g > best_g:
            best_g, best = g, x
        p5 *= 5
    return best


@jit
def split_point(lo: int, hi: int):
    """Where cell [lo, hi] (width w = hi − lo >= 2) splits: at its coarsest point in the middle half
    [lo + ⌈w/4⌉, hi − ⌈w/4⌉] (so no child is wider than 3w/4 and no point deeper than ~95 splits), or
    at its middle when narrower than TREE_FINE units."""
    w = hi - lo
    if w >= TREE_FINE:
        e = (w + 3) // 4
        return coarsest_point(lo + e - 1, hi - e + 1)
    return lo + w // 2


@jit
def tree_position(t: float, t0: float, T: float):
    """Position of time ``t`` in the tree on [t0, t0 + T]: the coarsest integer within TREE_SNAP units
    plus the rounding of ``t`` of (t − t0)/T · U; clamped to [0, U]."""
    x = (t - t0) / T * TREE_UNITS
    d = TREE_SNAP + (abs(t0) + abs(t)) / T * TREE_UNITS * 2.0 ** -51
    if x <= d:
        return np.int64(0)
    if x >= TREE_UNITS - d:
        return np.int64(TREE_UNITS)
    return coarsest_point(np.int64(math.ceil(x - d)) - 1, np.int64(math.floor(x + d)) + 1)


@jit
def tree_positions(times, t0, T):
    """:func:`tree_position` of every time of an array (a fixed grid's, on the host)."""
    out = np.empty(times.shape[0], np.int64)
    for i in range(times.shape[0]):
        out[i] = tree_position(times[i], t0, T)
    return out


@jit
def bridge_block(k0: np.uint64, k1: np.uint64, node: int, q: float, h: float, first: int, src: "int[:]",
                 dw: "float64[:, :]", hh: "float64[:, :]", z: "float64[:, :]", dw_l: "float64[:, :]", h_l: "float64[:, :]",
                 dw_r: "float64[:, :]", h_r: "float64[:, :]"):
    """Split the (ΔW, H) cell of length ``h`` at fraction ``q`` with the normals of ``node`` (the split
    rule above): left child into (dw_l, h_l), right into (dw_r, h_r), each (M, B); outputs may alias
    the inputs.  ``z`` is (2M, B) scratch."""
    normals_block(k0, k1, node, first, src, STREAM_W, z)
    p = 1.0 - q
    c = 1.0 - 3.0 * q * p
    s = math.sqrt(h * q * p / c)
    sc, qp6, q2, p2, s12 = s * c, 6.0 * q * p, q * q, p * p, s / _SQRT12
    m, nb = dw.shape
    for i in range(m):
        for b in range(nb):
            z1, z2, w, hv = z[i, b], z[m + i, b], dw[i, b], hh[i, b]
            left = q * w + qp6 * hv + sc * z1
            g = hv - 0.5 * s * z1
            dw_l[i, b] = left
            dw_r[i, b] = w - left
            h_l[i, b] = q2 * g + p * s12 * z2
            h_r[i, b] = p2 * g - q * s12 * z2


@jit
def tree_start(k0: np.uint64, k1: np.uint64, first: int, src: "int[:]", T: float, f_lo: "int[:]", f_hi: "int[:]",
               f_v: "float64[:, :, :, :]", meta: "int[:]", zbuf: "float64[:, :]"):
    """A block's frontier at t0: the root [0, U] with ΔW = √T Z1, H = √(T/12) Z2 of node 0.
    Frontier: cells ``f_lo``, ``f_hi`` int64 (TREE_STACK,), values ``f_v`` (TREE_STACK, 2, M, B),
    ``meta`` int64 (2,) = (cells on it, current position); ``zbuf`` (2M, B)."""
    normals_block(k0, k1, np.int64(0), first, src, STREAM_W, zbuf)
    sd_w, sd_h = math.sqrt(T), math.sqrt(T / 12.0)
    m, nb = f_v.shape[2], f_v.shape[3]
    for i in range(m):
        for b in range(nb):
            f_v[0, 0, i, b] = sd_w * zbuf[i, b]
            f_v[0, 1, i, b] = sd_h * zbuf[m + i, b]
    f_lo[0], f_hi[0] = 0, TREE_UNITS
    meta[0], meta[1] = 1, 0


@jit
def _compose(ln: float, dw: "float64[:, :]", hh: "float64[:, :]", E: "float64[:, :]", K: "float64[:, :]"):
    """Append a cell of length ln to the accumulated (E, K) = (W − W(a), ∫_a (W − W(a))) of [a, x]."""
    for i in range(E.shape[0]):
        for b in range(E.shape[1]):
            K[i, b] = K[i, b] + ln * (0.5 * dw[i, b] + hh[i, b] + E[i, b])
            E[i, b] = E[i, b] + dw[i, b]


@jit
def _fill(x: "float[:, :]", v: float):
    for i in range(x.shape[0]):
        for b in range(x.shape[1]):
            x[i, b] = v


@jit
def _copy(src: "float64[:, :]", dst: "float64[:, :]"):
    for i in range(src.shape[0]):
        for b in range(src.shape[1]):
            dst[i, b] = src[i, b]


@jit
def tree_advance(k0: np.uint64, k1: np.uint64, first: int, src: "int[:]", T: float, pos: int, f_lo: "int[:]",
                 f_hi: "int[:]", f_v: "float64[:, :, :, :]", meta: "int[:]", zbuf: "float64[:, :]", acc: "float64[:, :, :]",
                 dW: "float[:, :]", dH: "float[:, :]"):
    """(ΔW, H) of [a, pos] into dW, dH (M, B), a = the frontier's position (``meta[1]`` <= pos), and move
    the frontier to ``pos``.  ``acc`` (6, M, B) is scratch.  A zero-length step gives zeros.
    (One split call site: each call site of the inlined Philox costs seconds of compile.)"""
    a, n = meta[1], meta[0]
    E, K, cw, ch, lw, lh = acc[0], acc[1], acc[2], acc[3], acc[4], acc[5]
    _fill(E, 0.0)
    _fill(K, 0.0)
    u = T / TREE_UNITS
    while n > 0 and f_hi[n - 1] <= pos:        # whole cells before pos
        n -= 1
        _compose((f_hi[n] - f_lo[n]) * u, f_v[n, 0], f_v[n, 1], E, K)
    if n > 0 and f_lo[n - 1] < pos:            # pos inside the top cell: split it down to pos
        n -= 1
        lo, hi = f_lo[n], f_hi[n]
        _copy(f_v[n, 0], cw)
        _copy(f_v[n, 1], ch)
        while True:
            mid = split_point(lo, hi)
            before = mid <= pos                # left child before pos: composed; else the right one is pushed
            l_w, l_h = (lw, lh) if before else (cw, ch)
            r_w, r_h = (cw, ch) if before else (f_v[n, 0], f_v[n, 1])
            bridge_block(k0, k1, mid, (mid - lo) / (hi - lo), (hi - lo) * u, first, src, cw, ch, zbuf, l_w, l_h,
                         r_w, r_h)
            if before:
                _compose((mid - lo) * u, lw, lh, E, K)
                lo = mid
                if mid < pos:
                    continue
                _copy(cw, f_v[n, 0])           # pos reached: the right child is the frontier's top
                _copy(ch, f_v[n, 1])
            f_lo[n], f_hi[n] = mid, hi
            n += 1
            if before:
                break
            hi = mid
    meta[0], meta[1] = n, max(a, pos)
    if pos <= a:
        _fill(dW, 0.0)
        _fill(dH, 0.0)
        return
    hs = (pos - a) * u
    for i in range(dW.shape[0]):
        for b in range(dW.shape[1]):
            dW[i, b] = E[i, b]
            dH[i, b] = K[i, b] / hs - 0.5 * E[i, b]


@jit
def tree_buffers(B, m):
    """A block's frontier and scratch for ``tree_start``/``tree_step``: cells ``f_lo``, ``f_hi`` int64
    (TREE_STACK,), values ``f_v`` (TREE_STACK, 2, m, B), ``meta`` int64 (2,), normals ``zbuf`` (2m, B),
    accumulators ``acc`` (6, m, B).  Only ``meta`` is zeroed: the frontier is a stack read below its
    height ``meta[0]`` (written by ``tree_start`` / ``tree_advance``), the scratch is written before it is
    read — so a CUDA thread does not zero ~8 KiB of local memory per trajectory (m = 4)."""
    return (np.empty(TREE_STACK, np.int64), np.empty(TREE_STACK, np.int64), np.empty((TREE_STACK, 2, m, B)),
            np.zeros(2, np.int64), np.empty((2 * m, B)), np.empty((6, m, B)))


@jit
def tree_step(k0: np.uint64, k1: np.uint64, first: int, src: "int[:]", T: float, step: int, tree_pos: "int[:]",
              f_lo: "int[:]", f_hi: "int[:]", f_v: "float64[:, :, :, :]", meta: "int[:]", zbuf: "float64[:, :]",
              acc: "float64[:, :, :]", dW: "float[:, :]", dH: "float[:, :]"):
    """(ΔW, H) of fixed step ``step`` (positions ``tree_pos[step]`` -> ``tree_pos[step + 1]``) of a block."""
    tree_advance(k0, k1, first, src, T, tree_pos[step + 1], f_lo, f_hi, f_v, meta, zbuf, acc, dW, dH)


# ---- per-lane frontiers (adaptive steps: every lane on its own times) -----------------------------


@jit
def lane_tree_buffers(B, m):
    """Per-lane frontiers of the adaptive kernel — cells (B, 2, TREE_STACK) int64, values
    (B, TREE_STACK, 2, m, 1), meta (B, 2) int64 — at the lane's accepted time, a trial copy, and one
    lane's scratch: normals (2m, 1), accumulators (6, m, 1), increments (m, 1) twice.  Stacks and scratch
    are not zeroed (as :func:`tree_buffers`; the trial copy is written by ``_copy_frontier`` first)."""
    return (np.empty((B, 2, TREE_STACK), np.int64), np.empty((B, TREE_STACK, 2, m, 1)), np.zeros((B, 2), np.int64),
            np.empty((B, 2, TREE_STACK), np.int64), np.empty((B, TREE_STACK, 2, m, 1)), np.zeros((B, 2), np.int64),
            np.empty((2 * m, 1)), np.empty((6, m, 1)), np.empty((m, 1)), np.empty((m, 1)))


@jit
def lane_tree_start(k0: np.uint64, k1: np.uint64, first: int, src: "int[:]", T: float, f_c: "int[:, :, :]",
                    f_v: "float64[:, :, :, :, :]", f_m: "int[:, :]", zbuf: "float64[:, :]"):
    """Every lane's frontier at t0."""
    for b in range(src.shape[0]):
        tree_start(k0, k1, first, src[b:b + 1], T, f_c[b, 0], f_c[b, 1], f_v[b], f_m[b], zbuf)


@jit
def _copy_frontier(b: int, f_c: "int[:, :, :]", f_v: "float64[:, :, :, :, :]", f_m: "int[:, :]", g_c: "int[:, :, :]",
                   g_v: "float64[:, :, :, :, :]", g_m: "int[:, :]"):
    n = f_m[b, 0]
    g_m[b, 0], g_m[b, 1] = n, f_m[b, 1]
    for r in range(2):
        for k in range(n):
            g_c[b, r, k] = f_c[b, r, k]
    for k in range(n):
        for r in range(2):
            for i in range(f_v.shape[3]):
                g_v[b, k, r, i, 0] = f_v[b, k, r, i, 0]


@jit
def lane_tree_increments(k0: np.uint64, k1: np.uint64, first: int, src: "int[:]", T: float, t0: float, ta: "float[:]",
                         tb: "float[:]", act: "bool[:]", f_c: "int[:, :, :]", f_v: "float64[:, :, :, :, :]", f_m: "int[:, :]",
                         g_c: "int[:, :, :]", g_v: "float64[:, :, :, :, :]", g_m: "int[:, :]", zbuf: "float64[:, :]",
                         acc: "float64[:, :, :]", dwl: "float64[:, :]", dhl: "float64[:, :]", dW: "float[:, :]",
                         dH: "float[:, :]"):
    """(ΔW, H) over [ta[b], tb[b]] of every active lane b into dW, dH (M, B).  The lane's frontier
    (``f_*``, at its last accepted time) is moved to ta[b] first if it lags (from the root if it is
    ahead: a stop snapped back by rounding); the step is taken on the trial copy ``g_*``, which
    :func:`lane_tree_accept` keeps.  Equals ``BrownianTree.increment(ta, tb)``.  ``zbuf``, ``acc``,
    ``dwl``, ``dhl``: one lane's scratch (:func:`lane_tree_buffers`)."""
    m = dW.shape[0]
    for b in range(src.shape[0]):
        if not act[b]:
            for i in range(m):
                dW[i, b] = 0.0
                dH[i, b] = 0.0
            continue
        lane = src[b:b + 1]
        pa = tree_position(ta[b], t0, T)
        if pa < f_m[b, 1]:
            tree_start(k0, k1, first, lane, T, f_c[b, 0], f_c[b, 1], f_v[b], f_m[b], zbuf)
        for phase in range(2):      # the frontier to pa if it lags, then the trial copy to pb (one call site)
            if phase == 0 and pa == f_m[b, 1]:
                continue
            if phase == 1:
                _copy_frontier(b, f_c, f_v, f_m, g_c, g_v, g_m)
            c, v, mm = (f_c, f_v, f_m) if phase == 0 else (g_c, g_v, g_m)
            target = pa if phase == 0 else tree_position(tb[b], t0, T)
            tree_advance(k0, k1, first, lane, T, target, c[b, 0], c[b, 1], v[b], mm[b], zbuf, acc, dwl, dhl)
        for i in range(m):
            dW[i, b] = dwl[i, 0]
            dH[i, b] = dhl[i, 0]


@jit
def lane_tree_accept(b: int, f_c: "int[:, :, :]", f_v: "float64[:, :, :, :, :]", f_m: "int[:, :]", g_c: "int[:, :, :]",
                     g_v: "float64[:, :, :, :, :]", g_m: "int[:, :]"):
    """Lane b accepted its step: its trial frontier becomes its frontier."""
    _copy_frontier(b, g_c, g_v, g_m, f_c, f_v, f_m)


class BrownianTree:
    """The Brownian paths of trajectories ``trajectories`` (int array) for ``seed`` on a solve's tspan
    [t0, t1]: the host face of the functions above (every backend runs them; the numpy backend with
    all trajectories as lanes)."""

    def __init__(self, seed: int, t0: float, t1: float, m: int, trajectories, dtype=np.float64):
        self.T = tree_span(t0, t1)
        self.seed, self.t0, self.t1, self.m = int(seed), float(t0), float(t1), int(m)
        self.traj = np.ascontiguousarray(trajectories, dtype=np.int64).reshape(-1)
        self.dtype = dtype
        self.k0, self.k1 = (np.uint64(k) for k in seed_key(self.seed))

    def position(self, t: float) -> int:
        """Integer position of ``t`` (:func:`tree_position`); ValueError outside [t0, t1]."""
        span = self.t1 - self.t0
        if not -1e-12 * span <= float(t) - self.t0 <= span * (1 + 1e-12):
            raise ValueError(f"time {t} outside the Brownian tree's span [{self.t0}, {self.t1}]")
        return int(tree_position(float(t), self.t0, self.T))

    def increments(self, times):
        """Yield (ΔW, H), each (m, n), over [times[i], times[i+1]] for an increasing sequence
        ``times`` in [t0, t1] (any spacing)."""
        m, B = self.m, len(self.traj)
        f_lo, f_hi = np.zeros(TREE_STACK, np.int64), np.zeros(TREE_STACK, np.int64)
        f_v, meta = np.zeros((TREE_STACK, 2, m, B)), np.zeros(2, np.int64)
        zbuf, acc, dW, dH = np.empty((2 * m, B)), np.empty((6, m, B)), np.empty((m, B)), np.empty((m, B))
        first = np.int64(0)
        tree_start(self.k0, self.k1, first, self.traj, self.T, f_lo, f_hi, f_v, meta, zbuf)
        prev = None
        for i, t in enumerate(times):
            pos = self.position(t)
            if prev is not None and not float(t) > prev:
                raise ValueError("Brownian tree increments need strictly increasing times")
            prev = float(t)
            tree_advance(self.k0, self.k1, first, self.traj, self.T, np.int64(pos), f_lo, f_hi, f_v, meta, zbuf, acc,
                         dW, dH)
            if i:
                yield dW.astype(self.dtype), dH.astype(self.dtype)

    def increment(self, a: float, b: float):
        """(ΔW, H) over one arbitrary interval [a, b] of [t0, t1], a < b."""
        return next(self.increments([a, b]))

    def grid(self, n: int):
        """(ΔW, H) of the n equal steps of [t0, t1] (a list)."""
        return list(self.increments(self.t0 + (self.t1 - self.t0) * (np.arange(n + 1) / n)))

    def paths(self, ts) -> np.ndarray:
        """W at the increasing times ``ts`` in [t0, t1] for every trajectory, shape (n, len(ts), m): the layout of
        an ensemble's ``sol.y``, so an exact solution of the paths compares with it directly.  Each W is the running
        sum of the path's increments between the times (one walk through the tree), as a solve stepping onto
        them adds them up."""
        ts = np.asarray(ts, dtype=float).reshape(-1)
        n = len(self.traj)
        if ts.size and not np.all(np.diff(ts) > 0):
            raise ValueError("Brownian paths need strictly increasing times")
        W = np.zeros((ts.size, self.m, n))
        if ts.size == 0:
            return W.transpose(2, 0, 1).astype(self.dtype)
        from_start = self.position(ts[0]) == 0          # ts[0] is t0: W = 0 there, the walk starts at it
        times = list(ts) if from_start else [self.t0] + list(ts)
        total = np.zeros((self.m, n))
        for i, (dW, _) in enumerate(self.increments(times)):
            total = total + dW
            W[i + from_start] = total
        return W.transpose(2, 0, 1).astype(self.dtype)

    def query(self, t: float):
        """W(t), shape (m, n), for a time ``t`` in [t0, t1] common to all trajectories (:meth:`paths` gives many
        times in ``sol.y``'s layout)."""
        if self.position(t) == 0:
            return np.zeros((self.m, len(self.traj)), self.dtype)
        return self.increment(self.t0, t)[0]
