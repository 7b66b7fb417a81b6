"""Functions of z = hL, symbolically: the atoms every linear operator of a scheme is built from.

* ``phi(k, c*z)``: φ_0 = e^z, φ_k(z) = ∫_0^1 e^{(1-θ)z} θ^{k-1}/(k-1)! dθ, φ_k(0) = 1/k!
  (methods.md §1.1) — exponential integrators.
* ``resolvent(a*z)``: (1 − a z)^{-1} — the linear solves of Rosenbrock-W and TASE methods
  (methods.md §3, §4).

:func:`phi_poly` turns an operator (a polynomial in these atoms) into plain data that the
runtime evaluates with stable numerics (``sdekit.kernels.linear``), without sympy.
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


class resolvent(sp.Function):
    """R(x) = (1 − x)^{-1}; ``resolvent(alpha*z)`` is (I − α hL)^{-1} (methods.md §3.2)."""

    nargs = 1

    @classmethod
    def eval(cls, x):
        if x.is_zero:
            return sp.Integer(1)
        return None

    def closed_form(self):
        return 1 / (1 - self.args[0])

    def taylor(self, order: int):
        """Σ_{j<=order} x^j (the Neumann series)."""
        return sum(self.args[0] ** j for j in range(order + 1))


ATOMS = (phi, resolvent)


def closed_form(expr):
    """Replace every φ_k(x) and resolvent in ``expr`` by its closed form."""
    return expr.replace(lambda e: isinstance(e, ATOMS), lambda e: e.closed_form())


def series_in_z(expr, order: int = 12):
    """Power series of an operator expression in ``z`` up to ``z**order`` (exact, via the atoms' Taylor series)."""
    expr = sp.sympify(expr).replace(lambda e: isinstance(e, ATOMS), lambda e: e.taylor(order))
    return sp.series(sp.expand(expr), z, 0, order + 1).removeO() if expr.has(z) else sp.expand(expr)


def series_equal(a, b, order: int = 12) -> bool:
    """``a == b`` as power series in z up to ``z**order``."""
    return sp.expand(series_in_z(sp.sympify(a) - sp.sympify(b), order)) == 0


def number(x):
    """An exact sympy number as a Fraction, a Float as a float (plain data for the runtime)."""
    x = sp.sympify(x)
    if x.is_Rational:
        return Fraction(int(x.p), int(x.q))
    if x.is_number and x.is_real:
        return float(x)
    raise ValueError(f"{x} is not a real number")


def _multiple_of_z(x, what):
    c = x / z
    if c.free_symbols:
        raise ValueError(f"{what} argument {x} is not a constant multiple of z")
    return number(sp.nsimplify(c) if not c.has(sp.Float) else c)


def atom_data(e) -> tuple:
    """An atom as data: ``("phi", k, c)`` for φ_k(c z), ``("res", a)`` for (1 − a z)^{-1}."""
    if isinstance(e, phi):
        return "phi", int(e.args[0]), _multiple_of_z(e.args[1], "φ")
    return "res", _multiple_of_z(e.args[0], "resolvent")


def phi_poly(expr) -> tuple:
    """``expr`` (a polynomial in the atoms) as data: ``((weight, (atom, ...)), ...)``.

    ``weight`` is a Fraction (a float for Float coefficients); atoms as :func:`atom_data`,
    sorted, repeated for powers; an empty product is the identity.  Raises ValueError for
    anything that is not such a polynomial.
    """
    expr = sp.expand(sp.sympify(expr))
    if expr == 0:
        return ()
    atoms = sorted(expr.atoms(*ATOMS), key=sp.default_sort_key)
    gens = atoms or [sp.Dummy()]
    try:
        poly = sp.Poly(expr, *gens)
        terms = []
        for powers, coeff in poly.terms():
            factors = []
            for atom, p in zip(atoms, powers):
                factors += [atom_data(atom)] * p
            terms.append((number(coeff), tuple(sorted(factors, key=str))))
    except (sp.PolynomialError, ValueError) as exc:
        raise ValueError(f"{expr} is not a polynomial in φ-functions/resolvents of z with constant weights") from exc
    return tuple(sorted(terms, key=lambda t: (len(t[1]), str(t[1]))))
