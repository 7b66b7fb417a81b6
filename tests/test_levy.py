"""Law of the (W, H) tree's increments and the composition of I_(1,0) = h (ΔW/2 + H).

H_[a,b] = (1/h) ∫_a^b (W(s) − W(a) − (s−a)/h ΔW) ds must be N(0, h/12) and independent of ΔW,
on dyadic and non-dyadic intervals, and I_(1,0) must compose like an integral
(methods.md §5.4: summing the sub-interval I_(1,0) is wrong)."""
import numpy as np
import pytest
from scipy import stats

from sdekit.kernels.brownian import BrownianTree

N = 100_000


def check_law(pairs, lengths, tol_corr=0.016):
    """pairs: list of (ΔW, H) each (n,), over disjoint intervals of the given lengths."""
    cols, sds = [], []
    for (dw, hh), h in zip(pairs, lengths):
        assert stats.kstest(dw / np.sqrt(h), "norm").pvalue > 1e-4
        assert stats.kstest(hh / np.sqrt(h / 12), "norm").pvalue > 1e-4
        cols += [dw, hh]
        sds += [np.sqrt(h), np.sqrt(h / 12)]
    C = np.cov(np.array(cols)) / np.outer(sds, sds)
    n = len(cols[0])
    assert np.max(np.abs(np.diag(C) - 1)) < 5 * np.sqrt(2 / n)            # variances h, h/12
    assert np.max(np.abs(C - np.diag(np.diag(C)))) < tol_corr             # ΔW ⊥ H, steps independent


@pytest.mark.parametrize("n", [8, 10, 5])
def test_grid_law(n):
    """Steps of T/8 (cells of the tree), T/10 and T/5 (each composed of uneven splits): (ΔW, H) of every
    step has variances (h, h/12), ΔW ⊥ H and the steps are independent."""
    tr = BrownianTree(n, 0.0, 1.0, 1, np.arange(N))
    check_law([(dw[0], hh[0]) for dw, hh in tr.grid(n)], [1 / n] * n)


def test_non_dyadic_increment_law():
    times = [0.0, 0.3, 0.77, 1.0]
    tr = BrownianTree(2, 0.0, 1.0, 1, np.arange(N))
    pairs = [(dw[0], hh[0]) for dw, hh in tr.increments(times)]
    check_law(pairs, np.diff(times))


def test_tiny_and_straddling_steps_law():
    """Steps far below the grid scale, one straddling the coarsest point T/2: H keeps
    its N(0, h/12) law (no cancellation of large accumulated integrals)."""
    n = 20_000
    tr = BrownianTree(3, 0.0, 1.0, 2, np.arange(n))
    for a, h in ((0.5 - 3e-8, 6e-8), (0.123456789, 1e-7), (0.999, 1e-3)):
        dw, hh = tr.increment(a, a + h)
        for c in range(2):
            assert stats.kstest(dw[c] / np.sqrt(h), "norm").pvalue > 1e-4
            assert stats.kstest(hh[c] / np.sqrt(h / 12), "norm").pvalue > 1e-4
            assert abs(np.corrcoef(dw[c], hh[c])[0, 1]) < 0.04


def I10(h, dw, hh):
    return h * (0.5 * dw + hh)


def test_I10_composes_like_an_integral():
    """I_(1,0)[a,b] = I_(1,0)[a,s] + I_(1,0)[s,b] + (b−s) ΔW[a,s] exactly (up to rounding), for
    arbitrary a < s < b; the naive sum misses the last term."""
    tr = BrownianTree(4, 0.0, 3.0, 2, np.arange(500))
    for a, s, b in ((0.3, 0.77, 1.31), (0.0, 1.5, 3.0), (1.2345, 1.2346, 2.9), (0.01, 2.999, 3.0)):
        d1, h1 = tr.increment(a, s)
        d2, h2 = tr.increment(s, b)
        d, hh = tr.increment(a, b)
        np.testing.assert_allclose(d, d1 + d2, rtol=0, atol=1e-13)
        whole = I10(b - a, d, hh)
        parts = I10(s - a, d1, h1) + I10(b - s, d2, h2)
        np.testing.assert_allclose(whole, parts + (b - s) * d1, rtol=0, atol=1e-12 * np.abs(whole).max())
        assert np.abs(whole - parts).max() > 1e6 * np.abs(whole - parts - (b - s) * d1).max()  # naive sum is wrong
        # the equivalent H rule for consecutive intervals
        ha, hb = s - a, b - s
        np.testing.assert_allclose((ha + hb) * hh, ha * h1 + hb * h2 + hb / 2 * d1 - ha / 2 * d2, rtol=0,
                                   atol=1e-12 * np.abs(whole).max())


def test_I10_matches_a_fine_riemann_sum():
    """I_(1,0) over a non-dyadic [a, b] equals ∫ (W − W(a)) ds of the path itself, computed from
    the W(t) queries on a fine grid plus the H of each fine piece (trapezoid + Lévy area)."""
    a, b, nfine = 0.21, 0.83, 64
    tr = BrownianTree(5, 0.0, 1.0, 1, np.arange(200))
    ts = np.linspace(a, b, nfine + 1)
    W = np.array([tr.query(t) for t in ts])
    pieces = list(tr.increments(ts))
    hf = (b - a) / nfine
    integral = sum(hf * (0.5 * (W[i] + W[i + 1]) - W[0]) + hf * pieces[i][1] for i in range(nfine))
    dw, hh = tr.increment(a, b)
    np.testing.assert_allclose(I10(b - a, dw, hh), integral, rtol=0, atol=1e-12)
