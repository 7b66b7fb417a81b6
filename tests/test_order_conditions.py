"""The order-condition checker (codegen/order_conditions.py, codegen/trees.py) and, through it,
every coefficient table of codegen/tables.py."""
from math import factorial

import pytest
import sympy as sp

from sdekit.codegen import tables as T
from sdekit.codegen.families import check_order
from sdekit.codegen.order_conditions import (OrderReport, exp_conditions, exprb_conditions, rk_conditions,
                                             rosenbrock_conditions, sra_conditions, stiff_conditions,
                                             tase_conditions, w_conditions)
from sdekit.codegen.phi import phi, resolvent, z
from sdekit.codegen.tableau import ButcherTableau, ExponentialTableau, TASETableau
from sdekit.codegen.trees import W, density, formula, symmetry, tree_str, trees

R = sp.Rational
RK_TABLES = [T.EULER, T.HEUN, T.MIDPOINT, T.RALSTON3, T.RK4, T.DP5, T.TSIT5]
EXP_TABLES = [T.ETD1, T.LAWSON_EULER, T.ETDRK2, T.ETDRK3, T.ETDRK4, T.KROGSTAD, T.HOCHOST4]
ROS_TABLES = [T.ROSENBROCK23, T.ROS34PW2, T.ROS34PW3]
SRA_TABLES = [T.SRA1, T.SRA3, T.SOSRA]
names = lambda tabs: [t.name for t in tabs]


def replace(tab, **changes):
    """A copy of a tableau with some fields changed (validated again on construction)."""
    fields = {k: getattr(tab, k) for k in tab.__dataclass_fields__}
    return type(tab)(**{**fields, **changes})


def set_entry(M, i, j, value):
    return tuple(tuple(value if (r, k) == (i, j) else x for k, x in enumerate(row)) for r, row in enumerate(M))


# --------------------------------------------------------------------------------- trees
def test_tree_counts_match_the_textbook():
    assert [len(trees(n)) for n in range(1, 7)] == [1, 1, 2, 4, 9, 20]   # OEIS A000081
    assert sum(len(trees(n)) for n in range(1, 6)) == 17                # Butcher: 17 conditions for order 5
    a, b = sp.Matrix(5, 5, lambda i, j: sp.Symbol(f"a{i}{j}") if j < i else 0), sp.symbols("b:5")
    assert len(rk_conditions(a, b, order=5)) == 17
    # W-trees (W-vertices with one child): 1, 3, 8, 21 conditions up to order 1..4 (HW II §IV.7)
    assert [sum(len(trees(q, W)) for q in range(1, p + 1)) for p in range(1, 5)] == [1, 3, 8, 21]


@pytest.mark.parametrize("n", range(1, 7))
def test_density_and_symmetry(n):
    # Σ_{|t|=n} n!/(σ(t)γ(t)) counts the monotonically labelled trees: (n-1)!  (HNW I §II.2)
    assert sum(factorial(n) // (symmetry(t) * density(t)) for t in trees(n)) == factorial(n - 1)
    assert all(factorial(n) % (symmetry(t) * density(t)) == 0 for t in trees(n))


def test_w_conditions_are_those_of_methods_md():
    alpha = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"al{i}{j}") if j < i else 0)
    gamma = sp.Matrix(3, 3, lambda i, j: sp.Symbol(f"g{i}{j}") if j <= i else 0)
    conds = w_conditions(alpha, gamma, sp.symbols("b:3"), order=3)
    shown = {label.split(": ")[1] for label, _ in conds}
    assert shown == {"bᵀ1 = 1", "bᵀa = 1/2", "bᵀg = 0", "bᵀa² = 1/3", "bᵀαa = 1/6", "bᵀαg = 0", "bᵀΓa = 0",
                     "bᵀΓg = 0"}
    ros = {label.split(": ")[1] for label, _ in rosenbrock_conditions(alpha, gamma, sp.symbols("b:3"), 4)}
    assert {"bᵀa³ = 1/4", "bᵀ(a∘α(a+g)) = 1/8", "bᵀβa² = 1/12", "bᵀββ(a+g) = 1/24"} <= ros


def test_symbolic_rk_conditions():
    a10, b0, b1 = sp.symbols("a10 b0 b1")
    conds = dict(rk_conditions([[0, 0], [a10, 0]], [b0, b1], order=2))
    assert list(conds.values()) == [b0 + b1 - 1, a10 * b1 - R(1, 2)]
    sol = sp.solve(list(conds.values()), [b0, b1], dict=True)[0]
    assert sp.simplify(sol[b1] - 1 / (2 * a10)) == 0


# ---------------------------------------------------------------------------- explicit RK
@pytest.mark.parametrize("tab", RK_TABLES, ids=names(RK_TABLES))
def test_rk_tables_have_their_order_and_not_one_more(tab):
    rep = check_order(tab)
    assert isinstance(rep, OrderReport) and rep.kind == "classical"
    assert rep.order == tab.order and rep.violation.startswith(f"order {tab.order + 1} tree")
    assert check_order(tab, max_order=tab.order) == OrderReport(tab.order, None, "classical")


@pytest.mark.parametrize("tab", [T.HEUN, T.DP5, T.TSIT5], ids=["Heun", "DP5", "Tsit5"])
def test_embedded_pairs(tab):
    rep = check_order(tab, embedded=True)
    assert rep.order == tab.embedded_order and rep.violation is not None


def test_perturbed_rk4_names_the_first_violated_tree():
    eps = R(1, 1000)
    A = set_entry(set_entry(T.RK4.A, 2, 1, R(1, 2) + eps), 2, 0, -eps)   # row sum kept = c_3
    rep = check_order(replace(T.RK4, A=A))
    assert rep.order == 2
    assert rep.violation == f"order 3 tree [[τ]]: bᵀAc = {R(1, 6) + eps / 6} != 1/6"


def test_perturbed_float_tableau_fails():
    b = list(T.TSIT5.b)
    b[1] += sp.Float("1e-9")
    b[2] -= sp.Float("1e-9")
    rep = check_order(replace(T.TSIT5, b=tuple(b), dense=None, dense_order=None), max_order=5)   # b_i(1) != b_i now
    assert rep.order == 1 and rep.violation.startswith("order 2 tree [τ]")


# ----------------------------------------------------------------------------- exponential
CLASSICAL = {"ETD1": 1, "LawsonEuler": 1, "ETDRK2": 2, "ETDRK3": 3, "ETDRK4": 4, "Krogstad": 4, "HochOst4": 4}
STIFF = {"ETD1": 1, "LawsonEuler": 1, "ETDRK2": 2, "ETDRK3": 2, "ETDRK4": 2, "Krogstad": 3, "HochOst4": 4}
STRONG = {**STIFF, "LawsonEuler": 0, "HochOst4": 3}   # no weakened form allowed


@pytest.mark.parametrize("tab", EXP_TABLES, ids=names(EXP_TABLES))
def test_exponential_classical_order(tab):
    rep = check_order(tab, stiff=False)
    assert rep.kind == "classical" and rep.order == CLASSICAL[tab.name] == tab.order
    assert rep.violation.startswith(f"order {tab.order + 1} tree")


@pytest.mark.parametrize("tab", EXP_TABLES, ids=names(EXP_TABLES))
def test_exponential_stiff_order(tab):
    rep = check_order(tab)
    assert rep.kind == "stiff" and rep.order == STIFF[tab.name] == tab.stiff_order
    assert (rep.violation is None) == (tab.stiff_order == 4)
    assert check_order(tab, weakened=False).order == STRONG[tab.name]


def test_stiff_violations_are_named():
    assert check_order(T.ETDRK4).violation.startswith("stiff order 3, condition 5: Σ_i b_i(Z) J ψ_2,i(Z) = 0")
    assert check_order(T.ETDRK3).violation.startswith("stiff order 3, condition 5:")
    assert check_order(T.KROGSTAD).violation.startswith("stiff order 4, condition 7:")
    assert check_order(T.ETDRK2).violation.startswith("stiff order 3, condition 4: ψ_3(Z) = 0")
    assert check_order(T.LAWSON_EULER, weakened=False).violation.startswith("stiff order 1, condition 1:")
    # HochOst4 meets conditions 6 (ψ_4(0) = 0 only: its b_i are built from φ_1..φ_3) and 7 weakly
    notes = check_order(T.HOCHOST4).notes
    assert len(notes) == 2 and notes[0].startswith("condition 6") and notes[1].startswith("condition 7")


# ------------------------------------------------------------------- exponential Rosenbrock
EXPRB_TABLES = [T.EXPRB32, T.EXPRB43]


@pytest.mark.parametrize("tab", EXPRB_TABLES, ids=names(EXPRB_TABLES))
def test_exprb_order_and_embedded(tab):
    rep = check_order(tab)
    assert rep.order == tab.order and rep.violation.startswith(f"exponential Rosenbrock order {tab.order + 1}")
    emb = check_order(tab, embedded=True)
    assert emb.order == tab.embedded_order and emb.violation.startswith(
        f"exponential Rosenbrock order {tab.embedded_order + 1}")


def test_exprb_conditions_solve_for_exprb43_weights():
    """With b_2, b_3 unknown polynomials in φ_3, φ_4, the order-4 conditions of HOS2009 Table 4.1
    determine exprb43's weights uniquely."""
    x = sp.symbols("x0:4")
    b = (0, x[0] * phi(3, z) + x[1] * phi(4, z), x[2] * phi(3, z) + x[3] * phi(4, z))
    eqs = []
    for _, expr in exprb_conditions(T.EXPRB43.A, b, T.EXPRB43.c, 4):
        expr = sp.expand(expr)
        eqs += [expr.coeff(phi(k, z)) for k in (3, 4)]
    sol = sp.solve(eqs, x, dict=True)
    assert sol == [{x[0]: 16, x[1]: -48, x[2]: -2, x[3]: 12}]


def test_perturbed_exprb32():
    tab = replace(T.EXPRB32, b=(0, 2 * phi(3, z) + phi(4, z) / 10))
    rep = check_order(tab)
    assert rep.order == 2 and rep.violation.startswith("exponential Rosenbrock order 3, condition 1")


def lawson(rk: ButcherTableau, order):
    c = rk.c
    A = [[rk.A[i][j] * phi(0, (c[i] - c[j]) * z) for j in range(rk.stages)] for i in range(rk.stages)]
    b = [rk.b[i] * phi(0, (1 - c[i]) * z) for i in range(rk.stages)]
    return ExponentialTableau(A=A, b=b, c=c, order=order, stiff_order=1, kind="lawson", name=f"Lawson-{rk.name}")


def test_lawson_rk4():
    rep = check_order(lawson(T.RK4, 4), stiff=False)
    assert rep.order == 4 and rep.violation.startswith("order 5 tree")
    rep = check_order(lawson(T.RK4, 4))
    assert rep.order == 1 and rep.notes and check_order(lawson(T.RK4, 4), weakened=False).order == 0


def test_perturbed_etdrk2():
    eps = R(1, 100)
    b = (phi(1, z) - (1 + eps) * phi(2, z), (1 + eps) * phi(2, z))
    tab = replace(T.ETDRK2, b=b)
    rep = check_order(tab, stiff=False)
    assert rep.order == 1 and rep.violation.startswith("order 2 tree [L]: b⁽⁰⁾ᵀc = 101/200 != 1/2")
    rep = check_order(tab)
    assert rep.order == 1
    assert rep.violation == "stiff order 2, condition 2: ψ_2(Z) = 0 fails: coefficient of z^0 is -1/200"


def test_symbolic_exponential_conditions():
    x = sp.Symbol("x")
    conds = dict(exp_conditions([[0, 0], [x * phi(1, z), 0]], T.ETDRK2.b, T.ETDRK2.c, 2))
    assert [e for e in conds.values() if e != 0] == [x / 2 - R(1, 2)]
    conds = stiff_conditions(T.ETDRK2.A, T.ETDRK2.b, T.ETDRK2.c, 3)
    assert sp.simplify(conds[-2][1] - (phi(3, z) - phi(2, z) / 2)) == 0           # ψ_3 = φ_3 − φ_2/2
    z1, z2 = sp.symbols("z1 z2")
    assert conds[-1][0].endswith("Σ_i b_i(Z) J ψ_2,i(Z) = 0") and conds[-1][1] == phi(2, z1) * phi(2, z2)


# ------------------------------------------------------------------------------ Rosenbrock-W
W_ORDER = {"Rosenbrock23": 2, "ROS34PW2": 3, "ROS34PW3": 3}
ROS_ORDER = {"Rosenbrock23": 2, "ROS34PW2": 3, "ROS34PW3": 4}


@pytest.mark.parametrize("tab", ROS_TABLES, ids=names(ROS_TABLES))
def test_rosenbrock_w_order(tab):
    rep = check_order(tab)
    assert rep.kind == "W" and rep.order == W_ORDER[tab.name] == tab.order
    assert rep.violation.startswith(f"order {tab.order + 1} tree")
    rep = check_order(tab, exact_jacobian=True)
    assert rep.kind == "rosenbrock" and rep.order == ROS_ORDER[tab.name]
    assert tab.rosenbrock_order in (None, rep.order)
    assert rep.violation is not None


@pytest.mark.parametrize("tab", ROS_TABLES, ids=names(ROS_TABLES))
def test_rosenbrock_embedded(tab):
    rep = check_order(tab, embedded=True)
    assert rep.order == tab.embedded_order == 2 and rep.violation.startswith("order 3 tree")


def test_rosenbrock23_companion_is_third_order_with_the_exact_jacobian():
    """ode23s's error estimate compares y+ = y + k2 with y + (k1 + 4k2 + k3)/6, of Rosenbrock order 3
    (Shampine & Reichelt 1997, §4.1); with W ≠ J it is a W-order-2 companion."""
    rep = check_order(T.ROSENBROCK23, embedded=True, exact_jacobian=True, max_order=4)
    assert rep.order == 3 and rep.violation.startswith("order 4 tree")


def test_perturbed_ros34pw2():
    tab, d = T.ROS34PW2, sp.Float("1e-6")
    rep = check_order(replace(tab, gamma=set_entry(tab.gamma, 2, 1, tab.gamma[2][1] + d)))
    assert rep.order == 1 and rep.violation == "order 2 tree W[τ]: bᵀg = 1.54526e-06 != 0"   # b_3 δ
    alpha = set_entry(set_entry(tab.alpha, 2, 1, tab.alpha[2][1] + d), 2, 0, tab.alpha[2][0] - d)  # a_3 kept
    rep = check_order(replace(tab, alpha=alpha))
    assert rep.order == 2 and rep.violation.startswith("order 3 tree [W[τ]]: bᵀαg = ")


# ------------------------------------------------------------------------------------ TASE
a = R(3)
Rz = resolvent(a * z)
T2 = 2 * Rz - Rz**2
T3 = R(17, 4) * Rz - R(11, 2) * Rz**2 + R(9, 4) * Rz**3


@pytest.mark.parametrize("rk, ops, order", [
    (T.MIDPOINT, (Rz, T2), 2),                 # methods.md §3.4: W-order 2 with 3 back-solves
    (T.MIDPOINT, (Rz, Rz), 1),                 # T = R in both stages: order 1
    (T.RALSTON3, (T2, T2, T3), 3),             # methods.md §3.4: W-order 3
    (T.RALSTON3, (T2, T2, T2), 2),             # 2R − R² everywhere: order 2
], ids=["midpoint", "midpoint-R", "ralston3", "ralston3-T2"])
def test_tase_w_order(rk, ops, order):
    tab = TASETableau(rk, ops, order=order)
    rep = check_order(tab)
    assert rep.kind == "W" and rep.order == order and rep.violation.startswith(f"order {order + 1} tree")
    assert check_order(tab, max_order=min(order + 2, 5)).order == order
    assert check_order(tab, exact_jacobian=True).order >= order


def test_tase_perturbed_and_symbolic():
    eps = R(1, 10)
    T3b = (R(17, 4) + eps) * Rz - (R(11, 2) + eps) * Rz**2 + R(9, 4) * Rz**3   # T(0) = 1 but τ_3 ≠ 0
    rep = check_order(TASETableau(T.RALSTON3, (T2, T2, T3b), order=3))
    assert rep.order == 1 and rep.violation == "order 2 tree W[τ]: bᵀT⁽¹⁾ = -2/15 != 0"
    t = sp.symbols("t1:4")
    conds = dict(tase_conditions(T.MIDPOINT.A, T.MIDPOINT.b, [[1, t[0], t[1]], [1, t[2], 0]], 3))
    assert conds["order 2 tree W[τ]: bᵀT⁽¹⁾ = 0"] == t[2]
    assert conds["order 3 tree [W[τ]]: bᵀAT⁽¹⁾ = 0"] == t[0] / 2


# ------------------------------------------------------------------------------------ SRA
@pytest.mark.parametrize("tab", SRA_TABLES, ids=names(SRA_TABLES))
def test_sra_strong_order(tab):
    assert check_order(tab) == OrderReport(1.5, None, "sra-strong")
    rep = check_order(tab, deterministic=True)
    assert rep.kind == "classical" and rep.order == tab.order and rep.violation is not None


def test_perturbed_sra1():
    rep = check_order(replace(T.SRA1, B0=((0, 0), (R(7, 5), 0))))
    assert rep.order == 1.0 and rep.violation.startswith("SRA condition 4: αᵀB0e = 1 fails")
    rep = check_order(replace(T.SRA1, beta2=(-1, R(11, 10))))
    assert rep.order == 0 and "condition 3" in rep.violation
    assert [label for label, e in sra_conditions(T.SRA1.A0, T.SRA1.B0, T.SRA1.alpha, T.SRA1.beta1, T.SRA1.beta2,
                                                  T.SRA1.c1) if e != 0] == []


# --------------------------------------------------------------------------------- misc
def test_bad_requests():
    with pytest.raises(ValueError, match="up to order"):
        check_order(T.RK4, max_order=12)
    with pytest.raises(ValueError, match="bhat"):
        check_order(T.RK4, embedded=True)
    with pytest.raises(TypeError):
        check_order("RK4")


def test_tree_strings():
    assert [tree_str(t) for t in trees(3, W)] == ["W[W[τ]]", "W[[τ]]", "[W[τ]]", "[[τ]]", "[τ,τ]"]
    assert [formula(t, "rk") for t in trees(4)] == ["bᵀAAc", "bᵀAc²", "bᵀ(c∘Ac)", "bᵀc³"]


def test_exponential_adams_orders_and_a_broken_weight():
    from dataclasses import replace

    from sdekit.codegen import tables
    from sdekit.codegen.scheme import h
    assert check_order(tables.ETD2).order == 2 and check_order(tables.ETD2).violation.startswith("N(t) = (t − t_n)^2")
    assert check_order(tables.ETD_ADAMS3).order == 3
    w = dict(tables.ETD_ADAMS3.weights)
    w[0] = [(c * (1 + sp.Rational(1, 100)) if m == 3 else c, m) for c, m in w[0]]   # perturb the φ_3 weight of N_n
    broken = check_order(replace(tables.ETD_ADAMS3, weights=w))
    assert broken.order == 0 and "^0" in broken.violation     # Σ of the φ_3 weights no longer vanishes
    assert h in sp.sympify(w[0][0][0]).free_symbols


def test_continuous_extension_must_end_at_the_weights():
    """b_i(1) = b_i is checked when the tableau is built (Tsit5's b changed, its b_i(θ) kept)."""
    b = list(T.TSIT5.b)
    b[1] += sp.Float("1e-9")
    b[2] -= sp.Float("1e-9")
    with pytest.raises(ValueError, match="continuous extension needs b_i"):
        replace(T.TSIT5, b=tuple(b))
