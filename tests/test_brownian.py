"""The virtual (W, H) Brownian tree: structure, determinism, walk and query paths, blocks of lanes.

(The laws of ΔW and H and the I_(1,0) composition are in test_levy.py.)"""
import math

import numpy as np
import pytest

from sdekit.abi import STREAM_W, TREE_DEPTH as DEPTH
from sdekit.kernels import brownian as nr
from sdekit.kernels.brownian import BrownianTree
from sdekit.kernels.philox import normals, seed_key


def tree(n=2000, m=2, seed=5, traj=None, t0=0.0, t1=2.0):
    return BrownianTree(seed, t0, t1, m, np.arange(n) if traj is None else traj)


def test_root_convention():
    """Node 0 normals (2m of them): components 0..m-1 give ΔW = √T Z, m..2m-1 give H = √(T/12) Z'."""
    T, m = 2.0, 3
    tr = tree(n=10, m=m, t1=T)
    z = normals(5, 0, np.arange(10), STREAM_W, 2 * m)
    (dw, hh), = tr.walk(0)
    np.testing.assert_array_equal(dw, math.sqrt(T) * z[:m])
    np.testing.assert_array_equal(hh, math.sqrt(T / 12) * z[m:])
    np.testing.assert_array_equal(tr.query(T), dw)
    np.testing.assert_array_equal(tr.query(0.0), 0 * dw)


def test_first_bisection():
    """Children of the root by the documented rule (a = 1.5 H + √h/4 Z1, δ = √(h/48) Z2)."""
    T, m = 2.0, 2
    tr = tree(n=10, m=m, t1=T)
    (dw, hh), = tr.walk(0)
    z = normals(5, 1, np.arange(10), STREAM_W, 2 * m)
    a = 1.5 * hh + math.sqrt(T) / 4 * z[:m]
    d = math.sqrt(T / 48) * z[m:]
    (dl, hl), (dr, hr) = tr.walk(1)
    np.testing.assert_allclose(dl, dw / 2 + a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(dr, dw / 2 - a, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hl, hh - a / 2 + d, rtol=0, atol=1e-15)
    np.testing.assert_allclose(hr, hh - a / 2 - d, rtol=0, atol=1e-15)


@pytest.mark.parametrize("k", [3, 6])
def test_coarse_walk_composes_fine_walk(k):
    """Level k and k+1 describe the same path: ΔW adds up, H composes (halves rule)."""
    tr = tree(n=64, m=2)
    coarse, fine = list(tr.walk(k)), list(tr.walk(k + 1))
    assert len(coarse) == 2**k and len(fine) == 2**(k + 1)
    for j, (dw, hh) in enumerate(coarse):
        (d1, h1), (d2, h2) = fine[2 * j], fine[2 * j + 1]
        np.testing.assert_allclose(dw, d1 + d2, rtol=0, atol=1e-14)
        np.testing.assert_allclose(hh, (h1 + h2) / 2 + (d1 - d2) / 4, rtol=0, atol=1e-14)


def test_walk_composes_across_several_levels():
    """The consecutive-interval rule (h1+h2) H = h1 H1 + h2 H2 + (h2/2) ΔW1 − (h1/2) ΔW2 folds
    the 32 steps of level 5 into the root."""
    T = 2.0
    tr = tree(n=64, m=1, t1=T)
    (dw0, hh0), = tr.walk(0)
    h = T / 32
    acc_h, acc_w, acc_len = None, None, 0.0
    for dw, hh in tr.walk(5):
        if acc_w is None:
            acc_w, acc_h, acc_len = dw, hh, h
            continue
        acc_h = (acc_len * acc_h + h * hh + h / 2 * acc_w - acc_len / 2 * dw) / (acc_len + h)
        acc_w, acc_len = acc_w + dw, acc_len + h
    np.testing.assert_allclose(acc_w, dw0, rtol=0, atol=1e-13)
    np.testing.assert_allclose(acc_h, hh0, rtol=0, atol=1e-13)


def test_walk_increments_and_query_agree():
    """Walking level k, stepping the query path over the same grid and differencing W queries
    give the same (ΔW, H) / W."""
    T, k = 2.0, 5
    tr = tree(n=64, m=2, t1=T)
    walked = list(tr.walk(k))
    stepped = list(tr.increments(np.linspace(0.0, T, 2**k + 1)))
    for (dw, hh), (dq, hq) in zip(walked, stepped):
        np.testing.assert_allclose(dq, dw, rtol=0, atol=1e-12)
        np.testing.assert_allclose(hq, hh, rtol=0, atol=1e-12)
    W = np.cumsum([dw for dw, _ in walked], axis=0)
    for j in (1, 3, 16, 31, 32):
        np.testing.assert_allclose(tr.query(T * j / 2**k), W[j - 1], rtol=0, atol=1e-12)
    for j in (7, 20):  # an arbitrary sub-interval of the grid, computed on its own
        dw, hh = tr.increment(T * j / 2**k, T * (j + 1) / 2**k)
        np.testing.assert_allclose(dw, walked[j][0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(hh, walked[j][1], rtol=0, atol=1e-12)


def test_increments_are_differences_of_W_at_any_times():
    tr = tree(n=50, m=2, t1=1.0)
    times = [0.0, 0.1, 0.1 + 1e-9, 0.3333, 0.5, 0.6, 0.6 + 1e-15, 0.77, 0.999999, 1.0]  # 0.6: one leaf cell
    for (a, b), (dw, _) in zip(zip(times[:-1], times[1:]), tr.increments(times)):
        np.testing.assert_allclose(dw, tr.query(b) - tr.query(a), rtol=0, atol=1e-14)


def test_increment_depends_only_on_its_interval():
    """(ΔW, H) of [a, b] is the same whether the path arrived from t0 or through other times
    (the shared tree levels are reused, not redrawn), and does not depend on the ensemble."""
    tr = tree(n=40, m=2, t1=1.0)
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
    other_seed = BrownianTree(6, 0.0, 2.0, 2, np.arange(40)).query(0.61)
    assert not np.allclose(full, other_seed)


def test_query_outside_span_raises():
    with pytest.raises(ValueError, match="outside"):
        tree(n=2).query(3.0)


def test_non_increasing_times_raise():
    with pytest.raises(ValueError, match="increasing"):
        list(tree(n=2).increments([0.0, 0.5, 0.5]))
    with pytest.raises(ValueError, match="increasing"):
        tree(n=2).increment(0.7, 0.2)


# --- as a kernel drives them (tree_start, tree_walk, tree_query_increment on blocks of lanes) ------------------


def numba_increments(seed, times, m, traj, level, dtype=np.float64, block=None):
    """Drive tree_start and tree_walk / tree_query_increment as the generated kernel does, one block of lanes
    ``traj`` (first = traj[0], src = offsets) — or several blocks of ``block`` lanes."""
    traj = np.asarray(traj, dtype=np.int64)
    if block is not None:
        parts = [numba_increments(seed, times, m, traj[i:i + block], level, dtype) for i in range(0, len(traj), block)]
        return [tuple(np.concatenate([p[s][j] for p in parts], axis=1) for j in (0, 1)) for s in range(len(parts[0]))]
    times = np.asarray(times, dtype=np.float64)
    T = times[-1] - times[0]
    B = len(traj)
    first = np.int64(traj[0])
    src = traj - traj[0]
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    plan = BrownianTree(seed, times[0], times[-1], 1, np.zeros(1))
    q = [plan.query_plan(t) for t in times[1:]]
    q_ipos = np.array([p[0] for p in q], np.int64)
    q_frac = np.array([p[1] for p in q], np.float64)
    q_levels = np.array([p[2] for p in q], np.int64)
    ns = max(level, 0) + 2
    zbuf, acc = np.empty((2 * m, B)), np.empty((6, m, B))
    path = np.empty((2, DEPTH + 1 if level < 0 else 1, m, B))
    stk_dw, stk_h = np.empty((ns, m, B)), np.empty((ns, m, B))
    stk_lv, stk_node = np.empty(ns, np.int64), np.empty(ns, np.int64)
    dW, dH = np.empty((m, B), dtype), np.empty((m, B), dtype)
    lv = np.int64(level)
    sp = nr.tree_start(k0, k1, first, src, T, lv, zbuf, stk_dw, stk_h, stk_lv, stk_node, path)
    out = []
    for step in range(len(times) - 1):
        if level >= 0:
            sp = nr.tree_walk(k0, k1, first, src, T, lv, sp, zbuf, stk_dw, stk_h, stk_lv, stk_node, dW, dH)
        else:
            nr.tree_query_increment(k0, k1, first, src, T, step, q_ipos, q_frac, q_levels, zbuf, path, acc, dW, dH)
        out.append((dW.copy(), dH.copy()))
    return out


def _close(got, ref, tol):
    for (dw, hh), (rw, rh) in zip(got, ref, strict=True):
        for x, r in ((dw, rw), (hh, rh)):
            np.testing.assert_allclose(x, r, rtol=0, atol=tol * max(np.abs(r).max(), 1e-300))


@pytest.mark.parametrize("m", [1, 2, 3])
def test_query_path_of_a_dyadic_grid_is_its_walk(m):
    """Two access algorithms, one path: the query path over the level-k grid gives the walk's (ΔW, H)."""
    T, k = 2.0, 6
    traj = np.arange(7, 7 + 13)
    times = np.linspace(0.0, T, 2**k + 1)
    ref = list(BrownianTree(11, 0.0, T, m, traj).walk(k))
    _close(numba_increments(11, times, m, traj, -1), ref, 1e-12)


@pytest.mark.parametrize("m", [1, 2, 3])
def test_query_path_is_the_same_for_any_blocking_of_lanes(m):
    rng = np.random.default_rng(m)
    T = 1.7
    times = np.sort(np.concatenate([[0.0, T, 0.5 * T, 0.25 * T], rng.uniform(0, T, 60)]))
    # steps inside one leaf cell (2^-48 T) and just across a coarse dyadic point
    times = np.sort(np.concatenate([times, [0.6, 0.6 + 1e-15, 0.5 * T - 1e-12, 0.5 * T + 1e-12]]))
    traj = np.arange(3, 3 + 11)
    ref = list(BrownianTree(4, 0.0, T, m, traj).increments(times))
    got = numba_increments(4, times, m, traj, -1)   # lanes first + src[b], first = traj[0]
    for (a, b), (c, d) in zip(got, ref, strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    # bitwise the same per lane whatever the blocking (thread count / block size independence)
    again = numba_increments(4, times, m, traj, -1, block=4)
    for (a, b), (c, d) in zip(got, again):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)


def test_float32_outputs_are_the_float64_path_rounded():
    T = 1.0
    times = np.array([0.0, 0.3, 0.55, 1.0])
    traj = np.arange(8)
    ref = numba_increments(2, times, 2, traj, -1)
    got = numba_increments(2, times, 2, traj, -1, dtype=np.float32)
    for (rw, rh), (dw, dh) in zip(ref, got):
        assert dw.dtype == np.float32 and dh.dtype == np.float32
        np.testing.assert_array_equal(dw, rw.astype(np.float32))
        np.testing.assert_array_equal(dh, rh.astype(np.float32))
    ref = numba_increments(2, np.linspace(0, T, 9), 1, traj, 3)
    got = numba_increments(2, np.linspace(0, T, 9), 1, traj, 3, dtype=np.float32)
    for (rw, rh), (dw, dh) in zip(ref, got):
        np.testing.assert_array_equal(dh, rh.astype(np.float32))


def test_zero_length_step_gives_zero():
    """Times closer than the tree's resolution (T 2^-48) make a zero step, not NaN."""
    for times in ([0.0, 0.5, 0.5, 1.0], [0.0, 0.3, 0.3, 1.0], [0.0, 0.5, 1.0 - 1e-17, 1.0]):
        out = numba_increments(1, np.array(times), 1, np.arange(4), -1)
        assert all(np.isfinite(dw).all() and np.isfinite(dh).all() for dw, dh in out)
        zero = out[1] if times[1] == times[2] else out[2]
        assert not zero[0].any() and not zero[1].any()
