"""Record (or check) the golden outputs of tests/golden/golden.npz.

    python tests/golden/make_golden.py record        # record: run the golden tests, write golden.npz
    python tests/golden/make_golden.py check         # compare: per record, max |Δy|/scale and bitwise or not
    python tests/golden/make_golden.py update TEXT   # re-record only the records whose key contains TEXT

(``--check`` and ``--update TEXT`` are the same commands.)  Anything else prints this and records nothing.

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


def run_tests(env_extra, only=None):
    env = dict(os.environ, **env_extra)
    cmd = [sys.executable, "-m", "pytest", "-q", *TESTS] + (["-k", only.split("[")[0]] if only else [])
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def record(only=None):
    """Record every golden output, or (``only``: a substring of the keys) replace just the records
    whose key contains it, keeping the rest."""
    out = tempfile.mkdtemp(prefix="sdekit-golden-")
    run_tests({"SDEKIT_GOLDEN": "write", "SDEKIT_GOLDEN_OUT": out}, only)
    path = os.path.join(HERE, "golden.npz")
    data = dict(np.load(path)) if only else {}
    for part in sorted(glob.glob(os.path.join(out, "*.npz"))):
        with np.load(part) as f:
            key = str(f["key"])
            if only and only not in key:
                continue
            for field in ("y", "t", "retcodes", "stats"):
                data[f"{key}|{field}"] = f[field]
    np.savez_compressed(path, **data)
    print(f"{len(data) // 4} golden records -> tests/golden/golden.npz" + (f" ({only!r} replaced)" if only else ""))


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


def main(argv) -> int:
    """The command line: ``record``, ``check`` or ``update TEXT`` (an unknown one, ``--help`` included, records
    nothing: re-recording takes ~8 minutes and overwrites golden.npz)."""
    command = argv[0].lstrip("-") if argv else ""
    if command == "check" and len(argv) == 1:
        return check()
    if command == "update" and len(argv) == 2:
        return record(argv[1]) or 0
    if command == "record" and len(argv) == 1:
        return record() or 0
    print(__doc__)
    return 0 if command in ("help", "h") else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
