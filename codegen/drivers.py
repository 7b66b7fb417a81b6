"""The solver drivers as loop IR (:mod:`loop`), built once for every backend.

* :func:`fixed_loop` — the grid's steps in order: (ΔW, H) from the block's Brownian tree frontier
  (``kernels.brownian.tree_advance``), SETD1's per-step normals, the step statements (a multistep method's
  startup scheme first), the non-finite freeze (retcode Unstable) and the saves.
* :func:`adaptive_loop` — every lane its own steps (methods.md §6): Hairer's initial step (HNW I
  §II.4), the proposal cut or stretched onto stops, per-lane (ΔW, H) from its time-addressed tree
  (rejections never change the path, §5.4), per-lane operators, Hairer's RMS error norm (HNW I eq.
  II.4.11), the I/PI/PID controller on ε = 1/EEst (§6.3), saving (every step, exact save times, or
  the method's continuous extension or cubic Hermite output, HNW I §II.6), FSAL reuse, and the MaxIters / DtLessThanMin / Unstable stops.
"""
from __future__ import annotations

from ..abi import (ADAPTIVE_ARGS, CONTROLLER, DT_LESS_THAN_MIN, FIXED_ARGS, MAX_ITERS, NACCEPT, NF, NREJECT,
                   STEP_NODE, STOP_STRETCH, STREAM_ZETA, SUCCESS, UNSTABLE)
from .lane_operators import jacobian_operators, lane_operators
from .loop import (Call, checked, Components, Copy, For, If, IfAny, IfUniform, Lane, LaneCall, Lanes, Let,
                   LoopKernel, Operators, Reduce, Rhs, Set, Stages, Store, StoreRow, While, WhileAny)
from .scheme import EvalJacobian, EvalRHS, StepScheme

__all__ = ["fixed_loop", "adaptive_loop"]


def _ctrl(name: str) -> str:
    """The controller setting ``name`` (sdekit.abi.CONTROLLER) in the kernel's ``ctrl`` vector."""
    return f"ctrl[{CONTROLLER.index(name)}]"


def _registers(scheme, extra=(), statements=None):
    """The registers (per-lane vectors) that ``statements`` (default: all the scheme's) write, after ``extra``."""
    regs = list(extra)
    for s in scheme.all_statements() if statements is None else statements:
        if hasattr(s, "target") and s.target not in regs:
            regs.append(s.target)
    for dst, _ in scheme.history:
        if dst not in regs:
            regs.append(dst)
    return regs


def _nstages(statements) -> int:
    return sum(isinstance(s, EvalRHS) for s in statements)


def _tree_span(scheme) -> list:
    """The Brownian tree's span T, for schemes that read (ΔW, H)."""
    return [Set("T", "tree_T  # length of the Brownian tree's span")] if scheme.needs_dW else []


def _stages(statements, after_jacobian=(), adaptive=False) -> list:
    """The step statements as loop IR: runs of them for the backend's statement printer (``Stages``),
    each :class:`EvalJacobian` followed by the IR that makes its operators (``lane_operators``)."""
    out, run = [], []
    for s in statements:
        run.append(s)
        if isinstance(s, EvalJacobian):
            out += [Stages(tuple(run), adaptive), *after_jacobian]
            run = []
    return out + ([Stages(tuple(run), adaptive)] if run else [])


def _copies(pairs):
    return [Copy(dst, src) for dst, src in pairs if dst != src]


# ---- fixed steps --------------------------------------------------------------------------------


def fixed_loop(scheme: StepScheme, stochastic: bool, model_args=(), reads_t: bool = True,
               jacobian_blocks: bool = True) -> LoopKernel:
    """The fixed-step driver: the grid's steps in order, (ΔW, H) of each from the block's tree frontier.
    ``reads_t``: the model reads t (else the lanes keep no step start ``t_l`` and stage time ``tc``).
    ``jacobian_blocks``: the Jacobian operators as per-lane blocks (``lane_operators.jacobian_operators``);
    False where the backend applies them as actions in the statements (fields)."""
    live = scheme.live_statements()    # not the error estimate
    startup = (scheme.startup.live_statements((scheme.startup.output, *(src for _, src in scheme.history)))
               if scheme.startup is not None else ())      # nor the startup's estimate; the history it leaves, yes
    lanes = [Lane(r, "state", rows="D") for r in _registers(scheme, ["y"], live + startup)]
    lanes += [Lane("bad", "bool", "False"), Lane("h_l", "state")]
    lanes += [Lane("t_l", "state"), Lane("tc", "state")] if reads_t else []
    lanes += [Lane(f"hp{k}", "state", "0") for k in range(1, scheme.lags + 1)]
    buffers, setup, jacobian = (jacobian_operators(scheme, live) if scheme.needs_jacobian and jacobian_blocks
                                else ([], [], []))
    noise = []
    if scheme.needs_dW:
        lanes += [Lane("dW", "state", rows="M"), Lane("dH", "state", rows="M")]
        frontier = ("f_lo", "f_hi", "f_v", "f_meta", "zbuf")
        setup += [Call("brownian", "tree_buffers", ("B", "M"), ", ".join(frontier + ("acc",))),
                  Call("brownian", "tree_start", ("key0", "key1", "first", "src", "T") + frontier)]
        noise.append(Call("brownian", "tree_step", ("key0", "key1", "first", "src", "T", "step", "tree_pos")
                          + frontier + ("acc", "dW", "dH")))
    if scheme.needs_levy:
        lanes.append(Lane("dI", "state", rows="M"))
        noise.append(Lanes([Let("dI[i]", "0.5 * dW[i] + dH[i]")], rows="M"))   # I_(1,0)/h (methods.md §5.3)
    if scheme.needs_zeta:
        lanes += [Lane("zeta", "state", rows="D"), Lane("zeta64", "f64", rows="D")]
        noise += [Call("philox", "normals_block", ("key0", "key1", f"{STEP_NODE} + step", "first", "src", str(STREAM_ZETA),
                                                   "zeta64")),
                  Lanes([Let("zeta[i]", "zeta64[i]")], rows="D")]
    save = [Lanes([If("valid", [StoreRow("out", "isave", "j", "y[i]")])]), Set("isave", "isave + 1")]
    step = [Lanes(([Let("t_l", "tn_d[step]")] if reads_t else []) + [Let("h_l", "h_d[step]")])]
    if scheme.all_operators():
        step += [Set("hc", "hclass[step]"), Operators("hc")]   # operators are tabulated per step class
    step += noise
    main = _stages(live, jacobian) + [Set("nfe", f"nfe + {_nstages(live)}")]
    if scheme.startup is not None:
        start = startup
        step.append(IfUniform(f"step < {scheme.startup_steps}",
                              _stages(start) + [Set("nfe", f"nfe + {_nstages(start)}")]
                              + _copies([(scheme.output, scheme.startup.output)]), main))
    else:
        step += main
    step += _copies(scheme.history)
    if scheme.lags:
        step.append(Lanes([Let(f"hp{k}", f"hp{k - 1}") for k in range(scheme.lags, 1, -1)] + [Let("hp1", "h_l")]))
    out = scheme.output
    step.append(Lanes([Reduce("ok", "and", f"isfinite({out}[i])"), Let("bad", "bad or not ok"),
                       Components([Let("y[i]", f"{out}[i] if not bad else nan")])]))  # freeze a non-finite lane
    step.append(IfUniform("isave < save_at.shape[0] and save_at[isave] == step + 1", save))
    body = [Set("nsteps", "times.shape[0] - 1")] + _tree_span(scheme) + [Lanes([Let("y[i]", "y0[i, src]")], rows="D")]
    body += setup
    body += [Set("isave", "0"), Set("nfe", "0  # f-evaluations per lane (every lane runs the same steps)"),
             IfUniform("save_at[0] == 0", save),
             For("step", "nsteps", step, progress=True),
             Lanes([If("valid", [Store("retcode", ("j",), f"{UNSTABLE} if bad else {SUCCESS}"),
                                 Store("stats", (str(NF), "j"), "nfe"), Store("stats", (str(NACCEPT), "j"), "nsteps")])])]
    return checked(LoopKernel("kernel", "integrate the lanes over ``times``; writes ``out``, ``retcode``, ``stats``.",
                              FIXED_ARGS + tuple(model_args), lanes, buffers, body))


# ---- adaptive steps -----------------------------------------------------------------------------


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


_SCALE = "(atol[i] + rtol[i] * abs(y[i]))"   # HNW I eq. II.4.10 at the step's start


def _initial_step(reads_t: bool):
    """Hairer's initial step per lane (HNW I §II.4; methods.md §6.2), unless h0 > 0; 2 evaluations.
    ``reads_t``: the model reads t (its stage time ``tc``), else f is evaluated with any lane time (``t64``)."""
    t = "tc" if reads_t else "t64"
    guess = Lanes([Reduce("d0", "+", f"(y[i] / {_SCALE}) ** 2"), Reduce("d1", "+", f"(f0[i] / {_SCALE}) ** 2"),
                   Let("d0", "sqrt(d0 / D)"), Let("d1", "sqrt(d1 / D)"),
                   Let("hh", "1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / max(d1, 1e-300)"),
                   Let("hs", "min(hh, dtmax)"), *([Let("tc", "t0 + hs")] if reads_t else []),
                   Components([Let("y_start[i]", "y[i] + hs * f0[i]")])])
    refine = Lanes([Reduce("d1", "+", f"(f0[i] / {_SCALE}) ** 2"),
                    Reduce("d2", "+", f"((f1[i] - f0[i]) / {_SCALE}) ** 2"),
                    Let("dm", "max(sqrt(d1 / D), sqrt(d2 / D) / hs)"),
                    Let("hh", f"max(1e-6, hs * 1e-3) if dm <= 1e-15 else (0.01 / max(dm, 1e-300)) ** "
                              f"(1.0 / ({_ctrl('order')} + 1.0))"),
                    # f at the Euler predictor non-finite (it left f's domain): keep the guess hs and let
                    # the controller shrink it; a non-finite f(y0) has made hs NaN: the lane stops Unstable
                    Let("h64", "min(min(100.0 * hs, hh), dtmax) if isfinite(dm) else hs"), Let("nf", "nf + 2")])
    return IfUniform("h0 > 0", [Lanes([Let("h64", "h0")])],
                     [*([Lanes([Let("tc", "t0")])] if reads_t else []), Rhs(t, "y", "f0"), guess, Rhs(t, "y_start", "f1"), refine])


def _propose(reads_t: bool):
    """Each lane's trial step: its proposal min(h, dtmax), taken onto the next stop (t1, tstops, SDE
    saves) when that lies within 1 + STOP_STRETCH of it; ``cut``: the stop shortened it.
    ``reads_t``: also the step's start ``t_l`` in the state's dtype (the stage times)."""
    return Lanes([While("istop < stops.shape[0] - 1 and stops[istop] <= t64", [Let("istop", "istop + 1")]),
                  Let("hprop", "min(h64, dtmax)"), Let("gap", "stops[istop] - t64"),
                  Let("to_stop", f"gap <= {1.0 + STOP_STRETCH!r} * hprop"), Let("cut", "to_stop and gap < hprop"),
                  Let("hs", "(gap if to_stop else hprop) if act else 1.0"),
                  Let("te", "stops[istop] if to_stop else t64 + hs")]
                 + ([Let("t_l", "t64")] if reads_t else []) + [Let("h_l", "hs")])


def _attempt(scheme, after_jacobian=()):
    """One trial step of every lane; lanes still in a multistep method's startup take the startup
    scheme's result and its embedded estimate.  ``after_jacobian``: the IR of the Jacobian operators."""
    out = []
    if scheme.startup is not None:
        k, n = scheme.startup_steps, _nstages(scheme.startup.statements)
        out.append(IfAny(f"naccepted < {k}", [*_stages(scheme.startup.statements, adaptive=True),
                                              _counted(n, f"act and naccepted < {k}")]
                         + _copies([("y_start", scheme.startup.output)])))
    evaluated = 0
    for s in scheme.statements:
        if scheme.fsal and getattr(s, "target", None) == scheme.fsal[0]:   # FSAL: the last step's end
            out.append(IfUniform("not fsal_ready", [Stages((s,), True), _counted(1)]))
        else:
            out += _stages((s,), after_jacobian, adaptive=True)
            evaluated += isinstance(s, EvalRHS)
    out.append(_counted(evaluated))
    if scheme.startup is not None:
        out.append(Lanes([If(f"naccepted < {scheme.startup_steps}",
                             [Components([Let(f"{scheme.output}[i]", "y_start[i]"),
                                          Let(f"{scheme.error}[i]", f"{scheme.startup.error}[i]")])])]))
    return out


def _error_norm(scheme):
    """EEst per lane: Hairer's RMS norm with sc_i = atol_i + rtol_i max(|y_i|, |y_new,i|); inf when
    the step is not finite."""
    yn, err = f"{scheme.output}[i]", f"{scheme.error}[i]"
    sc = f"(atol[i] + rtol[i] * max(abs(y[i]), abs({yn}) if isfinite({yn}) else abs(y[i])))"
    return Lanes([Reduce("acc", "+", f"({err} / {sc}) ** 2"), Reduce("fin", "and", f"isfinite({yn})"),
                  Let("eest", "sqrt(acc / D) if fin else inf")])


def _counted(n: int, cond: str = "act") -> Lanes:
    """nf += n on the lanes ``cond`` selects, beside the n evaluations just run for them."""
    return Lanes([If(cond, [Let("nf", f"nf + {n}")])])


def _start_stage(scheme):
    """The register of a stage that evaluates the full f(y, t) at the step's start, if any."""
    for s in scheme.statements:
        if isinstance(s, EvalRHS) and s.part == "full" and s.state == "y" and s.c == 0:
            return s.target
    return None


def _dense_output(scheme, stochastic, reads_t: bool):
    """ODEs without a continuous extension: f at both ends of the accepted steps that contain a save
    time (cubic Hermite); an FSAL method has them already (its first and last stages).  ``reads_t``: f
    is evaluated at the stage times ``t_l``, ``tc`` (else with the lane times ``t64``, ``te``)."""
    t_start, t_end = ("t_l", "tc") if reads_t else ("t64", "te")
    if stochastic or scheme.dense:
        return []
    need = [Let("need", "act and eest <= 1.0 and isave < nsave and save_t[min(isave, nsave - 1)] < te")]
    if not scheme.fsal and reads_t:
        need.append(Let("tc", "te"))
    start = _start_stage(scheme)
    if scheme.fsal:
        ends = _copies([("f0", scheme.fsal[0]), ("f1", scheme.fsal[1])])
    elif start is not None:     # a stage holds f(y, t) already (W-methods' first stage)
        ends = _copies([("f0", start)]) + [Rhs(t_end, scheme.output, "f1"), _counted(1, "need")]
    else:
        ends = [Rhs(t_start, "y", "f0"), Rhs(t_end, scheme.output, "f1"), _counted(2, "need")]
    return [IfUniform("record", [Lanes([Let("need", "False")])], [Lanes(need), IfAny("need", ends)])]


def _horner(w) -> str:
    """Σ_k w[k-1] θ^k (k = 1 .. len(w)) in Horner form."""
    inner = repr(w[-1])
    for x in reversed(w[:-1]):
        inner = f"{x!r} + th * ({inner})"
    return f"th * ({inner})"


def _save_step(scheme, stochastic):
    """Save what the accepted step reached: every step (record), the end state at save times it
    landed on, or the continuous extension (or Hermite interpolant) inside it (ODEs)."""
    yn = f"{scheme.output}[i]"
    record = [Let("k", "nsaved[j]"),
              If("k < out.shape[0]", [Store("out_t", ("k", "j"), "te"), StoreRow("out", "k", "j", yn)]),
              Store("nsaved", ("j",), "k + 1")]
    if stochastic:   # SDEs step onto their save times exactly
        each = [StoreRow("out", "isave", "j", yn)]
    elif scheme.dense:   # the method's continuous extension y + h Σ b_i(θ) K_i
        weights = [Let(f"w{k}", _horner([float(x) for x in row])) for k, (_, row) in enumerate(scheme.dense)]
        value = "y[i] + h_l * (" + " + ".join(f"w{k} * {reg}[i]" for k, (reg, _) in enumerate(scheme.dense)) + ")"
        each = [Let("ts", "save_t[min(isave, nsave - 1)]"),
                If("ts >= te", [StoreRow("out", "isave", "j", yn)],
                   [Let("th", "(ts - t64) / hs")] + weights + [StoreRow("out", "isave", "j", value)])]
    else:
        hermite = "c00 * y[i] + c10 * hs * f0[i] + c01 * %s + c11 * hs * f1[i]" % yn
        each = [Let("ts", "save_t[min(isave, nsave - 1)]"),
                If("ts >= te", [StoreRow("out", "isave", "j", yn)],
                   [Let("s_", "(ts - t64) / hs"), Let("c00", "2 * s_**3 - 3 * s_**2 + 1"),
                    Let("c10", "s_**3 - 2 * s_**2 + s_"), Let("c01", "-2 * s_**3 + 3 * s_**2"),
                    Let("c11", "s_**3 - s_**2"), StoreRow("out", "isave", "j", hermite)])]
    exact = [While("isave < nsave and save_t[min(isave, nsave - 1)] <= te", each + [Let("isave", "isave + 1")])]
    return [If("valid and record", record, [If("valid", exact)])]


def _accept_reject(scheme, stochastic):
    """Per lane: statistics, saving, the controller, the state and multistep memory on acceptance,
    and the end / MaxIters / DtLessThanMin / Unstable checks."""
    memory = [Let(f"{dst}[i]", f"{src}[i]") for dst, src in ((("y", scheme.output),) + tuple(scheme.history)
                                                              + ((scheme.fsal,) if scheme.fsal else ()))]
    accept = _save_step(scheme, stochastic) + [
        Let("q", f"{_ctrl('safety')} * (1.0 / max(e, 1e-10)) ** {_ctrl('b1')} * (1.0 / max(e1, 1e-10)) ** "
                 f"{_ctrl('b2')} * (1.0 / max(e2, 1e-10)) ** {_ctrl('b3')}"),
        Let("q", f"min(max(q, {_ctrl('qmin')}), {_ctrl('qmax')})"),
        # a step cut short by a stop that would have grown continues from the proposal it was cut from
        Let("h64", "max(hs * q, hprop) if (cut and q >= 1.0) else hs * q"),
        Let("e2", "e1"), Let("e1", "max(e, 1e-4)"), Components(memory)]
    accept += [Let(f"hp{k}", f"hp{k - 1}") for k in range(scheme.lags, 1, -1)]
    accept += [Let("hp1", "h_l")] if scheme.lags else []
    if scheme.needs_dW:
        accept.append(LaneCall("brownian", "lane_tree_accept", ("b",) + _LANE_FRONTIERS))
    accept += [Let("naccepted", "naccepted + 1"), Let("t64", "te")]
    reject = [Let("nrejected", "nrejected + 1"),
              Let("q", f"{_ctrl('safety')} * (1.0 / max(e, 1e-10)) ** {_ctrl('b1')} if isfinite(e) else "
                       f"{_ctrl('qmin')}"),
              Let("h64", f"hs * min(max(q, {_ctrl('qmin')}), 1.0)")]
    # h below dtmin, or so small that t + h == t (never finishes): DtLessThanMin, Unstable if non-finite
    small = If("not (h64 >= dtmin) or not (h64 > 1e-14 * max(abs(t64), 1.0))",   # a NaN h stops too
               [Let("code", f"{DT_LESS_THAN_MIN} if isfinite(e) else {UNSTABLE}"), Let("act", "False")])
    stop = If("t64 >= t1", [Let("act", "False")],
              [If("iters >= maxiters", [Let("code", str(MAX_ITERS)), Let("act", "False")], [small])])
    return Lanes([If("act", [Let("iters", "iters + 1"), Let("e", "eest"),
                             If("e <= 1.0", accept, reject), stop])])


#: every lane's tree frontier (cells, values, meta) at its accepted time, and its trial copy
_LANE_FRONTIERS = ("f_c", "f_v", "f_m", "g_c", "g_v", "g_m")
#: one lane's scratch for its tree walk (normals, accumulators, increments)
_LANE_SCRATCH = ("l_z", "l_acc", "l_dw", "l_dh")


def adaptive_loop(scheme: StepScheme, stochastic: bool, model_args=(), linear: str = "zero",
                  reads_t: bool = True, jacobian_blocks: bool = True) -> LoopKernel:
    """The adaptive driver (``scheme`` must have an error estimate; ``linear``: the structure of L,
    zero | scalar | diagonal | dense, for each lane's operators: ``lane_operators``; ``reads_t``: the
    model reads t; ``jacobian_blocks``: as in :func:`fixed_loop`)."""
    if scheme.error is None:
        raise ValueError(f"{scheme.method} has no embedded error estimate")
    _check_startup(scheme)
    lanes = [Lane(r, "state", "0", rows="D") for r in _registers(scheme, ["y", "y_start", "f0", "f1"])]
    lanes += [Lane(f"hp{k}", "state", "1") for k in range(1, scheme.lags + 1)]
    hermite = not stochastic and not scheme.dense     # cubic Hermite output: f at both ends of a step
    lanes += ([Lane("tc", "state"), Lane("t_l", "state")] if reads_t else []) + [Lane("h_l", "state"),
              Lane("t64", "f64", "t0"),     # lane time (float64 whatever the dtype)
              Lane("h64"), Lane("hs"), Lane("te"), Lane("hprop"),   # proposal, attempt, its end, uncut proposal
              Lane("cut", "bool", "False"), Lane("eest"), Lane("e1", "f64", "1"), Lane("e2", "f64", "1"),
              Lane("act", "bool", "True"), Lane("code", "i8", "0"), Lane("istop", "i64", "0"),
              Lane("isave", "i64", "0"), Lane("iters", "i64", "0"), Lane("naccepted", "i64", "0"),
              Lane("nrejected", "i64", "0"), Lane("nf", "i64", "0")]
    if hermite:                                  # which lanes need f at both ends
        lanes.append(Lane("need", "bool", "False"))
    body = _tree_span(scheme) + [Set("nsave", "save_t.shape[0]"), Lanes([Let("y[i]", "y0[i, src]")], rows="D")]
    op_lanes, buffers, op_setup, operators = lane_operators(scheme, linear)
    jac_buffers, jac_setup, jacobian = (jacobian_operators(scheme, scheme.statements)
                                        if scheme.needs_jacobian and jacobian_blocks else ([], [], []))
    lanes += op_lanes
    buffers += jac_buffers
    body += op_setup + jac_setup
    noise = []
    if scheme.fsal:
        body.append(Set("fsal_ready", "False"))
    if scheme.needs_dW:
        lanes += [Lane("dW", "state", rows="M"), Lane("dH", "state", rows="M")]
        body.append(Call("brownian", "lane_tree_buffers", ("B", "M"), ", ".join(_LANE_FRONTIERS + _LANE_SCRATCH)))
        body.append(Call("brownian", "lane_tree_start", ("key0", "key1", "first", "src", "T") + _LANE_FRONTIERS[:3]
                         + _LANE_SCRATCH[:1]))
        noise.append(Call("brownian", "lane_tree_increments", ("key0", "key1", "first", "src", "T", "t0", "t64", "te",
                                                              "act") + _LANE_FRONTIERS + _LANE_SCRATCH + ("dW", "dH")))
        if scheme.needs_levy:
            lanes.append(Lane("dI", "state", rows="M"))
            noise.append(Lanes([Let("dI[i]", "0.5 * dW[i] + dH[i]")], rows="M"))
    first_save = [If("valid and record", [Store("out_t", ("0", "j"), "t0"), StoreRow("out", "0", "j", "y[i]"),
                                         Store("nsaved", ("j",), "1")],
                     [If("valid", [While("isave < nsave and save_t[min(isave, nsave - 1)] <= t0",
                                         [StoreRow("out", "isave", "j", "y[i]"), Let("isave", "isave + 1")])])])]
    body += [Lanes(first_save), _initial_step(reads_t)]
    loop = [_propose(reads_t)] + noise + operators + _attempt(scheme, jacobian)
    loop += [_error_norm(scheme)] + _dense_output(scheme, stochastic, reads_t) + [_accept_reject(scheme, stochastic)]
    if scheme.fsal:
        loop.append(Set("fsal_ready", "True  # every lane's first stage now holds f(y, t)"))
    body += [WhileAny("act", loop, progress=("t64", "t0", "t1")),
             Lanes([If("valid", [Store("retcode", ("j",), "code"), Store("stats", (str(NF), "j"), "nf"),
                                 Store("stats", (str(NACCEPT), "j"), "naccepted"),
                                 Store("stats", (str(NREJECT), "j"), "nrejected")])])]
    doc = ("integrate the lanes over [t0, t1] adaptively, each its own steps; writes ``out`` (and ``out_t``,\n"
           "``nsaved`` when ``record``), ``retcode`` and ``stats`` (nf, naccept, nreject).")
    return checked(LoopKernel("kernel", doc, ADAPTIVE_ARGS + tuple(model_args), lanes, buffers, body, adaptive=True))
