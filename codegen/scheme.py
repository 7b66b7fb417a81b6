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

#: the step-size symbol of every scheme coefficient; ``h1, h2, ...`` are the previous steps
h = sp.Symbol("h", positive=True)


def lag(k: int) -> sp.Symbol:
    """h_k = t_{n-k+1} - t_{n-k}, the k-th previous step size (multistep coefficients)."""
    return sp.Symbol(f"h{k}", positive=True)


@dataclass(frozen=True)
class PhiOperator:
    """A polynomial in φ_k(c hL) and resolvents (I − a hL)^{-1}, as data from
    :func:`sdekit.codegen.phi.phi_poly`."""

    poly: tuple


@dataclass(frozen=True)
class ConvolutionResidual:
    """Square root S of Cov[∫_0^h e^{(h-s)L} G dW(s) | ΔW] (methods.md §5.2, conditioned on ΔW).

    Given ΔW, the stochastic convolution is ``φ_1(hL) G ΔW + S ζ`` with ζ ~ N(0, I_d), and
    ``S Sᵀ = ∫_0^h (e^{sL} − φ_1(hL)) G Gᵀ (e^{sL} − φ_1(hL))ᵀ ds``.
    """


@dataclass(frozen=True)
class JacobianOperator:
    """A polynomial in φ_k(c hJ̃) (``poly`` as in :class:`PhiOperator`; None: J̃ itself) of the
    trajectory's t-augmented Jacobian J̃ = [[J, ∂F/∂t], [0, 0]], J = L + ∂N/∂y at the step's
    start (methods.md §1.5, "non-autonomous problems").  Computed in the step, per trajectory,
    after :class:`EvalJacobian`; applied to augmented vectors (v, τ), see :class:`Term`."""

    poly: tuple | None


@dataclass(frozen=True)
class EvalJacobian:
    """``J̃ = ∂(F, 1)/∂(y, t)`` at (state, t + c h), F = L y + c(t) + N (sympy derivatives, the
    chain rule through networks), then every :class:`JacobianOperator` of the scheme."""

    state: str
    c: sp.Rational = sp.Integer(0)


@dataclass(frozen=True)
class Term:
    """``coef * op(hL) @ vec`` (``op`` None: identity).  For a :class:`JacobianOperator` the
    vector is augmented with the time component ``aug``: ``coef * op(hJ̃) @ (vec, aug)``."""

    coef: sp.Expr
    op: str | None
    vec: str
    aug: sp.Expr | None = None


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


#: what an :class:`EvalNoise` multiplies G by (methods.md §5): the Wiener increment ΔW, the
#: scaled iterated integral I_(1,0)/h = ΔW/2 + H (H the space-time Lévy area), or, for
#: Milstein, ½ (G'G)(ΔW² − h) (Kloeden & Platen 1992, eq. 10.3.3; diagonal/scalar noise)
NOISE_INCREMENTS = ("dW", "I10", "milstein")


@dataclass(frozen=True)
class EvalNoise:
    """``target = G(state, t + c h) · dW`` (scalar: G dW, diagonal: G ⊙ dW, general: G @ dW);
    ``increment`` "I10" uses I_(1,0)/h in place of dW, "milstein" gives ½ (G'G)(ΔW² − h)."""

    target: str
    state: str
    c: sp.Rational
    increment: str = "dW"


@dataclass(frozen=True)
class StepScheme:
    """Statements of one step.  Multistep methods (ETD-Adams) also have a one-step
    ``startup`` scheme run for the first ``startup_steps`` steps, ``history`` copies
    ``(dst, src)`` done after every step (e.g. N1 <- K0) and the previous step sizes
    ``h1 .. h{lags}`` available to coefficients.  ``error``: the register holding the embedded
    error estimate err = y_new − ŷ (None: no estimator; adaptive stepping needs one).  ``fsal``
    (first, last): the register of the last stage f(y_new, t + h) is the next step's first stage
    (FSAL), so an adaptive step after the first evaluates ``first`` only on its first attempt.
    ``dense``: the method's continuous extension, ((register K_i, (w_i1 .. w_ip)), ...) with
    y(t + θh) = y + h Σ_i (Σ_k w_ik θ^k) K_i (HNW I §II.6); None: cubic Hermite between the step's ends."""

    method: str
    operators: dict
    statements: tuple
    output: str = "y_new"
    startup: "StepScheme | None" = None
    startup_steps: int = 0
    history: tuple = ()
    lags: int = 0
    jacobian_operators: dict = None
    error: str | None = None
    fsal: tuple | None = None
    dense: tuple | None = None


    def __post_init__(self):
        if self.jacobian_operators is None:
            object.__setattr__(self, "jacobian_operators", {})

    def all_statements(self):
        return self.statements + (self.startup.statements if self.startup else ())

    def all_operators(self) -> dict:
        return {**(self.startup.operators if self.startup else {}), **self.operators}

    def live_statements(self, outputs=None) -> tuple:
        """The statements ``outputs`` (default: the step's output alone, not the error estimate)
        depend on, in order: what a fixed-step kernel runs."""
        need, keep = set(outputs or (self.output, *(src for _, src in self.history))), []
        for s in reversed(self.statements):
            if getattr(s, "target", None) in need or (isinstance(s, EvalJacobian) and need):
                keep.append(s)
                need |= {t.vec for t in getattr(s, "terms", ())} | ({s.state} if hasattr(s, "state") else set())
        return tuple(reversed(keep))

    @property
    def needs_dW(self) -> bool:
        return any(isinstance(s, EvalNoise) for s in self.all_statements())

    @property
    def needs_levy(self) -> bool:
        return any(isinstance(s, EvalNoise) and s.increment == "I10" for s in self.all_statements())

    @property
    def needs_milstein(self) -> bool:
        return any(isinstance(s, EvalNoise) and s.increment == "milstein" for s in self.all_statements())

    @property
    def needs_zeta(self) -> bool:
        return any(isinstance(o, ConvolutionResidual) for o in self.all_operators().values())

    @property
    def needs_jacobian(self) -> bool:
        return any(isinstance(s, EvalJacobian) for s in self.all_statements())

    @property
    def needs_linear(self) -> bool:
        return bool(self.all_operators()) or self.needs_jacobian or any(
            isinstance(s, EvalRHS) and s.part == "full" for s in self.all_statements())

    @property
    def rhs_part(self) -> str:
        """"full" (f = L y + c + N) or "forcing" (c + N): what every EvalRHS of the scheme evaluates."""
        parts = {s.part for s in self.all_statements() if isinstance(s, EvalRHS)}
        assert len(parts) == 1, parts
        return parts.pop()

    def __str__(self):
        lines = []
        if self.startup is not None:
            lines += [str(self.startup), f"# (the startup scheme above runs for the first {self.startup_steps} steps)"]
        lines.append(f"# step scheme of {self.method}")
        for name, op in self.operators.items():
            lines.append(f"#   {name} = {describe_operator(op)}")
        if self.jacobian_operators:
            lines.append("#   per trajectory, of J~ = [[L + dN/dy, dN/dt], [0, 0]] at (y, t):")
        for name, op in self.jacobian_operators.items():
            lines.append(f"#   {name} = {describe_operator(op)}")
        for s in self.statements:
            tc = f"t + {s.c}*h" if getattr(s, "c", 0) else "t"
            if isinstance(s, Combine):
                rhs = " + ".join(_coef(t.coef) + (f"{t.op}@" if t.op else "") + _vec(t) for t in s.terms)
                lines.append(f"{s.target} = {rhs}")
            elif isinstance(s, EvalJacobian):
                lines.append(f"J~ = d(f, 1)/d(y, t) at ({s.state}, {tc}); then the J~ operators")
            elif isinstance(s, EvalRHS):
                f = "f" if s.part == "full" else "N"
                lines.append(f"{s.target} = {f}({s.state}, {tc})")
            elif s.increment == "milstein":
                lines.append(f"{s.target} = (G'G)({s.state}, {tc}) (dW^2 - h)/2")
            else:
                lines.append(f"{s.target} = G({s.state}, {tc}) {'I10/h' if s.increment == 'I10' else 'dW'}")
        for dst, src in self.history:
            lines.append(f"{dst} <- {src}  (kept for the next step)")
        return "\n".join(lines)


def _vec(term) -> str:
    return term.vec if term.aug is None else f"({term.vec}, {term.aug})"


def _coef(c) -> str:
    """A printed coefficient factor: none for 1, parenthesised when it is a sum."""
    c = sp.sympify(c)
    if c == 1:
        return ""
    return f"({c})*" if isinstance(c, sp.Add) else f"{c}*"


def operator_layout(form: SemilinearForm, op) -> str:
    """How an operator is stored and applied: "elementwise" (arrays broadcasting against the
    (d, n) state) or "dense" (d x d matrices).  The one place emitters and runtime agree on."""
    if isinstance(op, ConvolutionResidual):
        return "elementwise" if form.linear_structure != "dense" and form.noise == "diagonal" else "dense"
    return "dense" if form.linear_structure == "dense" else "elementwise"


def describe_operator(op) -> str:
    if isinstance(op, ConvolutionResidual):
        return "sqrt(Cov[stochastic convolution | dW])"
    if isinstance(op, JacobianOperator):
        return "J~" if op.poly is None else describe_operator(PhiOperator(op.poly)).replace("hL", "hJ~")
    parts = []
    for w, atoms in op.poly:
        fac = "*".join(_describe_atom(a) for a in atoms) or "1"
        parts.append(fac if w == 1 else f"{w}*{fac}")
    return " + ".join(parts) or "0"


def _describe_atom(atom) -> str:
    if atom[0] == "res":
        return f"inv(I - {float(atom[1]):.10g}*hL)"
    _, k, c = atom
    return f"phi{k}({'' if c == 1 else f'{c}*'}hL)"
