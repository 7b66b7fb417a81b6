"""The action of the matrix exponential, e^{tA} B, to a tolerance: Al-Mohy & Higham (2011), "Computing the
action of the matrix exponential", SIAM J. Sci. Comput. 33:488 — Algorithm 3.2 with code fragment 3.1.

A truncated Taylor series of degree m applied s times, e^{tA} B = (T_m(tA/s))^s B, shifted by μ = trace(A)/n.
(m, s) are chosen so that the backward error is at most ``tol`` (‖ΔA‖ ≤ tol ‖A‖: their Thm 3.1) at the
fewest products: ‖tA‖/s ≤ θ_m(tol), where θ_m is the largest θ with h̃_{m+1}(θ)/θ ≤ tol (their eq. 3.8–3.9),
computed here for any tolerance.  ``scipy.sparse.linalg.expm_multiply`` is the same algorithm with θ_m for
double precision only (2^-53: :func:`thetas` reproduces its table), so it cannot be told that a step with
rtol = 1e-6 needs far less.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numba
import numpy as np

from ..abi import JIT_FLAGS

#: the largest Taylor degree and the number of power-norm estimates (AMH 2011 §3: m_max = 55, p_max = 8)
M_MAX, P_MAX = 55, 8
#: the degrees the search tries: every one to 30, then every fifth (their Table 3.1)
DEGREES = tuple(range(1, 31)) + (35, 40, 45, 50, 55)
#: exact ‖A^p‖_1 from sparse powers while A^p has at most this many nonzeros a row on average (a stencil: 2p + 1)
EXACT_POWER_FILL = 32
#: series terms of h_{m+1} kept: enough for the degrees above (the θ_m agree with K = 250 to all digits)
SERIES_TERMS = 150
UNIT_ROUNDOFF = 2.0 ** -53


@dataclass
class ActionControl:
    """How a solve takes its exponential actions and what they cost (``sol.stats``): ``tol`` the error allowed to
    each (Taylor: a backward error relative to ‖A‖; Krylov: a forward error relative to the result, the
    ``krylov_action`` module's note), ``actions`` how many were taken, ``products`` their matrix–vector products."""
    tol: float = UNIT_ROUNDOFF
    actions: int = 0
    products: int = 0


@functools.lru_cache(maxsize=None)
def _backward_error_series(m: int) -> np.ndarray:
    """|c_k|, k = 1 .. SERIES_TERMS, of h_{m+1}(x) = log(e^{-x} T_m(x)) = Σ_{k>m} c_k x^k (T_m: the degree-m
    Taylor polynomial of e^x).  With u = e^{-x} T_m(x) − 1 = −e^{-x} Σ_{i>m} x^i/i!, whose coefficients are
    exact integers over k! (u_k = −Σ_{i=m+1}^k C(k,i)(−1)^{k−i} / k! = Σ_{i=0}^m C(k,i)(−1)^{k−i} / k!, the full
    alternating sum being 0), log(1 + u) = Σ_j (−1)^{j+1} u^j / j."""
    K = SERIES_TERMS
    u = np.zeros(K + 1)
    for k in range(m + 1, K + 1):
        u[k] = sum(math.comb(k, i) * (-1) ** (k - i) for i in range(m + 1)) / math.factorial(k)
    c, power, j = np.zeros(K + 1), u.copy(), 1
    while power.any():
        c += (-1) ** (j + 1) * power / j
        power = np.convolve(power, u)[:K + 1]
        j += 1
    return np.abs(c[1:])


@functools.lru_cache(maxsize=None)
def thetas(tol_exponent: int) -> dict:
    """{m: θ_m} for tol = 2^-tol_exponent: the largest θ with h̃_{m+1}(θ)/θ = Σ_{k>m} |c_k| θ^{k−1} ≤ tol
    (AMH 2011 eq. 3.9; Higham 2008, Table A.3 and AMH Table 3.1 list them for 2^-53 and 2^-24), by bisection
    in log θ (the sum increases with θ)."""
    tol = 2.0 ** -tol_exponent
    table = {}
    for m in DEGREES:
        series = _backward_error_series(m)
        excess = lambda th: np.polynomial.polynomial.polyval(th, series) - tol     # noqa: E731
        lo, hi = 1e-20, 1.0
        while excess(hi) < 0:
            hi *= 2.0
        for _ in range(100):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
        table[m] = lo
    return table


def tolerance_exponent(tol: float) -> int:
    """The table's tolerance for ``tol``: 2^-j with 2^-j <= tol, j in [10, 53] (one table per power of two)."""
    if not (tol > 0):
        raise ValueError(f"expm_action: tol must be positive, got {tol!r}")
    return int(min(53, max(10, math.ceil(-math.log2(tol)))))


def one_norm(A) -> float:
    """‖A‖_1, the largest column sum of |A| (a CSR matrix's by one bincount over its column indices)."""
    if not A.shape[0]:
        return 0.0
    if getattr(A, "format", None) == "csr":
        return float(np.bincount(A.indices, weights=np.abs(A.data), minlength=A.shape[1]).max(initial=0.0))
    return float(abs(A).sum(axis=0).max())


def _power_norm_estimate(A, p: int) -> float:
    """An estimate of ‖A^p‖_1 (Higham & Tisseur's block 1-norm estimator: ``scipy.sparse.linalg.onenormest``
    on the operator B ↦ A^p B), never forming A^p."""
    from scipy.sparse.linalg import LinearOperator, onenormest

    def apply(x):
        for _ in range(p):
            x = A @ x
        return x

    def apply_t(x):
        for _ in range(p):
            x = A.T @ x
        return x
    n = A.shape[0]
    op = LinearOperator((n, n), matvec=apply, rmatvec=apply_t, matmat=apply, rmatmat=apply_t, dtype=float)
    return float(onenormest(op)) if n > 4 else one_norm(np.linalg.matrix_power(np.asarray(
        A.toarray() if hasattr(A, "toarray") else A), p))


def power_norms(A, p_max: int) -> dict:
    """{p: ‖A^p‖_1^{1/p}}, p = 1 .. p_max (AMH 2011 eq. 3.11's d_p): exact from the sparse powers of a CSR A while
    they stay sparse (at most EXACT_POWER_FILL nonzeros a row on average: a stencil's A^p is banded, and its powers
    cost less than the estimator's products), the estimate of :func:`_power_norm_estimate` otherwise.  A product is
    formed only when a bound on its nonzeros (Σ over the power's entries of A's row counts) is within the limit: a
    matrix that fills in (an arrow, a dense row) never builds a dense power."""
    limit = EXACT_POWER_FILL * A.shape[0]
    exact = getattr(A, "format", None) == "csr" and A.nnz <= limit
    d, power, row_counts = {1: one_norm(A)}, A, np.diff(A.indptr) if exact else None
    for p in range(2, p_max + 1):
        if exact:
            exact = int(row_counts[power.indices].sum()) <= limit     # nnz(power @ A) <= this
        if exact:
            power = (power @ A).tocsr()
            exact = power.nnz <= limit
        d[p] = (one_norm(power) if exact else _power_norm_estimate(A, p)) ** (1.0 / p)
    return d


def taylor_parameters(A, columns: int, tol: float) -> tuple[int, int] | None:
    """(m, s): the degree and the number of substeps for e^A B at tolerance ``tol``, B of ``columns`` columns
    (AMH 2011 code fragment 3.1).  Where ‖A‖_1 is small (their condition 3.13) s = ⌈‖A‖_1/θ_m⌉ at the least
    m·s; else from α_p = max(d_p, d_{p+1}), d_p = ‖A^p‖_1^{1/p} (eq. 3.11), which for a non-normal A can be far
    below ‖A‖_1.  None where ‖A‖_1 is not finite."""
    norm = one_norm(A)
    if not np.isfinite(norm):
        return None
    if norm == 0.0:
        return 0, 1
    theta = thetas(tolerance_exponent(tol))
    ell = 2
    if norm <= 2 * ell * P_MAX * (P_MAX + 3) * theta[M_MAX] / (columns * M_MAX):   # condition (3.13)
        return min(((m, max(1, math.ceil(norm / th))) for m, th in theta.items()), key=lambda ms: ms[0] * ms[1])
    d = power_norms(A, P_MAX + 1)
    best = None
    for p in range(2, P_MAX + 1):
        alpha = max(d[p], d[p + 1])
        for m in DEGREES:
            if m >= p * (p - 1) - 1:
                s = max(1, math.ceil(alpha / theta[m]))
                if best is None or m * s < best[0] * best[1]:
                    best = (m, s)
    return best


def expm_action(A, B, control: ActionControl | None = None) -> np.ndarray:
    """e^A B for a square ``A`` (dense array or scipy sparse matrix; real, or complex as the augmented matrix of
    complex vectors' φ-actions is) and a real or complex vector or matrix ``B`` (NaN where either is not finite),
    to a backward error of ``control.tol`` relative to ‖A‖ (default u; AMH 2011 Algorithm 3.2: shift by μ = trace(A)/n, s substeps of the degree-m Taylor series, each ended early
    once two successive terms fall below tol ‖F‖_∞), counted in ``control``."""
    from scipy import sparse
    control = ActionControl() if control is None else control
    tol = control.tol
    tolerance_exponent(tol)                         # validates tol
    B = np.asarray(B)
    B = B.astype(np.result_type(B.dtype, A.dtype, np.float64))    # double or complex double: the loops run in B's type
    if A.ndim != 2 or A.shape[0] != A.shape[1] or B.shape[:1] != A.shape[:1] or B.ndim > 2:
        raise ValueError(f"expm_action: A must be square and B a vector or matrix of its rows, got A {A.shape}, "
                         f"B {B.shape}")
    n = A.shape[0]
    if B.size == 0:                                 # no columns (or rows): nothing to act on
        return B.copy()
    mu = float(A.diagonal().sum().real) / n if n else 0.0    # any real shift is exact: e^A = e^μ e^(A − μI)
    with np.errstate(invalid="ignore"):             # inf − inf of a diverging A: NaN, named below
        shifted = A - mu * (sparse.identity(n, format="csr") if sparse.issparse(A) else np.eye(n))
    parameters = taylor_parameters(shifted, 1 if B.ndim == 1 else B.shape[1], tol) if np.all(np.isfinite(B)) else None
    if parameters is None:                          # a non-finite A or B (a diverging step): NaN, the drivers' retcode
        return np.full(B.shape, np.nan, dtype=B.dtype)
    m, s = parameters
    eta = math.exp(mu / s)
    control.actions += 1
    if sparse.issparse(shifted):
        X = shifted.tocsr()
        F, products = _taylor_csr(X.data.astype(B.dtype), X.indices, X.indptr, B.reshape(n, -1), m, s, tol, eta)
        control.products += products
        return F.reshape(B.shape)
    F = B
    for _ in range(s):
        c1 = np.abs(B).max(initial=0.0)
        for j in range(m):
            B = (shifted @ B) / (s * (j + 1))
            control.products += 1
            c2 = np.abs(B).max(initial=0.0)
            F = F + B
            if c1 + c2 <= tol * np.abs(F).max(initial=0.0):
                break
            c1 = c2
        F = eta * F
        B = F
    return F


@numba.njit(**JIT_FLAGS)
def _taylor_csr(data, indices, indptr, B, m, s, tol, eta):
    """:func:`expm_action`'s loop for a CSR matrix (data, indices, indptr) and B (n, k): s substeps of the
    degree-m Taylor series, each ended once two successive terms fall below tol ‖F‖_∞, compiled (a stencil's
    product is a few hundred flops: scipy's per-product overhead was 20× the product).  Returns (F, products)."""
    n, k = B.shape
    F, Z, W = B.copy(), B.copy(), np.empty_like(B)
    zero = np.zeros(1, dtype=B.dtype)[0]
    products = 0
    for _ in range(s):
        c1 = np.abs(Z).max()
        for j in range(m):
            divisor = s * (j + 1)
            for i in range(n):
                for c in range(k):
                    acc = zero
                    for q in range(indptr[i], indptr[i + 1]):
                        acc += data[q] * Z[indices[q], c]
                    W[i, c] = acc / divisor
            Z, W = W, Z
            products += 1
            c2 = np.abs(Z).max()
            F += Z
            if c1 + c2 <= tol * np.abs(F).max():
                break
            c1 = c2
        F *= eta
        Z[:] = F
    return F, products
