"""The host side of the kernel ABI (``sdekit.abi``): a RunInput as a kernel's arguments, and the
kernel's outputs as a RawResult — the same for every backend (``backend.py``); a backend only says
how its kernel is launched on them."""
from __future__ import annotations

import numpy as np

from ..abi import (ADAPTIVE_ARGS, CONTROLLER, FIXED_ARGS, LINEAR_ARGS, LINEAR_LAYOUT, OPERATOR_LAYOUT, STATS, operator_args,
                   param_args, weight_args)
from .brownian import tree_positions, tree_span
from .cuda_arrays import array_module, host
from .linear import convolution_residual, evaluate_phi_poly
from .philox import seed_key


def operator_values(specs: dict, structure: str, Lval, h, noise):
    """Values of the scheme's operators for step size h, a scalar or one per trajectory
    (``specs``: name -> ("phi", poly) | ("residual", layout))."""
    cache, ops = {}, {}
    for name, (kind, data) in specs.items():
        if kind == "phi":
            ops[name] = evaluate_phi_poly(data, structure, Lval, h, cache)
        else:
            ops[name] = convolution_residual(structure, data, Lval, noise.G, noise.noise, h)
    return ops


def laid_out(a, axes: tuple, layout: tuple, dtype):
    """The array ``a`` (numpy, or CuPy: laid out on the GPU) with ``axes`` (names as in sdekit.abi) in the ABI's
    ``layout``, contiguous."""
    xp = array_module(a)
    return xp.ascontiguousarray(a.transpose([axes.index(x) for x in layout]), dtype=dtype)


def operator_tables(inp, classes, dtype):
    """``op_X`` (one value per step class: elementwise (classes, d, n'), dense (classes, n', d, d) as
    the host computes them, laid out as sdekit.abi.OPERATOR_LAYOUT) and its trajectory stride ``S_op_X``."""
    d = inp.y0.shape[0]
    vals = {}
    Lval = host(inp.Lval) if inp.op_specs else None     # φ and resolvent tables are computed on the host
    per_class = [operator_values(inp.op_specs, inp.structure, Lval, float(h), inp.noise) for h in classes]
    for name in inp.op_specs:
        arrs = [pc[name] for pc in per_class]
        if arrs[0].ndim == 3:  # dense (n', d, d)
            stacked = np.stack(arrs)
            stride = 1 if stacked.shape[1] > 1 else 0
            table = laid_out(stacked, ("hclass", "traj", "i", "j"), OPERATOR_LAYOUT["dense"], dtype)
        else:                  # elementwise (1 or d, n')
            ncols = max(a.shape[1] for a in arrs)
            stacked = np.stack([np.broadcast_to(a, (d, ncols)) for a in arrs])
            stride = 1 if ncols > 1 else 0
            table = laid_out(stacked, ("hclass", "i", "traj"), OPERATOR_LAYOUT["elementwise"], dtype)
        vals.update(zip(operator_args(name), (table, stride)))
    return vals


def _strided(a, dtype):
    """(array, stride): per-trajectory arrays keep stride 1 (on the GPU when they are there), shared values get
    stride 0."""
    xp = array_module(a)
    a = xp.ascontiguousarray(xp.atleast_1d(a), dtype=dtype)
    return a, (1 if a.shape[-1] > 1 else 0)


def model_arguments(names, inp, classes=None) -> list:
    """Values of the model's runtime arguments ``names`` (codegen's ``kernel_arguments``, named by the
    ABI's helpers): params, weights, L and, for fixed steps (``classes``: the distinct step sizes),
    the operator tables."""
    d, dtype = inp.y0.shape[0], inp.y0.dtype
    vals = {}
    for name, v in inp.params.items():
        vals.update(zip(param_args(name), _strided(v, dtype)))
    for name, layers in inp.nets.items():
        for i, (W, b) in enumerate(layers):
            vals.update(zip(weight_args(name, i), (W, b)))
    Lval = inp.Lval
    if Lval is not None:
        if inp.structure == "dense":     # (n', d, d)
            L = laid_out(Lval, ("traj", "i", "j"), LINEAR_LAYOUT["dense"], dtype)
            vals.update(zip(LINEAR_ARGS, (L, 1 if Lval.shape[0] > 1 else 0)))
        else:                            # (1 or d, n')
            L = laid_out(array_module(Lval).broadcast_to(Lval, (d, Lval.shape[1])), ("i", "traj"),
                         LINEAR_LAYOUT["elementwise"], dtype)
            vals.update(zip(LINEAR_ARGS, (L, 1 if Lval.shape[1] > 1 else 0)))
    if classes is not None:
        vals |= operator_tables(inp, classes, dtype)
    missing = [n for n in names if n not in vals]
    if missing:  # pragma: no cover - emitter and runtime disagree
        raise RuntimeError(f"kernel arguments without values: {missing}")
    return [vals[n] for n in names]


def ordered(spec, values: dict) -> list:
    """The fixed arguments ``values`` in the ABI's order ``spec`` (a missing or extra one is a bug)."""
    if set(values) != set(spec):  # pragma: no cover - runtime and ABI disagree
        raise RuntimeError(f"fixed kernel arguments {sorted(values)} are not the ABI's {spec}")
    return [values[k] for k in spec]


def step_classes(grid):
    """(distinct step sizes, the class of each step): operators are tabulated per class."""
    classes, hclass = np.unique(np.diff(grid.times), return_inverse=True)
    return classes, hclass.astype(np.int64)


def run_fixed(inp, launch, xp=np):
    """Fill the fixed-step ABI (``abi.FIXED_ARGS``) from ``inp`` and ``launch(fixed)`` the kernel; its outputs are
    allocated by the array module ``xp`` (numpy; CuPy: on the GPU, the saved states left there)."""
    from .backend import RawResult
    grid, noise = inp.grid, inp.noise
    d, n = inp.y0.shape
    dtype = inp.y0.dtype
    tree_T, tree_pos = 1.0, np.zeros(len(grid.times), np.int64)
    if noise is not None:
        t0 = float(grid.times[0])
        tree_T = tree_span(t0, float(grid.times[-1]))
        tree_pos = tree_positions(np.ascontiguousarray(grid.times, dtype=np.float64), t0, tree_T)
    k0, k1 = (np.uint64(k) for k in seed_key(inp.seed))
    times = np.ascontiguousarray(grid.times, dtype=np.float64)
    out = xp.empty((len(inp.save_steps), d, n), dtype=dtype)
    retcode = xp.zeros(n, dtype=np.int8)
    stats = xp.zeros((len(STATS), n), np.int64)
    y0 = array_module(inp.y0).ascontiguousarray(inp.y0)
    fixed = dict(y0=y0, first=np.int64(inp.trajectories[0]), key0=k0, key1=k1, times=times,
                 tn_d=times[:-1].astype(dtype), h_d=np.diff(times).astype(dtype), hclass=step_classes(grid)[1],
                 tree_T=tree_T, tree_pos=tree_pos,
                 save_at=np.asarray(inp.save_steps, np.int64), out=out, retcode=retcode, stats=stats)
    launch(ordered(FIXED_ARGS, fixed))
    return RawResult(grid.times[inp.save_steps], out, host(retcode), host(stats))


def run_adaptive(inp, launch, record_capacity: int = 1024, xp=np):
    """Fill the adaptive ABI (``abi.ADAPTIVE_ARGS``) from ``inp`` and ``launch(fixed)`` the kernel (outputs
    allocated by ``xp``, as in :func:`run_fixed`).

    Saving every accepted step (a single trajectory, ``opts.save_times`` None) fills a buffer of
    ``record_capacity`` steps; a longer run is repeated with the buffer it needs (same steps)."""
    from .backend import RawResult
    opts = inp.opts
    t0, t1 = (float(x) for x in inp.tspan)
    d, n = inp.y0.shape
    dtype = inp.y0.dtype
    record = opts.save_times is None
    save_t = np.empty(0) if record else np.ascontiguousarray(opts.save_times, dtype=np.float64)
    stops = np.unique(np.concatenate([opts.tstops, [] if record or opts.dense else save_t, [t1]]))
    stops = np.ascontiguousarray(stops[(stops > t0) & (stops <= t1)], dtype=np.float64)
    c = opts.controller
    settings = dict(zip(("b1", "b2", "b3"), c.beta), safety=c.safety, qmin=c.qmin, qmax=c.qmax, order=opts.order)
    k0, k1 = (np.uint64(k) for k in seed_key(inp.seed))
    cap = max(int(record_capacity), 2) if record else len(save_t)
    y0 = array_module(inp.y0).ascontiguousarray(inp.y0)
    while True:
        out = xp.full((cap, d, n), np.nan, dtype=dtype)
        out_t = xp.full((cap if record else 1, n), np.nan)
        nsaved = xp.zeros(n, np.int64)
        retcode = xp.zeros(n, dtype=np.int8)
        stats = xp.zeros((len(STATS), n), np.int64)
        fixed = dict(y0=y0, first=np.int64(inp.trajectories[0]), key0=k0, key1=k1, t0=t0, t1=t1,
                     tree_T=tree_span(t0, t1), h0=float(opts.dt0 or 0.0), rtol=np.ascontiguousarray(opts.rtol.ravel(), dtype=np.float64),
                     atol=np.ascontiguousarray(opts.atol.ravel(), dtype=np.float64),
                     ctrl=np.array(ordered(CONTROLLER, settings), dtype=np.float64), dtmin=float(opts.dtmin),
                     dtmax=float(opts.dtmax), maxiters=np.int64(opts.maxiters), stops=stops, save_t=save_t,
                     record=record, out=out, out_t=out_t, nsaved=nsaved, retcode=retcode, stats=stats)
        launch(ordered(ADAPTIVE_ARGS, fixed))
        if not record:
            break
        most = int(nsaved.max())        # (from the GPU: one number read back)
        if most <= cap:
            break
        cap = most
    if record:
        k = int(nsaved[0])
        return RawResult(host(out_t[:k, 0]), out[:k], host(retcode), host(stats))
    return RawResult(save_t, out, host(retcode), host(stats))
