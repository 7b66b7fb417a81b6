"""sdekit's benchmark suite: ``sdekit bench [NAME ...]`` or ``python -m benchmarks [NAME ...]``.

Each benchmark runs what the installed extras allow (``pip install -e '.[bench]'`` adds torchsde,
jax and diffrax; a missing competitor is skipped with a line saying so) and writes
``benchmarks/results/NAME.json`` (every number), ``NAME.md`` (the table) and ``NAME.png`` (the
figure).  After a full run the README's speed table is regenerated from the results
(:mod:`benchmarks.readme`); tests check that the committed README matches the committed results.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: name -> what it measures (each is the module benchmarks.NAME with ``main(quick)``)
SUITE = {
    "neural_sde": "neural SDE ensemble, EM, N = 1024 / 65536, float64 / float32, dt = 0.01 and 2^-7, "
                  "vs torchsde, diffrax (UnsafeBrownianPath, VirtualBrownianTree) and plain numpy",
    "adaptive_ensemble": "adaptive ensembles (Tsit5, Exprb43, SRA1): fused kernel vs the numpy driver",
    "compile_times": "cold and warm compile time per kernel kind, and the demo's time to its first row",
    "distributed": "the neural SDE ensemble on a dask LocalCluster of 1 and 2 workers vs one process, per-chunk overhead",
    "pde": "stiff semilinear PDEs (Allen–Cahn, Kuramoto–Sivashinsky, 2-D Gray–Scott) on sdekit fields vs scipy solve_ivp",
    "diffusion": "diffusion samplers' per-step overhead outside the network: sdekit vs diffusers' scheduler.step",
    "cuda_static": "issue 15's GPU kernels read without a GPU: ptxas registers, occupancy and instruction mix on sm_90",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    asked = [a for a in argv if a in SUITE]
    if asked and {"-h", "--help"} & set(argv):     # sdekit bench NAME --help: what NAME measures
        for name in asked:
            print(f"usage: sdekit bench {name} [--quick]\n\n{importlib.import_module(f'benchmarks.{name}').__doc__.strip()}\n")
        return 0
    parser = argparse.ArgumentParser(prog="sdekit bench", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run (default: all of {list(SUITE)}); "
                        "NAME --help: what it measures")
    parser.add_argument("--quick", action="store_true", help="small sizes, results to a temporary folder (a smoke run)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--readme", action="store_true", help="only regenerate the README table from the results")
    args = parser.parse_args(argv)
    if args.list:
        for name, what in SUITE.items():
            print(f"{name:18s} {what}")
        return 0
    unknown = [n for n in args.names if n not in SUITE]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; available: {', '.join(SUITE)}")
    if not args.readme:
        for name in args.names or list(SUITE):
            print(f"== {name}: {SUITE[name]}")
            importlib.import_module(f"benchmarks.{name}").main(quick=args.quick)
    if not args.quick:
        from .readme import update_readme
        print(update_readme())
    return 0
