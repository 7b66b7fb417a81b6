"""Print a runtime algorithm's one Python definition as a C / CUDA ``__device__`` function.

The kernels' scalar algorithms (``kernels.matfun.phi_scalar``, ...) are written once, in Python that
Numba compiles; the CUDA kernels call the same function printed as C by this module, so no
algorithm is written twice.  The caller passes the function object (``codegen`` never imports
``kernels``: ``sdekit`` hands them over).  The Python must keep to a small subset: annotated
``int``/``float`` parameters and result, assignments, ``for ... in range(...)`` with a constant
step, ``while``, ``if``/``elif``/``else``, ``return``; ``math`` functions, ``abs`` (of a float),
``float``/``int`` and module-level constants (numbers, 1-D float arrays) it reads.  ``//`` and ``%`` print as C's,
correct for non-negative operands only.  Anything else raises ``NotImplementedError`` naming it.
"""
from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np

_TYPES = {"int": "long long", "float": "double", "bool": "bool"}
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "/", ast.Mod: "%",
        ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
        ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_UNARY = {ast.Not: "!", ast.USub: "-", ast.UAdd: "+", ast.Invert: "~"}


def c_operator(n, sub) -> str | None:
    """C for the Python operator forms every C printer shares — unary operators, and/or, chained
    comparisons, ``x if c else y`` — with ``sub`` printing the operands; None for any other node.
    (This printer and the loop IR's, ``print_cuda``, both use it.)"""
    if isinstance(n, ast.UnaryOp):
        return f"({_UNARY[type(n.op)]}{sub(n.operand)})"
    if isinstance(n, ast.BoolOp):
        return "(" + (" && " if isinstance(n.op, ast.And) else " || ").join(sub(v) for v in n.values) + ")"
    if isinstance(n, ast.Compare):
        parts, left = [], n.left
        for op, right in zip(n.ops, n.comparators):
            parts.append(f"({sub(left)} {_OPS[type(op)]} {sub(right)})")
            left = right
        return parts[0] if len(parts) == 1 else "(" + " && ".join(parts) + ")"
    if isinstance(n, ast.IfExp):
        return f"({sub(n.test)} ? {sub(n.body)} : {sub(n.orelse)})"
    return None


_MATH = {"exp", "expm1", "log", "log1p", "sqrt", "sin", "cos", "tanh", "fabs", "pow", "floor", "ceil"}
_BUILTINS = {"abs": "fabs", "float": "(double)", "int": "(long long)"}   # abs of a float


def python_function(fn):
    """The plain Python function behind ``fn`` (a Numba dispatcher's ``py_func``)."""
    return getattr(fn, "py_func", fn)


def c_function(fn, name: str | None = None) -> tuple[list, list]:
    """(constants, function): C lines of the module-level constants ``fn`` reads and of ``fn``
    itself, as ``__device__`` C named ``name`` (default: the Python name)."""
    py = python_function(fn)
    tree = ast.parse(textwrap.dedent(inspect.getsource(py))).body[0]
    return _Printer(py.__name__, name or py.__name__, py.__globals__).function(tree)


class _Printer:
    def __init__(self, pyname, name, env):
        self.pyname, self.name, self.env = pyname, name, env
        self.types, self.constants, self.lines, self.level = {}, {}, [], 1

    def fail(self, node, what="construct"):
        raise NotImplementedError(f"{self.pyname}: cannot print {what} {ast.unparse(node)!r} as C")

    # ---- the function and its statements ----
    def function(self, f):
        params = []
        for a in f.args.args:
            t = _TYPES.get(getattr(a.annotation, "id", None)) or self.fail(a, "an unannotated parameter")
            self.types[a.arg] = t
            params.append(f"{t} {a.arg}")
        result = _TYPES.get(getattr(f.returns, "id", None)) or self.fail(f, "a function without a result type")
        body = f.body[1:] if isinstance(f.body[0], ast.Expr) and isinstance(f.body[0].value, ast.Constant) else f.body
        declared = set(self.types)
        self.block(body)
        local = [f"    {t} {n};" for n, t in self.types.items() if n not in declared]
        head = [f"/* {self.pyname}: printed from its Python definition (codegen/print_c_function.py) */",
                f"__device__ {result} {self.name}({', '.join(params)}) {{"]
        return [self.constants[k] for k in sorted(self.constants)], head + local + self.lines + ["}"]

    def w(self, text):
        self.lines.append("    " * self.level + text)

    def block(self, stmts):
        for s in stmts:
            self.statement(s)

    def braced(self, header, body):
        self.w(header + " {")
        self.level += 1
        self.block(body)
        self.level -= 1
        self.w("}")

    def statement(self, s):
        if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Name):
            target = s.targets[0].id
            self.types.setdefault(target, self.type(s.value))
            self.w(f"{target} = {self.expr(s.value)};")
        elif isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name):
            self.w(f"{s.target.id} = {s.target.id} {_OPS[type(s.op)]} {self.expr(s.value)};")
        elif isinstance(s, ast.Return) and s.value is not None:
            self.w(f"return {self.expr(s.value)};")
        elif isinstance(s, ast.If):
            self.braced(f"if ({self.expr(s.test)})", s.body)
            if s.orelse:
                self.braced("else", s.orelse)
        elif isinstance(s, ast.While) and not s.orelse:
            self.braced(f"while ({self.expr(s.test)})", s.body)
        elif isinstance(s, ast.For) and isinstance(s.target, ast.Name) and not s.orelse:
            self.types.setdefault(s.target.id, "long long")
            self.braced(self._range(s.target.id, s.iter), s.body)
        else:
            self.fail(s, "statement")

    def _range(self, var, it):
        if not (isinstance(it, ast.Call) and getattr(it.func, "id", None) == "range" and 1 <= len(it.args) <= 3):
            self.fail(it, "a loop that is not over range(...)")
        args = [self.expr(a) for a in it.args]
        start, stop = ("0", args[0]) if len(args) == 1 else (args[0], args[1])
        step = 1
        if len(it.args) == 3:
            try:
                step = int(ast.literal_eval(it.args[2]))
            except ValueError:
                self.fail(it, "a range with a non-constant step")
        return f"for ({var} = {start}; {var} {'<' if step > 0 else '>'} {stop}; {var} += {step})"

    # ---- expressions ----
    def constant(self, name):
        """A module-level constant the function reads, declared once beside it."""
        v = self.env[name]
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
            rows = [", ".join(repr(float(x)) for x in v[r:r + 4]) for r in range(0, v.size, 4)]
            self.constants[name] = f"__device__ const double {name}[{v.size}] = {{\n    " + ",\n    ".join(rows) + "};"
            return "double"
        if isinstance(v, (bool, np.bool_)):
            self.constants[name] = f"constexpr bool {name} = {'true' if v else 'false'};"
            return "bool"
        if isinstance(v, (int, np.integer)):
            self.constants[name] = f"constexpr long long {name} = {int(v)}LL;"
            return "long long"
        if isinstance(v, (float, np.floating)):
            self.constants[name] = f"constexpr double {name} = {float(v)!r};"
            return "double"
        raise NotImplementedError(f"{self.pyname}: cannot print the module constant {name} = {v!r} as C")

    def type(self, n) -> str:
        if isinstance(n, ast.Constant):
            return "bool" if isinstance(n.value, bool) else "long long" if isinstance(n.value, int) else "double"
        if isinstance(n, ast.Name):
            return self.types[n.id] if n.id in self.types else self.constant(n.id)
        if isinstance(n, ast.Subscript):
            return self.type(n.value)
        if isinstance(n, ast.BinOp):
            left, right = self.type(n.left), self.type(n.right)
            if isinstance(n.op, ast.Div) or "double" in (left, right):
                return "double"
            return "long long"
        if isinstance(n, (ast.Compare, ast.BoolOp)) or isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            return "bool"
        if isinstance(n, ast.UnaryOp):
            return self.type(n.operand)
        if isinstance(n, ast.IfExp):
            return "double" if "double" in (self.type(n.body), self.type(n.orelse)) else self.type(n.body)
        if isinstance(n, ast.Call):
            return "long long" if getattr(n.func, "id", None) == "int" else "double"
        self.fail(n, "expression")

    def expr(self, n) -> str:
        if isinstance(n, ast.Constant) and isinstance(n.value, (bool, int, float)):
            if isinstance(n.value, bool):
                return "true" if n.value else "false"
            return f"{n.value}LL" if isinstance(n.value, int) else repr(float(n.value))
        if isinstance(n, ast.Name):
            if n.id not in self.types:
                self.constant(n.id)
            return n.id
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name):
            return f"{self.expr(n.value)}[{self.expr(n.slice)}]"
        if isinstance(n, ast.BinOp) and type(n.op) in _OPS:
            left, right = self.expr(n.left), self.expr(n.right)
            if isinstance(n.op, ast.Div) and "double" not in (self.type(n.left), self.type(n.right)):
                left = f"(double)({left})"
            return f"({left} {_OPS[type(n.op)]} {right})"
        shared = c_operator(n, self.expr)
        if shared is not None:
            return shared
        if isinstance(n, ast.Call) and not n.keywords:
            args = ", ".join(self.expr(a) for a in n.args)
            f = n.func
            if isinstance(f, ast.Attribute) and getattr(f.value, "id", None) == "math" and f.attr in _MATH:
                return f"{f.attr}({args})"
            if isinstance(f, ast.Name) and f.id in _BUILTINS:
                return f"{_BUILTINS[f.id]}({args})"
        self.fail(n, "expression")
