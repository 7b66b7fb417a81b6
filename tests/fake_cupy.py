"""A stand-in for CuPy on a machine without a GPU (tests only), so that ``backend="cuda"``'s own code —
``CudaKernel`` (output allocation on the device, copies in and back, launch arguments and configuration,
CUDA events) and ``fused_cuda`` — runs in CI, not only where a GPU is lent.

* "Device" arrays are numpy arrays of :class:`ndarray`, a class whose module says cupy (what
  ``kernels.cuda_arrays.is_cuda_array`` reads); every copy between host and "device" is counted in
  :data:`COPIES` (bytes each way).
* ``RawModule`` compiles the CUDA source as host C++ (the prelude's shim: ``cuda_backend.host_library``)
  and a launch runs the kernel's ``<name>_host`` loop over threads with the same arguments.  A launch
  refuses a host array (on a GPU: an illegal address) and a grid that does not cover the ``n`` threads.

What it cannot show is the GPU's numbers and speed: the ``gpu``-marked tests and
``benchmarks/cuda_device.py`` are for a lent GPU.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
import time
import types

import numpy as np

#: bytes copied host -> device and device -> host since the module was installed, and each copy's
#: (direction, shape) in ``COPIES["log"]``
COPIES = {"to_device": 0, "to_host": 0, "log": []}


def _count(direction, a):
    COPIES[direction] += a.nbytes
    COPIES["log"].append((direction, a.shape))


class ndarray(np.ndarray):
    """A "device" array: host memory that sdekit takes for a CuPy array."""

    __module__ = "cupy._core.fake"

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self.ctypes.data, False), "version": 3}

    def get(self):
        return asnumpy(self)


def _device(a) -> ndarray:
    return np.asarray(a).view(ndarray)


def asarray(a, dtype=None):
    """``a`` itself when it is a device array of that dtype, else a copy on the "device" (counted)."""
    if isinstance(a, ndarray) and (dtype is None or a.dtype == np.dtype(dtype)):
        return a
    if not isinstance(a, ndarray):
        _count("to_device", np.asarray(a))
    return _device(np.array(a, dtype=dtype, order="C"))


def asnumpy(a):
    a = np.asarray(a)
    _count("to_host", a)
    return np.array(a, order="C")


def ascontiguousarray(a):
    return a if isinstance(a, ndarray) and a.flags.c_contiguous else asarray(np.ascontiguousarray(a))


def empty(shape, dtype=float):
    return _device(np.empty(shape, dtype))


def zeros(shape, dtype=float):
    return _device(np.zeros(shape, dtype))


def full(shape, value, dtype=None):
    return _device(np.full(shape, value, dtype))


def empty_like(a):
    return _device(np.empty_like(np.asarray(a)))


_SCALARS = {np.int64: ctypes.c_longlong, np.uint64: ctypes.c_ulonglong, np.float64: ctypes.c_double,
            np.float32: ctypes.c_float, np.int8: ctypes.c_byte, np.bool_: ctypes.c_bool}


class _Kernel:
    """A ``RawKernel``: ``kernel(grid, block, args)`` runs ``<name>_host(*args)`` (a loop over the n threads)."""

    max_threads_per_block = 1024

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, grid, block, args):
        n = int(args[0])
        if grid[0] * block[0] < n or block[0] > self.max_threads_per_block:
            raise ValueError(f"launch of {grid} x {block} threads for n = {n}")
        c = []
        for a in args:
            if isinstance(a, np.ndarray):
                if not isinstance(a, ndarray):
                    raise TypeError(f"a host array {a.dtype} {a.shape} passed to a GPU kernel")
                c.append(ctypes.c_void_p(a.ctypes.data))
            else:
                c.append(_SCALARS[type(a)](a))
        self.fn(*c)


class RawModule:
    def __init__(self, code, options=()):
        from sdekit.kernels.cuda_backend import host_library
        self.lib = host_library(code)

    def get_function(self, name):
        return _Kernel(getattr(self.lib, f"{name}_host"))


class _Event:
    def record(self):
        self.at = time.perf_counter()

    def synchronize(self):
        pass


def _elapsed_ms(start, stop):
    return (stop.at - start.at) * 1e3


#: an H200's properties as CUDA 13 reports them (no ``clockRate``: read by attribute 13, kHz)
_PROPERTIES = {"name": b"stand-in for CuPy (host C++)", "major": 9, "minor": 0, "multiProcessorCount": 132}

cuda = types.SimpleNamespace(
    Device=lambda *_: types.SimpleNamespace(compute_capability="90"), Event=_Event, get_elapsed_time=_elapsed_ms,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, deviceSynchronize=lambda: None,
                                  getDeviceProperties=lambda i: dict(_PROPERTIES),
                                  deviceGetAttribute=lambda attr, i: {13: 1_980_000}[attr]))
float32, float64 = np.float32, np.float64
random = types.SimpleNamespace(standard_normal=lambda n, dtype=float: _device(np.random.default_rng(0).standard_normal(n).astype(dtype)))


def abs(a):      # noqa: A001 - cupy.abs
    return _device(np.abs(a))


@contextlib.contextmanager
def installed():
    """This module as ``cupy`` inside the block (sdekit's kernel caches emptied, the copy counters zeroed);
    everything as it was after it."""
    from sdekit.kernels import cuda_arrays, cuda_backend
    saved = sys.modules.get("cupy"), cuda_backend._MODULES, cuda_arrays._KERNELS
    sys.modules["cupy"], cuda_backend._MODULES, cuda_arrays._KERNELS = sys.modules[__name__], {}, {}
    reset()
    try:
        yield sys.modules[__name__]
    finally:
        if saved[0] is None:
            sys.modules.pop("cupy", None)
        else:
            sys.modules["cupy"] = saved[0]
        cuda_backend._MODULES, cuda_arrays._KERNELS = saved[1], saved[2]


def reset():
    """The copy counters and log emptied."""
    COPIES.update(to_device=0, to_host=0, log=[])
