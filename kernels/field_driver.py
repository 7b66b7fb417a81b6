"""The array-level fixed-step driver: one trajectory whose state is a whole array (a field on a grid),
its linear part a structured operator (``operators.py``), its nonlinearity a vectorised function.

It runs an ``ArrayPlan`` (``codegen.array_plan``: the catalogue method's step scheme with numeric
coefficients): stage evaluations N(U, t + c h) (+ L U for methods that treat L explicitly) and sums
Σ coef(h) · f(hL) v, with every φ-polynomial evaluated once per distinct step size and reused.
"""
from __future__ import annotations

import numpy as np

from ..abi import NACCEPT, NF, NREJECT, STATS, SUCCESS, UNSTABLE


def operator_values(plan, op, h: float, memo: dict):
    """(h', {name: value of the plan's operator at step size h'}), h' the first step size seen within
    rounding (12 significant digits) of h: a grid's equal steps, which differ in their last bits, pay once
    and are taken with one h' (coefficients and φ alike)."""
    key = float(f"{h:.12g}")
    if key not in memo:
        cache = {}
        memo[key] = h, {name: op.values(poly, h, cache) for name, poly in plan.operators.items()}
    return memo[key]


def run_fixed(plan, op, rhs, y0, times, save_steps, progress=None):
    """Step ``y0`` over the grid ``times`` with ``plan``; ``rhs(u, t)`` is N(u, t).  Returns (saved states
    at the step indices ``save_steps`` (NaN after a non-finite step), retcode, stats).  ``progress``: a
    callable of the step count done, or None."""
    y = np.array(y0, dtype=float)
    saved = np.full((len(save_steps),) + y.shape, np.nan)
    save_at = {int(s): i for i, s in enumerate(save_steps)}
    if 0 in save_at:
        saved[save_at[0]] = y
    with np.errstate(all="ignore"):     # a diverging state ends with retcode Unstable, not warnings
        return _steps(plan, op, rhs, y, times, saved, save_at, progress)


def _steps(plan, op, rhs, y, times, saved, save_at, progress):
    memo, nf, code, steps = {}, 0, SUCCESS, 0
    for n in range(len(times) - 1):
        t = float(times[n])
        h, values = operator_values(plan, op, float(times[n + 1] - times[n]), memo)
        regs, transforms = {"y": y}, {}     # transforms: the operator's of this step's registers
        for st in plan.statements:
            if st[0] == "rhs":
                _, target, state, c, full = st
                u = regs[state]
                f = rhs(u, t + c * h)
                regs[target] = f + op.apply(u) if full else f
                nf += 1
            else:
                _, target, terms = st
                regs[target] = op.combine([(coef(h), None if name is None else values[name], regs[vec])
                                           for coef, name, vec in terms], transforms)
        y = regs[plan.output]
        steps += 1
        if not np.all(np.isfinite(y)):
            code = UNSTABLE
            break
        if n + 1 in save_at:
            saved[save_at[n + 1]] = y
        if progress is not None:
            progress(n + 1)
    counts = {NF: nf, NACCEPT: steps, NREJECT: 0}
    return saved, code, {name: counts[k] for k, name in enumerate(STATS)}
