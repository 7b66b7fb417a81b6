"""What every benchmark shares: the gemm rate, timing, versions, and writing JSON + markdown + figure."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"


def gemm_rate(dtype, n=2048, repeats=5) -> float:
    """Best GFLOP/s of numpy's matmul (BLAS dgemm / sgemm) on n x n matrices."""
    a = np.random.default_rng(0).random((n, n)).astype(dtype)
    b = a.copy()
    a @ b
    return 2 * n**3 / min(timed(lambda: a @ b) for _ in range(repeats)) / 1e9


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def best(fn, repeats: int) -> float:
    return min(timed(fn) for _ in range(repeats))


def machine() -> dict:
    import numba

    from sdekit.kernels.numba_runtime import KERNEL_OPT
    opt = os.environ.get("NUMBA_OPT", f"{KERNEL_OPT} (sdekit's default for kernels)")
    out = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "numba_threads": numba.get_num_threads(), "numba_opt": opt, "versions": {}}
    for mod in ("sdekit", "numpy", "numba", "torch", "torchsde", "jax", "diffrax"):
        try:
            out["versions"][mod] = __import__(mod).__version__
        except ImportError:
            pass
    return out


def skipped(what: str, extra: str = "bench") -> str:
    line = f"{what} is not installed: skipped (pip install -e '.[{extra}]')"
    print(line)
    return line


def out_dir(quick: bool) -> Path:
    if not quick:
        RESULTS.mkdir(parents=True, exist_ok=True)
        return RESULTS
    import tempfile
    return Path(tempfile.mkdtemp(prefix="sdekit-bench-quick-"))


def write(name: str, result: dict, markdown: str, figure, quick: bool = False) -> Path:
    """``NAME.json``, ``NAME.md`` and (``figure(path)``) ``NAME.png`` into the results folder."""
    out = out_dir(quick)
    (out / f"{name}.json").write_text(json.dumps(result, indent=2, default=float))
    (out / f"{name}.md").write_text(markdown)
    import matplotlib
    matplotlib.use("Agg")
    figure(out / f"{name}.png")
    print(markdown)
    print(f"wrote {out / name}.{{json,md,png}}")
    return out
