"""The generated Jacobian J~ = [[L + ∂N/∂y, ∂N/∂t], [0, 0]] of exponential Rosenbrock methods:
sympy derivatives and the chain rule through networks, against central differences of the
generated right-hand side; and exprb's order with a network as N."""
import numpy as np
import pytest
import sympy as sp

import sdekit as sk
from sdekit.codegen.methods import get_method
from sdekit.kernels.cache import load_module
from sdekit.kernels.linear import linear_value
from sdekit.codegen.neural import ACTIVATIONS
from sdekit.solve import scheme_and_source
from sdekit.testing import observed_order


def weights_for(sizes, seed):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=(o, i)) / np.sqrt(i), rng.normal(size=o) * 0.3) for i, o in zip(sizes[:-1], sizes[1:])]


def model_with_net(activation, L):
    y, t, k = sk.states("y", 3), sk.t, sk.params("k")
    net = sk.MLP("g", [4, 16, 16, 3], activation=activation)
    out = net(sp.Matrix([y[0], y[1] * y[2], y[2], t]))        # inputs mix states and time
    N = sp.Matrix([k * out[0] * y[1], sp.sin(out[1]) + t * y[0] ** 2, out[2] + sp.cos(t * y[2])])
    return sk.ODE(y, linear=L, nonlinear=N), net


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("structure", ["diagonal", "dense"])
def test_jacobian_matches_central_differences(activation, structure):
    rng = np.random.default_rng(1)
    L = np.diag([-1.0, -2.0, -3.0]) if structure == "diagonal" else -np.eye(3) + 0.3 * rng.normal(size=(3, 3))
    model, net = model_with_net(activation, L)
    _, src = scheme_and_source(model, get_method("Exprb43"))
    mod = load_module(src, "numpy")
    nets, p = {"g": weights_for(net.sizes, 2)}, {"k": 0.7}
    Lval = linear_value(model.form.linear_structure, L, 3)
    y, t = rng.normal(size=(3, 5)), 0.4
    J = mod.jacobian(y, t, p, nets, Lval)
    f = lambda yy, tt: mod.forcing(yy, tt, p, nets) + np.einsum("ij,jn->in", L, yy)
    eps = 1e-6
    for j in range(3):
        e = np.zeros((3, 1))
        e[j] = eps
        fd = (f(y + e, t) - f(y - e, t)) / (2 * eps)
        assert np.allclose(J[:3, j], fd, rtol=1e-6, atol=1e-7), (activation, j)
    fd_t = (f(y, t + eps) - f(y, t - eps)) / (2 * eps)
    assert np.allclose(J[:3, 3], fd_t, rtol=1e-6, atol=1e-7)
    assert np.all(J[3] == 0)


@pytest.mark.parametrize("name", ["Exprb32", "Exprb43"])
def test_exprb_order_with_a_network_nonlinearity(name):
    """Exact Jacobian through the layers: the classical order shows with N a tanh MLP of (y, t)."""
    model, net = model_with_net("tanh", -np.diag([1.0, 2.0, 3.0]))
    prob = sk.ODEProblem(model, y0=np.array([0.5, -0.3, 0.2]), tspan=(0.0, 1.0), params={"k": 0.7},
                         nets={"g": weights_for(net.sizes, 2)})
    ref = sk.solve(prob, "RK4", dt=2**-11, backend="numpy").y[-1]
    method = get_method(name)
    dts = [2.0**-k for k in range(2, 6)]
    errs = [np.abs(sk.solve(prob, name, dt=dt, backend="numpy").y[-1] - ref).max() for dt in dts]
    p = observed_order(dts[1:], errs[1:])
    print(name, p, errs)
    assert p >= method.order - 0.25, (name, p, errs)


def test_piecewise_terms_max_min_abs():
    """Max/Min/Abs in N print as elementwise code (no functools), and their Jacobians (Heaviside,
    sign) run in Exprb43; both agree with scipy on a problem whose kinks are crossed."""
    from scipy.integrate import solve_ivp
    y = sk.states("y", 2)
    N = sp.Matrix([sp.Max(y[0], 0, y[1] / 2), sp.Min(y[1], 1) + sp.Abs(y[0]) / 4])
    model = sk.ODE(y, linear=np.array([[-1.0, 2.0], [-2.0, -1.0]]), nonlinear=N)
    prob = sk.ODEProblem(model, y0=np.array([1.5, -0.5]), tspan=(0.0, 2.0))
    f = lambda t, u: [-u[0] + 2 * u[1] + max(u[0], 0, u[1] / 2), -2 * u[0] - u[1] + min(u[1], 1) + abs(u[0]) / 4]
    ref = solve_ivp(f, (0.0, 2.0), [1.5, -0.5], rtol=1e-12, atol=1e-12).y[:, -1]
    for method in ("RK4", "Exprb43"):
        got = sk.solve(prob, method, dt=2**-9, backend="numpy").y[-1]
        assert np.allclose(got, ref, atol=1e-4), (method, got, ref)


@pytest.mark.parametrize("method, backend", [("Exprb43", "numba"), ("Exprb32", "numpy")])
def test_exponential_rosenbrock_on_a_linear_ode_is_its_exponential(method, backend):
    """y' = A y + c, N constant in y and t: the Jacobian's lane function has no entry to write (its loop was
    printed with an empty body, an IndentationError on the default backend; one printer serves both methods).
    Adaptive and fixed steps give the exact solution e^{A} y0 + A^{-1}(e^{A} − I) c; Numba's fixed-step kernel as
    numpy's (to an ulp: Numba contracts to FMA), and its adaptive kernel's source and lane functions parse (its own
    jac_block, printed by the same ``numba_lanes._emit_jacobian_function``; one Numba compile, not two)."""
    import scipy.linalg
    y = sk.states("y", 2)
    A = np.array([[-1.0, 1.0], [0.0, -2.0]])
    c = np.array([1.0, 0.0])
    prob = sk.ODEProblem(sk.ODE(y, sp.Matrix(A) * sp.Matrix(y) + sp.Matrix(c)), y0=[1.0, 1.0], tspan=(0.0, 1.0))
    E = scipy.linalg.expm(A)
    exact = E @ np.ones(2) + np.linalg.solve(A, (E - np.eye(2)) @ c)
    for options in (dict(rtol=1e-8, atol=1e-10), dict(dt=0.25)):
        # Numba: the fixed-step kernel compiled (the adaptive one's source is parsed below)
        sol = sk.solve(prob, method, backend="numpy" if "rtol" in options else backend, **options)
        np.testing.assert_allclose(sol.y[-1], exact, rtol=1e-12)
        np.testing.assert_allclose(sol.y[-1], sk.solve(prob, method, backend="numpy", **options).y[-1], rtol=1e-14)
    # the adaptive Numba kernel's source and its lane functions' (the LANES string it loads) parse: no Numba compile
    import ast
    source = sk.inspect(prob, method, backend=backend, adaptive=True)
    for code in [source] + [node.value.value for node in ast.parse(source).body if isinstance(node, ast.Assign)
                            and getattr(node.targets[0], "id", None) == "LANES"]:
        compile(code, f"{method} adaptive {backend}", "exec")


def test_exponential_rosenbrock_solves_robertson_where_the_stiffness_is_in_n():
    """Robertson's kinetics (stiff through N: sympy's split leaves L = 0 rows for the quadratic terms) to t = 1e5 by
    adaptive Exprb43 with its exact Jacobian: within the tolerance of scipy's Radau at 1e-12 (README, "Where the
    stiffness sits decides the method"), on the numpy backend (no compile; the kernels print the same driver)."""
    from scipy.integrate import solve_ivp
    y = sk.states("y", 3)
    a, b, c = y
    f = sp.Matrix([-sp.Rational(4, 100) * a + 10**4 * b * c,
                   sp.Rational(4, 100) * a - 10**4 * b * c - 3 * 10**7 * b**2, 3 * 10**7 * b**2])
    prob = sk.ODEProblem(sk.ODE(y, f), y0=[1.0, 0.0, 0.0], tspan=(0.0, 1e5))

    def rhs(t, u):
        return [-0.04 * u[0] + 1e4 * u[1] * u[2], 0.04 * u[0] - 1e4 * u[1] * u[2] - 3e7 * u[1] ** 2, 3e7 * u[1] ** 2]

    def jac(t, u):
        return [[-0.04, 1e4 * u[2], 1e4 * u[1]], [0.04, -1e4 * u[2] - 6e7 * u[1], -1e4 * u[1]], [0.0, 6e7 * u[1], 0.0]]
    ref = solve_ivp(rhs, (0.0, 1e5), [1.0, 0.0, 0.0], method="Radau", rtol=1e-12, atol=1e-14, jac=jac).y[:, -1]
    for rtol, atol in ((1e-4, 1e-8), (1e-6, 1e-10)):
        sol = sk.solve(prob, "Exprb43", rtol=rtol, atol=atol, backend="numpy")
        assert sol.retcode == "Success" and sol.stats["naccept"] < 1000
        assert (np.abs(sol.y[-1] - ref) / (atol + rtol * np.abs(ref))).max() < 1.0
