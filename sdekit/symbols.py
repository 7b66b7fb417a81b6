"""Declaring models: states, parameters, time, networks."""
from __future__ import annotations

import sympy as sp

from sdekit.codegen.analysis import Param, t
from sdekit.codegen.errors import ModelError
from sdekit.codegen.neural import MLP, External

__all__ = ["states", "params", "t", "MLP", "External"]


def states(name: str, d: int) -> sp.Matrix:
    """Column Matrix of d real state symbols ``name0 .. name{d-1}``."""
    if not isinstance(d, int) or d < 1:
        raise ModelError(f"states: dimension must be a positive int, got {d!r}")
    if not str(name).isidentifier():
        raise ModelError(f"states: name must be an identifier, got {name!r}")
    return sp.Matrix([sp.Symbol(f"{name}{i}", real=True) for i in range(d)])


def params(names: str):
    """Runtime parameters, e.g. ``k = params("k")`` or ``a, b = params("a b")``.

    Their values are given at solve time (scalars, or arrays of shape (n,) in an
    Ensemble) and never trigger a recompile.
    """
    syms = tuple(Param(n, real=True) for n in str(names).replace(",", " ").split())
    if not syms:
        raise ModelError("params: give at least one name")
    for s in syms:
        if not s.name.isidentifier():
            raise ModelError(f"params: {s.name!r} is not an identifier")
    return syms[0] if len(syms) == 1 else syms
