"""Kuramoto–Sivashinsky with ETDRK4 on a Fourier grid: Kassam & Trefethen (2005), §6 and their Fig. 6.

    u_t = −u u_x − u_xx − u_xxxx,   x ∈ [0, 32π] periodic,   u(x, 0) = cos(x/16)(1 + sin(x/16)),

N = 128 Fourier modes, ETDRK4 with h = 1/4 up to t = 150 (Kassam & Trefethen, SIAM J. Sci. Comput. 26
(2005) 1214, program kursiv.m).  In Fourier space L = k² − k⁴ is diagonal; sdekit evaluates every φ of
hL once (elementwise, stably) and N(u) = −(u²)_x / 2 pseudo-spectrally.  The figure shows u(x, t) (their
Fig. 6) and the error at t = 10 against step size for ETDRK4, Krogstad and ETDRK3 (reference: Krogstad
with h = 1/1024): the slopes are the methods' orders.

    python examples/kuramoto_sivashinsky.py            # writes docs/kuramoto_sivashinsky.png
    python examples/kuramoto_sivashinsky.py --quick    # t ≤ 30, fewer steps, to a temporary folder
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import sdekit as sk
from sdekit.pde_problems import kuramoto_sivashinsky

ROOT = Path(__file__).resolve().parents[1]


def problem(n: int = 128, T: float = 150.0):
    """(x, the Kassam–Trefethen problem): ``sdekit.pde_problems.kuramoto_sivashinsky``."""
    return kuramoto_sivashinsky(n, T)


def convergence(T: float = 10.0, dts=(1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32), methods=("ETDRK4", "Krogstad", "ETDRK3")):
    """{method: [max error at T per dt]} against Krogstad at dt = 1/1024."""
    _, prob = problem(T=T)
    ref = sk.solve(prob, "Krogstad", dt=1 / 1024, saveat=[T]).y[-1]
    return {m: [float(np.abs(sk.solve(prob, m, dt=dt, saveat=[T]).y[-1] - ref).max()) for dt in dts] for m in methods}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="t <= 30 and three step sizes, figure to a temporary folder")
    args = parser.parse_args(argv)
    T = 30.0 if args.quick else 150.0
    x, prob = problem(T=T)
    sol = sk.solve(prob, "ETDRK4", dt=0.25, saveat=np.arange(0.0, T + 1.0), progress=not args.quick)
    dts = (1 / 4, 1 / 8, 1 / 16) if args.quick else (1 / 2, 1 / 4, 1 / 8, 1 / 16, 1 / 32, 1 / 64)
    errs = convergence(dts=dts)
    for m, e in errs.items():
        slopes = np.log2(np.array(e[:-1]) / np.array(e[1:]))
        print(f"{m:9s} errors at t = 10: " + ", ".join(f"{v:.2e}" for v in e) + "  slopes " + ", ".join(f"{s:.2f}" for s in slopes))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    im = a.pcolormesh(x, sol.t, sol.y, shading="auto", cmap="viridis")
    fig.colorbar(im, ax=a, label="u")
    a.set(xlabel="x", ylabel="t", title=f"Kuramoto–Sivashinsky, ETDRK4 h = 1/4, N = 128 ({sol.retcode})")
    for m, e in errs.items():
        b.loglog(dts, e, "o-", label=m)
    b.loglog(dts, [errs["ETDRK4"][0] * (dt / dts[0]) ** 4 for dt in dts], "k:", label="slope 4")
    b.set(xlabel="step h", ylabel="max error at t = 10", title="convergence (reference: Krogstad h = 1/1024)")
    b.minorticks_off()
    b.set_xticks(dts, [f"1/{round(1 / dt)}" for dt in dts])
    b.legend()
    fig.tight_layout()
    out = Path(tempfile.mkdtemp()) if args.quick else ROOT / "docs"
    path = out / "kuramoto_sivashinsky.png"
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return errs


if __name__ == "__main__":
    main()
