"""Numeric functions of ``hL``: φ-functions, scheme operators, the stochastic convolution.

Layouts of a runtime ``L`` (``n'`` is 1, or n for per-trajectory parameters):
``zero`` -> None, ``scalar`` -> (1, n'), ``diagonal`` -> (d, n'), ``dense`` -> (n', d, d).
Operators come back in the layout their emitter applies: elementwise arrays broadcasting
against (d, n), or (n', d, d) matrices.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from .cuda_arrays import array_module, is_cuda_array
from .matfun import (inverse_block, inverse_block_work, phi_block, phi_block_work, phi_complex_into,
                     phi_scalar_into)

def phi_scalar(z, kmax: int) -> list:
    """[φ_0(z), ..., φ_kmax(z)] elementwise (methods.md §1.2): ``matfun.phi_scalar``, the kernels'
    definition, on every entry; complex z (a Fourier operator's complex symbol): :func:`phi_complex`."""
    if np.iscomplexobj(z) and np.any(np.imag(z) != 0):
        return phi_complex(z, kmax)
    z = np.asarray(np.real(z), dtype=np.float64)
    out = np.empty((kmax + 1,) + z.shape)
    phi_scalar_into(kmax, np.ascontiguousarray(z).reshape(-1), out.reshape(kmax + 1, -1))
    return list(out)


def phi_complex(z, kmax: int) -> list:
    """[φ_0(z), ..., φ_kmax(z)] for complex z elementwise: ``matfun.phi_complex_scalar`` (the compiled field
    kernels' definition; 1e-13 against 120-digit mpmath)."""
    z = np.asarray(z, dtype=np.complex128)
    out = np.empty((kmax + 1, z.size), dtype=np.complex128)
    phi_complex_into(kmax, np.ascontiguousarray(z).ravel(), out)
    return list(out.reshape((kmax + 1,) + z.shape))


def phi_dense(Z, kmax: int) -> list:
    """[φ_0(Z), ..., φ_kmax(Z)] for matrices Z (..., d, d): ``matfun.phi_block`` (scaling and
    squaring of the Taylor series; the kernels' definition), every matrix a lane."""
    Z = np.asarray(Z, dtype=np.float64)
    d, lead = Z.shape[-1], Z.shape[:-2]
    A = np.ascontiguousarray(np.moveaxis(Z.reshape(-1, d, d), 0, -1))
    B = A.shape[-1]
    out = np.empty((kmax + 1, d, d, B))
    phi_block(A, kmax, out, phi_block_work(d, kmax, B, np.float64))
    return [np.moveaxis(out[k], -1, 0).reshape(lead + (d, d)) for k in range(kmax + 1)]


def inverse_dense(A):
    """inv(A) for matrices A (..., d, d): ``matfun.inverse_block`` (Gauss–Jordan with partial
    pivoting; the adaptive kernels' definition), every matrix a lane."""
    A = np.asarray(A, dtype=np.float64)
    d, lead = A.shape[-1], A.shape[:-2]
    lanes = np.ascontiguousarray(np.moveaxis(A.reshape(-1, d, d), 0, -1))
    out = np.empty_like(lanes)
    inverse_block(lanes, out, inverse_block_work(d, lanes.shape[-1], np.float64))
    return np.moveaxis(out, -1, 0).reshape(lead + (d, d))


def linear_value(structure: str, value, d: int):
    """Canonical runtime layout of L from a numeric (d, d) array or ``linear_entries(p)``
    (a scalar, d diagonal entries, or d rows of d entries; entries scalars or (n,) arrays)."""
    if structure == "zero":
        return None
    if isinstance(value, np.ndarray) and value.shape == (d, d):
        if structure == "scalar":
            return np.full((1, 1), float(value[0, 0]))
        if structure == "diagonal":
            return np.diagonal(value).astype(float)[:, None]
        return value.astype(float)[None]
    flat = [value] if structure == "scalar" else list(value) if structure == "diagonal" else [x for row in value for x in row]
    xp = next((array_module(x) for x in flat if is_cuda_array(x)), np)   # per-trajectory entries on the GPU stay there
    arr = xp.stack(xp.broadcast_arrays(*(xp.asarray(x, dtype=xp.float64).reshape(-1) for x in flat)))
    if structure == "dense":
        return xp.moveaxis(arr.reshape(d, d, -1), -1, 0)
    return arr


def evaluate_phi_poly(poly, structure: str, Lval, h: float, cache: dict):
    """Value of Σ w Π atoms(hL) (see ``sdekit.codegen.phi.phi_poly``) in the layout of L."""
    total = None
    for weight, atoms in poly:
        term = None
        for atom in atoms:
            a = _atom_value(atom, structure, Lval, h, cache)
            term = a if term is None else (term @ a if structure == "dense" else term * a)
        if term is None:
            term = np.eye(Lval.shape[-1])[None] if structure == "dense" else np.ones((1, 1))
        term = float(weight) * term
        total = term if total is None else total + term
    return total if total is not None else np.zeros((1, 1))


def _atom_value(atom, structure, Lval, h, cache):
    """φ_k(c hL) (all k up to max(k, 4) at once) or the resolvent (I − a hL)^{-1}."""
    if atom not in cache:
        if atom[0] == "res":
            a = float(atom[1])
            if structure == "zero":
                cache[atom] = np.ones((1, 1))
            elif structure == "dense":
                d = Lval.shape[-1]
                cache[atom] = inverse_dense(np.eye(d) - a * h * Lval)
            else:
                cache[atom] = 1.0 / (1.0 - a * h * Lval)
            return cache[atom]
        _, k, c = atom
        c = float(c)
        if structure == "zero":
            cache[atom] = np.full((1, 1), 1.0 / math.factorial(k))
        else:
            phis = phi_dense(c * h * Lval, max(k, 4)) if structure == "dense" else phi_scalar(c * h * Lval, max(k, 4))
            for kk, val in enumerate(phis):
                cache.setdefault(("phi", kk, atom[2]), val)
    return cache[atom]


def convolution_pair(a, b):
    """E(a, b) = φ_1(a+b) − φ_1(a) φ_1(b), stably: for max(|a|,|b|) < 1 the form
    (a+b)²φ_3(a+b) − a²φ_3(a) − b²φ_3(b) − ab φ_2(a)φ_2(b) (same quantity; no cancellation of O(1) terms)."""
    a, b = np.broadcast_arrays(np.asarray(a, float), np.asarray(b, float))
    pa, pb, pab = phi_scalar(a, 3), phi_scalar(b, 3), phi_scalar(a + b, 3)
    near = (a + b) ** 2 * pab[3] - a**2 * pa[3] - b**2 * pb[3] - a * b * pa[2] * pb[2]
    far = pab[1] - pa[1] * pb[1]
    return np.where(np.maximum(np.abs(a), np.abs(b)) < 1.0, near, far)


def convolution_residual(structure: str, layout: str, Lval, G, noise: str, h: float):
    """S with S Sᵀ = Cov[∫_0^h e^{(h−s)L} G dW(s) | ΔW] (methods.md §5.2; see
    ``sdekit.codegen.scheme.ConvolutionResidual``).

    ``G``: (d, n') rows for scalar/diagonal noise.  Returns (d or 1, n') for the
    ``elementwise`` layout (diagonal noise with zero/scalar/diagonal L), else (n', d, d).
    """
    G = np.asarray(G, dtype=float)
    d = G.shape[0]
    if structure == "zero":
        return np.zeros((1, 1)) if layout == "elementwise" else np.zeros((1, d, d))
    if structure != "dense":
        zl = h * np.broadcast_to(Lval, (d, max(Lval.shape[1], G.shape[1])))
        if layout == "elementwise":  # diagonal noise: R diagonal
            return np.abs(G) * np.sqrt(np.maximum(h * convolution_pair(zl, zl), 0.0))
        GG = G[:, None, :] * G[None, :, :] if noise == "scalar" else None
        R = h * convolution_pair(zl[:, None, :], zl[None, :, :]) * GG   # (d, d, n')
        return _psd_sqrt(np.moveaxis(R, -1, 0))
    # dense L: Van Loan (1978) for Q, minus the part explained by ΔW
    n_ = max(Lval.shape[0], G.shape[1])
    out = np.empty((n_, d, d))
    for i in range(n_):
        L = Lval[min(i, Lval.shape[0] - 1)]
        g = G[:, min(i, G.shape[1] - 1)]
        GG = np.outer(g, g) if noise == "scalar" else np.diag(g * g)
        C = h * np.block([[-L, GG], [np.zeros((d, d)), L.T]])
        F = scipy.linalg.expm(C)
        Q = F[d:, d:].T @ F[:d, d:]
        P1 = phi_dense(h * L, 1)[1]
        R = Q - h * P1 @ GG @ P1.T
        out[i] = _psd_sqrt(0.5 * (R + R.T)[None])[0]
    return out


def _psd_sqrt(R):
    """S = V √max(Λ, 0) for symmetric PSD R (..., d, d); S Sᵀ = R, rank-deficient allowed."""
    w, V = np.linalg.eigh(R)
    return V * np.sqrt(np.maximum(w, 0.0))[..., None, :]
