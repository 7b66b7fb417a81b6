"""A schedule's probability-flow ODE and reverse SDE as sdekit models, and the samplers through ``solve``
(issue 16).

:func:`probability_flow` and :func:`reverse_sde` write, for a symbolic schedule (``sdekit.diffusion``) and a
network given as a sympy expression of the states and ``sk.t`` (an ``sk.MLP`` or ``sk.External`` call, or a
closed form), the drifts of Song et al. (2021, ICLR, eqs. (6), (13)) with ∇log p_t = −ε/σ:

    probability flow   dx/dt = f x + g²/(2σ) ε(x, t)
    reverse SDE        dx = (f x + g²/σ ε(x, t)) dt + g dW̄     (solved from t = T down, dt < 0)

with ε the network's output converted exactly from its prediction (x = αx̂ + σε; v = αε − σx̂; flow
u = ε − x̂).  They are ordinary sdekit models: every catalogue method solves them (Tsit5 on the Numba
kernel, the MLP in the kernel), and ``solve(problem, sampler, ts=...)`` with a sampler of
``sdekit.sampling`` (DDIM, DPM-Solver(++), UniPC, DEIS, PNDM, ...) runs that sampler on the model's
schedule and network: the network evaluated on the whole batch by the numpy backend (an MLP as batched
matrix products, an External once per call), each step's update fused (``sampling.Lazy``).  The SDE
samplers (and DDIM with η > 0) read their noise from the problem's Brownian tree, z_i = ΔW_i/√|Δt_i| over
the grid — the increments an EM solve of the reverse SDE on the same grid reads — so a sampler and a
catalogue SDE method share the Brownian path and converge to the same solution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sympy as sp

from sdekit.codegen.errors import ModelError
from sdekit.kernels.cuda_arrays import host, like
from sdekit.sampling import ALIASES

#: what ``solve(problem, sampler, ...)`` takes besides the problem and sampler
SAMPLER_OPTIONS = ("ts", "dt", "seed", "backend", "lower_order_final", "eta", "thresholding", "sample_max_value",
                   "warmup")


@dataclass(frozen=True)
class DiffusionProcess:
    """What a diffusion model was built from: its ``schedule``, the ``network`` output (sympy Matrix of the
    states and t; guided, when the model was given ``uncond``), the network's ``prediction`` ("eps", "x0", "v",
    "flow"), ``kind`` ("probability-flow" or "reverse-sde") and the ``mean`` μ of a mean-reverting SDE (or None)."""

    schedule: object
    states: sp.Matrix
    network: sp.Matrix
    prediction: str
    kind: str
    mean: tuple | None = None


def _process(schedule, x, network, prediction, uncond, guidance_scale, mean):
    """(states, the guided network, ε of the process in z = x − μ, μ as a tuple or None), checked: classifier-free
    guidance u + w (c − u) in the network's prediction (Ho & Salimans 2022; ``guidance_scale`` a number or a param),
    and for a mean-reverting SDE the VP-form process of z = x − μ (methods.md §2.7: a data prediction shifted by μ)."""
    x, network = _checked(schedule, x, network, prediction)
    if (uncond is None) != (guidance_scale is None):
        raise ValueError("classifier-free guidance needs both uncond= (the unconditional network, same prediction) and "
                         "guidance_scale= (w: a number or an sk.params symbol)")
    if uncond is not None:
        _, uncond = _checked(schedule, x, uncond, prediction)
        network = uncond + sp.sympify(guidance_scale) * (network - uncond)
    mu = None
    if mean is not None:
        mu = sp.Matrix([sp.nsimplify(m) if isinstance(m, (int, float)) else sp.sympify(m) for m in np.ravel(mean)])
        if mu.shape != x.shape or mu.free_symbols & set(x):
            raise ModelError(f"mean must be {len(x)} numbers (or params), not depending on the states; got {mean!r}")
    z = x if mu is None else x - mu
    out = network if mu is None or prediction != "x0" else network - mu
    return x, network, epsilon(schedule, z, out, prediction), None if mu is None else tuple(mu)


def _checked(schedule, x, network, prediction):
    from sdekit.diffusion import Schedule
    from sdekit.sampling import PREDICTIONS
    if not isinstance(schedule, Schedule):
        raise ValueError(f"{type(schedule).__name__} is not a symbolic schedule (α(t), σ(t) in sympy): build the model from "
                         "one of sk.diffusion.vp_linear, vp_cosine, vp, sub_vp, ve, edm, flow_matching, mean_reverting; "
                         "a discrete schedule samples with sk.diffusion.sample")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    x = sp.Matrix(x)
    try:
        network = sp.Matrix(network)
    except (TypeError, ValueError, sp.SympifyError):
        raise ModelError(f"the network must be a sympy vector (e.g. net(sp.Matrix([*x, sk.t]))), got {network!r}") from None
    if network.shape != x.shape:
        raise ModelError(f"the network's output has shape {network.shape}; the states {x.shape}")
    return x, network


def epsilon(schedule, x, out, prediction: str) -> sp.Matrix:
    """The noise prediction ε of a network output ``out`` in ``prediction``, exactly (x = αx̂ + σε;
    v = αε − σx̂; flow u = ε − x̂, so x̂ = (x − σu)/(α + σ))."""
    a, s = schedule.alpha, schedule.sigma
    if prediction == "eps":
        return out
    if prediction == "x0":
        return (x - a * out) / s
    if prediction == "v":
        return (s * x + a * out) / (a**2 + s**2)
    return out + (x - s * out) / (a + s)


def probability_flow(schedule, x, network, prediction: str = "eps", *, uncond=None, guidance_scale=None, mean=None):
    """The probability-flow ODE dx/dt = f x + g²/(2σ) ε(x, t) of ``schedule`` (an ``sk.ODE``), ε the network
    ``network`` (sympy, in the states ``x`` and ``sk.t``) converted from ``prediction``.  Its linear part is
    f(t)·I where sympy inverts log α(t) in closed form (VP, sub-VP, cosine, flow matching: the catalogue's
    exponential methods then take it exactly, in u = ∓log α), else f x is in the drift.  Solve it from the
    schedule's largest time down (tspan (T, t_min)) with any catalogue method, or with a sampler:
    ``sk.solve(problem, "dpmsolver++2m", ts=sk.diffusion.timesteps(schedule, 10))``."""
    from sdekit.model import ODE
    x, network, eps, mu = _process(schedule, x, network, prediction, uncond, guidance_scale, mean)
    shift = sp.zeros(len(x), 1) if mu is None else -schedule.f * sp.Matrix(mu)      # f (x − μ) = f x − f μ
    forcing = (schedule.g2 / (2 * schedule.sigma)) * eps + shift
    model = None
    if schedule.f != 0:                # f(t)·I as the linear part: solved exactly in u = ∓log α (time_changed)
        from sdekit.codegen.analysis import time_change_branches
        try:
            time_change_branches(schedule.f)
            model = ODE(x, linear=schedule.f * sp.eye(len(x)), nonlinear=forcing)
            if model.form.linear_time is not None:                 # f(t): an inverse that holds where it is solved
                model.time_change_branch(schedule.t_range[::-1])
        except (ModelError, ValueError):   # no closed-form inverse of log α there: f(t) x in the drift
            model = None
    if model is None:
        model = ODE(x, schedule.f * x + forcing)
    model.diffusion_process = DiffusionProcess(schedule, x, network, prediction, "probability-flow", mu)
    return model


def reverse_sde(schedule, x, network, prediction: str = "eps", *, uncond=None, guidance_scale=None, mean=None):
    """The reverse-time SDE dx = (f x + g²/σ ε(x, t)) dt + g dW̄ of ``schedule`` (an ``sk.SDE`` with diagonal
    noise; Anderson 1982, Song et al. 2021 eq. (6)); solved from t = T down (tspan (T, t_min)) it samples
    the data distribution — with SRA1/SETD1/EM, or with the SDE samplers (``"sde-dpmsolver++2m"``, DDIM η > 0).
    ``uncond``, ``guidance_scale``, ``mean``: as :func:`probability_flow`."""
    from sdekit.model import SDE
    x, network, eps, mu = _process(schedule, x, network, prediction, uncond, guidance_scale, mean)
    z = x if mu is None else x - sp.Matrix(mu)
    g = sp.sqrt(schedule.g2)
    model = SDE(x, drift=schedule.f * z + (schedule.g2 / schedule.sigma) * eps, diffusion=g, noise="diagonal")
    model.diffusion_process = DiffusionProcess(schedule, x, network, prediction, "reverse-sde", mu)
    return model


def sampler_name(method) -> str | None:
    """The ``sdekit.sampling`` name of ``method`` when ``solve`` runs it as a sampler, else None (a catalogue
    method: "Euler"/"Heun" are the catalogue's; EDM's are "edm-euler"/"edm-heun")."""
    from sdekit.codegen.methods import _BY_NAME
    from sdekit.sampling import SAMPLERS
    if not isinstance(method, str):
        return None
    name = method.lower()
    if name in ALIASES:                # EDM's "edm-euler"/"edm-heun" ("euler" is the catalogue's) and DESIGN.md's names
        return ALIASES[name]
    return name if name in SAMPLERS and name not in _BY_NAME else None


def network_source(model) -> str:
    """The generated numpy module that evaluates the model's network on a batch (``rhs`` is the network;
    ``jacobian`` its forward-mode tangent pass, when it has no External network), built once per model
    (what ``sdekit inspect`` prints for a sampler)."""
    if "network_source" not in model._host:
        from sdekit.codegen.builders import build_scheme
        from sdekit.codegen.emit_numpy import emit_numpy
        from sdekit.codegen.methods import get_method
        from sdekit.codegen.neural import externals_in
        from sdekit.model import ODE
        spec = model.diffusion_process
        form = ODE(spec.states, linear=sp.zeros(len(spec.states)), nonlinear=spec.network).form
        with_jacobian = not externals_in(form.nets)                 # Exprb32's scheme has the Jacobian
        scheme = build_scheme(form, get_method("Exprb32" if with_jacobian else "Euler"))
        model._host["network_source"] = (form, emit_numpy(form, scheme, False), with_jacobian)
    return model._host["network_source"][1]


class ProblemNetwork:
    """The network of a :func:`probability_flow` / :func:`reverse_sde` problem or Ensemble, with its params and
    weights, as the batched callable ``net(x, t)`` the samplers and inversion take (x (n, d), t a number; numpy, or
    torch/CuPy arrays, read on the host and answered in their type and device),
    evaluated by :func:`network_source`'s module: an MLP as batched products, an External called once.
    ``jvp(x, t, v)``: (net(x, t), ∂net/∂x · v), exact through the generated tangent pass (None with an External
    network: Newton inversion then takes finite differences).  ``calls`` counts the evaluations."""

    def __init__(self, target):
        from sdekit.kernels.cache import load_module
        from sdekit.nets import check_weights
        from sdekit.solve import _targets
        problem, _, self.params, _, _, _ = _targets(target, None)
        model = problem.model
        if getattr(model, "diffusion_process", None) is None:
            raise ModelError("sk.diffusion.network needs a problem of sk.diffusion.probability_flow or reverse_sde")
        self.process, self.calls = model.diffusion_process, 0
        self.module = load_module(network_source(model), "numpy")
        form, _, with_jacobian = model._host["network_source"]
        self.nets = {name: check_weights(form.nets[name], w, np.float64) for name, w in problem.nets.items()}
        if not with_jacobian:
            self.jvp = None

    def _states(self, x):
        x = np.asarray(host(x), dtype=float)
        if x.ndim != 2 or x.shape[1] != len(self.process.states):
            raise ValueError(f"the network takes states of shape (n, {len(self.process.states)}), got {x.shape}")
        return np.ascontiguousarray(x.T)

    def __call__(self, x, t):
        self.calls += 1
        return like(np.asarray(self.module.rhs(self._states(x), float(t), self.params, self.nets, None)).T, x)

    def jvp(self, x, t, v):
        y = self._states(x)
        d = y.shape[0]
        J = self.module.jacobian(y, float(t), self.params, self.nets, None)[:d, :d]      # (d, d, n)
        self.calls += 1
        out = np.asarray(self.module.rhs(y, float(t), self.params, self.nets, None)).T
        return like(out, x), like(np.einsum("ijn,nj->ni", J, np.asarray(host(v), dtype=float)), x)


def network(target) -> "ProblemNetwork":
    """The network of a diffusion problem or Ensemble as a batched callable with its weights and params
    (:class:`ProblemNetwork`): for ``sk.diffusion.sample``, ``invert`` (Newton with exact JVPs), ``edict``, ``bdia``."""
    return ProblemNetwork(target)


def solve_sampler(target, method: str, dt=None, **options):
    """``solve(target, sampler, ts=...)`` of a :func:`probability_flow` / :func:`reverse_sde` problem or Ensemble:
    the sampler (``sdekit.sampling.sample``) on the whole batch, from tspan's t0 down to t1 over ``ts`` (or
    equal steps ``dt``).  Options: ``seed`` (single SDE problems), ``backend`` ("numpy": the network runs on
    the host), ``lower_order_final``, ``eta`` (DDIM on the reverse SDE), ``thresholding``, ``sample_max_value``,
    ``warmup`` (``sampling.sample``).
    Saves (t0, t1); ``stats["nf"]`` counts the network calls (``sk.diffusion.nfe``)."""
    from sdekit.abi import SUCCESS, UNSTABLE
    from sdekit.problem import unknown_keyword
    from sdekit.sampling import STOCHASTIC, sample
    from sdekit.solution import Solution
    from sdekit.solve import _targets, brownian_tree, time_grid, user_grid
    name = sampler_name(method)
    for key in options:
        if key not in SAMPLER_OPTIONS:
            raise unknown_keyword("solve", {key: None}, SAMPLER_OPTIONS)
    problem, Y0, params, _, seed, ensemble = _targets(target, options.pop("seed", None))
    spec = getattr(problem.model, "diffusion_process", None)
    if spec is None:
        raise ModelError(f"{method!r} is a diffusion sampler: it needs a model from sk.diffusion.probability_flow or "
                         "sk.diffusion.reverse_sde (it reads the schedule and the network from it)")
    backend = options.pop("backend", None)
    if backend not in (None, "numpy"):
        raise ModelError(f"the sampler {method!r} calls the network on the host, batched (backend='numpy'), not "
                         f"{backend!r}; the Numba/CUDA kernels solve the same model with catalogue methods")
    given = options.pop("eta", 0.0)
    try:
        eta = float(given)           # a number, a 0-d array or a tensor
    except (TypeError, ValueError):
        eta = math.nan
    if not (np.isfinite(eta) and eta >= 0):
        raise ValueError(f"eta is DDIM's noise level, a number >= 0; got eta={given!r}")
    stochastic = name in STOCHASTIC or eta > 0
    want = "reverse-sde" if stochastic else "probability-flow"
    if spec.kind != want:
        raise ModelError(f"{method!r}{' with eta > 0' if eta > 0 else ''} solves the "
                         f"{'reverse SDE' if stochastic else 'probability-flow ODE'}: build the model with "
                         f"sk.diffusion.{'reverse_sde' if stochastic else 'probability_flow'}, not "
                         f"{'probability_flow' if stochastic else 'reverse_sde'}")
    t0, t1 = problem.tspan
    if not t1 < t0:
        raise ValueError(f"a sampler runs from noise to data: tspan must decrease (t1 < t0), got {problem.tspan}")
    ts = options.pop("ts", None)
    if (ts is None) == (dt is None):
        raise ValueError(f"the sampler {method!r} takes fixed steps: give ts= (e.g. sk.diffusion.timesteps(schedule, 10, "
                         "t_start=t0, t_end=t1)) or dt, not both")
    if ts is not None:
        times = np.asarray(ts, dtype=float).ravel() if np.ndim(ts) == 1 else None
        if times is None or times.size < 2 or max(abs(times[0] - t0), abs(times[-1] - t1)) > 1e-12 * (t0 - t1):
            raise ValueError(f"ts must run from t0 = {t0} down to t1 = {t1} of tspan, got {ts!r}")
    grid = (time_grid((-t0, -t1), dt) if ts is None else user_grid((-t0, -t1), -times)).times
    times = -grid
    noise = None
    if stochastic:
        increments = brownian_tree(target, seed).increments(grid)
        noise = _sequential(((dW / np.sqrt(h)).T for (dW, _), h in zip(increments, np.diff(grid))))
    net = ProblemNetwork(target)
    mean = None
    if spec.mean is not None:                         # μ's values (it may read params): one for the whole batch
        reads = set().union(*(sp.sympify(m).free_symbols for m in spec.mean))
        if any(np.ndim(params[p.name]) for p in reads):
            raise ValueError("a mean-reverting model's sampler takes one μ for the whole ensemble: give the params "
                             f"{sorted(p.name for p in reads)} as numbers")
        values = {p: float(params[p.name]) for p in reads}
        mean = np.array([float(sp.sympify(m).subs(values)) for m in spec.mean])
    x, calls = sample(spec.schedule, net, np.array(Y0, dtype=float), times, name, spec.prediction, noise=noise, eta=eta,
                      mean=mean, **options)
    x = np.asarray(x)
    finite = np.all(np.isfinite(x), axis=1)
    codes = np.where(finite, SUCCESS, UNSTABLE)
    y = np.stack([Y0, x], axis=1)                                    # (n, 2, d)
    stats = {"nf": int(calls), "naccept": len(times) - 1, "nreject": 0}
    return Solution.from_codes(np.array([t0, t1]), y if ensemble else y[0], codes, ensemble, stats=stats,
                               method=method, backend="numpy")


def _sequential(steps):
    """A callable ``noise(i)`` over a generator read in order (the Brownian tree's increments, one step at a time)."""
    it, count = iter(steps), [0]

    def noise(i):
        if i != count[0]:
            raise RuntimeError(f"noise is read in order: step {count[0]} next, asked for {i}")
        count[0] += 1
        return next(it)
    return noise
