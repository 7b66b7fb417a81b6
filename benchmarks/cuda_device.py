"""The device run of the CUDA backend (issue 15): ``python -m benchmarks.cuda_device [--quick]``.

Prepared to fit a few minutes of a lent GPU (``pip install cupy-cuda12x`` first).  It
1. checks ``backend="cuda"`` against Numba for RK4 (fixed) and Tsit5 (adaptive), float64 and float32,
   on the model of tests/test_cuda.py (37 trajectories): max difference, equal retcodes and stats;
2. measures the DiffEqGPU Lorenz benchmark: ρ swept over [0, 21] across the ensemble, σ = 10,
   β = 8/3, tspan (0, 1), Tsit5 at fixed dt = 0.001 (1000 steps), float32 and float64, N = 10^4 ... 10^7
   trajectories: trajectory-steps per second (DiffEqGPU's V100 figure: 5.8e10) — wall time of the
   launch with the copies back, compile excluded.
Writes benchmarks/results/cuda_device.{json,md,png} with the device named.  Without CuPy or a GPU it
says which is missing and exits 2 (nothing is written).
"""
from __future__ import annotations

import sys
import time

import numpy as np
import sympy as sp

from .common import machine, write


def lorenz(n):
    import sdekit as sk
    u = sk.states("u", 3)
    rho = sk.params("rho")
    f = sp.Matrix([10 * (u[1] - u[0]), u[0] * (rho - u[2]) - u[1], u[0] * u[1] - sp.Rational(8, 3) * u[2]])
    prob = sk.ODEProblem(sk.ODE(u, f), y0=np.array([1.0, 0.0, 0.0]), tspan=(0.0, 1.0),
                         params={"rho": np.linspace(0.0, 21.0, n)})
    return sk.Ensemble(prob, n=n)


def agreement():
    import sdekit as sk
    sys.path.insert(0, "tests")
    from test_cuda import ensemble
    rows = []
    for method, kw in (("RK4", dict(dt=0.01)), ("Tsit5", dict(rtol=1e-7, atol=1e-9))):
        for dtype in ("float64", "float32"):
            ens = ensemble("dense")
            a = sk.solve(ens, method, backend="numba", dtype=dtype, **kw)
            b = sk.solve(ens, method, backend="cuda", dtype=dtype, **kw)
            rows.append(dict(method=method, dtype=dtype, max_abs_diff=float(np.max(np.abs(a.y - b.y))),
                             retcodes_equal=list(a.retcodes) == list(b.retcodes), stats_numba=a.stats,
                             stats_cuda=b.stats))
    return rows


def timed(make, method, dt, steps, sizes):
    """Trajectory-steps/s of ``method`` at fixed ``dt`` on ``make(n)`` ensembles, float32 and float64:
    the wall time of a solve (launch and copies back), its compile excluded by a first small solve."""
    import sdekit as sk
    rows = []
    for dtype in ("float32", "float64"):
        sk.solve(make(16), method, dt=dt, backend="cuda", dtype=dtype)
        for n in sizes:
            ens = make(n)
            t0 = time.perf_counter()
            sol = sk.solve(ens, method, dt=dt, backend="cuda", dtype=dtype)
            wall = time.perf_counter() - t0
            rows.append(dict(dtype=dtype, n=n, wall_s=wall, traj_steps_per_s=n * steps / wall,
                             all_success=bool(np.all(np.asarray(sol.retcodes) == "Success"))))
            print(rows[-1], flush=True)
    return rows


def throughput(sizes):
    """The DiffEqGPU Lorenz benchmark: Tsit5, dt = 0.001, 1000 steps."""
    return timed(lorenz, "Tsit5", 0.001, 1000, sizes)


def neural_ode(sizes):
    """The neural ODE of benchmarks/adaptive_ensemble.py (MLP 4-32-32-4 in the kernel), RK4 at dt = 0.01
    (100 steps) (the neural SDE needs the tree on CUDA: not printed yet)."""
    from .adaptive_ensemble import ensemble
    return timed(lambda n: ensemble(n, False), "RK4", 0.01, 100, sizes)


def main(quick: bool = False) -> int:
    from sdekit.kernels.cuda_backend import require_gpu
    try:
        cp = require_gpu()
    except RuntimeError as e:
        print(e)
        return 2
    props = cp.cuda.runtime.getDeviceProperties(0)
    device = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    result = dict(machine=machine(), device=device, agreement=agreement(),
                  lorenz=throughput([10**4, 10**5] if quick else [10**4, 10**5, 10**6, 10**7]),
                  neural_ode=neural_ode([10**4] if quick else [10**4, 10**5, 10**6]))
    lines = [f"# CUDA backend on {device}", "", "| method | dtype | max |Δ| vs Numba | retcodes equal |",
             "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['dtype']} | {r['max_abs_diff']:.2e} | {r['retcodes_equal']} |"
              for r in result["agreement"]]
    lines += ["", "Lorenz, Tsit5, dt = 0.001, 1000 steps (DiffEqGPU V100: 5.8e10 trajectory-steps/s)", "",
              "| dtype | N | wall s | trajectory-steps/s |", "|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['n']} | {r['wall_s']:.3f} | {r['traj_steps_per_s']:.3g} |" for r in result["lorenz"]]
    lines += ["", "Neural ODE (MLP 4-32-32-4), RK4, dt = 0.01, 100 steps", "",
              "| dtype | N | wall s | trajectory-steps/s |", "|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['n']} | {r['wall_s']:.3f} | {r['traj_steps_per_s']:.3g} |"
              for r in result["neural_ode"]]
    def figure(path):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for dtype in ("float32", "float64"):
            rs = [r for r in result["lorenz"] if r["dtype"] == dtype]
            ax.loglog([r["n"] for r in rs], [r["traj_steps_per_s"] for r in rs], "o-", label=dtype)
        ax.axhline(5.8e10, ls=":", c="k", label="DiffEqGPU, V100 (f32)")
        ax.set(xlabel="trajectories N", ylabel="trajectory-steps / s", title=f"Lorenz Tsit5, {device}")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)

    write("cuda_device", result, "\n".join(lines) + "\n", figure, quick)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(quick="--quick" in sys.argv))
