"""Σ_k φ_k(X) w_k by a Krylov subspace with adaptive substeps: Niesen & Wright (2012), "Algorithm 919: A Krylov
subspace algorithm for evaluating the φ-functions appearing in exponential integrators", ACM TOMS 38(3):22
(phipm), in the form of Gaudreault, Rainwater & Tokman (2018), "KIOPS", J. Comput. Phys. 372:236, §2.

u(t) = Σ_k t^k φ_k(tX) w_k solves u' = X u + Σ_{j≥1} t^{j−1}/(j−1)! w_j, u(0) = w_0, and is the top block of
e^{tÃ}[w_0; e_p], Ã = [[X, W], [0, J]] (Al-Mohy & Higham 2011, Thm 2.1; W = [w_p, ..., w_1], J the p × p shift).
The substeps t_k → t_k + τ take u(t_k + τ) = e^{τÃ} u(t_k) from the Arnoldi decomposition of Ã at u(t_k):
≈ β V_{m+1} e^{τH̄} e_1, Saad's (1992, SIAM J. Numer. Anal. 29:209, §5.2) corrected scheme, whose (m+1)-st entry
β τ h_{m+1,m} e_m^T φ_1(τH_m) e_1 is the uncorrected scheme's a-posteriori error estimate (his eq. 5.5; phipm's and
Expokit's, Sidje 1998, ACM TOMS 24:130) — one small exponential gives both.  Phipm's own recurrence,
u(t_k + τ) = Σ_{j<p} τ^j/j! d_j + τ^p φ_p(τX) d_p with d_j = X d_{j−1} + (the forcing's derivatives), sums terms
of size ‖τX‖^j that cancel (relative rounding ~u ‖τX‖^p/p!: 1e-7 at ‖τX‖ = 400, p = 4); Ã's exponential does not.
Simplified from phipm: the Krylov dimension grows through KRYLOV_DIMENSIONS within a substep (the basis is
extended, not rebuilt) and τ shrinks only at the largest (Expokit's rule, τ ← γ τ (allowed/err)^{1/m}); the next
substep starts at the last dimension and τ.

Tolerance: each substep's error estimate is at most tol · τ · r (or rounding: ESTIMATE_ROUNDING), r the largest
norm of the result's block reached so far or, at least, its value at X = 0, Σ_k ‖w_k‖_2/k! (a trial's own norm is not
trusted: a highly non-normal X's unconverged trial can be large and wrong), so the action's error is at most ~tol
relative to its result, or to that scale where the result decays below it — a forward error, where the Taylor
path's ``tol`` bounds a backward error ‖ΔX‖ ≤ tol ‖X‖ (a forward error up to ~tol ‖X‖ for a stiff X).  W is scaled
by η (a power of two): the largest w_k to unit norm (its norm taken without squaring's under- and overflow).  Rounding: the Arnoldi basis mixes all components, so a transient
growth ‖e^{τX}‖ ≫ 1 amplifies it: X = 50(−I + 3N), N the 20 × 20 shift (‖e^{X/2}‖ = 5e7), is exhausted by the
basis (a happy breakdown: the estimate is 0), and its rounding in H moves H's eigenvalues from −50 to ~−26: 5e-3 to
4e4 relative error, where Taylor gets 1e-9.  So ``operators.phi_action`` takes this path only where the logarithmic
norm bounds the growth (:func:`log_norm_bound` ≤ ``operators.KRYLOV_LOG_NORM_MAX``); contractive stencils
(diffusion, upwind advection: μ ≤ 0) stay within ~100 u.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..abi import JIT_FLAGS
from .expm_action import ActionControl

#: the Krylov dimensions at which a substep tries its error estimate (one small exponential each), the largest
#: Expokit's default m = 30.  Measured on Allen–Cahn's Exprb43 actions at rtol 1e-3, 1e-6, 1e-8 (60, 220, 628; n = 256,
#: ‖hJ̃‖_1 = 2 to 1258) and the 744 ETDRK3 actions of a 2-D advection–diffusion stencil at rtol 1e-8 (n = 2304,
#: ‖hL‖_1 = 0.16 to 0.89): these 29, 69, 149, 277 ms (2340, 5520, 11800, 5735 products); (10, 20, 30) 26, 61, 130,
#: 314 ms (7440 products on the stencil); (4, 8, 16, 30) 29, 70, 158, 327 ms; the stencil's Taylor actions 807 ms, 7425
KRYLOV_DIMENSIONS = np.array([5, 10, 20, 30])
#: the safety factor γ of the substep size (Expokit's step-size rule)
STEP_SAFETY = 0.8
#: the least substep (but the last): one the estimate needs smaller gives NaN rather than ~1/τ substeps (an
#: action that needs it, ‖X‖ ~ 1e9, would take as long by Taylor's series: ‖X‖ products)
TAU_MIN = 2.0 ** -24
#: happy breakdown: h_{j+1,j} this small relative to ‖Ã v_j‖ (rounding) makes the subspace invariant: the substep
#: exact, to the end
HAPPY_BREAKDOWN = 2.0 ** -50
#: an error estimate at most this times β, the substep's start norm, is rounding (Expokit's ``rndoff``): accepted at
#: any tolerance (a tighter one would shrink τ without end)
ESTIMATE_ROUNDING = 2.0 ** -50


def log_norms(A) -> tuple[float, float]:
    """Bounds on (μ_2(A), μ_2(−A)), the logarithmic 2-norms: the extreme eigenvalues of the Hermitian part
    (A + A^H)/2 bounded by Gershgorin's discs, max_i ±Re a_ii + Σ_{j≠i} |a_ij + conj(a_ji)|/2.  ‖e^{tX}‖_2 ≤
    e^{t μ_2(X)} for t ≥ 0 (Dahlquist 1958; Söderlind 2006, BIT 46:631, §2): a bound on the transient growth that
    rounding in a Krylov basis meets (module note); μ_2(A) ≤ 0 for dissipative stencils and skew-Hermitian
    (dispersive) operators.  A scipy sparse or dense A; μ_2(sA) = s μ_2(A) for s ≥ 0."""
    from scipy import sparse
    if sparse.issparse(A):
        return _sparse_log_norms(sparse.csr_matrix(A))
    X = np.asarray(A)
    if X.shape[0] == 0:
        return 0.0, 0.0
    hermitian = (X + X.conj().T) / 2
    centre = np.real(hermitian.diagonal())
    radius = np.asarray(abs(hermitian).sum(axis=1)).ravel() - np.abs(centre)
    return float(np.max(centre + radius)), float(np.max(radius - centre))


def _sparse_log_norms(X) -> tuple[float, float]:
    """:func:`log_norms` of a CSR matrix from its entries alone: each a_ij meets its transpose a_ji by a sorted search
    of the keys (i n + j), so H = (X + X^H)/2 has h_ij = (a_ij + conj(a_ji))/2 where both are stored and a_ij/2, at
    row i and at row j, where a_ji is not (scipy's X + X^H took ~1 ms a call on 800 entries)."""
    n = X.shape[0]
    if n == 0:
        return 0.0, 0.0
    X = X.astype(np.result_type(X.dtype, np.float64))     # a copy; bool and int entries as floats
    X.sum_duplicates()                      # canonical: sorted, unique (i, j)
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(X.indptr))
    cols, a = X.indices.astype(np.int64), X.data
    keys = rows * n + cols                  # ascending in canonical order
    at = np.minimum(np.searchsorted(keys, cols * n + rows), max(keys.size - 1, 0))
    paired = keys[at] == cols * n + rows if keys.size else np.zeros(0, bool)
    h = (a + np.conj(np.where(paired, a[at], 0))) / 2
    off = rows != cols
    radius = np.bincount(rows[off], np.abs(h[off]), minlength=n)
    lone = off & ~paired
    radius += np.bincount(cols[lone], np.abs(a[lone]) / 2, minlength=n)
    centre = np.bincount(rows[~off], np.real(a[~off]), minlength=n)
    return float(np.max(centre + radius)), float(np.max(radius - centre))


def log_norm_bound(A, scale: float, norms: tuple[float, float] | None = None) -> float:
    """The bound of :func:`log_norms` on μ_2(scale·A) (``norms``: A's, where the caller keeps them)."""
    plus, minus = log_norms(A) if norms is None else norms
    return scale * plus if scale >= 0 else -scale * minus


def krylov_phi_action(A, scale: float, vectors: dict, control: ActionControl | None = None) -> np.ndarray:
    """Σ_k φ_k(X) w_k, X = scale·A, for ``vectors`` = {k: w_k} (φ_0 = exp) and A a square scipy sparse or dense
    matrix (A and the vectors real or complex), to ``control.tol`` relative to the result (see the module's note),
    counted in ``control``; NaN where X or a vector is not finite (a diverging step)."""
    from scipy import sparse
    control = ActionControl() if control is None else control
    if not control.tol > 0:
        raise ValueError(f"krylov_phi_action: tol must be positive, got {control.tol!r}")
    n, p = A.shape[0], max(vectors)
    dtype = np.result_type(A.dtype, np.float64, *vectors.values())
    zero = np.zeros(n, dtype=dtype)
    W = np.column_stack([vectors.get(k, zero) for k in range(p, 0, -1)]).astype(dtype) if p else np.zeros((n, 0), dtype)
    largest = max(stable_norm(w) for w in vectors.values())
    eta = 2.0 ** min(1020, max(-1020, -round(math.log2(largest)))) if 0.0 < largest < np.inf else 1.0
    start = np.concatenate([eta * vectors.get(0, zero), np.eye(p, dtype=dtype)[-1] if p else zero[:0]])
    if sparse.issparse(A):
        A = A.tocsr()
        matrix = ((scale * A.data).astype(dtype), A.indices.astype(np.int64), A.indptr.astype(np.int64),
                  np.zeros((0, 0), dtype))
    else:
        matrix = (zero[:0], np.zeros(0, np.int64), np.zeros(0, np.int64), np.ascontiguousarray(scale * A, dtype=dtype))
    if not all(np.all(np.isfinite(x)) for x in (matrix[0], matrix[3], W, start)):
        return np.full(n, np.nan, dtype=dtype)
    control.actions += 1
    if not np.any(start):
        return zero
    scale_at_zero = sum(np.linalg.norm(eta * w) / math.factorial(k) for k, w in vectors.items())
    u, products = _substeps(*matrix, np.ascontiguousarray(eta * W), start, n, scale_at_zero, control.tol)
    control.products += products
    return u[:n] / eta


def stable_norm(x) -> float:
    """‖x‖_2 without overflow or underflow (np.linalg.norm squares: 0 below ~1e-162 an entry, inf above ~1e154)."""
    x = np.asarray(x)
    big = float(np.max(np.abs(x))) if x.size else 0.0
    return big * float(np.linalg.norm(x / big)) if 0.0 < big < np.inf else big


@numba.njit(**JIT_FLAGS)
def _substeps(data, indices, indptr, dense, W, u, n: int, reference: float, tol: float):
    """(e^{Ã} u, products): substeps τ of e^{τÃ} from Arnoldi bases at each u(t_k), each to the error estimate
    allowed (module note); NaN where the estimate is not finite or needs τ below TAU_MIN.  Ã = [[X, W], [0, J]] with
    X in CSR (data, indices, indptr) or ``dense``, as :func:`_augmented_product` takes it."""
    size, largest = u.size, KRYLOV_DIMENSIONS[-1]
    V, H = np.zeros((largest + 1, size), u.dtype), np.zeros((largest + 1, largest), u.dtype)
    t, tau, level, products = 0.0, 1.0, 0, 0
    while t < 1.0:
        beta, built = np.linalg.norm(u), np.int64(0)
        for k in range(size):
            V[0, k] = u[k] / beta
        while True:
            before = built
            built, happy = _arnoldi(data, indices, indptr, dense, W, V, H, built, KRYLOV_DIMENSIONS[level])
            products += built - before
            tau = 1.0 - t if happy else min(tau, 1.0 - t)
            new, err = _projected_step(V, H, built, beta, tau)
            allowed = max(tol * tau * reference, ESTIMATE_ROUNDING * beta)
            if happy or err <= allowed:
                break
            if level + 1 < len(KRYLOV_DIMENSIONS):
                level += 1
            else:
                tau = _next_substep(tau, allowed, err, built)
            if not (np.isfinite(err) and tau > TAU_MIN):
                return new * np.nan, products
        u, t = new, 1.0 if tau >= 1.0 - t else t + tau
        reference = max(reference, np.linalg.norm(new[:n]))
        tau = max(_next_substep(tau, allowed, err, built), TAU_MIN)
    return u, products


@numba.njit(**JIT_FLAGS)
def _projected_step(V, H, m: int, beta: float, tau: float):
    """(β V_{m+1} e^{τH̄} e_1, β |(e^{τH̄} e_1)_{m+1}|): Saad's corrected approximation of e^{τÃ} u and the error
    estimate of the uncorrected one, from the exponential of the (m+1)-square H̄ = [[H_m, 0], [h_{m+1,m} e_m^T, 0]]
    (Saad 1992, §5.2, eq. 5.5)."""
    small = np.zeros((m + 1, m + 1), dtype=H.dtype)
    for i in range(m + 1):
        for j in range(m):
            small[i, j] = tau * H[i, j]
    E = expm_small(small)
    out = np.zeros(V.shape[1], dtype=V.dtype)
    for i in range(m + 1):
        f = beta * E[i, 0]
        for k in range(V.shape[1]):
            out[k] += f * V[i, k]
    return out, abs(beta * E[m, 0])


@numba.njit(**JIT_FLAGS)
def _next_substep(tau: float, allowed: float, err: float, m: int) -> float:
    """The substep that meets the allowed error by the estimate's growth ~ τ^m (Expokit, Sidje 1998, §3):
    γ τ (allowed/err)^{1/m} (τ where the estimate is 0)."""
    return tau if err == 0.0 else STEP_SAFETY * tau * (allowed / err) ** (1.0 / m)


#: [m/m] Padé approximants of e^x for m = 3, 5, 7, 9, 13: rows the coefficients b_0 … b_m (zero-padded), and the
#: bounds θ_m on ‖A‖_1 up to which each meets double precision's backward error (Higham 2005, SIAM J. Matrix Anal.
#: Appl. 26:1179, Table 2.3 and eq. 2.4; the degrees and θ_m scipy.linalg.expm starts from)
PADE_DEGREES = (3, 5, 7, 9, 13)
PADE_THETA = np.array([1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1, 2.097847961257068e0,
                       5.371920351148152e0])
PADE_COEFFICIENTS = np.zeros((5, 14))
PADE_COEFFICIENTS[0, :4] = [120.0, 60.0, 12.0, 1.0]
PADE_COEFFICIENTS[1, :6] = [30240.0, 15120.0, 3360.0, 420.0, 30.0, 1.0]
PADE_COEFFICIENTS[2, :8] = [17297280.0, 8648640.0, 1995840.0, 277200.0, 25200.0, 1512.0, 56.0, 1.0]
PADE_COEFFICIENTS[3, :10] = [17643225600.0, 8821612800.0, 2075673600.0, 302702400.0, 30270240.0, 2162160.0,
                             110880.0, 3960.0, 90.0, 1.0]
PADE_COEFFICIENTS[4] = [64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
                        129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0, 40840800.0,
                        960960.0, 16380.0, 182.0, 1.0]


@numba.njit(**JIT_FLAGS)
def expm_small(A):
    """e^A of a small dense matrix, compiled (the Krylov substeps' (m+1)-square exponentials, where scipy's expm
    spent ~4/5 of a call in Python): Higham 2005's Alg. 2.3 — the least degree m of PADE_DEGREES with ‖A‖_1 ≤ θ_m,
    else degree 13 on A/2^s, s = ⌈log2(‖A‖_1/θ_13)⌉, squared s times; r_m = (V − U)^{-1}(V + U), U the odd part of
    the numerator, V the even.  Without Al-Mohy & Higham 2009's guard against overscaling (scipy's): a strongly
    non-normal A loses accuracy, [[1, b], [0, −1]] 1e-11 relative at b = 1e6, 7e-8 at b = 1e10 (a review's
    measurement; the substeps' Hessenberg matrices agreed with mpmath to 4e-15).  Non-finite A: NaN."""
    n = A.shape[0]
    if not np.all(np.isfinite(A)):
        return np.full((n, n), np.nan, dtype=A.dtype)
    norm = 0.0
    for j in range(n):
        col = 0.0
        for i in range(n):
            col += abs(A[i, j])
        norm = max(norm, col)
    level = 0
    while level < len(PADE_DEGREES) - 1 and norm > PADE_THETA[level]:
        level += 1
    s = max(0, int(math.ceil(math.log2(norm / PADE_THETA[level])))) if norm > PADE_THETA[level] else 0
    X = _sum(0.5 ** s, A, 0.0, A, 0.0, A, 0.0)
    b = PADE_COEFFICIENTS[level]
    X2 = X @ X
    if level == 4:
        X4 = X2 @ X2
        X6 = X4 @ X2
        U = X @ (X6 @ _sum(b[13], X6, b[11], X4, b[9], X2, 0.0) + _sum(b[7], X6, b[5], X4, b[3], X2, b[1]))
        V = X6 @ _sum(b[12], X6, b[10], X4, b[8], X2, 0.0) + _sum(b[6], X6, b[4], X4, b[2], X2, b[0])
    else:                           # Σ over the even powers X^{2k}, k ≤ (m − 1)/2, by Horner in X²
        degree = PADE_DEGREES[level]
        odd, even = _sum(0.0, X2, 0.0, X2, 0.0, X2, b[degree]), _sum(0.0, X2, 0.0, X2, 0.0, X2, b[degree - 1])
        for k in range(degree - 2, 0, -2):
            odd = X2 @ odd + _sum(0.0, X2, 0.0, X2, 0.0, X2, b[k])
            even = X2 @ even + _sum(0.0, X2, 0.0, X2, 0.0, X2, b[k - 1])
        U, V = X @ odd, even
    R = _solve(_sum(1.0, V, -1.0, U, 0.0, U, 0.0), _sum(1.0, V, 1.0, U, 0.0, U, 0.0))
    for _ in range(s):
        R = R @ R
    return R


@numba.njit(**JIT_FLAGS)
def _sum(a, A, b, B, c, C, d):
    """a A + b B + c C + d I, square matrices (one compiled function for expm_small's sums: each numpy array
    expression compiles a loop of its own)."""
    n = A.shape[0]
    out = np.empty((n, n), dtype=A.dtype)
    for i in range(n):
        for j in range(n):
            out[i, j] = a * A[i, j] + b * B[i, j] + c * C[i, j]
        out[i, i] += d
    return out


@numba.njit(**JIT_FLAGS)
def _solve(M, R):
    """M^{-1} R by Gaussian elimination with partial pivoting, M and R overwritten, R returned (Numba's
    ``np.linalg.solve`` took 3.6 s to compile)."""
    n = M.shape[0]
    for c in range(n):
        p = c
        for i in range(c + 1, n):
            if abs(M[i, c]) > abs(M[p, c]):
                p = i
        if p != c:
            for j in range(n):
                M[c, j], M[p, j] = M[p, j], M[c, j]
                R[c, j], R[p, j] = R[p, j], R[c, j]
        for i in range(c + 1, n):
            f = M[i, c] / M[c, c]
            for j in range(c, n):
                M[i, j] -= f * M[c, j]
            for j in range(n):
                R[i, j] -= f * R[c, j]
    for c in range(n - 1, -1, -1):
        for j in range(n):
            R[c, j] /= M[c, c]
        for i in range(c):
            f = M[i, c]
            for j in range(n):
                R[i, j] -= f * R[c, j]
    return R


@numba.njit(**JIT_FLAGS)
def _augmented_product(data, indices, indptr, dense, W, x, out):
    """out = Ã x, Ã = [[X, W], [0, J]]: X in CSR (data, indices, indptr) or ``dense`` (where it has rows), J the
    shift (out_{n+i} = x_{n+i+1})."""
    n, p = W.shape
    zero = np.zeros(1, dtype=out.dtype)[0]
    if dense.shape[0]:
        out[:n] = dense @ x[:n]
    else:
        for i in range(n):
            acc = zero
            for q in range(indptr[i], indptr[i + 1]):
                acc += data[q] * x[indices[q]]
            out[i] = acc
    for i in range(n):
        acc = out[i]
        for c in range(p):
            acc += W[i, c] * x[n + c]
        out[i] = acc
    for c in range(p - 1):
        out[n + c] = x[n + c + 1]
    if p:
        out[n + p - 1] = 0


@numba.njit(**JIT_FLAGS)
def _arnoldi(data, indices, indptr, dense, W, V, H, start, stop):
    """Extend the Arnoldi decomposition Ã V_j = V_{j+1} H̄_j (modified Gram–Schmidt; Saad 1992, Alg. 2.1) from
    ``start`` to ``stop`` columns, rows of V the basis.  Returns (columns, happy breakdown: h_{j+1,j} at most
    HAPPY_BREAKDOWN ‖Ã v_j‖, the subspace invariant); one product a column."""
    w = np.empty_like(V[0])
    for j in range(start, stop):
        _augmented_product(data, indices, indptr, dense, W, V[j], w)
        before = np.linalg.norm(w)
        for i in range(j + 1):
            h = np.vdot(V[i], w)
            H[i, j] = h
            w -= h * V[i]
        after = np.linalg.norm(w)
        H[j + 1, j] = after
        if after <= HAPPY_BREAKDOWN * before:
            V[j + 1] = 0
            return j + 1, True
        V[j + 1] = w / after
    return stop, False
