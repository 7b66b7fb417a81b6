"""sdekit.kernels.matfun against independent references: mpmath (50-60 digits), exact rational
arithmetic, eigen-decompositions of exactly representable matrices, scipy and numpy.

Errors are normwise in the 1-norm; u is the unit roundoff of the dtype.
"""
import math
from fractions import Fraction

import mpmath
import numba
import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings, strategies as st

from sdekit.kernels.matfun import (inverse_block, inverse_block_work, phi_block, phi_block_work,
                                   phi_scalar, solve_block)


def phi_matrices(A, kmax):
    """An independent reference: scipy's expm of the augmented matrix [[A, I, 0..], [0, 0, I, ..], ..]
    (Saad 1992; Sidje 1998, Thm 1), whose first block row is φ_0(A) .. φ_kmax(A); A (..., m, m)."""
    A = np.asarray(A, dtype=np.float64)
    m, nb = A.shape[-1], kmax + 1
    aug = np.zeros(A.shape[:-2] + (nb * m, nb * m))
    aug[..., :m, :m] = A
    for j in range(1, nb):
        aug[..., (j - 1) * m:j * m, j * m:(j + 1) * m] = np.eye(m)
    E = scipy.linalg.expm(aug)
    return np.stack([E[..., :m, j * m:(j + 1) * m] for j in range(nb)])


U64 = 2.0**-53
KMAX = 5


def norm1(X):
    return np.abs(X).sum(-2).max(-1)


def block_phi(A, kmax, dtype=np.float64):
    """phi_block on A (n, m, m) -> (kmax+1, n, m, m), through the (m, m, n) lane layout."""
    n, m = A.shape[0], A.shape[1]
    out = np.empty((kmax + 1, m, m, n), dtype)
    phi_block(np.ascontiguousarray(np.moveaxis(A.astype(dtype), 0, -1)), kmax, out,
              phi_block_work(m, kmax, n, dtype))
    return np.moveaxis(out, -1, 1)


def random_dense(rng, n, m, lo=1e-8, hi=50.0):
    """n random m x m matrices, lane i with 1-norm logspace(lo, hi)[i] (mixed scalings per block)."""
    G = rng.standard_normal((n, m, m))
    return G / norm1(G)[:, None, None] * np.logspace(np.log10(lo), np.log10(hi), n)[:, None, None]


def phi_mp_scalar(k, x):
    x = mpmath.mpf(x)
    if abs(x) < 1:
        return sum(x**j / mpmath.factorial(j + k) for j in range(60))
    return (mpmath.exp(x) - sum(x**j / mpmath.factorial(j) for j in range(k))) / x**k


def phi_mp_series(A, kmax):
    """φ_kmax(A) by its defining series (no scaling) at 60 digits, then φ_k = I/k! + A φ_{k+1}."""
    N = 20
    while N * math.log(max(norm1(A), 1e-300)) - math.lgamma(N + 1) > math.log(1e-50):
        N += 1
    with mpmath.workdps(60):
        X = np.array([[mpmath.mpf(float(v)) for v in row] for row in A], dtype=object)
        eye = np.array([[mpmath.mpf(int(i == j)) for j in range(len(A))] for i in range(len(A))], dtype=object)
        phis = [eye / mpmath.factorial(N + kmax)]
        for j in reversed(range(N)):
            phis[0] = X @ phis[0] + eye / mpmath.factorial(j + kmax)
        for k in reversed(range(kmax)):
            phis.insert(0, eye / mpmath.factorial(k) + X @ phis[0])
        return np.array([[[float(v) for v in row] for row in P] for P in phis])


def nilpotent_phi(Nil, kmax):
    """Exact φ_k(N) = Σ_{j<m} N^j/(j+k)! for integer strictly triangular N (rational arithmetic)."""
    m = Nil.shape[-1]
    powers = [np.linalg.matrix_power(Nil.astype(np.int64), j).astype(object) for j in range(m)]
    return np.array([sum(P * Fraction(1, math.factorial(j + k)) for j, P in enumerate(powers)).astype(float)
                     for k in range(kmax + 1)])


XS = np.concatenate([np.linspace(-12, 12, 241), [0.0, 1e-300, -1e-12, 3e-9, 5.0, -5.0, 50.0, -1e6],
                     np.nextafter([5.0, -5.0], 0.0), -np.logspace(-8, 6, 40), np.logspace(-8, np.log10(50), 30)])


@pytest.mark.parametrize("k", range(KMAX + 1))
def test_phi_scalar_matches_mpmath(k):
    with mpmath.workdps(50):
        want = np.array([float(phi_mp_scalar(k, x)) for x in XS])
    got = np.array([phi_scalar(k, x) for x in XS])
    assert np.all(np.abs(got - want) <= 5 * U64 * np.abs(want) + 1e-300)   # measured <= 3.9 u


def phi_mp_complex(k, z):
    z = mpmath.mpc(z)
    if abs(z) < 1:
        return sum(z**j / mpmath.factorial(j + k) for j in range(60))
    return (mpmath.exp(z) - sum(z**j / mpmath.factorial(j) for j in range(k))) / z**k


def test_phi_complex_scalar_matches_mpmath():
    """matfun.phi_complex_scalar (the compiled field kernels' and linear.phi_complex's φ of complex arguments: KdV
    and Schrödinger symbols, complex diagonal state spaces) on rings across the series/recurrence split |z| = 5,
    the imaginary axis and a stiff half plane, to 1e-13 relative (the series' terms are at most e^5 the result)."""
    from sdekit.kernels.linear import phi_complex
    from sdekit.kernels.matfun import phi_complex_scalar
    rng = np.random.default_rng(2)
    radii = np.concatenate([[1e-12, 1e-3, 0.5, 2.0, 4.999, 5.0, 5.001, 9.0, 40.0], np.logspace(2, 5, 4)])
    zs = np.concatenate([(r * np.exp(1j * rng.uniform(-np.pi, np.pi, 6))) for r in radii]
                        + [1j * np.linspace(-300, 300, 31), -rng.uniform(0, 1e4, 8) + 1j * rng.uniform(-1e4, 1e4, 8)])
    zs = zs[zs.real < 40]
    host = phi_complex(zs, KMAX)
    for k in range(KMAX + 1):
        with mpmath.workdps(50):
            want = np.array([complex(phi_mp_complex(k, z)) for z in zs])
        got = np.array([phi_complex_scalar(k, z) for z in zs])
        assert np.all(np.abs(got - want) <= 1e-13 * np.abs(want) + 1e-300), k
        np.testing.assert_allclose(host[k], got, rtol=1e-14, atol=0)    # the same function (LLVM may contract FMAs in the loop)


def test_phi_matrices_closed_forms():
    rng = np.random.default_rng(0)
    d = rng.uniform(-30, 30, (6, 3))                                         # diagonal: elementwise φ_k
    with mpmath.workdps(50):
        want = np.array([[np.diag([float(phi_mp_scalar(k, x)) for x in row]) for row in d] for k in range(KMAX + 1)])
    got = phi_matrices(np.array([np.diag(r) for r in d]), KMAX)
    assert np.all(norm1(got - want) <= 1e-12 * norm1(want))                 # scipy: ~1e-13 measured
    Nil = np.triu(rng.integers(-9, 10, (4, 5, 5)), 1).astype(float)          # nilpotent: finite series
    exact = nilpotent_phi(Nil, KMAX)
    assert np.all(norm1(phi_matrices(Nil, KMAX) - exact) <= 1e-12 * norm1(exact))  # scipy: 4e-13


@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_phi_block_matches_mpmath_series(m):
    A = random_dense(np.random.default_rng(m), 7, m)
    got = block_phi(A, KMAX)
    want = np.stack([phi_mp_series(a, KMAX) for a in A], axis=1)
    assert np.all(norm1(got - want) <= 1e-13 * norm1(want))                 # measured <= 3e-15
    assert np.all(norm1(block_phi(A, 0)[0] - want[0]) <= 1e-13 * norm1(want[0]))   # Taylor degree alone


@pytest.mark.parametrize("B", [7, 128])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_phi_block_matches_phi_matrices(dtype, B):
    rng = np.random.default_rng(B)
    for m in (1, 2, 4, 8) if B > 16 else (1, 2, 4, 8, 16):                    # scipy: slow at m = 16
        A = random_dense(rng, B, m).astype(dtype).astype(np.float64)
        got, want = block_phi(A, KMAX, dtype), phi_matrices(A, KMAX)
        # float64: scipy's expm of the augmented matrix errs by up to ~5e-13·‖A‖ (phi_block is
        # ~1e-15 there, see the mpmath test); float32: squaring grows u by 2^s ~ 2^7
        tol = 1e-13 + 1e-12 * norm1(A) if dtype == np.float64 else 2e-5
        assert np.all(norm1(got - want) <= tol * norm1(want)), m


def exact_symmetric(rng, n, m, lam_lo, lam_hi):
    """A = Q diag(λ) Q^T exactly in float64: Q = (signs · Hadamard · permutation)/√m and dyadic λ."""
    H = scipy.linalg.hadamard(m).astype(float)
    Q = np.stack([rng.choice([-1.0, 1.0], (m, 1)) * H[:, rng.permutation(m)] for _ in range(n)])
    lam = -np.round(np.exp(rng.uniform(np.log(lam_lo), np.log(lam_hi), (n, m))) * 1024) / 1024
    A = np.einsum("bij,bj,bkj->bik", Q, lam, Q) / m
    assert np.array_equal(A @ Q, Q * lam[:, None, :])                         # the construction is exact
    return A, Q, lam


@pytest.mark.parametrize("m", [1, 2, 4, 16])
def test_phi_block_stiff_negative_definite(m):
    rng = np.random.default_rng(10 + m)
    for lam_lo in (10.0, 1e-3):
        A, Q, lam = exact_symmetric(rng, 16, m, lam_lo, 1e4)
        with mpmath.workdps(30):
            f = np.array([[[float(phi_mp_scalar(k, x)) for x in row] for row in lam] for k in range(KMAX + 1)])
        want = np.einsum("bij,kbj,blj->kbil", Q, f, Q) / m
        err = norm1(block_phi(A, KMAX) - want)
        tol = 1e-13 * np.maximum(1.0, norm1(want))
        if lam_lo < 1:
            # eigenvalues near 0 next to -1e4: the u‖A‖ conditioning limit of any normwise
            # backward-stable method (scipy's expm alike); measured 7e-13
            tol += 2 * U64 * norm1(A)
        assert np.all(err <= tol), lam_lo
    G = np.linalg.qr(rng.standard_normal((16, m, m)))[0]                     # rounded Q diag(λ) Q^T
    lam = -np.exp(rng.uniform(np.log(1e-3), np.log(1e4), (16, m)))
    A = np.einsum("bij,bj,bkj->bik", G, lam, G)
    want = phi_matrices(A, KMAX)
    assert np.all(norm1(block_phi(A, KMAX) - want) <= 1e-13 * np.maximum(1, norm1(want)) + 4 * U64 * norm1(A))


def test_phi_block_diagonal_nilpotent_zero():
    rng = np.random.default_rng(3)
    d = np.concatenate([rng.uniform(-50, 50, (7, 4)), -np.logspace(2, 4, 28).reshape(7, 4)])
    got = block_phi(np.array([np.diag(r) for r in d]), KMAX)
    want = np.array([[[phi_scalar(k, x) for x in row] for row in d] for k in range(KMAX + 1)])
    assert np.all(got[..., ~np.eye(4, dtype=bool)] == 0.0)
    # normwise per lane (lanes 7..13 stiff: absolute); not elementwise: in a lane with a large
    # mode, e^{-41} comes out of I + ψ with absolute error u
    err = np.abs(np.diagonal(got, axis1=-2, axis2=-1) - want).max(-1)
    scale = np.abs(want).max(-1)
    assert np.all(err <= 1e-13 * np.where(d.max(-1) >= -50, scale, np.maximum(1, scale)))
    Nil = np.triu(rng.integers(-9, 10, (7, 6, 6)), 1).astype(float)
    exact = nilpotent_phi(Nil, KMAX)
    assert np.all(norm1(block_phi(Nil, KMAX) - exact) <= 1e-13 * norm1(exact))
    for kmax in (0, 1, KMAX):
        got = block_phi(np.zeros((7, 3, 3)), kmax)
        assert np.array_equal(got, np.array([[np.eye(3) / math.factorial(k)] * 7 for k in range(kmax + 1)]))


@settings(deadline=None, derandomize=True, max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), m=st.integers(1, 6), kmax=st.integers(0, KMAX),
       B=st.integers(1, 40), hi=st.floats(1e-6, 50.0))
def test_phi_block_properties(seed, m, kmax, B, hi):
    """Against scipy; the identity A φ_{k+1}(A) = φ_k(A) − I/k!; each lane as if alone."""
    A = random_dense(np.random.default_rng(seed), B, m, min(1e-8, hi), hi)
    got = block_phi(A, kmax)
    want = phi_matrices(A, kmax)
    assert np.all(norm1(got - want) <= (1e-13 + 1e-12 * norm1(A)) * norm1(want))
    for k in range(kmax):
        resid = norm1(A @ got[k + 1] - got[k] + np.eye(m) / math.factorial(k))
        assert np.all(resid <= 1e-13 * (norm1(got[k]) + norm1(A) * norm1(got[k + 1])))
    alone = block_phi(A[-1:], kmax)[:, 0]
    assert np.allclose(got[:, -1], alone, rtol=1e-14, atol=0)


def test_work_arrays_from_njit_and_dtype_objects():
    @numba.njit
    def phis_and_inverse(A, kmax):       # kmax an argument: a literal would compile a new phi_block
        m, B = A.shape[0], A.shape[2]
        out, inv = np.empty((kmax + 1, m, m, B)), np.empty((m, m, B))
        phi_block(A, kmax, out, phi_block_work(m, kmax, B, np.float64))
        inverse_block(A, inv, inverse_block_work(m, B, np.float64))
        return out, inv

    A = np.moveaxis(random_dense(np.random.default_rng(4), 5, 3, 0.1, 2.0), 0, -1).copy()
    out, inv = phis_and_inverse(A, 2)
    assert np.array_equal(out, np.moveaxis(block_phi(np.moveaxis(A, -1, 0), 2), 1, -1))
    assert phi_block_work(3, 2, 5, A.dtype).shape == (4 * 9 + 4, 5)
    assert np.allclose(np.moveaxis(inv, -1, 0), np.linalg.inv(np.moveaxis(A, -1, 0)), rtol=1e-12, atol=0)


@pytest.mark.parametrize("B", [7, 128])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_inverse_and_solve_match_numpy(dtype, B):
    rng = np.random.default_rng(B)
    u = np.finfo(dtype).eps / 2
    for m in (1, 2, 3, 5, 16):
        A = rng.standard_normal((B, m, m)).astype(dtype)
        A[0] = np.roll(np.eye(m), 1, axis=0) if m > 1 else 2.0             # lane 0: zero diagonal
        rhs = rng.standard_normal((m, B)).astype(dtype)
        blk = np.ascontiguousarray(np.moveaxis(A, 0, -1))
        inv, x, work = np.empty_like(blk), np.empty_like(rhs), inverse_block_work(m, B, dtype)
        inverse_block(blk, inv, work)
        solve_block(blk, rhs, x, work)
        A64 = A.astype(np.float64)
        want_inv, want_x = np.linalg.inv(A64), np.linalg.solve(A64, rhs.T.astype(np.float64)[..., None])[..., 0]
        tol = 50 * m * u * np.linalg.cond(A64, 1)
        assert np.all(norm1(np.moveaxis(inv, -1, 0) - want_inv) <= tol * norm1(want_inv)), m
        assert np.all(np.abs(x.T - want_x).max(-1) <= tol * np.abs(want_x).max(-1)), m
        assert np.array_equal(inv[..., 0], np.linalg.inv(A64[0]))             # permutation: exact
