"""Adaptive time stepping, one step size per trajectory (methods.md §6).

* :class:`Controller` — I, PI and PID step-size controllers on ε = 1/EEst (methods.md §6.3).
* :func:`error_norm` — Hairer's scaled RMS norm (methods.md §6.1; HNW I eq. II.4.11).
* :func:`initial_step` — Hairer's starting step (HNW I §II.4; methods.md §6.2).
* :func:`integrate` — the numpy reference driver: every trajectory proposes, accepts or
  rejects its own steps; a rejected step never changes the Brownian path (each trajectory's
  increments are queries of its time-addressed (W, H) tree, methods.md §5.4).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .brownian import BrownianTree
from ..abi import (DT_LESS_THAN_MIN as DTMIN, MAX_ITERS as MAXITERS, NACCEPT, NF, NREJECT, STATS, STOP_STRETCH,
                   SUCCESS, UNSTABLE)
from .backend import RawResult
from .numpy_backend import operator_values
CONTROLLERS = ("I", "PI", "PID")


@dataclass(frozen=True)
class Controller:
    """Step factor q = safety · ε_n^b1 · ε_{n−1}^b2 · ε_{n−2}^b3, clipped to [qmin, qmax], ε = 1/EEst.

    ``controller(kind, order)`` gives the standard gains: I (HNW I §II.4: b = (1/k, 0, 0), k = order + 1),
    PI (Gustafsson 1991; OrdinaryDiffEq's default b1 = 7/(10p), b2 = −2/(5p)), PID (Söderlind 2003,
    H312PID (1/18, 1/9, 1/18)/k).  On rejection q = max(qmin, safety · ε_n^b1) (< 1)."""

    kind: str
    beta: tuple
    safety: float = 0.9
    qmin: float = 0.2
    qmax: float = 10.0

    def accept_factor(self, eest, e1, e2):
        eps = [1.0 / np.maximum(e, 1e-10) for e in (eest, e1, e2)]
        q = self.safety * eps[0] ** self.beta[0] * eps[1] ** self.beta[1] * eps[2] ** self.beta[2]
        return np.clip(q, self.qmin, self.qmax)

    def reject_factor(self, eest):
        q = self.safety * (1.0 / np.maximum(eest, 1e-10)) ** self.beta[0]
        return np.where(np.isfinite(eest), np.clip(q, self.qmin, 1.0), self.qmin)


def controller(kind: str, order: float, stochastic: bool = False, **kw) -> Controller:
    """Standard gains for a method whose error estimate has order ``order`` (SDEs: strong order + ½;
    StochasticDiffEq's qmax = 9/8 for SDEs, so the Brownian tree is rarely split far back)."""
    kind = kind.upper()
    k = order + 1
    if kind == "I":
        beta = (1.0 / k, 0.0, 0.0)
    elif kind == "PI":
        beta = (0.7 / order, -0.4 / order, 0.0)
    elif kind == "PID":
        beta = (1 / 18 / k, 1 / 9 / k, 1 / 18 / k)
    else:
        raise ValueError(f"unknown controller {kind!r}; choose from {CONTROLLERS}")
    defaults = {"qmax": 9 / 8} if stochastic else {}
    return Controller(kind, beta, **{**defaults, **kw})


def error_norm(err, y0, y1, rtol, atol):
    """EEst = sqrt(mean_i (err_i / (atol_i + rtol_i max(|y0_i|, |y1_i|)))²) per trajectory (columns)."""
    sc = atol + rtol * np.maximum(np.abs(y0), np.abs(np.where(np.isfinite(y1), y1, y0)))
    e = np.sqrt(np.mean((err / sc) ** 2, axis=0))
    return np.where(np.all(np.isfinite(y1), axis=0), e, np.inf)


def initial_step(rhs, t0, y0, order, rtol, atol, dtmax):
    """Hairer's initial step per trajectory (HNW I §II.4; methods.md §6.2); 2 evaluations of f."""
    sc = atol + rtol * np.abs(y0)
    rms = lambda v: np.sqrt(np.mean((v / sc) ** 2, axis=0))
    f0 = rhs(y0, t0)
    d0, d1 = rms(y0), rms(f0)
    h0 = np.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / np.maximum(d1, 1e-300))
    h0 = np.minimum(h0, dtmax)
    d2 = rms(rhs(y0 + h0 * f0, t0 + h0) - f0) / h0
    dm = np.maximum(d1, d2)
    h1 = np.where(dm <= 1e-15, np.maximum(1e-6, h0 * 1e-3), (0.01 / np.maximum(dm, 1e-300)) ** (1.0 / (order + 1)))
    return np.minimum(np.minimum(100 * h0, h1), dtmax)


@dataclass
class Options:
    """What ``solve(..., rtol=, atol=)`` asked for (validated in sdekit.solve)."""

    rtol: np.ndarray
    atol: np.ndarray
    controller: Controller
    order: float                       # order of the error estimate (initial step)
    dt0: float | None = None
    dtmin: float = 0.0
    dtmax: float = np.inf
    maxiters: int = 100_000
    save_times: np.ndarray | None = None   # None: save every accepted step (single trajectory)
    tstops: np.ndarray = field(default_factory=lambda: np.empty(0))
    dense: bool = True                 # ODEs: saveat by Hermite interpolation; SDEs step onto save times



def propose(h, dtmax, t, stop):
    """(step, aimed at the stop?, cut short by it?) per lane: the proposal min(h, dtmax), taken
    onto the next stop when that lies within (1 + STOP_STRETCH) of it."""
    hp = np.minimum(h, dtmax)
    gap = stop - t
    to_stop = gap <= (1.0 + STOP_STRETCH) * hp
    return np.where(to_stop, gap, hp), to_stop, to_stop & (gap < hp)


def next_step(hs, q, cut, proposed):
    """The next step after an accepted one: hs·q, but a step cut short by a stop that would have
    grown (q >= 1) continues from the proposal it was cut from (diffrax / OrdinaryDiffEq keep the
    unclipped step too), so save times and tstops do not drag the step size down."""
    return np.where(cut & (q >= 1.0), np.maximum(hs * q, proposed), hs * q)


def _hermite(t0, y0, f0, t1, y1, f1, ts):
    """Cubic Hermite interpolant of one step at times ts (per trajectory; HNW I §II.6)."""
    h = t1 - t0
    s = (ts - t0) / h
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * y0 + h10 * h * f0 + h01 * y1 + h11 * h * f1


def integrate(module, inp) -> RawResult:
    """Adaptive integration of every trajectory (columns of ``inp.y0`` (d, n)) over ``inp.tspan``.

    The result's times are ``opts.save_times``, or every accepted step of the single trajectory
    when those are None; stats are counted per trajectory."""
    y0, params, nets, structure, Lval, op_specs, noise, opts = (
        inp.y0, inp.params, inp.nets, inp.structure, inp.Lval, inp.op_specs, inp.noise, inp.opts)
    t0, t1 = inp.tspan
    d, n = y0.shape
    dtype = y0.dtype
    L = None if Lval is None else Lval.astype(dtype)
    rhs = lambda y, t: module.rhs(y, t, params, nets, L)
    stops = np.unique(np.concatenate([opts.tstops, [] if opts.save_times is None or opts.dense else opts.save_times,
                                      [t1]]))
    stops = stops[(stops > t0) & (stops <= t1)]
    record = opts.save_times is None
    times = [t0] if record else list(opts.save_times)
    saved = [y0.copy()] if record else [np.full((d, n), np.nan, dtype) for _ in times]
    isave = np.zeros(n, dtype=np.int64)
    if not record:                         # save times at t0 hold y0
        while isave[0] < len(times) and times[isave[0]] <= t0:
            saved[isave[0]][:] = y0
            isave += 1

    y, t = y0.copy(), np.full(n, t0)
    h = np.full(n, float(opts.dt0)) if opts.dt0 else initial_step(rhs, t0, y0, opts.order, opts.rtol, opts.atol,
                                                                  opts.dtmax)
    e1, e2 = np.ones(n), np.ones(n)
    code = np.zeros(n, dtype=np.int8)
    done = np.zeros(n, dtype=bool)
    iters = np.zeros(n, dtype=np.int64)
    stats = np.zeros((len(STATS), n), np.int64)   # nf, naccept, nreject per trajectory
    stats[NF] = 0 if opts.dt0 else 2
    naccepted = np.zeros(n, dtype=np.int64)
    mem = {name: np.zeros((d, n), dtype) for name in module.HISTORY}    # multistep history (per lane)
    mem.update({f"h{k}": np.ones(n, dtype) for k in range(1, module.LAGS + 1)})
    nstages = module.NSTAGES
    trees = None
    if noise is not None:
        trees = [BrownianTree(inp.seed, t0, t1, noise.m, inp.trajectories[j:j + 1]) for j in range(n)]
    bar = None
    if inp.progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=t1 - t0, desc="sdekit adaptive", unit="time")
    while not done.all():
        act = ~done
        nxt = stops[np.minimum(np.searchsorted(stops, t, side="right"), len(stops) - 1)]
        hs, to_stop, cut = propose(h, opts.dtmax, t, nxt)
        hs = np.where(act, hs, 1.0)
        t_end = np.where(to_stop, nxt, t + hs)          # a step aimed at a stop ends on it exactly
        rnd = {}
        if trees is not None:
            dw, dh = np.zeros((noise.m, n)), np.zeros((noise.m, n))
            for j in np.flatnonzero(act):
                dw[:, j:j + 1], dh[:, j:j + 1] = trees[j].increment(t[j], t_end[j])
            rnd = {"dW": dw.astype(dtype), "dH": dh.astype(dtype)}
        hb = hs if structure != "dense" else hs[:, None, None]
        ops = {k: v.astype(dtype) for k, v in operator_values(op_specs, structure, Lval, hb, noise).items()}
        with np.errstate(all="ignore"):
            reuse = "fsal" in mem          # FSAL: f(y, t) is the last attempt's (kept per lane below)
            y_new, err, new_mem, ends = _attempt(module, y, t.astype(dtype), hs.astype(dtype), params, nets, L, ops,
                                                 rnd, mem, naccepted)
            eest = error_norm(err, y, y_new, opts.rtol, opts.atol)
        stats[NF] += (nstages - reuse) * act
        iters += act
        ok = act & (eest <= 1.0)
        bad = act & ~ok
        stats[NACCEPT] += ok
        stats[NREJECT] += bad
        if ok.any():
            f0 = f1 = None
            t_new = np.where(ok, t_end, t)
            if opts.dense and not record:  # f at both ends of steps with a save time inside (Hermite)
                inside = ok & (isave < len(times))
                inside[inside] = np.asarray(times)[isave[inside]] < t_new[inside]
                if inside.any() and ends is not None:   # FSAL: the step's own f at its ends
                    f0, f1 = ends
                elif inside.any():
                    with np.errstate(all="ignore"):
                        f0, f1 = rhs(y, t.astype(dtype)), rhs(y_new, t_end.astype(dtype))
                    stats[NF] += 2 * inside
            _save_reached(times, saved, isave, t_new, y_new, ok, t, y, f0, f1, record, exact=not opts.dense)
            q = opts.controller.accept_factor(eest, e1, e2)
            h = np.where(ok, next_step(hs, q, cut, np.minimum(h, opts.dtmax)), h)
            e2, e1 = np.where(ok, e1, e2), np.where(ok, np.maximum(eest, 1e-4), e1)
            y[:, ok] = y_new[:, ok]
            naccepted += ok
            mem = {k: np.where(ok, v, mem[k]) for k, v in new_mem.items()}
            if bar is not None:
                bar.update(float(np.min(t_new) - np.min(t)))
            t = t_new
        if ends is not None:   # next attempt's f(y, t): the step's end where accepted, its start elsewhere
            mem["fsal"] = np.where(ok, ends[1], ends[0])
        if bad.any():
            h = np.where(bad, hs * opts.controller.reject_factor(eest), h)
        finished = act & (t >= t1)
        done |= finished
        code[act & ~done & (iters >= opts.maxiters)] = MAXITERS
        # h below dtmin, or so small that t + h == t (never finishes): DtLessThanMin, Unstable if non-finite
        small = act & ~done & (code == SUCCESS) & ((h < opts.dtmin) | (h <= 1e-14 * np.maximum(np.abs(t), 1.0)))
        code[small] = np.where(np.isfinite(eest[small]), DTMIN, UNSTABLE)
        done |= code != SUCCESS
    if bar is not None:
        bar.close()
    return RawResult(np.asarray(times), np.array(saved), code, stats)


def _attempt(module, y, t, h, params, nets, L, ops, rnd, mem, naccepted):
    """One trial step of every lane: (y_new, err, the lanes' new multistep memory, FSAL's (f at the
    step's start, f at its end) or None).  A multistep
    method takes its startup steps (no estimate: err = 0) in lanes that have not yet accepted
    ``STARTUP_STEPS`` steps; the memory is kept only where a step is accepted."""
    main = dict(mem)
    y_new = module.step_with_error(y, t, h, params, nets, L, ops, rnd, main)
    err = main.pop("err")
    main.pop("nf", None)   # the driver counts the evaluations of the lanes that attempt a step
    main.pop("fsal", None)
    ends = (main.pop("fsal_start"), main.pop("fsal_end")) if module.FSAL else None
    if not module.STARTUP_STEPS:
        return y_new, err, main, ends
    first = dict(mem)
    y_first = module.startup_step(y, t, h, params, nets, L, ops, rnd, first)
    first.pop("nf", None)
    start = naccepted < module.STARTUP_STEPS
    merged = {k: np.where(start, first[k], main[k]) for k in main}
    return np.where(start, y_first, y_new), np.where(start, 0.0, err), merged, ends


def _save_reached(times, saved, isave, t_new, y_new, ok, t_old, y_old, f0, f1, record, exact):
    """Store saved values the accepted steps reached: append (recording every step), copy the step's
    end state at save times it landed on (``exact``: SDE), or Hermite-interpolate inside the step (ODE)."""
    if record:
        times.append(float(t_new[0]))
        saved.append(y_new.copy())
        return
    for j in np.flatnonzero(ok):
        while isave[j] < len(times) and times[isave[j]] <= t_new[j]:
            ts = times[isave[j]]
            if exact or ts >= t_new[j]:
                saved[isave[j]][:, j] = y_new[:, j]
            else:
                saved[isave[j]][:, j] = _hermite(t_old[j], y_old[:, j], f0[:, j], t_new[j], y_new[:, j], f1[:, j], ts)
            isave[j] += 1
