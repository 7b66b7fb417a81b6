import os
import tempfile

import numpy as np
import pytest

# generated modules go to a per-run cache so tests never depend on a user's cache; set in the
# pytest-xdist controller before the workers start, so they inherit it and share compiled kernels
os.environ.setdefault("SDEKIT_CACHE_DIR", tempfile.mkdtemp(prefix="sdekit-test-cache-"))
# Tests check numerics, not speed: LLVM at -O1 compiles the ~40 kernels of the suite 2-3x faster
# (an Exprb kernel: 155 s -> 56 s) with the same floating-point semantics (no fast-math
# reassociation at any level; agreement is tested to 1e-12, never bitwise across opt levels).
# Numba's own cache goes to the same per-run directory, so -O1 code never lands in the source
# tree's __pycache__ where real runs would pick it up.  Set before anything imports numba.
os.environ.setdefault("NUMBA_OPT", "1")
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.join(os.environ["SDEKIT_CACHE_DIR"], "numba"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
