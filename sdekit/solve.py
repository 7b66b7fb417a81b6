"""``solve``: the one place that knows both the symbolic layer and the runtime layer."""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass, replace

import numpy as np
import sympy as sp

from sdekit.codegen.emit_numba import emit_numba, emit_numba_adaptive, kernel_arguments
from sdekit.codegen.emit_numpy import emit_numpy, numpy_arguments
from sdekit.codegen.errors import ModelError
from sdekit.codegen.methods import CATALOGUE, get_method
from sdekit.codegen.builders import build_scheme
from sdekit.codegen.emit_cuda import cuda_source
from sdekit.abi import STATS
from sdekit.codegen.scheme import ConvolutionResidual, operator_layout
from sdekit.codegen.host import additive_diffusion, linear_entries
from sdekit.kernels import adaptive as adaptive_driver
from sdekit.kernels.backend import BACKENDS as KERNEL_BACKENDS, Chunk, Grid, Noise, RunInput
from sdekit.kernels.cuda_arrays import array_module, host
from sdekit.kernels.linear import linear_value
from sdekit.kernels import brownian, matfun, philox
from sdekit.kernels.matfun import phi_scalar
from sdekit.nets import check_weights
from sdekit.problem import Ensemble, SDEProblem, _Problem
from sdekit.solution import Solution

MAX_STEPS = 10**8


def _numpy_source(form, scheme, dtype, adaptive):
    return emit_numpy(form, scheme, adaptive)   # one module serves every dtype


def _numba_source(form, scheme, dtype, adaptive):
    dtype = str(np.dtype(dtype))
    if not adaptive:
        return emit_numba(form, scheme, dtype)
    try:
        return emit_numba_adaptive(form, scheme, dtype)
    except NotImplementedError as e:
        raise ModelError(f"{scheme.method} on this model has no adaptive Numba kernel ({e})") from None


#: the loop IR's runtime functions -> their one definition (codegen prints CUDA C from it)
#: what the CUDA kernels print from the runtime's one definition: the IR's phi and the modules its calls name
CUDA_DEVICE_FUNCTIONS = {"phi": phi_scalar, "brownian": brownian, "philox": philox, "matfun": matfun}


def _cuda_source(form, scheme, dtype, adaptive):
    try:
        return cuda_source(form, scheme, str(np.dtype(dtype)), adaptive, CUDA_DEVICE_FUNCTIONS)
    except NotImplementedError as e:
        raise ModelError(f"{scheme.method} on this model has no CUDA kernel yet ({e}); use backend='numba'") from None


def _per_dtype(dtype, adaptive):
    return str(np.dtype(dtype)), bool(adaptive)


#: backend -> (emitter of its source, the kernel's runtime arguments, what the source is specialised to).
#: "cuda-host" runs the CUDA source on the CPU (host C++), to check the CUDA path without a GPU.
EMITTERS = {
    "numpy": (_numpy_source, numpy_arguments, lambda dtype, adaptive: (bool(adaptive),)),
    "numba": (_numba_source, kernel_arguments, _per_dtype),
    "cuda": (_cuda_source, kernel_arguments, _per_dtype),
    "cuda-host": (_cuda_source, kernel_arguments, _per_dtype),
}
BACKENDS = tuple(EMITTERS)


#: kernels print f = L y + c + N from L's entries when L has at most this many non-zero ones (kernel_form)
INLINE_LINEAR_TERMS = 64


def kernel_form(model, method):
    """(form, StepScheme) the kernels of ``method`` on ``model`` are printed from, cached on the model: the model's
    form, or — when the scheme reads L only through f = L y + c + N (explicit Runge–Kutta and the SDE methods
    without operators: no φ / resolvent tables, no Jacobian) and L is symbolic, constant in t and has at most
    INLINE_LINEAR_TERMS non-zero entries, each a polynomial in the params — the same drift with L y moved into N
    (L zero).  The kernels then print f from L's entries (its params read as values, zero entries absent,
    constants folded into the model's expressions) instead of reading a matrix per trajectory at every stage:
    no (n, d, d) array to form, store and read for Lorenz's ρ-dependent L."""
    key = ("form", method.name)
    if key not in model._sources:
        form = model.form
        scheme = build_scheme(form, method)
        entries = [e for e in form.linear if e != 0] if form.linear is not None else []
        if (entries and form.linear_time is None and not scheme.all_operators() and not scheme.needs_jacobian
                and len(entries) <= INLINE_LINEAR_TERMS
                and all(e.is_polynomial(*form.params) for e in entries)):   # exp(k) stays a value formed once
            form = replace(form, linear=sp.zeros(form.dim, form.dim), linear_structure="zero", linear_exact=None,
                           nonlinear=form.nonlinear + form.linear * sp.Matrix(form.states))
            scheme = build_scheme(form, method)
        model._sources[key] = (form, scheme)
    return model._sources[key]


def scheme_and_source(model, method, backend: str = "numpy", dtype="float64", adaptive: bool = False):
    """(StepScheme, generated source) for ``model`` and ``method`` (printed from :func:`kernel_form`), cached on
    the model.  The numpy module serves every dtype and step control; a Numba kernel is specialised to its
    dtype, and the adaptive one (each trajectory its own steps) is a kernel of its own."""
    emit, _, specialise = EMITTERS[backend]
    key = (method.name, backend, specialise(dtype, adaptive))
    if key not in model._sources:
        form, scheme = kernel_form(model, method)
        model._sources[key] = (scheme, emit(form, scheme, dtype, adaptive))
    return model._sources[key]


def compile_kernel(model, method, backend: str, dtype, adaptive: bool):
    """(StepScheme, Kernel) of ``method`` on ``model`` for ``backend`` (kernels.backend)."""
    scheme, source = scheme_and_source(model, method, backend, dtype, adaptive)
    arguments = EMITTERS[backend][1](kernel_form(model, method)[0], scheme, adaptive)
    return scheme, KERNEL_BACKENDS[backend].compile(source, arguments, adaptive)


def time_grid(tspan, dt) -> Grid:
    """Fixed-step grid on tspan: N equal steps h = T/N when dt divides T (to 1e-9), else steps
    of dt and a shorter last one.  Every grid reads the one Brownian tree on tspan
    (``kernels.brownian``): a grid dt = T'/(2^a 5^b), T' the tree's span (the power of ten
    >= t1 − t0; dt = 0.01, 0.005, 0.02, 2^-k, ... for tspan (0, 1)), costs about two tree nodes
    per step; any other grid (dt = T/300, T/3, π/100, ...) ~55 splits down per step: the neural SDE
    benchmark's EM step costs ~6x as much (dt = 1/300: 3.8 s per 100 steps against 0.66 s), a model
    that is only noise ~13x."""
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
        return Grid(times)
    times = t0 + dt * np.arange(math.ceil(ratio))
    return Grid(np.append(times[(t1 - times) * np.sign(T) > 0], t1))     # none on t1 by rounding: no step of size 0


def user_grid(tspan, ts) -> Grid:
    """The fixed-step grid ``ts`` a user gave: strictly increasing finite times from t0 to t1
    (the ends to 1e-12 of the span, then set exactly)."""
    t0, t1 = tspan
    try:
        times = np.array(ts, dtype=float).ravel() if np.ndim(ts) == 1 else None
    except (TypeError, ValueError):
        times = None
    if times is None or times.size < 2 or not np.all(np.isfinite(times)):
        raise ValueError(f"ts must be a 1-d sequence of at least two finite times, got {ts!r}")
    if not np.all(np.diff(times) > 0):
        raise ValueError("ts must run monotonically from t0 to t1 (strictly, in the direction of tspan)")
    if max(abs(times[0] - t0), abs(times[-1] - t1)) > 1e-12 * (t1 - t0):
        raise ValueError(f"ts must start at t0 and end at t1 of tspan, got {times[0]!r} ... {times[-1]!r}")
    if times.size - 1 > MAX_STEPS:
        raise ValueError(f"ts has {times.size - 1} steps; more than {MAX_STEPS}")
    times[0], times[-1] = t0, t1
    return Grid(times)


def brownian_tree(target, seed: int | None = None):
    """The Brownian tree (``kernels.brownian.BrownianTree``) whose path every ``solve(target, ...)``
    uses, fixed-step or adaptive: ``.query(t)`` gives W(t) for exact-solution checks (for a problem
    that runs backwards, t1 < t0: W(s) on the reversed time s = −t, ``.query(-t)``)."""
    from .kernels.brownian import BrownianTree
    problem, _, _, traj, seed, _ = _targets(target, seed, on_host=False)
    if not problem.model.stochastic:
        raise ValueError("brownian_tree needs an SDE problem")
    if problem.backwards:       # a backwards solve reads W(s) in the reversed time s = -t
        problem = problem.time_reversed()
    t0, t1 = (float(x) for x in problem.tspan)
    return BrownianTree(seed, t0, t1, problem.model.form.noise_dim, traj)


def save_steps(grid, saveat, backwards: bool = False, time_map=None) -> list:
    """Indices into the grid of the saved times (every step when ``saveat`` is None or "steps"), strictly
    increasing: a time given twice, or two times on one grid point, is a ValueError.  ``backwards``: the grid
    is in s = −t; ``time_map``: it is in u = U(t) (ℓ(t)·I), t = time_map(u) — the messages say t."""
    if saveat is None or (isinstance(saveat, str) and saveat == "steps"):
        return list(range(len(grid.times)))
    if isinstance(saveat, str):
        raise ValueError(f"saveat must be times or 'steps' (every step), got {saveat!r}")
    ts = np.atleast_1d(np.asarray(saveat, dtype=float))
    if ts.ndim != 1 or not np.all(np.isfinite(ts)):
        raise ValueError("saveat must be a 1-d array of finite times")

    def shown(v):        # a grid time as the user's t
        v = -v if backwards else v
        return float(np.asarray(time_map(v))) if time_map is not None else float(v)
    t0, t1 = grid.times[0], grid.times[-1]
    tol = 1e-9 * (t1 - t0)
    idx = []
    for s in ts:
        if not t0 - tol <= s <= t1 + tol:
            raise ValueError(f"saveat time {shown(s):g} lies outside tspan ({shown(t0):g}, {shown(t1):g})")
        i = int(np.argmin(np.abs(grid.times - s)))
        if abs(grid.times[i] - s) > tol:
            raise ValueError(f"saveat time {shown(s):g} is not on the fixed-step grid (fixed steps save on grid "
                             "points)")
        idx.append(i)
    for k in range(1, len(idx)):
        if idx[k] < idx[k - 1]:
            raise ValueError("saveat times must be increasing (decreasing when tspan runs backwards)")
        if idx[k] == idx[k - 1]:
            raise ValueError(f"saveat times {shown(ts[k - 1]):g} and {shown(ts[k]):g} are the same grid point "
                             f"{shown(grid.times[idx[k]]):g}: give each time once")
    return idx


def refuse_adaptive_options(**given):
    """ValueError for the options of step control (``tstops``, ``dtmin``, ``dtmax``, ``maxiters``, ``controller``)
    given to a fixed-step solve, which would ignore them."""
    named = [k for k, v in given.items() if v is not None]
    if named:
        hint = " (to step onto tstops, give ts= a grid that contains them)" if "tstops" in named else ""
        raise ValueError(f"{', '.join(named)} control adaptive steps, but this solve takes fixed steps (dt or ts "
                         f"given){hint}; drop {'them' if len(named) > 1 else 'it'}, or drop dt for adaptive steps")


def _targets(target, seed, on_host: bool = True):
    """(problem, y0 (n, d), params, trajectories, seed, is_ensemble); a y0 and per-trajectory params on the GPU
    (CuPy arrays) copied to the host unless ``on_host`` is False."""
    if isinstance(target, Ensemble):
        if seed is not None and target.problem.model.stochastic and not (isinstance(seed, numbers.Integral)
                                                                         and seed == target.seed):
            raise ValueError(f"seed={seed!r}: an Ensemble carries its own seed ({target.seed}); build it with "
                             f"Ensemble(..., seed={seed!r}) instead")
        y0, params = _on_host(target.y0, target.params()) if on_host else (target.y0, target.params())
        return target.problem, y0, params, target.trajectories, target.seed, True
    if isinstance(target, _Problem):
        for name, v in target.params.items():
            if v.ndim:
                raise ValueError(f"parameter {name!r} is an array; per-trajectory values need an Ensemble")
        from sdekit.problem import _integer
        return target, target.y0[None, :], target.params, np.zeros(1, np.int64), \
            _integer(seed if seed is not None else 0, "seed"), False
    raise ValueError(f"solve needs an ODEProblem, SDEProblem or Ensemble, got {type(target).__name__}")


def _on_host(y0, params):
    """y0 and params as host arrays (CuPy arrays copied, numpy ones as they are)."""
    return np.asarray(host(y0)), {k: host(v) for k, v in params.items()}


@dataclass
class Plan:
    """A validated, compiled solve: ``kernel.run(inputs, chunk)`` for any chunk of the trajectories
    (the unit dask ships), :meth:`solution` assembles a RawResult of all of them."""

    kernel: object
    inputs: RunInput
    method: str
    backend: str
    ensemble: bool
    backwards: bool = False      # solved in reversed time s = -t: the saved times are -s
    time_map: object = None      # solved in u = U(t) (a linear part ℓ(t)·I): the saved times are T(u)

    @property
    def n(self) -> int:
        return self.inputs.y0.shape[1]

    def solution(self, raw) -> Solution:
        y = raw.saved.transpose(2, 0, 1)          # numpy, or CuPy when a GPU kernel left it there
        stats = {name: int(v) for name, v in zip(STATS, raw.stats.sum(axis=1))}
        per_trajectory = dict(zip(STATS, np.asarray(raw.stats, dtype=np.int64))) if self.ensemble else None
        times = -raw.times if self.backwards else raw.times
        if self.time_map is not None:
            times = np.asarray(self.time_map(times), dtype=float)
        return Solution.from_codes(times, y if self.ensemble else y[0], raw.retcodes, self.ensemble,
                                   stats=stats, method=self.method, backend=self.backend,
                                   trajectory_stats=per_trajectory)


def solve(target, method: str, dt=None, **options) -> Solution:
    """Integrate ``target`` (problem or Ensemble) with ``method``.

    Fixed steps when ``dt`` is given (equal steps; a shorter last one if dt does not divide the span)
    or ``ts`` (the step times, t0 ... t1, any monotone grid); adaptive steps, one step size per
    trajectory, when ``dt`` is None or ``rtol``/``atol`` are given (``dt`` is then the first step;
    default: Hairer's initial step).  Adaptive options: ``rtol``, ``atol`` (scalars or one per
    component; defaults 1e-3/1e-6 for ODEs, 1e-2/1e-2 for SDEs), ``controller`` "I" | "PI" | "PID",
    ``dtmin``, ``dtmax``, ``maxiters`` (attempted steps per trajectory), ``tstops`` (times stepped
    onto exactly).  ``saveat``: fixed steps — times on the grid, or "steps" for every step (default:
    every step of a single problem, (t0, t1) for ensembles; a warning before saving more than
    $SDEKIT_MEMORY_BUDGET_GB, default 1 GiB); adaptive ODEs — any times, by the method's continuous
    extension (DP5, Tsit5) or cubic Hermite (default: every accepted step of a single problem, (t0, t1)
    for ensembles); adaptive SDEs and exponential methods (whose steps may far outgrow L's time scale, where
    an interpolant is not accurate) step onto them exactly.

    A ``tspan`` with t1 < t0 integrates backwards in time: ``dt``, ``dtmin``, ``dtmax`` stay step
    magnitudes, ``ts``/``saveat``/``tstops`` decrease, and an SDE is the reverse-time equation
    dy = f dt + g dW̄ (dt < 0) driven by a Brownian motion in s = −t (:func:`brownian_tree`).

    ``backend``: "numba" (default: the fused, multi-threaded ensemble kernel; adaptive, every
    trajectory is a lane with its own steps) or "numpy" (the vectorised reference that runs the
    same step scheme and the same step control; no compile, so quicker for a few small solves).
    ``seed`` (single SDE problems; ensembles carry their own).  ``dtype``: np.float64 or
    np.float32.  Every SDE solve of a problem, any dt or adaptive, reads the same Brownian path
    (:func:`brownian_tree`).  ``progress=True``: a tqdm bar (numba: trajectories whose blocks are
    done; numpy: time steps, or the slowest lane's time when adaptive); off, it costs nothing.

    Chunked solves of an Ensemble (:mod:`sdekit.distributed`), bit for bit the same result:
    ``chunk_size`` trajectories at a time, here or with ``distributed=client`` (a
    ``dask.distributed.Client``; True: a new LocalCluster) on a cluster (``retries`` per chunk,
    default 2); ``reduction="moments"`` (or a ``sdekit.distributed.Reduction``) returns combined
    statistics instead of the states; ``store=PATH`` streams the states to disk, resumable
    (:mod:`sdekit.store`: zarr when installed, else a numpy memmap; ``store_format`` chooses);
    ``memory_limit`` (bytes) streams them to a temporary store when larger.

    Diffusion samplers (``sk.diffusion.SAMPLERS``: "ddim", "dpmsolver++2m", "unipc2-bh2", ...; EDM's Euler/Heun
    as "edm-euler"/"edm-heun") solve the models of ``sk.diffusion.probability_flow`` / ``reverse_sde``
    on ``ts`` (:func:`sdekit.diffusion_models.solve_sampler`).
    """
    from .diffusion_models import sampler_name, solve_sampler
    from .fields import FieldProblem, route, solve_field
    if sampler_name(method) is not None:           # a diffusion sampler on a probability-flow / reverse-SDE model
        return _on_device(target, solve_sampler(target, method, dt, **options))
    if isinstance(target, FieldProblem):          # an array state: the array-level driver (sdekit.fields)
        return solve_field(target, method, dt, **options)
    routed = route(target, method, dt, options)    # a large dense L: the array path by default
    if routed is not None:
        return routed
    _check_options("solve", options, CHUNKED_OPTIONS)
    if options.get("distributed") not in (None, False) or any(
            options.get(key) is not None for key in CHUNKED_OPTIONS if key not in ("distributed", "retries", "store_format")):
        from .distributed import solve_chunked
        return _on_device(target, solve_chunked(target, method, dt, **options))
    from .distributed import check_options       # used only when chunked, checked always
    check_options(options.pop("retries", 2), options.pop("store_format", "auto"))
    p = plan(target, method, dt, **options)
    return _on_device(target, p.solution(p.kernel.run(p.inputs, Chunk(0, p.n))))


def _on_device(target, sol):
    """CuPy / torch CUDA inputs: the solution's states come back on the device (a CuPy array: as backend="cuda"
    left them, or moved from the host once); a store's memory-mapped states and reductions stay where they are."""
    from sdekit.kernels.cuda_arrays import is_cuda_array, to_device
    if getattr(target, "on_device", False) and isinstance(sol, Solution) and isinstance(sol.y, np.ndarray) \
            and not isinstance(sol.y, np.memmap) and not is_cuda_array(sol.y):    # a GPU kernel left it there
        sol.y = to_device(sol.y)
    return sol


#: keywords of earlier versions, and why they went
_REMOVED = {"brownian": "every solve now reads the one Brownian tree on [t0, t0 + T], T the power of ten >= t1 - t0, "
                        "and every grid dt = T/(2^a 5^b) (0.01, 0.005, 2^-7, ...) walks it at about two nodes per step "
                        "(brownian='steps' was the fast path of 0.1)"}


#: solve's keywords beyond plan's: chunked solves, here or on dask (sdekit.distributed, sdekit.store)
CHUNKED_OPTIONS = ("distributed", "chunk_size", "reduction", "retries", "store", "store_format", "memory_limit")


def _check_options(fn: str, options: dict, extra=()):
    """A misspelt keyword names the valid ones (and the closest), not ``plan()``'s signature."""
    import inspect as _inspect
    from .problem import unknown_keyword
    valid = [k for k in _inspect.signature(plan).parameters if k != "target"] + list(extra)
    for key in options:
        if key in _REMOVED:
            from .problem import KeywordError
            raise KeywordError(f"{fn}() no longer takes {key!r}: {_REMOVED[key]}")
        if key not in valid:
            raise unknown_keyword(fn, {key: None}, valid)


def plan(target, method: str, dt=None, *, ts=None, backend: str | None = None, saveat=None, dtype=np.float64,
         seed: int | None = None, progress: bool = False, adaptive: bool | None = None, rtol=None, atol=None,
         controller: str | None = None, dtmin: float | None = None, dtmax: float | None = None,
         maxiters: int | None = None, tstops=None) -> Plan:
    """Validate the inputs and compile the kernel of ``solve(target, method, dt, ...)`` (same arguments)
    without running it: a :class:`Plan` whose kernel runs any chunk of the trajectories."""
    problem, Y0, params, trajectories, seed, is_ensemble = _targets(target, seed, on_host=False)
    process = getattr(problem.model, "diffusion_process", None)
    if process is not None:       # a diffusion model: α, σ are meant on the schedule's t_range only
        from .sampling import check_start
        check_start(process.schedule, max(problem.tspan), "tspan")
    time_map = None
    if problem.model.form.linear_time is not None:    # L = ℓ(t)·I: solved in u = U(t) (codegen.analysis.time_changed)
        problem, ts, dt, saveat, tstops, time_map = _time_changed(problem, method, dt, ts, saveat, tstops, adaptive,
                                                                  rtol, atol, dtmin, dtmax)
    backwards = problem.backwards
    if backwards:     # integrate the reversed-time model forward in s = -t (codegen.analysis.time_reversed)
        problem = problem.time_reversed()
        saveat, tstops, ts = (_reversed_times(x) for x in (saveat, tstops, ts))
    model = problem.model
    m = get_method(method)
    adaptive = step_control(m, dt, ts, adaptive, rtol, atol)
    if not adaptive:
        refuse_adaptive_options(tstops=tstops, dtmin=dtmin, dtmax=dtmax, maxiters=maxiters, controller=controller)
    if backend is not None and not isinstance(backend, str):
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    backend = _backend(model.form, backend)
    if backend != "cuda":      # y0 and per-trajectory params on the GPU stay there for backend="cuda" alone
        Y0, params = _on_host(Y0, params)
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype not in (np.float64, np.float32):
        raise ValueError(f"dtype must be np.float64 or np.float32, got {dtype!r}")
    if m.stochastic and not isinstance(problem, SDEProblem):
        raise ModelError(f"{m.name} is an SDE method but the problem is an ODEProblem")
    if adaptive and m.phi_products and model.form.linear_structure == "dense":
        raise ModelError(f"{m.name}: its operators multiply φ functions (φ_j φ_k), which adaptive steps do not "
                         "evaluate per trajectory for a dense L; give dt for fixed steps")
    grid = None if adaptive else time_grid(problem.tspan, dt) if ts is None else user_grid(problem.tspan, ts)
    saved_steps = None if adaptive else save_steps(grid, saveat, backwards, time_map)
    if saved_steps == []:
        raise ValueError("saveat is empty: nothing would be saved")
    if isinstance(saveat, str) and saveat == "steps":
        if adaptive and is_ensemble:
            raise ValueError("saveat='steps' (every accepted step) is for single problems: ensemble lanes take "
                             "different steps; give saveat times")
        saveat = None if adaptive else saveat
    if saved_steps is not None and saveat is None and is_ensemble:
        saved_steps = [0, len(grid.times) - 1]       # ensembles save their endpoints unless saveat says more
    nsaved = len(saved_steps) if saved_steps is not None else np.size(saveat) if saveat is not None else 2
    _check_memory(nsaved * Y0.shape[0] * Y0.shape[1] * np.dtype(dtype).itemsize, nsaved, Y0.shape[0])
    opts = None if not adaptive else adaptive_options(m, problem, model.form.dim, is_ensemble, dt, rtol, atol,
                                                      controller, dtmin, dtmax, maxiters, saveat, tstops, dtype)
    scheme, kernel = compile_kernel(model, m, backend, dtype, adaptive)
    form = kernel_form(model, m)[0]
    # a copy: writable and C-contiguous whatever the input (a read-only view compiled a second signature); on the
    # GPU for a CuPy y0 (backend="cuda")
    inp = RunInput(y0=array_module(Y0).array(Y0.T, dtype=dtype, order="C"), tspan=problem.tspan,
                   params={k: (v.astype(dtype) if v.ndim else dtype.type(v)) for k, v in params.items()},
                   nets={name: check_weights(form.nets[name], w, dtype) for name, w in problem.nets.items()},
                   structure=form.linear_structure, Lval=_linear_value(model, form, scheme, params),
                   op_specs=_operator_specs(form, scheme), noise=_noise(model, scheme, problem, params),
                   seed=seed, trajectories=np.asarray(trajectories, np.int64), grid=grid, save_steps=saved_steps,
                   opts=opts, progress=progress, device_output=bool(getattr(target, "on_device", False)))
    return Plan(kernel, inp, m.name, backend, is_ensemble, backwards, time_map)


def _time_changed(problem, method, dt, ts, saveat, tstops, adaptive, rtol, atol, dtmin, dtmax):
    """A problem whose linear part is ℓ(t)·I in the time u = U(t) (:meth:`ODEProblem.time_changed`), with the
    solve's times in u: a fixed-step grid (``dt`` or ``ts``, in t) as its image U(ts), ``saveat``/``tstops`` too,
    an adaptive first step ``dt`` scaled by |ℓ(t0)|; ``dtmin``/``dtmax`` (t-steps with no fixed u-size) refused."""
    t0, t1 = problem.tspan
    fixed = not step_control(get_method(method), dt, ts, adaptive, rtol, atol)
    changed, U, T = problem.time_changed()
    if fixed and ts is None:
        sign = 1.0 if t1 > t0 else -1.0
        ts = sign * time_grid((sign * t0, sign * t1), dt).times
    if fixed:
        ts, dt = np.asarray(U(np.asarray(user_grid(problem.tspan, ts).times if t1 > t0 else
                                         -user_grid((-t0, -t1), -np.asarray(ts, dtype=float)).times)), dtype=float), None
    else:
        if dtmin is not None or dtmax is not None:
            raise ValueError("dtmin/dtmax are not supported with a t-dependent linear part ℓ(t)·I (its adaptive steps are "
                             "taken in u = ∫ℓ dt); drop them")
        if dt is not None:
            dt = float(dt) * abs(problem.model.linear_time_at(t0))
    saveat, tstops = (x if x is None or isinstance(x, str) else np.asarray(U(np.asarray(x, dtype=float)), dtype=float)
                      for x in (saveat, tstops))
    return changed, ts, dt, saveat, tstops, T


def step_control(m, dt, ts, adaptive, rtol, atol) -> bool:
    """Whether a solve with method ``m`` steps adaptively (no dt/ts, or rtol/atol, unless ``adaptive`` says),
    ValueError for options that contradict each other or the method."""
    if ts is not None and dt is not None:
        raise ValueError("give either dt (equal steps) or ts (the step times), not both")
    if ts is not None and (adaptive or rtol is not None or atol is not None):
        raise ValueError("ts gives fixed steps; drop rtol/atol/adaptive, or give no ts for adaptive steps")
    fixed = dt is not None or ts is not None
    adaptive = (not fixed or rtol is not None or atol is not None) if adaptive is None else bool(adaptive)
    if adaptive and not m.adaptive:
        names = ", ".join(x.name for x in CATALOGUE if x.adaptive and x.stochastic == m.stochastic)
        raise ValueError(f"{m.name} has no embedded error estimate, so it cannot adapt its steps: give dt for "
                         f"fixed steps, or use one of {names}")
    if not adaptive and not fixed:
        raise ValueError(f"give dt (or ts) for fixed steps with {m.name}")
    return adaptive


def _reversed_times(x):
    """Times of a backwards problem in the reversed time s = −t (strings and None as they are)."""
    if x is None or isinstance(x, str):
        return x
    try:
        return -np.asarray(x, dtype=float)
    except (TypeError, ValueError):
        return x            # not numbers: the validation names it


def memory_budget() -> float:
    """Bytes of saved states above which ``solve`` warns before allocating them: $SDEKIT_MEMORY_BUDGET_GB
    (default 1 GiB)."""
    text = os.environ.get("SDEKIT_MEMORY_BUDGET_GB", "1")
    try:
        gb = float(text)
    except ValueError:
        gb = math.nan
    if not gb > 0:
        raise ValueError(f"SDEKIT_MEMORY_BUDGET_GB must be a number of GiB > 0, got {text!r}")
    return gb * 2**30


def _check_memory(nbytes: int, nsaved: int, n: int, stacklevel: int = 4):
    """Warn when the saved states of a solve take more than :func:`memory_budget`."""
    if nbytes > memory_budget():
        import warnings
        warnings.warn(f"this solve saves {nsaved} states of {n} trajectories: sol.y will take {_size(nbytes)} "
                      f"(more than SDEKIT_MEMORY_BUDGET_GB = {memory_budget() / 2**30:g}); pass saveat= to save fewer "
                      "times, or keep them on disk (store=, or memory_limit=) or reduce them (reduction=)",
                      stacklevel=stacklevel)


def _size(nbytes: float) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"


def _linear_value(model, form, scheme, params):
    """L in its runtime layout (None when the scheme does not use it), from the params: on the GPU (a CuPy array)
    when per-trajectory params are there — the lambdified entries' numpy ufuncs dispatch to CuPy — else on the host.
    ``form``: the kernel's (:func:`kernel_form`; L zero when its kernels print L's entries)."""
    if not scheme.needs_linear or form.linear_structure == "zero":
        return None
    if form.linear is None:
        src = form.linear_numeric
    else:
        if "linear" not in model._host:
            model._host["linear"] = linear_entries(form)
        try:       # (host values as numpy scalars: CuPy takes those among its arrays, not 0-d numpy arrays)
            src = model._host["linear"]({k: v[()] if isinstance(v, np.ndarray) else v for k, v in params.items()})
        except (TypeError, ValueError, AttributeError, NotImplementedError):
            # a function of the entries CuPy does not take (a Piecewise's select): computed on the host (n values read)
            src = model._host["linear"]({k: host(v) for k, v in params.items()})
    Lval = linear_value(form.linear_structure, src, form.dim)
    xp = array_module(Lval)
    if not bool(xp.all(xp.isfinite(Lval))):
        raise ValueError(f"the linear part L = {model.linear} has non-finite entries for these parameters")
    return Lval


def _noise(model, scheme, problem, params):
    """The Brownian noise of an SDE solve (with G itself when the scheme samples the stochastic convolution)."""
    form = model.form
    if not form.stochastic:
        return None
    G = None
    if scheme.needs_zeta:
        if "diffusion" not in model._host:
            model._host["diffusion"] = additive_diffusion(form)
        reads = {p.name for p in form.diffusion.free_symbols}       # on the host: the params G reads are copied
        values = {k: host(v) if k in reads else v for k, v in params.items()}
        G = model._host["diffusion"](values, float(problem.tspan[0]))
        if not np.all(np.isfinite(G)):
            raise ValueError(f"the diffusion G = {list(form.diffusion)} is non-finite for these parameters")
    return Noise(form.noise_dim, form.noise, G)


def _operator_specs(form, scheme) -> dict:
    """What the runtime evaluates per step size: name -> ("phi", poly) | ("residual", layout)."""
    return {name: (("phi", op.poly) if not isinstance(op, ConvolutionResidual)
                   else ("residual", operator_layout(form, op)))
            for name, op in scheme.all_operators().items()}


def adaptive_options(m, problem, d, is_ensemble, dt, rtol, atol, controller, dtmin, dtmax, maxiters, saveat,
                     tstops, dtype=np.float64) -> adaptive_driver.Options:
    """Validated options of an adaptive solve (ValueError naming the bad one); ``controller`` None: "PI",
    ``maxiters`` None: 100 000.  An ``rtol`` in (0, ε) of ``dtype`` is raised to ε with a warning (no step of that
    float type can meet it: such a float32 solve ran to MaxIters; scipy's solve_ivp raises rtol to 100 ε)."""
    t0, t1 = problem.tspan
    controller = "PI" if controller is None else controller
    maxiters = 100_000 if maxiters is None else maxiters
    default_rtol, default_atol = (1e-2, 1e-2) if m.stochastic else (1e-3, 1e-6)
    tol = {}
    for name, v, default in (("rtol", rtol, default_rtol), ("atol", atol, default_atol)):
        try:
            a = np.asarray(default if v is None else v, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a non-negative number or an array of {d}, got {v!r}") from None
        if a.ndim > 1 or (a.ndim == 1 and a.shape != (d,)) or not np.all(np.isfinite(a)) or np.any(a < 0):
            raise ValueError(f"{name} must be a non-negative number or an array of {d}, got {v!r}")
        tol[name] = np.broadcast_to(a, (d,)).reshape(d, 1)
    if not np.all(tol["rtol"] + tol["atol"] > 0):
        raise ValueError("rtol + atol must be > 0 for every component")
    floor = np.finfo(dtype).eps
    small = (tol["rtol"] > 0) & (tol["rtol"] < floor)      # rtol = 0: absolute control, the user's atol
    if np.any(small):
        import warnings
        warnings.warn(f"rtol below the {np.dtype(dtype).name} rounding unit cannot be met: raised to {floor:.3g}",
                      stacklevel=4)
        tol["rtol"] = np.where(small, floor, tol["rtol"])
    for name, v in (("dt", dt), ("dtmin", dtmin), ("dtmax", dtmax)):
        real = (isinstance(v, numbers.Real) and not isinstance(v, bool)) or (
            isinstance(v, np.ndarray) and v.ndim == 0 and v.dtype.kind in "iuf")   # not a list, string or bool
        if v is not None and not (real and np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be finite and > 0, got {v!r}")
    if dtmin is not None and dtmax is not None and dtmin > dtmax:
        raise ValueError(f"dtmin ({dtmin}) must not exceed dtmax ({dtmax})")
    if not isinstance(maxiters, (int, np.integer)) or isinstance(maxiters, bool) or maxiters < 1:
        raise ValueError(f"maxiters must be an integer >= 1, got {maxiters!r}")
    order = (m.strong_order + 0.5) if m.stochastic else m.embedded_order + 1
    ctrl = adaptive_driver.controller(str(controller), order, stochastic=m.stochastic)

    def times(x, what):
        ts = np.atleast_1d(np.asarray(x, dtype=float))
        if ts.ndim != 1 or not np.all(np.isfinite(ts)) or np.any(np.diff(ts) <= 0):
            raise ValueError(f"{what} must be a 1-d array of finite times, increasing (decreasing when tspan runs "
                             "backwards)")
        if ts.size and (ts[0] < t0 or ts[-1] > t1):
            raise ValueError(f"{what} times must lie between t0 and t1 of tspan")
        return ts
    save = None if saveat is None else times(saveat, "saveat")
    if save is None and is_ensemble:
        save = np.array([t0, t1])
    if save is not None and save.size == 0:
        raise ValueError("saveat is empty: nothing would be saved")
    return adaptive_driver.Options(
        rtol=tol["rtol"], atol=tol["atol"], controller=ctrl, order=order, dt0=dt, dtmin=dtmin or 0.0,
        dtmax=dtmax or (t1 - t0), maxiters=int(maxiters), save_times=save,
        tstops=np.empty(0) if tstops is None else times(tstops, "tstops"),
        dense=not m.stochastic and not m.exact_linear)    # else the steps land on the save times


def inspect(model, method: str, backend: str | None = None, dtype=np.float64, adaptive: bool = False) -> str:
    """The generated source that ``solve`` runs for ``model`` and ``method`` on ``backend`` (default: what
    ``solve`` picks — the Numba kernel, or the array path for a model it routes there; ``adaptive``: the
    kernel with per-trajectory step control)."""
    from .diffusion_models import network_source, sampler_name
    from .fields import COMPILED_FORCING_OPERATIONS, FieldODE, FieldProblem, compiled_runs, field_source, routed_model
    from .model import ODE, SDE
    target = model.problem.model if isinstance(model, Ensemble) else getattr(model, "model", model)
    if sampler_name(method) is not None and getattr(target, "diffusion_process", None) is not None:
        return (f"# {method}: sdekit.sampling's update on the host (fused per step), the network evaluated on the "
                f"batch by this module's rhs:\n{network_source(target)}")
    if isinstance(model, (FieldODE, FieldProblem)):   # fields: the compiled kernel, or the numpy driver and N
        field_model = getattr(model, "model", model)
        source = field_source(field_model, method, adaptive, backend)
        if compiled_runs(field_model, backend, method, adaptive):      # N is in the compiled kernel
            return source
        return f"{source}\n\n# N(u, t) on the grid:\n{field_model.source()}"
    if backend is None:
        array = routed_model(getattr(model, "model", model), method)
        if array is not None:
            return ("# solve() runs this model on the array path (sdekit.fields.route: a finite dense L of dimension "
                    ">= 64; the compiled field kernel where L has an eigenbasis, N at most "
                    f"{COMPILED_FORCING_OPERATIONS} operations and the method needs no Jacobian); "
                    "backend= keeps the per-trajectory kernels\n"
                    f"{field_source(array, method, adaptive)}")
    target = model.problem.model if isinstance(model, Ensemble) else getattr(model, "model", model)
    if not isinstance(target, (ODE, SDE)):
        raise ValueError(f"inspect needs a sdekit ODE/SDE, problem or Ensemble, got {type(model).__name__}")
    header = ""
    if target.form.linear_time is not None:       # ℓ(t)·I: the kernel of the model in u = U(t)
        problem = model.problem if isinstance(model, Ensemble) else model if isinstance(model, _Problem) else None
        branch = target.time_change_branch(problem.tspan) if problem is not None else _default_branch(target)
        sign, U, T = target.time_change_branches()[branch]
        target = target.changed_model(branch)
        header = (f"# solved in u = U(t) = {U}, t = T(u) = {T} (printed as t): the linear part ℓ(t)·I made constant "
                  f"(codegen.analysis.time_changed){'' if problem else '; solve picks the inverse valid on its tspan'}\n")
    return header + scheme_and_source(target, get_method(method), _backend(target.form, backend), dtype, adaptive)[1]


def _default_branch(model) -> int:
    """The time-change branch ``inspect`` shows for a model without a tspan: the one valid on (0, 1), else the first."""
    try:
        return model.time_change_branch((0.0, 1.0))
    except ValueError:
        return 0


def _backend(form, backend) -> str:
    """The backend a solve of ``form`` runs on: ``backend``, or by default Numba — numpy for models with
    ``sdekit.External`` networks, which only the host can call (a ModelError for any other backend)."""
    from sdekit.codegen.neural import externals_in
    externals = externals_in(form.nets)
    backend = (backend or ("numpy" if externals else "numba")).lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {BACKENDS}")
    if externals and backend != "numpy":
        raise ModelError(f"the External network(s) {externals} are called by the host once per stage: backend='numpy' "
                         f"(the default for such models), not {backend!r}")
    return backend
