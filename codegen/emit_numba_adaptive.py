"""The Numba emitter's adaptive kernel: every trajectory (lane) proposes, accepts or rejects its
own steps inside the fused ensemble kernel (DESIGN.md "masked lanes"; methods.md §6).

Same block shape and the same step statements as :mod:`emit_numba` (printed by its
``emit_statement``), plus, per lane: its own t and h, operator values φ_k(c hL) and
(I − a hL)^{-1} computed for its h (``kernels/matfun``), (ΔW, H) queried from its own
time-addressed Brownian tree (``kernels/brownian.lane_tree_increments``), Hairer's error norm, the
I/PI/PID controller, retcodes, dense (Hermite) output or exact save points.  The arithmetic
follows the numpy driver ``kernels/adaptive.integrate`` step for step, so both backends take
the same steps.  Blocks have ceil(n / ceil(n / BLOCK)) lanes, so one trajectory runs one lane.
"""
from __future__ import annotations

from ..abi import (ADAPTIVE_ARGS, BLOCK, CONTROLLER, DT_LESS_THAN_MIN, MAX_ITERS, NACCEPT, NF, NREJECT, STOP_STRETCH,
                   UNSTABLE)
from .analysis import SemilinearForm
from .emit_numba import block_range_kernel
from .numba_lanes import (emit_copy, emit_jacobian_buffers, emit_lane_functions,
                         emit_jacobian, emit_matvec_buffers, emit_net_buffers, emit_statement, state_name, Writer, kernel_arguments)
from .lowering import lower
from .scheme import EvalRHS, StepScheme, operator_layout



def _ctrl(name: str) -> str:
    """The controller setting ``name`` (sdekit.abi.CONTROLLER) in the kernel's ``ctrl`` vector."""
    return f"ctrl[{CONTROLLER.index(name)}]"


def emit_numba_adaptive(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK) -> str:
    """Source of the adaptive fused ensemble kernel for ``scheme`` (which must have an error estimate)."""
    if scheme.error is None:
        raise ValueError(f"{scheme.method} has no embedded error estimate")
    _check_startup(scheme)
    d, m = form.dim, form.noise_dim
    forcing = lower(list(form.forcing), form, state_name, lambda g, i: f"{g}[{i}, b]")
    diffusion = lower(list(form.diffusion), form, state_name) if form.stochastic else None
    extra = kernel_arguments(form, scheme, adaptive=True)
    w = Writer()
    w.runtime_block = True
    w(f'"""sdekit generated: {scheme.method} adaptive fused ensemble kernel, numba backend.')
    w()
    w(f"state dimension {d}, L {form.linear_structure}, noise {form.noise}, blocks of up to {block} lanes,")
    w("each lane with its own t and h (error estimate register: " + scheme.error + ").")
    w()
    for ln in str(scheme).splitlines():
        w("    " + ln)
    w('"""')
    w("import math")
    w("import numba")
    w("import numpy as np")
    tanh = {"float64": "tanh64", "float32": "tanh32"}[str(dtype)]
    w(f"from sdekit.kernels.numba_runtime import {tanh} as nb_tanh")
    w("from sdekit.kernels.brownian import lane_tree_accept, lane_tree_buffers, lane_tree_increments, lane_tree_start")
    w("from sdekit.kernels.matfun import inverse_block, inverse_block_work, phi_block, phi_block_work, phi_scalar")
    w()
    w(f"BLOCK = {block}")
    w(f"D = {d}")
    w(f"M = {m}")
    w(f"NSTAGES = {sum(isinstance(s, EvalRHS) for s in scheme.statements)}  # f-evaluations per attempt")
    w()
    w()
    calls = emit_lane_functions(w, form, scheme, forcing, diffusion, extra, full_rhs=True)
    jac = emit_jacobian(w, form, scheme, extra, calls)
    args = ", ".join(ADAPTIVE_ARGS + tuple(extra))
    doc = ("Blocks blk0 .. blk1-1 of the ceil(n / BLOCK) blocks: integrate their trajectories (of first ..\n"
           "first+n-1) over [t0, t1] adaptively, each its own steps; writes ``out`` (and ``out_t``, ``nsaved``\n"
           "when ``record``), ``retcode`` and ``stats`` (nf, naccept, nreject).  Blocks have equal size\n"
           "B = ceil(n / nblocks) (little padding; n = 1 runs one lane) and lanes in structure of arrays (D, B),\n"
           "masked once finished.")
    preamble = ("n = y0.shape[1]", "nblocks = (n + BLOCK - 1) // BLOCK", "B = (n + nblocks - 1) // nblocks")
    with block_range_kernel(w, args, doc, preamble):
        _emit_setup(w, form, scheme, forcing, jac)
        _emit_initial_step(w, form, calls)
        with w.block("while True:"):
            w("nact = 0")
            with w.block("for b in range(B):"):
                w("nact += act[b]")
            with w.block("if nact == 0:"):
                w("break")
            _emit_propose(w)
            if scheme.needs_dW:
                _emit_noise(w, scheme)
            _emit_lane_operators(w, form, scheme)
            _emit_attempt(w, form, scheme, calls)
            _emit_error_norm(w)
            _emit_dense_output(w, form, scheme, calls)
            _emit_accept_reject(w, form, scheme)
            if scheme.fsal:
                w("fsal_ready = True  # every lane's first stage now holds f(y, t)")
        _emit_finish(w)
    w()
    return "\n".join(w.lines) + "\n"


def _check_startup(scheme):
    """Lanes in their startup steps and lanes past them run in one block: the history registers must
    be computed by the same statement in both schemes (e.g. K0 = N(y, t))."""
    if scheme.startup is None:
        return
    for _, src in scheme.history:
        main = [s for s in scheme.statements if getattr(s, "target", None) == src]
        start = [s for s in scheme.startup.statements if getattr(s, "target", None) == src]
        if main != start:
            raise NotImplementedError(f"{scheme.method}: history register {src} differs between the startup and "
                                      "main schemes; the adaptive kernel cannot mix them in one block")


def _emit_setup(w, form, scheme, forcing, jac):
    """Lane sources, registers, scratch, lane state, and the save of the initial values."""
    w("n = y0.shape[1]")
    w("base = blk * B")
    w("T = t1 - t0")
    w("src = np.empty(B, dtype=np.int64)")
    with w.block("for b in range(B):"):
        w("src[b] = min(base + b, n - 1)")
    regs = ["y", "y_start", "f0", "f1"]
    for s in scheme.all_statements():
        if hasattr(s, "target") and s.target not in regs:
            regs.append(s.target)
    for dst, _ in scheme.history:
        if dst not in regs:
            regs.append(dst)
    for r in regs:
        w(f"{r} = np.zeros((D, B), dtype=y0.dtype)")
    emit_net_buffers(w, form, [forcing] + ([jac] if jac else []))
    emit_matvec_buffers(w, form, scheme)
    if jac is not None:
        emit_jacobian_buffers(w, scheme, adaptive=True)
    for name, op in scheme.all_operators().items():
        shape = "(D, D, B)" if operator_layout(form, op) == "dense" else "(D, B)"
        w(f"op_{name} = np.empty({shape}, dtype=y0.dtype)")
    if form.linear_structure == "dense" and scheme.all_operators():
        _emit_dense_operator_buffers(w, scheme)
    for k in range(1, scheme.lags + 1):
        w(f"hp{k} = np.ones(B, dtype=y0.dtype)  # previous step sizes (multistep)")
    w("tc = np.empty(B, dtype=y0.dtype)")
    w("t_l = np.empty(B, dtype=y0.dtype)")
    w("h_l = np.empty(B, dtype=y0.dtype)")
    w("t64 = np.full(B, t0)        # lane time (float64 whatever the dtype)")
    w("h64 = np.empty(B)           # proposed next step")
    w("hs = np.empty(B)            # this attempt's step")
    w("te = np.empty(B)            # this attempt's end time (a stop exactly, when aimed at one)")
    w("hprop = np.empty(B)         # the proposal min(h, dtmax) before a stop cut it")
    w("cut = np.zeros(B, dtype=np.bool_)")
    w("eest = np.empty(B)")
    w("e1 = np.ones(B)")
    w("e2 = np.ones(B)")
    w("act = np.ones(B, dtype=np.bool_)")
    w("code = np.zeros(B, dtype=np.int8)")
    w("istop = np.zeros(B, dtype=np.int64)")
    w("isave = np.zeros(B, dtype=np.int64)")
    w("iters = np.zeros(B, dtype=np.int64)")
    w("naccepted = np.zeros(B, dtype=np.int64)")
    w("nrejected = np.zeros(B, dtype=np.int64)")
    w("nf = np.zeros(B, dtype=np.int64)")
    w("need = np.zeros(B, dtype=np.bool_)")
    if scheme.fsal:
        w("fsal_ready = False")
    with w.block("for b in range(B):"):
        with w.block("for i in range(D):"):
            w("y[i, b] = y0[i, src[b]]")
    if scheme.needs_dW:
        w("dW = np.empty((M, B), dtype=y0.dtype)")
        w("dH = np.empty((M, B), dtype=y0.dtype)")
        if scheme.needs_levy:
            w("dI = np.empty((M, B), dtype=y0.dtype)")
        w("plan, frac, paths, trial = lane_tree_buffers(B, M)")
        w("lane_tree_start(k0, k1, first, src, T, plan, frac, paths)")
    w("nsave = save_t.shape[0]")
    with w.block("for b in range(B):"):
        w("j = base + b")
        with w.block("if j >= n:"):
            w("continue")
        with w.block("if record:"):
            w("out_t[0, j] = t0")
            with w.block("for i in range(D):"):
                w("out[0, i, j] = y[i, b]")
            w("nsaved[j] = 1")
        with w.block("else:"):
            with w.block("while isave[b] < nsave and save_t[isave[b]] <= t0:"):
                with w.block("for i in range(D):"):
                    w("out[isave[b], i, j] = y[i, b]")
                w("isave[b] += 1")


def _emit_initial_step(w, form, calls):
    """Hairer's initial step per lane (HNW I §II.4; kernels/adaptive.initial_step), unless h0 > 0."""
    with w.block("if h0 > 0:"):
        with w.block("for b in range(B):"):
            w("h64[b] = h0")
    with w.block("else:"):
        with w.block("for b in range(B):"):
            w("tc[b] = t0")
        w(calls["frhs"].format(t="tc", state="y", target="f0"))
        with w.block("for b in range(B):"):
            w("d0 = 0.0")
            w("d1 = 0.0")
            with w.block("for i in range(D):"):
                w("sc = atol[i] + rtol[i] * abs(y[i, b])")
                w("d0 += (y[i, b] / sc) ** 2")
                w("d1 += (f0[i, b] / sc) ** 2")
            w("d0 = math.sqrt(d0 / D)")
            w("d1 = math.sqrt(d1 / D)")
            w("hh = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / max(d1, 1e-300)")
            w("hs[b] = min(hh, dtmax)")
            w("tc[b] = t0 + hs[b]")
            with w.block("for i in range(D):"):
                w("y_start[i, b] = y[i, b] + hs[b] * f0[i, b]")
        w(calls["frhs"].format(t="tc", state="y_start", target="f1"))
        with w.block("for b in range(B):"):
            w("d1 = 0.0")
            w("d2 = 0.0")
            with w.block("for i in range(D):"):
                w("sc = atol[i] + rtol[i] * abs(y[i, b])")
                w("d1 += (f0[i, b] / sc) ** 2")
                w("d2 += ((f1[i, b] - f0[i, b]) / sc) ** 2")
            w("dm = max(math.sqrt(d1 / D), math.sqrt(d2 / D) / hs[b])")
            w("hh = max(1e-6, hs[b] * 1e-3) if dm <= 1e-15 else (0.01 / max(dm, 1e-300)) ** (1.0 / ("
              f"{_ctrl('order')} + 1.0))")
            w("h64[b] = min(min(100.0 * hs[b], hh), dtmax)")
            w("nf[b] += 2")


def _emit_propose(w):
    """Each lane's trial step (kernels/adaptive.propose): its proposal, cut at dtmax, and taken onto
    the next stop (t1, tstops, SDE saves) when that lies within 1 + STOP_STRETCH of it."""
    with w.block("for b in range(B):"):
        with w.block("while istop[b] < stops.shape[0] - 1 and stops[istop[b]] <= t64[b]:"):
            w("istop[b] += 1")
        w("hprop[b] = min(h64[b], dtmax)")
        w("gap = stops[istop[b]] - t64[b]")
        w(f"to_stop = gap <= {1.0 + STOP_STRETCH!r} * hprop[b]  # stretched or cut onto the stop (adaptive.propose)")
        w("cut[b] = to_stop and gap < hprop[b]")
        w("hs[b] = (gap if to_stop else hprop[b]) if act[b] else 1.0")
        w("te[b] = stops[istop[b]] if to_stop else t64[b] + hs[b]")
        w("t_l[b] = t64[b]")
        w("h_l[b] = hs[b]")


def _emit_noise(w, scheme):
    w("lane_tree_increments(k0, k1, first, src, T, t0, t64, te, act, plan, frac, paths, trial, dW, dH)")
    if scheme.needs_levy:
        with w.block("for c in range(M):"):
            with w.block("for b in range(B):"):
                w("dI[c, b] = 0.5 * dW[c, b] + dH[c, b]  # I_(1,0)/h (methods.md §5.3)")


def _atoms(scheme):
    """Distinct atoms of the scheme's operators (each operator is a weighted sum of single atoms)."""
    atoms = []
    for name, op in scheme.all_operators().items():
        for _, at in op.poly:
            if len(at) != 1:
                raise NotImplementedError(f"operator {name}: products of φ atoms in the adaptive kernel")
            if at[0] not in atoms:
                atoms.append(at[0])
    return atoms


def _emit_dense_operator_buffers(w, scheme):
    """Per-lane φ_k(c hL) blocks of each scale and the resolvent blocks (dense L)."""
    scales = {}
    for atom in _atoms(scheme):
        if atom[0] == "phi":
            scales[atom[2]] = max(scales.get(atom[2], 0), atom[1])
    for i, (c, kmax) in enumerate(scales.items()):
        w(f"Zs{i} = np.empty((D, D, B))  # {c} h L per lane")
        w(f"phs{i} = np.empty(({kmax + 1}, D, D, B))")
        w(f"phw{i} = phi_block_work(D, {kmax}, B, np.float64)")
    if any(a[0] == "res" for a in _atoms(scheme)):
        w("Rz = np.empty((D, D, B))")
        w("rwork = inverse_block_work(D, B, np.float64)")
    for i, atom in enumerate(a for a in _atoms(scheme) if a[0] == "res"):
        w(f"res{i} = np.empty((D, D, B))  # inv(I - {float(atom[1])!r} h L)")


def _emit_lane_operators(w, form, scheme):
    """This attempt's operator values per lane, for its own h (methods.md §1: φ_k(c hL) and the
    W-method resolvents (I − a hL)^{-1}; kernels/matfun.phi_scalar / phi_block / inverse_block)."""
    ops = scheme.all_operators()
    if not ops:
        return
    atoms = _atoms(scheme)
    if form.linear_structure == "dense":
        scales = {}
        for atom in atoms:
            if atom[0] == "phi":
                scales.setdefault(atom[2], len(scales))
        for c, i in scales.items():
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"Zs{i}[r, q, b] = {float(c)!r} * hs[b] * Lm[src[b] * S_L, r, q]")
            w(f"phi_block(Zs{i}, phs{i}.shape[0] - 1, phs{i}, phw{i})")
        value = {}
        for atom in atoms:
            if atom[0] == "phi":
                value[atom] = f"phs{scales[atom[2]]}[{atom[1]}, r, q, b]"
        for i, atom in enumerate(a for a in atoms if a[0] == "res"):
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"Rz[r, q, b] = (1.0 if r == q else 0.0) - {float(atom[1])!r} * hs[b] * Lm[src[b] * S_L, r, q]")
            w(f"inverse_block(Rz, res{i}, rwork)")
            value[atom] = f"res{i}[r, q, b]"
        for name, op in ops.items():
            rhs = " + ".join(f"{float(wt)!r} * {value[at[0]]}" for wt, at in op.poly) or "0.0"
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"op_{name}[r, q, b] = {rhs}")
        return
    with w.block("for i in range(D):"):
        with w.block("for b in range(B):"):
            w("z = hs[b] * Lm[i, src[b] * S_L]" if form.linear_structure != "zero" else "z = 0.0")
            names = {}
            for k, atom in enumerate(atoms):
                names[atom] = f"a{k}"
                if atom[0] == "phi":
                    w(f"a{k} = phi_scalar({atom[1]}, {float(atom[2])!r} * z)")
                else:
                    w(f"a{k} = 1.0 / (1.0 - {float(atom[1])!r} * z)")
            for name, op in ops.items():
                rhs = " + ".join(f"{float(wt)!r} * {names[at[0]]}" for wt, at in op.poly) or "0.0"
                w(f"op_{name}[i, b] = {rhs}")


def _emit_attempt(w, form, scheme, calls):
    """One trial step of every lane; lanes still in a multistep method's startup take the startup
    scheme's result (no estimate: err = 0), as ``kernels/adaptive._attempt``."""
    if scheme.startup is not None:
        w("nstart = 0")
        with w.block("for b in range(B):"):
            w(f"nstart += naccepted[b] < {scheme.startup_steps}")
        with w.block("if nstart > 0:"):
            for s in scheme.startup.statements:
                emit_statement(w, form, scheme, s, calls, adaptive=True)
            emit_copy(w, "y_start", scheme.startup.output)
    for s in scheme.statements:
        if scheme.fsal and getattr(s, "target", None) == scheme.fsal[0]:
            with w.block("if not fsal_ready:  # FSAL: f(y, t) is the last step's end (or this step's start)"):
                emit_statement(w, form, scheme, s, calls, adaptive=True)
            continue
        emit_statement(w, form, scheme, s, calls, adaptive=True)
    if scheme.startup is not None:
        with w.block("for b in range(B):"):
            with w.block(f"if naccepted[b] < {scheme.startup_steps}:"):
                with w.block("for i in range(D):"):
                    w(f"{scheme.output}[i, b] = y_start[i, b]")
                    w(f"{scheme.error}[i, b] = 0.0")


def _emit_error_norm(w):
    """EEst per lane: Hairer's RMS norm (kernels/adaptive.error_norm); inf for a non-finite step."""
    with w.block("for b in range(B):"):
        w("acc = 0.0")
        w("fin = True")
        with w.block("for i in range(D):"):
            w("yn = y_new[i, b]")
            w("fin = fin and math.isfinite(yn)")
            w("sc = atol[i] + rtol[i] * max(abs(y[i, b]), abs(yn) if math.isfinite(yn) else abs(y[i, b]))")
            w("acc += (err[i, b] / sc) ** 2")
        w("eest[b] = math.sqrt(acc / D) if fin else np.inf")


def _emit_dense_output(w, form, scheme, calls):
    """ODEs: f at both ends of the accepted steps that contain a save time (cubic Hermite, HNW I §II.6);
    an FSAL method has them already (its first and last stages)."""
    if form.stochastic:
        return
    w("ndense = 0")
    with w.block("for b in range(B):"):
        w("need[b] = act[b] and eest[b] <= 1.0 and not record and isave[b] < nsave and save_t[isave[b]] < te[b]")
        w("ndense += need[b]")
        if not scheme.fsal:
            w("tc[b] = te[b]")
    with w.block("if ndense > 0:"):
        if scheme.fsal:
            emit_copy(w, "f0", scheme.fsal[0])
            emit_copy(w, "f1", scheme.fsal[1])
        else:
            w(calls["frhs"].format(t="t_l", state="y", target="f0"))
            w(calls["frhs"].format(t="tc", state="y_new", target="f1"))


def _emit_accept_reject(w, form, scheme):
    """Per lane: statistics, saving, the controller (kernels/adaptive.Controller), the state and
    multistep memory on acceptance, and the end / MaxIters / DtLessThanMin / Unstable checks."""
    with w.block("for b in range(B):"):
        with w.block("if not act[b]:"):
            w("continue")
        if scheme.fsal:
            w("nf[b] += NSTAGES - (1 if fsal_ready else 0)")
        else:
            w("nf[b] += NSTAGES + 2 * need[b]")
        w("iters[b] += 1")
        w("e = eest[b]")
        with w.block("if e <= 1.0:"):
            _emit_save_step(w, form)
            w(f"q = {_ctrl('safety')} * (1.0 / max(e, 1e-10)) ** {_ctrl('b1')} * (1.0 / max(e1[b], 1e-10)) ** "
              f"{_ctrl('b2')} * (1.0 / max(e2[b], 1e-10)) ** {_ctrl('b3')}")
            w(f"q = min(max(q, {_ctrl('qmin')}), {_ctrl('qmax')})")
            w("h64[b] = max(hs[b] * q, hprop[b]) if (cut[b] and q >= 1.0) else hs[b] * q  # adaptive.next_step")
            w("e2[b] = e1[b]")
            w("e1[b] = max(e, 1e-4)")
            with w.block("for i in range(D):"):
                w(f"y[i, b] = {scheme.output}[i, b]")
                for dst, src in scheme.history + ((scheme.fsal,) if scheme.fsal else ()):
                    w(f"{dst}[i, b] = {src}[i, b]")
            for k in range(scheme.lags, 1, -1):
                w(f"hp{k}[b] = hp{k - 1}[b]")
            if scheme.lags:
                w("hp1[b] = h_l[b]")
            if scheme.needs_dW:
                w("lane_tree_accept(b, te[b], t0, T, plan, frac, paths, trial)")
            w("naccepted[b] += 1")
            w("t64[b] = te[b]")
        with w.block("else:"):
            w("nrejected[b] += 1")
            w(f"q = {_ctrl('safety')} * (1.0 / max(e, 1e-10)) ** {_ctrl('b1')} if math.isfinite(e) else {_ctrl('qmin')}")
            w(f"h64[b] = hs[b] * min(max(q, {_ctrl('qmin')}), 1.0)")
        with w.block("if t64[b] >= t1:"):
            w("act[b] = False")
        with w.block("elif iters[b] >= maxiters:"):
            w(f"code[b] = {MAX_ITERS}  # MaxIters")
            w("act[b] = False")
        with w.block("elif h64[b] < dtmin or h64[b] <= 1e-14 * max(abs(t64[b]), 1.0):"):
            w(f"code[b] = {DT_LESS_THAN_MIN} if math.isfinite(e) else {UNSTABLE}  # DtLessThanMin, Unstable")
            w("act[b] = False")


def _emit_save_step(w, form):
    """Save what the accepted step reached: every step (record), the end state at save times it
    landed on, or the Hermite interpolant inside it (ODEs)."""
    w("j = base + b")
    with w.block("if j < n and record:"):
        w("k = nsaved[j]")
        with w.block("if k < out.shape[0]:"):
            w("out_t[k, j] = te[b]")
            with w.block("for i in range(D):"):
                w("out[k, i, j] = y_new[i, b]")
        w("nsaved[j] = k + 1")
    with w.block("elif j < n:"):
        with w.block("while isave[b] < nsave and save_t[isave[b]] <= te[b]:"):
            if form.stochastic:   # SDEs step onto their save times exactly
                with w.block("for i in range(D):"):
                    w("out[isave[b], i, j] = y_new[i, b]")
                w("isave[b] += 1")
                return
            w("ts = save_t[isave[b]]")
            with w.block("if ts >= te[b]:"):
                with w.block("for i in range(D):"):
                    w("out[isave[b], i, j] = y_new[i, b]")
            with w.block("else:"):
                w("s_ = (ts - t64[b]) / hs[b]")
                w("c00 = 2 * s_**3 - 3 * s_**2 + 1")
                w("c10 = s_**3 - 2 * s_**2 + s_")
                w("c01 = -2 * s_**3 + 3 * s_**2")
                w("c11 = s_**3 - s_**2")
                with w.block("for i in range(D):"):
                    w("out[isave[b], i, j] = (c00 * y[i, b] + c10 * hs[b] * f0[i, b] + c01 * y_new[i, b] "
                      "+ c11 * hs[b] * f1[i, b])")
            w("isave[b] += 1")


def _emit_finish(w):
    with w.block("for b in range(B):"):
        w("j = base + b")
        with w.block("if j < n:"):
            w("retcode[j] = code[b]")
            w(f"stats[{NF}, j] = nf[b]")
            w(f"stats[{NACCEPT}, j] = naccepted[b]")
            w(f"stats[{NREJECT}, j] = nrejected[b]")
