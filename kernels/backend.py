"""The Backend interface: all that ``solve`` (and, later, dask) sees of a runtime.

``BACKENDS[name].compile(source, arguments) -> Kernel`` loads generated source (printed by the
backend's emitter in ``sdekit.codegen``); ``Kernel.run(inputs, chunk) -> RawResult`` integrates
the trajectories ``chunk.first .. chunk.first + chunk.count - 1`` of ``inputs``.  A chunk is the unit of
work: its result depends only on (seed, trajectory index), never on the chunking, so any chunk can
be recomputed alone bit for bit.  Statistics are counted by the kernel, per trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .cache import load_module
from .cuda_arrays import array_module


@dataclass
class Grid:
    """Fixed step times (every grid reads the Brownian tree on tspan, ``kernels.brownian``)."""

    times: np.ndarray


@dataclass
class Noise:
    """The Brownian noise of an SDE solve (its seed and trajectories are the RunInput's)."""

    m: int                            # Wiener processes
    noise: str                        # scalar | diagonal | general
    G: np.ndarray | None = None       # (d, n') numeric diffusion, for the stochastic convolution


@dataclass(frozen=True)
class Chunk:
    """Trajectories ``first .. first + count - 1`` of a :class:`RunInput`."""

    first: int
    count: int


@dataclass
class RunInput:
    """The numeric inputs of one solve (numbers, no sympy: numpy arrays, or CuPy arrays for y0, per-trajectory
    params and L of a backend="cuda" solve whose inputs are on the GPU).  Per-trajectory arrays (``y0`` columns,
    array-valued params, ``trajectories``) have one entry per trajectory."""

    y0: np.ndarray                 # (d, n), the kernel's dtype
    tspan: tuple
    params: dict                   # name -> scalar or (n,) array
    nets: dict                     # name -> [(W, b), ...]
    structure: str                 # of L: zero | scalar | diagonal | dense
    Lval: np.ndarray | None        # numeric L (sdekit.kernels.linear.linear_value)
    op_specs: dict                 # name -> ("phi", poly) | ("residual", layout)
    noise: Noise | None
    seed: int = 0
    trajectories: np.ndarray | None = None   # ensemble indices of the columns (counter-based noise)
    grid: Grid | None = None       # fixed steps
    save_steps: list | None = None  # fixed steps: grid indices saved
    opts: object | None = None     # adaptive: kernels.adaptive.Options
    progress: bool = False
    device_output: bool = False    # the inputs were on the GPU: a GPU kernel leaves the saved states there

    def chunk(self, c: Chunk) -> "RunInput":
        """The inputs of trajectories c.first .. c.first + c.count - 1 alone (ValueError outside them)."""
        n = self.y0.shape[1]
        if not (0 <= c.first and c.count >= 1 and c.first + c.count <= n):
            raise ValueError(f"chunk of {c.count} trajectories from {c.first} is not inside the {n} of this run")
        sl = slice(c.first, c.first + c.count)
        params = {k: (v[sl] if np.ndim(v) else v) for k, v in self.params.items()}
        Lval = self.Lval
        if Lval is not None and Lval.shape[-1 if self.structure != "dense" else 0] > 1:
            Lval = Lval[sl] if self.structure == "dense" else Lval[:, sl]
        noise = self.noise
        if noise is not None:
            G = noise.G if noise.G is None or noise.G.shape[-1] == 1 else noise.G[..., sl]
            noise = replace(noise, G=G)
        y0 = array_module(self.y0).ascontiguousarray(self.y0[:, sl])
        return replace(self, y0=y0, params=params, Lval=Lval, noise=noise, trajectories=self.trajectories[sl])


@dataclass
class RawResult:
    """What a kernel returns: save times, saved states (nsave, d, n), retcodes (n,) int8
    (``sdekit.abi.RETCODES``) and per-trajectory stats (3, n) int64 (``sdekit.abi.STATS``)."""

    times: np.ndarray
    saved: np.ndarray
    retcodes: np.ndarray
    stats: np.ndarray


class NumpyKernel:
    """The numpy reference: the generated kernel over all trajectories of a chunk at once."""

    def __init__(self, module, arguments, adaptive: bool):
        self.module, self.arguments, self.adaptive = module, list(arguments), adaptive

    def run(self, inp: RunInput, chunk: Chunk) -> RawResult:
        from . import numpy_backend
        inp = inp.chunk(chunk)
        if self.adaptive:
            return numpy_backend.integrate_adaptive(self.module, self.arguments, inp)
        return numpy_backend.integrate(self.module, self.arguments, inp)


class NumbaKernel:
    """A fused Numba ensemble kernel (fixed-step or adaptive), launched on host threads."""

    def __init__(self, module, arguments, adaptive: bool):
        self.module, self.arguments, self.adaptive = module, list(arguments), adaptive

    def run(self, inp: RunInput, chunk: Chunk) -> RawResult:
        from . import numba_backend
        inp = inp.chunk(chunk)
        if self.adaptive:
            return numba_backend.integrate_adaptive(self.module, self.arguments, inp)
        return numba_backend.integrate(self.module, self.arguments, inp)


class Backend:
    """A runtime: ``compile(source, arguments, adaptive)`` -> a Kernel.  ``python``: the source is a
    Python module to import (numpy, Numba), else text the kernel class compiles itself (CUDA C)."""

    def __init__(self, name: str, kernel_class, python: bool = True):
        self.name, self.kernel_class, self.python = name, kernel_class, python

    def compile(self, source: str, arguments=(), adaptive: bool = False):
        code = load_module(source, self.name) if self.python else source
        return self.kernel_class(code, arguments, adaptive)


def _cuda(kind):
    def make(source, arguments, adaptive):
        from . import cuda_backend
        return getattr(cuda_backend, kind)(source, arguments, adaptive)
    return make


BACKENDS = {"numba": Backend("numba", NumbaKernel), "numpy": Backend("numpy", NumpyKernel),
            "cuda": Backend("cuda", _cuda("CudaKernel"), python=False),
            "cuda-host": Backend("cuda-host", _cuda("HostCudaKernel"), python=False)}
