"""The numpy emitter: prints a StepScheme as a module vectorised over the ensemble.

Vectors are arrays of shape ``(d, n)`` (structure of arrays, one row per component, one
column per trajectory).  Operators of a scalar/diagonal ``L`` are arrays of shape
``(1 or d, n or 1)`` applied with ``*``; dense ones are ``(n or 1, d, d)`` applied with
``apply_dense``.  This is the reference backend and the no-numba fallback.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from .analysis import SemilinearForm
from .lowering import lower
from .builders import milstein_terms
from .scheme import EvalJacobian, EvalNoise, EvalRHS, StepScheme, operator_layout

class _ArrayPrinter(NumPyPrinter):
    """numpy code; Max/Min as nested elementwise numpy.maximum/minimum (sympy's default needs functools)."""

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
        call = f"(nets[{g.net.name!r}], {g.net.activation!r}, ({ins},))"
        lines.append(f"{indent}{g.out}, {g.out}_jac = mlp_forward_jacobian{call}" if g.jacobian else
                     f"{indent}{g.out} = mlp_forward{call}")
    lines += [f"{indent}{var} = {pr(e)}" for var, e in lowered.assignments]
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
    """``jacobian(y, t, p, nets, L)``: J̃ = [[L + ∂N/∂y, ∂N/∂t], [0, 0]] per trajectory, (n, d+1, d+1)."""
    d = form.dim
    lowered = lower(form.forcing_jacobian(), form, _state)
    lines = ["def jacobian(y, t, p, nets, L):", f'    """{JACOBIAN_DOC}"""'] + _body(lowered)
    lines.append(f"    out = numpy.zeros((y.shape[1], {d + 1}, {d + 1}), dtype=y.dtype)")
    for k, e in enumerate(lowered.outputs):
        if sp.sympify(e) != 0:
            i, j = (k // d, k % d) if k < d * d else (k - d * d, d)
            lines.append(f"    out[:, {i}, {j}] = {pr(e)}")
    lines.append(f"    return add_linear(out, L, {form.linear_structure!r})")
    return lines


JACOBIAN_DOC = ("J~ = [[L + dN/dy, dN/dt], [0, 0]] per trajectory, shape (n, d+1, d+1) (sympy derivatives; "
                "networks by forward mode through their layers).")


def _rhs_function(form):
    """``rhs(y, t, p, nets, L)``: the full right-hand side f = L y + c + N (initial step, dense output)."""
    call = "forcing(y, t, p, nets)"
    if form.linear_structure != "zero":
        call += " + " + _apply("dense" if form.linear_structure == "dense" else "elementwise", "L", "y")
    return ["def rhs(y, t, p, nets, L):", '    """f = L y + c(t) + N(y, t)."""', f"    return {call}"]


def _apply(layout, op, vec):
    return f"apply_dense({op}, {vec})" if layout == "dense" else f"{op} * {vec}"


def _term(form, scheme, term) -> str:
    if term.op is None:
        vec = term.vec
    elif term.op in scheme.jacobian_operators:
        vec = f"apply_augmented(jops[{term.op!r}], {term.vec}, {pr(term.aug)})"
    else:
        vec = _apply(operator_layout(form, scheme.operators[term.op]), f"ops[{term.op!r}]", term.vec)
    return vec if term.coef == 1 else f"({pr(term.coef)})*{vec}"


def _noise_product(form, inc):
    if form.noise == "scalar":
        return f"G * {inc}[0]"
    if form.noise == "diagonal":
        return f"G * {inc}"
    return f"numpy.einsum('ij...,j...->i...', G, {inc})"


def _statement(form, scheme, s) -> list:
    if isinstance(s, EvalRHS):
        call = f"forcing({s.state}, {_time(s.c)}, p, nets)"
        if s.part == "full" and form.linear_structure != "zero":
            layout = "dense" if form.linear_structure == "dense" else "elementwise"
            call += f" + {_apply(layout, 'L', s.state)}"
        return [f"{s.target} = {call}", "mem['nf'] = mem.get('nf', 0) + 1  # f-evaluations (counted)"]
    if isinstance(s, EvalJacobian):
        return [f"jops = jacobian_operators(jacobian({s.state}, {_time(s.c)}, p, nets, L), h, JACOBIAN_OPERATORS)"]
    if isinstance(s, EvalNoise):
        if s.increment == "milstein":
            dw = "dW[0]" if form.noise == "scalar" else "dW"
            return [f"{s.target} = 0.5 * milstein_gg({s.state}, {_time(s.c)}, p) * ({dw} * {dw} - h)"]
        inc = "dW" if s.increment == "dW" else "dI"
        return [f"G = diffusion({s.state}, {_time(s.c)}, p)", f"{s.target} = {_noise_product(form, inc)}"]
    return [f"{s.target} = " + " + ".join(_term(form, scheme, term) for term in s.terms)]


def _time(c) -> str:
    return f"t + {pr(c * sp.Symbol('h'))}" if c else "t"


def _step(form, scheme, name="step", main=None, with_error=True):
    """``name(y, t, h, p, nets, L, ops, rnd, mem)``: rnd holds dW, dH, zeta; mem the multistep history,
    the count of f-evaluations ``mem['nf']`` and, ``with_error`` (adaptive steps), the embedded error
    estimate ``mem['err']`` (else only the statements the step's output needs run).  ``t`` and ``h``
    are scalars or, for adaptive steps, arrays (n,) (one per trajectory)."""
    main = main or scheme
    statements = scheme.statements if with_error or scheme is not main else scheme.live_statements()
    lines = [f"def {name}(y, t, h, p, nets, L, ops, rnd, mem):",
             f'    """One {scheme.method} step; y has shape (d, n)."""',
             "    dW, dH, zeta = rnd.get('dW'), rnd.get('dH'), rnd.get('zeta')"]
    if scheme.needs_levy:
        lines.append("    dI = 0.5 * dW + dH  # I_(1,0)/h = dW/2 + H (methods.md §5.3)")
    for k in range(1, main.lags + 1):
        lines.append(f"    h{k} = mem.get('h{k}')")
    for dst, _ in main.history:
        lines.append(f"    {dst} = mem.get({dst!r})")
    fsal = scheme.fsal if with_error else None
    for s in statements:
        body = ["    " + ln for ln in _statement(form, scheme, s)]
        if fsal and getattr(s, "target", None) == fsal[0]:   # FSAL: the driver passes the last step's end
            body = [f"    {fsal[0]} = mem.get('fsal')", f"    if {fsal[0]} is None:"] + ["    " + ln for ln in body]
        lines += body
    for dst, src in main.history:
        lines.append(f"    mem[{dst!r}] = {src}")
    if main.lags:
        lines += [f"    mem['h{k}'] = h{k - 1}" for k in range(main.lags, 1, -1)] + ["    mem['h1'] = h"]
    if scheme.error and with_error:
        lines.append(f"    mem['err'] = {scheme.error}  # embedded error estimate y_new - y_hat")
    if fsal:
        lines.append(f"    mem['fsal_start'], mem['fsal_end'] = {fsal[0]}, {fsal[1]}  # f at the step's start and end")
    lines.append(f"    return {scheme.output}")
    return lines


def emit_numpy(form: SemilinearForm, scheme: StepScheme) -> str:
    """Source of the numpy step module for ``scheme`` on ``form``."""
    d = form.dim
    lines = [
        f'"""sdekit generated: {scheme.method} step, numpy backend.',
        "",
        f"state dimension {d}, L {form.linear_structure}, noise {form.noise}.",
        "",
        *("    " + ln for ln in str(scheme).splitlines()),
        '"""',
        "from fractions import Fraction",
        "",
        "import numpy",
        "from sdekit.kernels.numpy_runtime import (add_linear, apply_augmented, apply_dense, jacobian_operators,",
        "                                          mlp_forward, mlp_forward_jacobian)",
        "",
        f"DIM = {d}",
        f"NOISE_DIM = {form.noise_dim}",
        f"NSTAGES = {sum(isinstance(s, EvalRHS) for s in scheme.statements)}  # f-evaluations per step",
        f"HISTORY = {tuple(dst for dst, _ in scheme.history)!r}  # multistep history kept in mem",
        f"LAGS = {scheme.lags}  # previous step sizes h1.. kept in mem",
        f"STARTUP_STEPS = {scheme.startup_steps}",
        f"FSAL = {scheme.fsal is not None}  # adaptive steps reuse f at the last step's end",
        f"NEEDS_ZETA = {scheme.needs_zeta}  # per-step normals of the stochastic convolution (SETD1)",
        f"JACOBIAN_OPERATORS = {{{', '.join(f'{k!r}: {v.poly!r}' for k, v in scheme.jacobian_operators.items())}}}",
        "",
    ]
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
    if scheme.startup is not None:
        lines += _step(form, scheme.startup, "startup_step", main=scheme) + [""]
    lines += _step(form, scheme, with_error=False) + [""]
    if scheme.error:
        lines += _step(form, scheme, "step_with_error")
    return "\n".join(lines) + "\n"
