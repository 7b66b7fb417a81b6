"""Matrix functions of small per-lane matrices for fused Numba ensemble kernels, plus references.

Block layout (structure of arrays): a block of B matrices of size m x m is an array (m, m, B),
lane b holding A[:, :, b]; vectors are (m, B). Every innermost loop runs over the lanes, so
LLVM vectorises it. Scratch arrays come from the ``*_work`` helpers (plain ``np.empty``, callable
from Python and from njit code); the block routines themselves never allocate.

φ-functions: φ_0(X) = e^X, φ_k(X) = Σ_{j>=0} X^j/(j+k)!, so φ_k(X) = I/k! + X φ_{k+1}(X)
(Hochbruck & Ostermann, Acta Numerica 19 (2010) 209, §2 and §4).
"""
import cmath
import math
from fractions import Fraction

import numba
import numpy as np

from ..abi import JIT_FLAGS

JIT = JIT_FLAGS
THETA = 0.5          # scaling target: ‖A/2^s‖_inf <= THETA
TAYLOR_DEGREE = 14   # θ^15/15! = 2.3e-17: truncation of φ_k(X), ‖X‖ <= 1/2, below float64 rounding
SERIES_RADIUS, SERIES_DEGREE = 5.0, 40  # phi_scalar: series for |x| < 5 (5^41/41! < 1e-20)
INV_FACT = np.array([float(Fraction(1, math.factorial(n))) for n in range(64)])  # 1/n!, rounded once


@numba.njit(**JIT)
def phi_scalar(k: int, x: float) -> float:
    """φ_k(x) for real float x and k >= 0, within 4u = 4.4e-16 relative on [-1e6, 50] (u = 2^-53).

    k = 0: exp(x); k = 1: expm1(x)/x. k >= 2 and |x| < 5: Horner (degree 40) on the Taylor series
    Σ x^j/(j+k)! for x >= 0, on Kummer's transformation φ_k(x) = e^x/(k-1)! Σ_j (-x)^j/(j!(j+k))
    for x < 0 (both positive terms; from φ_k(x) = ∫_0^1 e^{(1-θ)x} θ^{k-1}/(k-1)! dθ, Hochbruck &
    Ostermann 2010 eq. (2.10); DLMF 13.2.39); |x| >= 5: the recurrence φ_{j+1}(x) = (φ_j(x) −
    1/j!)/x from φ_1 (its error growth is below 2 there).
    """
    if k == 0:
        return math.exp(x)
    if k == 1 or abs(x) >= SERIES_RADIUS:
        p = math.expm1(x) / x if x != 0.0 else 1.0
        for j in range(1, k):
            p = (p - INV_FACT[j]) / x
        return p
    s = 0.0
    if x >= 0.0:
        for j in range(SERIES_DEGREE, -1, -1):
            s = s * x + INV_FACT[j + k]
        return s
    for j in range(SERIES_DEGREE, -1, -1):
        s = s * -x + INV_FACT[j] / (j + k)
    return math.exp(x) * s * INV_FACT[k - 1]


@numba.njit(**JIT)
def phi_complex_scalar(k: int, z: complex) -> complex:
    """φ_k(z) for complex z and k >= 0, splitting the plane as :func:`phi_scalar` does: for |z| < SERIES_RADIUS
    (k >= 1) the Taylor series Σ_j z^j/(j+k)! by Horner (degree SERIES_DEGREE; its terms are at most e^5 times
    the result, so ~1e-14 relative), else e^z and the recurrence φ_{j+1} = (φ_j − 1/j!)/z (|z| >= 5: no
    cancellation).  Dispersive and advective symbols (i k³, i c k; Kassam & Trefethen 2005, §4–5), complex
    diagonal state spaces."""
    if k == 0:
        return cmath.exp(z)
    if abs(z) < SERIES_RADIUS:
        s = 0j
        for j in range(SERIES_DEGREE, -1, -1):
            s = s * z + INV_FACT[j + k]
        return s
    p = cmath.exp(z)
    for j in range(k):
        p = (p - INV_FACT[j]) / z
    return p


@numba.njit(**JIT)
def phi_complex_into(kmax, z, out):
    """out[k, i] = φ_k(z[i]) for k = 0..kmax, complex z (the host's elementwise complex φ: kernels/linear.phi_complex)."""
    for i in range(z.shape[0]):
        for k in range(kmax + 1):
            out[k, i] = phi_complex_scalar(k, z[i])


@numba.njit(**JIT)
def phi_scalar_into(kmax, z, out):
    """out[k, i] = φ_k(z[i]) for k = 0..kmax (the host's elementwise φ: kernels/linear.phi_scalar)."""
    for i in range(z.shape[0]):
        for k in range(kmax + 1):
            out[k, i] = phi_scalar(k, z[i])


@numba.njit(**JIT)
def lane_matrices(Lm: "float[:, :, :]", S_L: int, src: "int[:]", h: "float[:]", shift: float, scale: float,
                  out: "float[:, :, :]"):
    """out[:, :, b] = scale h_b L_b + shift I per lane b, L_b = Lm[src_b S_L] (axes (traj, i, j): the caller
    passes the kernel's ``Lm`` as that view, ``sdekit.abi.view``): the arguments c hL of φ_k and I − a hL
    of the resolvents (adaptive kernels, per-lane step h)."""
    m, B = out.shape[0], out.shape[2]
    for r in range(m):
        for q in range(m):
            for b in range(B):
                v = scale * h[b] * Lm[src[b] * S_L, r, q]
                out[r, q, b] = v + shift if r == q else v


@numba.njit(**JIT)
def scale_lanes(out: "float[:, :, :]", c: float, h: "float[:]", A: "float[:, :, :]"):
    """out[:, :, b] = c h_b A[:, :, b] per lane b (blocks (m, m, B)): the arguments c hJ̃ of the
    exponential Rosenbrock φ-functions, each lane its own step h_b."""
    for r in range(A.shape[0]):
        for q in range(A.shape[1]):
            for b in range(A.shape[2]):
                out[r, q, b] = c * h[b] * A[r, q, b]


@numba.njit(**JIT)
def scale_block(out: "float[:, :, :]", w: float, A: "float[:, :, :]"):
    """out = w A, lane by lane (blocks (m, m, B))."""
    for r in range(A.shape[0]):
        for q in range(A.shape[1]):
            for b in range(A.shape[2]):
                out[r, q, b] = w * A[r, q, b]


@numba.njit(**JIT)
def axpy_block(out: "float[:, :, :]", w: float, A: "float[:, :, :]"):
    """out += w A, lane by lane (blocks (m, m, B))."""
    for r in range(A.shape[0]):
        for q in range(A.shape[1]):
            for b in range(A.shape[2]):
                out[r, q, b] = out[r, q, b] + w * A[r, q, b]


@numba.njit(**JIT)
def _matmul(X: "float[:, :, :]", Y: "float[:, :, :]", C: "float[:, :, :]"):
    """C[:, :, b] = X[:, :, b] @ Y[:, :, b] for every lane b (C must not alias X or Y).  Row i of C gathers
    X[i, l] · row l of Y over l in order, so each C[i, j, b] is the same sum as the inner-product loop; the rows'
    contiguous j, b run innermost (one lane, B = 1: a vectorised saxpy rather than a strided dot product)."""
    m, n, p, B = X.shape[0], X.shape[1], Y.shape[1], X.shape[2]
    for i in range(m):
        for j in range(p):
            for b in range(B):
                C[i, j, b] = 0.0
        for l in range(n):
            for j in range(p):
                for b in range(B):
                    C[i, j, b] += X[i, l, b] * Y[l, j, b]


@numba.njit(**JIT)
def _add_eye(C: "float[:, :, :]", c: float):
    for i in range(C.shape[0]):
        for b in range(C.shape[2]):
            C[i, i, b] += c


@numba.njit(**JIT)
def _copy(X: "float[:, :, :]", Y: "float[:, :, :]"):
    """Y = X (loops: numba's slice assignment compiles seconds of shape-error formatting)."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            for b in range(X.shape[2]):
                Y[i, j, b] = X[i, j, b]


@numba.njit(**JIT)
def _axpy(a: float, g: float, w: "float[:]", X: "float[:, :, :]", Y: "float[:, :, :]"):
    """Y[..., b] += (a + g·w[b]) X[..., b]: a uniform (g = 0) or per-lane coefficient."""
    for i in range(X.shape[0]):
        for j in range(X.shape[1]):
            for b in range(X.shape[2]):
                Y[i, j, b] += (a + g * w[b]) * X[i, j, b]


@numba.njit(**JIT)
def _norm_inf(M: "float[:, :, :]", shift: float, acc: "float[:]", res: "float[:]"):
    """res[b] = ‖M[:, :, b] + shift·I‖_inf (max absolute row sum); acc: scratch (B,)."""
    res[:] = 0.0
    for i in range(M.shape[0]):
        acc[:] = 0.0
        for j in range(M.shape[1]):
            d = shift if i == j else 0.0
            for b in range(M.shape[2]):
                acc[b] += abs(M[i, j, b] + d)
        for b in range(M.shape[2]):
            res[b] = max(res[b], acc[b])


@numba.njit(**JIT)
def phi_block_work(m, kmax, B, dtype):
    """Scratch for phi_block, shape ((kmax + 2)·m² + 4, B): rows [0, (kmax+2)m²) hold kmax + 2
    matrix blocks (m, m, B); the last four rows per-lane s_b, the ψ flag and two norm rows."""
    return np.empty(((kmax + 2) * m * m + 4, B), dtype)


@numba.njit(**JIT)
def phi_block(A: "float[:, :, :]", kmax: int, out: "float[:, :, :, :]", work: "float[:, :]"):
    """out[k, :, :, b] = φ_k(A[:, :, b]) for k = 0..kmax and every lane b (A: (m, m, B)).

    Scaling and squaring (Skaflestad & Wright, Appl. Numer. Math. 59 (2009) 783, §4): X = A/2^s_b,
    s_b the least s >= 0 with ‖A_b‖_inf/2^s <= 1/2; φ_K(X), K = max(kmax, 1), by Horner on its
    Taylor series of degree 14; φ_k(X) = I/k! + X φ_{k+1}(X) down to k = 1 (errors shrink by
    ‖X‖ <= 1/2 per step); ψ(X) = e^X − I = X φ_1(X); then s_b doublings (eq. (4.4))
    φ_0(2X) = φ_0², φ_k(2X) = 2^{-k}[φ_0 φ_k + Σ_{j=1}^k φ_j/(k-j)!], written first for ψ (cf.
    expm1): ψ(2X) = ψ² + 2ψ, φ_k(2X) = 2^{-k}[ψφ_k + 2φ_k + Σ_{j<k} ..]. Squaring φ_0 doubles its
    relative error per step, which ruins eigenvalues |λ| << ‖A‖ (7e-12 at ‖A‖ = 1e4, λ in
    [-1e4, -1e-3]; with ψ 7e-13, the u‖A‖ limit of normwise stable methods); but I + ψ cancels
    once e^A is small, so a lane stores φ_0 from the first doubling where ‖I + ψ‖_inf <= 1/2.
    Lanes needing fewer than max_b s_b doublings keep their result by a per-lane select (the
    loops stay vectorised). work = phi_block_work(m, kmax, B, A.dtype). Non-finite A: non-finite.
    """
    m, B = A.shape[0], A.shape[2]
    nm = (kmax + 2) * m * m
    mats = work[:nm].reshape((kmax + 2, m, m, B))
    X, T, new = mats[0], mats[1], mats[1:]
    s, psi, acc, nrm = work[nm], work[nm + 1], work[nm + 2], work[nm + 3]
    _norm_inf(A, 0.0, acc, s)
    smax = 0
    for b in range(B):                                     # s_b from ‖A_b‖_inf, stored in s
        sb = 0
        while s[b] * 0.5**sb > THETA and sb < 1100:
            sb += 1
        s[b], smax = sb, max(smax, sb)
    for i in range(m):
        for j in range(m):
            for b in range(B):
                X[i, j, b] = A[i, j, b] * 0.5 ** s[b]
    # Taylor at X; out[0] holds ψ (lanes with psi[b] = 1) or φ_0 (psi[b] = 0)
    K = max(kmax, 1)
    P = out[kmax]
    P[:] = 0.0
    _add_eye(P, INV_FACT[TAYLOR_DEGREE + K])
    for j in range(TAYLOR_DEGREE - 1, -1, -1):
        _matmul(X, P, T)
        _copy(T, P)
        _add_eye(P, INV_FACT[j + K])
    for k in range(kmax - 1, 0, -1):
        _matmul(X, out[k + 1], out[k])
        _add_eye(out[k], INV_FACT[k])
    _matmul(X, out[min(kmax, 1)], T)
    _copy(T, out[0])
    psi[:] = 1.0
    for it in range(smax):
        _norm_inf(out[0], 1.0, acc, nrm)
        for b in range(B):
            acc[b] = psi[b] if nrm[b] <= 0.5 else 0.0    # 1 where a lane switches now
            psi[b] -= acc[b]
        for i in range(m):
            for b in range(B):
                out[0, i, i, b] += acc[b]
        for k in range(kmax + 1):
            _matmul(out[0], out[k], new[k])
            for l in range(1, k):
                _axpy(INV_FACT[k - l], 0.0, psi, out[l], new[k])
            if k == 0:
                _axpy(0.0, 2.0, psi, out[0], new[0])      # + 2ψ | + 0
            else:
                _axpy(1.0, 1.0, psi, out[k], new[k])      # + 2φ_k | + φ_k
        for k in range(kmax + 1):                         # keep the result where it < s_b
            c = 0.5 ** k
            for i in range(m):
                for j in range(m):
                    for b in range(B):
                        out[k, i, j, b] = c * new[k, i, j, b] if it < s[b] else out[k, i, j, b]
    for i in range(m):
        for b in range(B):
            out[0, i, i, b] += psi[b]


@numba.njit(**JIT)
def inverse_block_work(m, B, dtype):
    """Scratch for inverse_block and solve_block: rows [0, 2m²) hold the augmented block
    (m, 2m, B), the last two rows the per-lane pivot row and pivot size. Shape (2m² + 2, B)."""
    return np.empty((2 * m * m + 2, B), dtype)


@numba.njit(**JIT)
def _gauss_jordan(M: "float[:, :, :]", piv: "float[:]", best: "float[:]"):
    """Reduce each lane of the augmented block M (m, m + r, B) to [I | A^{-1} R] by Gauss–Jordan
    elimination with partial pivoting (Golub & Van Loan, Matrix Computations, 4th ed., §3.2
    and §3.4). The pivot row differs per lane, so the row swap is a per-lane gather; all other
    loops run over the lanes innermost. A singular lane gives inf/nan."""
    m, n, B = M.shape[0], M.shape[1], M.shape[2]
    for c in range(m):
        for b in range(B):
            piv[b] = c
            best[b] = abs(M[c, c, b])
        for i in range(c + 1, m):
            for b in range(B):
                v = abs(M[i, c, b])
                piv[b] = i if v > best[b] else piv[b]
                best[b] = max(v, best[b])
        for j in range(c, n):
            for b in range(B):
                p = int(piv[b])
                t = M[p, j, b]
                M[p, j, b] = M[c, j, b]
                M[c, j, b] = t
        for b in range(B):
            best[b] = 1.0 / M[c, c, b]          # reuse as the pivot's reciprocal
        for j in range(c, n):
            for b in range(B):
                M[c, j, b] *= best[b]
        for i in range(m):
            if i != c:
                for j in range(c + 1, n):
                    for b in range(B):
                        M[i, j, b] -= M[i, c, b] * M[c, j, b]
                for b in range(B):
                    M[i, c, b] = 0.0


@numba.njit(**JIT)
def inverse_block(A: "float[:, :, :]", out: "float[:, :, :]", work: "float[:, :]"):
    """out[:, :, b] = inv(A[:, :, b]) by Gauss–Jordan on [A | I]; work = inverse_block_work(m, B, dtype)."""
    m, B = A.shape[0], A.shape[2]
    M = work[:2 * m * m].reshape((m, 2 * m, B))
    _copy(A, M[:, :m])
    M[:, m:] = 0.0
    _add_eye(M[:, m:], 1.0)
    _gauss_jordan(M, work[2 * m * m], work[2 * m * m + 1])
    _copy(M[:, m:], out)


@numba.njit(**JIT)
def solve_block(A: "float[:, :, :]", rhs: "float[:, :]", out: "float[:, :]", work: "float[:, :]"):
    """out[:, b] = solve(A[:, :, b], rhs[:, b]) by Gauss–Jordan on [A | rhs] (m, m + 1, B);
    work = inverse_block_work(m, B, dtype) (only its first m(m+1) + 2 rows are used)."""
    m, B = A.shape[0], A.shape[2]
    M = work[:m * (m + 1)].reshape((m, m + 1, B))
    _copy(A, M[:, :m])
    _copy(rhs[:, None, :], M[:, m:])
    _gauss_jordan(M, work[m * (m + 1)], work[m * (m + 1) + 1])
    _copy(M[:, m:], out[:, None, :])
