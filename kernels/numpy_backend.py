"""The numpy reference backend: runs the generated numpy kernel (``sdekit.codegen.emit_numpy``: the
same loop IR as the fused kernels, printed over all trajectories of a chunk at once, in (d, n)
layout).  Noise comes from the time-addressed Brownian tree, so results depend only on (seed,
trajectory index), never on ensemble size or chunking."""
from __future__ import annotations

import numpy as np

from .arguments import model_arguments, operator_values, run_adaptive, run_fixed, step_classes
from ..abi import LINEAR_ARGS, NUMPY_MODEL_ARGS


def _model(inp, arguments, operators=None):
    """Values of the kernel's model arguments (``abi.NUMPY_MODEL_ARGS``; ``emit_numpy.numpy_arguments``
    picks them), by name: the host's values as they are (``L``: ``kernels.linear.linear_value``), and the
    kernels' ``Lm`` for the lanes' own operators of adaptive steps."""
    dtype = inp.y0.dtype
    p, nets, L, ops, progress = NUMPY_MODEL_ARGS
    vals = {p: inp.params, nets: inp.nets, L: None if inp.Lval is None else inp.Lval.astype(dtype),
            ops: operators, progress: inp.progress}
    if LINEAR_ARGS[0] in arguments:
        vals.update(zip(LINEAR_ARGS, model_arguments(LINEAR_ARGS, inp)))
    return [vals[name] for name in arguments]


def integrate(module, arguments, inp):
    """Fixed steps over ``inp.grid``; the operators of step class ``hc`` are the host's values for that
    step size (``arguments.operator_values``, in the host's layout, as numpy's ``L``)."""
    dtype = inp.y0.dtype
    per_class = [{name: np.asarray(v, dtype=dtype) for name, v in
                  operator_values(inp.op_specs, inp.structure, inp.Lval, float(h), inp.noise).items()}
                 for h in step_classes(inp.grid)[0]]
    model = _model(inp, arguments, per_class.__getitem__)
    return run_fixed(inp, lambda fixed: module.kernel(*fixed, *model))


def integrate_adaptive(module, arguments, inp):
    """Adaptive steps; every lane computes its own operators for its own step (in the kernel)."""
    model = _model(inp, arguments)
    return run_adaptive(inp, lambda fixed: module.kernel(*fixed, *model))
