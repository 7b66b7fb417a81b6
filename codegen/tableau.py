"""Tableaus as data that validate themselves when built.

* :class:`ButcherTableau` — explicit Runge–Kutta ``(A, b, c)`` in exact rationals, applied
  to the full right-hand side ``f = L y + c + N``.
* :class:`ExponentialTableau` — exponential Runge–Kutta in the notation of Hochbruck &
  Ostermann (2010, Acta Numerica 19, §2.3): ``U_i = φ_0(c_i z) y_n + h Σ_j a_ij(z) N_j``,
  ``y_{n+1} = φ_0(z) y_n + h Σ_i b_i(z) N_i`` with entries polynomials in ``phi(k, c z)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .phi import phi, phi_poly, series_equal, z


def _exact(x):
    return sp.nsimplify(x) if isinstance(x, (int, str)) else sp.sympify(x)


def _exact_arrays(tab):
    """(A, b, c) of ``tab`` as exact sympy tuples, after the shape checks every tableau shares:
    equal lengths of b and c, square A, strictly lower triangular (explicit methods)."""
    b = tuple(_exact(x) for x in tab.b)
    c = tuple(_exact(x) for x in tab.c)
    s = len(b)
    if len(c) != s:
        raise ValueError(f"{tab.name}: b has {s} entries but c has {len(c)}")
    A = tuple(tuple(_exact(a) for a in row) for row in tab.A)
    if len(A) != s or any(len(row) != s for row in A):
        raise ValueError(f"{tab.name}: A must be {s}x{s}")
    for i in range(s):
        for j in range(i, s):
            if A[i][j] != 0:
                raise ValueError(f"{tab.name}: A[{i}][{j}] = {A[i][j]} is on/above the diagonal; only explicit methods")
    return A, b, c


def _store(tab, A, b, c):
    object.__setattr__(tab, "A", A)
    object.__setattr__(tab, "b", b)
    object.__setattr__(tab, "c", c)


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit RK tableau. Checks: shapes, strictly lower A, Σ_j a_ij = c_i, Σ b_i = 1."""

    A: tuple
    b: tuple
    c: tuple
    order: int
    name: str = ""

    def __post_init__(self):
        A, b, c = _exact_arrays(self)
        for i in range(len(b)):
            if sp.simplify(sum(A[i]) - c[i]) != 0:
                raise ValueError(f"{self.name}: row {i} of A sums to {sum(A[i])}, not c_{i} = {c[i]}")
        if sp.simplify(sum(b) - 1) != 0:
            raise ValueError(f"{self.name}: weights b sum to {sum(b)}, not 1")
        _store(self, A, b, c)

    @property
    def stages(self) -> int:
        return len(self.b)


@dataclass(frozen=True)
class ExponentialTableau:
    """Exponential RK tableau (entries: polynomials in φ_k(c z)).

    Checks (series in z, exact): Σ_j a_ij(z) = c_i φ_1(c_i z) and Σ_i b_i(z) = φ_1(z), the
    conditions that make the method exact for constant N (Hochbruck & Ostermann 2005, SINUM
    43(3), order condition 1 of Table 2.1); each entry must be a polynomial in φ atoms.
    """

    A: tuple
    b: tuple
    c: tuple
    order: int
    stiff_order: int
    name: str = ""

    def __post_init__(self):
        A, b, c = _exact_arrays(self)
        for i in range(len(b)):
            if not series_equal(sum(A[i]), c[i] * phi(1, c[i] * z)):
                raise ValueError(f"{self.name}: Σ_j a_{i}j(z) != c_{i} φ_1(c_{i} z)")
        if not series_equal(sum(b), phi(1, z)):
            raise ValueError(f"{self.name}: Σ_i b_i(z) != φ_1(z)")
        for entry in (*b, *(a for row in A for a in row)):
            phi_poly(entry)  # raises if not a polynomial in φ atoms
        _store(self, A, b, c)

    @property
    def stages(self) -> int:
        return len(self.b)

    def at_zero(self) -> ButcherTableau:
        """The underlying classical RK tableau (z → 0); validated on construction."""
        at0 = lambda e: sp.sympify(e).subs(z, 0)
        return ButcherTableau(
            A=tuple(tuple(at0(a) for a in row) for row in self.A),
            b=tuple(at0(x) for x in self.b), c=self.c, order=self.order, name=f"{self.name}(z=0)",
        )
