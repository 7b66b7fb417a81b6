"""Array-step kernels on the GPU (issue 15, for big external networks): a diffusion sampler's stage update
out = Σ_k c_k a_k over CuPy arrays or torch CUDA tensors as one generated element-wise CUDA kernel
(``codegen.emit_cuda.lincomb_source``) in place of a chain of small tensor operations — the GPU face of
``kernels.lincomb`` (same passes of WIDTH arrays, same float64 sum in k order).  torch tensors are read
and written through DLPack (no copies); the result has the inputs' type and device."""
from __future__ import annotations

import contextlib

import numpy as np

from .lincomb import WIDTH, in_passes

_KERNELS = {}          # dtype -> compiled CuPy kernel (CuPy caches the NVRTC build per source and device)
THREADS = 256


def is_cuda_array(a) -> bool:
    """A CuPy array or a torch tensor on a CUDA device (without importing either)."""
    module = type(a).__module__
    if module.startswith("torch"):
        return getattr(getattr(a, "device", None), "type", None) == "cuda"
    return module.startswith("cupy") and hasattr(a, "__cuda_array_interface__")


def on_gpu(x):
    """x as a CuPy array without a copy (a CuPy array itself, a torch CUDA tensor through DLPack), or None when x
    is no CUDA array, CuPy is not installed or x is on another GPU than CuPy's current one (then ``host`` reads it)."""
    if not is_cuda_array(x):
        return None
    try:
        import cupy
    except ImportError:
        return None
    torch_in = type(x).__module__.startswith("torch")
    where = x.device.index if torch_in else getattr(getattr(x, "device", None), "id", None)
    if where is not None and where != cupy.cuda.runtime.getDevice():
        return None
    return cupy.from_dlpack(x.detach()) if torch_in else x


def array_module(a):
    """The array module of ``a``: CuPy for a CUDA array, else numpy."""
    if is_cuda_array(a):
        import cupy
        return cupy
    return np


def host(x):
    """x on the host: a torch tensor as numpy (detached, copied from its device), a CuPy array copied (``get``);
    anything else as it is."""
    if type(x).__module__.startswith("torch") and hasattr(x, "detach"):
        x = x.detach().cpu()
        return (x.double() if str(x.dtype) in ("torch.bfloat16", "torch.float16") else x).numpy()  # no numpy bf16
    if is_cuda_array(x):
        return x.get()
    return x


def like(a, x):
    """The host array ``a`` as an array of ``x``'s type, float dtype and device (numpy, torch, CuPy): what a
    host-side computation on ``x``'s values returns to its caller."""
    if isinstance(x, np.ndarray):
        return a.astype(x.dtype, copy=False) if x.dtype.kind == "f" else a
    if type(x).__module__.startswith("torch"):
        import torch
        return torch.as_tensor(a, dtype=x.dtype, device=x.device)
    if is_cuda_array(x):
        import cupy
        return cupy.asarray(a, dtype=x.dtype)
    return a


def to_device(a):
    """A host result as a CuPy array on the current device (the type ``sol.y`` has when the inputs were on it)."""
    from .cuda_backend import require_gpu
    return require_gpu().asarray(a)


def _kernel(cp, dtype: str):
    if dtype not in _KERNELS:
        from ..codegen.emit_cuda import lincomb_source
        _KERNELS[dtype] = cp.RawModule(code=lincomb_source(dtype, WIDTH), options=("-std=c++17",)).get_function("lincomb")
    return _KERNELS[dtype]


def fused_cuda(coefs, arrays):
    """Σ c_k a_k of CUDA arrays of one float dtype and shape (CuPy, or torch through DLPack), one kernel per
    WIDTH arrays, returned in the first array's type and shape."""
    from .cuda_backend import require_gpu
    cp = require_gpu()
    torch_in = type(arrays[0]).__module__.startswith("torch")
    xs = [(cp.from_dlpack(a.detach().contiguous()) if torch_in else cp.ascontiguousarray(a)).reshape(-1) for a in arrays]
    dtype = str(xs[0].dtype)
    if dtype not in ("float32", "float64") or any(x.dtype != xs[0].dtype or x.size != xs[0].size for x in xs):
        raise ValueError(f"fused_cuda: arrays of one float dtype and size, got {[(str(x.dtype), x.size) for x in xs]}")
    kernel, n = _kernel(cp, dtype), xs[0].size

    def one_pass(c, a):
        out = cp.empty_like(a[0])
        kernel((min(-(-n // THREADS), 65535 * 8),), (THREADS,), (np.int64(n), *map(np.float64, c), *a, out))
        return out
    device = arrays[0].device.index if torch_in else None      # a torch tensor's GPU, which may not be CuPy's current
    with cp.cuda.Device(device) if device is not None else contextlib.nullcontext():
        out = in_passes(coefs, xs, one_pass).reshape(tuple(arrays[0].shape))
    if torch_in:
        import torch
        return torch.from_dlpack(out)
    return out
