"""Helpers that generated numpy modules import: network forward pass, dense operators."""
from __future__ import annotations

import numpy as np

from .linear import phi_scalar

def mlp_forward_jacobian(weights, activation, activation_grad, inputs, tangents=None):
    """(output (n_out, n), Jacobian (n_out, n_in, n)) of the MLP: forward mode through the layers,
    T ← W T, then T ← σ'(x) T on hidden layers (the chain rule W_L diag(σ'(x_{L−1})) … W_1).
    ``activation``, ``activation_grad``: σ and σ' elementwise (the generated module's ``act_*``).
    ``tangents`` (n_in, k, n): the k input directions to carry instead of all n_in (then (n_out, k, n)
    is J times them: k Jacobian-vector products for the cost of k, not n_in)."""
    x = np.array(np.broadcast_arrays(*(np.asarray(v) for v in inputs)))
    if x.ndim == 1:
        x = x[:, None]
    T = (np.broadcast_to(np.eye(x.shape[0], dtype=x.dtype)[:, :, None], x.shape[:1] + x.shape) if tangents is None
         else np.asarray(tangents, dtype=x.dtype))
    for i, (W, b) in enumerate(weights):
        x = matvec(W[:, :, None], x, b[:, None])
        T = np.einsum("ok,kjn->ojn", W, T)
        if i < len(weights) - 1:
            T = np.broadcast_to(np.asarray(activation_grad(x), dtype=x.dtype), x.shape)[:, None, :] * T
            x = activation(x)
    return x, T


def external_forward(fn, inputs, n_out: int):
    """Output (n_out, n) of the host network ``fn`` (``sdekit.External``) on ``inputs`` (rows of shape (n,)):
    one call on the batch X (n, n_in).  A torch module gets a tensor on its parameters' device (no autograd)
    and its output comes back as numpy; any other callable gets the numpy batch."""
    x = np.ascontiguousarray(np.stack(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in inputs)), axis=-1))
    if x.ndim == 1:
        x = x[None, :]
    if type(fn).__module__.startswith("torch"):
        import torch
        param = next(fn.parameters(), None)
        with torch.no_grad():
            out = fn(torch.as_tensor(x, dtype=param.dtype if param is not None else torch.float64,
                                     device=param.device if param is not None else "cpu"))
    else:
        out = fn(x)
    from .cuda_arrays import host
    out = np.asarray(host(out), dtype=float)
    if out.shape != (x.shape[0], n_out):
        raise ValueError(f"an External network must return (n, n_out) = {(x.shape[0], n_out)} for inputs (n, n_in) = "
                         f"{x.shape}; got {out.shape}")
    return out.T


def mlp_forward(weights, activation, inputs):
    """Output (n_out, n) of the MLP ``weights = [(W, b), ...]`` on ``inputs`` (rows of shape (n,)).

    Hidden layers apply ``activation`` (σ elementwise: the generated module's ``act_*``, printed from
    ``codegen.neural.ACTIVATIONS``), the last layer is linear (``sdekit.MLP``).
    """
    x = np.array(np.broadcast_arrays(*(np.asarray(v) for v in inputs)))
    if x.ndim == 1:
        x = x[:, None]
    for i, (W, b) in enumerate(weights):
        x = matvec(W[:, :, None], x, b[:, None])
        if i < len(weights) - 1:
            x = activation(x)
    return x


def phi_lanes(k: int, x):
    """φ_k(x) on every lane (the loop IR's ``phi(k, x)``): ``matfun.phi_scalar``, elementwise."""
    return phi_scalar(x, k)[k]


def matvec(A, v, init=None):
    """Σ_j A[:, j] v[j] accumulated in order j = 0, 1, ... (plus ``init``).

    ``A`` is (d_out, d_in, n or 1), ``v`` is (d_in, n).  A fixed summation order (no BLAS)
    makes every trajectory's result independent of the ensemble size, and it is the
    order the fused kernels use.
    """
    acc = A[:, 0] * v[0] if init is None else init + A[:, 0] * v[0]
    for j in range(1, A.shape[1]):
        acc = acc + A[:, j] * v[j]
    return acc


def apply_dense(A, v):
    """(n', d, d) operators applied to (d, n) vectors -> (d, n), trajectory by trajectory: the host's
    dense values (``kernels.linear``: L, operator tables), which the numpy backend takes as they are."""
    return matvec(np.moveaxis(A, 0, -1), v)


def add_linear(J, L, structure: str):
    """J[:d, :d] += L in place, J lanes last (d+1, d+1, n), L the host's value (``linear.linear_value``:
    scalar (1, n'), diagonal (d, n'), dense (n', d, d)); kernels take ``Lm`` in ``abi.LINEAR_LAYOUT``."""
    d = J.shape[0] - 1
    if structure == "dense":
        J[:d, :d] += np.moveaxis(L, 0, -1)
    elif structure in ("scalar", "diagonal"):
        idx = np.arange(d)
        J[idx, idx] += np.broadcast_to(L, (d, J.shape[-1]))
    return J


def apply_augmented(A, v, tau):
    """An operator A (d+1, d+1, n) of the t-augmented Jacobian, lanes last, applied to (v, τ): the first d rows."""
    d = v.shape[0]
    return matvec(A[:d, :d], v) + A[:d, d] * tau
