"""The method catalogue: each method is a tableau (``tables.py``) plus a family and a noise
treatment — data, not code; ``builders.py`` turns them into step schemes.

Families: ``rk`` (explicit RK on f = Ly + N), ``exprk`` (exponential RK / Lawson, φ(hL)),
``exprb`` (exponential Rosenbrock, φ(hJ) of the exact Jacobian J = L + ∂N/∂y per trajectory),
``rosenbrock`` (Rosenbrock-W, W = L), ``tase`` (RK-TASE / MSRKTASE, W = L), ``etdadams``
(exponential multistep), ``sra`` (Rößler SRA, additive noise).

Noise treatments for SDE methods (methods.md §5):
* ``"increment"`` — add ``G(y_n, t_n) ΔW`` (Euler–Maruyama; Kloeden & Platen 1992, §10.2).
* ``"milstein"`` — also ½ (G'G)(ΔW² − h) (Kloeden & Platen 1992, eq. 10.3.3).
* ``"convolution"`` — add the exact stochastic convolution ``∫ e^{(h-s)L} G dW(s)`` of the
  step, sampled jointly with ΔW (SETD1; methods.md §5.2; Jentzen & Kloeden 2009).
* ``"sra"`` — the SRA tableau itself uses ΔW and I_(1,0) (bridged jointly with W).
"""
from __future__ import annotations

from dataclasses import dataclass

from . import tables as tb
from .errors import ModelError

@dataclass(frozen=True)
class Method:
    """A solver: tableau + noise treatment + the facts users look up."""

    name: str
    family: str                   # "rk" | "exprk" | "exprb" | "rosenbrock" | "tase" | "etdadams" | "sra"
    tableau: object
    noise: str | None = None      # None (ODE method) | "increment" | "milstein" | "convolution" | "sra"
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
    def embedded_order(self) -> int | None:
        """Order of the embedded solution (error estimator), if the tableau has one."""
        return getattr(self.tableau, "embedded_order", None)

    @property
    def adaptive(self) -> bool:
        """Has an embedded error estimate, so ``solve(..., rtol=, atol=)`` can adapt its steps."""
        return self.embedded_order is not None


def _ode(name, family, tab, reference, **kw):
    return Method(name, family, tab, reference=reference, **kw)


CATALOGUE = (
    # explicit Runge–Kutta
    _ode("Euler", "rk", tb.EULER, "Euler 1768"),
    _ode("Heun", "rk", tb.HEUN, "Heun 1900; HNW I Table II.1.1"),
    _ode("RK4", "rk", tb.RK4, "Kutta 1901"),
    _ode("DP5", "rk", tb.DP5, "Dormand & Prince 1980, JCAM 6:19", aliases=("DOPRI5",)),
    _ode("Tsit5", "rk", tb.TSIT5, "Tsitouras 2011, Comput Math Appl 62:770"),
    # exponential Runge–Kutta and Lawson
    _ode("LawsonEuler", "exprk", tb.LAWSON_EULER, "Lawson 1967, SINUM 4:372"),
    _ode("ETD1", "exprk", tb.ETD1, "Hochbruck & Ostermann 2010, Acta Numerica 19, §2.1",
         aliases=("ExpEuler", "ExponentialEuler")),
    _ode("ETDRK2", "exprk", tb.ETDRK2, "Cox & Matthews 2002, JCP 176:430"),
    _ode("ETDRK3", "exprk", tb.ETDRK3, "Cox & Matthews 2002, JCP 176:430"),
    _ode("ETDRK4", "exprk", tb.ETDRK4, "Cox & Matthews 2002, JCP 176:430"),
    _ode("Krogstad", "exprk", tb.KROGSTAD, "Krogstad 2005, JCP 203:72", aliases=("ETDRK4B", "ETDRK4-B")),
    _ode("HochOst4", "exprk", tb.HOCHOST4, "Hochbruck & Ostermann 2005, SINUM 43:1069"),
    # exponential Rosenbrock (exact Jacobian per trajectory)
    _ode("Exprb32", "exprb", tb.EXPRB32, "Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786"),
    _ode("Exprb43", "exprb", tb.EXPRB43, "Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786"),
    # exponential multistep
    _ode("ETD2", "etdadams", tb.ETD2, "Cox & Matthews 2002, JCP 176:430 (variable steps: methods.md §1.6)",
         aliases=("ETDAdams2",)),
    _ode("ETDAdams3", "etdadams", tb.ETD_ADAMS3, "exact exponential Adams, methods.md §1.6 (started by ETDRK3)"),
    # RK-TASE and MSRKTASE (W = L)
    _ode("TASE-RK2", "tase", tb.TASE_RK2, "Bassenne, Fu & Mani 2021, JCP; midpoint", aliases=("TASERK2",)),
    _ode("TASE-RK3", "tase", tb.TASE_RK3, "Calvo, Montijano & Rández 2021, JCP 436:110316; Ralston-3",
         aliases=("TASERK3",)),
    _ode("TASE-RK4", "tase", tb.TASE_RK4, "Calvo, Montijano & Rández 2021, JCP 436:110316; RK4",
         aliases=("TASERK4",)),
    _ode("MSRKTASE2", "tase", tb.MSRKTASE2, "Calvo, Montijano & Rández 2025, J Sci Comput (W-conditions solved)"),
    _ode("MSRKTASE3", "tase", tb.MSRKTASE3, "Calvo, Montijano & Rández 2025, J Sci Comput (W-conditions solved)"),
    # Rosenbrock-W (W = L)
    _ode("Rosenbrock23", "rosenbrock", tb.ROSENBROCK23, "Shampine & Reichelt 1997, SISC 18:1"),
    _ode("ROS34PW2", "rosenbrock", tb.ROS34PW2, "Rang & Angermann 2005, BIT 45:761"),
    _ode("ROS34PW3", "rosenbrock", tb.ROS34PW3, "Rang & Angermann 2005, BIT 45:761"),
    # SDE methods
    Method("EM", "rk", tb.EULER, noise="increment", strong_order=0.5, weak_order=1.0,
           aliases=("EulerMaruyama",), reference="Kloeden & Platen 1992, §10.2 (strong 1 for additive noise)"),
    Method("Milstein", "rk", tb.EULER, noise="milstein", strong_order=1.0, weak_order=1.0,
           aliases=("RKMil",), reference="Kloeden & Platen 1992, eq. 10.3.3 (scalar or diagonal noise)"),
    Method("SETD1", "exprk", tb.ETD1, noise="convolution", strong_order=1.0, weak_order=1.0, requires_additive=True,
           aliases=("StochasticExpEuler",), reference="Jentzen & Kloeden 2009, Proc R Soc A 465:649; methods.md §5.2"),
    Method("SRA1", "sra", tb.SRA1, noise="sra", strong_order=1.5, weak_order=2.0, requires_additive=True,
           reference="Rößler 2010, SINUM 48:922"),
    Method("SRA3", "sra", tb.SRA3, noise="sra", strong_order=1.5, weak_order=3.0, requires_additive=True,
           reference="Rößler 2010, SINUM 48:922"),
    Method("SOSRA", "sra", tb.SOSRA, noise="sra", strong_order=1.5, weak_order=2.0, requires_additive=True,
           reference="Rackauckas & Nie, arXiv:1804.04344"),
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
