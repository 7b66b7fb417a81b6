"""The loop IR printed for fields (array states on grids, structured operators): the numpy printer
(:mod:`print_numpy`) of the same fixed-step and adaptive drivers every backend prints, with one lane whose
state vector is the grid flattened, (D, 1).  The hooks print the model's part as calls of the field's
runtime object (``kernels.field_runtime.FieldLanes``): N and L u on the grid, each sum Σ coef · f(hL) v
through the structured operator, and the operators' values for the step (``Operators``: the step class's
size for fixed steps, the lane's own ``hs`` for adaptive ones)."""
from __future__ import annotations

import sympy as sp

from ..abi import FIELD_MODEL_ARGS
from .drivers import adaptive_loop, fixed_loop
from .emit_numpy import pr
from .errors import ModelError
from .loop import Copy, Operators, Rhs, Stages, Writer
from .print_numpy import PRELUDE, NumpyLoopPrinter
from .scheme import Combine, EvalRHS

_H = sp.Symbol("h")


class _FieldHooks:
    def __init__(self, scheme):
        self.scheme = scheme

    def prologue(self, w):
        w("t, h = t_l, h_l  # the lane's step start and size, as the statements read them")
        for k in range(1, self.scheme.lags + 1):
            w(f"h{k} = hp{k}  # previous step sizes (multistep)")

    def statement(self, w, s):
        field, operators, _ = FIELD_MODEL_ARGS
        if isinstance(s, Stages):
            for st in s.statements:
                w(self._step(st, field))
        elif isinstance(s, Rhs):
            w(f"{s.target} = {field}.full({s.state}, {s.t})")
        elif isinstance(s, Copy):
            w(f"{s.dst} = {s.src}")
        elif isinstance(s, Operators):
            w(f"ops = {operators}({s.index})")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no field printer for {type(s).__name__}")

    def _step(self, st, field):
        if isinstance(st, EvalRHS):
            time = f"t + {pr(st.c * _H)}" if st.c else "t"
            return f"{st.target} = {field}.{'full' if st.part == 'full' else 'forcing'}({st.state}, {time})"
        if isinstance(st, Combine):
            terms = ", ".join(f"({pr(t.coef)}, {'None' if t.op is None else f'ops[{t.op!r}]'}, {t.vec})" for t in st.terms)
            return f"{st.target} = {field}.combine([{terms}])"
        raise ModelError(f"{self.scheme.method}: a {type(st).__name__} step does not run on fields yet")


def emit_field(scheme, dim: int, adaptive: bool = False) -> str:
    """Source of the module that runs ``scheme`` on a field of ``dim`` unknowns: the driver
    (``drivers.fixed_loop`` / ``adaptive_loop``, the model reading t) printed by numpy's printer."""
    kernel = (adaptive_loop(scheme, False, FIELD_MODEL_ARGS, "operator", True) if adaptive else
              fixed_loop(scheme, False, FIELD_MODEL_ARGS, True))
    printer = NumpyLoopPrinter(kernel, _FieldHooks(scheme))
    lines = [f'"""sdekit generated: {scheme.method} {"adaptive " if adaptive else ""}kernel for a field of {dim} '
             "unknowns (one lane, the grid flattened).", "", *("    " + ln for ln in str(scheme).splitlines()), '"""',
             "import numpy", "import numpy as np", *printer.imports(), "", f"D = DIM = {dim}", "M = 0", "",
             *PRELUDE.strip("\n").splitlines(), "", ""]
    w = Writer()
    printer.print_kernel(w)
    return "\n".join(lines + w.lines) + "\n"
