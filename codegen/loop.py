"""The loop IR: a solver's driver (time loop, noise, controller, saving, retcodes) as statements that
every backend prints (``print_numba``: blocks of lanes; ``print_numpy``: the ensemble vectorised with
masks; ``print_cuda``: CUDA C, one thread per trajectory).  The step itself is the :class:`StepScheme` IR;
``drivers.py`` builds the loops from it.

Values are *uniform* (one per block: the step counter, ``fsal_ready``, kernel arguments) or *per lane*
(one per trajectory: declared :class:`Lane` arrays, and the temporaries assigned inside :class:`Lanes`).
Expressions are Python expression text over those names; a per-lane vector is indexed by the
component ``i`` (``y[i]``).  Functions: ``min max abs sqrt isfinite`` (each printer's own) and
``phi(k, x)`` (φ_k of a real x, methods.md §1.2: ``kernels.matfun.phi_scalar``, the one definition,
which CUDA prints from its Python), the constant ``inf``, ``x if c else y``, ``and or not``;
``min(a, b)`` and ``max(a, b)`` take two arguments and are NaN when either is (IEEE 754-2019
minimum/maximum, numpy's ``np.minimum``): every printer prints that rule.  Built-in lane values:
``src`` (the lane's column of the chunk's inputs, int),
``j`` (its column of the outputs), ``valid`` (it is a trajectory, not padding), ``b`` (the lane index,
for :class:`LaneCall`).  A lane expression may be evaluated on lanes its condition masks off
(numpy computes all lanes, then keeps the masked ones), so an index must be in range on every lane:
clamp it (``save_t[min(isave, nsave - 1)]``).
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field

# ---- declarations -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lane:
    """A per-lane array kept across block statements: one value (``rows`` None) or a vector of
    ``rows`` ("D" state, "M" noise) per lane.  ``dtype``: state | f64 | i64 | i8 | bool; ``init``: a
    uniform expression, or None (uninitialised)."""

    name: str
    dtype: str = "f64"
    init: str | None = None
    rows: str | None = None


@dataclass(frozen=True)
class Buffer:
    """Scratch of a runtime algorithm: shape text over D, M, B (lanes) and uniform names."""

    name: str
    shape: str
    dtype: str = "f64"


# ---- block statements (uniform control flow) ----------------------------------------------------


@dataclass(frozen=True)
class Set:
    """A uniform value ``name = expr``."""

    name: str
    expr: str


@dataclass(frozen=True)
class For:
    """``for var in range(count)`` (uniform); ``progress``: the host may show a bar over it."""

    var: str
    count: str
    body: list
    progress: bool = False


@dataclass(frozen=True)
class WhileAny:
    """Repeat ``body`` while any lane has ``cond`` (a per-lane flag).  ``progress``: (lane time, start, end)
    for a printer that shows a bar of the slowest active lane's time (numpy; Numba shows blocks done)."""

    cond: str
    body: list
    progress: tuple | None = None


@dataclass(frozen=True)
class IfAny:
    """Run the block statements ``body`` when any lane has ``cond``."""

    cond: str
    body: list


@dataclass(frozen=True)
class IfUniform:
    cond: str
    then: list
    orelse: list = field(default_factory=list)


@dataclass(frozen=True)
class Call:
    """A runtime algorithm on whole blocks of lanes (``module.fn(args)``, e.g. ``brownian.tree_walk``),
    its result (if any) into the uniform ``result``."""

    module: str
    fn: str
    args: tuple
    result: str | None = None


@dataclass(frozen=True)
class Stages:
    """Step statements of the scheme (:mod:`scheme`), printed by the backend's statement printer;
    ``adaptive``: operators are this attempt's per-lane values."""

    statements: tuple
    adaptive: bool = False


@dataclass(frozen=True)
class Rhs:
    """``target = f(state, t)`` (the full right-hand side) on every lane; ``t`` a per-lane time."""

    t: str
    state: str
    target: str


@dataclass(frozen=True)
class Copy:
    """Per-lane vector register copy ``dst = src``."""

    dst: str
    src: str


@dataclass(frozen=True)
class Operators:
    """Make the scheme's operators current: the step class ``index``'s values from the host's tables
    (fixed steps; adaptive drivers compute each lane's own in the IR: ``lane_operators``)."""

    index: str


@dataclass(frozen=True)
class Lanes:
    """Per-lane statements, for every lane (``rows``: and every component ``i`` of D or M)."""

    body: list
    rows: str | None = None


# ---- lane statements ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Let:
    """``target = expr`` per lane: a Lane, a temporary, or a vector component ``x[i]``."""

    target: str
    expr: str


@dataclass(frozen=True)
class If:
    cond: str
    then: list
    orelse: list = field(default_factory=list)


@dataclass(frozen=True)
class While:
    cond: str
    body: list


@dataclass(frozen=True)
class Components:
    """``body`` for each state component ``i``."""

    body: list


@dataclass(frozen=True)
class Reduce:
    """``target = expr[0] op expr[1] op ...`` over the state components, in order (op: + or and)."""

    target: str
    op: str
    expr: str


@dataclass(frozen=True)
class Store:
    """``array[index] = value`` into an output (index: uniform or per-lane expressions)."""

    array: str
    index: tuple
    value: str


@dataclass(frozen=True)
class StoreRow:
    """``array[row, :, col] = vector`` (vector: an expression in ``i``)."""

    array: str
    row: str
    col: str
    value: str


@dataclass(frozen=True)
class LaneCall:
    """A runtime function of one lane (``module.fn(args)``; args may be per-lane values and ``b``)."""

    module: str
    fn: str
    args: tuple


@dataclass
class LoopKernel:
    """A whole driver: the kernel ``arguments`` (the ABI's, then the model's), the lane arrays and
    scratch it declares, and its block statements.  ``adaptive``: blocks are sized to the chunk."""

    name: str
    doc: str
    arguments: tuple
    lanes: list
    buffers: list
    body: list
    adaptive: bool = False

    def calls(self):
        """Every (module, fn) the kernel calls (the printers import them)."""
        out = []

        def walk(stmts):
            for s in stmts:
                if isinstance(s, (Call, LaneCall)) and (s.module, s.fn) not in out:
                    out.append((s.module, s.fn))
                for name in ("body", "then", "orelse"):
                    walk(getattr(s, name, None) or [])
        walk(self.body)
        return out

    def functions(self) -> set:
        """Names of the functions the kernel's expressions call (``min``, ``phi``, ...)."""
        out = set()

        def walk(node):
            if isinstance(node, (list, tuple)):
                for x in node:
                    walk(x)
            elif isinstance(node, str):
                try:
                    tree = ast.parse(node.partition("  # ")[0], mode="eval")
                except SyntaxError:          # shapes, comments: not expressions
                    return
                out.update(n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
            elif hasattr(node, "__dataclass_fields__"):
                for f in node.__dataclass_fields__:
                    walk(getattr(node, f))
        walk(self.body)
        return out


# ---- the IR's own rules, checked ----------------------------------------------------------------

#: functions every printer prints as its own (``min``/``max`` by the NaN rule)
BUILTIN_FUNCTIONS = frozenset({"min", "max", "abs", "sqrt", "isfinite"})
#: functions defined once by the runtime (``kernels``), which each backend calls or prints from that definition
RUNTIME_FUNCTIONS = frozenset({"phi"})
#: names every expression may use besides the kernel's arguments, lanes, buffers and uniform values
BUILTINS = BUILTIN_FUNCTIONS | RUNTIME_FUNCTIONS | {"inf", "nan", "D", "M", "B", "src", "j", "valid"}


class IRError(ValueError):
    """A loop kernel breaks a rule of the IR (what every printer relies on)."""


def check(kernel: LoopKernel) -> None:
    """Verify the rules the printers rely on, or raise :class:`IRError` naming the statement:
    every name an expression reads is an argument, a lane, a buffer, a built-in, a uniform value set
    before, or a temporary of the *same* :class:`Lanes` block assigned on every path before the read
    (a temporary never lives across blocks: numpy and CUDA keep none); ``i`` only inside components;
    ``min``/``max`` with two arguments (the NaN rule is binary); WhileAny/IfAny test lane values."""
    lanes = {v.name for v in kernel.lanes}
    vectors = {v.name for v in kernel.lanes if v.rows is not None}
    arguments = set(kernel.arguments)
    known = arguments | lanes | {b.name for b in kernel.buffers} | BUILTINS
    clash = lanes & (arguments | BUILTINS)
    if clash:
        raise IRError(f"{kernel.name}: lanes {sorted(clash)} take the names of kernel arguments or built-ins")

    def reads(text, scope, where, whole=False):
        """Check the names ``text`` reads; ``whole``: a bare lane vector is an argument (Call, LaneCall)."""
        tree = ast.parse(text.partition("  # ")[0], mode="eval")
        indexed = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in vectors:
                if not (isinstance(node.slice, ast.Name) and node.slice.id == "i"):
                    raise IRError(f"{where}: lane vector {node.value.id!r} indexed by other than the component i: "
                                  f"{text!r}")
                indexed.add(id(node.value))
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id in vectors and id(node) not in indexed and not whole:
                raise IRError(f"{where}: lane vector {node.id!r} read without its component [i]: {text!r}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("min", "max") \
                    and len(node.args) != 2:
                raise IRError(f"{where}: {node.func.id}() takes two arguments in the loop IR: {text!r}")
            if isinstance(node, ast.Name) and node.id not in scope:
                raise IRError(f"{where}: {node.id!r} is not defined here (in {text!r})")

    def lane_block(stmts, scope, temps, where):
        """Check lane statements; returns the temporaries assigned on every path through them."""
        temps = set(temps)
        for s in stmts:
            here = f"{where} > {type(s).__name__}"
            inner = scope | temps
            if isinstance(s, Let):
                reads(s.expr, inner, here)
                target = s.target.split("[")[0]
                if target in arguments or target in BUILTINS:
                    raise IRError(f"{here}: assigns {target!r}, a kernel argument or built-in")
                if "[" in s.target or target in vectors:
                    reads(s.target, inner, here)
                temps |= set() if target in lanes else {target}
            elif isinstance(s, Reduce):
                if s.op not in ("+", "and"):
                    raise IRError(f"{here}: Reduce op {s.op!r} (the IR has + and and)")
                reads(s.expr, inner | {"i"}, here)
                temps |= set() if s.target in lanes else {s.target}
            elif isinstance(s, If):
                reads(s.cond, inner, here)
                temps = lane_block(s.then, scope, temps, here) & lane_block(s.orelse, scope, temps, here)
            elif isinstance(s, While):
                reads(s.cond, inner, here)
                lane_block(s.body, scope, temps, here)         # may run no time: defines nothing after
            elif isinstance(s, Components):
                lane_block(s.body, scope | {"i"}, temps, here)
            elif isinstance(s, Store):
                for e in (*s.index, s.value):
                    reads(e, inner, here)
            elif isinstance(s, StoreRow):
                for e in (s.row, s.col, s.value):
                    reads(e, inner | {"i"}, here)
            elif isinstance(s, LaneCall):
                for e in s.args:
                    reads(e, inner | {"b"}, here, whole=True)
            else:
                raise IRError(f"{here}: not a lane statement")
        return temps

    def block(stmts, scope, where):
        scope = set(scope)
        for s in stmts:
            here = f"{where} > {type(s).__name__}"
            if isinstance(s, Set):
                reads(s.expr, scope, here)
                if s.name in known:
                    raise IRError(f"{here}: uniform {s.name!r} shadows a lane, argument, buffer or built-in")
                scope.add(s.name)
            elif isinstance(s, For):
                reads(s.count, scope, here)
                block(s.body, scope | {s.var}, here)
            elif isinstance(s, (WhileAny, IfAny)):
                reads(s.cond, scope, here)
                if not {n.id for n in ast.walk(ast.parse(s.cond, mode="eval")) if isinstance(n, ast.Name)} & lanes:
                    raise IRError(f"{here}: {s.cond!r} reads no lane value")
                block(s.body, scope, here)
            elif isinstance(s, IfUniform):
                reads(s.cond, scope, here)
                block(s.then, scope, here)
                block(s.orelse, scope, here)
            elif isinstance(s, Call):
                for e in s.args:
                    reads(e, scope, here, whole=True)
                scope |= {r.strip() for r in (s.result or "").split(",") if r.strip()}
            elif isinstance(s, Lanes):
                lane_block(s.body, scope | ({"i"} if s.rows else set()), set(), here)
            elif isinstance(s, (Rhs, Copy)):
                for name in ((s.state, s.target) if isinstance(s, Rhs) else (s.dst, s.src)):
                    if name not in lanes:
                        raise IRError(f"{here}: register {name!r} is not a lane vector")
                if isinstance(s, Rhs):
                    reads(s.t, scope, here)
            elif not isinstance(s, (Stages, Operators)):
                raise IRError(f"{here}: not a block statement")

    block(kernel.body, known, kernel.name)


def checked(kernel: LoopKernel) -> LoopKernel:
    """``kernel`` after :func:`check` (the drivers return only checked kernels)."""
    check(kernel)
    return kernel


# ---- the printers' line writer -----------------------------------------------------------------


class Writer:
    """Lines of generated source at an indentation level (``with w.block(header):`` indents)."""

    def __init__(self):
        self.lines = []
        self.level = 0

    def __call__(self, line=""):
        self.lines.append("    " * self.level + line if line else "")

    def block(self, line):
        self(line)
        return _Indent(self)


class _Indent:
    def __init__(self, w):
        self.w = w

    def __enter__(self):
        self.w.level += 1

    def __exit__(self, *a):
        self.w.level -= 1
