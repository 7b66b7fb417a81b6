"""Method families as types: each owns its tableau class, its scheme builder, its order-condition
check and the flags derived from a tableau (diffrax keeps a solver a small class around its
tableau; OrdinaryDiffEq.jl keeps tableau types apart from the stepping code).

A method is then data: a tableau (``tables.py``) plus a noise treatment (``methods.py``); its
family is the family of its tableau's type, so a new table gets its builder, its proof and its
flags without being listed anywhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import sympy as sp

from . import builders, order_conditions as oc
from .phi import phi_poly
from .tableau import (AdamsTableau, ButcherTableau, ExponentialTableau, ExpRosenbrockTableau, RosenbrockTableau,
                      SRATableau, TASETableau)


@dataclass(frozen=True)
class Family:
    """A tableau family.  ``build(tab, form) -> (statements, final terms, operators, extras)`` is
    the step scheme (``builders.py``); ``check(tab, max_order, **options) -> OrderReport`` its
    order conditions (``order_conditions.py``); ``operand``: what its operators are functions of."""

    name: str
    title: str
    tableau: type
    build: Callable
    check: Callable
    operand: str = ""              # "" (none) | "hL" (φ / resolvents of hL) | "hJ" (of the exact Jacobian)

    @property
    def needs_jacobian(self) -> bool:
        """Evaluates the exact Jacobian ∂f/∂y per trajectory and step (exponential Rosenbrock)."""
        return self.operand == "hJ"

    def check_order(self, tab, max_order=None, **options):
        try:
            return self.check(tab, max_order, **options)
        except TypeError as e:
            if "unexpected keyword" not in str(e):
                raise
            raise TypeError(f"check_order: {self.tableau.__name__} takes the options "
                            f"{_options(self.check)}, not {sorted(options)}") from None

    # ---- flags derived from a tableau of this family
    @staticmethod
    def embedded(tab) -> bool:
        """Carries embedded weights, so adaptive steps have an error estimate."""
        return getattr(tab, "embedded_order", None) is not None

    @staticmethod
    def fsal(tab) -> bool:
        """First same as last (only explicit RK tables can be; HNW I §II.5)."""
        return bool(getattr(tab, "fsal", False))

    @staticmethod
    def dense(tab) -> bool:
        """Has its own continuous extension b_i(θ) for output between steps."""
        return getattr(tab, "dense", None) is not None

    @staticmethod
    def phi_products(tab) -> bool:
        """Some operator is a product of φ atoms (φ_j φ_k), not a weighted sum of single atoms."""
        return any(len(atoms) > 1 for e in _operator_entries(tab) for _, atoms in phi_poly(e))


def _options(check) -> list:
    code = check.__code__
    return list(code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount])


def _operator_entries(tab):
    """The φ-polynomial entries of a tableau (none for families without φ operators)."""
    if isinstance(tab, (ExponentialTableau, ExpRosenbrockTableau)):
        return [sp.sympify(e) for e in (*tab.b, *(tab.bhat or ()), *(a for row in tab.A for a in row))]
    if isinstance(tab, TASETableau):
        return list(tab.operators)
    return []


FAMILIES = (
    Family("rk", "explicit RK", ButcherTableau, builders.rk, oc.check_rk),
    Family("exprk", "exponential RK", ExponentialTableau, builders.exprk, oc.check_exponential, "hL"),
    Family("exprb", "exponential Rosenbrock (exact J)", ExpRosenbrockTableau, builders.exprb, oc.check_exprb, "hJ"),
    Family("rosenbrock", "Rosenbrock-W (W = L)", RosenbrockTableau, builders.rosenbrock, oc.check_rosenbrock, "hL"),
    Family("tase", "RK-TASE (W = L)", TASETableau, builders.tase, oc.check_tase, "hL"),
    Family("etdadams", "exponential multistep", AdamsTableau, builders.etd_adams, oc.check_adams, "hL"),
    Family("sra", "stochastic RK (SRA)", SRATableau, builders.sra, oc.check_sra),
)
_BY_TYPE = {f.tableau: f for f in FAMILIES}


def family_of(tab) -> Family:
    """The family of a tableau, by its type."""
    try:
        return _BY_TYPE[type(tab)]
    except KeyError:
        raise TypeError(f"no method family for {type(tab).__name__}; families: "
                        f"{', '.join(f.tableau.__name__ for f in FAMILIES)}") from None


def check_order(tableau, max_order: int | None = None, **options) -> oc.OrderReport:
    """Check the order conditions of ``tableau`` up to ``max_order`` (default: the claimed order + 1,
    capped at :data:`.order_conditions.MAX_ORDER`), with its family's check; ``options`` are that
    check's (``embedded``, ``dense``, ``stiff``, ``weakened``, ``exact_jacobian``, ``deterministic``)."""
    return family_of(tableau).check_order(tableau, max_order, **options)
