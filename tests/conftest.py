import os
import tempfile

import numpy as np
import pytest

# generated modules go to a per-run cache so tests never depend on a user's cache; set in the
# pytest-xdist controller before the workers start, so they inherit it and share compiled kernels
os.environ.setdefault("SDEKIT_CACHE_DIR", tempfile.mkdtemp(prefix="sdekit-test-cache-"))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
