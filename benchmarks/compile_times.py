"""Compile-time benchmark (`sdekit bench compile_times`): every kernel kind of the neural models,
cold (a new process with empty sdekit and Numba caches, as on a fresh machine) and warm (a new process
that loads the cached kernel), and ``sdekit demo``'s time to its first table row on a fresh machine.
Writes benchmarks/results/compile_times.{json,md,png}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import machine, write

ROOT = Path(__file__).resolve().parent.parent
#: (method, step control, model) per kernel kind, with the issue's cold-compile targets [s]
KINDS = [("EM", "fixed", "sde", 5.0), ("SRA1", "fixed", "sde", None), ("Tsit5", "adaptive", "ode", 10.0),
         ("Exprb43", "adaptive", "ode", 30.0), ("SRA1", "adaptive", "sde", None)]

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import sdekit as sk
from benchmarks.adaptive_ensemble import ensemble
t1 = time.perf_counter()
method, control, model = sys.argv[1:4]
ens = ensemble(64, model == "sde")
if control == "fixed":
    sk.solve(ens, method, dt=0.01, saveat=[0.0, 1.0])
else:
    sk.solve(ens, method, rtol=1e-6 if model == "ode" else 1e-2, atol=1e-6 if model == "ode" else 1e-2)
t2 = time.perf_counter()
if control == "fixed":
    sk.solve(ens, method, dt=0.01, saveat=[0.0, 1.0])
else:
    sk.solve(ens, method, rtol=1e-6 if model == "ode" else 1e-2, atol=1e-6 if model == "ode" else 1e-2)
print(json.dumps({"import_s": t1 - t0, "first_s": t2 - t1, "again_s": time.perf_counter() - t2}))
"""


def _fresh_env():
    d = tempfile.mkdtemp(prefix="sdekit-bench-cold-")
    return dict(os.environ, SDEKIT_CACHE_DIR=os.path.join(d, "sdekit"), NUMBA_CACHE_DIR=os.path.join(d, "numba"),
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _child(args, env) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def demo_first_row(env, n=256) -> dict:
    """Seconds from starting ``sdekit demo`` (fresh caches) to its first table row, and to its end."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "sdekit.cli", "demo", "--n", str(n), "--out", ""], env=env,
                            stdout=subprocess.PIPE, text=True)
    first = None
    for line in proc.stdout:
        if first is None and line.split()[:1] in (["EM"], ["SETD1"]):
            first = time.perf_counter() - t0
    proc.wait()
    return {"first_row_s": first, "total_s": time.perf_counter() - t0}


def run(quick=False, progress=True):
    from tqdm.auto import tqdm
    rows = []
    kinds = KINDS[:1] if quick else KINDS
    for method, control, model, target in tqdm(kinds, desc="compile times", disable=not progress):
        env = _fresh_env()
        cold, warm = _child([method, control, model], env), _child([method, control, model], env)
        rows.append({"method": method, "control": control, "model": model, "target_s": target,
                     "cold_compile_s": cold["first_s"] - cold["again_s"], "warm_first_result_s": warm["first_s"],
                     "import_s": warm["import_s"], "run_s": cold["again_s"]})
    demo = demo_first_row(_fresh_env(), 64 if quick else 256)
    return {**machine(), "rows": rows, "demo": demo}


def markdown(result) -> str:
    md = ["# Compile times (neural models: d = 4, MLP 4-32-32-4)", "",
          f"{result['cpus']} cpus, LLVM opt level {result['numba_opt']}. Cold: a new process "
          "with empty sdekit and Numba caches (a fresh machine), first solve minus a second one. Warm: a new process "
          "loading the cached kernel, its first solve (N = 64).", "",
          "| kernel | cold compile [s] | target [s] | warm: first result [s] | import sdekit [s] |",
          "|---|---|---|---|---|"]
    for r in result["rows"]:
        tgt = "-" if r["target_s"] is None else (f"≤ {r['target_s']:g} "
                                                 + ("(met)" if r["cold_compile_s"] <= r["target_s"] else "(missed)"))
        md.append(f"| {r['method']} {r['control']} ({r['model'].upper()}) | {r['cold_compile_s']:.1f} | {tgt} | "
                  f"{r['warm_first_result_s']:.2f} | {r['import_s']:.2f} |")
    d = result["demo"]
    md += ["", f"`sdekit demo --n 256` on a fresh machine: first table row after {d['first_row_s']:.1f} s, "
               f"done after {d['total_s']:.1f} s."]
    return "\n".join(md) + "\n"


def figure(result):
    def draw(path):
        import matplotlib.pyplot as plt
        rows = result["rows"]
        names = [f"{r['method']}\n{r['control']}" for r in rows]
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.bar(names, [r["cold_compile_s"] for r in rows], label="cold compile")
        ax.bar(names, [r["warm_first_result_s"] for r in rows], label="warm start: first result")
        for i, r in enumerate(rows):
            if r["target_s"]:
                ax.plot([i - 0.4, i + 0.4], [r["target_s"]] * 2, "k--", lw=1)
        ax.set_ylabel("seconds")
        ax.set_title("kernel compile times (dashed: target)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return draw


def main(quick=False):
    result = run(quick)
    write("compile_times", result, markdown(result), figure(result), quick)
    return result


if __name__ == "__main__":
    main()
