"""Command line: sdekit demo | methods | inspect | bench (also python -m sdekit)."""
from __future__ import annotations

import argparse
import importlib
import os
import sys


def _load_model(spec: str):
    """The model of ``MODULE:ATTRIBUTE`` (importable from the current folder) or the demo's."""
    if spec == "demo":
        from sdekit.demo import demo_problem
        return demo_problem(4).problem.model
    mod, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"give MODULE:ATTRIBUTE (a sdekit ODE/SDE or problem) or 'demo', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(mod)
    except ImportError as exc:
        raise ValueError(f"cannot import {mod!r} from {os.getcwd()}: {exc}") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        raise ValueError(f"module {mod!r} has no attribute {attr!r}; it has {names[:20]}") from None
    return getattr(obj, "model", obj)   # a problem's model; an Ensemble or a model as it is


def _bench(argv) -> int:
    """``sdekit bench ...`` is ``python -m benchmarks ...`` of the source checkout this sdekit runs from."""
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "__init__.py").exists():
        print(f"sdekit bench: error: no benchmarks/ folder next to {root / 'sdekit'}; it runs from a source checkout "
              "(pip install -e .)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    from benchmarks import main as bench_main
    return bench_main(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        return _bench(argv[1:])
    from sdekit import __version__
    parser = argparse.ArgumentParser(prog="sdekit", description="sdekit: symbolic-numeric ODE/SDE solvers with "
                                     "fused ensemble kernels.")
    parser.add_argument("--version", action="version", version=f"sdekit {__version__}")
    sub = parser.add_subparsers(dest="cmd")
    sub.add_parser("bench", help="run the benchmark suite (sdekit bench --help)")
    d = sub.add_parser("demo", help="neural SDE ensemble: EM vs SETD1 table and plot; 'demo diffusion': the samplers; "
                       "'demo inversion': round trips of the inversion methods")
    d.add_argument("which", nargs="?", default="sde", choices=["sde", "diffusion", "inversion"],
                   help="sde (default): the neural SDE ensemble; diffusion: every sampler vs NFE on a Gaussian mixture; "
                        "inversion: every inversion method's round-trip error vs NFE")
    d.add_argument("--n", type=_positive_int, default=None, help="trajectories / samples (default 1024 / 4000)")
    d.add_argument("--backend", default=None, help="numba (default) or numpy")
    d.add_argument("--out", default="sdekit-demo.png", help="PNG to write ('' for none)")
    sub.add_parser("methods", help="print the method catalogue")
    i = sub.add_parser("inspect", help="print the generated source of a model's step")
    i.add_argument("model", help="MODULE:ATTRIBUTE of an ODE/SDE/problem, or 'demo'")
    i.add_argument("--method", default=None, help="a catalogue method (default: EM for SDEs, RK4 for ODEs)")
    i.add_argument("--backend", default=None,
                   help="numba (default; the array path for a model solve routes there), numpy or cuda (CUDA C source)")
    i.add_argument("--adaptive", action="store_true",
                   help="the kernel with per-trajectory step control (methods with an error estimate)")
    i.add_argument("--dtype", default="float64", choices=("float64", "float32"), help="the kernel's float type")
    args = parser.parse_args(argv)
    if args.cmd is None:
        parser.print_help()
        return 0
    try:
        return _run(args)
    except ValueError as exc:  # includes sdekit.ModelError: a user error, not a crash
        print(f"sdekit {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:    # the reader stopped (sdekit inspect ... | head): quiet, as cat and grep are
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())     # no second error at interpreter exit
        return 0


def _positive_int(text: str) -> int:
    """argparse type of --n: an integer >= 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return n


def _check_demo(args):
    """ValueError before a demo runs: a --out whose folder does not exist (the demo would run, then fail to write),
    --backend for the demos that do not take one (their samplers run on the host)."""
    folder = os.path.dirname(os.path.abspath(args.out)) if args.out else None
    if folder is not None and not os.path.isdir(folder):
        raise ValueError(f"--out {args.out!r}: the folder {folder} does not exist")
    if args.backend is not None and args.which != "sde":
        raise ValueError(f"--backend is the sde demo's (numba or numpy); 'demo {args.which}' runs its samplers on the "
                         "host and takes none")


def _run(args) -> int:
    if args.cmd == "demo":
        _check_demo(args)
    if args.cmd == "demo" and args.which == "diffusion":
        from sdekit.demo_diffusion import run_diffusion_demo
        out = "sdekit-diffusion.png" if args.out == "sdekit-demo.png" else args.out
        run_diffusion_demo(n=args.n or 4000, out=out)
    elif args.cmd == "demo" and args.which == "inversion":
        from sdekit.demo_inversion import run_inversion_demo
        run_inversion_demo(n=args.n or 2000, out="sdekit-inversion.png" if args.out == "sdekit-demo.png" else args.out)
    elif args.cmd == "demo":
        from sdekit.demo import run_demo
        run_demo(n=args.n or 1024, backend=args.backend, out=args.out)
    elif args.cmd == "methods":
        from sdekit.catalogue import methods_table
        print(methods_table())
    elif args.cmd == "inspect":
        from sdekit.solve import inspect
        model = _load_model(args.model)
        target = model.problem.model if hasattr(model, "problem") else model
        method = args.method or ("EM" if getattr(target, "stochastic", False) else "RK4")
        print(inspect(model, method, args.backend, dtype=args.dtype, adaptive=args.adaptive))
    return 0


if __name__ == "__main__":
    sys.exit(main())
