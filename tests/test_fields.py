"""Fields (issue 19): structured operators, their φ-functions, and the array-level driver's orders."""
import numpy as np
import pytest
import scipy.linalg
import scipy.sparse
import sympy as sp
from scipy.integrate import solve_ivp

import sdekit as sk
from sdekit.codegen.methods import CATALOGUE
from sdekit.codegen.phi import phi, phi_poly, z
from sdekit.fields import field_source
from sdekit.testing import observed_order, step_counts


def _dense(op):
    """The matrix of an operator, column by column from ``apply``."""
    n = int(np.prod(op.shape))
    return np.stack([op.runtime.apply(e.reshape(op.shape)).reshape(-1) for e in np.eye(n)], axis=1)


def _phi_expm(A, k):
    """φ_k(A) as the top-right block of exp([[A, I, 0..], [0, 0, I..], ...]) (Higham, Functions of
    Matrices, Thm. 10.11; Sidje 1998): independent of the kernels' series."""
    n = A.shape[0]
    if k == 0:
        return scipy.linalg.expm(A)
    M = np.zeros(((k + 1) * n, (k + 1) * n))
    M[:n, :n] = A
    for j in range(k):
        M[j * n:(j + 1) * n, (j + 1) * n:(j + 2) * n] = np.eye(n)
    return scipy.linalg.expm(M)[:n, k * n:]


@pytest.mark.parametrize("make", [
    lambda: sk.laplacian(24, 0.3, "periodic"),
    lambda: sk.fourier(24, 7.0, lambda k: k**2 - k**4 / 4),
    lambda: sk.fourier((8, 6), (5.0, 3.0), lambda kx, ky: -(kx**2 + 2 * ky**2)),
    lambda: sk.fourier(24, 7.0, lambda k: -k**2 / 4 + 2j * k + 0.3j * k**3),
    lambda: sk.laplacian(20, 0.5, "dirichlet"),
    lambda: sk.laplacian((5, 4), (0.5, 0.7), "neumann"),
    lambda: sk.diagonal(-np.linspace(0, 40, 15)),
    lambda: sk.matrix(6, np.random.default_rng(0).normal(size=(6, 6))),
    lambda: sk.matrix(6, (lambda A: -A @ A.T)(np.random.default_rng(2).normal(size=(6, 6)))),
    lambda: sk.matrix((3, 3), scipy.sparse.random(9, 9, density=0.4, random_state=1) - 2 * scipy.sparse.identity(9)),
], ids=["laplacian-periodic", "fourier-KS", "fourier-2d", "fourier-complex", "laplacian-dirichlet", "laplacian-neumann-2d", "diagonal",
        "matrix-dense", "matrix-symmetric", "matrix-sparse"])
@pytest.mark.parametrize("h", [0.05, 0.7])
def test_operator_phi_functions_match_dense_expm(make, h):
    """φ_k(c hL) and resolvents of every structured operator, applied to random vectors, agree with dense
    expm-based φ (relative 1e-10) and the dense inverse."""
    op = make()
    A = _dense(op)
    rng = np.random.default_rng(1)
    v = rng.normal(size=op.shape)
    for k, c in [(0, 1.0), (1, 0.5), (2, 1.0), (3, 1.0)]:
        value = op.runtime.values(phi_poly(phi(k, c * z)), h, {})
        got = op.runtime.combine([(1.0, value, v)]).reshape(-1)
        want = _phi_expm(c * h * A, k) @ v.reshape(-1)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    res = op.runtime.values((((1, (("res", sp.Rational(1, 3)),)),)), h, {})
    got = op.runtime.combine([(1.0, res, v)]).reshape(-1)
    np.testing.assert_allclose(got, np.linalg.solve(np.eye(A.shape[0]) - h / 3 * A, v.reshape(-1)), rtol=1e-10)


def _stencil(n, h, bc):
    """The 3-point second-difference matrix, written out."""
    D = (np.eye(n, k=1) + np.eye(n, k=-1) - 2 * np.eye(n)) / h**2
    if bc == "periodic":
        D[0, -1] = D[-1, 0] = 1 / h**2
    if bc == "neumann":                     # ghost points mirrored: u_{-1} = u_1, u_n = u_{n-2}
        D[0, 1] = D[-1, -2] = 2 / h**2
    return D


@pytest.mark.parametrize("bc", ["periodic", "dirichlet", "neumann"])
def test_laplacians_are_the_three_point_stencils(bc):
    np.testing.assert_allclose(_dense(sk.laplacian(10, 0.25, bc)), _stencil(10, 0.25, bc), atol=1e-10)
    Dx, Dy = _stencil(6, 0.5, bc), _stencil(5, 0.3, bc)
    want = np.kron(Dx, np.eye(5)) + np.kron(np.eye(6), Dy)
    np.testing.assert_allclose(_dense(sk.laplacian((6, 5), (0.5, 0.3), bc)), want, atol=1e-10)


# u_t = u_xx + u − u³ + f(x, t) on [0, 2π) periodic, spectral ∂², f such that u = cos(t) sin x exactly
# (N does not vanish along it: N(u) = u_t − u_xx = (cos t − sin t) sin x)
N_GRID = 16
X = 2 * np.pi * np.arange(N_GRID) / N_GRID


def _manufactured():
    u, S = sk.field("u", N_GRID), sp.Symbol("S")
    t = sk.t
    nonlinear = u - u**3 - sp.sin(t) * S + sp.cos(t) ** 3 * S**3
    model = sk.FieldODE(u, linear=sk.fourier(N_GRID, 2 * np.pi, lambda k: -k**2), nonlinear=nonlinear,
                        data={S: np.sin(X)})
    return sk.FieldProblem(model, np.sin(X), (0.0, 1.0))


FIELD_METHODS = [m for m in CATALOGUE if not m.stochastic]


def test_field_methods_cover_the_ode_catalogue():
    """Every ODE method runs on fields (multistep ones too: the loop IR's startup and history; exponential
    Rosenbrock with the field's dense Jacobian, up to JACOBIAN_MAX unknowns, refused by name above it)."""
    from sdekit.fields import JACOBIAN_MAX
    prob = _manufactured()
    for m in FIELD_METHODS:
        assert "def kernel(" in field_source(prob.model, m.name)
    big = sk.field("u", JACOBIAN_MAX + 1)
    model = sk.FieldODE(big, linear=sk.fourier(JACOBIAN_MAX + 1, 1.0, lambda k: -k**2), nonlinear=-big**3)
    with pytest.raises(sk.ModelError, match="Exprb43.*up to 1024 unknowns"):
        field_source(model, "Exprb43")


@pytest.mark.parametrize("method", [m.name for m in FIELD_METHODS])
def test_field_order_on_a_manufactured_solution(method):
    """Error at t = 1 against u = cos(t) sin x falls at the method's order (slope of the last halving), on the
    numpy driver (the compiled kernel gives its numbers: the per-family agreement tests below)."""
    prob = _manufactured()
    order = next(m.order for m in CATALOGUE if m.name == method)
    exact = np.cos(1.0) * np.sin(X)
    dts = [1 / 40, 1 / 80, 1 / 160]
    errs = [np.abs(sk.solve(prob, method, dt=dt, saveat=[1.0], backend="numpy").y[-1] - exact).max() for dt in dts]
    slope = np.log2(errs[-2] / errs[-1])
    assert order - 0.3 < slope < order + 0.8, (method, errs, slope)


def test_linear_field_is_exact_for_exponential_methods_in_2d():
    """N = 0: ETDRK4 is e^{hL} per step: u = e^{-5t} sin x cos 2y to rounding at any step."""
    x = 2 * np.pi * np.arange(12) / 12
    y = 2 * np.pi * np.arange(10) / 10
    U0 = np.sin(x)[:, None] * np.cos(2 * y)[None, :]
    u = sk.field("u", (12, 10))
    model = sk.FieldODE(u, linear=sk.fourier((12, 10), 2 * np.pi, lambda kx, ky: -(kx**2 + ky**2)))
    sol = sk.solve(sk.FieldProblem(model, U0, (0.0, 0.5)), "ETDRK4", dt=0.25)
    assert sol.y.shape == (3, 12, 10) and sol.success
    np.testing.assert_allclose(sol.y[-1], np.exp(-2.5) * U0, atol=1e-14)


def test_dirichlet_allen_cahn_agrees_with_scipy_radau():
    """Allen–Cahn on a Dirichlet stencil (boundary values as data in N) against scipy's Radau."""
    from sdekit.pde_problems import allen_cahn
    x, prob = allen_cahn(n=30, eps=0.05, T=1.0)
    (c,) = prob.model.data.values()
    u0 = prob.u0
    sol = sk.solve(prob, "Krogstad", dt=1 / 64, saveat=[1.0])
    A = _dense(prob.model.linear)
    ref = solve_ivp(lambda t, v: A @ v + v - v**3 + c, (0, 1), u0, method="Radau", rtol=1e-12, atol=1e-12,
                    jac=lambda t, v: A + np.diag(1 - 3 * v**2)).y[:, -1]
    assert sol.backend == "fields-numba" and np.abs(sol.y[-1] - ref).max() < 1e-7   # DST-I as folded matrices


def test_large_field_builds_once_and_steps():
    """10^5 unknowns: one expression, not 10^5; two ETDRK4 steps of Kuramoto–Sivashinsky."""
    n, ell = 100_000, 32 * np.pi * 100
    u = sk.field("u", n)
    model = sk.FieldODE(u, linear=sk.fourier(n, ell, lambda k: k**2 - k**4),
                        nonlinear=-sk.fourier(n, ell, lambda k: 1j * k)(u**2) / 2)
    x = ell * np.arange(n) / n
    sol = sk.solve(sk.FieldProblem(model, np.cos(x / 16) * (1 + np.sin(x / 16)), (0.0, 0.5)), "ETDRK4", dt=0.25)
    assert sol.success and sol.y.shape == (3, n) and sol.stats["nf"] == 8
    source = sk.inspect(model, "ETDRK4")
    v = sk.field("u", 10)
    small = sk.inspect(sk.FieldODE(v, linear=sk.fourier(10, 1.0, lambda k: -k**2),
                                   nonlinear=-sk.fourier(10, 1.0, lambda k: 1j * k)(v**2) / 2), "ETDRK4")
    assert "def forcing(u, t, out" in source and abs(len(source) - len(small)) < 200   # O(1) in n


def test_explicit_method_on_a_stiff_field_returns_unstable():
    u = sk.field("u", 64)
    model = sk.FieldODE(u, linear=sk.fourier(64, 2 * np.pi, lambda k: -k**2), nonlinear=u**2)
    sol = sk.solve(sk.FieldProblem(model, np.ones(64) * 0.1 + 0.01 * np.sin(np.arange(64)), (0, 5)), "RK4", dt=0.1)
    assert sol.retcode == "Unstable" and np.isnan(sol.y[-1]).all()


def test_field_errors_name_what_is_wrong():
    u = sk.field("u", 8)
    L = sk.fourier(8, 1.0, lambda k: -k**2)
    with pytest.raises(sk.ModelError, match="acts on"):
        sk.FieldODE(u, linear=sk.fourier(9, 1.0, lambda k: -k**2))
    with pytest.raises(sk.ModelError, match="a"):
        sk.FieldODE(u, linear=L, nonlinear=u * sp.Symbol("a"))
    for c in (sk.params("D"), sp.Symbol("a")):       # was Python's TypeError (Param * Operator)
        for combine in (lambda: c * L, lambda: L * c, lambda: L / c):
            with pytest.raises(sk.ModelError, match="numbers as coefficients.*in the nonlinearity"):
                combine()
    model = sk.FieldODE(u, linear=L, nonlinear=-u**3)
    with pytest.raises(ValueError, match="shape"):
        sk.FieldProblem(model, np.zeros(7), (0, 1))
    prob = sk.FieldProblem(model, np.zeros(8), (0, 1))
    with pytest.raises(ValueError, match="embedded error estimate"):
        sk.solve(prob, "ETDRK4", rtol=1e-6)
    with pytest.raises(ValueError, match="rtol"):
        sk.solve(prob, "ETDRK3", rtol=-1.0)
    with pytest.raises(sk.ModelError, match="Exprb43.*backend='numpy'"):
        sk.solve(prob, "Exprb43", dt=0.1, backend="numba")
    with pytest.raises(sk.ModelError, match="SDE method"):
        sk.solve(prob, "EM", dt=0.1)
    with pytest.raises(sk.ModelError, match="symbol\\(0\\).*complex=True"):       # fine on a complex field only
        sk.FieldODE(u, linear=sk.fourier(8, 1.0, lambda k: 1j * (k + 1)))
    psi, odd = sk.field("psi", 8, complex=True), sk.fourier(8, 1.0, lambda k: 1j * k**3 + k)
    with pytest.raises(sk.ModelError, match=r"inside the nonlinearity is not a real operator.*sp.I \* a real operator"):
        sk.FieldODE(psi, linear=L, nonlinear=odd(psi))      # said "declare it complex=True", which psi is
    with pytest.raises(sk.ModelError, match="bc"):
        sk.laplacian(8, 0.1, "robin")
    assert sk.matrix(2, [[-1, 0], [0, -2]]).runtime.matrix.dtype == np.float64        # nested lists are arrays
    with pytest.raises(sk.ModelError, match=r"\(2, 2\) for a grid \(2,\), got shape \(1, 2\)"):
        sk.matrix(2, [[1.0, 0.0]])
    with pytest.raises(sk.ModelError, match="finite numbers"):
        sk.matrix(2, [[np.nan, 0.0], [0.0, 1.0]])
    c = sp.Symbol("c")
    with pytest.raises(ValueError, match="FieldODE: data c contains NaN or Inf"):      # it ran, then ended Unstable
        sk.FieldODE(u, linear=L, nonlinear=c * u, data={c: np.r_[np.nan, np.ones(7)]})
    with pytest.raises(ValueError, match=r"fields integrate in float64.*dtype=<class 'numpy.float32'>"):
        sk.solve(prob, "ETDRK4", dt=0.1, dtype=np.float32)
    assert sk.solve(prob, "ETDRK4", dt=0.1, dtype=np.float64, backend="numpy").success
    with pytest.raises(ValueError, match="tstops control adaptive steps"):
        sk.solve(prob, "ETDRK4", dt=0.1, tstops=[0.5])


def test_gray_scott_two_species_agree_with_scipy():
    """Gray–Scott (Pearson 1993) on a periodic 12×10 stencil, two species, against scipy DOP853."""
    shape, dx = (12, 10), 0.4
    Du, Dv, F, k = 0.2, 0.1, 0.04, 0.06
    u, v = sk.field("u", shape), sk.field("v", shape)
    lap = sk.laplacian(shape, dx, "periodic")
    model = sk.FieldODE([u, v], linear=[Du * lap, Dv * lap],
                        nonlinear=[-u * v**2 + F * (1 - u), u * v**2 - (F + k) * v])
    rng = np.random.default_rng(3)
    y0 = np.stack([1 - 0.5 * rng.random(shape), 0.25 * rng.random(shape)])
    prob = sk.FieldProblem(model, y0, (0.0, 5.0))
    A = _dense(lap)

    def f(t, y):
        U, V = y[:120], y[120:]
        return np.concatenate([Du * A @ U - U * V**2 + F * (1 - U), Dv * A @ V + U * V**2 - (F + k) * V])

    ref = solve_ivp(f, (0, 5), y0.reshape(-1), method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]
    sols = [sk.solve(prob, "ETDRK4", dt=dt, saveat=[5.0]) for dt in (0.25, 0.125)]
    assert sols[0].y.shape == (1, 2, 12, 10)
    errs = [np.abs(s.y[-1].reshape(-1) - ref).max() for s in sols]
    assert errs[1] < 3e-7 and 3.5 < np.log2(errs[0] / errs[1]) < 4.8, errs


@pytest.mark.parametrize("method", ["ETDRK3", "ROS34PW2", "Tsit5", "ETDAdams3"])
def test_adaptive_field_meets_its_tolerance_with_the_shared_controller(method):
    """Adaptive steps on fields run the loop IR's adaptive driver (error norm, PI controller, dense output):
    on the manufactured solution the error at t = 1 and at saveat times between steps stays within 20x rtol,
    and a tighter tolerance takes more steps and gives a smaller error."""
    prob = _manufactured()
    ts = [0.25, 0.5, 0.75, 1.0]
    exact = np.cos(np.array(ts))[:, None] * np.sin(X)[None, :]
    runs = [sk.solve(prob, method, rtol=tol, atol=tol, saveat=ts) for tol in (1e-4, 1e-7)]
    for tol, sol in zip((1e-4, 1e-7), runs):
        assert sol.success and sol.y.shape == (4, N_GRID) and np.allclose(sol.t, ts)
        assert np.abs(sol.y - exact).max() < 20 * tol, (method, tol, np.abs(sol.y - exact).max())
    assert runs[1].stats["naccept"] > runs[0].stats["naccept"] > 1


def test_adaptive_field_saves_every_accepted_step_by_default():
    sol = sk.solve(_manufactured(), "ETDRK3", rtol=1e-5, atol=1e-5)
    assert sol.t[0] == 0.0 and sol.t[-1] == 1.0 and sol.y.shape == (sol.t.size, N_GRID)
    assert sol.stats["naccept"] == sol.t.size - 1


def _dense_allen_cahn(n=64, symmetric=True, forced=False):
    """Allen–Cahn with L given to sk.ODE as a dense numeric array (the per-lane path's form); ``forced``: a param
    a in N (a u − u³) and a time-dependent coupling of the neighbours (0.1 sin(t) u_{i−1} u_{i+1})."""
    eps, dx = 0.02, 2.0 / (n + 1)
    x = -1 + dx * np.arange(1, n + 1)
    L = eps * _stencil(n, dx, "dirichlet")
    if not symmetric:
        L[0, 1] *= 1.5
    c = np.zeros(n)
    c[0], c[-1] = -eps / dx**2, eps / dx**2
    y = sk.states("u", n)
    a, params = (sk.params("a"), {"a": 0.9}) if forced else (1, {})
    N = [a * y[i] - y[i] ** 3 + c[i] for i in range(n)]
    if forced:
        N = [e + (0.1 * sp.sin(sk.t) * y[i - 1] * y[i + 1] if 0 < i < n - 1 else 0) for i, e in enumerate(N)]
    model = sk.ODE(y, linear=L, nonlinear=sp.Matrix(N))
    return sk.ODEProblem(model, y0=0.53 * x + 0.47 * np.sin(-1.5 * np.pi * x), tspan=(0.0, 2.0), params=params)


def test_large_dense_problems_take_the_array_path_by_default(capsys):
    """Routing (issue 19): an ODEProblem with a dense L of dimension >= 64 runs on the array path, visible as
    ``sol.backend`` and ``sol.stats["driver"]`` (which also says how L's φ are evaluated: eigh for a symmetric L,
    eig where κ(V) <= 1e4, φ-actions for a defective one above 64 unknowns — upwind: one Jordan block), with the per-lane path's
    result; an explicit backend, a smaller L, an ensemble or float32 keep the kernels.  Where L has an eigenbasis
    the routed solve runs the compiled field kernel (N one line a component or a loop over a stencil's interior:
    ``emit_field.forcing_runs``; here with a param and t in N), else the array driver."""
    from sdekit import fields
    from sdekit.fields import route
    n = 80
    y = sk.states("u", n)
    upwind = 3.0 * (np.eye(n, k=-1) - np.eye(n))
    defective = sk.ODEProblem(sk.ODE(y, linear=upwind, nonlinear=sp.Matrix([-y[i] ** 3 for i in range(n)])),
                              y0=np.linspace(0.2, 1.0, n), tspan=(0.0, 2.0))
    for prob, how in [(_dense_allen_cahn(forced=True), "φ from eigh"),
                      (_dense_allen_cahn(symmetric=False, forced=True), "φ from eig, κ(V) = "),
                      (defective, "φ-actions (non-normal)")]:
        routed = sk.solve(prob, "ROS34PW2", rtol=1e-6, atol=1e-6, saveat=[1.0, 2.0])
        lanes = sk.solve(prob, "ROS34PW2", rtol=1e-6, atol=1e-6, saveat=[1.0, 2.0], backend="numpy")
        d = prob.y0.size
        compiled = how.startswith("φ from eig")           # an eigenbasis: the compiled field kernel
        assert routed.backend == ("fields-numba" if compiled else "fields") and lanes.backend == "numpy"
        assert routed.y.shape == lanes.y.shape == (2, d)
        driver = "fields-numba" if compiled else "array"
        assert routed.stats["driver"].startswith(f"{driver} (routed: dense L, d = {d} >= 64, {how}")
        assert "driver" not in lanes.stats and step_counts(routed).keys() == lanes.stats.keys()
        np.testing.assert_allclose(routed.y, lanes.y, atol=1e-9)
        fixed = sk.solve(prob, "ETDRK4", dt=0.05)
        assert fixed.backend == routed.backend
        np.testing.assert_allclose(fixed.y[-1], sk.solve(prob, "ETDRK4", dt=0.05, backend="numpy").y[-1], atol=1e-11)
    forced = _dense_allen_cahn(forced=True)              # another value of the param: the same kernel, its own answer
    other = sk.ODEProblem(forced.model, y0=forced.y0, tspan=forced.tspan, params={"a": 0.6})
    sol = sk.solve(other, "ETDRK4", dt=0.05, progress=True)
    assert sol.backend == "fields-numba" and "sdekit fields-numba" in capsys.readouterr().err     # the bar
    np.testing.assert_allclose(sol.y[-1], sk.solve(other, "ETDRK4", dt=0.05, backend="numpy").y[-1], atol=1e-11)
    assert np.abs(sol.y[-1] - sk.solve(forced, "ETDRK4", dt=0.05).y[-1]).max() > 1e-3
    L = np.asarray(forced.model.form.linear_numeric, dtype=float)
    one, two = (fields._dense_model(forced.model, L, {"a": a}) for a in (0.9, 0.6))
    assert one._compiled is two._compiled and one.operator is two.operator and (one.values, two.values) == ([0.9], [0.6])
    prob = _dense_allen_cahn()
    assert route(prob, "ETDRK4", 0.5, {}) is not None
    for target, method, options in [(prob, "ETDRK4", {"backend": "numpy"}), (_dense_allen_cahn(n=16), "ETDRK4", {}),
                                    (sk.Ensemble(prob, n=2), "ETDRK4", {}),
                                    (prob, "ETDRK4", {"dtype": np.float32})]:
        assert route(target, method, 0.5, options) is None, (method, options)


def test_dense_forcing_prints_a_loop_for_each_run_of_one_template():
    """``emit_field.forcing_runs``: components that are one template at equal strides (a stencil's interior, the
    even and the odd ones of an interleaved pair) become loops, from FORCING_LOOP_MIN of them; the rest (the
    boundaries, a template at uneven indices, a run too short) one line each.  Each component is printed exactly
    once, and a run's template at each of its indices gives back that component."""
    from sdekit.codegen.emit_field import FORCING_LOOP_MIN, forcing_runs
    n = 60
    y, k = sk.states("y", n), sk.params("k")
    uneven = {45, 46, 48, 51, 55, 59}                             # strides 1, 2, 3, 4, 4: no run of 8
    N = []
    for i in range(n):
        if i < 20:                                                # interleaved: strides of 2
            N.append(y[i] * y[i + 1] if i % 2 == 0 else sp.sin(y[i] - y[i - 1]))
        elif i < 45:                                              # a stencil's interior
            N.append(y[i - 1] - 2 * y[i] + y[i + 1] + sp.exp(-y[i]))
        elif i in uneven:
            N.append(k * y[i] ** 2 + sk.t)
        else:                                                     # a number of its own each: no template shared
            N.append(y[i] + i)
    runs = forcing_runs(N, y)
    assert {tuple(r) for r, _ in runs if len(r) > 1} == {tuple(range(0, 20, 2)), tuple(range(1, 20, 2)),
                                                          tuple(range(20, 45))}
    assert sorted(i for r, _ in runs for i in r) == list(range(n))
    for r, e in runs:
        for i in r:
            back = {sp.Symbol(name): y[j] for j in range(n)
                    for name in ([f"u[{j}]"] if len(r) == 1 else
                                 [f"u[i {'+' if j >= i else '-'} {abs(j - i)}]" if j != i else "u[i]"])}
            assert sp.simplify(e.xreplace(back) - N[i]) == 0, (r, i, e)
    assert not any(len(r) > 1 for r, _ in forcing_runs([y[i] ** 2 for i in range(FORCING_LOOP_MIN - 1)],
                                                       y[:FORCING_LOOP_MIN - 1]))
    assert [len(r) for r, _ in forcing_runs([y[i] ** 2 for i in range(FORCING_LOOP_MIN)], y[:FORCING_LOOP_MIN])] == \
        [FORCING_LOOP_MIN]


def test_a_routed_forcing_of_too_many_operations_keeps_the_array_driver(monkeypatch):
    """A dense ODE whose N prints more than COMPILED_FORCING_OPERATIONS operations (a loop's once) is not compiled
    (Numba's compile grows with the code: N = −u ∘ (W u), W dense 64 × 64, took 70 s): routed Allen–Cahn prints a
    few, so a limit of one sends it to the array driver, which says why, with the same solution."""
    from sdekit import fields
    prob = _dense_allen_cahn()
    monkeypatch.setattr(fields, "COMPILED_FORCING_OPERATIONS", 1)
    sol = sk.solve(prob, "ETDRK4", dt=0.1)
    assert sol.backend == "fields" and sol.stats["driver"].startswith("array (routed")
    assert sol.stats["driver"].endswith("operations > 1 is not compiled)")
    np.testing.assert_allclose(sol.y[-1], sk.solve(prob, "ETDRK4", dt=0.1, backend="numpy").y[-1], atol=1e-11)


@pytest.mark.parametrize("method", ["Exprb32", "Exprb43"])
def test_routed_exponential_rosenbrock_takes_the_sympy_jacobian_and_phi_actions(method):
    """Exponential Rosenbrock methods route too (DenseODE.jacobian: sympy's nonzero derivatives of N, ∂N/∂t
    included; the Jacobian's φ by actions, where the per-lane kernel forms φ(hJ̃) densely: Allen–Cahn d = 256 at
    tol 1e-4, 109 s → 1 s): a time-dependent forcing agrees with DOP853 to the tolerance."""
    n, eps = 64, 0.02
    dx = 2.0 / (n + 1)
    x = -1 + dx * np.arange(1, n + 1)
    y = sk.states("u", n)
    N = sp.Matrix([y[i] - y[i] ** 3 + 0.5 * sp.sin(3 * sk.t) * x[i] for i in range(n)])
    L = eps * _stencil(n, dx, "dirichlet")
    prob = sk.ODEProblem(sk.ODE(y, linear=L, nonlinear=N), y0=0.53 * x + 0.47 * np.sin(-1.5 * np.pi * x),
                         tspan=(0.0, 2.0))
    sol = sk.solve(prob, method, rtol=1e-8, atol=1e-8, saveat=[1.0, 2.0])
    assert sol.backend == "fields" and sol.stats["driver"].startswith("array (routed") and sol.stats["phi_actions"] > 0
    rhs = lambda t, u: L @ u + u - u**3 + 0.5 * np.sin(3 * t) * x       # noqa: E731
    ref = solve_ivp(rhs, (0.0, 2.0), prob.y0, method="DOP853", rtol=1e-12, atol=1e-12, t_eval=[1.0, 2.0]).y.T
    np.testing.assert_allclose(sol.y, ref, rtol=0, atol=2e-7)


def test_phi_of_non_normal_and_rotating_dense_matrices_match_scaling_and_squaring():
    """Matrix.values from eig (complex pairs: a periodic advection–diffusion circulant; a real non-symmetric
    similarity D S D⁻¹) agrees with scaling and squaring (kernels.linear.phi_dense) to 1e-12; a defective L
    has no eigendecomposition and above 64 unknowns takes φ-actions, which agree too."""
    from sdekit.kernels.linear import phi_dense
    from sdekit.kernels.operators import Matrix, PhiAction
    n = 70
    shift = np.roll(np.eye(n), 1, axis=1)
    circulant = 40.0 * (shift + shift.T - 2 * np.eye(n)) + 9.0 * (shift - shift.T)
    rng = np.random.default_rng(4)
    S = _stencil(n, 0.1, "dirichlet")
    D = np.diag(np.exp(rng.uniform(-1, 1, n)))
    similar = D @ S @ np.linalg.inv(D)
    upwind = 3.0 * (np.eye(n, k=-1) - np.eye(n))
    v = rng.normal(size=n)
    for A, diagonalisable in [(circulant, True), (similar, True), (upwind, False)]:
        op = Matrix((n,), A)
        assert (op.eigen() is not None) == diagonalisable
        h = 0.03
        value = op.values(phi_poly(phi(1, z) + 3 * phi(2, z / 2)), h, {})
        assert isinstance(value, PhiAction) != diagonalisable
        phis, halves = phi_dense(h * A, 2), phi_dense(h * A / 2, 2)
        want = (phis[1] + 3 * halves[2]) @ v
        got = op.combine([(1.0, value, v)])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12 * np.abs(want).max())


def test_matrix_operators_run_compiled_in_their_eigenvector_basis():
    """A dense matrix with an eigendecomposition runs the compiled kernel, summing in its eigenvector basis
    (operators.Eigenvectors): the Dirichlet stencil (eigh, real) with ETDRK4 matches the same L as sk.laplacian
    (the DST-I basis, numpy driver); the periodic advection–diffusion circulant (eig, complex pairs) with adaptive
    ETDRK3 and a matrix ∂x inside N (applied by its product) matches the Fourier operators' solve, step for step."""
    n, h = 24, 1.0 / 25
    x = np.arange(1, n + 1) * h
    u = sk.field("u", n)
    stencil = sk.FieldODE(u, linear=sk.matrix(n, 0.05 * _stencil(n, h, "dirichlet")), nonlinear=u - u**3)
    dst = sk.FieldODE(u, linear=0.05 * sk.laplacian(n, h, "dirichlet"), nonlinear=u - u**3)
    a, b = (sk.solve(sk.FieldProblem(m, np.sin(np.pi * x), (0.0, 1.0)), "ETDRK4", dt=0.05, backend=be)
            for m, be in ((stencil, None), (dst, "numpy")))
    assert (a.backend, b.backend) == ("fields-numba", "fields")
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-12)
    n, ell = 32, 2 * np.pi
    dx = ell / n
    shift = np.roll(np.eye(n), 1, axis=1)
    circulant = 0.1 * (shift + shift.T - 2 * np.eye(n)) / dx**2 - (shift - shift.T) / (2 * dx)   # 0.1 ∂² − ∂
    v = sk.field("v", n)
    xs = np.arange(n) * dx
    solves = []
    for L, Dx, be in ((sk.matrix(n, circulant), sk.matrix(n, (shift - shift.T) / (2 * dx)), None),
                      (sk.fourier(n, ell, lambda k: -0.1 * (2 - 2 * np.cos(k * dx)) / dx**2 - 1j * np.sin(k * dx) / dx),
                       sk.fourier(n, ell, lambda k: 1j * np.sin(k * dx) / dx), "numpy")):
        model = sk.FieldODE(v, linear=L, nonlinear=-Dx(v**2) / 4)
        solves.append(sk.solve(sk.FieldProblem(model, 1 + np.sin(xs) / 2, (0.0, 2.0)), "ETDRK3", rtol=1e-7,
                               atol=1e-9, backend=be))
    a, b = solves
    assert (a.backend, b.backend) == ("fields-numba", "fields") and step_counts(a) == step_counts(b)
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-11)


def test_complex_species_with_a_real_matrix_and_a_sparse_operator_in_n_run_compiled():
    """Two complex fields whose L is one real sk.matrix (a species of species: Re and Im of each) and a scipy.sparse
    operator inside N (applied by its CSR arrays, basis "sparse"): the compiled kernel matches the numpy driver, and
    the exact solution of this linear system (expm) to ETDRK4's error.  (A nested species once counted 2 blocks for
    4: the compiled sums ran over half the state.)"""
    rng = np.random.default_rng(1)
    n = 6
    A = rng.standard_normal((n, n))
    A = -(A @ A.T) / n - np.eye(n)
    S = scipy.sparse.diags([1.0, -1.0], [1, -1], shape=(n, n), format="csr")
    z1, z2 = sk.field("z1", n, complex=True), sk.field("z2", n, complex=True)
    op, skew = sk.matrix(n, A), sk.matrix(n, S)
    model = sk.FieldODE([z1, z2], linear=[op, op], nonlinear=[0.5j * skew(z2), 0.5j * skew(z1)])
    assert model.numba_bases()[0].species == 4 and model.numba_bases()[1][skew.function].kind == "sparse"
    z0 = rng.standard_normal((2, n)) + 1j * rng.standard_normal((2, n))
    prob = sk.FieldProblem(model, z0, (0.0, 1.0))
    a, b = (sk.solve(prob, "ETDRK4", dt=0.05, saveat=[1.0], backend=be) for be in (None, "numpy"))
    assert (a.backend, b.backend) == ("fields-numba", "fields")
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-13)
    M = np.block([[A, 0.5j * S.toarray()], [0.5j * S.toarray(), A]])
    exact = (scipy.linalg.expm(M) @ z0.ravel()).reshape(2, n)
    np.testing.assert_allclose(a.y[-1], exact, rtol=0, atol=1e-6)


def test_review_fixes_fields():
    """Fields of one name and different grids are different symbols; an odd symbol (∂x) gives 0 at the
    Nyquist mode of every even axis (2-D too); adaptive solves keep a bounded memo of operator values;
    ts with rtol is an error; per-trajectory params are not routed (the kernels name the problem)."""
    from sdekit.fields import route
    from sdekit.kernels.field_runtime import MEMO_SIZES
    u8, u16 = sk.field("u", 8), sk.field("u", 16)
    assert u8 is not u16 and u8 != u16 and (u8.grid, u16.grid) == ((8,), (16,))
    sk.FieldODE(u8, linear=sk.laplacian(8, 0.1), nonlinear=-u8**3)          # u8 keeps its grid
    X, Y = np.meshgrid(np.arange(16) * 2 * np.pi / 16, np.arange(12) * 0.25, indexing="ij")
    Dx = sk.fourier((16, 12), (2 * np.pi, 3.0), lambda kx, ky: 1j * kx)
    assert np.abs(Dx.runtime.apply(np.cos(8 * X) * np.cos(2 * np.pi * Y / 3))).max() < 1e-12
    np.testing.assert_allclose(Dx.runtime.apply(np.sin(3 * X) * np.cos(2 * np.pi * Y / 3)),
                               3 * np.cos(3 * X) * np.cos(2 * np.pi * Y / 3), atol=1e-12)
    prob = _manufactured()
    sk.solve(prob, "ETDRK3", rtol=1e-9, atol=1e-9)
    assert len(prob.model.compiled("ETDRK3", True)[2]) <= MEMO_SIZES
    with pytest.raises(ValueError, match="ts gives fixed steps"):
        sk.solve(prob, "ETDRK3", ts=np.linspace(0, 1, 11), rtol=1e-6)
    n = 64
    y, k = sk.states("u", n), sk.params("k")
    L = _stencil(n, 0.1, "dirichlet")
    model = sk.ODE(y, linear=sp.Matrix(L) * k, nonlinear=sp.Matrix([-y[i] ** 3 for i in range(n)]))
    many = sk.ODEProblem(model, y0=np.zeros(n), tspan=(0.0, 1.0), params={"k": [1.0, 2.0]})
    assert route(many, "ETDRK4", 0.1, {}) is None and route(many, "ETDRK4", 0.1, {"backend": None}) is None
    one = sk.ODEProblem(model, y0=np.zeros(n), tspan=(0.0, 1.0), params={"k": 1.0})
    assert route(one, "ETDRK4", 0.1, {"backend": None}) is not None


def test_inspect_shows_the_array_path_of_a_routed_model():
    prob = _dense_allen_cahn()
    assert "array path" in sk.inspect(prob.model, "ETDRK4") and "def kernel(" in sk.inspect(prob.model, "ETDRK4")
    source = sk.inspect(_dense_allen_cahn(forced=True).model, "ETDRK4")      # params in N: runtime arguments
    assert "array path" in source and "def forcing(u, t, out, param0):" in source and "for i in range(1, 63):" in source
    assert "array path" not in sk.inspect(prob.model, "ETDRK4", backend="numpy")


def test_hochbruck_ostermann_parabolic_problem_order_reduction():
    """Hochbruck & Ostermann (2005, SIAM J. Numer. Anal. 43:1069, §6): u_t = u_xx + 1/(1 + u²) + Φ(x, t) on
    (0, 1), Dirichlet, Φ such that u = x(1 − x)e^t solves the semi-discretised problem exactly (the
    3-point stencil is exact for quadratics).  HochOst4, which satisfies the stiff order conditions, keeps
    order 4; Cox–Matthews ETDRK4 drops towards 2–3 (measured 1.9, 2.2, 2.7), as the paper shows."""
    from sdekit.pde_problems import hochbruck_ostermann
    x, prob, exact = hochbruck_ostermann()
    steps = [8, 16, 32, 64]
    slopes = {}
    for method in ("HochOst4", "ETDRK4"):
        errs = [np.abs(sk.solve(prob, method, dt=1.0 / k, saveat=[1.0]).y[-1] - exact).max() for k in steps]
        slopes[method] = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(slopes["HochOst4"] > 3.8), slopes
    assert np.all(slopes["ETDRK4"] < 3.0) and slopes["ETDRK4"].mean() < 2.6, slopes


def test_field_params_are_runtime_values():
    """A param in N (sk.params) takes its value from the FieldProblem: the same result as the constant written
    into the model, from one generated module; a missing or non-numeric value is named."""
    k = sk.params("kk")
    u = sk.field("u", N_GRID)
    L = sk.fourier(N_GRID, 2 * np.pi, lambda q: -q**2)
    with_param = sk.FieldODE(u, linear=L, nonlinear=kk_expr(u, k))
    u0 = 0.5 * np.sin(X)
    for value in (1.0, 2.5):
        got = sk.solve(sk.FieldProblem(with_param, u0, (0.0, 1.0), params={"kk": value}), "ETDRK4", dt=0.05).y[-1]
        want = sk.solve(sk.FieldProblem(sk.FieldODE(u, linear=L, nonlinear=kk_expr(u, value)), u0, (0.0, 1.0)),
                        "ETDRK4", dt=0.05, backend="numpy").y[-1]
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-14)
    assert set(with_param._compiled) == {("ETDRK4", False), ("ETDRK4", "numba")}   # one module per driver
    with pytest.raises(ValueError, match="give params"):
        sk.FieldProblem(with_param, u0, (0.0, 1.0))
    with pytest.raises(ValueError, match="finite real number"):
        sk.FieldProblem(with_param, u0, (0.0, 1.0), params={"kk": [1.0, 2.0]})


def kk_expr(u, k):
    return k * (u - u**3)


def _random_banded(n, seed):
    """A random non-symmetric, stable tridiagonal matrix (sparse)."""
    rng = np.random.default_rng(seed)
    return scipy.sparse.diags([rng.normal(size=n - 1), -2 - 3 * rng.random(n), rng.normal(size=n - 1)], [-1, 0, 1])


@pytest.mark.parametrize("name", ["banded", "circulant"])
def test_phi_actions_of_large_matrices_match_dense_expm_and_fft(monkeypatch, name):
    """Above DENSE_FUNCTIONS_MAX a Matrix operator applies its φ-polynomials as actions (phi_action: the augmented
    exponential, Al-Mohy & Higham 2011): forced here on small operators, a whole statement Σ coef·f(hL)v — several
    φ_k at one argument, two arguments, a φ-product and a resolvent — agrees with dense expm-based φ and, for a
    circulant, with the Fourier operator's elementwise φ (relative 1e-10)."""
    from sdekit.kernels import operators
    monkeypatch.setattr(operators, "DENSE_FUNCTIONS_MAX", 0)
    monkeypatch.setattr(operators, "SPARSE_FUNCTIONS_MAX", 0)
    monkeypatch.setattr(operators, "SPARSE_EIGEN_MAX", 0)
    n = 40
    if name == "banded":
        A = _random_banded(n, 3) * 4.0
    else:
        fourier = sk.fourier(n, 9.0, lambda k: -k**2 - 0.1 * k**4)
        A = scipy.sparse.csr_matrix(_dense(fourier))
    op = sk.matrix(n, A).runtime
    Ad = A.toarray()
    rng = np.random.default_rng(0)
    vs = [rng.normal(size=n) for _ in range(4)]
    h = 0.37
    polys = [phi_poly(phi(0, z) + 2 * phi(2, z)), phi_poly(phi(1, z / 2)), phi_poly(phi(3, z) - phi(1, z)),
             phi_poly(phi(1, z / 2) * phi(1, z)), (((1, (("res", sp.Rational(1, 4)),)),))]
    got = op.combine([(0.5 + i, op.values(poly, h, {}), v) for i, (poly, v) in enumerate(zip(polys, vs + [vs[0]]))])
    assert isinstance(op.values(polys[0], h, {}), operators.PhiAction)
    dense = [_phi_expm(h * Ad, 0) + 2 * _phi_expm(h * Ad, 2), _phi_expm(h * Ad / 2, 1),
             _phi_expm(h * Ad, 3) - _phi_expm(h * Ad, 1), _phi_expm(h * Ad / 2, 1) @ _phi_expm(h * Ad, 1),
             np.linalg.inv(np.eye(n) - h / 4 * Ad)]
    want = sum((0.5 + i) * M @ v for i, (M, v) in enumerate(zip(dense, vs + [vs[0]])))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())
    if name == "circulant":
        for k, c in [(0, 1.0), (1, 0.5), (3, 1.0)]:
            value = fourier.runtime.values(phi_poly(phi(k, c * z)), h, {})
            fft = fourier.runtime.combine([(1.0, value, vs[1])])
            action = op.combine([(1.0, op.values(phi_poly(phi(k, c * z)), h, {}), vs[1])])
            np.testing.assert_allclose(action, fft, rtol=1e-10, atol=1e-10 * np.abs(fft).max())


def test_a_large_sparse_operator_solves_by_phi_actions_as_the_sine_basis_does():
    """A 2-D Dirichlet Laplacian on 65 × 65 = 4225 unknowns (> DENSE_FUNCTIONS_MAX) given as a sparse matrix: ETDRK4
    and Krogstad by φ-actions give the DST-I operator's solution (its φ elementwise) of Allen–Cahn to 1e-10."""
    from sdekit.kernels.operators import DENSE_FUNCTIONS_MAX
    m, dx = 65, 1.0 / 66
    size = m * m
    assert size > DENSE_FUNCTIONS_MAX
    D2 = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(m, m)) / dx**2
    A = 0.01 * (scipy.sparse.kron(D2, scipy.sparse.identity(m)) + scipy.sparse.kron(scipy.sparse.identity(m), D2))
    lap = 0.01 * sk.laplacian((m, m), (dx, dx), "dirichlet")
    v = np.random.default_rng(0).normal(size=(m, m))
    np.testing.assert_allclose(sk.matrix((m, m), A.tocsr()).runtime.apply(v), lap.runtime.apply(v), rtol=1e-12,
                               atol=1e-9)
    g = np.linspace(dx, 1 - dx, m)
    u0 = np.sin(np.pi * g)[:, None] * np.sin(2 * np.pi * g)[None, :]
    for op_a, op_b in [(sk.matrix((m, m), A.tocsr()), lap)]:
        sols = []
        for op in (op_a, op_b):
            u = sk.field("u", (m, m))
            model = sk.FieldODE(u, linear=op, nonlinear=u - u**3)
            sols.append([sk.solve(sk.FieldProblem(model, u0, (0.0, 0.5)), method, dt=0.125, saveat=[0.5]).y[-1]
                         for method in ("ETDRK4", "Krogstad")])
        for got, want in zip(*sols):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-11)


def test_a_complex_symbol_is_integrated_exactly_and_kdv_solitons_at_order_four():
    """Complex Fourier symbols (advection i c k, dispersion i k³) take complex φ (kernels.linear.phi_complex):
    advection–diffusion is exact at any step, and the KdV soliton u = 3c sech²(√c (x − ct)/2) of
    u_t + u u_x + u_xxx = 0 (Kassam & Trefethen 2005, §5) converges at order 4 with ETDRK4 and Krogstad."""
    n, ell = 64, 2 * np.pi
    x = ell * np.arange(n) / n
    u = sk.field("u", n)
    model = sk.FieldODE(u, linear=sk.fourier(n, ell, lambda k: -1j * 3.0 * k - 0.1 * k**2))
    sol = sk.solve(sk.FieldProblem(model, np.sin(x) + 0.5 * np.cos(3 * x), (0.0, 1.0)), "ETDRK4", dt=0.5)
    exact = np.exp(-0.1) * np.sin(x - 3.0) + 0.5 * np.exp(-0.9) * np.cos(3 * (x - 3.0))
    np.testing.assert_allclose(sol.y[-1], exact, atol=1e-13)

    n, ell, c = 128, 40.0, 1.0
    x = ell * np.arange(n) / n - ell / 2
    soliton = lambda t: 3 * c / np.cosh(np.sqrt(c) * (((x - c * t + ell / 2) % ell) - ell / 2) / 2) ** 2  # noqa: E731
    u = sk.field("u", n)
    kdv = sk.FieldODE(u, linear=sk.fourier(n, ell, lambda k: 1j * k**3),
                      nonlinear=-sk.fourier(n, ell, lambda k: 1j * k)(u**2) / 2)
    prob = sk.FieldProblem(kdv, soliton(0.0), (0.0, 2.0))
    dts = [0.1, 0.05, 0.025]
    for method in ("ETDRK4", "Krogstad"):
        errs = [np.abs(sk.solve(prob, method, dt=dt, saveat=[2.0]).y[-1] - soliton(2.0)).max() for dt in dts]
        assert observed_order(dts, errs) >= 3.8 and errs[-1] < 1e-6, (method, errs)


# ---- the compiled field kernel (codegen.emit_field.emit_field_numba) -----------------------------------


def _agree(prob, method, dt, rtol=1e-12):
    """The compiled kernel's trajectory is the numpy driver's (same loop IR, same operator values)."""
    a = sk.solve(prob, method, dt=dt)
    b = sk.solve(prob, method, dt=dt, backend="numpy")
    assert a.backend == "fields-numba" and b.backend == "fields", (a.backend, b.backend)
    assert step_counts(a) == step_counts(b) and a.retcode == b.retcode == "Success"
    scale = np.abs(b.y).max()
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=rtol * scale)
    return a


@pytest.mark.parametrize("method", ["ETDRK3", "ROS34PW2", "ETDAdams3"])
def test_compiled_adaptive_field_kernel_takes_the_numpy_drivers_steps(method):
    """Adaptive steps: the kernel evaluates its operators at each attempted step (operator_values: φ by
    matfun.phi_scalar on L's eigenvalues); the numpy driver takes them from kernels.linear — the same steps,
    accepted and rejected, and the same solution to rounding (methods whose steps are accuracy-limited; an
    explicit method at its stability limit amplifies rounding into other step sizes)."""
    prob = _manufactured()
    a = sk.solve(prob, method, rtol=1e-6, atol=1e-6)
    b = sk.solve(prob, method, rtol=1e-6, atol=1e-6, backend="numpy")
    assert a.backend == "fields-numba" and b.backend == "fields" and step_counts(a) == step_counts(b)
    np.testing.assert_allclose(a.t, b.t, rtol=1e-9)        # the controller passes rounding on to the sizes
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-9 * np.abs(b.y).max())


@pytest.mark.parametrize("method", ["ETDAdams3", "TASE-RK3", "ROS34PW2"])
def test_compiled_field_kernel_agrees_with_the_numpy_driver_per_family(method):
    """The families the other field tests do not run compiled (multistep: startup, history, lags; TASE; W-methods:
    resolvents) on the manufactured problem (data, t in N).  Explicit RK (the full f) and exponential RK run
    compiled by default in the tests against scipy, the stiff-RK4 retcode test and the KdV orders."""
    _agree(_manufactured(), method, 1 / 40)


def _models():
    """Models covering the compiled kernel's bases and N's shapes."""
    rng = np.random.default_rng(11)
    out = {}
    shape = (12, 9)                          # two species, 2-D rfftn (an odd last axis), a param
    u, v = sk.field("u", shape), sk.field("v", shape)
    lap, F = sk.laplacian(shape, 0.4, "periodic"), sk.params("F")
    out["species-fourier-2d"] = sk.FieldProblem(
        sk.FieldODE([u, v], linear=[0.2 * lap, 0.1 * lap], nonlinear=[-u * v**2 + F * (1 - u), u * v**2 - (F + 0.06) * v]),
        np.stack([1 - 0.5 * rng.random(shape), 0.25 * rng.random(shape)]), (0.0, 1.0), params={"F": 0.04})
    n, ell = 32, 2 * np.pi                   # nested operator applications in N, a complex symbol in L
    w = sk.field("w", n)
    Dx = sk.fourier(n, ell, lambda k: 1j * k)
    x = ell * np.arange(n) / n
    out["nested-complex"] = sk.FieldProblem(
        sk.FieldODE(w, linear=sk.fourier(n, ell, lambda k: -0.1 * k**2 + 0.5j * k),
                    nonlinear=-Dx(w**2) / 2 + 0.05 * Dx(Dx(w) * w) + sp.sin(sk.t) * w),
        np.sin(x) + 0.3 * np.cos(2 * x), (0.0, 1.0))
    for name, size, bc in [("dirichlet-matrix", 40, "dirichlet"), ("dirichlet-dstn", (600,), "dirichlet"),
                           ("neumann-2d", (10, 7), "neumann")]:
        z = sk.field("z", size)
        grid = z.grid
        C = sp.Symbol("C")
        out[name] = sk.FieldProblem(sk.FieldODE(z, linear=0.01 * sk.laplacian(grid, 1.0 / (grid[0] + 1), bc),
                                                nonlinear=z - z**3 + C, data={C: rng.standard_normal(grid) * 0.1}),
                                    0.5 * rng.standard_normal(grid), (0.0, 1.0))
    y = sk.field("y", 16)
    out["diagonal"] = sk.FieldProblem(sk.FieldODE(y, linear=sk.diagonal(-np.linspace(1, 50, 16)), nonlinear=sp.cos(y)),
                                      rng.standard_normal(16), (0.0, 1.0))
    return out


@pytest.mark.parametrize("name", ["species-fourier-2d", "nested-complex", "dirichlet-dstn", "neumann-2d", "diagonal"])
def test_compiled_field_kernel_agrees_with_the_numpy_driver_per_basis(name):
    """Every basis the compiled kernel transforms into (rfft/rfftn of species, DST-I by scipy.fft, DCT-I in 2-D,
    none; DST-I as folded matrices: the Allen–Cahn test against scipy Radau), nested operator applications in N,
    complex operator values, data and params."""
    prob = _models()[name]
    sol = _agree(prob, "Krogstad", 0.1)
    assert sol.y.shape == (11,) + prob.model.shape


def test_compiled_field_kernel_is_chosen_and_can_be_refused():
    """Fixed and adaptive steps take the compiled kernel where every operator has a fast basis (inspect prints
    it), complex spectra too; exponential Rosenbrock and defective matrix operators take the numpy driver; asking
    for what cannot be is named."""
    prob = _manufactured()
    assert "def forcing(u, t, out" in sk.inspect(prob, "ETDRK4")
    assert "def forcing(" not in sk.inspect(prob, "ETDRK4", backend="numpy")
    assert "def operator_values(h, eig, out)" in sk.inspect(prob, "ETDRK3", adaptive=True)
    complex_symbol = _models()["nested-complex"]      # adaptive: complex φ in the kernel (matfun.phi_complex_scalar)
    a, b = (sk.solve(complex_symbol, "ETDRK3", rtol=1e-5, backend=be) for be in (None, "numpy"))
    assert (a.backend, b.backend) == ("fields-numba", "fields") and step_counts(a) == step_counts(b)
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-12 * np.abs(b.y).max())
    with pytest.raises(ValueError, match="backend"):
        sk.solve(prob, "ETDRK4", dt=0.1, backend="cuda")
    n = 12
    u = sk.field("u", n)
    upwind = 3.0 * (np.eye(n, k=-1) - np.eye(n))        # defective: no eigenvector basis
    matrix = sk.FieldProblem(sk.FieldODE(u, linear=sk.matrix(n, upwind), nonlinear=-u**3), np.ones(n) * 0.1, (0.0, 1.0))
    assert sk.solve(matrix, "ETDRK4", dt=0.1).backend == "fields"
    with pytest.raises(sk.ModelError, match="backend='numpy'"):
        sk.solve(matrix, "ETDRK4", dt=0.1, backend="numba")


@pytest.mark.parametrize("n", [6, 64, 257])
def test_mirrored_products_are_the_type_one_transforms(n):
    """The folded product (two half-size products) is the DST-I / DCT-I matrix's product; matrices without
    mirrored rows, and odd sizes, are not folded."""
    from sdekit.kernels.field_runtime import mirrored_halves, mirrored_product
    rng = np.random.default_rng(n)
    v = rng.standard_normal(n)
    for kind in ("dst", "dct"):
        op = sk.laplacian(n, 0.1, "dirichlet" if kind == "dst" else "neumann").runtime
        for M in op._matrices:
            halves = mirrored_halves(M)
            if n % 2:
                assert halves is None
                continue
            np.testing.assert_allclose(mirrored_product(halves, v), M @ v, rtol=0, atol=1e-13 * np.abs(M @ v).max())
    assert mirrored_halves(rng.standard_normal((8, 8))) is None


# ---- exponential Rosenbrock on fields: the field's Jacobian ------------------------------------------------


@pytest.mark.parametrize("name", ["species-fourier-2d", "nested-complex", "dirichlet-matrix", "diagonal"])
def test_field_jacobian_is_the_derivative_of_n(name):
    """model.jacobian (sympy through operator applications: op(a) -> op · a') against central differences of N,
    and ∂N/∂t likewise: species coupling, nested operators in N, data, t."""
    prob = _models()[name]
    model, params = prob.model, list(prob.params.values())
    rng = np.random.default_rng(5)
    u = prob.u0 + 0.1 * rng.standard_normal(prob.u0.shape)
    t, eps = 0.3, 1e-6
    J, b = model.jacobian(u, t, *params)
    J = J.toarray() if scipy.sparse.issparse(J) else J          # COO where every operator in N is sparse
    flat = u.reshape(-1)
    fd = np.stack([(model.rhs((flat + eps * e).reshape(u.shape), t, *params)
                    - model.rhs((flat - eps * e).reshape(u.shape), t, *params)).reshape(-1) / (2 * eps)
                   for e in np.eye(flat.size)], axis=1)
    np.testing.assert_allclose(J, fd, rtol=0, atol=1e-7 * max(1.0, np.abs(fd).max()))
    fdt = (model.rhs(u, t + eps, *params) - model.rhs(u, t - eps, *params)).reshape(-1) / (2 * eps)
    np.testing.assert_allclose(b, fdt, rtol=0, atol=1e-7 * max(1.0, np.abs(fdt).max()))


@pytest.mark.parametrize("inside", [False, True])
def test_sparse_augmented_jacobian_is_the_dense_one(inside):
    """Exprb's J̃ = [[L + ∂N/∂u, ∂N/∂t], [0, 0]] of a 2-D Dirichlet stencil L (applied by DST-I) in CSR
    (FieldLanes.jacobian on JacobianPattern): N pointwise, or with a stencil and an upwind sparse matrix inside, is
    the J̃ of the formulas to rounding, and a second step keeps the pattern and fills only its data."""
    from sdekit.kernels.field_runtime import FieldLanes
    from sdekit.kernels.operators import dense_matrix
    shape, dx = (10, 9), 0.1                      # 91² entries, the stencil's 5 a row: sparse enough
    d = shape[0] * shape[1]
    u, lap = sk.field("u", shape), sk.laplacian(shape, dx, "dirichlet")
    upwind = scipy.sparse.eye(d) - scipy.sparse.eye(d, k=-1)
    N = u - u**3 + sp.sin(sk.t) * u + ((0.1 * lap)(u**2) + sk.matrix(shape, upwind)(sp.cos(u)) if inside else 0)
    model = sk.FieldODE(u, linear=0.05 * lap, nonlinear=N)
    prob = sk.FieldProblem(model, np.zeros(shape), (0.0, 1.0))
    lanes = FieldLanes(model.shape, prob.rhs, model.operator, {}, jacobian=prob.jacobian)
    rng, patterns = np.random.default_rng(3), []
    for t in (0.3, 0.7):
        v = rng.standard_normal(d)
        lanes.jacobian(v.reshape(-1, 1), t)
        J = dense_matrix(model.operator) + np.diag(1 - 3 * v**2 + np.sin(t))
        if inside:
            J += 0.1 * dense_matrix(lap.runtime) * 2 * v - upwind.toarray() * np.sin(v)
        expected = np.block([[J, (np.cos(t) * v)[:, None]], [np.zeros((1, d + 1))]])
        assert scipy.sparse.issparse(lanes.jtilde.matrix) and lanes.jtilde.matrix.nnz <= d * (7 if inside else 6)
        np.testing.assert_allclose(lanes.jtilde.matrix.toarray(), expected, rtol=0, atol=1e-13 * np.abs(expected).max())
        patterns.append(lanes.jtilde_pattern)
    assert patterns[0] is patterns[1]


def _dirichlet_manufactured(n=31, eps=0.05):
    """u_t = ε Δ_h u + u − u³ + S(t) on (0, 1), Dirichlet, exact u = cos(t) s with s = sin(πx) an eigenvector of the
    discrete Laplacian (eigenvalue λ₁): the source S cancels everything but the exact solution's derivative."""
    dx = 1.0 / (n + 1)
    x = dx * np.arange(1, n + 1)
    lam = (2 * np.cos(np.pi * dx) - 2) / dx**2
    u, S, t = sk.field("u", n), sp.Symbol("S"), sk.t
    N = u - u**3 - (sp.cos(t) * S - sp.cos(t)**3 * S**3) - sp.sin(t) * S - eps * lam * sp.cos(t) * S
    model = sk.FieldODE(u, linear=eps * sk.laplacian(n, dx, "dirichlet"), nonlinear=N, data={S: np.sin(np.pi * x)})
    return sk.FieldProblem(model, np.sin(np.pi * x), (0.0, 1.0)), np.cos(1.0) * np.sin(np.pi * x)


@pytest.mark.parametrize("method", ["Exprb32", "Exprb43", "ETDRK4", "ROS34PW2"])
def test_exponential_rosenbrock_and_w_orders_on_a_stencil(method):
    """Exprb (the field's Jacobian, t-augmented), ETD and W-methods at their orders on a Dirichlet stencil problem
    (the FFT problem is the manufactured one above); Exprb's adaptive steps meet the tolerance."""
    prob, exact = _dirichlet_manufactured()
    order = next(m.order for m in CATALOGUE if m.name == method)
    errs = [np.abs(sk.solve(prob, method, dt=dt, saveat=[1.0], backend="numpy").y[-1] - exact).max()
            for dt in (1 / 8, 1 / 16, 1 / 32)]
    slope = np.log2(errs[-2] / errs[-1])
    assert order - 0.3 < slope < order + 0.8, (method, errs, slope)
    if method.startswith("Exprb"):
        sol = sk.solve(prob, method, rtol=1e-8, atol=1e-8, saveat=[1.0])
        assert sol.backend == "fields" and np.abs(sol.y[-1] - exact).max() < 1e-6, sol.stats


def test_review_fixes_scaled_operators_fourier_pairs_and_inputs():
    """A scaled operator forgets its unscaled dense matrix (Exprb's Jacobian reads it); 2-D odd symbols keep
    their values off the self-conjugate modes (i k_y at k_x = Nyquist); complex multiples of real operators and
    complex diagonals on real fields, and clashing names, are named; an operator of an expression without the field works on
    both drivers."""
    from sdekit.kernels.operators import dense_matrix
    lap = sk.laplacian(12, 0.1, "dirichlet")
    np.testing.assert_allclose(dense_matrix((0.5 * lap).runtime), 0.5 * dense_matrix(lap.runtime), rtol=1e-14)
    n = 16
    x = 2 * np.pi * np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    Dx = sk.fourier((n, n), 2 * np.pi, lambda kx, ky: 1j * kx + 0 * ky)
    Dy = sk.fourier((n, n), 2 * np.pi, lambda kx, ky: 1j * ky + 0 * kx)
    np.testing.assert_allclose(Dy.runtime.apply(np.cos(8 * X) * np.sin(Y)), np.cos(8 * X) * np.cos(Y), atol=1e-13)
    np.testing.assert_allclose(Dx.runtime.apply(np.sin(X) * np.cos(8 * Y)), np.cos(X) * np.cos(8 * Y), atol=1e-13)
    np.testing.assert_allclose(Dx.runtime.apply(np.cos(8 * X) * np.cos(Y)), 0 * X, atol=1e-13)   # Nyquist k_x
    with pytest.raises(sk.ModelError, match="complex=True"):          # complex diagonals act on complex fields
        sk.FieldODE(sk.field("w", 2), linear=sk.diagonal([-1 + 2j, 1.0]))
    with pytest.raises(sk.ModelError, match="complex=True"):
        sk.FieldODE(sk.field("w", 12), linear=1j * lap)
    with pytest.raises(sk.ModelError, match="complex multiple"):
        1j * sk.matrix(4, np.eye(4))
    assert isinstance(sp.I * sk.fourier(8, 1.0, lambda k: k**2), sk.fields.Operator)
    u, C = sk.field("u", n), sp.Symbol("u")
    with pytest.raises(sk.ModelError, match="distinct names"):
        sk.FieldODE(u, linear=sk.fourier(n, 2 * np.pi, lambda k: -k**2), nonlinear=-u**3 + C, data={C: np.ones(n)})
    D1 = sk.fourier(n, 2 * np.pi, lambda k: 1j * k)
    prob = sk.FieldProblem(sk.FieldODE(u, linear=sk.fourier(n, 2 * np.pi, lambda k: -k**2),
                                       nonlinear=-u**3 + D1(sp.sin(sk.t))), np.sin(x), (0.0, 1.0))
    a, b = (sk.solve(prob, "ETDRK4", dt=0.1, backend=be) for be in ("numba", "numpy"))
    np.testing.assert_allclose(a.y, b.y, rtol=0, atol=1e-13)


def test_a_sparse_stencil_applies_its_phi_as_actions_and_agrees_with_dense_functions(monkeypatch):
    """A sparse matrix operator above SPARSE_EIGEN_MAX unknowns (lowered here) takes φ-actions; the same matrix
    given dense takes its eigenvectors: the same ETDRK4 solution (a non-symmetric 2-D upwind advection–diffusion
    stencil)."""
    from sdekit.kernels import operators
    from sdekit.kernels.operators import SPARSE_FUNCTIONS_MAX, PhiAction
    monkeypatch.setattr(operators, "SPARSE_EIGEN_MAX", SPARSE_FUNCTIONS_MAX)
    m = 10
    D2 = scipy.sparse.diags([1.0, -2.0, 1.0], [-1, 0, 1], shape=(m, m)) * m**2
    D1 = scipy.sparse.diags([-1.0, 1.0], [-1, 0], shape=(m, m)) * m
    I = scipy.sparse.identity(m)
    A = (0.05 * (scipy.sparse.kron(D2, I) + scipy.sparse.kron(I, D2)) - scipy.sparse.kron(D1, I)).tocsr()
    assert m * m > SPARSE_FUNCTIONS_MAX
    u = sk.field("u", (m, m))
    u0 = np.random.default_rng(4).random((m, m))
    sols = []
    for L in (A, A.toarray()):
        op = sk.matrix((m, m), L)
        assert isinstance(op.runtime.values(phi_poly(phi(1, z)), 0.1, {}), PhiAction) == scipy.sparse.issparse(L)
        prob = sk.FieldProblem(sk.FieldODE(u, linear=op, nonlinear=-u**3), u0, (0.0, 0.5))
        sols.append(sk.solve(prob, "ETDRK4", dt=0.05, saveat=[0.5]).y[-1])
    np.testing.assert_allclose(sols[0], sols[1], rtol=0, atol=1e-10)
