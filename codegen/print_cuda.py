"""The CUDA C printer of the loop IR (:mod:`loop`): one thread per trajectory.

A lane value is a thread-local variable, a lane vector ``y[i]`` a thread-local array ``y[D]``;
``Lanes`` bodies are straight code, ``WhileAny(act)`` is the thread's ``while (act)``, ``IfAny`` its
``if``.  Array arguments are C-order buffers with their shape beside them (``X``, ``X_shape``):
``X[a, b]`` is ``X[a * X_shape[1] + b]``.  Every temporary and uniform value is declared once at
the top of the thread's function with the type inferred from its first assignment (lanes and
arguments are typed by ``Lane.dtype`` and ``sdekit.abi.arg_type``).  The step statements,
right-hand sides, copies and operators are printed by the ``hooks`` (``emit_cuda``).  Nothing here
decides an algorithm: the statements come from ``drivers``.
"""
from __future__ import annotations

import ast
import re

from ..abi import LINEAR_LAYOUT, arg_type
from . import loop as L
from .print_c_function import c_operator
from .print_numba import split_comment

#: C type of each IR dtype (``real`` is the kernel's state type: double or float)
CTYPES = {"state": "real", "f64": "double", "i64": "long long", "u64": "unsigned long long", "i8": "signed char",
          "bool": "bool"}
_RANK = {"bool": 0, "i8": 1, "i64": 2, "u64": 3, "state": 4, "f64": 5}
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Lt: "<", ast.LtE: "<=",
        ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_FUNCTIONS = {"min": "nan_min", "max": "nan_max", "abs": "fabs", "sqrt": "sqrt", "isfinite": "isfinite",
              "phi": "phi"}    # phi: the runtime's definition, printed beside the kernel (emit_cuda)
_NAMES = {"inf": "INFINITY", "nan": "NAN", "True": "true", "False": "false", "src": "tid", "j": "tid",
          "valid": "true", "B": "1", "b": "0"}    # one lane per thread: a block of B = 1, lane b = 0
#: ``__launch_bounds__(threads, min blocks per SM)`` of the printed kernels, or None (ptxas's own register choice).
#: (128, 4) caps the neural SDE's EM kernel at 128 registers without spills (145 uncapped: 3 blocks of 128 an SM on
#: sm_90, 4 capped; ``sdekit bench cuda_static``); benchmarks/cuda_device.py measures both on a GPU
LAUNCH_BOUNDS: tuple | None = None
#: axes of the kernel's array arguments that a runtime algorithm reads as arrays (sdekit.abi layouts)
ARRAY_AXES = {"tree_pos": 1, "stops": 1, "Lm": len(LINEAR_LAYOUT["dense"])}


def _promote(a: str, b: str) -> str:
    return a if _RANK[a] >= _RANK[b] else b


class CExpr:
    """Loop-IR expression text -> a C expression and its IR type."""

    def __init__(self, types: dict, vectors: set, arrays: set):
        self.types, self.vectors, self.arrays = types, vectors, arrays

    def __call__(self, text: str) -> str:
        code, comment = split_comment(text)
        c = self.node(ast.parse(code, mode="eval").body)
        return c + (f"  /* {comment[4:]} */" if comment else "")

    def type_of(self, text: str) -> str:
        return self.type(ast.parse(split_comment(text)[0], mode="eval").body)

    def type(self, n) -> str:
        if isinstance(n, ast.Constant):
            return "bool" if isinstance(n.value, bool) else "i64" if isinstance(n.value, int) else "f64"
        if isinstance(n, ast.Name):
            if n.id in ("inf", "nan"):
                return "f64"
            if n.id in ("True", "False", "valid"):
                return "bool"
            return self.types.get(n.id, "i64")          # D, M, src, j and loop counters
        if isinstance(n, ast.Subscript):
            if isinstance(n.value, ast.Attribute):       # X.shape[k]
                return "i64"
            return self.types[n.value.id]
        if isinstance(n, ast.BinOp):
            t = _promote(self.type(n.left), self.type(n.right))
            return "f64" if isinstance(n.op, (ast.Div, ast.Pow)) and _RANK[t] < _RANK["state"] else t
        if isinstance(n, (ast.BoolOp, ast.Compare)) or (isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not)):
            return "bool"
        if isinstance(n, ast.UnaryOp):
            return self.type(n.operand)
        if isinstance(n, ast.IfExp):
            return _promote(self.type(n.body), self.type(n.orelse))
        if isinstance(n, ast.Call):
            fn, args = n.func.id, [self.type(a) for a in n.args]
            if fn == "isfinite":
                return "bool"
            if fn in ("sqrt", "phi"):
                return "f64"
            return args[0] if len(args) == 1 else _promote(*args)
        raise TypeError(f"CUDA printer: no type for {ast.unparse(n)!r}")

    def node(self, n) -> str:
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool):
                return "true" if n.value else "false"
            return f"{n.value}LL" if isinstance(n.value, int) else repr(float(n.value))
        if isinstance(n, ast.Name):
            return _NAMES.get(n.id, n.id)
        if isinstance(n, ast.Subscript):
            return self.subscript(n)
        if isinstance(n, ast.BinOp):
            left, right = self.node(n.left), self.node(n.right)
            if isinstance(n.op, ast.Pow):
                if isinstance(n.right, ast.Constant) and n.right.value == 2:
                    return f"({left} * {left})"
                return f"pow((double)({left}), (double)({right}))"
            if isinstance(n.op, ast.Div) and self.type(n.left) in ("i64", "i8") and self.type(n.right) in ("i64", "i8"):
                return f"((double)({left}) / ({right}))"
            if isinstance(n.op, ast.FloorDiv):
                return f"({left} / {right})"
            return f"({left} {_OPS[type(n.op)]} {right})"
        shared = c_operator(n, self.node)
        if shared is not None:
            return shared
        if isinstance(n, ast.Call):
            return f"{_FUNCTIONS[n.func.id]}({', '.join(self.node(a) for a in n.args)})"
        raise TypeError(f"CUDA printer: cannot print {ast.unparse(n)!r}")

    def subscript(self, n) -> str:
        index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
        if isinstance(n.value, ast.Attribute) and n.value.attr == "shape":     # X.shape[k]
            return f"{n.value.value.id}_shape[{self.node(index[0])}]"
        name = n.value.id
        if name in self.vectors:
            return f"{name}[{self.node(index[0])}]"
        if name not in self.arrays:
            raise TypeError(f"CUDA printer: {name!r} is not an array")
        return f"{name}[{flat(name, [self.node(i) for i in index])}]"


def _dims(shape: str) -> list:
    """The dimensions of a Buffer's shape text ``"(D, D, B)"`` as C (B = 1: one lane per thread)."""
    parts = [p.strip() for p in shape.strip().strip("()").split(",") if p.strip()]
    return ["1" if p == "B" else p for p in parts]


def flat(name: str, index: list) -> str:
    """C-order offset of ``index`` in the array ``name`` (shape ``name_shape``)."""
    off = index[0]
    for k, i in enumerate(index[1:], 1):
        off = f"({off}) * {name}_shape[{k}] + ({i})"
    return off


def parameters(arguments) -> list:
    """C parameters of the kernel arguments: an array is a pointer and its shape, a scalar a value."""
    out = []
    for a in arguments:
        t = arg_type(a)
        if t.endswith("[]"):
            out += [f"{CTYPES[t[:-2]]}* __restrict__ {a}", f"const long long* __restrict__ {a}_shape"]
        else:
            out.append(f"{CTYPES[t]} {a}")
    return out


def passing(arguments) -> list:
    """The names that pass ``arguments`` on to a function declared with :func:`parameters`."""
    return [x for a in arguments for x in ((a, f"{a}_shape") if arg_type(a).endswith("[]") else (a,))]


class CudaLoopPrinter:
    """Print a :class:`loop.LoopKernel` as ``__device__ void <name>_thread(tid, ...)`` plus the
    ``__global__`` launch (one thread per trajectory) and, outside nvcc, a host loop over threads."""

    def __init__(self, kernel: L.LoopKernel, hooks):
        self.kernel, self.hooks = kernel, hooks
        self.vectors = {v.name: v.rows for v in kernel.lanes if v.rows is not None}
        types = {v.name: v.dtype for v in kernel.lanes}
        arrays = set()
        for a in kernel.arguments:
            t = arg_type(a)
            types[a] = t.removesuffix("[]")
            if t.endswith("[]"):
                arrays.add(a)
        self.expr = CExpr(types, set(self.vectors), arrays)
        self.scalars = {v.name for v in kernel.lanes if v.rows is None}
        self.locals = {}                 # temporaries and uniform values -> IR type
        self.views = {}                  # runtime algorithms' arrays (buffers, allocations) -> (C element, axes)
        for b in kernel.buffers:
            self.views[b.name] = (CTYPES[b.dtype], len(_dims(b.shape)))
        self._infer(kernel.body)

    # ---- declarations: one per temporary / uniform value, typed by its first assignment ----
    def _declare(self, name, text):
        if name not in self.locals and name not in self.expr.types:
            self.locals[name] = self.expr.type_of(text)
            self.expr.types[name] = self.locals[name]

    def _infer(self, stmts):
        for s in stmts:
            if isinstance(s, L.Set) and self._view_subscript(s.expr):
                base, index = self._view_subscript(s.expr)
                self.views[s.name] = (self.views[base][0], self.views[base][1] - 1)
            elif isinstance(s, L.Set):
                self._declare(s.name, s.expr)
            elif isinstance(s, L.Let) and "[" not in s.target:
                self._declare(s.target, s.expr)
            elif isinstance(s, L.Reduce):
                self._declare(s.target, "True" if s.op == "and" else "0.0")
            for name in ("body", "then", "orelse"):
                self._infer(getattr(s, name, None) or [])

    def print_kernel(self, w):
        k = self.kernel
        params = parameters(k.arguments)
        with w.block(f"__device__ void {k.name}_thread(long long tid, {', '.join(params)}) {{"):
            w(f"/* {k.doc} */")
            for v in k.lanes:
                ctype = CTYPES[v.dtype]
                if v.rows and v.init not in (None, "0"):
                    w(f"{ctype} {v.name}[{v.rows}];")
                    w(f"for (int i = 0; i < {v.rows}; ++i) {v.name}[i] = {self.expr(v.init)};")
                elif v.rows:
                    w(f"{ctype} {v.name}[{v.rows}]" + (";" if v.init is None else " = {};"))
                else:
                    w(f"{ctype} {v.name}" + (";" if v.init is None else f" = {self.expr(v.init)};"))
            for name, t in self.locals.items():
                w(f"{CTYPES[t]} {name};")
            if "src" in self._call_arguments():
                w("long long src_lane[1] = {tid};   /* the runtime algorithms' lanes: this thread's column */")
            for b in k.buffers:
                self._declare_array(w, b.name, CTYPES[b.dtype], _dims(b.shape))
            self.hooks.buffers(w)
            self.block(w, k.body)
        w("}")
        w()
        w("#ifdef __CUDACC__")
        shared = self.hooks.shared_arguments() if hasattr(self.hooks, "shared_arguments") else {}
        bounds = f"__launch_bounds__({LAUNCH_BOUNDS[0]}, {LAUNCH_BOUNDS[1]}) " if LAUNCH_BOUNDS else ""
        with w.block(f'extern "C" __global__ void {bounds}{k.name}(long long n, {", ".join(params)}) {{'):
            w("long long tid = (long long)blockIdx.x * blockDim.x + threadIdx.x;")
            if shared:
                w("/* read once per block into shared memory: every thread of the block reads them every stage */")
            for name, size in shared.items():
                w(f"__shared__ __align__(16) real s_{name}[{size}];")
                w(f"for (int k = threadIdx.x; k < {size}; k += blockDim.x) s_{name}[k] = {name}[k];")
            if shared:
                w("__syncthreads();")
            passed = [f"s_{a}" if a in shared else a for a in passing(k.arguments)]
            w("if (tid < n)")
            w(f"    {k.name}_thread(tid, {', '.join(passed)});")
        w("}")
        w("#else")
        with w.block(f'extern "C" void {k.name}_host(long long n, {", ".join(params)}) {{'):
            w("/* the same thread function, one trajectory after another (tests without a GPU) */")
            w("for (long long tid = 0; tid < n; ++tid)")
            w(f"    {k.name}_thread(tid, {', '.join(passing(k.arguments))});")
        w("}")
        w("#endif")

    # ---- block statements ----
    def block(self, w, stmts):
        for s in stmts:
            self.statement(w, s)

    def _braced(self, w, header, body, lanes=False):
        with w.block(header + " {"):
            (self.lanes if lanes else self.block)(w, body)
        w("}")

    def statement(self, w, s):
        if isinstance(s, L.Set) and s.name in self.views:
            base, index = self._view_subscript(s.expr)
            w(f"View<{self.views[s.name][0]}> {s.name} = view_index({base}, 0, {self.views[base][1]}, {index});")
        elif isinstance(s, L.Set):
            w(f"{s.name} = {self.expr(s.expr)};")
        elif isinstance(s, L.For):
            self._braced(w, f"for (long long {s.var} = 0; {s.var} < {self.expr(s.count)}; ++{s.var})", s.body)
        elif isinstance(s, L.WhileAny):
            self._braced(w, f"while ({self.expr(s.cond)})", s.body)
        elif isinstance(s, L.IfAny):
            self._braced(w, f"if ({self.expr(s.cond)})", s.body)
        elif isinstance(s, L.IfUniform):
            self._if(w, s, lanes=False)
        elif isinstance(s, L.Call) and s.result:
            self._allocate(w, s)
        elif isinstance(s, L.Call):
            w(f"{s.fn}({', '.join(self.argument(a) for a in s.args)});")
        elif isinstance(s, L.Lanes):
            if s.rows:
                self._braced(w, f"for (int i = 0; i < {s.rows}; ++i)", s.body, lanes=True)
            else:
                self.lanes(w, s.body)
        else:
            self.hooks.statement(w, s)

    # ---- lane statements ----
    def lanes(self, w, stmts):
        for s in stmts:
            self.lane(w, s)

    def lane(self, w, s):
        x = self.expr
        if isinstance(s, L.Let):
            w(f"{x(s.target)} = {x(s.expr)};")
        elif isinstance(s, L.If):
            self._if(w, s, lanes=True)
        elif isinstance(s, L.While):
            self._braced(w, f"while ({x(s.cond)})", s.body, lanes=True)
        elif isinstance(s, L.Components):
            self._braced(w, "for (int i = 0; i < D; ++i)", s.body, lanes=True)
        elif isinstance(s, L.Reduce):
            op = "&&" if s.op == "and" else "+"
            w(f"{s.target} = {'true' if s.op == 'and' else '0.0'};")
            w(f"for (int i = 0; i < D; ++i) {s.target} = {s.target} {op} {x(s.expr)};")
        elif isinstance(s, L.Store):
            w(f"{s.array}[{flat(s.array, [x(i) for i in s.index])}] = {x(s.value)};")
        elif isinstance(s, L.StoreRow):
            w(f"for (int i = 0; i < D; ++i) {s.array}[{flat(s.array, [x(s.row), 'i', x(s.col)])}] = {x(s.value)};")
        elif isinstance(s, L.LaneCall):
            w(f"{s.fn}({', '.join(self.argument(a) for a in s.args)});")
        else:  # pragma: no cover - a new node without a printer
            raise TypeError(f"no CUDA lane printer for {type(s).__name__}")

    # ---- runtime algorithms: their arrays as Views (codegen/print_c_function.py) ----
    def _call_arguments(self) -> set:
        out = set()

        def walk(stmts):
            for s in stmts:
                if isinstance(s, (L.Call, L.LaneCall)):
                    out.update(a.strip() for a in s.args)
                for name in ("body", "then", "orelse"):
                    walk(getattr(s, name, None) or [])
        walk(self.kernel.body)
        return out

    def _view_subscript(self, text):
        """(array, index) of ``X[k]``, X a runtime algorithm's array, else None."""
        m = re.fullmatch(r"\s*(\w+)\[([^\[\],]+)\]\s*", text.partition("  # ")[0])
        return (m.group(1), self.expr(m.group(2))) if m and m.group(1) in self.views else None

    def argument(self, text: str) -> str:
        """A runtime algorithm's argument: lanes (vectors (rows, 1), values (1,)) and arrays as Views."""
        name = text.strip()
        if name == "src":
            return "view_shaped(src_lane, 1)"
        if name in self.vectors:
            return f"view_shaped({name}, {self.vectors[name]}, 1)"
        if name in self.scalars:
            return f"view_shaped(&{name}, 1)"
        if name in self.views:
            return name
        if name in self.expr.arrays:
            if name not in ARRAY_AXES:
                raise NotImplementedError(f"CUDA: kernel argument {name} passed to a runtime algorithm (its axes)")
            return f"view_of({name}, {name}_shape, {ARRAY_AXES[name]})"
        m = re.fullmatch(r"(\w+)\.transpose\(\(([\d, ]+)\)\)", name)     # sdekit.abi.view of a kernel array
        if m:
            return f"view_transpose({self.argument(m.group(1))}, {m.group(2).strip().rstrip(',')})"
        sub = self._view_subscript(name)
        if sub:
            return f"view_index({sub[0]}, 0, {self.views[sub[0]][1]}, {sub[1]})"
        return self.expr(name)

    def _declare_array(self, w, name, ctype, dims, zeroed=True):
        size = " * ".join(f"({d})" for d in dims)
        w(f"{ctype} {name}_data[{size}]" + (" = {};" if zeroed else ";   /* written before it is read */"))
        w(f"View<{ctype}> {name} = view_shaped({name}_data, {', '.join(dims)});")

    def _allocate(self, w, s):
        """``a, b = alloc(...)``: the arrays the runtime's allocation returns, as thread-local arrays."""
        arrays = self.hooks.allocation(s.module, s.fn, [self.expr(a) if not a.endswith(".dtype") else a for a in s.args])
        for name, (element, dims, zeroed) in zip([x.strip() for x in s.result.split(",")], arrays):
            if element.endswith(".dtype"):
                element = self.views[element[:-len(".dtype")]][0]
            self.views[name] = (element, len(dims))
            self._declare_array(w, name, element, dims, zeroed)

    def _if(self, w, s, lanes):
        if self.expr(s.cond) == "true":      # ``valid``: every thread is a trajectory
            (self.lanes if lanes else self.block)(w, s.then)
            return
        branch = s
        header = f"if ({self.expr(branch.cond)})"
        while True:
            with w.block(header + " {"):
                (self.lanes if lanes else self.block)(w, branch.then)
            if len(branch.orelse) == 1 and isinstance(branch.orelse[0], (L.If, L.IfUniform)):
                branch = branch.orelse[0]
                w("}")
                header = f"else if ({self.expr(branch.cond)})"
                continue
            if branch.orelse:
                w("} else {")
                w.level += 1
                (self.lanes if lanes else self.block)(w, branch.orelse)
                w.level -= 1
            w("}")
            break
