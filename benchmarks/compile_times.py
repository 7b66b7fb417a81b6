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


_PROFILE = """
import json, sys, time
from numba.core import event
import sdekit as sk
from benchmarks.adaptive_ensemble import ensemble
stack, spans = [], []
class Rec(event.Listener):
    def on_start(self, ev):
        stack.append(time.perf_counter())
    def on_end(self, ev):
        d = ev.data.get("dispatcher") if isinstance(ev.data, dict) else None
        spans.append((time.perf_counter() - stack.pop(), getattr(getattr(d, "py_func", None), "__qualname__", "?"),
                      len(stack)))
event.register("numba:compile", Rec())
sk.solve(ensemble(64, True), "EM", dt=0.01, saveat=[0.0, 1.0])
print(json.dumps(sorted(spans, reverse=True)[:12]))
"""

_SPEED = """
import json, sys, time
import sdekit as sk
from benchmarks.neural_sde import problem
ens, _ = problem(65536)
sk.solve(ens, "EM", dt=0.01, saveat=[1.0])
best = 1e9
for _ in range(3):
    t = time.perf_counter(); sk.solve(ens, "EM", dt=0.01, saveat=[1.0]); best = min(best, time.perf_counter() - t)
print(json.dumps(best))
"""


def _fresh_env():
    d = tempfile.mkdtemp(prefix="sdekit-bench-cold-")
    return dict(os.environ, SDEKIT_CACHE_DIR=os.path.join(d, "sdekit"), NUMBA_CACHE_DIR=os.path.join(d, "numba"),
                PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _child(args, env, code=_CHILD):
    out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=True)
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
    n_demo = 64 if quick else 256
    demo = dict(demo_first_row(_fresh_env(), n_demo), n=n_demo)
    profile = _child([], _fresh_env(), _PROFILE)    # where a cold EM compile spends its time (nested: callees)
    speed = {}
    if not quick:                                    # the kernel opt level: speed of EM, N = 65536, -O2 vs -O3
        for opt in ("3", None):
            env = _fresh_env()
            if opt:
                env["NUMBA_OPT"] = opt
            else:
                env.pop("NUMBA_OPT", None)
            speed["O3" if opt else "sdekit default"] = _child([], env, _SPEED)
    return {**machine(), "rows": rows, "demo": demo, "profile": profile, "opt_speed": speed}


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
    md += ["", f"`sdekit demo --n {d.get('n', 256)}` on a fresh machine: first table row after {d['first_row_s']:.1f} s, "
               f"done after {d['total_s']:.1f} s. A new process spends the import column before its first result."]
    if result.get("profile"):
        md += ["", "Where a cold EM compile goes (Numba compile events; indented: compiled inside the caller, "
                   "included in its time):", "", "| seconds | function |", "|---|---|"]
        md += [f"| {t:.2f} | {'&nbsp;' * 4 * depth}{name} |" for t, name, depth in result["profile"]]
        md += ["", "The Brownian tree's runtime functions (tree_step, tree_start and what they call) take about half "
                   "of it; each is compiled once per machine and cached, and each further kernel reuses them."]
    if result.get("opt_speed"):
        s = result["opt_speed"]
        md += ["", "Kernel speed at the opt levels (neural SDE EM, N = 65536, 100 steps, best of 3): "
               + ", ".join(f"{k} {v:.3f} s" for k, v in s.items()) + "."]
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
