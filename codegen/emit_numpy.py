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
from .scheme import Combine, EvalNoise, EvalRHS, StepScheme, operator_layout

_printer = NumPyPrinter({"fully_qualified_modules": True})


def pr(expr) -> str:
    return _printer.doprint(sp.sympify(expr))


def _state(i):
    return f"y[{i}]"


def _body(lowered, indent="    "):
    lines = [f"{indent}{var} = p[{name!r}]" for name, var in lowered.params]
    for g in lowered.net_groups:
        ins = ", ".join(pr(a) for a in g.inputs)
        lines.append(f"{indent}{g.out} = mlp_forward(nets[{g.net.name!r}], {g.net.activation!r}, ({ins},))")
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


def _linear_entries(form):
    """``linear_entries(p)``: the symbolic L's entries (scalar, diagonal list or nested list)."""
    d, L = form.dim, form.linear
    if form.linear_structure == "scalar":
        exprs = [L[0, 0]]
    elif form.linear_structure == "diagonal":
        exprs = [L[i, i] for i in range(d)]
    else:
        exprs = list(L)
    lowered = lower(exprs, form, _state)
    out = [pr(e) for e in lowered.outputs]
    if form.linear_structure == "dense":
        out = "[" + ", ".join("[" + ", ".join(out[i * d:(i + 1) * d]) + "]" for i in range(d)) + "]"
    elif form.linear_structure == "diagonal":
        out = "[" + ", ".join(out) + "]"
    else:
        out = out[0]
    return ["def linear_entries(p):", '    """Entries of L from the runtime params."""'] + _body(lowered) + [
        f"    return {out}"]


def _apply(layout, op, vec):
    return f"apply_dense({op}, {vec})" if layout == "dense" else f"{op} * {vec}"


def _term(form, scheme, term) -> str:
    if term.op is None:
        vec = term.vec
    else:
        vec = _apply(operator_layout(form, scheme.operators[term.op]), f"ops[{term.op!r}]", term.vec)
    return vec if term.coef == 1 else f"{pr(term.coef)}*{vec}"


def _noise_product(form):
    if form.noise == "scalar":
        return "G * dW[0]"
    if form.noise == "diagonal":
        return "G * dW"
    return "numpy.einsum('ij...,j...->i...', G, dW)"


def _step(form, scheme):
    lines = ["def step(y, t, h, p, nets, L, ops, dW, zeta):",
             f'    """One {scheme.method} step; y has shape (d, n)."""']
    for s in scheme.statements:
        if isinstance(s, EvalRHS):
            call = f"forcing({s.state}, t + {pr(s.c * sp.Symbol('h'))}, p, nets)" if s.c else f"forcing({s.state}, t, p, nets)"
            if s.part == "full" and form.linear_structure != "zero":
                layout = "dense" if form.linear_structure == "dense" else "elementwise"
                call += f" + {_apply(layout, 'L', s.state)}"
            lines.append(f"    {s.target} = {call}")
        elif isinstance(s, EvalNoise):
            tt = f"t + {pr(s.c * sp.Symbol('h'))}" if s.c else "t"
            lines.append(f"    G = diffusion({s.state}, {tt}, p)")
            lines.append(f"    {s.target} = {_noise_product(form)}")
        elif isinstance(s, Combine):
            lines.append(f"    {s.target} = " + " + ".join(_term(form, scheme, term) for term in s.terms))
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
        "import numpy",
        "from sdekit.kernels.numpy_runtime import apply_dense, mlp_forward",
        "",
        f"DIM = {d}",
        f"NOISE_DIM = {form.noise_dim}",
        "",
    ]
    if form.linear is not None:
        lines += _linear_entries(form) + [""]
    lines += _vector_function("forcing", "y, t, p, nets", "c(t) + N(y, t), rows of shape (n,).",
                              list(form.forcing), form) + [""]
    if form.stochastic:
        G = form.diffusion
        shape = G.shape if form.noise == "general" else None
        lines += _vector_function("diffusion", "y, t, p", f"G(y, t) for {form.noise} noise.", list(G), form, shape)
        lines.append("")
    lines += _step(form, scheme)
    return "\n".join(lines) + "\n"
