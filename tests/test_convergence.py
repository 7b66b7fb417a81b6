"""Convergence orders on problems with known solutions (numpy reference backend)."""
import mpmath
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import sdekit as sk


def solve(*args, **kw):
    """Orders and API facts are measured on the numpy reference backend (same step scheme; the
    Numba kernel is checked against it in test_numba.py)."""
    kw.setdefault("backend", "numpy")
    return sk.solve(*args, **kw)
from sdekit.kernels.brownian import BrownianTree

from sdekit.testing import observed_order as slope


def manufactured(L, dense: bool):
    """y' = L y + N(y, t) with exact solution y*(t) = 1 + sin(t + i)/2:
    N = sin(y_{i+1}) − sin(y*_{i+1}) + y*' − L y*  (nonlinear, t-dependent, couples components)."""
    d = L.shape[0]
    y, t = sk.states("y", d), sk.t
    ys = sp.Matrix([1 + sp.sin(t + i) / 2 for i in range(d)])
    Lys = sp.Matrix(L) * ys
    N = sp.Matrix([sp.sin(y[(i + 1) % d]) - sp.sin(ys[(i + 1) % d]) + sp.diff(ys[i], t) - Lys[i] for i in range(d)])
    if dense:
        model = sk.ODE(y, linear=L, nonlinear=N)
    else:
        model = sk.ODE(y, sp.Matrix(L) * y + N)
    exact = sp.lambdify(t, ys, "numpy")
    y0 = np.array(exact(0.0), dtype=float).ravel()
    return sk.ODEProblem(model, y0=y0, tspan=(0.0, 1.0)), np.array(exact(1.0), dtype=float).ravel()


STIFF_DIAG = np.diag([-1.0, -10.0, -60.0])
_rng = np.random.default_rng(3)
_Q = np.linalg.qr(_rng.normal(size=(3, 3)))[0]
DENSE = _Q @ np.diag([-1.0, -4.0, -15.0]) @ _Q.T + np.array([[0, 1.0, 0], [-1.0, 0, 0.5], [0, -0.5, 0]])

ODE_CASES = [  # method, order, dt levels
    ("Euler", 1, range(6, 10)),
    ("RK4", 4, range(6, 10)),
    ("ETD1", 1, range(3, 7)),
    ("ETDRK4", 4, range(6, 10)),  # classical order; stiff order 2 shows for h|λ| > 1
]


@pytest.mark.parametrize("dense", [False, True], ids=["stiff-diagonal", "dense"])
@pytest.mark.parametrize("method,order,levels", ODE_CASES, ids=[c[0] for c in ODE_CASES])
def test_ode_order(method, order, levels, dense):
    prob, exact = manufactured(DENSE if dense else STIFF_DIAG, dense)
    assert prob.model.linear_structure == ("dense" if dense else "diagonal")
    dts = [2.0**-k for k in levels]
    errs = [np.max(np.abs(solve(prob, method, dt=dt).y[-1] - exact)) for dt in dts]
    p = slope(dts, errs)
    print(f"{method} ({'dense' if dense else 'diagonal'} L): errors {errs}, order {p:.2f}")
    assert abs(p - order) < 0.2, (method, p, errs)


def _linear_problem(L, y0, c=None):
    d = len(y0)
    y = sk.states("y", d)
    nl = sp.Matrix(c) if c is not None else sp.zeros(d, 1)
    return sk.ODEProblem(sk.ODE(y, linear=L, nonlinear=nl), y0=y0, tspan=(0.0, 1.3))


@settings(deadline=None, max_examples=25)
@given(lams=st.lists(st.floats(-80.0, 1.0), min_size=1, max_size=4),
       nsteps=st.integers(1, 7), method=st.sampled_from(["ETD1", "ETDRK4"]))
def test_etd_exact_for_linear_diagonal(lams, nsteps, method):
    """ETD methods reproduce y' = L y + c exactly (N constant) for any step."""
    L = np.diag(lams)
    y0 = np.linspace(1, 2, len(lams))
    c = np.linspace(-1, 1, len(lams))
    sol = solve(_linear_problem(L, y0, c), method, dt=1.3 / nsteps)
    T = mpmath.mpf(1.3)
    exact = [float(mpmath.exp(lam * T) * a + (mpmath.expm1(lam * T) / lam if lam else T) * b)
             for lam, a, b in zip(map(mpmath.mpf, lams), y0, c)]
    assert np.allclose(sol.y[-1], exact, rtol=1e-11, atol=1e-12)


@settings(deadline=None, max_examples=15)
@given(seed=st.integers(0, 2**31), scale=st.floats(0.1, 20.0), nsteps=st.integers(1, 5))
def test_etd_exact_for_linear_dense(seed, scale, nsteps):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3, 3))
    L = scale * (A - A.T - np.eye(3) * rng.uniform(0, 2)) / 3
    y0 = rng.normal(size=3)
    sol = solve(_linear_problem(L, y0), "ETDRK4", dt=1.3 / nsteps)
    assert np.allclose(sol.y[-1], scipy.linalg.expm(1.3 * L) @ y0, rtol=1e-10, atol=1e-11)


def _sde(drift_fn, diffusion, d=1, noise="diagonal", y0=1.0, T=1.0):
    y = sk.states("y", d)
    model = sk.SDE(y, drift=drift_fn(y), diffusion=diffusion, noise=noise)
    return sk.SDEProblem(model, y0=np.full(d, y0) if np.isscalar(y0) else y0, tspan=(0.0, T))


def _pairwise_order(prob, method, levels, n=400):
    """Strong order from RMS|y_dt(T) − y_{dt/2}(T)| on the same Brownian paths."""
    ens = sk.Ensemble(prob, n=n, seed=11)
    finals = {k: solve(ens, method, dt=2.0**-k).y[:, -1] for k in levels}
    dts = [2.0**-k for k in levels[:-1]]
    errs = [np.sqrt(np.mean(np.sum((finals[k] - finals[k + 1]) ** 2, axis=-1))) for k in levels[:-1]]
    return slope(dts, errs), errs


def test_em_strong_order_one_for_additive_noise():
    prob = _sde(lambda y: sp.Matrix([-y[0] + sp.sin(3 * y[0])]), sp.Rational(1, 2))
    p, errs = _pairwise_order(prob, "EM", list(range(3, 9)))
    print("EM additive:", p, errs)
    assert abs(p - 1.0) < 0.2


def test_em_strong_order_half_on_geometric_brownian_motion():
    mu, sigma, T, n = 0.5, 0.8, 1.0, 2000
    y = sk.states("y", 1)
    prob = sk.SDEProblem(sk.SDE(y, drift=mu * y, diffusion=sigma * y[0], noise="scalar"), y0=[1.0], tspan=(0, T))
    ens = sk.Ensemble(prob, n=n, seed=3)
    WT = BrownianTree(3, 0.0, T, 1, np.arange(n)).query(T)[0]
    exact = np.exp((mu - sigma**2 / 2) * T + sigma * WT)
    levels = list(range(3, 10))
    errs = [np.sqrt(np.mean((solve(ens, "EM", dt=2.0**-k).y[:, -1, 0] - exact) ** 2)) for k in levels]
    p = slope([2.0**-k for k in levels], errs)
    print("EM multiplicative:", p, errs)
    assert abs(p - 0.5) < 0.2


def test_setd1_strong_order_one_on_additive_problem():
    """Pathwise order 1 once h|λ| <~ 1 (for h|λ| >> 1 SETD1 stays exact in law, but the part of the
    convolution not determined by ΔW makes the pathwise error O(σ/√|λ|))."""
    prob = _sde(lambda y: sp.diag(-1, -10) * y + sp.Matrix([sp.sin(y[1]), sp.cos(y[0])]), sp.Rational(1, 2), d=2)
    p, errs = _pairwise_order(prob, "SETD1", list(range(4, 10)))
    print("SETD1 additive stiff:", p, errs)
    assert p > 0.8


OU_T = 1.0


def _ou_moments(L, GG, y0):
    mean = scipy.linalg.expm(OU_T * L) @ y0
    cov = scipy.integrate.quad_vec(lambda s: scipy.linalg.expm(s * L) @ GG @ scipy.linalg.expm(s * L).T, 0, OU_T)[0]
    return mean, cov


def _check_moments(Y, mean, cov):
    n = Y.shape[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(Y.mean(0) - mean) < 5 * se_mean), (Y.mean(0), mean)
    emp = np.cov(Y.T)
    se_cov = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    assert np.all(np.abs(emp - cov) < 5 * se_cov), (emp, cov)


@pytest.mark.parametrize("nsteps", [1, 64])
def test_setd1_exact_in_law_for_diagonal_ou(nsteps):
    L = np.diag([-1.0, -4.0])
    g = np.array([0.5, 1.0])
    y = sk.states("y", 2)
    model = sk.SDE(y, drift=sp.Matrix(L) * y, diffusion=sp.Matrix(g), noise="diagonal")
    y0 = np.array([1.0, -2.0])
    ens = sk.Ensemble(sk.SDEProblem(model, y0=y0, tspan=(0, OU_T)), n=100_000, seed=2)
    Y = solve(ens, "SETD1", dt=OU_T / nsteps, saveat=[OU_T]).y[:, -1]
    _check_moments(Y, *_ou_moments(L, np.diag(g * g), y0))


@pytest.mark.parametrize("nsteps", [1, 16])
def test_setd1_exact_in_law_for_dense_ou_with_scalar_noise(nsteps):
    L = np.array([[-1.0, 2.0], [-2.0, -3.0]])
    g = np.array([0.5, 1.0])
    y = sk.states("y", 2)
    model = sk.SDE(y, linear=L, nonlinear=sp.zeros(2, 1), diffusion=sp.Matrix(g), noise="scalar")
    y0 = np.array([1.0, -2.0])
    ens = sk.Ensemble(sk.SDEProblem(model, y0=y0, tspan=(0, OU_T)), n=100_000, seed=4)
    Y = solve(ens, "SETD1", dt=OU_T / nsteps, saveat=[OU_T]).y[:, -1]
    _check_moments(Y, *_ou_moments(L, np.outer(g, g), y0))
