"""Rooted trees and the elementary weights of B-series — the machinery of the order checker
(:mod:`.order_conditions`).

Trees: Butcher, *Numerical Methods for ODEs* (2nd ed. 2008), §30–31; Hairer, Nørsett & Wanner,
*Solving ODEs I* (HNW I), §II.2; W-trees: Hairer & Wanner, *Solving ODEs II* (HW II), §IV.7.

A tree is ``(colour, children)`` with ``children`` a sorted tuple of trees.  Colours:

* ``"f"`` — the right-hand side (``N`` for exponential methods); any number of children;
* ``"W"`` — a constant matrix W (Rosenbrock-W, TASE): exactly one child;
* ``"L"`` — the linear part of ``y' = L y + N(y)``: at most one child; a leaf ``L`` is the
  vector ``L y`` (L is linear, so ``L''`` vanishes).

A B-series is ``B(a, y) = y + Σ_t h^|t|/σ(t) a(t) F(t)(y)``.  The exact flow has a(t) = 1/γ(t)
(γ the density, colours ignored — for ``f = Ly + N`` the two colours form a P-series); a tree with
a W-vertex never occurs in the exact flow (coefficient 0).  The ``*_weights`` functions below
return the method's coefficient Φ(t); they only use ``+``, ``*`` and ``0``/``1``, so the entries
may be Fractions, floats or sympy expressions (symbols included).
"""
from __future__ import annotations

from fractions import Fraction
from functools import lru_cache
from math import factorial

F, W, L = "f", "W", "L"
TAU = (F, ())
FAMILIES = (None, W, L)  # f only | f + W (one child) | f + L (at most one child)


# ------------------------------------------------------------------------------------ trees
@lru_cache(maxsize=None)
def trees(order: int, family: str | None = None) -> tuple:
    """All trees with ``order`` vertices (Butcher 2008 §30), sorted; ``family``: see :data:`FAMILIES`."""
    if order < 1:
        return ()
    out = {(F, forest) for forest in forests(order - 1, family)}
    if family is not None:
        out |= {(family, (s,)) for s in trees(order - 1, family)}
        if family == L and order == 1:
            out.add((L, ()))
    return tuple(sorted(out, key=lambda t: (len(t[1]), tree_str(t))))


@lru_cache(maxsize=None)
def forests(order: int, family: str | None = None) -> tuple:
    """All multisets of trees (sorted tuples) with ``order`` vertices in total."""
    if order == 0:
        return ((),)
    out = set()
    for k in range(1, order + 1):
        for t in trees(k, family):
            for rest in forests(order - k, family):
                out.add(tuple(sorted(rest + (t,))))
    return tuple(sorted(out))


def trees_upto(order: int, family: str | None = None) -> list:
    return [t for q in range(1, order + 1) for t in trees(q, family)]


@lru_cache(maxsize=None)
def size(t) -> int:
    """|t|, the number of vertices."""
    return 1 + sum(size(c) for c in t[1])


@lru_cache(maxsize=None)
def density(t) -> int:
    """γ(t) = |t| Π γ(children) (Butcher 2008 §30; HNW I Def. II.2.10)."""
    g = size(t)
    for c in t[1]:
        g *= density(c)
    return g


@lru_cache(maxsize=None)
def symmetry(t) -> int:
    """σ(t) = Π over distinct children u of σ(u)^m m!  (m its multiplicity)."""
    s = 1
    for u in set(t[1]):
        m = t[1].count(u)
        s *= symmetry(u) ** m * factorial(m)
    return s


def has_colour(t, colour: str) -> bool:
    return t[0] == colour or any(has_colour(c, colour) for c in t[1])


def exact_weight(t) -> Fraction:
    """The exact flow's coefficient: 1/γ(t), 0 on trees with a W-vertex (W is not in the ODE)."""
    return Fraction(0) if has_colour(t, W) else Fraction(1, density(t))


def strip(t, colour: str):
    """``t = X^m s`` with a chain of m ``colour``-vertices at the root: ``(m, s)``, s None for a
    chain ending in a leaf (``L^m y``)."""
    m = 0
    while t[0] == colour:
        m += 1
        if not t[1]:
            return m, None
        t = t[1][0]
    return m, t


# ---------------------------------------------------------------------------------- printing
_SUP = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")


def tree_str(t) -> str:
    """τ, [τ,τ], [[τ]], W[τ], L[τ], L — the bracket notation of HW II §IV.7 / methods.md §4.3."""
    if t[0] != F:
        return t[0] + (f"[{tree_str(t[1][0])}]" if t[1] else "")
    return f"[{','.join(tree_str(c) for c in t[1])}]" if t[1] else "τ"


def _sup(m) -> str:
    return str(m).translate(_SUP)


def _wrap(x: str) -> str:
    """Parenthesise a vector expression unless it is a plain (matrix-)vector product."""
    depth = 0
    for ch in x:
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and ch in "∘+/":
            return f"({x})"
    return x


def _product(parts) -> str:
    """Hadamard product of stage vectors, repeated factors as powers: ['c','c','Ac'] -> 'c²∘Ac'."""
    parts = [p for p in parts if p != "1"]
    out = []
    for p in sorted(set(parts), key=parts.index):
        m = parts.count(p)
        out.append(p if m == 1 else (p if len(p) == 1 else f"({p})") + _sup(m))
    return "∘".join(out) or "1"


def formula(t, family: str) -> str:
    """Φ(t) in vector notation, for messages.  ``family``: "rk", "w", "rosenbrock", "tase", "exp"
    (anything else: plain "Φ(t)")."""
    inner = {"rk": ("A", "c"), "w": ("α", "a"), "rosenbrock": ("α", "a"), "tase": ("A", "c")}.get(family)
    if inner is None and family != "exp":
        return "Φ(t)"

    def apply(matrix, one, v):
        return one if v == "1" else matrix + _wrap(v)

    def stage(u):  # the stage value Y (U) paired with a child u
        if family == "exp":
            m, s = strip(u, L)
            if s is None:
                return "c" if m == 1 else f"c{_sup(m)}/{m}!"
            return apply(f"A⁽{_sup(m)}⁾", f"A⁽{_sup(m)}⁾1" if m else "c", K(s))
        return apply(*inner, K(u))

    def K(u):  # the vector h f(Y) (plus W terms) paired with u
        if family == "w" and u[0] == W:
            return apply("Γ", "g", K(u[1][0]))
        if family == "tase" and u[0] == W:
            m, s = strip(u, W)
            return _product([f"T⁽{_sup(m)}⁾", K(s)])
        if family == "rosenbrock" and len(u[1]) == 1:
            return apply("β", "(a+g)", K(u[1][0]))
        return _product([stage(c) for c in u[1]])

    if family == "exp":
        m, s = strip(t, L)
        if s is None:
            return f"1/{m}!"
        return f"b⁽{_sup(m)}⁾ᵀ" + _wrap(K(s))
    return "bᵀ" + _wrap(K(t))


# ---------------------------------------------------------------------- elementary weights
def _memoised(rule):
    memo = {}

    def K(t):
        if t not in memo:
            memo[t] = rule(K, t)
        return memo[t]
    return K


def _apply(M, v):
    """M v for a (strictly or not) lower-triangular M given as nested sequences."""
    return [sum((M[i][j] * v[j] for j in range(i + 1) if M[i][j] != 0), 0) for i in range(len(v))]


def _hadamard(vectors, s):
    out = [1] * s
    for v in vectors:
        out = [x * y for x, y in zip(out, v)]
    return out


def _dot(b, v):
    return sum((bi * vi for bi, vi in zip(b, v) if bi != 0), 0)


def rk_weights(A, b, c=None):
    """Φ(t) of an explicit RK method: Φ(t) = bᵀ K(t), K(τ) = 1, K([t_1..t_m]) = Π_k A K(t_k),
    with A·1 written c (Butcher 2008 §31; HNW I Thm II.2.13)."""
    s = len(b)
    c = list(c) if c is not None else [sum(row, 0) for row in A]
    K = _memoised(lambda K, t: _hadamard([c if u == TAU else _apply(A, K(u)) for u in t[1]], s))
    return lambda t: _dot(b, K(t))


def w_weights(alpha, gamma, b):
    """Φ(t) on W-trees of ``k_i = h f(y + Σ α_ij k_j) + hW Σ_{j≤i} γ_ij k_j``, ``y1 = y + Σ b_i k_i``
    (HW II §IV.7): K([t_1..t_m]) = Π_k α K(t_k), K(W[t]) = Γ K(t) (Γ with its diagonal)."""
    s = len(b)

    def rule(K, t):
        if t[0] == W:
            return _apply(gamma, K(t[1][0]))
        return _hadamard([_apply(alpha, K(u)) for u in t[1]], s)
    return _dot_with(b, _memoised(rule))


def rosenbrock_weights(alpha, gamma, b):
    """The same method with W = ∂f/∂y (HW II §IV.7, Rosenbrock order): hW maps a tree t to [t],
    so K([t_1..t_m]) = Π α K(t_k) + (m == 1) Γ K(t_1)."""
    s = len(b)

    def rule(K, t):
        v = _hadamard([_apply(alpha, K(u)) for u in t[1]], s)
        if len(t[1]) == 1:
            v = [x + y for x, y in zip(v, _apply(gamma, K(t[1][0])))]
        return v
    return _dot_with(b, _memoised(rule))


def tase_weights(A, T, b, exact_jacobian=False):
    """RK-TASE ``k_i = T_i(hW) h f(Y_i)``, ``T_i(x) = Σ_m T[i][m] x^m`` (methods.md §3.1, §3.4).
    W-trees: K(W^m [t_1..]) = T[i][m] Π A K(t_k).  ``exact_jacobian``: W = ∂f/∂y on f-trees,
    K(t) = Σ_m T[i][m] G_m(t) with G_0(t) = Π A K(t_k), G_m([u]) = G_{m-1}(u), G_m = 0 otherwise."""
    s = len(b)
    coeff = lambda i, m: T[i][m] if m < len(T[i]) else 0

    def base(K, t):
        return _hadamard([_apply(A, K(u)) for u in t[1]], s)

    def rule(K, t):
        if exact_jacobian:
            out, m, u = [0] * s, 0, t
            while True:
                out = [o + coeff(i, m) * g for i, (o, g) in enumerate(zip(out, base(K, u)))]
                if len(u[1]) != 1:
                    return out
                m, u = m + 1, u[1][0]
        m, u = strip(t, W)
        return [coeff(i, m) * g for i, g in enumerate(base(K, u))]
    return _dot_with(b, _memoised(rule))


def exp_weights(A, B, c):
    """Exponential RK on ``y' = Ly + N`` (Hochbruck & Ostermann 2010, Acta Numer. §2.3):
    ``U_i = e^{c_i z} y + h Σ_j a_ij(z) N(U_j)``, ``y1 = e^z y + h Σ b_i(z) N(U_i)``; A[i][j][m], B[i][m]
    the z^m coefficients of a_ij(z), b_i(z).  z^m = m L-vertices: a tree ``L^m s`` gets
    Σ_j A[i][j][m] K_j(s) (s N-rooted) or c_i^m/m! (s empty, from e^{c_i z} y); K([t_1..]) = Π U(t_k)."""
    s = len(B)
    take = lambda row, m: row[m] if m < len(row) else 0

    def U(K, t):
        m, u = strip(t, L)
        if u is None:
            return [ci ** m * Fraction(1, factorial(m)) for ci in c]
        Ku = K(u)
        return [sum((take(A[i][j], m) * Ku[j] for j in range(i)), 0) for i in range(s)]
    K = _memoised(lambda K, t: _hadamard([U(K, u) for u in t[1]], s))

    def weight(t):
        m, u = strip(t, L)
        if u is None:
            return Fraction(1, factorial(m))
        return sum((take(B[i], m) * k for i, k in enumerate(K(u))), 0)
    return weight


def _dot_with(b, K):
    return lambda t: _dot(b, K(t))
