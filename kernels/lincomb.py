"""One fused pass for a linear combination of arrays, out = Σ_k c_k a_k: what a diffusion sampler's step is
once its scalar coefficients are known (``sdekit.sampling.Lazy`` collects them).  Numba, parallel over the
elements: each input is read once and the output written once, where eager array arithmetic makes a pass per
operation."""
from __future__ import annotations

import numba
import numpy as np

from ..abi import JIT_FLAGS


@numba.njit(parallel=True, **JIT_FLAGS)
def lincomb(coefs, arrays, out):
    """out[i] = Σ_k coefs[k] arrays[k][i] (1-D arrays of one dtype; the sum in float64, in k order)."""
    for i in numba.prange(out.shape[0]):
        acc = 0.0
        for k in range(len(arrays)):
            acc += coefs[k] * arrays[k][i]
        out[i] = acc


@numba.njit(parallel=True, **JIT_FLAGS)
def lincomb_lanes(coefs, arrays, out):
    """out[r, j] = Σ_k coefs[k, j] arrays[k][r, j]: a stage of the numpy kernels, rows the state's components,
    columns the lanes, each lane its own coefficients (adaptive steps: functions of its h; a number is a
    stride-0 row)."""
    for j in numba.prange(out.shape[1]):
        for r in range(out.shape[0]):
            acc = 0.0
            for k in range(len(arrays)):
                acc += coefs[k, j] * arrays[k][r, j]
            out[r, j] = acc


#: arrays at least this large take a fused pass (the samplers' Lazy, the numpy kernels' stages); smaller stay eager
FUSE_MIN_SIZE = 1 << 16
#: arrays per pass: fewer are padded with the first one at coefficient 0 (read from cache, nearly free), so
#: one compiled signature per dtype serves every sampler; more are combined in passes of this many
WIDTH = 8


def in_passes(coefs, arrays, one_pass):
    """Σ c_k a_k as passes of WIDTH arrays: ``one_pass(coefs, arrays)`` combines exactly WIDTH (fewer are padded
    with the first array at coefficient 0) into a new array; a longer sum carries the partial result into the
    next pass.  The CPU pass (:func:`fused`) and the GPU's (``kernels.cuda_arrays.fused_cuda``) share it."""
    coefs, arrays, out = list(coefs), list(arrays), None
    while True:
        if out is not None:
            coefs, arrays = [1.0] + coefs, [out] + arrays
        head_c, head_a = coefs[:WIDTH], arrays[:WIDTH]
        coefs, arrays = coefs[WIDTH:], arrays[WIDTH:]
        pad = WIDTH - len(head_a)
        out = one_pass(head_c + [0.0] * pad, head_a + [head_a[0]] * pad)
        if not arrays:
            return out


def combination(coefs, arrays):
    """Σ c_k a_k of one stage of a numpy kernel (a scheme's Combine, ``codegen.emit_numpy``): arrays (D, n) (or
    broadcastable), coefficients numbers or per-lane arrays (n,).  From FUSE_MIN_SIZE numbers, float arrays of
    one shape and dtype take one fused pass (:func:`lincomb_lanes`, WIDTH arrays at a time); otherwise numpy
    left to right, the order the printed expression had."""
    first = arrays[0]
    if (isinstance(first, np.ndarray) and first.ndim == 2 and first.size >= FUSE_MIN_SIZE
            and first.dtype in (np.float32, np.float64)
            and all(isinstance(a, np.ndarray) and a.shape == first.shape and a.dtype == first.dtype for a in arrays)):
        n = first.shape[1]

        def one_pass(c, a):
            C = np.empty((len(c), n))
            for k, ck in enumerate(c):
                C[k] = ck
            out = np.empty(first.shape, dtype=first.dtype)
            lincomb_lanes(C, tuple(np.ascontiguousarray(x) for x in a), out)
            return out
        return in_passes(coefs, arrays, one_pass)
    total = None
    for c, a in zip(coefs, arrays):
        x = a if isinstance(c, int) and c == 1 else c * a
        total = x if total is None else total + x
    return total


def fused(coefs, arrays):
    """Σ c_k a_k for numpy arrays of one float dtype and size, as a new 1-D array (:func:`in_passes` of
    :func:`lincomb`)."""
    def one_pass(c, a):
        out = np.empty(a[0].shape, dtype=a[0].dtype)
        lincomb(np.array(c), tuple(a), out)
        return out
    return in_passes(coefs, [np.ascontiguousarray(a).reshape(-1) for a in arrays], one_pass)
