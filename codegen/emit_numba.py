"""The Numba emitter: the solver's loop IR (``drivers``) printed as one fused, multi-threaded ensemble
kernel (``print_numba``); the model's lane functions (``numba_lanes``) are a module of their own that the kernel
quotes (``LANES``) and imports, so the kernels of several methods on one model share their compile.

Shape (DESIGN.md "kernel shape A", platform-notes.md): blocks of ``B`` trajectories in
structure-of-arrays layout ``(d, B)``, run in parallel as ranges of blocks on host threads
(the kernel releases the GIL; a ``prange`` launcher made Numba lower and optimise the whole
kernel a second time, +11 s of cold compile); inside a block every statement is a loop over the B
lanes, so LLVM vectorises it.  Fixed steps: blocks of BLOCK lanes, the last one padded (its extra
lanes repeat the last trajectory and are never stored).  Adaptive: blocks of ceil(n / ceil(n /
BLOCK)) lanes, each lane its own t and h.  The whole time loop, the Brownian tree, the Philox
counters and the MLP run inside; only the saved points leave.  Step size, params, weights,
operators and ``L`` are runtime arguments.
"""
from __future__ import annotations

import re

from ..abi import BLOCK
from . import loop
from .loop import Writer
from .analysis import SemilinearForm
from .drivers import adaptive_loop, fixed_loop
from .lowering import lower
from .numba_lanes import (F32_ALIAS, JIT, emit_copy, emit_jacobian, emit_lane_functions,
                          emit_matvec_buffers, emit_net_buffers, emit_statement, float_type, kernel_arguments,
                          lower_jacobian, state_name)
from .print_numba import NumbaLoopPrinter
from .scheme import StepScheme

__all__ = ["emit_numba", "emit_numba_adaptive", "kernel_arguments"]


def emit_numba(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK) -> str:
    """Source of the fixed-step fused kernel.  ``dtype`` picks the vectorised tanh (``tanh64`` or
    ``tanh32``, twice the SIMD width)."""
    kernel = fixed_loop(scheme, form.stochastic, kernel_arguments(form, scheme), form.reads_t)
    return _emit(form, scheme, kernel, dtype, block, "fused ensemble kernel", [f"BLOCK = B = {block}"])


def emit_numba_adaptive(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK) -> str:
    """Source of the adaptive fused kernel for ``scheme`` (which must have an error estimate)."""
    kernel = adaptive_loop(scheme, form.stochastic, kernel_arguments(form, scheme, adaptive=True),
                           form.linear_structure, form.reads_t)
    return _emit(form, scheme, kernel, dtype, block, "adaptive fused ensemble kernel", [f"BLOCK = {block}"],
                 preamble=("nblocks = (n + BLOCK - 1) // BLOCK", "B = (n + nblocks - 1) // nblocks"))


def _emit(form, scheme, kernel, dtype, block, title, constants, preamble=()) -> str:
    """The module: lane expressions printed for ``dtype`` (float32: float32 constants, ``numba_lanes.float_type``)."""
    with float_type(dtype):
        return _emit_module(form, scheme, kernel, dtype, block, title, constants, preamble)


def _emit_module(form, scheme, kernel, dtype, block, title, constants, preamble) -> str:
    forcing = lower(list(form.forcing), form, state_name, lambda g, i: f"{g}[{i}, b]")
    diffusion = lower(list(form.diffusion), form, state_name) if form.stochastic else None
    w = Writer()
    w(f'"""sdekit generated: {scheme.method} {title}, numba backend.')
    w()
    w(f"state dimension {form.dim}, L {form.linear_structure}, noise {form.noise}, blocks of {block} lanes.")
    w()
    for ln in str(scheme).splitlines():
        w("    " + ln)
    w('"""')
    for line in _runtime_imports(dtype):
        w(line)
    if "phi" in kernel.functions():
        w("from sdekit.kernels.matfun import phi_scalar as phi  # the loop IR's phi(k, x)")
    printer = NumbaLoopPrinter(kernel, None)
    for line in printer.imports():
        w(line)
    jac = lower_jacobian(form) if scheme.needs_jacobian else None
    hooks = _Hooks(form, scheme, kernel.adaptive, [forcing] + ([jac] if jac else []))
    w()
    for line in constants + [f"D = {form.dim}", f"M = {form.noise_dim}"]:
        w(line)
    lanes = Writer()
    hooks.calls = emit_lane_functions(lanes, form, scheme, forcing, diffusion, kernel.arguments, kernel.adaptive)
    emit_jacobian(lanes, form, scheme, kernel.arguments, hooks.calls, jac, kernel.adaptive)
    names = sorted(re.findall(r"^def (\w+)\(", "\n".join(lanes.lines), re.M))
    w()
    w("# The model's lane functions, a module of their own: every kernel on this model that needs the same ones (same")
    w("# float type and step shape) imports this one, so they compile once (and load from the disk cache after).")
    w("from sdekit.kernels.cache import load_module")
    w("LANES = r\'\'\'" + _lane_module(lanes, form, dtype, block).rstrip("\n"))
    w("\'\'\'")
    w("_lanes = load_module(LANES, 'numba_lanes')")
    for name in names:
        w(f"{name} = _lanes.{name}")
    w()
    w()
    printer.hooks = hooks
    printer.print_kernel(w, JIT, preamble)
    w()
    return "\n".join(w.lines) + "\n"


def _lane_module(lanes, form, dtype, block) -> str:
    """The source of the lane functions ``lanes`` wrote: what they read of the runtime, and the constants."""
    head = _runtime_imports(dtype) + ["", f"B = {block}", f"D = {form.dim}", f"M = {form.noise_dim}", "", ""]
    source = "\n".join(head + lanes.lines) + "\n"
    if "'" * 3 in source or "\\" in source:    # pragma: no cover - printed lane code has neither
        raise RuntimeError("the lane functions hold a triple quote or a backslash: the kernel cannot quote them")
    return source


def _runtime_imports(dtype) -> list:
    """What kernel and lane code read of Python and the runtime: the vectorisable tanh of ``dtype`` (``tanh64``,
    or ``tanh32``: twice the SIMD width), NaN-propagating min/max, and a float32 module's ``f32``."""
    tanh = {"float64": "tanh64", "float32": "tanh32"}[str(dtype)]
    return (["import math", "import numba", "import numpy as np",
             f"from sdekit.kernels.numba_runtime import {tanh} as nb_tanh"]
            + ([F32_ALIAS] if str(dtype) == "float32" else [])
            + ["from sdekit.kernels.numba_runtime import GeneratedCompiler, nan_max, nan_min"])


class _Hooks:
    """What the Numba printer delegates: the scheme's statements (``numba_lanes.emit_statement``),
    the full right-hand side, register copies, the adaptive kernel's per-lane operators, and the
    model's scratch arrays."""

    def __init__(self, form, scheme, adaptive, lowered):
        self.form, self.scheme, self.adaptive, self.lowered = form, scheme, adaptive, lowered
        self.calls = None

    def buffers(self, w):
        form, scheme = self.form, self.scheme
        emit_net_buffers(w, form, self.lowered)
        emit_matvec_buffers(w, form, scheme)

    def statement(self, w, s):
        if isinstance(s, loop.Stages):
            times = None if s.adaptive else {}     # fixed steps: tc written once per stage time
            for st in s.statements:
                emit_statement(w, self.form, self.scheme, st, self.calls, adaptive=s.adaptive, times=times)
        elif isinstance(s, loop.Rhs):
            w(self.calls["frhs"].format(t=s.t, state=s.state, target=s.target))
        elif isinstance(s, loop.Copy):
            emit_copy(w, s.dst, s.src)
        elif isinstance(s, loop.Operators):        # fixed steps read op_X[hc] in the statements
            pass
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no Numba printer for {type(s).__name__}")

