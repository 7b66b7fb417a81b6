"""Coefficients derived, not copied: sdekit solves the order conditions in sympy.

* TASE operators with distinct parameters (Bassenne, Fu & Mani 2021, JCP; Calvo, Montijano
  & Rández 2021, JCP 436:110316; methods.md §3.2): :func:`tase_betas`, :func:`tase_operator`,
  the catalogue pairs :func:`tase_rk` (``TASE_RK2``, ``TASE_RK3``, ``TASE_RK4``).
* Singly-TASE (Calvo, Montijano & Rández 2023, J Sci Comput; methods.md §3.3):
  :func:`singly_tase_betas`, :func:`singly_tase_operator`.
* Modified singly RK-TASE as W-methods (MSRKTASE; Calvo, Montijano & Rández 2025, J Sci
  Comput, arXiv:2407.01785; methods.md §3.4, §4.3): :func:`msrktase_operators`,
  :func:`msrktase_method`, the catalogue pair :func:`msrktase`.
* Variable-step exponential Adams of order k (methods.md §1.6, [derived]):
  :func:`etd_adams_weights`, :func:`etd_adams_operators`.

The derivations are exact for exact (rational or symbolic) data; Floats stay Floats.
Nothing here is evaluated at import time: the catalogue entries (attributes ``TASE_RK2``,
``TASE_RK3``, ``TASE_RK4``, ``MSRKTASE2``, ``MSRKTASE3``, or :func:`tase_rk`/:func:`msrktase`)
are built and cached on first use, so :mod:`.tables` may import this module without a cycle.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy as sp

from .phi import closed_form, phi, resolvent, z
from .scheme import h, lag  # the step-size symbols every scheme coefficient uses
from .tableau import ButcherTableau, TASETableau

__all__ = [
    "tase_betas", "tase_operator", "singly_tase_betas", "singly_tase_operator", "tase_method", "tase_rk",
    "TASE_ALPHAS", "msrktase_operators", "msrktase_method", "msrktase", "MSRKTASE_STAGE_POWERS",
    "MSRKTASE_ALPHA", "stability_function", "etd_adams_weights", "etd_adams_operators", "h", "lag", "H_LAGS",
]


def _num(x):
    """An exact sympy number for ints/Fractions/strings without a point; Floats stay Floats."""
    if isinstance(x, float):
        return sp.Float(x)
    return sp.sympify(x) if not isinstance(x, str) or any(ch in x for ch in ".eE") else sp.Rational(x)


def _simplify(x):
    return x if x.has(sp.Float) else sp.factor(sp.cancel(x))


# ----------------------------------------------------------------------------- TASE, distinct α
def tase_betas(alphas, p: int | None = None) -> tuple:
    """β_j with T_p = Σ_j β_j (I − α_j hJ)^{-1} = I + O(h^p) (methods.md §3.2).

    Expanding the resolvents gives the Vandermonde system Σ_j β_j α_j^m = δ_{m0},
    m = 0..p−1 (Bassenne, Fu & Mani 2021, JCP, "Time-accurate and highly-stable explicit
    operators…", §3; Calvo, Montijano & Rández 2021, JCP 436:110316).  ``p`` defaults to
    (and must equal) the number of α's, which must be distinct and non-zero.  Solved in
    sympy: exact for rational/symbolic α, Floats for float α.
    """
    a = [_num(x) for x in alphas]
    p = len(a) if p is None else int(p)
    if p != len(a) or p < 1:
        raise ValueError(f"tase_betas: order p = {p} needs exactly p parameters, got {len(a)}")
    if any(x == 0 for x in a) or len(set(a)) != len(a):
        raise ValueError(f"tase_betas: the α's must be distinct and non-zero, got {tuple(a)}")
    V = sp.Matrix(p, p, lambda m, j: a[j] ** m)
    beta = V.LUsolve(sp.Matrix([1] + [0] * (p - 1)))
    return tuple(_simplify(b) for b in beta)


def tase_operator(alphas):
    """T_p(z) = Σ_j β_j resolvent(α_j z) with β from :func:`tase_betas` (methods.md §3.2)."""
    a = [_num(x) for x in alphas]
    return sum(b * resolvent(x * z) for b, x in zip(tase_betas(a), a))


# ----------------------------------------------------------------------------- singly TASE
def singly_tase_betas(p: int) -> tuple:
    """β_1..β_p of the singly operator T_p = Σ_j β_j R^j, R = (I − αhJ)^{-1}, with T_p = I + O(h^p).

    R^j = Σ_m C(m+j−1, m) (αhJ)^m, so the conditions are Σ_j β_j C(m+j−1, m) = δ_{m0},
    m = 0..p−1, free of α (Calvo, Montijano & Rández 2023, J Sci Comput,
    doi:10.1007/s10915-023-02232-3; methods.md §3.3).  Solved here; the solution is
    β_j = (−1)^{j+1} C(p, j), i.e. T_p = I − (I − R)^p.
    """
    p = int(p)
    if p < 1:
        raise ValueError(f"singly_tase_betas: p must be >= 1, got {p}")
    M = sp.Matrix(p, p, lambda m, j: sp.binomial(m + j, m))  # column j ↔ power j+1
    return tuple(M.LUsolve(sp.Matrix([1] + [0] * (p - 1))))


def singly_tase_operator(p: int, alpha=1):
    """Σ_j β_j resolvent(α z)^j with β from :func:`singly_tase_betas`; ``alpha`` any non-zero
    sympy number or symbol (the user's stability parameter; methods.md §3.3)."""
    R = resolvent(_num(alpha) * z)
    return sum(b * R ** (j + 1) for j, b in enumerate(singly_tase_betas(p)))


# ----------------------------------------------------------------------------- RK-TASE methods
def tase_method(rk: ButcherTableau, operator, order: int, name: str = "") -> TASETableau:
    """RK-TASE (methods.md §3.1): ``rk`` with the same operator T in every stage,
    k_i = h T(hW) f(Y_i).  Its order is min(order of rk, q) when T = I + O(h^q)."""
    return TASETableau(rk=rk, operators=(sp.sympify(operator),) * rk.stages, order=order, name=name)


def _F(s):
    return sp.Float(s, 60)


#: stability-tuned α's of Calvo, Montijano & Rández 2021 (JCP 436:110316; as in
#: gpagano97/TASE-RK-methods TASERK.m; methods.md §3.2); p = 2 is Richardson's α_j = 3/j.
TASE_ALPHAS = {
    2: (sp.Integer(3), sp.Rational(3, 2)),
    3: (_F("2.31469"), _F("1.87961"), _F("1.58222")),
    4: (_F("3.939556"), _F("2.450558"), _F("2.227083"), _F("2.061235")),
}


@lru_cache(maxsize=None)
def tase_rk(p: int) -> TASETableau:
    """The catalogue's RK-TASE of order p (methods.md §3.2): p = 2 explicit midpoint,
    p = 3 Ralston-3, p = 4 classical RK4, each with the p-parameter operator of :data:`TASE_ALPHAS`."""
    from . import tables
    rk = {2: tables.MIDPOINT, 3: tables.RALSTON3, 4: tables.RK4}.get(p)
    if rk is None:
        raise ValueError(f"tase_rk: p must be 2, 3 or 4, got {p}")
    return tase_method(rk, tase_operator(TASE_ALPHAS[p]), p, f"TASE-RK{p}")


# ----------------------------------------------------------------------------- MSRKTASE (W-method)
def msrktase_operators(rk: ButcherTableau, powers, order: int, alpha=1) -> tuple:
    """Per-stage singly operators T_i = Σ_{m=1}^{q_i} β_im R^m, R = resolvent(α z), solved from
    the W-method conditions (any W; methods.md §3.4 with §4.3; Calvo, Montijano & Rández 2025,
    J Sci Comput, arXiv:2407.01785):

    * σ_i = Σ_m β_im = 1 for every stage (consistency, c̃ = c);
    * order ≥ 2: Σ b_i τ_i = 0;
    * order ≥ 3: Σ b_i c_i τ_i = 0, Σ_i b_i Σ_j a_ij τ_j = 0, Σ b_i ρ_i = 0,

    where T_i = σ_i + τ_i x + ρ_i x² + …, x = hW, τ_i = α Σ_m m β_im, ρ_i = α² Σ_m C(m+1, 2) β_im.
    The τ/ρ conditions are homogeneous in α, so the β's do not depend on α (α ≠ 0).
    ``powers`` = (q_1, …, q_s) fixes the unknowns; the solve must be unique (else ValueError:
    choose q_i so that the unknowns match the conditions).  Order ≥ 4 is not implemented.
    """
    if order not in (1, 2, 3):
        raise ValueError(f"msrktase_operators: W-order {order} not implemented (1, 2 or 3)")
    if rk.order < order:
        raise ValueError(f"msrktase_operators: {rk.name} has order {rk.order} < {order}")
    s = rk.stages
    if len(powers) != s or any(int(q) < 1 for q in powers):
        raise ValueError(f"msrktase_operators: need {s} powers q_i >= 1, got {tuple(powers)}")
    beta = [[sp.Symbol(f"beta_{i}{m}") for m in range(1, q + 1)] for i, q in enumerate(powers)]
    sigma = [sum(bi) for bi in beta]
    tau = [sum(m * x for m, x in enumerate(bi, 1)) for bi in beta]            # τ_i / α
    rho = [sum(sp.binomial(m + 1, 2) * x for m, x in enumerate(bi, 1)) for bi in beta]  # ρ_i / α²
    A, b, c = rk.A, rk.b, rk.c
    eqs = [sg - 1 for sg in sigma]
    if order >= 2:
        eqs.append(sum(b[i] * tau[i] for i in range(s)))
    if order >= 3:
        eqs.append(sum(b[i] * c[i] * tau[i] for i in range(s)))
        eqs.append(sum(b[i] * sum(A[i][j] * tau[j] for j in range(s)) for i in range(s)))
        eqs.append(sum(b[i] * rho[i] for i in range(s)))
    unknowns = [x for bi in beta for x in bi]
    sol = sp.linsolve(eqs, unknowns)
    if not sol:
        raise ValueError(f"msrktase_operators: no solution for {rk.name} with q = {tuple(powers)}")
    (values,) = sol
    if any(v.free_symbols & set(unknowns) for v in values):
        raise ValueError(f"msrktase_operators: q = {tuple(powers)} leaves free parameters; lower some q_i")
    val = dict(zip(unknowns, values))
    R = resolvent(_num(alpha) * z)
    return tuple(sum(val[x] * R ** m for m, x in enumerate(bi, 1)) for bi in beta)


def msrktase_method(rk: ButcherTableau, powers, order: int, alpha=1, name: str = "") -> TASETableau:
    """:func:`msrktase_operators` as a :class:`TASETableau` (W-order ``order`` for any W)."""
    return TASETableau(rk=rk, operators=msrktase_operators(rk, powers, order, alpha), order=order, name=name)


#: stage powers q_i of the catalogue's MSRKTASE methods, the fewest that make the solve unique:
#: p = 2 (explicit midpoint): b_1 = 0 leaves τ_1 free, so q_1 = 1 (T_1 = R); τ_2 = 0 needs q_2 = 2.
#: p = 3 (Ralston-3): the three τ conditions are non-singular for Ralston's (A, b, c), so τ_i = 0 for
#: every stage (q_i ≥ 2); q = (2, 2, 2) then gives ρ_i = −α² everywhere and Σ b_i ρ_i ≠ 0, so one
#: stage takes a third power: the last one (largest b_i), which also makes T_1 = T_2.
MSRKTASE_STAGE_POWERS = {2: (1, 2), 3: (2, 2, 3)}

#: default α of :func:`msrktase` (see its docstring for the scan behind these values).
MSRKTASE_ALPHA = {2: sp.Integer(1), 3: sp.Integer(2)}


@lru_cache(maxsize=None)
def msrktase(p: int, alpha=None) -> TASETableau:
    """The catalogue's MSRKTASE of W-order p (methods.md §3.4): p = 2 explicit midpoint with
    T_1 = R, T_2 = 2R − R² (3 back-solves a step); p = 3 Ralston-3 with T_1 = T_2 = 2R − R²,
    T_3 = 17/4 R − 11/2 R² + 9/4 R³ (7 back-solves).  R = (I − α hW)^{-1}, one LU per W.

    Default α (:data:`MSRKTASE_ALPHA`), from a scan of the linear stability function
    (:func:`stability_function`, W = J = λ) over α ∈ [0.25, 40] on the imaginary axis, the
    negative real axis and rays of angle θ (numbers in tests/test_derive.py):

    * p = 2: R(−∞) = (1 − 1/α)²; every scanned α ≥ 1/2 is A-stable, and α = 1 is the only
      L-stable one (R(−∞) = 0).  Larger α damps less and adds error (T − 1 = O((αz)²)).
    * p = 3: no α is A-stable (max|R(iy)| ≈ 1.0035 at α = 2; it tends to 1 only as α → ∞).
      R(−∞) = (6α³ − 18α² + 21α − 17)/(6α³), which is ≥ −1 for α ≳ 1.09; every scanned
      α ∈ [1.2, 3] has |R| ≤ 1 on the negative real axis and is A(θ)-stable with θ ≈ 89.1–89.4°.
      R(−∞) vanishes at α ≈ 1.9503, and α = 2 is the nearby simple value: R(−∞) = 1/48, A(89.16°).

    A symbolic α is fine for :func:`msrktase_operators`; a tableau needs a number.
    """
    from . import tables
    rk = {2: tables.MIDPOINT, 3: tables.RALSTON3}.get(p)
    if rk is None:
        raise ValueError(f"msrktase: p must be 2 or 3, got {p}")
    alpha = MSRKTASE_ALPHA[p] if alpha is None else _num(alpha)
    return msrktase_method(rk, MSRKTASE_STAGE_POWERS[p], p, alpha, f"MSRKTASE{p}")


def stability_function(tab: TASETableau):
    """R(λh) of an RK-TASE tableau on y' = λy with W = λ, as a numpy function of complex z:
    Y_i = 1 + Σ_j a_ij k_j, k_i = z T_i(z) Y_i, R = 1 + Σ b_i k_i (methods.md §3.1)."""
    ops = [sp.lambdify(z, closed_form(op), "numpy") for op in tab.operators]
    A = [[complex(a) for a in row] for row in tab.rk.A]
    b = [complex(x) for x in tab.rk.b]

    def R(x):
        x = np.asarray(x, dtype=complex)
        k = []
        for i, op in enumerate(ops):
            Y = 1 + sum(A[i][j] * k[j] for j in range(i))
            k.append(x * op(x) * Y)
        return 1 + sum(bi * ki for bi, ki in zip(b, k))

    return R


# ----------------------------------------------------------------------------- ETD-Adams
#: h1, h2, ..., h8
H_LAGS = tuple(lag(k) for k in range(1, 9))


def etd_adams_weights(k: int) -> dict:
    """Weights of the variable-step exponential Adams method of order k (methods.md §1.6, [derived]):
    y_{n+1} = φ_0(z) y_n + Σ_{j<k} w_j N_{n−j},  w_j = Σ coef · φ_m(z),  z = hL.

    N is interpolated at t_n, t_{n−1}, …, t_{n−k+1} (Newton form; τ = t − t_n, nodes
    τ_i = −(h_1 + … + h_i), h_i = :func:`lag`(i)) and the interpolant integrated exactly,
    ∫_0^h e^{(h−τ)L} τ^m dτ = m! h^{m+1} φ_{m+1}(hL).  Returns ``{j: [(coef, m), ...]}``
    (m = 1..k ascending, zero terms dropped), ``coef`` a rational function of h, h1, …, h_{k−1}.
    """
    k = int(k)
    if k < 1:
        raise ValueError(f"etd_adams_weights: order k must be >= 1, got {k}")
    tau = sp.Symbol("tau")
    nodes = [sp.Integer(0)]
    for i in range(1, k):
        nodes.append(nodes[-1] - lag(i))
    # ∫_0^h e^{(h−τ)L} ω_i(τ) dτ for the Newton basis ω_i = Π_{l<i} (τ − τ_l), as {m: coef of φ_m}
    integrals = []
    for i in range(k):
        poly = sp.Poly(sp.prod([tau - nodes[l] for l in range(i)]), tau)
        integrals.append({m + 1: c * sp.factorial(m) * h ** (m + 1) for (m,), c in poly.terms()})
    weights = {}
    for j in range(k):
        acc = {}
        for i in range(j, k):  # N[τ_0..τ_i] = Σ_{j≤i} N_{n−j} / Π_{l≤i, l≠j} (τ_j − τ_l)
            dd = sp.Integer(1) / sp.prod([nodes[j] - nodes[l] for l in range(i + 1) if l != j])
            for m, c in integrals[i].items():
                acc[m] = acc.get(m, 0) + dd * c
        coefs = [(sp.factor(sp.cancel(acc[m])), m) for m in sorted(acc)]
        weights[j] = [(cf, m) for cf, m in coefs if cf != 0]
    return weights


def etd_adams_operators(k: int) -> dict:
    """{j: w_j} with w_j = Σ coef · phi(m, z) from :func:`etd_adams_weights`."""
    return {j: sum(c * phi(m, z) for c, m in terms) for j, terms in etd_adams_weights(k).items()}


_LAZY = {"TASE_RK2": (tase_rk, 2), "TASE_RK3": (tase_rk, 3), "TASE_RK4": (tase_rk, 4),
         "MSRKTASE2": (msrktase, 2), "MSRKTASE3": (msrktase, 3)}


def __getattr__(name):
    """TASE_RK2..4 and MSRKTASE2..3, built on first use (no import cycle with tables, no import cost)."""
    if name in _LAZY:
        fn, p = _LAZY[name]
        return fn(p)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
