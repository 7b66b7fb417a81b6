"""A stand-in for CuPy on a machine without a GPU (tests only), so that ``backend="cuda"``'s own code —
``CudaKernel`` (output allocation on the device, copies in and back, launch arguments and configuration,
CUDA events) and ``fused_cuda`` — runs in CI, not only where a GPU is lent.

* A "device" array (:class:`ndarray`) holds host memory but is no numpy array: converting it to one
  implicitly raises TypeError, as CuPy does (``.get()`` / :func:`asnumpy` copy explicitly).  Every copy
  between host and "device" is logged in :data:`COPIES`.
* ``RawModule`` compiles the CUDA source as host C++ (the prelude's shim: ``cuda_backend.host_library``)
  and a launch runs ``<name>_host`` with the same arguments.  It checks them against the ``__global__``
  signature as a GPU would need them: a device array for each pointer (of its element type), a numpy
  scalar of exactly the C type for each value (CuPy passes a scalar by its dtype's size: another one would
  shift every later argument); and, for the one-thread-per-trajectory ``kernel``, a grid covering n.

What it cannot show is the GPU's numbers and speed: the ``gpu``-marked tests and
``benchmarks/cuda_device.py`` are for a lent GPU.
"""
from __future__ import annotations

import contextlib
import ctypes
import re
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


class ndarray(np.lib.mixins.NDArrayOperatorsMixin):
    """A "device" array: host memory ``_a`` behind CuPy's face (no implicit conversion to numpy).  Arithmetic
    and numpy's ufuncs work on it as on a CuPy array (``__array_ufunc__``), with device arrays and scalars only:
    a host array among the operands raises TypeError, as CuPy does."""

    __module__ = "cupy._core.core"

    def __init__(self, a):
        self._a = a

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)

    @property
    def __cuda_array_interface__(self):
        return {"shape": self.shape, "typestr": self.dtype.str, "data": (self._a.ctypes.data, False), "version": 3}

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly.")

    def get(self):
        return asnumpy(self)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs.get("out") is not None:
            return NotImplemented
        args = [_operand(x, ufunc.__name__) for x in inputs]
        return _result(ufunc(*args, **kwargs))

    def __array_function__(self, func, types, args, kwargs):
        """numpy functions on device arrays, as CuPy's ``__array_function__`` sends them to its own: ``ndim``;
        ``select`` with cupy.select's checks (each condition and choice must be an array: a Python bool has no
        dtype, AttributeError); the rest refused (TypeError)."""
        if func is np.ndim:
            return args[0].ndim
        if func is np.select:
            conds, choices = args[0], args[1]
            for a in list(conds) + list(choices):
                a.dtype       # noqa: B018 - CuPy reads it (AttributeError for a bool or float)
            return _result(np.select([_operand(c, "select") for c in conds], [_operand(c, "select") for c in choices],
                                     **kwargs))
        return NotImplemented

    T = property(lambda self: ndarray(self._a.T))

    def astype(self, dtype, copy=True):
        return self if not copy and self.dtype == np.dtype(dtype) else ndarray(self._a.astype(dtype))

    def all(self):
        return ndarray(np.asarray(self._a.all()))

    def __getitem__(self, index):
        return _result(self._a[index])

    def __setitem__(self, index, value):
        if isinstance(value, np.ndarray) and value.ndim:
            raise TypeError("a host numpy array assigned into a device array (CuPy: use cupy.asarray)")
        self._a[index] = value._a if isinstance(value, ndarray) else value

    def transpose(self, *axes):
        return ndarray(self._a.transpose(*axes))

    def reshape(self, *shape):
        return ndarray(self._a.reshape(*shape))

    def max(self):
        return ndarray(np.asarray(self._a.max()))

    def __int__(self):
        return int(self._a)

    def __float__(self):
        return float(self._a)

    def __bool__(self):
        return bool(self._a)

    def __len__(self):
        return len(self._a)

    def __repr__(self):
        return f"fake_cupy.ndarray({self._a!r})"


def _operand(x, where):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):      # 0-d too (numpy scalars, np.generic, are taken): cupy/cupy#1694
        raise TypeError(f"{where}: a host numpy array among device operands (CuPy: Unsupported type numpy.ndarray)")
    return x


def _result(a):
    return ndarray(a) if isinstance(a, np.ndarray) else ndarray(np.asarray(a))


def _host(a, where):
    if isinstance(a, ndarray):
        return a._a
    raise TypeError(f"{where}: {type(a).__name__} is not a device array")


def asarray(a, dtype=None):
    """``a`` itself when it is a device array of that dtype, else a copy on the "device" (logged)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == np.dtype(dtype) else ndarray(a._a.astype(dtype))
    host = np.array(a, dtype=dtype, order="C")
    _count("to_device", host)
    return ndarray(host)


def asnumpy(a):
    a = _host(a, "asnumpy") if isinstance(a, ndarray) else np.asarray(a)
    _count("to_host", a)
    return np.array(a, order="C")


def ascontiguousarray(a, dtype=None):
    if isinstance(a, ndarray):
        if a.flags.c_contiguous and (dtype is None or a.dtype == np.dtype(dtype)):
            return a
        return ndarray(np.ascontiguousarray(a._a, dtype=dtype))
    return asarray(np.ascontiguousarray(a, dtype=dtype))


def array(a, dtype=None, order="C"):
    """A copy on the "device" (logged when ``a`` is on the host)."""
    if isinstance(a, ndarray):
        return ndarray(np.array(a._a, dtype=dtype, order=order))
    return asarray(np.array(a, dtype=dtype, order=order))


def from_dlpack(a):
    return a if isinstance(a, ndarray) else asarray(a)


def _on_device(fn):
    """numpy's ``fn`` on device arrays and scalars (host arrays refused), the result on the "device"."""
    def apply(*arrays, **kwargs):
        result = fn(*[_operand(a, fn.__name__) for a in arrays], **kwargs)
        return [_result(r) for r in result] if isinstance(result, (list, tuple)) else _result(result)
    return apply


def stack(arrays, axis=0):
    return _result(np.stack([_host(a, "stack") for a in arrays], axis=axis))


atleast_1d, broadcast_arrays, isfinite = _on_device(np.atleast_1d), _on_device(np.broadcast_arrays), _on_device(np.isfinite)
broadcast_to, moveaxis, all = _on_device(np.broadcast_to), _on_device(np.moveaxis), _on_device(np.all)  # CuPy's names


def empty(shape, dtype=float):
    return ndarray(np.empty(shape, dtype))


def zeros(shape, dtype=float):
    return ndarray(np.zeros(shape, dtype))


def full(shape, value, dtype=None):
    return ndarray(np.full(shape, value, dtype))


def empty_like(a):
    return ndarray(np.empty_like(_host(a, "empty_like")))


float32, float64, int64 = np.float32, np.float64, np.int64
random = types.SimpleNamespace(
    standard_normal=lambda n, dtype=float: ndarray(np.random.default_rng(0).standard_normal(n).astype(dtype)))

# ---- kernels ------------------------------------------------------------------------------------------------

#: C parameter type -> the numpy scalar / element type CuPy must be given for it
_C_TYPES = {"long long": np.int64, "unsigned long long": np.uint64, "double": np.float64, "float": np.float32,
            "signed char": np.int8, "bool": np.bool_}
_CTYPES = {np.int64: ctypes.c_longlong, np.uint64: ctypes.c_ulonglong, np.float64: ctypes.c_double,
           np.float32: ctypes.c_float, np.int8: ctypes.c_byte, np.bool_: ctypes.c_bool}
#: kernels that loop over their grid (any launch covers n); the others run one thread per item
GRID_STRIDE = {"lincomb"}


def signatures(code: str) -> dict:
    """``{name: [(is_pointer, numpy type), ...]}`` of the source's ``extern "C" __global__`` functions."""
    real = re.search(r"typedef (float|double) real;", code)
    types_ = dict(_C_TYPES, real=_C_TYPES[real.group(1)] if real else None)
    out = {}
    for name, params in re.findall(r'extern "C" __global__ void (?:__launch_bounds__\([^)]*\) )?(\w+)\(([^)]*)\)', code):
        sig = []
        for p in params.split(","):
            p = re.sub(r"\b(const|__restrict__)\b", " ", p).strip()
            pointer = "*" in p
            ctype = " ".join(p.replace("*", " ").split()[:-1])
            sig.append((pointer, types_[ctype]))
        out[name] = sig
    return out


class _Kernel:
    """A ``RawKernel``: ``kernel(grid, block, args)`` checks the arguments against the signature and runs
    ``<name>_host(*args)`` (a loop over the n threads)."""

    max_threads_per_block = 1024
    num_regs = local_size_bytes = shared_size_bytes = 0     # CUDA's function attributes: none on the host

    def __init__(self, name, fn, signature):
        self.name, self.fn, self.signature = name, fn, signature

    def __call__(self, grid, block, args):
        n = int(args[0])
        if block[0] > self.max_threads_per_block or (self.name not in GRID_STRIDE and grid[0] * block[0] < n):
            raise ValueError(f"launch of {grid} x {block} threads for n = {n}")
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name}: {len(args)} arguments for {len(self.signature)} parameters")
        c = []
        for k, (a, (pointer, want)) in enumerate(zip(args, self.signature)):
            if pointer:
                if not isinstance(a, ndarray):
                    raise TypeError(f"{self.name} argument {k}: {type(a).__name__}, not a device array")
                if a.dtype != want:
                    raise TypeError(f"{self.name} argument {k}: a {a.dtype} array for a {np.dtype(want)} pointer")
                c.append(ctypes.c_void_p(a._a.ctypes.data))
            else:
                if type(a) is not want:
                    raise TypeError(f"{self.name} argument {k}: {type(a).__name__} for a {np.dtype(want)} parameter")
                c.append(_CTYPES[want](a))
        self.fn(*c)


class RawModule:
    def __init__(self, code, options=()):
        from sdekit.kernels.cuda_backend import host_library
        self.lib, self.signatures = host_library(code), signatures(code)

    def get_function(self, name):
        return _Kernel(name, getattr(self.lib, f"{name}_host"), self.signatures[name])


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
    Device=lambda *_: types.SimpleNamespace(compute_capability="90", id=0), Event=_Event, get_elapsed_time=_elapsed_ms,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0, deviceSynchronize=lambda: None,
                                  getDeviceProperties=lambda i: dict(_PROPERTIES),
                                  deviceGetAttribute=lambda attr, i: {13: 1_980_000}[attr]))


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
