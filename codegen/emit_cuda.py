"""CUDA C source of a fused ensemble kernel: the prelude (types, the IR's NaN-propagating min/max, a
host shim so the same source compiles as C++ without a GPU, platform-notes.md), the model's lane
code as ``__device__`` functions, and the driver of ``drivers.py`` printed by ``print_cuda``.

Covered so far (issue 15, first part): fixed-step and adaptive ODE solves with explicit RK tables
(no φ / resolvent operators), models without networks, L zero, scalar, diagonal or dense.  The
rest — SDEs (Philox and the Brownian tree printed from their single Python definitions), operators
and networks — raise NotImplementedError naming what is missing.
"""
from __future__ import annotations

import sympy as sp
from sympy.printing.c import C99CodePrinter

from ..abi import LINEAR_ARGS, param_args
from .analysis import SemilinearForm
from .drivers import adaptive_loop, fixed_loop
from .loop import Copy, Operators, Rhs, Stages, Writer
from .lowering import lower
from .numba_lanes import kernel_arguments, nested_calls, state_name
from .print_cuda import CudaLoopPrinter, parameters, passing
from .scheme import Combine, EvalRHS, StepScheme

_PRELUDE = r"""#ifdef __CUDACC__
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#endif
#else   /* host C++: the same thread code on the CPU (tests without a GPU) */
#include <cmath>
using std::fabs; using std::isfinite; using std::pow; using std::sqrt;
#define __device__
#define __forceinline__ inline
#endif

/* the loop IR's min / max: NaN when either argument is (codegen/loop.py) */
template <class A, class B> __device__ __forceinline__ auto nan_min(A a, B b) -> decltype(a + b) {
    return (a < b || a != a) ? a : b;
}
template <class A, class B> __device__ __forceinline__ auto nan_max(A a, B b) -> decltype(a + b) {
    return (a > b || a != a) ? a : b;
}
"""


class _CPrinter(C99CodePrinter):
    """Lane expressions: state v_i -> ``st[i]``, parameter p_k -> its trajectory's value."""

    def __init__(self, params):
        super().__init__({"strict": True})
        self.params = params

    def _print_Max(self, e):     # the NaN rule of every backend (np.maximum), not C's fmax
        return nested_calls(self, e.args, "nan_max")

    def _print_Min(self, e):
        return nested_calls(self, e.args, "nan_min")

    def _print_Symbol(self, s):
        if s.name.startswith("v") and s.name[1:].isdigit():
            return f"st[{s.name[1:]}]"
        if s.name in self.params:
            name = self.params[s.name]
            return f"P_{name}[tid * S_{name}]"
        return super()._print_Symbol(s)


def cuda_source(form: SemilinearForm, scheme: StepScheme, dtype="float64", adaptive: bool = False) -> str:
    """The kernel's CUDA C source (``kernel`` launched one thread per trajectory; ``kernel_host``
    outside nvcc)."""
    if form.stochastic:
        raise NotImplementedError("CUDA: SDE kernels need Philox and the Brownian tree as device functions "
                                  "(not printed yet)")
    if form.nets:
        raise NotImplementedError("CUDA: networks in the kernel are not printed yet")
    if scheme.all_operators() or scheme.needs_jacobian:
        raise NotImplementedError(f"CUDA: {scheme.method} needs φ / resolvent operators (not printed yet)")
    args = kernel_arguments(form, scheme, adaptive)
    kernel = (adaptive_loop if adaptive else fixed_loop)(scheme, False, args)
    w = Writer()
    w(f"/* sdekit generated: {scheme.method} {'adaptive' if adaptive else 'fixed-step'} kernel, CUDA C. */")
    w(f"/* state dimension {form.dim}, L {form.linear_structure}; one thread per trajectory. */")
    for ln in _PRELUDE.splitlines():
        w(ln)
    w(f"typedef {'float' if str(dtype) == 'float32' else 'double'} real;")
    w(f"constexpr int D = {form.dim};")
    w(f"constexpr int M = {form.noise_dim};")
    w()
    hooks = _Hooks(form, scheme, args)
    hooks.rhs_function(w)
    CudaLoopPrinter(kernel, hooks).print_kernel(w)
    return "\n".join(w.lines) + "\n"


class _Hooks:
    """What the CUDA printer delegates: the step statements, the full right-hand side and copies."""

    def __init__(self, form, scheme, args):
        self.form, self.scheme = form, scheme
        self.rhs_args = [a for p in form.params for a in param_args(p.name)]
        if form.linear_structure != "zero":
            self.rhs_args += list(LINEAR_ARGS)
        self.rhs_args = [a for a in self.rhs_args if a in args]

    def rhs_function(self, w):
        """``rhs(tid, t, st, out, ...)``: f = L y + c + N of one trajectory (sympy's C99 printer, CSE'd)."""
        form = self.form
        low = lower(list(form.forcing), form, state_name)
        printer = _CPrinter({f"p_{p.name}": p.name for p in form.params})
        pr = printer.doprint
        head = ", ".join(["long long tid", "double t", "const real* st", "real* out"] + parameters(self.rhs_args))
        with w.block(f"__device__ __forceinline__ void rhs({head}) {{"):
            w("/* f = L y + c + N of one trajectory's state st into out */")
            for var, e in low.assignments:
                w(f"const double {var} = {pr(e)};")
            for i, e in enumerate(low.outputs):
                if form.linear_structure == "dense":
                    w(f"double acc{i} = {pr(e)};")
                    w(f"for (int j = 0; j < D; ++j) acc{i} = acc{i} + "
                      f"Lm[((tid * S_L) * Lm_shape[1] + {i}) * Lm_shape[2] + j] * st[j];")
                    w(f"out[{i}] = acc{i};")
                elif form.linear_structure != "zero":
                    w(f"out[{i}] = {pr(e)} + Lm[{i} * Lm_shape[1] + tid * S_L] * st[{i}];")
                else:
                    w(f"out[{i}] = {pr(sp.sympify(e))};")
        w("}")
        w()

    def _call(self, t, state, target):
        return f"rhs(tid, {t}, {state}, {target}{''.join(', ' + a for a in passing(self.rhs_args))});"

    def buffers(self, w):
        pass

    def statement(self, w, s):
        if isinstance(s, Stages):
            for st in s.statements:
                self._step_statement(w, st)
        elif isinstance(s, Rhs):
            w(self._call(s.t, s.state, s.target))
        elif isinstance(s, Copy):
            w(f"for (int i = 0; i < D; ++i) {s.dst}[i] = {s.src}[i];")
        elif isinstance(s, Operators):
            raise NotImplementedError("CUDA: per-step operators are not printed yet")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no CUDA printer for {type(s).__name__}")

    def _step_statement(self, w, s):
        if isinstance(s, EvalRHS):
            w(f"tc = t_l + ({sp.ccode(sp.sympify(s.c) * 1.0)}) * h_l;" if s.c != 0 else "tc = t_l;")
            w(self._call("tc", s.state, s.target))
        elif isinstance(s, Combine):
            terms = []
            for term in s.terms:
                if term.op is not None:
                    raise NotImplementedError("CUDA: operator terms are not printed yet")
                coef = "" if term.coef == 1 else f"({_coef(term.coef)}) * "
                terms.append(f"{coef}{term.vec}[i]")
            w(f"for (int i = 0; i < D; ++i) {s.target}[i] = {' + '.join(terms)};")
        else:
            raise NotImplementedError(f"CUDA: step statement {type(s).__name__} is not printed yet")


def _coef(c) -> str:
    """A step coefficient (a polynomial in h) as C: h is the lane's step h_l, in double."""
    return sp.ccode(sp.sympify(c).subs(sp.Symbol("h", positive=True), sp.Symbol("h_l")).evalf(17))
