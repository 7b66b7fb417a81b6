"""Step-scheme builders: one small function per method family turns a tableau (data) into
the language-neutral :class:`~sdekit.codegen.scheme.StepScheme` every backend prints.

Registers: ``y`` (state), ``U{i}`` stage values, ``K{i}`` right-hand-side evaluations,
``u{i}``/``k{i}`` stage increments, ``N1, N2, ...`` the multistep history, ``G*`` noise terms.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import sympy as sp

from .analysis import SemilinearForm
from .derive import etd_adams_weights
from .errors import ModelError
from .phi import phi, phi_poly, resolvent, z
from .scheme import (Combine, ConvolutionResidual, EvalJacobian, EvalNoise, EvalRHS, JacobianOperator, PhiOperator,
                     StepScheme, Term, h, lag)

if TYPE_CHECKING:
    from .methods import Method

ONE = sp.Integer(1)


def _nonzero(x) -> bool:
    return sp.sympify(x) != 0


def _tidy(x):
    """Simplify an exact coefficient (e.g. the surds of Rosenbrock23); Floats stay as they are."""
    x = sp.sympify(x)
    return x if x.has(sp.Float) else sp.radsimp(sp.simplify(x))


class _Ops:
    """Operator registry of a scheme: equal operators share one name (one evaluation).
    ``kind``: PhiOperator (functions of hL) or JacobianOperator (of hJ̃, per trajectory)."""

    def __init__(self, prefix="", kind=PhiOperator):
        self.ops, self.prefix, self.kind = {}, prefix, kind

    def __call__(self, name, expr):
        poly = phi_poly(expr)
        for k, v in self.ops.items():
            if isinstance(v, self.kind) and v.poly == poly:
                return k
        name = self.prefix + name
        self.ops[name] = self.kind(poly)
        return name


def _sum(target, terms):
    return Combine(target, tuple(terms))


def rk(tab, form=None):
    """Explicit RK stages: U_i = y + h Σ a_ij K_j, K_i = f(U_i, t + c_i h) (HNW I, eq. II.1.8)."""
    stmts = [EvalRHS("K0", "y", tab.c[0], "full")]
    for i in range(1, tab.stages):
        terms = [Term(ONE, None, "y")] + [Term(h * a, None, f"K{j}") for j, a in enumerate(tab.A[i][:i]) if _nonzero(a)]
        stmts += [_sum(f"U{i}", terms), EvalRHS(f"K{i}", f"U{i}", tab.c[i], "full")]
    final = [Term(ONE, None, "y")] + [Term(h * b, None, f"K{i}") for i, b in enumerate(tab.b) if _nonzero(b)]
    if tab.fsal:      # a_s,j = b_j: the last stage value is y_new already (its sum, not a second one)
        final = [Term(ONE, None, f"U{tab.stages - 1}")]
    extra = _error([Term(h * (b - bh), None, f"K{i}") for i, (b, bh) in enumerate(_pairs(tab))])
    if tab.fsal and extra:   # the last stage f(y_new, t + h) is the next step's first (adaptive steps)
        extra["fsal"] = ("K0", f"K{tab.stages - 1}")
    if tab.dense is not None and extra:   # the continuous extension of saveat (adaptive steps)
        extra["dense"] = tuple((f"K{i}", row) for i, row in enumerate(tab.dense) if any(_nonzero(w) for w in row))
    return stmts, final, {}, extra


def _pairs(tab):
    """(b_i, bhat_i) of an embedded pair; [] without one."""
    return [] if tab.bhat is None else list(zip(tab.b, tab.bhat))


def _merged(terms) -> list:
    """Terms on the same (operator, vector) merged into one, in first-appearance order; zero ones dropped."""
    merged = {}
    for t in terms:
        key = (t.op, t.vec, t.aug)
        merged[key] = merged.get(key, 0) + t.coef
    terms = [Term(sp.simplify(c) if not sp.sympify(c).has(sp.Float) else c, *k) for k, c in merged.items()]
    return [t for t in terms if _nonzero(t.coef)]


def _error(terms):
    """The embedded error estimate err = y_new − ŷ as the scheme's "error" (None: no estimator)."""
    terms = _merged(terms)
    return {"error": terms} if terms else {}


def exprk(tab, form=None):
    """Exponential RK stages (Hochbruck & Ostermann 2010, Acta Numerica 19, eq. (2.19))."""
    op = _Ops()
    stmts = [EvalRHS("K0", "y", tab.c[0], "forcing")]
    for i in range(1, tab.stages):
        terms = [Term(ONE, op(f"E{i}", phi(0, tab.c[i] * z)), "y")] + [
            Term(h, op(f"A{i}{j}", a), f"K{j}") for j, a in enumerate(tab.A[i][:i]) if _nonzero(a)]
        stmts += [_sum(f"U{i}", terms), EvalRHS(f"K{i}", f"U{i}", tab.c[i], "forcing")]
    final = [Term(ONE, op("E", phi(0, z)), "y")] + [
        Term(h, op(f"B{i}", b), f"K{i}") for i, b in enumerate(tab.b) if _nonzero(b)]
    error = [Term(h, op(f"D{i}", b - bh), f"K{i}") for i, (b, bh) in enumerate(_pairs(tab)) if sp.expand(b - bh) != 0]
    return stmts, final, op.ops, _error(error)


def exprb(tab, form=None):
    """Exponential Rosenbrock stages (Hochbruck, Ostermann & Schweitzer 2009, eq. (2.4); methods.md
    §1.5) on the t-augmented system ỹ = (y, t), F̃ = (F, 1), so non-autonomous N keeps the order:
    X_i = c_i h φ_1(c_i hJ̃)(K_0, 1) + h Σ_j a_ij(hJ̃)(D_j, 0),  U_i = y + X_i,
    D_i = g̃(Ũ_i) − g̃(ỹ_n) = K_i − K_0 − J̃ (X_i, c_i h),
    y+ = y + h φ_1(hJ̃)(K_0, 1) + h Σ_i b_i(hJ̃)(D_i, 0)."""
    op = _Ops(kind=JacobianOperator)
    op.ops["J"] = JacobianOperator(None)
    stmts = [EvalRHS("K0", "y", sp.Integer(0), "full"), EvalJacobian("y")]
    for i in range(1, tab.stages):
        c = tab.c[i]
        terms = [Term(c * h, op(f"Q{i}", phi(1, c * z)), "K0", ONE)] + [
            Term(h, op(f"A{i}{j}", a), f"D{j}", sp.Integer(0)) for j, a in enumerate(tab.A[i][:i]) if _nonzero(a)]
        stmts += [_sum(f"X{i}", terms), _sum(f"U{i}", [Term(ONE, None, "y"), Term(ONE, None, f"X{i}")]),
                  EvalRHS(f"K{i}", f"U{i}", c, "full"),
                  _sum(f"D{i}", [Term(ONE, None, f"K{i}"), Term(-ONE, None, "K0"), Term(-ONE, "J", f"X{i}", c * h)])]
    final = [Term(ONE, None, "y"), Term(h, op("P1", phi(1, z)), "K0", ONE)] + [
        Term(h, op(f"B{i}", b), f"D{i}", sp.Integer(0)) for i, b in enumerate(tab.b) if _nonzero(b)]
    error = [Term(h, op(f"E{i}", b - bh), f"D{i}", sp.Integer(0))
             for i, (b, bh) in enumerate(_pairs(tab)) if sp.expand(b - bh) != 0]
    return stmts, final, {}, dict(jacobian_operators=op.ops, **_error(error))


def rosenbrock(tab, form=None):
    """Rosenbrock-W stages in the one-factorisation form (methods.md §4.2; HW II eq. IV.7.14)
    with W = L: u_i = hγ (I − hγL)^{-1} [f(y + Σ a_ij u_j) + Σ (C_ij/h) u_j], y+ = y + Σ m_j u_j."""
    a, C, m, mhat, g = (x.applyfunc(_tidy) if isinstance(x, sp.MatrixBase) else x for x in tab.transformed())
    op = _Ops()
    M = op("M", resolvent(g * z))
    stmts = []
    for i in range(tab.stages):
        if i:
            stmts.append(_sum(f"U{i}", [Term(ONE, None, "y")] + [
                Term(a[i, j], None, f"u{j}") for j in range(i) if _nonzero(a[i, j])]))
        stmts.append(EvalRHS(f"K{i}", f"U{i}" if i else "y", tab.c[i], "full"))
        rhs = f"K{i}"
        extra = [Term(C[i, j] / h, None, f"u{j}") for j in range(i) if _nonzero(C[i, j])]
        if extra:
            stmts.append(_sum(f"X{i}", [Term(ONE, None, f"K{i}")] + extra))
            rhs = f"X{i}"
        stmts.append(_sum(f"u{i}", [Term(h * g, M, rhs)]))
    final = [Term(ONE, None, "y")] + [Term(m[j], None, f"u{j}") for j in range(tab.stages) if _nonzero(m[j])]
    error = [] if mhat is None else [Term(_tidy(m[j] - mhat[j]), None, f"u{j}") for j in range(tab.stages)]
    return stmts, final, op.ops, _error(error)


def tase(tab, form=None):
    """RK-TASE stages (Bassenne, Fu & Mani 2021, eq. (9); methods.md §3.1) with W = L:
    k_i = h T_i(hL) f(y + Σ a_ij k_j), y+ = y + Σ b_i k_i."""
    op = _Ops()
    rk = tab.rk
    stmts = []
    for i in range(tab.stages):
        if i:
            stmts.append(_sum(f"U{i}", [Term(ONE, None, "y")] + [
                Term(a, None, f"k{j}") for j, a in enumerate(rk.A[i][:i]) if _nonzero(a)]))
        stmts.append(EvalRHS(f"K{i}", f"U{i}" if i else "y", rk.c[i], "full"))
        stmts.append(_sum(f"k{i}", [Term(h, op(f"T{i}", tab.operators[i]), f"K{i}")]))
    final = [Term(ONE, None, "y")] + [Term(b, None, f"k{i}") for i, b in enumerate(rk.b) if _nonzero(b)]
    return stmts, final, op.ops, {}


def sra(tab, form):
    """Rößler SRA stages for additive noise (SINUM 48(3) 2010, eq. (5.1); methods.md §5.3);
    g is evaluated once per distinct c1 time (once in all when g does not depend on t), times ΔW
    and times I_(1,0)/h."""
    constant_g = not form.time_dependent("diffusion")
    stmts, gw, gi = [], {}, {}
    for c in dict.fromkeys(tab.c1):
        if constant_g and gw:
            gw[c], gi[c] = gw[tab.c1[0]], gi[tab.c1[0]]
            continue
        k = len(gw)
        gw[c], gi[c] = f"GW{k}", f"GI{k}"
        stmts += [EvalNoise(gw[c], "y", c, "dW"), EvalNoise(gi[c], "y", c, "I10")]
    for i in range(tab.stages):
        if i:
            terms = [Term(ONE, None, "y")] + [Term(h * a, None, f"K{j}") for j, a in enumerate(tab.A0[i][:i])
                                                if _nonzero(a)]
            terms += [Term(bb, None, gi[tab.c1[j]]) for j, bb in enumerate(tab.B0[i][:i]) if _nonzero(bb)]
            stmts.append(_sum(f"U{i}", _merged(terms)))
        stmts.append(EvalRHS(f"K{i}", f"U{i}" if i else "y", tab.c0[i], "full"))
    final = [Term(ONE, None, "y")] + [Term(h * a, None, f"K{i}") for i, a in enumerate(tab.alpha) if _nonzero(a)]
    for i in range(tab.stages):
        final += [Term(tab.beta1[i], None, gw[tab.c1[i]])] if _nonzero(tab.beta1[i]) else []
        final += [Term(tab.beta2[i], None, gi[tab.c1[i]])] if _nonzero(tab.beta2[i]) else []
    final = _merged(final)   # constant g: g I10 terms of equal registers cancel exactly (SRA1: β2 = (−1, 1))
    # embedded estimate (methods.md §5.3): E1 = h Σ (α_i − α̂_i) f(H_i) against the Euler-type α̂
    # (diffrax's SRA1 b_error), plus E2 = Σ β2_i g(t + c1_i h) I10/h (StochasticDiffEq; 0 for constant g)
    error = []
    if tab.alpha_hat is not None:
        error = [Term(h * (a - ah), None, f"K{i}") for i, (a, ah) in enumerate(zip(tab.alpha, tab.alpha_hat))]
        error += [Term(tab.beta2[i], None, gi[tab.c1[i]]) for i in range(tab.stages) if _nonzero(tab.beta2[i])]
    return stmts, final, {}, _error(error)


def etd_adams(tab, form):
    """Variable-step exponential Adams (methods.md §1.6): y+ = e^{hL} y + Σ_j w_j(hL; h, h1..) N_{n-j},
    the Newton interpolant of N integrated exactly; started by ``tab.startup``."""
    op = _Ops()
    hist = ["K0"] + [f"N{j}" for j in range(1, tab.steps)]
    lag_names = {s.name: s for s in (h, *(lag(k) for k in range(1, tab.steps)))}  # symbols by name
    stmts = [EvalRHS("K0", "y", sp.Integer(0), "forcing")]
    final = [Term(ONE, op("E", phi(0, z)), "y")]

    def weighted(weights, sign=1):
        out = []
        for j, terms in sorted(weights.items()):
            for coef, k in terms:
                coef = sp.sympify(coef).xreplace({s: lag_names[s.name] for s in sp.sympify(coef).free_symbols})
                out.append(Term(sign * coef, op(f"P{k}", phi(k, z)), hist[j]))
        return out
    final += weighted(tab.weights)
    # error estimate: minus the (k−1)-step companion (the last Newton term, methods.md §1.6)
    error = weighted(tab.weights) + weighted(etd_adams_weights(tab.steps - 1), -1)
    s_stmts, s_final, s_ops, s_error = exprk(tab.startup, form)
    s_stmts = [*s_stmts, Combine("y_new", tuple(s_final)), Combine("err_start", tuple(s_error["error"]))]
    start = StepScheme(method=tab.startup.name, operators={f"S{k}": v for k, v in s_ops.items()},
                       statements=tuple(_rename_ops(s, "S") for s in s_stmts), error="err_start")
    history = tuple((hist[j], hist[j - 1]) for j in range(tab.steps - 1, 0, -1))
    return stmts, final, op.ops, dict(startup=start, startup_steps=tab.steps - 1, history=history,
                                      lags=tab.steps - 1, **_error(error))


def _rename_ops(stmt, prefix):
    if isinstance(stmt, Combine):
        return Combine(stmt.target, tuple(Term(t.coef, t.op and prefix + t.op, t.vec) for t in stmt.terms))
    return stmt


def build_scheme(form: SemilinearForm, method: Method) -> StepScheme:
    """The step scheme of ``method`` on ``form`` (its family's builder plus its noise treatment);
    ModelError for unsupported combinations."""
    check_supported(form, method)
    stmts, final, ops, extra = method.family.build(method.tableau, form)
    if method.noise in ("increment", "milstein"):
        stmts.append(EvalNoise("GdW", "y", sp.Integer(0)))
        final.append(Term(ONE, None, "GdW"))
    if method.noise == "milstein" and not form.additive:   # additive noise: G'G = 0, Milstein is EM
        stmts.append(EvalNoise("GGdW", "y", sp.Integer(0), "milstein"))
        final.append(Term(ONE, None, "GGdW"))
    elif method.noise == "convolution":
        stmts.append(EvalNoise("GdW", "y", sp.Integer(0)))
        ops["P1"] = PhiOperator(phi_poly(phi(1, z)))
        ops["S"] = ConvolutionResidual()
        final += [Term(ONE, "P1", "GdW"), Term(ONE, "S", "zeta")]
    stmts.append(Combine("y_new", tuple(final)))
    if method.stochastic:      # y_new carries the noise: the last stage is not f(y_new), nor K_i its slope
        extra.pop("fsal", None)
        extra.pop("dense", None)
    if extra.get("error"):
        stmts.append(Combine("err", tuple(extra["error"])))
        extra["error"] = "err"
    return StepScheme(method=method.name, operators=ops, statements=tuple(stmts), **extra)


def check_supported(form: SemilinearForm, method: Method):
    """Raise ModelError naming what the (model, method) pair lacks."""
    name = method.name
    if method.stochastic and not form.stochastic:
        raise ModelError(f"{name} is an SDE method but the model is an ODE (no diffusion)")
    if form.stochastic and not method.stochastic:
        raise ModelError(f"{name} is an ODE method but the model is an SDE; use an SDE method "
                         "(sdekit.methods() lists them)")
    if method.requires_additive and not form.additive:
        raise ModelError(f"{name} needs additive noise (G independent of y), but the diffusion depends on the state")
    if method.noise == "convolution" and form.time_dependent("diffusion"):
        raise ModelError(f"{name}: a time-dependent diffusion G(t) is not supported yet")
    if method.noise == "convolution" and form.noise not in ("scalar", "diagonal"):
        raise ModelError(f"{name} supports scalar and diagonal noise for now, not {form.noise!r}")
    if method.noise == "milstein" and not form.additive:
        milstein_terms(form, name)


def milstein_terms(form: SemilinearForm, name: str = "Milstein") -> list:
    """(G'G)_i of the Milstein correction ½ (G'G)(ΔW² − h) (Kloeden & Platen 1992, eq. 10.3.3):
    scalar noise Σ_k ∂G_i/∂y_k G_k; diagonal noise ∂G_i/∂y_i G_i (needs ∂G_i/∂y_k = 0 for
    k ≠ i, i.e. commutative noise without Lévy areas).  Derivatives by sympy."""
    if form.noise not in ("scalar", "diagonal"):
        raise ModelError(f"{name} with state-dependent {form.noise!r} noise needs Lévy areas (not supported); "
                         "use scalar or diagonal noise")
    G, ys = list(form.diffusion), form.states
    if form.noise == "scalar":
        return [sum((sp.diff(G[i], y) * G[k] for k, y in enumerate(ys)), sp.Integer(0)) for i in range(len(ys))]
    for i, gi in enumerate(G):
        for k, y in enumerate(ys):
            if k != i and sp.diff(gi, y) != 0:
                raise ModelError(f"{name} with diagonal noise needs G_{i} to depend on y_{i} only "
                                 f"(commutative noise); G_{i} = {gi} depends on {y}")
    return [sp.diff(G[i], ys[i]) * G[i] for i in range(len(ys))]
