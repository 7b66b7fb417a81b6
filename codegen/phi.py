"""φ-functions, symbolically (methods.md §1.1).

``phi(k, z)``: φ_0 = e^z, φ_k(z) = ∫_0^1 e^{(1-θ)z} θ^{k-1}/(k-1)! dθ, φ_k(0) = 1/k!.
Exponential tableaus are written with ``phi(k, c*z)``; :func:`phi_poly` turns such an
entry into plain data (a polynomial in the atoms φ_k(c z)) that the runtime evaluates with
stable numerics (``sdekit.kernels.linear``), without sympy.
"""
from __future__ import annotations

from fractions import Fraction

import sympy as sp

#: the symbol z = h L of every exponential tableau
z = sp.Symbol("z")


class phi(sp.Function):
    """φ_k(x) (Hochbruck & Ostermann 2010, Acta Numerica 19, eq. (2.10))."""

    nargs = 2

    @classmethod
    def eval(cls, k, x):
        if not (k.is_Integer and k >= 0):
            raise ValueError(f"phi: k must be a non-negative integer, got {k}")
        if x.is_zero:
            return sp.Rational(1, sp.factorial(k))
        return None  # φ_0 stays phi(0, x) (not exp) so every entry is a polynomial in φ atoms

    def closed_form(self):
        """φ_k(x) = (e^x − Σ_{j<k} x^j/j!)/x^k."""
        k, x = self.args
        return (sp.exp(x) - sum(x**j / sp.factorial(j) for j in range(int(k)))) / x**k

    def taylor(self, order: int):
        """Σ_{j<=order} x^j/(j+k)!  (exact rationals)."""
        k, x = self.args
        return sum(x**j / sp.factorial(j + int(k)) for j in range(order + 1))


def closed_form(expr):
    """Replace every φ_k(x) in ``expr`` by its closed form."""
    return expr.replace(lambda e: isinstance(e, phi), lambda e: e.closed_form())


def series_in_z(expr, order: int = 12):
    """Power series of a φ-expression in ``z`` up to ``z**order`` (exact, via Taylor of φ)."""
    expr = sp.sympify(expr).replace(lambda e: isinstance(e, phi), lambda e: e.taylor(order))
    return sp.series(sp.expand(expr), z, 0, order + 1).removeO() if expr.has(z) else sp.expand(expr)


def series_equal(a, b, order: int = 12) -> bool:
    """``a == b`` as power series in z up to ``z**order``."""
    return sp.expand(series_in_z(sp.sympify(a) - sp.sympify(b), order)) == 0


def phi_atom(e) -> tuple:
    """(k, c) of an atom φ_k(c z); ``c`` an exact Fraction."""
    k, x = e.args
    c = sp.nsimplify(x / z)
    if c.free_symbols:
        raise ValueError(f"φ argument {x} is not a rational multiple of z")
    return int(k), Fraction(int(c.p), int(c.q))


def phi_poly(expr) -> tuple:
    """``expr`` (polynomial in φ_k(c z)) as data: ``((weight, ((k, c), ...)), ...)``.

    ``weight`` is a Fraction; the inner tuple is the (sorted) product of atoms, empty for a
    constant.  Raises ValueError for anything that is not such a polynomial.
    """
    expr = sp.expand(sp.sympify(expr))
    if expr == 0:
        return ()
    atoms = sorted(expr.atoms(phi), key=sp.default_sort_key)
    gens = atoms or [sp.Dummy()]
    poly = sp.Poly(expr, *gens)
    if not all(c.is_Rational for c in poly.coeffs()):
        raise ValueError(f"{expr} is not a polynomial in φ-functions of z with rational weights")
    terms = []
    for powers, coeff in poly.terms():
        factors = []
        for atom, p in zip(atoms, powers):
            factors += [phi_atom(atom)] * p
        coeff = sp.Rational(coeff)
        terms.append((Fraction(int(coeff.p), int(coeff.q)), tuple(sorted(factors))))
    return tuple(sorted(terms, key=lambda t: (len(t[1]), t[1])))
