"""Launch a generated fused Numba kernel (see sdekit.codegen.emit_numba) over an ensemble."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from .brownian import BrownianTree
from .numpy_backend import Grid, Noise, operator_values
from .philox import seed_key


def _strided(a, dtype):
    """(array, stride): per-trajectory arrays keep stride 1, shared values get stride 0."""
    a = np.ascontiguousarray(np.atleast_1d(a), dtype=dtype)
    return a, (1 if a.shape[-1] > 1 else 0)


def launch(module, n: int, *args):
    """Run ``module.kernel(blk0, blk1, *args)`` over all ceil(n / BLOCK) blocks of lanes, on
    ``numba.get_num_threads()`` threads.  The kernel releases the GIL and blocks are independent,
    so the result does not depend on the split; each thread takes about four ranges, so uneven
    (adaptive) blocks balance.  A first call compiles the kernel on this thread alone."""
    kernel = module.kernel
    nblocks = -(-n // module.BLOCK)
    nthreads = max(1, min(numba.get_num_threads(), nblocks))
    per = max(1, nblocks // (4 * nthreads)) if nthreads > 1 else nblocks
    ranges = [(a, min(a + per, nblocks)) for a in range(0, nblocks, per)]
    if not kernel.signatures:
        kernel(*ranges.pop(0), *args)
    if nthreads == 1:
        for a, b in ranges:
            kernel(a, b, *args)
        return
    with ThreadPoolExecutor(nthreads, thread_name_prefix="sdekit") as pool:
        for job in [pool.submit(kernel, a, b, *args) for a, b in ranges]:
            job.result()


def kernel_data(names, *, params, nets, structure, Lval, op_specs, grid: Grid | None, noise: Noise | None, d,
                dtype):
    """Runtime arguments of the kernel named in ``names`` (emit_numba.kernel_arguments), and the
    step class of each grid step (operators are tabulated per distinct step size; the adaptive
    kernel, ``grid`` None, computes its own)."""
    vals = {}
    for name, v in params.items():
        vals[f"P_{name}"], vals[f"S_{name}"] = _strided(v, dtype)
    for name, layers in nets.items():
        for i, (W, b) in enumerate(layers):
            vals[f"{name}_W{i}"], vals[f"{name}_b{i}"] = W, b
    if Lval is not None:
        if structure == "dense":
            vals["Lm"] = np.ascontiguousarray(Lval, dtype=dtype)
            vals["S_L"] = 1 if Lval.shape[0] > 1 else 0
        else:
            L = np.ascontiguousarray(np.broadcast_to(Lval, (d, Lval.shape[1])), dtype=dtype)
            vals["Lm"], vals["S_L"] = L, (1 if L.shape[1] > 1 else 0)
    hclass = None
    if grid is not None:
        classes, hclass = np.unique(np.diff(grid.times), return_inverse=True)
        vals |= _operator_tables(op_specs, structure, Lval, classes, noise, d, dtype)
    missing = [n for n in names if n not in vals]
    if missing:  # pragma: no cover - emitter and runtime disagree
        raise RuntimeError(f"kernel arguments without values: {missing}")
    return [vals[n] for n in names], (None if hclass is None else hclass.astype(np.int64))


def _operator_tables(op_specs, structure, Lval, classes, noise, d, dtype):
    """``op_X`` (one value per step class) and its trajectory stride ``S_op_X``."""
    vals = {}
    per_class = [operator_values(op_specs, structure, Lval, float(h), noise) for h in classes]
    for name in op_specs:
        arrs = [pc[name] for pc in per_class]
        if arrs[0].ndim == 3:  # dense (n', d, d)
            stacked = np.stack(arrs)
            vals[f"S_op_{name}"] = 1 if stacked.shape[1] > 1 else 0
        else:                  # elementwise (1 or d, n')
            ncols = max(a.shape[1] for a in arrs)
            stacked = np.stack([np.broadcast_to(a, (d, ncols)) for a in arrs])
            vals[f"S_op_{name}"] = 1 if ncols > 1 else 0
        vals[f"op_{name}"] = np.ascontiguousarray(stacked, dtype=dtype)
    return vals


def integrate(module, names, grid: Grid, save_steps, y0, first: int, seed: int, params, nets, structure, Lval,
              op_specs, noise: Noise | None):
    """Run the fused kernel; returns (saved (nsave, d, n), retcodes (n,) int8)."""
    d, n = y0.shape
    dtype = y0.dtype
    extra, hclass = kernel_data(names, params=params, nets=nets, structure=structure, Lval=Lval,
                                op_specs=op_specs, grid=grid, noise=noise, d=d, dtype=dtype)
    nsteps = len(grid.times) - 1
    q_ipos = np.zeros(nsteps, np.int64)
    q_frac = np.zeros(nsteps, np.float64)
    q_levels = np.zeros(nsteps, np.int64)
    if noise is not None and grid.level is None:
        tree = BrownianTree(seed, grid.times[0], grid.times[-1], 1, np.zeros(1))
        for i, t in enumerate(grid.times[1:]):
            q_ipos[i], q_frac[i], q_levels[i] = tree.query_plan(t)
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    times = np.ascontiguousarray(grid.times, dtype=np.float64)
    tn_d = times[:-1].astype(dtype)
    h_d = np.diff(times).astype(dtype)
    out = np.empty((len(save_steps), d, n), dtype=dtype)
    retcode = np.zeros(n, dtype=np.int8)
    level = -1 if grid.level is None else int(grid.level)
    launch(module, n, np.ascontiguousarray(y0), np.int64(first), k0, k1, times, tn_d, h_d, hclass, np.int64(level),
           float(grid.tree_T), q_ipos, q_frac, q_levels, np.asarray(save_steps, np.int64),
           out, retcode, *extra)
    return out, retcode


def integrate_adaptive(module, names, tspan, y0, first: int, seed: int, params, nets, structure, Lval, opts,
                       record_capacity: int = 1024):
    """Run the adaptive fused kernel (emit_numba_adaptive); same contract as
    ``kernels.adaptive.integrate``: (times, saved (nsave, d, n), retcodes (n,), stats).

    Saving every accepted step (a single trajectory, ``opts.save_times`` None) fills a buffer of
    ``record_capacity`` steps; a longer run is repeated with the buffer it needs (same steps)."""
    t0, t1 = (float(x) for x in tspan)
    d, n = y0.shape
    dtype = y0.dtype
    extra, _ = kernel_data(names, params=params, nets=nets, structure=structure, Lval=Lval, op_specs={}, grid=None,
                           noise=None, d=d, dtype=dtype)
    record = opts.save_times is None
    save_t = np.empty(0) if record else np.ascontiguousarray(opts.save_times, dtype=np.float64)
    stops = np.unique(np.concatenate([opts.tstops, [] if record or opts.dense else save_t, [t1]]))
    stops = np.ascontiguousarray(stops[(stops > t0) & (stops <= t1)], dtype=np.float64)
    c = opts.controller
    ctrl = np.array([*c.beta, c.safety, c.qmin, c.qmax, opts.order], dtype=np.float64)
    k0, k1 = (np.uint64(k) for k in seed_key(seed))
    cap = max(int(record_capacity), 2) if record else len(save_t)
    while True:
        out = np.full((cap, d, n), np.nan, dtype=dtype)
        out_t = np.full((cap if record else 1, n), np.nan)
        nsaved = np.zeros(n, np.int64)
        retcode = np.zeros(n, dtype=np.int8)
        stats = np.zeros((3, n), np.int64)
        launch(module, n, np.ascontiguousarray(y0), np.int64(first), k0, k1, t0, t1, float(opts.dt0 or 0.0),
               np.ascontiguousarray(opts.rtol.ravel(), dtype=np.float64),
               np.ascontiguousarray(opts.atol.ravel(), dtype=np.float64), ctrl, float(opts.dtmin),
               float(opts.dtmax), np.int64(opts.maxiters), stops, save_t, record, out, out_t, nsaved, retcode, stats,
               *extra)
        if not record or nsaved.max() <= cap:
            break
        cap = int(nsaved.max())
    nf, na, nr = (int(x) for x in stats.sum(axis=1))
    if record:
        k = int(nsaved[0])
        return out_t[:k, 0], out[:k], retcode, {"nf": nf, "naccept": na, "nreject": nr}
    return save_t, out, retcode, {"nf": nf, "naccept": na, "nreject": nr}
