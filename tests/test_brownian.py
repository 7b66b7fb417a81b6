"""The virtual (W, H) Brownian tree: its shape, the split rule (derived here by Gaussian conditioning),
one path for every grid, determinism, and the frontier as kernels drive it on blocks of lanes.

(The laws of ΔW and H and the I_(1,0) composition are in test_levy.py.)"""
import math
import random

import numpy as np
import pytest
import sympy as sp

from sdekit.abi import STREAM_W, TREE_POW2, TREE_POW5, TREE_STACK, TREE_UNITS as U
from sdekit.kernels import brownian as nr
from sdekit.kernels.brownian import BrownianTree, split_point, tree_span
from sdekit.kernels.philox import normals, seed_key


def tree(n=200, m=2, seed=5, traj=None, t0=0.0, t1=1.0):
    return BrownianTree(seed, t0, t1, m, np.arange(n) if traj is None else traj)


def grain(x):
    """Largest 2^i 5^j (i <= TREE_POW2, j <= TREE_POW5) dividing x."""
    i = j = 0
    while x % 2 == 0 and i < TREE_POW2:
        x, i = x // 2, i + 1
    while x % 5 == 0 and j < TREE_POW5:
        x, j = x // 5, j + 1
    return 2**i * 5**j


# ---- shape -------------------------------------------------------------------------------------


def test_tree_span_is_the_power_of_ten_above_the_tspan():
    assert [tree_span(0, t) for t in (1.0, 0.3, 3.0, 10.0, 10.5, 0.01, 1 + 1e-14)] == [1.0, 1.0, 10.0, 10.0, 100.0,
                                                                                       0.01, 1.0]
    assert tree_span(5.0, 6.0) == 1.0
    with pytest.raises(ValueError, match="t1 > t0"):
        tree_span(1.0, 1.0)


def test_coarsest_point_is_the_interior_point_of_largest_grain():
    """Exhaustively on small cells (ties nearest the middle, then lower) and against every larger grain
    on random cells up to the root."""
    rng = random.Random(0)
    for _ in range(2000):
        lo = rng.randrange(0, 3000)
        hi = lo + rng.choice([2, 3, 5, 10, 37, 100, 1000])
        want = max(range(lo + 1, hi), key=lambda x: (grain(x), -abs(2 * x - lo - hi), -x))
        assert nr.coarsest_point(lo, hi) == want
    for _ in range(500):
        lo = rng.randrange(0, U - 10)
        hi = min(U, lo + rng.choice([2, 10**3, 10**6, 10**9, 10**12, 10**15]))
        got = int(nr.coarsest_point(lo, hi))
        assert lo < got < hi
        g = grain(got)
        for i in range(TREE_POW2 + 1):
            for j in range(TREE_POW5 + 1):
                G = 2**i * 5**j
                assert G <= g or not (lo // G + 1) * G < hi, (lo, hi, got, G)


def _depth(p):
    lo, hi, d = 0, U, 0
    while True:
        mid = int(split_point(lo, hi))
        d += 1
        if mid == p:
            return d
        lo, hi = (lo, mid) if p < mid else (mid, hi)


def test_every_point_is_shallower_than_the_frontier_stack():
    """Splits stay in the middle half, so no point is deeper than ~95 splits (TREE_STACK holds the frontier)."""
    rng = random.Random(1)
    pts = [rng.randrange(1, U) for _ in range(500)] + [1, 2, U - 1, U - 2, U // 2 + 1, U // 3]
    assert max(_depth(p) for p in pts) < TREE_STACK


@pytest.mark.parametrize("n, most", [(10, 1.5), (100, 2.0), (1000, 2.3), (50, 2.1), (200, 2.1), (128, 2.5),
                                     (1024, 3.0), (4096, 3.2)])
def test_grids_of_2a5b_steps_cost_few_splits_per_step(n, most):
    """Walking the grid T/n in order splits `most` cells per step or fewer (counted, not timed)."""
    splits = set()
    for j in range(1, n):
        p, lo, hi = j * (U // n), 0, U
        while True:
            mid = int(split_point(lo, hi))
            splits.add(mid)
            if mid == p:
                break
            lo, hi = (lo, mid) if p < mid else (mid, hi)
    assert len(splits) / n <= most


# ---- the split rule ----------------------------------------------------------------------------


def split_law():
    """Mean map A and Cholesky factor L of (ΔW_L, H_L) given (ΔW, H) for a split at fraction q of a
    cell of length h, by Gaussian conditioning of the Brownian functionals (sympy)."""
    k, h = sp.symbols("k h", positive=True)   # q = 1/(1+k): sympy can order the split times
    h1 = h / (1 + k)

    def cov(x, y):   # x, y: (coefficients of W(a), of ∫_0^c W) as dicts
        tot = 0
        for a, ca in x[0].items():
            for b, cb in y[0].items():
                tot += ca * cb * sp.Min(a, b)
            for c, cc in y[1].items():
                lo = sp.Min(a, c)
                tot += ca * cc * (lo**2 / 2 + a * (c - lo))
        for c, cc in x[1].items():
            for b, cb in y[0].items():
                lo = sp.Min(b, c)
                tot += cc * cb * (lo**2 / 2 + b * (c - lo))
            for d, cd in y[1].items():
                lo, hi = sp.Min(c, d), sp.Max(c, d)
                tot += cc * cd * (lo**2 * hi / 2 - lo**3 / 6)
        return sp.simplify(tot)

    half = sp.Rational(1, 2)
    dw, hh = ({h: 1}, {}), ({h: -half}, {h: 1 / h})
    dwl, hl = ({h1: 1}, {}), ({h1: -half}, {h1: 1 / h1})
    vs = [dw, hh, dwl, hl]
    S = sp.Matrix(4, 4, lambda i, j: cov(vs[i], vs[j]))
    A = sp.simplify(S[2:, :2] * S[:2, :2].inv())
    C = sp.simplify(S[2:, 2:] - A * S[:2, 2:])
    L = C.cholesky(hermitian=False)
    q = sp.Symbol("q")
    return [sp.lambdify((q, h), sp.simplify(M.subs(k, (1 - q) / q))) for M in (A, L)]


def test_split_rule_is_the_gaussian_conditional_law():
    """bridge_block's children are A (ΔW, H) + L (Z1, Z2) of the derived law, the right child is what
    the composition rule leaves, and at q = ½ it is the bisection (a = 1.5 H + √h/4 Z1, δ = √(h/48) Z2)."""
    A, L = split_law()
    m, n, seed, node = 2, 6, 9, 12345
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    rng = np.random.default_rng(0)
    dw, hh = rng.normal(size=(m, n)), rng.normal(size=(m, n)) / 3
    z = normals(seed, node, np.arange(n), STREAM_W, 2 * m)
    for q, h in ((0.5, 2.0), (0.25, 0.3), (0.6, 1e-3), (0.7321, 5.0)):
        out = [np.empty((m, n)) for _ in range(4)]
        nr.bridge_block(k0, k1, node, q, h, np.int64(0), np.arange(n), dw, hh, np.empty((2 * m, n)), *out)
        Aq, Lq = np.array(A(q, h), float), np.array(L(q, h), float)
        mean = np.einsum("ij,jcb->icb", Aq, np.array([dw, hh]))
        noise = np.einsum("ij,jcb->icb", Lq, np.array([z[:m], z[m:]]))
        np.testing.assert_allclose(out[0], mean[0] + noise[0], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out[1], mean[1] + noise[1], rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(out[2], dw - out[0], rtol=1e-13, atol=1e-14)
        whole = h * (dw / 2 + hh)
        parts = q * h * (out[0] / 2 + out[1]) + (1 - q) * h * (out[2] / 2 + out[3] + out[0])
        np.testing.assert_allclose(parts, whole, rtol=1e-12, atol=1e-14)
        if q == 0.5:
            a = 1.5 * hh + math.sqrt(h) / 4 * z[:m]
            np.testing.assert_allclose(out[1], hh - a / 2 + math.sqrt(h / 48) * z[m:], rtol=1e-13, atol=1e-14)


def test_root_and_first_split():
    """Node 0: ΔW = √T Z, H = √(T/12) Z' (T = 1 here, so W(t1) is the root); the root splits at T/2."""
    m = 3
    tr = tree(n=10, m=m)
    z = normals(5, 0, np.arange(10), STREAM_W, 2 * m)
    (dw, hh), = tr.grid(1)
    np.testing.assert_array_equal(dw, z[:m])
    np.testing.assert_allclose(hh, math.sqrt(1 / 12) * z[m:], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(tr.query(1.0), dw)
    np.testing.assert_array_equal(tr.query(0.0), 0 * dw)
    assert split_point(0, U) == U // 2
    z = normals(5, U // 2, np.arange(10), STREAM_W, 2 * m)
    a = 1.5 * hh + z[:m] / 4
    (dl, hl), (dr, hr) = tr.grid(2)
    np.testing.assert_allclose(dl, dw / 2 + a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hl, hh - a / 2 + math.sqrt(1 / 48) * z[m:], rtol=0, atol=1e-15)


# ---- one path ------------------------------------------------------------------------------------


def test_one_path_for_every_grid_and_adaptive_times():
    """dt = 0.01, 0.005, 0.001, 2^-7, 2^-10 and random (adaptive-like) times see the same W and H:
    each coarse step's (ΔW, H) is the composition of the finer steps inside it."""
    tr = tree(n=50, m=2)
    ref = tr.grid(100)
    rng = np.random.default_rng(3)
    ragged = np.unique(np.concatenate([np.linspace(0, 1, 101), rng.uniform(0, 1, 300)]))
    for fine in (tr.grid(200), tr.grid(1000), list(tr.increments(ragged))):
        times = np.linspace(0, 1, len(fine) + 1) if len(fine) in (200, 1000) else ragged
        for j in range(100):
            inside = [i for i in range(len(fine)) if 0.01 * j - 1e-12 <= times[i] < 0.01 * (j + 1) - 1e-12]
            dw = sum(fine[i][0] for i in inside)
            integral = sum((times[i + 1] - times[i]) * (fine[i][0] / 2 + fine[i][1]) +
                           (times[i + 1] - times[i]) * sum(fine[k][0] for k in inside if k < i) for i in inside)
            np.testing.assert_allclose(dw, ref[j][0], rtol=0, atol=1e-15)
            np.testing.assert_allclose(integral / 0.01 - dw / 2, ref[j][1], rtol=0, atol=5e-14)
    W128 = np.cumsum([d for d, _ in tr.grid(128)], axis=0)
    W1024 = np.cumsum([d for d, _ in tr.grid(1024)], axis=0)
    W100 = np.cumsum([d for d, _ in ref], axis=0)
    np.testing.assert_allclose(W1024[7::8], W128, rtol=0, atol=5e-14)
    for t in (0.25, 0.5, 0.75, 1.0):      # W at the times the 2^-7 and the 0.01 grids share
        np.testing.assert_allclose(W128[round(128 * t) - 1], W100[round(100 * t) - 1], rtol=0, atol=5e-14)
    np.testing.assert_allclose(tr.query(0.37), W100[36], rtol=0, atol=5e-14)


def test_times_computed_differently_are_one_point():
    """t0 + 0.37 reached as 37·0.01 or as 0.37 (a tspan far from 0): the same position, the same W."""
    t0 = 1000.3
    tr = tree(n=8, t0=t0, t1=t0 + 1.0)
    a, b = t0, t0 + 0.37
    for _ in range(37):
        a += 0.01
    assert a != b and tr.position(a) == tr.position(b) == 37 * (U // 100)
    np.testing.assert_array_equal(tr.query(a), tr.query(b))


def test_increments_are_differences_of_W_at_any_times():
    tr = tree(n=50, m=2)
    times = [0.0, 0.1, 0.1 + 1e-9, 0.3333, 0.5, 0.6, 0.6 + 1e-15, 0.77, 0.999999, 1.0]
    for (a, b), (dw, _) in zip(zip(times[:-1], times[1:]), tr.increments(times)):
        np.testing.assert_allclose(dw, tr.query(b) - tr.query(a), rtol=0, atol=1e-14)


def test_increment_depends_only_on_its_interval():
    """(ΔW, H) of [a, b] is the same whether the path arrived from t0 or through other times
    (the frontier reuses the cells it holds, never redraws), and does not depend on the ensemble."""
    tr = tree(n=40, m=2)
    a, b = 0.4123, 0.6001
    alone = tr.increment(a, b)
    for before in ([0.0, a, b], [0.0, 0.1, 0.4, a, b], [0.3, 0.41, a, b], [0.41229, a, b]):
        via = list(tr.increments(before))[-1]
        np.testing.assert_array_equal(via[0], alone[0])
        np.testing.assert_array_equal(via[1], alone[1])
    part = BrownianTree(5, 0.0, 1.0, 2, np.arange(10, 25)).increment(a, b)
    np.testing.assert_array_equal(part[0], alone[0][:, 10:25])
    np.testing.assert_array_equal(part[1], alone[1][:, 10:25])


def test_path_depends_only_on_seed_and_trajectory_index():
    full = tree(n=40).query(0.61)
    part = tree(traj=np.arange(10, 25)).query(0.61)
    assert np.array_equal(full[:, 10:25], part)
    other_seed = BrownianTree(6, 0.0, 1.0, 2, np.arange(40)).query(0.61)
    assert not np.allclose(full, other_seed)


def test_query_outside_span_raises():
    with pytest.raises(ValueError, match="outside"):
        tree(n=2).query(3.0)


def test_non_increasing_times_raise():
    with pytest.raises(ValueError, match="increasing"):
        list(tree(n=2).increments([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="increasing"):
        tree(n=2).increment(0.7, 0.2)


# ---- as the kernels drive it (tree_start, tree_step on blocks; lane frontiers) --------------------


def block_increments(seed, times, m, traj, dtype=np.float64, block=None, t1=None):
    """Drive tree_start and tree_step as the fixed-step kernel does, one block of lanes ``traj``
    (first = traj[0], src = offsets), or blocks of ``block`` lanes."""
    traj = np.asarray(traj, dtype=np.int64)
    if block is not None:
        parts = [block_increments(seed, times, m, traj[i:i + block], dtype, t1=t1) for i in range(0, len(traj), block)]
        return [tuple(np.concatenate([p[s][j] for p in parts], axis=1) for j in (0, 1)) for s in range(len(parts[0]))]
    times = np.asarray(times, dtype=np.float64)
    T = tree_span(times[0], times[-1] if t1 is None else t1)
    B, first, src = len(traj), np.int64(traj[0]), traj - traj[0]
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    pos = nr.tree_positions(times, times[0], T)
    f_lo, f_hi, meta = np.zeros(TREE_STACK, np.int64), np.zeros(TREE_STACK, np.int64), np.zeros(2, np.int64)
    f_v, zbuf, acc = np.zeros((TREE_STACK, 2, m, B)), np.empty((2 * m, B)), np.empty((6, m, B))
    dW, dH = np.empty((m, B), dtype), np.empty((m, B), dtype)
    nr.tree_start(k0, k1, first, src, T, f_lo, f_hi, f_v, meta, zbuf)
    out = []
    for step in range(len(times) - 1):
        nr.tree_step(k0, k1, first, src, T, step, pos, f_lo, f_hi, f_v, meta, zbuf, acc, dW, dH)
        out.append((dW.copy(), dH.copy()))
    return out


@pytest.mark.parametrize("m", [1, 2, 5])
def test_block_frontier_is_the_host_path_for_any_blocking(m):
    rng = np.random.default_rng(m)
    times = np.unique(np.concatenate([[0.0, 1.0, 0.5, 0.25, 0.6, 0.6 + 1e-15, 0.5 - 1e-12, 0.5 + 1e-12],
                                      rng.uniform(0, 1, 60)]))
    traj = np.arange(3, 3 + 11)
    ref = list(BrownianTree(4, 0.0, 1.0, m, traj).increments(times))
    got = block_increments(4, times, m, traj)
    again = block_increments(4, times, m, traj, block=4)   # thread count / block size independence
    for (a, b), (c, d), (e, f) in zip(got, ref, again, strict=True):
        for x, y in ((a, c), (b, d), (a, e), (b, f)):
            np.testing.assert_array_equal(x, y)


def test_lane_frontiers_are_the_host_path():
    """Every lane on its own times (the adaptive kernel's per-lane frontiers, with trial copies that a
    rejected step drops) gives BrownianTree.increment of its interval, bitwise."""
    m, n, seed = 2, 5, 8
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    src = np.arange(n, dtype=np.int64)
    bufs = nr.lane_tree_buffers(n, m)
    nr.lane_tree_start(k0, k1, np.int64(0), src, 1.0, *bufs[:3], bufs[6])
    rng = np.random.default_rng(0)
    t = np.zeros(n)
    host = BrownianTree(seed, 0.0, 1.0, m, src)
    dW, dH = np.empty((m, n)), np.empty((m, n))
    for _ in range(30):
        te = np.minimum(t + rng.uniform(1e-4, 0.08, n), 1.0)
        act = t < 1.0
        nr.lane_tree_increments(k0, k1, np.int64(0), src, 1.0, 0.0, t, te, act, *bufs, dW, dH)
        for b in np.flatnonzero(act):
            want = host.increment(t[b], te[b])
            np.testing.assert_array_equal(dW[:, b], want[0][:, b])
            np.testing.assert_array_equal(dH[:, b], want[1][:, b])
            if rng.uniform() < 0.7:          # accepted; else the lane retries from t with another te
                nr.lane_tree_accept(b, *bufs[:6])
                t[b] = te[b]


def test_float32_outputs_are_the_float64_path_rounded():
    times = np.array([0.0, 0.3, 0.55, 1.0])
    traj = np.arange(8)
    ref = block_increments(2, times, 2, traj)
    got = block_increments(2, times, 2, traj, dtype=np.float32)
    for (rw, rh), (dw, dh) in zip(ref, got):
        assert dw.dtype == np.float32 and dh.dtype == np.float32
        np.testing.assert_array_equal(dw, rw.astype(np.float32))
        np.testing.assert_array_equal(dh, rh.astype(np.float32))


def test_zero_length_step_gives_zero():
    """Times closer than the tree's resolution are one position: a zero step, not NaN."""
    for times in ([0.0, 0.5, 0.5, 1.0], [0.0, 0.3, 0.3, 1.0], [0.0, 0.5, 1.0 - 1e-17, 1.0]):
        out = block_increments(1, np.array(times), 1, np.arange(4))
        assert all(np.isfinite(dw).all() and np.isfinite(dh).all() for dw, dh in out)
        zero = out[1] if times[1] == times[2] else out[2]
        assert not zero[0].any() and not zero[1].any()
