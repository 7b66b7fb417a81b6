"""Lower user expressions to printable straight-line form, shared by every emitter.

User symbols get stable, collision-free names (state i -> ``y[i]`` in the emitter's
notation, parameter ``k`` -> ``p_k``); each distinct network call becomes one forward
pass whose outputs are named ``<net>_out[i]``; common subexpressions are extracted with
``sympy.cse``.  Emitters only print the result.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .analysis import SemilinearForm, t
from .errors import ModelError
from .neural import NetCall, NetGrad, net_calls, net_grads


@dataclass(frozen=True)
class NetGroup:
    """One forward pass: ``out = net(inputs)`` (inputs already lowered); ``jacobian``: also the
    network's Jacobian ``out_jac`` (n_out x n_in) at the same inputs, in the same pass."""

    out: str
    net: object
    inputs: tuple
    jacobian: bool = False


@dataclass(frozen=True)
class Lowered:
    """``assignments`` (name, expr) then ``outputs`` (exprs), after ``net_groups`` run."""

    net_groups: tuple
    assignments: tuple
    outputs: tuple
    params: tuple        # (param name, lowered symbol name) actually used

    @property
    def uses_time(self) -> bool:
        return any(e.has(TIME) for _, e in self.assignments) or any(sp.sympify(e).has(TIME) for e in self.outputs)


TIME = sp.Symbol("t")


def float_text(e, fallback) -> str:
    """A sympy Float as Python source: where it is a double (precision ≤ 53 bits: a user's float), ``repr``, which
    parses back to the same double (sympy prints 15 significant digits: 1/3 as 0.333333333333333, 1e-15 off, and
    0.1 + 0.2 as 0.3; the C printer prints 17); else ``fallback(e)``, its own digits (tableau coefficients kept to
    higher precision, which parse to their nearest double)."""
    value = float(e)
    return repr(value) if e._prec <= 53 and math.isfinite(value) else fallback(e)


class ExactFloats:
    """A sympy printer mixin: floats by :func:`float_text`."""

    def _print_Float(self, e):
        return float_text(e, super()._print_Float)


class _ExactNumPyPrinter(ExactFloats, NumPyPrinter):
    """sympy's NumPyPrinter with floats to the last bit (what ``lambdify`` prints with)."""


def lambdify_exact(args, expr):
    """``sympy.lambdify(args, expr, "numpy")`` with a user's floats as the doubles they are (:func:`float_text`):
    the host's functions of the params (L, G, ℓ(t)) and the routed array driver's N compute what the kernels do."""
    printer = _ExactNumPyPrinter({"fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True})
    return sp.lambdify(args, expr, "numpy", printer=printer)


def param_name(p) -> str:
    return f"p_{p.name}"


def symbol_map(form: SemilinearForm, state_name) -> dict:
    """User symbol -> lowered symbol. ``state_name(i)`` gives the emitter's name of y_i."""
    m = {s: sp.Symbol(state_name(i)) for i, s in enumerate(form.states)}
    m.update({p: sp.Symbol(param_name(p)) for p in form.params})
    m[t] = TIME
    return m


def lower(exprs, form: SemilinearForm, state_name, net_out_name=lambda g, i: f"{g}[{i}]",
          net_jac_name=lambda g, i, j: f"{g}_jac[{i}][{j}]") -> Lowered:
    """Lower the expressions ``exprs`` (an iterable of sympy expressions)."""
    subs = symbol_map(form, state_name)
    exprs = [sp.sympify(e).xreplace(subs) for e in exprs]
    groups, replace = [], {}
    calls = set().union(*(net_calls(e) for e in exprs), *(net_grads(e) for e in exprs)) if exprs else set()
    for call in sorted(calls, key=lambda c: (isinstance(c, NetGrad), sp.default_sort_key(c))):
        if any(a.has(NetCall) for a in call.inputs):
            raise ModelError(f"network {call.net.name!r} is applied to another network's output; not supported yet")
        key = (call.net.name, call.inputs)
        k = next((k for k, g in enumerate(groups) if (g.net.name, g.inputs) == key), None)
        if k is None:
            out = f"{call.net.name}_out" + (f"_{len(groups)}" if any(g.net.name == call.net.name for g in groups) else "")
            groups.append(NetGroup(out=out, net=call.net, inputs=call.inputs))
            k = len(groups) - 1
        group = groups[k]
        if isinstance(call, NetGrad):
            if not group.jacobian:
                groups[k] = group = NetGroup(group.out, group.net, group.inputs, jacobian=True)
            replace[call] = sp.Symbol(net_jac_name(group.out, call.index, call.wrt))
            continue
        replace[call] = sp.Symbol(net_out_name(group.out, call.index))
    exprs = [e.xreplace(replace) for e in exprs]
    assignments, outputs = sp.cse(exprs, symbols=sp.numbered_symbols("c_"), optimizations="basic")
    used = set().union(*(sp.sympify(e).free_symbols for e in outputs), *(e.free_symbols for _, e in assignments),
                       *(sp.sympify(a).free_symbols for g in groups for a in g.inputs)) if exprs else set()
    params = tuple((p.name, param_name(p)) for p in form.params if sp.Symbol(param_name(p)) in used)
    return Lowered(tuple(groups), tuple(assignments), tuple(outputs), params)
