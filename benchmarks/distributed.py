"""Scale-out benchmark (`sdekit bench distributed`): the neural SDE ensemble of `sdekit demo` (EM,
MLP 4-32-32-4, 100 steps of dt = 0.01) solved in one process and on a dask LocalCluster of 1 and
2 worker processes (one thread each, Numba one thread per worker), for several chunk sizes.

Reports wall time (the cluster's start-up excluded; its first solve, which loads the kernel in
each worker, reported apart), trajectory-steps per second, and the per-chunk overhead
(distributed time − single-process time at the same thread count, per chunk).  Every
distributed result is checked bitwise against the single-process one.  Writes
benchmarks/results/distributed.{json,md,png}.
"""
from __future__ import annotations

import time

import numpy as np

from .common import machine, write

STEPS = 100


def _solve_single(ens, threads):
    import numba

    import sdekit as sk
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        sol = sk.solve(ens, "EM", dt=0.01)
        return time.perf_counter() - t0, sol
    finally:
        numba.set_num_threads(before)


def run(n, chunk_sizes, worker_counts):
    from dask.distributed import Client, LocalCluster

    import sdekit as sk
    from sdekit.demo import demo_problem
    ens = demo_problem(n)
    sk.solve(demo_problem(8), "EM", dt=0.01)          # compile here (the workers load it from the disk cache)
    rows, single = [], {}
    for threads in sorted(set(worker_counts)):
        single[threads], ref = _solve_single(ens, threads)
        rows.append({"mode": "single process", "workers": threads, "chunk_size": n, "chunks": 1,
                     "time_s": single[threads], "traj_steps_per_s": n * STEPS / single[threads]})
    for workers in worker_counts:
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          env={"NUMBA_NUM_THREADS": "1"}) as cluster, Client(cluster) as client:
            t0 = time.perf_counter()
            sk.solve(demo_problem(8), "EM", dt=0.01, distributed=client, chunk_size=4)
            warm = time.perf_counter() - t0
            for size in chunk_sizes:
                t0 = time.perf_counter()
                sol = sk.solve(ens, "EM", dt=0.01, distributed=client, chunk_size=size)
                wall = time.perf_counter() - t0
                chunks = -(-n // size)
                rows.append({"mode": "dask LocalCluster", "workers": workers, "chunk_size": size, "chunks": chunks,
                             "time_s": wall, "traj_steps_per_s": n * STEPS / wall, "first_solve_s": warm,
                             "overhead_per_chunk_ms": 1e3 * (wall - single[workers]) / chunks,
                             "bitwise_equal": bool(np.array_equal(sol.y, ref.y))})
    return rows


def markdown(rows, n) -> str:
    out = [f"Neural SDE ensemble (EM, 100 steps, N = {n}): one process against a dask LocalCluster "
           "(worker processes of one thread each; the cluster's start-up excluded).", "",
           "| mode | workers | chunk size | chunks | time [s] | traj-steps/s | overhead per chunk [ms] | bitwise |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        over = f"{r['overhead_per_chunk_ms']:.1f}" if "overhead_per_chunk_ms" in r else "–"
        same = {True: "yes", False: "NO"}.get(r.get("bitwise_equal"), "–")
        out.append(f"| {r['mode']} | {r['workers']} | {r['chunk_size']} | {r['chunks']} | {r['time_s']:.3f} | "
                   f"{r['traj_steps_per_s']:.3g} | {over} | {same} |")
    firsts = {r["workers"]: r["first_solve_s"] for r in rows if "first_solve_s" in r}
    out += ["", "First distributed solve (each worker imports sdekit and loads the cached kernel): "
            + "; ".join(f"{w} worker(s) {s:.1f} s" for w, s in firsts.items()) + "."]
    return "\n".join(out) + "\n"


def figure(rows, path):
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for workers in sorted({r["workers"] for r in rows}):
        dist = [r for r in rows if r["mode"] != "single process" and r["workers"] == workers]
        ax.plot([r["chunk_size"] for r in dist], [r["traj_steps_per_s"] for r in dist], "o-",
                label=f"dask, {workers} worker(s)")
        one = [r for r in rows if r["mode"] == "single process" and r["workers"] == workers]
        if one:
            ax.axhline(one[0]["traj_steps_per_s"], ls="--", color=ax.lines[-1].get_color(),
                       label=f"one process, {workers} thread(s)")
    ax.set_xscale("log")
    ax.set_xlabel("chunk size [trajectories]")
    ax.set_ylabel("trajectory-steps / s")
    ax.legend()
    ax.set_title("neural SDE ensemble on dask.distributed")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(quick: bool = False):
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        from .common import skipped
        skipped("dask.distributed", "dask")
        return
    n = 4096 if quick else 65536
    sizes = [1024, 4096] if quick else [2048, 8192, 32768]
    rows = run(n, sizes, [1, 2])
    result = {**machine(), "n": n, "steps": STEPS, "rows": rows}
    write("distributed", result, markdown(rows, n), lambda p: figure(rows, p), quick)
