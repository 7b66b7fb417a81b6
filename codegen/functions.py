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


#: sympy's unevaluated operations: refused at build (a printer would emit code that fails or loops at run time)
UNEVALUATED = (sp.Sum, sp.Product, sp.Integral, sp.Derivative, sp.Limit)


def check_expressions(m, what: str):
    """ModelError for an entry of the Matrix ``m`` that is not an expression (a relation such as sp.Eq, a boolean):
    ``codegen.analysis`` checks each input where it becomes a Matrix."""
    for e in m:
        if not isinstance(e, sp.Expr):
            raise ModelError(f"{what} has the entry {e}, a {type(e).__name__}, not an expression (a condition "
                             "belongs inside sp.Piecewise)")


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
            names = ", ".join(sorted(k.__name__ for k, v in SUPPORTED.items() if set(v) == set(BACKENDS)))
            raise ModelError(f"{what} uses {f.func.__name__}, which the {' and '.join(missing)} backend"
                             f"{'s do' if len(missing) > 1 else ' does'} not support; supported functions: {names}")


def check_printable(expr, what: str):
    """ModelError for what a backend printer cannot print (complex numbers, Integral, Derivative, ...):
    each printer tries ``expr`` at build (networks as placeholders), so nothing fails later in generated code."""
    from .emit_numpy import pr as numpy_pr
    from .neural import NetCall
    from .numba_lanes import pr as numba_pr
    m = sp.Matrix(expr)
    for e in m:
        for a in sp.preorder_traversal(e):
            if isinstance(a, UNEVALUATED):
                raise ModelError(f"{what} contains the unevaluated {type(a).__name__} {a}: the backends print "
                                 "closed forms; evaluate it first (e.g. with .doit())")
    if m.has(sp.I):
        raise ModelError(f"{what} is complex ({[e for e in m if e.has(sp.I)][0]}): sdekit integrates real states; "
                         "split a complex state into its real and imaginary parts")
    m = m.xreplace({c: sp.Dummy("net") for c in m.atoms(NetCall)})
    for backend, pr in (("numpy", numpy_pr), ("numba", numba_pr)):
        for e in m:
            try:
                pr(e)
            except Exception as exc:
                kinds = sorted({type(a).__name__ for a in sp.preorder_traversal(e) if not isinstance(a, (sp.Symbol,
                                sp.Number)) and not isinstance(a, sp.Function)} - {"Add", "Mul", "Pow", "Tuple"})
                raise ModelError(f"{what}: the {backend} backend cannot print {e} ({type(exc).__name__}); "
                                 f"evaluate {', '.join(kinds) or 'it'} first (e.g. with .doit())") from None
