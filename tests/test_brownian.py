import numpy as np
import pytest
from scipy import stats

from sdekit.kernels.brownian import BrownianTree


def tree(n=2000, m=2, seed=5, traj=None, t0=0.0, t1=2.0):
    return BrownianTree(seed, t0, t1, m, np.arange(n) if traj is None else traj)


def test_walk_and_query_agree_bitwise():
    tr = tree(n=64)
    k = 5
    walked = list(tr.walk(k))
    for j in (1, 3, 16, 31, 32):
        assert np.array_equal(walked[j - 1], tr.query(2.0 * j / 2**k))


def test_coarse_walk_is_a_subsequence_of_fine_walk():
    tr = tree(n=32)
    coarse, fine = list(tr.walk(3)), list(tr.walk(6))
    for j, w in enumerate(coarse):
        assert np.array_equal(w, fine[8 * (j + 1) - 1])


def test_increments_have_variance_dt_and_are_independent():
    n, k, T = 20_000, 4, 2.0
    tr = tree(n=n, m=1, t1=T)
    ws = np.concatenate([np.zeros((1, n))[None], np.array(list(tr.walk(k)))])[:, 0]
    dW = np.diff(ws, axis=0)  # (2^k, n)
    dt = T / 2**k
    for row in dW:
        assert stats.kstest(row / np.sqrt(dt), "norm").pvalue > 1e-4
    C = np.corrcoef(dW)
    assert np.max(np.abs(C - np.eye(2**k))) < 0.04


def test_query_at_non_dyadic_times_has_bridge_law():
    n = 20_000
    tr = tree(n=n, m=1, t1=1.0)
    a, b = tr.query(0.3)[0], tr.query(0.77)[0]
    assert stats.kstest(a / np.sqrt(0.3), "norm").pvalue > 1e-4
    assert stats.kstest((b - a) / np.sqrt(0.47), "norm").pvalue > 1e-4
    assert abs(np.corrcoef(a, b - a)[0, 1]) < 0.03


def test_path_depends_only_on_seed_and_trajectory_index():
    full = tree(n=40).query(0.61)
    part = tree(traj=np.arange(10, 25)).query(0.61)
    assert np.array_equal(full[:, 10:25], part)
    other_seed = BrownianTree(6, 0.0, 2.0, 2, np.arange(40)).query(0.61)
    assert not np.allclose(full, other_seed)


def test_query_outside_span_raises():
    with pytest.raises(ValueError, match="outside"):
        tree(n=2).query(3.0)
