"""Tableaus as data that validate themselves when built.

* :class:`ButcherTableau` — explicit Runge–Kutta ``(A, b, c)`` (optional embedded ``bhat``),
  applied to the full right-hand side ``f = L y + c + N``.
* :class:`ExponentialTableau` — exponential Runge–Kutta in the notation of Hochbruck &
  Ostermann (2010, Acta Numerica 19, §2.3): ``U_i = φ_0(c_i z) y_n + h Σ_j a_ij(z) N_j``,
  ``y_{n+1} = φ_0(z) y_n + h Σ_i b_i(z) N_i`` with entries polynomials in ``phi(k, c z)``
  (``kind="lawson"``: integrating-factor methods, entries ``a_ij φ_0((c_i − c_j) z)``).
* :class:`ExpRosenbrockTableau` — exponential Rosenbrock methods (Hochbruck, Ostermann &
  Schweitzer 2009, SINUM 47:786; methods.md §1.5), entries polynomials in φ_k(c hJ), J the
  exact Jacobian.
* :class:`RosenbrockTableau` — Rosenbrock-W methods in the classic form of Hairer & Wanner
  II §IV.7 (methods.md §4.1), W = L.
* :class:`TASETableau` — an explicit RK tableau with a TASE operator ``T_i(z)`` per stage
  (Bassenne, Fu & Mani 2021; Calvo, Montijano & Rández 2023/2025; methods.md §3).
* :class:`AdamsTableau` — variable-step exponential Adams (ETD2, ETD-Adams; methods.md §1.6).
* :class:`SRATableau` — Rößler's SRA methods for additive noise (SINUM 48(3), 2010; methods.md §5.3).

Entries are exact sympy numbers where the literature gives them exactly, Floats otherwise;
the checks then hold to :data:`FLOAT_TOL`.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from .phi import phi, phi_poly, series_equal, series_in_z, z


#: tolerance of the checks on tableaus given in floating point (Tsit5, ROS34PW*, SOSRA)
FLOAT_TOL = 1e-12


def _exact(x):
    return sp.nsimplify(x) if isinstance(x, (int, str)) else sp.sympify(x)


def is_zero(x, tol: float = FLOAT_TOL) -> bool:
    """``x == 0``: exactly for exact expressions, to ``tol`` when Floats are involved."""
    x = sp.sympify(x)
    if x.has(sp.Float):
        return abs(float(sp.N(x))) <= tol
    return sp.simplify(x) == 0


def _vector(v):
    return tuple(_exact(x) for x in v)


def _matrix(M, s, name, what, strict=True):
    M = tuple(tuple(_exact(a) for a in row) for row in M)
    if len(M) != s or any(len(row) != s for row in M):
        raise ValueError(f"{name}: {what} must be {s}x{s}")
    for i in range(s):
        for j in range(i if strict else i + 1, s):
            if M[i][j] != 0:
                raise ValueError(f"{name}: {what}[{i}][{j}] = {M[i][j]} is {'on/' if strict else ''}above the "
                                 "diagonal; only explicit methods")
    return M


def _exact_arrays(tab):
    """(A, b, c) of ``tab`` as exact sympy tuples, after the shape checks every tableau shares:
    equal lengths of b and c, square A, strictly lower triangular (explicit methods)."""
    b, c = _vector(tab.b), _vector(tab.c)
    s = len(b)
    if len(c) != s:
        raise ValueError(f"{tab.name}: b has {s} entries but c has {len(c)}")
    return _matrix(tab.A, s, tab.name, "A"), b, c


def _store_embedded(tab, s):
    """Validate and store the embedded weights ``bhat`` (s entries summing to 1), if any."""
    if tab.bhat is not None:
        bhat = _vector(tab.bhat)
        if len(bhat) != s or not is_zero(sum(bhat) - 1):
            raise ValueError(f"{tab.name}: embedded weights bhat must have {s} entries summing to 1")
        object.__setattr__(tab, "bhat", bhat)


def _store(tab, A, b, c):
    object.__setattr__(tab, "A", A)
    object.__setattr__(tab, "b", b)
    object.__setattr__(tab, "c", c)


@dataclass(frozen=True)
class ButcherTableau:
    """Explicit RK tableau. Checks: shapes, strictly lower A, Σ_j a_ij = c_i, Σ b_i = 1
    (and Σ bhat_i = 1 for an embedded pair, ``embedded_order`` its order; b_i(1) = b_i for a
    continuous extension of order ``dense_order``, whose tree conditions
    ``order_conditions.dense_report`` checks)."""

    A: tuple
    b: tuple
    c: tuple
    order: int
    name: str = ""
    bhat: tuple | None = None
    embedded_order: int | None = None
    dense: tuple | None = None      # continuous extension: b_i(θ) = Σ_k dense[i][k] θ^(k+1)
    dense_order: int | None = None

    def __post_init__(self):
        A, b, c = _exact_arrays(self)
        for i in range(len(b)):
            if not is_zero(sum(A[i]) - c[i]):
                raise ValueError(f"{self.name}: row {i} of A sums to {sum(A[i])}, not c_{i} = {c[i]}")
        if not is_zero(sum(b) - 1):
            raise ValueError(f"{self.name}: weights b sum to {sum(b)}, not 1")
        _store_embedded(self, len(b))
        _store(self, A, b, c)
        if self.dense is not None:
            dense = tuple(_vector(row) for row in self.dense)
            if len(dense) != len(b) or any(not is_zero(sum(row) - bi) for row, bi in zip(dense, b)):
                raise ValueError(f"{self.name}: the continuous extension needs b_i(1) = b_i for all {len(b)} stages")
            object.__setattr__(self, "dense", dense)

    def dense_weights(self, theta):
        """b_i(θ) of the continuous extension y(t + θh) = y + h Σ b_i(θ) K_i (HNW I §II.6)."""
        return [sum((w * theta ** (k + 1) for k, w in enumerate(row)), 0) for row in self.dense]

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def fsal(self) -> bool:
        """First same as last (HNW I §II.5): the last stage is evaluated at the new solution and the
        step's end (a_{s,j} = b_j, b_s = 0, c_s = 1) and the first at the start (c_1 = 0), so the last
        evaluation of a step is the first of the next: one f-evaluation per step fewer (DP5, Tsit5)."""
        s = self.stages
        return (s > 1 and is_zero(self.c[0]) and is_zero(self.c[-1] - 1) and is_zero(self.b[-1])
                and all(is_zero(self.A[-1][j] - self.b[j]) for j in range(s - 1)))


@dataclass(frozen=True)
class ExponentialTableau:
    """Exponential RK tableau (entries: polynomials in φ_k(c z)).

    Checks (series in z, exact): Σ_j a_ij(z) = c_i φ_1(c_i z) and Σ_i b_i(z) = φ_1(z), the
    conditions that make the method exact for constant N (Hochbruck & Ostermann 2005, SINUM
    43(3), order condition 1 of Table 2.1); each entry must be a polynomial in φ atoms.
    Lawson methods (``kind="lawson"``) are not exact for constant N: for them the check is
    that the z → 0 limit is a consistent RK tableau.  ``bhat``: embedded weights of stiff order
    ``embedded_order`` on the same stages (the error estimate of adaptive steps), checked alike.
    """

    A: tuple
    b: tuple
    c: tuple
    order: int
    stiff_order: int
    name: str = ""
    kind: str = "etd"
    bhat: tuple | None = None
    embedded_order: int | None = None

    def __post_init__(self):
        A, b, c = _exact_arrays(self)
        bhat = None if self.bhat is None else _vector(self.bhat)
        if self.kind not in ("etd", "lawson"):
            raise ValueError(f"{self.name}: kind must be 'etd' or 'lawson', not {self.kind!r}")
        for i in range(len(b)):
            if self.kind == "etd" and not series_equal(sum(A[i]), c[i] * phi(1, c[i] * z)):
                raise ValueError(f"{self.name}: Σ_j a_{i}j(z) != c_{i} φ_1(c_{i} z)")
        for name, w in (("b", b), ("bhat", bhat)):
            if w is not None and len(w) != len(b):
                raise ValueError(f"{self.name}: {name} must have {len(b)} entries")
            if w is not None and self.kind == "etd" and not series_equal(sum(w), phi(1, z)):
                raise ValueError(f"{self.name}: Σ_i {name}_i(z) != φ_1(z)")
        if (bhat is None) != (self.embedded_order is None):
            raise ValueError(f"{self.name}: bhat and embedded_order go together")
        for entry in (*b, *(bhat or ()), *(a for row in A for a in row)):
            phi_poly(entry)  # raises if not a polynomial in φ atoms
        object.__setattr__(self, "bhat", bhat)
        _store(self, A, b, c)
        if self.kind == "lawson":
            self.at_zero()  # raises unless the z -> 0 limit is a consistent RK tableau

    @property
    def stages(self) -> int:
        return len(self.b)

    def at_zero(self) -> ButcherTableau:
        """The underlying classical RK tableau (z → 0); validated on construction."""
        at0 = lambda e: sp.sympify(e).subs(z, 0)
        return ButcherTableau(
            A=tuple(tuple(at0(a) for a in row) for row in self.A),
            b=tuple(at0(x) for x in self.b), c=self.c, order=self.order, name=f"{self.name}(z=0)",
        )


@dataclass(frozen=True)
class ExpRosenbrockTableau:
    """Exponential Rosenbrock tableau (Hochbruck, Ostermann & Schweitzer 2009, SINUM 47:786, eq. (2.4)):

        U_i     = y_n + c_i h φ_1(c_i hJ) F(y_n) + h Σ_j a_ij(hJ) D_j,
        y_{n+1} = y_n + h φ_1(hJ) F(y_n) + h Σ_i b_i(hJ) D_i,

    J = ∂F/∂y(y_n) exact, D_i = g(U_i) − g(y_n) with g(u) = F(u) − J u.  Entries are polynomials
    in φ_k(c z); D_1 = 0 (U_1 = y_n), so column 1 of A and b_1 must vanish.  ``bhat``: the
    embedded weights (the same form, order ``embedded_order``).
    """

    A: tuple
    b: tuple
    c: tuple
    order: int
    name: str = ""
    bhat: tuple | None = None
    embedded_order: int | None = None

    def __post_init__(self):
        A, b, c = _exact_arrays(self)
        if c[0] != 0 or b[0] != 0 or any(row[0] != 0 for row in A):
            raise ValueError(f"{self.name}: c_1, b_1 and a_i1 must be 0 (U_1 = y_n, so D_1 = 0)")
        bhat = None if self.bhat is None else _vector(self.bhat)
        for entry in (*b, *(bhat or ()), *(a for row in A for a in row)):
            phi_poly(entry)  # raises if not a polynomial in φ atoms
        object.__setattr__(self, "bhat", bhat)
        _store(self, A, b, c)

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def stiff_order(self) -> int:
        """The conditions are stiff ones (uniform in hJ): the order is a stiff order."""
        return self.order


@dataclass(frozen=True)
class RosenbrockTableau:
    """Rosenbrock-W method, classic form (Hairer & Wanner II, eq. IV.7.4'; methods.md §4.1):
    ``(I − hγW) k_i = h f(t_n + c_i h, y_n + Σ_{j<i} α_ij k_j) + hW Σ_{j<i} γ_ij k_j``,
    ``y_{n+1} = y_n + Σ b_i k_i`` (embedded: ``bhat``).  ``gamma`` is lower triangular with
    the constant γ on its diagonal; ``order`` is the W-order (any W), ``rosenbrock_order``
    the order with W = ∂f/∂y.  Checks: shapes, constant diagonal, Σ b_i = 1 = Σ bhat_i.
    """

    alpha: tuple
    gamma: tuple
    b: tuple
    order: int
    name: str = ""
    bhat: tuple | None = None
    embedded_order: int | None = None
    rosenbrock_order: int | None = None

    def __post_init__(self):
        b = _vector(self.b)
        s = len(b)
        alpha = _matrix(self.alpha, s, self.name, "alpha")
        gamma = _matrix(self.gamma, s, self.name, "gamma", strict=False)
        if any(not is_zero(gamma[i][i] - gamma[0][0]) for i in range(s)) or is_zero(gamma[0][0]):
            raise ValueError(f"{self.name}: gamma needs one non-zero constant γ on its diagonal")
        if not is_zero(sum(b) - 1):
            raise ValueError(f"{self.name}: weights b sum to {sum(b)}, not 1")
        object.__setattr__(self, "alpha", alpha)
        object.__setattr__(self, "gamma", gamma)
        object.__setattr__(self, "b", b)
        _store_embedded(self, s)

    @property
    def stages(self) -> int:
        return len(self.b)

    @property
    def c(self) -> tuple:
        """Stage times c_i = Σ_j α_ij."""
        return tuple(sum(row) for row in self.alpha)

    def transformed(self):
        """(a, C, m, mhat, γ) of the one-LU implementation form (methods.md §4.2; HW II eq. IV.7.14):
        ``(I/(hγ) − W) u_i = f(y_n + Σ a_ij u_j) + Σ_j (C_ij/h) u_j``, ``y_{n+1} = y_n + Σ m_j u_j``."""
        G = sp.Matrix(self.gamma)
        Gi = G.inv()
        g = self.gamma[0][0]
        a = sp.Matrix(self.alpha) * Gi
        C = sp.diag(*([1 / g] * self.stages)) - Gi
        m = sp.Matrix([self.b]) * Gi
        mhat = sp.Matrix([self.bhat]) * Gi if self.bhat is not None else None
        return a, C, m, mhat, g


@dataclass(frozen=True)
class TASETableau:
    """Explicit RK tableau ``rk`` with a TASE operator per stage (methods.md §3.1, §3.4):
    ``k_i = h T_i(hW) f(t_n + c_i h, y_n + Σ_{j<i} a_ij k_j)``, ``y_{n+1} = y_n + Σ b_i k_i``.
    ``operators``: one expression per stage, a polynomial in ``resolvent(alpha*z)``.  Checks:
    T_i(0) = 1 (consistency) and each entry a polynomial in resolvents.
    """

    rk: ButcherTableau
    operators: tuple
    order: int
    name: str = ""

    def __post_init__(self):
        ops = tuple(sp.sympify(op) for op in self.operators)
        if len(ops) != self.rk.stages:
            raise ValueError(f"{self.name}: {self.rk.stages} stages need {self.rk.stages} operators, got {len(ops)}")
        for i, op in enumerate(ops):
            phi_poly(op)
            if not is_zero(series_in_z(op, 0) - 1):
                raise ValueError(f"{self.name}: T_{i}(0) = {series_in_z(op, 0)}, not 1")
        object.__setattr__(self, "operators", ops)

    @property
    def stages(self) -> int:
        return self.rk.stages


@dataclass(frozen=True)
class SRATableau:
    """Rößler SRA method for additive noise (SINUM 48(3) 2010, eq. (5.1); methods.md §5.3):
    ``H_i = y_n + h Σ_j A0_ij f(t_n + c0_j h, H_j) + Σ_j B0_ij g(t_n + c1_j h) I10/h``,
    ``y_{n+1} = y_n + h Σ α_i f(t_n + c0_i h, H_i) + Σ (β1_i ΔW + β2_i I10/h) g(t_n + c1_i h)``.
    Checks: shapes, explicit A0/B0, Σ_j A0_ij = c0_i.
    """

    A0: tuple
    B0: tuple
    alpha: tuple
    beta1: tuple
    beta2: tuple
    c0: tuple
    c1: tuple
    order: int                 # deterministic order
    strong_order: float = 1.5
    name: str = ""
    alpha_hat: tuple | None = None   # embedded drift weights of the error estimate (methods.md §5.3)

    @property
    def embedded_order(self) -> float | None:
        """Strong order of the embedded comparison (Euler-type α̂: 1.0)."""
        return None if self.alpha_hat is None else 1.0

    def __post_init__(self):
        vecs = {k: _vector(getattr(self, k)) for k in ("alpha", "beta1", "beta2", "c0", "c1")}
        s = len(vecs["alpha"])
        if any(len(v) != s for v in vecs.values()):
            raise ValueError(f"{self.name}: alpha, beta1, beta2, c0, c1 must all have {s} entries")
        A0 = _matrix(self.A0, s, self.name, "A0")
        B0 = _matrix(self.B0, s, self.name, "B0")
        for i in range(s):
            if not is_zero(sum(A0[i]) - vecs["c0"][i]):
                raise ValueError(f"{self.name}: row {i} of A0 sums to {sum(A0[i])}, not c0_{i}")
        for k, v in vecs.items():
            object.__setattr__(self, k, v)
        if self.alpha_hat is not None:
            ah = _vector(self.alpha_hat)
            if len(ah) != s or not is_zero(sum(ah) - 1):
                raise ValueError(f"{self.name}: alpha_hat must have {s} entries summing to 1")
            object.__setattr__(self, "alpha_hat", ah)
        object.__setattr__(self, "A0", A0)
        object.__setattr__(self, "B0", B0)

    @property
    def stages(self) -> int:
        return len(self.alpha)


@dataclass(frozen=True)
class AdamsTableau:
    """Variable-step exponential Adams method of ``steps`` = k steps (methods.md §1.6):
    ``y_{n+1} = φ_0(z) y_n + Σ_j Σ (coef · φ_m(z)) N_{n−j}`` with ``weights`` =
    {j: [(coef(h, h1, ..), m), ...]} from :func:`sdekit.codegen.derive.etd_adams_weights`;
    the first k − 1 steps are taken by the one-step exponential tableau ``startup``, whose embedded estimate
    controls them in adaptive solves (accepted unestimated, the controller grew the second startup step tenfold:
    ETDAdams3 ended 100–2000× outside its tolerance)."""

    steps: int
    weights: dict
    startup: ExponentialTableau
    order: int
    stiff_order: int
    name: str = ""

    def __post_init__(self):
        if set(self.weights) != set(range(self.steps)):
            raise ValueError(f"{self.name}: weights needed for N_n .. N_(n-{self.steps - 1})")
        if self.startup.order < self.order - 1:
            raise ValueError(f"{self.name}: a startup of order {self.startup.order} spoils order {self.order}")
        if self.startup.bhat is None:      # adaptive startup steps are estimated and controlled like the rest
            raise ValueError(f"{self.name}: the startup {self.startup.name} needs an embedded estimate (bhat)")

    @property
    def embedded_order(self) -> int:
        """The error estimate compares with the (k−1)-step companion (order k − 1, methods.md §1.6)."""
        return self.order - 1
