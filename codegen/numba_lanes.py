"""The Numba printer of lane code, shared by the fixed-step and adaptive kernels (:mod:`emit_numba`):
expressions (``pr``), the MLP forward and tangent passes,
the lane functions ``rhs_block`` / ``noise_block`` / ``milstein_block`` / ``jac_block``, and the step
statements of a :class:`StepScheme` as loops over the B lanes of a block (structure of arrays
``(D, B)``, lanes innermost so LLVM vectorises).
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..abi import JIT_FLAGS, LINEAR_ARGS, LINEAR_LAYOUT, OPERATOR_LAYOUT, entry, operator_args, param_args, weight_args
from .analysis import SemilinearForm
from .builders import milstein_terms
from .lane_operators import jacobian_operator_name
from .lowering import ExactFloats, lower
from .neural import activation, activation_grad
from .scheme import Combine, EvalJacobian, EvalNoise, EvalRHS, StepScheme, operator_layout


def _constant(print_number):
    """A printer method: ``print_number``'s text, wrapped by the printer's ``_single``."""
    return lambda self, e: self._single(print_number(self, e))


class _KernelPrinter(ExactFloats, NumPyPrinter):
    """Scalar lane code: ``math`` functions, and the inline tanh of ``numba_runtime``.
    ``single``: numbers as float32 constants ``f32(0.161)`` (the module's ``f32 = np.float32``; an integer power
    stays ``x**2``), as the CUDA printer's ``0.161F``: Numba types a Python literal as float64, and ``10*x`` or
    ``0.161*h`` would run a float32 kernel's arithmetic in float64, with a conversion at every store."""

    def __init__(self, single: bool = False):
        super().__init__({"fully_qualified_modules": True})
        self.single = single

    def _single(self, text: str) -> str:
        return f"f32({text})" if self.single else text

    # numbers and number symbols: NumPyPrinter's text, as a float32 constant in a float32 kernel
    _print_Integer = _constant(NumPyPrinter._print_Integer)
    _print_Rational = _constant(NumPyPrinter._print_Rational)
    _print_Float = _constant(ExactFloats._print_Float)          # to the last bit (``lowering.float_text``)
    _print_NaN = _constant(NumPyPrinter._print_NaN)
    _print_Infinity = _constant(NumPyPrinter._print_Infinity)
    _print_Pi = _constant(NumPyPrinter._print_Pi)
    _print_Exp1 = _constant(NumPyPrinter._print_Exp1)
    _print_EulerGamma = _constant(NumPyPrinter._print_EulerGamma)

    def _print_Pow(self, e, rational=False):
        if self.single and e.exp.is_Integer:        # x**2 is float32 in Numba; x**f32(2) would call powf
            base = self.parenthesize(e.base, sp.printing.precedence.PRECEDENCE["Pow"])
            if e.exp >= 0:
                return f"{base}**{int(e.exp)}"
            return f"{self._single('1')}/{base}" + ("" if e.exp == -1 else f"**{-int(e.exp)}")
        return super()._print_Pow(e, rational)

    def _print_tanh(self, e):
        return f"nb_tanh({self._print(e.args[0])})"

    def _print_Max(self, e):
        return nested_calls(self, e.args, "nan_max")

    def _print_Min(self, e):
        return nested_calls(self, e.args, "nan_min")

    def _print_Piecewise(self, e):
        """Nested conditional expressions (numpy.select does not type on scalars); NaN where no branch holds."""
        out = self._single("math.nan")
        for value, cond in reversed(e.args):
            out = self._print(value) if cond == sp.true else f"({self._print(value)} if {self._print(cond)} else {out})"
        return out

    def _print_Relational(self, e):
        ops = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
        return f"({self._print(e.lhs)} {ops[e.rel_op]} {self._print(e.rhs)})"

    def _print_And(self, e):
        return "(" + " and ".join(self._print(a) for a in e.args) + ")"

    def _print_Or(self, e):
        return "(" + " or ".join(self._print(a) for a in e.args) + ")"

    def _print_Not(self, e):
        return f"(not {self._print(e.args[0])})"

    def _print_Heaviside(self, e):
        x = self._print(e.args[0])
        half = self._print(e.args[1]) if len(e.args) > 1 else self._single("0.5")
        zero = self._single("0")
        return f"({self._single('1.0')} if {x} > {zero} else ({half} if {x} == {zero} else {self._single('0.0')}))"


def nested_calls(printer, args, fn):
    """Max/Min as nested binary NaN-propagating calls, in numpy's order (``emit_numpy``): a NaN
    argument gives NaN on every backend, as ``np.maximum`` does (Python's max drops it)."""
    out = printer._print(args[-1])
    for a in reversed(args[:-1]):
        out = f"{fn}({printer._print(a)}, {out})"
    return out


_PRINTERS = {"float64": _KernelPrinter(), "float32": _KernelPrinter(single=True)}
_float_type: ContextVar[str] = ContextVar("numba_float_type", default="float64")
#: what a float32 module defines for ``pr``'s constants
F32_ALIAS = "f32 = np.float32  # float32 constants: a Python literal would promote float32 arithmetic to float64"


@contextmanager
def float_type(dtype):
    """Print the lane expressions inside (``pr``) for a kernel of float type ``dtype``."""
    token = _float_type.set(np.dtype(dtype).name)
    try:
        yield
    finally:
        _float_type.reset(token)


def pr(expr) -> str:
    """``expr`` as Numba lane code, for the float type of the enclosing :func:`float_type` (float64 by default)."""
    s = _PRINTERS[_float_type.get()].doprint(sp.sympify(expr))
    return s.replace("numpy.", "np.")


def const(literal: str) -> str:
    """A number written into lane code by hand (``"0.5"``), in the float type of the enclosing :func:`float_type`."""
    return _PRINTERS[_float_type.get()]._single(literal)


#: the decorator of generated functions: sdekit.abi.JIT_FLAGS, through the pipeline for printed code
#: (kernels.numba_runtime.GeneratedCompiler, without Numba's rewrites)
JIT = ("@numba.njit(" + ", ".join(f"{k}={v!r}" for k, v in JIT_FLAGS.items())
       + ", no_rewrites=True, pipeline_class=GeneratedCompiler)")


def linear_entry(i, j=None, traj="s") -> str:
    """``Lm`` at row ``i`` (and column ``j``: a dense L) of the lane's trajectory (sdekit.abi.LINEAR_LAYOUT)."""
    axes = LINEAR_LAYOUT["elementwise" if j is None else "dense"]
    L, S = LINEAR_ARGS
    return f"{L}[{', '.join(entry(axes, traj=f'{traj} * {S}', i=str(i), j=str(j)))}]"


def operator_entry(op, dense, i="i", j="j", traj="s", hclass="hc") -> str:
    """The fixed-step table ``op_<op>`` of step class ``hclass`` at (i[, j]) (sdekit.abi.OPERATOR_LAYOUT)."""
    axes = OPERATOR_LAYOUT["dense" if dense else "elementwise"]
    table, stride = operator_args(op)
    return f"{table}[{', '.join(entry(axes, hclass=hclass, traj=f'{traj} * {stride}', i=i, j=j))}]"


def param_entry(name: str, traj: str = "s") -> str:
    """The trajectory's value of parameter ``name`` (``abi.param_args``: values and their stride)."""
    values, stride = param_args(name)
    return f"{values}[{traj} * {stride}]"


def state_name(i):
    return f"v{i}"


def kernel_arguments(form: SemilinearForm, scheme: StepScheme, adaptive: bool = False) -> list:
    """Names of the runtime arguments after the fixed ones, in order (the runtime builds them).
    The adaptive kernel computes its operators per lane from ``L`` (no ``op_`` arrays)."""
    args = []
    for p in form.function_params:
        args += param_args(p.name)
    for name, net in sorted(form.nets.items()):
        for i in range(len(net.sizes) - 1):
            args += weight_args(name, i)
    if form.linear_structure != "zero" and (adaptive or _needs_L(form, scheme)):
        args += LINEAR_ARGS
    if not adaptive:
        for op in scheme.all_operators():
            args += operator_args(op)
    return args


def _needs_L(form, scheme):
    return form.linear_structure != "zero" and any(
        isinstance(s, EvalRHS) and s.part == "full" for s in scheme.all_statements())


def _used_symbols(lowered, net_inputs: bool = True) -> set:
    """Names of the lowered symbols (states v_i, params p_k, t) the lane code reads (``net_inputs``: also
    the networks' inputs, which ``_emit_net`` reads in its own loop)."""
    exprs = [e for _, e in lowered.assignments] + [sp.sympify(e) for e in lowered.outputs]
    if net_inputs:
        exprs += [sp.sympify(a) for g in lowered.net_groups for a in g.inputs]
    return {str(x) for e in exprs for x in e.free_symbols}


def _lane_prelude(w, form, lowered, state, all_states=False, trajectory=False):
    """Inside ``for b``: read what the lane code uses — the trajectory index ``s`` (params, per-trajectory
    L: ``trajectory``), the lane's time, the state components (``all_states``: every one) and params."""
    used = _used_symbols(lowered, net_inputs=False)
    params = [(name, var) for name, var in lowered.params if var in used]
    if params or trajectory:
        w("s = src[b]")
    if "t" in used:
        w("t = tc[b]")
    for i in range(form.dim):
        if all_states or state_name(i) in used:
            w(f"v{i} = {state}[{i}, b]")
    for name, var in params:
        w(f"{var} = {param_entry(name)}")


def arguments_used(form, lowered, extra, linear=False) -> list:
    """The runtime arguments (of ``extra``) a lane function of ``lowered`` reads: its params, the
    weights of its networks, ``L`` when ``linear``."""
    keep = set()
    for name, _ in lowered.params:
        keep.update(param_args(name))
    for g in lowered.net_groups:
        for i in range(len(g.net.sizes) - 1):
            keep.update(weight_args(g.net.name, i))
    if linear:
        keep.update(LINEAR_ARGS)
    return [a for a in extra if a in keep]


def _lane_signature(form, lowered, head, call_head, extra, linear=False, buffers=()):
    """(parameters, call template) of a lane function of ``lowered`` with the leading parameters ``head``
    (called with ``call_head``): ``tc`` first only when it reads t, ``src`` only when it reads params or
    a per-trajectory L, then its network scratch ``buffers`` and the runtime arguments it reads."""
    lead = ["tc"] if "t" in _used_symbols(lowered) else []
    trail = (["src"] if lowered.params or linear else []) + list(buffers) + arguments_used(form, lowered, extra, linear)
    return ", ".join(lead + list(head) + trail), ", ".join(["{t}"] * len(lead) + list(call_head) + trail)


def _emit_net(w, form, group, state):
    """One forward pass over the block: inputs, then each layer as j-k-b loops."""
    net = group.net
    sizes = net.sizes
    buf = f"{group.out}_in"
    with w.block("for b in range(B):"):
        needs = set().union(*(sp.sympify(a).free_symbols for a in group.inputs))
        if any(sp.Symbol(f"p_{p.name}") in needs for p in form.params):
            w("s = src[b]")
        if sp.Symbol("t") in needs:
            w("t = tc[b]")
        for i in range(form.dim):
            if sp.Symbol(state_name(i)) in needs:
                w(f"v{i} = {state}[{i}, b]")
        for p in form.params:
            if sp.Symbol(f"p_{p.name}") in needs:
                w(f"p_{p.name} = {param_entry(p.name)}")
        for k, a in enumerate(group.inputs):
            w(f"{buf}[{k}, b] = {pr(a)}")
    src, tsrc = buf, None
    for layer in range(len(sizes) - 1):
        last = layer == len(sizes) - 2
        dst = group.out if last else f"{group.out}_h{layer}"
        tdst = f"{group.out}_jac" if last else f"{group.out}_t{layer}"
        W, bias = f"{net.name}_W{layer}", f"{net.name}_b{layer}"
        with w.block(f"for j in range({sizes[layer + 1]}):"):
            with w.block("for b in range(B):"):
                w(f"{dst}[j, b] = {bias}[j]")
            _emit_matvec_row(w, W, src, dst, sizes[layer])
            if group.jacobian:   # forward-mode tangent T <- W T (T_0 = I), then σ'(x) T on hidden layers
                with w.block(f"for i in range({sizes[0]}):"):
                    if tsrc is None:
                        with w.block("for b in range(B):"):
                            w(f"{tdst}[j, i, b] = {W}[j, i]")
                    else:
                        with w.block("for b in range(B):"):
                            w(f"{tdst}[j, i, b] = 0.0")
                        with w.block(f"for k in range({sizes[layer]}):"):
                            w(f"wjk = {W}[j, k]")
                            with w.block("for b in range(B):"):
                                w(f"{tdst}[j, i, b] += wjk * {tsrc}[k, i, b]")
            if not last:
                with w.block("for b in range(B):"):
                    if group.jacobian:
                        w(f"g = {_activation(net.activation, f'{dst}[j, b]', grad=True)}")
                        with w.block(f"for i in range({sizes[0]}):"):
                            w(f"{tdst}[j, i, b] *= g")
                    w(f"{dst}[j, b] = {_activation(net.activation, f'{dst}[j, b]')}")
        src, tsrc = dst, tdst


#: inputs per pass of a layer's lane loop: dst[j] += W[j,k] x[k] + ... + W[j,k+U-1] x[k+U-1] loads and
#: stores dst once per U products (one load and store per product made the MLP L1-bound)
MATVEC_UNROLL = 8


def _emit_matvec_row(w, W, src, dst, K, U=MATVEC_UNROLL):
    """dst[j, b] += Σ_k W[j, k] src[k, b], U inputs per lane loop (summed in k order, as numpy's
    reference and the plain loop would, so FMA contraction is the only difference)."""
    K_main = K - K % U

    def body(k, terms):
        for u in range(terms):
            w(f"w{u} = {W}[j, {k} + {u}]")
        with w.block("for b in range(B):"):
            w(f"{dst}[j, b] = {dst}[j, b] + " + " + ".join(f"w{u} * {src}[{k} + {u}, b]" for u in range(terms)))

    if K_main:
        with w.block(f"for k in range(0, {K_main}, {U}):"):
            body("k", U)
    if K % U:
        body(str(K_main), K % U)


def _activation(kind, x, grad=False):
    """σ(x) (or σ'(x), the tangent pass's factor) of ``codegen.neural.ACTIVATIONS``, printed at the
    lane value ``x`` (tanh as ``nb_tanh``)."""
    return pr((activation_grad if grad else activation)(kind, sp.Symbol(x)))


def emit_net_buffers(w, form, lowered_list):
    for name, size in _net_buffers(form, lowered_list).items():
        w(f"{name} = np.empty(({', '.join(map(str, size))}, B), dtype=y0.dtype)")


def _net_buffers(form, lowered_list):
    """Scratch arrays of the network passes: name -> leading shape (the lane axis B follows)."""
    out = {}
    for lowered in lowered_list:
        for g in lowered.net_groups:
            sizes = g.net.sizes
            out[f"{g.out}_in"] = (sizes[0],)
            for layer in range(len(sizes) - 2):
                out[f"{g.out}_h{layer}"] = (sizes[layer + 1],)
                if g.jacobian:
                    out[f"{g.out}_t{layer}"] = (sizes[layer + 1], sizes[0])
            out[g.out] = (sizes[-1],)
            if g.jacobian:
                out[f"{g.out}_jac"] = (sizes[-1], sizes[0])
    return out


def emit_copy(w, dst, src):
    if dst != src:
        with w.block("for i in range(D):"):
            with w.block("for b in range(B):"):
                w(f"{dst}[i, b] = {src}[i, b]")


def emit_lane_functions(w, form, scheme, forcing, diffusion, extra, adaptive=False):
    """``rhs_block`` and ``noise_block``: one copy each, called once per stage (small
    compile, and LLVM still vectorises their lane loops).  ``adaptive``: the block size is the
    arrays' (blocks of ceil(n / ceil(n / BLOCK)) lanes, so one trajectory runs one lane), not the
    constant ``B``; and ``frhs_block``, f = L y + c + N, when the scheme's stages evaluate only the
    forcing (the initial step, dense output)."""
    bufs = list(_net_buffers(form, [forcing]))
    calls = {"rhs": _emit_rhs_function(w, form, forcing, "rhs_block", scheme.rhs_part, bufs, extra,
                                            adaptive)}
    calls["reads_t"] = {kind for kind, low in (("rhs", forcing), ("dW", diffusion), ("I10", diffusion))
                        if low is not None and "t" in _used_symbols(low)}   # the calls that read tc
    calls["frhs"] = calls["rhs"]
    if adaptive and scheme.rhs_part != "full":
        calls["frhs"] = _emit_rhs_function(w, form, forcing, "frhs_block", "full", bufs, extra, adaptive)
    if not form.stochastic:
        return calls
    G = diffusion.outputs
    mm = form.noise_dim

    def noise_row(i):
        if form.noise == "general":
            return " + ".join(f"({pr(G[i * mm + j])}) * dW[{j}, b]" for j in range(mm))
        return f"({pr(G[i])}) * dW[{0 if form.noise == 'scalar' else i}, b]"

    def noise_call(increment):
        return _lane_signature(form, diffusion, ("st", "dW", "out"), ("{state}", increment, "{target}"), extra)

    _lane_function(w, form, "noise_block", noise_call("dW")[0], "G(st, t) dW of the lanes of ``st`` into ``out``.",
                   diffusion, [f"out[{i}, b] = {noise_row(i)}" for i in range(form.dim)], adaptive)
    calls |= {"dW": f"noise_block({noise_call('dW')[1]})", "I10": f"noise_block({noise_call('dI')[1]})"}
    if scheme.needs_milstein:
        gg = lower(milstein_terms(form), form, state_name)
        col = (lambda i: 0) if form.noise == "scalar" else (lambda i: i)
        params, call = _lane_signature(form, gg, ("st", "dW", "hh", "out"), ("{state}", "dW", "h_l", "{target}"), extra)
        _lane_function(w, form, "milstein_block", params,
                       "½ (G'G)(st, t)(dW² − h) of the lanes of ``st`` into ``out`` (Kloeden & Platen 1992, "
                       "eq. 10.3.3).", gg,
                       [f"out[{i}, b] = {const('0.5')} * ({pr(e)}) * (dW[{col(i)}, b] * dW[{col(i)}, b] - hh[b])"
                        for i, e in enumerate(gg.outputs)], adaptive)
        calls["milstein"] = f"milstein_block({call})"
        if "t" in _used_symbols(gg):
            calls["reads_t"].add("milstein")
    return calls


def _emit_rhs_function(w, form, forcing, name, part, bufs, extra, adaptive) -> str:
    """``name([tc, ]st, out, ...)``: f = L y + c + N ("full") or c + N ("forcing") per lane; returns
    its call (``{t}``, ``{state}``, ``{target}`` to fill).  A dense L is applied by a loop over the
    state (no d² unrolled terms)."""
    linear = part == "full" and form.linear_structure != "zero"
    params, call = _lane_signature(form, forcing, ("st", "out"), ("{state}", "{target}"), extra, linear, bufs)
    w(JIT)
    with w.block(f"def {name}({params}):"):
        w(f'"""{"f = L y + c + N" if part == "full" else "c(t) + N(y, t)"} of the lanes of ``st`` into ``out``."""')
        _block_size(w, adaptive)
        for g in forcing.net_groups:
            _emit_net(w, form, g, "st")
        with w.block("for b in range(B):"):
            _lane_prelude(w, form, forcing, "st", all_states=linear and form.linear_structure != "dense",
                          trajectory=linear)
            for var, e in forcing.assignments:
                w(f"{var} = {pr(e)}")
            for i, e in enumerate(forcing.outputs):
                if linear and form.linear_structure == "dense":
                    w(f"acc = {pr(e)}")
                    with w.block("for j in range(D):"):
                        w(f"acc = acc + {linear_entry(i, 'j')} * st[j, b]")
                    w(f"out[{i}, b] = acc")
                elif linear:
                    w(f"out[{i}, b] = {pr(e)} + {linear_entry(i)} * v{i}")
                else:
                    w(f"out[{i}, b] = {pr(e)}")
    w()
    w()
    return f"{name}({call})"


def _block_size(w, adaptive):
    """Lane functions of the adaptive kernel take the block size from their arrays (fixed steps: the
    module's constant ``B``, which LLVM sees)."""
    if adaptive:
        w("B = st.shape[1]")


def _lane_function(w, form, name, args, doc, lowered, out_lines, adaptive):
    """An njit function ``name(args)`` looping over the B lanes: read the lane's state/params, CSE
    temporaries, outputs."""
    w(JIT)
    with w.block(f"def {name}({args}):"):
        w(f'"""{doc}"""')
        _block_size(w, adaptive)
        with w.block("for b in range(B):"):
            _lane_prelude(w, form, lowered, "st")
            for var, e in lowered.assignments:
                w(f"{var} = {pr(e)}")
            for line in out_lines:
                w(line)
    w()
    w()


def emit_jacobian(w, form, scheme, extra, calls, jac=None, adaptive=False):
    """``jac_block`` when the scheme evaluates the Jacobian (sets ``calls["jac"]``); returns its lowering."""
    if not scheme.needs_jacobian:
        return None
    jac = lower_jacobian(form) if jac is None else jac
    calls["jac"] = _emit_jacobian_function(w, form, jac, extra, adaptive)
    if "t" in _used_symbols(jac):
        calls["reads_t"].add("jac")
    return jac


def lower_jacobian(form):
    return lower(form.forcing_jacobian(), form, state_name, lambda g, i: f"{g}[{i}, b]",
                 lambda g, i, j: f"{g}_jac[{i}, {j}, b]")


def _emit_jacobian_function(w, form, jac, extra, adaptive):
    """``jac_block``: J̃ = [[L + ∂N/∂y, ∂N/∂t], [0, 0]] of the lanes of ``st`` into ``Jout``: zeros and L
    by loops over the state, then only the entries whose derivative is not identically zero."""
    d = form.dim
    structure = form.linear_structure
    linear = structure != "zero"
    params, call = _lane_signature(form, jac, ("st", "Jout"), ("{state}", "Jt"), extra, linear, _net_buffers(form, [jac]))
    w(JIT)
    with w.block(f"def jac_block({params}):"):
        w('"""Augmented Jacobian [[L + dN/dy, dN/dt], [0, 0]] of the lanes of ``st`` (sympy derivatives; '
          'networks by a forward-mode tangent pass)."""')
        _block_size(w, adaptive)
        with w.block("for r in range(D + 1):"):
            with w.block("for q in range(D + 1):"):
                with w.block("for b in range(B):"):
                    w("Jout[r, q, b] = 0.0")
        if linear:
            with w.block("for r in range(D):"):
                if structure == "dense":
                    with w.block("for q in range(D):"):
                        with w.block("for b in range(B):"):
                            w(f"Jout[r, q, b] = {linear_entry('r', 'q', traj='src[b]')}")
                else:
                    with w.block("for b in range(B):"):
                        w(f"Jout[r, r, b] = {linear_entry('r', traj='src[b]')}")
        for g in jac.net_groups:
            _emit_net(w, form, g, "st")
        entries = list(form.jacobian_entries(jac.outputs, d))
        if entries:                      # none where N is constant in y and t (a linear or affine ODE): J̃ is L
            with w.block("for b in range(B):"):
                _lane_prelude(w, form, jac, "st")
                for var, e in jac.assignments:
                    w(f"{var} = {pr(e)}")
                for i, j, e in entries:
                    plus_l = j < d and (structure == "dense" or (linear and i == j))
                    w(f"Jout[{i}, {j}, b] = {pr(e)}" + (f" + Jout[{i}, {j}, b]" if plus_l else ""))
    w()
    w()
    return f"jac_block({call})"


def _emit_stage_time(w, c, times):
    """``tc = t + c h`` per lane, unless ``times`` (what this step wrote so far) says it holds that already."""
    if times is not None and times.get("c") == c:
        return
    with w.block("for b in range(B):"):
        w(f"tc[b] = t_l[b] + {pr(c)} * h_l[b]" if c else "tc[b] = t_l[b]")
    if times is not None:
        times["c"] = c


def emit_statement(w, form, scheme, s, calls, adaptive=False, times=None):
    """Print one statement as lane loops.  ``adaptive``: operators are per-lane arrays computed in
    the step (``op_X[i, b]`` or ``op_X[i, j, b]``), else values per step class ``hc``.  ``times``:
    the stage time ``tc`` written so far in this step (None: write it at every evaluation)."""
    if isinstance(s, EvalJacobian):
        if "jac" in calls["reads_t"]:
            _emit_stage_time(w, s.c, times)
        w(calls["jac"].format(t="tc", state=s.state))   # its operators follow as loop IR (lane_operators)
        return
    if isinstance(s, (EvalRHS, EvalNoise)):
        kind = "rhs" if isinstance(s, EvalRHS) else s.increment
        if kind in calls["reads_t"]:
            _emit_stage_time(w, s.c, times)
        call = calls[kind]
        w(call.format(t="tc", state=s.state, target=s.target))
    elif isinstance(s, Combine):
        _emit_combine(w, form, scheme, s, adaptive)


def _dense_terms(form, scheme, s) -> list:
    """Indices of the terms of Combine ``s`` that apply a matrix (dense L operators, Jacobian operators)."""
    return [k for k, term in enumerate(s.terms) if term.op is not None and (
        term.op in scheme.jacobian_operators or operator_layout(form, scheme.all_operators()[term.op]) == "dense")]


def emit_matvec_buffers(w, form, scheme):
    """``mv0 ..``: one lane row (B,) per matrix term of the scheme's widest Combine."""
    widest = max((len(_dense_terms(form, scheme, s)) for s in scheme.all_statements() if isinstance(s, Combine)),
                 default=0)
    for k in range(widest):
        w(f"mv{k} = np.empty(B, dtype=y0.dtype)  # a row of a matrix-vector product, per lane")


def _emit_combine(w, form, scheme, s, adaptive):
    """``target = Σ coef · op(hL) vec`` row by row (``for i``), lanes innermost so LLVM vectorises:
    a matrix term accumulates its row into ``mv<k>`` over ``j`` first (no d² unrolled source).
    ``adaptive``: operators are per-lane arrays computed in the step, else values per step class ``hc``."""
    d = form.dim
    dense = _dense_terms(form, scheme, s)
    coef_syms = {x.name for term in s.terms for x in sp.sympify(term.coef).free_symbols}
    elementwise_op = not adaptive and any(term.op is not None and k not in dense for k, term in enumerate(s.terms))

    def lane_scalars(names, trajectory=False):
        """The lane's values of ``names``: the step h and previous step sizes h1, h2, ... (multistep)."""
        if trajectory:
            w("s = src[b]")
        for name in sorted(names):
            w(f"{name} = h_l[b]" if name == "h" else f"{name} = hp{name[1:]}[b]")

    def matrix(op):
        if op in scheme.jacobian_operators:
            return f"{jacobian_operator_name(op)}[i, {{}}, b]"
        return f"op_{op}[i, {{}}, b]" if adaptive else operator_entry(op, True, j="{}")

    with w.block("for i in range(D):"):
        for slot, k in enumerate(dense):
            term = s.terms[k]
            A = matrix(term.op)
            with w.block("for b in range(B):"):
                w(f"mv{slot}[b] = 0.0")
            with w.block("for j in range(D):"):
                with w.block("for b in range(B):"):
                    if not adaptive and term.op not in scheme.jacobian_operators:
                        w("s = src[b]")
                    w(f"mv{slot}[b] = mv{slot}[b] + {A.format('j')} * {term.vec}[j, b]")
            if term.op in scheme.jacobian_operators and term.aug != 0:
                with w.block("for b in range(B):"):
                    lane_scalars({x.name for x in sp.sympify(term.aug).free_symbols})
                    w(f"mv{slot}[b] = mv{slot}[b] + {A.format(d)}" + ("" if term.aug == 1 else f" * ({pr(term.aug)})"))
        with w.block("for b in range(B):"):
            lane_scalars(coef_syms, elementwise_op)
            terms = []
            for k, term in enumerate(s.terms):
                coef = "" if term.coef == 1 else f"({pr(term.coef)}) * "
                if k in dense:
                    terms.append(f"{coef}mv{dense.index(k)}[b]")
                elif term.op is None:
                    terms.append(f"{coef}{term.vec}[i, b]")
                else:
                    op = f"op_{term.op}[i, b]" if adaptive else operator_entry(term.op, False)
                    terms.append(f"{coef}{op} * {term.vec}[i, b]")
            w(f"{s.target}[i, b] = " + " + ".join(terms))
