"""The numpy emitter: the model's functions and the solver's loop IR (``drivers``, printed by
``print_numpy``) as one module vectorised over the ensemble.

Vectors are arrays of shape ``(d, n)`` (structure of arrays, one row per component, one
column per trajectory).  Operators of a scalar/diagonal ``L`` are arrays of shape
``(1 or d, n or 1)`` applied with ``*``; dense ones are ``(n or 1, d, d)`` applied with
``apply_dense``.  This is the reference backend and the no-numba fallback.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import SciPyPrinter

from . import loop
from .loop import Writer
from .analysis import SemilinearForm
from .builders import milstein_terms
from .drivers import adaptive_loop, fixed_loop
from .lane_operators import jacobian_operator_name
from .errors import ModelError
from .lowering import ExactFloats, lower
from .neural import External
from .neural import activation, activation_grad
from ..abi import LINEAR_ARGS, NUMPY_MODEL_ARGS
from .print_numpy import PRELUDE, NumpyLoopPrinter
from .scheme import EvalJacobian, EvalNoise, EvalRHS, StepScheme, operator_layout


class ProductPowers:
    """A printer mixin: x**3, x**4 of a symbol as products.  numpy's power of a float array by an integer other
    than 2 calls pow per element: 6x the products' cost for 3 x 10^5 numbers, 10x for 256 numbers of both signs."""

    def _print_Pow(self, e, rational=False):
        if e.exp.is_Integer and int(e.exp) in (3, 4) and (e.base.is_Symbol or isinstance(e.base, sp.Indexed)):
            from sympy.printing.precedence import precedence
            base = self.parenthesize(e.base, precedence(e))
            return "(" + "*".join([base] * int(e.exp)) + ")"
        return super()._print_Pow(e, rational=rational)


class _ArrayPrinter(ExactFloats, ProductPowers, SciPyPrinter):
    """numpy code (special functions from scipy.special; the table is codegen/functions.py); Max/Min as
    nested elementwise numpy.maximum/minimum (sympy's default needs functools); small powers as products."""

    def _print_Max(self, e):
        return self._nested(e.args, "numpy.maximum")

    def _print_Min(self, e):
        return self._nested(e.args, "numpy.minimum")

    def _nested(self, args, fn):
        out = self._print(args[-1])
        for a in reversed(args[:-1]):
            out = f"{fn}({self._print(a)}, {out})"
        return out


_printer = _ArrayPrinter({"fully_qualified_modules": True})


def pr(expr) -> str:
    return _printer.doprint(sp.sympify(expr))


def _state(i):
    return f"y[{i}]"


def _body(lowered, indent="    "):
    lines = [f"{indent}{var} = p[{name!r}]" for name, var in lowered.params]
    for g in lowered.net_groups:
        ins = ", ".join(pr(a) for a in g.inputs)
        act = f"act_{g.net.activation}"
        if isinstance(g.net, External):
            if g.jacobian:
                raise ModelError(f"External network {g.net.name!r} has no Jacobian: exponential Rosenbrock methods "
                                 "need ∂N/∂y; use an exponential (ETD) or explicit method")
            lines.append(f"{indent}{g.out} = external_forward(nets[{g.net.name!r}], ({ins},), {g.net.sizes[1]})")
            continue
        if g.jacobian:
            lines.append(f"{indent}{g.out}, {g.out}_jac = mlp_forward_jacobian(nets[{g.net.name!r}], {act}, "
                         f"{act}_grad, ({ins},))")
        else:
            lines.append(f"{indent}{g.out} = mlp_forward(nets[{g.net.name!r}], {act}, ({ins},))")
    lines += [f"{indent}{var} = {pr(e)}" for var, e in lowered.assignments]
    return lines


def _activation_functions(form, grad: bool) -> list:
    """``act_<kind>(x)`` (and ``act_<kind>_grad``: σ', for the networks' Jacobians) of each activation
    the model's networks use, printed from ``codegen.neural.ACTIVATIONS``; ``mlp_forward`` applies them."""
    lines = []
    for kind in sorted({net.activation for net in form.nets.values() if not isinstance(net, External)}):
        for suffix, expr in [("", activation(kind))] + ([("_grad", activation_grad(kind))] if grad else []):
            lines += [f"def act_{kind}{suffix}(x):", f"    return {pr(expr)}", ""]
    return lines


def _vector_function(name, args, doc, exprs, form, shape=None):
    lowered = lower(exprs, form, _state)
    lines = [f"def {name}({args}):", f'    """{doc}"""'] + _body(lowered)
    if shape is None:
        lines.append("    out = numpy.empty_like(y)")
        lines += [f"    out[{i}] = {pr(e)}" for i, e in enumerate(lowered.outputs)]
    else:
        rows, cols = shape
        lines.append(f"    out = numpy.empty(({rows}, {cols}) + numpy.shape(y)[1:], dtype=y.dtype)")
        lines += [f"    out[{i}, {j}] = {pr(lowered.outputs[i * cols + j])}" for i in range(rows) for j in range(cols)]
    lines.append("    return out")
    return lines


def _jacobian_function(form):
    """``jacobian(y, t, p, nets, L)``: J̃ = [[L + ∂N/∂y, ∂N/∂t], [0, 0]], lanes last: (d+1, d+1, n)."""
    d = form.dim
    lowered = lower(form.forcing_jacobian(), form, _state)
    lines = ["def jacobian(y, t, p, nets, L):", f'    """{JACOBIAN_DOC}"""'] + _body(lowered)
    lines.append(f"    out = numpy.zeros(({d + 1}, {d + 1}, y.shape[1]), dtype=y.dtype)")
    for i, j, e in form.jacobian_entries(lowered.outputs, d):
        lines.append(f"    out[{i}, {j}] = {pr(e)}")
    lines.append(f"    return add_linear(out, L, {form.linear_structure!r})")
    return lines


JACOBIAN_DOC = ("J~ = [[L + dN/dy, dN/dt], [0, 0]] per trajectory, shape (d+1, d+1, n) (sympy derivatives; "
                "networks by forward mode through their layers).")


def _rhs_function(form):
    """``rhs(y, t, p, nets, L)``: the full right-hand side f = L y + c + N (initial step, dense output)."""
    call = "forcing(y, t, p, nets)"
    if form.linear_structure != "zero":
        call += " + " + _apply("dense" if form.linear_structure == "dense" else "elementwise", "L", "y")
    return ["def rhs(y, t, p, nets, L):", '    """f = L y + c(t) + N(y, t)."""', f"    return {call}"]


def _apply(layout, op, vec):
    return f"apply_dense({op}, {vec})" if layout == "dense" else f"{op} * {vec}"


def _term(form, scheme, term, adaptive) -> str:
    if term.op is None:
        vec = term.vec
    elif term.op in scheme.jacobian_operators:
        vec = f"apply_augmented({jacobian_operator_name(term.op)}, {term.vec}, {pr(term.aug)})"
    elif adaptive:    # each lane's own, from the IR (lane_operators): (D, n) or (D, D, n)
        dense = operator_layout(form, scheme.all_operators()[term.op]) == "dense"
        vec = f"matvec(op_{term.op}, {term.vec})" if dense else f"op_{term.op} * {term.vec}"
    else:
        vec = _apply(operator_layout(form, scheme.all_operators()[term.op]), f"ops[{term.op!r}]", term.vec)
    return vec if term.coef == 1 else f"({pr(term.coef)})*{vec}"


def _noise_product(form, inc):
    if form.noise == "scalar":
        return f"G * {inc}[0]"
    if form.noise == "diagonal":
        return f"G * {inc}"
    return f"numpy.einsum('ij...,j...->i...', G, {inc})"


def _statement(form, scheme, s, adaptive) -> list:
    if isinstance(s, EvalRHS):
        call = f"forcing({s.state}, {_time(form, s.c)}, p, nets)"
        if s.part == "full" and form.linear_structure != "zero":
            layout = "dense" if form.linear_structure == "dense" else "elementwise"
            call += f" + {_apply(layout, 'L', s.state)}"
        return [f"{s.target} = {call}"]
    if isinstance(s, EvalJacobian):
        return [f"Jt[...] = jacobian({s.state}, {_time(form, s.c)}, p, nets, L)  # its operators follow (loop IR)"]
    if isinstance(s, EvalNoise):
        if s.increment == "milstein":
            dw = "dW[0]" if form.noise == "scalar" else "dW"
            return [f"{s.target} = 0.5 * milstein_gg({s.state}, {_time(form, s.c)}, p) * ({dw} * {dw} - h)"]
        inc = "dW" if s.increment == "dW" else "dI"
        evaluate = [] if _constant_diffusion(form) else [f"G = diffusion({s.state}, {_time(form, s.c)}, p)"]
        return evaluate + [f"{s.target} = {_noise_product(form, inc)}"]
    return [f"{s.target} = " + " + ".join(_term(form, scheme, term, adaptive) for term in s.terms)]


def _constant_diffusion(form) -> bool:
    """G reads neither y nor t (additive, autonomous noise): the kernel evaluates it once (``prologue``)."""
    return form.stochastic and form.additive and not form.time_dependent("diffusion")


def _time(form, c) -> str:
    """The stage time t + c h, or None where the model does not read t (its lanes keep no times)."""
    if not form.reads_t:
        return "None"
    return f"t + {pr(c * sp.Symbol('h'))}" if c else "t"


class _Hooks:
    """What the numpy printer delegates: the scheme's statements on (d, n) arrays, the full
    right-hand side, register copies (registers are never written in place: a copy is a name) and,
    for fixed steps, the operators of step class ``hc`` from the kernel's ``operators`` argument
    (adaptive kernels compute each lane's own in the IR)."""

    def __init__(self, form, scheme, adaptive):
        self.form, self.scheme, self.adaptive = form, scheme, adaptive

    def prologue(self, w):
        w("t, h = t_l, h_l  # the lanes' step start and size, as the statements read them" if self.form.reads_t else
          "h = h_l  # the lanes' step size, as the statements read it")
        for k in range(1, self.scheme.lags + 1):
            w(f"h{k} = hp{k}  # previous step sizes (multistep)")
        if self.scheme.needs_dW and _constant_diffusion(self.form):
            w("G = diffusion(y, None, p)  # additive, autonomous noise: G once")

    def statement(self, w, s):
        if isinstance(s, loop.Stages):
            for st in s.statements:
                for line in _statement(self.form, self.scheme, st, self.adaptive):
                    w(line)
        elif isinstance(s, loop.Rhs):
            w(f"{s.target} = rhs({s.state}, {s.t}, p, nets, L)")
        elif isinstance(s, loop.Copy):
            w(f"{s.dst} = {s.src}")
        elif isinstance(s, loop.Operators):
            w(f"ops = operators({s.index})")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no numpy printer for {type(s).__name__}")


def numpy_arguments(form: SemilinearForm, scheme: StepScheme, adaptive: bool) -> tuple:
    """The numpy kernel's model arguments (after the ABI's): params, networks, numeric L, then the
    fixed steps' operator tables (``operators(hc)``) or the adaptive lanes' L in the kernels' layout
    (``Lm``, ``S_L``: ``abi.LINEAR_ARGS``), and whether to show a progress bar."""
    lanes_need_L = adaptive and scheme.all_operators() and form.linear_structure != "zero"
    p, nets, L, ops, progress = NUMPY_MODEL_ARGS
    return (p, nets, L, *(LINEAR_ARGS if lanes_need_L else () if adaptive else (ops,)), progress)


def emit_numpy(form: SemilinearForm, scheme: StepScheme, adaptive: bool = False) -> str:
    """Source of the numpy module for ``scheme`` on ``form``: the model's functions and the driver
    (``drivers.fixed_loop`` or ``adaptive_loop``) printed over all trajectories at once."""
    args = numpy_arguments(form, scheme, adaptive)
    kernel = (adaptive_loop(scheme, form.stochastic, args, form.linear_structure, form.reads_t) if adaptive else
              fixed_loop(scheme, form.stochastic, args, form.reads_t))
    printer = NumpyLoopPrinter(kernel, _Hooks(form, scheme, adaptive))
    d = form.dim
    lines = [
        f'"""sdekit generated: {scheme.method} {"adaptive " if adaptive else ""}kernel, numpy backend.',
        "",
        f"state dimension {d}, L {form.linear_structure}, noise {form.noise}.",
        "",
        *("    " + ln for ln in str(scheme).splitlines()),
        '"""',
        "from fractions import Fraction",
        "",
        "import numpy",
        "import numpy as np",
        "import scipy.special",
        "from sdekit.kernels.numpy_runtime import (add_linear, apply_augmented, apply_dense, external_forward, matvec,",
        "                                          mlp_forward, mlp_forward_jacobian, phi_lanes)",
        *printer.imports(),
        "",
        f"D = DIM = {d}",
        f"M = {form.noise_dim}",
        "",
    ]
    lines += _activation_functions(form, scheme.needs_jacobian)
    lines += _vector_function("forcing", "y, t, p, nets", "c(t) + N(y, t), rows of shape (n,).",
                              list(form.forcing), form) + [""]
    if form.stochastic:
        G = form.diffusion
        shape = G.shape if form.noise == "general" else None
        lines += _vector_function("diffusion", "y, t, p", f"G(y, t) for {form.noise} noise.", list(G), form, shape)
        lines.append("")
    if scheme.needs_jacobian:
        lines += _jacobian_function(form) + [""]
    lines += _rhs_function(form) + [""]
    if scheme.needs_milstein:
        lines += _vector_function("milstein_gg", "y, t, p", "(G'G)(y, t) of the Milstein correction.",
                                  milstein_terms(form), form) + [""]
    lines += PRELUDE.strip("\n").splitlines() + ["", ""]
    w = Writer()
    printer.print_kernel(w)
    return "\n".join(lines + w.lines) + "\n"
