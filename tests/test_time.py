"""Time grids and directions: user step times ``ts=`` (any monotone grid) and backwards
integration (tspan with t1 < t0), for ODEs and SDEs, fixed and adaptive steps.

A backwards problem is integrated forward in the reversed time s = −t
(``codegen.analysis.time_reversed``): every method keeps its order, a backwards solve undoes a
forward one, an SDE is the reverse-time equation driven by W(s), and the backwards solve is, bit
for bit, the forward solve of the reversed model written by hand.
"""
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import sdekit as sk
from sdekit.codegen.methods import CATALOGUE
from sdekit.testing import manufactured, observed_order

ODE_METHODS = [m for m in CATALOGUE if not m.stochastic]


def manufactured_backwards(L):
    """The manufactured problem (sdekit.testing) from t = 1 back to 0: (problem, exact y(0))."""
    return manufactured(L, tspan=(1.0, 0.0))


_rng = np.random.default_rng(5)
_Q = np.linalg.qr(_rng.normal(size=(3, 3)))[0]
L_DENSE = _Q @ np.diag([-0.5, -1.5, -3.0]) @ _Q.T + np.array([[0, 0.5, 0], [-0.5, 0, 0.25], [0, -0.25, 0]])
LEVELS = {1: range(6, 10), 2: range(5, 9), 3: range(4, 8), 4: range(3, 7), 5: range(2, 6)}


@pytest.mark.parametrize("method", ODE_METHODS, ids=[m.name for m in ODE_METHODS])
def test_every_ode_method_keeps_its_order_backwards(method):
    """From t = 1 back to 0 on a dense, coupled L (growing backwards) with a t-dependent N."""
    prob, exact = manufactured_backwards(L_DENSE)
    shift = 4 if method.family.name == "tase" else 0
    dts = [2.0**-(k + shift) for k in LEVELS[method.order]]
    sols = [sk.solve(prob, method.name, dt=dt, backend="numpy") for dt in dts]
    assert np.allclose(sols[0].t, np.linspace(1.0, 0.0, len(sols[0].t)))     # time runs backwards
    errs = [np.max(np.abs(s.y[-1] - exact)) for s in sols]
    p = observed_order(dts[1:], errs[1:])
    assert p >= method.order - 0.25, (method.name, p, errs)


def _mlp_model():
    """y' = −y + tanh-MLP(y0, y1, t) (a network reading t), with weights."""
    y = sk.states("y", 2)
    net = sk.MLP("f", [3, 8, 2])
    model = sk.ODE(y, -y + net(sp.Matrix([y[0], y[1], sk.t])))
    rng = np.random.default_rng(1)
    weights = [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b)) for a, b in zip(net.sizes[:-1], net.sizes[1:])]
    return y, net, model, weights


def test_backwards_is_the_forward_solve_of_the_reversed_model():
    """Bit for bit: tspan (1, 0.25) equals the hand-written model in s = −t, dy/ds = −f(y, −s), on (−1, −0.25),
    fixed and adaptive (the network reads t, so it must read −s).  The reversal is the model's and the plan's
    (``solve.plan``), before any backend: numpy shows it; the Numba kernels run backwards in the tests below."""
    y, net, model, w = _mlp_model()
    by_hand = sk.ODE(y, y - net(sp.Matrix([y[0], y[1], -sk.t])))
    Y0 = np.random.default_rng(2).normal(size=(5, 2))
    back = sk.Ensemble(sk.ODEProblem(model, y0=[0, 0], tspan=(1.0, 0.25), nets={"f": w}), y0=Y0)
    fwd = sk.Ensemble(sk.ODEProblem(by_hand, y0=[0, 0], tspan=(-1.0, -0.25), nets={"f": w}), y0=Y0)
    for kw in ({"dt": 0.05, "saveat": [1.0, 0.5, 0.25]}, {"rtol": 1e-6, "atol": 1e-8, "saveat": [1.0, 0.6, 0.25]}):
        a = sk.solve(back, "Tsit5", backend="numpy", **kw)
        b = sk.solve(fwd, "Tsit5", backend="numpy", **{**kw, "saveat": [-x for x in kw["saveat"]]})
        np.testing.assert_array_equal(a.y, b.y)
        np.testing.assert_array_equal(a.t, -b.t)
        assert list(a.t) == kw["saveat"] and a.stats == b.stats


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_a_backwards_solve_undoes_a_forward_one(backend):
    y, net, model, w = _mlp_model()
    # forward on numpy (the forward kernels are tested everywhere): the backward kernel is this test's one compile
    fwd = sk.solve(sk.ODEProblem(model, y0=[0.3, -0.2], tspan=(0.0, 1.5), nets={"f": w}), "Tsit5",
                   rtol=1e-11, atol=1e-13, backend="numpy")
    back = sk.solve(sk.ODEProblem(model, y0=fwd.y[-1], tspan=(1.5, 0.0), nets={"f": w}), "Tsit5",
                    rtol=1e-11, atol=1e-13, backend=backend)
    assert back.success and np.all(np.diff(back.t) < 0) and back.t[0] == 1.5 and back.t[-1] == 0.0
    np.testing.assert_allclose(back.y[-1], [0.3, -0.2], atol=1e-9)


def test_backwards_sde_is_driven_by_the_brownian_path_in_reversed_time():
    """dy = σ dW from t0 = 2 back to t1 = 0.5: y = y0 + σ (W(−0.5) − W(−2)) exactly, on any grid,
    with W the tree ``brownian_tree`` returns (on the reversed span)."""
    y = sk.states("y", 1)
    prob = sk.SDEProblem(sk.SDE(y, drift=sp.Matrix([0]), diffusion=sp.Rational(1, 3), noise="scalar"),
                         y0=[1.0], tspan=(2.0, 0.5))
    ens = sk.Ensemble(prob, n=16, seed=4)
    W = sk.brownian_tree(ens)
    want = 1.0 + (W.query(-0.5) - W.query(-2.0))[0] / 3
    for sol in (sk.solve(ens, "EM", dt=0.01), sk.solve(ens, "EM", ts=np.linspace(2.0, 0.5, 37), backend="numpy"),
                sk.solve(ens, "SRA1", rtol=1e-2, atol=1e-2)):
        np.testing.assert_allclose(sol.y[:, -1, 0], want, rtol=0, atol=1e-12)
        assert sol.t[0] == 2.0 and sol.t[-1] == 0.5


def test_backwards_ornstein_uhlenbeck_has_the_reverse_time_moments():
    """dy = −y dt + σ dW̄ backwards over T = 1: in s, dy = y ds + σ dW, so E y = y0 e^T and
    Var y = σ²(e^{2T} − 1)/2; EM at dt = 2^-8 (weak bias ≈ 0.4 % of the variance) on 2·10^4 paths."""
    y = sk.states("y", 1)
    sigma, T, n = 0.5, 1.0, 20000
    prob = sk.SDEProblem(sk.SDE(y, drift=-y, diffusion=sp.Rational(1, 2), noise="scalar"), y0=[0.2], tspan=(T, 0.0))
    yT = sk.solve(sk.Ensemble(prob, n=n, seed=8), "EM", dt=2.0**-8).y[:, -1, 0]
    mean, var = 0.2 * np.exp(T), sigma**2 * (np.exp(2 * T) - 1) / 2
    assert abs(yT.mean() - mean) < 5 * np.sqrt(var / n)
    assert abs(yT.var() / var - 1) < 5 * np.sqrt(2 / n) + 0.01


# ---- user grids ts= ----------------------------------------------------------------------------------


def _ode():
    return manufactured_backwards(np.diag([-1.0, -4.0]))


def test_a_dt_grid_has_no_step_of_size_zero():
    """dt at the rounding of the times (tspan (1e6, 1e6 + 1e-6): t1 − t0 is 1.0012e-6, so steps of 1e-8 and a last
    point t0 + 100 dt that rounds to t1) gave a step of size 0 and t1 saved twice; every grid's steps are positive."""
    from sdekit.solve import time_grid
    for tspan, dt in [((1e6, 1e6 + 1e-6), 1e-8), ((0.0, 1.0), 0.3), ((-1e8, -1e8 + 1.0), 1e-3), ((0.0, 1.0), 0.1)]:
        times = time_grid(tspan, dt).times
        assert times[0] == tspan[0] and times[-1] == tspan[1] and np.all(np.diff(times) > 0), (tspan, dt)
    prob, _ = _ode()
    sol = sk.solve(sk.ODEProblem(prob.model, y0=prob.y0, tspan=(1e6, 1e6 + 1e-6)), "ETDRK4", dt=1e-8)
    assert sol.success and np.all(np.diff(sol.t) > 0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_ts_on_the_dt_grid_is_the_dt_solve(backend):
    prob, _ = _ode()
    a = sk.solve(prob, "ETDRK4", dt=0.125, backend=backend)
    b = sk.solve(prob, "ETDRK4", ts=np.linspace(1.0, 0.0, 9), backend=backend)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.t, b.t)


@settings(deadline=None, max_examples=6, derandomize=True)
@given(gaps=st.lists(st.floats(0.2, 5.0), min_size=3, max_size=12), method=st.sampled_from(["RK4", "ETDRK4", "Tsit5"]))
def test_random_grids_converge_at_the_method_order_under_bisection(gaps, method):
    """ts: a random grid from 1 back to 0, bisected again and again (every step halved): the error
    falls at the method's order in the largest step (order 4: bisections 2-4; Tsit5, 5: 1-3, above round-off)."""
    prob, exact = _ode()
    order, levels = {"RK4": (4, (2, 3, 4)), "ETDRK4": (4, (2, 3, 4)), "Tsit5": (5, (1, 2, 3))}[method]
    ts = 1.0 - np.concatenate([[0.0], np.cumsum(gaps)]) / np.sum(gaps)
    errs, hmax = [], []
    for k in range(1, levels[-1] + 1):
        ts = np.append(np.ravel(np.column_stack([ts[:-1], (ts[:-1] + ts[1:]) / 2])), 0.0)
        if k in levels:
            errs.append(np.max(np.abs(sk.solve(prob, method, ts=ts, backend="numpy").y[-1] - exact)))
            hmax.append(np.max(np.abs(np.diff(ts))))
    p = observed_order(hmax, errs)
    assert p >= order - 0.3, (method, p, errs)


@pytest.mark.parametrize("call, match", [
    (lambda prob: sk.solve(prob, "RK4", dt=0.1, ts=[1.0, 0.0]), "either dt"),
    (lambda prob: sk.solve(prob, "Tsit5", ts=[1.0, 0.0], rtol=1e-3), "ts gives fixed steps"),
    (lambda prob: sk.solve(prob, "RK4", ts=[1.0, 0.3, 0.5, 0.0]), "monotonically"),
    (lambda prob: sk.solve(prob, "RK4", ts=[0.0, 0.5, 1.0]), "monotonically"),        # the wrong way for (1, 0)
    (lambda prob: sk.solve(prob, "RK4", ts=[1.0, 0.5, 0.1]), "end at t1"),
    (lambda prob: sk.solve(prob, "RK4", ts=[1.0, np.nan, 0.0]), "finite times"),
    (lambda prob: sk.solve(prob, "RK4", ts=[[1.0, 0.0]]), "1-d sequence"),
    (lambda prob: sk.solve(prob, "RK4", ts="steps"), "1-d sequence"),
    (lambda prob: sk.solve(prob, "RK4", dt=-0.1), "dt must be finite and > 0"),
    (lambda prob: sk.solve(prob, "RK4", dt=0.25, saveat=[0.0, 0.5]), "decreasing when tspan runs backwards"),
    (lambda prob: sk.solve(prob, "Tsit5", saveat=[0.2, 0.7]), "decreasing when tspan runs backwards"),
    (lambda prob: sk.solve(prob, "Tsit5", saveat=[1.5, 0.7]), "between t0 and t1"),
    (lambda prob: sk.ODEProblem(prob.model, y0=prob.y0, tspan=(1.0, 1.0)), "t1 != t0"),
])
def test_bad_grids_and_directions_are_named(call, match):
    prob, _ = _ode()
    with pytest.raises(ValueError, match=match):
        call(prob)


# --- t-dependent scalar linear parts ℓ(t)·I: solved in u = ±∫ℓ dt (codegen.analysis.time_changed) ---------------

EXPONENTIAL = [m for m in ODE_METHODS if m.family.name in ("exprk", "exprb", "etdadams")]
Y = sk.states("y", 2)
#: ℓ(t), ∫ℓ: a quadratic antiderivative (two inverse branches) and a logarithmic one
ELLS = {"quadratic": (-(1 + sk.t), lambda t: -(t + t**2 / 2)), "log": (-3 / (1 + sk.t), lambda t: -3 * np.log1p(t))}


@pytest.mark.parametrize("ell", list(ELLS))
@pytest.mark.parametrize("method", EXPONENTIAL, ids=[m.name for m in EXPONENTIAL])
def test_exponential_methods_integrate_a_t_dependent_linear_part_exactly(method, ell):
    """y' = ℓ(t) y: every exponential method gives y0 e^{Λ(t1) − Λ(t0)} to rounding at coarse steps, forwards and
    backwards in time."""
    expr, Lam = ELLS[ell]
    model = sk.ODE(Y, linear=expr * sp.eye(2))
    for tspan in [(0.0, 2.0), (2.0, 0.5)]:
        sol = sk.solve(sk.ODEProblem(model, [1.0, -2.0], tspan), method.name, dt=0.5, backend="numpy")
        exact = np.array([1.0, -2.0]) * np.exp(Lam(tspan[1]) - Lam(tspan[0]))
        np.testing.assert_allclose(sol.y[-1], exact, rtol=1e-12)
        np.testing.assert_allclose(sol.t, np.linspace(*tspan, len(sol.t)), rtol=1e-13, atol=1e-14)


def _nonlinear_reference(ell, tspan, y0):
    from scipy.integrate import solve_ivp
    f = sp.lambdify(sk.t, ELLS[ell][0])
    return solve_ivp(lambda t, v: f(t) * v + np.array([np.sin(t) + v[1] ** 2 / 4, -v[0] * v[1] / 3]), tspan, y0,
                     method="DOP853", rtol=1e-13, atol=1e-13).y[:, -1]


@pytest.mark.parametrize("name, order", [("ETDRK4", 4), ("Krogstad", 4), ("HochOst4", 4), ("ETDRK3", 3), ("ETD2", 2),
                                         ("Exprb43", 4), ("Tsit5", 5)])
def test_methods_keep_their_order_with_a_t_dependent_linear_part(name, order):
    expr, _ = ELLS["quadratic"]
    model = sk.ODE(Y, linear=expr * sp.eye(2), nonlinear=sp.Matrix([sp.sin(sk.t) + Y[1] ** 2 / 4, -Y[0] * Y[1] / 3]))
    ref = _nonlinear_reference("quadratic", (0.0, 2.0), [1.0, 2.0])
    dts = [0.2, 0.1, 0.05]
    errs = [np.abs(sk.solve(sk.ODEProblem(model, [1.0, 2.0], (0.0, 2.0)), name, dt=dt, backend="numpy").y[-1] - ref).max()
            for dt in dts]
    assert observed_order(dts, errs) >= order - 0.3, (name, errs)


def test_a_stiff_t_dependent_linear_part_is_taken_exactly():
    """ℓ(t) = −500(1 + t): ETDRK4 at dt = 0.1 (hℓ = −50 … −100) on the Numba kernel agrees with scipy's Radau to
    1e-8, adaptive Tsit5 meets its tolerance, while the same model with ℓ(t) y in N blows up under RK4 at that step
    (Tsit5 and RK4 on numpy: what is shown is the methods', not a kernel's)."""
    from scipy.integrate import solve_ivp
    ell = -500 * (1 + sk.t)
    split = sk.ODE(Y, linear=ell * sp.eye(2), nonlinear=sp.Matrix([sp.cos(sk.t), 1]))
    slow = sk.ODE(Y, linear=sp.zeros(2), nonlinear=ell * Y + sp.Matrix([sp.cos(sk.t), 1]))
    auto = sk.ODE(Y, ell * Y + sp.Matrix([sp.cos(sk.t), 1]))       # the automatic split keeps −500 t y in N
    assert auto.linear == -500 * sp.eye(2) and auto.form.linear_time is None and auto.nonlinear.has(sk.t * Y[0])
    assert repr(split) == "ODE(dim=2, L=(-500*t - 500)·I, params=[], nets=[])"
    prob = sk.ODEProblem(split, [1.0, 1.0], (0.0, 1.0))
    ref = solve_ivp(lambda t, v: -500 * (1 + t) * v + np.array([np.cos(t), 1.0]), (0, 1), [1.0, 1.0], method="Radau",
                    rtol=1e-12, atol=1e-14).y[:, -1]
    etd = sk.solve(prob, "ETDRK4", dt=0.1)
    assert etd.success and etd.backend == "numba" and np.abs(etd.y[-1] - ref).max() < 1e-8
    tsit = sk.solve(prob, "Tsit5", rtol=1e-8, atol=1e-10, saveat=[0.25, 1.0], backend="numpy")
    np.testing.assert_allclose(tsit.t, [0.25, 1.0], rtol=1e-13)
    assert np.abs(tsit.y[-1] - ref).max() < 1e-9
    assert np.abs(sk.solve(sk.ODEProblem(slow, [1.0, 1.0], (0.0, 1.0)), "RK4", dt=0.1, backend="numpy").y[-1]).max() > 1e20


def test_ensembles_and_saveat_with_a_t_dependent_linear_part():
    expr, Lam = ELLS["log"]
    model = sk.ODE(Y, linear=expr * sp.eye(2), nonlinear=sp.Matrix([0, sk.t]))
    y0 = np.random.default_rng(0).normal(size=(5, 2))
    sol = sk.solve(sk.Ensemble(sk.ODEProblem(model, [0.0, 0.0], (0.0, 1.0)), y0=y0), "ETDRK4", dt=0.125,
                   saveat=[0.0, 0.5, 1.0])
    np.testing.assert_allclose(sol.t, [0.0, 0.5, 1.0], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(sol.y[:, 1, 0], y0[:, 0] * np.exp(Lam(0.5)), rtol=1e-12)     # y0' = ℓ y0: exact
    assert sk.inspect(model, "ETDRK4").count("def kernel") == 1


@pytest.mark.parametrize("build, error, match", [
    (lambda: sk.ODE(Y, linear=sp.diag(-sk.t, -2 * sk.t)), sk.ModelError, "must be ℓ\\(t\\)·I"),
    (lambda: sk.ODE(Y, linear=-sk.params("k") * sk.t * sp.eye(2)), sk.ModelError, "may depend on t only"),
    (lambda: sk.SDE(Y, linear=-sk.t * sp.eye(2), diffusion=1), sk.ModelError, "supported for ODEs"),
    (lambda: sk.solve(sk.ODEProblem(sk.ODE(Y, linear=sp.cos(sk.t) * sp.eye(2)), [1.0, 0.0], (0.0, 3.0)), "ETDRK4",
                      dt=0.1), ValueError, "keep one sign"),
    (lambda: sk.solve(sk.ODEProblem(sk.ODE(Y, linear=-(1 + sk.t) * sp.eye(2)), [1.0, 0.0], (0.0, 1.0)), "Tsit5",
                      dtmax=0.1), ValueError, "dtmin/dtmax"),
])
def test_bad_t_dependent_linear_parts_are_named(build, error, match):
    with pytest.raises(error, match=match):
        build()
