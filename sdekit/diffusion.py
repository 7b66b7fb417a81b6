"""Diffusion-model noise schedules as symbolic forward processes (issue 16, first part).

A schedule is the marginal of a forward process, x_t | x_0 ~ N(α_t x_0, σ_t² I) (methods.md §2.1),
given by sympy expressions α(t), σ(t) in ``sk.t``; everything else is derived from them by sympy:
the half-log-SNR λ = log(α/σ), the forward SDE dx = f(t) x dt + g(t) dW with f = d log α/dt and
g² = dσ²/dt − 2 f σ² (Song et al. 2021, ICLR), its inverse t(λ) (closed form where methods.md §2.2
gives one, else a guarded numeric inverse of the monotone λ), and the forward SDE as an
``sk.SDE``.  The samplers (``sdekit.sampling``), inversion (``sdekit.inversion``) and the probability-flow ODE
and reverse SDE as models (``sdekit.diffusion_models``) build on these; this module gathers them as ``sk.diffusion``.
"""
from __future__ import annotations

import numpy as np
import sympy as sp

from sdekit.symbols import t

__all__ = ["Schedule", "DiscreteVP", "GaussianMixture", "MLPNetwork", "sample", "timesteps", "nfe", "SAMPLERS", "STOCHASTIC",
           "START_CALLS", "probability_flow", "reverse_sde", "network", "invert", "edict", "bdia", "reversible_heun", "rf_solver", "fireflow", "controlled", "vp_linear", "vp_cosine", "vp", "sub_vp", "ve", "edm", "flow_matching",
           "mean_reverting"]


class Schedule:
    """α(t), σ(t) of a forward process on ``t_range``, and what follows from them (module docstring)."""

    def __init__(self, name: str, alpha, sigma, t_range=(0.0, 1.0), t_of_lambda=None):
        self.name, self.t_range = name, (float(t_range[0]), float(t_range[1]))
        self.alpha, self.sigma = sp.sympify(alpha), sp.sympify(sigma)
        if self.alpha.free_symbols - {t} or self.sigma.free_symbols - {t}:
            raise ValueError(f"schedule {name}: α and σ may depend on sk.t only, got {self.alpha} and {self.sigma}")
        self.lam = sp.log(self.alpha) - sp.log(self.sigma)
        self.f = sp.simplify(sp.diff(sp.log(self.alpha), t))
        self.g2 = sp.simplify(sp.diff(self.sigma**2, t) - 2 * self.f * self.sigma**2)
        self._num = {k: sp.lambdify(t, getattr(self, k), "numpy") for k in ("alpha", "sigma", "lam", "f", "g2")}
        self._t_of_lambda = None if t_of_lambda is None else sp.lambdify(sp.Symbol("l"), t_of_lambda, "numpy")

    def __repr__(self):
        return f"Schedule({self.name!r}, alpha={self.alpha}, sigma={self.sigma}, t in {self.t_range})"

    def __call__(self, what: str, ts):
        """``what`` ("alpha", "sigma", "lam", "f", "g2") at the times ``ts`` (numpy)."""
        ts = np.asarray(ts, dtype=float)
        return np.broadcast_to(np.asarray(self._num[what](ts), dtype=float), ts.shape).copy()

    def t_of_lambda(self, lam):
        """The time of half-log-SNR ``lam``: closed form, or bisection on λ(t) over ``t_range``
        (λ must be monotone there; a value outside λ(t_range) raises ValueError)."""
        lam = np.asarray(lam, dtype=float)
        if self._t_of_lambda is not None:
            return np.asarray(self._t_of_lambda(lam), dtype=float)
        a, b = self.t_range
        la, lb = self("lam", [a, b])
        if not np.all((np.minimum(la, lb) <= lam) & (lam <= np.maximum(la, lb))):
            raise ValueError(f"schedule {self.name}: λ = {lam} outside λ(t_range) = [{min(la, lb)}, {max(la, lb)}]")
        lo, hi = np.full(lam.shape, a), np.full(lam.shape, b)
        decreasing = lb < la
        for _ in range(200):          # bisection: 2^-200 of the range, past float64 resolution
            mid = 0.5 * (lo + hi)
            right = (self("lam", mid) > lam) if decreasing else (self("lam", mid) < lam)
            lo, hi = np.where(right, mid, lo), np.where(right, hi, mid)
        return 0.5 * (lo + hi)

    def forward_sde(self, y):
        """The forward SDE dx = f(t) x dt + g(t) dW on the states ``y`` (``sk.states``) as an ``sk.SDE``."""
        import sdekit as sk
        y = sp.Matrix(y)
        return sk.SDE(y, drift=self.f * y, diffusion=sp.sqrt(self.g2), noise="diagonal")


def _vp_log_alpha(beta):
    """log α_t = −½ ∫_0^t β (VP: dx = −½β x dt + √β dW)."""
    s = sp.Dummy("s", real=True)
    return -sp.integrate(sp.sympify(beta).subs(t, s), (s, 0, t)) / 2


def vp(beta, name: str = "VP", t_range=(1e-3, 1.0), t_of_lambda=None) -> Schedule:
    """VP with a user's β(t) (a sympy expression in sk.t): α = exp(−½∫β), σ = √(1 − α²)."""
    alpha = sp.exp(_vp_log_alpha(beta))
    return Schedule(name, alpha, sp.sqrt(1 - alpha**2), t_range, t_of_lambda)


def vp_linear(beta0=sp.Rational(1, 10), beta1=20, t_range=(1e-3, 1.0)) -> Schedule:
    """VP with β(t) = β0 + (β1 − β0) t (DDPM's continuous limit; methods.md §2.2, with its inverse)."""
    beta0, beta1 = sp.nsimplify(beta0), sp.nsimplify(beta1)
    lm = sp.log(1 + sp.exp(-2 * sp.Symbol("l")))
    t_of_l = 2 * lm / (beta0 + sp.sqrt(beta0**2 + 2 * (beta1 - beta0) * lm))
    return vp(beta0 + (beta1 - beta0) * t, "VP-linear", t_range, t_of_l)


def vp_cosine(s=sp.Rational(8, 1000), t_range=(1e-3, 0.9946)) -> Schedule:
    """Nichol & Dhariwal (2021): α = cos(π/2 (t+s)/(1+s)) / cos(π/2 s/(1+s)), σ = √(1 − α²);
    t_range stops where λ blows up (DPM-Solver's T = 0.9946); inverse from methods.md §2.2."""
    s = sp.nsimplify(s)
    c0 = sp.cos(sp.pi / 2 * s / (1 + s))
    alpha = sp.cos(sp.pi / 2 * (t + s) / (1 + s)) / c0
    log_alpha_l = -sp.log(1 + sp.exp(-2 * sp.Symbol("l"))) / 2
    t_of_l = 2 * (1 + s) / sp.pi * sp.acos(sp.exp(log_alpha_l) * c0) - s
    return Schedule("VP-cosine", alpha, sp.sqrt(1 - alpha**2), t_range, t_of_l)


def sub_vp(beta0=sp.Rational(1, 10), beta1=20, t_range=(1e-3, 1.0)) -> Schedule:
    """sub-VP (Song et al. 2021): α as VP-linear, σ = 1 − α² (= 1 − e^{−∫β})."""
    beta0, beta1 = sp.nsimplify(beta0), sp.nsimplify(beta1)
    alpha = sp.exp(_vp_log_alpha(beta0 + (beta1 - beta0) * t))
    return Schedule("sub-VP", alpha, 1 - alpha**2, t_range)


def ve(sigma_min=sp.Rational(1, 100), sigma_max=50, t_range=(0.0, 1.0)) -> Schedule:
    """VE (Song et al. 2021): α = 1, σ = σ_min (σ_max/σ_min)^t, so λ = −log σ and t(λ) in closed form."""
    smin, smax = sp.nsimplify(sigma_min), sp.nsimplify(sigma_max)
    t_of_l = (-sp.Symbol("l") - sp.log(smin)) / sp.log(smax / smin)
    return Schedule("VE", sp.Integer(1), smin * (smax / smin) ** t, t_range, t_of_l)


def edm(t_range=(2e-3, 80.0)) -> Schedule:
    """EDM (Karras et al. 2022): α = 1, σ(t) = t, so t(λ) = e^{−λ}."""
    return Schedule("EDM", sp.Integer(1), t, t_range, sp.exp(-sp.Symbol("l")))


def flow_matching(shift=1, t_range=(1e-3, 0.999)) -> Schedule:
    """Rectified flow / flow matching: α = 1 − σ, σ = shift·t / (1 + (shift − 1) t) (diffusers'
    ``shift``; shift = 1: σ = t)."""
    shift = sp.nsimplify(shift)
    sigma = shift * t / (1 + (shift - 1) * t)
    return Schedule(f"flow(shift={shift})", 1 - sigma, sigma, t_range)


def mean_reverting(theta, stationary_std, t_range=(1e-3, 1.0)) -> Schedule:
    """IR-SDE dz = −θ_t z dt + σ_t dW with σ_t² = 2 λ_s² θ_t (methods.md §2.7; z = x − μ):
    α = e^{−θ̄}, σ = λ_s √(1 − e^{−2θ̄}), θ̄ = ∫_0^t θ."""
    s = sp.Dummy("s", real=True)
    theta_bar = sp.integrate(sp.sympify(theta).subs(t, s), (s, 0, t))
    alpha = sp.exp(-theta_bar)
    return Schedule("mean-reverting", alpha, sp.nsimplify(stationary_std) * sp.sqrt(1 - alpha**2), t_range)


class GaussianMixture:
    """Data p_0 = Σ_k w_k N(μ_k, s_k² I): every marginal p_t = Σ_k w_k N(α μ_k, (α² s_k² + σ²) I) is
    known, so the exact noise prediction ε(x, t) = −σ ∇log p_t(x) is too (the sampling tests' and
    demo's network: no training, no download)."""

    def __init__(self, means, stds, weights=None):
        self.means = np.atleast_2d(np.asarray(means, dtype=float))
        self.stds = np.broadcast_to(np.asarray(stds, dtype=float), (self.means.shape[0],)).copy()
        w = np.ones(self.means.shape[0]) if weights is None else np.asarray(weights, dtype=float)
        if w.shape != (self.means.shape[0],) or np.any(w <= 0) or np.any(self.stds <= 0):
            raise ValueError("a Gaussian mixture needs one positive weight and std per mean")
        self.weights = w / w.sum()

    def sample(self, n: int, rng) -> np.ndarray:
        k = rng.choice(len(self.weights), size=n, p=self.weights)
        return self.means[k] + self.stds[k, None] * rng.standard_normal((n, self.means.shape[1]))

    def eps(self, schedule):
        """ε(x, t) for a batch x (n, d) at a time t (a number): −σ_t ∇log p_t(x)."""
        def eps(x, t):
            a, s = float(schedule("alpha", t)), float(schedule("sigma", t))
            x = np.asarray(x, dtype=float)
            var = a**2 * self.stds**2 + s**2                                  # (K,)
            diff = x[:, None, :] - a * self.means[None]                        # (n, K, d)
            logp = np.log(self.weights) - 0.5 * np.sum(diff**2, axis=-1) / var - 0.5 * x.shape[1] * np.log(var)
            gamma = np.exp(logp - logp.max(axis=1, keepdims=True))
            gamma /= gamma.sum(axis=1, keepdims=True)
            score = -np.einsum("nk,nkd->nd", gamma / var, diff)
            return -s * score
        return eps


    def eps_expression(self, schedule, x) -> sp.Matrix:
        """The same ε(x, t) as a sympy vector in the states ``x`` and ``sk.t`` (for a symbolic schedule): a
        closed-form network the fused kernels compile.  The responsibilities are written γ_k = 1/Σ_j e^{l_j − l_k}
        (l_k the components' log densities), which overflows to γ_k = 0, never to NaN, far from component k."""
        x = sp.Matrix(x)
        a, s = schedule.alpha, schedule.sigma
        var = [a**2 * sp.Float(sk) ** 2 + s**2 for sk in self.stds]
        diff = [x - a * sp.Matrix([sp.Float(v) for v in mu]) for mu in self.means]
        logp = [sp.log(sp.Float(wk)) - (dk.T * dk)[0] / (2 * vk) - len(x) * sp.log(vk) / 2
                for wk, dk, vk in zip(self.weights, diff, var)]
        gamma = [1 / sum(sp.exp(lj - lk) for lj in logp) for lk in logp]
        return s * sum((g / vk * dk for g, vk, dk in zip(gamma, var, diff)), sp.zeros(len(x), 1))


class DiscreteVP:
    """A discrete DDPM schedule (diffusers' ``alphas_cumprod``): log α_n = ½ log ᾱ_n at t_n = (n+1)/N,
    log α piecewise linear in t and t piecewise linear in log α (methods.md §2.2)."""

    def __init__(self, alphas_cumprod):
        abar = np.asarray(alphas_cumprod, dtype=float)
        if abar.ndim != 1 or abar.size < 2 or not np.all((abar > 0) & (abar <= 1)) or np.any(np.diff(abar) >= 0):
            raise ValueError("alphas_cumprod must be a decreasing 1-d array in (0, 1]")
        self.name = "VP-discrete"
        self.t_grid = (np.arange(abar.size) + 1.0) / abar.size
        self.log_alpha = 0.5 * np.log(abar)
        self.t_range = (float(self.t_grid[0]), 1.0)
        # t = 0 is the clean data (α = 1, σ = 0: diffusers' final_sigmas_type="zero"); between 0 and 1/N,
        # log α is linear as between grid points
        self._t, self._la = np.append(0.0, self.t_grid), np.append(0.0, self.log_alpha)

    @classmethod
    def scaled_linear(cls, beta_start=0.00085, beta_end=0.012, steps=1000) -> "DiscreteVP":
        """Stable Diffusion's: β_n = linspace(√β_start, √β_end, N)², ᾱ = Π(1 − β)."""
        betas = np.linspace(beta_start**0.5, beta_end**0.5, steps) ** 2
        return cls(np.cumprod(1.0 - betas))

    def __call__(self, what: str, ts):
        la = np.interp(np.asarray(ts, dtype=float), self._t, self._la)
        alpha, sigma = np.exp(la), np.sqrt(-np.expm1(2 * la))
        with np.errstate(divide="ignore"):
            values = {"alpha": alpha, "sigma": sigma, "lam": la - np.log(sigma)}
        if what not in values:
            raise ValueError(f"a discrete schedule gives alpha, sigma and lam, not {what!r}")
        return values[what]

    def t_of_lambda(self, lam):
        log_alpha = -0.5 * np.logaddexp(0.0, -2.0 * np.asarray(lam, dtype=float))
        return np.interp(log_alpha, self.log_alpha[::-1], self.t_grid[::-1])


from sdekit.sampling import SAMPLERS, START_CALLS, STOCHASTIC, nfe, sample, timesteps  # noqa: E402  (the samplers read these schedules)
from sdekit.nets import MLPNetwork  # noqa: E402
from sdekit.diffusion_models import network, probability_flow, reverse_sde  # noqa: E402
from sdekit.inversion import bdia, controlled, edict, fireflow, invert, reversible_heun, rf_solver  # noqa: E402
