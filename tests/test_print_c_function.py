"""codegen/print_c_function: a runtime algorithm's one Python definition printed as C.

The printed φ (what every adaptive CUDA kernel with an elementwise L calls) is compiled as host
C++ and compared with the Numba-compiled ``kernels.matfun.phi_scalar`` it was printed from.
"""
import ctypes
import math
import shutil

import pytest
from hypothesis import given, settings, strategies as st

from sdekit.codegen.print_c_function import c_function
from sdekit.kernels.cuda_backend import host_library
from sdekit.kernels.matfun import phi_scalar

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


def _tuple_result(x: float) -> float:
    a, b = x, 2.0 * x
    return a + b


def _unannotated(x):
    return x


def _list_constant(k: int) -> float:
    return [1.0, 2.0][k]


@pytest.mark.parametrize("fn, match", [
    (_tuple_result, "cannot print statement 'a, b = "),
    (_unannotated, "an unannotated parameter"),
    (_list_constant, "cannot print expression"),
])
def test_what_cannot_be_printed_is_named(fn, match):
    with pytest.raises(NotImplementedError, match=match):
        c_function(fn)
