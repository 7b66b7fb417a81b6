"""Symbolic order-condition checker for every tableau family of :mod:`.tableau`.

:func:`.families.check_order` proves (or refutes) the order a tableau claims and names the first
violated condition, through the tableau family's ``check_*`` function below.  The ``*_conditions``
functions return the conditions themselves as ``(label, expr)`` pairs, ``expr`` a sympy expression
that must vanish, for symbolic coefficient arrays (a module that *solves* for coefficients uses them).

* Explicit RK: one condition Φ(t) = 1/γ(t) per rooted tree (Butcher 2008 §31; HNW I §II.2).
* Exponential RK on ``y' = Ly + N(y)``: (a) classical order — bicoloured trees (L-vertices linear,
  see :mod:`.trees`), weights from the z-power series of a_ij(z), b_i(z); (b) stiff order —
  Hochbruck & Ostermann 2005 (SINUM 43:1069), Table 2.1, conditions 1–9 (methods.md §1.3), the
  J/K conditions in strong form (every function position an independent variable), the top order
  allowed in the weakened form (see :func:`_check_stiff`).
* Rosenbrock-W: W-trees (HW II §IV.7; methods.md §4.3) for any W, and f-trees with W = ∂f/∂y.
* RK-TASE: the same W-trees with ``k_i = Σ_m t_im (hW)^m h f(Y_i)`` (methods.md §3.4).
* Exponential Rosenbrock (exact Jacobian J): Hochbruck, Ostermann & Schweitzer 2009 (SINUM 47:786),
  Table 4.1, stiff conditions up to order 5 (J-condition in strong form).
* SRA: Rößler's 8 conditions for strong order 1.5, additive noise (Rößler 2010, SINUM 48:922;
  StochasticDiffEq ``checkSRAOrder``; methods.md §5.3).

Entries are handled exactly when rational (Fractions), to :data:`.tableau.FLOAT_TOL` when a
tableau has Floats, and with sympy (numeric screen, then ``simplify``) for exact irrationals.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from itertools import product
from dataclasses import replace
from math import factorial

import sympy as sp

from .phi import phi, phi_poly, series_in_z, z
from .tableau import FLOAT_TOL
from .trees import (L, W, exact_weight, exp_weights, formula, rk_weights, rosenbrock_weights, size, tase_weights,
                    tree_str, trees, trees_upto, w_weights)

#: highest order each check supports (the default checks claimed order + 1, capped here)
MAX_ORDER = {"classical": 8, "exponential": 6, "stiff": 4, "exprb": 5, "W": 5, "rosenbrock": 6, "tase": 5, "adams": 8}
#: total degree to which the stiff conditions are compared as power series in z (or z1, z2, z3)
STIFF_DEGREE = 8
z1, z2, z3 = sp.symbols("z1 z2 z3")


@dataclass(frozen=True)
class OrderReport:
    """``order``: the highest order all of whose conditions hold (checked up to the order asked);
    ``violation``: the first violated condition, or None; ``kind``: "classical", "stiff", "W",
    "rosenbrock", "sra-strong"; ``notes``: remarks (e.g. conditions that hold only weakly)."""

    order: int | float
    violation: str | None
    kind: str
    notes: tuple = ()


# ------------------------------------------------------------------------------ numbers
def _converter(values):
    """Entries as Fractions (all rational), floats (any Float) or sympy numbers (exact irrationals)."""
    vals = [sp.sympify(v) for v in values]
    if all(v.is_Rational for v in vals):
        return lambda v: Fraction(int(sp.sympify(v).p), int(sp.sympify(v).q))
    if any(v.has(sp.Float) for v in vals):
        return lambda v: float(sp.sympify(v))
    return sp.sympify


def _is_zero(x) -> bool:
    if isinstance(x, (int, Fraction)):
        return x == 0
    if isinstance(x, float):
        return abs(x) <= FLOAT_TOL
    x = sp.sympify(x)
    if x.has(sp.Float):
        return abs(float(x)) <= FLOAT_TOL
    if abs(sp.N(x, 30)) > 1e-20:
        return False
    return sp.expand(x) == 0 or sp.simplify(x) == 0


def _show(x) -> str:
    if isinstance(x, float):
        return f"{x:.6g}"
    if isinstance(x, (int, Fraction)) or sp.sympify(x).is_Rational:
        return str(x)
    return str(sp.N(x, 8))


def _rows(M):
    return [[M[i, j] for j in range(M.cols)] for i in range(M.rows)] if isinstance(M, sp.MatrixBase) else \
        [list(row) for row in M]


def _max_order(claimed, cap, max_order):
    if max_order is None:
        return min((claimed or 0) + 1, cap)
    if max_order > cap:
        raise ValueError(f"order conditions are implemented up to order {cap} here, not {max_order}")
    return max_order


@lru_cache(maxsize=4096)
def z_coefficients(expr, n: int) -> tuple:
    """The z^0..z^n coefficients of ``expr``, a polynomial in φ_k(c z) / resolvent(a z) atoms:
    Fractions (floats for Float weights) via φ_k(cz) = Σ c^j z^j/(j+k)!, (1 − az)^{-1} = Σ a^j z^j;
    exact sympy coefficients when the weights are symbolic."""
    try:
        terms = phi_poly(expr)
    except ValueError:
        ser = sp.expand(series_in_z(expr, n))
        return tuple(ser.coeff(z, m) for m in range(n + 1))
    out = [0] * (n + 1)
    for weight, atoms in terms:
        s = [weight] + [0] * n
        for atom in atoms:
            if atom[0] == "phi":
                a = [atom[2] ** j * Fraction(1, factorial(j + atom[1])) for j in range(n + 1)]
            else:
                a = [atom[1] ** j for j in range(n + 1)]
            s = [sum((s[i] * a[m - i] for i in range(m + 1)), 0) for m in range(n + 1)]
        out = [x + y for x, y in zip(out, s)]
    return tuple(out)


# ----------------------------------------------------------------------- tree-based checks
def _check_trees(weight, family, fmt, max_order, kind):
    """Φ(t) against the exact flow, tree by tree, order by order; the first failure ends it."""
    for q in range(1, max_order + 1):
        for t in trees(q, family):
            val, ref = weight(t), exact_weight(t)
            if not _is_zero(val - ref):
                msg = f"order {q} tree {tree_str(t)}: {formula(t, fmt)} = {_show(val)} != {_show(ref)}"
                return OrderReport(q - 1, msg, kind)
    return OrderReport(max_order, None, kind)


def _check_rk(A, b, c, claimed, max_order):
    conv = _converter([*b, *c, *(x for r in A for x in r)])
    weight = rk_weights(_numeric(conv, A), [conv(x) for x in b], [conv(x) for x in c])
    return _check_trees(weight, None, "rk", _max_order(claimed, MAX_ORDER["classical"], max_order), "classical")


def _conditions(weight, family, fmt, order):
    out = []
    for t in trees_upto(order, family):
        ref = exact_weight(t)
        ref = sp.Rational(ref.numerator, ref.denominator)
        out.append((f"order {size(t)} tree {tree_str(t)}: {formula(t, fmt)} = {ref}", sp.sympify(weight(t)) - ref))
    return out


def rk_conditions(A, b, c=None, order: int = 4):
    """Butcher's conditions Φ(t) − 1/γ(t) for all trees up to ``order`` (17 up to order 5)."""
    c = list(c) if c is not None else None
    return _conditions(rk_weights(_rows(A), list(b), c), None, "rk", order)


def w_conditions(alpha, gamma, b, order: int = 3):
    """W-method conditions (any W; HW II §IV.7, methods.md §4.3): Φ(t) = 1/γ(t) on f-trees, 0 on W-trees."""
    return _conditions(w_weights(_rows(alpha), _rows(gamma), list(b)), W, "w", order)


def rosenbrock_conditions(alpha, gamma, b, order: int = 4):
    """Rosenbrock conditions (W = ∂f/∂y; HW II §IV.7): Φ(t) − 1/γ(t) on f-trees."""
    return _conditions(rosenbrock_weights(_rows(alpha), _rows(gamma), list(b)), None, "rosenbrock", order)


def _tase_series(T, n):
    return [list(Ti) if isinstance(Ti, (list, tuple)) else list(z_coefficients(sp.sympify(Ti), n)) for Ti in T]


def tase_conditions(A, b, T, order: int = 3, exact_jacobian: bool = False):
    """RK-TASE W-order conditions; ``T[i]``: the stage operator (polynomial in ``resolvent(a z)``)
    or its coefficient list t_i0, t_i1, … (T_i(x) = Σ t_im x^m, x = hW)."""
    weight = tase_weights(_rows(A), _tase_series(T, order), list(b), exact_jacobian)
    return _conditions(weight, None if exact_jacobian else W, "tase-J" if exact_jacobian else "tase", order)


def _exp_series(A, b, n):
    return ([[z_coefficients(sp.sympify(a), n) for a in row] for row in _rows(A)],
            [z_coefficients(sp.sympify(x), n) for x in b])


def exp_conditions(A, b, c, order: int = 4):
    """Classical (non-stiff) conditions of an exponential RK method on ``y' = Ly + N`` (bicoloured
    trees, :mod:`.trees`); A, b: expressions in φ atoms of z (symbolic weights allowed)."""
    Aser, Bser = _exp_series(A, b, order)
    return _conditions(exp_weights(Aser, Bser, list(c)), L, "exp", order)


# ------------------------------------------------------- stiff conditions (HO 2005, Table 2.1)
def _stiff_table(A, b, c, order):
    """[(order, number, label, terms)], ``terms`` = [(coef, (f_1, f_2, …))] meaning Σ coef Π f_k(z_k)
    ≡ 0 with the f_k functions of z placed at independent variables z_k: the strong form, in which
    the arbitrary bounded operators J, K of HO2005 separate the function positions."""
    s, A, b, c = len(b), _rows(A), [sp.sympify(x) for x in b], [sp.sympify(x) for x in c]
    inv = lambda j: sp.Rational(1, factorial(j))
    psi = lambda j: phi(j, z) - sum(b[k] * c[k] ** (j - 1) for k in range(s)) * inv(j - 1)
    psi_i = lambda j, i: c[i] ** j * phi(j, c[i] * z) - sum(A[i][k] * c[k] ** (j - 1) for k in range(s)) * inv(j - 1)
    table = [(1, 1, "ψ_1(Z) = 0", [(1, (psi(1),))]), (2, 2, "ψ_2(Z) = 0", [(1, (psi(2),))])]
    table += [(2, 3, f"ψ_1,{i + 1}(Z) = 0", [(1, (psi_i(1, i),))]) for i in range(s)]
    table += [(3, 4, "ψ_3(Z) = 0", [(1, (psi(3),))]),
              (3, 5, "Σ_i b_i(Z) J ψ_2,i(Z) = 0", [(1, (b[i], psi_i(2, i))) for i in range(s)]),
              (4, 6, "ψ_4(Z) = 0", [(1, (psi(4),))]),
              (4, 7, "Σ_i b_i(Z) J ψ_3,i(Z) = 0", [(1, (b[i], psi_i(3, i))) for i in range(s)]),
              (4, 8, "Σ_i b_i(Z) J Σ_j a_ij(Z) J ψ_2,j(Z) = 0",
               [(1, (b[i], A[i][j], psi_i(2, j))) for i in range(s) for j in range(s) if A[i][j] != 0]),
              (4, 9, "Σ_i b_i(Z) c_i K ψ_2,i(Z) = 0", [(c[i], (b[i], psi_i(2, i))) for i in range(s)])]
    return [row for row in table if row[0] <= order]


def stiff_conditions(A, b, c, order: int = 4):
    """HO2005 Table 2.1 in strong form as ``(label, expr)``: expr ≡ 0 as a function of z (conditions
    1–4, 6) or of independent z1, z2 (5, 7, 9), z1, z2, z3 (8)."""
    out = []
    for q, k, label, terms in _stiff_table(A, b, c, order):
        expr = 0
        for coef, fs in terms:
            zs = (z,) if len(fs) == 1 else (z1, z2, z3)
            expr += coef * sp.Mul(*(sp.sympify(f).xreplace({z: v}) for f, v in zip(fs, zs)))
        out.append((f"stiff order {q}, condition {k}: {label}", expr))
    return out


def _first_nonzero(terms, weak, degree=STIFF_DEGREE):
    """The lowest-degree nonzero coefficient of Σ coef Π f_k(z_k) (total degree ≤ ``degree``, exact) as
    (exponents, value), or None.  ``weak``: the outermost function (b_i, or ψ_j itself) taken at 0."""
    acc = {}
    for coef, fs in terms:
        coef = _converter([coef])(coef)
        sers = [z_coefficients(sp.sympify(f), degree) for f in fs]
        if weak:
            sers[0] = sers[0][:1]
        for exps in product(*(range(len(ser)) for ser in sers)):
            if sum(exps) <= degree:
                v = coef
                for ser, e in zip(sers, exps):
                    v = v * ser[e]
                acc[exps] = acc.get(exps, 0) + v
    for exps in sorted(acc, key=lambda e: (sum(e), e)):
        if not _is_zero(acc[exps]):
            return exps, acc[exps]
    return None


def _monomial(exps) -> str:
    """z^k, or z1^a·z2^b·… for conditions in independent variables."""
    return f"z^{exps[0]}" if len(exps) == 1 else "·".join(f"z{j + 1}^{e}" for j, e in enumerate(exps))


def _check_stiff(tab, max_order, weakened):
    """Stiff order p: the conditions of order < p in strong form; those of order p (except the stage
    conditions 3) may hold in the weakened form, the outermost functions of Z taken at Z = 0
    (b_i(Z) -> b_i(0); ψ_j(Z) -> ψ_j(0)).  This is our reading of HO2005's weakened conditions: it is
    what lets their 5-stage method (eq. 5.19; its b_i are built from φ_1..φ_3, so ψ_4 ≠ 0) reach
    order 4, and the defect h^p (f(Z) − f(0)) = h^p Z f̃(Z) costs only a factor |log h| under
    parabolic smoothing.  A weakly reached p is final.  ``weakened=False``: strong form only."""
    table = _stiff_table(tab.A, tab.b, tab.c, max_order)
    weak_ones = []
    for q in range(1, max_order + 1):
        for _, k, label, terms in (row for row in table if row[0] == q):
            bad = _first_nonzero(terms, weak=False)
            if bad is None:
                continue
            if weakened and k != 3 and _first_nonzero(terms, weak=True) is None:
                weak_ones.append(k)
                continue
            exps, val = bad
            mono = _monomial(exps)
            msg = f"stiff order {q}, condition {k}: {label} fails: coefficient of {mono} is {_show(val)}"
            return OrderReport(q - 1, msg, "stiff")
        if weak_ones:
            msg = None if q == max_order else \
                f"stiff order {q + 1} needs condition(s) {', '.join(map(str, weak_ones))} in strong form"
            return OrderReport(q, msg, "stiff", _weak_notes(weak_ones))
    return OrderReport(max_order, None, "stiff")


def _weak_notes(ks):
    return tuple(f"condition {k} holds only in the weakened form (outer functions of Z at Z = 0)" for k in ks)


# -------------------------------------------------------------------------------- SRA
# --------------------------------------- exponential Rosenbrock (HOS 2009, SINUM 47:786, Table 4.1)
def _exprb_table(A, b, c, order):
    """Rows as in :func:`_stiff_table`.  D_i = g(U_i) − g(y_n) = O(h²) because g = F − J· has zero
    Jacobian at y_n, so order 2 is automatic and the conditions start at order 3:
    ψ_q(Z) = Σ_i b_i(Z) c_i^(q−1) − (q−1)! φ_q(Z) = 0 (q = 3, 4, 5) and, at order 5,
    Σ_i b_i(Z) J ψ_3,i(Z) = 0 with ψ_3,i = Σ_k a_ik(Z) c_k²/2 − c_i³ φ_3(c_i Z)."""
    s, A, b, c = len(b), _rows(A), [sp.sympify(x) for x in b], [sp.sympify(x) for x in c]
    table = [(q, q - 2, f"Σ_i b_i(Z) c_i^{q - 1} = {factorial(q - 1)} φ_{q}(Z)",
              [(1, (sum(b[i] * c[i] ** (q - 1) for i in range(s)) - factorial(q - 1) * phi(q, z),))])
             for q in (3, 4, 5)]
    psi3 = [sum(A[i][k] * c[k] ** 2 for k in range(s)) / 2 - c[i] ** 3 * phi(3, c[i] * z) for i in range(s)]
    table.append((5, 4, "Σ_i b_i(Z) J ψ_3,i(Z) = 0", [(1, (b[i], psi3[i])) for i in range(s)]))
    return [row for row in table if row[0] <= order]


def exprb_conditions(A, b, c, order: int = 4):
    """HOS2009 Table 4.1 as ``(label, expr)`` (expr ≡ 0 in z, or in independent z1, z2)."""
    out = []
    for q, k, label, terms in _exprb_table(A, b, c, order):
        zs = lambda fs: (z,) if len(fs) == 1 else (z1, z2)
        expr = sum(coef * sp.Mul(*(sp.sympify(f).xreplace({z: v}) for f, v in zip(fs, zs(fs)))) for coef, fs in terms)
        out.append((f"exponential Rosenbrock order {q}, condition {k}: {label}", expr))
    return out


def _check_exprb(A, b, c, max_order):
    for q, k, label, terms in _exprb_table(A, b, c, max_order):
        bad = _first_nonzero(terms, weak=False)
        if bad is not None:
            exps, val = bad
            mono = _monomial(exps)
            return OrderReport(q - 1, f"exponential Rosenbrock order {q}, condition {k}: {label} fails: "
                                      f"coefficient of {mono} is {_show(val)}", "stiff")
    return OrderReport(max_order, None, "stiff")


def sra_conditions(A0, B0, alpha, beta1, beta2, c1):
    """Rößler's strong order 1.5 conditions for additive noise (methods.md §5.3; StochasticDiffEq
    ``checkSRAOrder``), as (label, expr) with expr = 0."""
    A0, B0 = _rows(A0), _rows(B0)
    s = len(alpha)
    A0e, B0e = [sum(r, 0) for r in A0], [sum(r, 0) for r in B0]
    dot = lambda u, v: sum((x * y for x, y in zip(u, v)), 0)
    half, three_half = sp.Rational(1, 2), sp.Rational(3, 2)
    return [("1: αᵀe = 1", dot(alpha, [1] * s) - 1), ("2: β1ᵀe = 1", dot(beta1, [1] * s) - 1),
            ("3: β2ᵀe = 0", dot(beta2, [1] * s)), ("4: αᵀB0e = 1", dot(alpha, B0e) - 1),
            ("5: αᵀA0e = 1/2", dot(alpha, A0e) - half),
            ("6: αᵀ(B0e)² = 3/2", dot(alpha, [x * x for x in B0e]) - three_half),
            ("7: β1ᵀc1 = 1", dot(beta1, c1) - 1), ("8: β2ᵀc1 = -1", dot(beta2, c1) + 1)]


def _check_sra(tab):
    """Strong order 1.5 when all 8 hold; 1.0 when 1–3 hold (drift consistent, ΔW weights sum to 1, the
    I_(1,0) weights to 0 — [derived]: otherwise the local error has an O(h^½) term); else 0."""
    conv = _converter([*tab.alpha, *tab.beta1, *tab.beta2, *tab.c1, *(x for r in (*tab.A0, *tab.B0) for x in r)])
    arrays = [[[conv(x) for x in r] for r in M] for M in (tab.A0, tab.B0)]
    vecs = [[conv(x) for x in v] for v in (tab.alpha, tab.beta1, tab.beta2, tab.c1)]
    for k, (label, val) in enumerate(sra_conditions(*arrays, *vecs)):
        if not _is_zero(val):
            order = 1.0 if k >= 3 else 0
            return OrderReport(order, f"SRA condition {label} fails: residual {_show(val)}", "sra-strong")
    return OrderReport(1.5, None, "sra-strong")


# -------------------------------------------------------------------- one check per family
def _numeric(conv, M):
    return [[conv(x) for x in row] for row in M]


def check_rk(tab, max_order=None, *, embedded=False, dense=False) -> OrderReport:
    """ButcherTableau: classical order (``embedded=True``: of ``bhat``; ``dense=True``: of the
    continuous extension b_i(θ))."""
    if dense:
        return _check_dense(tab, _max_order(tab.dense_order, MAX_ORDER["classical"], max_order))
    b, claimed = _weights_of(tab, embedded)
    return _check_rk(tab.A, b, tab.c, claimed, max_order)


def check_exponential(tab, max_order=None, *, stiff=True, weakened=True, embedded=False) -> OrderReport:
    """ExponentialTableau: stiff order (HO2005; ``weakened=False`` for the strong form only), or
    with ``stiff=False`` the classical order on ``y' = Ly + N``; ``embedded=True``: of ``bhat``."""
    if embedded:
        tab = _embedded_as_main(tab)
    if stiff:
        return _check_stiff(tab, _max_order(tab.stiff_order, MAX_ORDER["stiff"], max_order), weakened)
    p = _max_order(tab.order, MAX_ORDER["exponential"], max_order)
    Aser, Bser = _exp_series(tab.A, tab.b, p)
    conv = _converter(tab.c)
    return _check_trees(exp_weights(Aser, Bser, [conv(x) for x in tab.c]), L, "exp", p, "classical")


def _embedded_as_main(tab):
    """The embedded method (A, bhat, c) of an exponential pair, claiming the embedded order."""
    if tab.bhat is None:
        raise ValueError(f"{tab.name}: no embedded weights bhat")
    p = tab.embedded_order
    return replace(tab, b=tab.bhat, bhat=None, embedded_order=None, order=p, stiff_order=p)


def check_rosenbrock(tab, max_order=None, *, embedded=False, exact_jacobian=False) -> OrderReport:
    """RosenbrockTableau: W-order; ``exact_jacobian=True``: Rosenbrock order; ``embedded=True``: of ``bhat``."""
    b, claimed = _weights_of(tab, embedded)
    conv = _converter([*b, *(x for M in (tab.alpha, tab.gamma) for r in M for x in r)])
    args = (_numeric(conv, tab.alpha), _numeric(conv, tab.gamma), [conv(x) for x in b])
    if exact_jacobian:
        claimed = claimed if embedded else (tab.rosenbrock_order or tab.order)
        p = _max_order(claimed, MAX_ORDER["rosenbrock"], max_order)
        return _check_trees(rosenbrock_weights(*args), None, "rosenbrock", p, "rosenbrock")
    return _check_trees(w_weights(*args), W, "w", _max_order(claimed, MAX_ORDER["W"], max_order), "W")


def check_tase(tab, max_order=None, *, exact_jacobian=False) -> OrderReport:
    """TASETableau: W-order (``exact_jacobian=True``: with W = ∂f/∂y)."""
    p = _max_order(tab.order, MAX_ORDER["rosenbrock" if exact_jacobian else "tase"], max_order)
    rk = tab.rk
    conv = _converter([*rk.b, *(x for r in rk.A for x in r)])
    weight = tase_weights(_numeric(conv, rk.A), _tase_series(tab.operators, p), [conv(x) for x in rk.b],
                          exact_jacobian)
    if exact_jacobian:
        return _check_trees(weight, None, "tase-J", p, "rosenbrock")
    return _check_trees(weight, W, "tase", p, "W")


def check_exprb(tab, max_order=None, *, embedded=False) -> OrderReport:
    """ExpRosenbrockTableau: stiff order with the exact Jacobian (``embedded=True``: of ``bhat``)."""
    b, claimed = _weights_of(tab, embedded)
    return _check_exprb(tab.A, b, tab.c, _max_order(claimed, MAX_ORDER["exprb"], max_order))


def check_adams(tab, max_order=None) -> OrderReport:
    """AdamsTableau: stiff order of an exponential Adams method (exact for polynomial N)."""
    return _check_adams(tab, _max_order(tab.order, MAX_ORDER["adams"], max_order))


def check_sra(tab, max_order=None, *, deterministic=False) -> OrderReport:
    """SRATableau: strong order for additive noise (1.5 / 1.0 / 0); ``deterministic=True``: the
    classical order of (A0, α, c0)."""
    if deterministic:
        return _check_rk(tab.A0, tab.alpha, tab.c0, tab.order, max_order)
    return _check_sra(tab)


def _check_dense(tab, max_order):
    """Continuous extension y(t + θh) = y + h Σ b_i(θ) K_i of order p: Σ_i b_i(θ) Φ_i(t) = θ^|t|/γ(t)
    for every tree up to p, as polynomials in θ (HNW I §II.6, Thm 6.1).  Φ is linear in the weights,
    so the θ^k coefficients w_·k give Σ_i w_ik Φ_i(t) = [k = |t|]/γ(t)."""
    if tab.dense is None:
        raise ValueError(f"{tab.name}: no continuous extension")
    conv = _converter([*(x for r in tab.dense for x in r), *tab.c, *(x for r in tab.A for x in r)])
    A, c = _numeric(conv, tab.A), [conv(x) for x in tab.c]
    degree = len(tab.dense[0])
    weights = [rk_weights(A, [conv(row[k]) for row in tab.dense], c) for k in range(degree)]
    for q in range(1, max_order + 1):
        for t in trees(q, None):
            for k, weight in enumerate(weights):
                ref = exact_weight(t) if k + 1 == q else 0
                if not _is_zero(weight(t) - ref):
                    return OrderReport(q - 1, f"order {q} tree {tree_str(t)}: the θ^{k + 1} coefficient of "
                                              f"Σ b_i(θ) Φ_i = {_show(weight(t))} != {_show(ref)}", "dense")
    return OrderReport(max_order, None, "dense")


def _check_adams(tab, max_order):
    """Exponential Adams (methods.md §1.6): the update equals ∫_0^h e^{(h−τ)L} P(t_n + τ) dτ for every
    polynomial P of degree < p, as an identity in h, h1, h2, .. and the φ_m(z) (variable steps).
    For N(t) = (t − t_n)^j the exact increment is j! h^{j+1} φ_{j+1}(hL); N_{n−i} is (−s_i)^j with
    s_i = h1 + .. + hi.  Exactness with φ-weights holds uniformly in hL, so the order is a stiff order."""
    from .scheme import h, lag
    s = [sp.Integer(0)]
    for i in range(1, tab.steps):
        s.append(s[-1] + lag(i))
    for j in range(max_order):
        got = sum(coef * phi(m, z) * (-s[i]) ** j for i, terms in tab.weights.items() for coef, m in terms)
        diff = sp.expand(got - factorial(j) * h ** (j + 1) * phi(j + 1, z))
        atoms = sorted(diff.atoms(phi), key=sp.default_sort_key)
        if diff != 0 and any(sp.cancel(c) != 0 for c in sp.Poly(diff, *atoms).coeffs()):
            return OrderReport(j, f"N(t) = (t − t_n)^{j}: Σ_i w_i(hL) (t_(n−i) − t_n)^{j} != {j}! h^{j + 1} "
                                  f"φ_{j + 1}(hL)", "stiff")
    return OrderReport(max_order, None, "stiff")


def _weights_of(tab, embedded):
    if not embedded:
        return tab.b, tab.order
    if tab.bhat is None:
        raise ValueError(f"{tab.name}: no embedded weights bhat")
    return tab.bhat, tab.embedded_order
