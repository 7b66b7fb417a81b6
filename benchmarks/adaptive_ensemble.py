"""Adaptive ensemble benchmark (`sdekit bench adaptive_ensemble`): per-trajectory step control in the fused Numba kernel
against the numpy reference driver (which takes the same steps).

Model: the neural ensemble of benchmarks/neural_sde.py, y' = A y + f(y) (+ 0.1 dW), A =
diag(-1, -2, -3, -4), f an MLP 4→32→32→4 (tanh), on [0, 1], trajectories starting at
y0 = 1 + N(0, 1) so every lane takes its own steps.  ODE: Tsit5 at rtol = atol = 1e-6 and
Exprb43 at 1e-6; SDE: SRA1 at rtol = atol = 1e-2.  Reports wall time excluding compile, the
cold compile, accepted/rejected steps, accepted trajectory-steps per second, and the largest
difference between the backends.  Writes benchmarks/results/adaptive_ensemble.{json,md,png}.
"""
from __future__ import annotations

import os
import tempfile
import time

import numpy as np
import sympy as sp

from .common import machine, write
CASES = [("Tsit5", False, 1e-6), ("Exprb43", False, 1e-6), ("SRA1", True, 1e-2)]


def ensemble(n, stochastic):
    import sdekit as sk

    y = sk.states("y", 4)
    net = sk.MLP("f", [4, 32, 32, 4], activation="tanh")
    drift = sp.diag(-1, -2, -3, -4) * y + net(y)
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b))
               for a, b in zip(net.sizes[:-1], net.sizes[1:])]
    if stochastic:
        model = sk.SDE(y, drift=drift, diffusion=sp.Rational(1, 10), noise="diagonal")
        prob = sk.SDEProblem(model, y0=np.ones(4), tspan=(0.0, 1.0), nets={"f": weights})
    else:
        prob = sk.ODEProblem(sk.ODE(y, drift), y0=np.ones(4), tspan=(0.0, 1.0), nets={"f": weights})
    y0 = 1.0 + rng.normal(size=(n, 4))
    return sk.Ensemble(prob, y0=y0, seed=0)


def run(n_numba, n_numpy, progress=True):
    import sdekit as sk

    rows = []
    cases = CASES
    if progress:
        from tqdm.auto import tqdm
        cases = tqdm(CASES, desc="adaptive benchmark")
    for method, stochastic, tol in cases:
        ts = np.linspace(0.0, 1.0, 11)
        ref = None
        for backend, n in (("numpy", n_numpy), ("numba", n_numba)):
            ens = ensemble(n, stochastic)
            go = lambda: sk.solve(ens, method, rtol=tol, atol=tol, saveat=ts, backend=backend)  # noqa: E731
            compile_s = None
            if backend == "numba":
                t0 = time.perf_counter()
                sk.solve(ensemble(1, stochastic), method, rtol=tol, atol=tol, backend=backend)
                compile_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            sol = go()
            wall = time.perf_counter() - t0
            diff = None
            if backend == "numpy":
                ref = sol
            else:
                k = min(n_numpy, n)
                diff = float(np.abs(sol.y[:k] - ref.y[:k]).max())
            rows.append(dict(method=method, sde=stochastic, tol=tol, backend=backend, n=n, time_s=wall,
                             compile_s=compile_s, naccept=sol.stats["naccept"], nreject=sol.stats["nreject"],
                             nf=sol.stats["nf"], traj_steps_per_s=sol.stats["naccept"] / wall,
                             max_diff_vs_numpy=diff, retcode=sol.retcode))
    return rows


def markdown(rows, meta) -> str:
    lines = ["# Adaptive ensembles: fused Numba kernel vs numpy driver (neural ODE/SDE, d=4, MLP 4-32-32-4)", "",
             f"{meta['cpus']} cpus, {meta['numba_threads']} numba threads; LLVM opt level {meta['numba_opt']}.",
             "", "| method | tol | backend | N | time [s] | compile [s] | accepted | rejected | traj-steps/s "
             "| max diff vs numpy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        comp = "-" if r["compile_s"] is None else f"{r['compile_s']:.1f}"
        diff = "-" if r["max_diff_vs_numpy"] is None else f"{r['max_diff_vs_numpy']:.1e}"
        lines.append(f"| {r['method']} | {r['tol']:g} | {r['backend']} | {r['n']} | {r['time_s']:.3f} | {comp} | "
                     f"{r['naccept']} | {r['nreject']} | {r['traj_steps_per_s']:.3g} | {diff} |")
    lines += ["", "The numpy driver solves fewer trajectories; traj-steps/s compares the rates.  ODE differences are "
              "rounding (same steps); SDE differences are at the tolerance (a step end one ulp apart can land on the "
              "next tree position, ~1.5e-16 T away).  Compile: a fresh sdekit cache (Numba's cache of the runtime "
              "helpers may be warm: see compile_times for a cold machine)."]
    return "\n".join(lines) + "\n"


def figure(rows):
    def draw(path):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(7, 4))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        for k, backend in enumerate(("numpy", "numba")):
            vals = [next(r["traj_steps_per_s"] for r in rows if r["method"] == m and r["backend"] == backend)
                    for m in methods]
            ax.bar(np.arange(len(methods)) + 0.4 * k, vals, 0.4, label=backend)
        ax.set_xticks(np.arange(len(methods)) + 0.2, methods)
        ax.set_yscale("log")
        ax.set_ylabel("accepted trajectory-steps / s")
        ax.set_title("adaptive ensembles (higher is better)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return draw


def main(quick=False):
    os.environ.setdefault("SDEKIT_CACHE_DIR", tempfile.mkdtemp(prefix="sdekit-bench-"))
    n_numba, n_numpy = (64, 16) if quick else (4096, 256)
    rows = run(n_numba, n_numpy)
    meta = dict(machine(), quick=quick)
    write("adaptive_ensemble", dict(meta=meta, rows=rows), markdown(rows, meta), figure(rows), quick)
    return rows


if __name__ == "__main__":
    main()
