"""Semilinear analysis: ``dy = (L y + c(t) + N(y, t)) dt + G(y, t) dW``.

:func:`analyse` turns a user's drift (and diffusion) into a :class:`SemilinearForm`:
the exact constant linear part ``L`` (symbolic, or a numeric array used as runtime data),
its structure (zero / scalar·I / diagonal / dense), the affine part ``c(t)``, the
nonlinear rest ``N`` and the noise shape.  The split rule (DESIGN.md): a term goes to ``L``
when it is ``coef * y_j`` with ``coef`` free of ``y`` and ``t``; neural calls are opaque
and always go to ``N``; ``t``-dependent linear terms stay in ``N``.
"""
from __future__ import annotations

import dataclasses
import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import sympy as sp
from sympy.utilities.exceptions import SymPyDeprecationWarning

from .errors import ModelError
from .functions import check_expressions, check_functions, check_printable
from .neural import NetCall, nets_in

#: the time symbol every model uses
t = sp.Symbol("t", real=True)

LINEAR_STRUCTURES = ("zero", "scalar", "diagonal", "dense")
NOISE_SHAPES = ("scalar", "diagonal", "general")


class Param(sp.Symbol):
    """A runtime parameter: its value is an argument of the compiled kernel."""


def _matrix(x) -> sp.Matrix:
    """sp.Matrix(x), relations and booleans kept without sympy's deprecation warning (check_expressions refuses
    them by name)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SymPyDeprecationWarning)
        return sp.Matrix(x)


def as_column(expr, what: str) -> sp.Matrix:
    """``expr`` (scalar, list, sympy Matrix) as a column Matrix, or ModelError."""
    try:
        m = _matrix(expr) if not isinstance(expr, (sp.Expr, int, float)) else sp.Matrix([expr])
    except (TypeError, ValueError, sp.SympifyError) as exc:
        raise ModelError(f"{what} must be a sympy expression or vector, got {type(expr).__name__}") from exc
    check_expressions(m, what)
    if m.shape[1] != 1:
        if m.shape[0] == 1:
            m = m.T
        else:
            raise ModelError(f"{what} must be a vector, got a {m.shape[0]}x{m.shape[1]} matrix")
    return m


def linear_structure(L) -> str:
    """Structure of a square ``L`` (sympy Matrix or numpy array) from its zero pattern."""
    A = np.asarray(L, dtype=object) if isinstance(L, sp.MatrixBase) else np.asarray(L)
    d = A.shape[0]
    off = [A[i, j] for i in range(d) for j in range(d) if i != j]
    if any(_nonzero(a) for a in off):
        return "dense"
    diag = [A[i, i] for i in range(d)]
    if not any(_nonzero(a) for a in diag):
        return "zero"
    if all(not _nonzero(a - diag[0]) for a in diag[1:]):
        return "scalar"
    return "diagonal"


def _nonzero(a) -> bool:
    if isinstance(a, sp.Basic):
        return sp.simplify(a) != 0
    return bool(a != 0)


@dataclass(frozen=True, eq=False)
class SemilinearForm:
    """Everything the scheme builder and emitters need to know about a model.

    ``linear`` is a sympy Matrix whose entries may contain :class:`Param` symbols, or
    ``None`` when ``linear_numeric`` holds a numeric array (runtime data, never printed).
    """

    states: tuple
    linear: sp.Matrix | None
    linear_numeric: np.ndarray | None
    linear_structure: str
    affine: sp.Matrix
    nonlinear: sp.Matrix
    diffusion: sp.Matrix | None = None          # (d, 1) vector for scalar/diagonal noise, (d, m) general
    noise: str | None = None
    additive: bool = True
    params: tuple = ()
    nets: dict = field(default_factory=dict)
    linear_exact: sp.Matrix | None = None       # L as the user wrote it (exact rationals), for display
    linear_time: sp.Expr | None = None          # ℓ(t) of a t-dependent L = ℓ(t)·I (solved in u = ±∫ℓ: time_changed)

    @property
    def dim(self) -> int:
        return len(self.states)

    @property
    def stochastic(self) -> bool:
        return self.diffusion is not None

    @property
    def noise_dim(self) -> int:
        """Number of Wiener processes m."""
        if self.noise is None:
            return 0
        if self.noise == "scalar":
            return 1
        if self.noise == "diagonal":
            return self.dim
        return self.diffusion.shape[1]

    @property
    def forcing(self) -> sp.Matrix:
        """``c(t) + N(y, t)``: everything the exponential methods treat explicitly."""
        return self.affine + self.nonlinear

    def forcing_jacobian(self) -> list:
        """∂(c + N)/∂y row-major (d² entries), then ∂(c + N)/∂t (d entries), by sympy; a network
        call differentiates to :class:`~sdekit.codegen.neural.NetGrad` terms (chain rule)."""
        F = self.forcing
        return [sp.diff(F[i], y) for i in range(self.dim) for y in self.states] + [sp.diff(e, t) for e in F]

    @staticmethod
    def jacobian_entries(outputs, d: int):
        """(i, j, e) of the entries of :meth:`forcing_jacobian`'s layout (``outputs``: those entries, lowered)
        that are not identically zero: J̃[i, j], j = d the t column."""
        for k, e in enumerate(outputs):
            if sp.sympify(e) != 0:
                yield (k // d, k % d, e) if k < d * d else (k - d * d, d, e)

    @property
    def drift(self) -> sp.Matrix:
        """The full drift ``L y + c + N`` (symbolic L only)."""
        L = self.linear if self.linear is not None else sp.Matrix(self.linear_numeric)
        if self.linear_time is not None:
            L = self.linear_time * sp.eye(self.dim)
        return L * sp.Matrix(self.states) + self.forcing

    def time_dependent(self, part: str) -> bool:
        expr = {"forcing": self.forcing, "diffusion": self.diffusion}[part]
        return expr is not None and any(e.has(t) for e in expr)

    @property
    def function_params(self) -> tuple:
        """The params that the model's functions (c + N, G) read: what a kernel takes as ``P_<name>``;
        a param that enters only L reaches kernels through L's values (``Lm``, operator tables), or as a value
        of its own where the kernels print L's entries (``sdekit.solve.kernel_form``: L y moved into N)."""
        return _params_of(self.forcing, self.diffusion)

    @property
    def reads_t(self) -> bool:
        """Whether any function of the model reads t (L is constant): kernels of an autonomous model
        keep no stage times."""
        return self.time_dependent("forcing") or self.time_dependent("diffusion")


def time_reversed(form: SemilinearForm) -> SemilinearForm:
    """The model in reversed time s = −t: ``dy = −(L y + c(−s) + N(y, −s)) ds + G(y, −s) dW(s)``.

    Integrating it forward from s = −t0 to −t1 integrates the original from t0 back to t1 < t0
    (for an SDE: the reverse-time equation driven by a Brownian motion in the reversed time, as
    in Anderson 1982 and the diffusion samplers, ``dy = f dt + g dW̄`` with dt < 0).  L stays
    constant with its structure; a network reading t reads −s.
    """
    def back(m):
        return None if m is None else m.subs(t, -t)
    return dataclasses.replace(
        form, linear=None if form.linear is None else -form.linear,
        linear_numeric=None if form.linear_numeric is None else -form.linear_numeric,
        linear_exact=None if form.linear_exact is None else -form.linear_exact,
        affine=-back(form.affine), nonlinear=-back(form.nonlinear), diffusion=back(form.diffusion))


#: the changed model's time variable u is printed as t (the kernels' time); the original time is T(u)
_U = sp.Symbol("u", real=True)


def time_change_branches(ell) -> list:
    """For a linear part ℓ(t)·I: [(sign, U, T), ...] with U(t) = sign·∫ℓ dt (sympy's antiderivative, sign = ±1 so
    that U increases where sign·ℓ > 0) and T = U⁻¹ in closed form (each root sympy's ``solve`` finds; ``solve``
    picks the one that inverts U on its tspan).  ModelError when sympy finds no antiderivative or no inverse."""
    Lam = sp.integrate(ell, t)
    if Lam.has(sp.Integral):
        raise ModelError(f"the linear part ℓ(t) = {ell} has no closed-form integral ∫ℓ dt: put ℓ(t)·y in nonlinear=")
    # sympy's ∫ dt/(t − 1) is log(t − 1), complex for t < 1: log(1 − t) is the other real antiderivative; with
    # several logs (flow matching's shift: log(t − 1) − log(2t + 1)) each may need its sign, so every combination
    logs = sorted(Lam.atoms(sp.log), key=str)[:4]
    antiderivatives = list(dict.fromkeys(
        Lam.xreplace({g: sp.log(sp.expand(-g.args[0])) for g, flip in zip(logs, flips) if flip})
        for flips in itertools.product((False, True), repeat=len(logs))))
    branches = []
    for sign in (1, -1):
        for anti in antiderivatives:
            try:
                roots = sp.solve(sp.Eq(sign * anti, _U), t)
            except (NotImplementedError, ValueError):
                roots = []
            branches += [(sign, sign * anti, r.subs(_U, t)) for r in roots]
    if not branches:
        raise ModelError(f"sympy cannot invert u = ∫ℓ dt = {Lam} for ℓ(t) = {ell} in closed form: put ℓ(t)·y in "
                         "nonlinear=")
    return branches


def time_changed(form: SemilinearForm, sign: int, T) -> SemilinearForm:
    """The model of a t-dependent scalar linear part ℓ(t)·I in the time u = U(t) = sign·∫ℓ dt (du = sign·ℓ dt > 0),
    printed in the kernels' time symbol: dy/du = sign·y + (c + N)(y, T(u)) / (sign·ℓ(T(u))).  Its linear part is
    the constant sign·I, so every exponential method integrates e^{∫ℓ} exactly (the variable-coefficient analogue of
    DPM-Solver's change to λ, methods.md §2.3); ODEs only."""
    weight = sp.simplify(1 / (sign * form.linear_time.subs(t, T)))

    def change(m):
        return m.subs(t, T) * weight
    eye = sign * np.eye(form.dim)
    return dataclasses.replace(form, linear=None, linear_numeric=eye, linear_structure="scalar",
                               linear_exact=sign * sp.eye(form.dim), linear_time=None,
                               affine=change(form.affine), nonlinear=change(form.nonlinear))


def split_drift(states, drift: sp.Matrix):
    """Split ``drift`` into ``(L, affine, nonlinear)`` by the DESIGN.md rule."""
    d = len(states)
    L = sp.zeros(d, d)
    affine = sp.zeros(d, 1)
    nonlinear = sp.zeros(d, 1)
    index = {s: j for j, s in enumerate(states)}
    for i, row in enumerate(drift):
        for term in sp.Add.make_args(sp.expand(row)):
            if term.has(NetCall):
                nonlinear[i] += term
                continue
            if not term.has(*states):
                affine[i] += term
                continue
            coef, rest = term.as_independent(*states, as_Add=False)
            if rest in index and not coef.has(t):
                L[i, index[rest]] += coef
            else:
                nonlinear[i] += term
    return L, affine, nonlinear


def _check_symbols(expr, states, what: str):
    check_functions(expr, what)
    allowed = set(states) | {t}
    for s in sorted(sp.Matrix(expr).free_symbols, key=lambda s: s.name):
        if s not in allowed and not isinstance(s, Param):
            hint = " (time is sdekit.t, not a plain sympy Symbol)" if s.name == "t" else ""
            raise ModelError(
                f"{what} contains the symbol {s!r}, which is neither a state, sdekit.t, nor a parameter "
                f"declared with sdekit.params(...){hint}"
            )
    check_printable(expr, what)


def _params_of(*exprs) -> tuple:
    ps = set()
    for e in exprs:
        if e is not None:
            ps |= {s for s in sp.Matrix(e).free_symbols if isinstance(s, Param)}
    return tuple(sorted(ps, key=lambda s: s.name))


def _as_states(y) -> tuple:
    ys = tuple(sp.Matrix(y)) if not isinstance(y, sp.Symbol) else (y,)
    if not ys or not all(isinstance(s, sp.Symbol) and not isinstance(s, Param) for s in ys):
        raise ModelError("states must be a vector of sympy Symbols (use sdekit.states('y', d))")
    if len(set(ys)) != len(ys):
        raise ModelError("states contain a repeated symbol")
    if t in ys:
        raise ModelError("states contain sdekit.t, the time: name the states apart (sdekit.states('y', d)); "
                         "an equation for a clock is t' = 1 on a state of its own")
    return ys


def _linear_input(linear, d):
    """Explicit ``linear=``: sympy Matrix (symbolic) or array (numeric runtime data).  Returns
    (symbolic L or None, numeric L or None, the exact sympy L or None)."""
    if isinstance(linear, sp.MatrixBase):
        L = _matrix(linear)
        check_expressions(L, "linear part")
        if L.shape != (d, d):
            raise ModelError(f"linear part must be {d}x{d}, got {L.shape[0]}x{L.shape[1]}")
        if not L.free_symbols:
            A = np.array(L.evalf(), dtype=float)
            if not np.all(np.isfinite(A)):
                raise ModelError(f"linear part has non-finite entries: {L.tolist()}")
            return None, A, L
        return L, None, L
    if np.isscalar(linear):
        return None, float(linear) * np.eye(d), None
    A = np.asarray(linear, dtype=float)
    if A.shape != (d, d):
        raise ModelError(f"linear part must be {d}x{d}, got shape {A.shape}")
    if not np.all(np.isfinite(A)):
        raise ValueError("linear part contains non-finite entries")
    return None, A, None


def _time_dependent_scalar(L, d, stochastic):
    """ℓ(t) of a linear part ℓ(t)·I, or ModelError naming what else it is."""
    ell = sp.simplify(L[0, 0])
    if any(sp.simplify(L[i, j] - (ell if i == j else 0)) != 0 for i in range(d) for j in range(d)):
        raise ModelError("a t-dependent linear part must be ℓ(t)·I (one scalar function of t times the identity); put "
                         "other t-dependent terms in nonlinear= (or give them in drift=)")
    if ell.free_symbols - {t}:
        raise ModelError(f"a t-dependent linear part ℓ(t)·I may depend on t only, got ℓ = {ell}")
    if stochastic:
        raise ModelError("a t-dependent linear part ℓ(t)·I is supported for ODEs; in an SDE put ℓ(t)·y in nonlinear=")
    return ell


def _diffusion_input(diffusion, noise, d):
    """Normalise ``diffusion`` to a (d,1) vector (scalar/diagonal noise) or (d,m) matrix."""
    if noise not in NOISE_SHAPES:
        raise ModelError(f"noise must be one of {NOISE_SHAPES}, got {noise!r}")
    if isinstance(diffusion, (int, float, sp.Expr)):
        G = sp.Matrix([sp.sympify(diffusion)] * d)
        if noise == "general":
            G = sp.diag(*G)
        return G
    try:
        G = _matrix(diffusion)
    except (TypeError, ValueError, sp.SympifyError):
        raise ModelError(f"diffusion must be a sympy expression, vector or matrix, got {type(diffusion).__name__}") \
            from None
    check_expressions(G, "diffusion")
    if noise == "general":
        if G.shape[0] != d:
            raise ModelError(f"general-noise diffusion must have {d} rows, got shape {G.shape}")
        return G
    if G.shape[1] != 1 and G.shape[0] == 1:
        G = G.T
    if G.shape != (d, 1):
        raise ModelError(
            f"{noise}-noise diffusion must be a scalar or a length-{d} vector, got shape {G.shape}; "
            f"use noise='general' for a {d}xm matrix"
        )
    return G


def analyse(y, drift=None, diffusion=None, noise=None, linear=None, nonlinear=None) -> SemilinearForm:
    """Build the :class:`SemilinearForm` of ``dy = drift dt + diffusion dW``.

    Either ``drift`` (split automatically) or ``linear``/``nonlinear`` (explicit split).
    """
    states = _as_states(y)
    d = len(states)
    if drift is not None and (linear is not None or nonlinear is not None):
        raise ModelError("give either drift= or linear=/nonlinear=, not both")
    if drift is not None:
        f = as_column(drift, "drift")
        if f.shape[0] != d:
            raise ModelError(f"drift has {f.shape[0]} components but the state has {d}")
        _check_symbols(f, states, "drift")
        L, affine, nl = split_drift(states, f)
        L_sym, L_num, L_exact = _linear_input(L, d)
    else:
        if linear is None and nonlinear is None:
            raise ModelError("a model needs drift= (or linear=/nonlinear=)")
        L_sym, L_num, L_exact = _linear_input(linear if linear is not None else np.zeros((d, d)), d)
        if L_sym is not None:
            if L_sym.has(*states):
                raise ModelError("linear part depends on the state; put such terms in nonlinear=")
            _check_symbols(L_sym, states, "linear part")
        nl_all = as_column(nonlinear if nonlinear is not None else sp.zeros(d, 1), "nonlinear part")
        if nl_all.shape[0] != d:
            raise ModelError(f"nonlinear part has {nl_all.shape[0]} components but the state has {d}")
        _check_symbols(nl_all, states, "nonlinear part")
        affine = sp.Matrix([sum((a for a in sp.Add.make_args(e) if not a.has(*states) and not a.has(NetCall)),
                                sp.Integer(0)) for e in nl_all])
        nl = nl_all - affine
    G, additive = None, True
    if diffusion is not None:
        G = _diffusion_input(diffusion, noise or "diagonal", d)
        _check_symbols(G, states, "diffusion")
        if G.has(NetCall):
            raise ModelError("neural networks in the diffusion are not supported yet")
        additive = not G.has(*states)
        noise = noise or "diagonal"
    elif noise is not None:
        raise ModelError("noise= given without a diffusion")
    ell = None
    if L_sym is not None and L_sym.has(t):       # L = ℓ(t)·I: solved in u = ±∫ℓ dt (time_changed)
        ell = _time_dependent_scalar(L_sym, d, diffusion is not None)
        L_sym, L_num = None, np.zeros((d, d))
    structure = linear_structure(L_sym if L_sym is not None else L_num)
    return SemilinearForm(
        linear_time=ell,
        states=states, linear=L_sym, linear_numeric=L_num, linear_structure=structure, linear_exact=L_exact,
        affine=affine, nonlinear=nl, diffusion=G, noise=noise if G is not None else None,
        additive=additive, params=_params_of(L_sym, affine, nl, G),
        nets=nets_in(nl, affine),
    )
