"""Diffusion sampling overhead: the time a sampler spends per step outside the network, sdekit's samplers
(``sk.diffusion.sample``, host recipes doing arithmetic on the caller's tensors) against diffusers'
``scheduler.step``, with a network that costs nothing (it returns a fixed tensor) so that the update itself
is what is timed.

Batches: 4096 × 2 (a 2-D toy, many samples) and 64 × 4 × 64 × 64 (a latent-diffusion batch), torch
float32 on the CPU for both libraries (the pipelines' type), 25 steps, the same discrete schedule
(scaled-linear β, 1000 timesteps) and timesteps.  Per-step overhead = wall time of the whole loop / 25,
best of 3 runs.  Samplers: DDIM, DPM-Solver++(2M), UniPC-2 (bh2), DEIS-2, Euler.

Quality vs NFE: the same samplers and DPM-Solver++(3M) on ``sdekit demo diffusion``'s 8-mode ring (a Gaussian
mixture whose exact ε is the network), float64, 4000 samples from one initial noise: the sliced Wasserstein
distance SW₂ to exact data samples (beside SW₂ between two exact sample sets, the measurement's floor) for
diffusers' scheduler, sdekit on diffusers' timesteps, and sdekit on its default grid (uniform in λ).
"""
from __future__ import annotations

import time
import warnings

import numpy as np

from .common import machine, skipped, write

N_TRAIN = 1000
STEPS = 25
SHAPES = {"4096x2": (4096, 2), "64x4x64x64": (64, 4, 64, 64)}
#: sdekit method -> (diffusers scheduler class name, its options)
PAIRS = {
    "ddim": ("DDIMScheduler", dict(timestep_spacing="leading", set_alpha_to_one=False, clip_sample=False)),
    "dpmsolver++2m": ("DPMSolverMultistepScheduler", dict(solver_order=2, final_sigmas_type="sigma_min",
                                                          lower_order_final=False, timestep_spacing="linspace")),
    "unipc2-bh2": ("UniPCMultistepScheduler", dict(solver_order=2, final_sigmas_type="sigma_min",
                                                   lower_order_final=False, timestep_spacing="linspace")),
    "deis2": ("DEISMultistepScheduler", dict(solver_order=2, lower_order_final=False, timestep_spacing="linspace")),
    "euler": ("EulerDiscreteScheduler", dict(timestep_spacing="linspace")),
}
BETAS = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, num_train_timesteps=N_TRAIN)


def _best(fn, repeats=3) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run_pair(method, shape, torch, diffusers, repeats):
    import sdekit as sk
    D = sk.diffusion
    cls, opts = PAIRS[method]
    sch = getattr(diffusers, cls)(**BETAS, **opts)
    sch.set_timesteps(STEPS)
    schedule = D.DiscreteVP(sch.alphas_cumprod.double().numpy())
    x0 = torch.randn(shape, dtype=torch.float32, generator=torch.Generator().manual_seed(0))
    eps = 0.1 * x0
    net = lambda x, t: eps              # noqa: E731  (a network that costs nothing: the loop is all update)
    net_s = 0.0

    def theirs():
        s = getattr(diffusers, cls)(**BETAS, **opts)
        s.set_timesteps(STEPS)
        x = x0 * s.init_noise_sigma
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k in s.timesteps:
                x = s.step(net(s.scale_model_input(x, k), k), k, x).prev_sample
        return x

    if method == "euler":
        ts = (sch.timesteps.numpy().astype(float) + 1.0) / N_TRAIN
    elif method == "ddim":
        ts = (sch.timesteps.numpy() + 1.0) / N_TRAIN
    else:
        ts = np.append((sch.timesteps.numpy() + 1.0) / N_TRAIN, 1.0 / N_TRAIN)

    def ours():
        return D.sample(schedule, net, x0, ts, method)[0]

    theirs(), ours()                    # warm-up: first calls (imports, compiles) are not the per-step cost
    t_theirs, t_ours = _best(theirs, repeats), _best(ours, repeats)
    over_theirs, over_ours = (t_theirs - net_s) / STEPS, (t_ours - net_s) / STEPS
    return dict(method=method, scheduler=cls, shape=list(shape), steps=STEPS, network_s=net_s,
                diffusers_s=t_theirs, sdekit_s=t_ours, diffusers_overhead_ms=1e3 * over_theirs,
                sdekit_overhead_ms=1e3 * over_ours, ratio=over_theirs / max(over_ours, 1e-12))


#: the quality comparison: sdekit method -> (diffusers scheduler, options), beside PAIRS
QUALITY = {**{m: p for m, p in PAIRS.items() if m != "euler"}, "dpmsolver++3m": ("DPMSolverMultistepScheduler", dict(
    solver_order=3, final_sigmas_type="sigma_min", lower_order_final=False, timestep_spacing="linspace"))}
QUALITY_NFES = (5, 10, 20)


def _grid(method, sch):
    """sdekit's times of a diffusers scheduler's timesteps (timestep k at t = (k + 1)/N; the multistep schedulers
    end at timestep 0)."""
    ts = (sch.timesteps.numpy().astype(float) + 1.0) / N_TRAIN
    return ts if method == "ddim" else np.append(ts, 1.0 / N_TRAIN)


def quality(torch, diffusers, n: int = 4000, nfes=QUALITY_NFES) -> list:
    """SW₂ to the data of diffusers' schedulers and sdekit's samplers at ``nfes`` network calls (module docstring)."""
    import sdekit as sk
    from sdekit.demo_diffusion import RING, sliced_wasserstein
    D = sk.diffusion
    data = D.GaussianMixture(RING, 0.25)
    rng = np.random.default_rng(0)
    x_T, exact, exact2 = rng.standard_normal((n, 2)), data.sample(n, rng), data.sample(n, rng)
    rows = []
    for method, (cls, opts) in QUALITY.items():
        for nfe in nfes:
            sch = getattr(diffusers, cls)(**BETAS, **opts)
            sch.set_timesteps(nfe)
            schedule = D.DiscreteVP(sch.alphas_cumprod.double().numpy())
            eps = data.eps(schedule)
            x, calls = torch.from_numpy(x_T.copy()), 0
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for k in sch.timesteps:
                    x = sch.step(torch.from_numpy(eps(x.numpy(), (int(k) + 1) / N_TRAIN)), k, x).prev_sample
                    calls += 1
            ours, used = D.sample(schedule, eps, x_T, _grid(method, sch), method)
            own, own_calls = D.sample(schedule, eps, x_T, D.timesteps(schedule, nfe, t_end=1.0 / N_TRAIN), method)
            rows.append(dict(method=method, scheduler=cls, nfe=nfe, diffusers_calls=calls, sdekit_calls=used,
                             sdekit_lambda_calls=own_calls, diffusers=sliced_wasserstein(x.numpy(), exact),
                             sdekit_same_grid=sliced_wasserstein(ours, exact),
                             sdekit_lambda_grid=sliced_wasserstein(own, exact), floor=sliced_wasserstein(exact, exact2)))
    return rows


def _markdown(result) -> str:
    lines = ["# Diffusion sampling: per-step overhead outside the network (sdekit vs diffusers)", "",
             __doc__.split("\n\n")[0].strip(), "", "| sampler | diffusers scheduler | batch | diffusers [ms/step] | "
             "sdekit [ms/step] | diffusers / sdekit |", "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['scheduler']} | {'x'.join(map(str, r['shape']))} | "
                     f"{r['diffusers_overhead_ms']:.3f} | {r['sdekit_overhead_ms']:.3f} | {r['ratio']:.1f} |")
    if result.get("quality"):
        q = result["quality"]
        lines += ["", "## Quality vs NFE on the 8-mode ring (SW₂ to the data; lower is better)", "",
                  __doc__.split("\n\n")[2].strip(), "",
                  f"SW₂ between two exact sample sets (the floor): {q[0]['floor']:.4f}.", "",
                  "| sampler | NFE | diffusers | sdekit, diffusers' grid | sdekit, λ-uniform grid |", "|---|---|---|---|---|"]
        for r in q:
            lines.append(f"| {r['method']} ({r['scheduler']}) | {r['nfe']} | {r['diffusers']:.4f} ({r['diffusers_calls']} "
                         f"calls) | {r['sdekit_same_grid']:.4f} ({r['sdekit_calls']}) | {r['sdekit_lambda_grid']:.4f} "
                         f"({r['sdekit_lambda_calls']}) |")
    m = result["machine"]
    lines += ["", f"Machine: {m['machine']}, {m['cpus']} cpus; versions {m['versions']}; torch threads "
              f"{result['torch_threads']}."]
    return "\n".join(lines) + "\n"


def _figure(result):
    def draw(path):
        import matplotlib.pyplot as plt
        quality_rows = result.get("quality") or []
        panels = len(SHAPES) + bool(quality_rows)
        fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.8), squeeze=False)
        if quality_rows:
            ax = axes[0][-1]
            for k, method in enumerate(dict.fromkeys(r["method"] for r in quality_rows)):
                rows = [r for r in quality_rows if r["method"] == method]
                nfe = [r["nfe"] for r in rows]
                ax.loglog(nfe, [r["diffusers"] for r in rows], "o--", color=f"C{k}", ms=3, label=f"{method}: diffusers")
                ax.loglog(nfe, [r["sdekit_lambda_grid"] for r in rows], "s-", color=f"C{k}", ms=3, label="… sdekit, λ grid")
            ax.axhline(quality_rows[0]["floor"], color="k", ls=":", label="sampling floor")
            ax.set(xlabel="network calls (NFE)", ylabel="SW₂ to the data", title="quality vs NFE (8-mode ring)")
            ax.legend(fontsize=6)
        for ax, label in zip(axes[0], SHAPES):
            rows = [r for r in result["rows"] if "x".join(map(str, r["shape"])) == label]
            pos = np.arange(len(rows))
            ax.bar(pos - 0.2, [r["diffusers_overhead_ms"] for r in rows], 0.4, label="diffusers scheduler.step")
            ax.bar(pos + 0.2, [r["sdekit_overhead_ms"] for r in rows], 0.4, label="sdekit")
            ax.set_xticks(pos, [r["method"] for r in rows], rotation=20)
            ax.set(title=f"batch {label}, torch float32", ylabel="overhead per step [ms]")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return draw


def main(quick: bool = False):
    try:
        import diffusers
        import torch
    except ImportError:
        return {"skipped": skipped("diffusers or torch", "test")}
    shapes = {"4096x2": SHAPES["4096x2"]} if quick else SHAPES
    rows = []
    for label, shape in shapes.items():
        for method in PAIRS:
            rows.append(run_pair(method, shape, torch, diffusers, 1 if quick else 3))
            r = rows[-1]
            print(f"{method:14s} {label:12s} diffusers {r['diffusers_overhead_ms']:.3f} ms/step, "
                  f"sdekit {r['sdekit_overhead_ms']:.3f} ms/step")
    q = quality(torch, diffusers, n=1000 if quick else 4000, nfes=(5, 10) if quick else QUALITY_NFES)
    for r in q:
        print(f"{r['method']:14s} NFE {r['nfe']:3d}: SW2 diffusers {r['diffusers']:.4f}, sdekit {r['sdekit_same_grid']:.4f} "
              f"(diffusers' grid), {r['sdekit_lambda_grid']:.4f} (λ-uniform)")
    result = {"rows": rows, "quality": q, "machine": machine(), "torch_threads": torch.get_num_threads()}
    write("diffusion", result, _markdown(result), _figure(result), quick)
    return result
