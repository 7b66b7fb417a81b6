"""Fields: semilinear PDEs u_t = L u + N(u, t) on grids, with L a structured operator (issue 19).

The state is an array ``u`` on a 1-D or 2-D grid; the nonlinearity is written once in terms of the
element symbol (``u - u**3``) and may apply operators to sub-expressions (a derivative of ``u**2``);
it is compiled to one vectorised function, so building a model costs the same for 10 or 10^6 unknowns.
The linear part is an operator, never a matrix of expressions: :func:`fourier` (periodic grids, diagonal
in Fourier space), :func:`laplacian` (second differences, periodic → Fourier, Dirichlet/Neumann → the
DST-I/DCT-I bases), :func:`diagonal`, or :func:`matrix`.  Example (Kuramoto–Sivashinsky, Kassam & Trefethen 2005)::

    u = sk.field("u", 128)
    L = sk.fourier(128, 32 * np.pi, lambda k: k**2 - k**4)      # u_t = -u_xx - u_xxxx ...
    Dx = sk.fourier(128, 32 * np.pi, lambda k: 1j * k)
    model = sk.FieldODE(u, linear=L, nonlinear=-Dx(u**2) / 2)    # ... - (u^2)_x / 2
    sol = sk.solve(sk.FieldProblem(model, u0, (0, 150)), "ETDRK4", dt=0.25, saveat=np.arange(0, 151))

Every ODE method of the catalogue runs on fields (exponential Rosenbrock with the Jacobian of
:meth:`FieldODE.jacobian`, in CSR where L and the operators in N are sparse, up to ``JACOBIAN_MAX`` unknowns), with
fixed or adaptive steps:
the same loop IR every backend prints (``codegen.drivers``: time loop, error norm, controller, dense output,
retcodes), printed by numpy's printer for one lane whose state is the grid (``codegen.emit_field``), the
model's part done by ``kernels.field_runtime.FieldLanes``; φ-functions are evaluated once per step size.
Fixed and adaptive steps run the same loop IR compiled (``codegen.emit_field.emit_field_numba``: Numba, N a loop over the
grid, sums in L's eigenbasis) wherever every operator has a fast eigenbasis; ``backend="numpy"`` keeps the driver.
"""
from __future__ import annotations

import copy
import hashlib
import inspect as _inspect
import itertools
import pickle
import types

import numpy as np
import sympy as sp

from .codegen.analysis import Param, t as _t
from .abi import STATS
from sympy.printing.numpy import NumPyPrinter

from .codegen.builders import build_scheme
from .codegen.emit_field import Basis, emit_field, emit_field_numba, forcing_runs
from .codegen.emit_numpy import ProductPowers
from .codegen.lowering import ExactFloats, lambdify_exact
from .codegen.errors import ModelError
from .codegen.methods import get_method
from .kernels import operators as _ops
from .kernels.cache import load_module
from .kernels.field_runtime import MEMO_SIZES, FieldLanes, action_tolerance, mirrored_halves
from .problem import _tspan, keyed_by_name
from .solution import Solution

__all__ = ["field", "fourier", "laplacian", "diagonal", "matrix", "FieldODE", "FieldProblem", "solve_field"]

_names = itertools.count()


def _content(x):
    """A picklable stand-in for an operator's defining data: public attributes (caches are ``_``-prefixed), arrays as
    (dtype, shape, bytes), sparse matrices by their CSR arrays, recursively."""
    from scipy import sparse
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.shape, np.ascontiguousarray(x).tobytes())
    if sparse.issparse(x):
        x = sparse.csr_matrix(x)
        return ("csr", x.shape, _content(x.data), _content(x.indices), _content(x.indptr))
    if isinstance(x, (list, tuple)):
        return tuple(_content(v) for v in x)
    if isinstance(x, dict):
        return tuple((k, _content(v)) for k, v in sorted(x.items()) if not str(k).startswith("_"))
    if hasattr(x, "__dict__"):
        return (type(x).__name__, _content(vars(x)))
    return x


def _operator_name(*content) -> str:
    """An operator's name: a digest of its content, so an operator gets the same name in every process (its generated
    code and cache key do not change between runs) and a model unpickled elsewhere finds its operators; operators
    equal in content share it.  A process-local ``op<k>`` where the content is not picklable."""
    try:
        return "op_" + hashlib.sha1(pickle.dumps(_content(content), protocol=4)).hexdigest()[:10]
    except Exception:            # noqa: BLE001 - a runtime holding something pickle cannot take
        return f"op{next(_names)}"


def _shape(shape) -> tuple:
    shape = (shape,) if np.ndim(shape) == 0 else tuple(shape)
    if not 1 <= len(shape) <= 3 or not all(isinstance(n, (int, np.integer)) and n >= 1 for n in shape):
        raise ModelError(f"a field's shape must be 1 to 3 positive ints, got {shape!r}")
    return tuple(int(n) for n in shape)


class Field(sp.Symbol):
    """The element symbol of an array state; ``.grid`` is the array's shape, ``.complex`` whether it is complex.
    Not sympy's cached symbol: the grid is part of its identity, so ``field("u", 8)`` and ``field("u", 16)``
    are different fields."""

    def __new__(cls, name: str, grid: tuple, complex: bool = False):
        obj = sp.Symbol.__xnew__(cls, name, **({"complex": True} if complex else {"real": True}))
        obj.grid, obj.complex = tuple(grid), bool(complex)
        return obj

    def _hashable_content(self):
        return super()._hashable_content() + (self.grid,)

    def __getnewargs_ex__(self):
        return (self.name, self.grid, self.complex), {}


def field(name: str, shape, complex: bool = False) -> Field:
    """An array state ``name`` of ``shape`` (an int, or a tuple for 2-D / 3-D grids): a sympy symbol
    standing for every element, in which the nonlinearity is written.  ``complex=True``: a complex field
    (Schrödinger, Ginzburg–Landau, diagonal state spaces); its nonlinearity may use ``sp.re``, ``sp.im``,
    ``sp.conjugate`` and ``abs``, it is integrated as its real pair (Re, Im) and ``sol.y`` is complex."""
    if not str(name).isidentifier():
        raise ModelError(f"field: name must be an identifier, got {name!r}")
    return Field(str(name), _shape(shape), complex)


class Operator:
    """A linear operator on a grid.  ``runtime``: the ``kernels.operators`` object acting on real fields (None
    for a complex-only operator, a complex diagonal); ``complexified``: the one acting on complex fields (their
    real pairs, ``kernels.operators.Complexified``; None: a real operator acts on Re and Im apart).  Calling it
    on an expression applies it inside a nonlinearity; ``c * op``, ``op + op`` and ``-op`` give new operators."""

    def __init__(self, runtime, description: str, complexified=None, why_not_real: str | None = None,
                 lengths: tuple | None = None):
        self.runtime, self.description, self.complexified = runtime, description, complexified
        self.why_not_real, self.lengths = why_not_real, lengths      # lengths: a periodic box (sk.fourier)
        self.grid = tuple(runtime.shape if runtime is not None else complexified.grid)
        self.name = _operator_name(runtime, complexified, description, lengths)
        self.function = sp.Function(self.name, real=True)   # a real operator of a real argument (complex: Re, Im apart)
        self.function.operator = self           # an application op(expr) leads back to it

    def __setstate__(self, state):
        """Unpickled: the function pickles as sympy rebuilds it (its name and assumptions: the class an unpickled
        application op(expr) has too), which leads back to this operator again."""
        self.__dict__.update(state)
        self.function.operator = self

    @property
    def shape(self) -> tuple:
        return self.grid

    def __call__(self, expr):
        return self.function(sp.sympify(expr))

    def __repr__(self):
        return f"Operator({self.description}, shape={self.shape})"

    def on_real(self):
        """The runtime operator on a real field (a ModelError for a complex-only one)."""
        if self.runtime is None and self.why_not_real:
            raise ModelError(self.why_not_real)
        if self.runtime is None:
            raise ModelError(f"{self!r} has complex values: it acts on complex fields (sk.field(name, shape, "
                             "complex=True)); on a real field a complex spectrum is sk.fourier with a complex symbol")
        return self.runtime

    def on_complex(self):
        """The runtime operator on a complex field's real pair (2, *grid)."""
        if self.complexified is not None:
            return self.complexified
        return _ops.Species([self.runtime, self.runtime])      # real: Re z and Im z apart

    def __mul__(self, c):
        if not _number_coefficient(c, self):
            return NotImplemented
        c = complex(c)
        c = c if c.imag else c.real
        if c == 1:
            return self
        r, z = self.runtime, self.complexified
        if self.lengths is not None:          # Fourier: real where c times the symbol is still a real operator's
            return _fourier_operator(z.scaled(c * z.eigenvalues), self.lengths, self.description)
        if r is not None and not np.iscomplexobj(c):
            r = _scaled(r, c)
        elif r is not None:
            if z is None:
                raise ModelError(f"{self!r} times {c}: a complex multiple of this operator is not diagonal in a "
                                 "known basis (complex fields take complex multiples of diagonal, Fourier and "
                                 "Laplacian operators)")
            r = None                          # a complex multiple of a real operator: complex fields only
        return Operator(r, self.description, None if z is None else z.scaled(c * z.eigenvalues))

    __rmul__ = __mul__

    def __truediv__(self, c):
        if not _number_coefficient(c, self):
            return NotImplemented
        return self * (1 / complex(c))

    def __neg__(self):
        return self * -1.0

    def __add__(self, other):
        if not isinstance(other, Operator) or other.grid != self.grid:
            raise ModelError(f"operators can be added when they are of one kind on one grid: {self!r} + {other!r}")
        if self.lengths is not None and self.lengths == other.lengths:
            return _fourier_operator(_added(self.complexified, other.complexified), self.lengths, "sum")
        r = _added(self.runtime, other.runtime) if self.runtime is not None and other.runtime is not None else None
        z = (_added(self.complexified, other.complexified)
             if self.complexified is not None and other.complexified is not None else None)
        if r is None and z is None:
            raise ModelError(f"operators can be added when they are of one kind on one grid: {self!r} + {other!r}")
        return Operator(r, "sum", z)

    def __sub__(self, other):
        return self + (-other)


def _number_coefficient(c, op) -> bool:
    """Whether ``c`` is a number an operator takes as coefficient; a sympy symbol or param is a ModelError with a
    message (not Python's TypeError), anything else False (NotImplemented)."""
    number = np.isscalar(c) and not isinstance(c, sp.Basic) or isinstance(c, sp.Expr) and c.is_number
    if isinstance(c, sp.Basic) and not number:
        raise ModelError(f"{c} times {op!r}: a linear operator takes numbers as coefficients, not symbols or params "
                         "(params inside a field's linear part are not supported yet); write the term in the "
                         f"nonlinearity instead, e.g. nonlinear={c} * op(u)")
    return bool(number)


def _scaled(r, c):
    """The runtime operator ``r`` times the number ``c``."""
    if isinstance(r, _ops.Diagonalised):
        return r.scaled(c * r.eigenvalues)
    if isinstance(r, _ops.Diagonal):
        return _ops.Diagonal(c * r.eigenvalues)
    return _ops.Matrix(r.shape, c * r.matrix)


def _added(a, b):
    """The sum of two runtime operators of one kind on one grid (in one basis), or None."""
    if type(a) is not type(b) or a.shape != b.shape:
        return None
    if isinstance(a, _ops.Diagonalised):
        return a.scaled(a.eigenvalues + b.eigenvalues) if a.basis == b.basis else None
    if isinstance(a, _ops.Diagonal):
        return _ops.Diagonal(a.eigenvalues + b.eigenvalues)
    return _ops.Matrix(a.shape, a.matrix + b.matrix)


def fourier(shape, lengths, symbol) -> Operator:
    """The operator of a periodic grid ``shape`` on the box ``lengths`` (one per axis) that multiplies
    the Fourier mode k by ``symbol(k_1, ..., k_m)`` (numpy arrays of wavenumbers, 2π/ℓ · integers):
    ``lambda k: -k**2`` is ∂², ``lambda k: 1j * k`` is ∂ (inside a nonlinearity)."""
    shape = _shape(shape)
    lengths = (lengths,) * len(shape) if np.ndim(lengths) == 0 else tuple(lengths)
    if len(lengths) != len(shape) or not all(np.isfinite(x) and x > 0 for x in lengths):
        raise ModelError(f"fourier: give one positive box length per axis of {shape}, got {lengths!r}")
    full = _symbol_values(_nyquist_averaged(symbol, shape, lengths), _ops.Fourier.wavenumbers(shape, lengths, False))
    return _fourier_operator(_ops.Complexified(shape, full, "fourier"), lengths, "fourier")


def _fourier_operator(z, lengths, description: str) -> Operator:
    """The periodic operator whose full-FFT eigenvalues are ``z``'s (a complex field's operator, any symbol); on
    real fields (rfft: half the modes) only a real operator's, symbol(−k) = conj(symbol(k)) — any other symbol
    would be made conjugate-symmetric by irfft without a word (the NLS operator −i k²/2 is not real)."""
    lam = z.eigenvalues
    axes = tuple(range(lam.ndim))
    at_minus_k = np.roll(np.flip(lam, axes), 1, axes)           # λ(−k): index i -> (n − i) mod n per axis
    if not np.allclose(at_minus_k, np.conj(lam), rtol=0, atol=1e-12 * max(np.abs(lam).max(), 1e-300)):
        why = (f"{description}: symbol(-k) != conj(symbol(k)) (e.g. symbol(0) = {lam.flat[0]}): not a real "
               "operator, so it acts only as the linear part of complex fields (sk.field(name, shape, complex=True), "
               "linear=...)")
        return Operator(None, description, z, why_not_real=why, lengths=lengths)
    half = lam[..., : lam.shape[-1] // 2 + 1]                   # the rfftn layout (Nyquist: ±k averaged, equal)
    half = half.copy() if np.any(half.imag) else half.real.copy()
    return Operator(_ops.Fourier(z.grid, lengths, half), description, z, lengths=lengths)


def _symbol_values(symbol, ks):
    """``symbol`` at the wavenumber grids ``ks``, broadcast to the modes' shape and checked finite."""
    lam = np.asarray(symbol(*ks))
    full = np.broadcast_shapes(*(k.shape for k in ks))
    try:
        lam = np.broadcast_to(lam, full).copy()
    except ValueError:
        raise ModelError(f"fourier: symbol(k) must broadcast to the modes' shape {full}, got {lam.shape}") from None
    if not np.all(np.isfinite(lam)):
        raise ModelError("fourier: symbol(k) is not finite at every wavenumber")
    return lam


def _nyquist_averaged(symbol, shape, lengths):
    """``symbol`` averaged over ±k_a wherever k_a is the Nyquist wavenumber of an even axis a: the grid cannot tell
    the two apart, so a real operator's symbol there is the mean — i k_a gives 0 at the Nyquist k_a (as a real
    field needs) and i k_b keeps its value on that plane; symbols even in k_a are unchanged."""
    f = symbol
    for a, (n, ell) in enumerate(zip(shape, lengths)):
        if n % 2:
            continue
        nyquist = np.pi * n / ell

        def f(*k, f=f, a=a, nyquist=nyquist):
            flipped = [np.where(np.isclose(np.abs(x), nyquist), -x, x) if b == a else x for b, x in enumerate(k)]
            return (np.asarray(f(*k)) + np.asarray(f(*flipped))) / 2
    return f


def laplacian(shape, spacing, bc: str = "periodic") -> Operator:
    """The second-difference Laplacian (3-point stencil per axis) on a grid of ``shape`` with ``spacing``
    (one per axis, or one for all).  ``bc``: "periodic" (diagonal in Fourier space: eigenvalues
    (2 cos(k Δx) − 2)/Δx²), "dirichlet" (zero values outside the grid — boundary values enter N as a
    source term; diagonal in the DST-I basis), "neumann" (zero normal derivative, ghost points mirrored;
    diagonal in the DCT-I basis).  Each is applied and its φ-functions evaluated in O(n log n)."""
    shape = _shape(shape)
    dx = (spacing,) * len(shape) if np.ndim(spacing) == 0 else tuple(spacing)
    if len(dx) != len(shape) or not all(np.isfinite(x) and x > 0 for x in dx):
        raise ModelError(f"laplacian: give one positive spacing per axis of {shape}, got {spacing!r}")
    if bc == "periodic":
        lengths = tuple(n * h for n, h in zip(shape, dx))
        return fourier(shape, lengths, lambda *ks: sum((2 * np.cos(k * h) - 2) / h**2 for k, h in zip(ks, dx)))
    kind = {"dirichlet": "dst", "neumann": "dct"}.get(bc)
    if kind is None:
        raise ModelError(f"laplacian: bc must be 'periodic', 'dirichlet' or 'neumann', got {bc!r}")
    if kind == "dct" and min(shape) < 2:
        raise ModelError(f"laplacian: Neumann boundaries need at least 2 points per axis, got {shape}")
    thetas = _ops.Trigonometric.angles(shape, kind)
    lam = sum((2 * np.cos(th) - 2) / h**2 for th, h in zip(thetas, dx))
    lam = np.broadcast_to(lam, shape).copy()
    base = _ops.Trigonometric(shape, kind, lam)
    return Operator(base, f"laplacian {bc}", _ops.Complexified(shape, lam, base))


def diagonal(values) -> Operator:
    """L = diag(values) on a grid of ``values``' shape: real values act on real and complex fields, complex ones
    (the diagonal state spaces of S4D, Gu et al. 2022) on complex fields (``sk.field(name, shape, complex=True)``)."""
    values = np.asarray(values)
    if values.dtype.kind not in "biufc" or not np.all(np.isfinite(values)):
        raise ModelError(f"diagonal: the values must be finite numbers, got {values!r}")
    complexified = _ops.Complexified(values.shape, values)
    if np.iscomplexobj(values) and np.any(values.imag):
        return Operator(None, "complex diagonal", complexified)
    return Operator(_ops.Diagonal(np.real(values).astype(float)), "diagonal", complexified)


def matrix(shape, A) -> Operator:
    """L given as a (sparse or dense) matrix on the flattened grid ``shape`` (row-major)."""
    from scipy import sparse
    shape = _shape(shape)
    size = int(np.prod(shape))
    if not sparse.issparse(A):
        try:
            A = np.asarray(A)                  # nested lists, numpy matrices
        except (TypeError, ValueError):
            raise ModelError(f"matrix: A must be a numpy array or a scipy.sparse matrix, got {type(A).__name__}") from None
    if A.shape != (size, size):
        raise ModelError(f"matrix: A must be ({size}, {size}) for a grid {shape}, got shape {A.shape}")
    values = A.data if sparse.issparse(A) else A
    if np.iscomplexobj(values):
        raise ModelError("matrix: A must be real (complex matrices are not supported; a complex field's complex "
                         "linear part is sk.diagonal, or a complex multiple of sk.laplacian / sk.fourier)")
    if not np.issubdtype(values.dtype, np.number) or not np.all(np.isfinite(values)):
        raise ModelError("matrix: A must have finite numbers as entries")
    return Operator(_ops.Matrix(shape, A if sparse.issparse(A) else A.astype(float)), "matrix")


class _FieldPrinter(ExactFloats, ProductPowers, NumPyPrinter):
    """N on the grid: numpy, floats to the last bit and small powers as products (``codegen.emit_numpy``)."""


class _ArrayModel:
    """What the array-level drivers need of a model: ``shape`` (the state's), ``rhs(u, t)`` (N on the whole
    array), ``operator`` (L: ``kernels.operators``), and the generated modules it keeps (:meth:`compiled`)."""

    complex = False

    def user_value(self, y):
        """States as the user sees them (complex fields: their real pairs joined)."""
        return y

    def compiled(self, method: str, adaptive: bool):
        """(scheme, generated module, memo of the operators' values per step size) of ``method``, kept across
        solves: the module is cached on disk by its source's hash (``kernels.cache``)."""
        key = (method, adaptive)
        if key not in self._compiled:
            source = emit_field(field_scheme(self, method), int(np.prod(self.shape)), adaptive)
            self._compiled[key] = field_scheme(self, method), load_module(source, "field"), {}
        return self._compiled[key]

    def numba_bases(self):
        """(L's :class:`Basis`, {N's operator function: Basis}) for the compiled field kernel, or None: an
        operator without an eigenbasis (a non-normal matrix, species in different bases), or FFTs without rocket-fft."""
        return None

    def compiled_numba(self, method: str, adaptive: bool = False):
        """The compiled kernel's module for ``method`` (generated once per model, method and step control; its
        source and Numba's machine code cached on disk by the source's hash)."""
        key = (method, "numba-adaptive" if adaptive else "numba")
        if key not in self._compiled:
            self._compiled[key] = load_module(field_source(self, method, adaptive, backend="numba"), "field")
        return self._compiled[key]


class FieldODE(_ArrayModel):
    """u_t = L u + N(u, t): ``u`` a :func:`field`, ``linear`` an :class:`Operator` on its grid (or None),
    ``nonlinear`` a sympy expression in ``u``, ``sdekit.t``, operator applications ``op(expr)`` and the
    symbols of ``data`` ({symbol: array of the grid's shape}: coordinates, coefficients, boundary sources).

    Several species on one grid (reaction–diffusion systems): ``u`` a list of fields, ``linear`` and
    ``nonlinear`` lists of the same length (one operator or None, one expression per species); the state
    is then an array (species, *grid)."""

    stochastic = False

    def __init__(self, u, linear=None, nonlinear=0, data=None):
        self._arguments = (u, linear, nonlinear, data)      # what a pickle rebuilds it from (__reduce__)
        several = isinstance(u, (list, tuple))
        fields = list(u) if several else [u]
        linears = list(linear) if several and isinstance(linear, (list, tuple)) else [linear] * len(fields)
        nonlinears = list(nonlinear) if several and isinstance(nonlinear, (list, tuple)) else [nonlinear]
        if not fields or not all(isinstance(f, Field) for f in fields):
            raise ModelError("FieldODE: u must be a field (sdekit.field('u', shape)) or a list of fields")
        if len({f.grid for f in fields}) != 1 or len(set(fields)) != len(fields):
            raise ModelError(f"FieldODE: the species must be distinct fields on one grid, got {[(str(f), f.grid) for f in fields]}")
        self.complex = fields[0].complex
        if any(f.complex != self.complex for f in fields):
            raise ModelError("FieldODE: the species must be all real or all complex fields")
        if len(linears) != len(fields) or len(nonlinears) != len(fields):
            raise ModelError(f"FieldODE: give one linear operator (or None) and one nonlinearity per species ({len(fields)})")
        grid = fields[0].grid
        for op in linears:
            if op is not None and not isinstance(op, Operator):
                raise ModelError(f"FieldODE: linear must be an operator (sdekit.fourier, laplacian, ...), got {type(op).__name__}")
            if op is not None and op.shape != grid:
                raise ModelError(f"FieldODE: the linear operator acts on {op.shape}, the field is {grid}")
        self.user_fields, self.linear = fields, linear
        if self.complex:          # integrated as the real pairs: the species (z_re, z_im) per complex field
            fields, nonlinears, data = _real_pairs(fields, nonlinears, data or {})
            several = True
        self.fields, self.grid, self.several = fields, grid, several
        self.u = fields[0]
        self.nonlinear = [sp.sympify(e) for e in nonlinears]
        self.operators = {}
        for e in self.nonlinear:
            for app in e.atoms(sp.core.function.AppliedUndef):
                op = _find_operator(app)
                self.operators[op.name] = op
        self.data = {}
        for sym, values in (data or {}).items():
            if not isinstance(sym, sp.Symbol):
                raise ModelError(f"FieldODE: data keys must be sympy symbols, got {sym!r}")
            values = np.asarray(values)
            if np.iscomplexobj(values) and np.any(values.imag):
                raise ModelError(f"FieldODE: data {sym} is complex but the fields are real: declare them "
                                 "sk.field(name, shape, complex=True)")
            values = np.asarray(values.real if np.iscomplexobj(values) else values, dtype=float)
            if values.shape != grid and values.ndim != 0:
                raise ModelError(f"FieldODE: data {sym} must be a number or of the grid's shape {grid}, got {values.shape}")
            if not np.all(np.isfinite(values)):
                raise ValueError(f"FieldODE: data {sym} contains NaN or Inf")
            self.data[sym] = values
        names = [str(x) for x in [*fields, _t, *self.data]]
        if len(set(names)) != len(names):
            raise ModelError(f"FieldODE: the fields, sdekit.t and the data symbols need distinct names, got {names}")
        if not self.complex and any(e.has(sp.I) and _lower_applications(e).as_real_imag()[1] != 0
                                    for e in self.nonlinear):
            raise ModelError("FieldODE: the nonlinearity is complex but the fields are real: declare them "
                             "sk.field(name, shape, complex=True)")
        free = set().union(*(e.free_symbols for e in self.nonlinear))
        self.params = tuple(sorted((x for x in free if isinstance(x, Param)), key=lambda x: x.name))
        stray = free - {*fields, _t, *self.data, *self.params}
        if stray:
            raise ModelError(f"FieldODE: the nonlinearity reads {sorted(map(str, stray))}, which are not the fields "
                             f"{[str(f) for f in fields]}, sdekit.t, sdekit.params or given as data=")
        for op in self.operators.values():
            op.on_real()                      # operators inside N are real (a complex coefficient is data)
            if op.shape != grid:
                raise ModelError(f"FieldODE: operator {op!r} does not act on the field's grid {grid}")
        self._N = self._grid_function(self.nonlinear)
        self._data = tuple(self.data.values())
        S = len(self.user_fields)
        self.shape = (len(fields),) + grid if several else grid
        if self.complex:                  # as the operators act: (species, (Re, Im), *grid)
            self.shape = ((S, 2) if S > 1 else (2,)) + grid
        self.user_shape = ((S,) if S > 1 else ()) + grid
        if self.complex:
            zero = _ops.Complexified(grid, np.zeros(grid))
            runtimes = [zero if op is None else op.on_complex() for op in linears]
        else:
            zero = _ops.Diagonal(np.zeros(grid))
            runtimes = [zero if op is None else op.on_real() for op in linears]
        self.operator = _ops.Species(runtimes) if S > 1 else runtimes[0]
        self._compiled = {}    # (method, adaptive) -> (scheme, module, {step-size class: operator values})
        self._operator_tables = {}     # method -> {step classes: the compiled kernel's operator table}

    def __reduce__(self):
        """Pickled as its constructor's arguments (fields, operators, expressions, data) and the operators N applies:
        the lambdified N and the compiled kernels are made again where it is loaded.  An application op(u) pickles
        as sympy's function of the operator's name (a digest of its content), which the unpickled operator takes
        back before the model is rebuilt (:func:`_rebuilt`)."""
        return (_rebuilt, (self._arguments, tuple(self.operators.values())))

    def jacobian(self, u, t, *params):
        """(∂N/∂u (D × D), ∂N/∂t (D,)) at the array ``u`` and time ``t``, N's linearisation by sympy through
        operator applications: an application op(a) enters as op · (the linearisation of a), so N = u · Dx(u)
        gives diag(Dx u) + diag(u) Dx (:meth:`_linearisation`).  ∂N/∂u in COO (duplicates to be summed) where
        every operator in N is sparse (``kernels.operators.sparse_matrix``: a pointwise N is diagonal), else dense."""
        from scipy import sparse
        if "_linear_parts" not in self.__dict__:
            self.__dict__["_linear_parts"] = [self._linearisation(e) for e in self.nonlinear]
            self.__dict__["_sparse_jacobian"] = all(_ops.sparse_matrix(op.on_real()) is not None
                                                    for op in self.operators.values())
        args = (*self._species(u), t, *self._data, *params)
        G, D = int(np.prod(self.grid)), int(np.prod(self.shape))
        sparse_jacobian = self.__dict__["_sparse_jacobian"]
        rows = [_evaluate_linearisation(part, args, G, D, sparse_jacobian) for part in self.__dict__["_linear_parts"]]
        b = np.concatenate([b for _, b in rows])
        if not sparse_jacobian:
            return np.concatenate([J for J, _ in rows]), b
        J = sparse.coo_matrix((np.concatenate([J.data for J, _ in rows]),
                               (np.concatenate([J.row + s * G for s, (J, _) in enumerate(rows)]),
                                np.concatenate([J.col for J, _ in rows]))), shape=(D, D))
        return J, b

    def _linearisation(self, expr):
        """(∂e/∂u_r per species r, ∂e/∂t, [(∂e/∂op(a), op, linearisation of a)]) of one species' expression
        ``e``, each coefficient a function of the fields (``_grid_function``): the outermost operator
        applications stand for symbols while sympy differentiates, then are put back."""
        apps = list(expr.atoms(sp.core.function.AppliedUndef))
        outer = [a for a in apps if not any(a != b and a in b.args[0].atoms(sp.core.function.AppliedUndef) for b in apps)]
        stand = {a: sp.Dummy(f"A{k}") for k, a in enumerate(outer)}
        back = {v: k for k, v in stand.items()}
        F = expr.xreplace(stand)
        direct = [self._grid_function(_derivative(F, f).xreplace(back)) for f in self.fields]
        through = [(self._grid_function(_derivative(F, stand[a]).xreplace(back)), _find_operator(a).on_real(),
                    self._linearisation(a.args[0])) for a in outer]
        return direct, self._grid_function(_derivative(F, _t).xreplace(back)), through

    def _grid_function(self, expr):
        """``expr`` (of the fields, t, data, params and operator applications) as a function of N's arguments."""
        modules = [self._applications(), "numpy"]
        return sp.lambdify((*self.fields, _t, *self.data, *self.params), expr, modules=modules, docstring_limit=0,
                           printer=_FieldPrinter({"fully_qualified_modules": False, "inline": True,
                                                  "allow_unknown_functions": True}))

    def numba_bases(self):
        if "_numba_bases" not in self.__dict__:
            bases = [_basis(self.operator)] + [_basis(op.on_real(), True) for op in self.operators.values()]
            self.__dict__["_numba_bases"] = None if None in bases else (
                bases[0], {op.function: b for op, b in zip(self.operators.values(), bases[1:])})
        return self.__dict__["_numba_bases"]

    def numba_arguments(self, params) -> tuple:
        """The compiled kernel's model arguments after ``opvals`` (``emit_field.field_numba_arguments``)."""
        out = list(_kernel_arrays(self.operator))
        for op in self.operators.values():
            out += _kernel_arrays(op.on_real(), True)
        out += [np.ascontiguousarray(np.broadcast_to(v, self.grid), dtype=float).ravel() for v in self.data.values()]
        return tuple(out) + tuple(float(v) for v in params)

    def _applications(self) -> dict:
        """N's operator functions for lambdify: each applies its operator to its argument broadcast to the grid
        (an argument without the field, sin(t) or a param, is a number)."""
        return {name: (lambda v, op=op.on_real(): op.apply(np.broadcast_to(v, op.shape)))
                for name, op in self.operators.items()}

    def _species(self, u):
        """The state's arrays per (real) species: a complex field's real pair are two."""
        return np.reshape(u, (len(self.fields),) + self.grid) if self.several else [u]

    def state(self, z) -> np.ndarray:
        """The user's field(s) ``z`` (``user_shape``; complex for complex fields) as the integrated real state."""
        z = np.asarray(z)
        if not self.complex:
            return np.asarray(z, dtype=float)
        return np.stack([z.real, z.imag], axis=-len(self.grid) - 1).astype(float).reshape(self.shape)

    def user_value(self, y) -> np.ndarray:
        """States (..., *shape) as the user's fields (..., *user_shape): complex pairs joined."""
        if not self.complex:
            return y
        lead = y.shape[:y.ndim - len(self.shape)]
        pairs = np.reshape(y, lead + (-1, 2) + self.grid)          # (..., species, (Re, Im), *grid)
        axis = -len(self.grid) - 1
        return (np.take(pairs, 0, axis=axis) + 1j * np.take(pairs, 1, axis=axis)).reshape(lead + self.user_shape)

    def rhs(self, u, t, *params):
        """N(u, t) on the whole array (each species' broadcast to the grid's shape), with the values of
        ``self.params`` in that order."""
        parts = self._N(*self._species(u), t, *self._data, *params)
        if not self.several:                              # one species: its array, without a stack
            part = np.asarray(parts[0], dtype=float)
            return part if part.shape == self.grid else np.broadcast_to(part, self.grid).copy()
        return np.stack([np.broadcast_to(np.asarray(p, dtype=float), self.grid) for p in parts]).reshape(self.shape)

    def source(self) -> str:
        """The generated source of N (``sdekit.inspect`` prints it)."""
        names = ", ".join(f"{name} = {op!r}" for name, op in self.operators.items())
        return _inspect.getsource(self._N) + (f"# operators: {names}\n" if names else "")

    def __repr__(self):
        return f"FieldODE({[str(f) for f in self.fields]} on {list(self.grid)}, N={self.nonlinear})"


def _real_pairs(fields, nonlinears, data):
    """A complex model as a real one: each complex field z as the real fields (z_re, z_im), each species' N as
    (Re N, Im N), a complex data array d as (d_re, d_im); an operator application op(e) becomes op(Re e) +
    i op(Im e) (operators inside N are real: :func:`_lower_applications`)."""
    subs, real_fields, real_data = {}, [], {}
    for f in fields:
        re, im = Field(f"{f.name}_re", f.grid), Field(f"{f.name}_im", f.grid)
        subs[f] = re + sp.I * im
        real_fields += [re, im]
    for sym, values in data.items():
        if not isinstance(sym, sp.Symbol):
            raise ModelError(f"FieldODE: data keys must be sympy symbols, got {sym!r}")
        values = np.asarray(values)
        if np.iscomplexobj(values) and np.any(values.imag):
            dr, di = sp.Symbol(f"{sym.name}_re", real=True), sp.Symbol(f"{sym.name}_im", real=True)
            parts = {dr: values.real, di: values.imag}
            subs[sym] = dr + sp.I * di
        else:
            r = sp.Symbol(sym.name, real=True)
            parts = {r: np.real(values)}
            subs[sym] = r
        for name in parts:
            if name in real_data or any(name.name == f.name for f in real_fields):
                raise ModelError(f"FieldODE: the fields and the data symbols need distinct names once complex ones "
                                 f"are split into _re and _im parts: {name} is given twice")
        real_data.update(parts)
    parts = []
    for e in nonlinears:
        parts += list(_lower_applications(sp.sympify(e).xreplace(subs)).as_real_imag())
    return real_fields, parts, real_data


def _lower_applications(expr):
    """``expr`` with each operator application op(e) as op(Re e) + i op(Im e), innermost first: an operator
    inside N is real (a complex coefficient of the field is data, or its linear part)."""
    if isinstance(expr, sp.core.function.AppliedUndef):
        op = _find_operator(expr)
        if op.runtime is None:            # complex-only: on a complex field its real/imaginary split fails too
            raise ModelError(f"FieldODE: {op!r} inside the nonlinearity is not a real operator (symbol(−k) != "
                             "conj(symbol(k))); an operator in N acts on the real and imaginary parts alike, "
                             "op(Re z) + i op(Im z), on complex fields too: write its imaginary part as a "
                             "coefficient (sp.I * a real operator), or put it in linear= (complex fields)")
        re, im = _lower_applications(expr.args[0]).as_real_imag()
        return expr.func(re) + sp.I * expr.func(im) if im != 0 else expr.func(re)
    if not expr.args:
        return expr
    return expr.func(*[_lower_applications(a) for a in expr.args])


def _derivative(expr, x):
    """∂expr/∂x for the Jacobian: DiracDelta (of sign, Heaviside) is 0 — the derivative almost everywhere, as
    for |u|'s sign(u); a derivative sympy leaves unevaluated (of an unknown function) is a ModelError."""
    d = expr.diff(x).replace(sp.DiracDelta, lambda *args: sp.S.Zero)
    if d.has(sp.Derivative, sp.Subs):
        raise ModelError(f"exponential Rosenbrock methods need N's derivative, and sympy cannot form ∂/∂{x} of {expr}; "
                         "use a method without the Jacobian (ETDRK4, Krogstad, ROS34PW2, ...)")
    return d


def _evaluate_linearisation(part, args, G: int, D: int, sparse_jacobian: bool):
    """(M (G × D), b (G,)): one species' ∂N/∂u and ∂N/∂t at ``args`` from :meth:`FieldODE._linearisation`.
    ``sparse_jacobian``: the operators in N as ``kernels.operators.sparse_matrix`` and M in COO (its entries where
    the operators' and the derivatives' are, zeros kept); else as ``dense_matrix`` and M dense."""
    from scipy import sparse
    direct, dt, through = part
    matrix_of = _ops.sparse_matrix if sparse_jacobian else _ops.dense_matrix

    def grid_values(f):       # real: every symbol is real (a complex field is its real pair), so an imaginary part
        return np.broadcast_to(np.real(f(*args)), args[0].shape).astype(float).ravel()   # is rounding (z² conj(z)³)
    diagonals = [grid_values(f) for f in direct]                # species r's derivative: the block (·, r G + i)
    M = sparse.coo_matrix((np.concatenate(diagonals), (np.tile(np.arange(G), len(direct)), np.arange(len(direct) * G))),
                          shape=(G, D))
    M = M if sparse_jacobian else M.toarray()
    b = grid_values(dt)
    for coef, op, inner in through:
        c = grid_values(coef)
        Mi, bi = _evaluate_linearisation(inner, args, G, D, sparse_jacobian)
        M = _rows_scaled_added(M, c, matrix_of(op) @ Mi)
        b += c * op.apply(bi.reshape(op.shape)).ravel()
    return M, b


def _rows_scaled_added(M, c, A):
    """M + diag(c) A: dense, or COO for a sparse A (its entries appended, zeros kept: the pattern stays the same)."""
    from scipy import sparse
    if not sparse.issparse(A):
        return M + c[:, None] * A
    A = A.tocoo()
    return sparse.coo_matrix((np.concatenate([M.data, c[A.row] * A.data]), (np.concatenate([M.row, A.row]),
                                                                              np.concatenate([M.col, A.col]))),
                             shape=M.shape)


def _basis(op, applied: bool = False):
    """A runtime operator's :class:`Basis` for the compiled kernel, or None (no eigenbasis, or an FFT without
    rocket-fft, which gives Numba ``numpy.fft``/``scipy.fft``).  ``applied``: an operator N applies, which needs
    no basis: a matrix is applied by its product ("matrix")."""
    import importlib.util
    if applied and isinstance(op, _ops.Matrix):
        kind = _applied_matrix(op)[0]
        return None if kind is None else Basis(kind, op.shape)
    e = op.eigenbasis()
    if e is None:
        return None
    b = Basis(e.kind, tuple(e.grid), e.species, _folded(op) is not None)
    fft = b.kind.lstrip("c") in ("fourier", "dst", "dct") and not b.matrix
    return None if fft and importlib.util.find_spec("rocket_fft") is None else b


def _kernel_arrays(op, applied: bool = False) -> tuple:
    """(eigenvalues, F, Bm): what the compiled kernel's transforms of ``op`` (:func:`_basis`) read — the folded
    halves of a small type-I transform's matrices, a matrix's eigenvector products (V⁻¹, V), an applied matrix
    itself, else empty."""
    if applied and isinstance(op, _ops.Matrix):
        return _applied_matrix(op)[1]
    e = op.eigenbasis()
    if e.kind.startswith("eigen"):
        return (np.ascontiguousarray(e.eigenvalues), *e.matrices)
    return (np.ascontiguousarray(e.eigenvalues), *(_folded(op) or (np.zeros((0, 0, 0)),) * 2))


def _applied_matrix(op) -> tuple:
    """How the compiled kernel applies a matrix operator inside N: ("sparse", (data, indices, indptr)) where it is
    sparse or mostly zeros (``Matrix.action_matrix``: CSR), ("matrix", (∅, A, ∅)) for a dense one up to
    ``DENSE_FUNCTIONS_MAX`` unknowns, else (None, None): the numpy driver."""
    from scipy import sparse
    A = op.action_matrix()
    if sparse.issparse(A):
        A = sparse.csr_matrix(A)
        return "sparse", (np.ascontiguousarray(A.data, dtype=float), np.ascontiguousarray(A.indices, dtype=np.int64),
                          np.ascontiguousarray(A.indptr, dtype=np.int64))
    if op.size <= _ops.DENSE_FUNCTIONS_MAX:
        return "matrix", (np.zeros(0), np.ascontiguousarray(op.dense()), np.zeros((0, 0)))
    return None, None


def _folded(op):
    """The (forward, backward) transform matrices of ``op``'s eigenbasis folded by their mirrored rows
    (``field_runtime.mirrored_halves``), kept on the operator; None where it has none or they do not fold."""
    if "_folded" not in op.__dict__:
        e = op.eigenbasis()
        halves = ([mirrored_halves(m) for m in e.matrices] if e is not None and e.matrices
                  and not e.kind.startswith("eigen") else [None])
        op.__dict__["_folded"] = None if any(h is None for h in halves) else tuple(halves)
    return op.__dict__["_folded"]


def _rebuilt(arguments, operators):
    """A pickled FieldODE: its ``operators`` are unpickled first (each takes its sympy function back), then the model."""
    return FieldODE(*arguments)


def _find_operator(app):
    """The Operator whose sympy function ``app`` applies."""
    op = getattr(app.func, "operator", None)
    if not isinstance(op, Operator):
        raise ModelError(f"FieldODE: {app} is not an application of a sdekit operator")
    return op


class FieldProblem:
    """A :class:`FieldODE` with its initial field ``u0`` (the model's ``user_shape``: the grid's, or (species,
    *grid); complex for complex fields), time span and the values of its params (numbers: the generated code
    does not change with them).  ``u0`` is kept as the integrated real state (a complex field's real pair)."""

    def __init__(self, model, u0, tspan, params=None):
        if not isinstance(model, FieldODE):
            raise ModelError(f"FieldProblem needs a FieldODE, got {type(model).__name__}")
        u0 = np.asarray(u0)
        if u0.dtype.kind not in "biufc":
            raise ValueError(f"u0 must be an array of numbers, got {u0.dtype}")
        if u0.shape != model.user_shape:
            raise ValueError(f"u0 must have the field's shape {model.user_shape}, got {u0.shape}")
        if not np.all(np.isfinite(u0)):
            raise ValueError("u0 must be finite")
        if not model.complex and np.iscomplexobj(u0) and np.any(u0.imag):
            raise ValueError("u0 is complex but the field is real: declare it sk.field(name, shape, complex=True)")
        u0 = model.state(u0.real if not model.complex and np.iscomplexobj(u0) else u0)
        params = keyed_by_name(params, "FieldProblem params")
        names = [p.name for p in model.params]
        if sorted(params) != sorted(names):
            raise ValueError(f"FieldProblem: give params {names} (the model's), got {sorted(params)}")
        values = []
        for name in names:
            v = params[name]
            if not (np.ndim(v) == 0 and np.isrealobj(v) and np.isfinite(float(v))):
                raise ValueError(f"FieldProblem: param {name!r} must be a finite real number, got {v!r}")
            values.append(float(v))
        self.model, self.u0, self.tspan, self.params = model, u0, _tspan(tspan), dict(zip(names, values))
        self.rhs = (lambda u, t: model.rhs(u, t, *values)) if values else model.rhs
        self.jacobian = lambda u, t: model.jacobian(u, t, *values)

    def __reduce__(self):
        """Pickled as its constructor's arguments (the user's u0: complex fields joined again)."""
        return (FieldProblem, (self.model, self.model.user_value(self.u0), self.tspan, dict(self.params)))


class _FieldForm(types.SimpleNamespace):
    """What the scheme builders read of a model: a deterministic one (fields carry no noise yet)."""

    def time_dependent(self, part):
        return False


#: the largest field exponential Rosenbrock methods take (its operators' matrices formed dense once, D² numbers, its
#: Jacobian in CSR where they are sparse, else dense; its φ applied to the step's vectors by augmented-matrix
#: exponential actions, each a few dozen products)
JACOBIAN_MAX = 1024


def field_scheme(model, method: str):
    """The catalogue method's step scheme (the one the fused kernels print) for a field model."""
    m = get_method(method)
    if m.stochastic:
        raise ModelError(f"{m.name} is an SDE method; fields are ODEs for now")
    scheme = build_scheme(_FieldForm(stochastic=False, additive=True, noise=None), m)
    size = int(np.prod(model.shape))
    if scheme.needs_jacobian and (size > JACOBIAN_MAX or not hasattr(model, "jacobian")):
        raise ModelError(f"{m.name}: exponential Rosenbrock methods on fields form the Jacobian as a matrix: "
                         f"up to {JACOBIAN_MAX} unknowns (a complex point is two), this field has {size} (φ-actions of a matrix-free Jacobian "
                         "are not implemented)")
    return scheme


def field_source(model, method: str, adaptive: bool = False, backend=None) -> str:
    """The generated module that runs ``method`` on ``model``: the compiled field kernel (N in it) where
    :func:`solve_field` takes it for these options, else the numpy driver (``sdekit inspect`` prints it with
    N's source)."""
    if compiled_runs(model, backend, method, adaptive):
        L, ops = model.numba_bases()
        complex_spectrum = bool(np.iscomplexobj(model.operator.eigenbasis().eigenvalues))
        return emit_field_numba(field_scheme(model, method), model, L, ops, adaptive, complex_spectrum)
    return emit_field(field_scheme(model, method), int(np.prod(model.shape)), adaptive)


def solve_field(problem: FieldProblem, method: str, dt=None, *, ts=None, saveat=None, progress: bool = False,
                adaptive=None, rtol=None, atol=None, controller: str | None = None, dtmin=None, dtmax=None,
                maxiters: int | None = None, tstops=None, backend=None, **unknown):
    """``method`` on ``problem``: fixed steps (``dt`` or the grid ``ts``; ``saveat`` grid times, default every
    step) or adaptive ones (no ``dt``, or ``rtol``/``atol``; ``saveat`` any times by the method's continuous
    extension or cubic Hermite, default every accepted step) — the same drivers, controller and options as
    ``sdekit.solve`` for ODEs.  Returns a Solution with ``y`` of shape (nsave, *grid).

    ``backend``: "numba" (the default wherever :func:`compiled_runs` allows: the compiled field kernel,
    ``sol.backend == "fields-numba"``) or "numpy" (the array-level driver, the only one for exponential
    Rosenbrock and matrix operators: ``sol.backend == "fields"``)."""
    from .kernels.arguments import run_adaptive, run_fixed
    from .kernels.backend import RunInput
    from .problem import unknown_keyword
    from .kernels.arguments import step_classes
    from .solve import adaptive_options, refuse_adaptive_options, save_steps, step_control, time_grid, user_grid
    dtype = unknown.pop("dtype", np.float64)
    try:
        float64 = np.dtype(dtype) == np.float64
    except TypeError:
        float64 = False
    if not float64:
        raise ValueError(f"fields integrate in float64 (complex fields as float64 pairs); dtype={dtype!r} is for the "
                         "ensemble kernels of ODE/SDE models")
    if unknown:
        raise unknown_keyword("solve", unknown, ["dt", "ts", "saveat", "progress", "adaptive", "rtol", "atol",
                                                 "controller", "dtmin", "dtmax", "maxiters", "tstops", "backend"])
    if problem.tspan[1] < problem.tspan[0]:
        raise ValueError("fields integrate forwards in time (t1 > t0)")
    m = get_method(method)
    adaptive = step_control(m, dt, ts, adaptive, rtol, atol)
    if not adaptive:
        refuse_adaptive_options(tstops=tstops, dtmin=dtmin, dtmax=dtmax, maxiters=maxiters, controller=controller)
    model, d = problem.model, int(np.prod(problem.model.shape))
    scheme, module, memo = model.compiled(m.name, adaptive)
    polys = {name: op.poly for name, op in scheme.all_operators().items()}
    lanes = FieldLanes(model.shape, getattr(problem, "rhs", model.rhs), model.operator, polys, memo,
                       getattr(problem, "jacobian", None), {k: op.poly for k, op in scheme.jacobian_operators.items()})
    inp = RunInput(y0=problem.u0.reshape(-1, 1).astype(float), tspan=problem.tspan, params={}, nets={}, structure="zero",
                   Lval=None, op_specs={}, noise=None, trajectories=np.zeros(1, np.int64), progress=progress)
    compiled = compiled_runs(model, backend, m.name, adaptive)
    params = tuple(getattr(problem, "params", {}).values())
    if adaptive:
        inp.opts = adaptive_options(m, problem, d, False, dt, rtol, atol, controller, dtmin, dtmax, maxiters,
                                    None if isinstance(saveat, str) and saveat == "steps" else saveat, tstops)
        lanes.actions.tol = action_tolerance(inp.opts.rtol)
        if compiled:
            kernel = model.compiled_numba(m.name, adaptive=True)
            margs = model.numba_arguments(params)
            raw = run_adaptive(inp, lambda fixed: _whole_run(kernel, (*fixed, *margs), progress))
        else:
            raw = run_adaptive(inp, lambda fixed: module.kernel(*fixed, lanes, lanes.values, progress))
    else:
        inp.grid = time_grid(problem.tspan, dt) if ts is None else user_grid(problem.tspan, ts)
        inp.save_steps = save_steps(inp.grid, saveat)
        classes = step_classes(inp.grid)[0]
        if compiled:
            kernel = model.compiled_numba(m.name)
            tables = model._operator_tables.setdefault(m.name, {})
            opvals = _operator_table(lanes, scheme, classes, model.operator, tables)
            margs = (opvals,) + model.numba_arguments(params)
            raw = run_fixed(inp, lambda fixed: _whole_run(kernel, (*fixed, *margs), progress))
        else:
            raw = run_fixed(inp, lambda fixed: module.kernel(*fixed, lanes, lambda hc: lanes.values(classes[hc]), progress))
    stats = {name: int(v) for name, v in zip(STATS, raw.stats.sum(axis=1))}
    stats.update(driver="fields-numba" if compiled else "array", phi_actions=lanes.actions.actions,
                 action_products=lanes.actions.products)
    y = model.user_value(np.asarray(raw.saved)[:, :, 0].reshape((-1,) + model.shape))
    return Solution.from_codes(np.asarray(raw.times), y, raw.retcodes, False, stats=stats, method=m.name,
                               backend="fields-numba" if compiled else "fields")


def _whole_run(kernel, args, progress: bool):
    """The compiled field kernel over the whole span (one lane: no progress inside it), with ``progress`` a tqdm bar
    of that one run, as the per-lane kernels show one trajectory's."""
    from tqdm.auto import tqdm

    from .kernels.numba_backend import first_call
    with tqdm(total=1, desc="sdekit fields-numba", unit="solve", disable=not progress) as bar:
        first_call(kernel, kernel.kernel, (0, 1), args)
        bar.update()


def compiled_runs(model, backend, method: str, adaptive: bool = False) -> bool:
    """Whether a solve of ``method`` takes the compiled field kernel (``backend`` None: wherever it can: every
    operator with a fast eigenbasis and a method without the Jacobian)."""
    if backend not in (None, "numba", "numpy"):
        raise ValueError(f"fields run on backend 'numba' (compiled) or 'numpy' (the array-level driver), got {backend!r}")
    if backend == "numpy":
        return False
    if get_method(method).family.name == "exprb":
        if backend == "numba":
            raise ModelError(f"{method}: exponential Rosenbrock methods run on fields on backend='numpy' only (the "
                             "Jacobian's φ-actions by scipy each step)")
        return False
    bases = model.numba_bases()
    if backend == "numba" and bases is None:
        raise ModelError("backend='numba' runs fields whose operators are diagonal, Fourier, DST/DCT (FFTs need "
                         "rocket-fft) or matrices with well-conditioned eigenvectors (inside N: any matrix up to "
                         "4096 unknowns, or sparse); this model has an operator without such a basis: use "
                         "backend='numpy'")
    return bases is not None


def _operator_table(lanes, scheme, classes, operator, tables: dict) -> np.ndarray:
    """(step class, operator, index in L's basis): the scheme's operators at each step size, flattened; kept in
    ``tables`` by the step sizes (the last few grids: a sweep over dt repeats none, a repeated solve all)."""
    key = classes.tobytes()
    if key not in tables:
        tables[key] = _tabulate(lanes, scheme, classes, operator)
        while len(tables) > MEMO_SIZES:
            tables.pop(next(iter(tables)))
    return tables[key]


def _tabulate(lanes, scheme, classes, operator) -> np.ndarray:
    names = list(scheme.all_operators())
    rows = [[operator.flat(lanes.values(h)[name]) for name in names] for h in classes]
    if not names:
        return np.zeros((len(classes), 1, 1))
    table = np.array(rows)
    return table if np.iscomplexobj(table) and np.any(table.imag) else np.ascontiguousarray(table.real)


#: an ODE problem with a constant dense L of at least this dimension takes the array path by default
ROUTE_DIM = 64
_ROUTED_OPTIONS = {"ts", "saveat", "progress", "adaptive", "rtol", "atol", "controller", "dtmin", "dtmax", "maxiters",
                   "tstops"}


#: a routed dense ODE whose N prints more operations than this (sympy's count of the printed expressions: a loop's
#: once) keeps the array driver: Numba's compile grows with the code (measured, adaptive ROS34PW2: Allen–Cahn's loop
#: and two lines, 8 operations, 6 s; 256 distinct lines, 768 operations, 8.9 s; 512 lines, 1536 operations, 11.7 s
#: for 0.14 s a solve against 0.19 s on the array driver; N = −u ∘ (W u), W a dense 64 × 64, 8256 operations, 70 s
#: against 1.5 s)
COMPILED_FORCING_OPERATIONS = 1024


class DenseODE(_ArrayModel):
    """An ``sk.ODE`` y' = L y + c + N with a constant dense L, as an array model: the state a vector, L a
    :func:`matrix` operator (its φ by ``Matrix.phi_evaluation``: one eigendecomposition where it has a
    well-conditioned one, else φ-actions), N its sympy forcing: in the compiled field kernel as printed code
    (``components``, ``emit_field.emit_vector_forcing_numba``; where L has an eigenbasis, N is small enough to
    compile and the method needs no Jacobian), else lambdified over the whole state with the params' ``values``
    bound (in ``params``' order); :meth:`jacobian` its nonzero derivatives.  One is made per model and L
    (``_dense_model``); :meth:`with_values` gives it for other params values, sharing the operator, the generated
    modules and what is derived from the sympy model (``_shared``)."""

    def __init__(self, model, L):
        form = model.form
        self.form = form
        self.shape, self.grid, self.several = (form.dim,), (form.dim,), False
        self.operator = _ops.Matrix(self.shape, np.asarray(L, dtype=float))
        self.states, self.components, self.params = tuple(form.states), tuple(form.forcing), tuple(form.params)
        self.values = [0.0] * len(self.params)
        self._compiled, self._operator_tables, self._shared = {}, {}, {}

    @property
    def data(self) -> dict:
        """No data arrays (a field model's ``data=``): the compiled kernel's argument list has none."""
        return {}

    def with_values(self, params: dict) -> "DenseODE":
        """This model with the params' values ``params`` ({name: number}) bound."""
        out = copy.copy(self)
        out.values = [float(params[p.name]) for p in self.params]
        return out

    def numba_bases(self):
        """L's eigenvector basis (``Matrix.eigenbasis``); None where its φ are not from an eigendecomposition or N
        prints more than COMPILED_FORCING_OPERATIONS operations (:meth:`refusal` says so)."""
        if "bases" not in self._shared:
            basis = _basis(self.operator)
            if basis is not None and self.refusal() is not None:
                basis = None
            self._shared["bases"] = None if basis is None else (basis, {})
        return self._shared["bases"]

    def refusal(self) -> str | None:
        """Why N is not compiled (too many operations: ``COMPILED_FORCING_OPERATIONS``), or None."""
        if "operations" not in self._shared:
            self._shared["operations"] = int(sum(sp.count_ops(e) for _, e in self.forcing_runs()))
        count = self._shared["operations"]
        return (f"N of {count} operations > {COMPILED_FORCING_OPERATIONS} is not compiled"
                if count > COMPILED_FORCING_OPERATIONS else None)

    def forcing_runs(self) -> list:
        """N's components grouped for printing (``emit_field.forcing_runs``), made once."""
        if "runs" not in self._shared:
            self._shared["runs"] = forcing_runs(self.components, self.states)
        return self._shared["runs"]

    def numba_arguments(self, params) -> tuple:
        """L's eigenvalues and eigenvector products, then the values of ``params`` (its params' order)."""
        return _kernel_arrays(self.operator) + tuple(float(v) for v in params)

    def _forcing(self, *args):
        """N lambdified over the whole state (made on first use: the compiled kernel does not need it)."""
        if "forcing" not in self._shared:
            self._shared["forcing"] = lambdify_exact([*self.states, _t, *self.params], list(self.components))
        return self._shared["forcing"](*args)

    def rhs(self, u, t):
        """N(u, t) on the state vector: the lambdified entries, numbers for a vector u (one array call: a routed
        Allen–Cahn of 256 unknowns spent 60 % of its time converting them one by one), arrays broadcast else."""
        values = self._forcing(*u, t, *self.values)
        if np.ndim(u) == 1:
            return np.array(values, dtype=float)
        return np.array(np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in values)))

    def jacobian(self, u, t):
        """(∂N/∂u (d × d, COO), ∂N/∂t (d,)) at ``u``, ``t`` for exponential Rosenbrock methods: sympy's derivatives of
        the forcing (``form.forcing_jacobian``, the per-lane kernels' too), only the nonzero ones lambdified (a
        stencil's N has O(d) of the d² entries), ∂N/∂u's at the same (rows, cols) at every call."""
        from scipy import sparse
        if "jacobian_entries" not in self._shared:
            form, d = self.form, self.form.dim
            entries = list(form.jacobian_entries(form.forcing_jacobian(), d))
            fn = lambdify_exact([*form.states, _t, *form.params], [e for *_, e in entries] or [0])
            self._shared["jacobian_entries"] = (np.array([i for i, _, _ in entries], dtype=int),
                                                  np.array([j for _, j, _ in entries], dtype=int), fn)
        rows, cols, fn = self._shared["jacobian_entries"]
        d = self.form.dim
        values = np.array(fn(*np.ravel(u), float(t), *self.values), dtype=float) if rows.size else np.zeros(0)
        in_u, b = cols < d, np.zeros(d)
        b[rows[~in_u]] = values[~in_u]
        return sparse.coo_matrix((values[in_u], (rows[in_u], cols[in_u])), shape=(d, d)), b


def route(target, method: str, dt, options: dict):
    """``sdekit.solve``'s default for large stiff linear parts (issue 19): an ODEProblem with a constant, finite
    dense L of dimension >= ROUTE_DIM, no networks, an array-capable method and only options the array path
    takes runs as a :class:`DenseODE` — on the compiled field kernel where L has an eigenbasis, N is small enough
    to compile (``COMPILED_FORCING_OPERATIONS``) and the method needs no Jacobian (``sol.backend ==
    "fields-numba"``), else on the array-level driver (``"fields"``); ``sol.stats["driver"]`` names it and says
    why, how L's φ are evaluated (``kernels.operators.Matrix.phi_evaluation``) and why N is not compiled where that
    is the reason; anything else, or an explicit ``backend=``, returns None (the per-lane kernels)."""
    from .codegen.host import linear_entries
    from .problem import ODEProblem
    options = {k: v for k, v in options.items() if not (k == "backend" and v is None)}
    if "backend" in options or not isinstance(target, ODEProblem) or set(options) - _ROUTED_OPTIONS:
        return None
    if any(np.ndim(v) for v in target.params.values()):     # per-trajectory values: the kernels say what to do
        return None
    form = target.model.form
    if not _routable(form, method) or target.tspan[1] < target.tspan[0]:
        return None
    params = dict(target.params)
    if form.linear is None:
        L = np.asarray(form.linear_numeric, dtype=float)
    else:
        L = np.array(linear_entries(form)(params), dtype=float).reshape(form.dim, form.dim)
    if not np.all(np.isfinite(L)):
        return None
    model = _dense_model(target.model, L, params)
    problem = types.SimpleNamespace(model=model, u0=np.asarray(target.y0, dtype=float), tspan=target.tspan,
                                    jacobian=model.jacobian, params=dict(zip((p.name for p in model.params), model.values)))
    sol = solve_field(problem, method, dt, **options)
    why = [f"dense L, d = {form.dim} >= {ROUTE_DIM}", model.operator.describe_phi()]
    refusal = model.refusal() if sol.backend == "fields" and model.operator.eigenbasis() is not None else None
    if refusal:
        why.append(refusal)
    sol.stats["driver"] += f" (routed: {', '.join(why)})"
    return sol


def routed_model(model, method: str):
    """The array model ``solve`` would route ``model`` (an ``sk.ODE``) to for ``method`` where L does not depend on
    the params, or None (``sdekit inspect``'s view of the routing; the generated code does not read the params'
    values, which are runtime arguments: 0 here)."""
    from .model import ODE
    if not isinstance(model, ODE) or model.form.linear_numeric is None:
        return None
    L = np.asarray(model.form.linear_numeric, dtype=float)
    if not (_routable(model.form, method) and np.all(np.isfinite(L))):
        return None
    return _dense_model(model, L, {p.name: 0.0 for p in model.form.params})


def _routable(form, method: str) -> bool:
    """The routing rule on the model: a dense L of dimension >= ROUTE_DIM, no networks, and a method the array
    path runs (deterministic; exponential Rosenbrock up to JACOBIAN_MAX, its Jacobian's φ by actions where the
    per-lane kernel forms φ(hJ̃) by scaling and squaring: Allen–Cahn, d = 256, Exprb43 at tol 1e-4, 109 s → ~1 s);
    L's values must also be finite."""
    try:
        m = get_method(method)
    except ValueError:
        return False
    return (form.linear_structure == "dense" and form.dim >= ROUTE_DIM and not form.nets and not m.stochastic
            and (m.family.name != "exprb" or form.dim <= JACOBIAN_MAX))


def _dense_model(model, L, params):
    """The model's DenseODE for L (kept on the model with its generated modules: one L at a time, a sweep over a
    param of L would otherwise pile them up) with the values of ``params`` bound (a sweep over params of N shares
    the DenseODE's operator, modules and compiled kernel: ``DenseODE.with_values``)."""
    key = ("dense_ode", L.tobytes())
    cache = model._host.setdefault("array_models", {})
    if key not in cache:
        cache.clear()
        cache[key] = DenseODE(model, L)
    return cache[key].with_values(params)
