"""The functions a model may use, as data: each sympy function and the backends that print it.

A model is checked against this table when it is built (:func:`check_functions`): a function that
some backend cannot print is refused then, with a ``ModelError`` naming it and those backends —
never at solve time in generated code.  Printing itself stays in the backend printers
(``numba_lanes._KernelPrinter``: scalar ``math``; ``emit_numpy._ArrayPrinter``: numpy/scipy.special);
tests/test_functions.py evaluates every entry on every backend against numpy/scipy.
"""
from __future__ import annotations

import sympy as sp
from sympy.core.function import AppliedUndef

from .errors import ModelError

BACKENDS = ("numpy", "numba")
_ALL = BACKENDS

#: sympy function -> backends that print it (sqrt, powers and arithmetic are not functions here)
SUPPORTED = {
    sp.sin: _ALL, sp.cos: _ALL, sp.tan: _ALL, sp.asin: _ALL, sp.acos: _ALL, sp.atan: _ALL, sp.atan2: _ALL,
    sp.sinh: _ALL, sp.cosh: _ALL, sp.tanh: _ALL, sp.asinh: _ALL, sp.acosh: _ALL, sp.atanh: _ALL,
    sp.exp: _ALL, sp.log: _ALL, sp.Abs: _ALL, sp.sign: _ALL, sp.floor: _ALL, sp.ceiling: _ALL,
    sp.Max: _ALL, sp.Min: _ALL, sp.Heaviside: _ALL, sp.Piecewise: _ALL,
    sp.erf: _ALL, sp.erfc: _ALL, sp.gamma: _ALL, sp.loggamma: _ALL,
    sp.besselj: ("numpy",),          # scipy.special.jv; Numba has no Bessel function: refused at build
}


def check_functions(expr, what: str):
    """ModelError for the first function in ``expr`` that not every backend prints."""
    from .neural import NetCall
    for f in sorted(sp.Matrix(expr).atoms(sp.Function), key=str):
        if isinstance(f, NetCall):
            continue
        if isinstance(f, AppliedUndef):
            raise ModelError(f"{what} calls the undefined function {f.func.__name__}(...): give it as a sympy "
                             "expression, or as a network (sdekit.MLP)")
        backends = SUPPORTED.get(f.func, ())
        missing = [b for b in BACKENDS if b not in backends]
        if missing:
            names = ", ".join(sorted(k.__name__ for k in SUPPORTED))
            raise ModelError(f"{what} uses {f.func.__name__}, which the {' and '.join(missing)} backend"
                             f"{'s do' if len(missing) > 1 else ' does'} not support; supported functions: {names}")
