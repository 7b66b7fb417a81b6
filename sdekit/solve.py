"""``solve``: the one place that knows both the symbolic layer and the runtime layer."""
from __future__ import annotations

import math

import numpy as np

from sdekit.codegen.emit_numba import emit_numba, kernel_arguments
from sdekit.codegen.emit_numpy import emit_numpy
from sdekit.codegen.errors import ModelError
from sdekit.codegen.methods import get_method
from sdekit.codegen.builders import build_scheme
from sdekit.codegen.scheme import ConvolutionResidual, EvalRHS, operator_layout
from sdekit.kernels import numpy_backend
from sdekit.kernels.cache import load_module
from sdekit.kernels.linear import linear_value
from sdekit.nets import check_weights
from sdekit.problem import Ensemble, SDEProblem, _Problem
from sdekit.solution import Solution

BACKENDS = ("numba", "numpy")
MAX_STEPS = 10**8


def scheme_and_source(model, method, backend: str = "numpy", dtype="float64"):
    """(StepScheme, generated source) for ``model`` and ``method``, cached on the model.
    The numpy module serves every dtype; a Numba kernel is specialised to its dtype."""
    dtype = str(np.dtype(dtype)) if backend == "numba" else None
    key = (method.name, backend, dtype)
    if key not in model._sources:
        scheme = build_scheme(model.form, method)
        src = emit_numpy(model.form, scheme) if backend == "numpy" else emit_numba(model.form, scheme, dtype)
        model._sources[key] = (scheme, src)
    return model._sources[key]


def time_grid(tspan, dt) -> numpy_backend.Grid:
    """Fixed-step grid on tspan: equal steps T/N when dt divides T (to 1e-9), else steps of dt
    and a shorter last one.  Dyadic when N = 2^k (then the Brownian tree is walked in order)."""
    t0, t1 = tspan
    try:
        dt = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a number, got {dt!r}") from None
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be finite and > 0, got {dt}")
    T = t1 - t0
    ratio = T / dt
    if ratio > MAX_STEPS:
        raise ValueError(f"dt={dt} needs {ratio:.3g} steps on {tspan}; more than {MAX_STEPS}")
    nsteps = max(round(ratio), 1)
    if abs(ratio - nsteps) <= 1e-9 * max(ratio, 1.0) or ratio < 1:
        times = t0 + T * (np.arange(nsteps + 1) / nsteps)
        times[-1] = t1
        level = int(math.log2(nsteps)) if nsteps & (nsteps - 1) == 0 else None
        return numpy_backend.Grid(times, level)
    times = np.append(t0 + dt * np.arange(math.ceil(ratio)), t1)
    return numpy_backend.Grid(times, None)


def save_steps(grid, saveat) -> list:
    """Indices into the grid of the saved times (every step when ``saveat`` is None)."""
    if saveat is None:
        return list(range(len(grid.times)))
    ts = np.atleast_1d(np.asarray(saveat, dtype=float))
    if ts.ndim != 1 or not np.all(np.isfinite(ts)):
        raise ValueError("saveat must be a 1-d array of finite times")
    tol = 1e-9 * (grid.times[-1] - grid.times[0])
    idx = []
    for s in ts:
        i = int(np.argmin(np.abs(grid.times - s)))
        if abs(grid.times[i] - s) > tol:
            raise ValueError(f"saveat time {s} is not on the fixed-step grid (fixed steps save on grid points)")
        idx.append(i)
    if idx != sorted(idx):
        raise ValueError("saveat times must be increasing")
    return idx


def _targets(target, seed):
    """(problem, y0 (n, d), params, trajectories, seed, is_ensemble)."""
    if isinstance(target, Ensemble):
        return target.problem, np.asarray(target.y0), target.params(), target.trajectories, target.seed, True
    if isinstance(target, _Problem):
        for name, v in target.params.items():
            if v.ndim:
                raise ValueError(f"parameter {name!r} is an array; per-trajectory values need an Ensemble")
        from sdekit.problem import _integer
        return target, target.y0[None, :], target.params, np.zeros(1, np.int64), \
            _integer(seed if seed is not None else 0, "seed"), False
    raise ValueError(f"solve needs an ODEProblem, SDEProblem or Ensemble, got {type(target).__name__}")


def solve(target, method: str, dt=None, *, backend: str | None = None, saveat=None, dtype=np.float64,
          seed: int | None = None, progress: bool = False, rtol=None, atol=None) -> Solution:
    """Integrate ``target`` (problem or Ensemble) with ``method`` at fixed step ``dt``.

    ``backend``: "numba" (default: the fused, multi-threaded ensemble kernel) or "numpy"
    (the vectorised reference that runs the same step scheme).
    ``saveat``: times on the step grid to save (default: every step).  ``seed`` (single
    SDE problems; ensembles carry their own).  ``dtype``: np.float64 or np.float32.
    """
    problem, Y0, params, trajectories, seed, is_ensemble = _targets(target, seed)
    model = problem.model
    m = get_method(method)
    backend = (backend or "numba").lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {BACKENDS}")
    dtype = np.dtype(dtype)
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be float64 or float32, got {dtype}")
    if rtol is not None or atol is not None:
        raise ModelError(f"adaptive stepping (rtol/atol) is not implemented yet; give a fixed dt for {m.name}")
    if dt is None:
        raise ValueError(f"{m.name} is a fixed-step method here: give dt")
    if m.stochastic and not isinstance(problem, SDEProblem):
        raise ModelError(f"{m.name} is an SDE method but the problem is an ODEProblem")
    scheme, source = scheme_and_source(model, m, backend, dtype)
    grid = time_grid(problem.tspan, dt)
    steps_saved = save_steps(grid, saveat)
    if not steps_saved:
        raise ValueError("saveat is empty: nothing would be saved")
    host = load_module(scheme_and_source(model, m, "numpy")[1], "numpy")  # L, G values and the reference step

    n = Y0.shape[0]
    form = model.form
    Lval = None
    if scheme.needs_linear and form.linear_structure != "zero":
        Lsrc = host.linear_entries(params) if form.linear is not None else form.linear_numeric
        Lval = linear_value(form.linear_structure, Lsrc, form.dim)
        if not np.all(np.isfinite(Lval)):
            raise ValueError(f"the linear part L = {model.linear} has non-finite entries for these parameters")
    noise = None
    if form.stochastic:
        G = None
        if scheme.needs_zeta:
            G = host.diffusion(np.zeros((form.dim, 1)), problem.tspan[0], params)
            if not np.all(np.isfinite(G)):
                raise ValueError(f"the diffusion G = {list(form.diffusion)} is non-finite for these parameters")
        noise = numpy_backend.Noise(seed, form.noise_dim, trajectories, form.noise, G)
    op_specs = {name: (("phi", op.poly) if not isinstance(op, ConvolutionResidual)
                       else ("residual", operator_layout(form, op)))
                for name, op in scheme.all_operators().items()}
    nets = {name: check_weights(form.nets[name], w, dtype) for name, w in problem.nets.items()}
    pvals = {k: (v.astype(dtype) if v.ndim else dtype.type(v)) for k, v in params.items()}
    y0 = np.ascontiguousarray(Y0.T, dtype=dtype)
    if backend == "numpy":
        saved, codes = numpy_backend.integrate(
            host, grid, steps_saved, y0, pvals, nets, form.linear_structure, Lval, op_specs, noise,
            needs_zeta=scheme.needs_zeta, startup_steps=scheme.startup_steps,
            progress=progress)
    else:
        from sdekit.kernels import numba_backend
        kernel = load_module(source, "numba").kernel
        saved, codes = numba_backend.integrate(
            kernel, kernel_arguments(form, scheme), grid, steps_saved, y0, int(trajectories[0]), seed, pvals, nets,
            form.linear_structure, Lval, op_specs, noise)
    y = np.transpose(saved, (2, 0, 1))
    nstages = sum(isinstance(s, EvalRHS) for s in scheme.statements)  # (multistep startup: a few more)
    nsteps = len(grid.times) - 1
    stats = {"nf": nstages * nsteps * n, "naccept": nsteps * n, "nreject": 0}
    return Solution.from_codes(grid.times[steps_saved], y if is_ensemble else y[0], codes, is_ensemble,
                               stats=stats, method=m.name, backend=backend)


def inspect(model, method: str, backend: str = "numba", dtype=np.float64) -> str:
    """The generated source that ``solve`` runs for ``model`` and ``method`` on ``backend``."""
    if backend.lower() not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {BACKENDS}")
    return scheme_and_source(getattr(model, "model", model), get_method(method), backend.lower(), dtype)[1]
