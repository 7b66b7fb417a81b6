"""The numpy printer of the loop IR (:mod:`loop`): every trajectory of the chunk is a lane, all lanes at
once (arrays (n,) and (D, n)); a per-lane ``If``/``While`` becomes a mask, and an assignment under a
mask keeps the other lanes' values.  The step statements, right-hand sides, copies and operators are
printed by the ``hooks`` (``emit_numpy``).  Nothing here decides an algorithm: the statements come
from ``drivers``, the runtime algorithms are the kernels' own (``brownian``, ``philox``) called on a
block of all lanes.
"""
from __future__ import annotations

import ast

from . import loop as L
from .print_numba import split_comment

_FUNCTIONS = {"sqrt": "np.sqrt", "isfinite": "np.isfinite", "abs": "np.abs", "min": "np.minimum",
              "max": "np.maximum", "phi": "phi_lanes", "inf": "np.inf", "nan": "np.nan", "j": "lane_j", "valid": "lane_valid"}
_DTYPES = {"state": "y0.dtype", "f64": "np.float64", "i64": "np.int64", "i8": "np.int8", "bool": "np.bool_"}

#: helpers the printed kernels use (part of the module's prelude)
PRELUDE = '''
def _at(x, m):
    """The masked lanes' values of a per-lane (or uniform) value."""
    return np.broadcast_to(x, m.shape)[m]


def _rows(v, m):
    """The masked lanes' vectors of a per-lane vector value, (lanes, D)."""
    v = np.asarray(v)
    return np.broadcast_to(v, (v.shape[0] if v.ndim == 2 else D,) + m.shape)[:, m].T


def _progress(steps, show):
    """``steps``, with a tqdm bar when ``show``."""
    if not show:
        return steps
    from tqdm.auto import tqdm
    return tqdm(steps, desc="sdekit numpy", unit="step")


def _time_bar(t0, t1, show):
    """A tqdm bar over [t0, t1] when ``show`` (adaptive solves: the slowest active lane's time)."""
    if not show:
        return None
    from tqdm.auto import tqdm
    bar = tqdm(total=float(t1 - t0), desc="sdekit numpy", unit="t", bar_format="{l_bar}{bar}| t {n:.3g}/{total:.3g}")
    bar.t0_ = float(t0)
    return bar


def _time_step(bar, t, active):
    """Move the bar to the slowest active lane's time; close it when ``t`` is None."""
    if bar is None:
        return
    if t is None:
        bar.update(bar.total - bar.n)
        bar.close()
    elif np.any(active):
        bar.update(max(float(np.min(t[active])) - bar.t0_ - bar.n, 0.0))


def _vector(x, value, m=None):
    """Per-lane vector x with the lanes of mask m (all: None) set to value (a new array, x's dtype)."""
    if m is None:
        return np.array(np.broadcast_to(value, x.shape), dtype=x.dtype)
    return np.where(m, value, x).astype(x.dtype, copy=False)
'''


def _call(fn, *args):
    return ast.Call(ast.parse(fn, mode="eval").body, list(args), [])


class _Vectorise(ast.NodeTransformer):
    """Lane expressions over all lanes: per-lane vectors ``y[i]`` -> ``y``, uniform vectors
    ``atol[i]`` -> ``atol[:, None]``, logic and conditionals elementwise."""

    def __init__(self, vectors):
        self.vectors = vectors

    def visit_Name(self, node):
        if node.id in _FUNCTIONS:
            return ast.parse(_FUNCTIONS[node.id], mode="eval").body
        return node

    def visit_Subscript(self, node):
        index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        is_i = [isinstance(x, ast.Name) and x.id == "i" for x in index]
        if isinstance(node.value, ast.Name) and node.value.id in self.vectors:
            if is_i != [True]:
                raise ValueError(f"a lane vector is indexed by the component i only: {ast.unparse(node)}")
            return node.value
        if is_i == [True]:
            return ast.parse(f"{ast.unparse(node.value)}[:, None]", mode="eval").body
        index = [ast.Slice() if flag else self.visit(x) for x, flag in zip(index, is_i)]
        return ast.Subscript(self.visit(node.value), ast.Tuple(index) if len(index) > 1 else index[0], node.ctx)

    def visit_BoolOp(self, node):
        fn = "np.logical_and" if isinstance(node.op, ast.And) else "np.logical_or"
        values = [self.visit(v) for v in node.values]
        out = values[0]
        for v in values[1:]:
            out = _call(fn, out, v)
        return out

    def visit_UnaryOp(self, node):
        if isinstance(node.op, ast.Not):
            return _call("np.logical_not", self.visit(node.operand))
        return self.generic_visit(node)

    def visit_IfExp(self, node):
        return _call("np.where", self.visit(node.test), self.visit(node.body), self.visit(node.orelse))


class NumpyLoopPrinter:
    """Print a :class:`loop.LoopKernel` as a numpy function over all lanes; ``hooks`` prints
    Stages/Rhs/Copy/Operators (and ``hooks.prologue(w)``: aliases the statements read)."""

    def __init__(self, kernel: L.LoopKernel, hooks):
        self.kernel, self.hooks = kernel, hooks
        self.scalars = {v.name for v in kernel.lanes if v.rows is None}
        self.vectors = {v.name for v in kernel.lanes if v.rows is not None}
        self.masks = 0

    def expr(self, text: str, lane: bool = True) -> str:
        code, comment = split_comment(text)
        tree = ast.parse(code, mode="eval")
        if lane:
            tree = _Vectorise(self.vectors).visit(tree)
        return ast.unparse(ast.fix_missing_locations(tree)) + comment

    def imports(self):
        return [f"from sdekit.kernels import {m}" for m in dict.fromkeys(m for m, _ in self.kernel.calls())]

    def print_kernel(self, w):
        k = self.kernel
        with w.block(f"def {k.name}({', '.join(k.arguments)}):"):
            w(f'"""All trajectories of the chunk as lanes, (D, n): {k.doc}"""')
            w("n = y0.shape[1]")
            w("B = n")
            w("src = lane_j = np.arange(n)")
            w("lane_valid = lane_all = np.ones(n, dtype=np.bool_)")
            for v in k.lanes:
                shape = f"({v.rows}, n)" if v.rows else "n"
                init = {None: "0", "False": "0", "True": "1"}.get(v.init, v.init)
                w(f"{v.name} = np.full({shape}, {init}, dtype={_DTYPES[v.dtype]})")
            for buf in k.buffers:
                w(f"{buf.name} = np.empty({buf.shape}, dtype={_DTYPES[buf.dtype]})")
            self.hooks.prologue(w)
            with w.block("with np.errstate(all='ignore'):"):
                self.block(w, k.body)

    # ---- block statements ----

    def block(self, w, stmts):
        for s in stmts:
            self.statement(w, s)

    def statement(self, w, s):
        if isinstance(s, L.Set):
            w(f"{s.name} = {self.expr(s.expr, lane=False)}")
        elif isinstance(s, L.For):
            steps = f"range({self.expr(s.count, lane=False)})"
            with w.block(f"for {s.var} in {f'_progress({steps}, progress)' if s.progress else steps}:"):
                self.block(w, s.body)
        elif isinstance(s, L.WhileAny):
            if s.progress:
                w(f"_bar = _time_bar({', '.join(s.progress[1:])}, progress)")
            with w.block(f"while np.any({self.expr(s.cond)}):"):
                self.block(w, s.body)
                if s.progress:
                    w(f"_time_step(_bar, {self.expr(s.progress[0])}, {self.expr(s.cond)})")
            if s.progress:
                w("_time_step(_bar, None, None)")
        elif isinstance(s, L.IfAny):
            with w.block(f"if np.any({self.expr(s.cond)}):"):
                self.block(w, s.body)
        elif isinstance(s, L.IfUniform):
            with w.block(f"if {self.expr(s.cond, lane=False)}:"):
                self.block(w, s.then)
            if s.orelse:
                with w.block("else:"):
                    self.block(w, s.orelse)
        elif isinstance(s, L.Call):
            call = f"{s.module}.{s.fn}({', '.join(s.args)})"
            w(f"{s.result} = {call}" if s.result else call)
        elif isinstance(s, L.Lanes):
            self.lanes(w, s.body, None, set())
        else:
            self.hooks.statement(w, s)

    # ---- lane statements, under a mask (None: every lane) ----

    def lanes(self, w, stmts, mask, temps):
        for s in stmts:
            self.lane(w, s, mask, temps)

    def _mask(self, w, mask, cond):
        self.masks += 1
        name = f"m{self.masks}"
        w(f"{name} = np.logical_and({mask or 'lane_all'}, {cond})")
        return name

    def _assign(self, w, target, value, mask, temps):
        if target in self.scalars:
            w(f"{target}[...] = {value}" if mask is None else
              f"np.copyto({target}, {value}, casting='unsafe', where={mask})")
        elif target.endswith("[i]") and target[:-3] in self.vectors:
            x = target[:-3]
            w(f"{x} = _vector({x}, {value}{'' if mask is None else ', ' + mask})")
        elif target in temps and mask is not None:
            w(f"{target} = np.where({mask}, {value}, {target})")
        else:
            temps.add(target)
            # a new temporary is a value, never a view of a lane array written in place later
            w(f"{target} = {f'np.copy({value})' if value.isidentifier() else value}")

    def lane(self, w, s, mask, temps):
        if isinstance(s, L.Let):
            self._assign(w, s.target, self.expr(s.expr), mask, temps)
        elif isinstance(s, L.If):
            self.masks += 1
            c = f"c{self.masks}"
            w(f"{c} = {self.expr(s.cond)}")
            then = self._mask(w, mask, c)
            with w.block(f"if np.any({then}):"):
                self.lanes(w, s.then, then, set(temps))   # a branch's new temporaries stay in it
            if s.orelse:
                other = self._mask(w, mask, f"np.logical_not({c})")
                with w.block(f"if np.any({other}):"):
                    self.lanes(w, s.orelse, other, set(temps))
        elif isinstance(s, L.While):
            with w.block("while True:"):
                m = self._mask(w, mask, self.expr(s.cond))
                with w.block(f"if not np.any({m}):"):
                    w("break")
                self.lanes(w, s.body, m, set(temps))
        elif isinstance(s, L.Components):
            self.lanes(w, s.body, mask, temps)
        elif isinstance(s, L.Reduce):
            fn = "np.add.reduce" if s.op == "+" else "np.logical_and.reduce"
            self._assign(w, s.target, f"{fn}(np.broadcast_to({self.expr(s.expr)}, (D, n)), axis=0)", mask, temps)
        elif isinstance(s, L.Store):
            m = mask or "lane_all"
            index = ", ".join(f"_at({self.expr(x)}, {m})" for x in s.index)
            w(f"{s.array}[{index}] = _at({self.expr(s.value)}, {m})")
        elif isinstance(s, L.StoreRow):
            m = mask or "lane_all"
            w(f"{s.array}[_at({self.expr(s.row)}, {m}), :, _at({self.expr(s.col)}, {m})] = "
              f"_rows({self.expr(s.value)}, {m})")
        elif isinstance(s, L.LaneCall):
            args = [a if a == "b" else (f"{a}[b]" if a in self.scalars else a) for a in s.args]
            with w.block(f"for b in np.flatnonzero({mask or 'lane_all'}):"):
                w(f"{s.module}.{s.fn}({', '.join(args)})")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no numpy lane printer for {type(s).__name__}")
