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

from ..abi import BLOCK, FIXED_ARGS, NACCEPT, NF, STREAM_ZETA, SUCCESS, UNSTABLE
from .analysis import SemilinearForm
from .lowering import lower
from .numba_lanes import (JIT, Writer, emit_copy, emit_jacobian, emit_jacobian_buffers, emit_lane_functions,
                          emit_matvec_buffers, emit_net_buffers, emit_statement, fixed_step_statements,
                          kernel_arguments, lower_jacobian, state_name)
from .scheme import EvalRHS, StepScheme

__all__ = ["emit_numba", "block_range_kernel", "kernel_arguments"]


def _registers(scheme):
    regs = ["y"]
    for s in scheme.all_statements():
        if hasattr(s, "target") and s.target not in regs:
            regs.append(s.target)
    for dst, _ in scheme.history:
        if dst not in regs:
            regs.append(dst)
    return regs


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
    forcing = lower(list(form.forcing), form, state_name, lambda g, i: f"{g}[{i}, b]")
    jac = lower_jacobian(form) if scheme.needs_jacobian else None
    diffusion = lower(list(form.diffusion), form, state_name) if form.stochastic else None
    regs = _registers(scheme)
    extra = kernel_arguments(form, scheme)
    needs_dw = scheme.needs_dW
    w = Writer()
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
    if scheme.needs_zeta:
        w("from sdekit.kernels.philox import normals_block")
    if scheme.needs_dW:
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
    calls = emit_lane_functions(w, form, scheme, forcing, diffusion, extra)
    emit_jacobian(w, form, scheme, extra, calls, jac)
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
        emit_net_buffers(w, form, [forcing] + ([jac] if jac else []))
        emit_matvec_buffers(w, form, scheme)
        if jac is not None:
            emit_jacobian_buffers(w, scheme)
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
                    emit_copy(w, scheme.output, scheme.startup.output)
                with w.block("else:"):
                    _emit_statements(w, form, scheme, fixed_step_statements(scheme), calls)
            else:
                _emit_statements(w, form, scheme, fixed_step_statements(scheme), calls)
            for dst, src in scheme.history:
                emit_copy(w, dst, src)
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
                w(f"stats[{NF}, base + b] = nfe")
                w(f"stats[{NACCEPT}, base + b] = nsteps")
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
        emit_statement(w, form, scheme, s, calls, times=times)
    w(f"nfe += {sum(isinstance(s, EvalRHS) for s in statements)}")


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
    w(f"normals_block(k0, k1, step_node[step], first, src, {STREAM_ZETA}, zeta64)  # STREAM_ZETA at Grid.node(step)")
    with w.block("for i in range(D):"):
        with w.block("for b in range(B):"):
            w("zeta[i, b] = zeta64[i, b]")


def _emit_finish_step(w, output):
    """Accept the step lane by lane; a non-finite lane is marked and frozen at NaN."""
    with w.block("for b in range(B):"):
        w("ok = True")
        with w.block("for i in range(D):"):
            w(f"ok = ok and math.isfinite({output}[i, b])")
        w("bad[b] = bad[b] or not ok")
        with w.block("for i in range(D):"):
            w(f"y[i, b] = {output}[i, b] if not bad[b] else np.nan")
