"""Print a runtime algorithm's one Python definition as a C / CUDA ``__device__`` function.

The kernels' scalar algorithms (``kernels.matfun.phi_scalar``, ...) are written once, in Python that
Numba compiles; the CUDA kernels call the same function printed as C by this module, so no
algorithm is written twice.  The caller passes the function object (``codegen`` never imports
``kernels``: ``sdekit`` hands them over).  The Python must keep to a small subset: parameters
annotated ``int``/``float``/``bool`` or ``np.uint64``/``np.int64``/``np.float64``; assignments (tuple
targets too), ``for ... in range(...)`` with a constant step, ``while``, ``if``/``elif``/``else``,
``return`` of a value or of a tuple (printed as out-parameters ``r0, r1, ...``); ``math`` functions,
``abs`` (of a float), ``float``/``int`` and the numpy casts ``np.uint64``/``np.int64``/``np.float64``;
module-level constants (numbers, numpy integers, 1-D float arrays, tuples of floats); other runtime
functions it calls (printed once, before it) and the bit casts its module declares in ``C_BITCASTS``
(name -> (C type from, C type to)).  Names beginning with ``_`` print as ``<module>_<name>``.  ``//``
and ``%`` print as C's, correct for non-negative operands only.  Anything else raises
``NotImplementedError`` naming it.
"""
from __future__ import annotations

import ast
import inspect
import textwrap

import numpy as np

_TYPES = {"int": "long long", "float": "double", "bool": "bool",
          "uint64": "unsigned long long", "int64": "long long", "float64": "double"}
_CASTS = {"uint64": "unsigned long long", "int64": "long long", "float64": "double"}   # np.<name>(x)
_CUDA_BITCASTS = {("double", "long long"): "__double_as_longlong", ("long long", "double"): "__longlong_as_double",
                  ("float", "int"): "__float_as_int", ("int", "float"): "__int_as_float"}
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
    itself, as ``__device__`` C named ``name`` (default: the Python name), after the runtime
    functions it calls."""
    printer = _Printer.of(fn, name, {}, {})
    return [printer.constants[k] for k in sorted(printer.constants)], printer.all_lines()


def _c_name(module: str, name: str) -> str:
    """A runtime function's or constant's C name: its Python name, or ``<module>_<name>`` for a private one
    (``module``: the last part of its Python module's name)."""
    return f"{module}{name}" if name.startswith("_") else name


class _Printer:
    def __init__(self, pyname, name, env, constants, functions):
        self.pyname, self.name, self.env = pyname, name, env
        self.types, self.lines, self.level = {}, [], 1
        self.constants, self.functions = constants, functions   # shared by a function and those it calls
        self.result = None          # its result type, or the list of the tuple's element types
        self.calls = []             # the printers of the runtime functions it calls, in first-call order

    @classmethod
    def of(cls, fn, name, constants, functions):
        """The printer of runtime function ``fn`` (printed once per C name, in ``functions``)."""
        py = python_function(fn)
        cname = name or py.__name__
        if cname not in functions:
            functions[cname] = printer = cls(py.__name__, cname, py.__globals__, constants, functions)
            printer.module = py.__module__.rsplit(".", 1)[-1]
            printer.head = printer.function(ast.parse(textwrap.dedent(inspect.getsource(py))).body[0])
        return functions[cname]

    def all_lines(self, done=None) -> list:
        """The functions it calls (each once, callees first), then its own lines."""
        done = set() if done is None else done
        out = []
        for callee in self.calls:
            if callee.name not in done:
                out += callee.all_lines(done) + [""]
        done.add(self.name)
        return out + self.head

    def fail(self, node, what="construct"):
        raise NotImplementedError(f"{self.pyname}: cannot print {what} {ast.unparse(node)!r} as C")

    # ---- the function and its statements ----
    def function(self, f) -> list:
        params = []
        for a in f.args.args:
            ann = a.annotation
            t = _TYPES.get(getattr(ann, "id", None) or getattr(ann, "attr", None)) or self.fail(a, "an unannotated parameter")
            self.types[a.arg] = t
            params.append(f"{t} {a.arg}")
        self.annotated = f.returns is not None
        if self.annotated:
            self.result = _TYPES.get(getattr(f.returns, "id", None)) or self.fail(f, "a result type")
        body = f.body[1:] if isinstance(f.body[0], ast.Expr) and isinstance(f.body[0].value, ast.Constant) else f.body
        declared = set(self.types)
        self.block(body)
        if self.result is None:
            self.fail(f, "a function without a result")
        local = [f"    {t} {n};" for n, t in self.types.items() if n not in declared]
        if isinstance(self.result, list):          # a tuple: out-parameters
            params += [f"{t}* r{k}" for k, t in enumerate(self.result)]
        result = "void" if isinstance(self.result, list) else self.result
        head = [f"/* {self.pyname}: printed from its Python definition (codegen/print_c_function.py) */",
                f"__device__ {result} {self.name}({', '.join(params)}) {{"]
        return head + local + self.lines + ["}"]

    def _returns(self, types):
        if self.annotated and isinstance(types, str):     # C converts to the declared result
            return
        if self.result is not None and self.result != types:
            raise NotImplementedError(f"{self.pyname}: returns {types} and {self.result}")
        self.result = types

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
        elif isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Tuple):
            self._unpack([e.id if isinstance(e, ast.Name) else self.fail(e, "a target") for e in s.targets[0].elts],
                         s.value)
        elif isinstance(s, ast.Return) and isinstance(s.value, ast.Tuple):
            self._returns([self.type(e) for e in s.value.elts])
            for k, e in enumerate(s.value.elts):
                self.w(f"*r{k} = {self.expr(e)};")
            self.w("return;")
        elif isinstance(s, ast.Return) and self._tuple_call(s.value):
            callee = self._callee(s.value)
            self._returns(list(callee.result))
            self.w(f"{self._call_text(callee, s.value, [f'r{k}' for k in range(len(callee.result))])};")
            self.w("return;")
        elif isinstance(s, ast.Return) and s.value is not None:
            self._returns(self.type(s.value))
            self.w(f"return {self.expr(s.value)};")
        elif isinstance(s, ast.AugAssign) and isinstance(s.target, ast.Name):
            self.w(f"{s.target.id} = {s.target.id} {_OPS[type(s.op)]} {self.expr(s.value)};")
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

    def _unpack(self, targets, value):
        """``a, b = f(...)`` (a runtime function's tuple, through out-parameters) or ``a, b = x, y``."""
        if self._tuple_call(value):
            callee = self._callee(value)
            for name, t in zip(targets, callee.result):
                self.types.setdefault(name, t)
            self.w(f"{self._call_text(callee, value, [f'&{n}' for n in targets])};")
        elif isinstance(value, ast.Tuple) and len(value.elts) == len(targets):
            texts = [self.expr(e) for e in value.elts]
            for name, e in zip(targets, value.elts):
                self.types.setdefault(name, self.type(e))
            read = {n.id for e in value.elts for n in ast.walk(e) if isinstance(n, ast.Name)}
            if read & set(targets):      # a, b = b, a: every value first
                self.fail(value, "a tuple assignment that reads its targets")
            for name, text in zip(targets, texts):
                self.w(f"{name} = {text};")
        else:
            self.fail(value, "a tuple assignment")

    # ---- calls of other runtime functions ----
    def _runtime(self, n):
        """The Python function a call ``f(...)`` names, if it is another runtime function."""
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id in self.env:
            fn = self.env[n.func.id]
            if callable(fn) and hasattr(python_function(fn), "__code__"):
                return fn
        return None

    def _callee(self, n):
        fn = self._runtime(n)
        py = python_function(fn)
        callee = _Printer.of(fn, _c_name(py.__module__.rsplit(".", 1)[-1], py.__name__), self.constants, self.functions)
        if callee not in self.calls:
            self.calls.append(callee)
        return callee

    def _tuple_call(self, n) -> bool:
        return self._runtime(n) is not None and isinstance(self._callee(n).result, list)

    def _call_text(self, callee, n, extra=()):
        return f"{callee.name}({', '.join([self.expr(a) for a in n.args] + list(extra))})"

    def _bitcast(self, n):
        """(C from, C to) of a bit cast the function's module declares (``C_BITCASTS``), or None."""
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name):
            return self.env.get("C_BITCASTS", {}).get(n.func.id)
        return None

    def _bitcast_call(self, n):
        src, dst = self._bitcast(n)
        cname = _c_name(self.module, n.func.id)
        cuda = _CUDA_BITCASTS[(src, dst)]
        self.constants.setdefault(cname, "\n".join([
            f"__device__ __forceinline__ {dst} {cname}({src} x) {{   /* a bit cast (C_BITCASTS) */",
            "#ifdef __CUDACC__", f"    return {cuda}(x);", "#else",
            f"    {dst} y; __builtin_memcpy(&y, &x, sizeof y); return y;", "#endif", "}"]))
        return f"{cname}({self.expr(n.args[0])})"

    # ---- expressions ----
    def constant(self, name):
        """A module-level constant the function reads, declared once beside it; returns its C type."""
        v = self.env[name]
        cname = self.cname(name)
        if isinstance(v, tuple) and v and all(isinstance(x, float) for x in v):
            v = np.asarray(v)
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind == "f":
            rows = [", ".join(repr(float(x)) for x in v[r:r + 4]) for r in range(0, v.size, 4)]
            text, t = f"__device__ const double {cname}[{v.size}] = {{\n    " + ",\n    ".join(rows) + "};", "double"
        elif isinstance(v, (bool, np.bool_)):
            text, t = f"constexpr bool {cname} = {'true' if v else 'false'};", "bool"
        elif isinstance(v, np.unsignedinteger):
            text, t = f"constexpr unsigned long long {cname} = {int(v)}ULL;", "unsigned long long"
        elif isinstance(v, (int, np.integer)):
            text, t = f"constexpr long long {cname} = {int(v)}LL;", "long long"
        elif isinstance(v, (float, np.floating)):
            text, t = f"constexpr double {cname} = {float(v)!r};", "double"
        else:
            raise NotImplementedError(f"{self.pyname}: cannot print the module constant {name} = {v!r} as C")
        if self.constants.get(cname, text) != text:
            raise NotImplementedError(f"{self.pyname}: two constants print as {cname}")
        self.constants[cname] = text
        return t

    def cname(self, name):
        """A module constant's C name (``<module>_<name>`` for a private one)."""
        return _c_name(self.module, name) if name in self.env and name not in self.types else name

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
            if isinstance(n.op, (ast.LShift, ast.RShift)):
                return left
            return "unsigned long long" if "unsigned long long" in (left, right) else "long long"
        if isinstance(n, (ast.Compare, ast.BoolOp)) or isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Not):
            return "bool"
        if isinstance(n, ast.UnaryOp):
            return self.type(n.operand)
        if isinstance(n, ast.IfExp):
            return "double" if "double" in (self.type(n.body), self.type(n.orelse)) else self.type(n.body)
        if isinstance(n, ast.Call):
            if self._bitcast(n):
                return self._bitcast(n)[1]
            if self._runtime(n) is not None:
                result = self._callee(n).result
                return result if isinstance(result, str) else self.fail(n, "a tuple in an expression")
            if isinstance(n.func, ast.Attribute) and getattr(n.func.value, "id", None) in ("np", "numpy"):
                return _CASTS.get(n.func.attr) or self.fail(n, "a numpy call")
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
                return self.cname(n.id)
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
        if isinstance(n, ast.Call) and not n.keywords and self._bitcast(n):
            return self._bitcast_call(n)
        if isinstance(n, ast.Call) and not n.keywords and self._runtime(n) is not None:
            callee = self._callee(n)
            return self._call_text(callee, n) if isinstance(callee.result, str) else self.fail(n, "a tuple in an expression")
        if isinstance(n, ast.Call) and not n.keywords:
            args = ", ".join(self.expr(a) for a in n.args)
            f = n.func
            if isinstance(f, ast.Attribute) and getattr(f.value, "id", None) in ("np", "numpy") and f.attr in _CASTS:
                return f"(({_CASTS[f.attr]})({args}))"
            if isinstance(f, ast.Attribute) and getattr(f.value, "id", None) == "math" and f.attr in _MATH:
                return f"{f.attr}({args})"
            if isinstance(f, ast.Name) and f.id in _BUILTINS:
                return f"{_BUILTINS[f.id]}({args})"
        self.fail(n, "expression")
