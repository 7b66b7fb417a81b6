"""The numpy reference backend: runs the generated numpy kernel (``sdekit.codegen.emit_numpy``: the
same loop IR as the fused kernels, printed over all trajectories of a chunk at once, in (d, n)
layout).  Noise comes from the time-addressed Brownian tree, so results depend only on (seed,
trajectory index), never on ensemble size or chunking."""
from __future__ import annotations

from .arguments import model_arguments, operator_tables, run_adaptive, run_fixed, step_classes
from ..abi import LINEAR_ARGS, operator_args


def _model(inp, arguments, operators=None):
    """Values of the kernel's model arguments (``emit_numpy.numpy_arguments``), by name."""
    dtype = inp.y0.dtype
    vals = {"p": inp.params, "nets": inp.nets, "L": None if inp.Lval is None else inp.Lval.astype(dtype),
            "operators": operators, "progress": inp.progress}
    if LINEAR_ARGS[0] in arguments:
        vals.update(zip(LINEAR_ARGS, model_arguments(LINEAR_ARGS, inp)))
    return [vals[name] for name in arguments]


def integrate(module, arguments, inp):
    """Fixed steps over ``inp.grid``; the operators of step class ``hc`` are the tables' rows."""
    tables = operator_tables(inp, step_classes(inp.grid)[0], inp.y0.dtype)
    rows = {name: tables[operator_args(name)[0]] for name in inp.op_specs}
    model = _model(inp, arguments, lambda hc: {name: table[hc] for name, table in rows.items()})
    return run_fixed(inp, lambda fixed: module.kernel(*fixed, *model))


def integrate_adaptive(module, arguments, inp):
    """Adaptive steps; every lane computes its own operators for its own step (in the kernel)."""
    model = _model(inp, arguments)
    return run_adaptive(inp, lambda fixed: module.kernel(*fixed, *model))
