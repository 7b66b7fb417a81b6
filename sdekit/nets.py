"""Network weights as runtime data: validation and import from ``torch.nn.Sequential``."""
from __future__ import annotations

import os

import numpy as np

_TORCH_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "Softplus": "softplus",
                      "SiLU": "silu", "Identity": "identity"}


def _to_numpy(x):
    from sdekit.kernels.cuda_arrays import host
    return np.asarray(host(x), dtype=float)


def is_torch_sequence(x) -> bool:
    """A ``torch.nn.Sequential`` (or a subclass of it, or an ``nn.ModuleList``): layers in order."""
    return any(c.__name__ in ("Sequential", "ModuleList") and c.__module__.startswith("torch")
               for c in type(x).__mro__)


def from_torch(seq, net) -> list:
    """[(W, b), ...] of a ``torch.nn.Sequential`` of Linear layers and activations matching ``net``: Linear,
    activation, Linear, ..., Linear, in that order (an activation elsewhere would be moved silently)."""
    layers, acts, order = [], [], []
    for mod in seq:
        kind = type(mod).__name__
        if kind == "Linear":
            if mod.bias is None:
                raise ValueError(f"net {net.name!r}: Linear layers need a bias")
            layers.append((_to_numpy(mod.weight), _to_numpy(mod.bias)))
            order.append("Linear")
        elif kind in _TORCH_ACTIVATIONS:
            order.append(kind)
            if kind == "Softplus" and (mod.beta != 1 or mod.threshold != 20):
                raise ValueError(f"net {net.name!r}: only Softplus(beta=1) is supported")
            acts.append(_TORCH_ACTIVATIONS[kind])
        else:
            raise ValueError(f"net {net.name!r}: torch module {kind} is not supported (Linear + activations only)")
    if any(a != net.activation for a in acts) or len(acts) != len(layers) - 1:
        raise ValueError(f"net {net.name!r}: the Sequential's activations {acts} do not match "
                         f"{len(layers) - 1} x {net.activation!r} hidden layers")
    if any((kind == "Linear") != (i % 2 == 0) for i, kind in enumerate(order)):
        raise ValueError(f"net {net.name!r}: the Sequential's modules {order} are not Linear, activation, Linear, "
                         "..., Linear (an MLP applies its activation between Linear layers, none after the last)")
    return layers


def check_weights(net, weights, dtype) -> list:
    """Validated weights ``[(W (out, in), b (out,)), ...]`` cast to ``dtype``; ValueError naming the layer.
    An ``sdekit.External`` network's "weights" are its callable, returned as it is."""
    from sdekit.codegen.neural import External
    if isinstance(net, External):
        if not callable(weights):
            raise ValueError(f"External network {net.name!r}: nets={{{net.name!r}: fn}} needs a callable fn(X) on batches "
                             f"X (n, {net.sizes[0]}) returning (n, {net.sizes[1]}), got {type(weights).__name__}")
        return weights
    if is_torch_sequence(weights):
        weights = from_torch(weights, net)
    if isinstance(weights, (str, bytes, os.PathLike)):
        raise ValueError(f"net {net.name!r}: weights must be a list of (W, b) pairs or a torch.nn.Sequential, got the "
                         f"path {weights!r}: load it first (e.g. torch.load into your nn.Sequential) and pass that")
    if hasattr(weights, "keys"):   # e.g. a torch state_dict(): names, not layers in order
        raise ValueError(f"net {net.name!r}: weights must be a list of (W, b) pairs or a torch.nn.Sequential, got a "
                         f"{type(weights).__name__} (a state_dict()?): pass the Sequential itself, or "
                         "[(lin.weight, lin.bias) for lin in seq if isinstance(lin, torch.nn.Linear)]")
    try:
        weights = list(weights)
    except TypeError:
        raise ValueError(f"net {net.name!r}: weights must be a list of (W, b) pairs or a torch.nn.Sequential, "
                         f"got {type(weights).__name__}") from None
    expected = net.weight_shapes()
    if len(weights) != len(expected):
        raise ValueError(f"net {net.name!r} {list(net.sizes)} has {len(expected)} layers, got {len(weights)} (W, b) pairs")
    out = []
    for i, (layer, (ws, bs)) in enumerate(zip(weights, expected)):
        try:
            W, b = layer
        except (TypeError, ValueError):
            raise ValueError(f"net {net.name!r} layer {i}: expected a (W, b) pair") from None
        W, b = _to_numpy(W), _to_numpy(b).reshape(-1)
        if W.shape != ws:
            raise ValueError(f"net {net.name!r} layer {i}: W has shape {W.shape}, expected {ws} (out, in)")
        if b.shape != bs:
            raise ValueError(f"net {net.name!r} layer {i}: b has shape {b.shape}, expected {bs}")
        if not (np.all(np.isfinite(W)) and np.all(np.isfinite(b))):
            raise ValueError(f"net {net.name!r} layer {i}: weights contain NaN or Inf")
        out.append((np.ascontiguousarray(W, dtype=dtype), np.ascontiguousarray(b, dtype=dtype)))
    return out


class MLPNetwork:
    """A multilayer perceptron as a batched callable ``net(x, t)`` for the diffusion samplers and inversion
    (``sk.diffusion``): inputs (x_1, ..., x_d, t) per row of x (n, d), output (n, d_out); hidden layers
    apply ``activation`` (``codegen.neural.ACTIVATIONS``, the one σ every backend prints), the last layer
    is linear, as ``sk.MLP``.  :meth:`jvp` is its forward-mode tangent pass (the chain rule through the
    layers, ``kernels.numpy_runtime.mlp_forward_jacobian``): exact Jacobian-vector products, which
    Newton inversion uses instead of finite differences."""

    def __init__(self, weights, activation: str = "tanh"):
        import sympy as sp

        from sdekit.codegen.neural import ACTIVATIONS, X, activation as sigma, activation_grad
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.weights = [(np.asarray(W, dtype=float), np.asarray(b, dtype=float)) for W, b in weights]
        for k, (W, b) in enumerate(self.weights):
            if W.ndim != 2 or b.shape != (W.shape[0],) or (k and W.shape[1] != self.weights[k - 1][0].shape[0]):
                raise ValueError(f"layer {k}: weights (out, in) and bias (out,) that chain, got {W.shape}, {b.shape}")
        modules = [{"log1p": np.log1p}, "numpy"]
        self.activation = activation
        self._act = sp.lambdify(X, sigma(activation), modules)
        self._grad = sp.lambdify(X, activation_grad(activation), modules)
        self.dim = self.weights[0][0].shape[1] - 1       # the state's; the last input is t

    def _inputs(self, x, t):
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"the network takes states of shape (n, {self.dim}), got {x.shape}")
        return [*x.T, np.full(x.shape[0], float(t))]

    def __call__(self, x, t):
        from sdekit.kernels.numpy_runtime import mlp_forward
        return mlp_forward(self.weights, self._act, self._inputs(x, t)).T

    def jvp(self, x, t, v):
        """(net(x, t), ∂net/∂x · v), both (n, d_out), for tangents ``v`` (n, d)."""
        from sdekit.kernels.numpy_runtime import mlp_forward_jacobian
        inputs = self._inputs(x, t)
        seed = np.zeros((self.dim + 1, 1, len(inputs[0])))
        seed[:self.dim, 0] = np.asarray(v, dtype=float).T          # one direction; t does not move
        out, jv = mlp_forward_jacobian(self.weights, self._act, self._grad, inputs, seed)
        return out.T, jv[:, 0].T
