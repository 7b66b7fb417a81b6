"""The Numba emitter: the solver's loop IR (``drivers``) printed as one fused, multi-threaded ensemble
kernel (``print_numba``), with the model's lane functions (``numba_lanes``) as its prelude.

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

from ..abi import BLOCK
from . import loop
from .loop import Writer
from .analysis import SemilinearForm
from .drivers import adaptive_loop, fixed_loop
from .lowering import lower
from .numba_lanes import (JIT, emit_copy, emit_jacobian, emit_jacobian_buffers, emit_lane_functions,
                          emit_matvec_buffers, emit_net_buffers, emit_statement, kernel_arguments, lower_jacobian,
                          state_name)
from .print_numba import NumbaLoopPrinter
from .scheme import StepScheme, operator_layout

__all__ = ["emit_numba", "emit_numba_adaptive", "kernel_arguments"]


def emit_numba(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK) -> str:
    """Source of the fixed-step fused kernel.  ``dtype`` picks the vectorised tanh (``tanh64`` or
    ``tanh32``, twice the SIMD width)."""
    kernel = fixed_loop(scheme, form.stochastic, kernel_arguments(form, scheme))
    return _emit(form, scheme, kernel, dtype, block, "fused ensemble kernel", [f"BLOCK = B = {block}"])


def emit_numba_adaptive(form: SemilinearForm, scheme: StepScheme, dtype: str = "float64", block: int = BLOCK) -> str:
    """Source of the adaptive fused kernel for ``scheme`` (which must have an error estimate)."""
    _atoms(scheme, dense=form.linear_structure == "dense")   # refuses what per-lane operators cannot do
    kernel = adaptive_loop(scheme, form.stochastic, kernel_arguments(form, scheme, adaptive=True))
    return _emit(form, scheme, kernel, dtype, block, "adaptive fused ensemble kernel", [f"BLOCK = {block}"],
                 preamble=("nblocks = (n + BLOCK - 1) // BLOCK", "B = (n + nblocks - 1) // nblocks"))


def _emit(form, scheme, kernel, dtype, block, title, constants, preamble=()) -> str:
    forcing = lower(list(form.forcing), form, state_name, lambda g, i: f"{g}[{i}, b]")
    diffusion = lower(list(form.diffusion), form, state_name) if form.stochastic else None
    w = Writer()
    w.runtime_block = kernel.adaptive    # lane functions take B from their arrays
    w(f'"""sdekit generated: {scheme.method} {title}, numba backend.')
    w()
    w(f"state dimension {form.dim}, L {form.linear_structure}, noise {form.noise}, blocks of {block} lanes.")
    w()
    for ln in str(scheme).splitlines():
        w("    " + ln)
    w('"""')
    w("import math")
    w("import numba")
    w("import numpy as np")
    tanh = {"float64": "tanh64", "float32": "tanh32"}[str(dtype)]
    w(f"from sdekit.kernels.numba_runtime import {tanh} as nb_tanh")
    w("from sdekit.kernels.numba_runtime import nan_max, nan_min")
    printer = NumbaLoopPrinter(kernel, None)
    for line in printer.imports():
        w(line)
    jac = lower_jacobian(form) if scheme.needs_jacobian else None
    hooks = _Hooks(form, scheme, kernel.adaptive, [forcing] + ([jac] if jac else []))
    for line in hooks.imports():
        w(line)
    w()
    for line in constants + [f"D = {form.dim}", f"M = {form.noise_dim}"]:
        w(line)
    w()
    w()
    hooks.calls = emit_lane_functions(w, form, scheme, forcing, diffusion, kernel.arguments, full_rhs=kernel.adaptive)
    emit_jacobian(w, form, scheme, kernel.arguments, hooks.calls, jac)
    printer.hooks = hooks
    printer.print_kernel(w, JIT, preamble)
    w()
    return "\n".join(w.lines) + "\n"


class _Hooks:
    """What the Numba printer delegates: the scheme's statements (``numba_lanes.emit_statement``),
    the full right-hand side, register copies, the adaptive kernel's per-lane operators, and the
    model's scratch arrays."""

    def __init__(self, form, scheme, adaptive, lowered):
        self.form, self.scheme, self.adaptive, self.lowered = form, scheme, adaptive, lowered
        self.calls = None

    def imports(self):
        names = ["phi_block", "phi_block_work"] if self.scheme.needs_jacobian else []
        if self.adaptive and self.scheme.all_operators():   # per-lane operators: what _emit_lane_operators calls
            dense = self.form.linear_structure == "dense"
            kinds = {a[0] for a in _atoms(self.scheme)}
            if "phi" in kinds:
                names += ["phi_block", "phi_block_work"] if dense else ["phi_scalar"]
            if "res" in kinds and dense:
                names += ["inverse_block", "inverse_block_work"]
        names = list(dict.fromkeys(names))
        return [f"from sdekit.kernels.matfun import {', '.join(names)}"] if names else []

    def buffers(self, w):
        form, scheme = self.form, self.scheme
        emit_net_buffers(w, form, self.lowered)
        emit_matvec_buffers(w, form, scheme)
        if scheme.needs_jacobian:
            emit_jacobian_buffers(w, scheme, adaptive=self.adaptive)
        if self.adaptive:
            for name, op in scheme.all_operators().items():
                shape = "(D, D, B)" if operator_layout(form, op) == "dense" else "(D, B)"
                w(f"op_{name} = np.empty({shape}, dtype=y0.dtype)")
            if form.linear_structure == "dense" and scheme.all_operators():
                _emit_dense_operator_buffers(w, scheme)

    def statement(self, w, s):
        if isinstance(s, loop.Stages):
            times = None if s.adaptive else {}     # fixed steps: tc written once per stage time
            for st in s.statements:
                emit_statement(w, self.form, self.scheme, st, self.calls, adaptive=s.adaptive, times=times)
        elif isinstance(s, loop.Rhs):
            w(self.calls["frhs"].format(t=s.t, state=s.state, target=s.target))
        elif isinstance(s, loop.Copy):
            emit_copy(w, s.dst, s.src)
        elif isinstance(s, loop.Operators):
            if s.index is None:                    # fixed steps read op_X[hc] in the statements
                _emit_lane_operators(w, self.form, self.scheme)
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no Numba printer for {type(s).__name__}")


def _atoms(scheme, dense=False):
    """Distinct atoms of the scheme's operators (an operator is Σ w Π atoms; with a dense L each
    term must be a single atom: products of φ matrices per lane are refused at ``solve``)."""
    atoms = []
    for name, op in scheme.all_operators().items():
        for _, at in op.poly:
            if dense and len(at) != 1:    # solve refuses it first, with a ModelError
                raise NotImplementedError(f"operator {name}: products of φ atoms with a dense L per lane")
            atoms += [a for a in at if a not in atoms]
    return atoms


def _phi_scales(atoms):
    """Distinct scales c of the φ_k(c hL) atoms -> highest k."""
    scales = {}
    for atom in atoms:
        if atom[0] == "phi":
            scales[atom[2]] = max(scales.get(atom[2], 0), atom[1])
    return scales


def _emit_dense_operator_buffers(w, scheme):
    """Per-lane φ_k(c hL) blocks of each scale and the resolvent blocks (dense L)."""
    atoms = _atoms(scheme)
    for i, (c, kmax) in enumerate(_phi_scales(atoms).items()):
        w(f"Zs{i} = np.empty((D, D, B))  # {c} h L per lane")
        w(f"phs{i} = np.empty(({kmax + 1}, D, D, B))")
        w(f"phw{i} = phi_block_work(D, {kmax}, B, np.float64)")
    if any(a[0] == "res" for a in atoms):
        w("Rz = np.empty((D, D, B))")
        w("rwork = inverse_block_work(D, B, np.float64)")
    for i, atom in enumerate(a for a in atoms if a[0] == "res"):
        w(f"res{i} = np.empty((D, D, B))  # inv(I - {float(atom[1])!r} h L)")


def _emit_lane_operators(w, form, scheme):
    """This attempt's operator values per lane, for its own h (methods.md §1: φ_k(c hL) and the
    W-method resolvents (I − a hL)^{-1}; kernels/matfun.phi_scalar / phi_block / inverse_block)."""
    ops = scheme.all_operators()
    atoms = _atoms(scheme, dense=form.linear_structure == "dense")
    if form.linear_structure == "dense":
        scales = {c: i for i, c in enumerate(_phi_scales(atoms))}
        for c, i in scales.items():
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"Zs{i}[r, q, b] = {float(c)!r} * hs[b] * Lm[src[b] * S_L, r, q]")
            w(f"phi_block(Zs{i}, phs{i}.shape[0] - 1, phs{i}, phw{i})")
        value = {atom: f"phs{scales[atom[2]]}[{atom[1]}, r, q, b]" for atom in atoms if atom[0] == "phi"}
        for i, atom in enumerate(a for a in atoms if a[0] == "res"):
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"Rz[r, q, b] = (1.0 if r == q else 0.0) - {float(atom[1])!r} * hs[b] * Lm[src[b] * S_L, r, q]")
            w(f"inverse_block(Rz, res{i}, rwork)")
            value[atom] = f"res{i}[r, q, b]"
        for name, op in ops.items():
            rhs = " + ".join(f"{float(wt)!r} * {value[at[0]]}" for wt, at in op.poly) or "0.0"
            with w.block("for r in range(D):"):
                with w.block("for q in range(D):"):
                    with w.block("for b in range(B):"):
                        w(f"op_{name}[r, q, b] = {rhs}")
        return
    with w.block("for i in range(D):"):
        with w.block("for b in range(B):"):
            w("z = hs[b] * Lm[i, src[b] * S_L]" if form.linear_structure != "zero" else "z = 0.0")
            names = {}
            for k, atom in enumerate(atoms):
                names[atom] = f"a{k}"
                if atom[0] == "phi":
                    w(f"a{k} = phi_scalar({atom[1]}, {float(atom[2])!r} * z)")
                else:
                    w(f"a{k} = 1.0 / (1.0 - {float(atom[1])!r} * z)")
            for name, op in ops.items():
                rhs = " + ".join(" * ".join([repr(float(wt)), *(names[a] for a in at)]) for wt, at in op.poly)
                w(f"op_{name}[i, b] = {rhs or '0.0'}")
