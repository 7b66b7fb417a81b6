"""Helpers for convergence studies (in the spirit of DiffEqDevTools.test_convergence)."""
from __future__ import annotations

import numpy as np


def manufactured(L, tspan=(0.0, 1.0)):
    """(problem, exact y(t1)) for y' = L y + N(y, t) with exact solution y*(t) = 1 + sin(t + i)/2,
    N = sin(y_{i+1}) − sin(y*_{i+1}) + y*' − L y* (nonlinear, t-dependent, coupling the components;
    L a numeric array given as linear=), from y*(t0) on ``tspan`` (t1 < t0 runs backwards)."""
    import sympy as sp

    import sdekit as sk
    d = L.shape[0]
    y, t = sk.states("y", d), sk.t
    ys = sp.Matrix([1 + sp.sin(t + i) / 2 for i in range(d)])
    Lys = sp.Matrix(L) * ys
    N = sp.Matrix([sp.sin(y[(i + 1) % d]) - sp.sin(ys[(i + 1) % d]) + sp.diff(ys[i], t) - Lys[i] for i in range(d)])
    exact = sp.lambdify(t, ys, "numpy")
    t0, t1 = tspan
    prob = sk.ODEProblem(sk.ODE(y, linear=L, nonlinear=N), y0=np.array(exact(t0), dtype=float).ravel(), tspan=tspan)
    return prob, np.array(exact(t1), dtype=float).ravel()


def observed_order(dts, errors) -> float:
    """Least-squares slope of log(error) against log(dt): the observed order (methods.md §7)."""
    dts, errors = np.asarray(dts, float), np.asarray(errors, float)
    if dts.shape != errors.shape or dts.size < 2:
        raise ValueError("observed_order needs >= 2 (dt, error) pairs of equal length")
    if np.any(errors <= 0) or not np.all(np.isfinite(errors)):
        raise ValueError(f"errors must be positive and finite, got {errors}")
    return float(np.polyfit(np.log(dts), np.log(errors), 1)[0])


def step_counts(sol) -> dict:
    """The step counts of ``sol.stats`` (nf, naccept, nreject), without what describes the driver (the array
    path adds ``driver``, ``phi_actions`` and ``action_products``): two backends' runs compare on these."""
    from .abi import STATS
    return {k: sol.stats[k] for k in STATS}


def gaussian_flow(schedule, mu, std: float):
    """(ε(x, t), flow(x, T, t)) for data N(μ, std² I) under ``schedule``: the exact noise prediction
    ε = (x − α x̂)/σ with x̂ = μ + α std²/(α² std² + σ²) (x − α μ), and the probability-flow ODE's exact map from
    time T to t, x_t = α_t μ + √((α_t² std² + σ_t²)/(α_T² std² + σ_T²)) (x_T − α_T μ) (the marginal's scale ratio)."""
    mu = np.asarray(mu, dtype=float)

    def eps(x, t):
        a, s = float(schedule("alpha", t)), float(schedule("sigma", t))
        return (x - a * (mu + a * std**2 / (a * a * std**2 + s * s) * (x - a * mu))) / s

    def flow(x, T, t):
        aT, sT, at, st = (float(schedule(w, u)) for u in (T, t) for w in ("alpha", "sigma"))
        return at * mu + np.sqrt(at**2 * std**2 + st**2) / np.sqrt(aT**2 * std**2 + sT**2) * (x - aT * mu)
    return eps, flow


def stable_operator(kind: str, n: int, seed: int, stiffness: float):
    """A random stable operator scaled to ‖A‖_1 = stiffness, for φ-action tests: "diffusion" (a symmetric
    negative-definite stencil), "upwind" (a non-normal advection–diffusion stencil), "sparse" (random sparse
    entries shifted left past their Gershgorin discs), all CSR; or "dense" (a dense random matrix shifted left of
    its spectrum)."""
    import scipy.sparse
    rng = np.random.default_rng(seed)
    if kind == "diffusion":
        A = scipy.sparse.diags([np.ones(n - 1), -2 - rng.random(n), np.ones(n - 1)], [-1, 0, 1])
    elif kind == "upwind":
        A = scipy.sparse.diags([1.0 + rng.random(n - 1), -2.5 - rng.random(n), 0.3 * np.ones(n - 1)], [-1, 0, 1])
    elif kind == "sparse":
        R = scipy.sparse.random(n, n, density=0.2, random_state=seed, data_rvs=rng.standard_normal)
        A = R - scipy.sparse.diags(np.asarray(abs(R).sum(axis=1)).ravel() + 0.1)
    elif kind == "dense":
        M = rng.normal(size=(n, n)) / np.sqrt(n)
        A = M - (np.abs(np.linalg.eigvals(M)).max() + 0.5) * np.eye(n)
    else:
        raise ValueError(f"kind must be 'diffusion', 'upwind', 'sparse' or 'dense', got {kind!r}")
    norm = abs(A).sum(axis=0).max()
    return scipy.sparse.csr_matrix(A * (stiffness / norm)) if scipy.sparse.issparse(A) else A * (stiffness / norm)
