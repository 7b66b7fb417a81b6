"""Derived coefficients (codegen/derive.py): TASE β's, singly/MSRKTASE operators, ETD-Adams weights.

Each derivation is checked against methods.md's numbers and, independently, by a tiny numpy
integrator's observed order (W-order for the TASE family, variable-step order for ETD-Adams).
"""
import math
from functools import lru_cache

import numpy as np
import pytest
import sympy as sp

from sdekit.codegen import derive as d
from sdekit.codegen import tables
from sdekit.codegen.phi import closed_form, phi, phi_poly, resolvent, series_in_z, z
from sdekit.codegen.tableau import TASETableau

R = sp.Rational


def _low_order_terms(expr, p):
    """Coefficients of z^0..z^p of expr − 1 (exact series)."""
    s = sp.expand(series_in_z(expr - 1, p))
    return [s.coeff(z, m) for m in range(p + 1)]


# ----------------------------------------------------------------------------- TASE, distinct α
def test_tase_betas_p2_exact():
    assert d.tase_betas((3, R(3, 2))) == (-1, 2)
    assert d.tase_betas(d.TASE_ALPHAS[2]) == (-1, 2)


@pytest.mark.parametrize("p, beta", [
    (3, (9.33202, -28.305069, 19.97305)),
    (4, (-2.348774, 139.597637, -313.528377, 177.279514)),
])
def test_tase_betas_calvo(p, beta):
    got = d.tase_betas(d.TASE_ALPHAS[p])
    assert all(isinstance(b, sp.Float) for b in got)
    np.testing.assert_allclose([float(b) for b in got], beta, rtol=2e-6)
    # the closed form β_l = x_l^{p−1} / Π_{j≠l}(x_l − x_j), x = 1/α (methods.md §3.2)
    x = [1 / float(a) for a in d.TASE_ALPHAS[p]]
    closed = [x[l] ** (p - 1) / math.prod(x[l] - x[j] for j in range(p) if j != l) for l in range(p)]
    np.testing.assert_allclose([float(b) for b in got], closed, rtol=1e-12)
    # python floats work too
    np.testing.assert_allclose([float(b) for b in d.tase_betas([float(a) for a in d.TASE_ALPHAS[p]])], closed,
                               rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5])
def test_tase_richardson_symbolic(p):
    a = sp.Symbol("alpha", positive=True)
    got = d.tase_betas([a / j for j in range(1, p + 1)])
    want = tuple(R((-1) ** (p - j) * j**p, math.factorial(j) * math.factorial(p - j)) for j in range(1, p + 1))
    assert got == want
    if p == 3:
        assert got == (R(1, 2), -4, R(9, 2))
    terms = _low_order_terms(d.tase_operator([a / j for j in range(1, p + 1)]), p)
    assert all(sp.simplify(t) == 0 for t in terms[:p]) and sp.simplify(terms[p]) != 0


def test_tase_operator_order_exact_and_float():
    T2 = d.tase_operator((3, R(3, 2)))
    assert sp.expand(T2 - (2 * resolvent(R(3, 2) * z) - resolvent(3 * z))) == 0
    assert _low_order_terms(T2, 2) == [0, 0, R(-9, 2)]
    for p in (3, 4):
        terms = _low_order_terms(d.tase_operator(d.TASE_ALPHAS[p]), p)
        assert all(abs(float(t)) < 1e-40 for t in terms[:p]) and abs(float(terms[p])) > 1e-3


def test_tase_betas_rejects_bad_input():
    with pytest.raises(ValueError, match="distinct"):
        d.tase_betas((2, 2))
    with pytest.raises(ValueError, match="distinct"):
        d.tase_betas((0, 1))
    with pytest.raises(ValueError, match="exactly p"):
        d.tase_betas((3, 2), p=3)


# ----------------------------------------------------------------------------- singly TASE
@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 6])
def test_singly_tase(p):
    assert d.singly_tase_betas(p) == tuple((-1) ** (j + 1) * sp.binomial(p, j) for j in range(1, p + 1))
    a = sp.Symbol("alpha", positive=True)
    T = d.singly_tase_operator(p, a)
    Rz = resolvent(a * z)
    assert sp.expand(T - (1 - (1 - Rz) ** p)) == 0  # T_p = I − (I − R)^p (methods.md §3.3)
    terms = _low_order_terms(T, p)
    assert terms[:p] == [0] * p and sp.simplify(terms[p] - (-1) ** (p + 1) * a**p) == 0
    # a numeric α gives a valid tableau operator (polynomial in resolvents)
    phi_poly(d.singly_tase_operator(p, R(5, 2)))


def test_singly_tase_examples():
    Rz = resolvent(z)
    assert d.singly_tase_operator(2) == 2 * Rz - Rz**2
    assert sp.expand(d.singly_tase_operator(4) - (4 * Rz - 6 * Rz**2 + 4 * Rz**3 - Rz**4)) == 0


# ----------------------------------------------------------------------------- RK-TASE catalogue
@pytest.mark.parametrize("p, rk", [(2, tables.MIDPOINT), (3, tables.RALSTON3), (4, tables.RK4)])
def test_tase_rk_catalogue(p, rk):
    tab = d.tase_rk(p)
    assert isinstance(tab, TASETableau) and tab.order == p and tab.rk is rk and tab.name == f"TASE-RK{p}"
    assert len(set(tab.operators)) == 1 and tab.operators[0] == d.tase_operator(d.TASE_ALPHAS[p])
    assert getattr(d, f"TASE_RK{p}") is tab
    with pytest.raises(AttributeError):
        d.TASE_RK9  # noqa: B018


def test_tase_method_and_errors():
    op = d.singly_tase_operator(3, 2)
    tab = d.tase_method(tables.RALSTON3, op, 3, "SRKTASE3")
    assert tab.operators == (op,) * 3 and tab.order == 3
    with pytest.raises(ValueError):
        d.tase_rk(5)
    with pytest.raises(ValueError):
        d.msrktase(4)


@pytest.mark.parametrize("p, r_inf", [(2, 0.5), (3, 0.0), (4, 0.27)])
def test_tase_rk_stability(p, r_inf):
    """methods.md §3.2: R(−∞) = 0.5, 0, 0.27 and max|R(iy)| = 1.000, 1.0045, 1.019."""
    Rf = d.stability_function(d.tase_rk(p))
    assert abs(Rf(-1e12).real - r_inf) < 0.01
    y = np.logspace(-3, 6, 4000)
    assert np.abs(Rf(1j * y)).max() < {2: 1 + 1e-9, 3: 1.006, 4: 1.02}[p]


# ----------------------------------------------------------------------------- MSRKTASE
def test_msrktase_operators_exact():
    a = sp.Symbol("alpha", positive=True)
    Ra = resolvent(a * z)
    T = d.msrktase_operators(tables.MIDPOINT, (1, 2), 2, a)
    assert T == (Ra, 2 * Ra - Ra**2)
    T = d.msrktase_operators(tables.RALSTON3, (2, 2, 3), 3, a)
    assert T[0] == T[1] == 2 * Ra - Ra**2
    assert sp.expand(T[2] - (R(17, 4) * Ra - R(11, 2) * Ra**2 + R(9, 4) * Ra**3)) == 0
    # the catalogue entries: default α and the stage powers documented in derive.py
    R1, R2 = resolvent(z), resolvent(2 * z)
    assert d.msrktase(2).operators == (R1, 2 * R1 - R1**2) and d.msrktase(2).rk is tables.MIDPOINT
    m3 = d.msrktase(3)
    assert m3.operators[:2] == (2 * R2 - R2**2,) * 2 and m3.order == 3 and m3.rk is tables.RALSTON3
    assert sp.expand(m3.operators[2] - (R(17, 4) * R2 - R(11, 2) * R2**2 + R(9, 4) * R2**3)) == 0
    assert d.MSRKTASE3 is m3
    assert d.msrktase(2, alpha=3).operators[0] == resolvent(3 * z)


@pytest.mark.parametrize("p", [2, 3])
def test_msrktase_w_conditions_from_series(p):
    """Re-derive σ, τ, ρ from the series of each T_i and check the W-conditions (methods.md §3.4)."""
    tab = d.msrktase(p)
    A, b, c, s = tab.rk.A, tab.rk.b, tab.rk.c, tab.stages
    coef = [_low_order_terms(op, 2) for op in tab.operators]  # T_i − 1 = 0 + τ_i z + ρ_i z² + …
    sigma = [1 + cf[0] for cf in coef]
    tau = [cf[1] for cf in coef]
    rho = [cf[2] for cf in coef]
    assert sigma == [1] * s
    assert sum(b[i] * tau[i] for i in range(s)) == 0
    if p == 3:
        assert sum(b[i] * c[i] * tau[i] for i in range(s)) == 0
        assert sum(b[i] * sum(A[i][j] * tau[j] for j in range(s)) for i in range(s)) == 0
        assert sum(b[i] * rho[i] for i in range(s)) == 0
        assert rho == [-4, -4, 5]  # α = 2: ρ = −α², −α², 5α²/4


def test_msrktase_underdetermined_or_impossible():
    with pytest.raises(ValueError, match="free parameters"):
        d.msrktase_operators(tables.MIDPOINT, (2, 2), 2)
    with pytest.raises(ValueError, match="no solution"):
        d.msrktase_operators(tables.MIDPOINT, (1, 1), 2)
    with pytest.raises(ValueError, match="no solution"):
        d.msrktase_operators(tables.RALSTON3, (2, 2, 2), 3)
    with pytest.raises(ValueError, match="order"):
        d.msrktase_operators(tables.MIDPOINT, (1, 2), 3)


def test_msrktase_default_alpha_stability():
    """The scan behind MSRKTASE_ALPHA: p = 2 α = 1 is A- and L-stable; p = 3 α = 2 has R(−∞) = 1/48."""
    y = np.logspace(-3, 7, 6000)
    R2 = d.stability_function(d.msrktase(2))
    assert np.abs(R2(1j * y)).max() <= 1 + 1e-12 and abs(R2(-1e14)) < 1e-12
    assert np.abs(R2(-y)).max() <= 1 + 1e-12
    R3 = d.stability_function(d.msrktase(3))
    assert abs(R3(-1e14).real - 1 / 48) < 1e-9
    assert np.abs(R3(-y)).max() <= 1 + 1e-12
    assert 1 < np.abs(R3(1j * y)).max() < 1.004  # not A-stable, but A(89°):
    ray = -np.exp(1j * np.deg2rad(89)) * y
    assert np.abs(R3(ray)).max() <= 1 + 1e-12 and np.abs(R3(ray.conj())).max() <= 1 + 1e-12


# --- numeric W-order: k_i = h T_i(hW) f(Y_i) with W a fixed random matrix (W != ∂f/∂y)
def _f(y):
    return np.array([-y[1] + 0.5 * np.sin(y[0]), y[0] - 0.4 * y[1] + 0.3 * y[0] ** 2])


def _op_matrix(op, hW):
    """T(hW) from the operator's data (phi_poly): Σ w Π (I − a hW)^{-1}."""
    eye = np.eye(len(hW))
    out = np.zeros_like(hW)
    for w, atoms in phi_poly(op):
        M = eye
        for _kind, a in atoms:
            M = M @ np.linalg.inv(eye - float(a) * hW)
        out = out + float(w) * M
    return out


def _tase_solve(tab, y0, T, n, W):
    h = T / n
    Ts = [_op_matrix(op, h * W) for op in tab.operators]
    A = [[float(a) for a in row] for row in tab.rk.A]
    b = [float(x) for x in tab.rk.b]
    y = np.array(y0, float)
    for _ in range(n):
        k = []
        for i in range(tab.stages):
            k.append(h * Ts[i] @ _f(y + sum(A[i][j] * k[j] for j in range(i))))
        y = y + sum(bi * ki for bi, ki in zip(b, k))
    return y


@lru_cache(maxsize=None)
def _reference():
    y, n, T = np.array([1.0, 0.5]), 8000, 1.0
    h = T / n
    for _ in range(n):  # classical RK4, error ~1e-15
        k1 = _f(y)
        k2 = _f(y + h / 2 * k1)
        k3 = _f(y + h / 2 * k2)
        k4 = _f(y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return y


def _w_order(tab):
    W = np.random.default_rng(7).normal(size=(2, 2)) * 2
    ns = np.array([40, 80, 160, 320, 640])  # 4 halvings
    err = [np.linalg.norm(_tase_solve(tab, [1.0, 0.5], 1.0, int(n), W) - _reference()) for n in ns]
    local = np.log2(np.array(err[:-1]) / err[1:])
    return -np.polyfit(np.log(ns), np.log(err), 1)[0], local


@pytest.mark.parametrize("name, tab, p", [
    ("MSRKTASE2", lambda: d.msrktase(2), 2),
    ("MSRKTASE3", lambda: d.msrktase(3), 3),
    ("TASE-RK2", lambda: d.tase_rk(2), 2),
    ("TASE-RK3", lambda: d.tase_rk(3), 3),
    ("TASE-RK4", lambda: d.tase_rk(4), 4),
])
def test_w_order_numeric(name, tab, p):
    slope, local = _w_order(tab())
    assert slope >= p - 0.2, (name, slope, local)
    assert local[-1] >= p - 0.1, (name, local)


def test_w_order_drops_without_the_conditions():
    """The test can fail: T = R in both midpoint stages is W-order 1; 2R − R² in every Ralston stage is 2."""
    Rz = resolvent(z)
    slope, local = _w_order(TASETableau(tables.MIDPOINT, (Rz,) * 2, 1, "R-everywhere"))
    assert 0.8 < slope < 1.2 and abs(local[-1] - 1) < 0.1
    R2 = resolvent(2 * z)
    slope, local = _w_order(TASETableau(tables.RALSTON3, (2 * R2 - R2**2,) * 3, 2, "T2-everywhere"))
    assert 1.8 < slope < 2.2 and abs(local[-1] - 2) < 0.1


# ----------------------------------------------------------------------------- ETD-Adams
h, h1, h2 = d.h, d.lag(1), d.lag(2)


def test_etd_adams_form():
    for k in (1, 2, 3, 4):
        W = d.etd_adams_weights(k)
        assert sorted(W) == list(range(k))
        for terms in W.values():
            assert [m for _, m in terms] == sorted({m for _, m in terms})
            for coef, m in terms:
                assert 1 <= m <= k and coef.free_symbols <= {h, *d.H_LAGS[:k - 1]} and not coef.has(sp.Float)
    assert d.lag(1) == sp.Symbol("h1", positive=True) and d.H_LAGS[1] == h2


def test_etd_adams_k1_is_exponential_euler():
    assert d.etd_adams_weights(1) == {0: [(h, 1)]}


def test_etd_adams_k2_constant_step_is_etd2():
    w = {j: op.subs(h1, h) for j, op in d.etd_adams_operators(2).items()}
    assert sp.expand(w[0] - h * (phi(1, z) + phi(2, z))) == 0  # methods.md §1.6
    assert sp.expand(w[1] + h * phi(2, z)) == 0


def test_etd_adams_k3_matches_methods_md():
    """y+ = e^{hL}y + hφ1 N_n + h²φ2 d1 + (2h³φ3 + h0 h²φ2) d2, h0 = h1 (methods.md §1.6)."""
    N = sp.symbols("N0:3")
    d1 = (N[0] - N[1]) / h1
    d2 = (d1 - (N[1] - N[2]) / h2) / (h1 + h2)
    want = h * phi(1, z) * N[0] + h**2 * phi(2, z) * d1 + (2 * h**3 * phi(3, z) + h1 * h**2 * phi(2, z)) * d2
    ops = d.etd_adams_operators(3)
    got = sum(ops[j] * N[j] for j in range(3))
    assert sp.simplify(got - want) == 0


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_etd_adams_exact_for_polynomials(k):
    """For N(t) a polynomial of degree < k the update is the exact solution of y' = λy + N(t)."""
    lam, tau = sp.symbols("lambda tau")
    nodes = [sp.Integer(0)]
    for i in range(1, k):
        nodes.append(nodes[-1] - d.lag(i))
    cs = sp.symbols(f"c0:{k}")
    Np = sum(c * tau**i for i, c in enumerate(cs))
    ops = d.etd_adams_operators(k)
    update = closed_form(sum(ops[j] * Np.subs(tau, nodes[j]) for j in range(k))).subs(z, h * lam)
    exact = sp.integrate(sp.exp((h - tau) * lam) * Np, (tau, 0, h), conds="none")
    assert sp.simplify(update - exact) == 0


# --- numeric variable-step order on y' = −y + N(t) (pure quadrature: N independent of y)
def _phi_num(k, x):
    return sum(x**j / math.factorial(j + k) for j in range(25))  # |x| < 1 here


@lru_cache(maxsize=None)
def _weights_num(k, dpm=False):
    """[(j, m, coef(h, h1, ...))]; ``dpm``: the published DPM-Solver++(3M) coefficient hφ3 instead of 2hφ3."""
    out = []
    for j, terms in d.etd_adams_weights(k).items():
        for coef, m in terms:
            if dpm and m == 3:
                coef = coef / 2
            out.append((j, m, sp.lambdify((h, *d.H_LAGS[:k - 1]), coef, "math")))
    return out


LAM = -1.0


def _y_exact(t):
    return math.sin(2 * t) + math.exp(0.5 * t)


def _N(t):
    return 2 * math.cos(2 * t) + 0.5 * math.exp(0.5 * t) - LAM * _y_exact(t)


def _etd_adams_error(k, n, dpm=False, T=2.0):
    t = [T * (i / n) ** 1.5 for i in range(n + 1)]  # non-uniform grid, step ratios up to 1.8
    w = _weights_num(k, dpm)
    Nv = [_N(ti) for ti in t]
    y = _y_exact(t[k - 1])  # exact starting values
    for i in range(k - 1, n):
        hh = t[i + 1] - t[i]
        lags = [t[i - l] - t[i - l - 1] for l in range(k - 1)]
        y = _phi_num(0, LAM * hh) * y + sum(f(hh, *lags) * _phi_num(m, LAM * hh) * Nv[i - j] for j, m, f in w)
    return abs(y - _y_exact(T))


def _etd_order(k, dpm=False):
    ns = np.array([20, 40, 80, 160, 320])
    err = [_etd_adams_error(k, int(n), dpm) for n in ns]
    return -np.polyfit(np.log(ns), np.log(err), 1)[0], np.log2(np.array(err[:-1]) / err[1:])


@pytest.mark.parametrize("k", [2, 3, 4])
def test_etd_adams_variable_step_order(k):
    slope, local = _etd_order(k)
    assert slope >= k - 0.25, (slope, local)
    assert local[-1] >= k - 0.1, local


def test_dpm_solver_3m_coefficient_is_order_two():
    """methods.md §1.6: hφ3 (published DPM-Solver++ 3M) instead of 2hφ3 on d2 gives order 2, not 3."""
    slope, local = _etd_order(3, dpm=True)
    assert slope < 2.4 and abs(local[-1] - 2) < 0.15, (slope, local)
