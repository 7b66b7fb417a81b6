"""A step scheme as a plan for the array-level driver (``kernels.field_driver``): the same
:class:`scheme.StepScheme` the fused kernels print, with each coefficient a numeric function of the
step size and each stage time a number, for states that are whole arrays (fields on grids) and linear
parts that are operators (``kernels.operators``)."""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .errors import ModelError
from .scheme import Combine, EvalRHS, PhiOperator

@dataclass(frozen=True)
class ArrayPlan:
    """``statements``: ("rhs", target, state, c, full) — f or N at t + c h; ("sum", target, terms) with
    terms ((coefficient(h), operator name or None, vector), ...).  ``operators``: name -> φ-polynomial."""

    method: str
    output: str
    statements: tuple
    operators: dict


def _coefficient(expr):
    """``expr`` (a polynomial in the step h) as a function of h."""
    expr = sp.sympify(expr)
    if any(x.name != "h" for x in expr.free_symbols):
        raise ModelError(f"array plans take one-step coefficients in h only, got {expr}")
    if not expr.free_symbols:
        value = float(expr)
        return lambda h: value
    return sp.lambdify(tuple(expr.free_symbols), expr, "math")


def array_plan(scheme) -> ArrayPlan:
    """The fixed-step plan of ``scheme`` (its live statements: not the error estimate).  Refused with a
    ModelError: multistep schemes, exponential Rosenbrock (the Jacobian's φ-actions are not there yet)."""
    if scheme.startup is not None or scheme.lags or scheme.history:
        raise ModelError(f"{scheme.method}: multistep methods do not run on fields yet")
    if scheme.needs_jacobian:
        raise ModelError(f"{scheme.method}: exponential Rosenbrock methods do not run on fields yet "
                         "(they need φ-actions of the Jacobian)")
    statements = []
    for s in scheme.live_statements():
        if isinstance(s, EvalRHS):
            statements.append(("rhs", s.target, s.state, float(s.c), s.part == "full"))
        elif isinstance(s, Combine):
            statements.append(("sum", s.target, tuple((_coefficient(t.coef), t.op, t.vec) for t in s.terms)))
        else:
            raise ModelError(f"{scheme.method}: a {type(s).__name__} step does not run on fields")
    ops = {name: op.poly for name, op in scheme.all_operators().items() if isinstance(op, PhiOperator)}
    return ArrayPlan(scheme.method, scheme.output, tuple(statements), ops)
