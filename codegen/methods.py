"""The method catalogue: each method is a tableau (``tables.py``) plus a noise treatment — data,
not code.  Its family is that of the tableau's type (``families.py``: builder, order check, flags):
``rk`` (explicit RK on f = Ly + N), ``exprk`` (exponential RK / Lawson, φ(hL)), ``exprb``
(exponential Rosenbrock, φ(hJ) of the exact Jacobian J = L + ∂N/∂y per trajectory),
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

import difflib
from dataclasses import dataclass

from . import tables as tb
from .errors import ModelError
from .families import Family, family_of

@dataclass(frozen=True)
class Method:
    """A solver: tableau + noise treatment + the facts users look up."""

    name: str
    tableau: object
    noise: str | None = None      # None (ODE method) | "increment" | "milstein" | "convolution" | "sra"
    strong_order: float | None = None
    weak_order: float | None = None
    requires_additive: bool = False
    aliases: tuple = ()
    reference: str = ""

    @property
    def family(self) -> Family:
        """The family of the tableau's type: its builder, order check and flags (``families.py``)."""
        return family_of(self.tableau)

    @property
    def fsal(self) -> bool:
        return self.family.fsal(self.tableau)

    @property
    def phi_products(self) -> bool:
        return self.family.phi_products(self.tableau)

    @property
    def exact_linear(self) -> bool:
        """Integrates the linear part exactly (φ functions of hL or hJ: exponential RK and Lawson, exponential
        Rosenbrock, exponential multistep), so its steps may far outgrow the time scale of L; a cubic Hermite
        interpolant over such a step is not accurate, and adaptive solves step onto the save times instead."""
        return self.family.name in ("exprk", "exprb", "etdadams")

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


def _ode(name, tab, reference, **kw):
    return Method(name, tab, reference=reference, **kw)


CATALOGUE = (
    # explicit Runge–Kutta
    _ode("Euler", tb.EULER, "Euler 1768"),
    _ode("Heun", tb.HEUN, "Heun 1900; HNW I Table II.1.1"),
    _ode("RK4", tb.RK4, "Kutta 1901"),
    _ode("DP5", tb.DP5, "Dormand & Prince 1980, JCAM 6:19", aliases=("DOPRI5",)),
    _ode("Tsit5", tb.TSIT5, "Tsitouras 2011, Comput Math Appl 62:770"),
    # exponential Runge–Kutta and Lawson
    _ode("LawsonEuler", tb.LAWSON_EULER, "Lawson 1967, SINUM 4:372"),
    _ode("ETD1", tb.ETD1, "Hochbruck & Ostermann 2010, Acta Numerica 19, §2.1",
         aliases=("ExpEuler", "ExponentialEuler")),
    _ode("ETDRK2", tb.ETDRK2, "Cox & Matthews 2002, JCP 176:430"),
    _ode("ETDRK3", tb.ETDRK3, "Cox & Matthews 2002, JCP 176:430"),
    _ode("ETDRK4", tb.ETDRK4, "Cox & Matthews 2002, JCP 176:430"),
    _ode("Krogstad", tb.KROGSTAD, "Krogstad 2005, JCP 203:72", aliases=("ETDRK4B", "ETDRK4-B")),
    _ode("HochOst4", tb.HOCHOST4, "Hochbruck & Ostermann 2005, SINUM 43:1069"),
    # exponential Rosenbrock (exact Jacobian per trajectory)
    _ode("Exprb32", tb.EXPRB32, "Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786"),
    _ode("Exprb43", tb.EXPRB43, "Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786"),
    # exponential multistep
    _ode("ETD2", tb.ETD2, "Cox & Matthews 2002, JCP 176:430 (variable steps: methods.md §1.6)",
         aliases=("ETDAdams2",)),
    _ode("ETDAdams3", tb.ETD_ADAMS3, "exact exponential Adams, methods.md §1.6 (started by ETDRK3)"),
    # RK-TASE and MSRKTASE (W = L)
    _ode("TASE-RK2", tb.TASE_RK2, "Bassenne, Fu & Mani 2021, JCP; midpoint", aliases=("TASERK2",)),
    _ode("TASE-RK3", tb.TASE_RK3, "Calvo, Montijano & Rández 2021, JCP 436:110316; Ralston-3",
         aliases=("TASERK3",)),
    _ode("TASE-RK4", tb.TASE_RK4, "Calvo, Montijano & Rández 2021, JCP 436:110316; RK4",
         aliases=("TASERK4",)),
    _ode("MSRKTASE2", tb.MSRKTASE2, "Calvo, Montijano & Rández 2025, J Sci Comput (W-conditions solved)"),
    _ode("MSRKTASE3", tb.MSRKTASE3, "Calvo, Montijano & Rández 2025, J Sci Comput (W-conditions solved)"),
    # Rosenbrock-W (W = L)
    _ode("Rosenbrock23", tb.ROSENBROCK23, "Shampine & Reichelt 1997, SISC 18:1"),
    _ode("ROS34PW2", tb.ROS34PW2, "Rang & Angermann 2005, BIT 45:761"),
    _ode("ROS34PW3", tb.ROS34PW3, "Rang & Angermann 2005, BIT 45:761"),
    # SDE methods
    Method("EM", tb.EULER, noise="increment", strong_order=0.5, weak_order=1.0,
           aliases=("EulerMaruyama",), reference="Kloeden & Platen 1992, §10.2 (strong 1 for additive noise)"),
    Method("Milstein", tb.EULER, noise="milstein", strong_order=1.0, weak_order=1.0,
           aliases=("RKMil",), reference="Kloeden & Platen 1992, eq. 10.3.3 (scalar or diagonal noise)"),
    Method("SETD1", tb.ETD1, noise="convolution", strong_order=1.0, weak_order=1.0, requires_additive=True,
           aliases=("StochasticExpEuler",), reference="Jentzen & Kloeden 2009, Proc R Soc A 465:649; methods.md §5.2"),
    Method("SRA1", tb.SRA1, noise="sra", strong_order=1.5, weak_order=2.0, requires_additive=True,
           reference="Rößler 2010, SINUM 48:922"),
    # weak order 2, not the 3 the StochasticDiffEq docs quote: its OU variance is wrong at h³
    # (test_catalogue.test_sra_weak_order_on_the_ornstein_uhlenbeck_variance)
    Method("SRA3", tb.SRA3, noise="sra", strong_order=1.5, weak_order=2.0, requires_additive=True,
           reference="Rößler 2010, SINUM 48:922"),
    Method("SOSRA", tb.SOSRA, noise="sra", strong_order=1.5, weak_order=2.0, requires_additive=True,
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
        close = difflib.get_close_matches(str(name).lower(), list(_BY_NAME), n=1)
        hint = f" (did you mean {_BY_NAME[close[0]].name!r}?)" if close else ""
        raise ModelError(f"unknown method {name!r}{hint}; available: {known}; and on the models of sk.diffusion, the "
                         "samplers of sk.diffusion.SAMPLERS ('ddim', 'dpmsolver++2m', 'unipc2-bh2', ...)") from None
