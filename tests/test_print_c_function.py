"""codegen/print_c_function: a runtime algorithm's one Python definition printed as C.

The printed φ (what every adaptive CUDA kernel with an elementwise L calls) is compiled as host
C++ and compared with the Numba-compiled ``kernels.matfun.phi_scalar`` it was printed from.
"""
import ctypes
import math
import shutil

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sdekit.codegen.print_c_function import c_function
from sdekit.kernels.cuda_backend import host_library
from sdekit.kernels.matfun import phi_scalar
from sdekit.kernels.philox import normal4, normals, philox_words, seed_key

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                reason="needs a host C++ compiler (g++) to run the printed C")


def _library(fn, c_name):
    constants, function = c_function(fn, c_name)
    source = "\n".join(["#include <cmath>", "#define __device__", *constants, *function,
                        f'extern "C" double call_{c_name}(long long k, double x) {{ return {c_name}(k, x); }}'])
    lib = host_library(source)
    call = getattr(lib, f"call_{c_name}")
    call.restype, call.argtypes = ctypes.c_double, [ctypes.c_longlong, ctypes.c_double]
    return call


@pytest.fixture(scope="module")
def printed_phi():
    return _library(phi_scalar, "phi_printed")


def test_printed_phi_source_reads_like_its_definition():
    constants, function = c_function(phi_scalar, "phi")
    assert function[1] == "__device__ double phi(long long k, double x) {"
    assert any(c.startswith("__device__ const double INV_FACT[64] = {") for c in constants)
    assert "constexpr double SERIES_RADIUS = 5.0;" in constants and "constexpr long long SERIES_DEGREE = 40LL;" in constants


@settings(max_examples=300, deadline=None)
@given(k=st.integers(0, 6),       # x: over phi_scalar's promised range [-1e6, 50], its branch points
       x=st.one_of(st.floats(-60.0, 40.0), st.floats(-1e6, 50.0), st.sampled_from([0.0, -5.0, 5.0, -4.999999])))
def test_printed_phi_agrees_with_the_numba_definition(printed_phi, k, x):
    """Same operations as the Python definition, so equal to it bit for bit (host C++ -O2 on x86-64
    has no FMA); the Numba build contracts a*b+c into FMAs (``JIT`` fastmath 'contract', as nvcc
    does on the GPU), so it differs within φ's accuracy promise, 4u each: 8u relative."""
    want, got = phi_scalar.py_func(k, x), printed_phi(k, x)
    assert got == want or (math.isnan(got) and math.isnan(want)), (k, x, got, want)
    fused = phi_scalar(k, x)
    if math.isfinite(fused) and fused != 0.0:
        assert abs(got - fused) <= 8 * 2.0 ** -53 * abs(fused), (k, x, got, fused)


def _loops(n: int, x: float) -> float:
    """Exercise while, for with a negative step, elif, augmented assignment and integer division."""
    s = 0.0
    i = 0
    while i < n:
        i += 1
    for j in range(n, 0, -2):
        if j % 3 == 0:
            s += x
        elif j // 2 == 1:
            s -= 1.0
        else:
            s = s * 0.5
    return s + i


def _py_loops(n, x):
    return _loops(n, x)


def test_printed_control_flow_agrees_with_python():
    call = _library(_loops, "loops")
    for n in range(0, 12):
        for x in (0.0, 1.5, -2.25):
            assert call(n, x) == _py_loops(n, x)


def _tuple_swap(x: float) -> float:
    a, b = x, 2.0 * x
    a, b = b, a
    return a - b


def _unannotated(x):
    return x


def _list_constant(k: int) -> float:
    return [1.0, 2.0][k]


@pytest.mark.parametrize("fn, match", [
    (_tuple_swap, "a tuple assignment that reads its targets"),
    (_unannotated, "an unannotated parameter"),
    (_list_constant, "cannot print expression"),
])
def test_what_cannot_be_printed_is_named(fn, match):
    with pytest.raises(NotImplementedError, match=match):
        c_function(fn)


def _tuple_assign(x: float) -> float:
    a, b = x, 2.0 * x
    return a + b


def test_tuple_assignment_prints():
    constants, function = c_function(_tuple_assign)
    assert "    a = x;" in function and "    b = (2.0 * x);" in function


# ---- Philox4x32-10 and Box–Muller, printed from kernels/philox.py (what a CUDA SDE kernel draws) ----

_PHILOX_DRIVER = """
extern "C" void words(long long n, const unsigned long long* c, unsigned long long k0, unsigned long long k1,
                      unsigned long long* out) {
    for (long long j = 0; j < n; ++j)
        philox4x32(c[4 * j], c[4 * j + 1], c[4 * j + 2], c[4 * j + 3], k0, k1,
                   &out[4 * j], &out[4 * j + 1], &out[4 * j + 2], &out[4 * j + 3]);
}
extern "C" void normals(long long n, unsigned long long k0, unsigned long long k1, long long node,
                        const long long* traj, long long tag, double* out) {
    for (long long j = 0; j < n; ++j)
        normal4(k0, k1, node, traj[j], tag, &out[4 * j], &out[4 * j + 1], &out[4 * j + 2], &out[4 * j + 3]);
}
"""


@pytest.fixture(scope="module")
def printed_philox():
    constants, function = c_function(normal4)
    return host_library("\n".join(["#include <cmath>", "#define __device__", "#define __forceinline__ inline",
                                    *constants, *function, _PHILOX_DRIVER]))


def test_printed_philox_source_reads_like_its_definition():
    constants, function = c_function(normal4)
    text = "\n".join(function)
    assert "__device__ void philox4x32(unsigned long long c0," in text       # tuple results as out-parameters
    assert text.count("philox_round(c0, c1, c2, c3, ") == 10                  # its ten rounds, as written
    assert "constexpr unsigned long long philox_M0 = 3528531795ULL;" in constants
    assert any(c.startswith("__device__ __forceinline__ double numba_runtime_i64_as_f64(long long x)") for c in constants)


def test_printed_philox_words_are_the_kernels_words(printed_philox):
    """Bit for bit: the printed rounds are the same integer arithmetic (random counters and keys, and
    counters with every word at its extremes)."""
    rng = np.random.default_rng(5)
    counters = rng.integers(0, 2**32, size=(4, 500), dtype=np.uint64)
    counters[:, :4] = [[0, 2**32 - 1, 0, 2**32 - 1]] * 4
    for key in [(0, 0), (2**32 - 1, 2**32 - 1), tuple(int(k) for k in rng.integers(0, 2**32, 2))]:
        out = np.zeros((500, 4), dtype=np.uint64)
        c = np.ascontiguousarray(counters.T)
        printed_philox.words(ctypes.c_longlong(500), c.ctypes.data_as(ctypes.c_void_p), ctypes.c_ulonglong(key[0]),
                             ctypes.c_ulonglong(key[1]), out.ctypes.data_as(ctypes.c_void_p))
        np.testing.assert_array_equal(out.T, philox_words(counters, key))


def test_printed_normals_are_the_kernels_normals(printed_philox):
    """The printed Box–Muller (branch-free log, sin/cos) against the Numba build of the same source:
    equal but for FMA contraction (Numba contracts, host g++ does not): within 8 ulp of the value."""
    seed, node, stream = 2**40 + 17, 123456789, 1
    traj = np.arange(0, 4000, 3, dtype=np.int64)
    k0, k1 = seed_key(seed)
    out = np.zeros((traj.size, 4))
    printed_philox.normals(ctypes.c_longlong(traj.size), ctypes.c_ulonglong(int(k0)), ctypes.c_ulonglong(int(k1)),
                           ctypes.c_longlong(node), traj.ctypes.data_as(ctypes.c_void_p), ctypes.c_longlong(stream << 16),
                           out.ctypes.data_as(ctypes.c_void_p))
    want = normals(seed, node, traj, stream, 4).T
    assert np.all(np.abs(out - want) <= 8 * np.spacing(np.abs(want)) + 1e-300), np.max(np.abs(out - want))
    assert abs(out.mean()) < 0.05 and abs(out.std() - 1.0) < 0.05     # and they are normals


def test_printed_philox_compiles_with_nvrtc():
    pytest.importorskip("nvidia.cuda_nvrtc", reason="nvidia-cuda-nvrtc-cu12 (the test extras) is not installed")
    from sdekit.kernels.cuda_backend import nvrtc_ptx
    constants, function = c_function(normal4)
    kernel = ("extern \"C\" __global__ void draw(unsigned long long k0, unsigned long long k1, double* out) {\n"
              "    long long t = blockIdx.x * blockDim.x + threadIdx.x;\n"
              "    normal4(k0, k1, 7, t, 0, &out[4 * t], &out[4 * t + 1], &out[4 * t + 2], &out[4 * t + 3]);\n}")
    assert ".visible .entry draw(" in nvrtc_ptx("\n".join([*constants, *function, kernel]))
