"""``sdekit demo inversion``: invert samples of a 2-D Gaussian mixture whose exact ε is known (no
training, no download) with every inversion method of :mod:`sdekit.inversion`, and measure the
round trips: noise → data → noise (sample, then invert) and data → noise → data (invert, then
sample), RMS error against where each started, against the network calls of one direction."""
from __future__ import annotations

import numpy as np

from sdekit.demo_diffusion import RING

#: method label -> (network calls per step, runner(schedule, eps, x, ts, invert: bool) -> x)
def _methods(D, data):
    def explicit(name):
        def go(s, e, x, ts, back):
            return D.invert(s, e, x, ts[::-1], name, check=False).x if back else D.sample(s, e, x, ts, name)[0]
        return go

    def implicit(solver):
        def go(s, e, x, ts, back):
            if back:
                return D.invert(s, e, x, ts[::-1], solver=solver, tol=1e-12).x
            return D.sample(s, e, x, ts, "ddim")[0]
        return go

    def reversible(s, e, x, ts, back):                 # the probability-flow ODE dx/dt = f x + g²/(2σ) ε, pair (y, z)
        def pf(t, y):
            return float(s("f", t)) * y + float(s("g2", t)) / (2 * float(s("sigma", t))) * e(y, t)
        if back:
            y, z, _ = D.reversible_heun(pf, x, ts, z=state.pop("z", None), inverse=True)
        else:
            y, z, _ = D.reversible_heun(pf, x, ts, z=state.pop("z", None))
        state["z"] = z
        return y

    state = {}

    def edict(s, e, x, ts, back):                      # the pair travels: x and its twin y
        if back:
            xb, yb, _ = D.edict(s, e, x, ts, y=state.get("y", x), inverse=True)
            state["y"] = yb
            return xb
        xf, yf, _ = D.edict(s, e, x, ts, y=state.pop("y", None))
        state["y"] = yf
        return xf

    def bdia(s, e, x, ts, back):
        if back:
            z, prev, _ = D.bdia(s, e, x, ts, previous=state.pop("prev", None), inverse=True)
        else:
            z, prev, _ = D.bdia(s, e, x, ts, previous=state.pop("prev", None))
        state["prev"] = prev
        return z
    flow = D.flow_matching()                          # the same data as a rectified flow: α = 1 − t, σ = t
    flow_eps = data.eps(flow)

    def velocity(x, t):
        e = flow_eps(x, t)
        return e - (x - t * e) / (1.0 - t)

    def rectified(solver):
        def go(s, e, x, ts, back):                    # its own grid: t from 0.995 (noise) to 1e-3 (data)
            grid = np.linspace(0.995, 1e-3, len(ts))
            if solver == "flow-euler":
                if back:
                    return D.invert(flow, velocity, x, grid[::-1], "flow-euler", prediction="flow", check=False).x
                return D.sample(flow, velocity, x, grid, "flow-euler", prediction="flow")[0]
            return getattr(D, solver)(velocity, x, grid[::-1] if back else grid)[0]
        return go
    return {"DDIM inversion": (1, explicit("ddim")), "DPM-Solver-2 inversion": (2, explicit("dpmsolver-2")),
            "DPM-Solver++(2M) inversion": (1, explicit("dpmsolver++2m")),
            "fixed-point DDIM (tol 1e-12)": (None, implicit("fixed-point")),
            "Newton DDIM (tol 1e-12)": (None, implicit("newton")), "EDICT (p = 0.93)": (2, edict),
            "Reversible Heun (PF-ODE)": (1, reversible),
            "BDIA (γ = 1)": (1, bdia), "flow Euler inversion (RF)": (1, rectified("flow-euler")),
            "RF-Solver-2 (RF)": (2, rectified("rf_solver")), "FireFlow (RF)": (1, rectified("fireflow"))}, state


def run_inversion_demo(n: int = 2000, nfes=(10, 20, 50, 100), out: str = "sdekit-inversion.png", quiet: bool = False,
                       seed: int = 0) -> list:
    """Print the table, write the figure, return the rows."""
    import sdekit as sk
    D = sk.diffusion
    say = (lambda *a: None) if quiet else print
    schedule, data = D.vp_linear(), D.GaussianMixture(RING, 0.25)
    eps = data.eps(schedule)
    rng = np.random.default_rng(seed)
    x_T, x_0 = rng.standard_normal((n, 2)), data.sample(n, rng)
    methods, state = _methods(D, data)
    say(f"sdekit demo inversion: 8-mode ring (std 0.25), VP linear β, exact ε, n = {n}; RMS round-trip error, "
        "noise→data→noise | data→noise→data, by network calls of one direction\n")
    header = f"{'method':<30}" + "".join(f"{'NFE ' + str(k):>22}" for k in nfes)
    say(header)
    say("-" * len(header))
    rows = []
    for name, (calls, go) in methods.items():
        row = {"method": name, "noise_data_noise": {}, "data_noise_data": {}}
        for nfe in nfes:
            steps = nfe // (calls or 1)
            ts = D.timesteps(schedule, steps, t_end=1e-3)
            state.clear()
            there = go(schedule, eps, x_T, ts, False)
            row["noise_data_noise"][nfe] = _rms(go(schedule, eps, there, ts, True) - x_T)
            state.clear()
            there = go(schedule, eps, x_0, ts, True)
            row["data_noise_data"][nfe] = _rms(go(schedule, eps, there, ts, False) - x_0)
        rows.append(row)
        say(f"{name:<30}" + "".join(f"{a:>10.1e} | {b:<9.1e}" for a, b in
                                    zip(row["noise_data_noise"].values(), row["data_noise_data"].values())))
    say("\nfixed-point, Newton: NFE counts the steps (each step iterates until its residual is below 1e-12; Newton's "
        "Jacobian-vector products are finite differences of this closed-form network); EDICT, BDIA and Reversible Heun "
        "invert algebraically, so their error is rounding whatever the NFE (Reversible Heun integrates the PF-ODE in t, "
        "one f call a step). (RF) rows: the same data as a rectified "
        "flow (α = 1 − t, σ = t), velocity u = ε − x̂, t from 0.995 to 1e-3; FireFlow calls once a step (one more to start).")
    if out:
        _plot(rows, nfes, out)
        say(f"wrote {out}")
    return rows


def _rms(a) -> float:
    return float(np.sqrt(np.mean(np.asarray(a) ** 2)))


def _plot(rows, nfes, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2), sharey=True)
    for ax, key, title in zip(axes, ("noise_data_noise", "data_noise_data"),
                              ("sample, then invert (noise → data → noise)", "invert, then sample (data → noise → data)")):
        for row in rows:
            ax.loglog(nfes, [max(v, 1e-17) for v in row[key].values()], "o-", label=row["method"])
        ax.set(title=title, xlabel="NFE (one direction)")
    axes[0].set_ylabel("RMS round-trip error")
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
