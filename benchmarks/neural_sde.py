"""Neural SDE ensemble benchmark (`sdekit bench neural_sde`).

dy = (A y + f(y)) dt + 0.1 dW, A = diag(-1, -2, -3, -4), f an MLP 4→32→32→4 (tanh),
Euler–Maruyama on [0, 1] with dt = 0.01 (the call a user writes) and dt = 2^-7, N = 1024 and
65536, float64 and float32.  Reports wall time excluding compile, GFLOP/s and its fraction of the
machine's dgemm/sgemm rate measured in the same run, for sdekit's fused Numba kernel, its numpy
backend, plain numpy (a vectorised EM loop with numpy's normals) and, when installed
(``pip install -e '.[bench]'``), torchsde (``sdeint``, its default BrownianInterval) and diffrax
(``jit(vmap(diffeqsolve))`` with UnsafeBrownianPath, independent normals per step, and with a
VirtualBrownianTree of tol dt/2, a time-addressed path like ours).  Writes
benchmarks/results/neural_sde.{json,md,png}.
"""
from __future__ import annotations

import os
import tempfile
from functools import partial

import numpy as np
import sympy as sp

from .common import best, gemm_rate, machine, skipped, timed, write

SIZES = (1024, 65536)
DTS = (("0.01", 0.01), ("2^-7", 2.0**-7))
#: the issue's targets: (N, dtype, competitor) -> least speed-up of sdekit at dt = 0.01
TARGETS = {(65536, "float64", "torchsde"): 3.0, (65536, "float64", "diffrax (UnsafeBrownianPath)"): 1.25,
           (65536, "float64", "diffrax (VirtualBrownianTree)"): 10.0, (65536, "float32", "torchsde"): 5.0,
           (1024, "float64", "torchsde"): 10.0, (1024, "float64", "diffrax (UnsafeBrownianPath)"): 10.0}


def problem(n):
    import sdekit as sk

    y = sk.states("y", 4)
    net = sk.MLP("f", [4, 32, 32, 4], activation="tanh")
    model = sk.SDE(y, drift=sp.diag(-1, -2, -3, -4) * y + net(y), diffusion=sp.Rational(1, 10), noise="diagonal")
    rng = np.random.default_rng(0)
    weights = [(rng.normal(size=(b, a)) / np.sqrt(a), 0.1 * rng.normal(size=b))
               for a, b in zip(net.sizes[:-1], net.sizes[1:])]
    prob = sk.SDEProblem(model, y0=np.ones(4), tspan=(0.0, 1.0), nets={"f": weights})
    return sk.Ensemble(prob, n=n, seed=0), net


def torchsde_runner(n, steps, dtype):
    """A zero-argument callable running the same SDE with torchsde (EM, same weights, batch n, no
    autograd); None if torchsde is not installed."""
    try:
        import torch
        import torchsde
    except ImportError:
        return None
    tdt = {"float64": torch.float64, "float32": torch.float32}[dtype]
    rng = np.random.default_rng(0)
    sizes = [4, 32, 32, 4]
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = torch.nn.Linear(a, b)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(rng.normal(size=(b, a)) / np.sqrt(a)))
            lin.bias.copy_(torch.tensor(0.1 * rng.normal(size=b)))
        layers += [lin] + ([torch.nn.Tanh()] if i < len(sizes) - 2 else [])
    net = torch.nn.Sequential(*layers).to(tdt)
    lam = -torch.arange(1, 5, dtype=tdt)

    class SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return lam * y + net(y)

        def g(self, t, y):
            return torch.full_like(y, 0.1)

    sde, y0 = SDE(), torch.ones(n, 4, dtype=tdt)
    ts = torch.tensor([0.0, 1.0], dtype=tdt)
    def run():
        with torch.no_grad():
            return torchsde.sdeint(sde, y0, ts, method="euler", dt=1.0 / steps)

    return run


def diffrax_runner(n, steps, dtype, brownian):
    """A zero-argument callable running the same SDE with diffrax (Euler, jit + vmap over n
    trajectories); ``brownian`` "tree" (VirtualBrownianTree, tol dt/2) or "unsafe"
    (UnsafeBrownianPath).  None if diffrax is not installed."""
    try:
        import diffrax
        import jax
        import jax.numpy as jnp
        import lineax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", dtype == "float64")  # float32 runs: time in float32 too
    jdt = {"float64": jnp.float64, "float32": jnp.float32}[dtype]
    rng = np.random.default_rng(0)
    sizes = [4, 32, 32, 4]
    layers = [(jnp.asarray(rng.normal(size=(b, a)) / np.sqrt(a), jdt), jnp.asarray(0.1 * rng.normal(size=b), jdt))
              for a, b in zip(sizes[:-1], sizes[1:])]
    lam, sigma, dt = -jnp.arange(1, 5, dtype=jdt), jnp.full(4, 0.1, jdt), 1.0 / steps
    shape = jax.ShapeDtypeStruct((4,), jdt)

    def drift(t, y, args):
        h = y
        for i, (W, b) in enumerate(layers):
            h = W @ h + b
            h = jnp.tanh(h) if i < len(layers) - 1 else h
        return lam * y + h

    def one(key):
        if brownian == "tree":
            bm, adjoint = diffrax.VirtualBrownianTree(0.0, 1.0, tol=dt / 2, shape=shape, key=key), \
                diffrax.RecursiveCheckpointAdjoint()
        else:
            bm, adjoint = diffrax.UnsafeBrownianPath(shape=shape, key=key), diffrax.DirectAdjoint()
        terms = diffrax.MultiTerm(diffrax.ODETerm(drift),
                                  diffrax.ControlTerm(lambda t, y, a: lineax.DiagonalLinearOperator(sigma), bm))
        return diffrax.diffeqsolve(terms, diffrax.Euler(), 0.0, 1.0, dt, jnp.ones(4, jdt), max_steps=steps + 1,
                                   saveat=diffrax.SaveAt(t1=True), adjoint=adjoint).ys[-1]

    keys = jax.random.split(jax.random.PRNGKey(0), n)
    fn = jax.jit(jax.vmap(one))

    def run():   # the x64 flag is global: set it again for every call (the second pass mixes dtypes)
        jax.config.update("jax_enable_x64", dtype == "float64")
        out = fn(keys).block_until_ready()
        assert out.dtype == jdt, (out.dtype, jdt)
        return out

    return run


def numpy_runner(n, steps, dtype):
    """Plain numpy: the same EM loop written by hand, vectorised over the n trajectories."""
    rng = np.random.default_rng(0)
    sizes = [4, 32, 32, 4]
    layers = [((rng.normal(size=(b, a)) / np.sqrt(a)).astype(dtype), (0.1 * rng.normal(size=b)).astype(dtype))
              for a, b in zip(sizes[:-1], sizes[1:])]
    lam, h = -np.arange(1, 5, dtype=dtype), dtype(1.0 / steps)

    def run():
        noise = np.random.default_rng(1)
        y = np.ones((n, 4), dtype)
        for _ in range(steps):
            z = y
            for i, (W, b) in enumerate(layers):
                z = z @ W.T + b
                z = np.tanh(z) if i < len(layers) - 1 else z
            y = y + h * (lam * y + z) + dtype(0.1) * np.sqrt(h) * noise.standard_normal((n, 4), dtype=dtype)
        return y

    return run


FLOPS_PER_STEP = 2 * (4 * 32 + 32 * 32 + 32 * 4) + 2 * (32 + 32 + 4) + 6 * 4   # MLP + biases + EM update


def _row(backend, dt_name, steps, dtype, n, run_s, compile_s=None):
    gf = n * steps * FLOPS_PER_STEP / run_s / 1e9
    return {"backend": backend, "dt": dt_name, "steps": steps, "dtype": dtype, "n": n, "time_s": run_s,
            "compile_s": compile_s, "gflops": gf, "fraction_of_gemm": None, "traj_steps_per_s": n * steps / run_s}


def jobs(quick):
    """(backend, dt name, steps, dtype, n, make) for every row; ``make()`` gives (warm-up, run) or None."""
    import sdekit as sk
    sizes = SIZES[:1] if quick else SIZES
    out = []
    for dtype in ("float64", "float32"):
        for n in sizes:
            for dt_name, dt in DTS:
                steps = round(1 / dt)

                def make(n=n, dt=dt, dtype=dtype):
                    ens, _ = problem(n)
                    fn = partial(sk.solve, ens, "EM", dt=dt, dtype=dtype, saveat=[1.0])
                    return fn, fn
                out.append(("sdekit numba", dt_name, steps, dtype, n, make))
            if not quick:
                def make_ode(n=n, dtype=dtype):     # the same model without noise: what the Brownian tree costs
                    ens, net = problem(n)
                    y = sk.states("y", 4)
                    model = sk.ODE(y, sp.diag(-1, -2, -3, -4) * y + net(y))
                    ode = sk.Ensemble(sk.ODEProblem(model, y0=np.ones(4), tspan=(0.0, 1.0), nets=ens.problem.nets), n=n)
                    fn = partial(sk.solve, ode, "Euler", dt=0.01, dtype=dtype, saveat=[1.0])
                    return fn, fn
                out.append(("sdekit numba, ODE (no noise)", "0.01", 100, dtype, n, make_ode))
            for name, runner in (("torchsde", torchsde_runner), ("diffrax (UnsafeBrownianPath)",
                                                                 partial(diffrax_runner, brownian="unsafe")),
                                 ("diffrax (VirtualBrownianTree)", partial(diffrax_runner, brownian="tree")),
                                 ("plain numpy", numpy_runner)):
                def make(runner=runner, n=n, dtype=dtype):
                    fn = runner(n, 100, np.dtype(dtype).type if runner is numpy_runner else dtype)
                    return None if fn is None else (fn, fn)
                out.append((name, "0.01", 100, dtype, n, make))
    ens, _ = problem(1024)
    fn = partial(sk.solve, ens, "EM", dt=0.01, backend="numpy", saveat=[1.0])
    out.append(("sdekit numpy backend", "0.01", 100, "float64", 1024, lambda: (fn, fn)))
    return out


def run(quick=False, progress=True):
    from tqdm.auto import tqdm
    os.environ.setdefault("SDEKIT_CACHE_DIR", tempfile.mkdtemp(prefix="sdekit-bench-"))
    rows, skips, timed_rows, missing = [], [], [], set()
    todo = jobs(quick)
    for backend, dt_name, steps, dtype, n, make in tqdm(todo, desc="neural SDE", disable=not progress):
        if backend.split(" ")[0] in missing:
            continue
        made = make()
        if made is None:
            missing.add(backend.split(" ")[0])
            skips.append(skipped(backend.split(" ")[0]))
            continue
        warm, fn = made
        first = timed(warm)               # compile (sdekit: the cache is shared by the dts of a dtype)
        run_s = best(fn, 3 if n <= 1024 else 2)
        row = _row(backend, dt_name, steps, dtype, n, run_s, first - run_s)
        rows.append(row)
        timed_rows.append((row, fn))
    # second pass, in reverse order: this shared 2-core VM slows down under sustained load
    for row, fn in tqdm(list(reversed(timed_rows)), desc="second pass", disable=not progress):
        run_s = best(fn, 2)
        if run_s < row["time_s"]:
            row.update(_row(row["backend"], row["dt"], row["steps"], row["dtype"], row["n"], run_s, row["compile_s"]))
    rates = {"float64": gemm_rate(np.float64), "float32": gemm_rate(np.float32)}   # last: BLAS threads linger
    for r in rows:
        r["fraction_of_gemm"] = r["gflops"] / rates[r["dtype"]]
    return {"gemm_gflops": rates, **machine(), "rows": rows, "skipped": skips, "targets": targets(rows)}


def targets(rows) -> list:
    """The issue's speed-up targets at dt = 0.01, met or missed by how much."""
    def rate(backend, n, dtype):
        r = [x for x in rows if x["backend"] == backend and x["n"] == n and x["dtype"] == dtype and x["dt"] == "0.01"]
        return r[0]["traj_steps_per_s"] if r else None
    out = []
    for (n, dtype, other), want in TARGETS.items():
        ours, theirs = rate("sdekit numba", n, dtype), rate(other, n, dtype)
        if ours is None or theirs is None:
            continue
        got = ours / theirs
        out.append({"n": n, "dtype": dtype, "versus": other, "target": want, "speedup": got, "met": got >= want})
    return out


def markdown(result) -> str:
    g = result["gemm_gflops"]
    md = ["# Neural SDE ensemble (d = 4, MLP 4-32-32-4 tanh, EM on [0, 1])", "",
          f"dgemm {g['float64']:.1f} GFLOP/s, sgemm {g['float32']:.1f} GFLOP/s (numpy, same run); "
          f"{result['cpus']} cpus, {result['numba_threads']} numba threads. Versions: "
          + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".", "",
          "| backend | dt | dtype | N | time [s] | compile [s] | GFLOP/s | of gemm | traj-steps/s |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        comp = f"{r['compile_s']:.1f}" if r["compile_s"] is not None and r["compile_s"] > 0.05 else "-"
        md.append(f"| {r['backend']} | {r['dt']} | {r['dtype']} | {r['n']} | {r['time_s']:.3f} | {comp} | "
                  f"{r['gflops']:.2f} | {100 * r['fraction_of_gemm']:.0f}% | {r['traj_steps_per_s']:.3g} |")
    if result["targets"]:
        md += ["", "Targets (sdekit numba at dt = 0.01 over the competitor, same N and dtype):", "",
               "| N | dtype | versus | target | speed-up | |", "|---|---|---|---|---|---|"]
        for t in result["targets"]:
            md.append(f"| {t['n']} | {t['dtype']} | {t['versus']} | ≥ {t['target']:g}x | {t['speedup']:.2f}x | "
                      f"{'met' if t['met'] else 'missed by %.0f%%' % (100 * (1 - t['speedup'] / t['target']))} |")
    md += [""] + [f"- {s}" for s in result["skipped"]]
    md += ["", "What limits sdekit (N = 65536, dt = 0.01): " + limits(result["rows"])]
    md += ["", "GFLOP/s counts the MLP, its biases and the EM update (2 flops per multiply-add) per trajectory-step, "
           "the same count for every backend. sdekit reads its one Brownian tree on tspan at every dt (dt = 0.01 and "
           "2^-7 are both tree points, 1.5-3 tree nodes per step). Time excludes compile (the compile column: first "
           "call minus the best warm call; sdekit's cache is shared by the dts of a dtype) and is the best of the warm "
           "calls of a first pass and of a second pass in reverse order (this shared VM slows down under load)."]
    return "\n".join(md) + "\n"


def limits(rows) -> str:
    """The Brownian tree's share of a step (SDE vs the same model as an ODE) and the MLP's rate."""
    parts = []
    for dtype in ("float64", "float32"):
        sde = [r for r in rows if r["backend"] == "sdekit numba" and r["dt"] == "0.01" and r["n"] == 65536
               and r["dtype"] == dtype]
        ode = [r for r in rows if r["backend"].startswith("sdekit numba, ODE") and r["n"] == 65536 and r["dtype"] == dtype]
        if sde and ode:
            share = 1 - ode[0]["time_s"] / sde[0]["time_s"]
            parts.append(f"{dtype}: the noise (tree splits: Philox4x32 + Box–Muller, 2m = 8 normals per split, ~2 splits "
                         f"per step) is {100 * share:.0f}% of the step; without it the kernel runs the MLP at "
                         f"{100 * ode[0]['fraction_of_gemm']:.0f}% of gemm (32-wide tanh layers vectorised across lanes)")
    small = [r for r in rows if r["backend"] == "sdekit numba" and r["dt"] == "0.01" and r["n"] == 1024
             and r["dtype"] == "float64"]
    big = [r for r in rows if r["backend"] == "sdekit numba" and r["dt"] == "0.01" and r["n"] == 65536
           and r["dtype"] == "float64"]
    if small and big:
        parts.append(f"at N = 1024 sdekit runs {small[0]['traj_steps_per_s']:.3g} traj-steps/s, about its N = 65536 rate "
                     f"({big[0]['traj_steps_per_s']:.3g}): it has no per-step overhead to lose, and the competitors' "
                     "overhead at N = 1024 is smaller than the targets assumed, so a 10x there needs a faster step, "
                     "not less overhead")
    return "; ".join(parts) + "." if parts else "not measured (quick run)."


def figure(result):
    def draw(path):
        import matplotlib.pyplot as plt
        rows = [r for r in result["rows"] if r["dt"] == "0.01" and "ODE" not in r["backend"]]
        groups = sorted({(r["n"], r["dtype"]) for r in rows})
        names = list(dict.fromkeys(r["backend"] for r in rows))
        fig, ax = plt.subplots(figsize=(10, 4.5))
        w = 0.8 / len(names)
        for k, name in enumerate(names):
            vals = [next((r["traj_steps_per_s"] for r in rows if r["backend"] == name and (r["n"], r["dtype"]) == g),
                         0.0) for g in groups]
            ax.bar(np.arange(len(groups)) + k * w, vals, w, label=name)
        ax.set_xticks(np.arange(len(groups)) + 0.4 - w / 2, [f"N={n}\n{d}" for n, d in groups])
        ax.set_yscale("log")
        ax.set_ylabel("trajectory-steps / s")
        ax.set_title("neural SDE ensemble, EM, dt = 0.01 (higher is better)")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return draw


def main(quick=False):
    result = run(quick)
    write("neural_sde", result, markdown(result), figure(result), quick)
    return result


if __name__ == "__main__":
    main()
