"""Diffusion samplers as exponential integrators in λ = log(α/σ) (methods.md §2.3–2.4), and EDM's
Euler/Heun in σ̃ = σ/α (Karras et al. 2022), on the host.

The probability-flow ODE of a schedule (``sdekit.diffusion``) with a noise network ε(x, t) is,
in λ, ``x_t = (α_t/α_s) x_s − α_t ∫ e^{−λ} ε dλ`` (noise prediction) or, with x̂ = (x − σε)/α,
``x_t = (σ_t/σ_s) x_s + σ_t ∫ e^{λ} x̂ dλ`` (data prediction): a semilinear problem whose linear
part is integrated exactly and whose φ-weights are φ_k(±h), h = λ_t − λ_s, from the kernels' one
φ (``kernels.matfun.phi_scalar``).  Each method is the recipe of its paper; DPM-Solver++(3M) uses
the exact third-order weight 2φ_3 on D2 (methods.md §1.6), ``"dpmsolver++3m-compat"`` the published
φ_3 (order 2).  UniPC-p (``"unipc{p}-bh1|bh2"``, Zhao et al. 2023) predicts with UniP-p and corrects each
point it reaches with UniC, reusing the next step's network call: order p + 1 at one call per step.
tAB-DEIS (``"deis{p}"``, Zhang & Chen 2023) integrates the Lagrange extrapolation of ε in log ρ, ρ = σ/α,
exactly, with weights whose antiderivatives sympy derives once per order.  ``"flow-euler"`` is Euler on the
straightened flow y = x/(α + σ) in s = σ/(α + σ), dy/ds = ε − x̂ (rectified-flow / flow-matching models'
velocity, ``prediction="flow"``): diffusers' FlowMatchEuler step for α = 1 − σ, any shift.  The network is any batched callable ``model(x, t)`` (numpy, torch, CuPy): the
updates are arithmetic on its arrays, so the result has the caller's type and device, and the
network is called exactly ``nfe`` times.  Each recipe runs once per (schedule, sampler, grid, options) on
placeholders, and ``sample`` replays the step program it recorded (``sdekit.traced``): per step the network
calls and one linear combination (one fused pass on large arrays).  ``sk.solve`` runs the samplers on the models
of ``sdekit.diffusion_models``.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from sdekit import traced
from sdekit.kernels.matfun import phi_scalar
from sdekit.traced import Token

#: method -> (prediction it integrates, order, network calls per step (singlestep) or 1 (multistep))
SAMPLERS = {
    "ddim": ("data", 1, 1), "dpmsolver-2": ("noise", 2, 2), "dpmsolver-3": ("noise", 3, 3), "dpmsolver-2m": ("noise", 2, 1),
    "dpmsolver++2s": ("data", 2, 2), "dpmsolver++2m": ("data", 2, 1), "dpmsolver++3m": ("data", 3, 1),
    "dpmsolver++3m-compat": ("data", 2, 1), "euler": ("noise", 1, 1), "heun": ("noise", 2, 2),
    "sde-dpmsolver++1": ("data", 1, 1), "sde-dpmsolver++2m": ("data", 1, 1), "sde-dpmsolver++3m": ("data", 1, 1),
    "sde-dpmsolver++3m-compat": ("data", 1, 1),
    **{f"unipc{p}-{b}": ("data", p + 1, 1) for p in (1, 2, 3) for b in ("bh1", "bh2")},   # UniC: one order more
    **{f"deis{p}": ("noise", p, 1) for p in (1, 2, 3)},
    "flow-euler": ("flow", 1, 1),
    "pndm": ("noise", 2, 1), "ipndm": ("noise", 2, 1),
    "rf-solver-2": ("flow", 2, 2), "fireflow": ("flow", 2, 1),
}
#: other names of samplers, taken case-insensitively with the samplers' own by :func:`sampler_method`: EDM's Euler and
#: Heun in σ as ``solve`` names them ("Euler"/"Heun" are its catalogue methods) and DESIGN.md's spellings (DPM-Solver-1
#: is DDIM: the same first-order update)
ALIASES = {"edm-euler": "euler", "edm-heun": "heun", "dpmsolver1": "ddim", "dpmsolver2": "dpmsolver-2",
           "dpmsolver3": "dpmsolver-3", "dpmsolver2m": "dpmsolver-2m", "sdedpmsolver++1": "sde-dpmsolver++1",
           "sdedpmsolver++2m": "sde-dpmsolver++2m", "sdedpmsolver++3m": "sde-dpmsolver++3m", "unipc": "unipc2-bh2"}
#: samplers of the reverse SDE: they take ``noise`` (one standard normal array like x per step)
STOCHASTIC = ("sde-dpmsolver++1", "sde-dpmsolver++2m", "sde-dpmsolver++3m", "sde-dpmsolver++3m-compat")
UNIPC = tuple(m for m in SAMPLERS if m.startswith("unipc"))
DEIS = tuple(m for m in SAMPLERS if m.startswith("deis"))
#: samplers that carry earlier network outputs from step to step
MULTISTEP = ("dpmsolver-2m", "dpmsolver++2m", "dpmsolver++3m", "dpmsolver++3m-compat") + UNIPC + DEIS + ("pndm", "ipndm")
#: how a multistep sampler takes its first step: "lower" (diffusers': first order, then more points as they come) or
#: "singlestep" (:data:`START_CALLS`)
WARMUPS = ("lower", "singlestep")
#: multistep samplers whose global order the "lower" warm-up caps — a first step of local error O(h^k) leaves
#: O(h^k) in the global error (a multistep method of order q needs starting values to O(h^q)): the first-order
#: start caps DPM-Solver++(3M) and DEIS-3 at 2 and the UniC-1-corrected start caps UniPC-3 (order 4) at 3, once
#: the first step matters (a start near α = 0, t = 1, hides it). ``warmup="singlestep"`` takes that first step by
#: this singlestep sampler of order q − 1, its first network call the multistep's own
START = {"dpmsolver++3m": "dpmsolver++2s", "deis3": "dpmsolver-2", "unipc3-bh1": "dpmsolver-3",
         "unipc3-bh2": "dpmsolver-3"}
#: the network calls of that first step (instead of one)
START_CALLS = {method: SAMPLERS[start][2] for method, start in START.items()}


def check_warmup(warmup):
    """ValueError unless ``warmup`` is one of :data:`WARMUPS`."""
    if warmup not in WARMUPS:
        raise ValueError(f"warmup must be one of {WARMUPS}, got {warmup!r}")


def sampler_method(method) -> str:
    """The SAMPLERS name of ``method`` (case-insensitive; an alias of :data:`ALIASES` resolved); ``method`` as it is
    when it names no sampler (the caller says what it takes)."""
    name = method.lower() if isinstance(method, str) else method
    return ALIASES.get(name, name)


def nfe(method: str, steps: int, warmup: str = "lower") -> int:
    """Network calls of ``method`` over ``steps`` steps: its calls per step, and one extra for PNDM (its first
    step is a pseudo improved-Euler step of two calls) and FireFlow (the first velocity); ``warmup="singlestep"``
    adds the calls of the first step's singlestep start (:data:`START_CALLS`) beyond its one (not taken on a grid of
    one step that ends at σ = 0: that step is x̂ alone, one call)."""
    check_warmup(warmup)
    start = START_CALLS.get(method, 1) - 1 if warmup == "singlestep" and steps else 0
    return steps * SAMPLERS[method][2] + (method in ("pndm", "fireflow")) + start
PREDICTIONS = ("eps", "x0", "v", "flow")


def check_start(schedule, t_start: float, what: str):
    """Warn of a time past the top of ``schedule.t_range``, where α, σ may not be meant to be read (VP-cosine's α
    reaches 0 at t = 1, past its 0.9946, and f = d log α/dt diverges: a solve from there returns garbage marked
    Success); a schedule that holds further (EDM, VE) takes a wider ``t_range=``."""
    top = schedule.t_range[1]
    if not t_start <= top + 1e-12 * max(1.0, abs(top)):
        import warnings
        warnings.warn(f"{what} starts at t = {t_start:g}, past the top of the schedule {schedule.name}'s t_range "
                      f"{schedule.t_range}, where it may not hold (VP-cosine's α reaches 0 at t = 1); start at "
                      f"t <= {top:g}, or build the schedule with a wider t_range= if it holds there", stacklevel=3)


def timesteps(schedule, n: int, spacing: str = "logSNR", t_start=None, t_end=None, rho: float = 7.0) -> np.ndarray:
    """n + 1 times from t_start (default: the schedule's largest) down to t_end (smallest):
    uniform in λ ("logSNR", DPM-Solver's default), in t ("time_uniform"), in √t ("time_quadratic"),
    or uniform in σ̃^{1/ρ}, σ̃ = σ/α = e^{−λ} ("karras": Karras et al. 2022, eq. (5), ρ = 7; diffusers'
    ``use_karras_sigmas``).  Discrete schedules (:class:`~sdekit.diffusion.DiscreteVP`) also take diffusers'
    integer timestep spacings "linspace", "leading" and "trailing" (as DPMSolverMultistep, UniPC and DEIS
    set them; DDIM's "leading" differs), timestep k at t = (k + 1)/N, then the last point at timestep 0
    (``final_sigmas_type="sigma_min"``) unless the spacing's last timestep is 0 already (then n times:
    diffusers takes an empty last step there)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of steps must be an integer >= 1, got {n!r}")
    if spacing in ("linspace", "leading", "trailing"):
        return _discrete_timesteps(schedule, int(n), spacing, t_start, t_end)
    t0 = schedule.t_range[1] if t_start is None else float(t_start)
    t1 = schedule.t_range[0] if t_end is None else float(t_end)
    check_start(schedule, t0, "timesteps")
    if spacing == "logSNR":
        lam = np.linspace(float(schedule("lam", t0)), float(schedule("lam", t1)), n + 1)
        ts = schedule.t_of_lambda(lam)
    elif spacing == "time_uniform":
        ts = np.linspace(t0, t1, n + 1)
    elif spacing == "time_quadratic":
        ts = np.linspace(math.sqrt(t0), math.sqrt(t1), n + 1) ** 2
    elif spacing == "karras":
        if not rho > 0:
            raise ValueError(f"rho must be positive, got {rho!r}")
        s_max, s_min = np.exp(-float(schedule("lam", t0))), np.exp(-float(schedule("lam", t1)))
        ramp = np.linspace(0.0, 1.0, n + 1)
        sigmas = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        ts = schedule.t_of_lambda(-np.log(sigmas))
    else:
        raise ValueError(f"spacing must be 'logSNR', 'time_uniform', 'time_quadratic' or 'karras', got {spacing!r}")
    ts[0], ts[-1] = t0, t1
    return ts


def _discrete_timesteps(schedule, n, spacing, t_start, t_end):
    """diffusers' ``set_timesteps`` (DPMSolverMultistepScheduler: no λ clipping, steps_offset 0) as times."""
    N = getattr(schedule, "t_grid", np.empty(0)).size
    if N == 0:
        raise ValueError(f"spacing {spacing!r} numbers the steps of a discrete schedule (sk.diffusion.DiscreteVP); "
                         f"{getattr(schedule, 'name', schedule)} is continuous: use 'logSNR', 'time_uniform', "
                         "'time_quadratic' or 'karras'")
    if t_start is not None or t_end is not None:
        raise ValueError(f"spacing {spacing!r} fixes its own ends (timesteps N - 1 ... 0): give no t_start/t_end")
    if n >= N:
        raise ValueError(f"{n} steps need fewer than the schedule's {N} timesteps")
    if spacing == "linspace":
        ks = np.linspace(0, N - 1, n + 1).round()[::-1][:-1]
    elif spacing == "leading":
        ks = (np.arange(0, n + 1) * (N // (n + 1))).round()[::-1][:-1]
    else:       # diffusers' np.arange(N, 0, -N/n) can hold an (n+1)-th point (timestep -1): exactly n here
        ks = (N - np.arange(n) * (N / n)).round() - 1
    ts = (ks.astype(np.int64) + 1.0) / N
    return ts if ks[-1] == 0 else np.append(ts, 1.0 / N)   # ending at timestep 0 already: no empty last step


#: arrays at least this large take the fused pass (``kernels.lincomb``); smaller ones stay eager
FUSE_MIN_SIZE = 1 << 16


class Lazy:
    """A linear combination Σ c_k a_k of arrays (numpy, or torch on the CPU), kept unevaluated: a sampler's
    step is such a combination of x and network outputs once its coefficients are numbers, so it is
    evaluated in one fused pass (``kernels.lincomb``) when the network needs x or the step is done, where
    eager arithmetic makes a pass per operation.  Products of two arrays, and types the pass does not take,
    are evaluated eagerly."""

    __array_priority__ = 1000
    __array_ufunc__ = None              # numpy defers to these operators

    #: a combination nested deeper than this is evaluated where it is used (a sampler that keeps points
    #: across steps, UniPC's corrected x, would otherwise chain its steps into ever longer sums)
    MAX_DEPTH = 16

    def __init__(self, terms):
        self.terms = terms              # [(coef, array or Lazy node)]
        self.depth = 1 + max((a.depth for _, a in terms if isinstance(a, Lazy)), default=0)
        if self.depth > self.MAX_DEPTH:
            for _, a in terms:
                if isinstance(a, Lazy) and a.depth > 1:
                    a.value()
            self.depth = 2

    @classmethod
    def of(cls, a):
        return cls([(1.0, a)])

    @staticmethod
    def _lazy(y):
        return y if isinstance(y, Lazy) else Lazy.of(y)

    def _scaled(self, c):
        return Lazy([(c, self)])            # a reference: once this node is evaluated, its value is used

    def _combined(self, other, sign):
        return Lazy([(1.0, self), (sign, self._lazy(other))])

    def _flat(self, c, acc):
        """Accumulate c times this combination into acc {id(array): [coef, array]} (nodes expanded)."""
        for k, a in self.terms:
            if isinstance(a, Lazy):
                a._flat(c * k, acc)
            elif id(a) in acc:
                acc[id(a)][0] += c * k
            else:
                acc[id(a)] = [c * k, a]

    def __add__(self, y):
        return self._combined(y, 1.0) if not _is_scalar(y) else self.value() + y

    __radd__ = __add__

    def __sub__(self, y):
        return self._combined(y, -1.0) if not _is_scalar(y) else self.value() - y

    def __rsub__(self, y):
        return self._scaled(-1.0)._combined(y, 1.0) if not _is_scalar(y) else y - self.value()

    def __mul__(self, y):
        return self._scaled(float(y)) if _is_scalar(y) else self.value() * (y.value() if isinstance(y, Lazy) else y)

    __rmul__ = __mul__

    def __truediv__(self, y):
        return self._scaled(1.0 / float(y)) if _is_scalar(y) else self.value() / (y.value() if isinstance(y, Lazy) else y)

    def __neg__(self):
        return self._scaled(-1.0)

    def value(self):
        """The combination as an array of its terms' type: one fused pass when they allow it; it then stands
        for itself (later combinations read the result, not its terms again)."""
        result = self._evaluate()
        self.terms, self.depth = [(1.0, result)], 1
        return result

    def _evaluate(self):
        acc = {}
        self._flat(1.0, acc)
        flat = [(k, a) for k, a in acc.values()]
        terms = [(k, a) for k, a in flat if k != 0.0] or flat[:1]
        if len(terms) == 1 and terms[0][0] == 1.0:
            return terms[0][1]
        if any(isinstance(a, Token) for _, a in terms):      # a traced run: record the combination
            return terms[0][1].program.combine([k for k, _ in terms], [a for _, a in terms])
        return combine([k for k, _ in terms], [a for _, a in terms])


def combine(coefs, arrays):
    """Σ c_k a_k as an array of the arrays' type: one generated CUDA kernel (CuPy, torch CUDA) or one fused Numba pass
    (numpy, CPU torch) from FUSE_MIN_SIZE numbers; below, a chain of scale-and-adds (torch: ``add_(alpha=c)``)."""
    first = arrays[0]
    torch_like = type(first).__module__.startswith("torch")
    if (first.numel() if torch_like else getattr(first, "size", 0)) >= FUSE_MIN_SIZE:
        if _cuda_fusable(arrays):       # CuPy / torch CUDA: one generated element-wise CUDA kernel
            from sdekit.kernels.cuda_arrays import fused_cuda
            return fused_cuda(list(coefs), arrays)
        fusable = _fusable(arrays)
        if fusable is not None:
            from sdekit.kernels.lincomb import fused
            out = fused(list(coefs), fusable).reshape(fusable[0].shape)
            if isinstance(first, np.ndarray):
                return out
            import torch
            return torch.from_numpy(out)
    if torch_like and all(type(a) is type(first) for a in arrays):
        total = first * coefs[0]
        for k, a in zip(coefs[1:], arrays[1:]):
            total.add_(a, alpha=k)
        return total
    total = None
    for k, a in zip(coefs, arrays):
        x = a if k == 1.0 else k * a
        total = x if total is None else total + x
    return total


def _is_scalar(y) -> bool:
    return isinstance(y, (int, float, np.floating, np.integer))


def _cuda_fusable(arrays) -> bool:
    """CUDA arrays (CuPy, or torch without autograd) of one type, float dtype, shape and device, at least
    FUSE_MIN_SIZE elements: the array-step kernel combines them (``kernels.cuda_arrays``)."""
    from sdekit.kernels.cuda_arrays import is_cuda_array
    first = arrays[0]
    if not all(is_cuda_array(a) and type(a) is type(first) for a in arrays):
        return False
    if any(getattr(a, "requires_grad", False) for a in arrays):
        return False
    size = first.numel() if hasattr(first, "numel") else first.size
    if str(first.dtype).removeprefix("torch.") not in ("float32", "float64") or size < FUSE_MIN_SIZE:
        return False
    return all(a.dtype == first.dtype and a.shape == first.shape and str(a.device) == str(first.device) for a in arrays)


def _fusable(arrays):
    """numpy views of ``arrays`` when one fused pass can combine them (numpy or CPU torch, one float dtype and
    shape, at least FUSE_MIN_SIZE elements), else None."""
    first = arrays[0]
    if isinstance(first, np.ndarray):
        views = arrays if all(isinstance(a, np.ndarray) for a in arrays) else None
    elif type(first).__module__.startswith("torch") and all(type(a) is type(first) and a.device.type == "cpu"
                                                            and not a.requires_grad for a in arrays):
        views = [a.numpy() for a in arrays]
    else:
        views = None
    if views is None or views[0].size < FUSE_MIN_SIZE or views[0].dtype not in (np.float32, np.float64):
        return None
    if any(v.dtype != views[0].dtype or v.shape != views[0].shape for v in views):
        return None
    return views


class Dual:
    """A forward-mode dual number of arrays, value + ε·tangent: the samplers' steps are arithmetic on x and
    on network outputs, so running a step on ``Dual(x, v)`` gives (step(x), ∂step/∂x · v) when the network
    has ``jvp`` (``sk.diffusion.MLPNetwork``).  Non-dual operands are constants."""

    __array_priority__ = 1000           # numpy scalars and arrays defer to these operators

    def __init__(self, value, tangent):
        self.value, self.tangent = value, tangent

    @staticmethod
    def _parts(y):
        return (y.value, y.tangent) if isinstance(y, Dual) else (y, 0.0)

    def __add__(self, y):
        v, t = self._parts(y)
        return Dual(self.value + v, self.tangent + t)

    __radd__ = __add__

    def __sub__(self, y):
        v, t = self._parts(y)
        return Dual(self.value - v, self.tangent - t)

    def __rsub__(self, y):
        return Dual(y - self.value, -self.tangent)

    def __mul__(self, y):
        v, t = self._parts(y)
        return Dual(self.value * v, self.tangent * v + self.value * t)

    __rmul__ = __mul__

    def __truediv__(self, y):
        if isinstance(y, Dual):
            return Dual(self.value / y.value, (self.tangent * y.value - self.value * y.tangent) / (y.value * y.value))
        return Dual(self.value / y, self.tangent / y)

    def __neg__(self):
        return Dual(-self.value, -self.tangent)


class Network:
    """The network as noise, data and flow predictions, converted exactly (x̂ = (x − σε)/α; v = αε − σx̂;
    flow u = ε − x̂, the velocity of rectified-flow models: x = αx̂ + σε gives x̂ = (x − σu)/(α + σ)),
    counting its calls."""

    def __init__(self, fn, prediction, schedule, uncond=None, guidance_scale: float | None = None,
                 thresholding: float | None = None, sample_max_value: float = 1.0):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if (uncond is None) != (guidance_scale is None):
            raise ValueError("classifier-free guidance needs both uncond= (the unconditional network) and "
                             "guidance_scale= (w: ε = ε_u + w (ε_c − ε_u))")
        if guidance_scale is not None and not np.isfinite(guidance_scale):
            raise ValueError(f"guidance_scale must be a finite number, got {guidance_scale!r}")
        if thresholding is not None and not 0.0 < thresholding <= 1.0:
            raise ValueError(f"thresholding is the quantile ratio of dynamic thresholding, in (0, 1]; got {thresholding!r}")
        if not sample_max_value >= 1.0:
            raise ValueError(f"sample_max_value must be >= 1, got {sample_max_value!r}")
        self.fn, self.prediction, self.schedule, self.calls = fn, prediction, schedule, 0
        self.uncond = uncond
        self.scale = None if guidance_scale is None else float(guidance_scale)       # a tensor or 0-d array's value
        self.ratio, self.sample_max = thresholding, float(sample_max_value)

    @staticmethod
    def _apply(fn, x, t):
        """``fn(x, t)``, ValueError unless it has x's shape (a numpy broadcast would hide a wrong output); a traced
        run's placeholder has no shape (its replay checks the outputs)."""
        out = fn(x, t)
        if isinstance(x, Token):
            return out
        shape = tuple(getattr(out, "shape", ()))
        if shape != tuple(x.shape):
            raise ValueError(f"the network returned an output of shape {shape} for x of shape {tuple(x.shape)}: it "
                             "must have x's shape (one prediction per sample and component)")
        return out

    def _model(self, x, t):
        """The network's output, guided: u + w (c − u) of the conditional and unconditional outputs
        (classifier-free guidance, Ho & Salimans 2022, in the network's own prediction, as diffusers
        pipelines apply it)."""
        out = self._apply(self.fn, x, t)
        if self.uncond is None:
            return out
        u = self._apply(self.uncond, x, t)
        return (1.0 - self.scale) * u + self.scale * out

    def _out(self, x, t):
        self.calls += 1
        if isinstance(x, Dual):          # a tangent pass: the network's own JVP (counted as one call)
            if self.uncond is not None or self.ratio is not None:
                raise ValueError("tangent passes (Newton inversion) do not take guidance or thresholding")
            if callable(getattr(self.fn, "jvp", None)):
                return Dual(*self.fn.jvp(x.value, t, x.tangent))
            import torch                 # a torch network: forward-mode AD (torch.func.jvp), one pass
            return Dual(*torch.func.jvp(lambda z: self.fn(z, t), (x.value,), (x.tangent,)))
        if isinstance(x, Lazy):          # sampling: the output joins the step's combination unevaluated
            xv = x.value()
            if self.uncond is None:
                return Lazy.of(self._apply(self.fn, xv, t))
            return Lazy([(self.scale, self._apply(self.fn, xv, t)),
                         (1.0 - self.scale, self._apply(self.uncond, xv, t))])
        return self._model(x, t)

    def _threshold(self, x0):
        """Dynamic thresholding of the data prediction (Saharia et al. 2022, "Imagen", §2.3; diffusers'
        ``_threshold_sample``): per sample (axis 0), s = the ``thresholding`` quantile of |x̂|, clipped to
        [1, sample_max_value]; x̂ ← clip(x̂, −s, s)/s."""
        if self.ratio is None:
            return x0
        lazy = isinstance(x0, Lazy)
        x0 = x0.value() if lazy else x0
        flat = x0.reshape(x0.shape[0], -1)
        if type(x0).__module__.startswith("torch"):
            import torch
            bound = torch.clamp(torch.quantile(flat.abs(), self.ratio, dim=1), 1.0, self.sample_max)[:, None]
            out = torch.clamp(flat, -bound, bound) / bound
        else:
            if isinstance(x0, np.ndarray):
                xp = np
            else:                          # CuPy: the same functions
                import cupy as xp
            bound = xp.clip(xp.quantile(xp.abs(flat), self.ratio, axis=1), 1.0, self.sample_max)[:, None]
            out = xp.clip(flat, -bound, bound) / bound
        out = out.reshape(x0.shape)
        return Lazy.of(out) if lazy else out

    def _as(self, want: str, x, out, a, s):
        """The network's output ``out`` at x as the noise ("eps") or data ("x0") prediction: each conversion
        written once (x = αx̂ + σε; v = αε − σx̂; flow u = ε − x̂)."""
        if self.prediction == want:
            return out
        if self.prediction == "eps":                      # want x0
            return (x - s * out) / a
        if self.prediction == "x0":                       # want eps
            return (x - a * out) / s
        if self.prediction == "flow":
            x0 = (x - s * out) / (a + s)
            return x0 if want == "x0" else out + x0
        if want == "eps":                                 # v prediction
            return (s * x + a * out) / (a * a + s * s)
        return (a * x - s * out) / (a * a + s * s)

    def _call(self, x, t):
        return self._out(x, t), float(self.schedule("alpha", t)), float(self.schedule("sigma", t))

    def noise(self, x, t):
        out, a, s = self._call(x, t)
        if self.ratio is not None:        # the thresholded data prediction's noise (diffusers' "dpmsolver" rule)
            return (x - a * self._threshold(self._as("x0", x, out, a, s))) / s
        return self._as("eps", x, out, a, s)

    def data(self, x, t):
        out, a, s = self._call(x, t)
        return self._threshold(self._as("x0", x, out, a, s))

    def flow(self, x, t):
        """u = ε − x̂: the velocity dy/ds of y = x/(α + σ) in s = σ/(α + σ) (y = (1 − s)x̂ + sε)."""
        out, a, s = self._call(x, t)
        if self.prediction == "flow":
            return out
        return self._as("eps", x, out, a, s) - self._as("x0", x, out, a, s)


def sample(schedule, model, x, ts, method: str = "dpmsolver++2m", prediction: str = "eps", noise=None,
           lower_order_final: bool = False, eta: float = 0.0, uncond=None, guidance_scale: float | None = None,
           thresholding: float | None = None, sample_max_value: float = 1.0, mean=None, warmup: str = "lower"):
    """Integrate the probability-flow ODE of ``schedule`` from ``x`` at ts[0] to ts[-1] (decreasing
    times, e.g. :func:`timesteps`) with ``method`` (:data:`SAMPLERS`); the ``sde-`` samplers solve
    the reverse SDE and take ``noise``: a sequence (or callable of the step index) of standard
    normal arrays shaped like x, one per step (SDE-DPM-Solver++, methods.md §2.5; their strong
    order is 1, the listed order).  ``lower_order_final`` (multistep samplers: DPM-Solver++ 2M/3M, UniPC,
    DEIS): diffusers' rule of each — UniPC uses at most as many points as steps remain; DPM-Solver++ and
    DEIS under 15 steps take the last step first order and the one before at most second.  ``warmup``:
    "lower" (diffusers' start, the default: it caps DPM-Solver++(3M), DEIS-3 and UniPC-3 one order below their
    listed one where the first step matters) or "singlestep" (the first step by a singlestep method of one
    order less, :data:`START_CALLS`: the listed order; one or two network calls more).
    ``eta`` (DDIM): η > 0 adds fresh noise each step, η = 1 being DDPM's ancestral sampler (Song et al. 2021,
    eq. (16)); it then takes ``noise`` as the ``sde-`` samplers do.  A grid may end where σ = 0 (diffusers'
    ``final_sigmas_type="zero"``): the last step is then x = x̂(x, s) for every sampler but the Euler ones
    (the limit of the exponential step, first order as diffusers takes it for DPM-Solver(++); its UniPC
    keeps its order there).  Classifier-free guidance: ``uncond`` (the unconditional network, same
    prediction) and ``guidance_scale`` w give the model u + w (c − u), one NFE per guided evaluation.
    ``thresholding`` (a quantile ratio, e.g. 0.995) applies dynamic thresholding to every data prediction
    (noise-prediction samplers: the noise of the thresholded x̂), with ``sample_max_value``, as diffusers'
    ``thresholding=True``.  ``mean`` μ: the MR Sampler of a mean-reverting SDE (IR-SDE, ``mean_reverting``
    schedules; Li et al. 2025): every sampler runs on z = x − μ, a VP-type process with the schedule's α, σ
    (methods.md §2.7), the network called at x = z + μ (a data prediction x̂ is shifted by μ; ε unchanged).
    Returns (x, nfe)."""
    method = sampler_method(method)
    if method not in SAMPLERS:
        raise ValueError(f"unknown sampler {method!r}; available: {', '.join(SAMPLERS)}")
    check_warmup(warmup)
    if not (np.isfinite(eta) and eta >= 0) or (eta and method != "ddim"):
        raise ValueError(f"eta is DDIM's noise level, a number >= 0 for method='ddim'; got eta={eta!r} for {method!r}")
    stochastic = method in STOCHASTIC or eta > 0
    if stochastic != (noise is not None):
        raise ValueError(f"{method}{' with eta > 0' if eta else ''} needs noise= (one standard normal array like x per "
                         "step)" if stochastic else f"{method} is deterministic: it takes no noise=")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.diff(ts) < 0) or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a 1-d array of at least two finite, strictly decreasing times")
    check_start(schedule, ts[0], "ts")
    if noise is not None and not callable(noise):   # one array like x per step (a broadcast would hide a wrong shape)
        first = tuple(getattr(noise[0], "shape", np.shape(noise[0]))) if len(noise) else None
        if len(noise) < ts.size - 1 or first != tuple(x.shape):
            raise ValueError(f"noise must hold {ts.size - 1} arrays of x's shape {tuple(x.shape)} (one per step), got "
                             f"{len(noise)} of shape {first}")
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha, sigma = schedule("alpha", ts), schedule("sigma", ts)
    if not (np.all(alpha > 0) and np.all(sigma[:-1] > 0)):
        bad = ts[np.flatnonzero(~((alpha > 0) & np.append(sigma[:-1] > 0, True)))[0]]
        raise ValueError(f"ts reaches α = 0 or σ = 0 at t = {bad:g} ({schedule}): the samplers need α > 0 everywhere "
                         "and σ > 0 before the last point; start inside the schedule's t_range")
    if mean is not None:                # the MR Sampler: z = x − μ (methods.md §2.7)
        shift = 1.0 if prediction == "x0" else 0.0
        z, nfe = sample(schedule, lambda z, t: _shifted(model, z, t, mean, shift),
                        x - mean, ts, method, prediction, noise, lower_order_final, eta,
                        None if uncond is None else (lambda z, t: _shifted(uncond, z, t, mean, shift)),
                        guidance_scale, thresholding, sample_max_value, warmup=warmup)
        return z + mean, nfe
    schedule = Memo.of(schedule)
    draw = None if noise is None else noise if callable(noise) else noise.__getitem__
    if thresholding is None and TRACE:               # the run's step program, recorded once (sdekit.traced)
        scale = None if guidance_scale is None else float(guidance_scale)      # its value (a 0-d array, a tensor)
        key = (schedule.schedule, method, prediction, ts.tobytes(), float(eta), bool(lower_order_final),
               uncond is not None, scale, warmup)                 # the schedule by identity

        def record(program):
            probe = Network(lambda z, t: program.net(0, z, t), prediction, schedule,
                            None if uncond is None else (lambda z, t: program.net(1, z, t)), scale)
            result = _steps(schedule, probe, Token(program, 0), ts, sigma, method,
                            None if draw is None else program.noise, lower_order_final, eta, warmup)
            program.finish(result, probe.calls)
        program = traced.program(key, record)
        if program is not None:
            checked = tuple(None if f is None else functools.partial(Network._apply, f) for f in (model, uncond))
            return program.replay(checked, x, draw), program.calls
    net = Network(model, prediction, schedule, uncond, guidance_scale, thresholding, sample_max_value)
    x = _steps(schedule, net, x, ts, sigma, method, draw, lower_order_final, eta, warmup)
    return (x.value() if isinstance(x, Lazy) else x), net.calls


#: sample() replays each run's traced step program (sdekit.traced); False runs every recipe step by step
TRACE = True


def _steps(schedule, net, x, ts, sigma, method, draw, lower_order_final, eta, warmup="lower"):
    """The sampler's steps over ``ts`` from x (the body of :func:`sample`, validated): a grid that ends at σ = 0
    (diffusers' final_sigmas_type="zero") has λ = ∞ there, and every exponential sampler's last step tends to
    x = x̂(x, s): taken first order, as diffusers forces it."""
    x = Lazy.of(x)                   # each step's update: one combination (Lazy), fused where the arrays allow it
    to_zero = sigma[-1] == 0 and method not in ("euler", "flow-euler", "rf-solver-2", "fireflow")
    core = ts[:-1] if to_zero else ts
    if core.size > 1 and eta > 0:
        for i, (s, t) in enumerate(zip(core[:-1], core[1:])):
            x = _ddim_eta(schedule, net, x, float(s), float(t), eta, draw(i))
    elif core.size > 1:
        x = run(schedule, net, x, core, method, draw, lower_order_final, ts.size - 1, warmup)
    if to_zero:
        x = net.data(x, float(core[-1]))
    return x.value() if isinstance(x, Lazy) else x


class Memo:
    """A schedule whose values at single times are computed once: a step reads α, σ, λ at its ends several
    times (network conversions, coefficients), each a sympy-lambdified numpy call of a few µs — the bulk of a
    step's overhead on small batches.  Arrays of times, ``t_of_lambda`` and attributes go to the schedule."""

    def __init__(self, schedule):
        self.schedule, self.values = schedule, {}

    @classmethod
    def of(cls, schedule):
        return schedule if isinstance(schedule, cls) else cls(schedule)

    def __call__(self, what: str, ts):
        if np.ndim(ts):
            return self.schedule(what, ts)
        key = (what, float(ts))
        if key not in self.values:
            self.values[key] = self.schedule(what, ts)
        return self.values[key]

    def __getattr__(self, name):
        return getattr(self.schedule, name)


def _shifted(model, z, t, mean, shift):
    """The network of x at x = z + μ, as a prediction for z: a data prediction less ``shift`` μ."""
    out = model(z + mean, t)
    return out - mean if shift else out


def _ddim_eta(schedule, net, x, s, t, eta, z):
    """DDIM with noise level η (Song et al. 2021, eqs. (12), (16)): x_t = α_t x̂ + √(σ_t² − c²) ε̂ + c z,
    c = η (σ_t/σ_s) √(1 − α_s²/α_t²), ε̂ = (x − α_s x̂)/σ_s from the one network call."""
    a_s, a_t = float(schedule("alpha", s)), float(schedule("alpha", t))
    s_s, s_t = float(schedule("sigma", s)), float(schedule("sigma", t))
    x0 = net.data(x, s)
    c = eta * (s_t / s_s) * math.sqrt(max(1.0 - (a_s / a_t) ** 2, 0.0))
    return a_t * x0 + math.sqrt(max(s_t * s_t - c * c, 0.0)) * ((x - a_s * x0) / s_s) + c * z


def run(schedule, net, x, ts, method, noise=None, lower_order_final: bool = False, total_steps=None,
        warmup: str = "lower"):
    """``method`` over the grid ``ts`` in either direction (decreasing: sampling; increasing: the
    explicit inversion of :mod:`sdekit.inversion`), ``net`` a :class:`Network`; ``total_steps``: the
    whole run's steps when ``ts`` is its beginning (``lower_order_final`` counts from the run's end);
    ``warmup``: see :func:`sample`."""
    total = len(ts) - 1 if total_steps is None else total_steps
    start = SINGLESTEP[START[method]] if warmup == "singlestep" and method in START else None
    if method in UNIPC:
        order, variant = int(method[5]), method.split("-")[1]
        return _unipc(schedule, net, x, ts, order, variant, lower_order_final, total, start)
    if method in DEIS:
        return _deis(schedule, net, x, ts, int(method[4]), lower_order_final, total, start)
    if method in ("pndm", "ipndm"):
        return _pndm(schedule, net, x, ts, improved=method == "ipndm")
    if method in ("rf-solver-2", "fireflow"):
        return _straightened(schedule, net, x, ts, method)
    if method in MULTISTEP or method in STOCHASTIC:
        draw = noise if callable(noise) or noise is None else noise.__getitem__
        return _multistep(schedule, net, x, ts, method, draw, lower_order_final, total, start)
    step = SINGLESTEP[method]
    for s, t in zip(ts[:-1], ts[1:]):
        x = step(schedule, net, x, float(s), float(t))
    return x


def _coef(schedule, s, t):
    """α, σ, λ at s and t, and h = λ_t − λ_s."""
    a_s, a_t = float(schedule("alpha", s)), float(schedule("alpha", t))
    s_s, s_t = float(schedule("sigma", s)), float(schedule("sigma", t))
    l_s, l_t = float(schedule("lam", s)), float(schedule("lam", t))
    return a_s, a_t, s_s, s_t, l_t - l_s


def _ddim(schedule, net, x, s, t):
    """DDIM = DPM-Solver++1: x_t = (σ_t/σ_s) x_s + α_t h φ_1(−h) x̂_s (methods.md §2.4)."""
    a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
    return (s_t / s_s) * x + (a_t * h * phi_scalar(1, -h)) * net.data(x, s)


def _dpm2(schedule, net, x, s, t, r1=0.5, first=None):
    """DPM-Solver-2 (Lu et al. 2022, noise prediction, r_1 = ½; methods.md §2.3); ``first``: ε(x, s) if known."""
    a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
    s1 = float(schedule.t_of_lambda(float(schedule("lam", s)) + r1 * h))
    a_1, s_1 = float(schedule("alpha", s1)), float(schedule("sigma", s1))
    e_s = net.noise(x, s) if first is None else first
    u = (a_1 / a_s) * x - (s_1 * math.expm1(r1 * h)) * e_s
    e_1 = net.noise(u, s1)
    return (a_t / a_s) * x - (s_t * math.expm1(h)) * e_s - (s_t / (2 * r1) * math.expm1(h)) * (e_1 - e_s)


def _dpm3(schedule, net, x, s, t, r1=1 / 3, r2=2 / 3, first=None):
    """DPM-Solver-3 (r_1 = ⅓, r_2 = ⅔; methods.md §2.3); ``first``: ε(x, s) if known."""
    a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
    l_s = float(schedule("lam", s))
    s1, s2 = (float(schedule.t_of_lambda(l_s + r * h)) for r in (r1, r2))
    a_1, s_1, a_2, s_2 = (float(schedule(w, u)) for u in (s1, s2) for w in ("alpha", "sigma"))
    e_s = net.noise(x, s) if first is None else first
    u1 = (a_1 / a_s) * x - (s_1 * math.expm1(r1 * h)) * e_s
    e_1 = net.noise(u1, s1)
    u2 = ((a_2 / a_s) * x - (s_2 * math.expm1(r2 * h)) * e_s
          - (s_2 * r2 / r1 * (math.expm1(r2 * h) / (r2 * h) - 1)) * (e_1 - e_s))
    e_2 = net.noise(u2, s2)
    return (a_t / a_s) * x - (s_t * math.expm1(h)) * e_s - (s_t / r2 * (math.expm1(h) / h - 1)) * (e_2 - e_s)


def _dpmpp2s(schedule, net, x, s, t, r1=0.5, first=None):
    """DPM-Solver++(2S) (Lu et al. 2022b, data prediction, r_1 = ½; methods.md §2.4); ``first``: x̂(x, s) if
    known."""
    a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
    s1 = float(schedule.t_of_lambda(float(schedule("lam", s)) + r1 * h))
    a_1, s_1 = float(schedule("alpha", s1)), float(schedule("sigma", s1))
    m_0 = net.data(x, s) if first is None else first
    u = (s_1 / s_s) * x - (a_1 * math.expm1(-r1 * h)) * m_0
    m_1 = net.data(u, s1)
    return (s_t / s_s) * x - (a_t * math.expm1(-h)) * m_0 - (a_t / (2 * r1) * math.expm1(-h)) * (m_1 - m_0)


def _euler(schedule, net, x, s, t):
    """Euler in σ̃ = σ/α on x̃ = x/α, where the flow ODE reads dx̃/dσ̃ = ε (Karras et al. 2022, eq. 4
    and Alg. 1 without churn; diffusers' EulerDiscreteScheduler)."""
    a_s, a_t = float(schedule("alpha", s)), float(schedule("alpha", t))       # σ_t may be 0: no λ here
    s_s, s_t = float(schedule("sigma", s)), float(schedule("sigma", t))
    return (a_t / a_s) * x + (a_t * (s_t / a_t - s_s / a_s)) * net.noise(x, s)


def _flow_euler(schedule, net, x, s, t):
    """Euler on the straightened PF-ODE dy/ds = u (y = x/(α + σ), s = σ/(α + σ); for α = 1 − σ, x in σ):
    diffusers' FlowMatchEulerDiscreteScheduler step x' = x + (σ' − σ) u for flow-matching schedules."""
    a_s, s_s = float(schedule("alpha", s)), float(schedule("sigma", s))
    a_t, s_t = float(schedule("alpha", t)), float(schedule("sigma", t))
    y = x / (a_s + s_s)
    y = y + (s_t / (a_t + s_t) - s_s / (a_s + s_s)) * net.flow(x, s)
    return (a_t + s_t) * y


def _heun(schedule, net, x, s, t):
    """Heun's second-order step in σ̃ (Karras et al. 2022, Alg. 1 without churn)."""
    a_s, a_t, s_s, s_t, _ = _coef(schedule, s, t)
    dsig = s_t / a_t - s_s / a_s
    d = net.noise(x, s)
    pred = (a_t / a_s) * x + (a_t * dsig) * d
    return (a_t / a_s) * x + (0.5 * a_t * dsig) * (d + net.noise(pred, t))


def _multistep(schedule, net, x, ts, method, noise=None, lower_order_final=False, total=None, start=None):
    """DPM-Solver++(2M) ("midpoint") and (3M): one network call per step, the first steps at
    lower order (warm-up); 3M's D2 weight is 2hφ_3(−h) (exact) or hφ_3(−h) ("-compat").  DPM-Solver-2M
    (``"dpmsolver-2m"``, Lu et al. 2022b §3 on ε; diffusers' ``algorithm_type="dpmsolver"``, midpoint) is the
    same recipe on the noise prediction, x_t = (α_t/α_s) x − σ_t (e^h − 1)(D0 + ½ D1).  ``start``: the singlestep
    sampler of 3M's first step (:data:`START`).
    SDE-DPM-Solver++(1, 2M): the exact linear part and noise covariance of the reverse SDE,
    x_t = (σ_t/σ_s)e^{−h} x_s + α_t(1 − e^{−2h})(D0 + ½D1) + σ_t √(1 − e^{−2h}) z (methods.md §2.5)."""
    if method in STOCHASTIC:
        order = 1 if method.endswith("1") else 2 if method.endswith("2m") else 3
        return _sde_multistep(schedule, net, x, ts, order, noise, compat=method.endswith("compat"))
    order = 2 if method in ("dpmsolver++2m", "dpmsolver-2m") else 3
    on_eps = method == "dpmsolver-2m"         # DPM-Solver-2M on ε: x_t = (α_t/α_s) x − σ_t (e^h − 1)(D0 + ½D1)
    lams = [float(v) for v in schedule("lam", ts)]
    hist = []                                 # (λ, x̂ or ε) of the last steps, newest first
    for i in range(len(ts) - 1):
        s, t = float(ts[i]), float(ts[i + 1])
        a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
        hist.insert(0, (lams[i], net.noise(x, s) if on_eps else net.data(x, s)))
        del hist[order:]
        m0 = hist[0][1]
        w1 = -s_t * math.expm1(h) if on_eps else a_t * h * phi_scalar(1, -h)      # the weight of D0
        x_new = ((a_t / a_s) if on_eps else (s_t / s_s)) * x + w1 * m0
        k = min(len(hist), order)
        steps = len(ts) - 1 if total is None else total
        if lower_order_final and steps < 15:       # diffusers' rule: first order last, at most second before
            k = 1 if i == steps - 1 else min(k, 2) if i == steps - 2 else k
        if start is not None and i == 0:
            x_new = start(schedule, net, x, s, t, first=m0)
        elif k >= 2:
            r0 = (hist[0][0] - hist[1][0]) / h
            d1_0 = (1.0 / r0) * (m0 - hist[1][1])
            if k == 2:
                x_new = x_new + (0.5 * w1) * d1_0      # "midpoint": ½ hφ_1 for hφ_2
            else:
                r1 = (hist[1][0] - hist[2][0]) / h
                d1_1 = (1.0 / r1) * (hist[1][1] - hist[2][1])
                d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
                d2 = (1.0 / (r0 + r1)) * (d1_0 - d1_1)
                w3 = 2.0 if method == "dpmsolver++3m" else 1.0
                x_new = x_new + (a_t * h * phi_scalar(2, -h)) * d1 + (w3 * a_t * h * phi_scalar(3, -h)) * d2
        x = x_new
    return x


def _sde_multistep(schedule, net, x, ts, order, noise, compat=False):
    """SDE-DPM-Solver++ 1, 2M (midpoint) and 3M (methods.md §2.5): the reverse SDE's exact linear part and
    noise, x_t = (σ_t/σ_s)e^{−h} x + α_t ∫_0^h 2e^{−2(h−τ)} x̂(λ_s + τ) dτ + σ_t √(1 − e^{−2h}) z, with x̂
    extrapolated from the last network outputs (D0, D1, D2 of §2.4).  3M's weights are the integrals of the
    expansion's terms: (1 − e^{−2h}), (1 − e^{−2h})/(−2h) + 1 on D1 and 2(½ + (1 − e^{−2h} − 2h)/(2h)²) on D2
    (D2 is half the second-derivative term); ``compat``: diffusers' D2 weight (1 − e^{−2h} − 2h)/(2h)² − ½
    (mean order ≈ 1, §2.5).  Warm-up: first order, then 2M."""
    lams = [float(v) for v in schedule("lam", ts)]
    hist = []                                       # (λ, x̂) newest first
    for i in range(len(ts) - 1):
        s, t = float(ts[i]), float(ts[i + 1])
        a_s, a_t, s_s, s_t, h = _coef(schedule, s, t)
        hist.insert(0, (lams[i], net.data(x, s)))
        del hist[order:]
        m0, k = hist[0][1], min(len(hist), order)
        w = -math.expm1(-2.0 * h)                               # 1 − e^{−2h}
        drift = (a_t * w) * m0
        if k == 2:                                                # midpoint: ½(1 − e^{−2h}) on D1
            drift = drift + (0.5 * a_t * w * h / (lams[i] - hist[1][0])) * (m0 - hist[1][1])
        elif k == 3:
            r0, r1 = (lams[i] - hist[1][0]) / h, (hist[1][0] - hist[2][0]) / h
            d1_0, d1_1 = (1.0 / r0) * (m0 - hist[1][1]), (1.0 / r1) * (hist[1][1] - hist[2][1])
            d1, d2 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1), (1.0 / (r0 + r1)) * (d1_0 - d1_1)
            c2 = (w - 2.0 * h) / (2.0 * h) ** 2
            drift = drift + (a_t * (w / (-2.0 * h) + 1.0)) * d1 + (a_t * (c2 - 0.5 if compat else 2.0 * (c2 + 0.5))) * d2
        x = (s_t / s_s * math.exp(-h)) * x + drift + (s_t * math.sqrt(w)) * noise(i)
    return x


def _unipc_weights(h, rks, variant, corrector):
    """UniPC's B(h) and ρ weights (Zhao et al. 2023, "UniPC", NeurIPS, Alg. 2–3, data prediction, hh = −h):
    b_k = k! hh φ_{k+1}(hh) / B(h) for k = 1..p, B(h) = hh ("bh1") or e^{hh} − 1 ("bh2"); rows R_k = r^{k−1}
    over the nodes r_1..r_{p−1}, 1.  The predictor solves the leading (p−1)-square system (ρ = ½ at p = 2),
    the corrector the whole one (ρ = ½ at p = 1)."""
    hh = -h
    B = hh if variant == "bh1" else math.expm1(hh)
    p = len(rks) + 1
    r = np.array(list(rks) + [1.0])
    b = np.array([math.factorial(k) * hh * phi_scalar(k + 1, hh) / B for k in range(1, p + 1)])
    R = np.array([r ** (k - 1) for k in range(1, p + 1)])
    if corrector:
        return B, (np.array([0.5]) if p == 1 else np.linalg.solve(R, b))
    return B, (np.zeros(0) if p == 1 else np.array([0.5]) if p == 2 else np.linalg.solve(R[:-1, :-1], b[:-1]))


def _unipc_update(schedule, lams, ms, x, i, t, order, variant, m_new=None):
    """x at ``t`` from x at ts[i] with the data predictions ``ms`` (ms[j] at ts[j]): UniP-p when ``m_new``
    is None, else UniC-p with the prediction ``m_new`` at t: x_t = (σ_t/σ_s) x − α_t(e^{hh} − 1) m_i −
    α_t B(h) (Σ_k ρ_k D_k + ρ_p (m_new − m_i)), D_k = (m_{i−k} − m_i)/r_k, r_k = (λ_{i−k} − λ_i)/h."""
    a_s, a_t, s_s, s_t, h = _coef(schedule, lams[i][0], t)
    m0 = ms[i]
    rks = [(lams[i - k][1] - lams[i][1]) / h for k in range(1, order)]
    D = [(ms[i - k] - m0) / r for k, r in zip(range(1, order), rks)]
    B, rho = _unipc_weights(h, rks, variant, corrector=m_new is not None)
    x_t = (s_t / s_s) * x - (a_t * math.expm1(-h)) * m0
    res = sum((float(w) * d for w, d in zip(rho, D)), 0.0 * m0)
    if m_new is not None:
        res = res + float(rho[-1]) * (m_new - m0)
    return x_t - (a_t * B) * res


def _unipc(schedule, net, x, ts, order, variant, lower_order_final=False, total=None, start=None):
    """UniPC-p (Zhao et al. 2023): at every grid point the network's data prediction first corrects the
    point just reached (UniC, with the order of the predictor that reached it), then predicts the next
    (UniP-p, warming up from order 1); no network call beyond one per step: the last point is not
    corrected.  ``lower_order_final``: at most as many points as steps remain (diffusers' rule).  ``start``: the
    singlestep sampler of the first step (:data:`START`; on ε), its point not corrected."""
    lams = [(float(t), float(v)) for t, v in zip(ts, schedule("lam", ts))]
    ms, steps, last = [], len(ts) - 1, None
    total = steps if total is None else total
    for i in range(steps):
        m = net.data(x, float(ts[i]))
        if last is not None:                          # UniC: correct x_i with m_i
            x_prev, p = last
            x = _unipc_update(schedule, lams, ms, x_prev, i - 1, float(ts[i]), p, variant, m_new=m)
            if isinstance(x, Lazy):               # the corrected point is used twice (next predictor, corrector)
                x.value()
        ms.append(m)
        if start is not None and i == 0:              # ε from the call just made: ε = (x − α x̂)/σ
            a_s, s_s = float(schedule("alpha", float(ts[0]))), float(schedule("sigma", float(ts[0])))
            x = start(schedule, net, x, float(ts[0]), float(ts[1]), first=(x - a_s * m) / s_s)
            continue
        p = min(order, total - i) if lower_order_final else order
        p = min(p, i + 1)
        last = (x, p)
        x = _unipc_update(schedule, lams, ms, x, i, float(ts[i + 1]), p, variant)
    return x


def _deis_weights(rho_s: float, rho_t: float, us: list) -> list:
    """DEIS's weights w_j = ∫_{ρ_s}^{ρ_t} ℓ_j(log ρ) dρ (Zhang & Chen 2023, ICLR, "log-ρ" tAB-DEIS) for the Lagrange
    basis ℓ_j through the points ``us`` = [log ρ_s, log ρ of earlier points ...].  In v = log(ρ/ρ_s) the basis is
    Σ_m c_jm v^m over the nodes v_k = u_k − u_0, and ∫_0^V e^v v^m dv = V^{m+1} m! e^V φ_{m+1}(−V), V = log(ρ_t/ρ_s)
    (φ_{m+1}(z) = ∫_0^1 e^{(1−θ)z} θ^m/m! dθ): w_j = ρ_s Σ_m c_jm V^{m+1} m! e^V φ_{m+1}(−V), no cancellation at
    small steps (a difference of sympy's antiderivatives at ρ_t and ρ_s lost ~Δu^{1−p} of its digits: DEIS-3's
    error rose from 1.8e-10 to 4.7e-9 between 1024 and 2048 steps)."""
    V = math.log1p((rho_t - rho_s) / rho_s)           # log(ρ_t/ρ_s) to its last digits at small steps
    v = [u - us[0] for u in us]
    ints = [V ** (m + 1) * math.factorial(m) * math.exp(V) * phi_scalar(m + 1, -V) for m in range(len(v))]
    weights = []
    for j in range(len(v)):
        others = [v[k] for k in range(len(v)) if k != j]
        coefs = np.atleast_1d(np.poly(others))[::-1] / math.prod(v[j] - vk for vk in others)   # c_j0, c_j1, ...
        weights.append(rho_s * float(np.dot(coefs, ints[:len(coefs)])))
    return weights


def _deis(schedule, net, x, ts, order, lower_order_final=False, total=None, start=None):
    """tAB-DEIS of order p (``deis{p}``): x_t = α_t (x_s/α_s + Σ_j w_j ε_j), w_j = ∫_{ρ_s}^{ρ_t} ℓ_j(log ρ) dρ
    over the noise predictions at the last p points; one network call per step, warming up from order 1.
    ``lower_order_final`` is diffusers' rule: under 15 steps, the last step is first order, the one before
    at most second; ``start``: the singlestep sampler of the first step (:data:`START`; on ε)."""
    rho = [float(sg / a) for sg, a in zip(schedule("sigma", ts), schedule("alpha", ts))]
    alpha = [float(a) for a in schedule("alpha", ts)]
    steps, hist = len(ts) - 1, []
    total = steps if total is None else total
    for i in range(steps):
        hist.insert(0, net.noise(x, float(ts[i])))
        del hist[order:]
        if start is not None and i == 0:
            x = start(schedule, net, x, float(ts[0]), float(ts[1]), first=hist[0])
            continue
        p = min(order, i + 1)
        if lower_order_final and total < 15:
            p = 1 if i == total - 1 else min(p, 2) if i == total - 2 else p
        w = _deis_weights(rho[i], rho[i + 1], [math.log(rho[i - j]) for j in range(p)])
        x = alpha[i + 1] * (x / alpha[i] + sum((wj * e for wj, e in zip(w, hist)), 0.0 * hist[0]))
    return x


def _straightened(schedule, net, x, ts, method):
    """RF-Solver-2 or FireFlow (``sdekit.inversion.rf_solver`` / ``fireflow``, the one definition of each
    step) on the straightened PF-ODE of any schedule: y = x/(α + σ) in s = σ/(α + σ), dy/ds = u (the flow
    prediction), where a flow-matching schedule (α = 1 − σ) is the rectified flow itself.  Grid points keep
    their times; a midpoint s is the time t(λ), λ = log((1 − s)/s), of the schedule's inverse."""
    from sdekit.inversion import fireflow, rf_solver
    ts = [float(t) for t in ts]
    scale = {t: float(schedule("alpha", t)) + float(schedule("sigma", t)) for t in ts}
    time_of = {float(schedule("sigma", t)) / scale[t]: t for t in ts}

    def velocity(y, s):
        t = time_of.get(s)
        if t is None:
            t = float(schedule.t_of_lambda(math.log((1.0 - s) / s)))
        c = scale.get(t) or float(schedule("alpha", t)) + float(schedule("sigma", t))
        return net.flow(c * y, t)
    ss = [float(schedule("sigma", t)) / scale[t] for t in ts]
    y, _ = (rf_solver if method == "rf-solver-2" else fireflow)(velocity, x / scale[ts[0]], ss)
    return scale[ts[-1]] * y


#: Adams–Bashforth weights on the last 1..4 noise predictions, newest first (PNDM's linear multistep part)
_AB = ((1.0,), (1.5, -0.5), (23 / 12, -16 / 12, 5 / 12), (55 / 24, -59 / 24, 37 / 24, -9 / 24))


def _ddim_noise(schedule, x, s, t, e):
    """DDIM's transfer in the noise prediction (PNDM's φ, Liu et al. 2022, eq. (9)): x_t = (α_t/α_s) x_s +
    (σ_t − α_t σ_s/α_s) ε — exact for a constant ε."""
    a_s, a_t, s_s, s_t, _ = _coef(schedule, s, t)
    return (a_t / a_s) * x + (s_t - a_t * s_s / a_s) * e


def _pndm(schedule, net, x, ts, improved=False):
    """PNDM's PLMS (Liu et al. 2022, "Pseudo numerical methods for diffusion models", ICLR, Alg. 2 with the
    pseudo improved-Euler start of diffusers' ``skip_prk_steps``): the DDIM transfer with ε replaced by the
    Adams–Bashforth (order ≤ 4) combination of the last noise predictions; the first step averages ε at both
    ends of a DDIM predictor (two calls).  ``improved`` (iPNDM, Zhang & Chen 2023, "DEIS", §4): lower-order
    Adams–Bashforth at the start instead, one call per step.  The weights assume equal steps in the transfer's
    variable, so on grids uniform in t or λ the sampler is second order (measured in the tests)."""
    hist = []
    for i, (s, t) in enumerate(zip(ts[:-1], ts[1:])):
        s, t = float(s), float(t)
        e = net.noise(x, s)
        hist = ([e] + hist)[:4]
        if i == 0 and not improved:
            e = 0.5 * (e + net.noise(_ddim_noise(schedule, x, s, t, e), t))
        else:
            weights = _AB[len(hist) - 1]
            e = weights[0] * hist[0]
            for w, h in zip(weights[1:], hist[1:]):
                e = e + w * h
        x = _ddim_noise(schedule, x, s, t, e)
    return x


#: the one-step samplers, (schedule, net, x, s, t) -> x at t
SINGLESTEP = {"ddim": _ddim, "dpmsolver-2": _dpm2, "dpmsolver-3": _dpm3, "dpmsolver++2s": _dpmpp2s, "euler": _euler,
              "heun": _heun, "flow-euler": _flow_euler}
