"""The device run of the CUDA backend (issue 15), one prepared script for a lent GPU's few minutes.

On the device machine (the ``device`` tool; its image has CuPy, Numba and SymPy but no package index):
``bash benchmarks/cuda_device.sh [--quick]`` installs sdekit offline and runs
``python -m benchmarks.cuda_device``; ``--host`` is its dry run on the CPU: the same code with
tests/fake_cupy.py standing in for CuPy (the kernels compiled as host C++), small sizes, a temporary folder —
it checks this script and backend="cuda"'s launch code, not the GPU (tests/test_bench.py runs it).  It
1. measures the DiffEqGPU Lorenz benchmark: ρ swept over [0, 21] across the ensemble, σ = 10,
   β = 8/3, tspan (0, 1), Tsit5 at fixed dt = 0.001 (1000 steps), float32 and float64, N = 10^4 ... 10^7
   trajectories: trajectory-steps per second (DiffEqGPU's V100 figure: 5.8e10) by the kernel's time (CUDA
   events) and by the whole solve's (validation and the inputs' copies in; y0 comes from the device, so the
   saved states stay there), compile excluded;
2. the neural SDE of benchmarks/neural_sde.py (MLP 4-32-32-4 in the kernel, weights in shared memory,
   EM at dt = 0.01), N = 10^4 ... 10^7, float32 and float64: trajectory-steps/s and FLOP/s against the
   device's peak (FP32 / FP64 lanes per SM × SMs × clock × 2, from the compute capability); the same SDE
   without its network at the largest N (what the tree and Philox cost alone); and once more, float32 at the
   largest N, with the layers printed as loops (the A/B of ``emit_cuda.UNROLL_LAYER``) and under
   ``__launch_bounds__(128, 4)`` (the A/B of ``print_cuda.LAUNCH_BOUNDS``: 25 % occupancy where 19 %);
3. the array-step kernel (Σ c_k a_k over 8 CuPy arrays of 2^24 numbers): GB/s moved;
4. checks ``backend="cuda"`` against Numba, float64 and float32, on the models of tests/test_cuda.py:
   RK4 (fixed), Tsit5 and Exprb43 (adaptive, dense L: per-thread φ blocks), EM and SRA1 (the printed
   Philox and (W, H) tree; SRA1 adaptive too): max difference, equal retcodes and stats;
5. runs the ``gpu``-marked tests of tests/test_cuda.py (backend="cuda" against Numba, device arrays, the
   array-step kernel) in the time left and records their summary line.
The measurements come first: a run cut short by the device's command limit keeps the figures only a GPU gives
(stages not started by TIME_LIMIT_S are listed as skipped), and a stage that fails records its traceback
(``failed``) without losing the others.
Each benchmark kernel's threads per block, registers, local and shared bytes (CUDA's function attributes) are
recorded with its rows: what limits its occupancy.
Writes benchmarks/results/cuda_device.{json,md,png} with the device named and issue 15's targets met or
missed.  Without CuPy or a GPU it says which is missing and exits 2 (nothing is written).
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

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


def agreement(first=None):
    """backend="cuda" against Numba on the models of tests/test_cuda.py (``first``: only that many cases)."""
    import sdekit as sk
    sys.path.insert(0, "tests")
    from test_cuda import SDE, ensemble, sde_ensemble
    sra1 = next(m for m in SDE if m.name == "SRA1")
    em = next(m for m in SDE if m.name == "EM")
    cases = [("RK4", lambda: ensemble("dense"), dict(dt=0.01)),
             ("Tsit5", lambda: ensemble("dense"), dict(rtol=1e-7, atol=1e-9)),
             ("Exprb43", lambda: ensemble("dense", n=64), dict(rtol=1e-7, atol=1e-9)),
             ("EM", lambda: sde_ensemble("general", em, n=256), dict(dt=0.01)),
             ("SRA1", lambda: sde_ensemble("diagonal", sra1, n=256), dict(dt=0.01)),
             ("SRA1", lambda: sde_ensemble("diagonal", sra1, n=256), dict(rtol=1e-3, atol=1e-3))]
    rows = []
    for method, make, kw in cases[:first]:
        for dtype in ("float64", "float32"):
            ens = make()
            a = sk.solve(ens, method, backend="numba", dtype=dtype, **kw)
            b = sk.solve(ens, method, backend="cuda", dtype=dtype, **kw)
            rows.append(dict(method=method + (" adaptive" if "rtol" in kw else ""), dtype=dtype,
                             max_abs_diff=float(np.max(np.abs(a.y - b.y))),
                             retcodes_equal=list(a.retcodes) == list(b.retcodes), stats_numba=a.stats,
                             stats_cuda=b.stats))
            print(rows[-1], flush=True)
    return rows


#: cudaDevAttrClockRate (kHz): CUDA 13 dropped cudaDeviceProp.clockRate, the attribute stays
CLOCK_RATE_ATTRIBUTE = 13


def device_facts(cp) -> dict:
    """Name, compute capability, SM count and SM clock (kHz) of device 0, read through CuPy."""
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    clock = props.get("clockRate")
    if not clock:
        try:
            clock = cp.cuda.runtime.deviceGetAttribute(CLOCK_RATE_ATTRIBUTE, 0)
        except Exception:         # noqa: BLE001 - no clock: the peak is unknown, the rest still runs
            clock = None
    return dict(name=name, cc=(props["major"], props["minor"]), sms=props["multiProcessorCount"], clock_khz=clock)


def peak_flops(facts) -> dict:
    """FP32 and FP64 peak (FLOP/s) from the compute capability's lanes per SM (CUDA C Programming Guide,
    "Arithmetic Instructions" table), SM count and clock: 2 flops per FMA lane per cycle (NaN without a clock)."""
    fp32, fp64 = {(7, 0): (64, 32), (8, 0): (64, 32), (9, 0): (128, 64)}.get(tuple(facts["cc"]), (128, 2))
    rate = facts["sms"] * (facts["clock_khz"] or float("nan")) * 1e3 * 2
    return {"float32": fp32 * rate, "float64": fp64 * rate}


#: the device tool stops a command at 600 s: sizes and stages not started by this time are skipped (and listed);
#: the gpu-marked tests, last, get what is left of it and GRACE_S
TIME_LIMIT_S = 420
GRACE_S = 60
CLOCK = {"start": time.perf_counter(), "skipped": []}


def timed(make, method, dt, steps, sizes, dtypes=("float32", "float64")):
    """Trajectory-steps/s of ``method`` at fixed ``dt`` on ``make(n)`` ensembles whose y0 (in the run's float type)
    and per-trajectory parameters are on the device (CuPy arrays: they stay there, and so do the saved states:
    ``sol.y`` is CuPy), float32 and float64.  Per size: the
    kernel's time (CUDA events, ``CudaKernel.last_launch_s``) and the whole solve's (``sk.plan``'s validation,
    the inputs' copies in, the launch), the compile excluded by a first small solve."""
    import sdekit as sk
    from sdekit.kernels.backend import Chunk
    from sdekit.solve import plan
    import cupy as xp
    rows = []
    for dtype in dtypes:
        sk.solve(make(16), method, dt=dt, backend="cuda", dtype=dtype)
        for n in sizes:
            if time.perf_counter() - CLOCK["start"] > TIME_LIMIT_S:
                CLOCK["skipped"].append(f"{method} {dtype} N = {n}")
                print(f"skipped {method} {dtype} N = {n}: past {TIME_LIMIT_S} s", flush=True)
                continue
            ens = make(n)
            prob = ens.problem
            prob = type(prob)(prob.model, y0=prob.y0, tspan=prob.tspan, nets=prob.nets,
                              params={k: xp.asarray(v) if np.ndim(v) else v for k, v in prob.params.items()})
            ens = sk.Ensemble(prob, y0=xp.asarray(ens.y0, dtype=dtype), seed=ens.seed)   # y0 in the run's float type
            t0 = time.perf_counter()
            p = plan(ens, method, dt=dt, backend="cuda", dtype=dtype)
            raw = p.kernel.run(p.inputs, Chunk(0, p.n))
            sol = p.solution(raw)
            solve_s = time.perf_counter() - t0
            kernel_s = p.kernel.last_launch_s
            rows.append(dict(dtype=dtype, n=n, kernel_s=kernel_s, solve_s=solve_s,
                             traj_steps_per_s=n * steps / kernel_s, solve_traj_steps_per_s=n * steps / solve_s,
                             states_on=type(sol.y).__module__.split(".")[0],
                             all_success=bool(np.all(np.asarray(sol.retcodes) == "Success")),
                             resources=p.kernel.last_launch_resources))
            print(rows[-1], flush=True)
    return rows


def throughput(sizes):
    """The DiffEqGPU Lorenz benchmark: Tsit5, dt = 0.001, 1000 steps."""
    return timed(lorenz, "Tsit5", 0.001, 1000, sizes)


def neural_sde(sizes, peak, dtypes=("float32", "float64")):
    """The neural SDE of benchmarks/neural_sde.py, EM at dt = 0.01 (100 steps): trajectory-steps/s and FLOP/s
    (its FLOPS_PER_STEP) against the device's peak."""
    from .neural_sde import FLOPS_PER_STEP, problem
    rows = timed(lambda n: problem(n)[0], "EM", 0.01, 100, sizes, dtypes)
    for r in rows:
        r["flops"] = r["traj_steps_per_s"] * FLOPS_PER_STEP
        r["fraction_of_peak"] = r["flops"] / peak[r["dtype"]]
    return rows


def neural_sde_layer_loops(sizes, peak):
    """The same, float32, at the largest size, with the network's layers printed as loops and inlined at each stage
    (``emit_cuda.UNROLL_LAYER = 0``: the form before unrolled layers, but for the shared copies' 16-byte alignment):
    the A/B of that choice on this device.  ``problem`` builds a new model per call, so the source is printed anew."""
    from sdekit.codegen import emit_cuda
    unrolled = emit_cuda.UNROLL_LAYER
    emit_cuda.UNROLL_LAYER = 0
    try:
        return neural_sde(sizes[-1:], peak, dtypes=("float32",))
    finally:
        emit_cuda.UNROLL_LAYER = unrolled


def noise_only(sizes, dtypes=("float32", "float64")):
    """The neural SDE's model without its network (drift A y, the same diagonal noise, EM at dt = 0.01): what the
    (W, H) tree and Philox cost a step on their own, to read the neural SDE's FLOP fraction against."""
    import sdekit as sk
    from .neural_sde import problem

    def make(n):
        ens = problem(n)[0]
        model = ens.problem.model
        y = model.form.states
        bare = sk.SDE(y, drift=sp.diag(-1, -2, -3, -4) * sp.Matrix(y), diffusion=sp.Rational(1, 10), noise="diagonal")
        return sk.Ensemble(sk.SDEProblem(bare, y0=np.ones(4), tspan=(0.0, 1.0)), n=n, seed=0)
    return timed(make, "EM", 0.01, 100, sizes, dtypes)


def neural_sde_launch_bounds(sizes, peak, bounds=(128, 4)):
    """The same, float32, at the largest size, with the kernel printed under ``__launch_bounds__(128, 4)``
    (``print_cuda.LAUNCH_BOUNDS``: at most 128 registers, four blocks an SM where 145 registers allow three; ptxas
    spills nothing at 128, ``sdekit bench cuda_static``): whether occupancy limits it on this device."""
    from sdekit.codegen import print_cuda
    print_cuda.LAUNCH_BOUNDS = bounds
    try:
        return neural_sde(sizes[-1:], peak, dtypes=("float32",))
    finally:
        print_cuda.LAUNCH_BOUNDS = None


def array_step(n=1 << 24):
    """The array-step kernel on 8 CuPy arrays of n float32 numbers: bytes moved (8 reads, 1 write) per second."""
    import cupy as cp
    from sdekit.kernels.cuda_arrays import fused_cuda
    xs = [cp.random.standard_normal(n, dtype=cp.float32) for _ in range(8)]
    coefs = list(np.linspace(-1.0, 1.0, 8))
    fused_cuda(coefs, xs)
    cp.cuda.runtime.deviceSynchronize()
    t0 = time.perf_counter()
    for _ in range(20):
        out = fused_cuda(coefs, xs)
    cp.cuda.runtime.deviceSynchronize()
    wall = (time.perf_counter() - t0) / 20
    want = sum(c * x.get().astype(np.float64) for c, x in zip(coefs, xs)).astype(np.float32)    # on the host
    return dict(n=n, wall_s=wall, gb_per_s=9 * 4 * n / wall / 1e9, max_abs_diff=float(np.abs(out.get() - want).max()))


def resource_lines(result) -> list:
    """One line per measured kernel (benchmark and float type): its threads per block, registers, local and shared
    bytes, from the rows' ``resources`` (the same for every N)."""
    seen = {}
    for stage in ("lorenz", "neural_sde", "noise_only", "neural_sde_layer_loops", "neural_sde_launch_bounds"):
        for r in result.get(stage, []):
            if r.get("resources"):
                seen.setdefault(f"{stage} {r['dtype']}", r["resources"])
    return [f"- {k}: {v['threads_per_block']} threads per block, {v['registers']} registers, {v['local_bytes']} B local "
            f"per thread, {v['shared_bytes']} B shared per block" for k, v in seen.items()] or ["- none recorded"]


#: issue 15's targets on an H100/H200-class device
TARGETS = {"lorenz": 1e11, "neural_fp32_fraction": 0.30}


def target_lines(result) -> list:
    """Each target, met or missed, from the measured rows (kernel time; float32)."""
    lorenz = [r for r in result["lorenz"] if r["dtype"] == "float32"]
    neural = [r for r in result["neural_sde"] if r["dtype"] == "float32" and r["n"] >= 10**6]
    lines = []
    if lorenz:
        best = max(lorenz, key=lambda r: r["traj_steps_per_s"])
        lines.append(f"- Lorenz, float32: {best['traj_steps_per_s']:.3g} trajectory-steps/s at N = {best['n']} "
                     f"(target {TARGETS['lorenz']:.0e}: {'met' if best['traj_steps_per_s'] >= TARGETS['lorenz'] else 'missed'})")
    if neural:
        best = max(neural, key=lambda r: r["fraction_of_peak"])
        lines.append(f"- Neural SDE, float32, N >= 10^6: {100 * best['fraction_of_peak']:.1f}% of FP32 peak at N = {best['n']} "
                     f"(target {100 * TARGETS['neural_fp32_fraction']:.0f}%: "
                     f"{'met' if best['fraction_of_peak'] >= TARGETS['neural_fp32_fraction'] else 'missed'})")
    return lines or ["- no row at the targets' sizes (a quick, host or cut-short run)"]


#: trajectories per run: the device run, its --quick form, and the host dry run
SIZES = {"full": dict(lorenz=[10**4, 10**5, 10**6, 10**7], neural=[10**4, 10**5, 10**6, 10**7], array_step=1 << 24),
         "quick": dict(lorenz=[10**4, 10**5], neural=[10**4], array_step=1 << 24),
         "host": dict(lorenz=[64, 256], neural=[64], array_step=1 << 12)}


def gpu_tests() -> list:
    """The summary line of the gpu-marked tests of tests/test_cuda.py, run on this device in the time left (pytest's
    exit status and the end of its error output where it did not pass)."""
    import subprocess
    left = TIME_LIMIT_S + GRACE_S - (time.perf_counter() - CLOCK["start"])
    try:
        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n0", "-m", "gpu", "tests/test_cuda.py"],
                               capture_output=True, text=True, timeout=max(left, 1.0))
    except subprocess.TimeoutExpired as e:
        return [f"stopped after {e.timeout:.0f} s (the device's command limit)"]
    print(tests.stdout[-2000:], flush=True)
    lines = tests.stdout.strip().splitlines()[-1:]
    return lines if tests.returncode == 0 else lines + [f"pytest exit status {tests.returncode}", tests.stderr[-1000:]]


def main(quick: bool = False, host: bool = False, out: str | None = None) -> dict | None:
    """The device run's result (None without CuPy or a GPU: it says which is missing).  ``host``: the dry run
    — the same code with tests/fake_cupy.py standing in for CuPy (the kernels as host C++), small sizes, one
    agreement case, written to a temporary folder: it checks this script and the launch code, not the GPU.
    ``out``: a folder that gets ``cuda_device.partial.json`` after each stage (a run cut short keeps what it
    measured) and the finished json/md/png."""
    if host:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        import fake_cupy
        with fake_cupy.installed():
            return _run(True, True, out)
    return _run(quick, False, out)


def _run(quick: bool, host: bool, out: str | None) -> dict | None:
    from sdekit.kernels.cuda_backend import require_gpu
    try:
        cp = require_gpu()
    except RuntimeError as e:
        print(e)
        return None
    facts = device_facts(cp)
    device, peak = facts["name"], peak_flops(facts)
    if host:
        device += " (host dry run: not GPU figures)"
    sizes = SIZES["host" if host else "quick" if quick else "full"]
    CLOCK.update(start=time.perf_counter(), skipped=[])
    result = dict(machine=machine(), device=device, peak_flops=peak, skipped_for_time=CLOCK["skipped"])
    # the measurements first (they need only the GPU), then the checks against Numba (cold Numba compiles), then the
    # gpu-marked tests in the time left: a run cut short keeps the figures only a GPU gives
    stages = dict(lorenz=lambda: throughput(sizes["lorenz"]), neural_sde=lambda: neural_sde(sizes["neural"], peak),
                  noise_only=lambda: noise_only(sizes["neural"][-1:]),
                  neural_sde_layer_loops=lambda: neural_sde_layer_loops(sizes["neural"], peak),
                  neural_sde_launch_bounds=lambda: neural_sde_launch_bounds(sizes["neural"], peak),
                  array_step=lambda: array_step(sizes["array_step"]),
                  agreement=lambda: agreement(first=1 if host else None),
                  gpu_tests=lambda: ["not run (host dry run)"] if host else gpu_tests())
    empty = dict(array_step={}, gpu_tests=[])
    result["failed"] = {}
    for name, stage in stages.items():
        if name != "gpu_tests" and time.perf_counter() - CLOCK["start"] > TIME_LIMIT_S:
            CLOCK["skipped"].append(f"stage {name}")
            result[name] = empty.get(name, [])
            continue
        try:
            result[name] = stage()
        except Exception:        # noqa: BLE001 - one stage's failure must not lose the others' figures
            import traceback
            result["failed"][name] = traceback.format_exc()[-3000:]
            print(f"stage {name} failed:\n{result['failed'][name]}", flush=True)
            result[name] = empty.get(name, [])
        if out is not None:
            Path(out).mkdir(parents=True, exist_ok=True)
            (Path(out) / "cuda_device.partial.json").write_text(json.dumps(result, indent=2, default=float))
    result["targets"] = target_lines(result)
    lines = [f"# CUDA backend on {device}", "", f"gpu-marked tests: {' '.join(result['gpu_tests'])}", "",
             "Trajectory-steps/s by the kernel's time (CUDA events); the solve's time adds validation and the inputs' "
             "copies in (y0 and params come from the device; the saved states stay there).", "",
             "Targets:", *result["targets"], "",
             *([f"Skipped to stay inside the device's command limit: {', '.join(CLOCK['skipped'])}", ""]
               if CLOCK["skipped"] else []),
             "| method | dtype | max |Δ| vs Numba | retcodes equal |",
             "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['dtype']} | {r['max_abs_diff']:.2e} | {r['retcodes_equal']} |"
              for r in result["agreement"]]
    lines += ["", "Lorenz, Tsit5, dt = 0.001, 1000 steps (DiffEqGPU V100: 5.8e10 trajectory-steps/s)", "",
              "| dtype | N | kernel s | solve s | trajectory-steps/s (kernel) | (solve) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['n']} | {r['kernel_s']:.4f} | {r['solve_s']:.3f} | {r['traj_steps_per_s']:.3g} "
              f"| {r['solve_traj_steps_per_s']:.3g} |" for r in result["lorenz"]]
    lines += ["", "Neural SDE (MLP 4-32-32-4, weights in shared memory), EM, dt = 0.01, 100 steps; peak "
              f"FP32 {peak['float32'] / 1e12:.1f} TFLOP/s, FP64 {peak['float64'] / 1e12:.1f} TFLOP/s", "",
              "| dtype | N | kernel s | solve s | trajectory-steps/s (kernel) | GFLOP/s | of peak |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['dtype']} | {r['n']} | {r['kernel_s']:.4f} | {r['solve_s']:.3f} | {r['traj_steps_per_s']:.3g} "
              f"| {r['flops'] / 1e9:.0f} | {100 * r['fraction_of_peak']:.1f}% |" for r in result["neural_sde"]]
    lines += [f"| {r['dtype']}, layers as loops (A/B) | {r['n']} | {r['kernel_s']:.4f} | {r['solve_s']:.3f} "
              f"| {r['traj_steps_per_s']:.3g} | {r['flops'] / 1e9:.0f} | {100 * r['fraction_of_peak']:.1f}% |"
              for r in result["neural_sde_layer_loops"]]
    lines += [f"| {r['dtype']}, __launch_bounds__(128, 4) (A/B) | {r['n']} | {r['kernel_s']:.4f} | {r['solve_s']:.3f} "
              f"| {r['traj_steps_per_s']:.3g} | {r['flops'] / 1e9:.0f} | {100 * r['fraction_of_peak']:.1f}% |"
              for r in result["neural_sde_launch_bounds"]]
    lines += ["", "Kernel resources (CUDA's function attributes; what limits occupancy: registers × threads per block "
              "against the SM's 64 K registers, local bytes are per thread):", *resource_lines(result)]
    lines += ["", "The same SDE without its network (drift A y; EM, dt = 0.01): what the (W, H) tree and Philox cost "
              "a step on their own", "", "| dtype | N | kernel s | trajectory-steps/s (kernel) | network's share of a "
              "neural step |", "|---|---|---|---|---|"]
    neural_rate = {(r["dtype"], r["n"]): r["traj_steps_per_s"] for r in result["neural_sde"]}
    for r in result["noise_only"]:
        rate = neural_rate.get((r["dtype"], r["n"]))
        share = f"{100 * (1 - rate / r['traj_steps_per_s']):.0f}%" if rate else "–"
        lines.append(f"| {r['dtype']} | {r['n']} | {r['kernel_s']:.4f} | {r['traj_steps_per_s']:.3g} | {share} |")
    a = result["array_step"]
    if a:
        lines += ["", f"Array-step kernel, 8 float32 arrays of {a['n']}: {a['gb_per_s']:.0f} GB/s "
                  f"({1e3 * a['wall_s']:.2f} ms; max |Δ| vs a float64 sum on the host {a['max_abs_diff']:.1e})"]
    for name, trace in result["failed"].items():
        lines += ["", f"Stage {name} failed:", "", "```", trace.strip(), "```"]

    def figure(path):
        import matplotlib.pyplot as plt
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for dtype in ("float32", "float64"):
            rs = [r for r in result["lorenz"] if r["dtype"] == dtype]
            ax.loglog([r["n"] for r in rs], [r["traj_steps_per_s"] for r in rs], "o-", label=f"{dtype}, kernel")
            ax.loglog([r["n"] for r in rs], [r["solve_traj_steps_per_s"] for r in rs], "x--", label=f"{dtype}, solve")
        ax.axhline(5.8e10, ls=":", c="k", label="DiffEqGPU, V100 (f32)")
        ax.axhline(TARGETS["lorenz"], ls="-.", c="r", label="target")
        ax.set(xlabel="trajectories N", ylabel="trajectory-steps / s", title=f"Lorenz Tsit5, {device}")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=120)

    folder = write("cuda_device", result, "\n".join(lines) + "\n", figure, quick)
    if out is not None:
        for suffix in ("json", "md", "png"):
            shutil.copy(folder / f"cuda_device.{suffix}", Path(out) / f"cuda_device.{suffix}")
    return result


if __name__ == "__main__":
    args = sys.argv[1:]
    folder = args[args.index("--out") + 1] if "--out" in args else None
    raise SystemExit(0 if main(quick="--quick" in args, host="--host" in args, out=folder) is not None else 2)
