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
and ``%`` print as C's, correct for non-negative operands only.  ``max``/``min`` of two numbers
(Python's rule) and ``math.frexp(x)[1]`` print too.  Anything else raises ``NotImplementedError``
naming it.

Arrays: a parameter annotated ``"float[:, :]"`` (``float64``, ``int``, ``uint``, ``bool``; one ``:`` per axis) is
a strided :data:`VIEW_CODE` ``View`` (``float``: any precision, a template parameter per array).
Indexing with integers, slices ``a:b`` and ``None``, ``x.shape[k]``, ``x.reshape(...)`` (contiguous
``x``), element and slice assignment (``x[:] = 0.0``, ``x[a:b] = y[c:d]``) and views as arguments
print; allocation does not: scratch comes from the caller.  A function that returns only
``np.zeros``/``np.empty`` arrays is an *allocation* (:func:`c_allocation`): the caller declares them.
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
#: a ``range`` of at most this many trips, all constant, prints unrolled (``SDEKIT_UNROLL``, the CUDA prelude's
#: ``#pragma unroll``): its loop index becomes a constant in each copy, so a division by a power of it becomes a
#: multiplication (the Brownian tree's split-point search divided by 5^k in 64 bits, ~80 instructions a division)
UNROLL_TRIPS = 16
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
_ELEMENTS = {"float64": "double", "int": "long long", "uint": "unsigned long long", "bool": "bool"}   # "float": a template type
MAX_DIMS = 5

#: the strided array of printed runtime algorithms, and Python's max/min, frexp(x)[1] (C++17, host and NVRTC)
VIEW_CODE = r"""/* A strided view of a buffer (a runtime algorithm's numpy array: codegen/print_c_function.py). */
template <class T> struct View {
    T* p;
    long long sh[5], st[5];
};
template <class T, class... I> __device__ __forceinline__ View<T> view_shaped(T* p, I... dims) {
    /* the C-order buffer p with shape dims */
    const long long d[] = {(long long)dims...};
    View<T> v;
    v.p = p;
    long long s = 1;
    for (int k = (int)sizeof...(I) - 1; k >= 0; --k) { v.sh[k] = d[k]; v.st[k] = s; s *= d[k]; }
    return v;
}
template <class T> __device__ __forceinline__ View<T> view_of(T* p, const long long* shape, int nd) {
    /* a kernel argument: the C-order buffer p of shape shape[0 .. nd) */
    View<T> v;
    v.p = p;
    long long s = 1;
    for (int k = nd - 1; k >= 0; --k) { v.sh[k] = shape[k]; v.st[k] = s; s *= shape[k]; }
    return v;
}
template <class T> __device__ __forceinline__ View<T> view_index(View<T> x, int axis, int nd, long long i) {
    /* x[..., i, ...]: axis dropped (x has nd axes) */
    View<T> v = x;
    v.p = x.p + i * x.st[axis];
    for (int k = axis; k < nd - 1; ++k) { v.sh[k] = x.sh[k + 1]; v.st[k] = x.st[k + 1]; }
    return v;
}
template <class T> __device__ __forceinline__ View<T> view_slice(View<T> x, int axis, long long lo, long long hi) {
    View<T> v = x;
    v.p = x.p + lo * x.st[axis];
    v.sh[axis] = hi - lo;
    return v;
}
template <class T> __device__ __forceinline__ View<T> view_newaxis(View<T> x, int axis, int nd) {
    View<T> v = x;
    for (int k = nd; k > axis; --k) { v.sh[k] = x.sh[k - 1]; v.st[k] = x.st[k - 1]; }
    v.sh[axis] = 1;
    v.st[axis] = 0;
    return v;
}
template <class T, class... I> __device__ __forceinline__ View<T> view_transpose(View<T> x, I... axes) {
    /* x.transpose(axes) */
    const int a[] = {(int)axes...};
    View<T> v = x;
    for (int k = 0; k < (int)sizeof...(I); ++k) { v.sh[k] = x.sh[a[k]]; v.st[k] = x.st[a[k]]; }
    return v;
}
template <class T, class... I> __device__ __forceinline__ View<T> view_reshape(View<T> x, I... dims) {
    return view_shaped(x.p, dims...);     /* x is contiguous (numba's reshape requires it) */
}
template <class T> __device__ __forceinline__ long long view_offset(const View<T>& x, int nd, long long n) {
    /* the offset of the n-th element of x in C order */
    long long off = 0;
    for (int k = nd - 1; k >= 0; --k) { off += (n % x.sh[k]) * x.st[k]; n /= x.sh[k]; }
    return off;
}
template <class T> __device__ __forceinline__ long long view_size(const View<T>& x, int nd) {
    long long n = 1;
    for (int k = 0; k < nd; ++k) n *= x.sh[k];
    return n;
}
template <class T, class S> __device__ __forceinline__ void view_fill(View<T> x, int nd, S value) {
    for (long long n = 0, size = view_size(x, nd); n < size; ++n) x.p[view_offset(x, nd, n)] = value;
}
template <class T, class S> __device__ __forceinline__ void view_copy(View<T> dst, View<S> src, int nd) {
    for (long long n = 0, size = view_size(dst, nd); n < size; ++n)
        dst.p[view_offset(dst, nd, n)] = src.p[view_offset(src, nd, n)];
}
template <class A, class B> __device__ __forceinline__ auto py_max(A a, B b) -> decltype(a + b) { return b > a ? b : a; }
template <class A, class B> __device__ __forceinline__ auto py_min(A a, B b) -> decltype(a + b) { return b < a ? b : a; }
__device__ __forceinline__ long long frexp_exponent(double x) { int e; frexp(x, &e); return e; }"""


def python_function(fn):
    """The plain Python function behind ``fn`` (a Numba dispatcher's ``py_func``)."""
    return getattr(fn, "py_func", fn)


def c_function(fn, name: str | None = None) -> tuple[list, list]:
    """(constants, function): C lines of the module-level constants ``fn`` reads and of ``fn``
    itself, as ``__device__`` C named ``name`` (default: the Python name), after the runtime
    functions it calls."""
    printer = _Printer.of(fn, name, {}, {})
    return [printer.constants[k] for k in sorted(printer.constants)], printer.all_lines()


def c_functions(fns, constants=None) -> tuple[list, list]:
    """(constants, lines) of several runtime functions (``{C name: function}``) and all they call,
    each printed once, callees first.  ``constants``: C name -> text of constants declared already
    (:func:`c_allocation`'s), printed with them."""
    constants, functions = ({} if constants is None else constants), {}
    printers = [_Printer.of(fn, name, constants, functions) for name, fn in fns.items()]
    done, lines = set(), []
    for p in printers:
        if p.name not in done:
            lines += p.all_lines(done) + [""]
    return [constants[k] for k in sorted(constants)], lines


def c_allocation(fn, arguments, constants=None) -> list:
    """The arrays an allocation ``fn`` returns (a function whose body returns ``np.zeros``/``np.empty``
    arrays, or a tuple of them), for a caller that declares them: (element, [dimension C texts], zeroed)
    per array, ``element`` "double", "long long" or the C text of the argument passed as its dtype (the
    caller resolves ``X.dtype``), ``zeroed``: np.zeros (np.empty: the runtime writes it before reading it,
    so a CUDA thread leaves it uninitialised).  ``arguments``: the C texts of the call's arguments; the module
    constants the shapes read are added to ``constants`` (C name -> text, as :func:`c_functions`)."""
    py = python_function(fn)
    f = ast.parse(textwrap.dedent(inspect.getsource(py))).body[0]
    body = [s for s in f.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    names = [a.arg for a in f.args.args]
    printer = _Printer(py.__name__, py.__name__, py.__globals__, {} if constants is None else constants, {})
    printer.module = py.__module__.rsplit(".", 1)[-1]
    printer.rename = {n: f"({a})" for n, a in zip(names, arguments)}
    printer.types = {n: "long long" for n in names}
    if len(body) != 1 or not isinstance(body[0], ast.Return):
        printer.fail(f, "an allocation that is not one return")
    value = body[0].value
    out = []
    for call in value.elts if isinstance(value, ast.Tuple) else [value]:
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr in ("zeros", "empty")):
            printer.fail(call, "an allocation other than np.zeros / np.empty")
        shape, *rest = call.args
        dims = [printer.expr(d) for d in (shape.elts if isinstance(shape, ast.Tuple) else [shape])]
        if not rest:
            element = "double"
        elif isinstance(rest[0], ast.Attribute) and rest[0].attr in _TYPES:
            element = _TYPES[rest[0].attr]
        elif isinstance(rest[0], ast.Name) and rest[0].id in names:
            element = arguments[names.index(rest[0].id)]
        else:
            printer.fail(call, "an allocation's dtype")
        out.append((element, dims, call.func.attr == "zeros"))
    return out


def _c_name(module: str, name: str) -> str:
    """A runtime function's or constant's C name: its Python name, or ``<module>_<name>`` for a private one
    (``module``: the last part of its Python module's name)."""
    return f"{module}{name}" if name.startswith("_") else name


def _array_annotation(text: str):
    """(element kind, dimensions) of an array annotation ``"float[:, :]"``, or None."""
    kind, _, rest = text.partition("[")
    axes = rest.rstrip("]").split(",")
    if kind in ("float", *_ELEMENTS) and rest.endswith("]") and all(a.strip() == ":" for a in axes) and len(axes) <= MAX_DIMS:
        return kind, len(axes)
    return None


class _Printer:
    def __init__(self, pyname, name, env, constants, functions):
        self.pyname, self.name, self.env = pyname, name, env
        self.types, self.lines, self.level = {}, [], 1
        self.ndim, self.templates, self.rename = {}, [], {}   # arrays: name -> axes; template parameters
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
            printer.head = printer.function(_Unreserved().visit(ast.parse(textwrap.dedent(inspect.getsource(py))).body[0]))
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

    def helpers(self):
        """Declare the View type and the helpers beside the constants (once)."""
        self.constants.setdefault("__view__", VIEW_CODE)

    # ---- the function and its statements ----
    def function(self, f) -> list:
        params = []
        for a in f.args.args:
            ann = a.annotation
            array = _array_annotation(ann.value) if isinstance(ann, ast.Constant) and isinstance(ann.value, str) else None
            if array:
                kind, self.ndim[a.arg] = array
                element = _ELEMENTS.get(kind, f"T_{a.arg}")
                if kind == "float":
                    self.templates.append(f"class {element}")
                t = f"View<{element}>"
                self.helpers()
            else:
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
            self.result = "void"
        local = [f"    {t} {n};" for n, t in self.types.items() if n not in declared]
        if isinstance(self.result, list):          # a tuple: out-parameters
            params += [f"{t}* r{k}" for k, t in enumerate(self.result)]
        result = "void" if isinstance(self.result, list) else self.result
        template = f"template <{', '.join(self.templates)}> " if self.templates else ""
        head = [f"/* {self.pyname}: printed from its Python definition (codegen/print_c_function.py) */",
                f"{template}__device__ {result} {self.name}({', '.join(params)}) {{"]
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
        if isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], (ast.Name, ast.Subscript)):
            self._assign(s.targets[0], s.value)
        elif isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Tuple):
            self._unpack(s.targets[0].elts, s.value)
        elif isinstance(s, ast.Return) and s.value is None:
            self._returns("void")
            self.w("return;")
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
        elif isinstance(s, ast.Return):
            self._returns(self.type(s.value))
            self.w(f"return {self.expr(s.value)};")
        elif isinstance(s, ast.AugAssign) and isinstance(s.target, (ast.Name, ast.Subscript)):
            target = self.expr(s.target)
            if self.view(s.target):
                self.fail(s, "an augmented assignment to an array slice")
            self.w(f"{target} = {target} {_OPS[type(s.op)]} {self.expr(s.value)};")
        elif isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and self._runtime(s.value) is not None:
            callee = self._callee(s.value)
            self.w(f"{self._call_text(callee, s.value)};")
        elif isinstance(s, (ast.Break, ast.Continue)):
            self.w("break;" if isinstance(s, ast.Break) else "continue;")
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
        loop = f"for ({var} = {start}; {var} {'<' if step > 0 else '>'} {stop}; {var} += {step})"
        trips = [self._constant(a) for a in it.args]
        if None not in trips:
            trips = len(range(*trips))
            return f"SDEKIT_UNROLL {loop}" if 0 < trips <= UNROLL_TRIPS else loop
        return loop

    def _constant(self, n):
        """The integer value of an expression of literals and module-level integer constants, else None."""
        if isinstance(n, ast.Constant) and isinstance(n.value, int) and not isinstance(n.value, bool):
            return n.value
        if isinstance(n, ast.Name) and n.id not in self.types and isinstance(self.env.get(n.id), (int, np.integer)):
            return int(self.env[n.id])
        if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.USub):
            a = self._constant(n.operand)
            return None if a is None else -a
        if isinstance(n, ast.BinOp) and type(n.op) in (ast.Add, ast.Sub, ast.Mult):
            a, b = self._constant(n.left), self._constant(n.right)
            return None if a is None or b is None else {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}[type(n.op)]
        return None

    def _assign(self, target, value):
        """``name = value`` (a view when value is one) or a store into an element or a slice."""
        if isinstance(target, ast.Name):
            self.types.setdefault(target.id, self.type(value))
            view = self.view(value)
            if view:
                self.ndim.setdefault(target.id, view[1])
            self.w(f"{target.id} = {self.expr(value)};")
            return
        dst, src = self.view(target), self.view(value)
        if dst is None:
            self.w(f"{self.expr(target)} = {self.expr(value)};")
        elif src is not None:
            self.w(f"view_copy({dst[2]}, {src[2]}, {dst[1]});")
        else:
            self.w(f"view_fill({dst[2]}, {dst[1]}, {self.expr(value)});")

    def _unpack(self, targets, value):
        """``a, b = f(...)`` (a runtime function's tuple, through out-parameters), ``a, b = x, y``,
        ``a, b = (x, y) if c else (u, v)`` or ``m, n = x.shape``."""
        if self._tuple_call(value):
            callee = self._callee(value)
            names = [e.id if isinstance(e, ast.Name) else self.fail(e, "a target of a tuple call") for e in targets]
            for name, t in zip(names, callee.result):
                self.types.setdefault(name, t)
            self.w(f"{self._call_text(callee, value, [f'&{n}' for n in names])};")
            return
        if isinstance(value, ast.Attribute) and value.attr == "shape" and self.view(value.value):
            values = [ast.Subscript(value, ast.Constant(k)) for k in range(len(targets))]
        elif isinstance(value, ast.Tuple) and len(value.elts) == len(targets):
            values = value.elts
        elif (isinstance(value, ast.IfExp) and all(isinstance(b, ast.Tuple) and len(b.elts) == len(targets)
                                                   for b in (value.body, value.orelse))):
            values = [ast.IfExp(value.test, a, b) for a, b in zip(value.body.elts, value.orelse.elts)]
        else:
            self.fail(value, "a tuple assignment")
        written = [t.id if isinstance(t, ast.Name) else getattr(t.value, "id", None) for t in targets]
        for k, v in enumerate(values):     # a, b = b, a: a value must not read a target assigned before it
            if {n.id for n in ast.walk(v) if isinstance(n, ast.Name)} & set(written[:k]):
                self.fail(value, "a tuple assignment that reads its targets")
        for target, v in zip(targets, values):
            self._assign(target, v)

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

    # ---- arrays ----
    def view(self, n):
        """(C type, axes, C text) of an expression that is an array view, else None."""
        if isinstance(n, ast.Name) and n.id in self.ndim and n.id in self.types:
            return self.types[n.id], self.ndim[n.id], n.id
        if isinstance(n, ast.Subscript):
            base = self.view(n.value)
            if base is None:
                return None
            ctype, nd, text = base
            index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
            if len(index) == nd and not any(isinstance(i, ast.Slice) or _is_none(i) for i in index):
                return None                                            # an element
            axis = 0
            for i in index:
                if isinstance(i, ast.Slice):
                    if i.step is not None:
                        self.fail(n, "a slice with a step")
                    lo = self.expr(i.lower) if i.lower is not None else "0"
                    hi = self.expr(i.upper) if i.upper is not None else f"{text}.sh[{axis}]"
                    text, axis = f"view_slice({text}, {axis}, {lo}, {hi})", axis + 1
                elif _is_none(i):
                    text, nd, axis = f"view_newaxis({text}, {axis}, {nd})", nd + 1, axis + 1
                else:
                    text, nd = f"view_index({text}, {axis}, {nd}, {self.expr(i)})", nd - 1
            return ctype, nd, text
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "reshape":
            base = self.view(n.func.value)
            if base is None:
                return None
            dims = n.args[0].elts if len(n.args) == 1 and isinstance(n.args[0], ast.Tuple) else n.args
            return base[0], len(dims), f"view_reshape({base[2]}, {', '.join(self.expr(d) for d in dims)})"
        if isinstance(n, ast.IfExp):
            a, b = self.view(n.body), self.view(n.orelse)
            if a and b:
                if a[:2] != b[:2]:
                    self.fail(n, "a choice between different arrays")
                return a[0], a[1], f"({self.expr(n.test)} ? {a[2]} : {b[2]})"
        return None

    def _element(self, n) -> str:
        """C text of the element ``x[i, j, ...]`` of a view (all axes indexed by integers)."""
        ctype, nd, text = self.view(n.value)
        index = n.slice.elts if isinstance(n.slice, ast.Tuple) else [n.slice]
        off = " + ".join(f"({self.expr(i)}) * {text}.st[{k}]" for k, i in enumerate(index))
        return f"{text}.p[{off}]"

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
        view = self.view(n)
        if view:
            return view[0]
        if isinstance(n, ast.Constant):
            return "bool" if isinstance(n.value, bool) else "long long" if isinstance(n.value, int) else "double"
        if isinstance(n, ast.Name):
            if n.id in self.rename:
                return "long long"
            return self.types[n.id] if n.id in self.types else self.constant(n.id)
        if _frexp_exponent(n) is not None:
            return "long long"
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute) and n.value.attr == "shape":
            return "long long"
        if isinstance(n, ast.Subscript):
            base = self.view(n.value)
            if base is not None:      # an element: the view's, float arrays' as double
                element = base[0][len("View<"):-1]
                return "double" if element.startswith("T_") else element
            return self.type(n.value)
        if isinstance(n, ast.BinOp):
            left, right = self.type(n.left), self.type(n.right)
            if isinstance(n.op, (ast.Div, ast.Pow)) or "double" in (left, right):
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
            if getattr(n.func, "id", None) in ("max", "min"):
                left, right = (self.type(a) for a in n.args)
                return "double" if "double" in (left, right) else left
            return "long long" if getattr(n.func, "id", None) == "int" else "double"
        self.fail(n, "expression")

    def expr(self, n) -> str:
        view = self.view(n)
        if view:
            return view[2]
        if isinstance(n, ast.Constant) and isinstance(n.value, (bool, int, float)):
            if isinstance(n.value, bool):
                return "true" if n.value else "false"
            return f"{n.value}LL" if isinstance(n.value, int) else repr(float(n.value))
        if isinstance(n, ast.Name):
            if n.id in self.rename:
                return self.rename[n.id]
            if n.id not in self.types:
                self.constant(n.id)
                return self.cname(n.id)
            return n.id
        frexp = _frexp_exponent(n)
        if frexp is not None:
            self.helpers()
            return f"frexp_exponent({self.expr(frexp)})"
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Attribute) and n.value.attr == "shape":
            base = self.view(n.value.value) or self.fail(n, "the shape of a non-array")
            return f"{base[2]}.sh[{self.expr(n.slice)}]"
        if isinstance(n, ast.Subscript) and self.view(n.value) is not None:
            return self._element(n)
        if isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name):
            return f"{self.expr(n.value)}[{self.expr(n.slice)}]"
        if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Pow):
            return f"pow((double)({self.expr(n.left)}), (double)({self.expr(n.right)}))"
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
            if isinstance(f, ast.Name) and f.id in ("max", "min") and len(n.args) == 2:
                self.helpers()
                return f"py_{f.id}({args})"
            if isinstance(f, ast.Name) and f.id in _BUILTINS:
                return f"{_BUILTINS[f.id]}({args})"
        self.fail(n, "expression")


#: C++ keywords a Python name may be: printed with a trailing underscore
_RESERVED = {"new", "delete", "default", "this", "class", "template", "typename", "auto", "register", "union",
             "signed", "unsigned", "short", "long", "double", "float", "char", "int", "void", "static", "const",
             "switch", "case", "goto", "friend", "operator", "private", "public", "protected", "virtual", "explicit",
             "namespace", "using", "extern", "volatile", "inline", "struct", "enum", "typedef", "sizeof", "do"}


class _Unreserved(ast.NodeTransformer):
    """Rename variables and parameters that are C++ keywords (``new`` -> ``new_``)."""

    def visit_FunctionDef(self, n):     # not its result annotation (``-> float``)
        n.args.args = [self.visit(a) for a in n.args.args]
        n.body = [self.visit(s) for s in n.body]
        return n

    def visit_Call(self, n):       # int(x), float(x): Python's functions, not variables
        n.args = [self.visit(a) for a in n.args]
        if not isinstance(n.func, ast.Name):
            n.func = self.visit(n.func)
        return n

    def visit_Name(self, n):
        if n.id in _RESERVED:
            n.id += "_"
        return n

    def visit_arg(self, n):
        if n.arg in _RESERVED:
            n.arg += "_"
        return n


def _is_none(n) -> bool:
    return isinstance(n, ast.Constant) and n.value is None


def _frexp_exponent(n):
    """The argument x of ``math.frexp(x)[1]`` (the binary exponent), else None."""
    if (isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant) and n.slice.value == 1
            and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Attribute)
            and n.value.func.attr == "frexp" and getattr(n.value.func.value, "id", None) == "math"):
        return n.value.args[0]
    return None


def c_host_entry(fn, name: str) -> list:
    """C lines of ``extern "C" void <name>(...)``: runtime function ``fn`` (printed by :func:`c_functions`
    under its own name) callable from the host through ctypes, each array parameter passed as a pointer
    and its shape (int64), float arrays as double — for tests that compare the printed algorithm with
    the Numba one."""
    py = python_function(fn)
    f = ast.parse(textwrap.dedent(inspect.getsource(py))).body[0]
    params, args = [], []
    for a in f.args.args:
        ann = a.annotation
        array = _array_annotation(ann.value) if isinstance(ann, ast.Constant) and isinstance(ann.value, str) else None
        if array:
            element = {"float": "double", **_ELEMENTS}[array[0]]
            params += [f"{element}* {a.arg}", f"const long long* {a.arg}_shape"]
            args.append(f"view_of({a.arg}, {a.arg}_shape, {array[1]})")
        else:
            params.append(f"{_TYPES[getattr(ann, 'id', None) or getattr(ann, 'attr', None)]} {a.arg}")
            args.append(a.arg)
    return [f'extern "C" void {name}({", ".join(params)}) {{', f"    {py.__name__}({', '.join(args)});", "}"]
