"""The numpy reference backend: runs the generated numpy kernel (``sdekit.codegen.emit_numpy``: the
same loop IR as the fused kernels, printed over all trajectories of a chunk at once, in (d, n)
layout).  Noise comes from the time-addressed Brownian tree, so results depend only on (seed,
trajectory index), never on ensemble size or chunking."""
from __future__ import annotations

import numpy as np

from .arguments import operator_tables, operator_values, run_adaptive, run_fixed, step_classes
from ..abi import operator_args


def _model(inp):
    dtype = inp.y0.dtype
    return inp.params, inp.nets, (None if inp.Lval is None else inp.Lval.astype(dtype))


def integrate(module, inp):
    """Fixed steps over ``inp.grid``; the operators of step class ``hc`` are the tables' rows."""
    dtype = inp.y0.dtype
    tables = operator_tables(inp, step_classes(inp.grid)[0], dtype)
    rows = {name: tables[operator_args(name)[0]] for name in inp.op_specs}
    operators = lambda hc: {name: table[hc] for name, table in rows.items()}
    return run_fixed(inp, lambda fixed: module.kernel(*fixed, *_model(inp), operators, inp.progress))


def integrate_adaptive(module, inp):
    """Adaptive steps; the operators of every lane for its own step ``hs``."""
    dtype = inp.y0.dtype

    def operators(hs):
        hb = hs if inp.structure != "dense" else hs[:, None, None]
        return {k: v.astype(dtype) for k, v in
                operator_values(inp.op_specs, inp.structure, inp.Lval, hb, inp.noise).items()}
    return run_adaptive(inp, lambda fixed: module.kernel(*fixed, *_model(inp), operators, inp.progress))
