"""The numpy reference backend: drives a generated ``step`` over a fixed time grid.

It runs the same step scheme as the fused kernels, vectorised over the ensemble in
(d, n) layout; noise comes from the time-addressed Brownian tree, so results depend only
on (seed, trajectory index), never on ensemble size or chunking.
"""
from __future__ import annotations

import numpy as np

from .backend import Grid, Noise, RawResult
from .brownian import BrownianTree
from .linear import convolution_residual, evaluate_phi_poly
from ..abi import NACCEPT, NF, STATS, STREAM_ZETA, UNSTABLE
from .philox import normals


def operator_values(specs: dict, structure: str, Lval, h: float, noise: Noise | None):
    """Values of the scheme's operators for step size h (``specs``: name -> ("phi", poly) | ("residual", layout))."""
    cache, ops = {}, {}
    for name, (kind, data) in specs.items():
        if kind == "phi":
            ops[name] = evaluate_phi_poly(data, structure, Lval, h, cache)
        else:
            ops[name] = convolution_residual(structure, data, Lval, noise.G, noise.noise, h)
    return ops


def brownian_increments(grid: Grid, noise: Noise, seed: int, trajectories, dtype):
    """Yield (ΔW, H), each (m, n), for each step of ``grid`` (H: space-time Lévy area,
    I_(1,0) = h(ΔW/2 + H)): a walk of the (W, H) tree when dyadic, else consecutive increments."""
    tree = BrownianTree(seed, grid.times[0], grid.tree_end, noise.m, trajectories)
    steps = tree.walk(grid.level) if grid.level is not None else tree.increments(grid.times)
    for dw, hh in steps:
        yield dw.astype(dtype), hh.astype(dtype)


def integrate(module, inp) -> RawResult:
    """Run the generated ``module.step`` over ``inp.grid`` (``module.startup_step`` for the first
    ``STARTUP_STEPS`` steps of a multistep method), every trajectory a column of (d, n) arrays."""
    grid, noise, y0 = inp.grid, inp.noise, inp.y0
    d, n = y0.shape
    dtype = y0.dtype
    y = y0.copy()
    retcode = np.zeros(n, dtype=np.int8)
    stats = np.zeros((len(STATS), n), np.int64)
    saved = np.empty((len(inp.save_steps), d, n), dtype=dtype)
    save_at = {s: i for i, s in enumerate(inp.save_steps)}
    if 0 in save_at:
        saved[save_at[0]] = y
    L = None if inp.Lval is None else inp.Lval.astype(dtype)
    ops_by_h = {}
    dWs = brownian_increments(grid, noise, inp.seed, inp.trajectories, dtype) if noise is not None else None
    mem = {}
    steps = range(len(grid.times) - 1)
    if inp.progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="sdekit numpy", unit="step")
    for i in steps:
        t, h = grid.times[i], grid.times[i + 1] - grid.times[i]
        if h not in ops_by_h:
            ops_by_h[h] = {k: v.astype(dtype) for k, v in
                           operator_values(inp.op_specs, inp.structure, inp.Lval, h, noise).items()}
        rnd = {}
        if dWs is not None:
            rnd["dW"], rnd["dH"] = next(dWs)
        if module.NEEDS_ZETA:
            rnd["zeta"] = normals(inp.seed, grid.node(i), inp.trajectories, STREAM_ZETA, d, dtype)
        step = module.startup_step if i < module.STARTUP_STEPS else module.step
        mem["nf"] = 0
        with np.errstate(all="ignore"):
            y = step(y, dtype.type(t), dtype.type(h), inp.params, inp.nets, L, ops_by_h[h], rnd, mem)
        stats[NF] += mem["nf"]
        stats[NACCEPT] += 1
        bad = ~np.all(np.isfinite(y), axis=0)
        if bad.any():
            retcode[bad] = UNSTABLE
            y[:, bad] = np.nan
        if i + 1 in save_at:
            saved[save_at[i + 1]] = y
    return RawResult(grid.times[inp.save_steps], saved, retcode, stats)
