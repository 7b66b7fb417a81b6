"""The runnable examples in examples/ run and give sensible numbers (small sizes)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SDEKIT_METHODS = ("Exprb43", "ROS34PW2")
SCIPY_METHODS = ("BDF", "Radau", "LSODA")


def test_allen_cahn_work_precision_quick(tmp_path):
    """examples/allen_cahn.py --quick at n = 64, two tolerances, as ``sk.solve`` runs it by default (routed from 64
    unknowns: Exprb43 to the array driver, ROS34PW2 to the compiled field kernel; no per-lane kernel to compile, the
    suite's slowest test at n = 24; Tsit5 left out: its kernel would be one more compile): every solver has an
    entry, sdekit is within 100x its tolerance, and every solver's error drops with the tolerance.
    Runs as a script (its CLI) with one BLAS thread: the small expm calls of Exprb43 are
    10x slower when BLAS threads oversubscribe a busy machine."""
    tols = (1e-3, 1e-6)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, str(EXAMPLES / "allen_cahn.py"), "--quick", "--n", "64", "--tols", *map(str, tols),
           "--repeats", "1", "--out-dir", str(tmp_path), "--no-progress", "--methods", *SDEKIT_METHODS]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    results = tmp_path / "benchmarks" / "results"
    assert (tmp_path / "docs" / "allen_cahn_work_precision_quick.png").stat().st_size > 10_000
    assert "| sdekit Exprb43 |" in (results / "allen_cahn_quick.md").read_text()
    data = json.loads((results / "allen_cahn_quick.json").read_text())
    drivers = {r["solver"]: r["driver"].split(" (routed")[0] for r in data["results"] if r["solver"].startswith("sdekit")}
    assert data["problem"]["n"] == 64 and drivers == {"sdekit Exprb43": "array", "sdekit ROS34PW2": "fields-numba"}
    assert data["reference"]["max_diff_to_check"] < 1e-10     # Radau 1e-12 vs DOP853 1e-13

    solvers = [f"sdekit {m}" for m in SDEKIT_METHODS] + [f"scipy {m}" for m in SCIPY_METHODS]
    err = {(r["solver"], r["tol"]): r["error"] for r in data["results"]}
    assert set(err) == {(s, t) for s in solvers for t in tols}
    for s in solvers:
        e = [err[(s, t)] for t in tols]
        assert all(x is not None and math.isfinite(x) and x > 0 for x in e), (s, e)
        assert e[1] < e[0] / 10, f"{s}: error does not drop with the tolerance: {e}"
        if s.startswith("sdekit"):
            assert all(x < 100 * t for x, t in zip(e, tols)), (s, e)


def test_kuramoto_sivashinsky_quick():
    """examples/kuramoto_sivashinsky.py --quick: the Kassam–Trefethen run and the convergence at t = 10 for
    h = 1/4, 1/8, 1/16: Krogstad's errors fall by more than 10x per halving (order 4); ETDRK4's and ETDRK3's
    by more than 5x (measured 6-9x and 6x: Cox–Matthews ETDRK4 is pre-asymptotic at these h on KS, its
    slope rises towards 4 at smaller h, as the full example shows)."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import kuramoto_sivashinsky
    finally:
        sys.path.remove(str(EXAMPLES))
    errs = kuramoto_sivashinsky.main(["--quick"])
    for m, e in errs.items():
        assert all(a / b > (10 if m == "Krogstad" else 5) for a, b in zip(e, e[1:])), (m, e)
