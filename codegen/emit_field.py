"""The loop IR printed for fields (array states on grids, structured operators): the numpy printer
(:mod:`print_numpy`) of the same fixed-step and adaptive drivers every backend prints, with one lane whose
state vector is the grid flattened, (D, 1).  The hooks print the model's part as calls of the field's
runtime object (``kernels.field_runtime.FieldLanes``): N and L u on the grid, each sum Σ coef · f(hL) v
through the structured operator, and the operators' values for the step (``Operators``: the step class's
size for fixed steps, the lane's own ``hs`` for adaptive ones)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy as sp

from ..abi import FIELD_MODEL_ARGS
from .drivers import adaptive_loop, fixed_loop
from .emit_numpy import pr
from .errors import ModelError
from .lane_operators import elementwise_operators
from .loop import Copy, Operators, Rhs, Stages, Writer
from .numba_lanes import JIT, pr as numba_pr
from .print_numba import NumbaLoopPrinter
from .print_numpy import PRELUDE, NumpyLoopPrinter
from .scheme import Combine, EvalJacobian, EvalRHS

_H = sp.Symbol("h")


def _stage_time(c, printer) -> str:
    """The stage time t + c h as the hooks print it (``t``, ``h``: the lane's step start and size)."""
    return f"t + {printer(c * _H)}" if c else "t"


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

    def _terms(self, st, field):
        """A sum's terms (coef, operator value or None, vector) for the field's operator; its Jacobian operators'
        terms as one more, their sum Σ coef · f(c hJ̃)(v, τ) by φ-actions (``FieldLanes.jacobian_action``)."""
        jac = [t for t in st.terms if t.op in self.scheme.jacobian_operators]
        out = [f"({pr(t.coef)}, {'None' if t.op is None else f'ops[{t.op!r}]'}, {t.vec})" for t in st.terms
               if t not in jac]
        if jac:
            action = ", ".join(f"({pr(t.coef)}, {t.op!r}, {t.vec}, {pr(t.aug)})" for t in jac)
            out.append(f"(1, None, {field}.jacobian_action([{action}], h))")
        return ", ".join(out)

    def _step(self, st, field):
        if isinstance(st, EvalRHS):
            time = _stage_time(st.c, pr)
            return f"{st.target} = {field}.{'full' if st.part == 'full' else 'forcing'}({st.state}, {time})"
        if isinstance(st, Combine):
            return f"{st.target} = {field}.combine([{self._terms(st, field)}])"
        if isinstance(st, EvalJacobian):
            time = _stage_time(st.c, pr)
            return f"{field}.jacobian({st.state}, {time})  # J̃ at the stage, for the jacobian_action of later sums"
        raise ModelError(f"{self.scheme.method}: a {type(st).__name__} step does not run on fields yet")


def emit_field(scheme, dim: int, adaptive: bool = False) -> str:
    """Source of the module that runs ``scheme`` on a field of ``dim`` unknowns: the driver
    (``drivers.fixed_loop`` / ``adaptive_loop``, the model reading t) printed by numpy's printer."""
    kernel = (adaptive_loop(scheme, False, FIELD_MODEL_ARGS, "operator", True, jacobian_blocks=False) if adaptive
              else fixed_loop(scheme, False, FIELD_MODEL_ARGS, True, jacobian_blocks=False))
    printer = NumpyLoopPrinter(kernel, _FieldHooks(scheme))
    lines = [f'"""sdekit generated: {scheme.method} {"adaptive " if adaptive else ""}kernel for a field of {dim} '
             "unknowns (one lane, the grid flattened).", "", *("    " + ln for ln in str(scheme).splitlines()), '"""',
             "import numpy", "import numpy as np", *printer.imports(), "", f"D = DIM = {dim}", "M = 0", "",
             *PRELUDE.strip("\n").splitlines(), "", ""]
    w = Writer()
    printer.print_kernel(w)
    return "\n".join(lines + w.lines) + "\n"


# ---- the compiled (Numba) field kernel -----------------------------------------------------------


@dataclass(frozen=True)
class Basis:
    """An operator's eigenbasis as the compiled kernel transforms into it (``kernels.operators.Eigenbasis``
    without its numbers): ``kind`` "diagonal" | "fourier" | "dst" | "dct" on a real field, "c" + one of them on
    a complex field's real pair (``kernels.operators.Complexified``: "cfourier" is the full FFT), "eigen" |
    "eigen-complex" (a matrix's eigenvectors, real or complex: ``kernels.operators.Eigenvectors``, transformed
    by the products F = V⁻¹, Bm = V), or "matrix" / "sparse" (an operator inside N applied by its matrix F, or by
    its CSR arrays (eig, F, Bm) = (data, indices, indptr): no basis); the
    ``grid``, the stacked ``species``, and whether the 1-D transform is applied as its ``matrix``."""

    kind: str
    grid: tuple
    species: int = 1
    matrix: bool = False

    @property
    def pair(self) -> bool:
        """A complex field's basis: each species is 2 G real numbers (Re, Im) and G complex ones transformed."""
        return self.kind.startswith("c")

    @property
    def spectral(self) -> tuple:
        """The transformed layout of one species (rfftn keeps n // 2 + 1 of the last axis)."""
        return self.grid[:-1] + (self.grid[-1] // 2 + 1,) if self.kind == "fourier" else self.grid

    @property
    def dtype(self) -> str:
        return "np.complex128" if self.kind in ("fourier", "eigen-complex") or self.pair else "np.float64"


def _real_call(kind: str, matrix: bool, grid: tuple, F: str, v: str) -> str:
    """A real transform of kind "diagonal" | "fourier" (rfftn) | "dst" | "dct" (type I) of the contiguous flat
    vector ``v`` as a Numba expression (rocket-fft gives ``numpy.fft`` and ``scipy.fft`` inside Numba); ``F``:
    "F" for the forward transform, "Bm" for the backward one (their matrices, mirrored rows folded)."""
    forward = F == "F"
    if kind in ("diagonal", "matrix", "sparse"):
        return v
    if kind == "eigen":
        return f"{F} @ np.ascontiguousarray({v})"
    if kind == "eigen-complex":
        return (f"F @ np.ascontiguousarray({v}).astype(np.complex128)" if forward else
                f"np.ascontiguousarray((Bm @ np.ascontiguousarray({v})).real)")
    if matrix:                # small 1-D type-I transforms: their matrices
        return f"mirrored_product({F}, {v})"
    if kind == "fourier":
        spec = grid[:-1] + (grid[-1] // 2 + 1,)
        if len(grid) == 1:
            return f"np.fft.rfft({v})" if forward else f"np.fft.irfft({v}, {grid[0]})"
        return (f"np.fft.rfftn({v}.reshape({grid})).ravel()" if forward else
                f"np.fft.irfftn({v}.reshape({spec}), s={grid}).ravel()")
    fn = {("dst", True): "dstn", ("dst", False): "idstn", ("dct", True): "idctn", ("dct", False): "dctn"}[kind, forward]
    norm = ', norm="ortho"' if kind == "dst" else ""
    return f"scipy.fft.{fn}({v}.reshape({grid}), type=1{norm}).ravel()"


def _transform_calls(b: Basis):
    """(forward, backward) of one species' contiguous flat vector ``x`` as Numba expressions.  A complex field's
    pair (Re, Im) is transformed as z = Re + i Im: by the full FFT, or by the real transform of each part."""
    if not b.pair:
        return _real_call(b.kind, b.matrix, b.grid, "F", "x"), _real_call(b.kind, b.matrix, b.grid, "Bm", "x")
    kind = b.kind[1:]
    re, im = "np.ascontiguousarray(x[:G_])", "np.ascontiguousarray(x[G_:])"
    if kind == "fourier":
        if len(b.grid) == 1:
            return f"np.fft.fft({re} + 1j * {im})", "pair_of(np.fft.ifft(x))"
        return (f"np.fft.fftn(({re} + 1j * {im}).reshape({b.grid})).ravel()",
                f"pair_of(np.fft.ifftn(x.reshape({b.grid})).ravel())")
    part = lambda F, v: _real_call(kind, b.matrix, b.grid, F, v)          # noqa: E731
    return (f"{part('F', re)} + 1j * {part('F', im)}",
            f"np.concatenate(({part('Bm', 'np.ascontiguousarray(x.real)')}, "
            f"{part('Bm', 'np.ascontiguousarray(x.imag)')}))")


def _emit_transforms(w, name: str, b: Basis):
    """``fwd_<name>``, ``bwd_<name>`` and ``apply_<name>`` (L v = bwd(λ · fwd(v))) of basis ``b``, per species."""
    G, SS = int(np.prod(b.grid)) * (2 if b.pair else 1), int(np.prod(b.spectral))
    fwd, bwd = _transform_calls(b)
    for fn, call, n_in, n_out, dtype in (("fwd", fwd, G, SS, b.dtype), ("bwd", bwd, SS, G, "np.float64")):
        w(JIT)
        with w.block(f"def {fn}_{name}(v, F, Bm):"):
            if b.pair:
                w(f"G_ = {int(np.prod(b.grid))}  # a complex field's points: its pair is (Re, Im)")
            if b.species == 1:
                w("x = v")
                w(f"return {call}")
            else:
                w(f"out = np.empty({b.species * n_out}, dtype={dtype})")
                with w.block(f"for s in range({b.species}):"):
                    w(f"x = v[s * {n_in}:(s + 1) * {n_in}]")
                    w(f"out[s * {n_out}:(s + 1) * {n_out}] = {call}")
                w("return out")
        w()
    w(JIT)
    with w.block(f"def apply_{name}(v, eig, F, Bm):"):
        if b.kind == "matrix":
            w("return F @ np.ascontiguousarray(v)  # the operator's matrix")
        elif b.kind == "sparse":
            w("return csr_product(eig, F, Bm, v)  # the operator's CSR arrays: data, indices, indptr")
        else:
            w(f"return bwd_{name}(eig * fwd_{name}(v, F, Bm), F, Bm)")
    w()


def field_numba_arguments(nops: int, ndata: int, nparams: int) -> tuple:
    """The compiled field kernel's model arguments, after ``abi.FIXED_ARGS``: the step classes' operator
    values (class, operator, spectral index), L's eigenvalues and transform matrices, each operator of N's
    likewise, the data arrays and the params."""
    names = ["opvals", "L_eig", "L_F", "L_B"]
    for k in range(nops):
        names += [f"o{k}_eig", f"o{k}_F", f"o{k}_B"]
    return tuple(names + [f"data{k}" for k in range(ndata)] + [f"param{k}" for k in range(nparams)])


#: ``forcing`` is inlined into the kernel by Numba (its IR, at every call): a warm process that loads the kernel from
#: Numba's cache could otherwise run another compiled copy of it than the process that compiled the kernel, and with
#: FMA contraction the two differed in the last bits (NLS: 1e-15 between a first and a later process)
INLINED_JIT = JIT[:-1] + ", inline='always')"


def emit_forcing_numba(w, nonlinear, fields, data, params, operators, grid, arguments):
    """``forcing(u, t, out, *arguments)``: N of every species on the grid as one loop over its points (u and out
    flat, species first), each operator application inside N first computed into a grid array (innermost
    first) by its ``apply_o<k>``.  ``operators``: the sympy functions of N's operators, in argument order."""
    G = int(np.prod(grid))
    element = {f: sp.Symbol(f"u[{s * G} + i]" if s else "u[i]") for s, f in enumerate(fields)}
    element.update({d: sp.Symbol(f"data{k}[i]") for k, d in enumerate(data)})
    element.update({p: sp.Symbol(f"param{k}") for k, p in enumerate(params)})
    index = {fn: k for k, fn in enumerate(operators)}
    exprs, pre = [sp.sympify(e).xreplace(element) for e in nonlinear], []
    while True:
        apps = [a for e in exprs for a in e.atoms(sp.core.function.AppliedUndef) if not a.args[0].atoms(sp.core.function.AppliedUndef)]
        if not apps:
            break
        app = apps[0]
        name = f"a{len(pre)}"
        pre.append((name, index[app.func], app.args[0]))
        exprs = [e.xreplace({app: sp.Symbol(f"{name}[i]")}) for e in exprs]
    w(INLINED_JIT)
    with w.block(f"def forcing(u, t, out, {', '.join(arguments)}):"):
        w('"""N(u, t) on the grid (generated from the model\'s nonlinearity)."""')
        for name, k, arg in pre:
            w(f"{name}_in = np.empty({G})")
            with w.block(f"for i in range({G}):"):
                w(f"{name}_in[i] = {numba_pr(arg)}")
            w(f"{name} = apply_o{k}({name}_in, o{k}_eig, o{k}_F, o{k}_B)")
        subs, outs = sp.cse(exprs, symbols=sp.numbered_symbols("x"))
        with w.block(f"for i in range({G}):"):
            for sym, e in subs:
                w(f"{sym} = {numba_pr(e)}")
            for s, e in enumerate(outs):
                w(f"out[{s * G} + i] = {numba_pr(e)}" if s else f"out[i] = {numba_pr(e)}")
    w()


#: a run of at least this many components of one template (:func:`forcing_runs`) is printed as a loop
FORCING_LOOP_MIN = 8


def forcing_runs(components, states) -> list:
    """The components of a dense ODE's N grouped for printing: [(indices, expression)], ``indices`` a ``range``
    where at least FORCING_LOOP_MIN components at equal strides have one template (their expression with each
    state u_j written ``u[i ± (j − i)]``: a stencil's interior, a pointwise N), the expression that template;
    else one component (its index in a 1-range, its expression in ``u[j]``).  A loop compiles once for all its
    components (Numba's compile grows with the lines: Allen–Cahn's 256 lines, one a component, took 8 s)."""
    index = {x: j for j, x in enumerate(states)}
    groups = {}
    for i, e in enumerate(components):
        e = sp.sympify(e)
        relative = {x: sp.Symbol(f"u[i {'+' if index[x] >= i else '-'} {abs(index[x] - i)}]" if index[x] != i else "u[i]")
                    for x in e.free_symbols if x in index}
        key = e.xreplace(relative)
        groups.setdefault(key, []).append(i)
    runs, taken = [], set()
    for key, members in groups.items():
        start = 0
        while start < len(members):          # maximal runs of equal stride
            stop = start + 1
            if stop < len(members):
                stride = members[stop] - members[start]
                while stop < len(members) and members[stop] - members[stop - 1] == stride:
                    stop += 1
            if stop - start >= FORCING_LOOP_MIN:
                runs.append((range(members[start], members[stop - 1] + 1, stride), key))
                taken.update(members[start:stop])
                start = stop
            else:
                start += 1
    absolute = {x: sp.Symbol(f"u[{j}]") for x, j in index.items()}
    single = [(range(i, i + 1), sp.sympify(e).xreplace(absolute)) for i, e in enumerate(components) if i not in taken]
    return sorted(runs + single, key=lambda r: r[0].start)


def emit_vector_forcing_numba(w, runs, params, arguments):
    """``forcing(u, t, out, *arguments)`` of a dense ODE (``sdekit.fields.DenseODE``): N's components, grouped by
    :func:`forcing_runs` (``runs``; expressions of the states, ``sdekit.t`` and ``params``), as loops over the runs
    of one template and one line for each other component, each block after sympy's common
    subexpressions; params read from the ``param<k>`` arguments.  Not inlined into the kernel (its lines at each
    call of N: Allen–Cahn's adaptive ROS34PW2 compiled in 72 s)."""
    from .analysis import t as time
    names = {p: sp.Symbol(f"param{k}") for k, p in enumerate(params)}
    names[time] = sp.Symbol("t")
    w(JIT)
    with w.block(f"def forcing({', '.join(['u', 't', 'out', *arguments])}):"):
        w('"""N(u, t): loops over the components of one template, a line for each other (generated from the '
          'model\'s nonlinearity)."""')
        loops = [(r, e) for r, e in runs if len(r) > 1]
        lines = [(r.start, e) for r, e in runs if len(r) == 1]
        for r, e in loops:
            subs, (out,) = sp.cse([e.xreplace(names)], symbols=sp.numbered_symbols("x"))
            bounds = f"{r.start}, {r.stop}" + (f", {r.step}" if r.step != 1 else "")
            with w.block(f"for i in range({bounds}):"):
                for sym, x in subs:
                    w(f"{sym} = {numba_pr(x)}")
                w(f"out[i] = {numba_pr(out)}")
        if lines:
            subs, outs = sp.cse([e.xreplace(names) for _, e in lines], symbols=sp.numbered_symbols("y"))
            for sym, x in subs:
                w(f"{sym} = {numba_pr(x)}")
            for (i, _), x in zip(lines, outs):
                w(f"out[{i}] = {numba_pr(x)}")
    w()


class _FieldNumbaHooks:
    """The compiled field kernel's model part, printed inside the Numba printer's one-lane block (B = 1): each
    register a flat view ``<r>_`` of its (D, 1) lane array; a sum Σ coef · f(hL) v transforms each register once
    a step (``<r>_h``), sums in L's basis in one loop and transforms back once; N through ``forcing``."""

    def __init__(self, scheme, registers, basis: Basis, arguments, adaptive: bool = False, complex_spectrum=False):
        self.scheme, self.registers, self.basis, self.arguments = scheme, registers, basis, arguments
        self.names = {name: k for k, name in enumerate(scheme.all_operators())}
        self.adaptive, self.complex_spectrum = adaptive, complex_spectrum

    def buffers(self, w):
        for r in self.registers:
            w(f"{r}_ = {r}.reshape(D)  # a flat view of the one lane")
        w(f"sacc = np.empty(SL, dtype={self.basis.dtype})  # a sum in L's basis")
        if self.adaptive:
            dtype = ", dtype=np.complex128" if self.complex_spectrum else ""
            w(f"ops = np.empty(({max(len(self.names), 1)}, SL){dtype})  # the operators at the lane's step (operator_values)")

    def statement(self, w, s):
        if isinstance(s, Stages):
            w("t = t_l[0]")
            w("h = h_l[0]")
            for k in range(1, self.scheme.lags + 1):
                w(f"h{k} = hp{k}[0]")
            hats = set()
            for st in s.statements:
                self._step(w, st, hats)
        elif isinstance(s, Rhs):
            self._rhs(w, s.target, s.state, f"{s.t}[0]", True)
        elif isinstance(s, Copy):
            if s.dst != s.src:
                w(f"{s.dst}_[:] = {s.src}_")
        elif isinstance(s, Operators):     # fixed steps: tabulated per step class; adaptive: at the lane's step
            w(f"operator_values({s.index}[0], L_eig, ops)" if self.adaptive else f"ops = opvals[{s.index}]")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no compiled field printer for {type(s).__name__}")

    def _rhs(self, w, target, state, time, full):
        w(f"forcing({state}_, {time}, {target}_, {', '.join(self.arguments)})")
        if full:
            w(f"lu = apply_L({state}_, L_eig, L_F, L_B)")
            with w.block("for i in range(D):"):
                w(f"{target}_[i] += lu[i]")

    def _step(self, w, st, hats):
        if isinstance(st, EvalRHS):
            time = _stage_time(st.c, numba_pr)
            self._rhs(w, st.target, st.state, time, st.part == "full")
        elif isinstance(st, Combine):
            spectral = [t for t in st.terms if t.op is not None]
            plain = [t for t in st.terms if t.op is None]
            for t in spectral:
                if t.vec not in hats:
                    w(f"{t.vec}_h = fwd_L({t.vec}_, L_F, L_B)")
                    hats.add(t.vec)
            for j, t in enumerate(st.terms):
                w(f"c{j} = {numba_pr(t.coef)}")
            sums = []
            if spectral:
                with w.block("for i in range(SL):"):
                    w("sacc[i] = " + " + ".join(f"c{st.terms.index(t)} * ops[{self.names[t.op]}, i] * {t.vec}_h[i]"
                                                  for t in spectral))
                w("back = bwd_L(sacc, L_F, L_B)")
                sums.append("back[i]")
            sums += [f"c{st.terms.index(t)} * {t.vec}_[i]" for t in plain]
            with w.block("for i in range(D):"):
                w(f"{st.target}_[i] = " + " + ".join(sums))
        else:
            raise ModelError(f"{self.scheme.method}: a {type(st).__name__} step does not run on fields yet")
        hats.discard(st.target)


def emit_operator_values(w, scheme):
    """``operator_values(h, eig, out)``: every operator of the scheme at step h on L's eigenvalues, the
    statements of ``lane_operators.elementwise_operators`` (the adaptive kernels' per-lane operators) with φ by
    ``matfun.phi_scalar`` (a complex spectrum: ``matfun.phi_complex_scalar``, imported as ``phi``).  The
    adaptive compiled kernel calls it for every attempted step."""
    index = {name: k for k, name in enumerate(scheme.all_operators())}
    w(JIT)
    with w.block("def operator_values(h, eig, out):"):
        w('"""The scheme\'s operators at step h on L\'s eigenvalues (generated from their φ-polynomials)."""')
        with w.block("for i in range(SL):"):
            for s in elementwise_operators(scheme, "h * eig[i]", lambda name: f"out[{index[name]}, i]"):
                w(f"{s.target} = {s.expr}")
    w()


def emit_field_numba(scheme, model, basis: Basis, operators: dict, adaptive: bool = False,
                     complex_spectrum: bool = False) -> str:
    """Source of the compiled kernel that runs ``scheme`` on a field model: the loop IR's ``fixed_loop`` (or
    ``adaptive_loop``, its operators computed at each attempted step by :func:`emit_operator_values`) printed by
    the Numba printer for one lane (B = 1) whose state is the grid flattened, with the model's part
    (:class:`_FieldNumbaHooks`, :func:`emit_forcing_numba`) and the transforms of L's basis and of each
    operator N applies (``operators``: sympy function -> Basis).  ``model``: a ``sdekit.fields.FieldODE`` (its
    fields, nonlinearity, data and params); ``complex_spectrum``: L's eigenvalues are complex (adaptive steps
    evaluate complex φ); or a ``sdekit.fields.DenseODE`` (its ``forcing_runs()`` and ``params``).
    """
    arguments = field_numba_arguments(len(operators), len(model.data), len(model.params))
    if adaptive:
        arguments = arguments[1:]            # no table of operator values: computed in the kernel
        kernel = adaptive_loop(scheme, False, arguments, "operator", True, jacobian_blocks=False)
    else:
        kernel = fixed_loop(scheme, False, arguments, True)
    registers = [v.name for v in kernel.lanes if v.rows == "D"]
    D = int(np.prod(model.shape))
    w = Writer()
    vector = hasattr(model, "forcing_runs")            # a dense ODE: N per component
    if vector:
        state = f"a dense ODE of {D} states"
    elif getattr(model, "complex", False):
        state = f"{len(model.user_fields)} complex field(s) (as their real pairs) on the grid {list(model.grid)}"
    else:
        state = f"{len(model.fields)} field(s) on the grid {list(model.grid)}"
    w(f'"""sdekit generated: {scheme.method} compiled field kernel (numba) for {state}, L in the {basis.kind} basis.')
    w()
    for ln in str(scheme).splitlines():
        w("    " + ln)
    w('"""')
    for line in ("import math", "import numba", "import numpy as np", "import scipy.fft",
                 "from sdekit.kernels.numba_runtime import tanh64 as nb_tanh",
                 "from sdekit.kernels.numba_runtime import GeneratedCompiler, nan_max, nan_min",
                 "from sdekit.kernels.field_runtime import csr_product, mirrored_product, pair_of",
                 f"from sdekit.kernels.matfun import {'phi_complex_scalar' if complex_spectrum else 'phi_scalar'} as phi"):
        w(line)
    model_args = arguments[3:] if adaptive else arguments[4:]      # after opvals, L_eig, L_F, L_B
    printer = NumbaLoopPrinter(kernel, _FieldNumbaHooks(scheme, registers, basis, model_args, adaptive,
                                                              complex_spectrum))
    for line in printer.imports():
        w(line)
    w()
    w(f"D = {D}")
    w("M = 0")
    w("B = 1  # one lane: the grid")
    w(f"SL = {basis.species * int(np.prod(basis.spectral))}  # numbers of a vector in L's basis")
    w()
    _emit_transforms(w, "L", basis)
    for k, b in enumerate(operators.values()):
        _emit_transforms(w, f"o{k}", b)
    if vector:
        emit_vector_forcing_numba(w, model.forcing_runs(), list(model.params), model_args)
    else:
        emit_forcing_numba(w, model.nonlinear, model.fields, list(model.data), list(model.params), list(operators),
                           model.grid, model_args)
    if adaptive:
        emit_operator_values(w, scheme)
    printer.print_kernel(w, JIT)
    return "\n".join(w.lines) + "\n"
