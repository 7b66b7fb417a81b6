import hashlib
import os
import tempfile

import numpy as np
import pytest

# generated modules go to a per-run cache so tests never depend on a user's cache (an exported
# SDEKIT_CACHE_DIR is not used: its -O2 kernels would be read, and the suite's -O1 kernels written to it);
# made in the pytest-xdist controller before the workers start, so they inherit it and share compiled kernels
_RUN_CACHE_MADE_HERE = "SDEKIT_TEST_RUN_CACHE" not in os.environ
if _RUN_CACHE_MADE_HERE:
    os.environ["SDEKIT_TEST_RUN_CACHE"] = tempfile.mkdtemp(prefix="sdekit-test-cache-")
os.environ["SDEKIT_CACHE_DIR"] = os.environ["SDEKIT_TEST_RUN_CACHE"]
# Tests check numerics, not speed: LLVM at -O1 compiles the ~40 kernels of the suite 2-3x faster
# (an Exprb kernel: 155 s -> 56 s) with the same floating-point semantics (no fast-math
# reassociation at any level; agreement is tested to 1e-12, never bitwise across opt levels).
# Numba's own cache goes to the same per-run directory, so -O1 code never lands in the source
# tree's __pycache__ where real runs would pick it up.  Set before anything imports numba.
os.environ.setdefault("NUMBA_OPT", "1")
os.environ["NUMBA_CACHE_DIR"] = os.path.join(os.environ["SDEKIT_CACHE_DIR"], "numba")
# The same for backend="cuda-host"'s host C++ (~120 libraries): -O0 compiles in half the time, same numbers.
os.environ.setdefault("SDEKIT_HOST_OPT", "-O0")


def pytest_sessionfinish(session, exitstatus):
    """The run's cache (its kernels, Numba's files) goes with the run, removed by the process that made it (the xdist
    controller, after its workers); one given in SDEKIT_TEST_RUN_CACHE is kept."""
    if _RUN_CACHE_MADE_HERE:
        import shutil
        shutil.rmtree(os.environ["SDEKIT_TEST_RUN_CACHE"], ignore_errors=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- golden outputs (issue 13: behaviour is preserved through the refactor) -------------------------
# tests/golden/golden.npz holds, per (test, backend), the final states, step counts and retcodes
# recorded before the architecture change by tests/golden/make_golden.py (which runs the tests
# below with SDEKIT_GOLDEN=write).  ``golden(tag, sol)`` compares a solution with its record.
GOLDEN_DIR = os.path.join(os.path.dirname(__file__), "golden")
GOLDEN_FILE = os.path.join(GOLDEN_DIR, "golden.npz")
#: fixed steps: the same arithmetic gives the same bits on one machine (make_golden.py --check
#: reports bitwise equality); across CPUs numpy's SIMD exp/sin and LLVM's FMA choice may differ by
#: an ulp, which a 1e-13 (relative to the solution's scale) bound absorbs and a real change does not
FIXED_RTOL = 1e-13
#: adaptive ODEs: the same accepted/rejected steps, values to rounding over thousands of steps
ADAPTIVE_RTOL = 1e-9
#: adaptive SDEs: the step sequence is chaotic in the path at the ulp level (a step end one ulp
#: off moves W by ~1e-10 and flips later accept/reject decisions near EEst = 1; README), so a
#: record holds to the solve's tolerance and its step counts to 10% (+ 10: rejections are few)
SDE_RTOL, SDE_STEPS = 1e-3, 0.1
_golden_cache = {}


def _golden_record(sol):
    rec = {"y": np.asarray(sol.y, dtype=np.float64), "t": np.asarray(sol.t, dtype=np.float64)}
    codes = sol.retcodes if sol.retcodes is not None else np.array([sol.retcode])
    rec["retcodes"] = np.array([str(c) for c in codes])
    rec["stats"] = np.array([sol.stats.get(k, -1) for k in ("nf", "naccept", "nreject")], dtype=np.int64)
    return rec


def _golden_file_name(key):
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def _golden_key(nodeid, tag):
    return (nodeid.split("::", 1)[1] + "|" + tag).replace("/", "_")


@pytest.fixture
def golden(request):
    """``golden(tag, sol, adaptive=False)``: ``sol`` equals the recorded golden output of this test and tag."""
    mode = os.environ.get("SDEKIT_GOLDEN", "check")

    def check(tag, sol, adaptive=False):
        """``adaptive``: False (fixed steps), True (adaptive ODE) or "sde" (adaptive SDE)."""
        key = _golden_key(request.node.nodeid, tag)
        rec = _golden_record(sol)
        if mode == "write":
            out = os.environ["SDEKIT_GOLDEN_OUT"]
            np.savez(os.path.join(out, _golden_file_name(key) + ".npz"), key=key, **rec)
            return
        if not _golden_cache:
            with np.load(GOLDEN_FILE) as data:
                for name in data.files:
                    k, field = name.rsplit("|", 1)
                    _golden_cache.setdefault(k, {})[field] = data[name]
        assert key in _golden_cache, f"no golden record {key!r}: run tests/golden/make_golden.py"
        ref = _golden_cache[key]
        assert list(rec["retcodes"]) == list(ref["retcodes"]), key
        np.testing.assert_array_equal(rec["t"], ref["t"], err_msg=key)
        if adaptive == "sde":
            assert np.all(np.abs(rec["stats"][1:] - ref["stats"][1:]) <= SDE_STEPS * ref["stats"][1:] + 10), (
                key, rec["stats"], ref["stats"])
        elif adaptive:
            np.testing.assert_array_equal(rec["stats"][1:], ref["stats"][1:], err_msg=key)
        else:
            np.testing.assert_array_equal(rec["stats"], ref["stats"], err_msg=key)
        scale = max(np.nanmax(np.abs(ref["y"])), 1e-300) if np.isfinite(ref["y"]).any() else 1.0
        diff = np.abs(rec["y"] - ref["y"])
        same_nan = np.array_equal(np.isnan(rec["y"]), np.isnan(ref["y"]))
        worst = float(np.nanmax(diff) / scale) if diff.size and np.isfinite(diff).any() else 0.0
        report = os.environ.get("SDEKIT_GOLDEN_REPORT")
        if report:
            with open(os.path.join(report, _golden_file_name(key) + ".txt"), "w") as fh:
                fh.write(f"{key}\t{worst:.3e}\t{int(np.array_equal(rec['y'], ref['y'], equal_nan=True))}\n")
        assert same_nan, key
        tol = SDE_RTOL if adaptive == "sde" else ADAPTIVE_RTOL if adaptive else FIXED_RTOL
        assert worst <= tol, (key, worst)

    return check
