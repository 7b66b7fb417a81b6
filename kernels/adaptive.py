"""Adaptive step control settings, one step size per trajectory (methods.md §6): what a solve asks
for, as the kernels' runtime arguments (``arguments.run_adaptive``).  The algorithm itself — error
norm, initial step, proposal, controller, saving — is the loop IR of ``sdekit.codegen.drivers``.

* :class:`Controller` — I, PI and PID step-size controllers on ε = 1/EEst (methods.md §6.3).
* :class:`Options` — tolerances, controller, step limits, save times and stops of one solve.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CONTROLLERS = ("I", "PI", "PID")


@dataclass(frozen=True)
class Controller:
    """Step factor q = safety · ε_n^b1 · ε_{n−1}^b2 · ε_{n−2}^b3, clipped to [qmin, qmax], ε = 1/EEst.

    ``controller(kind, order)`` gives the standard gains for an estimate err = O(h^k), k = ``order`` (an
    embedded pair of order p̂: k = p̂ + 1; an SDE method of strong order p: k = p + ½, diffrax's error_order):
    I (HNW I §II.4 eq. (4.13), OrdinaryDiffEq's IController: b = (1/k, 0, 0)), PI (Gustafsson 1991;
    OrdinaryDiffEq's default b1 = 7/(10k), b2 = −2/(5k)), PID (Söderlind 2003, H312PID (1/18, 1/9, 1/18)/k, as
    OrdinaryDiffEq's PIDController with k = min(order, adaptive order) + 1).  On rejection
    q = max(qmin, safety · ε_n^b1) (< 1)."""

    kind: str
    beta: tuple
    safety: float = 0.9
    qmin: float = 0.2
    qmax: float = 10.0


def controller(kind: str, order: float, stochastic: bool = False, **kw) -> Controller:
    """Standard gains for a method whose error estimate is O(h^order) (:class:`Controller`; an embedded pair
    of order p̂: p̂ + 1; SDEs: strong order + ½; StochasticDiffEq's qmax = 9/8 for SDEs, so the Brownian tree is
    rarely split far back).  Earlier releases divided the I and PID gains by order + 1, one more than
    HNW and OrdinaryDiffEq (the steps moved less than the estimate asked)."""
    kind = kind.upper()
    k = order
    if kind == "I":
        beta = (1.0 / k, 0.0, 0.0)
    elif kind == "PI":
        beta = (0.7 / k, -0.4 / k, 0.0)
    elif kind == "PID":
        beta = (1 / 18 / k, 1 / 9 / k, 1 / 18 / k)
    else:
        raise ValueError(f"unknown controller {kind!r}; choose from {CONTROLLERS}")
    defaults = {"qmax": 9 / 8} if stochastic else {}
    return Controller(kind, beta, **{**defaults, **kw})


@dataclass
class Options:
    """What ``solve(..., rtol=, atol=)`` asked for (validated in sdekit.solve)."""

    rtol: np.ndarray
    atol: np.ndarray
    controller: Controller
    order: float                       # order of the error estimate (initial step)
    dt0: float | None = None
    dtmin: float = 0.0
    dtmax: float = np.inf
    maxiters: int = 100_000
    save_times: np.ndarray | None = None   # None: save every accepted step (single trajectory)
    tstops: np.ndarray = field(default_factory=lambda: np.empty(0))
    dense: bool = True                 # ODEs: saveat by dense output (between steps); SDEs step onto save times
