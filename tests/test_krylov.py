"""Krylov φ-actions (kernels.krylov_action: Niesen & Wright 2012's substeps on Al-Mohy & Higham's augmented matrix)
against the dense exponential of the augmented matrix: random stable sparse matrices, normal and not, real and
complex vectors, p = 0..4, any scale and tolerance; zero vectors, invariant subspaces, non-finite input, and the
products it saves where phi_action chooses it.  One compiled Arnoldi per type (real and complex CSR, real dense)."""
import math

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import scipy.sparse.linalg
import sympy as sp
from hypothesis import assume, given, settings, strategies as st

from sdekit.kernels import operators
from sdekit.kernels.expm_action import UNIT_ROUNDOFF, ActionControl
from sdekit.kernels.krylov_action import krylov_phi_action
from sdekit.testing import stable_operator


def _augmented_reference(A, scale, vectors):
    """Σ_k φ_k(scale·A) w_k from scipy.linalg.expm of [[X, W], [0, J]] (Al-Mohy & Higham 2011, Thm 2.1), dense; the
    vectors scaled to unit size first (large W made expm's own error 2e-13)."""
    X = scale * (A.toarray() if scipy.sparse.issparse(A) else A)
    n, p = X.shape[0], max(vectors)
    size = max(np.linalg.norm(w) for w in vectors.values()) or 1.0
    dtype = np.result_type(X, *vectors.values())
    big = np.zeros((n + p, n + p), dtype=dtype)
    big[:n, :n] = X
    for k in range(1, p + 1):
        big[:n, n + p - k] = vectors.get(k, 0.0) / size
    big[n:, n:] = np.eye(p, k=1)
    start = np.concatenate([vectors.get(0, np.zeros(n)) / size, np.eye(p)[-1] if p else []]).astype(dtype)
    return size * (scipy.linalg.expm(big) @ start)[:n]


@settings(max_examples=20, deadline=None)
@given(kind=st.sampled_from(["diffusion", "upwind", "sparse"]), n=st.integers(2, 40), seed=st.integers(0, 10**6),
       stiffness=st.floats(0.01, 500.0), scale=st.sampled_from([1.0, 0.3, -0.05]),
       keys=st.sets(st.integers(0, 4), min_size=1), size=st.floats(1e-3, 1e4),
       exponent=st.sampled_from([53, 40, 30, 20, 12]), complex_vectors=st.booleans())
def test_krylov_phi_actions_meet_their_tolerance(kind, n, seed, stiffness, scale, keys, size, exponent, complex_vectors):
    """Σ_k φ_k(scale·A) w_k within 10 tol (2-norm, relative to the result or, where it decays below it, to its
    value at X = 0, Σ_k ‖w_k‖/k!; plus rounding) of the dense reference, for any subset of k = 0..4, real or
    complex vectors; a negative scale (an unstable X, growing) included."""
    A = stable_operator(kind, n, seed, stiffness)
    rng = np.random.default_rng(seed + 1)
    vectors = {k: size * (rng.normal(size=n) + (1j * rng.normal(size=n) if complex_vectors else 0)) for k in keys}
    tol = 2.0 ** -exponent
    control = ActionControl(tol)
    got = krylov_phi_action(A, scale, vectors, control)
    want = _augmented_reference(A, scale, vectors)
    reference = max(np.linalg.norm(want), sum(np.linalg.norm(w) / math.factorial(k) for k, w in vectors.items()))
    assert np.linalg.norm(got - want) <= (10 * tol + 1e-13 * max(1.0, stiffness)) * reference
    assert got.dtype == (np.complex128 if complex_vectors else np.float64)
    assert control.actions == 1 and control.products >= 1


def test_dense_matrices_act_as_sparse_ones_do():
    """A dense A runs the same compiled Arnoldi (its dense branch): the same result as its CSR form."""
    A = stable_operator("upwind", 30, 3, 200.0)
    vectors = {k: np.random.default_rng(k).normal(size=30) for k in (0, 1, 3)}
    want = _augmented_reference(A, 0.5, vectors)
    scale = max(np.linalg.norm(want), sum(np.linalg.norm(w) / math.factorial(k) for k, w in vectors.items()))
    sparse, dense = (krylov_phi_action(matrix, 0.5, vectors, ActionControl(1e-10)) for matrix in (A, A.toarray()))
    assert np.linalg.norm(sparse - want) <= 1e-9 * scale          # the tolerance's scale (module note)
    np.testing.assert_allclose(dense, sparse, rtol=0, atol=1e-13 * scale)


def test_zero_vectors_and_invariant_subspaces_are_exact():
    """All-zero vectors give zero (no products for p = 0; for p >= 1 the subspace of the shift J is invariant
    after p products); a matrix of 3 unknowns is exhausted at dimension 3 + p (happy breakdown): exact."""
    A = stable_operator("diffusion", 20, 1, 50.0)
    control = ActionControl(1e-8)
    assert not np.any(krylov_phi_action(A, 1.0, {0: np.zeros(20)}, control)) and control.products == 0
    assert not np.any(krylov_phi_action(A, 1.0, {1: np.zeros(20), 3: np.zeros(20)}, control))
    small = stable_operator("upwind", 3, 2, 30.0)
    vectors = {0: np.ones(3), 2: np.arange(3.0)}
    control = ActionControl(UNIT_ROUNDOFF)
    got = krylov_phi_action(small, 1.0, vectors, control)
    np.testing.assert_allclose(got, _augmented_reference(small, 1.0, vectors), rtol=1e-13, atol=1e-15)
    assert control.products <= 3 + 2


def test_tiny_and_huge_vectors_act_as_unit_ones_scaled():
    """Vectors whose 2-norm squared under- or overflows (entries 1e-200, 1e200; subnormal 1e-310) act as the unit
    vectors scaled: np.linalg.norm's 0 made η = 1 (p = 0: NaN from 0/0; p >= 1: the rounding-level estimate of the
    e_p block accepted any basis, O(1) relative error) and its inf NaN."""
    A = stable_operator("diffusion", 50, 0, 40.0)
    rng = np.random.default_rng(0)
    for keys in ([0], [0, 1], [1, 3, 4]):
        vectors = {k: rng.normal(size=50) for k in keys}
        unit = krylov_phi_action(A, 1.0, vectors, ActionControl(1e-10))
        for s in (1e-200, 1e200, 1e-310):
            got = krylov_phi_action(A, 1.0, {k: s * w for k, w in vectors.items()}, ActionControl(1e-10))
            assert np.all(np.isfinite(got)), (keys, s)
            np.testing.assert_allclose(got / s, unit, rtol=1e-6 if s == 1e-310 else 1e-9,
                                       atol=1e-9 * np.abs(unit).max(), err_msg=str((keys, s)))


def test_non_finite_input_and_a_diverging_action_give_nan():
    """NaN/inf in A, in a vector or in the scale, and an action whose exponential overflows (a diverging step):
    NaN, promptly (no exception, no endless substeps)."""
    A = stable_operator("diffusion", 10, 0, 4.0)
    w = np.ones(10)
    bad = A.copy()
    bad.data[3] = np.nan
    cases = [(bad, 1.0, {0: w}), (A, 1.0, {0: w, 2: np.full(10, np.inf)}), (A, np.inf, {1: w}),
             (A, -1e4, {0: w, 1: w})]                  # e^{1e4 ‖A‖}: overflow
    for matrix, scale, vectors in cases:
        assert np.isnan(krylov_phi_action(matrix, scale, vectors, ActionControl(1e-8))).all()
    assert np.isnan(operators.phi_action(A, np.nan, {0: w, 1: w})).all()
    with pytest.raises(ValueError, match="tol must be positive"):
        krylov_phi_action(A, 1.0, {0: w}, ActionControl(0.0))


def test_phi_action_takes_krylov_for_stiff_sparse_actions_at_a_fraction_of_the_products():
    """phi_action on a stiff diffusion stencil (‖hA‖_1 = 400, Allen–Cahn's Jacobians) chooses Krylov
    (KRYLOV_NORM_MIN): one action, under a third of the Taylor path's products, to the same tolerance."""
    A = stable_operator("diffusion", 200, 5, 400.0)
    vectors = {k: np.random.default_rng(k).normal(size=200) for k in (1, 3, 4)}
    want = _augmented_reference(A, 1.0, vectors)
    krylov, taylor = ActionControl(1e-8), ActionControl(1e-8)
    got = operators.phi_action(A, 1.0, vectors, krylov)
    operators.taylor_phi_action(A, 1.0, vectors, taylor)
    assert operators.KRYLOV_NORM_MIN < 400.0 and krylov.actions == 1
    assert krylov.products < taylor.products / 3
    assert np.linalg.norm(got - want) <= 1e-7 * np.linalg.norm(want)


def test_operators_that_grow_within_the_step_take_the_taylor_path(monkeypatch):
    """X = 50(−I + 3N) (N the 20 × 20 shift: ‖e^{X/2}‖ = 5e7) exhausts a Krylov basis whose rounding moves H's
    eigenvalues (5e-3 relative error and worse); its logarithmic norm (bound 100 > KRYLOV_LOG_NORM_MAX) sends
    ``phi_action`` to Taylor's series, within the tolerance.  Stencils (μ ≤ 0) and a dispersive i·L stay on Krylov."""
    from sdekit.kernels.krylov_action import log_norm_bound
    X = 50.0 * (-np.eye(20) + 3.0 * np.eye(20, k=1))
    vectors = {0: np.random.default_rng(0).normal(size=20), 1: np.ones(20)}
    want = _augmented_reference(X, 1.0, vectors)
    taken = []
    monkeypatch.setattr(operators, "krylov_phi_action", lambda *a: taken.append("krylov") or krylov_phi_action(*a))
    got = operators.phi_action(scipy.sparse.csr_matrix(X), 1.0, vectors, ActionControl(1e-8))
    assert taken == [] and np.linalg.norm(got - want) <= 1e-7 * np.linalg.norm(want)
    assert log_norm_bound(X, 1.0) == pytest.approx(100.0) and log_norm_bound(X, -1.0) == pytest.approx(200.0)
    lap = stable_operator("diffusion", 30, 1, 400.0)
    assert log_norm_bound(lap, 1.0) <= 0 and log_norm_bound(1j * lap, 1.0) <= 1e-12
    assert log_norm_bound(stable_operator("upwind", 30, 1, 400.0), 1.0) <= 0
    operators.phi_action(lap, 1.0, vectors | {0: np.ones(30), 1: np.ones(30)}, ActionControl(1e-8))
    assert taken == ["krylov"]


def _diffusion(m: int, c: float):
    """(c Δ, the 2-D Dirichlet Laplacian on m × m interior points in CSR, and a smooth u0 off zero on the grid)."""
    dx = 1.0 / (m + 1)
    D2 = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(m, m)) / dx**2
    A = (c * (scipy.sparse.kron(D2, scipy.sparse.identity(m)) + scipy.sparse.kron(scipy.sparse.identity(m), D2))).tocsr()
    g = np.linspace(dx, 1 - dx, m)
    return A, np.sin(np.pi * g)[:, None] * np.sin(2 * np.pi * g)[None, :] + 0.3


def _forced_exact(A, u0):
    """u(1) of u' = (A + 0.1) u + cos t from u0: the exponential of the system with (cos t, sin t) appended."""
    n = A.shape[0]
    augmented = scipy.sparse.bmat([[A + 0.1 * scipy.sparse.identity(n), np.ones((n, 1)), None],
                                   [None, None, -np.ones((1, 1))], [None, np.ones((1, 1)), None]]).tocsc()
    return scipy.sparse.linalg.expm_multiply(augmented, np.r_[u0.ravel(), 1.0, 0.0])[:n]


def test_exponential_rosenbrock_actions_are_relative_to_the_state_not_the_time_entry():
    """Exprb43's Jacobian actions act on [v; τ] (the time row of J̃).  With ∂N/∂t = 0 the τ entry is inert and left 0:
    it dominated a small state's vectors (v ~ 2e-7, τ ~ 7e-3), and Krylov's tolerance relative to the whole vector
    put the solution 76× rtol off at a state of 1e-6 (a review's find).  With ∂N/∂t ≠ 0 the entry is live and J̃'s time
    column is scaled instead.  The solve is now the same at any scale."""
    import sdekit as sk
    m = 12
    A, u0 = _diffusion(m, 0.01)
    exact = scipy.sparse.linalg.expm_multiply(A + 0.1 * scipy.sparse.identity(m * m), u0.ravel())
    u = sk.field("u", (m, m))
    model = sk.FieldODE(u, linear=sk.matrix((m, m), A), nonlinear=0.1 * u)
    for s in (1.0, 1e-6, 1e-12):
        sol = sk.solve(sk.FieldProblem(model, s * u0, (0.0, 1.0)), "Exprb43", rtol=1e-6, atol=1e-6 * s, saveat=[1.0])
        assert np.abs(sol.y[-1].ravel() / s - exact).max() <= 1e-6 * np.abs(exact).max(), s
    # ∂N/∂t ≠ 0 (a forcing s cos t, 30× the diffusion): the time entry is live, and J̃'s time column is scaled to the
    # state's size (field_runtime.FieldLanes._time_scaled); unscaled, the state of 1e-12 was 6e5× rtol off
    A = 30 * A
    exact = _forced_exact(A, u0)
    for s in (1.0, 1e-6, 1e-12):
        forced = sk.FieldODE(u, linear=sk.matrix((m, m), A), nonlinear=0.1 * u + s * sp.cos(sk.t))
        sol = sk.solve(sk.FieldProblem(forced, s * u0, (0.0, 1.0)), "Exprb43", rtol=1e-6, atol=1e-6 * s, saveat=[1.0])
        assert np.abs(sol.y[-1].ravel() / s - exact).max() <= 1e-6 * np.abs(exact).max(), s


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 31), seed=st.integers(0, 10**6), norm=st.floats(1e-4, 1e3), shift=st.floats(-1.0, 0.5),
       complex_matrix=st.booleans())
def test_the_compiled_small_exponential_is_scipys(n, seed, norm, shift, complex_matrix):
    """expm_small (the substeps' (m+1)-square exponentials: Higham 2005's Padé degrees 3 … 13 and scaling, compiled)
    agrees with scipy.linalg.expm (Al-Mohy & Higham 2009's refinement of it) at every norm bound θ_m's degree choice
    crosses; a non-finite matrix gives NaN."""
    from sdekit.kernels.krylov_action import expm_small
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) + (1j * rng.normal(size=(n, n)) if complex_matrix else 0)
    A = norm * (A / np.abs(A).sum(axis=0).max() + shift * np.eye(n))
    want = scipy.linalg.expm(A)
    assume(np.all(np.isfinite(want)))         # e^710 overflows
    got = expm_small(A)
    assert got.dtype == A.dtype
    assert np.abs(got - want).max() <= 1e-13 * max(1.0, norm) * np.abs(want).max(), np.abs(got - want).max()
    assert np.all(np.isnan(expm_small(np.where(np.eye(n, dtype=bool), np.inf, A))))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 25), seed=st.integers(0, 10**6), density=st.floats(0.05, 0.7),
       kind=st.sampled_from(["real", "complex", "skew", "duplicates"]))
def test_sparse_log_norm_bounds_are_the_dense_ones(n, seed, density, kind):
    """log_norms of a CSR matrix (its entries paired with their transposes by a sorted search) equals the dense
    Gershgorin bound on the Hermitian part (X + X^H)/2, for real, complex and skew-Hermitian (μ ≤ 0) matrices and
    CSR with duplicate entries."""
    from sdekit.kernels.krylov_action import log_norms
    rng = np.random.default_rng(seed)
    A = scipy.sparse.random(n, n, density=density, random_state=rng, format="coo")
    if kind in ("complex", "skew"):
        A = (A + 1j * scipy.sparse.random(n, n, density=density, random_state=rng, format="coo")).tocoo()
    if kind == "skew":
        A = (A - A.T.conj()).tocoo()
    if kind == "duplicates":
        A = scipy.sparse.coo_matrix((np.r_[A.data, -A.data / 2], (np.r_[A.row, A.row], np.r_[A.col, A.col])), (n, n))
    D = A.toarray()
    H = (D + D.conj().T) / 2
    centre = np.real(np.diag(H))
    radius = np.abs(H).sum(axis=1) - np.abs(centre)
    order = np.lexsort((A.col, A.row))     # CSR as given, duplicates kept (scipy's COO -> CSR would sum them)
    indptr = np.r_[0, np.cumsum(np.bincount(A.row, minlength=n))]
    got = log_norms(scipy.sparse.csr_matrix((A.data[order], A.col[order], indptr), shape=(n, n)))
    np.testing.assert_allclose(got, (np.max(centre + radius), np.max(radius - centre)), rtol=1e-13, atol=1e-13)
    if kind == "skew":
        assert got[0] <= 1e-13 + np.max(np.abs(D)) * 1e-15


def test_exponential_rosenbrock_time_column_scaling_is_scale_free_in_cost():
    """J̃'s time column is scaled both ways (σ = ‖f(u_n)‖/1, not capped at 1): capped, a unit-size state kept b as it
    is, and b's share h‖b‖_1/2 of the Gershgorin bound on μ(hJ̃) routed a 32 × 32 forced diffusion's actions to Taylor
    at scale 1 (7101 products) but not at 1e-6 (3750).  Same products, same error/rtol at either scale."""
    import sdekit as sk
    m = 32
    A, u0 = _diffusion(m, 0.3)
    exact = _forced_exact(A, u0)
    u = sk.field("u", (m, m))
    products = []
    for s in (1.0, 1e-6):
        forced = sk.FieldODE(u, linear=sk.matrix((m, m), A), nonlinear=0.1 * u + s * sp.cos(sk.t))
        sol = sk.solve(sk.FieldProblem(forced, s * u0, (0.0, 1.0)), "Exprb43", rtol=1e-6, atol=1e-6 * s, saveat=[1.0])
        assert np.abs(sol.y[-1].ravel() / s - exact).max() <= 1e-6 * np.abs(exact).max(), s
        products.append(sol.stats["action_products"])
    assert abs(products[0] - products[1]) <= 0.05 * products[1], products


def test_forced_exponential_rosenbrock_actions_stay_on_krylov_by_a_bound_on_their_growth(monkeypatch):
    """J̃'s time column w enters the routing bound on μ_2(J̃) by Weyl's inequality, ‖w‖_2/2 (field_runtime.
    time_column_log_norms), not Gershgorin's ‖w‖_1/2: the bound holds (every sign, dense and sparse, against the
    Hermitian part's largest eigenvalue), and a strongly forced 24 × 24 diffusion takes no Taylor action (it took 22
    of 148, 1.7× the products) and meets its tolerance."""
    import sdekit as sk
    from sdekit.kernels.field_runtime import time_column_log_norms
    rng = np.random.default_rng(5)
    for n in (2, 7, 30):
        X = rng.normal(size=(n, n)) - 3 * np.eye(n)
        A = np.zeros((n + 1, n + 1))
        A[:n, :n], A[:n, n] = X, 40 * rng.normal(size=n)
        for M in (A, scipy.sparse.csr_matrix(A)):
            plus, minus = time_column_log_norms(M)
            H = (A + A.T) / 2
            assert np.linalg.eigvalsh(H).max() <= plus + 1e-12 and np.linalg.eigvalsh(-H).max() <= minus + 1e-12
    taken = []
    monkeypatch.setattr(operators, "taylor_phi_action", lambda *a, **k: taken.append(1))
    m = 24
    A, u0 = _diffusion(m, 1.0)
    u = sk.field("u", (m, m))
    forced = sk.FieldODE(u, linear=sk.matrix((m, m), A), nonlinear=0.1 * u + 100 * sp.cos(sk.t))
    sol = sk.solve(sk.FieldProblem(forced, u0, (0.0, 1.0)), "Exprb43", rtol=1e-6, atol=1e-6, saveat=[1.0])
    exact = _forced_exact(A, u0 / 100) * 100
    assert not taken and np.abs(sol.y[-1].ravel() - exact).max() <= 1e-6 * np.abs(exact).max()
