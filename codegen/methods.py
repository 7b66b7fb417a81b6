"""The method catalogue: each method is a tableau plus a noise treatment (data, not code).

Noise treatments for SDE methods (methods.md §5):
* ``"increment"`` — add ``G(y_n, t_n) ΔW`` (Euler–Maruyama; Kloeden & Platen 1992, §10.2).
* ``"convolution"`` — add the exact stochastic convolution ``∫ e^{(h-s)L} G dW(s)`` of the
  step, sampled jointly with ΔW (SETD1; methods.md §5.2; Jentzen & Kloeden 2009).
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .errors import ModelError
from .phi import phi, z
from .tableau import ButcherTableau, ExponentialTableau

R = sp.Rational
half = z / 2

EULER = ButcherTableau(A=((0,),), b=(1,), c=(0,), order=1, name="Euler")

RK4 = ButcherTableau(  # Kutta 1901; Hairer, Nørsett & Wanner I, Table II.1.2
    A=((0, 0, 0, 0), (R(1, 2), 0, 0, 0), (0, R(1, 2), 0, 0), (0, 0, 1, 0)),
    b=(R(1, 6), R(1, 3), R(1, 3), R(1, 6)), c=(0, R(1, 2), R(1, 2), 1), order=4, name="RK4",
)

ETD1 = ExponentialTableau(  # exponential (Nørsett) Euler; methods.md §1.3
    A=((0,),), b=(phi(1, z),), c=(0,), order=1, stiff_order=1, name="ETD1",
)

_b1 = phi(1, z) - 3 * phi(2, z) + 4 * phi(3, z)
_b23 = 2 * phi(2, z) - 4 * phi(3, z)
ETDRK4 = ExponentialTableau(  # Cox & Matthews 2002, JCP 176:430, eq. (26)-(29); methods.md §1.3
    A=(
        (0, 0, 0, 0),
        (phi(1, half) / 2, 0, 0, 0),
        (0, phi(1, half) / 2, 0, 0),
        (phi(1, half) * (phi(0, half) - 1) / 2, 0, phi(1, half), 0),
    ),
    b=(_b1, _b23, _b23, -phi(2, z) + 4 * phi(3, z)),
    c=(0, R(1, 2), R(1, 2), 1), order=4, stiff_order=2, name="ETDRK4",
)


@dataclass(frozen=True)
class Method:
    """A solver: tableau + noise treatment + the facts users look up."""

    name: str
    family: str                   # "rk" (full f) | "exprk" (semilinear, φ-functions of hL)
    tableau: object
    noise: str | None = None      # None (ODE method) | "increment" | "convolution"
    strong_order: float | None = None
    weak_order: float | None = None
    requires_additive: bool = False
    aliases: tuple = ()
    reference: str = ""

    @property
    def order(self) -> int:
        """Deterministic (classical) order."""
        return self.tableau.order

    @property
    def stiff_order(self) -> int | None:
        return getattr(self.tableau, "stiff_order", None)

    @property
    def stochastic(self) -> bool:
        return self.noise is not None

    @property
    def adaptive(self) -> bool:
        return False


CATALOGUE = (
    Method("Euler", "rk", EULER, reference="Euler 1768"),
    Method("RK4", "rk", RK4, reference="Kutta 1901"),
    Method("ETD1", "exprk", ETD1, aliases=("ExpEuler", "ExponentialEuler"),
           reference="Hochbruck & Ostermann 2010, Acta Numerica 19, §2.1"),
    Method("ETDRK4", "exprk", ETDRK4, reference="Cox & Matthews 2002, JCP 176:430"),
    Method("EM", "rk", EULER, noise="increment", strong_order=0.5, weak_order=1.0,
           aliases=("EulerMaruyama",), reference="Kloeden & Platen 1992, §10.2 (strong 1 for additive noise)"),
    Method("SETD1", "exprk", ETD1, noise="convolution", strong_order=1.0, weak_order=1.0, requires_additive=True,
           aliases=("StochasticExpEuler",), reference="Jentzen & Kloeden 2009, Proc R Soc A 465:649; methods.md §5.2"),
)

_BY_NAME = {n.lower(): m for m in CATALOGUE for n in (m.name, *m.aliases)}


def get_method(name: str) -> Method:
    """Look a method up by name or alias, case-insensitively."""
    if isinstance(name, Method):
        return name
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        known = ", ".join(m.name for m in CATALOGUE)
        raise ModelError(f"unknown method {name!r}; available: {known}") from None
