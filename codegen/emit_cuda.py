"""CUDA C source of a fused ensemble kernel: the prelude (types, the IR's NaN-propagating min/max, a
host shim so the same source compiles as C++ without a GPU, platform-notes.md), the model's lane
code as ``__device__`` functions (drift, noise, Jacobian), the runtime algorithms the loop IR calls
(Philox, the (W, H) tree, φ and the per-lane block algorithms) printed from their one Python
definition (``print_c_function``), and the driver of ``drivers.py`` printed by ``print_cuda``.

Every catalogue method: ODEs and SDEs, fixed and adaptive steps, L zero, scalar, diagonal or dense
(fixed steps read the host's φ / resolvent tables per step class; adaptive threads compute their own,
elementwise by ``phi`` or as (D, D) blocks), in-kernel MLPs (weights in shared memory when they fit)
and their Jacobians (exponential Rosenbrock: a forward-mode tangent pass).  Also the array-step kernel
``lincomb_source`` for sampler updates on CUDA arrays.
"""
from __future__ import annotations

import math

import numpy as np
import sympy as sp
from sympy.codegen.ast import float32, real
from sympy.printing.c import C99CodePrinter

from ..abi import LINEAR_ARGS, LINEAR_LAYOUT, OPERATOR_LAYOUT, entry, operator_args, weight_args
from .analysis import SemilinearForm
from .drivers import adaptive_loop, fixed_loop
from .loop import BUILTIN_FUNCTIONS, Call, Copy, Operators, Rhs, Stages, Writer
from .lowering import lower
from .neural import activation, activation_grad
from .numba_lanes import arguments_used, kernel_arguments, nested_calls, param_entry, state_name
from .builders import milstein_terms
from .print_c_function import VIEW_CODE, c_allocation, c_functions
from .print_cuda import CudaLoopPrinter, flat, parameters, passing
from .lane_operators import jacobian_operator_name
from .scheme import Combine, EvalJacobian, EvalNoise, EvalRHS, StepScheme, operator_layout

_PRELUDE = r"""#ifdef __CUDACC__
#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#define NAN __int_as_float(0x7fffffff)
#endif
#else   /* host C++: the same thread code on the CPU (tests without a GPU) */
#include <cmath>
using std::fabs; using std::isfinite; using std::pow; using std::sqrt;
using std::tanh; using std::exp; using std::expm1; using std::log; using std::log1p; using std::sin; using std::cos;
#define __device__
#define __forceinline__ inline
#define __noinline__
#endif
#ifdef __CUDACC__   /* a loop unrolled whole: its arrays stay in registers, its loads pair up (emit_cuda._net_pass) */
#define SDEKIT_UNROLL _Pragma("unroll")
#else
#define SDEKIT_UNROLL
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
    """Lane expressions: state v_i -> ``st[i]``, parameter p_k -> its trajectory's value.
    ``single``: sympy's float32 aliases (``1.0F/10.0F``, ``sinf``), so a float32 kernel's arithmetic stays in float32
    (a double literal would promote it: FP64 units and conversions, 1/2 to 1/64 of the FP32 rate on GPUs)."""

    def __init__(self, params, single: bool = False):
        super().__init__({"strict": True, **_float_type(single)})
        self.params, self.single = params, single

    def _print_Float(self, e):
        """float32: the float32 nearest the double the Numba kernel's ``f32(...)`` rounds (``float_text``), written
        to the last bit (sympy's 9 digits round the decimal to float32 directly: another float32 for ~1 % of doubles)."""
        if self.single and math.isfinite(float(e)):
            return f"{float(np.float32(float(e)))!r}F"
        return super()._print_Float(e)

    def _print_Max(self, e):     # the NaN rule of every backend (np.maximum), not C's fmax
        return nested_calls(self, e.args, "nan_max")

    def _print_Min(self, e):
        return nested_calls(self, e.args, "nan_min")

    def _print_Symbol(self, s):
        if s.name.startswith("v") and s.name[1:].isdigit():
            return f"st[{s.name[1:]}]"
        if s.name in self.params:
            name = self.params[s.name]
            return param_entry(name, "tid")
        return super()._print_Symbol(s)


def cuda_source(form: SemilinearForm, scheme: StepScheme, dtype="float64", adaptive: bool = False,
                device_functions=None) -> str:
    """The kernel's CUDA C source (``kernel`` launched one thread per trajectory; ``kernel_host``
    outside nvcc).  ``device_functions``: the loop IR's functions (``phi``) -> their Python definitions
    and the runtime modules its calls name (``brownian``, ``philox``, ``matfun``) -> the modules
    (``sdekit`` passes ``kernels.matfun.phi_scalar`` and ``kernels.brownian``, ...), printed as
    ``__device__`` C (``print_c_function``)."""
    device_functions = device_functions or {}
    args = kernel_arguments(form, scheme, adaptive)
    kernel = (adaptive_loop(scheme, False, args, form.linear_structure, form.reads_t) if adaptive else
              fixed_loop(scheme, False, args, form.reads_t))
    w = Writer()
    w(f"/* sdekit generated: {scheme.method} {'adaptive' if adaptive else 'fixed-step'} kernel, CUDA C. */")
    w(f"/* state dimension {form.dim}, L {form.linear_structure}; one thread per trajectory. */")
    for ln in _PRELUDE.splitlines():
        w(ln)
    w(f"typedef {'float' if str(dtype) == 'float32' else 'double'} real;")
    w(f"constexpr int D = {form.dim};")
    w(f"constexpr int M = {form.noise_dim};")
    w()
    used = kernel.functions()
    if used - set(device_functions) - BUILTIN_FUNCTIONS:
        raise ValueError(f"cuda_source: no definition given for the IR functions {sorted(used - set(device_functions))}")
    runtime = {name: device_functions[name] for name in sorted(used & set(device_functions))}
    allocations, constants = _allocations(kernel.body), {}
    for module, fn in allocations:       # the constants their shapes read
        c_allocation(getattr(device_functions[module], fn), ["0"] * 8, constants)
    for module, fn in kernel.calls():     # the runtime algorithms the loop IR calls, printed from their one definition
        if module not in device_functions:
            raise ValueError(f"cuda_source: no definition given for the runtime module {module!r}")
        if (module, fn) not in allocations:
            runtime[fn] = getattr(device_functions[module], fn)
    constants, functions = c_functions(runtime, constants)
    if (kernel.calls() or kernel.buffers) and VIEW_CODE not in constants:
        constants.insert(0, VIEW_CODE)
    for line in constants + [""] + functions:
        w(line)
    hooks = _Hooks(form, scheme, args, adaptive, device_functions)
    hooks.float32 = str(dtype) == "float32"
    parts = {st.part for st in scheme.all_statements() if isinstance(st, EvalRHS)} | ({"full"} if adaptive else set())
    for part in sorted(parts):
        hooks.rhs_function(w, part)
    for increment in sorted({st.increment for st in scheme.all_statements() if isinstance(st, EvalNoise)}):
        hooks.noise_function(w, increment)
    if scheme.needs_jacobian:
        hooks.jacobian_function(w)
    CudaLoopPrinter(kernel, hooks).print_kernel(w)
    return "\n".join(w.lines) + "\n"


#: network weights up to this size go to shared memory once per block (of the 48 KiB a block may
#: declare statically, leaving room for the rest of the kernel's needs)
SHARED_WEIGHT_BYTES = 32 * 1024


def _allocations(stmts) -> set:
    """(module, fn) of the runtime calls that allocate (their results are arrays the kernel declares)."""
    out = set()
    for s in stmts:
        if isinstance(s, Call) and s.result:
            out.add((s.module, s.fn))
        for name in ("body", "then", "orelse"):
            out |= _allocations(getattr(s, name, None) or [])
    return out


def _linear_entry(i, j=None) -> str:
    """``Lm`` at row ``i`` (and column ``j``: a dense L) of the thread's trajectory (sdekit.abi.LINEAR_LAYOUT)."""
    axes = LINEAR_LAYOUT["elementwise" if j is None else "dense"]
    L, S = LINEAR_ARGS
    return f"{L}[{flat(L, entry(axes, traj=f'tid * {S}', i=str(i), j=str(j)))}]"


class _Hooks:
    """What the CUDA printer delegates: the step statements, the full right-hand side and copies."""

    def __init__(self, form, scheme, args, adaptive, runtime):
        self.form, self.scheme, self.adaptive, self.runtime = form, scheme, adaptive, runtime
        self.lowered = lower(list(form.forcing), form, state_name)
        self.rhs_args = {part: arguments_used(form, self.lowered, args, part == "full" and form.linear_structure != "zero")
                         for part in ("forcing", "full")}   # what each part reads
        if scheme.needs_jacobian:
            self.jac_lowered = lower(form.forcing_jacobian(), form, state_name)
            self.rhs_args["jac"] = arguments_used(form, self.jac_lowered, args, form.linear_structure != "zero")
        if form.stochastic:
            self.noise_lowered = {"dW": lower(list(form.diffusion), form, state_name)}
            self.noise_lowered["I10"] = self.noise_lowered["dW"]
            if scheme.needs_milstein:
                self.noise_lowered["milstein"] = lower(milstein_terms(form), form, state_name)
            self.rhs_args |= {kind: arguments_used(form, low, args) for kind, low in self.noise_lowered.items()}

    def printer(self):
        """The model's C printer (its parameters by trajectory; float32 literals in float32 kernels)."""
        return _CPrinter({f"p_{p.name}": p.name for p in self.form.params}, self.float32).doprint

    def shared_arguments(self) -> dict:
        """The network weights (name -> entries) the launch copies into shared memory once per block:
        all of them when they fit in SHARED_WEIGHT_BYTES (in the kernel's float type), else none."""
        sizes = {}
        for name, net in sorted(self.form.nets.items()):
            for layer in range(len(net.sizes) - 1):
                W, b = weight_args(name, layer)
                sizes[W] = net.sizes[layer] * net.sizes[layer + 1]
                sizes[b] = net.sizes[layer + 1]
        return sizes if sum(sizes.values()) * (4 if self.float32 else 8) <= SHARED_WEIGHT_BYTES else {}

    def inlining(self, lowered) -> str:
        """A model function whose network has an unrolled layer, its weights in shared memory, is a function of its
        own on the GPU (``__noinline__``); others are inlined.  Inlined at each of a method's calls, the unrolled
        network is copied as often (adaptive Tsit5, nine calls, MLP 4-32-32-4, float32, sm_90: 255 registers, 16 KB
        of spill stores and a 670 KB cubin; called, 191 registers, no spills, 91 KB; EM, one call a step: 145
        registers called, 142 inlined).  The arrays it is passed (state, stage) then live in local memory, and its
        weight loads are shared ones because NVVM carries the kernel's ``s_*`` addresses into it (every call passes
        the same): weights in global memory (too many for SHARED_WEIGHT_BYTES) keep the inlined function, whose
        loads know their space."""
        called = self.shared_arguments() and any(
            unrolled_layer(g.net.sizes[k], g.net.sizes[k + 1], self.float32)
            for g in lowered.net_groups for k in range(len(g.net.sizes) - 1))
        return "__noinline__" if called else "__forceinline__"

    def allocation(self, module, fn, arguments):
        """The arrays a runtime allocation returns (``print_c_function.c_allocation``)."""
        return c_allocation(getattr(self.runtime[module], fn), arguments)

    def rhs_function(self, w, part):
        """``rhs_full`` (f = L y + c + N) or ``rhs_forcing`` (c + N, the exponential methods' stages) of
        one trajectory's state: sympy's C99 printer on the CSE'd lowered model."""
        form = self.form
        linear = part == "full" and form.linear_structure != "zero"
        low = self.lowered
        pr = self.printer()
        head = ", ".join(["long long tid", "double t", "const real* st", "real* out"]
                         + parameters(self.rhs_args[part]))
        with w.block(f"__device__ {self.inlining(low)} void rhs_{part}({head}) {{"):
            w(f"/* {'f = L y + c + N' if part == 'full' else 'c(t) + N(y, t)'} of one trajectory's state st into out */")
            for g in low.net_groups:
                _net_pass(w, g, pr, self.float32)
            for var, e in low.assignments:
                w(f"const real {var} = {pr(e)};")
            for i, e in enumerate(low.outputs):
                if not linear:
                    w(f"out[{i}] = {pr(sp.sympify(e))};")
                elif form.linear_structure == "dense":
                    w(f"real acc{i} = {pr(e)};")
                    w(f"for (int j = 0; j < D; ++j) acc{i} = acc{i} + {_linear_entry(i, 'j')} * st[j];")
                    w(f"out[{i}] = acc{i};")
                else:
                    w(f"out[{i}] = {pr(e)} + {_linear_entry(i)} * st[{i}];")
        w("}")
        w()

    def noise_function(self, w, increment):
        """``noise_<increment>``: G(st, t) times the increment (ΔW, I_(1,0)/h: scalar G dW, diagonal G ⊙ dW,
        general G @ dW) or the Milstein term ½ (G'G)(ΔW² − h) (Kloeden & Platen 1992, eq. 10.3.3)."""
        form, low = self.form, self.noise_lowered[increment]
        pr = self.printer()
        m = form.noise_dim
        extra = ["const real* dW", "double hh"] if increment == "milstein" else ["const real* inc"]
        head = ", ".join(["long long tid", "double t", "const real* st", *extra, "real* out"]
                         + parameters(self.rhs_args[increment]))
        with w.block(f"__device__ {self.inlining(low)} void noise_{increment}({head}) {{"):
            for g in low.net_groups:
                _net_pass(w, g, pr, self.float32)
            for var, e in low.assignments:
                w(f"const real {var} = {pr(e)};")
            for i in range(form.dim):
                col = 0 if form.noise == "scalar" else i
                if increment == "milstein":
                    w(f"out[{i}] = (real)0.5 * ({pr(sp.sympify(low.outputs[i]))}) * (dW[{col}] * dW[{col}] - (real)hh);")
                elif form.noise == "general":
                    w(f"out[{i}] = " + " + ".join(f"({pr(sp.sympify(low.outputs[i * m + j]))}) * inc[{j}]"
                                                  for j in range(m)) + ";")
                else:
                    w(f"out[{i}] = ({pr(sp.sympify(low.outputs[i]))}) * inc[{col}];")
        w("}")
        w()

    def jacobian_function(self, w):
        """``jac_full``: J̃ = [[L + ∂N/∂y, ∂(c + N)/∂t], [0, 0]] of one thread's state into the View J
        ((D + 1, D + 1, 1)): zeros and L by loops, then the entries whose sympy derivative is not zero."""
        form, low, d = self.form, self.jac_lowered, self.form.dim
        pr = self.printer()
        head = ", ".join(["long long tid", "double t", "const real* st", "View<real> J"] + parameters(self.rhs_args["jac"]))

        def entry(i, j):
            return f"J.p[({i}) * J.st[0] + ({j}) * J.st[1]]"
        with w.block(f"__device__ {self.inlining(low)} void jac_full({head}) {{"):
            w("for (int r = 0; r <= D; ++r) for (int q = 0; q <= D; ++q) " + entry("r", "q") + " = 0.0;")
            if form.linear_structure == "dense":
                w("for (int r = 0; r < D; ++r) for (int q = 0; q < D; ++q) " + entry("r", "q") + f" = {_linear_entry('r', 'q')};")
            elif form.linear_structure != "zero":
                w("for (int r = 0; r < D; ++r) " + entry("r", "r") + f" = {_linear_entry('r')};")
            for g in low.net_groups:
                _net_pass(w, g, pr, self.float32)
            for var, e in low.assignments:
                w(f"const real {var} = {pr(e)};")
            for i, j, e in form.jacobian_entries(low.outputs, d):
                w(f"{entry(i, j)} = {entry(i, j)} + {pr(sp.sympify(e))};")
        w("}")
        w()

    def _noise_call(self, s, t):
        kind = s.increment
        extra = "dW, h_l" if kind == "milstein" else ("dI" if kind == "I10" else "dW")
        rest = "".join(", " + a for a in passing(self.rhs_args[kind]))
        return f"noise_{kind}(tid, {t}, {s.state}, {extra}, {s.target}{rest});"

    def _call(self, t, state, target, part="full"):
        return f"rhs_{part}(tid, {t}, {state}, {target}{''.join(', ' + a for a in passing(self.rhs_args[part]))});"

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
            pass   # fixed steps: the Combine terms read the tables at the step class hc
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no CUDA printer for {type(s).__name__}")

    def _step_statement(self, w, s):
        if isinstance(s, EvalJacobian):
            rest = "".join(", " + a for a in passing(self.rhs_args["jac"]))
            t = "0.0"
            if self.form.reads_t:
                w(f"tc = t_l + ({sp.ccode(sp.sympify(s.c) * 1.0)}) * h_l;" if s.c != 0 else "tc = t_l;")
                t = "tc"
            w(f"jac_full(tid, {t}, {s.state}, Jt{rest});")   # its operators follow as loop IR (lane_operators)
        elif isinstance(s, (EvalRHS, EvalNoise)):
            call = self._call if isinstance(s, EvalRHS) else (lambda t, *_: self._noise_call(s, t))
            part = getattr(s, "part", None)
            if not self.form.reads_t:      # the lanes keep no times
                w(call("0.0", s.state, s.target, part))
                return
            w(f"tc = t_l + ({sp.ccode(sp.sympify(s.c) * 1.0)}) * h_l;" if s.c != 0 else "tc = t_l;")
            w(call("tc", s.state, s.target, part))
        elif isinstance(s, Combine):
            self._combine(w, s)
        else:
            raise NotImplementedError(f"CUDA: step statement {type(s).__name__} is not printed yet")


    def _combine(self, w, s):
        """``target = Σ coef · op(hL) vec`` per component.  Operators: the host's tables per step class
        ``hc`` (fixed steps; ``arguments.operator_tables``, laid out as sdekit.abi.OPERATOR_LAYOUT), the
        thread's own per-component values (adaptive, elementwise L), or the thread's matrices as Views
        (adaptive dense L; the Jacobian operators φ_k(c hJ̃) applied to (vec, aug)).  A matrix term
        accumulates its row over j first, in j order, as on Numba."""
        ops = self.scheme.all_operators()
        jac_ops = self.scheme.jacobian_operators
        d = self.form.dim
        with w.block("for (int i = 0; i < D; ++i) {"):
            terms = []
            for k, term in enumerate(s.terms):
                coef = "" if term.coef == 1 else f"({_coef(term.coef, self.float32)}) * "
                if term.op is None:
                    terms.append(f"{coef}{term.vec}[i]")
                    continue
                if term.op in jac_ops or (self.adaptive and self.form.linear_structure == "dense"):
                    A = jacobian_operator_name(term.op) if term.op in jac_ops else f"op_{term.op}"
                    w(f"real mv{k} = 0.0;")
                    w(f"for (int j = 0; j < D; ++j) mv{k} = mv{k} + {A}.p[i * {A}.st[0] + j * {A}.st[1]] * {term.vec}[j];")
                    if term.op in jac_ops and term.aug is not None and term.aug != 0:
                        aug = "" if term.aug == 1 else f" * ({_coef(term.aug, self.float32)})"
                        w(f"mv{k} = mv{k} + {A}.p[i * {A}.st[0] + {d} * {A}.st[1]]{aug};")
                    terms.append(f"{coef}mv{k}")
                    continue
                table, stride = operator_args(term.op)
                traj = f"tid * {stride}"
                if self.adaptive:       # the thread's own, computed in the IR (lane_operators)
                    terms.append(f"{coef}{table}[i] * {term.vec}[i]")
                elif operator_layout(self.form, ops[term.op]) == "dense":
                    w(f"real mv{k} = 0.0;")
                    w(f"for (int j = 0; j < D; ++j) mv{k} = mv{k} + "
                      f"{table}[{flat(table, entry(OPERATOR_LAYOUT['dense'], hclass='hc', traj=traj, i='i', j='j'))}] * {term.vec}[j];")
                    terms.append(f"{coef}mv{k}")
                else:
                    terms.append(f"{coef}{table}[{flat(table, entry(OPERATOR_LAYOUT['elementwise'], hclass='hc', traj=traj, i='i'))}] * {term.vec}[i]")
            w(f"{s.target}[i] = {' + '.join(terms)};")
        w("}")


#: a layer of at most this many weights is unrolled whole on the GPU (``SDEKIT_UNROLL``): its input and output stay in
#: registers (a loop index into them would put them in local memory) and its weight loads from shared memory
#: pair into 16-byte ones (four FMAs per load, where one scalar load per FMA caps the FMA rate at ~1/4: the load
#: unit issues a quarter of the FMA rate).  Bigger layers keep their loops (code size, compile time).
UNROLL_LAYER = 4096
#: ... and whose inputs and outputs take at most this many 32-bit registers (a float64 value takes two; a thread
#: has 255): 64 + 64 in float32, 32 + 32 in float64
UNROLL_VALUES = 128


def unrolled_layer(n_in: int, n_out: int, float32: bool) -> bool:
    """Whether the GPU kernel unrolls a layer of ``n_in`` inputs and ``n_out`` outputs (UNROLL_LAYER, UNROLL_VALUES)."""
    return n_in * n_out <= UNROLL_LAYER and (n_in + n_out) * (1 if float32 else 2) <= UNROLL_VALUES


def _net_pass(w, group, pr, float32: bool):
    """One forward pass of an MLP in the thread: inputs, then each layer as y = σ(W x + b), W (out, in)
    row-major in global (or the block's shared) memory, the products summed in k order in the kernel's
    float type ``real`` (as the Numba kernel does: float32 kernels run the network in float32); σ is
    ``codegen.neural.ACTIVATIONS``' expression, printed by the model's C printer ``pr``.  With
    ``group.jacobian`` (exponential Rosenbrock) also the forward-mode tangent T ← W T (T_0 = I), scaled
    by σ'(pre-activation) on hidden layers, into ``<out>_jac[out][in]`` = ∂net/∂inputs.  Small layers
    (:func:`unrolled_layer`) are unrolled on the GPU: the same sums in the same order."""
    net, sizes = group.net, group.net.sizes
    w(f"real {group.out}_x0[{sizes[0]}];")
    for k, a in enumerate(group.inputs):
        w(f"{group.out}_x0[{k}] = {pr(sp.sympify(a))};")
    tsrc = None
    for layer in range(len(sizes) - 1):
        last = layer == len(sizes) - 2
        src, dst = f"{group.out}_x{layer}", group.out if last else f"{group.out}_x{layer + 1}"
        tdst = f"{group.out}_jac" if last else f"{group.out}_t{layer}"
        W, b = weight_args(net.name, layer)
        n_in, n_out = sizes[layer], sizes[layer + 1]
        w(f"real {dst}[{n_out}];")
        if group.jacobian:
            w(f"real {tdst}[{n_out}][{sizes[0]}];")
        unroll = "SDEKIT_UNROLL " if unrolled_layer(n_in, n_out, float32) else ""
        with w.block(f"{unroll}for (int j = 0; j < {n_out}; ++j) {{"):
            w(f"real acc = {b}[j];")
            w(f"{unroll}for (int k = 0; k < {n_in}; ++k) acc = acc + {W}[j * {n_in} + k] * {src}[k];")
            if group.jacobian:
                with w.block(f"for (int i = 0; i < {sizes[0]}; ++i) {{"):
                    if tsrc is None:
                        w(f"{tdst}[j][i] = {W}[j * {n_in} + i];")
                    else:
                        w("real tv = 0.0;")
                        w(f"for (int k = 0; k < {n_in}; ++k) tv = tv + {W}[j * {n_in} + k] * {tsrc}[k][i];")
                        w(f"{tdst}[j][i] = tv;")
                    if not last:
                        w(f"{tdst}[j][i] = {tdst}[j][i] * ({pr(activation_grad(net.activation, sp.Symbol('acc')))});")
                w("}")
            w(f"{dst}[j] = {'acc' if last else pr(activation(net.activation, sp.Symbol('acc')))};")
        w("}")
        tsrc = tdst


def _coef(c, single: bool = False) -> str:
    """A step coefficient (a polynomial in h and the previous steps h1, h2, ...) as C: h is the lane's
    step h_l, h_k its k-th previous step hp<k>; in the kernel's float type (float32 literals in float32
    kernels: ``_CPrinter``)."""
    c = sp.sympify(c)
    subs = {x: sp.Symbol("h_l" if x.name == "h" else f"hp{x.name[1:]}") for x in c.free_symbols}
    return sp.ccode(c.subs(subs).evalf(17), **_float_type(single))


def _float_type(single: bool) -> dict:
    """sympy C printer settings for the kernel's float type: float32 literals and functions when ``single``."""
    return {"type_aliases": {real: float32}} if single else {}


def lincomb_source(dtype: str, width: int) -> str:
    """CUDA C of the array-step kernel ``lincomb``: out[i] = Σ_k c[k] a_k[i] over ``width`` arrays of
    ``dtype`` (a diffusion sampler's stage update once its coefficients are numbers: ``sdekit.sampling.Lazy``),
    each input read once, summed in float64 in k order as ``kernels.lincomb.lincomb`` does on the CPU; a
    grid-stride loop.  The coefficients are passed by value (kernel parameters: no copy to the device per call,
    which cost as much as the kernel on a small tensor).  Outside nvcc ``lincomb_host``, of the same parameters,
    runs the same element function over i (tests)."""
    arrays = [f"a{k}" for k in range(width)]
    params = ", ".join(["long long n"] + [f"double c{k}" for k in range(width)]
                       + [f"const real* __restrict__ {a}" for a in arrays] + ["real* __restrict__ out"])
    coefficients = f"const double c[{width}] = {{{', '.join(f'c{k}' for k in range(width))}}};"
    call = ", ".join(["i", "c"] + arrays + ["out"])
    w = Writer()
    w(f"/* sdekit generated: array-step kernel, out = Σ_k c_k a_k over {width} arrays of {dtype}, CUDA C. */")
    for ln in _PRELUDE.splitlines():
        w(ln)
    w(f"typedef {'float' if str(dtype) == 'float32' else 'double'} real;")
    w()
    head = ", ".join(["long long i", "const double* __restrict__ c"] + [f"const real* __restrict__ {a}" for a in arrays]
                     + ["real* __restrict__ out"])
    with w.block(f"__device__ __forceinline__ void lincomb_element({head}) {{"):
        w("double acc = 0.0;")
        for k, a in enumerate(arrays):
            w(f"acc = acc + c[{k}] * (double){a}[i];")
        w("out[i] = (real)acc;")
    w("}")
    w()
    w("#ifdef __CUDACC__")
    with w.block(f'extern "C" __global__ void lincomb({params}) {{'):
        w(coefficients)
        w("for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)blockDim.x * gridDim.x)")
        w(f"    lincomb_element({call});")
    w("}")
    w("#else")
    with w.block(f'extern "C" void lincomb_host({params}) {{'):
        w(coefficients)
        w(f"for (long long i = 0; i < n; ++i) lincomb_element({call});")
    w("}")
    w("#endif")
    return "\n".join(w.lines) + "\n"
