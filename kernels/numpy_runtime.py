"""Helpers that generated numpy modules import: network forward pass, dense operators."""
from __future__ import annotations

import numpy as np

ACTIVATIONS = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0),
    "sigmoid": lambda x: 0.5 * (1 + np.tanh(0.5 * x)),
    "softplus": lambda x: np.logaddexp(x, 0),
    "silu": lambda x: x * 0.5 * (1 + np.tanh(0.5 * x)),
    "identity": lambda x: x,
}


def mlp_forward(weights, activation: str, inputs):
    """Output (n_out, n) of the MLP ``weights = [(W, b), ...]`` on ``inputs`` (rows of shape (n,)).

    Hidden layers apply ``activation``, the last layer is linear (``sdekit.MLP``).
    """
    x = np.array(np.broadcast_arrays(*(np.asarray(v) for v in inputs)))
    if x.ndim == 1:
        x = x[:, None]
    act = ACTIVATIONS[activation]
    for i, (W, b) in enumerate(weights):
        x = matvec(W[:, :, None], x, b[:, None])
        if i < len(weights) - 1:
            x = act(x)
    return x


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
    """(n', d, d) operators applied to (d, n) vectors -> (d, n), trajectory by trajectory."""
    return matvec(np.moveaxis(A, 0, -1), v)
