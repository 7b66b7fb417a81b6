"""The language-neutral step scheme: one list of vector statements per (model, method).

Every backend prints the *same* :class:`StepScheme`.  Registers are state-sized vectors
(``y``, stage values ``U1``, evaluations ``K0``, noise terms ``GdW``), except ``dW``
(m Wiener increments) and ``zeta`` (d independent standard normals).  Operators are
functions of ``hL`` named in :attr:`StepScheme.operators`; their values are runtime data
computed once per step size, so one compiled scheme serves any ``h``, ``L`` and params.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .analysis import SemilinearForm
from .errors import ModelError
from .methods import Method
from .phi import phi, phi_poly, z

#: the step-size symbol of every scheme coefficient
h = sp.Symbol("h", positive=True)


@dataclass(frozen=True)
class PhiOperator:
    """A polynomial in φ_k(c hL), as data from :func:`sdekit.codegen.phi.phi_poly`."""

    poly: tuple


@dataclass(frozen=True)
class ConvolutionResidual:
    """Square root S of Cov[∫_0^h e^{(h-s)L} G dW(s) | ΔW] (methods.md §5.2, conditioned on ΔW).

    Given ΔW, the stochastic convolution is ``φ_1(hL) G ΔW + S ζ`` with ζ ~ N(0, I_d), and
    ``S Sᵀ = ∫_0^h (e^{sL} − φ_1(hL)) G Gᵀ (e^{sL} − φ_1(hL))ᵀ ds``.
    """


@dataclass(frozen=True)
class Term:
    """``coef * op(hL) @ vec`` (``op`` None: identity)."""

    coef: sp.Expr
    op: str | None
    vec: str


@dataclass(frozen=True)
class Combine:
    """``target = Σ terms``."""

    target: str
    terms: tuple


@dataclass(frozen=True)
class EvalRHS:
    """``target = f(state, t + c h)``; ``part`` "full" (L y + c + N) or "forcing" (c + N)."""

    target: str
    state: str
    c: sp.Rational
    part: str


@dataclass(frozen=True)
class EvalNoise:
    """``target = G(state, t + c h) · dW`` (scalar: G dW, diagonal: G ⊙ dW, general: G @ dW)."""

    target: str
    state: str
    c: sp.Rational


@dataclass(frozen=True)
class StepScheme:
    method: str
    operators: dict
    statements: tuple
    output: str = "y_new"

    @property
    def needs_dW(self) -> bool:
        return any(isinstance(s, EvalNoise) for s in self.statements)

    @property
    def needs_zeta(self) -> bool:
        return any(isinstance(o, ConvolutionResidual) for o in self.operators.values())

    @property
    def needs_linear(self) -> bool:
        return bool(self.operators) or any(isinstance(s, EvalRHS) and s.part == "full" for s in self.statements)

    def __str__(self):
        lines = [f"# step scheme of {self.method}"]
        for name, op in self.operators.items():
            lines.append(f"#   {name} = {describe_operator(op)}")
        for s in self.statements:
            tc = f"t + {s.c}*h" if getattr(s, "c", 0) else "t"
            if isinstance(s, Combine):
                rhs = " + ".join(("" if t.coef == 1 else f"{t.coef}*") + (f"{t.op}@" if t.op else "") + t.vec
                                 for t in s.terms)
                lines.append(f"{s.target} = {rhs}")
            elif isinstance(s, EvalRHS):
                f = "f" if s.part == "full" else "N"
                lines.append(f"{s.target} = {f}({s.state}, {tc})")
            else:
                lines.append(f"{s.target} = G({s.state}, {tc}) dW")
        return "\n".join(lines)


def operator_layout(form: SemilinearForm, op) -> str:
    """How an operator is stored and applied: "elementwise" (arrays broadcasting against the
    (d, n) state) or "dense" (d x d matrices).  The one place emitters and runtime agree on."""
    if isinstance(op, ConvolutionResidual):
        return "elementwise" if form.linear_structure != "dense" and form.noise == "diagonal" else "dense"
    return "dense" if form.linear_structure == "dense" else "elementwise"


def describe_operator(op) -> str:
    if isinstance(op, ConvolutionResidual):
        return "sqrt(Cov[stochastic convolution | dW])"
    parts = []
    for w, atoms in op.poly:
        fac = "*".join(f"phi{k}({'' if c == 1 else c}hL)" for k, c in atoms) or "1"
        parts.append(fac if w == 1 else f"{w}*{fac}")
    return " + ".join(parts) or "0"


def _nonzero(x) -> bool:
    return sp.sympify(x) != 0


def _rk_statements(tab, part):
    """Explicit RK stages: U_i = y + h Σ a_ij K_j, K_i = f(U_i, t + c_i h)."""
    stmts = [EvalRHS("K0", "y", tab.c[0], part)]
    for i in range(1, tab.stages):
        terms = (Term(sp.Integer(1), None, "y"),) + tuple(
            Term(h * a, None, f"K{j}") for j, a in enumerate(tab.A[i][:i]) if _nonzero(a))
        stmts += [Combine(f"U{i}", terms), EvalRHS(f"K{i}", f"U{i}", tab.c[i], part)]
    final = (Term(sp.Integer(1), None, "y"),) + tuple(
        Term(h * b, None, f"K{i}") for i, b in enumerate(tab.b) if _nonzero(b))
    return stmts, list(final), {}


def _exprk_statements(tab):
    """Exponential RK stages (Hochbruck & Ostermann 2010, eq. (2.19))."""
    ops = {}

    def op(name, expr):
        ops[name] = PhiOperator(phi_poly(expr))
        return name

    stmts = [EvalRHS("K0", "y", tab.c[0], "forcing")]
    for i in range(1, tab.stages):
        terms = (Term(sp.Integer(1), op(f"E{i}", phi(0, tab.c[i] * z)), "y"),) + tuple(
            Term(h, op(f"A{i}{j}", a), f"K{j}") for j, a in enumerate(tab.A[i][:i]) if _nonzero(a))
        stmts += [Combine(f"U{i}", terms), EvalRHS(f"K{i}", f"U{i}", tab.c[i], "forcing")]
    final = [Term(sp.Integer(1), op("E", phi(0, z)), "y")] + [
        Term(h, op(f"B{i}", b), f"K{i}") for i, b in enumerate(tab.b) if _nonzero(b)]
    return stmts, final, ops


def build_scheme(form: SemilinearForm, method: Method) -> StepScheme:
    """The step scheme of ``method`` on ``form``; ModelError for unsupported combinations."""
    check_supported(form, method)
    if method.family == "rk":
        stmts, final, ops = _rk_statements(method.tableau, "full")
    elif method.family == "exprk":
        stmts, final, ops = _exprk_statements(method.tableau)
    else:  # pragma: no cover - the catalogue only holds the families above
        raise ModelError(f"{method.name}: family {method.family!r} has no scheme builder")
    if method.noise == "increment":
        stmts.append(EvalNoise("GdW", "y", sp.Integer(0)))
        final.append(Term(sp.Integer(1), None, "GdW"))
    elif method.noise == "convolution":
        stmts.append(EvalNoise("GdW", "y", sp.Integer(0)))
        ops["P1"] = PhiOperator(phi_poly(phi(1, z)))
        ops["S"] = ConvolutionResidual()
        final += [Term(sp.Integer(1), "P1", "GdW"), Term(sp.Integer(1), "S", "zeta")]
    stmts.append(Combine("y_new", tuple(final)))
    return StepScheme(method=method.name, operators=ops, statements=tuple(stmts))


def check_supported(form: SemilinearForm, method: Method):
    """Raise ModelError naming what the (model, method) pair lacks."""
    name = method.name
    if method.stochastic and not form.stochastic:
        raise ModelError(f"{name} is an SDE method but the model is an ODE (no diffusion)")
    if form.stochastic and not method.stochastic:
        raise ModelError(f"{name} is an ODE method but the model is an SDE; use EM or SETD1")
    if method.requires_additive and not form.additive:
        raise ModelError(f"{name} needs additive noise (G independent of y), but the diffusion depends on the state")
    if method.noise == "convolution" and form.time_dependent("diffusion"):
        raise ModelError(f"{name}: a time-dependent diffusion G(t) is not supported yet")
    if method.noise == "convolution" and form.noise not in ("scalar", "diagonal"):
        raise ModelError(f"{name} supports scalar and diagonal noise for now, not {form.noise!r}")
