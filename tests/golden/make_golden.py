"""Record (or check) the golden outputs of tests/golden/golden.npz.

    python tests/golden/make_golden.py           # record: run the golden tests, write golden.npz
    python tests/golden/make_golden.py --check   # compare: per record, max |Δy|/scale and bitwise or not

The records are what the tests that take the ``golden`` fixture (tests/conftest.py) solve: every
catalogue method on the fused Numba kernel and the numpy reference (test_numba: the neural model
with diagonal, scalar and dense L, SDEs with scalar, diagonal and general noise), every adaptive ODE
method on both backends (test_adaptive), adaptive SRA1.  Run at the test-suite's NUMBA_OPT=1.
"""
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
TESTS = ["tests/test_numba.py", "tests/test_adaptive.py"]


def run_tests(env_extra):
    env = dict(os.environ, **env_extra)
    cmd = [sys.executable, "-m", "pytest", "-q", *TESTS]
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def record():
    out = tempfile.mkdtemp(prefix="sdekit-golden-")
    run_tests({"SDEKIT_GOLDEN": "write", "SDEKIT_GOLDEN_OUT": out})
    data = {}
    for path in sorted(glob.glob(os.path.join(out, "*.npz"))):
        with np.load(path) as f:
            key = str(f["key"])
            for field in ("y", "t", "retcodes", "stats"):
                data[f"{key}|{field}"] = f[field]
    np.savez_compressed(os.path.join(HERE, "golden.npz"), **data)
    print(f"{len(data) // 4} golden records -> tests/golden/golden.npz")


def check():
    report = tempfile.mkdtemp(prefix="sdekit-golden-report-")
    rc = run_tests({"SDEKIT_GOLDEN_REPORT": report})
    rows = []
    for path in glob.glob(os.path.join(report, "*.txt")):
        with open(path) as fh:
            rows.append(fh.read().strip().split("\t"))
    for key, worst, bitwise in sorted(rows):
        print(f"{'bitwise' if bitwise == '1' else 'differs':8s} {float(worst):9.2e}  {key}")
    print(f"{len(rows)} records checked, {sum(r[2] == '1' for r in rows)} bitwise; pytest exit {rc}")
    return rc


if __name__ == "__main__":
    sys.exit(check() if "--check" in sys.argv else record())
