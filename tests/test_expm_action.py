"""The exponential action at a tolerance (kernels.expm_action: Al-Mohy & Higham 2011, Algorithm 3.2) and the
φ-actions built on it (kernels.operators.taylor_phi_action) or chosen by phi_action (Krylov: tests/test_krylov.py):
θ_m against the published tables, errors that follow the tolerance against dense expm, fewer products at looser
tolerances, and adaptive field solves that pass their rtol down."""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
from hypothesis import given, settings, strategies as st

import sdekit as sk
from sdekit.kernels import expm_action as ea
from sdekit.kernels.field_runtime import action_tolerance
from sdekit.kernels.operators import phi_action, taylor_phi_action
from sdekit.testing import stable_operator

#: Al-Mohy & Higham (2011), Table 3.1: θ_m for tol = 2^-53 (double) and 2^-24 (single), two digits as printed
PUBLISHED = {53: {5: 2.4e-3, 10: 1.4e-1, 15: 6.4e-1, 20: 1.4, 25: 2.4, 30: 3.5, 35: 4.7, 40: 6.0, 45: 7.2, 50: 8.5,
                  55: 9.9},
             24: {5: 1.3e-1, 10: 1.0, 15: 2.2, 20: 3.6, 25: 4.9, 30: 6.3, 35: 7.7, 40: 9.1, 45: 11.0, 50: 12.0,
                  55: 13.0}}


@pytest.mark.parametrize("exponent", [53, 24])
def test_theta_m_reproduce_the_published_tables(exponent):
    """θ_m computed from the backward-error series h̃_{m+1} (eq. 3.9) agree with Table 3.1 to its printed digits."""
    table = ea.thetas(exponent)
    for m, want in PUBLISHED[exponent].items():
        assert table[m] == pytest.approx(want, rel=0.05), m


def test_theta_m_grow_with_the_degree_and_the_tolerance():
    """A looser tolerance allows a longer substep at every degree, and a higher degree at every tolerance."""
    tight, loose = ea.thetas(53), ea.thetas(20)
    assert all(loose[m] > tight[m] for m in ea.DEGREES)
    assert all(np.diff([tight[m] for m in ea.DEGREES]) > 0)


def _phi_dense(X, k):
    """φ_k(X) from the exponential of [[X, I], [0, J]] (Higham 2008, Thm 10.8 / Saad 1992), dense."""
    n = X.shape[0]
    if k == 0:
        return scipy.linalg.expm(X)
    big = np.zeros((n * (k + 1), n * (k + 1)))
    big[:n, :n] = X
    big[:n, n:2 * n] = np.eye(n)
    for j in range(1, k):
        big[j * n:(j + 1) * n, (j + 1) * n:(j + 2) * n] = np.eye(n)
    return scipy.linalg.expm(big)[:n, k * n:(k + 1) * n]


@settings(max_examples=25, deadline=None)
@given(kind=st.sampled_from(["diffusion", "upwind", "dense"]), seed=st.integers(0, 10**6),
       stiffness=st.floats(0.1, 300.0), exponent=st.sampled_from([53, 40, 30, 20]),
       scale=st.floats(1e-3, 1e4))
def test_phi_actions_are_accurate_to_the_tolerance_asked_for(kind, seed, stiffness, exponent, scale):
    """Σ_k φ_k(A) w_k by the augmented Taylor action at tol = 2^-j: within 10 tol (relative, plus rounding) of dense
    expm-based φ, for random stable operators and vectors of any scale (the η-balancing of W)."""
    n = 30
    A = stable_operator(kind, n, seed, stiffness)
    rng = np.random.default_rng(seed)
    vectors = {k: scale * rng.normal(size=n) for k in range(3)}
    tol = 2.0 ** -exponent
    Ad = A.toarray() if scipy.sparse.issparse(A) else A
    want = sum(_phi_dense(Ad, k) @ w for k, w in vectors.items())
    got = taylor_phi_action(A, 1.0, vectors, ea.ActionControl(tol))
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= 10 * tol + 1e-13 * max(1.0, stiffness)


def _products(monkeypatch):
    """Record (m, s) of every expm_action: m·s bounds its matrix products."""
    seen, original = [], ea.taylor_parameters

    def record(*args):
        seen.append(original(*args))
        return seen[-1]
    monkeypatch.setattr(ea, "taylor_parameters", record)
    return seen


def test_looser_tolerances_take_fewer_products_and_large_vectors_none_more(monkeypatch):
    """At ‖hA‖_1 = 200 (a stiff diffusion stencil) the action at 1e-6 takes fewer products than at u; vectors
    a million times larger take as many as unit ones (W balanced against hA, AMH 2011 §2)."""
    A = stable_operator("diffusion", 200, 1, 200.0)
    w = np.random.default_rng(2).normal(size=200)
    seen = _products(monkeypatch)
    for tol in (ea.UNIT_ROUNDOFF, 1e-6):
        taylor_phi_action(A, 1.0, {0: w, 1: w, 2: w}, ea.ActionControl(tol))
    taylor_phi_action(A, 1.0, {0: w, 1: 1e6 * w, 2: 1e6 * w}, ea.ActionControl(1e-6))
    cost = [m * s for m, s in seen]
    assert cost[1] < 0.85 * cost[0]
    assert cost[2] <= cost[1]


def test_bad_inputs_are_named_and_non_finite_ones_give_nan():
    with pytest.raises(ValueError, match="tol must be positive"):
        ea.expm_action(np.eye(3), np.ones(3), ea.ActionControl(tol=0.0))
    with pytest.raises(ValueError, match="A must be square"):
        ea.expm_action(np.ones((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="A must be square"):
        ea.expm_action(np.eye(3), np.ones(4))
    with pytest.raises(ValueError, match="at least one vector"):
        phi_action(np.eye(3), 1.0, {})
    assert np.isnan(ea.expm_action(np.array([[np.inf]]), np.ones(1))).all()
    assert np.isnan(phi_action(np.eye(2), np.nan, {0: np.ones(2), 1: np.ones(2)})).all()


@pytest.mark.parametrize("sparse", [False, True])
def test_several_columns_and_none_act_like_the_dense_exponential(sparse):
    """B of several columns on the compiled CSR loop and on dense products, and B without columns (it divided by
    zero choosing the Taylor degree)."""
    A = stable_operator("upwind", 30, 4, 40.0)
    A = A if sparse else A.toarray()
    B = np.random.default_rng(1).normal(size=(30, 3))
    dense = A.toarray() if sparse else A
    np.testing.assert_allclose(ea.expm_action(A, B), scipy.linalg.expm(dense) @ B, rtol=1e-12, atol=1e-14)
    assert ea.expm_action(A, np.zeros((30, 0))).shape == (30, 0)


def test_complex_phi_actions_on_a_sparse_matrix_keep_their_imaginary_part():
    """phi_action with complex vectors on a CSR matrix: the augmented matrix is complex (its W block), built from CSR
    arrays in the vectors' type (it was float64: the imaginary part was dropped, 0.9 off the dense result)."""
    A = stable_operator("upwind", 30, 6, 20.0)
    rng = np.random.default_rng(4)
    vectors = {k: rng.normal(size=30) + 1j * rng.normal(size=30) for k in range(3)}
    want = sum(_phi_dense(0.3 * A.toarray(), k) @ w for k, w in vectors.items())
    np.testing.assert_allclose(taylor_phi_action(A, 0.3, vectors), want, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(taylor_phi_action(A.toarray(), 0.3, vectors), want, rtol=1e-13, atol=1e-14)


def test_complex_vectors_keep_their_imaginary_part():
    A = stable_operator("upwind", 12, 3, 5.0)
    b = np.random.default_rng(1).normal(size=(12, 2)) @ np.array([1.0, 1j])
    want = scipy.linalg.expm(A.toarray()) @ b
    np.testing.assert_allclose(ea.expm_action(A.toarray(), b), want, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ea.expm_action(A, b), want, rtol=1e-13, atol=1e-14)       # the compiled CSR loop


def test_a_diverging_solve_on_phi_actions_gives_the_unstable_retcode():
    """u' = u_xx + u³, u0 = 3, on a sparse stencil (φ-actions): the blow-up is the Unstable retcode, as on a dense
    matrix or the sine basis (it used to raise from the action's parameter search)."""
    n = 100
    A = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)).tocsr()
    u = sk.field("u", n)
    for op in (sk.matrix(n, A), sk.matrix(n, A.toarray())):
        prob = sk.FieldProblem(sk.FieldODE(u, linear=op, nonlinear=u**3), np.full(n, 3.0), (0.0, 1.0))
        assert sk.solve(prob, "ETDRK4", dt=0.1).retcode == "Unstable"


def test_adaptive_field_steps_take_their_actions_at_a_hundredth_of_rtol(monkeypatch):
    """An adaptive solve on a sparse stencil (φ-actions) passes 0.01·rtol to its actions, and stays within its
    tolerance of a fixed-step reference whose actions run to u; the fixed-step solve itself asks for u;
    ``sol.stats`` counts the actions and their products."""
    from sdekit.kernels import operators
    seen = []
    original = operators.phi_action

    def record(A, scale, vectors, actions, bounds=None):
        seen.append(actions.tol)
        return original(A, scale, vectors, actions, bounds)
    monkeypatch.setattr(operators, "phi_action", record)
    monkeypatch.setattr(operators, "SPARSE_EIGEN_MAX", 0)      # a stencil too large for its eigenvectors
    n, dx = 120, 1.0 / 121
    D2 = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(n, n)) / dx**2
    x = np.linspace(dx, 1 - dx, n)
    u = sk.field("u", n)
    model = sk.FieldODE(u, linear=sk.matrix(n, 0.02 * D2.tocsr()), nonlinear=u - u**3)
    problem = sk.FieldProblem(model, 0.8 * np.sin(np.pi * x) + 0.3 * np.sin(3 * np.pi * x), (0.0, 1.0))
    reference = sk.solve(problem, "ETDRK4", dt=1 / 64, saveat=[1.0]).y[-1]
    assert set(seen) == {ea.UNIT_ROUNDOFF}
    seen.clear()
    sol = sk.solve(problem, "ETDRK3", rtol=1e-6, atol=1e-9, saveat=[1.0])
    assert sol.success and set(seen) == {action_tolerance(1e-6)} == {1e-8}
    assert sol.stats["driver"] == "array" and sol.stats["phi_actions"] == len(seen)
    assert sol.stats["action_products"] >= 2 * len(seen)
    np.testing.assert_allclose(sol.y[-1], reference, atol=1e-5)


def test_power_norms_are_exact_for_stencils_and_estimates_past_the_fill_limit(monkeypatch):
    """d_p = ‖A^p‖_1^{1/p} (AMH eq. 3.11): a tridiagonal stencil's from its sparse powers, equal to dense powers', no
    estimate taken; a sparse matrix that fills in past EXACT_POWER_FILL (10 nonzeros a row: 100 in A²) takes the
    estimator from p = 2 on, without forming A² (the bound on its nonzeros says so first), a lower bound within a
    few %."""
    estimated, original = [], ea._power_norm_estimate
    monkeypatch.setattr(ea, "_power_norm_estimate", lambda A, p: estimated.append(p) or original(A, p))
    formed, matmul = [], scipy.sparse.csr_matrix.__matmul__
    monkeypatch.setattr(scipy.sparse.csr_matrix, "__matmul__",       # sparse powers formed (not products with vectors)
                        lambda a, b: (formed.append(1) if scipy.sparse.issparse(b) else None) or matmul(a, b))
    stencil = stable_operator("upwind", 40, 5, 50.0)
    got = ea.power_norms(stencil, 6)
    for p in range(1, 7):
        exact = np.abs(np.linalg.matrix_power(stencil.toarray(), p)).sum(axis=0).max() ** (1 / p)
        assert got[p] == pytest.approx(exact, rel=1e-12)
    assert estimated == [] and len(formed) == 5
    formed.clear()
    filling = scipy.sparse.random(200, 200, density=0.05, random_state=3, format="csr")
    got = ea.power_norms(filling, 4)
    assert estimated == [2, 3, 4] and formed == []
    for p in (3, 4):
        exact = np.abs(np.linalg.matrix_power(filling.toarray(), p)).sum(axis=0).max() ** (1 / p)
        assert 0.8 * exact <= got[p] <= exact * (1 + 1e-12)


@pytest.mark.parametrize("n, p", [(1, 1), (6, 1), (6, 3), (9, 2)])
def test_augmented_matrix_is_built_as_scipy_bmat_builds_it(n, p):
    """phi_action's [[X, W], [0, J]] from CSR arrays directly, entry for entry the bmat it replaces."""
    from sdekit.kernels.operators import _augmented_csr
    X = scipy.sparse.random(n, n, density=0.4, random_state=n, format="csr")
    W = np.random.default_rng(p).normal(size=(n, p))
    want = scipy.sparse.bmat([[X, scipy.sparse.csr_matrix(W)], [None, scipy.sparse.csr_matrix(np.eye(p, k=1))]])
    np.testing.assert_array_equal(_augmented_csr(X, W).toarray(), want.toarray())
