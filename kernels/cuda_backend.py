"""Launch generated CUDA C kernels (``sdekit.codegen.emit_cuda``): one thread per trajectory.

* ``backend="cuda"``: CuPy compiles the source with NVRTC (``cupy.RawModule``, cached by CuPy per
  source and device architecture) and launches ``kernel`` on the current GPU.  The outputs are allocated
  on the GPU; the saved states stay there when the inputs came from it (``RunInput.device_output``:
  ``sol.y`` a CuPy array, no copy through the host), else they are copied back once.
* ``backend="cuda-host"``: the same source compiled as host C++ (``g++``, the prelude's shim) and
  ``kernel_host`` run on the CPU through ctypes, one trajectory after another: the CUDA path's
  numbers, checked against Numba without a GPU (platform-notes.md, "CUDA without a GPU").

Both fill the ABI through ``arguments.run_fixed`` / ``run_adaptive``, like every backend.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ..abi import ADAPTIVE_ARGS, FIXED_ARGS, arg_type
from .arguments import model_arguments, run_adaptive, run_fixed, step_classes
from .cuda_arrays import host, is_cuda_array
from .cache import publish, source_hash, write_source

_SCALARS = {"i64": (ctypes.c_longlong, np.int64), "u64": (ctypes.c_ulonglong, np.uint64),
            "f64": (ctypes.c_double, np.float64), "i8": (ctypes.c_byte, np.int8), "bool": (ctypes.c_bool, np.bool_)}
THREADS_PER_BLOCK = 128
_MODULES = {}     # (source hash, compute capability) -> cupy.RawModule
_SHAPES = {}      # (device, shape) -> the shape as an int64 array there: one copy in per shape, not per launch


def _device_shape(cp, shape):
    key = (cp.cuda.Device().id, tuple(shape))
    if key not in _SHAPES:
        if len(_SHAPES) >= 1024:          # bounded: a long session of varied sizes keeps the latest
            _SHAPES.pop(next(iter(_SHAPES)))
        _SHAPES[key] = cp.asarray(np.array(shape, dtype=np.int64))
    return _SHAPES[key]


def threads_per_block(limit: int) -> int:
    """The launch's block size: THREADS_PER_BLOCK (one trajectory per thread: four warps, so a block's
    shared weights serve 128 trajectories and the SMs keep several blocks resident), fewer when the
    kernel's registers allow fewer (``limit``: CUDA's max threads per block for it), in whole warps."""
    return max(32, min(THREADS_PER_BLOCK, int(limit)) // 32 * 32)


def _element(t: str, state) -> np.dtype:
    return np.dtype(state) if t == "state" else np.dtype(_SCALARS[t][1])


def _checked(names, values, state):
    """(type, value) per argument, each array of the ABI's element type (a mismatch is an ABI bug)."""
    out = []
    for name, v in zip(names, values):
        t = arg_type(name)
        if t.endswith("[]"):
            v = v if is_cuda_array(v) else np.asarray(v)
            if v.dtype != _element(t[:-2], state) or not v.flags.c_contiguous:  # pragma: no cover - ABI bug
                raise RuntimeError(f"kernel argument {name}: {v.dtype} {v.shape}, expected C-order {t}")
        out.append((t, v))
    return out


#: the host C++ optimisation level of ``backend="cuda-host"`` ($SDEKIT_HOST_OPT, default -O2).  The test-suite
#: builds its ~120 libraries at -O0, about twice as fast to compile; every level gives the same numbers: no
#: -ffast-math, and -ffp-contract=off (g++'s default is "fast", which contracts to FMA at -O2 where the target has
#: FMA, as on aarch64, and not at -O0).
HOST_OPT_DEFAULT = "-O2"


def host_opt() -> str:
    opt = os.environ.get("SDEKIT_HOST_OPT", HOST_OPT_DEFAULT)
    if opt not in ("-O0", "-O1", "-O2", "-O3", "-Os"):
        raise ValueError(f"SDEKIT_HOST_OPT={opt!r}: expected one of -O0, -O1, -O2, -O3, -Os")
    return opt


def host_library(source: str) -> ctypes.CDLL:
    """The source compiled as host C++ into a shared library, cached beside the source by its hash (and the
    optimisation level, when not the default: ``kernel-O0.so``)."""
    path = write_source(source, "kernel", ".cu")
    opt = host_opt()
    lib = path.with_name(path.stem + ("" if opt == HOST_OPT_DEFAULT else opt) + ".so")
    if lib.exists():
        try:
            return ctypes.CDLL(str(lib))
        except OSError as e:            # a truncated or garbled library: build it again
            import warnings
            warnings.warn(f"the cached host library {lib} did not load ({e}); building it again", RuntimeWarning,
                          stacklevel=2)
            lib.unlink()
    cxx = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")
    if cxx is None:
        raise RuntimeError("backend='cuda-host' needs a C++ compiler (g++ or $CXX)")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".so")
    os.close(fd)
    cmd = [cxx, opt, "-ffp-contract=off", "-std=c++17", "-x", "c++", "-shared", "-fPIC", "-o", tmp, str(path)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        os.unlink(tmp)
        raise RuntimeError(f"host C++ compile of {path} failed:\n{done.stderr[-4000:]}")
    publish(tmp, lib, 0o777)
    return ctypes.CDLL(str(lib))


class _CudaKernelBase:
    xp = np           # the array module the kernel's outputs are allocated with (CudaKernel: CuPy, on the GPU)

    def __init__(self, source, arguments, adaptive: bool):
        self.source, self.arguments, self.adaptive = source, list(arguments), adaptive

    def run(self, inp, chunk):
        """The chunk's RawResult; its saved states stay where the kernel wrote them (``xp``) when the inputs came
        from the GPU (``inp.device_output``), else they are copied to the host, once."""
        inp = inp.chunk(chunk)
        n = inp.y0.shape[1]
        if self.adaptive:
            extra = model_arguments(self.arguments, inp)
            raw = run_adaptive(inp, lambda fixed: self.launch(n, ADAPTIVE_ARGS, fixed, extra, inp.y0.dtype), xp=self.xp)
        else:
            extra = model_arguments(self.arguments, inp, step_classes(inp.grid)[0])
            raw = run_fixed(inp, lambda fixed: self.launch(n, FIXED_ARGS, fixed, extra, inp.y0.dtype), xp=self.xp)
        if not inp.device_output:
            raw.saved = host(raw.saved)
        return raw


class HostCudaKernel(_CudaKernelBase):
    """The CUDA source run on the CPU (``kernel_host``): for agreement tests without a GPU."""

    def __init__(self, source, arguments, adaptive: bool):
        super().__init__(source, arguments, adaptive)
        self.lib = host_library(source)

    def launch(self, n, spec, fixed, extra, state):
        names = list(spec) + self.arguments
        cargs, keep = [ctypes.c_longlong(n)], []
        for t, v in _checked(names, list(fixed) + list(extra), state):
            if t.endswith("[]"):
                shape = np.array(v.shape, dtype=np.int64)
                keep += [v, shape]
                cargs += [ctypes.c_void_p(v.ctypes.data), ctypes.c_void_p(shape.ctypes.data)]
            else:
                cargs.append(_SCALARS[t][0](v))
        self.lib.kernel_host(*cargs)


class CudaKernel(_CudaKernelBase):
    """The kernel on the GPU through CuPy: its outputs allocated there (``xp``), the host inputs copied in.
    ``last_launch_s``: the last launch's kernel time, by CUDA events (copies and host work excluded);
    ``last_launch_resources``: its threads per block and the compiled kernel's registers, local (stack) and
    static shared bytes per thread / block (CUDA's function attributes, through CuPy; None where CuPy lacks one)."""

    def __init__(self, source, arguments, adaptive: bool):
        super().__init__(source, arguments, adaptive)
        cp = require_gpu()
        self.xp = cp
        self.last_launch_s = None
        self.last_launch_resources = None
        key = (source_hash(source), cp.cuda.Device().compute_capability)
        if key not in _MODULES:          # one module per source and device architecture in this process
            _MODULES[key] = cp.RawModule(code=source, options=("-std=c++17",))   # CuPy caches the NVRTC build on disk
        self.module = _MODULES[key]

    def launch(self, n, spec, fixed, extra, state):
        cp = self.xp
        names = list(spec) + self.arguments
        args = [np.int64(n)]
        for t, v in _checked(names, list(fixed) + list(extra), state):
            if t.endswith("[]"):      # the outputs are on the device already (run_* allocate them with xp)
                args += [cp.asarray(v), _device_shape(cp, v.shape)]   # host inputs copied in
            else:
                args.append(_element(t, state).type(v))
        kernel = self.module.get_function("kernel")
        threads = threads_per_block(kernel.max_threads_per_block)
        start, stop = cp.cuda.Event(), cp.cuda.Event()
        start.record()
        kernel((-(-n // threads),), (threads,), tuple(args))
        stop.record()
        stop.synchronize()
        self.last_launch_s = cp.cuda.get_elapsed_time(start, stop) / 1e3
        self.last_launch_resources = dict(threads_per_block=threads, **{
            name: getattr(kernel, attribute, None) for name, attribute in
            (("registers", "num_regs"), ("local_bytes", "local_size_bytes"), ("shared_bytes", "shared_size_bytes"))})


def require_gpu():
    """CuPy, once it has found a CUDA device; else a RuntimeError that says which is missing."""
    try:
        import cupy as cp
    except ImportError:
        raise RuntimeError("backend='cuda' needs CuPy (pip install cupy-cuda12x) and an NVIDIA GPU: "
                           "CuPy is not installed; backend='cuda-host' runs the same CUDA source on the CPU, "
                           "and sdekit inspect --backend cuda prints it") from None
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as e:      # CUDARuntimeError without a driver or device
        count, why = 0, f" ({e})"
    else:
        why = ""
    if count == 0:
        raise RuntimeError(f"backend='cuda' needs an NVIDIA GPU: CuPy is installed but finds no CUDA device{why}")
    return cp


def nvrtc_ptx(source: str, arch: str = "compute_80", optimize: bool = True, library: str | None = None) -> str:
    """PTX of ``source`` compiled by NVRTC alone (``nvidia-cuda-nvrtc-cu12``, no CuPy or GPU needed:
    platform-notes.md), through its C API; RuntimeError with NVRTC's log when it does not compile.
    ``optimize=False`` compiles as ``-G`` (device debug, NVVM's optimiser off): the same front end and code
    generation, about a tenth of the time for the adaptive kernels (a check that the source compiles).
    ``library``: another libnvrtc.so (CUDA 13's, say: the one CuPy uses on a CUDA 13 machine)."""
    if library is None:
        import glob

        import nvidia.cuda_nvrtc as pkg
        folder = list(pkg.__path__)[0]
        library = sorted(glob.glob(os.path.join(folder, "lib", "libnvrtc.so*")))[0]
    lib = ctypes.CDLL(library)
    prog = ctypes.c_void_p()

    def call(fn, *args):
        rc = getattr(lib, fn)(*args)
        if rc != 0 and fn != "nvrtcCompileProgram":
            raise RuntimeError(f"{fn} failed with NVRTC error {rc}")
        return rc

    call("nvrtcCreateProgram", ctypes.byref(prog), source.encode(), b"kernel.cu", 0, None, None)
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"-std=c++17"] + ([] if optimize else [b"-G"])
        rc = call("nvrtcCompileProgram", prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        if rc != 0:
            size = ctypes.c_size_t()
            call("nvrtcGetProgramLogSize", prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            call("nvrtcGetProgramLog", prog, log)
            raise RuntimeError(f"NVRTC could not compile the kernel:\n{log.value.decode()[-4000:]}")
        size = ctypes.c_size_t()
        call("nvrtcGetPTXSize", prog, ctypes.byref(size))
        ptx = ctypes.create_string_buffer(size.value)
        call("nvrtcGetPTX", prog, ptx)
        return ptx.value.decode()
    finally:
        call("nvrtcDestroyProgram", ctypes.byref(prog))
