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


#: arrays per pass: fewer are padded with the first one at coefficient 0, so a few compiled signatures serve every
#: sampler; more are combined in passes of this many
WIDTH = 8
#: the pass widths the CPU kernel is compiled for: a sum pads to the next (a 2-term step reads 2 arrays, not 8:
#: 0.13 against 0.33 ms for 2^20 float32 numbers on 2 cores)
CPU_WIDTHS = (2, 4, WIDTH)


def in_passes(coefs, arrays, one_pass, widths=(WIDTH,)):
    """Σ c_k a_k as passes of at most WIDTH arrays: ``one_pass(coefs, arrays)`` combines exactly one of ``widths``
    arrays (fewer are padded with the first array at coefficient 0) into a new array; a longer sum carries the
    partial result into the next pass.  The CPU pass (:func:`fused`, widths CPU_WIDTHS) and the GPU's
    (``kernels.cuda_arrays.fused_cuda``, WIDTH) share it."""
    coefs, arrays, out = list(coefs), list(arrays), None
    while True:
        if out is not None:
            coefs, arrays = [1.0] + coefs, [out] + arrays
        head_c, head_a = coefs[:WIDTH], arrays[:WIDTH]
        coefs, arrays = coefs[WIDTH:], arrays[WIDTH:]
        pad = min(w for w in widths if w >= len(head_a)) - len(head_a)
        out = one_pass(head_c + [0.0] * pad, head_a + [head_a[0]] * pad)
        if not arrays:
            return out


def fused(coefs, arrays):
    """Σ c_k a_k for numpy arrays of one float dtype and size, as a new 1-D array (:func:`in_passes` of
    :func:`lincomb`)."""
    def one_pass(c, a):
        out = np.empty(a[0].shape, dtype=a[0].dtype)
        lincomb(np.array(c), tuple(a), out)
        return out
    return in_passes(coefs, [np.ascontiguousarray(a).reshape(-1) for a in arrays], one_pass, CPU_WIDTHS)
