"""The Numba printer of the loop IR (:mod:`loop`): blocks of B lanes in structure of arrays (D, B).

A per-lane value ``x`` is ``x[b]`` inside ``for b in range(B)``, a lane vector ``y[i]`` is ``y[i, b]``,
temporaries are scalars of the lane loop; a uniform value is a plain variable.  The step statements,
right-hand sides, register copies and operators are printed by the ``hooks`` (``emit_numba``).
Nothing here decides an algorithm: the statements come from ``drivers``.
"""
from __future__ import annotations

import ast

from . import loop as L

_FUNCTIONS = {"sqrt": "math.sqrt", "isfinite": "math.isfinite", "inf": "np.inf", "nan": "np.nan",
              "min": "nan_min", "max": "nan_max"}   # the IR's NaN rule (loop.py), not Python's min/max
_DTYPES = {"state": "y0.dtype", "f64": "np.float64", "i64": "np.int64", "i8": "np.int8", "bool": "np.bool_"}


def split_comment(text: str):
    code, _, comment = text.partition("  # ")
    return code, ("  # " + comment if comment else "")


class _LaneNames(ast.NodeTransformer):
    """Per-lane names to their lane element (``x`` -> ``x[b]``, ``y[e]`` -> ``y[e, b]``)."""

    def __init__(self, scalars, vectors):
        self.scalars, self.vectors = scalars, vectors

    def visit_Name(self, node):
        if node.id in self.scalars:
            return ast.Subscript(node, ast.Name("b"), node.ctx)
        if node.id == "j":
            return ast.parse("base + b", mode="eval").body
        if node.id == "valid":
            return ast.parse("base + b < n", mode="eval").body
        if node.id in _FUNCTIONS:
            return ast.parse(_FUNCTIONS[node.id], mode="eval").body
        return node

    def visit_Subscript(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.vectors:
            index = self.visit(node.slice)
            elts = index.elts if isinstance(index, ast.Tuple) else [index]
            return ast.Subscript(node.value, ast.Tuple(elts + [ast.Name("b")]), node.ctx)
        return self.generic_visit(node)


def _runtime_argument(arg: str) -> str:
    """A runtime function's argument as printed: an integer literal as ``np.int64(k)``.  Numba types a literal
    argument by its value and compiles the callee once per value (``phi_block`` for φ_1 … φ_4: four ~140 KB
    functions, each linked and compiled again into every kernel that calls it); an int64 is one signature."""
    return f"np.int64({arg})" if arg.isdigit() else arg


class NumbaLoopPrinter:
    """Print a :class:`loop.LoopKernel`; ``hooks`` prints Stages/Rhs/Copy/Operators and the
    model's scratch (``hooks.buffers(w)``)."""

    def __init__(self, kernel: L.LoopKernel, hooks):
        self.kernel, self.hooks = kernel, hooks
        self.scalars = {v.name for v in kernel.lanes if v.rows is None} | {"src"}
        self.vectors = {v.name for v in kernel.lanes if v.rows is not None}

    def expr(self, text: str, lane: bool = True) -> str:
        code, comment = split_comment(text)
        tree = ast.parse(code, mode="eval")
        names = _LaneNames(self.scalars, self.vectors) if lane else _LaneNames(set(), set())
        return ast.unparse(ast.fix_missing_locations(names.visit(tree))) + comment

    def imports(self):
        """The runtime algorithms the kernel calls (emit_numba imports nan_min/nan_max for every module)."""
        mods = {}
        for module, fn in self.kernel.calls():
            mods.setdefault(module, []).append(fn)
        return [f"from sdekit.kernels.{m} import {', '.join(fns)}" for m, fns in mods.items()]

    def print_kernel(self, w, jit: str, preamble=()):
        k = self.kernel
        w("@numba.njit(nogil=True, " + jit.split("(", 1)[1])
        with w.block(f"def {k.name}(blk0, blk1, {', '.join(k.arguments)}):"):
            doc = (f"Blocks blk0 .. blk1-1 of B lanes (trajectories first + blk*B ...), structure of arrays (D, B): "
                   f"{k.doc}  Releases the GIL: the host runs block ranges on threads.")
            w(f'"""{doc}"""')
            w("n = y0.shape[1]")
            for line in preamble:
                w(line)
            with w.block("for blk in range(blk0, blk1):"):
                w("base = blk * B")
                w("src = np.empty(B, dtype=np.int64)")
                with w.block("for b in range(B):"):
                    w("src[b] = min(base + b, n - 1)")
                for v in k.lanes:
                    shape = f"({v.rows}, B)" if v.rows else "B"
                    fill = {None: "np.empty(", "0": "np.zeros(", "1": "np.ones(", "False": "np.zeros(",
                            "True": "np.ones("}.get(v.init)
                    call = f"{fill}{shape}, dtype={_DTYPES[v.dtype]})" if fill else \
                        f"np.full({shape}, {v.init}, dtype={_DTYPES[v.dtype]})"
                    w(f"{v.name} = {call}")
                self.hooks.buffers(w)
                for buf in k.buffers:
                    w(f"{buf.name} = np.empty({buf.shape}, dtype={_DTYPES[buf.dtype]})")
                self.block(w, k.body)

    # ---- block statements ----

    def block(self, w, stmts):
        for s in stmts:
            self.statement(w, s)

    def statement(self, w, s):
        if isinstance(s, L.Set):
            w(f"{s.name} = {self.expr(s.expr, lane=False)}")
        elif isinstance(s, L.For):
            with w.block(f"for {s.var} in range({self.expr(s.count, lane=False)}):"):
                self.block(w, s.body)
        elif isinstance(s, L.WhileAny):
            with w.block("while True:"):
                self._count(w, "nlanes", s.cond)
                with w.block("if nlanes == 0:"):
                    w("break")
                self.block(w, s.body)
        elif isinstance(s, L.IfAny):
            self._count(w, "nlanes", s.cond)
            with w.block("if nlanes > 0:"):
                self.block(w, s.body)
        elif isinstance(s, L.IfUniform):
            with w.block(f"if {self.expr(s.cond, lane=False)}:"):
                self.block(w, s.then)
            if s.orelse:
                with w.block("else:"):
                    self.block(w, s.orelse)
        elif isinstance(s, L.Call):
            call = f"{s.fn}({', '.join(_runtime_argument(a) for a in s.args)})"
            w(f"{s.result} = {call}" if s.result else call)
        elif isinstance(s, L.Lanes):
            if s.rows:
                with w.block(f"for i in range({s.rows}):"):
                    with w.block("for b in range(B):"):
                        self.lanes(w, s.body)
            else:
                with w.block("for b in range(B):"):
                    self.lanes(w, s.body)
        else:
            self.hooks.statement(w, s)

    def _count(self, w, name, cond):
        w(f"{name} = 0")
        with w.block("for b in range(B):"):
            w(f"{name} += {self.expr(cond)}")

    # ---- lane statements ----

    def lanes(self, w, stmts):
        for s in stmts:
            self.lane(w, s)

    def lane(self, w, s):
        if isinstance(s, L.Let):
            w(f"{self.expr(s.target)} = {self.expr(s.expr)}")
        elif isinstance(s, L.If):
            self._if(w, s, "if")
        elif isinstance(s, L.While):
            with w.block(f"while {self.expr(s.cond)}:"):
                self.lanes(w, s.body)
        elif isinstance(s, L.Components):
            with w.block("for i in range(D):"):
                self.lanes(w, s.body)
        elif isinstance(s, L.Reduce):
            w(f"{self.expr(s.target)} = {'0.0' if s.op == '+' else 'True'}")
            with w.block("for i in range(D):"):
                t = self.expr(s.target)
                w(f"{t} = {t} {s.op} {self.expr(s.expr)}")
        elif isinstance(s, L.Store):
            index = ", ".join(self.expr(x) for x in s.index)
            w(f"{s.array}[{index}] = {self.expr(s.value)}")
        elif isinstance(s, L.StoreRow):
            with w.block("for i in range(D):"):
                w(f"{s.array}[{self.expr(s.row)}, i, {self.expr(s.col)}] = {self.expr(s.value)}")
        elif isinstance(s, L.LaneCall):
            w(f"{s.fn}({', '.join(self.expr(a) for a in s.args)})")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no Numba lane printer for {type(s).__name__}")

    def _if(self, w, s, keyword):
        with w.block(f"{keyword} {self.expr(s.cond)}:"):
            self.lanes(w, s.then)
        if len(s.orelse) == 1 and isinstance(s.orelse[0], L.If):
            self._if(w, s.orelse[0], "elif")
        elif s.orelse:
            with w.block("else:"):
                self.lanes(w, s.orelse)
