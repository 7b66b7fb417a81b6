"""The numpy reference backend: drives a generated ``step`` over a fixed time grid.

It runs the same step scheme as the fused kernels, vectorised over the ensemble in
(d, n) layout; noise comes from the time-addressed Brownian tree, so results depend only
on (seed, trajectory index), never on ensemble size or chunking.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .brownian import BrownianTree
from .linear import convolution_residual, evaluate_phi_poly
from .philox import STREAM_ZETA, normals

#: retcodes in increasing severity; a Solution's overall code is the worst of its trajectories
RETCODES = ("Success", "MaxIters", "DtLessThanMin", "Unstable")
UNSTABLE = RETCODES.index("Unstable")


@dataclass
class Grid:
    """Fixed step times and the Brownian tree they read.

    ``level`` k when the steps are the first N <= 2^k intervals of level k of a tree on
    ``[times[0], tree_end]`` (equal steps h: ``tree_end = t0 + 2^k h``, which is ``t1`` when
    N = 2^k); the tree is then walked in order.  ``level`` None: the tree is on
    ``[t0, t1]`` and every step end is a query."""

    times: np.ndarray
    level: int | None
    tree_end: float | None = None

    def __post_init__(self):
        if self.tree_end is None:
            self.tree_end = float(self.times[-1])

    @property
    def tree_T(self) -> float:
        """Length of the Brownian tree's span."""
        return self.tree_end - float(self.times[0])

    def node(self, n: int) -> int:
        """Counter node of step n: its dyadic interval's heap index, or 2^62 + n otherwise."""
        return (1 << self.level) + n if self.level is not None else (1 << 62) + n


@dataclass
class Noise:
    seed: int
    m: int
    trajectories: np.ndarray
    noise: str
    G: np.ndarray | None = None       # (d, n') numeric diffusion, for the stochastic convolution


def operator_values(specs: dict, structure: str, Lval, h: float, noise: Noise | None):
    """Values of the scheme's operators for step size h (``specs``: name -> ("phi", poly) | ("residual", layout))."""
    cache, ops = {}, {}
    for name, (kind, data) in specs.items():
        if kind == "phi":
            ops[name] = evaluate_phi_poly(data, structure, Lval, h, cache)
        else:
            ops[name] = convolution_residual(structure, data, Lval, noise.G, noise.noise, h)
    return ops


def brownian_increments(grid: Grid, noise: Noise, dtype):
    """Yield (ΔW, H), each (m, n), for each step of ``grid`` (H: space-time Lévy area,
    I_(1,0) = h(ΔW/2 + H)): a walk of the (W, H) tree when dyadic, else consecutive increments."""
    tree = BrownianTree(noise.seed, grid.times[0], grid.tree_end, noise.m, noise.trajectories)
    steps = tree.walk(grid.level) if grid.level is not None else tree.increments(grid.times)
    for dw, hh in steps:
        yield dw.astype(dtype), hh.astype(dtype)


def integrate(module, grid: Grid, save_steps, y0, params, nets, structure, Lval, op_specs, noise: Noise | None,
              needs_zeta=False, startup_steps=0, progress=False):
    """Run the generated ``module.step`` over ``grid`` (``module.startup_step`` for the first
    ``startup_steps`` steps of a multistep method); returns (saved (nsave, d, n), retcodes (n,) int8)."""
    d, n = y0.shape
    dtype = y0.dtype
    y = y0.copy()
    retcode = np.zeros(n, dtype=np.int8)
    saved = np.empty((len(save_steps), d, n), dtype=dtype)
    save_at = {s: i for i, s in enumerate(save_steps)}
    if 0 in save_at:
        saved[save_at[0]] = y
    L = None if Lval is None else Lval.astype(dtype)
    ops_by_h = {}
    dWs = brownian_increments(grid, noise, dtype) if noise is not None else None
    mem = {}
    steps = range(len(grid.times) - 1)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc="sdekit numpy", unit="step")
    for i in steps:
        t, h = grid.times[i], grid.times[i + 1] - grid.times[i]
        if h not in ops_by_h:
            ops_by_h[h] = {k: v.astype(dtype) for k, v in operator_values(op_specs, structure, Lval, h, noise).items()}
        rnd = {}
        if dWs is not None:
            rnd["dW"], rnd["dH"] = next(dWs)
        if needs_zeta:
            rnd["zeta"] = normals(noise.seed, grid.node(i), noise.trajectories, STREAM_ZETA, d, dtype)
        step = module.startup_step if i < startup_steps else module.step
        with np.errstate(all="ignore"):
            y = step(y, dtype.type(t), dtype.type(h), params, nets, L, ops_by_h[h], rnd, mem)
        bad = ~np.all(np.isfinite(y), axis=0)
        if bad.any():
            retcode[bad] = UNSTABLE
            y[:, bad] = np.nan
        if i + 1 in save_at:
            saved[save_at[i + 1]] = y
    return saved, retcode
