"""The Numba emitter: prints a StepScheme as one fused, multi-threaded ensemble kernel.

Shape (DESIGN.md "kernel shape A", platform-notes.md): blocks of ``B`` trajectories in
structure-of-arrays layout ``(d, B)``, run in parallel as ranges of blocks on host threads
(the kernel releases the GIL; a ``prange`` launcher made Numba lower and optimise the whole
kernel a second time, +11 s of cold compile); inside a block every statement is a
loop over the B lanes, so LLVM vectorises it; the last block is padded (its extra lanes
repeat the last trajectory and are never stored), so every lane runs the same code.  The
whole time loop, the Brownian tree, the Philox counters and the MLP run inside; only the
saved points leave.  Step size, params, weights, operators and ``L`` are runtime arguments.
"""
from __future__ import annotations

from contextlib import contextmanager

import sympy as sp
from sympy.printing.numpy import NumPyPrinter

from ..abi import BLOCK, FIXED_ARGS, LINEAR_ARGS, OFF_GRID_NODE, STREAM_ZETA, SUCCESS, UNSTABLE, operator_args, param_args, weight_args
from .analysis import SemilinearForm
from .lowering import lower
from .builders import milstein_terms
from .scheme import Combine, EvalJacobian, EvalNoise, EvalRHS, StepScheme, operator_layout


class _KernelPrinter(NumPyPrinter):
    """Scalar lane code: ``math`` functions, and the inline tanh of ``numba_runtime``."""

    def __init__(self):
        super().__init__({"fully_qualified_modules": True})

    def _print_tanh(self, e):
        return f"nb_tanh({self._print(e.args[0])})"

    def _print_Max(self, e):
        return f"max({', '.join(self._print(a) for a in e.args)})"

    def _print_Min(self, e):
        return f"min({', '.join(self._print(a) for a in e.args)})"

    def _print_Heaviside(self, e):
        x = self._print(e.args[0])
        half = self._print(e.args[1]) if len(e.args) > 1 else "0.5"
        return f"(1.0 if {x} > 0 else ({half} if {x} == 0 else 0.0))"


_printer = _KernelPrinter()


def pr(expr) -> str:
    s = _printer.doprint(sp.sympify(expr))
    return s.replace("numpy.", "np.")


JIT = '@numba.njit(fastmath={"contract"}, cache=True, error_model="numpy")'


def _state(i):
    return f"v{i}"


class _Writer:
    def __init__(self):
        self.lines = []
        self.level = 0

    def __call__(self, line=""):
        self.lines.append("    " * self.level + line if line else "")

    def block(self, line):
        self(line)
        return _Indent(self)


class _Indent:
    def __init__(self, w):
        self.w = w

    def __enter__(self):
        self.w.level += 1

    def __exit__(self, *a):
        self.w.level -= 1


def kernel_arguments(form: SemilinearForm, scheme: StepScheme, adaptive: bool = False) -> list:
    """Names of the runtime arguments after the fixed ones, in order (the runtime builds them).
    The adaptive kernel computes its operators per lane from ``L`` (no ``op_`` arrays)."""
    args = []
    for p in form.params:
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


def _registers(scheme):
    regs = ["y"]
    for s in scheme.all_statements():
        if hasattr(s, "target") and s.target not in regs:
            regs.append(s.target)
    for dst, _ in scheme.history:
        if dst not in regs:
            regs.append(dst)
    return regs


def _used_symbols(lowered) -> set:
    """Names of the lowered symbols (states v_i, params p_k, t) the lane code reads."""
    exprs = [e for _, e in lowered.assignments] + [sp.sympify(e) for e in lowered.outputs]
    exprs += [sp.sympify(a) for g in lowered.net_groups for a in g.inputs]
    return {str(x) for e in exprs for x in e.free_symbols}


def _lane_prelude(w, form, lowered, state, all_states=False, trajectory=False):
    """Inside ``for b``: read what the lane code uses — the trajectory index ``s`` (params, per-trajectory
    L: ``trajectory``), the lane's time, the state components (``all_states``: every one) and params."""
    used = _used_symbols(lowered)
    if lowered.params or trajectory:
        w("s = src[b]")
    if "t" in used:
        w("t = tc[b]")
    for i in range(form.dim):
        if all_states or _state(i) in used:
            w(f"v{i} = {state}[{i}, b]")
    for name, var in lowered.params:
        w(f"{var} = P_{name}[s * S_{name}]")


def _arguments_used(form, lowered, extra, linear=False) -> list:
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
            if sp.Symbol(_state(i)) in needs:
                w(f"v{i} = {state}[{i}, b]")
        for p in form.params:
            if sp.Symbol(f"p_{p.name}") in needs:
                w(f"p_{p.name} = P_{p.name}[s * S_{p.name}]")
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
                        w(f"g = {_activation_grad(net.activation, f'{dst}[j, b]')}")
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


def _activation(kind, x):
    return {
        "tanh": f"nb_tanh({x})",
        "relu": f"max({x}, 0.0)",
        "sigmoid": f"0.5 * (1.0 + nb_tanh(0.5 * {x}))",
        "softplus": f"max({x}, 0.0) + math.log1p(math.exp(-abs({x})))",
        "silu": f"{x} * 0.5 * (1.0 + nb_tanh(0.5 * {x}))",
        "identity": x,
    }[kind]


def _activation_grad(kind, x):
    """σ'(x) from the pre-activation x (the tangent pass of the network Jacobian)."""
    return {
        "tanh": f"1.0 - nb_tanh({x}) ** 2",
        "relu": f"1.0 if {x} > 0 else 0.0",
        "sigmoid": f"0.25 * (1.0 - nb_tanh(0.5 * {x}) ** 2)",
        "softplus": f"0.5 * (1.0 + nb_tanh(0.5 * {x}))",
        "silu": f"0.5 * (1.0 + nb_tanh(0.5 * {x})) * (1.0 + {x} * 0.5 * (1.0 - nb_tanh(0.5 * {x})))",
        "identity": "1.0",
    }[kind]


def _emit_net_buffers(w, form, lowered_list):
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


def emit_numba(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK,
               brownian: str = "walk") -> str:
    """Source of the fused Numba ensemble kernel for ``scheme`` on ``form``.

    ``dtype`` picks the vectorised tanh (``tanh64`` or ``tanh32``, twice the SIMD width).
    ``brownian`` (SDEs): "walk" — the steps are the in-order intervals of one tree level (the grids
    of ``solve.time_grid`` with a ``level``) — or "query" — every step end is a tree query.
    One kernel does one of them: linking both doubles its compile time."""
    if brownian not in ("walk", "query"):
        raise ValueError(f"brownian must be 'walk' or 'query', got {brownian!r}")
    d, m = form.dim, form.noise_dim
    forcing = lower(list(form.forcing), form, _state, lambda g, i: f"{g}[{i}, b]")
    jac = _lower_jacobian(form) if scheme.needs_jacobian else None
    diffusion = lower(list(form.diffusion), form, _state) if form.stochastic else None
    regs = _registers(scheme)
    extra = kernel_arguments(form, scheme)
    needs_dw = scheme.needs_dW
    w = _Writer()
    w(f'"""sdekit generated: {scheme.method} fused ensemble kernel, numba backend.')
    w()
    w(f"state dimension {d}, L {form.linear_structure}, noise {form.noise}, block {block} lanes.")
    w()
    for ln in str(scheme).splitlines():
        w("    " + ln)
    w('"""')
    w("import math")
    w("import numba")
    w("import numpy as np")
    tanh = {"float64": "tanh64", "float32": "tanh32"}[str(dtype)]
    tree = "tree_walk" if brownian == "walk" else "tree_query_increment"
    w(f"from sdekit.kernels.numba_runtime import {tanh} as nb_tanh")
    w("from sdekit.kernels.philox import normals_block")
    w(f"from sdekit.kernels.brownian import {tree}, tree_start")
    if brownian == "query" and scheme.needs_dW:
        w("from sdekit.abi import TREE_DEPTH as DEPTH")
    if jac is not None:
        w("from sdekit.kernels.matfun import phi_block, phi_block_work")
    w()
    w(f"BLOCK = B = {block}")
    w(f"D = {d}")
    w(f"M = {m}")
    w()
    w()
    calls = _emit_lane_functions(w, form, scheme, forcing, diffusion, extra)
    _emit_emitted_jacobian(w, form, scheme, extra, calls, jac)
    args = ", ".join(FIXED_ARGS + tuple(extra))
    with block_range_kernel(w, args, "Blocks blk0 .. blk1-1 of B lanes (trajectories first + blk*B ...), "
                            "structure of arrays (D, B):\nintegrate them over ``times``; writes ``out`` and "
                            "``retcode``."):
        w("n = y0.shape[1]")
        w("nsteps = times.shape[0] - 1")
        w("T = tree_T  # length of the Brownian tree's span (solve.time_grid)")
        w("base = blk * B")
        w("src = np.empty(B, dtype=np.int64)")
        with w.block("for b in range(B):"):
            w("src[b] = min(base + b, n - 1)")
        for r in regs:
            w(f"{r} = np.empty((D, B), dtype=y0.dtype)")
        _emit_net_buffers(w, form, [forcing] + ([jac] if jac else []))
        _emit_matvec_buffers(w, form, scheme)
        if jac is not None:
            _emit_jacobian_buffers(w, scheme)
        w("bad = np.zeros(B, dtype=np.bool_)")
        w("t_l = np.empty(B, dtype=y0.dtype)")
        w("h_l = np.empty(B, dtype=y0.dtype)")
        w("tc = np.empty(B, dtype=y0.dtype)")
        for k in range(1, scheme.lags + 1):
            w(f"hp{k} = np.zeros(B, dtype=y0.dtype)  # previous step sizes (multistep)")
        if scheme.needs_levy:
            w("dI = np.empty((M, B), dtype=y0.dtype)")
        with w.block("for b in range(B):"):
            with w.block("for i in range(D):"):
                w("y[i, b] = y0[i, src[b]]")
        if needs_dw:
            w("dW = np.empty((M, B), dtype=y0.dtype)")
            _emit_tree_setup(w, brownian)
        if scheme.needs_zeta:
            w("zeta = np.empty((D, B), dtype=y0.dtype)")
            w("zeta64 = np.empty((D, B))")
        w("isave = 0")
        w("nfe = 0  # f-evaluations per lane (every lane of a block runs the same steps)")
        with w.block("if save_at[0] == 0:"):
            _emit_save(w)
        with w.block("for step in range(nsteps):"):
            with w.block("for b in range(B):"):  # every lane keeps its own t and h
                w("t_l[b] = tn_d[step]")
                w("h_l[b] = h_d[step]")
            if scheme.all_operators():
                w("hc = hclass[step]  # the step's class: operators are tabulated per distinct step size")
            if needs_dw:
                _emit_brownian_step(w, brownian)
            if scheme.needs_zeta:
                _emit_zeta(w)
            if scheme.needs_levy:
                with w.block("for c in range(M):"):
                    with w.block("for b in range(B):"):
                        w("dI[c, b] = 0.5 * dW[c, b] + dH[c, b]  # I_(1,0)/h (methods.md §5.3)")
            if scheme.startup is not None:
                with w.block(f"if step < {scheme.startup_steps}:"):
                    _emit_statements(w, form, scheme, scheme.startup.statements, calls)
                    _emit_copy(w, scheme.output, scheme.startup.output)
                with w.block("else:"):
                    _emit_statements(w, form, scheme, _fixed_step(scheme), calls)
            else:
                _emit_statements(w, form, scheme, _fixed_step(scheme), calls)
            for dst, src in scheme.history:
                _emit_copy(w, dst, src)
            if scheme.lags:
                with w.block("for b in range(B):"):
                    for k in range(scheme.lags, 1, -1):
                        w(f"hp{k}[b] = hp{k - 1}[b]")
                    w("hp1[b] = h_l[b]")
            _emit_finish_step(w, scheme.output)
            with w.block("if isave < save_at.shape[0] and save_at[isave] == step + 1:"):
                _emit_save(w)
        with w.block("for b in range(B):"):
            with w.block("if base + b < n:"):
                w(f"retcode[base + b] = {UNSTABLE} if bad[b] else {SUCCESS}  # Unstable, Success")
                w("stats[0, base + b] = nfe")
                w("stats[1, base + b] = nsteps")
    w()
    return "\n".join(w.lines) + "\n"


@contextmanager
def block_range_kernel(w, args, doc, preamble=()):
    """Open ``kernel(blk0, blk1, <args>)`` — nogil, docstring ``doc``, the ``preamble`` lines —
    and its loop over blocks blk0 .. blk1-1; the caller writes one block's body inside.  The
    host runs block ranges on threads (kernels/numba_backend.launch)."""
    w("@numba.njit(nogil=True, " + JIT.split("(", 1)[1])
    with w.block(f"def kernel(blk0, blk1, {args}):"):
        lines = (doc + "  Releases the GIL: the host runs block ranges on threads.").split("\n")
        for i, line in enumerate(lines):
            w(('"""' if i == 0 else "") + line + ('"""' if i == len(lines) - 1 else ""))
        for line in preamble:
            w(line)
        with w.block("for blk in range(blk0, blk1):"):
            yield


def _emit_statements(w, form, scheme, statements, calls):
    """One step's statements, then the count of its f-evaluations."""
    times = {}
    for s in statements:
        _emit_statement(w, form, scheme, s, calls, times=times)
    w(f"nfe += {sum(isinstance(s, EvalRHS) for s in statements)}")


def _fixed_step(scheme):
    """The statements a fixed-step kernel needs (the embedded error estimate and the stages only
    it uses are left out)."""
    return scheme.live_statements()


def _emit_save(w):
    with w.block("for b in range(B):"):
        with w.block("if base + b < n:"):
            with w.block("for i in range(D):"):
                w("out[isave, i, base + b] = y[i, b]")
    w("isave += 1")


def _emit_tree_setup(w, brownian):
    """The block's Brownian tree (kernels/brownian.tree_start): the walk's stack of level
    + 2 intervals, or the query path of DEPTH + 1 intervals."""
    walk = brownian == "walk"
    w("dH = np.empty((M, B), dtype=y0.dtype)")
    w("zbuf = np.empty((2 * M, B))")
    w("path = zbuf.reshape((2, 1, M, B))  # unused by the walk" if walk else "path = np.empty((2, DEPTH + 1, M, B))")
    w(f"nstack = {'level + 2' if walk else '1'}")
    w("stk_dw = np.empty((nstack, M, B))")
    w("stk_h = np.empty((nstack, M, B))")
    w("stk_lv = np.empty(nstack, dtype=np.int64)")
    w("stk_node = np.empty(nstack, dtype=np.int64)")
    if not walk:
        w("acc = np.empty((6, M, B))")
    w("sp = tree_start(k0, k1, first, src, T, level, zbuf, stk_dw, stk_h, stk_lv, stk_node, path)")


def _emit_brownian_step(w, brownian):
    """(dW, dH) of this step: the next interval of the tree walk, or the query path moved to t_{n+1}."""
    if brownian == "walk":
        w("sp = tree_walk(k0, k1, first, src, T, level, sp, zbuf, stk_dw, stk_h, stk_lv, stk_node, dW, dH)")
    else:
        w("tree_query_increment(k0, k1, first, src, T, step, q_ipos, q_frac, q_levels, zbuf, path, acc, dW, dH)")


def _emit_zeta(w):
    w(f"znode = (np.int64(1) << level) + step if level >= 0 else np.int64({OFF_GRID_NODE}) + step  # Grid.node")
    w(f"normals_block(k0, k1, znode, first, src, {STREAM_ZETA}, zeta64)  # STREAM_ZETA")
    with w.block("for i in range(D):"):
        with w.block("for b in range(B):"):
            w("zeta[i, b] = zeta64[i, b]")


def _emit_copy(w, dst, src):
    if dst != src:
        with w.block("for i in range(D):"):
            with w.block("for b in range(B):"):
                w(f"{dst}[i, b] = {src}[i, b]")


def _emit_lane_functions(w, form, scheme, forcing, diffusion, extra, full_rhs=False):
    """``rhs_block`` and ``noise_block``: one copy each, called once per stage (small
    compile, and LLVM still vectorises their lane loops).  ``full_rhs``: also ``frhs_block``,
    f = L y + c + N, when the scheme's stages evaluate only the forcing (dense output, the
    initial step of the adaptive kernel)."""
    bufs = list(_net_buffers(form, [forcing]))
    calls = {"rhs": _emit_rhs_function(w, form, forcing, "rhs_block", scheme.rhs_part, bufs, extra)}
    calls["frhs"] = calls["rhs"]
    if full_rhs and scheme.rhs_part != "full":
        calls["frhs"] = _emit_rhs_function(w, form, forcing, "frhs_block", "full", bufs, extra)
    if not form.stochastic:
        return calls
    G = diffusion.outputs
    mm = form.noise_dim

    def noise_row(i):
        if form.noise == "general":
            return " + ".join(f"({pr(G[i * mm + j])}) * dW[{j}, b]" for j in range(mm))
        return f"({pr(G[i])}) * dW[{0 if form.noise == 'scalar' else i}, b]"

    noise_args = ", ".join(["src"] + _arguments_used(form, diffusion, extra))
    _lane_function(w, form, "noise_block", f"tc, st, dW, out, {noise_args}",
                   "G(st, t) dW of the lanes of ``st`` into ``out``.", diffusion,
                   [f"out[{i}, b] = {noise_row(i)}" for i in range(form.dim)])
    calls |= {"dW": f"noise_block({{t}}, {{state}}, dW, {{target}}, {noise_args})",
              "I10": f"noise_block({{t}}, {{state}}, dI, {{target}}, {noise_args})"}
    if scheme.needs_milstein:
        gg = lower(milstein_terms(form), form, _state)
        col = (lambda i: 0) if form.noise == "scalar" else (lambda i: i)
        gg_args = ", ".join(["src"] + _arguments_used(form, gg, extra))
        _lane_function(w, form, "milstein_block", f"tc, st, dW, hh, out, {gg_args}",
                       "½ (G'G)(st, t)(dW² − h) of the lanes of ``st`` into ``out`` (Kloeden & Platen 1992, "
                       "eq. 10.3.3).", gg,
                       [f"out[{i}, b] = 0.5 * ({pr(e)}) * (dW[{col(i)}, b] * dW[{col(i)}, b] - hh[b])"
                        for i, e in enumerate(gg.outputs)])
        calls["milstein"] = f"milstein_block({{t}}, {{state}}, dW, h_l, {{target}}, {gg_args})"
    return calls


def _emit_rhs_function(w, form, forcing, name, part, bufs, extra) -> str:
    """``name(tc, st, out, src, ...)``: f = L y + c + N ("full") or c + N ("forcing") per lane; returns
    its call (``{t}``, ``{state}``, ``{target}`` to fill).  A dense L is applied by a loop over the
    state (no d² unrolled terms)."""
    linear = part == "full" and form.linear_structure != "zero"
    args = ", ".join(["src"] + bufs + _arguments_used(form, forcing, extra, linear))
    w(JIT)
    with w.block(f"def {name}(tc, st, out, {args}):"):
        w(f'"""{"f = L y + c + N" if part == "full" else "c(t) + N(y, t)"} of the lanes of ``st`` into ``out``."""')
        _runtime_block(w)
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
                        w(f"acc = acc + Lm[s * S_L, {i}, j] * st[j, b]")
                    w(f"out[{i}, b] = acc")
                elif linear:
                    w(f"out[{i}, b] = {pr(e)} + Lm[{i}, s * S_L] * v{i}")
                else:
                    w(f"out[{i}, b] = {pr(e)}")
    w()
    w()
    return f"{name}({{t}}, {{state}}, {{target}}, {args})"


def _runtime_block(w):
    """Lane functions of the adaptive kernel take the block size from their arrays (blocks of
    ceil(n / ceil(n / BLOCK)) lanes, so a single trajectory runs one lane)."""
    if getattr(w, "runtime_block", False):
        w("B = src.shape[0]")


def _lane_function(w, form, name, args, doc, lowered, out_lines):
    """An njit function ``name(args)`` looping over the B lanes: read the lane's state/params, CSE
    temporaries, outputs."""
    w(JIT)
    with w.block(f"def {name}({args}):"):
        w(f'"""{doc}"""')
        _runtime_block(w)
        with w.block("for b in range(B):"):
            _lane_prelude(w, form, lowered, "st")
            for var, e in lowered.assignments:
                w(f"{var} = {pr(e)}")
            for line in out_lines:
                w(line)
    w()
    w()


def _kernel_statements(scheme, adaptive=False):
    """What a kernel runs: the live statements (fixed steps), or all of them with the error estimate."""
    return scheme.statements if adaptive else _fixed_step(scheme)


def _used_jacobian_operators(scheme, adaptive=False) -> dict:
    """The Jacobian operators the kernel's statements apply (fixed steps: not the error estimate's)."""
    used = {t.op for s in _kernel_statements(scheme, adaptive) if isinstance(s, Combine) for t in s.terms}
    return {k: v for k, v in scheme.jacobian_operators.items() if k in used or k == "J"}


def _jacobian_scales(scheme, adaptive=False) -> dict:
    """Distinct scales c of the φ_k(c hJ̃) atoms -> (buffer index, highest k needed)."""
    out = {}
    for op in _used_jacobian_operators(scheme, adaptive).values():
        for _, atoms in op.poly or ():
            if len(atoms) != 1 or atoms[0][0] != "phi":
                raise NotImplementedError("kernel Jacobian operators are sums of single φ atoms")
            _, k, c = atoms[0]
            out[c] = (out.get(c, (len(out), 0))[0], max(k, out.get(c, (0, 0))[1]))
    return out


def _jop(name):
    """The array of a Jacobian operator: J̃ itself lives in ``Jt``."""
    return "Jt" if name == "J" else f"jop_{name}"


def _emit_jacobian_buffers(w, scheme, adaptive=False):
    w("Jt = np.empty((D + 1, D + 1, B), dtype=y0.dtype)  # augmented Jacobian [[J, dF/dt], [0, 0]] per lane")
    for c, (i, kmax) in _jacobian_scales(scheme, adaptive).items():
        w(f"Jc{i} = np.empty((D + 1, D + 1, B), dtype=y0.dtype)  # {c} h J~")
        w(f"phis{i} = np.empty(({kmax + 1}, D + 1, D + 1, B), dtype=y0.dtype)  # phi_0..phi_{kmax}({c} h J~)")
        w(f"pwork{i} = phi_block_work(D + 1, {kmax}, B, y0.dtype)")
    for name in _used_jacobian_operators(scheme, adaptive):
        if name != "J":
            w(f"{_jop(name)} = np.empty((D + 1, D + 1, B), dtype=y0.dtype)")


def _emit_jacobian_operators(w, scheme, adaptive=False):
    """φ_k(c hJ̃) per lane (kernels/matfun.phi_block), then each operator Σ w φ_k(c hJ̃)."""
    scales = _jacobian_scales(scheme, adaptive)
    for c, (i, kmax) in scales.items():
        with w.block("for r in range(D + 1):"):
            with w.block("for q in range(D + 1):"):
                with w.block("for b in range(B):"):
                    w(f"Jc{i}[r, q, b] = {pr(c)} * h_l[b] * Jt[r, q, b]")
        w(f"phi_block(Jc{i}, phis{i}.shape[0] - 1, phis{i}, pwork{i})  # kmax at run time: one compiled phi_block")
    for name, op in _used_jacobian_operators(scheme, adaptive).items():
        if op.poly is None:
            continue
        terms = " + ".join(f"{float(wt)!r} * phis{scales[a[0][2]][0]}[{a[0][1]}, r, q, b]" for wt, a in op.poly)
        with w.block("for r in range(D + 1):"):
            with w.block("for q in range(D + 1):"):
                with w.block("for b in range(B):"):
                    w(f"{_jop(name)}[r, q, b] = {terms or '0.0'}")


def _emit_emitted_jacobian(w, form, scheme, extra, calls, jac=None):
    """``jac_block`` when the scheme evaluates the Jacobian (sets ``calls["jac"]``); returns its lowering."""
    if not scheme.needs_jacobian:
        return None
    jac = _lower_jacobian(form) if jac is None else jac
    calls["jac"] = _emit_jacobian_function(w, form, jac, extra)
    return jac


def _lower_jacobian(form):
    return lower(form.forcing_jacobian(), form, _state, lambda g, i: f"{g}[{i}, b]",
                 lambda g, i, j: f"{g}_jac[{i}, {j}, b]")


def _emit_jacobian_function(w, form, jac, extra):
    """``jac_block``: J̃ = [[L + ∂N/∂y, ∂N/∂t], [0, 0]] of the lanes of ``st`` into ``Jout``."""
    d = form.dim
    linear = form.linear_structure != "zero"
    args = ", ".join(["src"] + list(_net_buffers(form, [jac])) + _arguments_used(form, jac, extra, linear))
    w(JIT)
    with w.block(f"def jac_block(tc, st, Jout, {args}):"):
        w('"""Augmented Jacobian [[L + dN/dy, dN/dt], [0, 0]] of the lanes of ``st`` (sympy derivatives; '
          'networks by a forward-mode tangent pass)."""')
        _runtime_block(w)
        for g in jac.net_groups:
            _emit_net(w, form, g, "st")
        with w.block("for b in range(B):"):
            _lane_prelude(w, form, jac, "st", trajectory=linear)
            for var, e in jac.assignments:
                w(f"{var} = {pr(e)}")
            for k, e in enumerate(jac.outputs):
                i, j = (k // d, k % d) if k < d * d else (k - d * d, d)
                lin = ""
                if j < d and form.linear_structure == "dense":
                    lin = f" + Lm[s * S_L, {i}, {j}]"
                elif j < d and i == j and form.linear_structure in ("scalar", "diagonal"):
                    lin = f" + Lm[{i}, s * S_L]"
                w(f"Jout[{i}, {j}, b] = {pr(e)}{lin}")
            for j in range(d + 1):
                w(f"Jout[{d}, {j}, b] = 0.0")
    w()
    w()
    return f"jac_block({{t}}, {{state}}, Jt, {args})"


def _emit_stage_time(w, c, times):
    """``tc = t + c h`` per lane, unless ``times`` (what this step wrote so far) says it holds that already."""
    if times is not None and times.get("c") == c:
        return
    with w.block("for b in range(B):"):
        w(f"tc[b] = t_l[b] + {pr(c)} * h_l[b]" if c else "tc[b] = t_l[b]")
    if times is not None:
        times["c"] = c


def _emit_statement(w, form, scheme, s, calls, adaptive=False, times=None):
    """Print one statement as lane loops.  ``adaptive``: operators are per-lane arrays computed in
    the step (``op_X[i, b]`` or ``op_X[i, j, b]``), else values per step class ``hc``.  ``times``:
    the stage time ``tc`` written so far in this step (None: write it at every evaluation)."""
    if isinstance(s, EvalJacobian):
        _emit_stage_time(w, s.c, times)
        w(calls["jac"].format(t="tc", state=s.state))
        _emit_jacobian_operators(w, scheme, adaptive)
        return
    if isinstance(s, (EvalRHS, EvalNoise)):
        _emit_stage_time(w, s.c, times)
        call = calls["rhs"] if isinstance(s, EvalRHS) else calls[s.increment]
        w(call.format(t="tc", state=s.state, target=s.target))
    elif isinstance(s, Combine):
        _emit_combine(w, form, scheme, s, adaptive)


def _dense_terms(form, scheme, s) -> list:
    """Indices of the terms of Combine ``s`` that apply a matrix (dense L operators, Jacobian operators)."""
    return [k for k, term in enumerate(s.terms) if term.op is not None and (
        term.op in scheme.jacobian_operators or operator_layout(form, scheme.all_operators()[term.op]) == "dense")]


def _emit_matvec_buffers(w, form, scheme):
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
    coef_syms |= {x.name for k in dense for x in sp.sympify(s.terms[k].aug or 0).free_symbols}
    fixed_op = not adaptive and any(term.op is not None and term.op not in scheme.jacobian_operators
                                    for term in s.terms)

    def lane_scalars():
        if fixed_op:
            w("s = src[b]")
        for name in sorted(coef_syms):   # the step h and previous step sizes h1, h2, ... (multistep)
            w(f"{name} = h_l[b]" if name == "h" else f"{name} = hp{name[1:]}[b]")

    def matrix(op):
        if op in scheme.jacobian_operators:
            return f"{_jop(op)}[i, {{}}, b]"
        return f"op_{op}[i, {{}}, b]" if adaptive else f"op_{op}[hc, s * S_op_{op}, i, {{}}]"

    with w.block("for i in range(D):"):
        for slot, k in enumerate(dense):
            term = s.terms[k]
            A = matrix(term.op)
            with w.block("for b in range(B):"):
                w(f"mv{slot}[b] = 0.0")
            with w.block("for j in range(D):"):
                with w.block("for b in range(B):"):
                    if fixed_op:
                        w("s = src[b]")
                    w(f"mv{slot}[b] = mv{slot}[b] + {A.format('j')} * {term.vec}[j, b]")
            if term.op in scheme.jacobian_operators and term.aug != 0:
                with w.block("for b in range(B):"):
                    lane_scalars()
                    w(f"mv{slot}[b] = mv{slot}[b] + {A.format(d)} * ({pr(term.aug)})")
        with w.block("for b in range(B):"):
            lane_scalars()
            terms = []
            for k, term in enumerate(s.terms):
                coef = "" if term.coef == 1 else f"({pr(term.coef)}) * "
                if k in dense:
                    terms.append(f"{coef}mv{dense.index(k)}[b]")
                elif term.op is None:
                    terms.append(f"{coef}{term.vec}[i, b]")
                else:
                    op = f"op_{term.op}[i, b]" if adaptive else f"op_{term.op}[hc, i, s * S_op_{term.op}]"
                    terms.append(f"{coef}{op} * {term.vec}[i, b]")
            w(f"{s.target}[i, b] = " + " + ".join(terms))


def _emit_finish_step(w, output):
    """Accept the step lane by lane; a non-finite lane is marked and frozen at NaN."""
    with w.block("for b in range(B):"):
        w("ok = True")
        with w.block("for i in range(D):"):
            w(f"ok = ok and math.isfinite({output}[i, b])")
        w("bad[b] = bad[b] or not ok")
        with w.block("for i in range(D):"):
            w(f"y[i, b] = {output}[i, b] if not bad[b] else np.nan")
