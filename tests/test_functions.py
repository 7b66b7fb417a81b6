"""The function-support table (codegen/functions.py): every entry that all backends print is evaluated on
every backend against numpy/scipy; every other function is refused when the model is built."""
import numpy as np
import pytest
import scipy.special as sc
import sympy as sp

import sdekit as sk
from sdekit.codegen.functions import BACKENDS, SUPPORTED

#: function -> (sympy expression of a state u, numpy/scipy reference, three values of u in its domain)
CASES = {
    sp.sin: (sp.sin, np.sin, (-1.3, 0.2, 2.0)), sp.cos: (sp.cos, np.cos, (-1.3, 0.2, 2.0)),
    sp.tan: (sp.tan, np.tan, (-1.3, 0.2, 1.0)), sp.asin: (sp.asin, np.arcsin, (-0.9, 0.1, 0.7)),
    sp.acos: (sp.acos, np.arccos, (-0.9, 0.1, 0.7)), sp.atan: (sp.atan, np.arctan, (-3.0, 0.1, 5.0)),
    sp.atan2: (lambda u: sp.atan2(u, sp.Rational(1, 2)), lambda u: np.arctan2(u, 0.5), (-3.0, 0.1, 5.0)),
    sp.sinh: (sp.sinh, np.sinh, (-2.0, 0.1, 3.0)), sp.cosh: (sp.cosh, np.cosh, (-2.0, 0.1, 3.0)),
    sp.tanh: (sp.tanh, np.tanh, (-2.0, 0.1, 3.0)), sp.asinh: (sp.asinh, np.arcsinh, (-2.0, 0.1, 3.0)),
    sp.acosh: (sp.acosh, np.arccosh, (1.0, 1.5, 4.0)), sp.atanh: (sp.atanh, np.arctanh, (-0.9, 0.1, 0.7)),
    sp.exp: (sp.exp, np.exp, (-2.0, 0.1, 3.0)), sp.log: (sp.log, np.log, (0.1, 1.5, 40.0)),
    sp.Abs: (sp.Abs, np.abs, (-2.0, 0.0, 3.0)), sp.sign: (sp.sign, np.sign, (-2.0, 0.0, 3.0)),
    sp.floor: (sp.floor, np.floor, (-2.5, 0.2, 3.7)), sp.ceiling: (sp.ceiling, np.ceil, (-2.5, 0.2, 3.7)),
    sp.Max: (lambda u: sp.Max(u, sp.Rational(3, 10)), lambda u: np.maximum(u, 0.3), (-2.0, 0.3, 3.0)),
    sp.Min: (lambda u: sp.Min(u, sp.Rational(3, 10)), lambda u: np.minimum(u, 0.3), (-2.0, 0.3, 3.0)),
    sp.Heaviside: (sp.Heaviside, lambda u: np.heaviside(u, 0.5), (-2.0, 0.0, 3.0)),
    sp.Piecewise: (lambda u: sp.Piecewise((u, u > sp.Rational(1, 2)), (u**2, sp.And(u < 0, u > -3)), (1, True)),
                   lambda u: np.where(u > 0.5, u, np.where((u < 0) & (u > -3), u**2, 1.0)), (-2.0, 0.2, 3.0)),
    sp.erf: (sp.erf, sc.erf, (-2.0, 0.1, 3.0)), sp.erfc: (sp.erfc, sc.erfc, (-2.0, 0.1, 3.0)),
    sp.gamma: (sp.gamma, sc.gamma, (0.3, 1.5, 4.2)), sp.loggamma: (sp.loggamma, sc.gammaln, (0.3, 1.5, 40.0)),
}
EVERYWHERE = [f for f, backends in SUPPORTED.items() if set(backends) == set(BACKENDS)]


def test_every_function_everywhere_has_a_case():
    assert set(EVERYWHERE) == set(CASES)


@pytest.mark.parametrize("backend, dtype", [(b, "float64") for b in BACKENDS] + [("numba", "float32")])
def test_every_supported_function_on_every_backend_matches_numpy(backend, dtype):
    """One model, a state per function: u_i' = f_i(u_i), one Euler step of length 1 gives u_i + f_i(u_i).  float32:
    the Numba kernel prints its constants as float32 (``f32(1/2)``) and takes each function of a float32 argument,
    within float32 rounding of the reference at the float32 value of u."""
    fns = list(CASES)
    u = sk.states("u", len(fns))
    model = sk.ODE(u, sp.Matrix([CASES[f][0](u[i]) for i, f in enumerate(fns)]))
    y0 = np.array([CASES[f][2] for f in fns]).T                          # (3 trajectories, one state each)
    if dtype == "float32":
        y0 = y0.astype(np.float32).astype(np.float64)
    sol = sk.solve(sk.Ensemble(sk.ODEProblem(model, y0=y0[0], tspan=(0.0, 1.0)), y0=y0), "Euler", dt=1.0,
                   backend=backend, dtype=dtype)
    assert sol.y.dtype == dtype
    got = sol.y[:, -1] - y0
    tol = dict(rtol=1e-13, atol=1e-14) if dtype == "float64" else dict(rtol=3e-6, atol=3e-6)
    for i, f in enumerate(fns):
        want = CASES[f][1](y0[:, i])
        np.testing.assert_allclose(got[:, i], want, **tol, err_msg=f"{f.__name__} on {backend} in {dtype}")


@pytest.mark.parametrize("build, match", [
    (lambda u: sk.ODE(u, sp.Matrix([sp.besselj(0, u[0])])), "uses besselj, which the numba backend does not support"),
    (lambda u: sk.ODE(u, sp.Matrix([sp.Function("g")(u[0])])), "undefined function g"),
    (lambda u: sk.SDE(u, drift=sp.Matrix([-u[0]]), diffusion=sp.Matrix([sp.zeta(u[0])])), "uses zeta, which the "
                                                                                            "numpy and numba backends"),
    (lambda u: sk.SDE(u, linear=sp.Matrix([[-sk.t]]), diffusion=sp.Matrix([1])), "ℓ\\(t\\)·I is supported for ODEs"),
    (lambda u: sk.ODE(u, sp.Matrix([sp.I * u[0] ** 2])), "drift is complex"),
    (lambda u: sk.ODE(u, sp.Matrix([sp.Integral(u[0] * sp.Symbol("s"), (sp.Symbol("s"), 0, 1))])),
     r"contains the unevaluated Integral Integral\(s\*u0, \(s, 0, 1\)\).*\.doit\(\)"),
    (lambda u: sk.ODE(u, sp.Matrix([-sp.Sum(u[0] ** sp.Symbol("i", integer=True), (sp.Symbol("i", integer=True), 1, 3))])),
     "contains the unevaluated Sum"),       # printed, it was a NameError (numpy) or a typing error (Numba) at solve
    (lambda u: sk.ODE(u, sp.Matrix([sp.Product(u[0], (sp.Symbol("i", integer=True), 1, 3))])), "unevaluated Product"),
    (lambda u: sk.ODE(u, sp.Matrix([sp.Derivative(sp.sin(u[0] * sk.t), sk.t)])), "unevaluated Derivative"),
    (lambda u: sk.ODE(u, [sp.Eq(u[0], 1)]), r"drift has the entry Eq\(u0, 1\), a Equality, not an expression"),
    (lambda u: sk.SDE(u, drift=-u, diffusion=[sp.Gt(u[0], 1)]), "diffusion has the entry u0 > 1"),
    (lambda u: sk.ODE(u, sp.Matrix([sp.Symbol("t") * u[0]])), "time is sdekit.t"),
])
def test_unsupported_functions_are_refused_at_build(build, match):
    with pytest.raises(sk.ModelError, match=match):
        build(sk.states("u", 1))


def test_max_and_min_of_a_nan_are_nan_on_every_backend():
    """y' = −y + Max(log(y − 2), 0) at y = 1: log is NaN, so f is NaN and every backend stops the
    trajectory as Unstable (Python's max would drop the NaN on Numba alone and report Success)."""
    y = sk.states("y", 1)
    for fn in (sp.Max, sp.Min):
        prob = sk.ODEProblem(sk.ODE(y, sp.Matrix([-y[0] + fn(sp.log(y[0] - 2), 0)])), y0=[1.0], tspan=(0.0, 1.0))
        for backend in ("numpy", "numba", "cuda-host"):
            sol = sk.solve(prob, "RK4", dt=0.1, backend=backend)
            assert sol.retcode == "Unstable" and np.isnan(sol.y[-1, 0]), (fn, backend, sol.retcode)
