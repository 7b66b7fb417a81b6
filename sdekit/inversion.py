"""Inversion of diffusion samplers: from data back to noise (issue 17), on the host.

* :func:`invert` — any deterministic sampler of :mod:`sdekit.sampling` run on the reversed grid
  (DDIM inversion and its higher-order analogues, Song et al. 2021 §4.3; Mokady et al. 2023), or
  each step solved to a tolerance as the fixed point of the sampler's own step (ReNoise, Garibi et
  al. 2024; accelerated iterative inversion, Pan et al. 2023) with Anderson acceleration (Walker &
  Ni 2011), or by Newton–Krylov (GMRES on finite-difference Jacobian-vector products, the
  Jacobian-free Newton of Knoll & Keyes 2004, as in Newton–Raphson inversion, Samuel et al. 2024),
  with a per-trajectory retcode when it does not converge.
* :func:`edict` — EDICT (Wallace, Gokul & Naik 2023, eqs. 9–11): two coupled DDIM sequences mixed
  with weight p, inverted algebraically: noise → data → noise to rounding, whatever the network.
* :func:`bdia` — BDIA-DDIM (Zhang, Lewis & Kleijn 2023, eq. 14): z_{i−1} = γ(z_{i+1} − z_i) −
  γΔ(t_i→t_{i+1}|z_i) + Δ(t_i→t_{i−1}|z_i) + z_i, one network call per step, inverted algebraically.
* :func:`rf_solver`, :func:`fireflow` — second-order steps of a rectified flow's ODE dx/dt = v(x, t)
  in either direction (sampling and inversion): RF-Solver's Taylor step with v' by a finite
  difference (Wang et al. 2024, eq. 9; two calls a step), FireFlow's midpoint step reusing the
  previous midpoint velocity (Deng et al. 2024, Alg. 1; one call a step); :func:`controlled`, RF-Inversion's
  controlled velocity towards a reference sample (Rout et al. 2024, eqs. 8 and 15).
* :func:`reversible_heun` — the algebraically reversible Heun method for ODEs and Stratonovich
  SDEs (Kidger et al. 2021, "Efficient and accurate gradients for neural SDEs", §3), forward and
  backward, one f (and g) evaluation per step.

Arrays are batches (n, ...) of the caller's type (numpy, torch, CuPy): the updates are arithmetic on
them.  Network calls are counted (``nfe``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdekit.abi import MAX_ITERS, RETCODES, SUCCESS
from sdekit.kernels.cuda_arrays import host, like as as_like
from sdekit.sampling import SAMPLERS, SINGLESTEP, STOCHASTIC, Dual, Network, check_warmup, run, sampler_method

#: inversion solvers of :func:`invert`
SOLVERS = ("explicit", "fixed-point", "newton")


@dataclass
class Inversion:
    """What :func:`invert` found: the latent ``x`` at ts[-1], the network calls ``nfe``, per step
    and trajectory the residual ‖step(x_{k+1}; t_{k+1}→t_k) − x_k‖_rms (``residual``, (steps, n):
    how far sampling the step back lands from where it began; None for multistep samplers, whose
    step depends on history), and per trajectory ``retcodes`` ("Success", or "MaxIters" where a
    fixed-point step did not reach ``tol``)."""

    x: object
    nfe: int
    residual: np.ndarray | None
    retcodes: list

    @property
    def success(self) -> bool:
        return all(r == RETCODES[SUCCESS] for r in self.retcodes)


def _rms(a) -> np.ndarray:
    """Per trajectory (axis 0) root-mean-square, as a numpy array."""
    a = _numpy(a)
    return np.sqrt(np.mean(a.reshape(a.shape[0], -1) ** 2, axis=1))


def _increasing(ts):
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.diff(ts) > 0) or not np.all(np.isfinite(ts)):
        raise ValueError("an inversion grid ts must be a 1-d array of at least two finite, strictly increasing times "
                         "(data to noise: e.g. timesteps(schedule, n)[::-1])")
    return ts


def invert(schedule, model, x0, ts, method: str = "ddim", prediction: str = "eps", solver: str = "explicit",
           tol: float = 1e-10, maxiter: int = 50, anderson: int = 3, check: bool = True,
           warmup: str = "lower") -> Inversion:
    """Invert ``method`` from ``x0`` at ts[0] (small t, data) to ts[-1] (noise) on the increasing grid
    ``ts``.  ``solver="explicit"``: the sampler's step run forwards in t (DDIM inversion: ε taken at
    the step's start).  ``solver="fixed-point"``: each x_{k+1} solves step(x_{k+1}; t_{k+1}→t_k) =
    x_k to ``tol`` (rms per trajectory) by the iteration x ← x + (x_k − step(x)) started at the
    explicit step, Anderson-accelerated with memory ``anderson`` (0: plain), at most ``maxiter``
    iterations (singlestep samplers).  ``solver="newton"``: Newton's method on the same equation, each
    correction from GMRES with Jacobian-vector products — exact through the network's tangent pass when
    it has ``jvp`` (``sk.diffusion.MLPNetwork``), else finite differences (one network call each; numpy
    arrays, a network acting row by row).  ``check``: compute ``residual`` (one more step per step, its
    network calls not in ``nfe``).  ``warmup``: a multistep sampler's first step (``sampling.sample``): "singlestep"
    keeps DPM-Solver++(3M), DEIS-3 and UniPC-3 at their listed order, where the default's first-order start caps them
    one lower (an inversion starts at the data, where x̂ moves from the first step)."""
    method = sampler_method(method)
    if method not in SAMPLERS or method in STOCHASTIC:
        raise ValueError(f"invert takes a deterministic sampler, one of "
                         f"{', '.join(m for m in SAMPLERS if m not in STOCHASTIC)}; got {method!r}")
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    check_warmup(warmup)
    if solver != "explicit" and method not in SINGLESTEP:
        raise ValueError(f"the {solver} inversion solves one step at a time: give a singlestep sampler "
                         f"({', '.join(SINGLESTEP)}), not {method!r}")
    if not (isinstance(maxiter, (int, np.integer)) and maxiter >= 1) or not (isinstance(anderson, (int, np.integer))
                                                                           and anderson >= 0):
        raise ValueError(f"maxiter must be an integer >= 1 and anderson one >= 0, got {maxiter!r}, {anderson!r}")
    if not (np.isfinite(tol) and tol > 0):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    ts = _increasing(ts)
    net = Network(model, prediction, schedule)
    n = x0.shape[0]
    converged = np.ones(n, dtype=bool)
    if method not in SINGLESTEP:        # multistep samplers and FireFlow/RF-Solver: their own loop, run forwards in t
        return Inversion(run(schedule, net, x0, ts, method, warmup=warmup), net.calls, None, [RETCODES[SUCCESS]] * n)
    step, x, xs = SINGLESTEP[method], x0, [x0]
    for s, t in zip(ts[:-1], ts[1:]):
        guess = step(schedule, net, x, float(s), float(t))
        if solver != "explicit":
            back = lambda z, s=s, t=t: step(schedule, net, z, float(t), float(s))   # noqa: E731
            if solver == "fixed-point":
                guess, ok = _fixed_point(back, x, guess, tol, maxiter, anderson)
            else:               # exact JVPs: the network's tangent pass, or torch's forward-mode AD
                exact = callable(getattr(model, "jvp", None)) or (type(x0).__module__.startswith("torch")
                                                                  and not hasattr(model, "jvp"))   # jvp=None: FD
                jvp = (lambda z, v: back(Dual(z, v)).tangent) if exact else None
                guess, ok = _newton(back, x, guess, tol, maxiter, jvp)
            converged &= ok
        x = guess
        xs.append(x)
    calls, residual = net.calls, None
    if check:
        residual = np.array([_rms(step(schedule, net, xs[k + 1], float(ts[k + 1]), float(ts[k])) - xs[k])
                             for k in range(len(ts) - 1)])
    return Inversion(x, calls, residual, [RETCODES[SUCCESS] if c else RETCODES[MAX_ITERS] for c in converged])


def _fixed_point(back, target, x, tol, maxiter, m):
    """Solve back(x) = target per trajectory: the residual r = target − back(x), the iteration
    x ← x + r, Anderson type II over the last ``m`` differences (Walker & Ni 2011, eq. 2.1,
    least squares per trajectory).  Returns (x, converged per row); converged rows keep their x
    (the network still sees the whole batch)."""
    done = np.zeros(x.shape[0], dtype=bool)
    dx, dr, prev = [], [], None
    for _ in range(maxiter):
        r = target - back(x)
        done |= _rms(r) <= tol
        if done.all():
            break
        step = r
        if m and prev is not None:
            dx.append(x - prev[0])
            dr.append(r - prev[1])
            del dx[:-m], dr[:-m]
            step = r
            for j, g in enumerate(_anderson_weights(r, dr)):
                step = step - _per_row(g, x) * (dx[j] + dr[j])
        prev = (x, r)
        keep = _per_row((~done).astype(float), x)
        x = x + keep * step
    return x, done


#: trajectories of at most this many numbers take Newton's step from their own Jacobian block (built column by
#: column, batched over the trajectories, then solved row by row); larger ones take GMRES on the whole batch
DIRECT_MAX = 16


def _newton(back, target, x, tol, maxiter, jvp=None):
    """Solve back(x) = target per trajectory by Newton: J δ = r with r = target − back(x), J the
    Jacobian of back, from ``jvp(x, v)`` (exact, a tangent pass) or finite differences (back(x + εv) − back(x))/ε
    with ε = √u (1 + ‖x_i‖) per trajectory.  Trajectories act independently (a network acting row by row), so J
    is block diagonal: up to DIRECT_MAX numbers a trajectory, its blocks are built from d JVPs batched over the
    trajectories and solved row by row (exact Newton); beyond, GMRES (scipy) on the whole batch.  Converged rows
    are frozen.  torch tensors are solved on numpy copies: the network sees the caller's type and device, the
    result comes back in it.  Returns (x, converged per row)."""
    like = x
    if not isinstance(x, np.ndarray):
        if not type(x).__module__.startswith("torch"):
            raise ValueError("solver='newton' takes numpy arrays or torch tensors (the GMRES runs in scipy); use "
                             "'fixed-point' for CuPy")

        def device(a):
            return as_like(a, like)
        back_t, jvp_t = back, jvp
        back = lambda z: _numpy(back_t(device(z)))                  # noqa: E731
        if jvp_t is not None:
            jvp = lambda z, v: _numpy(jvp_t(device(z), device(v)))  # noqa: E731
        x, target = _numpy(x), _numpy(target)
    rows, d = x.shape[0], int(np.prod(x.shape[1:]))
    done = np.zeros(rows, dtype=bool)
    for _ in range(maxiter):
        fx = back(x)
        r = target - fx
        done |= _rms(r) <= tol
        if done.all():
            break
        r[done] = 0.0
        step = x.shape[:1] + (1,) * (x.ndim - 1)
        root_u = float(np.sqrt(np.finfo(x.dtype).eps)) if x.dtype.kind == "f" else 1.4901161193847656e-08
        eps = (root_u * (1.0 + np.sqrt(np.sum(x.reshape(rows, d) ** 2, axis=1)))).reshape(step)

        def jv(v, x=x, fx=fx):
            if jvp is not None:
                return np.asarray(jvp(x, v))
            return (back(x + eps * v) - fx) / eps
        if d <= DIRECT_MAX:
            J = np.empty((rows, d, d))
            for j in range(d):
                e = np.zeros((rows, d))
                e[:, j] = 1.0
                J[:, :, j] = jv(e.reshape(x.shape)).reshape(rows, d)
            try:
                delta = np.linalg.solve(J, r.reshape(rows, d, 1))[..., 0]
            except np.linalg.LinAlgError:                  # a singular block: its least-squares step
                delta = (np.linalg.pinv(J) @ r.reshape(rows, d, 1))[..., 0]
            delta = delta.astype(x.dtype, copy=False)
        else:
            from scipy.sparse.linalg import LinearOperator, gmres
            delta, _ = gmres(LinearOperator((x.size, x.size), matvec=lambda v: jv(v.reshape(x.shape)).ravel(),
                                            dtype=x.dtype), r.ravel(),
                             rtol=1e-3 * tol / max(_rms(r).max(), tol), atol=0.0, restart=min(x.size, 30), maxiter=3)
        x = x + (delta.reshape(x.shape) * (~done).reshape(step)).astype(x.dtype, copy=False)
    if not isinstance(like, np.ndarray):
        return device(x), done
    return x, done


def _numpy(a) -> np.ndarray:
    """A numpy array of a numpy, torch or CuPy array."""
    return np.asarray(host(a))


def _per_row(values, like):
    """Per-trajectory numbers ``values`` (n,) shaped (n, 1, ...) in ``like``'s array type and device."""
    return as_like(np.asarray(values, dtype=float).reshape((like.shape[0],) + (1,) * (like.ndim - 1)), like)


def _anderson_weights(r, dr) -> np.ndarray:
    """γ (m, n): per row the least-squares γ = argmin ‖r − ΔR γ‖ (ridge 1e-12·tr ΔRᵀΔR)."""
    n = r.shape[0]
    R = np.stack([_numpy(a).reshape(n, -1).astype(np.float64) for a in dr], -1)     # (n, d, m), float64 (float32
    A = np.einsum("ndi,ndj->nij", R, R)                                                 # inputs: the ridge survives)
    b = np.einsum("ndi,nd->ni", R, _numpy(r).reshape(n, -1).astype(np.float64))
    bad = ~(np.isfinite(A).all(axis=(1, 2)) & np.isfinite(b).all(axis=1))      # a diverging row: plain step
    A[bad], b[bad] = np.eye(A.shape[-1]), 0.0
    ridge = 1e-12 * np.einsum("nii->n", A)[:, None, None] + 1e-300
    return np.linalg.solve(A + ridge * np.eye(A.shape[-1]), b[..., None])[..., 0].T


# ---- exactly invertible coupled steps -----------------------------------------------------------


def _ddim_ab(schedule, s, t):
    """DDIM from s to t in noise prediction, x_t = a x_s + b ε(x_s, s): a = α_t/α_s, b = σ_t − aσ_s."""
    a_s, a_t = float(schedule("alpha", s)), float(schedule("alpha", t))
    a = a_t / a_s
    return a, float(schedule("sigma", t)) - a * float(schedule("sigma", s))


def edict(schedule, model, x, ts, p: float = 0.93, prediction: str = "eps", y=None, inverse: bool = False):
    """EDICT (Wallace et al. 2023, eqs. 9–11) on the grid ``ts`` (decreasing: sample; give
    ``inverse=True`` and the same grid to invert).  The pair (x, y) starts as (x, x) unless ``y`` is
    given; per step (two network calls)
    x' = a x + b ε(y), y' = a y + b ε(x'), x'' = p x' + (1 − p) y', y'' = p y' + (1 − p) x'';
    the inverse undoes these in reverse order.  Returns (x, y, nfe)."""
    if not 0 < p <= 1:
        raise ValueError(f"the EDICT mixing weight p must be in (0, 1], got {p!r}")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not np.all(np.diff(ts) < 0):
        raise ValueError("ts must be the sampling grid: at least two strictly decreasing times (also with inverse=True)")
    net = Network(model, prediction, schedule)
    y = x if y is None else y
    pairs = list(zip(ts[:-1], ts[1:]))
    if not inverse:
        for s, t in pairs:
            a, b = _ddim_ab(schedule, s, t)
            x = a * x + b * net.noise(y, float(s))
            y = a * y + b * net.noise(x, float(s))
            x = p * x + (1 - p) * y
            y = p * y + (1 - p) * x
        return x, y, net.calls
    for s, t in reversed(pairs):
        a, b = _ddim_ab(schedule, s, t)
        y = (y - (1 - p) * x) / p
        x = (x - (1 - p) * y) / p
        y = (y - b * net.noise(x, float(s))) / a
        x = (x - b * net.noise(y, float(s))) / a
    return x, y, net.calls


def bdia(schedule, model, x, ts, gamma: float = 1.0, prediction: str = "eps", previous=None, inverse: bool = False):
    """BDIA-DDIM (Zhang et al. 2023, eq. 14) on the decreasing grid ``ts``.  Sampling: the first step
    is DDIM, then z_{i−1} = γ z_{i+1} + (1 − γ) z_i − γΔ(t_i→t_{i+1}|z_i) + Δ(t_i→t_{i−1}|z_i), with
    Δ(t_i→t_j|z) the DDIM increment from z (one network call, ε(z_i, t_i), shared by both).
    ``previous``: z at ts[1] (default: that DDIM step).  Returns (z at ts[-1], z at ts[-2], nfe):
    the pair the inverse starts from.  ``inverse=True``: ``x`` is z at ts[-1], ``previous`` z at
    ts[-2] (default: one DDIM inversion step from x, for data that was not sampled), and the map is
    solved for z_{i+1} (γ > 0); returns (z at ts[0], z at ts[1], nfe) — sampling from that pair
    gives x and previous back."""
    if not 0 < gamma <= 1:
        raise ValueError(f"the BDIA weight gamma must be in (0, 1], got {gamma!r}")
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 3 or not np.all(np.diff(ts) < 0):
        raise ValueError("ts must be the sampling grid: at least three strictly decreasing times")
    net = Network(model, prediction, schedule)

    def increments(z, i):               # Δ(t_i → t_{i−1} | z) (against the sampling order) and Δ(t_i → t_{i+1} | z)
        e = net.noise(z, float(ts[i]))
        (a_up, b_up), (a_dn, b_dn) = _ddim_ab(schedule, ts[i], ts[i - 1]), _ddim_ab(schedule, ts[i], ts[i + 1])
        return (a_up - 1) * z + b_up * e, (a_dn - 1) * z + b_dn * e

    last = len(ts) - 1
    if not inverse:
        if previous is None:
            a, b = _ddim_ab(schedule, ts[0], ts[1])
            previous = a * x + b * net.noise(x, float(ts[0]))
        before, z = x, previous
        for i in range(1, last):
            up, down = increments(z, i)
            before, z = z, gamma * before + (1 - gamma) * z - gamma * up + down
        return z, before, net.calls
    if previous is None:
        a, b = _ddim_ab(schedule, ts[-1], ts[-2])
        previous = a * x + b * net.noise(x, float(ts[-1]))
    z, after = previous, x                     # z_i and z_{i-1}, i = last - 1
    for i in range(last - 1, 0, -1):
        up, down = increments(z, i)
        z, after = (after - (1 - gamma) * z + gamma * up - down) / gamma, z
    return z, after, net.calls


# ---- reversible Heun --------------------------------------------------------------------------


def reversible_heun(f, y, ts, g=None, dW=None, z=None, inverse: bool = False):
    """The reversible Heun method (Kidger et al. 2021, §3, eqs. 6–7) for dy = f(t, y) dt (+ g(t, y)∘dW,
    Stratonovich) on the grid ``ts`` (either direction), with the auxiliary state z (default: y):
    z_{n+1} = 2y_n − z_n + f(t_n, z_n)h + g(t_n, z_n)ΔW_n,
    y_{n+1} = y_n + ½(f(t_n, z_n) + f(t_{n+1}, z_{n+1}))h + ½(g(t_n, z_n) + g(t_{n+1}, z_{n+1}))ΔW_n.
    ``g(t, z)``: shaped like ΔW (diagonal noise, multiplied elementwise) or (n, d, m) against ΔW
    (n, m); ``dW``: the grid's increments, one per step.  ``inverse=True``: (y, z) are the state
    at ts[-1] and the steps are undone exactly, z_n = 2y_{n+1} − z_{n+1} − f(t_{n+1}, z_{n+1})h −
    g(t_{n+1}, z_{n+1})ΔW_n, then y_n.  Order 2 for ODEs, strong order ½ for SDEs; one f (and g)
    evaluation per step.  Returns (y, z, evaluations of f)."""
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not (np.all(np.diff(ts) > 0) or np.all(np.diff(ts) < 0)):
        raise ValueError("ts must be a 1-d grid of at least two strictly monotone times")
    if (g is None) != (dW is None):
        raise ValueError("an SDE needs both g= and dW= (one increment per step); an ODE neither")
    if dW is not None and len(dW) != len(ts) - 1:
        raise ValueError(f"dW must hold one increment per step: {len(ts) - 1}, got {len(dW)}")
    z = y if z is None else z
    calls = 0

    def field(t, state):
        nonlocal calls
        calls += 1
        return f(t, state), (None if g is None else g(t, state))

    def increment(fz, gz, h, n):            # f h + G ΔW_n
        if gz is None:
            return h * fz
        dw = dW[n]
        return h * fz + (gz * dw if gz.shape == dw.shape else (gz @ dw[..., None])[..., 0])

    order = range(len(ts) - 1) if not inverse else reversed(range(len(ts) - 1))
    here = 0 if not inverse else len(ts) - 1
    fz, gz = field(ts[here], z)
    for n in order:
        there = n + 1 if not inverse else n
        h = ts[n + 1] - ts[n]
        if not inverse:
            z_new = 2 * y - z + increment(fz, gz, h, n)
            f1, g1 = field(ts[there], z_new)
            y = y + 0.5 * (increment(fz, gz, h, n) + increment(f1, g1, h, n))
        else:
            z_new = 2 * y - z - increment(fz, gz, h, n)
            f1, g1 = field(ts[there], z_new)
            y = y - 0.5 * (increment(fz, gz, h, n) + increment(f1, g1, h, n))
        z, fz, gz = z_new, f1, g1
    return y, z, calls


# ---- rectified flows ----------------------------------------------------------------------------


def _grid(ts):
    ts = np.asarray(ts, dtype=float)
    if ts.ndim != 1 or ts.size < 2 or not (np.all(np.diff(ts) > 0) or np.all(np.diff(ts) < 0)) \
            or not np.all(np.isfinite(ts)):
        raise ValueError("ts must be a 1-d grid of at least two finite, strictly monotone times "
                         "(decreasing: sample; increasing: invert)")
    return ts


def rf_solver(velocity, x, ts):
    """RF-Solver-2 (Wang et al. 2024, eq. 9): x_{i+1} = x_i + h v_i + ½h² v'_i with
    v'_i = (v(x_i + ½h v_i, t_i + ½h) − v_i)/(½h), i.e. the explicit midpoint rule; order 2, two
    network calls a step, on ``ts`` in either direction.  Returns (x, nfe)."""
    ts, calls = _grid(ts), 0
    for s, t in zip(ts[:-1], ts[1:]):
        h = float(t - s)
        v = velocity(x, float(s))
        v_dot = (velocity(x + (0.5 * h) * v, float(s) + 0.5 * h) - v) * (2.0 / h)
        x = x + h * v + (0.5 * h * h) * v_dot
        calls += 2
    return x, calls


def fireflow(velocity, x, ts):
    """FireFlow (Deng et al. 2024, Alg. 1): the midpoint step x_{i+1} = x_i + h v(x_i + ½h v̂_i, t_i + ½h)
    whose half step takes v̂_i, the previous step's midpoint velocity (v(x_0, t_0) at the first step),
    so each step costs one network call (one more at the start); second order, on ``ts`` in either
    direction.  Returns (x, nfe)."""
    ts = _grid(ts)
    v_hat, calls = velocity(x, float(ts[0])), 1
    for s, t in zip(ts[:-1], ts[1:]):
        h = float(t - s)
        v_hat = velocity(x + (0.5 * h) * v_hat, float(s) + 0.5 * h)
        x = x + h * v_hat
        calls += 1
    return x, calls


def controlled(velocity, reference, t_reference: float, strength):
    """RF-Inversion's controlled flow (Rout et al. 2024, eq. 8 inverting, eq. 15 editing; our time: data
    at t = 0, noise at t = 1): v̂(x, t) = v(x, t) + γ(t) (u(x, t) − v(x, t)), with u = (y − x)/(t_y − t)
    the straight-line velocity that reaches ``reference`` y at ``t_reference`` t_y (1: a noise
    sample, when inverting; 0: the image being edited, when sampling).  ``strength`` γ is a number
    or a function of t (the paper's η on [τ_start, τ_stop]); γ = 0 is the plain flow, γ = 1 the
    straight path to y.  Returns the velocity, for :func:`fireflow`, :func:`rf_solver` or any
    integrator."""
    gamma = strength if callable(strength) else (lambda t: strength)

    def v_hat(x, t):
        g = float(gamma(t))
        if not 0.0 <= g <= 1.0:
            raise ValueError(f"the controller's strength must lie in [0, 1], got {g} at t = {t}")
        v = velocity(x, t)
        return v if g == 0.0 else v + g * ((reference - x) / (t_reference - t) - v)
    return v_hat
