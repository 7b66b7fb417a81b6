"""Network weights as runtime data: validation and import from ``torch.nn.Sequential``."""
from __future__ import annotations

import numpy as np

_TORCH_ACTIVATIONS = {"Tanh": "tanh", "ReLU": "relu", "Sigmoid": "sigmoid", "Softplus": "softplus",
                      "SiLU": "silu", "Identity": "identity"}


def _to_numpy(x):
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def from_torch(seq, net) -> list:
    """[(W, b), ...] of a ``torch.nn.Sequential`` of Linear layers and activations matching ``net``."""
    layers, acts = [], []
    for mod in seq:
        kind = type(mod).__name__
        if kind == "Linear":
            if mod.bias is None:
                raise ValueError(f"net {net.name!r}: Linear layers need a bias")
            layers.append((_to_numpy(mod.weight), _to_numpy(mod.bias)))
        elif kind in _TORCH_ACTIVATIONS:
            if kind == "Softplus" and (mod.beta != 1 or mod.threshold != 20):
                raise ValueError(f"net {net.name!r}: only Softplus(beta=1) is supported")
            acts.append(_TORCH_ACTIVATIONS[kind])
        else:
            raise ValueError(f"net {net.name!r}: torch module {kind} is not supported (Linear + activations only)")
    if any(a != net.activation for a in acts) or len(acts) != len(layers) - 1:
        raise ValueError(f"net {net.name!r}: the Sequential's activations {acts} do not match "
                         f"{len(layers) - 1} x {net.activation!r} hidden layers")
    return layers


def check_weights(net, weights, dtype) -> list:
    """Validated weights ``[(W (out, in), b (out,)), ...]`` cast to ``dtype``; ValueError naming the layer."""
    if type(weights).__name__ == "Sequential":
        weights = from_torch(weights, net)
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
