"""Launch a generated fused Numba kernel (see sdekit.codegen.emit_numba) over an ensemble."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..abi import ADAPTIVE_ARGS, CONTROLLER, FIXED_ARGS, LINEAR_ARGS, STATS, operator_args, param_args, weight_args
from .brownian import query_plan
from .backend import Grid, RawResult
from .numpy_backend import operator_values
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


def kernel_data(names, inp, grid: Grid | None):
    """Runtime arguments of the kernel named in ``names`` (emit_numba.kernel_arguments, named by the
    ABI's helpers), and the step class of each grid step (operators are tabulated per distinct step
    size; the adaptive kernel, ``grid`` None, computes its own)."""
    d, dtype = inp.y0.shape[0], inp.y0.dtype
    vals = {}
    for name, v in inp.params.items():
        vals.update(zip(param_args(name), _strided(v, dtype)))
    for name, layers in inp.nets.items():
        for i, (W, b) in enumerate(layers):
            vals.update(zip(weight_args(name, i), (W, b)))
    Lval = inp.Lval
    if Lval is not None:
        if inp.structure == "dense":
            vals.update(zip(LINEAR_ARGS, (np.ascontiguousarray(Lval, dtype=dtype), 1 if Lval.shape[0] > 1 else 0)))
        else:
            L = np.ascontiguousarray(np.broadcast_to(Lval, (d, Lval.shape[1])), dtype=dtype)
            vals.update(zip(LINEAR_ARGS, (L, 1 if L.shape[1] > 1 else 0)))
    hclass = None
    if grid is not None:
        classes, hclass = np.unique(np.diff(grid.times), return_inverse=True)
        vals |= _operator_tables(inp.op_specs, inp.structure, Lval, classes, inp.noise, d, dtype)
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
            stride = 1 if stacked.shape[1] > 1 else 0
        else:                  # elementwise (1 or d, n')
            ncols = max(a.shape[1] for a in arrs)
            stacked = np.stack([np.broadcast_to(a, (d, ncols)) for a in arrs])
            stride = 1 if ncols > 1 else 0
        vals.update(zip(operator_args(name), (np.ascontiguousarray(stacked, dtype=dtype), stride)))
    return vals


def _ordered(spec, values: dict) -> list:
    """The fixed arguments ``values`` in the ABI's order ``spec`` (a missing or extra one is a bug)."""
    if set(values) != set(spec):  # pragma: no cover - runtime and ABI disagree
        raise RuntimeError(f"fixed kernel arguments {sorted(values)} are not the ABI's {spec}")
    return [values[k] for k in spec]


def integrate(module, names, inp) -> RawResult:
    """Run the fixed-step fused kernel over ``inp.grid``."""
    grid, noise = inp.grid, inp.noise
    d, n = inp.y0.shape
    dtype = inp.y0.dtype
    extra, hclass = kernel_data(names, inp, grid)
    nsteps = len(grid.times) - 1
    q = np.zeros((3, nsteps))
    if noise is not None and grid.level is None:
        T = grid.times[-1] - grid.times[0]
        q = np.array([query_plan(float(t), float(grid.times[0]), T) for t in grid.times[1:]]).T.reshape(3, nsteps)
    k0, k1 = (np.uint64(k) for k in seed_key(inp.seed))
    times = np.ascontiguousarray(grid.times, dtype=np.float64)
    out = np.empty((len(inp.save_steps), d, n), dtype=dtype)
    retcode = np.zeros(n, dtype=np.int8)
    stats = np.zeros((len(STATS), n), np.int64)
    fixed = dict(y0=np.ascontiguousarray(inp.y0), first=np.int64(inp.trajectories[0]), k0=k0, k1=k1, times=times,
                 tn_d=times[:-1].astype(dtype), h_d=np.diff(times).astype(dtype), hclass=hclass,
                 level=np.int64(-1 if grid.level is None else grid.level), tree_T=float(grid.tree_T),
                 q_ipos=q[0].astype(np.int64), q_frac=q[1].astype(np.float64), q_levels=q[2].astype(np.int64),
                 step_node=grid.node(0) + np.arange(nsteps, dtype=np.int64),   # Grid.node(n) = node(0) + n
                 save_at=np.asarray(inp.save_steps, np.int64), out=out, retcode=retcode, stats=stats)
    launch(module, n, *_ordered(FIXED_ARGS, fixed), *extra)
    return RawResult(grid.times[inp.save_steps], out, retcode, stats)


def integrate_adaptive(module, names, inp, record_capacity: int = 1024) -> RawResult:
    """Run the adaptive fused kernel (emit_numba_adaptive); same contract as
    ``kernels.adaptive.integrate``.

    Saving every accepted step (a single trajectory, ``opts.save_times`` None) fills a buffer of
    ``record_capacity`` steps; a longer run is repeated with the buffer it needs (same steps)."""
    opts = inp.opts
    t0, t1 = (float(x) for x in inp.tspan)
    d, n = inp.y0.shape
    dtype = inp.y0.dtype
    extra, _ = kernel_data(names, inp, None)
    record = opts.save_times is None
    save_t = np.empty(0) if record else np.ascontiguousarray(opts.save_times, dtype=np.float64)
    stops = np.unique(np.concatenate([opts.tstops, [] if record or opts.dense else save_t, [t1]]))
    stops = np.ascontiguousarray(stops[(stops > t0) & (stops <= t1)], dtype=np.float64)
    c = opts.controller
    settings = dict(zip(("b1", "b2", "b3"), c.beta), safety=c.safety, qmin=c.qmin, qmax=c.qmax, order=opts.order)
    k0, k1 = (np.uint64(k) for k in seed_key(inp.seed))
    cap = max(int(record_capacity), 2) if record else len(save_t)
    while True:
        out = np.full((cap, d, n), np.nan, dtype=dtype)
        out_t = np.full((cap if record else 1, n), np.nan)
        nsaved = np.zeros(n, np.int64)
        retcode = np.zeros(n, dtype=np.int8)
        stats = np.zeros((len(STATS), n), np.int64)
        fixed = dict(y0=np.ascontiguousarray(inp.y0), first=np.int64(inp.trajectories[0]), k0=k0, k1=k1, t0=t0,
                     t1=t1, h0=float(opts.dt0 or 0.0), rtol=np.ascontiguousarray(opts.rtol.ravel(), dtype=np.float64),
                     atol=np.ascontiguousarray(opts.atol.ravel(), dtype=np.float64),
                     ctrl=np.array(_ordered(CONTROLLER, settings), dtype=np.float64), dtmin=float(opts.dtmin),
                     dtmax=float(opts.dtmax), maxiters=np.int64(opts.maxiters), stops=stops, save_t=save_t,
                     record=record, out=out, out_t=out_t, nsaved=nsaved, retcode=retcode, stats=stats)
        launch(module, n, *_ordered(ADAPTIVE_ARGS, fixed), *extra)
        if not record or nsaved.max() <= cap:
            break
        cap = int(nsaved.max())
    if record:
        k = int(nsaved[0])
        return RawResult(out_t[:k, 0], out[:k], retcode, stats)
    return RawResult(save_t, out, retcode, stats)
